//! Histogram summaries for stats responses.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A summary of a latency/duration histogram, in the histogram's unit
/// (the field name says which, e.g. `loop_us`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Number of recorded values.
    #[serde(default)]
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest recorded value.
    pub max: u64,
}

impl HistogramSummary {
    /// Summarise `h` (all zeros when it is empty). Values are the highest-equivalent
    /// values of hdrhistogram's buckets, so they are within its configured precision.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return HistogramSummary::default();
        }
        HistogramSummary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A latency distribution as fixed buckets (e.g. for Prometheus histograms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBuckets {
    /// Upper bounds of the buckets in nanoseconds (inclusive), ascending; a last bound
    /// of `u64::MAX` catches every larger value.
    pub bucket_ns: Vec<u64>,
    /// Samples per bucket (not cumulative): `counts[i]` is the number of values of at
    /// most `bucket_ns[i]` and more than `bucket_ns[i - 1]`.
    pub counts: Vec<u64>,
}

/// A distribution of small counts (e.g. datagrams per send message) as fixed buckets,
/// with the exact sum of the values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeBuckets {
    /// Upper bounds of the buckets (inclusive), ascending; a last bound of `u64::MAX`
    /// catches every larger value.
    pub bounds: Vec<u64>,
    /// Values per bucket (not cumulative): `counts[i]` is the number of values of at
    /// most `bounds[i]` and more than `bounds[i - 1]`.
    pub counts: Vec<u64>,
    /// The sum of every value counted.
    pub sum: u64,
}

/// Summarise `h`: the helper the engine uses to fill stats responses.
pub fn summarize(h: &Histogram<u64>) -> HistogramSummary {
    HistogramSummary::from_histogram(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero() {
        let h = Histogram::<u64>::new(3).expect("valid sigfig");
        assert_eq!(summarize(&h), HistogramSummary::default());
    }

    #[test]
    fn uniform_1_to_1000() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).expect("valid bounds");
        for v in 1..=1000u64 {
            h.record(v).expect("in range");
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p90, 900);
        assert_eq!(s.p99, 990);
        assert_eq!(s.p999, 999);
        assert_eq!(s.max, 1000);
    }

    #[test]
    fn outlier_shows_in_max_not_median() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("valid bounds");
        for _ in 0..999 {
            h.record(10).expect("in range");
        }
        h.record(5_000_000).expect("in range");
        let s = summarize(&h);
        assert_eq!(s.p50, 10);
        assert_eq!(s.p99, 10);
        assert!(s.max >= 5_000_000 && s.max <= 5_010_000, "max {}", s.max);
    }
}
