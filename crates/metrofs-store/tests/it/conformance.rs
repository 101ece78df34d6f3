//! The store's conformance suite: the semantics `Store::apply` and the reads promise (POSIX and
//! RFC 1813), as one function over a `&Store` (STYLE 17). Each part makes its own fs.

use metrofs_core::{
    CreateHow, ExportRules, FileType, FsError, FsId, Gen, Ino, OpBody, SetAttr, SetTime, Stability,
    Time, FILE_SIZE_MAX_BYTES, NAME_MAX_BYTES, ROOT_INO, SYMLINK_MAX_BYTES,
};
use metrofs_store::{Store, StoreError};

use crate::fx::{Fx, ROOT, T0};

/// Runs every part on `s`. `tag` keeps fs names apart when run twice on one store. `big`
/// includes the 100 000-entry READDIR part (a few seconds).
pub fn run(s: &Store, tag: &str, big: bool) {
    catalog(s, tag);
    root_and_reads(&mut Fx::new(s, &format!("{tag}-root")));
    names(&mut Fx::new(s, &format!("{tag}-names")));
    create_modes(&mut Fx::new(s, &format!("{tag}-create")));
    write_read(&mut Fx::new(s, &format!("{tag}-rw")));
    setattr(&mut Fx::new(s, &format!("{tag}-setattr")));
    dirs(&mut Fx::new(s, &format!("{tag}-dirs")));
    links_and_reuse(&mut Fx::new(s, &format!("{tag}-links")));
    rename(&mut Fx::new(s, &format!("{tag}-rename")));
    symlinks(&mut Fx::new(s, &format!("{tag}-symlink")));
    readdir_cookies(
        &mut Fx::new(s, &format!("{tag}-readdir")),
        if big { 100_000 } else { 3_000 },
    );
    durability_ops(&mut Fx::new(s, &format!("{tag}-durable")));
    for f in s.list_fs() {
        if f.name.starts_with(tag) {
            let problems = s.check(f.id);
            assert!(problems.is_empty(), "fs {}: {problems:#?}", f.name);
        }
    }
}

fn catalog(s: &Store, tag: &str) {
    let t = Time::new(T0, 0);
    let name = format!("{tag}-cat");
    let id = FsId(
        0x5eed_0000
            ^ tag
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
    );
    let info = s
        .create_fs(&name, id, ExportRules::default(), t)
        .expect("create");
    assert_eq!(info.name, name);
    assert_eq!(s.fs_by_name(&name), Some(info.clone()));
    assert_eq!(s.fs_by_id(id), Some(info.clone()));
    assert!(s.list_fs().contains(&info));
    assert!(matches!(
        s.create_fs(&name, FsId(id.0 + 1), ExportRules::default(), t),
        Err(StoreError::NameExists(_))
    ));
    assert!(matches!(
        s.create_fs(&format!("{name}2"), id, ExportRules::default(), t),
        Err(StoreError::IdExists(_))
    ));
    for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
        assert!(
            matches!(
                s.create_fs(bad, FsId(1234), ExportRules::default(), t),
                Err(StoreError::InvalidName(..))
            ),
            "{bad:?} accepted"
        );
    }
    let rules = ExportRules {
        read_only: true,
        ..ExportRules::default()
    };
    let changed = s.set_export(id, rules.clone()).expect("set_export");
    assert_eq!(changed.rules, rules);
    assert_eq!(s.fs_by_id(id).expect("still there").rules, rules);
    // Some content, then delete: everything goes, data directory included.
    let mut fx = Fx::existing(s, id);
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"data").expect("write");
    let dir = s.dir().join("data").join(format!("{:016x}", id.0));
    assert!(dir.exists());
    s.delete_fs(id).expect("delete");
    assert!(!dir.exists(), "data directory left behind");
    assert_eq!(s.fs_by_id(id), None);
    assert_eq!(s.getattr(id, ROOT_INO), Err(FsError::NoFs));
    assert!(matches!(s.delete_fs(id), Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.set_export(id, ExportRules::default()),
        Err(StoreError::NotFound(_))
    ));
    let op = metrofs_core::FsOp {
        fs: id,
        time: t,
        new_inode: None,
        body: OpBody::Commit { ino: ROOT_INO },
    };
    assert_eq!(s.apply(&op), Err(FsError::NoFs));
}

fn root_and_reads(fx: &mut Fx<'_>) {
    let root = fx.getattr(ROOT).expect("root");
    assert_eq!(
        (root.ino, root.gen, root.ftype, root.mode, root.nlink),
        (ROOT, Gen(1), FileType::Directory, 0o755, 2)
    );
    assert_eq!((root.uid, root.gid), (0, 0));
    assert_eq!(root.mtime, Time::new(T0, 0));
    assert_eq!(fx.lookup(ROOT, ".").expect("."), root);
    assert_eq!(
        fx.lookup(ROOT, "..").expect(".."),
        root,
        "the root's parent is the root"
    );
    assert_eq!(fx.getattr(Ino(999)), Err(FsError::Stale));
    assert_eq!(
        fx.s.read(fx.fs, Ino(999), 0, 10).map(|_| ()),
        Err(FsError::Stale)
    );
    assert_eq!(
        fx.s.readdir(fx.fs, Ino(999), 0, 10, false).map(|_| ()),
        Err(FsError::Stale)
    );
    assert_eq!(fx.lookup(ROOT, "nothing"), Err(FsError::NoEnt));
    assert_eq!(
        fx.s.read(fx.fs, ROOT, 0, 10).map(|_| ()),
        Err(FsError::IsDir)
    );
    assert_eq!(fx.s.readlink(fx.fs, ROOT).map(|_| ()), Err(FsError::Inval));

    // A creating op without its inode, and a non-creating op with one, are refused.
    let mut op = fx.op_for(OpBody::Mkdir {
        dir: ROOT,
        name: b"d".to_vec(),
        mode: 0o755,
        uid: 0,
        gid: 0,
    });
    op.new_inode = None;
    assert_eq!(fx.s.apply(&op), Err(FsError::Inval));
    let mut op = fx.op_for(OpBody::Commit { ino: ROOT });
    op.new_inode = Some(fx.s.next_inode(fx.fs).expect("next"));
    assert_eq!(fx.s.apply(&op), Err(FsError::Inval));
    // An inode number that is neither free nor next is refused.
    let mut op = fx.op_for(OpBody::Mkdir {
        dir: ROOT,
        name: b"d".to_vec(),
        mode: 0o755,
        uid: 0,
        gid: 0,
    });
    op.new_inode = Some(metrofs_core::NewInode {
        ino: Ino(500),
        gen: Gen(1),
    });
    assert_eq!(fx.s.apply(&op), Err(FsError::Inval));
    assert_eq!(
        fx.lookup(ROOT, "d"),
        Err(FsError::NoEnt),
        "a refused op changes nothing"
    );

    // A new file: times from the op, the directory's mtime and ctime too.
    let t = fx.next_time();
    let f = fx.create(ROOT, "file").expect("create");
    assert_eq!(
        (f.ftype, f.mode, f.nlink, f.size, f.uid, f.gid),
        (FileType::Regular, 0o644, 1, 0, 1000, 100)
    );
    assert_eq!((f.atime, f.mtime, f.ctime), (t, t, t));
    let root2 = fx.getattr(ROOT).expect("root");
    assert_eq!((root2.mtime, root2.ctime), (t, t));
    assert_eq!(fx.lookup(ROOT, "file").expect("lookup"), f);
    assert_eq!(fx.getattr(f.ino).expect("getattr"), f);
    // Type errors.
    assert_eq!(fx.s.lookup(fx.fs, f.ino, b"x"), Err(FsError::NotDir));
    assert_eq!(
        fx.s.readdir(fx.fs, f.ino, 0, 10, false).map(|_| ()),
        Err(FsError::NotDir)
    );
    assert_eq!(fx.create(f.ino, "x"), Err(FsError::NotDir));
    assert_eq!(fx.mkdir(f.ino, "x"), Err(FsError::NotDir));
    assert_eq!(fx.create(Ino(777), "x"), Err(FsError::Stale));
    // Reads change nothing (noatime).
    let before = fx.getattr(f.ino).expect("getattr");
    fx.s.read(fx.fs, f.ino, 0, 100).expect("read");
    fx.s.readdir(fx.fs, ROOT, 0, 100, true).expect("readdir");
    assert_eq!(fx.getattr(f.ino).expect("getattr"), before);
    // fsstat: real numbers.
    let st = fx.s.fsstat(fx.fs).expect("fsstat");
    assert!(
        st.total_bytes > 0 && st.free_bytes <= st.total_bytes && st.avail_bytes <= st.free_bytes
    );
    assert!(
        st.total_files >= 2 + st.free_files,
        "two inodes (root, file) are used: {st:?}"
    );
    fx.assert_consistent();
}

fn names(fx: &mut Fx<'_>) {
    let long = "n".repeat(NAME_MAX_BYTES + 1);
    let max = "m".repeat(NAME_MAX_BYTES);
    let f = fx.create(ROOT, "f").expect("create");
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    for (name, create_err, remove_err) in [
        ("", FsError::Inval, FsError::Inval),
        (".", FsError::Exist, FsError::Inval),
        ("..", FsError::Exist, FsError::Inval),
        ("a/b", FsError::Inval, FsError::Inval),
        ("a\0b", FsError::Inval, FsError::Inval),
        (long.as_str(), FsError::NameTooLong, FsError::NameTooLong),
    ] {
        assert_eq!(
            fx.create(ROOT, name).map(|_| ()),
            Err(create_err.clone()),
            "create {name:?}"
        );
        assert_eq!(
            fx.mkdir(ROOT, name).map(|_| ()),
            Err(create_err.clone()),
            "mkdir {name:?}"
        );
        assert_eq!(
            fx.symlink(ROOT, name, b"t").map(|_| ()),
            Err(create_err.clone()),
            "symlink {name:?}"
        );
        assert_eq!(
            fx.link(f.ino, ROOT, name).map(|_| ()),
            Err(create_err.clone()),
            "link {name:?}"
        );
        assert_eq!(
            fx.remove(ROOT, name).map(|_| ()),
            Err(remove_err.clone()),
            "remove {name:?}"
        );
        assert_eq!(
            fx.rmdir(ROOT, name).map(|_| ()),
            Err(remove_err.clone()),
            "rmdir {name:?}"
        );
        assert_eq!(
            fx.rename(ROOT, "f", ROOT, name).map(|_| ()),
            Err(remove_err.clone()),
            "rename to {name:?}"
        );
        assert_eq!(
            fx.rename(ROOT, name, d.ino, "x").map(|_| ()),
            Err(remove_err),
            "rename from {name:?}"
        );
    }
    assert_eq!(fx.lookup(ROOT, &long), Err(FsError::NameTooLong));
    assert_eq!(fx.lookup(ROOT, ""), Err(FsError::NoEnt));
    assert_eq!(fx.lookup(ROOT, "a/b"), Err(FsError::NoEnt));
    assert_eq!(fx.lookup(d.ino, "..").expect("..").ino, ROOT);
    assert_eq!(fx.lookup(d.ino, ".").expect(".").ino, d.ino);
    let m = fx.create(ROOT, &max).expect("255 bytes is fine");
    assert_eq!(fx.lookup(ROOT, &max).expect("lookup").ino, m.ino);
    // Names are bytes: not UTF-8 is fine.
    let r = fx.op(OpBody::Create {
        dir: ROOT,
        name: vec![0xff, 0xfe],
        how: CreateHow::Guarded(SetAttr::default()),
        mode: 0o600,
        uid: 0,
        gid: 0,
    });
    assert!(r.is_ok());
    assert!(fx.s.lookup(fx.fs, ROOT, &[0xff, 0xfe]).is_ok());
    fx.assert_consistent();
}

fn create_modes(fx: &mut Fx<'_>) {
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"hello").expect("write");
    assert_eq!(
        fx.create(ROOT, "f"),
        Err(FsError::Exist),
        "guarded over an existing file"
    );
    // Unchecked over an existing file: success, the same file, attributes applied.
    let t = fx.next_time();
    let again = fx
        .create_how(
            ROOT,
            "f",
            CreateHow::Unchecked(SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }),
        )
        .expect("unchecked");
    assert_eq!((again.ino, again.gen, again.size), (f.ino, f.gen, 0));
    assert_eq!((again.mtime, again.ctime), (t, t));
    assert!(fx.read_all(f.ino).is_empty());
    fx.write(f.ino, 0, b"xy").expect("write");
    let kept = fx
        .create_how(ROOT, "f", CreateHow::Unchecked(SetAttr::default()))
        .expect("unchecked, nothing set");
    assert_eq!(kept.size, 2);
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    assert_eq!(
        fx.create_how(ROOT, "d", CreateHow::Unchecked(SetAttr::default())),
        Err(FsError::Exist)
    );
    // Unchecked/guarded with attributes on a new file.
    let sa = SetAttr {
        mode: Some(0o600),
        size: Some(4096),
        mtime: Some(SetTime::Client(Time::new(5, 5))),
        ..SetAttr::default()
    };
    let g = fx
        .create_how(ROOT, "g", CreateHow::Guarded(sa))
        .expect("guarded");
    assert_eq!((g.mode, g.size, g.mtime), (0o600, 4096, Time::new(5, 5)));
    assert_eq!(fx.read_all(g.ino), vec![0u8; 4096]);
    // Exclusive: the same verifier again is success with the same file; another is EXIST.
    let e = fx
        .create_how(ROOT, "e", CreateHow::Exclusive(*b"verifier"))
        .expect("exclusive");
    let e2 = fx
        .create_how(ROOT, "e", CreateHow::Exclusive(*b"verifier"))
        .expect("retransmitted exclusive");
    assert_eq!((e2.ino, e2.gen), (e.ino, e.gen));
    assert_eq!(
        fx.create_how(ROOT, "e", CreateHow::Exclusive(*b"otherone")),
        Err(FsError::Exist)
    );
    assert_eq!(
        fx.create_how(ROOT, "f", CreateHow::Exclusive(*b"verifier")),
        Err(FsError::Exist)
    );
    assert_eq!(
        fx.create_how(ROOT, "d", CreateHow::Exclusive(*b"verifier")),
        Err(FsError::Exist)
    );
    let _ = d;
    fx.assert_consistent();
}

fn write_read(fx: &mut Fx<'_>) {
    let f = fx.create(ROOT, "f").expect("create");
    let t = fx.next_time();
    let r = fx.write(f.ino, 0, b"hello world").expect("write");
    let after = r.obj.expect("obj");
    assert_eq!((after.size, after.mtime, after.ctime), (11, t, t));
    assert!(after.used > 0, "a written file uses space");
    let before = r.obj_before.expect("before");
    assert_eq!((before.size, before.mtime), (0, f.mtime));
    assert_eq!(fx.getattr(f.ino).expect("getattr"), after);
    let rd = fx.s.read(fx.fs, f.ino, 6, 100).expect("read");
    assert_eq!((&rd.data[..], rd.eof), (&b"world"[..], true));
    let rd = fx.s.read(fx.fs, f.ino, 0, 5).expect("read");
    assert_eq!((&rd.data[..], rd.eof), (&b"hello"[..], false));
    let rd = fx.s.read(fx.fs, f.ino, 100, 5).expect("read past EOF");
    assert!(rd.data.is_empty() && rd.eof);
    // Overwrite inside, and past EOF with a gap of zeros.
    fx.write(f.ino, 0, b"J").expect("write");
    fx.write(f.ino, 20, b"end").expect("write");
    let mut want = b"Jello world".to_vec();
    want.resize(20, 0);
    want.extend_from_slice(b"end");
    assert_eq!(fx.read_all(f.ino), want);
    // Sparse: 1 GiB in, a hole before; the hole reads as zeros and takes no space.
    let sp = fx.create(ROOT, "sparse").expect("create");
    let r = fx.write(sp.ino, 1 << 30, b"far").expect("write");
    let a = r.obj.expect("obj");
    assert_eq!(a.size, (1 << 30) + 3);
    assert!(a.used < 1 << 20, "a hole takes no space: used {}", a.used);
    let rd = fx.s.read(fx.fs, sp.ino, 4096, 4096).expect("read hole");
    assert!(rd.data.iter().all(|b| *b == 0) && rd.data.len() == 4096);
    let rd = fx.s.read(fx.fs, sp.ino, 1 << 30, 10).expect("read end");
    assert_eq!(&rd.data[..], b"far");
    // A zero-length write changes nothing.
    let a0 = fx.getattr(f.ino).expect("getattr");
    fx.write(f.ino, 5, b"").expect("empty write");
    assert_eq!(fx.getattr(f.ino).expect("getattr"), a0);
    // Stable writes answer with the data in.
    let r = fx
        .write_stable(f.ino, 0, b"S", Stability::FileSync)
        .expect("file sync write");
    assert_eq!(r.obj.expect("obj").size, 23);
    fx.write_stable(f.ino, 23, b"+", Stability::DataSync)
        .expect("data sync write");
    assert_eq!(fx.getattr(f.ino).expect("getattr").size, 24);
    // Type and range errors.
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let l = fx.symlink(ROOT, "l", b"f").expect("symlink");
    assert_eq!(fx.write(d.ino, 0, b"x").map(|_| ()), Err(FsError::IsDir));
    assert_eq!(fx.write(l.ino, 0, b"x").map(|_| ()), Err(FsError::Inval));
    assert_eq!(
        fx.write(Ino(4242), 0, b"x").map(|_| ()),
        Err(FsError::Stale)
    );
    assert_eq!(
        fx.write(f.ino, FILE_SIZE_MAX_BYTES, b"x").map(|_| ()),
        Err(FsError::FBig)
    );
    assert_eq!(
        fx.write(f.ino, u64::MAX, b"x").map(|_| ()),
        Err(FsError::FBig)
    );
    assert_eq!(
        fx.s.read(fx.fs, l.ino, 0, 1).map(|_| ()),
        Err(FsError::Inval)
    );
    // A huge count is a short read, not a huge allocation.
    let big = fx.create(ROOT, "big").expect("create");
    fx.truncate(big.ino, 64 << 20).expect("extend");
    let rd = fx.s.read(fx.fs, big.ino, 0, u32::MAX).expect("read");
    assert_eq!(rd.data.len() as u32, metrofs_store::READ_MAX_BYTES);
    assert!(!rd.eof);
    fx.assert_consistent();
}

fn setattr(fx: &mut Fx<'_>) {
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, &[7u8; 10_000]).expect("write");
    let t = fx.next_time();
    let a = fx
        .setattr(
            f.ino,
            SetAttr {
                mode: Some(0o4751 | 0o170000),
                uid: Some(5),
                gid: Some(6),
                ..SetAttr::default()
            },
        )
        .expect("setattr");
    assert_eq!(
        (a.mode, a.uid, a.gid, a.ctime),
        (0o4751, 5, 6, t),
        "mode keeps permission bits only"
    );
    assert_ne!(a.mtime, t, "a mode change is no data change");
    let t = fx.next_time();
    let a = fx
        .setattr(
            f.ino,
            SetAttr {
                atime: Some(SetTime::ServerTime),
                mtime: Some(SetTime::Client(Time::new(9, 9))),
                ..SetAttr::default()
            },
        )
        .expect("times");
    assert_eq!((a.atime, a.mtime, a.ctime), (t, Time::new(9, 9), t));
    // An empty SETATTR changes nothing.
    let a0 = fx.getattr(f.ino).expect("getattr");
    fx.setattr(f.ino, SetAttr::default()).expect("empty");
    assert_eq!(fx.getattr(f.ino).expect("getattr"), a0);
    // Guard: the object's ctime.
    let wrong = fx.op(OpBody::SetAttr {
        ino: f.ino,
        attr: SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        guard: Some(Time::new(1, 1)),
    });
    assert_eq!(wrong.map(|_| ()), Err(FsError::NotSync));
    let right = fx.op(OpBody::SetAttr {
        ino: f.ino,
        attr: SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        guard: Some(a0.ctime),
    });
    assert_eq!(right.expect("guard matches").obj.expect("obj").mode, 0o600);
    // Truncate, then extend: the cut bytes are gone (zeros), not back.
    let t = fx.next_time();
    let a = fx.truncate(f.ino, 100).expect("shrink");
    assert_eq!((a.size, a.mtime, a.ctime), (100, t, t));
    fx.truncate(f.ino, 5000).expect("extend");
    let data = fx.read_all(f.ino);
    assert_eq!(data.len(), 5000);
    assert!(data[..100].iter().all(|b| *b == 7) && data[100..].iter().all(|b| *b == 0));
    let a = fx.truncate(f.ino, 0).expect("to zero");
    assert_eq!((a.size, a.used), (0, 0));
    // Size on a directory or symlink, and past the limit.
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let l = fx.symlink(ROOT, "l", b"x").expect("symlink");
    assert_eq!(fx.truncate(d.ino, 0).map(|_| ()), Err(FsError::IsDir));
    assert_eq!(fx.truncate(l.ino, 0).map(|_| ()), Err(FsError::Inval));
    assert_eq!(
        fx.truncate(f.ino, FILE_SIZE_MAX_BYTES + 1).map(|_| ()),
        Err(FsError::FBig)
    );
    assert_eq!(fx.truncate(Ino(999), 0).map(|_| ()), Err(FsError::Stale));
    // A directory's mode can change.
    assert_eq!(
        fx.setattr(
            d.ino,
            SetAttr {
                mode: Some(0o700),
                ..SetAttr::default()
            }
        )
        .expect("chmod dir")
        .mode,
        0o700
    );
    fx.assert_consistent();
}

fn dirs(fx: &mut Fx<'_>) {
    let t = fx.next_time();
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    assert_eq!(
        (d.ftype, d.nlink, d.mode, d.mtime),
        (FileType::Directory, 2, 0o755, t)
    );
    let root = fx.getattr(ROOT).expect("root");
    assert_eq!((root.nlink, root.mtime, root.ctime), (3, t, t));
    assert_eq!(fx.mkdir(ROOT, "d"), Err(FsError::Exist));
    let sub = fx.mkdir(d.ino, "sub").expect("mkdir");
    assert_eq!(fx.getattr(d.ino).expect("d").nlink, 3);
    fx.create(d.ino, "file").expect("create");
    assert_eq!(
        fx.getattr(d.ino).expect("d").nlink,
        3,
        "files do not count in a directory's nlink"
    );
    assert_eq!(fx.rmdir(ROOT, "d").map(|_| ()), Err(FsError::NotEmpty));
    assert_eq!(fx.rmdir(d.ino, "file").map(|_| ()), Err(FsError::NotDir));
    assert_eq!(fx.remove(d.ino, "sub").map(|_| ()), Err(FsError::IsDir));
    assert_eq!(fx.remove(d.ino, "nothing").map(|_| ()), Err(FsError::NoEnt));
    assert_eq!(fx.rmdir(d.ino, "nothing").map(|_| ()), Err(FsError::NoEnt));
    let d_before = fx.getattr(d.ino).expect("d");
    let t = fx.next_time();
    let r = fx.rmdir(d.ino, "sub").expect("rmdir");
    let (before, after) = r.dir.expect("dir wcc");
    assert_eq!(
        (before.mtime, after.mtime, after.ctime, after.nlink),
        (d_before.mtime, t, t, 2)
    );
    assert_eq!(fx.getattr(d.ino).expect("d"), after);
    assert_eq!(fx.getattr(sub.ino), Err(FsError::Stale));
    fx.remove(d.ino, "file").expect("remove");
    fx.rmdir(ROOT, "d").expect("rmdir");
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 2);
    assert_eq!(fx.getattr(d.ino), Err(FsError::Stale));
    fx.assert_consistent();
}

fn links_and_reuse(fx: &mut Fx<'_>) {
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"shared").expect("write");
    let t = fx.next_time();
    let r = fx.link(f.ino, d.ino, "again").expect("link");
    let a = r.obj.expect("obj");
    assert_eq!((a.nlink, a.ctime), (2, t));
    assert_eq!(r.dir.expect("dir").1.mtime, t);
    assert_eq!(fx.lookup(d.ino, "again").expect("lookup").ino, f.ino);
    assert_eq!(
        fx.link(f.ino, d.ino, "again").map(|_| ()),
        Err(FsError::Exist)
    );
    assert_eq!(
        fx.link(d.ino, ROOT, "dirlink").map(|_| ()),
        Err(FsError::IsDir)
    );
    assert_eq!(
        fx.link(Ino(999), ROOT, "x").map(|_| ()),
        Err(FsError::Stale)
    );
    assert_eq!(fx.link(f.ino, f.ino, "x").map(|_| ()), Err(FsError::NotDir));
    // One name goes: the file stays, nlink 1, ctime changed.
    let t = fx.next_time();
    fx.remove(ROOT, "f").expect("remove");
    let a = fx.getattr(f.ino).expect("still there");
    assert_eq!((a.nlink, a.ctime), (1, t));
    assert_eq!(fx.read_all(f.ino), b"shared");
    // The last goes: freed; its number comes back with the next generation.
    fx.remove(d.ino, "again").expect("remove");
    assert_eq!(fx.getattr(f.ino), Err(FsError::Stale));
    let next = fx.s.next_inode(fx.fs).expect("next");
    assert_eq!((next.ino, next.gen), (f.ino, Gen(f.gen.0 + 1)));
    let g = fx.create(ROOT, "g").expect("create");
    assert_eq!((g.ino, g.gen), (f.ino, Gen(f.gen.0 + 1)));
    // The old handle (ino, old gen) is stale: the caller sees a different gen.
    assert_ne!(fx.getattr(f.ino).expect("new file").gen, f.gen);
    assert!(
        fx.read_all(g.ino).is_empty(),
        "a reused number starts empty"
    );
    // Never-used numbers come after.
    let next = fx.s.next_inode(fx.fs).expect("next");
    assert_eq!(next.gen, Gen(1));
    assert!(next.ino.0 > g.ino.0);
    fx.assert_consistent();
}

fn rename(fx: &mut Fx<'_>) {
    let a = fx.mkdir(ROOT, "a").expect("mkdir");
    let b = fx.mkdir(ROOT, "b").expect("mkdir");
    let f = fx.create(a.ino, "f").expect("create");
    fx.write(f.ino, 0, b"F").expect("write");
    let g = fx.create(b.ino, "g").expect("create");
    fx.write(g.ino, 0, b"G").expect("write");
    // Across directories, over an existing file: the target's inode is freed.
    let t = fx.next_time();
    let r = fx.rename(a.ino, "f", b.ino, "g").expect("rename over file");
    assert_eq!(r.dir.expect("from").1.mtime, t);
    assert_eq!(r.dir2.expect("to, a different directory").1.mtime, t);
    assert_eq!(fx.lookup(a.ino, "f"), Err(FsError::NoEnt));
    let moved = fx.lookup(b.ino, "g").expect("lookup");
    assert_eq!((moved.ino, moved.ctime), (f.ino, t));
    assert_eq!(fx.read_all(f.ino), b"F");
    assert_eq!(fx.getattr(g.ino), Err(FsError::Stale));
    // Within one directory: no dir2.
    let r = fx.rename(b.ino, "g", b.ino, "h").expect("rename");
    assert!(r.dir2.is_none());
    // Same name: nothing happens.
    let before = fx.getattr(b.ino).expect("b");
    fx.rename(b.ino, "h", b.ino, "h").expect("same name");
    assert_eq!(fx.getattr(b.ino).expect("b"), before);
    // Onto another link of the same file: nothing happens, both names stay.
    fx.link(f.ino, a.ino, "hl").expect("link");
    fx.rename(b.ino, "h", a.ino, "hl")
        .expect("onto own hard link");
    assert_eq!(fx.lookup(b.ino, "h").expect("h").ino, f.ino);
    assert_eq!(fx.lookup(a.ino, "hl").expect("hl").ino, f.ino);
    assert_eq!(fx.getattr(f.ino).expect("f").nlink, 2);
    // Type rules over existing targets.
    let e = fx.mkdir(ROOT, "empty").expect("mkdir");
    let full = fx.mkdir(ROOT, "full").expect("mkdir");
    fx.create(full.ino, "x").expect("create");
    assert_eq!(
        fx.rename(b.ino, "h", ROOT, "empty").map(|_| ()),
        Err(FsError::IsDir),
        "file over dir"
    );
    assert_eq!(
        fx.rename(ROOT, "empty", b.ino, "h").map(|_| ()),
        Err(FsError::NotDir),
        "dir over file"
    );
    assert_eq!(
        fx.rename(ROOT, "a", ROOT, "full").map(|_| ()),
        Err(FsError::NotEmpty),
        "dir over non-empty dir"
    );
    assert_eq!(
        fx.rename(ROOT, "nothing", ROOT, "x").map(|_| ()),
        Err(FsError::NoEnt)
    );
    assert_eq!(
        fx.rename(ROOT, "a", f.ino, "x").map(|_| ()),
        Err(FsError::NotDir)
    );
    // Dir over empty dir: the empty one is freed, link counts follow.
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 6);
    fx.rename(ROOT, "a", ROOT, "empty")
        .expect("dir over empty dir");
    assert_eq!(fx.getattr(e.ino), Err(FsError::Stale));
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 5);
    assert_eq!(fx.lookup(ROOT, "empty").expect("moved").ino, a.ino);
    // Into its own subtree: INVAL; into itself too.
    let deep = fx.mkdir(a.ino, "deep").expect("mkdir");
    assert_eq!(
        fx.rename(ROOT, "empty", deep.ino, "x").map(|_| ()),
        Err(FsError::Inval)
    );
    assert_eq!(
        fx.rename(ROOT, "empty", a.ino, "x").map(|_| ()),
        Err(FsError::Inval)
    );
    // A directory moved across parents: nlinks and ".." follow.
    fx.rename(a.ino, "deep", b.ino, "deep").expect("move dir");
    assert_eq!(fx.getattr(a.ino).expect("a").nlink, 2);
    assert_eq!(fx.getattr(b.ino).expect("b").nlink, 3);
    assert_eq!(fx.lookup(deep.ino, "..").expect("..").ino, b.ino);
    // Moving a directory up out of its parent is fine (not into its own subtree).
    fx.rename(b.ino, "deep", ROOT, "top").expect("move up");
    assert_eq!(fx.lookup(deep.ino, "..").expect("..").ino, ROOT);
    fx.assert_consistent();
}

fn symlinks(fx: &mut Fx<'_>) {
    let t = fx.next_time();
    let l = fx.symlink(ROOT, "l", b"../some/where").expect("symlink");
    assert_eq!(
        (l.ftype, l.size, l.nlink, l.mode, l.mtime),
        (FileType::Symlink, 13, 1, 0o777, t)
    );
    let (target, attr) = fx.s.readlink(fx.fs, l.ino).expect("readlink");
    assert_eq!(
        (target.as_slice(), attr),
        (&b"../some/where"[..], l.clone())
    );
    assert_eq!(fx.symlink(ROOT, "l", b"x").map(|_| ()), Err(FsError::Exist));
    assert_eq!(
        fx.symlink(ROOT, "empty", b"").map(|_| ()),
        Err(FsError::Inval)
    );
    assert_eq!(
        fx.symlink(ROOT, "long", &vec![b'x'; SYMLINK_MAX_BYTES + 1])
            .map(|_| ()),
        Err(FsError::NameTooLong)
    );
    let f = fx.create(ROOT, "f").expect("create");
    assert_eq!(fx.s.readlink(fx.fs, f.ino).map(|_| ()), Err(FsError::Inval));
    // A hard link to a symlink is allowed; removing frees it.
    fx.link(l.ino, ROOT, "l2").expect("link symlink");
    fx.remove(ROOT, "l").expect("remove");
    fx.remove(ROOT, "l2").expect("remove");
    assert_eq!(fx.getattr(l.ino), Err(FsError::Stale));
    fx.assert_consistent();
}

/// Cookies stay valid while entries come and go, over `n` (100 000) entries.
fn readdir_cookies(fx: &mut Fx<'_>, n: usize) {
    let d = fx.mkdir(ROOT, "big").expect("mkdir");
    for i in 0..n {
        fx.create(d.ino, &format!("f{i:06}")).expect("create");
    }
    // List in pages; between pages remove entries already seen and not yet seen, and add new
    // ones. Every entry that existed all along must be seen exactly once, in creation order.
    let mut seen: Vec<String> = Vec::new();
    let mut cookie = 0;
    let mut removed = std::collections::HashSet::new();
    let mut page_no = 0;
    loop {
        let p =
            fx.s.readdir(fx.fs, d.ino, cookie, 997, page_no % 10 == 0)
                .expect("readdir");
        let mut last_cookie = cookie;
        for e in &p.entries {
            assert!(e.cookie > last_cookie, "cookies grow");
            last_cookie = e.cookie;
            if page_no % 10 == 0 {
                assert_eq!(e.attr.as_ref().expect("plus").ino, e.ino);
            }
            seen.push(String::from_utf8_lossy(&e.name).into_owned());
        }
        if p.eof {
            break;
        }
        cookie = last_cookie;
        page_no += 1;
        // Remove the entry at the cookie itself: the cookie must still resume right after it.
        let at = seen.last().expect("a page").clone();
        fx.remove(d.ino, &at).expect("remove at cookie");
        removed.insert(at);
        let ahead = format!("f{:06}", (page_no * 1000 + 500) % n);
        if !removed.contains(&ahead) && fx.remove(d.ino, &ahead).is_ok() {
            removed.insert(ahead);
        }
        fx.create(d.ino, &format!("new{page_no}")).expect("create");
    }
    let mut expect_order: Vec<String> = (0..n).map(|i| format!("f{i:06}")).collect();
    let seen_set: std::collections::HashSet<&String> = seen.iter().collect();
    expect_order.retain(|n| seen_set.contains(n) || !removed.contains(n));
    let seen_old: Vec<&String> = seen.iter().filter(|n| n.starts_with('f')).collect();
    assert_eq!(
        seen_old.len(),
        expect_order.len(),
        "every surviving entry once"
    );
    assert!(
        seen_old.iter().zip(&expect_order).all(|(a, b)| *a == b),
        "creation order"
    );
    let news = seen.iter().filter(|n| n.starts_with("new")).count();
    assert_eq!(
        news, page_no,
        "entries added during the listing come after, in order"
    );
    // A cookie from beyond the directory's slots is bad.
    assert_eq!(
        fx.s.readdir(fx.fs, d.ino, u64::MAX / 2, 10, false)
            .map(|_| ()),
        Err(FsError::BadCookie)
    );
    // Cookies 1 and 2 ("." and ".." in the front end) list from the start.
    let p = fx.s.readdir(fx.fs, d.ino, 2, 1, false).expect("readdir");
    assert_eq!(p.entries[0].name, b"f000000".to_vec());
    assert_eq!(fx.names(ROOT, 10), vec!["big".to_string()]);
    fx.assert_consistent();
}

fn durability_ops(fx: &mut Fx<'_>) {
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"abc").expect("write");
    let r = fx.commit(f.ino).expect("commit");
    assert_eq!(r.obj.expect("obj").size, 3);
    fx.commit(ROOT).expect("commit a directory");
    assert_eq!(fx.commit(Ino(999)).map(|_| ()), Err(FsError::Stale));
    fx.s.sync().expect("sync");
    fx.assert_consistent();
}
