//! Progress on the terminal (indicatif, on stderr so `--json` stdout stays clean): a bar with
//! rate and ETA while a pair synchronises (`--wait`) and while `pair verify` runs. Without a
//! terminal on stderr the sync bar is hidden and one plain line is printed every
//! [`PLAIN_EVERY_MS`] instead, so logs still show progress; the verify bar is hidden unless
//! `--progress` asks for plain lines.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::{segment, ApiClient, ClientError};
use super::table::bytes;
use crate::api::model::{PairView, VerifyProgressView};

/// Between two looks at the pair.
const POLL_MS: u64 = 500;
/// Between two plain progress lines when stderr is not a terminal.
const PLAIN_EVERY_MS: u64 = 5_000;
/// Between two looks at a running verify (the POST that runs it is in flight meanwhile).
const VERIFY_POLL_MS: u64 = 300;
/// Between two plain verify lines (`--progress` without a terminal).
const VERIFY_PLAIN_EVERY_MS: u64 = 1_000;

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

/// `12 of 40 inodes, 1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s`: a running verify's numbers.
fn verify_numbers(v: &VerifyProgressView) -> String {
    let eta = v
        .eta_s
        .map_or_else(|| "ETA unknown".to_owned(), |e| format!("ETA {e} s"));
    format!(
        "{} of {} inodes, {} of {}, {}/s, {eta}",
        v.inodes_done,
        v.inodes_total,
        bytes(v.done_bytes),
        bytes(v.total_bytes),
        bytes(v.bytes_per_s)
    )
}

/// `Busy 42.0 % (12 of 40 inodes, 1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s)`, or the result of the
/// last verify: `Done (40 of 40 inodes, 3.0 MiB compared)`.
#[must_use]
pub fn verify_text(v: &VerifyProgressView) -> String {
    if v.status == "Busy" {
        format!("Busy {:.1} % ({})", v.percent, verify_numbers(v))
    } else {
        format!(
            "{} ({} of {} inodes, {} compared)",
            v.status,
            v.inodes_done,
            v.inodes_total,
            bytes(v.done_bytes)
        )
    }
}

/// How `pair verify` shows its progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDisplay {
    /// A bar with percent, inodes, bytes, rate and ETA (stderr is a terminal).
    Bar,
    /// A plain line at most every [`VERIFY_PLAIN_EVERY_MS`] and the result at the end
    /// (`--progress` without a terminal).
    Lines,
    /// Nothing (no terminal, not asked).
    Off,
}

impl VerifyDisplay {
    /// A bar on a terminal; plain lines when `asked` without one; else nothing.
    #[must_use]
    pub fn choose(asked: bool) -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else if asked {
            Self::Lines
        } else {
            Self::Off
        }
    }
}

/// The verify POST: still in flight, answered, or failed.
const RUNNING: u8 = 0;
const ANSWERED: u8 = 1;
const FAILED: u8 = 2;

/// Runs `post` (the blocking `POST /api/pairs/{id}/verify`) while another thread polls the
/// pair with `poller` and shows the verify's progress as `display` says. Only a `Busy` view
/// moves the bar: the result of an earlier verify, kept in the pair view, is not this one's.
/// With [`VerifyDisplay::Lines`], once `post` succeeded, the result line (`Done ...`) is
/// printed from the pair view.
pub fn while_verifying<T, E>(
    poller: ApiClient,
    id: &str,
    display: VerifyDisplay,
    post: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if display == VerifyDisplay::Off {
        return post();
    }
    let state = AtomicU8::new(RUNNING);
    std::thread::scope(|scope| {
        let state = &state;
        scope.spawn(move || show_verify(&poller, id, display, state));
        let r = post();
        state.store(if r.is_ok() { ANSWERED } else { FAILED }, Ordering::SeqCst);
        r
    })
}

fn show_verify(c: &ApiClient, id: &str, display: VerifyDisplay, state: &AtomicU8) {
    let path = format!("/api/pairs/{}", segment(id));
    let bar = if display == VerifyDisplay::Bar {
        ProgressBar::new(1000)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(style(
        "{spinner:.green} {prefix} [{bar:30.cyan/blue}] {percent:>3}% {msg}",
    ));
    bar.set_prefix(format!("verify pair {id}"));
    bar.set_message("comparing both sides");
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last_line: Option<Instant> = None;
    let mut next_poll = Instant::now() + Duration::from_millis(VERIFY_POLL_MS);
    loop {
        match state.load(Ordering::SeqCst) {
            RUNNING => {}
            ANSWERED => {
                bar.finish_and_clear();
                if display == VerifyDisplay::Lines {
                    if let Ok(Some(v)) = c.get::<PairView>(&path).map(|p| p.verify) {
                        eprintln!("pair {id}: verify {}", verify_text(&v));
                    }
                }
                return;
            }
            _ => {
                bar.finish_and_clear();
                return;
            }
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + Duration::from_millis(VERIFY_POLL_MS);
            // A failed look is not the verify's failure: the POST's answer says that.
            if let Ok(Some(v)) = c.get::<PairView>(&path).map(|p| p.verify) {
                if v.status == "Busy" {
                    bar.set_position((v.percent.clamp(0.0, 100.0) * 10.0) as u64);
                    bar.set_message(verify_numbers(&v));
                    if display == VerifyDisplay::Lines
                        && last_line.is_none_or(|t| {
                            t.elapsed() >= Duration::from_millis(VERIFY_PLAIN_EVERY_MS)
                        })
                    {
                        last_line = Some(Instant::now());
                        eprintln!("pair {id}: verify {}", verify_text(&v));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A verify a third of the way through (also the pair view tests' example).
    pub(crate) fn busy() -> VerifyProgressView {
        VerifyProgressView {
            status: "Busy".into(),
            inodes_total: 40,
            inodes_done: 12,
            total_bytes: 3 << 20,
            done_bytes: 1 << 20,
            percent: 33.3,
            bytes_per_s: 1 << 20,
            eta_s: Some(2),
        }
    }

    #[test]
    fn verify_text_shows_progress_then_the_result() {
        assert_eq!(
            verify_text(&busy()),
            "Busy 33.3 % (12 of 40 inodes, 1.0 MiB of 3.0 MiB, 1.0 MiB/s, ETA 2 s)"
        );
        let done = VerifyProgressView {
            status: "Done: 2 differences".into(),
            inodes_done: 40,
            done_bytes: 3 << 20,
            percent: 100.0,
            eta_s: None,
            ..busy()
        };
        assert_eq!(
            verify_text(&done),
            "Done: 2 differences (40 of 40 inodes, 3.0 MiB compared)"
        );
        assert!(verify_text(&VerifyProgressView {
            eta_s: None,
            ..busy()
        })
        .ends_with("ETA unknown)"));
    }

    #[test]
    fn no_display_runs_the_call_without_looking() {
        // An address nobody listens on: with Off, the poller is never used.
        let c = ApiClient::new("http://127.0.0.1:9").expect("client");
        let r: Result<u8, ()> =
            while_verifying(c, "00000000000000ab", VerifyDisplay::Off, || Ok(7));
        assert_eq!(r, Ok(7));
        let c = ApiClient::new("http://127.0.0.1:9").expect("client");
        let r: Result<u8, &str> =
            while_verifying(c, "00000000000000ab", VerifyDisplay::Lines, || {
                Err("refused")
            });
        assert_eq!(r, Err("refused"));
    }
}
