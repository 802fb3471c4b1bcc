//! RTP packets (RFC 3550 §5), RFC 8285 header extensions and sequence/timestamp
//! unwrapping: the packet view an SFU reads and rewrites in RTP mode.
//!
//! [`RtpPacket::parse`] borrows everything from the input datagram; [`RtpHeader::write`]
//! writes a header (optionally with an extension block) into a caller buffer.
//! [`header_len`] finds the header length cheaply, which SRTP needs to locate the
//! encrypted payload.

mod ext;
pub mod red;
mod unwrap;

pub use ext::{
    AbsCaptureTime, AudioLevel, Extension, ExtensionMap, ExtensionValues, ONE_BYTE_PROFILE,
    PlayoutDelay, TWO_BYTE_PROFILE, VideoOrientation,
};
pub use unwrap::{SeqUnwrapper, TimestampUnwrapper};

/// Length of the fixed RTP header (without CSRCs or extension).
pub const FIXED_HEADER_LEN: usize = 12;

/// Maximum number of CSRC identifiers an RTP header can carry (4-bit CC field).
pub const MAX_CSRC: usize = 15;

/// Errors from parsing or writing RTP packets and header extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// The input ends before the header (fixed part, CSRCs or extension) is complete.
    #[error("RTP packet truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The padding count is zero or larger than the space after the header.
    #[error("invalid RTP padding length")]
    BadPadding,
    /// An extension element runs past the end of the extension block.
    #[error("RTP header extension element overruns its block")]
    ExtensionOverrun,
    /// An extension value cannot be encoded (too long for the two-byte form).
    #[error("RTP header extension value too long")]
    ExtensionTooLong,
    /// A raw extension block is not a multiple of 4 bytes or exceeds 65535 words.
    #[error("RTP header extension block has invalid length")]
    BadExtensionLength,
    /// More than 15 CSRCs were requested.
    #[error("too many CSRCs")]
    TooManyCsrcs,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// The RTP header fields (RFC 3550 §5.1). Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Version; always 2 in parsed packets. [`RtpHeader::write`] always writes 2.
    pub version: u8,
    /// Padding bit (P). Set by the parser from the packet; ignored by the writer
    /// (which never writes padding).
    pub padding: bool,
    /// Extension bit (X). On write it is derived from the extension argument.
    pub extension: bool,
    /// Marker bit (M).
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Contributing sources; only the first `csrc_count` entries are meaningful.
    pub csrc: [u32; MAX_CSRC],
    /// Number of valid entries in `csrc` (0..=15).
    pub csrc_count: u8,
    /// Extension profile (`0xBEDE` one-byte, `0x100x` two-byte); 0 when absent.
    pub ext_profile: u16,
    /// Length of the extension data in bytes (a multiple of 4, excluding the 4-byte
    /// profile/length word); 0 when absent.
    pub ext_len: u16,
}

impl Default for RtpHeader {
    fn default() -> Self {
        RtpHeader {
            version: 2,
            padding: false,
            extension: false,
            marker: false,
            payload_type: 0,
            sequence_number: 0,
            timestamp: 0,
            ssrc: 0,
            csrc: [0; MAX_CSRC],
            csrc_count: 0,
            ext_profile: 0,
            ext_len: 0,
        }
    }
}

/// The extension block to write after the fixed header and CSRCs.
#[derive(Debug, Clone, Copy)]
pub enum HeaderExtension<'a> {
    /// No extension (X bit cleared).
    None,
    /// A raw extension block: `profile` and `data` (must be a multiple of 4 bytes,
    /// at most 65535 words).
    Raw {
        /// The 16-bit profile value.
        profile: u16,
        /// The extension data following the profile/length word.
        data: &'a [u8],
    },
    /// Typed values encoded through an id map (one-byte form when possible, else
    /// two-byte). If no value has a mapped id, no extension is written.
    Values {
        /// The id map to use.
        map: &'a ExtensionMap,
        /// The values to encode.
        values: &'a ExtensionValues<'a>,
    },
}

impl RtpHeader {
    /// The CSRCs in use.
    pub fn csrcs(&self) -> &[u32] {
        let n = usize::from(self.csrc_count).min(MAX_CSRC);
        &self.csrc[..n]
    }

    /// Header length in bytes implied by these fields (fixed part, CSRCs and, when
    /// `extension` is set, the 4-byte extension word plus `ext_len`).
    pub fn len(&self) -> usize {
        let mut n = FIXED_HEADER_LEN + 4 * self.csrcs().len();
        if self.extension {
            n += 4 + usize::from(self.ext_len);
        }
        n
    }

    /// Always false: a header is at least 12 bytes long. Provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header followed by `ext` into `buf`, returning the bytes written.
    ///
    /// `version`, `padding`, `extension`, `ext_profile` and `ext_len` in `self` are
    /// ignored: version 2 and no padding are written, and the extension fields follow
    /// from `ext`.
    ///
    /// # Errors
    ///
    /// [`RtpError::TooManyCsrcs`] for more than 15 CSRCs,
    /// [`RtpError::BadExtensionLength`] for a raw extension block that is not a
    /// multiple of 4 bytes or too long, [`RtpError::ExtensionTooLong`] for an extension
    /// value that cannot be encoded, [`RtpError::BufferTooSmall`] when `buf` is too
    /// small.
    pub fn write(&self, ext: HeaderExtension<'_>, buf: &mut [u8]) -> Result<usize, RtpError> {
        if usize::from(self.csrc_count) > MAX_CSRC {
            return Err(RtpError::TooManyCsrcs);
        }
        let csrcs = self.csrcs();
        let base = FIXED_HEADER_LEN + 4 * csrcs.len();
        let head = buf.get_mut(..base).ok_or(RtpError::BufferTooSmall)?;
        head[0] = 0x80 | (csrcs.len() as u8);
        head[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        head[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        head[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        head[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        for (i, c) in csrcs.iter().enumerate() {
            let at = FIXED_HEADER_LEN + 4 * i;
            head[at..at + 4].copy_from_slice(&c.to_be_bytes());
        }
        let ext_len = match ext {
            HeaderExtension::None => 0,
            HeaderExtension::Raw { profile, data } => {
                if data.len() % 4 != 0 || data.len() / 4 > usize::from(u16::MAX) {
                    return Err(RtpError::BadExtensionLength);
                }
                let out = buf
                    .get_mut(base..base + 4 + data.len())
                    .ok_or(RtpError::BufferTooSmall)?;
                out[0..2].copy_from_slice(&profile.to_be_bytes());
                out[2..4].copy_from_slice(&((data.len() / 4) as u16).to_be_bytes());
                out[4..].copy_from_slice(data);
                4 + data.len()
            }
            HeaderExtension::Values { map, values } => {
                let out = buf.get_mut(base..).ok_or(RtpError::BufferTooSmall)?;
                values.write_block(map, out)?
            }
        };
        if ext_len > 0 {
            buf[0] |= 0x10;
        }
        Ok(base + ext_len)
    }
}

/// A parsed RTP packet borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The header fields.
    pub header: RtpHeader,
    /// The extension data (after the profile/length word), empty when absent.
    pub extension: &'a [u8],
    /// The payload, excluding padding.
    pub payload: &'a [u8],
    /// Number of padding bytes at the end of the packet (0 when P is clear).
    pub padding_len: u8,
}

pub(crate) fn parse_header(buf: &[u8]) -> Result<(RtpHeader, usize), RtpError> {
    let fixed = buf.get(..FIXED_HEADER_LEN).ok_or(RtpError::Truncated)?;
    let version = fixed[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let cc = fixed[0] & 0x0f;
    let mut h = RtpHeader {
        version,
        padding: fixed[0] & 0x20 != 0,
        extension: fixed[0] & 0x10 != 0,
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7f,
        sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        csrc: [0; MAX_CSRC],
        csrc_count: cc,
        ext_profile: 0,
        ext_len: 0,
    };
    let mut at = FIXED_HEADER_LEN;
    let csrc_bytes = buf
        .get(at..at + 4 * usize::from(cc))
        .ok_or(RtpError::Truncated)?;
    for (slot, c) in h.csrc.iter_mut().zip(csrc_bytes.chunks_exact(4)) {
        *slot = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    at += csrc_bytes.len();
    if h.extension {
        let w = buf.get(at..at + 4).ok_or(RtpError::Truncated)?;
        h.ext_profile = u16::from_be_bytes([w[0], w[1]]);
        let words = u16::from_be_bytes([w[2], w[3]]);
        // 65535 words * 4 = 262140 does not fit u16; reject such headers as truncated
        // unless the datagram really holds them (it cannot: UDP payloads are < 65536).
        let len = usize::from(words) * 4;
        if buf.len() < at + 4 + len {
            return Err(RtpError::Truncated);
        }
        h.ext_len = u16::try_from(len).map_err(|_| RtpError::Truncated)?;
        at += 4 + len;
    }
    Ok((h, at))
}

/// Returns the RTP header length (fixed part, CSRCs and extension block) of `buf`,
/// validating only what is needed to compute it. Cheap; used by SRTP.
///
/// # Errors
///
/// [`RtpError::Truncated`] when `buf` ends inside the header, [`RtpError::BadVersion`]
/// when the version is not 2.
pub fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    let b0 = *buf.first().ok_or(RtpError::Truncated)?;
    if b0 >> 6 != 2 {
        return Err(RtpError::BadVersion(b0 >> 6));
    }
    let mut at = FIXED_HEADER_LEN + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let w = buf.get(at..at + 4).ok_or(RtpError::Truncated)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([w[2], w[3]]));
    }
    if buf.len() < at {
        return Err(RtpError::Truncated);
    }
    Ok(at)
}

impl<'a> RtpPacket<'a> {
    /// Parses an RTP packet. Validates the version, that the CSRC list and extension
    /// block fit, and that the padding count (when P is set) is non-zero and fits.
    ///
    /// # Errors
    ///
    /// [`RtpError::Truncated`] when `buf` ends inside the header,
    /// [`RtpError::BadVersion`] when the version is not 2, [`RtpError::BadPadding`] for
    /// a zero or oversized padding count.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let (header, hlen) = parse_header(buf)?;
        let ext_start = hlen - usize::from(header.ext_len);
        let extension = buf.get(ext_start..hlen).ok_or(RtpError::Truncated)?;
        let rest = buf.get(hlen..).ok_or(RtpError::Truncated)?;
        let padding_len = if header.padding {
            let p = *rest.last().ok_or(RtpError::BadPadding)?;
            if p == 0 || usize::from(p) > rest.len() {
                return Err(RtpError::BadPadding);
            }
            p
        } else {
            0
        };
        let payload = rest
            .get(..rest.len() - usize::from(padding_len))
            .ok_or(RtpError::BadPadding)?;
        Ok(RtpPacket {
            header,
            extension,
            payload,
            padding_len,
        })
    }

    /// Decodes the header extensions through `map` (RFC 8285 one- or two-byte form).
    /// Unknown profiles yield empty values; unknown ids are skipped.
    ///
    /// # Errors
    ///
    /// [`RtpError::ExtensionOverrun`] when an element runs past the end of the block.
    pub fn extensions(&self, map: &ExtensionMap) -> Result<ExtensionValues<'a>, RtpError> {
        if !self.header.extension {
            return Ok(ExtensionValues::default());
        }
        ExtensionValues::parse(self.header.ext_profile, self.extension, map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_minimal() {
        let pkt = [
            0x80, 0xe0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
        ];
        let p = RtpPacket::parse(&pkt).unwrap();
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(p.header.sequence_number, 0x1234);
        assert_eq!(p.header.timestamp, 0x1000);
        assert_eq!(p.header.ssrc, 0xdeadbeef);
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(header_len(&pkt), Ok(12));
    }

    #[test]
    fn parse_csrc_ext_padding() {
        let mut pkt = vec![0xb2, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        pkt.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 10]); // 2 csrcs
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x2a, 0, 0]); // ext id1 len1
        pkt.extend_from_slice(&[7, 7, 7, 0, 0, 3]); // payload 7 7 7 + 3 padding
        let p = RtpPacket::parse(&pkt).unwrap();
        assert_eq!(p.header.csrcs(), &[9, 10]);
        assert_eq!(p.header.ext_profile, 0xbede);
        assert_eq!(p.extension, &[0x10, 0x2a, 0, 0]);
        assert_eq!(p.payload, &[7, 7, 7]);
        assert_eq!(p.padding_len, 3);
        assert_eq!(header_len(&pkt), Ok(28));
        assert_eq!(p.header.len(), 28);
        let mut map = ExtensionMap::empty();
        map.set(1, Extension::AudioLevel);
        let v = p.extensions(&map).unwrap();
        assert_eq!(
            v.audio_level,
            Some(AudioLevel {
                voice: false,
                level: 42
            })
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::Truncated));
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        // CSRC count 2 but no CSRCs.
        let mut p = [0u8; 12];
        p[0] = 0x82;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::Truncated));
        // Extension length beyond the end.
        let p = [
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 2, 0, 0, 0, 0,
        ];
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::Truncated));
        assert_eq!(header_len(&p), Err(RtpError::Truncated));
        // Padding 0 and padding too large.
        let mut p = [0u8; 13];
        p[0] = 0xa0;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding));
        p[12] = 2;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding));
        p[12] = 1;
        assert_eq!(RtpPacket::parse(&p).unwrap().payload, &[] as &[u8]);
        // P set with nothing after the header.
        let mut p = [0u8; 12];
        p[0] = 0xa0;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding));
    }

    #[test]
    fn write_with_typed_extensions() {
        let map = ExtensionMap::default();
        let values = ExtensionValues {
            transport_cc: Some(9),
            mid: Some("audio"),
            audio_level: Some(AudioLevel {
                voice: true,
                level: 30,
            }),
            ..ExtensionValues::default()
        };
        let h = RtpHeader {
            payload_type: 111,
            ssrc: 5,
            ..RtpHeader::default()
        };
        let mut buf = [0u8; 64];
        let n = h
            .write(
                HeaderExtension::Values {
                    map: &map,
                    values: &values,
                },
                &mut buf,
            )
            .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert!(p.header.extension);
        assert_eq!(p.header.ext_profile, ONE_BYTE_PROFILE);
        assert_eq!(p.extensions(&map).unwrap(), values);
        // No mapped values: no extension and the X bit stays clear.
        let n = h
            .write(
                HeaderExtension::Values {
                    map: &ExtensionMap::empty(),
                    values: &values,
                },
                &mut buf,
            )
            .unwrap();
        assert_eq!(n, 12);
        assert_eq!(buf[0], 0x80);
    }

    #[test]
    fn write_errors() {
        let h = RtpHeader::default();
        assert_eq!(
            h.write(HeaderExtension::None, &mut [0u8; 11]),
            Err(RtpError::BufferTooSmall)
        );
        assert_eq!(
            h.write(
                HeaderExtension::Raw {
                    profile: 0xbede,
                    data: &[1, 2, 3]
                },
                &mut [0u8; 40]
            ),
            Err(RtpError::BadExtensionLength)
        );
        let h = RtpHeader {
            csrc_count: 16,
            ..RtpHeader::default()
        };
        assert_eq!(
            h.write(HeaderExtension::None, &mut [0u8; 100]),
            Err(RtpError::TooManyCsrcs)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn header_round_trip(
            marker: bool, pt in 0u8..128, seq: u16, ts: u32, ssrc: u32,
            csrcs in proptest::collection::vec(any::<u32>(), 0..=15),
            profile: u16,
            ext_words in proptest::collection::vec(any::<[u8; 4]>(), 0..5),
            with_ext: bool,
            payload in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let mut h = RtpHeader { marker, payload_type: pt, sequence_number: seq,
                timestamp: ts, ssrc, csrc_count: csrcs.len() as u8, ..RtpHeader::default() };
            h.csrc[..csrcs.len()].copy_from_slice(&csrcs);
            let data: Vec<u8> = ext_words.concat();
            let ext = if with_ext { HeaderExtension::Raw { profile, data: &data } } else { HeaderExtension::None };
            let mut buf = [0u8; 200];
            let n = h.write(ext, &mut buf).unwrap();
            buf[n..n + payload.len()].copy_from_slice(&payload);
            let p = RtpPacket::parse(&buf[..n + payload.len()]).unwrap();
            prop_assert_eq!(header_len(&buf[..n]).unwrap(), n);
            prop_assert_eq!(p.header.marker, marker);
            prop_assert_eq!(p.header.payload_type, pt);
            prop_assert_eq!(p.header.sequence_number, seq);
            prop_assert_eq!(p.header.timestamp, ts);
            prop_assert_eq!(p.header.ssrc, ssrc);
            prop_assert_eq!(p.header.csrcs(), &csrcs[..]);
            prop_assert_eq!(p.header.extension, with_ext);
            if with_ext {
                prop_assert_eq!(p.header.ext_profile, profile);
                prop_assert_eq!(p.extension, &data[..]);
            }
            prop_assert_eq!(p.payload, &payload[..]);
            prop_assert_eq!(p.header.len(), n);
            // Truncating anywhere inside the header must error, not panic.
            for cut in 0..n {
                prop_assert!(RtpPacket::parse(&buf[..cut]).is_err());
            }
        }

        #[test]
        fn parse_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = RtpPacket::parse(&data);
            let _ = header_len(&data);
        }
    }
}
