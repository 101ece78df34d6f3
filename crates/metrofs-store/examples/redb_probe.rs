//! What redb's commits cost here and what a non-durable commit leaves after `kill -9`.
//!
//! `cargo run -p metrofs-store --release --example redb_probe -- DIR` measures; with
//! `-- DIR child` it commits (a durable one, then non-durable ones), prints "ready" and waits to
//! be killed; the parent then reopens and reports which commits survived.

use std::io::{BufRead, Write};
use std::time::Instant;

use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};

const T: TableDefinition<u64, u64> = TableDefinition::new("t");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: redb_probe DIR [child]")?);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("probe.redb");
    if args.get(2).map(String::as_str) == Some("child") {
        let _ = std::fs::remove_file(&path);
        let db = Database::create(&path)?;
        let w = db.begin_write()?;
        w.open_table(T)?.insert(0, 0)?;
        w.commit()?;
        for i in 1..=1000u64 {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::None)?;
            w.open_table(T)?.insert(i, i)?;
            w.commit()?;
        }
        println!("ready");
        std::io::stdout().flush()?;
        std::thread::sleep(std::time::Duration::from_secs(60));
        return Ok(());
    }
    // Crash probe: a child commits 1 durable + 1000 non-durable, then is killed.
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg(&dir)
        .arg("child")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    child.kill()?;
    child.wait()?;
    let t0 = Instant::now();
    let db = Database::create(&path)?;
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    let r = db.begin_read()?;
    let n = r.open_table(T)?.len()?;
    println!("after kill -9: {n} of 1001 rows survived (1 durable + 1000 non-durable); reopen {open_ms:.1} ms");
    drop(r);

    for (label, durable) in [("non-durable", false), ("durable", true)] {
        let dur = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let n = if durable { 200 } else { 20_000 };
        let t0 = Instant::now();
        for i in 0..n {
            let mut w = db.begin_write()?;
            w.set_durability(dur)?;
            w.open_table(T)?.insert(10_000 + i, i)?;
            w.commit()?;
        }
        println!(
            "{label} commit of one insert: {:.1} us",
            t0.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    let r0 = Instant::now();
    for i in 0..20_000u64 {
        let r = db.begin_read()?;
        let _ = r.open_table(T)?.get(10_000 + (i % 200))?;
    }
    println!(
        "read txn + get: {:.2} us",
        r0.elapsed().as_secs_f64() * 1e6 / 20_000.0
    );
    let f = std::fs::File::create(dir.join("fsync.probe"))?;
    let t0 = Instant::now();
    for _ in 0..200 {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 4096], 0)?;
        f.sync_data()?;
    }
    println!(
        "4 KiB pwrite + fdatasync: {:.1} us",
        t0.elapsed().as_secs_f64() * 1e6 / 200.0
    );
    Ok(())
}
