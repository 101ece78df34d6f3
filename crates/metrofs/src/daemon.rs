//! The array daemon: one array's store, its metro module, its NFS front end, the management
//! API, the replication link and the background flusher, run until a signal or a fatal error.
//!
//! Start, in order:
//! 1. create the data directory and open the store (crash recovery happens here);
//! 2. build the [`Array`] over it (a fresh write verifier for this run);
//! 3. open the [`Metro`] module over the array (`data_dir/metro`: pair records, DCL, LOG; what a
//!    crash left in the LOG moves to the DCL here). It is the NFS server's backend: it serves
//!    unpaired file systems straight from the array and runs the write I/O process for paired
//!    ones;
//! 4. bind the NFS and API listeners and check that the link's address is free (so a taken
//!    port is refused at start, naming the key);
//! 5. spawn the NFS server, the API server, the flusher and (with a `[peer]`) the replication
//!    link, all watching one [`Stop`].
//!
//! Stop:
//! - SIGTERM / SIGINT: stop accepting (both servers end their accept loops), drop the link,
//!   then one last LOG flush and `Array::sync`, then exit 0. A second signal exits at once.
//! - A local I/O error anywhere (flusher, API, NFS server), or a link that cannot listen:
//!   logged, no further flush (a failed fsync is not retried, STYLE.md 9), exit non-zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrofs_core::SystemClock;
use metrofs_metro::{Array, Metro};
use metrofs_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::config::{domain, Config};
use crate::stop::{Stop, StopReason};

/// How long the servers get to finish after a stop before the process exits anyway.
const DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Period of the metro LOG's flush: well below the kernel's dirty write-back delay (5 s by
/// default), so no changed data reaches the disk before the LOG record naming it.
const LOG_FLUSH_INTERVAL_MS: u64 = 200;

/// The two listeners, bound before anything is served.
pub struct Listeners {
    pub nfs: TcpListener,
    pub api: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `cfg`, and checks that the link's is free (the link binds it
    /// itself); an error names the config key.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let nfs = TcpListener::bind(cfg.nfs_listen)
            .await
            .with_context(|| format!("cannot listen on nfs_listen = {}", cfg.nfs_listen))?;
        let api = TcpListener::bind(cfg.api_listen)
            .await
            .with_context(|| format!("cannot listen on api_listen = {}", cfg.api_listen))?;
        if let Some(p) = &cfg.peer {
            check_free(p.link_listen, "link.listen").await?;
        }
        Ok(Self { nfs, api })
    }
}

/// Binds `addr` and lets it go again: a taken address is refused before anything serves.
pub async fn check_free(addr: SocketAddr, key: &str) -> anyhow::Result<()> {
    TcpListener::bind(addr)
        .await
        .map(drop)
        .with_context(|| format!("cannot listen on {key} = {addr}"))
}

/// A started array.
pub struct Running {
    pub metro: Arc<Metro>,
    /// The bound addresses (a port 0 in the config is resolved here); the tests connect to them.
    #[cfg_attr(not(test), allow(dead_code))]
    pub nfs_addr: SocketAddr,
    #[cfg_attr(not(test), allow(dead_code))]
    pub api_addr: SocketAddr,
    pub stop: Stop,
    tasks: JoinSet<()>,
    /// The replication link; it runs until aborted, after the servers drained.
    link: Option<tokio::task::JoinHandle<()>>,
}

/// Opens the store in `cfg.data_dir` and builds the array (steps 1 and 2).
pub async fn open_array(cfg: &Config) -> anyhow::Result<Arc<Array>> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let dir = cfg.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .context("store open task failed")?
        .with_context(|| {
            format!(
                "cannot open the store in data_dir {}",
                cfg.data_dir.display()
            )
        })?;
    if let Some(r) = store.last_recovery() {
        // After a crash: what came back from the op journal and what recovery tidied.
        tracing::warn!(
            journal_replayed = r.journal_replayed,
            restored_from_trash = r.restored_from_trash,
            trash_deleted = r.trash_deleted,
            orphans_deleted = r.orphans_deleted,
            truncated = r.truncated,
            "the store was not closed cleanly; recovered"
        );
        for line in &r.journal_refused {
            tracing::error!(record = %line, "a journal record could not be replayed (a change acknowledged before the crash may be missing; `metrofs pair verify` compares with the twin)");
        }
    }
    Ok(Array::new(Arc::new(store), Arc::new(SystemClock)))
}

/// Opens the metro module over `array` in `data_dir/metro` (step 3).
pub async fn open_metro(cfg: &Config, array: Arc<Array>) -> anyhow::Result<Arc<Metro>> {
    let dir = cfg.data_dir.join("metro");
    let mut mc = domain::metro_config(&cfg.name, cfg.peer.as_ref());
    if let (Some(q), Some(p)) = (&cfg.quorum, &cfg.peer) {
        mc.arbitration.on_quorum_loss = q.on_quorum_loss;
        mc.arbitration.head_start = Duration::from_millis(q.head_start_ms);
        let quorum: Arc<dyn metrofs_metro::Quorum> = crate::arbitration::QuorumAdapter::start(
            q.servers.clone(),
            p.identity.clone(),
            p.link.clone(),
            Duration::from_millis(q.claim_timeout_ms),
        );
        mc.arbitration.quorum = Some(quorum);
    }
    Metro::open(array, &dir, mc)
    .await
    .with_context(|| format!("cannot open the metro state in {}", dir.display()))
}

/// Starts serving (step 5 with already bound listeners).
pub fn start(
    cfg: &Config,
    metro: Arc<Metro>,
    listeners: Listeners,
    stop: Stop,
) -> anyhow::Result<Running> {
    let nfs_addr = listeners.nfs.local_addr().context("nfs listener address")?;
    let api_addr = listeners.api.local_addr().context("api listener address")?;
    let mut tasks = JoinSet::new();

    let nfs_conns = {
        let server = metrofs_nfs::NfsServer::new(metro.clone());
        // A pair that moves away from this array: its clients must reconnect (through the
        // service address) to the side that serves now, and resend what got no answer.
        let conns = server.connections();
        let on_lost = conns.clone();
        metro.on_service_lost(Arc::new(move || on_lost.close_all()));
        let stop = stop.clone();
        let listener = listeners.nfs;
        tasks.spawn(async move {
            server.serve(listener, stop.wait()).await;
        });
        conns
    };

    if let Some(svc) = &cfg.service {
        let addr = crate::service_addr::ServiceAddress::new(&svc.address, &svc.interface)
            .map_err(|e| anyhow::anyhow!("service.address / service.interface: {e}"))?;
        tasks.spawn(crate::arbitration::follow_service(metro.clone(), addr, nfs_conns, stop.clone()));
    }

    {
        // Token file, event log and alarm worker of the API (api/handlers.rs).
        let state = AppState::new(cfg, metro.clone(), nfs_addr, api_addr, stop.clone())?;
        let stop = stop.clone();
        let listener = listeners.api;
        tasks.spawn(async move {
            if let Err(e) = api::serve(listener, state, stop.wait()).await {
                stop.fatal(format!("management API server: {e}"));
            }
        });
    }

    tasks.spawn(flusher(
        metro.clone(),
        Duration::from_millis(cfg.sync_interval_ms),
        stop.clone(),
    ));

    let link = cfg.peer.as_ref().map(|p| {
        let (metro, stop, listen) = (metro.clone(), stop.clone(), p.link_listen);
        tracing::info!(peer = %p.peer_name, peer_address = %p.peer_address, listen = %listen, domain = %p.domain, preferred = p.preferred, "replication link starting");
        tokio::spawn(async move {
            // It returns only when it cannot go on (its listener could not be bound).
            if let Err(e) = metro.run_link().await {
                stop.fatal(format!("replication link (link.listen = {listen}): {e}"));
            }
        })
    });

    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(array = %cfg.name, data_dir = %cfg.data_dir.display(), nfs = %nfs_addr, api = %api_addr, workers, "array serving");
    Ok(Running {
        metro,
        nfs_addr,
        api_addr,
        stop,
        tasks,
        link,
    })
}

/// The background flusher: the metro LOG every [`LOG_FLUSH_INTERVAL_MS`], and `Array::sync`
/// every `period` so UNSTABLE writes and namespace changes reach the disk without waiting for
/// a COMMIT. A failure of either is fatal.
async fn flusher(metro: Arc<Metro>, period: Duration, stop: Stop) {
    let mut sync = tokio::time::interval(period);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = tokio::time::interval(Duration::from_millis(LOG_FLUSH_INTERVAL_MS));
    log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first ticks are immediate; nothing to flush yet.
    sync.tick().await;
    log.tick().await;
    loop {
        let what = tokio::select! {
            _ = sync.tick() => "background flush",
            _ = log.tick() => "metro LOG flush",
            _ = stop.stopped() => return,
        };
        let m = metro.clone();
        let done = tokio::task::spawn_blocking(move || {
            if what == "background flush" {
                m.array().sync().map_err(|e| e.to_string())
            } else {
                m.flush_log().map_err(|e| e.to_string())
            }
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.fatal(format!("{what}: {e}"));
                return;
            }
            Err(e) => {
                stop.fatal(format!("{what} task: {e}"));
                return;
            }
        }
    }
}

/// Turns SIGTERM and SIGINT into a graceful stop; a second one exits at once.
pub fn watch_signals(stop: Stop) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            seen += 1;
            if seen > 1 {
                tracing::warn!(signal = name, "second signal: exiting without waiting");
                std::process::exit(130);
            }
            tracing::info!(
                signal = name,
                "stopping: no new connections, flushing the store"
            );
            stop.signal(name);
        }
    });
    Ok(())
}

impl Running {
    /// Waits for the stop, drains the servers, flushes (unless the stop is fatal).
    /// `Ok` means a clean stop after a signal.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let reason = self.stop.stopped().await;
        let drained = tokio::time::timeout(Duration::from_millis(DRAIN_TIMEOUT_MS), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                timeout_ms = DRAIN_TIMEOUT_MS,
                "servers did not finish in time; stopping anyway"
            );
            self.tasks.abort_all();
        }
        // No host request is in flight any more: the link may go.
        if let Some(link) = self.link.take() {
            link.abort();
        }
        // A fatal error may also have come while draining.
        let reason = match self.stop.reason() {
            Some(r @ StopReason::Fatal(_)) => r,
            _ => reason,
        };
        match reason {
            StopReason::Fatal(what) => Err(anyhow::anyhow!("array stopped: {what}")),
            StopReason::Signal(_) => {
                let m = self.metro.clone();
                tokio::task::spawn_blocking(move || {
                    // The LOG first: it names what the store's last flush may carry.
                    m.flush_log().context("final metro LOG flush failed")?;
                    m.array().sync().context("final flush failed")
                })
                .await
                .context("final flush task failed")??;
                tracing::info!("store flushed; array stopped");
                Ok(())
            }
        }
    }
}

/// `metrofs array`: runs until stopped.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let stop = Stop::new();
    watch_signals(stop.clone())?;
    if let Some(p) = &cfg.peer {
        warn_if_readable_by_others(&p.secret_file);
    }
    let array = open_array(&cfg).await?;
    let metro = open_metro(&cfg, array).await?;
    let listeners = Listeners::bind(&cfg).await?;
    let running = start(&cfg, metro, listeners, stop)?;
    running.wait().await
}

/// The shared secret lets anyone who reads it act as the peer array: say so when its file is
/// readable by group or others.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(secret_file = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the link secret file is readable by others: chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_config(dir: &std::path::Path) -> Config {
        Config {
            name: "t".into(),
            data_dir: dir.join("data"),
            nfs_listen: "127.0.0.1:0".parse().expect("addr"),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            sync_interval_ms: 10,
            worker_threads: None,
            log_level: tracing::Level::INFO,
            peer: None,
            quorum: None,
            service: None,
            api: crate::config::api::ApiSettings::default(),
        }
    }

    async fn started(dir: &std::path::Path) -> Running {
        let cfg = test_config(dir);
        let array = open_array(&cfg).await.expect("open");
        let metro = open_metro(&cfg, array).await.expect("metro");
        let listeners = Listeners::bind(&cfg).await.expect("bind");
        start(&cfg, metro, listeners, Stop::new()).expect("start")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signal_stops_cleanly_and_closes_the_listeners() {
        let tmp = tempfile::tempdir().expect("tmp");
        let running = started(tmp.path()).await;
        let (nfs, api, stop) = (running.nfs_addr, running.api_addr, running.stop.clone());
        tokio::net::TcpStream::connect(nfs)
            .await
            .expect("NFS accepts");
        tokio::net::TcpStream::connect(api)
            .await
            .expect("API accepts");
        // Let the flusher run a few times.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.signal("SIGTERM");
        running.wait().await.expect("clean stop");
        assert!(
            tokio::net::TcpStream::connect(nfs).await.is_err(),
            "NFS still accepting"
        );
        assert!(
            tokio::net::TcpStream::connect(api).await.is_err(),
            "API still accepting"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_error_stops_with_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let running = started(tmp.path()).await;
        let stop = running.stop.clone();
        stop.signal("SIGTERM");
        stop.fatal("disk on fire");
        let e = running.wait().await.expect_err("fatal stop is an error");
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    /// A config with a peer whose link listens on `link`, secret in `dir`.
    fn paired_config(dir: &std::path::Path, link: SocketAddr) -> Config {
        let secret = dir.join("secret");
        std::fs::write(&secret, [7u8; 32]).expect("secret");
        let text = format!(
            "name = \"a\"\ndata_dir = \"{}\"\nnfs_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\n\
             [domain]\nname = \"d\"\npreferred = true\n[peer]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n\
             [link]\nlisten = \"{link}\"\nsecret_file = \"{}\"\n",
            dir.join("data").display(),
            secret.display()
        );
        crate::config::RawConfig::parse(&text)
            .expect("parses")
            .validate(&crate::config::Overrides::default())
            .expect("valid")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_that_cannot_listen_stops_the_array_naming_the_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        // Taken after the start-time check, as by another process in between.
        let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold");
        let cfg = paired_config(tmp.path(), holder.local_addr().expect("addr"));
        assert!(Listeners::bind(&cfg)
            .await
            .err()
            .expect("checked at start")
            .to_string()
            .contains("link.listen"));
        let array = open_array(&cfg).await.expect("open");
        let metro = open_metro(&cfg, array).await.expect("metro");
        let listeners = Listeners {
            nfs: TcpListener::bind("127.0.0.1:0").await.expect("nfs"),
            api: TcpListener::bind("127.0.0.1:0").await.expect("api"),
        };
        let running = start(&cfg, metro, listeners, Stop::new()).expect("start");
        let e = tokio::time::timeout(Duration::from_secs(10), running.wait())
            .await
            .expect("stops by itself")
            .expect_err("a fatal stop");
        assert!(e.to_string().contains("link.listen"), "{e}");
    }

    #[tokio::test]
    async fn a_taken_port_names_the_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let holder = TcpListener::bind("127.0.0.1:0").await.expect("hold");
        let mut cfg = test_config(tmp.path());
        cfg.api_listen = holder.local_addr().expect("addr");
        let e = Listeners::bind(&cfg).await.err().expect("refused");
        assert!(e.to_string().contains("api_listen"), "{e}");
    }
}
