//! Latency recording without allocation, and its summary.
//!
//! Each stage thread owns its recorders (no sharing, no locks); the runtime merges nothing until
//! the run ends. Latencies go into an HDR histogram (1 µs .. 10 min, 3 significant digits:
//! percentiles within 0.1 %) that is sized once, so recording never allocates.

use hdrhistogram::Histogram;
use serde::Serialize;

const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 600_000_000_000;

/// Latency summary in milliseconds, as it appears in the JSON report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Mean absolute difference between consecutive samples (the RFC 3550 notion of jitter,
    /// unsmoothed): how much one frame's latency differs from the previous one's.
    pub jitter_ms: f64,
}

/// Records durations in ns.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    previous_ns: Option<u64>,
    jitter_sum_ns: f64,
    jitter_count: u64,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        // Cannot fail: the bounds are constants that satisfy the crate's requirements.
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3).expect("valid histogram bounds");
        LatencyRecorder { histogram, previous_ns: None, jitter_sum_ns: 0.0, jitter_count: 0 }
    }

    pub fn record_ns(&mut self, ns: u64) {
        // Values under the lowest bound land in its bucket; over the highest, in the top bucket.
        self.histogram.saturating_record(ns.max(1));
        if let Some(prev) = self.previous_ns {
            self.jitter_sum_ns += prev.abs_diff(ns) as f64;
            self.jitter_count += 1;
        }
        self.previous_ns = Some(ns);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            jitter_ms: if self.jitter_count == 0 { 0.0 } else { self.jitter_sum_ns / self.jitter_count as f64 / 1e6 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let mut r = LatencyRecorder::new();
        for ms in 1..=1000u64 {
            r.record_ns(ms * 1_000_000);
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p999_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.jitter_ms, 1.0), "{s:?}");
    }

    #[test]
    fn jitter_of_alternating_latencies() {
        let mut r = LatencyRecorder::new();
        for i in 0..101 {
            r.record_ns(if i % 2 == 0 { 2_000_000 } else { 5_000_000 });
        }
        assert!((r.summary().jitter_ms - 3.0).abs() < 1e-9);
    }

    #[test]
    fn empty_recorder_summarises_to_zeroes() {
        assert_eq!(LatencyRecorder::new().summary(), LatencySummary::default());
    }
}
