//! `Store::apply_sync`: the steps of a resync ([`SyncOp`]), and the reads resync and `pair
//! verify` take from the source side (`sync_inode`, `sync_dir`, `sync_allocator`, `inode`,
//! `inodes`, `entries`, `read_segments`, `digests`).
//!
//! A `SyncOp` copies state *as it is* on the serving side; it sets no time of its own and
//! invents nothing. Every step but PutData runs through the same metadata transaction as
//! `apply` (a [`Ctx`], non-durable commit, journal record, trash for dropped data, durable
//! shrink); PutData writes the data file like an UNSTABLE WRITE. So a step survives a `kill -9`
//! once applied, `Store::sync` makes every step durable, and crash recovery needs nothing new.
//!
//! # Phases and orphans
//! Resync sends the steps of one round in phases (see `SyncOp`'s docs): PutInode for the
//! dirty inodes, then Link (with a PutInode before each inode the target may lack), then
//! Unlink, then PutData. While links are being made an inode may have no name for a while: it
//! was just made by PutInode, or a Link replaced the entry naming it, or its directory was
//! replaced, and a later Link of the same round names it again (a rename, a swap, a subtree
//! moved between dirty directories). Such an inode is an *orphan*: a file or symlink with
//! nlink 0, or a directory whose parent is itself (its "unnamed" mark), recorded in the
//! `orphans` table (in the same transaction, so it survives a crash). Orphans are freed, with
//! their subtrees, when the links phase is over: at the round's first Unlink or PutData, or by
//! [`Store::free_orphans`]. An Unlink, in contrast, frees an inode at once when it removes its
//! last name (links all come first, so nothing Unlink drops is named again in the round).
//!
//! A directory has one name at most: a Link naming a directory that has a name elsewhere
//! *moves* it (as the rename that made the difference did), instead of giving it a second.
//!
//! # What a failover needs too
//! READDIR cookies, the allocator and exclusive-create verifiers are state a host sees after a
//! failover: a listing continued with a cookie from the other side, a new file that must not
//! get an (ino, gen) the other side freed or uses, a retransmitted exclusive CREATE. So
//! `Entries` carries each entry's slot and the directory's next slot, `Allocator` the free
//! numbers with their generations and the never-used mark, `Verifier` a verifier; after a
//! round that sends them the target's [`Store::image`] equals the source's. `Entries` and
//! `Allocator` make a *range* exactly the source's, so a large directory or free table travels
//! in several steps; the highest range goes first, so the next slot (never-used mark) is never
//! below a slot (number) in use. `Entries` belongs to the links phase (what it takes a name
//! from is an orphan until the phase is over); `Allocator` ends it (it frees the orphans).
//! [`Store::sync_inode`], [`Store::sync_dir`] and [`Store::sync_allocator`] read these steps
//! from the source.

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use metrofs_core::{
    Attr, FileType, FsError, FsId, Gen, Ino, SyncOp, Time, FILE_SIZE_MAX_BYTES, ROOT_INO,
    SYMLINK_MAX_BYTES,
};
use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::{check_name, Ctx, NameUse, Post};
use crate::data;
use crate::journal::RecRef;
use crate::rec::{Inode, Kind};
use crate::store::{corrupt, db_err, lock, Store, ALLOC, FIRST_SLOT, FREE, INODES, SLOTS};

/// (fs, ino) → generation: inodes a resync made or left without a name (see the module docs).
pub(crate) const ORPHANS: TableDefinition<(u64, u64), u64> = TableDefinition::new("orphans");

/// Largest range [`Store::read_segments`] reads at once (the bytes are held in memory).
pub const SEGMENTS_MAX_BYTES: u64 = 16 << 20;
/// Most chunks [`Store::digests`] answers for one file (8 bytes of memory each).
pub const DIGESTS_MAX: u64 = 1 << 24;
/// Grid a chunk digest reads on: a piece that is all zeros (a hole or written zeros alike)
/// enters the digest as a length, so holes and zeros hash the same.
const DIGEST_PIECE_BYTES: u64 = 64 << 10;
/// Zeros written at once where punching a hole is not supported.
const ZEROS_BYTES: usize = 1 << 20;

/// What happens to an inode whose last name goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Loss {
    /// Kept, as an orphan, until the links phase is over (a later Link may name it again).
    Orphan,
    /// Freed now, a directory with everything only it names.
    Free,
}

/// A resync step's view of the transaction: the op's [`Ctx`] and the orphans table.
struct SyncCx<'a, 't> {
    cx: &'a mut Ctx<'t>,
    orphans: Table<'t, (u64, u64), u64>,
}

/// A directory's name: (parent, slot, name).
type Name = (Ino, u64, Vec<u8>);

impl<'a, 't> SyncCx<'a, 't> {
    fn new(cx: &'a mut Ctx<'t>) -> Result<Self, FsError> {
        let w = cx.w;
        Ok(Self {
            orphans: w.open_table(ORPHANS).map_err(db_err)?,
            cx,
        })
    }

    fn fs(&self) -> FsId {
        self.cx.fs
    }

    fn mark_orphan(&mut self, ino: Ino, i: &Inode) -> Result<(), FsError> {
        let k = (self.fs().0, ino.0);
        self.orphans.insert(k, i.gen.0).map_err(db_err)?;
        Ok(())
    }

    fn unmark_orphan(&mut self, ino: Ino) -> Result<(), FsError> {
        let k = (self.fs().0, ino.0);
        self.orphans.remove(k).map_err(db_err)?;
        Ok(())
    }

    /// Adds `delta` to a directory's link count (a subdirectory entry came or went).
    fn adjust_nlink(&mut self, dir: Ino, delta: i32) -> Result<(), FsError> {
        let mut d = self.cx.dir(dir)?;
        d.nlink = d.nlink.checked_add_signed(delta).ok_or_else(|| {
            corrupt(format!(
                "link count of directory {}/{dir} out of range",
                self.fs()
            ))
        })?;
        self.cx.put(dir, d);
        Ok(())
    }

    /// Every entry of `dir`: (slot, ino, name), in slot order.
    fn slots_of(&self, dir: Ino) -> Result<Vec<(u64, Ino, Vec<u8>)>, FsError> {
        let f = self.fs().0;
        let mut out = Vec::new();
        for row in self
            .cx
            .slots
            .range((f, dir.0, 0)..=(f, dir.0, u64::MAX))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let (ino, name) = v.value();
            out.push((k.value().2, Ino(ino), name.to_vec()));
        }
        Ok(out)
    }

    /// The entry naming directory `ino` (in its parent), if it has one.
    fn dir_name(&self, ino: Ino, i: &Inode) -> Result<Option<Name>, FsError> {
        let Kind::Dir { parent, .. } = i.kind else {
            return Ok(None);
        };
        if parent == ino || ino == ROOT_INO {
            return Ok(None);
        }
        Ok(self
            .slots_of(parent)?
            .into_iter()
            .find(|(_, i, _)| *i == ino)
            .map(|(slot, _, name)| (parent, slot, name)))
    }

    /// Every entry naming `ino` anywhere in the fs (a scan of all entries: only for a file
    /// number that becomes a directory).
    fn all_names(&self, ino: Ino) -> Result<Vec<Name>, FsError> {
        let f = self.fs().0;
        let mut out = Vec::new();
        for row in self
            .cx
            .slots
            .range((f, 0, 0)..=(f, u64::MAX, u64::MAX))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let (named, name) = v.value();
            if named == ino.0 {
                let (_, dir, slot) = k.value();
                out.push((Ino(dir), slot, name.to_vec()));
            }
        }
        Ok(out)
    }

    /// `ino` (which is `i`) lost the entry that named it in `from`.
    fn lose_name(&mut self, from: Ino, ino: Ino, mut i: Inode, loss: Loss) -> Result<(), FsError> {
        let last = match &mut i.kind {
            Kind::Dir { parent, .. } => {
                if *parent != from {
                    // Not its name (it has one in its parent): nothing more changes.
                    return Ok(());
                }
                if loss == Loss::Orphan {
                    *parent = ino;
                }
                true
            }
            Kind::File { .. } | Kind::Symlink { .. } => {
                i.nlink = i
                    .nlink
                    .checked_sub(1)
                    .ok_or_else(|| corrupt(format!("inode {}/{ino} had no link", self.fs())))?;
                i.nlink == 0
            }
        };
        match (last, loss) {
            (true, Loss::Free) => self.free_tree(ino, i),
            (true, Loss::Orphan) => {
                self.mark_orphan(ino, &i)?;
                self.cx.put(ino, i);
                Ok(())
            }
            (false, _) => {
                self.cx.put(ino, i);
                Ok(())
            }
        }
    }

    /// Removes entry `name` (at `slot`) of `dir`, which names `ino`; `ino` loses that name.
    fn remove_name(
        &mut self,
        dir: Ino,
        name: &[u8],
        slot: u64,
        ino: Ino,
        loss: Loss,
    ) -> Result<(), FsError> {
        self.cx.remove_entry(dir, name, slot)?;
        let i = self.cx.named(dir, ino)?;
        if i.is_dir() {
            self.adjust_nlink(dir, -1)?;
        }
        self.lose_name(dir, ino, i, loss)
    }

    /// Removes every entry of directory `dir`; each inode named loses that name.
    fn drop_entries(&mut self, dir: Ino, loss: Loss) -> Result<(), FsError> {
        for (slot, ino, name) in self.slots_of(dir)? {
            self.cx.remove_entry(dir, &name, slot)?;
            if let Some(i) = self.cx.get(ino)? {
                self.lose_name(dir, ino, i, loss)?;
            }
        }
        Ok(())
    }

    /// Frees `ino` (no name left), and a directory's entries with it: what only they named
    /// goes too, without recursion (a deep tree must not overflow the stack).
    fn free_tree(&mut self, ino: Ino, i: Inode) -> Result<(), FsError> {
        let mut todo = vec![(ino, i)];
        // Queued once each, even where link counts disagree with the entries.
        let mut queued = std::collections::HashSet::from([ino]);
        while let Some((ino, i)) = todo.pop() {
            if ino == ROOT_INO {
                return Err(corrupt(format!(
                    "an entry of fs {} names the root",
                    self.fs()
                )));
            }
            if i.is_dir() {
                for (slot, child, name) in self.slots_of(ino)? {
                    self.cx.remove_entry(ino, &name, slot)?;
                    // Gone already: a directory loop being freed, or a dangling entry.
                    let Some(mut c) = self.cx.get(child)? else {
                        continue;
                    };
                    match &c.kind {
                        Kind::Dir { parent, .. } => {
                            if *parent == ino && queued.insert(child) {
                                todo.push((child, c));
                            }
                        }
                        Kind::File { .. } | Kind::Symlink { .. } => {
                            c.nlink = c.nlink.saturating_sub(1);
                            self.cx.put(child, c.clone());
                            if c.nlink == 0 && queued.insert(child) {
                                todo.push((child, c));
                            }
                        }
                    }
                }
            }
            self.unmark_orphan(ino)?;
            self.cx.free(ino, &i)?;
        }
        Ok(())
    }

    /// Frees every orphan (the links phase is over). Returns how many inodes it freed first
    /// hand (their subtrees not counted).
    fn collect(&mut self) -> Result<u64, FsError> {
        let f = self.fs().0;
        let rows: Vec<(Ino, u64)> = {
            let mut v = Vec::new();
            for row in self.orphans.range((f, 0)..=(f, u64::MAX)).map_err(db_err)? {
                let (k, g) = row.map_err(db_err)?;
                v.push((Ino(k.value().1), g.value()));
            }
            v
        };
        let mut freed = 0;
        for (ino, gen) in rows {
            self.unmark_orphan(ino)?;
            // Still the orphan recorded (a host op may have named it, or it went already).
            let Some(i) = self.cx.get(ino)? else { continue };
            let unnamed = match &i.kind {
                Kind::Dir { parent, .. } => *parent == ino && ino != ROOT_INO,
                Kind::File { .. } | Kind::Symlink { .. } => i.nlink == 0,
            };
            if i.gen.0 == gen && unnamed {
                self.free_tree(ino, i)?;
                freed += 1;
            }
        }
        Ok(freed)
    }

    fn put_inode(&mut self, attr: &Attr, symlink: Option<&[u8]>) -> Result<(), FsError> {
        let ino = attr.ino;
        if ino.0 == 0 || attr.gen.0 == 0 {
            return Err(FsError::Inval);
        }
        match (attr.ftype, symlink) {
            (FileType::Symlink, Some(t)) => {
                if t.is_empty() || t.len() as u64 != attr.size {
                    return Err(FsError::Inval);
                }
                if t.len() > SYMLINK_MAX_BYTES {
                    return Err(FsError::NameTooLong);
                }
            }
            (FileType::Symlink, None) | (FileType::Regular | FileType::Directory, Some(_)) => {
                return Err(FsError::Inval)
            }
            (FileType::Regular, None) => {
                if attr.size > FILE_SIZE_MAX_BYTES {
                    return Err(FsError::FBig);
                }
            }
            (FileType::Directory, None) => {}
        }
        if ino == ROOT_INO && attr.ftype != FileType::Directory {
            return Err(FsError::Inval);
        }
        let set_common = |i: &mut Inode| {
            i.gen = attr.gen;
            i.mode = attr.mode & 0o7777;
            i.uid = attr.uid;
            i.gid = attr.gid;
            i.size = attr.size;
            i.atime = attr.atime;
            i.mtime = attr.mtime;
            i.ctime = attr.ctime;
        };
        let old = self.cx.get(ino)?;
        let Some(mut old) = old else {
            return self.make_inode(attr, symlink, set_common);
        };
        // The root stays (its entries are reconciled by Link and Unlink, like any directory's).
        if ino == ROOT_INO || (old.gen == attr.gen && old.ftype() == attr.ftype) {
            if let Kind::File { .. } = old.kind {
                if attr.size < old.size && self.cx.store.data_len(self.fs(), ino)? > attr.size {
                    // As a shrinking SETATTR: the new size is durable before the data is cut.
                    self.cx.post.push(Post::Shrink {
                        ino,
                        size: attr.size,
                    });
                    self.cx.need_durable = true;
                }
            }
            if let (Kind::Symlink { target }, Some(t)) = (&mut old.kind, symlink) {
                *target = t.to_vec();
            }
            set_common(&mut old);
            self.cx.put(ino, old);
            return Ok(());
        }
        self.replace_inode(old, attr, symlink, set_common)
    }

    /// PutInode of a number with no inode: a new orphan, until a Link names it.
    fn make_inode(
        &mut self,
        attr: &Attr,
        symlink: Option<&[u8]>,
        set_common: impl Fn(&mut Inode),
    ) -> Result<(), FsError> {
        let ino = attr.ino;
        let f = self.fs().0;
        self.cx.free.remove((f, ino.0)).map_err(db_err)?;
        let (next, files) = self
            .cx
            .alloc
            .get(f)
            .map_err(db_err)?
            .map(|v| v.value())
            .ok_or_else(|| corrupt(format!("fs {} has no allocator row", self.fs())))?;
        self.cx
            .alloc
            .insert(
                f,
                (
                    next.max(ino.0.checked_add(1).ok_or(FsError::Inval)?),
                    files + 1,
                ),
            )
            .map_err(db_err)?;
        let (kind, nlink) = new_kind(ino, attr.ftype, symlink);
        let mut i = Inode {
            gen: attr.gen,
            mode: 0,
            nlink,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
            kind,
        };
        set_common(&mut i);
        self.mark_orphan(ino, &i)?;
        self.cx.put(ino, i);
        Ok(())
    }

    /// PutInode over an inode of another generation or type: the old one's data goes, its
    /// entries lose their names (orphans until the links phase is over), and the new one takes
    /// over the names the number had (the Links and Unlinks that follow correct them).
    fn replace_inode(
        &mut self,
        old: Inode,
        attr: &Attr,
        symlink: Option<&[u8]>,
        set_common: impl Fn(&mut Inode),
    ) -> Result<(), FsError> {
        let ino = attr.ino;
        if old.is_file() {
            self.cx.post.push(Post::Trash { ino, gen: old.gen });
        }
        let old_name = self.dir_name(ino, &old)?;
        if old.is_dir() {
            self.drop_entries(ino, Loss::Orphan)?;
        }
        let (mut kind, mut nlink) = new_kind(ino, attr.ftype, symlink);
        let named = match (&old.kind, &mut kind) {
            (Kind::Dir { parent: p, .. }, Kind::Dir { parent, .. }) => {
                *parent = *p;
                *p != ino
            }
            (Kind::Dir { .. }, _) => match old_name {
                Some((p, _, _)) => {
                    self.adjust_nlink(p, -1)?;
                    nlink = 1;
                    true
                }
                None => false,
            },
            (_, Kind::Dir { parent, .. }) => {
                let names = if old.nlink == 0 {
                    Vec::new()
                } else {
                    self.all_names(ino)?
                };
                let mut names = names.into_iter();
                // A directory has one name: it keeps the first; a Link moves it if wrong.
                let first = names.next();
                for (d, slot, name) in names {
                    self.cx.remove_entry(d, &name, slot)?;
                }
                match first {
                    Some((p, _, _)) => {
                        *parent = p;
                        self.adjust_nlink(p, 1)?;
                        true
                    }
                    None => false,
                }
            }
            (_, _) => {
                nlink = old.nlink;
                nlink > 0
            }
        };
        let mut i = Inode {
            gen: attr.gen,
            mode: 0,
            nlink,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
            kind,
        };
        set_common(&mut i);
        if named {
            self.unmark_orphan(ino)?;
        } else {
            self.mark_orphan(ino, &i)?;
        }
        self.cx.put(ino, i);
        Ok(())
    }

    fn link(&mut self, dir: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        check_name(name, NameUse::Create)?;
        if ino == ROOT_INO || ino == dir {
            return Err(FsError::Inval);
        }
        self.cx.dir(dir)?;
        let x = self.cx.inode(ino)?;
        if let Some((slot, cur)) = self.cx.entry(dir, name)? {
            if cur == ino {
                return Ok(());
            }
            self.remove_name(dir, name, slot, cur, Loss::Orphan)?;
        }
        if x.is_dir() {
            // One name per directory: it moves here from where it is.
            if let Some((p, slot, old)) = self.dir_name(ino, &x)? {
                self.cx.remove_entry(p, &old, slot)?;
                self.adjust_nlink(p, -1)?;
            }
        }
        self.cx.add_entry(dir, name, ino)?;
        let mut x = self.cx.inode(ino)?;
        match &mut x.kind {
            Kind::Dir { parent, .. } => {
                *parent = dir;
                self.adjust_nlink(dir, 1)?;
            }
            Kind::File { .. } | Kind::Symlink { .. } => {
                x.nlink = x.nlink.checked_add(1).ok_or(FsError::MLink)?;
            }
        }
        self.cx.put(ino, x);
        self.unmark_orphan(ino)
    }

    /// Entries of `dir` with slots in `[from, to)`: (slot, ino, name), in slot order.
    fn slots_in(&self, dir: Ino, from: u64, to: u64) -> Result<Vec<(u64, Ino, Vec<u8>)>, FsError> {
        let f = self.fs().0;
        let mut out = Vec::new();
        for row in self
            .cx
            .slots
            .range((f, dir.0, from)..(f, dir.0, to))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let (ino, name) = v.value();
            out.push((k.value().2, Ino(ino), name.to_vec()));
        }
        Ok(out)
    }

    /// `Entries`: see [`SyncOp::Entries`]; the op was checked by [`check_entries`].
    fn entries(
        &mut self,
        dir: Ino,
        next_slot: u64,
        from: u64,
        to: u64,
        want: &[(u64, Vec<u8>, Ino)],
    ) -> Result<(), FsError> {
        self.cx.dir(dir)?;
        let have = self.slots_in(dir, from, to)?;
        let wanted: HashSet<(u64, &[u8], Ino)> = want
            .iter()
            .map(|(s, n, i)| (*s, n.as_slice(), *i))
            .collect();
        // 1. What the range holds and the source's does not goes (as orphans: a later step of
        //    the links phase may name them again).
        for (slot, ino, name) in &have {
            if !wanted.contains(&(*slot, name.as_slice(), *ino)) {
                self.remove_name(dir, name, *slot, *ino, Loss::Orphan)?;
            }
        }
        // 2. The next slot, exactly the source's; nothing may be left at or above it (the
        //    ranges above this one were sent first).
        let mut d = self.cx.dir(dir)?;
        if let Kind::Dir { next_slot: n, .. } = &mut d.kind {
            *n = next_slot;
        }
        self.cx.put(dir, d);
        let f = self.fs().0;
        if self
            .cx
            .slots
            .range((f, dir.0, next_slot)..=(f, dir.0, u64::MAX))
            .map_err(db_err)?
            .next()
            .is_some()
        {
            return Err(FsError::Inval);
        }
        // 3. The source's entries this range lacks, at their slots.
        let kept: HashSet<(u64, &[u8], Ino)> = have
            .iter()
            .map(|(s, i, n)| (*s, n.as_slice(), *i))
            .collect();
        for (slot, name, ino) in want {
            if !kept.contains(&(*slot, name.as_slice(), *ino)) {
                self.link_at(dir, name, *ino, *slot)?;
            }
        }
        Ok(())
    }

    /// Entry `name` of `dir` at `slot` names `ino` (a free slot below the next one): like
    /// [`Self::link`], at a given slot.
    fn link_at(&mut self, dir: Ino, name: &[u8], ino: Ino, slot: u64) -> Result<(), FsError> {
        self.cx.inode(ino)?;
        if let Some((cur_slot, cur)) = self.cx.entry(dir, name)? {
            self.remove_name(dir, name, cur_slot, cur, Loss::Orphan)?;
        }
        let x = self.cx.inode(ino)?;
        if x.is_dir() {
            // One name per directory: it moves here from where it is.
            if let Some((p, s, old)) = self.dir_name(ino, &x)? {
                self.cx.remove_entry(p, &old, s)?;
                self.adjust_nlink(p, -1)?;
            }
        }
        self.cx.add_entry_at(dir, name, ino, slot)?;
        let mut x = self.cx.inode(ino)?;
        match &mut x.kind {
            Kind::Dir { parent, .. } => {
                *parent = dir;
                self.adjust_nlink(dir, 1)?;
            }
            Kind::File { .. } | Kind::Symlink { .. } => {
                x.nlink = x.nlink.checked_add(1).ok_or(FsError::MLink)?;
            }
        }
        self.cx.put(ino, x);
        self.unmark_orphan(ino)
    }

    /// `Allocator`: see [`SyncOp::Allocator`]; the op was checked by [`check_allocator`].
    fn allocator(
        &mut self,
        next_ino: Ino,
        from: Ino,
        to: Ino,
        free: &[(Ino, Gen)],
    ) -> Result<(), FsError> {
        // The round's namespace steps are over: what is still unnamed goes.
        self.collect()?;
        let f = self.fs().0;
        let have: Vec<u64> = {
            let mut v = Vec::new();
            for row in self.cx.free.range((f, from.0)..(f, to.0)).map_err(db_err)? {
                v.push(row.map_err(db_err)?.0.value().1);
            }
            v
        };
        let listed: HashSet<u64> = free.iter().map(|(i, _)| i.0).collect();
        for ino in have {
            if !listed.contains(&ino) {
                self.cx.free.remove((f, ino)).map_err(db_err)?;
            }
        }
        for (ino, gen) in free {
            if self.cx.get(*ino)?.is_some() {
                // Live here, free on the source: a difference this round did not repair.
                return Err(FsError::Inval);
            }
            self.cx.free.insert((f, ino.0), gen.0).map_err(db_err)?;
        }
        let (_, files) = self
            .cx
            .alloc
            .get(f)
            .map_err(db_err)?
            .map(|v| v.value())
            .ok_or_else(|| corrupt(format!("fs {} has no allocator row", self.fs())))?;
        self.cx
            .alloc
            .insert(f, (next_ino.0, files))
            .map_err(db_err)?;
        // Nothing live or free at or above the never-used mark.
        if self
            .cx
            .free
            .range((f, next_ino.0)..=(f, u64::MAX))
            .map_err(db_err)?
            .next()
            .is_some()
        {
            return Err(FsError::Inval);
        }
        let above: Vec<u64> = {
            let mut v = Vec::new();
            for row in self
                .cx
                .inodes
                .range((f, next_ino.0)..=(f, u64::MAX))
                .map_err(db_err)?
            {
                v.push(row.map_err(db_err)?.0.value().1);
            }
            v
        };
        for ino in above {
            // Freed in this transaction (an orphan just collected) is not live.
            if self.cx.get(Ino(ino))?.is_some() {
                return Err(FsError::Inval);
            }
        }
        Ok(())
    }

    /// `Verifier`: regular file `ino` of generation `gen` holds `verifier`.
    fn verifier(&mut self, ino: Ino, gen: Gen, verifier: Option<[u8; 8]>) -> Result<(), FsError> {
        let mut i = self.cx.inode(ino)?;
        if i.gen != gen {
            return Err(FsError::Stale);
        }
        match &mut i.kind {
            Kind::File { verifier: v } => *v = verifier,
            Kind::Dir { .. } | Kind::Symlink { .. } => return Err(FsError::Inval),
        }
        self.cx.put(ino, i);
        Ok(())
    }

    fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        check_name(name, NameUse::Remove)?;
        // Unlinks come after every link of the round: what is still unnamed stays so.
        self.collect()?;
        match self.cx.get(dir)? {
            None => return Ok(()),
            Some(d) if !d.is_dir() => return Err(FsError::NotDir),
            Some(_) => {}
        }
        let Some((slot, ino)) = self.cx.entry(dir, name)? else {
            return Ok(());
        };
        self.remove_name(dir, name, slot, ino, Loss::Free)
    }
}

/// A new inode's kind and own link count (a directory's is 2; anything else has no name yet).
/// A new directory is marked unnamed (its parent is itself).
fn new_kind(ino: Ino, ftype: FileType, symlink: Option<&[u8]>) -> (Kind, u32) {
    match ftype {
        FileType::Regular => (Kind::File { verifier: None }, 0),
        FileType::Directory => (
            Kind::Dir {
                parent: ino,
                next_slot: FIRST_SLOT,
            },
            2,
        ),
        FileType::Symlink => (
            Kind::Symlink {
                target: symlink.unwrap_or_default().to_vec(),
            },
            0,
        ),
    }
}

fn seek_io(path: &std::path::Path, e: rustix::io::Errno) -> FsError {
    data::io_err("seeking in", path, &std::io::Error::from(e))
}

/// The next offset at or after `pos` that holds data, if any (SEEK_DATA).
fn next_data(f: &data::DataFile, pos: u64) -> Result<Option<u64>, FsError> {
    match rustix::fs::seek(&f.file, rustix::fs::SeekFrom::Data(pos)) {
        Ok(o) => Ok(Some(o)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(seek_io(&f.path, e)),
    }
}

/// The next hole at or after `pos` (SEEK_HOLE; the end of the file is one).
fn next_hole(f: &data::DataFile, pos: u64) -> Result<u64, FsError> {
    rustix::fs::seek(&f.file, rustix::fs::SeekFrom::Hole(pos)).map_err(|e| seek_io(&f.path, e))
}

/// Makes `[at, at + len)` of a data file read as zeros: a hole, or written zeros where the
/// local file system cannot punch one.
fn punch(f: &data::DataFile, at: u64, len: u64) -> Result<(), FsError> {
    use rustix::fs::FallocateFlags;
    match rustix::fs::fallocate(
        &f.file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        at,
        len,
    ) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {}
        Err(e) => {
            return Err(data::io_err(
                "punching a hole in",
                &f.path,
                &std::io::Error::from(e),
            ))
        }
    }
    let zeros = vec![0u8; ZEROS_BYTES];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS_BYTES as u64) as usize;
        f.file
            .write_all_at(&zeros[..n], at + done)
            .map_err(|e| data::io_err("writing zeros into", &f.path, &e))?;
        done += n as u64;
    }
    Ok(())
}

/// The digest of bytes `[from, to)` of a file (`f`: its data file, if any; zeros past it): on
/// a grid of [`DIGEST_PIECE_BYTES`] from `from`, an all-zero piece enters as its length, any
/// other as its bytes, so only the logical bytes count (holes hash like zeros).
fn chunk_digest(
    f: Option<&data::DataFile>,
    from: u64,
    to: u64,
    buf: &mut [u8],
) -> Result<u64, FsError> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(to - from).to_le_bytes());
    let mut zeros = 0u64;
    let mut pos = from;
    // Where the next data is, as far as known (None: none up to the end of the file).
    let mut data_at: Option<u64> = Some(from);
    while pos < to {
        let Some(f) = f else {
            zeros += to - pos;
            break;
        };
        if data_at.is_some_and(|d| d < pos) {
            data_at = next_data(f, pos)?;
        }
        let Some(d) = data_at.filter(|d| *d < to) else {
            zeros += to - pos;
            break;
        };
        if d >= pos + DIGEST_PIECE_BYTES {
            // Whole pieces of hole before the data: no need to read them.
            let skip = (d - pos) / DIGEST_PIECE_BYTES * DIGEST_PIECE_BYTES;
            zeros += skip;
            pos += skip;
            continue;
        }
        let n = DIGEST_PIECE_BYTES.min(to - pos) as usize;
        let piece = &mut buf[..n];
        data::read_zero_filled(&f.file, &f.path, pos, piece)?;
        if piece.iter().all(|b| *b == 0) {
            zeros += n as u64;
        } else {
            if zeros > 0 {
                h.update(b"Z");
                h.update(&zeros.to_le_bytes());
                zeros = 0;
            }
            h.update(b"D");
            h.update(piece);
        }
        pos += n as u64;
    }
    if zeros > 0 {
        h.update(b"Z");
        h.update(&zeros.to_le_bytes());
    }
    Ok(h.digest())
}

/// Checks an `Entries` op on its own (slots in the range, ascending, below the next slot;
/// names valid and distinct; no entry names the root or the directory itself).
fn check_entries(
    dir: Ino,
    next_slot: u64,
    from: u64,
    to: u64,
    entries: &[(u64, Vec<u8>, Ino)],
) -> Result<(), FsError> {
    if from >= to || next_slot < FIRST_SLOT {
        return Err(FsError::Inval);
    }
    let mut prev: Option<u64> = None;
    let mut names = HashSet::with_capacity(entries.len());
    for (slot, name, ino) in entries {
        check_name(name, NameUse::Create)?;
        let ordered = prev.is_none_or(|p| p < *slot);
        if !ordered
            || *slot < from.max(FIRST_SLOT)
            || *slot >= to
            || *slot >= next_slot
            || *ino == ROOT_INO
            || *ino == dir
            || ino.0 == 0
            || !names.insert(name.as_slice())
        {
            return Err(FsError::Inval);
        }
        prev = Some(*slot);
    }
    Ok(())
}

/// Checks an `Allocator` op on its own (numbers ascending, inside the range, below the
/// never-used mark, never the root; generations from 1).
fn check_allocator(next_ino: Ino, from: Ino, to: Ino, free: &[(Ino, Gen)]) -> Result<(), FsError> {
    if from >= to || next_ino.0 <= ROOT_INO.0 {
        return Err(FsError::Inval);
    }
    let mut prev: Option<Ino> = None;
    for (ino, gen) in free {
        let ordered = prev.is_none_or(|p| p < *ino);
        if !ordered
            || *ino < from
            || *ino >= to
            || *ino >= next_ino
            || ino.0 <= ROOT_INO.0
            || gen.0 == 0
        {
            return Err(FsError::Inval);
        }
        prev = Some(*ino);
    }
    Ok(())
}

/// An upper bound of the bytes `op` takes in a resync request's header (postcard: a u64 is at
/// most 10 bytes, a length 10), without `PutData`'s segment bytes, which travel in the body.
/// Resync uses it to keep a request under the link's header limit.
#[must_use]
pub fn sync_op_bytes(op: &SyncOp) -> usize {
    const N: usize = 10;
    match op {
        SyncOp::PutInode { symlink, .. } => 16 * N + symlink.as_ref().map_or(0, |t| N + t.len()),
        SyncOp::Link { name, .. } => 4 * N + name.len(),
        SyncOp::Unlink { name, .. } => 3 * N + name.len(),
        SyncOp::PutData { segments, .. } => 5 * N + segments.len() * 3 * N,
        SyncOp::Entries { entries, .. } => {
            6 * N + entries.iter().map(|e| 3 * N + e.1.len()).sum::<usize>()
        }
        SyncOp::Allocator { free, .. } => 5 * N + free.len() * 2 * N,
        SyncOp::Verifier { .. } => 4 * N,
    }
}

impl Store {
    /// Applies one resync step (see [`SyncOp`] and this module's docs). Deterministic; it
    /// invents nothing and sets no time of its own.
    /// - PutInode: makes inode `attr.ino` with generation, type, mode, uid, gid, size and times
    ///   exactly as given. A new one has no name (nlink 0; a directory is unnamed) until a Link
    ///   names it; it is not freed for that before the links phase is over. It leaves the free
    ///   table and the never-used mark moves above it. Over an inode of another generation or
    ///   type: the old one's data goes, its entries (a directory's) lose their names, and the
    ///   new one takes over the names the number had. Over the same generation and type:
    ///   attributes overwritten (not nlink), the data cut or extended to the size (an extension
    ///   reads as zeros). The root stays the root: only its attributes (and generation) change.
    /// - Link: entry `name` of `dir` names `ino`; an entry of that name that named another
    ///   inode goes, and that one loses a link (kept as an orphan if it was its last). A
    ///   directory named elsewhere moves here. Link counts follow (a directory: 2 + its
    ///   subdirectories); no time changes.
    /// - Unlink: frees the orphans left by the links phase, then removes the entry if present;
    ///   an inode whose last name goes is freed (a directory with what only it names).
    /// - PutData: `[offset, offset + len)` (within the size) reads as the segments' bytes and
    ///   zeros (holes, punched where the local file system can) elsewhere; no size or time
    ///   changes. Segments must be sorted, apart, and inside the range (else INVAL). Frees the
    ///   orphans left by the links phase first.
    /// - Entries: the entries of `dir` in a slot range become exactly the given (slot, name,
    ///   ino), its next slot the given one (see [`SyncOp::Entries`]); a range that already
    ///   matches costs one read.
    /// - Allocator: frees the orphans, then the never-used mark and the free numbers of a range
    ///   become the source's (see [`SyncOp::Allocator`]); INVAL for a number live here that is
    ///   free there, or live at or above the mark.
    /// - Verifier: a regular file's exclusive-create verifier (STALE if the generation differs).
    ///
    /// Durability: like `apply`'s cache level (journaled when it returns, so it survives a
    /// `kill -9`); [`Store::sync`] makes it durable.
    pub fn apply_sync(&self, fs: FsId, op: &SyncOp) -> Result<(), FsError> {
        self.check_fatal()?;
        self.check_fs(fs)?;
        match op {
            SyncOp::Entries {
                dir,
                next_slot,
                from,
                to,
                entries,
            } => {
                check_entries(*dir, *next_slot, *from, *to, entries)?;
                if self.entries_match(fs, *dir, *next_slot, *from, *to, entries)? {
                    return Ok(());
                }
            }
            SyncOp::Allocator {
                next_ino,
                from,
                to,
                free,
            } => {
                check_allocator(*next_ino, *from, *to, free)?;
                if self.allocator_matches(fs, *next_ino, *from, *to, free)? {
                    return Ok(());
                }
            }
            SyncOp::Verifier { ino, gen, verifier } => {
                let same = matches!(
                    self.record(fs, *ino)?,
                    Some(Inode { gen: g, kind: Kind::File { verifier: v }, .. })
                        if g == *gen && v == *verifier
                );
                if same {
                    return Ok(());
                }
            }
            _ => {}
        }
        // Every step but PutData changes metadata: journaled as it is applied (PutData writes
        // only data, which the page cache keeps; the orphans it frees first are journaled on
        // their own).
        let rec = match op {
            SyncOp::PutData { .. } => Vec::new(),
            _ => RecRef::Sync { fs, op }.encode()?,
        };
        let r = match op {
            SyncOp::PutInode { attr, symlink } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.put_inode(attr, symlink.as_deref())
            }),
            SyncOp::Link { dir, name, ino } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.link(*dir, name, *ino)
            }),
            SyncOp::Unlink { dir, name } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.unlink(*dir, name)
            }),
            SyncOp::PutData {
                ino,
                offset,
                len,
                segments,
            } => self.put_data(fs, *ino, *offset, *len, segments),
            SyncOp::Entries {
                dir,
                next_slot,
                from,
                to,
                entries,
            } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.entries(*dir, *next_slot, *from, *to, entries)
            }),
            SyncOp::Allocator {
                next_ino,
                from,
                to,
                free,
            } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.allocator(*next_ino, *from, *to, free)
            }),
            SyncOp::Verifier { ino, gen, verifier } => self.txn(fs, Time::default(), &rec, |cx| {
                SyncCx::new(cx)?.verifier(*ino, *gen, *verifier)
            }),
        };
        match &r {
            Err(e) => self.stop(e),
            Ok(_) => self.bound_journal()?,
        }
        r
    }

    /// Frees every inode a resync left without a name (see the module docs): the metro module
    /// calls it once a round's links are made, e.g. when it flushes the round. Returns how
    /// many it freed (not counting what they named).
    pub fn free_orphans(&self, fs: FsId) -> Result<u64, FsError> {
        self.check_fatal()?;
        self.check_fs(fs)?;
        if !self.has_orphans(fs)? {
            return Ok(0);
        }
        let rec = RecRef::FreeOrphans { fs }.encode()?;
        let r = self.txn(fs, Time::default(), &rec, |cx| SyncCx::new(cx)?.collect());
        match &r {
            Err(e) => self.stop(e),
            Ok(_) => self.bound_journal()?,
        }
        r
    }

    /// Whether `dir` already holds exactly `want` in slots `[from, to)` and `next_slot` as its
    /// next slot (a read: an unchanged directory costs no write transaction).
    fn entries_match(
        &self,
        fs: FsId,
        dir: Ino,
        next_slot: u64,
        from: u64,
        to: u64,
        want: &[(u64, Vec<u8>, Ino)],
    ) -> Result<bool, FsError> {
        let _t = lock(&self.txn);
        match self.record(fs, dir)? {
            Some(Inode {
                kind: Kind::Dir { next_slot: n, .. },
                ..
            }) if n == next_slot => {}
            _ => return Ok(false),
        }
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(SLOTS).map_err(db_err)?;
        let mut want = want.iter();
        for row in t
            .range((fs.0, dir.0, from)..(fs.0, dir.0, to))
            .map_err(db_err)?
        {
            let (k, v) = row.map_err(db_err)?;
            let (ino, name) = v.value();
            match want.next() {
                Some((s, n, i)) if *s == k.value().2 && n.as_slice() == name && i.0 == ino => {}
                _ => return Ok(false),
            }
        }
        Ok(want.next().is_none())
    }

    /// Whether the allocator already is `next_ino` with exactly `free` in `[from, to)`, and
    /// no orphan waits (a read, as [`Self::entries_match`]).
    fn allocator_matches(
        &self,
        fs: FsId,
        next_ino: Ino,
        from: Ino,
        to: Ino,
        free: &[(Ino, Gen)],
    ) -> Result<bool, FsError> {
        let _t = lock(&self.txn);
        if self.has_orphans(fs)? {
            return Ok(false);
        }
        let r = self.db.begin_read().map_err(db_err)?;
        let alloc = r.open_table(ALLOC).map_err(db_err)?;
        if alloc.get(fs.0).map_err(db_err)?.map(|v| v.value().0) != Some(next_ino.0) {
            return Ok(false);
        }
        let t = r.open_table(FREE).map_err(db_err)?;
        let mut want = free.iter();
        for row in t.range((fs.0, from.0)..(fs.0, to.0)).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            match want.next() {
                Some((i, g)) if i.0 == k.value().1 && g.0 == v.value() => {}
                _ => return Ok(false),
            }
        }
        Ok(want.next().is_none())
    }

    /// Whether `fs` has orphans (a read, so the common "none" costs no write transaction).
    fn has_orphans(&self, fs: FsId) -> Result<bool, FsError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = match r.open_table(ORPHANS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(db_err(e)),
        };
        Ok(t.range((fs.0, 0)..=(fs.0, u64::MAX))
            .map_err(db_err)?
            .next()
            .is_some())
    }

    fn put_data(
        &self,
        fs: FsId,
        ino: Ino,
        offset: u64,
        len: u64,
        segments: &[(u64, Bytes)],
    ) -> Result<(), FsError> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= FILE_SIZE_MAX_BYTES)
            .ok_or(FsError::FBig)?;
        let mut at = offset;
        for (o, b) in segments {
            let seg_end = o.checked_add(b.len() as u64).ok_or(FsError::Inval)?;
            if *o < at || seg_end > end {
                return Err(FsError::Inval);
            }
            at = seg_end;
        }
        if self.has_orphans(fs)? {
            let rec = RecRef::FreeOrphans { fs }.encode()?;
            self.txn(fs, Time::default(), &rec, |cx| SyncCx::new(cx)?.collect())?;
        }
        // Checked, and the data file opened (or made), under the cache lock, as WRITE does: a
        // removal moves the data file to the trash under the same lock.
        let (gen, size, file) = {
            let mut c = lock(&self.cache);
            let e = self.load(&mut c, fs, ino)?;
            let i = e.inode.as_ref().ok_or(FsError::Stale)?;
            match i.kind {
                Kind::File { .. } => {}
                Kind::Dir { .. } => return Err(FsError::IsDir),
                Kind::Symlink { .. } => return Err(FsError::Inval),
            }
            let (gen, size) = (i.gen, i.size);
            // Bytes past the size are not kept (a data file never outgrows its inode).
            let writes = segments.iter().any(|(o, b)| !b.is_empty() && *o < size);
            (gen, size, self.fds.get(fs, ino, writes)?)
        };
        let end = end.min(size);
        let Some((f, created)) = file else {
            // No data file and nothing to write: the range reads as zeros already.
            return Ok(());
        };
        if offset < end {
            let flen = f
                .file
                .metadata()
                .map_err(|e| data::io_err("stat of", &f.path, &e))?
                .len();
            // Holes between the segments (past the data file's end it reads as zeros anyway).
            let mut at = offset;
            let gaps = segments
                .iter()
                .map(|(o, b)| (*o, o + b.len() as u64))
                .chain(std::iter::once((end, end)));
            for (s, e) in gaps {
                let hole_end = s.min(end).min(flen);
                if at < hole_end {
                    punch(&f, at, hole_end - at)?;
                }
                at = at.max(e);
            }
            for (o, b) in segments {
                if *o >= end {
                    break;
                }
                let n = (end - o).min(b.len() as u64) as usize;
                // The copy being brought up to date serves no host meanwhile: large aligned
                // segments go straight to the disk, as a twin's large WRITEs do.
                f.write(&b[..n], *o, true)?;
            }
            // Only after the bytes are in: whoever syncs this file next also covers them.
            let mut u = lock(&self.unsynced);
            let slot = u.entry((fs, ino)).or_insert(false);
            *slot |= created;
        }
        // Replaced meanwhile (as WRITE checks): the bytes went to the old inode's data.
        let mut c = lock(&self.cache);
        match &self.load(&mut c, fs, ino)?.inode {
            Some(i) if i.gen == gen => Ok(()),
            _ => Err(FsError::Stale),
        }
    }

    /// The data segments inside `[offset, offset + len)` of regular file `ino`, clipped to
    /// its size, holes left out (SEEK_DATA / SEEK_HOLE; a local file system without holes
    /// answers its bytes as one segment). At most [`SEGMENTS_MAX_BYTES`] after clipping.
    pub fn read_segments(
        &self,
        fs: FsId,
        ino: Ino,
        offset: u64,
        len: u64,
    ) -> Result<Vec<(u64, Bytes)>, FsError> {
        self.check_fs(fs)?;
        let i = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        match i.kind {
            Kind::File { .. } => {}
            Kind::Dir { .. } => return Err(FsError::IsDir),
            Kind::Symlink { .. } => return Err(FsError::Inval),
        }
        let end = offset.saturating_add(len).min(i.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if end - offset > SEGMENTS_MAX_BYTES {
            return Err(FsError::Inval);
        }
        let Some((f, _)) = self.fds.get(fs, ino, false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let Some(d) = next_data(&f, pos)?.filter(|d| *d < end) else {
                break;
            };
            let h = next_hole(&f, d)?.min(end);
            if h <= d {
                break;
            }
            let mut buf = vec![0u8; (h - d) as usize];
            data::read_zero_filled(&f.file, &f.path, d, &mut buf)?;
            out.push((d, Bytes::from(buf)));
            pos = h;
        }
        Ok(out)
    }

    /// Every entry of directory `dir`, (name, ino), in slot order (READDIR's).
    pub fn entries(&self, fs: FsId, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError> {
        self.check_fs(fs)?;
        let d = self.record(fs, dir)?.ok_or(FsError::Stale)?;
        if !d.is_dir() {
            return Err(FsError::NotDir);
        }
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(SLOTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t
            .range((fs.0, dir.0, 0)..=(fs.0, dir.0, u64::MAX))
            .map_err(db_err)?
        {
            let (_, v) = row.map_err(db_err)?;
            let (ino, name) = v.value();
            out.push((name.to_vec(), Ino(ino)));
        }
        Ok(out)
    }

    /// Inode `ino` as resync copies it: its attributes and, for a symlink, its target. None
    /// if it does not exist.
    #[allow(clippy::type_complexity)] // the metro module's signature (notes/store-api-2.md)
    pub fn inode(&self, fs: FsId, ino: Ino) -> Result<Option<(Attr, Option<Vec<u8>>)>, FsError> {
        self.check_fs(fs)?;
        let Some(i) = self.record(fs, ino)? else {
            return Ok(None);
        };
        let target = match &i.kind {
            Kind::Symlink { target } => Some(target.clone()),
            Kind::File { .. } | Kind::Dir { .. } => None,
        };
        Ok(Some((self.attr_of(fs, ino, &i)?, target)))
    }

    /// The steps that copy inode `ino` as it is: `PutInode`, then for a regular file
    /// `Verifier` (its exclusive-create verifier or none: the target's inode of the same number
    /// and generation may be another file, made while the two sides went apart). Empty if it
    /// does not exist.
    pub fn sync_inode(&self, fs: FsId, ino: Ino) -> Result<Vec<SyncOp>, FsError> {
        self.check_fs(fs)?;
        let Some(i) = self.record(fs, ino)? else {
            return Ok(Vec::new());
        };
        let attr = self.attr_of(fs, ino, &i)?;
        let gen = i.gen;
        Ok(match i.kind {
            Kind::Symlink { target } => vec![SyncOp::PutInode {
                attr,
                symlink: Some(target),
            }],
            Kind::Dir { .. } => vec![SyncOp::PutInode {
                attr,
                symlink: None,
            }],
            Kind::File { verifier } => vec![
                SyncOp::PutInode {
                    attr,
                    symlink: None,
                },
                SyncOp::Verifier { ino, gen, verifier },
            ],
        })
    }

    /// Directory `dir` as `Entries` steps (see [`SyncOp::Entries`]): its next slot and every
    /// entry with its slot, in ranges of at most `op_bytes_max` bytes each (by
    /// [`sync_op_bytes`]), the highest range first, together covering every slot. One
    /// consistent read.
    pub fn sync_dir(
        &self,
        fs: FsId,
        dir: Ino,
        op_bytes_max: usize,
    ) -> Result<Vec<SyncOp>, FsError> {
        self.check_fs(fs)?;
        let (next_slot, entries) = {
            let _t = lock(&self.txn);
            let d = self.record(fs, dir)?.ok_or(FsError::Stale)?;
            let Kind::Dir { next_slot, .. } = d.kind else {
                return Err(FsError::NotDir);
            };
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(SLOTS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t
                .range((fs.0, dir.0, 0)..=(fs.0, dir.0, u64::MAX))
                .map_err(db_err)?
            {
                let (k, v) = row.map_err(db_err)?;
                let (ino, name) = v.value();
                out.push((k.value().2, name.to_vec(), Ino(ino)));
            }
            (next_slot, out)
        };
        let empty = SyncOp::Entries {
            dir,
            next_slot,
            from: 0,
            to: u64::MAX,
            entries: Vec::new(),
        };
        let base = sync_op_bytes(&empty);
        // Ranges from the lowest up, then reversed: each starts at its first entry's slot.
        let mut ops = Vec::new();
        let mut cur: Vec<(u64, Vec<u8>, Ino)> = Vec::new();
        let mut bytes = base;
        let mut from = 0;
        for e in entries {
            let b = 30 + e.1.len();
            if !cur.is_empty() && bytes + b > op_bytes_max {
                let to = e.0;
                ops.push(SyncOp::Entries {
                    dir,
                    next_slot,
                    from,
                    to,
                    entries: std::mem::take(&mut cur),
                });
                from = to;
                bytes = base;
            }
            bytes += b;
            cur.push(e);
        }
        ops.push(SyncOp::Entries {
            dir,
            next_slot,
            from,
            to: u64::MAX,
            entries: cur,
        });
        ops.reverse();
        Ok(ops)
    }

    /// The allocator of `fs` as `Allocator` steps (see [`SyncOp::Allocator`]): the never-used
    /// mark and every free number with its last generation, in ranges of at most
    /// `op_bytes_max` bytes each, the highest first. One consistent read.
    pub fn sync_allocator(&self, fs: FsId, op_bytes_max: usize) -> Result<Vec<SyncOp>, FsError> {
        self.check_fs(fs)?;
        let (next_ino, free) = {
            let _t = lock(&self.txn);
            let r = self.db.begin_read().map_err(db_err)?;
            let next = r
                .open_table(ALLOC)
                .map_err(db_err)?
                .get(fs.0)
                .map_err(db_err)?
                .map(|v| v.value().0)
                .ok_or_else(|| corrupt(format!("fs {fs} has no allocator row")))?;
            let t = r.open_table(FREE).map_err(db_err)?;
            let mut free = Vec::new();
            for row in t.range((fs.0, 0)..=(fs.0, u64::MAX)).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                free.push((Ino(k.value().1), Gen(v.value())));
            }
            (Ino(next), free)
        };
        let per_op = (op_bytes_max.saturating_sub(60) / 20).max(1);
        let mut ops = Vec::new();
        let mut from = Ino(0);
        let mut chunks = free.chunks(per_op).peekable();
        if chunks.peek().is_none() {
            return Ok(vec![SyncOp::Allocator {
                next_ino,
                from,
                to: Ino(u64::MAX),
                free: Vec::new(),
            }]);
        }
        while let Some(c) = chunks.next() {
            let to = chunks.peek().map_or(Ino(u64::MAX), |n| n[0].0);
            ops.push(SyncOp::Allocator {
                next_ino,
                from,
                to,
                free: c.to_vec(),
            });
            from = to;
        }
        ops.reverse();
        Ok(ops)
    }

    /// Every inode number in use in `fs`, ascending (one committed state: numbers come and go
    /// only in metadata transactions).
    pub fn inodes(&self, fs: FsId) -> Result<Vec<Ino>, FsError> {
        self.check_fs(fs)?;
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(INODES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.range((fs.0, 0)..=(fs.0, u64::MAX)).map_err(db_err)? {
            let (k, _) = row.map_err(db_err)?;
            out.push(Ino(k.value().1));
        }
        Ok(out)
    }

    /// A digest (xxh3-64) of each `chunk_bytes` chunk of regular file `ino` up to its size,
    /// the last chunk short; a hole hashes like zeros. Empty for a directory or symlink. At most
    /// [`DIGESTS_MAX`] chunks (INVAL beyond: ask with larger chunks).
    pub fn digests(&self, fs: FsId, ino: Ino, chunk_bytes: u64) -> Result<Vec<u64>, FsError> {
        self.check_fs(fs)?;
        if chunk_bytes == 0 {
            return Err(FsError::Inval);
        }
        let i = self.record(fs, ino)?.ok_or(FsError::Stale)?;
        if !i.is_file() {
            return Ok(Vec::new());
        }
        if i.size.div_ceil(chunk_bytes) > DIGESTS_MAX {
            return Err(FsError::Inval);
        }
        let file = self.fds.get(fs, ino, false)?;
        let f = file.as_ref().map(|(f, _)| f.as_ref());
        let mut buf = vec![0u8; DIGEST_PIECE_BYTES as usize];
        let mut out = Vec::new();
        let mut at = 0;
        while at < i.size {
            let to = at.saturating_add(chunk_bytes).min(i.size);
            out.push(chunk_digest(f, at, to, &mut buf)?);
            at = to;
        }
        Ok(out)
    }
}
