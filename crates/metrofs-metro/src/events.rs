//! The durable event log of one array: every state change, arbitration, failover, swap, force
//! start, alarm and operator action, with its time, actor and reason.
//!
//! Contract:
//! - [`EventLog::record`] returns once the event is on disk (a redb commit with
//!   `Durability::Immediate`: fsync before it returns), so an event an operator was shown is
//!   never lost by a crash. It blocks for that fsync: call it from a blocking thread, or use
//!   [`EventLog::record_async`].
//! - Ids grow by one per event and are never reused (also across restarts): a reader that saw
//!   id N asks for `after = N` and misses nothing still kept.
//! - The newest [`EVENTS_KEPT_MAX`] events are kept; older ones are dropped as new ones come
//!   (one delete per insert, so the file's size is bounded).
//! - [`EventLog::subscribe`] delivers each event recorded after the call, in id order (a slow
//!   subscriber that falls more than [`SUBSCRIBER_QUEUE_MAX`] behind gets `Lagged` and catches
//!   up with [`EventLog::list`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// id → JSON [`EventRecord`].
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Events kept on disk (about 200 bytes each: ~20 MB at most).
pub const EVENTS_KEPT_MAX: u64 = 100_000;
/// Most events one [`EventLog::list`] returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Events a subscriber may fall behind before it is told it lagged.
pub const SUBSCRIBER_QUEUE_MAX: usize = 1024;
/// Longest text kept for one event, in bytes (longer ones are cut on a char boundary).
pub const TEXT_BYTES_MAX: usize = 4096;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A pair changed state (Normal, Synchronizing, ...).
    State,
    /// The replication link went up or down.
    Link,
    /// A resync started, finished or failed.
    Resync,
    /// An arbitration: who asked, who won, why.
    Arbitration,
    /// A side took over or stopped serving after an arbitration.
    Failover,
    /// A planned switch of the serving side.
    Swap,
    /// An operator made a fenced side serve.
    ForceStart,
    /// An operator action through the API or CLI (create, pause, resume, delete, verify, ...).
    Operator,
    /// An alarm was raised or cleared.
    Alarm,
}

impl EventKind {
    /// Every kind, in declaration order (documentation, validation of filters).
    pub const ALL: [EventKind; 9] = [
        Self::State,
        Self::Link,
        Self::Resync,
        Self::Arbitration,
        Self::Failover,
        Self::Swap,
        Self::ForceStart,
        Self::Operator,
        Self::Alarm,
    ];

    /// The kind's word, as serialized.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Link => "link",
            Self::Resync => "resync",
            Self::Arbitration => "arbitration",
            Self::Failover => "failover",
            Self::Swap => "swap",
            Self::ForceStart => "force_start",
            Self::Operator => "operator",
            Self::Alarm => "alarm",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When it happened, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: EventKind,
    /// The pair it is about (its id, 16 hex digits), if any.
    pub pair: Option<String>,
    /// Who did it: `metro` (the array itself), `alarms`, `cli:USER@ADDR`, `api@ADDR`, ...
    pub actor: String,
    /// What happened and why, for people.
    pub text: String,
}

impl EventRecord {
    /// An event happening now by `clock`.
    #[must_use]
    pub fn now(
        clock: &dyn metrofs_core::Clock,
        kind: EventKind,
        pair: Option<String>,
        actor: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self { time_ms: clock.now().as_nanos() / 1_000_000, kind, pair, actor: actor.into(), text: text.into() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("event log {path}: {message}")]
pub struct EventLogError {
    pub path: PathBuf,
    pub message: String,
}

/// The durable event log (see the module's contract).
pub struct EventLog {
    path: PathBuf,
    db: Database,
    /// Serialises writers, so ids are handed out in commit order.
    write: Mutex<()>,
    tx: broadcast::Sender<(u64, EventRecord)>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens (or creates) the log in file `path` (a redb database of its own).
    pub fn open(path: &Path) -> Result<Arc<Self>, EventLogError> {
        let err = |e: &dyn std::fmt::Display| EventLogError { path: path.to_owned(), message: e.to_string() };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::create(path).map_err(|e| err(&e))?;
        let w = db.begin_write().map_err(|e| err(&e))?;
        w.open_table(EVENTS).map_err(|e| err(&e))?;
        w.commit().map_err(|e| err(&e))?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            db,
            write: Mutex::new(()),
            tx: broadcast::channel(SUBSCRIBER_QUEUE_MAX).0,
        }))
    }

    fn err(&self, e: impl std::fmt::Display) -> EventLogError {
        EventLogError { path: self.path.clone(), message: e.to_string() }
    }

    /// Appends `ev` durably and returns its id. Blocks for an fsync.
    pub fn record(&self, mut ev: EventRecord) -> Result<u64, EventLogError> {
        if ev.text.len() > TEXT_BYTES_MAX {
            let mut cut = TEXT_BYTES_MAX;
            while !ev.text.is_char_boundary(cut) {
                cut -= 1;
            }
            ev.text.truncate(cut);
        }
        let json = serde_json::to_vec(&ev).map_err(|e| self.err(e))?;
        let _writer = self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        let id = {
            let mut t = w.open_table(EVENTS).map_err(|e| self.err(e))?;
            let last = t.last().map_err(|e| self.err(e))?.map_or(0, |(k, _)| k.value());
            let id = last + 1;
            t.insert(id, json.as_slice()).map_err(|e| self.err(e))?;
            if id > EVENTS_KEPT_MAX {
                t.remove(id - EVENTS_KEPT_MAX).map_err(|e| self.err(e))?;
            }
            id
        };
        // Durability::Immediate (redb's default): on disk when commit returns.
        w.commit().map_err(|e| self.err(e))?;
        // Nobody listening is fine.
        let _ = self.tx.send((id, ev));
        Ok(id)
    }

    /// [`EventLog::record`] on a blocking thread.
    pub async fn record_async(self: &Arc<Self>, ev: EventRecord) -> Result<u64, EventLogError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.record(ev))
            .await
            .map_err(|e| self.err(format!("record task failed: {e}")))?
    }

    /// Events with an id above `after`, oldest first, at most `limit` (capped at
    /// [`LIST_LIMIT_MAX`]); with `after = None`, the newest `limit` events, oldest first.
    pub fn list(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, EventRecord)>, EventLogError> {
        let limit = limit.min(LIST_LIMIT_MAX);
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        let decode = |row: Result<(redb::AccessGuard<'_, u64>, redb::AccessGuard<'_, &[u8]>), redb::StorageError>| {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let ev: EventRecord = serde_json::from_slice(v.value()).map_err(|e| self.err(format!("event {}: {e}", k.value())))?;
            Ok::<_, EventLogError>((k.value(), ev))
        };
        let mut out = Vec::with_capacity(limit);
        match after {
            Some(after) => {
                let start = after.saturating_add(1);
                for row in t.range(start..).map_err(|e| self.err(e))?.take(limit) {
                    out.push(decode(row)?);
                }
            }
            None => {
                for row in t.iter().map_err(|e| self.err(e))?.rev().take(limit) {
                    out.push(decode(row)?);
                }
                out.reverse();
            }
        }
        Ok(out)
    }

    /// The id of the newest event (0 when there is none).
    pub fn last_id(&self) -> Result<u64, EventLogError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(EVENTS).map_err(|e| self.err(e))?;
        let last = t.last().map_err(|e| self.err(e))?.map_or(0, |(k, _)| k.value());
        Ok(last)
    }

    /// Events recorded from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<(u64, EventRecord)> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> EventRecord {
        EventRecord {
            time_ms: 1_700_000_000_000 + n,
            kind: EventKind::Operator,
            pair: Some(format!("{n:016x}")),
            actor: "cli:root@127.0.0.1".into(),
            text: format!("event {n}"),
        }
    }

    #[test]
    fn records_lists_and_survives_reopen() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("events.redb");
        let log = EventLog::open(&path).expect("open");
        assert_eq!(log.last_id().expect("last"), 0);
        assert!(log.list(None, 10).expect("list").is_empty());
        for n in 1..=5 {
            assert_eq!(log.record(ev(n)).expect("record"), n);
        }
        let newest = log.list(None, 2).expect("list");
        assert_eq!(newest.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(newest[1].1, ev(5));
        let after = log.list(Some(2), 2).expect("list");
        assert_eq!(after.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 4]);
        assert!(log.list(Some(5), 10).expect("list").is_empty());
        assert!(log.list(Some(u64::MAX), 10).expect("list").is_empty());
        drop(log);
        // Ids go on after a restart; nothing was lost.
        let log = EventLog::open(&path).expect("reopen");
        assert_eq!(log.list(None, 100).expect("list").len(), 5);
        assert_eq!(log.record(ev(6)).expect("record"), 6);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = EventLog::open(&tmp.path().join("e.redb")).expect("open");
        let mut e = ev(1);
        e.text = "é".repeat(TEXT_BYTES_MAX);
        log.record(e).expect("record");
        let (_, back) = log.list(None, 1).expect("list").remove(0);
        assert!(back.text.len() <= TEXT_BYTES_MAX && back.text.chars().all(|c| c == 'é'));
    }

    #[tokio::test]
    async fn subscribers_get_new_events_in_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = EventLog::open(&tmp.path().join("e.redb")).expect("open");
        log.record(ev(1)).expect("before subscribing");
        let mut rx = log.subscribe();
        log.record_async(ev(2)).await.expect("record");
        log.record_async(ev(3)).await.expect("record");
        assert_eq!(rx.recv().await.expect("event"), (2, ev(2)));
        assert_eq!(rx.recv().await.expect("event"), (3, ev(3)));
        let kinds: Vec<String> = EventKind::ALL.iter().map(|k| serde_json::to_string(k).expect("json")).collect();
        assert!(kinds.contains(&"\"force_start\"".to_owned()));
        assert_eq!(EventKind::ForceStart.to_string(), "force_start");
    }
}
