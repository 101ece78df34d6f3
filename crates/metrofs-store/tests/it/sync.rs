//! Resync steps (`Store::apply_sync`) and the reads resync and verify use: one test per rule,
//! WRITE's times commuting, and a property: a store that saw a prefix of another's ops (and
//! some of its own) becomes the same by a naive full resync.

use bytes::Bytes;
use metrofs_core::{
    Attr, FileType, FsError, FsId, FsOp, Gen, Ino, OpBody, Stability, SyncOp, Time, ROOT_INO,
};
use metrofs_store::{Store, SEGMENTS_MAX_BYTES};
use proptest::prelude::*;

use crate::fx::{Fx, ROOT, T0};
use crate::props;

const MIB: u64 = 1 << 20;

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    (d, s)
}

fn sync_op(fx: &Fx<'_>, op: SyncOp) -> Result<(), FsError> {
    fx.s.apply_sync(fx.fs, &op)
}

fn put(fx: &Fx<'_>, attr: &Attr, symlink: Option<&[u8]>) {
    sync_op(
        fx,
        SyncOp::PutInode {
            attr: attr.clone(),
            symlink: symlink.map(<[u8]>::to_vec),
        },
    )
    .expect("PutInode");
}

fn link(fx: &Fx<'_>, dir: Ino, name: &str, ino: Ino) {
    sync_op(
        fx,
        SyncOp::Link {
            dir,
            name: name.into(),
            ino,
        },
    )
    .expect("Link");
}

fn unlink(fx: &Fx<'_>, dir: Ino, name: &str) {
    sync_op(
        fx,
        SyncOp::Unlink {
            dir,
            name: name.into(),
        },
    )
    .expect("Unlink");
}

fn file_attr(ino: u64, gen: u64, size: u64) -> Attr {
    Attr {
        ino: Ino(ino),
        gen: Gen(gen),
        ftype: FileType::Regular,
        mode: 0o640,
        nlink: 7,
        uid: 11,
        gid: 12,
        size,
        used: 12345,
        atime: Time::new(T0 - 30, 1),
        mtime: Time::new(T0 - 20, 2),
        ctime: Time::new(T0 - 10, 3),
    }
}

fn problems_about(fx: &Fx<'_>, what: &str) -> usize {
    fx.s.check(fx.fs)
        .iter()
        .filter(|p| p.contains(what))
        .count()
}

#[test]
fn put_inode_makes_an_inode_that_waits_for_its_name() {
    let (_d, s) = store();
    let fx = Fx::new(&s, "new");
    let root_before = fx.getattr(ROOT).expect("root");
    let a = file_attr(10, 4, 5000);
    put(&fx, &a, None);
    let got = fx.getattr(Ino(10)).expect("made");
    let want = Attr {
        nlink: 0,
        used: 0,
        ..a.clone()
    };
    assert_eq!(got, want, "attributes exactly as given, nlink from entries");
    assert_eq!(s.inodes(fx.fs).expect("inodes"), vec![ROOT, Ino(10)]);
    assert_eq!(s.inode(fx.fs, Ino(10)).expect("inode"), Some((want, None)));
    assert_eq!(s.inode(fx.fs, Ino(11)).expect("inode"), None);
    // Numbers below stay never-used; the never-used mark moves above it.
    assert_eq!(s.next_inode(fx.fs).expect("next").ino, Ino(11));
    // No name yet: an orphan, and check() says so.
    assert_eq!(fx.s.check(fx.fs).len(), 1, "{:?}", fx.s.check(fx.fs));
    assert_eq!(problems_about(&fx, "orphan"), 1);
    link(&fx, ROOT, "f", Ino(10));
    assert_eq!(fx.getattr(Ino(10)).expect("attr").nlink, 1);
    assert_eq!(fx.lookup(ROOT, "f").expect("named").ino, Ino(10));
    link(&fx, ROOT, "f", Ino(10));
    link(&fx, ROOT, "g", Ino(10));
    let got = fx.getattr(Ino(10)).expect("attr");
    assert_eq!(
        (got.nlink, got.mtime, got.ctime),
        (2, a.mtime, a.ctime),
        "Link sets no time"
    );
    let root = fx.getattr(ROOT).expect("root");
    assert_eq!(
        (root.mtime, root.ctime),
        (root_before.mtime, root_before.ctime)
    );
    assert_eq!(fx.read_all(Ino(10)), vec![0u8; 5000]);
    fx.assert_consistent();
    // A directory and a symlink.
    let mut d = file_attr(20, 1, 4096);
    d.ftype = FileType::Directory;
    put(&fx, &d, None);
    let mut l = file_attr(21, 2, 3);
    l.ftype = FileType::Symlink;
    put(&fx, &l, Some(b"a/b"));
    link(&fx, ROOT, "d", Ino(20));
    link(&fx, Ino(20), "l", Ino(21));
    assert_eq!(s.readlink(fx.fs, Ino(21)).expect("readlink").0, b"a/b");
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 3);
    assert_eq!(fx.lookup(Ino(20), "..").expect("parent").ino, ROOT);
    assert_eq!(
        s.inode(fx.fs, Ino(21)).expect("inode").and_then(|i| i.1),
        Some(b"a/b".to_vec())
    );
    fx.assert_consistent();
    // Bad input.
    let bad = |attr: Attr, symlink: Option<Vec<u8>>| {
        s.apply_sync(fx.fs, &SyncOp::PutInode { attr, symlink })
    };
    assert_eq!(bad(file_attr(30, 0, 1), None), Err(FsError::Inval), "gen 0");
    assert_eq!(bad(file_attr(0, 1, 1), None), Err(FsError::Inval), "ino 0");
    assert_eq!(
        bad(file_attr(30, 1, 1), Some(b"x".to_vec())),
        Err(FsError::Inval)
    );
    assert_eq!(
        bad(l.clone(), None),
        Err(FsError::Inval),
        "symlink without target"
    );
    assert_eq!(
        bad(l, Some(b"abcd".to_vec())),
        Err(FsError::Inval),
        "size is not the target's"
    );
    assert_eq!(
        bad(file_attr(1, 1, 1), None),
        Err(FsError::Inval),
        "root as a file"
    );
    assert_eq!(
        s.apply_sync(
            FsId(12345),
            &SyncOp::PutInode {
                attr: file_attr(30, 1, 1),
                symlink: None
            }
        ),
        Err(FsError::NoFs)
    );
    assert_eq!(s.failed(), None, "bad input does not stop the store");
}

#[test]
fn put_inode_of_the_same_generation_overwrites_and_cuts_or_extends() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "same");
    let f = fx.create(ROOT, "f").expect("create");
    fx.link(f.ino, ROOT, "f2").expect("link");
    fx.write(f.ino, 0, &[b'a'; 10_000]).expect("write");
    let mut a = fx.getattr(f.ino).expect("attr");
    a.size = 3000;
    a.mode = 0o600;
    a.uid = 99;
    a.mtime = Time::new(T0 + 500, 0);
    put(&fx, &a, None);
    let got = fx.getattr(f.ino).expect("attr");
    assert_eq!(
        (got.size, got.mode, got.uid, got.mtime, got.nlink),
        (3000, 0o600, 99, a.mtime, 2)
    );
    assert_eq!(fx.read_all(f.ino), vec![b'a'; 3000]);
    fx.assert_consistent(); // the data file was cut: never longer than the size
    a.size = 8000;
    put(&fx, &a, None);
    let mut want = vec![b'a'; 3000];
    want.resize(8000, 0);
    assert_eq!(fx.read_all(f.ino), want, "an extension reads as zeros");
    // The root: attributes only; its entries stay.
    let mut r = fx.getattr(ROOT).expect("root");
    r.mtime = Time::new(1, 1);
    r.mode = 0o700;
    put(&fx, &r, None);
    let got = fx.getattr(ROOT).expect("root");
    assert_eq!((got.mtime, got.mode), (r.mtime, 0o700));
    assert_eq!(fx.names(ROOT, 10), ["f", "f2"]);
    fx.assert_consistent();
}

#[test]
fn put_inode_of_another_generation_replaces_the_inode() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "other");
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"old bytes").expect("write");
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let x = fx.create(d.ino, "x").expect("create");
    let sub = fx.mkdir(d.ino, "sub").expect("mkdir");
    let y = fx.create(sub.ino, "y").expect("create");
    fx.write(y.ino, 0, b"y data").expect("write");
    // A file of a new generation: the old data goes, the name stays.
    put(&fx, &file_attr(f.ino.0, f.gen.0 + 1, 10), None);
    let got = fx.getattr(f.ino).expect("attr");
    assert_eq!((got.gen, got.nlink, got.size), (Gen(f.gen.0 + 1), 1, 10));
    assert_eq!(fx.read_all(f.ino), vec![0u8; 10]);
    assert_eq!(fx.lookup(ROOT, "f").expect("named").ino, f.ino);
    // A directory of a new generation: its entries lose their names (orphans until the
    // links phase is over), its own name stays.
    let mut nd = fx.getattr(d.ino).expect("attr");
    nd.gen = Gen(d.gen.0 + 5);
    put(&fx, &nd, None);
    assert_eq!(s.entries(fx.fs, d.ino).expect("entries"), vec![]);
    assert_eq!(fx.lookup(ROOT, "d").expect("named").ino, d.ino);
    assert_eq!(fx.getattr(d.ino).expect("attr").nlink, 2);
    assert_eq!(fx.getattr(x.ino).expect("orphan").nlink, 0);
    assert!(problems_about(&fx, "orphan") == 1 && problems_about(&fx, "named by 0") == 1);
    assert_eq!(
        s.free_orphans(fx.fs).expect("free"),
        2,
        "x and sub (y with sub)"
    );
    for gone in [x.ino, sub.ino, y.ino] {
        assert_eq!(fx.getattr(gone), Err(FsError::Stale));
    }
    assert_eq!(s.free_orphans(fx.fs).expect("free"), 0);
    s.sync().expect("sync");
    fx.assert_consistent(); // trash of removed files gone once durable
}

#[test]
fn put_inode_of_another_type_keeps_the_name() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "type");
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let inner = fx.create(d.ino, "inner").expect("create");
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 3);
    // Directory -> file.
    put(&fx, &file_attr(d.ino.0, d.gen.0, 4), None);
    let got = fx.getattr(d.ino).expect("attr");
    assert_eq!((got.ftype, got.nlink), (FileType::Regular, 1));
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 2);
    assert_eq!(s.free_orphans(fx.fs).expect("free"), 1);
    assert_eq!(fx.getattr(inner.ino), Err(FsError::Stale));
    fx.assert_consistent();
    // File with two names -> directory: a directory has one name, the first.
    let f = fx.create(ROOT, "f").expect("create");
    fx.link(f.ino, ROOT, "g").expect("link");
    fx.write(f.ino, 0, b"data").expect("write");
    let mut a = fx.getattr(f.ino).expect("attr");
    a.ftype = FileType::Directory;
    a.size = 4096;
    put(&fx, &a, None);
    assert_eq!(
        fx.lookup(ROOT, "f").expect("named").ftype,
        FileType::Directory
    );
    assert_eq!(fx.lookup(ROOT, "g"), Err(FsError::NoEnt));
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 3);
    s.sync().expect("sync");
    fx.assert_consistent();
}

#[test]
fn link_replaces_an_entry_and_moves_a_directory() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "link");
    let a = fx.create(ROOT, "a").expect("create");
    let b = fx.create(ROOT, "b").expect("create");
    fx.write(a.ino, 0, b"aaa").expect("write");
    let d1 = fx.mkdir(ROOT, "d1").expect("mkdir");
    let d2 = fx.mkdir(ROOT, "d2").expect("mkdir");
    let sub = fx.mkdir(d1.ino, "sub").expect("mkdir");
    let deep = fx.create(sub.ino, "deep").expect("create");
    link(&fx, ROOT, "a", b.ino);
    assert_eq!(fx.lookup(ROOT, "a").expect("a").ino, b.ino);
    assert_eq!(fx.getattr(b.ino).expect("b").nlink, 2);
    assert_eq!(fx.getattr(a.ino).expect("kept as an orphan").nlink, 0);
    // A directory named elsewhere moves.
    link(&fx, d2.ino, "moved", sub.ino);
    assert_eq!(fx.names(d1.ino, 10), Vec::<String>::new());
    assert_eq!(fx.names(d2.ino, 10), ["moved"]);
    assert_eq!(fx.getattr(d1.ino).expect("d1").nlink, 2);
    assert_eq!(fx.getattr(d2.ino).expect("d2").nlink, 3);
    assert_eq!(fx.lookup(sub.ino, "..").expect("parent").ino, d2.ino);
    assert_eq!(fx.lookup(sub.ino, "deep").expect("deep").ino, deep.ino);
    // The first Unlink frees what the links left unnamed, then unlinks.
    unlink(&fx, ROOT, "b");
    assert_eq!(fx.getattr(a.ino), Err(FsError::Stale));
    assert_eq!(fx.getattr(b.ino).expect("b").nlink, 1);
    s.sync().expect("sync");
    fx.assert_consistent();
    // Bad input.
    let bad = |dir: Ino, name: &str, ino: Ino| {
        s.apply_sync(
            fx.fs,
            &SyncOp::Link {
                dir,
                name: name.into(),
                ino,
            },
        )
    };
    assert_eq!(bad(ROOT, "x", Ino(999)), Err(FsError::Stale));
    assert_eq!(bad(Ino(999), "x", b.ino), Err(FsError::Stale));
    assert_eq!(bad(b.ino, "x", b.ino), Err(FsError::Inval));
    assert_eq!(bad(b.ino, "x", d1.ino), Err(FsError::NotDir));
    assert_eq!(bad(ROOT, "x", ROOT), Err(FsError::Inval));
    assert_eq!(bad(ROOT, "a/b", b.ino), Err(FsError::Inval));
    assert_eq!(bad(d1.ino, "self", d1.ino), Err(FsError::Inval));
}

#[test]
fn swapped_names_survive_the_links_phase() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "swap");
    let x = fx.create(ROOT, "a").expect("create");
    let y = fx.create(ROOT, "b").expect("create");
    fx.write(x.ino, 0, b"xxxx").expect("write");
    fx.write(y.ino, 0, b"yy").expect("write");
    let p = fx.mkdir(ROOT, "p").expect("mkdir");
    let q = fx.mkdir(ROOT, "q").expect("mkdir");
    let in_p = fx.create(p.ino, "in_p").expect("create");
    // Files swap names, directories swap names.
    link(&fx, ROOT, "a", y.ino);
    link(&fx, ROOT, "b", x.ino);
    link(&fx, ROOT, "p", q.ino);
    link(&fx, ROOT, "q", p.ino);
    assert_eq!(s.free_orphans(fx.fs).expect("free"), 0);
    assert_eq!(fx.lookup(ROOT, "a").expect("a").ino, y.ino);
    assert_eq!(fx.read_all(x.ino), b"xxxx");
    assert_eq!(fx.lookup(ROOT, "q").expect("q").ino, p.ino);
    assert_eq!(fx.lookup(p.ino, "in_p").expect("kept").ino, in_p.ino);
    assert_eq!(fx.getattr(ROOT).expect("root").nlink, 4);
    s.sync().expect("sync");
    fx.assert_consistent();
}

#[test]
fn unlink_frees_what_only_it_names() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "unlink");
    let d = fx.mkdir(ROOT, "d").expect("mkdir");
    let e = fx.mkdir(d.ino, "e").expect("mkdir");
    let f = fx.create(e.ino, "f").expect("create");
    fx.write(f.ino, 0, b"data").expect("write");
    let g = fx.create(d.ino, "g").expect("create");
    fx.link(g.ino, ROOT, "g2").expect("link");
    let g = fx.getattr(g.ino).expect("attr");
    let root_before = fx.getattr(ROOT).expect("root");
    s.sync().expect("sync");
    unlink(&fx, ROOT, "d");
    for gone in [d.ino, e.ino, f.ino] {
        assert_eq!(fx.getattr(gone), Err(FsError::Stale));
    }
    let g_now = fx.getattr(g.ino).expect("g has another name");
    assert_eq!((g_now.nlink, g_now.ctime), (1, g.ctime), "no time changes");
    let root = fx.getattr(ROOT).expect("root");
    assert_eq!((root.nlink, root.mtime), (2, root_before.mtime));
    // Freed numbers are free, with their generations.
    let n = s.next_inode(fx.fs).expect("next");
    assert_eq!((n.ino, n.gen), (d.ino.min(e.ino).min(f.ino), Gen(2)));
    s.sync().expect("sync");
    fx.assert_consistent();
    // Absent things are no error; bad names and non-directories are.
    unlink(&fx, ROOT, "nothing");
    unlink(&fx, Ino(999), "x");
    let u = |dir: Ino, name: &str| {
        s.apply_sync(
            fx.fs,
            &SyncOp::Unlink {
                dir,
                name: name.into(),
            },
        )
    };
    assert_eq!(u(g.ino, "x"), Err(FsError::NotDir));
    assert_eq!(u(ROOT, ".."), Err(FsError::Inval));
    fx.assert_consistent();
}

#[test]
fn put_data_makes_holes_and_segments() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "data");
    let f = fx.create(ROOT, "f").expect("create");
    for i in 0..3 {
        fx.write(f.ino, i * MIB, &vec![0xab; MIB as usize])
            .expect("write");
    }
    s.sync().expect("sync");
    let before = fx.getattr(f.ino).expect("attr");
    let segments = vec![
        (MIB + 100, Bytes::from_static(b"hello")),
        (MIB + 700_000, Bytes::from_static(b"world")),
    ];
    sync_op(
        &fx,
        SyncOp::PutData {
            ino: f.ino,
            offset: MIB,
            len: MIB,
            segments,
        },
    )
    .expect("PutData");
    let mut want = vec![0xab; 3 * MIB as usize];
    want[MIB as usize..2 * MIB as usize].fill(0);
    want[(MIB + 100) as usize..][..5].copy_from_slice(b"hello");
    want[(MIB + 700_000) as usize..][..5].copy_from_slice(b"world");
    assert!(fx.read_all(f.ino) == want, "bytes differ");
    let after = fx.getattr(f.ino).expect("attr");
    assert_eq!(
        (after.size, after.mtime, after.ctime),
        (before.size, before.mtime, before.ctime)
    );
    assert!(
        after.used < before.used - MIB / 2,
        "holes punched: {} vs {}",
        after.used,
        before.used
    );
    // The source's view of the same range: only where data is, and the bytes read.
    let segs = s.read_segments(fx.fs, f.ino, MIB, MIB).expect("segments");
    assert!(
        segs.len() >= 2 && segs.iter().map(|s| s.1.len()).sum::<usize>() < 64 << 10,
        "{segs:?}"
    );
    for (o, b) in &segs {
        assert_eq!(&b[..], &want[*o as usize..][..b.len()]);
    }
    // Past the size: clipped, the size stays.
    let size = after.size;
    sync_op(
        &fx,
        SyncOp::PutData {
            ino: f.ino,
            offset: size - 2,
            len: 10,
            segments: vec![(size - 2, Bytes::from_static(b"xyzw"))],
        },
    )
    .expect("PutData");
    assert_eq!(fx.getattr(f.ino).expect("attr").size, size);
    assert_eq!(
        &fx.read_all(f.ino)[size as usize - 3..],
        &[0xab, b'x', b'y']
    );
    // A file without data and a hole to make: no data file appears.
    let g = fx.create(ROOT, "g").expect("create");
    fx.truncate(g.ino, 5000).expect("size");
    sync_op(
        &fx,
        SyncOp::PutData {
            ino: g.ino,
            offset: 0,
            len: 5000,
            segments: vec![],
        },
    )
    .expect("PutData");
    assert_eq!(fx.getattr(g.ino).expect("attr").used, 0);
    // Bad input.
    let pd = |ino: Ino, offset: u64, len: u64, segments: Vec<(u64, Bytes)>| {
        s.apply_sync(
            fx.fs,
            &SyncOp::PutData {
                ino,
                offset,
                len,
                segments,
            },
        )
    };
    let b = |o: u64, d: &'static [u8]| (o, Bytes::from_static(d));
    assert_eq!(
        pd(f.ino, 0, 100, vec![b(10, b"abc"), b(11, b"x")]),
        Err(FsError::Inval),
        "overlap"
    );
    assert_eq!(
        pd(f.ino, 0, 100, vec![b(20, b"a"), b(10, b"b")]),
        Err(FsError::Inval),
        "unsorted"
    );
    assert_eq!(
        pd(f.ino, 0, 100, vec![b(99, b"ab")]),
        Err(FsError::Inval),
        "outside"
    );
    assert_eq!(
        pd(f.ino, 10, 100, vec![b(5, b"ab")]),
        Err(FsError::Inval),
        "before"
    );
    assert_eq!(pd(ROOT, 0, 1, vec![]), Err(FsError::IsDir));
    assert_eq!(pd(Ino(999), 0, 1, vec![]), Err(FsError::Stale));
    assert_eq!(pd(f.ino, u64::MAX - 1, 10, vec![]), Err(FsError::FBig));
    assert_eq!(s.failed(), None);
    s.sync().expect("sync");
    fx.assert_consistent();
}

#[test]
fn read_segments_leaves_holes_out() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "segs");
    let f = fx.create(ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"abc").expect("write");
    fx.write(f.ino, 5 * MIB, b"xyz").expect("write");
    let all = fx.read_all(f.ino);
    let segs = s
        .read_segments(fx.fs, f.ino, 0, u64::MAX)
        .expect("segments");
    assert_eq!(
        segs.len(),
        2,
        "{:?}",
        segs.iter().map(|s| (s.0, s.1.len())).collect::<Vec<_>>()
    );
    let mut rebuilt = vec![0u8; all.len()];
    for (o, b) in &segs {
        rebuilt[*o as usize..][..b.len()].copy_from_slice(b);
    }
    assert!(rebuilt == all);
    assert!(segs.iter().map(|s| s.1.len()).sum::<usize>() < 256 << 10);
    assert_eq!(
        segs[1].0 + segs[1].1.len() as u64,
        5 * MIB + 3,
        "clipped to the size"
    );
    assert_eq!(
        s.read_segments(fx.fs, f.ino, MIB, MIB).expect("hole"),
        vec![]
    );
    assert_eq!(
        s.read_segments(fx.fs, f.ino, 6 * MIB, 10)
            .expect("past the end"),
        vec![]
    );
    let within = s.read_segments(fx.fs, f.ino, 1, 1).expect("one byte");
    assert_eq!(within, vec![(1, Bytes::from_static(b"b"))]);
    let big = fx.create(ROOT, "big").expect("create");
    fx.truncate(big.ino, SEGMENTS_MAX_BYTES + 1).expect("size");
    assert_eq!(
        s.read_segments(fx.fs, big.ino, 0, u64::MAX),
        Err(FsError::Inval)
    );
    assert_eq!(
        s.read_segments(fx.fs, big.ino, 0, SEGMENTS_MAX_BYTES)
            .expect("at the limit"),
        vec![]
    );
    assert_eq!(s.read_segments(fx.fs, ROOT, 0, 1), Err(FsError::IsDir));
    assert_eq!(s.read_segments(fx.fs, Ino(999), 0, 1), Err(FsError::Stale));
}

#[test]
fn digests_see_bytes_not_holes() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "digests");
    let f = fx.create(ROOT, "holes").expect("create");
    fx.write(f.ino, 0, b"abc").expect("write");
    fx.write(f.ino, 5 * MIB, b"xyz").expect("write");
    let g = fx.create(ROOT, "zeros").expect("create");
    fx.write(g.ino, 0, &vec![0u8; 5 * MIB as usize])
        .expect("write");
    fx.write(g.ino, 0, b"abc").expect("write");
    fx.write(g.ino, 5 * MIB, b"xyz").expect("write");
    let df = s.digests(fx.fs, f.ino, MIB).expect("digests");
    assert_eq!(df.len(), 6);
    assert_eq!(df, s.digests(fx.fs, g.ino, MIB).expect("digests"));
    // Chunks of zeros of one length hash alike; the data chunks differ.
    assert_eq!(df[1], df[2]);
    assert_ne!(df[0], df[1]);
    fx.write(g.ino, 3 * MIB + 17, b"!").expect("write");
    let dg = s.digests(fx.fs, g.ino, MIB).expect("digests");
    let differ: Vec<usize> = (0..6).filter(|i| df[*i] != dg[*i]).collect();
    assert_eq!(differ, [3]);
    // Chunk sizes that are not the read grid's multiple, and a file with no data file.
    assert_eq!(s.digests(fx.fs, f.ino, 100_000).expect("digests").len(), 53);
    let e = fx.create(ROOT, "empty").expect("create");
    assert_eq!(
        s.digests(fx.fs, e.ino, MIB).expect("digests"),
        Vec::<u64>::new()
    );
    fx.truncate(e.ino, 2 * MIB).expect("size");
    let de = s.digests(fx.fs, e.ino, MIB).expect("digests");
    assert_eq!(de, vec![df[1], df[1]]);
    assert_eq!(s.digests(fx.fs, ROOT, MIB).expect("dir"), Vec::<u64>::new());
    assert_eq!(s.digests(fx.fs, f.ino, 0), Err(FsError::Inval));
    assert_eq!(s.digests(fx.fs, Ino(999), MIB), Err(FsError::Stale));
    let huge = fx.create(ROOT, "huge").expect("create");
    fx.truncate(huge.ino, 1 << 30).expect("size");
    assert_eq!(
        s.digests(fx.fs, huge.ino, 1),
        Err(FsError::Inval),
        "too many chunks"
    );
    assert_eq!(
        s.digests(fx.fs, huge.ino, 1 << 28).expect("digests").len(),
        4
    );
}

#[test]
fn entries_and_inodes_list_what_is() {
    let (_d, s) = store();
    let mut fx = Fx::new(&s, "list");
    let b = fx.create(ROOT, "b").expect("create");
    let a = fx.create(ROOT, "a").expect("create");
    let c = fx.mkdir(ROOT, "c").expect("mkdir");
    let l = fx.symlink(c.ino, "l", b"target").expect("symlink");
    fx.remove(ROOT, "b").expect("remove");
    let z = fx.create(ROOT, "z").expect("create");
    assert_eq!(
        s.entries(fx.fs, ROOT).expect("entries"),
        vec![
            (b"a".to_vec(), a.ino),
            (b"c".to_vec(), c.ino),
            (b"z".to_vec(), z.ino)
        ]
    );
    assert_eq!(
        s.entries(fx.fs, c.ino).expect("entries"),
        vec![(b"l".to_vec(), l.ino)]
    );
    assert_eq!(s.entries(fx.fs, a.ino), Err(FsError::NotDir));
    assert_eq!(z.ino, b.ino, "the freed number is reused");
    assert_eq!(s.entries(fx.fs, Ino(999)), Err(FsError::Stale));
    let mut want = vec![ROOT, a.ino, c.ino, l.ino, z.ino];
    want.sort();
    assert_eq!(s.inodes(fx.fs).expect("inodes"), want);
    let (attr, target) = s.inode(fx.fs, l.ino).expect("inode").expect("exists");
    assert_eq!(
        (attr, target),
        (fx.getattr(l.ino).expect("attr"), Some(b"target".to_vec()))
    );
    assert_eq!(s.inode(fx.fs, Ino(999)).expect("inode"), None);
    assert_eq!(s.inodes(FsId(77)), Err(FsError::NoFs));
}

/// Two writes to disjoint ranges of one file commute: the pair applies them concurrently,
/// possibly in different orders on the two sides.
#[test]
fn disjoint_writes_commute() {
    let (_da, sa) = store();
    let (_db, sb) = store();
    let mut a = Fx::new(&sa, "w");
    let mut b = Fx::new(&sb, "w");
    let f = a.create(ROOT, "f").expect("create");
    assert_eq!(b.create(ROOT, "f").expect("create"), f);
    let w = |offset: u64, data: &'static [u8], sec: u32| FsOp {
        fs: a.fs,
        time: Time::new(T0 + sec, 0),
        new_inode: None,
        body: OpBody::Write {
            ino: f.ino,
            offset,
            data: Bytes::from_static(data),
            stable: Stability::Unstable,
        },
    };
    let (w1, w2) = (w(0, b"first", 100), w(8192, b"second", 200));
    sa.apply(&w1).expect("w1");
    sa.apply(&w2).expect("w2");
    sb.apply(&w2).expect("w2");
    sb.apply(&w1).expect("w1");
    let (ia, ib) = (
        sa.image(a.fs).expect("image"),
        sb.image(b.fs).expect("image"),
    );
    assert!(ia == ib, "{:#?}", ia.diff(&ib, 5));
    let got = sb.getattr(b.fs, f.ino).expect("attr");
    assert_eq!((got.size, got.mtime, got.ctime), (8198, w2.time, w2.time));
    // An older write changes no time back; a newer one moves them.
    b.clock = T0;
    b.write(f.ino, 0, b"x").expect("write");
    assert_eq!(sb.getattr(b.fs, f.ino).expect("attr").mtime, w2.time);
    a.clock = T0 + 300;
    a.write(f.ino, 0, b"x").expect("write");
    assert_eq!(
        sa.getattr(a.fs, f.ino).expect("attr").mtime,
        Time::new(T0 + 301, 7)
    );
}

/// Sync steps go through the same machinery as ops: after `sync()` and a close they are all
/// there; after a reopen the store goes on.
#[test]
fn sync_steps_are_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fs, image) = {
        let s = Store::open(dir.path()).expect("open");
        let mut fx = Fx::new(&s, "dur");
        let old = fx.create(ROOT, "old").expect("create");
        fx.write(old.ino, 0, b"old data").expect("write");
        s.sync().expect("sync");
        put(&fx, &file_attr(50, 3, 10_000), None);
        link(&fx, ROOT, "new", Ino(50));
        sync_op(
            &fx,
            SyncOp::PutData {
                ino: Ino(50),
                offset: 0,
                len: 10_000,
                segments: vec![(4096, Bytes::from_static(b"synced"))],
            },
        )
        .expect("PutData");
        unlink(&fx, ROOT, "old");
        s.sync().expect("sync");
        fx.assert_consistent();
        (fx.fs, s.image(fx.fs).expect("image"))
    };
    let s = Store::open(dir.path()).expect("reopen");
    assert_eq!(s.image(fs).expect("image"), image);
    let fx = Fx::existing(&s, fs);
    assert_eq!(&fx.read_all(Ino(50))[4096..4102], b"synced");
    fx.assert_consistent();
}

// ---- what a failover needs: slots, the allocator, verifiers ----

/// The names and cookies of `dir` after `cookie`.
fn listing(s: &Store, fs: FsId, dir: Ino, cookie: u64) -> Vec<(String, u64, Ino)> {
    s.readdir(fs, dir, cookie, 1000, false)
        .expect("readdir")
        .entries
        .into_iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.name).into_owned(),
                e.cookie,
                e.ino,
            )
        })
        .collect()
}

/// `Entries` copies each entry's slot and the next slot: a listing started on the source
/// continues on the target with the same cookie, and the next entry made on both gets the same
/// cookie. The target's own entries, in other slots, give way.
#[test]
fn entries_carry_slots_so_a_listing_continues_on_the_other_side() {
    let (_da, sa) = store();
    let (_db, sb) = store();
    let mut a = Fx::new(&sa, "slots");
    let mut b = Fx::new(&sb, "slots");
    let fs = a.fs;
    let d = a.mkdir(ROOT, "d").expect("mkdir");
    for i in 0..12 {
        a.create(d.ino, &format!("f{i}")).expect("create");
    }
    for i in [1, 4, 5, 9] {
        a.remove(d.ino, &format!("f{i}")).expect("remove");
    }
    a.rename(d.ino, "f2", d.ino, "r2").expect("rename");
    a.rename(d.ino, "f3", ROOT, "up").expect("rename");
    // The target went its own way: the same directory, other entries in other slots.
    let bd = b.mkdir(ROOT, "d").expect("mkdir");
    assert_eq!(bd.ino, d.ino);
    for n in ["f7", "zz", "f0"] {
        b.create(bd.ino, n).expect("create");
    }
    resync(&sa, &sb, fs).expect("resync");
    let (ia, ib) = (sa.image(fs).expect("image"), sb.image(fs).expect("image"));
    assert!(ia == ib, "{:#?}", ia.diff(&ib, 10));
    assert!(sb.check(fs).is_empty(), "{:?}", sb.check(fs));
    // A listing of the source, continued on the target after a failover.
    let first = sa.readdir(fs, d.ino, 0, 3, false).expect("readdir");
    let cookie = first.entries.last().expect("an entry").cookie;
    assert_eq!(
        listing(&sb, fs, d.ino, cookie),
        listing(&sa, fs, d.ino, cookie)
    );
    assert_eq!(listing(&sb, fs, d.ino, 0), listing(&sa, fs, d.ino, 0));
    // The next entry gets the same cookie on both.
    let op = a.op_for(OpBody::Create {
        dir: d.ino,
        name: b"new".to_vec(),
        how: metrofs_core::CreateHow::Guarded(metrofs_core::SetAttr::default()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    });
    sa.apply(&op).expect("create on a");
    sb.apply(&op).expect("create on b");
    assert_eq!(
        listing(&sb, fs, d.ino, cookie),
        listing(&sa, fs, d.ino, cookie)
    );
    assert!(sa.image(fs).expect("image") == sb.image(fs).expect("image"));
}

/// `sync_dir` cuts a large directory into ranges, highest first, which together cover every
/// slot; applied in that order they make the target the same. Out of order, or with bad
/// input, they are refused and change nothing.
#[test]
fn entries_travel_in_ranges_and_bad_ones_are_refused() {
    let (_da, sa) = store();
    let (_db, sb) = store();
    let mut a = Fx::new(&sa, "ranges");
    let fs = a.fs;
    Fx::new(&sb, "ranges");
    for i in 0..40 {
        a.create(ROOT, &format!("a-longer-name-{i:03}"))
            .expect("create");
    }
    for i in (0..40).step_by(3) {
        a.remove(ROOT, &format!("a-longer-name-{i:03}"))
            .expect("remove");
    }
    let ops = sa.sync_dir(fs, ROOT, 400).expect("sync_dir");
    assert!(ops.len() > 3, "{} ranges", ops.len());
    let mut covered = Vec::new();
    for op in &ops {
        let SyncOp::Entries {
            from, to, entries, ..
        } = op
        else {
            panic!("{op:?}")
        };
        assert!(metrofs_store::sync_op_bytes(op) <= 400);
        assert!(entries.iter().all(|e| e.0 >= *from && e.0 < *to));
        covered.push((*from, *to));
    }
    covered.reverse();
    assert_eq!(covered[0].0, 0);
    assert_eq!(covered.last().expect("last").1, u64::MAX);
    assert!(covered.windows(2).all(|w| w[0].1 == w[1].0), "{covered:?}");
    for ino in sa.inodes(fs).expect("inodes") {
        for op in sa.sync_inode(fs, ino).expect("inode") {
            sb.apply_sync(fs, &op).expect("inode step");
        }
    }
    // Slots past the next slot, unsorted slots, a name twice, slots of "." and "..", the
    // root named, a bad name: refused, and nothing changes.
    let bad = |entries: Vec<(u64, &str, Ino)>, next_slot: u64| SyncOp::Entries {
        dir: ROOT,
        next_slot,
        from: 0,
        to: u64::MAX,
        entries: entries
            .into_iter()
            .map(|(s, n, i)| (s, n.as_bytes().to_vec(), i))
            .collect(),
    };
    let before = sb.image(fs).expect("image");
    let f = Ino(2);
    for op in [
        bad(vec![(5, "x", f)], 5),
        bad(vec![(6, "x", f), (5, "y", f)], 9),
        bad(vec![(5, "x", f), (6, "x", f)], 9),
        bad(vec![(2, "x", f)], 9),
        bad(vec![(5, "x", ROOT)], 9),
        bad(vec![(5, "a/b", f)], 9),
    ] {
        assert_eq!(sb.apply_sync(fs, &op), Err(FsError::Inval), "{op:?}");
    }
    assert_eq!(
        sb.apply_sync(fs, &bad(vec![(5, "x", Ino(9999))], 9)),
        Err(FsError::Stale),
        "an entry naming an inode the target lacks"
    );
    assert!(
        sb.image(fs).expect("image") == before,
        "refused steps changed nothing"
    );
    assert_eq!(sb.failed(), None);
    for op in &ops {
        sb.apply_sync(fs, op).expect("a range");
    }
    // Out of order: a lower range whose next slot lies below slots the target holds (in a
    // range above it) is refused.
    let SyncOp::Entries { dir, entries, .. } = &ops[0] else {
        unreachable!()
    };
    let top = entries.last().expect("an entry in the top range").0;
    let lower = SyncOp::Entries {
        dir: *dir,
        next_slot: top,
        from: 0,
        to: top,
        entries: Vec::new(),
    };
    assert_eq!(
        sb.apply_sync(fs, &lower),
        Err(FsError::Inval),
        "a next slot below a slot in use"
    );
    for op in sa.sync_allocator(fs, 200).expect("allocator") {
        sb.apply_sync(fs, &op).expect("allocator step");
    }
    let (ia, ib) = (sa.image(fs).expect("image"), sb.image(fs).expect("image"));
    assert!(ia == ib, "{:#?}", ia.diff(&ib, 10));
}

/// `Allocator` copies the free numbers with their generations and the never-used mark, so
/// the next creating op gets the same (ino, gen) on both sides. It refuses a number that is
/// live on the target but free on the source.
#[test]
fn allocator_copies_free_numbers_and_the_never_used_mark() {
    let (_da, sa) = store();
    let (_db, sb) = store();
    let mut a = Fx::new(&sa, "alloc");
    let mut b = Fx::new(&sb, "alloc");
    let fs = a.fs;
    let mut made = Vec::new();
    for i in 0..30 {
        made.push(a.create(ROOT, &format!("f{i}")).expect("create"));
    }
    for i in (0..30).step_by(2) {
        a.remove(ROOT, &format!("f{i}")).expect("remove");
    }
    // Reuse some numbers: their generation grows.
    for i in 0..4 {
        a.create(ROOT, &format!("again{i}")).expect("create");
        a.remove(ROOT, &format!("again{i}")).expect("remove");
    }
    // b: something else entirely (numbers a freed, still live here but unnamed after Entries).
    for i in 0..40 {
        b.create(ROOT, &format!("b{i}")).expect("create");
    }
    resync(&sa, &sb, fs).expect("resync");
    let (ia, ib) = (sa.image(fs).expect("image"), sb.image(fs).expect("image"));
    assert!(ia == ib, "{:#?}", ia.diff(&ib, 10));
    assert!(ia.free.values().any(|g| *g > 1), "some numbers were reused");
    assert_eq!(
        sa.next_inode(fs).expect("next"),
        sb.next_inode(fs).expect("next")
    );
    assert!(sb.check(fs).is_empty(), "{:?}", sb.check(fs));
    // A number live here and free on the source: refused, nothing changed.
    let live = b.create(ROOT, "mine").expect("create");
    let before = sb.image(fs).expect("image");
    let op = SyncOp::Allocator {
        next_ino: Ino(live.ino.0 + 1),
        from: Ino(0),
        to: Ino(u64::MAX),
        free: vec![(live.ino, Gen(live.gen.0 + 1))],
    };
    assert_eq!(sb.apply_sync(fs, &op), Err(FsError::Inval));
    let op = SyncOp::Allocator {
        next_ino: live.ino,
        from: Ino(0),
        to: Ino(u64::MAX),
        free: vec![],
    };
    assert_eq!(
        sb.apply_sync(fs, &op),
        Err(FsError::Inval),
        "a live number above the mark"
    );
    for bad in [
        SyncOp::Allocator {
            next_ino: Ino(100),
            from: Ino(5),
            to: Ino(5),
            free: vec![],
        },
        SyncOp::Allocator {
            next_ino: Ino(1),
            from: Ino(0),
            to: Ino(9),
            free: vec![],
        },
        SyncOp::Allocator {
            next_ino: Ino(100),
            from: Ino(0),
            to: Ino(9),
            free: vec![(Ino(1), Gen(1))],
        },
        SyncOp::Allocator {
            next_ino: Ino(100),
            from: Ino(0),
            to: Ino(9),
            free: vec![(Ino(5), Gen(0))],
        },
        SyncOp::Allocator {
            next_ino: Ino(100),
            from: Ino(0),
            to: Ino(9),
            free: vec![(Ino(6), Gen(1)), (Ino(5), Gen(1))],
        },
        SyncOp::Allocator {
            next_ino: Ino(100),
            from: Ino(0),
            to: Ino(9),
            free: vec![(Ino(9), Gen(1))],
        },
        SyncOp::Allocator {
            next_ino: Ino(7),
            from: Ino(0),
            to: Ino(90),
            free: vec![(Ino(8), Gen(1))],
        },
    ] {
        assert_eq!(sb.apply_sync(fs, &bad), Err(FsError::Inval), "{bad:?}");
    }
    assert!(sb.image(fs).expect("image") == before);
    assert_eq!(sb.failed(), None);
}

/// An exclusive CREATE's verifier travels with its inode, so a retransmission of that CREATE
/// is recognised by the target; `Verifier` of another generation is STALE.
#[test]
fn verifiers_travel_with_their_inode() {
    let (_da, sa) = store();
    let (_db, sb) = store();
    let mut a = Fx::new(&sa, "verf");
    let mut b = Fx::new(&sb, "verf");
    let fs = a.fs;
    let how = metrofs_core::CreateHow::Exclusive(*b"12345678");
    let f = a
        .create_how(ROOT, "x", how.clone())
        .expect("exclusive create");
    let ops = sa.sync_inode(fs, f.ino).expect("sync_inode");
    assert!(
        matches!(&ops[..], [SyncOp::PutInode { .. }, SyncOp::Verifier { verifier: Some(v), .. }] if v == b"12345678"),
        "{ops:?}"
    );
    resync(&sa, &sb, fs).expect("resync");
    let (ia, ib) = (sa.image(fs).expect("image"), sb.image(fs).expect("image"));
    assert!(ia == ib, "{:#?}", ia.diff(&ib, 10));
    // The retransmitted CREATE, now answered by the target.
    b.clock = a.clock;
    let again = b
        .create_how(ROOT, "x", how)
        .expect("a retransmission succeeds");
    assert_eq!((again.ino, again.gen), (f.ino, f.gen));
    let other = b.create_how(ROOT, "x", metrofs_core::CreateHow::Exclusive(*b"other!!!"));
    assert_eq!(other, Err(FsError::Exist));
    let stale = SyncOp::Verifier {
        ino: f.ino,
        gen: Gen(f.gen.0 + 1),
        verifier: None,
    };
    assert_eq!(sb.apply_sync(fs, &stale), Err(FsError::Stale));
    let not_file = SyncOp::Verifier {
        ino: ROOT,
        gen: Gen(1),
        verifier: None,
    };
    assert_eq!(sb.apply_sync(fs, &not_file), Err(FsError::Inval));
}

// ---- the property ----

/// Bytes per `Entries` / `Allocator` step of the naive resync: small, so that directories and
/// free tables travel in several ranges.
const OP_BYTES: usize = 200;

/// The source's state copied to the target, naively but in the phases resync uses: the
/// inode steps (`sync_inode`) for every inode, `Entries` for every directory (`sync_dir`),
/// the `Allocator` steps, PutData of every file in 1 MiB runs, then `free_orphans` (the
/// round's flush). Returns (Entries steps, data runs, orphans freed at the flush).
fn resync(src: &Store, dst: &Store, fs: FsId) -> Result<(usize, usize, u64), FsError> {
    resync_with(src, dst, fs, &mut || {})
}

/// [`resync`], calling `step` after each step applied.
fn resync_with(
    src: &Store,
    dst: &Store,
    fs: FsId,
    step: &mut dyn FnMut(),
) -> Result<(usize, usize, u64), FsError> {
    let inos = src.inodes(fs)?;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for ino in &inos {
        let (attr, _) = src.inode(fs, *ino)?.ok_or(FsError::Stale)?;
        match attr.ftype {
            FileType::Directory => dirs.push(*ino),
            FileType::Regular => files.push((*ino, attr.size)),
            FileType::Symlink => {}
        }
        for op in src.sync_inode(fs, *ino)? {
            dst.apply_sync(fs, &op)?;
            step();
        }
    }
    let mut entries = 0;
    for d in &dirs {
        for op in src.sync_dir(fs, *d, OP_BYTES)? {
            dst.apply_sync(fs, &op)?;
            step();
            entries += 1;
        }
    }
    for op in src.sync_allocator(fs, OP_BYTES)? {
        dst.apply_sync(fs, &op)?;
        step();
    }
    let mut runs = 0;
    for (ino, size) in files {
        let mut off = 0;
        while off < size {
            let len = MIB.min(size - off);
            let segments = src.read_segments(fs, ino, off, len)?;
            dst.apply_sync(
                fs,
                &SyncOp::PutData {
                    ino,
                    offset: off,
                    len: MIB,
                    segments,
                },
            )?;
            step();
            runs += 1;
            off += len;
        }
    }
    Ok((entries, runs, dst.free_orphans(fs)?))
}

/// Applies `ops` on `s` (the driver of `props`), keeping track of directories and objects.
fn apply_all(s: &Store, fs: FsId, ops: &[props::A], base: u32, also: Option<&Store>, cut: usize) {
    let mut dirs = vec![ROOT_INO];
    let mut objs: Vec<Ino> = Vec::new();
    for (i, a) in ops.iter().enumerate() {
        let body = props::body(a, &dirs, &objs);
        let new_inode = if body.creates() {
            Some(s.next_inode(fs).expect("next_inode"))
        } else {
            None
        };
        let op = FsOp {
            fs,
            time: Time::new(base + i as u32, 0),
            new_inode,
            body,
        };
        let r = s.apply(&op);
        if let Some(other) = also.filter(|_| i < cut) {
            let _ = other.apply(&op);
        }
        if let (Ok(r), Some(n)) = (&r, new_inode) {
            if r.obj.as_ref().is_some_and(|o| o.ino == n.ino) {
                objs.push(n.ino);
                if matches!(op.body, OpBody::Mkdir { .. }) {
                    dirs.push(n.ino);
                }
            }
        }
    }
}

fn run_resync(ops: &[props::A], cut: usize, own: &[props::A]) -> Result<(), TestCaseError> {
    let (_da, sa) = store();
    let (db, sb) = store();
    let fs = Fx::new(&sa, "r").fs;
    Fx::new(&sb, "r");
    let cut = cut % (ops.len() + 1);
    // B saw the first `cut` ops, then (served alone) some of its own.
    apply_all(&sa, fs, ops, 1_800_000_000, Some(&sb), cut);
    apply_all(&sb, fs, own, 1_900_000_000, None, 0);
    let (_, _, at_flush) =
        resync(&sa, &sb, fs).map_err(|e| TestCaseError::fail(format!("resync: {e}")))?;
    prop_assert_eq!(at_flush, 0, "orphans survived the round's Allocator step");
    // Everything, READDIR slots, the allocator and verifiers included.
    let ia = sa.image(fs).expect("image a");
    let ib = sb.image(fs).expect("image b");
    prop_assert!(ia == ib, "images differ: {:#?}", ia.diff(&ib, 10));
    for n in ib.free.keys() {
        prop_assert!(!ib.inodes.contains_key(n), "free number {} is live", n);
    }
    let problems = sb.check(fs);
    prop_assert!(problems.is_empty(), "check b: {:#?}", problems);
    // Durable, and a second resync has nothing to do.
    drop(sb);
    let sb = Store::open(db.path()).expect("reopen b");
    prop_assert!(
        sb.image(fs).expect("image") == ib,
        "changed across a reopen"
    );
    let before = sb.image(fs).expect("image");
    resync(&sa, &sb, fs).map_err(|e| TestCaseError::fail(format!("second resync: {e}")))?;
    prop_assert!(
        sb.image(fs).expect("image") == before,
        "a second resync changed something"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_naive_full_resync_makes_the_target_the_same(
        ops in proptest::collection::vec(props::arb_op(), 1..70),
        cut in any::<usize>(),
        own in proptest::collection::vec(props::arb_op(), 0..20),
    ) {
        run_resync(&ops, cut, &own)?;
    }
}

// ---- a crash in the middle of a resync ----

const CRASH_DIR: &str = "METROFS_SYNC_CRASH_DIR";
const CRASH_SEED: &str = "METROFS_SYNC_CRASH_SEED";

/// Ops from a seed, the same in every process.
fn seeded_ops(seed: u64, salt: u8, n: usize) -> Vec<props::A> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut key = [salt; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    (0..n)
        .map(|_| props::arb_op().new_tree(&mut runner).expect("op").current())
        .collect()
}

/// The source of seed `seed` (the same in every process): its store and fs.
fn crash_source(seed: u64) -> (tempfile::TempDir, Store, FsId) {
    let (d, s) = store();
    let fs = Fx::new(&s, "crash").fs;
    apply_all(&s, fs, &seeded_ops(seed, 1, 60), 1_800_000_000, None, 0);
    (d, s, fs)
}

/// The child: resyncs the target in `CRASH_DIR` from the seed's source, syncing now and then,
/// and prints `@S` after each `sync()` and `@DONE` at the end; then waits to be killed.
#[test]
fn resync_crash_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CRASH_DIR), std::env::var(CRASH_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().expect("seed");
    let (_src_dir, src, fs) = crash_source(seed);
    let dst = Store::open(std::path::Path::new(&dir)).expect("open target");
    let mut n = seed;
    resync_with(&src, &dst, fs, &mut || {
        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        if n >> 62 == 0 {
            dst.sync().expect("sync");
            println!("@S");
        }
    })
    .expect("resync");
    dst.sync().expect("sync");
    println!("@DONE");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// What `check()` may find in a target killed in the middle of a resync: inodes waiting for
/// their names (and a directory loop on its way to being undone), nothing else.
fn mid_resync_problem(p: &str) -> bool {
    [
        "orphan",
        "named by 0 entries",
        "but named in None",
        "do not reach the root",
    ]
    .iter()
    .any(|w| p.contains(w))
}

/// A target killed (SIGKILL) at a random point of a resync recovers into a state the resync
/// can finish from: afterwards it is the same as the source.
#[test]
fn a_resync_killed_midway_finishes_after_recovery() {
    let seeds: Vec<u64> = match std::env::var("METROFS_SYNC_CRASH_SEEDS") {
        Ok(v) => v
            .split(',')
            .map(|x| x.trim().parse().expect("seed"))
            .collect(),
        Err(_) => vec![1, 2, 5, 6],
    };
    for seed in seeds {
        eprintln!("resync crash seed {seed}");
        let dir = tempfile::tempdir().expect("tempdir");
        let (_src_dir, src, fs) = crash_source(seed);
        {
            // The target saw part of the source's history, then some of its own.
            let dst = Store::open(dir.path()).expect("open");
            Fx::new(&dst, "crash");
            let ops = seeded_ops(seed, 1, 60);
            let mut cut = usize::try_from(seed).expect("small") * 13 % ops.len();
            cut = cut.max(10);
            apply_all(&dst, fs, &ops[..cut], 1_800_000_000, None, 0);
            apply_all(&dst, fs, &seeded_ops(seed, 2, 15), 1_900_000_000, None, 0);
        }
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "sync::resync_crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, dir.path())
            .env(CRASH_SEED, seed.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let syncs_before_kill = seed % 5;
        let mut syncs = 0;
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_line(&mut reader, &mut line).expect("read");
            assert!(n > 0, "seed {seed}: the child ended early");
            if line.starts_with("@DONE") {
                break;
            }
            if line.starts_with("@S") {
                syncs += 1;
                if syncs > syncs_before_kill {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(seed * 397 % 3000));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let dst = Store::open(dir.path()).expect("reopen after the kill");
        assert!(
            dst.last_recovery().is_some(),
            "seed {seed}: no recovery ran"
        );
        let (waiting, problems): (Vec<String>, Vec<String>) = dst
            .check(fs)
            .into_iter()
            .partition(|p| mid_resync_problem(p));
        assert!(
            problems.is_empty(),
            "seed {seed}: after the kill: {problems:#?}"
        );
        resync(&src, &dst, fs)
            .unwrap_or_else(|e| panic!("seed {seed}: resync after recovery: {e}"));
        let (a, b) = (src.image(fs).expect("image"), dst.image(fs).expect("image"));
        assert!(a == b, "seed {seed}: {:#?}", a.diff(&b, 10));
        let problems = dst.check(fs);
        assert!(problems.is_empty(), "seed {seed}: {problems:#?}");
        eprintln!(
            "seed {seed}: killed after {syncs} syncs, {} check lines on names still to come; finished",
            waiting.len()
        );
    }
}
