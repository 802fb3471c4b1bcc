//! How much a NACK may make us retransmit: de-duplication and budgets.
//!
//! One generic NACK can name thousands of packets (each 4-byte item covers up to 17
//! sequence numbers), and a peer may send as many as it likes. Answering each
//! request with a retransmission would make us an amplifier: a few hundred bytes in,
//! megabytes out. [`ResendLimiter`] stands between a NACK and the RTX buffer of one
//! send stream and admits a retransmission only when
//!
//! 1. the same packet was not resent within the last *interval* (the round-trip time,
//!    at least [`MIN_INTERVAL`]): a second request for it inside one RTT cannot be a
//!    loss of the first resend yet, and this also de-duplicates a NACK that names a
//!    packet twice;
//! 2. fewer than [`MAX_PACKETS_PER_INTERVAL`] packets were resent in the current
//!    interval;
//! 3. a byte budget has room: a token bucket refilled at [`RATE_PERCENT`] % of the
//!    stream's own send rate (at least [`FLOOR_BPS`], so small streams such as audio
//!    can still repair a burst) and holding at most half a second of that, but never
//!    less than [`FLOOR_BURST_BYTES`].
//!
//! Everything is fixed-size; nothing allocates after construction.

use super::micros;
use std::time::{Duration, Instant};

/// Shortest de-duplication and counting interval (used while the RTT is unknown).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Shortest spacing of repeated NACKs for one packet
/// ([`NackRegister`](super::NackRegister) waits the round-trip time, but at least
/// this long): [`MIN_INTERVAL`] plus a margin for jitter between the two requests.
///
/// A sender that resent a packet drops further requests for it within its
/// de-duplication interval (the RTT, at least [`MIN_INTERVAL`]). On a path with a
/// round trip of a millisecond, repeats spaced by the RTT alone all fall inside that
/// interval: if the first retransmission is lost, the packet is never repaired.
pub const MIN_NACK_REPEAT: Duration = Duration::from_millis(15);

/// Longest interval, however large the RTT claims to be.
pub const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// Most retransmissions of one stream within one interval.
pub const MAX_PACKETS_PER_INTERVAL: u32 = 16;

/// The byte budget refills at this share of the stream's send rate.
///
/// Half, not less: a receiver that NACKs as soon as it sees a gap also asks for
/// packets that were only reordered (jitter within a frame), and the media tests
/// with 5 % loss, 5 % reordering and 3 ms jitter ask for about 40 % of what was sent;
/// at 25 % they no longer recover every frame.
pub const RATE_PERCENT: u64 = 50;

/// The byte budget refills at least this fast (bits per second).
pub const FLOOR_BPS: u64 = 64_000;

/// The byte budget holds at least this much (about a dozen full-size packets).
pub const FLOOR_BURST_BYTES: u64 = 15_000;

/// How long a burst the bucket holds at the refill rate.
const BURST_WINDOW: Duration = Duration::from_millis(500);

/// Resends remembered for de-duplication. Within one interval at most
/// `MAX_PACKETS_PER_INTERVAL` are admitted, so any span of one interval (which may
/// straddle two counting windows) holds at most twice that many.
const RECENT: usize = 2 * MAX_PACKETS_PER_INTERVAL as usize;

/// The time of a `recent` slot not written yet (585 years after the epoch: no real
/// resend time).
const UNUSED: u64 = u64::MAX;

/// A duration in nanoseconds (saturating at [`UNUSED`], 585 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What [`ResendLimiter::admit`] decided for one requested packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Resend it (the budget was charged).
    Resend,
    /// It was resent within the last interval: skip it, keep going.
    Duplicate,
    /// The budget of this interval is spent: skip it and every further request of
    /// the same NACK.
    OverBudget,
}

/// Counters of a [`ResendLimiter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResendStats {
    /// Retransmissions admitted.
    pub admitted: u64,
    /// Requests skipped because the packet was resent within the interval.
    pub duplicates: u64,
    /// Requests refused because a packet or byte budget was spent.
    pub over_budget: u64,
}

/// De-duplication and packet/byte budgets for the retransmissions of one send
/// stream: no second resend of a packet within one RTT, at most
/// `MAX_PACKETS_PER_INTERVAL` per RTT, and bytes bounded by a token bucket refilled
/// at `RATE_PERCENT` % of the send rate.
#[derive(Debug, Clone)]
pub struct ResendLimiter {
    /// Ring of recent resends: (extended sequence number, when: nanoseconds after
    /// `epoch`), [`UNUSED`] in slots not written yet. 16 bytes a slot where an
    /// `Option<(u64, Instant)>` took 24: the ring is held by every send stream.
    recent: [(u64, u64); RECENT],
    /// What the times in `recent` count from: the first admission's `now`.
    epoch: Option<Instant>,
    next: usize,
    /// Start of the current counting window and what it admitted.
    window_start: Option<Instant>,
    window_packets: u32,
    /// Byte tokens, and when they were last refilled.
    tokens: u64,
    refilled_at: Option<Instant>,
    stats: ResendStats,
}

impl Default for ResendLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl ResendLimiter {
    /// A limiter with a full byte budget.
    pub fn new() -> Self {
        ResendLimiter {
            recent: [(0, UNUSED); RECENT],
            epoch: None,
            next: 0,
            window_start: None,
            window_packets: 0,
            // Filled to capacity by the first refill.
            tokens: 0,
            refilled_at: None,
            stats: ResendStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ResendStats {
        self.stats
    }

    /// The de-duplication and counting interval for a round-trip time.
    pub fn interval(rtt: Option<Duration>) -> Duration {
        rtt.unwrap_or(Duration::ZERO)
            .clamp(MIN_INTERVAL, MAX_INTERVAL)
    }

    /// Decides whether packet `seq` (extended), `bytes` long on the wire, may be
    /// resent at `now`, given the stream's round-trip time and its send rate in bits
    /// per second. On [`Admission::Resend`] the resend is recorded and charged.
    pub fn admit(
        &mut self,
        now: Instant,
        seq: u64,
        bytes: usize,
        rtt: Option<Duration>,
        send_rate_bps: u64,
    ) -> Admission {
        let interval = Self::interval(rtt);
        let interval_ns = nanos(interval);
        // Exactly `now.saturating_duration_since(at) < interval` of the resend instant
        // `at`: both times count from the same epoch (a `now` before it counts as 0,
        // and so does a `now` before `at`, as `saturating_duration_since` does).
        let epoch = *self.epoch.get_or_insert(now);
        let now_ns = nanos(now.saturating_duration_since(epoch));
        let recently = self
            .recent
            .iter()
            .any(|&(s, at)| at != UNUSED && s == seq && now_ns.saturating_sub(at) < interval_ns);
        if recently {
            self.stats.duplicates += 1;
            return Admission::Duplicate;
        }
        if self
            .window_start
            .is_none_or(|w| now.saturating_duration_since(w) >= interval)
        {
            self.window_start = Some(now);
            self.window_packets = 0;
        }
        self.refill(now, send_rate_bps);
        let bytes = bytes as u64;
        if self.window_packets >= MAX_PACKETS_PER_INTERVAL || self.tokens < bytes {
            self.stats.over_budget += 1;
            return Admission::OverBudget;
        }
        self.window_packets += 1;
        self.tokens -= bytes;
        if let Some(slot) = self.recent.get_mut(self.next) {
            *slot = (seq, now_ns);
        }
        self.next = (self.next + 1) % RECENT;
        self.stats.admitted += 1;
        Admission::Resend
    }

    /// Adds the tokens earned since the last refill.
    fn refill(&mut self, now: Instant, send_rate_bps: u64) {
        let refill_bps = (send_rate_bps.saturating_mul(RATE_PERCENT) / 100).max(FLOOR_BPS);
        let bytes_per_sec = refill_bps / 8;
        let capacity =
            (bytes_per_sec.saturating_mul(micros(BURST_WINDOW)) / 1_000_000).max(FLOOR_BURST_BYTES);
        let elapsed = match self.refilled_at {
            Some(t) => micros(now.saturating_duration_since(t)),
            None => u64::MAX,
        };
        self.refilled_at = Some(now);
        let earned = bytes_per_sec.saturating_mul(elapsed) / 1_000_000;
        self.tokens = self.tokens.saturating_add(earned).min(capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_packet_is_resent_once_per_interval() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new();
        let rtt = Some(50 * MS);
        assert_eq!(l.admit(t0, 7, 1000, rtt, 1_000_000), Admission::Resend);
        // Named twice in one NACK, or again within the RTT: skipped.
        assert_eq!(l.admit(t0, 7, 1000, rtt, 1_000_000), Admission::Duplicate);
        assert_eq!(
            l.admit(t0 + 49 * MS, 7, 1000, rtt, 1_000_000),
            Admission::Duplicate
        );
        // One RTT later the resend may itself have been lost.
        assert_eq!(
            l.admit(t0 + 50 * MS, 7, 1000, rtt, 1_000_000),
            Admission::Resend
        );
        // Unknown RTT: the minimum interval.
        assert_eq!(
            l.admit(t0 + 60 * MS, 7, 1000, None, 1_000_000),
            Admission::Resend
        );
        assert_eq!(
            l.admit(t0 + 65 * MS, 7, 1000, None, 1_000_000),
            Admission::Duplicate
        );
        assert_eq!(l.stats().admitted, 3);
        assert_eq!(l.stats().duplicates, 3);
    }

    #[test]
    fn an_earlier_now_counts_as_within_the_interval() {
        // As `Instant::saturating_duration_since` has it: a `now` before the resend
        // (or before the first one, the ring's epoch) is no time after it.
        let t0 = Instant::now() + 1000 * MS;
        let mut l = ResendLimiter::new();
        assert_eq!(l.admit(t0, 7, 100, None, 0), Admission::Resend);
        assert_eq!(
            l.admit(t0 - 500 * MS, 7, 100, None, 0),
            Admission::Duplicate
        );
        assert_eq!(l.admit(t0 + 10 * MS, 7, 100, None, 0), Admission::Resend);
        // The interval is exact to the nanosecond.
        let rtt = Some(Duration::from_nanos(20_000_001));
        assert_eq!(
            l.admit(t0 + Duration::from_nanos(30_000_000), 7, 100, rtt, 0),
            Admission::Duplicate
        );
        assert_eq!(
            l.admit(t0 + Duration::from_nanos(30_000_001), 7, 100, rtt, 0),
            Admission::Resend
        );
    }

    #[test]
    fn the_ring_is_compact() {
        // Held by every send stream (32 slots of 16 bytes, was 24).
        assert!(std::mem::size_of::<ResendLimiter>() <= 640);
    }

    #[test]
    fn at_most_sixteen_packets_per_interval() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new();
        let rate = 50_000_000; // a large stream: only the packet cap binds
        let admitted = (0..1000u64)
            .filter(|&s| l.admit(t0, s, 100, None, rate) == Admission::Resend)
            .count();
        assert_eq!(admitted, 16);
        // The next interval admits 16 more.
        let admitted = (1000..2000u64)
            .filter(|&s| l.admit(t0 + 10 * MS, s, 100, None, rate) == Admission::Resend)
            .count();
        assert_eq!(admitted, 16);
    }

    #[test]
    fn bytes_are_bounded_by_a_share_of_the_send_rate() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new();
        // A 2 Mbps stream asked every 10 ms for 16 fresh 1200-byte packets, for 10 s.
        let rate = 2_000_000;
        let mut bytes = 0u64;
        let mut seq = 0;
        for i in 0..1000u32 {
            let now = t0 + i * 10 * MS;
            for _ in 0..16 {
                seq += 1;
                if l.admit(now, seq, 1200, None, rate) == Admission::Resend {
                    bytes += 1200;
                }
            }
        }
        // 50 % of 2 Mbps for 10 s is 1.25 MB, plus the initial burst (a full bucket:
        // half a second of the refill rate).
        let refill = 2_000_000 / 8 * RATE_PERCENT / 100;
        let budget = refill * 10 + refill / 2;
        assert!(bytes <= budget + 1200, "{bytes} > {budget}");
        assert!(bytes >= budget * 9 / 10, "{bytes} well below {budget}");
    }

    #[test]
    fn a_small_stream_still_repairs_a_burst() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new();
        // 32 kbps audio loses 10 packets of 100 bytes at once.
        let admitted = (0..10u64)
            .filter(|&s| l.admit(t0, s, 100, Some(80 * MS), 32_000) == Admission::Resend)
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn five_percent_loss_with_renacks_is_fully_repaired() {
        // A 1 Mbps stream of 1000-byte packets (125 pps); every 20th packet is lost,
        // and so is every third first retransmission. The receiver NACKs each gap
        // every RTT until it is filled.
        let t0 = Instant::now();
        let rtt = Some(40 * MS);
        let mut l = ResendLimiter::new();
        let mut missing: Vec<(u64, u32)> = Vec::new(); // (seq, resends so far)
        let mut repaired = 0;
        for tick in 0..1000u32 {
            let now = t0 + tick * 8 * MS;
            let seq = u64::from(tick);
            if seq % 20 == 0 {
                missing.push((seq, 0));
            }
            if tick % 5 == 0 {
                // A NACK for everything still missing.
                let mut still = Vec::new();
                for (s, n) in missing.drain(..) {
                    match l.admit(now, s, 1002, rtt, 1_000_000) {
                        Admission::Resend if n == 0 && s % 60 == 0 => still.push((s, 1)),
                        Admission::Resend => repaired += 1,
                        _ => still.push((s, n)),
                    }
                }
                missing = still;
            }
        }
        assert!(missing.iter().all(|&(s, _)| s >= 990), "{missing:?}");
        assert!(repaired >= 49, "{repaired}");
        assert_eq!(l.stats().over_budget, 0);
    }
}
