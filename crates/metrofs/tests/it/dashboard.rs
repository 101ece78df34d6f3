//! The dashboard in headless Chromium (Debian's `chromium`, driven over the DevTools protocol
//! with a small client here): it loads with no console error, shows the pair's state, and
//! turns the peer red within seconds of a `kill -9` of it. Screenshots go to
//! `target/dashboard/` (before and after).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::{PairProcs, BIN};
use crate::make_fs;

/// How long the browser may take to start and open its DevTools port.
const BROWSER_START_MS: u64 = 30_000;
/// How long one DevTools call may take.
const CALL_MS: u64 = 20_000;
/// Colours the page uses (app.js `COLORS`).
const GREEN: &str = "#1f9d55";
const RED: &str = "#d1342f";

/// Where the screenshots go: `target/dashboard/`.
fn shots_dir() -> PathBuf {
    // BIN is target/<profile>/metrofs.
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let dir = target.join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A headless Chromium and one page of it.
struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Console errors, uncaught exceptions and error log entries seen so far.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,1100",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium (Debian package `chromium`; scripts/test.sh installs it)");
        // Chromium writes its port and browser endpoint once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_millis(BROWSER_START_MS);
        let (port, path) = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                let mut lines = t.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.to_owned(), path.to_owned());
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}{path}"))
            .expect("DevTools websocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(CALL_MS)))
                .expect("read timeout");
        }
        let mut b = Self {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("target id").to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().expect("session").to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.call(domain, json!({}));
        }
        b
    }

    /// Notes what an event says about errors.
    fn observe(&mut self, msg: &Value) {
        let p = &msg["params"];
        match msg["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.{}: {}", p["type"], p["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors
                    .push(format!("log: {} {}", p["entry"]["text"], p["entry"]["url"]));
            }
            _ => {}
        }
    }

    /// One DevTools call (on the page's session once attached); its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .expect("send to DevTools");
        loop {
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v["error"].is_null(), "DevTools {method}: {}", v["error"]);
                return v["result"].clone();
            }
            self.observe(&v);
        }
    }

    /// Evaluates `expr` in the page; its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page.
    fn wait_for(&mut self, what: &str, expr: &str, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            if self.eval(expr) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dashboard: {what} not within {ms} ms; page: {}",
                self.eval(
                    "document.querySelector('main') && document.querySelector('main').innerText"
                )
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(r["data"].as_str().expect("png data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stroke colour of the first shape of SVG element `id`.
fn stroke_of(id: &str) -> String {
    format!(
        "(() => {{ const g = document.getElementById('{id}'); if (!g) return null; \
         const s = g.tagName === 'line' ? g : g.querySelector('rect'); return s && s.getAttribute('stroke'); }})()"
    )
}

#[test]
fn dashboard_shows_the_pair_and_turns_red_when_the_peer_is_killed() {
    let mut p = PairProcs::start_with("");
    make_fs(&p.a, "dash");
    let id = crate::pair_create_normal(&p.a, "dash");

    let mut b = Browser::start();
    b.call(
        "Page.navigate",
        json!({"url": format!("{}/", p.a.api_url())}),
    );
    b.wait_for(
        "the pair shown Normal",
        &format!("(() => {{ const r = document.getElementById('pair-{id}'); return !!r && r.dataset.state === 'Normal'; }})()"),
        15_000,
    );
    b.wait_for(
        "site-b shown up",
        "(() => { const g = document.getElementById('array-site-b'); return !!g && g.dataset.state === 'Up'; })()",
        15_000,
    );
    assert_eq!(b.eval(&stroke_of("array-site-b")), json!(GREEN));
    assert_eq!(b.eval(&stroke_of("link")), json!(GREEN));
    assert_eq!(
        b.eval("document.getElementById('conn').dataset.state"),
        json!("live")
    );
    let badge = b.eval(&format!(
        "getComputedStyle(document.querySelector('#pair-{id} .badge')).backgroundColor"
    ));
    assert_eq!(badge, json!("rgb(31, 157, 85)"), "Normal badge colour");
    // The latency graph and the event list are drawn.
    b.wait_for(
        "an event listed",
        "document.querySelectorAll('#events tbody tr').length > 0",
        5_000,
    );
    let dir = shots_dir();
    b.screenshot(&dir.join("dashboard-normal.png"));
    assert!(b.errors.is_empty(), "console errors: {:#?}", b.errors);

    // kill -9 of the peer: within seconds the page shows it down, the link cut, the pair
    // no longer Normal.
    let killed = Instant::now();
    p.b.kill9();
    b.wait_for(
        "site-b shown down",
        "(() => { const g = document.getElementById('array-site-b'); return !!g && g.dataset.state === 'Down'; })()",
        10_000,
    );
    eprintln!(
        "dashboard showed site-b down {} ms after the kill",
        killed.elapsed().as_millis()
    );
    assert_eq!(b.eval(&stroke_of("array-site-b")), json!(RED));
    assert_eq!(b.eval(&stroke_of("link")), json!(RED));
    b.wait_for(
        "the pair no longer Normal",
        &format!("(() => {{ const r = document.getElementById('pair-{id}'); return !!r && r.dataset.state !== 'Normal'; }})()"),
        10_000,
    );
    b.screenshot(&dir.join("dashboard-peer-killed.png"));
    assert!(b.errors.is_empty(), "console errors: {:#?}", b.errors);
}
