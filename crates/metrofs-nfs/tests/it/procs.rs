//! Every procedure end to end, over TCP with nfs3_client, against a real array.

use metrofs_core::Backend;
use nfs3_client::nfs3_types::mount::{dirpath, mountstat3};
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::{Opaque, Pack};

use crate::harness::*;

#[tokio::test]
async fn null_and_mount_procedures() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    c.null().await.expect("NFS NULL");
    c.mount_client.null().await.expect("MOUNT NULL");
    let exports = c.mount_client.export().await.expect("EXPORT");
    let listed: Vec<(String, Vec<String>)> = exports
        .0
        .iter()
        .map(|e| {
            let groups = e
                .ex_groups
                .0
                .iter()
                .map(|g| String::from_utf8_lossy(&g.0).into_owned())
                .collect();
            (String::from_utf8_lossy(&e.ex_dir.0).into_owned(), groups)
        })
        .collect();
    assert_eq!(
        listed,
        vec![("/t".to_string(), vec!["127.0.0.0/8".to_string()])]
    );
    assert!(c.mount_client.dump().await.expect("DUMP").0.is_empty());
    c.mount_client
        .umnt(dirpath(Opaque::borrowed(b"/t")))
        .await
        .expect("UMNT");
    c.mount_client.umntall().await.expect("UMNTALL");

    // MNT of a directory inside the fs answers that directory's handle; of a file, NOTDIR.
    let rfh = root_fh(&c);
    let (sub, _) = mkdir(&mut c, &rfh, "sub", 0o755).await.expect("mkdir");
    let (deeper, _) = mkdir(&mut c, &sub, "deeper", 0o755).await.expect("mkdir");
    create(&mut c, &sub, "file").await.expect("create");
    let m = mount_as(&srv, "/t/sub/deeper/", 0, 0).await;
    assert_eq!(m.root_nfs_fh3(), deeper);
    let err = mount_refused(builder(&srv, "/t/sub/file")).await;
    assert!(matches!(err, mountstat3::MNT3ERR_NOTDIR), "{err}");
    for path in ["/nope", "/", "", "/t/missing"] {
        let err = mount_refused(builder(&srv, path)).await;
        assert!(matches!(err, mountstat3::MNT3ERR_NOENT), "{path}: {err}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn write_read_commit() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, a) = create(&mut c, &rfh, "f").await.expect("create");
    assert_eq!((a.type_, a.size, a.mode), (ftype3::NF3REG, 0, 0o644));
    let verf = writeverf3(srv.array.write_verifier());
    for (i, how) in [
        stable_how::UNSTABLE,
        stable_how::DATA_SYNC,
        stable_how::FILE_SYNC,
    ]
    .into_iter()
    .enumerate()
    {
        let w = write(&mut c, &fh, i as u64 * 5, b"hello", how)
            .await
            .expect("write");
        assert_eq!((w.count, w.committed, w.verf), (5, how, verf));
        let before = match w.file_wcc.before {
            Nfs3Option::Some(b) => b,
            Nfs3Option::None => panic!("WRITE has pre-op attributes"),
        };
        assert_eq!(before.size, i as u64 * 5);
        assert_eq!(w.file_wcc.after.unwrap().size, (i as u64 + 1) * 5);
    }
    assert_eq!(
        read(&mut c, &fh, 0, 100).await,
        Ok((b"hellohellohello".to_vec(), true))
    );
    assert_eq!(
        read(&mut c, &fh, 0, 15).await,
        Ok((b"hellohellohello".to_vec(), true)),
        "up to the end is eof"
    );
    assert_eq!(
        read(&mut c, &fh, 0, 14).await,
        Ok((b"hellohellohell".to_vec(), false))
    );
    assert_eq!(read(&mut c, &fh, 13, 1).await, Ok((b"l".to_vec(), false)));
    assert_eq!(
        read(&mut c, &fh, 100, 10).await,
        Ok((Vec::new(), true)),
        "past the end"
    );
    // 1 MiB, unaligned, sparse in between.
    let big: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 253) as u8).collect();
    let w = write(&mut c, &fh, (1 << 20) + 3, &big, stable_how::UNSTABLE)
        .await
        .expect("1 MiB write");
    assert_eq!(w.count, 1 << 20);
    let (got, eof) = read(&mut c, &fh, (1 << 20) + 3, 1 << 20)
        .await
        .expect("1 MiB read");
    assert!(eof);
    assert!(got == big, "1 MiB read back");
    let (hole, _) = read(&mut c, &fh, 100, 1000).await.expect("hole");
    assert_eq!(hole, vec![0u8; 1000]);
    let res = c
        .commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .expect("rpc");
    match res {
        Nfs3Result::Ok(ok) => {
            assert_eq!(ok.verf, verf);
            assert_eq!(ok.file_wcc.after.unwrap().size, (2 << 20) + 3);
        }
        Nfs3Result::Err((s, _)) => panic!("COMMIT: {s}"),
    }
    // A READ over the maximum is cut to 1 MiB.
    let (got, _) = read(&mut c, &fh, 0, 4 << 20).await.expect("read");
    assert_eq!(got.len(), 1 << 20);
    // READ and WRITE of a directory.
    assert_eq!(
        read(&mut c, &rfh, 0, 10).await,
        Err(nfsstat3::NFS3ERR_ISDIR)
    );
    assert_eq!(
        write(&mut c, &rfh, 0, b"x", stable_how::UNSTABLE)
            .await
            .map(|_| ()),
        Err(nfsstat3::NFS3ERR_ISDIR)
    );
    srv.stop().await;
}

#[tokio::test]
async fn setattr_every_field_and_the_guard() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, a0) = create(&mut c, &rfh, "f").await.expect("create");
    write(&mut c, &fh, 0, b"0123456789", stable_how::UNSTABLE)
        .await
        .expect("write");
    let s = sattr3 {
        mode: Nfs3Option::Some(0o4751),
        uid: Nfs3Option::Some(1234),
        gid: Nfs3Option::Some(567),
        size: Nfs3Option::Some(4),
        atime: set_atime::SET_TO_CLIENT_TIME(nfstime3 {
            seconds: 1000,
            nseconds: 5,
        }),
        mtime: set_mtime::SET_TO_CLIENT_TIME(nfstime3 {
            seconds: 2000,
            nseconds: 7,
        }),
    };
    let ok = setattr(&mut c, &fh, s).await.expect("setattr");
    let after = ok.obj_wcc.after.unwrap();
    assert!(ok.obj_wcc.before.is_some());
    assert_eq!(
        (after.mode, after.uid, after.gid, after.size),
        (0o4751, 1234, 567, 4)
    );
    assert_eq!(
        (after.atime, after.mtime),
        (
            nfstime3 {
                seconds: 1000,
                nseconds: 5
            },
            nfstime3 {
                seconds: 2000,
                nseconds: 7
            }
        )
    );
    assert!((after.ctime.seconds, after.ctime.nseconds) > (a0.ctime.seconds, a0.ctime.nseconds));
    assert_eq!(
        read(&mut c, &fh, 0, 100).await,
        Ok((b"0123".to_vec(), true))
    );
    // Extend, server times.
    let s = sattr3 {
        size: Nfs3Option::Some(6),
        mtime: set_mtime::SET_TO_SERVER_TIME,
        ..sattr3::default()
    };
    let after = setattr(&mut c, &fh, s)
        .await
        .expect("setattr")
        .obj_wcc
        .after
        .unwrap();
    assert_eq!(after.size, 6);
    assert!(after.mtime.seconds > 2000);
    assert_eq!(
        read(&mut c, &fh, 0, 100).await,
        Ok((b"0123\0\0".to_vec(), true))
    );
    // The guard: ctime must match.
    let cur = getattr(&mut c, &fh).await.expect("getattr");
    let args = |guard| SETATTR3args {
        object: fh.clone(),
        new_attributes: sattr_mode(0o600),
        guard,
    };
    let stale = nfstime3 {
        seconds: cur.ctime.seconds - 1,
        nseconds: 0,
    };
    match c
        .setattr(&args(Nfs3Option::Some(stale)))
        .await
        .expect("rpc")
    {
        Nfs3Result::Err((s, fail)) => {
            assert_eq!(s, nfsstat3::NFS3ERR_NOT_SYNC);
            assert_eq!(fail.obj_wcc.after.unwrap().mode, 0o4751, "nothing changed");
        }
        Nfs3Result::Ok(_) => panic!("guard must fail"),
    }
    assert!(matches!(
        c.setattr(&args(Nfs3Option::Some(cur.ctime)))
            .await
            .expect("rpc"),
        Nfs3Result::Ok(_)
    ));
    assert_eq!(getattr(&mut c, &fh).await.expect("getattr").mode, 0o600);
    // Invalid nanoseconds.
    let bad = sattr3 {
        atime: set_atime::SET_TO_CLIENT_TIME(nfstime3 {
            seconds: 1,
            nseconds: 2_000_000_000,
        }),
        ..sattr3::default()
    };
    assert_eq!(
        setattr(&mut c, &fh, bad).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_INVAL)
    );
    // Nothing to set is fine.
    setattr(&mut c, &fh, sattr3::default())
        .await
        .expect("empty setattr");
    srv.stop().await;
}

#[tokio::test]
async fn lookup_access_symlink_readlink_mknod() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, a) = create(&mut c, &rfh, "file").await.expect("create");
    let (lfh, la) = lookup(&mut c, &rfh, "file").await.expect("lookup");
    assert_eq!((lfh, la.fileid), (fh.clone(), a.fileid));
    assert_eq!(
        lookup(&mut c, &rfh, "missing").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NOENT)
    );
    assert_eq!(
        lookup(&mut c, &rfh, &"n".repeat(256)).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NAMETOOLONG)
    );
    assert_eq!(
        lookup(&mut c, &fh, "x").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NOTDIR)
    );
    let (dot, _) = lookup(&mut c, &rfh, ".").await.expect("lookup .");
    let (dotdot, _) = lookup(&mut c, &rfh, "..").await.expect("lookup ..");
    assert_eq!(
        (dot, dotdot),
        (rfh.clone(), rfh.clone()),
        "the root is its own parent"
    );

    // SYMLINK and READLINK.
    let res = c
        .symlink(&SYMLINK3args {
            where_: dirop(&rfh, "link"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3::from(b"some/target".as_slice()),
            },
        })
        .await
        .expect("rpc");
    let lfh = match res {
        Nfs3Result::Ok(ok) => {
            let attrs = ok.obj_attributes.unwrap();
            assert_eq!((attrs.type_, attrs.size), (ftype3::NF3LNK, 11));
            assert!(ok.dir_wcc.before.is_some() && ok.dir_wcc.after.is_some());
            ok.obj.unwrap()
        }
        Nfs3Result::Err((s, _)) => panic!("SYMLINK: {s}"),
    };
    match c
        .readlink(&READLINK3args {
            symlink: lfh.clone(),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => assert_eq!(ok.data.0.as_ref(), b"some/target"),
        Nfs3Result::Err((s, _)) => panic!("READLINK: {s}"),
    }
    match c
        .readlink(&READLINK3args {
            symlink: fh.clone(),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Err((s, _)) => assert_eq!(s, nfsstat3::NFS3ERR_INVAL),
        Nfs3Result::Ok(_) => panic!("READLINK of a file"),
    }

    // ACCESS: root on a 0644 file; an unprivileged user on it.
    assert_eq!(
        access_all(&mut c, &fh).await,
        ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND
    );
    assert_eq!(
        access_all(&mut c, &rfh).await,
        ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE
    );
    let mut u = mount_as(&srv, "/t", 1000, 1000).await;
    assert_eq!(access_all(&mut u, &fh).await, ACCESS3_READ);
    assert_eq!(
        access_all(&mut u, &rfh).await,
        ACCESS3_READ | ACCESS3_LOOKUP
    );

    // MKNOD is not supported; a FIFO as an example.
    let res = c
        .mknod(&MKNOD3args {
            where_: dirop(&rfh, "fifo"),
            what: mknoddata3::NF3FIFO(sattr3::default()),
        })
        .await
        .expect("rpc");
    assert!(
        matches!(res, Nfs3Result::Err((nfsstat3::NFS3ERR_NOTSUPP, _))),
        "{res:?}"
    );
    assert_eq!(
        lookup(&mut c, &rfh, "fifo").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NOENT)
    );
    srv.stop().await;
}

#[tokio::test]
async fn create_modes() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, _) = create(&mut c, &rfh, "g").await.expect("guarded");
    assert_eq!(
        create(&mut c, &rfh, "g").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_EXIST)
    );
    write(&mut c, &fh, 0, b"data", stable_how::UNSTABLE)
        .await
        .expect("write");
    // UNCHECKED over an existing file truncates it (size 0), same file.
    let how = createhow3::UNCHECKED(sattr3 {
        size: Nfs3Option::Some(0),
        ..sattr3::default()
    });
    let (fh2, a) = create_how(&mut c, &rfh, "g", how).await.expect("unchecked");
    assert_eq!((fh2, a.size), (fh.clone(), 0));
    // EXCLUSIVE: the same verifier again is the same file; another verifier is EXIST.
    let (xfh, _) = create_how(
        &mut c,
        &rfh,
        "x",
        createhow3::EXCLUSIVE(createverf3([7; 8])),
    )
    .await
    .expect("exclusive");
    let (again, _) = create_how(
        &mut c,
        &rfh,
        "x",
        createhow3::EXCLUSIVE(createverf3([7; 8])),
    )
    .await
    .expect("retransmitted");
    assert_eq!(again, xfh);
    let other = create_how(
        &mut c,
        &rfh,
        "x",
        createhow3::EXCLUSIVE(createverf3([8; 8])),
    )
    .await;
    assert_eq!(other.map(|_| ()), Err(nfsstat3::NFS3ERR_EXIST));
    // Names.
    assert_eq!(
        create(&mut c, &rfh, &"n".repeat(256)).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NAMETOOLONG)
    );
    create(&mut c, &rfh, &"n".repeat(255))
        .await
        .expect("255 bytes is fine");
    assert_eq!(
        create(&mut c, &rfh, "a/b").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_INVAL)
    );
    assert_eq!(
        create(&mut c, &rfh, "..").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_EXIST)
    );
    assert_eq!(
        create(&mut c, &fh, "in-a-file").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NOTDIR)
    );
    srv.stop().await;
}

#[tokio::test]
async fn directories_rename_and_links() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (d1, _) = mkdir(&mut c, &rfh, "d1", 0o755).await.expect("mkdir");
    let (d2, d2a) = mkdir(&mut c, &rfh, "d2", 0o700).await.expect("mkdir");
    assert_eq!((d2a.type_, d2a.mode, d2a.nlink), (ftype3::NF3DIR, 0o700, 2));
    assert_eq!(
        mkdir(&mut c, &rfh, "d1", 0o755).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_EXIST)
    );
    let (f, _) = create(&mut c, &d1, "f").await.expect("create");
    write(&mut c, &f, 0, b"payload", stable_how::UNSTABLE)
        .await
        .expect("write");
    assert_eq!(
        rmdir(&mut c, &rfh, "d1").await,
        Err(nfsstat3::NFS3ERR_NOTEMPTY)
    );
    assert_eq!(rmdir(&mut c, &d1, "f").await, Err(nfsstat3::NFS3ERR_NOTDIR));
    assert_eq!(
        remove(&mut c, &rfh, "d2").await,
        Err(nfsstat3::NFS3ERR_ISDIR)
    );

    // Across directories: same handle, new place.
    rename(&mut c, &d1, "f", &d2, "g")
        .await
        .expect("rename across dirs");
    assert_eq!(lookup(&mut c, &d2, "g").await.map(|x| x.0), Ok(f.clone()));
    assert_eq!(
        lookup(&mut c, &d1, "f").await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_NOENT)
    );
    // Over an existing file: the target is replaced and its handle goes stale.
    let (victim, _) = create(&mut c, &d2, "victim").await.expect("create");
    rename(&mut c, &d2, "g", &d2, "victim")
        .await
        .expect("rename over a file");
    assert_eq!(
        read(&mut c, &f, 0, 100).await,
        Ok((b"payload".to_vec(), true))
    );
    assert_eq!(
        lookup(&mut c, &d2, "victim").await.map(|x| x.0),
        Ok(f.clone())
    );
    assert_eq!(
        getattr(&mut c, &victim).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    // Over an empty directory; not over a non-empty one; never into its own subtree.
    let (sub, _) = mkdir(&mut c, &d1, "sub", 0o755).await.expect("mkdir");
    mkdir(&mut c, &rfh, "empty", 0o755).await.expect("mkdir");
    rename(&mut c, &d1, "sub", &rfh, "empty")
        .await
        .expect("dir over empty dir");
    assert_eq!(
        lookup(&mut c, &rfh, "empty").await.map(|x| x.0),
        Ok(sub.clone())
    );
    let over_full = rename(&mut c, &rfh, "empty", &rfh, "d2").await;
    assert!(
        matches!(
            over_full,
            Err(nfsstat3::NFS3ERR_NOTEMPTY | nfsstat3::NFS3ERR_EXIST)
        ),
        "{over_full:?}"
    );
    assert_eq!(
        rename(&mut c, &rfh, "d1", &d1, "inside").await,
        Err(nfsstat3::NFS3ERR_INVAL)
    );
    let (subsub, _) = mkdir(&mut c, &sub, "subsub", 0o755).await.expect("mkdir");
    assert_eq!(
        rename(&mut c, &rfh, "empty", &subsub, "deeper").await,
        Err(nfsstat3::NFS3ERR_INVAL)
    );
    assert_eq!(
        rename(&mut c, &rfh, "nope", &rfh, "x").await,
        Err(nfsstat3::NFS3ERR_NOENT)
    );

    // Hard links keep nlink right.
    assert_eq!(link(&mut c, &f, &rfh, "l1").await, Ok(2));
    assert_eq!(link(&mut c, &f, &d1, "l2").await, Ok(3));
    assert_eq!(
        link(&mut c, &f, &d1, "l2").await,
        Err(nfsstat3::NFS3ERR_EXIST)
    );
    assert_eq!(
        link(&mut c, &d1, &rfh, "dirlink").await,
        Err(nfsstat3::NFS3ERR_ISDIR)
    );
    remove(&mut c, &d2, "victim")
        .await
        .expect("remove one name");
    assert_eq!(getattr(&mut c, &f).await.map(|a| a.nlink), Ok(2));
    remove(&mut c, &rfh, "l1").await.expect("remove");
    assert_eq!(getattr(&mut c, &f).await.map(|a| a.nlink), Ok(1));
    assert_eq!(lookup(&mut c, &d1, "l2").await.map(|x| x.0), Ok(f.clone()));
    assert_eq!(
        read(&mut c, &f, 0, 100).await,
        Ok((b"payload".to_vec(), true))
    );
    remove(&mut c, &d1, "l2")
        .await
        .expect("remove the last name");
    assert_eq!(
        getattr(&mut c, &f).await.map(|_| ()),
        Err(nfsstat3::NFS3ERR_STALE)
    );
    assert_eq!(
        remove(&mut c, &d1, "l2").await,
        Err(nfsstat3::NFS3ERR_NOENT)
    );
    srv.stop().await;
}

#[tokio::test]
async fn fsstat_fsinfo_pathconf() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let st = srv.array.fsstat(srv.fs).await.expect("fsstat");
    match c
        .fsstat(&FSSTAT3args {
            fsroot: rfh.clone(),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert!(ok.obj_attributes.is_some());
            assert_eq!(ok.tbytes, st.total_bytes);
            assert_eq!(ok.tfiles, st.total_files);
            assert!(ok.abytes <= ok.fbytes && ok.fbytes <= ok.tbytes);
        }
        Nfs3Result::Err((s, _)) => panic!("FSSTAT: {s}"),
    }
    match c
        .fsinfo(&FSINFO3args {
            fsroot: rfh.clone(),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert_eq!(
                (ok.rtmax, ok.rtpref, ok.wtmax, ok.wtpref, ok.dtpref),
                (1 << 20, 1 << 20, 1 << 20, 1 << 20, 64 << 10)
            );
            assert_eq!(ok.maxfilesize, metrofs_core::FILE_SIZE_MAX_BYTES);
            assert_eq!(
                ok.time_delta,
                nfstime3 {
                    seconds: 0,
                    nseconds: 1
                }
            );
            assert_eq!(
                ok.properties,
                FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME
            );
        }
        Nfs3Result::Err((s, _)) => panic!("FSINFO: {s}"),
    }
    match c
        .pathconf(&PATHCONF3args {
            object: rfh.clone(),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert_eq!(ok.name_max, 255);
            assert!(
                ok.no_trunc && ok.chown_restricted && !ok.case_insensitive && ok.case_preserving
            );
            assert_eq!(ok.linkmax, metrofs_core::LINKS_MAX);
        }
        Nfs3Result::Err((s, _)) => panic!("PATHCONF: {s}"),
    }
    srv.stop().await;
}

#[tokio::test]
async fn readdir_lists_dot_entries_and_resumes_within_count() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (d, da) = mkdir(&mut c, &rfh, "d", 0o755).await.expect("mkdir");
    let mut made = Vec::new();
    for i in 0..50 {
        let n = format!("entry-{i:03}");
        create(&mut c, &d, &n).await.expect("create");
        made.push(n);
    }
    // Small pages: every reply within count, "." and ".." first, then all 50, each once.
    let mut cookie = 0;
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut pages = 0;
    loop {
        let args = READDIR3args {
            dir: d.clone(),
            cookie,
            cookieverf: cookieverf3::default(),
            count: 300,
        };
        let res = c.readdir(&args).await.expect("rpc");
        assert!(
            res.packed_size() <= 300,
            "reply of {} bytes for count 300",
            res.packed_size()
        );
        let ok = match res {
            Nfs3Result::Ok(ok) => ok,
            Nfs3Result::Err((s, _)) => panic!("READDIR: {s}"),
        };
        pages += 1;
        assert!(!ok.reply.entries.0.is_empty() || ok.reply.eof);
        for e in &ok.reply.entries.0 {
            seen.push((
                String::from_utf8_lossy(e.name.as_ref()).into_owned(),
                e.fileid,
            ));
            cookie = e.cookie;
        }
        if ok.reply.eof {
            break;
        }
    }
    assert!(pages > 5, "count 300 makes many pages, got {pages}");
    assert_eq!(seen[0], (".".to_string(), da.fileid));
    assert_eq!(seen[1].0, "..");
    let mut names: Vec<String> = seen[2..].iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(names, made);

    // READDIRPLUS: handles and attributes; maxcount and dircount honoured.
    let args = READDIRPLUS3args {
        dir: d.clone(),
        cookie: 0,
        cookieverf: cookieverf3::default(),
        dircount: 100,
        maxcount: 4000,
    };
    let res = c.readdirplus(&args).await.expect("rpc");
    assert!(res.packed_size() <= 4000);
    let ok = match res {
        Nfs3Result::Ok(ok) => ok,
        Nfs3Result::Err((s, _)) => panic!("READDIRPLUS: {s}"),
    };
    let entries = &ok.reply.entries.0;
    // "." (4+8+4+4+8 = 28) + ".." (28) + "entry-000" (4+8+4+12+8 = 36) = 92 <= 100; a fourth would not fit.
    assert_eq!(entries.len(), 3, "dircount 100 holds three entries");
    assert!(!ok.reply.eof);
    let dot = &entries[0];
    assert_eq!(dot.name_handle.clone().unwrap(), d);
    let third = &entries[2];
    let (fh, a) = lookup(&mut c, &d, &String::from_utf8_lossy(third.name.as_ref()))
        .await
        .expect("lookup");
    assert_eq!(third.name_handle.clone().unwrap(), fh);
    assert_eq!(third.name_attributes.clone().unwrap().fileid, a.fileid);

    // Too small for anything: TOOSMALL. A cookie with another verifier: BAD_COOKIE.
    let args = READDIR3args {
        dir: d.clone(),
        cookie: 0,
        cookieverf: cookieverf3::default(),
        count: 100,
    };
    assert!(matches!(
        c.readdir(&args).await.expect("rpc"),
        Nfs3Result::Err((nfsstat3::NFS3ERR_TOOSMALL, _))
    ));
    let args = READDIR3args {
        dir: d.clone(),
        cookie: 5,
        cookieverf: cookieverf3([1; 8]),
        count: 4000,
    };
    assert!(matches!(
        c.readdir(&args).await.expect("rpc"),
        Nfs3Result::Err((nfsstat3::NFS3ERR_BAD_COOKIE, _))
    ));
    // Of a file: NOTDIR.
    let (f, _) = lookup(&mut c, &d, "entry-000").await.expect("lookup");
    let args = READDIR3args {
        dir: f,
        cookie: 0,
        cookieverf: cookieverf3::default(),
        count: 4000,
    };
    assert!(matches!(
        c.readdir(&args).await.expect("rpc"),
        Nfs3Result::Err((nfsstat3::NFS3ERR_NOTDIR, _))
    ));
    srv.stop().await;
}
