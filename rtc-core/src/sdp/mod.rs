//! Session Description Protocol (RFC 8866) as used by WebRTC (JSEP, RFC 9429).
//!
//! [`SessionDescription::parse`] turns SDP text into an owned model;
//! [`SessionDescription::to_sdp`] (or `Display`) writes it back as CRLF-terminated text.
//! Attributes WebRTC needs are typed (ICE credentials, DTLS fingerprint and setup role,
//! BUNDLE groups, RTP payload types with their `rtpmap`/`fmtp`/`rtcp-fb`, header extensions,
//! RID/simulcast, SSRC lines, SCTP parameters); every other attribute is kept verbatim, in
//! order, in an `unknown` list so that nothing is lost on a round trip.
//!
//! SDP is exchanged once per negotiation, not per packet, so the model owns its strings.
//!
//! Codec identity is the crate-wide [`Codec`]; its `fmtp` parameters
//! ([`FormatParams`]) and the matching rules of offer/answer ([`codec_matches`]) are
//! here. An `m=` section's media type is a [`SectionKind`]: audio or video (a
//! [`MediaKind`]), data channels, or an unknown token.

pub(crate) mod codec;
mod fragment;
// A few helpers serve only the tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod jsep;
mod parse;
mod write;

#[cfg(test)]
mod tests;

pub use crate::media::{Codec, MediaKind};
pub use codec::{FormatParams, H264Profile, ProfileLevelId, ProfileLevelIdError, codec_matches};
pub use fragment::{
    FragmentError, FragmentErrorKind, FragmentMedia, IceFragment, MAX_FRAGMENT_LEN,
    TRICKLE_ICE_SDPFRAG,
};
pub use jsep::OpusRed;

/// Why a session description could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {reason} (line: {text:?})")]
#[non_exhaustive]
pub struct SdpError {
    /// 1-based line number of the offending line (one past the last line when a required
    /// line is missing at the end of the input).
    pub line: usize,
    /// The offending line as it appeared in the input (without the line terminator),
    /// empty when the problem is a missing line at the end of the input.
    pub text: String,
    /// What is wrong with it.
    pub reason: SdpErrorKind,
}

/// The reason part of an [`SdpError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// The input holds no SDP lines at all.
    #[error("empty session description")]
    Empty,
    /// The line is not of the form `<letter>=<value>`.
    #[error("line is not of the form <type>=<value>")]
    NotTypeValue,
    /// The line type letter is not one RFC 8866 defines.
    #[error("unknown line type '{0}'")]
    UnknownLineType(char),
    /// A line appears where the grammar does not allow it (e.g. `o=` not second).
    #[error("expected a '{expected}=' line here")]
    UnexpectedLine {
        /// The line type that was required at this position.
        expected: char,
    },
    /// A required line (`t=`) never appeared before the media sections / end of input.
    #[error("missing required '{0}=' line")]
    MissingLine(char),
    /// `v=` holds something other than `0`.
    #[error("unsupported SDP version")]
    BadVersion,
    /// `o=` does not have six fields with numeric session id and version.
    #[error("malformed origin line")]
    BadOrigin,
    /// `c=` does not have three fields.
    #[error("malformed connection line")]
    BadConnection,
    /// `b=` is not `<type>:<number>`.
    #[error("malformed bandwidth line")]
    BadBandwidth,
    /// `t=` is not two numbers.
    #[error("malformed timing line")]
    BadTiming,
    /// `m=` is not `<media> <port>[/<count>] <proto> <fmt>...`.
    #[error("malformed media line")]
    BadMediaLine,
    /// A known attribute whose value does not follow its grammar.
    #[error("malformed a={0} attribute")]
    BadAttribute(&'static str),
}

impl SdpError {
    pub(crate) fn new(line: usize, text: &str, reason: SdpErrorKind) -> Self {
        SdpError {
            line,
            text: text.to_owned(),
            reason,
        }
    }
}

/// Media direction attribute (`a=sendrecv` / `sendonly` / `recvonly` / `inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Send and receive (the default when no direction attribute is present).
    #[default]
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither send nor receive.
    Inactive,
}

impl Direction {
    /// Builds a direction from "may send" / "may receive" flags.
    pub fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether this direction includes sending.
    pub fn can_send(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this direction includes receiving.
    pub fn can_recv(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same direction seen from the other side (sendonly <-> recvonly).
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.can_recv(), self.can_send())
    }

    /// Directions allowed by both `self` and `other`.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.can_send() && other.can_send(),
            self.can_recv() && other.can_recv(),
        )
    }

    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name; `None` when it is not a direction.
    pub fn from_name(s: &str) -> Option<Direction> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// DTLS role attribute `a=setup` (RFC 4145, RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// Either role (offers).
    ActPass,
    /// DTLS client.
    Active,
    /// DTLS server.
    Passive,
    /// Connection on hold.
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::HoldConn => "holdconn",
        }
    }

    /// Parses an attribute value (case-insensitive).
    pub fn from_name(s: &str) -> Option<Setup> {
        [
            Setup::ActPass,
            Setup::Active,
            Setup::Passive,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when none; Firefox puts `mozilla...THIS_IS_SDPARTA-<ver>` here).
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version, incremented on each new offer/answer.
    pub session_version: u64,
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Unicast address of the originator (browsers use `127.0.0.1` / `0.0.0.0`).
    pub unicast_address: String,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            username: "-".into(),
            session_id: 0,
            session_version: 2,
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            unicast_address: "127.0.0.1".into(),
        }
    }
}

/// `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Connection address (may carry `/ttl` or `/count` suffixes, kept verbatim).
    pub address: String,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "0.0.0.0".into(),
        }
    }
}

/// `b=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// Bandwidth type (`AS`, `TIAS`, `CT`, ...).
    pub bwtype: String,
    /// The value (kbit/s for `AS`, bit/s for `TIAS`).
    pub bandwidth: u64,
}

/// `t=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Start time (NTP seconds; 0 = unbounded).
    pub start: u64,
    /// Stop time (NTP seconds; 0 = unbounded).
    pub stop: u64,
}

/// An attribute the model has no typed field for, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name (text before the first `:`).
    pub name: String,
    /// The text after the first `:`, if there was one.
    pub value: Option<String>,
}

/// `a=group:<semantics> <mid>...` (RFC 5888), e.g. BUNDLE (RFC 9143).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Semantics token, e.g. `BUNDLE` or `LS`.
    pub semantics: String,
    /// The identification tags (`mid`s) in the group, in order.
    pub mids: Vec<String>,
}

/// `a=fingerprint:<hash> <bytes>` (RFC 8122).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name, lowercase (`sha-256`).
    pub algorithm: String,
    /// The digest bytes (written as uppercase colon-separated hex).
    pub bytes: Vec<u8>,
}

/// `a=msid-semantic:<semantic> <id>...` (legacy Plan B/Unified Plan marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsidSemantic {
    /// The semantic token (`WMS`).
    pub semantic: String,
    /// Stream ids or `*`.
    pub ids: Vec<String>,
}

/// `a=msid:<stream id> [<track id>]` (RFC 8830).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msid {
    /// MediaStream id (`-` for none).
    pub stream_id: String,
    /// Track id (application data), if present.
    pub track_id: Option<String>,
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]` (RFC 8285).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    /// Local identifier (1..=14 one-byte, 1..=255 two-byte headers).
    pub id: u16,
    /// Optional direction restriction.
    pub direction: Option<Direction>,
    /// Extension URI.
    pub uri: String,
    /// Extension attributes after the URI, verbatim.
    pub attributes: Option<String>,
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttr {
    /// RTCP port.
    pub port: u16,
    /// Optional connection address.
    pub connection: Option<Connection>,
}

/// Direction of a RID (RFC 8851), relative to the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RidDirection {
    /// The writer sends this RTP stream.
    Send,
    /// The writer receives this RTP stream.
    Recv,
}

impl RidDirection {
    /// The opposite direction.
    pub fn reverse(self) -> RidDirection {
        match self {
            RidDirection::Send => RidDirection::Recv,
            RidDirection::Recv => RidDirection::Send,
        }
    }

    /// `send` or `recv`.
    pub fn as_str(self) -> &'static str {
        match self {
            RidDirection::Send => "send",
            RidDirection::Recv => "recv",
        }
    }
}

/// `a=rid:<id> <send|recv> [pt=<fmt>,...;<restriction>=<value>;...]` (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    /// The RID.
    pub id: String,
    /// Send or receive.
    pub direction: RidDirection,
    /// The `pt=` restriction (empty when absent).
    pub payloads: Vec<u8>,
    /// Other restrictions (`max-width=1280`, `depend=...`), in order.
    pub restrictions: Vec<(String, Option<String>)>,
}

/// One RID inside a simulcast stream list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastRid {
    /// The RID.
    pub id: String,
    /// Paused (`~` prefix).
    pub paused: bool,
}

/// `a=simulcast:` (RFC 8853). Each outer entry is one simulcast stream; the inner list
/// holds its alternative RIDs (comma separated in SDP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulcast {
    /// Streams the writer sends.
    pub send: Vec<Vec<SimulcastRid>>,
    /// Streams the writer receives.
    pub recv: Vec<Vec<SimulcastRid>>,
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]` (RFC 5576).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttribute {
    /// The SSRC.
    pub ssrc: u32,
    /// Attribute name (`cname`, `msid`, ...).
    pub attribute: String,
    /// Attribute value, if any.
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...` (RFC 5576), e.g. `FID` (RTX) or `SIM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    /// `FID`, `SIM`, `FEC-FR`, ...
    pub semantics: String,
    /// The SSRCs in order (for FID: primary, then repair).
    pub ssrcs: Vec<u32>,
}

/// One RTP payload type: its `rtpmap`, `fmtp` and `rtcp-fb` lines gathered together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    /// The payload type number (0..=127).
    pub pt: u8,
    /// The encoding.
    pub codec: Codec,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channel count (`/2` in the rtpmap), audio only.
    pub channels: Option<u16>,
    /// The `a=fmtp` parameters.
    pub fmtp: FormatParams,
    /// The `a=rtcp-fb:<pt> ...` values (`nack`, `nack pli`, `ccm fir`, `transport-cc`, ...).
    pub rtcp_fb: Vec<String>,
}

impl PayloadType {
    /// A payload type with no fmtp parameters and no feedback.
    pub fn new(pt: u8, codec: Codec, clock_rate: u32, channels: Option<u16>) -> Self {
        PayloadType {
            pt,
            codec,
            clock_rate,
            channels,
            fmtp: FormatParams::default(),
            rtcp_fb: Vec::new(),
        }
    }
}

/// What an `m=` line carries: its media type token.
///
/// Audio and video are the crate-wide [`MediaKind`]; data channels and unknown tokens
/// exist only in SDP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// `audio` or `video`.
    Media(MediaKind),
    /// `application` (data channels).
    Application,
    /// Anything else, verbatim.
    Other(String),
}

impl SectionKind {
    /// The token written on the `m=` line.
    pub fn as_str(&self) -> &str {
        match self {
            SectionKind::Media(k) => k.as_str(),
            SectionKind::Application => "application",
            SectionKind::Other(s) => s,
        }
    }

    /// Parses an `m=` media token.
    pub fn from_name(s: &str) -> SectionKind {
        match (MediaKind::from_name(s), s) {
            (Some(k), _) => SectionKind::Media(k),
            (None, "application") => SectionKind::Application,
            (None, other) => SectionKind::Other(other.to_owned()),
        }
    }

    /// The media kind of an audio or video section; `None` for the others.
    pub fn media(&self) -> Option<MediaKind> {
        match self {
            SectionKind::Media(k) => Some(*k),
            _ => None,
        }
    }
}

impl From<MediaKind> for SectionKind {
    fn from(kind: MediaKind) -> SectionKind {
        SectionKind::Media(kind)
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// Media type.
    pub kind: SectionKind,
    /// Port; 0 means the section is rejected/disabled (browsers put 9 otherwise).
    pub port: u16,
    /// The `/<count>` after the port, if present.
    pub port_count: Option<u16>,
    /// Transport protocol (`UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, ...).
    pub proto: String,
    /// Format list of the `m=` line (payload type numbers, or `webrtc-datachannel`).
    pub formats: Vec<String>,
    /// `i=` media title.
    pub info: Option<String>,
    /// `c=` line.
    pub connection: Option<Connection>,
    /// `b=` lines.
    pub bandwidth: Vec<Bandwidth>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction attribute, `None` when absent (session level, then sendrecv applies).
    pub direction: Option<Direction>,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize`.
    pub rtcp_rsize: bool,
    /// `a=rtcp:` line.
    pub rtcp: Option<RtcpAttr>,
    /// `a=ice-ufrag` (overrides the session level).
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd` (overrides the session level).
    pub ice_pwd: Option<String>,
    /// `a=ice-options` tokens (overrides the session level).
    pub ice_options: Vec<String>,
    /// `a=fingerprint` lines (override the session level).
    pub fingerprints: Vec<Fingerprint>,
    /// `a=setup` (overrides the session level).
    pub setup: Option<Setup>,
    /// `a=msid` lines.
    pub msids: Vec<Msid>,
    /// `a=extmap-allow-mixed`.
    pub extmap_allow_mixed: bool,
    /// `a=extmap` lines.
    pub extmaps: Vec<ExtMap>,
    /// Payload types with their rtpmap/fmtp/rtcp-fb, in `m=` line order.
    pub payloads: Vec<PayloadType>,
    /// `a=rid` lines.
    pub rids: Vec<Rid>,
    /// `a=simulcast`.
    pub simulcast: Option<Simulcast>,
    /// `a=ssrc-group` lines.
    pub ssrc_groups: Vec<SsrcGroup>,
    /// `a=ssrc` lines.
    pub ssrcs: Vec<SsrcAttribute>,
    /// `a=sctp-port` (RFC 8841).
    pub sctp_port: Option<u16>,
    /// `a=max-message-size` (RFC 8841).
    pub max_message_size: Option<u64>,
    /// `a=candidate` lines, each the full text after `a=` (`candidate:...`).
    pub candidates: Vec<String>,
    /// `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// `a=bundle-only` (RFC 9143).
    pub bundle_only: bool,
    /// All other attributes, in input order.
    pub unknown: Vec<Attribute>,
}

impl MediaSection {
    /// An empty section of the given kind, port and proto (no formats, no attributes).
    pub fn new(kind: SectionKind, port: u16, proto: &str) -> Self {
        MediaSection {
            kind,
            port,
            port_count: None,
            proto: proto.to_owned(),
            formats: Vec::new(),
            info: None,
            connection: None,
            bandwidth: Vec::new(),
            mid: None,
            direction: None,
            rtcp_mux: false,
            rtcp_rsize: false,
            rtcp: None,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: Vec::new(),
            fingerprints: Vec::new(),
            setup: None,
            msids: Vec::new(),
            extmap_allow_mixed: false,
            extmaps: Vec::new(),
            payloads: Vec::new(),
            rids: Vec::new(),
            simulcast: None,
            ssrc_groups: Vec::new(),
            ssrcs: Vec::new(),
            sctp_port: None,
            max_message_size: None,
            candidates: Vec::new(),
            end_of_candidates: false,
            bundle_only: false,
            unknown: Vec::new(),
        }
    }

    /// Whether the section is rejected (port 0) — unless it is `bundle-only`, where port 0
    /// only means "use the BUNDLE transport" (RFC 9143 §7.3).
    pub fn is_rejected(&self) -> bool {
        self.port == 0 && !self.bundle_only
    }

    /// Whether the proto is an RTP profile WebRTC uses (`UDP/TLS/RTP/SAVPF`, `RTP/SAVPF`,
    /// `TCP/DTLS/RTP/SAVPF`).
    pub fn is_rtp(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        p == "UDP/TLS/RTP/SAVPF" || p == "RTP/SAVPF" || p == "TCP/DTLS/RTP/SAVPF"
    }

    /// Whether the proto is SCTP over DTLS (`UDP/DTLS/SCTP`, `TCP/DTLS/SCTP`, legacy
    /// `DTLS/SCTP`).
    pub fn is_sctp(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        p == "UDP/DTLS/SCTP" || p == "TCP/DTLS/SCTP" || p == "DTLS/SCTP"
    }

    /// Replaces the payload list and rewrites the `m=` format list to match.
    pub fn set_payloads(&mut self, payloads: Vec<PayloadType>) {
        self.formats = payloads.iter().map(|p| p.pt.to_string()).collect();
        self.payloads = payloads;
    }

    /// The payload with number `pt`.
    pub fn payload(&self, pt: u8) -> Option<&PayloadType> {
        self.payloads.iter().find(|p| p.pt == pt)
    }

    /// The values of `a=ssrc:<ssrc> <attribute>` lines for the given attribute.
    pub fn ssrc_attribute(&self, ssrc: u32, attribute: &str) -> Option<&str> {
        self.ssrcs
            .iter()
            .find(|s| s.ssrc == ssrc && s.attribute.eq_ignore_ascii_case(attribute))
            .and_then(|s| s.value.as_deref())
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=` (always 0).
    pub version: u32,
    /// `o=`.
    pub origin: Origin,
    /// `s=` (browsers write `-`).
    pub session_name: String,
    /// `i=` session information.
    pub info: Option<String>,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidth: Vec<Bandwidth>,
    /// `t=` (the first one, if several were given).
    pub timing: Timing,
    /// `a=group` lines (BUNDLE, LS).
    pub groups: Vec<Group>,
    /// `a=ice-lite`.
    pub ice_lite: bool,
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=ice-options` tokens (`trickle`, `ice2`, ...).
    pub ice_options: Vec<String>,
    /// Session-level `a=fingerprint` lines.
    pub fingerprints: Vec<Fingerprint>,
    /// Session-level `a=setup`.
    pub setup: Option<Setup>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=msid-semantic`.
    pub msid_semantic: Option<MsidSemantic>,
    /// Session-level `a=extmap-allow-mixed` (RFC 8285).
    pub extmap_allow_mixed: bool,
    /// Other session-level attributes, in input order.
    pub unknown: Vec<Attribute>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaSection>,
}

impl Default for SessionDescription {
    fn default() -> Self {
        SessionDescription {
            version: 0,
            origin: Origin::default(),
            session_name: "-".into(),
            info: None,
            connection: None,
            bandwidth: Vec::new(),
            timing: Timing::default(),
            groups: Vec::new(),
            ice_lite: false,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: Vec::new(),
            fingerprints: Vec::new(),
            setup: None,
            direction: None,
            msid_semantic: None,
            extmap_allow_mixed: false,
            unknown: Vec::new(),
            media: Vec::new(),
        }
    }
}

impl SessionDescription {
    /// Parses SDP text (CRLF or LF line endings; blank lines are skipped).
    pub fn parse(input: &str) -> Result<SessionDescription, SdpError> {
        parse::parse(input)
    }

    /// Writes the description as CRLF-terminated SDP text.
    pub fn to_sdp(&self) -> String {
        self.to_string()
    }

    /// The mids of the first `a=group:BUNDLE` line, if any.
    pub fn bundle_mids(&self) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|g| g.semantics.eq_ignore_ascii_case("BUNDLE"))
            .map(|g| g.mids.as_slice())
    }

    /// The media section with the given mid.
    pub fn media_by_mid(&self, mid: &str) -> Option<&MediaSection> {
        self.media.iter().find(|m| m.mid.as_deref() == Some(mid))
    }

    /// ICE ufrag and password in effect for `media` (media level overrides session level).
    pub fn ice_credentials<'a>(&'a self, media: &'a MediaSection) -> Option<(&'a str, &'a str)> {
        let ufrag = media.ice_ufrag.as_deref().or(self.ice_ufrag.as_deref())?;
        let pwd = media.ice_pwd.as_deref().or(self.ice_pwd.as_deref())?;
        Some((ufrag, pwd))
    }

    /// Fingerprints in effect for `media` (media level overrides session level).
    pub fn fingerprints_for<'a>(&'a self, media: &'a MediaSection) -> &'a [Fingerprint] {
        if media.fingerprints.is_empty() {
            &self.fingerprints
        } else {
            &media.fingerprints
        }
    }

    /// DTLS setup role in effect for `media` (media level overrides session level).
    pub fn setup_for(&self, media: &MediaSection) -> Option<Setup> {
        media.setup.or(self.setup)
    }

    /// Direction in effect for `media` (media, then session, then sendrecv).
    pub fn direction_for(&self, media: &MediaSection) -> Direction {
        media.direction.or(self.direction).unwrap_or_default()
    }
}
