//! Receive-side bookkeeping: per-stream sequence tracking (loss, reordering,
//! duplicates) and histogram summaries.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Width of the duplicate-detection window, in packets.
const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What [`SeqTracker::record`] concluded about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected packet or a jump ahead (a gap counts as loss until filled).
    InOrder,
    /// Older than the highest seen, not seen before: fills a gap.
    OutOfOrder,
    /// Seen before (within the window).
    Duplicate,
}

/// Tracks one incoming stream by the sender's sequence numbers (from 0, 64-bit).
///
/// The first packet seen sets the base; `expected` is `highest - base + 1`, so packets
/// sent before a subscriber joined, or still in flight at the end, do not count as lost.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    started: bool,
    base: u64,
    highest: u64,
    unique: u64,
    out_of_order: u64,
    duplicates: u64,
    /// Bit `seq % WINDOW` is set when `seq` (within `WINDOW` of `highest`) arrived.
    seen: [u64; WORDS],
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker::new()
    }
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> SeqTracker {
        SeqTracker {
            started: false,
            base: 0,
            highest: 0,
            unique: 0,
            out_of_order: 0,
            duplicates: 0,
            seen: [0; WORDS],
        }
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn set(&mut self, seq: u64) -> bool {
        let (w, m) = Self::bit(seq);
        // `w < WORDS` because `seq % WINDOW < WINDOW`.
        let word = &mut self.seen[w];
        let was = *word & m != 0;
        *word |= m;
        was
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::bit(seq);
        self.seen[w] &= !m;
    }

    /// Records a packet with sender sequence number `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if !self.started {
            self.started = true;
            self.base = seq;
            self.highest = seq;
            self.unique = 1;
            self.set(seq);
            return Arrival::InOrder;
        }
        if seq > self.highest {
            let gap = seq - self.highest;
            if gap >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in self.highest + 1..seq {
                    self.clear(s);
                }
            }
            self.highest = seq;
            self.set(seq);
            self.unique += 1;
            return Arrival::InOrder;
        }
        if self.highest - seq >= WINDOW {
            // Too old to tell a duplicate from a late packet: count it as late.
            self.base = self.base.min(seq);
            self.unique += 1;
            self.out_of_order += 1;
            return Arrival::OutOfOrder;
        }
        if seq < self.base {
            // Older than the first packet seen (it overtook us): widen the range.
            for s in seq + 1..self.base {
                self.clear(s);
            }
            self.base = seq;
        }
        if self.set(seq) {
            self.duplicates += 1;
            Arrival::Duplicate
        } else {
            self.unique += 1;
            self.out_of_order += 1;
            Arrival::OutOfOrder
        }
    }

    /// Whether any packet arrived.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Packets the range from the first to the highest sequence number holds.
    pub fn expected(&self) -> u64 {
        if self.started {
            self.highest - self.base + 1
        } else {
            0
        }
    }

    /// Distinct packets received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Packets missing from the range seen.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }

    /// Packets that arrived after a higher-numbered one.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Packets received more than once.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// A histogram for nanosecond values from 1 ns to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Fixed, valid bounds (low 1 ≥ 1, high ≥ 2 × low, sigfig 3 ≤ 5): cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram, converted from nanoseconds to milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Smallest sample.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Summarises a nanosecond histogram in milliseconds (all zero when empty).
    pub fn from_ns(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            mean: h.mean() / 1e6,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_no_loss() {
        let mut t = SeqTracker::new();
        for s in 100..200 {
            assert_eq!(t.record(s), Arrival::InOrder);
        }
        assert_eq!(t.expected(), 100);
        assert_eq!(t.unique(), 100);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.out_of_order(), 0);
        assert_eq!(t.duplicates(), 0);
    }

    #[test]
    fn gap_reorder_duplicate() {
        let mut t = SeqTracker::new();
        t.record(0);
        t.record(1);
        t.record(4); // 2 and 3 missing
        assert_eq!(t.lost(), 2);
        assert_eq!(t.record(2), Arrival::OutOfOrder);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(4), Arrival::Duplicate);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.out_of_order(), 1);
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.expected(), 5);
    }

    #[test]
    fn big_jump_clears_window() {
        let mut t = SeqTracker::new();
        t.record(5);
        t.record(5 + 3 * WINDOW);
        assert_eq!(t.lost(), 3 * WINDOW - 1);
        // 5 + WINDOW shares a bit position with 5 but was cleared by the jump.
        assert_eq!(t.record(5 + 2 * WINDOW + 1), Arrival::OutOfOrder);
        // Older than the window: counted as late, not as a duplicate.
        assert_eq!(t.record(6), Arrival::OutOfOrder);
        assert_eq!(t.duplicates(), 0);
    }

    #[test]
    fn earlier_than_first() {
        let mut t = SeqTracker::new();
        t.record(10);
        t.record(11);
        assert_eq!(t.record(8), Arrival::OutOfOrder);
        assert_eq!(t.expected(), 4);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.record(9), Arrival::OutOfOrder);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.record(8), Arrival::Duplicate);
    }

    #[test]
    fn empty_tracker() {
        let t = SeqTracker::new();
        assert!(!t.started());
        assert_eq!(t.expected(), 0);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn percentiles_in_ms() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let p = Percentiles::from_ns(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{}", p.p50);
        assert!((p.p99 - 990.0).abs() < 2.0, "{}", p.p99);
        assert!((p.max - 1000.0).abs() < 1.0, "{}", p.max);
        assert!((p.min - 1.0).abs() < 0.01);
        assert_eq!(
            Percentiles::from_ns(&new_histogram()),
            Percentiles::default()
        );
    }
}
