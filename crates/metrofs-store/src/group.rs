//! Group commit of an append-only file: many callers, one fdatasync at a time, and a caller
//! whose records a sync running or just finished covered does not sync again. The op journal
//! ([`crate::journal`]) and the metro LOG use it.

use std::sync::Mutex;

use crate::store::lock;

/// How far a file's appends are known durable, and the one sync running.
///
/// Appends are counted by the file's owner (an LSN, a counter); `target` and the value a sync
/// returns are on that count.
#[derive(Debug)]
pub struct GroupSync {
    /// The count known durable.
    done: Mutex<u64>,
    /// Held by the one sync running: the others wait, then usually find it covered them.
    running: Mutex<()>,
}

impl GroupSync {
    /// `done`: the count durable at the start.
    #[must_use]
    pub fn new(done: u64) -> Self {
        Self {
            done: Mutex::new(done),
            running: Mutex::new(()),
        }
    }

    /// The count known durable. Does not block on a sync.
    #[must_use]
    pub fn done(&self) -> u64 {
        *lock(&self.done)
    }

    /// Whether the appends up to `target` are known durable. Does not block on a sync.
    #[must_use]
    pub fn covers(&self, target: u64) -> bool {
        self.done() >= target
    }

    /// Records the appends up to `upto` durable by other means (a durable commit, a rewrite).
    pub fn mark(&self, upto: u64) {
        let mut d = lock(&self.done);
        *d = (*d).max(upto);
    }

    /// Makes the appends up to `target` durable: at once when they are; otherwise after the
    /// sync running now, and unless that one covered them, by `sync`, which syncs and returns
    /// the count it made durable (everything appended when it started).
    pub fn sync_upto<E>(
        &self,
        target: u64,
        sync: impl FnOnce() -> Result<u64, E>,
    ) -> Result<(), E> {
        if self.covers(target) {
            return Ok(());
        }
        let _one = lock(&self.running);
        // The sync that held `running` may have covered this caller.
        if self.covers(target) {
            return Ok(());
        }
        let upto = sync()?;
        self.mark(upto);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_covered_target_runs_no_sync_and_a_failed_sync_marks_nothing() {
        let g = GroupSync::new(3);
        g.sync_upto(3, || -> Result<u64, ()> { panic!("covered: no sync") })
            .expect("covered");
        assert_eq!(g.sync_upto(5, || Err("disk")), Err("disk"));
        assert!(!g.covers(4));
        g.sync_upto(5, || Ok::<_, ()>(7)).expect("sync");
        assert!(g.covers(7) && !g.covers(8));
        g.mark(9);
        assert!(g.covers(9));
    }
}
