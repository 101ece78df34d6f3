//! `kill -9` in the middle of a stream of WRITE + COMMIT: after a restart every committed byte
//! is there, and the handles taken before the crash still work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::stable_how;

use crate::harness::ArrayProc;
use crate::make_fs;
use crate::nfs::{rt, Client, LOCALHOST};
use crate::tools;

const CHUNK_BYTES: usize = 64 << 10;
/// WRITEs between two COMMITs.
const WRITES_PER_COMMIT: u64 = 4;
/// Kill once this much is committed (the writer keeps going meanwhile).
const KILL_AFTER_BYTES: u64 = 24 << 20;
/// Upper bound of the stream, so the test ends whatever happens.
const STREAM_MAX_BYTES: u64 = 1 << 30;
const KILL_WAIT_MS: u64 = 60_000;

#[test]
fn committed_bytes_and_handles_survive_kill_9() {
    let mut a = ArrayProc::start();
    make_fs(&a, "crash");
    let data = Arc::new(tools::pattern(9, STREAM_MAX_BYTES as usize / 16));
    let body = |off: u64| -> &[u8] {
        // The stream repeats a 64 MiB pattern; offset-dependent so misplaced chunks show.
        let start = (off % (data.len() as u64)) as usize;
        &data[start..start + CHUNK_BYTES]
    };

    // Before: a directory and a file in it; remember their handles.
    let (root, dir, file, verf_before) = rt().block_on(async {
        let mut c = Client::mount(a.nfs, "crash", LOCALHOST)
            .await
            .expect("mount");
        let root = c.root.clone();
        let dir = c.mkdir(&root, "dir").await.expect("mkdir");
        let file = c.create(&dir, "stream").await.expect("create");
        let verf = c.commit(&file).await.expect("commit");
        (root, dir, file, verf)
    });

    let committed = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writer_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (committed, written, writer_done, data) = (
            committed.clone(),
            written.clone(),
            writer_done.clone(),
            data.clone(),
        );
        let (nfs, root, file) = (a.nfs, root.clone(), file.clone());
        std::thread::spawn(move || {
            let body = |off: u64| -> Vec<u8> {
                let start = (off % (data.len() as u64)) as usize;
                data[start..start + CHUNK_BYTES].to_vec()
            };
            let r: Result<(), String> = rt().block_on(async {
                let mut c = Client::connect(nfs, LOCALHOST, root)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut off = 0u64;
                let mut n = 0u64;
                while off < STREAM_MAX_BYTES {
                    let (verf, _) = c
                        .write(&file, off, &body(off), stable_how::UNSTABLE)
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    off += CHUNK_BYTES as u64;
                    written.store(off, Ordering::SeqCst);
                    n += 1;
                    if n.is_multiple_of(WRITES_PER_COMMIT) {
                        let cv = c.commit(&file).await.map_err(|e| format!("{e:?}"))?;
                        // Same verifier as the writes: nothing was lost in between.
                        assert_eq!(cv, verf, "verifier changed while the array ran");
                        committed.store(off, Ordering::SeqCst);
                    }
                }
                Ok(())
            });
            writer_done.store(true, Ordering::SeqCst);
            r
        })
    };

    let deadline = Instant::now() + Duration::from_millis(KILL_WAIT_MS);
    while committed.load(Ordering::SeqCst) < KILL_AFTER_BYTES {
        assert!(
            !writer_done.load(Ordering::SeqCst),
            "writer stopped early: {:?}",
            writer.join()
        );
        assert!(
            Instant::now() < deadline,
            "writer too slow: {} bytes committed",
            committed.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    a.kill9();
    let result = writer.join().expect("writer thread");
    assert!(result.is_err(), "the writer never noticed the crash");
    let committed = committed.load(Ordering::SeqCst);
    let written = written.load(Ordering::SeqCst);
    eprintln!("killed with {committed} bytes committed, {written} written");

    a.spawn();
    rt().block_on(async {
        // No MOUNT, no LOOKUP: the handles from before the crash.
        let mut c = Client::connect(a.nfs, LOCALHOST, root.clone())
            .await
            .expect("connect");
        c.getattr(&root).await.expect("root handle after restart");
        c.getattr(&dir).await.expect("dir handle after restart");
        let attr = c.getattr(&file).await.expect("file handle after restart");
        assert!(
            attr.size >= committed,
            "size {} < committed {committed}",
            attr.size
        );
        assert_eq!(
            c.lookup(&dir, "stream").await.expect("lookup").data,
            file.data,
            "same handle by name"
        );

        let mut off = 0u64;
        while off < committed {
            let want = (committed - off).min(4 << 20) as usize;
            let got = c
                .read(&file, off, want)
                .await
                .expect("read committed range");
            assert_eq!(got.len(), want, "short read at {off}");
            for (i, chunk) in got.chunks(CHUNK_BYTES).enumerate() {
                let at = off + (i * CHUNK_BYTES) as u64;
                assert!(
                    chunk == &body(at)[..chunk.len()],
                    "committed bytes at {at} differ after the crash"
                );
            }
            off += want as u64;
        }

        // A new run, a new write verifier: clients know to resend uncommitted writes.
        let (verf_after, _) = c
            .write(&file, committed, body(committed), stable_how::UNSTABLE)
            .await
            .expect("write after restart");
        assert_ne!(
            verf_after, verf_before,
            "write verifier unchanged across a restart"
        );
    });
}
