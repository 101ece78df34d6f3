//! `metrofs demo`: one array with a file system `demo`, in this process, nothing to configure.
//!
//! Data in `./metrofs-demo` (or `--dir`), kept between runs. NFS on 127.0.0.1:20490 and the API
//! on the array's default 127.0.0.1:7049 (so `metrofs fs list` needs no `--api`); a port that
//! is taken falls back to a free one, and what is printed says which. The fs `demo` is created
//! when absent and (re)exported to 127.0.0.0/8, read-write, no root squash, so the printed
//! `nfs-cp` commands work as root.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use metrofs_core::{Cidr, ExportRules};
use tokio::net::TcpListener;

use crate::config::{Config, DEFAULT_API_LISTEN, DEFAULT_API_URL, DEFAULT_SYNC_INTERVAL_MS};
use crate::daemon::{self, Listeners};
use crate::stop::Stop;

/// The demo's NFS address when it is free.
pub const DEMO_NFS_LISTEN: &str = "127.0.0.1:20490";
/// The demo's file system.
pub const DEMO_FS: &str = "demo";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo keeps its data (created if absent, kept between runs).
    #[arg(long, value_name = "DIR", default_value = "metrofs-demo")]
    pub dir: PathBuf,
    /// Log level on stderr: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = parse_level)]
    pub log_level: tracing::Level,
}

fn parse_level(s: &str) -> Result<tracing::Level, String> {
    crate::config::parse_level(s)
        .ok_or_else(|| "expected one of error, warn, info, debug, trace".into())
}

/// The demo's export: loopback, read-write, root not squashed.
fn demo_rules() -> ExportRules {
    ExportRules {
        clients: vec![Cidr {
            addr: [127, 0, 0, 0].into(),
            prefix: 8,
        }],
        read_only: false,
        root_squash: false,
        ..ExportRules::default()
    }
}

/// Binds `preferred`, or any free port on its IP when it is taken.
async fn bind_or_fallback(preferred: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(preferred).await {
        Ok(l) => Ok(l),
        Err(e) => {
            tracing::warn!(%preferred, error = %e, "{what} port taken, using a free one");
            TcpListener::bind(SocketAddr::new(preferred.ip(), 0))
                .await
                .with_context(|| format!("cannot listen for {what} on {}", preferred.ip()))
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let cfg = Config {
        name: "demo".into(),
        data_dir: std::path::absolute(&args.dir).unwrap_or(args.dir.clone()),
        nfs_listen: DEMO_NFS_LISTEN.parse().context("demo NFS address")?,
        api_listen: DEFAULT_API_LISTEN.parse().context("default API address")?,
        sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
        log_level: args.log_level,
    };
    let stop = Stop::new();
    daemon::watch_signals(stop.clone())?;
    let array = daemon::open_array(&cfg).await?;

    let a = array.clone();
    let info = tokio::task::spawn_blocking(move || match a.fs(DEMO_FS) {
        Some(_) => a.set_export(DEMO_FS, demo_rules()),
        None => a.create_fs(DEMO_FS, demo_rules()),
    })
    .await
    .context("demo setup task")?
    .context("cannot set up the demo file system")?;

    let listeners = Listeners {
        nfs: bind_or_fallback(cfg.nfs_listen, "NFS").await?,
        api: bind_or_fallback(cfg.api_listen, "the API").await?,
    };
    let running = daemon::start(&cfg, array, listeners, stop)?;
    print!(
        "{}",
        instructions(&cfg, running.nfs_addr, running.api_addr, &info.name)
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    running.wait().await
}

/// What the demo prints once it serves.
fn instructions(cfg: &Config, nfs: SocketAddr, api: SocketAddr, fs: &str) -> String {
    let host = nfs.ip();
    let port = nfs.port();
    let q = format!("?nfsport={port}&mountport={port}&version=3");
    let url = |path: &str| format!("nfs://{host}/{fs}/{path}{q}");
    let api_url = format!("http://{api}");
    let exe =
        std::env::current_exe().map_or_else(|_| "metrofs".to_owned(), |p| p.display().to_string());
    let api_flag = if api_url == DEFAULT_API_URL {
        String::new()
    } else {
        format!(" --api {api_url}")
    };
    format!(
        "metrofs demo is serving (Ctrl-C stops it)\n\
         \n\
         \x20 data:        {data}\n\
         \x20 NFS:         {nfs} (NFSv3 and MOUNT on one port, no portmapper)\n\
         \x20 API:         {api_url}\n\
         \x20 file system: {fs}, exported as /{fs} to 127.0.0.0/8, read-write, no root squash\n\
         \n\
         libnfs URL:\n\
         \x20 {root}\n\
         \n\
         Try it (Debian: apt-get install libnfs-utils):\n\
         \x20 nfs-cp /etc/os-release '{file}'\n\
         \x20 nfs-ls '{root}'\n\
         \x20 nfs-cp '{file}' /tmp/os-release.copy\n\
         \x20 {exe}{api_flag} fs list\n\
         \n\
         Linux kernel client:\n\
         \x20 mount -t nfs -o vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock {host}:/{fs} /mnt\n",
        data = cfg.data_dir.display(),
        root = url(""),
        file = url("os-release"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_name_the_ports() {
        let cfg = Config {
            name: "demo".into(),
            data_dir: "/d".into(),
            nfs_listen: DEMO_NFS_LISTEN.parse().expect("addr"),
            api_listen: DEFAULT_API_LISTEN.parse().expect("addr"),
            sync_interval_ms: 1000,
            log_level: tracing::Level::WARN,
        };
        let t = instructions(
            &cfg,
            "127.0.0.1:20491".parse().expect("a"),
            "127.0.0.1:7049".parse().expect("a"),
            "demo",
        );
        assert!(
            t.contains("nfs://127.0.0.1/demo/?nfsport=20491&mountport=20491&version=3"),
            "{t}"
        );
        assert!(
            t.contains("nfs-cp /etc/os-release 'nfs://127.0.0.1/demo/os-release?nfsport=20491"),
            "{t}"
        );
        assert!(!t.contains("--api"), "{t}");
        let t = instructions(
            &cfg,
            "127.0.0.1:20490".parse().expect("a"),
            "127.0.0.1:5".parse().expect("a"),
            "demo",
        );
        assert!(t.contains("--api http://127.0.0.1:5 fs list"), "{t}");
    }
}
