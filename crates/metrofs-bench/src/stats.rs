//! The arithmetic of the results: percentiles, rates, and byte sizes on the command line.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method: the smallest
/// sample such that at least `p` % of the samples are ≤ it. `None` for no samples.
///
/// Nearest rank never interpolates, so every reported latency is one a request really had.
#[must_use]
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    assert!(p > 0.0 && p <= 100.0, "percentile {p} outside (0, 100]");
    debug_assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "samples must be sorted"
    );
    if sorted.is_empty() {
        return None;
    }
    // rank = ceil(p/100 * n), 1-based; computed in integers (per-mille) to avoid float rounding
    // turning 50 % of 100 samples into rank 51.
    let n = sorted.len() as u128;
    let p_milli = (p * 1000.0).round() as u128; // p in thousandths of a percent
    let rank = (p_milli * n).div_ceil(100_000).max(1);
    let index = usize::try_from(rank - 1)
        .unwrap_or(usize::MAX)
        .min(sorted.len() - 1);
    Some(sorted[index])
}

/// Latency of requests sent one at a time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub ops: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
    /// Requests per second over the whole run (one in flight, so ≈ 1 / mean).
    pub iops: f64,
}

impl LatencySummary {
    /// Summarises the samples (in any order) of a run that took `elapsed` in total.
    /// `None` when there are no samples.
    #[must_use]
    pub fn from_samples(mut samples: Vec<Duration>, elapsed: Duration) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let total: Duration = samples.iter().sum();
        let ops = samples.len() as u64;
        Some(Self {
            ops,
            p50_us: us(percentile(&samples, 50.0)?),
            p99_us: us(percentile(&samples, 99.0)?),
            mean_us: us(total) / ops as f64,
            max_us: us(*samples.last()?),
            iops: rate(ops, elapsed),
        })
    }
}

/// `count` per second over `elapsed` (0 when no time passed).
#[must_use]
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        0.0
    }
}

/// MiB per second.
#[must_use]
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    rate(bytes, elapsed) / f64::from(1u32 << 20)
}

/// Parses a byte size: `4096`, `4KiB`, `512MiB`, `1GiB`, `1G` (K/M/G/T are binary too).
///
/// # Errors
/// Says what form is expected.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let expected = || format!("{s:?} is not a size (e.g. 4096, 64KiB, 512MiB, 1GiB)");
    let n: u64 = num.parse().map_err(|_| expected())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(expected()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A byte count for people: `1 GiB`, `512 MiB`, `4 KiB`, `1000 B`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    if n >= 1 << 20 {
        return format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20));
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        let mut d: Vec<Duration> = v.iter().map(|&x| Duration::from_micros(x)).collect();
        d.sort_unstable();
        d
    }

    #[test]
    fn nearest_rank_on_1_to_100() {
        let s = us(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&s, 1.0), Some(Duration::from_micros(1)));
        assert_eq!(percentile(&s, 0.5), Some(Duration::from_micros(1)));
        assert_eq!(percentile(&s, 99.9), Some(Duration::from_micros(100)));
    }

    #[test]
    fn small_sample_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        let one = us(&[7]);
        assert_eq!(percentile(&one, 50.0), Some(Duration::from_micros(7)));
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_micros(7)));
        // Two samples: p50 is the lower (rank ceil(1.0) = 1), p99 the upper.
        let two = us(&[10, 20]);
        assert_eq!(percentile(&two, 50.0), Some(Duration::from_micros(10)));
        assert_eq!(percentile(&two, 99.0), Some(Duration::from_micros(20)));
        // Three: p50 is rank ceil(1.5) = 2, the middle one.
        let three = us(&[1, 5, 9]);
        assert_eq!(percentile(&three, 50.0), Some(Duration::from_micros(5)));
    }

    #[test]
    fn p99_sees_the_slow_tail() {
        // 1000 samples, ten of them slow: p99 is rank 990, still fast; p99.5 is slow.
        let mut v = vec![100u64; 990];
        v.extend([5000u64; 10]);
        let s = us(&v);
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&s, 99.5), Some(Duration::from_micros(5000)));
        // Eleven slow ones: rank 990 lands on a slow one.
        let mut v = vec![100u64; 989];
        v.extend([5000u64; 11]);
        assert_eq!(percentile(&us(&v), 99.0), Some(Duration::from_micros(5000)));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn zero_percentile_is_refused() {
        let _ = percentile(&us(&[1]), 0.0);
    }

    #[test]
    fn summary_sorts_and_averages() {
        let samples: Vec<Duration> = [30u64, 10, 20, 40]
            .iter()
            .map(|&x| Duration::from_micros(x))
            .collect();
        let s = LatencySummary::from_samples(samples, Duration::from_micros(200)).expect("samples");
        assert_eq!(s.ops, 4);
        assert!((s.p50_us - 20.0).abs() < 1e-9);
        assert!((s.p99_us - 40.0).abs() < 1e-9);
        assert!((s.mean_us - 25.0).abs() < 1e-9);
        assert!((s.max_us - 40.0).abs() < 1e-9);
        assert!((s.iops - 20_000.0).abs() < 1e-6);
        assert_eq!(
            LatencySummary::from_samples(vec![], Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn rates() {
        assert!((mib_per_s(1 << 30, Duration::from_secs(2)) - 512.0).abs() < 1e-9);
        assert!((rate(3000, Duration::from_millis(1500)) - 2000.0).abs() < 1e-9);
        assert!(rate(5, Duration::ZERO).abs() < f64::EPSILON);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 G"), Ok(2 << 30));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999T")
            .expect_err("overflow")
            .contains("too large"));
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes((1 << 20) + (1 << 19) + 1), "1.5 MiB");
    }
}
