//! A wrong or missing key is refused at start: non-zero exit, the key named.

use std::fs;

use crate::harness::{free_port, run_bin, text};

/// Runs `metrofs array --config FILE [extra...]` with `body` as the file; returns
/// (exit code, stderr).
fn start_with(body: &str, extra: &[&str]) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("bad.toml");
    fs::write(&cfg, body).expect("write config");
    let cfg = cfg.to_string_lossy().into_owned();
    let mut args = vec!["array", "--config", cfg.as_str()];
    args.extend_from_slice(extra);
    let out = run_bin(&args, tmp.path());
    assert!(
        !out.status.success(),
        "started with a bad config:\n{}",
        text(&out)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn base(data: &str) -> String {
    format!(
        "name = \"t\"\ndata_dir = \"{data}\"\nnfs_listen = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\n",
        free_port(),
        free_port()
    )
}

#[test]
fn unknown_key_is_refused_by_name() {
    let (code, err) = start_with(
        &format!("{}sync_intervall_ms = 5\n", base("/nonexistent/d")),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sync_intervall_ms"), "{err}");
    assert!(err.contains("expected one of"), "{err}");
    let (code, err) = start_with(
        &format!(
            "{}[log]\nlevel = \"info\"\ncolour = true\n",
            base("/nonexistent/d")
        ),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn missing_key_is_refused_by_name() {
    let (code, err) = start_with("data_dir = \"/nonexistent/d\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`name`"), "{err}");
    let (code, err) = start_with("name = \"t\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`data_dir`"), "{err}");
}

#[test]
fn bad_values_are_refused_by_name() {
    let (code, err) = start_with(
        "name = \"t\"\ndata_dir = \"/nonexistent/d\"\nnfs_listen = \"nfs.example:2049\"\n",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nfs_listen") && err.contains("IP:PORT"),
        "{err}"
    );
    let (code, err) = start_with(&base("/nonexistent/d"), &["--api-listen", "127.0.0.1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("api_listen"), "{err}");
    let (code, err) = start_with(
        &format!("{}sync_interval_ms = -1\n", base("/nonexistent/d")),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sync_interval_ms"), "{err}");
    let (code, err) = start_with(
        "name = \"t\"\ndata_dir = \"/d\"\n[log]\nlevel = \"chatty\"\n",
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("log.level"), "{err}");
    let (code, err) = start_with("name = \"t\"\ndata_dir = [\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data_dir") || err.contains("line"), "{err}");
}

#[test]
fn missing_file_and_taken_port() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = run_bin(
        &["array", "--config", "/nonexistent/metrofs.toml"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/metrofs.toml"),
        "{}",
        text(&out)
    );

    // A port another process holds: refused at start, naming the key.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("addr").to_string();
    let data = tmp.path().join("data");
    let (code, err) = start_with(&base(&data.to_string_lossy()), &["--nfs-listen", &taken]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nfs_listen") && err.contains(&taken), "{err}");
}

/// The pair's sections, with `secret` as the secret file and `link` as the link address.
fn pair_sections(secret: &str, link: &str) -> String {
    format!(
        "[domain]\nname = \"d\"\npreferred = true\n[peer]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n[link]\nlisten = \"{link}\"\nsecret_file = \"{secret}\"\n"
    )
}

#[test]
fn pair_sections_are_checked_at_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let data = data.to_string_lossy();
    let secret = tmp.path().join("secret");

    // No secret file: refused, naming the key and how to make one.
    let link = format!("127.0.0.1:{}", free_port());
    let (code, err) = start_with(
        &format!(
            "{}{}",
            base(&data),
            pair_sections(&secret.to_string_lossy(), &link)
        ),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("link.secret_file")
            && err.contains("head -c 32 /dev/urandom > FILE; chmod 600 FILE"),
        "{err}"
    );
    // Too short.
    fs::write(&secret, b"short").expect("write");
    let (code, err) = start_with(
        &format!(
            "{}{}",
            base(&data),
            pair_sections(&secret.to_string_lossy(), &link)
        ),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("link.secret_file") && err.contains("5 bytes"),
        "{err}"
    );

    // A section alone, or a [peer] without [link]: the missing one is named.
    let (code, err) = start_with(
        &format!("{}[link]\nlisten = \"{link}\"\n", base(&data)),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`peer`"), "{err}");
    let (code, err) = start_with(
        &format!("{}[peer]\nname = \"b\"\naddress = \"h:1\"\n", base(&data)),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`link`"), "{err}");

    // A taken link port: refused at start, naming link.listen.
    fs::write(&secret, [7u8; 32]).expect("write");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("addr").to_string();
    let (code, err) = start_with(
        &format!(
            "{}{}",
            base(&data),
            pair_sections(&secret.to_string_lossy(), &taken)
        ),
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("link.listen") && err.contains(&taken), "{err}");
}
