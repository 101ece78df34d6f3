//! The LOG: an activity log of what is being dual-written (DESIGN.md, "LOG: cheap in the
//! normal path").
//!
//! Contract:
//! - Before a change is sent to the two stores, every key it touches is *active* in the log
//!   ([`ActivityLog::enter`]); it stays active until both results are back
//!   ([`ActivityLog::leave`]), and stays *resident* after that until evicted, so a hot extent
//!   costs one record, not one per write.
//! - A key is appended to the log file only when it becomes resident. The append is a plain
//!   `write` (it survives `kill -9` of the process, the page cache keeps it); the file is
//!   `fdatasync`ed by [`ActivityLog::flush`], which the runtime calls periodically (far below
//!   the kernel's dirty write-back delay) and before any local apply that itself waits for the
//!   disk (COMMIT, FILE_SYNC), so no data reaches the disk before the LOG record naming it. (A
//!   COMMIT of a file with no change in flight syncs that file's data, which no record of a
//!   change in flight names, while the LOG is flushed, and its metadata after: see
//!   `Metro::dual_apply`.)
//! - The file is zero-filled ahead of its records (`LOG_GROW_BYTES` at a time, made durable
//!   once): an append overwrites zeros in place and never moves the file's end, so a flush
//!   writes the records' block and nothing of the file system's metadata (no journal commit).
//!   The first record that does not decode (zeros, or a torn one) ends the log.
//! - After a crash every key in the file is treated as possibly different on the two sides and
//!   moved to the DCL ([`ActivityLog::open`] returns them; the caller makes them durable in the
//!   DCL, then calls [`ActivityLog::reset`]).
//! - Records are fixed-size with a checksum; a torn tail (crash mid-append) is ignored.
//! - The file is rewritten with just the resident set when it grows past
//!   `LOG_FILE_RECORDS_MAX` records.
//! - Flushes are group commits: the `fdatasync` runs outside the lock that `enter` takes (so a
//!   flush never holds up the changes being entered meanwhile), one at a time, and a flush whose
//!   records another flush already covered returns at once. Call it from a blocking thread.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use metrofs_core::{FsId, Ino};
use metrofs_store::GroupSync;

/// Size of a data region the LOG tracks: one record covers 4 MiB of one file.
pub const LOG_REGION_BYTES: u64 = 4 << 20;
/// Resident keys kept before idle ones are evicted.
pub const LOG_RESIDENT_MAX: usize = 8192;
/// Records in the file before it is rewritten with the resident set only.
const LOG_FILE_RECORDS_MAX: u64 = 65_536;
const RECORD_BYTES: usize = 32;
/// Zeros the file is extended by when its records reach its end (32768 records).
const LOG_GROW_BYTES: u64 = 1 << 20;

/// What a change touches, as the LOG and the DCL name it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKey {
    /// 4 MiB region `region` of file `ino`.
    Region { ino: Ino, region: u64 },
    /// The attributes of `ino`, or the entries of directory `ino`.
    Object(Ino),
}

impl LogKey {
    /// The inode the key belongs to.
    #[must_use]
    pub fn ino(self) -> Ino {
        match self {
            LogKey::Region { ino, .. } | LogKey::Object(ino) => ino,
        }
    }

    /// The regions covering `[offset, offset + len)` of `ino` (at least one).
    pub fn regions(ino: Ino, offset: u64, len: u64) -> impl Iterator<Item = LogKey> {
        let first = offset / LOG_REGION_BYTES;
        let last = offset.saturating_add(len.max(1) - 1) / LOG_REGION_BYTES;
        (first..=last).map(move |region| LogKey::Region { ino, region })
    }

    fn encode(fs: FsId, key: LogKey) -> [u8; RECORD_BYTES] {
        let mut r = [0u8; RECORD_BYTES];
        r[0] = b'L';
        let (kind, ino, region) = match key {
            LogKey::Region { ino, region } => (1u8, ino, region),
            LogKey::Object(ino) => (2u8, ino, 0),
        };
        r[1] = kind;
        r[4..12].copy_from_slice(&fs.0.to_le_bytes());
        r[12..20].copy_from_slice(&ino.0.to_le_bytes());
        r[20..28].copy_from_slice(&region.to_le_bytes());
        let crc = crc32fast::hash(&r[..28]);
        r[28..32].copy_from_slice(&crc.to_le_bytes());
        r
    }

    fn decode(r: &[u8]) -> Option<(FsId, LogKey)> {
        let crc = u32::from_le_bytes(r[28..32].try_into().ok()?);
        if r[0] != b'L' || crc32fast::hash(&r[..28]) != crc {
            return None;
        }
        let u = |a: usize| r[a..a + 8].try_into().ok().map(u64::from_le_bytes);
        let (fs, ino, region) = (FsId(u(4)?), Ino(u(12)?), u(20)?);
        match r[1] {
            1 => Some((fs, LogKey::Region { ino, region })),
            2 => Some((fs, LogKey::Object(ino))),
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked holding it; the value is intact.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
struct Slot {
    /// Changes in flight that touch this key.
    active: u32,
    /// Logical time of the last use, for eviction of idle keys.
    last_use: u64,
    /// When it was last entered; `None` for a key reserved ahead and not entered since.
    at: Option<std::time::Instant>,
}

#[derive(Debug)]
struct Inner {
    /// Shared with a flush in progress, which syncs it without holding this lock.
    file: Arc<File>,
    records: u64,
    /// Bytes of the file, zeros past the records included.
    capacity: u64,
    /// Appends so far (a counter): a flush makes every append up to its value durable.
    appended: u64,
    resident: HashMap<(FsId, LogKey), Slot>,
    /// Changes in flight per inode (over all its keys): [`ActivityLog::busy`].
    active_inos: HashMap<(FsId, Ino), u32>,
    tick: u64,
}

/// The activity log of one array (all its pairs).
#[derive(Debug)]
pub struct ActivityLog {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// The `appended` value known durable; one fdatasync at a time. Lock order: `inner`
    /// before it.
    durable: GroupSync,
    /// Set by the first failed fdatasync: every later flush fails with it (after a failed
    /// fsync the kernel may have dropped the pages, and a second fsync may then succeed).
    failed: std::sync::OnceLock<String>,
}

impl ActivityLog {
    /// Opens the log at `path` and returns what a previous run left in it: keys that were
    /// possibly being dual-written when it stopped. The caller must record them in the DCL
    /// durably and then call [`ActivityLog::reset`].
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<(FsId, LogKey)>)> {
        let file = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(path)?;
        let mut buf = Vec::new();
        (&file).read_to_end(&mut buf)?;
        metrofs_store::drop_cached(&file)?;
        let mut left = Vec::new();
        for rec in buf.chunks_exact(RECORD_BYTES) {
            match LogKey::decode(rec) {
                Some(k) => left.push(k),
                // Zeros past the last record, or a torn or garbled one: the crash happened
                // mid-append. Every record before it was whole; nothing after it can be trusted.
                None => break,
            }
        }
        // Appends go after the last whole record: over the zeros, or over a torn record.
        let records = left.len() as u64;
        let capacity = buf.len() as u64;
        left.sort_unstable();
        left.dedup();
        let log = Self {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                file: Arc::new(file),
                records,
                capacity,
                appended: 0,
                resident: HashMap::new(),
                active_inos: HashMap::new(),
                tick: 0,
            }),
            durable: GroupSync::new(0),
            failed: std::sync::OnceLock::new(),
        };
        Ok((log, left))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Empties the file: call only once what [`ActivityLog::open`] returned is durable in the DCL.
    pub fn reset(&self) -> std::io::Result<()> {
        let mut g = self.lock();
        self.rewrite(&mut g)
    }

    /// Marks `keys` active (appending the ones not yet resident). Step 2 of the write process.
    pub fn enter(&self, fs: FsId, keys: &[LogKey]) -> std::io::Result<()> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let mut new = Vec::new();
        for &k in keys {
            let now = std::time::Instant::now();
            let slot = g.resident.entry((fs, k)).or_insert_with(|| {
                new.extend_from_slice(&LogKey::encode(fs, k));
                Slot { active: 0, last_use: tick, at: Some(now) }
            });
            slot.active += 1;
            slot.last_use = tick;
            slot.at = Some(now);
            *g.active_inos.entry((fs, k.ino())).or_default() += 1;
        }
        if !new.is_empty() {
            if let Err(e) = Self::append(&mut g, &new) {
                // Undo the activity: the change will not be sent.
                for &k in keys {
                    Self::idle(&mut g, fs, k);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether every one of `keys` is resident: entering them appends nothing.
    pub fn is_resident(&self, fs: FsId, keys: &[LogKey]) -> bool {
        let g = self.lock();
        keys.iter().all(|k| g.resident.contains_key(&(fs, *k)))
    }

    /// Makes `keys` resident without a change in flight (appending the ones that are not), so
    /// that the changes expected to touch them soon append nothing: the keys of the inodes the
    /// next creations will get (see `Metro::dual_change`). Returns how many were appended.
    /// After a crash they are moved to the DCL like any other resident key; a key of an inode
    /// that was never made costs its resync next to nothing.
    pub fn reserve(&self, fs: FsId, keys: &[LogKey]) -> std::io::Result<usize> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let mut new = Vec::new();
        let mut added = Vec::new();
        for &k in keys {
            if let std::collections::hash_map::Entry::Vacant(v) = g.resident.entry((fs, k)) {
                new.extend_from_slice(&LogKey::encode(fs, k));
                v.insert(Slot { active: 0, last_use: tick, at: None });
                added.push(k);
            }
        }
        if !new.is_empty() {
            if let Err(e) = Self::append(&mut g, &new) {
                for k in &added {
                    g.resident.remove(&(fs, *k));
                }
                return Err(e);
            }
        }
        Ok(added.len())
    }

    /// Writes `new` (whole records) after the last record, extending the zeros first when
    /// they run out, and counts them: one more append for a flush to cover.
    fn append(g: &mut Inner, new: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let at = g.records * RECORD_BYTES as u64;
        let end = at + new.len() as u64;
        if end > g.capacity {
            let capacity = end.div_ceil(LOG_GROW_BYTES) * LOG_GROW_BYTES;
            // Page by page: see `zero_fill`.
            metrofs_store::zero_fill(&g.file, g.capacity, capacity)?;
            // The new end made durable once, so that later flushes have no metadata to write.
            g.file.sync_all()?;
            g.capacity = capacity;
        }
        g.file.write_all_at(new, at)?;
        g.records += (new.len() / RECORD_BYTES) as u64;
        g.appended += 1;
        Ok(())
    }

    /// Marks `keys` no longer active (both results are back). Idle keys stay resident until
    /// evicted.
    pub fn leave(&self, fs: FsId, keys: &[LogKey]) {
        let mut g = self.lock();
        for k in keys {
            assert!(
                g.resident.get(&(fs, *k)).is_none_or(|s| s.active > 0),
                "LOG leave without enter: {fs} {k:?}"
            );
            Self::idle(&mut g, fs, *k);
        }
        if g.resident.len() > LOG_RESIDENT_MAX {
            // Evict the older half of the idle keys. They stay in the file until the next
            // rewrite: after a crash they are merely resynchronised for nothing.
            let mut idle: Vec<_> = g.resident.iter().filter(|(_, s)| s.active == 0).map(|(k, s)| (s.last_use, *k)).collect();
            idle.sort_unstable_by_key(|(t, _)| *t);
            for (_, k) in idle.iter().take(idle.len() / 2 + 1) {
                g.resident.remove(k);
            }
        }
        if g.records > LOG_FILE_RECORDS_MAX {
            if let Err(e) = self.rewrite(&mut g) {
                tracing::warn!(error = %e, "LOG rewrite failed; keeping the longer file");
            }
        }
    }

    /// One change that touched `k` is no longer in flight.
    fn idle(g: &mut Inner, fs: FsId, k: LogKey) {
        if let Some(s) = g.resident.get_mut(&(fs, k)) {
            s.active = s.active.saturating_sub(1);
        }
        if let std::collections::hash_map::Entry::Occupied(mut e) = g.active_inos.entry((fs, k.ino())) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Whether a change touching inode `ino` (its attributes, entries or data) is in flight,
    /// besides the caller's own: `own` is how many of the caller's entered keys name `ino`
    /// (0 when the caller entered none).
    pub fn busy(&self, fs: FsId, ino: Ino, own: usize) -> bool {
        self.lock().active_inos.get(&(fs, ino)).is_some_and(|n| *n as usize > own)
    }

    /// Whether every record appended so far is durable: [`ActivityLog::flush`] would return
    /// at once. Does not block.
    pub fn is_durable(&self) -> bool {
        let appended = self.lock().appended;
        self.durable.covers(appended)
    }

    /// The appends so far, for [`ActivityLog::flush_upto`].
    pub fn appended(&self) -> u64 {
        self.lock().appended
    }

    /// Makes every record appended before the call durable (fdatasync), if one is not yet.
    /// Blocks for the disk: call it from a blocking thread.
    pub fn flush(&self) -> std::io::Result<()> {
        let target = self.lock().appended;
        self.flush_upto(target)
    }

    /// Makes the first `target` appends ([`ActivityLog::appended`]) durable, if a flush has
    /// not already: a flush running now that covers them is waited for, not repeated.
    pub fn flush_upto(&self, target: u64) -> std::io::Result<()> {
        self.durable.sync_upto(target, || {
            if let Some(why) = self.failed.get() {
                return Err(std::io::Error::other(why.clone()));
            }
            // Everything appended until now goes in this sync (later flushes need not sync again).
            let (upto, file) = {
                let g = self.lock();
                (g.appended, g.file.clone())
            };
            if let Err(e) = file.sync_data() {
                let _ = self.failed.set(format!("an earlier fdatasync of {} failed: {e}", self.path.display()));
                return Err(e);
            }
            Ok(upto)
        })
    }

    /// Every key active now or entered within `window`: what was changed recently.
    pub fn recent_keys(&self, window: std::time::Duration) -> Vec<(FsId, LogKey)> {
        let g = self.lock();
        g.resident.iter().filter(|(_, s)| s.active > 0 || s.at.is_some_and(|at| at.elapsed() <= window)).map(|(k, _)| *k).collect()
    }

    /// Keys being dual-written or resident.
    pub fn resident(&self) -> usize {
        self.lock().resident.len()
    }

    /// Keys with a change in flight right now.
    pub fn active(&self) -> usize {
        self.lock().resident.values().filter(|s| s.active > 0).count()
    }

    /// Replaces the file by one holding just the resident keys: written aside, made durable,
    /// then renamed over the old one (so a crash leaves one of the two, both supersets of what
    /// is active).
    fn rewrite(&self, g: &mut Inner) -> std::io::Result<()> {
        let tmp = self.path.with_extension("rewrite");
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::with_capacity(g.resident.len() * RECORD_BYTES);
        for (fs, k) in g.resident.keys() {
            buf.extend_from_slice(&LogKey::encode(*fs, *k));
        }
        let capacity = (buf.len() as u64 + 1).div_ceil(LOG_GROW_BYTES) * LOG_GROW_BYTES;
        f.write_all(&buf)?;
        // The zeros page by page (see `zero_fill`): appends land in them.
        metrofs_store::zero_fill(&f, buf.len() as u64, capacity)?;
        // The new file must be durable before the rename can make it the log.
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        g.file = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        g.records = g.resident.len() as u64;
        g.capacity = capacity;
        // Every resident key is durable in the new file; evicted ones need not be.
        self.durable.mark(g.appended);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_the_range() {
        let r: Vec<_> = LogKey::regions(Ino(5), LOG_REGION_BYTES - 1, 2).collect();
        assert_eq!(r, vec![LogKey::Region { ino: Ino(5), region: 0 }, LogKey::Region { ino: Ino(5), region: 1 }]);
        assert_eq!(LogKey::regions(Ino(5), 0, 0).count(), 1);
    }

    #[test]
    fn a_restart_returns_what_was_entered_and_reset_forgets_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        {
            let (log, left) = ActivityLog::open(&path).expect("open");
            assert!(left.is_empty());
            let keys = [LogKey::Object(Ino(1)), LogKey::Region { ino: Ino(9), region: 3 }];
            log.enter(FsId(7), &keys).expect("enter");
            log.enter(FsId(7), &keys).expect("enter again: resident, no new record");
            assert_eq!(log.active(), 2);
            log.leave(FsId(7), &keys);
            log.leave(FsId(7), &keys);
            assert_eq!(log.active(), 0);
            assert_eq!(log.resident(), 2);
            assert_eq!(log.lock().records, 2);
            // No flush: a process crash keeps what `write` put in the page cache.
        }
        let (log, left) = ActivityLog::open(&path).expect("reopen");
        // Sorted: regions before objects.
        assert_eq!(left, vec![(FsId(7), LogKey::Region { ino: Ino(9), region: 3 }), (FsId(7), LogKey::Object(Ino(1)))]);
        log.reset().expect("reset");
        drop(log);
        let (_, left) = ActivityLog::open(&path).expect("reopen");
        assert!(left.is_empty());
    }

    #[test]
    fn durable_until_a_new_key_is_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = ActivityLog::open(&dir.path().join("log")).expect("open");
        assert!(log.is_durable(), "nothing appended yet");
        let k = [LogKey::Object(Ino(1))];
        log.enter(FsId(1), &k).expect("enter");
        assert!(!log.is_durable(), "a new record is only in the page cache");
        log.flush().expect("flush");
        assert!(log.is_durable());
        log.leave(FsId(1), &k);
        log.enter(FsId(1), &k).expect("enter a resident key");
        assert!(log.is_durable(), "a resident key appends nothing");
        log.leave(FsId(1), &k);
    }

    #[test]
    fn an_inode_is_busy_while_a_change_touching_it_is_in_flight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = ActivityLog::open(&dir.path().join("log")).expect("open");
        let fs = FsId(1);
        let write = [LogKey::Region { ino: Ino(7), region: 0 }, LogKey::Region { ino: Ino(7), region: 1 }];
        let create = [LogKey::Object(Ino(2)), LogKey::Object(Ino(7))];
        log.enter(fs, &write).expect("enter");
        log.enter(fs, &create).expect("enter");
        assert!(log.busy(fs, Ino(7), 0) && log.busy(fs, Ino(2), 0));
        assert!(!log.busy(fs, Ino(8), 0) && !log.busy(FsId(2), Ino(7), 0));
        // The create's own key of inode 2 aside, nothing else touches it; inode 7 has the write.
        assert!(!log.busy(fs, Ino(2), 1));
        assert!(log.busy(fs, Ino(7), 1));
        log.leave(fs, &create);
        assert!(log.busy(fs, Ino(7), 0), "the write is still in flight");
        assert!(!log.busy(fs, Ino(2), 0));
        log.leave(fs, &write);
        assert!(!log.busy(fs, Ino(7), 0));
        // A COMMIT's own key: busy only with it counted.
        let commit = [LogKey::Object(Ino(7))];
        log.enter(fs, &commit).expect("enter");
        assert!(log.busy(fs, Ino(7), 0) && !log.busy(fs, Ino(7), 1));
        log.leave(fs, &commit);
        // Idle keys stay resident: entering them again appends nothing.
        let before = log.appended();
        log.enter(fs, &write).expect("enter");
        assert_eq!(log.appended(), before);
        assert!(log.busy(fs, Ino(7), 0));
    }

    #[test]
    fn reserved_keys_are_resident_idle_and_survive_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let fs = FsId(3);
        let keys = [LogKey::Object(Ino(40)), LogKey::Region { ino: Ino(40), region: 0 }, LogKey::Object(Ino(41))];
        {
            let (log, left) = ActivityLog::open(&path).expect("open");
            assert!(left.is_empty());
            log.enter(fs, &keys[2..]).expect("enter");
            assert_eq!(log.reserve(fs, &keys).expect("reserve"), 2, "inode 41's key was resident already");
            assert!(log.is_resident(fs, &keys));
            assert!(!log.busy(fs, Ino(40), 0), "reserved, not in flight");
            let recent = log.recent_keys(std::time::Duration::from_secs(60));
            assert_eq!(recent, vec![(fs, keys[2])], "a reserved key changed nothing: not recent");
            assert!(!log.is_durable());
            log.flush().expect("flush");
            let before = log.appended();
            log.enter(fs, &keys[..2]).expect("enter");
            assert_eq!(log.appended(), before, "a reserved key appends nothing when entered");
            assert!(log.is_durable());
            log.leave(fs, &keys[..2]);
            assert_eq!(log.reserve(fs, &keys).expect("reserve"), 0);
        }
        let (_, left) = ActivityLog::open(&path).expect("reopen");
        let mut want: Vec<_> = keys.iter().map(|k| (fs, *k)).collect();
        want.sort_unstable();
        assert_eq!(left, want);
    }

    #[test]
    fn flush_upto_covers_the_appends_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = ActivityLog::open(&dir.path().join("log")).expect("open");
        log.enter(FsId(1), &[LogKey::Object(Ino(3))]).expect("enter");
        let target = log.appended();
        log.enter(FsId(1), &[LogKey::Object(Ino(4))]).expect("enter");
        log.flush_upto(target).expect("flush");
        // The flush synced everything appended when it ran, the later append too.
        assert!(log.is_durable());
        log.enter(FsId(1), &[LogKey::Object(Ino(5))]).expect("enter");
        log.flush_upto(target).expect("covered");
        assert!(!log.is_durable(), "a flush up to an older target syncs nothing");
    }

    #[test]
    fn appends_fill_zeros_in_place_and_replace_a_torn_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut bytes = LogKey::encode(FsId(1), LogKey::Object(Ino(2))).to_vec();
        bytes.extend_from_slice(&LogKey::encode(FsId(1), LogKey::Object(Ino(3)))[..20]);
        std::fs::write(&path, &bytes).expect("write");
        {
            let (log, left) = ActivityLog::open(&path).expect("open");
            assert_eq!(left, vec![(FsId(1), LogKey::Object(Ino(2)))]);
            // The first append replaces the torn record and zero-fills the file ahead.
            log.enter(FsId(1), &[LogKey::Object(Ino(4))]).expect("enter");
            let len = std::fs::metadata(&path).expect("meta").len();
            assert_eq!(len, LOG_GROW_BYTES);
            for i in 5..100 {
                log.enter(FsId(1), &[LogKey::Object(Ino(i))]).expect("enter");
            }
            log.flush().expect("flush");
            assert_eq!(std::fs::metadata(&path).expect("meta").len(), len, "appends do not move the end");
        }
        let (_, left) = ActivityLog::open(&path).expect("reopen");
        let mut want: Vec<_> = [2].into_iter().chain(4..100).map(|i| (FsId(1), LogKey::Object(Ino(i)))).collect();
        want.sort_unstable();
        assert_eq!(left, want);
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut bytes = LogKey::encode(FsId(1), LogKey::Object(Ino(2))).to_vec();
        bytes.extend_from_slice(&LogKey::encode(FsId(1), LogKey::Object(Ino(3)))[..20]);
        std::fs::write(&path, &bytes).expect("write");
        let (_, left) = ActivityLog::open(&path).expect("open");
        assert_eq!(left, vec![(FsId(1), LogKey::Object(Ino(2)))]);
    }

    #[test]
    fn eviction_keeps_active_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = ActivityLog::open(&dir.path().join("log")).expect("open");
        let held = [LogKey::Object(Ino(1))];
        log.enter(FsId(1), &held).expect("enter");
        for i in 0..(LOG_RESIDENT_MAX as u64 + 10) {
            let k = [LogKey::Region { ino: Ino(2), region: i }];
            log.enter(FsId(1), &k).expect("enter");
            log.leave(FsId(1), &k);
        }
        assert!(log.resident() <= LOG_RESIDENT_MAX + 1);
        assert_eq!(log.active(), 1);
        log.leave(FsId(1), &held);
    }
}
