//! Starting the shards and the in-process control API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rtc_core::RtcError;
use rtc_core::dtls::DtlsCert;
use rtc_core::media::Mid;

use crate::api::{
    ChannelTarget, EngineError, EngineStats, LegInfo, LegLayers, MediaDesc, Placement, RoomId,
    RoomInfo, SessionId, SessionInfo, SessionSetup, SessionSnapshot, ShardStats,
};
use crate::forward::{LegParams, PtMap};
use crate::io::{BackendKind, Waker};
use crate::sfu::allocator::Preference;
use crate::shard::{Command, LegSpec, RouteSpec, SessionParams, prepare_session};

mod events;
mod registry;
mod start;
#[cfg(test)]
mod tests;

pub use events::EngineEvents;
use registry::{RegLeg, RegRoom, RegSession, Registry, legs_where};

/// Entry point: [`Engine::start`].
#[derive(Debug)]
pub struct Engine;

struct ShardLink {
    cmd_tx: Sender<Command>,
    waker: Waker,
    gauge: Arc<AtomicUsize>,
    draining: AtomicBool,
    /// Cleared by the shard thread when it dies.
    alive: Arc<AtomicBool>,
    backend: BackendKind,
    core: Option<usize>,
    local_addrs: Vec<SocketAddr>,
    announced: Vec<SocketAddr>,
    /// The shard's DTLS certificate (sessions are built on the caller's thread).
    cert: DtlsCert,
}

struct Inner {
    shards: Vec<ShardLink>,
    reg: Mutex<Registry>,
    next_session: AtomicU64,
    events_rx: EngineEvents,
    gone_rx: Receiver<SessionId>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    reply_timeout: Duration,
    limits: Limits,
    rtx_buffer_packets: usize,
}

/// The caps the control side enforces (the shards enforce their own).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_sessions: usize,
    max_media: usize,
    max_rooms: usize,
    max_legs_per_room: usize,
}

/// Media sections an offer asks for: its `m=` lines (counted without parsing).
fn media_sections(setup: &SessionSetup) -> usize {
    match setup {
        SessionSetup::Offer(sdp) => sdp
            .lines()
            .filter(|l| l.trim_start().starts_with("m="))
            .count(),
        SessionSetup::Direct(p) => p.media.len(),
    }
}

/// The control handle of a running engine: cheap to clone, usable from any thread.
/// Every call is a request to one or more shards, answered over a reply channel.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

/// Whether a shard whose command was dropped unanswered died (rather than stopped). A
/// dying shard drops the command while unwinding, a moment before it is marked dead, so
/// this waits up to 50 ms for the mark.
fn died(alive: &AtomicBool) -> bool {
    for _ in 0..50 {
        if !alive.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    !alive.load(Ordering::Acquire)
}

/// The statistics entry of a shard that is down.
fn dead_stats(shard: usize, link: &ShardLink) -> ShardStats {
    ShardStats {
        shard,
        core: link.core,
        backend: link.backend,
        local_addrs: link.local_addrs.clone(),
        sessions: 0,
        routes: 0,
        packets_in: 0,
        bytes_in: 0,
        packets_out: 0,
        bytes_out: 0,
        rtp_forwarded: 0,
        cross_shard_out: 0,
        cross_shard_in: 0,
        keyframe_requests: 0,
        rtx_resent: 0,
        rtx_unanswered: 0,
        alive: false,
        panics: 0,
        connect_timeouts: 0,
        channels_refused: 0,
        iterations: 0,
        cpu_time: Duration::ZERO,
        drops: crate::api::DropCounters::default(),
        io: crate::io::IoStats::default(),
        loop_ns: crate::shard::histogram(),
        forward_latency_ns: crate::shard::histogram(),
    }
}

fn random_ssrc(taken: &[u32]) -> u32 {
    loop {
        let s: u32 = rand::random();
        if s != 0 && !taken.contains(&s) {
            return s;
        }
    }
}

impl EngineHandle {
    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The bound socket addresses of a shard.
    pub fn shard_addrs(&self, shard: usize) -> Option<&[SocketAddr]> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.local_addrs.as_slice())
    }

    /// The addresses a shard announces in candidates.
    pub fn shard_announced(&self, shard: usize) -> Option<&[SocketAddr]> {
        self.inner.shards.get(shard).map(|s| s.announced.as_slice())
    }

    /// Live sessions on a shard (a relaxed gauge; no shard round trip).
    pub fn shard_sessions(&self, shard: usize) -> Option<usize> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.gauge.load(Ordering::Relaxed))
    }

    /// Whether a shard takes no new sessions: it is draining, or it is down (see
    /// [`EngineHandle::shard_alive`]).
    pub fn shard_draining(&self, shard: usize) -> Option<bool> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.draining.load(Ordering::Relaxed) || !s.alive.load(Ordering::Acquire))
    }

    /// Whether a shard's thread runs (`false`: it died of a panic outside the
    /// per-session guard; [`EngineEvent::ShardDown`](crate::EngineEvent::ShardDown) was
    /// sent).
    pub fn shard_alive(&self, shard: usize) -> Option<bool> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.alive.load(Ordering::Acquire))
    }

    /// Shards whose thread runs. The daemon exits (non-zero) when none is left.
    pub fn live_shards(&self) -> usize {
        self.inner
            .shards
            .iter()
            .filter(|s| s.alive.load(Ordering::Acquire))
            .count()
    }

    /// Engine events. Closing events ([`EngineEvent::SessionClosed`]) are never dropped;
    /// the others are dropped when their queue is full, so a consumer should keep
    /// reading (see [`EngineEvents`]).
    pub fn events(&self) -> &EngineEvents {
        &self.inner.events_rx
    }

    fn call<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        if !link.alive.load(Ordering::Acquire) {
            return Err(EngineError::ShardDown(shard));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let t = self.inner.reply_timeout;
        link.cmd_tx.send_timeout(make(tx), t).map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(_) => EngineError::Timeout(shard),
            crossbeam_channel::SendTimeoutError::Disconnected(_) => EngineError::ShardGone(shard),
        })?;
        link.waker.wake();
        rx.recv_timeout(t).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => EngineError::Timeout(shard),
            // The command was dropped unanswered: the shard stopped or died meanwhile.
            crossbeam_channel::RecvTimeoutError::Disconnected if died(&link.alive) => {
                EngineError::ShardDown(shard)
            }
            crossbeam_channel::RecvTimeoutError::Disconnected => EngineError::ShardGone(shard),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A poisoned registry (a panic in a control call) is still consistent enough
        // to continue: every mutation completes before the next shard call.
        let mut reg = self.inner.reg.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions that ended on their own (failure, panic): forget their legs.
        let gone: Vec<SessionId> = self.inner.gone_rx.try_iter().collect();
        for id in gone {
            self.forget_session(&mut reg, id);
        }
        reg
    }

    /// Creates a session on a shard: `Placement::Auto` picks the non-draining shard with
    /// the fewest sessions. The `Rtc` is built and the offer parsed and answered on the
    /// calling thread; the shard only installs the ready session, and no lock is held
    /// meanwhile.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`] / [`EngineError::ShardDraining`] for a placement that
    /// cannot take the session, [`EngineError::TooManyMedia`], [`EngineError::EngineFull`]
    /// and [`EngineError::ShardFull`] for a request over a cap, [`EngineError::Rtc`] when
    /// the offer or the direct parameters are refused, [`EngineError::SessionPanicked`]
    /// when the set-up panicked, [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when the shard does not answer, and [`EngineError::ShardDraining`] when the shard
    /// was drained (its sessions closed) while the session was being set up.
    pub fn create_session(
        &self,
        setup: SessionSetup,
        placement: Placement,
    ) -> Result<SessionInfo, EngineError> {
        let limits = self.inner.limits;
        let sections = media_sections(&setup);
        if sections > limits.max_media {
            return Err(EngineError::TooManyMedia {
                sections,
                limit: limits.max_media,
            });
        }
        let shard = match placement {
            Placement::Shard(i) => {
                let link = self
                    .inner
                    .shards
                    .get(i)
                    .ok_or(EngineError::NoSuchShard(i))?;
                if !link.alive.load(Ordering::Acquire) {
                    return Err(EngineError::ShardDown(i));
                }
                if link.draining.load(Ordering::Relaxed) {
                    return Err(EngineError::ShardDraining(i));
                }
                i
            }
            Placement::Auto => self
                .inner
                .shards
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    !l.draining.load(Ordering::Relaxed) && l.alive.load(Ordering::Acquire)
                })
                .min_by_key(|(_, l)| l.gauge.load(Ordering::Relaxed))
                .map(|(i, _)| i)
                .ok_or(if self.live_shards() == 0 {
                    EngineError::ShardDown(0)
                } else {
                    EngineError::ShardDraining(0)
                })?,
        };
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        let params = SessionParams {
            cert: &link.cert,
            rtx_buffer_packets: self.inner.rtx_buffer_packets,
            announced: &link.announced,
        };
        // Parse and negotiate here, on the caller's thread: neither the shard (its media)
        // nor the registry (every other control call) waits for a large offer.
        let prepared = prepare_session(id, setup, &params, Instant::now())?;
        // The shard may have started draining while the offer was handled.
        if link.draining.load(Ordering::Relaxed) {
            return Err(EngineError::ShardDraining(shard));
        }
        // Reserve the id (without media: nothing can subscribe to it yet) so that an end
        // reported by the shard before the registry learns the media is not lost.
        let mut reg = self.registry();
        if reg.sessions.len() + self.inner.events_rx.pending_closes() >= limits.max_sessions {
            return Err(EngineError::EngineFull {
                limit: limits.max_sessions,
            });
        }
        reg.sessions.insert(
            id,
            RegSession {
                shard,
                media: Vec::new(),
                legs: Vec::new(),
            },
        );
        drop(reg);
        let installed = match self.call(shard, |reply| Command::CreateSession {
            prepared: Box::new(prepared),
            reply,
        }) {
            Ok(Ok(Some(info))) => Ok(info),
            // Random 48-bit ufrags: a collision with a live session is practically
            // impossible, but it is refused rather than mis-routed.
            Ok(Ok(None)) => Err(EngineError::Rtc(RtcError::InvalidState(
                "ICE ufrag collision; retry",
            ))),
            Ok(Err(e)) | Err(e) => Err(e),
        };
        let mut reg = self.registry();
        match installed {
            Ok(info) => {
                if let Some(s) = reg.sessions.get_mut(&id) {
                    s.media = info.media.clone();
                    return Ok(info);
                }
                // Forgotten meanwhile: it ended already, or its shard was drained with
                // its sessions closed before this one arrived. Make sure it is gone.
                drop(reg);
                let _ = self.call(shard, |reply| Command::CloseSession { id, reply });
                Err(if link.draining.load(Ordering::Relaxed) {
                    EngineError::ShardDraining(shard)
                } else {
                    EngineError::UnknownSession(id)
                })
            }
            Err(e) => {
                reg.sessions.remove(&id);
                Err(e)
            }
        }
    }

    /// Closes a session (DTLS close_notify is sent) and removes it from its rooms; legs
    /// that forwarded it to others are removed.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown session; [`EngineError::Timeout`] /
    /// [`EngineError::ShardGone`] when its shard does not answer.
    pub fn close_session(&self, id: SessionId) -> Result<(), EngineError> {
        let mut reg = self.registry();
        let shard = reg
            .sessions
            .get(&id)
            .map(|s| s.shard)
            .ok_or(EngineError::UnknownSession(id))?;
        self.forget_session(&mut reg, id);
        let found = self.call(shard, |reply| Command::CloseSession { id, reply })?;
        if found {
            Ok(())
        } else {
            Err(EngineError::UnknownSession(id))
        }
    }

    /// Creates a room.
    ///
    /// # Errors
    ///
    /// [`EngineError::TooManyRooms`] when [`EngineConfig::max_rooms`](crate::EngineConfig::max_rooms)
    /// rooms exist.
    pub fn create_room(&self, name: &str) -> Result<RoomId, EngineError> {
        let mut reg = self.registry();
        if reg.rooms.len() >= self.inner.limits.max_rooms {
            return Err(EngineError::TooManyRooms {
                limit: self.inner.limits.max_rooms,
            });
        }
        reg.next_room += 1;
        let id = RoomId(reg.next_room);
        reg.rooms.insert(
            id,
            RegRoom {
                name: name.to_string(),
                publishers: Vec::new(),
                members: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Closes a room: every leg created in it is removed; sessions stay open.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownRoom`] for an unknown room; [`EngineError::Timeout`] /
    /// [`EngineError::ShardGone`] when a shard does not answer while its legs are removed.
    pub fn close_room(&self, room: RoomId) -> Result<(), EngineError> {
        let mut reg = self.registry();
        if !reg.rooms.contains_key(&room) {
            return Err(EngineError::UnknownRoom(room));
        }
        let legs = legs_where(&reg, |l| l.room == room);
        for (sub, sub_mid) in legs {
            self.remove_leg(&mut reg, sub, sub_mid)?;
        }
        reg.rooms.remove(&room);
        Ok(())
    }

    /// Lists rooms.
    pub fn list_rooms(&self) -> Vec<RoomInfo> {
        let reg = self.registry();
        let mut v: Vec<RoomInfo> = reg
            .rooms
            .iter()
            .map(|(id, r)| RoomInfo {
                id: *id,
                name: r.name.clone(),
                publishers: r.publishers.clone(),
                members: r.members.clone(),
            })
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Makes `session` a member of `room` (without publishing).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] or [`EngineError::UnknownRoom`].
    pub fn join_room(&self, room: RoomId, session: SessionId) -> Result<(), EngineError> {
        let mut reg = self.registry();
        if !reg.sessions.contains_key(&session) {
            return Err(EngineError::UnknownSession(session));
        }
        let r = reg
            .rooms
            .get_mut(&room)
            .ok_or(EngineError::UnknownRoom(room))?;
        if !r.members.contains(&session) {
            r.members.push(session);
        }
        Ok(())
    }

    /// Makes `session` a publisher in `room`: its received media sections become tracks
    /// others can subscribe to.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] or [`EngineError::UnknownRoom`].
    pub fn publish(&self, room: RoomId, session: SessionId) -> Result<(), EngineError> {
        let mut reg = self.registry();
        if !reg.sessions.contains_key(&session) {
            return Err(EngineError::UnknownSession(session));
        }
        let r = reg
            .rooms
            .get_mut(&room)
            .ok_or(EngineError::UnknownRoom(room))?;
        if !r.publishers.contains(&session) {
            r.publishers.push(session);
        }
        if !r.members.contains(&session) {
            r.members.push(session);
        }
        Ok(())
    }

    /// Forwards every track of `publisher` to `subscriber` (both in `room`; the subscriber
    /// joins it). Each track goes to the first free media section of the subscriber with
    /// the same kind that the engine may send on; when none is free, the first such
    /// section switches to this publisher (its leg keeps SSRC, sequence numbers and
    /// timestamps continuous). Returns the legs now carrying `publisher`.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::subscribe_tracks`].
    pub fn subscribe(
        &self,
        room: RoomId,
        subscriber: SessionId,
        publisher: SessionId,
    ) -> Result<Vec<LegInfo>, EngineError> {
        self.subscribe_tracks(room, subscriber, publisher, None)
    }

    /// As [`EngineHandle::subscribe`], limited to the publisher's media sections in
    /// `mids` (`None`: all).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownRoom`], [`EngineError::NotInRoom`] when `publisher` does not
    /// publish in the room, [`EngineError::TooManyLegs`] when a new leg would exceed
    /// [`EngineConfig::max_legs_per_room`](crate::EngineConfig::max_legs_per_room)
    /// (legs created before it stay), [`EngineError::UnknownSession`] for an unknown session (or one
    /// that ended meanwhile), [`EngineError::Timeout`] / [`EngineError::ShardGone`] when a shard
    /// does not answer.
    pub fn subscribe_tracks(
        &self,
        room: RoomId,
        subscriber: SessionId,
        publisher: SessionId,
        mids: Option<&[Mid]>,
    ) -> Result<Vec<LegInfo>, EngineError> {
        let mut reg = self.registry();
        let r = reg
            .rooms
            .get_mut(&room)
            .ok_or(EngineError::UnknownRoom(room))?;
        if !r.publishers.contains(&publisher) {
            return Err(EngineError::NotInRoom(publisher, room));
        }
        if !r.members.contains(&subscriber) {
            r.members.push(subscriber);
        }
        let pub_s = reg
            .sessions
            .get(&publisher)
            .ok_or(EngineError::UnknownSession(publisher))?;
        let pub_shard = pub_s.shard;
        let tracks: Vec<MediaDesc> = pub_s
            .media
            .iter()
            .filter(|m| m.can_recv() && mids.is_none_or(|w| w.contains(&m.mid)))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for track in tracks {
            let sub_s = reg
                .sessions
                .get(&subscriber)
                .ok_or(EngineError::UnknownSession(subscriber))?;
            let sub_shard = sub_s.shard;
            if let Some(l) = sub_s
                .legs
                .iter()
                .find(|l| l.publisher == publisher && l.pub_mid == track.mid)
            {
                out.push(LegInfo {
                    subscriber_mid: l.sub_mid,
                    publisher_mid: l.pub_mid,
                    ssrc: l.ssrc,
                    kind: track.kind,
                });
                continue;
            }
            let candidates: Vec<&MediaDesc> = sub_s
                .media
                .iter()
                .filter(|m| m.kind == track.kind && m.can_send())
                .collect();
            let slot = candidates
                .iter()
                .find(|m| !sub_s.legs.iter().any(|l| l.sub_mid == m.mid))
                .or_else(|| candidates.first());
            let Some(slot) = slot else {
                continue;
            };
            let slot = (*slot).clone();
            let replaced = sub_s.legs.iter().position(|l| l.sub_mid == slot.mid);
            // A new leg (not a source switch on a leg of this room) must fit the room.
            let grows = replaced.is_none_or(|i| sub_s.legs[i].room != room);
            if grows {
                let in_room: usize = reg
                    .sessions
                    .values()
                    .map(|s| s.legs.iter().filter(|l| l.room == room).count())
                    .sum();
                if in_room >= self.inner.limits.max_legs_per_room {
                    return Err(EngineError::TooManyLegs {
                        room,
                        limit: self.inner.limits.max_legs_per_room,
                    });
                }
            }
            let taken: Vec<u32> = sub_s.legs.iter().map(|l| l.ssrc).collect();
            let ssrc = match replaced {
                Some(i) => sub_s.legs[i].ssrc,
                // The SSRC the subscriber's SDP announced for this section, so the
                // browser binds its track to the leg (and the Rtc can answer NACKs
                // from its RTX buffer for it).
                None => slot
                    .tx_ssrc
                    .filter(|s| !taken.contains(s))
                    .unwrap_or_else(|| random_ssrc(&taken)),
            };
            let pt_map = PtMap::from_payloads(track.kind, &track.payloads, &slot.payloads);
            let spec = LegSpec {
                sub: subscriber,
                key: (publisher, track.mid),
                route: RouteSpec {
                    kind: track.kind,
                    pub_shard,
                },
                params: LegParams::new(ssrc, slot.mid, pt_map, slot.mid_ext_id),
            };
            // Remote reference first, so the publisher's shard already sends copies when
            // the leg appears.
            if pub_shard != sub_shard {
                self.add_remote_ref(&mut reg, (publisher, track.mid), spec.route, sub_shard)?;
            }
            let ok = self.call(sub_shard, |reply| Command::AddLeg {
                spec: Box::new(spec),
                reply,
            })?;
            if !ok {
                if pub_shard != sub_shard {
                    self.drop_remote_ref(&mut reg, (publisher, track.mid), sub_shard)?;
                }
                return Err(EngineError::UnknownSession(subscriber));
            }
            let old = reg.sessions.get_mut(&subscriber).and_then(|s| {
                let old = replaced.map(|i| s.legs.remove(i));
                s.legs.push(RegLeg {
                    sub_mid: slot.mid,
                    publisher,
                    pub_mid: track.mid,
                    ssrc,
                    room,
                });
                old
            });
            if let Some(old) = old {
                self.release_remote(&mut reg, &old, sub_shard)?;
            }
            out.push(LegInfo {
                subscriber_mid: slot.mid,
                publisher_mid: track.mid,
                ssrc,
                kind: track.kind,
            });
        }
        Ok(out)
    }

    /// Stops forwarding `publisher` to `subscriber`.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::unsubscribe_tracks`].
    pub fn unsubscribe(
        &self,
        room: RoomId,
        subscriber: SessionId,
        publisher: SessionId,
    ) -> Result<(), EngineError> {
        self.unsubscribe_tracks(room, subscriber, publisher, None)
    }

    /// As [`EngineHandle::unsubscribe`], limited to the publisher's media sections in
    /// `mids` (`None`: all).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownRoom`], [`EngineError::UnknownSession`] for an unknown
    /// subscriber, [`EngineError::Timeout`] / [`EngineError::ShardGone`] when a shard does not
    /// answer.
    pub fn unsubscribe_tracks(
        &self,
        room: RoomId,
        subscriber: SessionId,
        publisher: SessionId,
        mids: Option<&[Mid]>,
    ) -> Result<(), EngineError> {
        let mut reg = self.registry();
        if !reg.rooms.contains_key(&room) {
            return Err(EngineError::UnknownRoom(room));
        }
        let mids: Vec<Mid> = reg
            .sessions
            .get(&subscriber)
            .ok_or(EngineError::UnknownSession(subscriber))?
            .legs
            .iter()
            .filter(|l| l.publisher == publisher && mids.is_none_or(|w| w.contains(&l.pub_mid)))
            .map(|l| l.sub_mid)
            .collect();
        for m in mids {
            self.remove_leg(&mut reg, subscriber, m)?;
        }
        Ok(())
    }

    /// Asks a publisher for a keyframe on its media section `mid` (all sections when
    /// `None`). Returns whether a request was sent.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`]; [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when its shard does not answer.
    pub fn request_keyframe(
        &self,
        publisher: SessionId,
        mid: Option<Mid>,
    ) -> Result<bool, EngineError> {
        let shard = self
            .registry()
            .sessions
            .get(&publisher)
            .map(|s| s.shard)
            .ok_or(EngineError::UnknownSession(publisher))?;
        self.call(shard, |reply| Command::RequestKeyframe {
            publisher,
            mid,
            reply,
        })
    }

    /// Sets what a subscriber's leg on its media section `sub_mid` may forward (highest
    /// spatial and temporal layer, or paused); the subscriber's allocator re-runs at once.
    /// Returns whether the leg exists.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`]; [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when its shard does not answer.
    pub fn set_preference(
        &self,
        subscriber: SessionId,
        sub_mid: Mid,
        pref: Preference,
    ) -> Result<bool, EngineError> {
        let shard = self.session_shard(subscriber)?;
        self.call(shard, |reply| Command::SetPreference {
            sub: subscriber,
            sub_mid,
            pref,
            reply,
        })
    }

    /// Overrides the send-side bandwidth estimate a subscriber's allocator uses (`None`:
    /// back to the estimate of its transport-wide feedback). For tests and operators.
    /// Returns whether the session exists.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`]; [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when its shard does not answer.
    pub fn set_estimate_override(
        &self,
        subscriber: SessionId,
        bps: Option<u64>,
    ) -> Result<bool, EngineError> {
        let shard = self.session_shard(subscriber)?;
        self.call(shard, |reply| Command::SetEstimate {
            sub: subscriber,
            bps,
            reply,
        })
    }

    /// The layers of a subscriber's legs: (its media section, the layer its allocator
    /// chose, the layer being forwarded).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`]; [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when its shard does not answer.
    pub fn leg_layers(&self, subscriber: SessionId) -> Result<Vec<LegLayers>, EngineError> {
        let shard = self.session_shard(subscriber)?;
        self.call(shard, |reply| Command::LegLayers {
            sub: subscriber,
            reply,
        })
    }

    /// A snapshot of one session (state, addresses, counters, channels).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`]; [`EngineError::Timeout`] / [`EngineError::ShardGone`]
    /// when its shard does not answer.
    pub fn session_stats(&self, id: SessionId) -> Result<SessionSnapshot, EngineError> {
        let shard = self.session_shard(id)?;
        self.call(shard, |reply| Command::SessionStats { id, reply })?
            .ok_or(EngineError::UnknownSession(id))
    }

    /// Sends a message on an open data channel of a session. Returns the bytes accepted.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`], [`EngineError::NoSuchChannel`] when no such channel is
    /// open, [`EngineError::Rtc`] when the channel refuses the message,
    /// [`EngineError::SessionPanicked`], [`EngineError::Timeout`] / [`EngineError::ShardGone`].
    pub fn channel_send(
        &self,
        id: SessionId,
        target: ChannelTarget,
        binary: bool,
        data: Vec<u8>,
    ) -> Result<usize, EngineError> {
        let shard = self.session_shard(id)?;
        self.call(shard, |reply| Command::ChannelSend {
            id,
            target,
            binary,
            data,
            reply,
        })?
    }

    fn session_shard(&self, id: SessionId) -> Result<usize, EngineError> {
        self.registry()
            .sessions
            .get(&id)
            .map(|s| s.shard)
            .ok_or(EngineError::UnknownSession(id))
    }

    /// Counters and histograms of every shard. A shard that is down answers nothing: its
    /// entry has `alive: false` and zero counters.
    ///
    /// # Errors
    ///
    /// [`EngineError::Timeout`] / [`EngineError::ShardGone`] when a live shard does not
    /// answer.
    pub fn stats(&self) -> Result<EngineStats, EngineError> {
        let mut shards = Vec::with_capacity(self.inner.shards.len());
        for (i, link) in self.inner.shards.iter().enumerate() {
            match self.call(i, |reply| Command::Stats { reply }) {
                Ok(s) => shards.push(s),
                Err(EngineError::ShardDown(_)) => shards.push(dead_stats(i, link)),
                Err(e) => return Err(e),
            }
        }
        Ok(EngineStats { shards })
    }

    /// Drains a shard: it takes no new sessions. With `close_sessions`, its sessions are
    /// closed now; otherwise they end on their own. Returns the sessions closed.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`]; with `close_sessions`, [`EngineError::Timeout`] /
    /// [`EngineError::ShardGone`] when the shard does not answer.
    pub fn drain_shard(&self, shard: usize, close_sessions: bool) -> Result<usize, EngineError> {
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        link.draining.store(true, Ordering::Relaxed);
        if !close_sessions {
            return Ok(0);
        }
        let mut reg = self.registry();
        let ids: Vec<SessionId> = reg
            .sessions
            .iter()
            .filter(|(_, s)| s.shard == shard)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.forget_session(&mut reg, id);
        }
        self.call(shard, |reply| Command::CloseAll { reply })
    }

    /// Takes new sessions on a drained shard again.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`].
    pub fn undrain_shard(&self, shard: usize) -> Result<(), EngineError> {
        self.inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?
            .draining
            .store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Test hook: the next call into this session's `Rtc` panics inside the shard (which
    /// must remove the session, count it and carry on).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`], [`EngineError::ShardGone`] when the command cannot
    /// be queued.
    #[doc(hidden)]
    pub fn debug_inject_panic(&self, id: SessionId) -> Result<(), EngineError> {
        let shard = self
            .registry()
            .sessions
            .get(&id)
            .map(|s| s.shard)
            .ok_or(EngineError::UnknownSession(id))?;
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        link.cmd_tx
            .send_timeout(Command::InjectPanic { id }, self.inner.reply_timeout)
            .map_err(|_| EngineError::ShardGone(shard))?;
        link.waker.wake();
        Ok(())
    }

    /// Test hook: the shard panics in its loop, outside the per-session guard, and dies
    /// (see [`EngineEvent::ShardDown`](crate::EngineEvent::ShardDown)).
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`], [`EngineError::ShardDown`] when it is already down,
    /// [`EngineError::ShardGone`] when the command cannot be queued.
    #[doc(hidden)]
    pub fn debug_inject_shard_panic(&self, shard: usize) -> Result<(), EngineError> {
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        if !link.alive.load(Ordering::Acquire) {
            return Err(EngineError::ShardDown(shard));
        }
        link.cmd_tx
            .send_timeout(Command::InjectShardPanic, self.inner.reply_timeout)
            .map_err(|_| EngineError::ShardGone(shard))?;
        link.waker.wake();
        Ok(())
    }

    /// Stops every shard (sessions are closed) and joins the threads. Idempotent.
    pub fn shutdown(&self) {
        for link in &self.inner.shards {
            let _ = link
                .cmd_tx
                .send_timeout(Command::Shutdown, self.inner.reply_timeout);
            link.waker.wake();
        }
        let threads: Vec<JoinHandle<()>> = {
            let mut t = self.inner.threads.lock().unwrap_or_else(|p| p.into_inner());
            t.drain(..).collect()
        };
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}
