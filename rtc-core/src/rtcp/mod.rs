//! RTCP (RFC 3550 §6) and its WebRTC feedback extensions: RFC 4585 (NACK, PLI),
//! RFC 5104 (FIR), RFC 3611 (XR RRTR/DLRR), REMB (draft-alvestrand-rmcat-remb) and
//! transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01).
//!
//! [`RtcpPacket::iter`] walks a compound (or RFC 5506 reduced-size) packet, yielding
//! each packet borrowed from the input. Nothing is allocated: report blocks live in
//! fixed arrays and variable lists are kept as validated borrowed byte slices with
//! iterators over their entries.
//!
//! Every type can be written into a caller buffer (`write`, returning the length);
//! a compound packet is consecutive writes. Typed constructors (`write_pairs`,
//! `write_entries`, …) build list-carrying packets from plain slices, and
//! [`TwccBuilder`] produces transport-wide feedback from arrival records.

mod feedback;
mod report;
mod twcc;
mod xr;

pub use feedback::{Fir, FirEntry, Nack, NackPair, Pli, Remb};
pub use report::{
    App, Bye, MAX_REPORT_BLOCKS, ReceiverReport, ReportBlock, ReportBlocks, SDES_CNAME, Sdes,
    SdesChunk, SdesItem, SenderInfo, SenderReport,
};
pub use twcc::{
    TWCC_DELTA_UNIT_US, TWCC_REFERENCE_UNIT_US, TransportFeedback, TwccBuilder, TwccIter,
    TwccStatus,
};
pub use xr::{DlrrItem, ExtendedReport, XrBlock};

/// Packet type: sender report.
pub const PT_SR: u8 = 200;
/// Packet type: receiver report.
pub const PT_RR: u8 = 201;
/// Packet type: source description.
pub const PT_SDES: u8 = 202;
/// Packet type: goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type: application-defined.
pub const PT_APP: u8 = 204;
/// Packet type: transport-layer feedback (RFC 4585).
pub const PT_RTPFB: u8 = 205;
/// Packet type: payload-specific feedback (RFC 4585).
pub const PT_PSFB: u8 = 206;
/// Packet type: extended report (RFC 3611).
pub const PT_XR: u8 = 207;

/// Errors from parsing or writing RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer than 4 bytes remain for a common header.
    #[error("RTCP header truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    /// The length field points past the end of the datagram.
    #[error("RTCP length field exceeds the datagram")]
    BadLength,
    /// The padding count is zero or larger than the packet body.
    #[error("invalid RTCP padding")]
    BadPadding,
    /// The body of a known packet type is inconsistent with its header or too short.
    #[error("malformed RTCP {0} packet")]
    Malformed(&'static str),
    /// A TWCC status chunk uses the reserved symbol `11`.
    #[error("reserved TWCC status symbol")]
    ReservedSymbol,
    /// More items than the format can carry (e.g. more than 31 report blocks).
    #[error("too many items for one RTCP packet")]
    TooMany,
    /// A value cannot be represented on the wire (e.g. APP data not a multiple of 4).
    #[error("value cannot be encoded")]
    Unencodable,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// One RTCP packet, borrowed from a compound datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report (PT 200).
    SenderReport(SenderReport),
    /// Receiver report (PT 201).
    ReceiverReport(ReceiverReport),
    /// Source description (PT 202).
    Sdes(Sdes<'a>),
    /// Goodbye (PT 203).
    Bye(Bye<'a>),
    /// Application-defined (PT 204).
    App(App<'a>),
    /// Generic NACK (PT 205, FMT 1).
    Nack(Nack<'a>),
    /// Picture loss indication (PT 206, FMT 1).
    Pli(Pli),
    /// Full intra request (PT 206, FMT 4).
    Fir(Fir<'a>),
    /// Receiver estimated maximum bitrate (PT 206, FMT 15, "REMB").
    Remb(Remb<'a>),
    /// Transport-wide congestion control feedback (PT 205, FMT 15).
    TransportFeedback(TransportFeedback<'a>),
    /// Extended report (PT 207).
    ExtendedReport(ExtendedReport<'a>),
    /// Any other packet type or feedback format.
    Unknown(Unknown<'a>),
}

/// A packet of a type this crate does not interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown<'a> {
    /// Packet type.
    pub packet_type: u8,
    /// The 5-bit count / format field.
    pub count: u8,
    /// The body after the 4-byte common header, without padding.
    pub body: &'a [u8],
}

impl Unknown<'_> {
    /// Writes the packet. The body must be a multiple of 4 bytes.
    ///
    /// # Errors
    ///
    /// [`RtcpError::Unencodable`] when the body is not a multiple of 4 bytes or too
    /// long; [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if !self.body.len().is_multiple_of(4) {
            return Err(RtcpError::Unencodable);
        }
        let n = 4 + self.body.len();
        write_header(buf, self.count, self.packet_type, n)?;
        buf[4..n].copy_from_slice(self.body);
        Ok(n)
    }
}

impl<'a> RtcpPacket<'a> {
    /// Iterates over the packets of a compound or reduced-size RTCP datagram.
    ///
    /// A framing error (bad version, length past the end, bad padding) is yielded once
    /// and ends the iteration. A malformed body inside a well-framed packet yields an
    /// error for that packet and iteration continues with the next one.
    pub fn iter(buf: &'a [u8]) -> RtcpIter<'a> {
        RtcpIter { buf, done: false }
    }

    /// Writes this packet into `buf`, returning the length written.
    ///
    /// # Errors
    ///
    /// As the packet type's own `write`: [`RtcpError::BufferTooSmall`] when `buf`
    /// cannot hold the packet. [`RtcpError::Unencodable`] or [`RtcpError::TooMany`]
    /// when the contents exceed what the format carries.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        match self {
            RtcpPacket::SenderReport(p) => p.write(buf),
            RtcpPacket::ReceiverReport(p) => p.write(buf),
            RtcpPacket::Sdes(p) => p.write(buf),
            RtcpPacket::Bye(p) => p.write(buf),
            RtcpPacket::App(p) => p.write(buf),
            RtcpPacket::Nack(p) => p.write(buf),
            RtcpPacket::Pli(p) => p.write(buf),
            RtcpPacket::Fir(p) => p.write(buf),
            RtcpPacket::Remb(p) => p.write(buf),
            RtcpPacket::TransportFeedback(p) => p.write(buf),
            RtcpPacket::ExtendedReport(p) => p.write(buf),
            RtcpPacket::Unknown(p) => p.write(buf),
        }
    }

    fn parse_body(count: u8, pt: u8, body: &'a [u8]) -> Result<RtcpPacket<'a>, RtcpError> {
        Ok(match (pt, count) {
            (PT_SR, _) => RtcpPacket::SenderReport(SenderReport::parse(count, body)?),
            (PT_RR, _) => RtcpPacket::ReceiverReport(ReceiverReport::parse(count, body)?),
            (PT_SDES, _) => RtcpPacket::Sdes(Sdes::parse(count, body)?),
            (PT_BYE, _) => RtcpPacket::Bye(Bye::parse(count, body)?),
            (PT_APP, _) => RtcpPacket::App(App::parse(count, body)?),
            (PT_RTPFB, 1) => RtcpPacket::Nack(Nack::parse(body)?),
            (PT_RTPFB, 15) => RtcpPacket::TransportFeedback(TransportFeedback::parse(body)?),
            (PT_PSFB, 1) => RtcpPacket::Pli(Pli::parse(body)?),
            (PT_PSFB, 4) => RtcpPacket::Fir(Fir::parse(body)?),
            (PT_PSFB, 15) if body.get(8..12) == Some(b"REMB") => {
                RtcpPacket::Remb(Remb::parse(body)?)
            }
            (PT_XR, _) => RtcpPacket::ExtendedReport(ExtendedReport::parse(body)?),
            _ => RtcpPacket::Unknown(Unknown {
                packet_type: pt,
                count,
                body,
            }),
        })
    }
}

/// Iterator over a compound RTCP datagram; see [`RtcpPacket::iter`].
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    buf: &'a [u8],
    done: bool,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        match frame(self.buf) {
            Ok((count, pt, body, total)) => {
                self.buf = self.buf.get(total..).unwrap_or(&[]);
                Some(RtcpPacket::parse_body(count, pt, body))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Splits off one packet: (count, packet type, body without padding, total length).
fn frame(buf: &[u8]) -> Result<(u8, u8, &[u8], usize), RtcpError> {
    let h = buf.get(..4).ok_or(RtcpError::Truncated)?;
    let version = h[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let total = (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
    let pkt = buf.get(..total).ok_or(RtcpError::BadLength)?;
    let mut body = pkt.get(4..).ok_or(RtcpError::BadLength)?;
    if h[0] & 0x20 != 0 {
        let p = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if p == 0 || p > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = body.get(..body.len() - p).ok_or(RtcpError::BadPadding)?;
    }
    Ok((h[0] & 0x1f, h[1], body, total))
}

/// Writes a common header for a packet of `total` bytes (a multiple of 4, ≥ 4),
/// checking that `buf` holds `total` bytes.
pub(crate) fn write_header(
    buf: &mut [u8],
    count: u8,
    pt: u8,
    total: usize,
) -> Result<(), RtcpError> {
    if total < 4 || !total.is_multiple_of(4) {
        return Err(RtcpError::Unencodable);
    }
    let words = u16::try_from(total / 4 - 1).map_err(|_| RtcpError::TooMany)?;
    let h = buf.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    h[0] = 0x80 | (count & 0x1f);
    h[1] = pt;
    h[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(())
}

/// Writes the common header and the feedback header of RFC 4585 §6.1 (sender and media
/// SSRC) for a feedback packet of `total` bytes (≥ 12), checking that `buf` holds them.
pub(crate) fn write_fb_header(
    buf: &mut [u8],
    fmt: u8,
    pt: u8,
    total: usize,
    sender_ssrc: u32,
    media_ssrc: u32,
) -> Result<(), RtcpError> {
    if total < 12 {
        return Err(RtcpError::Unencodable);
    }
    write_header(buf, fmt, pt, total)?;
    wr32(buf, 4, sender_ssrc);
    wr32(buf, 8, media_ssrc);
    Ok(())
}

/// Reads a big-endian u32 at `at`, or reports the packet kind as malformed.
pub(crate) fn rd32(b: &[u8], at: usize, what: &'static str) -> Result<u32, RtcpError> {
    let s = b.get(at..at + 4).ok_or(RtcpError::Malformed(what))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a big-endian u16 at `at`, or reports the packet kind as malformed.
pub(crate) fn rd16(b: &[u8], at: usize, what: &'static str) -> Result<u16, RtcpError> {
    let s = b.get(at..at + 2).ok_or(RtcpError::Malformed(what))?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// Writes `v` big-endian at `at`. Callers have sized `b` already.
pub(crate) fn wr32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Iterator over big-endian u32 values in a byte slice (length a multiple of 4).
#[derive(Debug, Clone)]
pub struct U32Iter<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl<'a> U32Iter<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        U32Iter {
            chunks: b.chunks_exact(4),
        }
    }
}

impl Iterator for U32Iter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let c = self.chunks.next()?;
        Some(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Test helper: parses `buf` as exactly one RTCP packet, which must be valid.
#[cfg(test)]
fn only(buf: &[u8]) -> RtcpPacket<'_> {
    let v: Vec<_> = RtcpPacket::iter(buf).collect();
    assert_eq!(v.len(), 1);
    v[0].unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_sr_sdes_bye() {
        let mut buf = [0u8; 512];
        let mut sr = SenderReport {
            ssrc: 0x1111,
            info: SenderInfo {
                ntp_time: 0xaabb_ccdd_0011_2233,
                rtp_time: 90_000,
                packet_count: 10,
                octet_count: 1000,
            },
            reports: ReportBlocks::new(),
        };
        sr.reports
            .push(ReportBlock {
                ssrc: 0x2222,
                fraction_lost: 12,
                cumulative_lost: -3,
                highest_seq: 70_000,
                jitter: 5,
                last_sr: 6,
                delay_since_last_sr: 7,
            })
            .unwrap();
        let mut n = sr.write(&mut buf).unwrap();
        n += Sdes::write_chunks(
            &[(
                0x1111,
                &[SdesItem {
                    kind: SDES_CNAME,
                    value: b"host",
                }][..],
            )],
            &mut buf[n..],
        )
        .unwrap();
        n += Bye::write_with(&[0x1111], Some(b"done"), &mut buf[n..]).unwrap();
        n += Pli {
            sender_ssrc: 1,
            media_ssrc: 2,
        }
        .write(&mut buf[n..])
        .unwrap();
        let pkts: Vec<_> = RtcpPacket::iter(&buf[..n])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(pkts.len(), 4);
        assert_eq!(pkts[0], RtcpPacket::SenderReport(sr));
        let RtcpPacket::Sdes(s) = pkts[1] else {
            panic!("not sdes")
        };
        let chunk = s.chunks().next().unwrap();
        assert_eq!(chunk.ssrc, 0x1111);
        assert_eq!(
            chunk.items().collect::<Vec<_>>(),
            vec![SdesItem {
                kind: SDES_CNAME,
                value: b"host"
            }]
        );
        let RtcpPacket::Bye(b) = pkts[2] else {
            panic!("not bye")
        };
        assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![0x1111]);
        assert_eq!(b.reason, Some(&b"done"[..]));
        assert_eq!(
            pkts[3],
            RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            })
        );
        // Re-serialising each packet reproduces the datagram.
        let mut out = [0u8; 512];
        let mut m = 0;
        for p in &pkts {
            m += p.write(&mut out[m..]).unwrap();
        }
        assert_eq!(&out[..m], &buf[..n]);
    }

    #[test]
    fn framing_errors() {
        assert_eq!(RtcpPacket::iter(&[]).count(), 0);
        let r: Vec<_> = RtcpPacket::iter(&[0x80, 201]).collect();
        assert_eq!(r, vec![Err(RtcpError::Truncated)]);
        let r: Vec<_> = RtcpPacket::iter(&[0x40, 201, 0, 0]).collect();
        assert_eq!(r, vec![Err(RtcpError::BadVersion(1))]);
        let r: Vec<_> = RtcpPacket::iter(&[0x80, 201, 0, 1, 0, 0, 0]).collect();
        assert_eq!(r, vec![Err(RtcpError::BadLength)]);
        // Padding bit with count 0, then with count too big.
        let r: Vec<_> = RtcpPacket::iter(&[0xa0, 201, 0, 1, 0, 0, 0, 0]).collect();
        assert_eq!(r, vec![Err(RtcpError::BadPadding)]);
        let r: Vec<_> = RtcpPacket::iter(&[0xa0, 201, 0, 1, 0, 0, 0, 9]).collect();
        assert_eq!(r, vec![Err(RtcpError::BadPadding)]);
        // RR with padding: the SSRC plus 4 padding bytes.
        let p = [0xa0, 201, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4];
        let r: Vec<_> = RtcpPacket::iter(&p).collect();
        let RtcpPacket::ReceiverReport(rr) = r[0].unwrap() else {
            panic!("not rr")
        };
        assert_eq!(rr.ssrc, 5);
        // A malformed RR (count 1, no block) followed by a good PLI: error then PLI.
        let p = [
            0x81, 201, 0, 1, 0, 0, 0, 5, 0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2,
        ];
        let r: Vec<_> = RtcpPacket::iter(&p).collect();
        assert_eq!(r.len(), 2);
        assert!(matches!(r[0], Err(RtcpError::Malformed(_))));
        assert!(matches!(r[1], Ok(RtcpPacket::Pli(_))));
    }

    #[test]
    fn unknown_round_trip() {
        let p = [0x85, 210, 0, 1, 1, 2, 3, 4];
        let r: Vec<_> = RtcpPacket::iter(&p).collect();
        let pkt = r[0].unwrap();
        assert_eq!(
            pkt,
            RtcpPacket::Unknown(Unknown {
                packet_type: 210,
                count: 5,
                body: &[1, 2, 3, 4]
            })
        );
        let mut out = [0u8; 8];
        assert_eq!(pkt.write(&mut out), Ok(8));
        assert_eq!(out, p);
        assert_eq!(pkt.write(&mut out[..7]), Err(RtcpError::BufferTooSmall));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut out = [0u8; 400];
            for p in RtcpPacket::iter(&data).flatten() {
                let _ = p.write(&mut out);
                if let RtcpPacket::TransportFeedback(t) = p {
                    let _ = t.iter().count();
                }
            }
        }

        #[test]
        fn garbage_with_valid_headers_never_panics(
            pt in 200u8..=207, count in 0u8..32,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..25),
        ) {
            let words = body.len() / 4;
            let mut data = vec![0x80 | count, pt, 0, words as u8];
            data.extend_from_slice(&body[..words * 4]);
            let mut out = [0u8; 400];
            for p in RtcpPacket::iter(&data).flatten() {
                let n = p.write(&mut out).unwrap();
                // A successful parse re-serialises to a parseable packet.
                proptest::prop_assert!(RtcpPacket::iter(&out[..n]).all(|r| r.is_ok()));
                match p {
                    RtcpPacket::TransportFeedback(t) => { let _ = t.iter().count(); }
                    RtcpPacket::Nack(n) => { let _ = n.lost().count(); }
                    RtcpPacket::Sdes(s) => { let _ = s.chunks().flat_map(|c| c.items()).count(); }
                    RtcpPacket::ExtendedReport(x) => { let _ = x.blocks().count(); }
                    _ => {}
                }
            }
        }
    }
}
