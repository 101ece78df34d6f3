//! The management API's JSON bodies, shared by the server (handlers) and the CLI (client).
//!
//! These are the wire contract: field names are stable. Each derives its OpenAPI schema
//! (utoipa `ToSchema`), so `/api/openapi.json` is generated from exactly these types.

use metrofs_core::{Cidr, ExportRules};
use metrofs_metro::engine::{DataStatus, Role};
use metrofs_metro::FsInfo;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Health {
    /// Always `"ok"` when the array answers.
    pub status: String,
    /// The array's name (config key `name`).
    pub array: String,
    /// metrofs version.
    pub version: String,
    /// Where NFSv3 + MOUNT listen.
    pub nfs_listen: String,
    /// Number of file systems.
    pub file_systems: usize,
    /// The peer array's name (`[peer] name`); absent for an array on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `Up` or `Down`: the replication link to the peer; absent without a peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Whether this array is its domain's preferred site.
    #[serde(default)]
    pub preferred: bool,
    /// Where this array keeps the bearer token of changing calls. The CLI on the same machine
    /// reads it from there when it can (the file is mode 600: only its owner can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// One file system, as `GET /api/fs` and `GET /api/fs/{name}` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct FsView {
    pub name: String,
    /// The fs id (16 hex digits); part of every NFS file handle.
    pub id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    pub export: ExportView,
}

/// How a file system is exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ExportView {
    /// The MOUNT path: `/NAME`.
    pub path: String,
    /// Networks allowed to mount and call (`ADDR/PREFIX`). Empty: nobody.
    pub clients: Vec<String>,
    pub read_only: bool,
    pub root_squash: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
}

impl From<&FsInfo> for FsView {
    fn from(info: &FsInfo) -> Self {
        Self {
            name: info.name.clone(),
            id: format!("{:016x}", info.id.0),
            created: u64::from(info.created.sec),
            export: ExportView {
                path: format!("/{}", info.name),
                clients: info.rules.clients.iter().map(ToString::to_string).collect(),
                read_only: info.rules.read_only,
                root_squash: info.rules.root_squash,
                anon_uid: info.rules.anon_uid,
                anon_gid: info.rules.anon_gid,
            },
        }
    }
}

/// `POST /api/fs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFs {
    /// 1 to 64 characters from `A-Z a-z 0-9 - _ .`, not starting with `.`.
    #[schema(example = "projects", pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
}

/// `PUT /api/fs/{name}/export`: the whole rule set (nothing is merged with the old one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExport {
    /// Networks allowed (`ADDR/PREFIX`, or a single address). Empty: nobody.
    pub clients: Vec<String>,
    pub read_only: bool,
    pub root_squash: bool,
    /// uid that a squashed root becomes. Default 65534 (nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_uid: Option<u32>,
    /// gid that a squashed root becomes. Default 65534 (nogroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_gid: Option<u32>,
}

impl SetExport {
    /// The rules this body asks for, or the first network that does not parse.
    pub fn to_rules(&self) -> Result<ExportRules, String> {
        let defaults = ExportRules::default();
        let clients = self
            .clients
            .iter()
            .map(|c| c.trim().parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExportRules {
            clients,
            read_only: self.read_only,
            root_squash: self.root_squash,
            anon_uid: self.anon_uid.unwrap_or(defaults.anon_uid),
            anon_gid: self.anon_gid.unwrap_or(defaults.anon_gid),
        })
    }
}

/// `POST /api/pairs`: pair file system `fs` of this array with its twin on array `remote`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePair {
    /// A file system of this array (it becomes the pair's serving side).
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub fs: String,
    /// The peer array's name (`[peer] name` of this array's configuration).
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub remote: String,
}

/// A pair, as `GET /api/pairs` and `GET /api/pairs/{id}` show it from the answering array.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PairView {
    /// 16 hex digits, the same on both arrays.
    pub id: String,
    /// The file system's name (the same on both arrays).
    pub fs: String,
    /// The file system's id (16 hex digits), the same on both arrays: file handles stay valid.
    pub fs_id: String,
    /// `Normal`, `Synchronizing`, `ToBeSynchronized` or `Paused`.
    pub state: String,
    /// When the pair entered `state`, seconds since the Unix epoch (answering array's clock).
    pub state_since: u64,
    /// The array that answered.
    pub array: String,
    /// `Primary` (it serves the fs) or `Secondary`, of the array that answered.
    pub role: String,
    /// The array that serves the fs to hosts.
    pub serving: String,
    /// The other array.
    pub secondary: String,
    /// The domain's preferred site.
    pub preferred_site: String,
    /// `Consistent` or `Inconsistent`, per array name.
    pub data: Vec<SideData>,
    /// `Up` or `Down`.
    pub link: String,
    /// Round-trip time of the link's last heartbeat, microseconds.
    pub link_rtt_us: Option<u64>,
    pub epoch: u64,
    /// What differs between the two sides and waits for resync.
    pub dcl: DclView,
    /// The running resync, if any.
    pub sync: Option<SyncView>,
    /// The running `pair verify` with its progress, or the last one since the answering array
    /// started (its result: `Done`, `Done: N differences` or `Failed: why`); absent when no
    /// verify ran there since.
    #[serde(default)]
    pub verify: Option<VerifyProgressView>,
    /// Raised when the pair left Normal; cleared when it is Normal again.
    pub alarms: Vec<String>,
    /// The latest events of this pair, newest first.
    pub events: Vec<String>,
    /// Whether the answering array acknowledges changes now: `Open` (serving), `Deciding`
    /// (an arbitration or swap runs: changes wait) or `Stopped`.
    pub phase: String,
    /// `quorum` or `static-priority`: how a loss of the link is arbitrated.
    pub quorum_mode: String,
    /// The domain's quorum servers as the answering array reaches them.
    pub quorum: Vec<QuorumServerView>,
    /// The last arbitration of this pair as the answering array saw it.
    pub last_arbitration: Option<ArbitrationInfo>,
    /// The serving side got its epoch by an operator's force start.
    pub forced: bool,
}

/// One quorum server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct QuorumServerView {
    /// `HOST:PORT`.
    pub addr: String,
    pub reachable: bool,
    /// Round trip of the last ping, microseconds.
    pub rtt_us: Option<u64>,
    pub last_error: Option<String>,
}

/// An arbitration: when, who asked, who won, why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ArbitrationInfo {
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub asked_by: String,
    /// Who serves after it; absent when nobody could be decided.
    pub winner: Option<String>,
    pub epoch: u64,
    pub reason: String,
}

/// One side's data status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SideData {
    pub array: String,
    /// `Consistent` or `Inconsistent`.
    pub status: String,
}

/// The DCL of a pair: what differs between the sides (only written while not Normal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DclView {
    /// Dirty data, bytes (chunks times the chunk size).
    pub bytes: u64,
    pub dirs: usize,
    pub inodes: usize,
    /// Dirty 64 KiB data chunks.
    pub chunks: usize,
    /// Everything is dirty (the initial full sync of a new pair).
    pub full: bool,
}

/// Progress of a running resync.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SyncView {
    /// What the worker does: Busy, Done or Failed (with why).
    pub status: String,
    /// inodes, directories, data or flush.
    pub phase: String,
    pub round: u64,
    pub percent: f64,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub bytes_per_s: u64,
    /// Seconds left at the current rate, when known.
    pub eta_s: Option<u64>,
    /// Data bytes sent over the link by this resync.
    pub sent_bytes: u64,
}

/// Progress of a running `pair verify` (on the array that runs it), or the last one's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct VerifyProgressView {
    /// `Busy` while it runs, then `Done`, `Done: N differences` or `Failed: why`.
    pub status: String,
    /// Inodes present on both sides, and those compared so far.
    pub inodes_total: u64,
    pub inodes_done: u64,
    /// Bytes of this side's files to compare, and compared so far.
    pub total_bytes: u64,
    pub done_bytes: u64,
    /// 0 to 100: by bytes, or by inodes when there are no file bytes.
    pub percent: f64,
    /// Comparison rate so far, bytes per second.
    pub bytes_per_s: u64,
    /// Seconds left at the current rate, while it runs and when known.
    pub eta_s: Option<u64>,
}

impl From<&metrofs_metro::resync::VerifyProgress> for VerifyProgressView {
    fn from(v: &metrofs_metro::resync::VerifyProgress) -> Self {
        Self {
            status: v.status.clone(),
            inodes_total: v.inodes_total,
            inodes_done: v.inodes_done,
            total_bytes: v.total_bytes,
            done_bytes: v.done_bytes,
            percent: v.percent,
            bytes_per_s: v.bytes_per_s,
            eta_s: v.eta_s,
        }
    }
}

fn data_word(d: DataStatus) -> String {
    match d {
        DataStatus::Consistent => "Consistent",
        DataStatus::Inconsistent => "Inconsistent",
    }
    .into()
}

impl PairView {
    /// The API's view of a pair as the metro module of array `array` reports it.
    #[must_use]
    pub fn from_metro(p: &metrofs_metro::PairView, array: &str) -> Self {
        let other = match p.role {
            Role::Primary => p.secondary.clone(),
            Role::Secondary => p.serving.clone(),
        };
        Self {
            id: p.id.clone(),
            fs: p.fs.clone(),
            fs_id: format!("{:016x}", p.fs_id.0),
            state: p.state.to_string(),
            state_since: u64::from(p.state_since.sec),
            array: array.to_owned(),
            role: format!("{:?}", p.role),
            serving: p.serving.clone(),
            secondary: p.secondary.clone(),
            preferred_site: p.preferred_site.clone(),
            data: vec![
                SideData {
                    array: array.to_owned(),
                    status: data_word(p.local_data),
                },
                SideData {
                    array: other,
                    status: data_word(p.remote_data),
                },
            ],
            link: if p.link_up { "Up" } else { "Down" }.into(),
            link_rtt_us: p.link_rtt_us,
            epoch: p.epoch,
            dcl: DclView {
                bytes: p.dcl_bytes,
                dirs: p.dcl_dirs,
                inodes: p.dcl_inodes,
                chunks: p.dcl_chunks,
                full: p.dcl_full,
            },
            sync: p.sync.as_ref().map(|s| SyncView {
                status: s.status.clone(),
                phase: s.phase.clone(),
                round: s.round,
                percent: s.percent,
                done_bytes: s.done_bytes,
                total_bytes: s.total_bytes,
                bytes_per_s: s.bytes_per_s,
                eta_s: s.eta_s,
                sent_bytes: s.sent_bytes,
            }),
            verify: p.verify.as_ref().map(VerifyProgressView::from),
            alarms: p.alarms.clone(),
            events: p.events.clone(),
            phase: format!("{:?}", p.phase),
            quorum_mode: p.quorum_mode.clone(),
            quorum: p
                .quorum
                .iter()
                .map(|q| QuorumServerView {
                    addr: q.addr.clone(),
                    reachable: q.reachable,
                    rtt_us: q.rtt_us,
                    last_error: q.last_error.clone(),
                })
                .collect(),
            last_arbitration: p.last_arbitration.as_ref().map(|a| ArbitrationInfo {
                time: u64::from(a.time.sec),
                asked_by: a.asked_by.clone(),
                winner: a.winner.clone(),
                epoch: a.epoch,
                reason: a.reason.clone(),
            }),
            forced: p.forced,
        }
    }
}

/// `POST /api/pairs/{id}/verify`: what comparing both sides found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct VerifyView {
    pub pair: String,
    pub inodes_compared: u64,
    pub bytes_compared: u64,
    /// Each difference found (at most 1000 are listed).
    pub differences: Vec<String>,
}

/// One export, as `GET /api/exports` lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ExportEntry {
    /// The file system.
    pub fs: String,
    pub export: ExportView,
}

/// An array of the domain, as the answering array knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ArrayView {
    pub name: String,
    /// `this` (the array that answered) or `peer`.
    pub relation: String,
    /// Whether it is the domain's preferred site.
    pub preferred: bool,
    /// `Up` when the answering array reaches it (itself: always), else `Down`.
    pub state: String,
    /// metrofs version (the answering array only).
    pub version: Option<String>,
    /// NFSv3 + MOUNT address (the answering array only).
    pub nfs_listen: Option<String>,
    /// Management API address (the answering array only).
    pub api_listen: Option<String>,
    /// Replication link address: where it listens (this array) or is dialled (the peer).
    pub link_address: Option<String>,
    /// The paired file systems it serves, as the answering array knows.
    pub serves: Vec<String>,
    /// Seconds since it started (the answering array only).
    pub uptime_s: Option<u64>,
}

/// The replication link between the two arrays.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct LinkView {
    /// The peer array's name.
    pub peer: String,
    /// `Up` or `Down`.
    pub state: String,
    /// Round trip of the last heartbeat, microseconds (known while a pair exists).
    pub rtt_us: Option<u64>,
}

/// How the domain arbitrates a lost link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct QuorumView {
    /// `quorum` (servers configured) or `static-priority`.
    pub mode: String,
    /// Every configured quorum server; reachability is known while a pair exists.
    pub servers: Vec<QuorumServerView>,
}

/// The domain: two arrays, their link, the quorum servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct DomainView {
    /// The domain's name; absent for an array on its own.
    pub name: Option<String>,
    pub preferred_site: String,
    /// `automatic` or `manual`: whether service moves back to the preferred site after a
    /// failback (absent for an array on its own).
    pub recovery: Option<String>,
    /// The floating service address hosts mount, when configured.
    pub service_address: Option<String>,
    pub arrays: Vec<ArrayView>,
    /// Absent for an array on its own.
    pub link: Option<LinkView>,
    pub quorum: QuorumView,
}

/// An alarm: raised while its condition holds, cleared by itself when it no longer does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AlarmView {
    /// Stable key of the condition, e.g. `not_normal:00000000000000ab`.
    pub id: String,
    /// `critical` (service or data at risk now) or `warning`.
    pub severity: String,
    /// The pair it is about, if any.
    pub pair: Option<String>,
    /// What is wrong, for people.
    pub text: String,
    /// What to do about it.
    pub hint: String,
    /// When it was raised, seconds since the Unix epoch.
    pub since: u64,
}

/// One event of the durable event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct EventView {
    /// Grows by one per event, never reused: ask `?after=ID` for what came next.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `state`, `link`, `resync`, `arbitration`, `failover`, `swap`, `force_start`,
    /// `operator` or `alarm`.
    pub kind: String,
    /// The pair it is about, if any.
    pub pair: Option<String>,
    /// Who did it: `metro` (the array itself), `alarms`, `cli:USER@ADDR`, `dashboard@ADDR`,
    /// `api@ADDR`.
    pub actor: String,
    pub text: String,
}

/// `GET /api/events` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger id, oldest first. Without it: the newest `limit` events.
    pub after: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// What went through the array since it started: cumulative counts and sums (a rate over an
/// interval is the difference of two answers). `/metrics` has the histograms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct IoView {
    /// Changes dual-written (local and remote apply tried).
    pub dual_writes: u64,
    /// Sum of their local apply times, µs.
    pub dual_write_local_us: u64,
    /// Remote applies that answered, and the sum of their times, µs.
    pub dual_write_remote: u64,
    pub dual_write_remote_us: u64,
    /// Sum of their total times (LOG entry to answer), µs.
    pub dual_write_total_us: u64,
    /// Changes that went to the DCL because the remote apply did not happen or failed.
    pub remote_missing: u64,
    pub nfs_ops: u64,
    pub nfs_errors: u64,
    /// File data copied by resync workers, bytes.
    pub resync_bytes: u64,
}

impl From<metrofs_core::metrics::Snapshot> for IoView {
    fn from(s: metrofs_core::metrics::Snapshot) -> Self {
        Self {
            dual_writes: s.dual_writes,
            dual_write_local_us: s.dual_write_local_us,
            dual_write_remote: s.dual_write_remote,
            dual_write_remote_us: s.dual_write_remote_us,
            dual_write_total_us: s.dual_write_total_us,
            remote_missing: s.remote_missing,
            nfs_ops: s.nfs_ops,
            nfs_errors: s.nfs_errors,
            resync_bytes: s.resync_bytes,
        }
    }
}

/// `GET /api/status`: the whole domain at a glance, as one array sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StatusView {
    /// The array that answered.
    pub array: String,
    /// Its clock, seconds since the Unix epoch.
    pub time: u64,
    pub domain: DomainView,
    pub file_systems: usize,
    pub pairs: Vec<PairView>,
    pub alarms: Vec<AlarmView>,
    /// LOG extents being dual-written now, and resident in the persisted LOG.
    pub log_extents_active: usize,
    pub log_extents_resident: usize,
    pub io: IoView,
    /// The newest events, oldest first.
    pub events: Vec<EventView>,
}

/// Every error answer: `{"code": .., "message": .., "hint": ..}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable (`fs_not_found`, `fs_exists`, `invalid_name`, ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_export_parses_networks() {
        let body = SetExport {
            clients: vec!["127.0.0.0/8".into(), " 10.1.2.3 ".into()],
            read_only: true,
            root_squash: false,
            anon_uid: None,
            anon_gid: Some(7),
        };
        let r = body.to_rules().expect("valid");
        assert_eq!(r.clients.len(), 2);
        assert_eq!(r.clients[1].to_string(), "10.1.2.3/32");
        assert!(r.read_only && !r.root_squash);
        assert_eq!((r.anon_uid, r.anon_gid), (65534, 7));
        let bad = SetExport {
            clients: vec!["10.0.0.0/40".into()],
            ..body
        };
        assert!(bad
            .to_rules()
            .expect_err("bad prefix")
            .contains("10.0.0.0/40"));
    }

    #[test]
    fn unknown_fields_refused() {
        assert!(serde_json::from_str::<CreateFs>(r#"{"name":"a","size":1}"#).is_err());
        assert!(serde_json::from_str::<SetExport>(r#"{"clients":[],"read_only":false}"#).is_err());
    }
}
