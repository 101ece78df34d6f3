//! The DCL (data change log): the persistent record of what differs between the two sides of
//! a pair while they cannot both be written (DESIGN.md, "DCL").
//!
//! Contract:
//! - Per fs: dirty data chunks (inode, 64 KiB chunk), dirty attributes (inode), dirty
//!   directories (inode), and a `full` flag meaning "everything" (a new pair's initial sync).
//! - [`Dcl::mark`] returns only once the marks are durable (the write path answers the host
//!   after it: "DCL durable before the host is answered"). Concurrent marks are group-committed:
//!   one writer thread commits everything queued in one redb transaction.
//! - Every mark bumps the key's in-memory generation. The resync worker takes a
//!   [`Dcl::snapshot`], copies, and [`Dcl::clear`]s only the keys whose generation did not move
//!   meanwhile, so a change that lands during the copy is never lost.
//! - Clears need not be durable: a clear lost in a crash only makes the resync copy that key
//!   again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

use metrofs_core::{FsId, Ino};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// Granularity of dirty data.
pub const DCL_CHUNK_BYTES: u64 = 64 << 10;
/// Marks waiting for the writer before callers are made to wait for room.
const DCL_QUEUE_MAX: usize = 4096;

/// (fs, kind, ino, chunk) → ()
const DCL_TABLE: TableDefinition<(u64, u8, u64, u64), ()> = TableDefinition::new("dcl");
/// fs → () for file systems whose whole content is dirty.
const DCL_FULL_TABLE: TableDefinition<u64, ()> = TableDefinition::new("dcl_full");

/// One dirty thing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum DclKey {
    /// Directory `ino`'s entries (and which inodes they name).
    Dir(Ino),
    /// Inode `ino`'s attributes (and existence).
    Inode(Ino),
    /// Bytes `[idx * 64 KiB, (idx + 1) * 64 KiB)` of file `ino`.
    Chunk { ino: Ino, idx: u64 },
}

impl DclKey {
    fn to_row(fs: FsId, k: DclKey) -> (u64, u8, u64, u64) {
        match k {
            DclKey::Dir(i) => (fs.0, 0, i.0, 0),
            DclKey::Inode(i) => (fs.0, 1, i.0, 0),
            DclKey::Chunk { ino, idx } => (fs.0, 2, ino.0, idx),
        }
    }

    fn from_row(r: (u64, u8, u64, u64)) -> Option<(FsId, DclKey)> {
        let k = match r.1 {
            0 => DclKey::Dir(Ino(r.2)),
            1 => DclKey::Inode(Ino(r.2)),
            2 => DclKey::Chunk { ino: Ino(r.2), idx: r.3 },
            _ => return None,
        };
        Some((FsId(r.0), k))
    }

    /// The chunks covering `[offset, offset + len)` of `ino`.
    pub fn chunks(ino: Ino, offset: u64, len: u64) -> impl Iterator<Item = DclKey> {
        let first = offset / DCL_CHUNK_BYTES;
        let last = offset.saturating_add(len.max(1) - 1) / DCL_CHUNK_BYTES;
        (first..=last).map(move |idx| DclKey::Chunk { ino, idx })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DclError {
    #[error("DCL storage failed: {0}")]
    Storage(String),
    #[error("DCL writer stopped")]
    WriterGone,
}

fn storage<E: std::fmt::Display>(e: E) -> DclError {
    DclError::Storage(e.to_string())
}

#[derive(Debug, Default)]
struct FsDcl {
    /// Key → (generation, durable yet).
    keys: BTreeMap<DclKey, (u64, bool)>,
    full: bool,
    full_gen: u64,
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

enum Job {
    Mark(FsId, Vec<DclKey>, Done),
    Full(FsId, Done),
    /// Sent by `Drop`: finish what is queued, then let go of the database.
    Stop,
}

/// The DCL of every pair of one array.
pub struct Dcl {
    db: Arc<Database>,
    mem: Arc<Mutex<HashMap<FsId, FsDcl>>>,
    tx: mpsc::SyncSender<Job>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Dcl {
    fn drop(&mut self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(h) = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Dcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dcl").finish_non_exhaustive()
    }
}

/// What a resync worker copies: the keys with their generation at the time of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DclSnapshot {
    pub full: Option<u64>,
    pub keys: Vec<(DclKey, u64)>,
}

impl Dcl {
    /// Loads the DCL of `db` and starts its writer thread.
    pub fn open(db: Arc<Database>) -> Result<Arc<Self>, DclError> {
        let mut mem: HashMap<FsId, FsDcl> = HashMap::new();
        {
            let w = db.begin_write().map_err(storage)?;
            w.open_table(DCL_TABLE).map_err(storage)?;
            w.open_table(DCL_FULL_TABLE).map_err(storage)?;
            w.commit().map_err(storage)?;
        }
        let r = db.begin_read().map_err(storage)?;
        for row in r.open_table(DCL_TABLE).map_err(storage)?.iter().map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let (fs, key) = DclKey::from_row(k.value()).ok_or_else(|| DclError::Storage("corrupt DCL row (unknown kind)".into()))?;
            mem.entry(fs).or_default().keys.insert(key, (1, true));
        }
        for row in r.open_table(DCL_FULL_TABLE).map_err(storage)?.iter().map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let e = mem.entry(FsId(k.value())).or_default();
            e.full = true;
            e.full_gen = 1;
        }
        drop(r);
        let (tx, rx) = mpsc::sync_channel(DCL_QUEUE_MAX);
        let writer_db = db.clone();
        let mem = Arc::new(Mutex::new(mem));
        let writer_mem = mem.clone();
        let handle = std::thread::Builder::new()
            .name("metrofs-dcl".into())
            .spawn(move || writer(&writer_db, &writer_mem, &rx))
            .map_err(storage)?;
        Ok(Arc::new(Self { db, mem, tx, writer: Mutex::new(Some(handle)) }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FsId, FsDcl>> {
        lock(&self.mem)
    }

    /// Records `keys` as dirty; returns once they are durable.
    pub async fn mark(&self, fs: FsId, keys: Vec<DclKey>) -> Result<(), DclError> {
        let (new, pending) = {
            let mut m = self.lock();
            let e = m.entry(fs).or_default();
            let mut new = Vec::new();
            let mut pending = false;
            for k in keys {
                match e.keys.get_mut(&k) {
                    Some((g, durable)) => {
                        *g += 1;
                        pending |= !*durable;
                    }
                    None => {
                        e.keys.insert(k, (1, false));
                        new.push(k);
                    }
                }
            }
            (new, pending)
        };
        if new.is_empty() {
            // Every key is already in the DCL. If one is still on its way to the disk (a
            // concurrent first mark), wait for the writer to get past it.
            return if pending { self.barrier(fs).await } else { Ok(()) };
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Mark(fs, new, done))?;
        wait.await.map_err(|_| DclError::WriterGone)?.map_err(DclError::Storage)
    }

    /// Waits until everything queued before is durable.
    async fn barrier(&self, fs: FsId) -> Result<(), DclError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Mark(fs, Vec::new(), done))?;
        wait.await.map_err(|_| DclError::WriterGone)?.map_err(DclError::Storage)
    }

    fn send(&self, job: Job) -> Result<(), DclError> {
        self.tx.send(job).map_err(|_| DclError::WriterGone)
    }

    /// Marks the whole fs dirty (a new pair's initial sync); durable on return.
    pub async fn mark_full(&self, fs: FsId) -> Result<(), DclError> {
        {
            let mut m = self.lock();
            let e = m.entry(fs).or_default();
            e.full = true;
            e.full_gen += 1;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Job::Full(fs, done))?;
        wait.await.map_err(|_| DclError::WriterGone)?.map_err(DclError::Storage)
    }

    /// What is dirty now, with generations.
    #[must_use]
    pub fn snapshot(&self, fs: FsId) -> DclSnapshot {
        let m = self.lock();
        m.get(&fs).map_or_else(DclSnapshot::default, |e| DclSnapshot {
            full: e.full.then_some(e.full_gen),
            keys: e.keys.iter().map(|(k, (g, _))| (*k, *g)).collect(),
        })
    }

    /// Removes the keys of `done` whose generation is still the one copied.
    pub fn clear(&self, fs: FsId, done: &DclSnapshot) -> Result<(), DclError> {
        let (gone, full_gone) = {
            let mut m = self.lock();
            let Some(e) = m.get_mut(&fs) else { return Ok(()) };
            let mut gone = Vec::new();
            for (k, g) in &done.keys {
                if e.keys.get(k).map(|(g, _)| g) == Some(g) {
                    e.keys.remove(k);
                    gone.push(*k);
                }
            }
            let full_gone = done.full.is_some_and(|g| e.full && e.full_gen == g);
            if full_gone {
                e.full = false;
            }
            (gone, full_gone)
        };
        if gone.is_empty() && !full_gone {
            return Ok(());
        }
        let mut w = self.db.begin_write().map_err(storage)?;
        // Not durable: a lost clear only costs a second copy after a crash.
        w.set_durability(Durability::None).map_err(storage)?;
        {
            let mut t = w.open_table(DCL_TABLE).map_err(storage)?;
            for k in gone {
                t.remove(DclKey::to_row(fs, k)).map_err(storage)?;
            }
            if full_gone {
                w.open_table(DCL_FULL_TABLE).map_err(storage)?.remove(fs.0).map_err(storage)?;
            }
        }
        w.commit().map_err(storage)
    }

    /// Forgets everything about `fs` (the pair was deleted).
    pub fn drop_fs(&self, fs: FsId) -> Result<(), DclError> {
        let snap = self.snapshot(fs);
        self.clear(fs, &snap)?;
        self.lock().remove(&fs);
        Ok(())
    }

    /// (directories, inodes, chunks, full) dirty in `fs`.
    #[must_use]
    pub fn counts(&self, fs: FsId) -> (usize, usize, usize, bool) {
        let m = self.lock();
        let Some(e) = m.get(&fs) else { return (0, 0, 0, false) };
        let mut c = (0, 0, 0, e.full);
        for k in e.keys.keys() {
            match k {
                DclKey::Dir(_) => c.0 += 1,
                DclKey::Inode(_) => c.1 += 1,
                DclKey::Chunk { .. } => c.2 += 1,
            }
        }
        c
    }

    /// Bytes of data the DCL names (chunks × chunk size).
    #[must_use]
    pub fn data_bytes(&self, fs: FsId) -> u64 {
        self.counts(fs).2 as u64 * DCL_CHUNK_BYTES
    }

    #[must_use]
    pub fn is_empty(&self, fs: FsId) -> bool {
        let (d, i, c, full) = self.counts(fs);
        d + i + c == 0 && !full
    }
}

/// The group-commit loop: takes every queued job, writes them in one transaction, makes it
/// durable, then answers all of them.
fn lock(mem: &Mutex<HashMap<FsId, FsDcl>>) -> std::sync::MutexGuard<'_, HashMap<FsId, FsDcl>> {
    mem.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer(db: &Database, mem: &Mutex<HashMap<FsId, FsDcl>>, rx: &mpsc::Receiver<Job>) {
    let mut stop = false;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        if jobs.iter().any(|j| matches!(j, Job::Stop)) {
            stop = true;
            jobs.retain(|j| !matches!(j, Job::Stop));
        }
        let result = (|| -> Result<(), DclError> {
            let w = db.begin_write().map_err(storage)?;
            {
                let mut t = w.open_table(DCL_TABLE).map_err(storage)?;
                let mut full = w.open_table(DCL_FULL_TABLE).map_err(storage)?;
                for j in &jobs {
                    match j {
                        Job::Mark(fs, keys, _) => {
                            for k in keys {
                                t.insert(DclKey::to_row(*fs, *k), ()).map_err(storage)?;
                            }
                        }
                        Job::Full(fs, _) => {
                            full.insert(fs.0, ()).map_err(storage)?;
                        }
                        Job::Stop => {}
                    }
                }
            }
            // Durability order: these marks must be on disk before any host is answered for
            // the changes they describe; the callers wait for this commit (Immediate).
            w.commit().map_err(storage)
        })();
        let answer = result.map_err(|e| e.to_string());
        match &answer {
            Err(e) => tracing::error!(error = %e, "DCL commit failed; the changes it covers are answered with an error"),
            Ok(()) => {
                let mut m = lock(mem);
                for j in &jobs {
                    if let Job::Mark(fs, keys, _) = j {
                        if let Some(e) = m.get_mut(fs) {
                            for k in keys {
                                if let Some((_, durable)) = e.keys.get_mut(k) {
                                    *durable = true;
                                }
                            }
                        }
                    }
                }
            }
        }
        for j in jobs {
            if let Job::Mark(_, _, done) | Job::Full(_, done) = j {
                let _ = done.send(answer.clone());
            }
        }
        if stop {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &std::path::Path) -> Arc<Database> {
        Arc::new(Database::create(dir.join("metro.redb")).expect("db"))
    }

    #[tokio::test]
    async fn marks_survive_a_reopen_and_clears_respect_generations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FsId(9);
        {
            let dcl = Dcl::open(db(dir.path())).expect("open");
            dcl.mark(fs, DclKey::chunks(Ino(5), 0, 200 << 10).collect()).await.expect("mark");
            dcl.mark(fs, vec![DclKey::Dir(Ino(1)), DclKey::Inode(Ino(5))]).await.expect("mark");
            assert_eq!(dcl.counts(fs), (1, 1, 4, false));
            assert_eq!(dcl.data_bytes(fs), 4 * DCL_CHUNK_BYTES);
            let snap = dcl.snapshot(fs);
            // A change lands on chunk 0 while the resync copies: it must stay dirty.
            dcl.mark(fs, vec![DclKey::Chunk { ino: Ino(5), idx: 0 }]).await.expect("mark");
            dcl.clear(fs, &snap).expect("clear");
            assert_eq!(dcl.counts(fs), (0, 0, 1, false));
        }
        let dcl = Dcl::open(db(dir.path())).expect("reopen");
        assert_eq!(dcl.counts(fs), (0, 0, 1, false), "the mark made after the snapshot survives");
        assert!(!dcl.is_empty(fs));
        dcl.mark_full(FsId(10)).await.expect("full");
        let snap = dcl.snapshot(FsId(10));
        assert!(snap.full.is_some());
        dcl.clear(FsId(10), &snap).expect("clear");
        assert!(dcl.is_empty(FsId(10)));
    }

    #[tokio::test]
    async fn concurrent_marks_are_all_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dcl = Dcl::open(db(dir.path())).expect("open");
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let dcl = dcl.clone();
            tasks.push(tokio::spawn(async move { dcl.mark(FsId(1), vec![DclKey::Inode(Ino(i))]).await }));
        }
        for t in tasks {
            t.await.expect("join").expect("mark");
        }
        drop(dcl);
        let dcl = Dcl::open(db(dir.path())).expect("reopen");
        assert_eq!(dcl.counts(FsId(1)).1, 64);
    }
}
