//! Arbitration and failover with the real binaries (issue 4), in the namespaces of
//! [`crate::topo`]: two arrays, a quorum server, a host whose clients reach the fs through
//! the floating service address 10.78.0.100.
//!
//! The clients are somebody else's code: nfs3_client (a long-lived writer that keeps its file
//! handle and reconnects to the service address as a kernel NFS client would, resending what
//! got no reply) and Debian's libnfs tools. Every test ends with the same checks, small
//! functions below: no acknowledged write lost ([`no_ack_lost`]), never both sides
//! acknowledging at once ([`one_side_acks_at_a_time`]), the DCL empty when Normal, and the
//! two sides identical after the heal (`pair verify`, then both stopped data directories
//! compared with `metrofs_store`, independently of the metro module). Every failover, swap,
//! force start and arbitration is also checked in the durable event log of the array that
//! serves after it ([`wait_event`]): an event of the right kind, naming it, stamped after the
//! fault.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::{self, stable_how};
use serde_json::Value;

use crate::harness::text;
use crate::nfs::{Client, Error as NfsError};
use crate::pair_faults::{fs_id_of, same_stores};
use crate::tools;
use crate::topo::{parse, tail, Domain, Opts, Peer, Site, Topo, HOST, NFS_PORT, SERVICE};

/// Bytes of one WRITE of the writers (FILE_SYNC: acknowledged means on both disks).
pub const CHUNK: usize = 16 << 10;
/// A request without an answer after this is resent on a new connection (NFS `timeo`).
pub const REQ_TIMEOUT_MS: u64 = 1500;
/// Generous bound for a takeover in a functional test (the RTO itself is measured by
/// bench/failover.sh, not asserted here).
pub const TAKEOVER_MS: u64 = 20_000;
/// How long a pair may take to be Normal again after a heal.
pub const NORMAL_MS: u64 = 60_000;
/// How long after the view shows a takeover its event may take to be in the event log (it is
/// written, with an fsync, around the moment the view changes).
pub const EVENT_MS: u64 = 5_000;

/// One acknowledged WRITE.
#[derive(Debug, Clone)]
pub struct Ack {
    pub idx: u64,
    pub at: Instant,
    /// Which connection answered (index into [`WriterLog::conns`]).
    pub conn: usize,
}

/// What a writer saw.
#[derive(Debug, Default)]
pub struct WriterLog {
    pub acks: Vec<Ack>,
    /// When each connection was established (the first by MOUNT, the others reconnections
    /// with the same handles).
    pub conns: Vec<Instant>,
    /// NFS errors answered to a WRITE (an application would see them).
    pub nfs_errors: Vec<(Instant, String)>,
    /// Each resend: when, and why (`"timeout"`: no answer within [`REQ_TIMEOUT_MS`];
    /// `"broken"`: the connection failed).
    pub resends: Vec<(Instant, &'static str)>,
    /// The file's handle, once created.
    pub fh: Option<nfs3::nfs_fh3>,
    pub root: Option<nfs3::nfs_fh3>,
}

/// The bytes of chunk `idx` of a writer with `seed`.
pub fn chunk_data(seed: u64, idx: u64) -> Vec<u8> {
    tools::pattern(seed.wrapping_mul(1_000_003).wrapping_add(idx), CHUNK)
}

/// A host client writing `CHUNK`-sized FILE_SYNC WRITEs one after the other to one file,
/// reconnecting (no new MOUNT: the same handles) when a request gets no answer.
pub struct Writer {
    pub file: String,
    stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<WriterLog>>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    /// Starts writing `file` in `fs` on `server` (the service address or a site's own) from
    /// the host namespace of `topo`. The MOUNT is retried until it works (a secondary may
    /// refuse it) or the writer is stopped.
    pub fn start(topo: &Topo, server: Ipv4Addr, fs: &str, file: &str, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<WriterLog>> = Arc::default();
        let (s, l, fs, f) = (stop.clone(), log.clone(), fs.to_owned(), file.to_owned());
        let handle = Topo::spawn_in(&topo.host, move || {
            crate::nfs::rt().block_on(write_loop(
                SocketAddr::new(IpAddr::V4(server), NFS_PORT),
                &fs,
                &f,
                seed,
                &s,
                &l,
            ))
        });
        Self {
            file: file.to_owned(),
            stop,
            log,
            handle: Some(handle),
        }
    }

    pub fn acked(&self) -> usize {
        self.log.lock().expect("log").acks.len()
    }

    /// Acks after `t`.
    pub fn acked_after(&self, t: Instant) -> usize {
        self.log
            .lock()
            .expect("log")
            .acks
            .iter()
            .filter(|a| a.at > t)
            .count()
    }

    /// Waits until `n` writes are acknowledged in total; panics with `what` and `logs()`
    /// after `ms`.
    pub fn wait_acks(&self, n: usize, ms: u64, what: &str, logs: &dyn Fn() -> String) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        while self.acked() < n {
            if self
                .handle
                .as_ref()
                .is_some_and(std::thread::JoinHandle::is_finished)
            {
                panic!("writer {} ended {what}", self.file);
            }
            assert!(
                Instant::now() < deadline,
                "writer {} stuck at {} acks {what}\n{}",
                self.file,
                self.acked(),
                logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the writer (an unanswered request is abandoned) and returns its log.
    pub fn finish(mut self) -> WriterLog {
        self.stop.store(true, Ordering::SeqCst);
        let r = self
            .handle
            .take()
            .expect("running")
            .join()
            .expect("writer thread");
        if let Err(e) = r {
            panic!("writer {}: {e}", self.file);
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn timed<T>(ms: u64, f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(ms), f)
        .await
        .ok()
}

async fn write_loop(
    server: SocketAddr,
    fs: &str,
    file: &str,
    seed: u64,
    stop: &AtomicBool,
    log: &Mutex<WriterLog>,
) -> Result<(), String> {
    let host = IpAddr::V4(HOST);
    // MOUNT, then CREATE (UNCHECKED: a resend is harmless).
    let (mut c, fh) = loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(Ok(mut c)) = timed(REQ_TIMEOUT_MS, Client::mount(server, fs, host)).await {
            let root = c.root.clone();
            if let Some(Ok(fh)) = timed(REQ_TIMEOUT_MS, c.create(&root, file)).await {
                let mut l = log.lock().expect("log");
                l.conns.push(Instant::now());
                l.fh = Some(fh.clone());
                l.root = Some(root);
                break (c, fh);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let root = c.root.clone();
    for idx in 0u64.. {
        let data = chunk_data(seed, idx);
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let offset = idx * CHUNK as u64;
            match timed(
                REQ_TIMEOUT_MS,
                c.write(&fh, offset, &data, stable_how::FILE_SYNC),
            )
            .await
            {
                Some(Ok(_)) => {
                    let mut l = log.lock().expect("log");
                    let conn = l.conns.len() - 1;
                    l.acks.push(Ack {
                        idx,
                        at: Instant::now(),
                        conn,
                    });
                    break;
                }
                Some(Err(NfsError::Nfs(s))) => {
                    log.lock()
                        .expect("log")
                        .nfs_errors
                        .push((Instant::now(), format!("{s:?}")));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // No answer, or the connection broke: a new connection to the same address
                // with the same handles, and the same WRITE again.
                r @ (Some(Err(NfsError::Rpc(_))) | None) => loop {
                    if r.is_none() {
                        log.lock()
                            .expect("log")
                            .resends
                            .push((Instant::now(), "timeout"));
                    } else {
                        log.lock()
                            .expect("log")
                            .resends
                            .push((Instant::now(), "broken"));
                    }
                    if stop.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if let Some(Ok(nc)) =
                        timed(1000, Client::connect(server, host, root.clone())).await
                    {
                        c = nc;
                        log.lock().expect("log").conns.push(Instant::now());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                },
            }
        }
    }
    Ok(())
}

/// How long [`read_file`] may take (a new MOUNT and a read of a few MB).
const READ_FILE_MS: u64 = 60_000;

/// Reads `file` of `fs` through `server` from the host namespace (a new MOUNT); an error
/// after [`READ_FILE_MS`] (nfs3_client has no timeout of its own).
pub fn read_file(topo: &Topo, server: Ipv4Addr, fs: &str, file: &str) -> Result<Vec<u8>, String> {
    let (fs, file) = (fs.to_owned(), file.to_owned());
    Topo::spawn_in(&topo.host, move || {
        let read = async {
            let addr = SocketAddr::new(IpAddr::V4(server), NFS_PORT);
            let mut c = Client::mount(addr, &fs, IpAddr::V4(HOST))
                .await
                .map_err(|e| format!("mount: {e}"))?;
            let root = c.root.clone();
            let fh = c
                .lookup(&root, &file)
                .await
                .map_err(|e| format!("lookup {file}: {e:?}"))?;
            let size = c
                .getattr(&fh)
                .await
                .map_err(|e| format!("getattr: {e:?}"))?
                .size;
            c.read(&fh, 0, usize::try_from(size).expect("size"))
                .await
                .map_err(|e| format!("read: {e:?}"))
        };
        crate::nfs::rt().block_on(async {
            timed(READ_FILE_MS, read)
                .await
                .unwrap_or_else(|| Err(format!("no answer within {READ_FILE_MS} ms")))
        })
    })
    .join()
    .expect("reader thread")
}

/// Invariant: every acknowledged chunk is in `content` with its bytes.
pub fn no_ack_lost(seed: u64, acks: &[Ack], content: &[u8]) -> Result<(), String> {
    let mut lost = Vec::new();
    for a in acks {
        let off = usize::try_from(a.idx).expect("idx") * CHUNK;
        let got = content.get(off..off + CHUNK);
        if got != Some(chunk_data(seed, a.idx).as_slice()) {
            lost.push(a.idx);
        }
    }
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} acknowledged chunks missing or different: {:?}",
            lost.len(),
            acks.len(),
            &lost[..lost.len().min(20)]
        ))
    }
}

/// Invariant: after `from`, the acknowledgements of the writers on each site's own address
/// come from one site at a time: all of one site's acks after `from` precede all of the
/// other's (a later change of side needs a later epoch, which this test's faults give at
/// most once).
pub fn one_side_acks_at_a_time(from: Instant, a: &[Ack], b: &[Ack]) -> Result<(), String> {
    let a: Vec<Instant> = a.iter().filter(|x| x.at > from).map(|x| x.at).collect();
    let b: Vec<Instant> = b.iter().filter(|x| x.at > from).map(|x| x.at).collect();
    let (Some(a_first), Some(a_last), Some(b_first), Some(b_last)) =
        (a.first(), a.last(), b.first(), b.last())
    else {
        return Ok(());
    };
    if a_last < b_first || b_last < a_first {
        Ok(())
    } else {
        Err(format!(
            "both sides acknowledged in the same period: site-a {} acks from +{:?} to +{:?}, site-b {} acks from +{:?} to +{:?} (after the fault)",
            a.len(),
            *a_first - from,
            *a_last - from,
            b.len(),
            *b_first - from,
            *b_last - from
        ))
    }
}

/// Invariant: a Normal pair has nothing in its DCL.
pub fn dcl_empty_when_normal(v: &Value) -> Result<(), String> {
    if v["state"] == "Normal" && (v["dcl"]["chunks"] != 0 || v["dcl"]["bytes"] != 0) {
        return Err(format!("Normal with a DCL: {}", v["dcl"]));
    }
    Ok(())
}

/// The longest time between two consecutive acks with the later one after `from`.
pub fn longest_gap(acks: &[Ack], from: Instant) -> Duration {
    acks.windows(2)
        .filter(|w| w[1].at > from)
        .map(|w| w[1].at - w[0].at)
        .max()
        .unwrap_or_default()
}

/// The first ack after `t` on a connection made after `t`: the first write the survivor
/// acknowledged.
pub fn first_ack_after(log: &WriterLog, t: Instant) -> Option<Instant> {
    log.acks
        .iter()
        .find(|a| a.at > t && log.conns[a.conn] > t)
        .map(|a| a.at)
}

/// After a heal: the pair is Normal on `serving` with an empty DCL, `pair verify` finds both
/// sides identical; then both arrays stop and their data directories must hold the same
/// image of `fs`.
pub fn check_healed_and_identical(d: &mut Domain, serving: Site, id: &str, fs_name: &str) {
    let v = d.wait(serving, id, "Normal", NORMAL_MS, |v| v["state"] == "Normal");
    dcl_empty_when_normal(&v).unwrap_or_else(|e| panic!("{e}: {v:#}"));
    let out = d.arr(serving).cli(&["pair", "verify", id]);
    assert!(out.status.success(), "verify: {}\n{}", text(&out), d.logs());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("both sides are identical"),
        "verify: {}",
        text(&out)
    );
    let fs = fs_id_of(&parse(
        &d.arr(serving).cli_ok(&["fs", "show", fs_name, "--json"]),
    ));
    for s in [Site::A, Site::B] {
        if d.arr_mut(s).is_running() {
            let st = d.arr_mut(s).stop();
            assert!(st.success(), "{} stop: {st}\n{}", s.name(), d.logs());
        }
    }
    same_stores(&d.a.proc.data_dir, &d.b.proc.data_dir, fs, "after the heal");
}

/// A libnfs writer: `nfs-cp` of small files through the service address, one after the other
/// (each a new MOUNT), from the host namespace. Copies that fail (while nobody serves) are
/// retried under a new name; those that succeeded are listed.
pub struct CopyLoop {
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<(String, u64)>>>,
    handle: std::thread::JoinHandle<Copies>,
}

/// How long one `nfs-cp` of the copy loop may take before it counts as hung (and is killed):
/// a 40 kB copy. libnfs has no RPC timeout, so a connection that died without a close
/// reaching the host leaves it waiting for ever; the loop records that instead of hanging.
const COPY_LIMIT: Duration = Duration::from_secs(30);

/// What the copy loop saw besides the copies that succeeded.
#[derive(Debug, Default)]
pub struct Copies {
    /// Copies that failed (while nobody served), retried under a new name.
    pub failed: u64,
    /// Copies killed after [`COPY_LIMIT`]: a host stuck on a connection nobody closed.
    pub hung: Vec<String>,
}

impl CopyLoop {
    pub fn start(topo: &Topo, fs: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let (s, dn, host, fs) = (stop.clone(), done.clone(), topo.host.clone(), fs.to_owned());
        let handle = std::thread::spawn(move || {
            let tmp = tempfile::tempdir().expect("tmp");
            let mut seen = Copies::default();
            for n in 0u64.. {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("cp{n}");
                let src = tmp.path().join(&name);
                std::fs::write(&src, tools::pattern(9000 + n, 40_000)).expect("source");
                let out = tools::run_in(
                    &host,
                    "nfs-cp",
                    &[&src.to_string_lossy(), &crate::topo::url(SERVICE, &fs, &name)],
                    COPY_LIMIT,
                );
                match out {
                    Ok(out) if out.status.success() => dn.lock().expect("done").push((name, n)),
                    Ok(_) => {
                        seen.failed += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => seen.hung.push(e),
                }
            }
            seen
        });
        Self { stop, done, handle }
    }

    pub fn copied(&self) -> usize {
        self.done.lock().expect("done").len()
    }

    /// Stops; the files copied, and the failed and hung copies.
    pub fn finish(self) -> (Vec<(String, u64)>, Copies) {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self.handle.join().expect("copy loop");
        (std::mem::take(&mut *self.done.lock().expect("done")), seen)
    }
}

/// Every file `nfs-cp` reported as copied reads back (with `nfs-cat` through the service
/// address) with its bytes.
pub fn copies_present(topo: &Topo, fs: &str, copied: &[(String, u64)]) -> Result<(), String> {
    for (name, n) in copied {
        let out = topo.host_tool("nfs-cat", &[&crate::topo::url(SERVICE, fs, name)]);
        if !out.status.success() || out.stdout != tools::pattern(9000 + n, 40_000) {
            return Err(format!(
                "libnfs copy {name} lost or different ({} bytes read): {}",
                out.stdout.len(),
                text(&out)
            ));
        }
    }
    Ok(())
}

/// Now, in milliseconds since the Unix epoch: the clock the arrays stamp their events with
/// (`EventRecord::time_ms`; same machine, same clock).
pub fn now_ms() -> u64 {
    metrofs_core::Clock::now(&metrofs_core::SystemClock).as_nanos() / 1_000_000
}

/// Waits until the durable event log of `site` (`metrofs events --json`, through its API)
/// holds an event of `kind` about pair `id`, stamped at or after `since_ms`, whose text holds
/// every one of `words`; that event. Fails the test after [`EVENT_MS`] with what was there.
pub fn wait_event(
    d: &Domain,
    site: Site,
    id: &str,
    since_ms: u64,
    kind: &str,
    words: &[&str],
) -> Value {
    let deadline = Instant::now() + Duration::from_millis(EVENT_MS);
    loop {
        let out = d.arr(site).cli(&["events", "--limit", "1000", "--json"]);
        let events = if out.status.success() {
            parse(&String::from_utf8_lossy(&out.stdout))
        } else {
            Value::Null
        };
        let list = events.as_array().cloned().unwrap_or_default();
        if let Some(e) = list.iter().find(|e| {
            e["kind"] == kind
                && e["pair"] == id
                && e["time_ms"].as_u64().is_some_and(|t| t >= since_ms)
                && e["text"]
                    .as_str()
                    .is_some_and(|t| words.iter().all(|w| t.contains(w)))
        }) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{}'s event log has no {kind} event of pair {id} with {words:?} after {since_ms}: {}\n{:#?}",
            site.name(),
            text(&out),
            list.iter()
                .filter(|e| e["time_ms"].as_u64().is_some_and(|t| t >= since_ms))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn eprint_timeline(what: &str, t0: Instant, log: &WriterLog) {
    let conns: Vec<String> = log
        .conns
        .iter()
        .map(|c| format!("{:?}", c.saturating_duration_since(t0)))
        .collect();
    let resends: Vec<String> = log
        .resends
        .iter()
        .map(|(t, why)| format!("{why} at {:?}", t.saturating_duration_since(t0)))
        .collect();
    eprintln!(
        "{what}: {} acks, connections at {conns:?}, resends {resends:?}, nfs errors {:?}",
        log.acks.len(),
        log.nfs_errors.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
}

#[test]
fn kill9_of_the_serving_array_moves_service_and_automatic_recovery_brings_it_back() {
    let mut d = Domain::start(Opts {
        recovery: "automatic",
        ..Opts::default()
    });
    let id = d.create_pair("fo");
    d.wait_serving(Site::A, &id, TAKEOVER_MS);
    let logs = || String::new();
    let w = Writer::start(&d.topo, SERVICE, "fo", "w", 1);
    let cp = CopyLoop::start(&d.topo, "fo");
    w.wait_acks(30, 30_000, "before the kill", &logs);

    let kill_at = Instant::now();
    let kill_ms = now_ms();
    d.a.kill9();
    let v = d.wait_serving(Site::B, &id, TAKEOVER_MS);
    let served_at = Instant::now();
    assert_eq!(v["role"], "Primary", "{v:#}");
    assert!(
        v["epoch"].as_u64().unwrap_or(0) >= 2,
        "the takeover raised the epoch: {v:#}"
    );
    // The survivor's event log tells it: the arbitration it won, and its takeover.
    let epoch = format!("epoch {}", v["epoch"]);
    wait_event(&d, Site::B, &id, kill_ms, "arbitration", &[&epoch]);
    wait_event(&d, Site::B, &id, kill_ms, "failover", &["site-b", &epoch]);
    let n = w.acked();
    w.wait_acks(n + 30, 30_000, "after the takeover", &|| d.logs());

    // Failback: site-a returns as the secondary, is resynchronised, and (automatic recovery)
    // a planned swap gives the service back to the preferred site.
    let restart_ms = now_ms();
    d.a.spawn();
    let back = d.wait_serving(Site::A, &id, NORMAL_MS + TAKEOVER_MS);
    let back_at = Instant::now();
    // The automatic swap back, in the log of the array that serves again.
    wait_event(
        &d,
        Site::A,
        &id,
        restart_ms,
        "swap",
        &["planned swap", "to site-a"],
    );
    // The restarted site-a took the service address only with the swap, never on its old
    // word while site-b served (two holders pull the hosts' connections back and forth). Its
    // log says so a moment after the address is there.
    let deadline = Instant::now() + Duration::from_millis(EVENT_MS);
    let log = loop {
        let log = d.a.log();
        if log.contains("service address taken") || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (taken, swap) = (log.find("service address taken"), log.find("planned swap"));
    assert!(
        swap.is_some() && taken > swap,
        "site-a's log: the service address taken (at {taken:?}) before the swap back (at {swap:?}), or either missing:\n{log}"
    );
    let n = w.acked();
    w.wait_acks(n + 20, 30_000, "after the failback", &|| d.logs());
    let copied_during = cp.copied();
    let log = w.finish();
    let (copied, copies) = cp.finish();
    eprint_timeline("kill9 writer", kill_at, &log);

    let rto = first_ack_after(&log, kill_at).map(|t| t - kill_at);
    eprintln!(
        "kill -9 of the serving array: service address at site-b after {:?}, first write acknowledged by the survivor after {rto:?}; back on site-a {:?} after the kill; libnfs: {copied_during} copies, {} failed attempts",
        served_at - kill_at,
        back_at - kill_at,
        copies.failed
    );
    assert!(
        copies.hung.is_empty(),
        "libnfs copies hung (a host left on a connection nobody closed): {:#?}\n{}",
        copies.hung,
        d.logs()
    );
    assert!(rto.is_some(), "no write acknowledged by the survivor");
    assert!(
        log.nfs_errors.is_empty(),
        "the writer saw NFS errors: {:?}",
        log.nfs_errors
    );
    assert!(
        back["epoch"].as_u64() > v["epoch"].as_u64(),
        "the swap back raised the epoch: {back:#}"
    );
    let content = read_file(&d.topo, SERVICE, "fo", "w").expect("read back");
    no_ack_lost(1, &log.acks, &content).unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    copies_present(&d.topo, "fo", &copied).unwrap_or_else(|e| panic!("{e}"));
    check_healed_and_identical(&mut d, Site::A, &id, "fo");
}

#[test]
fn link_only_cut_the_preferred_goes_on_the_other_stops() {
    let mut d = Domain::start(Opts::default());
    let id = d.create_pair("lc");
    d.wait_serving(Site::A, &id, TAKEOVER_MS);
    let w = Writer::start(&d.topo, SERVICE, "lc", "w", 2);
    w.wait_acks(20, 30_000, "before the cut", &|| d.logs());

    let cut_at = Instant::now();
    let cut_ms = now_ms();
    d.topo.cut_link();
    // site-b notices, asks after its head start, loses: it stops; site-a wins and goes on.
    let vb = d.wait(Site::B, &id, "stopped as the loser", TAKEOVER_MS, |v| {
        v["link"] == "Down" && v["role"] == "Secondary" && v["last_arbitration"].is_object()
    });
    let va = d.wait(Site::A, &id, "ToBeSynchronized", TAKEOVER_MS, |v| {
        v["state"] == "ToBeSynchronized"
    });
    assert_eq!(va["serving"], "site-a", "{va:#}");
    assert_eq!(va["last_arbitration"]["winner"], "site-a", "{va:#}");
    // site-a's log: it won the next epoch and serves alone; site-b's: site-a holds it.
    let epoch = format!("epoch {}", va["epoch"]);
    wait_event(
        &d,
        Site::A,
        &id,
        cut_ms,
        "arbitration",
        &["link lost", "granted", &epoch],
    );
    wait_event(
        &d,
        Site::B,
        &id,
        cut_ms,
        "arbitration",
        &["link lost", "site-a", &epoch],
    );
    let n = w.acked();
    w.wait_acks(n + 20, 30_000, "during the cut", &|| d.logs());
    // Never the service address on site-b.
    for _ in 0..20 {
        assert_eq!(d.topo.service_holders(), vec![Site::A], "during the cut");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gap = longest_gap(&w.log.lock().expect("log").acks, cut_at);
    d.topo.heal_link();
    let n = w.acked();
    w.wait_acks(n + 20, 30_000, "after the heal", &|| d.logs());
    d.wait(Site::A, &id, "Normal", NORMAL_MS, |v| {
        v["state"] == "Normal"
    });
    let n = w.acked();
    w.wait_acks(n + 5, 30_000, "when Normal", &|| d.logs());
    let log = w.finish();
    eprintln!(
        "link cut: longest pause of the writer {gap:?}; site-b's last arbitration {}",
        vb["last_arbitration"]
    );
    assert!(log.nfs_errors.is_empty(), "{:?}", log.nfs_errors);
    let content = read_file(&d.topo, SERVICE, "lc", "w").expect("read back");
    no_ack_lost(2, &log.acks, &content).unwrap_or_else(|e| panic!("{e}"));
    check_healed_and_identical(&mut d, Site::A, &id, "lc");
}

#[test]
fn preferred_isolated_from_peer_and_quorum_stops_and_the_other_takes_over() {
    let mut d = Domain::start(Opts::default());
    let id = d.create_pair("iso");
    d.wait_serving(Site::A, &id, TAKEOVER_MS);
    // One writer on each site's own address (hosts reach both all along), one on the
    // service address.
    let wa = Writer::start(&d.topo, Site::A.addr(), "iso", "wa", 3);
    let ws = Writer::start(&d.topo, SERVICE, "iso", "ws", 4);
    wa.wait_acks(20, 30_000, "before the isolation", &|| d.logs());
    ws.wait_acks(20, 30_000, "before the isolation", &|| d.logs());
    let wb = Writer::start(&d.topo, Site::B.addr(), "iso", "wb", 5);

    let cut_at = Instant::now();
    let cut_ms = now_ms();
    d.topo.cut(Site::A, Peer::Site);
    d.topo.cut(Site::A, Peer::Quorum);
    let vb = d.wait_serving(Site::B, &id, TAKEOVER_MS);
    assert_eq!(vb["last_arbitration"]["winner"], "site-b", "{vb:#}");
    let epoch = format!("epoch {}", vb["epoch"]);
    wait_event(&d, Site::B, &id, cut_ms, "failover", &["site-b", &epoch]);
    // site-a: not serving, no service address, no acknowledgement.
    let va = d.wait(Site::A, &id, "stopped", TAKEOVER_MS, |v| {
        v["role"] == "Secondary" || v["phase"] == "Stopped"
    });
    let n = ws.acked();
    ws.wait_acks(
        n + 20,
        30_000,
        "through the service address after the takeover",
        &|| d.logs(),
    );
    wb.wait_acks(
        20,
        60_000,
        "on site-b's own address after the takeover",
        &|| d.logs(),
    );
    let a_before = wa.acked_after(cut_at);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        wa.acked_after(cut_at),
        a_before,
        "site-a acknowledged after it lost: {va:#}"
    );

    d.topo.heal_all();
    let v = d.wait(Site::B, &id, "Normal", NORMAL_MS, |v| {
        v["state"] == "Normal"
    });
    assert_eq!(
        v["serving"], "site-b",
        "manual recovery: site-b keeps serving: {v:#}"
    );
    let n = ws.acked();
    ws.wait_acks(n + 5, 30_000, "after the heal", &|| d.logs());
    let (la, lb, ls) = (wa.finish(), wb.finish(), ws.finish());
    one_side_acks_at_a_time(cut_at, &la.acks, &lb.acks).unwrap_or_else(|e| panic!("{e}"));
    for (seed, file, log) in [(3, "wa", &la), (5, "wb", &lb), (4, "ws", &ls)] {
        let content = read_file(&d.topo, SERVICE, "iso", file).expect("read back");
        no_ack_lost(seed, &log.acks, &content)
            .unwrap_or_else(|e| panic!("{file}: {e}\n{}", d.logs()));
    }
    eprintln!(
        "isolation: site-a acks after the cut {}, site-b {} (site-a's last arbitration {})",
        la.acks.iter().filter(|a| a.at > cut_at).count(),
        lb.acks.len(),
        va["last_arbitration"]
    );
    check_healed_and_identical(&mut d, Site::B, &id, "iso");
}

/// Waits until both arrays have seen the quorum unreachable while the link was up (the pair
/// then follows `on_quorum_loss` without asking).
fn wait_quorum_lost_on_both(d: &Domain, id: &str) {
    for s in [Site::A, Site::B] {
        d.wait(s, id, "without quorum", 20_000, |v| {
            v["quorum"]
                .as_array()
                .is_some_and(|q| !q.is_empty() && q.iter().all(|s| s["reachable"] == false))
                && v["quorum_mode"]
                    .as_str()
                    .is_none_or(|m| m == "static-priority")
        });
    }
}

#[test]
fn quorum_down_then_link_cut_static_priority_keeps_the_preferred() {
    let mut d = Domain::start(Opts {
        on_quorum_loss: "static-priority",
        ..Opts::default()
    });
    let id = d.create_pair("sp");
    let w = Writer::start(&d.topo, SERVICE, "sp", "w", 6);
    w.wait_acks(10, 30_000, "at start", &|| d.logs());
    d.q.as_mut().expect("quorum").kill9();
    wait_quorum_lost_on_both(&d, &id);
    let cut_ms = now_ms();
    d.topo.cut_link();
    d.wait(Site::B, &id, "stopped", TAKEOVER_MS, |v| {
        v["link"] == "Down" && v["role"] == "Secondary"
    });
    d.wait(Site::A, &id, "ToBeSynchronized", TAKEOVER_MS, |v| {
        v["state"] == "ToBeSynchronized" && v["serving"] == "site-a"
    });
    wait_event(
        &d,
        Site::A,
        &id,
        cut_ms,
        "arbitration",
        &["static priority", "site-a"],
    );
    wait_event(
        &d,
        Site::B,
        &id,
        cut_ms,
        "arbitration",
        &["static priority", "stops"],
    );
    let n = w.acked();
    w.wait_acks(
        n + 20,
        30_000,
        "after the cut (static priority: site-a goes on)",
        &|| d.logs(),
    );
    assert_eq!(d.topo.service_holders(), vec![Site::A]);
    d.topo.heal_link();
    d.q.as_mut().expect("quorum").spawn();
    let log = w.finish();
    let content = read_file(&d.topo, SERVICE, "sp", "w").expect("read back");
    no_ack_lost(6, &log.acks, &content).unwrap_or_else(|e| panic!("{e}"));
    check_healed_and_identical(&mut d, Site::A, &id, "sp");
}

#[test]
fn quorum_down_then_link_cut_stop_stops_both() {
    let mut d = Domain::start(Opts {
        on_quorum_loss: "stop",
        ..Opts::default()
    });
    let id = d.create_pair("st");
    let w = Writer::start(&d.topo, SERVICE, "st", "w", 7);
    w.wait_acks(10, 30_000, "at start", &|| d.logs());
    d.q.as_mut().expect("quorum").kill9();
    wait_quorum_lost_on_both(&d, &id);
    let cut_at = Instant::now();
    let cut_ms = now_ms();
    d.topo.cut_link();
    for s in [Site::A, Site::B] {
        d.wait(s, &id, "stopped", TAKEOVER_MS, |v| {
            v["link"] == "Down" && v["phase"] == "Stopped"
        });
        // Nobody takes over: each log says why its side stopped.
        wait_event(
            &d,
            s,
            &id,
            cut_ms,
            "arbitration",
            &["link lost", "on_quorum_loss"],
        );
    }
    // Nobody acknowledges, nobody holds the service address.
    let after = w.acked_after(cut_at);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        w.acked_after(cut_at),
        after,
        "a write was acknowledged while both should be stopped"
    );
    assert!(
        d.topo.service_holders().is_empty(),
        "service address held by {:?}",
        d.topo.service_holders()
    );
    // Liveness: link and quorum back, the pair serves again by itself.
    d.topo.heal_link();
    d.q.as_mut().expect("quorum").spawn();
    let n = w.acked();
    w.wait_acks(n + 10, 60_000, "after link and quorum returned", &|| {
        d.logs()
    });
    let log = w.finish();
    let content = read_file(&d.topo, SERVICE, "st", "w").expect("read back");
    no_ack_lost(7, &log.acks, &content).unwrap_or_else(|e| panic!("{e}"));
    let serving = Site::of_name(
        d.show(Site::A, &id).expect("view")["serving"]
            .as_str()
            .expect("serving"),
    )
    .expect("a site");
    check_healed_and_identical(&mut d, serving, &id, "st");
}

#[test]
fn quorum_restarted_during_an_arbitration_still_one_winner() {
    let mut d = Domain::start(Opts {
        head_start_ms: Some(1500),
        ..Opts::default()
    });
    let id = d.create_pair("qr");
    let w = Writer::start(&d.topo, SERVICE, "qr", "w", 8);
    w.wait_acks(10, 30_000, "at start", &|| d.logs());
    // Cut site-a from everything but the hosts: site-b will claim after its head start;
    // the quorum server dies and comes back while the claims are under way.
    let cut_ms = now_ms();
    d.topo.cut(Site::A, Peer::Site);
    d.topo.cut(Site::A, Peer::Quorum);
    std::thread::sleep(Duration::from_millis(900));
    let q = d.q.as_mut().expect("quorum");
    q.kill9();
    std::thread::sleep(Duration::from_millis(300));
    q.spawn();
    // Sample who serves for a while: never both.
    let until = Instant::now() + Duration::from_secs(8);
    let mut seen = Vec::new();
    while Instant::now() < until {
        let h = d.topo.service_holders();
        assert!(h.len() <= 1, "service address on both sites");
        let serving: Vec<Site> = [Site::A, Site::B]
            .into_iter()
            .filter(|s| {
                d.show(*s, &id)
                    .is_some_and(|v| v["role"] == "Primary" && v["phase"] == "Open")
            })
            .collect();
        assert!(
            serving.len() <= 1,
            "both sides open for changes: {serving:?}"
        );
        if seen.last() != Some(&serving) {
            seen.push(serving);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let vb = d.wait_serving(Site::B, &id, TAKEOVER_MS);
    let epoch = format!("epoch {}", vb["epoch"]);
    wait_event(&d, Site::B, &id, cut_ms, "failover", &["site-b", &epoch]);
    d.topo.heal_all();
    let n = w.acked();
    w.wait_acks(n + 10, 60_000, "after the heal", &|| d.logs());
    let log = w.finish();
    eprintln!(
        "quorum restart during arbitration: serving sides seen {seen:?}; site-b {}",
        vb["last_arbitration"]
    );
    let content = read_file(&d.topo, SERVICE, "qr", "w").expect("read back");
    no_ack_lost(8, &log.acks, &content).unwrap_or_else(|e| panic!("{e}"));
    check_healed_and_identical(&mut d, Site::B, &id, "qr");
}

#[test]
fn swap_under_load_no_client_error_and_a_short_pause() {
    let mut d = Domain::start(Opts::default());
    let id = d.create_pair("sw");
    let w = Writer::start(&d.topo, SERVICE, "sw", "w", 9);
    w.wait_acks(30, 30_000, "before the swap", &|| d.logs());
    let mut pauses = Vec::new();
    let t0 = Instant::now();
    for (from, to) in [(Site::A, Site::B), (Site::B, Site::A)] {
        eprintln!("swap {from:?} -> {to:?} at {:?}", t0.elapsed());
        let at = Instant::now();
        let at_ms = now_ms();
        let out = d.arr(from).cli(&["pair", "swap", &id]);
        assert!(
            out.status.success(),
            "swap on {}: {}\n{}",
            from.name(),
            text(&out),
            d.logs()
        );
        d.wait_serving(to, &id, TAKEOVER_MS);
        // Both logs have the swap: the side that serves now, and the one that handed over.
        let moved = format!("from {} to {}", from.name(), to.name());
        for s in [to, from] {
            wait_event(&d, s, &id, at_ms, "swap", &["planned swap", &moved]);
        }
        let n = w.acked();
        w.wait_acks(n + 30, 30_000, "after the swap", &|| d.logs());
        pauses.push(longest_gap(&w.log.lock().expect("log").acks, at));
        d.wait(to, &id, "Normal", NORMAL_MS, |v| v["state"] == "Normal");
    }
    let log = w.finish();
    eprint_timeline("swap writer", t0, &log);
    eprintln!("planned swap under load: client-visible pauses {pauses:?} (target ≤ 1 s)");
    assert!(
        log.nfs_errors.is_empty(),
        "the client saw errors: {:?}",
        log.nfs_errors
    );
    // A request the old side neither answered nor closed the connection of waits for the
    // client's timeout (here 1.5 s; a Linux client over TCP waits `timeo`, 60 s by default).
    let unanswered: Vec<_> = log
        .resends
        .iter()
        .filter(|(_, why)| *why == "timeout")
        .map(|(t, _)| t.saturating_duration_since(t0))
        .collect();
    assert!(
        unanswered.is_empty(),
        "requests left without an answer on an open connection during the swaps, at {unanswered:?}\n{}",
        d.logs()
    );
    let content = read_file(&d.topo, SERVICE, "sw", "w").expect("read back");
    no_ack_lost(9, &log.acks, &content).unwrap_or_else(|e| panic!("{e}"));
    check_healed_and_identical(&mut d, Site::A, &id, "sw");
}

#[test]
fn force_start_serves_the_fenced_side_and_keeps_the_other_sides_changes_aside() {
    let mut d = Domain::start(Opts::default());
    let id = d.create_pair("fst");
    // The link goes: site-a (preferred) wins and writes on alone.
    d.topo.cut_link();
    d.wait(Site::B, &id, "fenced", TAKEOVER_MS, |v| {
        v["link"] == "Down" && v["role"] == "Secondary"
    });
    d.wait(Site::A, &id, "serving alone", TAKEOVER_MS, |v| {
        v["state"] == "ToBeSynchronized"
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let only_a = tools::pattern(77, 100_000);
    std::fs::write(tmp.path().join("a"), &only_a).expect("src");
    let out = d.topo.host_tool(
        "nfs-cp",
        &[
            &tmp.path().join("a").to_string_lossy(),
            &crate::topo::url(SERVICE, "fst", "only-on-a.bin"),
        ],
    );
    assert!(
        out.status.success(),
        "write on site-a alone: {}",
        text(&out)
    );
    // Then site-a's whole site is lost; the operator force-starts site-b.
    d.topo.site_down(Site::A);
    let refused = d.b.cli(&["pair", "force-start", &id]);
    assert!(
        !refused.status.success(),
        "force-start without --yes and no terminal must refuse: {}",
        text(&refused)
    );
    let forced_ms = now_ms();
    let out = d.b.cli(&["pair", "force-start", &id, "--yes"]);
    assert!(
        out.status.success(),
        "force-start: {}\n{}",
        text(&out),
        d.logs()
    );
    let vb = d.wait(Site::B, &id, "serving", TAKEOVER_MS, |v| {
        v["serving"] == "site-b" && v["role"] == "Primary"
    });
    // site-b's log: the force start (the epoch it took) and the takeover it made.
    let epoch = format!("epoch {}", vb["epoch"]);
    wait_event(
        &d,
        Site::B,
        &id,
        forced_ms,
        "force_start",
        &["force start", "operator"],
    );
    wait_event(&d, Site::B, &id, forced_ms, "failover", &["site-b", &epoch]);
    let only_b = tools::pattern(78, 50_000);
    std::fs::write(tmp.path().join("b"), &only_b).expect("src");
    let deadline = Instant::now() + Duration::from_millis(TAKEOVER_MS);
    loop {
        let out = d.topo.host_tool(
            "nfs-cp",
            &[
                &tmp.path().join("b").to_string_lossy(),
                &crate::topo::url(SERVICE, "fst", "after-force.bin"),
            ],
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "write on the force-started side: {}\n{}",
            text(&out),
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // site-a returns: it finds a newer epoch, keeps its changes aside and resynchronises.
    d.topo.site_up(Site::A);
    d.topo.heal_link();
    let v = d.wait(Site::B, &id, "Normal", NORMAL_MS, |v| {
        v["state"] == "Normal"
    });
    assert_eq!(v["serving"], "site-b", "{v:#}");
    assert!(v["epoch"].as_u64() >= vb["epoch"].as_u64(), "{v:#}");
    // The kept-aside copy is on the fs under .metrofs-conflicts/<fs>-…-e<epoch>/.
    let deadline = Instant::now() + Duration::from_millis(NORMAL_MS);
    let (dir, listing) = loop {
        let out = d.topo.host_tool(
            "nfs-ls",
            &[&crate::topo::url(SERVICE, "fst", ".metrofs-conflicts")],
        );
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(dir) = listing
            .split_whitespace()
            .find(|w| w.starts_with("fst-") && w.contains("-e"))
        {
            break (dir.to_owned(), listing);
        }
        assert!(
            Instant::now() < deadline,
            "no .metrofs-conflicts/fst-*-e*: {}\n{}",
            text(&out),
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let kept = d.topo.host_tool(
        "nfs-cat",
        &[&crate::topo::url(
            SERVICE,
            "fst",
            &format!(".metrofs-conflicts/{dir}/only-on-a.bin"),
        )],
    );
    assert!(kept.status.success(), "{listing}\n{}", text(&kept));
    assert!(
        kept.stdout == only_a,
        "the kept-aside copy has site-a's bytes ({} bytes)",
        kept.stdout.len()
    );
    let after = d.topo.host_tool(
        "nfs-cat",
        &[&crate::topo::url(SERVICE, "fst", "after-force.bin")],
    );
    assert!(
        after.stdout == only_b,
        "the force-started side's write is there"
    );
    let gone = d.topo.host_tool(
        "nfs-cat",
        &[&crate::topo::url(SERVICE, "fst", "only-on-a.bin")],
    );
    assert!(
        !gone.status.success(),
        "site-a's change was superseded by the force start (kept aside, not merged): {}",
        text(&gone)
    );
    check_healed_and_identical(&mut d, Site::B, &id, "fst");
}

/// The parts of an ONC RPC call over TCP with a chosen xid: what a real NFS client resends
/// after a lost reply (same xid, same arguments) on a new connection.
mod raw {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use nfs3_client::nfs3_types::rpc::{
        auth_unix, call_body, fragment_header, msg_body, opaque_auth, reply_body, rpc_msg,
        RPC_VERSION_2,
    };
    use nfs3_client::nfs3_types::xdr_codec::{Opaque, Pack, Unpack};

    pub const NFS_PROGRAM: u32 = 100_003;
    pub const NFSPROC3_CREATE: u32 = 8;
    pub const NFSPROC3_REMOVE: u32 = 12;

    /// Sends the call and reads the reply's result, `None` when the connection ends first.
    pub fn call<A: Pack, R: Unpack>(s: &mut TcpStream, xid: u32, proc: u32, args: &A) -> Option<R> {
        let cred = opaque_auth::auth_unix(&auth_unix {
            stamp: 1,
            machinename: Opaque::borrowed(b"metrofs-it"),
            uid: 0,
            gid: 0,
            gids: vec![0],
        });
        let msg = rpc_msg {
            xid,
            body: msg_body::CALL(call_body {
                rpcvers: RPC_VERSION_2,
                prog: NFS_PROGRAM,
                vers: 3,
                proc,
                cred,
                verf: opaque_auth::default(),
            }),
        };
        let mut body = Vec::new();
        msg.pack(&mut body).expect("pack");
        args.pack(&mut body).expect("pack");
        let mut buf = Vec::new();
        fragment_header::new(u32::try_from(body.len()).expect("len"), true)
            .pack(&mut buf)
            .expect("pack");
        buf.extend_from_slice(&body);
        s.write_all(&buf).ok()?;
        let mut h = [0u8; 4];
        s.read_exact(&mut h).ok()?;
        let len = fragment_header::from(h).fragment_length();
        let mut reply = vec![0u8; len as usize];
        s.read_exact(&mut reply).ok()?;
        let mut cur = std::io::Cursor::new(reply);
        let (m, _) = rpc_msg::unpack(&mut cur).expect("reply header");
        assert_eq!(m.xid, xid, "reply to another call");
        assert!(
            matches!(m.body, msg_body::REPLY(reply_body::MSG_ACCEPTED(_))),
            "RPC not accepted"
        );
        Some(R::unpack(&mut cur).expect("result").0)
    }
}

#[test]
fn create_and_remove_whose_replies_were_lost_succeed_when_resent_to_the_survivor() {
    use nfs3::{createhow3, diropargs3, filename3, sattr3, Nfs3Option, Nfs3Result};
    let mut d = Domain::start_with_env(
        Opts {
            recovery: "manual",
            ..Opts::default()
        },
        &[("METROFS_FAILPOINT", "kill-before-reply:CREATE:victim.txt")],
        &[("METROFS_FAILPOINT", "kill-before-reply:REMOVE:victim.txt")],
    );
    let id = d.create_pair("rc");
    d.wait_serving(Site::A, &id, TAKEOVER_MS);
    let root = Topo::spawn_in(&d.topo.host, || {
        crate::nfs::rt().block_on(async {
            Client::mount(
                SocketAddr::new(IpAddr::V4(SERVICE), NFS_PORT),
                "rc",
                IpAddr::V4(HOST),
            )
            .await
            .expect("mount")
            .root
        })
    })
    .join()
    .expect("mount thread");
    let svc = SocketAddr::new(IpAddr::V4(SERVICE), NFS_PORT);
    let connect = move |host: &str| {
        Topo::spawn_in(host, move || {
            let s = std::net::TcpStream::connect_timeout(&svc, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Some(s)
        })
        .join()
        .expect("connect thread")
    };
    let name = || diropargs3 {
        dir: root.clone(),
        name: filename3::from(b"victim.txt".to_vec()),
    };
    let create = || nfs3::CREATE3args {
        where_: name(),
        how: createhow3::GUARDED(sattr3 {
            mode: Nfs3Option::Some(0o644),
            ..sattr3::default()
        }),
    };
    let remove = || nfs3::REMOVE3args { object: name() };
    let host = d.topo.host.clone();

    // CREATE (GUARDED: a plain resend would answer EXIST) reaches site-a, which applies it
    // on both sides and dies before answering.
    let mut s = connect(&host).expect("connect to the service address");
    let first: Option<nfs3::CREATE3res> =
        raw::call(&mut s, 0x5eed_0001, raw::NFSPROC3_CREATE, &create());
    assert!(
        first.is_none(),
        "site-a answered the CREATE (the failpoint should kill it first)"
    );
    assert!(
        d.a.wait_exit(10_000).is_some(),
        "site-a did not die at the failpoint:\n{}",
        d.logs()
    );
    d.wait_serving(Site::B, &id, TAKEOVER_MS);
    // The same call resent to the survivor through the same address: success, not EXIST.
    let deadline = Instant::now() + Duration::from_millis(TAKEOVER_MS);
    let resent: nfs3::CREATE3res = loop {
        if let Some(r) = connect(&host)
            .and_then(|mut s| raw::call(&mut s, 0x5eed_0001, raw::NFSPROC3_CREATE, &create()))
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the survivor:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let Nfs3Result::Ok(ok) = resent else {
        panic!(
            "resent CREATE answered {:?}, expected success",
            status_of(&resent)
        )
    };
    assert!(
        matches!(ok.obj, Nfs3Option::Some(_)),
        "no handle in the replayed CREATE reply"
    );
    // A new CREATE (another xid) of the same name is EXIST: the success above was the reply
    // cache, not a server ignoring GUARDED.
    let fresh: nfs3::CREATE3res = connect(&host)
        .and_then(|mut s| raw::call(&mut s, 0x5eed_0002, raw::NFSPROC3_CREATE, &create()))
        .expect("answer");
    assert_eq!(status_of(&fresh), Some(nfs3::nfsstat3::NFS3ERR_EXIST));

    // site-a returns (secondary), the pair heals; then the REMOVE's reply is lost on site-b.
    d.a.spawn();
    d.wait(Site::B, &id, "Normal", NORMAL_MS, |v| {
        v["state"] == "Normal"
    });
    let first: Option<nfs3::REMOVE3res> = connect(&host)
        .and_then(|mut s| raw::call(&mut s, 0x5eed_0003, raw::NFSPROC3_REMOVE, &remove()));
    assert!(
        first.is_none(),
        "site-b answered the REMOVE (the failpoint should kill it first)"
    );
    assert!(
        d.b.wait_exit(10_000).is_some(),
        "site-b did not die at the failpoint:\n{}",
        d.logs()
    );
    d.wait_serving(Site::A, &id, TAKEOVER_MS);
    let deadline = Instant::now() + Duration::from_millis(TAKEOVER_MS);
    let resent: nfs3::REMOVE3res = loop {
        if let Some(r) = connect(&host)
            .and_then(|mut s| raw::call(&mut s, 0x5eed_0003, raw::NFSPROC3_REMOVE, &remove()))
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the survivor:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        matches!(resent, Nfs3Result::Ok(_)),
        "resent REMOVE answered {:?}, expected success",
        status_of(&resent)
    );
    let fresh: nfs3::REMOVE3res = connect(&host)
        .and_then(|mut s| raw::call(&mut s, 0x5eed_0004, raw::NFSPROC3_REMOVE, &remove()))
        .expect("answer");
    assert_eq!(
        status_of(&fresh),
        Some(nfs3::nfsstat3::NFS3ERR_NOENT),
        "the file is gone"
    );
    d.b.spawn();
    check_healed_and_identical(&mut d, Site::A, &id, "rc");
}

fn status_of<T, E>(r: &nfs3::Nfs3Result<T, E>) -> Option<nfs3::nfsstat3> {
    match r {
        nfs3::Nfs3Result::Ok(_) => None,
        nfs3::Nfs3Result::Err((s, _)) => Some(*s),
    }
}

#[test]
fn quorum_refuses_bad_input_and_keeps_its_records() {
    use metrofs_link::{Identity, LinkConfig, Secret};
    use metrofs_quorum::{Claim, QuorumClient};
    let d = Domain::start(Opts::default());
    let q = d.q.as_ref().expect("quorum");
    let secret = Secret::from_file(&d.secret).expect("secret");
    let server = vec![format!(
        "{}:{}",
        crate::topo::QUORUM,
        crate::topo::QUORUM_PORT
    )];
    let refusals =
        |q: &crate::topo::QuorumProc| q.log().matches("quorum connection refused").count();
    /// A scope no pair uses.
    const SCOPE: u64 = 0x00de_ad00_0000_0001;
    let (good, wrong, unknown, records) = Topo::spawn_in(&d.topo.host, move || {
        crate::nfs::rt().block_on(async {
            let t = Duration::from_secs(3);
            let link = LinkConfig::default();
            let ok = QuorumClient::new(
                server.clone(),
                Identity::new("metro1", "site-a", secret.clone()).expect("id"),
                link.clone(),
            );
            let other = QuorumClient::new(
                server.clone(),
                Identity::new("metro1", "site-b", secret.clone()).expect("id"),
                link.clone(),
            );
            let wrong_secret = QuorumClient::new(
                server.clone(),
                Identity::new(
                    "metro1",
                    "site-a",
                    Secret::new(vec![7u8; 32]).expect("secret"),
                )
                .expect("id"),
                link.clone(),
            );
            let unknown = QuorumClient::new(
                server.clone(),
                Identity::new("nosuch", "site-a", secret.clone()).expect("id"),
                link.clone(),
            );
            let granted = ok.claim(SCOPE, 5, t).await;
            let old = ok.claim(SCOPE, 3, t).await;
            let taken = other.claim(SCOPE, 5, t).await;
            let w = wrong_secret.claim(SCOPE, 9, t).await;
            let u = unknown.claim(SCOPE, 9, t).await;
            let records = ok.records(SCOPE, t).await;
            ((granted, old, taken), w, u, records)
        })
    })
    .join()
    .expect("client thread");
    assert_eq!(good.0.as_ref().ok(), Some(&Claim::Granted), "{good:?}");
    assert!(
        matches!(good.1, Ok(Claim::Denied { epoch: 5, .. })),
        "an old epoch is denied: {good:?}"
    );
    assert!(
        matches!(good.2, Ok(Claim::Denied { epoch: 5, .. })),
        "an epoch granted to another array is denied: {good:?}"
    );
    assert!(
        wrong.is_err(),
        "a wrong secret must not be answered: {wrong:?}"
    );
    assert!(
        unknown.is_err(),
        "an unknown domain must not be answered: {unknown:?}"
    );
    let before_garbage = refusals(q);
    assert!(before_garbage >= 2, "both refusals logged:\n{}", q.log());
    // Garbage bytes: the connection is closed, the server goes on.
    let closed = Topo::spawn_in(&d.topo.host, || {
        use std::io::{Read as _, Write as _};
        let mut s =
            std::net::TcpStream::connect(crate::topo::QuorumProc::listen()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(&tools::pattern(5, 4096));
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .join()
    .expect("garbage thread");
    assert!(closed, "garbage: the connection ends");
    let deadline = Instant::now() + Duration::from_secs(5);
    while refusals(q) <= before_garbage {
        assert!(
            Instant::now() < deadline,
            "garbage not logged:\n{}",
            q.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(q.log().contains("claim denied: old epoch"), "{}", q.log());
    // The record is what the one valid claim made.
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = records[0]
        .record
        .clone()
        .expect("status")
        .expect("a record");
    assert_eq!((rec.epoch, rec.holder.as_str()), (5, "site-a"), "{rec:?}");
    eprintln!("quorum log:\n{}", tail(&q.log(), 20));
}
