//! Why and when the process stops: one shared [`Stop`] that every task watches.
//!
//! A signal asks for a graceful stop (stop accepting, flush, exit 0). A local I/O error is
//! fatal (STYLE.md 9): the array stops without flushing again (never retry after a failed
//! fsync) and exits non-zero. A fatal reason replaces a graceful one, never the reverse.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal(&'static str),
    /// A local I/O error; what failed.
    Fatal(String),
}

#[derive(Clone, Debug)]
pub struct Stop {
    tx: Arc<watch::Sender<Option<StopReason>>>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    #[must_use]
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Asks for a graceful stop.
    pub fn signal(&self, name: &'static str) {
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(StopReason::Signal(name));
                true
            } else {
                false
            }
        });
    }

    /// Stops because of a local I/O error. Logged here, once per call.
    pub fn fatal(&self, what: impl Into<String>) {
        let what = what.into();
        tracing::error!(error = %what, "fatal local I/O error: the array stops");
        self.tx.send_if_modified(|r| {
            if matches!(r, Some(StopReason::Fatal(_))) {
                false
            } else {
                *r = Some(StopReason::Fatal(what));
                true
            }
        });
    }

    /// The reason, once a stop was asked for.
    #[must_use]
    pub fn reason(&self) -> Option<StopReason> {
        self.tx.borrow().clone()
    }

    /// Resolves when a stop is asked for.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so it cannot be gone; treat it as a stop anyway.
                return StopReason::Fatal("stop channel closed".into());
            }
        }
    }

    /// A future for `with_graceful_shutdown`-style APIs.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let me = self.clone();
        async move {
            me.stopped().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fatal_wins_over_signal() {
        let s = Stop::new();
        assert_eq!(s.reason(), None);
        let waiter = tokio::spawn(s.wait());
        s.signal("SIGTERM");
        waiter.await.expect("waiter");
        assert_eq!(s.reason(), Some(StopReason::Signal("SIGTERM")));
        s.fatal("disk gone");
        s.signal("SIGINT");
        assert_eq!(s.reason(), Some(StopReason::Fatal("disk gone".into())));
        assert_eq!(s.stopped().await, StopReason::Fatal("disk gone".into()));
    }
}
