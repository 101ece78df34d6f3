//! Process-wide instruments: what the I/O paths count and time, for `/metrics`.
//!
//! One [`Metrics`] per process, reached with [`get`]. The hot paths call one method each:
//! - the metro module, once per dual-written change: [`Metrics::dual_write`];
//! - the NFS front end, once per request: [`Metrics::nfs_op`];
//! - the resync worker, per chunk copied: [`Metrics::resync_bytes`];
//! - the arbitration client, once per arbitration: [`Metrics::arbitration`];
//! - anyone with an error worth counting: [`Metrics::error`].
//!
//! Recording is cheap (atomics and a short mutex per histogram) and never fails. The state of
//! pairs, link, DCL and LOG is not kept here: the API computes those gauges at scrape time from
//! the metro module, so they are never stale. [`Metrics::register`] adds these instruments to a
//! `prometheus_client` registry (the instruments are shared handles: a registry made per scrape
//! sees the same counts).
//!
//! All latencies are in seconds, as Prometheus expects; buckets go from 25 µs to ~13 s.
//! Nothing here does I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets: 25 µs × 2^k, k = 0..20 (25 µs ... ~13 s).
const LATENCY_BUCKET_START_S: f64 = 25e-6;
const LATENCY_BUCKETS: u16 = 20;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(LATENCY_BUCKET_START_S, 2.0, LATENCY_BUCKETS))
}

/// `part` of a dual write: `local`, `remote` or `total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabel {
    pub part: &'static str,
}

/// An NFS procedure (`READ`, `WRITE`, `MOUNT`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcLabel {
    pub proc: &'static str,
}

/// An NFS procedure that failed, and how (`NOENT`, `IO`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcErrorLabels {
    pub proc: &'static str,
    pub error: &'static str,
}

/// An error kind (`remote_apply`, `link`, `nfs`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The stable code of an API error answer (`wrong_state`, `unauthorized`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

/// An arbitration's outcome (`won`, `lost`, `no_quorum`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Count and sum (µs) of one latency, readable without a registry (the API's JSON summary,
/// the dashboard's latency graph).
#[derive(Debug, Default)]
struct Sum {
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Sum {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros(d), Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (self.count.load(Ordering::Relaxed), self.sum_us.load(Ordering::Relaxed))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Cumulative totals since the process started, for JSON consumers (the rate over an interval
/// is the difference of two snapshots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Changes dual-written (both sides tried).
    pub dual_writes: u64,
    /// Sum of their local apply times, µs.
    pub dual_write_local_us: u64,
    /// Number and sum (µs) of the remote applies that answered.
    pub dual_write_remote: u64,
    pub dual_write_remote_us: u64,
    /// Sum of their total times (LOG to answer), µs.
    pub dual_write_total_us: u64,
    /// Changes whose remote apply did not happen or failed (they went to the DCL).
    pub remote_missing: u64,
    /// NFS requests answered, and how many of them with an error.
    pub nfs_ops: u64,
    pub nfs_errors: u64,
    /// Bytes copied by resync workers.
    pub resync_bytes: u64,
}

/// The process-wide instruments. Get it with [`get`].
#[derive(Debug)]
pub struct Metrics {
    dual_write: Family<PartLabel, Histogram, fn() -> Histogram>,
    remote_missing: Counter,
    nfs_ops: Family<ProcLabel, Histogram, fn() -> Histogram>,
    nfs_errors: Family<ProcErrorLabels, Counter>,
    errors: Family<KindLabel, Counter>,
    api_errors: Family<CodeLabel, Counter>,
    resync_bytes: Counter,
    arbitrations: Family<OutcomeLabel, Counter>,
    local: Sum,
    remote: Sum,
    total: Sum,
    nfs_count: AtomicU64,
    nfs_error_count: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set (tests; the process uses [`get`]).
    #[must_use]
    pub fn new() -> Self {
        Self {
            dual_write: Family::new_with_constructor(latency_histogram),
            remote_missing: Counter::default(),
            nfs_ops: Family::new_with_constructor(latency_histogram),
            nfs_errors: Family::default(),
            errors: Family::default(),
            api_errors: Family::default(),
            resync_bytes: Counter::default(),
            arbitrations: Family::default(),
            local: Sum::default(),
            remote: Sum::default(),
            total: Sum::default(),
            nfs_count: AtomicU64::new(0),
            nfs_error_count: AtomicU64::new(0),
        }
    }

    /// One change of a paired fs went through the write I/O process: `local` is the local
    /// store's apply, `remote` the remote apply as the serving side saw it (`None`: it did not
    /// happen or failed, and the change went to the DCL), `total` from the LOG entry to the
    /// answer.
    pub fn dual_write(&self, local: Duration, remote: Option<Duration>, total: Duration) {
        self.dual_write.get_or_create(&PartLabel { part: "local" }).observe(local.as_secs_f64());
        self.local.add(local);
        match remote {
            Some(r) => {
                self.dual_write.get_or_create(&PartLabel { part: "remote" }).observe(r.as_secs_f64());
                self.remote.add(r);
            }
            None => {
                self.remote_missing.inc();
            }
        }
        self.dual_write.get_or_create(&PartLabel { part: "total" }).observe(total.as_secs_f64());
        self.total.add(total);
    }

    /// One NFS (or MOUNT) request answered after `elapsed`; `error` is its status when it
    /// failed (`NOENT`, `ACCES`, ...), `None` on success.
    pub fn nfs_op(&self, proc_name: &'static str, elapsed: Duration, error: Option<&'static str>) {
        self.nfs_ops.get_or_create(&ProcLabel { proc: proc_name }).observe(elapsed.as_secs_f64());
        self.nfs_count.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = error {
            self.nfs_errors.get_or_create(&ProcErrorLabels { proc: proc_name, error }).inc();
            self.nfs_error_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` bytes of file data copied to the other side by a resync.
    pub fn resync_bytes(&self, n: u64) {
        self.resync_bytes.inc_by(n);
    }

    /// An arbitration ended with `outcome` (`won`, `lost`, `no_quorum`, ...).
    pub fn arbitration(&self, outcome: &'static str) {
        self.arbitrations.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// An error of `kind` happened (`remote_apply`, `link`, `dcl`, `api`, ...).
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// The management API answered an error with stable `code` (`wrong_state`, ...).
    pub fn api_error(&self, code: &'static str) {
        self.api_errors.get_or_create(&CodeLabel { code }).inc();
    }

    /// The cumulative totals.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let (dual_writes, dual_write_local_us) = self.local.read();
        let (dual_write_remote, dual_write_remote_us) = self.remote.read();
        let (_, dual_write_total_us) = self.total.read();
        Snapshot {
            dual_writes,
            dual_write_local_us,
            dual_write_remote,
            dual_write_remote_us,
            dual_write_total_us,
            remote_missing: self.remote_missing.get(),
            nfs_ops: self.nfs_count.load(Ordering::Relaxed),
            nfs_errors: self.nfs_error_count.load(Ordering::Relaxed),
            resync_bytes: self.resync_bytes.get(),
        }
    }

    /// Adds every instrument to `registry` (names get the registry's prefix, e.g. `metrofs_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "dual_write_latency",
            "Time of the write I/O process of a paired fs: local apply, remote apply (as seen by the serving side) and total (LOG to answer)",
            Unit::Seconds,
            self.dual_write.clone(),
        );
        registry.register(
            "dual_write_remote_missing",
            "Changes whose remote apply did not happen or failed (recorded in the DCL instead)",
            self.remote_missing.clone(),
        );
        registry.register_with_unit(
            "nfs_op_latency",
            "NFSv3 and MOUNT requests by procedure, from decode to reply",
            Unit::Seconds,
            self.nfs_ops.clone(),
        );
        registry.register(
            "nfs_op_errors",
            "NFSv3 and MOUNT requests answered with an error, by procedure and status",
            self.nfs_errors.clone(),
        );
        registry.register("errors", "Errors by kind", self.errors.clone());
        registry.register(
            "api_errors",
            "Error answers of the management API by their stable code",
            self.api_errors.clone(),
        );
        registry.register_with_unit(
            "resync_copied",
            "File data copied to the other side by resync workers",
            Unit::Bytes,
            self.resync_bytes.clone(),
        );
        registry.register("arbitrations", "Arbitrations by outcome", self.arbitrations.clone());
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide instruments.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut r = Registry::with_prefix("metrofs");
        m.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).expect("encode");
        s
    }

    #[test]
    fn records_and_encodes() {
        let m = Metrics::new();
        m.dual_write(Duration::from_micros(100), Some(Duration::from_micros(300)), Duration::from_micros(400));
        m.dual_write(Duration::from_micros(50), None, Duration::from_micros(60));
        m.nfs_op("WRITE", Duration::from_micros(500), None);
        m.nfs_op("LOOKUP", Duration::from_micros(20), Some("NOENT"));
        m.resync_bytes(65536);
        m.arbitration("won");
        m.error("link");
        m.api_error("wrong_state");
        let s = m.snapshot();
        assert_eq!(
            s,
            Snapshot {
                dual_writes: 2,
                dual_write_local_us: 150,
                dual_write_remote: 1,
                dual_write_remote_us: 300,
                dual_write_total_us: 460,
                remote_missing: 1,
                nfs_ops: 2,
                nfs_errors: 1,
                resync_bytes: 65536,
            }
        );
        let t = text(&m);
        for want in [
            "metrofs_dual_write_latency_seconds_count{part=\"local\"} 2",
            "metrofs_dual_write_latency_seconds_count{part=\"remote\"} 1",
            "metrofs_dual_write_latency_seconds_count{part=\"total\"} 2",
            "metrofs_dual_write_remote_missing_total 1",
            "metrofs_nfs_op_latency_seconds_count{proc=\"WRITE\"} 1",
            "metrofs_nfs_op_errors_total{proc=\"LOOKUP\",error=\"NOENT\"} 1",
            "metrofs_resync_copied_bytes_total 65536",
            "metrofs_arbitrations_total{outcome=\"won\"} 1",
            "metrofs_errors_total{kind=\"link\"} 1",
            "metrofs_api_errors_total{code=\"wrong_state\"} 1",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // Local applies of 50 and 100 µs: one in the 50 µs bucket, both in the 100 µs one.
        assert!(t.contains("metrofs_dual_write_latency_seconds_bucket{le=\"0.00005\",part=\"local\"} 1"), "{t}");
        assert!(t.contains("metrofs_dual_write_latency_seconds_bucket{le=\"0.0001\",part=\"local\"} 2"), "{t}");
    }

    #[test]
    fn one_process_wide_set() {
        assert!(std::ptr::eq(get(), get()));
    }
}
