//! Range locks: order overlapping changes to one file (DESIGN.md, "Order").
//!
//! A write holds `[offset, offset + len)` of its inode from LOG to completion, so two
//! overlapping writes reach both stores in the same order; writes to disjoint ranges proceed in
//! parallel. Attribute changes, removals and resync copies of a whole inode hold `[0, u64::MAX)`.
//! Waiters are woken when any range of the same inode is released and re-check.
//!
//! A directory that a namespace op changes is held *shared* ([`RangeLocks::lock_shared`]) from
//! the op's local apply until both sides answered: such ops of one directory are pipelined
//! (their order is the namespace order, see `Metro::dual_change`), while whoever needs the
//! directory at rest on both sides (resync copying it, verify comparing it, a SETATTR of it)
//! holds it exclusively. An exclusive waiter holds off new shared holders, so a stream of
//! creates in one directory cannot starve it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrofs_core::{FsId, Ino};
use tokio::sync::Notify;

/// The whole file.
pub const WHOLE: (u64, u64) = (0, u64::MAX);

#[derive(Default)]
struct Held {
    /// (start, end, id, shared)
    ranges: Vec<(u64, u64, u64, bool)>,
    /// Exclusive lockers waiting now: new shared holders wait behind them.
    exclusive_waiting: u32,
    notify: Arc<Notify>,
}

/// What is held, by inode, and the id of the next lock taken.
type HeldByInode = (u64, HashMap<(FsId, Ino), Held>);

/// Range locks of one array.
#[derive(Default)]
pub struct RangeLocks {
    inner: Mutex<HeldByInode>,
}

impl std::fmt::Debug for RangeLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeLocks").finish_non_exhaustive()
    }
}

/// A held range; released on drop.
#[must_use = "the range is released when this is dropped"]
pub struct RangeGuard {
    locks: Arc<RangeLocks>,
    key: (FsId, Ino),
    id: u64,
}

impl std::fmt::Debug for RangeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RangeGuard({:?}, {})", self.key, self.id)
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl RangeLocks {
    /// Waits until `[start, end)` of `ino` overlaps no held range, then holds it.
    pub async fn lock(self: &Arc<Self>, fs: FsId, ino: Ino, range: (u64, u64)) -> RangeGuard {
        self.acquire(fs, ino, range, false).await
    }

    /// Holds the whole of `ino` shared: with other shared holders, not with any other range.
    pub async fn lock_shared(self: &Arc<Self>, fs: FsId, ino: Ino) -> RangeGuard {
        self.acquire(fs, ino, WHOLE, true).await
    }

    async fn acquire(self: &Arc<Self>, fs: FsId, ino: Ino, range: (u64, u64), shared: bool) -> RangeGuard {
        let range = (range.0, range.1.max(range.0 + 1));
        // Counted among the exclusive waiters while it waits (also if the wait is dropped).
        let mut waiting: Option<WaitMark> = None;
        loop {
            let notified = {
                let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (next_id, map) = &mut *g;
                let held = map.entry((fs, ino)).or_default();
                let others_waiting = held.exclusive_waiting - u32::from(waiting.is_some());
                let free = held.ranges.iter().all(|r| !overlaps((r.0, r.1), range) || (shared && r.3));
                if free && !(shared && others_waiting > 0) {
                    *next_id += 1;
                    let id = *next_id;
                    held.ranges.push((range.0, range.1, id, shared));
                    if let Some(mut w) = waiting.take() {
                        w.done = true;
                        held.exclusive_waiting -= 1;
                    }
                    return RangeGuard { locks: self.clone(), key: (fs, ino), id };
                }
                if !shared && waiting.is_none() {
                    held.exclusive_waiting += 1;
                    waiting = Some(WaitMark { locks: self.clone(), key: (fs, ino), done: false });
                }
                // Created before the mutex is released: a `notify_waiters` from a release
                // that happens in between still wakes it.
                held.notify.clone().notified_owned()
            };
            notified.await;
        }
    }

    /// Ranges held now (for metrics and tests).
    #[must_use]
    pub fn held(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.1.values().map(|h| h.ranges.len()).sum()
    }
}

/// An exclusive waiter, counted in `exclusive_waiting` until it holds its range or gives up.
struct WaitMark {
    locks: Arc<RangeLocks>,
    key: (FsId, Ino),
    done: bool,
}

impl Drop for WaitMark {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut g = self.locks.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = &mut g.1;
        if let Some(held) = map.get_mut(&self.key) {
            held.exclusive_waiting -= 1;
            // Shared lockers held off by this waiter may go now.
            held.notify.notify_waiters();
            if held.ranges.is_empty() && held.exclusive_waiting == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut g = self.locks.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = &mut g.1;
        if let Some(held) = map.get_mut(&self.key) {
            held.ranges.retain(|r| r.2 != self.id);
            held.notify.notify_waiters();
            if held.ranges.is_empty() && held.exclusive_waiting == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlapping_ranges_wait_disjoint_ones_do_not() {
        let locks = Arc::new(RangeLocks::default());
        let a = locks.lock(FsId(1), Ino(2), (0, 100)).await;
        let _b = locks.lock(FsId(1), Ino(2), (100, 200)).await;
        let _other_file = locks.lock(FsId(1), Ino(3), WHOLE).await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.lock(FsId(1), Ino(2), (50, 60)).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "an overlapping range must wait");
        drop(a);
        let c = tokio::time::timeout(std::time::Duration::from_secs(2), waiter).await.expect("woken").expect("join");
        assert_eq!(locks.held(), 3);
        drop(c);
        assert_eq!(locks.held(), 2);
    }

    #[tokio::test]
    async fn shared_holders_pipeline_an_exclusive_waiter_holds_new_ones_off() {
        let (fs, dir) = (FsId(1), Ino(9));
        let locks = Arc::new(RangeLocks::default());
        let s1 = locks.lock_shared(fs, dir).await;
        let s2 = locks.lock_shared(fs, dir).await;
        let l = locks.clone();
        let exclusive = tokio::spawn(async move { l.lock(fs, dir, WHOLE).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!exclusive.is_finished(), "exclusive waits for the shared holders");
        let l = locks.clone();
        let late_shared = tokio::spawn(async move { l.lock_shared(fs, dir).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!late_shared.is_finished(), "a new shared holder waits behind the exclusive waiter");
        drop((s1, s2));
        let e = tokio::time::timeout(std::time::Duration::from_secs(2), exclusive).await.expect("woken").expect("join");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!late_shared.is_finished(), "shared waits while the exclusive holds");
        drop(e);
        let s3 = tokio::time::timeout(std::time::Duration::from_secs(2), late_shared).await.expect("woken").expect("join");
        // A shared lock never overlaps a write's range.
        let l = locks.clone();
        let write = tokio::spawn(async move { l.lock(fs, dir, (0, 10)).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!write.is_finished());
        drop(s3);
        drop(tokio::time::timeout(std::time::Duration::from_secs(2), write).await.expect("woken").expect("join"));
        assert_eq!(locks.held(), 0);
    }

    #[tokio::test]
    async fn a_dropped_exclusive_wait_lets_shared_holders_in() {
        let (fs, dir) = (FsId(1), Ino(9));
        let locks = Arc::new(RangeLocks::default());
        let s1 = locks.lock_shared(fs, dir).await;
        let l = locks.clone();
        let exclusive = tokio::spawn(async move { l.lock(fs, dir, WHOLE).await });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        exclusive.abort();
        let _ = exclusive.await;
        let s2 = tokio::time::timeout(std::time::Duration::from_secs(2), locks.lock_shared(fs, dir)).await.expect("not held off by a waiter that left");
        drop((s1, s2));
        assert_eq!(locks.held(), 0);
    }
}
