//! Process tests of the `metrofs` binary: the real array on loopback ports, driven by its CLI
//! and API, and reached over NFSv3 by Debian's libnfs tools and the nfs3_client crate.
//!
//! One test binary (linking is the expensive part); each module one area:
//! - [`harness`]: start / stop / kill -9 an array, wait for it to serve;
//! - [`nfs`]: a small NFSv3 client (nfs3_client) that can pick its source address;
//! - [`tools`]: `nfs-cp`, `nfs-ls`, `nfs-cat`, test data;
//! - the rest: one area each (config errors, CLI, libnfs round trips, access control,
//!   crash, demo, graceful stop, the metro pair of two arrays).

mod harness;
mod netns;
mod nfs;
mod tools;
mod topo;

mod access;
mod api_contract;
mod bench;
mod cli;
mod config_errors;
mod crash;
mod dashboard;
mod demo;
mod failover;
mod failover_bench;
mod failover_faults;
mod libnfs;
mod lifecycle;
mod metrics_scrape;
mod operator_cli;
mod pair;
mod pair_crash;
mod pair_export;
mod pair_faults;
mod quorum;

use harness::ArrayProc;

/// `pair create FS --remote site-b --wait`: the pair's id once it is Normal.
pub fn pair_create_normal(a: &ArrayProc, fs: &str) -> String {
    let out = a.cli_ok(&["pair", "create", fs, "--remote", "site-b", "--wait", "--timeout", "60", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("pair create --json");
    v["id"].as_str().expect("id").to_owned()
}

/// Creates file system `name` exported to 127.0.0.0/8 read-write without root squash (the
/// tests' clients are root), through the CLI.
pub fn make_fs(a: &ArrayProc, name: &str) {
    a.cli_ok(&["fs", "create", name]);
    a.cli_ok(&[
        "export",
        "set",
        name,
        "--clients",
        "127.0.0.0/8",
        "--rw",
        "--no-root-squash",
    ]);
}
