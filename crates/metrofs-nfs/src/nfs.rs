//! The NFSv3 procedures (RFC 1813) onto [`Backend`] calls.
//!
//! Every procedure that names a handle first [resolves](Shared::resolve) it, which also applies
//! the export's rules to this call (not only at MOUNT):
//! 1. the bytes are one of our handles, else BADHANDLE;
//! 2. its fs is exported, else STALE; the client's address is allowed, else ACCES;
//! 3. the inode exists with the handle's generation, else STALE;
//! 4. the caller is the credential after root squashing (AUTH_NONE is the anonymous user).
//!
//! Then a changing procedure checks, before anything is submitted: read-only export (ROFS),
//! names, and the caller's permissions ([`crate::perm`]); it then passes one `OpBody` to
//! [`Backend::change`] and answers with the `OpReply`'s attributes (wcc data). Reads call the
//! backend's read methods. Post-op attributes are returned wherever the RFC has them.
//!
//! Retransmissions after a failover: a keyed change (the caller carries a
//! [`metrofs_core::ReplyKey`], see `server`) that the reply cache did not know asks
//! [`Backend::replayed`] right after its handles resolved, before any other check: the
//! change may have been applied by the array that was lost, and the checks would then see
//! its effects (RENAME's source is gone: NOENT; SETATTR's ctime guard moved: NOT_SYNC; a
//! chmod took the caller's own permission away: ACCES). On a result, the reply is encoded
//! from it exactly as if [`Backend::change`] had just returned it, and nothing is submitted.

use bytes::{Bytes, BytesMut};
use metrofs_core::{
    Attr, Backend, Caller, CreateHow, ExportRules, FileHandle, FileType, FsId, Ino, OpBody,
    OpReply, SetAttr, Stability, Time, WccAttr, FILE_SIZE_MAX_BYTES, NAME_MAX_BYTES,
    SYMLINK_MAX_BYTES,
};
use nfs3_types::nfs3::{
    cookieverf3, dirlist3, dirlistplus3, entry3, entryplus3, filename3, nfspath3, nfsstat3,
    post_op_attr, post_op_fh3, stable_how, wcc_data, writeverf3, ACCESS3res, ACCESS3resfail,
    ACCESS3resok, COMMIT3res, COMMIT3resfail, COMMIT3resok, CREATE3res, CREATE3resfail,
    CREATE3resok, FSINFO3res, FSINFO3resfail, FSINFO3resok, FSSTAT3res, FSSTAT3resfail,
    FSSTAT3resok, GETATTR3res, GETATTR3resok, LINK3res, LINK3resfail, LINK3resok, LOOKUP3res,
    LOOKUP3resfail, LOOKUP3resok, MKDIR3res, MKDIR3resfail, MKDIR3resok, MKNOD3res, MKNOD3resfail,
    Nfs3Result, PATHCONF3res, PATHCONF3resfail, PATHCONF3resok, READDIR3res, READDIR3resfail,
    READDIR3resok, READDIRPLUS3res, READDIRPLUS3resfail, READDIRPLUS3resok, READLINK3res,
    READLINK3resfail, READLINK3resok, REMOVE3res, REMOVE3resfail, REMOVE3resok, RENAME3res,
    RENAME3resfail, RENAME3resok, RMDIR3res, RMDIR3resfail, RMDIR3resok, SETATTR3res,
    SETATTR3resfail, SETATTR3resok, SYMLINK3res, SYMLINK3resfail, SYMLINK3resok, WRITE3res,
    WRITE3resfail, WRITE3resok, FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK,
};
use nfs3_types::xdr_codec::{List, Opaque, Pack, Void};

use crate::convert::{
    dec_fh, dec_sattr, dec_time, dir_wcc, fattr, fh3, handle_of, post, post_fh, times_valid, wcc,
};
use crate::error::Stat;
use crate::perm;
use crate::rpc::Cred;
use crate::server::{Req, Shared};
use crate::xdr::{self, padded, Dec, EncodeError, Garbage};

/// FSINFO: largest and preferred READ and WRITE, in bytes.
pub const IO_BYTES_MAX: u32 = 1 << 20;
/// FSINFO: preferred READDIR size, in bytes.
pub const DIR_BYTES_PREF: u32 = 64 << 10;
/// PATHCONF: most hard links to one file: the store's limit.
pub const LINK_MAX: u32 = metrofs_core::LINKS_MAX;
/// The cookie verifier: constant, because cookies stay valid while entries come and go.
const COOKIEVERF: [u8; 8] = [0; 8];
/// READDIR cookies of the two entries the front end adds; the backend's cookies (>= 1) are
/// sent shifted by [`COOKIE_SHIFT`], so wire cookies 1 and 2 can only mean "." and "..".
const COOKIE_DOT: u64 = 1;
const COOKIE_DOTDOT: u64 = 2;
const COOKIE_SHIFT: u64 = 2;
/// Entries asked of the backend per READDIR call, at most.
const DIR_ENTRIES_PER_CALL_MAX: usize = 4096;

/// A procedure's outcome, for the dispatcher: the status (logs, and the reply cache, which
/// does not keep JUKEBOX), and the data that follows the encoded reply (READ's, else empty).
#[derive(Debug)]
pub(crate) struct Done {
    pub status: nfsstat3,
    pub data: Bytes,
}

/// A procedure that could not run.
#[derive(Debug)]
pub(crate) enum Fail {
    Garbage,
    ProcUnavail,
    Encode(EncodeError),
}

impl From<Garbage> for Fail {
    fn from(_: Garbage) -> Self {
        Self::Garbage
    }
}

impl From<EncodeError> for Fail {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

type Res = Result<Done, Fail>;

/// Packs a result and reports its status.
fn reply<T: Pack, E: Pack>(out: &mut BytesMut, res: &Nfs3Result<T, E>) -> Res {
    xdr::put(out, res)?;
    let status = match res {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((s, _)) => *s,
    };
    Ok(Done {
        status,
        data: Bytes::new(),
    })
}

/// A resolved handle: the object, its export's rules, and the caller as the export sees it.
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub fh: FileHandle,
    pub attr: Attr,
    pub rules: ExportRules,
    pub caller: Caller,
}

impl Obj {
    fn fs(&self) -> FsId {
        self.fh.fs
    }
    fn ino(&self) -> Ino {
        self.fh.ino
    }
    fn writable(&self) -> Result<(), Stat> {
        if self.rules.read_only {
            Err(Stat(nfsstat3::NFS3ERR_ROFS))
        } else {
            Ok(())
        }
    }
    fn post(&self) -> post_op_attr {
        post(Some(&self.attr), self.fs())
    }
    fn pre(&self) -> WccAttr {
        WccAttr::from(&self.attr)
    }
}

/// The caller as an export sees it: AUTH_NONE is the anonymous user; with root squashing,
/// uid 0 and gid 0 (also among the groups) become the anonymous ones.
pub(crate) fn squash(cred: &Cred, rules: &ExportRules, req: &Req) -> Caller {
    let (uid, gid, gids) = match cred {
        Cred::None => (rules.anon_uid, rules.anon_gid, Vec::new()),
        Cred::Sys { uid, gid, gids } => {
            if rules.root_squash {
                let g = |g: u32| if g == 0 { rules.anon_gid } else { g };
                (
                    if *uid == 0 { rules.anon_uid } else { *uid },
                    g(*gid),
                    gids.iter().map(|x| g(*x)).collect(),
                )
            } else {
                (*uid, *gid, gids.clone())
            }
        }
    };
    Caller {
        addr: req.peer,
        uid,
        gid,
        gids,
        xid: req.xid,
        reply_key: req.reply_key,
    }
}

/// The entry name a change names (RENAME: its source), for logs.
fn body_name(body: &OpBody) -> String {
    match body {
        OpBody::Create { name, .. }
        | OpBody::Mkdir { name, .. }
        | OpBody::Symlink { name, .. }
        | OpBody::Remove { name, .. }
        | OpBody::Rmdir { name, .. }
        | OpBody::Link { name, .. }
        | OpBody::Rename {
            from_name: name, ..
        } => String::from_utf8_lossy(name).into_owned(),
        OpBody::Write { ino, .. } | OpBody::SetAttr { ino, .. } | OpBody::Commit { ino } => {
            format!("inode {ino}")
        }
    }
}

/// A name for a new entry: not too long, not empty, not "." or "..", no '/' or NUL.
fn check_new_name(name: &[u8]) -> Result<(), Stat> {
    if name.len() > NAME_MAX_BYTES {
        return Err(Stat(nfsstat3::NFS3ERR_NAMETOOLONG));
    }
    if name == b"." || name == b".." {
        return Err(Stat(nfsstat3::NFS3ERR_EXIST));
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Stat(nfsstat3::NFS3ERR_INVAL));
    }
    Ok(())
}

/// A name of an existing entry to remove or rename: "." and ".." cannot be.
fn check_old_name(name: &[u8]) -> Result<(), Stat> {
    if name.len() > NAME_MAX_BYTES {
        return Err(Stat(nfsstat3::NFS3ERR_NAMETOOLONG));
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Stat(nfsstat3::NFS3ERR_INVAL));
    }
    Ok(())
}

fn stability(s: u32) -> Result<Stability, Garbage> {
    match s {
        0 => Ok(Stability::Unstable),
        1 => Ok(Stability::DataSync),
        2 => Ok(Stability::FileSync),
        _ => Err(Garbage),
    }
}

fn stable_how_of(s: Stability) -> stable_how {
    match s {
        Stability::Unstable => stable_how::UNSTABLE,
        Stability::DataSync => stable_how::DATA_SYNC,
        Stability::FileSync => stable_how::FILE_SYNC,
    }
}

/// Owner of a new object: the caller, or for root what the client asks; the group of a
/// set-group-ID directory is inherited (and mkdir passes the bit on).
fn new_owner(dir: &Attr, c: &Caller, s: &SetAttr) -> Result<(u32, u32), Stat> {
    perm::check_owner_change(c.uid, c, s.uid, s.gid, true).map_err(Stat)?;
    let uid = s.uid.unwrap_or(c.uid);
    let gid = s.gid.unwrap_or(if dir.mode & 0o2000 != 0 {
        dir.gid
    } else {
        c.gid
    });
    Ok((uid, gid))
}

impl<B: Backend> Shared<B> {
    /// Runs NFSv3 procedure `proc`, appending its result to `out` (which holds the RPC header).
    pub(crate) async fn nfs(&self, proc: u32, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        match proc {
            0 => Ok(Done {
                status: nfsstat3::NFS3_OK,
                data: Bytes::new(),
            }),
            1 => self.getattr(r, d, out).await,
            2 => self.setattr(r, d, out).await,
            3 => self.lookup(r, d, out).await,
            4 => self.access(r, d, out).await,
            5 => self.readlink(r, d, out).await,
            6 => self.read(r, d, out).await,
            7 => self.write(r, d, out).await,
            8 => self.create(r, d, out).await,
            9 => self.mkdir(r, d, out).await,
            10 => self.symlink(r, d, out).await,
            11 => self.mknod(r, d, out).await,
            12 => self.remove(r, d, out, false).await,
            13 => self.remove(r, d, out, true).await,
            14 => self.rename(r, d, out).await,
            15 => self.link(r, d, out).await,
            16 => self.readdir(r, d, out, false).await,
            17 => self.readdir(r, d, out, true).await,
            18 => self.fsstat(r, d, out).await,
            19 => self.fsinfo(r, d, out).await,
            20 => self.pathconf(r, d, out).await,
            21 => self.commit(r, d, out).await,
            _ => Err(Fail::ProcUnavail),
        }
    }

    /// Handle → object, with the export's rules applied to this call (module doc).
    pub(crate) async fn resolve(&self, r: &Req, fh: &[u8]) -> Result<Obj, Stat> {
        let h = FileHandle::from_bytes(fh).ok_or(Stat(nfsstat3::NFS3ERR_BADHANDLE))?;
        let export = self
            .backend
            .export_by_fs(h.fs)
            .ok_or(Stat(nfsstat3::NFS3ERR_STALE))?;
        if !export.rules.allows(r.peer.ip()) {
            tracing::debug!(peer = %r.peer, fs = %export.name, "client not allowed by the export");
            return Err(Stat(nfsstat3::NFS3ERR_ACCES));
        }
        let attr = self
            .backend
            .getattr(h.fs, h.ino)
            .await
            .map_err(|e| match e {
                metrofs_core::FsError::NoEnt => Stat(nfsstat3::NFS3ERR_STALE),
                e => Stat::from(e),
            })?;
        if attr.gen != h.gen {
            return Err(Stat(nfsstat3::NFS3ERR_STALE));
        }
        let caller = squash(&r.cred, &export.rules, r);
        Ok(Obj {
            fh: h,
            attr,
            rules: export.rules,
            caller,
        })
    }

    /// Current attributes of a resolved object (None when it is gone or reused).
    async fn fresh(&self, o: &Obj) -> Option<Attr> {
        self.backend
            .getattr(o.fs(), o.ino())
            .await
            .ok()
            .filter(|a| a.gen == o.fh.gen)
    }

    /// wcc data for a failed change: what we saw before, and what is there now.
    async fn wcc_failed(&self, o: &Obj) -> wcc_data {
        let now = self.fresh(o).await;
        wcc(Some(o.pre()), now.as_ref(), o.fs())
    }

    async fn change(&self, o: &Obj, body: OpBody) -> Result<OpReply, Stat> {
        let armed = self.failpoint.as_ref().filter(|f| f.matches(&body));
        let what = armed.map(|_| format!("{} {:?}", body.kind(), body_name(&body)));
        let result = self.backend.change(o.fs(), body, &o.caller).await;
        if let (Some(f), Some(what)) = (armed, what) {
            f.fire(&format!("{what} (answer {result:?})"));
        }
        Ok(result?)
    }

    /// The result the backend already has for this keyed change (module doc), if any.
    fn replayed(&self, o: &Obj) -> Option<Result<OpReply, Stat>> {
        let key = o.caller.reply_key.as_ref()?;
        let result = self.backend.replayed(o.fs(), key)?;
        tracing::info!(client = %o.caller.addr, %key, ok = result.is_ok(), "retransmission of a change already applied: answered with its result");
        Some(result.map_err(Stat::from))
    }

    async fn getattr(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let res = match self.resolve(r, &fh).await {
            Ok(o) => GETATTR3res::Ok(GETATTR3resok {
                obj_attributes: fattr(&o.attr, o.fs()),
            }),
            Err(s) => GETATTR3res::Err((s.0, Void)),
        };
        reply(out, &res)
    }

    async fn setattr(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let s = dec_sattr(d)?;
        let guard = if d.bool()? { Some(dec_time(d)?) } else { None };
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &SETATTR3res::Err((e.0, SETATTR3resfail::default()))),
        };
        let res = match self.setattr_do(&o, s, guard).await {
            Ok(rep) => SETATTR3res::Ok(SETATTR3resok {
                obj_wcc: wcc(
                    Some(rep.obj_before.unwrap_or_else(|| o.pre())),
                    Some(rep.obj.as_ref().unwrap_or(&o.attr)),
                    o.fs(),
                ),
            }),
            Err(e) => SETATTR3res::Err((
                e.0,
                SETATTR3resfail {
                    obj_wcc: self.wcc_failed(&o).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn setattr_do(&self, o: &Obj, s: SetAttr, guard: Option<Time>) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(o) {
            return done;
        }
        o.writable()?;
        if !times_valid(&s) {
            return Err(Stat(nfsstat3::NFS3ERR_INVAL));
        }
        if guard.is_some_and(|g| g != o.attr.ctime) {
            return Err(Stat(nfsstat3::NFS3ERR_NOT_SYNC));
        }
        perm::check_setattr(&o.attr, &o.caller, &s).map_err(Stat)?;
        if s.is_empty() {
            // Nothing to change: the RFC's no-op, answered without an op.
            return Ok(OpReply {
                obj: Some(o.attr.clone()),
                obj_before: Some(o.pre()),
                ..OpReply::default()
            });
        }
        if s.size.is_some_and(|z| z > FILE_SIZE_MAX_BYTES) {
            return Err(Stat(nfsstat3::NFS3ERR_FBIG));
        }
        self.change(
            o,
            OpBody::SetAttr {
                ino: o.ino(),
                attr: s,
                guard,
            },
        )
        .await
    }

    async fn lookup(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &LOOKUP3res::Err((e.0, LOOKUP3resfail::default()))),
        };
        let res = match self.lookup_do(&dir, &name).await {
            Ok(a) => LOOKUP3res::Ok(LOOKUP3resok {
                object: fh3(handle_of(&a, dir.fs())),
                obj_attributes: post(Some(&a), dir.fs()),
                dir_attributes: dir.post(),
            }),
            Err(e) => LOOKUP3res::Err((
                e.0,
                LOOKUP3resfail {
                    dir_attributes: dir.post(),
                },
            )),
        };
        reply(out, &res)
    }

    async fn lookup_do(&self, dir: &Obj, name: &[u8]) -> Result<Attr, Stat> {
        perm::check_dir_search(&dir.attr, &dir.caller).map_err(Stat)?;
        if name.len() > NAME_MAX_BYTES {
            return Err(Stat(nfsstat3::NFS3ERR_NAMETOOLONG));
        }
        Ok(self.backend.lookup(dir.fs(), dir.ino(), name).await?)
    }

    async fn access(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let want = d.u32()?;
        let res = match self.resolve(r, &fh).await {
            Ok(o) => ACCESS3res::Ok(ACCESS3resok {
                obj_attributes: o.post(),
                access: perm::access3(&o.attr, &o.caller, want, o.rules.read_only),
            }),
            Err(e) => ACCESS3res::Err((e.0, ACCESS3resfail::default())),
        };
        reply(out, &res)
    }

    async fn readlink(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &READLINK3res::Err((e.0, READLINK3resfail::default()))),
        };
        let got = if o.attr.ftype == FileType::Symlink {
            self.backend
                .readlink(o.fs(), o.ino())
                .await
                .map_err(Stat::from)
        } else {
            Err(Stat(nfsstat3::NFS3ERR_INVAL))
        };
        let res = match &got {
            Ok((target, a)) => READLINK3res::Ok(READLINK3resok {
                symlink_attributes: post(Some(a), o.fs()),
                data: nfspath3(Opaque::borrowed(target)),
            }),
            Err(e) => READLINK3res::Err((
                e.0,
                READLINK3resfail {
                    symlink_attributes: o.post(),
                },
            )),
        };
        reply(out, &res)
    }

    /// READ: the reply's data is not copied into the reply buffer; the writer sends it after
    /// the encoded header (`Done::data`, then XDR padding).
    async fn read(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let offset = d.u64()?;
        let count = d.u32()?.min(IO_BYTES_MAX);
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => {
                return reply(
                    out,
                    &nfs3_types::nfs3::READ3res::Err((e.0, Default::default())),
                )
            }
        };
        let got = match o.attr.ftype {
            FileType::Directory => Err(Stat(nfsstat3::NFS3ERR_ISDIR)),
            FileType::Symlink => Err(Stat(nfsstat3::NFS3ERR_INVAL)),
            FileType::Regular if !perm::may_read_data(&o.attr, &o.caller) => {
                Err(Stat(nfsstat3::NFS3ERR_ACCES))
            }
            FileType::Regular => self
                .backend
                .read(o.fs(), o.ino(), offset, count)
                .await
                .map_err(Stat::from),
        };
        match got {
            Ok(rr) => {
                let len = u32::try_from(rr.data.len())
                    .map_err(|_| EncodeError("read reply over 4 GiB".into()))?;
                xdr::put(out, &nfsstat3::NFS3_OK)?;
                xdr::put(out, &post(Some(&rr.attr), o.fs()))?;
                xdr::put(out, &len)?;
                xdr::put(out, &rr.eof)?;
                xdr::put(out, &len)?;
                Ok(Done {
                    status: nfsstat3::NFS3_OK,
                    data: rr.data,
                })
            }
            Err(e) => reply(
                out,
                &nfs3_types::nfs3::READ3res::Err((
                    e.0,
                    nfs3_types::nfs3::READ3resfail {
                        file_attributes: o.post(),
                    },
                )),
            ),
        }
    }

    /// WRITE: the data goes to the backend as a slice of the received record.
    async fn write(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let offset = d.u64()?;
        let count = d.u32()?;
        let stable = stability(d.u32()?)?;
        let data = d.opaque(usize::MAX)?;
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &WRITE3res::Err((e.0, WRITE3resfail::default()))),
        };
        let res = match self.write_do(&o, offset, count, stable, data).await {
            Ok((rep, n)) => WRITE3res::Ok(WRITE3resok {
                file_wcc: wcc(
                    Some(rep.obj_before.unwrap_or_else(|| o.pre())),
                    rep.obj.as_ref(),
                    o.fs(),
                ),
                count: n,
                committed: stable_how_of(stable),
                verf: writeverf3(self.backend.write_verifier()),
            }),
            Err(e) => WRITE3res::Err((
                e.0,
                WRITE3resfail {
                    file_wcc: self.wcc_failed(&o).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn write_do(
        &self,
        o: &Obj,
        offset: u64,
        count: u32,
        stable: Stability,
        data: Bytes,
    ) -> Result<(OpReply, u32), Stat> {
        o.writable()?;
        match o.attr.ftype {
            FileType::Directory => return Err(Stat(nfsstat3::NFS3ERR_ISDIR)),
            FileType::Symlink => return Err(Stat(nfsstat3::NFS3ERR_INVAL)),
            FileType::Regular => {}
        }
        // The count must describe the data that came (RFC 1813: count is the data's size).
        if count as usize != data.len() {
            return Err(Stat(nfsstat3::NFS3ERR_INVAL));
        }
        if offset
            .checked_add(u64::from(count))
            .is_none_or(|end| end > FILE_SIZE_MAX_BYTES)
        {
            return Err(Stat(nfsstat3::NFS3ERR_FBIG));
        }
        if !perm::may_write_data(&o.attr, &o.caller) {
            return Err(Stat(nfsstat3::NFS3ERR_ACCES));
        }
        let rep = self
            .change(
                o,
                OpBody::Write {
                    ino: o.ino(),
                    offset,
                    data,
                    stable,
                },
            )
            .await?;
        Ok((rep, count))
    }

    async fn create(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let how = match d.u32()? {
            0 => CreateHow::Unchecked(dec_sattr(d)?),
            1 => CreateHow::Guarded(dec_sattr(d)?),
            2 => CreateHow::Exclusive(d.fixed::<8>()?),
            _ => return Err(Fail::Garbage),
        };
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &CREATE3res::Err((e.0, CREATE3resfail::default()))),
        };
        let res = match self.create_do(&dir, &name, how).await {
            Ok(rep) => CREATE3res::Ok(CREATE3resok {
                obj: post_fh(rep.obj.as_ref(), dir.fs()),
                obj_attributes: post(rep.obj.as_ref(), dir.fs()),
                dir_wcc: dir_wcc(rep.dir.as_ref(), dir.fs()),
            }),
            Err(e) => CREATE3res::Err((
                e.0,
                CREATE3resfail {
                    dir_wcc: self.wcc_failed(&dir).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn create_do(&self, dir: &Obj, name: &[u8], how: CreateHow) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(dir) {
            return done;
        }
        dir.writable()?;
        perm::check_dir_change(&dir.attr, &dir.caller).map_err(Stat)?;
        check_new_name(name)?;
        let c = &dir.caller;
        let (s, how) = match how {
            CreateHow::Unchecked(s) => {
                // An existing file is truncated (size) rather than created: that needs write
                // permission on it.
                if s.size.is_some() {
                    if let Ok(existing) = self.backend.lookup(dir.fs(), dir.ino(), name).await {
                        if existing.ftype == FileType::Regular
                            && !perm::may_write_data(&existing, c)
                        {
                            return Err(Stat(nfsstat3::NFS3ERR_ACCES));
                        }
                    }
                }
                let keep = SetAttr {
                    size: s.size,
                    atime: s.atime,
                    mtime: s.mtime,
                    ..SetAttr::default()
                };
                (s, CreateHow::Unchecked(keep))
            }
            CreateHow::Guarded(s) => {
                let keep = SetAttr {
                    size: s.size,
                    atime: s.atime,
                    mtime: s.mtime,
                    ..SetAttr::default()
                };
                (s, CreateHow::Guarded(keep))
            }
            CreateHow::Exclusive(v) => (SetAttr::default(), CreateHow::Exclusive(v)),
        };
        if !times_valid(&s) {
            return Err(Stat(nfsstat3::NFS3ERR_INVAL));
        }
        let (uid, gid) = new_owner(&dir.attr, c, &s)?;
        let mode = s.mode.unwrap_or(0o644);
        let body = OpBody::Create {
            dir: dir.ino(),
            name: name.to_vec(),
            how,
            mode,
            uid,
            gid,
        };
        self.change(dir, body).await
    }

    async fn mkdir(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let s = dec_sattr(d)?;
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &MKDIR3res::Err((e.0, MKDIR3resfail::default()))),
        };
        let res = match self.mkdir_do(&dir, &name, &s).await {
            Ok(rep) => MKDIR3res::Ok(MKDIR3resok {
                obj: post_fh(rep.obj.as_ref(), dir.fs()),
                obj_attributes: post(rep.obj.as_ref(), dir.fs()),
                dir_wcc: dir_wcc(rep.dir.as_ref(), dir.fs()),
            }),
            Err(e) => MKDIR3res::Err((
                e.0,
                MKDIR3resfail {
                    dir_wcc: self.wcc_failed(&dir).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn mkdir_do(&self, dir: &Obj, name: &[u8], s: &SetAttr) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(dir) {
            return done;
        }
        dir.writable()?;
        perm::check_dir_change(&dir.attr, &dir.caller).map_err(Stat)?;
        check_new_name(name)?;
        let (uid, gid) = new_owner(&dir.attr, &dir.caller, s)?;
        let mut mode = s.mode.unwrap_or(0o755);
        if dir.attr.mode & 0o2000 != 0 {
            mode |= 0o2000;
        }
        self.change(
            dir,
            OpBody::Mkdir {
                dir: dir.ino(),
                name: name.to_vec(),
                mode,
                uid,
                gid,
            },
        )
        .await
    }

    async fn symlink(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let s = dec_sattr(d)?;
        let target = d.opaque(usize::MAX)?;
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &SYMLINK3res::Err((e.0, SYMLINK3resfail::default()))),
        };
        let res = match self.symlink_do(&dir, &name, &s, &target).await {
            Ok(rep) => SYMLINK3res::Ok(SYMLINK3resok {
                obj: post_fh(rep.obj.as_ref(), dir.fs()),
                obj_attributes: post(rep.obj.as_ref(), dir.fs()),
                dir_wcc: dir_wcc(rep.dir.as_ref(), dir.fs()),
            }),
            Err(e) => SYMLINK3res::Err((
                e.0,
                SYMLINK3resfail {
                    dir_wcc: self.wcc_failed(&dir).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn symlink_do(
        &self,
        dir: &Obj,
        name: &[u8],
        s: &SetAttr,
        target: &[u8],
    ) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(dir) {
            return done;
        }
        dir.writable()?;
        perm::check_dir_change(&dir.attr, &dir.caller).map_err(Stat)?;
        check_new_name(name)?;
        if target.len() > SYMLINK_MAX_BYTES {
            return Err(Stat(nfsstat3::NFS3ERR_NAMETOOLONG));
        }
        if target.is_empty() || target.contains(&0) {
            return Err(Stat(nfsstat3::NFS3ERR_INVAL));
        }
        let (uid, gid) = new_owner(&dir.attr, &dir.caller, s)?;
        let mode = s.mode.unwrap_or(0o777);
        let body = OpBody::Symlink {
            dir: dir.ino(),
            name: name.to_vec(),
            target: target.to_vec(),
            mode,
            uid,
            gid,
        };
        self.change(dir, body).await
    }

    /// MKNOD: devices, sockets and FIFOs are not stored; NOTSUPP (after the usual checks of
    /// the directory, so a bad handle still answers BADHANDLE or STALE).
    async fn mknod(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let _name = d.opaque(usize::MAX)?;
        let res = match self.resolve(r, &fh).await {
            Ok(dir) => {
                let s = dir
                    .writable()
                    .map_or_else(|e| e.0, |()| nfsstat3::NFS3ERR_NOTSUPP);
                MKNOD3res::Err((
                    s,
                    MKNOD3resfail {
                        dir_wcc: wcc(Some(dir.pre()), Some(&dir.attr), dir.fs()),
                    },
                ))
            }
            Err(e) => MKNOD3res::Err((
                e.0,
                MKNOD3resfail {
                    dir_wcc: wcc_data::default(),
                },
            )),
        };
        reply(out, &res)
    }

    /// REMOVE (`rmdir` false) and RMDIR (true).
    async fn remove(&self, r: &Req, d: &mut Dec, out: &mut BytesMut, rmdir: bool) -> Res {
        let fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) if rmdir => {
                return reply(
                    out,
                    &RMDIR3res::Err((
                        e.0,
                        RMDIR3resfail {
                            dir_wcc: wcc_data::default(),
                        },
                    )),
                )
            }
            Err(e) => return reply(out, &REMOVE3res::Err((e.0, REMOVE3resfail::default()))),
        };
        let done = self.remove_do(&dir, &name, rmdir).await;
        let dir_wcc = match &done {
            Ok(rep) => dir_wcc(rep.dir.as_ref(), dir.fs()),
            Err(_) => self.wcc_failed(&dir).await,
        };
        if rmdir {
            reply(
                out,
                &match done {
                    Ok(_) => RMDIR3res::Ok(RMDIR3resok { dir_wcc }),
                    Err(e) => RMDIR3res::Err((e.0, RMDIR3resfail { dir_wcc })),
                },
            )
        } else {
            reply(
                out,
                &match done {
                    Ok(_) => REMOVE3res::Ok(REMOVE3resok { dir_wcc }),
                    Err(e) => REMOVE3res::Err((e.0, REMOVE3resfail { dir_wcc })),
                },
            )
        }
    }

    async fn remove_do(&self, dir: &Obj, name: &[u8], rmdir: bool) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(dir) {
            return done;
        }
        dir.writable()?;
        perm::check_dir_change(&dir.attr, &dir.caller).map_err(Stat)?;
        check_old_name(name)?;
        self.check_sticky(dir, name).await?;
        let body = if rmdir {
            OpBody::Rmdir {
                dir: dir.ino(),
                name: name.to_vec(),
            }
        } else {
            OpBody::Remove {
                dir: dir.ino(),
                name: name.to_vec(),
            }
        };
        self.change(dir, body).await
    }

    /// In a sticky directory, only root, the directory's owner or the entry's owner may remove
    /// or rename the entry away. A missing entry passes (the backend answers NOENT).
    async fn check_sticky(&self, dir: &Obj, name: &[u8]) -> Result<(), Stat> {
        if dir.attr.mode & 0o1000 == 0 {
            return Ok(());
        }
        match self.backend.lookup(dir.fs(), dir.ino(), name).await {
            Ok(victim) => perm::check_sticky(&dir.attr, &victim, &dir.caller).map_err(Stat),
            Err(_) => Ok(()),
        }
    }

    async fn rename(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let from_fh = dec_fh(d)?;
        let from_name = d.opaque(usize::MAX)?;
        let to_fh = dec_fh(d)?;
        let to_name = d.opaque(usize::MAX)?;
        let from = match self.resolve(r, &from_fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &RENAME3res::Err((e.0, RENAME3resfail::default()))),
        };
        let to = match self.resolve(r, &to_fh).await {
            Ok(o) => o,
            Err(e) => {
                let fromdir_wcc = wcc(Some(from.pre()), Some(&from.attr), from.fs());
                return reply(
                    out,
                    &RENAME3res::Err((
                        e.0,
                        RENAME3resfail {
                            fromdir_wcc,
                            todir_wcc: wcc_data::default(),
                        },
                    )),
                );
            }
        };
        let res = match self.rename_do(&from, &from_name, &to, &to_name).await {
            Ok(rep) => {
                let fromdir_wcc = dir_wcc(rep.dir.as_ref(), from.fs());
                let todir_wcc = dir_wcc(rep.dir2.as_ref().or(rep.dir.as_ref()), to.fs());
                RENAME3res::Ok(RENAME3resok {
                    fromdir_wcc,
                    todir_wcc,
                })
            }
            Err(e) => RENAME3res::Err((
                e.0,
                RENAME3resfail {
                    fromdir_wcc: self.wcc_failed(&from).await,
                    todir_wcc: self.wcc_failed(&to).await,
                },
            )),
        };
        reply(out, &res)
    }

    async fn rename_do(
        &self,
        from: &Obj,
        from_name: &[u8],
        to: &Obj,
        to_name: &[u8],
    ) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(from) {
            return done;
        }
        if from.fs() != to.fs() {
            return Err(Stat(nfsstat3::NFS3ERR_XDEV));
        }
        from.writable()?;
        let c = &from.caller;
        perm::check_dir_change(&from.attr, c).map_err(Stat)?;
        perm::check_dir_change(&to.attr, c).map_err(Stat)?;
        check_old_name(from_name)?;
        check_new_name(to_name).map_err(|e| {
            if e.0 == nfsstat3::NFS3ERR_EXIST {
                Stat(nfsstat3::NFS3ERR_INVAL)
            } else {
                e
            }
        })?;
        let moved = self
            .backend
            .lookup(from.fs(), from.ino(), from_name)
            .await?;
        perm::check_sticky(&from.attr, &moved, c).map_err(Stat)?;
        if to.attr.mode & 0o1000 != 0 {
            if let Ok(target) = self.backend.lookup(to.fs(), to.ino(), to_name).await {
                perm::check_sticky(&to.attr, &target, c).map_err(Stat)?;
            }
        }
        // A directory moving to another parent has its ".." rewritten: it must be writable.
        if moved.ftype == FileType::Directory
            && from.ino() != to.ino()
            && !perm::allowed(&moved, c, perm::W)
        {
            return Err(Stat(nfsstat3::NFS3ERR_ACCES));
        }
        let body = OpBody::Rename {
            from_dir: from.ino(),
            from_name: from_name.to_vec(),
            to_dir: to.ino(),
            to_name: to_name.to_vec(),
        };
        self.change(from, body).await
    }

    async fn link(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let file_fh = dec_fh(d)?;
        let dir_fh = dec_fh(d)?;
        let name = d.opaque(usize::MAX)?;
        let file = match self.resolve(r, &file_fh).await {
            Ok(o) => o,
            Err(e) => {
                let fail = LINK3resfail {
                    file_attributes: post_op_attr::None,
                    linkdir_wcc: wcc_data::default(),
                };
                return reply(out, &LINK3res::Err((e.0, fail)));
            }
        };
        let dir = match self.resolve(r, &dir_fh).await {
            Ok(o) => o,
            Err(e) => {
                let fail = LINK3resfail {
                    file_attributes: file.post(),
                    linkdir_wcc: wcc_data::default(),
                };
                return reply(out, &LINK3res::Err((e.0, fail)));
            }
        };
        let res = match self.link_do(&file, &dir, &name).await {
            Ok(rep) => LINK3res::Ok(LINK3resok {
                file_attributes: post(rep.obj.as_ref(), file.fs()),
                linkdir_wcc: dir_wcc(rep.dir.as_ref(), dir.fs()),
            }),
            Err(e) => {
                let now = self.fresh(&file).await;
                let fail = LINK3resfail {
                    file_attributes: post(now.as_ref(), file.fs()),
                    linkdir_wcc: self.wcc_failed(&dir).await,
                };
                LINK3res::Err((e.0, fail))
            }
        };
        reply(out, &res)
    }

    async fn link_do(&self, file: &Obj, dir: &Obj, name: &[u8]) -> Result<OpReply, Stat> {
        if let Some(done) = self.replayed(dir) {
            return done;
        }
        if file.fs() != dir.fs() {
            return Err(Stat(nfsstat3::NFS3ERR_XDEV));
        }
        dir.writable()?;
        perm::check_dir_change(&dir.attr, &dir.caller).map_err(Stat)?;
        check_new_name(name)?;
        if file.attr.ftype == FileType::Directory {
            return Err(Stat(nfsstat3::NFS3ERR_ISDIR));
        }
        self.change(
            dir,
            OpBody::Link {
                ino: file.ino(),
                dir: dir.ino(),
                name: name.to_vec(),
            },
        )
        .await
    }

    /// READDIR and READDIRPLUS (`plus`).
    ///
    /// Cookies: "." is 1, ".." is 2, a backend entry with cookie `c` (>= 1) is sent as
    /// `c + 2`; cookie 0 starts at ".". So a listing resumed at any cookie the client got
    /// continues right after that entry, whatever was created or removed meanwhile.
    ///
    /// Sizes: the encoded result (status included) never exceeds `count` (READDIR) or
    /// `maxcount` (READDIRPLUS); for READDIRPLUS the entries' directory information (what
    /// they would take in a READDIR reply) never exceeds `dircount`, except that the first
    /// entry is always sent when `maxcount` allows, so a listing always moves forward.
    /// When not even one entry fits in `count`/`maxcount`: TOOSMALL. Larger limits than 1 MiB
    /// are taken as 1 MiB.
    async fn readdir(&self, r: &Req, d: &mut Dec, out: &mut BytesMut, plus: bool) -> Res {
        let fh = dec_fh(d)?;
        let cookie = d.u64()?;
        let verf = d.fixed::<8>()?;
        let (dircount, maxcount) = if plus {
            let dc = d.u32()?;
            (dc as usize, d.u32()? as usize)
        } else {
            let c = d.u32()? as usize;
            (usize::MAX, c)
        };
        // Like READ, a listing reply is at most 1 MiB whatever the client offers.
        let maxcount = maxcount.min(IO_BYTES_MAX as usize);
        let dir = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) if plus => {
                return reply(
                    out,
                    &READDIRPLUS3res::Err((e.0, READDIRPLUS3resfail::default())),
                )
            }
            Err(e) => return reply(out, &READDIR3res::Err((e.0, READDIR3resfail::default()))),
        };
        match self
            .readdir_do(&dir, cookie, verf, dircount, maxcount, plus)
            .await
        {
            Ok(listing) => {
                let fs = dir.fs();
                let dir_attributes = post(Some(&listing.dir), fs);
                if plus {
                    let entries = listing
                        .entries
                        .iter()
                        .map(|e| entryplus3 {
                            fileid: e.ino.0,
                            name: filename3(Opaque::borrowed(&e.name)),
                            cookie: e.cookie,
                            name_attributes: post(e.attr.as_ref(), fs),
                            name_handle: e
                                .attr
                                .as_ref()
                                .map_or(post_op_fh3::None, |a| post_fh(Some(a), fs)),
                        })
                        .collect();
                    let reply_list = dirlistplus3 {
                        entries: List(entries),
                        eof: listing.eof,
                    };
                    let ok = READDIRPLUS3resok {
                        dir_attributes,
                        cookieverf: cookieverf3(COOKIEVERF),
                        reply: reply_list,
                    };
                    let res = READDIRPLUS3res::Ok(ok);
                    debug_assert!(
                        res.packed_size() <= maxcount.max(4 + 88 + 16),
                        "READDIRPLUS over maxcount"
                    );
                    reply(out, &res)
                } else {
                    let entries = listing
                        .entries
                        .iter()
                        .map(|e| entry3 {
                            fileid: e.ino.0,
                            name: filename3(Opaque::borrowed(&e.name)),
                            cookie: e.cookie,
                        })
                        .collect();
                    let reply_list = dirlist3 {
                        entries: List(entries),
                        eof: listing.eof,
                    };
                    let res = READDIR3res::Ok(READDIR3resok {
                        dir_attributes,
                        cookieverf: cookieverf3(COOKIEVERF),
                        reply: reply_list,
                    });
                    debug_assert!(
                        res.packed_size() <= maxcount.max(4 + 88 + 16),
                        "READDIR over count"
                    );
                    reply(out, &res)
                }
            }
            Err(e) => {
                let dir_attributes = post(self.fresh(&dir).await.as_ref(), dir.fs());
                if plus {
                    reply(
                        out,
                        &READDIRPLUS3res::Err((e.0, READDIRPLUS3resfail { dir_attributes })),
                    )
                } else {
                    reply(
                        out,
                        &READDIR3res::Err((e.0, READDIR3resfail { dir_attributes })),
                    )
                }
            }
        }
    }

    async fn readdir_do(
        &self,
        dir: &Obj,
        cookie: u64,
        verf: [u8; 8],
        dircount: usize,
        maxcount: usize,
        plus: bool,
    ) -> Result<Listing, Stat> {
        if dir.attr.ftype != FileType::Directory {
            return Err(Stat(nfsstat3::NFS3ERR_NOTDIR));
        }
        if !perm::allowed(&dir.attr, &dir.caller, perm::R) {
            return Err(Stat(nfsstat3::NFS3ERR_ACCES));
        }
        if cookie != 0 && verf != COOKIEVERF {
            return Err(Stat(nfsstat3::NFS3ERR_BAD_COOKIE));
        }
        let fs = dir.fs();
        // status + post_op_attr (present) + cookieverf + end of list + eof
        let fixed = 4 + 4 + 84 + 8 + 4 + 4;
        let mut sizer = Sizer {
            used: fixed,
            dir_used: 0,
            maxcount,
            dircount,
            plus,
            count: 0,
        };
        if fixed > maxcount {
            return Err(Stat(nfsstat3::NFS3ERR_TOOSMALL));
        }
        let mut listing = Listing {
            dir: dir.attr.clone(),
            entries: Vec::new(),
            eof: false,
        };
        if cookie == 0 {
            let e = ListEntry {
                name: b".".to_vec(),
                ino: dir.ino(),
                cookie: COOKIE_DOT,
                attr: plus.then(|| dir.attr.clone()),
            };
            if !sizer.fits(&e) {
                return Err(Stat(nfsstat3::NFS3ERR_TOOSMALL));
            }
            listing.entries.push(e);
        }
        if cookie <= COOKIE_DOT {
            let parent = self.backend.lookup(fs, dir.ino(), b"..").await?;
            let e = ListEntry {
                name: b"..".to_vec(),
                ino: parent.ino,
                cookie: COOKIE_DOTDOT,
                attr: plus.then_some(parent),
            };
            if !sizer.fits(&e) {
                return if listing.entries.is_empty() {
                    Err(Stat(nfsstat3::NFS3ERR_TOOSMALL))
                } else {
                    Ok(listing)
                };
            }
            listing.entries.push(e);
        }
        let mut at = cookie.saturating_sub(COOKIE_SHIFT);
        // Entries likely to fit: each takes at least 24 bytes (READDIR) or 150 (READDIRPLUS).
        let per_entry = if plus { 150 } else { 24 };
        let want = ((maxcount - sizer.used) / per_entry + 1).min(DIR_ENTRIES_PER_CALL_MAX);
        loop {
            let page = self.backend.readdir(fs, dir.ino(), at, want, plus).await?;
            listing.dir = page.dir;
            let n = page.entries.len();
            for be in page.entries {
                let wire = be
                    .cookie
                    .checked_add(COOKIE_SHIFT)
                    .filter(|c| *c > COOKIE_DOTDOT)
                    .ok_or_else(|| {
                        tracing::warn!(
                            cookie = be.cookie,
                            "backend readdir cookie out of the range the front end can shift"
                        );
                        Stat(nfsstat3::NFS3ERR_SERVERFAULT)
                    })?;
                let e = ListEntry {
                    name: be.name,
                    ino: be.ino,
                    cookie: wire,
                    attr: be.attr,
                };
                if !sizer.fits(&e) {
                    if listing.entries.is_empty() {
                        return Err(Stat(nfsstat3::NFS3ERR_TOOSMALL));
                    }
                    return Ok(listing);
                }
                at = be.cookie;
                listing.entries.push(e);
            }
            if page.eof {
                listing.eof = true;
                return Ok(listing);
            }
            if n == 0 {
                // The backend gave nothing and no end: answer what we have, the client resumes.
                return Ok(listing);
            }
        }
    }

    async fn fsstat(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => return reply(out, &FSSTAT3res::Err((e.0, FSSTAT3resfail::default()))),
        };
        let res = match self.backend.fsstat(o.fs()).await {
            Ok(s) => FSSTAT3res::Ok(FSSTAT3resok {
                obj_attributes: o.post(),
                tbytes: s.total_bytes,
                fbytes: s.free_bytes,
                abytes: s.avail_bytes,
                tfiles: s.total_files,
                ffiles: s.free_files,
                afiles: s.avail_files,
                invarsec: 0,
            }),
            Err(e) => FSSTAT3res::Err((
                Stat::from(e).0,
                FSSTAT3resfail {
                    obj_attributes: o.post(),
                },
            )),
        };
        reply(out, &res)
    }

    async fn fsinfo(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let res = match self.resolve(r, &fh).await {
            Ok(o) => FSINFO3res::Ok(FSINFO3resok {
                obj_attributes: o.post(),
                rtmax: IO_BYTES_MAX,
                rtpref: IO_BYTES_MAX,
                rtmult: 4096,
                wtmax: IO_BYTES_MAX,
                wtpref: IO_BYTES_MAX,
                wtmult: 4096,
                dtpref: DIR_BYTES_PREF,
                maxfilesize: FILE_SIZE_MAX_BYTES,
                time_delta: nfs3_types::nfs3::nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
            }),
            Err(e) => FSINFO3res::Err((e.0, FSINFO3resfail::default())),
        };
        reply(out, &res)
    }

    async fn pathconf(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let res = match self.resolve(r, &fh).await {
            Ok(o) => PATHCONF3res::Ok(PATHCONF3resok {
                obj_attributes: o.post(),
                linkmax: LINK_MAX,
                name_max: NAME_MAX_BYTES as u32,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            }),
            Err(e) => PATHCONF3res::Err((e.0, PATHCONF3resfail::default())),
        };
        reply(out, &res)
    }

    async fn commit(&self, r: &Req, d: &mut Dec, out: &mut BytesMut) -> Res {
        let fh = dec_fh(d)?;
        let _offset = d.u64()?;
        let _count = d.u32()?;
        let o = match self.resolve(r, &fh).await {
            Ok(o) => o,
            Err(e) => {
                return reply(
                    out,
                    &COMMIT3res::Err((
                        e.0,
                        COMMIT3resfail {
                            file_wcc: wcc_data::default(),
                        },
                    )),
                )
            }
        };
        let done = async {
            o.writable()?;
            if o.attr.ftype == FileType::Directory {
                return Err(Stat(nfsstat3::NFS3ERR_ISDIR));
            }
            if !perm::may_write_data(&o.attr, &o.caller) {
                return Err(Stat(nfsstat3::NFS3ERR_ACCES));
            }
            // The whole file is made durable, whatever range was named.
            self.change(&o, OpBody::Commit { ino: o.ino() }).await
        };
        let res = match done.await {
            Ok(rep) => COMMIT3res::Ok(COMMIT3resok {
                file_wcc: wcc(
                    Some(rep.obj_before.unwrap_or_else(|| o.pre())),
                    Some(rep.obj.as_ref().unwrap_or(&o.attr)),
                    o.fs(),
                ),
                verf: writeverf3(self.backend.write_verifier()),
            }),
            Err(e) => COMMIT3res::Err((
                e.0,
                COMMIT3resfail {
                    file_wcc: self.wcc_failed(&o).await,
                },
            )),
        };
        reply(out, &res)
    }
}

/// One listed entry, with its wire cookie.
#[derive(Debug)]
struct ListEntry {
    name: Vec<u8>,
    ino: Ino,
    cookie: u64,
    attr: Option<Attr>,
}

#[derive(Debug)]
struct Listing {
    dir: Attr,
    entries: Vec<ListEntry>,
    eof: bool,
}

/// Byte accounting of a READDIR(PLUS) reply being built.
#[derive(Debug)]
struct Sizer {
    used: usize,
    dir_used: usize,
    maxcount: usize,
    dircount: usize,
    plus: bool,
    count: usize,
}

impl Sizer {
    /// Counts `e` in if it fits.
    fn fits(&mut self, e: &ListEntry) -> bool {
        // list discriminant + fileid + name + cookie: the entry as READDIR sends it
        let dir_info = 4 + 8 + 4 + padded(e.name.len()) + 8;
        let size = if self.plus {
            let attr = if e.attr.is_some() { 4 + 84 } else { 4 };
            let handle = if e.attr.is_some() {
                4 + 4 + padded(FileHandle::WIRE_LEN)
            } else {
                4
            };
            dir_info + attr + handle
        } else {
            dir_info
        };
        let dir_ok = self.count == 0 || self.dir_used + dir_info <= self.dircount;
        if self.used + size > self.maxcount || !dir_ok {
            return false;
        }
        self.used += size;
        self.dir_used += dir_info;
        self.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_new_name(b"a"), Ok(()));
        assert_eq!(check_new_name(&[b'x'; 255]), Ok(()));
        assert_eq!(
            check_new_name(&[b'x'; 256]),
            Err(Stat(nfsstat3::NFS3ERR_NAMETOOLONG))
        );
        assert_eq!(check_new_name(b"."), Err(Stat(nfsstat3::NFS3ERR_EXIST)));
        assert_eq!(check_new_name(b".."), Err(Stat(nfsstat3::NFS3ERR_EXIST)));
        assert_eq!(check_new_name(b""), Err(Stat(nfsstat3::NFS3ERR_INVAL)));
        assert_eq!(check_new_name(b"a/b"), Err(Stat(nfsstat3::NFS3ERR_INVAL)));
        assert_eq!(check_new_name(b"a\0"), Err(Stat(nfsstat3::NFS3ERR_INVAL)));
        assert_eq!(check_old_name(b".."), Err(Stat(nfsstat3::NFS3ERR_INVAL)));
        assert_eq!(check_old_name(b"x"), Ok(()));
    }

    #[test]
    fn squashing() {
        let req = Req {
            peer: "127.0.0.1:900".parse().expect("addr"),
            xid: 3,
            cred: Cred::None,
            reply_key: None,
        };
        let rules = ExportRules {
            anon_uid: 65534,
            anon_gid: 65533,
            ..ExportRules::default()
        };
        let c = squash(&Cred::None, &rules, &req);
        assert_eq!((c.uid, c.gid, c.gids.len(), c.xid), (65534, 65533, 0, 3));
        let root = Cred::Sys {
            uid: 0,
            gid: 0,
            gids: vec![0, 5],
        };
        let c = squash(&root, &rules, &req);
        assert_eq!((c.uid, c.gid, c.gids), (65534, 65533, vec![65533, 5]));
        let open = ExportRules {
            root_squash: false,
            ..rules
        };
        let c = squash(&root, &open, &req);
        assert_eq!((c.uid, c.gid), (0, 0));
    }

    fn entry(name: &[u8], attr: bool) -> ListEntry {
        let attr = attr.then(|| Attr {
            ino: Ino(9),
            gen: metrofs_core::Gen(1),
            ftype: FileType::Regular,
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            size: 0,
            used: 0,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
        });
        ListEntry {
            name: name.to_vec(),
            ino: Ino(9),
            cookie: 7,
            attr,
        }
    }

    /// The sizes the sizer counts are the sizes nfs3_types encodes.
    #[test]
    fn sizer_counts_what_is_encoded() {
        let e = entry(b"hello", true);
        let fs = FsId(1);
        let plus = List(vec![entryplus3 {
            fileid: 9,
            name: filename3(Opaque::borrowed(&e.name)),
            cookie: 7,
            name_attributes: post(e.attr.as_ref(), fs),
            name_handle: post_fh(e.attr.as_ref(), fs),
        }]);
        let mut s = Sizer {
            used: 0,
            dir_used: 0,
            maxcount: usize::MAX,
            dircount: usize::MAX,
            plus: true,
            count: 0,
        };
        assert!(s.fits(&e));
        assert_eq!(
            s.used + 4,
            plus.packed_size(),
            "entry plus the list's end marker"
        );
        let plain = List(vec![entry3 {
            fileid: 9,
            name: filename3(Opaque::borrowed(&e.name)),
            cookie: 7,
        }]);
        let mut s = Sizer {
            used: 0,
            dir_used: 0,
            maxcount: usize::MAX,
            dircount: usize::MAX,
            plus: false,
            count: 0,
        };
        assert!(s.fits(&e));
        assert_eq!(s.used + 4, plain.packed_size());
        // The fixed part: status, post_op_attr, cookieverf, end of list, eof.
        let empty = READDIR3res::Ok(READDIR3resok {
            dir_attributes: post(e.attr.as_ref(), fs),
            cookieverf: cookieverf3(COOKIEVERF),
            reply: dirlist3 {
                entries: List(vec![]),
                eof: true,
            },
        });
        assert_eq!(empty.packed_size(), 4 + 4 + 84 + 8 + 4 + 4);
    }

    #[test]
    fn sizer_limits() {
        let e = entry(b"abcd", false);
        // 4 + 8 + 8 + 8 = 28 bytes per READDIR entry.
        let mut s = Sizer {
            used: 0,
            dir_used: 0,
            maxcount: 60,
            dircount: usize::MAX,
            plus: false,
            count: 0,
        };
        assert!(s.fits(&e));
        assert!(s.fits(&e));
        assert!(!s.fits(&e));
        // dircount bounds READDIRPLUS, but the first entry always goes.
        let e = entry(b"abcd", true);
        let mut s = Sizer {
            used: 0,
            dir_used: 0,
            maxcount: 10_000,
            dircount: 10,
            plus: true,
            count: 0,
        };
        assert!(s.fits(&e));
        assert!(!s.fits(&e));
        let mut s = Sizer {
            used: 0,
            dir_used: 0,
            maxcount: 10_000,
            dircount: 56,
            plus: true,
            count: 0,
        };
        assert!(s.fits(&e));
        assert!(s.fits(&e));
        assert!(!s.fits(&e));
    }
}
