//! The management API's JSON bodies, shared by the server (handlers) and the CLI (client).
//!
//! These are the wire contract: field names are stable. A later issue derives OpenAPI schemas
//! for them (utoipa) right here.

use metrofs_core::{Cidr, ExportRules};
use metrofs_metro::engine::{DataStatus, Role};
use metrofs_metro::FsInfo;
use serde::{Deserialize, Serialize};

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
}

/// One file system, as `GET /api/fs` and `GET /api/fs/{name}` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsView {
    pub name: String,
    /// The fs id (16 hex digits); part of every NFS file handle.
    pub id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    pub export: ExportView,
}

/// How a file system is exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateFs {
    /// 1 to 64 characters from `A-Z a-z 0-9 - _ .`, not starting with `.`.
    pub name: String,
}

/// `PUT /api/fs/{name}/export`: the whole rule set (nothing is merged with the old one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreatePair {
    /// A file system of this array (it becomes the pair's serving side).
    pub fs: String,
    /// The peer array's name (`[peer] name` of this array's configuration).
    pub remote: String,
}

/// A pair, as `GET /api/pairs` and `GET /api/pairs/{id}` show it from the answering array.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PairView {
    /// 16 hex digits, the same on both arrays.
    pub id: String,
    /// The file system's name (the same on both arrays).
    pub fs: String,
    /// The file system's id (16 hex digits), the same on both arrays: file handles stay valid.
    pub fs_id: String,
    /// `Normal`, `Synchronizing`, `ToBeSynchronized` or `Paused`.
    pub state: String,
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
    /// Raised when the pair left Normal; cleared when it is Normal again.
    pub alarms: Vec<String>,
    /// The latest events of this pair, newest first.
    pub events: Vec<String>,
}

/// One side's data status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SideData {
    pub array: String,
    /// `Consistent` or `Inconsistent`.
    pub status: String,
}

/// The DCL of a pair: what differs between the sides (only written while not Normal).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
            alarms: p.alarms.clone(),
            events: p.events.clone(),
        }
    }
}

/// `POST /api/pairs/{id}/verify`: what comparing both sides found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyView {
    pub pair: String,
    pub inodes_compared: u64,
    pub bytes_compared: u64,
    /// Each difference found (at most 1000 are listed).
    pub differences: Vec<String>,
}

/// Every error answer: `{"code": .., "message": .., "hint": ..}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
