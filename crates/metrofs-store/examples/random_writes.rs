//! 4 KiB random UNSTABLE writes into a fresh 256 MiB region (`random_writes DIR N`): latency of
//! `apply` alone, p50 and p99.
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
        .unwrap_or(100_000);
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir).expect("open");
    let fs = FsId(1);
    s.create_fs("x", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");
    let body = OpBody::Create {
        dir: ROOT_INO,
        name: b"r".to_vec(),
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
    let page = Bytes::from(vec![0xa5u8; 4096]);
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = OpBody::Write {
            ino,
            offset: (x % 65_536) * 4096,
            data: page.clone(),
            stable: Stability::Unstable,
        };
        let op = FsOp {
            fs,
            time: Time::new(3, i as u32),
            new_inode: None,
            body: w,
        };
        let t = Instant::now();
        s.apply(&op).expect("write");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "{n} random 4 KiB writes: p50 {:?}, p99 {:?}",
        lat[n / 2],
        lat[n * 99 / 100]
    );
}
