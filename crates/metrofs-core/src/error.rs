//! File-system level errors: what an op can answer. The nfs crate maps each to an `nfsstat3`
//! in exactly one function; the metro module compares them between the two sides, so they are
//! values (`PartialEq`), never strings.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FsError {
    #[error("no such file or directory")]
    NoEnt,
    #[error("file exists")]
    Exist,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("stale file handle")]
    Stale,
    #[error("read-only file system")]
    ReadOnly,
    #[error("permission denied")]
    Access,
    #[error("not owner")]
    Perm,
    #[error("invalid argument")]
    Inval,
    #[error("no space left")]
    NoSpace,
    #[error("file too large")]
    FBig,
    #[error("too many links")]
    MLink,
    #[error("not supported")]
    NotSupp,
    #[error("attribute guard failed (ctime changed)")]
    NotSync,
    #[error("readdir cookie no longer valid")]
    BadCookie,
    #[error("no such file system")]
    NoFs,
    /// The op cannot be acknowledged now (e.g. a fenced side, or arbitration under way);
    /// the client should retry (NFS3ERR_JUKEBOX).
    #[error("temporarily unavailable, retry: {0}")]
    Busy(String),
    /// A local I/O failure. Fatal for the array (see STYLE 9): it stops rather than retries.
    #[error("I/O error: {0}")]
    Io(String),
}
