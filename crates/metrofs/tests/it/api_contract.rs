//! The API against its own OpenAPI document: schemathesis (PyPI) fuzzes every operation of a
//! live pair's serving array, with the token, and finds no server error, no undocumented
//! status, content type or header, and no answer outside its schema; changing calls without
//! the token answer 401. Pair and file-system path parameters are drawn half of the time from
//! the real ones, so the actions reach a real pair (pause, resume, swap, verify, delete...).
//!
//! schemathesis comes from `scripts/test.sh` (a venv in `target/test-venv`); `SCHEMATHESIS`
//! names another executable. `SCHEMATHESIS_SEED` and `SCHEMATHESIS_EXAMPLES` replay or widen
//! a run (defaults: seed 1, 20 examples per operation).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{text, PairProcs, BIN};
use crate::make_fs;

fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    let p = target.join("test-venv").join("bin").join("schemathesis");
    assert!(
        p.exists(),
        "{} is missing: scripts/test.sh installs schemathesis there (or set SCHEMATHESIS)",
        p.display()
    );
    p
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let p = PairProcs::start_with("");
    make_fs(&p.a, "p");
    make_fs(&p.a, "other");
    let id: &str = &crate::pair_create_normal(&p.a, "p");
    let token = p.a.token().expect("token");

    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let config = p.a.tmp.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries.pairs]\nvalues = [\"{id}\"]\n\n[dictionaries.fs]\nvalues = [\"p\", \"other\"]\n\n\
             [parameters]\n\"path.id\" = {{ dictionary = \"pairs\", probability = 0.5 }}\n\
             \"path.name\" = {{ dictionary = \"fs\", probability = 0.5 }}\n"
        ),
    )
    .expect("config");
    eprintln!("schemathesis seed {seed}, {examples} examples per operation");
    let out = Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run"])
        .arg(format!("{}/api/openapi.json", p.a.api_url()))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability",
        ])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--request-timeout", "60", "--workers", "1"])
        .current_dir(p.a.tmp.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = text(&out);
    assert!(
        out.status.success(),
        "schemathesis found problems (replay with SCHEMATHESIS_SEED={seed}):\n{report}\n--- site-a log:\n{}",
        p.a.log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(25).collect();
    eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    // It did test the operations, and reached the real pair.
    assert!(report.contains("passed"), "{report}");
    let events: serde_json::Value =
        serde_json::from_str(&p.a.cli_ok(&["events", "--limit", "1000", "--json"])).expect("json");
    assert!(
        events
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["pair"] == id && e["actor"].as_str().is_some_and(|a| a.starts_with("api@"))),
        "no action of schemathesis reached pair {id}: {events:#}"
    );
}
