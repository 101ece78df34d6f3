//! Micro benchmark of the store alone (no RPC): `cargo run --release -p metrofs-store --example
//! store_bench -- [DIR]` (default: a directory under /tmp, removed after). Prints one line per
//! measurement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrofs_core::{
    CreateHow, ExportRules, FsId, FsOp, Ino, OpBody, SetAttr, Stability, Time, ROOT_INO,
};
use metrofs_store::Store;

fn op(s: &Store, fs: FsId, body: OpBody) -> FsOp {
    let new_inode = if body.creates() {
        Some(s.next_inode(fs).expect("next_inode"))
    } else {
        None
    };
    FsOp {
        fs,
        time: Time::new(1_700_000_000, 0),
        new_inode,
        body,
    }
}

fn create(s: &Store, fs: FsId, dir: Ino, name: &str) -> Ino {
    let body = OpBody::Create {
        dir,
        name: name.as_bytes().to_vec(),
        how: CreateHow::Guarded(SetAttr::default()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    s.apply(&op(s, fs, body))
        .expect("create")
        .obj
        .expect("obj")
        .ino
}

fn write(s: &Store, fs: FsId, ino: Ino, offset: u64, data: &Bytes, stable: Stability) {
    s.apply(&op(
        s,
        fs,
        OpBody::Write {
            ino,
            offset,
            data: data.clone(),
            stable,
        },
    ))
    .expect("write");
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let arg = std::env::args().nth(1);
    let dir = match &arg {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("metrofs-store-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let s = Arc::new(Store::open(&dir).expect("open"));
    let fs = FsId(42);
    s.create_fs("bench", fs, ExportRules::default(), Time::new(1, 0))
        .expect("fs");

    // 1. Sequential 1 MiB UNSTABLE writes of a 1 GiB file, then COMMIT.
    let f = create(&s, fs, ROOT_INO, "seq");
    let mib = Bytes::from(vec![0x5au8; 1 << 20]);
    let t = Instant::now();
    for i in 0..1024u64 {
        write(&s, fs, f, i << 20, &mib, Stability::Unstable);
    }
    let w = t.elapsed();
    s.apply(&op(&s, fs, OpBody::Commit { ino: f }))
        .expect("commit");
    let wc = t.elapsed();
    println!(
        "sequential 1 MiB writes: {:.2} GiB/s into the page cache; {:.2} GiB/s including the COMMIT",
        1.0 / w.as_secs_f64(),
        1.0 / wc.as_secs_f64()
    );
    let t = Instant::now();
    let mut off = 0;
    while off < 1 << 30 {
        let r = s.read(fs, f, off, 1 << 20).expect("read");
        off += r.data.len() as u64;
    }
    println!(
        "sequential 1 MiB reads: {:.2} GiB/s (page cache)",
        1.0 / t.elapsed().as_secs_f64()
    );

    // 2. 4 KiB random UNSTABLE writes into a 256 MiB region of that file.
    let page = Bytes::from(vec![0xa5u8; 4096]);
    let mut lat = Vec::with_capacity(50_000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % 65_536) * 4096;
        let t = Instant::now();
        write(&s, fs, f, offset, &page, Stability::Unstable);
        lat.push(t.elapsed());
    }
    println!(
        "4 KiB random UNSTABLE write: p50 {:?}, p99 {:?}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    let mut lat = Vec::new();
    for i in 0..300u64 {
        let t = Instant::now();
        write(
            &s,
            fs,
            f,
            (i * 7919 % 65_536) * 4096,
            &page,
            Stability::FileSync,
        );
        lat.push(t.elapsed());
    }
    println!(
        "4 KiB FILE_SYNC write: p50 {:?}, p99 {:?}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // 3. Namespace ops alone.
    let d = s
        .apply(&op(
            &s,
            fs,
            OpBody::Mkdir {
                dir: ROOT_INO,
                name: b"many".to_vec(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        ))
        .expect("mkdir")
        .obj
        .expect("obj")
        .ino;
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        create(&s, fs, d, &format!("f{i}"));
    }
    println!(
        "create (non-durable): {:.0}/s",
        f64::from(n) / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for i in 0..n {
        s.lookup(fs, d, format!("f{i}").as_bytes()).expect("lookup");
    }
    println!(
        "lookup + getattr: {:.0}/s",
        f64::from(n) / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for i in 0..n {
        s.apply(&op(
            &s,
            fs,
            OpBody::Remove {
                dir: d,
                name: format!("f{i}").into_bytes(),
            },
        ))
        .expect("remove");
    }
    println!(
        "remove (non-durable): {:.0}/s",
        f64::from(n) / t.elapsed().as_secs_f64()
    );

    // 4. Small files: create + 4 KiB write + COMMIT, 1 and 4 threads (group commit).
    for threads in [1u64, 4] {
        let done = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let hs: Vec<_> = (0..threads)
            .map(|th| {
                let (s, done, page) = (s.clone(), done.clone(), page.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while t.elapsed() < Duration::from_secs(3) {
                        // next_inode + create must not race between threads: one fs, so one
                        // directory per thread is not enough; serialise the creating op.
                        let ino = {
                            static L: std::sync::Mutex<()> = std::sync::Mutex::new(());
                            let _g = L.lock().expect("lock");
                            create(&s, fs, ROOT_INO, &format!("small-{threads}-{th}-{i}"))
                        };
                        write(&s, fs, ino, 0, &page, Stability::Unstable);
                        s.apply(&op(&s, fs, OpBody::Commit { ino }))
                            .expect("commit");
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("join");
        }
        println!(
            "small files (create + 4 KiB write + COMMIT), {threads} thread(s): {:.0}/s",
            done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
        );
    }
    drop(s);
    if arg.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
