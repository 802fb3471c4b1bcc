//! Receive statistics for one incoming SSRC (RFC 3550 §6.4.1, appendix A.3 and A.8).

use super::{since_us, to_compact};
use crate::rtcp::ReportBlock;
use std::time::Instant;

/// Largest cumulative loss a report block can carry (24-bit signed).
const MAX_CUMULATIVE_LOST: i64 = 0x7f_ffff;
/// Smallest cumulative loss a report block can carry (24-bit signed).
const MIN_CUMULATIVE_LOST: i64 = -0x80_0000;

/// `a - b` as a signed value, saturating at the `i64` range.
fn diff(a: u64, b: u64) -> i64 {
    let d = i128::from(a) - i128::from(b);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// A snapshot of the receive statistics of a [`ReceiveRegister`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Packets received, including duplicates and late packets (RFC 3550 A.3).
    pub packets: u64,
    /// Packets expected: highest − lowest extended sequence number + 1.
    pub expected: u64,
    /// Cumulative loss, `expected − packets` (negative with duplicates), unclamped.
    pub lost: i64,
    /// Highest extended sequence number received.
    pub highest_seq: u64,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
}

/// RFC 3550 receive statistics for one incoming SSRC, producing report blocks.
///
/// Feed every received RTP packet to [`ReceiveRegister::update`] (with an extended
/// sequence number) and every sender report for the SSRC to
/// [`ReceiveRegister::on_sender_report`]; [`ReceiveRegister::report_block`] then
/// produces the block for the next SR/RR.
#[derive(Debug, Clone)]
pub struct ReceiveRegister {
    ssrc: u32,
    /// Lowest and highest extended sequence numbers seen.
    seqs: Option<(u64, u64)>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Reference for arrival times in RTP units.
    epoch: Option<Instant>,
    /// Relative transit time of the previous packet (RTP units, wrapping).
    transit: Option<u32>,
    /// Jitter scaled by 16 (A.8 integer form); u64 so that it cannot overflow.
    jitter16: u64,
    /// Middle 32 bits of the last SR's NTP time, its full NTP and RTP times and when
    /// it arrived.
    last_sr: Option<(u64, u32, Instant)>,
}

impl ReceiveRegister {
    /// A register for packets from `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        ReceiveRegister {
            ssrc,
            seqs: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch: None,
            transit: None,
            jitter16: 0,
            last_sr: None,
        }
    }

    /// The SSRC this register reports on.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Records a packet with extended sequence number `seq` and RTP timestamp
    /// `rtp_time` arriving at `now`; `clock_rate` is the media clock in Hz (jitter is
    /// not updated when it is 0).
    ///
    /// Every call counts as a received packet, duplicates included (RFC 3550 A.3).
    pub fn update(&mut self, now: Instant, seq: u64, rtp_time: u32, clock_rate: u32) {
        self.received += 1;
        self.seqs = Some(match self.seqs {
            None => (seq, seq),
            Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
        });
        if clock_rate == 0 {
            return;
        }
        let epoch = *self.epoch.get_or_insert(now);
        // Arrival time in RTP units, modulo 2^32 like the timestamps themselves.
        let us = u128::from(since_us(epoch, now));
        let arrival = (us * u128::from(clock_rate) / 1_000_000) as u32; // modulo 2^32 intended
        let transit = arrival.wrapping_sub(rtp_time);
        if let Some(prev) = self.transit {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            // J += (|D| - J) / 16, kept scaled by 16 (RFC 3550 A.8). Bounded by
            // 16 * 2^31, and (J + 8) >> 4 <= J + d, so neither step can overflow.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Records a sender report for this SSRC with NTP time `ntp` (64-bit) and RTP time
    /// `rtp_time`, received at `now`.
    pub fn on_sender_report(&mut self, now: Instant, ntp: u64, rtp_time: u32) {
        self.last_sr = Some((ntp, rtp_time, now));
    }

    /// The last sender report: its NTP time, RTP time and arrival instant (useful
    /// for lip sync).
    pub fn last_sender_report(&self) -> Option<(u64, u32, Instant)> {
        self.last_sr
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter16 >> 4).unwrap_or(u32::MAX)
    }

    /// Current statistics (does not reset the fraction-lost interval).
    pub fn stats(&self) -> ReceiveStats {
        let (expected, highest_seq) = match self.seqs {
            Some((lo, hi)) => ((hi - lo).saturating_add(1), hi),
            None => (0, 0),
        };
        ReceiveStats {
            packets: self.received,
            expected,
            lost: diff(expected, self.received),
            highest_seq,
            jitter: self.jitter(),
        }
    }

    /// The report block for the next SR/RR, or `None` before the first packet.
    ///
    /// Starts a new fraction-lost interval. LSR and DLSR are 0 until a sender report
    /// has been received; DLSR is measured from its arrival to `now` in 1/65536 s.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let (lo, hi) = self.seqs?;
        let expected = (hi - lo).saturating_add(1);
        let lost = diff(expected, self.received).clamp(MIN_CUMULATIVE_LOST, MAX_CUMULATIVE_LOST);
        let expected_interval = diff(expected, self.expected_prior);
        let received_interval = diff(self.received, self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient is at most 256;
            // 256 only when nothing arrived, which the clamp maps to 255.
            (i128::from(lost_interval) * 256 / i128::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((ntp, _, at)) => (
                super::ntp_middle(ntp),
                to_compact(now.saturating_duration_since(at)),
            ),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost as i32, // clamped to 24 bits above
            highest_seq: hi as u32,       // the low 32 bits are the wire field
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn jitter_follows_a8() {
        let t0 = Instant::now();
        let mut r = ReceiveRegister::new(7);
        // 90 kHz video, one packet per 20 ms (1800 ticks), perfectly regular.
        for i in 0..5u64 {
            r.update(t0 + ms(20 * i), i, 1800 * i as u32, 90_000);
        }
        assert_eq!(r.jitter(), 0);
        // Packet 5 arrives 10 ms late: D = 900 ticks.
        // J16 = 0 + 900 - ((0 + 8) >> 4) = 900  -> J = 56 (56.25 in float form).
        r.update(t0 + ms(110), 5, 9000, 90_000);
        assert_eq!(r.jitter(), 56);
        // Packet 6 on time again: D = |-900| = 900.
        // J16 = 900 + 900 - ((900 + 8) >> 4 = 56) = 1744 -> J = 109 (108.98 float).
        r.update(t0 + ms(120), 6, 10_800, 90_000);
        assert_eq!(r.jitter(), 109);
        // Packet 7 on time: D = 0. J16 = 1744 - ((1744 + 8) >> 4 = 109) = 1635 -> 102.
        r.update(t0 + ms(140), 7, 12_600, 90_000);
        assert_eq!(r.jitter(), 102);
    }

    #[test]
    fn jitter_handles_timestamp_wrap() {
        let t0 = Instant::now();
        let mut r = ReceiveRegister::new(7);
        // 48 kHz audio, 20 ms frames (960 ticks) across the 2^32 timestamp wrap.
        let start = u32::MAX - 1500;
        for i in 0..6u32 {
            r.update(
                t0 + ms(20 * u64::from(i)),
                u64::from(i),
                start.wrapping_add(960 * i),
                48_000,
            );
        }
        assert_eq!(r.jitter(), 0);
    }

    #[test]
    fn loss_fraction_and_cumulative() {
        let t0 = Instant::now();
        let mut r = ReceiveRegister::new(0x1234);
        assert_eq!(r.report_block(t0), None);
        // Interval 1: seqs 65530..=65539 (10 expected, extended across the wrap),
        // 65532 and 65535 missing: 8 received.
        for s in 65_530u64..65_540 {
            if s != 65_532 && s != 65_535 {
                r.update(t0, s, 0, 0);
            }
        }
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.ssrc, 0x1234);
        assert_eq!(b.cumulative_lost, 2);
        // fraction = (2 << 8) / 10 = 51.
        assert_eq!(b.fraction_lost, 51);
        assert_eq!(b.highest_seq, 65_539);
        assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0));
        // Interval 2: 65540..=65549 all received plus the late 65532 and a duplicate
        // of 65549: expected 10, received 12 -> no loss reported in the interval.
        for s in 65_540u64..65_550 {
            r.update(t0, s, 0, 0);
        }
        r.update(t0, 65_532, 0, 0);
        r.update(t0, 65_549, 0, 0);
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.fraction_lost, 0);
        // cumulative = 20 expected - 20 received = 0.
        assert_eq!(b.cumulative_lost, 0);
        // Interval 3: one more duplicate only: cumulative becomes -1.
        r.update(t0, 65_549, 0, 0);
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.cumulative_lost, -1);
        assert_eq!(b.fraction_lost, 0);
        // Interval 4: 65550..=65553 expected, only 65553 received: 3/4 lost -> 192.
        r.update(t0, 65_553, 0, 0);
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.fraction_lost, 192);
        assert_eq!(b.cumulative_lost, 2);
        let s = r.stats();
        assert_eq!((s.packets, s.expected, s.lost), (22, 24, 2));
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let t0 = Instant::now();
        let mut r = ReceiveRegister::new(1);
        r.update(t0, 0, 0, 0);
        r.update(t0, 20_000_000, 0, 0);
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.cumulative_lost, 0x7f_ffff);
        // 19_999_999 lost of 20_000_001 expected: (19_999_999 << 8) / 20_000_001 = 255.
        assert_eq!(b.fraction_lost, 255);
        assert_eq!(b.highest_seq, 20_000_000);
        let mut r = ReceiveRegister::new(1);
        r.received = 0x90_0001;
        r.seqs = Some((0, 0));
        assert_eq!(r.report_block(t0).unwrap().cumulative_lost, -0x80_0000);
    }

    #[test]
    fn lsr_and_dlsr() {
        let t0 = Instant::now();
        let mut r = ReceiveRegister::new(1);
        r.update(t0, 1, 0, 0);
        // NTP 0xAAAA_BBBB_CCCC_DDDD: middle 32 bits are 0xBBBB_CCCC.
        r.on_sender_report(t0, 0xAAAA_BBBB_CCCC_DDDD, 1234);
        // 1.5 s later: DLSR = 1.5 * 65536 = 98304.
        let b = r.report_block(t0 + ms(1500)).unwrap();
        assert_eq!(b.last_sr, 0xBBBB_CCCC);
        assert_eq!(b.delay_since_last_sr, 98_304);
        // 5 ms: 0.005 * 65536 = 327.68 -> 327.
        let b = r.report_block(t0 + ms(5)).unwrap();
        assert_eq!(b.delay_since_last_sr, 327);
        assert_eq!(
            r.last_sender_report(),
            Some((0xAAAA_BBBB_CCCC_DDDD, 1234, t0))
        );
    }
}
