//! Progress on the terminal (indicatif, on stderr so `--json` stdout stays clean): a bar with
//! rate and ETA while a pair synchronises (`--wait`), a spinner while a verify runs. Without a
//! terminal on stderr the bar is hidden and one plain line is printed every
//! [`PLAIN_EVERY_MS`] instead, so logs still show progress.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::{segment, ApiClient, ClientError};
use super::table::bytes;
use crate::api::model::PairView;

/// Between two looks at the pair.
const POLL_MS: u64 = 500;
/// Between two plain progress lines when stderr is not a terminal.
const PLAIN_EVERY_MS: u64 = 5_000;

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// How waiting for a pair ended.
pub enum Waited {
    Normal(PairView),
    /// It stopped in a state that does not become Normal by itself (Paused), or time ran
    /// out; the view and why.
    Stuck(PairView, String),
}

/// Polls pair `id` until it is Normal, showing the resync's progress with its ETA.
/// `timeout`: give up after it (none: wait as long as it takes; Ctrl-C stops).
pub fn wait_normal(
    c: &ApiClient,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Waited, ClientError> {
    let path = format!("/api/pairs/{}", segment(id));
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(style(
        "{spinner:.green} {prefix} {msg:<18} [{bar:30.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta})",
    ));
    bar.set_prefix(format!("pair {id}"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    let mut last_plain: Option<Instant> = None;
    loop {
        let p: PairView = c.get(&path)?;
        match (&p.sync, p.state.as_str()) {
            (_, "Normal") => {
                bar.finish_and_clear();
                return Ok(Waited::Normal(p));
            }
            (_, "Paused") => {
                bar.abandon();
                return Ok(Waited::Stuck(
                    p.clone(),
                    format!("pair {id} is Paused: it does not become Normal by itself; `metrofs pair resume {id}` resynchronises it"),
                ));
            }
            (Some(s), "Synchronizing") => {
                bar.set_length(s.total_bytes.max(1));
                bar.set_position(s.done_bytes.min(s.total_bytes));
                bar.set_message(format!("{} (round {})", s.phase, s.round));
            }
            (_, other) => {
                bar.set_message(if other == "ToBeSynchronized" {
                    "ToBeSynchronized: waiting for the link".to_owned()
                } else {
                    other.to_owned()
                });
            }
        }
        if !tty && last_plain.is_none_or(|t| t.elapsed() >= Duration::from_millis(PLAIN_EVERY_MS)) {
            last_plain = Some(Instant::now());
            eprintln!("{}", plain_line(&p));
        }
        if let Some(limit) = timeout {
            if start.elapsed() >= limit {
                bar.abandon();
                return Ok(Waited::Stuck(
                    p.clone(),
                    format!(
                        "pair {id} is still {} after {} s (--timeout)",
                        p.state,
                        limit.as_secs()
                    ),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// `pair 00ab: Synchronizing 42.0 % (1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s)`
#[must_use]
pub fn plain_line(p: &PairView) -> String {
    match (&p.sync, p.state.as_str()) {
        (Some(s), "Synchronizing") => format!(
            "pair {}: Synchronizing {:.1} % ({} of {}, {}/s, {})",
            p.id,
            s.percent,
            bytes(s.done_bytes),
            bytes(s.total_bytes),
            bytes(s.bytes_per_s),
            s.eta_s
                .map_or_else(|| "ETA unknown".to_owned(), |e| format!("ETA {e} s"))
        ),
        _ => format!("pair {}: {}", p.id, p.state),
    }
}

/// What `--wait` prints and exits with once the wait ended.
pub fn report(w: Waited, json: bool) -> ExitCode {
    match w {
        Waited::Normal(p) => {
            if json {
                println!("{}", super::json(&p));
            } else {
                println!(
                    "pair {} is Normal: both sides are identical and every change is dual-written",
                    p.id
                );
            }
            ExitCode::SUCCESS
        }
        Waited::Stuck(p, why) => {
            if json {
                println!("{}", super::json(&p));
            }
            eprintln!("error: {why}");
            ExitCode::from(1)
        }
    }
}

/// A spinner with the elapsed time, for a call whose progress the API does not report.
#[must_use]
pub fn spinner(what: String) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(style("{spinner:.green} {msg} ({elapsed})"));
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
