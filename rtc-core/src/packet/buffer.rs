//! The depacketizing buffer: reorders packets and assembles complete frames.

use core::ops::RangeInclusive;
use std::time::Instant;

use thiserror::Error;

use super::{CodecDepacketizer, CodecExtra, Depacketizer, PacketError};

/// Metadata of one RTP packet given to [`DepacketizingBuffer::push`].
///
/// `R` is the receive timestamp type ([`Instant`] by default); the buffer only copies and
/// compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta<R = Instant> {
    /// Extended (unwrapped) RTP sequence number.
    pub seq: u64,
    /// Extended (unwrapped) RTP timestamp.
    pub time: u64,
    /// RTP marker bit.
    pub marker: bool,
    /// When the packet was received.
    pub received: R,
}

/// A complete frame emitted by [`DepacketizingBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<R = Instant> {
    /// Extended RTP timestamp of the frame.
    pub time: u64,
    /// The depacketized frame (codec bitstream, see the codec modules).
    pub data: Vec<u8>,
    /// Sequence numbers of the packets that made the frame.
    pub seq_range: RangeInclusive<u64>,
    /// No frame was lost between the previously emitted frame and this one.
    pub contiguous: bool,
    /// The frame is independently decodable.
    pub keyframe: bool,
    /// Latest receive time among the frame's packets.
    pub received: R,
    /// Per-codec fields.
    pub extra: CodecExtra,
}

/// Errors from `DepacketizingBuffer::pop`. The offending frame has been dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DepackError {
    /// A packet of the frame could not be depacketized.
    #[error("depacketizing packet {seq}: {source}")]
    Depacketize {
        /// Sequence number of the first packet of the frame.
        seq: u64,
        /// The payload error.
        source: PacketError,
    },
}

/// What [`DepacketizingBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored.
    Accepted,
    /// A packet with this sequence number is already stored; ignored.
    Duplicate,
    /// Older than the last emitted frame or outside the buffer window; ignored.
    TooOld,
}

/// Tuning of a [`DepacketizingBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepackConfig {
    /// Number of packet slots (the sequence-number window). Default 2000.
    pub capacity: usize,
    /// An incomplete frame is given up once this many complete frames wait behind it.
    /// Default 3.
    pub max_frames_ahead: usize,
    /// An incomplete frame is given up once the newest packet is this many sequence
    /// numbers past it, even with fewer complete frames waiting. Default 500.
    pub max_seq_distance: u64,
}

impl Default for DepackConfig {
    fn default() -> Self {
        Self {
            capacity: 2000,
            max_frames_ahead: 3,
            max_seq_distance: 500,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta<R> {
    seq: u64,
    time: u64,
    received: R,
    head: bool,
    tail: bool,
    key: bool,
    /// Empty payload (RTP padding): skipped, counts as a frame boundary.
    padding: bool,
}

#[derive(Debug, Clone)]
struct Slot<R> {
    meta: Option<SlotMeta<R>>,
    /// Kept between uses so steady-state pushes do not allocate.
    payload: Vec<u8>,
}

/// Reorders RTP payloads of one stream and emits complete frames in order.
///
/// Fixed capacity: packets are stored in a ring indexed by sequence number and never more
/// than [`DepackConfig::capacity`] are kept. Payload buffers are reused, so pushes do not
/// allocate once every slot has held a packet of the stream's typical size.
///
/// Push every received packet, including padding-only packets (with an empty payload), so
/// that sequence-number gaps mean loss.
#[derive(Debug, Clone)]
pub struct DepacketizingBuffer<R = Instant> {
    depack: CodecDepacketizer,
    cfg: DepackConfig,
    slots: Vec<Slot<R>>,
    /// Every sequence number below this one is finished (emitted or dropped).
    next: Option<u64>,
    /// Lowest sequence number pushed before the first frame was emitted.
    first_seq: Option<u64>,
    max_seq: Option<u64>,
    /// Something was dropped since the last emitted frame.
    lost: bool,
    needs_keyframe: bool,
}

impl<R: Copy + Ord> DepacketizingBuffer<R> {
    /// An empty buffer reassembling frames with `depack` (see [`CodecDepacketizer::new`]).
    /// A capacity of 0 is treated as 1.
    pub fn new(depack: CodecDepacketizer, config: DepackConfig) -> Self {
        let cap = config.capacity.max(1);
        let cfg = DepackConfig {
            capacity: cap,
            ..config
        };
        Self {
            depack,
            cfg,
            slots: (0..cap)
                .map(|_| Slot {
                    meta: None,
                    payload: Vec::new(),
                })
                .collect(),
            next: None,
            first_seq: None,
            max_seq: None,
            lost: false,
            needs_keyframe: false,
        }
    }

    /// Whether the decoder needs a keyframe: a frame was lost or could not be
    /// depacketized (or the first emitted frame was not a keyframe), and no keyframe has
    /// been emitted since. Use it to decide when to send PLI/FIR.
    pub fn needs_keyframe(&self) -> bool {
        self.needs_keyframe
    }

    fn cap(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> Option<&SlotMeta<R>> {
        let i = (seq % self.cap()) as usize;
        self.slots
            .get(i)
            .and_then(|s| s.meta.as_ref())
            .filter(|m| m.seq == seq)
    }

    fn clear(&mut self, seq: u64) -> bool {
        let i = (seq % self.cap()) as usize;
        match self.slots.get_mut(i) {
            Some(s) if s.meta.is_some_and(|m| m.seq == seq) => {
                s.meta = None;
                true
            }
            _ => false,
        }
    }

    /// Stores one packet. `payload` is copied into a reused slot buffer.
    pub fn push(&mut self, meta: PacketMeta<R>, payload: &[u8]) -> PushOutcome {
        let seq = meta.seq;
        if self.next.is_some_and(|n| seq < n) {
            return PushOutcome::TooOld;
        }
        let cap = self.cap();
        if let Some(m) = self.max_seq {
            if seq.saturating_add(cap) <= m {
                return PushOutcome::TooOld;
            }
            if seq > m {
                self.evict_up_to(m, seq);
            }
        }
        if self.slot(seq).is_some() {
            return PushOutcome::Duplicate;
        }
        let padding = payload.is_empty();
        let slot_meta = SlotMeta {
            seq,
            time: meta.time,
            received: meta.received,
            head: !padding && self.depack.is_partition_head(payload),
            tail: !padding && self.depack.is_partition_tail(meta.marker, payload),
            key: !padding && self.depack.is_keyframe(payload),
            padding,
        };
        let i = (seq % cap) as usize;
        if let Some(s) = self.slots.get_mut(i) {
            if s.meta.is_some_and(|m| !m.padding) {
                // Only reachable for a slot the eviction above did not reach.
                self.lost = true;
                self.needs_keyframe = true;
            }
            s.meta = Some(slot_meta);
            s.payload.clear();
            s.payload.extend_from_slice(payload);
        }
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        if self.next.is_none() {
            self.first_seq = Some(self.first_seq.map_or(seq, |f| f.min(seq)));
        }
        PushOutcome::Accepted
    }

    /// The newest sequence number moves from `old_max` to `new_max`: drop what falls out
    /// of the window.
    fn evict_up_to(&mut self, old_max: u64, new_max: u64) {
        let cap = self.cap();
        // Lowest sequence number still inside the window after the move.
        let lo = new_max.saturating_sub(cap - 1);
        let from = old_max
            .saturating_add(1)
            .max(new_max.saturating_sub(cap - 1));
        let mut dropped = false;
        if new_max - old_max >= cap {
            for s in &mut self.slots {
                dropped |= s.meta.take().is_some_and(|m| !m.padding);
            }
        } else {
            for s in from..=new_max {
                let i = (s % cap) as usize;
                if let Some(slot) = self.slots.get_mut(i)
                    && slot.meta.is_some_and(|m| m.seq < lo)
                {
                    dropped |= slot.meta.take().is_some_and(|m| !m.padding);
                }
            }
        }
        if self.next.is_some_and(|n| n < lo) {
            // Sequence numbers next..lo were never completed: that is loss.
            dropped = true;
            self.next = Some(lo);
        }
        if self.first_seq.is_some_and(|f| f < lo) {
            self.first_seq = Some(lo);
        }
        if dropped {
            self.lost = true;
            self.needs_keyframe = true;
        }
    }

    /// Emits the next complete frame, if any, in sequence order.
    ///
    /// A frame is complete when every packet from its head to its tail is present and
    /// they share one timestamp. An incomplete frame ahead of a complete one is given up
    /// (and the complete one reported with `contiguous == false`) once
    /// [`DepackConfig::max_frames_ahead`] complete frames wait behind it or the newest
    /// packet is [`DepackConfig::max_seq_distance`] past it.
    ///
    /// On `Some(Err(_))` the broken frame has been dropped; call again for later frames.
    pub fn pop(&mut self) -> Option<Result<Frame<R>, DepackError>> {
        let hi = self.max_seq?;
        // Consume padding at the front.
        if let Some(mut n) = self.next {
            while self.slot(n).is_some_and(|m| m.padding) {
                self.clear(n);
                n = n.saturating_add(1);
            }
            self.next = Some(n);
        }
        // Where the next frame should start: after the last emitted one, or at the
        // lowest packet seen so far.
        let origin = self.next.or(self.first_seq)?;
        let lo = origin;
        if lo > hi {
            return None;
        }
        let strong_head = self.depack.head_is_frame_start();
        let mut first: Option<(u64, u64)> = None;
        let mut complete = 0usize;
        let mut cur: Option<(u64, u64)> = None;
        let mut prev: Option<SlotMeta<R>> = None;
        for s in lo..=hi {
            let Some(&m) = self.slot(s) else {
                cur = None;
                prev = None;
                continue;
            };
            if m.padding {
                cur = None;
                prev = Some(m);
                continue;
            }
            let boundary = s == origin
                || strong_head
                || prev.is_some_and(|p| p.padding || p.tail || p.time != m.time);
            if m.head && boundary {
                cur = Some((s, m.time));
            } else if cur.is_some_and(|(_, t)| t != m.time) {
                cur = None;
            }
            if let (Some((h, _)), true) = (cur, m.tail) {
                complete += 1;
                if first.is_none() {
                    first = Some((h, s));
                }
                cur = None;
                if complete >= self.cfg.max_frames_ahead.max(1) {
                    break;
                }
            }
            prev = Some(m);
        }
        let (h, t) = first?;
        if h != origin {
            let far = hi.saturating_sub(origin) >= self.cfg.max_seq_distance;
            if complete < self.cfg.max_frames_ahead && !far {
                return None;
            }
            self.lost = true;
            self.needs_keyframe = true;
        }
        let first_frame = self.next.is_none();
        let contiguous = !self.lost;
        let mut data = Vec::new();
        let mut extra = CodecExtra::None;
        let mut keyframe = false;
        let mut received: Option<R> = None;
        let mut time = 0;
        let mut result = Ok(());
        for s in h..=t {
            let i = (s % self.cap()) as usize;
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            let Some(m) = slot.meta else { continue };
            keyframe |= m.key;
            time = m.time;
            received = Some(received.map_or(m.received, |r| r.max(m.received)));
            if let Err(e) = self
                .depack
                .depacketize(&slot.payload, &mut data, &mut extra)
            {
                result = Err(e);
                break;
            }
        }
        let fin = self.depack.finish(&mut data);
        if result.is_ok() {
            result = fin;
        }
        for s in lo..=t {
            self.clear(s);
        }
        self.next = Some(t.saturating_add(1));
        self.first_seq = None;
        if let Err(source) = result {
            self.lost = true;
            self.needs_keyframe = true;
            return Some(Err(DepackError::Depacketize { seq: h, source }));
        }
        let received = received?; // h..=t are all present, so at least one packet was read
        self.lost = false;
        if keyframe {
            self.needs_keyframe = false;
        } else if !contiguous || first_frame {
            self.needs_keyframe = true;
        }
        Some(Ok(Frame {
            time,
            data,
            seq_range: h..=t,
            contiguous,
            keyframe,
            received,
            extra,
        }))
    }
}
