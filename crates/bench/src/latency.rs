//! Latency recording: an HDR histogram in microseconds, summarised as milliseconds.
//!
//! HDR keeps 3 significant digits over the whole range at a fixed memory cost, so recording is
//! O(1) and allocation-free, which matters on the delivery-callback path that runs once per
//! record at over a million records a second.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::LatencySummary;

/// Highest latency the histogram resolves: one hour, in microseconds. Larger values are
/// clamped to it (a run is bounded far below that anyway).
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// Significant decimal digits kept per recorded value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency distribution being collected.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one observation; values beyond the trackable range are clamped.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.max(1));
    }

    /// Adds every observation of `other` (recorded by another thread) to this one.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both histograms have the same constant bounds, so adding cannot go out of range.
        if let Err(err) = self.histogram.add(&other.histogram) {
            tracing::warn!("merging latency histograms: {err}");
        }
    }

    /// Number of observations recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles, mean and max in milliseconds; all zero when nothing was recorded.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HDR with 3 significant digits is exact to within 0.1% of the value.
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 1e-9
    }

    #[test]
    fn empty_recorder_summarises_to_zero() {
        let r = LatencyRecorder::new();
        assert_eq!(r.count(), 0);
        assert_eq!(r.summary(), LatencySummary::default());
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut r = LatencyRecorder::new();
        // 1..=10_000 microseconds, i.e. 0.001 ms .. 10 ms.
        for us in 1..=10_000u64 {
            r.record(Duration::from_micros(us));
        }
        assert_eq!(r.count(), 10_000);
        let s = r.summary();
        assert!(close(s.p50, 5.0), "p50 {}", s.p50);
        assert!(close(s.p99, 9.9), "p99 {}", s.p99);
        assert!(close(s.p999, 9.99), "p999 {}", s.p999);
        assert!(close(s.max, 10.0), "max {}", s.max);
        assert!(close(s.mean, 5.0005), "mean {}", s.mean);
    }

    /// 10_000 observations of 1 ms, the last `outliers` of them replaced by 200 ms.
    fn with_outliers(outliers: usize) -> LatencySummary {
        let mut r = LatencyRecorder::new();
        for i in 0..10_000 {
            let ms = if i < 10_000 - outliers { 1 } else { 200 };
            r.record(Duration::from_millis(ms));
        }
        r.summary()
    }

    #[test]
    fn p999_sees_outliers_above_one_in_a_thousand_only() {
        // The 99.9th percentile of 10_000 is the 9_990th value.
        let s = with_outliers(5);
        assert!(close(s.p50, 1.0) && close(s.p99, 1.0));
        assert!(close(s.p999, 1.0), "5 in 10_000 stay above p99.9: {}", s.p999);
        assert!(close(s.max, 200.0));
        let s = with_outliers(20);
        assert!(close(s.p99, 1.0));
        assert!(close(s.p999, 200.0), "20 in 10_000 reach p99.9: {}", s.p999);
    }

    #[test]
    fn sub_microsecond_and_huge_values_are_clamped_not_dropped() {
        let mut r = LatencyRecorder::new();
        r.record(Duration::from_nanos(10));
        r.record(Duration::from_secs(100_000));
        assert_eq!(r.count(), 2);
        let s = r.summary();
        assert!(close(s.p50, 0.001));
        assert!(close(s.max, MAX_TRACKABLE_US as f64 / 1000.0));
    }
    #[test]
    fn merge_adds_the_other_recorders_observations() {
        let mut a = LatencyRecorder::new();
        let mut b = LatencyRecorder::new();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        b.record(Duration::from_millis(5));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert!(close(a.summary().max, 5.0));
    }
}
