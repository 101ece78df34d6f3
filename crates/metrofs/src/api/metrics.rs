//! `GET /metrics`: Prometheus (OpenMetrics text) exposition.
//!
//! Two sources, encoded together in one registry made per scrape:
//! - the process-wide instruments of [`metrofs_core::metrics`] (dual-write latency histograms,
//!   NFS operations, errors, resync bytes, arbitrations), counted where they happen;
//! - gauges computed now from the metro module: pair state, who serves, data status, epoch,
//!   link up and RTT, LOG extents, DCL, resync rate and what remains, quorum servers, alarms.
//!
//! Every name starts with `metrofs_`; docs/api.md lists them.

use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::error::ApiError;
use super::handlers::AppState;

/// The OpenMetrics text format's content type (Prometheus reads it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every pair state, for the one-gauge-per-state encoding (1 for the current one).
const STATES: [&str; 4] = ["Normal", "Synchronizing", "ToBeSynchronized", "Paused"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArrayLabels {
    array: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    pair: String,
    fs: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairStateLabels {
    pair: String,
    fs: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairArrayLabels {
    pair: String,
    fs: String,
    array: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddrLabels {
    addr: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn i(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// The registry of one scrape.
fn registry(s: &AppState) -> Registry {
    let mut r = Registry::with_prefix("metrofs");
    metrofs_core::metrics::get().register(&mut r);

    let info = Family::<ArrayLabels, Gauge>::default();
    info.get_or_create(&ArrayLabels {
        array: s.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .set(1);
    r.register("array", "This array: its name and version (always 1)", info);

    let pairs = s.metro.list_pairs();
    let state = Family::<PairStateLabels, Gauge>::default();
    let serving = Family::<PairLabels, Gauge>::default();
    let consistent = Family::<PairArrayLabels, Gauge>::default();
    let epoch = Family::<PairLabels, Gauge>::default();
    let dcl_bytes = Family::<PairLabels, Gauge>::default();
    let dcl_inodes = Family::<PairLabels, Gauge>::default();
    let dcl_dirs = Family::<PairLabels, Gauge>::default();
    let rate = Family::<PairLabels, Gauge>::default();
    let remaining = Family::<PairLabels, Gauge>::default();
    let since = Family::<PairLabels, Gauge>::default();
    let quorum = Family::<AddrLabels, Gauge>::default();
    for p in &pairs {
        let l = PairLabels {
            pair: p.id.clone(),
            fs: p.fs.clone(),
        };
        let now = p.state.to_string();
        for st in STATES {
            state
                .get_or_create(&PairStateLabels {
                    pair: p.id.clone(),
                    fs: p.fs.clone(),
                    state: st.into(),
                })
                .set(i64::from(now == st));
        }
        serving
            .get_or_create(&l)
            .set(i64::from(p.role == metrofs_metro::engine::Role::Primary));
        let other = match p.role {
            metrofs_metro::engine::Role::Primary => p.secondary.clone(),
            metrofs_metro::engine::Role::Secondary => p.serving.clone(),
        };
        for (array, data) in [(s.name.clone(), p.local_data), (other, p.remote_data)] {
            consistent
                .get_or_create(&PairArrayLabels {
                    pair: p.id.clone(),
                    fs: p.fs.clone(),
                    array,
                })
                .set(i64::from(
                    data == metrofs_metro::engine::DataStatus::Consistent,
                ));
        }
        epoch.get_or_create(&l).set(i(p.epoch));
        dcl_bytes.get_or_create(&l).set(i(p.dcl_bytes));
        dcl_inodes.get_or_create(&l).set(i(p.dcl_inodes));
        dcl_dirs.get_or_create(&l).set(i(p.dcl_dirs));
        since.get_or_create(&l).set(i64::from(p.state_since.sec));
        let (r_now, left) = p.sync.as_ref().map_or((0, 0), |sy| {
            (sy.bytes_per_s, sy.total_bytes.saturating_sub(sy.done_bytes))
        });
        rate.get_or_create(&l).set(i(r_now));
        remaining.get_or_create(&l).set(i(left));
        for q in &p.quorum {
            quorum
                .get_or_create(&AddrLabels {
                    addr: q.addr.clone(),
                })
                .set(i64::from(q.reachable));
        }
    }
    r.register(
        "pair_state",
        "1 for the pair's current state (Normal, Synchronizing, ToBeSynchronized, Paused), 0 for the others",
        state,
    );
    r.register(
        "pair_serving",
        "1 when this array serves the pair's file system",
        serving,
    );
    r.register(
        "pair_data_consistent",
        "1 when the array's copy of the pair is Consistent, 0 when Inconsistent",
        consistent,
    );
    r.register(
        "pair_epoch",
        "The pair's epoch (grows at each arbitration or takeover)",
        epoch,
    );
    r.register(
        "pair_state_since",
        "When the pair entered its state, seconds since the Unix epoch",
        since,
    );
    r.register_with_unit(
        "dcl",
        "What differs between the sides and waits for resync",
        Unit::Bytes,
        dcl_bytes,
    );
    r.register(
        "dcl_inodes",
        "Inodes with dirty attributes in the DCL",
        dcl_inodes,
    );
    r.register(
        "dcl_dirs",
        "Directories with dirty entries in the DCL",
        dcl_dirs,
    );
    r.register(
        "resync_rate_bytes_per_second",
        "The running resync's copy rate (0 when none runs)",
        rate,
    );
    r.register_with_unit(
        "resync_remaining",
        "What the running resync still has to copy (0 when none runs)",
        Unit::Bytes,
        remaining,
    );
    r.register(
        "quorum_server_up",
        "1 when this array reaches the quorum server",
        quorum,
    );

    if let Some(peer) = &s.peer {
        let up = Family::<PeerLabels, Gauge>::default();
        let link_up = pairs.first().map(|p| p.link_up);
        if let Some(link_up) = link_up {
            up.get_or_create(&PeerLabels { peer: peer.clone() })
                .set(i64::from(link_up));
        }
        r.register(
            "link_up",
            "1 when the replication link to the peer is up",
            up,
        );
        let rtt = Family::<PeerLabels, FloatGauge>::default();
        if let Some(us) = pairs.iter().find_map(|p| p.link_rtt_us) {
            rtt.get_or_create(&PeerLabels { peer: peer.clone() })
                .set(us as f64 / 1e6);
        }
        r.register_with_unit(
            "link_rtt",
            "Round trip of the link's last heartbeat",
            Unit::Seconds,
            rtt,
        );
    }

    let (resident, active) = s.metro.log_extents();
    let log_active = Gauge::<i64>::default();
    log_active.set(i(active));
    r.register(
        "log_extents_active",
        "LOG extents being dual-written now",
        log_active,
    );
    let log_resident = Gauge::<i64>::default();
    log_resident.set(i(resident));
    r.register(
        "log_extents_resident",
        "LOG extents in the persisted activity log (leave lazily)",
        log_resident,
    );

    let alarms = Family::<SeverityLabels, Gauge>::default();
    for sev in ["critical", "warning"] {
        alarms
            .get_or_create(&SeverityLabels {
                severity: sev.into(),
            })
            .set(0);
    }
    for a in s.alarms.current() {
        alarms
            .get_or_create(&SeverityLabels {
                severity: a.severity.clone(),
            })
            .inc();
    }
    r.register("alarms_active", "Active alarms by severity", alarms);
    r
}

/// `GET /metrics`
pub async fn scrape(State(s): State<AppState>) -> Response {
    let r = registry(&s);
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &r) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::Internal(format!("cannot encode the metrics: {e}")).into_response(),
    }
}
