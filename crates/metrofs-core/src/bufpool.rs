//! Receive buffers for large messages (1 MiB writes), used again and again.
//!
//! A 1 MiB write arrives as one NFS record, and again as one link frame at the twin. Received
//! into a fresh allocation each time, every one would fault in pages the kernel first zeroes: a
//! profile of a twin during a paired sequential write had `clear_page_erms` at 15 % of its CPU,
//! as much as the receive copy itself. A [`BufPool`] keeps the buffers of messages that were
//! dropped and lends them again, so their pages stay mapped.
//!
//! - A buffer is lent as [`Bytes`]; it goes back when the last view of it is dropped, from
//!   whatever thread drops it. If the pool is gone by then, the buffer is freed.
//! - At most the pool's idle limit waits in it; the least recently returned go first, so buffers
//!   of a size no longer asked for do not stay.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;

/// Buffer sizes are multiples of this, so messages of nearly the same size share buffers.
pub const GRANULE_BYTES: usize = 64 * 1024;

/// Idle receive buffers. Cheap to clone (the clones share the buffers).
#[derive(Clone)]
pub struct BufPool {
    idle: Arc<Mutex<Idle>>,
}

struct Idle {
    /// Oldest returned first.
    bufs: VecDeque<Vec<u8>>,
    bytes: usize,
    max: usize,
}

fn lock(m: &Mutex<Idle>) -> MutexGuard<'_, Idle> {
    // The pool's state is consistent after every statement: a panic elsewhere cannot break it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BufPool {
    /// A pool that keeps at most `idle_max_bytes` of buffers between uses.
    #[must_use]
    pub fn new(idle_max_bytes: usize) -> BufPool {
        BufPool {
            idle: Arc::new(Mutex::new(Idle {
                bufs: VecDeque::new(),
                bytes: 0,
                max: idle_max_bytes,
            })),
        }
    }

    /// A buffer of at least `len` bytes: an idle one if one fits without wasting more than
    /// half of it, else a new one (zeroed, as safe code must have it; its pages are mapped when
    /// first written, then kept as long as the buffer comes back).
    #[must_use]
    pub fn take(&self, len: usize) -> Vec<u8> {
        let want = len.next_multiple_of(GRANULE_BYTES);
        {
            let mut idle = lock(&self.idle);
            let fits = idle
                .bufs
                .iter()
                .rposition(|b| b.len() >= want && b.len() / 2 <= want);
            if let Some(buf) = fits.and_then(|i| idle.bufs.remove(i)) {
                idle.bytes -= buf.len();
                return buf;
            }
        }
        vec![0; want]
    }

    /// `buf[range]` as `Bytes`; `buf` comes back to this pool when the last view of it is
    /// dropped.
    ///
    /// # Panics
    /// If `range` is not within `buf`.
    #[must_use]
    pub fn lend(&self, buf: Vec<u8>, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= buf.len());
        Bytes::from_owner(Lent {
            buf,
            range,
            home: Arc::downgrade(&self.idle),
        })
    }

    /// Bytes of buffers waiting idle.
    #[must_use]
    pub fn idle_bytes(&self) -> usize {
        lock(&self.idle).bytes
    }

    fn give_back(idle: &Mutex<Idle>, buf: Vec<u8>) {
        let mut idle = lock(idle);
        if buf.len() > idle.max {
            return;
        }
        while idle.bytes + buf.len() > idle.max {
            let Some(old) = idle.bufs.pop_front() else {
                break;
            };
            idle.bytes -= old.len();
        }
        idle.bytes += buf.len();
        idle.bufs.push_back(buf);
    }
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = lock(&self.idle);
        f.debug_struct("BufPool")
            .field("idle_bufs", &idle.bufs.len())
            .field("idle_bytes", &idle.bytes)
            .field("idle_max_bytes", &idle.max)
            .finish()
    }
}

/// A buffer on loan as `Bytes` (see [`BufPool::lend`]).
struct Lent {
    buf: Vec<u8>,
    range: Range<usize>,
    home: Weak<Mutex<Idle>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(idle) = self.home.upgrade() {
            BufPool::give_back(&idle, std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;
    const IDLE_MAX_BYTES: usize = 17 * MIB;

    #[test]
    fn a_buffer_comes_back_when_its_last_view_is_dropped_and_is_lent_again() {
        let pool = BufPool::new(IDLE_MAX_BYTES);
        let mut buf = pool.take(MIB + 100);
        assert_eq!(buf.len(), MIB + GRANULE_BYTES);
        buf[10] = 7;
        let at = buf.as_ptr();
        let whole = pool.lend(buf, 0..MIB);
        let body = whole.slice(10..20);
        drop(whole);
        assert_eq!(pool.idle_bytes(), 0, "a view is still alive");
        assert_eq!(body[0], 7);
        drop(body);
        assert_eq!(pool.idle_bytes(), MIB + GRANULE_BYTES);
        let again = pool.take(MIB);
        assert_eq!(again.as_ptr(), at, "the same allocation");
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn a_buffer_twice_too_large_is_not_lent_for_a_small_frame() {
        let pool = BufPool::new(IDLE_MAX_BYTES);
        drop(pool.lend(pool.take(4 * MIB), 0..1));
        assert_eq!(pool.take(MIB).len(), MIB);
        assert_eq!(
            pool.idle_bytes(),
            4 * MIB,
            "the large one waits for a large frame"
        );
        assert_eq!(pool.take(3 * MIB).len(), 4 * MIB);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit_and_drops_the_oldest_first() {
        let pool = BufPool::new(IDLE_MAX_BYTES);
        let small: Vec<Vec<u8>> = (0..IDLE_MAX_BYTES / GRANULE_BYTES)
            .map(|_| pool.take(GRANULE_BYTES))
            .collect();
        for b in small {
            drop(pool.lend(b, 0..1));
        }
        assert_eq!(pool.idle_bytes(), IDLE_MAX_BYTES);
        let big = pool.take(2 * MIB);
        let at = big.as_ptr();
        drop(pool.lend(big, 0..1));
        assert_eq!(pool.idle_bytes(), IDLE_MAX_BYTES);
        let again = pool.take(2 * MIB);
        assert_eq!(again.as_ptr(), at, "the newest stayed");
        // Larger than the pool: freed at once.
        drop(pool.lend(pool.take(IDLE_MAX_BYTES + 1), 0..1));
        assert!(pool.idle_bytes() <= IDLE_MAX_BYTES);
    }

    #[test]
    fn a_view_that_outlives_its_pool_frees_its_buffer() {
        let pool = BufPool::new(IDLE_MAX_BYTES);
        let b = pool.lend(pool.take(MIB), 5..9);
        drop(pool);
        assert_eq!(b.len(), 4);
        drop(b);
    }
}
