//! Facts an SFU needs from RTP payloads: keyframes, temporal/spatial layer ids and the VP8
//! picture numbering it rewrites.
//!
//! Every parser takes untrusted bytes and returns `None` for anything it cannot read; none
//! of them panics or indexes without a bounds check.
//!
//! - VP8: RFC 7741 payload descriptor, plus the P bit of the VP8 frame header.
//! - VP9: RFC 9628 payload descriptor.
//! - H.264: RFC 6184; a keyframe is a packet carrying an SPS (NAL type 7), whether as a
//!   single NAL unit, inside a STAP-A, or at the start of an FU-A. An IDR slice alone is
//!   not treated as a switch point: a decoder joining there lacks the parameter sets.
//! - Other codecs (Opus, …): no facts.

/// The codecs whose payloads carry facts the SFU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184).
    H264,
    /// Anything else (audio, AV1, …): no payload facts.
    Other,
}

/// The VP8 payload descriptor (RFC 7741 section 4.2) of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Desc {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_id: u8,
    /// PictureID, 7 or 15 bits wide.
    pub picture_id: Option<u16>,
    /// The PictureID field is 15 bits (M bit set).
    pub picture_id_15bit: bool,
    /// TL0PICIDX.
    pub tl0picidx: Option<u8>,
    /// TID (present when the T bit is set).
    pub tid: Option<u8>,
    /// Y: the frame depends only on temporal layer 0 (a temporal up-switch point); only
    /// meaningful with a TID.
    pub layer_sync: bool,
    /// KEYIDX (present when the K bit is set).
    pub key_idx: Option<u8>,
    /// Byte offset of the PictureID field in the payload (meaningful when `picture_id` is
    /// set).
    pub picture_id_offset: u8,
    /// Byte offset of TL0PICIDX in the payload (meaningful when `tl0picidx` is set).
    pub tl0picidx_offset: u8,
    /// Length of the descriptor; the VP8 payload starts here.
    pub header_len: u8,
    /// The packet starts a key frame (S=1, PID=0, frame header P bit clear).
    pub keyframe: bool,
}

impl Vp8Desc {
    /// The packet starts a new picture (S=1 and partition 0).
    pub fn starts_picture(&self) -> bool {
        self.start_of_partition && self.partition_id == 0
    }
}

/// Reads the PictureID field that starts at `payload[i]` (VP8 and VP9 descriptors alike:
/// the M bit, then 7 or 15 bits): the id, whether it is 15 bits wide, and the field's
/// length in bytes. `None` when the payload ends inside the field.
fn read_picture_id(payload: &[u8], i: usize) -> Option<(u16, bool, usize)> {
    let p0 = *payload.get(i)?;
    if p0 & 0x80 != 0 {
        let p1 = *payload.get(i + 1)?;
        Some((u16::from(p0 & 0x7f) << 8 | u16::from(p1), true, 2))
    } else {
        Some((u16::from(p0), false, 1))
    }
}

/// Parses a VP8 payload descriptor. `None` when the payload is too short for the fields
/// its flags announce.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8Desc> {
    let b0 = *payload.first()?;
    let mut d = Vp8Desc {
        non_reference: b0 & 0x20 != 0,
        start_of_partition: b0 & 0x10 != 0,
        partition_id: b0 & 0x07,
        ..Vp8Desc::default()
    };
    let mut i = 1usize;
    if b0 & 0x80 != 0 {
        let x = *payload.get(i)?;
        i += 1;
        let (has_i, has_l, has_t, has_k) =
            (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
        if has_i {
            let (id, wide, n) = read_picture_id(payload, i)?;
            d.picture_id_offset = i as u8;
            d.picture_id = Some(id);
            d.picture_id_15bit = wide;
            i += n;
        }
        if has_l {
            d.tl0picidx = Some(*payload.get(i)?);
            d.tl0picidx_offset = i as u8;
            i += 1;
        }
        if has_t || has_k {
            let t = *payload.get(i)?;
            i += 1;
            if has_t {
                d.tid = Some(t >> 6);
                d.layer_sync = t & 0x20 != 0;
            }
            if has_k {
                d.key_idx = Some(t & 0x1f);
            }
        }
    }
    // At most 1 + 1 + 2 + 1 + 1 = 6 bytes.
    d.header_len = i as u8;
    if d.starts_picture() {
        // VP8 frame header: bit 0 of the first byte is the inverse key frame flag.
        let h = *payload.get(i)?;
        d.keyframe = h & 0x01 == 0;
    }
    Some(d)
}

/// A rewrite of a VP8 descriptor's picture numbering, applied to the forwarded copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Rewrite {
    /// The new PictureID (the low 7 bits are written when the field is 7 bits wide).
    pub picture_id: Option<u16>,
    /// The new TL0PICIDX.
    pub tl0picidx: Option<u8>,
}

impl Vp8Rewrite {
    /// Writes the new values in place into `payload` (the forwarded copy of the payload
    /// `desc` was parsed from), keeping each field's width. Fields `desc` lacks are left
    /// alone. Returns `false` (writing nothing) when `payload` is too short.
    pub fn apply(&self, desc: &Vp8Desc, payload: &mut [u8]) -> bool {
        if payload.len() < usize::from(desc.header_len) {
            return false;
        }
        if let (Some(pid), Some(_)) = (self.picture_id, desc.picture_id) {
            let at = usize::from(desc.picture_id_offset);
            if desc.picture_id_15bit {
                let Some([hi, lo]) = payload.get_mut(at..at + 2) else {
                    return false;
                };
                *hi = 0x80 | ((pid >> 8) as u8 & 0x7f);
                *lo = pid as u8;
            } else {
                let Some(f) = payload.get_mut(at) else {
                    return false;
                };
                *f = pid as u8 & 0x7f;
            }
        }
        if let (Some(t), Some(_)) = (self.tl0picidx, desc.tl0picidx) {
            let Some(f) = payload.get_mut(usize::from(desc.tl0picidx_offset)) else {
                return false;
            };
            *f = t;
        }
        true
    }
}

/// The VP9 payload descriptor (RFC 9628 section 4.2) of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Desc {
    /// P: inter-picture predicted (the frame references an earlier picture).
    pub inter_picture: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// B: start of a layer frame.
    pub begin_frame: bool,
    /// E: end of a layer frame.
    pub end_frame: bool,
    /// V: the packet carries a scalability structure.
    pub has_ss: bool,
    /// Z: not used for prediction by the upper spatial layer.
    pub not_ref_upper: bool,
    /// PictureID, 7 or 15 bits.
    pub picture_id: Option<u16>,
    /// The PictureID field is 15 bits.
    pub picture_id_15bit: bool,
    /// Temporal layer id (L bit set).
    pub tid: Option<u8>,
    /// U: switching up point.
    pub switching_up: bool,
    /// Spatial layer id (L bit set).
    pub sid: Option<u8>,
    /// D: inter-layer dependency.
    pub inter_layer_dep: bool,
    /// TL0PICIDX (non-flexible mode with L).
    pub tl0picidx: Option<u8>,
    /// Length of the descriptor.
    pub header_len: u16,
    /// The packet starts a key frame (B=1, P=0, spatial layer 0).
    pub keyframe: bool,
}

/// Parses a VP9 payload descriptor, including (and skipping) the scalability structure.
pub fn parse_vp9(payload: &[u8]) -> Option<Vp9Desc> {
    let b0 = *payload.first()?;
    let mut d = Vp9Desc {
        inter_picture: b0 & 0x40 != 0,
        flexible: b0 & 0x10 != 0,
        begin_frame: b0 & 0x08 != 0,
        end_frame: b0 & 0x04 != 0,
        has_ss: b0 & 0x02 != 0,
        not_ref_upper: b0 & 0x01 != 0,
        ..Vp9Desc::default()
    };
    let (has_i, has_l) = (b0 & 0x80 != 0, b0 & 0x20 != 0);
    let mut i = 1usize;
    if has_i {
        let (id, wide, n) = read_picture_id(payload, i)?;
        d.picture_id = Some(id);
        d.picture_id_15bit = wide;
        i += n;
    }
    if has_l {
        let l = *payload.get(i)?;
        i += 1;
        d.tid = Some(l >> 5);
        d.switching_up = l & 0x10 != 0;
        d.sid = Some((l >> 1) & 0x07);
        d.inter_layer_dep = l & 0x01 != 0;
        if !d.flexible {
            d.tl0picidx = Some(*payload.get(i)?);
            i += 1;
        }
    }
    if d.flexible && d.inter_picture {
        // Up to 3 reference indices, each with an N (more follow) bit.
        for n in 0..3 {
            let r = *payload.get(i)?;
            i += 1;
            if r & 0x01 == 0 {
                break;
            }
            if n == 2 {
                return None;
            }
        }
    }
    if d.has_ss {
        let s = *payload.get(i)?;
        i += 1;
        let n_s = usize::from(s >> 5) + 1;
        let has_y = s & 0x10 != 0;
        let has_g = s & 0x08 != 0;
        if has_y {
            i += 4 * n_s;
        }
        if has_g {
            let n_g = *payload.get(i)?;
            i += 1;
            for _ in 0..n_g {
                let g = *payload.get(i)?;
                i += 1 + usize::from((g >> 2) & 0x03);
            }
        }
        if i > payload.len() {
            return None;
        }
    }
    d.header_len = u16::try_from(i).ok()?;
    d.keyframe = d.begin_frame && !d.inter_picture && d.sid.unwrap_or(0) == 0;
    Some(d)
}

/// H.264 facts of one packet (RFC 6184).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct H264Desc {
    /// The NAL unit type of the RTP payload (1..=23 single NAL, 24 STAP-A, 28 FU-A, …).
    pub nal_type: u8,
    /// The packet carries an SPS (NAL 7): a switch point.
    pub has_sps: bool,
    /// The packet carries a PPS (NAL 8).
    pub has_pps: bool,
    /// The packet carries (the start of) an IDR slice (NAL 5).
    pub has_idr: bool,
    /// FU-A start bit (false for other packetizations).
    pub fu_start: bool,
    /// FU-A end bit.
    pub fu_end: bool,
    /// Keyframe for switching purposes: the packet carries an SPS.
    pub keyframe: bool,
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// Parses the H.264 facts of a payload. `None` for an empty payload or a malformed
/// STAP-A / FU-A.
pub fn parse_h264(payload: &[u8]) -> Option<H264Desc> {
    let b0 = *payload.first()?;
    let mut d = H264Desc {
        nal_type: b0 & 0x1f,
        ..H264Desc::default()
    };
    fn note(d: &mut H264Desc, t: u8) {
        match t {
            NAL_SPS => d.has_sps = true,
            NAL_PPS => d.has_pps = true,
            NAL_IDR => d.has_idr = true,
            _ => {}
        }
    }
    match d.nal_type {
        0 => return None,
        t @ 1..=23 => note(&mut d, t),
        NAL_STAP_A => {
            let mut rest = payload.get(1..)?;
            if rest.is_empty() {
                return None;
            }
            while !rest.is_empty() {
                let &[hi, lo] = rest.get(..2)? else {
                    return None;
                };
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                let nal = rest.get(2..2 + size)?;
                let t = *nal.first()? & 0x1f;
                note(&mut d, t);
                rest = rest.get(2 + size..)?;
            }
        }
        NAL_FU_A => {
            let h = *payload.get(1)?;
            d.fu_start = h & 0x80 != 0;
            d.fu_end = h & 0x40 != 0;
            if d.fu_start {
                note(&mut d, h & 0x1f);
            }
        }
        // STAP-B, MTAP, FU-B and reserved types: no facts.
        _ => {}
    }
    d.keyframe = d.has_sps;
    Some(d)
}

/// The facts parsed from one packet's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadFacts {
    /// No codec facts (audio, unknown codec, unparsable payload).
    #[default]
    None,
    /// VP8.
    Vp8(Vp8Desc),
    /// VP9.
    Vp9(Vp9Desc),
    /// H.264.
    H264(H264Desc),
}

impl PayloadFacts {
    /// Parses `payload` as `codec`; a payload the parser rejects yields `None` facts.
    pub fn parse(codec: VideoCodec, payload: &[u8]) -> PayloadFacts {
        let parsed = match codec {
            VideoCodec::Vp8 => parse_vp8(payload).map(PayloadFacts::Vp8),
            VideoCodec::Vp9 => parse_vp9(payload).map(PayloadFacts::Vp9),
            VideoCodec::H264 => parse_h264(payload).map(PayloadFacts::H264),
            VideoCodec::Other => None,
        };
        parsed.unwrap_or_default()
    }

    /// The packet starts a keyframe (a simulcast switch point).
    pub fn keyframe(&self) -> bool {
        match self {
            PayloadFacts::None => false,
            PayloadFacts::Vp8(d) => d.keyframe,
            PayloadFacts::Vp9(d) => d.keyframe,
            PayloadFacts::H264(d) => d.keyframe,
        }
    }

    /// The temporal layer id, when the codec carries one.
    pub fn tid(&self) -> Option<u8> {
        match self {
            PayloadFacts::Vp8(d) => d.tid,
            PayloadFacts::Vp9(d) => d.tid,
            _ => None,
        }
    }

    /// A temporal up-switch point (VP8 Y, VP9 U).
    pub fn layer_sync(&self) -> bool {
        match self {
            PayloadFacts::Vp8(d) => d.tid.is_some() && d.layer_sync,
            PayloadFacts::Vp9(d) => d.switching_up,
            _ => false,
        }
    }

    /// The VP8 descriptor, if any.
    pub fn vp8(&self) -> Option<&Vp8Desc> {
        match self {
            PayloadFacts::Vp8(d) => Some(d),
            _ => None,
        }
    }

    /// Copies the codec facts into a packet's cache meta.
    pub fn fill_meta(&self, meta: &mut super::cache::PacketMeta) {
        meta.keyframe = self.keyframe();
        meta.tid = self.tid();
        meta.layer_sync = self.layer_sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A VP8 payload: descriptor with 15-bit PictureID, TL0PICIDX, TID/Y, then a frame
    /// header byte.
    fn vp8(start: bool, pid: u16, tl0: u8, tid: u8, y: bool, key: bool) -> Vec<u8> {
        vec![
            0x80 | if start { 0x10 } else { 0 },
            0xE0, // I, L, T
            0x80 | (pid >> 8) as u8,
            pid as u8,
            tl0,
            tid << 6 | if y { 0x20 } else { 0 },
            if key { 0x00 } else { 0x01 },
            0xAB,
        ]
    }

    #[test]
    fn vp8_full_descriptor() {
        let d = parse_vp8(&vp8(true, 0x1234, 77, 2, true, true)).unwrap();
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.picture_id_15bit);
        assert_eq!(d.picture_id_offset, 2);
        assert_eq!(d.tl0picidx, Some(77));
        assert_eq!(d.tl0picidx_offset, 4);
        assert_eq!(d.tid, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_idx, None);
        assert_eq!(d.header_len, 6);
        assert!(d.keyframe);
        let d = parse_vp8(&vp8(true, 5, 1, 0, false, false)).unwrap();
        assert!(!d.keyframe);
        assert!(!d.layer_sync);
        // Not a start of partition: never a keyframe, even with P clear.
        let d = parse_vp8(&vp8(false, 5, 1, 0, false, true)).unwrap();
        assert!(!d.keyframe);
    }

    #[test]
    fn vp8_short_forms() {
        // Only the first byte: S=1, PID 0, then a key frame header.
        let d = parse_vp8(&[0x10, 0x00]).unwrap();
        assert_eq!(d.header_len, 1);
        assert!(d.keyframe);
        assert_eq!(d.picture_id, None);
        // 7-bit PictureID only.
        let d = parse_vp8(&[0x90, 0x80, 0x15, 0x01]).unwrap();
        assert_eq!(d.picture_id, Some(0x15));
        assert!(!d.picture_id_15bit);
        assert_eq!(d.header_len, 3);
        // K without T: KEYIDX read, TID absent.
        let d = parse_vp8(&[0x90, 0x10, 0xFF, 0x01]).unwrap();
        assert_eq!(d.tid, None);
        assert_eq!(d.key_idx, Some(0x1f));
        assert!(!PayloadFacts::Vp8(d).layer_sync());
        // Partition 1 start: not a keyframe.
        let d = parse_vp8(&[0x11, 0x00]).unwrap();
        assert!(!d.keyframe);
    }

    #[test]
    fn picture_id_both_widths() {
        assert_eq!(read_picture_id(&[0x00, 0x12], 1), Some((0x12, false, 1)));
        assert_eq!(read_picture_id(&[0x81, 0x02], 0), Some((0x0102, true, 2)));
        assert_eq!(read_picture_id(&[0x81], 0), None);
        assert_eq!(read_picture_id(&[], 0), None);
    }

    #[test]
    fn vp8_truncated_is_none() {
        let full = vp8(true, 0x1234, 77, 2, true, true);
        // Every prefix shorter than descriptor + frame header byte is rejected.
        for n in 0..7 {
            assert_eq!(parse_vp8(&full[..n]), None, "prefix {n}");
        }
        assert!(parse_vp8(&full[..7]).is_some());
        // A continuation packet needs no frame header byte.
        let cont = vp8(false, 1, 1, 0, false, false);
        assert!(parse_vp8(&cont[..6]).is_some());
    }

    #[test]
    fn vp8_rewrite_keeps_width() {
        let mut p = vp8(true, 0x1234, 77, 1, false, false);
        let d = parse_vp8(&p).unwrap();
        let rw = Vp8Rewrite {
            picture_id: Some(0x7ffe),
            tl0picidx: Some(3),
        };
        assert!(rw.apply(&d, &mut p));
        let d2 = parse_vp8(&p).unwrap();
        assert_eq!(d2.picture_id, Some(0x7ffe));
        assert_eq!(d2.tl0picidx, Some(3));
        assert_eq!(d2.tid, Some(1));
        assert_eq!(p[7], 0xAB);

        let mut p = vec![0x90, 0xC0, 0x15, 0x09, 0x01];
        let d = parse_vp8(&p).unwrap();
        assert!(
            Vp8Rewrite {
                picture_id: Some(0x1ff),
                tl0picidx: Some(10)
            }
            .apply(&d, &mut p)
        );
        let d2 = parse_vp8(&p).unwrap();
        assert_eq!(d2.picture_id, Some(0x7f));
        assert!(!d2.picture_id_15bit);
        assert_eq!(d2.tl0picidx, Some(10));
        // Too short output: nothing written.
        let mut short = [0x90u8];
        assert!(
            !Vp8Rewrite {
                picture_id: Some(1),
                tl0picidx: None
            }
            .apply(&d, &mut short)
        );
        assert_eq!(short, [0x90]);
    }

    #[test]
    // Binary literals grouped by descriptor field.
    #[allow(clippy::unusual_byte_groupings)]
    fn vp9_descriptor() {
        // I (15-bit), L, B, E; TID 2, U, SID 1, D; TL0PICIDX 9.
        let p = [0xAC, 0x81, 0x02, 0b010_1_001_1, 9, 0xff];
        let d = parse_vp9(&p).unwrap();
        assert_eq!(d.picture_id, Some(0x102));
        assert_eq!(d.tid, Some(2));
        assert!(d.switching_up);
        assert_eq!(d.sid, Some(1));
        assert!(d.inter_layer_dep);
        assert_eq!(d.tl0picidx, Some(9));
        assert!(d.begin_frame && d.end_frame);
        assert_eq!(d.header_len, 5);
        // SID 1: not a keyframe even with P=0.
        assert!(!d.keyframe);
        // SID 0, P=0, B=1: keyframe.
        let d = parse_vp9(&[0xA8, 0x05, 0x00, 0x00]).unwrap();
        assert!(d.keyframe);
        // P=1: not.
        let d = parse_vp9(&[0xE8, 0x05, 0x00, 0x00]).unwrap();
        assert!(!d.keyframe);
        // No L: SID defaults to 0.
        assert!(parse_vp9(&[0x08]).unwrap().keyframe);
    }

    #[test]
    // Binary literals grouped by descriptor field.
    #[allow(clippy::unusual_byte_groupings)]
    fn vp9_flexible_and_ss() {
        // F, P, B with two P_DIFFs (N set on the first).
        let d = parse_vp9(&[0x58, 0x03, 0x04, 0xAA]).unwrap();
        assert_eq!(d.header_len, 3);
        // Three P_DIFFs all announcing more: malformed.
        assert_eq!(parse_vp9(&[0x58, 0x03, 0x03, 0x03, 0x00]), None);
        // V with N_S=1 (2 layers), Y (sizes), G with 1 group of R=1.
        let p = [
            0x0A,
            0b001_1_1_000,
            0,
            1,
            0,
            2,
            0,
            3,
            0,
            4,
            1,
            0b000_0_01_00,
            7,
            0xEE,
        ];
        let d = parse_vp9(&p).unwrap();
        assert!(d.has_ss);
        assert_eq!(d.header_len, 13);
        assert!(d.keyframe);
        // SS sizes truncated: malformed.
        assert_eq!(parse_vp9(&p[..5]), None);
    }

    #[test]
    fn h264_keyframes() {
        // Single NAL SPS.
        assert!(parse_h264(&[0x67, 1, 2]).unwrap().keyframe);
        // IDR alone: not a switch point.
        let d = parse_h264(&[0x65, 1]).unwrap();
        assert!(d.has_idr && !d.keyframe);
        // STAP-A with SPS, PPS, IDR.
        let stap = [0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 2, 0, 2, 0x65, 3];
        let d = parse_h264(&stap).unwrap();
        assert!(d.has_sps && d.has_pps && d.has_idr && d.keyframe);
        assert_eq!(d.nal_type, 24);
        // STAP-A whose size runs past the end: malformed.
        assert_eq!(parse_h264(&[0x78, 0, 9, 0x67, 1]), None);
        // STAP-A with only PPS.
        assert!(!parse_h264(&[0x78, 0, 2, 0x68, 1]).unwrap().keyframe);
        // FU-A start of an SPS (odd but legal), and its middle.
        assert!(parse_h264(&[0x7C, 0x87, 1]).unwrap().keyframe);
        assert!(!parse_h264(&[0x7C, 0x07, 1]).unwrap().keyframe);
        // FU-A start of an IDR.
        let d = parse_h264(&[0x7C, 0x85, 1]).unwrap();
        assert!(d.fu_start && d.has_idr && !d.keyframe);
        assert_eq!(parse_h264(&[]), None);
        assert_eq!(parse_h264(&[0x7C]), None);
    }

    #[test]
    fn facts_dispatch() {
        let f = PayloadFacts::parse(VideoCodec::Vp8, &vp8(true, 1, 2, 0, true, true));
        assert!(f.keyframe());
        assert_eq!(f.tid(), Some(0));
        assert!(f.layer_sync());
        assert!(f.vp8().is_some());
        assert_eq!(
            PayloadFacts::parse(VideoCodec::Other, &[1, 2, 3]),
            PayloadFacts::None
        );
        assert_eq!(
            PayloadFacts::parse(VideoCodec::Vp8, &[]),
            PayloadFacts::None
        );
        let f = PayloadFacts::parse(VideoCodec::H264, &[0x67]);
        assert!(f.keyframe());
        assert_eq!(f.tid(), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_vp8(&bytes);
            let _ = parse_vp9(&bytes);
            let _ = parse_h264(&bytes);
            if let Some(d) = parse_vp8(&bytes) {
                prop_assert!(usize::from(d.header_len) <= bytes.len());
                let mut copy = bytes.clone();
                let rw = Vp8Rewrite { picture_id: Some(0x1234), tl0picidx: Some(5) };
                prop_assert!(rw.apply(&d, &mut copy));
                let d2 = parse_vp8(&copy).unwrap();
                prop_assert_eq!(d2.header_len, d.header_len);
                if d.picture_id.is_some() {
                    let want = if d.picture_id_15bit { 0x1234 } else { 0x34 };
                    prop_assert_eq!(d2.picture_id, Some(want));
                }
            }
            if let Some(d) = parse_vp9(&bytes) {
                prop_assert!(usize::from(d.header_len) <= bytes.len());
            }
        }
    }
}
