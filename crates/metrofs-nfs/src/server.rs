//! The listener, connections, and dispatch of calls to MOUNT and NFS.
//!
//! One connection is three parts:
//! - a reader (the connection's task) reads records ([`crate::record`]) and parses call
//!   headers ([`crate::rpc`]). A record that is not RPC closes the connection; a call refused
//!   at header level (RPC version, credentials) is answered at once; any other call runs in
//!   its own task, so several calls of one client run at the same time and their replies may
//!   leave out of order (RPC matches them by xid);
//! - at most [`IN_FLIGHT_MAX`] calls per connection are running or have a reply waiting to
//!   be sent: the reader takes a slot before it reads the next record and the slot is freed
//!   once the reply is written, so a client that sends without reading stalls itself only;
//! - one writer task owns the socket's write half behind a buffer and sends the replies,
//!   flushing when no more are queued. A READ's data is written after its header from the
//!   backend's buffer, never copied into the reply.
//!
//! [`Connections::close_all`] closes every connection at once (a failover does, so that
//! clients reconnect to the side that serves now). [`Connections::release`] does it before a
//! floating address leaves the host, and also takes, through the accept loop, the connections
//! the kernel completed but nobody accepted yet.
//!
//! Retransmissions of non-idempotent calls are answered from the reply cache
//! ([`crate::cache`]) when they reach this server again. The namespace and attribute changes
//! among them also carry their key to the backend ([`metrofs_core::Caller::reply_key`]), so
//! that one resent to the other array after a failover is answered there from
//! [`metrofs_core::Backend::replayed`] (see `nfs`).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metrofs_core::bufpool::BufPool;
use metrofs_core::{Backend, ReplyKey};
use nfs3_types::nfs3::nfsstat3;
use nfs3_types::rpc::accept_stat_data;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::cache::{Begin, Key, ReplyCache};
use crate::failpoint::Failpoint;
use crate::nfs::Fail;
use crate::record::{self, RecordReader, RECORD_BYTES_MAX};
use crate::rpc::{self, Call, Cred, Refused};
use crate::xdr::{padded, Dec};

/// Calls of one connection running or waiting for their reply to be written, at most.
pub const IN_FLIGHT_MAX: usize = 64;
/// Most bytes of large-record buffers the server keeps between uses, for all connections:
/// thirty 1 MiB WRITEs (eight clients streaming with a few calls in flight each).
pub const RECORD_POOL_IDLE_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Write buffer per connection, in bytes: many small replies per send; a READ's data larger
/// than this goes straight to the socket.
const WRITE_BUFFER_BYTES: usize = 64 << 10;
/// Pause after a failed accept (out of file descriptors, usually) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Connections taken from the listen backlog by one sweep, at most: the kernel's own limit on
/// that backlog (`somaxconn`) is 4096 by default.
const SWEEP_MAX: usize = 4096;
/// How often [`Connections::release`] looks whether the connections it closed are gone.
const RELEASE_POLL: Duration = Duration::from_millis(2);

pub const NFS_PROGRAM: u32 = nfs3_types::nfs3::PROGRAM;
pub const MOUNT_PROGRAM: u32 = nfs3_types::mount::PROGRAM;
/// The one version served of each program.
const VERSION: u32 = 3;

/// NFSv3 procedures whose retransmission must not run twice: answered from the reply cache.
fn non_idempotent(proc: u32) -> bool {
    // SETATTR, WRITE, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK
    matches!(proc, 2 | 7..=15)
}

/// Non-idempotent NFSv3 procedures whose key also goes to the backend
/// ([`metrofs_core::Caller::reply_key`]), so a retransmission after a failover is answered
/// from [`Backend::replayed`]: SETATTR, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME,
/// LINK. Not WRITE: the same bytes written again at the same offset answer the same success,
/// and writes, the bulk of all changes, would crowd the backend's bounded record of results
/// and shorten how long a CREATE or REMOVE stays answerable. (COMMIT is idempotent.)
fn keyed_for_backend(proc: u32) -> bool {
    matches!(proc, 2 | 8..=15)
}

/// What the procedures share: the backend, the reply cache and the test failpoint.
pub(crate) struct Shared<B> {
    pub backend: Arc<B>,
    pub cache: Mutex<ReplyCache>,
    /// Read once at startup from `METROFS_FAILPOINT` (test only, see [`crate::failpoint`]).
    pub failpoint: Option<Failpoint>,
    /// Buffers for large records (WRITEs), shared by all connections.
    pub records: BufPool,
}

/// One call, as the procedures see it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub peer: SocketAddr,
    pub xid: u32,
    pub cred: Cred,
    /// The call's key for the backend, for the procedures of [`keyed_for_backend`].
    pub reply_key: Option<ReplyKey>,
}

/// An encoded reply: the RPC message, then `data` and its XDR padding (READ).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub msg: Bytes,
    pub data: Bytes,
}

/// A request to the accept loop to take every connection waiting in the listen backlog now;
/// answered once it has.
type Sweep = tokio::sync::oneshot::Sender<()>;

/// A handle on the open connections of a server.
#[derive(Clone, Debug)]
pub struct Connections {
    close: Arc<watch::Sender<u64>>,
    /// To the accept loop ([`NfsServer::serve`]): sweeps of the listen backlog.
    sweeps: tokio::sync::mpsc::UnboundedSender<Sweep>,
    /// Open connections by the local address they reached.
    open: Arc<PerAddress>,
    /// Local addresses being released (see [`Connections::release`]): a connection to one of
    /// them is closed as soon as it is accepted. A count per address: releases may overlap.
    turned_away: Arc<PerAddress>,
}

impl Connections {
    /// Closes every open connection now. Calls already running finish in the backend; their
    /// replies are not sent (the client resends them on its next connection).
    pub fn close_all(&self) {
        self.close.send_modify(|generation| *generation += 1);
    }

    /// How many connections are open.
    #[must_use]
    pub fn open(&self) -> usize {
        lock(&self.open.0).values().sum()
    }

    /// How many open connections reached local address `ip`.
    #[must_use]
    pub fn open_to(&self, ip: IpAddr) -> usize {
        self.open.get(ip)
    }

    /// Before local address `ip` is taken off this host (a floating service address moving
    /// to another server): turns away new connections to `ip` (closed as soon as accepted)
    /// until the returned guard is dropped, closes every open connection, has the accept loop
    /// take (and so turn away) the connections waiting in the listen backlog, and waits up to
    /// `within` for those to `ip` to be gone. Returns the guard and how many were still open.
    ///
    /// The backlog matters: the kernel completes a handshake without the server, and the
    /// client then sends its calls. A connection still waiting there when the address goes
    /// would be accepted afterwards, served, and its replies and close would never leave.
    ///
    /// Why before: once the address is gone, nothing sent from it leaves the host, so a
    /// close made after the removal never reaches the client. A client that reconnected in
    /// the moment between a close and the removal then waits, on an open connection, for its
    /// RPC timeout (60 s for a Linux client over TCP) instead of reconnecting to the server
    /// that took the address.
    pub async fn release(&self, ip: IpAddr, within: Duration) -> (TurnedAway, usize) {
        let guard = TurnedAway {
            _count: Counted::new(&self.turned_away, ip),
        };
        self.close_all();
        let deadline = tokio::time::Instant::now() + within;
        let (swept, done) = tokio::sync::oneshot::channel();
        if self.sweeps.send(swept).is_ok() {
            // No answer: the accept loop has ended (nothing left to accept) or is too slow;
            // the count below says what is left either way.
            let _ = tokio::time::timeout_at(deadline, done).await;
        }
        loop {
            let left = self.open_to(ip);
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return (guard, left);
            }
            tokio::time::sleep(RELEASE_POLL).await;
        }
    }

    fn turns_away(&self, ip: IpAddr) -> bool {
        self.turned_away.get(ip) > 0
    }
}

/// While it lives, new connections to its address are turned away ([`Connections::release`]).
#[derive(Debug)]
pub struct TurnedAway {
    _count: Counted,
}

/// A count per local address (an address counted 0 times has no entry).
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn get(&self, ip: IpAddr) -> usize {
        lock(&self.0).get(&ip).copied().unwrap_or(0)
    }
}

/// One count of an address in a [`PerAddress`], for as long as it lives.
#[derive(Debug)]
struct Counted {
    counts: Arc<PerAddress>,
    ip: IpAddr,
}

impl Counted {
    fn new(counts: &Arc<PerAddress>, ip: IpAddr) -> Self {
        *lock(&counts.0).entry(ip).or_insert(0) += 1;
        Self {
            counts: counts.clone(),
            ip,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut m = lock(&self.counts.0);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves MOUNT v3 and NFS v3 on one TCP listener for every file system of `B`.
pub struct NfsServer<B: Backend> {
    shared: Arc<Shared<B>>,
    conns: Connections,
    sweeps: tokio::sync::mpsc::UnboundedReceiver<Sweep>,
}

impl<B: Backend> NfsServer<B> {
    /// A server of `backend`'s file systems.
    ///
    /// # Panics
    /// When the test-only variable `METROFS_FAILPOINT` is set to something that does not
    /// parse ([`crate::failpoint`]): the test that set it would otherwise pass for the wrong
    /// reason.
    #[must_use]
    pub fn new(backend: Arc<B>) -> Self {
        let failpoint = match Failpoint::from_env() {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        if let Some(f) = &failpoint {
            tracing::warn!(failpoint = ?f, "test failpoint armed: this process kills itself when it fires");
        }
        let (close, _) = watch::channel(0);
        let (sweep_tx, sweeps) = tokio::sync::mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared {
                backend,
                cache: Mutex::new(ReplyCache::default()),
                failpoint,
                records: BufPool::new(RECORD_POOL_IDLE_MAX_BYTES),
            }),
            conns: Connections {
                close: Arc::new(close),
                sweeps: sweep_tx,
                open: Arc::default(),
                turned_away: Arc::default(),
            },
            sweeps,
        }
    }

    /// A handle to count and close this server's connections, usable while it serves.
    #[must_use]
    pub fn connections(&self) -> Connections {
        self.conns.clone()
    }

    /// Accepts connections until `shutdown` completes, then closes them all.
    pub async fn serve(mut self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "NFS and MOUNT v3 listening");
        }
        // The same listening socket, for the sweeps: its accept answers WouldBlock once the
        // backlog is empty (the socket is non-blocking), where tokio's waits for readiness.
        let backlog = match listener.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(std::net::TcpListener::from(fd)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot duplicate the listening socket: releases of an address will not sweep the backlog");
                None
            }
        };
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(swept) = self.sweeps.recv() => {
                    if let Some(l) = &backlog {
                        self.sweep(l);
                    }
                    let _ = swept.send(());
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
            }
        }
        self.conns.close_all();
    }

    /// Accepts every connection waiting in the backlog of `listener` now (at most
    /// [`SWEEP_MAX`]: a flood of new connections does not hold the loop here).
    fn sweep(&self, listener: &std::net::TcpListener) {
        for _ in 0..SWEEP_MAX {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let stream = stream
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(stream));
                    match stream {
                        Ok(stream) => self.admit(stream, peer),
                        Err(e) => tracing::debug!(%peer, error = %e, "connection gone before it was served"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed while sweeping the backlog");
                    return;
                }
            }
        }
    }

    /// Serves an accepted connection, or closes it at once when it reached an address being
    /// released.
    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        let local = match stream.local_addr() {
            Ok(a) => a.ip(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection gone before it was served");
                return;
            }
        };
        // Counted and subscribed here, not in the task, and before the check below: a
        // release that starts after the check counts this connection, and its close_all
        // reaches it.
        let open = Counted::new(&self.conns.open, local);
        let close = self.conns.close.subscribe();
        if self.conns.turns_away(local) {
            // Closed now, while the address is still here to send the close from.
            tracing::debug!(%peer, %local, "connection to an address being released turned away");
            drop(stream);
            return;
        }
        tokio::spawn(connection(self.shared.clone(), close, open, stream, peer));
    }
}

/// The connection's write half, shared by the calls running on it: each call writes its own
/// reply (no hop through a writer task: one wake-up less per call). `None` once closed by us.
struct Writer {
    w: tokio::sync::Mutex<Option<BufWriter<OwnedWriteHalf>>>,
    /// Set by [`Writer::close`]; `closing` wakes a write in progress so that it gives up.
    closed: AtomicBool,
    closing: tokio::sync::Notify,
    peer: SocketAddr,
}

impl Writer {
    /// Sends one reply; a failed write closes the connection's write half (the reader then
    /// ends on the client's reset or close).
    async fn send(&self, reply: &Reply) {
        let closing = self.closing.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut g = self.w.lock().await;
        let Some(w) = g.as_mut() else {
            // Closed by us: nobody to answer.
            return;
        };
        let write = async {
            write_reply(w, reply).await?;
            w.flush().await
        };
        let sent = tokio::select! {
            sent = write => sent,
            // Closed while this reply was being written (a client that does not read): the
            // half is dropped mid-reply, as nothing more will be written on it.
            () = &mut closing => Err(std::io::Error::other("connection closed by the server")),
        };
        if let Err(e) = sent {
            tracing::debug!(peer = %self.peer, error = %e, "cannot send a reply; closing");
            *g = None;
        }
    }

    /// Closes the write half at once: replies still due are dropped, a reply being written is
    /// cut short.
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        *self.w.lock().await = None;
    }
}

enum Closed {
    /// The client closed its side: the calls in flight still answer.
    Eof,
    /// Closed by us (server or protocol error): at once.
    Now,
}

async fn connection<B: Backend>(
    shared: Arc<Shared<B>>,
    mut close: watch::Receiver<u64>,
    // Counts the connection as open (by the local address it reached) until it ends.
    _open: Counted,
    stream: TcpStream,
    peer: SocketAddr,
) {
    tracing::debug!(%peer, "connection opened");
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let (rd, wr) = stream.into_split();
    let writer = Arc::new(Writer {
        w: tokio::sync::Mutex::new(Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, wr))),
        closed: AtomicBool::new(false),
        closing: tokio::sync::Notify::new(),
        peer,
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut records = RecordReader::new(rd, RECORD_BYTES_MAX, shared.records.clone());
    let closed = loop {
        let slot = tokio::select! {
            biased;
            _ = close.changed() => break Closed::Now,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break Closed::Now,
            },
        };
        let rec = tokio::select! {
            biased;
            _ = close.changed() => break Closed::Now,
            rec = records.next() => rec,
        };
        let rec = match rec {
            Ok(Some(rec)) => rec,
            Ok(None) => break Closed::Eof,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad RPC record; closing the connection");
                break Closed::Now;
            }
        };
        let mut d = Dec::new(rec);
        match rpc::parse_call(&mut d) {
            Ok(call) => {
                tokio::spawn(run_call(shared.clone(), peer, call, d, slot, writer.clone()));
            }
            Err(Refused::Drop(why)) => {
                tracing::warn!(%peer, why, "not an RPC call; closing the connection");
                break Closed::Now;
            }
            Err(Refused::Denied { xid, why }) => {
                tracing::warn!(%peer, xid, ?why, "call refused");
                let mut out = BytesMut::new();
                match rpc::denied(xid, why, &mut out) {
                    Ok(()) => {
                        let reply = Reply {
                            msg: out.freeze(),
                            data: Bytes::new(),
                        };
                        writer.send(&reply).await;
                        drop(slot);
                    }
                    Err(e) => tracing::error!(%peer, xid, error = ?e, "cannot encode a rejection"),
                }
            }
        }
    };
    match closed {
        Closed::Eof => {
            // The calls in flight still answer (each holds a slot until its reply is written),
            // unless the server closes everything meanwhile.
            tokio::select! {
                _ = slots.acquire_many(IN_FLIGHT_MAX as u32) => {}
                _ = close.changed() => writer.close().await,
            }
        }
        Closed::Now => writer.close().await,
    }
    tracing::debug!(%peer, "connection closed");
}

async fn run_call<B: Backend>(
    shared: Arc<Shared<B>>,
    peer: SocketAddr,
    call: Call,
    args: Dec,
    slot: OwnedSemaphorePermit,
    writer: Arc<Writer>,
) {
    if let Some(reply) = shared.dispatch(peer, call, args).await {
        writer.send(&reply).await;
    }
    drop(slot);
}

async fn write_reply(w: &mut BufWriter<OwnedWriteHalf>, r: &Reply) -> std::io::Result<()> {
    let pad = padded(r.data.len()) - r.data.len();
    let len = u32::try_from(r.msg.len() + r.data.len() + pad)
        .map_err(|_| std::io::Error::other("reply longer than a record can be"))?;
    w.write_all(&record::mark(len)).await?;
    w.write_all(&r.msg).await?;
    if !r.data.is_empty() {
        w.write_all(&r.data).await?;
        w.write_all(&[0u8; 3][..pad]).await?;
    }
    Ok(())
}

/// Forgets a cached call in progress unless it finished (a panic or an uncacheable outcome).
struct Pending<'a, B> {
    shared: &'a Shared<B>,
    key: Key,
    finished: bool,
}

impl<B> Drop for Pending<'_, B> {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.shared.cache).abandon(self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What these mutexes hold (the reply cache, connection counts) is consistent between
    // their methods, so a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A whole reply with a non-success accept status.
fn accepted_only(peer: SocketAddr, xid: u32, stat: accept_stat_data) -> Option<Reply> {
    let mut out = BytesMut::with_capacity(32);
    match rpc::accepted(xid, stat, &mut out) {
        Ok(()) => Some(Reply {
            msg: out.freeze(),
            data: Bytes::new(),
        }),
        Err(e) => {
            tracing::error!(%peer, xid, error = ?e, "cannot encode a reply");
            None
        }
    }
}

/// How a call failed, for the NFS metrics (`None`: NFS3_OK).
fn failed_as(done: &Result<crate::nfs::Done, Fail>) -> Option<&'static str> {
    use nfsstat3 as S;
    Some(match done {
        Ok(d) => match d.status {
            S::NFS3_OK => return None,
            S::NFS3ERR_PERM => "PERM",
            S::NFS3ERR_NOENT => "NOENT",
            S::NFS3ERR_IO => "IO",
            S::NFS3ERR_ACCES => "ACCES",
            S::NFS3ERR_EXIST => "EXIST",
            S::NFS3ERR_NOTDIR => "NOTDIR",
            S::NFS3ERR_ISDIR => "ISDIR",
            S::NFS3ERR_INVAL => "INVAL",
            S::NFS3ERR_FBIG => "FBIG",
            S::NFS3ERR_NOSPC => "NOSPC",
            S::NFS3ERR_ROFS => "ROFS",
            S::NFS3ERR_NAMETOOLONG => "NAMETOOLONG",
            S::NFS3ERR_NOTEMPTY => "NOTEMPTY",
            S::NFS3ERR_STALE => "STALE",
            S::NFS3ERR_BADHANDLE => "BADHANDLE",
            S::NFS3ERR_NOT_SYNC => "NOT_SYNC",
            S::NFS3ERR_BAD_COOKIE => "BAD_COOKIE",
            S::NFS3ERR_NOTSUPP => "NOTSUPP",
            S::NFS3ERR_SERVERFAULT => "SERVERFAULT",
            S::NFS3ERR_JUKEBOX => "JUKEBOX",
            _ => "OTHER",
        },
        Err(Fail::Garbage) => "GARBAGE_ARGS",
        Err(Fail::ProcUnavail) => "PROC_UNAVAIL",
        Err(Fail::Encode(_)) => "SYSTEM_ERR",
    })
}

fn proc_name(prog: u32, proc: u32) -> &'static str {
    const NFS: [&str; 22] = [
        "NULL",
        "GETATTR",
        "SETATTR",
        "LOOKUP",
        "ACCESS",
        "READLINK",
        "READ",
        "WRITE",
        "CREATE",
        "MKDIR",
        "SYMLINK",
        "MKNOD",
        "REMOVE",
        "RMDIR",
        "RENAME",
        "LINK",
        "READDIR",
        "READDIRPLUS",
        "FSSTAT",
        "FSINFO",
        "PATHCONF",
        "COMMIT",
    ];
    const MOUNT: [&str; 6] = ["MNT_NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"];
    let table: &[&str] = if prog == MOUNT_PROGRAM { &MOUNT } else { &NFS };
    table.get(proc as usize).copied().unwrap_or("unknown")
}

impl<B: Backend> Shared<B> {
    /// Runs one call: program and version checks, the reply cache, the procedure.
    /// `None`: no reply (a duplicate of a call still running, or an unencodable reply).
    pub(crate) async fn dispatch(
        &self,
        peer: SocketAddr,
        call: Call,
        mut args: Dec,
    ) -> Option<Reply> {
        let Call {
            xid,
            prog,
            vers,
            proc,
            cred,
        } = call;
        if prog != NFS_PROGRAM && prog != MOUNT_PROGRAM {
            tracing::warn!(%peer, xid, prog, "call to an unknown program");
            return accepted_only(peer, xid, accept_stat_data::PROG_UNAVAIL);
        }
        if vers != VERSION {
            tracing::warn!(%peer, xid, prog, vers, "call to an unsupported version");
            return accepted_only(
                peer,
                xid,
                accept_stat_data::PROG_MISMATCH {
                    low: VERSION,
                    high: VERSION,
                },
            );
        }
        let mut req = Req {
            peer,
            xid,
            cred,
            reply_key: None,
        };
        if prog != NFS_PROGRAM || !non_idempotent(proc) {
            return self.run(prog, proc, &req, &mut args).await.map(|(r, _)| r);
        }
        let key = Key::new(peer.ip(), xid, proc, args.rest());
        if keyed_for_backend(proc) {
            req.reply_key = Some(key.reply_key());
        }
        let now = tokio::time::Instant::now().into_std();
        match lock(&self.cache).begin(key, now) {
            Begin::New => {}
            Begin::InProgress => {
                tracing::debug!(%peer, xid, proc = proc_name(prog, proc), "retransmission of a call in progress: dropped");
                return None;
            }
            Begin::Done(msg) => {
                tracing::debug!(%peer, xid, proc = proc_name(prog, proc), "retransmission: cached reply");
                return Some(Reply {
                    msg,
                    data: Bytes::new(),
                });
            }
        }
        let mut pending = Pending {
            shared: self,
            key,
            finished: false,
        };
        let (reply, status) = self.run(prog, proc, &req, &mut args).await?;
        // JUKEBOX asks for a retry: the retry must run again. Calls that did not run (garbage)
        // have nothing to protect.
        if status.is_some_and(|s| s != nfsstat3::NFS3ERR_JUKEBOX) {
            lock(&self.cache).finish(key, reply.msg.clone());
            pending.finished = true;
        }
        Some(reply)
    }

    /// Runs a procedure; the status is `None` when it did not run (garbage, unknown procedure).
    async fn run(
        &self,
        prog: u32,
        proc: u32,
        req: &Req,
        args: &mut Dec,
    ) -> Option<(Reply, Option<nfsstat3>)> {
        let peer = req.peer;
        let xid = req.xid;
        let name = proc_name(prog, proc);
        let mut out = BytesMut::with_capacity(256);
        if let Err(e) = rpc::success(xid, &mut out) {
            tracing::error!(%peer, xid, error = ?e, "cannot encode a reply header");
            return None;
        }
        let started = tokio::time::Instant::now();
        let done = if prog == NFS_PROGRAM {
            self.nfs(proc, req, args, &mut out).await
        } else {
            self.mount(proc, req, args, &mut out).await
        };
        metrofs_core::metrics::get().nfs_op(name, started.elapsed(), failed_as(&done));
        match done {
            Ok(done) => {
                tracing::debug!(%peer, xid, proc = name, status = %done.status, "call");
                Some((
                    Reply {
                        msg: out.freeze(),
                        data: done.data,
                    },
                    Some(done.status),
                ))
            }
            Err(Fail::Garbage) => {
                tracing::warn!(%peer, xid, proc = name, "arguments do not decode");
                accepted_only(peer, xid, accept_stat_data::GARBAGE_ARGS).map(|r| (r, None))
            }
            Err(Fail::ProcUnavail) => {
                tracing::warn!(%peer, xid, prog, proc, "call to an unknown procedure");
                accepted_only(peer, xid, accept_stat_data::PROC_UNAVAIL).map(|r| (r, None))
            }
            Err(Fail::Encode(e)) => {
                tracing::error!(%peer, xid, proc = name, error = ?e, "cannot encode a reply");
                accepted_only(peer, xid, accept_stat_data::SYSTEM_ERR).map(|r| (r, None))
            }
        }
    }
}
