//! The op journal: a child process (this test binary re-executed) applies thousands of seeded
//! namespace, attribute and UNSTABLE write ops and never syncs (some seeds sync now and then,
//! so a kill also lands after a journal rotation); it prints each op's index once `apply`
//! returned. The parent kills it with SIGKILL at a seeded moment, reopens the store, and checks
//! that it is exactly — `image()`, every attribute, entry, READDIR slot, free number and byte —
//! a fresh store given the same ops up to the last one printed (or one more: the op in flight
//! may have been journaled before the kill).
//!
//! Seeds: `METROFS_JOURNAL_SEEDS=1,2,3` replays chosen ones (each run prints its seed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use metrofs_core::{ExportRules, FsId, FsOp, Ino, OpBody, Time, ROOT_INO};
use metrofs_store::Store;

use crate::props;

const FS: FsId = FsId(0x10_0a1);
const ENV_DIR: &str = "METROFS_JOURNAL_CHILD_DIR";
const ENV_SEED: &str = "METROFS_JOURNAL_CHILD_SEED";
/// Ops the child has; it is killed before the end.
const OPS: usize = 5000;
/// Some seeds sync every this many ops (the kill then finds records in both journal files).
const SYNC_EVERY: usize = 700;

/// Whether a seed's child makes nothing durable but the fs (no truncation, no sync): then
/// every change it made is in the journal when it is killed.
fn journal_only(seed: u64) -> bool {
    seed.is_multiple_of(2) && !seed.is_multiple_of(3)
}

/// Seeded ops, the same in every process: props' ops with every write UNSTABLE and no
/// COMMIT (nothing but a shrinking SETATTR or CREATE, or the periodic sync, makes anything
/// durable; a `journal_only` seed has no size-setting op either).
fn seeded_ops(seed: u64) -> Vec<props::A> {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut key = [7u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let strategy = props::arb_op().prop_map(|a| match a {
        props::A::Write {
            obj,
            offset,
            len,
            fill,
            ..
        } => props::A::Write {
            obj,
            offset,
            len,
            stable: 2,
            fill,
        },
        props::A::Commit { obj } => props::A::Chmod { obj, mode: 0o640 },
        props::A::Truncate { obj, size } if journal_only(seed) => props::A::Chmod {
            obj,
            mode: u16::from(size),
        },
        props::A::Create { dir, name, how, .. } if journal_only(seed) => props::A::Create {
            dir,
            name,
            how,
            size: None,
        },
        other => other,
    });
    (0..OPS)
        .map(|_| strategy.new_tree(&mut runner).expect("op").current())
        .collect()
}

/// Applies ops one by one (as `sync.rs`'s driver does), calling `after(i)` once op `i`
/// returned.
struct Driver {
    dirs: Vec<Ino>,
    objs: Vec<Ino>,
}

impl Driver {
    fn new() -> Self {
        Self {
            dirs: vec![ROOT_INO],
            objs: Vec::new(),
        }
    }

    /// Applies op `i` to `s` (and, the same `FsOp`, to `also`); returns `s`'s result.
    fn apply(&mut self, s: &Store, i: usize, a: &props::A, also: Option<&Store>) {
        let body = props::body(a, &self.dirs, &self.objs);
        let new_inode = body
            .creates()
            .then(|| s.next_inode(FS).expect("next_inode"));
        let op = FsOp {
            fs: FS,
            time: Time::new(1_800_000_000 + i as u32, 3),
            new_inode,
            body,
        };
        let r = s.apply(&op);
        if let Some(other) = also {
            let mask = |r: &Result<metrofs_core::OpReply, metrofs_core::FsError>| {
                r.as_ref().map(|_| ()).map_err(Clone::clone)
            };
            assert_eq!(mask(&other.apply(&op)), mask(&r), "op {i}: {op:?}");
        }
        if let (Ok(r), Some(n)) = (r, new_inode) {
            if r.obj.as_ref().is_some_and(|o| o.ino == n.ino) {
                self.objs.push(n.ino);
                if matches!(op.body, OpBody::Mkdir { .. }) {
                    self.dirs.push(n.ino);
                }
            }
        }
    }
}

fn new_fs(s: &Store) {
    s.create_fs("j", FS, ExportRules::default(), Time::new(1_700_000_000, 0))
        .expect("fs");
}

/// The child: applies the seed's ops, printing `@i` after op `i` returned (and `@S` after a
/// sync); then waits to be killed.
#[test]
fn journal_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(ENV_DIR), std::env::var(ENV_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().expect("seed");
    let s = Store::open(std::path::Path::new(&dir)).expect("open");
    new_fs(&s);
    println!("@READY");
    let mut d = Driver::new();
    for (i, a) in seeded_ops(seed).iter().enumerate() {
        d.apply(&s, i, a, None);
        println!("@{i}");
        if seed.is_multiple_of(3) && i % SYNC_EVERY == SYNC_EVERY - 1 {
            s.sync().expect("sync");
            println!("@S");
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A fresh store (in a fresh directory) given the first `n` ops, and its driver.
fn reference(ops: &[props::A], n: usize) -> (tempfile::TempDir, Store, Driver) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    new_fs(&s);
    let mut d = Driver::new();
    for (i, a) in ops.iter().take(n).enumerate() {
        d.apply(&s, i, a, None);
    }
    (dir, s, d)
}

fn kill_once(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "journal::journal_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir.path())
        .env(ENV_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    // Kill somewhere in the first 3000 ops (a durable commit comes with a shrinking SETATTR,
    // a sync, or after 4096 namespace ops: the kill finds a journal with many records).
    let kill_after = 200 + (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % 2800;
    let mut last: Option<usize> = None;
    let mut line = String::new();
    let parse = |l: &str| {
        l.trim()
            .strip_prefix('@')
            .and_then(|n| n.parse::<usize>().ok())
    };
    while last.is_none_or(|l| l < kill_after) {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "seed {seed}: the child ended early"
        );
        if let Some(i) = parse(&line) {
            last = Some(i);
        }
    }
    child.kill().expect("SIGKILL");
    // What it printed before dying was applied before dying.
    for l in reader.lines() {
        if let Some(i) = parse(&l.expect("line")) {
            last = Some(i);
        }
    }
    child.wait().expect("wait");
    let last = last.expect("a line");

    let s = Store::open(dir.path()).expect("reopen after the kill");
    let report = s
        .last_recovery()
        .cloned()
        .expect("a killed store recovers at open");
    assert!(
        report.journal_refused.is_empty(),
        "seed {seed}: {:#?}",
        report.journal_refused
    );
    let problems = s.check(FS);
    assert!(
        problems.is_empty(),
        "seed {seed}: check after the kill: {problems:#?}"
    );
    let got = s.image(FS).expect("image");
    let ops = seeded_ops(seed);
    let (mut ref_dir, mut ref_s, mut ref_d) = reference(&ops, last + 1);
    let mut applied = last + 1;
    let printed = ref_s.image(FS).expect("image");
    if got != printed {
        let (one_dir, one_s, one_d) = reference(&ops, last + 2);
        let one_more = one_s.image(FS).expect("image");
        if got == one_more {
            (ref_dir, ref_s, ref_d) = (one_dir, one_s, one_d);
            applied = last + 2;
        } else {
            let torn = ops
                .get(last + 1)
                .and_then(|a| torn_write(&s, &ref_s, &one_s, &ref_d, a));
            assert!(
                torn.is_some(),
                "seed {seed}: killed after op {last}: the store is neither the first {} ops nor one more:\n{}",
                last + 1,
                got.diff(&printed, 10).join("\n")
            );
            eprintln!(
                "seed {seed}: op {} was a WRITE in flight: {} of its bytes landed, not its attributes",
                last + 1,
                torn.unwrap_or(0)
            );
            // The client never heard back, so it sends the WRITE again: then both agree.
            ref_d.apply(&ref_s, last + 1, &ops[last + 1], Some(&s));
            assert!(
                s.image(FS).expect("image") == one_more,
                "seed {seed}: the WRITE sent again did not complete the torn one"
            );
            drop((one_s, one_dir));
            applied = last + 2;
        }
    }
    eprintln!(
        "seed {seed}: killed after {applied} ops; {} journal records replayed",
        report.journal_replayed
    );
    if journal_only(seed) {
        // Nothing was durable but the empty fs: the journal carried every change.
        assert!(
            report.journal_replayed as usize > applied / 4,
            "seed {seed}: only {} records replayed for {applied} ops",
            report.journal_replayed
        );
    }
    // The reopened store goes on like the reference; a clean close and reopen keep it.
    for (i, a) in ops.iter().enumerate().skip(applied).take(100) {
        ref_d.apply(&ref_s, i, a, Some(&s));
    }
    let got = s.image(FS).expect("image");
    let want = ref_s.image(FS).expect("image");
    assert!(
        got == want,
        "seed {seed}: after more ops: {:#?}",
        got.diff(&want, 10)
    );
    drop((ref_s, ref_dir));
    drop(s);
    let s = Store::open(dir.path()).expect("reopen after a clean close");
    assert!(
        s.last_recovery().is_none(),
        "seed {seed}: the close after the replay was clean"
    );
    assert!(
        s.image(FS).expect("image") == got,
        "seed {seed}: changed across a clean reopen"
    );
}

/// The op in flight at the kill may be a WRITE whose bytes reached the data file (all of them,
/// or up to a page boundary: the kernel stops a `pwrite` at a fatal signal between pages) but
/// whose record never reached the journal: then the store equals `printed` but for that file's
/// bytes inside the write's range and the file's old size. Returns how many bytes of the write
/// are in `got`, or `None` when the store is not that.
fn torn_write(
    got: &Store,
    printed: &Store,
    one_more: &Store,
    d: &Driver,
    a: &props::A,
) -> Option<usize> {
    let OpBody::Write {
        ino, offset, data, ..
    } = props::body(a, &d.dirs, &d.objs)
    else {
        return None;
    };
    let mask = |s: &Store| {
        let mut i = s.image(FS).expect("image");
        if let Some(n) = i.inodes.get_mut(&ino.0) {
            n.content = None;
        }
        i
    };
    if mask(got) != mask(printed) {
        return None;
    }
    let fx = |s| crate::fx::Fx::existing(s, FS);
    let (old, new, now) = (
        fx(printed).read_all(ino),
        fx(one_more).read_all(ino),
        fx(got).read_all(ino),
    );
    let off = offset as usize;
    let end = off + data.len();
    let page = 4096;
    let cuts = (off..end)
        .filter(|c| *c == off || c % page == 0)
        .chain(std::iter::once(end));
    cuts.into_iter().find_map(|cut| {
        let mut want = old.clone();
        for (i, b) in want.iter_mut().enumerate().take(cut).skip(off) {
            *b = new[i];
        }
        (want == now).then_some(cut - off)
    })
}

#[test]
fn every_applied_op_survives_kill_9_without_a_sync() {
    let seeds: Vec<u64> = match std::env::var("METROFS_JOURNAL_SEEDS") {
        Ok(v) => v
            .split(',')
            .map(|x| x.trim().parse().expect("seed"))
            .collect(),
        Err(_) => vec![1, 2, 3, 4, 5, 6, 8, 10],
    };
    for seed in seeds {
        eprintln!("journal seed {seed}");
        kill_once(seed);
    }
}

/// `torn_write` accepts what a WRITE cut by the kill leaves (its bytes in the data file up to a
/// page boundary, its attributes not) and nothing else.
#[test]
fn a_write_torn_by_the_kill_is_told_from_a_lost_change() {
    use std::os::unix::fs::FileExt;
    let seed = 4;
    let ops = seeded_ops(seed);
    // The first WRITE after op 300 to a file already longer than the write's end.
    let (k, ino, off, data) = (300..ops.len())
        .find_map(|k| {
            let (_dir, s, d) = reference(&ops, k);
            let OpBody::Write {
                ino, offset, data, ..
            } = props::body(&ops[k], &d.dirs, &d.objs)
            else {
                return None;
            };
            let size = s.getattr(FS, ino).ok()?.size;
            (data.len() > 4096 && offset + data.len() as u64 + 1 < size)
                .then(|| (k, ino, offset, data.to_vec()))
        })
        .expect("a multi-page write inside a file");
    let (_pd, printed, d) = reference(&ops, k);
    let (_od, one_more, _) = reference(&ops, k + 1);
    let tear = |landed: usize, flip: bool| {
        let (dir, got, _) = reference(&ops, k);
        let path = walkdir_find(dir.path(), &ino.0.to_string());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("data file");
        let mut bytes = data[..landed].to_vec();
        if flip {
            bytes[landed - 1] ^= 1;
        }
        f.write_all_at(&bytes, off).expect("pwrite");
        let r = torn_write(&got, &printed, &one_more, &d, &ops[k]);
        drop(got);
        r
    };
    let first_page = (4096 - off as usize % 4096) % 4096;
    let cut = if first_page == 0 { 4096 } else { first_page };
    assert_eq!(tear(cut, false), Some(cut), "up to a page boundary");
    assert_eq!(tear(data.len(), false), Some(data.len()), "all bytes");
    assert_eq!(tear(cut, true), None, "a wrong byte");
    if cut > 1 {
        assert_eq!(tear(cut - 1, false), None, "not a page boundary");
    }
}

fn walkdir_find(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut todo = vec![root.join("data")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if e.file_name() == name {
                return p;
            }
        }
    }
    panic!("no data file {name} under {}", root.display());
}
