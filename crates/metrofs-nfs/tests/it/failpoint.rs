//! The `METROFS_FAILPOINT=kill-before-reply:PROC:NAME` test hook, in a child process: the
//! change is applied, the process dies by SIGKILL, the client gets no reply.
//!
//! The child is this test binary run again on this same test with [`CHILD_STORE`] set: it
//! then serves the existing store until the failpoint kills it.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use metrofs_core::{Backend, SystemClock, ROOT_INO};
use metrofs_metro::Array;
use metrofs_nfs::NfsServer;
use metrofs_store::Store;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::tokio::TokioConnector;
use nfs3_client::Nfs3ConnectionBuilder;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::harness::*;
use crate::raw::{self, Raw};

/// Names the store directory of the child server; unset, the child test does nothing.
const CHILD_STORE: &str = "METROFS_TEST_FAILPOINT_CHILD_STORE";
/// Longest the child serves before giving up by itself (the failpoint should kill it first).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The child's part: serves the store in `dir` with the failpoint armed.
async fn serve_as_child(dir: String) {
    let store = Store::open(std::path::Path::new(&dir)).expect("open store");
    let array = Array::new(Arc::new(store), Arc::new(SystemClock));
    let mut spy = Spy::new(array);
    // What is applied must be found after the kill (the metro module of a pair makes
    // namespace changes durable before answering too).
    spy.durable = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Before serving: the failpoint is read (and checked) when the server is made.
    let server = NfsServer::new(Arc::new(spy));
    println!("PORT {port}");
    server
        .serve(listener, tokio::time::sleep(CHILD_LIFETIME))
        .await;
}

#[tokio::test]
async fn kill_before_reply_crashes_after_the_change() {
    if let Ok(dir) = std::env::var(CHILD_STORE) {
        serve_as_child(dir).await;
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = {
        let store = Store::open(dir.path()).expect("open store");
        let array = Array::new(Arc::new(store), Arc::new(SystemClock));
        let fs = array.create_fs("t", open_rules()).expect("create fs").id;
        array.sync().expect("sync");
        fs
    };
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "failpoint::kill_before_reply_crashes_after_the_change",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            metrofs_nfs::failpoint::ENV,
            "kill-before-reply:CREATE:victim.txt",
        )
        .env(CHILD_STORE, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the child server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = out.next_line().await.expect("child stdout") {
            // libtest's "test NAME ... " may precede it on the line.
            if let Some((_, p)) = line.rsplit_once("PORT ") {
                return p.parse().expect("a port");
            }
        }
        panic!("the child ended without serving");
    })
    .await
    .expect("the child serves within a minute");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    let c = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", "/t")
        .mount_port(port)
        .nfs3_port(port)
        .connect_from_privileged_port(false)
        .credential(cred(0, 0, &[]))
        .mount()
        .await
        .expect("mount");
    let rfh = root_fh(&c);
    let who = cred(0, 0, &[]);
    let create = |xid: u32, n: &str| {
        raw::record(&raw::call(
            xid,
            raw::NFS,
            3,
            8,
            &who,
            &CREATE3args {
                where_: diropargs3 {
                    dir: rfh.clone(),
                    name: filename3::from(n.as_bytes().to_vec()),
                },
                how: createhow3::GUARDED(sattr_mode(0o644)),
            },
        ))
    };
    let mut r = Raw::connect(addr).await;
    // Another name: answered, the process lives on.
    r.send(&create(1, "other.txt")).await;
    let ok = r.recv().await.expect("a reply for another name");
    assert!(matches!(raw::results::<CREATE3res>(&ok), Nfs3Result::Ok(_)));
    // The name: no reply, the connection dies with the process.
    r.send(&create(2, "victim.txt")).await;
    assert_eq!(
        r.recv_within(Duration::from_secs(30)).await,
        None,
        "no reply for the failpoint's change"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the child ends")
        .expect("wait");
    assert_eq!(
        status.signal(),
        Some(9),
        "killed by SIGKILL, not an exit: {status:?}"
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .await
        .expect("child stderr");
    assert!(
        err.contains("METROFS_FAILPOINT") && err.contains("victim.txt") && err.contains("Ok("),
        "the child said why it died, after the change answered Ok: {err}"
    );
    // The change was applied before the kill: both files are in the store.
    let store = Store::open(dir.path()).expect("reopen the store after the kill");
    let array = Array::new(Arc::new(store), Arc::new(SystemClock));
    for n in ["other.txt", "victim.txt"] {
        array
            .lookup(fs, ROOT_INO, n.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{n} is not in the store after the kill: {e}"));
    }
}
