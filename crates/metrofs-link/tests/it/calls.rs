//! Calls on an established link: concurrency, large bodies, limits, failures of the handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrofs_link::frame::BODY_MAX_BYTES;
use metrofs_link::{decode_header, encode_header, Handler, LinkConfig, LinkError, NoRequests};
use serde::{Deserialize, Serialize};

use crate::{duplex_pair, fast_config, site_a, site_b, tcp_pair, Echo};

const MIB: usize = 1024 * 1024;

/// A 1 MiB body whose content depends on `seed`, so a mix-up between calls is visible.
fn body(seed: u64) -> Bytes {
    let mut v = Vec::with_capacity(MIB);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < MIB {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

async fn many_large_calls(a: &metrofs_link::Link, b: &metrofs_link::Link, n: u64) {
    let mut tasks = Vec::new();
    for i in 0..n {
        // Both directions at once.
        let link = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let header = Bytes::from(i.to_be_bytes().to_vec());
            let sent = body(i);
            let (h, got) = link.call(header, sent.clone()).await.expect("call");
            assert_eq!(&h[3..], &i.to_be_bytes(), "reply header of call {i}");
            assert!(got == sent, "reply body of call {i} differs");
        }));
    }
    for t in tasks {
        t.await.expect("call task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_1mib_calls_round_trip_over_tcp() {
    let (ha, hb) = (Arc::new(Echo::default()), Arc::new(Echo::default()));
    let (a, b) = tcp_pair(&fast_config(), &site_a(), &site_b(), ha.clone(), hb.clone()).await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    many_large_calls(&a, &b, 48).await;
    assert_eq!(ha.count() + hb.count(), 48);
    assert_eq!(a.in_flight(), 0);
    assert!(a.down_reason().is_none());
}

#[tokio::test]
async fn many_concurrent_1mib_calls_round_trip_over_duplex() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        Echo::default(),
        Echo::default(),
    )
    .await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    many_large_calls(&a, &b, 24).await;
}

/// Counts how many requests it runs at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Handler for Concurrency {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        (header, body)
    }
}

#[tokio::test]
async fn in_flight_calls_are_bounded_and_handled_concurrently() {
    let config = LinkConfig {
        max_in_flight: 4,
        ..fast_config()
    };
    let hb = Arc::new(Concurrency::default());
    let (a, b) = duplex_pair(&config, &site_a(), &site_b(), Echo::default(), hb.clone()).await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let calls = (0..40u32).map(|i| {
        let a = a.clone();
        async move {
            let (h, _) = a
                .call(Bytes::from(i.to_be_bytes().to_vec()), Bytes::new())
                .await
                .expect("call");
            assert_eq!(&h[..], &i.to_be_bytes());
        }
    });
    futures_join_all(calls).await;
    let max = hb.max.load(Ordering::SeqCst);
    assert_eq!(
        max, 4,
        "the handler saw {max} requests at once; max_in_flight is 4"
    );
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let tasks: Vec<_> = futs.map(tokio::spawn).collect();
    for t in tasks {
        t.await.expect("task");
    }
}

/// Blocks every request until released; counts arrivals.
struct Gate(tokio::sync::Semaphore, AtomicUsize);

impl Handler for Gate {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        self.1.fetch_add(1, Ordering::SeqCst);
        let _p = self.0.acquire().await.expect("gate open");
        (header, body)
    }
}

#[tokio::test]
async fn a_busy_peer_answers_fail_at_once() {
    let ca = LinkConfig {
        max_in_flight: 8,
        ..fast_config()
    };
    let cb = LinkConfig {
        max_incoming_in_flight: 2,
        ..fast_config()
    };
    let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0), AtomicUsize::new(0)));
    let (sa, sb) = tokio::io::duplex(64 * 1024);
    let (ia, ib) = (site_a(), site_b());
    let (a, b) = tokio::join!(
        metrofs_link::establish(
            sa,
            metrofs_link::Side::Initiator,
            &ca,
            &ia,
            [1; 32],
            Echo::default()
        ),
        metrofs_link::establish(
            sb,
            metrofs_link::Side::Acceptor,
            &cb,
            &ib,
            [2; 32],
            gate.clone()
        ),
    );
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let held: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.call(Bytes::new(), Bytes::new()).await })
        })
        .collect();
    // Let the two held requests reach the handler.
    while gate.1.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let e = a
        .call(Bytes::new(), Bytes::new())
        .await
        .expect_err("third request refused");
    assert!(
        matches!(&e, LinkError::Remote { reason, .. } if reason.contains("busy: 2 requests")),
        "{e:?}"
    );
    gate.0.add_permits(2);
    for h in held {
        h.await.expect("join").expect("held call completes");
    }
    a.call(Bytes::new(), Bytes::new())
        .await
        .expect("served again");
}

struct Panics;

impl Handler for Panics {
    async fn handle(&self, header: Bytes, _body: Bytes) -> (Bytes, Bytes) {
        assert!(
            header.is_empty(),
            "handler deliberately panics on a non-empty header"
        );
        (Bytes::new(), Bytes::new())
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_the_call_not_the_link() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        Echo::default(),
        Panics,
    )
    .await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let e = a
        .call(Bytes::from_static(b"boom"), Bytes::new())
        .await
        .expect_err("handler panicked");
    assert!(
        matches!(&e, LinkError::Remote { reason, .. } if reason.contains("panicked")),
        "{e:?}"
    );
    a.call(Bytes::new(), Bytes::new())
        .await
        .expect("link still up");
}

#[tokio::test]
async fn no_requests_end_refuses_calls() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        NoRequests,
        Echo::default(),
    )
    .await;
    let (a, b) = (a.expect("a"), b.expect("b"));
    let e = b
        .call(Bytes::new(), Bytes::new())
        .await
        .expect_err("a takes no requests");
    assert!(
        matches!(&e, LinkError::Remote { peer, reason } if peer == "site-a" && reason.contains("accepts no requests")),
        "{e:?}"
    );
    a.call(Bytes::new(), Bytes::new())
        .await
        .expect("a can still call");
}

/// Replies after a delay given in the header (milliseconds).
struct Slow;

impl Handler for Slow {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let ms = header.first().copied().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(u64::from(ms) * 10)).await;
        (header, body)
    }
}

// Paused clock: the handler's sleep and the call timeout are virtual, so load cannot matter.
#[tokio::test(start_paused = true)]
async fn a_slow_reply_times_the_call_out_and_the_link_stays_up() {
    let config = LinkConfig {
        call_timeout_ms: 100,
        ..fast_config()
    };
    let (a, b) = duplex_pair(&config, &site_a(), &site_b(), Echo::default(), Slow).await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let e = a
        .call(Bytes::from_static(&[30]), Bytes::new())
        .await
        .expect_err("300 ms > 100 ms");
    assert!(
        matches!(&e, LinkError::CallTimeout { ms: 100, .. }),
        "{e:?}"
    );
    assert_eq!(a.in_flight(), 0, "the timed-out call left its entry behind");
    // The late reply arrives and is dropped; the link goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (h, _) = a
        .call(Bytes::from_static(&[1]), Bytes::new())
        .await
        .expect("fast call");
    assert_eq!(&h[..], &[1]);
    assert!(a.down_reason().is_none());
}

#[tokio::test]
async fn oversized_requests_are_refused_locally() {
    let (a, b) = duplex_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        Echo::default(),
        Echo::default(),
    )
    .await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let e = a
        .call(Bytes::new(), Bytes::from(vec![0u8; BODY_MAX_BYTES + 1]))
        .await
        .expect_err("too large");
    assert!(
        matches!(
            &e,
            LinkError::TooLarge {
                what: "request body",
                ..
            }
        ),
        "{e:?}"
    );
    let e = a
        .call(Bytes::from(vec![0u8; 64 * 1024 + 1]), Bytes::new())
        .await
        .expect_err("too large");
    assert!(
        matches!(
            &e,
            LinkError::TooLarge {
                what: "request header",
                ..
            }
        ),
        "{e:?}"
    );
    // The largest allowed body goes through.
    let (_, got) = a
        .call(Bytes::new(), Bytes::from(vec![5u8; BODY_MAX_BYTES]))
        .await
        .expect("8 MiB body");
    assert_eq!(got.len(), BODY_MAX_BYTES);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Req {
    Write { ino: u64, offset: u64 },
    Ping,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Resp {
    ok: bool,
    len: u64,
}

struct Typed;

impl Handler for Typed {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let resp = match decode_header::<Req>(&header) {
            Ok(Req::Write {
                ino: 7,
                offset: 4096,
            }) => Resp {
                ok: true,
                len: body.len() as u64,
            },
            _ => Resp { ok: false, len: 0 },
        };
        (encode_header(&resp).expect("encodes"), Bytes::new())
    }
}

#[tokio::test]
async fn typed_calls_round_trip() {
    let (a, b) = duplex_pair(&fast_config(), &site_a(), &site_b(), Echo::default(), Typed).await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let (resp, body): (Resp, Bytes) = a
        .call_typed(
            &Req::Write {
                ino: 7,
                offset: 4096,
            },
            Bytes::from(vec![1u8; 4096]),
        )
        .await
        .expect("typed call");
    assert_eq!(
        resp,
        Resp {
            ok: true,
            len: 4096
        }
    );
    assert!(body.is_empty());
    let (resp, _): (Resp, Bytes) = a.call_typed(&Req::Ping, Bytes::new()).await.expect("typed");
    assert_eq!(resp, Resp { ok: false, len: 0 });
    // A reply that is not the expected type is a decode error, not garbage.
    let e = a
        .call_typed::<Req, Req>(&Req::Ping, Bytes::new())
        .await
        .expect_err("wrong type");
    assert!(matches!(e, LinkError::Decode(_)), "{e:?}");
}

/// A stream that counts the writes that reach it, and whose writes wait while its gate is
/// shut (a socket whose send buffer is full).
struct CountingStream<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
    gate: Arc<WriteGate>,
}

/// Open unless shut; opening wakes the writer that found it shut.
#[derive(Default)]
struct WriteGate {
    shut: std::sync::atomic::AtomicBool,
    waiting: std::sync::Mutex<Option<std::task::Waker>>,
}

impl WriteGate {
    fn shut(&self) {
        self.shut.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.shut.store(false, Ordering::SeqCst);
        if let Some(w) = self.waiting.lock().expect("gate lock").take() {
            w.wake();
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.gate.shut.load(Ordering::SeqCst) {
            *self.gate.waiting.lock().expect("gate lock") = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(_))) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A call on an idle link is written by its caller at once; calls that find the socket busy
/// are queued and leave together.
#[tokio::test]
async fn queued_small_requests_share_writes() {
    let writes = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(WriteGate::default());
    let (sa, sb) = tokio::io::duplex(4 * MIB);
    let sa = CountingStream {
        inner: sa,
        writes: writes.clone(),
        gate: gate.clone(),
    };
    let config = LinkConfig {
        max_in_flight: 64,
        ..fast_config()
    };
    let (ia, ib) = (site_a(), site_b());
    let (a, b) = tokio::join!(
        metrofs_link::establish(
            sa,
            metrofs_link::Side::Initiator,
            &config,
            &ia,
            [1; 32],
            Echo::default()
        ),
        metrofs_link::establish(
            sb,
            metrofs_link::Side::Acceptor,
            &config,
            &ib,
            [2; 32],
            Echo::default()
        ),
    );
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let block = Bytes::from(vec![4u8; 4096]);
    // Idle: one call, one write, made before the call even waits for its reply.
    let before = writes.load(Ordering::SeqCst);
    let started = a
        .start_call(Bytes::from_static(b"idle"), block.clone())
        .await
        .expect("start");
    assert_eq!(
        writes.load(Ordering::SeqCst) - before,
        1,
        "the caller writes its own frame"
    );
    let (h, _) = started.reply().await.expect("reply");
    assert_eq!(&h[..], b"re:idle");
    // Busy: the socket takes nothing while 64 calls are sent.
    gate.shut();
    let before = writes.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let (a, block) = (a.clone(), block.clone());
            tokio::spawn(async move {
                let (h, b) = a
                    .call(Bytes::from(i.to_be_bytes().to_vec()), block)
                    .await
                    .expect("call");
                assert_eq!(&h[3..], &i.to_be_bytes());
                assert_eq!(b.len(), 4096);
            })
        })
        .collect();
    // Every call is sent (queued) before the gate opens.
    tokio::time::timeout(Duration::from_secs(5), async {
        while a.in_flight() < 64 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("64 calls in flight");
    assert_eq!(
        writes.load(Ordering::SeqCst),
        before,
        "nothing passed the shut gate"
    );
    gate.open();
    for t in tasks {
        t.await.expect("join");
    }
    let used = writes.load(Ordering::SeqCst) - before;
    // 64 requests queued at once (plus perhaps a heartbeat): a handful of writes, not 64.
    assert!(used <= 8, "64 queued 4 KiB requests took {used} writes");
}

/// A started call's number and the task awaiting its reply.
type PendingReply = (
    u64,
    tokio::task::JoinHandle<Result<(Bytes, Bytes), LinkError>>,
);

/// Records the order requests reach the handler in (their header is a number).
#[derive(Default)]
struct Arrivals(std::sync::Mutex<Vec<u64>>);

impl Handler for Arrivals {
    async fn handle(&self, header: Bytes, _body: Bytes) -> (Bytes, Bytes) {
        let n = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        self.0.lock().expect("arrivals").push(n);
        (header, Bytes::new())
    }
}

/// `start_call` returns once the request is queued, with the reply to await later (in any
/// order, from any task); a started call that is dropped gives its in-flight slot back (with
/// max_in_flight 8, a leak would stall the next start), and every request reaches the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_calls_are_all_delivered_and_give_their_slots_back() {
    let arrivals = Arc::new(Arrivals::default());
    let (a, b) = tcp_pair(
        &fast_config(),
        &site_a(),
        &site_b(),
        NoRequests,
        arrivals.clone(),
    )
    .await;
    let (a, _b) = (a.expect("a"), b.expect("b"));
    let header = |n: u64| Bytes::from(n.to_be_bytes().to_vec());
    // Eight abandoned calls: every slot of fast_config's max_in_flight.
    for n in 0..8u64 {
        drop(a.start_call(header(n), Bytes::new()).await.expect("queued"));
    }
    // Then 200 more, at most 8 pending, replies awaited oldest-first from spawned tasks.
    let mut window: std::collections::VecDeque<PendingReply> = std::collections::VecDeque::new();
    for n in 8..208u64 {
        if window.len() == 8 {
            let (m, t) = window.pop_front().expect("pending");
            let (h, _) = t.await.expect("task").expect("reply");
            assert_eq!(h, header(m), "reply of call {m}");
        }
        // Bodies of mixed sizes: a large one must not let a later small one overtake it.
        let body = if n % 7 == 0 {
            body(n)
        } else {
            Bytes::from_static(b"x")
        };
        let p = a
            .start_call(header(n), body)
            .await
            .expect("queued (a slot leaked?)");
        window.push_back((n, tokio::spawn(p.reply())));
    }
    for (m, t) in window {
        let (h, _) = t.await.expect("task").expect("reply");
        assert_eq!(h, header(m), "reply of call {m}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while arrivals.0.lock().expect("arrivals").len() < 208 {
        assert!(
            std::time::Instant::now() < deadline,
            "an abandoned call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got = arrivals.0.lock().expect("arrivals").clone();
    got.sort_unstable();
    assert_eq!(got, (0..208).collect::<Vec<_>>());
    assert_eq!(a.in_flight(), 0, "every slot came back");
}
