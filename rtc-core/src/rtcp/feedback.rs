//! Generic NACK (RFC 4585 §6.2.1), PLI (RFC 4585 §6.3.1), FIR (RFC 5104 §4.3.1) and
//! REMB (draft-alvestrand-rmcat-remb-03).

use super::{PT_PSFB, PT_RTPFB, RtcpError, U32Iter, rd32, wr32, write_fb_header};

fn ssrcs(body: &[u8], what: &'static str) -> Result<(u32, u32), RtcpError> {
    Ok((rd32(body, 0, what)?, rd32(body, 4, what)?))
}

/// One NACK FCI entry: a lost packet id and a bitmask of following losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackPair {
    /// Packet id (sequence number) of a lost packet.
    pub pid: u16,
    /// Bitmask of losses: bit i set means `pid + i + 1` is lost as well.
    pub blp: u16,
}

impl NackPair {
    /// The lost sequence numbers this entry describes, in order.
    pub fn lost(self) -> impl Iterator<Item = u16> {
        std::iter::once(self.pid).chain(
            (0..16u16)
                .filter(move |i| self.blp & (1 << i) != 0)
                .map(move |i| self.pid.wrapping_add(i + 1)),
        )
    }
}

/// Generic NACK (PT 205, FMT 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source the losses refer to.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc) = ssrcs(body, "NACK")?;
        let fci = body.get(8..).unwrap_or(&[]);
        if fci.is_empty() || fci.len() % 4 != 0 {
            return Err(RtcpError::Malformed("NACK"));
        }
        Ok(Nack {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }

    /// The FCI entries.
    pub fn pairs(&self) -> impl Iterator<Item = NackPair> + use<'a> {
        self.fci.chunks_exact(4).map(|c| NackPair {
            pid: u16::from_be_bytes([c[0], c[1]]),
            blp: u16::from_be_bytes([c[2], c[3]]),
        })
    }

    /// All lost sequence numbers, entry by entry.
    pub fn lost(&self) -> impl Iterator<Item = u16> + use<'a> {
        self.pairs().flat_map(NackPair::lost)
    }

    /// Re-writes the packet as parsed.
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 12 + self.fci.len();
        write_fb_header(buf, 1, PT_RTPFB, n, self.sender_ssrc, self.media_ssrc)?;
        buf[12..n].copy_from_slice(self.fci);
        Ok(n)
    }

    /// Writes a NACK with the given FCI entries (at least one).
    ///
    /// # Errors
    ///
    /// [`RtcpError::Unencodable`] when `pairs` is empty or too long for the length
    /// field; [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write_pairs(
        sender_ssrc: u32,
        media_ssrc: u32,
        pairs: &[NackPair],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        if pairs.is_empty() {
            return Err(RtcpError::Unencodable);
        }
        let n = 12 + 4 * pairs.len();
        write_fb_header(buf, 1, PT_RTPFB, n, sender_ssrc, media_ssrc)?;
        for (i, p) in pairs.iter().enumerate() {
            wr32(buf, 12 + 4 * i, (u32::from(p.pid) << 16) | u32::from(p.blp));
        }
        Ok(n)
    }

    /// Writes a NACK for `lost` sequence numbers, which must be in ascending order
    /// (modulo 2^16, as produced by walking forward from the oldest loss); numbers
    /// within 16 of the current entry's pid share its bitmask. Empty input is an error.
    ///
    /// # Errors
    ///
    /// [`RtcpError::Unencodable`] when `lost` is empty; [`RtcpError::BufferTooSmall`]
    /// when `buf` cannot hold the packet.
    pub fn write_lost(
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: &[u16],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let Some((&first, rest)) = lost.split_first() else {
            return Err(RtcpError::Unencodable);
        };
        let mut cur = NackPair { pid: first, blp: 0 };
        let mut at = 12;
        let put = |p: NackPair, at: &mut usize, buf: &mut [u8]| -> Result<(), RtcpError> {
            let o = buf.get_mut(*at..*at + 4).ok_or(RtcpError::BufferTooSmall)?;
            o.copy_from_slice(&((u32::from(p.pid) << 16) | u32::from(p.blp)).to_be_bytes());
            *at += 4;
            Ok(())
        };
        for &s in rest {
            let d = s.wrapping_sub(cur.pid);
            if (1..=16).contains(&d) {
                cur.blp |= 1 << (d - 1);
            } else if d != 0 {
                put(cur, &mut at, buf)?;
                cur = NackPair { pid: s, blp: 0 };
            }
        }
        put(cur, &mut at, buf)?;
        write_fb_header(buf, 1, PT_RTPFB, at, sender_ssrc, media_ssrc)?;
        Ok(at)
    }
}

/// Picture loss indication (PT 206, FMT 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
}

impl Pli {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc) = ssrcs(body, "PLI")?;
        Ok(Pli {
            sender_ssrc,
            media_ssrc,
        })
    }

    /// Writes the PLI (12 bytes).
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        write_fb_header(buf, 1, PT_PSFB, 12, self.sender_ssrc, self.media_ssrc)?;
        Ok(12)
    }
}

/// One FIR entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirEntry {
    /// SSRC of the media sender asked for a key frame.
    pub ssrc: u32,
    /// Command sequence number.
    pub seq: u8,
}

/// Full intra request (PT 206, FMT 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Media source SSRC from the common header (0 per RFC 5104).
    pub media_ssrc: u32,
    entries: &'a [u8],
}

impl<'a> Fir<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc) = ssrcs(body, "FIR")?;
        let entries = body.get(8..).unwrap_or(&[]);
        if entries.is_empty() || entries.len() % 8 != 0 {
            return Err(RtcpError::Malformed("FIR"));
        }
        Ok(Fir {
            sender_ssrc,
            media_ssrc,
            entries,
        })
    }

    /// The FCI entries.
    pub fn entries(&self) -> impl Iterator<Item = FirEntry> + use<'a> {
        self.entries.chunks_exact(8).map(|c| FirEntry {
            ssrc: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            seq: c[4],
        })
    }

    /// Re-writes the packet as parsed.
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = 12 + self.entries.len();
        write_fb_header(buf, 4, PT_PSFB, n, self.sender_ssrc, self.media_ssrc)?;
        buf[12..n].copy_from_slice(self.entries);
        Ok(n)
    }

    /// Writes a FIR with the given entries (at least one); media SSRC is 0.
    ///
    /// # Errors
    ///
    /// [`RtcpError::Unencodable`] when `entries` is empty or too long for the length
    /// field; [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    pub fn write_entries(
        sender_ssrc: u32,
        entries: &[FirEntry],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        if entries.is_empty() {
            return Err(RtcpError::Unencodable);
        }
        let n = 12 + 8 * entries.len();
        write_fb_header(buf, 4, PT_PSFB, n, sender_ssrc, 0)?;
        for (i, e) in entries.iter().enumerate() {
            let at = 12 + 8 * i;
            wr32(buf, at, e.ssrc);
            wr32(buf, at + 4, u32::from(e.seq) << 24);
        }
        Ok(n)
    }
}

/// Receiver estimated maximum bitrate (PT 206, FMT 15, "REMB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Media source SSRC from the common header (0 for REMB).
    pub media_ssrc: u32,
    /// Estimated bitrate in bits per second (mantissa << exponent, saturating).
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

/// Splits `bitrate` into an 18-bit mantissa and 6-bit exponent, rounding down.
fn remb_encode(bitrate: u64) -> (u32, u8) {
    let bits = 64 - bitrate.leading_zeros();
    let exp = bits.saturating_sub(18);
    ((bitrate >> exp) as u32, exp as u8)
}

impl<'a> Remb<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        const W: &str = "REMB";
        let (sender_ssrc, media_ssrc) = ssrcs(body, W)?;
        // body[8..12] is "REMB" (checked by the dispatcher).
        let w = rd32(body, 12, W)?;
        let num = (w >> 24) as usize;
        let exp = (w >> 18) & 0x3f;
        let mantissa = u128::from(w & 0x3_ffff);
        let bitrate = u64::try_from(mantissa << exp).unwrap_or(u64::MAX);
        let ssrcs = body.get(16..16 + 4 * num).ok_or(RtcpError::Malformed(W))?;
        Ok(Remb {
            sender_ssrc,
            media_ssrc,
            bitrate,
            ssrcs,
        })
    }

    /// The SSRCs the estimate applies to.
    pub fn ssrcs(&self) -> U32Iter<'a> {
        U32Iter::new(self.ssrcs)
    }

    /// Re-writes the packet (bitrate re-encoded, rounding down to 18 significant bits).
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    /// [`RtcpError::TooMany`] for more than 255 SSRCs.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        write_remb(
            self.sender_ssrc,
            self.media_ssrc,
            self.bitrate,
            self.ssrcs.len() / 4,
            self.ssrcs(),
            buf,
        )
    }

    /// Writes a REMB for `ssrcs` (at most 255). The bitrate is rounded down to
    /// what an 18-bit mantissa and 6-bit exponent can carry.
    ///
    /// # Errors
    ///
    /// [`RtcpError::TooMany`] for more than 255 SSRCs; [`RtcpError::BufferTooSmall`]
    /// when `buf` cannot hold the packet.
    pub fn write_with(
        sender_ssrc: u32,
        bitrate: u64,
        ssrcs: &[u32],
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        write_remb(
            sender_ssrc,
            0,
            bitrate,
            ssrcs.len(),
            ssrcs.iter().copied(),
            buf,
        )
    }
}

fn write_remb(
    sender_ssrc: u32,
    media_ssrc: u32,
    bitrate: u64,
    count: usize,
    ssrcs: impl Iterator<Item = u32>,
    buf: &mut [u8],
) -> Result<usize, RtcpError> {
    let num = u8::try_from(count).map_err(|_| RtcpError::TooMany)?;
    let n = 20 + 4 * count;
    write_fb_header(buf, 15, PT_PSFB, n, sender_ssrc, media_ssrc)?;
    buf[12..16].copy_from_slice(b"REMB");
    let (mantissa, exp) = remb_encode(bitrate);
    wr32(
        buf,
        16,
        (u32::from(num) << 24) | (u32::from(exp) << 18) | mantissa,
    );
    for (i, s) in ssrcs.enumerate() {
        wr32(buf, 20 + 4 * i, s);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::{RtcpPacket, only};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nack_lost_list() {
        let p = NackPair {
            pid: 65534,
            blp: 0b1000_0000_0000_0101,
        };
        assert_eq!(p.lost().collect::<Vec<_>>(), vec![65534, 65535, 1, 14]);
        let mut buf = [0u8; 64];
        let lost = [65530, 65535, 3, 9, 30, 31];
        let n = Nack::write_lost(1, 2, &lost, &mut buf).unwrap();
        let RtcpPacket::Nack(nack) = only(&buf[..n]) else {
            panic!("not nack")
        };
        assert_eq!(nack.pairs().count(), 2);
        assert_eq!(nack.lost().collect::<Vec<_>>(), lost.to_vec());
        assert_eq!(
            Nack::write_lost(1, 2, &[], &mut buf),
            Err(RtcpError::Unencodable)
        );
        // NACK with no FCI is malformed.
        let p = [0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
    }

    #[test]
    fn remb_example() {
        // num=1, exp=3, mantissa=0x3_d090 (250000) -> 2_000_000 bps.
        let mut p = vec![0x8f, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(b"REMB");
        p.extend_from_slice(&((1u32 << 24) | (3 << 18) | 250_000).to_be_bytes());
        p.extend_from_slice(&0xabcdu32.to_be_bytes());
        let RtcpPacket::Remb(r) = only(&p) else {
            panic!("not remb")
        };
        assert_eq!(r.bitrate, 2_000_000);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![0xabcd]);
        let mut out = [0u8; 24];
        assert_eq!(r.write(&mut out), Ok(24));
        // 2_000_000 re-encodes as mantissa 250000 exp 3? 2e6 needs 21 bits -> exp 3.
        assert_eq!(&out[..], &p[..]);
        // Max exponent saturates instead of overflowing.
        let mut p2 = p.clone();
        p2[16..20].copy_from_slice(&((1u32 << 24) | (63 << 18) | 0x3_ffff).to_be_bytes());
        let RtcpPacket::Remb(r) = only(&p2) else {
            panic!("not remb")
        };
        assert_eq!(r.bitrate, u64::MAX);
        // Claims 2 SSRCs, has 1.
        p[16] = 2;
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn nack_round_trip(pairs in proptest::collection::vec(any::<(u16, u16)>(), 1..40), s: u32, m: u32) {
            let pairs: Vec<NackPair> = pairs.into_iter().map(|(pid, blp)| NackPair { pid, blp }).collect();
            let mut buf = [0u8; 256];
            let n = Nack::write_pairs(s, m, &pairs, &mut buf).unwrap();
            let RtcpPacket::Nack(nack) = only(&buf[..n]) else { panic!("not nack") };
            prop_assert_eq!((nack.sender_ssrc, nack.media_ssrc), (s, m));
            prop_assert_eq!(nack.pairs().collect::<Vec<_>>(), pairs);
            let mut out = [0u8; 256];
            prop_assert_eq!(nack.write(&mut out).unwrap(), n);
            prop_assert_eq!(&out[..n], &buf[..n]);
        }

        #[test]
        fn nack_lost_round_trip(start: u16, gaps in proptest::collection::vec(1u16..40, 1..60)) {
            let mut lost = vec![start];
            for g in gaps { let l = *lost.last().unwrap(); lost.push(l.wrapping_add(g)); }
            let mut buf = [0u8; 512];
            let n = Nack::write_lost(1, 2, &lost, &mut buf).unwrap();
            let RtcpPacket::Nack(nack) = only(&buf[..n]) else { panic!("not nack") };
            prop_assert_eq!(nack.lost().collect::<Vec<_>>(), lost);
        }

        #[test]
        fn pli_fir_round_trip(s: u32, m: u32, entries in proptest::collection::vec(any::<(u32, u8)>(), 1..20)) {
            let mut buf = [0u8; 256];
            let pli = Pli { sender_ssrc: s, media_ssrc: m };
            let n = pli.write(&mut buf).unwrap();
            prop_assert_eq!(only(&buf[..n]), RtcpPacket::Pli(pli));
            let entries: Vec<FirEntry> = entries.into_iter().map(|(ssrc, seq)| FirEntry { ssrc, seq }).collect();
            let n = Fir::write_entries(s, &entries, &mut buf).unwrap();
            let RtcpPacket::Fir(fir) = only(&buf[..n]) else { panic!("not fir") };
            prop_assert_eq!(fir.sender_ssrc, s);
            prop_assert_eq!(fir.entries().collect::<Vec<_>>(), entries);
            let mut out = [0u8; 256];
            prop_assert_eq!(fir.write(&mut out).unwrap(), n);
            prop_assert_eq!(&out[..n], &buf[..n]);
        }

        #[test]
        fn remb_round_trip(s: u32, mantissa in 0u64..(1 << 18), exp in 0u32..46, ssrcs in proptest::collection::vec(any::<u32>(), 0..10), any_rate: u64) {
            let rate = mantissa << exp;
            let mut buf = [0u8; 256];
            let n = Remb::write_with(s, rate, &ssrcs, &mut buf).unwrap();
            let RtcpPacket::Remb(r) = only(&buf[..n]) else { panic!("not remb") };
            prop_assert_eq!(r.bitrate, rate);
            prop_assert_eq!(r.ssrcs().collect::<Vec<_>>(), ssrcs.clone());
            let mut out = [0u8; 256];
            prop_assert_eq!(r.write(&mut out).unwrap(), n);
            prop_assert_eq!(&out[..n], &buf[..n]);
            // Arbitrary rates round down by less than 2^-17 relative.
            let n = Remb::write_with(s, any_rate, &ssrcs, &mut buf).unwrap();
            let RtcpPacket::Remb(r) = only(&buf[..n]) else { panic!("not remb") };
            prop_assert!(r.bitrate <= any_rate);
            prop_assert!(any_rate - r.bitrate <= any_rate >> 17);
        }
    }
}
