//! `metrofs events [--follow]` (the durable event log) and `metrofs alarms`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::client::ClientError;
use super::table::{table, utc};
use super::{finish, json, ApiArg};
use crate::api::model::{AlarmView, EventView};

/// Between two looks for new events with --follow.
const FOLLOW_POLL_MS: u64 = 1000;

#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Keep printing events as they come (until Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events after this id (default: the newest --limit).
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// How many events (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

fn time_text(ms: u64) -> String {
    format!("{}.{:03}", utc(ms / 1000), ms % 1000)
}

fn row(e: &EventView) -> Vec<String> {
    vec![
        e.id.to_string(),
        time_text(e.time_ms),
        e.kind.clone(),
        e.pair.clone().unwrap_or_else(|| "-".into()),
        e.actor.clone(),
        e.text.clone(),
    ]
}

const HEADER: [&str; 6] = ["ID", "TIME (UTC)", "KIND", "PAIR", "ACTOR", "WHAT"];

/// Events as a table.
pub fn event_table(all: &[EventView]) -> String {
    table(&HEADER, all.iter().map(row).collect())
}

/// Alarms, one per line with their hint below.
pub fn alarm_lines(all: &[AlarmView]) -> String {
    let mut o = String::new();
    for a in all {
        let _ = writeln!(
            o,
            "{:<8}  since {} UTC  {}",
            a.severity,
            utc(a.since),
            a.text
        );
        let _ = writeln!(o, "          hint: {}", a.hint);
    }
    o
}

fn query(after: Option<u64>, limit: u32) -> String {
    match after {
        Some(a) => format!("/api/events?after={a}&limit={limit}"),
        None => format!("/api/events?limit={limit}"),
    }
}

pub fn run_events(args: &EventsArgs, api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let j = api.json;
        let first: Vec<EventView> = c.get(&query(args.after, args.limit))?;
        let mut last = first.last().map(|e| e.id).or(args.after);
        if j {
            if args.follow {
                // One JSON object a line, so a script can read them as they come.
                for e in &first {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                }
            } else {
                println!("{}", json(&first));
            }
        } else if first.is_empty() && !args.follow {
            println!("no events");
        } else {
            print!("{}", event_table(&first));
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        loop {
            std::thread::sleep(Duration::from_millis(FOLLOW_POLL_MS));
            // A follower starting on an empty log asks for everything after id 0.
            let new: Vec<EventView> = c.get(&query(Some(last.unwrap_or(0)), 1000))?;
            for e in &new {
                if j {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!("{}", row(e).join("  "));
                }
            }
            if let Some(e) = new.last() {
                last = Some(e.id);
            }
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
    })())
}

pub fn run_alarms(api: &ApiArg) -> ExitCode {
    finish((|| {
        let c = api.client()?;
        let all: Vec<AlarmView> = c.get("/api/alarms")?;
        if api.json {
            println!("{}", json(&all));
        } else if all.is_empty() {
            println!("no alarms");
        } else {
            print!("{}", alarm_lines(&all));
        }
        Ok::<ExitCode, ClientError>(ExitCode::SUCCESS)
    })())
}
