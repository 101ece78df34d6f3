//! Crash test: a child process (this test binary re-executed) applies ops with COMMITs and
//! prints what each COMMIT made durable; the parent kills it with SIGKILL at a random moment,
//! reopens the store, and checks: `check()` is empty, every committed file is there with its
//! inode, generation and bytes, every durable removal stayed removed, and the store works on.
//!
//! Seeds: `METROFS_CRASH_SEEDS=1,2,3` replays chosen ones (each run prints its seed).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use metrofs_core::{FsError, FsId, Ino, SetAttr, Stability, ROOT_INO};
use metrofs_store::Store;

use crate::fx::Fx;

const FS: FsId = FsId(0xc4a5_0001);
const ENV_DIR: &str = "METROFS_CRASH_CHILD_DIR";
const ENV_SEED: &str = "METROFS_CRASH_CHILD_SEED";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn hash(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

/// The child: runs until killed. Lines it prints (only after the op returned):
/// `@C dir name ino gen size hash` a file committed with these bytes;
/// `@D dir name` a file about to be removed (printed before; durable at the next `@C`/`@S`);
/// `@U dir name` a committed file about to be changed without a commit (printed before);
/// `@S` a `sync()` returned.
#[test]
fn child_process() {
    let (Ok(dir), Ok(seed)) = (std::env::var(ENV_DIR), std::env::var(ENV_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().expect("seed");
    let s = Store::open(std::path::Path::new(&dir)).expect("open");
    let mut fx = if s.fs_by_id(FS).is_some() {
        Fx::existing(&s, FS)
    } else {
        s.create_fs(
            "crash",
            FS,
            metrofs_core::ExportRules::default(),
            metrofs_core::Time::new(1, 0),
        )
        .expect("fs");
        Fx::existing(&s, FS)
    };
    fx.clock += (seed as u32) * 100_000;
    let mut dirs = Vec::new();
    for d in ["d0", "d1", "d2"] {
        let a = match fx.lookup(ROOT_INO, d) {
            Ok(a) => a,
            Err(_) => fx.mkdir(ROOT_INO, d).expect("mkdir"),
        };
        dirs.push(a.ino);
    }
    let junk = match fx.lookup(ROOT_INO, "junk") {
        Ok(a) => a.ino,
        Err(_) => fx.mkdir(ROOT_INO, "junk").expect("mkdir").ino,
    };
    s.sync().expect("sync");
    println!("@S");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut committed: Vec<(Ino, String, Ino)> = Vec::new();
    let mut junk_n = 0u64;
    for i in 0.. {
        match rng.below(100) {
            0..=59 => {
                let d = dirs[rng.below(3) as usize];
                let name = format!("f{seed}-{i}");
                let f = fx.create(d, &name).expect("create");
                let mut model: Vec<u8> = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    if rng.below(10) == 0 {
                        let size = rng.below(1 << 20) as usize;
                        fx.truncate(f.ino, size as u64).expect("truncate");
                        model.resize(size, 0);
                        continue;
                    }
                    let off = rng.below(2 << 20) as usize;
                    let len = 1 + rng.below(64 << 10) as usize;
                    let byte = rng.next() as u8;
                    let data: Vec<u8> =
                        (0..len).map(|k| byte.wrapping_add((k / 7) as u8)).collect();
                    let stable = if rng.below(5) == 0 {
                        Stability::FileSync
                    } else {
                        Stability::Unstable
                    };
                    fx.write_stable(f.ino, off as u64, &data, stable)
                        .expect("write");
                    if model.len() < off + len {
                        model.resize(off + len, 0);
                    }
                    model[off..off + len].copy_from_slice(&data);
                }
                fx.commit(f.ino).expect("commit");
                println!(
                    "@C {} {name} {} {} {} {}",
                    d.0,
                    f.ino.0,
                    f.gen.0,
                    model.len(),
                    hash(&model)
                );
                committed.push((d, name, f.ino));
            }
            60..=74 if !committed.is_empty() => {
                let (d, name, _) =
                    committed.swap_remove(rng.below(committed.len() as u64) as usize);
                // Printed before: a kill between the removal and the line would leave a
                // removal the parent never heard of (the journal replays it).
                println!("@D {} {name}", d.0);
                fx.remove(d, &name).expect("remove");
            }
            75..=84 if !committed.is_empty() => {
                let (d, name, ino) =
                    committed.swap_remove(rng.below(committed.len() as u64) as usize);
                println!("@U {} {name}", d.0);
                if rng.below(2) == 0 {
                    fx.write(ino, rng.below(1 << 20), b"changed, never committed")
                        .expect("write");
                } else {
                    fx.setattr(
                        ino,
                        SetAttr {
                            size: Some(rng.below(4096)),
                            ..SetAttr::default()
                        },
                    )
                    .expect("truncate");
                }
            }
            85..=89 => {
                s.sync().expect("sync");
                println!("@S");
            }
            _ => {
                // Namespace churn nobody commits: only consistency is asked of it.
                junk_n += 1;
                let n = format!("j{seed}-{junk_n}");
                match rng.below(4) {
                    0 => drop(fx.mkdir(junk, &n)),
                    1 => {
                        if let Ok(a) = fx.create(junk, &n) {
                            let _ = fx.write(a.ino, rng.below(1 << 16), b"junk data");
                        }
                    }
                    2 => {
                        let from = format!("j{seed}-{}", 1 + rng.below(junk_n));
                        let to_dir = if rng.below(2) == 0 { junk } else { dirs[0] };
                        let _ = fx.rename(junk, &from, to_dir, &n);
                    }
                    _ => {
                        let victim = format!("j{seed}-{}", 1 + rng.below(junk_n));
                        if fx.remove(junk, &victim) == Err(FsError::IsDir) {
                            let _ = fx.rmdir(junk, &victim);
                        }
                    }
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Committed {
    ino: u64,
    gen: u64,
    size: u64,
    hash: u64,
}

fn crash_once(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let mut durable: HashMap<(u64, String), Option<Committed>> = HashMap::new();
    // Two lives: crash, recover, and crash again on the recovered store.
    for life in 0..2 {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "crash::child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir.path())
            .env(ENV_SEED, (seed * 10 + life).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(out);
        let commits_before_kill = 3 + rng.below(25);
        let mut commits = 0;
        let mut lines = Vec::new();
        let mut line = String::new();
        while commits < commits_before_kill {
            line.clear();
            if reader.read_line(&mut line).expect("read") == 0 {
                panic!("seed {seed}: child ended early; lines so far: {lines:?}");
            }
            if line.starts_with("@C") {
                commits += 1;
            }
            if line.starts_with('@') {
                lines.push(line.trim().to_string());
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        child.kill().expect("SIGKILL");
        // What it printed before dying was acknowledged before dying.
        for l in reader.lines() {
            let l = l.expect("line");
            if l.starts_with('@') {
                lines.push(l);
            }
        }
        child.wait().expect("wait");
        verify(seed, dir.path(), &lines, &mut durable);
    }
}

/// Checks the recovered store against what the child printed (`lines`, on top of `durable`
/// from earlier lives), then records in `durable` what the store now holds for names whose
/// fate the crash left open (a removal not yet durable, a change never committed).
fn verify(
    seed: u64,
    dir: &std::path::Path,
    lines: &[String],
    durable: &mut HashMap<(u64, String), Option<Committed>>,
) {
    let mut pending_removals: Vec<(u64, String)> = Vec::new();
    let mut tentative: HashSet<(u64, String)> = HashSet::new();
    for l in lines {
        let w: Vec<&str> = l.split(' ').collect();
        let num = |i: usize| w[i].parse::<u64>().expect("number");
        match w[0] {
            "@C" | "@S" => {
                for k in pending_removals.drain(..) {
                    durable.insert(k, None);
                }
                if w[0] == "@C" {
                    let c = Committed {
                        ino: num(3),
                        gen: num(4),
                        size: num(5),
                        hash: num(6),
                    };
                    durable.insert((num(1), w[2].to_string()), Some(c));
                }
            }
            "@D" => pending_removals.push((num(1), w[2].to_string())),
            "@U" => {
                tentative.insert((num(1), w[2].to_string()));
            }
            other => panic!("unknown line {other}"),
        }
    }
    let s = Store::open(dir).expect("reopen after the crash");
    let report = s.last_recovery().cloned();
    assert!(
        report.is_some(),
        "seed {seed}: a killed store must recover at open"
    );
    let problems = s.check(FS);
    assert!(
        problems.is_empty(),
        "seed {seed}: check after the crash: {problems:#?}\nrecovery: {report:?}"
    );
    let fx = Fx::existing(&s, FS);
    let pending: HashSet<(u64, String)> = pending_removals.into_iter().collect();
    let mut checked = 0;
    for (k, v) in durable.iter() {
        let (d, name) = k;
        let found = fx.lookup(Ino(*d), name);
        match v {
            None => assert_eq!(
                found.map(|a| a.ino),
                Err(FsError::NoEnt),
                "seed {seed}: {name} was removed durably"
            ),
            Some(c) if !tentative.contains(k) => {
                // A removal not yet durable may or may not have happened; if the file is
                // still there, its committed bytes are too (the trash gave them back).
                if pending.contains(k) && found == Err(FsError::NoEnt) {
                    continue;
                }
                let a = found.unwrap_or_else(|e| {
                    panic!("seed {seed}: committed {name} lost: {e}; recovery {report:?}")
                });
                assert_eq!(
                    (a.ino.0, a.gen.0, a.size),
                    (c.ino, c.gen, c.size),
                    "seed {seed}: {name}"
                );
                let bytes = fx.read_all(a.ino);
                assert_eq!(
                    hash(&bytes),
                    c.hash,
                    "seed {seed}: bytes of committed {name} differ"
                );
                checked += 1;
            }
            Some(_) => {}
        }
    }
    assert!(
        checked > 0 || durable.is_empty(),
        "seed {seed}: nothing checked"
    );
    eprintln!(
        "seed {seed}: {} lines, {checked} committed files checked, {} undecided; recovery {report:?}",
        lines.len(),
        pending.len() + tentative.len()
    );
    for k in pending.iter().chain(tentative.iter()) {
        let now = fx.lookup(Ino(k.0), &k.1).ok().map(|a| Committed {
            ino: a.ino.0,
            gen: a.gen.0,
            size: a.size,
            hash: hash(&fx.read_all(a.ino)),
        });
        durable.insert(k.clone(), now);
    }
    // The recovered store goes on working.
    let mut fx = Fx::existing(&s, FS);
    fx.clock += 50_000_000;
    let f = fx
        .create(
            ROOT_INO,
            &format!("after-{}", s.next_inode(FS).expect("next").ino.0),
        )
        .expect("create after recovery");
    fx.write(f.ino, 0, b"after").expect("write");
    fx.commit(f.ino).expect("commit");
    assert!(s.check(FS).is_empty());
    drop(s);
}

#[test]
fn committed_data_survives_kill_9() {
    let seeds: Vec<u64> = match std::env::var("METROFS_CRASH_SEEDS") {
        Ok(v) => v
            .split(',')
            .map(|x| x.trim().parse().expect("seed"))
            .collect(),
        Err(_) => vec![1, 2, 3, 4, 5, 6],
    };
    for seed in seeds {
        eprintln!("crash seed {seed}");
        crash_once(seed);
    }
}
