//! `/metrics` after a real workload on a pair: the dual-write latency histograms (local,
//! remote, total) have counted the writes, NFS operations are timed by procedure, and the
//! gauges show the pair's state (Normal, then Paused with a DCL), the link and the data status;
//! a refused action is counted by its error code.

use std::collections::BTreeMap;

use crate::harness::{ArrayProc, PairProcs};
use crate::make_fs;
use crate::tools;

/// Every sample of an OpenMetrics text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn scrape(a: &ArrayProc) -> (String, BTreeMap<String, f64>) {
    let (status, text) = a.get("/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
    let s = samples(&text);
    (text, s)
}

fn value(s: &BTreeMap<String, f64>, key: &str, text: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("{key} not in\n{text}"))
}

#[test]
fn a_workload_fills_the_dual_write_histograms_and_the_gauges_follow_the_pair() {
    let p = PairProcs::start_with("");
    let tmp = tempfile::tempdir().expect("tmp");
    make_fs(&p.a, "m");
    let id = crate::pair_create_normal(&p.a, "m");

    // A workload: a few files written through NFS while the pair is Normal.
    for n in 0..4u64 {
        let local = tmp.path().join(format!("f{n}"));
        std::fs::write(&local, tools::pattern(n, 300_000)).expect("write");
        tools::run_ok(
            "nfs-cp",
            &[&local.to_string_lossy(), &p.a.url("m", &format!("f{n}"))],
        );
    }

    // The link's round trip is known from its first heartbeat ack (heartbeats go every
    // 250 ms): until then the gauge is absent. It was once absent here on a loaded machine
    // (1 run in 10 of the pair tests), so the scrape waits for it, up to 5 s.
    let rtt_key = "metrofs_link_rtt_seconds{peer=\"site-b\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (text, s) = loop {
        let (text, s) = scrape(&p.a);
        if s.contains_key(rtt_key) || std::time::Instant::now() > deadline {
            break (text, s);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for part in ["local", "remote", "total"] {
        let count = value(
            &s,
            &format!("metrofs_dual_write_latency_seconds_count{{part=\"{part}\"}}"),
            &text,
        );
        let sum = value(
            &s,
            &format!("metrofs_dual_write_latency_seconds_sum{{part=\"{part}\"}}"),
            &text,
        );
        assert!(
            count >= 4.0,
            "{part}: {count} dual writes after 4 files\n{text}"
        );
        assert!(sum > 0.0, "{part}: zero latency sum\n{text}");
        // Every observation is in the +Inf bucket.
        assert_eq!(
            value(
                &s,
                &format!(
                    "metrofs_dual_write_latency_seconds_bucket{{le=\"+Inf\",part=\"{part}\"}}"
                ),
                &text
            ),
            count
        );
    }
    assert!(
        value(
            &s,
            "metrofs_nfs_op_latency_seconds_count{proc=\"WRITE\"}",
            &text
        ) >= 4.0,
        "{text}"
    );
    assert!(
        value(
            &s,
            "metrofs_nfs_op_latency_seconds_count{proc=\"CREATE\"}",
            &text
        ) >= 4.0,
        "{text}"
    );
    let pair =
        |state: &str| format!("metrofs_pair_state{{pair=\"{id}\",fs=\"m\",state=\"{state}\"}}");
    assert_eq!(value(&s, &pair("Normal"), &text), 1.0);
    for other in ["Synchronizing", "ToBeSynchronized", "Paused"] {
        assert_eq!(value(&s, &pair(other), &text), 0.0, "{other}");
    }
    let l = format!("{{pair=\"{id}\",fs=\"m\"}}");
    assert_eq!(value(&s, &format!("metrofs_pair_serving{l}"), &text), 1.0);
    assert_eq!(value(&s, &format!("metrofs_dcl_bytes{l}"), &text), 0.0);
    assert_eq!(value(&s, "metrofs_link_up{peer=\"site-b\"}", &text), 1.0);
    assert!(
        value(&s, rtt_key, &text) > 0.0,
        "{text}"
    );
    for array in ["site-a", "site-b"] {
        assert_eq!(
            value(
                &s,
                &format!(
                    "metrofs_pair_data_consistent{{pair=\"{id}\",fs=\"m\",array=\"{array}\"}}"
                ),
                &text
            ),
            1.0
        );
    }
    assert!(s.contains_key("metrofs_log_extents_active"), "{text}");
    assert_eq!(
        value(
            &s,
            "metrofs_array{array=\"site-a\",version=\"0.1.0\"}",
            &text
        ),
        1.0
    );
    // The secondary does not serve it.
    let (tb, sb) = scrape(&p.b);
    assert_eq!(value(&sb, &format!("metrofs_pair_serving{l}"), &tb), 0.0);

    // Paused with a write: the state gauge moves and the DCL records what differs.
    p.a.cli_ok(&["pair", "pause", &id]);
    let local = tmp.path().join("late");
    std::fs::write(&local, tools::pattern(9, 200_000)).expect("write");
    tools::run_ok("nfs-cp", &[&local.to_string_lossy(), &p.a.url("m", "late")]);
    let (text, s) = scrape(&p.a);
    assert_eq!(value(&s, &pair("Paused"), &text), 1.0);
    assert_eq!(value(&s, &pair("Normal"), &text), 0.0);
    assert!(
        value(&s, &format!("metrofs_dcl_bytes{l}"), &text) >= 200_000.0,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            &format!("metrofs_pair_data_consistent{{pair=\"{id}\",fs=\"m\",array=\"site-b\"}}"),
            &text
        ),
        0.0,
        "site-b misses the late file"
    );
    // A refused action is counted by its code.
    let out = p.a.cli(&["pair", "pause", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::harness::text(&out));
    let (text, s) = scrape(&p.a);
    assert!(
        value(&s, "metrofs_api_errors_total{code=\"wrong_state\"}", &text) >= 1.0,
        "{text}"
    );
}
