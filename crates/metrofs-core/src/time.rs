//! Wall-clock time as ops carry it, and the clock seam.
//!
//! Only [`SystemClock`] reads the system clock; everything else receives a `&dyn Clock`, so a
//! simulator can drive time. Timestamps in ops are decided once by the serving side and applied
//! as given on both arrays.

use serde::{Deserialize, Serialize};

/// Seconds and nanoseconds since the Unix epoch (NFSv3 `nfstime3` range: u32 seconds).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Time {
    pub sec: u32,
    pub nsec: u32,
}

impl Time {
    #[must_use]
    pub const fn new(sec: u32, nsec: u32) -> Self {
        Self { sec, nsec }
    }

    #[must_use]
    pub fn as_nanos(&self) -> u64 {
        u64::from(self.sec) * 1_000_000_000 + u64::from(self.nsec)
    }

    #[must_use]
    pub fn from_nanos(n: u64) -> Self {
        // Saturates after 2106, the end of nfstime3.
        let sec = u32::try_from(n / 1_000_000_000).unwrap_or(u32::MAX);
        Self { sec, nsec: (n % 1_000_000_000) as u32 }
    }
}

/// The time seam.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock now, for timestamps in ops.
    fn now(&self) -> Time;
}

/// The real clock. The one place allowed to call `SystemTime::now`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time { sec: u32::try_from(d.as_secs()).unwrap_or(u32::MAX), nsec: d.subsec_nanos() }
    }
}
