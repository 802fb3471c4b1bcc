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
use crate::shard::{Command, LegSpec, Prepared, RouteSpec, SessionParams, prepare_session};

mod events;
mod plain;
mod registry;
mod relay;
mod renegotiate;
mod rooms;
mod start;
#[cfg(test)]
mod tests;

pub use events::EngineEvents;
pub use plain::{PlainEgress, PlainIngest, PlainParams, PlainTrack};
use registry::{RegLeg, RegRoom, RegSession, Registry, Replies, legs_where};
pub use relay::{RelayAnswer, RelayInvite, RelayLayer, RelayParams, RelayStats, RelayTrack};

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
    /// Announced ICE-TCP addresses of the shard (empty: no TCP).
    announced_tcp: Vec<SocketAddr>,
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
    /// Every session's pacer burst allowance ([`EngineConfig::pacing_burst`]).
    pacing_burst: Duration,
    opus_red: rtc_core::sdp::OpusRed,
    dtls_versions: rtc_core::dtls::DtlsVersions,
    /// Relays to other engines.
    relays: Mutex<relay::Relays>,
}

/// The caps the control side enforces (the shards enforce their own).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_sessions: usize,
    max_sessions_per_shard: usize,
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
        fwd_in_place: 0,
        cross_shard_out: 0,
        cross_shard_in: 0,
        keyframe_requests: 0,
        rtx_resent: 0,
        rtx_unanswered: 0,
        rtx_refused: 0,
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
        legs: 0,
        handshakes: 0,
        handshake_failures: 0,
        handshake_ns: crate::shard::histogram(),
        forward_ns: control::LatencyBuckets::default(),
        maps: std::collections::BTreeMap::new(),
        free_buffer_bytes: 0,
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

    /// The ICE-TCP addresses shard `shard` announces (passive TCP host candidates;
    /// empty when [`EngineConfig::tcp_port`](crate::EngineConfig::tcp_port) is `None`).
    pub fn shard_announced_tcp(&self, shard: usize) -> Option<&[SocketAddr]> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.announced_tcp.as_slice())
    }

    /// Live sessions on a shard (a relaxed gauge; no shard round trip).
    pub fn shard_sessions(&self, shard: usize) -> Option<usize> {
        self.inner
            .shards
            .get(shard)
            .map(|s| s.gauge.load(Ordering::Relaxed))
    }

    /// The most live sessions one shard takes
    /// ([`EngineConfig::max_sessions_per_shard`](crate::EngineConfig::max_sessions_per_shard)).
    pub fn shard_session_cap(&self) -> usize {
        self.inner.limits.max_sessions_per_shard
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

    /// The live, non-draining shard with the fewest sessions (automatic placement).
    pub(super) fn least_loaded_shard(&self) -> Option<usize> {
        self.inner
            .shards
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.draining.load(Ordering::Relaxed) && l.alive.load(Ordering::Acquire))
            .min_by_key(|(_, l)| l.gauge.load(Ordering::Relaxed))
            .map(|(i, _)| i)
    }

    /// Engine events. Closing events
    /// ([`EngineEvent::SessionClosed`](crate::EngineEvent::SessionClosed)) are never
    /// dropped; the others are dropped when their queue is full, so a consumer should
    /// keep reading (see [`EngineEvents`]).
    pub fn events(&self) -> &EngineEvents {
        &self.inner.events_rx
    }

    /// The link to a shard whose thread runs.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`] for an index past the last shard and
    /// [`EngineError::ShardDown`] for a shard whose thread died.
    fn live_link(&self, shard: usize) -> Result<&ShardLink, EngineError> {
        let link = self
            .inner
            .shards
            .get(shard)
            .ok_or(EngineError::NoSuchShard(shard))?;
        if !link.alive.load(Ordering::Acquire) {
            return Err(EngineError::ShardDown(shard));
        }
        Ok(link)
    }

    /// Queues a command on a shard; its reply is awaited with [`EngineHandle::wait`].
    /// Commands to one shard run in the order they are queued, so queueing under the
    /// registry lock keeps the shards' state in the registry's order while the lock is
    /// never held across a round trip.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`], [`EngineError::ShardDown`], and
    /// [`EngineError::Timeout`] / [`EngineError::ShardGone`] when the command cannot be
    /// queued.
    fn send<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Sender<T>) -> Command,
    ) -> Result<registry::Pending<T>, EngineError> {
        let link = self.live_link(shard)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let t = self.inner.reply_timeout;
        link.cmd_tx.send_timeout(make(tx), t).map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(_) => EngineError::Timeout(shard),
            crossbeam_channel::SendTimeoutError::Disconnected(_) => EngineError::ShardGone(shard),
        })?;
        link.waker.wake();
        Ok(registry::Pending { shard, rx })
    }

    /// Awaits the reply to a command queued with [`EngineHandle::send`].
    ///
    /// # Errors
    ///
    /// [`EngineError::Timeout`] when no reply comes within the reply timeout,
    /// [`EngineError::ShardDown`] / [`EngineError::ShardGone`] when the shard died or
    /// stopped before answering.
    fn wait<T>(&self, p: registry::Pending<T>) -> Result<T, EngineError> {
        let shard = p.shard;
        p.rx.recv_timeout(self.inner.reply_timeout)
            .map_err(|e| match e {
                crossbeam_channel::RecvTimeoutError::Timeout => EngineError::Timeout(shard),
                // The command was dropped unanswered: the shard stopped or died meanwhile.
                crossbeam_channel::RecvTimeoutError::Disconnected
                    if self.inner.shards.get(shard).is_some_and(|l| died(&l.alive)) =>
                {
                    EngineError::ShardDown(shard)
                }
                crossbeam_channel::RecvTimeoutError::Disconnected => EngineError::ShardGone(shard),
            })
    }

    fn call<T>(
        &self,
        shard: usize,
        make: impl FnOnce(Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        self.wait(self.send(shard, make)?)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A poisoned registry (a panic in a control call) is still consistent enough
        // to continue: every mutation completes before the next shard call.
        let mut reg = self.inner.reg.lock().unwrap_or_else(|p| p.into_inner());
        // Sessions that ended on their own (failure, panic): forget their legs. The
        // shard commands this queues are not awaited (their failures would be ignored).
        let gone: Vec<SessionId> = self.inner.gone_rx.try_iter().collect();
        let mut replies = Replies::default();
        for id in gone {
            self.forget_session(&mut reg, id, &mut replies);
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
                let link = self.live_link(i)?;
                if link.draining.load(Ordering::Relaxed) {
                    return Err(EngineError::ShardDraining(i));
                }
                i
            }
            Placement::Auto => self
                .least_loaded_shard()
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
            pacing_burst: self.inner.pacing_burst,
            opus_red: self.inner.opus_red,
            dtls_versions: self.inner.dtls_versions,
            announced: &link.announced,
            announced_tcp: &link.announced_tcp,
        };
        // Parse and negotiate here, on the caller's thread: neither the shard (its media)
        // nor the registry (every other control call) waits for a large offer.
        let prepared = prepare_session(id, setup, &params, Instant::now())?;
        // The shard may have started draining while the offer was handled.
        if link.draining.load(Ordering::Relaxed) {
            return Err(EngineError::ShardDraining(shard));
        }
        self.reserve_session(&mut self.registry(), id, shard)?;
        let installed = self.install_on_shard(shard, prepared);
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

    /// Reserves `id` on `shard` in the registry without media (nothing can subscribe to
    /// it yet), so that an end reported by the shard before the registry learns the
    /// media is not lost.
    ///
    /// # Errors
    ///
    /// [`EngineError::EngineFull`] when the engine holds its most sessions already.
    fn reserve_session(
        &self,
        reg: &mut Registry,
        id: SessionId,
        shard: usize,
    ) -> Result<(), EngineError> {
        let limit = self.inner.limits.max_sessions;
        if reg.sessions.len() + self.inner.events_rx.pending_closes() >= limit {
            return Err(EngineError::EngineFull { limit });
        }
        reg.sessions.insert(
            id,
            RegSession {
                shard,
                media: Vec::new(),
                legs: Vec::new(),
            },
        );
        Ok(())
    }

    /// Hands a prepared session to its shard for installation.
    ///
    /// # Errors
    ///
    /// [`EngineError::Rtc`] when its ICE ufrag collides with a live session's, and the
    /// shard's errors.
    fn install_on_shard(
        &self,
        shard: usize,
        prepared: Prepared,
    ) -> Result<SessionInfo, EngineError> {
        match self.call(shard, |reply| Command::CreateSession {
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
        }
    }

    /// The media sections of a session as the registry knows them (negotiated, declared
    /// or added by legs).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] for an unknown session.
    pub fn session_media(&self, id: SessionId) -> Result<Vec<MediaDesc>, EngineError> {
        self.registry()
            .sessions
            .get(&id)
            .map(|s| s.media.clone())
            .ok_or(EngineError::UnknownSession(id))
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
        let mut replies = Replies::default();
        self.forget_session(&mut reg, id, &mut replies);
        let close = self.send(shard, |reply| Command::CloseSession { id, reply });
        // Replies are awaited without the lock: a slow shard delays only this call.
        drop(reg);
        // Failures of the upkeep are ignored, as for any forgotten session.
        let _ = self.settle(replies);
        let found = self.wait(close?)?;
        if found {
            Ok(())
        } else {
            Err(EngineError::UnknownSession(id))
        }
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

    /// Engine-side forwarding latency of every shard merged: per forwarded packet, from
    /// the receive completion of its batch to the submission of the sends (see
    /// [`ShardStats::forward_ns`]). Cumulative since start; subtract an earlier
    /// snapshot ([`control::LatencyBuckets::since`]) for a window.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::stats`].
    pub fn forward_latency(&self) -> Result<control::LatencyBuckets, EngineError> {
        let mut all = control::LatencyBuckets::default();
        for s in self.stats()?.shards {
            // Every shard uses the same layout, so merging cannot fail.
            all.merge(&s.forward_ns);
        }
        Ok(all)
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
        let mut replies = Replies::default();
        for id in ids {
            self.forget_session(&mut reg, id, &mut replies);
        }
        let closed = self.send(shard, |reply| Command::CloseAll { reply });
        drop(reg);
        let _ = self.settle(replies);
        self.wait(closed?)
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
        let link = self.live_link(shard)?;
        link.cmd_tx
            .send_timeout(Command::InjectShardPanic, self.inner.reply_timeout)
            .map_err(|_| EngineError::ShardGone(shard))?;
        link.waker.wake();
        Ok(())
    }

    /// Test hook: the shard stops handling anything (commands, datagrams) until the
    /// returned sender gets a message or is dropped (60 s at most), so every reply it
    /// owes meanwhile is late. Returns once the shard holds.
    ///
    /// # Errors
    ///
    /// [`EngineError::NoSuchShard`], [`EngineError::ShardDown`], [`EngineError::Timeout`]
    /// / [`EngineError::ShardGone`] when the shard does not take the command.
    #[doc(hidden)]
    pub fn debug_hold_shard(&self, shard: usize) -> Result<Sender<()>, EngineError> {
        let (release, held) = crossbeam_channel::bounded(1);
        self.call(shard, |entered| Command::DebugHold {
            entered,
            release: held,
        })?;
        Ok(release)
    }

    /// Test hook: commands queued on a shard and not yet taken by it.
    #[doc(hidden)]
    pub fn debug_queued_commands(&self, shard: usize) -> usize {
        self.inner.shards.get(shard).map_or(0, |l| l.cmd_tx.len())
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
