//! One subscriber's view of one publisher video track with up to three simulcast layers.
//!
//! The publisher sends each layer as its own RTP stream (own SSRC, sequence numbers and
//! timestamps). The subscriber must see ONE continuous stream. A [`DownTrack`] decides per
//! packet whether it is forwarded and, if so, with which sequence number, timestamp and
//! (VP8) PictureID / TL0PICIDX:
//!
//! - **Layer switches** happen only at a keyframe of the target layer. Until then the
//!   current layer keeps flowing; packets of other layers are dropped, and so are
//!   stragglers of the new layer older than the switch keyframe.
//!   [`DownTrack::keyframe_wanted`] says which layer needs a PLI (throttled per layer).
//! - **Sequence numbers** are gapless: packets the downtrack filters itself (padding,
//!   temporal layers above the target) shift an offset so they leave no hole. A switch
//!   continues at last + 1, or last + 2 when the last packet forwarded had no marker (its
//!   frame is incomplete; the skipped number makes the receiver see a loss instead of
//!   assembling a broken frame — mediasoup issue 408).
//! - **Timestamps** stay on one clock: the first layer ever forwarded is the reference;
//!   another layer's timestamps are mapped onto the reference's through both layers'
//!   sender reports ([`SrClock`]). A layer without a sender report can therefore be
//!   switched to only while it is the reference. Guard: if a switch keyframe's mapped
//!   timestamp is not after the last timestamp sent (clock skew, stale reports), the
//!   layer's offset is bumped so the keyframe goes out at last + 1 tick; later packets of
//!   that layer keep the bumped offset.
//! - **VP8**: frames with TID above the target maximum are dropped; the PictureID offset
//!   is decremented once per dropped picture so PictureIDs stay contiguous; TL0PICIDX is
//!   never touched by temporal filtering (only TID 0 frames advance it) and continues at
//!   last + 1 across a layer switch. A temporal up-switch happens only at a picture start
//!   with the layer-sync bit (Y=1), or at a keyframe. PictureIDs are tracked in the 15-bit
//!   domain and written with each packet's own field width (7-bit fields get the low 7
//!   bits).
//! - **NACK map**: a fixed ring of 512 compact (16-byte) entries (on the heap, allocated
//!   with the downtrack, so a leg table holds small legs) from output sequence
//!   number to the source layer, source sequence number and the rewritten timestamp and
//!   VP8 numbering, so a NACK is answered from the publisher layer's
//!   [`super::cache::PacketCache`] with the same header the original had, at most once per
//!   RTT per packet ([`DownTrack::nack_resend`]).
//!
//! Known limitations: a packet that arrives late (after a later packet of its layer) and
//! is itself filtered (padding, high TID) leaves a hole in the output sequence — its
//! number was already implied by the packets forwarded after it. The subscriber NACKs it,
//! the NACK map has nothing, and the subscriber eventually asks for a keyframe. A late
//! VP8 packet gets the PictureID offset in force when it arrives, which is one too low
//! per picture dropped (temporal filtering) between it and the newest packet.
//!
//! Sans-I/O: the caller passes `now`; nothing here allocates (but [`DownTrack::new`], once
//! per leg), locks or formats.

use std::time::{Duration, Instant};

use super::cache::PacketMeta;
use super::codec::{PayloadFacts, Vp8Rewrite};

/// Maximum number of simulcast layers (index 0 = lowest).
pub const MAX_LAYERS: usize = 3;
/// Entries in the NACK map (a power of two).
pub const NACK_RING: usize = 512;
/// Minimum interval between two keyframe requests for the same layer.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// The highest temporal layer id any codec here can carry (VP9: 3 bits).
pub const MAX_TID: u8 = 7;
/// Late packets after this many in-order filtered packets can no longer be placed.
const DROP_HISTORY: usize = 8;

const PID_MOD: u16 = 1 << 15;
const PID_MASK: u16 = PID_MOD - 1;

/// One sender report's clock mapping for a layer: the RTP timestamp that corresponds to
/// the NTP time (64-bit, 32.32 fixed point seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrClock {
    /// RTP timestamp of the report.
    pub rtp_ts: u32,
    /// NTP timestamp of the report.
    pub ntp: u64,
}

/// Why a packet is not forwarded to this subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// No target layer (the subscriber is paused).
    Paused,
    /// The layer index is not below [`MAX_LAYERS`].
    InvalidLayer,
    /// The packet's layer is neither current nor a switch target.
    NotCurrentLayer,
    /// A packet of the target layer before its keyframe.
    WaitingForKeyframe,
    /// The target layer's keyframe arrived but its timestamps cannot be mapped yet (no
    /// sender report for it or for the reference layer).
    NoSenderReport,
    /// A packet of the current layer older than the keyframe it was switched at.
    BeforeSwitch,
    /// A temporal layer above the allowed maximum.
    TemporalLayer,
    /// A padding-only packet (the downtrack sends its own padding when it needs to).
    Padding,
    /// A late packet whose output sequence number can no longer be determined.
    TooLate,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Do not forward.
    Drop(DropReason),
    /// Forward with these rewritten fields.
    Forward {
        /// Output sequence number.
        seq: u16,
        /// Output RTP timestamp.
        ts: u32,
        /// VP8 numbering to write into the payload copy (VP8 packets only).
        vp8: Option<Vp8Rewrite>,
        /// This packet is the keyframe the downtrack switched layers at.
        switched: bool,
    },
}

/// What the NACK map knows about one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackEntry {
    /// The output sequence number (as the subscriber saw it).
    pub out_seq: u16,
    /// The publisher layer the packet came from.
    pub layer: u8,
    /// Its extended sequence number in that layer (the key of the layer's packet cache).
    pub src_ext_seq: u64,
    /// The output timestamp it was sent with.
    pub ts: u32,
    /// The VP8 numbering it was sent with.
    pub vp8: Option<Vp8Rewrite>,
}

/// A compact NACK map entry: 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct NackSlot {
    /// Low 32 bits of the source extended sequence number.
    src_seq: u32,
    ts: u32,
    pid: u16,
    out_seq: u16,
    /// Milliseconds since the downtrack's epoch (wrapping) of the last resend.
    resent_ms: u16,
    tl0: u8,
    /// Bits 0-1 layer, then the `F_*` flags.
    flags: u8,
}

const F_VALID: u8 = 1 << 2;
const F_PID: u8 = 1 << 3;
const F_TL0: u8 = 1 << 4;
const F_RESENT: u8 = 1 << 5;

/// An in-order packet the downtrack filtered, with the sequence offset in force before.
#[derive(Debug, Clone, Copy, Default)]
struct DropMark {
    src: u64,
    offset_before: u64,
}

/// One subscriber's forwarding state for one simulcast track. See the module docs.
#[derive(Debug, Clone)]
pub struct DownTrack {
    clock_rate: u32,
    target: Option<u8>,
    current: Option<u8>,
    target_max_tid: u8,
    current_max_tid: u8,
    sr: [Option<SrClock>; MAX_LAYERS],
    last_pli: [Option<Instant>; MAX_LAYERS],
    /// Highest source sequence number seen per layer (to rebuild NACK entries).
    layer_highest: [Option<u64>; MAX_LAYERS],
    /// The timestamp reference layer (the first layer forwarded).
    ts_ref: Option<u8>,
    epoch: Option<Instant>,

    /// Highest output sequence number sent (extended); `None` before the first packet.
    last_out_seq: Option<u64>,
    /// Marker bit of the packet with `last_out_seq`.
    last_marker: bool,
    /// Timestamp of the packet with `last_out_seq`.
    last_out_ts: u32,
    /// When the packet with `last_out_seq` was forwarded.
    last_out_at: Option<Instant>,
    /// Added to every output timestamp: non-zero after [`DownTrack::restart_source`], so
    /// the new source continues the old one's timeline.
    ts_base: u32,
    /// out = src + seq_offset (wrapping) for in-order packets of the current layer.
    seq_offset: u64,
    /// out ts = src ts + ts_offset for the current layer.
    ts_offset: u32,
    /// Highest source sequence number processed on the current layer.
    src_highest: u64,
    /// Source sequence number of the current layer's switch keyframe.
    switch_src: u64,
    drops: [DropMark; DROP_HISTORY],
    drops_len: usize,
    /// Late packets at or below this source sequence number cannot be placed.
    forgotten_upto: Option<u64>,

    /// VP8 PictureID state (15-bit domain).
    pid_src_raw: u16,
    pid_src_ext: u16,
    pid_offset: u16,
    pid_out_last: Option<u16>,
    pid_started: bool,
    /// VP8 TL0PICIDX state.
    tl0_offset: u8,
    tl0_out_last: Option<u8>,

    /// The NACK map: a power-of-two ring indexed by output sequence number.
    nack: Box<[NackSlot]>,
}

/// `a` is after `b` in 32-bit wrapping order.
fn ts_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Signed distance from `b` to `a` in a counter `bits` wide.
fn sdiff(a: u16, b: u16, bits: u32) -> i32 {
    let m = 1i32 << bits;
    let d = (i32::from(a) - i32::from(b)).rem_euclid(m);
    if d >= m / 2 { d - m } else { d }
}

impl DownTrack {
    /// A downtrack for a track with RTP clock `clock_rate`, paused (no target layer), all
    /// temporal layers allowed. Allocates its NACK map of [`NACK_RING`] entries (8 KiB).
    pub fn new(clock_rate: u32) -> DownTrack {
        Self::with_nack_entries(clock_rate, NACK_RING)
    }

    /// [`DownTrack::new`] with a NACK map of `entries` (rounded up to a power of two,
    /// 16 to [`NACK_RING`]; 16 bytes each). A map longer than the publisher's packet
    /// cache only remembers packets the cache no longer holds: an audio leg, whose
    /// track's cache keeps 128 packets, needs 128 entries (2 KiB), not 512. `0`: no map
    /// at all (a subscriber that did not negotiate NACK), every lookup misses.
    pub fn with_nack_entries(clock_rate: u32, entries: usize) -> DownTrack {
        let n = match entries {
            0 => 0,
            e => e.clamp(16, NACK_RING).next_power_of_two(),
        };
        DownTrack {
            clock_rate: clock_rate.max(1),
            target: None,
            current: None,
            target_max_tid: MAX_TID,
            current_max_tid: MAX_TID,
            sr: [None; MAX_LAYERS],
            last_pli: [None; MAX_LAYERS],
            layer_highest: [None; MAX_LAYERS],
            ts_ref: None,
            epoch: None,
            last_out_seq: None,
            last_marker: true,
            last_out_ts: 0,
            last_out_at: None,
            ts_base: 0,
            seq_offset: 0,
            ts_offset: 0,
            src_highest: 0,
            switch_src: 0,
            drops: [DropMark::default(); DROP_HISTORY],
            drops_len: 0,
            forgotten_upto: None,
            pid_src_raw: 0,
            pid_src_ext: 0,
            pid_offset: 0,
            pid_out_last: None,
            pid_started: false,
            tl0_offset: 0,
            tl0_out_last: None,
            nack: vec![NackSlot::default(); n].into_boxed_slice(),
        }
    }

    /// Output sequence numbers the NACK map remembers.
    pub fn nack_entries(&self) -> usize {
        self.nack.len()
    }

    /// Sets the layer to converge to; `None` pauses (everything is dropped, and resuming
    /// waits for a keyframe). Layers ≥ [`MAX_LAYERS`] are clamped to the highest.
    pub fn set_target_layer(&mut self, layer: Option<u8>) {
        self.target = layer.map(|l| l.min(MAX_LAYERS as u8 - 1));
        if self.target.is_none() {
            self.current = None;
        }
    }

    /// The layer being converged to.
    pub fn target_layer(&self) -> Option<u8> {
        self.target
    }

    /// The layer being forwarded.
    pub fn current_layer(&self) -> Option<u8> {
        self.current
    }

    /// The downtrack moves to another publisher track: its layers, their clocks and the
    /// timestamp reference are forgotten, output numbering continues. The next packet
    /// forwarded is a keyframe of the target layer (a switch), numbered after the last one
    /// sent, with a timestamp advanced by the wall-clock time elapsed since then.
    pub fn restart_source(&mut self) {
        self.current = None;
        self.ts_ref = None;
        self.sr = [None; MAX_LAYERS];
        self.last_pli = [None; MAX_LAYERS];
        self.layer_highest = [None; MAX_LAYERS];
        self.pid_started = false;
        self.drops_len = 0;
        self.forgotten_upto = None;
    }

    /// Sets the highest temporal layer to forward. Lowering takes effect at once; raising
    /// waits for a temporal switch point.
    pub fn set_target_max_tid(&mut self, tid: u8) {
        self.target_max_tid = tid.min(MAX_TID);
        self.current_max_tid = self.current_max_tid.min(self.target_max_tid);
    }

    /// The highest temporal layer currently forwarded.
    pub fn current_max_tid(&self) -> u8 {
        self.current_max_tid
    }

    /// Records the latest sender report of `layer` (ignored for an invalid layer).
    pub fn set_sender_report(&mut self, layer: u8, sr: SrClock) {
        if let Some(s) = self.sr.get_mut(usize::from(layer)) {
            *s = Some(sr);
        }
    }

    /// Whether a keyframe of `layer` could be switched to now (timestamps mappable).
    pub fn can_switch_to(&self, layer: u8) -> bool {
        let l = usize::from(layer);
        if l >= MAX_LAYERS {
            return false;
        }
        match self.ts_ref {
            None => true,
            Some(r) if r == layer => true,
            Some(r) => {
                self.sr.get(l).is_some_and(|s| s.is_some())
                    && self.sr.get(usize::from(r)).is_some_and(|s| s.is_some())
            }
        }
    }

    /// The layer a keyframe request (PLI) should go to, if one is needed now: the target
    /// differs from the current layer and could be switched to. At most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`] per layer; a returned layer counts as requested.
    pub fn keyframe_wanted(&mut self, now: Instant) -> Option<u8> {
        let target = self.target?;
        if self.current == Some(target) || !self.can_switch_to(target) {
            return None;
        }
        let last = self.last_pli.get_mut(usize::from(target))?;
        if last.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
            return None;
        }
        *last = Some(now);
        Some(target)
    }

    /// Maps `layer`'s RTP time onto the reference layer's: the offset to add to `layer`'s
    /// timestamps. `None` when a sender report is missing.
    fn layer_ts_offset(&self, layer: u8) -> Option<u32> {
        let r = self.ts_ref?;
        if r == layer {
            return Some(0);
        }
        let sl = (*self.sr.get(usize::from(layer))?)?;
        let sr = (*self.sr.get(usize::from(r))?)?;
        // t_ref = sr.rtp + (t_L - sl.rtp) + (sl.ntp - sr.ntp) * clock.
        let dntp = i128::from(sl.ntp) - i128::from(sr.ntp);
        let ticks = (dntp * i128::from(self.clock_rate)).div_euclid(1i128 << 32);
        // Truncation to 32 bits is the wrapping arithmetic of RTP timestamps.
        Some(
            sr.rtp_ts
                .wrapping_sub(sl.rtp_ts)
                .wrapping_add(ticks as i64 as u32),
        )
    }

    /// Starts forwarding `layer` at its keyframe `meta`. `false` when the timestamps
    /// cannot be mapped.
    fn switch_to(
        &mut self,
        layer: u8,
        meta: &PacketMeta,
        facts: &PayloadFacts,
        now: Instant,
    ) -> bool {
        if self.ts_ref.is_none() {
            self.ts_ref = Some(layer);
            if let Some(at) = self.last_out_at {
                // A new source after `restart_source`: continue the old timeline, advanced
                // by the wall-clock time since the last packet (at least one tick).
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                self.ts_base = self
                    .last_out_ts
                    .wrapping_add(ticks)
                    .wrapping_sub(meta.timestamp);
            }
        }
        let Some(mut ts_offset) = self
            .layer_ts_offset(layer)
            .map(|o| o.wrapping_add(self.ts_base))
        else {
            return false;
        };
        if self.last_out_seq.is_some() {
            let mapped = meta.timestamp.wrapping_add(ts_offset);
            if !ts_after(mapped, self.last_out_ts) {
                ts_offset =
                    ts_offset.wrapping_add(self.last_out_ts.wrapping_add(1).wrapping_sub(mapped));
            }
        }
        let next_out = match self.last_out_seq {
            Some(last) => last.wrapping_add(if self.last_marker { 1 } else { 2 }),
            None => meta.ext_seq,
        };
        self.current = Some(layer);
        self.ts_offset = ts_offset;
        self.seq_offset = next_out.wrapping_sub(meta.ext_seq);
        // The keyframe itself is in order (`on_packet` checks `switched`).
        self.src_highest = meta.ext_seq;
        self.switch_src = meta.ext_seq;
        self.drops_len = 0;
        self.forgotten_upto = None;
        self.current_max_tid = self.target_max_tid;
        if let Some(d) = facts.vp8() {
            if let Some(p) = d.picture_id {
                self.pid_src_raw = p;
                self.pid_src_ext = p & PID_MASK;
                let next = self.pid_out_last.map_or(p, |l| l.wrapping_add(1)) & PID_MASK;
                self.pid_offset = next.wrapping_sub(p) & PID_MASK;
                self.pid_started = true;
            }
            if let Some(t) = d.tl0picidx {
                let next = self.tl0_out_last.map_or(t, |l| l.wrapping_add(1));
                self.tl0_offset = next.wrapping_sub(t);
            }
        }
        true
    }

    /// The sequence offset in force for a late packet `src` (older than `src_highest`).
    fn late_offset(&self, src: u64) -> Option<u64> {
        if self.forgotten_upto.is_some_and(|f| src <= f) {
            return None;
        }
        let marks = self.drops.get(..self.drops_len)?;
        Some(
            marks
                .iter()
                .find(|m| m.src > src)
                .map_or(self.seq_offset, |m| m.offset_before),
        )
    }

    /// Records an in-order filtered packet: later packets move down by one.
    fn filter_in_order(&mut self, src: u64) {
        if self.drops_len == DROP_HISTORY {
            self.forgotten_upto = Some(self.drops[0].src);
            self.drops.copy_within(1.., 0);
            self.drops_len -= 1;
        }
        if let Some(m) = self.drops.get_mut(self.drops_len) {
            *m = DropMark {
                src,
                offset_before: self.seq_offset,
            };
            self.drops_len += 1;
        }
        self.seq_offset = self.seq_offset.wrapping_sub(1);
        self.src_highest = src;
    }

    /// Decides what to do with a packet of publisher layer `layer`. `meta` carries the
    /// packet's extended sequence number, timestamp, marker and codec flags (keyframe,
    /// TID, layer sync; see [`PayloadFacts::fill_meta`]); `facts` the parsed payload (for
    /// VP8 numbering). Each packet must be passed once (the packet cache refuses
    /// duplicates).
    pub fn on_packet(
        &mut self,
        layer: u8,
        meta: &PacketMeta,
        facts: &PayloadFacts,
        now: Instant,
    ) -> Verdict {
        let Some(highest) = self.layer_highest.get_mut(usize::from(layer)) else {
            return Verdict::Drop(DropReason::InvalidLayer);
        };
        if highest.is_none_or(|h| meta.ext_seq > h) {
            *highest = Some(meta.ext_seq);
        }
        self.epoch.get_or_insert(now);
        let Some(target) = self.target else {
            return Verdict::Drop(DropReason::Paused);
        };
        let mut switched = false;
        if self.current != Some(layer) {
            if layer != target {
                return Verdict::Drop(DropReason::NotCurrentLayer);
            }
            // A switch point must itself be forwarded: not padding, not above the
            // temporal target.
            if !meta.keyframe
                || meta.is_padding()
                || meta.tid.is_some_and(|t| t > self.target_max_tid)
            {
                return Verdict::Drop(DropReason::WaitingForKeyframe);
            }
            if !self.switch_to(layer, meta, facts, now) {
                return Verdict::Drop(DropReason::NoSenderReport);
            }
            switched = true;
        }
        let src = meta.ext_seq;
        if src < self.switch_src {
            return Verdict::Drop(DropReason::BeforeSwitch);
        }
        let in_order = switched || src > self.src_highest;

        // Temporal layers: a keyframe resets to the target; an up-switch needs a sync
        // point at a picture start.
        let vp8 = facts.vp8();
        let picture_start = vp8.is_none_or(|d| d.starts_picture());
        let mut filtered = None;
        if meta.is_padding() {
            filtered = Some(DropReason::Padding);
        } else if let Some(tid) = meta.tid {
            if in_order && meta.keyframe {
                self.current_max_tid = self.target_max_tid;
            } else if in_order
                && tid > self.current_max_tid
                && tid <= self.target_max_tid
                && meta.layer_sync
                && picture_start
            {
                self.current_max_tid = tid;
            }
            if tid > self.current_max_tid {
                filtered = Some(DropReason::TemporalLayer);
            }
        }
        if let Some(reason) = filtered {
            if in_order {
                self.filter_in_order(src);
                // A dropped VP8 picture: later PictureIDs move down by one.
                if let Some(p) = vp8.and_then(|d| d.picture_id.map(|p| (p, d))) {
                    let (p, d) = p;
                    let bits = if d.picture_id_15bit { 15 } else { 7 };
                    let diff = sdiff(p, self.pid_src_raw, bits);
                    if self.pid_started && diff > 0 {
                        self.pid_src_raw = p;
                        self.pid_src_ext = self.pid_src_ext.wrapping_add(diff as u16) & PID_MASK;
                        self.pid_offset = self.pid_offset.wrapping_sub(1) & PID_MASK;
                    }
                }
            }
            return Verdict::Drop(reason);
        }

        let offset = if in_order {
            self.seq_offset
        } else {
            match self.late_offset(src) {
                Some(o) => o,
                None => return Verdict::Drop(DropReason::TooLate),
            }
        };
        let out = src.wrapping_add(offset);
        let ts = meta.timestamp.wrapping_add(self.ts_offset);
        if in_order {
            self.src_highest = src;
        }
        if self.last_out_seq.is_none_or(|l| out > l) {
            self.last_out_seq = Some(out);
            self.last_out_at = Some(now);
            self.last_marker = meta.marker;
            self.last_out_ts = ts;
        }

        let rewrite = vp8.map(|d| {
            let picture_id = d.picture_id.map(|p| {
                if !self.pid_started {
                    // A VP8 stream whose first packets lacked a PictureID.
                    self.pid_started = true;
                    self.pid_src_raw = p;
                    self.pid_src_ext = p & PID_MASK;
                }
                let bits = if d.picture_id_15bit { 15 } else { 7 };
                let diff = sdiff(p, self.pid_src_raw, bits);
                let ext =
                    (i32::from(self.pid_src_ext) + diff).rem_euclid(i32::from(PID_MOD)) as u16;
                if diff > 0 {
                    self.pid_src_raw = p;
                    self.pid_src_ext = ext;
                }
                let o = ext.wrapping_add(self.pid_offset) & PID_MASK;
                if self.pid_out_last.is_none_or(|l| sdiff(o, l, 15) > 0) {
                    self.pid_out_last = Some(o);
                }
                o
            });
            let tl0picidx = d.tl0picidx.map(|t| {
                let o = t.wrapping_add(self.tl0_offset);
                if self
                    .tl0_out_last
                    .is_none_or(|l| o != l && o.wrapping_sub(l) < 0x80)
                {
                    self.tl0_out_last = Some(o);
                }
                o
            });
            Vp8Rewrite {
                picture_id,
                tl0picidx,
            }
        });
        self.record(out as u16, layer, src, ts, rewrite);
        Verdict::Forward {
            seq: out as u16,
            ts,
            vp8: rewrite,
            switched,
        }
    }

    fn record(&mut self, out_seq: u16, layer: u8, src: u64, ts: u32, vp8: Option<Vp8Rewrite>) {
        let mut flags = (layer & 0x03) | F_VALID;
        let (mut pid, mut tl0) = (0, 0);
        if let Some(v) = vp8 {
            if let Some(p) = v.picture_id {
                pid = p;
                flags |= F_PID;
            }
            if let Some(t) = v.tl0picidx {
                tl0 = t;
                flags |= F_TL0;
            }
        }
        if let Some(slot) = self
            .nack
            .get_mut(usize::from(out_seq) & self.nack.len().wrapping_sub(1))
        {
            *slot = NackSlot {
                // The low 32 bits; rebuilt against the layer's highest in `nack_lookup`.
                src_seq: src as u32,
                ts,
                pid,
                out_seq,
                resent_ms: 0,
                tl0,
                flags,
            };
        }
    }

    fn slot(&self, out_seq: u16) -> Option<&NackSlot> {
        self.nack
            .get(usize::from(out_seq) & self.nack.len().wrapping_sub(1))
            .filter(|s| s.flags & F_VALID != 0 && s.out_seq == out_seq)
    }

    /// What was forwarded as `out_seq`, if it is still in the NACK map (the last
    /// [`DownTrack::nack_entries`] output sequence numbers).
    pub fn nack_lookup(&self, out_seq: u16) -> Option<NackEntry> {
        let s = self.slot(out_seq)?;
        let layer = s.flags & 0x03;
        let highest = (*self.layer_highest.get(usize::from(layer))?)?;
        let mut src = (highest & !0xffff_ffff) | u64::from(s.src_seq);
        if src > highest {
            src = src.checked_sub(1 << 32)?;
        }
        let has_vp8 = s.flags & (F_PID | F_TL0) != 0;
        Some(NackEntry {
            out_seq,
            layer,
            src_ext_seq: src,
            ts: s.ts,
            vp8: has_vp8.then_some(Vp8Rewrite {
                picture_id: (s.flags & F_PID != 0).then_some(s.pid),
                tl0picidx: (s.flags & F_TL0 != 0).then_some(s.tl0),
            }),
        })
    }

    /// Like [`DownTrack::nack_lookup`], but answers a packet at most once per `rtt`: a
    /// second NACK for the same packet within `rtt` of the last resend yields `None`.
    /// A returned entry counts as resent at `now`.
    pub fn nack_resend(&mut self, out_seq: u16, now: Instant, rtt: Duration) -> Option<NackEntry> {
        let entry = self.nack_lookup(out_seq)?;
        let epoch = *self.epoch.get_or_insert(now);
        // Wrapping milliseconds; an RTT above 65 s is treated as 65 s.
        let now_ms = now.saturating_duration_since(epoch).as_millis() as u16;
        let rtt_ms = rtt.as_millis().min(u128::from(u16::MAX)) as u16;
        let slot = self
            .nack
            .get_mut(usize::from(out_seq) & self.nack.len().wrapping_sub(1))?;
        if slot.flags & F_RESENT != 0 && now_ms.wrapping_sub(slot.resent_ms) < rtt_ms {
            return None;
        }
        slot.flags |= F_RESENT;
        slot.resent_ms = now_ms;
        Some(entry)
    }
}

#[cfg(test)]
mod tests;
