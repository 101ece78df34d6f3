//! The failover measurements of issue 4. In the suite each runs once (a failover check with
//! its number printed); bench/failover.sh runs them with `METROFS_FAILOVER_RUNS=10
//! --nocapture` and writes docs/BENCHMARKS.md's "Failover (issue 4)" section.
//!
//! - RTO: `kill -9` of the serving array → the first write acknowledged by the survivor, seen
//!   by a host writer on the service address (FILE_SYNC WRITEs back to back, reconnecting with
//!   the same handles). Default settings (heartbeats, head start, claim timeout), a quorum
//!   server. The killed array is restarted, the pair becomes Normal, and the next run kills
//!   whichever side serves then.
//! - RTO of a lost site: the serving site's interface set down (no RST, nothing: hosts and
//!   the peer only notice by timeouts) → the first write acknowledged by the other site.
//! - Planned swap: `metrofs pair swap` under the same writer; the pause is the longest time
//!   between two acknowledgements around the swap.
//!
//! Each measurement is printed as one line `FAILOVER rto_ms=N` / `FAILOVER site_rto_ms=N` /
//! `FAILOVER swap_pause_ms=N` for the script to collect. Runs: `METROFS_FAILOVER_RUNS` (default 1).

use std::time::{Duration, Instant};

use crate::failover::{first_ack_after, longest_gap, Writer, NORMAL_MS, TAKEOVER_MS};
use crate::harness::text;
use crate::topo::{Domain, Opts, Site, SERVICE};

fn runs() -> usize {
    std::env::var("METROFS_FAILOVER_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn serving(d: &Domain, id: &str) -> Site {
    let v = d
        .show(Site::A, id)
        .or_else(|| d.show(Site::B, id))
        .expect("a view");
    Site::of_name(v["serving"].as_str().expect("serving")).expect("site")
}

#[test]
fn measure_rto_of_a_killed_serving_array() {
    let mut d = Domain::start(Opts {
        recovery: "manual",
        ..Opts::default()
    });
    let id = d.create_pair("rto");
    for run in 0..runs() {
        let s = serving(&d, &id);
        d.wait_serving(s, &id, TAKEOVER_MS);
        d.wait(s, &id, "Normal", NORMAL_MS, |v| v["state"] == "Normal");
        let w = Writer::start(
            &d.topo,
            SERVICE,
            "rto",
            &format!("w{run}"),
            500 + run as u64,
        );
        w.wait_acks(50, 30_000, "before the kill", &|| d.logs());
        let kill_at = Instant::now();
        d.arr_mut(s).kill9();
        let n = w.acked();
        w.wait_acks(n + 20, 60_000, "after the kill", &|| d.logs());
        let log = w.finish();
        let rto =
            first_ack_after(&log, kill_at).expect("a write acknowledged by the survivor") - kill_at;
        println!(
            "FAILOVER rto_ms={} run={run} killed={}",
            rto.as_millis(),
            s.name()
        );
        d.arr_mut(s).spawn();
    }
}

#[test]
fn measure_planned_swap_pause() {
    let d = Domain::start(Opts {
        recovery: "manual",
        ..Opts::default()
    });
    let id = d.create_pair("swp");
    let w = Writer::start(&d.topo, SERVICE, "swp", "w", 900);
    w.wait_acks(50, 30_000, "before the swaps", &|| d.logs());
    for run in 0..runs() {
        let from = serving(&d, &id);
        d.wait(from, &id, "Normal", NORMAL_MS, |v| v["state"] == "Normal");
        let n = w.acked();
        w.wait_acks(n + 30, 30_000, "between swaps", &|| d.logs());
        let at = Instant::now();
        let out = d.arr(from).cli(&["pair", "swap", &id]);
        assert!(out.status.success(), "swap: {}\n{}", text(&out), d.logs());
        d.wait_serving(from.other(), &id, TAKEOVER_MS);
        let n = w.acked();
        w.wait_acks(n + 30, 30_000, "after the swap", &|| d.logs());
        let pause = longest_gap(&w.log.lock().expect("log").acks, at);
        println!(
            "FAILOVER swap_pause_ms={} run={run} from={}",
            pause.as_millis(),
            from.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = w.finish();
    // A measurement, not a check (the swap test of failover.rs asserts): what the client saw.
    let timeouts = log
        .resends
        .iter()
        .filter(|(_, why)| *why == "timeout")
        .count();
    println!(
        "FAILOVER swap_nfs_errors={} list={:?}",
        log.nfs_errors.len(),
        log.nfs_errors.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
    println!(
        "FAILOVER swap_unanswered={timeouts} (requests resent after {} ms without an answer)",
        crate::failover::REQ_TIMEOUT_MS
    );
}

#[test]
fn measure_rto_of_a_lost_serving_site() {
    let d = Domain::start(Opts {
        recovery: "manual",
        ..Opts::default()
    });
    let id = d.create_pair("site");
    for run in 0..runs() {
        let s = serving(&d, &id);
        d.wait_serving(s, &id, TAKEOVER_MS);
        d.wait(s, &id, "Normal", NORMAL_MS, |v| v["state"] == "Normal");
        let w = Writer::start(
            &d.topo,
            SERVICE,
            "site",
            &format!("w{run}"),
            700 + run as u64,
        );
        w.wait_acks(50, 30_000, "before the site is lost", &|| d.logs());
        let lost_at = Instant::now();
        d.topo.site_down(s);
        let n = w.acked();
        w.wait_acks(n + 20, 60_000, "after the site was lost", &|| d.logs());
        let log = w.finish();
        let rto = first_ack_after(&log, lost_at).expect("a write acknowledged by the other site")
            - lost_at;
        println!(
            "FAILOVER site_rto_ms={} run={run} lost={}",
            rto.as_millis(),
            s.name()
        );
        d.topo.site_up(s);
        // The lost side comes back as the secondary once it knows it lost.
        d.wait(s.other(), &id, "Normal again", NORMAL_MS, |v| {
            v["state"] == "Normal"
        });
    }
}
