//! What a failover needs the resync to copy besides names and bytes: after pause → changes
//! (creates, removes that free inode numbers, renames, a reused number) → resume → Normal, the
//! two stores are identical *including* READDIR slots, each directory's next slot, the free
//! inode table with generations and the never-used mark; a READDIR cookie taken on the primary
//! goes on working on the secondary's store; and the next inode either side would hand out is
//! the same.

use crate::{free_addr, site};
use std::time::Duration;

use bytes::Bytes;
use metrofs_core::{Caller, CreateHow, ExportRules, FsId, Ino, OpBody, SetAttr, Stability, ROOT_INO};
use metrofs_metro::engine::PairState;
use metrofs_metro::Metro;
use metrofs_store::Store;




fn caller() -> Caller {
    Caller { addr: "127.0.0.1:700".parse().expect("addr"), uid: 0, gid: 0, gids: vec![], xid: 1, reply_key: None }
}

async fn change(m: &Metro, fs: FsId, body: OpBody) -> metrofs_core::OpReply {
    use metrofs_core::Backend;
    let kind = body.kind();
    m.change(fs, body, &caller()).await.unwrap_or_else(|e| panic!("{kind}: {e}"))
}

async fn create(m: &Metro, fs: FsId, dir: Ino, name: &str) -> Ino {
    let body = OpBody::Create { dir, name: name.into(), how: CreateHow::Guarded(SetAttr::default()), mode: 0o644, uid: 0, gid: 0 };
    change(m, fs, body).await.obj.expect("attr").ino
}

async fn wait_state(m: &Metro, want: PairState) {
    for _ in 0..400 {
        if m.list_pairs().first().is_some_and(|p| p.state == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pair never reached {want:?}: {:#?}", m.list_pairs());
}

/// Both stores' images, compared whole (nothing masked).
fn assert_same_image(a: &Store, b: &Store, fs: FsId) {
    let (ia, ib) = (a.image(fs).expect("image a"), b.image(fs).expect("image b"));
    assert!(ia == ib, "the sides differ:\n{}", ia.diff(&ib, 20).join("\n"));
    let problems = b.check(fs);
    assert!(problems.is_empty(), "secondary consistent: {problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_copies_slots_free_inodes_and_the_allocator() {
    let (la, lb) = (free_addr(), free_addr());
    let a = site("site-a", "site-b", la, lb).await;
    let b = site("site-b", "site-a", lb, la).await;
    assert!(a.metro.wait_link(Duration::from_secs(10)).await, "link up");
    let fs = a.metro.array().create_fs("s", ExportRules::default()).expect("fs").id;
    let view = a.metro.create_pair("s", "site-b").await.expect("pair");
    let id: metrofs_metro::proto::PairId = view.id.parse().expect("id");
    wait_state(&a.metro, PairState::Normal).await;
    let (sa, sb) = (a.metro.array().store().clone(), b.metro.array().store().clone());

    // Dual-written: a directory with entries, some removed (gaps in the slots, freed numbers).
    let d = change(&a.metro, fs, OpBody::Mkdir { dir: ROOT_INO, name: b"d".to_vec(), mode: 0o755, uid: 0, gid: 0 }).await.obj.expect("attr").ino;
    for i in 0..20 {
        create(&a.metro, fs, d, &format!("f{i:02}")).await;
    }
    for i in [3, 7, 8] {
        change(&a.metro, fs, OpBody::Remove { dir: d, name: format!("f{i:02}").into() }).await;
    }
    assert_same_image(&sa, &sb, fs);

    // Paused: only this side changes. Creates reuse the freed numbers (a higher generation),
    // then move the never-used mark; removes free numbers again, some of a higher generation,
    // some above the mark the secondary knows.
    a.metro.pause(id).expect("pause");
    let w = create(&a.metro, fs, d, "written").await;
    change(&a.metro, fs, OpBody::Write { ino: w, offset: 0, data: Bytes::from_static(b"paused bytes"), stable: Stability::Unstable }).await;
    let excl = OpBody::Create { dir: d, name: b"excl".to_vec(), how: CreateHow::Exclusive(*b"verifier"), mode: 0o600, uid: 0, gid: 0 };
    change(&a.metro, fs, excl).await;
    let again = create(&a.metro, fs, d, "again").await;
    let gen_again = sa.getattr(fs, again).expect("attr").gen;
    assert!(gen_again.0 > 1, "a reused number: {gen_again:?}");
    let mark = sb.next_inode(fs).expect("next on b");
    for i in 0..5 {
        create(&a.metro, fs, d, &format!("burst{i}")).await;
    }
    assert!(sa.next_inode(fs).expect("next").ino > mark.ino, "the never-used mark moved");
    change(&a.metro, fs, OpBody::Remove { dir: d, name: b"again".to_vec() }).await;
    for i in 0..5 {
        change(&a.metro, fs, OpBody::Remove { dir: d, name: format!("burst{i}").into() }).await;
    }
    for i in (0..20).step_by(2).filter(|i| ![3, 7, 8].contains(i)) {
        change(&a.metro, fs, OpBody::Remove { dir: d, name: format!("f{i:02}").into() }).await;
    }
    // Renames within the directory (new slots for old names) and out of it.
    change(&a.metro, fs, OpBody::Rename { from_dir: d, from_name: b"f01".to_vec(), to_dir: d, to_name: b"r01".to_vec() }).await;
    change(&a.metro, fs, OpBody::Rename { from_dir: d, from_name: b"f05".to_vec(), to_dir: d, to_name: b"f01".to_vec() }).await;
    change(&a.metro, fs, OpBody::Rename { from_dir: d, from_name: b"f09".to_vec(), to_dir: ROOT_INO, to_name: b"up".to_vec() }).await;
    let free_a = sa.image(fs).expect("image").free;
    assert_eq!(free_a.get(&again.0), Some(&gen_again.0), "freed with its higher generation");
    assert!(sa.image(fs).expect("image") != sb.image(fs).expect("image"), "the pause left a difference");

    a.metro.resume(id).expect("resume");
    wait_state(&a.metro, PairState::Normal).await;
    let p = &a.metro.list_pairs()[0];
    assert_eq!((p.dcl_chunks, p.dcl_dirs, p.dcl_inodes), (0, 0, 0), "DCL empty when Normal");
    assert_same_image(&sa, &sb, fs);
    assert_eq!(sa.next_inode(fs).expect("next"), sb.next_inode(fs).expect("next"), "the next (ino, gen) handed out");

    // A listing begun on the primary continues on the secondary (after a failover it would).
    let first = sa.readdir(fs, d, 0, 4, false).expect("readdir");
    assert!(!first.eof);
    let cookie = first.entries.last().expect("entries").cookie;
    let rest = |s: &Store| -> Vec<(Vec<u8>, u64, Ino)> {
        s.readdir(fs, d, cookie, 1000, false).expect("readdir after the cookie").entries.into_iter().map(|e| (e.name, e.cookie, e.ino)).collect()
    };
    let on_b = rest(&sb);
    assert!(!on_b.is_empty());
    assert_eq!(on_b, rest(&sa), "the same entries after the same cookie");

    // And the pair goes on dual-writing without a difference: the next create gets the same
    // number and generation, and the same cookie, on both.
    let after = create(&a.metro, fs, d, "after-resume").await;
    assert_eq!(sb.getattr(fs, after).expect("on b").gen, sa.getattr(fs, after).expect("on a").gen);
    assert_eq!(a.metro.list_pairs()[0].state, PairState::Normal, "{:?}", a.metro.list_pairs()[0].alarms);
    assert_same_image(&sa, &sb, fs);
}
