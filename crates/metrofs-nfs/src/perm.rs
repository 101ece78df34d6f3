//! Permission checks: who may do what to an inode, from its mode, uid and gid and the caller's
//! uid, gid and groups (after the export's squashing). Pure functions over `Attr`.
//!
//! Rules (POSIX, with the NFS server conventions of knfsd):
//! - uid 0 bypasses read and write checks; it may execute a file only when some x bit is set,
//!   and may always search a directory;
//! - the owner of a file may write and read it whatever its mode says
//!   ([`may_write_data`], [`may_read_data`]): the client checked the mode when the file was
//!   opened, and a file created 0444 must still take the data written through that open;
//!   reading is also allowed with execute permission (a client pages in executables);
//! - changing a directory's entries needs write and search permission on it, and in a sticky
//!   directory removing or renaming an entry needs to own the entry or the directory;
//! - only the owner or root may chmod or set times to a given value; only root may give a file
//!   away; the owner may change its group to one of the caller's own groups.

use metrofs_core::{Attr, Caller, FileType, SetAttr, SetTime};
use nfs3_types::nfs3::{
    nfsstat3, ACCESS3_DELETE, ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY,
    ACCESS3_READ,
};

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;
const STICKY: u32 = 0o1000;

fn is_root(c: &Caller) -> bool {
    c.uid == 0
}

fn in_group(c: &Caller, gid: u32) -> bool {
    c.gid == gid || c.gids.contains(&gid)
}

/// Whether `c` has all of `want` (a mask of [`R`], [`W`], [`X`]) on `a`.
#[must_use]
pub fn allowed(a: &Attr, c: &Caller, want: u32) -> bool {
    if is_root(c) {
        let x_ok = want & X == 0 || a.ftype == FileType::Directory || a.mode & 0o111 != 0;
        return x_ok;
    }
    let bits = if c.uid == a.uid {
        (a.mode >> 6) & 7
    } else if in_group(c, a.gid) {
        (a.mode >> 3) & 7
    } else {
        a.mode & 7
    };
    bits & want == want
}

/// WRITE, truncation and COMMIT: write permission, or being the owner.
#[must_use]
pub fn may_write_data(a: &Attr, c: &Caller) -> bool {
    c.uid == a.uid || allowed(a, c, W)
}

/// READ: read or execute permission, or being the owner.
#[must_use]
pub fn may_read_data(a: &Attr, c: &Caller) -> bool {
    c.uid == a.uid || allowed(a, c, R) || (a.ftype != FileType::Directory && allowed(a, c, X))
}

/// The ACCESS procedure: which of the `requested` ACCESS3 bits `c` has on `a`. A read-only
/// export grants no modifying bit.
#[must_use]
pub fn access3(a: &Attr, c: &Caller, requested: u32, read_only: bool) -> u32 {
    let mut granted = 0;
    if allowed(a, c, R) {
        granted |= ACCESS3_READ;
    }
    let writable = !read_only && allowed(a, c, W);
    if a.ftype == FileType::Directory {
        if allowed(a, c, X) {
            granted |= ACCESS3_LOOKUP;
            if writable {
                granted |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
            }
        }
    } else {
        if writable {
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND;
        }
        if allowed(a, c, X) {
            granted |= ACCESS3_EXECUTE;
        }
    }
    granted & requested
}

/// Adding or removing entries of `dir`: a directory, writable and searchable by `c`.
pub fn check_dir_change(dir: &Attr, c: &Caller) -> Result<(), nfsstat3> {
    if dir.ftype != FileType::Directory {
        return Err(nfsstat3::NFS3ERR_NOTDIR);
    }
    if !allowed(dir, c, W | X) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    Ok(())
}

/// Looking a name up in `dir`: a directory searchable by `c`.
pub fn check_dir_search(dir: &Attr, c: &Caller) -> Result<(), nfsstat3> {
    if dir.ftype != FileType::Directory {
        return Err(nfsstat3::NFS3ERR_NOTDIR);
    }
    if !allowed(dir, c, X) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    Ok(())
}

/// Whether a sticky `dir` lets `c` remove or rename `victim` away.
pub fn check_sticky(dir: &Attr, victim: &Attr, c: &Caller) -> Result<(), nfsstat3> {
    if dir.mode & STICKY == 0 || is_root(c) || c.uid == dir.uid || c.uid == victim.uid {
        Ok(())
    } else {
        Err(nfsstat3::NFS3ERR_PERM)
    }
}

/// Whether `c` may make the changes of `s` to `a` (SETATTR).
pub fn check_setattr(a: &Attr, c: &Caller, s: &SetAttr) -> Result<(), nfsstat3> {
    let owner = is_root(c) || c.uid == a.uid;
    if s.size.is_some() && !may_write_data(a, c) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    if s.mode.is_some() && !owner {
        return Err(nfsstat3::NFS3ERR_PERM);
    }
    check_owner_change(a.uid, c, s.uid, s.gid, owner)?;
    for t in [s.atime, s.mtime].into_iter().flatten() {
        match t {
            SetTime::Client(_) if !owner => return Err(nfsstat3::NFS3ERR_PERM),
            SetTime::ServerTime if !owner && !allowed(a, c, W) => {
                return Err(nfsstat3::NFS3ERR_ACCES)
            }
            _ => {}
        }
    }
    Ok(())
}

/// uid/gid changes: root may set any; the owner may "change" the uid to itself and the gid to
/// one of its groups. `owner` says whether `c` is root or owns the object.
pub fn check_owner_change(
    cur_uid: u32,
    c: &Caller,
    uid: Option<u32>,
    gid: Option<u32>,
    owner: bool,
) -> Result<(), nfsstat3> {
    if is_root(c) {
        return Ok(());
    }
    if uid.is_some_and(|u| u != cur_uid || u != c.uid) {
        return Err(nfsstat3::NFS3ERR_PERM);
    }
    if let Some(g) = gid {
        if !owner || !in_group(c, g) {
            return Err(nfsstat3::NFS3ERR_PERM);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::{Gen, Ino, Time};

    fn attr(ftype: FileType, mode: u32, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: Ino(5),
            gen: Gen(1),
            ftype,
            mode,
            nlink: 1,
            uid,
            gid,
            size: 0,
            used: 0,
            atime: Time::default(),
            mtime: Time::default(),
            ctime: Time::default(),
        }
    }

    fn who(uid: u32, gid: u32, gids: &[u32]) -> Caller {
        Caller {
            addr: "127.0.0.1:700".parse().expect("addr"),
            uid,
            gid,
            gids: gids.to_vec(),
            xid: 1,
            reply_key: None,
        }
    }

    const ALL: u32 = 0x3f;

    #[test]
    fn owner_group_other_classes() {
        let f = attr(FileType::Regular, 0o640, 10, 20);
        assert!(allowed(&f, &who(10, 99, &[]), R | W));
        assert!(allowed(&f, &who(11, 20, &[]), R));
        assert!(!allowed(&f, &who(11, 20, &[]), W));
        assert!(
            allowed(&f, &who(11, 99, &[7, 20]), R),
            "supplementary group"
        );
        assert!(!allowed(&f, &who(11, 99, &[]), R));
        // The owner class decides even when it grants less than the group class.
        let g = attr(FileType::Regular, 0o070, 10, 20);
        assert!(!allowed(&g, &who(10, 20, &[]), R));
    }

    #[test]
    fn root_bypasses_but_execute_needs_an_x_bit() {
        let f = attr(FileType::Regular, 0o600, 10, 20);
        let root = who(0, 0, &[]);
        assert!(allowed(&f, &root, R | W));
        assert!(!allowed(&f, &root, X));
        assert!(allowed(&attr(FileType::Regular, 0o001, 10, 20), &root, X));
        assert!(
            allowed(&attr(FileType::Directory, 0o000, 10, 20), &root, X),
            "root searches any dir"
        );
        assert_eq!(
            access3(&f, &root, ALL, false),
            ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND
        );
    }

    #[test]
    fn access_bits_for_files_and_dirs() {
        let f = attr(FileType::Regular, 0o754, 10, 20);
        assert_eq!(
            access3(&f, &who(10, 1, &[]), ALL, false),
            ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_EXECUTE
        );
        assert_eq!(
            access3(&f, &who(11, 20, &[]), ALL, false),
            ACCESS3_READ | ACCESS3_EXECUTE
        );
        assert_eq!(access3(&f, &who(11, 21, &[]), ALL, false), ACCESS3_READ);
        assert_eq!(
            access3(&f, &who(10, 1, &[]), ACCESS3_READ | ACCESS3_DELETE, false),
            ACCESS3_READ,
            "only what was asked"
        );
        assert_eq!(
            access3(&f, &who(10, 1, &[]), ALL, true),
            ACCESS3_READ | ACCESS3_EXECUTE,
            "read-only export"
        );
        let d = attr(FileType::Directory, 0o755, 10, 20);
        assert_eq!(
            access3(&d, &who(10, 1, &[]), ALL, false),
            ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE
        );
        assert_eq!(
            access3(&d, &who(11, 1, &[]), ALL, false),
            ACCESS3_READ | ACCESS3_LOOKUP
        );
        // Writable but not searchable: no entry can be changed.
        let d = attr(FileType::Directory, 0o722, 10, 20);
        assert_eq!(access3(&d, &who(11, 1, &[]), ALL, false), 0);
    }

    #[test]
    fn owner_override_for_data() {
        let f = attr(FileType::Regular, 0o444, 10, 20);
        assert!(may_write_data(&f, &who(10, 1, &[])));
        assert!(!may_write_data(&f, &who(11, 20, &[])));
        let x = attr(FileType::Regular, 0o711, 10, 20);
        assert!(may_read_data(&x, &who(11, 1, &[])), "read if exec");
        let none = attr(FileType::Regular, 0o000, 10, 20);
        assert!(may_read_data(&none, &who(10, 1, &[])));
        assert!(!may_read_data(&none, &who(11, 20, &[])));
    }

    #[test]
    fn directory_changes_and_sticky() {
        let d = attr(FileType::Directory, 0o775, 10, 20);
        assert_eq!(check_dir_change(&d, &who(11, 20, &[])), Ok(()));
        assert_eq!(
            check_dir_change(&d, &who(11, 21, &[])),
            Err(nfsstat3::NFS3ERR_ACCES)
        );
        let f = attr(FileType::Regular, 0o777, 10, 20);
        assert_eq!(
            check_dir_change(&f, &who(10, 20, &[])),
            Err(nfsstat3::NFS3ERR_NOTDIR)
        );
        assert_eq!(
            check_dir_search(&f, &who(10, 20, &[])),
            Err(nfsstat3::NFS3ERR_NOTDIR)
        );
        let tmp = attr(FileType::Directory, 0o1777, 0, 0);
        let theirs = attr(FileType::Regular, 0o666, 12, 20);
        assert_eq!(
            check_sticky(&tmp, &theirs, &who(11, 20, &[])),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        assert_eq!(check_sticky(&tmp, &theirs, &who(12, 20, &[])), Ok(()));
        assert_eq!(check_sticky(&tmp, &theirs, &who(0, 0, &[])), Ok(()));
        assert_eq!(
            check_sticky(&d, &theirs, &who(11, 20, &[])),
            Ok(()),
            "not sticky"
        );
    }

    #[test]
    fn setattr_rules() {
        let f = attr(FileType::Regular, 0o664, 10, 20);
        let owner = who(10, 20, &[30]);
        let member = who(11, 20, &[]);
        let other = who(12, 21, &[]);
        let root = who(0, 0, &[]);
        let mode = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        assert_eq!(check_setattr(&f, &owner, &mode), Ok(()));
        assert_eq!(
            check_setattr(&f, &member, &mode),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        assert_eq!(check_setattr(&f, &root, &mode), Ok(()));
        let size = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        assert_eq!(check_setattr(&f, &member, &size), Ok(()), "group may write");
        assert_eq!(
            check_setattr(&f, &other, &size),
            Err(nfsstat3::NFS3ERR_ACCES)
        );
        let chown = SetAttr {
            uid: Some(12),
            ..SetAttr::default()
        };
        assert_eq!(
            check_setattr(&f, &owner, &chown),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        assert_eq!(check_setattr(&f, &root, &chown), Ok(()));
        let same = SetAttr {
            uid: Some(10),
            ..SetAttr::default()
        };
        assert_eq!(
            check_setattr(&f, &owner, &same),
            Ok(()),
            "chown to oneself is a no-op"
        );
        let chgrp = SetAttr {
            gid: Some(30),
            ..SetAttr::default()
        };
        assert_eq!(check_setattr(&f, &owner, &chgrp), Ok(()));
        assert_eq!(
            check_setattr(
                &f,
                &owner,
                &SetAttr {
                    gid: Some(31),
                    ..SetAttr::default()
                }
            ),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        assert_eq!(
            check_setattr(
                &f,
                &member,
                &SetAttr {
                    gid: Some(20),
                    ..SetAttr::default()
                }
            ),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        let given = SetAttr {
            mtime: Some(SetTime::Client(Time::new(5, 0))),
            ..SetAttr::default()
        };
        assert_eq!(
            check_setattr(&f, &member, &given),
            Err(nfsstat3::NFS3ERR_PERM)
        );
        assert_eq!(check_setattr(&f, &owner, &given), Ok(()));
        let now = SetAttr {
            mtime: Some(SetTime::ServerTime),
            ..SetAttr::default()
        };
        assert_eq!(
            check_setattr(&f, &member, &now),
            Ok(()),
            "touch with write permission"
        );
        assert_eq!(
            check_setattr(&f, &other, &now),
            Err(nfsstat3::NFS3ERR_ACCES)
        );
    }
}
