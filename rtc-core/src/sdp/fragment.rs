//! Trickle ICE SDP fragments: the `application/trickle-ice-sdpfrag` body of RFC 8840
//! (§9), as WHIP/WHEP (RFC 9725 §4.3) exchange them in HTTP `PATCH` requests.
//!
//! A fragment carries only ICE data: session-level `a=ice-ufrag`/`a=ice-pwd`/
//! `a=ice-options`/`a=group`, and per media section (an `m=` line with its `a=mid`) the
//! section's credentials, `a=candidate` lines and `a=end-of-candidates`. Attributes a
//! fragment may carry but that mean nothing for ICE are skipped; anything that is not an
//! `a=` or `m=` line is an error.

use std::fmt::{self, Write as _};

use crate::ice::{Candidate, IceError};

use super::Group;

/// The media type of an `application/trickle-ice-sdpfrag` body.
pub const TRICKLE_ICE_SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Longest fragment accepted by [`IceFragment::parse`] (bytes). A fragment holds a few
/// dozen candidates at most; this bounds the work an untrusted body can cause.
pub const MAX_FRAGMENT_LEN: usize = 64 * 1024;

/// Why a trickle ICE fragment could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sdpfrag line {line}: {reason}")]
#[non_exhaustive]
pub struct FragmentError {
    /// 1-based line number (0 when the problem is the body as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: FragmentErrorKind,
}

/// The reason part of a [`FragmentError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentErrorKind {
    /// The body is longer than [`MAX_FRAGMENT_LEN`].
    #[error("fragment longer than {MAX_FRAGMENT_LEN} bytes")]
    TooLong,
    /// The body holds no line at all.
    #[error("empty fragment")]
    Empty,
    /// The line is not of the form `<letter>=<value>`.
    #[error("line is not of the form <type>=<value>")]
    NotTypeValue,
    /// A line type other than `a=` and `m=`.
    #[error("line type '{0}' is not allowed in a fragment")]
    LineType(char),
    /// An `m=` line without media, port, protocol and format.
    #[error("malformed m= line")]
    BadMediaLine,
    /// An ICE attribute without a value, or with characters outside the ice-char set or
    /// a length outside RFC 8839's bounds (ufrag 4..=256, pwd 22..=256).
    #[error("malformed a={0}")]
    BadAttribute(&'static str),
    /// The same attribute twice where one is allowed.
    #[error("duplicate a={0}")]
    Duplicate(&'static str),
    /// A malformed `a=candidate` line.
    #[error("bad candidate: {0}")]
    Candidate(IceError),
}

/// One media section of a fragment: the `m=` line, its `mid` and its ICE attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FragmentMedia {
    /// The `m=` line's value (`audio 9 UDP/TLS/RTP/SAVPF 111`), kept verbatim; RFC 8840
    /// says the receiver identifies the section by `mid`, not by this line.
    pub media_line: String,
    /// `a=mid`.
    pub mid: Option<String>,
    /// `a=ice-ufrag` of the section.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd` of the section.
    pub ice_pwd: Option<String>,
    /// `a=candidate` values, without `a=` (`candidate:1 1 udp ...`), in order. Each is
    /// syntactically valid; mDNS and non-UDP/TCP candidates are kept (the receiver
    /// decides whether it can use them).
    pub candidates: Vec<String>,
    /// `a=end-of-candidates`.
    pub end_of_candidates: bool,
}

/// An `application/trickle-ice-sdpfrag` body (RFC 8840 §9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceFragment {
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// `a=ice-options` tokens.
    pub ice_options: Vec<String>,
    /// `a=ice-lite`.
    pub ice_lite: bool,
    /// `a=group` lines (`BUNDLE`).
    pub groups: Vec<Group>,
    /// The media sections, in order.
    pub media: Vec<FragmentMedia>,
}

fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn ice_token(
    value: Option<&str>,
    name: &'static str,
    min: usize,
) -> Result<String, FragmentErrorKind> {
    let v = value.map(str::trim).unwrap_or("");
    if v.len() < min || v.len() > 256 || !v.bytes().all(is_ice_char) {
        return Err(FragmentErrorKind::BadAttribute(name));
    }
    Ok(v.to_owned())
}

fn set_once(
    slot: &mut Option<String>,
    v: String,
    name: &'static str,
) -> Result<(), FragmentErrorKind> {
    if slot.is_some() {
        return Err(FragmentErrorKind::Duplicate(name));
    }
    *slot = Some(v);
    Ok(())
}

impl IceFragment {
    /// Parses a fragment body. Lines end in CRLF or LF; blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`FragmentError`] naming the line and the reason: a line that is not `a=`/`m=`,
    /// a malformed `m=` line, credentials outside the ice-char grammar, a malformed
    /// candidate, duplicate credentials, an empty or over-long body.
    pub fn parse(text: &str) -> Result<IceFragment, FragmentError> {
        if text.len() > MAX_FRAGMENT_LEN {
            return Err(FragmentError {
                line: 0,
                reason: FragmentErrorKind::TooLong,
            });
        }
        let mut frag = IceFragment::default();
        let mut any = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            any = true;
            frag.parse_line(line).map_err(|reason| FragmentError {
                line: i + 1,
                reason,
            })?;
        }
        if !any {
            return Err(FragmentError {
                line: 0,
                reason: FragmentErrorKind::Empty,
            });
        }
        Ok(frag)
    }

    fn parse_line(&mut self, line: &str) -> Result<(), FragmentErrorKind> {
        let mut chars = line.chars();
        let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
            return Err(FragmentErrorKind::NotTypeValue);
        };
        // `kind` and '=' are whole chars, so this is a char boundary.
        let value = &line[kind.len_utf8() + 1..];
        match kind {
            'm' => {
                let fields: Vec<&str> = value.split_ascii_whitespace().collect();
                if fields.len() < 4
                    || fields[1]
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .is_none()
                {
                    return Err(FragmentErrorKind::BadMediaLine);
                }
                self.media.push(FragmentMedia {
                    media_line: fields.join(" "),
                    ..FragmentMedia::default()
                });
                Ok(())
            }
            'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                self.parse_attribute(name.trim(), val)
            }
            c => Err(FragmentErrorKind::LineType(c)),
        }
    }

    fn parse_attribute(&mut self, name: &str, val: Option<&str>) -> Result<(), FragmentErrorKind> {
        let media = self.media.last_mut();
        match (name, media) {
            ("ice-ufrag", None) => set_once(
                &mut self.ice_ufrag,
                ice_token(val, "ice-ufrag", 4)?,
                "ice-ufrag",
            ),
            ("ice-pwd", None) => {
                set_once(&mut self.ice_pwd, ice_token(val, "ice-pwd", 22)?, "ice-pwd")
            }
            ("ice-ufrag", Some(m)) => set_once(
                &mut m.ice_ufrag,
                ice_token(val, "ice-ufrag", 4)?,
                "ice-ufrag",
            ),
            ("ice-pwd", Some(m)) => {
                set_once(&mut m.ice_pwd, ice_token(val, "ice-pwd", 22)?, "ice-pwd")
            }
            ("ice-options", _) => {
                let v = val.ok_or(FragmentErrorKind::BadAttribute("ice-options"))?;
                self.ice_options
                    .extend(v.split_ascii_whitespace().map(str::to_owned));
                Ok(())
            }
            ("ice-lite", None) => {
                self.ice_lite = true;
                Ok(())
            }
            ("group", None) => {
                let v = val.ok_or(FragmentErrorKind::BadAttribute("group"))?;
                let mut it = v.split_ascii_whitespace();
                let semantics = it.next().ok_or(FragmentErrorKind::BadAttribute("group"))?;
                self.groups.push(Group {
                    semantics: semantics.to_owned(),
                    mids: it.map(str::to_owned).collect(),
                });
                Ok(())
            }
            ("mid", Some(m)) => {
                let v = val
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.len() <= 256)
                    .ok_or(FragmentErrorKind::BadAttribute("mid"))?;
                set_once(&mut m.mid, v.to_owned(), "mid")
            }
            ("candidate", Some(m)) => {
                let v = val.ok_or(FragmentErrorKind::BadAttribute("candidate"))?;
                match Candidate::from_sdp_string(v) {
                    Ok(_) | Err(IceError::Mdns | IceError::UnsupportedTransport) => {}
                    Err(e) => return Err(FragmentErrorKind::Candidate(e)),
                }
                m.candidates.push(format!("candidate:{}", v.trim()));
                Ok(())
            }
            ("candidate", None) => Err(FragmentErrorKind::BadAttribute("candidate")),
            ("end-of-candidates", Some(m)) => {
                m.end_of_candidates = true;
                Ok(())
            }
            // Session-level end-of-candidates applies to every section (RFC 8840 §9).
            ("end-of-candidates", None) => {
                self.media
                    .iter_mut()
                    .for_each(|m| m.end_of_candidates = true);
                Ok(())
            }
            // Other attributes carry nothing for ICE.
            _ => Ok(()),
        }
    }

    /// The credentials the fragment announces: the session-level pair, else the first
    /// media section's. `None` when it carries no (complete) pair.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        if let (Some(u), Some(p)) = (&self.ice_ufrag, &self.ice_pwd) {
            return Some((u, p));
        }
        self.media
            .iter()
            .find_map(|m| match (&m.ice_ufrag, &m.ice_pwd) {
                (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
                _ => None,
            })
    }

    /// Whether the fragment names a ufrag or a password anywhere.
    pub fn has_credentials(&self) -> bool {
        self.ice_ufrag.is_some()
            || self.ice_pwd.is_some()
            || self
                .media
                .iter()
                .any(|m| m.ice_ufrag.is_some() || m.ice_pwd.is_some())
    }

    /// Every candidate of every section, in order.
    pub fn candidates(&self) -> impl Iterator<Item = &str> + '_ {
        self.media
            .iter()
            .flat_map(|m| m.candidates.iter().map(String::as_str))
    }

    /// Whether any section says `a=end-of-candidates`.
    pub fn end_of_candidates(&self) -> bool {
        self.media.iter().any(|m| m.end_of_candidates)
    }

    /// The fragment text (CRLF line endings).
    pub fn to_sdpfrag(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for IceFragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        // Writing to a String cannot fail: the results below are always Ok.
        if self.ice_lite {
            s.push_str("a=ice-lite\r\n");
        }
        if !self.ice_options.is_empty() {
            let _ = write!(s, "a=ice-options:{}\r\n", self.ice_options.join(" "));
        }
        for g in &self.groups {
            let _ = write!(s, "a=group:{}", g.semantics);
            for m in &g.mids {
                let _ = write!(s, " {m}");
            }
            s.push_str("\r\n");
        }
        if let Some(u) = &self.ice_ufrag {
            let _ = write!(s, "a=ice-ufrag:{u}\r\n");
        }
        if let Some(p) = &self.ice_pwd {
            let _ = write!(s, "a=ice-pwd:{p}\r\n");
        }
        for m in &self.media {
            let _ = write!(s, "m={}\r\n", m.media_line);
            if let Some(mid) = &m.mid {
                let _ = write!(s, "a=mid:{mid}\r\n");
            }
            if let Some(u) = &m.ice_ufrag {
                let _ = write!(s, "a=ice-ufrag:{u}\r\n");
            }
            if let Some(p) = &m.ice_pwd {
                let _ = write!(s, "a=ice-pwd:{p}\r\n");
            }
            for c in &m.candidates {
                let _ = write!(s, "a={c}\r\n");
            }
            if m.end_of_candidates {
                s.push_str("a=end-of-candidates\r\n");
            }
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHIP_TRICKLE: &str = "a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\r\n\
a=end-of-candidates\r\n";

    #[test]
    fn parses_the_rfc_9725_trickle_example() {
        let f = IceFragment::parse(WHIP_TRICKLE).unwrap();
        assert_eq!(f.groups[0].mids, ["0", "1"]);
        assert_eq!(f.media.len(), 1);
        let m = &f.media[0];
        assert_eq!(m.media_line, "audio 9 UDP/TLS/RTP/SAVPF 111");
        assert_eq!(m.mid.as_deref(), Some("0"));
        assert_eq!(m.candidates.len(), 3);
        assert!(m.candidates[0].starts_with("candidate:1387637174 1 udp"));
        assert!(m.end_of_candidates);
        assert_eq!(f.credentials(), Some(("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1")));
    }

    #[test]
    fn round_trips_through_text() {
        let f = IceFragment::parse(WHIP_TRICKLE).unwrap();
        let text = f.to_sdpfrag();
        assert_eq!(text, WHIP_TRICKLE);
        assert_eq!(IceFragment::parse(&text).unwrap(), f);
    }

    #[test]
    fn session_level_credentials_and_lf_endings() {
        let f = IceFragment::parse(
            "a=ice-options:trickle ice2\na=ice-ufrag:abcd\na=ice-pwd:0123456789012345678901\n",
        )
        .unwrap();
        assert_eq!(f.ice_options, ["trickle", "ice2"]);
        assert_eq!(f.credentials(), Some(("abcd", "0123456789012345678901")));
        assert!(f.media.is_empty());
        assert!(f.has_credentials());
    }

    #[test]
    fn mdns_candidates_are_kept_for_the_receiver_to_judge() {
        let f = IceFragment::parse(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=candidate:1 1 udp 2122260223 4b6a1c2e-1111-2222-3333-444455556666.local 5000 typ host\r\n",
        )
        .unwrap();
        assert_eq!(f.candidates().count(), 1);
    }

    #[test]
    fn rejects_what_is_not_a_fragment() {
        let kind = |t: &str| IceFragment::parse(t).unwrap_err().reason;
        assert_eq!(kind(""), FragmentErrorKind::Empty);
        assert_eq!(kind("\r\n\r\n"), FragmentErrorKind::Empty);
        assert_eq!(kind("v=0\r\n"), FragmentErrorKind::LineType('v'));
        assert_eq!(kind("hello"), FragmentErrorKind::NotTypeValue);
        assert_eq!(kind("m=audio\r\n"), FragmentErrorKind::BadMediaLine);
        assert_eq!(
            kind("a=ice-ufrag:ab\r\n"),
            FragmentErrorKind::BadAttribute("ice-ufrag")
        );
        assert_eq!(
            kind("a=ice-pwd:short\r\n"),
            FragmentErrorKind::BadAttribute("ice-pwd")
        );
        assert_eq!(
            kind("a=ice-ufrag:abcd\r\na=ice-ufrag:efgh\r\n"),
            FragmentErrorKind::Duplicate("ice-ufrag")
        );
        assert!(matches!(
            kind("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp x 1.2.3.4 5 typ host\r\n"),
            FragmentErrorKind::Candidate(_)
        ));
        assert_eq!(
            kind("a=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n"),
            FragmentErrorKind::BadAttribute("candidate")
        );
        // A multi-byte line type is an error, not a panic.
        assert_eq!(
            kind("\u{20ac}=x\r\n"),
            FragmentErrorKind::LineType('\u{20ac}')
        );
        let long = "a=x\r\n".repeat(MAX_FRAGMENT_LEN / 5 + 1);
        assert_eq!(kind(&long), FragmentErrorKind::TooLong);
        // The error names the line.
        assert_eq!(
            IceFragment::parse("a=ice-options:trickle\r\nb=AS:1\r\n")
                .unwrap_err()
                .line,
            2
        );
    }

    #[test]
    fn unknown_attributes_are_skipped() {
        let f = IceFragment::parse("a=foo:bar\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtcp-mux\r\n")
            .unwrap();
        assert_eq!(f.media.len(), 1);
        assert!(!f.has_credentials());
        assert_eq!(f.credentials(), None);
        // Found by the ice_fragment fuzz target: only meaningless attributes give the
        // empty fragment, which writes no line (and an empty body is refused).
        let empty = IceFragment::parse("a=gro").unwrap();
        assert_eq!(empty, IceFragment::default());
        assert_eq!(empty.to_sdpfrag(), "");
    }
}
