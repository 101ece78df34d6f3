//! The metro pair with the real binary: two `metrofs array` processes of one domain on
//! loopback (site-a preferred, site-b), driven by `metrofs pair ...` and written through by
//! libnfs's `nfs-cp` and the nfs3_client crate.
//!
//! Each test ends by stopping both arrays and comparing their data directories independently
//! of the metro module: each store is opened with `metrofs_store::Store::open` and its image
//! compared (inode numbers, names, attributes, bytes), so a bug shared by resync and verify
//! cannot hide.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrofs_core::FsId;
use metrofs_store::Store;
use nfs3_client::nfs3_types::nfs3::stable_how;
use serde_json::Value;

use crate::harness::{text, ArrayProc, PairProcs};
use crate::make_fs;
use crate::nfs::{rt, Client, LOCALHOST};
use crate::tools;

/// How long a pair may take to become Normal on loopback with a few MiB to copy.
pub(crate) const NORMAL_WAIT_MS: u64 = 60_000;

/// `pair show ID --json` on `a`.
pub(crate) fn show(a: &ArrayProc, id: &str) -> Value {
    serde_json::from_str(&a.cli_ok(&["pair", "show", id, "--json"])).expect("pair show --json")
}

/// Polls `pair show --json` until the pair is in `state`; returns that view.
pub(crate) fn wait_state(a: &ArrayProc, id: &str, state: &str, ms: u64) -> Value {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        let v = show(a, id);
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "pair {id} not {state} after {ms} ms: {v:#}\nlog:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The recent events of a `pair show --json` view.
pub(crate) fn events(v: &Value) -> Vec<&str> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// `pair create FS --remote site-b` on `a`; the pair's id.
fn create_pair(a: &ArrayProc, fs: &str) -> String {
    let v: Value =
        serde_json::from_str(&a.cli_ok(&["pair", "create", fs, "--remote", "site-b", "--json"]))
            .expect("json");
    assert_eq!(v["fs"], fs);
    assert_eq!(v["serving"], "site-a");
    v["id"].as_str().expect("id").to_owned()
}

fn fs_id(a: &ArrayProc, fs: &str) -> FsId {
    let (status, body) = a.get(&format!("/api/fs/{fs}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    FsId(u64::from_str_radix(v["id"].as_str().expect("id"), 16).expect("hex id"))
}

/// What two sides of a pair must agree on: inode numbers, names, attributes and bytes (not
/// READDIR slots, the free list or the allocator's mark, which resync does not copy). The
/// store is also checked for internal consistency.
fn visible(data_dir: &Path, fs: FsId) -> BTreeMap<u64, String> {
    let s = Store::open(data_dir).expect("open a stopped array's store");
    let problems = s.check(fs);
    assert!(
        problems.is_empty(),
        "store {} inconsistent: {problems:?}",
        data_dir.display()
    );
    let img = s.image(fs).expect("image");
    img.inodes
        .into_iter()
        .map(|(ino, mut i)| {
            i.next_slot = None;
            i.verifier = None;
            let entries: Option<BTreeMap<Vec<u8>, u64>> = i
                .entries
                .take()
                .map(|e| e.into_iter().map(|(n, (_, ino))| (n, ino)).collect());
            (ino, format!("{i:?} {entries:?}"))
        })
        .collect()
}

/// Stops both arrays (cleanly) and compares their stores.
fn stop_and_compare(p: &mut PairProcs, fs: FsId) -> BTreeMap<u64, String> {
    for (name, a) in [("site-a", &mut p.a), ("site-b", &mut p.b)] {
        let st = a.stop();
        assert!(st.success(), "{name} stop: {st}\n{}", a.log());
    }
    let (va, vb) = (visible(&p.a.data_dir, fs), visible(&p.b.data_dir, fs));
    if va != vb {
        let mut lines = Vec::new();
        for k in va.keys().chain(vb.keys()) {
            if va.get(k) != vb.get(k) {
                lines.push(format!(
                    "ino {k}:\n  a {:?}\n  b {:?}",
                    va.get(k),
                    vb.get(k)
                ));
            }
        }
        lines.dedup();
        panic!("the two data directories differ:\n{}", lines.join("\n"));
    }
    va
}

/// `pair verify ID` on `a` must find both sides identical.
fn verify_identical(a: &ArrayProc, id: &str) {
    let out = a.cli(&["pair", "verify", id]);
    assert!(out.status.success(), "verify: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("both sides are identical"), "{stdout}");
}

/// Copies `len` pattern bytes to `path` in fs `fs` with nfs-cp.
fn nfs_put(a: &ArrayProc, tmp: &Path, fs: &str, path: &str, seed: u64, len: usize) {
    let local = tmp.join(format!("src-{seed}"));
    std::fs::write(&local, tools::pattern(seed, len)).expect("write source");
    tools::run_ok("nfs-cp", &[&local.to_string_lossy(), &a.url(fs, path)]);
}

#[test]
fn pair_copies_a_tree_and_keeps_both_stores_identical() {
    let mut p = PairProcs::start(false);
    let tmp = tempfile::tempdir().expect("tmp");
    make_fs(&p.a, "p");
    let fs = fs_id(&p.a, "p");

    // A tree written before the pair exists: the initial full sync must carry it.
    let (root, d1) = rt().block_on(async {
        let mut c = Client::mount(p.a.nfs, "p", LOCALHOST).await.expect("mount");
        let root = c.root.clone();
        let d1 = c.mkdir(&root, "d1").await.expect("mkdir d1");
        c.mkdir(&d1, "d2").await.expect("mkdir d2");
        (root, d1)
    });
    let sizes = [0usize, 1, 4095, 65_536, 65_537, 300_000, 1 << 20, 2_500_000];
    for (i, len) in sizes.iter().enumerate() {
        let dir = ["", "d1/", "d1/d2/"][i % 3];
        nfs_put(&p.a, tmp.path(), "p", &format!("{dir}f{i}"), i as u64, *len);
    }

    let id = create_pair(&p.a, "p");
    let v = wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    assert_eq!(v["link"], "Up");
    assert_eq!(v["dcl"]["bytes"], 0);
    assert_eq!(v["data"][1]["status"], "Consistent", "{v:#}");
    // The secondary knows the pair too, and does not serve the fs to hosts.
    let vb: Value = serde_json::from_str(&p.b.cli_ok(&["pair", "list", "--json"])).expect("json");
    assert_eq!(vb[0]["id"], id.as_str());
    assert_eq!(vb[0]["role"], "Secondary");
    assert_eq!(vb[0]["state"], "Normal");
    assert!(
        !tools::run("nfs-ls", &[&p.b.url("p", "")]).status.success(),
        "the secondary serves the fs"
    );

    // Changes while Normal are dual-written.
    for i in 10..16u64 {
        nfs_put(
            &p.a,
            tmp.path(),
            "p",
            &format!("d1/g{i}"),
            i,
            100_000 * i as usize,
        );
    }
    rt().block_on(async {
        let mut c = Client::connect(p.a.nfs, LOCALHOST, root.clone())
            .await
            .expect("connect");
        c.rename(&root, "f0", &d1, "moved").await.expect("rename");
        c.remove(&d1, "f1").await.expect("remove");
        let f = c.lookup(&root, "f3").await.expect("lookup f3");
        c.write(&f, 1000, &tools::pattern(99, 70_000), stable_how::UNSTABLE)
            .await
            .expect("write");
        c.commit(&f).await.expect("commit");
        c.mkdir(&root, "d3").await.expect("mkdir d3");
    });
    let v = show(&p.a, &id);
    assert_eq!(v["state"], "Normal", "{v:#}");
    assert_eq!(v["dcl"]["chunks"], 0, "a Normal pair records no DCL: {v:#}");
    verify_identical(&p.a, &id);

    let image = stop_and_compare(&mut p, fs);
    assert!(image.len() >= 17, "{} inodes", image.len());
}

/// The serving side killed during the initial full sync finishes it by itself after its
/// restart. Its pair record said Synchronizing when it died; it used to come back
/// Synchronizing with no resync worker, and the link's return (which restarts only a
/// ToBeSynchronized pair) left it so for good.
#[test]
fn serving_side_killed_during_the_initial_sync_finishes_it_after_a_restart() {
    // Enough that the sync is still running a few milliseconds after it started (it copies
    // several hundred MiB/s here).
    const FILES: u64 = 3;
    const FILE_BYTES: usize = 128 << 20;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut p = PairProcs::start(false);
    make_fs(&p.a, "i");
    let fs = fs_id(&p.a, "i");
    for n in 0..FILES {
        nfs_put(&p.a, tmp.path(), "i", &format!("big{n}"), 70 + n, FILE_BYTES);
    }
    let id = create_pair(&p.a, "i");
    // `pair create` answers once the sync has started.
    p.a.kill9();
    p.a.spawn();
    let v = wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    let events = events(&v);
    assert!(
        events
            .iter()
            .any(|e| e.contains("Synchronizing -> ToBeSynchronized")),
        "the restart found the sync unfinished and said so: {events:?}"
    );
    assert_eq!(v["dcl"]["full"], false, "{v:#}");
    verify_identical(&p.a, &id);
    let image = stop_and_compare(&mut p, fs);
    assert_eq!(image.len() as u64, FILES + 1, "root and {FILES} files");
}

#[test]
fn killed_peer_returns_and_resyncs_by_itself() {
    const FILE_BYTES: usize = 256 << 10;
    let mut p = PairProcs::start(false);
    make_fs(&p.a, "k");
    let fs = fs_id(&p.a, "k");
    let id = create_pair(&p.a, "k");
    wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);

    // A writer through site-a: files of 256 KiB, four UNSTABLE writes and a COMMIT each.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (nfs, acked2, stop2) = (p.a.nfs, acked.clone(), stop.clone());
    let writer = std::thread::spawn(move || -> Result<u64, String> {
        rt().block_on(async {
            let mut c = Client::mount(nfs, "k", LOCALHOST)
                .await
                .map_err(|e| e.to_string())?;
            let root = c.root.clone();
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                let f = c
                    .create(&root, &format!("w{n}"))
                    .await
                    .map_err(|e| format!("create w{n}: {e:?}"))?;
                let data = tools::pattern(1000 + n, FILE_BYTES);
                for (i, part) in data.chunks(FILE_BYTES / 4).enumerate() {
                    c.write(&f, (i * FILE_BYTES / 4) as u64, part, stable_how::UNSTABLE)
                        .await
                        .map_err(|e| format!("write w{n}: {e:?}"))?;
                }
                c.commit(&f)
                    .await
                    .map_err(|e| format!("commit w{n}: {e:?}"))?;
                n += 1;
                acked2.store(n, Ordering::SeqCst);
            }
            Ok(n)
        })
    });
    let wait_acked = |at_least: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::SeqCst) < at_least {
            assert!(!writer.is_finished(), "writer stopped {what}");
            assert!(
                Instant::now() < deadline,
                "writer stuck {what} at {} files",
                acked.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    wait_acked(5, "before the kill");
    p.b.kill9();
    let at_kill = acked.load(Ordering::SeqCst);
    // Writes go on without the peer.
    wait_acked(at_kill + 10, "after the peer was killed");
    let v = wait_state(&p.a, &id, "ToBeSynchronized", 10_000);
    assert_eq!(v["link"], "Down", "{v:#}");
    assert!(
        v["dcl"]["chunks"].as_u64().expect("chunks") > 0,
        "the DCL records the changes: {v:#}"
    );
    assert!(v["dcl"]["bytes"].as_u64().expect("bytes") > 0, "{v:#}");
    assert_eq!(v["data"][0]["status"], "Consistent", "{v:#}");
    assert_eq!(v["data"][1]["status"], "Inconsistent", "{v:#}");
    assert!(
        !v["alarms"].as_array().expect("alarms").is_empty(),
        "an alarm is raised: {v:#}"
    );
    // Nothing to resume with: the peer is gone.
    let out = p.a.cli(&["pair", "resume", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("link to the peer is down"),
        "{}",
        text(&out)
    );

    // The peer returns while the writer still writes: Synchronizing, then Normal, alone.
    p.b.spawn();
    let v = wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    let events = events(&v);
    assert!(
        events
            .iter()
            .any(|e| e.contains("ToBeSynchronized -> Synchronizing")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("Synchronizing -> Normal")),
        "{events:?}"
    );
    let after_return = acked.load(Ordering::SeqCst);
    wait_acked(after_return + 5, "after the peer returned");

    stop.store(true, Ordering::SeqCst);
    let files = writer
        .join()
        .expect("writer thread")
        .expect("writer never failed");
    let v = show(&p.a, &id);
    assert_eq!(v["state"], "Normal", "{v:#}");
    assert_eq!(v["dcl"]["chunks"], 0, "{v:#}");
    verify_identical(&p.a, &id);

    let image = stop_and_compare(&mut p, fs);
    // Every acknowledged file is there, whole, on both sides (they are identical).
    assert_eq!(image.len() as u64, files + 1, "root and {files} files");
    let s = Store::open(&p.b.data_dir).expect("open site-b's store");
    let names: BTreeMap<String, metrofs_core::Ino> = s
        .entries(fs, metrofs_core::ROOT_INO)
        .expect("root entries")
        .into_iter()
        .map(|(n, i)| (String::from_utf8_lossy(&n).into_owned(), i))
        .collect();
    for n in 0..files {
        let ino = names
            .get(&format!("w{n}"))
            .unwrap_or_else(|| panic!("acknowledged w{n} missing on site-b"));
        assert_eq!(
            s.getattr(fs, *ino).expect("getattr").size,
            FILE_BYTES as u64,
            "w{n} not whole"
        );
    }
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let p = PairProcs::start(true);
    make_fs(&p.a, "s");
    let refusal = "different shared secret";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(p.a.log().contains(refusal) && p.b.log().contains(refusal)) {
        assert!(
            Instant::now() < deadline,
            "both logs must name the refusal\n--- site-a:\n{}\n--- site-b:\n{}",
            p.a.log(),
            p.b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = p.a.cli(&["pair", "create", "s", "--remote", "site-b"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("link to peer 'site-b' is down") && err.contains("hint:"),
        "{err}"
    );
    for a in [&p.a, &p.b] {
        assert!(a.cli_ok(&["pair", "list"]).contains("no pairs"));
        let (_, health) = a.get("/api/health");
        assert!(health.contains("\"link\":\"Down\""), "{health}");
    }
    assert!(
        p.b.cli_ok(&["fs", "list"]).contains("no file systems"),
        "no twin was made"
    );
}

/// Runs `metrofs ARGS` on `a`, expects exit `code` and `want` in stderr.
fn refused(a: &ArrayProc, args: &[&str], code: i32, want: &str) {
    let out = a.cli(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
}

#[test]
fn pair_cli_refuses_wrong_states_and_input() {
    let mut p = PairProcs::start(false);
    let tmp = tempfile::tempdir().expect("tmp");
    make_fs(&p.a, "c");
    let fs = fs_id(&p.a, "c");

    refused(&p.a, &["pair", "create", "c"], 2, "--remote");
    refused(
        &p.a,
        &["pair", "create", "nope", "--remote", "site-b"],
        1,
        "file system 'nope' does not exist",
    );
    refused(
        &p.a,
        &["pair", "create", "c", "--remote", "site-c"],
        1,
        "the peer is 'site-b', not 'site-c'",
    );
    refused(&p.a, &["pair", "show", "xyz"], 1, "not a pair id");
    refused(
        &p.a,
        &["pair", "show", "0000000000000001"],
        1,
        "pair 0000000000000001 does not exist",
    );
    refused(
        &p.a,
        &["pair", "pause", "0000000000000001"],
        1,
        "does not exist",
    );

    nfs_put(&p.a, tmp.path(), "c", "before", 1, 200_000);
    let id = create_pair(&p.a, "c");
    refused(
        &p.a,
        &["pair", "create", "c", "--remote", "site-b"],
        1,
        "already paired",
    );
    wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    refused(&p.a, &["fs", "delete", "c"], 1, "delete the pair first");

    // Wrong state: nothing changes.
    let before = show(&p.a, &id);
    refused(
        &p.a,
        &["pair", "resume", &id],
        1,
        "the pair is Normal; resume needs Paused or ToBeSynchronized",
    );
    let after = show(&p.a, &id);
    assert_eq!(
        (&after["state"], &after["events"]),
        (&before["state"], &before["events"])
    );
    // The secondary is not where actions happen.
    refused(&p.b, &["pair", "pause", &id], 1, "secondary");
    assert_eq!(show(&p.a, &id)["state"], "Normal");

    // Pause: changes only on site-a, in the DCL; verify sees them; resume heals.
    let out = p.a.cli_ok(&["pair", "pause", &id]);
    assert!(out.contains("Paused"), "{out}");
    refused(
        &p.a,
        &["pair", "pause", &id],
        1,
        "the pair is Paused; pause needs",
    );
    nfs_put(&p.a, tmp.path(), "c", "while-paused", 2, 300_000);
    let v = show(&p.a, &id);
    assert_eq!(v["state"], "Paused");
    assert!(v["dcl"]["chunks"].as_u64().expect("chunks") >= 5, "{v:#}");
    assert_eq!(v["data"][1]["status"], "Inconsistent", "{v:#}");
    let out = p.a.cli(&["pair", "verify", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify finds the paused change: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("differences"),
        "{}",
        text(&out)
    );
    let show_text = p.a.cli_ok(&["pair", "show", &id]);
    for field in [
        "state:          Paused",
        "data:           site-a Consistent, site-b Inconsistent",
        "link:           Up, RTT",
        "preferred site: site-a",
        "epoch:",
        "DCL:",
    ] {
        assert!(show_text.contains(field), "{field:?} not in\n{show_text}");
    }
    p.a.cli_ok(&["pair", "resume", &id]);
    wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    verify_identical(&p.a, &id);

    // An array without a peer refuses pairs, saying how to get one.
    let alone = ArrayProc::start();
    make_fs(&alone, "x");
    refused(
        &alone,
        &["pair", "create", "x", "--remote", "site-b"],
        1,
        "no peer configured",
    );
    drop(alone);

    // Delete: both copies stay, independent; the former secondary serves its own now.
    let image = {
        p.a.cli_ok(&["pair", "delete", &id]);
        assert!(p.a.cli_ok(&["pair", "list"]).contains("no pairs"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.b.cli_ok(&["pair", "list"]).contains("no pairs") {
            assert!(Instant::now() < deadline, "site-b still lists the pair");
            std::thread::sleep(Duration::from_millis(50));
        }
        p.b.cli_ok(&[
            "export",
            "set",
            "c",
            "--clients",
            "127.0.0.0/8",
            "--rw",
            "--no-root-squash",
        ]);
        let out = tools::run_ok("nfs-ls", &[&p.b.url("c", "")]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("while-paused"));
        stop_and_compare(&mut p, fs)
    };
    assert!(image.len() >= 3);
}
