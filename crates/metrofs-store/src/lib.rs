//! metrofs-store: one array's store.
//!
//! Metadata (catalog of file systems, inodes, directory entries, free inode numbers, readdir
//! slots) lives in one redb database, `DIR/meta.redb`; file data in one sparse file per regular
//! inode under `DIR/data/`. [`Store::apply`] executes a fully determined [`metrofs_core::FsOp`]
//! identically on any array (DESIGN.md, "Making it identical on both sides").
//!
//! # Layout
//! - [`store`](crate::Store): the tables, caches, open and recovery, catalog, reads, and the
//!   durability machinery (its module docs explain the durability design and why).
//! - `apply`: the ops, their POSIX/RFC 1813 semantics and errors.
//! - `apply::sync`: resync's steps ([`Store::apply_sync`], orphans) and the reads resync and
//!   verify take from the source (entries, inodes, data segments, chunk digests).
//! - `rec`: the inode record and its encoding.
//! - `data`: data files, their paths, the bounded descriptor cache.
//! - `journal`: the op journal every change is appended to before it is answered, so a
//!   `kill -9` loses nothing applied; replayed at open.
//! - `recovery`: what `open` does after a crash.
//! - `check`: [`Store::check`] (fsck) and [`Store::image`] ([`FsImage`]).

mod apply;
mod check;
mod data;
mod group;
mod journal;
mod rec;
mod recovery;
mod store;

pub use apply::sync::{sync_op_bytes, DIGESTS_MAX, SEGMENTS_MAX_BYTES};
pub use check::{FsImage, ImageInode};
pub use data::{DIRECT_ALIGN, DIRECT_WRITE_MIN_BYTES};
pub use group::GroupSync;
pub use journal::{drop_cached, zero_fill};
pub use recovery::RecoveryReport;
pub use store::{FsInfo, Store, READ_MAX_BYTES};

use std::path::PathBuf;

use metrofs_core::FsId;

/// Errors of opening the store and of catalog operations (per-op errors are
/// [`metrofs_core::FsError`]).
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata database: {0}")]
    Db(String),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("{} is in use by another process (one array per data directory)", .0.display())]
    InUse(PathBuf),
    #[error("a file system named '{0}' already exists")]
    NameExists(String),
    #[error("a file system with id {:016x} already exists", .0 .0)]
    IdExists(FsId),
    #[error("no file system with id {:016x}", .0 .0)]
    NotFound(FsId),
    #[error("invalid file system name '{0}': {1}")]
    InvalidName(String, &'static str),
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Store>();
}
