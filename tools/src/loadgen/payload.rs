//! Synthetic media payloads that carry their own integrity check and send time.
//!
//! Every payload ends with a fixed [`TRAILER_LEN`]-byte trailer:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `LGN1` |
//! | 4 | publisher id (big-endian) |
//! | 1 | kind (0 audio, 1 video) |
//! | 1 | flags (bit 0: keyframe; bits 1-2: simulcast layer, 0 without simulcast) |
//! | 8 | sequence number of the stream (publisher, kind) |
//! | 8 | send time, nanoseconds since the loadgen's start |
//! | 2 | total payload length |
//! | 4 | CRC-32 of every byte before it |
//!
//! Before the trailer: a codec-shaped prefix (a VP8 payload descriptor and, at the start
//! of a frame, a VP8 frame header; an Opus TOC byte for audio) and filler bytes derived
//! from the publisher and sequence number. Because the trailer sits at the end, a
//! receiver finds it without parsing the codec prefix.

/// Length of the trailer at the end of every payload.
pub const TRAILER_LEN: usize = 32;

/// Magic at the start of the trailer.
pub const MAGIC: [u8; 4] = *b"LGN1";

/// Largest payload we write (fits one RTP packet with room for header and SRTP).
pub const MAX_PAYLOAD: usize = 1100;

/// Smallest video payload: descriptor + keyframe header + trailer.
pub const MIN_VIDEO_PAYLOAD: usize = 1 + VP8_KEY_HEADER_LEN + TRAILER_LEN;

/// Smallest audio payload: TOC byte + trailer.
pub const MIN_AUDIO_PAYLOAD: usize = 1 + TRAILER_LEN;

/// VP8 frame header of a keyframe: 3-byte frame tag, start code, width and height.
const VP8_KEY_HEADER_LEN: usize = 10;
/// VP8 frame header of an interframe: the 3-byte frame tag.
const VP8_DELTA_HEADER_LEN: usize = 3;

/// Opus TOC byte: config 31 (CELT fullband 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0xF8;

/// Which stream of a publisher a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Opus-sized audio.
    Audio,
    /// VP8-shaped video.
    Video,
}

impl StreamKind {
    fn to_byte(self) -> u8 {
        match self {
            StreamKind::Audio => 0,
            StreamKind::Video => 1,
        }
    }

    fn from_byte(b: u8) -> Option<StreamKind> {
        match b {
            0 => Some(StreamKind::Audio),
            1 => Some(StreamKind::Video),
            _ => None,
        }
    }
}

/// What a trailer says about its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The publisher (loadgen-wide index).
    pub publisher: u32,
    /// Audio or video.
    pub kind: StreamKind,
    /// Part of a keyframe.
    pub keyframe: bool,
    /// Simulcast layer (0..=2; 0 without simulcast).
    pub layer: u8,
    /// Sequence number within the stream (publisher, kind), from 0.
    pub seq: u64,
    /// Send time in nanoseconds since the loadgen's start.
    pub send_ns: u64,
}

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The output buffer is smaller than the requested payload.
    #[error("buffer too small: need {need}, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The requested size cannot hold the prefix and the trailer (or exceeds 64 KiB).
    #[error("payload size {0} out of range")]
    BadSize(usize),
    /// The received payload is shorter than a trailer.
    #[error("payload too short")]
    TooShort,
    /// The trailer's magic is wrong (not one of ours).
    #[error("bad magic")]
    BadMagic,
    /// The trailer's length field disagrees with the payload's length.
    #[error("length mismatch")]
    LengthMismatch,
    /// Unknown stream kind byte.
    #[error("bad stream kind")]
    BadKind,
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
}

/// Fills `out` with bytes derived from `(publisher, seq)` (xorshift64).
fn fill(out: &mut [u8], publisher: u32, seq: u64) {
    let mut x = (u64::from(publisher) << 32 ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(&bytes[..n]);
    }
}

/// Writes `size` bytes: `prefix_len` bytes already in `buf` are kept, filler follows,
/// the trailer ends it. Returns `size`.
fn finish(
    buf: &mut [u8],
    size: usize,
    prefix_len: usize,
    stamp: &Stamp,
) -> Result<usize, PayloadError> {
    if size > u16::MAX as usize || size < prefix_len + TRAILER_LEN {
        return Err(PayloadError::BadSize(size));
    }
    let have = buf.len();
    let Some(out) = buf.get_mut(..size) else {
        return Err(PayloadError::BufferTooSmall { need: size, have });
    };
    let body_end = size - TRAILER_LEN;
    let (body, trailer) = out.split_at_mut(body_end);
    if let Some(filler) = body.get_mut(prefix_len..) {
        fill(filler, stamp.publisher, stamp.seq);
    }
    trailer[0..4].copy_from_slice(&MAGIC);
    trailer[4..8].copy_from_slice(&stamp.publisher.to_be_bytes());
    trailer[8] = stamp.kind.to_byte();
    trailer[9] = u8::from(stamp.keyframe) | ((stamp.layer & 3) << 1);
    trailer[10..18].copy_from_slice(&stamp.seq.to_be_bytes());
    trailer[18..26].copy_from_slice(&stamp.send_ns.to_be_bytes());
    trailer[26..28].copy_from_slice(&(size as u16).to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(body);
    h.update(&trailer[..28]);
    trailer[28..32].copy_from_slice(&h.finalize().to_be_bytes());
    Ok(size)
}

/// Writes a VP8-shaped video payload of `size` bytes into `buf`.
///
/// The payload starts with a VP8 payload descriptor (RFC 7741 §4.2: S bit set on the
/// first packet of a frame, partition 0); the first packet of a frame carries a VP8 frame
/// tag (RFC 6386 §9.1: key/inter flag, version 0, shown) and, for a keyframe, the start
/// code and a 640×360 frame size. Returns the length written.
pub fn write_video(
    buf: &mut [u8],
    size: usize,
    frame_start: bool,
    stamp: &Stamp,
) -> Result<usize, PayloadError> {
    let header_len = match (frame_start, stamp.keyframe) {
        (false, _) => 0,
        (true, true) => VP8_KEY_HEADER_LEN,
        (true, false) => VP8_DELTA_HEADER_LEN,
    };
    let prefix_len = 1 + header_len;
    if size < prefix_len + TRAILER_LEN || size > u16::MAX as usize {
        return Err(PayloadError::BadSize(size));
    }
    let have = buf.len();
    let Some(prefix) = buf.get_mut(..prefix_len) else {
        return Err(PayloadError::BufferTooSmall { need: size, have });
    };
    prefix[0] = if frame_start { 0x10 } else { 0x00 };
    if frame_start {
        // Frame tag: bit 0 = !keyframe, bits 1-3 version 0, bit 4 show_frame, bits 5-23
        // first partition size (the frame's remaining bytes, capped to 19 bits).
        let part = ((size - prefix_len) as u32).min(0x7_FFFF);
        let tag = (u32::from(!stamp.keyframe)) | (1 << 4) | (part << 5);
        prefix[1..4].copy_from_slice(&tag.to_le_bytes()[..3]);
        if stamp.keyframe {
            prefix[4..7].copy_from_slice(&[0x9D, 0x01, 0x2A]);
            prefix[7..9].copy_from_slice(&640u16.to_le_bytes());
            prefix[9..11].copy_from_slice(&360u16.to_le_bytes());
        }
    }
    finish(buf, size, prefix_len, stamp)
}

/// Writes an Opus-shaped audio payload of `size` bytes (TOC byte, filler, trailer).
/// Returns the length written.
pub fn write_audio(buf: &mut [u8], size: usize, stamp: &Stamp) -> Result<usize, PayloadError> {
    if size < MIN_AUDIO_PAYLOAD {
        return Err(PayloadError::BadSize(size));
    }
    let have = buf.len();
    let Some(first) = buf.first_mut() else {
        return Err(PayloadError::BufferTooSmall { need: size, have });
    };
    *first = OPUS_TOC;
    finish(buf, size, 1, stamp)
}

/// Reads and verifies the trailer of a received payload (checksum over every byte).
pub fn check(payload: &[u8]) -> Result<Stamp, PayloadError> {
    let Some(body_end) = payload.len().checked_sub(TRAILER_LEN) else {
        return Err(PayloadError::TooShort);
    };
    let (body, trailer) = payload.split_at(body_end);
    let t: &[u8; TRAILER_LEN] = trailer.try_into().map_err(|_| PayloadError::TooShort)?;
    if t[0..4] != MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let len = u16::from_be_bytes([t[26], t[27]]) as usize;
    if len != payload.len() {
        return Err(PayloadError::LengthMismatch);
    }
    let want = u32::from_be_bytes([t[28], t[29], t[30], t[31]]);
    let mut h = crc32fast::Hasher::new();
    h.update(body);
    h.update(&t[..28]);
    if h.finalize() != want {
        return Err(PayloadError::Checksum);
    }
    let kind = StreamKind::from_byte(t[8]).ok_or(PayloadError::BadKind)?;
    let mut u64_at = [0u8; 8];
    u64_at.copy_from_slice(&t[10..18]);
    let seq = u64::from_be_bytes(u64_at);
    u64_at.copy_from_slice(&t[18..26]);
    let send_ns = u64::from_be_bytes(u64_at);
    Ok(Stamp {
        publisher: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        kind,
        keyframe: t[9] & 1 == 1,
        layer: (t[9] >> 1) & 3,
        seq,
        send_ns,
    })
}

/// Splits a frame of `frame_bytes` into packet sizes of at most [`MAX_PAYLOAD`], each at
/// least [`MIN_VIDEO_PAYLOAD`], as even as possible. Returns (packet count, base size,
/// packets that get one byte more).
pub fn split_frame(frame_bytes: usize) -> (usize, usize, usize) {
    let total = frame_bytes.max(MIN_VIDEO_PAYLOAD);
    let n = total.div_ceil(MAX_PAYLOAD).max(1);
    (n, total / n, total % n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp(kind: StreamKind, keyframe: bool) -> Stamp {
        Stamp {
            publisher: 7,
            kind,
            keyframe,
            layer: 0,
            seq: 123_456_789_012,
            send_ns: 42_000_000_001,
        }
    }

    #[test]
    fn video_keyframe_layout() {
        let mut buf = [0u8; 1500];
        let s = stamp(StreamKind::Video, true);
        let n = write_video(&mut buf, 200, true, &s).unwrap();
        assert_eq!(n, 200);
        assert_eq!(buf[0], 0x10, "S bit, partition 0");
        // Keyframe: P bit (bit 0 of the tag) clear, show_frame set.
        assert_eq!(buf[1] & 1, 0);
        assert_eq!(buf[1] & 0x10, 0x10);
        assert_eq!(&buf[4..7], &[0x9D, 0x01, 0x2A]);
        assert_eq!(u16::from_le_bytes([buf[7], buf[8]]), 640);
        assert_eq!(check(&buf[..n]).unwrap(), s);
    }

    #[test]
    fn video_continuation_and_delta() {
        let mut buf = [0u8; 1500];
        let s = stamp(StreamKind::Video, false);
        let n = write_video(&mut buf, 100, true, &s).unwrap();
        assert_eq!(buf[1] & 1, 1, "interframe");
        assert_eq!(check(&buf[..n]).unwrap(), s);
        let n = write_video(&mut buf, 60, false, &s).unwrap();
        assert_eq!(buf[0], 0x00);
        assert_eq!(check(&buf[..n]).unwrap(), s);
    }

    #[test]
    fn audio_layout() {
        let mut buf = [0u8; 200];
        let s = stamp(StreamKind::Audio, false);
        let n = write_audio(&mut buf, 80, &s).unwrap();
        assert_eq!(n, 80);
        assert_eq!(buf[0], OPUS_TOC);
        assert_eq!(check(&buf[..80]).unwrap(), s);
    }

    #[test]
    fn size_errors() {
        let mut buf = [0u8; 64];
        let s = stamp(StreamKind::Audio, false);
        assert_eq!(
            write_audio(&mut buf, 10, &s),
            Err(PayloadError::BadSize(10))
        );
        assert_eq!(
            write_audio(&mut buf, 100, &s),
            Err(PayloadError::BufferTooSmall {
                need: 100,
                have: 64
            })
        );
        assert_eq!(
            write_video(&mut buf, 40, true, &stamp(StreamKind::Video, true)),
            Err(PayloadError::BadSize(40))
        );
        assert_eq!(
            write_audio(&mut [], 40, &s),
            Err(PayloadError::BufferTooSmall { need: 40, have: 0 })
        );
    }

    #[test]
    fn detects_corruption() {
        let mut buf = [0u8; 300];
        let s = stamp(StreamKind::Video, false);
        let n = write_video(&mut buf, 300, true, &s).unwrap();
        let good = buf;
        for i in [0usize, 5, 150, n - TRAILER_LEN + 5, n - 1] {
            let mut b = good;
            b[i] ^= 0x40;
            assert!(check(&b[..n]).is_err(), "flip at {i} not detected");
        }
        assert_eq!(check(&good[..n - 1]), Err(PayloadError::BadMagic));
        let mut b = good;
        b[n - 5] ^= 1; // length field
        assert_eq!(check(&b[..n]), Err(PayloadError::LengthMismatch));
        let mut b = good;
        b[n - 1] ^= 1; // checksum
        assert_eq!(check(&b[..n]), Err(PayloadError::Checksum));
        assert_eq!(check(&good[..10]), Err(PayloadError::TooShort));
        let mut b = good;
        b[n - TRAILER_LEN] = b'X';
        assert_eq!(check(&b[..n]), Err(PayloadError::BadMagic));
    }

    #[test]
    fn frame_split() {
        assert_eq!(split_frame(10), (1, MIN_VIDEO_PAYLOAD, 0));
        assert_eq!(split_frame(1100), (1, 1100, 0));
        assert_eq!(split_frame(1101), (2, 550, 1));
        let (n, base, extra) = split_frame(5000);
        assert_eq!(n, 5);
        assert_eq!(n * base + extra, 5000);
        assert!(base < MAX_PAYLOAD);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn video_round_trip(
            size in MIN_VIDEO_PAYLOAD..=MAX_PAYLOAD,
            start: bool,
            key: bool,
            publisher: u32,
            seq: u64,
            send_ns: u64,
        ) {
            let s = Stamp { publisher, kind: StreamKind::Video, keyframe: key, layer: (seq % 3) as u8, seq, send_ns };
            let mut buf = vec![0u8; MAX_PAYLOAD];
            let n = write_video(&mut buf, size, start, &s).unwrap();
            prop_assert_eq!(n, size);
            prop_assert_eq!(check(&buf[..n]).unwrap(), s);
        }

        #[test]
        fn audio_round_trip(size in MIN_AUDIO_PAYLOAD..400usize, publisher: u32, seq: u64) {
            let s = Stamp { publisher, kind: StreamKind::Audio, keyframe: false, layer: 0, seq, send_ns: seq / 3 };
            let mut buf = vec![0u8; 400];
            let n = write_audio(&mut buf, size, &s).unwrap();
            prop_assert_eq!(check(&buf[..n]).unwrap(), s);
        }

        #[test]
        fn check_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check(&data);
        }
    }
}
