//! The array daemon: one array's store, its NFS front end, the management API and the
//! background flusher, run until a signal or a fatal error.
//!
//! Start, in order:
//! 1. create the data directory and open the store (crash recovery happens here);
//! 2. build the [`Array`] over it (a fresh write verifier for this run);
//! 3. bind both listeners (so a taken port is refused at start, naming the key);
//! 4. spawn the NFS server, the API server and the flusher, all watching one [`Stop`].
//!
//! Stop:
//! - SIGTERM / SIGINT: stop accepting (both servers end their accept loops), then one last
//!   `Array::sync`, then exit 0. A second signal exits at once.
//! - A local I/O error anywhere (flusher, API, NFS server): logged, no further flush (a failed
//!   fsync is not retried, STYLE.md 9), exit non-zero.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrofs_core::SystemClock;
use metrofs_metro::Array;
use metrofs_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::stop::{Stop, StopReason};

/// How long the servers get to finish after a stop before the process exits anyway.
const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// The two listeners, bound before anything is served.
pub struct Listeners {
    pub nfs: TcpListener,
    pub api: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `cfg`; an error names the config key.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let nfs = TcpListener::bind(cfg.nfs_listen)
            .await
            .with_context(|| format!("cannot listen on nfs_listen = {}", cfg.nfs_listen))?;
        let api = TcpListener::bind(cfg.api_listen)
            .await
            .with_context(|| format!("cannot listen on api_listen = {}", cfg.api_listen))?;
        Ok(Self { nfs, api })
    }
}

/// A started array.
pub struct Running {
    pub array: Arc<Array>,
    pub nfs_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub stop: Stop,
    tasks: JoinSet<()>,
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
    Ok(Array::new(Arc::new(store), Arc::new(SystemClock)))
}

/// Starts serving (steps 3 and 4 with already bound listeners).
pub fn start(
    cfg: &Config,
    array: Arc<Array>,
    listeners: Listeners,
    stop: Stop,
) -> anyhow::Result<Running> {
    let nfs_addr = listeners.nfs.local_addr().context("nfs listener address")?;
    let api_addr = listeners.api.local_addr().context("api listener address")?;
    let mut tasks = JoinSet::new();

    {
        let (array, stop) = (array.clone(), stop.clone());
        let listener = listeners.nfs;
        tasks.spawn(async move {
            metrofs_nfs::NfsServer::new(array)
                .serve(listener, stop.wait())
                .await;
        });
    }

    {
        let state = AppState {
            array: array.clone(),
            name: cfg.name.clone(),
            nfs_listen: nfs_addr.to_string(),
            stop: stop.clone(),
        };
        let stop = stop.clone();
        let listener = listeners.api;
        tasks.spawn(async move {
            if let Err(e) = api::serve(listener, state, stop.wait()).await {
                stop.fatal(format!("management API server: {e}"));
            }
        });
    }

    tasks.spawn(flusher(
        array.clone(),
        Duration::from_millis(cfg.sync_interval_ms),
        stop.clone(),
    ));

    tracing::info!(array = %cfg.name, data_dir = %cfg.data_dir.display(), nfs = %nfs_addr, api = %api_addr, "array serving");
    Ok(Running {
        array,
        nfs_addr,
        api_addr,
        stop,
        tasks,
    })
}

/// The background flusher: `Array::sync` every `period` so UNSTABLE writes and namespace
/// changes reach the disk without waiting for a COMMIT. A failure is fatal.
async fn flusher(array: Arc<Array>, period: Duration, stop: Stop) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; nothing to flush yet
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.stopped() => return,
        }
        let a = array.clone();
        match tokio::task::spawn_blocking(move || a.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.fatal(format!("background flush: {e}"));
                return;
            }
            Err(e) => {
                stop.fatal(format!("background flush task: {e}"));
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
        // A fatal error may also have come while draining.
        let reason = match self.stop.reason() {
            Some(r @ StopReason::Fatal(_)) => r,
            _ => reason,
        };
        match reason {
            StopReason::Fatal(what) => Err(anyhow::anyhow!(
                "array stopped after a local I/O error: {what}"
            )),
            StopReason::Signal(_) => {
                let a = self.array.clone();
                tokio::task::spawn_blocking(move || a.sync())
                    .await
                    .context("final flush task failed")?
                    .context("final flush failed")?;
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
    let array = open_array(&cfg).await?;
    let listeners = Listeners::bind(&cfg).await?;
    let running = start(&cfg, array, listeners, stop)?;
    running.wait().await
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
            log_level: tracing::Level::INFO,
        }
    }

    async fn started(dir: &std::path::Path) -> Running {
        let cfg = test_config(dir);
        let array = open_array(&cfg).await.expect("open");
        let listeners = Listeners::bind(&cfg).await.expect("bind");
        start(&cfg, array, listeners, Stop::new()).expect("start")
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
