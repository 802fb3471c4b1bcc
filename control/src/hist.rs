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

/// Linear sub-buckets per power of two in [`LatencyBuckets::log2_linear`] (relative
/// bucket width 1/8 = 12.5 %).
const SUB_BUCKETS: u32 = 8;
/// The first power of two split into sub-buckets: everything below 2^10 ns (~1 µs) is
/// one bucket.
const MIN_EXP: u32 = 10;
/// The last power of two with buckets (2^39 ns ≈ 9 min); larger values land in its
/// top bucket.
const MAX_EXP: u32 = 39;

/// A latency histogram with fixed buckets, in nanoseconds, as the engine exports it
/// (e.g. [`ShardStats::forward_ns`](crate::ShardStats::forward_ns): per forwarded
/// packet, from the receive completion of its batch to the submission of the send).
///
/// `bucket_ns[i]` is the exclusive upper bound of bucket `i` (the lower bound is
/// `bucket_ns[i - 1]`, or 0), and `counts[i]` the number of values in it; both have
/// the same length. Quantiles are reported as bucket upper bounds, so they over-state
/// by at most one bucket width. Empty vectors: nothing recorded (or an older engine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBuckets {
    /// Exclusive upper bound of each bucket, ns, ascending.
    pub bucket_ns: Vec<u64>,
    /// Values per bucket.
    pub counts: Vec<u64>,
}

impl LatencyBuckets {
    /// Number of buckets of [`LatencyBuckets::log2_linear`].
    pub const LOG2_LINEAR_LEN: usize = 1 + ((MAX_EXP - MIN_EXP + 1) * SUB_BUCKETS) as usize;

    /// The engine's bucket index of a value of `ns` nanoseconds: one bucket below
    /// 1,024 ns, then 8 linear buckets per power of two up to 2^40 ns (larger values
    /// go to the last). Cheap (a leading-zeros count and a shift) for per-packet use.
    pub fn log2_linear_index(ns: u64) -> usize {
        if ns < 1 << MIN_EXP {
            return 0;
        }
        let e = (63 - ns.leading_zeros()).min(MAX_EXP);
        if ns >= 1 << (MAX_EXP + 1) {
            return Self::LOG2_LINEAR_LEN - 1;
        }
        let sub = (ns >> (e - 3)) & u64::from(SUB_BUCKETS - 1);
        1 + ((e - MIN_EXP) * SUB_BUCKETS) as usize + sub as usize
    }

    /// The exclusive upper bound, ns, of bucket `i` of the log2-linear layout.
    pub fn log2_linear_bound(i: usize) -> u64 {
        if i == 0 {
            return 1 << MIN_EXP;
        }
        let k = (i - 1) as u32;
        let e = MIN_EXP + k / SUB_BUCKETS;
        let sub = u64::from(k % SUB_BUCKETS);
        (u64::from(SUB_BUCKETS) + sub + 1) << (e - 3)
    }

    /// Buckets of the log2-linear layout holding `counts` (indexed by
    /// [`LatencyBuckets::log2_linear_index`]).
    pub fn log2_linear(counts: &[u64]) -> LatencyBuckets {
        LatencyBuckets {
            bucket_ns: (0..counts.len()).map(Self::log2_linear_bound).collect(),
            counts: counts.to_vec(),
        }
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding the `q` quantile (`q` in 0..=1), ns;
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the quantile value, 1-based: at least the first value.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (c, b) in self.counts.iter().zip(&self.bucket_ns) {
            seen += c;
            if seen >= rank {
                return Some(*b);
            }
        }
        self.bucket_ns.last().copied()
    }

    /// Median, ns (see [`LatencyBuckets::quantile`]).
    pub fn p50(&self) -> Option<u64> {
        self.quantile(0.50)
    }

    /// 99th percentile, ns.
    pub fn p99(&self) -> Option<u64> {
        self.quantile(0.99)
    }

    /// 99.9th percentile, ns.
    pub fn p999(&self) -> Option<u64> {
        self.quantile(0.999)
    }

    /// Adds the counts of `other` (same layout, e.g. another shard's); an empty side
    /// takes the other's layout. Returns `false`, changing nothing, when the bucket
    /// bounds differ.
    pub fn merge(&mut self, other: &LatencyBuckets) -> bool {
        if other.bucket_ns.is_empty() {
            return true;
        }
        if self.bucket_ns.is_empty() {
            *self = other.clone();
            return true;
        }
        if self.bucket_ns != other.bucket_ns || self.counts.len() != other.counts.len() {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        true
    }

    /// The same values in coarser buckets with the upper bounds `bounds` (ascending,
    /// ending with `u64::MAX`): each bucket's count goes to the first coarse bucket whose
    /// bound is at least its own bound. For exporters that want a few buckets (e.g.
    /// Prometheus `le` series) from the engine's fine layout.
    pub fn coarsen(&self, bounds: &[u64]) -> LatencyBuckets {
        let mut counts = vec![0u64; bounds.len()];
        for (&b, &n) in self.bucket_ns.iter().zip(&self.counts) {
            let i = bounds.partition_point(|&c| c < b);
            if let Some(slot) = counts.get_mut(i.min(bounds.len().saturating_sub(1))) {
                *slot += n;
            }
        }
        LatencyBuckets {
            bucket_ns: bounds.to_vec(),
            counts,
        }
    }

    /// The counts since `earlier` (a previous snapshot of the same histogram), for
    /// latency over a measurement window; `None` when the layouts differ.
    pub fn since(&self, earlier: &LatencyBuckets) -> Option<LatencyBuckets> {
        if earlier.bucket_ns.is_empty() {
            return Some(self.clone());
        }
        if earlier.bucket_ns != self.bucket_ns || earlier.counts.len() != self.counts.len() {
            return None;
        }
        Some(LatencyBuckets {
            bucket_ns: self.bucket_ns.clone(),
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        })
    }
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
    fn coarsen_moves_each_bucket_to_the_first_bound_at_least_its_own() {
        let fine = LatencyBuckets {
            bucket_ns: vec![10, 20, 30, 40],
            counts: vec![1, 2, 3, 4],
        };
        let c = fine.coarsen(&[20, 35, u64::MAX]);
        assert_eq!(c.bucket_ns, vec![20, 35, u64::MAX]);
        assert_eq!(c.counts, vec![3, 3, 4]);
        assert_eq!(c.count(), fine.count());
    }

    #[test]
    fn log2_linear_buckets_hold_their_values() {
        assert_eq!(LatencyBuckets::log2_linear_index(0), 0);
        assert_eq!(LatencyBuckets::log2_linear_index(1023), 0);
        for v in [
            1024u64,
            1100,
            2047,
            2048,
            50_000,
            99_999,
            1 << 39,
            (1 << 40) - 1,
        ] {
            let i = LatencyBuckets::log2_linear_index(v);
            assert!(v < LatencyBuckets::log2_linear_bound(i), "{v} in {i}");
            let lower = if i == 0 {
                0
            } else {
                LatencyBuckets::log2_linear_bound(i - 1)
            };
            assert!(v >= lower, "{v} in {i}");
            // 12.5 % wide at most.
            assert!(LatencyBuckets::log2_linear_bound(i) - lower <= lower / 8 + 1 || i == 0);
        }
        assert_eq!(
            LatencyBuckets::log2_linear_index(u64::MAX),
            LatencyBuckets::LOG2_LINEAR_LEN - 1
        );
        let bounds: Vec<u64> = (0..LatencyBuckets::LOG2_LINEAR_LEN)
            .map(LatencyBuckets::log2_linear_bound)
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn latency_bucket_quantiles_merge_and_window() {
        let mut counts = vec![0u64; LatencyBuckets::LOG2_LINEAR_LEN];
        for v in 1..=1000u64 {
            counts[LatencyBuckets::log2_linear_index(v * 1000)] += 1;
        }
        let b = LatencyBuckets::log2_linear(&counts);
        assert_eq!(b.count(), 1000);
        let p50 = b.p50().unwrap();
        assert!((500_000..=500_000 * 9 / 8 + 1).contains(&p50), "{p50}");
        let p99 = b.p99().unwrap();
        assert!((990_000..=990_000 * 9 / 8 + 1).contains(&p99), "{p99}");
        assert!(b.p999().unwrap() >= p99);
        assert_eq!(LatencyBuckets::default().p50(), None);
        let mut m = LatencyBuckets::default();
        assert!(m.merge(&b) && m.merge(&b));
        assert_eq!(m.count(), 2000);
        assert_eq!(m.since(&b).unwrap(), b);
        let other = LatencyBuckets {
            bucket_ns: vec![1],
            counts: vec![1],
        };
        assert!(!m.merge(&other));
        assert_eq!(m.count(), 2000);
        // Serde: the engine's JSON shape, and older engines without the field.
        let v = serde_json::to_value(&b).unwrap();
        assert!(v["bucket_ns"].is_array() && v["counts"].is_array());
    }

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
