//! RTP payload for redundant audio data (RED, RFC 2198), as browsers use it for Opus
//! (`red/48000/2`, `a=fmtp:<red> <opus>/<opus>`).
//!
//! A RED payload is a list of block headers followed by the block data:
//!
//! ```text
//! redundant block header (4 bytes): F=1 | PT (7) | timestamp offset (14) | length (10)
//! primary block header (1 byte):    F=0 | PT (7)
//! data of each redundant block, in header order, then the primary block's data
//! ```
//!
//! The primary (newest) encoding has the packet's RTP timestamp; a redundant block's
//! timestamp is the packet's minus its offset. Parsing never allocates and never panics:
//! [`RedPayload::parse`] checks every header and length against the input and
//! [`RedPayload::redundant`] iterates the checked blocks. [`write_red`] builds a payload
//! from blocks and [`rewrite_block_pts`] maps the block payload types in place (what an SFU
//! does when the subscriber numbers the inner codec differently).

/// Most redundant blocks a payload may carry (RFC 2198 sets no limit; browsers send at
/// most two, and a payload that claims more is treated as malformed to bound the work).
pub const MAX_RED_BLOCKS: usize = 32;

/// Why a RED payload could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedError {
    /// The payload ends inside a block header, or the block lengths exceed it.
    #[error("RED payload truncated")]
    Truncated,
    /// More than [`MAX_RED_BLOCKS`] redundant blocks.
    #[error("too many RED blocks")]
    TooManyBlocks,
    /// A block to write does not fit the header fields (payload type above 127, offset
    /// above 14 bits or length above 10 bits).
    #[error("RED block field out of range")]
    FieldOutOfRange,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// One encoding inside a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block's payload type (the inner codec's, e.g. Opus).
    pub payload_type: u8,
    /// How far before the packet's timestamp this block's timestamp lies (0 for the
    /// primary block).
    pub timestamp_offset: u16,
    /// The encoded data.
    pub data: &'a [u8],
}

/// A parsed RED payload: the primary block and the checked extent of the redundant ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedPayload<'a> {
    payload: &'a [u8],
    redundant_count: usize,
    /// Offset of the primary block's 1-byte header.
    primary_header: usize,
    /// The primary block.
    pub primary: RedBlock<'a>,
}

const REDUNDANT_HEADER_LEN: usize = 4;

impl<'a> RedPayload<'a> {
    /// Parses a RED payload (the RTP payload, without padding).
    ///
    /// # Errors
    ///
    /// [`RedError::Truncated`] when a header or a block's data lies beyond the payload;
    /// [`RedError::TooManyBlocks`] for more than [`MAX_RED_BLOCKS`] redundant blocks.
    pub fn parse(payload: &'a [u8]) -> Result<RedPayload<'a>, RedError> {
        let mut pos = 0usize;
        let mut data_len = 0usize;
        let mut redundant_count = 0usize;
        loop {
            let b0 = *payload.get(pos).ok_or(RedError::Truncated)?;
            if b0 & 0x80 == 0 {
                break;
            }
            let h = payload
                .get(pos..pos + REDUNDANT_HEADER_LEN)
                .ok_or(RedError::Truncated)?;
            redundant_count += 1;
            if redundant_count > MAX_RED_BLOCKS {
                return Err(RedError::TooManyBlocks);
            }
            data_len += usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
            pos += REDUNDANT_HEADER_LEN;
        }
        let primary_header = pos;
        let data_start = primary_header + 1;
        let primary_start = data_start
            .checked_add(data_len)
            .filter(|&s| s <= payload.len())
            .ok_or(RedError::Truncated)?;
        Ok(RedPayload {
            payload,
            redundant_count,
            primary_header,
            primary: RedBlock {
                payload_type: payload[primary_header] & 0x7f,
                timestamp_offset: 0,
                // `primary_start <= payload.len()` was checked above.
                data: payload.get(primary_start..).unwrap_or(&[]),
            },
        })
    }

    /// How many redundant blocks the payload carries.
    pub fn redundant_count(&self) -> usize {
        self.redundant_count
    }

    /// The redundant blocks, oldest first (header order).
    pub fn redundant(&self) -> impl Iterator<Item = RedBlock<'a>> + 'a {
        let payload = self.payload;
        let mut data_pos = self.primary_header + 1;
        (0..self.redundant_count).filter_map(move |i| {
            let h = payload.get(i * REDUNDANT_HEADER_LEN..(i + 1) * REDUNDANT_HEADER_LEN)?;
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
            let data = payload.get(data_pos..data_pos + len)?;
            data_pos += len;
            Some(RedBlock {
                payload_type: h[0] & 0x7f,
                timestamp_offset: (u16::from(h[1]) << 6) | u16::from(h[2] >> 2),
                data,
            })
        })
    }

    /// Offset of the primary block's data in the payload.
    pub fn primary_offset(&self) -> usize {
        self.payload.len() - self.primary.data.len()
    }
}

/// Whether `payload` parses as RED (see [`RedPayload::parse`]).
pub fn is_valid_red(payload: &[u8]) -> bool {
    RedPayload::parse(payload).is_ok()
}

/// Writes a RED payload: the `redundant` blocks (oldest first) and the `primary` block
/// into `out`; returns the length written. The primary block's `timestamp_offset` is
/// ignored.
///
/// # Errors
///
/// [`RedError::FieldOutOfRange`] for a payload type above 127, an offset above
/// 0x3fff or a redundant block longer than 1023 bytes; [`RedError::TooManyBlocks`] for
/// more than [`MAX_RED_BLOCKS`] redundant blocks; [`RedError::BufferTooSmall`] when the
/// payload does not fit `out`.
pub fn write_red(
    primary: &RedBlock<'_>,
    redundant: &[RedBlock<'_>],
    out: &mut [u8],
) -> Result<usize, RedError> {
    if redundant.len() > MAX_RED_BLOCKS {
        return Err(RedError::TooManyBlocks);
    }
    if primary.payload_type > 0x7f {
        return Err(RedError::FieldOutOfRange);
    }
    let mut pos = 0usize;
    let mut put = |bytes: &[u8], pos: &mut usize| -> Result<(), RedError> {
        let dst = out
            .get_mut(*pos..*pos + bytes.len())
            .ok_or(RedError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        *pos += bytes.len();
        Ok(())
    };
    for b in redundant {
        if b.payload_type > 0x7f || b.timestamp_offset > 0x3fff || b.data.len() > 0x3ff {
            return Err(RedError::FieldOutOfRange);
        }
        // Both fit their fields (checked above).
        let len = b.data.len() as u16;
        let off = b.timestamp_offset;
        let h = [
            0x80 | b.payload_type,
            (off >> 6) as u8,
            (((off & 0x3f) << 2) as u8) | (len >> 8) as u8,
            (len & 0xff) as u8,
        ];
        put(&h, &mut pos)?;
    }
    put(&[primary.payload_type], &mut pos)?;
    for b in redundant {
        put(b.data, &mut pos)?;
    }
    put(primary.data, &mut pos)?;
    Ok(pos)
}

/// Rewrites the payload type of every block header of the RED payload in `payload`, in
/// place, with `map` (a block whose type `map` returns `None` for is left unchanged).
///
/// # Errors
///
/// The errors of [`RedPayload::parse`]; `payload` is then unchanged.
pub fn rewrite_block_pts(
    payload: &mut [u8],
    map: impl Fn(u8) -> Option<u8>,
) -> Result<(), RedError> {
    let n = RedPayload::parse(payload)?.redundant_count;
    for i in 0..=n {
        let at = i * REDUNDANT_HEADER_LEN;
        // Parsing checked that all `n` redundant headers and the primary one exist.
        if let Some(b) = payload.get_mut(at)
            && let Some(pt) = map(*b & 0x7f)
        {
            *b = (*b & 0x80) | (pt & 0x7f);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = [0u8; 64];
        let old = [1u8, 2, 3];
        let mid = [4u8, 5];
        let prim = [6u8, 7, 8, 9];
        let n = write_red(
            &RedBlock {
                payload_type: 111,
                timestamp_offset: 0,
                data: &prim,
            },
            &[
                RedBlock {
                    payload_type: 111,
                    timestamp_offset: 1920,
                    data: &old,
                },
                RedBlock {
                    payload_type: 111,
                    timestamp_offset: 960,
                    data: &mid,
                },
            ],
            &mut out,
        )
        .unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn write_then_parse_round_trips() {
        let p = sample();
        // 2 * 4 + 1 header bytes, then 3 + 2 + 4 data bytes.
        assert_eq!(p.len(), 9 + 9);
        let r = RedPayload::parse(&p).unwrap();
        assert_eq!(r.redundant_count(), 2);
        assert_eq!(r.primary.payload_type, 111);
        assert_eq!(r.primary.data, &[6, 7, 8, 9]);
        assert_eq!(r.primary_offset(), 14);
        let red: Vec<_> = r.redundant().collect();
        assert_eq!(red.len(), 2);
        assert_eq!(
            (red[0].payload_type, red[0].timestamp_offset, red[0].data),
            (111, 1920, &[1u8, 2, 3][..])
        );
        assert_eq!((red[1].timestamp_offset, red[1].data), (960, &[4u8, 5][..]));
    }

    #[test]
    fn primary_only_payload() {
        let r = RedPayload::parse(&[111, 0xaa, 0xbb]).unwrap();
        assert_eq!(r.redundant_count(), 0);
        assert_eq!(r.primary.data, &[0xaa, 0xbb]);
        // An empty primary block is legal.
        assert_eq!(
            RedPayload::parse(&[111]).unwrap().primary.data,
            &[] as &[u8]
        );
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let p = sample();
        for n in 0..9 {
            assert_eq!(RedPayload::parse(&p[..n]), Err(RedError::Truncated), "{n}");
        }
        // Headers complete but the redundant data runs past the end.
        assert_eq!(RedPayload::parse(&p[..12]), Err(RedError::Truncated));
        // Exactly the redundant data, empty primary: fine.
        assert!(RedPayload::parse(&p[..14]).is_ok());
        let many = [0x80u8 | 111, 0, 0, 0].repeat(MAX_RED_BLOCKS + 1);
        assert_eq!(RedPayload::parse(&many), Err(RedError::TooManyBlocks));
    }

    #[test]
    fn write_rejects_out_of_range_fields() {
        let mut out = [0u8; 2048];
        let big = [0u8; 1024];
        let prim = RedBlock {
            payload_type: 111,
            timestamp_offset: 0,
            data: &[],
        };
        let bad = |pt, off, data| RedBlock {
            payload_type: pt,
            timestamp_offset: off,
            data,
        };
        for b in [
            bad(128, 0, &[][..]),
            bad(1, 0x4000, &[]),
            bad(1, 0, &big[..]),
        ] {
            assert_eq!(
                write_red(&prim, &[b], &mut out),
                Err(RedError::FieldOutOfRange)
            );
        }
        assert_eq!(
            write_red(&prim, &[bad(1, 0, &big[..4])], &mut out[..6]),
            Err(RedError::BufferTooSmall)
        );
    }

    #[test]
    fn rewrite_maps_every_block_type() {
        let mut p = sample();
        rewrite_block_pts(&mut p, |pt| (pt == 111).then_some(100)).unwrap();
        let r = RedPayload::parse(&p).unwrap();
        assert_eq!(r.primary.payload_type, 100);
        assert!(r.redundant().all(|b| b.payload_type == 100));
        // Offsets and data are untouched.
        assert_eq!(r.redundant().next().unwrap().timestamp_offset, 1920);
        assert_eq!(r.primary.data, &[6, 7, 8, 9]);
        let mut bad = vec![0x80];
        assert!(rewrite_block_pts(&mut bad, |_| Some(1)).is_err());
        assert_eq!(bad, [0x80]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_stays_in_bounds(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
        ) {
            if let Ok(r) = RedPayload::parse(&bytes) {
                let total: usize = r.redundant().map(|b| b.data.len()).sum::<usize>()
                    + r.primary.data.len();
                proptest::prop_assert!(total <= bytes.len());
                proptest::prop_assert_eq!(r.redundant().count(), r.redundant_count());
            }
        }
    }
}
