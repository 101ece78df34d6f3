//! Property: a random sequence of ops applied to two fresh stores gives identical replies and
//! identical states (`image()`), and both pass `check()`.

use metrofs_core::{
    CreateHow, FsError, FsOp, Ino, OpBody, OpReply, SetAttr, Stability, Time, ROOT_INO,
};
use metrofs_store::Store;
use proptest::prelude::*;

use crate::fx::Fx;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
const OFFSETS: [u64; 9] = [
    0,
    1,
    100,
    4095,
    4096,
    65_536,
    1 << 20,
    (1 << 20) + 7,
    1 << 26,
];
const SIZES: [u64; 6] = [0, 1, 100, 5000, 1 << 20, 1 << 26];

#[derive(Debug, Clone)]
pub(crate) enum A {
    Create {
        dir: u8,
        name: u8,
        how: u8,
        size: Option<u8>,
    },
    Mkdir {
        dir: u8,
        name: u8,
    },
    Symlink {
        dir: u8,
        name: u8,
    },
    Write {
        obj: u8,
        offset: u8,
        len: u16,
        stable: u8,
        fill: u8,
    },
    Truncate {
        obj: u8,
        size: u8,
    },
    Chmod {
        obj: u8,
        mode: u16,
    },
    Remove {
        dir: u8,
        name: u8,
    },
    Rmdir {
        dir: u8,
        name: u8,
    },
    Rename {
        fdir: u8,
        fname: u8,
        tdir: u8,
        tname: u8,
    },
    Link {
        obj: u8,
        dir: u8,
        name: u8,
    },
    Commit {
        obj: u8,
    },
}

pub(crate) fn arb_op() -> impl Strategy<Value = A> {
    let b = any::<u8>;
    prop_oneof![
        4 => (b(), b(), b(), proptest::option::of(b())).prop_map(|(dir, name, how, size)| A::Create { dir, name, how, size }),
        2 => (b(), b()).prop_map(|(dir, name)| A::Mkdir { dir, name }),
        1 => (b(), b()).prop_map(|(dir, name)| A::Symlink { dir, name }),
        5 => (b(), b(), 0u16..9000, b(), b()).prop_map(|(obj, offset, len, stable, fill)| A::Write { obj, offset, len, stable, fill }),
        2 => (b(), b()).prop_map(|(obj, size)| A::Truncate { obj, size }),
        1 => (b(), any::<u16>()).prop_map(|(obj, mode)| A::Chmod { obj, mode }),
        2 => (b(), b()).prop_map(|(dir, name)| A::Remove { dir, name }),
        1 => (b(), b()).prop_map(|(dir, name)| A::Rmdir { dir, name }),
        3 => (b(), b(), b(), b()).prop_map(|(fdir, fname, tdir, tname)| A::Rename { fdir, fname, tdir, tname }),
        2 => (b(), b(), b()).prop_map(|(obj, dir, name)| A::Link { obj, dir, name }),
        1 => b().prop_map(|obj| A::Commit { obj }),
    ]
}

fn pick<T: Copy>(v: &[T], i: u8) -> T {
    v[usize::from(i) % v.len()]
}

fn name(i: u8) -> Vec<u8> {
    NAMES[usize::from(i) % NAMES.len()].as_bytes().to_vec()
}

/// Replies with `used` cleared: it is the local file system's allocation, which the two
/// arrays need not share.
fn masked(mut r: Result<OpReply, FsError>) -> Result<OpReply, FsError> {
    if let Ok(r) = &mut r {
        if let Some(a) = &mut r.obj {
            a.used = 0;
        }
        for d in [&mut r.dir, &mut r.dir2].into_iter().flatten() {
            d.1.used = 0;
        }
    }
    r
}

pub(crate) fn body(a: &A, dirs: &[Ino], objs: &[Ino]) -> OpBody {
    let obj = |i: u8| {
        if objs.is_empty() {
            ROOT_INO
        } else {
            pick(objs, i)
        }
    };
    match a {
        A::Create {
            dir,
            name: n,
            how,
            size,
        } => {
            let sa = SetAttr {
                size: size.map(|s| pick(&SIZES, s)),
                ..SetAttr::default()
            };
            let how = match how % 3 {
                0 => CreateHow::Guarded(sa),
                1 => CreateHow::Unchecked(sa),
                _ => CreateHow::Exclusive([*how; 8]),
            };
            OpBody::Create {
                dir: pick(dirs, *dir),
                name: name(*n),
                how,
                mode: 0o644,
                uid: 1,
                gid: 2,
            }
        }
        A::Mkdir { dir, name: n } => OpBody::Mkdir {
            dir: pick(dirs, *dir),
            name: name(*n),
            mode: 0o755,
            uid: 1,
            gid: 2,
        },
        A::Symlink { dir, name: n } => OpBody::Symlink {
            dir: pick(dirs, *dir),
            name: name(*n),
            target: b"t/a/r".to_vec(),
            mode: 0o777,
            uid: 1,
            gid: 2,
        },
        A::Write {
            obj: o,
            offset,
            len,
            stable,
            fill,
        } => {
            let data: Vec<u8> = (0..*len).map(|i| fill.wrapping_add(i as u8)).collect();
            let stable = match stable % 8 {
                0 => Stability::FileSync,
                1 => Stability::DataSync,
                _ => Stability::Unstable,
            };
            OpBody::Write {
                ino: obj(*o),
                offset: pick(&OFFSETS, *offset),
                data: data.into(),
                stable,
            }
        }
        A::Truncate { obj: o, size } => OpBody::SetAttr {
            ino: obj(*o),
            attr: SetAttr {
                size: Some(pick(&SIZES, *size)),
                ..SetAttr::default()
            },
            guard: None,
        },
        A::Chmod { obj: o, mode } => OpBody::SetAttr {
            ino: obj(*o),
            attr: SetAttr {
                mode: Some(u32::from(*mode)),
                ..SetAttr::default()
            },
            guard: None,
        },
        A::Remove { dir, name: n } => OpBody::Remove {
            dir: pick(dirs, *dir),
            name: name(*n),
        },
        A::Rmdir { dir, name: n } => OpBody::Rmdir {
            dir: pick(dirs, *dir),
            name: name(*n),
        },
        A::Rename {
            fdir,
            fname,
            tdir,
            tname,
        } => OpBody::Rename {
            from_dir: pick(dirs, *fdir),
            from_name: name(*fname),
            to_dir: pick(dirs, *tdir),
            to_name: name(*tname),
        },
        A::Link {
            obj: o,
            dir,
            name: n,
        } => OpBody::Link {
            ino: obj(*o),
            dir: pick(dirs, *dir),
            name: name(*n),
        },
        A::Commit { obj: o } => OpBody::Commit { ino: obj(*o) },
    }
}

fn run_pair(ops: &[A]) -> Result<(), TestCaseError> {
    let da = tempfile::tempdir().expect("tempdir");
    let db = tempfile::tempdir().expect("tempdir");
    let sa = Store::open(da.path()).expect("open a");
    let sb = Store::open(db.path()).expect("open b");
    let fa = Fx::new(&sa, "p");
    let fb = Fx::new(&sb, "p");
    prop_assert_eq!(fa.fs, fb.fs);
    let fs = fa.fs;
    let mut dirs = vec![ROOT_INO];
    let mut objs: Vec<Ino> = Vec::new();
    for (i, a) in ops.iter().enumerate() {
        let body = body(a, &dirs, &objs);
        let new_inode = if body.creates() {
            let n = sa.next_inode(fs).expect("next_inode");
            prop_assert_eq!(
                Some(n),
                sb.next_inode(fs).ok(),
                "allocators differ before op {}",
                i
            );
            Some(n)
        } else {
            None
        };
        let op = FsOp {
            fs,
            time: Time::new(1_800_000_000 + i as u32, 0),
            new_inode,
            body,
        };
        let ra = masked(sa.apply(&op));
        let rb = masked(sb.apply(&op));
        prop_assert_eq!(
            &ra,
            &rb,
            "op {} {:?} answered differently",
            i,
            op.body.kind()
        );
        if let Err(FsError::Io(m)) = &ra {
            return Err(TestCaseError::fail(format!("op {i}: I/O error {m}")));
        }
        if let (Ok(r), Some(n)) = (&ra, new_inode) {
            if let Some(obj) = &r.obj {
                if obj.ino == n.ino {
                    objs.push(n.ino);
                    if matches!(op.body, OpBody::Mkdir { .. }) {
                        dirs.push(n.ino);
                    }
                }
            }
        }
        // Reads agree too.
        if let Some(&o) = objs.last() {
            prop_assert_eq!(
                sa.read(fs, o, 0, 1 << 16).map(|r| r.data),
                sb.read(fs, o, 0, 1 << 16).map(|r| r.data)
            );
        }
    }
    let ia = sa.image(fs).expect("image a");
    let ib = sb.image(fs).expect("image b");
    prop_assert!(ia == ib, "images differ: {:#?}", ia.diff(&ib, 10));
    let ca = sa.check(fs);
    prop_assert!(ca.is_empty(), "check a: {:#?}", ca);
    let cb = sb.check(fs);
    prop_assert!(cb.is_empty(), "check b: {:#?}", cb);
    // And the state survives a close and reopen.
    drop(sb);
    let sb = Store::open(db.path()).expect("reopen b");
    let ib2 = sb.image(fs).expect("image b after reopen");
    prop_assert!(
        ia == ib2,
        "reopened image differs: {:#?}",
        ia.diff(&ib2, 10)
    );
    prop_assert!(sb.check(fs).is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn two_stores_given_the_same_ops_end_identical(ops in proptest::collection::vec(arb_op(), 1..80)) {
        run_pair(&ops)?;
    }
}
