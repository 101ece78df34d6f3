//! Link timing and limits. Values, not clocks: the link measures time with tokio's timers, so
//! a simulator that drives tokio time (paused time, turmoil) drives the link too.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LinkError;

/// Upper bound for `max_in_flight` and `max_incoming_in_flight` (each in-flight call holds a
/// map entry and possibly an 8 MiB body).
pub const IN_FLIGHT_MAX: usize = 4096;

/// Link configuration, as read from the array's config file (`[link]`).
/// Check it with [`LinkConfig::validate`]; `connect`, `accept` and `establish` do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// How often each end sends a heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The link is declared down after this long without any frame from the peer, in
    /// milliseconds. Detection happens between this and this plus one interval.
    pub heartbeat_timeout_ms: u64,
    /// The whole handshake (Hello and Proof both ways) must finish within this, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Establishing the TCP connection must finish within this, in milliseconds.
    pub connect_timeout_ms: u64,
    /// A call fails with `CallTimeout` when no reply came within this, in milliseconds
    /// (time spent waiting for an in-flight slot included).
    pub call_timeout_ms: u64,
    /// Calls this end may have outstanding at once; more wait for a slot.
    pub max_in_flight: usize,
    /// Requests from the peer handled at once; more are answered with a `Fail` ("busy").
    /// Keep it at least the peer's `max_in_flight`.
    pub max_incoming_in_flight: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            heartbeat_interval_ms: 250,
            heartbeat_timeout_ms: 1500,
            handshake_timeout_ms: 5000,
            connect_timeout_ms: 3000,
            call_timeout_ms: 10_000,
            max_in_flight: 64,
            max_incoming_in_flight: 128,
        }
    }
}

impl LinkConfig {
    /// Checks that the values can work together; the error names the field to change.
    pub fn validate(&self) -> Result<(), LinkError> {
        let err = |s: String| Err(LinkError::Config(s));
        if self.heartbeat_interval_ms == 0 {
            return err("heartbeat_interval_ms must be at least 1".into());
        }
        if self.heartbeat_timeout_ms < 2 * self.heartbeat_interval_ms {
            return err(format!(
                "heartbeat_timeout_ms ({}) must be at least twice heartbeat_interval_ms ({}), so that one late heartbeat does not take the link down",
                self.heartbeat_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        for (name, v) in [
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("call_timeout_ms", self.call_timeout_ms),
        ] {
            if v == 0 {
                return err(format!("{name} must be at least 1"));
            }
        }
        for (name, v) in [
            ("max_in_flight", self.max_in_flight),
            ("max_incoming_in_flight", self.max_incoming_in_flight),
        ] {
            if v == 0 || v > IN_FLIGHT_MAX {
                return err(format!(
                    "{name} is {v}: it must be between 1 and {IN_FLIGHT_MAX}"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LinkConfig::default().validate().expect("defaults work");
    }

    #[test]
    fn errors_name_the_field() {
        let c = LinkConfig {
            heartbeat_timeout_ms: 300,
            ..LinkConfig::default()
        };
        let e = c.validate().expect_err("timeout < 2 intervals").to_string();
        assert!(e.contains("heartbeat_timeout_ms (300)"), "{e}");
        let c = LinkConfig {
            max_in_flight: 0,
            ..LinkConfig::default()
        };
        let e = c.validate().expect_err("zero in flight").to_string();
        assert!(e.contains("max_in_flight is 0"), "{e}");
    }
}
