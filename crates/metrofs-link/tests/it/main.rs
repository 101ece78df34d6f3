//! metrofs-link integration tests: handshake outcomes, calls, liveness, and a loopback
//! measurement. One test binary (linking is the cost on 2 cores).

mod calls;
mod handshake;
mod liveness;
mod measure;
mod multi_domain;
mod sim;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metrofs_link::frame::{self, Frame};
use metrofs_link::{
    accept, connect, establish, Handler, Identity, Link, LinkConfig, LinkError, Secret, Side,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;

pub const SECRET: &[u8] = b"0123456789abcdef-shared-secret";

pub fn identity(domain: &str, name: &str, secret: &[u8]) -> Identity {
    Identity::new(
        domain,
        name,
        Secret::new(secret.to_vec()).expect("valid secret"),
    )
    .expect("valid identity")
}

pub fn site_a() -> Identity {
    identity("prod", "site-a", SECRET)
}

pub fn site_b() -> Identity {
    identity("prod", "site-b", SECRET)
}

/// Short handshake and call timers so failure tests finish quickly; a heartbeat timeout that
/// tolerates a loaded 2-core machine running tests in parallel (real time).
pub fn fast_config() -> LinkConfig {
    LinkConfig {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 3000,
        handshake_timeout_ms: 2000,
        connect_timeout_ms: 2000,
        call_timeout_ms: 5000,
        max_in_flight: 8,
        max_incoming_in_flight: 64,
    }
}

/// Tight heartbeats, for tests on tokio's paused clock (where CPU load cannot delay timers).
pub fn tight_config() -> LinkConfig {
    LinkConfig {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 300,
        ..fast_config()
    }
}

/// Echoes header and body, prefixing the header with "re:", and counts what it saw.
#[derive(Default)]
pub struct Echo {
    pub calls: AtomicUsize,
}

impl Handler for Echo {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut h = BytesMut::from(&b"re:"[..]);
        h.extend_from_slice(&header);
        (h.freeze(), body)
    }

    fn inline(&self, _header: &[u8]) -> bool {
        true
    }
}

impl Echo {
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub fn nonce(b: u8) -> [u8; 32] {
    [b; 32]
}

/// Establishes both ends over an in-memory duplex stream.
pub async fn duplex_pair<HA: Handler, HB: Handler>(
    config: &LinkConfig,
    a: &Identity,
    b: &Identity,
    ha: HA,
    hb: HB,
) -> (Result<Link, LinkError>, Result<Link, LinkError>) {
    let (sa, sb) = tokio::io::duplex(256 * 1024);
    tokio::join!(
        establish(sa, Side::Initiator, config, a, nonce(1), ha),
        establish(sb, Side::Acceptor, config, b, nonce(2), hb),
    )
}

/// Establishes both ends over loopback TCP: `a` connects, `b` accepts.
pub async fn tcp_pair<HA: Handler, HB: Handler>(
    config: &LinkConfig,
    a: &Identity,
    b: &Identity,
    ha: HA,
    hb: HB,
) -> (Result<Link, LinkError>, Result<Link, LinkError>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::join!(
        connect(addr, config, a, ha),
        accept(&listener, config, b, hb)
    )
}

/// Reads frames from a raw stream until it ends (or `limit` passes); trailing junk is ignored.
pub async fn read_frames<R: AsyncRead + Unpin>(r: &mut R, limit: Duration) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let _ = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let mut frames = Vec::new();
    while let Ok(Some(f)) = frame::decode(&mut buf) {
        frames.push(f);
    }
    frames
}

/// Writes raw bytes.
pub async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    w.write_all(bytes).await.expect("raw write");
    w.flush().await.expect("raw flush");
}

pub fn shared<H>(h: H) -> Arc<H> {
    Arc::new(h)
}
