//! Per-subscriber-leg RTP rewriting for SFU forwarding.
//!
//! A publisher's packet is decrypted once by its `Rtc`; for every subscriber leg the engine
//! writes a new plaintext packet straight into the subscriber `Rtc`'s send buffer with the
//! leg's own SSRC, the payload type the subscriber negotiated for the same codec, and the
//! sequence number, timestamp (and VP8 PictureID / TL0PICIDX) the leg's
//! [`DownTrack`](crate::sfu::DownTrack) chose ([`write_forwarded`]); the `Rtc` encrypts it.
//!
//! Header extensions: their ids are negotiated per peer connection. Hop-by-hop ones
//! (transport-cc, abs-send-time) and stream ids are not forwarded. The end-to-end ones in
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
//! Nothing here allocates per packet.

use std::time::Instant;

use rtc_core::media::{MediaKind, Mid};
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

/// Maps a publisher's payload types to a subscriber's, with the clock rate of each source
/// payload type (used to keep timestamps continuous across source switches).
#[derive(Clone)]
pub struct PtMap {
    map: [u8; 128],
    clock: [u32; 128],
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
            clock: [default_clock_rate(kind); 128],
        }
    }

    /// Maps each publisher payload type to the subscriber's payload type of the same codec.
    /// Repair formats (RTX, RED, FEC) are not mapped: their payloads embed the publisher's
    /// sequence numbers or payload types, which the leg rewrites. When either list is empty
    /// the map is the identity.
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
            clock: [default_clock_rate(kind); 128],
        };
        for p in publisher {
            let Some(slot) = pm.map.get_mut(usize::from(p.pt)) else {
                continue;
            };
            if p.codec.is_repair() {
                continue;
            }
            if let Some(s) = subscriber.iter().find(|s| s.codec.same_as(&p.codec)) {
                *slot = s.pt;
            }
            if let Some(c) = pm.clock.get_mut(usize::from(p.pt)) {
                *c = p.clock_rate;
            }
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

    /// The clock rate of a publisher payload type.
    pub fn clock_rate(&self, pt: u8) -> u32 {
        self.clock.get(usize::from(pt)).copied().unwrap_or(90_000)
    }
}

/// Bit set of the payload types of repair formats (RTX, RED, FEC) in a payload list.
pub fn repair_pts(payloads: &[PayloadDesc]) -> u128 {
    payloads
        .iter()
        .filter(|p| p.codec.is_repair() && p.pt < 128)
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
    /// with the subscriber's ids. The map is built here, once per leg.
    pub fn with_forwarded_extensions(mut self, subscriber: &ExtensionMap) -> LegParams {
        let mut map = self.ext_map.take().unwrap_or_else(ExtensionMap::empty);
        let mut any = self.mid_ext_id.is_some();
        for e in FORWARDED {
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
    let pkt = RtpPacket::parse(src).map_err(|_| RewriteError::Malformed)?;
    let h = pkt.header;
    let pt = leg
        .pt_map
        .get(h.payload_type)
        .ok_or(RewriteError::Unmapped)?;
    // Payload and padding: everything after the header.
    let body_len = pkt.payload.len() + usize::from(pkt.padding_len);
    let body = src
        .get(src.len() - body_len..)
        .ok_or(RewriteError::Malformed)?;
    let (seq, ts) = rw.rewrite(
        (source, h.ssrc),
        h.sequence_number,
        h.timestamp,
        leg.pt_map.clock_rate(h.payload_type),
        now,
    );
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
    let values = ExtensionValues {
        mid: Some(leg.mid.as_str()),
        ..ExtensionValues::default()
    };
    let ext = match &leg.ext_map {
        Some(map) => HeaderExtension::Values {
            map,
            values: &values,
        },
        None => HeaderExtension::None,
    };
    let n = header
        .write(ext, out)
        .map_err(|_| RewriteError::BufferTooSmall)?;
    let dst = out
        .get_mut(n..n + body.len())
        .ok_or(RewriteError::BufferTooSmall)?;
    dst.copy_from_slice(body);
    if pkt.padding_len > 0 {
        // The header writer never sets P; the copied body ends with the padding.
        if let Some(b0) = out.first_mut() {
            *b0 |= 0x20;
        }
    }
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
    let h = pkt.header;
    let pt = leg
        .pt_map
        .get(h.payload_type)
        .ok_or(RewriteError::Unmapped)?;
    let body_len = pkt.payload.len() + usize::from(pkt.padding_len);
    let body = src
        .get(src.len() - body_len..)
        .ok_or(RewriteError::Malformed)?;
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
    let values = ExtensionValues {
        mid: Some(leg.mid.as_str()),
        audio_level: fwd.audio_level,
        video_orientation: fwd.video_orientation,
        playout_delay: fwd.playout_delay,
        abs_capture_time: fwd.abs_capture_time,
        dependency_descriptor: fwd.dependency_descriptor.and_then(|r| r.get(src)),
        ..ExtensionValues::default()
    };
    let ext = match &leg.ext_map {
        Some(map) => HeaderExtension::Values {
            map,
            values: &values,
        },
        None => HeaderExtension::None,
    };
    let n = header
        .write(ext, out)
        .map_err(|_| RewriteError::BufferTooSmall)?;
    let dst = out
        .get_mut(n..n + body.len())
        .ok_or(RewriteError::BufferTooSmall)?;
    dst.copy_from_slice(body);
    if let Some((desc, rw)) = vp8 {
        let plen = pkt.payload.len();
        if let Some(payload) = dst.get_mut(..plen) {
            // A payload too short for its own descriptor was not parsed as VP8.
            rw.apply(desc, payload);
        }
    }
    if pkt.padding_len > 0
        && let Some(b0) = out.first_mut()
    {
        *b0 |= 0x20;
    }
    Ok(n + body.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn packet(
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: &[u8],
        ext: bool,
    ) -> Vec<u8> {
        let h = RtpHeader {
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..RtpHeader::default()
        };
        let mut buf = vec![0u8; 1500];
        let n = if ext {
            h.write(
                HeaderExtension::Raw {
                    profile: 0xBEDE,
                    data: &[0x10, 0xaa, 0, 0],
                },
                &mut buf,
            )
            .unwrap()
        } else {
            h.write(HeaderExtension::None, &mut buf).unwrap()
        };
        buf[n..n + payload.len()].copy_from_slice(payload);
        buf.truncate(n + payload.len());
        buf
    }

    fn leg(pt_map: PtMap, mid_ext_id: Option<u8>) -> LegParams {
        LegParams::new(0xabcd_0001, Mid::new("v1").unwrap(), pt_map, mid_ext_id)
    }

    fn pd(pt: u8, codec: Codec, clock_rate: u32) -> PayloadDesc {
        PayloadDesc {
            pt,
            codec,
            clock_rate,
        }
    }

    #[test]
    fn pt_map_by_codec() {
        let publisher = [
            pd(96, Codec::Vp8, 90_000),
            pd(97, Codec::Rtx, 90_000),
            pd(102, Codec::H264, 90_000),
        ];
        let subscriber = [pd(100, Codec::H264, 90_000), pd(120, Codec::Vp8, 90_000)];
        let m = PtMap::from_payloads(MediaKind::Video, &publisher, &subscriber);
        assert_eq!(m.get(96), Some(120));
        assert_eq!(m.get(102), Some(100));
        assert_eq!(m.get(97), None, "RTX is not forwarded");
        assert_eq!(m.get(111), None);
        assert_eq!(m.get(200), None);
        assert_eq!(repair_pts(&publisher), 1u128 << 97);
        let id = PtMap::from_payloads(MediaKind::Audio, &[], &subscriber);
        assert_eq!(id.get(111), Some(111));
        assert_eq!(id.clock_rate(111), 48_000);
    }

    #[test]
    fn rewrites_header_and_keeps_payload() {
        let now = Instant::now();
        let src = packet(96, 1000, 5000, 0x1111, true, b"hello payload", true);
        let publisher = [pd(96, Codec::Vp8, 90_000)];
        let subscriber = [pd(98, Codec::Vp8, 90_000)];
        let l = leg(
            PtMap::from_payloads(MediaKind::Video, &publisher, &subscriber),
            Some(4),
        );
        let mut rw = SeqTsRewriter::default();
        let mut out = [0u8; 1500];
        let n = rewrite_for_leg(&src, 7, &l, &mut rw, now, &mut out).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.header.ssrc, 0xabcd_0001);
        assert_eq!(p.header.payload_type, 98);
        assert_eq!(p.header.sequence_number, 1000);
        assert_eq!(p.header.timestamp, 5000);
        assert!(p.header.marker);
        assert_eq!(p.payload, b"hello payload");
        let mut map = ExtensionMap::empty();
        map.set(4, Extension::Mid);
        assert_eq!(p.extensions(&map).unwrap().mid, Some("v1"));
        // Without a mid extension id no extension block is written.
        let l2 = leg(PtMap::identity(MediaKind::Video), None);
        let n =
            rewrite_for_leg(&src, 7, &l2, &mut SeqTsRewriter::default(), now, &mut out).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert!(!p.header.extension);
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(n, 12 + 13);
    }

    #[test]
    fn keeps_padding() {
        let mut src = packet(96, 1, 2, 3, false, &[9, 9, 9, 0, 0, 4], false);
        src[0] |= 0x20;
        let l = leg(PtMap::identity(MediaKind::Video), None);
        let mut out = [0u8; 100];
        let n = rewrite_for_leg(
            &src,
            1,
            &l,
            &mut SeqTsRewriter::default(),
            Instant::now(),
            &mut out,
        )
        .unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.padding_len, 4);
        assert_eq!(p.payload, &[9, 9]);
    }

    #[test]
    fn errors() {
        let l = leg(
            PtMap::from_payloads(
                MediaKind::Video,
                &[pd(96, Codec::Vp8, 90_000)],
                &[pd(98, Codec::Vp9, 90_000)],
            ),
            None,
        );
        let mut rw = SeqTsRewriter::default();
        let now = Instant::now();
        let mut out = [0u8; 64];
        let src = packet(96, 1, 2, 3, false, &[1; 10], false);
        assert_eq!(
            rewrite_for_leg(&src, 1, &l, &mut rw, now, &mut out),
            Err(RewriteError::Unmapped)
        );
        assert_eq!(
            rewrite_for_leg(&[0x80, 1, 2], 1, &l, &mut rw, now, &mut out),
            Err(RewriteError::Malformed)
        );
        let big = packet(96, 1, 2, 3, false, &[1; 100], false);
        let id = leg(PtMap::identity(MediaKind::Video), None);
        assert_eq!(
            rewrite_for_leg(&big, 1, &id, &mut rw, now, &mut out),
            Err(RewriteError::BufferTooSmall)
        );
    }

    #[test]
    fn continuous_across_source_switch() {
        let t0 = Instant::now();
        let mut rw = SeqTsRewriter::default();
        // Source A: seq 65530.., ts 1000 + 3000 per packet.
        let mut last = (0, 0);
        for i in 0..10u16 {
            last = rw.rewrite(
                (1, 0xA),
                65_530u16.wrapping_add(i),
                1000 + 3000 * u32::from(i),
                90_000,
                t0,
            );
        }
        assert_eq!(last, (65_530u16.wrapping_add(9), 1000 + 27_000));
        // 100 ms later, source B starts at unrelated numbers.
        let t1 = t0 + Duration::from_millis(100);
        let first_b = rw.rewrite((2, 0xB), 17, 777_777, 90_000, t1);
        assert_eq!(first_b.0, last.0.wrapping_add(1));
        assert_eq!(first_b.1, last.1 + 9000);
        let second_b = rw.rewrite((2, 0xB), 18, 777_777 + 3000, 90_000, t1);
        assert_eq!(second_b, (first_b.0.wrapping_add(1), first_b.1 + 3000));
        // Reordered packet of B keeps its relative position.
        let reordered = rw.rewrite((2, 0xB), 16, 777_777 - 3000, 90_000, t1);
        assert_eq!(reordered, (first_b.0.wrapping_sub(1), first_b.1 - 3000));
        // Same publisher, new SSRC (stream restart) is a switch too.
        let c = rw.rewrite((2, 0xC), 5000, 1, 90_000, t1);
        assert_eq!(c.0, second_b.0.wrapping_add(1));
        assert_eq!(c.1, second_b.1 + 1, "at least one tick");
    }

    #[test]
    fn write_forwarded_numbers_vp8_and_forwards_extensions() {
        // VP8: X, S; I with a 15-bit PictureID 0x1234; L with TL0PICIDX 9; a keyframe.
        let payload = [0x90, 0xC0, 0x92, 0x34, 9, 0x00, 0xAB, 0xCD];
        let src = packet(96, 10, 20, 30, true, &payload, true);
        let desc = crate::sfu::codec::parse_vp8(&payload).unwrap();
        let mut sub = ExtensionMap::empty();
        sub.set(3, Extension::Mid);
        sub.set(5, Extension::AudioLevel);
        let l = leg(PtMap::identity(MediaKind::Video), Some(3)).with_forwarded_extensions(&sub);
        let fwd = FwdExt {
            audio_level: Some(AudioLevel {
                voice: true,
                level: 33,
            }),
            ..FwdExt::default()
        };
        let rw = Vp8Rewrite {
            picture_id: Some(0x0101),
            tl0picidx: Some(200),
        };
        let mut out = [0u8; 200];
        let n = write_forwarded(&src, &l, 777, 888, Some((&desc, rw)), &fwd, &mut out).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!((p.header.sequence_number, p.header.timestamp), (777, 888));
        assert_eq!(p.payload, &[0x90, 0xC0, 0x81, 0x01, 200, 0x00, 0xAB, 0xCD]);
        let v = p.extensions(&sub).unwrap();
        assert_eq!(v.mid, Some("v1"));
        assert_eq!(v.audio_level, fwd.audio_level);
        // Not negotiated by the subscriber: not written.
        let plain = leg(PtMap::identity(MediaKind::Video), None)
            .with_forwarded_extensions(&ExtensionMap::empty());
        let n = write_forwarded(&src, &plain, 1, 2, None, &fwd, &mut out).unwrap();
        assert_eq!(n, 12 + payload.len());
        assert_eq!(&out[12..n], &payload);
    }

    #[test]
    fn dependency_descriptor_is_forwarded_opaquely_with_the_subscribers_id() {
        // The publisher sends a 20-byte descriptor (longer than the one-byte form allows)
        // under its id 7; the subscriber negotiated id 12.
        let dd: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37)).collect();
        let mut pub_map = ExtensionMap::empty();
        pub_map.set(7, Extension::DependencyDescriptor);
        let h = RtpHeader {
            payload_type: 45,
            sequence_number: 3,
            timestamp: 4,
            ssrc: 5,
            ..RtpHeader::default()
        };
        let values = ExtensionValues {
            dependency_descriptor: Some(&dd),
            ..ExtensionValues::default()
        };
        let mut src = vec![0u8; 200];
        let n = h
            .write(
                HeaderExtension::Values {
                    map: &pub_map,
                    values: &values,
                },
                &mut src,
            )
            .unwrap();
        src.truncate(n);
        src.extend_from_slice(&[1, 2, 3, 4]);
        let parsed = RtpPacket::parse(&src).unwrap();
        let fwd = FwdExt::from_values(&parsed.extensions(&pub_map).unwrap(), &src);
        let range = fwd.dependency_descriptor.expect("recorded");
        assert_eq!(range.get(&src), Some(&dd[..]));

        let mut sub = ExtensionMap::empty();
        sub.set(12, Extension::DependencyDescriptor);
        let l = leg(PtMap::identity(MediaKind::Video), None).with_forwarded_extensions(&sub);
        let mut out = [0u8; 200];
        let n = write_forwarded(&src, &l, 9, 10, None, &fwd, &mut out).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.payload, &[1, 2, 3, 4]);
        assert_eq!(
            p.extensions(&sub).unwrap().dependency_descriptor,
            Some(&dd[..])
        );
        // Not under the publisher's id.
        assert_eq!(p.extensions(&pub_map).unwrap().dependency_descriptor, None);
        // A value that is not inside the packet has no range.
        let other = [1u8, 2];
        assert_eq!(ExtRange::within(&src, &other), None);
        assert_eq!(ExtRange::within(&src, &src[src.len()..]), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rewrite_round_trips(pt in 0u8..128, seq: u16, ts: u32, ssrc: u32, marker: bool,
                               payload in proptest::collection::vec(any::<u8>(), 0..1200),
                               ext: bool, mid_ext in proptest::option::of(1u8..15)) {
            let src = packet(pt, seq, ts, ssrc, marker, &payload, ext);
            let l = leg(PtMap::identity(MediaKind::Video), mid_ext);
            let mut rw = SeqTsRewriter::default();
            let mut out = [0u8; 1500];
            let n = rewrite_for_leg(&src, 9, &l, &mut rw, Instant::now(), &mut out).unwrap();
            let p = RtpPacket::parse(&out[..n]).unwrap();
            prop_assert_eq!(p.header.payload_type, pt);
            prop_assert_eq!(p.header.sequence_number, seq);
            prop_assert_eq!(p.header.timestamp, ts);
            prop_assert_eq!(p.header.ssrc, l.ssrc);
            prop_assert_eq!(p.header.marker, marker);
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn rewrite_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let l = leg(PtMap::identity(MediaKind::Video), Some(3));
            let mut out = [0u8; 256];
            let _ = rewrite_for_leg(&data, 1, &l, &mut SeqTsRewriter::default(), Instant::now(), &mut out);
        }
    }
}
