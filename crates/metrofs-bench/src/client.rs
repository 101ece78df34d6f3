//! Connections to the server under test, and the NFSv3 calls the workloads make.
//!
//! One MOUNT gives the export's root handle; then any number of NFS connections, each with one
//! request in flight at a time (what `nfs3_client` offers): "depth N" is N connections. Calls run
//! from a privileged source port when the process may bind one (servers such as knfsd insist),
//! with `TCP_NODELAY`, AUTH_SYS credentials from the URL, and a timeout on every reply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nfs3_client::net::Connector;
use nfs3_client::nfs3_types::mount::dirpath;
use nfs3_client::nfs3_types::nfs3::{
    createhow3, diropargs3, fattr3, filename3, nfs_fh3, nfsstat3, sattr3, stable_how, writeverf3,
    COMMIT3args, CREATE3args, FSINFO3args, FSINFO3resok, GETATTR3args, LOOKUP3args, MKDIR3args,
    Nfs3Option, Nfs3Result, READ3args, READDIR3args, REMOVE3args, RMDIR3args, WRITE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, Nfs3Client, Nfs3ConnectionBuilder};
use tokio::net::{TcpSocket, TcpStream};

use crate::url::NfsUrl;

type Io = TokioIo<TcpStream>;

/// Lowest and highest source port tried for a privileged connection.
const PRIV_PORT_MIN: u16 = 600;
const PRIV_PORT_MAX: u16 = 1023;

/// Connects with `TCP_NODELAY` (one RPC per write, no Nagle delay on small calls) and, where
/// allowed, from a privileged source port; falls back to an ordinary port when binding one is
/// not permitted (not root).
#[derive(Clone, Copy)]
struct BenchConnector;

impl Connector for BenchConnector {
    type Connection = Io;

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Io> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }

    async fn connect_with_port(&self, addr: SocketAddr, local_port: u16) -> std::io::Result<Io> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let local_ip = if addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        match socket.bind(SocketAddr::new(local_ip, local_port)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return self.connect(addr).await;
            }
            Err(e) => return Err(e),
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }
}

/// Next privileged source port to try, shared by all connections of the process.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

async fn connect_privileged(addr: SocketAddr) -> std::io::Result<Io> {
    let span = PRIV_PORT_MAX - PRIV_PORT_MIN + 1;
    let start = u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0);
    for _ in 0..span {
        let i = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = PRIV_PORT_MIN + (start.wrapping_add(i) % span);
        match BenchConnector.connect_with_port(addr, port).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            other => return other,
        }
    }
    BenchConnector.connect(addr).await
}

/// The server under test: where it is, the export's root handle, and how to talk to it.
pub struct Server {
    pub nfs_addr: SocketAddr,
    pub mount_addr: SocketAddr,
    pub export: String,
    pub root: nfs_fh3,
    credential: opaque_auth<'static>,
    timeout: Duration,
    mount: MountClient<Io>,
}

impl Server {
    /// Resolves the host, MOUNTs the export (asking the portmapper for ports the URL does not
    /// give), and returns the server with its first NFS connection.
    ///
    /// # Errors
    /// Host not resolvable, nothing listening, MOUNT refused: each with the address tried.
    pub async fn mount(url: &NfsUrl, timeout: Duration) -> Result<(Self, Conn)> {
        let ip = resolve(&url.host).await?;
        let credential = opaque_auth::auth_unix(&auth_unix {
            stamp: 0,
            machinename: Opaque::owned(b"metrofs-bench".to_vec()),
            uid: url.uid,
            gid: url.gid,
            gids: vec![url.gid],
        });
        let mut builder = Nfs3ConnectionBuilder::new(BenchConnector, ip.to_string(), &url.export)
            .credential(credential.clone())
            .connect_from_privileged_port(true);
        if let Some(p) = url.nfs_port {
            builder = builder.nfs3_port(p);
        }
        if let Some(p) = url.mount_port {
            builder = builder.mount_port(p);
        }
        let ports = match (url.nfs_port, url.mount_port) {
            (Some(n), Some(m)) => format!("nfs port {n}, mount port {m}"),
            _ => "ports from the portmapper on port 111".to_string(),
        };
        let conn = tokio::time::timeout(timeout, builder.mount())
            .await
            .map_err(|_| anyhow!("no answer within {timeout:?} while mounting {url} ({ports})"))?
            .map_err(|e| anyhow!("cannot mount {} on {ip} ({ports}): {e}", url.export))?;
        let nfs_addr = SocketAddr::new(ip, conn.nfs3_port);
        let mount_addr = SocketAddr::new(ip, conn.mount_port);
        let root = conn.root_nfs_fh3();
        let server = Self {
            nfs_addr,
            mount_addr,
            export: url.export.clone(),
            root,
            credential,
            timeout,
            mount: conn.mount_client,
        };
        let first = Conn {
            client: conn.nfs3_client,
            timeout,
        };
        Ok((server, first))
    }

    /// Opens one more NFS connection.
    ///
    /// # Errors
    /// The connection is refused or times out.
    pub async fn connect(&self) -> Result<Conn> {
        let io = tokio::time::timeout(self.timeout, connect_privileged(self.nfs_addr))
            .await
            .map_err(|_| anyhow!("connecting to {} timed out", self.nfs_addr))?
            .with_context(|| format!("cannot connect to the NFS service at {}", self.nfs_addr))?;
        Ok(Conn {
            client: Nfs3Client::new_with_auth(io, self.credential.clone(), opaque_auth::default()),
            timeout: self.timeout,
        })
    }

    /// Tells the server the export is no longer mounted (UMNT). Best effort by nature.
    ///
    /// # Errors
    /// The UMNT call failed.
    pub async fn unmount(&mut self) -> Result<()> {
        let path = dirpath(Opaque::owned(self.export.as_bytes().to_vec()));
        tokio::time::timeout(self.timeout, self.mount.umnt(path))
            .await
            .map_err(|_| anyhow!("UMNT timed out"))?
            .map_err(|e| anyhow!("UMNT: {e}"))
    }
}

async fn resolve(host: &str) -> Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let mut addrs = tokio::net::lookup_host((host, 0))
        .await
        .with_context(|| format!("cannot resolve host {host:?}"))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| anyhow!("host {host:?} resolves to no address"))
}

/// One NFS connection: one request in flight.
pub struct Conn {
    client: Nfs3Client<Io>,
    timeout: Duration,
}

/// Turns an NFS reply into `Ok(resok)` or an error naming the procedure, the object and the status.
fn nfs_ok<T, E>(res: Nfs3Result<T, E>, what: &str) -> Result<T> {
    match res {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((status, _)) => Err(NfsStatusError {
            what: what.to_string(),
            status,
        }
        .into()),
    }
}

/// A server's answer other than NFS3_OK.
#[derive(Debug)]
pub struct NfsStatusError {
    pub what: String,
    pub status: nfsstat3,
}

impl std::fmt::Display for NfsStatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: server answered {:?}", self.what, self.status)
    }
}

impl std::error::Error for NfsStatusError {}

/// Whether `e` is the server saying `status`.
#[must_use]
pub fn is_status(e: &anyhow::Error, status: nfsstat3) -> bool {
    e.downcast_ref::<NfsStatusError>()
        .is_some_and(|s| s.status == status)
}

fn name(s: &str) -> filename3<'_> {
    filename3(Opaque::borrowed(s.as_bytes()))
}

fn mode(m: u32) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(m),
        ..sattr3::default()
    }
}

/// What a WRITE reply tells the benchmark.
pub struct Written {
    pub count: u32,
    pub committed: stable_how,
    pub verf: writeverf3,
}

macro_rules! call {
    ($self:ident, $proc:literal, $what:expr, $fut:expr) => {{
        let timeout = $self.timeout;
        match tokio::time::timeout(timeout, $fut).await {
            Err(_) => bail!("{} {}: no reply within {:?}", $proc, $what, timeout),
            Ok(Err(e)) => bail!("{} {}: RPC failed: {}", $proc, $what, e),
            Ok(Ok(res)) => nfs_ok(res, &format!("{} {}", $proc, $what))?,
        }
    }};
}

impl Conn {
    pub async fn fsinfo(&mut self, root: &nfs_fh3) -> Result<FSINFO3resok> {
        let args = FSINFO3args {
            fsroot: root.clone(),
        };
        Ok(call!(
            self,
            "FSINFO",
            "of the export root",
            self.client.fsinfo(&args)
        ))
    }

    pub async fn mkdir(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3> {
        let args = MKDIR3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: name(n),
            },
            attributes: mode(0o755),
        };
        let ok = call!(self, "MKDIR", n, self.client.mkdir(&args));
        match ok.obj {
            Nfs3Option::Some(fh) => Ok(fh),
            Nfs3Option::None => self.lookup(dir, n).await.map(|(fh, _)| fh),
        }
    }

    /// CREATE, GUARDED (the name must be new), mode 0644.
    pub async fn create(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3> {
        let args = CREATE3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: name(n),
            },
            how: createhow3::GUARDED(mode(0o644)),
        };
        let ok = call!(self, "CREATE", n, self.client.create(&args));
        match ok.obj {
            Nfs3Option::Some(fh) => Ok(fh),
            Nfs3Option::None => self.lookup(dir, n).await.map(|(fh, _)| fh),
        }
    }

    pub async fn lookup(&mut self, dir: &nfs_fh3, n: &str) -> Result<(nfs_fh3, Option<fattr3>)> {
        let args = LOOKUP3args {
            what: diropargs3 {
                dir: dir.clone(),
                name: name(n),
            },
        };
        let ok = call!(self, "LOOKUP", n, self.client.lookup(&args));
        let attr = match ok.obj_attributes {
            Nfs3Option::Some(a) => Some(a),
            Nfs3Option::None => None,
        };
        Ok((ok.object, attr))
    }

    pub async fn getattr(&mut self, fh: &nfs_fh3) -> Result<fattr3> {
        let args = GETATTR3args { object: fh.clone() };
        Ok(call!(self, "GETATTR", "", self.client.getattr(&args)).obj_attributes)
    }

    pub async fn write(
        &mut self,
        fh: &nfs_fh3,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> Result<Written> {
        let count = u32::try_from(data.len()).context("a WRITE carries at most 4 GiB")?;
        let args = WRITE3args {
            file: fh.clone(),
            offset,
            count,
            stable,
            data: Opaque::borrowed(data),
        };
        let ok = call!(
            self,
            "WRITE",
            format!("at {offset}"),
            self.client.write(&args)
        );
        if ok.count > count {
            bail!(
                "WRITE at {offset}: server says it wrote {} of {count} bytes",
                ok.count
            );
        }
        Ok(Written {
            count: ok.count,
            committed: ok.committed,
            verf: ok.verf,
        })
    }

    /// COMMIT `count` bytes from `offset` (0, 0: the whole file); returns the write verifier.
    pub async fn commit(&mut self, fh: &nfs_fh3, offset: u64, count: u32) -> Result<writeverf3> {
        let args = COMMIT3args {
            file: fh.clone(),
            offset,
            count,
        };
        Ok(call!(self, "COMMIT", "", self.client.commit(&args)).verf)
    }

    /// READ; returns the data and the eof flag.
    pub async fn read(&mut self, fh: &nfs_fh3, offset: u64, count: u32) -> Result<(Vec<u8>, bool)> {
        let args = READ3args {
            file: fh.clone(),
            offset,
            count,
        };
        let ok = call!(
            self,
            "READ",
            format!("at {offset}"),
            self.client.read(&args)
        );
        let data = ok.data.into_owned();
        if data.len() != ok.count as usize {
            bail!(
                "READ at {offset}: count {} but {} bytes of data",
                ok.count,
                data.len()
            );
        }
        Ok((data, ok.eof))
    }

    pub async fn remove(&mut self, dir: &nfs_fh3, n: &str) -> Result<()> {
        let args = REMOVE3args {
            object: diropargs3 {
                dir: dir.clone(),
                name: name(n),
            },
        };
        call!(self, "REMOVE", n, self.client.remove(&args));
        Ok(())
    }

    pub async fn rmdir(&mut self, dir: &nfs_fh3, n: &str) -> Result<()> {
        let args = RMDIR3args {
            object: diropargs3 {
                dir: dir.clone(),
                name: name(n),
            },
        };
        call!(self, "RMDIR", n, self.client.rmdir(&args));
        Ok(())
    }

    /// Every name in `dir` except `.` and `..` (READDIR to the end, at most `limit` names).
    pub async fn list(&mut self, dir: &nfs_fh3, limit: usize) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cookie = 0;
        let mut cookieverf = Default::default();
        loop {
            let args = READDIR3args {
                dir: dir.clone(),
                cookie,
                cookieverf,
                count: 32 * 1024,
            };
            let ok = call!(self, "READDIR", "", self.client.readdir(&args));
            cookieverf = ok.cookieverf;
            let entries = ok.reply.entries.0;
            let empty = entries.is_empty();
            for e in entries {
                cookie = e.cookie;
                let n = String::from_utf8_lossy(e.name.as_ref()).into_owned();
                if n != "." && n != ".." {
                    names.push(n);
                }
            }
            if ok.reply.eof || names.len() >= limit {
                return Ok(names);
            }
            if empty {
                bail!("READDIR returned no entries and no eof");
            }
        }
    }
}
