//! Handshake outcomes over an in-memory duplex stream and over loopback TCP: each refusal
//! ends with the right typed error on both sides and nothing reaches a handler.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use metrofs_link::frame::{Frame, Kind};
use metrofs_link::{
    accept, accept_stream, connect, establish, Identity, LinkConfig, LinkError, Side,
    PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::{
    duplex_pair, fast_config, identity, nonce, read_frames, site_a, site_b, tcp_pair, write_raw,
    Echo, SECRET,
};

/// A Hello frame as the wire format defines it (see `auth.rs`).
fn raw_hello(version: u16, side: u8, domain: &str, name: &str) -> Bytes {
    let mut h = BytesMut::new();
    h.put_u16(version);
    h.put_u8(side);
    h.put_u8(u8::try_from(domain.len()).expect("short"));
    h.put_slice(domain.as_bytes());
    h.put_u8(u8::try_from(name.len()).expect("short"));
    h.put_slice(name.as_bytes());
    h.put_slice(&[9u8; 32]);
    Frame::new(Kind::Hello, 0, h.freeze(), Bytes::new())
        .expect("small")
        .to_bytes()
}

const REFUSE_PROTOCOL: u8 = 1;
const REFUSE_VERSION: u8 = 2;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Duplex,
    Tcp,
}

const BOTH: [Transport; 2] = [Transport::Duplex, Transport::Tcp];

async fn pair(
    t: Transport,
    config: &LinkConfig,
    a: &Identity,
    b: &Identity,
) -> (
    Result<metrofs_link::Link, LinkError>,
    Result<metrofs_link::Link, LinkError>,
    Arc<Echo>,
    Arc<Echo>,
) {
    let (ha, hb) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (ra, rb) = match t {
        Transport::Duplex => duplex_pair(config, a, b, ha.clone(), hb.clone()).await,
        Transport::Tcp => tcp_pair(config, a, b, ha.clone(), hb.clone()).await,
    };
    (ra, rb, ha, hb)
}

#[tokio::test]
async fn handshake_succeeds_and_calls_flow_both_ways() {
    for t in BOTH {
        let (a, b, ha, hb) = pair(t, &fast_config(), &site_a(), &site_b()).await;
        let (a, b) = (a.expect("a up"), b.expect("b up"));
        assert_eq!(a.peer().name, "site-b", "{t:?}");
        assert_eq!(b.peer().name, "site-a", "{t:?}");
        assert_eq!(a.peer().domain, "prod");
        let (h, body) = a
            .call(Bytes::from_static(b"ping"), Bytes::from_static(b"data"))
            .await
            .expect("a → b");
        assert_eq!((&h[..], &body[..]), (&b"re:ping"[..], &b"data"[..]));
        let (h, _) = b
            .call(Bytes::from_static(b"pong"), Bytes::new())
            .await
            .expect("b → a");
        assert_eq!(&h[..], b"re:pong");
        assert_eq!((ha.count(), hb.count()), (1, 1), "{t:?}");
    }
}

#[tokio::test]
async fn wrong_secret_is_refused_on_both_sides() {
    for t in BOTH {
        let a = identity("prod", "site-a", SECRET);
        let b = identity("prod", "site-b", b"another-secret-of-enough-bytes");
        let (ra, rb, ha, hb) = pair(t, &fast_config(), &a, &b).await;
        let ea = ra.expect_err("a must be refused");
        let eb = rb.expect_err("b must refuse");
        assert!(
            matches!(&ea, LinkError::WrongSecret { peer, domain } if peer == "site-b" && domain == "prod"),
            "{t:?}: {ea:?}"
        );
        assert!(
            matches!(&eb, LinkError::WrongSecret { peer, domain } if peer == "site-a" && domain == "prod"),
            "{t:?}: {eb:?}"
        );
        assert_eq!(
            eb.to_string(),
            "peer site-a presented a different shared secret for domain 'prod': check secret_file on both arrays"
        );
        assert_eq!((ha.count(), hb.count()), (0, 0));
    }
}

#[tokio::test]
async fn wrong_domain_is_refused_on_both_sides() {
    for t in BOTH {
        let a = identity("prod", "site-a", SECRET);
        let b = identity("test", "site-b", SECRET);
        let (ra, rb, ha, hb) = pair(t, &fast_config(), &a, &b).await;
        let ea = ra.expect_err("a must be refused");
        let eb = rb.expect_err("b must refuse");
        assert!(
            matches!(&ea, LinkError::WrongDomain { peer, ours, theirs }
                if peer == "site-b" && ours == "prod" && theirs == "test"),
            "{t:?}: {ea:?}"
        );
        assert!(
            matches!(&eb, LinkError::WrongDomain { peer, ours, theirs }
                if peer == "site-a" && ours == "test" && theirs == "prod"),
            "{t:?}: {eb:?}"
        );
        assert!(ea.to_string().contains("check the domain name"), "{ea}");
        assert_eq!((ha.count(), hb.count()), (0, 0));
    }
}

#[tokio::test]
async fn same_name_is_refused_on_both_sides() {
    let (ra, rb, _, _) = pair(Transport::Duplex, &fast_config(), &site_a(), &site_a()).await;
    for e in [ra.expect_err("a"), rb.expect_err("b")] {
        assert!(
            matches!(&e, LinkError::SameName { name } if name == "site-a"),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn other_version_is_refused_and_told() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = Arc::new(Echo::default());
    let server = {
        let echo = echo.clone();
        tokio::spawn(async move { accept(&listener, &fast_config(), &site_b(), echo).await })
    };
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    write_raw(
        &mut raw,
        &raw_hello(PROTOCOL_VERSION + 1, 1, "prod", "site-x"),
    )
    .await;
    let frames = read_frames(&mut raw, Duration::from_secs(5)).await;
    let e = server.await.expect("join").expect_err("refused");
    assert!(
        matches!(e, LinkError::VersionMismatch { ours: PROTOCOL_VERSION, theirs, .. } if theirs == PROTOCOL_VERSION + 1),
        "{e:?}"
    );
    assert!(e.to_string().contains("upgrade the older array"), "{e}");
    // The acceptor reveals nothing but its refusal: no Hello before the peer's checks pass.
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].kind(), Kind::Refuse);
    assert_eq!(frames[0].header()[0], REFUSE_VERSION);
    assert_eq!(echo.count(), 0);
}

#[tokio::test]
async fn garbage_instead_of_hello_is_refused() {
    // Garbage to an acceptor (TCP). A short handshake timeout must not hide the refusal.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = Arc::new(Echo::default());
    let config = LinkConfig {
        handshake_timeout_ms: 100,
        ..fast_config()
    };
    let server = {
        let echo = echo.clone();
        tokio::spawn(async move { accept(&listener, &config, &site_b(), echo).await })
    };
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    write_raw(&mut raw, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let frames = read_frames(&mut raw, Duration::from_secs(5)).await;
    let e = server.await.expect("join").expect_err("refused");
    assert!(
        matches!(&e, LinkError::BadHandshake { detail, .. } if detail.contains("does not speak the metrofs link protocol")),
        "{e:?}"
    );
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].kind(), Kind::Refuse);
    assert_eq!(frames[0].header()[0], REFUSE_PROTOCOL);
    assert_eq!(echo.count(), 0);

    // A valid frame of the wrong kind to an acceptor (duplex).
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let echo = Arc::new(Echo::default());
    let server = tokio::spawn({
        let echo = echo.clone();
        async move {
            establish(
                ours,
                Side::Acceptor,
                &fast_config(),
                &site_b(),
                nonce(2),
                echo,
            )
            .await
        }
    });
    let req = Frame::new(Kind::Request, 1, Bytes::from_static(b"x"), Bytes::new()).expect("small");
    write_raw(&mut theirs, &req.to_bytes()).await;
    let frames = read_frames(&mut theirs, Duration::from_secs(5)).await;
    let e = server.await.expect("join").expect_err("refused");
    assert!(
        matches!(&e, LinkError::BadHandshake { detail, .. } if detail.contains("expected a Hello frame, got Request")),
        "{e:?}"
    );
    assert_eq!(frames.last().map(Frame::kind), Some(Kind::Refuse));
    assert_eq!(echo.count(), 0);

    // Garbage from an acceptor to an initiator (TCP).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        write_raw(&mut s, b"SSH-2.0-OpenSSH_9.9\r\n").await;
        read_frames(&mut s, Duration::from_secs(5)).await
    });
    let echo = Arc::new(Echo::default());
    let e = connect(addr, &fast_config(), &site_a(), echo.clone())
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, LinkError::BadHandshake { peer, .. } if peer.contains("127.0.0.1")),
        "{e:?}"
    );
    let frames = fake.await.expect("join");
    assert_eq!(frames.first().map(Frame::kind), Some(Kind::Hello));
    assert_eq!(frames.last().map(Frame::kind), Some(Kind::Refuse));
    assert_eq!(echo.count(), 0);
}

#[tokio::test]
async fn truncated_stream_ends_the_handshake() {
    let hello = raw_hello(PROTOCOL_VERSION, 1, "prod", "site-x");
    // Half a Hello, then the peer hangs up.
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        establish(
            ours,
            Side::Acceptor,
            &fast_config(),
            &site_b(),
            nonce(2),
            Echo::default(),
        )
        .await
    });
    write_raw(&mut theirs, &hello[..10]).await;
    drop(theirs);
    let e = server.await.expect("join").expect_err("closed");
    assert!(
        matches!(&e, LinkError::HandshakeClosed { detail, .. } if detail.contains("inside a frame (10 of")),
        "{e:?}"
    );

    // A whole Hello, then the peer hangs up before its proof (TCP).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = Arc::new(Echo::default());
    let server = tokio::spawn({
        let echo = echo.clone();
        async move { accept(&listener, &fast_config(), &site_b(), echo).await }
    });
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    write_raw(&mut raw, &hello).await;
    raw.shutdown().await.expect("half-close");
    let frames = read_frames(&mut raw, Duration::from_secs(5)).await;
    let e = server.await.expect("join").expect_err("closed");
    assert!(
        matches!(&e, LinkError::HandshakeClosed { peer, detail } if peer == "site-x" && detail.contains("before its Proof")),
        "{e:?}"
    );
    assert_eq!(frames.first().map(Frame::kind), Some(Kind::Hello));
    assert_eq!(echo.count(), 0);

    // The initiator's side: the acceptor hangs up after reading the Hello.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut first = [0u8; 16];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut first).await;
    });
    let e = connect(addr, &fast_config(), &site_a(), Echo::default())
        .await
        .expect_err("closed");
    assert!(
        matches!(
            &e,
            LinkError::HandshakeClosed { .. } | LinkError::HandshakeIo { .. }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn silent_peer_times_the_handshake_out() {
    let config = LinkConfig {
        handshake_timeout_ms: 200,
        ..fast_config()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn({
        let config = config.clone();
        async move { accept(&listener, &config, &site_b(), Echo::default()).await }
    });
    let _raw = TcpStream::connect(addr).await.expect("connect");
    let e = server.await.expect("join").expect_err("timed out");
    assert!(
        matches!(&e, LinkError::HandshakeTimeout { ms: 200, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn unreachable_peer_is_a_connect_error() {
    // Bind then drop: the port is closed on loopback.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let e = connect(addr, &fast_config(), &site_a(), Echo::default())
        .await
        .expect_err("nobody listens");
    assert!(matches!(&e, LinkError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("is the peer array running"), "{e}");
}

#[tokio::test]
async fn accept_stream_serves_a_spawned_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        accept_stream(s, &fast_config(), &site_b(), Echo::default()).await
    });
    let a = connect(addr, &fast_config(), &site_a(), Echo::default())
        .await
        .expect("up");
    let b = server.await.expect("join").expect("up");
    let (h, _) = a
        .call(Bytes::from_static(b"x"), Bytes::new())
        .await
        .expect("call");
    assert_eq!(&h[..], b"re:x");
    assert_eq!(b.peer().name, "site-a");
}

#[test]
fn invalid_config_is_refused_before_connecting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = LinkConfig {
        max_in_flight: 0,
        ..fast_config()
    };
    let e = rt
        .block_on(connect("127.0.0.1:9", &config, &site_a(), Echo::default()))
        .expect_err("invalid");
    assert!(
        matches!(&e, LinkError::Config(s) if s.contains("max_in_flight")),
        "{e:?}"
    );
}
