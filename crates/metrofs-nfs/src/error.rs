//! The one mapping from file-system errors to the wire (STYLE.md 8).

use metrofs_core::FsError;
use nfs3_types::mount::mountstat3;
use nfs3_types::nfs3::nfsstat3;

/// The NFSv3 status for a file-system error. The only place this mapping is made.
#[must_use]
pub fn nfsstat(e: &FsError) -> nfsstat3 {
    match e {
        FsError::NoEnt => nfsstat3::NFS3ERR_NOENT,
        FsError::Exist => nfsstat3::NFS3ERR_EXIST,
        FsError::NotDir => nfsstat3::NFS3ERR_NOTDIR,
        FsError::IsDir => nfsstat3::NFS3ERR_ISDIR,
        FsError::NotEmpty => nfsstat3::NFS3ERR_NOTEMPTY,
        FsError::NameTooLong => nfsstat3::NFS3ERR_NAMETOOLONG,
        // A file system that is gone makes every handle into it stale.
        FsError::Stale | FsError::NoFs => nfsstat3::NFS3ERR_STALE,
        FsError::ReadOnly => nfsstat3::NFS3ERR_ROFS,
        FsError::Access => nfsstat3::NFS3ERR_ACCES,
        FsError::Perm => nfsstat3::NFS3ERR_PERM,
        FsError::Inval => nfsstat3::NFS3ERR_INVAL,
        FsError::NoSpace => nfsstat3::NFS3ERR_NOSPC,
        FsError::FBig => nfsstat3::NFS3ERR_FBIG,
        FsError::MLink => nfsstat3::NFS3ERR_MLINK,
        FsError::NotSupp => nfsstat3::NFS3ERR_NOTSUPP,
        FsError::NotSync => nfsstat3::NFS3ERR_NOT_SYNC,
        FsError::BadCookie => nfsstat3::NFS3ERR_BAD_COOKIE,
        FsError::Busy(_) => nfsstat3::NFS3ERR_JUKEBOX,
        FsError::Io(_) => nfsstat3::NFS3ERR_IO,
    }
}

/// A failed NFS procedure: its status. Every `FsError` becomes one through [`nfsstat`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Stat(pub nfsstat3);

impl From<FsError> for Stat {
    fn from(e: FsError) -> Self {
        Self(nfsstat(&e))
    }
}

impl From<nfsstat3> for Stat {
    fn from(s: nfsstat3) -> Self {
        Self(s)
    }
}

/// MOUNT's status for an NFS status met while resolving a mount path.
#[must_use]
pub fn mountstat(s: nfsstat3) -> mountstat3 {
    match s {
        nfsstat3::NFS3ERR_PERM => mountstat3::MNT3ERR_PERM,
        nfsstat3::NFS3ERR_NOENT | nfsstat3::NFS3ERR_STALE => mountstat3::MNT3ERR_NOENT,
        nfsstat3::NFS3ERR_ACCES => mountstat3::MNT3ERR_ACCES,
        nfsstat3::NFS3ERR_NOTDIR => mountstat3::MNT3ERR_NOTDIR,
        nfsstat3::NFS3ERR_INVAL => mountstat3::MNT3ERR_INVAL,
        nfsstat3::NFS3ERR_NAMETOOLONG => mountstat3::MNT3ERR_NAMETOOLONG,
        nfsstat3::NFS3ERR_NOTSUPP => mountstat3::MNT3ERR_NOTSUPP,
        nfsstat3::NFS3ERR_IO => mountstat3::MNT3ERR_IO,
        _ => mountstat3::MNT3ERR_SERVERFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_rfc_status() {
        let cases = [
            (FsError::NoEnt, nfsstat3::NFS3ERR_NOENT),
            (FsError::Exist, nfsstat3::NFS3ERR_EXIST),
            (FsError::NotDir, nfsstat3::NFS3ERR_NOTDIR),
            (FsError::IsDir, nfsstat3::NFS3ERR_ISDIR),
            (FsError::NotEmpty, nfsstat3::NFS3ERR_NOTEMPTY),
            (FsError::NameTooLong, nfsstat3::NFS3ERR_NAMETOOLONG),
            (FsError::Stale, nfsstat3::NFS3ERR_STALE),
            (FsError::NoFs, nfsstat3::NFS3ERR_STALE),
            (FsError::ReadOnly, nfsstat3::NFS3ERR_ROFS),
            (FsError::Access, nfsstat3::NFS3ERR_ACCES),
            (FsError::Perm, nfsstat3::NFS3ERR_PERM),
            (FsError::Inval, nfsstat3::NFS3ERR_INVAL),
            (FsError::NoSpace, nfsstat3::NFS3ERR_NOSPC),
            (FsError::FBig, nfsstat3::NFS3ERR_FBIG),
            (FsError::MLink, nfsstat3::NFS3ERR_MLINK),
            (FsError::NotSupp, nfsstat3::NFS3ERR_NOTSUPP),
            (FsError::NotSync, nfsstat3::NFS3ERR_NOT_SYNC),
            (FsError::BadCookie, nfsstat3::NFS3ERR_BAD_COOKIE),
            (
                FsError::Busy("arbitration".into()),
                nfsstat3::NFS3ERR_JUKEBOX,
            ),
            (FsError::Io("disk".into()), nfsstat3::NFS3ERR_IO),
        ];
        for (e, s) in cases {
            assert_eq!(nfsstat(&e), s, "{e:?}");
            assert_eq!(Stat::from(e), Stat(s));
        }
    }

    #[test]
    fn mount_statuses() {
        assert!(matches!(
            mountstat(nfsstat3::NFS3ERR_ACCES),
            mountstat3::MNT3ERR_ACCES
        ));
        assert!(matches!(
            mountstat(nfsstat3::NFS3ERR_STALE),
            mountstat3::MNT3ERR_NOENT
        ));
        assert!(matches!(
            mountstat(nfsstat3::NFS3ERR_NOTDIR),
            mountstat3::MNT3ERR_NOTDIR
        ));
        assert!(matches!(
            mountstat(nfsstat3::NFS3ERR_JUKEBOX),
            mountstat3::MNT3ERR_SERVERFAULT
        ));
    }
}
