//! File data: one sparse file per regular inode, and a bounded cache of open descriptors.
//!
//! Layout under the store's directory:
//! - `data/<fs id, 16 hex>/<bucket, 2 hex>/<ino decimal>`: the bytes of a regular file. Absent
//!   until the first write. Its length never exceeds the inode's size (bytes past it are
//!   truncated away at recovery); everything between its length and the size reads as zeros,
//!   and holes stay holes.
//! - `data/<fs id>/trash/<ino>.<gen>`: the data of a file whose last link went, kept until that
//!   removal is durable in the metadata. A crash before that puts it back (see `recovery`).
//!
//! The metadata (redb) is the truth; data files follow it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use metrofs_core::{FsError, FsId, Gen, Ino};

/// Open data files kept at once. A descriptor per file being written or read saves an
/// open+close per 4 KiB WRITE; more than this many files in use at once reopen on a miss.
pub(crate) const OPEN_FILES_MAX: usize = 256;
/// Buckets per file system: spreads 100 000s of data files over directories of a few 1000 each.
pub(crate) const BUCKETS: u64 = 256;

pub(crate) fn fs_dir(root: &Path, fs: FsId) -> PathBuf {
    root.join("data").join(format!("{:016x}", fs.0))
}

/// Consecutive inode numbers (made together, committed together) share a bucket, so one
/// directory fsync covers a burst of new files.
pub(crate) const INODES_PER_BUCKET_RUN: u64 = 1024;

pub(crate) fn bucket_of(ino: Ino) -> u64 {
    (ino.0 / INODES_PER_BUCKET_RUN) % BUCKETS
}

pub(crate) fn bucket_dir(root: &Path, fs: FsId, ino: Ino) -> PathBuf {
    bucket_path(root, fs, bucket_of(ino))
}

/// Bucket directory number `b` (0..BUCKETS).
pub(crate) fn bucket_path(root: &Path, fs: FsId, b: u64) -> PathBuf {
    fs_dir(root, fs).join(format!("{b:02x}"))
}

pub(crate) fn data_path(root: &Path, fs: FsId, ino: Ino) -> PathBuf {
    // One allocation: this runs for every data file opened.
    root.join(format!(
        "data/{:016x}/{:02x}/{}",
        fs.0,
        bucket_of(ino),
        ino.0
    ))
}

pub(crate) fn trash_dir(root: &Path, fs: FsId) -> PathBuf {
    fs_dir(root, fs).join("trash")
}

pub(crate) fn trash_path(root: &Path, fs: FsId, ino: Ino, gen: Gen) -> PathBuf {
    trash_dir(root, fs).join(format!("{}.{}", ino.0, gen.0))
}

/// Maps a local I/O error to what the op answers: a full disk is the client's NOSPC (the array
/// goes on), anything else is a local failure (fatal, STYLE 9).
pub(crate) fn io_err(what: &str, path: &Path, e: &std::io::Error) -> FsError {
    match e.raw_os_error() {
        Some(c)
            if c == rustix::io::Errno::NOSPC.raw_os_error()
                || c == rustix::io::Errno::DQUOT.raw_os_error() =>
        {
            FsError::NoSpace
        }
        Some(c) if c == rustix::io::Errno::FBIG.raw_os_error() => FsError::FBig,
        _ => FsError::Io(format!("{what} {}: {e}", path.display())),
    }
}

/// Bytes the local file system allocated for a data file.
pub(crate) fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.blocks() * 512
}

/// A twin writes a replicated WRITE of at least this many bytes with `O_DIRECT` (see
/// [`DataFile::write`]), when its offset, length and buffer are [`DIRECT_ALIGN`]-aligned.
pub const DIRECT_WRITE_MIN_BYTES: usize = 128 * 1024;
/// The alignment `O_DIRECT` asks of offset, length and memory: a page covers any block size
/// up to 4 KiB.
pub const DIRECT_ALIGN: usize = 4096;

/// Whether `bytes` at `offset` may be written with `O_DIRECT`.
pub(crate) fn direct_fits(offset: u64, bytes: &[u8]) -> bool {
    bytes.len() >= DIRECT_WRITE_MIN_BYTES
        && offset.is_multiple_of(DIRECT_ALIGN as u64)
        && bytes.len().is_multiple_of(DIRECT_ALIGN)
        && (bytes.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
}

/// An open data file.
pub(crate) struct DataFile {
    pub file: File,
    pub path: PathBuf,
    /// The same file opened again with `O_DIRECT`, on first use; `None` when the local file
    /// system refuses `O_DIRECT` (tmpfs on older kernels): writes then go through the cache.
    direct: std::sync::OnceLock<Option<File>>,
}

impl DataFile {
    /// Writes `bytes` at `offset`. With `past_cache`, and when [`direct_fits`], straight to the
    /// disk ([`DataFile::write_direct`]); through the page cache otherwise, or when the local
    /// file system refuses that.
    pub fn write(&self, bytes: &[u8], offset: u64, past_cache: bool) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        if past_cache && direct_fits(offset, bytes) && self.write_direct(bytes, offset)? {
            return Ok(());
        }
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| io_err("writing", &self.path, &e))
    }

    /// Writes `bytes` at `offset` straight to the disk, past the page cache. `Ok(false)` when
    /// that is not possible here (no `O_DIRECT` on this file system, or it refused this
    /// alignment): the caller writes through the cache instead, rewriting anything written
    /// here (the same bytes).
    ///
    /// Only for data nothing here is about to read: a twin's copy of large writes. Host reads
    /// stay on the serving side, so caching the twin's copy would cost a copy of every byte
    /// into its page cache and the write-back later, for nothing until a failover (when reads
    /// come from the disk, as after a restart). The kernel keeps it coherent with the cache:
    /// cached pages of the range are written back and dropped first.
    fn write_direct(&self, bytes: &[u8], offset: u64) -> Result<bool, FsError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let direct = self.direct.get_or_init(|| {
            // Through /proc, the very file this descriptor has open, wherever it was renamed.
            let again = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                .open(again)
                .ok()
        });
        let Some(direct) = direct else {
            return Ok(false);
        };
        // A direct write that allocates blocks or moves the end of the file holds the inode
        // exclusively until the disk has it, so concurrent writes appending to one file would
        // reach the disk one at a time. Allocated first (the end moves with it, as the write
        // is about to move it), the write is a plain overwrite, and overwrites run side by
        // side. Where the file system cannot allocate ahead, the write does it itself.
        let end = offset + bytes.len() as u64;
        let past_end = self
            .file
            .metadata()
            .map(|m| m.len() < end)
            .map_err(|e| io_err("stat of", &self.path, &e))?;
        if past_end {
            let len = bytes.len() as u64;
            match rustix::fs::fallocate(
                &self.file,
                rustix::fs::FallocateFlags::empty(),
                offset,
                len,
            ) {
                Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => {}
                Err(e) => return Err(io_err("allocating", &self.path, &e.into())),
            }
        }
        match direct.write_all_at(bytes, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                Ok(false)
            }
            Err(e) => Err(io_err("writing (direct)", &self.path, &e)),
        }
    }
}

#[derive(Default)]
struct FdCacheInner {
    map: HashMap<(FsId, Ino), (Arc<DataFile>, u64)>,
    tick: u64,
}

/// Open descriptors of data files, at most [`OPEN_FILES_MAX`], least recently used evicted.
/// A user keeps its `Arc` while it works, so evicting never closes a file under a write.
pub(crate) struct FdCache {
    root: PathBuf,
    inner: Mutex<FdCacheInner>,
}

impl FdCache {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            inner: Mutex::new(FdCacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FdCacheInner> {
        // A panic while holding this lock leaves only a map of open files: still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The open data file of `ino`. With `create`, makes it if absent and says so (its bucket
    /// directory then needs an fsync before the file's existence is durable); without, `None`
    /// when there is no data file.
    pub fn get(
        &self,
        fs: FsId,
        ino: Ino,
        create: bool,
    ) -> Result<Option<(Arc<DataFile>, bool)>, FsError> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        if let Some((f, used)) = g.map.get_mut(&(fs, ino)) {
            *used = tick;
            return Ok(Some((f.clone(), false)));
        }
        let path = data_path(&self.root, fs, ino);
        let open = || OpenOptions::new().read(true).write(true).open(&path);
        let (file, created) = if create {
            // Made first: a data file opened to be written and not open already is usually a
            // new file's (an open that fails first costs a second path walk per new file).
            let mut made_bucket = false;
            loop {
                let r = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path);
                match r {
                    Ok(f) => break (f, true),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => match open() {
                        Ok(f) => break (f, false),
                        Err(e) => return Err(io_err("opening data file", &path, &e)),
                    },
                    Err(e) if e.kind() == ErrorKind::NotFound && !made_bucket => {
                        // Buckets are made on first use: most file systems never fill all.
                        made_bucket = true;
                        make_bucket(&self.root, fs, ino)?;
                    }
                    Err(e) => return Err(io_err("creating data file", &path, &e)),
                }
            }
        } else {
            match open() {
                Ok(f) => (f, false),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("opening data file", &path, &e)),
            }
        };
        let df = Arc::new(DataFile {
            file,
            path,
            direct: std::sync::OnceLock::new(),
        });
        // Full: the least recently used eighth goes in one scan (a scan per new file was 1 %
        // of an array's CPU making small files), closed after the lock is released.
        let mut evicted = Vec::new();
        if g.map.len() >= OPEN_FILES_MAX {
            let mut by_use: Vec<(u64, (FsId, Ino))> =
                g.map.iter().map(|(k, (_, used))| (*used, *k)).collect();
            let n = (OPEN_FILES_MAX / 8).max(1);
            by_use.select_nth_unstable(n - 1);
            for (_, k) in &by_use[..n] {
                evicted.extend(g.map.remove(k));
            }
        }
        g.map.insert((fs, ino), (df.clone(), tick));
        drop(g);
        drop(evicted);
        Ok(Some((df, created)))
    }

    /// Forgets the descriptor of `ino` (its data file is being moved or deleted).
    pub fn forget(&self, fs: FsId, ino: Ino) {
        self.lock().map.remove(&(fs, ino));
    }

    pub fn forget_fs(&self, fs: FsId) {
        self.lock().map.retain(|(f, _), _| *f != fs);
    }

    /// The cached descriptor only (no open): for cheap `used` look-ups.
    pub fn cached(&self, fs: FsId, ino: Ino) -> Option<Arc<DataFile>> {
        self.lock().map.get(&(fs, ino)).map(|(f, _)| f.clone())
    }
}

/// Makes the bucket directory of `ino`, durably: a data file made in it may be fsync'd and
/// relied on before anything else syncs the fs directory.
fn make_bucket(root: &Path, fs: FsId, ino: Ino) -> Result<(), FsError> {
    let dir = bucket_dir(root, fs, ino);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        // The fs directory is gone: the fs was deleted while this op ran.
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(FsError::NoFs),
        Err(e) => return Err(io_err("creating directory", &dir, &e)),
    }
    // Durability order: the bucket's entry in the fs directory is durable before any data file
    // in it can be reported durable (a COMMIT fsyncs the file and its bucket, not the fs dir).
    fsync_dir(&fs_dir(root, fs))
}

/// Reads `len` bytes at `offset` from `file`, zeros past its end.
pub(crate) fn read_zero_filled(
    file: &File,
    path: &Path,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), FsError> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading data file", path, &e)),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// Reads `n` bytes at `offset` into a new buffer, zeros past the data file's end. The buffer
/// is not cleared first (a 1 MiB READ would otherwise spend its time in `memset`).
pub(crate) fn read_vec(
    file: &File,
    path: &Path,
    offset: u64,
    n: usize,
) -> Result<Vec<u8>, FsError> {
    let mut buf: Vec<u8> = Vec::with_capacity(n);
    while buf.len() < n {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err("reading data file", path, &std::io::Error::from(e))),
        }
    }
    buf.resize(n, 0);
    Ok(buf)
}

/// fsyncs a directory, so that the entries made in it are durable.
pub(crate) fn fsync_dir(path: &Path) -> Result<(), FsError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::Io(format!("fsync of directory {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_is_in_its_bucket() {
        let root = Path::new("/srv/metrofs");
        for ino in [Ino(1), Ino(1023), Ino(1024), Ino(123_456_789)] {
            let fs = FsId(0xabc);
            assert_eq!(data_path(root, fs, ino), bucket_dir(root, fs, ino).join(ino.0.to_string()));
            assert!(data_path(root, fs, ino).starts_with(fs_dir(root, fs)));
        }
    }

    #[test]
    fn the_descriptor_cache_stays_bounded_and_keeps_the_recent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FdCache::new(dir.path().to_owned());
        let fs = FsId(1);
        std::fs::create_dir_all(fs_dir(dir.path(), fs)).expect("fs dir");
        let n = OPEN_FILES_MAX as u64 + 40;
        for i in 1..=n {
            let (_, created) = cache.get(fs, Ino(i), true).expect("get").expect("file");
            assert!(created);
            // Inode 1 stays in use: never the least recently used.
            cache.get(fs, Ino(1), false).expect("get").expect("file");
        }
        let g = cache.lock();
        assert!(g.map.len() <= OPEN_FILES_MAX, "{} open", g.map.len());
        assert!(g.map.contains_key(&(fs, Ino(1))) && g.map.contains_key(&(fs, Ino(n))));
        assert!(!g.map.contains_key(&(fs, Ino(2))), "the oldest went");
    }
}
