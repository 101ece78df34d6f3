//! A pair of two in-process arrays linked over loopback TCP: create, full sync, dual writes,
//! pause/resume with the DCL, verify, and identical stores after each step.

use crate::{free_addr, site, Site};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use metrofs_core::{Backend, Caller, CreateHow, ExportRules, FsId, Ino, OpBody, SetAttr, Stability, ROOT_INO};
use metrofs_metro::engine::PairState;
use metrofs_metro::Metro;
use metrofs_store::Store;




async fn pair_of_sites() -> (Site, Site) {
    let (la, lb) = (free_addr(), free_addr());
    let a = site("site-a", "site-b", la, lb).await;
    let b = site("site-b", "site-a", lb, la).await;
    assert!(a.metro.wait_link(Duration::from_secs(10)).await, "link up");
    assert!(b.metro.wait_link(Duration::from_secs(10)).await, "link up");
    (a, b)
}

fn caller() -> Caller {
    Caller { addr: "127.0.0.1:700".parse().expect("addr"), uid: 0, gid: 0, gids: vec![], xid: 1, reply_key: None }
}

async fn create(m: &Metro, fs: FsId, dir: Ino, name: &str) -> Ino {
    let body = OpBody::Create { dir, name: name.into(), how: CreateHow::Unchecked(SetAttr::default()), mode: 0o644, uid: 0, gid: 0 };
    m.change(fs, body, &caller()).await.expect("create").obj.expect("attr").ino
}

async fn write(m: &Metro, fs: FsId, ino: Ino, offset: u64, data: &[u8]) {
    let body = OpBody::Write { ino, offset, data: Bytes::copy_from_slice(data), stable: Stability::Unstable };
    m.change(fs, body, &caller()).await.expect("write");
}

/// What two sides of a pair must agree on: inode numbers, names, attributes and bytes
/// (not READDIR slots, the free list or the allocator's high-water mark, which resync does
/// not copy).
fn visible(s: &Store, fs: FsId) -> BTreeMap<u64, String> {
    let img = s.image(fs).expect("image");
    img.inodes
        .into_iter()
        .map(|(ino, mut i)| {
            i.next_slot = None;
            i.verifier = None;
            let entries: Option<BTreeMap<Vec<u8>, u64>> = i.entries.take().map(|e| e.into_iter().map(|(n, (_, ino))| (n, ino)).collect());
            (ino, format!("{i:?} {entries:?}"))
        })
        .collect()
}

fn assert_identical(a: &Site, b: &Site, fs: FsId) {
    let (va, vb) = (visible(a.metro.array().store(), fs), visible(b.metro.array().store(), fs));
    if va != vb {
        let mut lines = Vec::new();
        for k in va.keys().chain(vb.keys()) {
            if va.get(k) != vb.get(k) {
                lines.push(format!("ino {k}:\n  a {:?}\n  b {:?}", va.get(k), vb.get(k)));
            }
        }
        lines.dedup();
        panic!("sides differ:\n{}", lines.join("\n"));
    }
    let problems = b.metro.array().store().check(fs);
    assert!(problems.is_empty(), "secondary consistent: {problems:?}");
}

/// Fs `name` on site-a, paired with site-b and Normal: its id and the pair's view.
async fn normal_pair(a: &Site, name: &str) -> (FsId, metrofs_metro::PairView) {
    let fs = a.metro.array().create_fs(name, ExportRules::default()).expect("fs").id;
    let view = a.metro.create_pair(name, "site-b").await.expect("pair");
    wait_state(&a.metro, PairState::Normal).await;
    (fs, view)
}

async fn wait_state(m: &Metro, want: PairState) {
    for _ in 0..300 {
        if m.list_pairs().first().is_some_and(|p| p.state == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pair never reached {want:?}: {:#?}", m.list_pairs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sync_write_pause_resume_verify() {
    let (a, b) = pair_of_sites().await;
    let info = a.metro.array().create_fs("t", ExportRules::default()).expect("fs");
    let fs = info.id;
    // Data before the pair exists: the initial full sync must carry it.
    let f1 = create(&a.metro, fs, ROOT_INO, "before").await;
    write(&a.metro, fs, f1, 0, &vec![7u8; 300_000]).await;
    write(&a.metro, fs, f1, 5 << 20, b"far away").await;
    let view = a.metro.create_pair("t", "site-b").await.expect("pair create");
    assert_eq!(view.fs, "t");
    wait_state(&a.metro, PairState::Normal).await;
    assert_identical(&a, &b, fs);
    assert_eq!(b.metro.list_pairs()[0].state, PairState::Normal, "the secondary hears the state");

    // Dual writes.
    let f2 = create(&a.metro, fs, ROOT_INO, "during").await;
    write(&a.metro, fs, f2, 0, b"hello pair").await;
    let sub = a
        .metro
        .change(fs, OpBody::Mkdir { dir: ROOT_INO, name: b"d".to_vec(), mode: 0o755, uid: 0, gid: 0 }, &caller())
        .await
        .expect("mkdir")
        .obj
        .expect("attr")
        .ino;
    a.metro
        .change(fs, OpBody::Rename { from_dir: ROOT_INO, from_name: b"during".to_vec(), to_dir: sub, to_name: b"moved".to_vec() }, &caller())
        .await
        .expect("rename");
    assert_identical(&a, &b, fs);
    assert_eq!(a.metro.list_pairs()[0].dcl_chunks, 0);

    // Paused: changes only here, recorded in the DCL.
    let id: metrofs_metro::proto::PairId = view.id.parse().expect("id");
    a.metro.pause(id).expect("pause");
    assert!(a.metro.pause(id).is_err(), "pause twice is refused");
    write(&a.metro, fs, f1, 100, &vec![9u8; 200_000]).await;
    let f3 = create(&a.metro, fs, sub, "while-paused").await;
    write(&a.metro, fs, f3, 0, b"x").await;
    a.metro.change(fs, OpBody::Remove { dir: sub, name: b"moved".to_vec() }, &caller()).await.expect("remove");
    // A rename changes the moved file's ctime: the DCL must carry the inode, not just the dirs.
    a.metro
        .change(fs, OpBody::Rename { from_dir: ROOT_INO, from_name: b"before".to_vec(), to_dir: sub, to_name: b"renamed".to_vec() }, &caller())
        .await
        .expect("rename while paused");
    let p = &a.metro.list_pairs()[0];
    assert_eq!(p.state, PairState::Paused);
    assert!(p.dcl_chunks >= 4 && p.dcl_dirs >= 1, "DCL records the changes: {p:?}");
    let report = a.metro.verify(id).await.expect("verify");
    assert!(!report.differences.is_empty(), "verify sees the paused changes");

    a.metro.resume(id).expect("resume");
    wait_state(&a.metro, PairState::Normal).await;
    assert_identical(&a, &b, fs);
    let p = &a.metro.list_pairs()[0];
    assert_eq!((p.dcl_chunks, p.dcl_dirs, p.dcl_inodes), (0, 0, 0), "DCL empty when Normal");
    let report = a.metro.verify(id).await.expect("verify");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(report.inodes_compared, 4, "root, before, d, while-paused");

    // The secondary refuses host access; the pair can be deleted, leaving two filesystems.
    assert!(b.metro.export_by_path("/t").is_none());
    assert!(matches!(b.metro.getattr(fs, ROOT_INO).await, Err(metrofs_core::FsError::Busy(_))));
    a.metro.delete_pair(id).await.expect("delete");
    assert!(a.metro.list_pairs().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.metro.list_pairs().is_empty(), "the peer forgets the pair too");
    assert!(b.metro.export_by_path("/t").is_some(), "its copy is an independent fs now");
}

/// Four clients at once on shared directories: overlapping random writes, creates, renames and
/// removes, dual-written. The sides must stay identical without any resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_never_make_the_sides_diverge() {
    let (a, b) = pair_of_sites().await;
    let (fs, _) = normal_pair(&a, "c").await;
    let shared = create(&a.metro, fs, ROOT_INO, "shared").await;
    let seed: u64 = std::env::var("METROFS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    println!("seed {seed}");
    let mut tasks = Vec::new();
    for client in 0..4u64 {
        let m = a.metro.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(client * 1442695040888963407 + 1);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for i in 0..150u64 {
                let name = format!("f{}", next() % 12);
                match next() % 6 {
                    0 | 1 => {
                        let off = next() % (256 << 10);
                        let len = 1 + next() % (64 << 10);
                        let data = vec![(client * 50 + i % 50) as u8; len as usize];
                        write(&m, fs, shared, off, &data).await;
                    }
                    2 => {
                        let body = OpBody::Create { dir: ROOT_INO, name: name.clone().into(), how: CreateHow::Unchecked(SetAttr::default()), mode: 0o644, uid: 0, gid: 0 };
                        if let Ok(r) = m.change(fs, body, &caller()).await {
                            let ino = r.obj.expect("attr").ino;
                            let _ = m.change(fs, OpBody::Write { ino, offset: next() % 8192, data: Bytes::from(vec![client as u8; 100]), stable: Stability::Unstable }, &caller()).await;
                        }
                    }
                    3 => {
                        let to = format!("f{}", next() % 12);
                        let _ = m.change(fs, OpBody::Rename { from_dir: ROOT_INO, from_name: name.into(), to_dir: ROOT_INO, to_name: to.into() }, &caller()).await;
                    }
                    4 => {
                        let _ = m.change(fs, OpBody::Remove { dir: ROOT_INO, name: name.into() }, &caller()).await;
                    }
                    _ => {
                        let attr = SetAttr { size: Some(next() % (300 << 10)), ..SetAttr::default() };
                        let _ = m.change(fs, OpBody::SetAttr { ino: shared, attr, guard: None }, &caller()).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let p = &a.metro.list_pairs()[0];
    assert_eq!(p.state, PairState::Normal, "no divergence detected: {:?}", p.alarms);
    assert_eq!((p.dcl_chunks, p.dcl_dirs, p.dcl_inodes), (0, 0, 0), "DCL empty when Normal");
    assert_identical(&a, &b, fs);
}

/// Bad input on the link: an op from an old epoch, a duplicate, an unknown pair, an op for the
/// serving side: each refused with its reason, nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondary_refuses_stale_duplicate_and_misdirected_ops() {
    use metrofs_core::{Epoch, FsOp, Seq, Time};
    use metrofs_metro::proto::{PairId, Request, Response};
    let (a, b) = pair_of_sites().await;
    let (fs, view) = normal_pair(&a, "e").await;
    let id: PairId = view.id.parse().expect("id");
    let before = visible(b.metro.array().store(), fs);
    let next = b.metro.array().store().next_inode(fs).expect("next inode");
    let op = |name: &str| FsOp {
        fs,
        time: Time::new(2_000_000_000, 0),
        new_inode: Some(next),
        body: OpBody::Mkdir { dir: ROOT_INO, name: name.into(), mode: 0o755, uid: 0, gid: 0 },
    };
    let refused = |r: Response| match r {
        Response::Refused(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let old = Request::Replicate { pair: id, epoch: Epoch(0), session: 1, seq: Seq(0), op: op("old"), reply_key: None, order: None };
    assert!(refused(b.metro.handle(old, Bytes::new()).await).contains("epoch"));
    let unknown = Request::Replicate { pair: PairId(12345), epoch: Epoch(1), session: 1, seq: Seq(0), op: op("u"), reply_key: None, order: None };
    assert!(refused(b.metro.handle(unknown, Bytes::new()).await).contains("unknown"));
    let to_primary = Request::Replicate { pair: id, epoch: Epoch(1), session: 1, seq: Seq(0), op: op("p"), reply_key: None, order: None };
    assert!(refused(a.metro.handle(to_primary, Bytes::new()).await).contains("serves"));
    assert_eq!(visible(b.metro.array().store(), fs), before, "nothing applied");
    // The same (session, seq) twice: applied once.
    let first = Request::Replicate { pair: id, epoch: Epoch(1), session: 77, seq: Seq(5), op: op("once"), reply_key: None, order: None };
    let applied = b.metro.handle(first.clone(), Bytes::new()).await;
    assert!(matches!(applied, Response::Applied(Ok(_))), "{applied:?}");
    assert!(refused(b.metro.handle(first, Bytes::new()).await).contains("already applied"));
}

/// Namespace ops are numbered by the serving side and applied in that order on the twin, even
/// when they arrive out of order; a refused op passes the turn on; an op of an older link
/// session is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_ops_are_applied_in_their_order_on_the_twin() {
    use metrofs_core::{Epoch, FsOp, Seq, Time};
    use metrofs_metro::proto::{Order, PairId, Request, Response};
    let (a, b) = pair_of_sites().await;
    let (fs, view) = normal_pair(&a, "o").await;
    let id: PairId = view.id.parse().expect("id");
    let epoch = Epoch(view.epoch);
    let next = b.metro.array().store().next_inode(fs).expect("next inode");
    let at = Time::new(2_000_000_000, 0);
    let mkdir = FsOp { fs, time: at, new_inode: Some(next), body: OpBody::Mkdir { dir: ROOT_INO, name: "x".into(), mode: 0o755, uid: 0, gid: 0 } };
    let rename = FsOp {
        fs,
        time: at,
        new_inode: None,
        body: OpBody::Rename { from_dir: ROOT_INO, from_name: "x".into(), to_dir: ROOT_INO, to_name: "y".into() },
    };
    // A link session far above the ones the real link used.
    let link = 1_000;
    let req = |seq: u64, op: FsOp, n: u64, epoch: Epoch| Request::Replicate {
        pair: id,
        epoch,
        session: 99,
        seq: Seq(seq),
        op,
        reply_key: None,
        order: Some(Order { link, n }),
    };
    // Number 1 (the rename) arrives first: it waits for number 0 (the mkdir it renames).
    let m = b.metro.clone();
    let second = tokio::spawn({
        let r = req(1, rename, 1, epoch);
        async move { m.handle(r, Bytes::new()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "op 1 must wait for op 0");
    let first = b.metro.handle(req(0, mkdir, 0, epoch), Bytes::new()).await;
    assert!(matches!(first, Response::Applied(Ok(_))), "{first:?}");
    let second = second.await.expect("join");
    assert!(matches!(second, Response::Applied(Ok(_))), "the rename found what it renames: {second:?}");
    let store = b.metro.array().store();
    assert!(store.lookup(fs, ROOT_INO, b"y").is_ok() && store.lookup(fs, ROOT_INO, b"x").is_err());
    // Number 2 is refused (old epoch): number 3 still gets its turn at once.
    let stale = b.metro.handle(req(2, FsOp { fs, time: at, new_inode: None, body: OpBody::Remove { dir: ROOT_INO, name: "y".into() } }, 2, Epoch(0)), Bytes::new()).await;
    assert!(matches!(&stale, Response::Refused(why) if why.contains("epoch")), "{stale:?}");
    let rmdir = FsOp { fs, time: at, new_inode: None, body: OpBody::Rmdir { dir: ROOT_INO, name: "y".into() } };
    let third = tokio::time::timeout(std::time::Duration::from_secs(2), b.metro.handle(req(3, rmdir.clone(), 3, epoch), Bytes::new()))
        .await
        .expect("a refused op passes its turn on");
    assert!(matches!(third, Response::Applied(Ok(_))), "{third:?}");
    // An older link session of the same sender run is over.
    let mut old = req(4, rmdir, 0, epoch);
    if let Request::Replicate { order, .. } = &mut old {
        *order = Some(Order { link: link - 1, n: 0 });
    }
    let old = b.metro.handle(old, Bytes::new()).await;
    assert!(matches!(&old, Response::Refused(why) if why.contains("old link session")), "{old:?}");
}

/// Verify lists the peer's inodes and a directory's entries in pages: a directory whose
/// listing is far larger than a link header (64 KiB) is compared whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_pages_through_a_directory_larger_than_a_link_header() {
    let (a, b) = pair_of_sites().await;
    let (fs, view) = normal_pair(&a, "big").await;
    // 4000 names of 60 bytes: about 300 KiB of entries.
    let names: Vec<String> = (0..4000).map(|i| format!("{i:05}-{}", "n".repeat(54))).collect();
    let mut tasks = Vec::new();
    for chunk in names.chunks(500) {
        let (m, chunk) = (a.metro.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for n in chunk {
                create(&m, fs, ROOT_INO, &n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let id = view.id.parse().expect("id");
    let report = a.metro.verify(id).await.expect("verify");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(report.inodes_compared, 4001, "root and every file");
    let v = a.metro.show(id).expect("show").verify.expect("verify progress");
    assert_eq!((v.status.as_str(), v.inodes_done, v.inodes_total), ("Done", 4001, 4001), "{v:?}");
    // A difference in that directory is still seen: remove one name on the twin only.
    let victim = names[3999].clone();
    b.metro.array().store().apply(&metrofs_core::FsOp {
        fs,
        time: metrofs_core::Time::new(3_000_000_000, 0),
        new_inode: None,
        body: OpBody::Remove { dir: ROOT_INO, name: victim.into_bytes() },
    }).expect("remove on the twin");
    let report = a.metro.verify(id).await.expect("verify");
    assert!(report.differences.iter().any(|d| d.contains("only here")), "{:?}", report.differences);
}

/// The serving side's record changes reach the twin in order: a resume with nothing to copy
/// goes Synchronizing → Normal at once, and the twin must end Normal with its copy
/// Consistent every time (two records sent by two tasks used to arrive swapped now and then,
/// leaving the twin Synchronizing and Inconsistent while the serving side was Normal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_record_changes_reach_the_twin_in_order() {
    let (a, b) = pair_of_sites().await;
    let (_, view) = normal_pair(&a, "q").await;
    let id = view.id.parse().expect("pair id");
    for round in 0..60 {
        // Paused, then at once Synchronizing and Normal: three records sent back to back.
        a.metro.pause(id).expect("pause");
        a.metro.resume(id).expect("resume");
        wait_state(&a.metro, PairState::Normal).await;
        // The twin hears Normal within a few round trips; it must not be left behind.
        let mut last = None;
        for _ in 0..100 {
            let v = b.metro.list_pairs().into_iter().next().expect("the twin has the pair");
            if v.state == PairState::Normal && v.local_data == metrofs_metro::engine::DataStatus::Consistent {
                last = None;
                break;
            }
            last = Some((v.state, v.local_data));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(last.is_none(), "round {round}: the serving side is Normal, the twin still {last:?}");
    }
}

/// The LOG keys of the inodes the next creations get are made resident ahead, a batch at a
/// time: new files then append nothing to the LOG (so their COMMIT finds it durable), and the
/// sides stay identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_find_their_log_keys_reserved() {
    let (a, b) = pair_of_sites().await;
    let (fs, _) = normal_pair(&a, "t").await;
    let first = create(&a.metro, fs, ROOT_INO, "f0").await;
    write(&a.metro, fs, first, 0, b"0").await;
    let (resident, _) = a.metro.log_extents();
    // 64 inodes: attributes and first region of each, the new file's among them.
    assert!(resident >= 128, "reserved ahead: {resident} resident keys");
    for i in 1..40 {
        let f = create(&a.metro, fs, ROOT_INO, &format!("f{i}")).await;
        write(&a.metro, fs, f, 0, &[i as u8; 4096]).await;
        a.metro.change(fs, OpBody::Commit { ino: f }, &caller()).await.expect("commit");
    }
    assert_eq!(a.metro.log_extents().0, resident, "the next 39 files appended no LOG key");
    assert_identical(&a, &b, fs);
}
