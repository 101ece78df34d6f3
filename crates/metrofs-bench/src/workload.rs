//! The workloads. Each is a [`Job`] run by `--depth` workers (one connection each) pulling item
//! numbers from a shared counter, or a loop with one request in flight for the latency numbers.
//!
//! Data written carries its own offset in its first 8 bytes and a fixed pseudo-random pattern
//! after that, so the read-back checks every byte came from the right place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use metrofs_core::{Clock, SystemClock};
use nfs3_client::nfs3_types::nfs3::{ftype3, nfs_fh3, nfsstat3, stable_how, writeverf3};

use crate::client::{is_status, Conn, Server};
use crate::stats::{self, mib_per_s, rate, LatencySummary};
use crate::url::NfsUrl;
use crate::{BenchArgs, Rate, Report, Throughput, Workload};

const SEQ_FILE: &str = "seq.dat";
const RAND_FILE: &str = "rand.dat";
const SMALL_BYTES: usize = 4096;
const RAND_BYTES: usize = 4096;
/// Untimed writes before each latency run, so connection setup and first-touch costs stay out.
const WARMUP_OPS: u64 = 20;
/// Most names the cleanup removes from the bench directory.
const CLEANUP_NAMES_MAX: usize = 20_000_000;

/// splitmix64: a tiny deterministic generator for data and offsets (no seam needed: the
/// benchmark's randomness only has to be spread, not secret or replayable elsewhere).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fixed data pattern of every block (`len` bytes).
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(&splitmix64(i).to_le_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// The content of the block at `offset`: the pattern with the offset stamped in front.
pub(crate) fn stamp(buf: &mut [u8], offset: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&offset.to_le_bytes()[..n]);
}

/// Shared state of one parallel phase: the next item, the limit, and why to stop early.
struct Work {
    next: AtomicU64,
    total: u64,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    failed: AtomicBool,
    done: AtomicU64,
    truncated: AtomicBool,
}

impl Work {
    fn new(total: u64, limit: Duration, stop: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Self {
            next: AtomicU64::new(0),
            total,
            deadline: Instant::now() + limit,
            stop,
            failed: AtomicBool::new(false),
            done: AtomicU64::new(0),
            truncated: AtomicBool::new(false),
        })
    }

    fn take(&self) -> Option<u64> {
        if self.failed.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if Instant::now() >= self.deadline {
            self.truncated.store(true, Ordering::Relaxed);
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

/// One item of a parallel workload.
trait Job: Send + Sync + 'static {
    fn run(
        &self,
        conn: &mut Conn,
        scratch: &mut Vec<u8>,
        item: u64,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Runs `job` over items `0..work.total` on every connection at once. Returns the connections;
/// the first error (after the others stopped).
async fn parallel<J: Job>(conns: Vec<Conn>, work: &Arc<Work>, job: Arc<J>) -> Result<Vec<Conn>> {
    let mut handles = Vec::with_capacity(conns.len());
    for conn in conns {
        let work = Arc::clone(work);
        let job = Arc::clone(&job);
        handles.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut scratch = Vec::new();
            while let Some(item) = work.take() {
                if let Err(e) = job.run(&mut conn, &mut scratch, item).await {
                    work.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                work.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(conn)
        }));
    }
    let mut conns = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(anyhow!("a worker died: {join}"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(conns),
    }
}

/// Remembers the write verifier of a file's writes; a change means the server restarted and
/// may have lost UNSTABLE data, which would make the numbers (and the data) meaningless.
#[derive(Default)]
struct Verifier(Mutex<Option<writeverf3>>);

impl Verifier {
    fn check(&self, v: writeverf3, what: &str) -> Result<()> {
        let mut seen = self
            .0
            .lock()
            .map_err(|_| anyhow!("verifier lock poisoned"))?;
        match *seen {
            None => {
                *seen = Some(v);
                Ok(())
            }
            Some(old) if old == v => Ok(()),
            Some(old) => bail!(
                "{what}: write verifier changed from {:02x?} to {:02x?}: the server restarted during \
                 the run and may have dropped uncommitted writes",
                old.0,
                v.0
            ),
        }
    }
}

/// Writes block `item` of a file: `block` bytes at `item * block` (shorter at the end), UNSTABLE.
struct BlockWrite {
    fh: nfs_fh3,
    size: u64,
    block: u64,
    pattern: Arc<Vec<u8>>,
    verifier: Verifier,
}

impl Job for BlockWrite {
    async fn run(&self, conn: &mut Conn, scratch: &mut Vec<u8>, item: u64) -> Result<()> {
        let offset = item * self.block;
        let len = usize::try_from(self.block.min(self.size - offset))?;
        if scratch.len() != len {
            scratch.clear();
            scratch.extend_from_slice(&self.pattern[..len]);
        }
        stamp(scratch, offset);
        let mut done = 0usize;
        while done < len {
            let w = conn
                .write(
                    &self.fh,
                    offset + done as u64,
                    &scratch[done..],
                    stable_how::UNSTABLE,
                )
                .await?;
            self.verifier.check(w.verf, "WRITE")?;
            if w.count == 0 {
                bail!("WRITE at {}: server wrote 0 bytes", offset + done as u64);
            }
            done += w.count as usize;
        }
        Ok(())
    }
}

/// Reads block `item` back and checks every byte.
struct BlockRead {
    fh: nfs_fh3,
    size: u64,
    block: u64,
    pattern: Arc<Vec<u8>>,
}

impl Job for BlockRead {
    async fn run(&self, conn: &mut Conn, _scratch: &mut Vec<u8>, item: u64) -> Result<()> {
        let offset = item * self.block;
        let len = usize::try_from(self.block.min(self.size - offset))?;
        let mut got = 0usize;
        let mut first = true;
        while got < len {
            let at = offset + got as u64;
            let (data, eof) = conn.read(&self.fh, at, u32::try_from(len - got)?).await?;
            if data.is_empty() {
                bail!(
                    "READ at {at}: no data{} before the end of the {}-byte file",
                    if eof { " and eof" } else { "" },
                    self.size
                );
            }
            let expect = &self.pattern[got..got + data.len()];
            let ok = if first {
                let n = data.len().min(8);
                data[..n] == offset.to_le_bytes()[..n] && data[n..] == expect[n..]
            } else {
                data[..] == expect[..]
            };
            if !ok {
                bail!("READ at {at}: the data is not what was written there");
            }
            first = false;
            got += data.len();
        }
        Ok(())
    }
}

/// Small file `item`: CREATE (guarded) + 4 KiB UNSTABLE WRITE + COMMIT.
struct SmallFile {
    dir: nfs_fh3,
    data: Arc<Vec<u8>>,
}

fn small_name(i: u64) -> String {
    format!("f{i:07}")
}

impl Job for SmallFile {
    async fn run(&self, conn: &mut Conn, _scratch: &mut Vec<u8>, item: u64) -> Result<()> {
        let name = small_name(item);
        let fh = conn.create(&self.dir, &name).await?;
        let w = conn.write(&fh, 0, &self.data, stable_how::UNSTABLE).await?;
        if w.count as usize != self.data.len() {
            bail!("WRITE {name}: short write of {} bytes", w.count);
        }
        let verf = conn.commit(&fh, 0, 0).await?;
        if verf != w.verf && w.committed == stable_how::UNSTABLE {
            bail!("COMMIT {name}: write verifier changed: the server restarted during the run");
        }
        Ok(())
    }
}

/// Stat of small file `item`: LOOKUP + GETATTR, checking it is the 4 KiB file written.
struct Stat {
    dir: nfs_fh3,
}

impl Job for Stat {
    async fn run(&self, conn: &mut Conn, _scratch: &mut Vec<u8>, item: u64) -> Result<()> {
        let name = small_name(item);
        let (fh, _) = conn.lookup(&self.dir, &name).await?;
        let attr = conn.getattr(&fh).await?;
        if attr.type_ != ftype3::NF3REG || attr.size != SMALL_BYTES as u64 {
            bail!(
                "GETATTR {name}: expected a regular file of {SMALL_BYTES} bytes, got {:?} of {}",
                attr.type_,
                attr.size
            );
        }
        Ok(())
    }
}

/// Unlink of small file `item`.
struct Unlink {
    dir: nfs_fh3,
}

impl Job for Unlink {
    async fn run(&self, conn: &mut Conn, _scratch: &mut Vec<u8>, item: u64) -> Result<()> {
        conn.remove(&self.dir, &small_name(item)).await
    }
}

/// What the phases share.
struct Ctx {
    conns: Vec<Conn>,
    dir: nfs_fh3,
    block: u64,
    pattern: Arc<Vec<u8>>,
    limit: Duration,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn progress(&self, msg: &str) {
        let _ = self;
        eprintln!("metrofs bench: {msg}");
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// Writes a whole file in blocks with every connection, then COMMITs it.
    /// Returns the handle, the bytes written, the commit time and whether it was cut short.
    async fn write_file(
        &mut self,
        name: &str,
        size: u64,
    ) -> Result<(nfs_fh3, u64, Duration, bool)> {
        let fh = self.conns[0].create(&self.dir, name).await?;
        let blocks = size.div_ceil(self.block);
        let job = Arc::new(BlockWrite {
            fh: fh.clone(),
            size,
            block: self.block,
            pattern: Arc::clone(&self.pattern),
            verifier: Verifier::default(),
        });
        let work = Work::new(blocks, self.limit, Arc::clone(&self.stop));
        self.conns = parallel(std::mem::take(&mut self.conns), &work, Arc::clone(&job)).await?;
        self.check_stop()?;
        let done_blocks = work.done.load(Ordering::Relaxed);
        let bytes = (done_blocks * self.block).min(size);
        let t = Instant::now();
        let verf = self.conns[0].commit(&fh, 0, 0).await?;
        let commit = t.elapsed();
        job.verifier.check(verf, "COMMIT")?;
        Ok((fh, bytes, commit, work.truncated.load(Ordering::Relaxed)))
    }

    async fn read_file(&mut self, fh: &nfs_fh3, size: u64) -> Result<(u64, bool)> {
        let blocks = size.div_ceil(self.block);
        let job = Arc::new(BlockRead {
            fh: fh.clone(),
            size,
            block: self.block,
            pattern: Arc::clone(&self.pattern),
        });
        let work = Work::new(blocks, self.limit, Arc::clone(&self.stop));
        self.conns = parallel(std::mem::take(&mut self.conns), &work, job).await?;
        self.check_stop()?;
        let bytes = (work.done.load(Ordering::Relaxed) * self.block).min(size);
        Ok((bytes, work.truncated.load(Ordering::Relaxed)))
    }

    /// `ops` 4 KiB writes at random aligned offsets below `span`, one in flight.
    async fn random_writes(
        &mut self,
        fh: &nfs_fh3,
        span: u64,
        ops: u64,
        stable: stable_how,
        seed: u64,
    ) -> Result<Option<LatencySummary>> {
        self.progress(&format!(
            "random 4 KiB writes, {stable}, {ops} one at a time"
        ));
        let slots = (span / RAND_BYTES as u64).max(1);
        let mut buf = self.pattern[..RAND_BYTES].to_vec();
        let conn = &mut self.conns[0];
        let deadline = Instant::now() + self.limit;
        let mut samples = Vec::with_capacity(usize::try_from(ops).unwrap_or(0));
        let mut start = Instant::now();
        for k in 0..WARMUP_OPS + ops {
            if k == WARMUP_OPS {
                start = Instant::now();
            }
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            let offset = (splitmix64(seed ^ k) % slots) * RAND_BYTES as u64;
            stamp(&mut buf, offset);
            let t = Instant::now();
            let w = conn.write(fh, offset, &buf, stable).await?;
            let lat = t.elapsed();
            if w.count as usize != RAND_BYTES {
                bail!("WRITE at {offset}: short write of {} bytes", w.count);
            }
            if stable == stable_how::FILE_SYNC && w.committed != stable_how::FILE_SYNC {
                bail!(
                    "WRITE at {offset}: asked FILE_SYNC, server answered {}: it does not honour stable writes",
                    w.committed
                );
            }
            if k >= WARMUP_OPS {
                samples.push(lat);
            }
        }
        let elapsed = start.elapsed();
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if stable == stable_how::UNSTABLE {
            conn.commit(fh, 0, 0).await?;
        }
        Ok(LatencySummary::from_samples(samples, elapsed))
    }

    async fn files_phase<J: Job>(&mut self, total: u64, job: J) -> Result<Rate> {
        let work = Work::new(total, self.limit, Arc::clone(&self.stop));
        let t = Instant::now();
        self.conns = parallel(std::mem::take(&mut self.conns), &work, Arc::new(job)).await?;
        let elapsed = t.elapsed();
        self.check_stop()?;
        let count = work.done.load(Ordering::Relaxed);
        Ok(Rate {
            count,
            secs: elapsed.as_secs_f64(),
            per_s: rate(count, elapsed),
            truncated: work.truncated.load(Ordering::Relaxed),
        })
    }
}

fn throughput(
    bytes: u64,
    elapsed: Duration,
    commit: Option<Duration>,
    truncated: bool,
) -> Throughput {
    Throughput {
        bytes,
        secs: elapsed.as_secs_f64(),
        mib_per_s: mib_per_s(bytes, elapsed),
        commit_secs: commit.map(|c| c.as_secs_f64()),
        before_commit_mib_per_s: commit.map(|c| mib_per_s(bytes, elapsed.saturating_sub(c))),
        cold: false,
        truncated,
    }
}

/// Writes dirty pages out and drops the page cache, so the next read comes from disk.
fn drop_page_cache() -> Result<()> {
    let status = std::process::Command::new("sync")
        .status()
        .context("running sync")?;
    if !status.success() {
        bail!("sync failed: {status}");
    }
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n")
        .context("--cold-read: cannot write /proc/sys/vm/drop_caches (needs root)")
}

/// Runs the workloads `args` asks for and returns what they measured. The bench directory and
/// everything in it is removed before returning, also on error or Ctrl-C.
///
/// # Errors
/// Bad arguments or URL, the server unreachable, a call failing or answering wrong data.
pub async fn bench(args: &BenchArgs) -> Result<Report> {
    args.validate()?;
    let url = NfsUrl::parse(&args.url)?;
    let timeout = Duration::from_secs(args.rpc_timeout_s);
    let (mut server, mut first) = Server::mount(&url, timeout).await?;

    let info = first.fsinfo(&server.root).await?;
    let mut notes = Vec::new();
    let mut block = args.block_size;
    for (what, max) in [("wtmax", info.wtmax), ("rtmax", info.rtmax)] {
        let max = u64::from(max);
        if max >= 4096 && max < block {
            notes.push(format!(
                "--block-size lowered from {} to the server's FSINFO {what} {max}",
                args.block_size
            ));
            block = max;
        }
    }

    let now = SystemClock.now();
    let dir_name = format!(
        "metrofs-bench-{:x}{:08x}-{}",
        now.sec,
        now.nsec,
        std::process::id()
    );
    let dir = first
        .mkdir(&server.root, &dir_name)
        .await
        .context("creating the bench directory")?;

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("metrofs bench: interrupted, cleaning up (Ctrl-C again to quit at once)");
                stop.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };

    let mut report = Report {
        url: url.to_string(),
        nfs_addr: server.nfs_addr.to_string(),
        depth: args.depth,
        block_bytes: block,
        seq_write: None,
        seq_read: None,
        rand_write_unstable: None,
        rand_write_file_sync: None,
        small_files: None,
        stat: None,
        unlink: None,
        notes,
    };

    let mut conns = vec![first];
    let mut result = Ok(());
    for _ in 1..args.depth {
        match server.connect().await {
            Ok(c) => conns.push(c),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        let mut ctx = Ctx {
            conns,
            dir: dir.clone(),
            block,
            pattern: Arc::new(pattern(usize::try_from(block)?)),
            limit: Duration::from_secs(args.phase_limit_s),
            stop: Arc::clone(&stop),
        };
        result = phases(args, &mut ctx, &mut report, now.as_nanos()).await;
    }

    let cleaned = cleanup(&server, &dir, &dir_name).await;
    watcher.abort();
    // UMNT is a courtesy; servers keep no state that matters for it.
    let _ = server.unmount().await;
    match (result, cleaned) {
        (Ok(()), Ok(())) => Ok(report),
        (Ok(()), Err(e)) => Err(e.context(format!("removing the bench directory {dir_name}"))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(e.context(format!(
            "also, removing the bench directory {dir_name} failed: {c:#}"
        ))),
    }
}

async fn phases(args: &BenchArgs, ctx: &mut Ctx, report: &mut Report, seed: u64) -> Result<()> {
    // Sequential write, then read back.
    let mut seq: Option<(nfs_fh3, u64)> = None;
    if args.wants(Workload::SeqWrite) || args.wants(Workload::SeqRead) {
        ctx.progress(&format!(
            "sequential write of {} ({} in flight)",
            stats::human_bytes(args.size),
            ctx.conns.len()
        ));
        let t = Instant::now();
        let (fh, bytes, commit, truncated) = ctx.write_file(SEQ_FILE, args.size).await?;
        let elapsed = t.elapsed();
        if args.wants(Workload::SeqWrite) {
            report.seq_write = Some(throughput(bytes, elapsed, Some(commit), truncated));
        }
        seq = Some((fh, bytes));
    }
    if let (true, Some((fh, bytes))) = (args.wants(Workload::SeqRead), &seq) {
        if args.cold_read {
            ctx.progress("dropping the page cache");
            tokio::task::spawn_blocking(drop_page_cache).await??;
        }
        ctx.progress("sequential read");
        let t = Instant::now();
        let (read, truncated) = ctx.read_file(fh, *bytes).await?;
        let mut result = throughput(read, t.elapsed(), None, truncated);
        result.cold = args.cold_read;
        report.seq_read = Some(result);
    }
    if seq.is_some() {
        ctx.conns[0].remove(&ctx.dir, SEQ_FILE).await?;
    }

    if args.wants(Workload::RandWrite) {
        ctx.progress(&format!(
            "filling a {} file for random writes",
            stats::human_bytes(args.rand_span)
        ));
        let (fh, written, _, truncated) = ctx.write_file(RAND_FILE, args.rand_span).await?;
        if truncated {
            bail!(
                "filling the {} random-write file took longer than --phase-limit-s",
                stats::human_bytes(args.rand_span)
            );
        }
        report.rand_write_unstable = ctx
            .random_writes(&fh, written, args.latency_ops, stable_how::UNSTABLE, seed)
            .await?;
        report.rand_write_file_sync = ctx
            .random_writes(
                &fh,
                written,
                args.latency_ops,
                stable_how::FILE_SYNC,
                seed.rotate_left(17),
            )
            .await?;
        ctx.conns[0].remove(&ctx.dir, RAND_FILE).await?;
    }

    let wants_files = [Workload::SmallFiles, Workload::Stat, Workload::Unlink]
        .iter()
        .any(|w| args.wants(*w));
    if wants_files {
        ctx.progress(&format!(
            "{} small files ({} in flight)",
            args.files,
            ctx.conns.len()
        ));
        let data = Arc::new(ctx.pattern[..SMALL_BYTES].to_vec());
        let created = ctx
            .files_phase(
                args.files,
                SmallFile {
                    dir: ctx.dir.clone(),
                    data,
                },
            )
            .await?;
        let n = created.count;
        if args.wants(Workload::SmallFiles) {
            report.small_files = Some(created);
        }
        if args.wants(Workload::Stat) {
            ctx.progress(&format!("stat of {n} files"));
            report.stat = Some(
                ctx.files_phase(
                    n,
                    Stat {
                        dir: ctx.dir.clone(),
                    },
                )
                .await?,
            );
        }
        if args.wants(Workload::Unlink) {
            ctx.progress(&format!("unlink of {n} files"));
            report.unlink = Some(
                ctx.files_phase(
                    n,
                    Unlink {
                        dir: ctx.dir.clone(),
                    },
                )
                .await?,
            );
        }
    }
    Ok(())
}

/// Removes everything in the bench directory, then the directory, on a fresh connection (the
/// workers' connections may be gone with an error).
async fn cleanup(server: &Server, dir: &nfs_fh3, dir_name: &str) -> Result<()> {
    let mut conn = server.connect().await?;
    let names = conn.list(dir, CLEANUP_NAMES_MAX).await?;
    if names.len() > 100 {
        eprintln!(
            "metrofs bench: removing {} files left in {dir_name}",
            names.len()
        );
    }
    for n in &names {
        match conn.remove(dir, n).await {
            Ok(()) => {}
            Err(e) if is_status(&e, nfsstat3::NFS3ERR_NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    conn.rmdir(&server.root, dir_name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_stable_and_stamped() {
        let p = pattern(4096);
        assert_eq!(p.len(), 4096);
        assert_eq!(p, pattern(4096));
        assert_ne!(&p[..8], &p[8..16]);
        let mut b = p.clone();
        stamp(&mut b, 0x0102_0304_0506_0708);
        assert_eq!(&b[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[8..], &p[8..]);
    }

    #[test]
    fn work_hands_out_each_item_once_then_stops() {
        let stop = Arc::new(AtomicBool::new(false));
        let w = Work::new(3, Duration::from_secs(60), Arc::clone(&stop));
        assert_eq!(
            (w.take(), w.take(), w.take(), w.take()),
            (Some(0), Some(1), Some(2), None)
        );
        let w = Work::new(3, Duration::from_secs(60), Arc::clone(&stop));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(w.take(), None);
        let w = Work::new(3, Duration::ZERO, Arc::new(AtomicBool::new(false)));
        assert_eq!(w.take(), None);
        assert!(w.truncated.load(Ordering::Relaxed));
    }

    #[test]
    fn verifier_change_is_an_error() {
        let v = Verifier::default();
        v.check(writeverf3([1; 8]), "WRITE").expect("first");
        v.check(writeverf3([1; 8]), "WRITE").expect("same");
        let e = v.check(writeverf3([2; 8]), "COMMIT").expect_err("changed");
        assert!(e.to_string().contains("restarted"));
    }
}
