//! The SDP offer/answer API of an [`Rtc`] (JSEP, RFC 9429), reached through
//! [`Rtc::sdp_api`].
//!
//! Passive side: [`SdpApi::accept_offer`] takes the peer's offer and returns our
//! answer. Active side: [`SdpApi::add_media`] / [`SdpApi::add_channel`], then
//! [`SdpApi::apply`] gives an offer and a [`SdpPendingOffer`] to pass to
//! [`SdpApi::accept_answer`] with the peer's answer.

use std::fmt;

use crate::dtls::Fingerprint;
use crate::ice::{Candidate, IceCreds};
use crate::media::{MediaInfo, MediaKind, Mid};
use crate::rtc::{Rtc, RtcError};
use crate::rtp::{Extension, ExtensionMap};
use crate::sctp::ChannelConfig;
use crate::sdp::jsep::{self, JsepError, LocalCodecs};
use crate::sdp::{
    self, Direction, FragmentMedia, Group, IceFragment, MediaSection, SdpError, SectionKind,
    SessionDescription, Setup,
};

/// An SDP offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer(SessionDescription);

/// An SDP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpAnswer(SessionDescription);

macro_rules! sdp_wrapper {
    ($t:ident) => {
        impl $t {
            /// Parses SDP text. The error names the line and the reason.
            ///
            /// # Errors
            ///
            /// [`SdpError`] naming the offending line and the reason when the text is
            /// not a valid session description.
            pub fn from_sdp_string(s: &str) -> Result<$t, SdpError> {
                SessionDescription::parse(s).map($t)
            }

            /// The SDP text (CRLF line endings).
            pub fn to_sdp_string(&self) -> String {
                self.0.to_sdp()
            }

            /// The parsed description.
            pub fn description(&self) -> &SessionDescription {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_sdp())
            }
        }
    };
}

sdp_wrapper!(SdpOffer);
sdp_wrapper!(SdpAnswer);

/// An offer we made and whose answer we await.
#[derive(Debug)]
pub struct SdpPendingOffer {
    offer: SessionDescription,
    channels: Vec<ChannelConfig>,
}

/// A media section requested with [`SdpApi::add_media`], negotiated on `apply`.
#[derive(Debug, Clone)]
struct Pending {
    mid: Mid,
    kind: SectionKind,
    direction: Direction,
}

/// Borrowed SDP handle from [`Rtc::sdp_api`].
pub struct SdpApi<'a> {
    rtc: &'a mut Rtc,
    pending: Vec<Pending>,
    channels: Vec<ChannelConfig>,
    removed: Vec<Mid>,
    restart: bool,
}

impl<'a> SdpApi<'a> {
    pub(crate) fn new(rtc: &'a mut Rtc) -> Self {
        SdpApi {
            rtc,
            pending: Vec::new(),
            channels: Vec::new(),
            removed: Vec::new(),
            restart: false,
        }
    }

    /// Accepts the peer's offer and returns our answer: every audio/video section
    /// is answered with the codecs and header extensions we share (rejected with
    /// port 0 when none match), a data-channel section is accepted, everything is
    /// bundled on one transport.
    ///
    /// # Errors
    ///
    /// [`RtcError::Sdp`] when the offer accepts no section, lacks ICE credentials or a
    /// fingerprint, asks for `a=setup:holdconn` or names an invalid mid;
    /// [`RtcError::SdpSection`] when one section cannot be negotiated;
    /// [`RtcError::InvalidState`] when the offer changes the established DTLS role. A
    /// refused offer changes nothing.
    pub fn accept_offer(self, offer: SdpOffer) -> Result<SdpAnswer, RtcError> {
        let rtc = self.rtc;
        let offer = offer.0;
        let first = offer
            .media
            .iter()
            .find(|m| !m.is_rejected())
            .ok_or(RtcError::Sdp(JsepError::NoAcceptedSection))?;
        let (ufrag, pwd, remote_fp) = remote_transport(&offer, first)?;
        // Our DTLS role: the offerer says actpass (we choose, active by default,
        // RFC 8842 §5.3), active (we are passive) or passive (we are active).
        // A re-offer keeps the established role (RFC 8842 §5.5).
        let established = rtc.transport.dtls.is_active();
        let we_active = match offer.setup_for(first) {
            Some(Setup::Active) => false,
            Some(Setup::Passive) => true,
            Some(Setup::ActPass) | None => established.unwrap_or(rtc.config.answer_dtls_active),
            Some(Setup::HoldConn) => return Err(JsepError::BadSetup(Some(Setup::HoldConn)).into()),
        };
        if established.is_some_and(|a| a != we_active) {
            return Err(RtcError::InvalidState(
                "DTLS role differs from the established one",
            ));
        }

        // Negotiate every m-line first, so a bad offer changes nothing.
        let codecs = LocalCodecs::with_opus_red(rtc.config.opus_red);
        let exts = jsep::supported_extensions();
        let mut answers = Vec::with_capacity(offer.media.len());
        let mut negotiated = Vec::new();
        let mut rejected = Vec::new();
        for m in &offer.media {
            let mut a = jsep::answer_media(m, &codecs, &exts, Direction::SendRecv);
            if a.is_rejected() {
                if let Some(mid) = m.mid.as_deref().and_then(Mid::new) {
                    rejected.push(mid);
                }
            } else {
                let n =
                    jsep::negotiate_from_offer(m, &a).map_err(|source| RtcError::SdpSection {
                        mid: m.mid.clone(),
                        source,
                    })?;
                negotiated.push(n);
                a.candidates.clear();
                a.end_of_candidates = false;
            }
            answers.push(a);
        }

        // Apply. New remote credentials mean the peer restarts ICE (RFC 8445 §9):
        // we restart too, with fresh credentials of our own.
        let restart = rtc
            .transport
            .ice
            .remote_credentials()
            .is_some_and(|c| c.ufrag != ufrag || c.pass != pwd);
        if restart {
            rtc.transport.ice.ice_restart(IceCreds::random());
        }
        rtc.transport.ice.set_remote_credentials(IceCreds {
            ufrag: ufrag.to_string(),
            pass: pwd.to_string(),
        });
        if !rtc.transport.ice_negotiated || restart {
            // An ICE-lite offerer leaves the controlling role to us (when we are full).
            rtc.transport
                .ice
                .set_controlling(offer.ice_lite && !rtc.config.ice_lite);
            rtc.transport.ice_negotiated = true;
        }
        rtc.transport.dtls.set_remote_fingerprint(remote_fp);
        rtc.transport.dtls.set_active(we_active);
        for mid in rejected {
            rtc.remove_media_entry(mid);
        }
        for m in &offer.media {
            for c in &m.candidates {
                if let Ok(c) = Candidate::from_sdp_string(c) {
                    rtc.transport.ice.add_remote_candidate(c);
                }
            }
            if m.end_of_candidates {
                rtc.transport.ice.set_remote_end_of_candidates();
            }
        }
        for n in &negotiated {
            let Some(mid) = Mid::new(&n.mid) else {
                return Err(JsepError::InvalidMid(n.mid.clone()).into());
            };
            if let Some(kind) = n.kind.media() {
                if n.direction.can_send() {
                    // Signal the SSRCs we will send with, so the peer maps them
                    // without relying on the mid header extension.
                    let sender = rtc.ensure_tx(mid).sender(!n.rtx.is_empty());
                    if let Some(a) = answers
                        .iter_mut()
                        .find(|a| a.mid.as_deref() == Some(n.mid.as_str()))
                        && a.msids.is_empty()
                    {
                        jsep::add_sender(a, &sender);
                    }
                }
                rtc.add_media_entry(media_info(mid, kind, n));
            } else if n.kind == SectionKind::Application {
                rtc.app_mid = Some(mid);
                rtc.ensure_sctp(n.remote_max_message_size);
            }
        }

        let answer = build_description(
            rtc,
            answers,
            if we_active {
                Setup::Active
            } else {
                Setup::Passive
            },
        );
        rtc.local_sections.set(answer.media.clone());
        Ok(SdpAnswer(answer))
    }

    /// Adds a media section to the next offer. Returns its mid.
    pub fn add_media(&mut self, kind: MediaKind, direction: Direction) -> Mid {
        self.add(SectionKind::Media(kind), direction)
    }

    /// Adds a data channel. When data channels are already negotiated it opens at
    /// once; otherwise the next offer gets a data-channel (SCTP) section and the
    /// channel opens after the answer. Its id arrives with
    /// [`Event::ChannelOpen`](crate::Event::ChannelOpen).
    ///
    /// # Errors
    ///
    /// When data channels are already negotiated, as
    /// [`DirectApi::create_data_channel`](crate::direct::DirectApi::create_data_channel).
    pub fn add_channel(&mut self, config: ChannelConfig) -> Result<(), RtcError> {
        if self.rtc.sctp.is_some() {
            self.rtc.open_channel(config)?;
            return Ok(());
        }
        if !self
            .pending
            .iter()
            .any(|p| p.kind == SectionKind::Application)
        {
            self.add(SectionKind::Application, Direction::SendRecv);
        }
        self.channels.push(config);
        Ok(())
    }

    fn add(&mut self, kind: SectionKind, direction: Direction) -> Mid {
        let rtc = &*self.rtc;
        let pending = &self.pending;
        let taken = |m: &Mid| {
            rtc.session.media.iter().any(|x| x.mid == *m)
                || rtc.app_mid == Some(*m)
                || pending.iter().any(|p| p.mid == *m)
        };
        let mut n = 0u32;
        let mid = loop {
            // A decimal index always forms a valid mid.
            let m = Mid::new(&n.to_string()).expect("decimal digits are a valid mid");
            if !taken(&m) {
                break m;
            }
            n += 1;
        };
        self.pending.push(Pending {
            mid,
            kind,
            direction,
        });
        mid
    }

    /// Removes a negotiated media section with the next offer: the section is offered
    /// rejected (port 0, JSEP §5.2.2) and, once the answer is applied, the `Rtc` no
    /// longer sends or receives on it. Its mid is not reused.
    ///
    /// # Errors
    ///
    /// [`RtcError::UnknownMid`] when no negotiated media section has this mid.
    pub fn remove_media(&mut self, mid: Mid) -> Result<(), RtcError> {
        if !self.rtc.session.media.iter().any(|m| m.mid == mid) {
            return Err(RtcError::UnknownMid(mid));
        }
        if !self.removed.contains(&mid) {
            self.removed.push(mid);
        }
        Ok(())
    }

    /// Whether `add_media`/`add_channel`/`remove_media` queued changes.
    pub fn has_changes(&self) -> bool {
        !self.pending.is_empty() || !self.removed.is_empty()
    }

    /// Accepts a trickle ICE fragment from the peer (RFC 8840; WHIP/WHEP `PATCH`,
    /// RFC 9725 §4.3) on a negotiated session.
    ///
    /// - Same credentials as the peer's current ones (or none): a trickle update. Its
    ///   candidates are added (those whose `ufrag` extension names another generation
    ///   are skipped, as are candidates this agent cannot use, e.g. mDNS names);
    ///   `a=end-of-candidates` is noted. Returns `None`.
    /// - New `ice-ufrag`/`ice-pwd`: the peer restarts ICE (RFC 8445 §9). We restart
    ///   too, with fresh local credentials; media keeps flowing on the old path until
    ///   a new pair is nominated. Returns our answer fragment (credentials, candidates,
    ///   `a=end-of-candidates`) for the peer.
    /// - After our own [`SdpApi::ice_restart_fragment`], the peer's fragment with its
    ///   (new) credentials completes the restart. Returns `None`.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] before ICE is negotiated, or when the fragment names
    /// only a ufrag (or only a password) that differs from the current one;
    /// [`RtcError::Sdp`] with [`JsepError::InvalidMid`] when a section names a mid this
    /// session does not have. A refused fragment changes nothing.
    pub fn accept_ice_fragment(
        self,
        fragment: &IceFragment,
    ) -> Result<Option<IceFragment>, RtcError> {
        let rtc = self.rtc;
        if !rtc.transport.ice_negotiated {
            return Err(RtcError::InvalidState(
                "an ICE fragment needs a negotiated session",
            ));
        }
        // Our sections are kept as SDP text: parse them once for the whole fragment (not
        // once per section the peer sends), and only when the fragment names a mid.
        if fragment.media.iter().any(|m| m.mid.is_some()) {
            let ours = rtc.local_sections.get();
            for mid in fragment.media.iter().filter_map(|m| m.mid.as_ref()) {
                if !ours.iter().any(|s| s.mid.as_deref() == Some(mid.as_str())) {
                    return Err(JsepError::InvalidMid(mid.clone()).into());
                }
            }
        }
        let current = rtc.transport.ice.remote_credentials().cloned();
        let restart = match (fragment.credentials(), &current) {
            (Some((u, p)), Some(c)) => c.ufrag != u || c.pass != p,
            // We restarted (ice_restart_fragment) and await the peer's credentials.
            (Some(_), None) => false,
            (None, _) => {
                let ufrag = fragment
                    .ice_ufrag
                    .as_deref()
                    .or_else(|| fragment.media.iter().find_map(|m| m.ice_ufrag.as_deref()));
                let same = match (ufrag, &current) {
                    (Some(u), Some(c)) => c.ufrag == u,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if !same || (ufrag.is_none() && fragment.has_credentials()) {
                    return Err(RtcError::InvalidState(
                        "the fragment changes ICE credentials without both ufrag and pwd",
                    ));
                }
                false
            }
        };
        if restart {
            rtc.transport.ice.ice_restart(IceCreds::random());
        }
        if let Some((u, p)) = fragment.credentials() {
            rtc.transport.ice.set_remote_credentials(IceCreds {
                ufrag: u.to_string(),
                pass: p.to_string(),
            });
        }
        let remote_ufrag = rtc
            .transport
            .ice
            .remote_credentials()
            .map(|c| c.ufrag.clone());
        for c in fragment.candidates() {
            let Ok(c) = Candidate::from_sdp_string(c) else {
                continue;
            };
            // A candidate of another ICE generation (RFC 8840 §4.4) is stale.
            if c.ufrag().is_some() && c.ufrag() != remote_ufrag.as_deref() {
                continue;
            }
            rtc.transport.ice.add_remote_candidate(c);
        }
        if fragment.end_of_candidates() {
            rtc.transport.ice.set_remote_end_of_candidates();
        }
        Ok(restart.then(|| local_fragment(rtc)))
    }

    /// Restarts ICE from our side without a full offer (RFC 8840 fragments, as the
    /// WHIP/WHEP `PATCH` carry them): new local credentials, and the fragment to send
    /// the peer. The peer's answer fragment goes to [`SdpApi::accept_ice_fragment`].
    /// Media keeps flowing on the current pair until a new one is nominated.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] before ICE is negotiated.
    pub fn ice_restart_fragment(self) -> Result<IceFragment, RtcError> {
        let rtc = self.rtc;
        if !rtc.transport.ice_negotiated {
            return Err(RtcError::InvalidState(
                "an ICE restart needs a negotiated session",
            ));
        }
        rtc.transport.ice.ice_restart(IceCreds::random());
        Ok(local_fragment(rtc))
    }

    /// Our current ICE parameters as a fragment (credentials, candidates,
    /// `a=end-of-candidates` on the first bundled section).
    pub fn local_ice_fragment(self) -> IceFragment {
        local_fragment(self.rtc)
    }

    /// Restarts ICE with the next offer (new credentials; the current path keeps
    /// working until the new one is nominated).
    pub fn ice_restart(&mut self) {
        self.restart = true;
    }

    /// Creates the offer for the queued changes (with every media section already
    /// negotiated, as JSEP requires). `None` when nothing changed.
    pub fn apply(self) -> Option<(SdpOffer, SdpPendingOffer)> {
        if self.pending.is_empty() && self.removed.is_empty() && !self.restart {
            return None;
        }
        let rtc = self.rtc;
        let codecs = LocalCodecs::with_opus_red(rtc.config.opus_red);
        let mut sections = rtc.local_sections.get();
        for m in sections.iter_mut() {
            if m.mid
                .as_deref()
                .and_then(Mid::new)
                .is_some_and(|mid| self.removed.contains(&mid))
            {
                reject_section(m);
            }
        }
        for p in &self.pending {
            let exts = jsep::default_extensions(&p.kind);
            let sender = (p.direction.can_send() && p.kind != SectionKind::Application)
                .then(|| rtc.ensure_tx(p.mid).sender(true));
            sections.push(jsep::offer_media(
                p.mid.as_str(),
                p.kind.clone(),
                p.direction,
                &codecs,
                &exts,
                sender.as_ref(),
            ));
        }
        if self.restart {
            rtc.transport.ice.ice_restart(IceCreds::random());
        }
        if !rtc.transport.ice_negotiated || self.restart {
            // The offerer controls ICE unless it is lite.
            rtc.transport.ice.set_controlling(!rtc.config.ice_lite);
            rtc.transport.ice_negotiated = true;
        }
        // Once DTLS roles are fixed, re-offers state them (RFC 8842 §5.5).
        let setup = match rtc.transport.dtls.is_active() {
            Some(true) => Setup::Active,
            Some(false) => Setup::Passive,
            None => Setup::ActPass,
        };
        let offer = build_description(rtc, sections, setup);
        Some((
            SdpOffer(offer.clone()),
            SdpPendingOffer {
                offer,
                channels: self.channels,
            },
        ))
    }

    /// Applies the peer's answer to our pending offer.
    ///
    /// # Errors
    ///
    /// [`RtcError::Sdp`] when the answer lacks an offered mid, accepts no section,
    /// lacks ICE credentials or a fingerprint, or its `a=setup` is not
    /// `active`/`passive`; [`RtcError::SdpSection`] when one section cannot be
    /// negotiated; [`RtcError::InvalidState`] when it changes the established DTLS
    /// role; [`RtcError::Channel`] when a queued data channel cannot be opened.
    pub fn accept_answer(
        self,
        pending: SdpPendingOffer,
        answer: SdpAnswer,
    ) -> Result<(), RtcError> {
        let rtc = self.rtc;
        let answer = answer.0;
        let offer = pending.offer;
        let mut negotiated = Vec::new();
        for o in &offer.media {
            let Some(a) = o.mid.as_deref().and_then(|mid| answer.media_by_mid(mid)) else {
                return Err(JsepError::AnswerLacksMid(o.mid.clone()).into());
            };
            if a.is_rejected() {
                continue;
            }
            if o.is_rejected() {
                continue;
            }
            let n = jsep::accept_answer_media(o, a).map_err(|source| RtcError::SdpSection {
                mid: o.mid.clone(),
                source,
            })?;
            negotiated.push((n, a.clone()));
        }
        let first = negotiated
            .first()
            .map(|(_, a)| a)
            .ok_or(RtcError::Sdp(JsepError::NoAcceptedSection))?;
        let (ufrag, pwd, remote_fp) = remote_transport(&answer, first)?;
        let we_active = match answer.setup_for(first) {
            Some(Setup::Active) => false,
            Some(Setup::Passive) => true,
            other => return Err(JsepError::BadSetup(other).into()),
        };
        if rtc
            .transport
            .dtls
            .is_active()
            .is_some_and(|a| a != we_active)
        {
            return Err(RtcError::InvalidState(
                "answer changes the established DTLS role",
            ));
        }
        rtc.transport.ice.set_remote_credentials(IceCreds {
            ufrag: ufrag.to_string(),
            pass: pwd.to_string(),
        });
        if answer.ice_lite {
            rtc.transport.ice.set_controlling(true);
        }
        rtc.transport.dtls.set_remote_fingerprint(remote_fp);
        rtc.transport.dtls.set_active(we_active);
        for (n, a) in &negotiated {
            for c in &a.candidates {
                if let Ok(c) = Candidate::from_sdp_string(c) {
                    rtc.transport.ice.add_remote_candidate(c);
                }
            }
            let Some(mid) = Mid::new(&n.mid) else {
                continue;
            };
            if let Some(kind) = n.kind.media() {
                rtc.add_media_entry(media_info(mid, kind, n));
            } else if n.kind == SectionKind::Application {
                rtc.app_mid = Some(mid);
                rtc.ensure_sctp(n.remote_max_message_size);
            }
        }
        for o in &offer.media {
            let answered = o.mid.as_deref().and_then(|mid| answer.media_by_mid(mid));
            if (o.is_rejected() || answered.is_some_and(MediaSection::is_rejected))
                && let Some(mid) = o.mid.as_deref().and_then(Mid::new)
            {
                rtc.remove_media_entry(mid);
            }
        }
        rtc.local_sections.set(offer.media);
        for c in pending.channels {
            rtc.open_channel(c)?;
        }
        Ok(())
    }
}

/// Turns a section into its rejected form for a subsequent offer (JSEP §5.2.2): port
/// 0, inactive, no sender or transport attributes.
fn reject_section(m: &mut MediaSection) {
    m.port = 0;
    m.direction = Some(Direction::Inactive);
    m.msids.clear();
    m.ssrcs.clear();
    m.ssrc_groups.clear();
    m.rids.clear();
    m.simulcast = None;
    m.candidates.clear();
    m.end_of_candidates = false;
}

/// Our local ICE candidates as SDP `candidate` attribute values.
fn local_candidate_lines(rtc: &Rtc) -> Vec<String> {
    rtc.transport
        .ice
        .local_candidates()
        .iter()
        .map(|c| c.to_sdp_string())
        .collect()
}

/// Our ICE parameters as an RFC 8840 fragment: BUNDLE group, then the first bundled
/// section's `m=` line and mid with credentials and candidates (RFC 9725 §4.3.1 shape).
fn local_fragment(rtc: &Rtc) -> IceFragment {
    let creds = rtc.transport.ice.local_credentials().clone();
    let sections = rtc.local_sections.get();
    let live: Vec<&MediaSection> = sections.iter().filter(|m| !m.is_rejected()).collect();
    let mut frag = IceFragment {
        ice_lite: rtc.config.ice_lite,
        ice_options: if rtc.config.ice_lite {
            Vec::new()
        } else {
            vec!["trickle".into()]
        },
        ..IceFragment::default()
    };
    let mids: Vec<String> = live.iter().filter_map(|m| m.mid.clone()).collect();
    if !mids.is_empty() {
        frag.groups.push(Group {
            semantics: "BUNDLE".into(),
            mids,
        });
    }
    let candidates = local_candidate_lines(rtc);
    match live.first() {
        Some(m) => frag.media.push(FragmentMedia {
            media_line: format!("{} 9 {} {}", m.kind.as_str(), m.proto, m.formats.join(" "))
                .trim_end()
                .to_string(),
            mid: m.mid.clone(),
            ice_ufrag: Some(creds.ufrag),
            ice_pwd: Some(creds.pass),
            candidates,
            end_of_candidates: true,
        }),
        None => {
            frag.ice_ufrag = Some(creds.ufrag);
            frag.ice_pwd = Some(creds.pass);
        }
    }
    frag
}

/// The `Rtc`'s record of a negotiated media section.
fn media_info(mid: Mid, kind: MediaKind, n: &jsep::NegotiatedMedia) -> MediaInfo {
    let mut extensions = ExtensionMap::empty();
    for (id, uri) in &n.extensions {
        if let Some(e) = Extension::from_uri(uri) {
            extensions.set(*id, e);
        }
    }
    let mut remote_ssrcs = n.remote_ssrcs.clone();
    for (_, rtx) in &n.remote_rtx_ssrcs {
        if !remote_ssrcs.contains(rtx) {
            remote_ssrcs.push(*rtx);
        }
    }
    MediaInfo {
        mid,
        kind,
        direction: n.direction,
        payloads: n.payloads.clone(),
        rtx: n.rtx.clone(),
        extensions,
        remote_ssrcs,
        remote_rids: n.remote_rids.clone(),
        remote_rtx: n.remote_rtx_ssrcs.clone(),
    }
}

/// Completes media sections with our transport parameters and wraps them in a
/// session description with one BUNDLE group.
fn build_description(rtc: &Rtc, mut media: Vec<MediaSection>, setup: Setup) -> SessionDescription {
    let creds = rtc.transport.ice.local_credentials().clone();
    let fp = rtc.transport.dtls.local_fingerprint();
    let sdp_fp = sdp::Fingerprint {
        algorithm: fp.hash_func.clone(),
        bytes: fp.bytes.clone(),
    };
    let candidates = local_candidate_lines(rtc);
    let mut desc = SessionDescription::default();
    desc.origin.session_id = rtc.session_id;
    desc.origin.session_version = 2;
    desc.ice_lite = rtc.config.ice_lite;
    desc.msid_semantic = Some(sdp::MsidSemantic {
        semantic: "WMS".into(),
        ids: vec!["*".into()],
    });
    let mut bundle = Vec::new();
    for m in media.iter_mut() {
        if m.is_rejected() {
            continue;
        }
        m.ice_ufrag = Some(creds.ufrag.clone());
        m.ice_pwd = Some(creds.pass.clone());
        m.fingerprints = vec![sdp_fp.clone()];
        m.setup = Some(setup);
        m.candidates = candidates.clone();
        m.end_of_candidates = true;
        if !rtc.config.ice_lite {
            m.ice_options = vec!["trickle".into()];
        }
        if m.is_sctp() {
            // What *we* accept (RFC 8841 §6): the transport's receive limit.
            let ours = rtc
                .sctp
                .as_ref()
                .map_or(crate::sctp::MAX_MESSAGE_SIZE, |s| s.max_message_size());
            m.max_message_size = Some(ours as u64);
        }
        if let Some(mid) = &m.mid {
            bundle.push(mid.clone());
        }
    }
    if !bundle.is_empty() {
        desc.groups.push(Group {
            semantics: "BUNDLE".into(),
            mids: bundle,
        });
    }
    desc.media = media;
    desc
}

/// The ICE credentials and DTLS fingerprint a remote description gives for its section
/// `first` (session-level values where the section has none).
fn remote_transport<'a>(
    sdp: &'a SessionDescription,
    first: &'a MediaSection,
) -> Result<(&'a str, &'a str, Fingerprint), RtcError> {
    let (ufrag, pwd) = sdp
        .ice_credentials(first)
        .ok_or(RtcError::Sdp(JsepError::MissingIceCredentials))?;
    let fp = sdp
        .fingerprints_for(first)
        .first()
        .ok_or(RtcError::Sdp(JsepError::MissingFingerprint))?;
    let remote = Fingerprint {
        hash_func: fp.algorithm.to_ascii_lowercase(),
        bytes: fp.bytes.clone(),
    };
    Ok((ufrag, pwd, remote))
}
