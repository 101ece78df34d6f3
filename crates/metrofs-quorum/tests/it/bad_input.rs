//! Bad input is refused, and the grant record stays as it was: a wrong secret, an unknown
//! domain, garbage instead of a handshake, garbage instead of a request, an old epoch,
//! epoch 0, a claim in another array's name, a request with a body.

use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{decode_header, encode_header, Identity, Link, LinkError, NoRequests};
use metrofs_quorum::proto::{Request, Response};
use metrofs_quorum::{Claim, Grant, QuorumClient, QuorumError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{
    array, client, link, secret, wait_until, TestServer, ANSWER, PROD_SECRET, TEST_SECRET,
};

const SCOPE: u64 = 7;

fn held(epoch: u64, holder: &str) -> Option<Grant> {
    Some(Grant {
        epoch,
        holder: holder.into(),
    })
}

/// A server where site-a holds epoch 5 of SCOPE, and a client of site-a to read it back.
async fn setup(dir: &std::path::Path) -> (TestServer, std::sync::Arc<QuorumClient>) {
    let server = TestServer::start(dir).await;
    let a = client(&[&server], array("site-a"));
    assert_eq!(a.claim(SCOPE, 5, ANSWER).await, Ok(Claim::Granted));
    (server, a)
}

async fn record(a: &QuorumClient) -> Option<Grant> {
    a.records(SCOPE, ANSWER).await[0]
        .record
        .clone()
        .expect("the server answers")
}

/// A raw link as array `me`, to send what the client never would.
async fn raw(server: &TestServer, me: &Identity) -> Link {
    metrofs_link::connect(server.addr, &link(), me, NoRequests)
        .await
        .expect("link up")
}

async fn ask(l: &Link, header: Bytes, body: Bytes) -> Response {
    let (h, _) = l.call(header, body).await.expect("answered");
    decode_header(&h).expect("a quorum response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_and_unknown_domain_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, a) = setup(dir.path()).await;

    // Domain prod with test's secret: wrong secret.
    let wrong = Identity::new("prod", "site-b", secret(TEST_SECRET)).expect("identity");
    let e = metrofs_link::connect(server.addr, &link(), &wrong, NoRequests)
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, LinkError::WrongSecret { domain, .. } if domain == "prod"),
        "{e:?}"
    );
    // Through the client: unreachable, and the status says why.
    let b = client(&[&server], wrong);
    let r = b.claim(SCOPE, 6, Duration::from_millis(1500)).await;
    assert!(
        matches!(&r, Err(QuorumError::Unreachable(why)) if why.contains("different shared secret")),
        "{r:?}"
    );
    wait_until("the status names the refusal", || {
        b.status()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("different shared secret for domain 'prod'"))
    })
    .await;
    assert!(!b.reachable());

    // An unknown domain.
    let stranger = Identity::new("staging", "site-b", secret(PROD_SECRET)).expect("identity");
    let e = metrofs_link::connect(server.addr, &link(), &stranger, NoRequests)
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, LinkError::DomainUnknownThere { domain, .. } if domain == "staging"),
        "{e:?}"
    );
    let c = client(&[&server], stranger);
    wait_until("the status names the unknown domain", || {
        c.status()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not serve domain 'staging'"))
    })
    .await;

    // The other domain's arrays are served, and their records are their own.
    let t = client(
        &[&server],
        Identity::new("test", "site-b", secret(TEST_SECRET)).expect("identity"),
    );
    assert_eq!(t.claim(SCOPE, 1, ANSWER).await, Ok(Claim::Granted));
    assert_eq!(record(&a).await, held(5, "site-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, a) = setup(dir.path()).await;

    // Garbage instead of a handshake: the server answers with a Refuse frame and closes.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: quorum\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(ANSWER, s.read_to_end(&mut got)).await;
    assert!(
        String::from_utf8_lossy(&got).contains("metrofs link protocol"),
        "{got:?}"
    );
    // Random bytes of every length, including none.
    for n in [0usize, 1, 7, 64, 5000] {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        let junk: Vec<u8> = (0..n).map(|i| (i * 131 % 251) as u8).collect();
        let _ = s.write_all(&junk).await;
        drop(s);
    }

    // Garbage instead of a request, on an authenticated link.
    let b = raw(&server, &array("site-b")).await;
    let r = ask(&b, Bytes::from_static(b"\xff\xfe garbage"), Bytes::new()).await;
    assert!(
        matches!(&r, Response::Refused(why) if why.contains("not a quorum request")),
        "{r:?}"
    );
    // A valid request with a body.
    let hdr = encode_header(&Request::Ping).expect("encode");
    let r = ask(&b, hdr, Bytes::from_static(b"body")).await;
    assert!(
        matches!(&r, Response::Refused(why) if why.contains("no body")),
        "{r:?}"
    );
    // The link still serves after refusals.
    let r = ask(
        &b,
        encode_header(&Request::Ping).expect("encode"),
        Bytes::new(),
    )
    .await;
    assert_eq!(r, Response::Pong);

    assert_eq!(record(&a).await, held(5, "site-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claims_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, a) = setup(dir.path()).await;
    let b = raw(&server, &array("site-b")).await;
    let claim = |epoch: u64, array: &str| {
        encode_header(&Request::Claim {
            scope: SCOPE,
            epoch,
            array: array.into(),
        })
        .expect("encode")
    };

    // An old epoch: denied with the record.
    let r = ask(&b, claim(4, "site-b"), Bytes::new()).await;
    assert_eq!(
        r,
        Response::Denied(Grant {
            epoch: 5,
            holder: "site-a".into()
        })
    );
    // The same epoch held by another.
    let r = ask(&b, claim(5, "site-b"), Bytes::new()).await;
    assert_eq!(
        r,
        Response::Denied(Grant {
            epoch: 5,
            holder: "site-a".into()
        })
    );
    // Epoch 0.
    let r = ask(&b, claim(0, "site-b"), Bytes::new()).await;
    assert!(
        matches!(&r, Response::Refused(why) if why.contains("epoch 0")),
        "{r:?}"
    );
    // In another array's name: site-b retrying "site-a"'s claim, or claiming above it.
    for epoch in [5, 6] {
        let r = ask(&b, claim(epoch, "site-a"), Bytes::new()).await;
        assert!(
            matches!(&r, Response::Refused(why) if why.contains("may only claim for itself")),
            "{r:?}"
        );
    }
    let force = encode_header(&Request::Force {
        scope: SCOPE,
        epoch: 9,
        array: "site-a".into(),
    })
    .expect("encode");
    let r = ask(&b, force, Bytes::new()).await;
    assert!(matches!(&r, Response::Refused(_)), "{r:?}");
    // Through the client: an old epoch is Denied with the record.
    let bc = client(&[&server], array("site-b"));
    assert_eq!(
        bc.claim(SCOPE, 3, ANSWER).await,
        Ok(Claim::Denied {
            epoch: 5,
            holder: "site-a".into()
        })
    );

    assert_eq!(record(&a).await, held(5, "site-a"));
    // And on disk.
    server.stop().await;
    let store = metrofs_quorum::GrantStore::open(dir.path()).expect("open the store");
    assert_eq!(store.get("prod", SCOPE).expect("get"), held(5, "site-a"));
}
