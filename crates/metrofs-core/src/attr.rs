//! Inode attributes.

use serde::{Deserialize, Serialize};

use crate::{Gen, Ino, Time};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
}

/// Everything the store keeps about an inode, as NFS reports it (`fattr3`) plus the generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub ino: Ino,
    pub gen: Gen,
    pub ftype: FileType,
    /// Permission bits only (0o7777), never the type bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes actually allocated on disk (sparse files use less than `size`).
    pub used: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

/// A time to set: the server's time of the op, or a time the client gives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    /// The op's own `FsOp::time` (decided by the serving side, replicated as is).
    ServerTime,
    Client(Time),
}

/// Attributes to change; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

impl SetAttr {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Space and file counts of one file system, from the store (FSSTAT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStat {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
    pub avail_files: u64,
}
