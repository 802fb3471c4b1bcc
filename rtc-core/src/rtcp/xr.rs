//! Extended reports (RFC 3611): receiver reference time (RRTR, BT 4) and DLRR (BT 5)
//! blocks. Other block types are validated for framing and skipped.

use super::{PT_XR, RtcpError, rd32, wr32, write_header};

const BT_RRTR: u8 = 4;
const BT_DLRR: u8 = 5;

/// One DLRR sub-block (RFC 3611 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrrItem {
    /// Receiver SSRC.
    pub ssrc: u32,
    /// Last RR timestamp (middle 32 bits of the RRTR NTP time).
    pub last_rr: u32,
    /// Delay since the last RR, in 1/65536 s.
    pub delay_since_last_rr: u32,
}

/// A known XR report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrBlock<'a> {
    /// Receiver reference time report: a 64-bit NTP timestamp.
    Rrtr {
        /// The NTP timestamp.
        ntp_time: u64,
    },
    /// DLRR report block: sub-blocks as raw bytes (12 bytes each), see
    /// [`XrBlock::dlrr_items`].
    Dlrr(&'a [u8]),
}

impl<'a> XrBlock<'a> {
    /// For a DLRR block, its sub-blocks; empty for other blocks.
    pub fn dlrr_items(&self) -> impl Iterator<Item = DlrrItem> + use<'a> {
        let raw: &'a [u8] = match self {
            XrBlock::Dlrr(r) => r,
            XrBlock::Rrtr { .. } => &[],
        };
        raw.chunks_exact(12).map(|c| DlrrItem {
            ssrc: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            last_rr: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            delay_since_last_rr: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
        })
    }
}

/// Extended report (PT 207).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedReport<'a> {
    /// SSRC of the packet sender.
    pub ssrc: u32,
    blocks: &'a [u8],
}

/// Splits one block at `at`: (block type, block body, next offset).
fn block(b: &[u8], at: usize) -> Result<(u8, &[u8], usize), RtcpError> {
    const W: &str = "XR";
    let h = b.get(at..at + 4).ok_or(RtcpError::Malformed(W))?;
    let len = 4 * usize::from(u16::from_be_bytes([h[2], h[3]]));
    let body = b.get(at + 4..at + 4 + len).ok_or(RtcpError::Malformed(W))?;
    match h[0] {
        BT_RRTR if len != 8 => return Err(RtcpError::Malformed(W)),
        BT_DLRR if len % 12 != 0 => return Err(RtcpError::Malformed(W)),
        _ => {}
    }
    Ok((h[0], body, at + 4 + len))
}

impl<'a> ExtendedReport<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let ssrc = rd32(body, 0, "XR")?;
        let blocks = body.get(4..).unwrap_or(&[]);
        let mut at = 0;
        while at < blocks.len() {
            at = block(blocks, at)?.2;
        }
        Ok(ExtendedReport { ssrc, blocks })
    }

    /// The RRTR and DLRR blocks, in order; other block types are skipped.
    pub fn blocks(&self) -> impl Iterator<Item = XrBlock<'a>> + use<'a> {
        let b = self.blocks;
        let mut at = 0;
        std::iter::from_fn(move || {
            loop {
                let (bt, body, next) = block(b, at).ok()?;
                at = next;
                match bt {
                    BT_RRTR => {
                        let hi = rd32(body, 0, "XR").ok()?;
                        let lo = rd32(body, 4, "XR").ok()?;
                        return Some(XrBlock::Rrtr {
                            ntp_time: (u64::from(hi) << 32) | u64::from(lo),
                        });
                    }
                    BT_DLRR => return Some(XrBlock::Dlrr(body)),
                    _ => {}
                }
            }
        })
    }

    /// Re-writes the packet as parsed (including skipped block types).
    ///
    /// # Errors
    ///
    /// As [`ExtendedReport::write_blocks`].
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 8 + self.blocks.len();
        write_header(buf, 0, PT_XR, n)?;
        wr32(buf, 4, self.ssrc);
        buf[8..n].copy_from_slice(self.blocks);
        Ok(n)
    }

    /// Writes an XR with an optional RRTR block and, when `dlrr` is non-empty, a
    /// DLRR block.
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] when the DLRR block is too long for its length field;
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write_blocks(
        ssrc: u32,
        rrtr: Option<u64>,
        dlrr: &[DlrrItem],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let dlrr_words = u16::try_from(3 * dlrr.len()).map_err(|_| RtcpError::TooMany)?;
        let mut n = 8;
        if rrtr.is_some() {
            n += 12;
        }
        if !dlrr.is_empty() {
            n += 4 + 12 * dlrr.len();
        }
        write_header(buf, 0, PT_XR, n)?;
        wr32(buf, 4, ssrc);
        let mut at = 8;
        if let Some(t) = rrtr {
            wr32(buf, at, (u32::from(BT_RRTR) << 24) | 2);
            wr32(buf, at + 4, (t >> 32) as u32);
            wr32(buf, at + 8, t as u32);
            at += 12;
        }
        if !dlrr.is_empty() {
            wr32(buf, at, (u32::from(BT_DLRR) << 24) | u32::from(dlrr_words));
            at += 4;
            for d in dlrr {
                wr32(buf, at, d.ssrc);
                wr32(buf, at + 4, d.last_rr);
                wr32(buf, at + 8, d.delay_since_last_rr);
                at += 12;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RtcpPacket;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn skips_unknown_blocks_and_rejects_bad_lengths() {
        let mut p = vec![0x80, 207, 0, 0, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 0, 0, 1, 9, 9, 9, 9]); // loss RLE block (BT 1), skipped
        p.extend_from_slice(&[4, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]); // RRTR
        p[3] = (p.len() / 4 - 1) as u8;
        let Some(Ok(RtcpPacket::ExtendedReport(x))) = RtcpPacket::iter(&p).next() else {
            panic!("not xr")
        };
        assert_eq!(x.ssrc, 7);
        assert_eq!(
            x.blocks().collect::<Vec<_>>(),
            vec![XrBlock::Rrtr {
                ntp_time: (1 << 32) | 2
            }]
        );
        // RRTR with wrong length.
        let p = [0x80, 207, 0, 3, 0, 0, 0, 7, 4, 0, 0, 1, 0, 0, 0, 0];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
        // Block longer than the packet.
        let p = [0x80, 207, 0, 2, 0, 0, 0, 7, 5, 0, 0, 3];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn xr_round_trip(ssrc: u32, rrtr: Option<u64>, dlrr in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..10)) {
            let items: Vec<DlrrItem> = dlrr.into_iter().map(|(ssrc, last_rr, delay_since_last_rr)| DlrrItem { ssrc, last_rr, delay_since_last_rr }).collect();
            let mut buf = [0u8; 256];
            let n = ExtendedReport::write_blocks(ssrc, rrtr, &items, &mut buf).unwrap();
            let Some(Ok(RtcpPacket::ExtendedReport(x))) = RtcpPacket::iter(&buf[..n]).next() else { panic!("not xr") };
            prop_assert_eq!(x.ssrc, ssrc);
            let blocks: Vec<_> = x.blocks().collect();
            let mut want = 0;
            if let Some(t) = rrtr { prop_assert_eq!(blocks[0], XrBlock::Rrtr { ntp_time: t }); want += 1; }
            if !items.is_empty() {
                prop_assert_eq!(blocks[want].dlrr_items().collect::<Vec<_>>(), items.clone());
                want += 1;
            }
            prop_assert_eq!(blocks.len(), want);
            let mut out = [0u8; 256];
            prop_assert_eq!(x.write(&mut out).unwrap(), n);
            prop_assert_eq!(&out[..n], &buf[..n]);
        }
    }
}
