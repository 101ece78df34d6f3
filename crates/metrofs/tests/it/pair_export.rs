//! Export rules of a paired file system with the real binary: `PUT /api/fs/NAME/export` on
//! either array sets them on both while the link is up; while the peer is down the serving
//! array sets them alone and its twin gets them when it returns; the secondary refuses while
//! it cannot reach the serving array (409, naming it), through the API and the CLI.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{text, ArrayProc, PairProcs};
use crate::pair::{show, wait_state, NORMAL_WAIT_MS};
use crate::{make_fs, pair_create_normal};

/// The body of `PUT /api/fs/NAME/export` for one network.
fn body(net: &str, read_only: bool) -> String {
    format!(r#"{{"clients":["{net}"],"read_only":{read_only},"root_squash":false}}"#)
}

fn put_export(a: &ArrayProc, fs: &str, net: &str, read_only: bool) -> (u16, Value) {
    let (status, b) = a.call("PUT", &format!("/api/fs/{fs}/export"), Some(&body(net, read_only)));
    (status, serde_json::from_str(&b).unwrap_or_else(|e| panic!("json answer ({e}): {b}")))
}

/// `GET /api/fs/NAME/export`: (clients, read_only).
fn export_of(a: &ArrayProc, fs: &str) -> (Vec<String>, bool) {
    let (status, b) = a.get(&format!("/api/fs/{fs}/export"));
    assert_eq!(status, 200, "{b}");
    let v: Value = serde_json::from_str(&b).expect("json");
    let clients = v["clients"].as_array().expect("clients").iter().map(|c| c.as_str().expect("cidr").to_owned()).collect();
    (clients, v["read_only"].as_bool().expect("read_only"))
}

fn want(net: &str, read_only: bool) -> (Vec<String>, bool) {
    (vec![net.to_owned()], read_only)
}

/// Polls until `ok` holds, for up to `ms`.
fn wait_until(what: &str, ms: u64, mut ok: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while !ok() {
        assert!(Instant::now() < deadline, "not {what} after {ms} ms\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn export_rules_reach_the_twin_with_the_link_up_and_after_a_restart() {
    let mut p = PairProcs::start(false);
    make_fs(&p.a, "ex");
    let id = pair_create_normal(&p.a, "ex");
    // The twin was created with the rules of its fs.
    assert_eq!(export_of(&p.b, "ex"), want("127.0.0.0/8", false));

    // (a) On the serving side: the peer shows the same rules.
    let (status, v) = put_export(&p.a, "ex", "127.0.0.0/8", true);
    assert_eq!(status, 200, "{v}");
    assert_eq!(export_of(&p.b, "ex"), want("127.0.0.0/8", true));
    // On the secondary with the link up: both have them.
    let (status, v) = put_export(&p.b, "ex", "127.0.0.0/16", false);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["export"]["clients"][0], "127.0.0.0/16", "{v}");
    assert_eq!(export_of(&p.a, "ex"), want("127.0.0.0/16", false));
    assert_eq!(export_of(&p.b, "ex"), want("127.0.0.0/16", false));

    // (b) The peer is killed; the serving side changes them alone.
    p.b.kill9();
    wait_until("link Down on site-a", 10_000, || show(&p.a, &id)["link"] == "Down", || p.a.log());
    let (status, v) = put_export(&p.a, "ex", "127.0.0.1/32", true);
    assert_eq!(status, 200, "the serving side changes them while the peer is down: {v}");
    assert_eq!(export_of(&p.a, "ex"), want("127.0.0.1/32", true));
    // The peer returns: once Normal (and the rules sent after its Hello), it has them.
    p.b.spawn();
    wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    wait_until(
        "the twin's rules those of the serving side",
        10_000,
        || export_of(&p.b, "ex") == want("127.0.0.1/32", true),
        || format!("--- site-a:\n{}\n--- site-b:\n{}", p.a.log(), p.b.log()),
    );
    assert!(p.b.log().contains("export rules changed"), "the twin logs the change:\n{}", p.b.log());
}

#[test]
fn the_secondary_refuses_export_changes_while_the_serving_array_is_down() {
    let mut p = PairProcs::start(false);
    make_fs(&p.a, "ex");
    let id = pair_create_normal(&p.a, "ex");
    let before = export_of(&p.b, "ex");

    // (c) The serving array is killed: the secondary cannot reach it.
    p.a.kill9();
    wait_until("link Down on site-b", 10_000, || show(&p.b, &id)["link"] == "Down", || p.b.log());
    let (status, v) = put_export(&p.b, "ex", "127.0.0.1/32", true);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["code"], "export_on_serving_side", "{v}");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("secondary") && message.contains("site-a") && message.contains("Nothing was changed"),
        "the message says which array serves the pair: {message}"
    );
    assert_eq!(export_of(&p.b, "ex"), before, "nothing changed on the secondary");
    // The CLI says the same, and fails.
    let out = p.b.cli(&["export", "set", "ex", "--clients", "127.0.0.1/32", "--ro", "--no-root-squash"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("change the export rules on site-a"), "{}", text(&out));

    // The serving array returns: the pair is Normal and both have the rules they had.
    p.a.spawn();
    wait_state(&p.a, &id, "Normal", NORMAL_WAIT_MS);
    assert_eq!(export_of(&p.a, "ex"), before);
    assert_eq!(export_of(&p.b, "ex"), before);
}
