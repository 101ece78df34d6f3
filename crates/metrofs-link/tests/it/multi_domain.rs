//! An acceptor that serves several domains (a quorum server) picks its identity by the domain
//! the initiator names: a known domain with its secret gets a link (and a handler made for the
//! authenticated peer), an unknown domain or a wrong secret is refused with a typed error on
//! both sides, and nothing reaches a handler.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use metrofs_link::{
    accept_stream_with, connect, establish, establish_with, Identity, Link, LinkError, Peer, Side,
};
use tokio::net::TcpListener;

use crate::{fast_config, identity, nonce, Echo, SECRET};

const OTHER_SECRET: &[u8] = b"the-test-domain-has-its-own-secret";

/// The quorum server's identities: "prod" and "test", each with its own secret.
fn identities() -> BTreeMap<String, Identity> {
    [
        ("prod", identity("prod", "quorum", SECRET)),
        ("test", identity("test", "quorum", OTHER_SECRET)),
    ]
    .into_iter()
    .map(|(d, i)| (d.to_owned(), i))
    .collect()
}

/// What the acceptor saw: the domains it was asked for and the peers its handlers were made for.
#[derive(Default)]
struct Seen {
    asked: Vec<String>,
    peers: Vec<Peer>,
}

/// `client` connects over loopback TCP to a multi-domain acceptor.
async fn tcp(
    client: &Identity,
) -> (
    Result<Link, LinkError>,
    Result<Link, LinkError>,
    Arc<Mutex<Seen>>,
    Arc<Echo>,
) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let echo = Arc::new(Echo::default());
    let ids = identities();
    let acceptor = {
        let seen = seen.clone();
        let echo = echo.clone();
        async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let seen2 = seen.clone();
            accept_stream_with(
                stream,
                &fast_config(),
                |domain: &str| {
                    seen.lock().expect("lock").asked.push(domain.to_owned());
                    ids.get(domain).cloned()
                },
                move |peer: &Peer| {
                    seen2.lock().expect("lock").peers.push(peer.clone());
                    echo
                },
            )
            .await
        }
    };
    let config = fast_config();
    let (ra, rb) = tokio::join!(connect(addr, &config, client, Echo::default()), acceptor);
    (ra, rb, seen, echo)
}

#[tokio::test]
async fn each_domain_is_served_with_its_own_secret() {
    for (domain, secret) in [("prod", SECRET), ("test", OTHER_SECRET)] {
        let client = identity(domain, "site-a", secret);
        let (a, q, seen, echo) = tcp(&client).await;
        let (a, q) = (a.expect("client up"), q.expect("acceptor up"));
        assert_eq!(a.peer().name, "quorum");
        assert_eq!(a.peer().domain, domain);
        assert_eq!(q.peer().name, "site-a");
        assert_eq!(q.peer().domain, domain);
        let (h, _) = a
            .call(Bytes::from_static(b"claim"), Bytes::new())
            .await
            .expect("call");
        assert_eq!(&h[..], b"re:claim");
        assert_eq!(echo.count(), 1);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.asked, vec![domain.to_owned()]);
        assert_eq!(
            seen.peers,
            vec![Peer {
                name: "site-a".into(),
                domain: domain.into()
            }]
        );
    }
}

#[tokio::test]
async fn unknown_domain_is_refused_on_both_sides() {
    let client = identity("staging", "site-a", SECRET);
    let (a, q, seen, echo) = tcp(&client).await;
    let ea = a.expect_err("client must be refused");
    let eq = q.expect_err("acceptor must refuse");
    assert!(
        matches!(&ea, LinkError::DomainUnknownThere { peer, domain }
            if peer.contains("127.0.0.1") && domain == "staging"),
        "{ea:?}"
    );
    assert!(
        ea.to_string().contains("does not serve domain 'staging'"),
        "{ea}"
    );
    assert!(
        matches!(&eq, LinkError::DomainUnknownHere { peer, domain }
            if peer == "site-a" && domain == "staging"),
        "{eq:?}"
    );
    assert_eq!(seen.lock().expect("lock").peers, vec![]);
    assert_eq!(echo.count(), 0);
}

#[tokio::test]
async fn another_domains_secret_is_refused() {
    // The secret of "test" presented for "prod": the acceptor checks it against prod's.
    let client = identity("prod", "site-a", OTHER_SECRET);
    let (a, q, seen, echo) = tcp(&client).await;
    let ea = a.expect_err("client must be refused");
    let eq = q.expect_err("acceptor must refuse");
    assert!(
        matches!(&ea, LinkError::WrongSecret { peer, domain } if peer == "quorum" && domain == "prod"),
        "{ea:?}"
    );
    assert!(
        matches!(&eq, LinkError::WrongSecret { peer, domain } if peer == "site-a" && domain == "prod"),
        "{eq:?}"
    );
    assert_eq!(seen.lock().expect("lock").asked, vec!["prod".to_owned()]);
    assert_eq!(seen.lock().expect("lock").peers, vec![]);
    assert_eq!(echo.count(), 0);
}

#[tokio::test]
async fn establish_with_runs_on_any_stream() {
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let client = identity("test", "site-b", OTHER_SECRET);
    let ids = identities();
    let config = fast_config();
    let (a, q) = tokio::join!(
        establish(
            sa,
            Side::Initiator,
            &config,
            &client,
            nonce(1),
            Echo::default()
        ),
        establish_with(
            sb,
            &config,
            |d: &str| ids.get(d).cloned(),
            nonce(2),
            |_: &Peer| Echo::default()
        ),
    );
    let (a, q) = (a.expect("client up"), q.expect("acceptor up"));
    assert_eq!(q.peer().name, "site-b");
    let (h, _) = a
        .call(Bytes::from_static(b"x"), Bytes::new())
        .await
        .expect("call");
    assert_eq!(&h[..], b"re:x");
}

#[tokio::test]
async fn the_acceptors_name_is_still_checked() {
    // An array that calls itself "quorum" is refused as for two arrays of the same name.
    let client = identity("prod", "quorum", SECRET);
    let (a, q, _, echo) = tcp(&client).await;
    assert!(
        matches!(a.expect_err("refused"), LinkError::SameName { ref name } if name == "quorum")
    );
    assert!(matches!(
        q.expect_err("refuses"),
        LinkError::SameName { .. }
    ));
    assert_eq!(echo.count(), 0);
}
