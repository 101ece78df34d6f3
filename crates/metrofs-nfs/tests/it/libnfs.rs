//! Interoperability with a client nobody here wrote: Debian's libnfs tools (libnfs-utils).

use nfs3_client::nfs3_types::nfs3::*;
use tokio::process::Command;

use crate::harness::*;

fn url(srv: &Server, path: &str) -> String {
    format!(
        "nfs://127.0.0.1/t{path}?nfsport={0}&mountport={0}&version=3",
        srv.port
    )
}

async fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool} not runnable ({e}): install Debian's libnfs-utils"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_cp_and_nfs_ls_round_trip() {
    let srv = Server::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src.bin");
    let data: Vec<u8> = (0..(24u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).expect("write source");

    // A file in the root, and in a subdirectory (libnfs then mounts /t/sub).
    let mut c = root(&srv).await;
    let rfh = root_fh(&c);
    let (sub, _) = mkdir(&mut c, &rfh, "sub", 0o755).await.expect("mkdir");
    for i in 0..20 {
        create(&mut c, &sub, &format!("small-{i}"))
            .await
            .expect("create");
    }
    let s = src.to_str().expect("utf-8 path");
    run("nfs-cp", &[s, &url(&srv, "/big.bin")]).await;
    run("nfs-cp", &[s, &url(&srv, "/sub/copy.bin")]).await;
    let (fh, a) = lookup(&mut c, &rfh, "big.bin").await.expect("lookup");
    assert_eq!(a.size, data.len() as u64);
    let (head, _) = read(&mut c, &fh, 0, 4096).await.expect("read");
    assert_eq!(head, data[..4096]);

    for (remote, local) in [("/big.bin", "back1.bin"), ("/sub/copy.bin", "back2.bin")] {
        let back = tmp.path().join(local);
        run(
            "nfs-cp",
            &[&url(&srv, remote), back.to_str().expect("utf-8 path")],
        )
        .await;
        assert!(
            std::fs::read(&back).expect("read back") == data,
            "{remote} round trip"
        );
    }

    let listing = run("nfs-ls", &[&url(&srv, "/sub")]).await;
    for i in 0..20 {
        assert!(
            listing.contains(&format!("small-{i}")),
            "nfs-ls shows small-{i}:\n{listing}"
        );
    }
    assert!(listing.contains("copy.bin"));
    // The store's view agrees.
    let got = lookup(&mut c, &sub, "copy.bin").await.expect("lookup").1;
    assert_eq!((got.type_, got.size), (ftype3::NF3REG, data.len() as u64));
    srv.stop().await;
}
