//! Starts, stops and kills the real `metrofs` binary on free loopback ports with a temporary
//! data directory, and waits until it serves.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_metrofs");
/// How long an array may take to serve after it was started.
const READY_TIMEOUT_MS: u64 = 30_000;
/// How long a graceful stop may take.
const STOP_TIMEOUT_MS: u64 = 30_000;

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768–60999 on
/// Debian), so no outgoing connection and no `bind(:0)` of another process can take one
/// between the choice and the array's own bind, and above the demo's fixed ports (20490–20493).
const RESERVED_PORTS: std::ops::Range<u16> = 21_000..32_000;
/// Where [`free_port`] keeps one lock file per port it handed out.
const PORT_LOCK_DIR: &str = "/tmp/metrofs-it-ports";

/// A TCP port on 127.0.0.1 that no other test process holds, for an address that must be
/// written into a configuration before the process that binds it starts (the link's `listen`
/// and the peer's `address`).
///
/// Binding port 0 and releasing it is not enough: nextest runs tests as concurrent processes,
/// and a port released to the kernel's ephemeral pool can be taken again (by another test's
/// `bind(:0)` or an outgoing connection) before the array binds it; CI saw exactly that as
/// "cannot listen on link.listen … Address already in use". So the port comes from a range
/// the kernel never hands out by itself, and an exclusive lock on `PORT_LOCK_DIR/PORT` held
/// until this test process ends (the kernel drops it even on `kill -9`) keeps other test
/// processes off it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    static HELD: Mutex<Vec<fs::File>> = Mutex::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(PORT_LOCK_DIR).expect("port lock directory");
    let span = u64::from(RESERVED_PORTS.end - RESERVED_PORTS.start);
    // A start that differs between concurrent test processes (the process id, and the random
    // keys std gives every process for its hash maps), then a walk through the range.
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = RESERVED_PORTS.start
            + u16::try_from(seed.wrapping_add(step.wrapping_mul(7919)) % span).expect("in range");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(PORT_LOCK_DIR).join(port.to_string()))
            .expect("port lock file");
        if lock.try_lock().is_err() {
            continue; // another test process holds it
        }
        // Something outside the tests may listen there: then it is not free either.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock().expect("port locks").push(lock);
        return port;
    }
    panic!("no free port in {RESERVED_PORTS:?}: every one is locked in {PORT_LOCK_DIR} or taken");
}

/// A running (or stopped) array process with its own data directory.
pub struct ArrayProc {
    pub tmp: TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub nfs: SocketAddr,
    pub api: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl ArrayProc {
    /// Writes a config and starts the array; returns once it serves.
    ///
    /// Both addresses are `127.0.0.1:0`: the array binds whatever port is free and the
    /// harness reads the ports from its `array serving` log line, so no port can be taken by
    /// somebody else between choosing and binding it.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("metrofs-it-")
            .tempdir()
            .expect("temp dir");
        let data_dir = tmp.path().join("data");
        let config = tmp.path().join("array.toml");
        fs::write(
            &config,
            format!(
                "name = \"it\"\ndata_dir = \"{}\"\nnfs_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nsync_interval_ms = 200\n\n[log]\nlevel = \"info\"\n",
                data_dir.display()
            ),
        )
        .expect("write config");
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut a = Self {
            tmp,
            config,
            data_dir,
            nfs: unbound,
            api: unbound,
            child: None,
            starts: 0,
        };
        a.spawn();
        a
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join(format!("array-{}.log", self.starts))
    }

    /// Starts the process (again) with the same config and waits until it serves. The ports
    /// may differ from the previous run's; `nfs` and `api` are updated.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "array already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("log file");
        let child = Command::new(BIN)
            .args(["array", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn metrofs array");
        self.child = Some(child);
        self.wait_ready();
    }

    /// The current run's log (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("array exited during start ({status}):\n{}", self.log());
            }
            if let Some((nfs, api)) = serving_addrs(&self.log()) {
                if TcpStream::connect(nfs).is_ok()
                    && http_get(api, "/api/health").is_some_and(|(s, _)| s == 200)
                {
                    self.nfs = nfs;
                    self.api = api;
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "array not ready after {READY_TIMEOUT_MS} ms:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("array running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
        wait_timeout(&mut child, STOP_TIMEOUT_MS)
            .unwrap_or_else(|| panic!("array did not stop on SIGTERM:\n{}", self.log()))
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("array running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Runs `metrofs ARGS... --api URL`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--api", &self.api_url()])
            .env_remove("METROFS_API")
            .output()
            .expect("run metrofs cli")
    }

    /// Runs the CLI and insists on success.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "metrofs {args:?} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A libnfs URL for `path` in file system `fs` (`path` without a leading `/`).
    pub fn url(&self, fs: &str, path: &str) -> String {
        libnfs_url(self.nfs, fs, path)
    }

    /// `GET` on the API: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.api, path).expect("API answers")
    }

    /// Any call on the API with the array's token (see [`ArrayProc::token`]): status and
    /// body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let token = self.token();
        http_with(method, self.api, path, body, token.as_deref()).expect("API answers")
    }
}

impl Drop for ArrayProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `nfs=` and `api=` addresses of the `array serving` log line.
fn serving_addrs(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = log.lines().find(|l| l.contains("array serving"))?;
    let field = |key: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))?
            .parse()
            .ok()
    };
    Some((field("nfs=")?, field("api=")?))
}

pub fn libnfs_url(nfs: SocketAddr, fs: &str, path: &str) -> String {
    let p = nfs.port();
    format!(
        "nfs://{}/{fs}/{path}?nfsport={p}&mountport={p}&version=3",
        nfs.ip()
    )
}

/// Both streams of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_timeout(child: &mut Child, ms: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args` (no `--api` added), with a time limit.
pub fn run_bin(args: &[&str], cwd: &Path) -> Output {
    output_within(
        Command::new(BIN).args(args).current_dir(cwd),
        Duration::from_millis(STOP_TIMEOUT_MS),
    )
    .unwrap_or_else(|e| panic!("metrofs {args:?}: {e}"))
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) for at most `limit`. Past it the
/// process is killed and the error says so, with what it printed until then.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let pid = rustix::process::Pid::from_child(&child);
    let out = std::thread::scope(|s| {
        let h = s.spawn(move || child.wait_with_output());
        let deadline = Instant::now() + limit;
        let mut killed = false;
        while !h.is_finished() {
            if !killed && Instant::now() >= deadline {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        h.join().expect("join").map(|out| (out, killed))
    });
    match out {
        Ok((out, false)) => Ok(out),
        Ok((out, true)) => Err(format!(
            "{cmd:?} did not finish within {limit:?} and was killed; it printed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("wait for {cmd:?}: {e}")),
    }
}

/// An HTTP call to the API: status and body; `None` if nothing answers.
pub fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    http_with(method, addr, path, body, None)
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http("GET", addr, path, None)
}

/// Arrays with a name of their own and more configuration: the two arrays of a pair.
impl ArrayProc {
    /// Writes a config named `name` (free ports as in [`ArrayProc::start`]) with `extra`
    /// appended (e.g. `[domain]`, `[peer]`, `[link]` sections), without starting it: call
    /// [`ArrayProc::spawn`]. The temp dir exists already, so `extra` may name files in it.
    pub fn configured(name: &str, extra: impl FnOnce(&Path) -> String) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("metrofs-it-{name}-"))
            .tempdir()
            .expect("temp dir");
        let data_dir = tmp.path().join("data");
        let config = tmp.path().join("array.toml");
        let extra = extra(tmp.path());
        fs::write(
            &config,
            format!(
                "name = \"{name}\"\ndata_dir = \"{}\"\nnfs_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nsync_interval_ms = 200\n\n[log]\nlevel = \"info\"\n\n{extra}",
                data_dir.display()
            ),
        )
        .expect("write config");
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        Self {
            tmp,
            config,
            data_dir,
            nfs: unbound,
            api: unbound,
            child: None,
            starts: 0,
        }
    }

    /// Every run's log so far, oldest first.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| fs::read_to_string(self.tmp.path().join(format!("array-{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Two arrays of one domain on loopback: `site-a` (preferred) and `site-b`, linked with a
/// shared secret file; `wrong_secret_on_b` gives site-b a secret of its own.
pub struct PairProcs {
    pub a: ArrayProc,
    pub b: ArrayProc,
}

/// Heartbeats fast enough that a dead peer is noticed within a second.
const PAIR_LINK_TIMING: &str = "heartbeat_interval_ms = 100\nheartbeat_timeout_ms = 600\n";

impl PairProcs {
    pub fn start(wrong_secret_on_b: bool) -> Self {
        let (link_a, link_b) = (free_port(), free_port());
        let mut secret_a = PathBuf::new();
        let a = ArrayProc::configured("site-a", |dir| {
            secret_a = dir.join("link.secret");
            write_secret(&secret_a, 1);
            pair_sections(true, "site-b", link_b, link_a, &secret_a)
        });
        let b = ArrayProc::configured("site-b", |dir| {
            let secret = if wrong_secret_on_b {
                let s = dir.join("other.secret");
                write_secret(&s, 2);
                s
            } else {
                secret_a.clone()
            };
            pair_sections(false, "site-a", link_a, link_b, &secret)
        });
        let mut p = Self { a, b };
        p.a.spawn();
        p.b.spawn();
        if !wrong_secret_on_b {
            p.wait_link_up();
        }
        p
    }

    /// Waits until both arrays report their link Up (`GET /api/health`).
    pub fn wait_link_up(&self) {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        while ![&self.a, &self.b]
            .iter()
            .all(|a| a.get("/api/health").1.contains("\"link\":\"Up\""))
        {
            assert!(
                Instant::now() < deadline,
                "link not up after {READY_TIMEOUT_MS} ms\n--- site-a:\n{}\n--- site-b:\n{}",
                self.a.log(),
                self.b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &Path, seed: u64) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, crate::tools::pattern(seed, 32)).expect("secret");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

fn pair_sections(preferred: bool, peer: &str, peer_port: u16, listen_port: u16, secret: &Path) -> String {
    format!(
        "[domain]\nname = \"it\"\npreferred = {preferred}\n\n[peer]\nname = \"{peer}\"\naddress = \"127.0.0.1:{peer_port}\"\n\n\
         [link]\nlisten = \"127.0.0.1:{listen_port}\"\nsecret_file = \"{}\"\n{PAIR_LINK_TIMING}",
        secret.display()
    )
}

/// Arrays whose whole configuration the test writes (issue 4's namespaced sites listen on
/// fixed ports of their own namespace, not on `127.0.0.1:0`).
impl ArrayProc {
    /// A temp dir named after `name` and a config file of `text(tmp_dir, data_dir)` (which
    /// must set `data_dir` to the second argument); not started: see [`ArrayProc::spawn`] or
    /// `netns::NsArray`.
    pub fn with_config(name: &str, text: impl FnOnce(&Path, &Path) -> String) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("metrofs-it-{name}-"))
            .tempdir()
            .expect("temp dir");
        let data_dir = tmp.path().join("data");
        let config = tmp.path().join("array.toml");
        fs::write(&config, text(tmp.path(), &data_dir)).expect("write config");
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        Self {
            tmp,
            config,
            data_dir,
            nfs: unbound,
            api: unbound,
            child: None,
            starts: 0,
        }
    }
}

/// The operator surface's helpers: the API token, calls with chosen headers, pairs with extra
/// configuration.
impl ArrayProc {
    /// The array's API token (`DATA_DIR/api.token`, made at its first start), if it exists.
    pub fn token(&self) -> Option<String> {
        fs::read_to_string(self.data_dir.join("api.token"))
            .ok()
            .map(|t| t.trim().to_owned())
    }

    /// A call with exactly the `token` given (none: no Authorization header).
    pub fn call_with(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
        http_with(method, self.api, path, body, token).expect("API answers")
    }
}

/// An HTTP call to the API with an optional bearer token: status and body; `None` if nothing
/// answers.
pub fn http_with(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(10_000)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = match body {
        Some(b) => agent.run(
            req.header("content-type", "application/json")
                .body(b.to_owned())
                .ok()?,
        ),
        None => agent.run(req.body(()).ok()?),
    };
    let mut resp = resp.ok()?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Some((status, text))
}

impl PairProcs {
    /// Like [`PairProcs::start`] (right secrets), with `extra` appended to both arrays'
    /// configurations (e.g. `[alarms]`, `[api]` sections).
    pub fn start_with(extra: &str) -> Self {
        let (link_a, link_b) = (free_port(), free_port());
        let mut secret_a = PathBuf::new();
        let a = ArrayProc::configured("site-a", |dir| {
            secret_a = dir.join("link.secret");
            write_secret(&secret_a, 1);
            format!("{}\n{extra}\n", pair_sections(true, "site-b", link_b, link_a, &secret_a))
        });
        let b = ArrayProc::configured("site-b", |_| {
            format!("{}\n{extra}\n", pair_sections(false, "site-a", link_a, link_b, &secret_a))
        });
        let mut p = Self { a, b };
        p.a.spawn();
        p.b.spawn();
        p.wait_link_up();
        p
    }
}
