//! Export networks: a client outside them is refused at MOUNT and on every later call.
//!
//! The second client address is 127.0.0.2. Connecting *to* 127.0.0.2 does not do it (Linux
//! picks source 127.0.0.1 for every loopback destination: `ip route get 127.0.0.2` says
//! `src 127.0.0.1`), so the nfs3_client socket is bound to 127.0.0.2 before it connects, and
//! the connector asserts the source really is 127.0.0.2. libnfs's tools cannot choose their
//! source address, so they are the 127.0.0.1 client.

use nfs3_client::nfs3_types::nfs3::nfsstat3;
use nfs3_client::{ConnectError, MountError};

use crate::harness::{text, ArrayProc};
use crate::nfs::{rt, Client, Error, LOCALHOST, LOCALHOST2};
use crate::tools;

#[test]
fn client_outside_export_networks_is_refused() {
    let a = ArrayProc::start();
    a.cli_ok(&["fs", "create", "guarded"]);
    a.cli_ok(&[
        "export",
        "set",
        "guarded",
        "--clients",
        "127.0.0.2/32",
        "--rw",
        "--no-root-squash",
    ]);

    // libnfs from 127.0.0.1: refused at MOUNT.
    let out = tools::run("nfs-ls", &[&a.url("guarded", "")]);
    assert!(
        !out.status.success(),
        "nfs-ls from 127.0.0.1 was let in: {}",
        text(&out)
    );
    let src = a.tmp.path().join("x");
    std::fs::write(&src, b"x").expect("write");
    let out = tools::run("nfs-cp", &[&src.to_string_lossy(), &a.url("guarded", "x")]);
    assert!(
        !out.status.success(),
        "nfs-cp from 127.0.0.1 was let in: {}",
        text(&out)
    );

    rt().block_on(async {
        // nfs3_client from 127.0.0.1: MOUNT denied.
        match Client::mount(a.nfs, "guarded", LOCALHOST).await {
            Err(ConnectError::Mount(MountError::Denied(s))) => {
                eprintln!("MOUNT from 127.0.0.1 denied: {s}");
            }
            Err(e) => panic!("expected MOUNT to be denied, got {e}"),
            Ok(_) => panic!("MOUNT from 127.0.0.1 succeeded"),
        }

        // From 127.0.0.2: allowed, and it can work.
        let mut inside = Client::mount(a.nfs, "guarded", LOCALHOST2)
            .await
            .expect("mount from 127.0.0.2");
        let root = inside.root.clone();
        let fh = inside
            .create(&root, "from-2")
            .await
            .expect("create from 127.0.0.2");
        inside.getattr(&fh).await.expect("getattr from 127.0.0.2");

        // A handle obtained by the allowed client is refused to 127.0.0.1 on every call.
        let mut outside = Client::connect(a.nfs, LOCALHOST, root.clone())
            .await
            .expect("connect from 127.0.0.1");
        let refused = |r: Result<(), Error>, what: &str| {
            assert!(
                matches!(
                    r,
                    Err(Error::Nfs(nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM))
                ),
                "{what} from 127.0.0.1 with a valid handle: {r:?}"
            );
        };
        refused(outside.getattr(&root).await.map(|_| ()), "GETATTR");
        refused(outside.lookup(&root, "from-2").await.map(|_| ()), "LOOKUP");
        refused(outside.read(&fh, 0, 10).await.map(|_| ()), "READ");
        refused(
            outside.create(&root, "intruder").await.map(|_| ()),
            "CREATE",
        );
        refused(outside.remove(&root, "from-2").await, "REMOVE");
        assert!(
            matches!(
                inside.lookup(&root, "intruder").await,
                Err(Error::Nfs(nfsstat3::NFS3ERR_NOENT))
            ),
            "the refused CREATE left a file"
        );
        inside
            .lookup(&root, "from-2")
            .await
            .expect("the refused REMOVE removed the file");
    });

    // Rules apply to the next call: let 127.0.0.1 in, and libnfs works.
    a.cli_ok(&[
        "export",
        "set",
        "guarded",
        "--clients",
        "127.0.0.1/32,127.0.0.2/32",
        "--rw",
        "--no-root-squash",
    ]);
    let out = tools::run_ok("nfs-ls", &[&a.url("guarded", "")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-2"),
        "{}",
        text(&out)
    );
}
