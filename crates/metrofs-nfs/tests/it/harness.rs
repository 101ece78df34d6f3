//! A real array (store + metro) behind the NFS server on a loopback port, and clients.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use metrofs_core::{
    Attr, Backend, Caller, Cidr, ExportInfo, ExportRules, FsError, FsId, FsStat, Ino, OpBody,
    OpReply, ReadDirPage, ReadReply, ReplyKey, SystemClock,
};
use metrofs_metro::Array;
use metrofs_nfs::{Connections, NfsServer};
use metrofs_store::Store;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};
use tokio::net::TcpStream;

/// The array, counting the changes the front end submits.
pub struct Spy {
    pub inner: Arc<Array>,
    pub changes: AtomicUsize,
    /// Make each successful change durable before answering (as the metro module does for
    /// a paired fs), so a test can find it after a `kill -9`.
    pub durable: bool,
}

impl Spy {
    pub fn new(inner: Arc<Array>) -> Self {
        Self {
            inner,
            changes: AtomicUsize::new(0),
            durable: false,
        }
    }
}

impl Backend for Spy {
    fn export_by_path(&self, path: &str) -> Option<ExportInfo> {
        self.inner.export_by_path(path)
    }
    fn export_by_fs(&self, fs: FsId) -> Option<ExportInfo> {
        self.inner.export_by_fs(fs)
    }
    fn exports(&self) -> Vec<ExportInfo> {
        self.inner.exports()
    }
    fn write_verifier(&self) -> [u8; 8] {
        self.inner.write_verifier()
    }
    async fn getattr(&self, fs: FsId, ino: Ino) -> Result<Attr, FsError> {
        self.inner.getattr(fs, ino).await
    }
    async fn lookup(&self, fs: FsId, dir: Ino, name: &[u8]) -> Result<Attr, FsError> {
        self.inner.lookup(fs, dir, name).await
    }
    async fn read(
        &self,
        fs: FsId,
        ino: Ino,
        offset: u64,
        count: u32,
    ) -> Result<ReadReply, FsError> {
        self.inner.read(fs, ino, offset, count).await
    }
    async fn readlink(&self, fs: FsId, ino: Ino) -> Result<(Vec<u8>, Attr), FsError> {
        self.inner.readlink(fs, ino).await
    }
    async fn readdir(
        &self,
        fs: FsId,
        dir: Ino,
        cookie: u64,
        max: usize,
        plus: bool,
    ) -> Result<ReadDirPage, FsError> {
        self.inner.readdir(fs, dir, cookie, max, plus).await
    }
    async fn fsstat(&self, fs: FsId) -> Result<FsStat, FsError> {
        self.inner.fsstat(fs).await
    }
    async fn change(&self, fs: FsId, body: OpBody, caller: &Caller) -> Result<OpReply, FsError> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.change(fs, body, caller).await;
        if self.durable && r.is_ok() {
            self.inner
                .sync()
                .map_err(|e| FsError::Io(format!("sync: {e}")))?;
        }
        r
    }
    fn replayed(&self, fs: FsId, key: &ReplyKey) -> Option<Result<OpReply, FsError>> {
        self.inner.replayed(fs, key)
    }
}

pub struct Server {
    pub array: Arc<Array>,
    pub spy: Arc<Spy>,
    pub addr: SocketAddr,
    pub port: u16,
    pub conns: Connections,
    pub fs: FsId,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Loopback, read-write, root not squashed: tests act as root to set things up.
pub fn open_rules() -> ExportRules {
    ExportRules {
        root_squash: false,
        ..ExportRules::default()
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(open_rules()).await
    }

    /// An array with one fs "t" exported under `rules`, served on 127.0.0.1.
    pub async fn start_with(rules: ExportRules) -> Self {
        Self::start_bound(rules, "127.0.0.1:0").await
    }

    /// [`Server::start`] listening on every address of the host (`addr` is the 127.0.0.1 one):
    /// clients may reach it on 127.0.0.1, 127.0.0.2, ...
    pub async fn start_on_any() -> Self {
        Self::start_bound(open_rules(), "0.0.0.0:0").await
    }

    async fn start_bound(rules: ExportRules, bind: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let array = Array::new(Arc::new(store), Arc::new(SystemClock));
        let info = array.create_fs("t", rules).expect("create fs");
        let spy = Arc::new(Spy::new(array.clone()));
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let addr = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().expect("addr").port()));
        let server = NfsServer::new(spy.clone());
        let conns = server.connections();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            array,
            spy,
            addr,
            port: addr.port(),
            conns,
            fs: info.id,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn changes(&self) -> usize {
        self.spy.changes.load(Ordering::SeqCst)
    }

    /// Another NFS server (its own reply cache, its own port) on the same backend: what a
    /// client finds after a failover, as far as the front end can tell.
    pub async fn another_front_end(&self) -> FrontEnd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = NfsServer::new(self.spy.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        FrontEnd { addr, stop, task }
    }

    /// Stops the server, after checking the store is consistent (fsck) whatever the test did.
    pub async fn stop(mut self) {
        let problems = self.array.store().check(self.fs);
        assert!(problems.is_empty(), "store check: {problems:#?}");
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task");
        }
    }

    /// The whole fs as the store sees it (attributes, entries, content hashes): what must not
    /// change when bad input arrives.
    pub async fn snapshot(&self) -> metrofs_store::FsImage {
        self.array.store().image(self.fs).expect("store image")
    }
}

/// A second front end of a [`Server`]'s backend.
pub struct FrontEnd {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl FrontEnd {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("front end task");
    }
}

pub type Conn = Nfs3Connection<TokioIo<TcpStream>>;

pub fn cred(uid: u32, gid: u32, gids: &[u32]) -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: Opaque::owned(b"test".to_vec()),
        uid,
        gid,
        gids: gids.to_vec(),
    })
}

/// Mounts `path` as `uid`/`gid`.
pub async fn mount_as(srv: &Server, path: &str, uid: u32, gid: u32) -> Conn {
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", path)
        .mount_port(srv.port)
        .nfs3_port(srv.port)
        .connect_from_privileged_port(false)
        .credential(cred(uid, gid, &[]))
        .mount()
        .await
        .expect("mount")
}

pub async fn root(srv: &Server) -> Conn {
    mount_as(srv, "/t", 0, 0).await
}

/// A connector whose connections come from `local` (e.g. 127.0.0.2).
pub struct FromIp(pub IpAddr);

impl nfs3_client::net::Connector for FromIp {
    type Connection = TokioIo<TcpStream>;
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Self::Connection> {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(self.0, 0))?;
        Ok(TokioIo::new(s.connect(addr).await?))
    }
    async fn connect_with_port(
        &self,
        addr: SocketAddr,
        _port: u16,
    ) -> std::io::Result<Self::Connection> {
        self.connect(addr).await
    }
}

pub fn cidr(s: &str) -> Cidr {
    s.parse().expect("cidr")
}

// ---- small wrappers around procedures, answering what tests check ----

pub fn name(s: &str) -> filename3<'_> {
    filename3::from(s.as_bytes())
}

pub fn dirop<'a>(dir: &nfs_fh3, n: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: name(n),
    }
}

pub fn root_fh(c: &Conn) -> nfs_fh3 {
    c.root_nfs_fh3()
}

pub async fn getattr(c: &mut Conn, fh: &nfs_fh3) -> Result<fattr3, nfsstat3> {
    match c
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => Ok(ok.obj_attributes),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn lookup(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    match c
        .lookup(&LOOKUP3args {
            what: dirop(dir, n),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => Ok((ok.object, ok.obj_attributes.unwrap())),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub fn sattr_mode(mode: u32) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(mode),
        ..sattr3::default()
    }
}

pub async fn create_how(
    c: &mut Conn,
    dir: &nfs_fh3,
    n: &str,
    how: createhow3,
) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    match c
        .create(&CREATE3args {
            where_: dirop(dir, n),
            how,
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => Ok((ok.obj.unwrap(), ok.obj_attributes.unwrap())),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn create(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    create_how(c, dir, n, createhow3::GUARDED(sattr_mode(0o644))).await
}

pub async fn mkdir(
    c: &mut Conn,
    dir: &nfs_fh3,
    n: &str,
    mode: u32,
) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    match c
        .mkdir(&MKDIR3args {
            where_: dirop(dir, n),
            attributes: sattr_mode(mode),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => Ok((ok.obj.unwrap(), ok.obj_attributes.unwrap())),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn write(
    c: &mut Conn,
    fh: &nfs_fh3,
    offset: u64,
    data: &[u8],
    stable: stable_how,
) -> Result<WRITE3resok, nfsstat3> {
    let args = WRITE3args {
        file: fh.clone(),
        offset,
        count: u32::try_from(data.len()).expect("small"),
        stable,
        data: Opaque::borrowed(data),
    };
    match c.write(&args).await.expect("rpc") {
        Nfs3Result::Ok(ok) => Ok(ok),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn read(
    c: &mut Conn,
    fh: &nfs_fh3,
    offset: u64,
    count: u32,
) -> Result<(Vec<u8>, bool), nfsstat3> {
    match c
        .read(&READ3args {
            file: fh.clone(),
            offset,
            count,
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert_eq!(ok.count as usize, ok.data.len());
            Ok((ok.data.to_vec(), ok.eof))
        }
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn remove(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(), nfsstat3> {
    match c
        .remove(&REMOVE3args {
            object: dirop(dir, n),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(_) => Ok(()),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn setattr(c: &mut Conn, fh: &nfs_fh3, s: sattr3) -> Result<SETATTR3resok, nfsstat3> {
    match c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: s,
            guard: Nfs3Option::None,
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => Ok(ok),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

/// A world-writable directory for unprivileged tests, made by root.
pub async fn scratch(srv: &Server, n: &str) -> nfs_fh3 {
    let mut r = root(srv).await;
    let rfh = root_fh(&r);
    let (fh, _) = mkdir(&mut r, &rfh, n, 0o777).await.expect("mkdir scratch");
    fh
}

/// Why a mount failed, as MOUNT's status (panics when it did not fail so).
pub async fn mount_refused<C>(
    b: Nfs3ConnectionBuilder<C>,
) -> nfs3_client::nfs3_types::mount::mountstat3
where
    C: nfs3_client::net::Connector<Connection = TokioIo<TcpStream>>,
{
    match b.mount().await {
        Ok(_) => panic!("the mount succeeded"),
        Err(nfs3_client::ConnectError::Mount(nfs3_client::MountError::Denied(s))) => s,
        Err(e) => panic!("mount failed otherwise: {e}"),
    }
}

pub fn builder(srv: &Server, path: &str) -> Nfs3ConnectionBuilder<TokioConnector> {
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", path)
        .mount_port(srv.port)
        .nfs3_port(srv.port)
        .connect_from_privileged_port(false)
        .credential(cred(0, 0, &[]))
}

pub async fn rmdir(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(), nfsstat3> {
    match c
        .rmdir(&RMDIR3args {
            object: dirop(dir, n),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert!(ok.dir_wcc.after.is_some());
            Ok(())
        }
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

pub async fn rename(
    c: &mut Conn,
    fd: &nfs_fh3,
    fname: &str,
    td: &nfs_fh3,
    tname: &str,
) -> Result<(), nfsstat3> {
    match c
        .rename(&RENAME3args {
            from: dirop(fd, fname),
            to: dirop(td, tname),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert!(ok.fromdir_wcc.after.is_some() && ok.todir_wcc.after.is_some());
            Ok(())
        }
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

/// LINK, answering the file's nlink after it.
pub async fn link(c: &mut Conn, file: &nfs_fh3, dir: &nfs_fh3, n: &str) -> Result<u32, nfsstat3> {
    match c
        .link(&LINK3args {
            file: file.clone(),
            link: dirop(dir, n),
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert!(ok.linkdir_wcc.after.is_some());
            Ok(ok.file_attributes.unwrap().nlink)
        }
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

/// ACCESS asking for every bit.
pub async fn access_all(c: &mut Conn, fh: &nfs_fh3) -> u32 {
    let all = ACCESS3_READ
        | ACCESS3_LOOKUP
        | ACCESS3_MODIFY
        | ACCESS3_EXTEND
        | ACCESS3_DELETE
        | ACCESS3_EXECUTE;
    match c
        .access(&ACCESS3args {
            object: fh.clone(),
            access: all,
        })
        .await
        .expect("rpc")
    {
        Nfs3Result::Ok(ok) => {
            assert!(ok.obj_attributes.is_some());
            ok.access
        }
        Nfs3Result::Err((s, _)) => panic!("ACCESS: {s}"),
    }
}
