//! metrofs-core: the words every other crate shares.
//!
//! # Layout
//! - [`ids`]: `FsId`, `Ino`, `Gen`, `Epoch`, `Seq` and the file handle they make.
//! - [`time`]: `Time`, and the [`time::Clock`] seam (no other crate reads the system clock).
//! - [`attr`]: inode attributes as the store keeps them and as NFS reports them.
//! - [`op`]: `FsOp`, the fully determined change that `Store::apply` executes identically on
//!   both arrays, and `OpReply`, its result.
//! - [`error`]: `FsError`, the file-system level error (mapped to `nfsstat3` once, in the nfs crate).
//! - [`backend`]: the seam between the NFS front end and what lies below it (the metro module).
//! - [`bufpool`]: receive buffers for large messages, lent as `Bytes` and used again.
//!
//! Nothing here does I/O.

pub mod attr;
pub mod backend;
pub mod bufpool;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod op;
pub mod time;

pub use attr::{Attr, FileType, FsStat, SetAttr, SetTime};
pub use backend::{Backend, Caller, Cidr, DirEntry, ExportInfo, ExportRules, ReadDirPage, ReadReply, ReplyKey};
pub use error::FsError;
pub use ids::{Epoch, FileHandle, FsId, Gen, Ino, Seq};
pub use op::{CreateHow, FsOp, NewInode, OpBody, OpReply, Stability, SyncOp, WccAttr};
pub use time::{Clock, SystemClock, Time};

/// Longest name in a directory, in bytes (as PATHCONF reports it and every op enforces it).
pub const NAME_MAX_BYTES: usize = 255;
/// Longest symlink target, in bytes.
pub const SYMLINK_MAX_BYTES: usize = 4096;
/// Most hard links to one inode (and subdirectories of one directory), as PATHCONF reports it.
/// The store's own limit (metrofs-store `LINKS_MAX`) must be this value.
pub const LINKS_MAX: u32 = 65_000;
/// Largest file the store accepts, in bytes (8 EiB would overflow offsets + counts).
pub const FILE_SIZE_MAX_BYTES: u64 = 1 << 50;
/// The inode number of every file system's root directory.
pub const ROOT_INO: Ino = Ino(1);
