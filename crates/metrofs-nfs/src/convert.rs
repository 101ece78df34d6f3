//! Between metrofs-core's types and NFSv3's: attributes out, handles, `sattr3` in.

use metrofs_core::{Attr, FileHandle, FileType, FsId, SetAttr, SetTime, Time, WccAttr};
use nfs3_types::nfs3::{
    fattr3, ftype3, nfs_fh3, nfstime3, post_op_attr, post_op_fh3, specdata3, wcc_attr, wcc_data,
    NFS3_FHSIZE,
};
use nfs3_types::xdr_codec::Opaque;

use crate::xdr::{Dec, Garbage};

#[must_use]
pub fn time(t: Time) -> nfstime3 {
    nfstime3 {
        seconds: t.sec,
        nseconds: t.nsec,
    }
}

#[must_use]
pub fn fattr(a: &Attr, fs: FsId) -> fattr3 {
    fattr3 {
        type_: match a.ftype {
            FileType::Regular => ftype3::NF3REG,
            FileType::Directory => ftype3::NF3DIR,
            FileType::Symlink => ftype3::NF3LNK,
        },
        mode: a.mode & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.used,
        rdev: specdata3::default(),
        fsid: fs.0,
        fileid: a.ino.0,
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
    }
}

#[must_use]
pub fn post(a: Option<&Attr>, fs: FsId) -> post_op_attr {
    a.map_or(post_op_attr::None, |a| post_op_attr::Some(fattr(a, fs)))
}

#[must_use]
pub fn pre(w: &WccAttr) -> wcc_attr {
    wcc_attr {
        size: w.size,
        mtime: time(w.mtime),
        ctime: time(w.ctime),
    }
}

#[must_use]
pub fn wcc(before: Option<WccAttr>, after: Option<&Attr>, fs: FsId) -> wcc_data {
    wcc_data {
        before: before.map_or(nfs3_types::nfs3::pre_op_attr::None, |w| {
            nfs3_types::nfs3::pre_op_attr::Some(pre(&w))
        }),
        after: post(after, fs),
    }
}

/// A directory's wcc from an op's `(before, after)`.
#[must_use]
pub fn dir_wcc(d: Option<&(WccAttr, Attr)>, fs: FsId) -> wcc_data {
    d.map_or_else(wcc_data::default, |(b, a)| wcc(Some(*b), Some(a), fs))
}

#[must_use]
pub fn fh3(h: FileHandle) -> nfs_fh3 {
    nfs_fh3 {
        data: Opaque::owned(h.to_bytes().to_vec()),
    }
}

#[must_use]
pub fn handle_of(a: &Attr, fs: FsId) -> FileHandle {
    FileHandle {
        fs,
        ino: a.ino,
        gen: a.gen,
    }
}

#[must_use]
pub fn post_fh(a: Option<&Attr>, fs: FsId) -> post_op_fh3 {
    a.map_or(post_op_fh3::None, |a| {
        post_op_fh3::Some(fh3(handle_of(a, fs)))
    })
}

/// An `nfs_fh3`: at most 64 bytes (RFC 1813); whether they are ours is checked later
/// (BADHANDLE).
pub fn dec_fh(d: &mut Dec) -> Result<bytes::Bytes, Garbage> {
    d.opaque(NFS3_FHSIZE)
}

pub fn dec_time(d: &mut Dec) -> Result<Time, Garbage> {
    Ok(Time {
        sec: d.u32()?,
        nsec: d.u32()?,
    })
}

fn dec_set_time(d: &mut Dec) -> Result<Option<SetTime>, Garbage> {
    match d.u32()? {
        0 => Ok(None),
        1 => Ok(Some(SetTime::ServerTime)),
        2 => Ok(Some(SetTime::Client(dec_time(d)?))),
        _ => Err(Garbage),
    }
}

fn dec_opt_u32(d: &mut Dec) -> Result<Option<u32>, Garbage> {
    Ok(if d.bool()? { Some(d.u32()?) } else { None })
}

/// `sattr3`. The mode keeps only permission bits.
pub fn dec_sattr(d: &mut Dec) -> Result<SetAttr, Garbage> {
    let mode = dec_opt_u32(d)?.map(|m| m & 0o7777);
    let uid = dec_opt_u32(d)?;
    let gid = dec_opt_u32(d)?;
    let size = if d.bool()? { Some(d.u64()?) } else { None };
    let atime = dec_set_time(d)?;
    let mtime = dec_set_time(d)?;
    Ok(SetAttr {
        mode,
        uid,
        gid,
        size,
        atime,
        mtime,
    })
}

/// Whether the times a client gives are real times (nanoseconds below one second).
#[must_use]
pub fn times_valid(s: &SetAttr) -> bool {
    [s.atime, s.mtime].iter().all(|t| match t {
        Some(SetTime::Client(t)) => t.nsec < 1_000_000_000,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use metrofs_core::{Gen, Ino};

    #[test]
    fn sattr_decodes_every_field() {
        let mut v = Vec::new();
        for w in [1u32, 0o104_755, 1, 7, 0, 1, 0, 9, 2, 100, 5, 1] {
            v.extend(w.to_be_bytes());
        }
        let mut d = Dec::new(Bytes::from(v));
        let s = dec_sattr(&mut d).expect("sattr");
        assert_eq!(
            s,
            SetAttr {
                mode: Some(0o4755),
                uid: Some(7),
                gid: None,
                size: Some(9),
                atime: Some(SetTime::Client(Time::new(100, 5))),
                mtime: Some(SetTime::ServerTime),
            }
        );
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn sattr_rejects_bad_discriminants() {
        let mut v = Vec::new();
        for w in [0u32, 0, 0, 0, 3, 0] {
            v.extend(w.to_be_bytes());
        }
        assert_eq!(dec_sattr(&mut Dec::new(Bytes::from(v))), Err(Garbage));
        let bad = SetAttr {
            mtime: Some(SetTime::Client(Time::new(1, 1_000_000_000))),
            ..SetAttr::default()
        };
        assert!(!times_valid(&bad));
    }

    #[test]
    fn attributes_out() {
        let a = Attr {
            ino: Ino(42),
            gen: Gen(3),
            ftype: FileType::Symlink,
            mode: 0o777,
            nlink: 1,
            uid: 1,
            gid: 2,
            size: 5,
            used: 4096,
            atime: Time::new(1, 2),
            mtime: Time::new(3, 4),
            ctime: Time::new(5, 6),
        };
        let f = fattr(&a, FsId(99));
        assert_eq!(f.type_, ftype3::NF3LNK);
        assert_eq!(
            (f.fileid, f.fsid, f.used, f.ctime.nseconds),
            (42, 99, 4096, 6)
        );
        let h = FileHandle::from_bytes(&fh3(handle_of(&a, FsId(99))).data).expect("our handle");
        assert_eq!(
            h,
            FileHandle {
                fs: FsId(99),
                ino: Ino(42),
                gen: Gen(3)
            }
        );
    }
}
