//! VP9 payload format (RFC 9628).
//!
//! Payload descriptor (§4.2):
//!
//! ```text
//!  I|P|L|F|B|E|V|Z        first byte
//!  M|PICTURE ID           if I (7 bits, or 15 bits when M)
//!  TID|U|SID|D            if L
//!  TL0PICIDX              if L and not F
//!  P_DIFF|N  (up to 3)    if F and P
//!  scalability structure  if V
//! ```

use super::{
    Bytes, CodecExtra, Depacketizer, Extra, PacketError, PacketResult, Packetizer, Payloads,
    PictureIds, even_chunks, media_after, media_room, payload_with_header, picture_id,
};

/// Layer indices (the `L` octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Layer {
    /// Temporal layer id (0..=7).
    pub temporal_id: u8,
    /// U: switching up point.
    pub switching_up: bool,
    /// Spatial layer id (0..=7).
    pub spatial_id: u8,
    /// D: inter-layer dependency (the frame depends on the lower spatial layer).
    pub inter_layer_dependency: bool,
}

/// Scalability structure (§4.2.1). Picture group descriptions are validated and counted
/// when parsed but not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Ss {
    /// Number of spatial layers (1..=8).
    pub spatial_layers: u8,
    /// Width and height per spatial layer, if the Y bit was set (entries beyond
    /// `spatial_layers` are zero).
    pub resolutions: Option<[(u16, u16); 8]>,
    /// Number of picture group descriptions, if the G bit was set. [`Vp9Ss::write`] can
    /// only write `None` or `Some(0)`.
    pub picture_groups: Option<u8>,
}

impl Vp9Ss {
    /// Parses a scalability structure; returns it and its length.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), PacketError> {
        let b0 = *buf.first().ok_or(PacketError::Truncated)?;
        let mut ss = Vp9Ss {
            spatial_layers: (b0 >> 5) + 1,
            ..Default::default()
        };
        let mut pos = 1;
        if b0 & 0x10 != 0 {
            let mut res = [(0u16, 0u16); 8];
            for r in res.iter_mut().take(usize::from(ss.spatial_layers)) {
                let b = buf.get(pos..pos + 4).ok_or(PacketError::Truncated)?;
                *r = (
                    u16::from_be_bytes([b[0], b[1]]), // b has exactly 4 bytes
                    u16::from_be_bytes([b[2], b[3]]),
                );
                pos += 4;
            }
            ss.resolutions = Some(res);
        }
        if b0 & 0x08 != 0 {
            let n_g = *buf.get(pos).ok_or(PacketError::Truncated)?;
            pos += 1;
            for _ in 0..n_g {
                let g = *buf.get(pos).ok_or(PacketError::Truncated)?;
                let r = usize::from((g >> 2) & 0x03);
                pos += 1 + r;
                if pos > buf.len() {
                    return Err(PacketError::Truncated);
                }
            }
            ss.picture_groups = Some(n_g);
        }
        Ok((ss, pos))
    }

    /// Length of the encoded structure.
    pub fn encoded_len(&self) -> usize {
        1 + self
            .resolutions
            .map_or(0, |_| 4 * usize::from(self.spatial_layers.clamp(1, 8)))
            + usize::from(self.picture_groups.is_some())
    }

    /// Writes the structure into `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, PacketError> {
        if !(1..=8).contains(&self.spatial_layers) {
            return Err(PacketError::InvalidHeader("vp9 spatial layer count"));
        }
        if matches!(self.picture_groups, Some(n) if n > 0) {
            return Err(PacketError::InvalidHeader(
                "vp9 picture groups not writable",
            ));
        }
        let len = self.encoded_len();
        let out = buf.get_mut(..len).ok_or(PacketError::Truncated)?;
        let mut b0 = (self.spatial_layers - 1) << 5;
        if self.resolutions.is_some() {
            b0 |= 0x10;
        }
        if self.picture_groups.is_some() {
            b0 |= 0x08;
        }
        out[0] = b0; // len >= 1
        let mut pos = 1;
        if let Some(res) = self.resolutions {
            for &(w, h) in res.iter().take(usize::from(self.spatial_layers)) {
                if let Some(d) = out.get_mut(pos..pos + 4) {
                    d[..2].copy_from_slice(&w.to_be_bytes()); // d has 4 bytes
                    d[2..].copy_from_slice(&h.to_be_bytes());
                }
                pos += 4;
            }
        }
        if self.picture_groups.is_some()
            && let Some(b) = out.get_mut(pos)
        {
            *b = 0;
        }
        Ok(len)
    }
}

/// A parsed VP9 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// Picture id (masked to 15 bits when written).
    pub picture_id: Option<u16>,
    /// Write the picture id in the 15-bit form even if it fits in 7 bits.
    pub long_picture_id: bool,
    /// P: inter-picture predicted.
    pub inter_picture: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// B: start of a (layer) frame.
    pub start: bool,
    /// E: end of a (layer) frame.
    pub end: bool,
    /// Z: not a reference for upper spatial layers.
    pub not_upper_reference: bool,
    /// Layer indices, if the L bit was set.
    pub layer: Option<Vp9Layer>,
    /// TL0PICIDX (non-flexible mode with layer indices only).
    pub tl0_pic_idx: Option<u8>,
    /// Reference picture id differences (flexible mode, inter-picture): `p_diff[..p_diff_count]`.
    pub p_diff: [u8; 3],
    /// Number of valid entries in `p_diff` (0..=3).
    pub p_diff_count: u8,
    /// Scalability structure, if the V bit was set.
    pub ss: Option<Vp9Ss>,
}

impl Vp9Descriptor {
    /// The picture numbering this descriptor carries.
    pub fn ids(&self) -> PictureIds {
        PictureIds {
            picture_id: self.picture_id,
            tl0_pic_idx: self.tl0_pic_idx,
        }
    }

    /// Parses the descriptor at the start of `payload`; returns it and its length.
    pub fn parse(payload: &[u8]) -> Result<(Self, usize), PacketError> {
        let b0 = *payload.first().ok_or(PacketError::Truncated)?;
        let mut d = Vp9Descriptor {
            inter_picture: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            start: b0 & 0x08 != 0,
            end: b0 & 0x04 != 0,
            not_upper_reference: b0 & 0x01 != 0,
            ..Default::default()
        };
        let mut pos = 1;
        let byte = |pos: usize| payload.get(pos).copied().ok_or(PacketError::Truncated);
        if b0 & 0x80 != 0 {
            let (p, long) = picture_id::read(payload.get(pos..).unwrap_or_default())?;
            d.picture_id = Some(p);
            d.long_picture_id = long;
            pos += picture_id::len(long);
        }
        if b0 & 0x20 != 0 {
            let l = byte(pos)?;
            pos += 1;
            d.layer = Some(Vp9Layer {
                temporal_id: l >> 5,
                switching_up: l & 0x10 != 0,
                spatial_id: (l >> 1) & 0x07,
                inter_layer_dependency: l & 0x01 != 0,
            });
            if !d.flexible {
                d.tl0_pic_idx = Some(byte(pos)?);
                pos += 1;
            }
        }
        if d.flexible && d.inter_picture {
            loop {
                let p = byte(pos)?;
                pos += 1;
                let slot = d
                    .p_diff
                    .get_mut(usize::from(d.p_diff_count))
                    .ok_or(PacketError::InvalidHeader("vp9 more than 3 P_DIFF"))?;
                *slot = p >> 1;
                d.p_diff_count += 1;
                if p & 0x01 == 0 {
                    break;
                }
            }
        }
        if b0 & 0x02 != 0 {
            let (ss, n) = Vp9Ss::parse(payload.get(pos..).unwrap_or_default())?;
            d.ss = Some(ss);
            pos += n;
        }
        Ok((d, pos))
    }

    fn p_diffs(&self) -> &[u8] {
        if self.flexible && self.inter_picture {
            self.p_diff
                .get(..usize::from(self.p_diff_count))
                .unwrap_or(&self.p_diff)
        } else {
            &[]
        }
    }

    /// Length of the encoded descriptor.
    pub fn encoded_len(&self) -> usize {
        1 + self.picture_id.map_or(0, |p| {
            picture_id::len(picture_id::is_long(p, self.long_picture_id))
        }) + self.layer.map_or(0, |_| if self.flexible { 1 } else { 2 })
            + self.p_diffs().len()
            + self.ss.map_or(0, |s| s.encoded_len())
    }

    /// Writes the descriptor into `buf`; returns its length. In flexible inter-picture
    /// mode `p_diff_count` must be 1..=3; in non-flexible mode with layer indices a
    /// missing `tl0_pic_idx` is written as 0.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, PacketError> {
        if self.flexible && self.inter_picture && !(1..=3).contains(&self.p_diff_count) {
            return Err(PacketError::InvalidHeader("vp9 P_DIFF count"));
        }
        let len = self.encoded_len();
        let out = buf.get_mut(..len).ok_or(PacketError::Truncated)?;
        let mut b0 = 0u8;
        for (on, bit) in [
            (self.picture_id.is_some(), 0x80),
            (self.inter_picture, 0x40),
            (self.layer.is_some(), 0x20),
            (self.flexible, 0x10),
            (self.start, 0x08),
            (self.end, 0x04),
            (self.ss.is_some(), 0x02),
            (self.not_upper_reference, 0x01),
        ] {
            if on {
                b0 |= bit;
            }
        }
        let mut pos = 0;
        let mut put = |v: u8| {
            if let Some(b) = out.get_mut(pos) {
                *b = v;
            }
            pos += 1;
        };
        put(b0);
        if let Some(p) = self.picture_id {
            picture_id::write(p, picture_id::is_long(p, self.long_picture_id), &mut put);
        }
        if let Some(l) = self.layer {
            put((l.temporal_id & 0x07) << 5
                | u8::from(l.switching_up) << 4
                | (l.spatial_id & 0x07) << 1
                | u8::from(l.inter_layer_dependency));
            if !self.flexible {
                put(self.tl0_pic_idx.unwrap_or(0));
            }
        }
        let diffs = self.p_diffs();
        for (i, &p) in diffs.iter().enumerate() {
            put((p & 0x7f) << 1 | u8::from(i + 1 < diffs.len()));
        }
        if let Some(ss) = self.ss {
            let start = len - ss.encoded_len();
            ss.write(out.get_mut(start..).unwrap_or_default())?;
        }
        Ok(len)
    }
}

/// Facts from a VP9 uncompressed frame header (VP9 bitstream spec §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameInfo {
    keyframe: bool,
    size: Option<(u16, u16)>,
}

/// MSB-first bit reader over a byte slice.
struct Bits<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.buf.get(self.pos / 8)?;
            v = v << 1 | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

fn parse_frame_header(frame: &[u8]) -> Option<FrameInfo> {
    let mut b = Bits { buf: frame, pos: 0 };
    if b.read(2)? != 2 {
        return None;
    }
    let low = b.read(1)?;
    let high = b.read(1)?;
    let profile = high << 1 | low;
    if profile == 3 {
        b.read(1)?;
    }
    if b.read(1)? == 1 {
        // show_existing_frame: no new frame data.
        return Some(FrameInfo {
            keyframe: false,
            size: None,
        });
    }
    let keyframe = b.read(1)? == 0;
    if !keyframe {
        return Some(FrameInfo {
            keyframe,
            size: None,
        });
    }
    b.read(2)?; // show_frame, error_resilient_mode
    if b.read(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        b.read(1)?; // ten_or_twelve_bit
    }
    let color_space = b.read(3)?;
    if color_space != 7 {
        b.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            b.read(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        b.read(1)?; // reserved_zero
    }
    let w = b.read(16)? + 1;
    let h = b.read(16)? + 1;
    Some(FrameInfo {
        keyframe,
        size: u16::try_from(w).ok().zip(u16::try_from(h).ok()),
    })
}

/// VP9 packetizer: non-flexible mode, one spatial layer, 15-bit picture ids incremented
/// per frame. Keyframes (detected from the uncompressed header) are sent with P=0 and a
/// scalability structure carrying the resolution on their first packet.
#[derive(Debug, Clone)]
pub struct Vp9Packetizer {
    picture_id: u16,
}

impl Default for Vp9Packetizer {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Vp9Packetizer {
    /// A packetizer whose first frame gets `picture_id` (masked to 15 bits).
    pub fn new(picture_id: u16) -> Self {
        Self {
            picture_id: picture_id & 0x7fff,
        }
    }
}

impl Packetizer for Vp9Packetizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        let info = parse_frame_header(frame);
        let keyframe = info.is_some_and(|i| i.keyframe);
        let ss = keyframe.then(|| {
            let mut res = [(0u16, 0u16); 8];
            let size = info.and_then(|i| i.size);
            if let Some(s) = size {
                res[0] = s;
            }
            Vp9Ss {
                spatial_layers: 1,
                resolutions: size.map(|_| res),
                picture_groups: None,
            }
        });
        let mut first = Vp9Descriptor {
            picture_id: Some(self.picture_id),
            long_picture_id: true,
            inter_picture: !keyframe,
            start: true,
            ss,
            ..Default::default()
        };
        let mut rest_desc = first;
        rest_desc.start = false;
        rest_desc.ss = None;
        let (h1, h2) = (first.encoded_len(), rest_desc.encoded_len());
        let first_room = media_room(mtu, h1)?;
        // First packet carries the SS; the remainder is split evenly.
        let first_len = frame.len().min(first_room);
        let (head, tail) = frame.split_at(first_len);
        let rest = even_chunks(tail, mtu - h2);
        let n = rest.len();
        first.end = n == 0;
        let chunks = core::iter::once((first, head)).chain(rest.enumerate().map(|(i, c)| {
            let mut d = rest_desc;
            d.end = i + 1 == n;
            (d, c)
        }));
        for (d, c) in chunks {
            out.push(payload_with_header(d.encoded_len(), c, |p| d.write(p))?);
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Ok(())
    }
}

/// Per-frame VP9 fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Extra {
    /// Picture id and TL0PICIDX of the first packet.
    pub ids: PictureIds,
    /// Layer indices of the first layer frame, if present.
    pub layer: Option<Vp9Layer>,
    /// Highest spatial layer id seen in the frame.
    pub max_spatial_id: u8,
    /// P bit of the first packet.
    pub inter_picture: bool,
    /// F bit.
    pub flexible: bool,
    /// Scalability structure, if any packet of the frame carried one.
    pub ss: Option<Vp9Ss>,
}

/// VP9 depacketizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vp9Depacketizer;

impl Depacketizer for Vp9Depacketizer {
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult {
        let (d, len) = Vp9Descriptor::parse(payload)?;
        let media = media_after(payload, len)?;
        let sid = d.layer.map_or(0, |l| l.spatial_id);
        match extra {
            CodecExtra::Vp9(e) => {
                e.max_spatial_id = e.max_spatial_id.max(sid);
                if d.ss.is_some() {
                    e.ss = d.ss;
                }
            }
            _ => {
                *extra = CodecExtra::Vp9(Vp9Extra {
                    ids: d.ids(),
                    layer: d.layer,
                    max_spatial_id: sid,
                    inter_picture: d.inter_picture,
                    flexible: d.flexible,
                    ss: d.ss,
                });
            }
        }
        out.extend_from_slice(media);
        Ok(())
    }

    /// B=1 on the lowest spatial layer present in the packet (SID 0 or no layer indices).
    fn is_partition_head(&self, payload: &[u8]) -> bool {
        matches!(Vp9Descriptor::parse(payload),
            Ok((d, _)) if d.start && d.layer.is_none_or(|l| l.spatial_id == 0))
    }

    /// P=0 at the start of the frame's first (lowest) spatial layer.
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        matches!(Vp9Descriptor::parse(payload),
            Ok((d, _)) if !d.inter_picture && d.start && d.layer.is_none_or(|l| l.spatial_id == 0))
    }
}

#[cfg(test)]
pub(crate) fn test_keyframe_header(w: u16, h: u16) -> Vec<u8> {
    // frame_marker=2, profile 0 (0,0), show_existing=0, frame_type=0 (key), show_frame=1,
    // error_res=0, sync code, color_space=0 (3 bits), color_range=0, size.
    let mut bits: Vec<u8> = vec![1, 0, 0, 0, 0, 0, 1, 0];
    for i in (0..24).rev() {
        bits.push(((0x49_83_42u32 >> i) & 1) as u8);
    }
    bits.extend([0, 0, 0, 0]);
    for v in [w - 1, h - 1] {
        for i in (0..16).rev() {
            bits.push(((v >> i) & 1) as u8);
        }
    }
    while !bits.len().is_multiple_of(8) {
        bits.push(0);
    }
    bits.chunks(8)
        .map(|c| c.iter().fold(0u8, |a, &b| a << 1 | b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_keyframe_size() {
        let mut f = test_keyframe_header(640, 360);
        f.extend([0xaa; 10]);
        assert_eq!(
            parse_frame_header(&f),
            Some(FrameInfo {
                keyframe: true,
                size: Some((640, 360))
            })
        );
        // Inter frame: frame_type = 1.
        let inter = [0b1000_0100, 0];
        assert_eq!(parse_frame_header(&inter).map(|i| i.keyframe), Some(false));
        assert_eq!(parse_frame_header(&[0x00]), None);
    }
}
