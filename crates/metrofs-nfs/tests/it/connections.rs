//! Connections: many calls in flight, out-of-order replies, closing them all, shutdown.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nfs3_client::nfs3_types::nfs3::*;

use crate::harness::*;
use crate::raw::{self, Raw};

#[tokio::test]
async fn many_calls_in_flight_on_one_connection() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (f, _) = create(&mut c, &rfh, "f").await.expect("create");
    let who = cred(0, 0, &[]);
    // 300 calls in one burst (over the in-flight limit of 64): writes to distinct ranges,
    // reads and getattrs, all answered, each once.
    let mut burst = Vec::new();
    let mut xids = HashSet::new();
    for i in 0..300u32 {
        let xid = 1000 + i;
        xids.insert(xid);
        let body = match i % 3 {
            0 => raw::call(
                xid,
                raw::NFS,
                3,
                7,
                &who,
                &WRITE3args {
                    file: f.clone(),
                    offset: u64::from(i) * 4096,
                    count: 4096,
                    stable: stable_how::UNSTABLE,
                    data: nfs3_client::nfs3_types::xdr_codec::Opaque::owned(vec![i as u8; 4096]),
                },
            ),
            1 => raw::call(
                xid,
                raw::NFS,
                3,
                6,
                &who,
                &READ3args {
                    file: f.clone(),
                    offset: 0,
                    count: 4096,
                },
            ),
            _ => raw::call(
                xid,
                raw::NFS,
                3,
                1,
                &who,
                &GETATTR3args { object: f.clone() },
            ),
        };
        burst.extend(raw::record(&body));
    }
    let mut r = Raw::connect(srv.addr).await;
    let (mut rd, mut wr) = r.s.into_split();
    let sender = tokio::spawn(async move {
        tokio::io::AsyncWriteExt::write_all(&mut wr, &burst)
            .await
            .expect("send burst");
        wr
    });
    let mut got = HashSet::new();
    for _ in 0..300 {
        let mut mark = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut rd, &mut mark)
            .await
            .expect("reply mark");
        let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
        let mut body = vec![0u8; len];
        tokio::io::AsyncReadExt::read_exact(&mut rd, &mut body)
            .await
            .expect("reply");
        let xid = raw::xid_of(&body);
        assert!(got.insert(xid), "xid {xid} answered twice");
        assert!(matches!(raw::outcome(&body), raw::Outcome::Success(_)));
    }
    assert_eq!(got, xids);
    let wr = sender.await.expect("sender");
    r = Raw {
        s: rd.reunite(wr).expect("same stream"),
    };
    r.send(&raw::record(&raw::call(
        9,
        raw::NFS,
        3,
        0,
        &who,
        &nfs3_client::nfs3_types::xdr_codec::Void,
    )))
    .await;
    assert_eq!(r.recv().await.map(|b| raw::xid_of(&b)), Some(9));
    // Every write landed.
    for i in (0..300u64).step_by(3) {
        let (data, _) = read(&mut c, &f, i * 4096, 4096).await.expect("read");
        assert!(data.iter().all(|b| *b == i as u8), "block {i}");
    }
    srv.stop().await;
}

/// Waits until the server has no connection open; fails after `within`.
async fn wait_none_open(srv: &Server, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while srv.conns.open() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connection(s) still open after {within:?}",
            srv.conns.open()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn close_all_closes_every_connection_and_the_server_goes_on() {
    let srv = Server::start().await;
    let a = root(&srv).await;
    let mut raws = Vec::new();
    for _ in 0..3 {
        let mut r = Raw::connect(srv.addr).await;
        null_answered(&mut r).await;
        raws.push(r);
    }
    // nfs3_client's two connections (MOUNT, NFS) and ours.
    assert_eq!(srv.conns.open(), 5);
    srv.conns.close_all();
    for r in &mut raws {
        assert!(r.closed().await, "connection closed by the server");
    }
    // (nfs3_client spins on a closed connection, so its own are not probed here.)
    drop(a);
    wait_none_open(&srv, Duration::from_secs(5)).await;
    let mut b = root(&srv).await;
    b.null().await.expect("a new connection is served");
    srv.stop().await;
}

/// A client that stops reading its replies: the server's write blocks on a full socket. A
/// close_all must still close that connection at once, not after the client reads again.
#[tokio::test]
async fn close_all_closes_a_connection_whose_client_does_not_read() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (f, _) = create(&mut c, &rfh, "big").await.expect("create");
    let mib = vec![7u8; 1 << 20];
    write(&mut c, &f, 0, &mib, stable_how::UNSTABLE).await.expect("write");
    drop(c);
    let who = cred(0, 0, &[]);
    let mut burst = Vec::new();
    for xid in 0..64u32 {
        let args = READ3args { file: f.clone(), offset: 0, count: 1 << 20 };
        burst.extend(raw::record(&raw::call(xid, raw::NFS, 3, 6, &who, &args)));
    }
    let mut r = Raw::connect(srv.addr).await;
    r.send(&burst).await;
    // 64 MiB of replies, none read: the socket buffers fill and the server's write waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    srv.conns.close_all();
    wait_none_open(&srv, Duration::from_secs(3)).await;
    // What the client reads now ends: no more than what was sent before the close.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut r.s, &mut sink)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the connection stayed open after close_all ({total} bytes read)"),
        }
    }
    assert!(total < 64 << 20, "the replies were not all sent: {total} bytes");
    srv.stop().await;
}

/// Before a floating address leaves the host, `release` closes the connections, and turns
/// away new ones to that address (only) until its guard is dropped: a close made after the
/// address is gone would never reach the client.
#[tokio::test]
async fn release_closes_connections_and_turns_away_new_ones_to_the_address() {
    let srv = Server::start_on_any().await;
    let at = |ip: [u8; 4]| SocketAddr::from((ip, srv.port));
    let floating = IpAddr::from([127, 0, 0, 2]);
    let mut to_floating = Raw::connect(at([127, 0, 0, 2])).await;
    null_answered(&mut to_floating).await;
    let mut to_own = Raw::connect(at([127, 0, 0, 1])).await;
    null_answered(&mut to_own).await;
    assert_eq!(srv.conns.open_to(floating), 1);
    let (turned_away, left) = srv.conns.release(floating, Duration::from_secs(3)).await;
    assert_eq!(left, 0, "release returns once the connections to the address are gone");
    assert_eq!(srv.conns.open_to(floating), 0);
    assert!(to_floating.closed().await, "the connection to the released address is closed");
    assert!(to_own.closed().await, "a release closes every connection, as close_all does");
    // While the guard lives: a new connection to the address is closed at once, one to
    // another address is served.
    for _ in 0..3 {
        let mut again = Raw::connect(at([127, 0, 0, 2])).await;
        assert!(again.closed().await, "a new connection to the released address is turned away");
    }
    let mut own_again = Raw::connect(at([127, 0, 0, 1])).await;
    null_answered(&mut own_again).await;
    drop(turned_away);
    let mut back = Raw::connect(at([127, 0, 0, 2])).await;
    null_answered(&mut back).await;
    assert_eq!(srv.conns.open_to(floating), 1);
    srv.stop().await;
}

/// A connection the kernel completed but the server had not accepted yet is closed before
/// `release` returns: accepted after the address is gone, it would be served, and its replies
/// and its close would never leave (a libnfs client then waits for ever).
#[tokio::test]
async fn release_closes_the_connections_still_waiting_to_be_accepted() {
    use std::io::{Read as _, Write as _};
    let srv = Server::start_on_any().await;
    let floating = IpAddr::from([127, 0, 0, 2]);
    // A blocking connect: the kernel completes the handshake, and this runtime (one thread)
    // does not run the accept loop before `release`. The client's first call waits with it.
    let mut waiting = std::net::TcpStream::connect((floating, srv.port)).expect("connect");
    let null = raw::record(&raw::call(1, raw::NFS, 3, 0, &cred(0, 0, &[]), &nfs3_client::nfs3_types::xdr_codec::Void));
    waiting.write_all(&null).expect("send NULL");
    let (turned_away, left) = srv.conns.release(floating, Duration::from_secs(3)).await;
    assert_eq!(left, 0);
    // The address would go now. Without letting the server run any further, the client has
    // been told: its read ends (a close, or a reset for the unread call) instead of waiting.
    drop(turned_away);
    waiting.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    match waiting.read(&mut [0u8; 256]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection still waiting to be accepted was not closed by release: {other:?}"),
    }
    srv.stop().await;
}

/// Sends a NULL call on `r` and waits for its reply.
async fn null_answered(r: &mut Raw) {
    r.send(&raw::record(&raw::call(
        1,
        raw::NFS,
        3,
        0,
        &cred(0, 0, &[]),
        &nfs3_client::nfs3_types::xdr_codec::Void,
    )))
    .await;
    r.recv().await.expect("NULL reply");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes() {
    let srv = Server::start().await;
    let addr = srv.addr;
    let mut r = Raw::connect(addr).await;
    srv.stop().await;
    assert!(r.closed().await);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nobody listens any more"
    );
}
