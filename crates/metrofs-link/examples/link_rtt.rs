//! Round trip of small calls over a real link between two processes on loopback, as two
//! arrays run it (each on its own multi-threaded tokio runtime with 2 workers).
//!
//! ```text
//! cargo run --release -p metrofs-link --example link_rtt -- [CALLS] [BODY_BYTES]
//! ```
//!
//! Prints the p50/p90/p99 of a call (request with a body of BODY_BYTES, empty reply), one
//! call at a time, after 1000 warm-up calls. The parent is the caller; it starts itself again
//! as the peer (`--serve ADDR`), which answers every request after copying its body (as a
//! replica applying a 4 KiB write would touch it).

use std::time::{Duration, Instant};

use bytes::Bytes;
use metrofs_link::{Handler, Identity, LinkConfig, NoRequests, Secret};

struct Touch;

impl Handler for Touch {
    async fn handle(&self, _header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let copy = body.to_vec();
        (
            Bytes::from(vec![u8::from(copy.first() == Some(&1))]),
            Bytes::new(),
        )
    }

    fn inline(&self, _header: &[u8]) -> bool {
        true
    }
}

fn identity(name: &str) -> Identity {
    let secret = Secret::new(b"link-rtt-example-secret-32-bytes".to_vec()).expect("secret");
    Identity::new("example", name, secret).expect("identity")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("--serve") {
        let addr = args.get(2).expect("--serve ADDR").clone();
        rt.block_on(serve(addr));
        return;
    }
    let calls: usize = args
        .get(1)
        .map_or(20_000, |a| a.parse().expect("CALLS is a number"));
    let body: usize = args
        .get(2)
        .map_or(4096, |a| a.parse().expect("BODY_BYTES is a number"));
    rt.block_on(call(calls, body));
}

async fn serve(addr: String) {
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let link = metrofs_link::accept(&listener, &LinkConfig::default(), &identity("b"), Touch)
        .await
        .expect("accept");
    link.closed().await;
}

async fn call(calls: usize, body: usize) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let exe = std::env::current_exe().expect("own path");
    let mut child = std::process::Command::new(exe)
        .args(["--serve", &addr])
        .spawn()
        .expect("start the peer");
    let link = loop {
        match metrofs_link::connect(
            addr.as_str(),
            &LinkConfig::default(),
            &identity("a"),
            NoRequests,
        )
        .await
        {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let data = Bytes::from(vec![1u8; body]);
    let mut took = Vec::with_capacity(calls);
    for i in 0..calls + 1000 {
        let t = Instant::now();
        let (h, _) = link
            .call(Bytes::from_static(b"x"), data.clone())
            .await
            .expect("call");
        assert_eq!(&h[..], &[1]);
        if i >= 1000 {
            took.push(t.elapsed());
        }
    }
    took.sort();
    let p = |q: f64| {
        let i = ((took.len() as f64 * q) as usize).min(took.len() - 1);
        took[i].as_secs_f64() * 1e6
    };
    println!(
        "{calls} calls of {body} B: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        p(0.5),
        p(0.9),
        p(0.99)
    );
    link.close("done");
    let _ = child.kill();
    let _ = child.wait();
}
