//! MOUNT v3 (RFC 1813 appendix I) on the NFS port.
//!
//! Each file system is exported as `/NAME`. MNT also accepts a directory inside it
//! (`/NAME/a/b`, which libnfs asks for when a URL names a subdirectory): it is looked up
//! component by component as the caller, and its handle is answered. MNT checks the export's
//! client networks; every later NFS call checks them again (see [`crate::nfs`]).
//!
//! No mount list is kept: it would only feed DUMP (answered empty, as the RFC allows a server
//! that does not track mounts), and UMNT/UMNTALL have nothing to undo.

use bytes::{Bytes, BytesMut};
use metrofs_core::{Backend, FileHandle, FileType, ROOT_INO};
use nfs3_types::mount::{
    dirpath, export_node, fhandle3, mountbody, mountres3, mountres3_ok, mountstat3, name,
    MNTPATHLEN,
};
use nfs3_types::nfs3::nfsstat3;
use nfs3_types::xdr_codec::{List, Opaque};

use crate::error::{mountstat, Stat};
use crate::nfs::{squash, Done, Fail};
use crate::perm;
use crate::server::{Req, Shared};
use crate::xdr::{self, Dec};

const AUTH_SYS: u32 = 1;

impl<B: Backend> Shared<B> {
    pub(crate) async fn mount(
        &self,
        proc: u32,
        r: &Req,
        d: &mut Dec,
        out: &mut BytesMut,
    ) -> Result<Done, Fail> {
        let ok = Done {
            status: nfsstat3::NFS3_OK,
            data: Bytes::new(),
        };
        match proc {
            // NULL, UMNTALL: nothing to do.
            0 | 4 => Ok(ok),
            1 => {
                let path = d.opaque(MNTPATHLEN)?;
                let res = match self.mnt(r, &path).await {
                    Ok(h) => {
                        tracing::debug!(peer = %r.peer, path = %String::from_utf8_lossy(&path), "mounted");
                        mountres3::Ok(mountres3_ok {
                            fhandle: fhandle3(Opaque::owned(h.to_bytes().to_vec())),
                            auth_flavors: vec![AUTH_SYS],
                        })
                    }
                    Err(s) => {
                        tracing::debug!(peer = %r.peer, path = %String::from_utf8_lossy(&path), status = %s, "mount refused");
                        mountres3::Err(s)
                    }
                };
                xdr::put(out, &res)?;
                Ok(ok)
            }
            2 => {
                xdr::put(out, &List::<mountbody<'_, '_>>(Vec::new()))?;
                Ok(ok)
            }
            3 => {
                let _path = d.opaque(MNTPATHLEN)?;
                Ok(ok)
            }
            5 => {
                let exports = self.backend.exports();
                let groups: Vec<Vec<String>> = exports
                    .iter()
                    .map(|e| e.rules.clients.iter().map(ToString::to_string).collect())
                    .collect();
                let paths: Vec<String> = exports.iter().map(|e| format!("/{}", e.name)).collect();
                let list = List(
                    paths
                        .iter()
                        .zip(&groups)
                        .map(|(p, g)| export_node {
                            ex_dir: dirpath(Opaque::borrowed(p.as_bytes())),
                            ex_groups: List(
                                g.iter()
                                    .map(|g| name(Opaque::borrowed(g.as_bytes())))
                                    .collect(),
                            ),
                        })
                        .collect(),
                );
                xdr::put(out, &list)?;
                Ok(ok)
            }
            _ => Err(Fail::ProcUnavail),
        }
    }

    /// The handle of a mount path, or why not.
    async fn mnt(&self, r: &Req, path: &[u8]) -> Result<FileHandle, mountstat3> {
        let path = std::str::from_utf8(path).map_err(|_| mountstat3::MNT3ERR_NOENT)?;
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let fs_name = parts.next().ok_or(mountstat3::MNT3ERR_NOENT)?;
        let export = self
            .backend
            .export_by_path(&format!("/{fs_name}"))
            .ok_or(mountstat3::MNT3ERR_NOENT)?;
        if !export.rules.allows(r.peer.ip()) {
            tracing::warn!(peer = %r.peer, fs = %export.name, "mount refused: client not in the export's networks");
            return Err(mountstat3::MNT3ERR_ACCES);
        }
        let caller = squash(&r.cred, &export.rules, r);
        let fail = |e: metrofs_core::FsError| mountstat(Stat::from(e).0);
        let mut at = self
            .backend
            .getattr(export.fs, ROOT_INO)
            .await
            .map_err(fail)?;
        for part in parts {
            perm::check_dir_search(&at, &caller).map_err(mountstat)?;
            at = self
                .backend
                .lookup(export.fs, at.ino, part.as_bytes())
                .await
                .map_err(fail)?;
        }
        if at.ftype != FileType::Directory {
            return Err(mountstat3::MNT3ERR_NOTDIR);
        }
        Ok(FileHandle {
            fs: export.fs,
            ino: at.ino,
            gen: at.gen,
        })
    }
}
