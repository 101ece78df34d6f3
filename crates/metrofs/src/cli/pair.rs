//! `metrofs pair ...`: create, list, show, pause, resume, delete and verify pairs, through the
//! management API of one array (normally the serving one: actions that change a pair are
//! refused on its secondary, which says where to go).

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;

use super::client::{segment, ApiClient, ClientError};
use super::table::{bytes, table};
use super::{exit_code, ApiArg};
use crate::api::model::{CreatePair, PairView, VerifyView};

#[derive(Subcommand, Debug)]
pub enum PairCmd {
    /// Pair a file system of this array with a twin on the peer array (same fs id and inode
    /// numbers); the initial full sync runs while hosts keep writing.
    Create {
        /// The file system (on the array --api names, which becomes the serving side).
        fs: String,
        /// The peer array's name (`[peer] name` in this array's configuration).
        #[arg(long, value_name = "PEER")]
        remote: String,
        /// Print JSON (the API's answer) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the pairs of the array.
    List {
        /// Print JSON (the API's answer) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one pair: state (and resync progress), data status of each side, link, DCL,
    /// epoch, alarms and recent events.
    Show {
        /// The pair's id (16 hex digits, from `metrofs pair list`).
        id: String,
        /// Print JSON (the API's answer) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop replicating on purpose: the serving side goes on alone and the DCL records what
    /// changes, until `pair resume`.
    Pause {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Resynchronise what the DCL names (Paused or ToBeSynchronized), then Normal.
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Unpair: both copies stay, as independent file systems.
    Delete { id: String },
    /// Compare both sides (inodes, attributes, entries, chunk digests) and list every
    /// difference; exits 1 when there is one.
    Verify {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn path(id: &str) -> String {
    format!("/api/pairs/{}", segment(id))
}

pub fn run_pair(cmd: PairCmd, api: &ApiArg) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let done = (|| {
        let c = ApiClient::new(&api.api)?;
        match cmd {
            PairCmd::Create {
                fs,
                remote,
                json: j,
            } => {
                let p: PairView = c.post("/api/pairs", &CreatePair { fs, remote })?;
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "created pair {} of file system {}: {} serves, {} holds the twin",
                        p.id, p.fs, p.serving, p.secondary
                    );
                    println!(
                        "state {}: the initial full sync runs while hosts keep writing; follow it with `metrofs pair show {}`",
                        p.state, p.id
                    );
                }
            }
            PairCmd::List { json: j } => {
                let all: Vec<PairView> = c.get("/api/pairs")?;
                if j {
                    println!("{}", json(&all));
                } else {
                    print!("{}", pair_table(&all));
                }
            }
            PairCmd::Show { id, json: j } => {
                let p: PairView = c.get(&path(&id))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    print!("{}", pair_detail(&p));
                }
            }
            PairCmd::Pause { id, json: j } => {
                let p: PairView = c.post_empty(&format!("{}/pause", path(&id)))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "pair {} is {}: {} serves alone and the DCL records every change; `metrofs pair resume {}` resynchronises",
                        p.id, p.state, p.serving, p.id
                    );
                }
            }
            PairCmd::Resume { id, json: j } => {
                let p: PairView = c.post_empty(&format!("{}/resume", path(&id)))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "pair {} is {}: what the DCL names ({}) is copied from {} to {}; then Normal",
                        p.id,
                        p.state,
                        dcl_text(&p),
                        p.serving,
                        p.secondary
                    );
                }
            }
            PairCmd::Delete { id } => {
                c.delete(&path(&id))?;
                println!("deleted pair {id}: both copies are independent file systems now");
            }
            PairCmd::Verify { id, json: j } => {
                let r: VerifyView = c.post_empty(&format!("{}/verify", path(&id)))?;
                if j {
                    println!("{}", json(&r));
                } else {
                    print!("{}", verify_text(&r));
                }
                if !r.differences.is_empty() {
                    code = ExitCode::from(1);
                }
            }
        }
        Ok::<(), ClientError>(())
    })();
    match done {
        Ok(()) => code,
        Err(e) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

/// `Synchronizing 42.0 %` style state, with progress when a resync runs.
fn state_text(p: &PairView) -> String {
    match (&p.sync, p.state.as_str()) {
        (Some(s), "Synchronizing") => {
            let eta = s
                .eta_s
                .map_or_else(|| "ETA unknown".to_owned(), |e| format!("ETA {e} s"));
            format!(
                "Synchronizing {:.1} % ({} of {}, {}/s, {eta}, phase {}, round {})",
                s.percent,
                bytes(s.done_bytes),
                bytes(s.total_bytes),
                bytes(s.bytes_per_s),
                s.phase,
                s.round
            )
        }
        _ => p.state.clone(),
    }
}

fn dcl_text(p: &PairView) -> String {
    let d = &p.dcl;
    if d.full {
        return format!(
            "everything (initial full sync), plus {} in {} chunks",
            bytes(d.bytes),
            d.chunks
        );
    }
    format!(
        "{} in {} chunks, {} dirs, {} inodes",
        bytes(d.bytes),
        d.chunks,
        d.dirs,
        d.inodes
    )
}

fn link_text(p: &PairView) -> String {
    match p.link_rtt_us {
        Some(us) if p.link == "Up" => format!("Up, RTT {:.2} ms", us as f64 / 1000.0),
        _ => p.link.clone(),
    }
}

/// One row per pair.
pub fn pair_table(all: &[PairView]) -> String {
    if all.is_empty() {
        return "no pairs (pair a file system with `metrofs pair create FS --remote PEER`)\n"
            .into();
    }
    let rows = all
        .iter()
        .map(|p| {
            let state = match (&p.sync, p.state.as_str()) {
                (Some(s), "Synchronizing") => format!("Synchronizing {:.0}%", s.percent),
                _ => p.state.clone(),
            };
            vec![
                p.id.clone(),
                p.fs.clone(),
                state,
                p.serving.clone(),
                p.secondary.clone(),
                p.link.clone(),
                if p.dcl.full {
                    "full".into()
                } else {
                    bytes(p.dcl.bytes)
                },
                p.role.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "FS",
            "STATE",
            "SERVING",
            "SECONDARY",
            "LINK",
            "DCL",
            "ROLE HERE",
        ],
        rows,
    )
}

/// `pair show`: one field a line, then alarms and events.
pub fn pair_detail(p: &PairView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "pair:           {}", p.id);
    let _ = writeln!(o, "file system:    {} (id {})", p.fs, p.fs_id);
    let _ = writeln!(o, "state:          {}", state_text(p));
    let _ = writeln!(o, "serving:        {}", p.serving);
    let _ = writeln!(o, "secondary:      {}", p.secondary);
    let _ = writeln!(o, "preferred site: {}", p.preferred_site);
    let _ = writeln!(o, "this array:     {} ({})", p.array, p.role);
    let data: Vec<String> = p
        .data
        .iter()
        .map(|d| format!("{} {}", d.array, d.status))
        .collect();
    let _ = writeln!(o, "data:           {}", data.join(", "));
    let _ = writeln!(o, "link:           {}", link_text(p));
    let _ = writeln!(o, "epoch:          {}", p.epoch);
    let _ = writeln!(o, "DCL:            {}", dcl_text(p));
    if p.alarms.is_empty() {
        let _ = writeln!(o, "alarms:         none");
    } else {
        let _ = writeln!(o, "alarms:");
        for a in &p.alarms {
            let _ = writeln!(o, "  - {a}");
        }
    }
    if !p.events.is_empty() {
        let _ = writeln!(o, "recent events (newest first):");
        for e in &p.events {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}

fn verify_text(r: &VerifyView) -> String {
    let mut o = format!(
        "pair {}: compared {} inodes and {} of data: ",
        r.pair,
        r.inodes_compared,
        bytes(r.bytes_compared)
    );
    if r.differences.is_empty() {
        o.push_str("both sides are identical\n");
    } else {
        let _ = writeln!(o, "{} differences", r.differences.len());
        for d in &r.differences {
            let _ = writeln!(o, "  {d}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{DclView, SideData, SyncView};

    fn view() -> PairView {
        PairView {
            id: "00000000000000ab".into(),
            fs: "demo".into(),
            fs_id: "00000000000000ff".into(),
            state: "Synchronizing".into(),
            array: "site-a".into(),
            role: "Primary".into(),
            serving: "site-a".into(),
            secondary: "site-b".into(),
            preferred_site: "site-a".into(),
            data: vec![
                SideData {
                    array: "site-a".into(),
                    status: "Consistent".into(),
                },
                SideData {
                    array: "site-b".into(),
                    status: "Inconsistent".into(),
                },
            ],
            link: "Up".into(),
            link_rtt_us: Some(210),
            epoch: 1,
            dcl: DclView {
                bytes: 3 << 20,
                dirs: 2,
                inodes: 5,
                chunks: 48,
                full: false,
            },
            sync: Some(SyncView {
                status: "Busy".into(),
                phase: "data".into(),
                round: 1,
                percent: 42.0,
                done_bytes: 1 << 20,
                total_bytes: 3 << 20,
                bytes_per_s: 1 << 20,
                eta_s: Some(2),
                sent_bytes: 1 << 20,
            }),
            alarms: vec!["replication link down".into()],
            events: vec!["pair state ToBeSynchronized -> Synchronizing".into()],
        }
    }

    #[test]
    fn show_has_every_field() {
        let t = pair_detail(&view());
        for want in [
            "state:          Synchronizing 42.0 % (1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s",
            "data:           site-a Consistent, site-b Inconsistent",
            "link:           Up, RTT 0.21 ms",
            "preferred site: site-a",
            "DCL:            3.0 MiB in 48 chunks, 2 dirs, 5 inodes",
            "epoch:          1",
            "  - replication link down",
            "  pair state ToBeSynchronized -> Synchronizing",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        let mut normal = view();
        normal.state = "Normal".into();
        normal.sync = None;
        normal.link = "Down".into();
        normal.alarms.clear();
        let t = pair_detail(&normal);
        assert!(
            t.contains("state:          Normal\n")
                && t.contains("link:           Down\n")
                && t.contains("alarms:         none"),
            "{t}"
        );
    }

    #[test]
    fn list_is_a_table() {
        let t = pair_table(&[view()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("Synchronizing 42%"), "{t}");
        assert_eq!(lines[0].find("FS"), lines[1].find("demo"));
        assert!(pair_table(&[]).contains("no pairs"));
    }
}
