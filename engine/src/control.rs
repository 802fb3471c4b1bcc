//! The control plane of the engine: [`EngineControl`] serves the `control` crate's
//! requests (the Unix-socket protocol of `docs/control-protocol.md`) over an
//! [`EngineHandle`], and publishes engine events on an [`EventHub`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let engine = engine::Engine::start(engine::EngineConfig::default())?;
//! let hub = control::EventHub::new(1024)?;
//! let handler = engine::control::EngineControl::new(engine.clone(), hub.clone());
//! let server = control::ControlServer::bind_with_events(
//!     control::ServerConfig::new("/tmp/rtc-engine.sock"),
//!     handler.clone(),
//!     hub,
//! )?;
//! # drop(server); handler.shutdown(); engine.shutdown(); Ok(()) }
//! ```
//!
//! Identifiers: control session ids are the engine's [`SessionId`] numbers; rooms are
//! named on the wire and mapped to engine [`RoomId`]s here (names are unique); tracks
//! are media-section ids (`mid`s); shards are shard indices.
//!
//! Placement of new sessions ([`EngineControl::place`]): a session joining a room goes
//! to the shard already holding most of that room's sessions while that shard has fewer
//! than [`ControlOptions::room_shard_sessions`] sessions and is not draining; otherwise
//! to the least-loaded non-draining shard, where load is the shard's share of all
//! sessions plus its share of the engine's packet rate (sampled at most every
//! [`ControlOptions::load_sample_interval`]). A `shard` in the request pins it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::{
    ChannelPayload, ClientId, ControlError, ControlHandler, ErrorCode, Event, EventHub,
    HistogramSummary, Request, Response,
};
use rtc_core::dtls::Fingerprint;
use rtc_core::ice::{Candidate, IceConnectionState, IceCreds};
use rtc_core::media::{MediaKind, Mid};

use crate::api::{
    ChannelTarget, CloseReason, DirectParams, EngineError, EngineEvent, EngineStats, MediaDesc,
    Placement, RoomId, SessionId, SessionSetup, SessionSnapshot, ShardStats,
};
use crate::engine::EngineHandle;
use crate::io::BackendKind;

/// Longest room name accepted (bytes).
pub const MAX_ROOM_NAME: usize = 256;

/// Tuning of [`EngineControl`].
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Keep a room's new sessions on the shard holding most of the room while that shard
    /// has fewer sessions than this (default 256); beyond it, new members spill to the
    /// least-loaded shard.
    pub room_shard_sessions: usize,
    /// Minimum interval between packet-rate samples used for placement (default 1 s).
    pub load_sample_interval: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            room_shard_sessions: 256,
            load_sample_interval: Duration::from_secs(1),
        }
    }
}

struct Sess {
    shard: usize,
    created: Instant,
    owner: ClientId,
    reap: bool,
    media: Vec<MediaDesc>,
    /// The room joined at creation.
    room: Option<RoomId>,
}

#[derive(Default)]
struct LoadSample {
    at: Option<Instant>,
    packets: Vec<u64>,
    rates: Vec<f64>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Sess>,
    rooms: HashMap<String, RoomId>,
    /// Track filters of publications: `None` = every inbound track.
    published: HashMap<(SessionId, RoomId), Option<Vec<Mid>>>,
    clients: HashSet<ClientId>,
    load: LoadSample,
}

impl State {
    fn room_name(&self, id: RoomId) -> Option<String> {
        self.rooms
            .iter()
            .find(|(_, r)| **r == id)
            .map(|(n, _)| n.clone())
    }
}

struct Shared {
    engine: EngineHandle,
    hub: EventHub,
    opts: ControlOptions,
    started: Instant,
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent, so a poisoned lock (a panic
        // in a handler, already reported as `internal`) is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves control requests over an [`EngineHandle`]; see the module docs.
///
/// [`EngineControl::new`] starts one thread that turns [`EngineHandle::events`] into
/// control [`Event`]s; it is the only reader of that channel. Stop it with
/// [`EngineControl::shutdown`] (also run on drop) before or after the engine stops.
pub struct EngineControl {
    shared: Arc<Shared>,
    pump: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EngineControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineControl")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

fn map_err(e: EngineError) -> ControlError {
    match e {
        EngineError::UnknownSession(id) => ControlError::not_found(format!("no session {}", id.0)),
        EngineError::UnknownRoom(id) => ControlError::not_found(format!("no room {id}")),
        EngineError::NoSuchShard(i) => ControlError::not_found(format!("no shard {i}")),
        EngineError::ShardDraining(i) => {
            ControlError::unavailable(format!("shard {i} is draining"))
        }
        EngineError::NotInRoom(s, _) => {
            ControlError::conflict(format!("session {} is not in the room in that role", s.0))
        }
        EngineError::NoSuchChannel(s, c) => {
            ControlError::not_found(format!("session {} has no open data channel {c}", s.0))
        }
        EngineError::Rtc(m) => ControlError::bad_params(m.to_string()),
        e @ EngineError::SessionPanicked(_) => ControlError::bad_params(e.to_string()),
        EngineError::Timeout(i) => {
            ControlError::unavailable(format!("shard {i} did not answer in time"))
        }
        EngineError::ShardGone(_) => {
            ControlError::new(ErrorCode::ShuttingDown, "the engine is shutting down")
        }
        other => ControlError::internal(other.to_string()),
    }
}

fn track_id(mid: Mid) -> control::TrackId {
    control::TrackId(mid.as_str().to_owned())
}

fn kind_of(k: MediaKind) -> control::MediaKind {
    match k {
        MediaKind::Audio => control::MediaKind::Audio,
        MediaKind::Video => control::MediaKind::Video,
    }
}

fn backend_name(b: BackendKind) -> &'static str {
    match b {
        BackendKind::IoUring => "io_uring",
        BackendKind::Portable => "portable",
    }
}

fn shard_id(i: usize) -> control::ShardId {
    control::ShardId(u32::try_from(i).unwrap_or(u32::MAX))
}

/// A nanosecond histogram summary in microseconds (rounded up).
fn in_us(s: HistogramSummary) -> HistogramSummary {
    HistogramSummary {
        count: s.count,
        p50: s.p50.div_ceil(1000),
        p90: s.p90.div_ceil(1000),
        p99: s.p99.div_ceil(1000),
        p999: s.p999.div_ceil(1000),
        max: s.max.div_ceil(1000),
    }
}

fn check_room_name(name: &str) -> Result<(), ControlError> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(ControlError::bad_params(format!(
            "a room name must be 1 to {MAX_ROOM_NAME} bytes"
        )));
    }
    Ok(())
}

fn parse_mid(t: &control::TrackId) -> Result<Mid, ControlError> {
    Mid::new(&t.0).ok_or_else(|| ControlError::not_found(format!("no track {:?}", t.0)))
}

/// The engine's DTLS role, read from the `a=setup` attribute of its answer.
fn answer_role(answer: &str) -> control::DtlsRole {
    if answer.lines().any(|l| l.trim_end() == "a=setup:passive") {
        control::DtlsRole::Server
    } else {
        control::DtlsRole::Client
    }
}

fn direct_params(d: &control::DirectParams) -> Result<DirectParams, ControlError> {
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if !(4..=256).contains(&d.ice_ufrag.len()) || !d.ice_ufrag.chars().all(ice_char) {
        return Err(ControlError::bad_params(
            "direct.ice_ufrag: 4 to 256 ICE characters (RFC 8839)",
        ));
    }
    if !(22..=256).contains(&d.ice_pwd.len()) || !d.ice_pwd.chars().all(ice_char) {
        return Err(ControlError::bad_params(
            "direct.ice_pwd: 22 to 256 ICE characters (RFC 8839)",
        ));
    }
    if d.ice_lite {
        return Err(ControlError::bad_params(
            "direct.ice_lite: the engine is an ICE-lite agent, so the remote must be a full agent",
        ));
    }
    let fp = Fingerprint::from_str(&format!(
        "{} {}",
        d.fingerprint.algorithm, d.fingerprint.value
    ))
    .map_err(|e| ControlError::bad_params(format!("direct.fingerprint: {e}")))?;
    for c in &d.candidates {
        // The engine is ICE-lite: it learns the remote address from the peer's checks
        // and needs no remote candidates, but malformed ones are still refused.
        Candidate::from_sdp_string(c)
            .map_err(|e| ControlError::bad_params(format!("direct.candidates: {e}")))?;
    }
    Ok(DirectParams {
        remote_ice: IceCreds {
            ufrag: d.ice_ufrag.clone(),
            pass: d.ice_pwd.clone(),
        },
        remote_fingerprint: fp,
        dtls_active: d.remote_dtls_role == control::DtlsRole::Server,
        media: Vec::new(),
        rx_ssrcs: Vec::new(),
    })
}

fn fingerprint_of(fp: &Fingerprint) -> control::Fingerprint {
    let s = fp.to_string();
    let (alg, value) = s.split_once(' ').unwrap_or((s.as_str(), ""));
    control::Fingerprint {
        algorithm: alg.to_owned(),
        value: value.to_owned(),
    }
}

impl EngineControl {
    /// A handler over `engine` publishing on `events`, with default [`ControlOptions`].
    /// Starts the event thread.
    pub fn new(engine: EngineHandle, events: EventHub) -> Arc<EngineControl> {
        Self::with_options(engine, events, ControlOptions::default())
    }

    /// As [`EngineControl::new`] with explicit options.
    pub fn with_options(
        engine: EngineHandle,
        events: EventHub,
        opts: ControlOptions,
    ) -> Arc<EngineControl> {
        let shared = Arc::new(Shared {
            engine,
            hub: events,
            opts,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let pump = std::thread::Builder::new()
            .name("control-events".into())
            .spawn(move || event_pump(&s));
        let pump = match pump {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the control event thread; no events will be published");
                None
            }
        };
        Arc::new(EngineControl {
            shared,
            pump: Mutex::new(pump),
        })
    }

    /// Stops the event thread. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let t = self.pump.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t
            && t.join().is_err()
        {
            tracing::error!("the control event thread panicked");
        }
    }

    /// The shard a new session goes to: `pin` if given (it must exist and not be
    /// draining), else the room's shard while it fits, else the least-loaded shard.
    ///
    /// # Errors
    /// `not_found` for a pinned shard that does not exist, `unavailable` when the
    /// pinned shard or every shard is draining.
    pub fn place(
        &self,
        room: Option<&str>,
        pin: Option<control::ShardId>,
    ) -> Result<usize, ControlError> {
        let eng = &self.shared.engine;
        let n = eng.shard_count();
        if let Some(p) = pin {
            let i = usize::try_from(p.0).unwrap_or(usize::MAX);
            return match eng.shard_draining(i) {
                None => Err(ControlError::not_found(format!("no shard {}", p.0))),
                Some(true) => Err(ControlError::unavailable(format!(
                    "shard {} is draining",
                    p.0
                ))),
                Some(false) => Ok(i),
            };
        }
        let open: Vec<usize> = (0..n)
            .filter(|i| eng.shard_draining(*i) == Some(false))
            .collect();
        if open.is_empty() {
            return Err(ControlError::unavailable("every shard is draining"));
        }
        let sessions: Vec<usize> = (0..n).map(|i| eng.shard_sessions(i).unwrap_or(0)).collect();
        // Keep the room together while its shard has room.
        if let Some(room) = room {
            let st = self.shared.state();
            if let Some(rid) = st.rooms.get(room).copied() {
                let mut per_shard = vec![0usize; n];
                for s in st.sessions.values() {
                    if s.room == Some(rid)
                        && let Some(c) = per_shard.get_mut(s.shard)
                    {
                        *c += 1;
                    }
                }
                let best = open
                    .iter()
                    .copied()
                    .filter(|i| per_shard.get(*i).is_some_and(|c| *c > 0))
                    .filter(|i| {
                        sessions.get(*i).copied().unwrap_or(0)
                            < self.shared.opts.room_shard_sessions
                    })
                    .max_by_key(|i| (per_shard.get(*i).copied().unwrap_or(0), usize::MAX - i));
                if let Some(b) = best {
                    return Ok(b);
                }
            }
        }
        let rates = self.rates();
        let total_s: usize = sessions.iter().sum();
        let total_r: f64 = rates.iter().sum();
        let score = |i: usize| {
            let s = sessions.get(i).copied().unwrap_or(0) as f64 / total_s.max(1) as f64;
            let r = if total_r > 0.0 {
                rates.get(i).copied().unwrap_or(0.0) / total_r
            } else {
                0.0
            };
            s + r
        };
        // `open` is not empty (checked above); ties go to the lowest index.
        open.iter()
            .copied()
            .min_by(|a, b| score(*a).total_cmp(&score(*b)))
            .ok_or_else(|| ControlError::unavailable("every shard is draining"))
    }

    /// Packet rates per shard (in + out datagrams per second), refreshed when stale.
    fn rates(&self) -> Vec<f64> {
        let now = Instant::now();
        {
            let mut st = self.shared.state();
            let fresh = st
                .load
                .at
                .is_some_and(|t| now.duration_since(t) < self.shared.opts.load_sample_interval);
            if fresh {
                return st.load.rates.clone();
            }
            // Claim this refresh so concurrent placements do not all sample.
            st.load.at = Some(now);
        }
        if let Ok(stats) = self.shared.engine.stats() {
            self.record_load(&stats, now);
        }
        self.shared.state().load.rates.clone()
    }

    fn record_load(&self, stats: &EngineStats, now: Instant) {
        let mut st = self.shared.state();
        let packets: Vec<u64> = stats
            .shards
            .iter()
            .map(|s| s.packets_in.saturating_add(s.packets_out))
            .collect();
        let prev_at = st
            .load
            .at
            .filter(|_| st.load.packets.len() == packets.len());
        let dt = prev_at
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        if dt > 0.0 {
            st.load.rates = packets
                .iter()
                .zip(&st.load.packets)
                .map(|(a, b)| a.saturating_sub(*b) as f64 / dt)
                .collect();
        } else if st.load.rates.len() != packets.len() {
            st.load.rates = vec![0.0; packets.len()];
        }
        st.load.packets = packets;
        st.load.at = Some(now);
    }

    fn room_id(&self, name: &str) -> Result<RoomId, ControlError> {
        self.shared
            .state()
            .rooms
            .get(name)
            .copied()
            .ok_or_else(|| ControlError::not_found(format!("no room {name:?}")))
    }

    fn media_of(&self, id: SessionId) -> Result<Vec<MediaDesc>, ControlError> {
        self.shared
            .state()
            .sessions
            .get(&id)
            .map(|s| s.media.clone())
            .ok_or_else(|| ControlError::not_found(format!("no session {}", id.0)))
    }

    fn publish_event(&self, ev: Event) {
        self.shared.hub.publish(&ev);
    }

    fn session_create(
        &self,
        client: ClientId,
        req: control::SessionCreate,
    ) -> Result<Response, ControlError> {
        if let Some(r) = &req.room {
            check_room_name(&r.0)?;
        }
        let (setup, direct_role) = match req.setup {
            control::SessionSetup::Offer(sdp) => (SessionSetup::Offer(sdp), None),
            control::SessionSetup::Direct(d) => {
                let p = direct_params(&d)?;
                let role = if p.dtls_active {
                    control::DtlsRole::Client
                } else {
                    control::DtlsRole::Server
                };
                (SessionSetup::Direct(p), Some(role))
            }
        };
        let shard = self.place(req.room.as_ref().map(|r| r.0.as_str()), req.shard)?;
        let eng = &self.shared.engine;
        let info = eng
            .create_session(setup, Placement::Shard(shard))
            .map_err(map_err)?;
        let room = match &req.room {
            Some(name) => {
                let rid = {
                    let mut st = self.shared.state();
                    match st.rooms.get(&name.0) {
                        Some(r) => *r,
                        None => {
                            let r = eng.create_room(&name.0);
                            st.rooms.insert(name.0.clone(), r);
                            r
                        }
                    }
                };
                if let Err(e) = eng.join_room(rid, info.id) {
                    let _ = eng.close_session(info.id);
                    return Err(map_err(e));
                }
                Some(rid)
            }
            None => None,
        };
        self.shared.state().sessions.insert(
            info.id,
            Sess {
                shard: info.shard,
                created: Instant::now(),
                owner: client,
                reap: req.reap_on_disconnect,
                media: info.media.clone(),
                room,
            },
        );
        for m in info.media.iter().filter(|m| m.can_recv()) {
            self.publish_event(Event::TrackAdded(control::TrackChange {
                session: control::SessionId(info.id.0),
                track: track_id(m.mid),
                kind: kind_of(m.kind),
                room: None,
            }));
        }
        let dtls_role = match (&info.answer, direct_role) {
            (_, Some(r)) => r,
            (Some(a), None) => answer_role(a),
            (None, None) => control::DtlsRole::Client,
        };
        Ok(Response::SessionCreated(control::SessionCreated {
            session: control::SessionId(info.id.0),
            shard: shard_id(info.shard),
            answer: info.answer,
            ice_ufrag: info.local_ice.ufrag,
            ice_pwd: info.local_ice.pass,
            fingerprint: fingerprint_of(&info.fingerprint),
            dtls_role,
            candidates: info.candidates,
        }))
    }

    fn session_stats(&self, id: SessionId) -> Result<Response, ControlError> {
        let snap = match self.shared.engine.session_stats(id) {
            Ok(s) => s,
            Err(e) => {
                if matches!(e, EngineError::UnknownSession(_)) {
                    // Gone without our event thread noticing yet: forget it now.
                    self.shared.state().sessions.remove(&id);
                }
                return Err(map_err(e));
            }
        };
        let st = self.shared.state();
        let sess = st.sessions.get(&id);
        let room = st
            .published
            .keys()
            .filter(|(s, _)| *s == id)
            .map(|(_, r)| *r)
            .min()
            .or_else(|| sess.and_then(|s| s.room))
            .and_then(|r| st.room_name(r))
            .map(control::RoomId);
        let media: &[MediaDesc] = sess.map(|s| s.media.as_slice()).unwrap_or(&[]);
        let age_ms = sess
            .map(|s| u64::try_from(s.created.elapsed().as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Ok(Response::SessionStats(stats_of(&snap, room, age_ms, media)))
    }

    fn publish(&self, p: control::Publish) -> Result<Response, ControlError> {
        let id = SessionId(p.session.0);
        let rid = self.room_id(&p.room.0)?;
        let media = self.media_of(id)?;
        let inbound: Vec<&MediaDesc> = media.iter().filter(|m| m.can_recv()).collect();
        let filter = match &p.tracks {
            None => None,
            Some(ts) => {
                let mut mids = Vec::with_capacity(ts.len());
                for t in ts {
                    let m = parse_mid(t)?;
                    if !inbound.iter().any(|d| d.mid == m) {
                        return Err(ControlError::not_found(format!(
                            "session {} has no inbound track {:?}",
                            id.0, t.0
                        )));
                    }
                    mids.push(m);
                }
                Some(mids)
            }
        };
        self.shared.engine.publish(rid, id).map_err(map_err)?;
        let tracks: Vec<control::TrackInfo> = inbound
            .iter()
            .filter(|m| filter.as_ref().is_none_or(|f| f.contains(&m.mid)))
            .map(|m| control::TrackInfo {
                track: track_id(m.mid),
                kind: kind_of(m.kind),
                session: p.session,
            })
            .collect();
        self.shared.state().published.insert((id, rid), filter);
        for t in &tracks {
            self.publish_event(Event::TrackAdded(control::TrackChange {
                session: p.session,
                track: t.track.clone(),
                kind: t.kind,
                room: Some(p.room.clone()),
            }));
        }
        Ok(Response::Tracks(control::TrackList { tracks }))
    }

    /// The room in which `publisher` publishes to `subscriber`, with the publication's
    /// track filter: preferably one the subscriber is a member of.
    fn forwarding_room(
        &self,
        subscriber: SessionId,
        publisher: SessionId,
    ) -> Option<(RoomId, Option<Vec<Mid>>)> {
        let rooms = self.shared.engine.list_rooms();
        let mut cands: Vec<_> = rooms
            .iter()
            .filter(|r| r.publishers.contains(&publisher))
            .collect();
        cands.sort_by_key(|r| (!r.members.contains(&subscriber), r.id));
        let room = cands.first()?.id;
        let filter = self
            .shared
            .state()
            .published
            .get(&(publisher, room))
            .cloned()
            .flatten();
        Some((room, filter))
    }

    fn requested_mids(
        tracks: &Option<Vec<control::TrackId>>,
        allowed: &Option<Vec<Mid>>,
        media: &[MediaDesc],
        publisher: SessionId,
    ) -> Result<Option<Vec<Mid>>, ControlError> {
        let Some(ts) = tracks else {
            return Ok(allowed.clone());
        };
        let mut mids = Vec::with_capacity(ts.len());
        for t in ts {
            let m = parse_mid(t)?;
            let published = media.iter().any(|d| d.mid == m && d.can_recv())
                && allowed.as_ref().is_none_or(|a| a.contains(&m));
            if !published {
                return Err(ControlError::not_found(format!(
                    "session {} publishes no track {:?}",
                    publisher.0, t.0
                )));
            }
            mids.push(m);
        }
        Ok(Some(mids))
    }

    fn subscribe(&self, s: control::Subscribe) -> Result<Response, ControlError> {
        let sub = SessionId(s.subscriber.0);
        let publ = SessionId(s.publisher.0);
        self.media_of(sub)?;
        let media = self.media_of(publ)?;
        let Some((room, allowed)) = self.forwarding_room(sub, publ) else {
            return Err(ControlError::conflict(format!(
                "session {} publishes in no room",
                publ.0
            )));
        };
        let mids = Self::requested_mids(&s.tracks, &allowed, &media, publ)?;
        let legs = self
            .shared
            .engine
            .subscribe_tracks(room, sub, publ, mids.as_deref())
            .map_err(map_err)?;
        if legs.is_empty() {
            return Err(ControlError::conflict(format!(
                "session {} has no media section the engine can send on for these tracks",
                sub.0
            )));
        }
        Ok(Response::Tracks(control::TrackList {
            tracks: legs
                .iter()
                .map(|l| control::TrackInfo {
                    track: track_id(l.publisher_mid),
                    kind: kind_of(l.kind),
                    session: s.publisher,
                })
                .collect(),
        }))
    }

    fn unsubscribe(&self, s: control::Subscribe) -> Result<Response, ControlError> {
        let sub = SessionId(s.subscriber.0);
        let publ = SessionId(s.publisher.0);
        self.media_of(sub)?;
        let media = self.media_of(publ)?;
        let Some((room, _)) = self.forwarding_room(sub, publ) else {
            // Not published anywhere: nothing is forwarded.
            return Ok(Response::Done);
        };
        let mids = Self::requested_mids(&s.tracks, &None, &media, publ)?;
        self.shared
            .engine
            .unsubscribe_tracks(room, sub, publ, mids.as_deref())
            .map_err(map_err)?;
        Ok(Response::Done)
    }

    fn keyframe(&self, k: control::KeyframeRequest) -> Result<Response, ControlError> {
        let id = SessionId(k.session.0);
        let media = self.media_of(id)?;
        let video: Vec<Mid> = media
            .iter()
            .filter(|m| m.kind == MediaKind::Video && m.can_recv())
            .map(|m| m.mid)
            .collect();
        let targets = match &k.track {
            Some(t) => {
                let m = parse_mid(t)?;
                if !video.contains(&m) {
                    return Err(ControlError::not_found(format!(
                        "session {} has no inbound video track {:?}",
                        id.0, t.0
                    )));
                }
                vec![m]
            }
            None => video,
        };
        if targets.is_empty() {
            return Err(ControlError::not_found(format!(
                "session {} has no inbound video track",
                id.0
            )));
        }
        let mut sent = Vec::new();
        for m in targets {
            if self
                .shared
                .engine
                .request_keyframe(id, Some(m))
                .map_err(map_err)?
            {
                sent.push(m);
            }
        }
        if sent.is_empty() {
            return Err(ControlError::conflict(format!(
                "no video received from session {} yet: nothing to ask a keyframe of",
                id.0
            )));
        }
        for m in sent {
            self.publish_event(Event::KeyframeRequested(control::KeyframeRequested {
                session: k.session,
                track: track_id(m),
                requester: None,
            }));
        }
        Ok(Response::Done)
    }

    fn engine_stats(&self) -> Result<Response, ControlError> {
        let eng = &self.shared.engine;
        let stats = eng.stats().map_err(map_err)?;
        self.record_load(&stats, Instant::now());
        let (rooms, clients) = {
            let st = self.shared.state();
            (st.rooms.len(), st.clients.len())
        };
        let shards: Vec<control::ShardStats> = stats
            .shards
            .iter()
            .map(|s| shard_stats(s, eng.shard_draining(s.shard).unwrap_or(false)))
            .collect();
        Ok(Response::EngineStats(control::EngineStats {
            uptime_ms: u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sessions: stats.sessions() as u64,
            rooms: rooms as u64,
            control_clients: clients as u64,
            shards,
        }))
    }

    fn shard_list(&self) -> Result<Response, ControlError> {
        let eng = &self.shared.engine;
        let stats = eng.stats().map_err(map_err)?;
        Ok(Response::Shards(control::ShardList {
            shards: stats
                .shards
                .iter()
                .map(|s| control::ShardInfo {
                    shard: shard_id(s.shard),
                    core: s.core.and_then(|c| u32::try_from(c).ok()),
                    backend: backend_name(s.backend).to_owned(),
                    sessions: s.sessions as u64,
                    draining: eng.shard_draining(s.shard).unwrap_or(false),
                    addrs: eng
                        .shard_announced(s.shard)
                        .unwrap_or(&[])
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                })
                .collect(),
        }))
    }

    fn room_list(&self) -> Response {
        let rooms = self.shared.engine.list_rooms();
        Response::Rooms(control::RoomList {
            rooms: rooms
                .into_iter()
                .map(|r| control::RoomInfo {
                    room: control::RoomId(r.name),
                    sessions: r.members.iter().map(|s| control::SessionId(s.0)).collect(),
                    publishers: r
                        .publishers
                        .iter()
                        .map(|s| control::SessionId(s.0))
                        .collect(),
                })
                .collect(),
        })
    }

    fn channel_send(&self, c: control::ChannelSend) -> Result<Response, ControlError> {
        let id = SessionId(c.session.0);
        let target = match c.channel {
            control::ChannelRef::Id(i) => ChannelTarget::Id(i),
            control::ChannelRef::Label(l) => ChannelTarget::Label(l),
        };
        let (binary, data) = match c.payload {
            ChannelPayload::Text(t) => (false, t.into_bytes()),
            ChannelPayload::Binary(b) => (true, b),
        };
        match self.shared.engine.channel_send(id, target, binary, data) {
            Ok(_) => Ok(Response::Done),
            Err(EngineError::Rtc(m)) => Err(ControlError::conflict(m.to_string())),
            Err(e @ EngineError::SessionPanicked(_)) => Err(ControlError::conflict(e.to_string())),
            Err(e) => Err(map_err(e)),
        }
    }
}

fn stats_of(
    snap: &SessionSnapshot,
    room: Option<control::RoomId>,
    age_ms: u64,
    media: &[MediaDesc],
) -> control::SessionStats {
    let state = if !snap.alive {
        control::SessionState::Closed
    } else {
        match snap.ice_state {
            IceConnectionState::Disconnected => control::SessionState::Disconnected,
            IceConnectionState::Failed => control::SessionState::Failed,
            _ if snap.connected => control::SessionState::Connected,
            IceConnectionState::New => control::SessionState::New,
            _ => control::SessionState::Connecting,
        }
    };
    let selected_pair = match (snap.local_addr, snap.remote_addr) {
        (Some(l), Some(r)) => Some(format!("{l} -> {r}")),
        _ => None,
    };
    let tracks = snap
        .tracks
        .iter()
        .filter_map(|t| {
            let kind = media.iter().find(|m| m.mid == t.mid)?.kind;
            Some(control::TrackStats {
                track: track_id(t.mid),
                kind: kind_of(kind),
                inbound: t.inbound,
                packets: t.packets,
                bytes: t.bytes,
                lost: t.lost,
                nacks: t.nacks,
                keyframe_requests: t.keyframe_requests,
            })
        })
        .collect();
    control::SessionStats {
        session: control::SessionId(snap.id.0),
        shard: shard_id(snap.shard),
        state,
        room,
        age_ms,
        selected_pair,
        rtt_ms: snap.rtt.map(|d| d.as_secs_f64() * 1000.0),
        packets_in: snap.peer.datagrams_in,
        packets_out: snap.peer.datagrams_out,
        bytes_in: snap.peer.bytes_in,
        bytes_out: snap.peer.bytes_out,
        tracks,
    }
}

fn shard_stats(s: &ShardStats, draining: bool) -> control::ShardStats {
    let d = s.drops;
    let io = s.io.drops;
    let mut drops = BTreeMap::new();
    for (k, v) in [
        ("unknown_source", d.unknown_source),
        ("malformed", d.malformed),
        ("srtp_auth", d.srtp_auth),
        ("rtc_dropped", d.rtc_dropped),
        ("no_route", d.no_route),
        ("leg_rewrite", d.leg_rewrite),
        ("leg_not_ready", d.leg_not_ready),
        ("cross_shard_full", d.cross_shard_full),
        ("dead_session", d.dead_session),
        ("send_queue_full", io.queue_full),
        ("send_too_large", io.too_large),
        ("send_would_block", io.send_would_block),
        ("send_error", io.send_error),
        ("recv_truncated", io.recv_truncated),
        ("recv_error", io.recv_error),
    ] {
        drops.insert(k.to_owned(), v);
    }
    let mut histograms = BTreeMap::new();
    histograms.insert(
        "forward_us".to_owned(),
        in_us(control::summarize(&s.forward_latency_ns)),
    );
    control::ShardStats {
        shard: shard_id(s.shard),
        core: s.core.and_then(|c| u32::try_from(c).ok()),
        backend: backend_name(s.backend).to_owned(),
        sessions: s.sessions as u64,
        draining,
        packets_in: s.packets_in,
        packets_out: s.packets_out,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        drops,
        gso_batches: s.io.gso_sends,
        gro_batches: s.io.gro_coalesced,
        loop_us: in_us(control::summarize(&s.loop_ns)),
        histograms,
    }
}

impl ControlHandler for EngineControl {
    fn handle(&self, client: ClientId, req: Request) -> Result<Response, ControlError> {
        self.shared.state().clients.insert(client);
        let eng = &self.shared.engine;
        match req {
            Request::SessionCreate(c) => self.session_create(client, c),
            Request::SessionClose(r) => {
                let id = SessionId(r.session.0);
                let res = eng.close_session(id).map_err(map_err);
                let mut st = self.shared.state();
                st.sessions.remove(&id);
                st.published.retain(|(s, _), _| *s != id);
                res.map(|()| Response::Done)
            }
            Request::SessionStats(r) => self.session_stats(SessionId(r.session.0)),
            Request::RoomCreate(r) => {
                check_room_name(&r.room.0)?;
                let mut st = self.shared.state();
                if st.rooms.contains_key(&r.room.0) {
                    return Err(ControlError::already_exists(format!(
                        "room {:?} exists",
                        r.room.0
                    )));
                }
                let id = eng.create_room(&r.room.0);
                st.rooms.insert(r.room.0, id);
                Ok(Response::Done)
            }
            Request::RoomClose(r) => {
                let id = self.room_id(&r.room.0)?;
                eng.close_room(id).map_err(map_err)?;
                let mut st = self.shared.state();
                st.rooms.remove(&r.room.0);
                st.published.retain(|(_, room), _| *room != id);
                for s in st.sessions.values_mut() {
                    if s.room == Some(id) {
                        s.room = None;
                    }
                }
                Ok(Response::Done)
            }
            Request::RoomList => Ok(self.room_list()),
            Request::Publish(p) => self.publish(p),
            Request::Subscribe(s) => self.subscribe(s),
            Request::Unsubscribe(s) => self.unsubscribe(s),
            Request::KeyframeRequest(k) => self.keyframe(k),
            Request::EngineStats => self.engine_stats(),
            Request::ShardList => self.shard_list(),
            Request::ShardDrain(s) => {
                let i = usize::try_from(s.shard.0).unwrap_or(usize::MAX);
                eng.drain_shard(i, false).map_err(map_err)?;
                Ok(Response::Draining(control::DrainStatus {
                    shard: s.shard,
                    sessions: eng.shard_sessions(i).unwrap_or(0) as u64,
                }))
            }
            Request::ChannelSend(c) => self.channel_send(c),
            other => Err(ControlError::internal(format!(
                "{} is handled by the control server, not the engine",
                other.kind()
            ))),
        }
    }

    fn client_gone(&self, client: ClientId) {
        let reap: Vec<SessionId> = {
            let mut st = self.shared.state();
            st.clients.remove(&client);
            let ids: Vec<SessionId> = st
                .sessions
                .iter()
                .filter(|(_, s)| s.owner == client && s.reap)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                st.sessions.remove(id);
                st.published.retain(|(s, _), _| s != id);
            }
            ids
        };
        for id in reap {
            match self.shared.engine.close_session(id) {
                Ok(()) => {
                    tracing::info!(session = id.0, %client, "reaped session of a departed control client")
                }
                Err(EngineError::UnknownSession(_)) => {}
                Err(e) => tracing::warn!(session = id.0, error = %e, "reaping a session failed"),
            }
        }
    }
}

impl Drop for EngineControl {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Engine events → control events
// ---------------------------------------------------------------------------------------

struct Pump<'a> {
    shared: &'a Shared,
    states: HashMap<SessionId, control::SessionState>,
}

impl Pump<'_> {
    fn transition(&mut self, id: SessionId, to: control::SessionState) {
        let prev = self
            .states
            .insert(id, to)
            .unwrap_or(control::SessionState::New);
        if prev != to {
            self.shared
                .hub
                .publish(&Event::SessionState(control::SessionStateChange {
                    session: control::SessionId(id.0),
                    state: to,
                    previous: prev,
                }));
        }
    }

    fn current(&self, id: SessionId) -> control::SessionState {
        self.states
            .get(&id)
            .copied()
            .unwrap_or(control::SessionState::New)
    }

    fn on_event(&mut self, ev: EngineEvent) {
        use control::SessionState as S;
        match ev {
            EngineEvent::SessionConnected(id) => self.transition(id, S::Connected),
            EngineEvent::IceState(id, st) => {
                let cur = self.current(id);
                let to = match st {
                    IceConnectionState::Checking => Some(S::Connecting),
                    IceConnectionState::Connected | IceConnectionState::Completed => match cur {
                        S::Disconnected => Some(S::Connected),
                        S::New => Some(S::Connecting),
                        _ => None,
                    },
                    IceConnectionState::Disconnected => Some(S::Disconnected),
                    IceConnectionState::Failed => Some(S::Failed),
                    IceConnectionState::New => None,
                };
                if let Some(to) = to {
                    self.transition(id, to);
                }
            }
            EngineEvent::SessionClosed(id, reason) => self.on_closed(id, reason),
            EngineEvent::KeyframeRequested {
                publisher,
                mid,
                requester,
            } => {
                self.shared
                    .hub
                    .publish(&Event::KeyframeRequested(control::KeyframeRequested {
                        session: control::SessionId(publisher.0),
                        track: track_id(mid),
                        requester: Some(control::SessionId(requester.0)),
                    }));
            }
            EngineEvent::ChannelMessage {
                session,
                channel,
                label,
                binary,
                data,
            } => {
                let payload = if binary {
                    ChannelPayload::Binary(data)
                } else {
                    match String::from_utf8(data) {
                        Ok(t) => ChannelPayload::Text(t),
                        Err(e) => ChannelPayload::Binary(e.into_bytes()),
                    }
                };
                self.shared
                    .hub
                    .publish(&Event::ChannelMessage(control::ChannelMessage {
                        session: control::SessionId(session.0),
                        channel,
                        label,
                        payload,
                    }));
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, id: SessionId, reason: CloseReason) {
        let (sess, rooms) = {
            let mut st = self.shared.state();
            let sess = st.sessions.remove(&id);
            let rooms: Vec<String> = st
                .published
                .keys()
                .filter(|(s, _)| *s == id)
                .filter_map(|(_, r)| st.room_name(*r))
                .collect();
            st.published.retain(|(s, _), _| *s != id);
            (sess, rooms)
        };
        let shard = shard_id(sess.as_ref().map(|s| s.shard).unwrap_or(0));
        let session = control::SessionId(id.0);
        match reason {
            CloseReason::Failed => {
                self.transition(id, control::SessionState::Failed);
                self.shared
                    .hub
                    .publish(&Event::SessionFailed(control::SessionFailure {
                        session,
                        shard,
                        reason: "the connection failed (ICE consent, DTLS or remote close)".into(),
                    }));
            }
            CloseReason::Panicked => {
                self.shared
                    .hub
                    .publish(&Event::SessionPanicked(control::SessionFailure {
                        session,
                        shard,
                        reason: "a call into the session's Rtc panicked; the shard removed it"
                            .into(),
                    }));
            }
            _ => {}
        }
        self.transition(id, control::SessionState::Closed);
        self.states.remove(&id);
        if let Some(s) = sess {
            for m in s.media.iter().filter(|m| m.can_recv()) {
                let mut rs: Vec<Option<control::RoomId>> = rooms
                    .iter()
                    .cloned()
                    .map(control::RoomId)
                    .map(Some)
                    .collect();
                if rs.is_empty() {
                    rs.push(None);
                }
                for room in rs {
                    self.shared
                        .hub
                        .publish(&Event::TrackRemoved(control::TrackChange {
                            session,
                            track: track_id(m.mid),
                            kind: kind_of(m.kind),
                            room,
                        }));
                }
            }
        }
    }
}

fn event_pump(shared: &Shared) {
    let mut pump = Pump {
        shared,
        states: HashMap::new(),
    };
    let events = shared.engine.events().clone();
    while !shared.stop.load(Ordering::Acquire) {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => pump.on_event(ev),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_role_reads_setup() {
        assert_eq!(
            answer_role("v=0\r\na=setup:passive\r\n"),
            control::DtlsRole::Server
        );
        assert_eq!(
            answer_role("v=0\r\na=setup:active\r\n"),
            control::DtlsRole::Client
        );
    }

    #[test]
    fn microsecond_summary_rounds_up() {
        let s = in_us(HistogramSummary {
            count: 3,
            p50: 1,
            p90: 1000,
            p99: 1001,
            p999: 0,
            max: 2_500_000,
        });
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.p999, s.max),
            (3, 1, 1, 2, 0, 2500)
        );
    }

    fn direct() -> control::DirectParams {
        control::DirectParams {
            ice_ufrag: "abcd".into(),
            ice_pwd: "0123456789012345678901".into(),
            fingerprint: control::Fingerprint {
                algorithm: "sha-256".into(),
                value: vec!["AB"; 32].join(":"),
            },
            remote_dtls_role: control::DtlsRole::Client,
            candidates: vec!["candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host".into()],
            ice_lite: false,
        }
    }

    #[test]
    fn direct_params_map_and_validate() {
        let p = direct_params(&direct()).expect("valid");
        assert!(!p.dtls_active, "remote client → engine is the DTLS server");
        assert_eq!(p.remote_ice.ufrag, "abcd");
        assert_eq!(p.remote_fingerprint.bytes, vec![0xAB; 32]);
        let mut d = direct();
        d.remote_dtls_role = control::DtlsRole::Server;
        assert!(direct_params(&d).expect("valid").dtls_active);

        let bad = |f: &dyn Fn(&mut control::DirectParams)| {
            let mut d = direct();
            f(&mut d);
            direct_params(&d).expect_err("must be refused").code
        };
        assert_eq!(bad(&|d| d.ice_ufrag = "ab".into()), ErrorCode::BadParams);
        assert_eq!(bad(&|d| d.ice_pwd = "short".into()), ErrorCode::BadParams);
        assert_eq!(bad(&|d| d.ice_lite = true), ErrorCode::BadParams);
        assert_eq!(
            bad(&|d| d.fingerprint.value = "AB:CD".into()),
            ErrorCode::BadParams
        );
        assert_eq!(
            bad(&|d| d.fingerprint.algorithm = "md5".into()),
            ErrorCode::BadParams
        );
        assert_eq!(
            bad(&|d| d.candidates = vec!["garbage".into()]),
            ErrorCode::BadParams
        );
    }

    #[test]
    fn fingerprint_round_trips_through_wire_form() {
        let fp =
            Fingerprint::from_str(&format!("sha-256 {}", vec!["0F"; 32].join(":"))).expect("valid");
        let w = fingerprint_of(&fp);
        assert_eq!(w.algorithm, "sha-256");
        assert_eq!(w.value, vec!["0F"; 32].join(":"));
    }

    #[test]
    fn errors_map_to_codes() {
        let c = |e| map_err(e).code;
        assert_eq!(
            c(EngineError::UnknownSession(SessionId(1))),
            ErrorCode::NotFound
        );
        assert_eq!(c(EngineError::UnknownRoom(RoomId(1))), ErrorCode::NotFound);
        assert_eq!(c(EngineError::NoSuchShard(9)), ErrorCode::NotFound);
        assert_eq!(c(EngineError::ShardDraining(0)), ErrorCode::Unavailable);
        assert_eq!(c(EngineError::Timeout(0)), ErrorCode::Unavailable);
        assert_eq!(c(EngineError::ShardGone(0)), ErrorCode::ShuttingDown);
        assert_eq!(
            c(EngineError::Rtc(rtc_core::RtcError::Sdp("bad sdp".into()))),
            ErrorCode::BadParams
        );
        assert_eq!(
            c(EngineError::NotInRoom(SessionId(1), RoomId(1))),
            ErrorCode::Conflict
        );
        assert_eq!(
            c(EngineError::Config(crate::ConfigError::NoBindAddress)),
            ErrorCode::Internal
        );
    }

    #[test]
    fn room_names_are_bounded() {
        assert!(check_room_name("lobby").is_ok());
        assert!(check_room_name("").is_err());
        assert!(check_room_name(&"x".repeat(MAX_ROOM_NAME + 1)).is_err());
    }
}
