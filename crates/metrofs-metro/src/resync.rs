//! The resync worker and `pair verify` (DESIGN.md, "Resync").
//!
//! Resync copies what the DCL names from the serving side to the other, while hosts keep
//! writing, in rounds. Each round takes a [`crate::dcl::DclSnapshot`] and:
//! 1. the inode steps (`PutInode`, and `Verifier` for a regular file) for every dirty inode
//!    that exists here (under its whole-inode range lock, so a concurrent change is ordered
//!    before or after the copy, never inside it);
//! 2. under the namespace lock: `Entries` for every dirty directory (its entries with their
//!    READDIR slots, and its next slot, so a cookie handed out here goes on working there after
//!    a failover), then `Allocator` (the free numbers with their generations and the
//!    never-used mark, so the other side never hands out an (ino, gen) this side freed or
//!    uses). `Entries` only makes names (what loses one is kept as an orphan); `Allocator`
//!    ends the links phase and frees what is still unnamed, so a subtree moved between two
//!    dirty directories is never lost;
//! 3. `PutData` for dirty chunks, coalesced into runs of up to `RESYNC_RUN_BYTES`, several runs
//!    in flight, each under its range lock; holes travel as holes;
//! 4. `Flush` on the target, then clear from the DCL exactly the keys copied whose generation
//!    did not move (a change that landed meanwhile stays dirty for the next round).
//!
//! It ends when a round starts with an empty DCL. After a round the target's store image
//! (`Store::image`) is the source's, slots, free table and never-used mark included.
//!
//! Requests stay under the link's header limit: steps are batched by their encoded size
//! ([`metrofs_store::sync_op_bytes`]), and a large directory or free table travels as several
//! range steps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use metrofs_core::{Attr, FileType, FsError, FsId, Ino, SyncOp};
use metrofs_store::sync_op_bytes;
use metrofs_link::Link;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::dcl::{DclKey, DCL_CHUNK_BYTES};
use crate::engine::Event;
use crate::locks::WHOLE;
use crate::metro::{Metro, MetroError, PairRt, VerifyReport};
use crate::proto::{self, Request, Response};

/// Largest run of chunks copied in one request.
pub const RESYNC_RUN_BYTES: u64 = 1 << 20;
/// Runs in flight at once.
const RESYNC_RUNS_IN_FLIGHT_MAX: usize = 8;
/// Sync ops per request at most.
const RESYNC_BATCH_OPS_MAX: usize = 256;
/// Encoded bytes of sync ops per request at most (by `sync_op_bytes`, an upper bound): the
/// link refuses a header over 64 KiB (`metrofs_link` `HEADER_MAX_BYTES`); the rest is room for
/// the request's own fields.
const RESYNC_REQUEST_BYTES_MAX: usize = 48 << 10;
/// Encoded bytes of one `Entries` or `Allocator` step at most (a range of a directory or of
/// the free table).
const RESYNC_RANGE_BYTES_MAX: usize = 32 << 10;
const _: () = assert!(RESYNC_RANGE_BYTES_MAX <= RESYNC_REQUEST_BYTES_MAX && RESYNC_REQUEST_BYTES_MAX < metrofs_link::frame::HEADER_MAX_BYTES);
/// Differences listed by verify before it stops listing (it still counts).
const VERIFY_DIFFERENCES_MAX: usize = 1000;
/// Chunk size verify compares digests of.
const VERIFY_CHUNK_BYTES: u64 = 1 << 20;

/// What a running resync shows (STYLE.md 6: a named worker with visible state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Busy (copying), Done, or Failed with the reason.
    pub status: String,
    /// inodes / directories / data.
    pub phase: String,
    pub round: u64,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub percent: f64,
    pub bytes_per_s: u64,
    pub eta_s: Option<u64>,
    /// Bytes of data sent over the link by this resync (for the "copies only the DCL" check).
    pub sent_bytes: u64,
}

/// What a running (or the last) `pair verify` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyProgress {
    /// Busy, Done, `Done: N differences`, or `Failed: reason`.
    pub status: String,
    pub inodes_total: u64,
    pub inodes_done: u64,
    /// Bytes of this side's files to compare, and compared so far.
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub percent: f64,
    pub bytes_per_s: u64,
    pub eta_s: Option<u64>,
}

/// A running resync worker.
pub struct ResyncHandle {
    task: tokio::task::JoinHandle<()>,
    progress: Arc<Mutex<Progress>>,
}

impl ResyncHandle {
    pub fn stop(self) {
        self.task.abort();
    }

    #[must_use]
    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the resync worker of `pair` unless one runs.
pub(crate) fn start(metro: Arc<Metro>, pair: Arc<PairRt>) {
    let mut slot = lock(&pair.resync);
    if slot.as_ref().is_some_and(|h| !h.task.is_finished()) {
        return;
    }
    let progress = Arc::new(Mutex::new(Progress { status: "Busy".into(), ..Progress::default() }));
    let p = progress.clone();
    let pr = pair.clone();
    let task = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let result = run(&metro, &pr, &p, started).await;
        match result {
            Ok(()) => {
                lock(&p).status = "Done".into();
                let secs = started.elapsed().as_secs_f64();
                let sent = lock(&p).sent_bytes;
                pr.event(format!("resync done: {sent} bytes of data in {secs:.1} s"));
                metro.on_event(&pr, Event::ResyncDone);
            }
            Err(reason) => {
                metrofs_core::metrics::get().error("resync");
                lock(&p).status = format!("Failed: {reason}");
                metro.on_event(&pr, Event::ResyncFailed { reason });
            }
        }
    });
    *slot = Some(ResyncHandle { task, progress });
}

async fn send(link: &Link, pair: &PairRt, ops: Vec<SyncOp>) -> Result<u64, String> {
    if ops.is_empty() {
        return Ok(0);
    }
    let (ops, body) = proto::split_segments(ops);
    let sent = body.len() as u64;
    let req = Request::Sync { pair: pair.id(), epoch: pair.epoch(), ops };
    match link.call_typed::<Request, Response>(&req, body).await {
        Ok((Response::Done, _)) => Ok(sent),
        Ok((Response::Refused(why), _)) => Err(format!("the peer refused resync data: {why}")),
        Ok((other, _)) => Err(format!("unexpected answer to resync data: {other:?}")),
        Err(e) => Err(format!("link: {e}")),
    }
}

/// Sync ops gathered into requests that stay under the link's limits.
#[derive(Default)]
struct Batcher {
    ops: Vec<SyncOp>,
    bytes: usize,
}

impl Batcher {
    /// Whether `ops` can join the batch (an empty batch takes anything).
    fn fits(&self, ops: &[SyncOp]) -> bool {
        let b: usize = ops.iter().map(sync_op_bytes).sum();
        self.ops.is_empty() || (self.bytes + b <= RESYNC_REQUEST_BYTES_MAX && self.ops.len() + ops.len() <= RESYNC_BATCH_OPS_MAX)
    }

    fn add(&mut self, ops: Vec<SyncOp>) {
        self.bytes += ops.iter().map(sync_op_bytes).sum::<usize>();
        self.ops.extend(ops);
    }

    /// Sends what is gathered (in one request) and starts again.
    async fn send(&mut self, link: &Link, pair: &PairRt) -> Result<u64, String> {
        self.bytes = 0;
        send(link, pair, std::mem::take(&mut self.ops)).await
    }

    /// The inode steps of `inodes`, each read under its whole-inode range lock, held until
    /// the batch carrying it is sent (a concurrent change is ordered before or after the
    /// copy, never inside it); everything is sent when this returns.
    async fn copy_inodes(&mut self, metro: &Metro, link: &Link, pair: &PairRt, inodes: &BTreeSet<Ino>) -> Result<(), String> {
        let fs = pair.fs();
        let store = metro.array().store();
        let mut guards = Vec::new();
        for ino in inodes {
            let guard = metro.locks.lock(fs, *ino, WHOLE).await;
            let ops = store.sync_inode(fs, *ino).map_err(|e| e.to_string())?;
            if !self.fits(&ops) {
                self.send(link, pair).await?;
                guards.clear();
            }
            guards.push(guard);
            self.add(ops);
        }
        self.send(link, pair).await?;
        Ok(())
    }
}

async fn call(link: &Link, req: Request) -> Result<Response, String> {
    match link.call_typed::<Request, Response>(&req, Bytes::new()).await {
        Ok((Response::Refused(why), _)) => Err(format!("the peer refused: {why}")),
        Ok((r, _)) => Ok(r),
        Err(e) => Err(format!("link: {e}")),
    }
}

async fn run(metro: &Arc<Metro>, pair: &Arc<PairRt>, progress: &Arc<Mutex<Progress>>, started: tokio::time::Instant) -> Result<(), String> {
    let fs = pair.fs();
    let store = metro.array().store().clone();
    loop {
        let snap = metro.dcl.snapshot(fs);
        if snap.full.is_none() && snap.keys.is_empty() {
            return Ok(());
        }
        let link = metro.current_link().ok_or("the link to the peer is down")?;
        lock(progress).round += 1;

        // What this round copies.
        let mut inodes: BTreeSet<Ino> = BTreeSet::new();
        let mut dirs: BTreeSet<Ino> = BTreeSet::new();
        let mut chunks: BTreeMap<Ino, BTreeSet<u64>> = BTreeMap::new();
        let mut whole: Vec<(Ino, u64)> = Vec::new();
        if snap.full.is_some() {
            for ino in store.inodes(fs).map_err(|e| e.to_string())? {
                inodes.insert(ino);
                match store.getattr(fs, ino) {
                    Ok(a) if a.ftype == FileType::Directory => {
                        dirs.insert(ino);
                    }
                    Ok(a) if a.ftype == FileType::Regular && a.size > 0 => whole.push((ino, a.size)),
                    _ => {}
                }
            }
        }
        for (k, _) in &snap.keys {
            match *k {
                DclKey::Dir(d) => {
                    dirs.insert(d);
                    inodes.insert(d);
                }
                DclKey::Inode(i) => {
                    inodes.insert(i);
                }
                DclKey::Chunk { ino, idx } => {
                    chunks.entry(ino).or_default().insert(idx);
                }
            }
        }
        // Runs of data to copy: (ino, offset, len).
        let mut runs: Vec<(Ino, u64, u64)> = Vec::new();
        let whole_inos: std::collections::HashSet<Ino> = whole.iter().map(|w| w.0).collect();
        for (ino, size) in &whole {
            push_whole_file(&mut runs, *ino, *size);
        }
        for (ino, idxs) in &chunks {
            if whole_inos.contains(ino) {
                continue;
            }
            let mut run: Option<(u64, u64)> = None;
            for idx in idxs {
                let off = idx * DCL_CHUNK_BYTES;
                run = match run {
                    Some((start, len)) if start + len == off && len + DCL_CHUNK_BYTES <= RESYNC_RUN_BYTES => Some((start, len + DCL_CHUNK_BYTES)),
                    Some((start, len)) => {
                        runs.push((*ino, start, len));
                        Some((off, DCL_CHUNK_BYTES))
                    }
                    None => Some((off, DCL_CHUNK_BYTES)),
                };
            }
            if let Some((start, len)) = run {
                runs.push((*ino, start, len));
            }
        }
        {
            let mut p = lock(progress);
            p.total_bytes = p.done_bytes + runs.iter().map(|r| r.2).sum::<u64>();
        }

        // 1. Inodes.
        lock(progress).phase = "inodes".into();
        let mut batch = Batcher::default();
        batch.copy_inodes(metro, &link, pair, &inodes).await?;

        // 2. Directories (links only), then the allocator (which frees what is left unnamed),
        //    both under the namespace lock: no host's namespace change runs meanwhile on
        //    either side, so the listings and the free table read here are what the target
        //    must hold.
        lock(progress).phase = "directories".into();
        {
            let ns = metro.array().namespace_lock(fs);
            let _ns = ns.quiet().await;
            // Inodes made since the snapshot that the target may lack: their creation reached
            // this side alone (the link was down, or the target refused it), so the DCL names
            // them now. An `Entries` step naming one would be refused by the target (it has no
            // such inode), and the round would fail again at each retry for as long as hosts
            // keep creating files. Copied here, where no name changes, before the entries;
            // they stay dirty for the next round (they are not in this round's snapshot).
            let late: BTreeSet<Ino> = metro
                .dcl
                .snapshot(fs)
                .keys
                .iter()
                .filter_map(|(k, _)| match *k {
                    DclKey::Inode(i) | DclKey::Dir(i) if !inodes.contains(&i) => Some(i),
                    _ => None,
                })
                .collect();
            batch.copy_inodes(metro, &link, pair, &late).await?;
            for d in &dirs {
                let ops = match store.sync_dir(fs, *d, RESYNC_RANGE_BYTES_MAX) {
                    Ok(ops) => ops,
                    // Gone or not a directory here: its entries on the target go with it
                    // (its name goes from a dirty parent, or PutInode replaced it).
                    Err(FsError::Stale | FsError::NotDir) => continue,
                    Err(e) => return Err(e.to_string()),
                };
                for op in ops {
                    if !batch.fits(std::slice::from_ref(&op)) {
                        batch.send(&link, pair).await?;
                    }
                    batch.add(vec![op]);
                }
            }
            batch.send(&link, pair).await?;
            lock(progress).phase = "allocator".into();
            for op in store.sync_allocator(fs, RESYNC_RANGE_BYTES_MAX).map_err(|e| e.to_string())? {
                if !batch.fits(std::slice::from_ref(&op)) {
                    batch.send(&link, pair).await?;
                }
                batch.add(vec![op]);
            }
            batch.send(&link, pair).await?;
        }

        // 3. Data, several runs in flight.
        lock(progress).phase = "data".into();
        let mut tasks: JoinSet<Result<(u64, u64), String>> = JoinSet::new();
        for (ino, off, len) in runs {
            while tasks.len() >= RESYNC_RUNS_IN_FLIGHT_MAX {
                account(progress, started, tasks.join_next().await)?;
            }
            let (metro, pair, link, store) = (metro.clone(), pair.clone(), link.clone(), store.clone());
            tasks.spawn(async move {
                let _range = metro.locks.lock(fs, ino, (off, off + len)).await;
                let attr: Attr = match store.getattr(fs, ino) {
                    Ok(a) if a.ftype == FileType::Regular => a,
                    // Removed (or replaced by a non-file) since: nothing to copy.
                    _ => return Ok((len, 0)),
                };
                let len_here = len.min(attr.size.saturating_sub(off));
                let segments = if len_here == 0 {
                    Vec::new()
                } else {
                    let st = store.clone();
                    tokio::task::spawn_blocking(move || st.read_segments(fs, ino, off, len_here))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?
                };
                let sent = send(&link, &pair, vec![SyncOp::PutData { ino, offset: off, len, segments }]).await?;
                Ok((len, sent))
            });
        }
        while let Some(r) = tasks.join_next().await {
            account(progress, started, Some(r))?;
        }

        // 4. Durable on the target, then clear what was copied.
        lock(progress).phase = "flush".into();
        match call(&link, Request::Flush { pair: pair.id() }).await? {
            Response::Done => {}
            other => return Err(format!("unexpected answer to Flush: {other:?}")),
        }
        metro.dcl.clear(fs, &snap).map_err(|e| e.to_string())?;
    }
}

/// Runs of at most `RESYNC_RUN_BYTES` covering `[0, size)` of `ino`.
fn push_whole_file(runs: &mut Vec<(Ino, u64, u64)>, ino: Ino, size: u64) {
    let mut off = 0;
    while off < size {
        let len = RESYNC_RUN_BYTES.min(size - off);
        runs.push((ino, off, len));
        off += len;
    }
}

/// How a copy task ended: its bytes done and sent, its error, or its panic.
type RunOutcome = Result<Result<(u64, u64), String>, tokio::task::JoinError>;

fn account(
    progress: &Arc<Mutex<Progress>>,
    started: tokio::time::Instant,
    r: Option<RunOutcome>,
) -> Result<(), String> {
    let Some(r) = r else { return Ok(()) };
    let (done, sent) = r.map_err(|e| e.to_string())??;
    let mut p = lock(progress);
    p.done_bytes += done;
    p.sent_bytes += sent;
    metrofs_core::metrics::get().resync_bytes(sent);
    p.total_bytes = p.total_bytes.max(p.done_bytes);
    p.percent = if p.total_bytes == 0 { 100.0 } else { p.done_bytes as f64 * 100.0 / p.total_bytes as f64 };
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    p.bytes_per_s = (p.done_bytes as f64 / secs) as u64;
    p.eta_s = (p.bytes_per_s > 0).then(|| (p.total_bytes - p.done_bytes) / p.bytes_per_s);
    Ok(())
}

/// `pair verify`: compares both sides: inode sets, attributes (all but atime and `used`),
/// directory entries, symlink targets and data digests. Each object is compared under its
/// lock, so a change in flight does not show as a difference.
pub(crate) async fn verify(metro: Arc<Metro>, pair: Arc<PairRt>) -> Result<VerifyReport, MetroError> {
    {
        let mut v = lock(&pair.verify);
        if v.as_ref().is_some_and(|p| p.status == "Busy") {
            return Err(MetroError::NotNow(format!(
                "a verify of pair {} is running already; watch it with `metrofs pair show {}`",
                pair.id(),
                pair.id()
            )));
        }
        *v = Some(VerifyProgress { status: "Busy".into(), ..VerifyProgress::default() });
    }
    let r = verify_inner(&metro, &pair).await;
    if let Some(p) = lock(&pair.verify).as_mut() {
        p.status = match &r {
            Ok(report) if report.differences.is_empty() => "Done".into(),
            Ok(report) => format!("Done: {} differences", report.differences.len()),
            Err(e) => format!("Failed: {e}"),
        };
        p.eta_s = None;
    }
    r
}

/// Updates verify's progress after one more inode (and `bytes` of data) compared.
fn verify_step(pair: &PairRt, started: tokio::time::Instant, inodes: u64, bytes: u64) {
    let mut v = lock(&pair.verify);
    let Some(p) = v.as_mut() else { return };
    p.inodes_done += inodes;
    p.done_bytes += bytes;
    p.total_bytes = p.total_bytes.max(p.done_bytes);
    // Bytes weigh most; a tree of empty files still moves the bar by its inodes.
    p.percent = if p.total_bytes == 0 {
        (p.inodes_done as f64 * 100.0 / p.inodes_total.max(1) as f64).min(100.0)
    } else {
        p.done_bytes as f64 * 100.0 / p.total_bytes as f64
    };
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    p.bytes_per_s = (p.done_bytes as f64 / secs) as u64;
    p.eta_s = if p.percent > 0.0 { Some((secs * (100.0 - p.percent) / p.percent) as u64) } else { None };
}

async fn verify_inner(metro: &Arc<Metro>, pair: &Arc<PairRt>) -> Result<VerifyReport, MetroError> {
    let fs: FsId = pair.fs();
    let store = metro.array().store().clone();
    let link = metro.current_link().ok_or_else(|| MetroError::LinkDown("peer".into()))?;
    let err = MetroError::Link;
    let mut report = VerifyReport::default();
    let diff = |report: &mut VerifyReport, text: String| {
        if report.differences.len() < VERIFY_DIFFERENCES_MAX {
            report.differences.push(text);
        }
    };
    let local: BTreeSet<Ino> = store.inodes(fs).map_err(|e| MetroError::Storage(e.to_string()))?.into_iter().collect();
    let mut remote: BTreeSet<Ino> = BTreeSet::new();
    loop {
        match call(&link, Request::Inodes { pair: pair.id(), after: remote.last().copied() }).await.map_err(err)? {
            Response::Inodes { inodes, more } => {
                remote.extend(inodes);
                if !more {
                    break;
                }
            }
            other => return Err(MetroError::Link(format!("unexpected answer {other:?}"))),
        }
    }
    for ino in local.symmetric_difference(&remote) {
        let side = if local.contains(ino) { "only here" } else { "only on the peer" };
        diff(&mut report, format!("inode {ino}: {side}"));
    }
    // What the bar counts: every inode of both sides, and the bytes of this side's files.
    let both: Vec<Ino> = local.intersection(&remote).copied().collect();
    let total_bytes: u64 = both
        .iter()
        .filter_map(|ino| store.inode(fs, *ino).ok().flatten())
        .filter(|(a, _)| a.ftype == FileType::Regular)
        .map(|(a, _)| a.size)
        .sum();
    let started = tokio::time::Instant::now();
    if let Some(p) = lock(&pair.verify).as_mut() {
        p.total_bytes = total_bytes;
        p.inodes_total = both.len() as u64;
    }
    for ino in &both {
        let bytes_before = report.bytes_compared;
        if report.inodes_compared > 0 {
            verify_step(pair, started, 1, 0);
        }
        let inode_lock = metro.locks.lock(fs, *ino, WHOLE).await;
        report.inodes_compared += 1;
        let here = store.inode(fs, *ino).map_err(|e| MetroError::Storage(e.to_string()))?;
        let there = match call(&link, Request::GetInode { pair: pair.id(), ino: *ino }).await.map_err(err)? {
            Response::Inode(i) => i,
            other => return Err(MetroError::Link(format!("unexpected answer {other:?}"))),
        };
        let norm = |i: Option<(Attr, Option<Vec<u8>>)>| {
            i.map(|(mut a, s)| {
                a.used = 0;
                a.atime = metrofs_core::Time::default();
                (a, s)
            })
        };
        let (here, there) = (norm(here), norm(there));
        if here != there {
            diff(&mut report, format!("inode {ino}: attributes differ: here {:?}, peer {:?}", here.as_ref().map(|h| &h.0), there.as_ref().map(|t| &t.0)));
            continue;
        }
        let Some((attr, _)) = here else { continue };
        match attr.ftype {
            FileType::Directory => {
                // Entries change only by ordered ops, which `quiet` waits out on both sides.
                // The inode lock goes first: an ordered op takes inode locks while it holds
                // the order lock, so taking them the other way round could deadlock.
                drop(inode_lock);
                let ns = metro.array().namespace_lock(fs);
                let _ns = ns.quiet().await;
                let mut a = store.entries(fs, *ino).map_err(|e| MetroError::Storage(e.to_string()))?;
                let mut b: Vec<(Vec<u8>, Ino)> = Vec::new();
                loop {
                    let after = b.last().map(|(n, _)| n.clone());
                    match call(&link, Request::ListDir { pair: pair.id(), dir: *ino, after }).await.map_err(err)? {
                        Response::Entries { entries, more } => {
                            b.extend(entries);
                            if !more {
                                break;
                            }
                        }
                        other => return Err(MetroError::Link(format!("unexpected answer {other:?}"))),
                    }
                }
                a.sort();
                b.sort();
                if a != b {
                    diff(&mut report, format!("directory {ino}: entries differ ({} here, {} on the peer)", a.len(), b.len()));
                }
            }
            FileType::Regular => {
                let st = store.clone();
                let ino2 = *ino;
                let a = tokio::task::spawn_blocking(move || st.digests(fs, ino2, VERIFY_CHUNK_BYTES))
                    .await
                    .map_err(|e| MetroError::Storage(e.to_string()))?
                    .map_err(|e| MetroError::Storage(e.to_string()))?;
                let b = match call(&link, Request::Digests { pair: pair.id(), ino: *ino, chunk_bytes: VERIFY_CHUNK_BYTES }).await.map_err(err)? {
                    Response::Digests(d) => d,
                    other => return Err(MetroError::Link(format!("unexpected answer {other:?}"))),
                };
                report.bytes_compared += attr.size;
                verify_step(pair, started, 0, report.bytes_compared - bytes_before);
                for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                    if x != y {
                        diff(&mut report, format!("file {ino}: bytes differ in [{}, {})", i as u64 * VERIFY_CHUNK_BYTES, (i as u64 + 1) * VERIFY_CHUNK_BYTES));
                    }
                }
                if a.len() != b.len() {
                    diff(&mut report, format!("file {ino}: {} chunks here, {} on the peer", a.len(), b.len()));
                }
            }
            FileType::Symlink => {}
        }
    }
    verify_step(pair, started, u64::from(report.inodes_compared > 0), 0);
    pair.event(format!("verify: {} inodes, {} bytes compared, {} differences", report.inodes_compared, report.bytes_compared, report.differences.len()));
    Ok(report)
}
