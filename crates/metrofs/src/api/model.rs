//! The management API's JSON bodies, shared by the server (handlers) and the CLI (client).
//!
//! These are the wire contract: field names are stable. A later issue derives OpenAPI schemas
//! for them (utoipa) right here.

use metrofs_core::{Cidr, ExportRules};
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
