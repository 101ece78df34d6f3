//! Two network namespaces joined by a veth pair, made by the test and removed by a drop
//! guard (also when the test fails), and arrays run inside them with `ip netns exec`.
//!
//! The link between the arrays then runs over a real interface the test can set down and up:
//! a cut link, not a killed process. Each namespace has its own loopback, where its array's
//! NFS and API listen; the CLI and the libnfs tools run inside the namespace too. Missing
//! `ip` (iproute2) fails the test: it is not skipped.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{libnfs_url, text, wait_timeout, ArrayProc, BIN};

/// `ip`'s path; panics (the test fails) when iproute2 is missing.
pub fn ip_tool() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    {
        let p = Path::new(dir).join("ip");
        if p.is_file() {
            return p;
        }
    }
    panic!("`ip` not found: install iproute2 (apt-get install -y iproute2); this test needs it and root");
}

fn ip(args: &[&str]) -> Output {
    Command::new(ip_tool())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {args:?} failed (root needed): {}", text(&out));
}

/// Namespaces `mfs-a-PID` and `mfs-b-PID`, a veth pair between them with
/// [`Netns::ADDR_A`] and [`Netns::ADDR_B`] (only inside them), loopback up in each.
pub struct Netns {
    pub a: String,
    pub b: String,
    veth_a: String,
}

impl Netns {
    pub const ADDR_A: &'static str = "10.77.0.1";
    pub const ADDR_B: &'static str = "10.77.0.2";

    pub fn create() -> Self {
        let pid = std::process::id();
        let n = Self {
            a: format!("mfs-a-{pid}"),
            b: format!("mfs-b-{pid}"),
            veth_a: format!("mfsa{pid}"),
        };
        let veth_b = format!("mfsb{pid}");
        // Leftovers of an earlier process with the same pid would make `add` fail.
        n.delete();
        // The guard exists before anything is made: a failing step below still cleans up.
        ip_ok(&["netns", "add", &n.a]);
        ip_ok(&["netns", "add", &n.b]);
        ip_ok(&[
            "link", "add", &n.veth_a, "netns", &n.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &n.b,
        ]);
        for (ns, dev, addr) in [(&n.a, &n.veth_a, Self::ADDR_A), (&n.b, &veth_b, Self::ADDR_B)] {
            ip_ok(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }

    /// Sets site-a's end of the veth pair down or up (down cuts the link both ways: the
    /// other end loses its carrier).
    pub fn set_link(&self, up: bool) {
        ip_ok(&["-n", &self.a, "link", "set", &self.veth_a, if up { "up" } else { "down" }]);
    }

    fn delete(&self) {
        // Deleting a namespace destroys the veth end inside it, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `ip netns exec NS PROGRAM ARGS...`.
pub fn in_ns(ns: &str, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(ip_tool());
    c.args(["netns", "exec", ns]).arg(program).args(args);
    c
}

/// An array process inside a namespace. Its config, data directory and temp dir come from
/// [`ArrayProc::configured`] (never spawned by the harness); NFS and API listen on the
/// namespace's loopback on ports read from the log.
pub struct NsArray {
    pub proc: ArrayProc,
    pub ns: String,
    pub nfs: SocketAddr,
    pub api: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl NsArray {
    pub fn new(proc: ArrayProc, ns: &str) -> Self {
        let unbound: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        Self { proc, ns: ns.to_owned(), nfs: unbound, api: unbound, child: None, starts: 0 }
    }

    fn log_path(&self) -> PathBuf {
        self.proc.tmp.path().join(format!("ns-array-{}.log", self.starts))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the array in its namespace and waits until its CLI answers there.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "array already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("log file");
        let child = in_ns(&self.ns, Path::new(BIN), &["array", "--config", &self.proc.config.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn metrofs array in a namespace");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("array in {} exited during start ({st}):\n{}", self.ns, self.log());
            }
            if let Some((nfs, api)) = serving(&self.log()) {
                self.nfs = nfs;
                self.api = api;
                if self.cli(&["fs", "list"]).status.success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "array in {} not ready:\n{}", self.ns, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (`ip netns exec` execs the array, so the child is the array), then the status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("array running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        wait_timeout(&mut child, 30_000).unwrap_or_else(|| panic!("array did not stop:\n{}", self.log()))
    }

    /// `metrofs ARGS --api URL` inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        in_ns(&self.ns, Path::new(BIN), args)
            .args(["--api", &format!("http://{}", self.api)])
            .env_remove("METROFS_API")
            .stdin(Stdio::null())
            .output()
            .expect("run metrofs cli in a namespace")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "metrofs {args:?} in {} failed: {}", self.ns, text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A libnfs tool (`nfs-cp`, ...) inside the namespace.
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        crate::tools::run_in(&self.ns, name, args, crate::tools::TOOL_LIMIT)
            .unwrap_or_else(|e| panic!("in {}: {e}\n{}", self.ns, self.log()))
    }

    pub fn url(&self, fs: &str, path: &str) -> String {
        libnfs_url(self.nfs, fs, path)
    }
}

impl Drop for NsArray {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `nfs=` and `api=` addresses of the `array serving` log line.
fn serving(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = log.lines().find(|l| l.contains("array serving"))?;
    let field = |key: &str| -> Option<SocketAddr> {
        line.split_whitespace().find_map(|w| w.strip_prefix(key))?.parse().ok()
    };
    Some((field("nfs=")?, field("api=")?))
}

/// More control over a namespaced array for the failover tests (issue 4): an environment
/// (failpoints), kill -9, an exit of its own, every run's log.
impl NsArray {
    /// Like [`NsArray::spawn`], with extra environment variables (e.g. `METROFS_FAILPOINT`).
    pub fn spawn_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "array already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("log file");
        let mut cmd = in_ns(&self.ns, Path::new(BIN), &["array", "--config", &self.proc.config.to_string_lossy()]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn metrofs array in a namespace");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("array in {} exited during start ({st}):\n{}", self.ns, self.log());
            }
            if let Some((nfs, api)) = serving(&self.log()) {
                self.nfs = nfs;
                self.api = api;
                if self.cli(&["fs", "list"]).status.success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "array in {} not ready:\n{}", self.ns, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of the array (no flush, no goodbye to the peer or the hosts).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("array running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Waits up to `ms` for the array to exit by itself (a failpoint); its status.
    pub fn wait_exit(&mut self, ms: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            let c = self.child.as_mut().expect("array running");
            if let Some(st) = c.try_wait().expect("try_wait") {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process runs (reaps it when it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait().expect("try_wait")) {
            Some(None) => true,
            Some(Some(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Every run's log so far, oldest first, each under a header.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let p = self.proc.tmp.path().join(format!("ns-array-{n}.log"));
                format!("--- run {n}:\n{}", fs::read_to_string(p).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl NsArray {
    /// Whether a process was started and not killed or reaped since (no wait, `&self`).
    pub fn has_process(&self) -> bool {
        self.child.is_some()
    }
}
