//! READDIRPLUS paging through 100 000 entries while other entries come and go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use metrofs_core::{Backend, Caller, CreateHow, FileHandle, Ino, OpBody, SetAttr};
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Pack;

use crate::harness::*;

const ENTRIES: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdirplus_pages_through_100k_entries_with_concurrent_changes() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (big, _) = mkdir(&mut c, &rfh, "big", 0o755).await.expect("mkdir");
    let dir = FileHandle::from_bytes(&big.data).expect("our handle").ino;

    // Fill it through the backend (the NFS path for creates is tested elsewhere), from a few
    // tasks at once so the store can commit them in groups.
    let t = Instant::now();
    const FILLERS: usize = 8;
    let mut fillers = Vec::new();
    for k in 0..FILLERS {
        let array = srv.array.clone();
        let (fs, addr) = (srv.fs, srv.addr);
        fillers.push(tokio::spawn(async move {
            let caller = Caller {
                addr,
                uid: 0,
                gid: 0,
                gids: vec![],
                xid: 0,
                reply_key: None,
            };
            for i in (k..ENTRIES).step_by(FILLERS) {
                let body = create_body(dir, format!("f{i:06}"));
                array.change(fs, body, &caller).await.expect("create");
            }
        }));
    }
    for f in fillers {
        f.await.expect("filler");
    }
    eprintln!("created {ENTRIES} entries in {:?}", t.elapsed());

    // Meanwhile another client creates and removes other names in the same directory.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let mut c2 = root(&srv).await;
        let big = big.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("churn{n}");
                create(&mut c2, &big, &name).await.expect("churn create");
                if n.is_multiple_of(2) {
                    remove(&mut c2, &big, &name).await.expect("churn remove");
                }
                if n >= 3 {
                    // Also remove an older one that stayed, so entries vanish behind and ahead.
                    let _ = remove(&mut c2, &big, &format!("churn{}", n - 3)).await;
                }
                n += 1;
            }
            n
        })
    };

    let t = Instant::now();
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut cookie = 0;
    let mut pages = 0;
    loop {
        let args = READDIRPLUS3args {
            dir: big.clone(),
            cookie,
            cookieverf: cookieverf3::default(),
            dircount: 16 << 10,
            maxcount: 64 << 10,
        };
        let res = c.readdirplus(&args).await.expect("rpc");
        assert!(res.packed_size() <= 64 << 10);
        let ok = match res {
            Nfs3Result::Ok(ok) => ok,
            Nfs3Result::Err((s, _)) => panic!("READDIRPLUS: {s}"),
        };
        pages += 1;
        for e in ok.reply.entries.0 {
            *seen.entry(e.name.0.to_vec()).or_default() += 1;
            if e.name.0.starts_with(b"f") {
                assert!(e.name_handle.is_some() && e.name_attributes.is_some());
            }
            cookie = e.cookie;
        }
        if ok.reply.eof {
            break;
        }
    }
    let listing = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let churned = churn.await.expect("churn task");
    eprintln!("listed in {pages} pages in {listing:?} while {churned} churn creates ran");
    assert!(churned > 0, "the listing ran alongside changes");

    for (name, n) in &seen {
        assert_eq!(*n, 1, "{} seen {n} times", String::from_utf8_lossy(name));
    }
    for i in 0..ENTRIES {
        assert!(
            seen.contains_key(format!("f{i:06}").as_bytes()),
            "f{i:06} missing"
        );
    }
    assert!(seen.contains_key(b".".as_slice()) && seen.contains_key(b"..".as_slice()));
    srv.stop().await;
}

fn create_body(dir: Ino, name: String) -> OpBody {
    OpBody::Create {
        dir,
        name: name.into_bytes(),
        how: CreateHow::Guarded(SetAttr::default()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}
