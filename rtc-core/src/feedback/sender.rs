//! NTP time mapping and sender-side SR bookkeeping with RTT measurement
//! (RFC 3550 §6.4.1).

use super::{from_compact, to_compact};
use crate::rtcp::{ReportBlock, SenderInfo};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// The middle 32 bits of a 64-bit NTP timestamp (the "compact" form used for LSR).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32 // truncation to the middle bits is the point
}

/// A `Duration` as 64-bit NTP (32.32 fixed point), wrapping past 2^32 s.
fn duration_to_ntp(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

/// 64-bit NTP (32.32 fixed point) as a `Duration`.
fn ntp_to_duration(ntp: u64) -> Duration {
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    Duration::new(ntp >> 32, nanos as u32) // nanos < 10^9
}

/// Maps `Instant`s to 64-bit NTP wallclock time from one reference pair supplied by
/// the caller (the crate never reads the system clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpClock {
    /// The instant at which the wallclock read `base_ntp`.
    pub base_instant: Instant,
    /// The NTP time at `base_instant`.
    pub base_ntp: u64,
}

impl NtpClock {
    /// A clock where `base_instant` corresponds to NTP time `base_ntp`.
    pub fn new(base_instant: Instant, base_ntp: u64) -> Self {
        NtpClock {
            base_instant,
            base_ntp,
        }
    }

    /// A clock from a wallclock reading `wallclock` taken at `base_instant` (the
    /// caller reads both clocks; times before 1970 map to the Unix epoch).
    pub fn from_system_time(base_instant: Instant, wallclock: SystemTime) -> Self {
        Self::new(base_instant, system_time_to_ntp(wallclock))
    }

    /// The NTP time at `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        if now >= self.base_instant {
            self.base_ntp
                .wrapping_add(duration_to_ntp(now - self.base_instant))
        } else {
            self.base_ntp
                .wrapping_sub(duration_to_ntp(self.base_instant - now))
        }
    }

    /// The instant at NTP time `ntp`, if representable. `ntp` is taken to be within
    /// 2^31 s of `base_ntp`.
    pub fn instant(&self, ntp: u64) -> Option<Instant> {
        let diff = ntp.wrapping_sub(self.base_ntp);
        if diff >> 63 == 0 {
            self.base_instant.checked_add(ntp_to_duration(diff))
        } else {
            self.base_instant
                .checked_sub(ntp_to_duration(diff.wrapping_neg()))
        }
    }
}

/// A wallclock time as 64-bit NTP (times before 1970 map to the Unix epoch).
pub fn system_time_to_ntp(t: SystemTime) -> u64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    duration_to_ntp(since).wrapping_add(NTP_UNIX_OFFSET_SECS << 32)
}

/// How many recent sender reports are remembered for matching LSR values.
const SR_HISTORY: usize = 16;

/// Sender-side bookkeeping for one outgoing SSRC: packet/octet counts for sender
/// reports and round-trip time from the report blocks that answer them.
///
/// RTT follows RFC 3550 §6.4.1: `RTT = A − LSR − DLSR` in compact NTP units, where
/// `A` is the NTP time the block arrived. The register remembers the last 16 SRs it
/// sent (`on_sr_sent`) and only accepts blocks whose LSR matches one of them, so `A`
/// is computed as that SR's NTP time plus the `Instant` time elapsed since it was
/// sent — the same as mapping the arrival through the [`NtpClock`] that produced
/// the SR's NTP time, but robust to any wallclock steps.
#[derive(Debug, Clone)]
pub struct SenderRegister {
    ssrc: u32,
    packets: u32,
    octets: u32,
    /// Last sent RTP timestamp and when.
    last_rtp: Option<(u32, Instant)>,
    /// Ring of (LSR value, send instant) of recent SRs.
    srs: [Option<(u32, Instant)>; SR_HISTORY],
    next_sr: usize,
    rtt: Option<Duration>,
    srtt: Option<Duration>,
}

impl SenderRegister {
    /// A register for our outgoing `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        SenderRegister {
            ssrc,
            packets: 0,
            octets: 0,
            last_rtp: None,
            srs: [None; SR_HISTORY],
            next_sr: 0,
            rtt: None,
            srtt: None,
        }
    }

    /// The SSRC this register is for.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Records an RTP packet sent at `now` with timestamp `rtp_time` and
    /// `payload_len` payload octets (excluding header and padding, as the SR octet
    /// count requires). Counters wrap like the wire fields.
    pub fn on_packet_sent(&mut self, now: Instant, rtp_time: u32, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32); // wraps by design
        self.last_rtp = Some((rtp_time, now));
    }

    /// The sender info for an SR sent at `now` with wallclock `ntp`. The RTP time is
    /// extrapolated from the last sent packet using `clock_rate` (0 when nothing was
    /// sent yet).
    pub fn sender_info(&self, now: Instant, ntp: u64, clock_rate: u32) -> SenderInfo {
        let rtp_time = match self.last_rtp {
            Some((ts, at)) => {
                let us = now.saturating_duration_since(at).as_micros();
                let ticks = us.saturating_mul(u128::from(clock_rate)) / 1_000_000;
                ts.wrapping_add(ticks as u32) // modulo 2^32 like the timestamp
            }
            None => 0,
        };
        SenderInfo {
            ntp_time: ntp,
            rtp_time,
            packet_count: self.packets,
            octet_count: self.octets,
        }
    }

    /// Records that an SR with NTP time `ntp` was sent at `now`.
    pub fn on_sr_sent(&mut self, now: Instant, ntp: u64) {
        if let Some(slot) = self.srs.get_mut(self.next_sr) {
            *slot = Some((ntp_middle(ntp), now));
        }
        self.next_sr = (self.next_sr + 1) % SR_HISTORY;
    }

    /// Processes a report block about our SSRC received at `now`; returns the RTT it
    /// yields. `None` when the block is for another SSRC, has no LSR, does not match
    /// an SR we sent, or gives a negative RTT.
    pub fn on_report_block(&mut self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.ssrc != self.ssrc || block.last_sr == 0 {
            return None;
        }
        let &(lsr, sent) = self
            .srs
            .iter()
            .flatten()
            .find(|(lsr, _)| *lsr == block.last_sr)?;
        // A (arrival in compact NTP) = LSR + elapsed since that SR was sent.
        let arrival = lsr.wrapping_add(to_compact(now.saturating_duration_since(sent)));
        let rtt = arrival
            .wrapping_sub(block.last_sr)
            .wrapping_sub(block.delay_since_last_sr);
        if rtt >> 31 != 0 {
            return None; // negative: DLSR larger than the elapsed time
        }
        let rtt = from_compact(rtt);
        self.rtt = Some(rtt);
        // Smoothed like TCP's SRTT: srtt += (rtt - srtt) / 8.
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        Some(rtt)
    }

    /// The last RTT measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The smoothed RTT (exponential average with gain 1/8).
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Packets sent (wrapping 32-bit, as in the SR).
    pub fn packets_sent(&self) -> u32 {
        self.packets
    }

    /// Payload octets sent (wrapping 32-bit, as in the SR).
    pub fn octets_sent(&self) -> u32 {
        self.octets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversions() {
        // Unix epoch is NTP second 2208988800 = 0x83AA7E80.
        assert_eq!(system_time_to_ntp(UNIX_EPOCH), 0x83AA_7E80_0000_0000);
        // 1.5 s after: fraction 0x8000_0000.
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(system_time_to_ntp(t), 0x83AA_7E81_8000_0000);
        assert_eq!(ntp_middle(0x83AA_7E81_8000_0000), 0x7E81_8000);
        let t0 = Instant::now();
        let c = NtpClock::from_system_time(t0, t);
        // 250 ms later: fraction 0.75 = 0xC000_0000.
        assert_eq!(
            c.ntp(t0 + Duration::from_millis(250)),
            0x83AA_7E81_C000_0000
        );
        let c = NtpClock::new(t0 + Duration::from_secs(10), 0x0000_0010_0000_0000);
        // 2.25 s before the base: 16 s - 2.25 s = 13.75 s = 0xD.C000_0000.
        assert_eq!(
            c.ntp(t0 + Duration::from_millis(7750)),
            0x0000_000D_C000_0000
        );
        assert_eq!(
            c.instant(0x0000_000D_C000_0000),
            Some(t0 + Duration::from_millis(7750))
        );
        assert_eq!(
            c.instant(0x0000_0011_4000_0000),
            Some(t0 + Duration::from_millis(11_250))
        );
    }

    #[test]
    fn rtt_from_report_block() {
        let t0 = Instant::now();
        let mut s = SenderRegister::new(0xabc);
        let clock = NtpClock::new(t0, 0x0001_0000_0000_0000);
        // SR sent at t0 + 1 s: NTP 0x0001_0001.0000_0000, middle bits 0x0001_0000.
        let sent = t0 + Duration::from_secs(1);
        s.on_sr_sent(sent, clock.ntp(sent));
        let lsr = ntp_middle(clock.ntp(sent));
        assert_eq!(lsr, 0x0001_0000);
        // The peer holds it for 200 ms (DLSR = 0.2 * 65536 = 13107.2 -> 13107) and
        // the block arrives 350 ms after the SR was sent: RTT = 150 ms, minus the
        // 0.2 * 65536 rounding (0.2 units = 3 µs).
        let block = ReportBlock {
            ssrc: 0xabc,
            last_sr: lsr,
            delay_since_last_sr: 13_107,
            ..ReportBlock::default()
        };
        let now = sent + Duration::from_millis(350);
        // A = LSR + 0.35 * 65536 = LSR + 22937 (22937.6 floored).
        // RTT = 22937 - 13107 = 9830 units = 9830 / 65536 s = 149.993 ms.
        let rtt = s.on_report_block(now, &block).unwrap();
        assert_eq!(rtt, from_compact(9830));
        assert_eq!(rtt.as_micros(), 149_993);
        assert_eq!(s.rtt(), Some(rtt));
        assert_eq!(s.smoothed_rtt(), Some(rtt));
        // Unknown LSR, other SSRC, no LSR, negative RTT: ignored.
        let mut b = block;
        b.last_sr = 0x1234;
        assert_eq!(s.on_report_block(now, &b), None);
        let mut b = block;
        b.ssrc = 1;
        assert_eq!(s.on_report_block(now, &b), None);
        let mut b = block;
        b.last_sr = 0;
        assert_eq!(s.on_report_block(now, &b), None);
        let mut b = block;
        b.delay_since_last_sr = 30_000;
        assert_eq!(s.on_report_block(now, &b), None);
        // A second measurement of 300 ms smooths: (7 * 149.993 + 300) / 8 ms.
        let mut b = block;
        b.delay_since_last_sr = 0;
        let now = sent + Duration::from_millis(300);
        // 0.3 * 65536 = 19660.8 -> 19660 units.
        let r2 = s.on_report_block(now, &b).unwrap();
        assert_eq!(r2, from_compact(19_660));
        assert_eq!(s.smoothed_rtt(), Some((rtt * 7 + r2) / 8));
    }

    #[test]
    fn sender_info_counts_and_extrapolates() {
        let t0 = Instant::now();
        let mut s = SenderRegister::new(1);
        assert_eq!(s.sender_info(t0, 5, 90_000).rtp_time, 0);
        s.on_packet_sent(t0, 1000, 100);
        s.on_packet_sent(t0, 1000, 50);
        // 100 ms later at 90 kHz: 9000 ticks.
        let info = s.sender_info(t0 + Duration::from_millis(100), 77, 90_000);
        assert_eq!(info.rtp_time, 10_000);
        assert_eq!(info.packet_count, 2);
        assert_eq!(info.octet_count, 150);
        assert_eq!(info.ntp_time, 77);
        // Only the last 16 SRs are remembered.
        for i in 0..17u64 {
            s.on_sr_sent(t0, (i + 1) << 16);
        }
        let b = |lsr| ReportBlock {
            ssrc: 1,
            last_sr: lsr,
            ..ReportBlock::default()
        };
        assert_eq!(s.on_report_block(t0, &b(1)), None);
        assert_eq!(s.on_report_block(t0, &b(2)), Some(Duration::ZERO));
    }
}
