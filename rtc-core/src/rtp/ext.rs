//! RFC 8285 header extensions: the id map and typed values.

use super::RtpError;

/// Profile value of the one-byte header form (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile value of the two-byte header form (RFC 8285 §4.3); the low 4 bits are
/// application bits and are ignored on parse, written as 0.
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// The header extensions this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// Transport-wide sequence number (16 bits), for TWCC.
    TransportSequenceNumber,
    /// Absolute send time (24-bit 6.18 fixed-point seconds).
    AbsSendTime,
    /// Media identification (RFC 9143 / RFC 8843 `mid`).
    Mid,
    /// RTP stream id (RFC 8852 `rid`).
    RtpStreamId,
    /// Repaired RTP stream id (RFC 8852).
    RepairedRtpStreamId,
    /// Client-to-mixer audio level (RFC 6464).
    AudioLevel,
    /// Coordination of video orientation (3GPP TS 26.114).
    VideoOrientation,
    /// Playout delay limits.
    PlayoutDelay,
    /// Absolute capture time.
    AbsCaptureTime,
    /// AV1 dependency descriptor (the AV1 RTP specification's appendix), carried as
    /// opaque bytes: an SFU forwards it, selecting layers needs its own parser.
    DependencyDescriptor,
}

const ALL_EXTENSIONS: [Extension; 10] = [
    Extension::TransportSequenceNumber,
    Extension::AbsSendTime,
    Extension::Mid,
    Extension::RtpStreamId,
    Extension::RepairedRtpStreamId,
    Extension::AudioLevel,
    Extension::VideoOrientation,
    Extension::PlayoutDelay,
    Extension::AbsCaptureTime,
    Extension::DependencyDescriptor,
];

impl Extension {
    /// All known extensions.
    pub const ALL: [Extension; 10] = ALL_EXTENSIONS;

    /// The URI used in SDP `a=extmap` lines.
    pub fn uri(self) -> &'static str {
        match self {
            Extension::TransportSequenceNumber => {
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            }
            Extension::AbsSendTime => "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            Extension::Mid => "urn:ietf:params:rtp-hdrext:sdes:mid",
            Extension::RtpStreamId => "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            Extension::RepairedRtpStreamId => {
                "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
            }
            Extension::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            Extension::VideoOrientation => "urn:3gpp:video-orientation",
            Extension::PlayoutDelay => "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
            Extension::AbsCaptureTime => {
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
            }
            Extension::DependencyDescriptor => {
                "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
            }
        }
    }

    /// Looks an extension up by its exact SDP URI.
    pub fn from_uri(uri: &str) -> Option<Extension> {
        ALL_EXTENSIONS.into_iter().find(|e| e.uri() == uri)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Ids of the one-byte header form (RFC 8285 §4.2: 1..=14; 15 is reserved) and below:
/// looked up through a table.
const LOW_IDS: usize = 16;

/// Maps extension ids (1..=255) to [`Extension`]s, both ways. Plain data, no heap.
///
/// 26 bytes: each [`Extension`] has at most one id, so the map is its id per extension;
/// ids of the one-byte form (the ones browsers use) also have a table for a lookup
/// without a search, and the rare two-byte ids are found among the ten extensions.
/// (A table over all 256 ids made it 266 bytes, held per media section and per
/// forwarded leg.)
#[derive(Clone, PartialEq, Eq)]
pub struct ExtensionMap {
    /// Per id below [`LOW_IDS`]: the index of its extension in [`Extension::ALL`] plus
    /// one, 0 for none. Always what `by_ext` says of those ids.
    low: [u8; LOW_IDS],
    /// Per extension (indexed as [`Extension::ALL`]): its id, 0 for none.
    by_ext: [u8; ALL_EXTENSIONS.len()],
}

impl std::fmt::Debug for ExtensionMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Default for ExtensionMap {
    /// The default WebRTC-style map: 1 audio level, 2 abs-send-time, 3 transport-cc,
    /// 4 mid, 10 rid, 11 repaired rid, 12 playout delay, 13 video orientation,
    /// 14 abs-capture-time (the dependency descriptor has no default id).
    fn default() -> Self {
        let mut m = ExtensionMap::empty();
        for (id, e) in [
            (1, Extension::AudioLevel),
            (2, Extension::AbsSendTime),
            (3, Extension::TransportSequenceNumber),
            (4, Extension::Mid),
            (10, Extension::RtpStreamId),
            (11, Extension::RepairedRtpStreamId),
            (12, Extension::PlayoutDelay),
            (13, Extension::VideoOrientation),
            (14, Extension::AbsCaptureTime),
        ] {
            m.set(id, e);
        }
        m
    }
}

impl ExtensionMap {
    /// A map with no ids assigned.
    pub fn empty() -> Self {
        ExtensionMap {
            low: [0; LOW_IDS],
            by_ext: [0; ALL_EXTENSIONS.len()],
        }
    }

    /// Assigns `id` to `ext`, replacing any previous mapping of either. Returns false
    /// (and changes nothing) for id 0, which RFC 8285 reserves.
    pub fn set(&mut self, id: u8, ext: Extension) -> bool {
        if id == 0 {
            return false;
        }
        self.remove(id);
        let old = self.by_ext[ext.index()];
        if let Some(l) = self.low.get_mut(usize::from(old)) {
            // `old` is 0 (no slot in use) or the id `ext` had.
            *l = 0;
        }
        if let Some(l) = self.low.get_mut(usize::from(id)) {
            // At most 10 extensions: the index plus one fits a byte.
            *l = ext.index() as u8 + 1;
        }
        self.by_ext[ext.index()] = id;
        true
    }

    /// The extension mapped to `id`, if any.
    #[inline]
    pub fn get(&self, id: u8) -> Option<Extension> {
        // `low[0]` stays 0: id 0 is never assigned.
        match self.low.get(usize::from(id)) {
            Some(&v) => ALL_EXTENSIONS.get(usize::from(v).checked_sub(1)?).copied(),
            None => self
                .by_ext
                .iter()
                .position(|&i| i == id)
                .and_then(|i| ALL_EXTENSIONS.get(i).copied()),
        }
    }

    /// The id assigned to `ext`, if any.
    pub fn id_of(&self, ext: Extension) -> Option<u8> {
        match self.by_ext[ext.index()] {
            0 => None,
            id => Some(id),
        }
    }

    /// Removes the mapping of `id`, returning the extension it named.
    pub fn remove(&mut self, id: u8) -> Option<Extension> {
        let e = self.get(id)?;
        self.by_ext[e.index()] = 0;
        if let Some(l) = self.low.get_mut(usize::from(id)) {
            *l = 0;
        }
        Some(e)
    }

    /// Iterates over `(id, extension)` pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, Extension)> + '_ {
        let mut pairs = [(0u8, Extension::Mid); ALL_EXTENSIONS.len()];
        let mut n = 0;
        for (&id, e) in self.by_ext.iter().zip(ALL_EXTENSIONS) {
            if id != 0 {
                pairs[n] = (id, e);
                n += 1;
            }
        }
        pairs[..n].sort_unstable_by_key(|&(id, _)| id);
        pairs.into_iter().take(n)
    }
}

/// RFC 6464 audio level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// Voice activity flag (V bit).
    pub voice: bool,
    /// Level in -dBov, 0..=127 (127 = silence).
    pub level: u8,
}

/// 3GPP coordination of video orientation (the `0000 C F R1 R0` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoOrientation {
    /// C bit: true for the back-facing camera.
    pub back_camera: bool,
    /// F bit: horizontal flip.
    pub flip: bool,
    /// R1 R0: rotation in 90° steps, 0..=3.
    pub rotation: u8,
}

/// Playout delay limits, each 12 bits in 10 ms units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutDelay {
    /// Minimum delay (10 ms units, 0..=4095).
    pub min: u16,
    /// Maximum delay (10 ms units, 0..=4095).
    pub max: u16,
}

/// Absolute capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsCaptureTime {
    /// Capture time as a 64-bit NTP timestamp (UQ32.32 seconds since 1900).
    pub timestamp: u64,
    /// Estimated offset of the capturer's clock (Q32.32 seconds), when present.
    pub clock_offset: Option<i64>,
}

/// Typed header extension values. Parsing borrows strings from the packet.
///
/// Values of known extensions with the wrong length (or non-UTF-8 strings) are
/// ignored like unknown ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionValues<'a> {
    /// Transport-wide sequence number.
    pub transport_cc: Option<u16>,
    /// Absolute send time (24 bits, 6.18 fixed-point seconds).
    pub abs_send_time: Option<u32>,
    /// Media id.
    pub mid: Option<&'a str>,
    /// RTP stream id.
    pub rid: Option<&'a str>,
    /// Repaired RTP stream id.
    pub repaired_rid: Option<&'a str>,
    /// Audio level.
    pub audio_level: Option<AudioLevel>,
    /// Video orientation.
    pub video_orientation: Option<VideoOrientation>,
    /// Playout delay.
    pub playout_delay: Option<PlayoutDelay>,
    /// Absolute capture time.
    pub abs_capture_time: Option<AbsCaptureTime>,
    /// AV1 dependency descriptor, opaque (1..=255 bytes).
    pub dependency_descriptor: Option<&'a [u8]>,
}

/// Largest encoded value (abs-capture-time with offset).
const MAX_FIXED_VALUE: usize = 16;

enum Encoded<'a> {
    Fixed([u8; MAX_FIXED_VALUE], usize),
    Str(&'a [u8]),
}

impl Encoded<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Encoded::Fixed(b, n) => &b[..*n],
            Encoded::Str(s) => s,
        }
    }
}

fn fixed(src: &[u8]) -> Encoded<'static> {
    let mut b = [0u8; MAX_FIXED_VALUE];
    let n = src.len().min(MAX_FIXED_VALUE);
    b[..n].copy_from_slice(&src[..n]);
    Encoded::Fixed(b, n)
}

impl<'a> ExtensionValues<'a> {
    /// Parses an extension block (`data` is what follows the profile/length word).
    ///
    /// Profile `0xBEDE` is the one-byte form, `0x100x` the two-byte form; any other
    /// profile yields empty values. Errors only when an element overruns the block.
    ///
    /// # Errors
    ///
    /// [`RtpError::ExtensionOverrun`] when an element runs past the end of the block.
    pub fn parse(
        profile: u16,
        data: &'a [u8],
        map: &ExtensionMap,
    ) -> Result<ExtensionValues<'a>, RtpError> {
        let mut v = ExtensionValues::default();
        let two_byte = if profile == ONE_BYTE_PROFILE {
            false
        } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
            true
        } else {
            return Ok(v);
        };
        let mut at = 0;
        while let Some(&b) = data.get(at) {
            if b == 0 {
                at += 1; // padding
                continue;
            }
            let (id, len, hdr) = if two_byte {
                let len = *data.get(at + 1).ok_or(RtpError::ExtensionOverrun)?;
                (b, usize::from(len), 2)
            } else {
                let id = b >> 4;
                if id == 15 {
                    break; // RFC 8285 §4.2: reserved, stop processing.
                }
                (id, usize::from(b & 0x0f) + 1, 1)
            };
            let value = data
                .get(at + hdr..at + hdr + len)
                .ok_or(RtpError::ExtensionOverrun)?;
            at += hdr + len;
            if let Some(ext) = map.get(id) {
                v.set_from_bytes(ext, value);
            }
        }
        Ok(v)
    }

    fn set_from_bytes(&mut self, ext: Extension, b: &'a [u8]) {
        match (ext, b) {
            (Extension::TransportSequenceNumber, &[x, y]) => {
                self.transport_cc = Some(u16::from_be_bytes([x, y]));
            }
            (Extension::AbsSendTime, &[x, y, z]) => {
                self.abs_send_time = Some(u32::from_be_bytes([0, x, y, z]));
            }
            (Extension::Mid, s) => self.mid = std::str::from_utf8(s).ok(),
            (Extension::RtpStreamId, s) => self.rid = std::str::from_utf8(s).ok(),
            (Extension::DependencyDescriptor, s) if !s.is_empty() => {
                self.dependency_descriptor = Some(s);
            }
            (Extension::RepairedRtpStreamId, s) => {
                self.repaired_rid = std::str::from_utf8(s).ok();
            }
            (Extension::AudioLevel, &[x]) => {
                self.audio_level = Some(AudioLevel {
                    voice: x & 0x80 != 0,
                    level: x & 0x7f,
                });
            }
            (Extension::VideoOrientation, &[x]) => {
                self.video_orientation = Some(VideoOrientation {
                    back_camera: x & 0x08 != 0,
                    flip: x & 0x04 != 0,
                    rotation: x & 0x03,
                });
            }
            (Extension::PlayoutDelay, &[x, y, z]) => {
                self.playout_delay = Some(PlayoutDelay {
                    min: (u16::from(x) << 4) | u16::from(y >> 4),
                    max: (u16::from(y & 0x0f) << 8) | u16::from(z),
                });
            }
            (Extension::AbsCaptureTime, b) if b.len() == 8 || b.len() == 16 => {
                let mut t = [0u8; 8];
                t.copy_from_slice(&b[..8]);
                let clock_offset = b.get(8..16).map(|o| {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(o);
                    i64::from_be_bytes(x)
                });
                self.abs_capture_time = Some(AbsCaptureTime {
                    timestamp: u64::from_be_bytes(t),
                    clock_offset,
                });
            }
            _ => {}
        }
    }

    fn encoded(&self, ext: Extension) -> Option<Encoded<'a>> {
        Some(match ext {
            Extension::TransportSequenceNumber => fixed(&self.transport_cc?.to_be_bytes()),
            Extension::AbsSendTime => fixed(&self.abs_send_time?.to_be_bytes()[1..]),
            Extension::Mid => Encoded::Str(self.mid?.as_bytes()),
            Extension::RtpStreamId => Encoded::Str(self.rid?.as_bytes()),
            Extension::RepairedRtpStreamId => Encoded::Str(self.repaired_rid?.as_bytes()),
            Extension::DependencyDescriptor => Encoded::Str(self.dependency_descriptor?),
            Extension::AudioLevel => {
                let a = self.audio_level?;
                fixed(&[(u8::from(a.voice) << 7) | (a.level & 0x7f)])
            }
            Extension::VideoOrientation => {
                let o = self.video_orientation?;
                fixed(&[(u8::from(o.back_camera) << 3)
                    | (u8::from(o.flip) << 2)
                    | (o.rotation & 0x03)])
            }
            Extension::PlayoutDelay => {
                let p = self.playout_delay?;
                let (min, max) = (p.min & 0x0fff, p.max & 0x0fff);
                fixed(&[
                    (min >> 4) as u8,
                    (((min & 0x0f) << 4) as u8) | ((max >> 8) as u8),
                    max as u8,
                ])
            }
            Extension::AbsCaptureTime => {
                let a = self.abs_capture_time?;
                let mut b = [0u8; MAX_FIXED_VALUE];
                b[..8].copy_from_slice(&a.timestamp.to_be_bytes());
                match a.clock_offset {
                    Some(o) => {
                        b[8..].copy_from_slice(&o.to_be_bytes());
                        Encoded::Fixed(b, 16)
                    }
                    None => Encoded::Fixed(b, 8),
                }
            }
        })
    }

    /// Writes the complete extension block (profile, length word, elements, zero
    /// padding to a 4-byte boundary) for every value whose extension has an id in
    /// `map`. Uses the one-byte form when all such ids are ≤ 14 and all lengths are
    /// 1..=16, else the two-byte form. Returns 0 (writing nothing) when no value is
    /// mapped.
    ///
    /// # Errors
    ///
    /// [`RtpError::ExtensionTooLong`] when a value is too long even for the two-byte
    /// form; [`RtpError::BufferTooSmall`] when `buf` cannot hold the block.
    pub fn write_block(&self, map: &ExtensionMap, buf: &mut [u8]) -> Result<usize, RtpError> {
        // One pass in the one-byte form, which nearly every block fits; a second in the
        // two-byte form only when a value turns out not to fit it.
        match self.write_elements(map, buf, true)? {
            Some(n) => Ok(n),
            None => self
                .write_elements(map, buf, false)?
                .ok_or(RtpError::ExtensionTooLong),
        }
    }

    /// [`ExtensionValues::write_block`] in one form: `None` (some bytes written) when a
    /// mapped value does not fit the one-byte form.
    fn write_elements(
        &self,
        map: &ExtensionMap,
        buf: &mut [u8],
        one_byte: bool,
    ) -> Result<Option<usize>, RtpError> {
        let mut at = 4;
        for ext in ALL_EXTENSIONS {
            let (Some(id), Some(enc)) = (map.id_of(ext), self.encoded(ext)) else {
                continue;
            };
            let b = enc.bytes();
            if b.len() > 255 {
                return Err(RtpError::ExtensionTooLong);
            }
            if one_byte {
                if id > 14 || b.is_empty() || b.len() > 16 {
                    return Ok(None);
                }
                let out = buf
                    .get_mut(at..at + 1 + b.len())
                    .ok_or(RtpError::BufferTooSmall)?;
                // b.len() is 1..=16 here.
                out[0] = (id << 4) | ((b.len() - 1) as u8);
                out[1..].copy_from_slice(b);
                at += 1 + b.len();
            } else {
                let out = buf
                    .get_mut(at..at + 2 + b.len())
                    .ok_or(RtpError::BufferTooSmall)?;
                out[0] = id;
                out[1] = b.len() as u8; // checked ≤ 255 above
                out[2..].copy_from_slice(b);
                at += 2 + b.len();
            }
        }
        if at == 4 {
            // No value is mapped: no block.
            return Ok(Some(0));
        }
        let padded = at.div_ceil(4) * 4;
        let words = (padded - 4) / 4;
        let words = u16::try_from(words).map_err(|_| RtpError::ExtensionTooLong)?;
        let tail = buf.get_mut(at..padded).ok_or(RtpError::BufferTooSmall)?;
        tail.fill(0);
        let profile = if one_byte {
            ONE_BYTE_PROFILE
        } else {
            TWO_BYTE_PROFILE
        };
        let head = buf.get_mut(..4).ok_or(RtpError::BufferTooSmall)?;
        head[..2].copy_from_slice(&profile.to_be_bytes());
        head[2..].copy_from_slice(&words.to_be_bytes());
        Ok(Some(padded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uris_round_trip() {
        for e in Extension::ALL {
            assert_eq!(Extension::from_uri(e.uri()), Some(e));
        }
        assert_eq!(
            Extension::from_uri("urn:ietf:params:rtp-hdrext:sdes:mid"),
            Some(Extension::Mid)
        );
        assert_eq!(
            Extension::from_uri("urn:ietf:params:rtp-hdrext:toffset"),
            None
        );
    }

    #[test]
    fn map_set_get_remove() {
        let mut m = ExtensionMap::default();
        assert_eq!(m.get(3), Some(Extension::TransportSequenceNumber));
        assert_eq!(m.id_of(Extension::Mid), Some(4));
        assert!(!m.set(0, Extension::Mid));
        assert!(m.set(200, Extension::Mid));
        assert_eq!(m.get(4), None);
        assert_eq!(m.get(200), Some(Extension::Mid));
        assert!(m.set(200, Extension::RtpStreamId)); // replaces
        assert_eq!(m.id_of(Extension::Mid), None);
        assert_eq!(m.id_of(Extension::RtpStreamId), Some(200));
        assert_eq!(m.get(10), None);
        assert_eq!(m.remove(200), Some(Extension::RtpStreamId));
        assert_eq!(m.id_of(Extension::RtpStreamId), None);
        assert_eq!(m.iter().count(), 7);
    }

    /// The map as it was before it was made compact: a table over all 256 ids.
    struct ModelMap {
        by_id: [Option<Extension>; 256],
        by_ext: [u8; 10],
    }

    impl ModelMap {
        fn set(&mut self, id: u8, ext: Extension) -> bool {
            if id == 0 {
                return false;
            }
            self.remove(id);
            let old = self.by_ext[ext.index()];
            if old != 0 {
                self.by_id[usize::from(old)] = None;
            }
            self.by_id[usize::from(id)] = Some(ext);
            self.by_ext[ext.index()] = id;
            true
        }

        fn remove(&mut self, id: u8) -> Option<Extension> {
            let e = self.by_id[usize::from(id)].take()?;
            self.by_ext[e.index()] = 0;
            Some(e)
        }
    }

    proptest! {
        /// Any sequence of assignments and removals leaves the compact map answering
        /// like the full table did, in both directions and in iteration order; and
        /// two maps with the same assignments compare equal however they got there.
        #[test]
        fn compact_map_matches_the_full_table(
            ops in proptest::collection::vec((any::<bool>(), any::<u8>(), 0usize..10), 0..40)
        ) {
            let mut m = ExtensionMap::empty();
            let mut model = ModelMap { by_id: [None; 256], by_ext: [0; 10] };
            for (set, id, e) in ops {
                // Ids concentrate where both representations meet (15/16) half the time.
                let id = if id % 2 == 0 { id % 20 } else { id };
                let ext = Extension::ALL[e];
                if set {
                    prop_assert_eq!(m.set(id, ext), model.set(id, ext));
                } else {
                    prop_assert_eq!(m.remove(id), model.remove(id));
                }
            }
            for id in 0..=255u8 {
                prop_assert_eq!(m.get(id), model.by_id[usize::from(id)]);
            }
            for ext in Extension::ALL {
                let want = match model.by_ext[ext.index()] {
                    0 => None,
                    id => Some(id),
                };
                prop_assert_eq!(m.id_of(ext), want);
            }
            let want: Vec<_> = model
                .by_id
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((u8::try_from(i).ok()?, (*e)?)))
                .collect();
            prop_assert_eq!(m.iter().collect::<Vec<_>>(), want.clone());
            let mut rebuilt = ExtensionMap::empty();
            for (id, e) in want {
                rebuilt.set(id, e);
            }
            prop_assert_eq!(rebuilt, m);
        }
    }

    #[test]
    fn map_is_small() {
        // Held per media section, per engine section table entry and per forwarded leg.
        assert!(std::mem::size_of::<ExtensionMap>() <= 32);
    }

    #[test]
    fn parse_one_byte_example() {
        // RFC 8285 §4.2 shape: id1 len1, id2 len2 + padding; plus id 15 terminator.
        let map = ExtensionMap::default();
        let data = [
            0x31, 0x12, 0x34, // twcc (id 3, len 2) = 0x1234
            0x22, 1, 2, 3,    // abs-send-time (id 2, len 3)
            0x00, // padding
            0x41, b'a', b'b', // mid "ab"
            0xf0, 0x11, 0x22, // id 15: stop
            0x10, 0x05, // would be audio level, but ignored after id 15
        ];
        let v = ExtensionValues::parse(ONE_BYTE_PROFILE, &data, &map).unwrap();
        assert_eq!(v.transport_cc, Some(0x1234));
        assert_eq!(v.abs_send_time, Some(0x010203));
        assert_eq!(v.mid, Some("ab"));
        assert_eq!(v.audio_level, None);
    }

    #[test]
    fn parse_two_byte_and_unknown() {
        let mut map = ExtensionMap::empty();
        map.set(20, Extension::RtpStreamId);
        let data = [
            20, 3, b'h', b'i', b'!', // rid
            0,    // padding
            99, 2, 1, 1, // unknown id 99 skipped
            21, 0, // zero-length unknown
            0, 0,
        ];
        let v = ExtensionValues::parse(0x1003, &data, &map).unwrap();
        assert_eq!(v.rid, Some("hi!"));
        assert_eq!(
            ExtensionValues::parse(0x1234, &data, &map).unwrap(),
            ExtensionValues::default()
        );
        assert_eq!(
            ExtensionValues::parse(0x1000, &[20, 9, 1], &map),
            Err(RtpError::ExtensionOverrun)
        );
        assert_eq!(
            ExtensionValues::parse(0x1000, &[20], &map),
            Err(RtpError::ExtensionOverrun)
        );
        assert_eq!(
            ExtensionValues::parse(ONE_BYTE_PROFILE, &[0x13, 0], &map),
            Err(RtpError::ExtensionOverrun)
        );
    }

    #[test]
    fn chooses_form() {
        let map = ExtensionMap::default();
        let v = ExtensionValues {
            transport_cc: Some(7),
            mid: Some("0"),
            ..Default::default()
        };
        let mut buf = [0u8; 64];
        let n = v.write_block(&map, &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[0xbe, 0xde, 0, 2, 0x31, 0, 7, 0x40, b'0', 0, 0, 0]
        );
        // A 17-byte rid forces the two-byte form.
        let v = ExtensionValues {
            rid: Some("abcdefghijklmnopq"),
            ..Default::default()
        };
        let n = v.write_block(&map, &mut buf).unwrap();
        assert_eq!(&buf[..4], &[0x10, 0x00, 0, 5]);
        assert_eq!(&buf[4..6], &[10, 17]);
        assert_eq!(n, 24);
        assert_eq!(
            ExtensionValues::default().write_block(&map, &mut buf),
            Ok(0)
        );
        assert_eq!(
            v.write_block(&map, &mut buf[..10]),
            Err(RtpError::BufferTooSmall)
        );
    }

    fn values_strategy(max_str: usize) -> impl Strategy<Value = (ExtensionValuesOwned,)> {
        let s = || {
            // The pattern is a constant shape; it always compiles.
            proptest::string::string_regex(&format!("[a-zA-Z0-9]{{1,{max_str}}}")).expect("regex")
        };
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u32..(1 << 24)),
            proptest::option::of(s()),
            proptest::option::of(s()),
            proptest::option::of(s()),
            proptest::option::of((any::<bool>(), 0u8..128)),
            proptest::option::of((any::<bool>(), any::<bool>(), 0u8..4)),
            proptest::option::of((0u16..4096, 0u16..4096)),
            proptest::option::of((any::<u64>(), proptest::option::of(any::<i64>()))),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=max_str)),
        )
            .prop_map(|t| (ExtensionValuesOwned(t),))
    }

    #[derive(Debug, Clone)]
    #[allow(clippy::type_complexity)]
    struct ExtensionValuesOwned(
        (
            Option<u16>,
            Option<u32>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<(bool, u8)>,
            Option<(bool, bool, u8)>,
            Option<(u16, u16)>,
            Option<(u64, Option<i64>)>,
            Option<Vec<u8>>,
        ),
    );

    impl ExtensionValuesOwned {
        fn view(&self) -> ExtensionValues<'_> {
            let t = &self.0;
            ExtensionValues {
                transport_cc: t.0,
                abs_send_time: t.1,
                mid: t.2.as_deref(),
                rid: t.3.as_deref(),
                repaired_rid: t.4.as_deref(),
                audio_level: t.5.map(|(voice, level)| AudioLevel { voice, level }),
                video_orientation: t.6.map(|(back_camera, flip, rotation)| VideoOrientation {
                    back_camera,
                    flip,
                    rotation,
                }),
                playout_delay: t.7.map(|(min, max)| PlayoutDelay { min, max }),
                abs_capture_time: t.8.map(|(timestamp, clock_offset)| AbsCaptureTime {
                    timestamp,
                    clock_offset,
                }),
                dependency_descriptor: t.9.as_deref(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn one_byte_round_trip((v,) in values_strategy(16)) {
            let mut map = ExtensionMap::default();
            // The dependency descriptor has no default id.
            map.set(8, Extension::DependencyDescriptor);
            let vals = v.view();
            let mut buf = [0u8; 256];
            let n = vals.write_block(&map, &mut buf).unwrap();
            prop_assert_eq!(n % 4, 0);
            if n == 0 {
                prop_assert_eq!(vals, ExtensionValues::default());
            } else {
                prop_assert_eq!(&buf[..2], &[0xbe, 0xde]);
                let back = ExtensionValues::parse(ONE_BYTE_PROFILE, &buf[4..n], &map).unwrap();
                prop_assert_eq!(back, vals);
            }
        }

        #[test]
        fn two_byte_round_trip((v,) in values_strategy(100), base in 15u8..=246) {
            let mut map = ExtensionMap::empty();
            for (i, e) in Extension::ALL.into_iter().enumerate() {
                map.set(base + i as u8, e);
            }
            let vals = v.view();
            let mut buf = [0u8; 1024];
            let n = vals.write_block(&map, &mut buf).unwrap();
            if n > 0 {
                prop_assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), TWO_BYTE_PROFILE);
                prop_assert_eq!(usize::from(u16::from_be_bytes([buf[2], buf[3]])) * 4, n - 4);
                let back = ExtensionValues::parse(TWO_BYTE_PROFILE, &buf[4..n], &map).unwrap();
                prop_assert_eq!(back, vals);
            }
        }

        #[test]
        fn parse_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), two: bool) {
            let map = ExtensionMap::default();
            let _ = ExtensionValues::parse(if two { 0x1000 } else { 0xbede }, &data, &map);
        }
    }
}
