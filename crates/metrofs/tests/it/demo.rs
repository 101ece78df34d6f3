//! `metrofs demo`: nothing to configure; the printed commands work as printed.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{wait_timeout, BIN};
use crate::tools;

/// Starts the demo in `dir`, returns the child and the libnfs URL it printed.
fn start_demo(dir: &std::path::Path) -> (std::process::Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension("log")).expect("demo log"))
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("demo printed no URL in time: {lines:?}"));
        lines.push(line);
        if lines.len() >= 2 && lines[lines.len() - 2] == "libnfs URL:" {
            break;
        }
    }
    // The rest of the instructions.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    let url = lines[lines.len()
        - 1
        - lines
            .iter()
            .rev()
            .position(|l| l == "libnfs URL:")
            .expect("marker")
        + 1]
    .trim()
    .to_owned();
    (child, url, lines)
}

/// Runs a command line the demo printed (`/path/to/metrofs pair ...`).
fn run_printed(words: &[&str]) -> std::process::Output {
    Command::new(words[0])
        .args(&words[1..])
        .env_remove("METROFS_API")
        .output()
        .expect("run the printed command")
}

fn sigint(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
}

#[test]
fn demo_serves_what_it_prints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("metrofs-demo");
    let (mut child, url, lines) = start_demo(&dir);
    assert!(
        url.starts_with("nfs://127.0.0.1/demo/?nfsport=") && url.ends_with("&version=3"),
        "{url}"
    );

    // The printed nfs-cp commands, run as printed (with our own file).
    let cp_in = lines
        .iter()
        .find(|l| l.trim_start().starts_with("nfs-cp /etc/os-release"))
        .expect("nfs-cp line");
    let target = cp_in.split('\'').nth(1).expect("quoted URL");
    let src = tmp.path().join("hello.txt");
    std::fs::write(&src, b"hello from the demo test\n").expect("write");
    tools::run_ok("nfs-cp", &[&src.to_string_lossy(), target]);
    let out = tools::run_ok("nfs-ls", &[&url]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("os-release"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let back = tmp.path().join("back.txt");
    tools::run_ok("nfs-cp", &[target, &back.to_string_lossy()]);
    assert_eq!(
        std::fs::read(&back).expect("read back"),
        b"hello from the demo test\n"
    );

    // A pair of two arrays: the fs is paired and Normal, and the printed verify command finds
    // the file on both sides.
    let pair_line = lines
        .iter()
        .find(|l| l.trim_start().starts_with("pair:"))
        .expect("pair line");
    assert!(pair_line.ends_with("state Normal"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("site-b: NFS 127.0.0.1:")),
        "{lines:#?}"
    );
    let verify: Vec<&str> = lines
        .iter()
        .find(|l| l.contains(" pair verify "))
        .expect("verify line")
        .split_whitespace()
        .collect();
    let out = run_printed(&verify);
    assert!(out.status.success(), "{}", crate::harness::text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("compared 2 inodes") && said.contains("identical"),
        "{said}"
    );

    sigint(&child);
    let status = wait_timeout(&mut child, 30_000).expect("demo stops on Ctrl-C");
    assert!(status.success(), "demo exit status {status}");

    // A second run keeps the data.
    let (mut child, url2, _) = start_demo(&dir);
    let file = url2.replacen("/demo/?", "/demo/os-release?", 1);
    let out = tools::run_ok("nfs-cat", &[&file]);
    assert_eq!(out.stdout, b"hello from the demo test\n");
    sigint(&child);
    let status = wait_timeout(&mut child, 30_000).expect("demo stops on Ctrl-C");
    assert!(status.success(), "demo exit status {status}");
}
