//! Seeded double-fault schedules over one domain in the failover topology (issue 4):
//! two faults among kill -9 of an array, link cut, a site cut from the quorum, and the quorum
//! server killed, applied a seeded while apart under three writers (one on the service
//! address, one on each site's own address). Each schedule is one safety phase (faults on,
//! invariants sampled) then one liveness phase (everything healed and restarted: the pair
//! must serve and be Normal again), then the invariants:
//!
//! - [`one_open_primary_per_epoch`]: never two sides open for changes as primary in one epoch
//!   (sampled), and the service address on two live sites only while one of them is still
//!   deciding (acknowledging nothing);
//! - [`crate::failover::no_ack_lost`]: every acknowledged write of every writer reads back;
//! - [`crate::failover::dcl_empty_when_normal`] and `pair verify` after the heal;
//! - at the end both stopped data directories hold the same image.
//!
//! `METROFS_FAULT_SEEDS=N` runs N schedules (default 10); `METROFS_FAULT_SEED=S` replays only
//! schedule S. Each schedule prints its seed and faults first.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::failover::{
    check_healed_and_identical, dcl_empty_when_normal, no_ack_lost, read_file, Writer, NORMAL_MS,
    TAKEOVER_MS,
};
use crate::harness::text;
use crate::topo::{Domain, Opts, Peer, Site, SERVICE};

/// How long a side that stopped may still hold the service address (see the sampling loop).
const ADDRESS_GRACE_MS: u64 = 500;

/// One fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 of the array (restarted in the liveness phase).
    Kill(Site),
    /// The replication link cut.
    LinkCut,
    /// A site cut from the quorum server.
    QuorumCut(Site),
    /// The quorum server killed (restarted in the liveness phase).
    QuorumKill,
}

/// xorshift64*: the schedule's only source of choice.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Two distinct faults and the pauses before the second and before the heal, from `seed`.
fn schedule(seed: u64) -> ([Fault; 2], Duration, Duration) {
    let all = [
        Fault::Kill(Site::A),
        Fault::Kill(Site::B),
        Fault::LinkCut,
        Fault::QuorumCut(Site::A),
        Fault::QuorumCut(Site::B),
        Fault::QuorumKill,
    ];
    let mut r = Rng::new(seed);
    let first = all[usize::try_from(r.below(all.len() as u64)).expect("small")];
    let second = loop {
        let f = all[usize::try_from(r.below(all.len() as u64)).expect("small")];
        // Two kills would leave no array at all: the second kill is of the same one, skipped.
        if f != first && !matches!((first, f), (Fault::Kill(_), Fault::Kill(_))) {
            break f;
        }
    };
    let gap = Duration::from_millis(200 + r.below(2500));
    let hold = Duration::from_millis(3000 + r.below(3000));
    ([first, second], gap, hold)
}

fn apply(d: &mut Domain, f: Fault) {
    match f {
        Fault::Kill(s) => d.arr_mut(s).kill9(),
        Fault::LinkCut => d.topo.cut_link(),
        Fault::QuorumCut(s) => d.topo.cut(s, Peer::Quorum),
        Fault::QuorumKill => d.q.as_mut().expect("quorum").kill9(),
    }
}

/// One sample of both sides: (site, epoch) of each side that is open for changes as primary.
fn open_primaries(d: &Domain, id: &str, live: &[Site]) -> Vec<(Site, u64)> {
    live.iter()
        .filter_map(|s| {
            let v: Value = d.show(*s, id)?;
            (v["role"] == "Primary" && v["phase"] == "Open")
                .then(|| (*s, v["epoch"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// Invariant: in one sample, no two sides open as primary in the same epoch.
fn one_open_primary_per_epoch(sample: &[(Site, u64)]) -> Result<(), String> {
    if sample.len() > 1 && sample.iter().all(|(_, e)| *e == sample[0].1) {
        return Err(format!(
            "two sides open for changes in epoch {}: {sample:?}",
            sample[0].1
        ));
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("METROFS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("METROFS_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    (1..=n).collect()
}

#[test]
fn seeded_double_fault_schedules_keep_every_invariant() {
    let mut d = Domain::start(Opts {
        heartbeat_ms: Some((100, 600)),
        ..Opts::default()
    });
    let id = d.create_pair("df");
    for seed in seeds() {
        let (faults, gap, hold) = schedule(seed);
        eprintln!("fault schedule seed {seed}: {faults:?}, second after {gap:?}, healed after {hold:?} (replay: METROFS_FAULT_SEED={seed})");
        let ctx = |what: &str| format!("seed {seed} {faults:?}: {what}");
        let serving = Site::of_name(
            d.show(Site::A, &id)
                .or_else(|| d.show(Site::B, &id))
                .expect("a view")["serving"]
                .as_str()
                .expect("serving"),
        )
        .expect("site");
        d.wait_serving(serving, &id, TAKEOVER_MS);
        let ws = Writer::start(&d.topo, SERVICE, "df", &format!("s{seed}"), 1000 + seed);
        let wa = Writer::start(
            &d.topo,
            Site::A.addr(),
            "df",
            &format!("a{seed}"),
            2000 + seed,
        );
        let wb = Writer::start(
            &d.topo,
            Site::B.addr(),
            "df",
            &format!("b{seed}"),
            3000 + seed,
        );
        ws.wait_acks(10, 30_000, &ctx("before the faults"), &|| d.logs());

        // Safety phase.
        apply(&mut d, faults[0]);
        let second_at = Instant::now() + gap;
        let heal_at = second_at + hold;
        let mut second_done = false;
        let mut samples = 0;
        let mut both_held = 0;
        while Instant::now() < heal_at {
            if !second_done && Instant::now() >= second_at {
                apply(&mut d, faults[1]);
                second_done = true;
            }
            let live: Vec<Site> = [Site::A, Site::B]
                .into_iter()
                .filter(|s| d.arr(*s).has_process())
                .collect();
            let sample = open_primaries(&d, &id, &live);
            one_open_primary_per_epoch(&sample)
                .unwrap_or_else(|e| panic!("{}\n{}", ctx(&e), d.logs()));
            // The address on both live sites is allowed only while one of them is still
            // deciding (it acknowledges nothing then): a side that stopped, or two open
            // primaries, must never hold it together. Counted and printed.
            let holders: Vec<Site> = d
                .topo
                .service_holders()
                .into_iter()
                .filter(|s| live.contains(s))
                .collect();
            if holders.len() > 1 {
                both_held += 1;
                let views: Vec<Option<Value>> = [Site::A, Site::B]
                    .into_iter()
                    .map(|s| d.show(s, &id))
                    .collect();
                let deciding = views.iter().flatten().any(|v| v["phase"] == "Deciding");
                // A side that just stopped releases the address a few ms later (the address
                // follows the phase asynchronously, and the two were sampled one after the
                // other): look again after a grace period.
                let still = || {
                    std::thread::sleep(Duration::from_millis(ADDRESS_GRACE_MS));
                    d.topo
                        .service_holders()
                        .into_iter()
                        .filter(|s| live.contains(s))
                        .count()
                        > 1
                };
                if !deciding && still() {
                    panic!(
                        "{}\nviews: {views:#?}\n{}",
                        ctx(&format!(
                            "service address on {holders:?}, neither side deciding"
                        )),
                        d.logs()
                    );
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(100));
        }

        // Liveness phase: heal everything, restart what was killed; the pair serves and is
        // Normal again by itself.
        d.topo.heal_all();
        for s in [Site::A, Site::B] {
            if !d.arr_mut(s).is_running() {
                d.arr_mut(s).spawn();
            }
        }
        if let Some(q) = d.q.as_mut() {
            if !q.is_running() {
                q.spawn();
            }
        }
        let deadline = Instant::now() + Duration::from_millis(NORMAL_MS);
        let (serving, v) = loop {
            let views: Vec<(Site, Value)> = [Site::A, Site::B]
                .into_iter()
                .filter_map(|s| d.show(s, &id).map(|v| (s, v)))
                .collect();
            let open = |v: &Value| v["phase"].as_str().is_none_or(|p| p == "Open");
            if let Some((s, v)) = views
                .iter()
                .find(|(s, v)| v["state"] == "Normal" && v["serving"] == s.name() && open(v))
            {
                break (*s, v.clone());
            }
            assert!(
                Instant::now() < deadline,
                "{}\nviews: {views:#?}\n{}",
                ctx("not Normal after the heal"),
                d.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        dcl_empty_when_normal(&v).unwrap_or_else(|e| panic!("{}", ctx(&e)));
        d.wait_serving(serving, &id, TAKEOVER_MS);
        let n = ws.acked();
        ws.wait_acks(n + 5, 60_000, &ctx("after the heal"), &|| d.logs());
        let out = d.arr(serving).cli(&["pair", "verify", &id]);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("both sides are identical"),
            "{}: {}",
            ctx("verify"),
            text(&out)
        );
        let (ls, la, lb) = (ws.finish(), wa.finish(), wb.finish());
        for (log, w, seed_of) in [(&ls, "s", 1000), (&la, "a", 2000), (&lb, "b", 3000)] {
            let file = format!("{w}{seed}");
            if log.fh.is_none() {
                continue; // never mounted (that site never served): nothing acknowledged
            }
            let content = read_file(&d.topo, SERVICE, "df", &file)
                .unwrap_or_else(|e| panic!("{}", ctx(&format!("read {file}: {e}"))));
            no_ack_lost(seed_of + seed, &log.acks, &content)
                .unwrap_or_else(|e| panic!("{}\n{}", ctx(&format!("{file}: {e}")), d.logs()));
        }
        eprintln!(
            "seed {seed}: ok ({samples} samples, {both_held} with the address on both sites while one decided; acks: service {}, site-a {}, site-b {}; now served by {} in epoch {})",
            ls.acks.len(),
            la.acks.len(),
            lb.acks.len(),
            serving.name(),
            v["epoch"]
        );
    }
    let serving = Site::of_name(
        d.show(Site::A, &id).expect("view")["serving"]
            .as_str()
            .expect("serving"),
    )
    .expect("site");
    check_healed_and_identical(&mut d, serving, &id, "df");
}

#[test]
fn schedules_are_reproducible_and_varied() {
    assert_eq!(schedule(3), schedule(3));
    let kinds: std::collections::BTreeSet<String> =
        (1..=10).map(|s| format!("{:?}", schedule(s).0)).collect();
    assert!(
        kinds.len() >= 5,
        "ten seeds give varied schedules: {kinds:?}"
    );
    for s in 1..=50 {
        let ([a, b], _, _) = schedule(s);
        assert_ne!(a, b);
        assert!(!matches!((a, b), (Fault::Kill(_), Fault::Kill(_))));
    }
}
