//! Bitrate over a sliding window, without allocation after construction.

use super::{micros, since_us};
use std::time::{Duration, Instant};

/// Measures a bitrate over a sliding window made of fixed time buckets.
///
/// Samples are attributed to the bucket of their timestamp; the rate is the sum of
/// the buckets inside the window divided by the time the window covers (less than
/// the full window while it is still filling, so the first samples do not read as a
/// low rate). Timestamps are microseconds on any monotonic clock
/// ([`RateMeter::add_us`]) or `Instant`s relative to the first sample
/// ([`RateMeter::add`]). Samples older than the newest bucket but still inside the
/// window are counted; older ones are dropped.
#[derive(Debug, Clone)]
pub struct RateMeter {
    bucket_us: u64,
    /// (bucket number + 1, bytes); bucket number 0 marks an empty slot.
    buckets: Box<[(u64, u64)]>,
    newest: u64,
    first_us: Option<u64>,
    epoch: Option<Instant>,
    /// The newest bucket as `[start, end)` µs (its start no earlier than the first
    /// sample) and its slot: a sample there only adds its bytes (no division, no
    /// window check). Empty (`start > end`) until the first sample.
    hot: (u64, u64, usize),
}

impl RateMeter {
    /// A meter over `window` split into `buckets` buckets (at least 1; the bucket
    /// width is at least 1 µs).
    pub fn new(window: Duration, buckets: usize) -> Self {
        let n = buckets.max(1);
        RateMeter {
            bucket_us: (micros(window) / n as u64).max(1),
            buckets: vec![(0, 0); n].into_boxed_slice(),
            newest: 0,
            first_us: None,
            epoch: None,
            hot: (u64::MAX, 0, 0),
        }
    }

    fn window_us(&self) -> u64 {
        self.bucket_us * self.buckets.len() as u64
    }

    /// Adds `bytes` at `now`.
    pub fn add(&mut self, now: Instant, bytes: u64) {
        let epoch = *self.epoch.get_or_insert(now);
        self.add_us(since_us(epoch, now), bytes);
    }

    /// The rate in bits per second at `now` (`None` before the first sample).
    pub fn rate_bps(&self, now: Instant) -> Option<u64> {
        self.rate_bps_us(since_us(self.epoch?, now))
    }

    /// Adds `bytes` at `t_us` microseconds.
    pub fn add_us(&mut self, t_us: u64, bytes: u64) {
        let (start, end, i) = self.hot;
        if t_us >= start
            && t_us < end
            && let Some(slot) = self.buckets.get_mut(i)
        {
            // Per packet, mostly: the bucket the previous sample went to.
            slot.1 = slot.1.saturating_add(bytes);
            return;
        }
        let b = (t_us / self.bucket_us).saturating_add(1);
        let n = self.buckets.len() as u64;
        if self.newest >= n && b <= self.newest - n {
            return; // older than the window
        }
        self.first_us = Some(self.first_us.map_or(t_us, |f| f.min(t_us)));
        self.newest = self.newest.max(b);
        let i = (b % n) as usize; // below buckets.len()
        if let Some(slot) = self.buckets.get_mut(i) {
            if slot.0 == b {
                slot.1 = slot.1.saturating_add(bytes);
            } else {
                *slot = (b, bytes);
            }
        }
        if b == self.newest {
            let first = self.first_us.unwrap_or(t_us);
            let lo = (b - 1).saturating_mul(self.bucket_us);
            self.hot = (lo.max(first), lo.saturating_add(self.bucket_us), i);
        }
    }

    /// The rate in bits per second over the window ending at `t_us` microseconds
    /// (`None` before the first sample).
    pub fn rate_bps_us(&self, t_us: u64) -> Option<u64> {
        let first = self.first_us?;
        let now_b = (t_us / self.bucket_us).saturating_add(1).max(self.newest);
        let n = self.buckets.len() as u64;
        let oldest = now_b.saturating_sub(n - 1).max(1);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(b, _)| *b >= oldest && *b <= now_b && *b != 0)
            .map(|(_, v)| *v)
            .sum();
        // Time covered: from the start of the oldest bucket in the window (or the
        // first sample) to the end of the current bucket.
        let end = now_b.saturating_mul(self.bucket_us);
        let start = ((oldest - 1) * self.bucket_us).max(first - first % self.bucket_us);
        let span = end
            .saturating_sub(start)
            .clamp(self.bucket_us, self.window_us());
        Some(
            u64::try_from(u128::from(bytes) * 8 * 1_000_000 / u128::from(span)).unwrap_or(u64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate() {
        // 1 s window of 10 buckets; 1250 bytes every 10 ms = 1 Mbit/s.
        let mut m = RateMeter::new(Duration::from_secs(1), 10);
        assert_eq!(m.rate_bps_us(0), None);
        for i in 0..300u64 {
            m.add_us(i * 10_000, 1250);
        }
        // At t = 2.99 s the window covers buckets 2.0..3.0 s: 100 packets.
        assert_eq!(m.rate_bps_us(2_990_000), Some(1_000_000));
        // Filling: after 50 ms (5 packets in bucket 0, span = one bucket of 100 ms):
        let mut m = RateMeter::new(Duration::from_secs(1), 10);
        for i in 0..5u64 {
            m.add_us(i * 10_000, 1250);
        }
        // 6250 bytes * 8 / 0.1 s = 500 kbit/s.
        assert_eq!(m.rate_bps_us(40_000), Some(500_000));
        // Silence for 2 s: the window is empty.
        assert_eq!(m.rate_bps_us(2_500_000), Some(0));
    }

    /// The rate from first principles: the bytes of the buckets in the window ending
    /// with `t_us`'s bucket, over the time they cover (as `rate_bps_us` documents).
    fn reference(samples: &[(u64, u64)], bucket_us: u64, n: u64, t_us: u64) -> Option<u64> {
        let mut first: Option<u64> = None;
        let mut newest = 0;
        let mut kept: Vec<(u64, u64)> = Vec::new();
        for &(t, bytes) in samples {
            let b = t / bucket_us + 1;
            if newest >= n && b <= newest - n {
                continue; // older than the window when it came: dropped
            }
            first = Some(first.map_or(t, |f| f.min(t)));
            newest = newest.max(b);
            kept.push((b, bytes));
        }
        let first = first?;
        let now_b = (t_us / bucket_us + 1).max(newest);
        let oldest = now_b.saturating_sub(n - 1).max(1);
        let bytes: u64 = kept
            .iter()
            .filter(|(b, _)| *b >= oldest && *b <= now_b)
            .map(|(_, v)| *v)
            .sum();
        let end = now_b * bucket_us;
        let start = ((oldest - 1) * bucket_us).max(first - first % bucket_us);
        let span = end.saturating_sub(start).clamp(bucket_us, bucket_us * n);
        Some((u128::from(bytes) * 8 * 1_000_000 / u128::from(span)) as u64)
    }

    proptest::proptest! {
        /// Samples mostly in order with some late ones (the fast path for the newest
        /// bucket and the slow path for the others): the rate is the reference's.
        #[test]
        fn the_newest_bucket_shortcut_changes_no_rate(
            steps in proptest::collection::vec((0u64..30_000, 1u64..1500, proptest::bool::weighted(0.1)), 1..200),
        ) {
            let (bucket_us, n) = (10_000, 5);
            let mut m = RateMeter::new(Duration::from_micros(bucket_us * n), n as usize);
            let mut samples = Vec::new();
            let mut t = 1_000_000u64;
            for (dt, bytes, late) in steps {
                // A late sample goes up to 60 ms back (some beyond the window).
                let at = if late { t.saturating_sub(dt * 2) } else { t += dt / 10; t };
                m.add_us(at, bytes);
                samples.push((at, bytes));
                proptest::prop_assert_eq!(m.rate_bps_us(t), reference(&samples, bucket_us, n, t));
            }
        }
    }

    #[test]
    fn late_samples_and_instants() {
        let mut m = RateMeter::new(Duration::from_millis(500), 5);
        m.add_us(1_000_000, 1000);
        m.add_us(950_000, 1000); // earlier bucket, inside the window
        m.add_us(100_000, 1000); // outside the window (older than 0.5 s): dropped
        // Buckets 0.9-1.0 and 1.0-1.1 s: 2000 bytes over 0.2 s = 80 kbit/s.
        assert_eq!(m.rate_bps_us(1_050_000), Some(80_000));
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_millis(500), 5);
        assert_eq!(m.rate_bps(t0), None);
        for i in 0..50u64 {
            m.add(t0 + Duration::from_millis(10 * i), 100);
        }
        // At 0.49 s the five 100 ms buckets hold 50 * 100 bytes over 0.5 s.
        assert_eq!(m.rate_bps(t0 + Duration::from_millis(490)), Some(80_000));
    }
}
