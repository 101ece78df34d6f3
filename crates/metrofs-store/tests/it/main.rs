//! metrofs-store's integration tests (one binary, STYLE's layout).

mod conformance;
mod crash;
mod fx;
mod journal;
mod props;
mod sync;

use metrofs_store::Store;

#[test]
fn conformance_on_a_fresh_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    conformance::run(&s, "c", true);
}

/// Everything survives a clean close and reopen exactly, and the suite passes again on the
/// reopened store beside the old file systems.
#[test]
fn a_reopened_store_is_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = {
        let s = Store::open(dir.path()).expect("open");
        conformance::run(&s, "one", false);
        s.list_fs()
            .into_iter()
            .map(|f| (f.id, s.image(f.id).expect("image")))
            .collect::<Vec<_>>()
    };
    let s = Store::open(dir.path()).expect("reopen");
    assert!(
        s.last_recovery().is_none(),
        "a clean close needs no recovery"
    );
    for (id, image) in &images {
        assert_eq!(
            &s.image(*id).expect("image"),
            image,
            "fs {id} changed across a reopen"
        );
        assert!(s.check(*id).is_empty(), "{:?}", s.check(*id));
    }
    conformance::run(&s, "two", false);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _s = Store::open(dir.path()).expect("open");
    let e = Store::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(e.to_string().contains("in use"), "{e}");
}

/// `check()` is not blind: a data file nobody owns, one longer than its inode, and trash that
/// no removal waits for are all reported.
#[test]
fn check_reports_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    let mut fx = fx::Fx::new(&s, "chk");
    let f = fx.create(fx::ROOT, "f").expect("create");
    fx.write(f.ino, 0, b"abc").expect("write");
    fx.assert_consistent();
    let fs_dir = dir.path().join("data").join(format!("{:016x}", fx.fs.0));
    let bucket = |ino: u64| fs_dir.join(format!("{:02x}", (ino / 1024) % 256));
    std::fs::create_dir_all(bucket(999)).expect("bucket");
    std::fs::write(bucket(999).join("999"), b"stray").expect("stray");
    std::fs::write(
        bucket(f.ino.0).join(f.ino.0.to_string()),
        b"longer than three",
    )
    .expect("grow");
    std::fs::write(fs_dir.join("trash").join("5.1"), b"old").expect("trash");
    let problems = s.check(fx.fs);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("999") && p.contains("no live regular inode")));
    assert!(problems
        .iter()
        .any(|p| p.contains("data file of 17 bytes, size 3")));
    assert!(problems.iter().any(|p| p.contains("trash")));
}

/// Holes and written zeros are the same bytes; `image()` says so, and sees any other change.
#[test]
fn image_compares_bytes_not_allocation() {
    let da = tempfile::tempdir().expect("tempdir");
    let db = tempfile::tempdir().expect("tempdir");
    let sa = Store::open(da.path()).expect("open");
    let sb = Store::open(db.path()).expect("open");
    let mut a = fx::Fx::new(&sa, "img");
    let mut b = fx::Fx::new(&sb, "img");
    let fa = a.create(fx::ROOT, "f").expect("create");
    let fb = b.create(fx::ROOT, "f").expect("create");
    // a: data at 3 MiB, a hole before; b: the same bytes, zeros written out.
    a.write(fa.ino, 3 << 20, b"tail").expect("write");
    b.write(fb.ino, 0, &vec![0u8; 3 << 20])
        .expect("write zeros");
    b.clock = a.clock - 1;
    b.write(fb.ino, 3 << 20, b"tail").expect("write");
    let (ia, ib) = (
        sa.image(a.fs).expect("image"),
        sb.image(b.fs).expect("image"),
    );
    assert_eq!(ia, ib, "{:#?}", ia.diff(&ib, 5));
    assert!(
        sa.getattr(a.fs, fa.ino).expect("attr").used < sb.getattr(b.fs, fb.ino).expect("attr").used
    );
    // One byte differs: the images differ, and `diff` names the inode.
    b.clock = a.clock;
    a.write(fa.ino, 100, b"x").expect("write");
    b.write(fb.ino, 100, b"y").expect("write");
    let (ia, ib) = (
        sa.image(a.fs).expect("image"),
        sb.image(b.fs).expect("image"),
    );
    assert_ne!(ia, ib);
    let d = ia.diff(&ib, 5);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].starts_with(&format!("inode {}", fa.ino.0)));
}

/// WRITEs, truncations, removes and syncs from several threads at once leave a consistent
/// store (no data file longer than its inode, no orphan, right link counts).
#[test]
fn concurrent_ops_keep_the_store_consistent() {
    use metrofs_core::{FsOp, OpBody, SetAttr, Stability, Time};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).expect("open");
    let mut fx = fx::Fx::new(&s, "conc");
    let fs = fx.fs;
    let files: Vec<_> = (0..4)
        .map(|i| fx.create(fx::ROOT, &format!("f{i}")).expect("create").ino)
        .collect();
    let creator = std::sync::Mutex::new(());
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (s, files, creator) = (&s, &files, &creator);
            sc.spawn(move || {
                let mut x = 0x9e37_79b9u64 ^ (t + 1);
                for i in 0..400u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let ino = files[(x % 4) as usize];
                    let time = Time::new(1_900_000_000 + i as u32, t as u32);
                    let body = match (t, i % 10) {
                        (0, 0) => OpBody::SetAttr {
                            ino,
                            attr: SetAttr {
                                size: Some(x % 20_000),
                                ..SetAttr::default()
                            },
                            guard: None,
                        },
                        (1, 0) => OpBody::Commit { ino },
                        (2, 0..=2) => {
                            // Make and drop a file (creating ops are serialised, as metro does).
                            let _g = creator.lock().expect("lock");
                            let name = format!("tmp{t}-{i}").into_bytes();
                            let body = OpBody::Create {
                                dir: fx::ROOT,
                                name: name.clone(),
                                how: metrofs_core::CreateHow::Guarded(SetAttr::default()),
                                mode: 0o600,
                                uid: 0,
                                gid: 0,
                            };
                            let n = s.next_inode(fs).expect("next");
                            let a = s
                                .apply(&FsOp {
                                    fs,
                                    time,
                                    new_inode: Some(n),
                                    body,
                                })
                                .expect("create");
                            let w = OpBody::Write {
                                ino: a.obj.expect("obj").ino,
                                offset: x % 100_000,
                                data: vec![1u8; 5000].into(),
                                stable: Stability::Unstable,
                            };
                            s.apply(&FsOp {
                                fs,
                                time,
                                new_inode: None,
                                body: w,
                            })
                            .expect("write");
                            OpBody::Remove {
                                dir: fx::ROOT,
                                name,
                            }
                        }
                        (3, 0) => {
                            s.sync().expect("sync");
                            continue;
                        }
                        _ => OpBody::Write {
                            ino,
                            offset: x % 50_000,
                            data: vec![t as u8 + 1; 1 + (x % 9000) as usize].into(),
                            stable: if i % 50 == 7 {
                                Stability::FileSync
                            } else {
                                Stability::Unstable
                            },
                        },
                    };
                    s.apply(&FsOp {
                        fs,
                        time,
                        new_inode: None,
                        body,
                    })
                    .expect("op");
                }
            });
        }
    });
    fx.assert_consistent();
    s.sync().expect("sync");
    fx.assert_consistent();
}

/// Bytes of `path` resident in the page cache (util-linux's `fincore`; the test command
/// installs it).
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux-extra) runs");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a byte count")
}

/// `len` bytes of `fill` at an address that is a multiple of 4096, as the link receives a
/// large body.
fn page_aligned(len: usize, fill: u8) -> bytes::Bytes {
    let v = vec![fill; len + 4096];
    let pad = (4096 - v.as_ptr() as usize % 4096) % 4096;
    bytes::Bytes::from(v).slice(pad..pad + len)
}

/// A twin writes a large page-aligned WRITE straight to the disk: none of it enters its page
/// cache, yet reads, later cached writes and the attributes are exactly what `apply` gives.
#[test]
fn a_twin_writes_large_aligned_writes_past_its_page_cache() {
    use metrofs_core::{OpBody, Stability, ROOT_INO};
    const MIB: usize = 1 << 20;
    let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
    let serving = Store::open(dirs[0].path()).expect("open");
    let twin = Store::open(dirs[1].path()).expect("open");
    let mut a = fx::Fx::new(&serving, "d");
    let mut b = fx::Fx::new(&twin, "d");
    let f = a.create(ROOT_INO, "f").expect("create").ino;
    assert_eq!(b.create(ROOT_INO, "f").expect("create").ino, f);
    let write = |offset: u64, data: bytes::Bytes| OpBody::Write { ino: f, offset, data, stable: Stability::Unstable };

    // Which writes go direct: large, and offset, length and memory page-aligned.
    let mut direct = |body: OpBody| Store::writes_direct(&b.op_for(body));
    assert!(direct(write(MIB as u64, page_aligned(MIB, 1))));
    assert!(direct(write(0, page_aligned(128 << 10, 1))));
    assert!(!direct(write(0, page_aligned(64 << 10, 1))), "small");
    assert!(!direct(write(512, page_aligned(MIB, 1))), "offset");
    assert!(!direct(write(0, page_aligned(MIB - 512, 1))), "length");
    assert!(!direct(write(0, page_aligned(MIB + 1, 1).slice(1..))), "memory");

    // The same ops on both: a cached write (a dirty page the direct write then covers), two
    // direct megabytes, a cached write into the first one.
    let ops = [
        write(8192, bytes::Bytes::from(vec![b'x'; 4096])),
        write(0, page_aligned(MIB, b'a')),
        write(MIB as u64, page_aligned(MIB, b'b')),
        write(4096, bytes::Bytes::from(vec![b'y'; 100])),
    ];
    for body in ops {
        let op = a.op_for(body);
        b.clock = a.clock;
        let went_direct = Store::writes_direct(&op);
        let ra = serving.apply(&op).expect("apply");
        let rb = twin.apply_twin(&op).expect("apply_twin");
        assert_eq!(ra.obj.map(|o| (o.size, o.mtime, o.ctime)), rb.obj.map(|o| (o.size, o.mtime, o.ctime)));
        if went_direct && op.body == write(MIB as u64, page_aligned(MIB, b'b')) {
            // Nothing read it yet: the second megabyte never went through the twin's cache.
            let data_file = dirs[1]
                .path()
                .join("data")
                .join(format!("{:016x}", b.fs.0))
                .join(format!("{:02x}", (f.0 / 1024) % 256))
                .join(f.0.to_string());
            assert!(resident_bytes(&data_file) < MIB as u64, "the twin cached its direct write");
        }
    }
    for s in [&serving, &twin] {
        let r = s.read(a.fs, f, 0, 2 * MIB as u32).expect("read");
        let mut want = vec![b'a'; MIB];
        want[4096..4196].fill(b'y');
        want.extend(vec![b'b'; MIB]);
        assert!(r.data[..] == want[..], "bytes differ");
        assert_eq!(s.getattr(a.fs, f).expect("getattr").size, 2 * MIB as u64);
    }
}
