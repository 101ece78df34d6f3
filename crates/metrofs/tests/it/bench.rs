//! `metrofs bench` dispatches to metrofs-bench: a short run against a real array.

use crate::harness::{text, ArrayProc, BIN};
use crate::make_fs;

#[test]
fn bench_runs_against_an_array() {
    let a = ArrayProc::start();
    make_fs(&a, "bench");
    let url = a.url("bench", "");
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            url.trim_end_matches('/'),
            "--size",
            "4MiB",
            "--files",
            "20",
            "--latency-ops",
            "20",
            "--rand-span",
            "1MiB",
            "--depth",
            "2",
            "--json",
        ])
        .output()
        .expect("run metrofs bench");
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench JSON: {e}\n{}", text(&out)));
    assert!(report.is_object(), "{report}");
    // The bench cleans up after itself.
    let ls = crate::tools::run_ok("nfs-ls", &[&url]);
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("metrofs-bench-"),
        "{}",
        text(&ls)
    );
}
