//! `metrofs pair ...`: create, list, show, pause, resume, swap, force-start, delete and verify
//! pairs, through the management API of one array (normally the serving one: actions that
//! change a pair are refused on its secondary, which says where to go; swap is forwarded).

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::{segment, ApiClient, ClientError};
use super::progress::{self, Waited};
use super::table::{bytes, table, utc};
use super::{finish, json, ApiArg};
use crate::api::model::{CreatePair, PairView, VerifyView};

/// `--wait` and its `--timeout`.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Wait until the pair is Normal, with a progress bar (rate, ETA) of the resync.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 1). Default: no limit.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<u64>,
}

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
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the pairs of the array.
    List,
    /// Show one pair: state (and resync progress), who serves, data status of each side, link,
    /// DCL, epoch, quorum, last arbitration, alarms and recent events.
    Show {
        /// The pair's id (16 hex digits, from `metrofs pair list`).
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop replicating on purpose: the serving side goes on alone and the DCL records what
    /// changes, until `pair resume`.
    Pause { id: String },
    /// Resynchronise what the DCL names (Paused or ToBeSynchronized), then Normal.
    Resume {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Planned switch of the serving side (the pair must be Normal): nothing is lost, a short
    /// pause; hosts reconnect through the service address.
    Swap { id: String },
    /// Make this array's side serve when the other is gone for good. It raises the epoch;
    /// when the other side returns, its changes since the split are kept aside. Asks for a
    /// confirmation unless --yes.
    ForceStart {
        id: String,
        /// Do not ask (scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Unpair: both copies stay, as independent file systems.
    Delete { id: String },
    /// Compare both sides (inodes, attributes, entries, chunk digests) and list every
    /// difference; exits 1 when there is one. On a terminal a progress bar (inodes, bytes,
    /// rate, ETA) runs on stderr meanwhile; `pair show ID` shows the progress from elsewhere.
    Verify {
        id: String,
        /// Without a terminal on stderr: print a progress line each second on stderr, and the
        /// result line at the end (stdout, also with --json, is unchanged).
        #[arg(long)]
        progress: bool,
    },
}

fn path(id: &str) -> String {
    format!("/api/pairs/{}", segment(id))
}

fn timeout(w: WaitArgs) -> Option<Duration> {
    w.timeout.map(Duration::from_secs)
}

/// Asks the operator to type the pair id; `Ok(false)` when they did not.
fn confirm_force_start(c: &ApiClient, id: &str) -> Result<bool, ClientError> {
    let p: PairView = c.get(&path(id))?;
    eprintln!(
        "force start of pair {} (fs {}) on {}: this array's side will serve at a new epoch, although it may not have every change {} acknowledged; what {} changed since the split is kept aside when it returns.",
        p.id, p.fs, p.array, p.serving, p.serving
    );
    eprint!("type the pair id ({}) to go on: ", p.id);
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return Ok(false);
    }
    Ok(line.trim() == p.id)
}

pub fn run_pair(cmd: PairCmd, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let j = api.json;
        match cmd {
            PairCmd::Create { fs, remote, wait } => {
                let p: PairView = c.post("/api/pairs", &CreatePair { fs, remote })?;
                if wait.wait {
                    if !j {
                        println!(
                            "created pair {} of file system {}: {} serves, {} holds the twin",
                            p.id, p.fs, p.serving, p.secondary
                        );
                    }
                    return Ok(progress::report(
                        progress::wait_normal(&c, &p.id, timeout(wait))?,
                        j,
                    ));
                }
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "created pair {} of file system {}: {} serves, {} holds the twin",
                        p.id, p.fs, p.serving, p.secondary
                    );
                    println!(
                        "state {}: the initial full sync runs while hosts keep writing; follow it with `metrofs pair show {} --wait`",
                        p.state, p.id
                    );
                }
            }
            PairCmd::List => {
                let all: Vec<PairView> = c.get("/api/pairs")?;
                if j {
                    println!("{}", json(&all));
                } else {
                    print!("{}", pair_table(&all));
                }
            }
            PairCmd::Show { id, wait } => {
                if wait.wait {
                    return Ok(match progress::wait_normal(&c, &id, timeout(wait))? {
                        Waited::Normal(p) => {
                            if j {
                                println!("{}", json(&p));
                            } else {
                                print!("{}", pair_detail(&p));
                            }
                            ExitCode::SUCCESS
                        }
                        stuck => progress::report(stuck, j),
                    });
                }
                let p: PairView = c.get(&path(&id))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    print!("{}", pair_detail(&p));
                }
            }
            PairCmd::Pause { id } => {
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
            PairCmd::Resume { id, wait } => {
                let p: PairView = c.post_empty(&format!("{}/resume", path(&id)))?;
                if !j {
                    println!(
                        "pair {} is {}: what the DCL names ({}) is copied from {} to {}; then Normal",
                        p.id,
                        p.state,
                        dcl_text(&p),
                        p.serving,
                        p.secondary
                    );
                }
                if wait.wait {
                    return Ok(progress::report(
                        progress::wait_normal(&c, &p.id, timeout(wait))?,
                        j,
                    ));
                }
                if j {
                    println!("{}", json(&p));
                }
            }
            PairCmd::Swap { id } => {
                let p: PairView = c.post_empty(&format!("{}/swap", path(&id)))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "pair {}: {} serves now (epoch {}), {} is its secondary; hosts reconnect through the service address",
                        p.id, p.serving, p.epoch, p.secondary
                    );
                }
            }
            PairCmd::ForceStart { id, yes } => {
                if !yes {
                    if !std::io::stdin().is_terminal() {
                        eprintln!("error: force-start needs a confirmation: run it on a terminal, or pass --yes (nothing was sent)");
                        return Ok(ExitCode::from(2));
                    }
                    if !confirm_force_start(&c, &id)? {
                        eprintln!("error: not confirmed: nothing was sent");
                        return Ok(ExitCode::from(2));
                    }
                }
                let p: PairView = c.post_empty(&format!("{}/force-start", path(&id)))?;
                if j {
                    println!("{}", json(&p));
                } else {
                    println!(
                        "pair {}: force-started, {} serves at epoch {}; when {} returns, what it changed since the split is kept aside",
                        p.id, p.serving, p.epoch, p.secondary
                    );
                }
            }
            PairCmd::Delete { id } => {
                c.delete(&path(&id))?;
                if j {
                    println!("{}", json(&serde_json::json!({ "deleted": id })));
                } else {
                    println!("deleted pair {id}: both copies are independent file systems now");
                }
            }
            PairCmd::Verify { id, progress } => {
                // The POST answers when the comparison is done; meanwhile another client
                // polls the pair view, where the array reports the verify's progress.
                let r: VerifyView = progress::while_verifying(
                    api.client()?,
                    &id,
                    progress::VerifyDisplay::choose(progress),
                    || c.post_empty(&format!("{}/verify", path(&id))),
                )?;
                if j {
                    println!("{}", json(&r));
                } else {
                    print!("{}", verify_text(&r));
                }
                if !r.differences.is_empty() {
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })())
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

fn quorum_text(p: &PairView) -> String {
    if p.quorum.is_empty() {
        return format!(
            "{} (no quorum server: the preferred site goes on)",
            p.quorum_mode
        );
    }
    let servers: Vec<String> = p
        .quorum
        .iter()
        .map(|q| {
            if q.reachable {
                match q.rtt_us {
                    Some(us) => format!("{} reachable ({:.2} ms)", q.addr, us as f64 / 1000.0),
                    None => format!("{} reachable", q.addr),
                }
            } else {
                format!(
                    "{} UNREACHABLE{}",
                    q.addr,
                    q.last_error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            }
        })
        .collect();
    format!("{}: {}", p.quorum_mode, servers.join(", "))
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
    let _ = writeln!(o, "state since:    {} UTC", utc(p.state_since));
    let _ = writeln!(
        o,
        "serving:        {}{}",
        p.serving,
        if p.forced { " (force-started)" } else { "" }
    );
    let _ = writeln!(o, "secondary:      {}", p.secondary);
    let _ = writeln!(o, "preferred site: {}", p.preferred_site);
    let _ = writeln!(
        o,
        "this array:     {} ({}, {})",
        p.array,
        p.role,
        match p.phase.as_str() {
            "Open" => "acknowledges changes",
            "Deciding" => "deciding: an arbitration or swap runs, changes wait",
            "Stopped" => "stopped: accepts no change",
            other => other,
        }
    );
    let data: Vec<String> = p
        .data
        .iter()
        .map(|d| format!("{} {}", d.array, d.status))
        .collect();
    let _ = writeln!(o, "data:           {}", data.join(", "));
    let _ = writeln!(o, "link:           {}", link_text(p));
    let _ = writeln!(o, "epoch:          {}", p.epoch);
    let _ = writeln!(o, "DCL:            {}", dcl_text(p));
    let _ = writeln!(o, "arbitration:    {}", quorum_text(p));
    let _ = writeln!(
        o,
        "verify:         {}",
        p.verify.as_ref().map_or_else(
            || "none since this array started".to_owned(),
            progress::verify_text
        )
    );
    if let Some(a) = &p.last_arbitration {
        let _ = writeln!(
            o,
            "last arbitration: {} UTC, asked by {}, {} (epoch {}): {}",
            utc(a.time),
            a.asked_by,
            a.winner
                .as_ref()
                .map_or_else(|| "nobody won".to_owned(), |w| format!("{w} won")),
            a.epoch,
            a.reason
        );
    }
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
    use crate::api::model::{
        ArbitrationInfo, DclView, QuorumServerView, SideData, SyncView,
    };

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
            verify: Some(crate::cli::progress::tests::busy()),
            alarms: vec!["replication link down".into()],
            events: vec!["pair state ToBeSynchronized -> Synchronizing".into()],
            state_since: 1_700_000_000,
            phase: "Open".into(),
            quorum_mode: "quorum".into(),
            quorum: vec![QuorumServerView {
                addr: "10.0.3.1:7300".into(),
                reachable: false,
                rtt_us: None,
                last_error: Some("connection refused".into()),
            }],
            last_arbitration: Some(ArbitrationInfo {
                time: 1_700_000_000,
                asked_by: "site-a".into(),
                winner: Some("site-a".into()),
                epoch: 2,
                reason: "link lost; quorum granted".into(),
            }),
            forced: false,
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
            "state since:    2023-11-14 22:13:20 UTC",
            "arbitration:    quorum: 10.0.3.1:7300 UNREACHABLE (connection refused)",
            "last arbitration: 2023-11-14 22:13:20 UTC, asked by site-a, site-a won (epoch 2): link lost; quorum granted",
            "this array:     site-a (Primary, acknowledges changes)",
            "  - replication link down",
            "  pair state ToBeSynchronized -> Synchronizing",
            "verify:         Busy 33.3 % (12 of 40 inodes, 1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s)\n",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        let mut normal = view();
        normal.state = "Normal".into();
        normal.sync = None;
        normal.link = "Down".into();
        normal.alarms.clear();
        normal.verify = None;
        let t = pair_detail(&normal);
        assert!(
            t.contains("state:          Normal\n")
                && t.contains("link:           Down\n")
                && t.contains("verify:         none since this array started\n")
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
