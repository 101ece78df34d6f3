//! Crash matrix of the metro pair: `kill -9` of either array (seeded choice) at a seeded
//! point of a mixed workload through site-a (creates, 64 KiB–1 MiB UNSTABLE writes with
//! COMMIT, overwrites, renames, removes; nfs3_client), restart, a few more operations while
//! the pair heals, then: Normal, `pair verify` clean, every acknowledged byte readable, and
//! the two stopped data directories identical (`metrofs_store::Store::open`, images compared).
//!
//! Seeds 0..20; `METROFS_CRASH_SEEDS=N` for more, `METROFS_CRASH_SEED=S` for one. The seed is
//! printed first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrofs_store::Store;
use nfs3_client::nfs3_types::nfs3::stable_how;

use crate::harness::PairProcs;
use crate::nfs::{rt, Client, LOCALHOST};
use crate::pair_faults::{assert_verified, fs_id_of, parse, same_stores, wait_state, NORMAL_WAIT_MS};
use crate::{make_fs, tools};


/// splitmix64: a seeded stream for the workload and the kill point.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the client knows: each file's acknowledged (COMMITted) bytes, and the names an
/// operation was in flight on when it failed (their outcome is unknown).
#[derive(Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    uncertain: BTreeSet<String>,
    next_name: u64,
    /// Every operation acknowledged, in order (for failure messages).
    trace: Vec<String>,
}

/// Runs `ops` operations of the seeded mixed workload against `nfs`; stops at the first
/// failure (the server was killed) leaving the names in flight uncertain.
fn workload(nfs: SocketAddr, rng: &mut Rng, ops: u64, model: &Mutex<Model>, done: &AtomicU64) -> Result<(), String> {
    let m = |f: &mut dyn FnMut(&mut Model)| f(&mut model.lock().expect("model"));
    rt().block_on(async {
        let mut c = Client::mount(nfs, "m", LOCALHOST).await.map_err(|e| format!("mount: {e:?}"))?;
        let root = c.root.clone();
        for _ in 0..ops {
            // Only names whose state the client knows (not those of a failed op).
            let names: Vec<String> = {
                let md = model.lock().expect("model");
                md.files.keys().filter(|n| !md.uncertain.contains(*n)).cloned().collect()
            };
            let pick = rng.below(10);
            let existing = (!names.is_empty()).then(|| names[rng.below(names.len() as u64) as usize].clone());
            match (pick, existing) {
                (5..=6, Some(name)) => {
                    // Overwrite a range (may extend), UNSTABLE, then COMMIT.
                    let old_len = model.lock().expect("model").files[&name].len() as u64;
                    let off = rng.below(old_len + 1);
                    let len = (1 + rng.below(4)) as usize * (64 << 10);
                    let data = tools::pattern(rng.next(), len);
                    m(&mut |md| { md.uncertain.insert(name.clone()); });
                    let f = c.lookup(&root, &name).await.map_err(|e| format!("lookup {name}: {e:?}"))?;
                    c.write(&f, off, &data, stable_how::UNSTABLE).await.map_err(|e| format!("write {name}: {e:?}"))?;
                    c.commit(&f).await.map_err(|e| format!("commit {name}: {e:?}"))?;
                    m(&mut |md| {
                        let cur = md.files.get_mut(&name).expect("file in model");
                        let end = off as usize + len;
                        if cur.len() < end {
                            cur.resize(end, 0);
                        }
                        cur[off as usize..end].copy_from_slice(&data);
                        md.uncertain.remove(&name);
                        md.trace.push(format!("write {name} [{off}, {end}) + commit"));
                    });
                }
                (7, Some(from)) => {
                    let to = m_name(model);
                    m(&mut |md| { md.uncertain.insert(from.clone()); md.uncertain.insert(to.clone()); });
                    c.rename(&root, &from, &root, &to).await.map_err(|e| format!("rename {from} {to}: {e:?}"))?;
                    m(&mut |md| {
                        let d = md.files.remove(&from).expect("file in model");
                        md.files.insert(to.clone(), d);
                        md.uncertain.remove(&from);
                        md.uncertain.remove(&to);
                        md.trace.push(format!("rename {from} -> {to}"));
                    });
                }
                (8, Some(name)) => {
                    m(&mut |md| { md.uncertain.insert(name.clone()); });
                    c.remove(&root, &name).await.map_err(|e| format!("remove {name}: {e:?}"))?;
                    m(&mut |md| {
                        md.files.remove(&name);
                        md.uncertain.remove(&name);
                        md.trace.push(format!("remove {name}"));
                    });
                }
                _ => {
                    // Create, write 64 KiB–1 MiB in 256 KiB UNSTABLE pieces, COMMIT.
                    let name = m_name(model);
                    let len = (64 << 10) + rng.below((1 << 20) - (64 << 10) + 1) as usize;
                    let data = tools::pattern(rng.next(), len);
                    m(&mut |md| { md.uncertain.insert(name.clone()); });
                    let f = c.create(&root, &name).await.map_err(|e| format!("create {name}: {e:?}"))?;
                    for (i, part) in data.chunks(256 << 10).enumerate() {
                        c.write(&f, (i * (256 << 10)) as u64, part, stable_how::UNSTABLE).await.map_err(|e| format!("write {name}: {e:?}"))?;
                    }
                    c.commit(&f).await.map_err(|e| format!("commit {name}: {e:?}"))?;
                    m(&mut |md| {
                        md.files.insert(name.clone(), data.clone());
                        md.uncertain.remove(&name);
                        md.trace.push(format!("create {name} + write {len} + commit"));
                    });
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })
}

fn m_name(model: &Mutex<Model>) -> String {
    let mut md = model.lock().expect("model");
    md.next_name += 1;
    format!("f{}", md.next_name)
}

/// Waits until both arrays of `p` report their link Up.
fn wait_link_up(p: &PairProcs) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ![&p.a, &p.b].iter().all(|a| a.get("/api/health").1.contains("\"link\":\"Up\"")) {
        assert!(Instant::now() < deadline, "link not up\n--- site-a:\n{}\n--- site-b:\n{}", p.a.log(), p.b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One seed of the crash matrix.
fn crash_seed(seed: u64) {
    let mut rng = Rng(seed ^ 0x6d65_7472_6f66_7321);
    let kill_a = rng.below(2) == 0;
    let kill_after = 1 + rng.below(6);
    let delay_ms = rng.below(60);
    let victim = if kill_a { "site-a" } else { "site-b" };
    eprintln!("crash seed {seed}: kill -9 {victim} after {kill_after} ops + {delay_ms} ms");
    let what = format!("seed {seed} (kill -9 {victim} after {kill_after} ops + {delay_ms} ms)");

    let mut p = PairProcs::start(false);
    wait_link_up(&p);
    make_fs(&p.a, "m");
    let fs = fs_id_of(&parse(&p.a.cli_ok(&["fs", "show", "m", "--json"])));
    let id = parse(&p.a.cli_ok(&["pair", "create", "m", "--remote", "site-b", "--json"]))["id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    {
        let a = &p.a;
        wait_state(&|| parse(&a.cli_ok(&["pair", "show", &id, "--json"])), "Normal", NORMAL_WAIT_MS, &mut seen, &|| a.log());
    }

    let model = Arc::new(Mutex::new(Model::default()));
    let done = Arc::new(AtomicU64::new(0));
    // Enough operations after the kill point that the kill lands inside the workload.
    let total = kill_after + 20;
    let worker = {
        let (nfs, model, done, mut wrng) = (p.a.nfs, model.clone(), done.clone(), Rng(rng.next()));
        std::thread::spawn(move || {
            let r = workload(nfs, &mut wrng, total, &model, &done);
            (r, wrng)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < kill_after && !worker.is_finished() {
        assert!(Instant::now() < deadline, "{what}: workload stuck");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    if kill_a {
        p.a.kill9();
    } else {
        p.b.kill9();
    }
    let (r, mut wrng) = worker.join().expect("workload thread");
    if kill_a {
        // The serving side died under the client: the op in flight failed (or all were done).
        if let Err(e) = &r {
            eprintln!("  workload stopped by the kill: {e}");
        }
        model.lock().expect("model").trace.push(format!("-- kill -9 site-a, restart ({r:?})"));
        p.a.spawn();
    } else {
        // The peer died: writes through site-a go on.
        r.unwrap_or_else(|e| panic!("{what}: a write failed while only the peer was down: {e}\n{}", p.a.log()));
        p.b.spawn();
        model.lock().expect("model").trace.push("-- kill -9 site-b, restart".into());
    }
    // A few more operations through site-a while the pair heals.
    workload(p.a.nfs, &mut wrng, 3, &model, &done).unwrap_or_else(|e| {
        panic!("{what}: workload after the restart: {e}; acknowledged before:\n{}\n{}", model.lock().expect("model").trace.join("\n"), p.a.log())
    });

    let v = {
        let a = &p.a;
        wait_state(&|| parse(&a.cli_ok(&["pair", "show", &id, "--json"])), "Normal", NORMAL_WAIT_MS, &mut seen, &|| {
            format!("--- site-a:\n{}\n--- site-b:\n{}", a.all_logs(), p.b.all_logs())
        })
    };
    assert_eq!(v["dcl"]["chunks"], 0, "{what}: {v:#}");
    let out = p.a.cli(&["pair", "verify", &id]);
    let trace = model.lock().expect("model").trace.join("\n");
    assert_verified(&out, &format!("{what}; acknowledged operations:\n{trace}\n"));

    // Every acknowledged byte, through site-a.
    let md = model.lock().expect("model");
    rt().block_on(async {
        let mut c = Client::mount(p.a.nfs, "m", LOCALHOST).await.expect("mount");
        let root = c.root.clone();
        for (name, data) in md.files.iter().filter(|(n, _)| !md.uncertain.contains(*n)) {
            let f = c.lookup(&root, name).await.unwrap_or_else(|e| panic!("{what}: acknowledged {name} missing: {e:?}"));
            let got = c.read(&f, 0, data.len() + 1).await.unwrap_or_else(|e| panic!("{what}: read {name}: {e:?}"));
            assert!(got == *data, "{what}: {name}: {} bytes read, {} acknowledged, first difference at {:?}", got.len(), data.len(), got.iter().zip(data).position(|(x, y)| x != y));
        }
    });

    for (name, a) in [("site-a", &mut p.a), ("site-b", &mut p.b)] {
        let st = a.stop();
        assert!(st.success(), "{what}: {name} stop: {st}\n{}", a.log());
    }
    same_stores(&p.a.data_dir, &p.b.data_dir, fs, &what);
    // No name the client does not know of (removed or never made) exists.
    let s = Store::open(&p.a.data_dir).expect("open site-a's store");
    for (n, _) in s.entries(fs, metrofs_core::ROOT_INO).expect("root entries") {
        let n = String::from_utf8_lossy(&n).into_owned();
        assert!(
            md.files.contains_key(&n) || md.uncertain.contains(&n),
            "{what}: {n} exists on both sides, but the client had it removed or renamed away (acknowledged); operations:\n{}",
            md.trace.join("\n")
        );
    }
}

#[test]
fn crash_matrix_kill9_either_array_at_seeded_points() {
    let seeds: u64 = std::env::var("METROFS_CRASH_SEEDS").ok().map_or(20, |s| s.parse().expect("METROFS_CRASH_SEEDS is a number"));
    let only: Option<u64> = std::env::var("METROFS_CRASH_SEED").ok().map(|s| s.parse().expect("METROFS_CRASH_SEED is a number"));
    for seed in only.map_or(0..seeds, |s| s..s + 1) {
        let t = Instant::now();
        crash_seed(seed);
        eprintln!("crash seed {seed}: ok in {:.1} s", t.elapsed().as_secs_f64());
    }
}
