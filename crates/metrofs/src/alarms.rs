//! Alarms: conditions an operator must see, each with a clear text and what to do.
//!
//! A worker ([`AlarmWatcher::run`]) looks at the pairs every [`SAMPLE_INTERVAL_MS`], computes
//! which conditions hold ([`evaluate`], a pure function) and keeps the active set: a condition
//! that starts to hold raises its alarm (an `alarm` event in the event log), one that stops
//! holding clears it (another event). Conditions, with their thresholds (`[alarms]`):
//!
//! | id | when | severity |
//! | --- | --- | --- |
//! | `not_normal:PAIR` | a pair is not Normal for longer than `not_normal_s_max` | critical when ToBeSynchronized, else warning |
//! | `dcl_growing:PAIR` | its DCL grew by more than `dcl_growth_bytes_max` within `dcl_growth_window_s` | warning |
//! | `inconsistent:PAIR:ARRAY` | a side's data is Inconsistent | warning while Synchronizing, else critical |
//! | `link_down` | the replication link to the peer is down (for [`LINK_DOWN_GRACE_MS`]) | critical |
//! | `link_rtt` | the link's round trip is above `link_rtt_us_max` | warning |
//! | `quorum_unreachable:ADDR` | a quorum server cannot be reached | warning |
//! | `pair:PAIR:N` | an alarm the metro module raised for a pair (e.g. divergence) | warning |

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrofs_core::Clock;
use metrofs_metro::engine::{DataStatus, PairState, Role};
use metrofs_metro::events::{EventKind, EventLog, EventRecord};
use metrofs_metro::{Metro, PairView};
use tokio::time::Instant;

use crate::api::model::AlarmView;
use crate::cli::table::bytes;
use crate::config::api::AlarmThresholds;
use crate::stop::Stop;

/// How often the pairs are looked at.
pub const SAMPLE_INTERVAL_MS: u64 = 1000;
/// How long the link must be down before `link_down` is raised: the link comes up a moment
/// after the array starts, and a peer's restart is not an alarm until it lasts.
pub const LINK_DOWN_GRACE_MS: u64 = 5000;
/// The actor of alarm events.
pub const ACTOR: &str = "alarms";

/// What [`evaluate`] needs of one pair.
#[derive(Clone, Debug, PartialEq)]
pub struct PairSample {
    pub id: String,
    pub fs: String,
    pub state: PairState,
    /// Seconds since the Unix epoch.
    pub state_since: u64,
    /// This array's name and data status, then the other side's.
    pub here: (String, DataStatus),
    pub there: (String, DataStatus),
    pub serving: String,
    /// DCL growth within the window, bytes.
    pub dcl_growth: u64,
    pub dcl_bytes: u64,
    /// Alarms the metro module raised for it.
    pub metro_alarms: Vec<String>,
}

/// What [`evaluate`] needs of the array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArraySample {
    /// The peer's name, when the array has one.
    pub peer: Option<String>,
    pub link_up: bool,
    pub link_rtt_us: Option<u64>,
    /// Each quorum server: address, reachable, last error.
    pub quorum: Vec<(String, bool, Option<String>)>,
}

/// A condition that holds (an alarm without its `since`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub id: String,
    pub severity: &'static str,
    pub pair: Option<String>,
    pub text: String,
    pub hint: String,
}

/// Which conditions hold at `now` (seconds since the Unix epoch).
#[must_use]
pub fn evaluate(
    now: u64,
    t: &AlarmThresholds,
    array: &ArraySample,
    pairs: &[PairSample],
) -> Vec<Condition> {
    let mut out = Vec::new();
    if let Some(peer) = &array.peer {
        if !array.link_up {
            out.push(Condition {
                id: "link_down".into(),
                severity: "critical",
                pair: None,
                text: format!("the replication link to {peer} is down: changes are not replicated and no pair is protected"),
                hint: "check that the peer array runs and that its link address is reachable; both arrays' logs say why a link is refused".into(),
            });
        } else if let Some(rtt) = array.link_rtt_us.filter(|r| *r > t.link_rtt_us_max) {
            out.push(Condition {
                id: "link_rtt".into(),
                severity: "warning",
                pair: None,
                text: format!(
                    "the replication link to {peer} has a round trip of {:.2} ms, above the {:.2} ms threshold: every change waits for it",
                    rtt as f64 / 1000.0,
                    t.link_rtt_us_max as f64 / 1000.0
                ),
                hint: "check the network between the sites ([alarms] link_rtt_us_max sets the threshold)".into(),
            });
        }
    }
    for (addr, reachable, err) in &array.quorum {
        if !reachable {
            out.push(Condition {
                id: format!("quorum_unreachable:{addr}"),
                severity: "warning",
                pair: None,
                text: format!(
                    "quorum server {addr} is unreachable{}: a lost link could not be arbitrated by it",
                    err.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
                ),
                hint: "check that `metrofs quorum` runs there and that this array reaches it (same domain secret)".into(),
            });
        }
    }
    for p in pairs {
        let for_s = now.saturating_sub(p.state_since);
        if p.state != PairState::Normal && for_s > t.not_normal_s_max {
            let (severity, hint) = match p.state {
                PairState::ToBeSynchronized => (
                    "critical",
                    "the serving side goes on alone and records the DCL; bring the other side or the link back (it resynchronises by itself), see docs/operations.md",
                ),
                PairState::Paused => ("warning", "resume replication with `metrofs pair resume ID` when the pause is over"),
                _ => ("warning", "`metrofs pair show ID --wait` follows the resync; check the link if it does not progress"),
            };
            out.push(Condition {
                id: format!("not_normal:{}", p.id),
                severity,
                pair: Some(p.id.clone()),
                text: format!(
                    "pair {} (fs {}) has been {} for {} s (threshold {} s)",
                    p.id, p.fs, p.state, for_s, t.not_normal_s_max
                ),
                hint: hint.replace("ID", &p.id),
            });
        }
        if p.dcl_growth > t.dcl_growth_bytes_max {
            out.push(Condition {
                id: format!("dcl_growing:{}", p.id),
                severity: "warning",
                pair: Some(p.id.clone()),
                text: format!(
                    "the DCL of pair {} (fs {}) grew by {} in the last {} s (now {}): the other side falls further behind",
                    p.id,
                    p.fs,
                    bytes(p.dcl_growth),
                    t.dcl_growth_window_s,
                    bytes(p.dcl_bytes)
                ),
                hint: format!("resynchronise (`metrofs pair resume {}`) or bring the other side back; the resync copies what the DCL names", p.id),
            });
        }
        for (name, status) in [&p.here, &p.there] {
            if *status == DataStatus::Inconsistent {
                let syncing = p.state == PairState::Synchronizing;
                out.push(Condition {
                    id: format!("inconsistent:{}:{name}", p.id),
                    severity: if syncing { "warning" } else { "critical" },
                    pair: Some(p.id.clone()),
                    text: format!(
                        "{name}'s copy of fs {} (pair {}) is Inconsistent: it cannot take over the service until a resync completes{}",
                        p.fs,
                        p.id,
                        if syncing { " (a resync is running)" } else { "" }
                    ),
                    hint: match p.state {
                        PairState::Synchronizing => format!("`metrofs pair show {} --wait` follows the resync", p.id),
                        PairState::Paused => format!("resynchronise it: `metrofs pair resume {}` on {}, the serving array", p.id, p.serving),
                        _ => format!(
                            "bring {name} and the link back: the resync starts by itself (`metrofs pair show {} --wait` follows it)",
                            p.id
                        ),
                    },
                });
            }
        }
        for (n, text) in p.metro_alarms.iter().enumerate() {
            out.push(Condition {
                id: format!("pair:{}:{n}", p.id),
                severity: "warning",
                pair: Some(p.id.clone()),
                text: format!("pair {} (fs {}): {text}", p.id, p.fs),
                hint: format!(
                    "`metrofs pair show {}` and `metrofs events` tell what happened",
                    p.id
                ),
            });
        }
    }
    out
}

fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        _ => 1,
    }
}

struct State {
    /// Per pair: DCL bytes seen within the window.
    dcl: HashMap<String, VecDeque<(Instant, u64)>>,
    /// Since when the link is seen down.
    link_down_since: Option<Instant>,
    active: BTreeMap<String, AlarmView>,
}

/// The alarm worker of one array and its current alarms.
pub struct AlarmWatcher {
    metro: Arc<Metro>,
    events: Arc<EventLog>,
    clock: Arc<dyn Clock>,
    thresholds: AlarmThresholds,
    peer: Option<String>,
    state: Mutex<State>,
}

impl AlarmWatcher {
    #[must_use]
    pub fn new(
        metro: Arc<Metro>,
        events: Arc<EventLog>,
        clock: Arc<dyn Clock>,
        thresholds: AlarmThresholds,
        peer: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metro,
            events,
            clock,
            thresholds,
            peer,
            state: Mutex::new(State {
                dcl: HashMap::new(),
                link_down_since: None,
                active: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The active alarms, critical first, then oldest first.
    #[must_use]
    pub fn current(&self) -> Vec<AlarmView> {
        let mut v: Vec<AlarmView> = self.lock().active.values().cloned().collect();
        v.sort_by(|a, b| {
            (rank(&a.severity), a.since, &a.id).cmp(&(rank(&b.severity), b.since, &b.id))
        });
        v
    }

    /// Looks at the pairs once: updates the active set, records raised and cleared alarms.
    pub async fn sample(&self) {
        let now_s = u64::from(self.clock.now().sec);
        let pairs = self.metro.list_pairs();
        let link_up = match pairs.first() {
            Some(p) => p.link_up,
            None => self.peer.is_some() && self.metro.wait_link(Duration::ZERO).await,
        };
        // A link down for less than the grace does not count yet.
        let link_up = {
            let mut st = self.lock();
            if link_up {
                st.link_down_since = None;
                true
            } else {
                let since = *st.link_down_since.get_or_insert_with(Instant::now);
                since.elapsed() < Duration::from_millis(LINK_DOWN_GRACE_MS)
            }
        };
        let array = ArraySample {
            peer: self.peer.clone(),
            link_up,
            link_rtt_us: pairs.iter().find_map(|p| p.link_rtt_us),
            quorum: pairs
                .first()
                .map(|p| {
                    p.quorum
                        .iter()
                        .map(|q| (q.addr.clone(), q.reachable, q.last_error.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let samples = self.samples(&pairs);
        let holds = evaluate(now_s, &self.thresholds, &array, &samples);
        let (raised, cleared) = {
            let mut st = self.lock();
            let mut raised = Vec::new();
            let mut keep = BTreeMap::new();
            for c in holds {
                let view = match st.active.remove(&c.id) {
                    // Still holds: keep its `since`, refresh its text (numbers change).
                    Some(old) => AlarmView {
                        text: c.text,
                        hint: c.hint,
                        severity: c.severity.into(),
                        ..old
                    },
                    None => {
                        let v = AlarmView {
                            id: c.id.clone(),
                            severity: c.severity.into(),
                            pair: c.pair,
                            text: c.text,
                            hint: c.hint,
                            since: now_s,
                        };
                        raised.push(v.clone());
                        v
                    }
                };
                keep.insert(view.id.clone(), view);
            }
            let cleared: Vec<AlarmView> = std::mem::replace(&mut st.active, keep)
                .into_values()
                .collect();
            (raised, cleared)
        };
        for (what, a) in raised
            .iter()
            .map(|a| ("raised", a))
            .chain(cleared.iter().map(|a| ("cleared", a)))
        {
            let ev = EventRecord::now(
                &*self.clock,
                EventKind::Alarm,
                a.pair.clone(),
                ACTOR,
                format!("alarm {what} ({}): {}", a.severity, a.text),
            );
            if let Err(e) = self.events.record_async(ev).await {
                tracing::warn!(error = %e, "cannot record an alarm event");
            }
        }
    }

    /// The samples of `pairs`, with each one's DCL growth over the window.
    fn samples(&self, pairs: &[PairView]) -> Vec<PairSample> {
        let now = Instant::now();
        let window = Duration::from_secs(self.thresholds.dcl_growth_window_s);
        let mut st = self.lock();
        st.dcl.retain(|id, _| pairs.iter().any(|p| &p.id == id));
        pairs
            .iter()
            .map(|p| {
                let hist = st.dcl.entry(p.id.clone()).or_default();
                hist.push_back((now, p.dcl_bytes));
                while hist
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > window)
                {
                    hist.pop_front();
                }
                let min = hist.iter().map(|(_, b)| *b).min().unwrap_or(p.dcl_bytes);
                let other = match p.role {
                    Role::Primary => p.secondary.clone(),
                    Role::Secondary => p.serving.clone(),
                };
                PairSample {
                    id: p.id.clone(),
                    fs: p.fs.clone(),
                    state: p.state,
                    state_since: u64::from(p.state_since.sec),
                    here: (self.metro.name().to_owned(), p.local_data),
                    there: (other, p.remote_data),
                    serving: p.serving.clone(),
                    dcl_growth: p.dcl_bytes.saturating_sub(min),
                    dcl_bytes: p.dcl_bytes,
                    metro_alarms: p.alarms.clone(),
                }
            })
            .collect()
    }

    /// Samples every [`SAMPLE_INTERVAL_MS`] until the array stops.
    pub async fn run(self: Arc<Self>, stop: Stop) {
        let mut tick = tokio::time::interval(Duration::from_millis(SAMPLE_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample().await,
                _ = stop.stopped() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(state: PairState, since: u64) -> PairSample {
        PairSample {
            id: "00000000000000ab".into(),
            fs: "demo".into(),
            state,
            state_since: since,
            here: ("site-a".into(), DataStatus::Consistent),
            there: ("site-b".into(), DataStatus::Consistent),
            serving: "site-a".into(),
            dcl_growth: 0,
            dcl_bytes: 0,
            metro_alarms: vec![],
        }
    }

    fn ids(c: &[Condition]) -> Vec<&str> {
        c.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn each_condition() {
        let t = AlarmThresholds {
            not_normal_s_max: 60,
            dcl_growth_window_s: 60,
            dcl_growth_bytes_max: 1 << 20,
            link_rtt_us_max: 5000,
        };
        let up = ArraySample {
            peer: Some("site-b".into()),
            link_up: true,
            link_rtt_us: Some(200),
            quorum: vec![("q1:7300".into(), true, None)],
        };
        // A healthy Normal pair: nothing.
        assert!(evaluate(1000, &t, &up, &[pair(PairState::Normal, 0)]).is_empty());
        // Not Normal: only after the threshold; severity by state.
        assert!(evaluate(1000, &t, &up, &[pair(PairState::Paused, 950)]).is_empty());
        let c = evaluate(1000, &t, &up, &[pair(PairState::ToBeSynchronized, 900)]);
        assert_eq!(ids(&c), ["not_normal:00000000000000ab"]);
        assert_eq!(c[0].severity, "critical");
        assert!(
            c[0].text
                .contains("ToBeSynchronized for 100 s (threshold 60 s)"),
            "{}",
            c[0].text
        );
        let c = evaluate(1000, &t, &up, &[pair(PairState::Paused, 900)]);
        assert_eq!(c[0].severity, "warning");
        assert!(
            c[0].hint.contains("pair resume 00000000000000ab"),
            "{}",
            c[0].hint
        );
        // DCL growing.
        let mut p = pair(PairState::Normal, 0);
        p.dcl_growth = 2 << 20;
        p.dcl_bytes = 5 << 20;
        let c = evaluate(1000, &t, &up, &[p]);
        assert_eq!(ids(&c), ["dcl_growing:00000000000000ab"]);
        assert!(
            c[0].text
                .contains("grew by 2.0 MiB in the last 60 s (now 5.0 MiB)"),
            "{}",
            c[0].text
        );
        // A side Inconsistent: warning while a resync runs, critical otherwise.
        let mut p = pair(PairState::Synchronizing, 999);
        p.there.1 = DataStatus::Inconsistent;
        let c = evaluate(1000, &t, &up, std::slice::from_ref(&p));
        assert_eq!(ids(&c), ["inconsistent:00000000000000ab:site-b"]);
        assert_eq!(c[0].severity, "warning");
        p.state = PairState::ToBeSynchronized;
        assert_eq!(evaluate(1000, &t, &up, &[p])[0].severity, "critical");
        // Link down, slow link, quorum server unreachable.
        let down = ArraySample {
            link_up: false,
            ..up.clone()
        };
        let c = evaluate(1000, &t, &down, &[]);
        assert_eq!(ids(&c), ["link_down"]);
        assert!(c[0].text.contains("to site-b is down"));
        let slow = ArraySample {
            link_rtt_us: Some(7500),
            ..up.clone()
        };
        let c = evaluate(1000, &t, &slow, &[]);
        assert_eq!(ids(&c), ["link_rtt"]);
        assert!(
            c[0].text.contains("7.50 ms, above the 5.00 ms"),
            "{}",
            c[0].text
        );
        let lost = ArraySample {
            quorum: vec![("q1:7300".into(), false, Some("connection refused".into()))],
            ..up.clone()
        };
        let c = evaluate(1000, &t, &lost, &[]);
        assert_eq!(ids(&c), ["quorum_unreachable:q1:7300"]);
        assert!(c[0].text.contains("(connection refused)"));
        // An array on its own has no link alarms.
        assert!(evaluate(1000, &t, &ArraySample::default(), &[]).is_empty());
        // The metro module's own alarms come through.
        let mut p = pair(PairState::Normal, 0);
        p.metro_alarms = vec!["the sides diverged".into()];
        assert!(evaluate(1000, &t, &up, &[p])[0]
            .text
            .ends_with("the sides diverged"));
    }
}
