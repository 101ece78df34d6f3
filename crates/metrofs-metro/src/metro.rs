//! [`Metro`]: the HyperMetro module of one array. It serves the [`Backend`] seam for every fs of
//! the array; for a paired fs on its serving side it runs the write I/O process of DESIGN.md
//! ([`Metro::dual_change`]), on the other side it applies what the serving side replicates.
//!
//! Owns: the pair records (in `metro.redb`), the LOG ([`ActivityLog`]), the DCL ([`Dcl`]), the
//! range locks, the link to the peer array and the resync workers. The pair state machines
//! ([`Engine`]) decide; this module carries out their commands.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrofs_core::{
    Attr, Backend, Caller, Epoch, ExportInfo, ExportRules, FsError, FsId, FsOp, FsStat, Ino, OpBody, OpReply, ReadDirPage, ReadReply,
    ReplyKey, Seq, Stability, SyncOp, Time,
};
use metrofs_link::{Identity, Link, LinkConfig};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::arbiter::{ArbitrationConfig, Claim, Mode, ModeStep, Plan, QuorumServerView, Recovery, Situation};
use crate::array::Array;
use crate::error::ArrayError;
use crate::dcl::{Dcl, DclKey, DCL_CHUNK_BYTES};
use crate::engine::{Command, DataStatus, Engine, Event, PairState, Refused, Role};
use crate::locks::{RangeGuard, RangeLocks, WHOLE};
use crate::log::{ActivityLog, LogKey, LOG_REGION_BYTES};
use crate::proto::{self, PairId, PairRecord, Request, Response};
use crate::resync::{Progress, ResyncHandle, VerifyProgress};

/// pair id → JSON `PairRecord`.
const PAIRS: TableDefinition<u64, &[u8]> = TableDefinition::new("pairs");
/// Array-wide settings this module keeps (`mode`: the arbitration mode agreed with the peer).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// How long a change waits for an arbitration (or a swap) before the host is told to retry.
const DECIDING_WAIT_MS: u64 = 20_000;
/// Between two attempts of a resync that failed while the link stayed up.
const RESYNC_RETRY_MS: u64 = 2000;
/// Inodes whose LOG keys [`Metro::reserve_upcoming`] makes resident at a time.
const LOG_RESERVE_INODES: usize = 64;
/// How long after it stopped serving a pair this side drops the connections of hosts that
/// still come here, instead of answering them JUKEBOX.
const MOVED_DROP_WINDOW_MS: u64 = 5000;
/// Replica-applied keys kept for the takeover's "recent changes" (bounded).
const RECENT_REPLICA_KEYS_MAX: usize = 200_000;
/// Events kept in memory for `pair show` (the durable event log is the operator issue's).
const EVENTS_KEPT_MAX: usize = 256;
/// How far back a peer that stopped may have lost acknowledged changes from its cache (its
/// store's background flush runs every `sync_interval_ms`, 1 s by default, keep it below this).
const PEER_CACHE_WINDOW_MS: u64 = 3000;
/// How long to wait before dialling the peer again after a failure.
const REDIAL_MS: u64 = 500;

/// Where the peer array is and how to reach it.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This array's link listener.
    pub listen: std::net::SocketAddr,
    /// The peer's link address.
    pub addr: String,
    /// The peer's array name (proven by the handshake).
    pub name: String,
    pub identity: Identity,
    pub link: LinkConfig,
}

/// How this array takes part in its domain.
#[derive(Clone, Debug)]
pub struct MetroConfig {
    /// This array's name in the domain.
    pub name: String,
    /// Whether this array is the domain's preferred site.
    pub preferred: bool,
    /// The peer array; `None` for an array on its own (no pairs possible).
    pub peer: Option<PeerConfig>,
    /// Quorum servers and the arbitration policy.
    pub arbitration: ArbitrationConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum MetroError {
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("file system '{0}' does not exist on this array (see `metrofs fs list`)")]
    NoFs(String),
    #[error("file system '{0}' is already paired (pair {1})")]
    AlreadyPaired(String, PairId),
    #[error("pair {0} does not exist (see `metrofs pair list`)")]
    NoPair(PairId),
    #[error("this array has no peer configured: add a [peer] section to its configuration")]
    NoPeer,
    #[error("the peer is '{configured}', not '{asked}'")]
    WrongPeer { configured: String, asked: String },
    #[error("the link to peer '{0}' is down: check that it runs and that the link address is reachable (`metrofs pair list` shows the link)")]
    LinkDown(String),
    #[error("the peer refused: {0}")]
    PeerRefused(String),
    #[error("link error: {0}")]
    Link(String),
    #[error("metro storage error: {0}")]
    Storage(String),
    /// An operator action that cannot run now, with what to do.
    #[error("{0}")]
    NotNow(String),
    /// Export rules of a paired fs asked on an array that may not change them now (the
    /// secondary while the link is down, a side that does not serve the pair now): the
    /// message names the array to ask. Nothing was changed.
    #[error("{0}")]
    ExportElsewhere(String),
    /// Export rules set on the serving side of a pair but not on its twin, which gets them
    /// when the link is next established (see [`Metro::set_export`]).
    #[error("export rules of '{fs}' are set on {serving}, which serves pair {pair}, but {twin} did not take them: {why}; {twin} gets them from {serving} when their link is next established, or set them again to copy them now")]
    ExportNotCopied { fs: String, pair: PairId, serving: String, twin: String, why: String },
    /// A catalog error of this array (an fs that does not exist, a store failure).
    #[error(transparent)]
    Array(#[from] ArrayError),
}

fn storage<E: std::fmt::Display>(e: E) -> MetroError {
    MetroError::Storage(e.to_string())
}

/// A pair as `pair list` / `pair show` report it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairView {
    pub id: String,
    pub fs: String,
    pub fs_id: FsId,
    pub state: PairState,
    pub role: Role,
    pub serving: String,
    pub secondary: String,
    pub preferred_site: String,
    pub local_data: DataStatus,
    pub remote_data: DataStatus,
    pub link_up: bool,
    pub link_rtt_us: Option<u64>,
    pub epoch: u64,
    pub dcl_bytes: u64,
    pub dcl_dirs: usize,
    pub dcl_inodes: usize,
    pub dcl_chunks: usize,
    pub dcl_full: bool,
    pub sync: Option<Progress>,
    /// The running `pair verify`, or the last one (status Done / Failed) since the start.
    pub verify: Option<VerifyProgress>,
    pub alarms: Vec<String>,
    pub events: Vec<String>,
    /// Whether this side acknowledges changes now: Open (serving), Deciding (an arbitration
    /// or a swap is running: changes wait), Stopped (not serving).
    pub phase: Phase,
    /// `quorum` or `static-priority` (see `arbiter.rs`).
    pub quorum_mode: String,
    pub quorum: Vec<QuorumServerView>,
    pub last_arbitration: Option<ArbitrationView>,
    /// When the pair entered its current state (this array's clock).
    pub state_since: Time,
    /// The serving side got its epoch by a force start.
    pub forced: bool,
}

/// Whether one side acknowledges changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Open,
    Deciding,
    Stopped,
}

/// The last arbitration of a pair, as this side saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbitrationView {
    pub time: Time,
    /// The array that asked (this one).
    pub asked_by: String,
    /// Who serves after it (None: nobody could be decided yet).
    pub winner: Option<String>,
    pub epoch: u64,
    pub reason: String,
}

/// What the array's service address should do: held by the array that serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// This array holds the service address: it serves at least one pair of `confirmed` (or,
    /// with no pair, it is the preferred site).
    pub active: bool,
    /// The paired file systems this array serves now, or may serve: a restarted array's pairs
    /// are here while it learns whether it still holds them (their calls wait).
    pub serving: Vec<FsId>,
    /// Those of `serving` this process knows it holds: open, or deciding after they were open
    /// (an arbitration while serving keeps the address). A restarted array does not take the
    /// address on its old word: the other array may have taken over meanwhile and hold it, and
    /// a second holder's announcements would pull the hosts' connections away from it.
    pub confirmed: Vec<FsId>,
}

/// What `pair verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub inodes_compared: u64,
    pub bytes_compared: u64,
    pub differences: Vec<String>,
}

/// Idempotence of replicated ops on the receiving side: the (session, seq) already applied.
#[derive(Debug, Default)]
struct SeqWindow {
    session: u64,
    /// Every seq below this was applied (or skipped); above it, the set.
    floor: u64,
    above: std::collections::BTreeSet<u64>,
}

impl SeqWindow {
    /// Records `seq`; false when it was applied already.
    fn admit(&mut self, session: u64, seq: u64) -> bool {
        if session != self.session {
            // A new sender run: its seqs start again. A late op of the old session is refused
            // by its epoch or simply lands as a fresh op; the old session's ops were either
            // answered (and DCL'd on the sender if they failed) or never sent.
            *self = Self { session, floor: 0, above: Default::default() };
        }
        if seq < self.floor || !self.above.insert(seq) {
            return false;
        }
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
        // Keep the window bounded: a gap older than 64k ops is a lost op, never resent.
        if self.above.len() > 65_536 {
            if let Some(&first) = self.above.iter().next() {
                self.floor = first;
                while self.above.remove(&self.floor) {
                    self.floor += 1;
                }
            }
        }
        true
    }
}

/// One pair on this array.
pub(crate) struct PairRt {
    pub(crate) record: Mutex<PairRecord>,
    engine: Mutex<Engine>,
    seq: AtomicU64,
    window: Mutex<SeqWindow>,
    alarms: Mutex<Vec<String>>,
    events: Mutex<VecDeque<String>>,
    pub(crate) resync: Mutex<Option<ResyncHandle>>,
    /// `pair verify`'s progress (running or last).
    pub(crate) verify: Arc<Mutex<Option<VerifyProgress>>>,
    /// Serving side: the number the next namespace op gets (see [`proto::Order`]).
    next_order: Mutex<proto::Order>,
    /// Receiving side: the namespace op whose turn it is.
    turns: Mutex<Turns>,
    turn_changed: tokio::sync::Notify,
    phase: tokio::sync::watch::Sender<Phase>,
    /// Changes hold it shared; a planned swap takes it exclusively to drain them.
    gate: tokio::sync::RwLock<()>,
    /// Held while the serving side sends its pair record to the twin: one `Record` at a time,
    /// each the latest when it is sent (see `Command::Persist`).
    record_send: tokio::sync::Mutex<()>,
    last_arbitration: Mutex<Option<ArbitrationView>>,
    since: Mutex<Time>,
    /// The array's durable event log, once the daemon has opened it.
    sink: EventSink,
    /// When this side last stopped serving the pair, and when it last dropped the NFS
    /// connections of a host that still came here (see [`Metro::not_serving`]).
    moved: Mutex<Option<(Instant, Instant)>>,
}

/// Receiving side: which namespace op of which sender run and link session may be applied.
#[derive(Debug, Default)]
struct Turns {
    session: u64,
    link: u64,
    next: u64,
}

/// A namespace op's turn to be applied; the next one's turn when dropped.
struct Turn<'a> {
    pair: &'a PairRt,
    session: u64,
    order: proto::Order,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut t = lock(&self.pair.turns);
        if (t.session, t.link, t.next) == (self.session, self.order.link, self.order.n) {
            t.next += 1;
        }
        self.pair.turn_changed.notify_waiters();
    }
}

/// What a listing answer (entries, inode numbers) may take of a link header, estimated.
const LIST_PAGE_BYTES: usize = 32 << 10;
const _: () = assert!(LIST_PAGE_BYTES * 2 <= metrofs_link::frame::HEADER_MAX_BYTES);

/// The first items of `all` whose estimated encoded size fits a listing page, and whether
/// any are left.
fn page<T: Clone>(all: &[T], size: impl Fn(&T) -> usize) -> (Vec<T>, bool) {
    let mut used = 0;
    let mut n = 0;
    for item in all {
        used += size(item);
        if used > LIST_PAGE_BYTES && n > 0 {
            break;
        }
        n += 1;
    }
    (all[..n].to_vec(), n < all.len())
}

/// How long a namespace op waits on the receiving side for the ones numbered before it.
const ORDER_WAIT_MS: u64 = 5_000;

/// Where pair events go durably (set once by the daemon).
type EventSink = Arc<std::sync::OnceLock<Arc<crate::events::EventLog>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PairRt {
    fn new(record: PairRecord, me: &str, now: Time, sink: EventSink) -> Self {
        let role = if record.primary == me { Role::Primary } else { Role::Secondary };
        Self {
            phase: tokio::sync::watch::Sender::new(if role == Role::Primary { Phase::Open } else { Phase::Stopped }),
            gate: tokio::sync::RwLock::new(()),
            record_send: tokio::sync::Mutex::new(()),
            last_arbitration: Mutex::new(None),
            since: Mutex::new(now),
            sink,
            moved: Mutex::new(None),
            engine: Mutex::new(Engine::new(record.state, role)),
            record: Mutex::new(record),
            seq: AtomicU64::new(0),
            window: Mutex::new(SeqWindow::default()),
            alarms: Mutex::new(Vec::new()),
            events: Mutex::new(VecDeque::new()),
            resync: Mutex::new(None),
            verify: Arc::default(),
            next_order: Mutex::new(proto::Order { link: 0, n: 0 }),
            turns: Mutex::new(Turns::default()),
            turn_changed: tokio::sync::Notify::new(),
        }
    }

    /// The number of the next namespace op sent on link session `link` (call under the
    /// namespace order lock).
    fn next_order(&self, link: u64) -> proto::Order {
        let mut o = lock(&self.next_order);
        if o.link != link {
            *o = proto::Order { link, n: 0 };
        }
        let this = *o;
        o.n += 1;
        this
    }

    /// Receiving side: waits until namespace op `order` of sender run `session` may be
    /// applied (every one numbered before it on its link session was handled). The returned
    /// turn passes to the next number when dropped, whether the op was applied or refused.
    async fn wait_turn(&self, session: u64, order: proto::Order) -> Result<Turn<'_>, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ORDER_WAIT_MS);
        loop {
            let changed = self.turn_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut t = lock(&self.turns);
                if (t.session, t.link) != (session, order.link) {
                    if t.session == session && order.link < t.link {
                        return Err(format!("namespace op {} of an old link session ({} < {}) refused", order.n, order.link, t.link));
                    }
                    // A new link (or a new sender run): its numbers start at 0.
                    *t = Turns { session, link: order.link, next: 0 };
                    self.turn_changed.notify_waiters();
                }
                match t.next.cmp(&order.n) {
                    std::cmp::Ordering::Equal => return Ok(Turn { pair: self, session, order }),
                    std::cmp::Ordering::Greater => return Err(format!("namespace op {} of link session {} came after its turn", order.n, order.link)),
                    std::cmp::Ordering::Less => {}
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                // The ones before it never came (the sender's link broke while it sent them):
                // this op is refused and the order goes on after it, so the sender sees the
                // failure, records the difference in its DCL and arbitrates.
                let mut t = lock(&self.turns);
                if (t.session, t.link) == (session, order.link) && t.next <= order.n {
                    let missing = t.next;
                    t.next = order.n + 1;
                    self.turn_changed.notify_waiters();
                    return Err(format!(
                        "namespace op {} waited {ORDER_WAIT_MS} ms for op {missing} of link session {}, which never came",
                        order.n, order.link
                    ));
                }
            }
        }
    }

    pub(crate) fn id(&self) -> PairId {
        lock(&self.record).id
    }

    pub(crate) fn fs(&self) -> FsId {
        lock(&self.record).fs
    }

    pub(crate) fn epoch(&self) -> Epoch {
        lock(&self.record).epoch
    }

    pub(crate) fn state(&self) -> PairState {
        lock(&self.engine).state()
    }

    fn role(&self) -> Role {
        lock(&self.engine).role()
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn set_phase(&self, p: Phase) {
        self.phase.send_if_modified(|cur| std::mem::replace(cur, p) != p);
    }

    pub(crate) fn event(&self, text: String) {
        use crate::events::EventKind;
        let kind = if text.starts_with("planned swap") || text.contains("planned swap") {
            EventKind::Swap
        } else if text.contains("force start") {
            EventKind::ForceStart
        } else if text.starts_with("service taken over") {
            EventKind::Failover
        } else if text.starts_with("arbitration") {
            EventKind::Arbitration
        } else if text.starts_with("resync") {
            EventKind::Resync
        } else if text.contains("by the operator") {
            EventKind::Operator
        } else {
            EventKind::State
        };
        self.event_as(kind, text);
    }

    /// An event for `pair show` and the log lines only: what the durable event log has from
    /// elsewhere already (an operator's action is recorded there by the API that ran it).
    pub(crate) fn note(&self, text: String) {
        tracing::info!(pair = %self.id(), "{text}");
        self.remember(text);
    }

    pub(crate) fn event_as(&self, kind: crate::events::EventKind, text: String) {
        tracing::info!(pair = %self.id(), "{text}");
        if let Some(log) = self.sink.get() {
            let rec = crate::events::EventRecord {
                time_ms: metrofs_core::Clock::now(&metrofs_core::SystemClock).as_nanos() / 1_000_000,
                kind,
                pair: Some(self.id().to_string()),
                actor: "metro".into(),
                text: text.clone(),
            };
            if let Err(e) = log.record(rec) {
                tracing::error!(error = %e, "cannot record an event");
            }
        }
        self.remember(text);
    }

    /// Keeps `text` among the recent events `pair show` lists.
    fn remember(&self, text: String) {
        let mut e = lock(&self.events);
        e.push_back(text);
        while e.len() > EVENTS_KEPT_MAX {
            e.pop_front();
        }
    }
}

/// The metro module of one array.
pub struct Metro {
    array: Arc<Array>,
    config: MetroConfig,
    db: Arc<Database>,
    log: Arc<ActivityLog>,
    /// Wakes the LOG's eager flusher (see [`Metro::log_flusher`]); a full channel means a
    /// flush is already due.
    log_appended: tokio::sync::mpsc::Sender<()>,
    pub(crate) dcl: Arc<Dcl>,
    pub(crate) locks: Arc<RangeLocks>,
    pairs: RwLock<HashMap<FsId, Arc<PairRt>>>,
    link: tokio::sync::watch::Sender<Option<Link>>,
    /// Incremented each time a link is published: which link a replicated change used.
    link_session: AtomicU64,
    /// Random per process start: with `seq`, makes replicated ops idempotent.
    session: u64,
    /// Itself, for the `Backend` methods that take `&self`.
    me: std::sync::Weak<Metro>,
    /// `data_dir/metro`.
    dir: PathBuf,
    /// The arbitration mode agreed with the peer (persisted in `META`).
    mode: Mutex<Mode>,
    /// What the peer last said of its reach to the quorum.
    peer_reach: Mutex<Option<bool>>,
    service: tokio::sync::watch::Sender<ServiceState>,
    /// Keys this array applied as a replica, with when: on a takeover, what the old serving
    /// side may have lost with its cache, or never applied itself.
    recent: Mutex<VecDeque<(Instant, FsId, LogKey)>>,
    link_ever_up: std::sync::atomic::AtomicBool,
    /// Called (synchronously) when this array stops serving a pair: the daemon closes the NFS
    /// connections so that clients reconnect to the serving side.
    on_service_lost: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    sink: EventSink,
}

impl std::fmt::Debug for Metro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metro").field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl Metro {
    /// Opens the metro state in `dir` (`metro.redb`, `metro.log`). What a previous run left
    /// in the LOG (changes possibly half dual-written when it stopped) goes to the DCL first.
    pub async fn open(array: Arc<Array>, dir: &Path, config: MetroConfig) -> Result<Arc<Self>, MetroError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = Arc::new(Database::create(dir.join("metro.redb")).map_err(storage)?);
        {
            let w = db.begin_write().map_err(storage)?;
            w.open_table(PAIRS).map_err(storage)?;
            w.open_table(META).map_err(storage)?;
            w.commit().map_err(storage)?;
        }
        let clock_now = array.now();
        let sink: EventSink = Arc::default();
        let dcl = Dcl::open(db.clone()).map_err(storage)?;
        let (log, left) = ActivityLog::open(&dir.join("metro.log")).map_err(storage)?;
        let mut pairs = HashMap::new();
        {
            let r = db.begin_read().map_err(storage)?;
            for row in r.open_table(PAIRS).map_err(storage)?.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                let mut rec: PairRecord = serde_json::from_slice(v.value()).map_err(storage)?;
                let was = rec.state;
                // The serving side's word may claim more than holds after a stop: no resync
                // worker outlives its process, and a kill between a DCL mark and the state's
                // persist leaves Normal over a dirty DCL. Kept, the first would never resync
                // (the link's return only restarts a ToBeSynchronized pair) and the second
                // would call a twin whole that is not. ToBeSynchronized is the truth; the
                // link's return starts the resync.
                let stale = rec.primary == config.name
                    && match rec.state {
                        PairState::Synchronizing => true,
                        PairState::Normal => !dcl.is_empty(rec.fs),
                        PairState::ToBeSynchronized | PairState::Paused => false,
                    };
                if stale {
                    rec.state = PairState::ToBeSynchronized;
                }
                let rt = PairRt::new(rec, &config.name, clock_now, sink.clone());
                if stale {
                    rt.note(format!("pair state {was} -> ToBeSynchronized: {was} when this array stopped, with changes left in the DCL or a resync that ended with the process; the resync starts when the link is up"));
                }
                // A serving side that was replicating when it stopped does not know whether
                // the other took over meanwhile: it serves again only once the link or an
                // arbitration says it still holds the pair.
                // Meanwhile host calls wait (Deciding), they are not refused.
                if config.peer.is_some() && rt.role() == Role::Primary && was.replicates() {
                    rt.set_phase(Phase::Deciding);
                }
                pairs.insert(rt.fs(), Arc::new(rt));
            }
        }
        let mode = {
            let r = db.begin_read().map_err(storage)?;
            let stored = r.open_table(META).map_err(storage)?.get("mode").map_err(storage)?.map(|v| serde_json::from_slice::<Mode>(v.value()));
            match (stored, config.arbitration.quorum.is_some()) {
                (_, false) => Mode::Static,
                (Some(Ok(m)), true) => m,
                _ => Mode::Quorum,
            }
        };
        // Crash recovery: every key left in the LOG may differ between the sides.
        // A key reserved for an inode never made (`Metro::reserve_upcoming`) names no data.
        let store = array.store();
        let by_fs = log_to_dcl(left, |fs| pairs.contains_key(&fs), |fs, ino| !matches!(store.inode(fs, ino), Ok(None)));
        let recovered = !by_fs.is_empty();
        for (fs, keys) in by_fs {
            tracing::warn!(%fs, keys = keys.len(), "changes in flight at the last stop moved from the LOG to the DCL");
            dcl.mark(fs, keys).await.map_err(storage)?;
        }
        // Only now that the DCL holds them durably may the LOG forget them.
        log.reset().map_err(storage)?;
        let (link, _) = tokio::sync::watch::channel(None);
        let log = Arc::new(log);
        let (log_appended, appended) = tokio::sync::mpsc::channel(1);
        tokio::spawn(Self::log_flusher(log.clone(), appended));
        let metro = Arc::new_cyclic(|me| Self {
            array,
            config,
            db,
            log,
            log_appended,
            dcl,
            locks: Arc::new(RangeLocks::default()),
            pairs: RwLock::new(pairs),
            link,
            link_session: AtomicU64::new(0),
            session: rand::random(),
            me: me.clone(),
            dir: dir.to_owned(),
            mode: Mutex::new(mode),
            peer_reach: Mutex::new(None),
            service: tokio::sync::watch::Sender::new(ServiceState::default()),
            recent: Mutex::new(VecDeque::new()),
            link_ever_up: std::sync::atomic::AtomicBool::new(false),
            on_service_lost: Mutex::new(None),
            sink,
        });
        metro.publish_service();
        if recovered {
            for p in metro.pair_list() {
                if p.role() == Role::Primary && p.state() == PairState::Normal {
                    metro.on_event(&p, Event::RemoteFailed { reason: "this array stopped with changes in flight; they are in the DCL".into() });
                }
            }
        }
        Ok(metro)
    }

    /// Flushes the LOG soon after records are appended to it, so that the COMMIT or stable
    /// write that will need them durable usually finds them so: a new file's CREATE and WRITE
    /// append its keys, and its COMMIT, a few hundred µs later, otherwise waited for that
    /// flush on top of its own (about 1.2 ms of a small file's paired COMMIT here). One flush
    /// at a time; the appends made during one are covered by the next. Ends with the Metro
    /// (its sender). A failed flush is kept by the LOG and reported by every later wait for
    /// it; this task only logs it.
    async fn log_flusher(log: Arc<ActivityLog>, mut appended: tokio::sync::mpsc::Receiver<()>) {
        while appended.recv().await.is_some() {
            let l = log.clone();
            match tokio::task::spawn_blocking(move || l.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "eager LOG flush failed; the changes waiting for the LOG fail with it"),
                Err(e) => tracing::warn!(error = %e, "eager LOG flush task failed"),
            }
        }
    }

    #[must_use]
    pub fn array(&self) -> &Arc<Array> {
        &self.array
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn pair_list(&self) -> Vec<Arc<PairRt>> {
        self.pairs.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    fn pair_of(&self, fs: FsId) -> Option<Arc<PairRt>> {
        self.pairs.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&fs).cloned()
    }

    fn pair_by_id(&self, id: PairId) -> Option<Arc<PairRt>> {
        self.pair_list().into_iter().find(|p| p.id() == id)
    }

    pub(crate) fn current_link(&self) -> Option<Link> {
        self.link.borrow().clone()
    }

    /// Persists a pair record durably (before anything is acknowledged under it).
    fn persist(&self, rec: &PairRecord) -> Result<(), MetroError> {
        let w = self.db.begin_write().map_err(storage)?;
        {
            let mut t = w.open_table(PAIRS).map_err(storage)?;
            let v = serde_json::to_vec(rec).map_err(storage)?;
            t.insert(rec.id.0, v.as_slice()).map_err(storage)?;
        }
        w.commit().map_err(storage)
    }

    fn forget(&self, id: PairId) -> Result<(), MetroError> {
        let w = self.db.begin_write().map_err(storage)?;
        w.open_table(PAIRS).map_err(storage)?.remove(id.0).map_err(storage)?;
        w.commit().map_err(storage)
    }

    /// Feeds an event to a pair's engine and carries out its commands.
    pub(crate) fn on_event(self: &Arc<Self>, pair: &Arc<PairRt>, event: Event) {
        let resync_failed = matches!(event, Event::ResyncFailed { .. });
        let resync_done = matches!(event, Event::ResyncDone);
        let (cmds, before, after, role) = {
            let mut e = lock(&pair.engine);
            let before = e.state();
            let cmds = e.on(event);
            (cmds, before, e.state(), e.role())
        };
        if before != after {
            *lock(&pair.since) = self.array.now();
        }
        self.run(pair, cmds);
        if role != Role::Primary {
            return;
        }
        if resync_failed && after == PairState::ToBeSynchronized {
            // The link may still be up (the peer refused a step while it was changing roles):
            // try again shortly rather than wait for a link loss that may never come.
            let (m, p) = (self.clone(), pair.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(RESYNC_RETRY_MS)).await;
                if m.current_link().is_some() && p.state() == PairState::ToBeSynchronized && p.role() == Role::Primary {
                    m.on_event(&p, Event::Resume);
                }
            });
        }
        if resync_done
            && after == PairState::Normal
            && !self.config.preferred
            && self.config.peer.is_some()
            && self.config.arbitration.recovery == Recovery::Automatic
        {
            let (m, id) = (self.clone(), pair.id());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match m.swap(id).await {
                    Ok(_) => tracing::info!(pair = %id, "recovery policy automatic: service moved back to the preferred site"),
                    Err(e) => tracing::warn!(pair = %id, error = %e, "recovery policy automatic: the swap back to the preferred site did not happen; `metrofs pair swap` retries it"),
                }
            });
        }
    }

    fn run(self: &Arc<Self>, pair: &Arc<PairRt>, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::Persist => {
                    let rec = {
                        let mut r = lock(&pair.record);
                        r.state = pair.state();
                        r.clone()
                    };
                    if let Err(e) = self.persist(&rec) {
                        tracing::error!(error = %e, "cannot persist the pair record");
                    }
                    if let Some(link) = self.current_link() {
                        if rec.primary == self.config.name {
                            // One call at a time, each with the record as it is when sent: two
                            // quick changes (Synchronizing, then Normal after an empty resync)
                            // sent by two tasks could otherwise reach the twin in the wrong
                            // order, and the twin would stay Synchronizing, its copy marked
                            // Inconsistent, while this side is Normal.
                            let (name, pair) = (self.config.name.clone(), pair.clone());
                            tokio::spawn(async move {
                                let _one = pair.record_send.lock().await;
                                let rec = lock(&pair.record).clone();
                                if rec.primary == name {
                                    let _ = link.call_typed::<Request, Response>(&Request::Record { pair: rec }, Bytes::new()).await;
                                }
                            });
                        }
                    }
                }
                Command::StartResync => crate::resync::start(self.clone(), pair.clone()),
                Command::StopResync => {
                    if let Some(h) = lock(&pair.resync).take() {
                        h.stop();
                    }
                }
                Command::Alarm(text) => {
                    tracing::warn!(pair = %pair.id(), "{text}");
                    let mut a = lock(&pair.alarms);
                    if !a.contains(&text) {
                        a.push(text);
                    }
                }
                Command::ClearAlarms => lock(&pair.alarms).clear(),
                Command::Log(text) => pair.event(text),
            }
        }
    }

    // ---------------------------------------------------------------- the write path

    /// The write I/O process of DESIGN.md for one change of a paired fs, on its serving side:
    ///
    /// 1. The host's change reached the metro module (the caller).
    /// 2. Make it fully determined (inode, time: [`Array::determine`]) under the namespace
    ///    lock and the range locks that order it against overlapping changes, and record a
    ///    LOG entry for what it touches ([`ActivityLog::enter`]; durable before any local
    ///    apply that waits for the disk).
    /// 3. Send it to the local store and, over the link, to the remote store, concurrently.
    /// 4. and 5. Each store applies it (into its cache, or its disk for COMMIT / FILE_SYNC)
    ///    and answers.
    /// 6. Gather both results.
    /// 7. Both succeeded alike: release the LOG entry and answer. The remote side failed or
    ///    answered differently: record the difference in the DCL (durable before the answer),
    ///    tell the pair's engine (the pair leaves Normal), and answer with the local result:
    ///    this side serves (static priority; the arbitration issue asks the quorum first).
    async fn dual_change(self: &Arc<Self>, pair: &Arc<PairRt>, fs: FsId, body: OpBody, key: Option<ReplyKey>) -> Result<OpReply, FsError> {
        // A planned swap drains changes by taking this exclusively.
        let _gate = pair.gate.read().await;
        if pair.role() != Role::Primary || pair.phase() == Phase::Stopped {
            return Err(self.refuse(pair).await);
        }
        // Step 2: order and determine. A namespace op takes the fs's order lock: its local
        // apply and its number in the twin's order happen under it, in the same order; the
        // round trip to the twin happens after it is released, so namespace ops pipeline.
        let ordered = Array::is_namespace(&body);
        let ns = self.array.namespace_lock(fs);
        let order = if ordered { Some(ns.order.lock().await) } else { None };
        let _in_flight = if ordered { Some(ns.in_flight.read().await) } else { None };
        let (_ranges, touched) = self.range_locks(fs, &body).await?;
        let op = self.array.determine(fs, body)?;
        if let Some(n) = op.new_inode {
            if !self.log.is_resident(fs, &reserved_keys(n.ino)) {
                self.reserve_upcoming(fs);
            }
        }
        let mut log_keys = log_keys(&op);
        log_keys.extend(touched.iter().map(|i| LogKey::Object(*i)));
        log_keys.sort_unstable();
        log_keys.dedup();
        self.log.enter(fs, &log_keys).map_err(|e| {
            metrofs_core::metrics::get().error("log");
            FsError::Io(format!("LOG append failed: {e}"))
        })?;
        if !self.log.is_durable() {
            // Full: a flush is due already, and covers these records too.
            let _ = self.log_appended.try_send(());
        }
        // A COMMIT of a file that no other change touches right now (its own LOG keys aside:
        // they were entered just above) may flush the LOG alongside its data (see `dual_apply`).
        let commit_alone = match op.body {
            OpBody::Commit { ino } => !self.log.busy(fs, ino, log_keys.iter().filter(|k| k.ino() == ino).count()),
            _ => false,
        };
        let result = self.dual_apply(pair, op, key, &touched, order, commit_alone).await;
        // Both sides have it in order: the next change may go.
        drop(_ranges);
        drop(_in_flight);
        // This side is the resync source when it restarts after a crash, so a change it
        // acknowledges must survive its own `kill -9`: the store's op journal does that (every
        // applied op is appended with one write() before apply returns, and replayed at
        // open), so no flush is needed here; COMMIT and FILE_SYNC flush for power loss.
        self.log.leave(fs, &log_keys);
        result
    }

    /// Makes the LOG keys of the inodes the next [`LOG_RESERVE_INODES`] creations in `fs` will
    /// get resident ahead (their attributes and first data region): a new file's CREATE, first
    /// WRITE and COMMIT then append nothing, and its COMMIT finds the LOG durable (the eager
    /// flusher flushed the reservation meanwhile) instead of waiting for a flush of its own on
    /// top of its data's. Called, under the namespace order lock, by a creating op whose inode
    /// was not reserved. A forecast: an inode freed meanwhile is taken first, and its creation
    /// appends as before. Failing changes nothing of the write path (the op's own `enter`
    /// reports a broken LOG).
    fn reserve_upcoming(&self, fs: FsId) {
        let keys: Vec<LogKey> = match self.array.store().upcoming_inodes(fs, LOG_RESERVE_INODES) {
            Ok(inos) => inos.into_iter().flat_map(reserved_keys).collect(),
            Err(e) => {
                tracing::debug!(%fs, error = %e, "no LOG reservation: cannot read the inode allocator");
                return;
            }
        };
        if let Err(e) = self.log.reserve(fs, &keys) {
            tracing::debug!(%fs, error = %e, "no LOG reservation");
        }
    }

    /// Steps 3–7 of [`Metro::dual_change`]. `order` is the namespace order lock of a namespace
    /// op: released as soon as the local apply is done and the op is queued on the link.
    /// `commit_alone`: the op is a COMMIT of a file with no other change in flight.
    async fn dual_apply(
        self: &Arc<Self>,
        pair: &Arc<PairRt>,
        op: FsOp,
        key: Option<ReplyKey>,
        touched: &[Ino],
        order: Option<tokio::sync::MutexGuard<'_, ()>>,
        commit_alone: bool,
    ) -> Result<OpReply, FsError> {
        // Durability order: the LOG records naming the changes in flight must be on disk before
        // this side's disk can hold those changes: flushed here, before the local fsync below
        // (a group commit on a blocking thread; usually the change's keys were resident and
        // flushed long ago, and nothing waits here: the hop to a blocking thread alone was
        // about 100 µs of a FILE_SYNC write). A COMMIT of a file with no change of its own in
        // flight makes only the metadata durable ahead of its time (the journal flush covers
        // every change applied so far): then the flush runs on while the file's data is being
        // synced, and only the metadata waits for it (`Store::commit_after`). A small file's
        // COMMIT always finds the LOG naming the new file not yet flushed: this took one of the
        // four flushes in a row off its path.
        let mut log_target = None;
        if Array::waits_for_disk(&op.body) && !self.log.is_durable() {
            let log = self.log.clone();
            let target = log.appended();
            let flush = tokio::task::spawn_blocking(move || log.flush_upto(target));
            match &op.body {
                // A failure stays in the LOG: the COMMIT's own wait reports it.
                OpBody::Commit { .. } if commit_alone => log_target = Some(target),
                _ => flush.await.map_err(|e| FsError::Io(format!("LOG flush task failed: {e}")))?.map_err(log_flush_failed)?,
            }
        }
        let state = pair.state();
        // The link read before its session: a session read later is never older than the link.
        let link = self.current_link();
        let used_session = link.as_ref().map(|_| self.link_session.load(Ordering::Acquire));
        let (local, remote) = match (state.replicates(), link, used_session) {
            (true, Some(link), Some(session)) => {
                // Step 3: both at once. The request is queued on the link first (a namespace
                // op under the order lock, with its number), then the local store applies it.
                let started = Instant::now();
                let number = order.as_ref().map(|_| pair.next_order(session));
                // Returns with the request sent, or handed to the link's writer task and that
                // task given its turn (see `Link::start_call`): the two halves of step 3 overlap.
                let sent = self.send_replica(pair, &op, key, number, &link).await;
                let local = self.apply_local(&op, key, log_target).await;
                let local_took = started.elapsed();
                drop(order);
                let remote = match sent {
                    Ok(call) => match call.reply_typed::<Response>().await {
                        Ok((Response::Applied(r), _)) => Ok(r),
                        Ok((Response::Refused(why), _)) => Err(format!("the peer refused the change: {why}")),
                        Ok((other, _)) => Err(format!("unexpected answer from the peer: {other:?}")),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e),
                };
                metrofs_core::metrics::get().dual_write(local_took, Some(started.elapsed()), started.elapsed());
                (local, Some(remote))
            }
            (true, _, _) => {
                let local = self.apply_local(&op, key, log_target).await;
                drop(order);
                (local, Some(Err("the link to the peer is down".to_owned())))
            }
            (false, _, _) => {
                let started = Instant::now();
                let local = self.apply_local(&op, key, log_target).await;
                drop(order);
                metrofs_core::metrics::get().dual_write(started.elapsed(), None, started.elapsed());
                (local, None)
            }
        };
        // Steps 6–7.
        // Writes to disjoint ranges of one file (and COMMITs) run concurrently, so the
        // attributes in their replies depend on which of them each side applied first; only
        // the outcome is theirs to compare. Every other change holds whole-inode locks.
        let outcome_only = matches!(op.body, OpBody::Write { .. } | OpBody::Commit { .. });
        let differs = match &remote {
            Some(Ok(r)) if outcome_only => local.as_ref().err() != r.as_ref().err(),
            Some(Ok(r)) => !same_result(&local, r),
            Some(Err(_)) => local.is_ok() || !matches!(op.body, OpBody::Commit { .. }),
            None => local.is_ok(),
        };
        if differs && !matches!(op.body, OpBody::Commit { .. }) {
            let mut keys = dcl_keys(&op, &local);
            // Every inode the change touched (a renamed or unlinked file's ctime and nlink).
            keys.extend(touched.iter().map(|i| DclKey::Inode(*i)));
            // Durability order: the DCL must name this change before the host hears of it.
            if let Err(e) = self.dcl.mark(op.fs, keys).await {
                metrofs_core::metrics::get().error("dcl");
                return Err(FsError::Io(format!("DCL record failed: {e}")));
            }
        }
        if let Some(Err(reason)) = &remote {
            metrofs_core::metrics::get().error("remote_apply");
            if let Err(e) = self.peer_lost_cache().await {
                return Err(FsError::Io(format!("DCL record failed: {e}")));
            }
            // Both sides stop acknowledging until the arbitration of this loss is decided:
            // the other side may be taking over right now.
            if !self.wait_decided(pair, used_session, reason).await {
                return Err(self.refuse(pair).await);
            }
        }
        match remote {
            Some(Ok(r)) if differs && state == PairState::Normal => {
                metrofs_core::metrics::get().error("divergence");
                let detail = format!("{} on inode {:?}: here {:?}, peer {:?}", op.body.kind(), target_ino(&op), brief(&local), brief(&r));
                self.on_event(pair, Event::Diverged { detail });
            }
            _ => {}
        }
        local
    }

    /// The local apply of step 3: with `log_target`, a COMMIT whose metadata waits for the LOG's
    /// first `log_target` appends (see [`Metro::dual_apply`]).
    async fn apply_local(&self, op: &FsOp, key: Option<ReplyKey>, log_target: Option<u64>) -> Result<OpReply, FsError> {
        let Some(target) = log_target else {
            return self.array.apply_keyed(op.clone(), key).await;
        };
        let log = self.log.clone();
        self.array
            .commit_keyed_after(op.clone(), key, move || log.flush_upto(target).map_err(log_flush_failed))
            .await
    }

    /// Range locks for a change: its byte range for a write; the whole inode(s) for what
    /// changes attributes or names, the directories a namespace op changes shared (see
    /// `locks.rs`; the entries it names are looked up under the namespace order lock, which
    /// keeps them stable). Also returns the inodes touched.
    async fn range_locks(&self, fs: FsId, body: &OpBody) -> Result<(Vec<RangeGuard>, Vec<Ino>), FsError> {
        // (inode, shared)
        let mut inos: Vec<(Ino, bool)> = Vec::new();
        let store = self.array.store();
        let add_entry = |dir: Ino, name: &[u8], inos: &mut Vec<(Ino, bool)>| {
            if let Ok(a) = store.lookup(fs, dir, name) {
                inos.push((a.ino, false));
            }
        };
        match body {
            OpBody::Write { ino, offset, data, .. } => {
                let end = offset.saturating_add(data.len() as u64);
                return Ok((vec![self.locks.lock(fs, *ino, (*offset, end)).await], Vec::new()));
            }
            OpBody::Commit { .. } => return Ok((Vec::new(), Vec::new())),
            OpBody::SetAttr { ino, .. } => inos.push((*ino, false)),
            OpBody::Create { dir, name, .. } => {
                inos.push((*dir, true));
                add_entry(*dir, name, &mut inos);
            }
            OpBody::Mkdir { dir, .. } | OpBody::Symlink { dir, .. } => inos.push((*dir, true)),
            OpBody::Remove { dir, name } | OpBody::Rmdir { dir, name } => {
                inos.push((*dir, true));
                add_entry(*dir, name, &mut inos);
            }
            OpBody::Rename { from_dir, from_name, to_dir, to_name } => {
                inos.push((*from_dir, true));
                inos.push((*to_dir, true));
                add_entry(*from_dir, from_name, &mut inos);
                add_entry(*to_dir, to_name, &mut inos);
            }
            OpBody::Link { ino, dir, .. } => {
                inos.push((*ino, false));
                inos.push((*dir, true));
            }
        }
        // One order for everyone: no two changes wait for each other's locks. An inode held
        // both ways (a directory renamed within itself, say) is held exclusively.
        inos.sort_unstable();
        inos.dedup_by_key(|(i, _)| *i);
        let mut guards = Vec::with_capacity(inos.len());
        for (ino, shared) in &inos {
            guards.push(if *shared { self.locks.lock_shared(fs, *ino).await } else { self.locks.lock(fs, *ino, WHOLE).await });
        }
        Ok((guards, inos.into_iter().map(|(i, _)| i).collect()))
    }

    /// After a remote apply failed: waits until the loss of the link it used has been
    /// arbitrated. True when this side won (it serves and may acknowledge).
    async fn wait_decided(&self, pair: &PairRt, used: Option<u64>, reason: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(DECIDING_WAIT_MS);
        let mut links = self.link.subscribe();
        let mut phases = pair.phase.subscribe();
        loop {
            let current = self.current_link();
            let moved = current.is_none() || used.is_none() || used != Some(self.link_session.load(Ordering::Acquire));
            if moved {
                match pair.phase() {
                    Phase::Open => return pair.role() == Role::Primary,
                    Phase::Stopped => return false,
                    Phase::Deciding => {}
                }
            } else if let Some(link) = current {
                // The link still looks up but a change did not get through it: treat it as
                // lost, so that the loss is arbitrated (the link is dialled again at once).
                tracing::warn!(pair = %pair.id(), %reason, "a replicated change failed; dropping the link to arbitrate");
                link.close("a replicated change failed");
            }
            tokio::select! {
                _ = links.changed() => {}
                _ = phases.changed() => {}
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// [`Metro::not_serving`] for a host call: just after the service moved away, the
    /// answer is held until the connection it would go on is closed (so it is never sent).
    async fn refuse(&self, pair: &PairRt) -> FsError {
        let e = self.not_serving(pair);
        let recent = lock(&pair.moved).is_some_and(|(at, _)| at.elapsed() < Duration::from_millis(MOVED_DROP_WINDOW_MS));
        if recent {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Also the connections opened since the service moved (this one may be): closed
            // now, and the answer below is then never written. Unless the service came back
            // meanwhile (a swap there and back): the connections opened since are this
            // side's hosts again, and this call's own connection was closed when it moved.
            let serves_again = pair.role() == Role::Primary && pair.phase() != Phase::Stopped;
            let hook = lock(&self.on_service_lost).clone();
            if let (Some(h), false) = (hook, serves_again) {
                h();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        e
    }

    /// What a host is told by a side that does not serve a pair (now).
    fn not_serving(&self, pair: &PairRt) -> FsError {
        // Just after the service moved away (a swap or a lost arbitration), a host still
        // reaching this side (the address is moving, or it reconnected too early) is better
        // served by a dropped connection than by "retry later": it reconnects and resends at
        // once, and the reply below is never sent. Rate-limited, and only for a short while.
        {
            let mut m = lock(&pair.moved);
            if let Some((at, last_drop)) = m.as_mut() {
                if at.elapsed() < Duration::from_millis(MOVED_DROP_WINDOW_MS) && last_drop.elapsed() >= Duration::from_millis(50) {
                    *last_drop = Instant::now();
                    let hook = lock(&self.on_service_lost).clone();
                    if let Some(h) = hook {
                        h();
                    }
                }
            }
        }
        let primary = lock(&pair.record).primary.clone();
        match (pair.role(), pair.phase()) {
            (Role::Primary, Phase::Deciding) => FsError::Busy(format!("pair {} is being arbitrated; retry", pair.id())),
            (Role::Primary, _) => FsError::Busy(format!("array {} does not serve pair {} now (it lost the peer and could not win the arbitration)", self.config.name, pair.id())),
            (Role::Secondary, _) => FsError::Busy(format!("array {} is the secondary of pair {}; the service is on {primary}", self.config.name, pair.id())),
        }
    }

    /// Step 3, remote half: queues the op on `link` (returns once it is queued; the answer is
    /// awaited on the returned call). `Err` is a transport failure.
    async fn send_replica(&self, pair: &PairRt, op: &FsOp, reply_key: Option<ReplyKey>, order: Option<proto::Order>, link: &Link) -> Result<metrofs_link::PendingCall, String> {
        let (head, data) = proto::split_data(op.clone());
        let req = Request::Replicate {
            pair: pair.id(),
            epoch: pair.epoch(),
            session: self.session,
            seq: Seq(pair.seq.fetch_add(1, Ordering::Relaxed)),
            op: head,
            reply_key,
            order,
        };
        link.start_call_typed(&req, data).await.map_err(|e| e.to_string())
    }

    // ---------------------------------------------------------------- the receiving side

    /// Serves one request from the peer's metro module.
    pub async fn handle(self: &Arc<Self>, req: Request, body: Bytes) -> Response {
        match self.handle_inner(req, body).await {
            Ok(r) => r,
            Err(why) => {
                metrofs_core::metrics::get().error("peer_request_refused");
                tracing::warn!(peer_request_refused = %why);
                Response::Refused(why)
            }
        }
    }

    /// The pair a request names, checked: known here, this side is its secondary, the
    /// request's epoch not older than ours (fencing: an old primary cannot change anything).
    fn secondary_pair(&self, id: PairId, epoch: Option<Epoch>) -> Result<Arc<PairRt>, String> {
        let pair = self.pair_by_id(id).ok_or_else(|| format!("pair {id} is unknown on array {}", self.config.name))?;
        if pair.role() != Role::Secondary {
            return Err(format!("array {} serves pair {id}; it accepts no replicated change for it", self.config.name));
        }
        if let Some(e) = epoch {
            let mine = pair.epoch();
            if e < mine {
                return Err(format!("op of epoch {e} refused: pair {id} is at epoch {mine} (a fenced side cannot change anything)"));
            }
        }
        Ok(pair)
    }

    async fn handle_inner(self: &Arc<Self>, req: Request, body: Bytes) -> Result<Response, String> {
        let store = self.array.store().clone();
        match req {
            Request::Hello { array, pairs } => {
                self.adopt_records(&array, pairs);
                Ok(Response::Hello { array: self.config.name.clone(), pairs: self.records() })
            }
            Request::CreateTwin { pair, rules, root } => {
                if self.pair_by_id(pair.id).is_some() {
                    return Ok(Response::Done);
                }
                if pair.secondary != self.config.name {
                    return Err(format!("pair {} names {} as its secondary, this array is {}", pair.id, pair.secondary, self.config.name));
                }
                if let Some(existing) = store.fs_by_name(&pair.fs_name) {
                    return Err(format!(
                        "array {} already has a file system named '{}' (id {}): delete or rename it there first",
                        self.config.name, pair.fs_name, existing.id
                    ));
                }
                store.create_fs(&pair.fs_name, pair.fs, rules, pair.created).map_err(|e| e.to_string())?;
                store.apply_sync(pair.fs, &SyncOp::PutInode { attr: root, symlink: None }).map_err(|e| e.to_string())?;
                store.sync().map_err(|e| e.to_string())?;
                self.persist(&pair).map_err(|e| e.to_string())?;
                let rt = Arc::new(PairRt::new(pair.clone(), &self.config.name, self.array.now(), self.sink.clone()));
                lock(&rt.engine).on(Event::LinkUp);
                rt.event(format!("pair created as the secondary of {} for fs '{}'", pair.primary, pair.fs_name));
                self.pairs.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(pair.fs, rt);
                Ok(Response::Done)
            }
            Request::Record { pair } => {
                self.adopt_records(&pair.primary.clone(), vec![pair]);
                Ok(Response::Done)
            }
            Request::Replicate { pair, epoch, session, seq, op, reply_key, order } => {
                // A namespace op waits for its turn: they are applied in the sender's order.
                let rt = self.pair_by_id(pair);
                let _turn = match (&rt, order) {
                    (Some(rt), Some(order)) => Some(rt.wait_turn(session, order).await?),
                    _ => None,
                };
                let p = self.secondary_pair(pair, Some(epoch))?;
                if op.fs != p.fs() {
                    return Err(format!("op for fs {} sent under pair {pair} of fs {}", op.fs, p.fs()));
                }
                if !lock(&p.window).admit(session, seq.0) {
                    tracing::debug!(%pair, seq = seq.0, "duplicate replicated op ignored");
                    return Err(format!("op {} of session {session:x} was already applied", seq.0));
                }
                let op = proto::join_data(op, body);
                self.note_replica_keys(op.fs, &log_keys(&op));
                Ok(Response::Applied(self.array.apply_replicated(op, reply_key).await))
            }
            Request::Sync { pair, epoch, ops } => {
                let p = self.secondary_pair(pair, Some(epoch))?;
                let ops = proto::join_segments(ops, body).ok_or("resync data does not match its description")?;
                let fs = p.fs();
                tokio::task::spawn_blocking(move || {
                    for op in &ops {
                        store.apply_sync(fs, op).map_err(|e| {
                            // The op may carry data: its start names it, and the answer must fit a link header.
                            let what: String = format!("{op:?}").chars().take(200).collect();
                            format!("{what}…: {e}")
                        })?;
                    }
                    Ok::<_, String>(())
                })
                .await
                .map_err(|e| e.to_string())??;
                Ok(Response::Done)
            }
            Request::Flush { pair } => {
                let fs = self.secondary_pair(pair, None)?.fs();
                tokio::task::spawn_blocking(move || {
                    // The round's links are over: what no link named again goes now.
                    store.free_orphans(fs)?;
                    store.sync()
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                Ok(Response::Done)
            }
            Request::ListDir { pair, dir, after } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                match store.entries(p.fs(), dir) {
                    Ok(mut all) => {
                        all.sort_unstable();
                        let start = after.map_or(0, |a| all.partition_point(|(n, _)| *n <= a));
                        let (entries, more) = page(&all[start..], |(name, _)| name.len() + 16);
                        Ok(Response::Entries { entries, more })
                    }
                    Err(FsError::Stale | FsError::NoEnt | FsError::NotDir) => Ok(Response::Entries { entries: Vec::new(), more: false }),
                    Err(e) => Err(e.to_string()),
                }
            }
            Request::GetInode { pair, ino } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                Ok(Response::Inode(store.inode(p.fs(), ino).map_err(|e| e.to_string())?))
            }
            Request::Digests { pair, ino, chunk_bytes } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                let fs = p.fs();
                let d = tokio::task::spawn_blocking(move || store.digests(fs, ino, chunk_bytes)).await.map_err(|e| e.to_string())?;
                Ok(Response::Digests(d.map_err(|e| e.to_string())?))
            }
            Request::Inodes { pair, after } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                let mut all = store.inodes(p.fs()).map_err(|e| e.to_string())?;
                all.sort_unstable();
                let start = after.map_or(0, |a| all.partition_point(|i| *i <= a));
                let (inodes, more) = page(&all[start..], |_| 10);
                Ok(Response::Inodes { inodes, more })
            }
            Request::Delete { pair } => {
                if let Some(p) = self.pair_by_id(pair) {
                    self.drop_pair(&p).map_err(|e| e.to_string())?;
                }
                Ok(Response::Done)
            }
            Request::MergeDcl { pair, keys, full } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                if p.role() != Role::Primary {
                    return Err(format!("array {} does not serve pair {pair}; it takes no DCL", self.config.name));
                }
                let fs = p.fs();
                let n = keys.len();
                self.dcl.mark(fs, keys).await.map_err(|e| e.to_string())?;
                if full {
                    self.dcl.mark_full(fs).await.map_err(|e| e.to_string())?;
                }
                p.event(format!("{n} objects the peer changed alone added to the DCL{}", if full { " (and a full resync)" } else { "" }));
                if p.state() == PairState::Normal {
                    self.on_event(&p, Event::Diverged { detail: format!("the peer changed {n} objects while it was cut off") });
                }
                Ok(Response::Done)
            }
            Request::Swap { pair, epoch } => self.take_over_by_swap(pair, epoch).await,
            Request::PleaseSwap { pair } => {
                let view = self.swap(pair).await.map_err(|e| e.to_string())?;
                tracing::info!(pair = %pair, serving = %view.serving, "planned swap asked by the peer done");
                Ok(Response::Done)
            }
            Request::QuorumSeen { reachable } => {
                *lock(&self.peer_reach) = Some(reachable);
                Ok(Response::Done)
            }
            Request::SetMode { mode } => {
                if self.config.arbitration.quorum.is_none() {
                    return Err(format!("array {} has no [quorum] configured: its mode is static priority", self.config.name));
                }
                self.set_mode(mode);
                Ok(Response::Done)
            }
            Request::KeepAside { pair, path, mode } => {
                let p = self.pair_by_id(pair).ok_or("unknown pair")?;
                if p.role() != Role::Primary {
                    return Err(format!("array {} does not serve pair {pair}", self.config.name));
                }
                self.write_kept_aside(&p, &path, mode, body).await.map_err(|e| format!("cannot keep {} aside: {e}", path.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("/")))?;
                Ok(Response::Done)
            }
            Request::SetExport { pair, epoch, serving, rules } => self.export_from_peer(pair, epoch, &serving, rules).await,
        }
    }

    fn records(&self) -> Vec<PairRecord> {
        self.pair_list().iter().map(|p| lock(&p.record).clone()).collect()
    }

    /// Takes the peer's view of pairs where it is newer: its epoch is higher, or it serves
    /// the pair and tells us its state.
    fn adopt_records(self: &Arc<Self>, from: &str, recs: Vec<PairRecord>) {
        for rec in recs {
            let Some(p) = self.pair_by_id(rec.id) else { continue };
            let mine = lock(&p.record).clone();
            let newer = rec.epoch > mine.epoch
                || (rec.epoch == mine.epoch && rec.primary == from && mine.primary == from)
                || (rec.epoch == mine.epoch && rec.forced && !mine.forced && rec.primary == from);
            if !newer || rec == mine {
                continue;
            }
            let superseded = mine.primary == self.config.name && rec.primary != self.config.name;
            if superseded && rec.forced {
                // The other side was force-started while this one served alone: what this
                // side changed since is about to be overwritten. Keep it aside first.
                self.keep_aside(&p, rec.epoch);
            }
            if let Err(e) = self.persist(&rec) {
                tracing::error!(error = %e, "cannot persist the pair record from the peer");
                continue;
            }
            let role = if rec.primary == self.config.name { Role::Primary } else { Role::Secondary };
            {
                let mut eng = lock(&p.engine);
                let link_up = eng.link_up();
                *eng = Engine::new(rec.state, role);
                if link_up {
                    eng.on(Event::LinkUp);
                }
            }
            *lock(&p.record) = rec.clone();
            if superseded {
                if let Some(h) = lock(&p.resync).take() {
                    h.stop();
                }
            }
            if role == Role::Primary {
                p.set_phase(Phase::Open);
            } else {
                self.stop_serving(&p);
            }
            *lock(&p.since) = self.array.now();
            if rec.state == PairState::Normal {
                lock(&p.alarms).clear();
            }
            p.event(format!("pair state {} as told by {from}", rec.state));
        }
        self.publish_service();
    }

    // ---------------------------------------------------------------- the link

    /// Keeps the link to the peer up: the array with the smaller name dials, the other
    /// accepts; after a loss it is re-established. Runs until the process ends.
    pub async fn run_link(self: Arc<Self>) -> Result<(), MetroError> {
        let Some(peer) = self.config.peer.clone() else { return Ok(()) };
        let handler = Arc::new(LinkHandler(Arc::downgrade(&self)));
        let dials = self.config.name < peer.name;
        let listener = tokio::net::TcpListener::bind(peer.listen)
            .await
            .map_err(|e| MetroError::Link(format!("cannot listen for the peer on {}: {e}", peer.listen)))?;
        tracing::info!(listen = %peer.listen, peer = %peer.addr, dials, "replication link");
        {
            // A peer that never answers since this array started is a lost peer too.
            let (m, wait) = (self.clone(), Duration::from_millis(peer.link.heartbeat_timeout_ms));
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if !m.link_ever_up.load(Ordering::Acquire) {
                    m.on_link_lost("the peer did not answer since this array started");
                }
            });
        }
        let mut last_refusal: Option<String> = None;
        loop {
            let attempt = if dials {
                metrofs_link::connect(peer.addr.as_str(), &peer.link, &peer.identity, handler.clone()).await
            } else {
                match listener.accept().await {
                    Ok((s, _)) => metrofs_link::accept_stream(s, &peer.link, &peer.identity, handler.clone()).await,
                    Err(e) => Err(metrofs_link::LinkError::Accept(e)),
                }
            };
            let link = match attempt {
                Ok(l) if l.peer().name == peer.name => l,
                Ok(l) => {
                    tracing::error!(expected = %peer.name, got = %l.peer().name, "the peer presented another array name: fix [peer] name in the configuration");
                    l.close("unexpected array name");
                    tokio::time::sleep(Duration::from_millis(REDIAL_MS)).await;
                    continue;
                }
                Err(e) => {
                    // A peer that is down is expected while it restarts (debug); a peer that
                    // answers but is refused is a configuration the operator must fix (warn,
                    // once per distinct reason, on whichever side sees it).
                    let refused = !matches!(e, metrofs_link::LinkError::Connect { .. } | metrofs_link::LinkError::Accept(_));
                    let text = e.to_string();
                    if refused && last_refusal.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, "replication link refused");
                        last_refusal = Some(text);
                    } else {
                        tracing::debug!(error = %text, "link to the peer not established");
                    }
                    if dials {
                        tokio::time::sleep(Duration::from_millis(REDIAL_MS)).await;
                    }
                    continue;
                }
            };
            tracing::info!(peer = %peer.name, "replication link up");
            last_refusal = None;
            // Exchange records before any change is replicated on the new link.
            match link.call_typed::<Request, Response>(&Request::Hello { array: self.config.name.clone(), pairs: self.records() }, Bytes::new()).await {
                Ok((Response::Hello { array, pairs }, _)) => self.adopt_records(&array, pairs),
                other => {
                    tracing::warn!(answer = ?other.map(|r| r.0), "the peer did not answer Hello; dropping the link");
                    link.close("no Hello");
                    continue;
                }
            }
            self.link_ever_up.store(true, Ordering::Release);
            self.link_session.fetch_add(1, Ordering::AcqRel);
            self.link.send_replace(Some(link.clone()));
            for p in self.pair_list() {
                // A serving side that stopped (or had not yet confirmed it holds the pair)
                // and is still the serving side by both records: nobody took over.
                if p.role() == Role::Primary && p.phase() != Phase::Open {
                    p.set_phase(Phase::Open);
                    p.event("the peer is back and this array still serves the pair".into());
                }
                self.on_event(&p, Event::LinkUp);
            }
            self.publish_service();
            tokio::spawn(self.clone().after_hello(link.clone()));
            let reason = link.closed().await;
            tracing::warn!(%reason, "replication link down");
            self.on_link_lost(&reason.to_string());
        }
    }

    /// The link was lost (or never came up): stop acknowledging where the other side may take
    /// over, and arbitrate (see `arbiter.rs`).
    fn on_link_lost(self: &Arc<Self>, reason: &str) {
        metrofs_core::metrics::get().error("link_lost");
        let mut plans = Vec::new();
        for p in self.pair_list() {
            let plan = self.situation(&p).plan(self.config.arbitration.head_start);
            match (p.role(), plan) {
                (_, Plan::Keep) => {}
                (Role::Primary, Plan::Stand) => self.stop_serving(&p),
                (_, _) => p.set_phase(Phase::Deciding),
            }
            plans.push((p, plan));
        }
        // Only now may a change that used the old link see it gone (it then finds its pair
        // deciding, see `wait_decided`).
        self.link.send_replace(None);
        let me = self.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            if let Err(e) = me.peer_lost_cache().await {
                tracing::error!(error = %e, "cannot record what the peer may have lost in the DCL");
            }
            for (p, plan) in plans {
                me.on_event(&p, Event::LinkDown { reason: reason.clone() });
                if plan != Plan::Keep {
                    tokio::spawn(me.clone().arbitrate(p, plan, reason.clone()));
                }
            }
            me.publish_service();
        });
    }

    fn situation(&self, p: &PairRt) -> Situation {
        let role = p.role();
        Situation {
            role,
            state: p.state(),
            unsettled: role == Role::Primary && p.phase() != Phase::Open,
            preferred: self.config.preferred,
            mode: *lock(&self.mode),
            on_quorum_loss: self.config.arbitration.on_quorum_loss,
        }
    }

    /// Carries out `plan` for one pair after a link loss.
    async fn arbitrate(self: Arc<Self>, pair: Arc<PairRt>, plan: Plan, reason: String) {
        let start_epoch = pair.epoch();
        let next = Epoch(start_epoch.0 + 1);
        match plan {
            Plan::Keep => {}
            Plan::WinStatic => {
                self.metrics_arbitration("won-static");
                self.won(&pair, next, format!("link lost ({reason}); static priority: {} is the preferred site", self.config.name), false).await;
            }
            Plan::Stand => {
                self.metrics_arbitration("stood-down");
                self.stand(&pair, format!("link lost ({reason}); {}", self.stand_reason()));
            }
            Plan::Claim { delay } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let Some(quorum) = self.config.arbitration.quorum.clone() else {
                    self.stand(&pair, "no quorum server is configured".into());
                    return;
                };
                loop {
                    if pair.epoch() != start_epoch {
                        // The peer's record (Hello) settled it meanwhile.
                        return;
                    }
                    match quorum.claim(pair.id().0, next.0).await {
                        Ok(Claim::Granted) => {
                            self.metrics_arbitration("won");
                            self.won(&pair, next, format!("link lost ({reason}); the quorum granted epoch {next}"), false).await;
                            return;
                        }
                        Ok(Claim::Denied { epoch, holder }) => {
                            self.metrics_arbitration("lost");
                            self.lost(&pair, Epoch(epoch), &holder, format!("link lost ({reason}); the quorum had granted epoch {epoch} to {holder}"));
                            return;
                        }
                        Err(_) if self.current_link().is_some() || pair.epoch() != start_epoch => {
                            // The link (or the peer's record) came back while the claim was in
                            // flight: the link's Hello settled the pair; this answer is stale.
                            if pair.role() == Role::Primary && pair.phase() == Phase::Deciding && self.current_link().is_some() {
                                pair.set_phase(Phase::Open);
                                self.publish_service();
                            }
                            return;
                        }
                        Err(e) => {
                            self.metrics_arbitration("quorum-unreachable");
                            self.stand(&pair, format!("link lost ({reason}); the quorum server cannot be reached ({e}): this side stops until the link or the quorum returns"));
                            if self.current_link().is_some() {
                                return;
                            }
                            tokio::time::sleep(self.config.arbitration.retry).await;
                            if self.current_link().is_some() {
                                return;
                            }
                            if pair.role() == Role::Primary {
                                pair.set_phase(Phase::Deciding);
                            }
                        }
                    }
                }
            }
        }
    }

    fn metrics_arbitration(&self, outcome: &'static str) {
        tracing::info!(array = %self.config.name, outcome, "arbitration");
        metrofs_core::metrics::get().arbitration(outcome);
    }

    fn stand_reason(&self) -> String {
        match self.config.arbitration.on_quorum_loss {
            crate::arbiter::OnQuorumLoss::Stop => "static mode with on_quorum_loss = \"stop\": both sides stop until the link returns".into(),
            crate::arbiter::OnQuorumLoss::StaticPriority => "static priority: the preferred site goes on, this side stops".into(),
        }
    }

    fn note_arbitration(&self, pair: &PairRt, winner: Option<String>, epoch: Epoch, reason: String) {
        pair.event(format!("arbitration: {reason}"));
        *lock(&pair.last_arbitration) = Some(ArbitrationView { time: self.array.now(), asked_by: self.config.name.clone(), winner, epoch: epoch.0, reason });
    }

    /// Not serving until the link or the quorum returns.
    fn stand(&self, pair: &PairRt, reason: String) {
        if pair.role() == Role::Primary || pair.phase() == Phase::Deciding {
            self.stop_serving(pair);
        }
        self.note_arbitration(pair, None, pair.epoch(), reason);
        self.publish_service();
    }

    /// This side won `epoch`: it serves the pair alone (the other side is resynchronised when
    /// it returns).
    async fn won(self: &Arc<Self>, pair: &Arc<PairRt>, epoch: Epoch, reason: String, forced: bool) {
        let fs = pair.fs();
        let was_secondary = pair.role() == Role::Secondary;
        if was_secondary {
            // What this side applied as the replica just before: the old serving side may
            // have lost it with its cache, or never applied it itself.
            let keys = self.recent_replica_keys(fs);
            if let Err(e) = self.dcl.mark(fs, keys).await {
                self.stand(pair, format!("won epoch {epoch} but cannot record the DCL ({e}); not serving"));
                return;
            }
        }
        let rec = {
            let mut r = lock(&pair.record);
            if r.primary != self.config.name {
                let r = &mut *r;
            std::mem::swap(&mut r.primary, &mut r.secondary);
            }
            r.epoch = epoch;
            r.state = PairState::ToBeSynchronized;
            r.forced = forced;
            r.clone()
        };
        if let Err(e) = self.persist(&rec) {
            self.stand(pair, format!("won epoch {epoch} but cannot persist the pair record ({e}); not serving"));
            return;
        }
        *lock(&pair.engine) = Engine::new(PairState::ToBeSynchronized, Role::Primary);
        *lock(&pair.since) = self.array.now();
        self.run(pair, vec![Command::Alarm(format!("{} serves pair {} alone since epoch {epoch}: {reason}", self.config.name, rec.id))]);
        self.note_arbitration(pair, Some(self.config.name.clone()), epoch, reason);
        if was_secondary {
            pair.event(format!("service taken over by {} at epoch {epoch}", self.config.name));
        }
        pair.set_phase(Phase::Open);
        self.publish_service();
        if self.current_link().is_some() {
            self.on_event(pair, Event::LinkUp);
        }
    }

    /// The other side holds `epoch`: this side is its secondary, and not whole until resynchronised.
    fn lost(self: &Arc<Self>, pair: &Arc<PairRt>, epoch: Epoch, holder: &str, reason: String) {
        if let Some(h) = lock(&pair.resync).take() {
            h.stop();
        }
        let rec = {
            let mut r = lock(&pair.record);
            if holder != self.config.name && r.primary == self.config.name {
                let r = &mut *r;
            std::mem::swap(&mut r.primary, &mut r.secondary);
            }
            r.epoch = r.epoch.max(epoch);
            r.state = PairState::ToBeSynchronized;
            r.forced = false;
            r.clone()
        };
        if let Err(e) = self.persist(&rec) {
            tracing::error!(error = %e, "cannot persist the pair record after losing the arbitration");
        }
        let link_up = self.current_link().is_some();
        {
            let mut eng = lock(&pair.engine);
            *eng = Engine::new(PairState::ToBeSynchronized, Role::Secondary);
            if link_up {
                eng.on(Event::LinkUp);
            }
        }
        *lock(&pair.since) = self.array.now();
        self.stop_serving(pair);
        self.note_arbitration(pair, Some(holder.to_owned()), epoch, reason);
        self.publish_service();
    }

    /// This side stops serving `pair`: the NFS connections are closed first, so that calls
    /// waiting for the outcome are dropped with them (their hosts resend to the serving
    /// side once reconnected) rather than answered "retry later".
    fn stop_serving(&self, pair: &PairRt) {
        if pair.role() == Role::Primary || pair.phase() != Phase::Stopped {
            let hook = lock(&self.on_service_lost).clone();
            if let (Some(h), true) = (hook, self.service.borrow().serving.contains(&pair.fs())) {
                h();
            }
        }
        pair.set_phase(Phase::Stopped);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
        *lock(&pair.moved) = Some((Instant::now(), long_ago));
    }

    /// Recomputes what this array serves; tells the daemon.
    fn publish_service(&self) {
        let pairs = self.pair_list();
        let serving: Vec<FsId> =
            pairs.iter().filter(|p| p.role() == Role::Primary && p.phase() != Phase::Stopped).map(|p| p.fs()).collect();
        let mut lost = false;
        self.service.send_if_modified(|cur| {
            let confirmed: Vec<FsId> = pairs
                .iter()
                .filter(|p| {
                    p.role() == Role::Primary
                        && match p.phase() {
                            Phase::Open => true,
                            Phase::Deciding => cur.confirmed.contains(&p.fs()),
                            Phase::Stopped => false,
                        }
                })
                .map(|p| p.fs())
                .collect();
            let active = if pairs.is_empty() { self.config.peer.is_none() || self.config.preferred } else { !confirmed.is_empty() };
            let next = ServiceState { active, serving: serving.clone(), confirmed };
            if *cur == next {
                return false;
            }
            lost = cur.serving.iter().any(|f| !next.serving.contains(f));
            *cur = next;
            true
        });
        if lost {
            let hook = lock(&self.on_service_lost).clone();
            if let Some(h) = hook {
                h();
            }
        }
    }

    /// Sends every pair event (state changes, arbitrations, failovers, swaps, force starts)
    /// to `log` from now on. Once per process.
    pub fn set_event_log(&self, log: Arc<crate::events::EventLog>) {
        let _ = self.sink.set(log);
    }

    /// What this array should serve, as it changes (the daemon moves the service address).
    #[must_use]
    pub fn service_watch(&self) -> tokio::sync::watch::Receiver<ServiceState> {
        self.service.subscribe()
    }

    /// Registers what to do, synchronously, when this array stops serving a pair (close the
    /// NFS connections).
    pub fn on_service_lost(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        *lock(&self.on_service_lost) = Some(hook);
    }

    fn note_replica_keys(&self, fs: FsId, keys: &[LogKey]) {
        let now = Instant::now();
        let mut r = lock(&self.recent);
        for k in keys {
            r.push_back((now, fs, *k));
        }
        let window = Duration::from_millis(PEER_CACHE_WINDOW_MS);
        while r.front().is_some_and(|(t, _, _)| t.elapsed() > window) || r.len() > RECENT_REPLICA_KEYS_MAX {
            r.pop_front();
        }
    }

    fn recent_replica_keys(&self, fs: FsId) -> Vec<DclKey> {
        let window = Duration::from_millis(PEER_CACHE_WINDOW_MS);
        let keys: Vec<(FsId, LogKey)> =
            lock(&self.recent).iter().filter(|(t, f, _)| *f == fs && t.elapsed() <= window).map(|(_, f, k)| (*f, *k)).collect();
        log_to_dcl(keys, |f| f == fs, |_, _| true).remove(&fs).unwrap_or_default()
    }

    /// After a Hello: send the twins of the pairs this side serves its export rules, hand
    /// the serving side what only this side changed, send files kept aside, and keep the
    /// arbitration mode agreed while the link lasts.
    async fn after_hello(self: Arc<Self>, link: Link) {
        self.push_exports(&link).await;
        for p in self.pair_list() {
            if p.role() != Role::Secondary {
                continue;
            }
            let fs = p.fs();
            let snap = self.dcl.snapshot(fs);
            if snap.keys.is_empty() && snap.full.is_none() {
                continue;
            }
            let keys: Vec<DclKey> = snap.keys.iter().map(|(k, _)| *k).collect();
            let n = keys.len();
            let req = Request::MergeDcl { pair: p.id(), keys, full: snap.full.is_some() };
            match link.call_typed::<Request, Response>(&req, Bytes::new()).await {
                Ok((Response::Done, _)) => {
                    if let Err(e) = self.dcl.clear(fs, &snap) {
                        tracing::warn!(error = %e, "cannot clear the DCL handed to the serving side");
                    }
                    p.event(format!("{n} changed objects of this side handed to the serving side for resynchronisation"));
                }
                other => tracing::warn!(answer = ?other.map(|r| r.0), "the serving side did not take this side's DCL; retried at the next link"),
            }
        }
        self.send_kept_aside(&link).await;
        self.mode_task(link).await;
    }

    /// The preferred array leads the mode agreement; the other reports what it sees.
    async fn mode_task(self: Arc<Self>, link: Link) {
        let Some(quorum) = self.config.arbitration.quorum.clone() else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = link.closed() => return,
            }
            let here = quorum.reachable();
            if !self.config.preferred {
                let _ = link.call_typed::<Request, Response>(&Request::QuorumSeen { reachable: here }, Bytes::new()).await;
                continue;
            }
            let Some(there) = *lock(&self.peer_reach) else { continue };
            let current = *lock(&self.mode);
            match crate::arbiter::mode_step(current, here, there) {
                None => {}
                Some(ModeStep::EnterStatic) => {
                    if let Ok((Response::Done, _)) = link.call_typed::<Request, Response>(&Request::SetMode { mode: Mode::Static }, Bytes::new()).await {
                        self.set_mode(Mode::Static);
                    }
                }
                Some(ModeStep::LeaveStatic) => {
                    self.set_mode(Mode::Quorum);
                    let _ = link.call_typed::<Request, Response>(&Request::SetMode { mode: Mode::Quorum }, Bytes::new()).await;
                }
            }
        }
    }

    fn set_mode(&self, mode: Mode) {
        let before = std::mem::replace(&mut *lock(&self.mode), mode);
        if before == mode {
            return;
        }
        let stored = (|| -> Result<(), MetroError> {
            let w = self.db.begin_write().map_err(storage)?;
            {
                let v = serde_json::to_vec(&mode).map_err(storage)?;
                w.open_table(META).map_err(storage)?.insert("mode", v.as_slice()).map_err(storage)?;
            }
            w.commit().map_err(storage)
        })();
        if let Err(e) = stored {
            tracing::error!(error = %e, "cannot persist the arbitration mode");
        }
        let text = match mode {
            Mode::Static => "neither array reaches the quorum server: arbitration is by static priority until it returns",
            Mode::Quorum => "the quorum server is reachable again: arbitration asks it",
        };
        tracing::warn!(%mode, "{text}");
        for p in self.pair_list() {
            p.event(text.into());
        }
    }

    /// The peer may have stopped (`kill -9`) with acknowledged changes only in its cache: its
    /// store then comes back without them, and nothing on this side would say so. Every key
    /// this side changed within `PEER_CACHE_WINDOW_MS` (longer than the peer's store keeps
    /// anything out of a durable commit: `sync_interval_ms`, at most 1 s by default) goes to
    /// the DCL of the pairs this side serves, so the resync copies it.
    async fn peer_lost_cache(&self) -> Result<(), MetroError> {
        let served: std::collections::HashSet<FsId> =
            self.pair_list().iter().filter(|p| p.role() == Role::Primary).map(|p| p.fs()).collect();
        let recent = self.log.recent_keys(Duration::from_millis(PEER_CACHE_WINDOW_MS));
        for (fs, keys) in log_to_dcl(recent, |fs| served.contains(&fs), |_, _| true) {
            self.dcl.mark(fs, keys).await.map_err(storage)?;
        }
        Ok(())
    }

    /// Waits until the link is up (tests, CLI).
    pub async fn wait_link(&self, timeout: Duration) -> bool {
        let mut rx = self.link.subscribe();
        let up = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await.is_ok_and(|r| r.is_ok());
        up
    }

    // ---------------------------------------------------------------- operator actions

    /// `pair create FS --remote PEER`: creates the twin on the peer (same fs id and inode
    /// numbers) and starts the initial full sync while hosts keep writing.
    pub async fn create_pair(self: &Arc<Self>, fs_name: &str, remote: &str) -> Result<PairView, MetroError> {
        let peer = self.config.peer.as_ref().ok_or(MetroError::NoPeer)?;
        if peer.name != remote {
            return Err(MetroError::WrongPeer { configured: peer.name.clone(), asked: remote.to_owned() });
        }
        let info = self.array.fs(fs_name).ok_or_else(|| MetroError::NoFs(fs_name.to_owned()))?;
        if let Some(p) = self.pair_of(info.id) {
            return Err(MetroError::AlreadyPaired(fs_name.to_owned(), p.id()));
        }
        let link = self.current_link().ok_or_else(|| MetroError::LinkDown(peer.name.clone()))?;
        let root = self.array.store().getattr(info.id, metrofs_core::ROOT_INO).map_err(storage)?;
        let rec = PairRecord {
            id: PairId(rand::random()),
            fs: info.id,
            fs_name: info.name.clone(),
            primary: self.config.name.clone(),
            secondary: peer.name.clone(),
            state: PairState::Synchronizing,
            epoch: Epoch(1),
            created: info.created,
            forced: false,
        };
        // Everything is dirty until the first sync ends: durable before the pair exists.
        self.dcl.mark_full(info.id).await.map_err(storage)?;
        let req = Request::CreateTwin { pair: rec.clone(), rules: info.rules.clone(), root };
        if let Err(e) = ask_done(&link, &req).await {
            if matches!(e, MetroError::PeerRefused(_)) {
                let _ = self.dcl.drop_fs(info.id);
            }
            return Err(e);
        }
        self.persist(&rec)?;
        let rt = Arc::new(PairRt::new(rec.clone(), &self.config.name, self.array.now(), self.sink.clone()));
        lock(&rt.engine).on(Event::LinkUp);
        // The operator's action itself is in the durable event log by the API that ran it.
        rt.note(format!("pair created: fs '{}' from {} to {}; initial full sync", rec.fs_name, rec.primary, rec.secondary));
        self.pairs.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(info.id, rt.clone());
        crate::resync::start(self.clone(), rt.clone());
        Ok(self.view(&rt))
    }

    fn pair_or_err(&self, id: PairId) -> Result<Arc<PairRt>, MetroError> {
        self.pair_by_id(id).ok_or(MetroError::NoPair(id))
    }

    /// `pair pause ID`: stop replicating on purpose; the DCL records.
    pub fn pause(self: &Arc<Self>, id: PairId) -> Result<PairView, MetroError> {
        let p = self.pair_or_err(id)?;
        lock(&p.engine).check(&Event::Pause)?;
        self.on_event(&p, Event::Pause);
        p.note("paused by the operator".into());
        Ok(self.view(&p))
    }

    /// `pair resume ID`: resynchronise what the DCL names, then Normal.
    pub fn resume(self: &Arc<Self>, id: PairId) -> Result<PairView, MetroError> {
        let p = self.pair_or_err(id)?;
        lock(&p.engine).check(&Event::Resume)?;
        p.note("resumed by the operator".into());
        self.on_event(&p, Event::Resume);
        Ok(self.view(&p))
    }

    /// `pair swap ID`: planned switch of the serving side. On the serving side: new changes
    /// wait, the ones in flight finish on both sides, the other side takes over at the next
    /// epoch (claimed from the quorum), and this side becomes its secondary; hosts reconnect
    /// to the other side (through the service address) and resend what got no answer. Asked
    /// on the secondary, it is forwarded to the serving side.
    pub async fn swap(self: &Arc<Self>, id: PairId) -> Result<PairView, MetroError> {
        let p = self.pair_or_err(id)?;
        let peer = self.config.peer.as_ref().ok_or(MetroError::NoPeer)?.name.clone();
        let link = self.current_link().ok_or_else(|| MetroError::LinkDown(peer.clone()))?;
        if p.role() == Role::Secondary {
            ask_done(&link, &Request::PleaseSwap { pair: id }).await?;
            return Ok(self.view(&p));
        }
        if p.state() != PairState::Normal {
            return Err(Refused::WrongState { action: "swap", state: p.state(), needs: "Normal (both copies whole; wait for the synchronisation to finish)" }.into());
        }
        if p.phase() != Phase::Open {
            return Err(MetroError::NotNow(format!("pair {id} is being arbitrated or does not serve here now; see `metrofs pair show {id}`")));
        }
        // Drain: changes hold the gate shared.
        let gate = p.gate.write().await;
        if p.state() != PairState::Normal || p.role() != Role::Primary {
            return Err(MetroError::NotNow(format!("pair {id} changed state while the swap waited; see `metrofs pair show {id}`")));
        }
        p.set_phase(Phase::Deciding);
        let epoch = Epoch(p.epoch().0 + 1);
        let answer = link.call_typed::<Request, Response>(&Request::Swap { pair: id, epoch }, Bytes::new()).await;
        match answer {
            Ok((Response::Done, _)) => {
                let rec = {
                    let mut r = lock(&p.record);
                    let r = &mut *r;
            std::mem::swap(&mut r.primary, &mut r.secondary);
                    r.epoch = epoch;
                    r.state = PairState::Normal;
                    r.forced = false;
                    r.clone()
                };
                if let Err(e) = self.persist(&rec) {
                    tracing::error!(error = %e, "cannot persist the pair record after a swap");
                }
                {
                    let mut eng = lock(&p.engine);
                    *eng = Engine::new(PairState::Normal, Role::Secondary);
                    eng.on(Event::LinkUp);
                }
                self.stop_serving(&p);
                self.note_arbitration(&p, Some(peer.clone()), epoch, format!("planned swap: the service moved from {} to {peer}", self.config.name));
                self.publish_service();
                drop(gate);
                Ok(self.view(&p))
            }
            Ok((Response::Refused(why), _)) => {
                p.set_phase(Phase::Open);
                Err(MetroError::PeerRefused(why))
            }
            Ok((other, _)) => {
                p.set_phase(Phase::Open);
                Err(MetroError::Link(format!("unexpected answer {other:?}")))
            }
            Err(e) => {
                // The other side may or may not have taken over: arbitrate.
                drop(gate);
                link.close("the swap got no answer");
                Err(MetroError::Link(format!("the peer did not confirm the swap ({e}); the pair is arbitrated, see `metrofs pair show {id}`")))
            }
        }
    }

    /// The receiving half of a planned swap.
    async fn take_over_by_swap(self: &Arc<Self>, id: PairId, epoch: Epoch) -> Result<Response, String> {
        let p = self.pair_by_id(id).ok_or("unknown pair")?;
        if p.role() != Role::Secondary || p.state() != PairState::Normal {
            return Err(format!("array {} cannot take over pair {id}: it is {:?} and {}", self.config.name, p.role(), p.state()));
        }
        if *lock(&self.mode) == Mode::Quorum {
            if let Some(q) = self.config.arbitration.quorum.clone() {
                match q.claim(id.0, epoch.0).await {
                    Ok(Claim::Granted) => {}
                    Ok(Claim::Denied { epoch, holder }) => return Err(format!("the quorum refused epoch {epoch}: {holder} holds it")),
                    Err(e) => return Err(format!("the quorum server cannot be reached ({e}); a swap needs it in quorum mode")),
                }
            }
        }
        let rec = {
            let mut r = lock(&p.record);
            let r = &mut *r;
            std::mem::swap(&mut r.primary, &mut r.secondary);
            r.epoch = epoch;
            r.state = PairState::Normal;
            r.forced = false;
            r.clone()
        };
        self.persist(&rec).map_err(|e| e.to_string())?;
        {
            let mut eng = lock(&p.engine);
            *eng = Engine::new(PairState::Normal, Role::Primary);
            eng.on(Event::LinkUp);
        }
        *lock(&p.alarms) = Vec::new();
        p.set_phase(Phase::Open);
        let from = rec.secondary.clone();
        self.note_arbitration(&p, Some(self.config.name.clone()), epoch, format!("planned swap: the service moved from {from} to {}", self.config.name));
        self.publish_service();
        Ok(Response::Done)
    }

    /// `pair force-start ID`: an operator makes this side serve when the other is gone for
    /// good. It raises the epoch (at the quorum too when reachable, so the other side cannot
    /// win it any more); when the other side returns, what it changed since the split is
    /// kept aside (see `conflicts.rs`) before it is resynchronised from this side.
    pub async fn force_start(self: &Arc<Self>, id: PairId) -> Result<PairView, MetroError> {
        let p = self.pair_or_err(id)?;
        if self.current_link().is_some() {
            return Err(MetroError::NotNow(format!("the peer is reachable: force start is for a peer that is gone; use `metrofs pair swap {id}` to move the service")));
        }
        if p.role() == Role::Primary && p.phase() == Phase::Open {
            return Err(MetroError::NotNow(format!("array {} already serves pair {id}", self.config.name)));
        }
        let mut epoch = p.epoch().0 + 1;
        if let Some(q) = self.config.arbitration.quorum.clone() {
            match q.force(id.0, epoch).await {
                Ok(e) => epoch = epoch.max(e),
                Err(e) => tracing::warn!(error = %e, "force start: the quorum server cannot be reached; the epoch is raised here only"),
            }
        }
        let whole = self.situation(&p).whole();
        let reason = format!(
            "force start by the operator{}",
            if whole { "" } else { " (this copy was not whole: changes the other side had not yet copied here are missing until it returns)" }
        );
        self.won(&p, Epoch(epoch), reason, true).await;
        if p.role() != Role::Primary {
            return Err(MetroError::Storage("force start could not record the new epoch; see the log".into()));
        }
        Ok(self.view(&p))
    }

    /// Keeps what this side changed alone aside (synchronously: before any resync may
    /// overwrite it). Files go to `data_dir/metro/conflicts/`; they are sent to the serving
    /// side once the link is up.
    fn keep_aside(&self, p: &PairRt, epoch: Epoch) {
        let (fs, name) = { let r = lock(&p.record); (r.fs, r.fs_name.clone()) };
        let snap = self.dcl.snapshot(fs);
        if snap.keys.is_empty() && snap.full.is_none() {
            return;
        }
        let dir = self.dir.join("conflicts").join(format!("{name}-{}-e{}", p.id(), epoch.0));
        match crate::conflicts::keep_aside(self.array.store(), fs, &snap, &dir) {
            Ok(kept) => {
                let text = format!(
                    "{} file(s) this array changed while it served alone were kept aside in {} (the other side was force-started at epoch {epoch}); they are also copied to /{}/.metrofs-conflicts/ on the file system",
                    kept.files.len(),
                    dir.display(),
                    name
                );
                tracing::warn!("{text}");
                p.event(text.clone());
                lock(&p.alarms).push(text);
            }
            Err(e) => {
                let text = format!("could not keep this side's changes aside in {}: {e}", dir.display());
                tracing::error!("{text}");
                lock(&p.alarms).push(text);
            }
        }
    }

    /// Sends every file under `data_dir/metro/conflicts/` to the serving side; a directory
    /// whose files all arrived is marked sent.
    async fn send_kept_aside(&self, link: &Link) {
        let root = self.dir.join("conflicts");
        let Ok(dirs) = std::fs::read_dir(&root) else { return };
        for d in dirs.flatten() {
            let dir = d.path();
            if dir.join("SENT").exists() {
                continue;
            }
            let Some(pair) = self.pair_list().into_iter().find(|p| dir.file_name().is_some_and(|n| n.to_string_lossy().contains(&p.id().to_string()))) else { continue };
            let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST.txt")) else { continue };
            let top = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut all = true;
            for line in manifest.lines().filter(|l| !l.starts_with('#')) {
                let Some((path, local)) = line.split_once(" -> ") else { continue };
                let Ok(data) = std::fs::read(local) else {
                    all = false;
                    continue;
                };
                let mut comps: Vec<Vec<u8>> = vec![crate::conflicts::ON_FS_DIR.to_vec(), top.as_bytes().to_vec()];
                comps.extend(path.trim_start_matches('/').split('/').map(|c| c.as_bytes().to_vec()));
                let req = Request::KeepAside { pair: pair.id(), path: comps, mode: 0o644 };
                match link.call_typed::<Request, Response>(&req, Bytes::from(data)).await {
                    Ok((Response::Done, _)) => {}
                    other => {
                        tracing::warn!(answer = ?other.map(|r| r.0), file = path, "a kept-aside file did not reach the serving side; retried at the next link");
                        all = false;
                    }
                }
            }
            if all {
                let _ = std::fs::write(dir.join("SENT"), b"");
            }
        }
    }

    /// Writes one kept-aside file under its path on the fs, through the write path (so both
    /// sides get it).
    async fn write_kept_aside(self: &Arc<Self>, p: &Arc<PairRt>, path: &[Vec<u8>], mode: u32, data: Bytes) -> Result<(), FsError> {
        let fs = p.fs();
        let (file, dirs) = path.split_last().ok_or(FsError::Inval)?;
        let mut dir = metrofs_core::ROOT_INO;
        for name in dirs {
            dir = match self.array.store().lookup(fs, dir, name) {
                Ok(a) => a.ino,
                Err(FsError::NoEnt) => {
                    let body = OpBody::Mkdir { dir, name: name.clone(), mode: 0o755, uid: 0, gid: 0 };
                    match self.dual_change(p, fs, body, None).await {
                        Ok(r) => r.obj.map(|a| a.ino).ok_or(FsError::Io("mkdir answered no inode".into()))?,
                        Err(FsError::Exist) => self.array.store().lookup(fs, dir, name)?.ino,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
        }
        let how = metrofs_core::CreateHow::Unchecked(metrofs_core::SetAttr { size: Some(0), ..Default::default() });
        let body = OpBody::Create { dir, name: file.clone(), how, mode: mode & 0o7777, uid: 0, gid: 0 };
        let ino = self.dual_change(p, fs, body, None).await?.obj.map(|a| a.ino).ok_or(FsError::Io("create answered no inode".into()))?;
        let mut off = 0usize;
        while off < data.len() {
            let end = (off + (1 << 20)).min(data.len());
            let body = OpBody::Write { ino, offset: off as u64, data: data.slice(off..end), stable: Stability::Unstable };
            self.dual_change(p, fs, body, None).await?;
            off = end;
        }
        self.dual_change(p, fs, OpBody::Commit { ino }, None).await?;
        Ok(())
    }

    /// `pair delete ID`: unpair; both copies stay as independent file systems.
    pub async fn delete_pair(self: &Arc<Self>, id: PairId) -> Result<(), MetroError> {
        let p = self.pair_or_err(id)?;
        if p.role() != Role::Primary {
            return Err(Refused::NotPrimary.into());
        }
        if let Some(link) = self.current_link() {
            match link.call_typed::<Request, Response>(&Request::Delete { pair: id }, Bytes::new()).await {
                Ok((Response::Done, _)) => {}
                Ok((other, _)) => tracing::warn!(answer = ?other, "the peer did not confirm the unpairing; its copy stays paired until it hears of it"),
                Err(e) => tracing::warn!(error = %e, "the peer did not hear of the unpairing"),
            }
        }
        self.drop_pair(&p)
    }

    fn drop_pair(&self, p: &Arc<PairRt>) -> Result<(), MetroError> {
        if let Some(h) = lock(&p.resync).take() {
            h.stop();
        }
        self.forget(p.id())?;
        self.dcl.drop_fs(p.fs()).map_err(storage)?;
        self.pairs.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&p.fs());
        tracing::info!(pair = %p.id(), "pair deleted; both copies are independent file systems now");
        Ok(())
    }

    /// `pair verify ID`: compares both sides (attributes, entries and chunk digests) and
    /// lists every difference.
    pub async fn verify(self: &Arc<Self>, id: PairId) -> Result<VerifyReport, MetroError> {
        crate::resync::verify(self.clone(), self.pair_or_err(id)?).await
    }

    #[must_use]
    pub fn list_pairs(&self) -> Vec<PairView> {
        let mut v: Vec<_> = self.pair_list().iter().map(|p| self.view(p)).collect();
        v.sort_by(|a, b| a.fs.cmp(&b.fs));
        v
    }

    pub fn show(&self, id: PairId) -> Result<PairView, MetroError> {
        Ok(self.view(&self.pair_or_err(id)?))
    }

    /// The pair of a file system by name, if paired.
    #[must_use]
    pub fn pair_of_fs(&self, fs_name: &str) -> Option<PairView> {
        self.pair_list().into_iter().find(|p| lock(&p.record).fs_name == fs_name).map(|p| self.view(&p))
    }

    fn view(&self, p: &Arc<PairRt>) -> PairView {
        let rec = lock(&p.record).clone();
        let eng = lock(&p.engine).clone();
        let (local_data, remote_data) = eng.data_status();
        let fs = rec.fs;
        let (dirs, inodes, chunks, full) = self.dcl.counts(fs);
        let link = self.current_link();
        let preferred_site = match &self.config.peer {
            Some(peer) if !self.config.preferred => peer.name.clone(),
            _ => self.config.name.clone(),
        };
        PairView {
            id: rec.id.to_string(),
            fs: rec.fs_name.clone(),
            fs_id: fs,
            state: eng.state(),
            role: eng.role(),
            serving: rec.primary.clone(),
            secondary: rec.secondary.clone(),
            preferred_site,
            local_data,
            remote_data,
            link_up: link.is_some(),
            link_rtt_us: link.and_then(|l| l.rtt()).map(|d| d.as_micros() as u64),
            epoch: rec.epoch.0,
            dcl_bytes: chunks as u64 * DCL_CHUNK_BYTES,
            dcl_dirs: dirs,
            dcl_inodes: inodes,
            dcl_chunks: chunks,
            dcl_full: full,
            sync: lock(&p.resync).as_ref().map(ResyncHandle::progress),
            verify: lock(&p.verify).clone(),
            alarms: lock(&p.alarms).clone(),
            events: lock(&p.events).iter().rev().take(20).cloned().collect(),
            phase: p.phase(),
            quorum_mode: lock(&self.mode).to_string(),
            quorum: self.config.arbitration.quorum.as_ref().map(|q| q.servers()).unwrap_or_default(),
            last_arbitration: lock(&p.last_arbitration).clone(),
            state_since: *lock(&p.since),
            forced: rec.forced,
        }
    }

    /// Makes the LOG durable (the daemon calls it periodically, well below the kernel's
    /// dirty write-back delay, so no data reaches the disk before its LOG record).
    pub fn flush_log(&self) -> std::io::Result<()> {
        self.log.flush()
    }

    /// LOG keys resident / active, for metrics.
    #[must_use]
    pub fn log_extents(&self) -> (usize, usize) {
        (self.log.resident(), self.log.active())
    }

    /// Whether this array may answer hosts for `fs` (it serves it, or it is not paired).
    /// [`Metro::serves`], after waiting out an arbitration (or a swap, or a restart that has
    /// not yet confirmed it still serves): host calls wait for the outcome rather than make
    /// the host back off (NFS clients wait seconds after a JUKEBOX), and never read what the
    /// other side may have changed meanwhile.
    async fn serving(&self, fs: FsId) -> Result<Option<Arc<PairRt>>, FsError> {
        if let Some(p) = self.pair_of(fs) {
            if p.phase() == Phase::Deciding && p.role() == Role::Primary {
                let mut phases = p.phase.subscribe();
                let wait = phases.wait_for(|ph| *ph != Phase::Deciding);
                let _ = tokio::time::timeout(Duration::from_millis(DECIDING_WAIT_MS), wait).await;
            }
            if p.role() != Role::Primary || p.phase() == Phase::Stopped {
                return Err(self.refuse(&p).await);
            }
        }
        self.serves(fs)
    }

    fn serves(&self, fs: FsId) -> Result<Option<Arc<PairRt>>, FsError> {
        match self.pair_of(fs) {
            None => Ok(None),
            Some(p) if p.role() == Role::Primary && p.phase() != Phase::Stopped => Ok(Some(p)),
            Some(p) => Err(self.not_serving(&p)),
        }
    }
}

// ---------------------------------------------------------------- export rules

/// Export rules of paired file systems: the same on both arrays, the serving side's winning.
impl Metro {
    /// `PUT /api/fs/NAME/export`: sets the export rules of a file system.
    ///
    /// 1. Not paired: this array only.
    /// 2. Paired, this array serves it: it applies the rules, then (link up) sends them to the
    ///    twin and waits for its answer, under [`Array::export_order`], so that changes asked
    ///    on both arrays at once reach both in the same order. The twin refusing or the call
    ///    failing is [`MetroError::ExportNotCopied`]: the rules stay in force here (the
    ///    serving side's rules win) and reach the twin at the next link.
    /// 3. Paired, this array is the secondary, link up: it hands the rules to the serving
    ///    side, which runs step 2 (so they reach this array from there) before it answers.
    /// 4. Link down: the serving side applies them alone; the twin gets them after the next
    ///    Hello ([`Metro::push_exports`]). Any other side refuses
    ///    ([`MetroError::ExportElsewhere`]): the serving side's rules replace its own when
    ///    the link returns, so a change made there would be lost without a word.
    pub async fn set_export(self: &Arc<Self>, name: &str, rules: ExportRules) -> Result<metrofs_store::FsInfo, MetroError> {
        let info = self.array.fs(name).ok_or_else(|| ArrayError::NotFound(name.to_owned()))?;
        let Some(p) = self.pair_of(info.id) else {
            return Ok(self.store_export(info.id, rules).await?.0);
        };
        if p.role() == Role::Primary && p.phase() == Phase::Deciding && self.current_link().is_none() {
            // As host changes do: wait out the arbitration of the link's loss, then decide.
            let mut phases = p.phase.subscribe();
            let _ = tokio::time::timeout(Duration::from_millis(DECIDING_WAIT_MS), phases.wait_for(|ph| *ph != Phase::Deciding)).await;
        }
        let link = self.current_link();
        let (pair, serving) = (p.id(), lock(&p.record).primary.clone());
        let here = &self.config.name;
        match (p.role(), p.phase(), link) {
            (Role::Primary, _, Some(_)) | (Role::Primary, Phase::Open, None) => self.export_as_serving(&p, rules).await,
            (Role::Secondary, _, Some(link)) => {
                let req = Request::SetExport { pair, epoch: p.epoch(), serving: serving.clone(), rules };
                ask_done(&link, &req).await.map_err(|e| match e {
                    MetroError::Link(e) => MetroError::Link(format!(
                        "{e}; {serving}, which serves pair {pair}, may or may not have changed the export rules of '{name}': GET /api/fs/{name}/export on {serving} tells"
                    )),
                    e => e,
                })?;
                // The serving side sent them here before it answered.
                self.array.fs(name).ok_or_else(|| ArrayError::NotFound(name.to_owned()).into())
            }
            (Role::Secondary, _, None) => Err(MetroError::ExportElsewhere(format!(
                "array {here} is the secondary of pair {pair} (fs '{name}') and its link to {serving}, which serves the pair, is down: \
                 change the export rules on {serving}; its rules replace this array's when the link returns, so a change made here would be lost. Nothing was changed"
            ))),
            (Role::Primary, Phase::Deciding, None) => Err(MetroError::ExportElsewhere(format!(
                "array {here} lost its link to the peer and has not yet decided whether it goes on serving pair {pair} (fs '{name}'): retry shortly. Nothing was changed"
            ))),
            (Role::Primary, Phase::Stopped, None) => Err(MetroError::ExportElsewhere(format!(
                "array {here} does not serve pair {pair} (fs '{name}') now: it lost its link to the peer and stopped serving. Change the export rules on the array that serves the pair; \
                 its rules replace this array's when the link returns. Nothing was changed"
            ))),
        }
    }

    /// Step 2 of [`Metro::set_export`], on the serving side.
    async fn export_as_serving(&self, p: &Arc<PairRt>, rules: ExportRules) -> Result<metrofs_store::FsInfo, MetroError> {
        let _order = self.array.export_order().lock().await;
        let (info, changed) = self.store_export(p.fs(), rules.clone()).await?;
        let twin = lock(&p.record).secondary.clone();
        let Some(link) = self.current_link() else {
            if changed {
                p.note(format!("export rules of '{}' changed on {} alone (the link is down); {twin} gets them when the link returns", info.name, self.config.name));
            }
            return Ok(info);
        };
        match self.send_export(p, &link, rules).await {
            Ok(()) => Ok(info),
            Err(why) => {
                tracing::warn!(pair = %p.id(), %why, "the twin did not take the new export rules");
                Err(MetroError::ExportNotCopied { fs: info.name, pair: p.id(), serving: self.config.name.clone(), twin, why })
            }
        }
    }

    /// Sends this (serving) side's export rules of `p` to the twin, which stores them.
    async fn send_export(&self, p: &PairRt, link: &Link, rules: ExportRules) -> Result<(), String> {
        let req = Request::SetExport { pair: p.id(), epoch: p.epoch(), serving: self.config.name.clone(), rules };
        ask_done(link, &req).await.map_err(|e| match e {
            MetroError::PeerRefused(why) => why,
            e => e.to_string(),
        })
    }

    /// The rules on this array's store, off the async workers (a change commits to disk);
    /// whether they changed.
    async fn store_export(&self, fs: FsId, rules: ExportRules) -> Result<(metrofs_store::FsInfo, bool), MetroError> {
        let array = self.array.clone();
        let stored = tokio::task::spawn_blocking(move || array.set_export_of(fs, rules))
            .await
            .map_err(|e| MetroError::Storage(format!("export rules task failed: {e}")))?;
        Ok(stored?)
    }

    /// A peer's [`Request::SetExport`]. From the serving side: store its rules (this side is
    /// the twin). From the secondary, naming this array as the serving side: an operator asked
    /// there; this side runs the change for both ([`Metro::set_export`], step 3).
    async fn export_from_peer(&self, id: PairId, epoch: Epoch, serving: &str, rules: ExportRules) -> Result<Response, String> {
        let here = &self.config.name;
        if serving == here {
            let p = self.pair_by_id(id).ok_or_else(|| format!("pair {id} is unknown on array {here}"))?;
            if p.role() != Role::Primary {
                return Err(format!("array {here} does not serve pair {id} (it records {} as its serving side): export rules not changed", lock(&p.record).primary));
            }
            let info = self.export_as_serving(&p, rules).await.map_err(|e| e.to_string())?;
            p.event_as(crate::events::EventKind::Operator, format!("export rules of '{}' changed as asked on the secondary by an operator", info.name));
            return Ok(Response::Done);
        }
        let p = self.secondary_pair(id, Some(epoch))?;
        let (fs, primary) = {
            let r = lock(&p.record);
            (r.fs, r.primary.clone())
        };
        if primary != serving {
            return Err(format!("export rules of pair {id} sent by {serving} as its serving side, but array {here} records {primary} as the serving side: not changed"));
        }
        let (info, changed) = self.store_export(fs, rules).await.map_err(|e| e.to_string())?;
        if changed {
            p.event_as(crate::events::EventKind::Operator, format!("export rules of '{}' set as {serving} (the serving side) has them", info.name));
        } else {
            tracing::debug!(pair = %id, "export rules already those of the serving side");
        }
        Ok(Response::Done)
    }

    /// After a Hello, on the serving side: sends the twin of each pair it serves its export
    /// rules, which may have changed while the link was down (the same rules write nothing
    /// there). A failure waits for the next link.
    async fn push_exports(&self, link: &Link) {
        for p in self.pair_list() {
            if p.role() != Role::Primary {
                continue;
            }
            let _order = self.array.export_order().lock().await;
            let Some(info) = self.array.store().fs_by_id(p.fs()) else { continue };
            if let Err(why) = self.send_export(&p, link, info.rules).await {
                tracing::warn!(pair = %p.id(), %why, "the twin did not take this side's export rules; they are sent again at the next link");
            }
        }
    }
}

/// Asks the peer `req` (no body) and expects `Done`: `PeerRefused` with its reason when it
/// refuses, `Link` when the call fails or the answer is another one.
async fn ask_done(link: &Link, req: &Request) -> Result<(), MetroError> {
    match link.call_typed::<Request, Response>(req, Bytes::new()).await {
        Ok((Response::Done, _)) => Ok(()),
        Ok((Response::Refused(why), _)) => Err(MetroError::PeerRefused(why)),
        Ok((other, _)) => Err(MetroError::Link(format!("unexpected answer {other:?}"))),
        Err(e) => Err(MetroError::Link(e.to_string())),
    }
}

/// The link's request handler: decodes and hands to [`Metro::handle`].
struct LinkHandler(std::sync::Weak<Metro>);

impl metrofs_link::Handler for LinkHandler {
    async fn handle(&self, header: Bytes, body: Bytes) -> (Bytes, Bytes) {
        let resp = match (self.0.upgrade(), metrofs_link::decode_header::<Request>(&header)) {
            (Some(m), Ok(req)) => m.handle(req, body).await,
            (None, _) => Response::Refused("the array is stopping".into()),
            (_, Err(e)) => {
                tracing::warn!(error = %e, "undecodable request from the peer refused");
                Response::Refused(format!("undecodable request: {e}"))
            }
        };
        let header = metrofs_link::encode_header(&resp).unwrap_or_else(|e| {
            // Only an over-long answer can fail to encode (a huge listing): say so instead.
            metrofs_link::encode_header(&Response::Refused(format!("answer too large: {e}"))).unwrap_or_default()
        });
        (header, Bytes::new())
    }

    /// Replicated ops: see [`proto::is_replicate`]. Everything else (pair records made durable,
    /// resync batches, verify digests...) may block on the disk and runs in its own task.
    fn inline(&self, header: &[u8]) -> bool {
        proto::is_replicate(header)
    }
}

/// A failed LOG flush, as the change that needed it answers it.
fn log_flush_failed(e: std::io::Error) -> FsError {
    metrofs_core::metrics::get().error("log");
    FsError::Io(format!("LOG flush failed: {e}"))
}

/// Equal results, ignoring what legitimately differs between two disks (`used`).
fn same_result(a: &Result<OpReply, FsError>, b: &Result<OpReply, FsError>) -> bool {
    fn norm(r: &Result<OpReply, FsError>) -> Result<OpReply, FsError> {
        r.clone().map(|mut r| {
            let clear = |a: &mut Attr| a.used = 0;
            if let Some(a) = r.obj.as_mut() {
                clear(a);
            }
            if let Some((_, a)) = r.dir.as_mut() {
                clear(a);
            }
            if let Some((_, a)) = r.dir2.as_mut() {
                clear(a);
            }
            r
        })
    }
    norm(a) == norm(b)
}

fn brief(r: &Result<OpReply, FsError>) -> String {
    match r {
        Ok(r) => r.obj.as_ref().map_or_else(|| "ok".to_owned(), |a| format!("ok (ino {}, size {}, mtime {:?})", a.ino, a.size, a.mtime)),
        Err(e) => format!("error: {e}"),
    }
}

fn target_ino(op: &FsOp) -> Option<Ino> {
    match &op.body {
        OpBody::Write { ino, .. } | OpBody::SetAttr { ino, .. } | OpBody::Commit { ino } | OpBody::Link { ino, .. } => Some(*ino),
        OpBody::Create { dir, .. } | OpBody::Mkdir { dir, .. } | OpBody::Symlink { dir, .. } | OpBody::Remove { dir, .. } | OpBody::Rmdir { dir, .. } => Some(*dir),
        OpBody::Rename { from_dir, .. } => Some(*from_dir),
    }
}

/// The DCL keys covering LOG keys, per fs (a region: its chunks and the inode; an object:
/// the inode and, if it is a directory, its entries).
/// `exists`: whether the inode is in this array's store; a region of one that is not has no data
/// to copy (its inode key removes it from the twin), so it becomes that key alone.
fn log_to_dcl(keys: Vec<(FsId, LogKey)>, paired: impl Fn(FsId) -> bool, exists: impl Fn(FsId, Ino) -> bool) -> HashMap<FsId, Vec<DclKey>> {
    let mut by_fs: HashMap<FsId, Vec<DclKey>> = HashMap::new();
    for (fs, key) in keys {
        if !paired(fs) {
            continue;
        }
        let keys = by_fs.entry(fs).or_default();
        match key {
            LogKey::Region { ino, region } => {
                if exists(fs, ino) {
                    keys.extend(DclKey::chunks(ino, region * LOG_REGION_BYTES, LOG_REGION_BYTES));
                }
                keys.push(DclKey::Inode(ino));
            }
            LogKey::Object(ino) => {
                keys.push(DclKey::Inode(ino));
                keys.push(DclKey::Dir(ino));
            }
        }
    }
    by_fs
}

/// The LOG keys [`Metro::reserve_upcoming`] makes resident ahead for an inode to be made: its
/// attributes and its first data region (a small file's CREATE, WRITE and COMMIT use no other).
fn reserved_keys(ino: Ino) -> [LogKey; 2] {
    [LogKey::Object(ino), LogKey::Region { ino, region: 0 }]
}

/// What the LOG names for a change (see `log.rs`).
fn log_keys(op: &FsOp) -> Vec<LogKey> {
    let mut k = Vec::new();
    if let Some(n) = op.new_inode {
        k.push(LogKey::Object(n.ino));
    }
    match &op.body {
        OpBody::Write { ino, offset, data, .. } => k.extend(LogKey::regions(*ino, *offset, data.len() as u64)),
        OpBody::SetAttr { ino, .. } | OpBody::Commit { ino } => k.push(LogKey::Object(*ino)),
        OpBody::Create { dir, .. } | OpBody::Mkdir { dir, .. } | OpBody::Symlink { dir, .. } | OpBody::Remove { dir, .. } | OpBody::Rmdir { dir, .. } => {
            k.push(LogKey::Object(*dir));
        }
        OpBody::Rename { from_dir, to_dir, .. } => {
            k.push(LogKey::Object(*from_dir));
            k.push(LogKey::Object(*to_dir));
        }
        OpBody::Link { ino, dir, .. } => {
            k.push(LogKey::Object(*ino));
            k.push(LogKey::Object(*dir));
        }
    }
    k
}

/// What the DCL names for a change that reached only this side (or differed).
fn dcl_keys(op: &FsOp, local: &Result<OpReply, FsError>) -> Vec<DclKey> {
    let mut k = Vec::new();
    if let Some(n) = op.new_inode {
        k.push(DclKey::Inode(n.ino));
    }
    let reply = local.as_ref().ok();
    match &op.body {
        OpBody::Write { ino, offset, data, .. } => {
            k.extend(DclKey::chunks(*ino, *offset, data.len() as u64));
            k.push(DclKey::Inode(*ino));
        }
        OpBody::SetAttr { ino, attr, .. } => {
            k.push(DclKey::Inode(*ino));
            if let (Some(new), Some(old)) = (attr.size, reply.and_then(|r| r.obj_before)) {
                let (lo, hi) = (new.min(old.size), new.max(old.size));
                if hi > lo {
                    k.extend(DclKey::chunks(*ino, lo, hi - lo));
                }
            }
        }
        OpBody::Commit { .. } => {}
        OpBody::Create { dir, .. } | OpBody::Mkdir { dir, .. } | OpBody::Symlink { dir, .. } | OpBody::Remove { dir, .. } | OpBody::Rmdir { dir, .. } => {
            k.push(DclKey::Dir(*dir));
            k.push(DclKey::Inode(*dir));
        }
        OpBody::Rename { from_dir, to_dir, .. } => {
            for d in [from_dir, to_dir] {
                k.push(DclKey::Dir(*d));
                k.push(DclKey::Inode(*d));
            }
        }
        OpBody::Link { ino, dir, .. } => {
            k.push(DclKey::Inode(*ino));
            k.push(DclKey::Dir(*dir));
            k.push(DclKey::Inode(*dir));
        }
    }
    if let Some(a) = reply.and_then(|r| r.obj.as_ref()) {
        k.push(DclKey::Inode(a.ino));
    }
    k.sort_unstable();
    k.dedup();
    k
}

impl Backend for Metro {
    fn export_by_path(&self, path: &str) -> Option<ExportInfo> {
        let e = self.array.export_by_path(path)?;
        // The secondary of a pair does not offer the fs: hosts mount the serving side.
        self.serves(e.fs).ok().map(|_| e)
    }

    fn export_by_fs(&self, fs: FsId) -> Option<ExportInfo> {
        self.array.export_by_fs(fs)
    }

    fn exports(&self) -> Vec<ExportInfo> {
        self.array.exports().into_iter().filter(|e| self.serves(e.fs).is_ok()).collect()
    }

    fn write_verifier(&self) -> [u8; 8] {
        self.array.write_verifier()
    }

    async fn getattr(&self, fs: FsId, ino: Ino) -> Result<Attr, FsError> {
        self.serving(fs).await?;
        self.array.getattr(fs, ino).await
    }

    async fn lookup(&self, fs: FsId, dir: Ino, name: &[u8]) -> Result<Attr, FsError> {
        self.serving(fs).await?;
        self.array.lookup(fs, dir, name).await
    }

    async fn read(&self, fs: FsId, ino: Ino, offset: u64, count: u32) -> Result<ReadReply, FsError> {
        self.serving(fs).await?;
        self.array.read(fs, ino, offset, count).await
    }

    async fn readlink(&self, fs: FsId, ino: Ino) -> Result<(Vec<u8>, Attr), FsError> {
        self.serving(fs).await?;
        self.array.readlink(fs, ino).await
    }

    async fn readdir(&self, fs: FsId, dir: Ino, cookie: u64, max_entries: usize, plus: bool) -> Result<ReadDirPage, FsError> {
        self.serving(fs).await?;
        self.array.readdir(fs, dir, cookie, max_entries, plus).await
    }

    async fn fsstat(&self, fs: FsId) -> Result<FsStat, FsError> {
        self.serving(fs).await?;
        self.array.fsstat(fs).await
    }

    fn replayed(&self, fs: FsId, key: &ReplyKey) -> Option<Result<OpReply, FsError>> {
        // Only the side that serves answers for the pair; its book holds what it applied,
        // as the serving side or as the replica before a takeover.
        self.serves(fs).ok()?;
        self.array.replayed(fs, key)
    }

    async fn change(&self, fs: FsId, body: OpBody, caller: &Caller) -> Result<OpReply, FsError> {
        match self.serving(fs).await? {
            None => self.array.change(fs, body, caller).await,
            Some(pair) => {
                // The write path hands engine commands to spawned tasks, which need an Arc.
                let me = self.me.upgrade().ok_or_else(|| FsError::Busy("the array is stopping".into()))?;
                me.dual_change(&pair, fs, body, caller.reply_key).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LOG left by a crash: a region of a file that exists names its chunks; a region of an
    /// inode this array does not have (reserved ahead and never made, or removed since) names
    /// only the inode, whose resync then removes it from the twin if the twin has it.
    #[test]
    fn log_to_dcl_names_no_data_of_an_inode_that_is_not_here() {
        let (fs, other) = (FsId(1), FsId(2));
        let left = vec![
            (fs, LogKey::Region { ino: Ino(10), region: 1 }),
            (fs, LogKey::Region { ino: Ino(11), region: 0 }),
            (fs, LogKey::Object(Ino(11))),
            (other, LogKey::Object(Ino(3))),
        ];
        let by_fs = log_to_dcl(left, |f| f == fs, |_, ino| ino == Ino(10));
        assert!(!by_fs.contains_key(&other), "an unpaired fs has no DCL");
        let keys = &by_fs[&fs];
        let chunks: Vec<_> = keys.iter().filter(|k| matches!(k, DclKey::Chunk { .. })).collect();
        assert_eq!(chunks.len() as u64, LOG_REGION_BYTES / crate::dcl::DCL_CHUNK_BYTES);
        assert!(chunks.iter().all(|k| matches!(k, DclKey::Chunk { ino: Ino(10), idx } if *idx >= LOG_REGION_BYTES / crate::dcl::DCL_CHUNK_BYTES)));
        for k in [DclKey::Inode(Ino(10)), DclKey::Inode(Ino(11)), DclKey::Dir(Ino(11))] {
            assert!(keys.contains(&k), "{k:?}");
        }
        assert!(!keys.iter().any(|k| matches!(k, DclKey::Chunk { ino: Ino(11), .. })));
    }
}
