//! The failover topology (issue 4): five network namespaces made by the test and removed by a
//! drop guard, also when the test panics.
//!
//! ```text
//!            host 10.78.0.10        (libnfs tools, the nfs3_client writers)
//!                 |
//!   site-a 10.78.0.1 --- switch (bridge br0) --- site-b 10.78.0.2
//!   (+ service 10.78.0.100                        (+ service 10.78.0.100
//!    while it serves)     |                        while it serves)
//!                    quorum 10.78.0.4:7300
//! ```
//!
//! Every node has one interface, `eth0`, whose other end is a port of the bridge in the
//! `switch` namespace. Namespaces are per topology (pid and a counter in their names), so the
//! same subnet is reused by tests running in parallel without meeting.
//!
//! Faults, each undone by its heal:
//! - [`Topo::cut`]`(site, peer)`: nftables drops IP between the two (rules in the site's
//!   namespace, both directions) — the link only, a site from the quorum, or both (a site
//!   isolated from peer and quorum but still reached by hosts);
//! - [`Topo::site_down`]: the site's `eth0` down (nothing reaches it, not even hosts).
//!
//! Arrays run with `ip netns exec` ([`crate::netns::NsArray`]), listening for NFS on
//! `0.0.0.0:2049` (so on the service address when they hold it), for the API on their own
//! loopback, for the link on their address. The quorum server runs in `quorum`. Missing `ip`
//! or `nft` fails the test (scripts/test.sh installs them).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{text, ArrayProc, BIN};
use crate::netns::{in_ns, ip_tool, NsArray};
use crate::tools;

pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
pub const SITE_A: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
pub const SITE_B: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
pub const QUORUM: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 4);
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 100);
pub const NFS_PORT: u16 = 2049;
pub const LINK_PORT: u16 = 7400;
pub const QUORUM_PORT: u16 = 7300;
pub const API_LISTEN: &str = "127.0.0.1:7049";
pub const DOMAIN: &str = "metro1";

/// One of the two arrays' sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Site {
    A,
    B,
}

impl Site {
    pub fn name(self) -> &'static str {
        match self {
            Site::A => "site-a",
            Site::B => "site-b",
        }
    }
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Site::A => SITE_A,
            Site::B => SITE_B,
        }
    }
    pub fn other(self) -> Site {
        match self {
            Site::A => Site::B,
            Site::B => Site::A,
        }
    }
    pub fn of_name(name: &str) -> Option<Site> {
        match name {
            "site-a" => Some(Site::A),
            "site-b" => Some(Site::B),
            _ => None,
        }
    }
}

/// What a site can be cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// The other site (the replication link).
    Site,
    /// The quorum server.
    Quorum,
}

/// The five namespaces and the faults currently applied.
pub struct Topo {
    pub host: String,
    pub a: String,
    pub b: String,
    pub quorum: String,
    switch: String,
    cuts: Mutex<BTreeSet<(Site, Peer)>>,
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
    assert!(
        out.status.success(),
        "ip {args:?} failed (root needed): {}",
        text(&out)
    );
}

/// `nft`'s path; panics when nftables is missing.
pub fn nft_tool() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join("nft");
        if p.is_file() {
            return p;
        }
    }
    panic!("`nft` not found: install nftables (scripts/test.sh does: apt-get install -y nftables)");
}

/// Runs `nft` in namespace `ns` with `script` on stdin.
fn nft(ns: &str, script: &str) {
    let mut child = in_ns(ns, &nft_tool(), &["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("nft script");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns} failed on:\n{script}\n{}",
        text(&out)
    );
}

impl Topo {
    /// Makes the namespaces, the bridge, the veth pairs, the addresses and the (empty)
    /// nftables drop sets of both sites.
    pub fn create() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let t = Self {
            host: format!("m4host-{tag}"),
            a: format!("m4a-{tag}"),
            b: format!("m4b-{tag}"),
            quorum: format!("m4q-{tag}"),
            switch: format!("m4sw-{tag}"),
            cuts: Mutex::default(),
        };
        t.delete();
        // From here on the guard exists: a failing step still removes what was made.
        for ns in t.all() {
            ip_ok(&["netns", "add", ns]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip_ok(&[
            "-n",
            &t.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ]);
        ip_ok(&["-n", &t.switch, "link", "set", "br0", "up"]);
        for (ns, port, addr) in [
            (&t.host, "p-host", HOST),
            (&t.a, "p-a", SITE_A),
            (&t.b, "p-b", SITE_B),
            (&t.quorum, "p-q", QUORUM),
        ] {
            ip_ok(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns",
                &t.switch,
            ]);
            ip_ok(&["-n", &t.switch, "link", "set", port, "master", "br0"]);
            ip_ok(&["-n", &t.switch, "link", "set", port, "up"]);
            ip_ok(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip_ok(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        for ns in [&t.a, &t.b] {
            nft(
                ns,
                "table inet mfs {\n\
                   set blocked { type ipv4_addr; }\n\
                   chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; }\n\
                   chain output { type filter hook output priority 0; policy accept; ip daddr @blocked drop; }\n\
                 }\n",
            );
        }
        t
    }

    fn all(&self) -> [&String; 5] {
        [&self.switch, &self.host, &self.a, &self.b, &self.quorum]
    }

    pub fn ns(&self, site: Site) -> &str {
        match site {
            Site::A => &self.a,
            Site::B => &self.b,
        }
    }

    fn peer_addr(site: Site, peer: Peer) -> Ipv4Addr {
        match peer {
            Peer::Site => site.other().addr(),
            Peer::Quorum => QUORUM,
        }
    }

    /// Drops all IP traffic between `site` and `peer`, both ways (packets vanish: TCP notices
    /// by timeouts, as on a cut cable). Idempotent.
    pub fn cut(&self, site: Site, peer: Peer) {
        if self.cuts.lock().expect("cuts").insert((site, peer)) {
            nft(
                self.ns(site),
                &format!(
                    "add element inet mfs blocked {{ {} }}\n",
                    Self::peer_addr(site, peer)
                ),
            );
        }
    }

    /// Undoes [`Topo::cut`]. Idempotent.
    pub fn heal(&self, site: Site, peer: Peer) {
        if self.cuts.lock().expect("cuts").remove(&(site, peer)) {
            nft(
                self.ns(site),
                &format!(
                    "delete element inet mfs blocked {{ {} }}\n",
                    Self::peer_addr(site, peer)
                ),
            );
        }
    }

    /// Cuts the replication link only (site-a ⇄ site-b).
    pub fn cut_link(&self) {
        self.cut(Site::A, Peer::Site);
    }

    pub fn heal_link(&self) {
        self.heal(Site::A, Peer::Site);
    }

    /// The site's interface down: nothing reaches it (hosts neither).
    pub fn site_down(&self, site: Site) {
        ip_ok(&["-n", self.ns(site), "link", "set", "eth0", "down"]);
    }

    pub fn site_up(&self, site: Site) {
        ip_ok(&["-n", self.ns(site), "link", "set", "eth0", "up"]);
    }

    /// Every cut healed, both sites up.
    pub fn heal_all(&self) {
        let cuts: Vec<_> = self.cuts.lock().expect("cuts").iter().copied().collect();
        for (s, p) in cuts {
            self.heal(s, p);
        }
        self.site_up(Site::A);
        self.site_up(Site::B);
    }

    /// Which of the sites holds the service address now (asks the kernel of each).
    pub fn service_holders(&self) -> Vec<Site> {
        [Site::A, Site::B]
            .into_iter()
            .filter(|s| {
                let out = ip(&["-n", self.ns(*s), "-4", "-o", "addr", "show", "dev", "eth0"]);
                String::from_utf8_lossy(&out.stdout).contains(&format!("{SERVICE}/"))
            })
            .collect()
    }

    /// Runs `f` on a thread moved into namespace `ns` (a thread's network namespace is its
    /// own; the test process stays where it is). Sockets made by `f` live in `ns`.
    pub fn spawn_in<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns (root needed)");
            f()
        })
    }

    /// A libnfs tool (`nfs-cp`, `nfs-cat`, `nfs-ls`) run in the host namespace.
    pub fn host_tool(&self, name: &str, args: &[&str]) -> Output {
        tools::run_in(&self.host, name, args, tools::TOOL_LIMIT)
            .unwrap_or_else(|e| panic!("in the host namespace: {e}"))
    }

    fn delete(&self) {
        for ns in self.all() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A libnfs URL of `path` in `fs` on `ip` (the service address or a site's own).
pub fn url(ip: Ipv4Addr, fs: &str, path: &str) -> String {
    format!("nfs://{ip}/{fs}/{path}?nfsport={NFS_PORT}&mountport={NFS_PORT}&version=3")
}

/// `metrofs quorum` in the quorum namespace, its data directory in a temp dir (kept across
/// restarts: grants are durable).
pub struct QuorumProc {
    pub ns: String,
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    /// `--domain` arguments (`NAME=SECRET_FILE`).
    pub domains: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl QuorumProc {
    pub fn new(ns: &str, domains: Vec<String>) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("metrofs-it-quorum-")
            .tempdir()
            .expect("temp dir");
        let data = tmp.path().join("data");
        Self {
            ns: ns.to_owned(),
            tmp,
            data,
            domains,
            child: None,
            starts: 0,
        }
    }

    pub fn listen() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(QUORUM, QUORUM_PORT))
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join(format!("quorum-{}.log", self.starts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.tmp.path().join(format!("quorum-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart\n")
    }

    /// Starts it and waits until its port accepts connections (probed from its namespace).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "quorum already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let listen = Self::listen().to_string();
        let data = self.data.to_string_lossy().into_owned();
        let mut args = vec!["quorum", "--listen", &listen, "--data", &data];
        for d in &self.domains {
            args.push("--domain");
            args.push(d);
        }
        let child = in_ns(&self.ns, Path::new(BIN), &args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn metrofs quorum");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ns = self.ns.clone();
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("quorum exited during start ({st}):\n{}", self.log());
            }
            let up = Topo::spawn_in(&ns, || {
                std::net::TcpStream::connect_timeout(&Self::listen(), Duration::from_millis(200))
                    .is_ok()
            })
            .join()
            .expect("probe");
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quorum not listening:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("quorum running");
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for QuorumProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How a domain of the topology is configured.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `[quorum]` section present (a quorum server runs in the quorum namespace).
    pub quorum: bool,
    /// `on_quorum_loss`.
    pub on_quorum_loss: &'static str,
    /// `recovery`.
    pub recovery: &'static str,
    /// `[service]` section present.
    pub service: bool,
    /// `heartbeat_interval_ms` and `heartbeat_timeout_ms`; `None` leaves the defaults (the
    /// RTO target is for the defaults).
    pub heartbeat_ms: Option<(u64, u64)>,
    /// `head_start_ms`; `None` leaves the default.
    pub head_start_ms: Option<u64>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            quorum: true,
            on_quorum_loss: "static-priority",
            recovery: "manual",
            service: true,
            heartbeat_ms: None,
            head_start_ms: None,
        }
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_secret(path: &Path, seed: u64) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, tools::pattern(seed, 32)).expect("secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// The whole configuration of one site.
pub fn site_config(site: Site, data_dir: &Path, secret: &Path, o: &Opts) -> String {
    let mut s = format!(
        "name = \"{name}\"\ndata_dir = \"{data}\"\nnfs_listen = \"0.0.0.0:{NFS_PORT}\"\napi_listen = \"{API_LISTEN}\"\n\
         sync_interval_ms = 200\n\n[log]\nlevel = \"{level}\"\n\n\
         [domain]\nname = \"{DOMAIN}\"\npreferred = {pref}\nrecovery = \"{rec}\"\n\n\
         [peer]\nname = \"{peer}\"\naddress = \"{peer_addr}:{LINK_PORT}\"\n\n\
         [link]\nlisten = \"{addr}:{LINK_PORT}\"\nsecret_file = \"{secret}\"\n",
        name = site.name(),
        data = data_dir.display(),
        // METROFS_IT_LOG=debug, to see every connection in the arrays' logs of a failure.
        level = std::env::var("METROFS_IT_LOG").unwrap_or_else(|_| "info".into()),
        pref = site == Site::A,
        rec = o.recovery,
        peer = site.other().name(),
        peer_addr = site.other().addr(),
        addr = site.addr(),
        secret = secret.display(),
    );
    if let Some((i, t)) = o.heartbeat_ms {
        s += &format!("heartbeat_interval_ms = {i}\nheartbeat_timeout_ms = {t}\n");
    }
    if o.quorum {
        s += &format!(
            "\n[quorum]\nservers = [\"{QUORUM}:{QUORUM_PORT}\"]\non_quorum_loss = \"{}\"\n",
            o.on_quorum_loss
        );
        if let Some(h) = o.head_start_ms {
            s += &format!("head_start_ms = {h}\n");
        }
    }
    if o.service {
        s += &format!("\n[service]\naddress = \"{SERVICE}/24\"\ninterface = \"eth0\"\n");
    }
    s
}

/// A domain in the topology: both arrays, the quorum server (when configured) and the
/// namespaces. Field order is drop order: processes before the namespaces they run in.
pub struct Domain {
    pub a: NsArray,
    pub b: NsArray,
    pub q: Option<QuorumProc>,
    pub secret: PathBuf,
    pub opts: Opts,
    pub topo: Topo,
}

impl Domain {
    /// Makes the topology, starts the quorum server (if any) and both arrays.
    pub fn start(opts: Opts) -> Self {
        Self::start_with_env(opts, &[], &[])
    }

    /// [`Domain::start`] with environment variables for site-a's and site-b's first run
    /// (e.g. `METROFS_FAILPOINT`).
    pub fn start_with_env(opts: Opts, env_a: &[(&str, &str)], env_b: &[(&str, &str)]) -> Self {
        let topo = Topo::create();
        let mut secret = PathBuf::new();
        let pa = ArrayProc::with_config("site-a", |tmp, data| {
            secret = tmp.join("link.secret");
            write_secret(&secret, 41);
            site_config(Site::A, data, &secret, &opts)
        });
        let pb = ArrayProc::with_config("site-b", |_, data| {
            site_config(Site::B, data, &secret, &opts)
        });
        let q = opts.quorum.then(|| {
            let mut q =
                QuorumProc::new(&topo.quorum, vec![format!("{DOMAIN}={}", secret.display())]);
            q.spawn();
            q
        });
        let mut d = Self {
            a: NsArray::new(pa, &topo.a),
            b: NsArray::new(pb, &topo.b),
            q,
            secret,
            opts,
            topo,
        };
        d.a.spawn_env(env_a);
        d.b.spawn_env(env_b);
        d
    }

    pub fn arr(&self, s: Site) -> &NsArray {
        match s {
            Site::A => &self.a,
            Site::B => &self.b,
        }
    }

    pub fn arr_mut(&mut self, s: Site) -> &mut NsArray {
        match s {
            Site::A => &mut self.a,
            Site::B => &mut self.b,
        }
    }

    /// Every log, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "=== site-a:\n{}\n=== site-b:\n{}\n=== quorum:\n{}",
            tail(&self.a.all_logs(), 150),
            tail(&self.b.all_logs(), 150),
            self.q
                .as_ref()
                .map(|q| tail(&q.all_logs(), 60))
                .unwrap_or_default()
        )
    }

    /// Creates fs `name` on site-a, exported read-write to the subnet, pairs it with site-b
    /// (retrying until the link is up) and waits for Normal; the pair's id.
    pub fn create_pair(&self, name: &str) -> String {
        self.a.cli_ok(&["fs", "create", name]);
        self.a.cli_ok(&[
            "export",
            "set",
            name,
            "--clients",
            "10.78.0.0/24",
            "--rw",
            "--no-root-squash",
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            let out = self
                .a
                .cli(&["pair", "create", name, "--remote", "site-b", "--json"]);
            if out.status.success() {
                break parse(&String::from_utf8_lossy(&out.stdout))["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "pair create: {}\n{}",
                text(&out),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        self.wait(Site::A, &id, "Normal", 60_000, |v| v["state"] == "Normal");
        id
    }

    /// `pair show ID --json` on `site`; `None` when its API does not answer (down, killed).
    pub fn show(&self, site: Site, id: &str) -> Option<Value> {
        let out = self.arr(site).cli(&["pair", "show", id, "--json"]);
        out.status
            .success()
            .then(|| parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Polls `pair show` on `site` until `pred` holds; that view. `what` names the wait.
    pub fn wait(
        &self,
        site: Site,
        id: &str,
        what: &str,
        ms: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut last = None;
        loop {
            if let Some(v) = self.show(site, id) {
                if pred(&v) {
                    return v;
                }
                last = Some(v);
            }
            assert!(
                Instant::now() < deadline,
                "{} not {what} after {ms} ms; last view: {last:#?}\n{}",
                site.name(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until exactly `site` serves: its view says so and it holds the service address
    /// (when configured) while the other does not. An array killed with -9 cannot remove the
    /// address from its interface (its kernel keeps it until the array restarts and drops it
    /// at start): a site without a running array is left out.
    pub fn wait_serving(&self, site: Site, id: &str, ms: u64) -> Value {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let v = self.wait(site, id, "serving", ms, |v| {
            v["serving"] == site.name() && v["role"] == "Primary"
        });
        if self.opts.service {
            loop {
                let h: Vec<Site> = self
                    .topo
                    .service_holders()
                    .into_iter()
                    .filter(|s| self.arr(*s).has_process())
                    .collect();
                if h == vec![site] {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "service address held by {h:?}, expected {}:\n{}",
                    site.name(),
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        v
    }
}

pub fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a TCP connection from namespace `from` to `to:port` is established within 500 ms.
pub fn reaches(from: &str, to: Ipv4Addr, port: u16) -> bool {
    Topo::spawn_in(from, move || {
        std::net::TcpStream::connect_timeout(
            &SocketAddr::V4(SocketAddrV4::new(to, port)),
            Duration::from_millis(500),
        )
        .is_ok()
    })
    .join()
    .expect("probe thread")
}

#[test]
fn topology_connects_every_node_and_each_cut_drops_only_its_pair() {
    let t = Topo::create();
    // A listener in each node (accepting in the background until the test ends).
    let mut listeners = Vec::new();
    for ns in [&t.host, &t.a, &t.b, &t.quorum] {
        let l = Topo::spawn_in(ns, || {
            std::net::TcpListener::bind("0.0.0.0:9").expect("bind")
        })
        .join()
        .expect("bind thread");
        listeners.push(l);
    }
    let all = |t: &Topo| {
        vec![
            reaches(&t.host, SITE_A, 9),
            reaches(&t.host, SITE_B, 9),
            reaches(&t.a, SITE_B, 9),
            reaches(&t.b, SITE_A, 9),
            reaches(&t.a, QUORUM, 9),
            reaches(&t.b, QUORUM, 9),
            reaches(&t.quorum, SITE_A, 9),
        ]
    };
    assert_eq!(all(&t), vec![true; 7], "everything connected at start");
    t.cut_link();
    assert_eq!(
        all(&t),
        vec![true, true, false, false, true, true, true],
        "link cut"
    );
    t.cut(Site::A, Peer::Quorum);
    assert_eq!(
        all(&t),
        vec![true, true, false, false, false, true, false],
        "site-a isolated but for hosts"
    );
    t.heal_all();
    assert_eq!(all(&t), vec![true; 7], "healed");
    t.site_down(Site::B);
    assert_eq!(
        all(&t),
        vec![true, false, false, false, true, false, true],
        "site-b down"
    );
    t.site_up(Site::B);
    // The route comes back with the interface.
    let deadline = Instant::now() + Duration::from_secs(5);
    while all(&t) != vec![true; 7] {
        assert!(Instant::now() < deadline, "site-b back up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.service_holders().is_empty());
    drop(listeners);
    let names = [t.host.clone(), t.a.clone(), t.switch.clone()];
    drop(t);
    let out = ip(&["netns", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    for n in names {
        assert!(!list.contains(&n), "{n} removed by the guard: {list}");
    }
}
