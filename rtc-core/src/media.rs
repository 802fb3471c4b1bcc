//! Media identifiers and descriptions shared by the SDP and direct APIs.

use std::fmt;

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
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
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
    pub fn pt_for(&self, codec: &crate::sdp::Codec) -> Option<u8> {
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
