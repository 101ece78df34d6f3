//! The duplicate request cache: answers retransmissions of non-idempotent calls.
//!
//! A client that got no reply resends the same call with the same xid (after a timeout or a
//! reconnect). Running a CREATE, REMOVE or RENAME twice answers EXIST or NOENT for a change
//! that succeeded, so such calls go through this cache:
//! 1. [`ReplyCache::begin`] with the call's [`Key`]: a new key is recorded as in progress and
//!    the call runs; a key in progress means the original is still running, and the duplicate
//!    is dropped (the client resends later and then gets the cached reply); a finished key
//!    gives back the reply sent the first time, which is sent again as is.
//! 2. [`ReplyCache::finish`] stores the reply, or [`ReplyCache::abandon`] forgets the call
//!    (it failed in a way that must not be replayed, e.g. JUKEBOX, or never ran).
//!
//! Keyed by client IP (not port: a client that reconnects may come from another port), xid,
//! procedure and a hash of the arguments, so a reused xid with other arguments is a new call.
//! Bounded by entry count and age; the oldest entries go first. Time is passed in by the
//! caller, which keeps this module pure.
//!
//! This cache lives and dies with the process. Across a failover the same key, as a
//! [`ReplyKey`] ([`Key::reply_key`]), names the request to the backend, which keeps the
//! result of the change on both arrays ([`metrofs_core::Backend::replayed`]). So the
//! arguments' hash is [`args_hash`], a fixed function (FNV-1a): two arrays, two builds, the
//! same request, the same key.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrofs_core::ReplyKey;

/// Entries kept at most. A finished entry holds one small reply (~150 bytes).
pub const ENTRIES_MAX: usize = 16_384;
/// How long a reply stays retransmittable. Clients resend within their timeout (60 s for a
/// Linux TCP mount), so this covers one or two retries.
pub const AGE_MAX: Duration = Duration::from_secs(120);
/// Bytes of the arguments hashed into the key. The handle, offsets and names come first in
/// every call; hashing a whole 1 MiB WRITE would cost more than the write's own checks.
pub const HASHED_ARGS_BYTES_MAX: usize = 512;

/// A stable hash of a call's encoded arguments: FNV-1a (64 bits) over their length (8 bytes,
/// big-endian) and their first [`HASHED_ARGS_BYTES_MAX`] bytes. Fixed forever: both arrays
/// of a pair, whatever their build, must compute the same value for the same request.
#[must_use]
pub fn args_hash(args: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let len = args.len() as u64;
    len.to_be_bytes()
        .iter()
        .chain(&args[..args.len().min(HASHED_ARGS_BYTES_MAX)])
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// IPv4 clients seen as IPv4-mapped IPv6 addresses are kept as IPv4.
    pub client: IpAddr,
    pub xid: u32,
    pub proc: u32,
    pub args_hash: u64,
}

impl Key {
    #[must_use]
    pub fn new(client: IpAddr, xid: u32, proc: u32, args: &[u8]) -> Self {
        // One normalisation of the address, the ReplyKey's.
        let r = ReplyKey::new(client, xid, proc, args_hash(args));
        Self {
            client: r.client,
            xid,
            proc,
            args_hash: r.args_hash,
        }
    }

    /// The same key, as the backend knows it (module doc).
    #[must_use]
    pub fn reply_key(&self) -> ReplyKey {
        ReplyKey::new(self.client, self.xid, self.proc, self.args_hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time seen: run it, then `finish` or `abandon`.
    New,
    /// The original is still running: drop this duplicate.
    InProgress,
    /// Already answered: send this reply again.
    Done(Bytes),
}

#[derive(Debug)]
struct Entry {
    reply: Option<Bytes>,
    born: Instant,
    /// Matches this entry to its place in `order` (a key may be re-inserted after eviction).
    seq: u64,
}

#[derive(Debug)]
pub struct ReplyCache {
    map: HashMap<Key, Entry>,
    /// Keys in insertion order, with the seq they were inserted under.
    order: VecDeque<(Key, u64)>,
    entries_max: usize,
    age_max: Duration,
    next_seq: u64,
}

impl Default for ReplyCache {
    fn default() -> Self {
        Self::new(ENTRIES_MAX, AGE_MAX)
    }
}

impl ReplyCache {
    #[must_use]
    pub fn new(entries_max: usize, age_max: Duration) -> Self {
        assert!(
            entries_max > 0,
            "a cache of no entries cannot hold the call in progress"
        );
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            entries_max,
            age_max,
            next_seq: 0,
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn begin(&mut self, key: Key, now: Instant) -> Begin {
        self.evict(now);
        if let Some(e) = self.map.get(&key) {
            return match &e.reply {
                None => Begin::InProgress,
                Some(r) => Begin::Done(r.clone()),
            };
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key,
            Entry {
                reply: None,
                born: now,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Make room: the new entry counts.
        while self.map.len() > self.entries_max {
            if !self.pop_oldest() {
                break;
            }
        }
        debug_assert!(self.map.len() <= self.entries_max);
        Begin::New
    }

    /// Stores the reply of a call that `begin` answered `New` for. Ignored when the entry was
    /// evicted meanwhile.
    pub fn finish(&mut self, key: Key, reply: Bytes) {
        if let Some(e) = self.map.get_mut(&key) {
            debug_assert!(e.reply.is_none(), "a call finishes once");
            e.reply = Some(reply);
        }
    }

    /// Forgets a call in progress, so a retransmission runs it again.
    pub fn abandon(&mut self, key: Key) {
        if self.map.get(&key).is_some_and(|e| e.reply.is_none()) {
            self.map.remove(&key);
        }
    }

    fn evict(&mut self, now: Instant) {
        while let Some((key, seq)) = self.order.front().copied() {
            match self.map.get(&key) {
                Some(e) if e.seq == seq => {
                    if now.saturating_duration_since(e.born) <= self.age_max {
                        break;
                    }
                    self.map.remove(&key);
                }
                // Abandoned, or re-inserted later under a newer seq.
                _ => {}
            }
            self.order.pop_front();
        }
        // `order` may hold stale keys of abandoned calls; keep it from growing past the map.
        if self.order.len() > 2 * self.entries_max {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Removes the oldest live entry; false when there is none.
    fn pop_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> Key {
        Key::new(IpAddr::from([127, 0, 0, 1]), xid, 8, b"args")
    }

    #[test]
    fn new_then_in_progress_then_done() {
        let mut c = ReplyCache::default();
        let t = Instant::now();
        assert_eq!(c.begin(key(1), t), Begin::New);
        assert_eq!(c.begin(key(1), t), Begin::InProgress);
        c.finish(key(1), Bytes::from_static(b"reply"));
        assert_eq!(
            c.begin(key(1), t),
            Begin::Done(Bytes::from_static(b"reply"))
        );
        assert_eq!(
            c.begin(key(2), t),
            Begin::New,
            "another xid is another call"
        );
    }

    #[test]
    fn key_covers_client_proc_and_args() {
        let a = Key::new(IpAddr::from([127, 0, 0, 1]), 5, 8, b"create x");
        assert_ne!(a, Key::new(IpAddr::from([127, 0, 0, 2]), 5, 8, b"create x"));
        assert_ne!(a, Key::new(IpAddr::from([127, 0, 0, 1]), 5, 9, b"create x"));
        assert_ne!(a, Key::new(IpAddr::from([127, 0, 0, 1]), 5, 8, b"create y"));
        assert_eq!(a, Key::new(IpAddr::from([127, 0, 0, 1]), 5, 8, b"create x"));
        // Long arguments: the length still counts even past the hashed prefix.
        let long = vec![7u8; 4096];
        assert_ne!(
            Key::new(IpAddr::from([127, 0, 0, 1]), 5, 7, &long),
            Key::new(IpAddr::from([127, 0, 0, 1]), 5, 7, &long[..4095])
        );
    }

    /// The hash is a fixed function: these values must never change (both arrays of a pair,
    /// possibly of different builds, compute it for the same request).
    #[test]
    fn args_hash_is_stable() {
        assert_eq!(args_hash(b""), 0xa8c7_f832_281a_39c5);
        assert_eq!(args_hash(b"create x"), 0x60eb_0ab0_c01c_c815);
        // Only the first 512 bytes are hashed, but the length counts.
        let long = vec![7u8; 4096];
        assert_eq!(args_hash(&long), 0x42d9_7306_28ae_8135);
        assert_ne!(args_hash(&long), args_hash(&long[..4095]));
        assert_eq!(
            args_hash(&long[..4095]),
            args_hash(&[&long[..4000], &[9u8; 95][..]].concat())
        );
    }

    #[test]
    fn key_and_reply_key_agree() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let k = Key::new(mapped, 5, 8, b"create x");
        assert_eq!(k, Key::new(IpAddr::from([127, 0, 0, 1]), 5, 8, b"create x"));
        let r = k.reply_key();
        assert_eq!(
            (r.client, r.xid, r.proc, r.args_hash),
            (k.client, 5, 8, args_hash(b"create x"))
        );
    }

    #[test]
    fn abandoned_calls_run_again() {
        let mut c = ReplyCache::default();
        let t = Instant::now();
        assert_eq!(c.begin(key(1), t), Begin::New);
        c.abandon(key(1));
        assert_eq!(c.begin(key(1), t), Begin::New);
        c.finish(key(1), Bytes::from_static(b"r"));
        c.abandon(key(1));
        assert_eq!(
            c.begin(key(1), t),
            Begin::Done(Bytes::from_static(b"r")),
            "abandon leaves finished calls"
        );
    }

    #[test]
    fn bounded_by_entries_oldest_first() {
        let mut c = ReplyCache::new(3, AGE_MAX);
        let t = Instant::now();
        for x in 0..5 {
            assert_eq!(c.begin(key(x), t), Begin::New);
            c.finish(key(x), Bytes::from(vec![x as u8]));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.begin(key(4), t), Begin::Done(Bytes::from(vec![4])));
        assert_eq!(c.begin(key(2), t), Begin::Done(Bytes::from(vec![2])));
        // 0 and 1 were evicted; asking for 0 records it anew and evicts 2 (the oldest).
        assert_eq!(c.begin(key(0), t), Begin::New);
        assert_eq!(c.len(), 3);
        assert_eq!(c.begin(key(2), t), Begin::New);
    }

    #[test]
    fn bounded_by_age() {
        let mut c = ReplyCache::new(100, Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(c.begin(key(1), t), Begin::New);
        c.finish(key(1), Bytes::from_static(b"old"));
        assert_eq!(c.begin(key(2), t + Duration::from_secs(5)), Begin::New);
        c.finish(key(2), Bytes::from_static(b"newer"));
        let later = t + Duration::from_secs(11);
        assert_eq!(c.begin(key(1), later), Begin::New, "expired");
        assert_eq!(
            c.begin(key(2), later),
            Begin::Done(Bytes::from_static(b"newer"))
        );
        assert_eq!(c.len(), 2);
        c.finish(key(1), Bytes::from_static(b"again"));
        assert_eq!(
            c.begin(key(1), later),
            Begin::Done(Bytes::from_static(b"again"))
        );
    }

    #[test]
    fn order_queue_stays_bounded_under_abandons() {
        let mut c = ReplyCache::new(4, AGE_MAX);
        let t = Instant::now();
        for x in 0..10_000 {
            assert_eq!(c.begin(key(x), t), Begin::New);
            c.abandon(key(x));
        }
        assert!(c.is_empty());
        assert!(c.order.len() <= 2 * 4 + 1, "order holds {}", c.order.len());
    }

    #[test]
    fn finish_after_eviction_is_ignored() {
        let mut c = ReplyCache::new(1, AGE_MAX);
        let t = Instant::now();
        assert_eq!(c.begin(key(1), t), Begin::New);
        assert_eq!(c.begin(key(2), t), Begin::New);
        c.finish(key(1), Bytes::from_static(b"late"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.begin(key(2), t), Begin::InProgress);
    }
}
