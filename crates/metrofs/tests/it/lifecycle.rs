//! A graceful stop: SIGTERM → stop accepting, flush, exit 0; the data is there after a restart.

use nfs3_client::nfs3_types::nfs3::stable_how;

use crate::harness::ArrayProc;
use crate::nfs::{rt, Client, LOCALHOST};
use crate::{make_fs, tools};

#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut a = ArrayProc::start();
    make_fs(&a, "keep");
    let (status, health) = a.get("/api/health");
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["array"], "it");
    assert_eq!(h["file_systems"], 1);

    // UNSTABLE and never committed by the client: the stop's flush makes it durable.
    let root = rt().block_on(async {
        let mut c = Client::mount(a.nfs, "keep", LOCALHOST)
            .await
            .expect("mount");
        let root = c.root.clone();
        let fh = c.create(&root, "unstable.txt").await.expect("create");
        c.write(
            &fh,
            0,
            b"written UNSTABLE, flushed at stop\n",
            stable_how::UNSTABLE,
        )
        .await
        .expect("write");
        root
    });

    let status = a.stop();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        a.log()
    );
    assert!(a.log().contains("store flushed"), "{}", a.log());

    a.spawn();
    let out = tools::run_ok("nfs-cat", &[&a.url("keep", "unstable.txt")]);
    assert_eq!(out.stdout, b"written UNSTABLE, flushed at stop\n");
    rt().block_on(async {
        let mut c = Client::connect(a.nfs, LOCALHOST, root.clone())
            .await
            .expect("connect");
        c.getattr(&root)
            .await
            .expect("root handle valid after a restart");
    });
    let status = a.stop();
    assert!(status.success(), "{}", a.log());
}

#[test]
fn one_array_per_data_dir() {
    let a = ArrayProc::start();
    let second = a.tmp.path().join("second.toml");
    std::fs::write(
        &second,
        format!(
            "name = \"second\"\ndata_dir = \"{}\"\nnfs_listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\n",
            a.data_dir.display(),
            crate::harness::free_port(),
            crate::harness::free_port()
        ),
    )
    .expect("write config");
    let out = crate::harness::run_bin(
        &["array", "--config", &second.to_string_lossy()],
        a.tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", crate::harness::text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains("data_dir"), "{err}");
    // The first one is unharmed.
    assert_eq!(a.get("/api/health").0, 200);
}
