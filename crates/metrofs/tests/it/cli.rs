//! The operator CLI against a running array: fs create / list / show / delete, export set,
//! and wrong input (clear message, non-zero exit, nothing changed).

use crate::harness::{free_port, text, ArrayProc};
use crate::tools;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `fs show NAME --json`, parsed.
fn show(a: &ArrayProc, name: &str) -> serde_json::Value {
    serde_json::from_str(&a.cli_ok(&["fs", "show", name, "--json"])).expect("json")
}

#[test]
fn fs_and_export_commands() {
    let a = ArrayProc::start();
    assert!(a.cli_ok(&["fs", "list"]).contains("no file systems"));

    let out = a.cli_ok(&["fs", "create", "alpha"]);
    assert!(
        out.contains("created file system alpha") && out.contains("/alpha"),
        "{out}"
    );
    a.cli_ok(&["fs", "create", "beta"]);
    let list = a.cli_ok(&["fs", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("NAME"), "{list}");
    assert!(
        lines[1].starts_with("alpha")
            && lines[1].contains("127.0.0.0/8")
            && lines[1].contains("rw"),
        "{list}"
    );
    assert!(lines[2].starts_with("beta"), "{list}");

    // Defaults: loopback, read-write, root squashed.
    let alpha = show(&a, "alpha");
    assert_eq!(
        alpha["export"]["clients"],
        serde_json::json!(["127.0.0.0/8"])
    );
    assert_eq!(alpha["export"]["read_only"], false);
    assert_eq!(alpha["export"]["root_squash"], true);

    let out = a.cli_ok(&[
        "export",
        "set",
        "alpha",
        "--clients",
        "10.0.0.0/8,127.0.0.1",
        "--ro",
        "--no-root-squash",
    ]);
    assert!(
        out.contains("10.0.0.0/8,127.0.0.1/32 (read-only, no root squash)"),
        "{out}"
    );
    let alpha2 = show(&a, "alpha");
    assert_eq!(
        alpha2["export"]["clients"],
        serde_json::json!(["10.0.0.0/8", "127.0.0.1/32"])
    );
    assert_eq!(alpha2["export"]["read_only"], true);
    assert_eq!(alpha2["export"]["root_squash"], false);
    assert_eq!(alpha2["id"], alpha["id"], "the fs id never changes");

    // The same through the API.
    let (status, body) = a.get("/api/fs/alpha");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("json"),
        alpha2
    );

    let out = a.cli_ok(&["fs", "delete", "beta"]);
    assert!(out.contains("deleted file system beta"), "{out}");
    let list = a.cli_ok(&["fs", "list", "--json"]);
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&list)
        .expect("json")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["alpha"]);
    // A deleted fs is no longer mountable.
    let out = tools::run("nfs-ls", &[&a.url("beta", "")]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn wrong_input_changes_nothing() {
    let a = ArrayProc::start();
    a.cli_ok(&["fs", "create", "alpha"]);
    let before = show(&a, "alpha");

    // Duplicate name: refused by the array (exit 1).
    let out = a.cli(&["fs", "create", "alpha"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("already exists"), "{}", text(&out));

    // Bad names.
    for bad in ["bad name", ".hidden", "a/b", &"x".repeat(65)] {
        let out = a.cli(&["fs", "create", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(
            stderr(&out).contains("invalid file system name"),
            "{}",
            text(&out)
        );
    }

    // Bad CIDRs: refused before anything is sent (exit 2), naming the value.
    for bad in ["10.0.0.0/33", "300.1.2.3/8", "nonsense", "10.0.0.0/8,"] {
        let out = a.cli(&[
            "export",
            "set",
            "alpha",
            "--clients",
            bad,
            "--rw",
            "--root-squash",
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(stderr(&out).contains("--clients"), "{}", text(&out));
    }
    // Neither --rw nor --ro; both.
    let out = a.cli(&[
        "export",
        "set",
        "alpha",
        "--clients",
        "10.0.0.0/8",
        "--root-squash",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = a.cli(&[
        "export",
        "set",
        "alpha",
        "--clients",
        "10.0.0.0/8",
        "--rw",
        "--ro",
        "--root-squash",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Unknown fs.
    let out = a.cli(&[
        "export",
        "set",
        "nope",
        "--clients",
        "10.0.0.0/8",
        "--rw",
        "--root-squash",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("'nope' does not exist") && stderr(&out).contains("hint:"),
        "{}",
        text(&out)
    );
    for args in [["fs", "delete", "nope"], ["fs", "show", "nope"]] {
        let out = a.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            stderr(&out).contains("'nope' does not exist"),
            "{}",
            text(&out)
        );
    }

    // The API itself refuses bad bodies with a JSON error.
    let (s, body) = a.call(
        "PUT",
        "/api/fs/alpha/export",
        Some(r#"{"clients":["10.0.0.0/40"],"read_only":false,"root_squash":true}"#),
    );
    assert_eq!(s, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(e["code"], "invalid_cidr");
    assert!(e["message"]
        .as_str()
        .expect("message")
        .contains("10.0.0.0/40"));
    assert!(!e["hint"].as_str().expect("hint").is_empty());
    let (s, body) = a.call("POST", "/api/fs", Some(r#"{"nme":"x"}"#));
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("\"bad_request\"") && body.contains("nme"),
        "{body}"
    );
    let (s, body) = a.call("POST", "/api/fs", Some("not json"));
    assert_eq!(s, 400, "{body}");
    let (s, body) = a.get("/api/nothing");
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("\"no_route\""), "{body}");
    let (s, body) = a.call("PATCH", "/api/fs", None);
    assert_eq!(s, 405, "{body}");
    assert!(body.contains("\"method_not_allowed\""), "{body}");

    // Nothing changed.
    assert_eq!(show(&a, "alpha"), before);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&a.cli_ok(&["fs", "list", "--json"])).expect("json");
    assert_eq!(list.len(), 1);
}

#[test]
fn unreachable_or_wrong_api() {
    let tmp = tempfile::tempdir().expect("tmp");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out = crate::harness::run_bin(&["fs", "list", "--api", &nobody], tmp.path());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("cannot reach the metrofs API"),
        "{}",
        text(&out)
    );
    let out = crate::harness::run_bin(&["fs", "list", "--api", "ftp://127.0.0.1:1"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("invalid --api URL"), "{}", text(&out));
}
