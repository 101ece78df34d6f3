//! Range locks: order overlapping changes to one file (DESIGN.md, "Order").
//!
//! A write holds `[offset, offset + len)` of its inode from LOG to completion, so two
//! overlapping writes reach both stores in the same order; writes to disjoint ranges proceed in
//! parallel. Attribute changes, removals and resync copies of a whole inode hold `[0, u64::MAX)`.
//! Waiters are woken when any range of the same inode is released and re-check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrofs_core::{FsId, Ino};
use tokio::sync::Notify;

/// The whole file.
pub const WHOLE: (u64, u64) = (0, u64::MAX);

#[derive(Default)]
struct Held {
    ranges: Vec<(u64, u64, u64)>,
    notify: Arc<Notify>,
}

/// Range locks of one array.
#[derive(Default)]
pub struct RangeLocks {
    inner: Mutex<(u64, HashMap<(FsId, Ino), Held>)>,
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
        let range = (range.0, range.1.max(range.0 + 1));
        loop {
            let notified = {
                let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (next_id, map) = &mut *g;
                let held = map.entry((fs, ino)).or_default();
                if held.ranges.iter().all(|r| !overlaps((r.0, r.1), range)) {
                    *next_id += 1;
                    let id = *next_id;
                    held.ranges.push((range.0, range.1, id));
                    return RangeGuard { locks: self.clone(), key: (fs, ino), id };
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

impl Drop for RangeGuard {
    fn drop(&mut self) {
        let mut g = self.locks.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = &mut g.1;
        if let Some(held) = map.get_mut(&self.key) {
            held.ranges.retain(|r| r.2 != self.id);
            held.notify.notify_waiters();
            if held.ranges.is_empty() {
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
}
