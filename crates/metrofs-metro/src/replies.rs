//! The reply book: what each keyed change answered on this array, so that a retransmission
//! reaching this array after a failover gets that answer instead of running the change again.
//!
//! An NFSv3 client that got no reply resends the request with the same xid. The NFS front end's
//! own reply cache answers retransmissions to the *same* array; it is lost with that array.
//! The book is its twin below the [`metrofs_core::Backend`] seam:
//! 1. The front end names each non-idempotent change with a [`ReplyKey`] (client IP, xid,
//!    procedure, arguments' hash: the same on both arrays for the same request).
//! 2. The array that serves applies the change and records its result here under the key;
//!    the replicated op carries the key, and the twin records *its own* result of the same
//!    op (identical, or the pair has diverged and says so) in its own book.
//! 3. The serving array is lost before its reply reaches the client; the client resends to
//!    the survivor, whose front end asks [`metrofs_core::Backend::replayed`], which looks here
//!    ([`ReplyBook::get`]) and answers the recorded result without applying anything.
//!
//! A `Busy` result (JUKEBOX: "retry later") is never recorded, since its retry must run.
//!
//! # Bounds
//! At most [`ENTRIES_MAX`] entries, each kept at most [`AGE_MAX`]; the oldest go first.
//! - Age: a Linux NFS client over TCP resends its outstanding requests as soon as it has
//!   reconnected, so across a failover it mostly waits for the failover itself (RTO target
//!   ≤ 3 s). A client whose reconnect attempts failed meanwhile backs off between attempts:
//!   at most the mount's RPC timeout since Linux 4.8 (`timeo=600`: 60 s by default), at most
//!   5 minutes before. On a live connection it resends after `timeo`, doubling per retry.
//!   Ten minutes covers the longest of these with margin; a request resent later than that
//!   comes from a mount that hung far longer than any failover.
//! - Count: memory. An entry holds one `OpReply` (two attribute sets and two wcc sets, about
//!   450 bytes with its key and bookkeeping), so 64 Ki entries cost ~30 MiB at most. The
//!   window this leaves is `ENTRIES_MAX / keyed changes per second`: ~65 s at 1000 keyed
//!   changes/s. The front end does not key WRITE (re-applying the same bytes at the same
//!   offset answers the same success, and writes would crowd the namespace changes out), so
//!   the keyed rate is the rate of namespace and attribute changes, which is far lower.
//!
//! Time is tokio's monotonic clock ([`tokio::time::Instant`], which a paused test or a
//! simulator drives); `record_at`/`get_at` take it explicitly.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use metrofs_core::{FsError, FsId, OpReply, ReplyKey};
use tokio::time::Instant;

/// Entries kept at most (see the module doc, "Bounds").
pub const ENTRIES_MAX: usize = 65_536;
/// How long a result stays answerable (see the module doc, "Bounds").
pub const AGE_MAX: Duration = Duration::from_secs(600);

/// A change's result, as kept.
pub type Recorded = Result<OpReply, FsError>;

#[derive(Debug)]
struct Entry {
    result: Recorded,
    born: Instant,
    /// Matches this entry to its place in `order` (a key recorded again gets a new seq).
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(FsId, ReplyKey), Entry>,
    /// Keys in recording order, with the seq they were recorded under. Holds exactly the
    /// live entries' (key, seq) plus stale pairs of keys recorded again, which `evict` and
    /// `pop_oldest` skip.
    order: VecDeque<((FsId, ReplyKey), u64)>,
    next_seq: u64,
}

/// A bounded, thread-safe map `(fs, ReplyKey) → result` (module doc).
#[derive(Debug)]
pub struct ReplyBook {
    inner: Mutex<Inner>,
    entries_max: usize,
    age_max: Duration,
}

impl Default for ReplyBook {
    fn default() -> Self {
        Self::new(ENTRIES_MAX, AGE_MAX)
    }
}

impl ReplyBook {
    #[must_use]
    pub fn new(entries_max: usize, age_max: Duration) -> Self {
        assert!(entries_max > 0, "a reply book of no entries could answer no retransmission");
        Self { inner: Mutex::new(Inner::default()), entries_max, age_max }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every method leaves the map and queue consistent before it can panic (allocation
        // aside), so a poisoned lock still guards a usable book.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what the change named `key` answered on this array. `Busy` is not recorded
    /// (its retry must run). Recording a key again replaces its result and renews its age.
    pub fn record(&self, fs: FsId, key: ReplyKey, result: &Recorded) {
        self.record_at(fs, key, result, Instant::now());
    }

    /// The result recorded for `key` on `fs`, unless forgotten.
    #[must_use]
    pub fn get(&self, fs: FsId, key: &ReplyKey) -> Option<Recorded> {
        self.get_at(fs, key, Instant::now())
    }

    pub fn record_at(&self, fs: FsId, key: ReplyKey, result: &Recorded, now: Instant) {
        if matches!(result, Err(FsError::Busy(_))) {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        Self::evict(inner, now, self.age_max);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.map.insert((fs, key), Entry { result: result.clone(), born: now, seq });
        inner.order.push_back(((fs, key), seq));
        while inner.map.len() > self.entries_max {
            if !Self::pop_oldest(inner) {
                break;
            }
        }
        // Keys recorded again leave stale pairs behind; keep the queue from outgrowing the map.
        if inner.order.len() > 2 * self.entries_max {
            let map = &inner.map;
            inner.order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
        assert!(inner.map.len() <= self.entries_max, "reply book over its bound");
        debug_assert!(inner.order.len() >= inner.map.len(), "every entry is in the queue");
    }

    #[must_use]
    pub fn get_at(&self, fs: FsId, key: &ReplyKey, now: Instant) -> Option<Recorded> {
        let g = self.lock();
        let e = g.map.get(&(fs, *key))?;
        // Expired entries are only removed when recording; never answer one.
        (now.saturating_duration_since(e.born) <= self.age_max).then(|| e.result.clone())
    }

    /// Entries held (expired ones included until the next `record`).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry of `fs` (the fs was deleted; its id will not come back).
    pub fn forget_fs(&self, fs: FsId) {
        let mut g = self.lock();
        g.map.retain(|(f, _), _| *f != fs);
        g.order.retain(|((f, _), _)| *f != fs);
    }

    fn evict(inner: &mut Inner, now: Instant, age_max: Duration) {
        while let Some((key, seq)) = inner.order.front().copied() {
            match inner.map.get(&key) {
                Some(e) if e.seq == seq => {
                    if now.saturating_duration_since(e.born) <= age_max {
                        break;
                    }
                    inner.map.remove(&key);
                }
                // A key recorded again later: its live pair is further back.
                _ => {}
            }
            inner.order.pop_front();
        }
    }

    /// Removes the oldest live entry; false when there is none.
    fn pop_oldest(inner: &mut Inner) -> bool {
        while let Some((key, seq)) = inner.order.pop_front() {
            if inner.map.get(&key).is_some_and(|e| e.seq == seq) {
                inner.map.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrofs_core::{Attr, FileType, Gen, Ino, Time, WccAttr};

    fn key(xid: u32) -> ReplyKey {
        ReplyKey::new([127, 0, 0, 1].into(), xid, 8, 0xfeed)
    }

    fn created(ino: u64) -> Recorded {
        let attr = Attr {
            ino: Ino(ino),
            gen: Gen(1),
            ftype: FileType::Regular,
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            size: 0,
            used: 0,
            atime: Time::new(5, 0),
            mtime: Time::new(5, 0),
            ctime: Time::new(5, 0),
        };
        let dir = Attr { ino: Ino(1), ftype: FileType::Directory, ..attr.clone() };
        Ok(OpReply { obj: Some(attr), dir: Some((WccAttr::from(&dir), dir)), ..OpReply::default() })
    }

    #[test]
    fn records_and_answers_per_fs_and_key() {
        let b = ReplyBook::default();
        let t = Instant::now();
        assert_eq!(b.get_at(FsId(1), &key(1), t), None);
        b.record_at(FsId(1), key(1), &created(10), t);
        b.record_at(FsId(1), key(2), &Err(FsError::Exist), t);
        assert_eq!(b.get_at(FsId(1), &key(1), t), Some(created(10)));
        assert_eq!(b.get_at(FsId(1), &key(2), t), Some(Err(FsError::Exist)), "errors are answers too");
        assert_eq!(b.get_at(FsId(2), &key(1), t), None, "another fs");
        assert_eq!(b.get_at(FsId(1), &key(3), t), None, "another xid");
        let other_args = ReplyKey::new([127, 0, 0, 1].into(), 1, 8, 0xbeef);
        assert_eq!(b.get_at(FsId(1), &other_args, t), None, "other arguments");
        let other_client = ReplyKey::new([127, 0, 0, 2].into(), 1, 8, 0xfeed);
        assert_eq!(b.get_at(FsId(1), &other_client, t), None, "another client");
        // Recording again replaces.
        b.record_at(FsId(1), key(1), &created(11), t);
        assert_eq!(b.get_at(FsId(1), &key(1), t), Some(created(11)));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn busy_is_never_recorded() {
        let b = ReplyBook::default();
        let t = Instant::now();
        b.record_at(FsId(1), key(1), &Err(FsError::Busy("arbitration".into())), t);
        assert_eq!(b.get_at(FsId(1), &key(1), t), None);
        assert!(b.is_empty());
    }

    #[test]
    fn bounded_by_count_oldest_first() {
        let b = ReplyBook::new(3, AGE_MAX);
        let t = Instant::now();
        for x in 0..5 {
            b.record_at(FsId(1), key(x), &created(u64::from(x)), t);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.get_at(FsId(1), &key(0), t), None);
        assert_eq!(b.get_at(FsId(1), &key(1), t), None);
        for x in 2..5 {
            assert_eq!(b.get_at(FsId(1), &key(x), t), Some(created(u64::from(x))));
        }
        // Key 2 recorded again is now the newest: 3 goes first.
        b.record_at(FsId(1), key(2), &created(20), t);
        b.record_at(FsId(1), key(9), &created(9), t);
        assert_eq!(b.get_at(FsId(1), &key(3), t), None);
        assert_eq!(b.get_at(FsId(1), &key(2), t), Some(created(20)));
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn bounded_by_age() {
        let b = ReplyBook::new(100, Duration::from_secs(600));
        let t = Instant::now();
        b.record_at(FsId(1), key(1), &created(1), t);
        b.record_at(FsId(1), key(2), &created(2), t + Duration::from_secs(300));
        let late = t + Duration::from_secs(601);
        assert_eq!(b.get_at(FsId(1), &key(1), late), None, "expired: never answered");
        assert_eq!(b.get_at(FsId(1), &key(2), late), Some(created(2)));
        b.record_at(FsId(1), key(3), &created(3), late);
        assert_eq!(b.len(), 2, "the expired entry is removed at the next record");
        assert_eq!(b.get_at(FsId(1), &key(1), t + Duration::from_secs(599)), None, "removed for good");
    }

    #[test]
    fn queue_stays_bounded_when_keys_are_recorded_again() {
        let b = ReplyBook::new(4, AGE_MAX);
        let t = Instant::now();
        for _ in 0..10_000 {
            b.record_at(FsId(1), key(1), &created(1), t);
        }
        assert_eq!(b.len(), 1);
        assert!(b.lock().order.len() <= 2 * 4 + 1, "queue holds {}", b.lock().order.len());
        assert_eq!(b.get_at(FsId(1), &key(1), t), Some(created(1)));
    }

    #[test]
    fn forget_fs_drops_only_that_fs() {
        let b = ReplyBook::default();
        let t = Instant::now();
        b.record_at(FsId(1), key(1), &created(1), t);
        b.record_at(FsId(2), key(1), &created(2), t);
        b.forget_fs(FsId(1));
        assert_eq!(b.get_at(FsId(1), &key(1), t), None);
        assert_eq!(b.get_at(FsId(2), &key(1), t), Some(created(2)));
    }

    #[test]
    fn shared_between_threads() {
        let b = std::sync::Arc::new(ReplyBook::new(1000, AGE_MAX));
        let threads: Vec<_> = (0..4u32)
            .map(|n| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for x in 0..200 {
                        b.record(FsId(u64::from(n)), key(x), &created(u64::from(x)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(b.len(), 800);
        assert_eq!(b.get(FsId(3), &key(199)), Some(created(199)));
    }
}
