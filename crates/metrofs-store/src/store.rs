//! The store: its tables, its caches, opening and recovery, the catalog, reads, and the
//! machinery every change goes through (metadata transactions, group commit, fatal errors).
//!
//! # Durability design
//!
//! redb's non-durable commits (`Durability::None`) keep the new header in memory only: after a
//! `kill -9` the database reopens at the last *durable* commit and every non-durable commit
//! since is gone (measured: `examples/redb_probe.rs` commits 1 durable + 1000 non-durable rows,
//! gets killed, and 1 row is back). A durable commit costs one fsync (~0.5 ms here), a
//! non-durable one ~20 µs. So:
//!
//! - A namespace or attribute op is one non-durable redb transaction (the "cache" level of
//!   DESIGN.md). An UNSTABLE write is a `pwrite` into the data file and an update of the inode's
//!   attributes in an in-memory table ([`AttrCache`]), written back by the next durable commit:
//!   no redb transaction per write.
//! - COMMIT and FILE_SYNC/DATA_SYNC writes fdatasync the data file, then make the metadata
//!   durable through the op journal ([`Store::flush_journal`]): the bucket directories that got
//!   new data files since the last flush are fsync'd (consecutive inode numbers share a bucket,
//!   so a burst of new files needs one), then the journal's records (an fdatasync of a page or
//!   two). Concurrent callers share both. The redb commit itself stays non-durable until the
//!   next [`Store::sync`] (the array's background flush, every `sync_interval_ms`) or bound:
//!   a durable redb commit writes every page changed since the last one (about 20 pages of
//!   4 KiB for a few small files), and one per COMMIT was most of the CPU of a small file.
//! - [`Store::sync`] fdatasyncs every written data file, then commits the metadata durably
//!   (group commit: concurrent callers share one), which lets the journal records it covers go.
//! - Every change is also appended to the op journal (`journal.rs`) with one plain `write()`
//!   before it is answered. The journal lives in the page cache like the data files, so a
//!   `kill -9` of the process loses nothing `apply` answered: at open the journal's records
//!   after the last durable commit are replayed (apply is deterministic). Each durable commit
//!   seals the journal (it records the LSN it covers) and the covered records go. So
//!   [`Store::sync`] is needed only against a power loss, not a process crash.
//! - A power loss takes what the page cache held: the journal records after the last journal
//!   flush, and the data not fsync'd. The open replays the flushed records onto the last
//!   durable commit, so what was acknowledged as durable (COMMIT, stable writes, `sync()`) is
//!   never lost. Changes after the last flush are lost (at most `sync_interval_ms` of them
//!   when no client commits; `NONDURABLE_COMMITS_MAX` namespace ops and `JOURNAL_BYTES_MAX` of
//!   journal bound the replay).
//! - After a crash the metadata is the last durable commit, consistent by redb's atomicity,
//!   plus the replayed journal, and the data files may be newer (the page cache survives a
//!   process crash). Recovery makes them follow the metadata: a data file with no live inode
//!   goes, one longer than its inode's size is cut to the size, and the data of a removed file
//!   whose removal never became durable is put back from the trash (data of removed files is
//!   moved to `trash/` and deleted only once the removal is durable, because a power loss
//!   would otherwise bring the file back without data).
//! - Shrinking a file (SETATTR size, or UNCHECKED CREATE with a size) commits the metadata
//!   durably *before* cutting the data file, for the same reason.
//!
//! A clean close records a flag; an open without it (or with journal records to replay) runs
//! the recovery scan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, RwLock};

use metrofs_core::{
    Attr, DirEntry, ExportRules, FsError, FsId, FsStat, Gen, Ino, NewInode, ReadDirPage, ReadReply,
    Time, ROOT_INO,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::data::{self, FdCache};
use crate::journal::{Journal, Seal, JOURNAL_BYTES_MAX};
use crate::rec::{Inode, Kind};
use crate::StoreError;

/// fs id → `FsInfo` as JSON (array-level, not replicated by ops).
pub(crate) const CATALOG: TableDefinition<u64, &[u8]> = TableDefinition::new("catalog");
/// fs id → (next never-used inode number, number of live inodes).
pub(crate) const ALLOC: TableDefinition<u64, (u64, u64)> = TableDefinition::new("alloc");
/// (fs, ino) → encoded [`Inode`].
pub(crate) const INODES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("inodes");
/// (fs, dir, name) → (slot, ino): look-up by name.
pub(crate) const DIRENTS: TableDefinition<(u64, u64, &[u8]), (u64, u64)> =
    TableDefinition::new("dirents");
/// (fs, dir, slot) → (ino, name): listing order and READDIR cookies.
pub(crate) const SLOTS: TableDefinition<(u64, u64, u64), (u64, &[u8])> =
    TableDefinition::new("slots");
/// (fs, ino) → generation it last had: freed inode numbers.
pub(crate) const FREE: TableDefinition<(u64, u64), u64> = TableDefinition::new("free");
/// Store-wide values: format version, clean-close flag, the journal's durable LSN.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `META` key: LSN of the last journal record the last durable commit covers.
pub(crate) const JOURNAL_LSN: &str = "journal_lsn";

const FORMAT_VERSION: u64 = 1;
/// READDIR cookies 1 and 2 are left to the front end for "." and ".."; entries start at 3.
pub(crate) const FIRST_SLOT: u64 = 3;
/// What a directory reports as size and space used.
pub(crate) const DIR_SIZE_BYTES: u64 = 4096;
/// Links to one file at most (LINK answers MLINK past it); subdirectories per directory too.
pub(crate) const LINKS_MAX: u32 = metrofs_core::LINKS_MAX;
/// Largest READ answered at once (a larger count gets a short read, as NFS allows).
pub const READ_MAX_BYTES: u32 = 4 << 20;
/// Inode attributes kept in memory at most; beyond it clean ones are dropped.
const CACHED_INODES_MAX: usize = 65_536;
/// Written inodes whose attributes wait in memory at most before a write-back transaction.
const DIRTY_INODES_MAX: usize = 8_192;
/// Non-durable commits in a row at most: redb cannot reuse pages freed by non-durable commits,
/// so the file would grow without a durable one now and then.
const NONDURABLE_COMMITS_MAX: u32 = 4_096;
/// Locks that serialise syncing one data file (by inode number modulo this).
const SYNC_STRIPES: usize = 64;
/// Locks that keep WRITEs and ops that cut a file apart (by inode number modulo this).
pub(crate) const SIZE_STRIPES: usize = 64;

const _: () = assert!(FIRST_SLOT > 2 && DIRTY_INODES_MAX < CACHED_INODES_MAX);

/// One file system in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsInfo {
    pub id: FsId,
    pub name: String,
    pub rules: ExportRules,
    pub created: Time,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum CacheState {
    /// Same as the committed redb record.
    Clean,
    /// Changed by writes since; the next durable commit writes it back.
    Dirty,
    /// Written into the transaction being committed.
    Pending,
}

pub(crate) struct CacheEntry {
    /// `None`: the inode was removed.
    pub inode: Option<Inode>,
    pub state: CacheState,
}

/// Inode records newer than (or as new as) redb's committed ones. Invariant: any inode that a
/// transaction not yet committed has changed is here, so a miss means redb's committed record
/// is current (that is what lets a WRITE load a missing entry without the transaction lock).
#[derive(Default)]
pub(crate) struct AttrCache {
    pub map: HashMap<(FsId, Ino), CacheEntry>,
    pub dirty: HashSet<(FsId, Ino)>,
    pub pending: Vec<(FsId, Ino)>,
}

impl AttrCache {
    pub fn stage(&mut self, fs: FsId, ino: Ino, inode: Option<Inode>) {
        self.dirty.remove(&(fs, ino));
        self.map.insert(
            (fs, ino),
            CacheEntry {
                inode,
                state: CacheState::Pending,
            },
        );
        self.pending.push((fs, ino));
    }

    /// After a commit: what it wrote is now redb's committed state.
    fn settle(&mut self) {
        for k in std::mem::take(&mut self.pending) {
            if let Some(e) = self.map.get_mut(&k) {
                if e.state == CacheState::Pending {
                    e.state = CacheState::Clean;
                }
            }
        }
        if self.map.len() > CACHED_INODES_MAX {
            self.map.retain(|_, e| e.state != CacheState::Clean);
        }
    }
}

/// State of the metadata writer, under its lock (one redb write transaction at a time).
#[derive(Default)]
pub(crate) struct TxnState {
    nondurable_commits: u32,
    /// Trash files whose removal is committed but not yet durable.
    trash: Vec<PathBuf>,
}

impl TxnState {
    pub(crate) fn trash_pending(&self) -> Vec<PathBuf> {
        self.trash.clone()
    }
}

/// Group commit: a durable commit that *starts* after a caller asked covers that caller.
#[derive(Default)]
struct Group {
    started: u64,
    done: u64,
    running: bool,
}

/// One array's store. See the crate docs.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) db: Database,
    pub(crate) catalog: RwLock<BTreeMap<FsId, FsInfo>>,
    pub(crate) txn: Mutex<TxnState>,
    pub(crate) cache: Mutex<AttrCache>,
    pub(crate) fds: FdCache,
    /// Data files written since their last fsync, and whether each was created since (its
    /// bucket directory then needs an fsync too).
    pub(crate) unsynced: Mutex<HashMap<(FsId, Ino), bool>>,
    group: Mutex<Group>,
    group_cv: Condvar,
    sync_stripes: [Mutex<()>; SYNC_STRIPES],
    pub(crate) size_locks: [std::sync::RwLock<()>; SIZE_STRIPES],
    /// Bucket directories holding data files created and fsync'd since the last durable
    /// commit or journal flush: it fsyncs them first ([`Store::sync_new_dirs`]).
    dirs_to_sync: Mutex<HashSet<PathBuf>>,
    /// Held while directories taken from `dirs_to_sync` are being fsync'd.
    dirs_syncing: Mutex<()>,
    /// Set by the first local I/O failure; every later change answers it (STYLE 9: a failed
    /// fsync is never retried).
    fatal: OnceLock<String>,
    /// What recovery did at open, when the last close was not clean.
    recovery: Option<crate::RecoveryReport>,
    /// Every applied change until a durable commit covers it (see `journal`).
    pub(crate) journal: Journal,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These locks guard caches and counters whose every update is a single step; a panic
    // elsewhere cannot leave them half-changed.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn db_err(e: impl std::fmt::Display) -> FsError {
    FsError::Io(format!("metadata database: {e}"))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> FsError {
    FsError::Io(format!("metadata corrupt: {what}"))
}

fn store_db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

fn from_fs_err(e: FsError) -> StoreError {
    match e {
        FsError::Io(m) => StoreError::Db(m),
        other => StoreError::Db(other.to_string()),
    }
}

/// Checks a file system name: 1..=64 of `[A-Za-z0-9_.-]`, not starting with '.'.
pub(crate) fn check_fs_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &'static str| Err(StoreError::InvalidName(name.to_string(), why));
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters long");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return bad("may contain only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

impl Store {
    /// Opens (creating if absent) the store in `dir`: `dir/meta.redb` + `dir/data/...`.
    /// After a crash (no clean close recorded) it first makes the data files follow the
    /// metadata (see the module docs), so the store is consistent when this returns.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let ctx = |what: &str| {
            let what = what.to_string();
            move |source| StoreError::Io {
                context: what,
                source,
            }
        };
        std::fs::create_dir_all(dir.join("data"))
            .map_err(ctx(&format!("creating {}", dir.join("data").display())))?;
        let path = dir.join("meta.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.clone()),
            e => StoreError::Db(format!("opening {}: {e}", path.display())),
        })?;
        let root = dir.to_path_buf();
        let durable_lsn: u64;
        let clean = {
            let w = db.begin_write().map_err(store_db_err)?;
            let clean;
            {
                let mut meta = w.open_table(META).map_err(store_db_err)?;
                let version = meta.get("format").map_err(store_db_err)?.map(|v| v.value());
                match version {
                    None => {
                        meta.insert("format", FORMAT_VERSION)
                            .map_err(store_db_err)?;
                    }
                    Some(FORMAT_VERSION) => {}
                    Some(v) => {
                        return Err(StoreError::Corrupt(format!(
                            "{} has format {v}; this build reads format {FORMAT_VERSION}",
                            path.display()
                        )))
                    }
                }
                // A store made just now has nothing to recover.
                clean = version.is_none() || meta.get("clean").map_err(store_db_err)?.map(|v| v.value()) == Some(1);
                durable_lsn = meta
                    .get(JOURNAL_LSN)
                    .map_err(store_db_err)?
                    .map_or(0, |v| v.value());
                // From now until a clean close, a crash must lead to recovery.
                meta.insert("clean", 0).map_err(store_db_err)?;
                for t in [
                    w.open_table(CATALOG).map(|_| ()),
                    w.open_table(INODES).map(|_| ()),
                ] {
                    t.map_err(store_db_err)?;
                }
                w.open_table(ALLOC).map_err(store_db_err)?;
                w.open_table(DIRENTS).map_err(store_db_err)?;
                w.open_table(SLOTS).map_err(store_db_err)?;
                w.open_table(FREE).map_err(store_db_err)?;
            }
            w.commit().map_err(store_db_err)?;
            clean
        };
        let mut catalog = BTreeMap::new();
        {
            let r = db.begin_read().map_err(store_db_err)?;
            let t = r.open_table(CATALOG).map_err(store_db_err)?;
            for row in t.iter().map_err(store_db_err)? {
                let (k, v) = row.map_err(store_db_err)?;
                let info: FsInfo = serde_json::from_slice(v.value()).map_err(|e| {
                    StoreError::Corrupt(format!("catalog entry {:016x}: {e}", k.value()))
                })?;
                catalog.insert(info.id, info);
            }
        }
        let (journal, replay) = Journal::open(&root, durable_lsn)?;
        let mut store = Store {
            journal,
            fds: FdCache::new(root.clone()),
            root,
            db,
            catalog: RwLock::new(catalog),
            txn: Mutex::new(TxnState::default()),
            cache: Mutex::new(AttrCache::default()),
            unsynced: Mutex::new(HashMap::new()),
            group: Mutex::new(Group::default()),
            group_cv: Condvar::new(),
            sync_stripes: std::array::from_fn(|_| Mutex::new(())),
            size_locks: std::array::from_fn(|_| std::sync::RwLock::new(())),
            dirs_to_sync: Mutex::new(HashSet::new()),
            dirs_syncing: Mutex::new(()),
            fatal: OnceLock::new(),
            recovery: None,
        };
        if let Err(e) = store.finish_open(clean, replay) {
            // Not clean: the next open must replay and recover again (see `Drop`).
            store.stop(&FsError::Io(format!("open failed: {e}")));
            return Err(e);
        }
        // A removal moves data into `trash/`: without it, data of a freed inode would stay
        // at its path and show up in the next file given that number.
        for f in store.list_fs() {
            let t = data::trash_dir(&store.root, f.id);
            std::fs::create_dir_all(&t).map_err(|source| StoreError::Io {
                context: format!("creating {}", t.display()),
                source,
            })?;
        }
        Ok(store)
    }

    /// The end of `open`: the journal replayed (the changes answered before a crash come
    /// back, see `journal`), then, after a crash, recovery.
    fn finish_open(
        &mut self,
        clean: bool,
        replay: crate::journal::Replay,
    ) -> Result<(), StoreError> {
        let (replayed, refused) = self.replay(replay)?;
        if replayed > 0 {
            // Durable before the journal may go: the replayed metadata, and the data of the
            // replayed writes (a crash loses nothing twice).
            self.sync().map_err(from_fs_err)?;
        }
        self.journal.finish_replay().map_err(from_fs_err)?;
        if !clean || replayed > 0 {
            let mut report = crate::recovery::recover(self)?;
            report.journal_replayed = replayed;
            report.journal_refused = refused;
            // Recovery moved and deleted data files: no descriptor may outlive that.
            for f in self.list_fs() {
                self.fds.forget_fs(f.id);
            }
            self.recovery = Some(report);
        }
        Ok(())
    }

    /// What recovery did when this store was opened after a crash; `None` after a clean close.
    #[must_use]
    pub fn last_recovery(&self) -> Option<&crate::RecoveryReport> {
        self.recovery.as_ref()
    }

    /// The directory this store lives in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.root
    }

    // ---- catalog ----

    /// Creates fs `name` with id `id`; its root directory is [`ROOT_INO`], `Gen(1)`, mode
    /// 0o755, uid 0, gid 0, times = `time`. Durable when it returns.
    pub fn create_fs(
        &self,
        name: &str,
        id: FsId,
        rules: ExportRules,
        time: Time,
    ) -> Result<FsInfo, StoreError> {
        check_fs_name(name)?;
        self.check_fatal().map_err(from_fs_err)?;
        let _t = lock(&self.txn);
        {
            let cat = self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cat.values().any(|f| f.name == name) {
                return Err(StoreError::NameExists(name.to_string()));
            }
            if cat.contains_key(&id) {
                return Err(StoreError::IdExists(id));
            }
        }
        let info = FsInfo {
            id,
            name: name.to_string(),
            rules,
            created: time,
        };
        let fs_dir = data::fs_dir(&self.root, id);
        let io = |p: &Path| {
            let what = format!("creating {}", p.display());
            move |source| StoreError::Io {
                context: what,
                source,
            }
        };
        // A leftover of an fs that was deleted during a crash may still be there.
        match std::fs::remove_dir_all(&fs_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    context: format!("removing {}", fs_dir.display()),
                    source: e,
                })
            }
        }
        std::fs::create_dir_all(&fs_dir).map_err(io(&fs_dir))?;
        let trash = data::trash_dir(&self.root, id);
        std::fs::create_dir_all(&trash).map_err(io(&trash))?;
        // Durability order: the data directories must be durable before the catalog says the
        // fs exists, or a power loss could leave an fs whose first data file cannot be made.
        data::fsync_dir(&fs_dir).map_err(from_fs_err)?;
        data::fsync_dir(&self.root.join("data")).map_err(from_fs_err)?;
        let root = Inode {
            gen: Gen(1),
            mode: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            size: DIR_SIZE_BYTES,
            atime: time,
            mtime: time,
            ctime: time,
            kind: Kind::Dir {
                parent: ROOT_INO,
                next_slot: FIRST_SLOT,
            },
        };
        let w = self.db.begin_write().map_err(store_db_err)?;
        {
            let json = serde_json::to_vec(&info).map_err(store_db_err)?;
            w.open_table(CATALOG)
                .map_err(store_db_err)?
                .insert(id.0, json.as_slice())
                .map_err(store_db_err)?;
            w.open_table(ALLOC)
                .map_err(store_db_err)?
                .insert(id.0, (ROOT_INO.0 + 1, 1))
                .map_err(store_db_err)?;
            w.open_table(INODES)
                .map_err(store_db_err)?
                .insert((id.0, ROOT_INO.0), root.encode().as_slice())
                .map_err(store_db_err)?;
        }
        // Durability: a durable commit (the default), so the new fs survives any crash. Like
        // every durable commit, it covers the journal so far (see `seal`).
        let seal = self.seal(&w).map_err(from_fs_err)?;
        w.commit().map_err(store_db_err)?;
        lock(&self.cache).settle();
        self.journal.release(&seal).map_err(from_fs_err)?;
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, info.clone());
        Ok(info)
    }

    /// Removes the fs, all its inodes and its data files. Durable when it returns.
    pub fn delete_fs(&self, id: FsId) -> Result<(), StoreError> {
        self.check_fatal().map_err(from_fs_err)?;
        let _t = lock(&self.txn);
        if self.fs_by_id(id).is_none() {
            return Err(StoreError::NotFound(id));
        }
        let w = self.db.begin_write().map_err(store_db_err)?;
        {
            let f = id.0;
            w.open_table(CATALOG)
                .map_err(store_db_err)?
                .remove(f)
                .map_err(store_db_err)?;
            w.open_table(ALLOC)
                .map_err(store_db_err)?
                .remove(f)
                .map_err(store_db_err)?;
            w.open_table(INODES)
                .map_err(store_db_err)?
                .retain_in((f, 0)..=(f, u64::MAX), |_, _| false)
                .map_err(store_db_err)?;
            w.open_table(FREE)
                .map_err(store_db_err)?
                .retain_in((f, 0)..=(f, u64::MAX), |_, _| false)
                .map_err(store_db_err)?;
            w.open_table(crate::apply::sync::ORPHANS)
                .map_err(store_db_err)?
                .retain_in((f, 0)..=(f, u64::MAX), |_, _| false)
                .map_err(store_db_err)?;
            w.open_table(SLOTS)
                .map_err(store_db_err)?
                .retain_in((f, 0, 0)..=(f, u64::MAX, u64::MAX), |_, _| false)
                .map_err(store_db_err)?;
            let mut d = w.open_table(DIRENTS).map_err(store_db_err)?;
            let lo: (u64, u64, &[u8]) = (f, 0, &[]);
            // Every key of fs `f` is below (f + 1, 0, []); fs ids are u64, so saturate.
            if f == u64::MAX {
                d.retain_in(lo.., |_, _| false).map_err(store_db_err)?;
            } else {
                let hi: (u64, u64, &[u8]) = (f + 1, 0, &[]);
                d.retain_in(lo..hi, |_, _| false).map_err(store_db_err)?;
            }
        }
        // Its cached inodes go before the seal writes dirty ones back into `w`.
        {
            let mut c = lock(&self.cache);
            c.map.retain(|(f, _), _| *f != id);
            c.dirty.retain(|(f, _)| *f != id);
        }
        // Durability order: the fs is gone from the metadata durably before its data files
        // go; a crash in between leaves a data directory that recovery removes.
        let seal = self.seal(&w).map_err(from_fs_err)?;
        w.commit().map_err(store_db_err)?;
        lock(&self.cache).settle();
        self.journal.release(&seal).map_err(from_fs_err)?;
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        lock(&self.unsynced).retain(|(f, _), _| *f != id);
        self.fds.forget_fs(id);
        let dir = data::fs_dir(&self.root, id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                context: format!("removing {}", dir.display()),
                source: e,
            }),
        }
    }

    /// Every file system, by id.
    pub fn list_fs(&self) -> Vec<FsInfo> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub fn fs_by_name(&self, name: &str) -> Option<FsInfo> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|f| f.name == name)
            .cloned()
    }

    pub fn fs_by_id(&self, id: FsId) -> Option<FsInfo> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Replaces the export rules of fs `id`. Durable when it returns.
    pub fn set_export(&self, id: FsId, rules: ExportRules) -> Result<FsInfo, StoreError> {
        self.check_fatal().map_err(from_fs_err)?;
        let _t = lock(&self.txn);
        let mut info = self.fs_by_id(id).ok_or(StoreError::NotFound(id))?;
        info.rules = rules;
        let w = self.db.begin_write().map_err(store_db_err)?;
        {
            let json = serde_json::to_vec(&info).map_err(store_db_err)?;
            w.open_table(CATALOG)
                .map_err(store_db_err)?
                .insert(id.0, json.as_slice())
                .map_err(store_db_err)?;
        }
        let seal = self.seal(&w).map_err(from_fs_err)?;
        w.commit().map_err(store_db_err)?;
        lock(&self.cache).settle();
        self.journal.release(&seal).map_err(from_fs_err)?;
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, info.clone());
        Ok(info)
    }

    // ---- shared helpers ----

    pub(crate) fn check_fs(&self, fs: FsId) -> Result<(), FsError> {
        if self
            .catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&fs)
        {
            Ok(())
        } else {
            Err(FsError::NoFs)
        }
    }

    pub(crate) fn check_fatal(&self) -> Result<(), FsError> {
        match self.fatal.get() {
            Some(m) => Err(FsError::Io(format!(
                "the store stopped after an earlier failure: {m}"
            ))),
            None => Ok(()),
        }
    }

    /// Records a local I/O failure: the store accepts no change after it.
    pub(crate) fn stop(&self, e: &FsError) {
        if let FsError::Io(m) = e {
            let _ = self.fatal.set(m.clone());
        }
    }

    /// Whether a local I/O failure stopped the store (every change then answers `Io`).
    #[must_use]
    pub fn failed(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// The newest record of an inode: the cache, else redb's committed one.
    pub(crate) fn record(&self, fs: FsId, ino: Ino) -> Result<Option<Inode>, FsError> {
        if let Some(e) = lock(&self.cache).map.get(&(fs, ino)) {
            return Ok(e.inode.clone());
        }
        self.committed_inode(fs, ino)
    }

    pub(crate) fn committed_inode(&self, fs: FsId, ino: Ino) -> Result<Option<Inode>, FsError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(INODES).map_err(db_err)?;
        match t.get((fs.0, ino.0)).map_err(db_err)? {
            Some(v) => Ok(Some(
                Inode::decode(v.value()).map_err(|e| corrupt(format!("inode {fs}/{ino}: {e}")))?,
            )),
            None => Ok(None),
        }
    }

    /// Bytes the local file system allocated for an inode.
    pub(crate) fn used(&self, fs: FsId, ino: Ino, inode: &Inode) -> Result<u64, FsError> {
        match &inode.kind {
            Kind::Dir { .. } => Ok(DIR_SIZE_BYTES),
            Kind::Symlink { target } => Ok(target.len() as u64),
            Kind::File { .. } => {
                if let Some(f) = self.fds.cached(fs, ino) {
                    return f
                        .file
                        .metadata()
                        .map(|m| data::allocated(&m))
                        .map_err(|e| data::io_err("stat of data file", &f.path, &e));
                }
                let p = data::data_path(&self.root, fs, ino);
                match std::fs::metadata(&p) {
                    Ok(m) => Ok(data::allocated(&m)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                    Err(e) => Err(data::io_err("stat of data file", &p, &e)),
                }
            }
        }
    }

    /// Length of an inode's data file (0 when it has none).
    pub(crate) fn data_len(&self, fs: FsId, ino: Ino) -> Result<u64, FsError> {
        if let Some(f) = self.fds.cached(fs, ino) {
            return f
                .file
                .metadata()
                .map(|m| m.len())
                .map_err(|e| data::io_err("stat of data file", &f.path, &e));
        }
        let p = data::data_path(&self.root, fs, ino);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(data::io_err("stat of data file", &p, &e)),
        }
    }

    pub(crate) fn attr_of(&self, fs: FsId, ino: Ino, inode: &Inode) -> Result<Attr, FsError> {
        Ok(inode.attr(ino, self.used(fs, ino, inode)?))
    }

    // ---- reads (local, never replicated, never change anything: no atime) ----

    /// The attributes of `ino`; `Stale` when it does not exist (or was freed).
    pub fn getattr(&self, fs: FsId, ino: Ino) -> Result<Attr, FsError> {
        self.check_fs(fs)?;
        let inode = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        self.attr_of(fs, ino, &inode)
    }

    /// The object named `name` in `dir`. "." is `dir`, ".." its parent (the root's is itself).
    pub fn lookup(&self, fs: FsId, dir: Ino, name: &[u8]) -> Result<Attr, FsError> {
        self.check_fs(fs)?;
        let d = self.record(fs, dir)?.ok_or(FsError::Stale)?;
        let Kind::Dir { parent, .. } = d.kind else {
            return Err(FsError::NotDir);
        };
        let target = match name {
            b"." => dir,
            b".." => parent,
            _ => {
                crate::apply::check_name(name, crate::apply::NameUse::Lookup)?;
                let r = self.db.begin_read().map_err(db_err)?;
                let t = r.open_table(DIRENTS).map_err(db_err)?;
                let Some(v) = t.get((fs.0, dir.0, name)).map_err(db_err)? else {
                    return Err(FsError::NoEnt);
                };
                Ino(v.value().1)
            }
        };
        // Gone meanwhile (a remove raced this look-up): as if it had not been found.
        let inode = self.record(fs, target)?.ok_or(FsError::NoEnt)?;
        self.attr_of(fs, target, &inode)
    }

    /// Up to `count` bytes at `offset` (at most [`READ_MAX_BYTES`]); holes read as zeros.
    pub fn read(&self, fs: FsId, ino: Ino, offset: u64, count: u32) -> Result<ReadReply, FsError> {
        self.check_fs(fs)?;
        let inode = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        match inode.kind {
            Kind::File { .. } => {}
            Kind::Dir { .. } => return Err(FsError::IsDir),
            Kind::Symlink { .. } => return Err(FsError::Inval),
        }
        let size = inode.size;
        let n = if offset >= size {
            0
        } else {
            (size - offset).min(u64::from(count.min(READ_MAX_BYTES)))
        };
        let mut buf = Vec::new();
        if n > 0 {
            if let Some((f, _)) = self.fds.get(fs, ino, false)? {
                buf = data::read_vec(&f.file, &f.path, offset, n as usize)?;
            }
        }
        buf.resize(n as usize, 0);
        let attr = self.attr_of(fs, ino, &inode)?;
        Ok(ReadReply {
            eof: offset.saturating_add(n) >= size,
            data: buf.into(),
            attr,
        })
    }

    /// A symlink's target.
    pub fn readlink(&self, fs: FsId, ino: Ino) -> Result<(Vec<u8>, Attr), FsError> {
        self.check_fs(fs)?;
        let inode = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        let Kind::Symlink { target } = &inode.kind else {
            return Err(FsError::Inval);
        };
        Ok((target.clone(), self.attr_of(fs, ino, &inode)?))
    }

    /// Entries of `dir` after `cookie` (0: from the start), in the order they were made, at most
    /// `max_entries`. An entry's cookie is its slot, given when it was made, so it stays valid
    /// while others come and go. Cookies 1 and 2 are the front end's ("." and "..").
    pub fn readdir(
        &self,
        fs: FsId,
        dir: Ino,
        cookie: u64,
        max_entries: usize,
        plus: bool,
    ) -> Result<ReadDirPage, FsError> {
        self.check_fs(fs)?;
        let d = self.record(fs, dir)?.ok_or(FsError::Stale)?;
        let Kind::Dir { next_slot, .. } = d.kind else {
            return Err(FsError::NotDir);
        };
        if cookie >= FIRST_SLOT && cookie >= next_slot {
            return Err(FsError::BadCookie);
        }
        let mut raw = Vec::new();
        let mut eof = true;
        {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(SLOTS).map_err(db_err)?;
            let from = cookie.max(FIRST_SLOT - 1) + 1;
            for row in t
                .range((fs.0, dir.0, from)..=(fs.0, dir.0, u64::MAX))
                .map_err(db_err)?
            {
                let (k, v) = row.map_err(db_err)?;
                if raw.len() == max_entries {
                    eof = false;
                    break;
                }
                let (ino, name) = v.value();
                raw.push((k.value().2, Ino(ino), name.to_vec()));
            }
        }
        let mut entries = Vec::with_capacity(raw.len());
        for (slot, ino, name) in raw {
            let attr = if plus {
                match self.record(fs, ino)? {
                    Some(i) => Some(self.attr_of(fs, ino, &i)?),
                    None => None,
                }
            } else {
                None
            };
            entries.push(DirEntry {
                cookie: slot,
                name,
                ino,
                attr,
            });
        }
        Ok(ReadDirPage {
            dir: self.attr_of(fs, dir, &d)?,
            entries,
            eof,
        })
    }

    /// Space from the file system holding the data directory; files from the store.
    pub fn fsstat(&self, fs: FsId) -> Result<FsStat, FsError> {
        self.check_fs(fs)?;
        let data_dir = self.root.join("data");
        let v = rustix::fs::statvfs(&data_dir)
            .map_err(|e| FsError::Io(format!("statvfs of {}: {e}", data_dir.display())))?;
        let files = {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(ALLOC).map_err(db_err)?;
            t.get(fs.0).map_err(db_err)?.map_or(0, |v| v.value().1)
        };
        let frsize = v.f_frsize;
        Ok(FsStat {
            total_bytes: v.f_blocks.saturating_mul(frsize),
            free_bytes: v.f_bfree.saturating_mul(frsize),
            avail_bytes: v.f_bavail.saturating_mul(frsize),
            // Each file may need a data file: the local file system's free inodes bound them.
            total_files: files.saturating_add(v.f_ffree),
            free_files: v.f_ffree,
            avail_files: v.f_favail,
        })
    }

    /// The inode a creating op should use next in `fs`: the lowest freed number (its last
    /// generation + 1) or the next never-used one (generation 1). Reads only; `apply` of the
    /// creating op consumes it. The caller serialises creating ops per fs.
    pub fn next_inode(&self, fs: FsId) -> Result<NewInode, FsError> {
        let mut next = self.upcoming(fs, 1)?;
        next.pop()
            .ok_or_else(|| corrupt(format!("fs {fs} has no inode to give")))
    }

    /// The inode numbers the next `n` creations in `fs` will get if nothing is freed
    /// meanwhile (see [`Store::next_inode`]). A forecast: the metro LOG makes their keys
    /// resident ahead.
    pub fn upcoming_inodes(&self, fs: FsId, n: usize) -> Result<Vec<Ino>, FsError> {
        Ok(self.upcoming(fs, n)?.into_iter().map(|n| n.ino).collect())
    }

    /// What the next `n` creations in `fs` get if nothing is freed meanwhile: the lowest freed
    /// numbers (each at its last generation + 1), then the allocator's next never-used ones
    /// (generation 1).
    fn upcoming(&self, fs: FsId, n: usize) -> Result<Vec<NewInode>, FsError> {
        self.check_fs(fs)?;
        let r = self.db.begin_read().map_err(db_err)?;
        let free = r.open_table(FREE).map_err(db_err)?;
        let mut out = Vec::with_capacity(n);
        for row in free.range((fs.0, 0)..=(fs.0, u64::MAX)).map_err(db_err)?.take(n) {
            let (k, v) = row.map_err(db_err)?;
            out.push(NewInode {
                ino: Ino(k.value().1),
                gen: Gen(v.value() + 1),
            });
        }
        if out.len() < n {
            let alloc = r.open_table(ALLOC).map_err(db_err)?;
            let next = alloc
                .get(fs.0)
                .map_err(db_err)?
                .ok_or_else(|| corrupt(format!("fs {fs} has no allocator row")))?
                .value()
                .0;
            out.extend((next..).take(n - out.len()).map(|ino| NewInode {
                ino: Ino(ino),
                gen: Gen(1),
            }));
        }
        Ok(out)
    }

    // ---- durability ----

    /// Makes everything applied so far durable: data files fsync'd, then metadata committed
    /// durably (which also lets the journal records it covers go). Not needed for a process
    /// crash (`apply` returning means journaled); this is what a power loss needs.
    pub fn sync(&self) -> Result<(), FsError> {
        self.check_fatal()?;
        let r = self.sync_inner();
        if let Err(e) = &r {
            self.stop(e);
        }
        r
    }

    fn sync_inner(&self) -> Result<(), FsError> {
        let keys: Vec<(FsId, Ino)> = lock(&self.unsynced).keys().copied().collect();
        for (fs, ino) in keys {
            self.sync_file(fs, ino)?;
        }
        self.durable()
    }

    /// fsyncs (`fdatasync` with `data_only`) a file or directory, refusing once the store has
    /// failed: after a failed fsync the page cache may have dropped the data, so nothing may
    /// ever claim it durable (STYLE 9).
    fn fsync(&self, f: &std::fs::File, path: &Path, data_only: bool) -> Result<(), FsError> {
        self.check_fatal()?;
        let r = if data_only {
            f.sync_data()
        } else {
            f.sync_all()
        };
        r.map_err(|e| {
            let e = FsError::Io(format!("fsync of {}: {e}", path.display()));
            self.stop(&e);
            e
        })
    }

    /// Makes `ino`'s data durable: its data file now; if the file was created since the last
    /// sync, its bucket directory goes on the list the next durable commit or journal flush
    /// fsyncs first (so concurrent COMMITs of new files share one directory fsync, as they
    /// share the flush). The caller then calls [`Store::durable`] or [`Store::flush_journal`].
    pub(crate) fn sync_file(&self, fs: FsId, ino: Ino) -> Result<(), FsError> {
        // Held while the file is being synced: a second caller that finds no unsynced entry
        // must not answer before the first caller's fsync (which covers it) is done.
        let _stripe = lock(&self.sync_stripes[(ino.0 % SYNC_STRIPES as u64) as usize]);
        let Some(created) = lock(&self.unsynced).remove(&(fs, ino)) else {
            return Ok(());
        };
        if let Some((f, _)) = self.fds.get(fs, ino, false)? {
            // Durability order: this file's bytes reach the disk before the metadata that
            // makes them reachable (its size) is committed durably by the caller.
            // fdatasync: the data file's own times do not matter, its size and blocks do.
            self.fsync(&f.file, &f.path, true)?;
        }
        if created {
            lock(&self.dirs_to_sync).insert(data::bucket_dir(&self.root, fs, ino));
        }
        Ok(())
    }

    /// Makes every change applied before this call durable the cheap way: the bucket
    /// directories of data files made since are fsync'd, then the op journal's records (one
    /// fdatasync of a page or two, shared by concurrent callers). A power loss then finds them
    /// in the journal, which the open replays onto the last durable redb commit; that commit
    /// waits for the next [`Store::sync`] or bound. What COMMIT and stable writes need: a
    /// durable redb commit writes every page the metadata changed in since the last one (about
    /// 20 pages of 4 KiB for a few small files) and was most of a twin's CPU per small file.
    /// The caller has made the data it vouches for durable.
    pub(crate) fn flush_journal(&self) -> Result<(), FsError> {
        if self.journal.replaying() {
            // Nothing is journaled while replaying: only a durable commit covers a change.
            return self.durable();
        }
        self.check_fatal()?;
        // Durability order: a data file's directory entry before the record naming its size.
        self.sync_new_dirs()?;
        self.journal.flush().inspect_err(|e| self.stop(e))
    }

    /// fsyncs the bucket directories [`Store::sync_file`] listed. Returns once every one listed
    /// before the call is durable (a directory another caller took is being fsync'd under
    /// `dirs_syncing`, which this call waits for).
    pub(crate) fn sync_new_dirs(&self) -> Result<(), FsError> {
        let _one = lock(&self.dirs_syncing);
        let dirs: Vec<PathBuf> = lock(&self.dirs_to_sync).drain().collect();
        for d in &dirs {
            // Taken off the list: a directory that cannot be opened is never fsync'd, so the
            // files in it can never be called durable (fatal, as a failed fsync is).
            let f = std::fs::File::open(d)
                .map_err(|e| data::io_err("opening", d, &e))
                .inspect_err(|e| self.stop(e))?;
            self.fsync(&f, d, false)?;
        }
        Ok(())
    }

    /// Commits all metadata applied before this call durably (group commit: concurrent callers
    /// share one durable redb commit). The caller has made the data it vouches for durable.
    pub(crate) fn durable(&self) -> Result<(), FsError> {
        let mut g = lock(&self.group);
        // The first durable commit to start after this moment covers this caller.
        let target = g.started + 1;
        loop {
            self.check_fatal()?;
            if g.done >= target {
                return Ok(());
            }
            if !g.running {
                g.running = true;
                g.started += 1;
                let mine = g.started;
                drop(g);
                let r = self.commit_durable();
                if let Err(e) = &r {
                    self.stop(e);
                }
                g = lock(&self.group);
                g.running = false;
                if r.is_ok() {
                    // One durable commit at a time, so they finish in the order they started.
                    assert!(
                        mine > g.done,
                        "durable commit {mine} finished after {}",
                        g.done
                    );
                    g.done = mine;
                }
                self.group_cv.notify_all();
                r?;
                continue;
            }
            g = self
                .group_cv
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// One durable redb commit: written-back attributes of written files, every non-durable
    /// commit before it. Then the trash it made removable goes.
    fn commit_durable(&self) -> Result<(), FsError> {
        // Durability order: the callers fsync'd the data they vouch for before calling, and
        // listed the bucket directories of data files they created; those entries become
        // durable here, before the metadata naming the files does (and before taking the
        // transaction lock, so namespace ops wait only for redb's own fsync).
        self.sync_new_dirs()?;
        let mut ts = lock(&self.txn);
        let w = self.db.begin_write().map_err(db_err)?;
        let seal = self.seal(&w)?;
        let trash = std::mem::take(&mut ts.trash);
        // Then one fsync (redb's commit, Durability::Immediate being the default) makes the
        // metadata durable. Only after it may the trash of durable removals go, and the
        // journal records it covers.
        self.check_fatal()?;
        w.commit().map_err(db_err)?;
        ts.nondurable_commits = 0;
        lock(&self.cache).settle();
        self.journal.release(&seal)?;
        drop(ts);
        for p in trash {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::Io(format!("removing {}: {e}", p.display()))),
            }
        }
        Ok(())
    }

    /// Prepares durable commit `w` (the caller holds the transaction lock): every dirty
    /// attribute written back into it, and the journal sealed at the last record appended so
    /// far, whose LSN `w` records. Under the cache lock, so no WRITE's attributes and record
    /// fall between the two. After `w` is durable the caller calls `Journal::release`, and
    /// `AttrCache::settle`.
    pub(crate) fn seal(&self, w: &redb::WriteTransaction) -> Result<Seal, FsError> {
        let seal = {
            let mut t = w.open_table(INODES).map_err(db_err)?;
            let mut c = lock(&self.cache);
            flush_dirty(&mut c, &mut t)?;
            self.journal.seal()
        };
        w.open_table(META)
            .map_err(db_err)?
            .insert(JOURNAL_LSN, seal.lsn)
            .map_err(db_err)?;
        Ok(seal)
    }

    /// A durable commit when the journal has grown past `JOURNAL_BYTES_MAX` (it bounds the
    /// replay at open). Called after a change, with no lock held.
    pub(crate) fn bound_journal(&self) -> Result<(), FsError> {
        if self.journal.bytes() > JOURNAL_BYTES_MAX {
            self.durable()?;
        }
        Ok(())
    }

    /// Writes back dirty attributes when too many wait (non-durably: it only bounds memory).
    pub(crate) fn flush_if_many_dirty(&self) -> Result<(), FsError> {
        if lock(&self.cache).dirty.len() < DIRTY_INODES_MAX {
            return Ok(());
        }
        let _ts = lock(&self.txn);
        let mut w = self.db.begin_write().map_err(db_err)?;
        w.set_durability(Durability::None).map_err(db_err)?;
        {
            let mut t = w.open_table(INODES).map_err(db_err)?;
            let mut c = lock(&self.cache);
            flush_dirty(&mut c, &mut t)?;
        }
        w.commit().map_err(db_err)?;
        lock(&self.cache).settle();
        Ok(())
    }

    /// Runs a metadata change as one redb transaction: `f` reads and stages through a
    /// [`crate::apply::Ctx`]; on success the staged inodes go into the transaction and the cache,
    /// the transaction commits (non-durably unless `f` asked for durability or too many
    /// non-durable commits ran in a row), and the data-file actions `f` asked for run, in order,
    /// still under the transaction lock. On error nothing changes.
    pub(crate) fn txn<R>(
        &self,
        fs: FsId,
        time: Time,
        rec: &[u8],
        f: impl FnOnce(&mut crate::apply::Ctx<'_>) -> Result<R, FsError>,
    ) -> Result<R, FsError> {
        let mut ts = lock(&self.txn);
        let mut w = self.db.begin_write().map_err(db_err)?;
        let (r, post, need_durable) = {
            let mut cache = lock(&self.cache);
            let mut ctx = crate::apply::Ctx::new(self, fs, time, &w, &mut cache)?;
            match f(&mut ctx) {
                Ok(r) => {
                    // Checked and staged: journaled now, in the order changes reach the
                    // cache (this lock), before anything of it is visible.
                    match self.journal.append(rec) {
                        Ok(()) => {
                            ctx.write_back()?;
                            let (post, need_durable) = ctx.finish();
                            (Ok(r), post, need_durable)
                        }
                        Err(e) => (Err(e), Vec::new(), false),
                    }
                }
                Err(e) => (Err(e), Vec::new(), false),
            }
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                w.abort().map_err(db_err)?;
                return Err(e);
            }
        };
        let durable = need_durable || ts.nondurable_commits >= NONDURABLE_COMMITS_MAX;
        let (taken_trash, seal) = if durable {
            // A durable commit: also write back dirty attributes (their data may be behind,
            // which only an UNSTABLE write allows), seal the journal, and let the earlier
            // trash go after it.
            let seal = self.seal(&w)?;
            (std::mem::take(&mut ts.trash), Some(seal))
        } else {
            w.set_durability(Durability::None).map_err(db_err)?;
            (Vec::new(), None)
        };
        // Durability order: with `need_durable`, this fsync (redb's durable commit) must come
        // before the data-file actions below that cut data (a shrink), so a crash between them
        // finds the new size already durable and recovery cuts the rest.
        if durable {
            self.check_fatal()?;
        }
        w.commit().map_err(db_err)?;
        if durable {
            ts.nondurable_commits = 0;
        } else {
            ts.nondurable_commits += 1;
        }
        lock(&self.cache).settle();
        if let Some(seal) = &seal {
            self.journal.release(seal)?;
        }
        for p in taken_trash {
            let _ = std::fs::remove_file(&p);
        }
        // Replaying the journal at open: the data files are recovery's business afterwards
        // (they may already be where a later change of the previous run put them).
        let post = if self.journal.replaying() {
            Vec::new()
        } else {
            post
        };
        for action in post {
            match action {
                crate::apply::Post::Trash { ino, gen } => {
                    // Under the cache lock, like a WRITE's check-and-open (see `write`).
                    let _c = lock(&self.cache);
                    self.fds.forget(fs, ino);
                    lock(&self.unsynced).remove(&(fs, ino));
                    let from = data::data_path(&self.root, fs, ino);
                    let to = data::trash_path(&self.root, fs, ino, gen);
                    match std::fs::rename(&from, &to) {
                        Ok(()) => ts.trash.push(to),
                        // No data file (never written): nothing to keep. A missing trash
                        // directory is not that, and stops the store below.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {}
                        Err(e) => {
                            return Err(FsError::Io(format!(
                                "moving {} to the trash: {e}",
                                from.display()
                            )))
                        }
                    }
                }
                crate::apply::Post::Shrink { ino, size } => {
                    assert!(
                        durable,
                        "a shrink runs only after a durable commit of the new size"
                    );
                    if let Some((f, _)) = self.fds.get(fs, ino, false)? {
                        f.file
                            .set_len(size)
                            .map_err(|e| data::io_err("truncating", &f.path, &e))?;
                    }
                }
            }
        }
        Ok(r)
    }
}

/// Writes every dirty inode into `t` and marks it pending (settled after the commit).
pub(crate) fn flush_dirty(
    c: &mut AttrCache,
    t: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
) -> Result<(), FsError> {
    let dirty: Vec<(FsId, Ino)> = c.dirty.drain().collect();
    for k in dirty {
        let Some(e) = c.map.get_mut(&k) else { continue };
        if let Some(i) = &e.inode {
            t.insert((k.0 .0, k.1 .0), i.encode().as_slice())
                .map_err(db_err)?;
        }
        e.state = CacheState::Pending;
        c.pending.push(k);
    }
    Ok(())
}

impl Drop for Store {
    /// A clean close: everything synced and a flag that spares the next open the recovery scan.
    fn drop(&mut self) {
        if self.fatal.get().is_some() || self.sync().is_err() {
            return;
        }
        let Ok(w) = self.db.begin_write() else { return };
        let Ok(seal) = self.seal(&w) else { return };
        let ok = match w.open_table(META) {
            Ok(mut t) => t.insert("clean", 1).is_ok(),
            Err(_) => false,
        };
        if ok && w.commit().is_ok() {
            let _ = self.journal.release(&seal);
        }
    }
}
