//! Sessions: creation, closing and removal.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc_core::dtls::DtlsCert;
use rtc_core::ice::{Candidate, IceConnectionState, IceCreds};
use rtc_core::media::MediaKind;
use rtc_core::media::Mid;
use rtc_core::rtp::Extension;
use rtc_core::sdp::Direction;
use rtc_core::sdp::IceFragment;
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rtc, RtcError};

use super::layers::video_codec;
use super::{Session, Shard, guarded, touch};
use crate::api::{
    CloseReason, EngineError, EngineEvent, MediaDesc, SessionId, SessionInfo, SessionSetup,
};
use crate::forward::{PayloadDesc, repair_pts};
use crate::io::{IoBackend, SendHint};
use crate::sfu::allocator::{Allocator, AllocatorConfig, RateDrive};
use crate::sfu::codec::VideoCodec;

fn media_descs(rtc: &Rtc) -> Vec<MediaDesc> {
    let mids: Vec<Mid> = rtc.media().map(|(m, _)| m).collect();
    mids.iter()
        .filter_map(|m| rtc.media_info(*m))
        .map(|info| MediaDesc {
            mid: info.mid,
            kind: info.kind,
            direction: info.direction,
            payloads: info
                .payloads
                .iter()
                .map(|p| PayloadDesc {
                    pt: p.pt,
                    codec: p.codec.clone(),
                    clock_rate: p.clock_rate,
                })
                .collect(),
            mid_ext_id: info.extensions.id_of(Extension::Mid),
            tx_ssrc: rtc.tx_ssrc(info.mid),
            nack: info.payloads.is_empty()
                || info
                    .payloads
                    .iter()
                    .any(|p| p.rtcp_fb.iter().any(|f| f == "nack")),
        })
        .collect()
}

/// Payload type → media section (types two sections share are left out: the SSRC
/// decides for them) and the set of repair payload types.
fn routing_tables(media: &[MediaDesc]) -> (Vec<(u8, Mid)>, u128) {
    let mut pt_mid: Vec<(u8, Mid)> = Vec::new();
    let mut ambiguous: Vec<u8> = Vec::new();
    for m in media {
        for p in &m.payloads {
            if pt_mid.iter().any(|(pt, _)| *pt == p.pt) {
                ambiguous.push(p.pt);
            } else {
                pt_mid.push((p.pt, m.mid));
            }
        }
    }
    pt_mid.retain(|(pt, _)| !ambiguous.contains(pt));
    let repair = media
        .iter()
        .fold(0u128, |acc, m| acc | repair_pts(&m.payloads));
    (pt_mid, repair)
}

fn video_codecs(media: &[MediaDesc]) -> Vec<(u8, VideoCodec)> {
    media
        .iter()
        .flat_map(|m| m.payloads.iter())
        .map(|p| (p.pt, video_codec(&p.codec)))
        .filter(|(_, c)| *c != VideoCodec::Other)
        .collect()
}

fn ext_maps(rtc: &Rtc) -> Vec<(Mid, rtc_core::rtp::ExtensionMap)> {
    let mids: Vec<Mid> = rtc.media().map(|(m, _)| m).collect();
    let mut maps: Vec<_> = mids
        .into_iter()
        .filter_map(|m| rtc.media_info(m))
        .map(|i| (i.mid, i.extensions.clone()))
        .collect();
    // Kept for the session's life: no room for four 270-byte maps per section.
    maps.shrink_to_fit();
    maps
}

/// A change to a live session's negotiation, parsed off the shard thread.
pub(crate) enum SdpChange {
    /// The peer's new offer (JSEP re-offer: added/removed sections, ICE restart).
    Offer(Box<SdpOffer>),
    /// A trickle ICE fragment (RFC 8840): candidates, or new credentials (ICE restart).
    IceFragment(Box<IceFragment>),
    /// Make our own offer: sections to add and to remove, ICE restart.
    MakeOffer {
        add: Vec<(MediaKind, Direction)>,
        remove: Vec<Mid>,
        ice_restart: bool,
    },
    /// The peer's answer to our pending offer.
    Answer(Box<SdpAnswer>),
}

/// What a [`SdpChange`] did to a session.
pub(crate) struct Renegotiated {
    /// Our SDP answer (for an offer).
    pub answer: Option<String>,
    /// Our ICE fragment (for a fragment that restarted ICE).
    pub fragment: Option<String>,
    /// Our offer (for [`SdpChange::MakeOffer`]).
    pub offer: Option<String>,
    /// The session's media sections afterwards.
    pub media: Vec<MediaDesc>,
    /// The session's local ICE credentials changed (ICE restart).
    pub ice_restarted: bool,
}

/// A session built and negotiated off the shard thread (SDP parsing and offer/answer
/// can take long on a large offer and must not stall a shard's media), ready for
/// [`Shard::install_session`].
pub(crate) struct Prepared {
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    /// Payload type → media section, for packets whose SSRC the `Rtc` cannot place.
    pub(super) pt_mid: Vec<(u8, Mid)>,
    pub(super) repair_pts: u128,
    /// What the caller gets back (the shard index is filled in on installation).
    pub(super) info: SessionInfo,
}

/// What [`prepare_session`] needs from the shard it is meant for.
pub(crate) struct SessionParams<'a> {
    /// The shard's DTLS certificate.
    pub cert: &'a DtlsCert,
    /// Packets kept per stream for retransmission.
    pub rtx_buffer_packets: usize,
    /// The pacer's burst allowance ([`EngineConfig::pacing_burst`](crate::EngineConfig::pacing_burst)).
    pub pacing_burst: Duration,
    /// Opus RED negotiation.
    pub opus_red: rtc_core::sdp::OpusRed,
    /// DTLS versions allowed.
    pub dtls_versions: rtc_core::dtls::DtlsVersions,
    /// The shard's announced addresses (host candidates).
    pub announced: &'a [SocketAddr],
    /// The shard's announced ICE-TCP addresses (passive TCP host candidates).
    pub announced_tcp: &'a [SocketAddr],
}

/// Builds a session's `Rtc` (ICE-lite, RTP mode) and applies its set-up: accepts the
/// offer or the direct parameters. Runs on the calling (control) thread; a panic in the
/// `Rtc` during set-up is caught and reported as [`EngineError::SessionPanicked`].
pub(crate) fn prepare_session(
    id: SessionId,
    setup: SessionSetup,
    params: &SessionParams<'_>,
    now: Instant,
) -> Result<Prepared, EngineError> {
    let creds = IceCreds::random();
    let cert = params.cert.clone();
    let rtx_packets = params.rtx_buffer_packets;
    let pacer = rtc_core::pacer::PacerConfig {
        burst: params.pacing_burst,
        ..rtc_core::pacer::PacerConfig::default()
    };
    let (opus_red, dtls_versions) = (params.opus_red, params.dtls_versions);
    let announced = params.announced;
    let announced_tcp = params.announced_tcp;
    let ufrag = creds.ufrag.clone();
    let local_ice = creds.clone();
    let built = catch_unwind(AssertUnwindSafe(move || -> Result<_, RtcError> {
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            // Forwarded packets carry transport-wide sequence numbers when the peer
            // negotiated them: the pacer paces to the estimate from its feedback (or to
            // what the allocator forwards, when more) and its probes let the estimate
            // grow; the allocator drives `set_send_rate` / `request_probe`
            // (`drive::drive_rate`). Without transport-cc nothing is paced.
            .set_pacing(true)
            .set_pacer_config(pacer)
            // Probes are padding: RTX copies of forwarded packets would reach receivers
            // as duplicates, and legs answering NACKs from the shared cache hold no ring.
            .set_probe_redundancy(false)
            .set_dtls_cert(cert)
            .set_local_ice_credentials(creds)
            .set_rtx_buffer(rtx_packets, Duration::from_secs(2))
            .set_opus_red(opus_red)
            .set_dtls_versions(dtls_versions)
            .build(now)?;
        let mut candidates = Vec::new();
        for a in announced {
            let c = Candidate::host(*a, Protocol::Udp)?;
            candidates.push(c.to_sdp_string());
            rtc.add_local_candidate(c);
        }
        // RFC 6544 passive candidates: the peer connects, the shard never does.
        for a in announced_tcp {
            let c = Candidate::host(*a, Protocol::Tcp)?;
            candidates.push(c.to_sdp_string());
            rtc.add_local_candidate(c);
        }
        let answer = match setup {
            SessionSetup::Offer(sdp) => {
                let offer = SdpOffer::from_sdp_string(&sdp)?;
                let answer = rtc.sdp_api().accept_offer(offer)?;
                Some(answer.to_sdp_string())
            }
            SessionSetup::Direct(p) => {
                let mut api = rtc.direct_api();
                api.set_remote_ice_credentials(p.remote_ice);
                api.set_remote_fingerprint(p.remote_fingerprint);
                api.set_ice_controlling(false);
                api.start_dtls(p.dtls_active)?;
                for (mid, kind) in &p.media {
                    api.declare_media(*mid, *kind);
                }
                for (mid, ssrc) in &p.rx_ssrcs {
                    api.expect_stream_rx(*mid, *ssrc)?;
                }
                None
            }
        };
        let media = media_descs(&rtc);
        Ok((rtc, candidates, answer, media))
    }));
    let (rtc, candidates, answer, media) = match built {
        Ok(r) => r?,
        Err(_) => return Err(EngineError::SessionPanicked(id)),
    };
    let (pt_mid, repair_pts) = routing_tables(&media);
    let fingerprint = rtc.local_fingerprint().clone();
    Ok(Prepared {
        rtc,
        ufrag,
        pt_mid,
        repair_pts,
        info: SessionInfo {
            id,
            shard: 0,
            answer,
            local_ice,
            fingerprint,
            candidates,
            candidate_addrs: announced.to_vec(),
            media,
        },
    })
}

impl Shard {
    /// Removes sessions recorded as failed or panicked.
    pub(super) fn bury(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            if let Some(&slot) = self.by_id.get(&id) {
                self.remove_session(slot, reason);
            }
        }
    }

    /// Records the session in `slot` for removal at the next [`Shard::bury`].
    pub(super) fn doom(&mut self, slot: usize, reason: CloseReason) {
        if let Some(Some(s)) = self.sessions.get(slot) {
            self.doomed.push((s.id, reason));
        }
    }

    pub(super) fn remove_session(&mut self, slot: usize, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if !s.connected
            && matches!(
                reason,
                CloseReason::Failed | CloseReason::ConnectTimeout | CloseReason::Panicked
            )
        {
            self.c.handshake_failures += 1;
        }
        if reason == CloseReason::Panicked {
            self.c.panics += 1;
            tracing::warn!(shard = self.ctx.index, session = %s.id, "session panicked; removed");
        }
        self.by_id.remove(&s.id);
        self.by_ufrag.remove(&s.ufrag);
        self.speakers.remove_track(s.id);
        for a in &s.addrs {
            if self.by_addr.get(a) == Some(&slot) {
                self.by_addr.remove(a);
            }
        }
        for a in &s.tcp_addrs {
            if self.by_tcp.get(a) == Some(&slot) {
                self.by_tcp.remove(a);
                self.tcp_verdicts
                    .push((*a, crate::io::TcpVerdict::SessionGone));
            }
        }
        for (_, key, _) in &s.legs {
            if let Some(r) = self.routes.get_mut(key) {
                r.legs.retain(|l| l.sub != s.id);
                if r.is_empty() {
                    self.routes.remove(key);
                }
            }
        }
        self.free.push(slot);
        if self.by_id.is_empty() {
            // The last session left: release the slot table (it keeps the peak number
            // of sessions otherwise). Slots held elsewhere (timers, connect deadlines,
            // touched) are checked against the session id or looked up with `get`.
            self.sessions = Vec::new();
            self.free = Vec::new();
        }
        self.ctx.gauge.fetch_sub(1, Ordering::Relaxed);
        self.relay_removed(s.id, reason, Instant::now());
        // Both channels are unbounded: these sends fail only when the engine handle is
        // gone, and then nobody is left to tell.
        let _ = self
            .ctx
            .closed_tx
            .send(EngineEvent::SessionClosed(s.id, reason));
        let _ = self.ctx.gone_tx.send(s.id);
    }

    /// Installs a session built by [`prepare_session`]. `Ok(None)`: its ICE ufrag is
    /// already taken on this shard (the caller builds it again with fresh credentials).
    ///
    /// # Errors
    ///
    /// [`EngineError::ShardFull`] when the shard holds its maximum of sessions.
    pub(super) fn install_session(
        &mut self,
        p: Prepared,
        now: Instant,
    ) -> Result<Option<SessionInfo>, EngineError> {
        if self.by_id.len() >= self.ctx.max_sessions {
            return Err(EngineError::ShardFull {
                shard: self.ctx.index,
                limit: self.ctx.max_sessions,
            });
        }
        if self.by_ufrag.contains_key(&p.ufrag) || self.by_id.contains_key(&p.info.id) {
            return Ok(None);
        }
        let Prepared {
            rtc,
            ufrag,
            pt_mid,
            repair_pts,
            mut info,
        } = p;
        let id = info.id;
        info.shard = self.ctx.index;
        let pt_codec = video_codecs(&info.media);
        let rx_ext = ext_maps(&rtc);
        let session = Session {
            id,
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            tcp_addrs: Vec::new(),
            timer_at: now,
            heap_at: None,
            touched: false,
            pt_mid,
            pt_codec,
            rx_ext,
            // Video is never paused for bandwidth: a paused leg sends nothing for the
            // estimate to measure (and a leg without RTX cannot probe with padding).
            alloc: Allocator::new(AllocatorConfig {
                base_always: true,
                ..AllocatorConfig::default()
            }),
            rate: RateDrive::new(),
            estimate: None,
            estimate_override: None,
            repair_pts,
            rx_ssrcs: Vec::new(),
            legs: Vec::new(),
            pins: Vec::new(),
            ssrc_layers: Vec::new(),
            last_srtp_errors: 0,
            last_dropped: 0,
            panic_next: false,
            send_hint: SendHint::default(),
            ice_state: IceConnectionState::New,
            track_stats: Vec::new(),
            rtt: None,
            channels: Vec::new(),
            rx_counts: Vec::new(),
            connected: false,
            created: now,
            pending_offer: None,
        };
        let slot = self.alloc_slot(session);
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            touch(s, slot, &mut self.touched);
        }
        self.by_id.insert(id, slot);
        self.reserve_timers();
        self.by_ufrag.insert(ufrag, slot);
        self.connect_deadlines
            .push_back((now + self.ctx.connect_timeout, slot, id));
        self.ctx.gauge.fetch_add(1, Ordering::Relaxed);
        Ok(Some(info))
    }

    /// Applies a new offer or an ICE fragment to a live session, then refreshes what
    /// the shard derived from its negotiation (routing by payload type, extension maps,
    /// codecs, the ufrag STUN is routed by). Legs on sections the offer removed are
    /// removed by the caller (the registry knows them).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`], [`EngineError::Rtc`] when the `Rtc` refuses the
    /// change (it is then unchanged), [`EngineError::SessionPanicked`] (the session is
    /// removed).
    pub(super) fn renegotiate(
        &mut self,
        id: SessionId,
        change: SdpChange,
    ) -> Result<Renegotiated, EngineError> {
        let slot = *self.by_id.get(&id).ok_or(EngineError::UnknownSession(id))?;
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return Err(EngineError::UnknownSession(id));
        };
        // Only an answer consumes our pending offer; a refused answer drops it (the peer
        // must be offered again).
        let pending = if matches!(change, SdpChange::Answer(_)) {
            s.pending_offer.take().map(|p| *p)
        } else {
            None
        };
        let out = guarded(s, move |rtc| -> Result<_, RtcError> {
            Ok(match change {
                SdpChange::Offer(offer) => {
                    let answer = rtc.sdp_api().accept_offer(*offer)?;
                    // The peer's offer supersedes one of ours (glare: ours is rolled back).
                    (Some(answer.to_sdp_string()), None, None, Some(None))
                }
                SdpChange::IceFragment(frag) => {
                    let ours = rtc.sdp_api().accept_ice_fragment(&frag)?;
                    (None, ours.map(|f| f.to_sdpfrag()), None, None)
                }
                SdpChange::MakeOffer {
                    add,
                    remove,
                    ice_restart,
                } => {
                    let mut api = rtc.sdp_api();
                    for (kind, dir) in add {
                        api.add_media(kind, dir);
                    }
                    for mid in remove {
                        api.remove_media(mid)?;
                    }
                    if ice_restart {
                        api.ice_restart();
                    }
                    match api.apply() {
                        Some((offer, p)) => {
                            let p = Box::new(p);
                            (None, None, Some(offer.to_sdp_string()), Some(Some(p)))
                        }
                        None => {
                            return Err(RtcError::InvalidState("the offer would change nothing"));
                        }
                    }
                }
                SdpChange::Answer(answer) => {
                    let Some(p) = pending else {
                        return Err(RtcError::InvalidState("no offer awaits an answer"));
                    };
                    rtc.sdp_api().accept_answer(p, *answer)?;
                    (None, None, None, Some(None))
                }
            })
        });
        let (answer, fragment, offer, pending) = match out {
            Ok(r) => r?,
            Err(()) => {
                self.remove_session(slot, CloseReason::Panicked);
                return Err(EngineError::SessionPanicked(id));
            }
        };
        if let Some(p) = pending {
            s.pending_offer = p;
        }
        let ufrag = s.rtc.direct_api().local_ice_credentials().ufrag;
        let media = media_descs(&s.rtc);
        let (pt_mid, repair) = routing_tables(&media);
        s.pt_mid = pt_mid;
        s.repair_pts = repair;
        s.pt_codec = video_codecs(&media);
        s.rx_ext = ext_maps(&s.rtc);
        let ice_restarted = ufrag != s.ufrag;
        if ice_restarted {
            let old = std::mem::replace(&mut s.ufrag, ufrag.clone());
            if self.by_ufrag.get(&old) == Some(&slot) {
                self.by_ufrag.remove(&old);
            }
            // 48 random bits: a collision with another live session is practically
            // impossible; should it happen, STUN to that ufrag keeps reaching the
            // other session and this one is found by address.
            self.by_ufrag.entry(ufrag).or_insert(slot);
        }
        Ok(Renegotiated {
            answer,
            fragment,
            offer,
            media,
            ice_restarted,
        })
    }

    /// Puts a session in a free slot (or a new one) and returns the slot.
    fn alloc_slot(&mut self, session: Session) -> usize {
        // Boxed: the slot table then holds a pointer per slot, not a whole `Session`
        // (~18 KiB with its `Rtc`) for every slot its doubling growth reserves.
        let session = Box::new(session);
        while let Some(i) = self.free.pop() {
            if let Some(entry @ None) = self.sessions.get_mut(i) {
                *entry = Some(session);
                return i;
            }
        }
        self.sessions.push(Some(session));
        self.sessions.len() - 1
    }

    pub(super) fn close_session(
        &mut self,
        slot: usize,
        now: Instant,
        backend: &mut dyn IoBackend,
        reason: CloseReason,
    ) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            if guarded(s, |rtc| rtc.disconnect()).is_err() {
                self.remove_session(slot, CloseReason::Panicked);
                return;
            }
            self.drain(slot, now, backend);
        }
        self.remove_session(slot, reason);
    }

    /// Closes sessions whose connect deadline passed before they connected
    /// ([`CloseReason::ConnectTimeout`]).
    pub(super) fn reap_unconnected(&mut self, now: Instant, backend: &mut dyn IoBackend) {
        while let Some(&(at, slot, id)) = self.connect_deadlines.front() {
            if at > now {
                break;
            }
            self.connect_deadlines.pop_front();
            let pending = matches!(
                self.sessions.get(slot),
                Some(Some(s)) if s.id == id && !s.connected
            );
            if pending {
                self.c.connect_timeouts += 1;
                tracing::debug!(shard = self.ctx.index, session = %id, "not connected in time; closed");
                self.close_session(slot, now, backend, CloseReason::ConnectTimeout);
            }
        }
    }

    pub(super) fn close_all(
        &mut self,
        now: Instant,
        backend: &mut dyn IoBackend,
        reason: CloseReason,
    ) -> usize {
        let slots: Vec<usize> = self.by_id.values().copied().collect();
        for slot in &slots {
            self.close_session(*slot, now, backend, reason);
        }
        self.bury();
        slots.len()
    }
}
