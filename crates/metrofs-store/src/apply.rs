//! `Store::apply`: the deterministic op.
//!
//! Same state + same `FsOp` ⇒ same state + same `OpReply` (or `FsError`), on any array. Nothing
//! is invented: a new inode's number and generation come from `op.new_inode`, every time set is
//! `op.time` or a time the body names. Reads never change anything (no atime).
//!
//! Namespace and attribute ops run as one metadata transaction through a [`Ctx`]: they check
//! everything first, then stage their changes; an error aborts the transaction, so a failed op
//! changes nothing. WRITE and COMMIT do not need a transaction (see `store.rs`).
//!
//! Times (POSIX, RFC 1813): an op that adds or removes an entry sets the directory's mtime and
//! ctime; a WRITE moves the file's mtime and ctime up to its time (never back, so writes to
//! disjoint ranges commute); a SETATTR that changes anything sets ctime, and a size change also
//! mtime (unless the SETATTR sets mtime itself); LINK, and REMOVE of one of several links, set
//! the file's ctime; RENAME sets the renamed object's ctime.
//!
//! Names: longer than `NAME_MAX_BYTES` is NAMETOOLONG. "." and ".." as the name to create are
//! EXIST (they exist), as the name to remove or rename INVAL; an empty name or one with '/' or
//! NUL is INVAL (LOOKUP: NOENT, such a name cannot exist).

use std::collections::BTreeMap;

use metrofs_core::{
    Attr, CreateHow, FileType, FsError, FsId, FsOp, Ino, NewInode, OpBody, OpReply, SetAttr,
    SetTime, Stability, Time, WccAttr, FILE_SIZE_MAX_BYTES, NAME_MAX_BYTES, ROOT_INO,
    SYMLINK_MAX_BYTES,
};
use redb::{ReadableTable, Table, WriteTransaction};

use crate::data;
use crate::journal::RecRef;
use crate::rec::{Inode, Kind};

pub(crate) mod sync;
use crate::store::{
    corrupt, db_err, lock, AttrCache, CacheEntry, CacheState, Store, ALLOC, DIRENTS,
    DIR_SIZE_BYTES, FIRST_SLOT, FREE, INODES, LINKS_MAX, SIZE_STRIPES, SLOTS,
};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum NameUse {
    Create,
    Remove,
    Lookup,
}

/// Checks a name given to an op (see the module docs for which error when).
pub(crate) fn check_name(name: &[u8], usage: NameUse) -> Result<(), FsError> {
    if name.len() > NAME_MAX_BYTES {
        return Err(FsError::NameTooLong);
    }
    if name == b"." || name == b".." {
        return Err(match usage {
            NameUse::Create => FsError::Exist,
            NameUse::Remove | NameUse::Lookup => FsError::Inval,
        });
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(match usage {
            NameUse::Lookup => FsError::NoEnt,
            NameUse::Create | NameUse::Remove => FsError::Inval,
        });
    }
    Ok(())
}

/// Data-file work a transaction asks for, run after it commits.
pub(crate) enum Post {
    /// The last link of a regular file went: move its data to the trash (deleted once the
    /// removal is durable).
    Trash { ino: Ino, gen: metrofs_core::Gen },
    /// Cut the data file to `size` (the transaction commits durably first).
    Shrink { ino: Ino, size: u64 },
}

/// A metadata transaction of one op on one fs: reads see what the op staged, then the cache,
/// then redb.
pub(crate) struct Ctx<'t> {
    store: &'t Store,
    fs: FsId,
    time: Time,
    inodes: Table<'t, (u64, u64), &'static [u8]>,
    dirents: Table<'t, (u64, u64, &'static [u8]), (u64, u64)>,
    slots: Table<'t, (u64, u64, u64), (u64, &'static [u8])>,
    free: Table<'t, (u64, u64), u64>,
    alloc: Table<'t, u64, (u64, u64)>,
    cache: &'t mut AttrCache,
    staged: BTreeMap<Ino, Option<Inode>>,
    post: Vec<Post>,
    need_durable: bool,
    /// The transaction, for tables only some ops use (resync's orphans, see `sync`).
    w: &'t WriteTransaction,
}

fn wcc(a: &Attr) -> WccAttr {
    WccAttr::from(a)
}

impl<'t> Ctx<'t> {
    pub fn new(
        store: &'t Store,
        fs: FsId,
        time: Time,
        w: &'t WriteTransaction,
        cache: &'t mut AttrCache,
    ) -> Result<Self, FsError> {
        Ok(Ctx {
            store,
            fs,
            time,
            inodes: w.open_table(INODES).map_err(db_err)?,
            dirents: w.open_table(DIRENTS).map_err(db_err)?,
            slots: w.open_table(SLOTS).map_err(db_err)?,
            free: w.open_table(FREE).map_err(db_err)?,
            alloc: w.open_table(ALLOC).map_err(db_err)?,
            cache,
            staged: BTreeMap::new(),
            post: Vec::new(),
            need_durable: false,
            w,
        })
    }

    fn get(&self, ino: Ino) -> Result<Option<Inode>, FsError> {
        if let Some(v) = self.staged.get(&ino) {
            return Ok(v.clone());
        }
        if let Some(e) = self.cache.map.get(&(self.fs, ino)) {
            return Ok(e.inode.clone());
        }
        match self.inodes.get((self.fs.0, ino.0)).map_err(db_err)? {
            Some(v) => {
                Ok(Some(Inode::decode(v.value()).map_err(|e| {
                    corrupt(format!("inode {}/{ino}: {e}", self.fs))
                })?))
            }
            None => Ok(None),
        }
    }

    /// An inode the op names by handle: STALE when it does not exist.
    fn inode(&self, ino: Ino) -> Result<Inode, FsError> {
        self.get(ino)?.ok_or(FsError::Stale)
    }

    /// An inode a directory entry names: missing is corruption.
    fn named(&self, dir: Ino, ino: Ino) -> Result<Inode, FsError> {
        self.get(ino)?.ok_or_else(|| {
            corrupt(format!(
                "entry in {}/{dir} names missing inode {ino}",
                self.fs
            ))
        })
    }

    fn dir(&self, ino: Ino) -> Result<Inode, FsError> {
        let d = self.inode(ino)?;
        if d.is_dir() {
            Ok(d)
        } else {
            Err(FsError::NotDir)
        }
    }

    fn put(&mut self, ino: Ino, inode: Inode) {
        self.staged.insert(ino, Some(inode));
    }

    /// Attributes for a reply; a regular file's `used` is filled in after the commit.
    fn attr(&self, ino: Ino, i: &Inode) -> Attr {
        let used = match &i.kind {
            Kind::Dir { .. } => DIR_SIZE_BYTES,
            Kind::Symlink { target } => target.len() as u64,
            Kind::File { .. } => 0,
        };
        i.attr(ino, used)
    }

    fn dir_attr(&self, dir: Ino) -> Result<Attr, FsError> {
        let d = self.inode(dir)?;
        Ok(self.attr(dir, &d))
    }

    fn entry(&self, dir: Ino, name: &[u8]) -> Result<Option<(u64, Ino)>, FsError> {
        Ok(self
            .dirents
            .get((self.fs.0, dir.0, name))
            .map_err(db_err)?
            .map(|v| {
                let (slot, ino) = v.value();
                (slot, Ino(ino))
            }))
    }

    /// Adds `name` → `ino` to `dir` at the directory's next slot (its READDIR cookie).
    fn add_entry(&mut self, dir: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        let mut d = self.dir(dir)?;
        let Kind::Dir { next_slot, .. } = &mut d.kind else {
            return Err(FsError::NotDir);
        };
        let slot = *next_slot;
        *next_slot += 1;
        self.put(dir, d);
        let prev = self
            .dirents
            .insert((self.fs.0, dir.0, name), (slot, ino.0))
            .map_err(db_err)?;
        assert!(prev.is_none(), "add_entry over an existing name");
        drop(prev);
        let prev = self
            .slots
            .insert((self.fs.0, dir.0, slot), (ino.0, name))
            .map_err(db_err)?;
        assert!(prev.is_none(), "slot {slot} given twice");
        Ok(())
    }

    /// Adds `name` → `ino` to `dir` at READDIR slot `slot` (resync: the source's slot), which
    /// must be free and below the directory's next slot.
    fn add_entry_at(&mut self, dir: Ino, name: &[u8], ino: Ino, slot: u64) -> Result<(), FsError> {
        let d = self.dir(dir)?;
        let Kind::Dir { next_slot, .. } = d.kind else {
            return Err(FsError::NotDir);
        };
        if slot < FIRST_SLOT || slot >= next_slot {
            return Err(FsError::Inval);
        }
        let prev = self
            .dirents
            .insert((self.fs.0, dir.0, name), (slot, ino.0))
            .map_err(db_err)?;
        assert!(prev.is_none(), "add_entry_at over an existing name");
        drop(prev);
        let prev = self
            .slots
            .insert((self.fs.0, dir.0, slot), (ino.0, name))
            .map_err(db_err)?;
        assert!(prev.is_none(), "slot {slot} given twice");
        Ok(())
    }

    fn remove_entry(&mut self, dir: Ino, name: &[u8], slot: u64) -> Result<(), FsError> {
        let a = self
            .dirents
            .remove((self.fs.0, dir.0, name))
            .map_err(db_err)?
            .is_some();
        let b = self
            .slots
            .remove((self.fs.0, dir.0, slot))
            .map_err(db_err)?
            .is_some();
        if !(a && b) {
            return Err(corrupt(format!(
                "entry {}/{dir}/{} and its slot {slot} disagree",
                self.fs,
                String::from_utf8_lossy(name)
            )));
        }
        Ok(())
    }

    fn is_empty(&self, dir: Ino) -> Result<bool, FsError> {
        Ok(self
            .slots
            .range((self.fs.0, dir.0, 0)..=(self.fs.0, dir.0, u64::MAX))
            .map_err(db_err)?
            .next()
            .is_none())
    }

    /// Sets a directory's mtime and ctime (an entry was added or removed), adjusting its link
    /// count by `nlink_delta` (subdirectories added or removed).
    fn touch_dir(&mut self, dir: Ino, nlink_delta: i32) -> Result<(), FsError> {
        let mut d = self.dir(dir)?;
        d.mtime = self.time;
        d.ctime = self.time;
        d.nlink = d.nlink.checked_add_signed(nlink_delta).ok_or_else(|| {
            corrupt(format!(
                "link count of directory {}/{dir} out of range",
                self.fs
            ))
        })?;
        self.put(dir, d);
        Ok(())
    }

    /// Takes `n` out of the free numbers: a freed number with a newer generation, or the next
    /// never-used one. Anything else is a caller bug (INVAL): a number in use, or an old gen
    /// that would make old handles valid again.
    fn consume(&mut self, n: NewInode) -> Result<(), FsError> {
        let (mut next, mut files) = self
            .alloc
            .get(self.fs.0)
            .map_err(db_err)?
            .map(|v| v.value())
            .ok_or_else(|| corrupt(format!("fs {} has no allocator row", self.fs)))?;
        let freed = self
            .free
            .get((self.fs.0, n.ino.0))
            .map_err(db_err)?
            .map(|v| v.value());
        match freed {
            Some(last) if n.gen.0 > last => {
                self.free.remove((self.fs.0, n.ino.0)).map_err(db_err)?;
            }
            None if n.ino.0 == next && n.gen.0 >= 1 => next += 1,
            _ => return Err(FsError::Inval),
        }
        files += 1;
        self.alloc
            .insert(self.fs.0, (next, files))
            .map_err(db_err)?;
        Ok(())
    }

    /// Frees an inode whose last link went: its number joins the free table with its gen.
    fn free(&mut self, ino: Ino, i: &Inode) -> Result<(), FsError> {
        assert_ne!(ino, ROOT_INO, "the root is never freed");
        let (next, files) = self
            .alloc
            .get(self.fs.0)
            .map_err(db_err)?
            .map(|v| v.value())
            .ok_or_else(|| corrupt(format!("fs {} has no allocator row", self.fs)))?;
        let files = files
            .checked_sub(1)
            .ok_or_else(|| corrupt(format!("fs {} counts no inode to free", self.fs)))?;
        self.alloc
            .insert(self.fs.0, (next, files))
            .map_err(db_err)?;
        self.free
            .insert((self.fs.0, ino.0), i.gen.0)
            .map_err(db_err)?;
        self.staged.insert(ino, None);
        if i.is_file() {
            self.post.push(Post::Trash { ino, gen: i.gen });
        }
        Ok(())
    }

    /// One entry naming `ino` went: a file loses a link (freed at zero), a directory is freed.
    fn drop_link(&mut self, ino: Ino, mut i: Inode) -> Result<(), FsError> {
        if i.is_dir() {
            return self.free(ino, &i);
        }
        i.nlink = i
            .nlink
            .checked_sub(1)
            .ok_or_else(|| corrupt(format!("inode {}/{ino} had no link", self.fs)))?;
        if i.nlink == 0 {
            self.free(ino, &i)
        } else {
            i.ctime = self.time;
            self.put(ino, i);
            Ok(())
        }
    }

    fn resolve(&self, t: SetTime) -> Time {
        match t {
            SetTime::ServerTime => self.time,
            SetTime::Client(t) => t,
        }
    }

    /// Applies a SETATTR to `i` (which is `ino`). A shrink below the data file's length asks
    /// for a durable commit before the data is cut.
    fn set_attr(&mut self, ino: Ino, i: &mut Inode, sa: &SetAttr) -> Result<(), FsError> {
        if sa.is_empty() {
            return Ok(());
        }
        if let Some(size) = sa.size {
            match i.kind {
                Kind::File { .. } => {}
                Kind::Dir { .. } => return Err(FsError::IsDir),
                Kind::Symlink { .. } => return Err(FsError::Inval),
            }
            if size > FILE_SIZE_MAX_BYTES {
                return Err(FsError::FBig);
            }
        }
        if let Some(m) = sa.mode {
            i.mode = m & 0o7777;
        }
        if let Some(u) = sa.uid {
            i.uid = u;
        }
        if let Some(g) = sa.gid {
            i.gid = g;
        }
        if let Some(t) = sa.atime {
            i.atime = self.resolve(t);
        }
        if let Some(size) = sa.size {
            if size != i.size {
                if size < i.size && self.store.data_len(self.fs, ino)? > size {
                    self.post.push(Post::Shrink { ino, size });
                    self.need_durable = true;
                }
                i.size = size;
                i.mtime = self.time;
            }
        }
        if let Some(t) = sa.mtime {
            i.mtime = self.resolve(t);
        }
        i.ctime = self.time;
        Ok(())
    }

    /// Writes what the op staged into the transaction and the cache (as pending).
    pub fn write_back(&mut self) -> Result<(), FsError> {
        for (ino, v) in std::mem::take(&mut self.staged) {
            match &v {
                Some(i) => {
                    self.inodes
                        .insert((self.fs.0, ino.0), i.encode().as_slice())
                        .map_err(db_err)?;
                }
                None => {
                    self.inodes.remove((self.fs.0, ino.0)).map_err(db_err)?;
                }
            }
            self.cache.stage(self.fs, ino, v);
        }
        Ok(())
    }

    pub fn finish(self) -> (Vec<Post>, bool) {
        (self.post, self.need_durable)
    }

    // ---- the ops ----

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        new: Option<NewInode>,
        dir: Ino,
        name: &[u8],
        how: &CreateHow,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<OpReply, FsError> {
        let d0 = self.dir(dir)?;
        check_name(name, NameUse::Create)?;
        let before = self.attr(dir, &d0);
        if let Some((_, ino)) = self.entry(dir, name)? {
            let mut existing = self.named(dir, ino)?;
            match how {
                CreateHow::Guarded(_) => return Err(FsError::Exist),
                CreateHow::Exclusive(v) => {
                    // A retransmitted exclusive create: the same verifier means it is ours.
                    if existing.kind != (Kind::File { verifier: Some(*v) }) {
                        return Err(FsError::Exist);
                    }
                }
                CreateHow::Unchecked(sa) => {
                    if !existing.is_file() {
                        return Err(FsError::Exist);
                    }
                    self.set_attr(ino, &mut existing, sa)?;
                    self.put(ino, existing.clone());
                }
            }
            let obj = self.attr(ino, &existing);
            return Ok(OpReply {
                obj: Some(obj),
                obj_before: None,
                dir: Some((wcc(&before), before.clone())),
                dir2: None,
            });
        }
        let n = new.ok_or(FsError::Inval)?;
        self.consume(n)?;
        let verifier = match how {
            CreateHow::Exclusive(v) => Some(*v),
            CreateHow::Unchecked(_) | CreateHow::Guarded(_) => None,
        };
        let mut i = Inode {
            gen: n.gen,
            mode: mode & 0o7777,
            nlink: 1,
            uid,
            gid,
            size: 0,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            kind: Kind::File { verifier },
        };
        if let CreateHow::Unchecked(sa) | CreateHow::Guarded(sa) = how {
            self.set_attr(n.ino, &mut i, sa)?;
        }
        let obj = self.attr(n.ino, &i);
        self.put(n.ino, i);
        self.add_entry(dir, name, n.ino)?;
        self.touch_dir(dir, 0)?;
        Ok(OpReply {
            obj: Some(obj),
            obj_before: None,
            dir: Some((wcc(&before), self.dir_attr(dir)?)),
            dir2: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn make(
        &mut self,
        new: Option<NewInode>,
        dir: Ino,
        name: &[u8],
        kind: Kind,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<OpReply, FsError> {
        let d0 = self.dir(dir)?;
        check_name(name, NameUse::Create)?;
        let before = self.attr(dir, &d0);
        if let Kind::Symlink { target } = &kind {
            if target.is_empty() {
                return Err(FsError::Inval);
            }
            if target.len() > SYMLINK_MAX_BYTES {
                return Err(FsError::NameTooLong);
            }
        }
        if self.entry(dir, name)?.is_some() {
            return Err(FsError::Exist);
        }
        let is_dir = matches!(kind, Kind::Dir { .. });
        if is_dir && d0.nlink >= LINKS_MAX {
            return Err(FsError::MLink);
        }
        let n = new.ok_or(FsError::Inval)?;
        self.consume(n)?;
        let (nlink, size) = match &kind {
            Kind::Dir { .. } => (2, DIR_SIZE_BYTES),
            Kind::Symlink { target } => (1, target.len() as u64),
            Kind::File { .. } => (1, 0),
        };
        let i = Inode {
            gen: n.gen,
            mode: mode & 0o7777,
            nlink,
            uid,
            gid,
            size,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            kind,
        };
        let obj = self.attr(n.ino, &i);
        self.put(n.ino, i);
        self.add_entry(dir, name, n.ino)?;
        self.touch_dir(dir, i32::from(is_dir))?;
        Ok(OpReply {
            obj: Some(obj),
            obj_before: None,
            dir: Some((wcc(&before), self.dir_attr(dir)?)),
            dir2: None,
        })
    }

    fn setattr(&mut self, ino: Ino, sa: &SetAttr, guard: Option<Time>) -> Result<OpReply, FsError> {
        let mut i = self.inode(ino)?;
        let before = self.attr(ino, &i);
        if let Some(g) = guard {
            if g != i.ctime {
                return Err(FsError::NotSync);
            }
        }
        self.set_attr(ino, &mut i, sa)?;
        let obj = self.attr(ino, &i);
        self.put(ino, i);
        Ok(OpReply {
            obj: Some(obj),
            obj_before: Some(wcc(&before)),
            dir: None,
            dir2: None,
        })
    }

    fn remove(&mut self, dir: Ino, name: &[u8], want_dir: bool) -> Result<OpReply, FsError> {
        let d0 = self.dir(dir)?;
        check_name(name, NameUse::Remove)?;
        let before = self.attr(dir, &d0);
        let (slot, ino) = self.entry(dir, name)?.ok_or(FsError::NoEnt)?;
        let i = self.named(dir, ino)?;
        match (want_dir, i.is_dir()) {
            (false, true) => return Err(FsError::IsDir),
            (true, false) => return Err(FsError::NotDir),
            (true, true) if !self.is_empty(ino)? => return Err(FsError::NotEmpty),
            _ => {}
        }
        self.remove_entry(dir, name, slot)?;
        self.drop_link(ino, i)?;
        self.touch_dir(dir, if want_dir { -1 } else { 0 })?;
        Ok(OpReply {
            obj: None,
            obj_before: None,
            dir: Some((wcc(&before), self.dir_attr(dir)?)),
            dir2: None,
        })
    }

    fn rename(
        &mut self,
        from_dir: Ino,
        from_name: &[u8],
        to_dir: Ino,
        to_name: &[u8],
    ) -> Result<OpReply, FsError> {
        let fd0 = self.dir(from_dir)?;
        let td0 = self.dir(to_dir)?;
        check_name(from_name, NameUse::Remove)?;
        check_name(to_name, NameUse::Remove)?;
        let from_before = self.attr(from_dir, &fd0);
        let to_before = self.attr(to_dir, &td0);
        let unchanged = |s: &Self| -> Result<OpReply, FsError> {
            let dir2 = if to_dir == from_dir {
                None
            } else {
                Some((wcc(&to_before), s.dir_attr(to_dir)?))
            };
            Ok(OpReply {
                obj: None,
                obj_before: None,
                dir: Some((wcc(&from_before), s.dir_attr(from_dir)?)),
                dir2,
            })
        };
        let (src_slot, src) = self.entry(from_dir, from_name)?.ok_or(FsError::NoEnt)?;
        let src_inode = self.named(from_dir, src)?;
        if from_dir == to_dir && from_name == to_name {
            return unchanged(self);
        }
        let target = self.entry(to_dir, to_name)?;
        if let Some((_, t)) = target {
            if t == src {
                // Both names are links to the same file: POSIX says do nothing.
                return unchanged(self);
            }
            let t_inode = self.named(to_dir, t)?;
            match (src_inode.is_dir(), t_inode.is_dir()) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !self.is_empty(t)? => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        let moves_dir = src_inode.is_dir() && from_dir != to_dir;
        if src_inode.is_dir() {
            // Into its own subtree: walk up from the target directory to the root.
            let mut p = to_dir;
            let mut steps = 0u64;
            loop {
                if p == src {
                    return Err(FsError::Inval);
                }
                if p == ROOT_INO {
                    break;
                }
                let Kind::Dir { parent, .. } = self.dir(p)?.kind else {
                    return Err(FsError::NotDir);
                };
                p = parent;
                steps += 1;
                if steps > u64::from(u32::MAX) {
                    return Err(corrupt(format!(
                        "directory parents of {}/{to_dir} form a loop",
                        self.fs
                    )));
                }
            }
            if moves_dir && target.is_none() && td0.nlink >= LINKS_MAX {
                return Err(FsError::MLink);
            }
        }
        // Checked; now change.
        self.remove_entry(from_dir, from_name, src_slot)?;
        let mut to_delta = 0i32;
        if let Some((t_slot, t)) = target {
            let t_inode = self.named(to_dir, t)?;
            if t_inode.is_dir() {
                to_delta -= 1;
            }
            self.remove_entry(to_dir, to_name, t_slot)?;
            self.drop_link(t, t_inode)?;
        }
        self.add_entry(to_dir, to_name, src)?;
        let mut s = self.named(to_dir, src)?;
        s.ctime = self.time;
        if moves_dir {
            if let Kind::Dir { parent, .. } = &mut s.kind {
                *parent = to_dir;
            }
        }
        self.put(src, s);
        if from_dir == to_dir {
            self.touch_dir(from_dir, to_delta)?;
        } else {
            self.touch_dir(from_dir, if moves_dir { -1 } else { 0 })?;
            self.touch_dir(to_dir, to_delta + i32::from(moves_dir))?;
        }
        unchanged(self)
    }

    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<OpReply, FsError> {
        let mut i = self.inode(ino)?;
        let d0 = self.dir(dir)?;
        if i.is_dir() {
            return Err(FsError::IsDir);
        }
        check_name(name, NameUse::Create)?;
        let before = self.attr(dir, &d0);
        if self.entry(dir, name)?.is_some() {
            return Err(FsError::Exist);
        }
        if i.nlink >= LINKS_MAX {
            return Err(FsError::MLink);
        }
        i.nlink += 1;
        i.ctime = self.time;
        let obj = self.attr(ino, &i);
        self.put(ino, i);
        self.add_entry(dir, name, ino)?;
        self.touch_dir(dir, 0)?;
        Ok(OpReply {
            obj: Some(obj),
            obj_before: None,
            dir: Some((wcc(&before), self.dir_attr(dir)?)),
            dir2: None,
        })
    }
}

/// Which copy of a file system an op is applied to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Target {
    /// The copy hosts use (an unpaired fs, or the serving side of a pair).
    Serving,
    /// The twin of a pair, applying what the serving side sent.
    Twin,
}

impl Store {
    /// Applies one fully determined op (see the module docs).
    ///
    /// Durability: when this returns `Ok`, the change is in the op journal (see `journal`):
    /// it survives a `kill -9` of this process, every change answered before it too, with no
    /// `sync()`. UNSTABLE writes and namespace/attribute changes reach the cache (page cache,
    /// non-durable redb commit, journal): a power loss may take them until [`Store::sync`],
    /// a COMMIT or a stable write. FILE_SYNC/DATA_SYNC writes and COMMIT are durable before
    /// this returns. An op that fails changes nothing and is not journaled.
    pub fn apply(&self, op: &FsOp) -> Result<OpReply, FsError> {
        self.apply_as(op, Target::Serving)
    }

    /// [`Store::apply`] for the twin of a pair, which applies what the serving side sent: a
    /// large aligned WRITE goes straight to the disk ([`Store::writes_direct`]), past the
    /// page cache; everything else as [`Store::apply`]. Durability is at least as strong.
    pub fn apply_twin(&self, op: &FsOp) -> Result<OpReply, FsError> {
        self.apply_as(op, Target::Twin)
    }

    /// Whether [`Store::apply_twin`] writes `op` straight to the disk, so that it waits for
    /// the disk (run it on a blocking thread): a WRITE of at least
    /// [`DIRECT_WRITE_MIN_BYTES`](crate::DIRECT_WRITE_MIN_BYTES) whose offset, length and
    /// buffer are page-aligned (the link receives large bodies page-aligned).
    pub fn writes_direct(op: &FsOp) -> bool {
        matches!(&op.body, OpBody::Write { offset, data, .. } if data::direct_fits(*offset, data))
    }

    /// A COMMIT ([`Store::apply`]) that calls `before_metadata` after the file's data and
    /// directory entry are on disk and before the metadata is made durable, so that what
    /// `before_metadata` makes durable (the metro LOG) is on disk no later than the metadata,
    /// while it may be written at the same time as the file's data. Its error is the COMMIT's.
    pub fn commit_after(
        &self,
        op: &FsOp,
        before_metadata: &dyn Fn() -> Result<(), FsError>,
    ) -> Result<OpReply, FsError> {
        self.check_fatal()?;
        self.check_fs(op.fs)?;
        match &op.body {
            OpBody::Commit { ino } => self.commit(op.fs, *ino, before_metadata),
            _ => Err(FsError::Inval),
        }
    }

    fn apply_as(&self, op: &FsOp, target: Target) -> Result<OpReply, FsError> {
        self.check_fatal()?;
        self.check_fs(op.fs)?;
        if op.body.creates() != op.new_inode.is_some() {
            return Err(FsError::Inval);
        }
        let r = match &op.body {
            OpBody::Write { .. } => self.write(op, target),
            OpBody::Commit { ino } => self.commit(op.fs, *ino, &|| Ok(())),
            _ => {
                // An op that may cut a file's data excludes WRITEs to that file until the
                // data is cut, so a concurrent write lands wholly before or wholly after.
                let _cut = self.cutting(op).map(|ino| {
                    self.size_locks[(ino.0 % SIZE_STRIPES as u64) as usize]
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                self.namespace(op)
            }
        };
        match &r {
            Err(e) => self.stop(e),
            Ok(_) => self.bound_journal()?,
        }
        r
    }

    /// The file an op may shrink: SETATTR with a size, or UNCHECKED CREATE with a size over an
    /// existing name (looked up now; a name changing meanwhile only makes the lock useless).
    fn cutting(&self, op: &FsOp) -> Option<Ino> {
        match &op.body {
            OpBody::SetAttr { ino, attr, .. } if attr.size.is_some() => Some(*ino),
            OpBody::Create {
                dir,
                name,
                how: CreateHow::Unchecked(sa),
                ..
            } if sa.size.is_some() => self.lookup(op.fs, *dir, name).ok().map(|a| a.ino),
            _ => None,
        }
    }

    fn namespace(&self, op: &FsOp) -> Result<OpReply, FsError> {
        let rec = RecRef::Op(op).encode()?;
        let mut reply = self.txn(op.fs, op.time, &rec, |cx| match &op.body {
            OpBody::Create {
                dir,
                name,
                how,
                mode,
                uid,
                gid,
            } => cx.create(op.new_inode, *dir, name, how, *mode, *uid, *gid),
            OpBody::Mkdir {
                dir,
                name,
                mode,
                uid,
                gid,
            } => {
                let kind = Kind::Dir {
                    parent: *dir,
                    next_slot: FIRST_SLOT,
                };
                cx.make(op.new_inode, *dir, name, kind, *mode, *uid, *gid)
            }
            OpBody::Symlink {
                dir,
                name,
                target,
                mode,
                uid,
                gid,
            } => {
                let kind = Kind::Symlink {
                    target: target.clone(),
                };
                cx.make(op.new_inode, *dir, name, kind, *mode, *uid, *gid)
            }
            OpBody::SetAttr { ino, attr, guard } => cx.setattr(*ino, attr, *guard),
            OpBody::Remove { dir, name } => cx.remove(*dir, name, false),
            OpBody::Rmdir { dir, name } => cx.remove(*dir, name, true),
            OpBody::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
            } => cx.rename(*from_dir, from_name, *to_dir, to_name),
            OpBody::Link { ino, dir, name } => cx.link(*ino, *dir, name),
            OpBody::Write { .. } | OpBody::Commit { .. } => Err(FsError::Inval),
        })?;
        if let Some(obj) = &mut reply.obj {
            // A file this op made has no data file yet: it uses nothing.
            let made = op
                .new_inode
                .is_some_and(|n| n.ino == obj.ino && n.gen == obj.gen);
            if obj.ftype == FileType::Regular && !made {
                obj.used = self.file_used(op.fs, obj.ino)?;
            }
        }
        Ok(reply)
    }

    pub(crate) fn file_used(&self, fs: FsId, ino: Ino) -> Result<u64, FsError> {
        self.used(
            fs,
            ino,
            &Inode {
                gen: metrofs_core::Gen(0),
                mode: 0,
                nlink: 0,
                uid: 0,
                gid: 0,
                size: 0,
                atime: Time::default(),
                mtime: Time::default(),
                ctime: Time::default(),
                kind: Kind::File { verifier: None },
            },
        )
    }

    /// The newest record of an inode, loaded into the cache (as clean) on a miss. Called with
    /// the cache locked: a miss then means redb's committed record is current (see
    /// `AttrCache`).
    pub(crate) fn load<'c>(
        &self,
        c: &'c mut AttrCache,
        fs: FsId,
        ino: Ino,
    ) -> Result<&'c mut CacheEntry, FsError> {
        match c.map.entry((fs, ino)) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let inode = self.committed_inode(fs, ino)?;
                Ok(v.insert(CacheEntry {
                    inode,
                    state: CacheState::Clean,
                }))
            }
        }
    }

    /// WRITE: `pwrite` into the data file, attributes updated in memory (written back by the
    /// next durable commit); no metadata transaction. `op` is a WRITE.
    fn write(&self, op: &FsOp, target: Target) -> Result<OpReply, FsError> {
        let OpBody::Write {
            ino,
            offset,
            data: bytes,
            stable,
        } = &op.body
        else {
            return Err(FsError::Inval);
        };
        let (fs, time, ino, offset, stable) = (op.fs, op.time, *ino, *offset, *stable);
        // Shared with other WRITEs, exclusive with an op cutting this file (see `apply`).
        let _no_cut = self.size_locks[(ino.0 % SIZE_STRIPES as u64) as usize]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|e| *e <= FILE_SIZE_MAX_BYTES)
            .ok_or(FsError::FBig)?;
        // Checked, and the data file opened (or made), under the cache lock: a removal stages
        // its tombstone and moves the data file to the trash under the same lock, so this
        // never makes a data file for an inode that is gone.
        let (gen, file) = {
            let mut c = lock(&self.cache);
            let e = self.load(&mut c, fs, ino)?;
            let i = e.inode.as_ref().ok_or(FsError::Stale)?;
            match i.kind {
                Kind::File { .. } => {}
                Kind::Dir { .. } => return Err(FsError::IsDir),
                Kind::Symlink { .. } => return Err(FsError::Inval),
            }
            let gen = i.gen;
            let file = if bytes.is_empty() {
                None
            } else {
                self.fds.get(fs, ino, true)?
            };
            (gen, file)
        };
        // The record of this write's attributes, encoded before the cache lock is taken.
        let rec = if bytes.is_empty() {
            None
        } else {
            Some(
                RecRef::Write {
                    fs,
                    ino,
                    gen,
                    end,
                    time,
                }
                .encode()?,
            )
        };
        let mut created = false;
        if let Some((f, c)) = &file {
            created = *c;
            f.write(bytes, offset, target == Target::Twin)?;
            // Only after the bytes are in: whoever syncs this file next also covers them.
            let mut u = lock(&self.unsynced);
            let slot = u.entry((fs, ino)).or_insert(false);
            *slot |= created;
        }
        let (before, after) = {
            let mut c = lock(&self.cache);
            let e = self.load(&mut c, fs, ino)?;
            let i = match &mut e.inode {
                Some(i) if i.gen == gen => i,
                _ => return Err(FsError::Stale),
            };
            let before = WccAttr {
                size: i.size,
                mtime: i.mtime,
                ctime: i.ctime,
            };
            if !bytes.is_empty() {
                i.size = i.size.max(end);
                // Never back: writes to disjoint ranges commute (the pair applies them
                // concurrently, maybe in another order on the other side).
                i.mtime = i.mtime.max(time);
                i.ctime = i.ctime.max(time);
                if e.state != CacheState::Dirty {
                    e.state = CacheState::Dirty;
                    c.dirty.insert((fs, ino));
                }
            }
            // Journaled under the cache lock: in the order attribute changes happen (a
            // SETATTR's record is appended under it too), after the bytes are in the file.
            if let Some(rec) = &rec {
                self.journal.append(rec)?;
            }
            let after = c
                .map
                .get(&(fs, ino))
                .and_then(|e| e.inode.clone())
                .ok_or(FsError::Stale)?;
            (before, after)
        };
        self.flush_if_many_dirty()?;
        match stable {
            Stability::Unstable => {}
            Stability::DataSync => {
                self.sync_file(fs, ino)?;
                // The data is on disk; the size that makes it reachable must be too.
                if after.size != before.size || created {
                    self.flush_journal()?;
                }
            }
            Stability::FileSync => {
                self.sync_file(fs, ino)?;
                self.flush_journal()?;
            }
        }
        let used = match &file {
            Some((f, _)) => f
                .file
                .metadata()
                .map(|m| data::allocated(&m))
                .map_err(|e| data::io_err("stat of", &f.path, &e))?,
            None => self.file_used(fs, ino)?,
        };
        Ok(OpReply {
            obj: Some(after.attr(ino, used)),
            obj_before: Some(before),
            dir: None,
            dir2: None,
        })
    }

    /// COMMIT: the file's data fsync'd (and its bucket directory when the file is new), then
    /// `before_metadata`, then all metadata (this fs's namespace included) made durable
    /// through the journal ([`Store::flush_journal`]).
    fn commit(
        &self,
        fs: FsId,
        ino: Ino,
        before_metadata: &dyn Fn() -> Result<(), FsError>,
    ) -> Result<OpReply, FsError> {
        let i = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        if i.is_file() {
            self.sync_file(fs, ino)?;
            self.sync_new_dirs()?;
        }
        before_metadata()?;
        self.flush_journal()?;
        let i = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        Ok(OpReply {
            obj: Some(self.attr_of(fs, ino, &i)?),
            obj_before: None,
            dir: None,
            dir2: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(b"ok", NameUse::Create), Ok(()));
        assert_eq!(check_name(b".", NameUse::Create), Err(FsError::Exist));
        assert_eq!(check_name(b"..", NameUse::Remove), Err(FsError::Inval));
        assert_eq!(check_name(b"", NameUse::Create), Err(FsError::Inval));
        assert_eq!(check_name(b"a/b", NameUse::Remove), Err(FsError::Inval));
        assert_eq!(check_name(b"a\0b", NameUse::Lookup), Err(FsError::NoEnt));
        assert_eq!(check_name(&[b'x'; NAME_MAX_BYTES], NameUse::Create), Ok(()));
        assert_eq!(
            check_name(&[b'x'; NAME_MAX_BYTES + 1], NameUse::Create),
            Err(FsError::NameTooLong)
        );
    }
}
