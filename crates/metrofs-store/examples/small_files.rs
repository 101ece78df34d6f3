//! Small-file cycle timing (`small_files DIR N [THREADS]`): create, 4 KiB UNSTABLE write,
//! COMMIT, N files per thread; prints files/s and the median of each step. Creating ops are
//! serialised (as the metro module does per fs); COMMITs of several threads share durable
//! commits. With `SYNC_NS=1` every create is followed by `Store::sync()` (outside the creating
//! lock), as the serving side of a pair did before the store had its op journal.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrofs_core::{
    CreateHow, ExportRules, FsId, FsOp, OpBody, SetAttr, Stability, Time, ROOT_INO,
};
use metrofs_store::Store;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let threads: usize = std::env::args()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir).expect("open");
    let fs = FsId(1);
    s.create_fs("x", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");
    let data = Bytes::from(vec![7u8; 4096]);
    let sync_ns = std::env::var("SYNC_NS").is_ok_and(|v| v == "1");
    let creating = Mutex::new(());
    let steps: Mutex<[Vec<Duration>; 3]> = Mutex::new([Vec::new(), Vec::new(), Vec::new()]);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..threads {
            let (s, data, creating, steps) = (&s, &data, &creating, &steps);
            sc.spawn(move || {
                for i in 0..n {
                    let t = Instant::now();
                    let ino = {
                        let _g = creating.lock().expect("lock");
                        let body = OpBody::Create {
                            dir: ROOT_INO,
                            name: format!("s{th}-{i}").into_bytes(),
                            how: CreateHow::Guarded(SetAttr::default()),
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                        };
                        let new_inode = Some(s.next_inode(fs).expect("next"));
                        let op = FsOp {
                            fs,
                            time: Time::new(2, 0),
                            new_inode,
                            body,
                        };
                        s.apply(&op).expect("create").obj.expect("obj").ino
                    };
                    if sync_ns {
                        s.sync().expect("sync");
                    }
                    let c = t.elapsed();
                    let t = Instant::now();
                    let w = OpBody::Write {
                        ino,
                        offset: 0,
                        data: data.clone(),
                        stable: Stability::Unstable,
                    };
                    s.apply(&FsOp {
                        fs,
                        time: Time::new(3, 0),
                        new_inode: None,
                        body: w,
                    })
                    .expect("write");
                    let w = t.elapsed();
                    let t = Instant::now();
                    let body = OpBody::Commit { ino };
                    s.apply(&FsOp {
                        fs,
                        time: Time::new(3, 0),
                        new_inode: None,
                        body,
                    })
                    .expect("commit");
                    let m = t.elapsed();
                    let mut st = steps.lock().expect("lock");
                    st[0].push(c);
                    st[1].push(w);
                    st[2].push(m);
                }
            });
        }
    });
    let total = t0.elapsed();
    let mut st = steps.into_inner().expect("steps");
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{} small files, {threads} thread(s){}: {:.0}/s; median create {:?}, write {:?}, commit {:?}",
        n * threads,
        if sync_ns { ", each create synced" } else { "" },
        (n * threads) as f64 / total.as_secs_f64(),
        med(&mut st[0]),
        med(&mut st[1]),
        med(&mut st[2])
    );
}
