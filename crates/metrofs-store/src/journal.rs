//! The op journal: what makes every applied change survive a `kill -9` of the process.
//!
//! # Why
//! A namespace or attribute change is a non-durable redb commit, and a WRITE changes the
//! inode's attributes in memory only (see `store.rs`): a process crash loses both, back to the
//! last durable commit. Making each change durable costs an fsync. Instead, every change that
//! `apply` / `apply_sync` makes is appended here with one plain `write()` before it is
//! answered: the bytes sit in the kernel's page cache, which outlives the process. A power
//! loss can still take them: COMMIT and stable writes [`Journal::flush`] the journal (one
//! fdatasync, shared by concurrent callers), which makes every change before them durable
//! without a durable redb commit; [`crate::Store::sync`] makes one.
//!
//! # Contract
//! - A change is appended *after* it is checked (a failed op is never journaled) and *before*
//!   it is answered, in the order the changes reach the inode cache: namespace ops under the
//!   transaction lock and the cache lock, a WRITE's attributes under the cache lock. So the
//!   journal's order is an order in which applying the same records gives the same state.
//! - Each record carries a log sequence number (LSN), one more than the previous one.
//! - A durable redb commit *seals* the journal: under the transaction and cache locks it writes
//!   back every dirty attribute and records, in the same commit, the LSN of the last record
//!   appended so far (`META["journal_lsn"]`); appends after the seal go to the other of the two
//!   journal files. Once the commit is durable, the sealed file is written again from its
//!   start at the next rotation (what is left past the new records is covered, so skipped).
//! - Files grow in steps of `GROW_BYTES`, written as zeros, so an append never changes a file's
//!   size and lands in blocks the file has (on ext4 a size change or a block allocation is a
//!   metadata transaction, which a flush would have to commit).
//! - A flush fdatasyncs each file that holds records appended since the last flush and not
//!   covered by a durable commit. After a power loss the flushed records are a prefix of the
//!   LSNs after the durable one: the replay stops at the first record that did not reach the
//!   disk, and everything before a flush did.
//! - At open, the records after the durable `journal_lsn` are replayed in LSN order, as long as
//!   the LSNs follow each other (a torn or missing record ends the replay: only a record whose
//!   change was never answered, or — after a power loss — a suffix, can be missing). Replay
//!   runs the same code as the live op, without the journal and without its data-file actions
//!   (moving data to the trash, cutting a file): recovery then makes the data files follow the
//!   replayed metadata, as it does after any crash.
//!
//! # Record format
//! `[payload_len u32 LE][lsn u64 LE][xxh3-64 of lsn LE ++ payload, u64 LE][payload]`; the
//! payload is a [`Rec`] in postcard.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use metrofs_core::{FsError, FsId, FsOp, Gen, Ino, SyncOp, Time};
use serde::{Deserialize, Serialize};

use crate::group::GroupSync;
use crate::store::lock;
use crate::StoreError;

/// Journal bytes after which the next change forces a durable commit (it bounds the replay at
/// open and the files' size).
pub(crate) const JOURNAL_BYTES_MAX: u64 = 64 << 20;
/// Largest payload a record may have (far above any op: a name is at most 255 bytes, a
/// symlink target 4 KiB, a resync range 64 KiB); a larger length read back is a torn record.
const PAYLOAD_MAX_BYTES: usize = 4 << 20;
const HEADER_BYTES: usize = 4 + 8 + 8;
/// A journal file grows by this much at once (`set_len`), so an append does not change the
/// file's size: on ext4 with a journal a size change costs a metadata transaction per write.
const GROW_BYTES: u64 = 4 << 20;
/// The two journal files, used in turn.
const FILE_NAMES: [&str; 2] = ["journal.0", "journal.1"];

/// Writes zeros over `[from, to)` of `file`, one page per `write()`.
///
/// For a file that then takes small appends over those zeros (the op journal, the metro
/// LOG). One large write would leave the range in the page cache as large folios (ext4 has
/// them since Linux 6.11), and each small append into a large folio walks every block of it:
/// `ext4_block_write_begin` on a 2 MiB folio visits 512 buffer heads for a 100-byte record,
/// and writeback does the same. That was 3–5 % of an array's CPU in the small-file workload
/// (`perf`, site-a and its twin alike). Page-sized writes make page-sized folios.
pub fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const PAGE: u64 = 4096;
    let zeros = [0u8; PAGE as usize];
    let mut at = from;
    while at < to {
        // Up to the next page boundary first, so every later write is one whole page.
        let n = (PAGE - at % PAGE).min(to - at);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Drops `file`'s pages from the page cache (after writing back what is dirty), so the
/// appends that follow fill page-sized folios, not the large ones a read of the whole file
/// left (see [`zero_fill`]). For a file just read at open.
pub fn drop_cached(file: &File) -> std::io::Result<()> {
    file.sync_data()?;
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// A journaled change, as replayed (see [`RecRef`] for the encoding side).
#[derive(Debug, Deserialize)]
pub(crate) enum Rec {
    /// A namespace or attribute op (`Store::apply`, neither WRITE nor COMMIT).
    Op(FsOp),
    /// A WRITE's effect on the attributes (its bytes are in the data file already): size at
    /// least `end`, mtime and ctime at least `time`, if the inode still has generation `gen`.
    Write {
        fs: FsId,
        ino: Ino,
        gen: Gen,
        end: u64,
        time: Time,
    },
    /// A resync step that changes metadata (`PutData` only writes data and is not journaled).
    Sync { fs: FsId, op: SyncOp },
    /// `Store::free_orphans`, or the one a `PutData` runs first.
    FreeOrphans { fs: FsId },
}

/// [`Rec`] by reference, for encoding without a copy (postcard encodes `&T` as `T`, so the
/// variants and fields must stay in the same order as [`Rec`]'s).
#[derive(Serialize)]
pub(crate) enum RecRef<'a> {
    Op(&'a FsOp),
    Write {
        fs: FsId,
        ino: Ino,
        gen: Gen,
        end: u64,
        time: Time,
    },
    Sync {
        fs: FsId,
        op: &'a SyncOp,
    },
    FreeOrphans {
        fs: FsId,
    },
}

impl RecRef<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, FsError> {
        postcard::to_allocvec(self)
            .map_err(|e| FsError::Io(format!("encoding a journal record: {e}")))
    }
}

/// Records to replay: (LSN, payload), in LSN order.
pub(crate) type Replay = Vec<(u64, Vec<u8>)>;

/// What a durable commit covered: the LSN it records, and the file to cut once it is durable.
#[derive(Debug)]
pub(crate) struct Seal {
    pub lsn: u64,
    old: Option<usize>,
}

struct State {
    /// Bytes of records in each file (where the next append to it goes).
    len: [u64; 2],
    /// Each file's size (records, then zeros or records a durable commit covered).
    size: [u64; 2],
    /// The file appends go to.
    cur: usize,
    /// LSN of the last record appended (or, while replaying, replayed).
    last: u64,
    /// Whether each file holds records appended since its last [`Journal::flush`] that no
    /// durable commit covers yet.
    unsynced: [bool; 2],
}

pub(crate) struct Journal {
    files: [File; 2],
    paths: [PathBuf; 2],
    state: Mutex<State>,
    /// Set at open until the replay is over: appends and rotations are off.
    replaying: AtomicBool,
    /// LSN up to which the records are on disk (a [`Journal::flush`], or a durable commit
    /// that covers them); one flush at a time.
    synced: GroupSync,
}

fn io(what: &str, p: &Path, e: &std::io::Error) -> FsError {
    FsError::Io(format!("{what} {}: {e}", p.display()))
}

/// Parses the records of one file, up to the first one that does not check.
fn records(b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while b.len() - at >= HEADER_BYTES {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let len = u32_at(at) as usize;
        let lsn = u64_at(at + 4);
        let sum = u64_at(at + 12);
        if len > PAYLOAD_MAX_BYTES || b.len() - at - HEADER_BYTES < len {
            break;
        }
        let payload = &b[at + HEADER_BYTES..at + HEADER_BYTES + len];
        if checksum(lsn, payload) != sum {
            break;
        }
        out.push((lsn, payload.to_vec()));
        at += HEADER_BYTES + len;
    }
    out
}

fn checksum(lsn: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.digest()
}

impl Journal {
    /// Opens (creating) the journal files in `dir` and returns the records to replay: those
    /// after `durable_lsn` whose LSNs follow it without a gap, in order. The journal is in
    /// replay mode until [`Journal::finish_replay`].
    pub fn open(dir: &Path, durable_lsn: u64) -> Result<(Journal, Replay), StoreError> {
        let paths = FILE_NAMES.map(|n| dir.join(n));
        let open = |p: &PathBuf| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|source| StoreError::Io {
                    context: format!("opening {}", p.display()),
                    source,
                })
        };
        let files = [open(&paths[0])?, open(&paths[1])?];
        let mut all = Vec::new();
        for p in &paths {
            let b = std::fs::read(p).map_err(|source| StoreError::Io {
                context: format!("reading {}", p.display()),
                source,
            })?;
            all.extend(records(&b));
        }
        for (f, p) in files.iter().zip(&paths) {
            drop_cached(f).map_err(|source| StoreError::Io {
                context: format!("dropping the cached pages of {}", p.display()),
                source,
            })?;
        }
        all.retain(|(lsn, _)| *lsn > durable_lsn);
        all.sort_by_key(|(lsn, _)| *lsn);
        // Only the LSNs that follow the durable one without a gap.
        let replay: Replay = (durable_lsn + 1..)
            .zip(all)
            .take_while(|(next, (lsn, _))| lsn == next)
            .map(|(_, r)| r)
            .collect();
        let j = Journal {
            files,
            paths,
            state: Mutex::new(State {
                len: [0, 0],
                size: [0, 0],
                cur: 0,
                last: durable_lsn,
                unsynced: [false, false],
            }),
            replaying: AtomicBool::new(true),
            synced: GroupSync::new(durable_lsn),
        };
        Ok((j, replay))
    }

    pub fn replaying(&self) -> bool {
        self.replaying.load(Ordering::Acquire)
    }

    /// While replaying: record `lsn` is being applied (a durable commit meanwhile covers it).
    pub fn replayed(&self, lsn: u64) {
        lock(&self.state).last = lsn;
    }

    /// Ends the replay: both files cut to nothing (what they held is covered by the durable
    /// commit the caller made, or was never answered), appends on.
    pub fn finish_replay(&self) -> Result<(), FsError> {
        let mut st = lock(&self.state);
        for (f, p) in self.files.iter().zip(&self.paths) {
            f.set_len(0).map_err(|e| io("cutting", p, &e))?;
        }
        st.len = [0, 0];
        st.size = [0, 0];
        st.cur = 0;
        st.unsynced = [false, false];
        self.synced.mark(st.last);
        self.replaying.store(false, Ordering::Release);
        Ok(())
    }

    /// Appends one record (one `write()`; the caller holds the locks that order it, see the
    /// module docs). No-op while replaying.
    pub fn append(&self, payload: &[u8]) -> Result<(), FsError> {
        if self.replaying() {
            return Ok(());
        }
        let mut rec = Vec::with_capacity(HEADER_BYTES + payload.len());
        let mut st = lock(&self.state);
        let lsn = st.last + 1;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l as usize <= PAYLOAD_MAX_BYTES)
            .ok_or_else(|| FsError::Io(format!("journal record of {} bytes", payload.len())))?;
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&lsn.to_le_bytes());
        rec.extend_from_slice(&checksum(lsn, payload).to_le_bytes());
        rec.extend_from_slice(payload);
        let cur = st.cur;
        let end = st.len[cur] + rec.len() as u64;
        if end > st.size[cur] {
            // Zeros written, not a hole: a record then lands in blocks the file already has,
            // and a flush writes the record's page and no file system metadata (the first
            // flush after the growth carries the new size once).
            let size = end.max(st.size[cur] + GROW_BYTES);
            zero_fill(&self.files[cur], st.size[cur], size)
                .map_err(|e| io("growing", &self.paths[cur], &e))?;
            st.size[cur] = size;
        }
        self.files[cur]
            .write_all_at(&rec, st.len[cur])
            .map_err(|e| io("appending to", &self.paths[cur], &e))?;
        st.len[cur] += rec.len() as u64;
        st.last = lsn;
        st.unsynced[cur] = true;
        Ok(())
    }

    /// Makes every record appended before the call durable (fdatasync of the file or files
    /// holding records no durable commit covers yet), if a flush or a durable commit has not
    /// already. Concurrent callers share one flush. An error is fatal to the store (the
    /// caller stops it): the kernel may have dropped the pages.
    pub fn flush(&self) -> Result<(), FsError> {
        let target = lock(&self.state).last;
        self.synced.sync_upto(target, || {
            let (upto, dirty) = {
                let mut st = lock(&self.state);
                (st.last, std::mem::take(&mut st.unsynced))
            };
            for (i, f) in self.files.iter().enumerate() {
                if dirty[i] {
                    f.sync_data()
                        .map_err(|e| io("fdatasync of", &self.paths[i], &e))?;
                }
            }
            Ok(upto)
        })
    }

    /// Bytes in the journal now.
    pub fn bytes(&self) -> u64 {
        let st = lock(&self.state);
        st.len[0] + st.len[1]
    }

    /// For a durable commit about to be made (caller holds the transaction and cache locks,
    /// and wrote back every dirty attribute into that commit): the LSN it covers, and the
    /// appends after it go to the other file.
    pub fn seal(&self) -> Seal {
        let mut st = lock(&self.state);
        if self.replaying() || st.len[st.cur] == 0 {
            return Seal {
                lsn: st.last,
                old: None,
            };
        }
        let old = st.cur;
        // The other file was released by the previous seal (durable commits run one at a
        // time, under the transaction lock).
        assert_eq!(
            st.len[1 - old],
            0,
            "journal file {} not released before reuse",
            1 - old
        );
        st.cur = 1 - old;
        Seal {
            lsn: st.last,
            old: Some(old),
        }
    }

    /// The sealed commit is durable: its file is reused from the start by the appends after
    /// the next seal. Called under the transaction lock, before the next seal.
    ///
    /// It is not cut (an ext4 truncate of pages being written back waits for them): what it
    /// holds past the new records is records the durable commit covers (LSNs at or below the
    /// durable one, which replay skips) or a torn one (where replay stops reading the file).
    pub fn release(&self, seal: &Seal) -> Result<(), FsError> {
        self.synced.mark(seal.lsn);
        let Some(old) = seal.old else { return Ok(()) };
        let mut st = lock(&self.state);
        st.len[old] = 0;
        // What it holds is covered: nothing of it needs a flush.
        st.unsynced[old] = false;
        Ok(())
    }
}

/// Refusals listed in a recovery report at most (the count goes on).
const REFUSALS_LISTED_MAX: usize = 100;

impl crate::Store {
    /// Replays the records of [`Journal::open`] (see the module docs). Returns how many were
    /// applied, and the ones refused (one line each): a record is journaled only after its
    /// op succeeded, so a refusal means the replayed state is not the one answered — reported,
    /// never hidden. A local I/O failure stops the open.
    pub(crate) fn replay(
        &self,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<(u64, Vec<String>), StoreError> {
        assert!(self.journal.replaying(), "replay outside the open");
        let mut applied = 0;
        let mut refused = Vec::new();
        for (lsn, payload) in records {
            self.journal.replayed(lsn);
            let rec: Rec = match postcard::from_bytes(&payload) {
                Ok(r) => r,
                Err(e) => {
                    // Its checksum held: written by another build. Nothing after it can be
                    // trusted to follow from it.
                    refused.push(format!(
                        "journal record {lsn}: undecodable ({e}); replay stopped"
                    ));
                    break;
                }
            };
            let r = match &rec {
                Rec::Op(op) => self.apply(op).map(|_| ()),
                Rec::Write {
                    fs,
                    ino,
                    gen,
                    end,
                    time,
                } => self.replay_write(*fs, *ino, *gen, *end, *time),
                Rec::Sync { fs, op } => self.apply_sync(*fs, op),
                Rec::FreeOrphans { fs } => self.free_orphans(*fs).map(|_| ()),
            };
            match r {
                Ok(()) => applied += 1,
                Err(FsError::Io(m)) => {
                    return Err(StoreError::Db(format!(
                        "replaying journal record {lsn}: {m}"
                    )))
                }
                Err(e) => {
                    if refused.len() < REFUSALS_LISTED_MAX {
                        refused.push(format!("journal record {lsn} ({rec:?}): {e}"));
                    }
                }
            }
        }
        Ok((applied, refused))
    }

    /// A WRITE's attributes again (its bytes are in the data file): as `write` changes them.
    fn replay_write(
        &self,
        fs: FsId,
        ino: Ino,
        gen: Gen,
        end: u64,
        time: Time,
    ) -> Result<(), FsError> {
        self.check_fs(fs)?;
        let mut c = lock(&self.cache);
        let e = self.load(&mut c, fs, ino)?;
        let i = match &mut e.inode {
            Some(i) if i.gen == gen && i.is_file() => i,
            _ => return Err(FsError::Stale),
        };
        i.size = i.size.max(end);
        i.mtime = i.mtime.max(time);
        i.ctime = i.ctime.max(time);
        if e.state != crate::store::CacheState::Dirty {
            e.state = crate::store::CacheState::Dirty;
            c.dirty.insert((fs, ino));
        }
        drop(c);
        // The sync after the replay makes these bytes durable too (created: its bucket
        // directory as well, to be safe).
        lock(&self.unsynced).insert((fs, ino), true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::{CreateHow, OpBody};

    #[test]
    fn zero_fill_writes_zeros_over_the_range_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 100]).expect("write");
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&p).expect("open");
        // From inside a page to past the next few pages' end.
        zero_fill(&f, 50, 3 * 4096 + 10).expect("zero fill");
        let b = std::fs::read(&p).expect("read");
        assert_eq!(b.len(), 3 * 4096 + 10);
        assert!(b[..50].iter().all(|x| *x == 7), "bytes before the range kept");
        assert!(b[50..].iter().all(|x| *x == 0), "zeros over the range");
        drop_cached(&f).expect("drop cached");
        assert_eq!(std::fs::read(&p).expect("read again"), b, "dropping the cache loses nothing");
    }

    fn op() -> FsOp {
        FsOp {
            fs: FsId(7),
            time: Time::new(5, 6),
            new_inode: Some(metrofs_core::NewInode {
                ino: Ino(3),
                gen: Gen(2),
            }),
            body: OpBody::Create {
                dir: Ino(1),
                name: b"name".to_vec(),
                how: CreateHow::Exclusive(*b"12345678"),
                mode: 0o644,
                uid: 1,
                gid: 2,
            },
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (j, replay) = Journal::open(dir.path(), 10).expect("open");
        assert!(replay.is_empty());
        j.finish_replay().expect("finish");
        let o = op();
        let sync = SyncOp::Verifier {
            ino: Ino(3),
            gen: Gen(2),
            verifier: None,
        };
        let payloads = [
            RecRef::Op(&o).encode().expect("enc"),
            RecRef::Write {
                fs: FsId(7),
                ino: Ino(3),
                gen: Gen(2),
                end: 99,
                time: Time::new(1, 2),
            }
            .encode()
            .expect("enc"),
            RecRef::Sync {
                fs: FsId(7),
                op: &sync,
            }
            .encode()
            .expect("enc"),
            RecRef::FreeOrphans { fs: FsId(7) }.encode().expect("enc"),
        ];
        for p in &payloads {
            j.append(p).expect("append");
        }
        drop(j);
        let (_, replay) = Journal::open(dir.path(), 10).expect("reopen");
        assert_eq!(
            replay.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![11, 12, 13, 14]
        );
        let recs: Vec<Rec> = replay
            .iter()
            .map(|(_, p)| postcard::from_bytes(p).expect("decode"))
            .collect();
        assert!(matches!(&recs[0], Rec::Op(x) if *x == o));
        assert!(matches!(recs[1], Rec::Write { end: 99, .. }));
        assert!(matches!(&recs[2], Rec::Sync { op, .. } if *op == sync));
        assert!(matches!(recs[3], Rec::FreeOrphans { fs: FsId(7) }));
        // Covered records are not replayed; a torn last record ends the replay.
        let (_, replay) = Journal::open(dir.path(), 12).expect("reopen");
        assert_eq!(replay.iter().map(|r| r.0).collect::<Vec<_>>(), vec![13, 14]);
        let p = dir.path().join(FILE_NAMES[0]);
        let end: usize = payloads.iter().map(|p| HEADER_BYTES + p.len()).sum();
        let mut b = std::fs::read(&p).expect("read");
        // A record torn by the kill: its last byte never written.
        b[end - 1] ^= 0x5a;
        std::fs::write(&p, &b).expect("write");
        let (_, replay) = Journal::open(dir.path(), 10).expect("reopen");
        assert_eq!(replay.len(), 3, "the torn record is left out");
        // A damaged byte in the middle ends the replay there.
        let mut b = std::fs::read(&p).expect("read");
        let second = HEADER_BYTES + payloads[0].len() + HEADER_BYTES;
        b[second] ^= 0xff;
        std::fs::write(&p, &b).expect("write");
        let (_, replay) = Journal::open(dir.path(), 10).expect("reopen");
        assert_eq!(replay.len(), 1);
    }

    #[test]
    fn seal_rotates_and_a_released_file_is_reused_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (j, _) = Journal::open(dir.path(), 0).expect("open");
        j.finish_replay().expect("finish");
        let payload = RecRef::FreeOrphans { fs: FsId(1) }.encode().expect("enc");
        let rec = (HEADER_BYTES + payload.len()) as u64;
        for _ in 0..5 {
            j.append(&payload).expect("append");
        }
        let seal = j.seal();
        assert_eq!(seal.lsn, 5);
        // Appended during the durable commit: the other file.
        j.append(&payload).expect("append");
        j.release(&seal).expect("release");
        assert_eq!(j.bytes(), rec);
        // Files grew in steps: the appends did not change their size.
        let size = |i: usize| {
            std::fs::metadata(dir.path().join(FILE_NAMES[i]))
                .expect("stat")
                .len()
        };
        assert_eq!((size(0), size(1)), (GROW_BYTES, GROW_BYTES));
        // The next seal goes back to file 0, which is written from its start again: the
        // records 1..=5 past the new one are covered ones.
        let seal = j.seal();
        assert_eq!(seal.lsn, 6);
        j.append(&payload).expect("append");
        j.append(&b"a longer payload than the others"[..])
            .expect("append");
        j.release(&seal).expect("release");
        drop(j);
        // A crash now: the durable commit covered 6.
        let (_, replay) = Journal::open(dir.path(), 6).expect("reopen");
        assert_eq!(replay.iter().map(|r| r.0).collect::<Vec<_>>(), vec![7, 8]);
        // Or only 5 (the second seal's commit was not durable): 6, 7, 8 follow.
        let (_, replay) = Journal::open(dir.path(), 5).expect("reopen");
        assert_eq!(
            replay.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![6, 7, 8]
        );
        // A seal with nothing appended since rotates nothing.
        let (j, _) = Journal::open(dir.path(), 8).expect("reopen");
        j.finish_replay().expect("finish");
        let s = j.seal();
        assert_eq!(s.lsn, 8);
        assert!(s.old.is_none());
        j.release(&s).expect("release");
    }

    /// What `flush` syncs: the files holding records no flush or durable commit covers, and
    /// nothing when every record is covered.
    #[test]
    fn a_flush_covers_the_records_before_it_and_a_durable_commit_covers_its_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (j, _) = Journal::open(dir.path(), 0).expect("open");
        j.finish_replay().expect("finish");
        let synced = |j: &Journal| j.synced.done();
        let unsynced = |j: &Journal| lock(&j.state).unsynced;
        let payload = RecRef::FreeOrphans { fs: FsId(1) }.encode().expect("enc");
        j.append(&payload).expect("append");
        j.append(&payload).expect("append");
        assert_eq!((synced(&j), unsynced(&j)), (0, [true, false]));
        j.flush().expect("flush");
        assert_eq!((synced(&j), unsynced(&j)), (2, [false, false]));
        // A seal moves the appends to file 1; until its commit is durable, a flush syncs both.
        j.append(&payload).expect("append");
        let seal = j.seal();
        j.append(&payload).expect("append");
        assert_eq!(unsynced(&j), [true, true]);
        // The durable commit covers file 0's records: released, it needs no flush.
        j.release(&seal).expect("release");
        assert_eq!((synced(&j), unsynced(&j)), (3, [false, true]));
        j.flush().expect("flush");
        assert_eq!((synced(&j), unsynced(&j)), (4, [false, false]));
        // The file grew with zeros, not a hole: its blocks are there before any record.
        let meta = std::fs::metadata(dir.path().join(FILE_NAMES[1])).expect("stat");
        assert_eq!(meta.len(), GROW_BYTES);
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 >= GROW_BYTES,
            "{} bytes allocated of {GROW_BYTES}",
            meta.blocks() * 512
        );
    }
}
