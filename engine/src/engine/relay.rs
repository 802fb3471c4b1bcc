//! Relays between engines, the control side: one relay session per engine pair carries
//! many tracks (see the shard's `relay` module for the data plane).
//!
//! Set-up is three calls driven by whoever orchestrates the two engines (a signalling
//! service, `rtc-demo`): [`EngineHandle::relay_listen`] on the receiving engine B gives a
//! [`RelayInvite`]; [`EngineHandle::relay_connect`] on the sending engine A takes it and
//! gives a [`RelayAnswer`]; [`EngineHandle::relay_accept`] on B takes that. A then
//! connects to B (ICE, DTLS-SRTP). Tracks: [`EngineHandle::relay_publish`] on A gives a
//! [`RelayTrack`]; [`EngineHandle::relay_attach`] on B makes it a published media section
//! of B's relay session, which local subscribers take with
//! [`EngineHandle::publish`]/[`EngineHandle::subscribe`] like any publisher's.

use std::collections::HashMap;
use std::net::SocketAddr;

use rtc_core::dtls::Fingerprint;
use rtc_core::ice::IceCreds;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

use super::*;
use crate::forward::PayloadDesc;
use crate::shard::{Prepared, RelayCmd, RelayEnd, RelaySetup, accept_relay, prepare_relay};

/// Relay legs live in no room: this pseudo-room id (rooms count from 1) marks them.
const RELAY_ROOM: RoomId = RoomId(0);

/// RTX payload types for a relayed track's media payload types: the publisher's own
/// RTX pairs are not known here, so each media payload type gets a free dynamic one.
fn rtx_pairs(payloads: &[PayloadDesc]) -> Vec<(u8, u8)> {
    let used: Vec<u8> = payloads.iter().map(|p| p.pt).collect();
    let mut free = (96u8..=127).rev().filter(|pt| !used.contains(pt));
    payloads
        .iter()
        .filter(|p| !p.codec.is_repair())
        .filter_map(|p| Some((p.pt, free.next()?)))
        .collect()
}

/// Layers a relayed track can carry (the shard's route layers).
const MAX_RELAY_LAYERS: usize = 3;

/// Where one leg of a relayed track goes (see [`EngineHandle::relay_publish`]).
struct RelayLegSpec {
    relay: SessionId,
    /// The relay session's shard.
    shard: usize,
    /// The publisher track.
    key: (SessionId, Mid),
    pub_shard: usize,
    /// The relay session's send section for the leg.
    mid: Mid,
    /// The publisher layer it carries (`None`: the best there is).
    pin: Option<u8>,
}

/// Tunables of one relay end.
#[derive(Debug, Clone, Copy)]
pub struct RelayParams {
    /// Where the relay session goes.
    pub placement: Placement,
    /// How often this end sends a keepalive (an SRTP packet) to the peer.
    pub keepalive: Duration,
    /// The peer is down after this long without an authenticated packet from it.
    pub timeout: Duration,
}

impl Default for RelayParams {
    fn default() -> Self {
        RelayParams {
            placement: Placement::Auto,
            keepalive: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the listening engine hands to the connecting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInvite {
    /// The relay on the listening engine (its session id there).
    pub relay: SessionId,
    /// The listener's ICE credentials.
    pub ice: IceCreds,
    /// The listener's DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Where the connecting engine sends (the listener's shard address).
    pub addr: SocketAddr,
    /// The listener's keepalive SSRC.
    pub keepalive_ssrc: u32,
}

/// What the connecting engine hands back to the listening one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAnswer {
    /// The relay on the connecting engine (its session id there).
    pub relay: SessionId,
    /// The connecting engine's ICE credentials.
    pub ice: IceCreds,
    /// The connecting engine's DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The connecting engine's keepalive SSRC.
    pub keepalive_ssrc: u32,
}

/// A track relayed from the sending engine: what the receiving one needs to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTrack {
    /// The relay's media section carrying it (the same on both ends).
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRC it arrives with.
    pub ssrc: u32,
    /// The publisher's payload types.
    pub payloads: Vec<PayloadDesc>,
    /// The SSRC retransmissions (RTX, RFC 4588) arrive with.
    pub rtx_ssrc: u32,
    /// (payload type, its RTX payload type) pairs.
    pub rtx: Vec<(u8, u8)>,
    /// A simulcast (video) track: one stream per publisher layer, each with its layer
    /// index, SSRC and RTX SSRC (layer 0's are also `ssrc` and `rtx_ssrc`). The
    /// receiving engine makes each a layer of the one published track, so its
    /// subscribers' allocators choose among them. Empty: one stream, `ssrc`.
    pub layers: Vec<RelayLayer>,
    /// The publisher track it carries on the sending engine.
    pub source: (SessionId, Mid),
}

/// One layer of a relayed simulcast track (see [`RelayTrack::layers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLayer {
    /// The publisher's layer index (0 = lowest).
    pub layer: u8,
    /// The SSRC the layer's stream arrives with.
    pub ssrc: u32,
    /// The SSRC of its retransmissions (RTX).
    pub rtx_ssrc: u32,
}

/// A relay's transport figures, from [`EngineHandle::relay_stats`].
#[derive(Debug, Clone)]
pub struct RelayStats {
    /// The relay session.
    pub relay: SessionId,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// The peer engine's address.
    pub remote_addr: Option<SocketAddr>,
    /// Round-trip time from the peer's receiver reports (keepalive or media).
    pub rtt: Option<Duration>,
    /// Packets the peer sent that never arrived (RFC 3550 cumulative, all relayed
    /// tracks this end receives).
    pub lost: u64,
    /// NACKs this end sent (receiving) plus NACKs it received (sending).
    pub nacks: u64,
    /// Retransmissions this end sent.
    pub retransmitted: u64,
    /// Datagrams in and out.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Time since the peer was last heard from.
    pub silent_for: Duration,
    /// Per media section counters (keepalive section included).
    pub tracks: Vec<crate::api::TrackCounters>,
}

/// The control side's record of one relay end.
pub(super) struct RelayEntry {
    shard: usize,
    params: RelayParams,
    keepalive_ssrc: u32,
    /// A listening end before [`EngineHandle::relay_accept`]: built, not installed
    /// (so nothing reaches it before it knows its peer).
    pending: Option<Box<Prepared>>,
    next_mid: u32,
    /// A plain RTP session (`plain.egress`/`plain.ingest`), not a relay to another engine.
    plain: bool,
}

impl RelayEntry {
    /// The record of a relay end to another engine; `pending` as in [`RelayEntry`].
    fn relay(
        shard: usize,
        params: RelayParams,
        keepalive_ssrc: u32,
        pending: Option<Box<Prepared>>,
    ) -> Self {
        RelayEntry {
            shard,
            params,
            keepalive_ssrc,
            pending,
            next_mid: 0,
            plain: false,
        }
    }
}

/// The SSRC of a prepared relay end's keepalive stream.
///
/// # Errors
///
/// [`EngineError::Rtc`] when it has none.
fn keepalive_ssrc_of(prepared: &Prepared) -> Result<u32, EngineError> {
    prepared
        .keepalive_ssrc()
        .ok_or(EngineError::Rtc(RtcError::InvalidState(
            "no keepalive stream",
        )))
}

#[derive(Default)]
pub(super) struct Relays {
    entries: HashMap<SessionId, RelayEntry>,
}

impl EngineHandle {
    fn relays(&self) -> MutexGuard<'_, Relays> {
        // Every mutation completes before the lock is released.
        self.inner.relays.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn pick_shard(&self, placement: Placement) -> Result<usize, EngineError> {
        match placement {
            Placement::Shard(i) => self.live_link(i).map(|_| i),
            Placement::Auto => self.least_loaded_shard().ok_or(EngineError::ShardDown(0)),
        }
    }

    fn relay_end(
        &self,
        shard: usize,
        peer: Option<(IceCreds, Fingerprint, SocketAddr)>,
    ) -> Result<(SessionId, Prepared), EngineError> {
        let link = self.live_link(shard)?;
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let end = RelayEnd {
            cert: &link.cert,
            // NACKs from the peer are answered from the relayed layers' packet caches
            // (one per layer, shared with local subscribers), not a ring per relay.
            rtx_buffer_packets: 0,
            announced: &link.announced,
            peer,
        };
        Ok((id, prepare_relay(id, &end, Instant::now())?))
    }

    /// Installs a prepared relay session on its shard and registers it (registry and
    /// shard relay state).
    fn install_relay(
        &self,
        shard: usize,
        prepared: Prepared,
        setup: RelaySetup,
    ) -> Result<SessionId, EngineError> {
        let id = prepared.id();
        self.reserve_session(&mut self.registry(), id, shard)?;
        let installed = self.install_on_shard(shard, prepared).and_then(|_| {
            self.call(shard, |reply| {
                Command::Relay(RelayCmd::Register { id, setup, reply })
            })
            .and_then(|r| r)
        });
        if let Err(e) = installed {
            let mut reg = self.registry();
            reg.sessions.remove(&id);
            drop(reg);
            let _ = self.call(shard, |reply| Command::CloseSession { id, reply });
            return Err(e);
        }
        Ok(id)
    }

    /// Installs a prepared plain RTP session (see `plain.rs`) and records it like a
    /// connected relay end, so that [`EngineHandle::relay_publish`] and
    /// [`EngineHandle::relay_attach`] take it. Records of plain sessions that ended
    /// are dropped here.
    pub(super) fn install_plain(
        &self,
        shard: usize,
        prepared: Prepared,
        setup: RelaySetup,
    ) -> Result<SessionId, EngineError> {
        let id = self.install_relay(shard, prepared, setup)?;
        let live: Vec<SessionId> = {
            let reg = self.registry();
            self.relays()
                .entries
                .iter()
                .filter(|(id, e)| e.plain && reg.sessions.contains_key(id))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut relays = self.relays();
        relays.entries.retain(|k, e| !e.plain || live.contains(k));
        relays.entries.insert(
            id,
            RelayEntry {
                shard,
                params: RelayParams::default(),
                keepalive_ssrc: 0,
                pending: None,
                next_mid: 0,
                plain: true,
            },
        );
        Ok(id)
    }

    /// Forgets the record of a plain session whose set-up failed after installation.
    pub(super) fn forget_plain(&self, id: SessionId) {
        self.relays().entries.remove(&id);
    }

    /// The listening end of a relay (on the engine that receives tracks): returns the
    /// invitation for [`EngineHandle::relay_connect`] on the other engine. The session is
    /// installed by [`EngineHandle::relay_accept`].
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`] / [`EngineError::ShardDown`] for a placement that
    /// cannot take it; [`EngineError::Rtc`] / [`EngineError::SessionPanicked`] when the
    /// `Rtc` cannot be built.
    pub fn relay_listen(&self, params: RelayParams) -> Result<RelayInvite, EngineError> {
        let shard = self.pick_shard(params.placement)?;
        let (id, prepared) = self.relay_end(shard, None)?;
        let link = self.live_link(shard)?;
        let addr = *link
            .announced
            .first()
            .ok_or(EngineError::NoSuchShard(shard))?;
        let keepalive_ssrc = keepalive_ssrc_of(&prepared)?;
        let invite = RelayInvite {
            relay: id,
            ice: prepared.local_ice().clone(),
            fingerprint: prepared.fingerprint().clone(),
            addr,
            keepalive_ssrc,
        };
        self.relays().entries.insert(
            id,
            RelayEntry::relay(shard, params, keepalive_ssrc, Some(Box::new(prepared))),
        );
        Ok(invite)
    }

    /// The connecting end of a relay (on the engine that sends tracks): builds it from
    /// the listener's invitation and starts connecting to `invite.addr`. Returns what
    /// the listener needs ([`EngineHandle::relay_accept`]).
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::relay_listen`], plus [`EngineError::EngineFull`] and the errors
    /// of installing a session on its shard; [`EngineError::AddressInUse`] when the shard
    /// (every live shard, with automatic placement) already has a session whose peer is
    /// `invite.addr` — a shard's socket tells its sessions apart by the peer's address,
    /// so two relays between the same two sockets cannot both work: carry the tracks
    /// over the existing relay, or have the peer listen on another shard.
    pub fn relay_connect(
        &self,
        invite: &RelayInvite,
        params: RelayParams,
    ) -> Result<RelayAnswer, EngineError> {
        // A shard's socket tells its sessions apart by the peer's address, so a shard
        // holds one relay per listener address: with automatic placement, a shard that
        // already has one to `invite.addr` is passed over for the next live one.
        let first = self.pick_shard(params.placement)?;
        let others: Vec<usize> = match params.placement {
            Placement::Shard(_) => Vec::new(),
            Placement::Auto => (0..self.shard_count())
                .filter(|&i| i != first && self.live_link(i).is_ok())
                .collect(),
        };
        let mut shards = std::iter::once(first).chain(others);
        let (shard, id, ice, fingerprint, keepalive_ssrc) = loop {
            // Every candidate shard already relays with `invite.addr`.
            let Some(shard) = shards.next() else {
                return Err(EngineError::AddressInUse(invite.addr));
            };
            let peer = (invite.ice.clone(), invite.fingerprint.clone(), invite.addr);
            let (id, prepared) = self.relay_end(shard, Some(peer))?;
            let ice = prepared.local_ice().clone();
            let fingerprint = prepared.fingerprint().clone();
            let keepalive_ssrc = keepalive_ssrc_of(&prepared)?;
            let setup = RelaySetup {
                keepalive_ssrc,
                peer_keepalive_ssrc: Some(invite.keepalive_ssrc),
                keepalive: Some(params.keepalive),
                timeout: Some(params.timeout),
                remote: Some(invite.addr),
                plain: false,
            };
            match self.install_relay(shard, prepared, setup) {
                Ok(_) => break (shard, id, ice, fingerprint, keepalive_ssrc),
                Err(EngineError::AddressInUse(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        self.relays()
            .entries
            .insert(id, RelayEntry::relay(shard, params, keepalive_ssrc, None));
        Ok(RelayAnswer {
            relay: id,
            ice,
            fingerprint,
            keepalive_ssrc,
        })
    }

    /// Completes a listening relay with the connecting engine's answer: the session is
    /// installed and answers the peer's connectivity checks from now on.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] when `relay` is no listening relay waiting for its
    /// answer; the errors of installing a session.
    pub fn relay_accept(&self, relay: SessionId, answer: &RelayAnswer) -> Result<(), EngineError> {
        let (shard, params, keepalive_ssrc, mut prepared) = {
            let mut relays = self.relays();
            let e = relays
                .entries
                .get_mut(&relay)
                .ok_or(EngineError::UnknownSession(relay))?;
            let p = e.pending.take().ok_or(EngineError::UnknownSession(relay))?;
            (e.shard, e.params, e.keepalive_ssrc, p)
        };
        let done = accept_relay(
            &mut prepared,
            answer.ice.clone(),
            answer.fingerprint.clone(),
        )
        .and_then(|()| {
            let setup = RelaySetup {
                keepalive_ssrc,
                peer_keepalive_ssrc: Some(answer.keepalive_ssrc),
                keepalive: Some(params.keepalive),
                timeout: Some(params.timeout),
                remote: None,
                plain: false,
            };
            self.install_relay(shard, *prepared, setup)
        });
        if done.is_err() {
            self.relays().entries.remove(&relay);
        }
        done.map(|_| ())
    }

    /// Sends the publisher track `(publisher, mid)` over `relay` (a connected or
    /// connecting relay of this engine). A video track goes with every simulcast layer:
    /// one leg of the relay session per layer (sections `r<n>`, `r<n>.1`, `r<n>.2`),
    /// each pinned to its layer, with its own SSRC and RTX SSRC, listed in
    /// [`RelayTrack::layers`]; audio (and a plain egress) takes one leg. NACKs from the
    /// peer are answered from the publisher's layer caches, and its keyframe requests
    /// go to the publisher's layer they name. Returns what the peer engine passes to
    /// [`EngineHandle::relay_attach`].
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown relay or publisher,
    /// [`EngineError::NotInRoom`] when the publisher has no such received section
    /// (with the relay room as the room), shard errors.
    pub fn relay_publish(
        &self,
        relay: SessionId,
        publisher: SessionId,
        mid: Mid,
    ) -> Result<RelayTrack, EngineError> {
        let mut reg = self.registry();
        let (shard, plain) = {
            let relays = self.relays();
            let e = relays
                .entries
                .get(&relay)
                .filter(|e| e.pending.is_none())
                .ok_or(EngineError::UnknownSession(relay))?;
            (e.shard, e.plain)
        };
        if !reg.sessions.contains_key(&relay) {
            return Err(EngineError::UnknownSession(relay));
        }
        let pub_s = reg
            .sessions
            .get(&publisher)
            .ok_or(EngineError::UnknownSession(publisher))?;
        let pub_shard = pub_s.shard;
        let track = pub_s
            .media
            .iter()
            .find(|m| m.mid == mid && m.can_recv())
            .cloned()
            .ok_or(EngineError::NotInRoom(publisher, RELAY_ROOM))?;
        if reg.sessions.get(&relay).is_some_and(|s| {
            s.legs
                .iter()
                .any(|l| l.publisher == publisher && l.pub_mid == mid)
        }) {
            return Err(EngineError::Rtc(RtcError::InvalidState(
                "this track is relayed already",
            )));
        }
        let rtx = rtx_pairs(&track.payloads);
        let relay_mid = {
            let mut relays = self.relays();
            let e = relays
                .entries
                .get_mut(&relay)
                .ok_or(EngineError::UnknownSession(relay))?;
            e.next_mid += 1;
            // "r<n>" is a valid mid for any n.
            Mid::new(&format!("r{}", e.next_mid)).expect("a short token mid")
        };
        // Video crosses a relay as one stream per publisher layer, each from a leg
        // pinned to its layer (see docs/architecture.md, "Relays"); audio and a plain
        // egress (one stream for an RTP receiver: the best layer there is) take one
        // leg that the relay session's allocator serves.
        let pins: &[Option<u8>] = if track.kind == MediaKind::Video && !plain {
            &[Some(0), Some(1), Some(2)]
        } else {
            &[None]
        };
        let mut added: Vec<(Mid, RelayLayer)> = Vec::with_capacity(pins.len());
        for pin in pins {
            let leg_mid = match pin {
                // "r<n>.<l>" is a valid mid for any n (at most 13 characters).
                Some(l @ 1..) => Mid::new(&format!("{relay_mid}.{l}")).expect("a short token mid"),
                _ => relay_mid,
            };
            let leg = RelayLegSpec {
                relay,
                shard,
                key: (publisher, mid),
                pub_shard,
                mid: leg_mid,
                pin: *pin,
            };
            match self.relay_leg(&mut reg, &leg, &track, &rtx) {
                Ok((ssrc, rtx_ssrc)) => added.push((
                    leg_mid,
                    RelayLayer {
                        layer: pin.unwrap_or(0),
                        ssrc,
                        rtx_ssrc,
                    },
                )),
                Err(e) => {
                    // The layers already added go again.
                    let mut replies = Replies::default();
                    for (m, _) in &added {
                        let _ = self.remove_leg(&mut reg, relay, *m, &mut replies);
                    }
                    if let Some(s) = reg.sessions.get_mut(&relay) {
                        s.media.retain(|d| !added.iter().any(|(m, _)| *m == d.mid));
                    }
                    drop(reg);
                    let _ = self.settle(replies);
                    return Err(e);
                }
            }
        }
        let first = added.first().map(|(_, l)| *l).unwrap_or(RelayLayer {
            layer: 0,
            ssrc: 0,
            rtx_ssrc: 0,
        });
        let layers = if pins.len() > 1 {
            added.iter().map(|(_, l)| *l).collect()
        } else {
            Vec::new()
        };
        Ok(RelayTrack {
            mid: relay_mid,
            kind: track.kind,
            ssrc: first.ssrc,
            payloads: track.payloads,
            rtx_ssrc: first.rtx_ssrc,
            rtx,
            layers,
            source: (publisher, mid),
        })
    }

    /// One leg of a relayed track on the sending end: a send section of the relay
    /// session (`leg.mid`, its own SSRC and RTX SSRC, returned) fed by the publisher
    /// track, pinned to one layer or not; recorded in the registry.
    fn relay_leg(
        &self,
        reg: &mut Registry,
        leg: &RelayLegSpec,
        track: &MediaDesc,
        rtx: &[(u8, u8)],
    ) -> Result<(u32, u32), EngineError> {
        let relay = leg.relay;
        let (ssrc, rtx_ssrc) = self
            .call(leg.shard, |reply| {
                Command::Relay(RelayCmd::DeclareTx {
                    id: relay,
                    mid: leg.mid,
                    kind: track.kind,
                    rtx: rtx.to_vec(),
                    reply,
                })
            })?
            .ok_or(EngineError::UnknownSession(relay))?;
        let pt_map = PtMap::from_payloads(track.kind, &track.payloads, &track.payloads);
        let spec = LegSpec {
            sub: relay,
            key: leg.key,
            route: RouteSpec {
                kind: track.kind,
                pub_shard: leg.pub_shard,
            },
            params: LegParams::new(ssrc, leg.mid, pt_map, None),
            pin: leg.pin,
            // The far engine repairs relayed media with NACKs.
            nack: true,
        };
        let remote = leg.pub_shard != leg.shard;
        if remote {
            let mut replies = Replies::default();
            self.add_remote_ref(reg, leg.key, spec.route, leg.shard, &mut replies)?;
            self.settle(replies)?;
        }
        let ok = self.call(leg.shard, |reply| Command::AddLeg {
            spec: Box::new(spec),
            reply,
        })?;
        if !ok {
            if remote {
                let mut replies = Replies::default();
                self.drop_remote_ref(reg, leg.key, leg.shard, &mut replies)?;
                self.settle(replies)?;
            }
            return Err(EngineError::UnknownSession(relay));
        }
        if let Some(s) = reg.sessions.get_mut(&relay) {
            s.media.push(MediaDesc {
                mid: leg.mid,
                kind: track.kind,
                direction: Direction::SendOnly,
                payloads: track.payloads.clone(),
                mid_ext_id: None,
                tx_ssrc: Some(ssrc),
                nack: true,
            });
            s.legs.push(RegLeg {
                sub_mid: leg.mid,
                publisher: leg.key.0,
                pub_mid: leg.key.1,
                ssrc,
                room: RELAY_ROOM,
            });
        }
        Ok((ssrc, rtx_ssrc))
    }

    /// Stops sending the relayed track on section `mid` of `relay`: the peer gets one
    /// RTCP BYE naming every layer's stream of it (its subscribers of the track get
    /// theirs), and the track's legs go.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown relay or track; shard errors.
    pub fn relay_unpublish(&self, relay: SessionId, mid: Mid) -> Result<(), EngineError> {
        let mut reg = self.registry();
        let s = reg
            .sessions
            .get(&relay)
            .ok_or(EngineError::UnknownSession(relay))?;
        let shard = s.shard;
        let source = s
            .legs
            .iter()
            .find(|l| l.sub_mid == mid)
            .map(|l| (l.publisher, l.pub_mid))
            .ok_or(EngineError::UnknownSession(relay))?;
        // Every layer's leg of the track.
        let legs: Vec<(Mid, u32)> = s
            .legs
            .iter()
            .filter(|l| (l.publisher, l.pub_mid) == source)
            .map(|l| (l.sub_mid, l.ssrc))
            .collect();
        let ssrcs: Vec<u32> = legs.iter().map(|(_, ssrc)| *ssrc).collect();
        self.call(shard, |reply| {
            Command::Relay(RelayCmd::EndTx {
                id: relay,
                ssrcs,
                reply,
            })
        })?;
        let mut replies = Replies::default();
        for (m, _) in &legs {
            self.remove_leg(&mut reg, relay, *m, &mut replies)?;
        }
        drop(reg);
        self.settle(replies)?;
        let mut reg = self.registry();
        if let Some(s) = reg.sessions.get_mut(&relay) {
            s.media.retain(|m| !legs.iter().any(|(l, _)| *l == m.mid));
        }
        Ok(())
    }

    /// Takes a track the peer engine relays ([`EngineHandle::relay_publish`] there) on
    /// the listening relay `relay`: it becomes a published (received) media section of
    /// the relay session, whose layers are the streams [`RelayTrack::layers`] lists,
    /// with a packet cache per layer on this engine. Put the relay
    /// session in a room with [`EngineHandle::publish`] and subscribe to it as to any
    /// publisher. Returns the media section.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown relay; [`EngineError::Rtc`] when
    /// the section cannot be declared or the layers are not at most three distinct
    /// layers 0..=2 on distinct SSRCs; shard errors.
    pub fn relay_attach(&self, relay: SessionId, track: &RelayTrack) -> Result<Mid, EngineError> {
        let mut reg = self.registry();
        let s = reg
            .sessions
            .get(&relay)
            .ok_or(EngineError::UnknownSession(relay))?;
        if s.media.iter().any(|m| m.mid == track.mid) {
            return Ok(track.mid);
        }
        let shard = s.shard;
        let layers: Vec<(u8, u32, u32)> = track
            .layers
            .iter()
            .map(|l| (l.layer, l.ssrc, l.rtx_ssrc))
            .collect();
        let valid = layers.len() <= MAX_RELAY_LAYERS
            && layers.iter().enumerate().all(|(i, (layer, ssrc, _))| {
                usize::from(*layer) < MAX_RELAY_LAYERS
                    && layers[..i].iter().all(|(l, s, _)| l != layer && s != ssrc)
            });
        if !valid {
            return Err(EngineError::Rtc(RtcError::InvalidState(
                "relayed layers: at most 3, indexes 0..=2, each layer and SSRC once",
            )));
        }
        self.call(shard, |reply| {
            Command::Relay(RelayCmd::Attach {
                id: relay,
                mid: track.mid,
                kind: track.kind,
                ssrc: track.ssrc,
                rtx: (track.rtx_ssrc, track.rtx.clone()),
                layers,
                payloads: track.payloads.clone(),
                reply,
            })
        })??;
        if let Some(s) = reg.sessions.get_mut(&relay) {
            s.media.push(MediaDesc {
                mid: track.mid,
                kind: track.kind,
                direction: Direction::RecvOnly,
                payloads: track.payloads.clone(),
                mid_ext_id: None,
                tx_ssrc: None,
                nack: true,
            });
        }
        Ok(track.mid)
    }

    /// Drops a relayed track on the receiving end: its local subscribers get an RTCP
    /// BYE and their legs go. Returns the legs ended.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown relay; shard errors.
    pub fn relay_detach(&self, relay: SessionId, mid: Mid) -> Result<usize, EngineError> {
        let mut reg = self.registry();
        let shard = reg
            .sessions
            .get(&relay)
            .map(|s| s.shard)
            .ok_or(EngineError::UnknownSession(relay))?;
        let n = self.call(shard, |reply| {
            Command::Relay(RelayCmd::Detach {
                id: relay,
                mid,
                reply,
            })
        })?;
        let fed = legs_where(&reg, |l| l.publisher == relay && l.pub_mid == mid);
        let mut replies = Replies::default();
        for (sub, sub_mid) in fed {
            self.remove_leg(&mut reg, sub, sub_mid, &mut replies)?;
        }
        if let Some(s) = reg.sessions.get_mut(&relay) {
            s.media.retain(|m| m.mid != mid);
        }
        // Replies are awaited without the lock.
        drop(reg);
        self.settle(replies)?;
        Ok(n)
    }

    /// Closes a relay (either end): DTLS close_notify goes to the peer, whose relay ends
    /// too; both report [`EngineEvent::RelayDown`](crate::EngineEvent::RelayDown).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown relay; shard errors.
    pub fn relay_close(&self, relay: SessionId) -> Result<(), EngineError> {
        let entry = self.relays().entries.remove(&relay);
        match entry {
            Some(RelayEntry {
                pending: Some(_), ..
            }) => Ok(()),
            Some(_) => self.close_session(relay),
            None => Err(EngineError::UnknownSession(relay)),
        }
    }

    /// The relays of this engine (listening ones waiting for their answer included).
    pub fn relays_list(&self) -> Vec<SessionId> {
        let live: Vec<SessionId> = {
            let reg = self.registry();
            self.relays()
                .entries
                .iter()
                .filter(|(_, e)| !e.plain)
                .filter(|(id, e)| e.pending.is_some() || reg.sessions.contains_key(id))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut v = live;
        v.sort();
        v
    }

    /// RTT, loss and liveness of a relay.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown (or not yet accepted) relay; shard
    /// errors.
    pub fn relay_stats(&self, relay: SessionId) -> Result<RelayStats, EngineError> {
        let shard = self.session_shard(relay)?;
        let silent_for = self
            .call(shard, |reply| {
                Command::Relay(RelayCmd::Silence { id: relay, reply })
            })?
            .ok_or(EngineError::UnknownSession(relay))?;
        let snap = self.session_stats(relay)?;
        let sum = |f: fn(&crate::api::TrackCounters) -> u64, inbound: bool| -> u64 {
            snap.tracks
                .iter()
                .filter(|t| t.inbound == inbound)
                .map(f)
                .sum()
        };
        Ok(RelayStats {
            relay,
            connected: snap.connected,
            remote_addr: snap.remote_addr,
            rtt: snap.rtt,
            lost: sum(|t| t.lost, true),
            nacks: sum(|t| t.nacks, true) + sum(|t| t.nacks, false),
            retransmitted: sum(|t| t.lost, false),
            datagrams_in: snap.peer.datagrams_in,
            datagrams_out: snap.peer.datagrams_out,
            silent_for,
            tracks: snap.tracks,
        })
    }
}
