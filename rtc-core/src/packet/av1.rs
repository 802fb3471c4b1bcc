//! AV1 payload format (AOM "RTP Payload Format for AV1", §4).
//!
//! Aggregation header (first payload byte):
//!
//! ```text
//!  Z|Y|W W|N|-|-|-
//! ```
//!
//! `Z`: the first OBU element continues a fragment from the previous packet; `Y`: the last
//! element continues in the next packet; `W`: number of elements (1..=3, the last one
//! without a length field) or 0 (every element has a LEB128 length); `N`: first packet of
//! a coded video sequence.
//!
//! The packetizer takes a temporal unit in low-overhead bitstream format (OBUs with or
//! without `obu_size`), drops temporal delimiter and tile list OBUs, and sends OBUs without
//! `obu_size` fields. The depacketizer writes a temporal unit in low-overhead format: a
//! temporal delimiter followed by every OBU with its `obu_size` field.

use super::{
    Bytes, CodecExtra, Depacketizer, Extra, PacketError, PacketResult, Packetizer, Payloads,
    leb128, media_room,
};

const Z: u8 = 0x80;
const Y: u8 = 0x40;
const N: u8 = 0x08;
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_TILE_LIST: u8 = 8;
const HAS_SIZE: u8 = 0x02;
const HAS_EXT: u8 = 0x04;

/// Builds an aggregation header byte.
pub fn aggregation_header(z: bool, y: bool, w: u8, n: bool) -> u8 {
    u8::from(z) << 7 | u8::from(y) << 6 | (w & 0x03) << 4 | u8::from(n) << 3
}

/// One OBU of a temporal unit, split into its header bytes and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// The OBU header byte as found (may have `obu_has_size_field` set).
    pub header: u8,
    /// The extension byte, if `obu_extension_flag` is set.
    pub extension: Option<u8>,
    /// The OBU payload (after any `obu_size`).
    pub payload: &'a [u8],
}

impl Obu<'_> {
    /// The OBU type (`obu_type`).
    pub fn obu_type(&self) -> u8 {
        (self.header >> 3) & 0x0f
    }
}

/// Parses one OBU from the start of `buf`; returns it and the bytes consumed. Without an
/// `obu_size` field the OBU extends to the end of `buf`.
pub fn parse_obu(buf: &[u8]) -> Result<(Obu<'_>, usize), PacketError> {
    let &header = buf.first().ok_or(PacketError::Truncated)?;
    if header & 0x80 != 0 {
        return Err(PacketError::InvalidBitstream("av1 obu forbidden bit"));
    }
    let mut pos = 1;
    let extension = if header & HAS_EXT != 0 {
        pos += 1;
        Some(*buf.get(1).ok_or(PacketError::Truncated)?)
    } else {
        None
    };
    let payload = if header & HAS_SIZE != 0 {
        let (size, n) = leb128::read(buf.get(pos..).unwrap_or_default())?;
        pos += n;
        let p = buf
            .get(pos..pos.saturating_add(size))
            .ok_or(PacketError::Truncated)?;
        pos += size;
        p
    } else {
        let p = buf.get(pos..).unwrap_or_default();
        pos = buf.len();
        p
    };
    Ok((
        Obu {
            header,
            extension,
            payload,
        },
        pos,
    ))
}

/// An OBU element as sent: header without `obu_size`, optional extension, payload.
#[derive(Clone, Copy)]
struct Element<'a> {
    hdr: [u8; 2],
    hdr_len: usize,
    payload: &'a [u8],
}

impl Element<'_> {
    fn len(&self) -> usize {
        self.hdr_len + self.payload.len()
    }

    /// Appends bytes `off..off + len` of the element.
    fn write_range(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        let end = off + len;
        if off < self.hdr_len {
            out.extend_from_slice(self.hdr.get(off..end.min(self.hdr_len)).unwrap_or_default());
        }
        let (ps, pe) = (
            off.saturating_sub(self.hdr_len),
            end.saturating_sub(self.hdr_len),
        );
        out.extend_from_slice(self.payload.get(ps..pe).unwrap_or_default());
    }
}

/// A piece of an element placed in a packet: (element index, offset, length).
type Piece = (usize, usize, usize);

/// AV1 packetizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Av1Packetizer;

fn flush(elems: &[Element<'_>], pieces: &mut Vec<Piece>, n_bit: bool, out: &mut Payloads) {
    let Some(&(fe, foff, _)) = pieces.first() else {
        return;
    };
    let &(le, loff, llen) = pieces.last().unwrap_or(&(fe, foff, 0)); // non-empty: first exists
    let y = elems.get(le).is_some_and(|e| loff + llen < e.len());
    let w = if pieces.len() <= 3 {
        pieces.len() as u8
    } else {
        0
    };
    let cap = 1 + pieces.iter().map(|p| leb128::len(p.2) + p.2).sum::<usize>();
    let mut p = Vec::with_capacity(cap);
    p.push(aggregation_header(foff > 0, y, w, n_bit));
    let count = pieces.len();
    for (i, &(e, off, len)) in pieces.iter().enumerate() {
        if w == 0 || i + 1 < count {
            leb128::write(len, &mut p);
        }
        if let Some(el) = elems.get(e) {
            el.write_range(off, len, &mut p);
        }
    }
    out.push(p);
    pieces.clear();
}

impl Packetizer for Av1Packetizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        // The aggregation header plus room for a one-byte fragment and its length.
        media_room(mtu, 2)?;
        let mut elems = Vec::new();
        let mut rest = frame;
        let mut new_sequence = false;
        while !rest.is_empty() {
            let (obu, n) = parse_obu(rest)?;
            rest = rest.get(n..).unwrap_or_default();
            let t = obu.obu_type();
            if t == OBU_TEMPORAL_DELIMITER || t == OBU_TILE_LIST {
                continue;
            }
            new_sequence |= t == OBU_SEQUENCE_HEADER;
            elems.push(Element {
                hdr: [obu.header & !HAS_SIZE, obu.extension.unwrap_or(0)],
                hdr_len: 1 + usize::from(obu.extension.is_some()),
                payload: obu.payload,
            });
        }
        if elems.is_empty() {
            return Err(PacketError::EmptyFrame);
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut used = 1;
        let mut first_packet = true;
        for (i, e) in elems.iter().enumerate() {
            let total = e.len();
            let mut off = 0;
            while off < total {
                let remaining = total - off;
                let space = mtu - used;
                if leb128::len(remaining) + remaining <= space {
                    pieces.push((i, off, remaining));
                    used += leb128::len(remaining) + remaining;
                    off = total;
                } else {
                    // space >= 2 here: a fresh packet has mtu - 1 >= 2, and a packet with
                    // less room is flushed first.
                    if space < 2 {
                        flush(&elems, &mut pieces, first_packet && new_sequence, out);
                        first_packet = false;
                        used = 1;
                        continue;
                    }
                    let mut f = space - 1;
                    while leb128::len(f) + f > space {
                        f -= 1;
                    }
                    pieces.push((i, off, f));
                    off += f;
                    flush(&elems, &mut pieces, first_packet && new_sequence, out);
                    first_packet = false;
                    used = 1;
                }
            }
        }
        flush(&elems, &mut pieces, first_packet && new_sequence, out);
        Ok(())
    }
}

/// AV1 depacketizer; reassembles fragmented OBUs across packets.
#[derive(Debug, Clone, Default)]
pub struct Av1Depacketizer {
    pending: Vec<u8>,
    in_fragment: bool,
    started: bool,
}

/// Writes one complete OBU element to `out` in low-overhead format (with `obu_size`).
fn emit_obu(elem: &[u8], out: &mut Vec<u8>) -> PacketResult {
    if elem.is_empty() {
        return Err(PacketError::InvalidHeader("av1 empty OBU element"));
    }
    let (obu, n) = parse_obu(elem)?;
    if n != elem.len() {
        return Err(PacketError::InvalidHeader("av1 obu_size mismatch"));
    }
    if obu.obu_type() == OBU_TEMPORAL_DELIMITER {
        return Ok(());
    }
    out.push(obu.header | HAS_SIZE);
    if let Some(x) = obu.extension {
        out.push(x);
    }
    leb128::write(obu.payload.len(), out);
    out.extend_from_slice(obu.payload);
    Ok(())
}

impl Depacketizer for Av1Depacketizer {
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult {
        let [agg, body @ ..] = payload else {
            return Err(PacketError::EmptyPayload);
        };
        if body.is_empty() {
            return Err(PacketError::EmptyPayload);
        }
        *extra = CodecExtra::Av1;
        let (z, y, w) = (agg & Z != 0, agg & Y != 0, usize::from((agg >> 4) & 0x03));
        if !self.started {
            out.extend_from_slice(&[OBU_TEMPORAL_DELIMITER << 3 | HAS_SIZE, 0]);
            self.started = true;
        }
        if z != self.in_fragment {
            return Err(PacketError::Fragmentation);
        }
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            i += 1;
            let elem;
            if w != 0 && i == w {
                elem = rest;
                rest = &[];
            } else {
                let (len, n) = leb128::read(rest)?;
                elem = rest
                    .get(n..n.saturating_add(len))
                    .ok_or(PacketError::Truncated)?;
                rest = rest.get(n + len..).unwrap_or_default();
            }
            let (first, last) = (i == 1, rest.is_empty());
            if first && z {
                self.pending.extend_from_slice(elem);
                if !(last && y) {
                    self.in_fragment = false;
                    let r = emit_obu(&self.pending, out);
                    self.pending.clear();
                    r?;
                }
            } else if last && y {
                self.pending.clear();
                self.pending.extend_from_slice(elem);
                self.in_fragment = true;
            } else {
                emit_obu(elem, out)?;
            }
        }
        if w != 0 && i != w {
            return Err(PacketError::InvalidHeader(
                "av1 element count differs from W",
            ));
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> PacketResult {
        self.started = false;
        self.pending.clear();
        if core::mem::take(&mut self.in_fragment) {
            return Err(PacketError::Fragmentation);
        }
        Ok(())
    }

    /// Z=0: the packet starts with a whole OBU.
    fn is_partition_head(&self, payload: &[u8]) -> bool {
        payload.len() > 1 && payload.first().is_some_and(|a| a & Z == 0)
    }

    /// A temporal unit may span packets that each start with a whole OBU.
    fn head_is_frame_start(&self) -> bool {
        false
    }

    /// N=1: first packet of a coded video sequence.
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        payload.first().is_some_and(|a| a & N != 0)
    }
}
