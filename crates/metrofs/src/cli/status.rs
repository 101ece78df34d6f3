//! `metrofs status` (the whole domain at a glance), `metrofs domain`, `metrofs arrays`,
//! `metrofs health`, `metrofs metrics` and `metrofs openapi`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::client::ClientError;
use super::events::{alarm_lines, event_table};
use super::pair::pair_table;
use super::table::{bytes, table, utc};
use super::{finish, json, ApiArg};
use crate::api::model::{ArrayView, DomainView, Health, IoView, StatusView};

fn ms(us: u64, n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.2} ms", us as f64 / n as f64 / 1000.0)
    }
}

/// One row per array.
pub fn array_table(all: &[ArrayView]) -> String {
    let rows = all
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.relation.clone(),
                a.state.clone(),
                if a.preferred { "yes" } else { "no" }.into(),
                if a.serves.is_empty() {
                    "-".into()
                } else {
                    a.serves.join(",")
                },
                a.nfs_listen.clone().unwrap_or_else(|| "-".into()),
                a.api_listen.clone().unwrap_or_else(|| "-".into()),
                a.link_address.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "ARRAY",
            "IS",
            "STATE",
            "PREFERRED",
            "SERVES",
            "NFS",
            "API",
            "LINK ADDRESS",
        ],
        rows,
    )
}

/// The domain: name, preferred site, link, quorum, then the arrays.
pub fn domain_text(d: &DomainView) -> String {
    let mut o = String::new();
    match &d.name {
        Some(name) => {
            let _ = writeln!(
                o,
                "domain {name}: preferred site {}, recovery {}{}",
                d.preferred_site,
                d.recovery.as_deref().unwrap_or("-"),
                d.service_address
                    .as_ref()
                    .map(|a| format!(", service address {a}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(o, "an array on its own (no [peer] configured)");
        }
    }
    if let Some(l) = &d.link {
        let here = d
            .arrays
            .iter()
            .find(|a| a.relation == "this")
            .map_or("this array", |a| a.name.as_str());
        let _ = writeln!(
            o,
            "link:   {here} <-> {}: {}{}",
            l.peer,
            l.state,
            l.rtt_us
                .map(|us| format!(", RTT {:.2} ms", us as f64 / 1000.0))
                .unwrap_or_default()
        );
    }
    if d.quorum.servers.is_empty() {
        let _ = writeln!(
            o,
            "quorum: {} (no quorum server: when the link is lost the preferred site goes on, the other stops)",
            d.quorum.mode
        );
    } else {
        let servers: Vec<String> = d
            .quorum
            .servers
            .iter()
            .map(|q| {
                format!(
                    "{} {}",
                    q.addr,
                    if q.reachable {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    }
                )
            })
            .collect();
        let _ = writeln!(o, "quorum: {}", servers.join(", "));
    }
    o.push('\n');
    o.push_str(&array_table(&d.arrays));
    o
}

fn io_text(io: &IoView) -> String {
    format!(
        "dual writes: {} (mean total {}, local apply {}, remote apply {}), {} went to the DCL; NFS: {} operations, {} errors; resync copied {}",
        io.dual_writes,
        ms(io.dual_write_total_us, io.dual_writes),
        ms(io.dual_write_local_us, io.dual_writes),
        ms(io.dual_write_remote_us, io.dual_write_remote),
        io.remote_missing,
        io.nfs_ops,
        io.nfs_errors,
        bytes(io.resync_bytes)
    )
}

/// `metrofs status`: everything at a glance.
pub fn status_text(s: &StatusView) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "metrofs status, as {} sees it at {} UTC\n",
        s.array,
        utc(s.time)
    );
    o.push_str(&domain_text(&s.domain));
    let _ = writeln!(
        o,
        "\npairs ({}, {} file systems on this array):",
        s.pairs.len(),
        s.file_systems
    );
    o.push_str(&pair_table(&s.pairs));
    let _ = writeln!(o, "\nalarms:");
    if s.alarms.is_empty() {
        let _ = writeln!(o, "none");
    } else {
        o.push_str(&alarm_lines(&s.alarms));
    }
    let _ = writeln!(
        o,
        "\nI/O since start: {}\nLOG: {} extents being dual-written, {} resident",
        io_text(&s.io),
        s.log_extents_active,
        s.log_extents_resident
    );
    if !s.events.is_empty() {
        let _ = writeln!(o, "\nrecent events (`metrofs events --follow` for more):");
        let newest: Vec<_> = s.events.iter().rev().take(5).rev().cloned().collect();
        o.push_str(&event_table(&newest));
    }
    o
}

/// What `metrofs status` and friends do.
#[derive(Debug, Clone, Copy)]
pub enum Show {
    Status,
    Domain,
    Arrays,
    Health,
    Metrics,
    OpenApi,
}

pub fn run(what: Show, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let j = api.json;
        match what {
            Show::Status => {
                let s: StatusView = c.get("/api/status")?;
                if j {
                    println!("{}", json(&s));
                } else {
                    print!("{}", status_text(&s));
                }
            }
            Show::Domain => {
                let d: DomainView = c.get("/api/domain")?;
                if j {
                    println!("{}", json(&d));
                } else {
                    print!("{}", domain_text(&d));
                }
            }
            Show::Arrays => {
                let a: Vec<ArrayView> = c.get("/api/arrays")?;
                if j {
                    println!("{}", json(&a));
                } else {
                    print!("{}", array_table(&a));
                }
            }
            Show::Health => {
                let h: Health = c.get("/api/health")?;
                if j {
                    println!("{}", json(&h));
                } else {
                    println!(
                        "{} is up: metrofs {}, NFS {}, {} file systems{}",
                        h.array,
                        h.version,
                        h.nfs_listen,
                        h.file_systems,
                        match (&h.peer, &h.link) {
                            (Some(p), Some(l)) => format!(", link to {p} {l}"),
                            _ => String::new(),
                        }
                    );
                }
            }
            Show::Metrics => print!("{}", c.get_text("/metrics")?),
            Show::OpenApi => {
                let v: serde_json::Value = c.get("/api/openapi.json")?;
                println!("{}", json(&v));
            }
        }
        Ok::<ExitCode, ClientError>(ExitCode::SUCCESS)
    })())
}
