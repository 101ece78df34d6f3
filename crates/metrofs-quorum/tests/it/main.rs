//! metrofs-quorum integration tests: real servers and clients in one process, on loopback.
//! One test binary (linking is the cost on 2 cores); each module one area:
//! - [`durable`]: grants survive a server restart (orderly and aborted), retries, force;
//! - [`race`]: two arrays racing for one epoch, on one and on three servers (seeded);
//! - [`majority`]: three servers, one or two down; reachability and status;
//! - [`bad_input`]: wrong secret, unknown domain, garbage, old epoch, another array's name;
//! - [`restart`]: a server restarted (aborted) during an arbitration (seeded).
//!
//! Seeded tests print their seeds; `METROFS_QUORUM_SEEDS=N` runs N seeds instead of the
//! default, `METROFS_QUORUM_SEED=S` only seed S.

mod bad_input;
mod durable;
mod majority;
mod race;
mod restart;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_quorum::{
    DomainSecrets, QuorumClient, QuorumServer, ServerError, ServerOptions, StoreError,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PROD_SECRET: &[u8] = b"prod-domain-shared-secret-0123456789";
pub const TEST_SECRET: &[u8] = b"test-domain-shared-secret-9876543210";

pub fn secret(bytes: &[u8]) -> Secret {
    Secret::new(bytes.to_vec()).expect("valid secret")
}

/// The server's domains: "prod" and "test", each with its own secret.
pub fn domains() -> DomainSecrets {
    let mut d = DomainSecrets::new();
    d.insert("prod", secret(PROD_SECRET)).expect("prod");
    d.insert("test", secret(TEST_SECRET)).expect("test");
    d
}

/// Array `name` of domain "prod".
pub fn array(name: &str) -> Identity {
    Identity::new("prod", name, secret(PROD_SECRET)).expect("identity")
}

/// Link timing for tests: quick handshakes; a heartbeat timeout that tolerates a loaded
/// 2-core machine (servers that stop close their links, so loss is seen at once anyway).
pub fn link() -> LinkConfig {
    LinkConfig {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 3000,
        handshake_timeout_ms: 3000,
        connect_timeout_ms: 2000,
        call_timeout_ms: 5000,
        ..LinkConfig::default()
    }
}

/// A generous timeout for claims that must be answered (loaded machine).
pub const ANSWER: Duration = Duration::from_secs(15);

pub fn client(servers: &[&TestServer], me: Identity) -> Arc<QuorumClient> {
    QuorumClient::new(
        servers.iter().map(|s| s.addr.to_string()).collect(),
        me,
        link(),
    )
}

/// Waits until `c` has every server connected.
pub async fn wait_connected(c: &QuorumClient) {
    let deadline = tokio::time::Instant::now() + ANSWER;
    while !c.status().iter().all(|s| s.reachable) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not connected: {:?}",
            c.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `cond` holds (polling), or fails naming `what`.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + ANSWER;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A quorum server in this process, restartable on the same address and data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server on a free loopback port.
    pub async fn start(dir: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut s = TestServer {
            addr,
            dir: dir.to_owned(),
            stop: None,
            task: None,
        };
        s.run(listener).await;
        s
    }

    async fn run(&mut self, listener: TcpListener) {
        // The previous run's store may still be held for a moment by its last connection
        // tasks (after an abort): retry while it is "in use".
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let server = loop {
            match QuorumServer::open(
                &self.dir,
                domains(),
                ServerOptions {
                    link: link(),
                    ..ServerOptions::default()
                },
            ) {
                Ok(s) => break s,
                Err(ServerError::Store(StoreError::InUse { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot open the quorum server: {e}"),
            }
        };
        let (tx, rx) = oneshot::channel();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(server.run_until(listener, async move {
            let _ = rx.await;
        })));
    }

    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Orderly stop: connections closed, store closed.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran");
        }
    }

    /// Abrupt stop: the server's task is dropped wherever it is (as close to a crash as one
    /// process allows; a commit in progress still completes, as on a real disk).
    pub async fn crash(&mut self) {
        self.stop = None;
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts again on the same address and data directory.
    pub async fn restart(&mut self) {
        assert!(self.task.is_none(), "stop or crash it first");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        self.run(listener).await;
    }
}

/// A small seeded generator (splitmix64): tests replay from the printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The seeds a seeded test runs: `default` seeds from `base`, or as the environment says.
pub fn seeds(base: u64, default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("METROFS_QUORUM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("METROFS_QUORUM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).map(|i| base + i).collect()
}
