//! The seam between the NFS front end and the array below it.
//!
//! Data flows one way: nfs → [`Backend`] (the metro module) → store (and, for a pair, the link).
//! Reads are answered from the local store; every change goes through [`Backend::change`], which
//! turns the body into a fully determined `FsOp` and runs the write I/O process.
//!
//! The front end checks export rules and permissions with what this trait returns; the backend
//! does not know about RPC, XDR or `nfsstat3`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Attr, FsError, FsId, FsStat, Ino, OpBody, OpReply};

/// Who sends a request, as the front end knows it after squashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub addr: SocketAddr,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
    /// The RPC transaction id, so a change can be matched to a retransmission of it.
    pub xid: u32,
    /// Names this request among every request of every client, for changes whose
    /// retransmission must not run twice (see [`ReplyKey`]); `None` for the others. A backend
    /// keeps the result of a keyed change under this key and answers
    /// [`Backend::replayed`] with it.
    pub reply_key: Option<ReplyKey>,
}

/// One NFS request, as its retransmissions name it: the client's IP address (not its port: a
/// client that reconnects, to this array or to the other one after a failover, comes from
/// another port), the RPC xid, the procedure and a hash of the encoded arguments (so an xid
/// reused with other arguments is another request).
///
/// The front end makes it from the request alone, with a hash that does not depend on the
/// build or the process, so both arrays of a pair make the same key for the same request. It
/// travels with the replicated op, so the twin keeps its own result under the same key: a
/// request whose reply was lost with the array that applied it, resent to the survivor, is
/// answered with that result instead of running again (a retried CREATE answers success,
/// not EXIST; a retried REMOVE success, not NOENT).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyKey {
    /// IPv4 clients seen as IPv4-mapped IPv6 addresses are stored as IPv4 (one listener may
    /// see a client one way, the other array's the other way).
    pub client: IpAddr,
    pub xid: u32,
    /// The NFSv3 procedure number.
    pub proc: u32,
    /// A stable hash of the procedure's encoded arguments.
    pub args_hash: u64,
}

impl ReplyKey {
    #[must_use]
    pub fn new(client: IpAddr, xid: u32, proc: u32, args_hash: u64) -> Self {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        Self { client, xid, proc, args_hash }
    }
}

impl std::fmt::Display for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} xid {:#x} proc {} args {:016x}", self.client, self.xid, self.proc, self.args_hash)
    }
}

/// An IP network, `ADDR/PREFIX` (`10.0.0.0/8`, `127.0.0.1/32`, `::1/128`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network. An IPv4 client seen as an IPv4-mapped IPv6 address
    /// matches IPv4 networks.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let p = u32::from(self.prefix.min(32));
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let p = u32::from(self.prefix.min(128));
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr =
            a.parse().map_err(|_| format!("'{s}' is not an IP network: expected ADDR/PREFIX such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix must be a number from 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Who may use an export and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRules {
    /// Networks allowed to mount and call. Empty means nobody.
    pub clients: Vec<Cidr>,
    pub read_only: bool,
    /// Map uid 0 / gid 0 to `anon_uid` / `anon_gid`.
    pub root_squash: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
}

impl Default for ExportRules {
    /// Loopback only, read-write, root squashed: safe until an operator says otherwise.
    fn default() -> Self {
        Self {
            clients: vec![Cidr { addr: IpAddr::from([127, 0, 0, 0]), prefix: 8 }],
            read_only: false,
            root_squash: true,
            anon_uid: 65534,
            anon_gid: 65534,
        }
    }
}

impl ExportRules {
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.clients.iter().any(|c| c.contains(ip))
    }
}

/// One exported file system: reachable as `/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub fs: FsId,
    pub name: String,
    pub rules: ExportRules,
}

/// One directory entry. `cookie` resumes a listing right after this entry, and stays valid
/// while other entries come and go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub cookie: u64,
    pub name: Vec<u8>,
    pub ino: Ino,
    /// Present when asked for (READDIRPLUS).
    pub attr: Option<Attr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDirPage {
    pub dir: Attr,
    pub entries: Vec<DirEntry>,
    /// No entries after the last one returned.
    pub eof: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReply {
    pub data: Bytes,
    pub eof: bool,
    pub attr: Attr,
}

/// What the NFS front end calls. Implemented by the metro module (one array, or the serving
/// side of a pair). `ino` arguments come from handles whose generation the front end checked
/// with [`Backend::getattr`] (STALE otherwise).
pub trait Backend: Send + Sync + 'static {
    /// The export named `/NAME` (MOUNT), or `None`.
    fn export_by_path(&self, path: &str) -> Option<ExportInfo>;
    /// The export of a file system (every call re-checks its rules).
    fn export_by_fs(&self, fs: FsId) -> Option<ExportInfo>;
    /// Every export, for MOUNT's EXPORT procedure (`showmount -e`). The default lists none;
    /// a backend that knows its file systems should list them.
    fn exports(&self) -> Vec<ExportInfo> {
        Vec::new()
    }
    /// The WRITE/COMMIT verifier: changes whenever this array restarts or starts serving.
    fn write_verifier(&self) -> [u8; 8];

    fn getattr(&self, fs: FsId, ino: Ino) -> impl Future<Output = Result<Attr, FsError>> + Send;
    /// `..` of the root is the root itself; `.` is `dir`.
    fn lookup(&self, fs: FsId, dir: Ino, name: &[u8]) -> impl Future<Output = Result<Attr, FsError>> + Send;
    fn read(&self, fs: FsId, ino: Ino, offset: u64, count: u32) -> impl Future<Output = Result<ReadReply, FsError>> + Send;
    fn readlink(&self, fs: FsId, ino: Ino) -> impl Future<Output = Result<(Vec<u8>, Attr), FsError>> + Send;
    /// Entries after `cookie` (0 = from the start; `.` and `..` are the front end's business),
    /// at most `max_entries`.
    fn readdir(
        &self,
        fs: FsId,
        dir: Ino,
        cookie: u64,
        max_entries: usize,
        plus: bool,
    ) -> impl Future<Output = Result<ReadDirPage, FsError>> + Send;
    fn fsstat(&self, fs: FsId) -> impl Future<Output = Result<FsStat, FsError>> + Send;

    /// Every change: the write I/O process. Answers once the change is as durable as the body
    /// asks (UNSTABLE in the cache(s); COMMIT / FILE_SYNC on disk(s)).
    fn change(&self, fs: FsId, body: OpBody, caller: &Caller) -> impl Future<Output = Result<OpReply, FsError>> + Send;

    /// The result a change named `key` ([`Caller::reply_key`]) already had on this array,
    /// applied here directly or as the replicated op of its twin; `None` when this array does
    /// not know the key (never seen, or forgotten: a backend keeps results for a bounded time
    /// and count).
    ///
    /// The front end asks this for a keyed change its own reply cache does not know, before
    /// checking or submitting anything, and on `Some` answers that result exactly as if
    /// [`Backend::change`] had just returned it, without calling it. That is how a
    /// retransmission reaching the survivor after a failover gets the answer it would have
    /// got from the array that was lost. A backend must never answer a result that was not
    /// produced by applying the change (a JUKEBOX-style `Busy` is never kept: its retry must
    /// run). The default knows nothing.
    fn replayed(&self, fs: FsId, key: &ReplyKey) -> Option<Result<OpReply, FsError>> {
        let _ = (fs, key);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_key_sees_mapped_ipv4_as_ipv4() {
        let v4 = ReplyKey::new("10.0.0.7".parse().expect("ip"), 9, 8, 42);
        let mapped = ReplyKey::new("::ffff:10.0.0.7".parse().expect("ip"), 9, 8, 42);
        assert_eq!(v4, mapped);
        assert_eq!(mapped.client, "10.0.0.7".parse::<IpAddr>().expect("ip"));
        let v6 = ReplyKey::new("fd00::7".parse().expect("ip"), 9, 8, 42);
        assert_ne!(v4, v6);
        assert_eq!(v4.to_string(), "10.0.0.7 xid 0x9 proc 8 args 000000000000002a");
    }

    #[test]
    fn cidr_matches() {
        let c: Cidr = "127.0.0.1/32".parse().expect("cidr");
        assert!(c.contains("127.0.0.1".parse().expect("ip")));
        assert!(!c.contains("127.0.0.2".parse().expect("ip")));
        assert!(c.contains("::ffff:127.0.0.1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("10.1.2.3".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
    }
}
