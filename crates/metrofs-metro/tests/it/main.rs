//! metrofs-metro's integration tests: two arrays in one process over a real loopback link.

mod pair;
mod pair_export;
mod restart_state;
mod resync_state;

use std::net::SocketAddr;
use std::sync::Arc;

use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_metro::{Array, Metro, MetroConfig, PeerConfig};
use metrofs_store::Store;

/// A free loopback address for a link listener.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// One array of the test domain: its metro and the directory holding its store.
pub struct Site {
    pub metro: Arc<Metro>,
    _dir: tempfile::TempDir,
}

/// Opens array `name` (site-a is the preferred site) with a fresh store, its link listening on
/// `listen` and dialling `peer` at `peer_addr`; no quorum server (static priority).
pub async fn site(name: &str, peer: &str, listen: SocketAddr, peer_addr: SocketAddr) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let array = Array::new(store, Arc::new(metrofs_core::SystemClock));
    let secret = Secret::new(b"a shared secret of enough length!".to_vec()).expect("secret");
    let identity = Identity::new("test", name, secret).expect("identity");
    let link = LinkConfig { heartbeat_interval_ms: 100, heartbeat_timeout_ms: 600, ..LinkConfig::default() };
    let cfg = MetroConfig {
        name: name.into(),
        preferred: name == "site-a",
        peer: Some(PeerConfig { listen, addr: peer_addr.to_string(), name: peer.into(), identity, link }),
        arbitration: metrofs_metro::ArbitrationConfig::default(),
    };
    let metro = Metro::open(array, &dir.path().join("metro"), cfg).await.expect("metro");
    tokio::spawn(metro.clone().run_link());
    Site { metro, _dir: dir }
}
