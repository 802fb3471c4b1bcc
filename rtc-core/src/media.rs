//! Media identifiers and descriptions shared by the SDP and direct APIs: the media
//! section id [`Mid`], the [`MediaKind`] of a section, the [`Codec`] of a payload type and
//! the [`MediaInfo`] negotiated for a section.

use std::fmt;

/// The 128 ASCII characters in order: a one-character ASCII string is a slice of it.
const ASCII: &str = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\
     \x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\
     \x20\x21\x22\x23\x24\x25\x26\x27\x28\x29\x2a\x2b\x2c\x2d\x2e\x2f\
     \x30\x31\x32\x33\x34\x35\x36\x37\x38\x39\x3a\x3b\x3c\x3d\x3e\x3f\
     \x40\x41\x42\x43\x44\x45\x46\x47\x48\x49\x4a\x4b\x4c\x4d\x4e\x4f\
     \x50\x51\x52\x53\x54\x55\x56\x57\x58\x59\x5a\x5b\x5c\x5d\x5e\x5f\
     \x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f\
     \x70\x71\x72\x73\x74\x75\x76\x77\x78\x79\x7a\x7b\x7c\x7d\x7e\x7f";

/// `bytes` (ASCII, as `Mid` and `Rid` hold) as a `str`. The usual one-character ids
/// ("0", "1", "q") are sliced out of [`ASCII`] without a UTF-8 validation, which
/// `RtpHeader`s written per forwarded packet would otherwise pay for their mid.
fn ascii_str(bytes: &[u8]) -> &str {
    if let [b] = bytes
        && let Some(s) = ASCII.get(usize::from(*b)..usize::from(*b) + 1)
    {
        return s;
    }
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Identifier of a media section (SDP `a=mid`), at most 16 ASCII bytes, `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mid {
    bytes: [u8; 16],
    len: u8,
}

impl Mid {
    /// The longest mid we accept (RFC 8843 recommends short tokens; browsers use 1–3 chars).
    pub const MAX_LEN: usize = 16;

    /// Creates a mid from a string; `None` when empty, longer than 16 bytes or not
    /// made of RFC 8866 token characters.
    pub fn new(s: &str) -> Option<Mid> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_LEN {
            return None;
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(c))
        {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(Mid {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The mid as a string slice.
    pub fn as_str(&self) -> &str {
        // Constructed only from validated ASCII in `new`.
        ascii_str(&self.bytes[..self.len as usize])
    }
}

impl fmt::Display for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mid({})", self.as_str())
    }
}

/// Identifier of one simulcast layer (RFC 8851 `a=rid`, RFC 8852 `rtp-stream-id`
/// header extension), at most 16 bytes of letters, digits, `-` and `_`; `Copy`.
///
/// Not to be confused with [`crate::sdp::Rid`], the whole `a=rid` attribute.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rid {
    bytes: [u8; 16],
    len: u8,
}

impl Rid {
    /// The longest RID we accept (browsers use 1–3 characters, such as `q`, `h`, `f`).
    pub const MAX_LEN: usize = 16;

    /// Creates a RID from a string; `None` when empty, longer than 16 bytes or not
    /// made of RFC 8851 `rid-id` characters (ASCII letters, digits, `-`, `_`).
    pub fn new(s: &str) -> Option<Rid> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_LEN {
            return None;
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(Rid {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The RID as a string slice.
    pub fn as_str(&self) -> &str {
        // Constructed only from validated ASCII in `new`.
        ascii_str(&self.bytes[..self.len as usize])
    }
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rid({})", self.as_str())
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl MediaKind {
    /// The SDP media type token.
    pub fn as_str(&self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    /// The kind for an SDP media type token (`audio`, `video`); `None` for any other.
    pub fn from_name(s: &str) -> Option<MediaKind> {
        match s {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The encoding of an RTP payload type: the name of an `a=rtpmap` line (matched
/// case-insensitively), the codec of a received frame ([`crate::event::MediaData`]) and
/// the key for the payloaders of frame mode.
///
/// Opus, VP8, VP9, H.264 and AV1 can be packetized and depacketized
/// ([`Codec::can_packetize`]); the other variants are only negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus (RFC 7587).
    Opus,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184).
    H264,
    /// AV1.
    Av1,
    /// Retransmission (RFC 4588).
    Rtx,
    /// Redundant coding (RFC 2198).
    Red,
    /// ULP FEC (RFC 5109).
    Ulpfec,
    /// FlexFEC (RFC 8627; browsers use the name `flexfec-03`).
    Flexfec,
    /// DTMF events (RFC 4733).
    TelephoneEvent,
    /// G.722.
    G722,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Any other encoding name, verbatim.
    Other(String),
}

impl Codec {
    /// Maps an encoding name to a codec (case-insensitive).
    pub fn from_name(name: &str) -> Codec {
        const KNOWN: [(&str, Codec); 14] = [
            ("opus", Codec::Opus),
            ("vp8", Codec::Vp8),
            ("vp9", Codec::Vp9),
            ("h264", Codec::H264),
            ("av1", Codec::Av1),
            ("rtx", Codec::Rtx),
            ("red", Codec::Red),
            ("ulpfec", Codec::Ulpfec),
            ("flexfec-03", Codec::Flexfec),
            ("flexfec", Codec::Flexfec),
            ("telephone-event", Codec::TelephoneEvent),
            ("g722", Codec::G722),
            ("pcmu", Codec::Pcmu),
            ("pcma", Codec::Pcma),
        ];
        KNOWN
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, c)| c)
            .unwrap_or_else(|| Codec::Other(name.to_owned()))
    }

    /// The encoding name as browsers write it.
    pub fn name(&self) -> &str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::H264 => "H264",
            Codec::Av1 => "AV1",
            Codec::Rtx => "rtx",
            Codec::Red => "red",
            Codec::Ulpfec => "ulpfec",
            Codec::Flexfec => "flexfec-03",
            Codec::TelephoneEvent => "telephone-event",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Other(s) => s,
        }
    }

    /// Same encoding (unknown names compared case-insensitively).
    pub fn same_as(&self, other: &Codec) -> bool {
        match (self, other) {
            (Codec::Other(a), Codec::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }

    /// Whether this is a repair/redundancy format rather than a media codec
    /// (RTX, RED, ULPFEC, FlexFEC).
    pub fn is_repair(&self) -> bool {
        matches!(
            self,
            Codec::Rtx | Codec::Red | Codec::Ulpfec | Codec::Flexfec
        )
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What was negotiated (or declared) for one media section.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// Its mid.
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
    /// Our direction (what we may do).
    pub direction: crate::sdp::Direction,
    /// Negotiated payload types, in preference order (RTX entries included).
    pub payloads: Vec<crate::sdp::PayloadType>,
    /// `(media pt, rtx pt)` pairs.
    pub rtx: Vec<(u8, u8)>,
    /// The negotiated RTP header extension ids.
    pub extensions: crate::rtp::ExtensionMap,
    /// SSRCs the peer announced (or the direct API declared) for this section.
    pub remote_ssrcs: Vec<u32>,
    /// RIDs the peer sends (simulcast).
    pub remote_rids: Vec<String>,
    /// The peer's `(primary, rtx)` SSRC pairs (`ssrc-group:FID`).
    pub remote_rtx: Vec<(u32, u32)>,
}

impl MediaInfo {
    /// A section with no negotiated codecs (direct API).
    pub fn new(mid: Mid, kind: MediaKind) -> Self {
        MediaInfo {
            mid,
            kind,
            direction: crate::sdp::Direction::SendRecv,
            payloads: Vec::new(),
            rtx: Vec::new(),
            extensions: crate::rtp::ExtensionMap::default(),
            remote_ssrcs: Vec::new(),
            remote_rids: Vec::new(),
            remote_rtx: Vec::new(),
        }
    }

    /// The payload type negotiated for a codec (the first match).
    pub fn pt_for(&self, codec: &Codec) -> Option<u8> {
        self.payloads
            .iter()
            .find(|p| p.codec.same_as(codec))
            .map(|p| p.pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_kind_names() {
        for k in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(MediaKind::from_name(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(MediaKind::from_name("application"), None);
        assert_eq!(MediaKind::from_name("Audio"), None);
    }

    #[test]
    fn codec_names() {
        assert_eq!(Codec::from_name("vp8"), Codec::Vp8);
        assert_eq!(Codec::from_name("flexfec-03"), Codec::Flexfec);
        assert_eq!(Codec::from_name("CN"), Codec::Other("CN".into()));
        assert!(Codec::from_name("cn").same_as(&Codec::Other("CN".into())));
        assert_eq!(Codec::H264.to_string(), "H264");
        assert!(Codec::Rtx.is_repair() && !Codec::Opus.is_repair());
    }

    #[test]
    fn rid_validation() {
        assert_eq!(Rid::new("q").unwrap().as_str(), "q");
        assert_eq!(Rid::new("hi_res-2").unwrap().to_string(), "hi_res-2");
        assert!(Rid::new("").is_none());
        assert!(Rid::new("a.b").is_none());
        assert!(Rid::new("01234567890123456").is_none());
        assert_eq!(format!("{:?}", Rid::new("f").unwrap()), "Rid(f)");
    }

    #[test]
    fn ids_read_back_as_written() {
        assert_eq!(ASCII.len(), 128);
        for (i, c) in ASCII.bytes().enumerate() {
            assert_eq!(usize::from(c), i);
        }
        for s in ["0", "9", "q", "~", "12", "video-1", "abcdefghijklmnop"] {
            assert_eq!(
                Mid::new(s).map(|m| m.as_str().to_string()),
                Some(s.to_string())
            );
        }
        for s in ["q", "h", "f", "hi-1", "a_b"] {
            assert_eq!(
                Rid::new(s).map(|r| r.as_str().to_string()),
                Some(s.to_string())
            );
        }
    }

    #[test]
    fn mid_validation() {
        assert_eq!(Mid::new("0").unwrap().as_str(), "0");
        assert_eq!(Mid::new("video-1").unwrap().to_string(), "video-1");
        assert!(Mid::new("").is_none());
        assert!(Mid::new("01234567890123456").is_none());
        assert!(Mid::new("a b").is_none());
        assert!(Mid::new("ü").is_none());
        assert_eq!(Mid::new("0123456789012345").unwrap().as_str().len(), 16);
    }
}
