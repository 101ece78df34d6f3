//! Round trips with Debian's libnfs tools: a 200 MiB file, a tree of 2 000 files, rename and
//! remove, and a read-only export.

use std::collections::BTreeSet;

use nfs3_client::nfs3_types::nfs3::{nfsstat3, stable_how};

use crate::harness::{text, ArrayProc};
use crate::nfs::{rt, Client, Error, LOCALHOST};
use crate::{make_fs, tools};

const BIG_FILE_BYTES: usize = 200 << 20;

#[test]
fn big_file_round_trip_with_checksum() {
    let a = ArrayProc::start();
    make_fs(&a, "big");
    let src = a.tmp.path().join("src.bin");
    let back = a.tmp.path().join("back.bin");
    std::fs::write(&src, tools::pattern(200, BIG_FILE_BYTES)).expect("write source");

    let url = a.url("big", "file.bin");
    tools::run_ok("nfs-cp", &[&src.to_string_lossy(), &url]);
    tools::run_ok("nfs-cp", &[&url, &back.to_string_lossy()]);

    assert_eq!(
        std::fs::metadata(&back).expect("copy back").len(),
        BIG_FILE_BYTES as u64
    );
    assert_eq!(
        tools::sha256_file(&src),
        tools::sha256_file(&back),
        "the file came back different"
    );

    // The size as the server reports it.
    let ls = tools::run_ok("nfs-ls", &[&a.url("big", "")]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.lines()
            .any(|l| l.contains("file.bin") && l.contains(&BIG_FILE_BYTES.to_string())),
        "{ls}"
    );
}

const DIRS: usize = 8;
const FILES_PER_DIR: usize = 250;

fn file_body(d: usize, f: usize) -> Vec<u8> {
    format!("file {f} of dir {d}\n")
        .repeat(1 + (d * FILES_PER_DIR + f) % 7)
        .into_bytes()
}

#[test]
fn tree_of_2000_files_listed_and_read_back() {
    let a = ArrayProc::start();
    make_fs(&a, "tree");
    rt().block_on(async {
        let mut c = Client::mount(a.nfs, "tree", LOCALHOST)
            .await
            .expect("mount");
        let root = c.root.clone();
        for d in 0..DIRS {
            let dir = c.mkdir(&root, &format!("d{d}")).await.expect("mkdir");
            for f in 0..FILES_PER_DIR {
                let fh = c.create(&dir, &format!("f{f:04}")).await.expect("create");
                c.write(&fh, 0, &file_body(d, f), stable_how::UNSTABLE)
                    .await
                    .expect("write");
            }
        }
    });

    // Listed back, recursively, by a client we did not write.
    let out = tools::run_ok("nfs-ls", &["-R", &a.url("tree", "")]);
    let listing = String::from_utf8_lossy(&out.stdout);
    let seen: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('/').to_owned())
        .collect();
    let mut missing = Vec::new();
    for d in 0..DIRS {
        assert!(seen.contains(&format!("d{d}")), "directory d{d} not listed");
        for f in 0..FILES_PER_DIR {
            let p = format!("d{d}/f{f:04}");
            if !seen.contains(&p) {
                missing.push(p);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} files not listed, e.g. {:?}\n{}",
        missing.len(),
        DIRS * FILES_PER_DIR,
        &missing[..missing.len().min(5)],
        &listing[..listing.len().min(2000)]
    );
    let files = seen.iter().filter(|p| p.contains("/f")).count();
    assert_eq!(
        files,
        DIRS * FILES_PER_DIR,
        "listed more files than written"
    );

    // Some read back.
    for (d, f) in [(0, 0), (0, 249), (3, 17), (5, 128), (7, 249), (7, 3)] {
        let out = tools::run_ok("nfs-cat", &[&a.url("tree", &format!("d{d}/f{f:04}"))]);
        assert_eq!(out.stdout, file_body(d, f), "d{d}/f{f:04}");
    }
}

#[test]
fn rename_and_remove() {
    let a = ArrayProc::start();
    make_fs(&a, "ns");
    let src = a.tmp.path().join("small.txt");
    std::fs::write(&src, b"renamed and removed\n").expect("write");
    tools::run_ok("nfs-cp", &[&src.to_string_lossy(), &a.url("ns", "old.txt")]);
    tools::run_ok(
        "nfs-cp",
        &[&src.to_string_lossy(), &a.url("ns", "doomed.txt")],
    );

    rt().block_on(async {
        let mut c = Client::mount(a.nfs, "ns", LOCALHOST).await.expect("mount");
        let root = c.root.clone();
        let sub = c.mkdir(&root, "sub").await.expect("mkdir");
        let fh = c.lookup(&root, "old.txt").await.expect("lookup old");
        // Across directories; the handle stays the same file.
        c.rename(&root, "old.txt", &sub, "new.txt")
            .await
            .expect("rename");
        let moved = c.lookup(&sub, "new.txt").await.expect("lookup new");
        assert_eq!(moved.data, fh.data, "rename changed the file handle");
        assert!(matches!(
            c.lookup(&root, "old.txt").await,
            Err(Error::Nfs(nfsstat3::NFS3ERR_NOENT))
        ));

        let doomed = c.lookup(&root, "doomed.txt").await.expect("lookup doomed");
        c.remove(&root, "doomed.txt").await.expect("remove");
        assert!(matches!(
            c.lookup(&root, "doomed.txt").await,
            Err(Error::Nfs(nfsstat3::NFS3ERR_NOENT))
        ));
        assert!(
            matches!(
                c.getattr(&doomed).await,
                Err(Error::Nfs(nfsstat3::NFS3ERR_STALE))
            ),
            "removed file's handle"
        );
        assert!(matches!(
            c.remove(&root, "doomed.txt").await,
            Err(Error::Nfs(nfsstat3::NFS3ERR_NOENT))
        ));
    });

    // What libnfs sees.
    let out = tools::run_ok("nfs-ls", &["-R", &a.url("ns", "")]);
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(ls.contains("sub/new.txt"), "{ls}");
    assert!(
        !ls.contains("old.txt") && !ls.contains("doomed.txt"),
        "{ls}"
    );
    let out = tools::run_ok("nfs-cat", &[&a.url("ns", "sub/new.txt")]);
    assert_eq!(out.stdout, b"renamed and removed\n");
    let out = tools::run("nfs-cat", &[&a.url("ns", "doomed.txt")]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn read_only_export_refuses_changes() {
    let a = ArrayProc::start();
    make_fs(&a, "ro");
    let src = a.tmp.path().join("keep.txt");
    std::fs::write(&src, b"still readable\n").expect("write");
    tools::run_ok(
        "nfs-cp",
        &[&src.to_string_lossy(), &a.url("ro", "keep.txt")],
    );
    rt().block_on(async {
        let mut c = Client::mount(a.nfs, "ro", LOCALHOST).await.expect("mount");
        c.mkdir(&c.root.clone(), "dir")
            .await
            .expect("mkdir while rw");
    });

    a.cli_ok(&[
        "export",
        "set",
        "ro",
        "--clients",
        "127.0.0.0/8",
        "--ro",
        "--no-root-squash",
    ]);

    let out = tools::run("nfs-cp", &[&src.to_string_lossy(), &a.url("ro", "new.txt")]);
    assert!(
        !out.status.success(),
        "nfs-cp into a read-only export succeeded: {}",
        text(&out)
    );
    let out = tools::run_ok("nfs-cat", &[&a.url("ro", "keep.txt")]);
    assert_eq!(out.stdout, b"still readable\n");

    rt().block_on(async {
        let mut c = Client::mount(a.nfs, "ro", LOCALHOST)
            .await
            .expect("mount read-only");
        let root = c.root.clone();
        let keep = c.lookup(&root, "keep.txt").await.expect("lookup");
        let rofs = |r: Result<(), Error>, what: &str| {
            assert!(
                matches!(r, Err(Error::Nfs(nfsstat3::NFS3ERR_ROFS))),
                "{what}: {r:?}"
            );
        };
        rofs(c.create(&root, "x").await.map(|_| ()), "CREATE");
        rofs(c.mkdir(&root, "y").await.map(|_| ()), "MKDIR");
        rofs(
            c.write(&keep, 0, b"overwrite", stable_how::FILE_SYNC)
                .await
                .map(|_| ()),
            "WRITE",
        );
        rofs(c.remove(&root, "keep.txt").await, "REMOVE");
        rofs(c.rmdir(&root, "dir").await, "RMDIR");
        rofs(
            c.rename(&root, "keep.txt", &root, "moved.txt").await,
            "RENAME",
        );
        assert_eq!(
            c.read(&keep, 0, 100).await.expect("READ"),
            b"still readable\n"
        );
    });
    let out = tools::run_ok("nfs-ls", &[&a.url("ro", "")]);
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        ls.contains("keep.txt")
            && ls.contains("dir")
            && !ls.contains("new.txt")
            && !ls.contains("moved"),
        "{ls}"
    );
}
