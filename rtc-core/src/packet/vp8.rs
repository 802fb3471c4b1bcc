//! VP8 payload format (RFC 7741).
//!
//! Payload descriptor (§4.2):
//!
//! ```text
//!  X|R|N|S|R|PID      first byte
//!  I|L|T|K|RSV        if X
//!  M|PictureID        if I (7 bits, or 15 bits when M)
//!  TL0PICIDX          if L
//!  TID|Y|KEYIDX       if T or K
//! ```

use super::{
    Bytes, CodecExtra, Depacketizer, Extra, PacketError, PacketResult, Packetizer, Payloads,
    PictureIds, even_chunks, media_after, media_room, payload_with_header, picture_id,
};

/// Per-frame VP8 fields from the payload descriptor of the frame's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Extra {
    /// Picture id and TL0PICIDX.
    pub ids: PictureIds,
    /// Temporal layer index, if present.
    pub temporal_id: Option<u8>,
    /// Layer sync bit (Y); false when absent.
    pub layer_sync: bool,
    /// Key index, if present.
    pub key_idx: Option<u8>,
    /// Non-reference frame (N bit).
    pub non_reference: bool,
}

/// A parsed VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: start of a VP8 partition.
    pub start: bool,
    /// Partition index (0..=7).
    pub partition_id: u8,
    /// Picture id (masked to 15 bits when written).
    pub picture_id: Option<u16>,
    /// Write the picture id in the 15-bit form (M=1) even if it fits in 7 bits. Ids
    /// above 127 always use the 15-bit form.
    pub long_picture_id: bool,
    /// TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index (0..=3); written with T=1.
    pub temporal_id: Option<u8>,
    /// Y bit (only written when `temporal_id` or `key_idx` is present).
    pub layer_sync: bool,
    /// Key index (0..=31); written with K=1.
    pub key_idx: Option<u8>,
}

impl Vp8Descriptor {
    /// The picture numbering this descriptor carries.
    pub fn ids(&self) -> PictureIds {
        PictureIds {
            picture_id: self.picture_id,
            tl0_pic_idx: self.tl0_pic_idx,
        }
    }

    /// Parses the descriptor at the start of `payload`; returns it and its length.
    pub fn parse(payload: &[u8]) -> Result<(Self, usize), PacketError> {
        let byte = |pos: usize| payload.get(pos).copied().ok_or(PacketError::Truncated);
        let b0 = byte(0)?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            ..Default::default()
        };
        let mut len = 1;
        if b0 & 0x80 != 0 {
            let x = byte(len)?;
            len += 1;
            if x & 0x80 != 0 {
                let (p, long) = picture_id::read(payload.get(len..).unwrap_or_default())?;
                d.picture_id = Some(p);
                d.long_picture_id = long;
                len += picture_id::len(long);
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(byte(len)?);
                len += 1;
            }
            if x & 0x30 != 0 {
                let t = byte(len)?;
                len += 1;
                if x & 0x20 != 0 {
                    d.temporal_id = Some(t >> 6);
                }
                d.layer_sync = t & 0x20 != 0;
                if x & 0x10 != 0 {
                    d.key_idx = Some(t & 0x1f);
                }
            }
        }
        Ok((d, len))
    }

    /// Length of the encoded descriptor.
    pub fn encoded_len(&self) -> usize {
        let mut n = 1;
        if self.has_extension() {
            n += 1;
            if let Some(p) = self.picture_id {
                n += picture_id::len(picture_id::is_long(p, self.long_picture_id));
            }
            n += usize::from(self.tl0_pic_idx.is_some());
            n += usize::from(self.temporal_id.is_some() || self.key_idx.is_some());
        }
        n
    }

    fn has_extension(&self) -> bool {
        self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.temporal_id.is_some()
            || self.key_idx.is_some()
    }

    /// Writes the descriptor into `buf`; returns its length. Field values are masked to
    /// their bit widths (picture id 15 bits, partition id 3, TID 2, KEYIDX 5).
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, PacketError> {
        let len = self.encoded_len();
        let out = buf.get_mut(..len).ok_or(PacketError::Truncated)?;
        let ext = self.has_extension();
        let mut b0 = self.partition_id & 0x07;
        if ext {
            b0 |= 0x80;
        }
        if self.non_reference {
            b0 |= 0x20;
        }
        if self.start {
            b0 |= 0x10;
        }
        let mut i = 0;
        let mut put = |v: u8| {
            if let Some(b) = out.get_mut(i) {
                *b = v;
            }
            i += 1;
        };
        put(b0);
        if ext {
            let mut x = 0u8;
            if self.picture_id.is_some() {
                x |= 0x80;
            }
            if self.tl0_pic_idx.is_some() {
                x |= 0x40;
            }
            if self.temporal_id.is_some() {
                x |= 0x20;
            }
            if self.key_idx.is_some() {
                x |= 0x10;
            }
            put(x);
            if let Some(p) = self.picture_id {
                picture_id::write(p, picture_id::is_long(p, self.long_picture_id), &mut put);
            }
            if let Some(t) = self.tl0_pic_idx {
                put(t);
            }
            if self.temporal_id.is_some() || self.key_idx.is_some() {
                let mut t = (self.temporal_id.unwrap_or(0) & 0x03) << 6;
                if self.layer_sync {
                    t |= 0x20;
                }
                t |= self.key_idx.unwrap_or(0) & 0x1f;
                put(t);
            }
        }
        Ok(len)
    }
}

/// VP8 packetizer. Every frame gets a 15-bit picture id (when enabled), incremented per
/// frame; payloads are split into near-equal sizes.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    picture_id: Option<u16>,
}

impl Default for Vp8Packetizer {
    fn default() -> Self {
        Self::new(Some(0))
    }
}

impl Vp8Packetizer {
    /// A packetizer whose first frame gets `picture_id` (masked to 15 bits); `None` sends
    /// no picture ids (1-byte descriptors).
    pub fn new(picture_id: Option<u16>) -> Self {
        Self {
            picture_id: picture_id.map(|p| p & 0x7fff),
        }
    }
}

impl Packetizer for Vp8Packetizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        let mut desc = Vp8Descriptor {
            start: true,
            picture_id: self.picture_id,
            // Always the 15-bit form, so the descriptor size does not change per frame.
            long_picture_id: true,
            ..Default::default()
        };
        let hlen = desc.encoded_len();
        for chunk in even_chunks(frame, media_room(mtu, hlen)?) {
            out.push(payload_with_header(hlen, chunk, |p| desc.write(p))?);
            desc.start = false;
        }
        if let Some(p) = self.picture_id.as_mut() {
            *p = (*p + 1) & 0x7fff;
        }
        Ok(())
    }
}

/// VP8 depacketizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vp8Depacketizer;

impl Depacketizer for Vp8Depacketizer {
    fn depacketize(&mut self, payload: &[u8], out: &mut Bytes, extra: &mut Extra) -> PacketResult {
        let (d, len) = Vp8Descriptor::parse(payload)?;
        let media = media_after(payload, len)?;
        if d.start && d.partition_id == 0 {
            *extra = CodecExtra::Vp8(Vp8Extra {
                ids: d.ids(),
                temporal_id: d.temporal_id,
                layer_sync: d.layer_sync,
                key_idx: d.key_idx,
                non_reference: d.non_reference,
            });
        }
        out.extend_from_slice(media);
        Ok(())
    }

    fn is_partition_head(&self, payload: &[u8]) -> bool {
        matches!(Vp8Descriptor::parse(payload), Ok((d, _)) if d.start && d.partition_id == 0)
    }

    /// RFC 7741 §4.3: the P bit of the VP8 payload header (first byte of the first
    /// partition) is 0 for keyframes.
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        match Vp8Descriptor::parse(payload) {
            Ok((d, len)) if d.start && d.partition_id == 0 => {
                matches!(payload.get(len), Some(b) if b & 0x01 == 0)
            }
            _ => false,
        }
    }
}
