//! Receiver-side loss detection and NACK scheduling (RFC 4585 §6.2.1 generic NACK).

use super::{MIN_NACK_REPEAT, micros, since_us};
use crate::rtcp::{Nack, NackPair, RtcpError};
use std::time::{Duration, Instant};

/// Number of sequence numbers tracked (a power of two).
const RING: usize = 1024;
const MASK: u64 = RING as u64 - 1;
/// Most NACK entries [`NackRegister::write_nack`] puts into one packet.
const MAX_PAIRS_PER_PACKET: usize = 64;

/// Tuning for a [`NackRegister`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackConfig {
    /// How often one sequence number is NACKed at most.
    pub max_nacks: u8,
    /// Minimum spacing between NACKs of the same sequence number (an RTT estimate).
    /// Repeats are spaced by at least [`MIN_NACK_REPEAT`] whatever this says, so
    /// that a sender's de-duplication does not drop them on a short round trip.
    pub rtt: Duration,
    /// A missing packet is forgotten this long after its loss was detected.
    pub max_age: Duration,
    /// A missing packet is forgotten when it is more than this many sequence numbers
    /// behind the highest received one (capped at 1023, the tracking window).
    pub max_behind: u64,
    /// How long a gap may be reordering rather than loss: it is first NACKed this long
    /// after it was detected (unless the packet arrives meanwhile). Jitter reorders
    /// packets by up to its own size; without this wait every reordered packet would
    /// be NACKed and retransmitted. `Duration::ZERO` NACKs at the next poll.
    pub max_reorder: Duration,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            max_nacks: 5,
            rtt: Duration::from_millis(100),
            max_age: Duration::from_secs(1),
            max_behind: 1000,
            max_reorder: Duration::from_millis(50),
        }
    }
}

/// Counters of a [`NackRegister`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// Sequence numbers put into NACKs (a number NACKed twice counts twice).
    pub nacks_sent: u64,
    /// Packets that arrived after having been NACKed at least once.
    pub recovered: u64,
    /// Missing packets forgotten (too old, too far behind or NACKed too often).
    pub given_up: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Received,
    Missing,
    GivenUp,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    state: State,
    nacks: u8,
    /// When the loss was detected, µs since the register's epoch.
    since_us: u64,
    /// When it was last NACKed, µs since the epoch.
    last_nack_us: u64,
}

const EMPTY: Slot = Slot {
    seq: 0,
    state: State::Empty,
    nacks: 0,
    since_us: 0,
    last_nack_us: 0,
};

/// Tracks received extended sequence numbers of one SSRC and schedules NACKs for
/// the missing ones.
///
/// A fixed ring of 1024 slots covers the sequence numbers just below the highest
/// received one. It is allocated at the first gap: until then every number up to the
/// highest arrived in order, which an empty ring says as well (a slot not holding a
/// number means "not missing"), so a loss-free stream holds no ring. A gap is NACKed at
/// the first poll `max_reorder` after it was detected (earlier it may be reordering),
/// then again at most every `rtt` (but no sooner than [`MIN_NACK_REPEAT`]), at most
/// `max_nacks` times, and forgotten
/// after `max_age` or when it falls `max_behind` numbers behind.
#[derive(Debug, Clone)]
pub struct NackRegister {
    config: NackConfig,
    slots: Box<[Slot]>,
    epoch: Option<Instant>,
    highest: Option<u64>,
    /// No sequence number below this is still missing.
    low: u64,
    stats: NackStats,
    /// The peer did not negotiate NACK for this stream: gaps are not recorded.
    off: bool,
}

impl Default for NackRegister {
    fn default() -> Self {
        Self::new(NackConfig::default())
    }
}

impl NackRegister {
    /// A register with the given tuning.
    pub fn new(config: NackConfig) -> Self {
        NackRegister {
            config,
            slots: Box::default(),
            epoch: None,
            highest: None,
            low: 0,
            stats: NackStats::default(),
            off: false,
        }
    }

    /// The peer did not negotiate NACK for this stream: no gap is recorded (nor NACKed)
    /// from now on, and the ring is never allocated.
    pub(crate) fn turn_off(&mut self) {
        self.off = true;
    }

    /// Whether the ring exists or the register was turned off.
    pub(crate) fn decided(&self) -> bool {
        self.off || !self.slots.is_empty()
    }

    /// Updates the RTT estimate used to space repeated NACKs.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.config.rtt = rtt;
    }

    /// The counters.
    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// The highest extended sequence number received.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Spacing of repeated NACKs of one sequence number: the RTT, but at least
    /// [`MIN_NACK_REPEAT`].
    fn repeat_interval(&self) -> Duration {
        self.config.rtt.max(MIN_NACK_REPEAT)
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq & MASK) as usize] // masked below RING == slots.len()
    }

    /// Bytes held by the ring (0 until the first gap).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Allocates the ring now rather than at the first gap (for streams that are
    /// expected to lose packets; see the type's docs).
    pub(crate) fn allocate_ring(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![EMPTY; RING].into_boxed_slice();
        }
    }

    /// Overwrites the slot of `seq`, counting a missing packet it evicts as given up.
    /// Without a ring only a missing number needs one (see the type's docs).
    fn put(&mut self, seq: u64, state: State, since_us: u64) {
        if self.off {
            return;
        }
        if self.slots.is_empty() {
            if state != State::Missing {
                return;
            }
            self.allocate_ring();
        }
        let slot = self.slot(seq);
        let evicted = slot.state == State::Missing;
        *slot = Slot {
            seq,
            state,
            nacks: 0,
            since_us,
            last_nack_us: 0,
        };
        if evicted {
            self.stats.given_up += 1;
        }
    }

    /// Records the arrival of extended sequence number `seq` at `now`. Newly
    /// detected gaps become missing; a missing packet arriving is marked received.
    pub fn on_packet(&mut self, now: Instant, seq: u64) {
        let epoch = *self.epoch.get_or_insert(now);
        let now_us = since_us(epoch, now);
        let Some(h) = self.highest else {
            self.put(seq, State::Received, now_us);
            self.highest = Some(seq);
            self.low = seq.saturating_add(1);
            return;
        };
        if seq > h {
            // Only the last RING - 1 numbers below `seq` fit the ring; older gap
            // numbers are given up without being tracked.
            let start = (h + 1).max(seq.saturating_sub(MASK));
            self.stats.given_up += start - (h + 1);
            for s in start..seq {
                self.put(s, State::Missing, now_us);
            }
            self.put(seq, State::Received, now_us);
            self.highest = Some(seq);
            self.low = if self.low > h && seq == h + 1 {
                // In-order arrival with nothing missing: keep the scan window empty
                // so polls cost nothing in the loss-free steady state.
                seq + 1
            } else {
                self.low.max(seq.saturating_sub(MASK))
            };
        } else if h - seq < RING as u64 && !self.slots.is_empty() {
            let slot = self.slot(seq);
            if slot.seq == seq && slot.state == State::Missing {
                slot.state = State::Received;
                if slot.nacks > 0 {
                    self.stats.recovered += 1;
                }
            }
        }
    }

    /// Writes the NACK entries due at `now` into `out` and returns how many were
    /// written. Sequence numbers that do not fit are left for the next poll. Each
    /// returned sequence number counts as NACKed once.
    pub fn poll_nack(&mut self, now: Instant, out: &mut [NackPair]) -> usize {
        let (Some(h), Some(epoch)) = (self.highest, self.epoch) else {
            return 0;
        };
        if self.slots.is_empty() {
            return 0;
        }
        let now_us = since_us(epoch, now);
        let cfg = self.config;
        let rtt_us = micros(self.repeat_interval());
        let max_age_us = micros(cfg.max_age);
        let max_behind = cfg.max_behind.min(MASK);
        let reorder_us = micros(cfg.max_reorder);
        let mut n = 0usize;
        // Extended pid of the entry being filled.
        let mut cur: Option<u64> = None;
        let mut first_missing: Option<u64> = None;
        let mut s = self.low.max(h.saturating_sub(MASK));
        while s < h {
            let seq = s;
            s += 1;
            let slot = &mut self.slots[(seq & MASK) as usize]; // masked below RING
            if slot.seq != seq || slot.state != State::Missing {
                continue;
            }
            let waited = now_us.saturating_sub(slot.last_nack_us) >= rtt_us;
            let expired = h - seq > max_behind
                || now_us.saturating_sub(slot.since_us) > max_age_us
                || (slot.nacks >= cfg.max_nacks && waited);
            if expired {
                slot.state = State::GivenUp;
                self.stats.given_up += 1;
                continue;
            }
            first_missing.get_or_insert(seq);
            if slot.nacks >= cfg.max_nacks || (slot.nacks > 0 && !waited) {
                continue;
            }
            // Not yet: it may be reordered rather than lost.
            if slot.nacks == 0 && now_us.saturating_sub(slot.since_us) < reorder_us {
                continue;
            }
            match cur {
                Some(pid) if seq - pid <= 16 => {
                    if let Some(p) = n.checked_sub(1).and_then(|i| out.get_mut(i)) {
                        p.blp |= 1 << (seq - pid - 1);
                    }
                }
                _ => {
                    let Some(p) = out.get_mut(n) else {
                        break;
                    };
                    *p = NackPair {
                        pid: seq as u16, // the wire carries the low 16 bits
                        blp: 0,
                    };
                    n += 1;
                    cur = Some(seq);
                }
            }
            let slot = &mut self.slots[(seq & MASK) as usize]; // masked below RING
            slot.nacks += 1;
            slot.last_nack_us = now_us;
            self.stats.nacks_sent += 1;
        }
        self.low = first_missing.unwrap_or(h.saturating_add(1)).max(self.low);
        n
    }

    /// Polls like [`NackRegister::poll_nack`] and writes the result as a generic NACK
    /// RTCP packet into `buf`. `Ok(None)` when nothing is due; at most as many entries
    /// as fit `buf` (and at most 64) are taken.
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write_nack(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        buf: &mut [u8],
    ) -> Result<Option<usize>, RtcpError> {
        let fit = (buf.len().saturating_sub(12) / 4).min(MAX_PAIRS_PER_PACKET);
        if fit == 0 {
            return Err(RtcpError::BufferTooSmall);
        }
        let mut pairs = [NackPair { pid: 0, blp: 0 }; MAX_PAIRS_PER_PACKET];
        let n = self.poll_nack(now, &mut pairs[..fit]);
        if n == 0 {
            return Ok(None);
        }
        Nack::write_pairs(sender_ssrc, media_ssrc, &pairs[..n], buf).map(Some)
    }

    /// The earliest instant at which a poll may produce a NACK, if any packet is
    /// missing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (h, epoch) = (self.highest?, self.epoch?);
        if self.slots.is_empty() {
            return None;
        }
        let rtt_us = micros(self.repeat_interval());
        let reorder_us = micros(self.config.max_reorder);
        let mut best: Option<u64> = None;
        let start = self.low.max(h.saturating_sub(MASK));
        for seq in start..h {
            let slot = &self.slots[(seq & MASK) as usize]; // masked below RING
            if slot.seq != seq || slot.state != State::Missing {
                continue;
            }
            let due = if slot.nacks == 0 {
                slot.since_us.saturating_add(reorder_us)
            } else {
                slot.last_nack_us.saturating_add(rtt_us)
            };
            best = Some(best.map_or(due, |b| b.min(due)));
        }
        epoch.checked_add(Duration::from_micros(best?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A register that NACKs a gap at the next poll (no reordering wait).
    fn immediate() -> NackRegister {
        NackRegister::new(NackConfig {
            max_reorder: Duration::ZERO,
            ..NackConfig::default()
        })
    }

    fn poll(r: &mut NackRegister, now: Instant) -> Vec<NackPair> {
        let mut out = [NackPair { pid: 0, blp: 0 }; 16];
        let n = r.poll_nack(now, &mut out);
        out[..n].to_vec()
    }

    /// A stream the peer negotiated no NACK for (browsers' Opus) records no gap: no
    /// NACK is ever due and no ring is allocated, however lossy it is (the ring used to
    /// be allocated at its first loss, in the middle of forwarding).
    #[test]
    fn a_register_turned_off_records_no_gap_and_allocates_nothing() {
        let t0 = Instant::now();
        let mut r = immediate();
        assert!(!r.decided());
        r.turn_off();
        assert!(r.decided());
        for s in (100..3000u64).step_by(3) {
            r.on_packet(t0, s);
        }
        assert_eq!(r.heap_bytes(), 0);
        assert_eq!(poll(&mut r, t0 + ms(500)), vec![]);
        assert_eq!(r.poll_timeout(), None);
        let mut on = immediate();
        on.allocate_ring();
        assert!(on.decided());
    }

    #[test]
    fn ring_is_allocated_at_the_first_gap_only() {
        let t0 = Instant::now();
        let mut r = immediate();
        for s in 100..3000u64 {
            r.on_packet(t0, s);
        }
        // A late duplicate of an in-order number is not a gap either.
        r.on_packet(t0, 2990);
        assert_eq!(r.heap_bytes(), 0);
        assert_eq!(poll(&mut r, t0), vec![]);
        assert_eq!(r.poll_timeout(), None);
        r.on_packet(t0, 3001);
        assert!(r.heap_bytes() > 0);
        assert_eq!(poll(&mut r, t0), vec![NackPair { pid: 3000, blp: 0 }]);
        r.on_packet(t0, 3000);
        assert_eq!(r.stats().recovered, 1);
    }

    #[test]
    fn nacks_gaps_respecting_rtt_and_limit() {
        let t0 = Instant::now();
        let mut r = immediate();
        assert_eq!(poll(&mut r, t0), vec![]);
        for s in [0u64, 1, 2, 5, 6] {
            r.on_packet(t0, s);
        }
        // 3 and 4 missing: pid 3, bit 0 (pid + 1 = 4).
        assert_eq!(poll(&mut r, t0), vec![NackPair { pid: 3, blp: 1 }]);
        assert_eq!(r.poll_timeout(), Some(t0 + ms(100)));
        // Not again before an RTT (100 ms) has passed.
        assert_eq!(poll(&mut r, t0 + ms(99)), vec![]);
        assert_eq!(
            poll(&mut r, t0 + ms(100)),
            vec![NackPair { pid: 3, blp: 1 }]
        );
        r.on_packet(t0 + ms(120), 4);
        assert_eq!(r.stats().recovered, 1);
        // Only 3 remains; NACKed 5 times in total, then given up.
        for i in 2..5u64 {
            assert_eq!(
                poll(&mut r, t0 + ms(100 * i)),
                vec![NackPair { pid: 3, blp: 0 }]
            );
        }
        // NACKed 5 times: nothing more; given up one RTT after the last NACK.
        assert_eq!(poll(&mut r, t0 + ms(450)), vec![]);
        assert_eq!(r.stats().given_up, 0);
        assert_eq!(poll(&mut r, t0 + ms(500)), vec![]);
        let st = r.stats();
        assert_eq!((st.nacks_sent, st.recovered, st.given_up), (7, 1, 1));
        assert_eq!(r.poll_timeout(), None);
        // Arriving after being given up does not count as recovered.
        r.on_packet(t0 + ms(700), 3);
        assert_eq!(r.stats().recovered, 1);
    }

    #[test]
    fn repeats_on_a_tiny_rtt_wait_out_the_senders_de_duplication() {
        let t0 = Instant::now();
        let mut r = immediate();
        r.set_rtt(Duration::from_micros(800));
        for s in [0u64, 1, 3] {
            r.on_packet(t0, s);
        }
        assert_eq!(poll(&mut r, t0), vec![NackPair { pid: 2, blp: 0 }]);
        assert_eq!(r.poll_timeout(), Some(t0 + MIN_NACK_REPEAT));
        assert!(MIN_NACK_REPEAT > super::super::resend::MIN_INTERVAL);
        assert_eq!(poll(&mut r, t0 + MIN_NACK_REPEAT - ms(1)), vec![]);
        assert_eq!(
            poll(&mut r, t0 + MIN_NACK_REPEAT),
            vec![NackPair { pid: 2, blp: 0 }]
        );
        // Still bounded: five NACKs, then given up.
        for i in 2..=5u32 {
            let at = t0 + MIN_NACK_REPEAT * i;
            assert_eq!(poll(&mut r, at).len(), usize::from(i < 5));
        }
        let st = r.stats();
        assert_eq!((st.nacks_sent, st.given_up), (5, 1));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn pairs_group_sixteen_and_wrap() {
        let t0 = Instant::now();
        let mut r = immediate();
        // Around the 16-bit wrap: received 65530, then 65550 (19 missing: 65531..=65549).
        r.on_packet(t0, 65_530);
        r.on_packet(t0, 65_550);
        // First entry: pid 65531 with bits for 65532..=65547 (all 16),
        // second entry: pid 65548 (wire value 12) with bit 0 for 65549.
        assert_eq!(
            poll(&mut r, t0),
            vec![
                NackPair {
                    pid: 65_531,
                    blp: 0xffff
                },
                NackPair { pid: 12, blp: 1 },
            ]
        );
        assert_eq!(r.stats().nacks_sent, 19);
    }

    #[test]
    fn forgets_old_and_far_behind() {
        let t0 = Instant::now();
        let mut r = immediate();
        r.on_packet(t0, 10);
        r.on_packet(t0, 12); // 11 missing from t0
        r.on_packet(t0 + ms(500), 20); // 13..=19 missing from t0 + 500 ms
        // At t0 + 1001 ms, 11 is older than 1 s: forgotten. 13..=19 are NACKed.
        let p = poll(&mut r, t0 + ms(1001));
        assert_eq!(p, vec![NackPair { pid: 13, blp: 0x3f }]);
        assert_eq!(r.stats().given_up, 1);
        // 1001 packets later everything above is more than 1000 behind.
        r.on_packet(t0 + ms(1002), 1020);
        let p = poll(&mut r, t0 + ms(1002));
        // 1020 - 1000 = 20: 21..=1019 are due; 13..=19 are more than 1000 behind.
        assert_eq!(
            p.first(),
            Some(&NackPair {
                pid: 21,
                blp: 0xffff
            })
        );
        assert_eq!(r.stats().given_up, 8);
        // A jump over more than the ring gives up what cannot be tracked.
        let before = r.stats().given_up;
        r.on_packet(t0 + ms(1003), 5000);
        // 1021..=3976 were never tracked (2956), and the evicted 21..=1019 minus
        // the ones still in the ring... all of them are evicted (999).
        assert_eq!(r.stats().given_up - before, 2956 + 999);
    }

    #[test]
    fn write_nack_packet() {
        let t0 = Instant::now();
        let mut r = immediate();
        r.on_packet(t0, 100);
        r.on_packet(t0, 102);
        let mut buf = [0u8; 64];
        assert_eq!(
            r.write_nack(t0, 1, 2, &mut [0u8; 15]),
            Err(RtcpError::BufferTooSmall)
        );
        let n = r.write_nack(t0, 1, 2, &mut buf).unwrap().unwrap();
        assert_eq!(
            &buf[..n],
            &[0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 101, 0, 0]
        );
        assert_eq!(r.write_nack(t0, 1, 2, &mut buf), Ok(None));
    }

    #[test]
    fn reordering_within_max_reorder_is_not_nacked() {
        let t0 = Instant::now();
        let mut r = NackRegister::default();
        let reorder = NackConfig::default().max_reorder;
        assert_eq!(reorder, ms(50));
        // 2 overtakes 1 by 20 ms (jitter): detected at t0, arrives at t0 + 20 ms.
        r.on_packet(t0, 0);
        r.on_packet(t0, 2);
        assert_eq!(poll(&mut r, t0), vec![]);
        assert_eq!(poll(&mut r, t0 + ms(10)), vec![]);
        assert_eq!(r.poll_timeout(), Some(t0 + reorder));
        r.on_packet(t0 + ms(20), 1);
        assert_eq!(poll(&mut r, t0 + ms(60)), vec![]);
        assert_eq!(r.poll_timeout(), None);
        // A real loss (4) is NACKed once max_reorder has passed.
        r.on_packet(t0 + ms(100), 3);
        r.on_packet(t0 + ms(100), 5);
        assert_eq!(poll(&mut r, t0 + ms(149)), vec![]);
        assert_eq!(r.poll_timeout(), Some(t0 + ms(150)));
        assert_eq!(
            poll(&mut r, t0 + ms(150)),
            vec![NackPair { pid: 4, blp: 0 }]
        );
        let st = r.stats();
        assert_eq!((st.nacks_sent, st.recovered, st.given_up), (1, 0, 0));
    }

    /// A stream reordered by up to 20 ms of jitter (and nothing lost) polled every 5 ms:
    /// with the reordering wait nothing is NACKed; without it, many packets are.
    #[test]
    fn jitter_alone_causes_no_nack_storm() {
        fn run(config: NackConfig) -> u64 {
            let t0 = Instant::now();
            let mut r = NackRegister::new(config);
            // 1,000 packets sent every 2 ms, each delayed by a pseudo-random 0..=20 ms.
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut arrivals: Vec<(u64, u64)> = (0..1000u64)
                .map(|seq| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (seq * 2_000 + x % 20_001, seq)
                })
                .collect();
            arrivals.sort_unstable();
            let mut out = [NackPair { pid: 0, blp: 0 }; 16];
            let mut next_poll = 0u64;
            for (at_us, seq) in arrivals {
                while next_poll <= at_us {
                    r.poll_nack(t0 + Duration::from_micros(next_poll), &mut out);
                    next_poll += 5_000;
                }
                r.on_packet(t0 + Duration::from_micros(at_us), seq);
            }
            r.stats().nacks_sent
        }
        let storm = run(NackConfig {
            max_reorder: Duration::ZERO,
            ..NackConfig::default()
        });
        assert!(
            storm > 100,
            "reordering without a wait NACKs a lot: {storm}"
        );
        assert_eq!(run(NackConfig::default()), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_nacks_received(
            events in proptest::collection::vec((0u8..10, 0u64..40, any::<bool>()), 1..400),
            cap in 1usize..8,
        ) {
            let t0 = Instant::now();
            let mut r = immediate();
            let mut received = HashSet::new();
            let mut nacked: HashMap<u64, u32> = HashMap::new();
            let mut next = 1000u64;
            let mut t = t0;
            let mut out = vec![NackPair { pid: 0, blp: 0 }; cap];
            for (kind, dt, flag) in events {
                t += Duration::from_millis(dt);
                match kind {
                    // Lose one packet.
                    0 => next += 1,
                    // Deliver a late packet from the recent past.
                    1 => {
                        let s = next.saturating_sub(1 + dt);
                        r.on_packet(t, s);
                        received.insert(s);
                    }
                    // Poll.
                    2 | 3 => {
                        let n = r.poll_nack(t, &mut out);
                        for p in &out[..n] {
                            for l in p.lost() {
                                // Map the 16-bit number back near `next` (< 65536 away).
                                let ext = next - u64::from((next as u16).wrapping_sub(l));
                                prop_assert!(!received.contains(&ext), "NACKed received {}", ext);
                                let c = nacked.entry(ext).or_default();
                                *c += 1;
                                prop_assert!(*c <= 5);
                            }
                        }
                        if flag {
                            prop_assert!(r.poll_timeout().is_none_or(|d| d >= t0));
                        }
                    }
                    _ => {
                        r.on_packet(t, next);
                        received.insert(next);
                        next += 1;
                    }
                }
            }
        }
    }
}
