//! Front-end throughput and latency on loopback, for profiling (not a test):
//! an array in a temporary directory (or `$METROFS_BENCH_DIR`), the NFS server in this
//! process, and a pipelining raw RPC client on one connection.
//!
//! `cargo run --release -p metrofs-nfs --example loopback [GiB] [in-flight]`
//!
//! Prints sequential 1 MiB UNSTABLE write MiB/s (then COMMIT), sequential 1 MiB read MiB/s,
//! and 4 KiB UNSTABLE write latency (one at a time) p50 / p99.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrofs_core::{ExportRules, FileHandle, SystemClock, ROOT_INO};
use metrofs_metro::Array;
use metrofs_nfs::NfsServer;
use metrofs_store::Store;
use nfs3_types::nfs3::{
    createhow3, diropargs3, filename3, nfs_fh3, sattr3, stable_how, COMMIT3args, CREATE3args,
    READ3args, WRITE3args,
};
use nfs3_types::rpc::{auth_unix, call_body, msg_body, opaque_auth, rpc_msg};
use nfs3_types::xdr_codec::{Opaque, Pack};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

type Err = Box<dyn std::error::Error + Send + Sync>;

struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    xid: u32,
    cred: opaque_auth<'static>,
}

impl Client {
    fn encode<A: Pack>(&mut self, proc: u32, args: &A) -> Result<Vec<u8>, Err> {
        self.xid += 1;
        let msg = rpc_msg {
            xid: self.xid,
            body: msg_body::CALL(call_body {
                rpcvers: 2,
                prog: 100_003,
                vers: 3,
                proc,
                cred: self.cred.borrow(),
                verf: opaque_auth::default(),
            }),
        };
        let mut v = vec![0u8; 4];
        msg.pack(&mut v)?;
        args.pack(&mut v)?;
        let len = u32::try_from(v.len() - 4)? | 0x8000_0000;
        v[..4].copy_from_slice(&len.to_be_bytes());
        Ok(v)
    }

    async fn send(&mut self, rec: &[u8]) -> Result<(), Err> {
        self.wr.write_all(rec).await?;
        Ok(())
    }

    /// One reply record; checks the NFS status word is OK.
    async fn recv(&mut self) -> Result<Vec<u8>, Err> {
        let len = self.rd.read_u32().await? & 0x7fff_ffff;
        let mut body = vec![0u8; len as usize];
        self.rd.read_exact(&mut body).await?;
        let status = u32::from_be_bytes([body[24], body[25], body[26], body[27]]);
        if body[8..12] != [0, 0, 0, 0] || body[20..24] != [0, 0, 0, 0] || status != 0 {
            return Err(format!("call failed: nfsstat {status}").into());
        }
        Ok(body)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> Result<(), Err> {
    let args: Vec<String> = std::env::args().collect();
    let gib: u64 = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let depth: usize = args.get(2).map_or(Ok(8), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir =
        std::env::var_os("METROFS_BENCH_DIR").map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let array = Array::new(Arc::new(Store::open(&dir)?), Arc::new(SystemClock));
    let info = array.create_fs(
        "bench",
        ExportRules {
            root_squash: false,
            ..ExportRules::default()
        },
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(NfsServer::new(array.clone()).serve(listener, std::future::pending()));

    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let cred = opaque_auth::auth_unix(&auth_unix {
        gids: vec![],
        ..auth_unix::default()
    });
    let mut c = Client {
        rd: BufReader::with_capacity(2 << 20, rd),
        wr,
        xid: 0,
        cred,
    };
    let root = FileHandle {
        fs: info.id,
        ino: ROOT_INO,
        gen: metrofs_core::Gen(1),
    };
    let root = nfs_fh3 {
        data: Opaque::owned(root.to_bytes().to_vec()),
    };
    let create = CREATE3args {
        where_: diropargs3 {
            dir: root,
            name: filename3::from(b"big".as_slice()),
        },
        how: createhow3::UNCHECKED(sattr3::default()),
    };
    let rec = c.encode(8, &create)?;
    c.send(&rec).await?;
    let reply = c.recv().await?;
    // CREATE3resok: status, then post_op_fh3 (bool, len, handle).
    let fh = nfs_fh3 {
        data: Opaque::owned(reply[36..36 + FileHandle::WIRE_LEN].to_vec()),
    };

    // Sequential 1 MiB writes, `depth` in flight.
    const MIB: usize = 1 << 20;
    let data = vec![0xa5u8; MIB];
    let total = gib * 1024;
    let t = Instant::now();
    let mut inflight = 0;
    for i in 0..total {
        let w = WRITE3args {
            file: fh.clone(),
            offset: i * MIB as u64,
            count: MIB as u32,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(&data),
        };
        let rec = c.encode(7, &w)?;
        if inflight == depth {
            c.recv().await?;
            inflight -= 1;
        }
        c.send(&rec).await?;
        inflight += 1;
    }
    while inflight > 0 {
        c.recv().await?;
        inflight -= 1;
    }
    let written = t.elapsed();
    let rec = c.encode(
        21,
        &COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        },
    )?;
    c.send(&rec).await?;
    c.recv().await?;
    let committed = t.elapsed();
    let mibs = total as f64 / written.as_secs_f64();
    println!(
        "write  {total} MiB, {depth} in flight: {mibs:.0} MiB/s before COMMIT, {:.0} MiB/s with it",
        total as f64 / committed.as_secs_f64()
    );

    // Sequential 1 MiB reads.
    let t = Instant::now();
    let mut queue = VecDeque::new();
    for i in 0..total {
        let rec = c.encode(
            6,
            &READ3args {
                file: fh.clone(),
                offset: i * MIB as u64,
                count: MIB as u32,
            },
        )?;
        if queue.len() == depth {
            c.recv().await?;
            queue.pop_front();
        }
        c.send(&rec).await?;
        queue.push_back(i);
    }
    while queue.pop_front().is_some() {
        c.recv().await?;
    }
    println!(
        "read   {total} MiB, {depth} in flight: {:.0} MiB/s",
        total as f64 / t.elapsed().as_secs_f64()
    );

    // 4 KiB writes, one at a time, random offsets within the first GiB.
    let small = vec![0x5au8; 4096];
    let mut lat = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x % (256 * 1024)) * 4096;
        let w = WRITE3args {
            file: fh.clone(),
            offset,
            count: 4096,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(&small),
        };
        let rec = c.encode(7, &w)?;
        let t = Instant::now();
        c.send(&rec).await?;
        c.recv().await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "4 KiB write, 1 in flight: p50 {:?} p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    Ok(())
}
