//! `metrofs bench URL`: drive any NFSv3 export with a real client protocol and print what it
//! sustains.
//!
//! Layout:
//! - [`url`]: the libnfs-style `nfs://` URL naming the export.
//! - [`client`]: MOUNT, NFS connections (one request in flight each) and the calls made.
//! - [`workload`]: the workloads, each timed on its own, and the cleanup.
//! - [`stats`]: percentiles, rates, sizes.
//! - [`copies`]: `metrofs copies`, the cost of a pair's copies alone (bench/pair.sh's baseline).
//!
//! Workloads, in the order they run (`--only` picks some; what a picked one needs is prepared
//! untimed):
//!
//! | name | what is timed |
//! | --- | --- |
//! | `seq-write` | `--size` bytes (1 GiB) in `--block-size` (1 MiB) UNSTABLE WRITEs, `--depth` in flight, then one COMMIT |
//! | `seq-read` | READ of that file back, `--depth` in flight, every byte checked |
//! | `rand-write` | 4 KiB WRITEs at random 4 KiB-aligned offsets of a `--rand-span` file, one in flight: UNSTABLE, then FILE_SYNC; p50 / p99 |
//! | `small-files` | per file: CREATE (guarded) + 4 KiB WRITE + COMMIT, `--depth` files at once |
//! | `stat` | per file: LOOKUP + GETATTR, `--depth` at once |
//! | `unlink` | per file: REMOVE, `--depth` at once |
//!
//! Everything happens in a fresh directory `metrofs-bench-<time>-<pid>` at the export's root,
//! removed at the end, also after an error or Ctrl-C. Each phase stops issuing requests after
//! `--phase-limit-s` and reports on what it did (marked truncated); every call has a reply
//! timeout (`--rpc-timeout-s`), so the run is bounded.

pub mod client;
pub mod copies;
pub mod stats;
pub mod url;
pub mod workload;

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::Serialize;

pub use stats::LatencySummary;
pub use url::NfsUrl;

/// One workload, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    SeqWrite,
    SeqRead,
    RandWrite,
    SmallFiles,
    Stat,
    Unlink,
}

/// Arguments of `metrofs bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The NFSv3 export to drive:
    /// nfs://HOST[:NFSPORT]/EXPORT[?nfsport=P&mountport=P&version=3&uid=U&gid=G].
    /// Ports not given are asked of the portmapper (port 111).
    pub url: String,

    /// Size of the sequential file (written, then read back).
    #[arg(long, default_value = "1GiB", value_parser = stats::parse_size)]
    pub size: u64,

    /// Size of each sequential WRITE and READ (lowered to the server's FSINFO maximum).
    #[arg(long, default_value = "1MiB", value_parser = stats::parse_size)]
    pub block_size: u64,

    /// Requests in flight for the throughput workloads (one connection each), 1..=64.
    #[arg(long, default_value_t = 8)]
    pub depth: usize,

    /// Number of 4 KiB random writes timed for each of UNSTABLE and FILE_SYNC.
    #[arg(long, default_value_t = 2000)]
    pub latency_ops: u64,

    /// Size of the file the random writes land in (written in full first, untimed).
    #[arg(long, default_value = "64MiB", value_parser = stats::parse_size)]
    pub rand_span: u64,

    /// Number of small files created, then stat'ed, then removed.
    #[arg(long, default_value_t = 5000)]
    pub files: u64,

    /// Run only these workloads (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Workload>,

    /// Drop the page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`) before the sequential
    /// read, so it comes from disk. Only meaningful for a server on this machine; needs root.
    #[arg(long)]
    pub cold_read: bool,

    /// Print the results as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// A workload stops issuing requests after this many seconds and reports what it did.
    #[arg(long, default_value_t = 120)]
    pub phase_limit_s: u64,

    /// Give up on a request the server has not answered after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub rpc_timeout_s: u64,
}

/// Limits on the arguments: big enough for any real run, small enough that a typo cannot
/// start a run that never ends.
const DEPTH_MAX: usize = 64;
const BLOCK_BYTES_MAX: u64 = 16 << 20;
const FILES_MAX: u64 = 10_000_000;

impl BenchArgs {
    /// The arguments with the defaults of the command line, for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            size: 1 << 30,
            block_size: 1 << 20,
            depth: 8,
            latency_ops: 2000,
            rand_span: 64 << 20,
            files: 5000,
            only: Vec::new(),
            cold_read: false,
            json: false,
            phase_limit_s: 120,
            rpc_timeout_s: 30,
        }
    }

    /// Checks the arguments; says which one is wrong and what is expected.
    ///
    /// # Errors
    /// An argument out of its range.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 || self.depth > DEPTH_MAX {
            bail!("--depth {} is out of range 1..={DEPTH_MAX}", self.depth);
        }
        if self.block_size < 4096
            || self.block_size > BLOCK_BYTES_MAX
            || !self.block_size.is_multiple_of(4096)
        {
            bail!(
                "--block-size {} must be a multiple of 4 KiB from 4 KiB to 16 MiB",
                self.block_size
            );
        }
        if self.size < self.block_size {
            bail!(
                "--size {} must be at least one block (--block-size {})",
                self.size,
                self.block_size
            );
        }
        if self.rand_span < 4096 {
            bail!("--rand-span {} must be at least 4 KiB", self.rand_span);
        }
        if self.latency_ops == 0 {
            bail!("--latency-ops must be at least 1");
        }
        if self.files == 0 || self.files > FILES_MAX {
            bail!("--files {} is out of range 1..={FILES_MAX}", self.files);
        }
        if self.phase_limit_s == 0 || self.rpc_timeout_s == 0 {
            bail!("--phase-limit-s and --rpc-timeout-s must be at least 1");
        }
        Ok(())
    }

    /// Whether `w` was asked for (all are when `--only` is not given).
    #[must_use]
    pub fn wants(&self, w: Workload) -> bool {
        self.only.is_empty() || self.only.contains(&w)
    }
}

/// A throughput result.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub bytes: u64,
    pub secs: f64,
    pub mib_per_s: f64,
    /// Time of the final COMMIT, included in `secs` (writes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_secs: Option<f64>,
    /// MiB/s of the WRITEs alone, before the COMMIT (writes only): what the server takes into
    /// its cache, as opposed to `mib_per_s`, which includes getting it to disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_commit_mib_per_s: Option<f64>,
    /// The page cache was dropped before reading (reads with `--cold-read` only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cold: bool,
    /// The phase hit `--phase-limit-s` before the whole size was moved.
    pub truncated: bool,
}

/// A count-per-second result.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub count: u64,
    pub secs: f64,
    pub per_s: f64,
    pub truncated: bool,
}

/// Everything one run measured. Absent fields: the workload was not run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub nfs_addr: String,
    pub depth: usize,
    pub block_bytes: u64,
    pub seq_write: Option<Throughput>,
    pub seq_read: Option<Throughput>,
    pub rand_write_unstable: Option<LatencySummary>,
    pub rand_write_file_sync: Option<LatencySummary>,
    pub small_files: Option<Rate>,
    pub stat: Option<Rate>,
    pub unlink: Option<Rate>,
    /// Anything the reader should know (block size lowered by the server, …).
    pub notes: Vec<String>,
}

impl Report {
    /// The human-readable table.
    #[must_use]
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "metrofs bench {}  ({} in flight, {} blocks)",
            self.url,
            self.depth,
            stats::human_bytes(self.block_bytes)
        );
        let trunc = |t: bool| {
            if t {
                "  [truncated by --phase-limit-s]"
            } else {
                ""
            }
        };
        if let Some(t) = &self.seq_write {
            let _ = writeln!(
                s,
                "{:<40}{:>10.1} MiB/s  ({} in {:.2} s; before COMMIT {:.0} MiB/s, COMMIT {:.2} s){}",
                "sequential write (UNSTABLE + COMMIT)",
                t.mib_per_s,
                stats::human_bytes(t.bytes),
                t.secs,
                t.before_commit_mib_per_s.unwrap_or(0.0),
                t.commit_secs.unwrap_or(0.0),
                trunc(t.truncated)
            );
        }
        if let Some(t) = &self.seq_read {
            let _ = writeln!(
                s,
                "{:<40}{:>10.1} MiB/s  ({} in {:.2} s){}",
                if t.cold {
                    "sequential read (cold page cache)"
                } else {
                    "sequential read"
                },
                t.mib_per_s,
                stats::human_bytes(t.bytes),
                t.secs,
                trunc(t.truncated)
            );
        }
        for (label, l) in [
            ("4 KiB random write UNSTABLE", &self.rand_write_unstable),
            ("4 KiB random write FILE_SYNC", &self.rand_write_file_sync),
        ] {
            if let Some(l) = l {
                let _ = writeln!(
                    s,
                    "{label:<40}p50 {:>7.0} µs  p99 {:>7.0} µs  ({:.0} IOPS, 1 in flight, {} writes)",
                    l.p50_us, l.p99_us, l.iops, l.ops
                );
            }
        }
        for (label, r, unit) in [
            (
                "small files (CREATE + 4 KiB + COMMIT)",
                &self.small_files,
                "files/s",
            ),
            ("stat (LOOKUP + GETATTR)", &self.stat, "/s"),
            ("unlink (REMOVE)", &self.unlink, "/s"),
        ] {
            if let Some(r) = r {
                let _ = writeln!(
                    s,
                    "{label:<40}{:>10.0} {unit}  ({} in {:.2} s){}",
                    r.per_s,
                    r.count,
                    r.secs,
                    trunc(r.truncated)
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// Runs the benchmark and prints the table (or JSON with `--json`) on stdout.
///
/// # Errors
/// Bad arguments or URL, the server unreachable or failing a call; the bench directory is
/// removed before the error is returned.
pub async fn run(args: BenchArgs) -> Result<()> {
    let report = workload::bench(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn defaults_match_the_command_line() {
        let cli = Cli::try_parse_from(["bench", "nfs://h/e"]).expect("parse");
        let d = BenchArgs::new("nfs://h/e");
        assert_eq!(cli.bench.size, d.size);
        assert_eq!(cli.bench.block_size, d.block_size);
        assert_eq!(cli.bench.depth, d.depth);
        assert_eq!(cli.bench.latency_ops, d.latency_ops);
        assert_eq!(cli.bench.rand_span, d.rand_span);
        assert_eq!(cli.bench.files, d.files);
        assert_eq!(cli.bench.phase_limit_s, d.phase_limit_s);
        assert_eq!(cli.bench.rpc_timeout_s, d.rpc_timeout_s);
        assert!(cli.bench.only.is_empty());
        d.validate().expect("defaults are valid");
    }

    #[test]
    fn only_takes_a_list() {
        let cli = Cli::try_parse_from([
            "b",
            "nfs://h/e",
            "--only",
            "seq-write,stat",
            "--only",
            "unlink",
        ])
        .expect("parse");
        assert_eq!(
            cli.bench.only,
            vec![Workload::SeqWrite, Workload::Stat, Workload::Unlink]
        );
        assert!(cli.bench.wants(Workload::Stat));
        assert!(!cli.bench.wants(Workload::SeqRead));
        assert!(Cli::try_parse_from(["b", "nfs://h/e", "--only", "fsync"]).is_err());
    }

    #[test]
    fn sizes_on_the_command_line() {
        let cli = Cli::try_parse_from([
            "b",
            "nfs://h/e",
            "--size",
            "256MiB",
            "--block-size",
            "64KiB",
        ])
        .expect("parse");
        assert_eq!(cli.bench.size, 256 << 20);
        assert_eq!(cli.bench.block_size, 64 << 10);
    }

    #[test]
    fn bad_arguments_are_named() {
        let mut a = BenchArgs::new("nfs://h/e");
        a.depth = 0;
        assert!(a
            .validate()
            .expect_err("depth")
            .to_string()
            .contains("--depth"));
        let mut a = BenchArgs::new("nfs://h/e");
        a.block_size = 5000;
        assert!(a
            .validate()
            .expect_err("block")
            .to_string()
            .contains("--block-size"));
        let mut a = BenchArgs::new("nfs://h/e");
        a.size = 4096;
        assert!(a
            .validate()
            .expect_err("size")
            .to_string()
            .contains("--size"));
        let mut a = BenchArgs::new("nfs://h/e");
        a.files = 0;
        assert!(a
            .validate()
            .expect_err("files")
            .to_string()
            .contains("--files"));
    }

    #[test]
    fn table_shows_what_ran() {
        let r = Report {
            url: "nfs://h/e?version=3".into(),
            nfs_addr: "127.0.0.1:2049".into(),
            depth: 8,
            block_bytes: 1 << 20,
            seq_write: Some(Throughput {
                bytes: 1 << 30,
                secs: 1.0,
                mib_per_s: 1024.0,
                commit_secs: Some(0.1),
                before_commit_mib_per_s: Some(2000.0),
                cold: false,
                truncated: false,
            }),
            seq_read: None,
            rand_write_unstable: None,
            rand_write_file_sync: Some(LatencySummary {
                ops: 10,
                p50_us: 500.0,
                p99_us: 900.0,
                mean_us: 550.0,
                max_us: 950.0,
                iops: 1800.0,
            }),
            small_files: Some(Rate {
                count: 100,
                secs: 0.1,
                per_s: 1000.0,
                truncated: true,
            }),
            stat: None,
            unlink: None,
            notes: vec!["hello".into()],
        };
        let t = r.to_table();
        assert!(t.contains("1024.0 MiB/s"), "{t}");
        assert!(!t.contains("sequential read"), "{t}");
        assert!(t.contains("p50     500 µs"), "{t}");
        assert!(t.contains("1000 files/s"), "{t}");
        assert!(t.contains("truncated"), "{t}");
        assert!(t.contains("note: hello"), "{t}");
        let j = serde_json::to_value(&r).expect("json");
        assert_eq!(j["seq_write"]["mib_per_s"], 1024.0);
        assert!(j["seq_read"].is_null());
    }
}
