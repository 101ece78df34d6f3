//! One array: its file systems served through the [`Backend`] seam.
//!
//! A change from the front end is turned into an [`FsOp`] here, never below: the inode a
//! creating op gets (`Store::next_inode`), and the op's time (a clock that never goes backwards
//! within this array, so every change moves ctime forward and SETATTR's ctime guard sees it).
//! The store then applies the op as given; the pair issue sends the same op to the twin.
//!
//! Ordering: namespace ops of one fs (create, mkdir, symlink, remove, rmdir, rename, link) are
//! serialised by a per-fs lock ([`NamespaceLock::order`]) held from "determined" to "applied",
//! which also makes the `next_inode` peek and the apply that consumes it atomic. Data and
//! attribute ops run in parallel; the store orders them per inode. A paired fs holds the
//! order lock only until the local apply and the op's place in the twin's order are fixed;
//! [`NamespaceLock::in_flight`] then tells who needs both sides at rest when that is.
//!
//! Retransmissions: a change that carries a [`ReplyKey`] (the front end names non-idempotent
//! NFS requests so) has its result recorded in the array's [`ReplyBook`] when it is applied
//! ([`Array::apply_keyed`]), whether it came from a host here or as the replicated op of the
//! twin; [`Backend::replayed`] answers from that book (see [`crate::replies`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrofs_core::{
    Attr, Backend, Caller, Clock, ExportInfo, ExportRules, FsError, FsId, FsOp, FsStat, Ino, OpBody,
    OpReply, ReadDirPage, ReadReply, ReplyKey, Stability, Time,
};
use metrofs_store::{FsInfo, Store};

use crate::replies::ReplyBook;
use crate::ArrayError;

/// The namespace lock of one fs (see the module doc).
#[derive(Debug, Default)]
pub struct NamespaceLock {
    /// Held from `determine` to the local apply of a namespace op (paired: and until the op
    /// has its place in the twin's order, see `Metro::dual_change`).
    pub order: tokio::sync::Mutex<()>,
    /// Held shared by a paired fs's ordered op until both sides answered. Who needs the
    /// namespace at rest on both sides (resync's directory phase, verify of a directory) takes
    /// `order`, then this exclusively ([`NamespaceLock::quiet`]).
    pub in_flight: tokio::sync::RwLock<()>,
}

impl NamespaceLock {
    /// Waits until no namespace change is being made or is on its way to the twin, and keeps
    /// it so while the guards live.
    pub async fn quiet(&self) -> (tokio::sync::MutexGuard<'_, ()>, tokio::sync::RwLockWriteGuard<'_, ()>) {
        let order = self.order.lock().await;
        let in_flight = self.in_flight.write().await;
        (order, in_flight)
    }
}

pub struct Array {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// The write verifier of this run: random at every start, so clients resend what they
    /// wrote UNSTABLE and did not COMMIT before a restart.
    verifier: [u8; 8],
    /// Last time handed to an op, in ns: times only move forward.
    last_time_ns: AtomicU64,
    /// Per-fs namespace lock (see module doc).
    namespace: Mutex<HashMap<FsId, Arc<NamespaceLock>>>,
    /// Results of keyed changes applied here, for retransmissions (module doc).
    replies: ReplyBook,
    /// Export rule changes of paired file systems, one at a time ([`Array::export_order`]).
    export_order: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array").field("verifier", &self.verifier).finish_non_exhaustive()
    }
}

fn export_of(info: FsInfo) -> ExportInfo {
    ExportInfo { fs: info.id, name: info.name, rules: info.rules }
}

impl Array {
    #[must_use]
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            verifier: rand::random(),
            last_time_ns: AtomicU64::new(0),
            namespace: Mutex::new(HashMap::new()),
            replies: ReplyBook::default(),
            export_order: tokio::sync::Mutex::new(()),
        })
    }

    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The results of keyed changes applied on this array (see [`crate::replies`]).
    #[must_use]
    pub fn replies(&self) -> &ReplyBook {
        &self.replies
    }

    /// Creates a file system with a fresh random id, exported as `/NAME` under `rules`.
    pub fn create_fs(&self, name: &str, rules: ExportRules) -> Result<FsInfo, ArrayError> {
        // A zero id would look like "no fs" in dumps; anything else is fine.
        let id = loop {
            let id = FsId(rand::random());
            if id.0 != 0 && self.store.fs_by_id(id).is_none() {
                break id;
            }
        };
        let info = self.store.create_fs(name, id, rules, self.now())?;
        tracing::info!(fs = %info.name, id = %info.id, "file system created");
        Ok(info)
    }

    pub fn delete_fs(&self, name: &str) -> Result<(), ArrayError> {
        let info = self.fs(name).ok_or_else(|| ArrayError::NotFound(name.to_owned()))?;
        self.store.delete_fs(info.id)?;
        self.lock_map().remove(&info.id);
        self.replies.forget_fs(info.id);
        tracing::info!(fs = %name, id = %info.id, "file system deleted");
        Ok(())
    }

    #[must_use]
    pub fn list_fs(&self) -> Vec<FsInfo> {
        self.store.list_fs()
    }

    #[must_use]
    pub fn fs(&self, name: &str) -> Option<FsInfo> {
        self.store.fs_by_name(name)
    }

    pub fn set_export(&self, name: &str, rules: ExportRules) -> Result<FsInfo, ArrayError> {
        let info = self.fs(name).ok_or_else(|| ArrayError::NotFound(name.to_owned()))?;
        self.set_export_of(info.id, rules).map(|(info, _)| info)
    }

    /// [`Array::set_export`] by id, and whether the rules changed: the same rules again write
    /// nothing (the serving side of a pair sends its rules to the twin at every new link).
    pub fn set_export_of(&self, fs: FsId, rules: ExportRules) -> Result<(FsInfo, bool), ArrayError> {
        let info = self.store.fs_by_id(fs).ok_or_else(|| ArrayError::NotFound(format!("{:016x}", fs.0)))?;
        if info.rules == rules {
            return Ok((info, false));
        }
        let info = self.store.set_export(fs, rules)?;
        tracing::info!(fs = %info.name, rules = ?info.rules, "export rules changed");
        Ok((info, true))
    }

    /// Held by the serving side of a pair from its own change of export rules until its twin
    /// answered (`Metro::set_export`), and while it sends its rules to a twin that is back:
    /// two changes asked at once (one on each array) reach both arrays in the same order.
    #[must_use]
    pub fn export_order(&self) -> &tokio::sync::Mutex<()> {
        &self.export_order
    }

    /// Makes everything applied so far durable.
    pub fn sync(&self) -> Result<(), ArrayError> {
        self.store.sync()?;
        Ok(())
    }

    /// Step 2 of the write I/O process, first half: makes a change fully determined (its
    /// inode, if it creates one, and its time). A creating body must be determined under the
    /// fs's namespace lock, held until the op is applied.
    pub fn determine(&self, fs: FsId, body: OpBody) -> Result<FsOp, FsError> {
        let new_inode = if body.creates() { Some(self.store.next_inode(fs)?) } else { None };
        Ok(FsOp { fs, time: self.now(), new_inode, body })
    }

    /// Whether a body changes the namespace (serialised per fs).
    #[must_use]
    pub fn is_namespace(body: &OpBody) -> bool {
        matches!(
            body,
            OpBody::Create { .. }
                | OpBody::Mkdir { .. }
                | OpBody::Symlink { .. }
                | OpBody::Remove { .. }
                | OpBody::Rmdir { .. }
                | OpBody::Rename { .. }
                | OpBody::Link { .. }
        )
    }

    /// Whether applying `body` waits for the disk (COMMIT, FILE_SYNC and DATA_SYNC writes);
    /// everything else reaches the page cache and redb's cache only.
    #[must_use]
    pub fn waits_for_disk(body: &OpBody) -> bool {
        matches!(body, OpBody::Commit { .. } | OpBody::Write { stable: Stability::FileSync | Stability::DataSync, .. })
    }

    /// The time for the next op: the clock, but never at or before the previous op's time.
    pub(crate) fn now(&self) -> Time {
        let wall = self.clock.now().as_nanos();
        let mut prev = self.last_time_ns.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self.last_time_ns.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Time::from_nanos(next),
                Err(p) => prev = p,
            }
        }
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<FsId, Arc<NamespaceLock>>> {
        // A poisoned map only means another thread panicked while inserting; the map itself
        // is still a valid map of locks.
        self.namespace.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The per-fs namespace lock (see module doc). Hold it from `determine` to the end of the
    /// apply(s) of a namespace op.
    pub fn namespace_lock(&self, fs: FsId) -> Arc<NamespaceLock> {
        self.lock_map().entry(fs).or_default().clone()
    }

    /// Applies an op on a blocking thread when it waits for the disk, inline otherwise (an
    /// UNSTABLE write or a namespace change only reaches the page cache and redb's cache).
    pub async fn apply(&self, op: FsOp) -> Result<OpReply, FsError> {
        self.apply_as(op, false).await
    }

    /// `twin`: applied as the twin of a pair ([`Store::apply_twin`]: a large aligned WRITE
    /// goes straight to the disk, so it too runs on a blocking thread).
    async fn apply_as(&self, op: FsOp, twin: bool) -> Result<OpReply, FsError> {
        let apply = move |store: &Store, op: &FsOp| if twin { store.apply_twin(op) } else { store.apply(op) };
        if (twin && Store::writes_direct(&op)) || Self::waits_for_disk(&op.body) {
            let store = self.store.clone();
            Self::blocking(move || apply(&store, &op)).await
        } else {
            apply(&self.store, &op)
        }
    }

    /// Runs an apply on a blocking thread.
    async fn blocking(f: impl FnOnce() -> Result<OpReply, FsError> + Send + 'static) -> Result<OpReply, FsError> {
        tokio::task::spawn_blocking(f).await.map_err(|e| FsError::Io(format!("apply task failed: {e}")))?
    }

    /// [`Array::apply`], then, when the change carries a reply key, records its result under
    /// that key in [`Array::replies`] (never a `Busy`), so a retransmission of the request
    /// that caused it is answered with this result ([`Backend::replayed`]). The serving side
    /// calls this for the local apply of a host's change, the twin for the replicated op
    /// (which carries the same key): each records its own result.
    pub async fn apply_keyed(&self, op: FsOp, key: Option<ReplyKey>) -> Result<OpReply, FsError> {
        self.apply_keyed_as(op, key, false).await
    }

    /// [`Array::apply_keyed`] on the twin of a pair, for a replicated op.
    pub async fn apply_replicated(&self, op: FsOp, key: Option<ReplyKey>) -> Result<OpReply, FsError> {
        self.apply_keyed_as(op, key, true).await
    }

    /// [`Array::apply_keyed`] of a COMMIT through [`Store::commit_after`]: `before_metadata`
    /// runs on the blocking thread after the file's data is on disk, before the metadata.
    pub async fn commit_keyed_after(
        &self,
        op: FsOp,
        key: Option<ReplyKey>,
        before_metadata: impl Fn() -> Result<(), FsError> + Send + 'static,
    ) -> Result<OpReply, FsError> {
        let fs = op.fs;
        let store = self.store.clone();
        let result = Self::blocking(move || store.commit_after(&op, &before_metadata)).await;
        self.keep_reply(fs, key, result)
    }

    async fn apply_keyed_as(&self, op: FsOp, key: Option<ReplyKey>, twin: bool) -> Result<OpReply, FsError> {
        let fs = op.fs;
        let result = self.apply_as(op, twin).await;
        self.keep_reply(fs, key, result)
    }

    /// Records `result` under `key` (see [`Array::apply_keyed`]) and returns it.
    fn keep_reply(&self, fs: FsId, key: Option<ReplyKey>, result: Result<OpReply, FsError>) -> Result<OpReply, FsError> {
        if let Some(key) = key {
            self.replies.record(fs, key, &result);
        }
        result
    }
}

impl Backend for Array {
    fn export_by_path(&self, path: &str) -> Option<ExportInfo> {
        let name = path.strip_prefix('/').unwrap_or(path).trim_end_matches('/');
        self.store.fs_by_name(name).map(export_of)
    }

    fn export_by_fs(&self, fs: FsId) -> Option<ExportInfo> {
        self.store.fs_by_id(fs).map(export_of)
    }

    fn exports(&self) -> Vec<ExportInfo> {
        self.store.list_fs().into_iter().map(export_of).collect()
    }

    fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }

    async fn getattr(&self, fs: FsId, ino: Ino) -> Result<Attr, FsError> {
        self.store.getattr(fs, ino)
    }

    async fn lookup(&self, fs: FsId, dir: Ino, name: &[u8]) -> Result<Attr, FsError> {
        self.store.lookup(fs, dir, name)
    }

    async fn read(&self, fs: FsId, ino: Ino, offset: u64, count: u32) -> Result<ReadReply, FsError> {
        self.store.read(fs, ino, offset, count)
    }

    async fn readlink(&self, fs: FsId, ino: Ino) -> Result<(Vec<u8>, Attr), FsError> {
        self.store.readlink(fs, ino)
    }

    async fn readdir(
        &self,
        fs: FsId,
        dir: Ino,
        cookie: u64,
        max_entries: usize,
        plus: bool,
    ) -> Result<ReadDirPage, FsError> {
        self.store.readdir(fs, dir, cookie, max_entries, plus)
    }

    async fn fsstat(&self, fs: FsId) -> Result<FsStat, FsError> {
        self.store.fsstat(fs)
    }

    /// Turns a change into an `FsOp` and applies it. For one array this is steps 1, 2
    /// ("fully determined") and 4–6 of the write I/O process on the local store only; the
    /// pair issue adds the LOG, the remote apply and the DCL around the apply.
    async fn change(&self, fs: FsId, body: OpBody, caller: &Caller) -> Result<OpReply, FsError> {
        if self.store.fs_by_id(fs).is_none() {
            return Err(FsError::Stale);
        }
        let namespace = Self::is_namespace(&body);
        let kind = body.kind();
        let result = if namespace {
            let lock = self.namespace_lock(fs);
            let _held = lock.order.lock().await;
            let op = self.determine(fs, body)?;
            self.apply_keyed(op, caller.reply_key).await
        } else {
            let op = self.determine(fs, body)?;
            self.apply_keyed(op, caller.reply_key).await
        };
        if let Err(e) = &result {
            tracing::debug!(%fs, op = kind, xid = caller.xid, client = %caller.addr, error = %e, "change refused");
        }
        result
    }

    fn replayed(&self, fs: FsId, key: &ReplyKey) -> Option<Result<OpReply, FsError>> {
        self.replies.get(fs, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::{CreateHow, SetAttr, SystemClock, ROOT_INO};

    fn array() -> (Arc<Array>, FsId, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let array = Array::new(Arc::new(store), Arc::new(SystemClock));
        let fs = array.create_fs("t", ExportRules::default()).expect("create fs").id;
        (array, fs, dir)
    }

    fn create(name: &str) -> OpBody {
        OpBody::Create {
            dir: ROOT_INO,
            name: name.as_bytes().to_vec(),
            how: CreateHow::Guarded(SetAttr::default()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn key(xid: u32) -> ReplyKey {
        ReplyKey::new([127, 0, 0, 1].into(), xid, 8, 0x5eed)
    }

    fn caller(xid: u32, reply_key: Option<ReplyKey>) -> Caller {
        Caller { addr: "127.0.0.1:900".parse().expect("addr"), uid: 0, gid: 0, gids: vec![], xid, reply_key }
    }

    /// The twin's side: a replicated op applied with its key is answerable afterwards, with
    /// exactly what the apply answered, while applying it again would answer EXIST.
    #[tokio::test]
    async fn apply_keyed_then_replayed_answers_the_same_result() {
        let (a, fs, _dir) = array();
        let op = {
            let lock = a.namespace_lock(fs);
            let _held = lock.order.lock().await;
            a.determine(fs, create("victim.txt")).expect("determine")
        };
        let applied = a.apply_keyed(op.clone(), Some(key(7))).await;
        let created = applied.clone().expect("created");
        assert_eq!(created.obj.as_ref().map(|o| o.ino), op.new_inode.map(|n| n.ino));
        assert_eq!(a.replayed(fs, &key(7)), Some(applied));
        assert_eq!(a.replayed(fs, &key(8)), None, "another xid is another request");
        assert_eq!(a.replayed(FsId(fs.0 ^ 1), &key(7)), None, "another fs");
        // Why the book matters: running it again answers EXIST.
        assert_eq!(a.apply(op).await, Err(FsError::Exist));
        // An unkeyed apply records nothing.
        let op = a.determine(fs, create("other")).expect("determine");
        a.apply_keyed(op, None).await.expect("created");
        assert_eq!(a.replies().len(), 1);
    }

    /// A host's change on an unpaired array: `change` records under the caller's key, a
    /// REMOVE's retransmission is answered success (not NOENT), errors are answers too.
    #[tokio::test]
    async fn change_records_keyed_results_including_errors() {
        let (a, fs, _dir) = array();
        let made = a.change(fs, create("f"), &caller(1, Some(key(1)))).await;
        assert!(made.is_ok());
        assert_eq!(a.replayed(fs, &key(1)), Some(made));
        let remove = OpBody::Remove { dir: ROOT_INO, name: b"f".to_vec() };
        let removed = a.change(fs, remove.clone(), &caller(2, Some(key(2)))).await;
        assert!(removed.is_ok());
        assert_eq!(a.replayed(fs, &key(2)), Some(removed));
        let again = a.change(fs, remove, &caller(3, Some(key(3)))).await;
        assert_eq!(again, Err(FsError::NoEnt));
        assert_eq!(a.replayed(fs, &key(3)), Some(Err(FsError::NoEnt)));
        // No key, nothing kept.
        a.change(fs, create("g"), &caller(4, None)).await.expect("created");
        assert_eq!(a.replies().len(), 3);
        assert_eq!(a.replayed(fs, &key(4)), None);
        // Deleting the fs forgets its entries.
        a.delete_fs("t").expect("delete");
        assert!(a.replies().is_empty());
    }
}
