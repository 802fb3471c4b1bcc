//! Sessions: creation, closing and removal.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc_core::dtls::DtlsCert;
use rtc_core::ice::{Candidate, IceConnectionState, IceCreds};
use rtc_core::media::Mid;
use rtc_core::rtp::Extension;
use rtc_core::sdp_api::SdpOffer;
use rtc_core::{Protocol, Rtc, RtcError};

use super::layers::video_codec;
use super::{Session, Shard, guarded, touch};
use crate::api::{
    CloseReason, EngineError, EngineEvent, MediaDesc, SessionId, SessionInfo, SessionSetup,
};
use crate::forward::{PayloadDesc, repair_pts};
use crate::io::IoBackend;
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
        })
        .collect()
}

/// A session built and negotiated off the shard thread (SDP parsing and offer/answer
/// can take long on a large offer and must not stall a shard's media), ready for
/// [`Shard::install_session`].
pub(crate) struct Prepared {
    rtc: Rtc,
    ufrag: String,
    /// Payload type → media section, for packets whose SSRC the `Rtc` cannot place.
    pt_mid: Vec<(u8, Mid)>,
    repair_pts: u128,
    /// What the caller gets back (the shard index is filled in on installation).
    info: SessionInfo,
}

/// What [`prepare_session`] needs from the shard it is meant for.
pub(crate) struct SessionParams<'a> {
    /// The shard's DTLS certificate.
    pub cert: &'a DtlsCert,
    /// Packets kept per stream for retransmission.
    pub rtx_buffer_packets: usize,
    /// The shard's announced addresses (host candidates).
    pub announced: &'a [SocketAddr],
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
    let announced = params.announced;
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
            // Probes are padding: RTX copies of forwarded packets would reach receivers
            // as duplicates, and legs answering NACKs from the shared cache hold no ring.
            .set_probe_redundancy(false)
            .set_dtls_cert(cert)
            .set_local_ice_credentials(creds)
            .set_rtx_buffer(rtx_packets, Duration::from_secs(2))
            .build(now)?;
        let mut candidates = Vec::new();
        for a in announced {
            let c = Candidate::host(*a, Protocol::Udp)?;
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
    let mut pt_mid: Vec<(u8, Mid)> = Vec::new();
    let mut ambiguous: Vec<u8> = Vec::new();
    for m in &media {
        for p in &m.payloads {
            if pt_mid.iter().any(|(pt, _)| *pt == p.pt) {
                ambiguous.push(p.pt);
            } else {
                pt_mid.push((p.pt, m.mid));
            }
        }
    }
    pt_mid.retain(|(pt, _)| !ambiguous.contains(pt));
    let repair_pts = media
        .iter()
        .fold(0u128, |acc, m| acc | repair_pts(&m.payloads));
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
        for (_, key, _) in &s.legs {
            if let Some(r) = self.routes.get_mut(key) {
                r.legs.retain(|l| l.sub != s.id);
                if r.is_empty() {
                    self.routes.remove(key);
                }
            }
        }
        self.free.push(slot);
        self.ctx.gauge.fetch_sub(1, Ordering::Relaxed);
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
        let pt_codec: Vec<(u8, VideoCodec)> = info
            .media
            .iter()
            .flat_map(|m| m.payloads.iter())
            .map(|p| (p.pt, video_codec(&p.codec)))
            .filter(|(_, c)| *c != VideoCodec::Other)
            .collect();
        let infos: Vec<rtc_core::media::MediaInfo> = rtc
            .media()
            .map(|(m, _)| m)
            .collect::<Vec<Mid>>()
            .into_iter()
            .filter_map(|m| rtc.media_info(m).cloned())
            .collect();
        let rx_ext = infos
            .iter()
            .map(|i| (i.mid, i.extensions.clone()))
            .collect();
        let session = Session {
            id,
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
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
            last_srtp_errors: 0,
            last_dropped: 0,
            panic_next: false,
            ice_state: IceConnectionState::New,
            track_stats: Vec::new(),
            rtt: None,
            channels: Vec::new(),
            rx_counts: Vec::new(),
            connected: false,
        };
        let slot = self.alloc_slot(session);
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            touch(s, slot, &mut self.touched);
        }
        self.by_id.insert(id, slot);
        self.by_ufrag.insert(ufrag, slot);
        self.connect_deadlines
            .push_back((now + self.ctx.connect_timeout, slot, id));
        self.ctx.gauge.fetch_add(1, Ordering::Relaxed);
        Ok(Some(info))
    }

    /// Puts a session in a free slot (or a new one) and returns the slot.
    fn alloc_slot(&mut self, session: Session) -> usize {
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
