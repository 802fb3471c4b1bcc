//! Per-subscriber-leg RTP rewriting for SFU forwarding.
//!
//! A publisher's packet is decrypted once by its `Rtc`; for every subscriber leg the engine
//! writes a new plaintext packet straight into the subscriber `Rtc`'s send buffer with the
//! leg's own SSRC, the payload type the subscriber negotiated for the same codec, and the
//! sequence number, timestamp (and VP8 PictureID / TL0PICIDX) the leg's
//! [`DownTrack`](crate::sfu::DownTrack) chose ([`write_forwarded`]); the `Rtc` encrypts it.
//!
//! Header extensions: their ids are negotiated per peer connection. Hop-by-hop ones
//! (transport-cc, abs-send-time) and stream ids are not forwarded; a leg whose
//! subscriber negotiated transport-cc writes its own (numbered by the subscriber's
//! `Rtc` as the packet leaves). The end-to-end ones in
//! [`FwdExt`] (audio level, video orientation, playout delay, abs-capture-time, the AV1
//! dependency descriptor) are parsed from the publisher's packet with the publisher's map
//! and written with the subscriber's ids when it negotiated them
//! ([`LegParams::with_forwarded_extensions`], built once per leg). The dependency
//! descriptor is forwarded as opaque bytes: [`FwdExt`] records where it lies in the
//! publisher's packet ([`ExtRange`]), and each leg copies it from there. When the
//! subscriber negotiated the `mid` extension, the leg writes its own mid so that receivers
//! can demultiplex by mid (RFC 8843).
//!
//! [`SeqTsRewriter`] and [`rewrite_for_leg`] are the earlier single-stream rewriting (no
//! layers), kept for tools and tests; the shard forwards through downtracks.
//!
//! Opus RED (RFC 2198): a publisher's RED packets go to a subscriber that negotiated RED
//! as RED (the block payload types rewritten in place to the subscriber's Opus number),
//! and to one that did not as plain Opus: the primary block only, under the subscriber's
//! Opus payload type ([`PtMap::from_payloads`] decides per leg).
//!
//! Nothing here allocates per packet.

use std::time::Instant;

use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::red::{RedPayload, rewrite_block_pts};
use rtc_core::rtp::{
    AbsCaptureTime, AudioLevel, Extension, ExtensionMap, ExtensionValues, HeaderExtension,
    PlayoutDelay, RtpHeader, RtpPacket, VideoOrientation,
};
use rtc_core::sdp::Codec;

use crate::sfu::{Vp8Desc, Vp8Rewrite};

/// A negotiated payload type of one media section, as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadDesc {
    /// The payload type number.
    pub pt: u8,
    /// Its codec.
    pub codec: Codec,
    /// RTP clock rate.
    pub clock_rate: u32,
}

/// Marker for "no mapping" in a [`PtMap`].
const UNMAPPED: u8 = 0xff;

/// Distinct clock rates a [`PtMap`] tells apart (a section rarely has more than
/// three: 90 kHz video, 48 kHz Opus, 8 kHz telephony and telephone-event).
const CLOCKS: usize = 8;

/// Maps a publisher's payload types to a subscriber's, with the clock rate of each source
/// payload type (used to keep timestamps continuous across source switches). 290 bytes
/// (one per leg): clock rates by index into a small table, not 128 `u32`s.
#[derive(Clone)]
pub struct PtMap {
    map: [u8; 128],
    /// Index into `clocks` per publisher payload type (0: the kind's default).
    clock_of: [u8; 128],
    /// `clocks[0]` is the media kind's default rate; the first `clocks_used` are set.
    clocks: [u32; CLOCKS],
    clocks_used: u8,
    /// The publisher's RED payload type ([`UNMAPPED`]: none mapped).
    red_src: u8,
    /// RED is reduced to its primary encoding (the subscriber did not negotiate RED).
    red_reduce: bool,
}

impl std::fmt::Debug for PtMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (src, dst) in self.map.iter().enumerate() {
            if *dst != UNMAPPED {
                m.entry(&src, dst);
            }
        }
        m.finish()
    }
}

/// The default RTP clock rate of a media kind, used when nothing was negotiated.
pub fn default_clock_rate(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 48_000,
        MediaKind::Video => 90_000,
    }
}

impl PtMap {
    /// Every payload type maps to itself (used when either side negotiated no codecs,
    /// e.g. sessions set up through the direct API).
    pub fn identity(kind: MediaKind) -> PtMap {
        let mut map = [0u8; 128];
        for (i, m) in map.iter_mut().enumerate() {
            *m = i as u8;
        }
        PtMap {
            map,
            clock_of: [0; 128],
            clocks: [default_clock_rate(kind); CLOCKS],
            clocks_used: 1,
            red_src: UNMAPPED,
            red_reduce: false,
        }
    }

    /// Records `rate` as the clock of publisher payload type `pt`. A ninth distinct rate
    /// (never seen in a real offer) keeps the kind's default.
    fn set_clock(&mut self, pt: u8, rate: u32) {
        let used = usize::from(self.clocks_used);
        let idx = match self
            .clocks
            .get(..used)
            .and_then(|c| c.iter().position(|&c| c == rate))
        {
            Some(i) => i,
            None if used < CLOCKS => {
                if let Some(c) = self.clocks.get_mut(used) {
                    *c = rate;
                }
                self.clocks_used += 1;
                used
            }
            None => return,
        };
        if let Some(c) = self.clock_of.get_mut(usize::from(pt)) {
            *c = idx as u8;
        }
    }

    /// Maps each publisher payload type to the subscriber's payload type of the same codec.
    /// Repair formats (RTX, FEC) are not mapped: their payloads embed the publisher's
    /// sequence numbers or payload types, which the leg rewrites. RED maps to the
    /// subscriber's RED when it has one (the leg rewrites the block payload types), else
    /// to its Opus (the leg sends the primary block only). When either list is empty the
    /// map is the identity.
    pub fn from_payloads(
        kind: MediaKind,
        publisher: &[PayloadDesc],
        subscriber: &[PayloadDesc],
    ) -> PtMap {
        if publisher.is_empty() || subscriber.is_empty() {
            return PtMap::identity(kind);
        }
        let mut pm = PtMap {
            map: [UNMAPPED; 128],
            ..PtMap::identity(kind)
        };
        for p in publisher {
            let Some(slot) = pm.map.get_mut(usize::from(p.pt)) else {
                continue;
            };
            if p.codec == Codec::Red {
                let red = subscriber.iter().find(|s| s.codec == Codec::Red);
                let opus = subscriber.iter().find(|s| s.codec == Codec::Opus);
                if let Some(s) = red.or(opus) {
                    *slot = s.pt;
                    pm.red_src = p.pt;
                    pm.red_reduce = red.is_none();
                }
                pm.set_clock(p.pt, p.clock_rate);
                continue;
            }
            if p.codec.is_repair() {
                continue;
            }
            if let Some(s) = subscriber.iter().find(|s| s.codec.same_as(&p.codec)) {
                *slot = s.pt;
            }
            pm.set_clock(p.pt, p.clock_rate);
        }
        pm
    }

    /// The subscriber payload type for a publisher payload type.
    pub fn get(&self, pt: u8) -> Option<u8> {
        match self.map.get(usize::from(pt)) {
            Some(&UNMAPPED) | None => None,
            Some(&m) => Some(m),
        }
    }

    /// What the leg does with the publisher payload type `pt` if it is the mapped RED
    /// one: `Some(true)` reduce to the primary encoding, `Some(false)` forward as RED.
    pub fn red(&self, pt: u8) -> Option<bool> {
        (pt == self.red_src && self.red_src != UNMAPPED).then_some(self.red_reduce)
    }

    /// The clock rate of a publisher payload type.
    pub fn clock_rate(&self, pt: u8) -> u32 {
        self.clock_of
            .get(usize::from(pt))
            .and_then(|&i| self.clocks.get(usize::from(i)))
            .copied()
            .unwrap_or(90_000)
    }
}

/// Bit set of the payload types of repair formats (RTX, FEC) in a payload list. RED is
/// not one here: it carries the media itself (its primary block) and is forwarded.
pub fn repair_pts(payloads: &[PayloadDesc]) -> u128 {
    payloads
        .iter()
        .filter(|p| p.codec.is_repair() && p.codec != Codec::Red && p.pt < 128)
        .fold(0u128, |acc, p| acc | (1u128 << p.pt))
}

/// Keeps one leg's sequence numbers and timestamps continuous across source changes.
#[derive(Debug, Clone, Default)]
pub struct SeqTsRewriter {
    /// Identity of the current source (publisher stream id and SSRC); `None` before the
    /// first packet.
    source: Option<(u64, u32)>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest sequence number sent (wrapping order).
    max_seq: u16,
    /// Timestamp of the packet with `max_seq`.
    last_ts: u32,
    /// When the packet with `max_seq` was forwarded.
    last_at: Option<Instant>,
}

impl SeqTsRewriter {
    /// Rewrites `(seq, ts)` of a packet from `source` (an identity of the publisher stream
    /// and its SSRC). A change of source re-bases both offsets: the first packet of the new
    /// source follows the last one sent with the next sequence number and a timestamp
    /// advanced by the wall-clock time elapsed since then (at `clock_rate`, at least one
    /// tick).
    pub fn rewrite(
        &mut self,
        source: (u64, u32),
        seq: u16,
        ts: u32,
        clock_rate: u32,
        now: Instant,
    ) -> (u16, u32) {
        match self.source {
            Some(s) if s == source => {}
            Some(_) => {
                let elapsed = self
                    .last_at
                    .map(|t| now.saturating_duration_since(t))
                    .unwrap_or_default();
                let ticks = (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                self.seq_offset = self.max_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = self.last_ts.wrapping_add(ticks).wrapping_sub(ts);
                self.source = Some(source);
                self.max_seq = seq.wrapping_add(self.seq_offset).wrapping_sub(1);
            }
            None => {
                self.source = Some(source);
                self.seq_offset = 0;
                self.ts_offset = 0;
                self.max_seq = seq.wrapping_sub(1);
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let ahead = out_seq.wrapping_sub(self.max_seq);
        if ahead != 0 && ahead < 0x8000 {
            self.max_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(now);
        }
        (out_seq, out_ts)
    }
}

/// The fixed description of one subscriber leg: what it writes into each packet.
#[derive(Debug, Clone)]
pub struct LegParams {
    /// The leg's own SSRC.
    pub ssrc: u32,
    /// The subscriber's media section the leg sends on.
    pub mid: Mid,
    /// Publisher → subscriber payload types.
    pub pt_map: PtMap,
    /// The subscriber's id for the `mid` header extension, when negotiated.
    pub mid_ext_id: Option<u8>,
    /// `mid_ext_id` as a map (built once, not per packet).
    ext_map: Option<ExtensionMap>,
}

impl LegParams {
    /// A leg description.
    pub fn new(ssrc: u32, mid: Mid, pt_map: PtMap, mid_ext_id: Option<u8>) -> LegParams {
        let ext_map = mid_ext_id.and_then(|id| {
            let mut m = ExtensionMap::empty();
            m.set(id, Extension::Mid).then_some(m)
        });
        LegParams {
            ssrc,
            mid,
            pt_map,
            mid_ext_id,
            ext_map,
        }
    }

    /// The same leg, also writing the forwarded extensions ([`FwdExt`]) that the
    /// subscriber negotiated in `subscriber` (its extension map for the leg's section),
    /// with the subscriber's ids, and a transport-wide sequence number slot when it
    /// negotiated transport-cc: the subscriber's `Rtc` numbers each packet as it leaves
    /// and the subscriber's feedback drives that `Rtc`'s bandwidth estimate. The map is
    /// built here, once per leg.
    pub fn with_forwarded_extensions(mut self, subscriber: &ExtensionMap) -> LegParams {
        let mut map = self.ext_map.take().unwrap_or_else(ExtensionMap::empty);
        let mut any = self.mid_ext_id.is_some();
        for e in FORWARDED
            .into_iter()
            .chain([Extension::TransportSequenceNumber])
        {
            if let Some(id) = subscriber.id_of(e) {
                any |= map.set(id, e);
            }
        }
        self.ext_map = any.then_some(map);
        self
    }
}

/// The end-to-end header extensions a publisher's packet carried, forwarded to each
/// subscriber that negotiated them (with the subscriber's ids). Hop-by-hop extensions
/// (transport-cc, abs-send-time) and stream ids are not forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwdExt {
    /// RFC 6464 audio level.
    pub audio_level: Option<AudioLevel>,
    /// Video orientation.
    pub video_orientation: Option<VideoOrientation>,
    /// Playout delay limits.
    pub playout_delay: Option<PlayoutDelay>,
    /// Absolute capture time.
    pub abs_capture_time: Option<AbsCaptureTime>,
    /// Where the AV1 dependency descriptor lies in the publisher's packet (forwarded as
    /// opaque bytes).
    pub dependency_descriptor: Option<ExtRange>,
}

/// A byte range inside the publisher's RTP packet (an extension value forwarded
/// verbatim). Kept as offsets so that [`FwdExt`] stays `Copy` and travels with the packet
/// across shards without borrowing or allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtRange {
    /// Offset of the first byte in the packet.
    pub start: u16,
    /// Length in bytes (an RFC 8285 value is at most 255 bytes).
    pub len: u8,
}

impl ExtRange {
    /// The range `value` occupies inside `packet`; `None` when `value` is not a
    /// sub-slice of `packet` (or is empty or longer than an extension value can be).
    pub fn within(packet: &[u8], value: &[u8]) -> Option<ExtRange> {
        // Address arithmetic only: nothing is dereferenced.
        let base = packet.as_ptr() as usize;
        let start = (value.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(value.len())?;
        if value.is_empty() || end > packet.len() {
            return None;
        }
        Some(ExtRange {
            start: u16::try_from(start).ok()?,
            len: u8::try_from(value.len()).ok()?,
        })
    }

    /// The bytes of the range in `packet` (`None` when `packet` is too short for it).
    pub fn get(self, packet: &[u8]) -> Option<&[u8]> {
        let start = usize::from(self.start);
        packet.get(start..start + usize::from(self.len))
    }
}

impl FwdExt {
    /// The forwarded fields of extension values parsed from `packet` (the values borrow
    /// from it; ranges such as the dependency descriptor's are recorded against it).
    pub fn from_values(v: &ExtensionValues<'_>, packet: &[u8]) -> FwdExt {
        FwdExt {
            audio_level: v.audio_level,
            video_orientation: v.video_orientation,
            playout_delay: v.playout_delay,
            abs_capture_time: v.abs_capture_time,
            dependency_descriptor: v
                .dependency_descriptor
                .and_then(|d| ExtRange::within(packet, d)),
        }
    }
}

/// Extensions a leg forwards when the subscriber negotiated them.
const FORWARDED: [Extension; 5] = [
    Extension::AudioLevel,
    Extension::VideoOrientation,
    Extension::PlayoutDelay,
    Extension::AbsCaptureTime,
    Extension::DependencyDescriptor,
];

/// Why a packet was not written for a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The input is not a valid RTP packet.
    #[error("malformed RTP packet")]
    Malformed,
    /// The subscriber has no payload type for this packet's codec.
    #[error("payload type not mapped for this leg")]
    Unmapped,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// The parts of the plaintext RTP packet `src` a leg's rewrite needs: the parsed packet,
/// the leg's payload type for it and its body (payload and padding: everything after the
/// header).
fn parse_for_leg<'a>(
    src: &'a [u8],
    leg: &LegParams,
) -> Result<(RtpPacket<'a>, u8, &'a [u8]), RewriteError> {
    let pkt = RtpPacket::parse(src).map_err(|_| RewriteError::Malformed)?;
    let (pt, body) = leg_parts(src, &pkt, leg)?;
    Ok((pkt, pt, body))
}

/// The leg's payload type for `pkt` (parsed from `src`) and `src`'s body (payload and
/// padding).
fn leg_parts<'a>(
    src: &'a [u8],
    pkt: &RtpPacket<'_>,
    leg: &LegParams,
) -> Result<(u8, &'a [u8]), RewriteError> {
    let pt = leg
        .pt_map
        .get(pkt.header.payload_type)
        .ok_or(RewriteError::Unmapped)?;
    let body_len = pkt.payload.len() + usize::from(pkt.padding_len);
    let body = src
        .get(
            src.len()
                .checked_sub(body_len)
                .ok_or(RewriteError::Malformed)?..,
        )
        .ok_or(RewriteError::Malformed)?;
    Ok((pt, body))
}

/// Writes the leg's header for `pkt` (payload type `pt`, the given `seq` and `ts`, the
/// extensions in `values` the leg's map has ids for) and then `body` into `out`; returns
/// the header's length. The P bit is set when `padded` (the copied body ends with
/// `pkt`'s padding; the header writer never sets P).
#[allow(clippy::too_many_arguments)] // one packet's parts, each a different field of the header
fn write_leg_packet(
    pkt: &RtpPacket<'_>,
    leg: &LegParams,
    pt: u8,
    (seq, ts): (u16, u32),
    values: &ExtensionValues<'_>,
    (body, padded): (&[u8], bool),
    out: &mut [u8],
) -> Result<usize, RewriteError> {
    let h = &pkt.header;
    let header = RtpHeader {
        marker: h.marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc: leg.ssrc,
        csrc: h.csrc,
        csrc_count: h.csrc_count,
        ..RtpHeader::default()
    };
    let ext = match &leg.ext_map {
        Some(map) => HeaderExtension::Values { map, values },
        None => HeaderExtension::None,
    };
    let n = header
        .write(ext, out)
        .map_err(|_| RewriteError::BufferTooSmall)?;
    let dst = out
        .get_mut(n..n + body.len())
        .ok_or(RewriteError::BufferTooSmall)?;
    dst.copy_from_slice(body);
    if padded && let Some(b0) = out.first_mut() {
        *b0 |= 0x20;
    }
    Ok(n)
}

/// Writes the leg's version of the plaintext RTP packet `src` into `out` and returns its
/// length. `source` identifies the publisher stream for the rewriter.
///
/// # Errors
///
/// [`RewriteError`]: a packet that does not parse, a payload type the leg does not map,
/// or an `out` too small.
pub fn rewrite_for_leg(
    src: &[u8],
    source: u64,
    leg: &LegParams,
    rw: &mut SeqTsRewriter,
    now: Instant,
    out: &mut [u8],
) -> Result<usize, RewriteError> {
    let (pkt, pt, body) = parse_for_leg(src, leg)?;
    let h = pkt.header;
    let seq_ts = rw.rewrite(
        (source, h.ssrc),
        h.sequence_number,
        h.timestamp,
        leg.pt_map.clock_rate(h.payload_type),
        now,
    );
    let values = ExtensionValues {
        mid: Some(leg.mid.as_str()),
        ..ExtensionValues::default()
    };
    let padded = pkt.padding_len > 0;
    let n = write_leg_packet(&pkt, leg, pt, seq_ts, &values, (body, padded), out)?;
    Ok(n + body.len())
}

/// Writes the leg's version of the plaintext RTP packet `src` into `out` with the
/// sequence number and timestamp a [`crate::sfu::DownTrack`] chose, and returns its length.
/// When `vp8` is given (the packet's VP8 descriptor and the downtrack's numbering), the
/// copied payload's PictureID / TL0PICIDX are rewritten. The extensions in `fwd` are
/// written where the leg's map has ids for them (see
/// [`LegParams::with_forwarded_extensions`]); `fwd`'s ranges refer to `src`.
///
/// # Errors
///
/// [`RewriteError`]: a packet that does not parse, a payload type the leg does not map,
/// or an `out` too small.
pub fn write_forwarded(
    src: &[u8],
    leg: &LegParams,
    seq: u16,
    ts: u32,
    vp8: Option<(&Vp8Desc, Vp8Rewrite)>,
    fwd: &FwdExt,
    out: &mut [u8],
) -> Result<usize, RewriteError> {
    let pkt = RtpPacket::parse(src).map_err(|_| RewriteError::Malformed)?;
    write_forwarded_parsed((src, &pkt), leg, (seq, ts), vp8, fwd, out)
}

/// [`write_forwarded`] of a packet already parsed: `(src, pkt)` is the plaintext packet
/// and its parse, so that a packet fanned out to many legs is parsed once, not once per
/// leg.
///
/// # Errors
///
/// As [`write_forwarded`].
pub fn write_forwarded_parsed(
    (src, pkt): (&[u8], &RtpPacket<'_>),
    leg: &LegParams,
    (seq, ts): (u16, u32),
    vp8: Option<(&Vp8Desc, Vp8Rewrite)>,
    fwd: &FwdExt,
    out: &mut [u8],
) -> Result<usize, RewriteError> {
    let (pt, body) = leg_parts(src, pkt, leg)?;
    let values = ExtensionValues {
        mid: Some(leg.mid.as_str()),
        audio_level: fwd.audio_level,
        video_orientation: fwd.video_orientation,
        playout_delay: fwd.playout_delay,
        abs_capture_time: fwd.abs_capture_time,
        dependency_descriptor: fwd.dependency_descriptor.and_then(|r| r.get(src)),
        // A placeholder, written only when the leg's map has an id for it: the
        // subscriber's `Rtc` writes the real number as the packet leaves.
        transport_cc: Some(0),
        ..ExtensionValues::default()
    };
    let padded = pkt.padding_len > 0;
    match leg.pt_map.red(pkt.header.payload_type) {
        Some(true) => {
            // The subscriber has no RED: send the primary (newest) Opus frame alone.
            let red = RedPayload::parse(pkt.payload).map_err(|_| RewriteError::Malformed)?;
            let pt = leg
                .pt_map
                .get(red.primary.payload_type)
                .ok_or(RewriteError::Unmapped)?;
            let primary = red.primary.data;
            let n = write_leg_packet(pkt, leg, pt, (seq, ts), &values, (primary, false), out)?;
            return Ok(n + primary.len());
        }
        Some(false) => {
            let n = write_leg_packet(pkt, leg, pt, (seq, ts), &values, (body, padded), out)?;
            let payload = out
                .get_mut(n..n + pkt.payload.len())
                .ok_or(RewriteError::BufferTooSmall)?;
            // The blocks carry the publisher's Opus number: the subscriber's instead.
            rewrite_block_pts(payload, |b| leg.pt_map.get(b))
                .map_err(|_| RewriteError::Malformed)?;
            return Ok(n + body.len());
        }
        None => {}
    }
    let n = write_leg_packet(pkt, leg, pt, (seq, ts), &values, (body, padded), out)?;
    if let Some((desc, rw)) = vp8 {
        // A payload too short for its own descriptor was not parsed as VP8.
        if let Some(payload) = out.get_mut(n..n + pkt.payload.len()) {
            rw.apply(desc, payload);
        }
    }
    Ok(n + body.len())
}

#[cfg(test)]
mod tests;
