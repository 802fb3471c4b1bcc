//! Sessions: creation, closing and removal.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc_core::ice::{Candidate, IceConnectionState, IceCreds};
use rtc_core::media::Mid;
use rtc_core::rtp::Extension;
use rtc_core::sdp_api::SdpOffer;
use rtc_core::{Protocol, Rtc, RtcError};

use super::{Session, Shard, guarded, touch};
use crate::api::{
    CloseReason, EngineError, EngineEvent, MediaDesc, SessionId, SessionInfo, SessionSetup,
};
use crate::forward::{PayloadDesc, repair_pts};
use crate::io::IoBackend;

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
        let _ = self
            .ctx
            .events_tx
            .try_send(EngineEvent::SessionClosed(s.id, reason));
        let _ = self.ctx.gone_tx.try_send(s.id);
    }

    pub(super) fn create_session(
        &mut self,
        id: SessionId,
        setup: SessionSetup,
        now: Instant,
    ) -> Result<SessionInfo, EngineError> {
        let mut creds = IceCreds::random();
        while self.by_ufrag.contains_key(&creds.ufrag) {
            creds = IceCreds::random();
        }
        let cert = self.ctx.cert.clone();
        let rtx_packets = self.ctx.rtx_buffer_packets;
        let announced = self.ctx.announced.clone();
        let ufrag = creds.ufrag.clone();
        let local_ice = creds.clone();
        let built = catch_unwind(AssertUnwindSafe(move || -> Result<_, RtcError> {
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                // Forwarded packets carry no transport-wide sequence numbers yet,
                // so there is no estimate to pace to; the allocator will drive
                // `Rtc::set_send_rate` / `request_probe` when it does.
                .set_pacing(false)
                .set_dtls_cert(cert)
                .set_local_ice_credentials(creds)
                .set_rtx_buffer(rtx_packets, Duration::from_secs(2))
                .build(now)?;
            let mut candidates = Vec::new();
            for a in &announced {
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
            Ok((rtc, candidates, answer))
        }));
        let (rtc, candidates, answer) = match built {
            Ok(r) => r?,
            Err(_) => {
                self.c.panics += 1;
                return Err(EngineError::SessionPanicked(id));
            }
        };
        let media = media_descs(&rtc);
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
        let repair = media
            .iter()
            .fold(0u128, |acc, m| acc | repair_pts(&m.payloads));
        let fingerprint = rtc.local_fingerprint().clone();
        let session = Session {
            id,
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            timer_at: now,
            heap_at: None,
            touched: false,
            pt_mid,
            repair_pts: repair,
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
        };
        let slot = self.alloc_slot(session);
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            touch(s, slot, &mut self.touched);
        }
        self.by_id.insert(id, slot);
        self.by_ufrag.insert(ufrag, slot);
        self.ctx.gauge.fetch_add(1, Ordering::Relaxed);
        Ok(SessionInfo {
            id,
            shard: self.ctx.index,
            answer,
            local_ice,
            fingerprint,
            candidates,
            candidate_addrs: self.ctx.announced.clone(),
            media,
        })
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
