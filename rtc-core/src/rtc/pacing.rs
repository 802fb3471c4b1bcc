//! Send pacing and probing of an `Rtc`.
//!
//! Outgoing RTP (media, retransmissions and probe padding) waits as plaintext in a
//! pooled buffer while a [`Pacer`] decides when it may leave; `poll_output` releases
//! what the leaky bucket allows. Non-RTP traffic (STUN, DTLS, RTCP) never waits.
//!
//! Transport-wide sequence numbers are written as a packet leaves, in send order,
//! so the estimator sees true send times and every packet on the wire (media, RTX,
//! padding) has its own number. The packet is kept for retransmission, counted in
//! sender reports and protected at that moment too.
//!
//! The pacing rate is the pacer's multiplier times the target: the application's
//! ([`Rtc::set_send_rate`]) when set, else the bandwidth estimate, capped at the
//! application's maximum. Without either (no target from the application, and no
//! packet sent with a transport-wide sequence number, e.g. RTP-mode packets written
//! without the extension) packets pass at the rate they are written: there is no
//! estimate of them to pace to.
//!
//! Probing: once connected (with transport-wide congestion control), probes run at
//! 3× then 6× the start rate, then at 2× the estimate for as long as the previous
//! probe was confirmed (the estimate reached 70 % of its goal); the application may
//! ask for one with [`Rtc::request_probe`]. A probe that falls short is tried
//! again twice before probing stops, so that one lost probe packet does not end it. A probe is filled with RTX re-sends of
//! the newest sent packet when RTX is negotiated and the packet is still held, else
//! with padding-only packets on the RTX stream (or, in frame mode without RTX, on
//! the media stream).

use std::time::{Duration, Instant};

use super::{BUF_SIZE, Rtc, RtcError};
use crate::direct::{RtxOutcome, RtxRefusal};
use crate::feedback::RtxParams;
use crate::media::MediaKind;
use crate::pacer::{Pacer, PacerConfig, PacerStats, PacketClass};
use crate::rtp::{Extension, ExtensionValues, HeaderExtension, RtpHeader};

/// Bytes SRTP adds to a packet, as counted for the estimator (the largest tag).
const SRTP_OVERHEAD: usize = 16;
/// Most padding one RTP packet can carry (the count is one byte, RFC 3550 §5.1).
const MAX_PADDING: usize = 255;
/// A probe lasts at least this long and carries at least `PROBE_PACKETS` packets.
const PROBE_TIME: Duration = Duration::from_millis(15);
/// Packets per probe, at least (of about `PROBE_PACKET_BYTES` each).
const PROBE_PACKETS: u64 = 5;
/// Size assumed for probe packets when sizing a probe's duration.
const PROBE_PACKET_BYTES: u64 = 1200;
/// Time left after a probe for its result to come back before the next one.
const PROBE_SETTLE: Duration = Duration::from_millis(250);
/// A probe is confirmed when the estimate reaches this share of its goal.
const PROBE_CONFIRMED: f64 = 0.7;
/// A probe that falls short is tried again this many times before probing stops
/// (a lost probe packet spoils a measurement; random loss must not end probing).
const PROBE_RETRIES: u8 = 2;
/// Probes stop growing above this goal (bps) unless the application's maximum is
/// lower.
const PROBE_CEILING: u64 = 20_000_000;

/// Entries of the recent-retransmission memory (a power of two).
const RESENT_SLOTS: usize = 512;
/// Retransmissions may use at most this share of the target rate, averaged over
/// `RTX_WINDOW`: resending what a congested link dropped must not feed the
/// congestion.
const RTX_SHARE: f64 = 0.25;
/// The window of the retransmission budget.
const RTX_WINDOW: Duration = Duration::from_millis(500);
/// Assumed round-trip time before one is measured.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// A packet waiting in the pacer: plaintext RTP in a pooled buffer.
struct Queued {
    buf: Vec<u8>,
    len: usize,
    /// Keep it for RTX and count it in sender reports when it is sent.
    store: bool,
}

/// The probe controller's state.
#[derive(Debug, Clone, Copy, Default)]
struct Prober {
    /// The initial probes were scheduled (once per connection).
    started: bool,
    /// Goals still to run, last first; `planned_len` of them are valid.
    planned: [u64; 2],
    planned_len: usize,
    /// Goal of the last probe started.
    last_goal: Option<u64>,
    /// No new probe before this time (the last one and its result).
    hold_until: Option<Instant>,
    /// Keep doubling while probes are confirmed.
    exponential: bool,
    /// Times the last goal was tried again after falling short.
    retries: u8,
    /// Id of the last probe cluster started (never 0 once one started): packets
    /// sent while it runs carry it in their transport-wide record.
    cluster: u16,
}

/// Pacing state of an `Rtc`.
pub(crate) struct Pacing {
    pub(crate) enabled: bool,
    pacer: Pacer,
    /// Packets the pacer holds, by handle (the index); grown on demand, reused.
    slots: Vec<Option<Queued>>,
    /// Free indices of `slots`.
    free: Vec<usize>,
    /// The application's `(target, max)` rates (bps), if set.
    app: Option<(u64, u64)>,
    /// The `(target, max)` last given to the pacer.
    applied: Option<(u64, u64)>,
    prober: Prober,
    /// Round-robin of the stored packets re-sent as probe padding.
    redundancy_back: u64,
    /// Recently retransmitted packets, `(RTX SSRC, original sequence number, when)`
    /// by original sequence number modulo the size: a packet NACKed again within a
    /// round trip of its last retransmission (the request crossed it) is not sent
    /// again. Allocated on the first retransmission.
    resent: Vec<(u32, u16, Option<Instant>)>,
    /// Retransmission budget in bytes and when it was last refilled.
    rtx_budget: f64,
    rtx_refilled: Option<Instant>,
}

impl Pacing {
    pub(crate) fn new(enabled: bool, config: PacerConfig) -> Self {
        Pacing {
            enabled,
            pacer: Pacer::new(config),
            slots: Vec::new(),
            free: Vec::new(),
            app: None,
            applied: None,
            prober: Prober::default(),
            redundancy_back: 0,
            resent: Vec::new(),
            rtx_budget: 0.0,
            rtx_refilled: None,
        }
    }

    /// Stores `q` and returns its handle.
    fn insert(&mut self, q: Queued) -> usize {
        match self.free.pop() {
            Some(i) if i < self.slots.len() => {
                self.slots[i] = Some(q);
                i
            }
            _ => {
                self.slots.push(Some(q));
                self.slots.len() - 1
            }
        }
    }

    fn take(&mut self, handle: u64) -> Option<Queued> {
        let i = usize::try_from(handle).ok()?;
        let q = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        Some(q)
    }
}

/// Where the 2-byte transport-wide sequence number of `packet` (plaintext RTP)
/// sits, when it carries the extension with `id`.
fn twcc_offset(packet: &[u8], id: u8) -> Option<usize> {
    let b0 = *packet.first()?;
    if b0 & 0x10 == 0 {
        return None;
    }
    let start = 12 + 4 * usize::from(b0 & 0x0f);
    let head = packet.get(start..start + 4)?;
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = start + 4;
    let end = body + 4 * words;
    packet.get(body..end)?;
    let mut at = body;
    if profile == 0xBEDE {
        while at < end {
            let b = packet[at]; // at < end <= packet.len()
            let eid = b >> 4;
            if eid == 0 {
                at += 1;
                continue;
            }
            if eid == 15 {
                return None;
            }
            let len = usize::from(b & 0x0f) + 1;
            if eid == id && len == 2 && at + 3 <= end {
                return Some(at + 1);
            }
            at += 1 + len;
        }
    } else if profile & 0xfff0 == 0x1000 {
        while at < end {
            let eid = packet[at]; // at < end <= packet.len()
            if eid == 0 {
                at += 1;
                continue;
            }
            let len = usize::from(*packet.get(at + 1)?);
            if eid == id && len == 2 && at + 4 <= end {
                return Some(at + 2);
            }
            at += 2 + len;
        }
    }
    None
}

impl Rtc {
    /// Turns pacing on or off at run time. Turning it off sends what is queued at
    /// the next `poll_output`.
    pub fn set_pacing(&mut self, enabled: bool) {
        self.pacing.enabled = enabled;
    }

    /// Sets the rate this peer should be sent at: `target_bps` is what the pacer
    /// paces to (times its multiplier) instead of the bandwidth estimate, and
    /// `max_bps` caps it and every probe (0: no cap). A target above the current
    /// estimate also starts a probe to it. `target_bps` 0 returns to the estimate
    /// (keeping `max_bps`).
    pub fn set_send_rate(&mut self, target_bps: u64, max_bps: u64) {
        self.pacing.app = Some((target_bps, max_bps));
        if target_bps > self.session.bwe().estimate() {
            self.request_probe(target_bps);
        }
    }

    /// Asks for a bandwidth probe at `goal_bps` (capped by the maximum of
    /// [`Rtc::set_send_rate`]): for a short burst the sent rate is raised to the
    /// goal, with padding when media does not reach it, so that the estimator can
    /// measure whether the path carries it. Replaces probes not yet started.
    pub fn request_probe(&mut self, goal_bps: u64) {
        let p = &mut self.pacing.prober;
        p.planned = [goal_bps, 0];
        p.planned_len = 1;
        p.hold_until = None;
        p.exponential = false;
    }

    /// The pacer's counters (sent, dropped over the time budget and refused, per
    /// class).
    pub fn pacer_stats(&self) -> &PacerStats {
        self.pacing.pacer.stats()
    }

    /// The `(target, max)` the pacer should use now, `None` to pass packets
    /// unpaced.
    fn pacing_target(&self) -> Option<(u64, u64)> {
        let max = self.pacing.app.map_or(0, |a| a.1);
        match self.pacing.app {
            Some((t, m)) if t > 0 => Some((t, m)),
            // The estimate only measures packets with transport-wide numbers:
            // pace to it once something we sent carried one.
            _ if self.session.twcc_tx.peek_next() > 0 => Some((self.session.bwe().estimate(), max)),
            _ => None,
        }
    }

    /// The transport-wide sequence number extension id (one id space when bundled).
    fn twcc_id(&self) -> Option<u8> {
        self.session
            .media
            .first()
            .and_then(|m| m.extensions.id_of(Extension::TransportSequenceNumber))
    }

    pub(super) fn twcc_negotiated(&self) -> bool {
        self.twcc_id().is_some()
    }

    /// The pacer class of a plaintext RTP packet on `ssrc`.
    fn class_of(&self, ssrc: u32, mid: Option<crate::media::Mid>) -> PacketClass {
        let mut mid = mid;
        for t in &self.session.tx {
            if t.rtx_ssrc == ssrc {
                return PacketClass::Retransmission;
            }
            if t.ssrc == ssrc {
                mid = Some(t.mid);
            }
        }
        match mid.and_then(|m| self.session.media.iter().find(|x| x.mid == m)) {
            Some(info) if info.kind == MediaKind::Audio => PacketClass::Audio,
            _ => PacketClass::Video,
        }
    }

    /// Queues the plaintext RTP packet `buf[..len]` in the pacer, or sends it now
    /// when pacing is off or has nothing to pace to. `class` overrides the class
    /// found from the SSRC. Returns whether the packet was queued: a retransmission
    /// may be refused as a duplicate or over the budget, any packet when its class
    /// queue is full (the pacer counts those as refused).
    pub(super) fn pace_rtp(
        &mut self,
        buf: Vec<u8>,
        len: usize,
        mid: Option<crate::media::Mid>,
        store: bool,
        class: Option<PacketClass>,
    ) -> Result<RtxOutcome, RtcError> {
        if !self.pacing.enabled || self.pacing_target().is_none() {
            return self
                .send_rtp_now(buf, len, store)
                .map(|()| RtxOutcome::Queued);
        }
        let class = match (class, buf.get(8..12)) {
            (Some(c), _) => c,
            (None, Some(s)) => self.class_of(u32::from_be_bytes([s[0], s[1], s[2], s[3]]), mid),
            (None, None) => PacketClass::Video,
        };
        let now = self.last_now;
        if class == PacketClass::Retransmission {
            // Only a retransmission that goes out is remembered: one refused for the
            // budget must not make the next request for the packet a "duplicate".
            let key = self.rtx_key(&buf[..len]);
            let refusal = if key.is_some_and(|k| self.recently_resent(k, now)) {
                Some(RtxRefusal::Duplicate)
            } else if !self.rtx_budget_allows(len, now) {
                Some(RtxRefusal::OverBudget)
            } else {
                None
            };
            if let Some(r) = refusal {
                self.pool.put(buf);
                return Ok(RtxOutcome::Refused(r));
            }
            if let Some(k) = key {
                self.note_resent(k, now);
            }
        }
        self.apply_pacing_target();
        let h = self.pacing.insert(Queued { buf, len, store });
        if self
            .pacing
            .pacer
            .enqueue(class, h as u64, len + SRTP_OVERHEAD, now)
            .is_err()
        {
            // The class queue is full: the packet is dropped (counted as refused).
            if let Some(q) = self.pacing.take(h as u64) {
                self.pool.put(q.buf);
            }
            return Ok(RtxOutcome::Refused(RtxRefusal::QueueFull));
        }
        Ok(RtxOutcome::Queued)
    }

    /// The (RTX SSRC, original sequence number) of the RTX packet `rtx`.
    fn rtx_key(&self, rtx: &[u8]) -> Option<(u32, u16)> {
        let pkt = crate::rtp::RtpPacket::parse(rtx).ok()?;
        let osn = pkt.payload.get(..2)?;
        Some((pkt.header.ssrc, u16::from_be_bytes([osn[0], osn[1]])))
    }

    /// Whether the packet `(RTX SSRC, original sequence number)` was retransmitted
    /// less than a round trip (plus the time retransmissions wait in the pacer) ago.
    fn recently_resent(&self, (ssrc, osn): (u32, u16), now: Instant) -> bool {
        let rtt = self
            .session
            .tx
            .iter()
            .find(|t| t.rtx_ssrc == ssrc)
            .and_then(|t| t.rtt)
            .unwrap_or(DEFAULT_RTT);
        // Retransmissions go ahead of video: only audio and retransmissions queued
        // before it delay one, not a video backlog.
        let window = rtt
            + self
                .pacing
                .pacer
                .queue_time_through(PacketClass::Retransmission);
        self.pacing
            .resent
            .get(usize::from(osn) % RESENT_SLOTS)
            .is_some_and(|&(s, o, at)| {
                s == ssrc
                    && o == osn
                    && at.is_some_and(|t| now.saturating_duration_since(t) < window)
            })
    }

    /// Records that the packet `(RTX SSRC, original sequence number)` is
    /// retransmitted at `now`.
    fn note_resent(&mut self, (ssrc, osn): (u32, u16), now: Instant) {
        if self.pacing.resent.is_empty() {
            self.pacing.resent = vec![(0, 0, None); RESENT_SLOTS];
        }
        if let Some(slot) = self.pacing.resent.get_mut(usize::from(osn) % RESENT_SLOTS) {
            *slot = (ssrc, osn, Some(now));
        }
    }

    /// Takes `len` bytes from the retransmission budget if it holds them.
    fn rtx_budget_allows(&mut self, len: usize, now: Instant) -> bool {
        let rate = self.pacing_target().map_or(0.0, |t| t.0 as f64) * RTX_SHARE / 8.0;
        let cap = rate * RTX_WINDOW.as_secs_f64();
        let p = &mut self.pacing;
        // The budget starts full: the first losses of a session are repaired at once
        // rather than after the bucket has filled from nothing.
        p.rtx_budget = match p.rtx_refilled.replace(now) {
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                (p.rtx_budget + rate * dt).min(cap)
            }
            None => cap,
        };
        if p.rtx_budget >= len as f64 {
            p.rtx_budget -= len as f64;
            true
        } else {
            false
        }
    }

    /// Gives the pacer the current target when it changed.
    fn apply_pacing_target(&mut self) {
        let Some(t) = self.pacing_target() else {
            return;
        };
        if self.pacing.applied != Some(t) {
            self.pacing.applied = Some(t);
            self.pacing.pacer.set_target(t.0, t.1);
        }
    }

    /// Writes a fresh transport-wide sequence number into the plaintext RTP packet
    /// `buf[..len]` (when it carries the extension), keeps it for RTX if `store`,
    /// then protects and queues it for sending now.
    pub(super) fn send_rtp_now(
        &mut self,
        mut buf: Vec<u8>,
        len: usize,
        store: bool,
    ) -> Result<(), RtcError> {
        match self.stamp_and_protect(&mut buf, len, store) {
            Ok(n) => self.queue_on_path(buf, n),
            Err(e) => {
                self.pool.put(buf);
                Err(e)
            }
        }
    }

    /// What every RTP packet goes through as it leaves, in `buf` (the `Rtc`'s pooled
    /// buffer or the caller's, see [`Rtc::send_rtp_in_place`]): a fresh
    /// transport-wide sequence number written into the plaintext `buf[..len]` (when
    /// it carries the extension), a copy kept for RTX if `store`, SRTP protection in
    /// place. Returns the protected length. `buf` must have room for the SRTP tag.
    fn stamp_and_protect(
        &mut self,
        buf: &mut [u8],
        len: usize,
        store: bool,
    ) -> Result<usize, RtcError> {
        let now = self.last_now;
        let mut twcc_seq = None;
        if let Some(id) = self.twcc_id()
            && let Some(at) = twcc_offset(&buf[..len.min(buf.len())], id)
        {
            // Tagged while a probe runs, so that the estimator measures the probe
            // as one, however its packets were spaced.
            let cluster = if self.pacing.pacer.probing(now) {
                self.pacing.prober.cluster
            } else {
                0
            };
            let seq = self
                .session
                .twcc_tx
                .next_seq_in_probe(now, len + SRTP_OVERHEAD, cluster);
            buf[at..at + 2].copy_from_slice(&seq.to_be_bytes()); // at + 2 <= len
            twcc_seq = Some(seq);
        }
        // A packet SRTP then refuses (a duplicate) overwrites its own earlier copy
        // here: the same bytes, already sent.
        if store && let Some(s) = buf.get(8..12) {
            let ssrc = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
            if let Some(tx) = self.session.tx.iter_mut().find(|t| t.ssrc == ssrc) {
                tx.record_sent(now, &buf[..len]);
            }
        }
        let Some(srtp) = self.transport.srtp_tx.as_mut() else {
            if let Some(seq) = twcc_seq {
                self.session.twcc_tx.retract(seq);
            }
            return Err(RtcError::InvalidState("no SRTP context"));
        };
        match srtp.protect_rtp(buf, len) {
            Ok(n) => Ok(n),
            Err(e) => {
                // Never on the wire: its transport-wide number goes to the next
                // packet, or the peer's feedback would report it lost and the
                // estimate would fall for a loss the path never had.
                if let Some(seq) = twcc_seq {
                    self.session.twcc_tx.retract(seq);
                }
                self.stats.send_refused += 1;
                Err(RtcError::Write(e.into()))
            }
        }
    }

    /// Sends the plaintext RTP packet `out[..len]` (media on one of our send
    /// streams) from the caller's buffer when it would leave at once anyway: nothing
    /// waits in the transmit queue or the pacer (so it cannot overtake), no probe
    /// runs, the pacing bucket allows it, and a path is selected. It is then
    /// stamped, kept for RTX, protected in place in `out` and counted as sent;
    /// `Ok(Some(n))` gives its protected length. `Ok(None)`: not sent, nothing
    /// changed but for the pacing bucket's refill — the caller queues it the usual
    /// way. `out` must have room for the SRTP tag.
    pub(super) fn send_rtp_in_place(
        &mut self,
        out: &mut [u8],
        len: usize,
    ) -> Result<Option<usize>, RtcError> {
        if !self.alive || !self.outbox.transmits.is_empty() || self.transport.send_path.is_none() {
            return Ok(None);
        }
        let Some(s) = out.get(8..12) else {
            return Ok(None);
        };
        let ssrc = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        if self.pacing.enabled && self.pacing_target().is_some() {
            let class = self.class_of(ssrc, None);
            if class == PacketClass::Retransmission {
                // Retransmissions have their own checks in `pace_rtp`.
                return Ok(None);
            }
            self.apply_pacing_target();
            let now = self.last_now;
            if !self.pacing.pacer.send_now(class, len + SRTP_OVERHEAD, now) {
                return Ok(None);
            }
        } else if self.pacing.pacer.queued_bytes() != 0 {
            // Pacing was turned off with packets still queued: they go first.
            return Ok(None);
        }
        if !self.session.tx_ssrcs.iter().any(|(s, _)| *s == ssrc) {
            self.session.tx_ssrcs.push((ssrc, None));
        }
        let n = self.stamp_and_protect(out, len, true)?;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += n as u64;
        Ok(Some(n))
    }

    /// Pacer work due now (from `poll_output`): follow the target, run the probe
    /// controller, generate probe padding, drop what is over the time budget and
    /// move what the bucket allows to the transmit queue.
    pub(super) fn release_paced(&mut self) {
        let now = self.last_now;
        if !self.transport.connected || !self.alive {
            return;
        }
        if !self.pacing.enabled || self.pacing_target().is_none() {
            if self.pacing.pacer.queued_bytes() == 0 {
                return;
            }
            // Pacing was turned off: whatever waits goes now.
            while let Some((_, h)) = self.pacing.pacer.flush() {
                if let Some(q) = self.pacing.take(h) {
                    let _ = self.send_rtp_now(q.buf, q.len, q.store);
                }
            }
            return;
        }
        self.apply_pacing_target();
        self.probe_control(now);
        self.generate_padding(now);
        while let Some((_, h)) = self.pacing.pacer.poll_dropped(now) {
            if let Some(q) = self.pacing.take(h) {
                self.pool.put(q.buf);
                self.stats.paced_dropped += 1;
            }
        }
        while let Some((_, h)) = self.pacing.pacer.poll(now) {
            if let Some(q) = self.pacing.take(h) {
                let _ = self.send_rtp_now(q.buf, q.len, q.store);
            }
        }
    }

    /// When the pacer next wants to run, if pacing is active.
    pub(super) fn pacing_timeout(&self) -> Option<Instant> {
        if !self.transport.connected || !self.alive || !self.pacing.enabled {
            return None;
        }
        self.pacing_target()?;
        let now = self.last_now;
        let mut t = self.pacing.pacer.next_send_time(now);
        let p = &self.pacing.prober;
        let more = p.planned_len > 0 || p.exponential;
        if more && let Some(h) = p.hold_until {
            t = Some(t.map_or(h, |x| x.min(h)));
        }
        if more && !p.started {
            t = Some(now);
        }
        t
    }

    /// Starts the next probe when one is due.
    fn probe_control(&mut self, now: Instant) {
        let estimate = self.pacing_target().map_or(0, |t| t.0);
        let max = self.pacing.app.map_or(0, |a| a.1);
        let twcc = self.twcc_negotiated();
        let p = &mut self.pacing.prober;
        if !p.started {
            // Initial exponential probing when transport-wide feedback can measure it.
            p.started = true;
            if twcc && p.planned_len == 0 {
                let start = estimate.max(1);
                p.planned = [6 * start, 3 * start];
                p.planned_len = 2;
                p.exponential = true;
            }
        }
        if p.hold_until.is_some_and(|h| now < h) {
            return;
        }
        let confirmed = p
            .last_goal
            .is_some_and(|g| estimate as f64 >= PROBE_CONFIRMED * g as f64);
        let goal = if p.planned_len > 0 {
            p.planned_len -= 1;
            p.planned[p.planned_len]
        } else if p.exponential && confirmed {
            p.retries = 0;
            2 * estimate
        } else if p.exponential && p.retries < PROBE_RETRIES {
            p.retries += 1;
            p.last_goal.unwrap_or(2 * estimate)
        } else {
            // The last probe fell short: the estimate is near the capacity.
            p.exponential = false;
            return;
        };
        let ceiling = if max > 0 { max } else { PROBE_CEILING };
        if goal > ceiling || goal == 0 {
            p.exponential = false;
            return;
        }
        let packets = Duration::from_nanos(
            (PROBE_PACKETS * PROBE_PACKET_BYTES * 8 * 1_000_000_000)
                .checked_div(goal)
                .unwrap_or(0),
        );
        let duration = packets.max(PROBE_TIME);
        p.last_goal = Some(goal);
        p.hold_until = now.checked_add(duration + PROBE_SETTLE);
        p.cluster = p.cluster.wrapping_add(1).max(1);
        let cluster = p.cluster;
        self.session.bwe_mut().on_probe_cluster(cluster, goal);
        self.pacing.pacer.start_probe(goal, duration, now);
    }

    /// Enqueues the padding a running probe wants.
    fn generate_padding(&mut self, now: Instant) {
        // Bounded: each round queues one packet or stops.
        for _ in 0..256 {
            let Some(want) = self.pacing.pacer.padding_wanted(now) else {
                return;
            };
            if !self.queue_probe_packet(now, want) {
                return;
            }
        }
    }

    /// Queues one probe packet of about `want` bytes: an RTX re-send of a recent
    /// packet, or padding only. Returns false when none can be made.
    fn queue_probe_packet(&mut self, now: Instant, want: usize) -> bool {
        // The first video send stream, else the first one.
        let Some(idx) = self
            .session
            .tx
            .iter()
            .position(|t| {
                self.session
                    .media
                    .iter()
                    .any(|m| m.mid == t.mid && m.kind == MediaKind::Video)
            })
            .or_else(|| (!self.session.tx.is_empty()).then_some(0))
        else {
            return false;
        };
        let mid = self.session.tx[idx].mid;
        let Some(info) = self.session.media.iter().find(|m| m.mid == mid) else {
            return false;
        };
        let rtx_pt = info.rtx.first().map(|r| r.1);
        let mut buf = self.pool.take();
        // RTX redundancy: re-send one of the newest packets held, whole even when
        // less is wanted (the pacer counts what is queued, so the next call asks
        // for that much less). Large packets keep a probe one burst: small ones
        // leave gaps that the estimator's burst detection reads as its end.
        if let Some(highest) = self.session.tx[idx]
            .highest_sent
            .filter(|_| self.config.probe_redundancy)
        {
            let back = self.pacing.redundancy_back % 8;
            let seq = highest.saturating_sub(back);
            let tx = &self.session.tx[idx];
            let media_pt = tx
                .rtx_buf
                .get(now, seq)
                .and_then(|p| p.get(1))
                .map(|b| b & 0x7f);
            let rtx_pt = media_pt
                .and_then(|pt| info.rtx.iter().find(|(p, _)| *p == pt))
                .map(|r| r.1);
            if let Some(rtx_pt) = rtx_pt {
                let tx = &mut self.session.tx[idx];
                let params = RtxParams {
                    ssrc: tx.rtx_ssrc,
                    payload_type: rtx_pt,
                    seq: tx.rtx_seq,
                };
                if let Some(n) = tx
                    .rtx_buf
                    .build_rtx(now, seq, params, &mut buf[..BUF_SIZE - 64])
                {
                    tx.rtx_seq = tx.rtx_seq.wrapping_add(1);
                    self.pacing.redundancy_back = self.pacing.redundancy_back.wrapping_add(1);
                    return self.enqueue_padding(buf, n, now);
                }
            }
        }
        // Padding only, on the RTX stream, or the media stream in frame mode.
        let tx = &mut self.session.tx[idx];
        let (ssrc, pt, seq) = match rtx_pt {
            Some(pt) => {
                let s = tx.rtx_seq;
                tx.rtx_seq = s.wrapping_add(1);
                (tx.rtx_ssrc, pt, s)
            }
            None if !self.config.rtp_mode => {
                let Some(pt) = info.payloads.first().map(|p| p.pt) else {
                    self.pool.put(buf);
                    return false;
                };
                let s = tx.next_seq;
                tx.next_seq = s.wrapping_add(1);
                (tx.ssrc, pt, s)
            }
            None => {
                // RTP mode without RTX: the application owns the media sequence.
                self.pool.put(buf);
                return false;
            }
        };
        let header = RtpHeader {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: 0,
            ssrc,
            ..Default::default()
        };
        let values = ExtensionValues {
            transport_cc: Some(0),
            ..Default::default()
        };
        let map = &info.extensions;
        let Ok(n) = header.write(
            HeaderExtension::Values {
                map,
                values: &values,
            },
            &mut buf,
        ) else {
            self.pool.put(buf);
            return false;
        };
        let pad = want.saturating_sub(n + SRTP_OVERHEAD).clamp(1, MAX_PADDING);
        buf[0] |= 0x20;
        buf[n..n + pad].fill(0);
        buf[n + pad - 1] = pad as u8; // pad <= 255
        self.enqueue_padding(buf, n + pad, now)
    }

    fn enqueue_padding(&mut self, buf: Vec<u8>, len: usize, now: Instant) -> bool {
        let h = self.pacing.insert(Queued {
            buf,
            len,
            store: false,
        });
        if self
            .pacing
            .pacer
            .enqueue(PacketClass::Padding, h as u64, len + SRTP_OVERHEAD, now)
            .is_err()
        {
            if let Some(q) = self.pacing.take(h as u64) {
                self.pool.put(q.buf);
            }
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests;
