//! Faults under a running metro pair, with the real binaries: a link cut for real (two
//! network namespaces, a veth pair set down and up) while a libnfs writer goes on, and the
//! resync that follows copies only what the DCL recorded.
//!
//! The tests end with checks independent of the metro module: the two stopped data directories are
//! opened with `metrofs_store::Store::open` and their images compared.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrofs_core::FsId;
use metrofs_store::Store;
use serde_json::Value;

use crate::harness::{text, ArrayProc};
use crate::netns::{NsArray, Netns};
use crate::tools;

/// How long a pair may take to become Normal with a few MiB to copy.
pub(crate) const NORMAL_WAIT_MS: u64 = 60_000;
/// DCL granularity (metrofs-metro's `DCL_CHUNK_BYTES`).
const CHUNK: u64 = 64 << 10;

/// Polls `view()` until the pair is in `state`; returns that view. `seen` gets every state
/// observed on the way.
pub(crate) fn wait_state(view: &dyn Fn() -> Value, state: &str, ms: u64, seen: &mut Vec<String>, log: &dyn Fn() -> String) -> Value {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        let v = view();
        let s = v["state"].as_str().unwrap_or("?").to_owned();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == state {
            return v;
        }
        assert!(Instant::now() < deadline, "pair not {state} after {ms} ms (seen {seen:?}): {v:#}\nlog:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn parse(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

/// What two sides of a pair must agree on: inode numbers, names, attributes and bytes (not
/// READDIR slots, exclusive-create verifiers, the free list or the allocator's mark, which
/// resync does not copy). Each store is also checked for internal consistency.
pub(crate) fn visible(data_dir: &Path, fs: FsId) -> BTreeMap<u64, String> {
    let s = Store::open(data_dir).expect("open a stopped array's store");
    let problems = s.check(fs);
    assert!(problems.is_empty(), "store {} inconsistent: {problems:?}", data_dir.display());
    let img = s.image(fs).expect("image");
    img.inodes
        .into_iter()
        .map(|(ino, mut i)| {
            i.next_slot = None;
            i.verifier = None;
            let entries: Option<BTreeMap<Vec<u8>, u64>> = i.entries.take().map(|e| e.into_iter().map(|(n, (_, ino))| (n, ino)).collect());
            (ino, format!("{i:?} {entries:?}"))
        })
        .collect()
}

/// Both stopped data directories hold the same image of `fs`; returns it.
pub(crate) fn same_stores(a: &Path, b: &Path, fs: FsId, what: &str) -> BTreeMap<u64, String> {
    let (va, vb) = (visible(a, fs), visible(b, fs));
    if va != vb {
        let mut lines: Vec<String> = va
            .keys()
            .chain(vb.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| va.get(k) != vb.get(k))
            .map(|k| format!("ino {k}:\n  a {:?}\n  b {:?}", va.get(k), vb.get(k)))
            .collect();
        lines.truncate(20);
        panic!("{what}: the two data directories differ:\n{}", lines.join("\n"));
    }
    va
}

/// `pair verify` output must say both sides are identical.
pub(crate) fn assert_verified(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: verify: {}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("both sides are identical"), "{what}: {stdout}");
}

pub(crate) fn fs_id_of(fs_json: &Value) -> FsId {
    FsId(u64::from_str_radix(fs_json["id"].as_str().expect("id"), 16).expect("hex id"))
}

/// The `[domain]`, `[peer]` and `[link]` sections of one side, heartbeats fast enough that a
/// dead link is noticed within a second.
fn pair_sections(preferred: bool, peer: &str, peer_addr: &str, listen: &str, secret: &Path) -> String {
    format!(
        "[domain]\nname = \"it\"\npreferred = {preferred}\n\n[peer]\nname = \"{peer}\"\naddress = \"{peer_addr}\"\n\n\
         [link]\nlisten = \"{listen}\"\nsecret_file = \"{}\"\nheartbeat_interval_ms = 100\nheartbeat_timeout_ms = 600\n",
        secret.display()
    )
}

fn write_secret(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, tools::pattern(7, 32)).expect("secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// The data bytes the resyncs after the cut sent: the `resync done: N bytes of data` events
/// newer than the pair's move to ToBeSynchronized (events are newest first).
fn resync_sent_since_cut(v: &Value) -> (u64, usize) {
    let events = crate::pair::events(v);
    let cut = events
        .iter()
        .position(|e| e.contains("-> ToBeSynchronized"))
        .unwrap_or_else(|| panic!("no move to ToBeSynchronized in the events: {events:?}"));
    let mut sent = 0;
    let mut runs = 0;
    for e in &events[..cut] {
        if let Some(rest) = e.split("resync done: ").nth(1) {
            let n: u64 = rest.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("event {e:?}"));
            sent += n;
            runs += 1;
        }
    }
    (sent, runs)
}

/// One `nfs-cp` of the writer: which file, when it ran, whether it succeeded.
struct Copy {
    n: u64,
    start: Instant,
    end: Instant,
}

#[test]
fn link_cut_in_network_namespaces_resyncs_only_the_dcl() {
    /// Files the writer copies during the test, chunk-aligned so the DCL's rounding adds
    /// nothing to them.
    const FILE: usize = 256 << 10;
    /// Written before the pair exists: what a full resync would send again.
    const PREFILL: usize = 48 << 20;
    /// The writer starts a file at most this often, so a slow heal on a loaded machine
    /// (CI once saw ~140 files inside the cut) cannot push the bound past the prefill.
    const PACE: Duration = Duration::from_millis(120);
    const LINK_PORT: u16 = 7411;

    let net = Netns::create();
    let addr_a = format!("{}:{LINK_PORT}", Netns::ADDR_A);
    let addr_b = format!("{}:{LINK_PORT}", Netns::ADDR_B);
    let mut secret = std::path::PathBuf::new();
    let pa = ArrayProc::configured("site-a", |dir| {
        secret = dir.join("link.secret");
        write_secret(&secret);
        pair_sections(true, "site-b", &addr_b, &addr_a, &secret)
    });
    let pb = ArrayProc::configured("site-b", |_| pair_sections(false, "site-a", &addr_a, &addr_b, &secret));
    let mut a = NsArray::new(pa, &net.a);
    let mut b = NsArray::new(pb, &net.b);
    a.spawn();
    b.spawn();
    let tmp = tempfile::tempdir().expect("tmp");

    a.cli_ok(&["fs", "create", "cut"]);
    a.cli_ok(&["export", "set", "cut", "--clients", "127.0.0.0/8", "--rw", "--no-root-squash"]);
    let fs = fs_id_of(&parse(&a.cli_ok(&["fs", "show", "cut", "--json"])));
    let big = tmp.path().join("big");
    std::fs::write(&big, tools::pattern(1, PREFILL)).expect("prefill source");
    let out = a.tool("nfs-cp", &[&big.to_string_lossy(), &a.url("cut", "big")]);
    assert!(out.status.success(), "nfs-cp big: {}", text(&out));

    // The link comes up over the veth pair: retry create until it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let out = a.cli(&["pair", "create", "cut", "--remote", "site-b", "--json"]);
        if out.status.success() {
            break parse(&String::from_utf8_lossy(&out.stdout))["id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "pair create: {}\nsite-a:\n{}\nsite-b:\n{}", text(&out), a.log(), b.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let view = || parse(&a.cli_ok(&["pair", "show", &id, "--json"]));
    let log = || format!("--- site-a:\n{}\n--- site-b:\n{}", a.log(), b.log());
    let mut seen = Vec::new();
    let v = wait_state(&view, "Normal", NORMAL_WAIT_MS, &mut seen, &log);
    assert_eq!(v["link"], "Up", "{v:#}");

    // The writer: nfs-cp of 256 KiB files inside site-a's namespace, one after another.
    let copies: Arc<Mutex<Vec<Copy>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (copies, stop) = (copies.clone(), stop.clone());
        let (ns, url_of) = (a.ns.clone(), { let nfs = a.nfs; move |p: &str| crate::harness::libnfs_url(nfs, "cut", p) });
        let dir = tmp.path().to_owned();
        std::thread::spawn(move || -> Result<(), String> {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let src = dir.join(format!("w{n}"));
                std::fs::write(&src, tools::pattern(100 + n, FILE)).map_err(|e| e.to_string())?;
                let start = Instant::now();
                let out = tools::run_in(&ns, "nfs-cp", &[&src.to_string_lossy(), &url_of(&format!("w{n}"))], tools::TOOL_LIMIT)?;
                if !out.status.success() {
                    return Err(format!("nfs-cp w{n}: {}", text(&out)));
                }
                copies.lock().expect("copies").push(Copy { n, start, end: Instant::now() });
                n += 1;
                std::thread::sleep(PACE.saturating_sub(start.elapsed()));
            }
            Ok(())
        })
    };
    let done = || copies.lock().expect("copies").len() as u64;
    let wait_copies = |at_least: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while done() < at_least {
            assert!(!writer.is_finished(), "writer stopped {what}");
            assert!(Instant::now() < deadline, "writer stuck {what} at {} files", done());
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    wait_copies(3, "before the cut");
    let cut_at = Instant::now();
    net.set_link(false);
    // Writes go on while the link is down; the pair records them in the DCL.
    let v = wait_state(&view, "ToBeSynchronized", 10_000, &mut seen, &log);
    assert_eq!(v["link"], "Down", "{v:#}");
    let after_detect = done();
    wait_copies(after_detect + 3, "after the cut");
    let dcl1 = view()["dcl"]["bytes"].as_u64().expect("dcl bytes");
    wait_copies(done() + 3, "after the cut");
    let v = view();
    assert_eq!(v["state"], "ToBeSynchronized", "{v:#}");
    let dcl2 = v["dcl"]["bytes"].as_u64().expect("dcl bytes");
    assert!(dcl1 > 0 && dcl2 > dcl1, "the DCL grows with the writes: {dcl1} then {dcl2}: {v:#}");
    assert_eq!(v["data"][1]["status"], "Inconsistent", "{v:#}");

    // Heal: Synchronizing then Normal, by itself, while the writer still writes.
    net.set_link(true);
    let v = wait_state(&view, "Normal", NORMAL_WAIT_MS, &mut seen, &log);
    let normal_at = Instant::now();
    let events = crate::pair::events(&v);
    assert!(events.iter().any(|e| e.contains("ToBeSynchronized -> Synchronizing")), "{events:?}");
    assert!(events.iter().any(|e| e.contains("Synchronizing -> Normal")), "{events:?}");
    wait_copies(done() + 2, "after the heal");
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread").expect("no write failed, cut or not");

    let v = view();
    assert_eq!(v["state"], "Normal", "{v:#}");
    assert_eq!(v["dcl"]["chunks"], 0, "{v:#}");
    let (sent, runs) = resync_sent_since_cut(&v);
    assert!(runs >= 1, "a resync ran after the heal: {v:#}");
    assert_verified(&a.cli(&["pair", "verify", &id]), "after the heal");
    // The loss is counted among the errors by kind in the metrics.
    let metrics = a.cli_ok(&["metrics"]);
    let lost = metrics
        .lines()
        .find_map(|l| l.strip_prefix("metrofs_errors_total{kind=\"link_lost\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(lost.is_some_and(|n| n >= 1.0), "no link_lost error counted:\n{metrics}");

    // The bound. Bytes changed while the pair was not Normal are at most the files whose
    // copy overlapped [cut, Normal] (whole files, an over-estimate at both ends). The DCL
    // rounds to 64 KiB chunks; the files are chunk-aligned, so rounding adds nothing, but a
    // chunk per file is allowed as metadata slack (sent_bytes counts data segments only;
    // inode and directory records travel without a data body). A full resync would send the
    // 24 MiB prefill again, which is far above the bound (asserted).
    let copies = copies.lock().expect("copies");
    let touched: Vec<u64> = copies.iter().filter(|c| c.start < normal_at && c.end > cut_at).map(|c| c.n).collect();
    let changed = touched.len() as u64 * FILE as u64;
    let bound = changed + changed / 4 + touched.len() as u64 * CHUNK;
    assert!(bound < PREFILL as u64, "the test cannot tell a DCL resync from a full one: bound {bound}");
    assert!(
        sent <= bound,
        "resync sent {sent} bytes; bytes changed during the cut ≤ {changed} ({} files {touched:?}), bound 1.25 × changed + 64 KiB per file = {bound}",
        touched.len()
    );
    // Not vacuous: what changed during the cut (at least the files copied entirely inside
    // the cut) had to travel.
    let inside = copies.iter().filter(|c| c.start > cut_at && c.end < normal_at).count() as u64;
    assert!(inside >= 3, "{inside} files written during the cut");
    let files = copies.len() as u64;
    drop(copies);

    for (name, arr) in [("site-a", &mut a), ("site-b", &mut b)] {
        let st = arr.stop();
        assert!(st.success(), "{name} stop: {st}\n{}", arr.log());
    }
    let image = same_stores(&a.proc.data_dir, &b.proc.data_dir, fs, "after the link cut");
    assert_eq!(image.len() as u64, files + 2, "root, big and {files} files");
    eprintln!("link cut: {files} files, {} touched by the cut, resync sent {sent} B (bound {bound}, DCL peak {dcl2} B)", touched.len());
}
