//! Heartbeats, down detection and closing. Most tests run on tokio's paused clock (the link's
//! timers are tokio's), through a relay that can freeze or cut the connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{establish, DownReason, Handler, Link, LinkConfig, LinkError, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{duplex_pair, fast_config, nonce, site_a, site_b, tight_config, Echo};

/// Forwards bytes between two duplex streams; can freeze (stop forwarding, keep the
/// connection) or cut (drop both streams).
struct Relay {
    frozen: watch::Sender<bool>,
    cut: watch::Sender<bool>,
}

impl Relay {
    fn new(a: DuplexStream, b: DuplexStream) -> Relay {
        let frozen = watch::Sender::new(false);
        let cut = watch::Sender::new(false);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        tokio::spawn(pump(ar, bw, frozen.subscribe(), cut.subscribe()));
        tokio::spawn(pump(br, aw, frozen.subscribe(), cut.subscribe()));
        Relay { frozen, cut }
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

async fn pump(
    mut from: tokio::io::ReadHalf<DuplexStream>,
    mut to: tokio::io::WriteHalf<DuplexStream>,
    mut frozen: watch::Receiver<bool>,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = cut.wait_for(|c| *c) => return,
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
        };
        tokio::select! {
            _ = cut.wait_for(|c| *c) => return,
            _ = frozen.wait_for(|f| !*f) => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Two links through a relay.
async fn relayed<HA: Handler, HB: Handler>(
    config: &LinkConfig,
    ha: HA,
    hb: HB,
) -> (Link, Link, Relay) {
    let (a, ra) = tokio::io::duplex(256 * 1024);
    let (b, rb) = tokio::io::duplex(256 * 1024);
    let relay = Relay::new(ra, rb);
    let (ia, ib) = (site_a(), site_b());
    let (la, lb) = tokio::join!(
        establish(a, Side::Initiator, config, &ia, nonce(1), ha),
        establish(b, Side::Acceptor, config, &ib, nonce(2), hb),
    );
    (la.expect("a up"), lb.expect("b up"), relay)
}

/// Never answers.
struct BlackHole;

impl Handler for BlackHole {
    async fn handle(&self, _header: Bytes, _body: Bytes) -> (Bytes, Bytes) {
        std::future::pending::<()>().await;
        (Bytes::new(), Bytes::new())
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_idle_link_up_and_measure_rtt() {
    let (a, b, _relay) = relayed(&tight_config(), Echo::default(), Echo::default()).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(a.down_reason().is_none(), "{:?}", a.down_reason());
    assert!(b.down_reason().is_none());
    assert!(a.rtt().is_some(), "no heartbeat round trip measured");
    assert!(b.rtt().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_is_declared_down_and_pending_calls_fail() {
    let config = tight_config(); // heartbeat every 50 ms, down after 300 ms of silence
    let (a, b, relay) = relayed(&config, Echo::default(), BlackHole).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pending = tokio::spawn({
        let a = a.clone();
        async move { a.call(Bytes::from_static(b"lost"), Bytes::new()).await }
    });
    while a.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let frozen_at = Instant::now();
    relay.freeze();
    let reason = a.closed().await;
    let after = frozen_at.elapsed();
    assert!(
        matches!(reason, DownReason::HeartbeatTimeout { timeout_ms: 300, silent_ms } if silent_ms >= 300),
        "{reason:?}"
    );
    // The last frame from b arrived at most one heartbeat interval before the freeze.
    assert!(
        after >= Duration::from_millis(240) && after <= Duration::from_millis(300 + 50),
        "declared down {after:?} after the peer went silent"
    );
    let e = pending
        .await
        .expect("join")
        .expect_err("pending call fails");
    assert!(
        matches!(&e, LinkError::Down { peer, reason: DownReason::HeartbeatTimeout { .. } } if peer == "site-b"),
        "{e:?}"
    );
    let e = a
        .call(Bytes::new(), Bytes::new())
        .await
        .expect_err("later calls fail at once");
    assert!(matches!(e, LinkError::Down { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("link to site-b is down: no frame from the peer for"),
        "{e}"
    );
    // The other side hears nothing either.
    assert!(matches!(
        b.closed().await,
        DownReason::HeartbeatTimeout { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cut_connection_takes_both_sides_down() {
    let (a, b, relay) = relayed(&tight_config(), Echo::default(), BlackHole).await;
    let pending = tokio::spawn({
        let a = a.clone();
        async move { a.call(Bytes::new(), Bytes::new()).await }
    });
    while a.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    relay.cut();
    assert_eq!(a.closed().await, DownReason::Eof);
    assert_eq!(b.closed().await, DownReason::Eof);
    let e = pending.await.expect("join").expect_err("fails");
    assert!(
        matches!(
            e,
            LinkError::Down {
                reason: DownReason::Eof,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn close_tells_the_peer_why_and_fails_its_pending_calls() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        BlackHole,
        Echo::default(),
    )
    .await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    let pending = tokio::spawn({
        let b = b.clone();
        async move { b.call(Bytes::new(), Bytes::new()).await }
    });
    while b.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    a.close("planned maintenance");
    assert_eq!(
        a.closed().await,
        DownReason::Closed("planned maintenance".into())
    );
    assert_eq!(
        b.closed().await,
        DownReason::PeerClosed {
            reason: "planned maintenance".into()
        }
    );
    let e = pending.await.expect("join").expect_err("fails");
    assert!(
        matches!(
            e,
            LinkError::Down {
                reason: DownReason::PeerClosed { .. },
                ..
            }
        ),
        "{e:?}"
    );
    let e = a
        .call(Bytes::new(), Bytes::new())
        .await
        .expect_err("closed");
    assert!(
        matches!(
            e,
            LinkError::Down {
                reason: DownReason::Closed(_),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn dropping_every_handle_closes_the_link() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        Echo::default(),
        Echo::default(),
    )
    .await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    let a2 = a.clone();
    drop(a);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(b.down_reason().is_none(), "one clone still holds the link");
    drop(a2);
    let reason = b.closed().await;
    assert!(
        matches!(&reason, DownReason::PeerClosed { reason } if reason.contains("dropped")),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_link_stays_up() {
    // Heartbeats share the writer queue with 1 MiB bodies both ways; with the default timers
    // a busy link must not be declared down.
    let config = LinkConfig::default();
    let (a, b) = duplex_pair(
        &config,
        &site_a(),
        &site_b(),
        Echo::default(),
        Arc::new(Echo::default()),
    )
    .await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    let body = Bytes::from(vec![3u8; 1024 * 1024]);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let link = if i % 2 == 0 { a.clone() } else { b.clone() };
            let body = body.clone();
            tokio::spawn(async move {
                for _ in 0..4 {
                    link.call(Bytes::new(), body.clone()).await.expect("call");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    assert!(a.down_reason().is_none());
    assert!(b.down_reason().is_none());
}
