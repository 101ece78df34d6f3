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

/// A free TCP port on 127.0.0.1 (bound then released: another process could take it in
/// between, which on loopback with ephemeral ports is rare enough for tests).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
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
    /// Writes a config with free ports and starts the array; returns once it serves.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("metrofs-it-")
            .tempdir()
            .expect("temp dir");
        let data_dir = tmp.path().join("data");
        let nfs: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = tmp.path().join("array.toml");
        fs::write(
            &config,
            format!(
                "name = \"it\"\ndata_dir = \"{}\"\nnfs_listen = \"{nfs}\"\napi_listen = \"{api}\"\nsync_interval_ms = 200\n\n[log]\nlevel = \"info\"\n",
                data_dir.display()
            ),
        )
        .expect("write config");
        let mut a = Self {
            tmp,
            config,
            data_dir,
            nfs,
            api,
            child: None,
            starts: 0,
        };
        a.spawn();
        a
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join(format!("array-{}.log", self.starts))
    }

    /// Starts the process (again) with the same config and waits until it serves.
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
            if TcpStream::connect(self.nfs).is_ok()
                && http_get(self.api, "/api/health").is_some_and(|(s, _)| s == 200)
            {
                return;
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

    /// Any call on the API: status and body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(method, self.api, path, body).expect("API answers")
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
    let child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn metrofs");
    let pid = child.id();
    let out = std::thread::scope(|s| {
        let h = s.spawn(move || child.wait_with_output().expect("wait"));
        let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
        while !h.is_finished() {
            if Instant::now() >= deadline {
                let pid =
                    rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                panic!("metrofs {args:?} did not finish in {STOP_TIMEOUT_MS} ms");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        h.join().expect("join")
    });
    out
}

/// An HTTP call to the API: status and body; `None` if nothing answers.
pub fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(10_000)))
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let req = ureq::http::Request::builder().method(method).uri(&url);
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

pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http("GET", addr, path, None)
}
