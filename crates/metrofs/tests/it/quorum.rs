//! `metrofs quorum`, the real process: grants survive `kill -9` (every grant answered is on
//! disk), refusals are logged, `DIR/domains.toml` adds domains, and start-up mistakes exit 2
//! with what to do.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrofs_link::{Identity, LinkConfig, Secret};
use metrofs_quorum::{Claim, QuorumClient};
use tempfile::TempDir;

use crate::harness::{free_port, run_bin, text, BIN};

const PROD_SECRET: &str = "prod-domain-secret-for-the-quorum-test";
const TEST_SECRET: &str = "test-domain-secret-for-the-quorum-test";
const ANSWER: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A `metrofs quorum` process on a fixed loopback port (the clients' address list stays
/// valid across restarts), with its data directory and the domain "prod".
struct QuorumProc {
    tmp: TempDir,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl QuorumProc {
    fn start() -> QuorumProc {
        let tmp = tempfile::Builder::new()
            .prefix("metrofs-it-quorum-")
            .tempdir()
            .expect("temp dir");
        fs::write(tmp.path().join("prod.secret"), format!("{PROD_SECRET}\n")).expect("secret");
        let mut q = QuorumProc {
            data: tmp.path().join("data"),
            tmp,
            port: free_port(),
            child: None,
            starts: 0,
        };
        q.spawn();
        q
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.path().join(format!("quorum-{}.log", self.starts))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = fs::File::create(self.log_path()).expect("log file");
        let secret = self.tmp.path().join("prod.secret");
        let child = Command::new(BIN)
            .arg("quorum")
            .args(["--listen", &self.addr(), "--data"])
            .arg(&self.data)
            .arg("--domain")
            .arg(format!("prod={}", secret.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn metrofs quorum");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!(
                    "quorum server exited during start ({status}):\n{}",
                    self.log()
                );
            }
            if self.log().contains("quorum server listening")
                && TcpStream::connect(self.addr()).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quorum server not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
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

fn identity(domain: &str, name: &str, secret: &str) -> Identity {
    Identity::new(
        domain,
        name,
        Secret::new(secret.as_bytes().to_vec()).expect("secret"),
    )
    .expect("identity")
}

fn client(q: &QuorumProc, me: Identity) -> Arc<QuorumClient> {
    let link = LinkConfig {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 3000,
        ..LinkConfig::default()
    };
    QuorumClient::new(vec![q.addr()], me, link)
}

fn denied(epoch: u64, holder: &str) -> Claim {
    Claim::Denied {
        epoch,
        holder: holder.into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn quorum_grants_survive_kill_9() {
    let mut q = QuorumProc::start();
    let rt = runtime();
    rt.block_on(async {
        let a = client(&q, identity("prod", "site-a", PROD_SECRET));
        let b = client(&q, identity("prod", "site-b", PROD_SECRET));
        // Grants on 20 scopes, the process killed right after the last answer: each was on
        // disk before it was answered.
        for scope in 1..=20u64 {
            assert_eq!(a.claim(scope, scope, ANSWER).await, Ok(Claim::Granted));
        }
        q.kill9();
        q.spawn();
        for scope in 1..=20u64 {
            assert_eq!(
                b.claim(scope, scope, ANSWER).await,
                Ok(denied(scope, "site-a")),
                "scope {scope}"
            );
        }
        // The holder's retry is granted again; a higher epoch goes to the other.
        assert_eq!(a.claim(7, 7, ANSWER).await, Ok(Claim::Granted));
        assert_eq!(b.claim(7, 8, ANSWER).await, Ok(Claim::Granted));
        q.kill9();
        q.spawn();
        assert_eq!(a.claim(7, 8, ANSWER).await, Ok(denied(8, "site-b")));
        assert_eq!(a.claim(7, 6, ANSWER).await, Ok(denied(8, "site-b")));
        // Force-start is durable too.
        assert_eq!(a.force(7, 0, ANSWER).await, Ok(9));
        q.kill9();
        q.spawn();
        assert_eq!(b.claim(7, 9, ANSWER).await, Ok(denied(9, "site-a")));
    });
}

#[test]
fn quorum_refusals_are_logged_and_domains_toml_adds_domains() {
    let mut q = QuorumProc::start();
    // A second domain from DIR/domains.toml (relative secret path), after a restart.
    fs::write(q.data.join("test.secret"), TEST_SECRET).expect("secret");
    fs::write(
        q.data.join("domains.toml"),
        "[domains.test]\nsecret_file = \"test.secret\"\n",
    )
    .expect("domains.toml");
    q.kill9();
    q.spawn();
    assert!(
        q.log().contains(r#"domains=["prod", "test"]"#),
        "{}",
        q.log()
    );
    let rt = runtime();
    rt.block_on(async {
        let t = client(&q, identity("test", "site-a", TEST_SECRET));
        assert_eq!(t.claim(1, 1, ANSWER).await, Ok(Claim::Granted));
        let wrong = client(&q, identity("prod", "site-b", TEST_SECRET));
        let stranger = client(&q, identity("staging", "site-b", PROD_SECRET));
        assert!(wrong
            .claim(1, 1, Duration::from_millis(1500))
            .await
            .is_err());
        assert!(stranger
            .claim(1, 1, Duration::from_millis(500))
            .await
            .is_err());
    });
    let mut s = TcpStream::connect(q.addr()).expect("connect");
    std::io::Write::write_all(&mut s, b"garbage garbage garbage").expect("write");
    drop(s);
    let deadline = Instant::now() + ANSWER;
    loop {
        let log = q.log();
        let ok = log.contains("quorum connection refused")
            && log.contains("different shared secret for domain 'prod'")
            && log.contains("asked for domain 'staging', which is not served here")
            && log.contains("does not speak the metrofs link protocol");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "refusals not logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn quorum(args: &[&str], cwd: &Path) -> (i32, String) {
    let mut all = vec!["quorum"];
    all.extend_from_slice(args);
    let out = run_bin(&all, cwd);
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn quorum_start_errors_exit_2_with_what_to_do() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    fs::write(dir.join("prod.secret"), PROD_SECRET).expect("secret");
    fs::write(dir.join("short.secret"), "short").expect("secret");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--data",
                "d",
                "--domain",
                "prod=missing.secret",
            ],
            "cannot read secret file missing.secret",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--data",
                "d",
                "--domain",
                "prod=short.secret",
            ],
            "it is 5 bytes",
        ),
        (
            &["--listen", "127.0.0.1:0", "--data", "d", "--domain", "prod"],
            "expected NAME=SECRET_FILE",
        ),
        (
            &["--listen", "127.0.0.1:0", "--data", "d"],
            "no domain to arbitrate: give at least one --domain NAME=SECRET_FILE",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--data",
                "prod.secret",
                "--domain",
                "prod=prod.secret",
            ],
            "it is not a directory",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--data",
                "d",
                "--domain",
                "prod=prod.secret",
                "--domain",
                "prod=prod.secret",
            ],
            "domain 'prod' is given twice",
        ),
        (
            &[
                "--listen",
                "nowhere",
                "--data",
                "d",
                "--domain",
                "prod=prod.secret",
            ],
            "cannot listen on nowhere",
        ),
    ];
    for (args, want) in cases {
        let (code, out) = quorum(args, dir);
        assert_eq!(code, 2, "{args:?}:\n{out}");
        assert!(out.contains(want), "{args:?}: expected {want:?} in:\n{out}");
    }

    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let (code, out) = quorum(
        &[
            "--listen",
            &addr,
            "--data",
            "d",
            "--domain",
            "prod=prod.secret",
        ],
        dir,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("cannot listen on {addr}")), "{out}");
    assert!(out.contains("choose another --listen port"), "{out}");

    // A second server on the data directory of a running one.
    let q = QuorumProc::start();
    let data = q.data.display().to_string();
    let (code, out) = quorum(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            &data,
            "--domain",
            "prod=prod.secret",
        ],
        dir,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("in use by another process"), "{out}");
}
