//! Handles, export rules, permissions and the reply cache, end to end.

use std::net::IpAddr;

use metrofs_core::{ExportRules, FileHandle, FsId, Gen, Ino};
use nfs3_client::nfs3_types::mount::mountstat3;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::Nfs3ConnectionBuilder;

use crate::harness::*;
use crate::raw::{self, Raw};

#[tokio::test]
async fn stale_after_remove_and_after_inode_reuse() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (old, oa) = create(&mut c, &rfh, "a").await.expect("create");
    remove(&mut c, &rfh, "a").await.expect("remove");
    assert_eq!(
        getattr(&mut c, &old).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(
        read(&mut c, &old, 0, 1).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    // The freed inode number is given to the next file, with a new generation.
    let (new, na) = create(&mut c, &rfh, "b").await.expect("create");
    assert_eq!(na.fileid, oa.fileid, "the store reuses the freed number");
    assert_ne!(new, old);
    assert_eq!(
        getattr(&mut c, &old).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(
        write(&mut c, &old, 0, b"x", stable_how::FILE_SYNC)
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(getattr(&mut c, &new).await.map(|a| a.fileid), Ok(oa.fileid));
    srv.stop().await;
}

#[tokio::test]
async fn foreign_and_unknown_handles() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let junk = nfs_fh3 {
        data: Opaque::owned(b"not a handle of ours".to_vec()),
    };
    assert_eq!(
        getattr(&mut c, &junk).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_BADHANDLE)
    );
    let empty = nfs_fh3 {
        data: Opaque::owned(Vec::new()),
    };
    assert_eq!(
        getattr(&mut c, &empty).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_BADHANDLE)
    );
    let unknown_fs = FileHandle {
        fs: FsId(srv.fs.0 ^ 1),
        ino: Ino(1),
        gen: Gen(1),
    };
    let h = nfs_fh3 {
        data: Opaque::owned(unknown_fs.to_bytes().to_vec()),
    };
    assert_eq!(
        getattr(&mut c, &h).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    let unknown_ino = FileHandle {
        fs: srv.fs,
        ino: Ino(999_999),
        gen: Gen(1),
    };
    let h = nfs_fh3 {
        data: Opaque::owned(unknown_ino.to_bytes().to_vec()),
    };
    assert_eq!(
        getattr(&mut c, &h).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    let wrong_gen = FileHandle {
        fs: srv.fs,
        ino: Ino(1),
        gen: Gen(77),
    };
    let h = nfs_fh3 {
        data: Opaque::owned(wrong_gen.to_bytes().to_vec()),
    };
    assert_eq!(
        getattr(&mut c, &h).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(srv.changes(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn read_only_export_refuses_every_change() {
    let srv = Server::start().await;
    // Content made while writable, then the export turns read-only.
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (f, _) = create(&mut c, &rfh, "f").await.expect("create");
    write(&mut c, &f, 0, b"kept", stable_how::FILE_SYNC)
        .await
        .expect("write");
    let (d, _) = mkdir(&mut c, &rfh, "d", 0o777).await.expect("mkdir");
    srv.array
        .set_export(
            "t",
            ExportRules {
                read_only: true,
                ..open_rules()
            },
        )
        .expect("set export");
    let before = srv.snapshot().await;
    let changes = srv.changes();

    let rofs = nfsstat3::NFS3ERR_ROFS;
    assert_eq!(create(&mut c, &rfh, "new").await.map(|_| ()), Err(rofs));
    assert_eq!(
        mkdir(&mut c, &rfh, "nd", 0o755).await.map(|_| ()),
        Err(rofs)
    );
    assert_eq!(
        write(&mut c, &f, 0, b"x", stable_how::UNSTABLE)
            .await
            .map(|_| ()),
        Err(rofs)
    );
    assert_eq!(
        setattr(&mut c, &f, sattr_mode(0o600)).await.map(|_| ()),
        Err(rofs)
    );
    assert_eq!(remove(&mut c, &rfh, "f").await, Err(rofs));
    let res = c
        .rmdir(&RMDIR3args {
            object: dirop(&rfh, "d"),
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    let res = c
        .rename(&RENAME3args {
            from: dirop(&rfh, "f"),
            to: dirop(&d, "g"),
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    let res = c
        .link(&LINK3args {
            file: f.clone(),
            link: dirop(&d, "l"),
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    let res = c
        .symlink(&SYMLINK3args {
            where_: dirop(&rfh, "s"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3::from(b"t".as_slice()),
            },
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    let res = c
        .commit(&COMMIT3args {
            file: f.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    let res = c
        .mknod(&MKNOD3args {
            where_: dirop(&rfh, "p"),
            what: mknoddata3::NF3FIFO(sattr3::default()),
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_ROFS, _))));
    // Reads still work; ACCESS grants nothing that modifies.
    assert_eq!(read(&mut c, &f, 0, 10).await, Ok((b"kept".to_vec(), true)));
    let res = c
        .access(&ACCESS3args {
            object: f.clone(),
            access: ACCESS3_READ | ACCESS3_MODIFY,
        })
        .await
        .expect("rpc");
    assert!(matches!(
        res,
        Nfs3Result::Ok(ACCESS3resok {
            access: ACCESS3_READ,
            ..
        })
    ));
    assert_eq!(srv.changes(), changes, "no change reached the backend");
    assert_eq!(srv.snapshot().await, before);
    srv.stop().await;
}

#[tokio::test]
async fn disallowed_client_refused_at_mount_and_on_every_call() {
    let rules = ExportRules {
        clients: vec![cidr("127.0.0.1/32")],
        ..open_rules()
    };
    let srv = Server::start_with(rules).await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (f, _) = create(&mut c, &rfh, "f").await.expect("create");
    let other: IpAddr = "127.0.0.2".parse().expect("ip");
    let b = Nfs3ConnectionBuilder::new(FromIp(other), "127.0.0.1", "/t")
        .mount_port(srv.port)
        .nfs3_port(srv.port)
        .connect_from_privileged_port(false)
        .credential(cred(0, 0, &[]));
    let err = mount_refused(b).await;
    assert!(matches!(err, mountstat3::MNT3ERR_ACCES), "{err}");
    // A handle learnt elsewhere does not help.
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind((other, 0).into()).expect("bind 127.0.0.2");
    let mut r = Raw {
        s: s.connect(srv.addr).await.expect("connect"),
    };
    let calls: Vec<(u32, Vec<u8>)> = vec![
        (
            1,
            raw::call(
                1,
                raw::NFS,
                3,
                1,
                &cred(0, 0, &[]),
                &GETATTR3args { object: f.clone() },
            ),
        ),
        (
            2,
            raw::call(
                2,
                raw::NFS,
                3,
                6,
                &cred(0, 0, &[]),
                &READ3args {
                    file: f.clone(),
                    offset: 0,
                    count: 10,
                },
            ),
        ),
        (
            3,
            raw::call(
                3,
                raw::NFS,
                3,
                12,
                &cred(0, 0, &[]),
                &REMOVE3args {
                    object: dirop(&rfh, "f"),
                },
            ),
        ),
    ];
    for (xid, body) in calls {
        r.send(&raw::record(&body)).await;
        let rec = r.recv().await.expect("a reply");
        assert_eq!(raw::xid_of(&rec), xid);
        let status = u32::from_be_bytes(match raw::outcome(&rec) {
            raw::Outcome::Success(at) => [rec[at], rec[at + 1], rec[at + 2], rec[at + 3]],
            other => panic!("{other:?}"),
        });
        assert_eq!(status, nfsstat3::NFS3ERR_ACCES as u32);
    }
    assert_eq!(
        getattr(&mut c, &f).await.map(|a| a.nlink),
        Ok(1),
        "still there"
    );
    srv.stop().await;
}

#[tokio::test]
async fn root_squash_and_anonymous() {
    let srv = Server::start_with(ExportRules::default()).await; // root squashed
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    // The root dir belongs to (real) root and is 0755: squashed root may not create in it.
    assert_eq!(
        create(&mut c, &rfh, "f").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    // Open the root dir up through the backend, as an operator would.
    let caller = metrofs_core::Caller {
        addr: srv.addr,
        uid: 0,
        gid: 0,
        gids: vec![],
        xid: 0,
        reply_key: None,
    };
    let body = metrofs_core::OpBody::SetAttr {
        ino: metrofs_core::ROOT_INO,
        attr: metrofs_core::SetAttr {
            mode: Some(0o777),
            ..Default::default()
        },
        guard: None,
    };
    metrofs_core::Backend::change(&*srv.array, srv.fs, body, &caller)
        .await
        .expect("chmod root");
    let d = rfh.clone();
    let (_, a) = create(&mut c, &d, "f").await.expect("create");
    assert_eq!(
        (a.uid, a.gid),
        (65534, 65534),
        "root became the anonymous user"
    );
    // A squashed root cannot chown.
    let (fh, _) = lookup(&mut c, &d, "f").await.expect("lookup");
    let s = sattr3 {
        uid: Nfs3Option::Some(0),
        ..sattr3::default()
    };
    assert_eq!(
        setattr(&mut c, &fh, s).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_PERM)
    );
    srv.stop().await;
}

#[tokio::test]
async fn unprivileged_users_are_checked_before_anything_changes() {
    let srv = Server::start().await;
    let mut r = root(&srv).await;
    let rfh = root_fh(&r);
    let (rootfile, _) = create(&mut r, &rfh, "rootfile").await.expect("create");
    let sd = scratch(&srv, "scratch").await;
    let mut u = mount_as(&srv, "/t", 1000, 1000).await;
    let mut o = mount_as(&srv, "/t", 1001, 1001).await;
    // No write permission on the root dir.
    assert_eq!(
        create(&mut u, &rfh, "x").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    assert_eq!(
        remove(&mut u, &rfh, "rootfile").await,
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    assert_eq!(
        write(&mut u, &rootfile, 0, b"x", stable_how::UNSTABLE)
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    assert_eq!(
        setattr(&mut u, &rootfile, sattr_mode(0o777))
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_PERM)
    );
    let truncate = sattr3 {
        size: Nfs3Option::Some(0),
        ..sattr3::default()
    };
    assert_eq!(
        setattr(&mut u, &rootfile, truncate.clone())
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    // In the scratch dir: own files, 0444, still writable by the owner (open-then-write).
    let (mine, a) = create_how(&mut u, &sd, "mine", createhow3::GUARDED(sattr_mode(0o444)))
        .await
        .expect("create");
    assert_eq!((a.uid, a.gid, a.mode), (1000, 1000, 0o444));
    write(&mut u, &mine, 0, b"owner writes", stable_how::UNSTABLE)
        .await
        .expect("owner override");
    assert_eq!(
        write(&mut o, &mine, 0, b"x", stable_how::UNSTABLE)
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    assert_eq!(
        setattr(&mut o, &mine, sattr_mode(0o666)).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_PERM)
    );
    let times = sattr3 {
        mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
            seconds: 5,
            nseconds: 0,
        }),
        ..sattr3::default()
    };
    assert_eq!(
        setattr(&mut o, &mine, times.clone()).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_PERM)
    );
    setattr(&mut u, &mine, times)
        .await
        .expect("the owner sets times");
    let chown = sattr3 {
        uid: Nfs3Option::Some(1001),
        ..sattr3::default()
    };
    assert_eq!(
        setattr(&mut u, &mine, chown.clone()).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_PERM)
    );
    setattr(&mut r, &mine, chown)
        .await
        .expect("root gives it away");
    // Sticky scratch dir: another user may not remove what is not theirs.
    setattr(&mut r, &sd, sattr_mode(0o1777))
        .await
        .expect("sticky");
    create(&mut u, &sd, "keep").await.expect("create");
    assert_eq!(
        remove(&mut o, &sd, "keep").await,
        Err(nfsstat3::NFS3ERR_PERM)
    );
    let res = o
        .rename(&RENAME3args {
            from: dirop(&sd, "keep"),
            to: dirop(&sd, "moved"),
        })
        .await
        .expect("rpc");
    assert!(matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_PERM, _))));
    remove(&mut u, &sd, "keep")
        .await
        .expect("the owner removes");
    // Nothing is listed in a directory one may not read.
    let (private, _) = mkdir(&mut r, &rfh, "private", 0o700).await.expect("mkdir");
    let args = READDIR3args {
        dir: private.clone(),
        cookie: 0,
        cookieverf: cookieverf3::default(),
        count: 4096,
    };
    assert!(matches!(
        u.readdir(&args).await.expect("rpc"),
        Nfs3Result::Err((nfsstat3::NFS3ERR_ACCES, _))
    ));
    assert_eq!(
        lookup(&mut u, &private, "x").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_ACCES)
    );
    srv.stop().await;
}

/// CREATE EXCLUSIVE retransmitted with the same xid gets the first reply again (reply cache),
/// and a REMOVE retransmitted after it succeeded still answers OK, having run once.
#[tokio::test]
async fn retransmissions_are_answered_from_the_reply_cache() {
    let srv = Server::start().await;
    let c = root(&srv).await;
    let rfh = root_fh(&c);
    let mut r = Raw::connect(srv.addr).await;
    let who = cred(0, 0, &[]);
    let create = raw::call(
        77,
        raw::NFS,
        3,
        8,
        &who,
        &CREATE3args {
            where_: dirop(&rfh, "excl"),
            how: createhow3::EXCLUSIVE(createverf3([3; 8])),
        },
    );
    r.send(&raw::record(&create)).await;
    let first = r.recv().await.expect("reply");
    let changes = srv.changes();
    r.send(&raw::record(&create)).await;
    let second = r.recv().await.expect("reply");
    assert_eq!(first, second, "the same reply, byte for byte");
    assert_eq!(srv.changes(), changes, "the retransmission did not run");
    let res: CREATE3res = raw::results(&first);
    let fh = match res {
        Nfs3Result::Ok(ok) => ok.obj.unwrap(),
        Nfs3Result::Err((s, _)) => panic!("CREATE: {s}"),
    };
    // The same from another connection (a reconnecting client): still cached.
    let mut r2 = Raw::connect(srv.addr).await;
    r2.send(&raw::record(&create)).await;
    assert_eq!(r2.recv().await.expect("reply"), first);

    let remove = raw::call(
        78,
        raw::NFS,
        3,
        12,
        &who,
        &REMOVE3args {
            object: dirop(&rfh, "excl"),
        },
    );
    r.send(&raw::record(&remove)).await;
    let a = r.recv().await.expect("reply");
    r.send(&raw::record(&remove)).await;
    let b = r.recv().await.expect("reply");
    assert_eq!(a, b);
    assert!(matches!(raw::results::<REMOVE3res>(&a), Nfs3Result::Ok(_)));
    // Same xid, other arguments: a new call (here NOENT, really run).
    let other = raw::call(
        78,
        raw::NFS,
        3,
        12,
        &who,
        &REMOVE3args {
            object: dirop(&rfh, "other"),
        },
    );
    r.send(&raw::record(&other)).await;
    let c3 = r.recv().await.expect("reply");
    assert!(matches!(
        raw::results::<REMOVE3res>(&c3),
        Nfs3Result::Err((nfsstat3::NFS3ERR_NOENT, _))
    ));
    // The removed file's handle is stale: the REMOVE really ran once.
    let g = raw::call(79, raw::NFS, 3, 1, &who, &GETATTR3args { object: fh });
    r.send(&raw::record(&g)).await;
    let g = r.recv().await.expect("reply");
    assert!(matches!(
        raw::results::<GETATTR3res>(&g),
        Nfs3Result::Err((nfsstat3::NFS3ERR_STALE, _))
    ));
    srv.stop().await;
}
