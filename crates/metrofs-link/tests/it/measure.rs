//! Loopback TCP measurement: prints the round trip of a 4 KiB call and the throughput of
//! 1 MiB calls with 8 in flight. Checks correctness only; no timing is asserted.
//! For real numbers: `cargo test -p metrofs-link --release -- measure --nocapture`
//! (`LINK_MEASURE_SCALE=10` for longer runs).

use std::time::Duration;

use bytes::Bytes;
use metrofs_link::{Handler, LinkConfig};
use tokio::time::Instant;

use crate::{site_a, site_b, tcp_pair};

/// Acknowledges a request with an empty reply (a write's shape: data goes one way).
struct Ack;

impl Handler for Ack {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let _ = header;
        (Bytes::copy_from_slice(&len.to_be_bytes()), Bytes::new())
    }
}

fn scale() -> u32 {
    std::env::var("LINK_MEASURE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_loopback_tcp() {
    let config = LinkConfig {
        max_in_flight: 8,
        ..LinkConfig::default()
    };
    let (a, b) = tcp_pair(&config, &site_a(), &site_b(), Ack, Ack).await;
    let (a, _b) = (a.expect("a"), b.expect("b"));

    // 4 KiB calls, one at a time.
    let small = Bytes::from(vec![7u8; 4096]);
    let n_small = if cfg!(debug_assertions) { 500 } else { 2000 } * scale();
    for _ in 0..200 {
        a.call(Bytes::new(), small.clone()).await.expect("warm-up");
    }
    let mut rtts = Vec::with_capacity(n_small as usize);
    for _ in 0..n_small {
        let t = Instant::now();
        let (h, _) = a
            .call(Bytes::new(), small.clone())
            .await
            .expect("4 KiB call");
        rtts.push(t.elapsed());
        assert_eq!(&h[..], &4096u64.to_be_bytes());
    }
    rtts.sort();
    let mean = rtts.iter().sum::<Duration>() / n_small;

    // 1 MiB calls, 8 in flight.
    let big = Bytes::from(vec![9u8; 1024 * 1024]);
    // Debug builds (the normal test run) move less: this is a sanity check there.
    let n_big = if cfg!(debug_assertions) { 64 } else { 256 } * scale();
    let t = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::with_capacity(n_big as usize);
    for _ in 0..n_big {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let (a, big) = (a.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            let (h, _) = a.call(Bytes::new(), big).await.expect("1 MiB call");
            drop(permit);
            assert_eq!(&h[..], &(1024u64 * 1024).to_be_bytes());
        }));
    }
    for task in tasks {
        task.await.expect("call task");
    }
    let secs = t.elapsed().as_secs_f64();
    let mib_s = f64::from(n_big) / secs;

    let raw_mib_s = raw_tcp_mib_s(n_big).await;

    println!(
        "metrofs-link loopback TCP ({} build): 4 KiB call round trip over {n_small} calls: \
         mean {mean:?}, p50 {:?}, p99 {:?}, max {:?}; 1 MiB calls, 8 in flight: {n_big} MiB \
         in {secs:.2} s = {mib_s:.0} MiB/s ({:.0} calls/s); heartbeat rtt {:?}; \
         baseline: raw TCP 1 MiB writes on the same machine {raw_mib_s:.0} MiB/s",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts[rtts.len() - 1],
        f64::from(n_big) / secs,
        a.rtt(),
    );
    assert!(a.down_reason().is_none());
}

/// Plain tokio TCP on loopback, 1 MiB writes read into a 1 MiB buffer: the ceiling the link
/// is compared with.
async fn raw_tcp_mib_s(mib: u32) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 1024 * 1024];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    let mut w = tokio::net::TcpStream::connect(addr).await.expect("connect");
    w.set_nodelay(true).expect("nodelay");
    let chunk = vec![1u8; 1024 * 1024];
    let t = Instant::now();
    for _ in 0..mib {
        w.write_all(&chunk).await.expect("write");
    }
    w.shutdown().await.expect("shutdown");
    let total = reader.await.expect("reader");
    assert_eq!(total, mib as usize * 1024 * 1024);
    f64::from(mib) / t.elapsed().as_secs_f64()
}
