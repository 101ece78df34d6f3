//! An established link: multiplexed calls both ways, heartbeats, and a clean notion of "down".
//!
//! # Contract
//! - After the handshake each end holds a [`Link`] (cheap to clone). [`Link::call`] sends a
//!   `Request` with a fresh id and waits for the `Response` (or `Fail`) with the same id. Many
//!   calls are in flight at once, at most `max_in_flight`; more wait for a slot. A call fails
//!   with `CallTimeout` after `call_timeout_ms` (the peer may still have executed it).
//! - Each incoming `Request` runs the [`Handler`], at most `max_incoming_in_flight` at once; one more is answered with `Fail` ("busy") at once rather
//!   than stalling the reader (which would stall heartbeats too). A handler that panics is
//!   answered with `Fail`.
//! - A request with a small body that the handler calls quick ([`Handler::inline`]) is first
//!   run by the reader itself, up to its first wait (most answer without one: a handler that
//!   only touches memory); one that waits, one with a large body, and every other request goes
//!   on in its own task. So a small quick call costs no task hop on the peer.
//! - A frame is written by whoever sends it when the socket is idle (nothing queued, no write
//!   in progress): one non-blocking vectored write, no task hop between a call and the wire.
//!   What does not fit at once, and every frame that finds others waiting, goes to the writer
//!   task, which takes everything queued at that moment and writes it with vectored writes:
//!   small frames are copied into one buffer, bodies over `COPY_BODY_MAX_BYTES` are written
//!   from their own buffer (never copied). So several queued 4 KiB ops cost one syscall, a
//!   1 MiB body costs no copy, and frames leave in the order they were sent.
//! - Each end sends a `Heartbeat` every `heartbeat_interval_ms`; the peer echoes it in a
//!   `HeartbeatAck`, which gives [`Link::rtt`]. Any bytes from the peer prove it alive (so a
//!   large frame arriving slowly counts); after `heartbeat_timeout_ms` without any, the link is
//!   down.
//! - Down is final: the first reason wins ([`Link::closed`] returns it), every pending call and
//!   every later call fails with `LinkError::Down`, all tasks end and the connection is
//!   dropped. Reconnecting is the caller's business (a new `connect`).
//! - Dropping the last `Link` handle closes the link (a `Close` frame, then the connection).
//!
//! Time is tokio's (`tokio::time`), so paused-time tests and turmoil drive it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use metrofs_core::bufpool::BufPool;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::auth::{self, Identity, Me, Peer, Side, NONCE_BYTES};
use crate::config::LinkConfig;
use crate::error::{DownReason, LinkError};
use crate::frame::{self, Frame, Kind, ReadError, BODY_MAX_BYTES, HEADER_MAX_BYTES};

/// Bodies up to this size are copied into the writer's batch buffer; larger ones are written
/// from their own buffer.
const COPY_BODY_MAX_BYTES: usize = 16 * 1024;
/// A write batch stops growing at this many bytes ...
const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;
/// ... or this many buffers (well under the kernel's IOV_MAX of 1024).
const BATCH_MAX_SEGMENTS: usize = 64;
/// How long a closing link keeps trying to deliver its last frames.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Requests with a body up to this size are first run by the reader (see the module doc);
/// larger ones (a replicated 1 MiB write, resync data) start in their own task, so the
/// reader goes on reading while they are applied.
const INLINE_BODY_MAX_BYTES: usize = 64 * 1024;
/// Initial size of the read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What serves the peer's requests. Each request runs in its own task.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request with a reply header and body. Application errors belong in the
    /// reply header: the link only carries bytes.
    fn handle(&self, header: Bytes, body: Bytes) -> impl Future<Output = (Bytes, Bytes)> + Send;

    /// `false` for an end that only makes calls: the peer's requests are answered with `Fail`
    /// and `handle` is never called.
    fn accepts_requests(&self) -> bool {
        true
    }

    /// `true` when `handle` for this request answers quickly or waits asynchronously (it never
    /// blocks its thread for long before its first wait): the reader then runs it up to that
    /// first wait itself, saving a task hop (see the module doc). A handler that may block,
    /// say on an `fsync`, must answer `false`, or the reader stops reading meanwhile (replies
    /// and heartbeats from the peer included). Only asked for bodies up to 64 KiB.
    fn inline(&self, _header: &[u8]) -> bool {
        false
    }
}

impl<H: Handler> Handler for Arc<H> {
    fn handle(&self, header: Bytes, body: Bytes) -> impl Future<Output = (Bytes, Bytes)> + Send {
        (**self).handle(header, body)
    }

    fn accepts_requests(&self) -> bool {
        (**self).accepts_requests()
    }

    fn inline(&self, header: &[u8]) -> bool {
        (**self).inline(header)
    }
}

/// A handler for an end that only calls (e.g. a quorum client): every request from the peer
/// is answered with `Fail`.
#[derive(Copy, Clone, Debug, Default)]
pub struct NoRequests;

impl Handler for NoRequests {
    async fn handle(&self, _header: Bytes, _body: Bytes) -> (Bytes, Bytes) {
        (Bytes::new(), Bytes::new())
    }

    fn accepts_requests(&self) -> bool {
        false
    }
}

type Reply = Result<(Bytes, Bytes), LinkError>;

/// State shared by the handles and the connection's tasks.
struct Shared {
    peer: Peer,
    config: LinkConfig,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    out: Outbox,
    /// One permit per outgoing call in flight.
    calls: Semaphore,
    down: watch::Sender<Option<DownReason>>,
    started: Instant,
    /// Milliseconds after `started` when the last frame arrived from the peer.
    last_rx_ms: AtomicU64,
    /// Last heartbeat round trip in microseconds; `u64::MAX` until the first ack.
    rtt_us: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records that bytes arrived from the peer (it is alive).
    fn touch(&self) {
        self.last_rx_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn down_reason(&self) -> Option<DownReason> {
        self.down.borrow().clone()
    }

    fn down_error(&self) -> LinkError {
        LinkError::Down {
            peer: self.peer.name.clone(),
            reason: self
                .down_reason()
                .unwrap_or_else(|| DownReason::Closed("the connection's tasks have ended".into())),
        }
    }

    /// Takes the link down for `reason` (the first reason wins): later calls fail at once,
    /// pending calls fail now, the tasks see the change and end.
    fn shutdown(&self, reason: DownReason) {
        let first = self.down.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        tracing::warn!(peer = %self.peer.name, "link down: {reason}");
        self.calls.close();
        // The down flag is set before the map is drained, and callers insert under the lock
        // only after checking the flag: no call can be left waiting in the map.
        let pending = std::mem::take(&mut *self.pending());
        for (_, tx) in pending {
            let _ = tx.send(Err(LinkError::Down {
                peer: self.peer.name.clone(),
                reason: reason.clone(),
            }));
        }
    }

    /// Queues a `Close` and takes the link down; the writer sends the `Close` before it ends.
    fn close(&self, reason: DownReason, text: &str) {
        if self.down.borrow().is_none() {
            self.send(Frame::text(Kind::Close, 0, text));
        }
        self.shutdown(reason);
    }

    /// Sends a frame (see [`Outbox::send`]); `false` when the link is down or closing and the
    /// frame was dropped. A write error takes the link down.
    fn send(&self, f: Frame) -> bool {
        self.send_how(f) != Sent::Dropped
    }

    /// [`Shared::send`], saying whether the frame was written or left to the writer task.
    fn send_how(&self, f: Frame) -> Sent {
        if f.kind() != Kind::Close && self.down.borrow().is_some() {
            return Sent::Dropped;
        }
        match self.out.send(f) {
            Ok(sent) => sent,
            Err(e) => {
                self.shutdown(DownReason::Io(e.to_string()));
                Sent::Dropped
            }
        }
    }

    fn complete(&self, id: u64, reply: Reply) {
        let tx = self.pending().remove(&id);
        match tx {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            // The caller timed out or went away: drop the late reply.
            None => tracing::debug!(peer = %self.peer.name, id, "reply to no pending call"),
        }
    }
}

/// The user-facing side; the last one dropped closes the link.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let why = "every handle to the link was dropped";
        self.shared.close(
            DownReason::Closed(why.into()),
            &format!("peer closed the link: {why}"),
        );
    }
}

/// An authenticated link to one peer. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Link {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.handle.shared.peer)
            .field("down", &self.down_reason())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Sends a request and waits for its reply `(header, body)`.
    ///
    /// Fails with `TooLarge` (header over 64 KiB, body over 8 MiB), `Down` (link down before or
    /// during the call), `CallTimeout` (no reply within `call_timeout_ms`, waiting for an
    /// in-flight slot included) or `Remote` (the peer could not run its handler).
    pub async fn call(&self, header: Bytes, body: Bytes) -> Result<(Bytes, Bytes), LinkError> {
        self.start_call(header, body).await?.reply().await
    }

    /// Sends a call's request and returns once it is on the socket or in the link's send queue
    /// (then after one yield, so that the writer task sends it while the caller goes on with
    /// its own work), with the reply still to come ([`PendingCall::reply`]). Calls started one after another
    /// by one task leave in that order (the send queue is FIFO) and each holds its in-flight
    /// slot from here on, so a sequence numbered by the caller arrives in sequence. The call's
    /// timeout (`call_timeout_ms`) counts from here.
    pub async fn start_call(&self, header: Bytes, body: Bytes) -> Result<PendingCall, LinkError> {
        let shared = &self.handle.shared;
        check_sizes(&header, &body)?;
        let deadline = tokio::time::Instant::now() + shared.config.call_timeout();
        let timeout = || LinkError::CallTimeout {
            peer: shared.peer.name.clone(),
            ms: shared.config.call_timeout_ms,
        };
        tokio::time::timeout_at(deadline, shared.calls.acquire())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| shared.down_error())?
            // Given back by the PendingCall's drop.
            .forget();
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let call = PendingCall {
            handle: self.handle.clone(),
            id,
            rx,
            deadline,
        };
        {
            let mut pending = shared.pending();
            if shared.down.borrow().is_some() {
                return Err(shared.down_error());
            }
            pending.insert(id, tx);
        }
        let frame = Frame::new(Kind::Request, id, header, body)
            .unwrap_or_else(|_| unreachable!("sizes were checked above"));
        match shared.send_how(frame) {
            Sent::Written => {}
            Sent::Dropped => return Err(shared.down_error()),
            // The writer task, just woken, goes onto this worker's next-task slot, which no
            // other worker may take: without a yield it would wait for whatever this task
            // does next (a caller's own half of the work, say), and the request with it.
            Sent::Queued => tokio::task::yield_now().await,
        }
        Ok(call)
    }

    /// [`Link::start_call`] with a typed header (postcard).
    pub async fn start_call_typed<Req: Serialize + ?Sized>(
        &self,
        req: &Req,
        body: Bytes,
    ) -> Result<PendingCall, LinkError> {
        self.start_call(encode_header(req)?, body).await
    }
}

fn check_sizes(header: &Bytes, body: &Bytes) -> Result<(), LinkError> {
    if header.len() > HEADER_MAX_BYTES {
        return Err(LinkError::TooLarge {
            what: "request header",
            len: header.len(),
            max: HEADER_MAX_BYTES,
        });
    }
    if body.len() > BODY_MAX_BYTES {
        return Err(LinkError::TooLarge {
            what: "request body",
            len: body.len(),
            max: BODY_MAX_BYTES,
        });
    }
    Ok(())
}

/// A call queued by [`Link::start_call`]; dropping it (reply, timeout, cancellation)
/// removes its map entry and gives its in-flight slot back.
pub struct PendingCall {
    handle: Arc<Handle>,
    id: u64,
    rx: oneshot::Receiver<Reply>,
    deadline: tokio::time::Instant,
}

impl PendingCall {
    /// Waits for the reply, until the call's deadline.
    pub async fn reply(mut self) -> Result<(Bytes, Bytes), LinkError> {
        let shared = &self.handle.shared;
        match tokio::time::timeout_at(self.deadline, &mut self.rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(shared.down_error()),
            Err(_) => Err(LinkError::CallTimeout {
                peer: shared.peer.name.clone(),
                ms: shared.config.call_timeout_ms,
            }),
        }
    }

    /// [`PendingCall::reply`] decoded (postcard header, raw body).
    pub async fn reply_typed<Resp: DeserializeOwned>(self) -> Result<(Resp, Bytes), LinkError> {
        let (h, b) = self.reply().await?;
        Ok((decode_header(&h)?, b))
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        shared.pending().remove(&self.id);
        shared.calls.add_permits(1);
    }
}

impl Link {
    /// [`Link::call`] with a typed header (postcard), the body passed through raw.
    pub async fn call_typed<Req, Resp>(
        &self,
        req: &Req,
        body: Bytes,
    ) -> Result<(Resp, Bytes), LinkError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let header = encode_header(req)?;
        let (h, b) = self.call(header, body).await?;
        Ok((decode_header(&h)?, b))
    }

    /// The authenticated peer.
    #[must_use]
    pub fn peer(&self) -> &Peer {
        &self.handle.shared.peer
    }

    /// The last heartbeat round trip, once one was measured.
    #[must_use]
    pub fn rtt(&self) -> Option<Duration> {
        match self.handle.shared.rtt_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Outgoing calls in flight now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.handle.shared.pending().len()
    }

    /// `Some(reason)` once the link is down.
    #[must_use]
    pub fn down_reason(&self) -> Option<DownReason> {
        self.handle.shared.down_reason()
    }

    /// Completes when the link is down, with the reason.
    pub async fn closed(&self) -> DownReason {
        let mut rx = self.handle.shared.down.subscribe();
        wait_down(&mut rx)
            .await
            .unwrap_or_else(|| DownReason::Closed("the link's state was dropped".into()))
    }

    /// Closes the link: the peer receives a `Close` with `reason`; pending calls fail.
    pub fn close(&self, reason: &str) {
        self.handle
            .shared
            .close(DownReason::Closed(reason.to_owned()), reason);
    }
}

/// Encodes a typed header (postcard).
pub fn encode_header<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, LinkError> {
    let v = postcard::to_allocvec(value).map_err(|e| LinkError::Encode(e.to_string()))?;
    if v.len() > HEADER_MAX_BYTES {
        return Err(LinkError::TooLarge {
            what: "encoded header",
            len: v.len(),
            max: HEADER_MAX_BYTES,
        });
    }
    Ok(Bytes::from(v))
}

/// Decodes a typed header (postcard); trailing bytes are an error.
pub fn decode_header<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, LinkError> {
    let (v, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| LinkError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(LinkError::Decode(format!(
            "{} bytes left over after the header",
            rest.len()
        )));
    }
    Ok(v)
}

/// Runs the handshake on `stream`, then starts the link's tasks on the current tokio runtime.
///
/// `nonce` is this end's handshake nonce: [`auth::random_nonce`] in production, a seeded value
/// in simulation. The handshake is bounded by `handshake_timeout_ms`.
pub async fn establish<S, H>(
    stream: S,
    side: Side,
    config: &LinkConfig,
    identity: &Identity,
    nonce: [u8; NONCE_BYTES],
    handler: H,
) -> Result<Link, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (r, w) = tokio::io::split(stream);
    establish_split(
        r,
        w,
        side,
        config,
        Me::Fixed(identity),
        nonce,
        move |_: &Peer| handler,
        "the peer",
    )
    .await
}

/// The acceptor's [`establish`] for an end that serves several domains (a quorum server).
///
/// `identify` is called once, with the domain the initiator's Hello names, after the version
/// and format checks: it returns this end's identity in that domain (its name and the
/// domain's secret), or `None`, and then the initiator is refused (`DomainUnknownThere` on
/// its side, `DomainUnknownHere` here) before anything about this end is revealed. A wrong
/// secret is refused as for a single-domain acceptor (`WrongSecret`).
///
/// `handler` makes the request handler once the peer is authenticated, so the handler knows
/// which array (and domain) it serves.
pub async fn establish_with<S, F, M, H>(
    stream: S,
    config: &LinkConfig,
    mut identify: F,
    nonce: [u8; NONCE_BYTES],
    handler: M,
) -> Result<Link, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut(&str) -> Option<Identity> + Send,
    M: FnOnce(&Peer) -> H + Send,
    H: Handler,
{
    let (r, w) = tokio::io::split(stream);
    establish_split(
        r,
        w,
        Side::Acceptor,
        config,
        Me::ByDomain(&mut identify),
        nonce,
        handler,
        "the peer",
    )
    .await
}

/// [`establish`] on separate halves (TCP's owned halves avoid the lock of `tokio::io::split`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn establish_split<R, W, M, H>(
    mut r: R,
    mut w: W,
    side: Side,
    config: &LinkConfig,
    me: Me<'_>,
    nonce: [u8; NONCE_BYTES],
    handler: M,
    peer_hint: &str,
) -> Result<Link, LinkError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    M: FnOnce(&Peer) -> H,
    H: Handler,
{
    config.validate()?;
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let handshake = auth::handshake(&mut r, &mut w, &mut buf, side, me, nonce, peer_hint);
    let peer = match tokio::time::timeout(config.handshake_timeout(), handshake).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(e)) => {
            auth::linger(&mut r).await;
            return Err(e);
        }
        Err(_) => {
            return Err(LinkError::HandshakeTimeout {
                peer: peer_hint.to_owned(),
                ms: config.handshake_timeout_ms,
            })
        }
    };
    tracing::info!(peer = %peer.name, domain = %peer.domain, ?side, "link up");
    let handler = handler(&peer);
    Ok(start(r, w, buf, peer, config.clone(), handler))
}

fn start<R, W, H>(r: R, w: W, buf: BytesMut, peer: Peer, config: LinkConfig, handler: H) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let out = Outbox::new(Box::new(w));
    let incoming = Arc::new(Semaphore::new(config.max_incoming_in_flight));
    let shared = Arc::new(Shared {
        peer,
        calls: Semaphore::new(config.max_in_flight),
        config,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        out,
        down: watch::Sender::new(None),
        started: Instant::now(),
        last_rx_ms: AtomicU64::new(0),
        rtt_us: AtomicU64::new(u64::MAX),
    });
    tokio::spawn(writer_task(shared.clone()));
    tokio::spawn(reader_task(
        r,
        buf,
        shared.clone(),
        Arc::new(handler),
        incoming,
    ));
    tokio::spawn(heartbeat_task(shared.clone()));
    Link {
        handle: Arc::new(Handle { shared }),
    }
}

/// Waits until the link is down; the reason (`None` if the state is gone).
async fn wait_down(rx: &mut watch::Receiver<Option<DownReason>>) -> Option<DownReason> {
    match rx.wait_for(Option::is_some).await {
        Ok(r) => r.clone(),
        Err(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

async fn reader_task<R, H>(
    mut r: R,
    mut buf: BytesMut,
    shared: Arc<Shared>,
    handler: Arc<H>,
    incoming: Arc<Semaphore>,
) where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let mut down = shared.down.subscribe();
    let pool = BufPool::new(frame::POOL_IDLE_MAX_BYTES);
    loop {
        let read = tokio::select! {
            biased;
            _ = wait_down(&mut down) => return,
            read = frame::read_frame(&mut r, &mut buf, &pool, || shared.touch()) => read,
        };
        let f = match read {
            Ok(Some(f)) => f,
            Ok(None) => return shared.shutdown(DownReason::Eof),
            Err(ReadError::Io(e)) => return shared.shutdown(DownReason::Io(e.to_string())),
            Err(ReadError::Frame(e)) => {
                let text = format!("protocol error: {e}");
                return shared.close(DownReason::from(e), &text);
            }
        };
        shared.touch();
        match dispatch(&shared, &handler, &incoming, f) {
            Ok(()) => {}
            // The peer said goodbye: nothing to tell it.
            Err(reason @ DownReason::PeerClosed { .. }) => return shared.shutdown(reason),
            Err(reason) => {
                let text = reason.to_string();
                return shared.close(reason, &text);
            }
        }
    }
}

fn dispatch<H: Handler>(
    shared: &Arc<Shared>,
    handler: &Arc<H>,
    incoming: &Arc<Semaphore>,
    f: Frame,
) -> Result<(), DownReason> {
    let id = f.id();
    match f.kind() {
        Kind::Request => {
            if !handler.accepts_requests() {
                shared.send(Frame::text(
                    Kind::Fail,
                    id,
                    "this end of the link accepts no requests",
                ));
                return Ok(());
            }
            let Ok(permit) = incoming.clone().try_acquire_owned() else {
                let text = format!(
                    "busy: {} requests already in progress (max_incoming_in_flight)",
                    shared.config.max_incoming_in_flight
                );
                shared.send(Frame::text(Kind::Fail, id, &text));
                return Ok(());
            };
            let (header, body) = f.into_parts();
            let inline = body.len() <= INLINE_BODY_MAX_BYTES && handler.inline(&header);
            let mut serving = Box::pin(serve(
                handler.clone(),
                shared.clone(),
                id,
                header,
                body,
                permit,
            ));
            // Up to its first wait here (a noop waker: if it waits, its own task polls it
            // again at once and registers a real one).
            if !inline
                || serving
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            {
                tokio::spawn(serving);
            }
        }
        Kind::Response => shared.complete(id, Ok(f.into_parts())),
        Kind::Fail => shared.complete(
            id,
            Err(LinkError::Remote {
                peer: shared.peer.name.clone(),
                reason: String::from_utf8_lossy(f.header()).into_owned(),
            }),
        ),
        Kind::Heartbeat => {
            let (header, _) = f.into_parts();
            shared.send(
                Frame::new(Kind::HeartbeatAck, id, header, Bytes::new())
                    .map_err(|e| DownReason::Protocol(format!("heartbeat too large: {e}")))?,
            );
        }
        Kind::HeartbeatAck => {
            let mut h = f.header().clone();
            if h.len() == 8 {
                let sent_us = h.get_u64();
                let rtt = shared.elapsed_us().saturating_sub(sent_us);
                shared.rtt_us.store(rtt, Ordering::Relaxed);
            }
        }
        Kind::Close => {
            return Err(DownReason::PeerClosed {
                reason: String::from_utf8_lossy(f.header()).into_owned(),
            })
        }
        Kind::Refuse => {
            return Err(DownReason::PeerClosed {
                reason: format!("refused: {}", String::from_utf8_lossy(f.header())),
            })
        }
        Kind::Hello | Kind::Proof => {
            return Err(DownReason::Protocol(format!(
                "unexpected {:?} frame after the handshake",
                f.kind()
            )))
        }
    }
    Ok(())
}

/// Runs one request through the handler and sends the reply.
async fn serve<H: Handler>(
    handler: Arc<H>,
    shared: Arc<Shared>,
    id: u64,
    header: Bytes,
    body: Bytes,
    permit: OwnedSemaphorePermit,
) {
    let reply = CatchUnwind(Box::pin(handler.handle(header, body))).await;
    let frame = match reply {
        Ok((h, b)) => Frame::new(Kind::Response, id, h, b).unwrap_or_else(|e| {
            tracing::error!(id, "handler reply not sent: {e}");
            Frame::text(
                Kind::Fail,
                id,
                &format!("the handler's reply is too large: {e}"),
            )
        }),
        Err(()) => {
            tracing::error!(id, "request handler panicked");
            Frame::text(Kind::Fail, id, "the request handler panicked")
        }
    };
    // Fails only when the link is down: then nobody waits for the reply.
    shared.send(frame);
    drop(permit);
}

/// Resolves to `Err(())` if the inner future panics, so a panicking handler still answers.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.get_mut().0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Frames gathered for one vectored write.
struct Batch {
    segs: VecDeque<Bytes>,
    small: BytesMut,
    bytes: usize,
    has_close: bool,
}

impl Batch {
    fn new(small_bytes: usize) -> Batch {
        Batch {
            segs: VecDeque::new(),
            small: BytesMut::with_capacity(small_bytes),
            bytes: 0,
            has_close: false,
        }
    }

    fn push(&mut self, f: &Frame) {
        f.encode_head_and_header(&mut self.small);
        if f.body().len() <= COPY_BODY_MAX_BYTES {
            self.small.extend_from_slice(f.body());
        } else {
            self.segs.push_back(self.small.split().freeze());
            self.segs.push_back(f.body().clone());
        }
        self.bytes += f.encoded_len();
        self.has_close |= f.kind() == Kind::Close;
    }

    fn full(&self) -> bool {
        self.bytes >= BATCH_MAX_BYTES || self.segs.len() + 2 >= BATCH_MAX_SEGMENTS
    }

    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.segs.push_back(self.small.split().freeze());
        }
    }

    /// The sealed buffers, leaving the batch empty (its copy buffer is reused).
    fn take(&mut self) -> VecDeque<Bytes> {
        self.seal();
        self.bytes = 0;
        self.has_close = false;
        std::mem::take(&mut self.segs)
    }
}

/// The write half, boxed so that [`Shared`] does not depend on the transport.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The write half and the frames waiting for it, shared by every sender and the writer task.
struct Outbox {
    state: Mutex<OutState>,
    /// Tells the writer task there is something to write.
    wake: Notify,
}

struct OutState {
    /// `None` while the writer task writes (it holds the half then) and once it ended.
    w: Option<WriteHalf>,
    /// What a sender could not write at once of its frame; written before anything queued.
    partial: VecDeque<Bytes>,
    queue: VecDeque<Frame>,
    /// A sender's flush did not complete: the writer task finishes it.
    flush: bool,
    /// A `Close` was sent or the writer ended: nothing more is accepted.
    closed: bool,
    /// Where a sender encodes its frame (as the writer task does, see [`Batch`]).
    scratch: Batch,
}

impl Outbox {
    fn new(w: WriteHalf) -> Outbox {
        Outbox {
            state: Mutex::new(OutState {
                w: Some(w),
                partial: VecDeque::new(),
                queue: VecDeque::new(),
                flush: false,
                closed: false,
                scratch: Batch::new(4 * 1024),
            }),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `f`: writes it now when the socket is idle (one non-blocking attempt; the writer
    /// task finishes what does not fit), queues it for the writer task otherwise. `Err`: the
    /// write failed (the link is broken).
    fn send(&self, f: Frame) -> std::io::Result<Sent> {
        let mut st = self.state();
        if st.closed {
            return Ok(Sent::Dropped);
        }
        let idle = st.queue.is_empty() && st.partial.is_empty() && !st.flush;
        if f.kind() == Kind::Close || !idle || st.w.is_none() {
            // A `Close` always goes through the writer: it ends the connection.
            st.closed |= f.kind() == Kind::Close;
            st.queue.push_back(f);
            drop(st);
            self.wake.notify_one();
            return Ok(Sent::Queued);
        }
        let OutState {
            w: Some(w),
            scratch,
            partial,
            flush,
            ..
        } = &mut *st
        else {
            unreachable!("checked above")
        };
        scratch.push(&f);
        let mut segs = scratch.take();
        let mut cx = Context::from_waker(Waker::noop());
        let written = {
            let iov: Vec<IoSlice<'_>> = segs.iter().map(|b| IoSlice::new(b)).collect();
            match Pin::new(&mut *w).poll_write_vectored(&mut cx, &iov) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => 0,
            }
        };
        advance(&mut segs, written);
        let handoff = if segs.is_empty() {
            match Pin::new(&mut *w).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    *flush = true;
                    true
                }
            }
        } else {
            *partial = segs;
            true
        };
        drop(st);
        if handoff {
            self.wake.notify_one();
            return Ok(Sent::Queued);
        }
        Ok(Sent::Written)
    }
}

/// What became of a frame sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Sent {
    /// On the socket, whole.
    Written,
    /// Left (wholly or partly) to the writer task.
    Queued,
    /// The link is down or closing.
    Dropped,
}

/// Drops the first `n` bytes of `segs`.
fn advance(segs: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = segs.front_mut() else { break };
        if front.len() <= n {
            n -= front.len();
            segs.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

async fn write_segments<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    segs: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !segs.is_empty() {
        let n = {
            let iov: Vec<IoSlice<'_>> = segs.iter().map(|b| IoSlice::new(b)).collect();
            w.write_vectored(&iov).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        advance(segs, n);
    }
    w.flush().await
}

/// Writes what the senders left to it (see [`Outbox`]); ends after a `Close`, or when the
/// link is down and nothing is left, shutting the write half down unless the connection
/// broke. Once it ends the outbox is closed: nothing more is accepted.
async fn writer_task(shared: Arc<Shared>) {
    let broke = write_until_done(&shared).await;
    let w = {
        let mut st = shared.out.state();
        st.closed = true;
        st.queue.clear();
        st.partial.clear();
        st.w.take()
    };
    if let Some(e) = broke {
        return shared.shutdown(DownReason::Io(e.to_string()));
    }
    if let Some(mut w) = w {
        if !shared.down_reason().is_some_and(|d| d.is_fatal()) {
            let _ = tokio::time::timeout(CLOSE_LINGER, w.shutdown()).await;
        }
    }
}

/// The writer task's loop; returns the write error that broke the connection, if one did. A
/// write cut short by the link going down keeps the write half (it is dropped, not shut down).
async fn write_until_done(shared: &Shared) -> Option<std::io::Error> {
    let mut down = shared.down.subscribe();
    let mut batch = Batch::new(64 * 1024);
    loop {
        let taken = {
            let mut st = shared.out.state();
            let work = !st.partial.is_empty() || !st.queue.is_empty() || st.flush;
            match st.w.take() {
                Some(w) if work => {
                    // Everything queued now goes in the same write (a sender's partial frame
                    // first).
                    batch.segs.extend(st.partial.drain(..));
                    st.flush = false;
                    while !batch.full() {
                        let Some(f) = st.queue.pop_front() else { break };
                        batch.push(&f);
                    }
                    Some(w)
                }
                w => {
                    st.w = w;
                    None
                }
            }
        };
        let Some(mut w) = taken else {
            if shared.down_reason().is_some() {
                return None;
            }
            tokio::select! {
                biased;
                () = shared.out.wake.notified() => {}
                _ = wait_down(&mut down) => {}
            }
            continue;
        };
        batch.seal();
        let res = {
            let write = write_segments(&mut *w, &mut batch.segs);
            tokio::pin!(write);
            tokio::select! {
                res = &mut write => res,
                reason = wait_down(&mut down) => {
                    if reason.is_none_or(|d| d.is_fatal()) {
                        // Dropped mid-frame: nothing more may be written.
                        return None;
                    }
                    // Orderly close: finish this write if the peer takes it soon.
                    match tokio::time::timeout(CLOSE_LINGER, write).await {
                        Ok(res) => res,
                        Err(_) => return None,
                    }
                }
            }
        };
        if let Err(e) = res {
            return Some(e);
        }
        shared.out.state().w = Some(w);
        batch.bytes = 0;
        if batch.has_close {
            return None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

/// Sends heartbeats and declares the link down after `heartbeat_timeout_ms` of silence.
///
/// Silence is only held against the peer while this process was running: when the timer
/// fires more than one interval late (this process was stalled: a long GC-like pause, a
/// debugger, a blocked runtime thread), frames may be waiting unread in the socket, so the
/// peer gets one more interval before the link is declared down.
async fn heartbeat_task(shared: Arc<Shared>) {
    let interval = shared.config.heartbeat_interval();
    let timeout = shared.config.heartbeat_timeout();
    let timeout_ms = shared.config.heartbeat_timeout_ms;
    let mut down = shared.down.subscribe();
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut grace_until: Option<Instant> = None;
    loop {
        let last_rx =
            shared.started + Duration::from_millis(shared.last_rx_ms.load(Ordering::Relaxed));
        let deadline = match grace_until {
            Some(g) if g > last_rx + timeout => g,
            _ => last_rx + timeout,
        };
        tokio::select! {
            biased;
            _ = wait_down(&mut down) => return,
            () = tokio::time::sleep_until(deadline) => {
                let silent_ms = shared
                    .elapsed_ms()
                    .saturating_sub(shared.last_rx_ms.load(Ordering::Relaxed));
                if silent_ms < timeout_ms {
                    continue;
                }
                let now = Instant::now();
                if grace_until.is_none() && now.saturating_duration_since(deadline) > interval {
                    tracing::warn!(
                        peer = %shared.peer.name,
                        late_ms = now.saturating_duration_since(deadline).as_millis(),
                        "heartbeat check ran late (this process was stalled); one more interval"
                    );
                    grace_until = Some(now + interval);
                    continue;
                }
                return shared.shutdown(DownReason::HeartbeatTimeout { silent_ms, timeout_ms });
            }
            _ = ticks.tick() => {
                if grace_until.is_some_and(|g| g + timeout < Instant::now()) {
                    grace_until = None;
                }
                let now_us = shared.elapsed_us();
                let hb = Frame::new(
                    Kind::Heartbeat,
                    0,
                    Bytes::copy_from_slice(&now_us.to_be_bytes()),
                    Bytes::new(),
                )
                .unwrap_or_else(|_| unreachable!("8 bytes"));
                shared.send(hb);
            }
        }
    }
}
