//! RTP payload formats: packetizers, depacketizers and a depacketizing (jitter) buffer.
//!
//! This module works on RTP *payloads* only; RTP header parsing lives elsewhere. A
//! [`Packetizer`] splits one encoded frame into payloads no larger than an MTU (counted in
//! payload bytes), a [`Depacketizer`] appends one payload at a time to a frame buffer, and
//! [`DepacketizingBuffer`] reorders packets, assembles complete frames and reports loss.
//!
//! Supported formats:
//!
//! | codec | spec | module |
//! | --- | --- | --- |
//! | Opus | RFC 7587 | [`opus`] |
//! | VP8 | RFC 7741 | [`vp8`] |
//! | VP9 | RFC 9628 | [`vp9`] |
//! | H.264 | RFC 6184 | [`h264`] |
//! | AV1 | AOM "RTP Payload Format for AV1" | [`av1`] |
//!
//! Allocation: packetizing allocates one `Vec<u8>` per output payload (frame mode is allowed
//! to allocate per frame); depacketizing appends to a caller-owned `Vec<u8>` that can be
//! reused between frames.

pub mod av1;
mod buffer;
pub mod h264;
pub mod opus;
pub mod vp8;
pub mod vp9;

pub use buffer::{DepackConfig, DepackError, DepacketizingBuffer, Frame, PacketMeta, PushOutcome};

use thiserror::Error;

/// Errors from packetizing or depacketizing a payload.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The frame to packetize was empty.
    #[error("empty frame")]
    EmptyFrame,
    /// The payload to depacketize was empty.
    #[error("empty payload")]
    EmptyPayload,
    /// The MTU cannot hold the payload header plus at least one byte of media.
    #[error("mtu {0} too small")]
    MtuTooSmall(usize),
    /// A unit that cannot be fragmented (an Opus frame, an H.264 NAL unit in
    /// packetization mode 0) is larger than the MTU.
    #[error("unit of {len} bytes exceeds mtu {mtu}")]
    TooLarge {
        /// Size of the unit.
        len: usize,
        /// The MTU it had to fit in.
        mtu: usize,
    },
    /// The payload ended in the middle of a header or a length-prefixed element.
    #[error("truncated payload")]
    Truncated,
    /// A header field holds a value the format forbids.
    #[error("invalid payload header: {0}")]
    InvalidHeader(&'static str),
    /// A payload type the depacketizer does not implement (e.g. H.264 STAP-B, MTAP, FU-B).
    #[error("unsupported payload type {0}")]
    Unsupported(u8),
    /// A fragment arrived without its start, or a frame ended in the middle of a fragment.
    #[error("broken fragmentation")]
    Fragmentation,
    /// The frame to packetize is not a valid bitstream for its codec.
    #[error("invalid bitstream: {0}")]
    InvalidBitstream(&'static str),
}

/// The payloads a [`Packetizer`] produces, in sending order; one `Vec<u8>` per RTP payload.
pub type Payloads = Vec<Vec<u8>>;

/// The outcome of one packetizer or depacketizer step: done, or why the input was refused.
pub type PacketResult = Result<(), PacketError>;

/// The bytes of the frame a [`Depacketizer`] assembles, payload after payload.
pub type Bytes = Vec<u8>;

/// The per-codec fields a [`Depacketizer`] records for the frame it assembles.
pub type Extra = CodecExtra;

/// The picture numbering the VP8 (RFC 7741 §4.2) and VP9 (RFC 9628 §4.2) payload
/// descriptors share, reported per frame in [`CodecExtra`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PictureIds {
    /// Picture id (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
    /// TL0PICIDX (index of the last temporal-layer-0 picture), if present.
    pub tl0_pic_idx: Option<u8>,
}

/// Per-codec information carried out of depacketizing, one value per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CodecExtra {
    /// No extra information (Opus, or nothing parsed yet).
    #[default]
    None,
    /// VP8 payload descriptor fields (RFC 7741 §4.2).
    Vp8(vp8::Vp8Extra),
    /// VP9 payload descriptor fields (RFC 9628 §4.2).
    Vp9(vp9::Vp9Extra),
    /// H.264 carries no extra information.
    H264,
    /// AV1 carries no extra information.
    Av1,
}

/// Splits encoded frames into RTP payloads.
///
/// A codec states only what differs: how a non-empty frame is split
/// ([`Packetizer::split_frame`]), and, when the defaults do not fit, what counts as an
/// empty frame and where the marker bit goes. The shared rules (reject an empty frame,
/// append nothing on error) live in the provided [`Packetizer::packetize`].
pub trait Packetizer {
    /// Splits a frame that passed [`Packetizer::is_empty_frame`] into payloads of at most
    /// `mtu` bytes each (payload header included), appending them in sending order to
    /// `out`. It may leave partial output behind on error: [`Packetizer::packetize`]
    /// removes it.
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult;

    /// Whether `frame` holds nothing to send. The default: it has no bytes.
    fn is_empty_frame(&self, frame: &[u8]) -> bool {
        frame.is_empty()
    }

    /// Whether the RTP marker bit should be set on a payload produced by
    /// [`Packetizer::packetize`]; `last` is true for the last payload of the frame.
    /// The default marks the last payload of each frame (the video rule).
    fn is_marker(&self, _payload: &[u8], last: bool) -> bool {
        last
    }

    /// Splits `frame` into payloads of at most `mtu` bytes each (payload header included)
    /// and appends them, in sending order, to `out`. Existing entries of `out` are kept.
    ///
    /// Errors with [`PacketError::EmptyFrame`] for an empty frame; on any error nothing is
    /// appended.
    fn packetize(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        if self.is_empty_frame(frame) {
            return Err(PacketError::EmptyFrame);
        }
        let before = out.len();
        let result = self.split_frame(mtu, frame, out);
        if result.is_err() {
            out.truncate(before);
        }
        result
    }
}

/// The room left for media in a payload of at most `mtu` bytes after a `header_len`-byte
/// payload header; [`PacketError::MtuTooSmall`] unless at least one byte is left.
pub(crate) fn media_room(mtu: usize, header_len: usize) -> Result<usize, PacketError> {
    match mtu.checked_sub(header_len) {
        Some(room) if room > 0 => Ok(room),
        _ => Err(PacketError::MtuTooSmall(mtu)),
    }
}

/// The media that follows a `header_len`-byte payload descriptor;
/// [`PacketError::EmptyPayload`] when nothing follows it.
pub(crate) fn media_after(payload: &[u8], header_len: usize) -> Result<&[u8], PacketError> {
    match payload.get(header_len..) {
        Some(media) if !media.is_empty() => Ok(media),
        _ => Err(PacketError::EmptyPayload),
    }
}

/// Reassembles frames from RTP payloads.
///
/// A depacketizer may keep state between the payloads of one frame (an H.264 FU-A or AV1
/// OBU fragment in progress); [`Depacketizer::finish`] ends a frame and resets that state.
pub trait Depacketizer {
    /// Appends the media carried by one payload to `out` and records per-codec fields in
    /// `extra`. Payloads of one frame must be given in sequence-number order.
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult;

    /// Ends the current frame: flushes anything pending to `out` and resets per-frame
    /// state. Errors if the frame ended inside a fragment. The default, for formats that
    /// keep no state between payloads, does nothing.
    fn finish(&mut self, _out: &mut Vec<u8>) -> PacketResult {
        Ok(())
    }

    /// Whether `payload` starts a frame (or, for codecs without explicit frame starts, an
    /// independently decodable unit such as an H.264 NAL or a whole AV1 OBU).
    fn is_partition_head(&self, payload: &[u8]) -> bool;

    /// Whether `payload` (with the RTP `marker` bit) ends a frame. The default: the
    /// marker bit ends a frame (the video rule).
    fn is_partition_tail(&self, marker: bool, _payload: &[u8]) -> bool {
        marker
    }

    /// Whether [`Depacketizer::is_partition_head`] marks the true start of a frame, so that
    /// a frame can be assembled even when the packet before it is missing. The default:
    /// it does.
    fn head_is_frame_start(&self) -> bool {
        true
    }

    /// Whether this payload shows that its frame is a keyframe (independently decodable).
    fn is_keyframe(&self, payload: &[u8]) -> bool;
}

pub use crate::media::Codec;

impl Codec {
    /// Whether frame mode can packetize and depacketize this codec (Opus, VP8, VP9, H.264,
    /// AV1).
    pub fn can_packetize(&self) -> bool {
        matches!(
            self,
            Codec::Opus | Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1
        )
    }
}

/// A packetizer for any [`Codec`] (static dispatch).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CodecPacketizer {
    /// Opus.
    Opus(opus::OpusPacketizer),
    /// VP8.
    Vp8(vp8::Vp8Packetizer),
    /// VP9.
    Vp9(vp9::Vp9Packetizer),
    /// H.264.
    H264(h264::H264Packetizer),
    /// AV1.
    Av1(av1::Av1Packetizer),
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            Self::Opus($p) => $e,
            Self::Vp8($p) => $e,
            Self::Vp9($p) => $e,
            Self::H264($p) => $e,
            Self::Av1($p) => $e,
        }
    };
}

impl CodecPacketizer {
    /// A packetizer with default settings for `codec` (H.264 packetization mode 1,
    /// VP8/VP9 15-bit picture ids starting at 0); `None` when the codec cannot be
    /// packetized ([`Codec::can_packetize`]).
    pub fn new(codec: &Codec) -> Option<CodecPacketizer> {
        Some(match codec {
            Codec::Opus => CodecPacketizer::Opus(opus::OpusPacketizer),
            Codec::Vp8 => CodecPacketizer::Vp8(vp8::Vp8Packetizer::default()),
            Codec::Vp9 => CodecPacketizer::Vp9(vp9::Vp9Packetizer::default()),
            Codec::H264 => CodecPacketizer::H264(h264::H264Packetizer::default()),
            Codec::Av1 => CodecPacketizer::Av1(av1::Av1Packetizer),
            _ => return None,
        })
    }
}

impl Packetizer for CodecPacketizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        dispatch!(self, p => p.split_frame(mtu, frame, out))
    }

    fn is_empty_frame(&self, frame: &[u8]) -> bool {
        dispatch!(self, p => p.is_empty_frame(frame))
    }

    fn is_marker(&self, payload: &[u8], last: bool) -> bool {
        dispatch!(self, p => p.is_marker(payload, last))
    }
}

/// A depacketizer for any [`Codec`] (static dispatch).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CodecDepacketizer {
    /// Opus.
    Opus(opus::OpusDepacketizer),
    /// VP8.
    Vp8(vp8::Vp8Depacketizer),
    /// VP9.
    Vp9(vp9::Vp9Depacketizer),
    /// H.264.
    H264(h264::H264Depacketizer),
    /// AV1.
    Av1(av1::Av1Depacketizer),
}

impl CodecDepacketizer {
    /// A depacketizer for `codec`; `None` when the codec cannot be depacketized
    /// ([`Codec::can_packetize`]).
    pub fn new(codec: &Codec) -> Option<CodecDepacketizer> {
        Some(match codec {
            Codec::Opus => CodecDepacketizer::Opus(opus::OpusDepacketizer),
            Codec::Vp8 => CodecDepacketizer::Vp8(vp8::Vp8Depacketizer),
            Codec::Vp9 => CodecDepacketizer::Vp9(vp9::Vp9Depacketizer),
            Codec::H264 => CodecDepacketizer::H264(h264::H264Depacketizer::default()),
            Codec::Av1 => CodecDepacketizer::Av1(av1::Av1Depacketizer::default()),
            _ => return None,
        })
    }
}

impl Depacketizer for CodecDepacketizer {
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult {
        dispatch!(self, d => d.depacketize(payload, out, extra))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> PacketResult {
        dispatch!(self, d => d.finish(out))
    }

    fn is_partition_head(&self, payload: &[u8]) -> bool {
        dispatch!(self, d => d.is_partition_head(payload))
    }

    fn is_partition_tail(&self, marker: bool, payload: &[u8]) -> bool {
        dispatch!(self, d => d.is_partition_tail(marker, payload))
    }

    fn head_is_frame_start(&self) -> bool {
        dispatch!(self, d => d.head_is_frame_start())
    }

    fn is_keyframe(&self, payload: &[u8]) -> bool {
        dispatch!(self, d => d.is_keyframe(payload))
    }
}

/// Unsigned LEB128 helpers (AV1 OBU sizes).
pub(crate) mod leb128 {
    use super::PacketError;

    /// Number of bytes `v` takes when encoded.
    pub(crate) fn len(mut v: usize) -> usize {
        let mut n = 1;
        while v >= 0x80 {
            v >>= 7;
            n += 1;
        }
        n
    }

    /// Appends the encoding of `v` to `out`.
    pub(crate) fn write(mut v: usize, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Reads a value (at most 8 bytes, at most `u32::MAX` as the AV1 spec requires);
    /// returns it and the number of bytes used.
    pub(crate) fn read(buf: &[u8]) -> Result<(usize, usize), PacketError> {
        let mut v: u64 = 0;
        for (i, &b) in buf.iter().take(8).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if v > u64::from(u32::MAX) {
                    return Err(PacketError::InvalidHeader("leb128 value too large"));
                }
                return Ok((v as usize, i + 1));
            }
        }
        if buf.len() >= 8 {
            Err(PacketError::InvalidHeader("leb128 longer than 8 bytes"))
        } else {
            Err(PacketError::Truncated)
        }
    }
}

/// Splits `data` into the fewest chunks of at most `max` bytes (`max > 0`), as near equal
/// as possible: of the `n` chunks, the first `data.len() % n` are one byte larger.
pub(crate) fn even_chunks(data: &[u8], max: usize) -> impl ExactSizeIterator<Item = &[u8]> {
    let n = data.len().div_ceil(max);
    let (base, extra) = match n {
        0 => (0, 0),
        n => (data.len() / n, data.len() % n),
    };
    (0..n).map(move |i| {
        let start = i * base + i.min(extra);
        data.get(start..start + base + usize::from(i < extra))
            .unwrap_or_default()
    })
}

/// One payload: a `header_len`-byte payload header written by `write_header`, then `media`.
pub(crate) fn payload_with_header(
    header_len: usize,
    media: &[u8],
    write_header: impl FnOnce(&mut [u8]) -> Result<usize, PacketError>,
) -> Result<Vec<u8>, PacketError> {
    let mut p = vec![0u8; header_len + media.len()];
    write_header(&mut p)?;
    if let Some(dst) = p.get_mut(header_len..) {
        dst.copy_from_slice(media);
    }
    Ok(p)
}

/// The picture id field shared by the VP8 (RFC 7741 §4.2) and VP9 (RFC 9628 §4.2) payload
/// descriptors: `M|PictureID`, 7 bits, or 15 bits when M is set.
pub(crate) mod picture_id {
    use super::PacketError;

    /// Whether `pid` is written in the 15-bit (M=1) form: when `force_long`, or when it
    /// does not fit in 7 bits.
    pub(crate) fn is_long(pid: u16, force_long: bool) -> bool {
        force_long || pid & 0x7fff > 0x7f
    }

    /// Encoded length of the field: 2 bytes in the 15-bit form, else 1.
    pub(crate) fn len(long: bool) -> usize {
        1 + usize::from(long)
    }

    /// Reads the field at the start of `buf`; returns the id and whether it used the
    /// 15-bit form.
    pub(crate) fn read(buf: &[u8]) -> Result<(u16, bool), PacketError> {
        match *buf {
            [p, ..] if p & 0x80 == 0 => Ok((u16::from(p), false)),
            [p, lo, ..] => Ok((u16::from(p & 0x7f) << 8 | u16::from(lo), true)),
            _ => Err(PacketError::Truncated),
        }
    }

    /// Writes `pid` (masked to 15 bits) byte by byte through `put`, in the 15-bit form if
    /// `long`.
    pub(crate) fn write(pid: u16, long: bool, mut put: impl FnMut(u8)) {
        let p = pid & 0x7fff;
        if long {
            put(0x80 | (p >> 8) as u8);
        }
        put(p as u8);
    }
}

#[cfg(test)]
mod tests;
