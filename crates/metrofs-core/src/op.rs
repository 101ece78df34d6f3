//! `FsOp`: one fully determined change to one file system.
//!
//! The contract (DESIGN.md, "Making it identical on both sides"): an `FsOp` carries everything
//! needed to apply it. `Store::apply(&FsOp)` on the same state gives the same new state and the
//! same [`OpReply`] (or the same [`FsError`]) on either array. The store invents nothing: inode
//! numbers and generations come in [`FsOp::new_inode`], every timestamp it sets is
//! [`FsOp::time`] or a time the body names. The serving side's metro module decides those
//! (allocator, clock) before the op is sent to both stores.
//!
//! [`FsError`]: crate::FsError

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Attr, FsId, Gen, Ino, SetAttr, Time};

/// The inode number and generation a creating op gives the new object.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewInode {
    pub ino: Ino,
    pub gen: Gen,
}

/// How durable a WRITE must be before it is answered (NFSv3 `stable_how`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stability {
    /// In the cache; made durable by a later COMMIT.
    Unstable,
    /// Data on disk before the answer (metadata may follow later).
    DataSync,
    /// Data and metadata on disk before the answer.
    FileSync,
}

/// CREATE's mode (NFSv3 `createhow3`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateHow {
    /// Create, or if the name exists as a regular file, apply `attr` to it (truncate with size).
    Unchecked(SetAttr),
    /// Create; EXIST if the name exists.
    Guarded(SetAttr),
    /// Create with this verifier stored in the inode; if the name exists and holds the same
    /// verifier, answer success with the existing file (a retransmitted exclusive create).
    Exclusive([u8; 8]),
}

/// The change itself, as the NFS front end asks for it. Creating bodies get their inode from
/// [`FsOp::new_inode`]; `uid`/`gid` are the caller's (after squashing), decided before the op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpBody {
    Create { dir: Ino, name: Vec<u8>, how: CreateHow, mode: u32, uid: u32, gid: u32 },
    Mkdir { dir: Ino, name: Vec<u8>, mode: u32, uid: u32, gid: u32 },
    Symlink { dir: Ino, name: Vec<u8>, target: Vec<u8>, mode: u32, uid: u32, gid: u32 },
    /// Data write at `offset`; extends the file when it ends past the size.
    Write { ino: Ino, offset: u64, data: Bytes, stable: Stability },
    /// Attribute change; `guard` is SETATTR's `obj_ctime` check (NOT_SYNC when it differs).
    SetAttr { ino: Ino, attr: SetAttr, guard: Option<Time> },
    Remove { dir: Ino, name: Vec<u8> },
    Rmdir { dir: Ino, name: Vec<u8> },
    /// Rename over an existing target (file over file, empty dir over dir); a directory into
    /// its own subtree is INVAL.
    Rename { from_dir: Ino, from_name: Vec<u8>, to_dir: Ino, to_name: Vec<u8> },
    /// A hard link to `ino` named `name` in `dir`.
    Link { ino: Ino, dir: Ino, name: Vec<u8> },
    /// Make every earlier change to `ino` (data and attributes) and the fs's namespace durable.
    Commit { ino: Ino },
}

impl OpBody {
    /// Whether applying this body needs a [`NewInode`].
    #[must_use]
    pub fn creates(&self) -> bool {
        matches!(self, Self::Create { .. } | Self::Mkdir { .. } | Self::Symlink { .. })
    }

    /// Short name for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Mkdir { .. } => "mkdir",
            Self::Symlink { .. } => "symlink",
            Self::Write { .. } => "write",
            Self::SetAttr { .. } => "setattr",
            Self::Remove { .. } => "remove",
            Self::Rmdir { .. } => "rmdir",
            Self::Rename { .. } => "rename",
            Self::Link { .. } => "link",
            Self::Commit { .. } => "commit",
        }
    }
}

/// A fully determined change: what `Store::apply` executes on both arrays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsOp {
    pub fs: FsId,
    /// The op's time: ctime/mtime it sets, and what `SetTime::ServerTime` means.
    pub time: Time,
    /// Present exactly when `body.creates()`.
    pub new_inode: Option<NewInode>,
    pub body: OpBody,
}

/// The attributes NFS's weak cache consistency wants from before an op (`wcc_attr`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WccAttr {
    pub size: u64,
    pub mtime: Time,
    pub ctime: Time,
}

impl From<&Attr> for WccAttr {
    fn from(a: &Attr) -> Self {
        Self { size: a.size, mtime: a.mtime, ctime: a.ctime }
    }
}

/// What an applied op answers. Deterministic like the op: the metro module compares the two
/// sides' replies to detect divergence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpReply {
    /// The object created, written, changed or linked, after the op.
    pub obj: Option<Attr>,
    /// That object before the op (WRITE, SETATTR).
    pub obj_before: Option<WccAttr>,
    /// The directory changed (CREATE, MKDIR, SYMLINK, REMOVE, RMDIR, LINK; RENAME's source):
    /// before and after.
    pub dir: Option<(WccAttr, Attr)>,
    /// RENAME's target directory, when it differs from the source: before and after.
    pub dir2: Option<(WccAttr, Attr)>,
}

/// One step of a resync: copies state from the serving side to the other *as it is*, rather
/// than replaying a host's change. Used by resync and the initial full sync of a new pair,
/// never by hosts. Like [`FsOp`], a `SyncOp` invents nothing; unlike it, it sets no times of
/// its own (times travel inside [`Attr`]).
///
/// Resync applies them in phases so a moved subtree is never orphaned on the target:
/// `PutInode` (and `Verifier`) for every dirty inode, then `Entries` for every dirty directory
/// (or `Link` for entries the target lacks), then `Allocator` (or `Unlink` for entries the
/// target has in excess: an inode whose last link goes is freed; a freed directory loses its
/// remaining entries the same way), then `PutData` for dirty chunks.
///
/// What a failover needs beyond names and bytes travels too: an entry's READDIR slot (its
/// cookie) in `Entries`, a directory's next slot, the allocator's free numbers with their
/// generations and its never-used mark in `Allocator`, an exclusive-create verifier in
/// `Verifier`. After a round with them the target's image equals the source's exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncOp {
    /// Create inode `attr.ino` (generation `attr.gen`) or overwrite it, with exactly these
    /// attributes except `nlink` (derived from entries) and `used`. The data file is cut or
    /// extended to `attr.size`. A symlink carries its target.
    PutInode { attr: Attr, symlink: Option<Vec<u8>> },
    /// Make `dir`'s entry `name` point at `ino` (replacing what it named, if anything).
    Link { dir: Ino, name: Vec<u8>, ino: Ino },
    /// Remove `dir`'s entry `name` if present.
    Unlink { dir: Ino, name: Vec<u8> },
    /// Make bytes `[offset, offset + len)` of `ino` equal to the source's: holes everywhere
    /// except the given data segments `(offset, bytes)`, which lie inside the range. Does not
    /// change the size or any time.
    PutData { ino: Ino, offset: u64, len: u64, segments: Vec<(u64, Bytes)> },
    /// Make the entries of directory `dir` whose READDIR slots lie in `[from, to)` exactly
    /// `entries` (slot, name, ino), sorted by slot, and the directory's next slot `next_slot`
    /// (above every slot it holds). An entry of the range not in the list goes (its inode
    /// loses that name, kept as an orphan until the links phase is over); a listed entry is
    /// made at its slot (a name elsewhere in `dir` moves there, a directory named elsewhere
    /// moves here). No time changes. A directory's listing travels as consecutive ranges,
    /// the highest first (the first one sent ends at `u64::MAX`), so the next slot is never
    /// below a slot in use.
    Entries { dir: Ino, next_slot: u64, from: u64, to: u64, entries: Vec<(u64, Vec<u8>, Ino)> },
    /// Make the allocator the source's: the next never-used inode number `next_ino`, and the
    /// freed numbers in `[from, to)` exactly `free` (number, the generation it last had),
    /// sorted. Frees the orphans left by the links phase first. A number listed as free that
    /// is live here, or a live number at or above `next_ino`, is a difference the round did
    /// not repair: refused (INVAL). Sent after the round's namespace steps, as consecutive
    /// ranges, the highest first (the first one sent ends at `Ino(u64::MAX)`).
    Allocator { next_ino: Ino, from: Ino, to: Ino, free: Vec<(Ino, Gen)> },
    /// Regular file `ino` of generation `gen` holds this exclusive-create verifier (so a
    /// retransmitted exclusive CREATE is recognised after a failover).
    Verifier { ino: Ino, gen: Gen, verifier: Option<[u8; 8]> },
}
