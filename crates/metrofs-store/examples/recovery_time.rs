//! How long `Store::open` takes after `kill -9` with N files (`recovery_time DIR N`): a child
//! creates N files (every 10th with 4 KiB of data), syncs, makes 1000 more changes without a
//! sync, and is killed; the parent times the reopen (redb repair + our recovery scan).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use metrofs_core::{
    CreateHow, ExportRules, FsId, FsOp, OpBody, SetAttr, Stability, Time, ROOT_INO,
};
use metrofs_store::Store;

fn child(dir: &std::path::Path, n: u32) {
    let s = Store::open(dir).expect("open");
    let fs = FsId(9);
    s.create_fs("r", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");
    let data = Bytes::from(vec![1u8; 4096]);
    for i in 0..n + 1000 {
        if i == n {
            s.sync().expect("sync");
        }
        let body = OpBody::Create {
            dir: ROOT_INO,
            name: format!("f{i}").into_bytes(),
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
        if i % 10 == 0 {
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
        }
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    if args.get(3).map(String::as_str) == Some("child") {
        return child(&dir, n);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = Command::new(std::env::current_exe().expect("exe"))
        .args([&args[1], &n.to_string(), "child"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(c.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    c.kill().expect("kill");
    c.wait().expect("wait");
    let meta = std::fs::metadata(dir.join("meta.redb"))
        .expect("meta")
        .len();
    let t = Instant::now();
    let s = Store::open(&dir).expect("reopen");
    let e = t.elapsed();
    println!(
        "{n} files, meta.redb {} MiB: reopen after kill -9 took {e:?}; recovery {:?}",
        meta >> 20,
        s.last_recovery()
    );
    let t = Instant::now();
    let problems = s.check(FsId(9));
    println!("check(): {} problems in {:?}", problems.len(), t.elapsed());
}
