//! A small NFSv3 client for the tests, over the nfs3_client crate (somebody else's code, so
//! it checks our server from the outside), with AUTH_SYS as root and an optional source
//! address for the socket (to be a client from 127.0.0.2).

use std::net::{IpAddr, SocketAddr};

use nfs3_client::nfs3_types::nfs3::{
    self, createhow3, diropargs3, filename3, nfs_fh3, nfsstat3, sattr3, stable_how, Nfs3Option,
    Nfs3Result,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::{ConnectError, Nfs3Client, Nfs3ConnectionBuilder};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP stream for nfs3_client. Its own `TokioIo` returns `Ok(0)` at end of stream, and
/// nfs3_client's `async_read_exact` then loops forever: a client of a killed server spins
/// instead of failing. Here end of stream is an error.
pub struct Io(TcpStream);

impl nfs3_client::io::AsyncRead for Io {
    async fn async_read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = tokio::io::AsyncReadExt::read(&mut self.0, buf).await?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(n)
    }
}

impl nfs3_client::io::AsyncWrite for Io {
    async fn async_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = tokio::io::AsyncWriteExt::write(&mut self.0, buf).await?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }
}

/// Connects from a chosen source address (any free port).
pub struct FromAddr(pub IpAddr);

impl nfs3_client::net::Connector for FromAddr {
    type Connection = Io;

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Self::Connection> {
        self.connect_with_port(addr, 0).await
    }

    async fn connect_with_port(
        &self,
        addr: SocketAddr,
        local_port: u16,
    ) -> std::io::Result<Self::Connection> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(self.0, local_port))?;
        let stream = socket.connect(addr).await?;
        let local = stream.local_addr()?;
        assert_eq!(
            local.ip(),
            self.0,
            "the kernel did not use the requested source address"
        );
        Ok(Io(stream))
    }
}

pub type Fh = nfs_fh3;

/// One mounted export.
pub struct Client {
    pub nfs: Nfs3Client<Io>,
    pub root: Fh,
}

fn root_cred() -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: Opaque::borrowed(b"metrofs-it"),
        uid: 0,
        gid: 0,
        gids: vec![0],
    })
}

/// An NFS error status, or the RPC failing.
#[derive(Debug)]
pub enum Error {
    Nfs(nfsstat3),
    Rpc(#[allow(dead_code)] String), // read through Debug in assertion messages
}

impl From<nfs3_client::RpcError> for Error {
    fn from(e: nfs3_client::RpcError) -> Self {
        Self::Rpc(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn ok<T, E>(r: Nfs3Result<T, E>) -> Result<T> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((s, _)) => Err(Error::Nfs(s)),
    }
}

fn name(n: &str) -> filename3<'static> {
    filename3::from(n.as_bytes().to_vec())
}

fn fh_of(fh: Nfs3Option<nfs_fh3>) -> Result<Fh> {
    match fh {
        Nfs3Option::Some(fh) => Ok(fh),
        Nfs3Option::None => Err(Error::Rpc("no file handle in the reply".into())),
    }
}

impl Client {
    /// MOUNTs `/fs` on the server at `server` from `source`.
    pub async fn mount(
        server: SocketAddr,
        fs: &str,
        source: IpAddr,
    ) -> std::result::Result<Self, ConnectError> {
        let conn =
            Nfs3ConnectionBuilder::new(FromAddr(source), server.ip().to_string(), format!("/{fs}"))
                .connect_from_privileged_port(false)
                .mount_port(server.port())
                .nfs3_port(server.port())
                .credential(root_cred())
                .mount()
                .await?;
        let root = conn.root_nfs_fh3();
        Ok(Self {
            nfs: conn.into_nfs3_client(),
            root,
        })
    }

    /// A new NFS connection (no MOUNT) from `source`, for handles obtained earlier.
    pub async fn connect(server: SocketAddr, source: IpAddr, root: Fh) -> std::io::Result<Self> {
        use nfs3_client::net::Connector as _;
        let io = FromAddr(source).connect(server).await?;
        Ok(Self {
            nfs: Nfs3Client::new_with_auth(io, root_cred(), opaque_auth::default()),
            root,
        })
    }

    pub async fn lookup(&mut self, dir: &Fh, n: &str) -> Result<Fh> {
        let r = self
            .nfs
            .lookup(&nfs3::LOOKUP3args {
                what: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
            })
            .await?;
        Ok(ok(r)?.object)
    }

    pub async fn getattr(&mut self, fh: &Fh) -> Result<nfs3::fattr3> {
        let r = self
            .nfs
            .getattr(&nfs3::GETATTR3args { object: fh.clone() })
            .await?;
        Ok(ok(r)?.obj_attributes)
    }

    pub async fn create(&mut self, dir: &Fh, n: &str) -> Result<Fh> {
        let r = self
            .nfs
            .create(&nfs3::CREATE3args {
                where_: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
                how: createhow3::UNCHECKED(sattr3 {
                    mode: Nfs3Option::Some(0o644),
                    ..sattr3::default()
                }),
            })
            .await?;
        fh_of(ok(r)?.obj)
    }

    pub async fn mkdir(&mut self, dir: &Fh, n: &str) -> Result<Fh> {
        let r = self
            .nfs
            .mkdir(&nfs3::MKDIR3args {
                where_: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
                attributes: sattr3 {
                    mode: Nfs3Option::Some(0o755),
                    ..sattr3::default()
                },
            })
            .await?;
        fh_of(ok(r)?.obj)
    }

    /// WRITE; returns the verifier and how stable the server made it.
    pub async fn write(
        &mut self,
        fh: &Fh,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> Result<([u8; 8], stable_how)> {
        let r = self
            .nfs
            .write(&nfs3::WRITE3args {
                file: fh.clone(),
                offset,
                count: u32::try_from(data.len()).expect("small write"),
                stable,
                data: Opaque::borrowed(data),
            })
            .await?;
        let ok = ok(r)?;
        assert_eq!(ok.count as usize, data.len(), "short write");
        Ok((ok.verf.0, ok.committed))
    }

    /// COMMIT of the whole file; returns the verifier.
    pub async fn commit(&mut self, fh: &Fh) -> Result<[u8; 8]> {
        let r = self
            .nfs
            .commit(&nfs3::COMMIT3args {
                file: fh.clone(),
                offset: 0,
                count: 0,
            })
            .await?;
        Ok(ok(r)?.verf.0)
    }

    /// Reads `len` bytes at `offset` (several READs if needed); stops early at EOF.
    pub async fn read(&mut self, fh: &Fh, mut offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let want = u32::try_from((len - out.len()).min(1 << 20)).expect("fits");
            let r = self
                .nfs
                .read(&nfs3::READ3args {
                    file: fh.clone(),
                    offset,
                    count: want,
                })
                .await?;
            let ok = ok(r)?;
            let data = ok.data.as_ref();
            out.extend_from_slice(data);
            offset += data.len() as u64;
            if ok.eof || data.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn remove(&mut self, dir: &Fh, n: &str) -> Result<()> {
        let r = self
            .nfs
            .remove(&nfs3::REMOVE3args {
                object: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
            })
            .await?;
        ok(r).map(|_| ())
    }

    pub async fn rmdir(&mut self, dir: &Fh, n: &str) -> Result<()> {
        let r = self
            .nfs
            .rmdir(&nfs3::RMDIR3args {
                object: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
            })
            .await?;
        ok(r).map(|_| ())
    }

    pub async fn rename(&mut self, from_dir: &Fh, from: &str, to_dir: &Fh, to: &str) -> Result<()> {
        let r = self
            .nfs
            .rename(&nfs3::RENAME3args {
                from: diropargs3 {
                    dir: from_dir.clone(),
                    name: name(from),
                },
                to: diropargs3 {
                    dir: to_dir.clone(),
                    name: name(to),
                },
            })
            .await?;
        ok(r).map(|_| ())
    }
}

/// A current-thread runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
pub const LOCALHOST2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
