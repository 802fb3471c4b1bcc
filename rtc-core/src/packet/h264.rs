//! H.264 payload format (RFC 6184): single NAL unit packets, STAP-A aggregation and FU-A
//! fragmentation (packetization modes 0 and 1).
//!
//! Frames given to the packetizer and produced by the depacketizer are Annex-B byte
//! streams (NAL units preceded by `00 00 01` or `00 00 00 01` start codes); the
//! depacketizer always writes 4-byte start codes.

use super::{
    Bytes, CodecExtra, Depacketizer, Extra, PacketError, PacketResult, Packetizer, Payloads,
    even_chunks, media_room,
};

/// NAL unit type of a STAP-A packet.
pub const STAP_A: u8 = 24;
/// NAL unit type of an FU-A packet.
pub const FU_A: u8 = 28;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Iterator over the NAL units of an Annex-B byte stream (start codes and trailing zero
/// bytes removed, empty units skipped). Bytes before the first start code count as a NAL.
#[derive(Debug, Clone)]
pub struct AnnexB<'a> {
    rest: &'a [u8],
}

impl<'a> AnnexB<'a> {
    /// Iterates the NAL units of `stream`.
    pub fn new(stream: &'a [u8]) -> Self {
        Self { rest: stream }
    }
}

/// Position of the next `00 00 01` in `buf`.
fn find_start_code(buf: &[u8]) -> Option<usize> {
    buf.windows(3).position(|w| w == [0, 0, 1])
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, rest) = match find_start_code(self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 3..]), // i + 3 <= len (window)
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let nal = &nal[..end]; // end <= nal.len()
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// H.264 packetizer.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    mode: u8,
}

impl Default for H264Packetizer {
    fn default() -> Self {
        Self { mode: 1 }
    }
}

impl H264Packetizer {
    /// A packetizer for `packetization_mode` 0 (single NAL unit only; a NAL larger than
    /// the MTU is an error) or 1 (non-interleaved: adds STAP-A and FU-A). Any other value
    /// is treated as 1.
    pub fn new(packetization_mode: u8) -> Self {
        Self {
            mode: if packetization_mode == 0 { 0 } else { 1 },
        }
    }

    fn packetize_mode0(mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        for nal in AnnexB::new(frame) {
            if nal.len() > mtu {
                return Err(PacketError::TooLarge {
                    len: nal.len(),
                    mtu,
                });
            }
        }
        out.extend(AnnexB::new(frame).map(<[u8]>::to_vec));
        Ok(())
    }

    fn packetize_mode1(mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        // An FU-A needs its two header bytes plus one byte of NAL data.
        let fu_room = media_room(mtu, 2)?;
        let mut nals = AnnexB::new(frame).peekable();
        while let Some(nal) = nals.next() {
            if nal.len() > mtu {
                // FU-A (§5.8): indicator F|NRI|28, header S|E|R|type.
                let Some((&nal_hdr, body)) = nal.split_first() else {
                    continue;
                };
                let ind = (nal_hdr & 0xe0) | FU_A;
                let typ = nal_hdr & 0x1f;
                let chunks = even_chunks(body, fu_room);
                let n = chunks.len();
                for (i, c) in chunks.enumerate() {
                    let mut hdr = typ;
                    if i == 0 {
                        hdr |= 0x80;
                    }
                    if i + 1 == n {
                        hdr |= 0x40;
                    }
                    let mut p = Vec::with_capacity(2 + c.len());
                    p.extend_from_slice(&[ind, hdr]);
                    p.extend_from_slice(c);
                    out.push(p);
                }
                continue;
            }
            // Try to aggregate following NALs into a STAP-A (§5.7.1).
            let mut total = 1 + 2 + nal.len();
            let mut group = 1;
            for next in nals.clone() {
                if total + 2 + next.len() > mtu {
                    break;
                }
                total += 2 + next.len();
                group += 1;
            }
            if group == 1 {
                out.push(nal.to_vec());
                continue;
            }
            let mut p = Vec::with_capacity(total);
            p.push(0);
            let mut fnri = 0u8;
            for u in core::iter::once(nal).chain(nals.by_ref().take(group - 1)) {
                // Aggregated NALs fit in the MTU, so their length fits in 16 bits when
                // mtu <= 65535; larger MTUs cannot aggregate a NAL above 65535 bytes.
                let Ok(len) = u16::try_from(u.len()) else {
                    return Err(PacketError::TooLarge { len: u.len(), mtu });
                };
                let h = u.first().copied().unwrap_or(0);
                fnri = (fnri & 0x80) | (h & 0x80) | (fnri & 0x60).max(h & 0x60);
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(u);
            }
            if let Some(b) = p.first_mut() {
                *b = fnri | STAP_A;
            }
            out.push(p);
        }
        Ok(())
    }
}

impl Packetizer for H264Packetizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        if self.mode == 0 {
            Self::packetize_mode0(mtu, frame, out)
        } else {
            Self::packetize_mode1(mtu, frame, out)
        }
    }

    /// A frame is empty when it holds no NAL unit (start codes alone count as empty).
    fn is_empty_frame(&self, frame: &[u8]) -> bool {
        AnnexB::new(frame).next().is_none()
    }
}

/// H.264 depacketizer (single NAL, STAP-A, FU-A); writes Annex-B with 4-byte start codes.
#[derive(Debug, Clone, Default)]
pub struct H264Depacketizer {
    /// NAL type of the FU-A in progress.
    fu_type: Option<u8>,
}

impl Depacketizer for H264Depacketizer {
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult {
        let &b0 = payload.first().ok_or(PacketError::EmptyPayload)?;
        if b0 & 0x80 != 0 {
            return Err(PacketError::InvalidHeader("h264 forbidden bit"));
        }
        *extra = CodecExtra::H264;
        let typ = b0 & 0x1f;
        if self.fu_type.is_some() && typ != FU_A {
            return Err(PacketError::Fragmentation);
        }
        match typ {
            1..=23 => {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(payload);
            }
            STAP_A => {
                let mut rest = payload.get(1..).unwrap_or_default();
                if rest.is_empty() {
                    return Err(PacketError::Truncated);
                }
                // Validate before writing so a bad packet leaves `out` untouched.
                let mut check = rest;
                while !check.is_empty() {
                    check = split_stap(check)?.1;
                }
                while !rest.is_empty() {
                    let (nal, r) = split_stap(rest)?;
                    out.extend_from_slice(&START_CODE);
                    out.extend_from_slice(nal);
                    rest = r;
                }
            }
            FU_A => {
                let &hdr = payload.get(1).ok_or(PacketError::Truncated)?;
                let data = payload.get(2..).unwrap_or_default();
                let (start, end, t) = (hdr & 0x80 != 0, hdr & 0x40 != 0, hdr & 0x1f);
                if start && end {
                    return Err(PacketError::InvalidHeader("h264 FU-A with S and E"));
                }
                if start {
                    if self.fu_type.is_some() {
                        return Err(PacketError::Fragmentation);
                    }
                    out.extend_from_slice(&START_CODE);
                    out.push((b0 & 0xe0) | t);
                    self.fu_type = Some(t);
                } else if self.fu_type != Some(t) {
                    return Err(PacketError::Fragmentation);
                }
                out.extend_from_slice(data);
                if end {
                    self.fu_type = None;
                }
            }
            other => return Err(PacketError::Unsupported(other)),
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> PacketResult {
        if self.fu_type.take().is_some() {
            return Err(PacketError::Fragmentation);
        }
        Ok(())
    }

    /// Anything but an FU-A continuation starts a NAL unit.
    fn is_partition_head(&self, payload: &[u8]) -> bool {
        match payload {
            [b0, hdr, ..] if b0 & 0x1f == FU_A => hdr & 0x80 != 0,
            [b0, ..] => b0 & 0x1f != FU_A,
            [] => false,
        }
    }

    /// A NAL may belong to a frame whose first NAL is missing.
    fn head_is_frame_start(&self) -> bool {
        false
    }

    /// The payload carries (the start of) an IDR slice or an SPS.
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        let key = |t: u8| t == NAL_IDR || t == NAL_SPS;
        match payload {
            [b0, rest @ ..] if b0 & 0x1f == STAP_A => {
                let mut rest = rest;
                while let Ok((nal, r)) = split_stap(rest) {
                    if nal.first().is_some_and(|n| key(n & 0x1f)) {
                        return true;
                    }
                    rest = r;
                }
                false
            }
            [b0, hdr, ..] if b0 & 0x1f == FU_A => hdr & 0x80 != 0 && key(hdr & 0x1f),
            [b0, ..] => key(b0 & 0x1f),
            [] => false,
        }
    }
}

/// Splits one size-prefixed NAL off a STAP-A body.
fn split_stap(buf: &[u8]) -> Result<(&[u8], &[u8]), PacketError> {
    let [a, b, rest @ ..] = buf else {
        return Err(PacketError::Truncated);
    };
    let len = usize::from(u16::from_be_bytes([*a, *b]));
    if len == 0 {
        return Err(PacketError::InvalidHeader("h264 STAP-A zero-length NAL"));
    }
    if len > rest.len() {
        return Err(PacketError::Truncated);
    }
    Ok(rest.split_at(len))
}
