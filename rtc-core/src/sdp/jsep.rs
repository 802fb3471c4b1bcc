//! JSEP (RFC 9429) offer/answer helpers: pure functions over [`MediaSection`]s.
//!
//! The `Rtc` state machine owns the session-level parts (origin, ICE credentials,
//! fingerprint, setup role, BUNDLE group) and uses these helpers per `m=` section:
//!
//! - [`offer_media`] builds one of our offer sections;
//! - [`answer_media`] builds our answer section for a remote offer section (RFC 3264 §6:
//!   codec intersection keeping the offerer's payload type numbers, RTX, feedback,
//!   header extensions, direction, RID/simulcast reversal, rejection with port 0);
//! - [`accept_answer_media`] (we offered) and [`negotiate_from_offer`] (we answered)
//!   reduce an offer/answer pair to the [`NegotiatedMedia`] the `Rtc` keeps per m-line.

use super::{
    Codec, Connection, Direction, ExtMap, FormatParams, Group, MediaKind, MediaSection, Msid,
    PayloadType, ProfileLevelId, Rid, RidDirection, SectionKind, Simulcast, SimulcastRid,
    SsrcAttribute, SsrcGroup, codec::h264_answer_profile_level_id, codec_matches,
};

/// Transport-wide congestion control sequence numbers.
pub const EXT_TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Absolute send time.
pub const EXT_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
/// BUNDLE media identification (RFC 9143).
pub const EXT_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// RTP stream id (RFC 8852).
pub const EXT_RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// Repaired RTP stream id (RFC 8852).
pub const EXT_REPAIRED_RTP_STREAM_ID: &str =
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
/// Client-to-mixer audio level (RFC 6464).
pub const EXT_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Coordination of video orientation (3GPP TS 26.114).
pub const EXT_VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
/// Playout delay limits.
pub const EXT_PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
/// Absolute capture time.
pub const EXT_ABS_CAPTURE_TIME: &str =
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
/// AV1 dependency descriptor (forwarded opaque by an SFU).
pub const EXT_DEPENDENCY_DESCRIPTOR: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// The header extensions we support, with the ids we offer them under. Ids are unique
/// across kinds so that one BUNDLE transport maps every id to a single URI.
const EXTENSIONS: [(u16, &str, bool, bool); 9] = [
    // (id, uri, audio, video)
    (1, EXT_AUDIO_LEVEL, true, false),
    (2, EXT_ABS_SEND_TIME, true, true),
    (3, EXT_TRANSPORT_CC, true, true),
    (4, EXT_MID, true, true),
    (5, EXT_ABS_CAPTURE_TIME, true, true),
    (6, EXT_PLAYOUT_DELAY, false, true),
    (7, EXT_VIDEO_ORIENTATION, false, true),
    (10, EXT_RTP_STREAM_ID, false, true),
    (11, EXT_REPAIRED_RTP_STREAM_ID, false, true),
];

/// The most simulcast layers (RIDs) an answer accepts in each direction: browsers
/// send up to three, and each layer costs receive state.
pub const MAX_SIMULCAST_LAYERS: usize = 3;

/// URIs of every header extension we support (the `extensions` argument of
/// [`answer_media`]).
pub fn supported_extensions() -> Vec<String> {
    EXTENSIONS
        .iter()
        .map(|e| e.1)
        .chain(ANSWERED_ONLY)
        .map(str::to_owned)
        .collect()
}

/// Extensions we accept when offered but do not offer ourselves: the AV1 dependency
/// descriptor, which an SFU forwards opaque from a publisher that offers it.
const ANSWERED_ONLY: [&str; 1] = [EXT_DEPENDENCY_DESCRIPTOR];

/// The `(id, uri)` pairs we offer for a media kind (empty for non-RTP kinds).
pub fn default_extensions(kind: &SectionKind) -> Vec<(u16, String)> {
    EXTENSIONS
        .iter()
        .filter(|e| match kind {
            SectionKind::Media(MediaKind::Audio) => e.2,
            SectionKind::Media(MediaKind::Video) => e.3,
            _ => false,
        })
        .map(|e| (e.0, e.1.to_owned()))
        .collect()
}

/// One codec we support, in preference order, with its default payload type and an
/// optional RTX payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    /// The codec with our default payload type number, fmtp and rtcp-fb.
    pub payload: PayloadType,
    /// Payload type of the associated RTX stream, if we want retransmission.
    pub rtx_pt: Option<u8>,
}

/// Our codec preference lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCodecs {
    /// Audio codecs, most preferred first.
    pub audio: Vec<CodecConfig>,
    /// Video codecs, most preferred first.
    pub video: Vec<CodecConfig>,
}

fn fb(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const VIDEO_FB: [&str; 4] = ["transport-cc", "ccm fir", "nack", "nack pli"];

fn video(pt: u8, codec: Codec, fmtp: FormatParams, rtx: u8) -> CodecConfig {
    let mut p = PayloadType::new(pt, codec, 90000, None);
    p.fmtp = fmtp;
    p.rtcp_fb = fb(&VIDEO_FB);
    CodecConfig {
        payload: p,
        rtx_pt: Some(rtx),
    }
}

fn h264_fmtp(profile_level_id: ProfileLevelId) -> FormatParams {
    FormatParams {
        profile_level_id: Some(profile_level_id),
        packetization_mode: Some(1),
        level_asymmetry_allowed: Some(true),
        ..FormatParams::default()
    }
}

impl Default for LocalCodecs {
    /// Opus 111; VP8 96 (+RTX 97), VP9 profile 0 98 (+99), H.264 Constrained Baseline
    /// `42e01f` 102 (+103), H.264 Baseline `42001f` 104 (+105), AV1 45 (+46). Video
    /// feedback: `transport-cc`, `ccm fir`, `nack`, `nack pli`; audio: `transport-cc`.
    fn default() -> Self {
        let mut opus = PayloadType::new(111, Codec::Opus, 48000, Some(2));
        opus.fmtp.minptime = Some(10);
        opus.fmtp.useinbandfec = Some(true);
        opus.rtcp_fb = fb(&["transport-cc"]);
        let cb = ProfileLevelId {
            profile_idc: 0x42,
            profile_iop: 0xe0,
            level_idc: 0x1f,
        };
        let baseline = ProfileLevelId {
            profile_iop: 0x00,
            ..cb
        };
        LocalCodecs {
            audio: vec![CodecConfig {
                payload: opus,
                rtx_pt: None,
            }],
            video: vec![
                video(96, Codec::Vp8, FormatParams::default(), 97),
                video(
                    98,
                    Codec::Vp9,
                    FormatParams {
                        profile_id: Some(0),
                        ..FormatParams::default()
                    },
                    99,
                ),
                video(102, Codec::H264, h264_fmtp(cb), 103),
                video(104, Codec::H264, h264_fmtp(baseline), 105),
                video(45, Codec::Av1, FormatParams::default(), 46),
            ],
        }
    }
}

fn rtx_payload(pt: u8, apt: u8, clock_rate: u32) -> PayloadType {
    let mut p = PayloadType::new(pt, Codec::Rtx, clock_rate, None);
    p.fmtp.apt = Some(apt);
    p
}

impl LocalCodecs {
    /// The preference list for a kind (empty for non-RTP kinds).
    pub fn for_kind(&self, kind: &SectionKind) -> &[CodecConfig] {
        match kind {
            SectionKind::Media(MediaKind::Audio) => &self.audio,
            SectionKind::Media(MediaKind::Video) => &self.video,
            _ => &[],
        }
    }

    /// Our payload types for a kind as we offer them: each codec followed by its RTX.
    pub fn payloads(&self, kind: &SectionKind) -> Vec<PayloadType> {
        let mut out = Vec::new();
        for c in self.for_kind(kind) {
            out.push(c.payload.clone());
            if let Some(rtx) = c.rtx_pt {
                out.push(rtx_payload(rtx, c.payload.pt, c.payload.clock_rate));
            }
        }
        out
    }
}

/// The section we answer with when we reject an offered section: port 0, same kind,
/// proto, formats and mid (RFC 3264 §6, RFC 9429 §5.3.1).
pub fn rejected_media(offer: &MediaSection) -> MediaSection {
    let mut m = MediaSection::new(offer.kind.clone(), 0, &offer.proto);
    m.formats = offer.formats.clone();
    if m.formats.is_empty() {
        m.formats.push("0".into());
    }
    m.connection = Some(Connection::default());
    m.mid = offer.mid.clone();
    m
}

fn intersect_fb(local: &[String], remote: &[String]) -> Vec<String> {
    local
        .iter()
        .filter(|l| remote.iter().any(|r| r.eq_ignore_ascii_case(l)))
        .cloned()
        .collect()
}

/// Builds our answer section for one offered section (RFC 3264 §6.1, RFC 9429 §5.3.1).
///
/// - codecs: for each of our codecs in preference order, the first not yet used offered
///   payload that [`codec_matches`] it, under the offerer's payload type number; our fmtp
///   (H.264 level per RFC 6184 §8.2.2); rtcp-fb intersected. For a matched codec with
///   RTX enabled locally, the offered RTX whose `apt` points at it is kept (apt = the
///   offered primary PT).
/// - header extensions whose URI is in `extensions`, under the offered ids; an offered
///   extension direction is reversed;
/// - direction: the offered media-level one (absent = sendrecv) reversed (sendonly ->
///   recvonly, ...), intersected with `want`;
/// - RIDs reversed (`send` -> `recv`) and simulcast send/recv swapped, kept only for the
///   directions we accept;
/// - rtcp-mux, rtcp-rsize and extmap-allow-mixed echoed;
/// - data channel sections keep `sctp-port` (default 5000) and `max-message-size`;
/// - port 0 ([`rejected_media`]) when the offered section is rejected, its proto is not
///   one we speak, or no codec matches.
///
/// The caller adds ICE credentials, fingerprint, setup, candidates and — if it sends —
/// `msid` and `ssrc` lines.
pub fn answer_media(
    offer: &MediaSection,
    codecs: &LocalCodecs,
    extensions: &[String],
    want: Direction,
) -> MediaSection {
    if offer.is_rejected() {
        return rejected_media(offer);
    }
    match offer.kind {
        SectionKind::Media(_) if offer.is_rtp() => answer_rtp(offer, codecs, extensions, want),
        SectionKind::Application
            if offer.is_sctp() && offer.formats.iter().any(|f| f == "webrtc-datachannel") =>
        {
            let mut m = MediaSection::new(SectionKind::Application, 9, &offer.proto);
            m.formats = offer.formats.clone();
            m.connection = Some(Connection::default());
            m.mid = offer.mid.clone();
            m.sctp_port = Some(offer.sctp_port.unwrap_or(5000));
            m.max_message_size = offer.max_message_size;
            m
        }
        _ => rejected_media(offer),
    }
}

fn answer_rtp(
    offer: &MediaSection,
    codecs: &LocalCodecs,
    extensions: &[String],
    want: Direction,
) -> MediaSection {
    let mut payloads: Vec<PayloadType> = Vec::new();
    // RED refers to a primary codec: answered once that one is, at RED's place.
    let mut red: Option<(usize, &PayloadType)> = None;
    for cfg in codecs.for_kind(&offer.kind) {
        let local = &cfg.payload;
        if local.codec == Codec::Red {
            red = Some((payloads.len(), local));
            continue;
        }
        let Some(remote) = offer.payloads.iter().find(|r| {
            r.codec != Codec::Rtx
                && !payloads.iter().any(|p| p.pt == r.pt)
                && codec_matches(local, r)
        }) else {
            continue;
        };
        let mut fmtp = local.fmtp.clone();
        if local.codec == Codec::H264 {
            fmtp.profile_level_id = Some(h264_answer_profile_level_id(local, remote));
        }
        payloads.push(PayloadType {
            pt: remote.pt,
            codec: local.codec.clone(),
            clock_rate: remote.clock_rate,
            channels: remote.channels,
            fmtp,
            rtcp_fb: intersect_fb(&local.rtcp_fb, &remote.rtcp_fb),
        });
        if cfg.rtx_pt.is_some() {
            let rtx = offer.payloads.iter().find(|r| {
                r.codec == Codec::Rtx
                    && r.fmtp.apt == Some(remote.pt)
                    && !payloads.iter().any(|p| p.pt == r.pt)
            });
            if let Some(rtx) = rtx {
                payloads.push(rtx_payload(rtx.pt, remote.pt, rtx.clock_rate));
            }
        }
    }
    if let Some((at, local)) = red
        && let Some(p) = answer_red(offer, local, &payloads)
    {
        payloads.insert(at, p);
    }
    if payloads.is_empty() {
        return rejected_media(offer);
    }

    let direction = offer
        .direction
        .unwrap_or_default()
        .reverse()
        .intersect(want);
    let mut m = MediaSection::new(offer.kind.clone(), 9, &offer.proto);
    m.connection = Some(Connection::default());
    m.mid = offer.mid.clone();
    m.direction = Some(direction);
    m.rtcp_mux = offer.rtcp_mux;
    m.rtcp_rsize = offer.rtcp_rsize;
    m.extmap_allow_mixed = offer.extmap_allow_mixed;
    m.extmaps = offer
        .extmaps
        .iter()
        .filter(|e| extensions.contains(&e.uri))
        .map(|e| ExtMap {
            id: e.id,
            direction: e.direction.map(Direction::reverse),
            uri: e.uri.clone(),
            attributes: None,
        })
        .collect();

    let keep = |d: RidDirection| match d {
        RidDirection::Send => direction.can_send(),
        RidDirection::Recv => direction.can_recv(),
    };
    m.rids = offer
        .rids
        .iter()
        .filter(|r| keep(r.direction.reverse()))
        .map(|r| Rid {
            id: r.id.clone(),
            direction: r.direction.reverse(),
            payloads: r
                .payloads
                .iter()
                .copied()
                .filter(|pt| payloads.iter().any(|p| p.pt == *pt))
                .collect(),
            restrictions: r.restrictions.clone(),
        })
        .collect();
    // At most MAX_SIMULCAST_LAYERS RIDs each way, and only RIDs a received packet's
    // `rid` extension can name (`media::Rid`).
    let mut per_direction = [0usize; 2];
    m.rids.retain(|r| {
        if crate::media::Rid::new(&r.id).is_none() {
            return false;
        }
        let n = &mut per_direction[usize::from(r.direction == RidDirection::Recv)];
        *n += 1;
        *n <= MAX_SIMULCAST_LAYERS
    });
    if let Some(sim) = &offer.simulcast {
        let filter = |list: &[Vec<SimulcastRid>]| -> Vec<Vec<SimulcastRid>> {
            list.iter()
                .map(|alts| {
                    alts.iter()
                        .filter(|a| m.rids.iter().any(|r| r.id == a.id))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .filter(|alts| !alts.is_empty())
                .collect()
        };
        let answer = Simulcast {
            send: filter(&sim.recv),
            recv: filter(&sim.send),
        };
        if !(answer.send.is_empty() && answer.recv.is_empty()) {
            m.simulcast = Some(answer);
        }
    }
    m.set_payloads(payloads);
    m
}

/// What we send from one RTP section, for [`offer_media`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSender {
    /// RTCP CNAME.
    pub cname: String,
    /// MediaStream id for `a=msid`.
    pub stream_id: String,
    /// Track id for `a=msid`.
    pub track_id: String,
    /// Primary SSRC to announce (`a=ssrc` lines), if any.
    pub ssrc: Option<u32>,
    /// RTX SSRC, announced with `a=ssrc-group:FID <ssrc> <rtx_ssrc>`.
    pub rtx_ssrc: Option<u32>,
    /// RIDs to send as simulcast (`a=rid:<id> send` + `a=simulcast:send a;b;c`); empty for
    /// no simulcast.
    pub rids: Vec<String>,
}

/// Adds a sender's `msid`, `ssrc` / `ssrc-group:FID` lines and simulcast RIDs to one
/// of our sections (offer or answer).
pub fn add_sender(m: &mut MediaSection, s: &LocalSender) {
    m.msids.push(Msid {
        stream_id: s.stream_id.clone(),
        track_id: Some(s.track_id.clone()),
    });
    if let Some(ssrc) = s.ssrc {
        let mut ssrcs = vec![ssrc];
        if let Some(rtx) = s.rtx_ssrc {
            ssrcs.push(rtx);
            m.ssrc_groups.push(SsrcGroup {
                semantics: "FID".into(),
                ssrcs: ssrcs.clone(),
            });
        }
        for ssrc in ssrcs {
            m.ssrcs.push(SsrcAttribute {
                ssrc,
                attribute: "cname".into(),
                value: Some(s.cname.clone()),
            });
            m.ssrcs.push(SsrcAttribute {
                ssrc,
                attribute: "msid".into(),
                value: Some(format!("{} {}", s.stream_id, s.track_id)),
            });
        }
    }
    if !s.rids.is_empty() {
        m.rids = s
            .rids
            .iter()
            .map(|id| Rid {
                id: id.clone(),
                direction: RidDirection::Send,
                payloads: Vec::new(),
                restrictions: Vec::new(),
            })
            .collect();
        m.simulcast = Some(Simulcast {
            send: s
                .rids
                .iter()
                .map(|id| {
                    vec![SimulcastRid {
                        id: id.clone(),
                        paused: false,
                    }]
                })
                .collect(),
            recv: Vec::new(),
        });
    }
}

/// Builds one of our offer sections.
///
/// RTP kinds get our payloads for the kind (each codec followed by its RTX), the given
/// `(id, uri)` header extensions, rtcp-mux and rtcp-rsize, the direction, and when a
/// sender is given its `msid`, `ssrc`/`ssrc-group:FID` lines and simulcast RIDs.
/// `SectionKind::Application` gets a data channel section (`UDP/DTLS/SCTP
/// webrtc-datachannel`, sctp-port 5000, max-message-size 262144); the codec, extension,
/// direction and sender arguments are unused then. Other kinds yield a port-0 section.
///
/// The caller adds ICE credentials, fingerprint, setup (`actpass`) and candidates.
pub fn offer_media(
    mid: &str,
    kind: SectionKind,
    direction: Direction,
    codecs: &LocalCodecs,
    extensions: &[(u16, String)],
    sender: Option<&LocalSender>,
) -> MediaSection {
    match kind {
        SectionKind::Application => {
            let mut m = MediaSection::new(SectionKind::Application, 9, "UDP/DTLS/SCTP");
            m.formats = vec!["webrtc-datachannel".into()];
            m.connection = Some(Connection::default());
            m.mid = Some(mid.to_owned());
            m.sctp_port = Some(5000);
            m.max_message_size = Some(262_144);
            return m;
        }
        SectionKind::Other(_) => {
            let mut m = MediaSection::new(kind, 0, "UDP/TLS/RTP/SAVPF");
            m.formats = vec!["0".into()];
            m.mid = Some(mid.to_owned());
            return m;
        }
        SectionKind::Media(_) => {}
    }
    let mut m = MediaSection::new(kind, 9, "UDP/TLS/RTP/SAVPF");
    m.connection = Some(Connection::default());
    m.mid = Some(mid.to_owned());
    m.direction = Some(direction);
    m.rtcp_mux = true;
    m.rtcp_rsize = true;
    m.extmaps = extensions
        .iter()
        .map(|(id, uri)| ExtMap {
            id: *id,
            direction: None,
            uri: uri.clone(),
            attributes: None,
        })
        .collect();
    m.set_payloads(codecs.payloads(&m.kind));
    if let Some(s) = sender {
        add_sender(&mut m, s);
    }
    m
}

/// A BUNDLE group of every non-rejected section with a mid, in order (RFC 9143).
pub fn bundle_group(media: &[MediaSection]) -> Group {
    Group {
        semantics: "BUNDLE".into(),
        mids: media
            .iter()
            .filter(|m| !m.is_rejected())
            .filter_map(|m| m.mid.clone())
            .collect(),
    }
}

/// Why an offer/answer pair of sections cannot be negotiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsepError {
    /// Neither section has a mid.
    #[error("media section has no mid")]
    MissingMid,
    /// The answer's mid differs from the offer's.
    #[error("answer mid {answer:?} does not match offer mid {offer:?}")]
    MidMismatch {
        /// The offered mid.
        offer: String,
        /// The answered mid.
        answer: String,
    },
    /// The answer's media kind differs from the offer's.
    #[error("answer media kind differs from the offer")]
    KindMismatch,
    /// The answer uses a payload type the offer did not contain (or with another codec).
    #[error("answer payload type {0} was not offered")]
    UnofferedPayload(u8),
    /// An accepted RTP section lists no usable payload type.
    #[error("accepted media section has no codec")]
    NoCodec,
    /// The offer or answer accepts no media section at all.
    #[error("no accepted media section")]
    NoAcceptedSection,
    /// The first accepted section (and the session) lacks `a=ice-ufrag` / `a=ice-pwd`.
    #[error("missing a=ice-ufrag / a=ice-pwd")]
    MissingIceCredentials,
    /// The first accepted section (and the session) lacks `a=fingerprint`.
    #[error("missing a=fingerprint")]
    MissingFingerprint,
    /// The `a=setup` value cannot be used here (`holdconn`, or an answer that
    /// is not `active` or `passive`).
    #[error("a=setup {0:?} is not acceptable here")]
    BadSetup(Option<crate::sdp::Setup>),
    /// A negotiated section's mid is not a valid mid.
    #[error("mid {0:?} is not a valid mid")]
    InvalidMid(String),
    /// The answer has no section for an offered mid.
    #[error("answer lacks mid {0:?}")]
    AnswerLacksMid(Option<String>),
}

/// The result of one m-line's negotiation: what the `Rtc` keeps per section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// The section's mid.
    pub mid: String,
    /// Media kind.
    pub kind: SectionKind,
    /// Whether the section was rejected (port 0); all lists are empty then.
    pub rejected: bool,
    /// Our direction (what *we* may do).
    pub direction: Direction,
    /// Negotiated payload types other than RTX (answer order), with the answer's
    /// fmtp and rtcp-fb.
    pub payloads: Vec<PayloadType>,
    /// `(primary pt, rtx pt)` pairs.
    pub rtx: Vec<(u8, u8)>,
    /// Negotiated header extensions `(id, uri)`.
    pub extensions: Vec<(u8, String)>,
    /// SSRCs the remote side announced, in order of first appearance.
    pub remote_ssrcs: Vec<u32>,
    /// Remote `(primary ssrc, rtx ssrc)` pairs from `ssrc-group:FID`.
    pub remote_rtx_ssrcs: Vec<(u32, u32)>,
    /// The remote CNAME, if announced.
    pub remote_cname: Option<String>,
    /// The remote `a=msid`, if announced.
    pub remote_msid: Option<Msid>,
    /// RIDs the remote side sends (its `a=rid:<id> send` lines that we list as `recv`).
    pub remote_rids: Vec<String>,
    /// RIDs we send (our `a=rid:<id> send` lines that the remote lists as `recv`).
    pub local_rids: Vec<String>,
    /// RTP/RTCP multiplexing agreed.
    pub rtcp_mux: bool,
    /// Reduced-size RTCP agreed.
    pub rtcp_rsize: bool,
    /// Our SCTP port (data channel sections).
    pub local_sctp_port: Option<u16>,
    /// The remote SCTP port (data channel sections).
    pub remote_sctp_port: Option<u16>,
    /// The largest message the remote side accepts (data channel sections).
    pub remote_max_message_size: Option<u64>,
}

/// We sent `offer` and received `answer` for it: the negotiated state (our direction is
/// the answer's reversed; remote SSRCs/RIDs come from the answer).
///
/// # Errors
///
/// A [`JsepError`] when the answer's mid or media kind differs from the offer's, it
/// uses a payload type that was not offered, or an accepted RTP section has no codec.
pub fn accept_answer_media(
    offer: &MediaSection,
    answer: &MediaSection,
) -> Result<NegotiatedMedia, JsepError> {
    negotiate(offer, answer, false)
}

/// We received `offer` and answered with `answer` (typically built by [`answer_media`]
/// and completed by the caller): the negotiated state (our direction is the answer's;
/// remote SSRCs/RIDs come from the offer).
///
/// # Errors
///
/// A [`JsepError`] when the answer's mid or media kind differs from the offer's, it
/// uses a payload type that was not offered, or an accepted RTP section has no codec.
pub fn negotiate_from_offer(
    offer: &MediaSection,
    answer: &MediaSection,
) -> Result<NegotiatedMedia, JsepError> {
    negotiate(offer, answer, true)
}

fn negotiate(
    offer: &MediaSection,
    answer: &MediaSection,
    we_answered: bool,
) -> Result<NegotiatedMedia, JsepError> {
    let mid = match (&offer.mid, &answer.mid) {
        (Some(o), Some(a)) if o != a => {
            return Err(JsepError::MidMismatch {
                offer: o.clone(),
                answer: a.clone(),
            });
        }
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) => return Err(JsepError::MissingMid),
    };
    if offer.kind != answer.kind {
        return Err(JsepError::KindMismatch);
    }
    let (local, remote) = if we_answered {
        (answer, offer)
    } else {
        (offer, answer)
    };
    let mut n = NegotiatedMedia {
        mid,
        kind: answer.kind.clone(),
        rejected: true,
        direction: Direction::Inactive,
        payloads: Vec::new(),
        rtx: Vec::new(),
        extensions: Vec::new(),
        remote_ssrcs: Vec::new(),
        remote_rtx_ssrcs: Vec::new(),
        remote_cname: None,
        remote_msid: None,
        remote_rids: Vec::new(),
        local_rids: Vec::new(),
        rtcp_mux: false,
        rtcp_rsize: false,
        local_sctp_port: None,
        remote_sctp_port: None,
        remote_max_message_size: None,
    };
    if offer.is_rejected() || answer.is_rejected() {
        return Ok(n);
    }
    n.rejected = false;
    let answer_dir = answer.direction.unwrap_or_default();
    n.direction = if we_answered {
        answer_dir
    } else {
        answer_dir.reverse()
    };
    n.rtcp_mux = offer.rtcp_mux && answer.rtcp_mux;
    n.rtcp_rsize = offer.rtcp_rsize && answer.rtcp_rsize;
    n.local_sctp_port = local.sctp_port;
    n.remote_sctp_port = remote.sctp_port;
    n.remote_max_message_size = remote.max_message_size;

    let is_rtp = matches!(answer.kind, SectionKind::Media(_));
    if is_rtp {
        for p in &answer.payloads {
            let offered = offer.payload(p.pt).filter(|o| {
                codec_matches(o, p) || (o.codec == Codec::Rtx && p.codec == Codec::Rtx)
            });
            if offered.is_none() {
                return Err(JsepError::UnofferedPayload(p.pt));
            }
            if p.codec != Codec::Rtx {
                n.payloads.push(p.clone());
            }
        }
        for p in answer.payloads.iter().filter(|p| p.codec == Codec::Rtx) {
            if let Some(apt) = p.fmtp.apt.filter(|a| n.payloads.iter().any(|x| x.pt == *a)) {
                n.rtx.push((apt, p.pt));
            }
        }
        if n.payloads.is_empty() {
            return Err(JsepError::NoCodec);
        }
        n.extensions = answer
            .extmaps
            .iter()
            .filter(|e| offer.extmaps.iter().any(|o| o.uri == e.uri))
            .filter_map(|e| u8::try_from(e.id).ok().map(|id| (id, e.uri.clone())))
            .collect();
    }

    for s in &remote.ssrcs {
        if !n.remote_ssrcs.contains(&s.ssrc) {
            n.remote_ssrcs.push(s.ssrc);
        }
        if n.remote_cname.is_none() && s.attribute.eq_ignore_ascii_case("cname") {
            n.remote_cname = s.value.clone();
        }
    }
    for g in &remote.ssrc_groups {
        if let ("FID", [a, b]) = (
            g.semantics.to_ascii_uppercase().as_str(),
            g.ssrcs.as_slice(),
        ) {
            n.remote_rtx_ssrcs.push((*a, *b));
        }
    }
    n.remote_msid = remote.msids.first().cloned();
    // RIDs one side sends that the other side accepted (lists as `recv`).
    let sends = |from: &MediaSection, to: &MediaSection| -> Vec<String> {
        from.rids
            .iter()
            .filter(|r| r.direction == RidDirection::Send)
            .filter(|r| {
                to.rids
                    .iter()
                    .any(|t| t.direction == RidDirection::Recv && t.id == r.id)
            })
            .map(|r| r.id.clone())
            .collect()
    };
    n.remote_rids = sends(remote, local);
    n.local_rids = sends(local, remote);
    Ok(n)
}

mod red;
pub use red::OpusRed;
use red::answer_red;
#[cfg(test)]
use red::red_primary_pt;

#[cfg(test)]
mod tests;
