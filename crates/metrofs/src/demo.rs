//! `metrofs demo`: a metro pair in one process, nothing to configure.
//!
//! Two arrays, `site-a` (the preferred site) and `site-b`, each with its own data directory
//! under `./metrofs-demo` (or `--dir`), its own NFS port and API port, linked over loopback
//! with a secret generated on the first run (`DIR/link.secret`, mode 600). The file system
//! `demo` is created on site-a when absent, (re)exported to 127.0.0.0/8 read-write without
//! root squash (so the printed `nfs-cp` commands work as root), and paired with site-b when not
//! yet paired. Everything is kept between runs.
//!
//! Ports: site-a NFS 127.0.0.1:20490, API 127.0.0.1:7049 (the CLI's default, so `metrofs pair
//! list` needs no `--api`), link 127.0.0.1:20492; site-b NFS 20491, API 7050, link 20493. A
//! port that is taken falls back to a free one, and what is printed says which. Ctrl-C stops
//! both arrays cleanly.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use metrofs_core::{Cidr, ExportRules};
use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_metro::engine::PairState;
use metrofs_metro::Metro;
use tokio::net::TcpListener;

use crate::config::{Config, PeerSettings, DEFAULT_API_URL, DEFAULT_SYNC_INTERVAL_MS};
use crate::daemon::{self, Listeners, Running};
use crate::stop::Stop;

/// The demo's file system.
pub const DEMO_FS: &str = "demo";
/// The demo's domain.
pub const DEMO_DOMAIN: &str = "demo";
/// The demo's secret file, in its directory.
pub const SECRET_FILE: &str = "link.secret";
/// How long the demo waits for the link, then for the new pair to become Normal, before it
/// prints what it has.
const LINK_WAIT_MS: u64 = 15_000;
const NORMAL_WAIT_MS: u64 = 15_000;

/// One demo site: its name and the addresses it prefers.
struct SiteSpec {
    name: &'static str,
    preferred: bool,
    nfs: &'static str,
    api: &'static str,
    link: &'static str,
}

const SITES: [SiteSpec; 2] = [
    SiteSpec {
        name: "site-a",
        preferred: true,
        nfs: "127.0.0.1:20490",
        api: "127.0.0.1:7049",
        link: "127.0.0.1:20492",
    },
    SiteSpec {
        name: "site-b",
        preferred: false,
        nfs: "127.0.0.1:20491",
        api: "127.0.0.1:7050",
        link: "127.0.0.1:20493",
    },
];

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

/// `preferred` when it is free, else a free port on its IP. The link binds it itself a moment
/// later, so this only chooses.
async fn free_or_other(preferred: SocketAddr, what: &str) -> anyhow::Result<SocketAddr> {
    let l = bind_or_fallback(preferred, what).await?;
    l.local_addr().with_context(|| format!("{what} address"))
}

/// The demo's shared secret: made on the first run (32 random bytes, mode 600), then kept.
fn secret_file(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(SECRET_FILE);
    if !path.exists() {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom for the link secret")?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// A started demo site.
struct Site {
    cfg: Config,
    metro: Arc<Metro>,
    running: Running,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let secret_path = secret_file(&dir)?;
    let secret = Secret::from_file(&secret_path)
        .with_context(|| format!("the demo's secret {}", secret_path.display()))?;

    let mut links = Vec::new();
    for s in &SITES {
        links.push(
            free_or_other(
                s.link.parse().context("demo link address")?,
                &format!("{}'s link", s.name),
            )
            .await?,
        );
    }

    let stop = Stop::new();
    daemon::watch_signals(stop.clone())?;
    let mut sites = Vec::new();
    for (i, s) in SITES.iter().enumerate() {
        let peer = &SITES[1 - i];
        let cfg = Config {
            name: s.name.into(),
            data_dir: dir.join(s.name),
            nfs_listen: s.nfs.parse().context("demo NFS address")?,
            api_listen: s.api.parse().context("demo API address")?,
            sync_interval_ms: DEFAULT_SYNC_INTERVAL_MS,
            log_level: args.log_level,
            peer: Some(PeerSettings {
                domain: DEMO_DOMAIN.into(),
                preferred: s.preferred,
                peer_name: peer.name.into(),
                peer_address: links[1 - i].to_string(),
                link_listen: links[i],
                secret_file: secret_path.clone(),
                identity: Identity::new(DEMO_DOMAIN, s.name, secret.clone())?,
                link: LinkConfig::default(),
                recovery: metrofs_metro::Recovery::Automatic,
            }),
            quorum: None,
            service: None,
        };
        let array = daemon::open_array(&cfg).await?;
        let metro = daemon::open_metro(&cfg, array).await?;
        let listeners = Listeners {
            nfs: bind_or_fallback(cfg.nfs_listen, &format!("{}'s NFS", s.name)).await?,
            api: bind_or_fallback(cfg.api_listen, &format!("{}'s API", s.name)).await?,
        };
        if i == 0 {
            // The fs lives on site-a, which serves it.
            let a = metro.array().clone();
            tokio::task::spawn_blocking(move || match a.fs(DEMO_FS) {
                Some(_) => a.set_export(DEMO_FS, demo_rules()),
                None => a.create_fs(DEMO_FS, demo_rules()),
            })
            .await
            .context("demo setup task")?
            .context("cannot set up the demo file system")?;
        }
        let running = daemon::start(&cfg, metro.clone(), listeners, stop.clone())?;
        sites.push(Site {
            cfg,
            metro,
            running,
        });
    }

    let a = &sites[0];
    let pair = if let Some(p) = a.metro.pair_of_fs(DEMO_FS) {
        p
    } else {
        if !a.metro.wait_link(Duration::from_millis(LINK_WAIT_MS)).await {
            stop.signal("demo setup");
            anyhow::bail!("the link between site-a and site-b did not come up within {LINK_WAIT_MS} ms (run with --log-level info to see why)");
        }
        match a.metro.create_pair(DEMO_FS, SITES[1].name).await {
            Ok(p) => p,
            Err(e) => {
                stop.signal("demo setup");
                return Err(anyhow::anyhow!(e).context(format!(
                    "cannot pair '{DEMO_FS}' with site-b (a fresh --dir starts over)"
                )));
            }
        }
    };
    // A new or returning pair settles quickly on an idle demo: show it Normal when it is.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(NORMAL_WAIT_MS);
    let mut state = pair.state;
    while state != PairState::Normal && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = a.metro.pair_of_fs(DEMO_FS).map_or(state, |p| p.state);
    }

    let views: Vec<SiteView> = sites
        .iter()
        .map(|s| SiteView {
            name: s.cfg.name.clone(),
            data: s.cfg.data_dir.clone(),
            nfs: s.running.nfs_addr,
            api: s.running.api_addr,
            link: s
                .cfg
                .peer
                .as_ref()
                .map_or_else(String::new, |p| p.link_listen.to_string()),
        })
        .collect();
    print!("{}", instructions(&views, &pair.id, &state.to_string()));
    let _ = std::io::stdout().flush();

    let mut it = sites.into_iter();
    let (Some(sa), Some(sb)) = (it.next(), it.next()) else {
        anyhow::bail!("the demo has two sites");
    };
    let (ra, rb) = tokio::join!(sa.running.wait(), sb.running.wait());
    ra.context("site-a")?;
    rb.context("site-b")
}

/// What the instructions need of a site.
struct SiteView {
    name: String,
    data: PathBuf,
    nfs: SocketAddr,
    api: SocketAddr,
    link: String,
}

/// What the demo prints once both sites serve: site-a serves the fs.
fn instructions(sites: &[SiteView], pair: &str, state: &str) -> String {
    let a = &sites[0];
    let host = a.nfs.ip();
    let port = a.nfs.port();
    let fs = DEMO_FS;
    let q = format!("?nfsport={port}&mountport={port}&version=3");
    let url = |path: &str| format!("nfs://{host}/{fs}/{path}{q}");
    let exe =
        std::env::current_exe().map_or_else(|_| "metrofs".to_owned(), |p| p.display().to_string());
    let api_flag = |api: SocketAddr| {
        let u = format!("http://{api}");
        if u == DEFAULT_API_URL {
            String::new()
        } else {
            format!(" --api {u}")
        }
    };
    let mut o = String::from("metrofs demo is serving a metro pair (Ctrl-C stops both arrays)\n\n");
    for s in sites {
        o.push_str(&format!(
            "  {name}: NFS {nfs}, API http://{api}, link {link}\n  \x20       data {data}\n",
            name = s.name,
            nfs = s.nfs,
            api = s.api,
            link = s.link,
            data = s.data.display(),
        ));
    }
    let b = &sites[1];
    o.push_str(&format!(
        "\n\
         \x20 file system: {fs}, served by {an} (the preferred site), twin on {bn}\n\
         \x20 pair:        {pair}, state {state}\n\
         \n\
         libnfs URL:\n\
         \x20 {root}\n\
         \n\
         Try it (Debian: apt-get install libnfs-utils):\n\
         \x20 nfs-cp /etc/os-release '{file}'\n\
         \x20 nfs-ls '{root}'\n\
         \x20 nfs-cp '{file}' /tmp/os-release.copy\n\
         \x20 {exe} pair show {pair}{af}\n\
         \x20 {exe} pair verify {pair}{af}\n\
         \x20 {exe} pair list{bf}\n\
         \n\
         Linux kernel client:\n\
         \x20 mount -t nfs -o vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock {host}:/{fs} /mnt\n",
        an = a.name,
        bn = b.name,
        root = url(""),
        file = url("os-release"),
        af = api_flag(a.api),
        bf = api_flag(b.api),
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(nfs: &str, api: &str) -> Vec<SiteView> {
        vec![
            SiteView {
                name: "site-a".into(),
                data: "/d/site-a".into(),
                nfs: nfs.parse().expect("a"),
                api: api.parse().expect("a"),
                link: "127.0.0.1:20492".into(),
            },
            SiteView {
                name: "site-b".into(),
                data: "/d/site-b".into(),
                nfs: "127.0.0.1:20491".parse().expect("a"),
                api: "127.0.0.1:7050".parse().expect("a"),
                link: "127.0.0.1:20493".into(),
            },
        ]
    }

    #[test]
    fn instructions_name_the_ports() {
        let t = instructions(
            &views("127.0.0.1:20495", "127.0.0.1:7049"),
            "00000000000000ab",
            "Normal",
        );
        assert!(
            t.contains("nfs://127.0.0.1/demo/?nfsport=20495&mountport=20495&version=3"),
            "{t}"
        );
        assert!(
            t.contains("nfs-cp /etc/os-release 'nfs://127.0.0.1/demo/os-release?nfsport=20495"),
            "{t}"
        );
        assert!(
            t.contains("pair:        00000000000000ab, state Normal"),
            "{t}"
        );
        assert!(t.contains(" pair show 00000000000000ab\n"), "{t}");
        assert!(t.contains(" pair list --api http://127.0.0.1:7050\n"), "{t}");
        assert!(
            t.contains("site-b: NFS 127.0.0.1:20491, API http://127.0.0.1:7050"),
            "{t}"
        );
        let t = instructions(
            &views("127.0.0.1:20490", "127.0.0.1:5"),
            "ab",
            "Synchronizing",
        );
        assert!(t.contains(" pair show ab --api http://127.0.0.1:5\n"), "{t}");
    }

    #[test]
    fn the_secret_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tmp");
        let p = secret_file(tmp.path()).expect("made");
        let first = std::fs::read(&p).expect("read");
        assert_eq!(first.len(), 32);
        assert_eq!(
            std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        secret_file(tmp.path()).expect("kept");
        assert_eq!(std::fs::read(&p).expect("read"), first);
    }
}
