//! The operator surface through the CLI and the raw API: every command on a live pair, wrong
//! states and wrong input (a clear message, a non-zero exit, nothing changed), the token
//! rules, alarms raised and cleared, the event log with `--follow`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{text, ArrayProc, PairProcs, BIN};
use crate::make_fs;

/// How long a new pair of an empty fs may take to become Normal.
const NORMAL_WAIT_S: &str = "60";

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI on `a`, expects exit `code`, returns stderr.
fn fails(a: &ArrayProc, args: &[&str], code: i32) -> String {
    let out = a.cli(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "metrofs {args:?}: {}",
        text(&out)
    );
    stderr(&out)
}

/// `pair create FS --remote site-b --wait --json` on `a`: the Normal pair's id.
fn normal_pair(a: &ArrayProc, fs: &str) -> String {
    make_fs(a, fs);
    let v = parse(&a.cli_ok(&[
        "pair",
        "create",
        fs,
        "--remote",
        "site-b",
        "--wait",
        "--timeout",
        NORMAL_WAIT_S,
        "--json",
    ]));
    assert_eq!(v["state"], "Normal", "{v:#}");
    assert_eq!(v["serving"], "site-a");
    v["id"].as_str().expect("id").to_owned()
}

fn show(a: &ArrayProc, id: &str) -> Value {
    parse(&a.cli_ok(&["pair", "show", id, "--json"]))
}

fn events(a: &ArrayProc) -> Vec<Value> {
    parse(&a.cli_ok(&["events", "--limit", "1000", "--json"]))
        .as_array()
        .expect("array")
        .clone()
}

/// Waits until `f` holds, or fails with `what`.
fn eventually(what: &str, ms: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while !f() {
        assert!(Instant::now() < deadline, "{what} not seen within {ms} ms");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alarm_ids(a: &ArrayProc) -> Vec<String> {
    parse(&a.cli_ok(&["alarms", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn every_read_command_on_a_pair() {
    let p = PairProcs::start_with("");
    let id = normal_pair(&p.a, "p");

    // status: the domain at a glance.
    let st = p.a.cli_ok(&["status"]);
    for want in [
        "metrofs status, as site-a sees it",
        "domain it: preferred site site-a",
        "link:   site-a <-> site-b: Up",
        "quorum: static-priority",
        &id,
        "Normal",
        "alarms:",
        "dual writes:",
    ] {
        assert!(st.contains(want), "{want:?} not in status:\n{st}");
    }
    let sj = parse(&p.a.cli_ok(&["status", "--json"]));
    assert_eq!(sj["array"], "site-a");
    assert_eq!(sj["domain"]["name"], "it");
    assert_eq!(sj["domain"]["arrays"].as_array().expect("arrays").len(), 2);
    assert_eq!(sj["domain"]["arrays"][1]["name"], "site-b");
    assert_eq!(sj["domain"]["arrays"][1]["state"], "Up");
    assert_eq!(sj["domain"]["link"]["state"], "Up");
    assert_eq!(sj["pairs"][0]["id"], id.as_str());
    assert_eq!(sj["pairs"][0]["serving"], "site-a");
    // The secondary sees the same pair and who serves it.
    let sb = parse(&p.b.cli_ok(&["status", "--json"]));
    assert_eq!(sb["pairs"][0]["serving"], "site-a");
    assert_eq!(sb["pairs"][0]["role"], "Secondary");

    let d = p.a.cli_ok(&["domain"]);
    assert!(
        d.contains("domain it") && d.contains("site-b") && d.contains("PREFERRED"),
        "{d}"
    );
    let dj = parse(&p.a.cli_ok(&["domain", "--json"]));
    assert_eq!(dj["preferred_site"], "site-a");
    let arrays = p.a.cli_ok(&["arrays"]);
    let lines: Vec<&str> = arrays.lines().collect();
    assert_eq!(lines.len(), 3, "{arrays}");
    assert!(
        lines[1].starts_with("site-a") && lines[1].contains("this") && lines[1].contains(" p "),
        "{arrays}"
    );
    assert!(
        lines[2].starts_with("site-b") && lines[2].contains("peer"),
        "{arrays}"
    );
    let h = parse(&p.a.cli_ok(&["health", "--json"]));
    assert_eq!(h["link"], "Up");
    assert!(h["token_file"]
        .as_str()
        .expect("token file")
        .ends_with("api.token"));
    assert!(p.b.cli_ok(&["health"]).contains("site-b is up"));

    let ex = p.a.cli_ok(&["export", "list"]);
    assert!(
        ex.contains("/p") && ex.contains("127.0.0.0/8") && ex.contains("no_squash"),
        "{ex}"
    );
    let e = parse(&p.a.cli_ok(&["export", "show", "p", "--json"]));
    assert_eq!(e["path"], "/p");
    let detail = p.a.cli_ok(&["pair", "show", &id]);
    for want in [
        "state:          Normal",
        "serving:        site-a",
        "arbitration:    ",
        "state since:",
    ] {
        assert!(detail.contains(want), "{want:?} not in\n{detail}");
    }
    // `--wait` on a Normal pair returns at once.
    assert!(p
        .a
        .cli_ok(&["pair", "show", &id, "--wait"])
        .contains("state:          Normal"));
    assert!(p.a.cli_ok(&["pair", "list"]).contains(&id));

    let m = p.a.cli_ok(&["metrics"]);
    assert!(
        m.contains(&format!(
            "metrofs_pair_state{{pair=\"{id}\",fs=\"p\",state=\"Normal\"}} 1"
        )),
        "{m}"
    );
    assert!(m.contains("metrofs_link_up{peer=\"site-b\"} 1"), "{m}");
    let doc = parse(&p.a.cli_ok(&["openapi"]));
    assert!(doc["paths"]["/api/pairs/{id}/swap"]["post"].is_object());

    // The operator actions so far are in the event log, with who did them.
    let ev = events(&p.a);
    let created = ev
        .iter()
        .find(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("created pair"))
        })
        .unwrap_or_else(|| panic!("no pair creation event: {ev:#?}"));
    assert_eq!(created["kind"], "operator");
    assert_eq!(created["pair"], id.as_str());
    // Once: the creation is not recorded a second time by the array itself.
    let creations = ev
        .iter()
        .filter(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.contains("created pair") || t.starts_with("pair created"))
        })
        .count();
    assert_eq!(creations, 1, "{ev:#?}");
    let actor = created["actor"].as_str().expect("actor");
    assert!(
        actor.starts_with("cli:") && actor.ends_with("@127.0.0.1"),
        "{actor}"
    );
    assert!(
        ev.iter().any(|e| e["text"] == "created file system p"),
        "{ev:#?}"
    );
    let table = p.a.cli_ok(&["events"]);
    assert!(
        table.starts_with("ID") && table.contains("created file system p"),
        "{table}"
    );
    let two = parse(&p.a.cli_ok(&["events", "--limit", "2", "--json"]));
    assert_eq!(two.as_array().expect("array").len(), 2);
}

#[test]
fn pair_actions_in_wrong_states_change_nothing_then_work() {
    let p = PairProcs::start_with("[alarms]\nnot_normal_s_max = 1\n");
    let id = normal_pair(&p.a, "w");
    let before = show(&p.a, &id);

    // Wrong state: resume of a Normal pair.
    let e = fails(&p.a, &["pair", "resume", &id], 1);
    assert!(
        e.contains("the pair is Normal") && e.contains("hint:"),
        "{e}"
    );
    // Force start: not confirmed, nothing sent; confirmed but the peer is reachable: refused.
    let e = fails(&p.a, &["pair", "force-start", &id], 2);
    assert!(e.contains("--yes") && e.contains("nothing was sent"), "{e}");
    assert!(
        !events(&p.a).iter().any(|x| x["text"]
            .as_str()
            .is_some_and(|t| t.contains("force start"))),
        "an unconfirmed force start reached the array"
    );
    let e = fails(
        &p.a,
        &["pair", "force-start", &id, "--yes", "--reason", "drill"],
        1,
    );
    assert!(e.contains("reachable"), "{e}");
    // Refused, it is recorded once, as the operator's action, with who and why.
    let refused: Vec<Value> = events(&p.a)
        .into_iter()
        .filter(|x| {
            x["text"]
                .as_str()
                .is_some_and(|t| t.contains("force start"))
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["kind"], "operator", "{refused:#?}");
    let t = refused[0]["text"].as_str().expect("text");
    assert!(
        t.starts_with(&format!("force start of pair {id} refused: "))
            && t.ends_with("; reason: drill"),
        "{t}"
    );
    assert!(
        refused[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("cli:")),
        "{refused:#?}"
    );
    // A reason that is too long is a wrong command line: nothing is sent.
    let long = "x".repeat(201);
    let e = fails(&p.a, &["pair", "pause", &id, "--reason", &long], 2);
    assert!(e.contains("at most 200 characters"), "{e}");
    // Wrong input.
    let e = fails(&p.a, &["pair", "show", "not-hex"], 1);
    assert!(e.contains("not a pair id"), "{e}");
    let e = fails(&p.a, &["pair", "pause", "0000000000000001"], 1);
    assert!(e.contains("does not exist"), "{e}");
    fails(&p.a, &["pair", "swap"], 2);
    fails(&p.a, &["pair", "show", &id, "--timeout", "5"], 2);
    fails(&p.a, &["events", "--limit", "0"], 2);
    // The secondary refuses to delete (and says where to go).
    let e = fails(&p.b, &["pair", "delete", &id], 1);
    assert!(e.contains("secondary"), "{e}");
    let now = show(&p.a, &id);
    for k in ["state", "serving", "epoch", "forced"] {
        assert_eq!(now[k], before[k], "{k} changed");
    }

    // Pause; swap is refused while Paused; the not-Normal alarm comes within seconds.
    let last = events(&p.a)
        .last()
        .and_then(|e| e["id"].as_u64())
        .expect("events");
    let out =
        p.a.cli_ok(&["pair", "pause", &id, "--reason", "peer maintenance\tCHG-7"]);
    assert!(out.contains("is Paused"), "{out}");
    // The action is recorded once (the state change it made is the array's own event).
    let paused: Vec<Value> = events(&p.a)
        .into_iter()
        .filter(|x| x["id"].as_u64().is_some_and(|i| i > last) && x["kind"] == "operator")
        .collect();
    assert_eq!(paused.len(), 1, "the pause is recorded once: {paused:#?}");
    assert!(
        paused[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("cli:")),
        "{paused:#?}"
    );
    assert_eq!(paused[0]["kind"], "operator");
    assert_eq!(paused[0]["pair"], id.as_str());
    assert!(
        paused[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("done, state Paused")
                && t.ends_with("; reason: peer maintenance CHG-7")),
        "{paused:#?}"
    );
    let e = fails(&p.a, &["pair", "swap", &id], 1);
    assert!(
        e.contains("Paused") && e.contains("swap needs Normal"),
        "{e}"
    );
    assert_eq!(show(&p.a, &id)["serving"], "site-a");
    let alarm = format!("not_normal:{id}");
    eventually("the not-Normal alarm", 10_000, || {
        alarm_ids(&p.a).contains(&alarm)
    });
    let human = p.a.cli_ok(&["alarms"]);
    assert!(
        human.contains("has been Paused for") && human.contains("hint: resume"),
        "{human}"
    );
    assert!(p.a.cli_ok(&["status"]).contains("has been Paused for"));

    // Resume with a progress wait; the alarm clears by itself.
    let out =
        p.a.cli_ok(&["pair", "resume", &id, "--wait", "--timeout", NORMAL_WAIT_S]);
    assert!(out.contains("is Normal"), "{out}");
    eventually("the alarm cleared", 10_000, || {
        !alarm_ids(&p.a).contains(&alarm)
    });
    let ev = events(&p.a);
    for want in [
        "alarm raised (warning): pair",
        "alarm cleared (warning): pair",
    ] {
        assert!(
            ev.iter()
                .any(|e| e["kind"] == "alarm"
                    && e["text"].as_str().is_some_and(|t| t.starts_with(want))),
            "{want:?} not in {ev:#?}"
        );
    }
    assert!(ev.iter().any(|e| e["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("pause of pair"))
        && e["kind"] == "operator"));

    // Verify, with files to compare; the pair view shows its progress (here its result).
    assert!(
        show(&p.a, &id)["verify"].is_null(),
        "no verify ran yet on site-a"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, len) in [("big", 3 << 20), ("small", 70_000)] {
        let local = tmp.path().join(name);
        std::fs::write(&local, crate::tools::pattern(len as u64, len)).expect("write");
        crate::tools::run_ok("nfs-cp", &[&local.to_string_lossy(), &p.a.url("w", name)]);
    }
    let out = p.a.cli_ok(&["pair", "verify", &id]);
    assert!(out.contains("both sides are identical"), "{out}");
    // --progress without a terminal: progress on stderr, stdout stays one JSON document.
    let out = p.a.cli(&["pair", "verify", &id, "--progress", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let r = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r["differences"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["inodes_compared"], 3, "root and two files: {r:#}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "pair {id}: verify Done (3 of 3 inodes, 3.1 MiB compared)"
        )),
        "no result line on stderr: {err}"
    );
    let v = show(&p.a, &id)["verify"].clone();
    assert_eq!(v["status"], "Done", "{v:#}");
    assert_eq!(v["inodes_total"], 3, "{v:#}");
    assert_eq!(v["inodes_done"], v["inodes_total"], "{v:#}");
    assert_eq!(v["done_bytes"], v["total_bytes"], "{v:#}");
    assert_eq!(v["total_bytes"], (3 << 20) + 70_000, "{v:#}");
    assert_eq!(v["percent"], 100.0, "{v:#}");
    assert!(v["eta_s"].is_null(), "{v:#}");
    let human = p.a.cli_ok(&["pair", "show", &id]);
    assert!(
        human.contains("verify:         Done (3 of 3 inodes, 3.1 MiB compared)"),
        "{human}"
    );
    // Without a terminal and without --progress, nothing but the answer.
    let out = p.a.cli(&["pair", "verify", &id, "--json"]);
    assert!(
        out.status.success() && stderr(&out).is_empty(),
        "{}",
        text(&out)
    );

    // Swap to site-b and back (asked on the secondary, it is forwarded).
    let before = events(&p.a)
        .last()
        .and_then(|e| e["id"].as_u64())
        .expect("events");
    let v = parse(&p.a.cli_ok(&["pair", "swap", &id, "--json"]));
    assert_eq!(show(&p.b, &id)["serving"], "site-b", "after swap: {v:#}");
    // The swap itself is the array's event (kind swap, actor metro), on each array; the
    // operator's action is one operator event, by the CLI.
    let new: Vec<Value> = events(&p.a)
        .into_iter()
        .filter(|e| e["id"].as_u64().is_some_and(|i| i > before))
        .collect();
    let swaps: Vec<&Value> = new.iter().filter(|e| e["kind"] == "swap").collect();
    assert_eq!(swaps.len(), 1, "{new:#?}");
    assert_eq!(swaps[0]["actor"], "metro", "{new:#?}");
    assert!(
        swaps[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("planned swap") && t.contains("site-b")),
        "{new:#?}"
    );
    let asked: Vec<&Value> = new
        .iter()
        .filter(|e| {
            e["kind"] == "operator" && e["actor"].as_str().is_some_and(|a| a.starts_with("cli:"))
        })
        .collect();
    assert_eq!(asked.len(), 1, "{new:#?}");
    assert!(
        asked[0]["text"].as_str().is_some_and(
            |t| t.starts_with(&format!("swap of pair {id}")) && t.contains("site-b serves")
        ),
        "{new:#?}"
    );
    p.a.cli_ok(&["pair", "swap", &id]);
    eventually("site-a serving again", 20_000, || {
        show(&p.a, &id)["serving"] == "site-a"
    });

    // Delete on the serving side.
    let out = p.a.cli_ok(&["pair", "delete", &id]);
    assert!(out.contains("independent"), "{out}");
    assert!(p.a.cli_ok(&["pair", "list"]).contains("no pairs"));
}

#[test]
fn the_token_rules() {
    let a = ArrayProc::start();
    let token = a.token().expect("the array made its token file");
    assert_eq!(token.len(), 64);
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(a.data_dir.join("api.token"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);

    // Raw API: changes need the token, reads from loopback do not.
    let (s, body) = a.call_with("POST", "/api/fs", Some(r#"{"name":"x"}"#), None);
    assert_eq!(s, 401, "{body}");
    let e = parse(&body);
    assert_eq!(e["code"], "unauthorized");
    assert!(e["hint"].as_str().expect("hint").contains("api.token"));
    let (s, _) = a.call_with(
        "POST",
        "/api/fs",
        Some(r#"{"name":"x"}"#),
        Some("0123456789abcdef0123456789"),
    );
    assert_eq!(s, 401);
    let (s, _) = a.call_with("DELETE", "/api/fs/x", None, None);
    assert_eq!(s, 401);
    let (s, body) = a.call_with("GET", "/api/fs", None, None);
    assert_eq!((s, body.as_str()), (200, "[]"));

    // CLI: a token file that does not exist, a wrong one, a wrong METROFS_TOKEN: exit 4.
    let wrong = a.tmp.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token-at-all\n").expect("write");
    let missing = a.tmp.path().join("missing.token");
    for (args, want) in [
        (
            vec![
                "fs",
                "create",
                "x",
                "--token-file",
                missing.to_str().expect("utf8"),
            ],
            "cannot read --token-file",
        ),
        (
            vec![
                "fs",
                "create",
                "x",
                "--token-file",
                wrong.to_str().expect("utf8"),
            ],
            "wrong API token",
        ),
    ] {
        let e = fails(&a, &args, 4);
        assert!(e.contains(want), "{e}");
    }
    let out = Command::new(BIN)
        .args(["fs", "create", "x", "--api", &a.api_url()])
        .env("METROFS_TOKEN", "also-not-the-token")
        .env_remove("METROFS_TOKEN_FILE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    // Nothing was created; with the token found by itself (root reads the array's file), it works.
    assert!(a.cli_ok(&["fs", "list"]).contains("no file systems"));
    a.cli_ok(&["fs", "create", "x"]);
    let out = Command::new(BIN)
        .args(["fs", "delete", "x", "--api", &a.api_url()])
        .env("METROFS_TOKEN", &token)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));

    // An array whose reads are not open to loopback: reads need the token too, except the
    // health check, the OpenAPI document and the dashboard's files; the CLI finds the token.
    let mut closed = ArrayProc::configured("closed", |_| "[api]\nread_open_to = []\n".into());
    closed.spawn();
    let (s, _) = closed.call_with("GET", "/api/fs", None, None);
    assert_eq!(s, 401);
    let (s, _) = closed.call_with("GET", "/metrics", None, None);
    assert_eq!(s, 401);
    for path in ["/api/health", "/api/openapi.json", "/", "/dashboard/app.js"] {
        let (s, body) = closed.call_with("GET", path, None, None);
        assert_eq!(s, 200, "{path}: {body}");
    }
    let (s, _) = closed.call("GET", "/api/fs", None);
    assert_eq!(s, 200, "with the token");
    assert!(closed.cli_ok(&["fs", "list"]).contains("no file systems"));
}

#[test]
fn events_follow_prints_new_events_as_they_come() {
    let a = ArrayProc::start();
    let mut child = Command::new(BIN)
        .args(["events", "--follow", "--json", "--api", &a.api_url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the follower its first look, then act.
    std::thread::sleep(Duration::from_millis(1500));
    a.cli_ok(&["fs", "create", "followed"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("no event for the new fs within 15 s; saw {seen:?}");
        };
        let v = parse(&line);
        if v["text"] == "created file system followed" {
            assert_eq!(v["kind"], "operator");
            assert!(v["id"].as_u64().is_some_and(|i| i > 0));
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
}
