//! `metrofs demo`: a metro pair and its quorum server as three real processes, nothing to
//! configure, so that killing the serving array shows the failover.
//!
//! The demo runs three children of its own binary, each in its own process group (a Ctrl-C on
//! the terminal reaches the demo only, which then stops them in order), each writing to a log
//! file in the demo's directory `DIR` (`--dir`, default `./metrofs-demo`, kept between runs):
//! - `quorum`: `metrofs quorum --listen 127.0.0.1:7300 --data DIR/quorum --domain
//!   demo=DIR/link.secret`, log `DIR/quorum.log`;
//! - `site-a`, the preferred site: `metrofs array --config DIR/site-a.toml` (NFS
//!   127.0.0.1:20490, API 127.0.0.1:7049 — the CLI's default —, link 127.0.0.1:20492), log
//!   `DIR/site-a.log`;
//! - `site-b`: `metrofs array --config DIR/site-b.toml` (NFS 20491, API 7050, link 20493), log
//!   `DIR/site-b.log`.
//!
//! The demo writes both configuration files at each start (a taken port falls back to a free
//! one, and the files and what is printed say which): domain `demo`, `[quorum] servers` = the
//! quorum above, `[domain] recovery = "automatic"`, no `[service]` address (everything is on
//! loopback: after a failover, hosts use the other site's port). The link's shared secret is
//! made on the first run (`DIR/link.secret`, mode 600); both arrays keep one API token,
//! `DIR/api.token`. Each child's pid is printed and kept in `DIR/NAME.pid` while it runs.
//!
//! Start, in order: leftovers of an earlier run still running are refused (found by their
//! command line in /proc); the quorum, then site-a, then site-b are started, each waited for
//! (its port, its API) before the next; then, through site-a's management API (the CLI's
//! client), the fs `demo` is created when absent, exported to 127.0.0.0/8 read-write without
//! root squash (so the printed `nfs-cp` commands work as root) and paired with site-b when not
//! yet paired; the demo waits for the pair to be Normal and served by site-a, and prints where
//! everything is and what to try.
//!
//! Then it supervises: every change of the pair (state, who serves, epoch, arbitrations) as the
//! arrays' APIs show it, and every child that ends, with the command that starts it again. It
//! never restarts a child itself. A process started again by hand with that command is found
//! (its command line names the same configuration file) and looked after as the child was.
//!
//! Stop (SIGINT, SIGTERM, SIGHUP): SIGTERM to the secondary array, then to the serving one, then
//! to the quorum, each waited for (SIGKILL after [`STOP_WAIT_MS`]); a second signal kills what
//! is left at once.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use metrofs_core::Clock as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::api::model::{CreateFs, CreatePair, FsView, Health, PairView, SetExport};
use crate::cli::auth::TokenSource;
use crate::cli::client::{segment, ApiClient, ClientError};
use crate::config::DEFAULT_API_URL;

/// The demo's file system.
pub const DEMO_FS: &str = "demo";
/// The demo's domain.
pub const DEMO_DOMAIN: &str = "demo";
/// The demo's secret file, in its directory.
pub const SECRET_FILE: &str = "link.secret";
/// Where the quorum server listens (a taken port falls back to a free one).
const QUORUM_LISTEN: &str = "127.0.0.1:7300";
/// How long a child may take to listen (the quorum) or to answer on its API (an array).
const START_WAIT_MS: u64 = 30_000;
/// How long the demo waits for the link before pairing.
const LINK_WAIT_MS: u64 = 15_000;
/// How long it waits for the pair to be Normal and served by site-a before printing what it
/// has (a returning site-a resynchronises, then the automatic recovery swaps back).
const NORMAL_WAIT_MS: u64 = 30_000;
/// How long a child gets after SIGTERM before SIGKILL: more than an array's drain (10 s) and
/// final flush.
const STOP_WAIT_MS: u64 = 30_000;
/// Period of the supervisor's look at the pair and at the processes.
const WATCH_INTERVAL_MS: u64 = 500;
/// Lines of a child's log shown when it ends with an error.
const LOG_TAIL_LINES: usize = 8;

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

/// Index of each child in [`Demo::procs`]; site `i` of [`SITES`] is child `i + 1`.
const QUORUM: usize = 0;
const SITE_A: usize = 1;
const SITE_B: usize = 2;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo keeps its data, configuration files, logs and pid files (created if
    /// absent, kept between runs).
    #[arg(long, value_name = "DIR", default_value = "metrofs-demo")]
    pub dir: PathBuf,
    /// Log level of the arrays (in DIR/site-a.log, DIR/site-b.log) and of the demo itself
    /// (stderr): error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = parse_level)]
    pub log_level: tracing::Level,
}

fn parse_level(s: &str) -> Result<tracing::Level, String> {
    crate::config::parse_level(s)
        .ok_or_else(|| "expected one of error, warn, info, debug, trace".into())
}

/// The demo's export: loopback, read-write, root not squashed.
fn demo_export() -> SetExport {
    SetExport {
        clients: vec!["127.0.0.0/8".into()],
        read_only: false,
        root_squash: false,
        anon_uid: None,
        anon_gid: None,
    }
}

/// The addresses of one run.
#[derive(Debug, Clone, Copy)]
struct Ports {
    quorum: SocketAddr,
    sites: [SitePorts; 2],
}

#[derive(Debug, Clone, Copy)]
struct SitePorts {
    nfs: SocketAddr,
    api: SocketAddr,
    link: SocketAddr,
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

/// Chooses every port of the run: the preferred one when free, else a free one. The children
/// bind them a moment later; all probes stay bound until every port is chosen, so no two
/// fallbacks get the same port.
async fn choose_ports() -> anyhow::Result<Ports> {
    /// Picks one port, its probe kept in `held`.
    async fn pick(
        held: &mut Vec<TcpListener>,
        addr: &str,
        what: &str,
    ) -> anyhow::Result<SocketAddr> {
        let l = bind_or_fallback(addr.parse().context("demo address")?, what).await?;
        let a = l.local_addr().with_context(|| format!("{what} address"))?;
        held.push(l);
        Ok(a)
    }
    let mut held = Vec::new();
    let quorum = pick(&mut held, QUORUM_LISTEN, "the quorum server").await?;
    let mut sites = Vec::new();
    for s in &SITES {
        sites.push(SitePorts {
            nfs: pick(&mut held, s.nfs, &format!("{}'s NFS", s.name)).await?,
            api: pick(&mut held, s.api, &format!("{}'s API", s.name)).await?,
            link: pick(&mut held, s.link, &format!("{}'s link", s.name)).await?,
        });
    }
    drop(held);
    let [a, b] = <[SitePorts; 2]>::try_from(sites).map_err(|_| anyhow::anyhow!("two sites"))?;
    Ok(Ports {
        quorum,
        sites: [a, b],
    })
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

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The configuration file of site `i`.
fn site_toml(i: usize, dir: &Path, ports: &Ports, level: tracing::Level) -> String {
    let s = &SITES[i];
    let p = &ports.sites[i];
    let peer = &SITES[1 - i];
    let path = |name: &str| toml_str(&dir.join(name).to_string_lossy());
    format!(
        "# Written by `metrofs demo` at each start (its ports may change there): edits are lost.\n\
         # Start this array by hand with: metrofs array --config {this}\n\
         name = \"{name}\"\n\
         data_dir = {data}\n\
         nfs_listen = \"{nfs}\"\n\
         api_listen = \"{api}\"\n\
         \n\
         [log]\n\
         level = \"{level}\"\n\
         \n\
         [domain]\n\
         name = \"{DEMO_DOMAIN}\"\n\
         preferred = {preferred}\n\
         recovery = \"automatic\"\n\
         \n\
         [peer]\n\
         name = \"{peer_name}\"\n\
         address = \"{peer_link}\"\n\
         \n\
         [link]\n\
         listen = \"{link}\"\n\
         secret_file = {secret}\n\
         \n\
         [quorum]\n\
         servers = [\"{quorum}\"]\n\
         \n\
         [api]\n\
         token_file = {token}\n",
        this = dir.join(format!("{}.toml", s.name)).display(),
        name = s.name,
        data = path(s.name),
        nfs = p.nfs,
        api = p.api,
        level = level.as_str().to_ascii_lowercase(),
        preferred = s.preferred,
        peer_name = peer.name,
        peer_link = ports.sites[1 - i].link,
        link = p.link,
        secret = path(SECRET_FILE),
        quorum = ports.quorum,
        token = path(crate::config::api::DEFAULT_TOKEN_FILE),
    )
}

/// Quotes `s` for a POSIX shell when it needs it.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,@+%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Now, `HH:MM:SS` UTC.
fn clock() -> String {
    let t = metrofs_core::SystemClock.now();
    let full = crate::cli::table::utc(u64::from(t.sec));
    full.get(11..).unwrap_or(&full).to_owned()
}

/// Prints a line of the supervisor, stamped; continuation lines are indented under the text.
fn say(msg: &str) {
    let mut o = String::new();
    for (n, line) in msg.lines().enumerate() {
        if n == 0 {
            let _ = writeln!(o, "{} {line}", clock());
        } else {
            let _ = writeln!(o, "         {line}");
        }
    }
    print!("{o}");
    let _ = std::io::stdout().flush();
}

/// The last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How a child runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// A child of the demo; its waiter thread reports the exit.
    Child(u32),
    /// Started outside the demo (the printed command), found in /proc; checked at each look.
    Adopted(u32),
    /// Not running.
    Down,
}

impl Run {
    fn pid(self) -> Option<u32> {
        match self {
            Run::Child(p) | Run::Adopted(p) => Some(p),
            Run::Down => None,
        }
    }
}

/// One of the three processes.
struct Proc {
    name: &'static str,
    /// The subcommand and its arguments (after the binary).
    args: Vec<String>,
    /// How its command line is recognised in /proc: the subcommand, then a flag naming
    /// `target` (the configuration file, or the quorum's data directory).
    sub: &'static str,
    flags: &'static [&'static str],
    target: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    run: Run,
}

impl Proc {
    /// The shell command that starts it again, its output appended to its log.
    fn restart_command(&self, exe: &Path) -> String {
        let mut words = vec![sh_quote(&exe.to_string_lossy())];
        words.extend(self.args.iter().map(|a| sh_quote(a)));
        let log = sh_quote(&self.log.to_string_lossy());
        format!("{} >>{log} 2>&1 &", words.join(" "))
    }

    fn write_pid(&self, pid: u32) {
        if let Err(e) = std::fs::write(&self.pid_file, format!("{pid}\n")) {
            tracing::warn!(file = %self.pid_file.display(), "cannot write the pid file: {e}");
        }
    }

    fn clear_pid(&self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Processes (other than the demo) whose command line runs this one.
    fn find_running(&self) -> Vec<u32> {
        find_processes(self.sub, self.flags, &self.target)
    }
}

/// The three processes of a demo in `dir`.
fn procs(dir: &Path, ports: Option<&Ports>) -> Vec<Proc> {
    let p = |name: &str| dir.join(name);
    let quorum_listen = ports.map_or_else(|| QUORUM_LISTEN.to_owned(), |p| p.quorum.to_string());
    let quorum = Proc {
        name: "quorum",
        args: vec![
            "quorum".into(),
            "--listen".into(),
            quorum_listen,
            "--data".into(),
            p("quorum").to_string_lossy().into_owned(),
            "--domain".into(),
            format!("{DEMO_DOMAIN}={}", p(SECRET_FILE).display()),
        ],
        sub: "quorum",
        flags: &["--data"],
        target: p("quorum"),
        log: p("quorum.log"),
        pid_file: p("quorum.pid"),
        run: Run::Down,
    };
    let mut all = vec![quorum];
    for s in &SITES {
        let config = p(&format!("{}.toml", s.name));
        all.push(Proc {
            name: s.name,
            args: vec![
                "array".into(),
                "--config".into(),
                config.to_string_lossy().into_owned(),
            ],
            sub: "array",
            flags: &["--config", "-c"],
            target: config,
            log: p(&format!("{}.log", s.name)),
            pid_file: p(&format!("{}.pid", s.name)),
            run: Run::Down,
        });
    }
    all
}

/// Whether a command line (`argv`, NUL-separated words as in /proc) runs subcommand `sub`
/// with one of `flags` naming `target`; a relative path is taken from `cwd`.
fn command_line_runs(
    argv: &[&[u8]],
    cwd: Option<&Path>,
    sub: &str,
    flags: &[&str],
    target: &Path,
) -> bool {
    if argv.get(1).copied() != Some(sub.as_bytes()) {
        return false;
    }
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let want = canon(target);
    let mut words = argv.iter().skip(2);
    while let Some(w) = words.next() {
        for f in flags {
            let value: Option<&[u8]> = if *w == f.as_bytes() {
                words.clone().next().copied()
            } else {
                w.strip_prefix(f.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
            };
            let Some(v) = value else { continue };
            let path = Path::new(std::ffi::OsStr::from_bytes(v));
            let path = match (path.is_relative(), cwd) {
                (true, Some(cwd)) => cwd.join(path),
                _ => path.to_owned(),
            };
            if canon(&path) == want {
                return true;
            }
        }
    }
    false
}

/// Live processes (not the demo itself) whose command line runs `sub` with `target`.
fn find_processes(sub: &str, flags: &[&str], target: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = raw
            .strip_suffix(b"\0")
            .unwrap_or(&raw)
            .split(|b| *b == 0)
            .collect();
        let cwd = std::fs::read_link(e.path().join("cwd")).ok();
        if command_line_runs(&argv, cwd.as_deref(), sub, flags, target) && alive(pid) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Sends `sig` to `pid`; a process already gone is not an error.
fn send(pid: u32, sig: rustix::process::Signal) {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process(p, sig);
}

/// A child's end, from its waiter thread.
struct Exited {
    idx: usize,
    pid: u32,
    status: std::io::Result<ExitStatus>,
}

/// SIGINT, SIGTERM and SIGHUP.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// What interrupted a start step.
enum Interrupt {
    Signal(&'static str),
    /// A child ended: what to tell.
    Died(String),
}

/// The supervisor.
struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    procs: Vec<Proc>,
    ports: Ports,
    exits_tx: mpsc::UnboundedSender<Exited>,
    exits: mpsc::UnboundedReceiver<Exited>,
    signals: Signals,
    /// The site serving the pair as last seen (the secondary is stopped first).
    serving: Arc<Mutex<Option<String>>>,
}

/// What the start found: the pair as it was when printed.
struct Started {
    pair: PairView,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    secret_file(&dir)?;
    let exe = std::env::current_exe().context("cannot find the metrofs binary to start")?;

    // An earlier run killed without its children leaves them running, holding the ports and
    // the data directories: say which, rather than starting a second set.
    for p in procs(&dir, None) {
        let pids = p.find_running();
        if let Some(pid) = pids.first() {
            anyhow::bail!(
                "{} of a demo in {} runs already (pid {pid}): stop that demo (Ctrl-C), or, if it was killed, stop this process (`kill {pid}`); then start the demo again",
                p.name,
                dir.display()
            );
        }
        p.clear_pid();
    }

    let ports = choose_ports().await?;
    for (i, site) in SITES.iter().enumerate() {
        let path = dir.join(format!("{}.toml", site.name));
        std::fs::write(&path, site_toml(i, &dir, &ports, args.log_level))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let (exits_tx, exits) = mpsc::unbounded_channel();
    let mut demo = Demo {
        exe,
        procs: procs(&dir, Some(&ports)),
        dir,
        ports,
        exits_tx,
        exits,
        signals: Signals::new()?,
        serving: Arc::new(Mutex::new(None)),
    };
    let started = match demo.start().await {
        Ok(Some(s)) => s,
        Ok(None) => return demo.stop_all().await,
        Err(e) => {
            let _ = demo.stop_all().await;
            return Err(e);
        }
    };
    print!("{}", instructions(&demo.view(&started.pair)));
    println!("\nWhat happens is shown below as it happens (times UTC):");
    let _ = std::io::stdout().flush();
    demo.watch(&started.pair.id).await;
    demo.stop_all().await
}

impl Demo {
    fn api_url(&self, site: usize) -> String {
        format!("http://{}", self.ports.sites[site].api)
    }

    fn client(&self, site: usize) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(&self.api_url(site))?
            .with_tokens(TokenSource {
                file: Some(self.dir.join(crate::config::api::DEFAULT_TOKEN_FILE)),
                value: None,
            })
            .with_reason(Some("metrofs demo set-up".into())))
    }

    /// Starts child `idx`: output appended to its log, its own process group, a thread
    /// waiting for its end.
    fn spawn(&mut self, idx: usize) -> anyhow::Result<u32> {
        let p = &self.procs[idx];
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .with_context(|| format!("cannot open {}", p.log.display()))?;
        let _ = writeln!(
            log,
            "=== {} UTC: metrofs demo starts {}: {} {}",
            crate::cli::table::utc(u64::from(metrofs_core::SystemClock.now().sec)),
            p.name,
            self.exe.display(),
            p.args.join(" ")
        );
        let out = log.try_clone().context("log file")?;
        let mut child = Command::new(&self.exe)
            .args(&p.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", p.name, self.exe.display()))?;
        let pid = child.id();
        p.write_pid(pid);
        let tx = self.exits_tx.clone();
        std::thread::Builder::new()
            .name(format!("wait-{}", p.name))
            .spawn(move || {
                let status = child.wait();
                let _ = tx.send(Exited { idx, pid, status });
            })
            .context("cannot start a waiter thread")?;
        self.procs[idx].run = Run::Child(pid);
        Ok(pid)
    }

    /// Runs `fut` unless a signal comes or a child ends first.
    async fn during<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Interrupt> {
        tokio::pin!(fut);
        tokio::select! {
            v = &mut fut => Ok(v),
            name = self.signals.recv() => Err(Interrupt::Signal(name)),
            Some(e) = self.exits.recv() => Err(Interrupt::Died(self.on_exit(e, true))),
        }
    }

    /// A start step: `Ok(None)` after a signal, an error when a child ended or the step
    /// failed.
    async fn step<T>(
        &mut self,
        fut: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<Option<T>> {
        match self.during(fut).await {
            Ok(r) => r.map(Some),
            Err(Interrupt::Signal(name)) => {
                say(&format!("{name}: stopping"));
                Ok(None)
            }
            Err(Interrupt::Died(why)) => Err(anyhow::anyhow!(why)),
        }
    }

    /// Starts the quorum, site-a, site-b, then sets up the pair through the API.
    async fn start(&mut self) -> anyhow::Result<Option<Started>> {
        self.spawn(QUORUM)?;
        let addr = self.ports.quorum;
        let log = self.procs[QUORUM].log.clone();
        if self.step(wait_listening(addr, log)).await?.is_none() {
            return Ok(None);
        }
        for idx in [SITE_A, SITE_B] {
            self.spawn(idx)?;
            let client = self.client(idx - 1)?;
            let name = self.procs[idx].name;
            let log = self.procs[idx].log.clone();
            let url = self.api_url(idx - 1);
            let wait = blocking(move || wait_health(&client, &url, name, &log));
            if self.step(wait).await?.is_none() {
                return Ok(None);
            }
        }
        let (a, b) = (self.client(0)?, self.client(1)?);
        let Some(pair) = self.step(blocking(move || setup(&a, &b))).await? else {
            return Ok(None);
        };
        *self
            .serving
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(pair.serving.clone());
        Ok(Some(Started { pair }))
    }

    /// What [`instructions`] needs.
    fn view(&self, pair: &PairView) -> View {
        let sites = SITES
            .iter()
            .enumerate()
            .map(|(i, s)| SiteView {
                name: s.name.to_owned(),
                pid: self.procs[i + 1].run.pid().unwrap_or(0),
                nfs: self.ports.sites[i].nfs,
                api: self.ports.sites[i].api,
                link: self.ports.sites[i].link,
                config: self.procs[i + 1].target.clone(),
                log: self.procs[i + 1].log.clone(),
                pid_file: self.procs[i + 1].pid_file.clone(),
                restart: self.procs[i + 1].restart_command(&self.exe),
            })
            .collect();
        View {
            exe: self.exe.display().to_string(),
            quorum_pid: self.procs[QUORUM].run.pid().unwrap_or(0),
            quorum: self.ports.quorum,
            quorum_data: self.procs[QUORUM].target.clone(),
            quorum_log: self.procs[QUORUM].log.clone(),
            sites,
            pair: pair.id.clone(),
            state: pair.state.clone(),
            serving: pair.serving.clone(),
            epoch: pair.epoch,
        }
    }

    /// Handles a child's end: marks it down, and says what happened and how to start it
    /// again (with the end of its log when it failed).
    fn on_exit(&mut self, e: Exited, starting: bool) -> String {
        let p = &mut self.procs[e.idx];
        if p.run != Run::Child(e.pid) {
            return String::new();
        }
        p.run = Run::Down;
        p.clear_pid();
        let status = match &e.status {
            Ok(s) => s.to_string(),
            Err(err) => format!("unknown ({err})"),
        };
        let failed = matches!(&e.status, Ok(s) if s.code().is_some_and(|c| c != 0));
        let mut m = format!("{} (pid {}) ended: {status}", p.name, e.pid);
        if failed || starting {
            let _ = write!(
                m,
                "\nthe end of {}:\n{}",
                p.log.display(),
                log_tail(&p.log, LOG_TAIL_LINES)
            );
        }
        if !starting {
            let _ = write!(m, "\nstart it again: {}", p.restart_command(&self.exe));
        }
        m
    }

    /// Looks at processes that are not the demo's children: adopted ones that ended, and
    /// ones started again by hand.
    fn look_at_processes(&mut self) {
        for idx in 0..self.procs.len() {
            let p = &mut self.procs[idx];
            match p.run {
                Run::Child(_) => {}
                Run::Adopted(pid) => {
                    if !alive(pid) {
                        p.run = Run::Down;
                        p.clear_pid();
                        say(&format!(
                            "{} (pid {pid}) ended\nstart it again: {}",
                            p.name,
                            p.restart_command(&self.exe)
                        ));
                    }
                }
                Run::Down => {
                    if let Some(&pid) = p.find_running().first() {
                        p.run = Run::Adopted(pid);
                        p.write_pid(pid);
                        say(&format!(
                            "{} is back: pid {pid}, started outside the demo (Ctrl-C here stops it too)",
                            p.name
                        ));
                    }
                }
            }
        }
    }

    /// Supervises until a signal: pair changes, children that end, processes that return.
    async fn watch(&mut self, pair: &str) {
        let (tx, mut lines) = mpsc::unbounded_channel::<String>();
        let clients = match (self.client(0), self.client(1)) {
            (Ok(a), Ok(b)) => Some([a, b]),
            _ => None,
        };
        if let Some(clients) = clients {
            let serving = self.serving.clone();
            let id = pair.to_owned();
            let spawned = std::thread::Builder::new()
                .name("demo-watch".into())
                .spawn(move || watch_pair(&clients, &id, &serving, &tx));
            if let Err(e) = spawned {
                say(&format!("cannot watch the pair: {e}"));
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(WATCH_INTERVAL_MS));
        loop {
            tokio::select! {
                name = self.signals.recv() => {
                    say(&format!("{name}: stopping"));
                    return;
                }
                Some(e) = self.exits.recv() => {
                    let m = self.on_exit(e, false);
                    if !m.is_empty() {
                        say(&m);
                    }
                }
                Some(line) = lines.recv() => say(&line),
                _ = tick.tick() => self.look_at_processes(),
            }
        }
    }

    /// Stops everything that runs: the secondary array, the serving one, the quorum. An error
    /// when one did not stop cleanly.
    async fn stop_all(&mut self) -> anyhow::Result<()> {
        let serving = self
            .serving
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| SITES[0].name.to_owned());
        let order = if serving == SITES[1].name {
            [SITE_A, SITE_B, QUORUM]
        } else {
            [SITE_B, SITE_A, QUORUM]
        };
        let mut problems = Vec::new();
        for idx in order {
            match self.stop_one(idx).await {
                Ok(()) => {}
                Err(StopError::Unclean(why)) => problems.push(why),
                Err(StopError::Hurry) => {
                    for p in &mut self.procs {
                        if let Some(pid) = p.run.pid() {
                            send(pid, rustix::process::Signal::KILL);
                            p.run = Run::Down;
                            p.clear_pid();
                        }
                    }
                    say("second signal: killed what was left (SIGKILL)");
                    anyhow::bail!("stopped with SIGKILL after a second signal");
                }
            }
        }
        if problems.is_empty() {
            say("stopped");
            Ok(())
        } else {
            anyhow::bail!(problems.join("; "))
        }
    }

    /// SIGTERM to one process, waited for; SIGKILL after [`STOP_WAIT_MS`].
    async fn stop_one(&mut self, idx: usize) -> Result<(), StopError> {
        let Some(pid) = self.procs[idx].run.pid() else {
            return Ok(());
        };
        let name = self.procs[idx].name;
        say(&format!("stopping {name} (pid {pid})"));
        send(pid, rustix::process::Signal::TERM);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(STOP_WAIT_MS);
        let mut killed = false;
        loop {
            if self.procs[idx].run == Run::Down {
                return Ok(());
            }
            let adopted = matches!(self.procs[idx].run, Run::Adopted(_));
            tokio::select! {
                _ = self.signals.recv() => return Err(StopError::Hurry),
                Some(e) = self.exits.recv() => {
                    let mine = e.idx == idx && e.pid == pid;
                    let clean = matches!(&e.status, Ok(s) if s.success()
                        || std::os::unix::process::ExitStatusExt::signal(s) == Some(15));
                    let status = match &e.status {
                        Ok(s) => s.to_string(),
                        Err(err) => err.to_string(),
                    };
                    let p = &mut self.procs[e.idx];
                    if p.run == Run::Child(e.pid) {
                        p.run = Run::Down;
                        p.clear_pid();
                    }
                    if mine {
                        if killed {
                            return Err(StopError::Unclean(format!("{name} did not stop within {STOP_WAIT_MS} ms: killed")));
                        }
                        if !clean {
                            return Err(StopError::Unclean(format!("{name} stopped with {status} (see {})", p.log.display())));
                        }
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(50)), if adopted => {
                    if !alive(pid) {
                        self.procs[idx].run = Run::Down;
                        self.procs[idx].clear_pid();
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(deadline), if !killed => {
                    say(&format!("{name} (pid {pid}) did not stop within {STOP_WAIT_MS} ms: SIGKILL"));
                    send(pid, rustix::process::Signal::KILL);
                    killed = true;
                }
            }
        }
    }
}

enum StopError {
    /// A second signal: kill the rest now.
    Hurry,
    Unclean(String),
}

/// Runs blocking work (the API client) off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("demo task failed")?
}

/// Waits until `addr` accepts connections.
async fn wait_listening(addr: SocketAddr, log: PathBuf) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(START_WAIT_MS);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the quorum server does not listen on {addr} after {START_WAIT_MS} ms; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the API at `url` answers as array `name`.
fn wait_health(c: &ApiClient, url: &str, name: &str, log: &Path) -> anyhow::Result<Health> {
    let deadline = std::time::Instant::now() + Duration::from_millis(START_WAIT_MS);
    loop {
        let last = match c.get::<Health>("/api/health") {
            Ok(h) if h.array == name => return Ok(h),
            Ok(h) => format!("the API there answers as array '{}'", h.array),
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{name}'s API at {url} did not answer within {START_WAIT_MS} ms ({last}); see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes the pair when there is none: the fs on site-a (created when absent, exported), the
/// link up, then `POST /api/pairs`. Then waits for Normal with site-a serving.
fn setup(a: &ApiClient, b: &ApiClient) -> anyhow::Result<PairView> {
    let fs_path = format!("/api/fs/{}", segment(DEMO_FS));
    let pairs: Vec<PairView> = a.get("/api/pairs")?;
    let pair = if let Some(p) = pairs.into_iter().find(|p| p.fs == DEMO_FS) {
        // Kept from an earlier run; its export is set again on the side that serves it (a
        // tour may have changed it).
        let serving = if p.serving == SITES[1].name { b } else { a };
        if let Err(e) = serving.put::<_, FsView>(&format!("{fs_path}/export"), &demo_export()) {
            tracing::warn!("cannot set the demo's export again: {e}");
        }
        p
    } else {
        match a.get::<FsView>(&fs_path) {
            Ok(_) => {}
            Err(ClientError::Refused { status: 404, .. }) => {
                let _: FsView = a.post(
                    "/api/fs",
                    &CreateFs {
                        name: DEMO_FS.into(),
                    },
                )?;
            }
            Err(e) => return Err(e.into()),
        }
        let _: FsView = a.put(&format!("{fs_path}/export"), &demo_export())?;
        let deadline = std::time::Instant::now() + Duration::from_millis(LINK_WAIT_MS);
        loop {
            let h: Health = a.get("/api/health")?;
            if h.link.as_deref() == Some("Up") {
                break;
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("the link between site-a and site-b did not come up within {LINK_WAIT_MS} ms; see the logs");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        a.post(
            "/api/pairs",
            &CreatePair {
                fs: DEMO_FS.into(),
                remote: SITES[1].name.into(),
            },
        )
        .map_err(|e| {
            anyhow::anyhow!(e).context(format!(
                "cannot pair '{DEMO_FS}' with site-b (a fresh --dir starts over)"
            ))
        })?
    };
    // A new or returning pair settles quickly on an idle demo: show it Normal, served by the
    // preferred site, when it is.
    let path = format!("/api/pairs/{}", segment(&pair.id));
    let deadline = std::time::Instant::now() + Duration::from_millis(NORMAL_WAIT_MS);
    let mut last = pair;
    while !(last.state == "Normal" && last.serving == SITES[0].name)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(p) = a
            .get::<PairView>(&path)
            .or_else(|_| b.get::<PairView>(&path))
        {
            last = p;
        }
    }
    Ok(last)
}

/// The pair as both arrays show it, in one line, and the last arbitration.
fn pair_line(views: &[Option<PairView>; 2]) -> Option<(String, Option<String>)> {
    // The view of the side that serves, else any.
    let best = views
        .iter()
        .flatten()
        .find(|p| p.role == "Primary" && p.array == p.serving)
        .or_else(|| views.iter().flatten().next())?;
    let mut line = format!(
        "pair {}, {} serves (epoch {})",
        best.state, best.serving, best.epoch
    );
    match best.phase.as_str() {
        "Open" => {}
        "Deciding" => {
            let _ = write!(line, ", {} deciding (changes wait)", best.array);
        }
        "Stopped" => {
            let _ = write!(line, ", {} stopped (accepts no change)", best.array);
        }
        other => {
            let _ = write!(line, ", {} {other}", best.array);
        }
    }
    if best.forced {
        line.push_str(", force-started");
    }
    for (i, v) in views.iter().enumerate() {
        if v.is_none() {
            let _ = write!(line, "; {} does not answer", SITES[i].name);
        }
    }
    let arbitration = best.last_arbitration.as_ref().map(|a| {
        format!(
            "arbitration (epoch {}): asked by {}, {}: {}",
            a.epoch,
            a.asked_by,
            a.winner
                .as_ref()
                .map_or_else(|| "nobody won".to_owned(), |w| format!("{w} won")),
            a.reason
        )
    });
    Some((line, arbitration))
}

/// The supervisor's look at the pair, on its own thread (the API client blocks): a line each
/// time the pair changes, until the receiver is gone.
fn watch_pair(
    clients: &[ApiClient; 2],
    id: &str,
    serving: &Mutex<Option<String>>,
    tx: &mpsc::UnboundedSender<String>,
) {
    let path = format!("/api/pairs/{}", segment(id));
    let mut last_line: Option<String> = None;
    let mut last_arb: Option<Option<String>> = None;
    let mut unknown_said = false;
    while !tx.is_closed() {
        let views = [
            clients[0].get::<PairView>(&path).ok(),
            clients[1].get::<PairView>(&path).ok(),
        ];
        match pair_line(&views) {
            Some((line, arb)) => {
                unknown_said = false;
                if let Some(s) = views.iter().flatten().find(|p| p.array == p.serving) {
                    if let Ok(mut g) = serving.lock() {
                        *g = Some(s.serving.clone());
                    }
                }
                // The arbitration known at the start is old news; a new one is told first.
                if let Some(prev) = &last_arb {
                    if *prev != arb {
                        if let Some(a) = &arb {
                            let _ = tx.send(a.clone());
                        }
                    }
                }
                last_arb = Some(arb);
                if last_line.as_ref() != Some(&line) {
                    let _ = tx.send(line.clone());
                    last_line = Some(line);
                }
            }
            None => {
                if !unknown_said {
                    let _ = tx.send("pair: neither array answers".into());
                    unknown_said = true;
                    last_line = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(WATCH_INTERVAL_MS));
    }
}

/// What the instructions need of a site.
struct SiteView {
    name: String,
    pid: u32,
    nfs: SocketAddr,
    api: SocketAddr,
    link: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    restart: String,
}

/// What the instructions need.
struct View {
    exe: String,
    quorum_pid: u32,
    quorum: SocketAddr,
    quorum_data: PathBuf,
    quorum_log: PathBuf,
    sites: Vec<SiteView>,
    pair: String,
    state: String,
    serving: String,
    epoch: u64,
}

/// What the demo prints once the pair is set up.
fn instructions(v: &View) -> String {
    let exe = sh_quote(&v.exe);
    let fs = DEMO_FS;
    let url = |s: &SiteView, path: &str| {
        let (host, port) = (s.nfs.ip(), s.nfs.port());
        format!("nfs://{host}/{fs}/{path}?nfsport={port}&mountport={port}&version=3")
    };
    let api_flag = |s: &SiteView| {
        let u = format!("http://{}", s.api);
        if u == DEFAULT_API_URL {
            String::new()
        } else {
            format!(" --api {u}")
        }
    };
    let mut o = String::from(
        "metrofs demo: two arrays pair a file system, a quorum server arbitrates; three processes\n\
         (Ctrl-C here stops them all)\n\n",
    );
    let _ = writeln!(
        o,
        "  quorum: pid {}, listens on {}\n          data {}, log {}",
        v.quorum_pid,
        v.quorum,
        v.quorum_data.display(),
        v.quorum_log.display()
    );
    for s in &v.sites {
        let _ = writeln!(
            o,
            "  {}: pid {}, NFS {}, API http://{}, link {}\n          config {}, log {}",
            s.name,
            s.pid,
            s.nfs,
            s.api,
            s.link,
            s.config.display(),
            s.log.display()
        );
    }
    let _ = writeln!(
        o,
        "  (each pid is also in {})",
        v.sites
            .first()
            .map(|s| s.pid_file.with_file_name("NAME.pid").display().to_string())
            .unwrap_or_default()
    );
    // The serving site, and the other.
    let si = v
        .sites
        .iter()
        .position(|s| s.name == v.serving)
        .unwrap_or(0);
    let (s, t) = (&v.sites[si], &v.sites[1 - si]);
    let preferred = if si == 0 { " (the preferred site)" } else { "" };
    let _ = write!(
        o,
        "\n  file system: {fs}, served by {sn}{preferred}, twin on {tn}\n\
         \x20 pair:        {pair}, state {state}, epoch {epoch}\n\
         \n\
         Watch it: the dashboard (topology with live colours, pair state and sync, latency,\n\
         alarms, events; pause / resume / swap buttons) is served by {sn}'s API at\n\
         \x20 http://{sapi}/\n\
         ({tn}'s is http://{tapi}/), and the whole domain at a glance (arrays, link, quorum,\n\
         who serves, alarms, recent events) is\n\
         \x20 {exe} status{sf}\n\
         \n\
         libnfs URLs (NFSv3 and MOUNT on one port):\n",
        sn = s.name,
        tn = t.name,
        sapi = s.api,
        tapi = t.api,
        sf = api_flag(s),
        pair = v.pair,
        state = v.state,
        epoch = v.epoch,
    );
    for x in &v.sites {
        let _ = writeln!(o, "  {}: {}", x.name, url(x, ""));
    }
    let _ = write!(
        o,
        "\n\
         Try it (Debian: apt-get install libnfs-utils):\n\
         \x20 nfs-cp /etc/os-release '{file}'\n\
         \x20 nfs-ls '{root}'\n\
         \x20 nfs-cp '{file}' /tmp/os-release.copy\n\
         \x20 {exe} pair show {pair}{sf}\n\
         \x20 {exe} pair verify {pair}{sf}\n\
         \n\
         Fail over: kill {sn}, which serves; {tn} takes over, write through it:\n\
         \x20 kill -9 $(cat {pidfile})\n\
         \x20 {exe} pair show {pair}{tf}\n\
         \x20 nfs-cp /etc/hostname '{tfile}'\n\
         Bring {sn} back: it resynchronises{back}:\n\
         \x20 {restart}\n\
         \x20 {exe} pair show {pair}{tf} --wait\n\
         \n\
         Linux kernel client ({sn}'s port; hosts that follow a failover mount a [service] address):\n\
         \x20 mount -t nfs -o vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock {host}:/{fs} /mnt\n",
        file = url(s, "os-release"),
        root = url(s, ""),
        pair = v.pair,
        sf = api_flag(s),
        tf = api_flag(t),
        sn = s.name,
        tn = t.name,
        pidfile = sh_quote(&s.pid_file.to_string_lossy()),
        tfile = url(t, "hostname"),
        back = if si == 0 {
            ", then serves again (recovery is automatic)"
        } else {
            ""
        },
        restart = s.restart,
        port = s.nfs.port(),
        host = s.nfs.ip(),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        Ports {
            quorum: a("127.0.0.1:7300"),
            sites: [
                SitePorts {
                    nfs: a("127.0.0.1:20495"),
                    api: a("127.0.0.1:7049"),
                    link: a("127.0.0.1:20492"),
                },
                SitePorts {
                    nfs: a("127.0.0.1:20491"),
                    api: a("127.0.0.1:7050"),
                    link: a("127.0.0.1:20493"),
                },
            ],
        }
    }

    fn view(serving: &str) -> View {
        let dir = Path::new("/d");
        let all = procs(dir, Some(&ports()));
        let exe = Path::new("/bin/metrofs");
        let p = ports();
        View {
            exe: exe.display().to_string(),
            quorum_pid: 10,
            quorum: p.quorum,
            quorum_data: all[QUORUM].target.clone(),
            quorum_log: all[QUORUM].log.clone(),
            sites: (0..2)
                .map(|i| SiteView {
                    name: SITES[i].name.into(),
                    pid: 11 + u32::try_from(i).expect("small"),
                    nfs: p.sites[i].nfs,
                    api: p.sites[i].api,
                    link: p.sites[i].link,
                    config: all[i + 1].target.clone(),
                    log: all[i + 1].log.clone(),
                    pid_file: all[i + 1].pid_file.clone(),
                    restart: all[i + 1].restart_command(exe),
                })
                .collect(),
            pair: "00000000000000ab".into(),
            state: "Normal".into(),
            serving: serving.into(),
            epoch: 1,
        }
    }

    #[test]
    fn instructions_name_the_processes_ports_and_failover() {
        let t = instructions(&view("site-a"));
        for want in [
            "  quorum: pid 10, listens on 127.0.0.1:7300\n          data /d/quorum, log /d/quorum.log\n",
            "  site-a: pid 11, NFS 127.0.0.1:20495, API http://127.0.0.1:7049, link 127.0.0.1:20492\n          config /d/site-a.toml, log /d/site-a.log\n",
            "  site-b: pid 12, NFS 127.0.0.1:20491, API http://127.0.0.1:7050",
            "served by site-a (the preferred site), twin on site-b",
            "pair:        00000000000000ab, state Normal, epoch 1",
            "  site-a: nfs://127.0.0.1/demo/?nfsport=20495&mountport=20495&version=3\n",
            "  site-b: nfs://127.0.0.1/demo/?nfsport=20491&mountport=20491&version=3\n",
            "nfs-cp /etc/os-release 'nfs://127.0.0.1/demo/os-release?nfsport=20495",
            " pair show 00000000000000ab\n",
            " pair verify 00000000000000ab\n",
            "kill -9 $(cat /d/site-a.pid)\n",
            " pair show 00000000000000ab --api http://127.0.0.1:7050\n",
            "nfs-cp /etc/hostname 'nfs://127.0.0.1/demo/hostname?nfsport=20491",
            "  /bin/metrofs array --config /d/site-a.toml >>/d/site-a.log 2>&1 &\n",
            " pair show 00000000000000ab --api http://127.0.0.1:7050 --wait\n",
            "port=20495,mountport=20495",
            "served by site-a's API at\n  http://127.0.0.1:7049/\n(site-b's is http://127.0.0.1:7050/)",
            "\n  /bin/metrofs status\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        // The dashboard and status come before the commands to try.
        let dashboard = t.find("  http://127.0.0.1:7049/\n").expect("dashboard URL");
        assert!(dashboard < t.find("Try it").expect("Try it"), "{t}");
        // site-b serving (the wait ended before the swap back): the failover is the other way,
        // and the dashboard and status to look at are site-b's.
        let t = instructions(&view("site-b"));
        assert!(t.contains("kill -9 $(cat /d/site-b.pid)\n"), "{t}");
        assert!(t.contains(" pair show 00000000000000ab\n"), "{t}");
        assert!(t.contains("array --config /d/site-b.toml"), "{t}");
        assert!(
            t.contains("served by site-b's API at\n  http://127.0.0.1:7050/\n(site-a's is http://127.0.0.1:7049/)"),
            "{t}"
        );
        assert!(
            t.contains("\n  /bin/metrofs status --api http://127.0.0.1:7050\n"),
            "{t}"
        );
    }

    #[test]
    fn site_configs_are_valid_and_arbitrated() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        secret_file(dir).expect("secret");
        for i in 0..2 {
            let path = dir.join(format!("{}.toml", SITES[i].name));
            std::fs::write(&path, site_toml(i, dir, &ports(), tracing::Level::INFO))
                .expect("write");
            let cfg = crate::config::Config::load(&path, &crate::config::Overrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(cfg.name, SITES[i].name);
            assert_eq!(cfg.data_dir, dir.join(SITES[i].name));
            assert_eq!(cfg.nfs_listen, ports().sites[i].nfs);
            assert_eq!(cfg.api_listen, ports().sites[i].api);
            assert!(cfg.service.is_none());
            let peer = cfg.peer.expect("peer");
            assert_eq!(peer.preferred, i == 0);
            assert_eq!(peer.domain, DEMO_DOMAIN);
            assert_eq!(peer.peer_name, SITES[1 - i].name);
            assert_eq!(peer.peer_address, ports().sites[1 - i].link.to_string());
            assert_eq!(peer.link_listen, ports().sites[i].link);
            assert_eq!(peer.recovery, metrofs_metro::Recovery::Automatic);
            let q = cfg.quorum.expect("quorum");
            assert_eq!(q.servers, vec!["127.0.0.1:7300".to_owned()]);
            assert_eq!(
                cfg.api.token_file(&cfg.data_dir),
                dir.join(crate::config::api::DEFAULT_TOKEN_FILE)
            );
        }
    }

    #[test]
    fn command_lines_are_recognised() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("site-a.toml");
        std::fs::write(&target, "").expect("write");
        let t = target.to_string_lossy().into_owned();
        let flags = &["--config", "-c"];
        let yes = |argv: &[&str], cwd: Option<&Path>| {
            let argv: Vec<&[u8]> = argv.iter().map(|w| w.as_bytes()).collect();
            command_line_runs(&argv, cwd, "array", flags, &target)
        };
        assert!(yes(&["metrofs", "array", "--config", &t], None));
        assert!(yes(&["/x/metrofs", "array", "-c", &t], None));
        assert!(yes(&["metrofs", "array", &format!("--config={t}")], None));
        assert!(yes(
            &["metrofs", "array", "--config", "site-a.toml"],
            Some(tmp.path())
        ));
        assert!(!yes(
            &["metrofs", "array", "--config", "site-b.toml"],
            Some(tmp.path())
        ));
        assert!(!yes(&["metrofs", "quorum", "--config", &t], None));
        assert!(!yes(&["metrofs", "array", "--data-dir", &t], None));
        assert!(!yes(&["vi", &t], None));
        assert!(!yes(&[], None));
    }

    #[test]
    fn this_process_is_alive_and_not_found_as_an_array() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(find_processes("array", &["--config"], &tmp.path().join("x.toml")).is_empty());
    }

    fn pair_view(
        array: &str,
        role: &str,
        serving: &str,
        state: &str,
        phase: &str,
        epoch: u64,
    ) -> PairView {
        serde_json::from_value(serde_json::json!({
            "id": "00000000000000ab", "fs": "demo", "fs_id": "0000000000000001",
            "state": state, "state_since": 0, "array": array, "role": role,
            "serving": serving, "secondary": if serving == "site-a" { "site-b" } else { "site-a" },
            "preferred_site": "site-a", "data": [], "link": "Down", "epoch": epoch,
            "dcl": { "bytes": 0, "dirs": 0, "inodes": 0, "chunks": 0, "full": false },
            "alarms": [], "events": [], "phase": phase, "quorum_mode": "quorum", "quorum": [],
            "last_arbitration": { "time": 0, "asked_by": "site-b", "winner": "site-b", "epoch": epoch,
                                  "reason": "link lost" },
            "forced": false,
        }))
        .expect("a PairView")
    }

    #[test]
    fn the_pair_line_takes_the_serving_side_and_names_who_is_silent() {
        let a = pair_view(
            "site-a",
            "Secondary",
            "site-b",
            "Synchronizing",
            "Stopped",
            2,
        );
        let b = pair_view("site-b", "Primary", "site-b", "Synchronizing", "Open", 2);
        let (line, arb) = pair_line(&[Some(a), Some(b.clone())]).expect("a line");
        assert_eq!(line, "pair Synchronizing, site-b serves (epoch 2)");
        assert_eq!(
            arb.as_deref(),
            Some("arbitration (epoch 2): asked by site-b, site-b won: link lost")
        );
        let (line, _) = pair_line(&[None, Some(b)]).expect("a line");
        assert_eq!(
            line,
            "pair Synchronizing, site-b serves (epoch 2); site-a does not answer"
        );
        let deciding = pair_view("site-b", "Secondary", "site-a", "Normal", "Deciding", 1);
        let (line, _) = pair_line(&[None, Some(deciding)]).expect("a line");
        assert_eq!(
            line,
            "pair Normal, site-a serves (epoch 1), site-b deciding (changes wait); site-a does not answer"
        );
        assert!(pair_line(&[None, None]).is_none());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/a/b-c.toml"), "/a/b-c.toml");
        assert_eq!(sh_quote("demo=/a/link.secret"), "demo=/a/link.secret");
        assert_eq!(sh_quote("/a b/c"), "'/a b/c'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
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
