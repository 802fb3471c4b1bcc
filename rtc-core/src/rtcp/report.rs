//! Sender/receiver reports, SDES, BYE and APP (RFC 3550 §6.4–6.7).

use super::{PT_APP, PT_BYE, PT_RR, PT_SDES, PT_SR, RtcpError, U32Iter, rd32, wr32, write_header};

/// Maximum number of report blocks in one SR/RR (5-bit count field).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// SDES item type CNAME.
pub const SDES_CNAME: u8 = 1;

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed; written masked to 24 bits).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR (LSR).
    pub last_sr: u32,
    /// Delay since the last SR in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

const BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn parse(b: &[u8]) -> Result<ReportBlock, RtcpError> {
        let w = rd32(b, 4, "report block")?;
        // Sign-extend the 24-bit cumulative loss.
        let cl = ((w << 8) as i32) >> 8;
        Ok(ReportBlock {
            ssrc: rd32(b, 0, "report block")?,
            fraction_lost: (w >> 24) as u8,
            cumulative_lost: cl,
            highest_seq: rd32(b, 8, "report block")?,
            jitter: rd32(b, 12, "report block")?,
            last_sr: rd32(b, 16, "report block")?,
            delay_since_last_sr: rd32(b, 20, "report block")?,
        })
    }

    fn write(&self, b: &mut [u8]) {
        wr32(b, 0, self.ssrc);
        wr32(
            b,
            4,
            (u32::from(self.fraction_lost) << 24) | (self.cumulative_lost as u32 & 0x00ff_ffff),
        );
        wr32(b, 8, self.highest_seq);
        wr32(b, 12, self.jitter);
        wr32(b, 16, self.last_sr);
        wr32(b, 20, self.delay_since_last_sr);
    }
}

/// Up to 31 report blocks in a fixed array (no heap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks {
    blocks: [ReportBlock; MAX_REPORT_BLOCKS],
    len: u8,
}

impl Default for ReportBlocks {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBlocks {
    /// An empty list.
    pub fn new() -> Self {
        ReportBlocks {
            blocks: [ReportBlock::default(); MAX_REPORT_BLOCKS],
            len: 0,
        }
    }

    /// Copies up to 31 blocks; errors with [`RtcpError::TooMany`] for more.
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] for more than 31 blocks.
    pub fn from_slice(s: &[ReportBlock]) -> Result<Self, RtcpError> {
        let mut r = Self::new();
        for b in s {
            r.push(*b)?;
        }
        Ok(r)
    }

    /// Appends a block; errors with [`RtcpError::TooMany`] when 31 are present.
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] when 31 blocks are present.
    pub fn push(&mut self, b: ReportBlock) -> Result<(), RtcpError> {
        let slot = self
            .blocks
            .get_mut(usize::from(self.len))
            .ok_or(RtcpError::TooMany)?;
        *slot = b;
        self.len += 1;
        Ok(())
    }

    /// The blocks present.
    pub fn as_slice(&self) -> &[ReportBlock] {
        &self.blocks[..usize::from(self.len).min(MAX_REPORT_BLOCKS)]
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn parse(count: u8, b: &[u8], what: &'static str) -> Result<Self, RtcpError> {
        let n = usize::from(count);
        let data = b.get(..n * BLOCK_LEN).ok_or(RtcpError::Malformed(what))?;
        let mut r = Self::new();
        for c in data.chunks_exact(BLOCK_LEN) {
            r.push(ReportBlock::parse(c)?)?;
        }
        Ok(r)
    }

    fn write(&self, b: &mut [u8]) {
        for (i, blk) in self.as_slice().iter().enumerate() {
            blk.write(&mut b[i * BLOCK_LEN..(i + 1) * BLOCK_LEN]);
        }
    }
}

/// The sender information section of an SR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp.
    pub ntp_time: u64,
    /// RTP timestamp corresponding to `ntp_time`.
    pub rtp_time: u32,
    /// Sender's packet count.
    pub packet_count: u32,
    /// Sender's octet count.
    pub octet_count: u32,
}

/// Sender report (PT 200). Profile-specific extensions are not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// Sender information.
    pub info: SenderInfo,
    /// Reception report blocks.
    pub reports: ReportBlocks,
}

impl SenderReport {
    pub(crate) fn parse(count: u8, b: &[u8]) -> Result<Self, RtcpError> {
        const W: &str = "SR";
        let ntp_hi = rd32(b, 4, W)?;
        let ntp_lo = rd32(b, 8, W)?;
        Ok(SenderReport {
            ssrc: rd32(b, 0, W)?,
            info: SenderInfo {
                ntp_time: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                rtp_time: rd32(b, 12, W)?,
                packet_count: rd32(b, 16, W)?,
                octet_count: rd32(b, 20, W)?,
            },
            reports: ReportBlocks::parse(count, b.get(24..).unwrap_or(&[]), W)?,
        })
    }

    /// Writes the SR, returning its length (28 + 24 per block).
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 28 + BLOCK_LEN * self.reports.len();
        write_header(buf, self.reports.len() as u8, PT_SR, n)?;
        wr32(buf, 4, self.ssrc);
        wr32(buf, 8, (self.info.ntp_time >> 32) as u32);
        wr32(buf, 12, self.info.ntp_time as u32);
        wr32(buf, 16, self.info.rtp_time);
        wr32(buf, 20, self.info.packet_count);
        wr32(buf, 24, self.info.octet_count);
        self.reports.write(&mut buf[28..n]);
        Ok(n)
    }
}

/// Receiver report (PT 201). Profile-specific extensions are not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// SSRC of the packet sender.
    pub ssrc: u32,
    /// Reception report blocks.
    pub reports: ReportBlocks,
}

impl ReceiverReport {
    pub(crate) fn parse(count: u8, b: &[u8]) -> Result<Self, RtcpError> {
        Ok(ReceiverReport {
            ssrc: rd32(b, 0, "RR")?,
            reports: ReportBlocks::parse(count, b.get(4..).unwrap_or(&[]), "RR")?,
        })
    }

    /// Writes the RR, returning its length (8 + 24 per block).
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 8 + BLOCK_LEN * self.reports.len();
        write_header(buf, self.reports.len() as u8, PT_RR, n)?;
        wr32(buf, 4, self.ssrc);
        self.reports.write(&mut buf[8..n]);
        Ok(n)
    }
}

/// One SDES item (type and borrowed value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Item type (1 = CNAME, …; never 0).
    pub kind: u8,
    /// Item value (at most 255 bytes).
    pub value: &'a [u8],
}

/// Source description (PT 202); the chunks were validated at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

/// One SDES chunk: an SSRC and its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// The SSRC/CSRC described.
    pub ssrc: u32,
    items: &'a [u8],
}

/// Walks one chunk starting at `at`; returns (items slice, offset of next chunk).
fn sdes_chunk(b: &[u8], at: usize) -> Result<(u32, &[u8], usize), RtcpError> {
    const W: &str = "SDES";
    let ssrc = rd32(b, at, W)?;
    let start = at + 4;
    let mut i = start;
    loop {
        let kind = *b.get(i).ok_or(RtcpError::Malformed(W))?;
        if kind == 0 {
            let next = (i + 1).div_ceil(4) * 4;
            if next > b.len() {
                return Err(RtcpError::Malformed(W));
            }
            return Ok((ssrc, &b[start..i], next));
        }
        let len = usize::from(*b.get(i + 1).ok_or(RtcpError::Malformed(W))?);
        if i + 2 + len > b.len() {
            return Err(RtcpError::Malformed(W));
        }
        i += 2 + len;
    }
}

impl<'a> Sdes<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut at = 0;
        for _ in 0..count {
            at = sdes_chunk(body, at)?.2;
        }
        Ok(Sdes {
            count,
            body: body.get(..at).unwrap_or(body),
        })
    }

    /// Number of chunks.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Iterates over the chunks.
    pub fn chunks(&self) -> impl Iterator<Item = SdesChunk<'a>> + use<'a> {
        let body = self.body;
        let mut at = 0;
        (0..self.count).map_while(move |_| {
            let (ssrc, items, next) = sdes_chunk(body, at).ok()?;
            at = next;
            Some(SdesChunk { ssrc, items })
        })
    }

    /// Re-writes the packet as parsed.
    ///
    /// # Errors
    ///
    /// As [`Sdes::write_chunks`].
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 4 + self.body.len();
        write_header(buf, self.count, PT_SDES, n)?;
        buf[4..n].copy_from_slice(self.body);
        Ok(n)
    }

    /// Writes an SDES packet from `(ssrc, items)` chunks (at most 31). Items with
    /// type 0 or values longer than 255 bytes are rejected.
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] for more than 31 chunks; [`RtcpError::Unencodable`] for
    /// an item of type 0 or longer than 255 bytes; [`RtcpError::BufferTooSmall`] when
    /// `buf` cannot hold the packet.
    pub fn write_chunks(
        chunks: &[(u32, &[SdesItem<'_>])],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        if chunks.len() > 31 {
            return Err(RtcpError::TooMany);
        }
        let mut at = 4;
        for (ssrc, items) in chunks {
            let h = buf.get_mut(at..at + 4).ok_or(RtcpError::BufferTooSmall)?;
            h.copy_from_slice(&ssrc.to_be_bytes());
            at += 4;
            for it in *items {
                if it.kind == 0 {
                    return Err(RtcpError::Unencodable);
                }
                let len = u8::try_from(it.value.len()).map_err(|_| RtcpError::Unencodable)?;
                let o = buf
                    .get_mut(at..at + 2 + it.value.len())
                    .ok_or(RtcpError::BufferTooSmall)?;
                o[0] = it.kind;
                o[1] = len;
                o[2..].copy_from_slice(it.value);
                at += 2 + it.value.len();
            }
            let next = (at + 1).div_ceil(4) * 4;
            buf.get_mut(at..next)
                .ok_or(RtcpError::BufferTooSmall)?
                .fill(0);
            at = next;
        }
        write_header(buf, chunks.len() as u8, PT_SDES, at)?;
        Ok(at)
    }
}

impl<'a> SdesChunk<'a> {
    /// Iterates over the items of the chunk.
    pub fn items(&self) -> impl Iterator<Item = SdesItem<'a>> + use<'a> {
        let b = self.items;
        let mut at = 0;
        std::iter::from_fn(move || {
            let kind = *b.get(at)?;
            let len = usize::from(*b.get(at + 1)?);
            let value = b.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            Some(SdesItem { kind, value })
        })
    }

    /// The CNAME item's value, if present.
    pub fn cname(&self) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == SDES_CNAME).map(|i| i.value)
    }
}

/// Goodbye (PT 203).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    /// Optional reason for leaving.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let n = 4 * usize::from(count);
        let ssrcs = body.get(..n).ok_or(RtcpError::Malformed("BYE"))?;
        let reason = match body.get(n) {
            None => None,
            Some(&len) => Some(
                body.get(n + 1..n + 1 + usize::from(len))
                    .ok_or(RtcpError::Malformed("BYE"))?,
            ),
        };
        Ok(Bye { ssrcs, reason })
    }

    /// The SSRCs leaving.
    pub fn ssrcs(&self) -> U32Iter<'a> {
        U32Iter::new(self.ssrcs)
    }

    /// Re-writes the packet as parsed.
    ///
    /// # Errors
    ///
    /// As [`Bye::write_with`].
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        write_bye(self.ssrcs.len() / 4, self.ssrcs(), self.reason, buf)
    }

    /// Writes a BYE for `ssrcs` (at most 31) with an optional reason (≤ 255 bytes).
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] for more than 31 SSRCs; [`RtcpError::Unencodable`] for a
    /// reason longer than 255 bytes; [`RtcpError::BufferTooSmall`] when `buf` cannot
    /// hold the packet.
    pub fn write_with(
        ssrcs: &[u32],
        reason: Option<&[u8]>,
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        write_bye(ssrcs.len(), ssrcs.iter().copied(), reason, buf)
    }
}

fn write_bye(
    count: usize,
    ssrcs: impl Iterator<Item = u32>,
    reason: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<usize, RtcpError> {
    if count > 31 {
        return Err(RtcpError::TooMany);
    }
    let mut n = 4 + 4 * count;
    if let Some(r) = reason {
        if r.len() > 255 {
            return Err(RtcpError::Unencodable);
        }
        n = (n + 1 + r.len()).div_ceil(4) * 4;
    }
    write_header(buf, count as u8, PT_BYE, n)?;
    let mut at = 4;
    for s in ssrcs {
        wr32(buf, at, s);
        at += 4;
    }
    if let Some(r) = reason {
        buf[at] = r.len() as u8; // checked ≤ 255 above
        buf[at + 1..at + 1 + r.len()].copy_from_slice(r);
        buf[at + 1 + r.len()..n].fill(0);
    }
    Ok(n)
}

/// Application-defined packet (PT 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    /// Subtype (the 5-bit count field).
    pub subtype: u8,
    /// SSRC/CSRC.
    pub ssrc: u32,
    /// Four ASCII name characters.
    pub name: [u8; 4],
    /// Application data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

impl<'a> App<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let ssrc = rd32(body, 0, "APP")?;
        let name = rd32(body, 4, "APP")?.to_be_bytes();
        Ok(App {
            subtype: count,
            ssrc,
            name,
            data: body.get(8..).unwrap_or(&[]),
        })
    }

    /// Writes the packet; `data` must be a multiple of 4 bytes and `subtype` < 32.
    ///
    /// # Errors
    ///
    /// [`RtcpError::Unencodable`] when `data` is not a multiple of 4 bytes or `subtype`
    /// is 32 or more; [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if !self.data.len().is_multiple_of(4) || self.subtype > 31 {
            return Err(RtcpError::Unencodable);
        }
        let n = 12 + self.data.len();
        write_header(buf, self.subtype, PT_APP, n)?;
        wr32(buf, 4, self.ssrc);
        buf[8..12].copy_from_slice(&self.name);
        buf[12..n].copy_from_slice(self.data);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RtcpPacket, only};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sr_with_two_blocks_from_rfc_layout() {
        // RFC 3550 §6.4.1 layout: V=2 P=0 RC=2 PT=200 length=18.
        let mut p = vec![0x82, 200, 0, 18];
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // SSRC of sender
        p.extend_from_slice(&0xe1b2_c3d4u32.to_be_bytes()); // NTP msw
        p.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // NTP lsw
        p.extend_from_slice(&160_000u32.to_be_bytes()); // RTP ts
        p.extend_from_slice(&500u32.to_be_bytes()); // packets
        p.extend_from_slice(&80_000u32.to_be_bytes()); // octets
        for (ssrc, lost) in [(0xaaaa_aaaau32, 0x00ff_fffeu32), (0xbbbb_bbbb, 7)] {
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&((25u32 << 24) | lost).to_be_bytes());
            p.extend_from_slice(&0x0001_0010u32.to_be_bytes());
            p.extend_from_slice(&33u32.to_be_bytes());
            p.extend_from_slice(&0xb2c3_8000u32.to_be_bytes());
            p.extend_from_slice(&65_536u32.to_be_bytes());
        }
        assert_eq!(p.len(), 76);
        let RtcpPacket::SenderReport(sr) = only(&p) else {
            panic!("not an SR")
        };
        assert_eq!(sr.ssrc, 0x1234_5678);
        assert_eq!(sr.info.ntp_time, 0xe1b2_c3d4_8000_0000);
        assert_eq!(sr.info.rtp_time, 160_000);
        assert_eq!(sr.info.packet_count, 500);
        assert_eq!(sr.info.octet_count, 80_000);
        let b = sr.reports.as_slice();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].ssrc, 0xaaaa_aaaa);
        assert_eq!(b[0].fraction_lost, 25);
        assert_eq!(b[0].cumulative_lost, -2);
        assert_eq!(b[1].cumulative_lost, 7);
        assert_eq!(b[1].highest_seq, 0x0001_0010);
        assert_eq!(b[1].jitter, 33);
        assert_eq!(b[1].last_sr, 0xb2c3_8000);
        assert_eq!(b[1].delay_since_last_sr, 65_536);
        let mut out = [0u8; 76];
        assert_eq!(sr.write(&mut out), Ok(76));
        assert_eq!(&out[..], &p[..]);
        assert_eq!(sr.write(&mut out[..75]), Err(RtcpError::BufferTooSmall));
        // Truncations: every shorter length field is malformed.
        for words in 0..18u8 {
            let mut q = p[..4 + 4 * usize::from(words)].to_vec();
            q[3] = words;
            assert!(RtcpPacket::iter(&q).next().unwrap().is_err(), "{words}");
        }
    }

    #[test]
    fn sdes_and_bye_malformed() {
        // SDES count 1 with item overrunning.
        let p = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', 0];
        assert!(matches!(
            RtcpPacket::iter(&p).next(),
            Some(Err(RtcpError::Malformed(_)))
        ));
        // SDES chunk without terminating null.
        let p = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, b'a', b'b'];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
        // BYE with reason length past the end.
        let p = [0x81, 203, 0, 2, 0, 0, 0, 1, 5, b'a', b'b', b'c'];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
        // BYE count 2 with one SSRC.
        let p = [0x82, 203, 0, 1, 0, 0, 0, 1];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
        // Empty-items chunk is legal: ssrc + 4 zero bytes.
        let p = [0x81, 202, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        let RtcpPacket::Sdes(s) = only(&p) else {
            panic!("not sdes")
        };
        assert_eq!(s.chunks().next().unwrap().items().count(), 0);
    }

    #[test]
    fn app_round_trip() {
        let a = App {
            subtype: 3,
            ssrc: 9,
            name: *b"TEST",
            data: &[1, 2, 3, 4],
        };
        let mut out = [0u8; 16];
        assert_eq!(a.write(&mut out), Ok(16));
        assert_eq!(only(&out), RtcpPacket::App(a));
        let bad = App { data: &[1], ..a };
        assert_eq!(bad.write(&mut out), Err(RtcpError::Unencodable));
    }

    fn block() -> impl Strategy<Value = ReportBlock> {
        (
            any::<u32>(),
            any::<u8>(),
            -(1i32 << 23)..(1 << 23),
            any::<[u32; 4]>(),
        )
            .prop_map(|(ssrc, fraction_lost, cumulative_lost, w)| ReportBlock {
                ssrc,
                fraction_lost,
                cumulative_lost,
                highest_seq: w[0],
                jitter: w[1],
                last_sr: w[2],
                delay_since_last_sr: w[3],
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn sr_rr_round_trip(ssrc: u32, ntp: u64, w: [u32; 3], blocks in proptest::collection::vec(block(), 0..=31)) {
            let reports = ReportBlocks::from_slice(&blocks).unwrap();
            let sr = SenderReport { ssrc, info: SenderInfo { ntp_time: ntp, rtp_time: w[0], packet_count: w[1], octet_count: w[2] }, reports };
            let mut buf = [0u8; 1024];
            let n = sr.write(&mut buf).unwrap();
            prop_assert_eq!(only(&buf[..n]), RtcpPacket::SenderReport(sr));
            let rr = ReceiverReport { ssrc, reports };
            let n = rr.write(&mut buf).unwrap();
            prop_assert_eq!(only(&buf[..n]), RtcpPacket::ReceiverReport(rr));
        }

        #[test]
        fn sdes_round_trip(chunks in proptest::collection::vec(
            (any::<u32>(), proptest::collection::vec((1u8..=8, proptest::collection::vec(any::<u8>(), 0..40)), 0..4)), 0..5)) {
            let items: Vec<Vec<SdesItem<'_>>> = chunks.iter().map(|(_, its)| its.iter().map(|(k, v)| SdesItem { kind: *k, value: v }).collect()).collect();
            let input: Vec<(u32, &[SdesItem<'_>])> = chunks.iter().zip(&items).map(|((s, _), its)| (*s, &its[..])).collect();
            let mut buf = [0u8; 2048];
            let n = Sdes::write_chunks(&input, &mut buf).unwrap();
            let RtcpPacket::Sdes(s) = only(&buf[..n]) else { panic!("not sdes") };
            let got: Vec<(u32, Vec<SdesItem<'_>>)> = s.chunks().map(|c| (c.ssrc, c.items().collect())).collect();
            let want: Vec<(u32, Vec<SdesItem<'_>>)> = input.iter().map(|(s, i)| (*s, i.to_vec())).collect();
            prop_assert_eq!(got, want);
            let mut out = [0u8; 2048];
            let m = s.write(&mut out).unwrap();
            prop_assert_eq!(&out[..m], &buf[..n]);
        }

        #[test]
        fn app_and_unknown_round_trip(subtype in 0u8..32, ssrc: u32, name: [u8; 4], words in proptest::collection::vec(any::<[u8; 4]>(), 0..20)) {
            let data = words.concat();
            let app = App { subtype, ssrc, name, data: &data };
            let mut buf = [0u8; 256];
            let n = app.write(&mut buf).unwrap();
            prop_assert_eq!(only(&buf[..n]), RtcpPacket::App(app));
            let unk = super::super::Unknown { packet_type: 199, count: subtype, body: &data };
            let n = unk.write(&mut buf).unwrap();
            prop_assert_eq!(only(&buf[..n]), RtcpPacket::Unknown(unk));
        }

        #[test]
        fn bye_round_trip(ssrcs in proptest::collection::vec(any::<u32>(), 0..=31), reason in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=255))) {
            let mut buf = [0u8; 512];
            let n = Bye::write_with(&ssrcs, reason.as_deref(), &mut buf).unwrap();
            let RtcpPacket::Bye(b) = only(&buf[..n]) else { panic!("not bye") };
            prop_assert_eq!(b.ssrcs().collect::<Vec<_>>(), ssrcs);
            prop_assert_eq!(b.reason, reason.as_deref());
            let mut out = [0u8; 512];
            let m = b.write(&mut out).unwrap();
            prop_assert_eq!(&out[..m], &buf[..n]);
        }
    }
}
