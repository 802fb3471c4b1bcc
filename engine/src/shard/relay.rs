//! Relay sessions between engines, the shard side.
//!
//! A relay is a session like any other (one `Rtc`, one UDP 5-tuple, DTLS-SRTP) whose peer
//! is another engine. On the sending engine its media sections are subscriber slots: each
//! relayed track is ordinary legs (downtrack, NACKs answered from the layer caches,
//! keyframe requests upstream), one per simulcast layer for video, each pinned to its
//! layer and sending on its own SSRC. On the receiving engine a relayed track is one
//! published section whose SSRCs are its layers (as the sending engine signalled them),
//! with their layer caches, which local subscribers take like any publisher's. This module adds what a relay has and a
//! browser session has not:
//!
//! - a **keepalive**: both ends send a small SRTP packet on the keepalive section every
//!   `keepalive` (its RTCP reports give the relay's RTT even without media);
//! - **liveness**: a relay whose peer sent nothing authenticated (SRTP or SRTCP) for
//!   `timeout` is closed ([`CloseReason::Failed`]) and reported as
//!   [`EngineEvent::RelayDown`];
//! - a **clean end** for subscribers of relayed tracks: when the relay goes, or the peer
//!   ends a track (RTCP BYE), every leg of the track sends an RTCP BYE on its SSRC and
//!   is removed — on the relay's shard and on every shard the track is forwarded to
//!   (each told by a `DataMsg::EndRoute`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rtc_core::dtls::{DtlsCert, Fingerprint};
use rtc_core::ice::{Candidate, IceCreds};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::{Protocol, Rtc, RtcError};

use super::layers::video_codec;
use super::{DataMsg, RouteKey, Shard, guarded, touch};
use crate::api::{CloseReason, EngineError, EngineEvent, SessionId};
use crate::forward::{PayloadDesc, repair_pts};
use crate::io::IoBackend;
use crate::sfu::codec::VideoCodec;

/// The media section both ends of a relay send keepalives on.
pub(crate) const KEEPALIVE_MID: &str = "ka";
/// Payload type of keepalive packets.
const KEEPALIVE_PT: u8 = 127;
/// The estimate a relay's allocator works with: an unpinned leg (audio, plain egress)
/// forwards the best layer there is.
const RELAY_ESTIMATE_BPS: u64 = 100_000_000_000;

/// The keepalive section's mid.
pub(crate) fn keepalive_mid() -> Mid {
    // "ka" is a valid mid (short, token characters).
    Mid::new(KEEPALIVE_MID).expect("a valid constant mid")
}

/// What the control side tells a shard about a relay session it installed.
#[derive(Debug, Clone)]
pub(crate) struct RelaySetup {
    /// Our keepalive SSRC.
    pub keepalive_ssrc: u32,
    /// The peer's keepalive SSRC, when known.
    pub peer_keepalive_ssrc: Option<u32>,
    /// Keepalive interval (`None`: send none, as for plain RTP peers).
    pub keepalive: Option<Duration>,
    /// Silence after which the relay is down (`None`: never, as for a plain RTP
    /// egress whose receiver sends nothing back).
    pub timeout: Option<Duration>,
    /// A plain RTP session (no ICE, no DTLS): its address must be free on the shard
    /// (it is refused otherwise), and its end is no `relay.down`.
    pub plain: bool,
    /// The peer's address, for the connecting side (its ICE responses and media come
    /// from there before any check of ours could teach it).
    pub remote: Option<std::net::SocketAddr>,
}

/// One end of a relay, built off the shard like any session.
pub(crate) struct RelayEnd<'a> {
    /// The shard's DTLS certificate.
    pub cert: &'a DtlsCert,
    /// Packets kept per stream for retransmission.
    pub rtx_buffer_packets: usize,
    /// The shard's announced addresses.
    pub announced: &'a [std::net::SocketAddr],
    /// Connecting side: the listening engine's credentials, fingerprint and address.
    /// `None`: the listening side (ICE-lite, DTLS server), whose peer is set later.
    pub peer: Option<(IceCreds, Fingerprint, std::net::SocketAddr)>,
}

/// Builds a relay session's `Rtc`: RTP mode, DTLS-SRTP, a keepalive section. The
/// connecting side is a full ICE agent (controlling, DTLS client) with the listener as
/// its remote candidate; the listening side is ICE-lite (DTLS server).
pub(crate) fn prepare_relay(
    id: SessionId,
    end: &RelayEnd<'_>,
    now: Instant,
) -> Result<super::Prepared, EngineError> {
    prepare_with(id, end.announced.to_vec(), |creds| {
        let mut rtc = Rtc::builder()
            .set_ice_lite(end.peer.is_none())
            .set_rtp_mode(true)
            .set_pacing(false)
            .set_dtls_cert(end.cert.clone())
            .set_local_ice_credentials(creds)
            .set_rtx_buffer(end.rtx_buffer_packets, Duration::from_secs(2))
            .build(now)?;
        for a in end.announced {
            rtc.add_local_candidate(Candidate::host(*a, Protocol::Udp)?);
        }
        let mut api = rtc.direct_api();
        match &end.peer {
            Some((ice, fp, addr)) => {
                api.set_remote_ice_credentials(ice.clone());
                api.set_remote_fingerprint(fp.clone());
                api.set_ice_controlling(true);
                api.start_dtls(true)?;
                api.declare_media(keepalive_mid(), MediaKind::Audio);
                rtc.add_remote_candidate(Candidate::host(*addr, Protocol::Udp)?);
                // The send stream (and its SSRC) that keepalives go on: reports
                // on it give the RTT.
                let _ = rtc.stream_tx(keepalive_mid());
            }
            None => {
                api.set_ice_controlling(false);
                api.start_dtls(false)?;
                api.declare_media(keepalive_mid(), MediaKind::Audio);
                let _ = rtc.stream_tx(keepalive_mid());
            }
        }
        Ok(rtc)
    })
}

/// Builds a session's `Rtc` with `build` (given fresh local ICE credentials) under
/// `catch_unwind`, and wraps it as a [`super::Prepared`] with no media sections yet,
/// announcing `candidate_addrs`: the part relay and plain sessions share.
fn prepare_with(
    id: SessionId,
    candidate_addrs: Vec<std::net::SocketAddr>,
    build: impl FnOnce(IceCreds) -> Result<Rtc, RtcError>,
) -> Result<super::Prepared, EngineError> {
    let creds = IceCreds::random();
    let ufrag = creds.ufrag.clone();
    let local_ice = creds.clone();
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || build(creds)));
    let rtc = match built {
        Ok(r) => r?,
        Err(_) => return Err(EngineError::SessionPanicked(id)),
    };
    let fingerprint = rtc.local_fingerprint().clone();
    Ok(super::Prepared {
        rtc,
        ufrag,
        pt_mid: Vec::new(),
        repair_pts: 0,
        info: crate::api::SessionInfo {
            id,
            shard: 0,
            answer: None,
            local_ice,
            fingerprint,
            candidates: Vec::new(),
            candidate_addrs,
            media: Vec::new(),
        },
    })
}

impl super::Prepared {
    /// The session id it is built for.
    pub(crate) fn id(&self) -> SessionId {
        self.info.id
    }

    /// Its ICE credentials.
    pub(crate) fn local_ice(&self) -> &IceCreds {
        &self.info.local_ice
    }

    /// Its DTLS fingerprint.
    pub(crate) fn fingerprint(&self) -> &Fingerprint {
        &self.info.fingerprint
    }

    /// The SSRC of its keepalive stream.
    pub(crate) fn keepalive_ssrc(&self) -> Option<u32> {
        self.rtc.tx_ssrc(keepalive_mid())
    }
}

/// Sets the peer of a listening relay end (before it is installed).
pub(crate) fn accept_relay(
    p: &mut super::Prepared,
    ice: IceCreds,
    fingerprint: Fingerprint,
) -> Result<(), EngineError> {
    let id = p.info.id;
    let rtc = &mut p.rtc;
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut api = rtc.direct_api();
        api.set_remote_ice_credentials(ice);
        api.set_remote_fingerprint(fingerprint);
    }));
    done.map_err(|_| EngineError::SessionPanicked(id))
}

/// A relayed track's RTX: its SSRC and (payload type, RTX payload type) pairs.
pub(crate) type RtxSpec = (u32, Vec<(u8, u8)>);

/// One layer of a relayed simulcast track: (layer index, SSRC, RTX SSRC).
pub(crate) type RelayLayerSpec = (u8, u32, u32);

/// Relay commands (one [`super::Command::Relay`] variant carries them).
pub(crate) enum RelayCmd {
    /// Marks an installed session as a relay.
    Register {
        id: SessionId,
        setup: RelaySetup,
        reply: Sender<Result<(), EngineError>>,
    },
    /// Sending side: a media section for a relayed track; the reply is the SSRC of its
    /// send stream (the `Rtc` keeps its RTX ring and reports under it).
    DeclareTx {
        id: SessionId,
        mid: Mid,
        kind: MediaKind,
        /// (payload type, its RTX payload type).
        rtx: Vec<(u8, u8)>,
        /// (SSRC, RTX SSRC).
        reply: Sender<Option<(u32, u32)>>,
    },
    /// Sending side: ends the relayed streams `ssrcs` (one RTCP BYE to the peer naming
    /// every layer's stream of a track).
    EndTx {
        id: SessionId,
        ssrcs: Vec<u32>,
        reply: Sender<bool>,
    },
    /// Receiving side: a relayed track arrives on section `mid` with SSRC `ssrc`, or, for
    /// a simulcast track, one stream per layer (`layers`: layer, SSRC, RTX SSRC).
    Attach {
        id: SessionId,
        mid: Mid,
        kind: MediaKind,
        ssrc: u32,
        /// RTX SSRC and (payload type, RTX payload type) pairs.
        rtx: RtxSpec,
        layers: Vec<RelayLayerSpec>,
        payloads: Vec<PayloadDesc>,
        reply: Sender<Result<(), EngineError>>,
    },
    /// Receiving side: a relayed track ended: its local subscribers get a BYE.
    Detach {
        id: SessionId,
        mid: Mid,
        reply: Sender<usize>,
    },
    /// Liveness of a relay: time since the peer was last heard from.
    Silence {
        id: SessionId,
        reply: Sender<Option<Duration>>,
    },
}

/// A relay's keepalive and liveness state.
pub(crate) struct RelayState {
    setup: RelaySetup,
    ka_seq: u16,
    next_keepalive: Instant,
    /// Authenticated packets (SRTP + SRTCP) received when last counted.
    heard: u64,
    last_heard: Instant,
    /// The silence window passed (the close reports it).
    timed_out: bool,
}

impl Shard {
    pub(super) fn on_relay_command(&mut self, cmd: RelayCmd, now: Instant) {
        match cmd {
            RelayCmd::Register { id, setup, reply } => {
                let _ = reply.send(self.relay_register(id, setup, now));
            }
            RelayCmd::DeclareTx {
                id,
                mid,
                kind,
                rtx,
                reply,
            } => {
                let ssrc = self.with_relay_rtc(id, |rtc| {
                    let mut api = rtc.direct_api();
                    api.declare_media(mid, kind);
                    for (pt, rtx_pt) in &rtx {
                        api.set_rtx_payload(mid, *pt, *rtx_pt).ok()?;
                    }
                    let _ = rtc.stream_tx(mid);
                    Some((rtc.tx_ssrc(mid)?, rtc.tx_rtx_ssrc(mid)?))
                });
                let _ = reply.send(ssrc.flatten());
            }
            RelayCmd::EndTx { id, ssrcs, reply } => {
                let sent = self.with_relay_rtc(id, |rtc| {
                    rtc.direct_api()
                        .send_bye(&ssrcs, Some(b"relay track ended"))
                        .is_ok()
                });
                let _ = reply.send(sent == Some(true));
            }
            RelayCmd::Attach {
                id,
                mid,
                kind,
                ssrc,
                rtx,
                layers,
                payloads,
                reply,
            } => {
                let _ =
                    reply.send(self.relay_attach(id, mid, kind, (ssrc, &rtx, &layers), &payloads));
            }
            RelayCmd::Detach { id, mid, reply } => {
                if self.relays.contains_key(&id)
                    && let Some(&slot) = self.by_id.get(&id)
                    && let Some(Some(s)) = self.sessions.get_mut(slot)
                {
                    s.ssrc_layers.retain(|(_, _, m)| *m != mid);
                }
                let _ = reply.send(self.end_route((id, mid), now));
            }
            RelayCmd::Silence { id, reply } => {
                let _ = reply.send(
                    self.relays
                        .get(&id)
                        .map(|r| now.saturating_duration_since(r.last_heard)),
                );
            }
        }
    }

    /// Runs `f` on the `Rtc` of relay `id` under the panic guard (`None`: no such relay
    /// here, or it panicked and is doomed).
    fn with_relay_rtc<R>(
        &mut self,
        id: SessionId,
        f: impl FnOnce(&mut rtc_core::Rtc) -> R,
    ) -> Option<R> {
        if !self.relays.contains_key(&id) {
            return None;
        }
        let slot = *self.by_id.get(&id)?;
        let s = self.sessions.get_mut(slot)?.as_mut()?;
        match guarded(s, f) {
            Ok(r) => {
                touch(s, slot, &mut self.touched);
                Some(r)
            }
            Err(()) => {
                self.doomed.push((id, CloseReason::Panicked));
                None
            }
        }
    }

    fn relay_register(
        &mut self,
        id: SessionId,
        setup: RelaySetup,
        now: Instant,
    ) -> Result<(), EngineError> {
        let Some(&slot) = self.by_id.get(&id) else {
            return Err(EngineError::UnknownSession(id));
        };
        if let Some(remote) = setup.remote
            && self.by_addr.get(&remote).is_some_and(|&o| o != slot)
        {
            // The shard's socket tells sessions apart by the peer's address (plain RTP
            // has nothing else; a second relay between the same two sockets would take
            // the first one's packets): never take one another live session owns.
            return Err(EngineError::AddressInUse(remote));
        }
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return Err(EngineError::UnknownSession(id));
        };
        let ka = keepalive_mid();
        if let Some(peer) = setup.peer_keepalive_ssrc
            && guarded(s, |rtc| rtc.direct_api().expect_stream_rx(ka, peer)).is_err()
        {
            self.doomed.push((id, CloseReason::Panicked));
            return Err(EngineError::SessionPanicked(id));
        }
        s.estimate_override = Some(RELAY_ESTIMATE_BPS);
        if let Some(remote) = setup.remote
            && !self.by_addr.contains_key(&remote)
        {
            self.by_addr.insert(remote, slot);
            s.addrs.push(remote);
        }
        touch(s, slot, &mut self.touched);
        self.relays.insert(
            id,
            RelayState {
                ka_seq: rand::random(),
                next_keepalive: now,
                heard: 0,
                last_heard: now,
                timed_out: false,
                setup,
            },
        );
        Ok(())
    }

    fn relay_attach(
        &mut self,
        id: SessionId,
        mid: Mid,
        kind: MediaKind,
        (ssrc, rtx, layers): (u32, &RtxSpec, &[RelayLayerSpec]),
        payloads: &[PayloadDesc],
    ) -> Result<(), EngineError> {
        if !self.relays.contains_key(&id) {
            return Err(EngineError::UnknownSession(id));
        }
        let slot = *self.by_id.get(&id).ok_or(EngineError::UnknownSession(id))?;
        let s = self
            .sessions
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(EngineError::UnknownSession(id))?;
        let declared = guarded(s, |rtc| {
            let mut api = rtc.direct_api();
            api.declare_media(mid, kind);
            api.expect_stream_rx(mid, ssrc)?;
            for (pt, rtx_pt) in &rtx.1 {
                api.set_rtx_payload(mid, *pt, *rtx_pt)?;
            }
            if !rtx.1.is_empty() {
                api.expect_rtx_rx(mid, ssrc, rtx.0)?;
            }
            for &(_, l_ssrc, l_rtx) in layers {
                api.expect_stream_rx(mid, l_ssrc)?;
                if !rtx.1.is_empty() {
                    api.expect_rtx_rx(mid, l_ssrc, l_rtx)?;
                }
            }
            Ok::<(), RtcError>(())
        });
        match declared {
            Ok(r) => r?,
            Err(()) => {
                self.doomed.push((id, CloseReason::Panicked));
                return Err(EngineError::SessionPanicked(id));
            }
        }
        for p in payloads {
            let codec = video_codec(&p.codec);
            if codec != VideoCodec::Other && !s.pt_codec.iter().any(|(pt, _)| *pt == p.pt) {
                s.pt_codec.push((p.pt, codec));
            }
            // A payload type two relayed tracks share cannot place a packet: leave it out.
            if let Some(i) = s.pt_mid.iter().position(|(pt, _)| *pt == p.pt) {
                if s.pt_mid[i].1 != mid {
                    s.pt_mid.remove(i);
                }
            } else {
                s.pt_mid.push((p.pt, mid));
            }
        }
        s.repair_pts |= repair_pts(payloads);
        s.ssrc_layers
            .retain(|(x, _, m)| *m != mid && !layers.iter().any(|l| l.1 == *x));
        for &(layer, l_ssrc, _) in layers {
            s.ssrc_layers.push((l_ssrc, layer, mid));
        }
        Ok(())
    }

    /// Ends every leg of the publisher track `key`: the local ones here
    /// ([`Shard::end_local_legs`]), those on other shards through a
    /// [`DataMsg::EndRoute`] to each shard the route is forwarded to (a full queue there
    /// leaves its legs to the control side, without a BYE). Returns the local legs ended.
    pub(super) fn end_route(&mut self, key: RouteKey, now: Instant) -> usize {
        let mut remote = self.routes.get(&key).map_or(0, |r| r.remote);
        while remote != 0 {
            let shard = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            if let Some(peer) = self.ctx.peers.get(shard) {
                match peer.data_tx.try_send(DataMsg::EndRoute(key)) {
                    Ok(()) => peer.waker.wake(),
                    Err(_) => self.c.drops.cross_shard_full += 1,
                }
            }
        }
        self.end_local_legs(key, now)
    }

    /// Ends every leg of the publisher track `key` on this shard: an RTCP BYE on the
    /// leg's SSRC to its subscriber, then the leg goes. Returns the legs ended.
    pub(super) fn end_local_legs(&mut self, key: RouteKey, now: Instant) -> usize {
        let Some(route) = self.routes.get(&key) else {
            return 0;
        };
        let legs: Vec<(SessionId, Mid, u32)> = route
            .legs
            .iter()
            .map(|l| (l.sub, l.params.mid, l.params.ssrc))
            .collect();
        for (sub, sub_mid, ssrc) in &legs {
            if let Some(&slot) = self.by_id.get(sub)
                && let Some(Some(s)) = self.sessions.get_mut(slot)
            {
                match guarded(s, |rtc| {
                    rtc.direct_api().send_bye(&[*ssrc], Some(b"source ended"))
                }) {
                    Ok(_) => touch(s, slot, &mut self.touched),
                    Err(()) => self.doomed.push((*sub, CloseReason::Panicked)),
                }
            }
            self.remove_leg(*sub, *sub_mid);
            if let Some(&slot) = self.by_id.get(sub) {
                self.allocate_session(slot, now);
            }
        }
        legs.len()
    }

    /// A session is being removed: if it is a relay, report it down and end the local
    /// legs of the tracks it brought in.
    pub(super) fn relay_removed(&mut self, id: SessionId, reason: CloseReason, now: Instant) {
        let Some(state) = self.relays.remove(&id) else {
            return;
        };
        let keys: Vec<RouteKey> = self.routes.keys().filter(|k| k.0 == id).copied().collect();
        for k in keys {
            self.end_route(k, now);
        }
        if state.setup.plain {
            // A plain RTP session is no relay to report; its session end is reported.
            return;
        }
        let reason = if state.timed_out {
            crate::api::RelayDownReason::Silent
        } else {
            match reason {
                CloseReason::Requested => crate::api::RelayDownReason::Closed,
                CloseReason::Shutdown => crate::api::RelayDownReason::Shutdown,
                _ => crate::api::RelayDownReason::Failed,
            }
        };
        // Unbounded queue: fails only when the engine handle is gone.
        let _ = self
            .ctx
            .closed_tx
            .send(EngineEvent::RelayDown { relay: id, reason });
    }

    /// Keepalives due and liveness of every relay on this shard (once per iteration).
    pub(super) fn relay_tick(&mut self, now: Instant, backend: &mut dyn IoBackend) {
        if self.relays.is_empty() {
            return;
        }
        let mut silent = Vec::new();
        for (id, r) in self.relays.iter_mut() {
            let Some(&slot) = self.by_id.get(id) else {
                continue;
            };
            let Some(Some(s)) = self.sessions.get_mut(slot) else {
                continue;
            };
            let st = s.rtc.stats();
            let heard = st.srtp_packets_in + st.srtcp_packets_in;
            if heard != r.heard {
                r.heard = heard;
                r.last_heard = now;
            }
            if !s.connected {
                // Not up yet: the connect timeout covers it.
                r.last_heard = now;
                continue;
            }
            if r.setup
                .timeout
                .is_some_and(|t| now.saturating_duration_since(r.last_heard) > t)
            {
                r.timed_out = true;
                silent.push(slot);
                continue;
            }
            if let Some(keepalive) = r.setup.keepalive
                && now >= r.next_keepalive
            {
                r.next_keepalive = now + keepalive;
                r.ka_seq = r.ka_seq.wrapping_add(1);
                let h = RtpHeader {
                    payload_type: KEEPALIVE_PT,
                    sequence_number: r.ka_seq,
                    timestamp: u32::from(r.ka_seq).wrapping_mul(160),
                    ssrc: r.setup.keepalive_ssrc,
                    ..RtpHeader::default()
                };
                let sent = guarded(s, |rtc| {
                    rtc.direct_api().write_rtp_packet_with(|buf| {
                        let n = h.write(HeaderExtension::None, buf).ok()?;
                        let b = buf.get_mut(n)?;
                        *b = 0;
                        Some(n + 1)
                    })
                });
                match sent {
                    Ok(_) => touch(s, slot, &mut self.touched),
                    Err(()) => self.doomed.push((*id, CloseReason::Panicked)),
                }
            }
        }
        for slot in silent {
            tracing::info!(
                shard = self.ctx.index,
                "relay peer silent past its window; closing"
            );
            self.close_session(slot, now, backend, CloseReason::Failed);
        }
    }

    /// When the next relay keepalive or liveness check is due (bounds the loop's sleep).
    pub(super) fn relay_next_due(&self) -> Option<Instant> {
        self.relays
            .values()
            .filter_map(|r| {
                let ka = r.setup.keepalive.map(|_| r.next_keepalive);
                let silent = r.setup.timeout.map(|t| r.last_heard + t);
                match (ka, silent) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// A received RTP packet of a relay that is not media (a keepalive): `true` when it
    /// was consumed here.
    pub(super) fn relay_consumes(&self, slot: usize, mid: Option<Mid>) -> bool {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return false;
        };
        self.relays.contains_key(&s.id) && mid == Some(keepalive_mid())
    }

    /// The peer of a session ended one of its streams (RTCP BYE): for a relay, the
    /// relayed track ends for its local subscribers.
    pub(super) fn on_stream_ended(&mut self, slot: usize, mid: Option<Mid>, now: Instant) {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return;
        };
        let id = s.id;
        if let (true, Some(mid)) = (self.relays.contains_key(&id), mid) {
            let n = self.end_route((id, mid), now);
            tracing::debug!(shard = self.ctx.index, relay = %id, %mid, legs = n, "relayed track ended");
        }
    }
}

/// Relay state per session id, owned by the shard.
pub(crate) type Relays = HashMap<SessionId, RelayState>;

/// Builds a plain RTP session's `Rtc` (RTP mode, no ICE, no DTLS; see
/// `docs/architecture.md`, "Plain RTP"): media goes to `remote` from `local` (the
/// shard's announced address of the same family) unprotected or with the given SRTP
/// keys. It is installed and registered like a relay session (no keepalive).
pub(crate) fn prepare_plain(
    id: SessionId,
    cert: &DtlsCert,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    srtp: Option<&rtc_core::PlainSrtp>,
    now: Instant,
) -> Result<super::Prepared, EngineError> {
    prepare_with(id, vec![local], |creds| {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_pacing(false)
            .set_dtls_cert(cert.clone())
            .set_local_ice_credentials(creds)
            // NACKs are answered from the publisher layer's packet cache.
            .set_rtx_buffer(0, Duration::from_secs(2))
            .build(now)?;
        rtc.direct_api().start_plain(local, remote, srtp)?;
        Ok(rtc)
    })
}
