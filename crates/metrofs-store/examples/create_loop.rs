//! Profiling aid: N creates in one directory (`create_loop DIR N`). With `SYNC_NS=1` each
//! create is followed by `Store::sync()` (what the serving side of a pair did before the store
//! had its op journal).
use metrofs_core::{CreateHow, ExportRules, FsId, FsOp, OpBody, SetAttr, Time, ROOT_INO};
use metrofs_store::Store;
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir).expect("open");
    let fs = FsId(1);
    s.create_fs("x", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");
    let sync_ns = std::env::var("SYNC_NS").is_ok_and(|v| v == "1");
    let t = std::time::Instant::now();
    for i in 0..n {
        let body = OpBody::Create {
            dir: ROOT_INO,
            name: format!("file-{i}").into_bytes(),
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
        s.apply(&op).expect("create");
        if sync_ns {
            s.sync().expect("sync");
        }
    }
    let e = t.elapsed();
    println!(
        "{n} creates{}: {:.1} us each, {:.0}/s",
        if sync_ns { ", each synced" } else { "" },
        e.as_secs_f64() * 1e6 / f64::from(n),
        f64::from(n) / e.as_secs_f64()
    );
}
