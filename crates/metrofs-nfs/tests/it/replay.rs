//! Retransmissions whose reply was lost with the server that ran them: resent with the same
//! xid from a new connection (new port, same IP) to another front end of the same backend,
//! they are answered with the original result from `Backend::replayed`, not run again.
//!
//! The second front end has its own, empty reply cache, as the surviving array's front end
//! has after a failover; the backend (here one array) plays the survivor's role, which holds
//! the result because the replicated op carried the key.

use std::net::{IpAddr, SocketAddr};

use nfs3_client::nfs3_types::nfs3::*;
use tokio::net::TcpStream;

use crate::harness::*;
use crate::raw::{self, Raw};

const CREATE: u32 = 8;
const SETATTR: u32 = 2;
const WRITE: u32 = 7;
const MKDIR: u32 = 9;
const REMOVE: u32 = 12;
const RMDIR: u32 = 13;
const RENAME: u32 = 14;

async fn raw_from(ip: IpAddr, to: SocketAddr) -> Raw {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(ip, 0)).expect("bind");
    Raw {
        s: s.connect(to).await.expect("connect"),
    }
}

/// Sends one call on a fresh connection and returns its reply record and the client port
/// it came from.
async fn call_once(to: SocketAddr, record: &[u8]) -> (Vec<u8>, u16) {
    let mut r = Raw::connect(to).await;
    let port = TcpStream::local_addr(&r.s).expect("local addr").port();
    r.send(record).await;
    (r.recv().await.expect("a reply"), port)
}

fn guarded(dir: &nfs_fh3, name: &str, mode: u32) -> CREATE3args<'static> {
    CREATE3args {
        where_: diropargs3 {
            dir: dir.clone(),
            name: filename3::from(name.as_bytes().to_vec()),
        },
        how: createhow3::GUARDED(sattr_mode(mode)),
    }
}

fn status<T, E>(r: &Nfs3Result<T, E>) -> nfsstat3 {
    match r {
        Nfs3Result::Ok(_) => nfsstat3::NFS3_OK,
        Nfs3Result::Err((s, _)) => *s,
    }
}

#[tokio::test]
async fn a_resent_create_gets_its_success_not_exist() {
    let srv = Server::start().await;
    let c = root(&srv).await;
    let rfh = root_fh(&c);
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let create = raw::record(&raw::call(
        501,
        raw::NFS,
        3,
        CREATE,
        &who,
        &guarded(&rfh, "victim.txt", 0o644),
    ));
    // The first server runs it; its reply is "lost" (the client never reads it there).
    let (lost, first_port) = call_once(srv.addr, &create).await;
    let first: CREATE3res = raw::results(&lost);
    assert_eq!(status(&first), nfsstat3::NFS3_OK);
    let changes = srv.changes();

    // Resent to the other front end from a new connection: the original success.
    let (again, port) = call_once(survivor.addr, &create).await;
    assert_ne!(port, first_port, "a new connection, from another port");
    assert_eq!(
        again, lost,
        "the reply it would have got, byte for byte (same handle, attributes, wcc)"
    );
    assert_eq!(srv.changes(), changes, "nothing ran again");

    // The control cases run for real, and so answer EXIST.
    let other_xid = raw::record(&raw::call(
        502,
        raw::NFS,
        3,
        CREATE,
        &who,
        &guarded(&rfh, "victim.txt", 0o644),
    ));
    let (r, _) = call_once(survivor.addr, &other_xid).await;
    assert_eq!(
        status(&raw::results::<CREATE3res>(&r)),
        nfsstat3::NFS3ERR_EXIST,
        "another xid is another request"
    );
    let other_args = raw::record(&raw::call(
        501,
        raw::NFS,
        3,
        CREATE,
        &who,
        &guarded(&rfh, "victim.txt", 0o600),
    ));
    let (r, _) = call_once(survivor.addr, &other_args).await;
    assert_eq!(
        status(&raw::results::<CREATE3res>(&r)),
        nfsstat3::NFS3ERR_EXIST,
        "the same xid with other arguments is another request"
    );
    let mut elsewhere = raw_from(IpAddr::from([127, 0, 0, 2]), survivor.addr).await;
    elsewhere.send(&create).await;
    let r = elsewhere.recv().await.expect("a reply");
    assert_eq!(
        status(&raw::results::<CREATE3res>(&r)),
        nfsstat3::NFS3ERR_EXIST,
        "the same call from another client is another request"
    );
    assert_eq!(srv.changes(), changes + 3, "the three control calls ran");
    survivor.stop().await;
    srv.stop().await;
}

#[tokio::test]
async fn a_resent_remove_gets_its_success_not_noent() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    create(&mut c, &rfh, "victim.txt").await.expect("create");
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let remove = raw::record(&raw::call(
        601,
        raw::NFS,
        3,
        REMOVE,
        &who,
        &REMOVE3args {
            object: dirop(&rfh, "victim.txt"),
        },
    ));
    let (lost, _) = call_once(srv.addr, &remove).await;
    assert_eq!(
        status(&raw::results::<REMOVE3res>(&lost)),
        nfsstat3::NFS3_OK
    );
    let changes = srv.changes();
    let (again, _) = call_once(survivor.addr, &remove).await;
    assert_eq!(again, lost);
    assert_eq!(srv.changes(), changes, "nothing ran again");
    // Another xid runs, and finds nothing to remove.
    let other = raw::record(&raw::call(
        602,
        raw::NFS,
        3,
        REMOVE,
        &who,
        &REMOVE3args {
            object: dirop(&rfh, "victim.txt"),
        },
    ));
    let (r, _) = call_once(survivor.addr, &other).await;
    assert_eq!(
        status(&raw::results::<REMOVE3res>(&r)),
        nfsstat3::NFS3ERR_NOENT
    );
    survivor.stop().await;
    srv.stop().await;
}

/// RENAME checks its source exists before submitting: the resent call must be answered before
/// that check, or it would answer NOENT.
#[tokio::test]
async fn a_resent_rename_gets_its_success_not_noent() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    create(&mut c, &rfh, "a").await.expect("create");
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let args = RENAME3args {
        from: dirop(&rfh, "a"),
        to: dirop(&rfh, "b"),
    };
    let rename = raw::record(&raw::call(701, raw::NFS, 3, RENAME, &who, &args));
    let (lost, _) = call_once(srv.addr, &rename).await;
    assert_eq!(
        status(&raw::results::<RENAME3res>(&lost)),
        nfsstat3::NFS3_OK
    );
    let changes = srv.changes();
    let (again, _) = call_once(survivor.addr, &rename).await;
    assert_eq!(again, lost);
    assert_eq!(srv.changes(), changes, "nothing ran again");
    let other = raw::record(&raw::call(702, raw::NFS, 3, RENAME, &who, &args));
    let (r, _) = call_once(survivor.addr, &other).await;
    assert_eq!(
        status(&raw::results::<RENAME3res>(&r)),
        nfsstat3::NFS3ERR_NOENT
    );
    assert!(lookup(&mut c, &rfh, "b").await.is_ok());
    survivor.stop().await;
    srv.stop().await;
}

/// MKDIR then RMDIR, both resent: success twice, not EXIST then NOENT.
#[tokio::test]
async fn resent_mkdir_and_rmdir_get_their_success() {
    let srv = Server::start().await;
    let c = root(&srv).await;
    let rfh = root_fh(&c);
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let mkdir = raw::record(&raw::call(
        801,
        raw::NFS,
        3,
        MKDIR,
        &who,
        &MKDIR3args {
            where_: dirop(&rfh, "d"),
            attributes: sattr_mode(0o755),
        },
    ));
    let rmdir = raw::record(&raw::call(
        802,
        raw::NFS,
        3,
        RMDIR,
        &who,
        &RMDIR3args {
            object: dirop(&rfh, "d"),
        },
    ));
    let (made, _) = call_once(srv.addr, &mkdir).await;
    assert_eq!(status(&raw::results::<MKDIR3res>(&made)), nfsstat3::NFS3_OK);
    let (gone, _) = call_once(srv.addr, &rmdir).await;
    assert_eq!(status(&raw::results::<RMDIR3res>(&gone)), nfsstat3::NFS3_OK);
    let changes = srv.changes();
    assert_eq!(call_once(survivor.addr, &mkdir).await.0, made);
    assert_eq!(call_once(survivor.addr, &rmdir).await.0, gone);
    assert_eq!(srv.changes(), changes, "nothing ran again");
    survivor.stop().await;
    srv.stop().await;
}

/// A guarded SETATTR moves the ctime its guard names: resent, it must be answered before
/// the guard is checked again (else NOT_SYNC).
#[tokio::test]
async fn a_resent_guarded_setattr_gets_its_success_not_not_sync() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, attr) = create(&mut c, &rfh, "f").await.expect("create");
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let setattr = raw::record(&raw::call(
        901,
        raw::NFS,
        3,
        SETATTR,
        &who,
        &SETATTR3args {
            object: fh.clone(),
            new_attributes: sattr_mode(0o600),
            guard: Nfs3Option::Some(attr.ctime),
        },
    ));
    let (lost, _) = call_once(srv.addr, &setattr).await;
    assert_eq!(
        status(&raw::results::<SETATTR3res>(&lost)),
        nfsstat3::NFS3_OK
    );
    let changes = srv.changes();
    assert_eq!(call_once(survivor.addr, &setattr).await.0, lost);
    assert_eq!(srv.changes(), changes, "nothing ran again");
    survivor.stop().await;
    srv.stop().await;
}

/// WRITE is not keyed for the backend (same bytes at the same offset answer the same
/// success): resent to another front end it runs again, and succeeds, with the same data.
#[tokio::test]
async fn a_resent_write_runs_again_and_succeeds() {
    let srv = Server::start().await;
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (fh, _) = create(&mut c, &rfh, "w").await.expect("create");
    let survivor = srv.another_front_end().await;
    let who = cred(0, 0, &[]);
    let data = b"hello".to_vec();
    let write = raw::record(&raw::call(
        1001,
        raw::NFS,
        3,
        WRITE,
        &who,
        &WRITE3args {
            file: fh.clone(),
            offset: 3,
            count: 5,
            stable: stable_how::FILE_SYNC,
            data: nfs3_client::nfs3_types::xdr_codec::Opaque::borrowed(&data),
        },
    ));
    let (first, _) = call_once(srv.addr, &write).await;
    assert_eq!(
        status(&raw::results::<WRITE3res>(&first)),
        nfsstat3::NFS3_OK
    );
    let changes = srv.changes();
    let (again, _) = call_once(survivor.addr, &write).await;
    match raw::results::<WRITE3res>(&again) {
        Nfs3Result::Ok(ok) => assert_eq!(ok.count, 5),
        Nfs3Result::Err((s, _)) => panic!("WRITE resent: {s}"),
    }
    assert_eq!(srv.changes(), changes + 1, "a WRITE runs again");
    assert_eq!(
        read(&mut c, &fh, 0, 100).await.expect("read").0,
        b"\0\0\0hello".to_vec()
    );
    survivor.stop().await;
    srv.stop().await;
}
