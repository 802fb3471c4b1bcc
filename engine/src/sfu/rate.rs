//! A cheap bitrate meter: bytes summed in fixed time buckets over a sliding window.
//!
//! [`RateMeter`] keeps [`RATE_BUCKETS`] buckets in a fixed array, so it never allocates;
//! [`RateMeter::add`] is a division, a compare and an add. The window slides by whole
//! buckets; [`RateMeter::bps`] divides the bytes of the buckets still inside the window
//! by the time they span (the oldest bucket's start up to `now`), so a meter younger than
//! its window already reports the right rate instead of ramping up.

use std::time::{Duration, Instant};

/// How many buckets a window is split into.
pub const RATE_BUCKETS: usize = 10;

/// The index of the bucket (of `width_ns` nanoseconds, counted from `epoch`) that holds
/// `now`. An instant before `epoch` falls into bucket 0.
pub(crate) fn bucket_index(epoch: Instant, width_ns: u64, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(epoch).as_nanos();
    u64::try_from(elapsed).unwrap_or(u64::MAX) / width_ns.max(1)
}

/// Nanoseconds of a duration, saturating at `u64::MAX` (585 years), at least 1.
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// A sliding-window bitrate meter (see the module docs).
#[derive(Debug, Clone)]
pub struct RateMeter {
    /// Width of one bucket in nanoseconds (at least 1).
    width_ns: u64,
    /// Bytes per bucket.
    bytes: [u64; RATE_BUCKETS],
    /// Absolute index + 1 of the bucket each slot currently holds; 0 = never used.
    stamp: [u64; RATE_BUCKETS],
    /// Start of bucket 0: the instant of the first [`RateMeter::add`].
    epoch: Option<Instant>,
    /// The newest bucket index written.
    newest: u64,
}

impl RateMeter {
    /// A meter over `window` (split into [`RATE_BUCKETS`] buckets; a window shorter than
    /// [`RATE_BUCKETS`] nanoseconds is rounded up to that).
    pub fn new(window: Duration) -> Self {
        Self {
            width_ns: (duration_ns(window) / RATE_BUCKETS as u64).max(1),
            bytes: [0; RATE_BUCKETS],
            stamp: [0; RATE_BUCKETS],
            epoch: None,
            newest: 0,
        }
    }

    /// The window this meter averages over.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.width_ns.saturating_mul(RATE_BUCKETS as u64))
    }

    /// Counts `bytes` sent or received at `now`. An instant older than the window is
    /// ignored (a clock that steps back a little lands in its own, older bucket).
    pub fn add(&mut self, bytes: usize, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let idx = bucket_index(epoch, self.width_ns, now);
        if idx.saturating_add(RATE_BUCKETS as u64) <= self.newest {
            return;
        }
        let slot = (idx % RATE_BUCKETS as u64) as usize;
        if self.stamp[slot] != idx + 1 {
            self.stamp[slot] = idx + 1;
            self.bytes[slot] = 0;
        }
        self.bytes[slot] = self.bytes[slot].saturating_add(bytes as u64);
        self.newest = self.newest.max(idx);
    }

    /// The rate in bits per second over the window ending at `now`; 0 before the first
    /// [`RateMeter::add`] or when nothing was counted inside the window.
    pub fn bps(&self, now: Instant) -> u64 {
        let Some(epoch) = self.epoch else {
            return 0;
        };
        let cur = bucket_index(epoch, self.width_ns, now).max(self.newest);
        let oldest = cur.saturating_sub(RATE_BUCKETS as u64 - 1);
        let mut total: u64 = 0;
        for (&stamp, &bytes) in self.stamp.iter().zip(&self.bytes) {
            if stamp > oldest && stamp - 1 <= cur {
                total = total.saturating_add(bytes);
            }
        }
        if total == 0 {
            return 0;
        }
        // The buckets span from the start of the oldest one up to `now` (at least one
        // bucket, so the first packets do not read as an absurd rate).
        let now_ns = u64::try_from(now.saturating_duration_since(epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(cur.saturating_mul(self.width_ns));
        let span_ns = now_ns
            .saturating_sub(oldest.saturating_mul(self.width_ns))
            .max(self.width_ns);
        let bps = u128::from(total) * 8 * 1_000_000_000 / u128::from(span_ns);
        u64::try_from(bps).unwrap_or(u64::MAX)
    }

    /// How long the meter has been counting: from its first [`RateMeter::add`] to `now`
    /// (zero before). A young meter's rate is the bytes of a few packets over a short
    /// span: a layer whose frames span several packets reads far below its rate until
    /// a few frames are in.
    pub fn age(&self, now: Instant) -> Duration {
        self.epoch
            .map_or(Duration::ZERO, |e| now.saturating_duration_since(e))
    }

    /// Forgets everything counted so far.
    pub fn reset(&mut self) {
        *self = Self {
            width_ns: self.width_ns,
            ..Self::new(Duration::ZERO)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn empty_meter_reads_zero() {
        let m = RateMeter::new(Duration::from_secs(1));
        assert_eq!(m.bps(Instant::now()), 0);
        assert_eq!(m.window(), Duration::from_secs(1));
    }

    #[test]
    fn steady_stream_reads_its_rate() {
        // 1250 bytes every 10 ms = 1 Mbit/s.
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(1));
        for i in 0..300u32 {
            m.add(1250, t0 + MS * (10 * i));
        }
        let now = t0 + MS * 2995;
        let bps = m.bps(now);
        assert!((950_000..=1_050_000).contains(&bps), "{bps}");
        // A young meter is already right (no ramp over the first window).
        let mut young = RateMeter::new(Duration::from_secs(1));
        for i in 0..30u32 {
            young.add(1250, t0 + MS * (10 * i));
        }
        let bps = young.bps(t0 + MS * 300);
        assert!((900_000..=1_100_000).contains(&bps), "{bps}");
    }

    #[test]
    fn old_bytes_slide_out_of_the_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(1));
        for i in 0..100u32 {
            m.add(1250, t0 + MS * (10 * i));
        }
        assert!(m.bps(t0 + MS * 1000) > 500_000);
        // Half a window later about half is left, a full window later nothing.
        let half = m.bps(t0 + MS * 1500);
        assert!((400_000..=600_000).contains(&half), "{half}");
        assert_eq!(m.bps(t0 + MS * 2100), 0);
        // Rate changes are followed.
        for i in 0..100u32 {
            m.add(625, t0 + MS * (3000 + 10 * i));
        }
        let bps = m.bps(t0 + MS * 4000);
        assert!((450_000..=550_000).contains(&bps), "{bps}");
    }

    #[test]
    fn stale_and_backwards_instants_do_not_panic_or_count_twice() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(1));
        m.add(1000, t0);
        m.add(1000, t0 + MS * 5000);
        // Older than the window: dropped.
        m.add(1_000_000, t0 + MS * 100);
        let bps = m.bps(t0 + MS * 5000);
        assert!(bps < 100_000, "{bps}");
        // `now` before the newest sample reads the newest bucket.
        assert_eq!(m.bps(t0), bps);
        m.reset();
        assert_eq!(m.bps(t0 + MS * 5000), 0);
        // A zero window does not divide by zero.
        let mut z = RateMeter::new(Duration::ZERO);
        z.add(10, t0);
        let _ = z.bps(t0 + MS);
    }
}
