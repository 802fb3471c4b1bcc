//! Transport-wide congestion control bookkeeping
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): sequence numbering and
//! feedback matching on the send side, feedback generation on the receive side.

use super::since_us;
use crate::rtcp::{TWCC_REFERENCE_UNIT_US, TransportFeedback, TwccBuilder, TwccIter};
use std::time::{Duration, Instant};

/// One remembered packet: its send time in µs since the register's epoch (low 32
/// bits; the full value is rebuilt from the newest send time when feedback is
/// matched), its size ([`NEVER`]: slot never written) and the probe cluster it was
/// sent in (0: none).
#[derive(Debug, Clone, Copy)]
struct Sent {
    at_us: u32,
    size: u16,
    cluster: u16,
}

/// The size of a slot never written (real sizes saturate one below; a UDP payload
/// is smaller).
const NEVER: u16 = u16::MAX;

/// One packet of a transport-wide feedback matched with what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccResult {
    /// Extended transport-wide sequence number.
    pub seq: u64,
    /// When the packet was sent (as given to [`TwccSendRegister::next_seq`]).
    pub send_time: Instant,
    /// Packet size given to [`TwccSendRegister::next_seq`].
    pub size: u32,
    /// The probe cluster the packet was sent in
    /// ([`TwccSendRegister::next_seq_in_probe`]), 0 when none.
    pub probe_cluster: u16,
    /// Arrival time at the receiver in microseconds on the receiver's clock (the
    /// unwrapped reference time plus the accumulated receive deltas), or `None` if
    /// reported as not received. Only differences between these values are
    /// meaningful.
    pub recv_us: Option<i64>,
}

/// Send side of transport-wide congestion control: assigns transport-wide sequence
/// numbers, remembers send time and size of each packet in a ring, and matches
/// incoming feedback against them.
///
/// The ring holds the last `capacity` packets (default [`TwccSendRegister::DEFAULT_CAPACITY`]);
/// feedback about older packets is ignored. It is allocated on the first
/// [`next_seq`](Self::next_seq): a peer that never sends transport-wide sequence
/// numbers holds none. A slot is 8 bytes: the send time as 32 bits of µs (rebuilt
/// against the newest send time, so it is exact for packets sent within 71 minutes of
/// the newest) and the size; its sequence number is implied by its position in the
/// window below the next number.
#[derive(Debug, Clone)]
pub struct TwccSendRegister {
    capacity: usize,
    /// Empty until the first packet.
    slots: Box<[Sent]>,
    next: u64,
    /// Instant the send times count from (the first packet's).
    epoch: Option<Instant>,
    /// Newest send time, µs since `epoch`.
    last_us: u64,
    /// Last reference time (24-bit raw) and its unwrapped value, in 64 ms ticks.
    reference: Option<(u32, i64)>,
}

impl Default for TwccSendRegister {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl TwccSendRegister {
    /// Packets remembered by default: 2 s at 1,000 packets/s, well past the feedback
    /// interval (≈ 100 ms) and a round trip.
    pub const DEFAULT_CAPACITY: usize = 2048;

    /// A register remembering the last `capacity` packets (at least 1). Allocates
    /// nothing until the first [`next_seq`](Self::next_seq).
    pub fn new(capacity: usize) -> Self {
        TwccSendRegister {
            capacity: capacity.max(1),
            slots: Box::default(),
            next: 0,
            epoch: None,
            last_us: 0,
            reference: None,
        }
    }

    fn index(&self, seq: u64) -> usize {
        (seq % self.capacity as u64) as usize // below capacity
    }

    /// Raises the capacity to `capacity` packets (never lowers it): for a peer that
    /// starts sending a faster stream (video) after its register was sized for a slow
    /// one. The packets held stay matchable; a ring already allocated is replaced by
    /// one of the new size.
    pub fn grow_capacity(&mut self, capacity: usize) {
        if capacity <= self.capacity {
            return;
        }
        if !self.slots.is_empty() {
            let mut slots = vec![
                Sent {
                    at_us: 0,
                    size: NEVER,
                    cluster: 0,
                };
                capacity
            ]
            .into_boxed_slice();
            let old = self.capacity as u64;
            for seq in self.next.saturating_sub(old)..self.next {
                let from = (seq % old) as usize; // below the old capacity
                let to = (seq % capacity as u64) as usize; // below the new one
                if let (Some(f), Some(t)) = (self.slots.get(from), slots.get_mut(to)) {
                    *t = *f;
                }
            }
            self.slots = slots;
        }
        self.capacity = capacity;
    }

    /// The most packets remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Assigns the next transport-wide sequence number to a packet of `size` bytes
    /// sent at `now` and returns it (the 16-bit value to put in the extension).
    pub fn next_seq(&mut self, now: Instant, size: usize) -> u16 {
        self.next_seq_in_probe(now, size, 0)
    }

    /// [`next_seq`](Self::next_seq) for a packet sent while probe `cluster` runs
    /// (0: none); the cluster comes back with the packet's feedback
    /// ([`TwccResult::probe_cluster`]) so the estimator can measure the probe as a
    /// whole, whatever its packets' spacing.
    pub fn next_seq_in_probe(&mut self, now: Instant, size: usize, cluster: u16) -> u16 {
        if self.slots.is_empty() {
            self.slots = vec![
                Sent {
                    at_us: 0,
                    size: NEVER,
                    cluster: 0,
                };
                self.capacity
            ]
            .into_boxed_slice();
        }
        let epoch = *self.epoch.get_or_insert(now);
        let at = since_us(epoch, now);
        self.last_us = self.last_us.max(at);
        let seq = self.next;
        self.next += 1;
        let i = self.index(seq);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Sent {
                at_us: at as u32, // low 32 bits, see `send_time`
                size: u16::try_from(size).unwrap_or(NEVER).min(NEVER - 1),
                cluster,
            };
        }
        seq as u16 // the wire carries the low 16 bits
    }

    /// Takes back the sequence number the last [`next_seq_in_probe`](Self::next_seq_in_probe)
    /// gave, for a packet that will not be sent after all (e.g. SRTP refused to
    /// protect it): the next packet gets the number instead, so the peer's feedback
    /// does not report a packet that never left as lost. Returns whether `seq` was
    /// the last one given (otherwise nothing changes).
    pub fn retract(&mut self, seq: u16) -> bool {
        let Some(last) = self.next.checked_sub(1) else {
            return false;
        };
        if last as u16 != seq {
            return false;
        }
        let i = self.index(last);
        if let Some(slot) = self.slots.get_mut(i) {
            slot.size = NEVER;
            slot.cluster = 0;
        }
        self.next = last;
        true
    }

    /// Bytes held by the ring (0 until the first packet).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// The extended sequence number the next packet will get.
    pub fn peek_next(&self) -> u64 {
        self.next
    }

    /// Matches feedback `fb` against the sent packets, yielding one [`TwccResult`]
    /// per reported packet that is still remembered, in sequence order.
    ///
    /// The 16-bit base sequence number is extended to the latest matching number
    /// not above the highest one sent, so feedback across the 16-bit wrap works;
    /// reported numbers above the highest sent are skipped. The 24-bit reference
    /// time is unwrapped across feedbacks.
    pub fn apply_feedback<'s, 'a>(&'s mut self, fb: &TransportFeedback<'a>) -> TwccResults<'s, 'a> {
        let raw = (fb.reference_time as u32) & 0xff_ffff; // 24-bit field
        let ticks = match self.reference {
            None => i64::from(raw),
            Some((last_raw, last)) => {
                // Signed 24-bit distance from the previous reference time.
                let d = ((raw.wrapping_sub(last_raw) << 8) as i32 >> 8) as i64;
                last.saturating_add(d)
            }
        };
        self.reference = Some((raw, ticks));
        let base = self.next.checked_sub(1).and_then(|hi| {
            let back = u64::from((hi as u16).wrapping_sub(fb.base_seq));
            hi.checked_sub(back)
        });
        TwccResults {
            slots: &self.slots,
            epoch: self.epoch,
            last_us: self.last_us,
            iter: fb.iter(),
            next_seq: base,
            highest: self.next.checked_sub(1),
            time_us: ticks.saturating_mul(TWCC_REFERENCE_UNIT_US),
        }
    }
}

/// Iterator over the matched packets of one feedback; see
/// [`TwccSendRegister::apply_feedback`].
#[derive(Debug, Clone)]
pub struct TwccResults<'s, 'a> {
    slots: &'s [Sent],
    epoch: Option<Instant>,
    last_us: u64,
    iter: TwccIter<'a>,
    next_seq: Option<u64>,
    highest: Option<u64>,
    time_us: i64,
}

impl Iterator for TwccResults<'_, '_> {
    type Item = TwccResult;

    fn next(&mut self) -> Option<TwccResult> {
        loop {
            let seq = self.next_seq?;
            let (_, status) = self.iter.next()?;
            self.next_seq = Some(seq + 1);
            let recv_us = status.delta_us().map(|d| {
                self.time_us = self.time_us.saturating_add(d);
                self.time_us
            });
            let cap = self.slots.len() as u64;
            // Only the `cap` numbers below the next one are still in their slots.
            if self.highest.is_none_or(|h| seq > h || h - seq >= cap) {
                continue;
            }
            let slot = self.slots.get((seq % cap) as usize)?;
            if let (true, Some(epoch)) = (slot.size != NEVER, self.epoch) {
                // The newest send time minus the 32-bit distance back to this one.
                let back = u64::from((self.last_us as u32).wrapping_sub(slot.at_us));
                let send_time = epoch + Duration::from_micros(self.last_us.saturating_sub(back));
                return Some(TwccResult {
                    seq,
                    send_time,
                    size: u32::from(slot.size),
                    probe_cluster: slot.cluster,
                    recv_us,
                });
            }
        }
    }
}

/// Receive side of transport-wide congestion control: records arrivals and
/// produces feedback packets through [`TwccBuilder`].
///
/// Arrival times are measured from a fixed base (the first packet's arrival), so
/// reference times (64 ms units) and receive deltas (250 µs units) of consecutive
/// feedbacks share one time line. Feedback is due `interval` (default 100 ms) after
/// the previous one, or as soon as `max_pending` (default 100) arrivals wait.
#[derive(Debug, Clone)]
pub struct TwccRecvRegister {
    builder: TwccBuilder,
    epoch: Option<Instant>,
    interval: Duration,
    max_pending: usize,
    last_feedback: Option<Instant>,
    flushing: bool,
    feedbacks: u64,
}

impl TwccRecvRegister {
    /// A register writing feedback from `sender_ssrc` about `media_ssrc`.
    pub fn new(sender_ssrc: u32, media_ssrc: u32) -> Self {
        TwccRecvRegister {
            builder: TwccBuilder::new(sender_ssrc, media_ssrc),
            epoch: None,
            interval: Duration::from_millis(100),
            max_pending: 100,
            last_feedback: None,
            flushing: false,
            feedbacks: 0,
        }
    }

    /// Sets the regular feedback interval.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Sets how many pending arrivals make feedback due before the interval ends.
    pub fn set_max_pending(&mut self, max_pending: usize) {
        self.max_pending = max_pending.max(1);
    }

    /// Records the arrival of transport-wide sequence number `seq` at `now`.
    pub fn on_packet(&mut self, now: Instant, seq: u16) {
        let epoch = *self.epoch.get_or_insert(now);
        self.last_feedback.get_or_insert(now);
        self.builder.record(seq, since_us(epoch, now));
    }

    /// Arrivals not yet reported.
    pub fn pending(&self) -> usize {
        self.builder.pending()
    }

    /// Feedback packets written so far.
    pub fn feedbacks_sent(&self) -> u64 {
        self.feedbacks
    }

    fn due(&self, now: Instant) -> bool {
        self.flushing
            || self.builder.pending() >= self.max_pending
            || self
                .last_feedback
                .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    /// Writes one feedback packet into `out` if feedback is due at `now`, returning
    /// its length. Call repeatedly until `None`: when the pending arrivals do not
    /// fit one packet the rest follow immediately. `None` also when `out` cannot
    /// hold even a minimal packet.
    pub fn poll_feedback(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if self.builder.pending() == 0 || !self.due(now) {
            self.flushing = false;
            return None;
        }
        match self.builder.write(out) {
            Ok(Some(n)) => {
                self.flushing = self.builder.pending() > 0;
                self.last_feedback = Some(now);
                self.feedbacks += 1;
                Some(n)
            }
            // Nothing written, or `out` too small for even one packet.
            Ok(None) | Err(_) => {
                self.flushing = false;
                None
            }
        }
    }

    /// When the next feedback is due (`None` while nothing is pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.builder.pending() == 0 {
            return None;
        }
        let last = self.last_feedback?;
        if self.flushing || self.builder.pending() >= self.max_pending {
            Some(last)
        } else {
            last.checked_add(self.interval)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{RtcpPacket, TwccStatus};

    #[test]
    fn a_retracted_number_goes_to_the_next_packet() {
        let t0 = Instant::now();
        let mut r = TwccSendRegister::new(64);
        assert_eq!(r.next_seq(t0, 100), 0);
        let s1 = r.next_seq(t0, 100);
        assert!(
            !r.retract(0),
            "only the last number given can be taken back"
        );
        assert!(r.retract(s1));
        assert!(!r.retract(s1), "taken back once");
        assert_eq!(r.next_seq(t0, 100), s1);
        assert_eq!(r.peek_next(), 2);
        let mut empty = TwccSendRegister::new(64);
        assert!(!empty.retract(0));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn parse(p: &[u8]) -> TransportFeedback<'_> {
        match RtcpPacket::iter(p).next() {
            Some(Ok(RtcpPacket::TransportFeedback(t))) => t,
            other => panic!("not twcc: {other:?}"),
        }
    }

    #[test]
    fn send_register_allocates_on_first_packet() {
        let t0 = Instant::now();
        let mut r = TwccSendRegister::default();
        assert_eq!(r.heap_bytes(), 0);
        r.next_seq(t0, 100);
        assert_eq!(r.heap_bytes(), TwccSendRegister::DEFAULT_CAPACITY * 8);
    }

    #[test]
    fn growing_the_send_register_keeps_the_packets_held() {
        let t0 = Instant::now();
        let mut send = TwccSendRegister::new(8);
        let mut recv = TwccRecvRegister::new(1, 2);
        for i in 0..12u64 {
            let seq = send.next_seq(t0 + ms(i), 100 + i as usize);
            if i >= 4 {
                recv.on_packet(t0 + ms(i + 20), seq);
            }
        }
        send.grow_capacity(32);
        assert_eq!(send.capacity(), 32);
        assert_eq!(send.heap_bytes(), 32 * 8);
        send.grow_capacity(16); // never lowers
        assert_eq!(send.capacity(), 32);
        let mut buf = [0u8; 1500];
        let n = recv.poll_feedback(t0 + ms(200), &mut buf).unwrap();
        let got: Vec<(u64, u32)> = send
            .apply_feedback(&parse(&buf[..n]))
            .map(|r| (r.seq, r.size))
            .collect();
        // The 8 newest (4..12) were held and still are.
        assert_eq!(
            got,
            (4..12).map(|i| (i, 100 + i as u32)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn send_times_survive_the_32_bit_microsecond_wrap() {
        let t0 = Instant::now();
        let mut send = TwccSendRegister::new(16);
        let mut recv = TwccRecvRegister::new(1, 2);
        // Two hours in: past 2^32 µs (71.6 min) since the register's epoch.
        let late = t0 + Duration::from_secs(7200);
        send.next_seq(t0, 10);
        let a = send.next_seq(late, 20);
        let b = send.next_seq(late + ms(3), 30);
        recv.on_packet(late + ms(20), a);
        recv.on_packet(late + ms(25), b);
        let mut buf = [0u8; 1500];
        let n = recv.poll_feedback(late + ms(200), &mut buf).unwrap();
        let got: Vec<(u64, Instant, u32)> = send
            .apply_feedback(&parse(&buf[..n]))
            .map(|r| (r.seq, r.send_time, r.size))
            .collect();
        assert_eq!(got, vec![(1, late, 20), (2, late + ms(3), 30)]);
    }

    #[test]
    fn recv_feedback_timing_and_values() {
        let t0 = Instant::now();
        let mut r = TwccRecvRegister::new(0x11, 0x22);
        let mut buf = [0u8; 1500];
        assert_eq!(r.poll_feedback(t0, &mut buf), None);
        // Arrivals relative to the first one (the fixed base):
        // 10 @ 0 ms, 11 @ 5 ms, 12 lost, 13 @ 70 ms.
        r.on_packet(t0, 10);
        r.on_packet(t0 + ms(5), 11);
        r.on_packet(t0 + ms(70), 13);
        assert_eq!(r.poll_timeout(), Some(t0 + ms(100)));
        assert_eq!(r.poll_feedback(t0 + ms(99), &mut buf), None);
        let n = r.poll_feedback(t0 + ms(100), &mut buf).unwrap();
        let fb = parse(&buf[..n]);
        assert_eq!((fb.sender_ssrc, fb.media_ssrc), (0x11, 0x22));
        assert_eq!((fb.base_seq, fb.status_count, fb.fb_count), (10, 4, 0));
        // Reference time floor(0 / 64 ms) = 0; deltas in 250 µs ticks:
        // 0, 5 ms = 20, lost, 65 ms = 260 (does not fit a byte: large).
        assert_eq!(fb.reference_time, 0);
        let st: Vec<_> = fb.iter().collect();
        assert_eq!(
            st,
            vec![
                (10, TwccStatus::Small(0)),
                (11, TwccStatus::Small(20)),
                (12, TwccStatus::NotReceived),
                (13, TwccStatus::Large(260)),
            ]
        );
        assert_eq!(r.poll_feedback(t0 + ms(100), &mut buf), None);
        // 14 @ 130.5 ms, 15 @ 200 ms: reference floor(130.5 / 64) = 2 (128 ms);
        // deltas 2.5 ms = 10 ticks and 69.5 ms = 278 ticks.
        r.on_packet(t0 + Duration::from_micros(130_500), 14);
        r.on_packet(t0 + ms(200), 15);
        assert_eq!(r.poll_feedback(t0 + ms(199), &mut buf), None);
        let n = r.poll_feedback(t0 + ms(200), &mut buf).unwrap();
        let fb = parse(&buf[..n]);
        assert_eq!((fb.base_seq, fb.status_count, fb.fb_count), (14, 2, 1));
        assert_eq!(fb.reference_time, 2);
        assert_eq!(fb.reference_time_us(), 128_000);
        let st: Vec<_> = fb.iter().map(|x| x.1).collect();
        assert_eq!(st, vec![TwccStatus::Small(10), TwccStatus::Large(278)]);
        assert_eq!(r.feedbacks_sent(), 2);
    }

    #[test]
    fn recv_feedback_early_when_many_pending_and_flushes() {
        let t0 = Instant::now();
        let mut r = TwccRecvRegister::new(1, 2);
        r.set_max_pending(50);
        for i in 0..49u16 {
            r.on_packet(t0 + ms(u64::from(i)), i);
        }
        let mut buf = [0u8; 1500];
        assert_eq!(r.poll_feedback(t0 + ms(49), &mut buf), None);
        r.on_packet(t0 + ms(49), 49);
        assert_eq!(r.poll_timeout(), Some(t0));
        // A small buffer splits the 50 reports over several packets, all at once.
        let mut small = [0u8; 40];
        let mut packets = 0;
        let mut seqs = 0;
        while let Some(n) = r.poll_feedback(t0 + ms(50), &mut small) {
            seqs += usize::from(parse(&small[..n]).status_count);
            packets += 1;
        }
        assert!(packets > 1);
        assert_eq!(seqs, 50);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn send_register_matches_feedback_across_wrap() {
        let t0 = Instant::now();
        let mut s = TwccSendRegister::new(1024);
        // Send 65_540 packets so the wire numbers wrap; sizes encode the number.
        let mut last = 0;
        for i in 0..65_540u64 {
            last = s.next_seq(t0 + Duration::from_micros(i), (i % 1000) as usize);
        }
        assert_eq!(last, 3); // 65539 mod 65536
        assert_eq!(s.peek_next(), 65_540);
        // Receiver reports 65534..=65539 (wire 65534, 65535, 0, 1, 2, 3).
        let mut r = TwccRecvRegister::new(1, 2);
        let base = t0 + ms(1000);
        r.on_packet(base, 65_534);
        r.on_packet(base + ms(1), 65_535);
        // 0 lost
        r.on_packet(base + ms(3), 1);
        r.on_packet(base + ms(2), 2); // reordered: earlier arrival
        r.on_packet(base + ms(4), 3);
        let mut buf = [0u8; 200];
        let n = r.poll_feedback(base + ms(100), &mut buf).unwrap();
        let fb = parse(&buf[..n]);
        let res: Vec<TwccResult> = s.apply_feedback(&fb).collect();
        let seqs: Vec<u64> = res.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![65_534, 65_535, 65_536, 65_537, 65_538, 65_539]);
        assert_eq!(res[0].size, 534);
        assert_eq!(res[0].send_time, t0 + Duration::from_micros(65_534));
        assert_eq!(res[2].recv_us, None);
        // Receive times relative to the first: 0, 1, -, 3, 2, 4 ms.
        let first = res[0].recv_us.unwrap();
        let rel: Vec<Option<i64>> = res.iter().map(|r| r.recv_us.map(|t| t - first)).collect();
        assert_eq!(
            rel,
            vec![
                Some(0),
                Some(1000),
                None,
                Some(3000),
                Some(2000),
                Some(4000)
            ]
        );
        // Feedback about numbers never sent (above the highest) or evicted: skipped.
        let mut r = TwccRecvRegister::new(1, 2);
        r.on_packet(base, 3);
        r.on_packet(base + ms(1), 4); // 65_540 was never sent
        let n = r.poll_feedback(base + ms(100), &mut buf).unwrap();
        let res: Vec<TwccResult> = s.apply_feedback(&parse(&buf[..n])).collect();
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].seq, 65_539);
        let mut r = TwccRecvRegister::new(1, 2);
        r.on_packet(base, 100); // extends to 100 (not 65_636 > highest): evicted
        let n = r.poll_feedback(base + ms(100), &mut buf).unwrap();
        assert_eq!(s.apply_feedback(&parse(&buf[..n])).count(), 0);
    }

    #[test]
    fn reference_time_unwraps() {
        let t0 = Instant::now();
        let mut s = TwccSendRegister::new(16);
        s.next_seq(t0, 100);
        s.next_seq(t0, 100);
        // Hand-built feedback: reference 0x7f_ffff (max positive 24-bit) then
        // -0x80_0000 (next tick after the wrap), one small delta each.
        let mk = |seq: u16, reference: u32| {
            let mut p = vec![0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&1u16.to_be_bytes());
            p.extend_from_slice(&((reference << 8) | 1).to_be_bytes());
            p.extend_from_slice(&[0x20, 0x01, 4, 0]); // run of 1 small, delta 1 ms
            p
        };
        let p1 = mk(0, 0x7f_ffff);
        let r1: Vec<_> = s.apply_feedback(&parse(&p1)).collect();
        let p2 = mk(1, 0x80_0000);
        let r2: Vec<_> = s.apply_feedback(&parse(&p2)).collect();
        let (a, b) = (r1[0].recv_us.unwrap(), r2[0].recv_us.unwrap());
        // One reference tick (64 ms) apart, same 1 ms delta.
        assert_eq!(b - a, 64_000);
        assert_eq!(a, 0x7f_ffff * 64_000 + 1000);
    }
}
