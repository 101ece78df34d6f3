//! `Store::check` (fsck) and `Store::image` (a comparable walk of a whole fs).
//!
//! Both read one consistent snapshot: redb's committed state with the in-memory inode records
//! laid over it, taken under the transaction lock (no op changes the metadata meanwhile).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use metrofs_core::{FileType, FsId, Ino, Time, ROOT_INO};
use redb::{ReadableDatabase, ReadableTable};

use crate::apply::{check_name, NameUse};
use crate::data::{self, BUCKETS};
use crate::rec::{Inode, Kind};
use crate::store::{lock, Store, ALLOC, DIRENTS, FREE, INODES, SLOTS};

/// One inode of an [`FsImage`]: every attribute except atime and `used` (the local file
/// system's allocation, which differs between arrays holding the same bytes), its entries if a
/// directory, its target if a symlink, a hash of its bytes if a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInode {
    pub gen: u64,
    pub ftype: FileType,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Time,
    pub ctime: Time,
    /// Regular file: its exclusive-create verifier.
    pub verifier: Option<[u8; 8]>,
    /// Symlink: its target.
    pub target: Option<Vec<u8>>,
    /// Directory: its parent and next READDIR slot.
    pub parent: Option<u64>,
    pub next_slot: Option<u64>,
    /// Directory: name → (slot, ino).
    pub entries: Option<BTreeMap<Vec<u8>, (u64, u64)>>,
    /// Regular file: xxh3-128 of its bytes (holes and written zeros hash alike).
    pub content: Option<u128>,
}

/// The whole state of one fs as two arrays holding the same fs must agree on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsImage {
    /// Next never-used inode number.
    pub next_ino: u64,
    /// Live inodes.
    pub files: u64,
    /// Freed numbers → the generation they last had.
    pub free: BTreeMap<u64, u64>,
    pub inodes: BTreeMap<u64, ImageInode>,
}

impl FsImage {
    /// Where two images differ, one line each (at most `max` lines); empty when equal.
    #[must_use]
    pub fn diff(&self, other: &FsImage, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        if self.next_ino != other.next_ino {
            out.push(format!(
                "next inode {} vs {}",
                self.next_ino, other.next_ino
            ));
        }
        if self.files != other.files {
            out.push(format!("live inodes {} vs {}", self.files, other.files));
        }
        if self.free != other.free {
            out.push(format!("free inodes {:?} vs {:?}", self.free, other.free));
        }
        let keys: std::collections::BTreeSet<u64> = self
            .inodes
            .keys()
            .chain(other.inodes.keys())
            .copied()
            .collect();
        for k in keys {
            match (self.inodes.get(&k), other.inodes.get(&k)) {
                (Some(a), Some(b)) if a != b => out.push(format!("inode {k}: {a:?} vs {b:?}")),
                (Some(_), None) => out.push(format!("inode {k} only on the left")),
                (None, Some(_)) => out.push(format!("inode {k} only on the right")),
                _ => {}
            }
        }
        out.truncate(max);
        out
    }
}

struct Snapshot {
    inodes: BTreeMap<u64, Inode>,
    /// (dir, name) → (slot, ino)
    dirents: BTreeMap<(u64, Vec<u8>), (u64, u64)>,
    /// (dir, slot) → (ino, name)
    slots: BTreeMap<(u64, u64), (u64, Vec<u8>)>,
    free: BTreeMap<u64, u64>,
    alloc: Option<(u64, u64)>,
    trash_pending: Vec<PathBuf>,
    errors: Vec<String>,
}

impl Store {
    fn snapshot(&self, fs: FsId) -> Result<Snapshot, String> {
        let ts = lock(&self.txn);
        let f = fs.0;
        let mut s = Snapshot {
            inodes: BTreeMap::new(),
            dirents: BTreeMap::new(),
            slots: BTreeMap::new(),
            free: BTreeMap::new(),
            alloc: None,
            trash_pending: ts.trash_pending(),
            errors: Vec::new(),
        };
        let r = self.db.begin_read().map_err(|e| e.to_string())?;
        let e = |e: redb::Error| e.to_string();
        {
            let t = r.open_table(INODES).map_err(|x| e(x.into()))?;
            for row in t.range((f, 0)..=(f, u64::MAX)).map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let ino = k.value().1;
                match Inode::decode(v.value()) {
                    Ok(i) => {
                        s.inodes.insert(ino, i);
                    }
                    Err(m) => s.errors.push(format!("inode {ino}: {m}")),
                }
            }
        }
        {
            let c = lock(&self.cache);
            for ((cfs, ino), entry) in &c.map {
                if *cfs == fs {
                    match &entry.inode {
                        Some(i) => s.inodes.insert(ino.0, i.clone()),
                        None => s.inodes.remove(&ino.0),
                    };
                }
            }
        }
        {
            let t = r.open_table(DIRENTS).map_err(|x| e(x.into()))?;
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (kf, dir, name) = k.value();
                if kf == f {
                    s.dirents.insert((dir, name.to_vec()), v.value());
                }
            }
        }
        {
            let t = r.open_table(SLOTS).map_err(|x| e(x.into()))?;
            for row in t
                .range((f, 0, 0)..=(f, u64::MAX, u64::MAX))
                .map_err(|x| e(x.into()))?
            {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (_, dir, slot) = k.value();
                let (ino, name) = v.value();
                s.slots.insert((dir, slot), (ino, name.to_vec()));
            }
        }
        {
            let t = r.open_table(FREE).map_err(|x| e(x.into()))?;
            for row in t.range((f, 0)..=(f, u64::MAX)).map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                s.free.insert(k.value().1, v.value());
            }
            let t = r.open_table(ALLOC).map_err(|x| e(x.into()))?;
            s.alloc = t.get(f).map_err(|x| e(x.into()))?.map(|v| v.value());
        }
        drop(ts);
        Ok(s)
    }

    /// fsck of one fs: every problem found, one line each; empty means consistent. Checks
    /// entries against inodes and slots, link counts (files: their entries; directories:
    /// 2 + subdirectories, one entry, in their parent), the allocator (free and live numbers
    /// apart, counts), directory parents reaching the root, and data files (one per live
    /// regular inode at most, never longer than its size; no trash but pending removals).
    #[must_use]
    pub fn check(&self, fs: FsId) -> Vec<String> {
        if self.fs_by_id(fs).is_none() {
            return vec![format!("no file system {fs}")];
        }
        let s = match self.snapshot(fs) {
            Ok(s) => s,
            Err(e) => return vec![format!("reading the metadata: {e}")],
        };
        let mut p = s.errors.clone();
        let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
        match s.inodes.get(&ROOT_INO.0) {
            Some(Inode {
                kind: Kind::Dir { parent, .. },
                ..
            }) if *parent == ROOT_INO => {}
            Some(_) => p.push("root is not a directory that is its own parent".into()),
            None => p.push("root inode missing".into()),
        }
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut subdirs: HashMap<u64, u32> = HashMap::new();
        let mut named_in: HashMap<u64, u64> = HashMap::new();
        for ((dir, n), (slot, ino)) in &s.dirents {
            let at = format!("entry {dir}/{}", name(n));
            match s.inodes.get(dir) {
                Some(Inode {
                    kind: Kind::Dir { next_slot, .. },
                    ..
                }) => {
                    if slot >= next_slot {
                        p.push(format!(
                            "{at}: slot {slot} not below the directory's next slot {next_slot}"
                        ));
                    }
                }
                Some(_) => p.push(format!("{at}: in a non-directory")),
                None => p.push(format!("{at}: in a missing directory")),
            }
            if check_name(n, NameUse::Create).is_err() {
                p.push(format!("{at}: invalid name"));
            }
            match s.slots.get(&(*dir, *slot)) {
                Some((sino, sname)) if sino == ino && sname == n => {}
                other => p.push(format!("{at}: slot {slot} holds {other:?}")),
            }
            match s.inodes.get(ino) {
                None => p.push(format!("{at}: names missing inode {ino}")),
                Some(i) => {
                    *links.entry(*ino).or_default() += 1;
                    if i.is_dir() {
                        *subdirs.entry(*dir).or_default() += 1;
                        named_in.insert(*ino, *dir);
                    }
                }
            }
        }
        if s.slots.len() != s.dirents.len() {
            p.push(format!(
                "{} slots for {} entries",
                s.slots.len(),
                s.dirents.len()
            ));
        }
        let (next, files) = s.alloc.unwrap_or_else(|| {
            p.push("no allocator row".into());
            (0, 0)
        });
        if files != s.inodes.len() as u64 {
            p.push(format!(
                "allocator counts {files} inodes, {} are live",
                s.inodes.len()
            ));
        }
        for (ino, i) in &s.inodes {
            let at = format!("inode {ino}");
            if *ino >= next {
                p.push(format!("{at}: not below the next never-used number {next}"));
            }
            if s.free.contains_key(ino) {
                p.push(format!("{at}: live and free"));
            }
            if i.gen.0 == 0 {
                p.push(format!("{at}: generation 0"));
            }
            let n = links.get(ino).copied().unwrap_or(0);
            match &i.kind {
                Kind::Dir { parent, .. } => {
                    let want = 2 + subdirs.get(ino).copied().unwrap_or(0);
                    if i.nlink != want {
                        p.push(format!(
                            "{at}: directory nlink {} but 2 + {} subdirectories",
                            i.nlink,
                            want - 2
                        ));
                    }
                    if *ino == ROOT_INO.0 {
                        if n != 0 {
                            p.push(format!("{at}: the root is named by {n} entries"));
                        }
                    } else {
                        if n != 1 {
                            p.push(format!("{at}: directory named by {n} entries"));
                        }
                        if named_in.get(ino) != Some(&parent.0) {
                            p.push(format!(
                                "{at}: parent {parent} but named in {:?}",
                                named_in.get(ino)
                            ));
                        }
                        // Up to the root without a loop.
                        let mut cur = parent.0;
                        let mut steps = 0;
                        while cur != ROOT_INO.0 && steps <= s.inodes.len() {
                            cur = match s.inodes.get(&cur) {
                                Some(Inode {
                                    kind: Kind::Dir { parent, .. },
                                    ..
                                }) => parent.0,
                                _ => break,
                            };
                            steps += 1;
                        }
                        if cur != ROOT_INO.0 {
                            p.push(format!("{at}: its parents do not reach the root"));
                        }
                    }
                }
                Kind::File { .. } | Kind::Symlink { .. } => {
                    if n == 0 {
                        p.push(format!("{at}: orphan (no entry names it)"));
                    } else if i.nlink != n {
                        p.push(format!("{at}: nlink {} but {n} entries", i.nlink));
                    }
                    if let Kind::Symlink { target } = &i.kind {
                        if target.is_empty() || i.size != target.len() as u64 {
                            p.push(format!(
                                "{at}: symlink target of {} bytes, size {}",
                                target.len(),
                                i.size
                            ));
                        }
                    }
                }
            }
        }
        for ino in s.free.keys() {
            if *ino >= next {
                p.push(format!(
                    "free inode {ino}: not below the next never-used number {next}"
                ));
            }
        }
        // Data files.
        for b in 0..BUCKETS {
            let dir = data::bucket_path(&self.root, fs, b);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    p.push(format!("data directory {}: {e}", dir.display()));
                    continue;
                }
            };
            for e in rd.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let ino = fname
                    .parse::<u64>()
                    .ok()
                    .filter(|i| data::bucket_of(Ino(*i)) == b);
                match ino.and_then(|i| s.inodes.get(&i).map(|n| (i, n))) {
                    Some((i, n)) if n.is_file() => {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        if len > n.size {
                            p.push(format!(
                                "inode {i}: data file of {len} bytes, size {}",
                                n.size
                            ));
                        }
                    }
                    _ => p.push(format!(
                        "data file {} has no live regular inode",
                        e.path().display()
                    )),
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(data::trash_dir(&self.root, fs)) {
            for e in rd.flatten() {
                if !s.trash_pending.contains(&e.path()) {
                    p.push(format!(
                        "trash {} is no pending removal",
                        e.path().display()
                    ));
                }
            }
        }
        p
    }

    /// The whole fs as a comparable value (see [`FsImage`]); reads every file's bytes.
    pub fn image(&self, fs: FsId) -> Result<FsImage, metrofs_core::FsError> {
        self.check_fs(fs)?;
        let s = self.snapshot(fs).map_err(metrofs_core::FsError::Io)?;
        if let Some(e) = s.errors.first() {
            return Err(metrofs_core::FsError::Io(e.clone()));
        }
        let (next_ino, files) = s.alloc.unwrap_or((0, 0));
        let mut entries: HashMap<u64, BTreeMap<Vec<u8>, (u64, u64)>> = HashMap::new();
        for ((dir, name), v) in &s.dirents {
            entries.entry(*dir).or_default().insert(name.clone(), *v);
        }
        let mut inodes = BTreeMap::new();
        for (ino, i) in &s.inodes {
            let mut im = ImageInode {
                gen: i.gen.0,
                ftype: i.ftype(),
                mode: i.mode,
                nlink: i.nlink,
                uid: i.uid,
                gid: i.gid,
                size: i.size,
                mtime: i.mtime,
                ctime: i.ctime,
                verifier: None,
                target: None,
                parent: None,
                next_slot: None,
                entries: None,
                content: None,
            };
            match &i.kind {
                Kind::File { verifier } => {
                    im.verifier = *verifier;
                    im.content = Some(self.content_hash(fs, Ino(*ino), i.size)?);
                }
                Kind::Dir { parent, next_slot } => {
                    im.parent = Some(parent.0);
                    im.next_slot = Some(*next_slot);
                    im.entries = Some(entries.remove(ino).unwrap_or_default());
                }
                Kind::Symlink { target } => im.target = Some(target.clone()),
            }
            inodes.insert(*ino, im);
        }
        Ok(FsImage {
            next_ino,
            files,
            free: s.free,
            inodes,
        })
    }

    /// Hash of the logical bytes `0..size`: non-zero 1 MiB chunks as they are, runs of zero
    /// bytes (holes or written zeros alike) by their length, so a huge sparse file costs only
    /// what its data file holds.
    fn content_hash(&self, fs: FsId, ino: Ino, size: u64) -> Result<u128, metrofs_core::FsError> {
        const CHUNK: u64 = 1 << 20;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&size.to_le_bytes());
        let mut zero_run = 0u64;
        let file = self.fds.get(fs, ino, false)?;
        let len = match &file {
            Some((f, _)) => f.file.metadata().map(|m| m.len()).unwrap_or(0).min(size),
            None => 0,
        };
        let mut buf = vec![0u8; CHUNK as usize];
        // Chunks on a fixed grid over 0..size, so the data file's length does not matter.
        let mut off = 0;
        while off < size {
            if off >= len {
                zero_run += size - off;
                break;
            }
            if let Some((f, _)) = &file {
                // Skip whole chunks of hole without reading them (SEEK_DATA; no data past
                // `off` at all is ENXIO).
                let next_data = match rustix::fs::seek(&f.file, rustix::fs::SeekFrom::Data(off)) {
                    Ok(d) => d,
                    Err(rustix::io::Errno::NXIO) => len,
                    Err(_) => off,
                };
                let skip_to = (next_data.min(len) / CHUNK * CHUNK).max(off);
                if skip_to > off {
                    zero_run += skip_to - off;
                    off = skip_to;
                    continue;
                }
            }
            let n = CHUNK.min(size - off) as usize;
            if let Some((f, _)) = &file {
                data::read_zero_filled(&f.file, &f.path, off, &mut buf[..n])?;
            }
            if buf[..n].iter().all(|b| *b == 0) {
                zero_run += n as u64;
            } else {
                if zero_run > 0 {
                    h.update(b"Z");
                    h.update(&zero_run.to_le_bytes());
                    zero_run = 0;
                }
                h.update(b"D");
                h.update(&buf[..n]);
            }
            off += n as u64;
        }
        if zero_run > 0 {
            h.update(b"Z");
            h.update(&zero_run.to_le_bytes());
        }
        Ok(h.digest128())
    }
}
