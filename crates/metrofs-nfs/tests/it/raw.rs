//! Hand-made RPC records over a plain TCP stream: pipelining, retransmissions, bad input.

use std::net::SocketAddr;
use std::time::Duration;

use nfs3_client::nfs3_types::rpc::{
    accept_stat_data, call_body, msg_body, opaque_auth, rejected_reply, reply_body, rpc_msg,
};
use nfs3_client::nfs3_types::xdr_codec::{Pack, Unpack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const NFS: u32 = 100_003;
pub const MOUNT: u32 = 100_005;

/// The body of a call record (no record mark).
pub fn call<A: Pack>(
    xid: u32,
    prog: u32,
    vers: u32,
    proc: u32,
    cred: &opaque_auth<'static>,
    args: &A,
) -> Vec<u8> {
    let msg = rpc_msg {
        xid,
        body: msg_body::CALL(call_body {
            rpcvers: 2,
            prog,
            vers,
            proc,
            cred: cred.borrow(),
            verf: opaque_auth::default(),
        }),
    };
    let mut v = Vec::new();
    msg.pack(&mut v).expect("pack header");
    args.pack(&mut v).expect("pack args");
    v
}

/// `body` as one last fragment.
pub fn record(body: &[u8]) -> Vec<u8> {
    let mut v = (u32::try_from(body.len()).expect("small") | 0x8000_0000)
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(body);
    v
}

pub struct Raw {
    pub s: TcpStream,
}

/// What a reply record says.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted with SUCCESS: the results follow at this offset.
    Success(usize),
    Accepted(accept_stat_data),
    Denied(rejected_reply),
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.expect("connect"),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    /// The next reply record, `None` when the server closed the connection (or nothing came
    /// within `wait`).
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(wait, async {
            let mut mark = [0u8; 4];
            self.s.read_exact(&mut mark).await.ok()?;
            let m = u32::from_be_bytes(mark);
            assert!(m & 0x8000_0000 != 0, "replies are single fragments");
            let mut body = vec![0u8; (m & 0x7fff_ffff) as usize];
            self.s.read_exact(&mut body).await.ok()?;
            Some(body)
        })
        .await
        .ok()
        .flatten()
    }

    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.recv_within(Duration::from_secs(10)).await
    }

    /// True when the server closed the connection (EOF or reset) within a few seconds.
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

pub fn xid_of(rec: &[u8]) -> u32 {
    u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]])
}

pub fn outcome(rec: &[u8]) -> Outcome {
    let mut cur = std::io::Cursor::new(rec);
    let (msg, _) = rpc_msg::unpack(&mut cur).expect("a reply header");
    match msg.body {
        msg_body::REPLY(reply_body::MSG_ACCEPTED(a)) => match a.reply_data {
            accept_stat_data::SUCCESS => {
                Outcome::Success(usize::try_from(cur.position()).expect("small"))
            }
            other => Outcome::Accepted(other),
        },
        msg_body::REPLY(reply_body::MSG_DENIED(d)) => Outcome::Denied(d),
        msg_body::CALL(_) => panic!("the server sent a call"),
    }
}

/// The results of a successful reply.
pub fn results<R: Unpack>(rec: &[u8]) -> R {
    match outcome(rec) {
        Outcome::Success(at) => {
            let mut cur = std::io::Cursor::new(&rec[at..]);
            let (r, _) = R::unpack(&mut cur).expect("results decode");
            assert_eq!(
                cur.position() as usize,
                rec.len() - at,
                "results fill the reply"
            );
            r
        }
        other => panic!("not a success: {other:?}"),
    }
}
