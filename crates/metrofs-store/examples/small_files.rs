//! Small-file cycle timing (`small_files DIR N`): create, 4 KiB UNSTABLE write, COMMIT, one
//! thread; prints the median of each step.
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
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir).expect("open");
    let fs = FsId(1);
    s.create_fs("x", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");
    let data = Bytes::from(vec![7u8; 4096]);
    let mut steps: [Vec<Duration>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        let body = OpBody::Create {
            dir: ROOT_INO,
            name: format!("s{i}").into_bytes(),
            how: CreateHow::Guarded(SetAttr::default()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let op = FsOp {
            fs,
            time: Time::new(2, 0),
            new_inode: Some(s.next_inode(fs).expect("next")),
            body,
        };
        let ino = s.apply(&op).expect("create").obj.expect("obj").ino;
        steps[0].push(t.elapsed());
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
        steps[1].push(t.elapsed());
        let t = Instant::now();
        s.apply(&FsOp {
            fs,
            time: Time::new(3, 0),
            new_inode: None,
            body: OpBody::Commit { ino },
        })
        .expect("commit");
        steps[2].push(t.elapsed());
    }
    let total = t0.elapsed();
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "{n} small files: {:.0}/s; median create {:?}, write {:?}, commit {:?}",
        n as f64 / total.as_secs_f64(),
        med(&mut steps[0]),
        med(&mut steps[1]),
        med(&mut steps[2])
    );
}
