//! Bad input: an error reply or a closed connection, other clients still served, nothing in
//! the store changed. Then a property test over random and mutated records.

use std::time::Duration;

use metrofs_core::ExportRules;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{accept_stat_data, auth_stat, opaque_auth, rejected_reply};
use nfs3_client::nfs3_types::xdr_codec::{Opaque, Pack, Void};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::raw::{self, Outcome, Raw};

/// Sends `bytes` on a fresh connection, half-closes, and collects the replies until the
/// server closes. Panics if it neither answers nor closes within a few seconds.
async fn exchange(srv: &Server, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut r = Raw::connect(srv.addr).await;
    // The server may close before taking everything: that is an acceptable answer.
    let _ = r.s.write_all(bytes).await;
    let _ = r.s.shutdown().await;
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), r.s.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    // Split into reply records; each must be a well-formed RPC reply.
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= all.len() {
        let m = u32::from_be_bytes([all[at], all[at + 1], all[at + 2], all[at + 3]]);
        assert!(m & 0x8000_0000 != 0);
        let len = (m & 0x7fff_ffff) as usize;
        assert!(at + 4 + len <= all.len(), "a reply cut short");
        let rec = all[at + 4..at + 4 + len].to_vec();
        let _ = raw::outcome(&rec);
        out.push(rec);
        at += 4 + len;
    }
    assert_eq!(at, all.len(), "trailing bytes after the replies");
    out
}

fn call<A: Pack>(xid: u32, prog: u32, vers: u32, proc: u32, args: &A) -> Vec<u8> {
    raw::call(xid, prog, vers, proc, &cred(0, 0, &[]), args)
}

fn one(replies: &[Vec<u8>], xid: u32) -> Outcome {
    assert_eq!(replies.len(), 1, "one reply expected");
    assert_eq!(raw::xid_of(&replies[0]), xid);
    raw::outcome(&replies[0])
}

#[tokio::test]
async fn malformed_input_gets_an_error_or_a_close_and_changes_nothing() {
    let srv = Server::start().await;
    let mut healthy = root(&srv).await;
    let rfh = root_fh(&healthy);
    let (f, _) = create(&mut healthy, &rfh, "f").await.expect("create");
    write(&mut healthy, &f, 0, b"precious", stable_how::FILE_SYNC)
        .await
        .expect("write");
    let before = srv.snapshot().await;
    let changes = srv.changes();

    // Absurd fragment lengths: closed before anything is buffered.
    assert!(exchange(&srv, &[0xff, 0xff, 0xff, 0xff]).await.is_empty());
    assert!(exchange(&srv, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .is_empty());
    // A record over the limit in many fragments.
    let mut frags = Vec::new();
    for _ in 0..40 {
        frags.extend(0x0001_0000u32.to_be_bytes());
        frags.extend(vec![0u8; 0x1_0000]);
    }
    assert!(exchange(&srv, &frags).await.is_empty());
    // A record cut short, and half a record mark.
    let mut cut = raw::record(&call(
        1,
        raw::NFS,
        3,
        1,
        &GETATTR3args { object: f.clone() },
    ));
    cut.truncate(cut.len() - 5);
    assert!(exchange(&srv, &cut).await.is_empty());
    assert!(exchange(&srv, &[0x80, 0]).await.is_empty());
    // Too short for an xid; a REPLY instead of a CALL; an empty record.
    assert!(exchange(&srv, &raw::record(&[1, 2])).await.is_empty());
    let mut reply = call(2, raw::NFS, 3, 0, &Void);
    reply[7] = 1;
    assert!(exchange(&srv, &raw::record(&reply)).await.is_empty());
    assert!(exchange(&srv, &raw::record(&[])).await.is_empty());

    // Wrong RPC version: RPC_MISMATCH(2, 2).
    let mut v3 = call(3, raw::NFS, 3, 0, &Void);
    v3[11] = 3;
    match one(&exchange(&srv, &raw::record(&v3)).await, 3) {
        Outcome::Denied(rejected_reply::RPC_MISMATCH { low: 2, high: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // Unknown program, versions, procedures.
    type Case = (u32, u32, u32, fn(&Outcome) -> bool);
    let cases: [Case; 6] = [
        (100_099, 1, 0, |o| {
            matches!(o, Outcome::Accepted(accept_stat_data::PROG_UNAVAIL))
        }),
        (raw::NFS, 2, 0, |o| {
            matches!(
                o,
                Outcome::Accepted(accept_stat_data::PROG_MISMATCH { low: 3, high: 3 })
            )
        }),
        (raw::NFS, 4, 0, |o| {
            matches!(
                o,
                Outcome::Accepted(accept_stat_data::PROG_MISMATCH { low: 3, high: 3 })
            )
        }),
        (raw::MOUNT, 1, 0, |o| {
            matches!(
                o,
                Outcome::Accepted(accept_stat_data::PROG_MISMATCH { low: 3, high: 3 })
            )
        }),
        (raw::NFS, 3, 22, |o| {
            matches!(o, Outcome::Accepted(accept_stat_data::PROC_UNAVAIL))
        }),
        (raw::MOUNT, 3, 6, |o| {
            matches!(o, Outcome::Accepted(accept_stat_data::PROC_UNAVAIL))
        }),
    ];
    for (i, (prog, vers, proc, ok)) in cases.into_iter().enumerate() {
        let xid = 10 + i as u32;
        let o = one(
            &exchange(&srv, &raw::record(&call(xid, prog, vers, proc, &Void))).await,
            xid,
        );
        assert!(ok(&o), "prog {prog} vers {vers} proc {proc}: {o:?}");
    }

    // Garbage credentials: AUTH_BADCRED.
    let bad_creds: Vec<opaque_auth<'static>> = vec![
        // AUTH_DES is not supported.
        opaque_auth {
            flavor: nfs3_client::nfs3_types::rpc::auth_flavor::AUTH_DES,
            body: Opaque::owned(vec![0; 8]),
        },
        // AUTH_SYS body that stops in the middle.
        opaque_auth {
            flavor: nfs3_client::nfs3_types::rpc::auth_flavor::AUTH_UNIX,
            body: Opaque::owned(vec![0, 0, 0, 1, 0, 0]),
        },
        // AUTH_SYS with 17 groups.
        cred(0, 0, &[1; 17]),
    ];
    for (i, c) in bad_creds.iter().enumerate() {
        let xid = 20 + i as u32;
        let body = raw::call(
            xid,
            raw::NFS,
            3,
            12,
            c,
            &REMOVE3args {
                object: dirop(&rfh, "f"),
            },
        );
        match one(&exchange(&srv, &raw::record(&body)).await, xid) {
            Outcome::Denied(rejected_reply::AUTH_ERROR(auth_stat::AUTH_BADCRED)) => {}
            other => panic!("credential {i}: {other:?}"),
        }
    }

    // Arguments that do not decode: GARBAGE_ARGS.
    let write_args = WRITE3args {
        file: f.clone(),
        offset: 0,
        count: 4,
        stable: stable_how::FILE_SYNC,
        data: Opaque::borrowed(b"evil"),
    };
    let mut half_write = call(30, raw::NFS, 3, 7, &write_args);
    half_write.truncate(half_write.len() - 10);
    let mut bad_how = call(
        31,
        raw::NFS,
        3,
        8,
        &CREATE3args {
            where_: dirop(&rfh, "g"),
            how: createhow3::UNCHECKED(sattr3::default()),
        },
    );
    let how_at = bad_how.len() - sattr3::default().packed_size() - 4;
    bad_how[how_at + 3] = 9;
    let mut huge_name = call(
        32,
        raw::NFS,
        3,
        12,
        &REMOVE3args {
            object: dirop(&rfh, "f"),
        },
    );
    let n = huge_name.len();
    huge_name[n - 8..n - 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let long_handle = nfs_fh3 {
        data: Opaque::owned(vec![7; 65]),
    };
    let long_fh = call(
        33,
        raw::NFS,
        3,
        1,
        &GETATTR3args {
            object: long_handle,
        },
    );
    let mut bad_stable = call(34, raw::NFS, 3, 7, &write_args);
    // ... stable, then the data as an opaque (4 + 4 bytes).
    let stable_at = bad_stable.len() - 8 - 4;
    bad_stable[stable_at + 3] = 3;
    let mut bad_bool = call(
        35,
        raw::NFS,
        3,
        2,
        &SETATTR3args {
            object: f.clone(),
            new_attributes: sattr3::default(),
            guard: Nfs3Option::None,
        },
    );
    let m = bad_bool.len();
    bad_bool[m - 1] = 2;
    let mount_path = call(36, raw::MOUNT, 3, 1, &Void);
    for (xid, body) in [
        (30, half_write),
        (31, bad_how),
        (32, huge_name),
        (33, long_fh),
        (34, bad_stable),
        (35, bad_bool),
        (36, mount_path),
    ] {
        match one(&exchange(&srv, &raw::record(&body)).await, xid) {
            Outcome::Accepted(accept_stat_data::GARBAGE_ARGS) => {}
            other => panic!("xid {xid}: {other:?}"),
        }
    }

    // Still served; nothing changed.
    healthy
        .null()
        .await
        .expect("the other client is still served");
    assert_eq!(
        read(&mut healthy, &f, 0, 100).await,
        Ok((b"precious".to_vec(), true))
    );
    assert_eq!(srv.changes(), changes, "no change call was made");
    assert_eq!(srv.snapshot().await, before);
    srv.stop().await;
}

#[tokio::test]
async fn fragmented_and_pipelined_records_are_served() {
    let srv = Server::start().await;
    let c = root(&srv).await;
    let rfh = root_fh(&c);
    let body = call(
        5,
        raw::NFS,
        3,
        1,
        &GETATTR3args {
            object: rfh.clone(),
        },
    );
    // The same call in three fragments, after some empty fragments.
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend(0u32.to_be_bytes());
    }
    let (a, rest) = body.split_at(10);
    let (b, cpart) = rest.split_at(17);
    for (part, last) in [(a, false), (b, false), (cpart, true)] {
        let len = u32::try_from(part.len()).expect("small");
        bytes.extend((if last { len | 0x8000_0000 } else { len }).to_be_bytes());
        bytes.extend(part);
    }
    bytes.extend(raw::record(&call(6, raw::NFS, 3, 0, &Void)));
    let replies = exchange(&srv, &bytes).await;
    let mut xids: Vec<u32> = replies.iter().map(|r| raw::xid_of(r)).collect();
    xids.sort_unstable();
    assert_eq!(xids, vec![5, 6]);
    for r in &replies {
        if raw::xid_of(r) == 5 {
            assert!(matches!(raw::results::<GETATTR3res>(r), Nfs3Result::Ok(_)));
        }
    }
    srv.stop().await;
}

/// Valid calls with real handles, to be mutated.
fn valid_calls(rfh: &nfs_fh3, f: &nfs_fh3) -> Vec<Vec<u8>> {
    let w = WRITE3args {
        file: f.clone(),
        offset: 3,
        count: 5,
        stable: stable_how::UNSTABLE,
        data: Opaque::borrowed(b"hello"),
    };
    vec![
        call(1, raw::NFS, 3, 7, &w),
        call(
            2,
            raw::NFS,
            3,
            8,
            &CREATE3args {
                where_: dirop(rfh, "new"),
                how: createhow3::GUARDED(sattr_mode(0o644)),
            },
        ),
        call(
            3,
            raw::NFS,
            3,
            2,
            &SETATTR3args {
                object: f.clone(),
                new_attributes: sattr_mode(0o600),
                guard: Nfs3Option::None,
            },
        ),
        call(
            4,
            raw::NFS,
            3,
            12,
            &REMOVE3args {
                object: dirop(rfh, "f"),
            },
        ),
        call(
            5,
            raw::NFS,
            3,
            14,
            &RENAME3args {
                from: dirop(rfh, "f"),
                to: dirop(rfh, "g"),
            },
        ),
        call(
            6,
            raw::NFS,
            3,
            15,
            &LINK3args {
                file: f.clone(),
                link: dirop(rfh, "l"),
            },
        ),
        call(
            7,
            raw::NFS,
            3,
            9,
            &MKDIR3args {
                where_: dirop(rfh, "d"),
                attributes: sattr_mode(0o755),
            },
        ),
        call(
            8,
            raw::NFS,
            3,
            10,
            &SYMLINK3args {
                where_: dirop(rfh, "s"),
                symlink: symlinkdata3 {
                    symlink_attributes: sattr3::default(),
                    symlink_data: nfspath3::from(b"x".as_slice()),
                },
            },
        ),
        call(
            9,
            raw::NFS,
            3,
            17,
            &READDIRPLUS3args {
                dir: rfh.clone(),
                cookie: 0,
                cookieverf: cookieverf3::default(),
                dircount: 512,
                maxcount: 4096,
            },
        ),
        call(
            10,
            raw::NFS,
            3,
            16,
            &READDIR3args {
                dir: rfh.clone(),
                cookie: 0,
                cookieverf: cookieverf3::default(),
                count: 4096,
            },
        ),
        call(
            11,
            raw::NFS,
            3,
            3,
            &LOOKUP3args {
                what: dirop(rfh, "f"),
            },
        ),
        call(
            12,
            raw::NFS,
            3,
            6,
            &READ3args {
                file: f.clone(),
                offset: 0,
                count: 100,
            },
        ),
        call(
            13,
            raw::NFS,
            3,
            21,
            &COMMIT3args {
                file: f.clone(),
                offset: 0,
                count: 0,
            },
        ),
        call(14, raw::MOUNT, 3, 1, &Opaque::borrowed(b"/t")),
        call(
            15,
            raw::NFS,
            3,
            4,
            &ACCESS3args {
                object: f.clone(),
                access: 0x3f,
            },
        ),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate(usize),
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutate(mut rec: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::Flip { at, xor } => {
                if !rec.is_empty() {
                    let i = at % rec.len();
                    rec[i] ^= xor;
                }
            }
            Mutation::Truncate(n) => rec.truncate(n % (rec.len() + 1)),
            Mutation::Insert { at, bytes } => {
                let i = at % (rec.len() + 1);
                rec.splice(i..i, bytes.iter().copied());
            }
        }
    }
    rec
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

/// What a fuzz case sends.
#[derive(Debug, Clone)]
enum Input {
    /// Bytes as they are (record marks included or not).
    Raw(Vec<u8>),
    /// Random bytes as one record.
    Record(Vec<u8>),
    /// A valid call header for `prog`'s procedure `proc`, then random arguments.
    Args {
        mount: bool,
        proc: u32,
        args: Vec<u8>,
    },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Input::Raw),
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Input::Record),
        (
            any::<bool>(),
            0..24u32,
            prop::collection::vec(any::<u8>(), 0..400)
        )
            .prop_map(|(mount, proc, args)| Input::Args { mount, proc, args }),
    ]
}

fn encode(i: &Input) -> Vec<u8> {
    match i {
        Input::Raw(b) => b.clone(),
        Input::Record(b) => raw::record(b),
        Input::Args { mount, proc, args } => {
            let prog = if *mount { raw::MOUNT } else { raw::NFS };
            let mut body = call(7, prog, 3, *proc, &Void);
            body.extend(args);
            raw::record(&body)
        }
    }
}

/// Random bytes and random arguments into a writable export; mutated valid calls into a
/// read-only one (where no mutation can legitimately change anything). Every case gets
/// well-formed replies or a close; afterwards the server serves and nothing changed.
#[test]
fn fuzz_random_and_mutated_records() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (rw, ro, ro_calls, rw_before, ro_before) = rt.block_on(async {
        let rw = Server::start().await;
        let mut c = root(&rw).await;
        let rfh = root_fh(&c);
        create(&mut c, &rfh, "f").await.expect("create");
        let ro = Server::start().await;
        let mut c = root(&ro).await;
        let rfh = root_fh(&c);
        let (f, _) = create(&mut c, &rfh, "f").await.expect("create");
        write(&mut c, &f, 0, b"content", stable_how::FILE_SYNC)
            .await
            .expect("write");
        ro.array
            .set_export(
                "t",
                ExportRules {
                    read_only: true,
                    ..open_rules()
                },
            )
            .expect("read-only");
        let calls = valid_calls(&rfh, &f);
        let (a, b) = (rw.snapshot().await, ro.snapshot().await);
        (rw, ro, calls, a, b)
    });
    let (rw_changes, ro_changes) = (rw.changes(), ro.changes());
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(i in input())| {
        rt.block_on(exchange(&rw, &encode(&i)));
        cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    proptest!(config, |(pick in 0..ro_calls.len(), muts in prop::collection::vec(mutation(), 1..4))| {
        let rec = mutate(ro_calls[pick].clone(), &muts);
        rt.block_on(exchange(&ro, &raw::record(&rec)));
        cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(cases.into_inner(), 600);
    rt.block_on(async {
        let mut c = root(&rw).await;
        c.null().await.expect("still serving");
        assert_eq!(rw.changes(), rw_changes, "random input made a change call");
        assert_eq!(rw.snapshot().await, rw_before);
        assert_eq!(
            ro.changes(),
            ro_changes,
            "a mutated call made a change call"
        );
        assert_eq!(ro.snapshot().await, ro_before);
        rw.stop().await;
        ro.stop().await;
    });
}
