//! What the demo needs from an engine, and its in-process implementation.
//!
//! [`Backend`] is the seam between the HTTP front end and the data plane: the demo runs
//! either an engine inside its own process ([`InProcessBackend`], over
//! [`engine::EngineHandle`]) or drives a separate `rtc-engine` through the public control
//! client ([`ControlBackend`](super::control_backend::ControlBackend)).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use engine::{EngineError, EngineEvent, EngineHandle, Placement, RoomId, SessionId, SessionSetup};
use serde::Serialize;

/// Why a backend call failed, sorted by what the HTTP front end answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The offer (or another parameter) was refused: HTTP 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such session or room: HTTP 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// It conflicts with what the engine holds (a session not in that room, an address
    /// another session owns): HTTP 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine cannot take it now (draining, full, shutting down): HTTP 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine failed or could not be reached: HTTP 502.
    #[error("engine error: {0}")]
    Engine(String),
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// A session the engine created from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The engine's session id.
    pub session: u64,
    /// The shard it runs on.
    pub shard: usize,
    /// The SDP answer.
    pub answer: String,
}

/// What a WHIP or WHEP request asks a [`Backend`] to create: a session in `room` from
/// an SDP offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    /// The room it is for.
    pub room: &'a str,
    /// The SDP offer.
    pub offer: &'a str,
    /// The shard to create it on (`None`: the engine picks).
    pub shard: Option<usize>,
}

/// A subscription: every track of `publisher` forwarded to `subscriber`, both in `room`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// The room both are in.
    pub room: &'a str,
    /// The subscribing session.
    pub subscriber: u64,
    /// The publishing session.
    pub publisher: u64,
}

/// One forwarded track of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forwarded {
    /// The publisher's track (its mid).
    pub track: String,
    /// Audio or video.
    pub kind: Kind,
}

/// A room as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendRoom {
    /// Its name.
    pub name: String,
    /// Publishing sessions.
    pub publishers: Vec<u64>,
    /// All member sessions (publishers and subscribers).
    pub members: Vec<u64>,
}

/// Counters of one shard, as far as the backend reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardSummary {
    /// The shard.
    pub shard: usize,
    /// Live sessions.
    pub sessions: u64,
    /// Datagrams received.
    pub packets_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// RTP packets written to subscriber legs (in-process backend only).
    pub rtp_forwarded: Option<u64>,
    /// RTP packets received from other shards (in-process backend only).
    pub cross_shard_in: Option<u64>,
}

/// Engine-wide counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSummary {
    /// `"in-process"` or `"control"`.
    pub backend: &'static str,
    /// One entry per shard.
    pub shards: Vec<ShardSummary>,
}

/// Something the engine reported about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// ICE and DTLS are up.
    Connected(u64),
    /// The session ended (closed, failed, panicked).
    Closed(u64),
}

/// What the demo needs from a media engine. Implementations are shared between the HTTP
/// connection threads.
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and `/stats` (`"in-process"`, `"control"`).
    fn name(&self) -> &'static str;

    /// Number of shards (for placement).
    fn shard_count(&self) -> usize;

    /// Creates a session from an SDP offer on `req.shard` (`None`: the engine picks).
    ///
    /// # Errors
    /// [`BackendError::BadRequest`] when the engine refuses the offer.
    fn create_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError>;

    /// Creates a viewer's session (WHEP) from an SDP offer; `req.shard` as in
    /// [`Backend::create_session`], which it is unless the backend places viewers
    /// apart from publishers (several engines).
    ///
    /// # Errors
    /// As [`Backend::create_session`].
    fn create_viewer_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        self.create_session(req)
    }

    /// Makes `session` a publisher in `room` (created when missing).
    ///
    /// # Errors
    /// Unknown session, engine failure.
    fn publish(&self, room: &str, session: u64) -> Result<(), BackendError>;

    /// Forwards every track of `sub.publisher` to `sub.subscriber` (both in `sub.room`).
    ///
    /// # Errors
    /// Unknown session or room, publisher not publishing there, engine failure.
    fn subscribe(&self, sub: Subscription<'_>) -> Result<Vec<Forwarded>, BackendError>;

    /// Asks a publisher for a keyframe on all its video tracks.
    ///
    /// # Errors
    /// Unknown session, engine failure.
    fn request_keyframe(&self, publisher: u64) -> Result<(), BackendError>;

    /// Caps every track `subscriber` receives at simulcast layer `max_layer` (0 = the
    /// lowest; WHEP `?max_layer=`).
    ///
    /// # Errors
    /// Unknown session, engine failure; backends without layer control refuse.
    fn set_max_layer(&self, subscriber: u64, max_layer: u8) -> Result<(), BackendError> {
        let _ = (subscriber, max_layer);
        Err(BackendError::BadRequest(
            "this backend cannot limit layers".into(),
        ))
    }

    /// Applies a trickle ICE fragment (`application/trickle-ice-sdpfrag`, RFC 8840) to
    /// a live session: `Ok(None)` for added candidates, `Ok(Some(ours))` when its new
    /// credentials restarted ICE (our fragment for the client).
    ///
    /// # Errors
    /// [`BackendError::BadRequest`] for a fragment the engine refuses, unknown session,
    /// engine failure.
    fn ice_fragment(&self, session: u64, fragment: &str) -> Result<Option<String>, BackendError>;

    /// Closes a session.
    ///
    /// # Errors
    /// Unknown session, engine failure.
    fn close(&self, session: u64) -> Result<(), BackendError>;

    /// Lists the engine's rooms.
    ///
    /// # Errors
    /// Engine failure.
    fn list_rooms(&self) -> Result<Vec<BackendRoom>, BackendError>;

    /// Engine counters.
    ///
    /// # Errors
    /// Engine failure.
    fn stats(&self) -> Result<StatsSummary, BackendError>;

    /// The next session event, waiting at most `timeout`.
    fn next_event(&self, timeout: Duration) -> Option<BackendEvent>;
}

fn engine_err(e: EngineError) -> BackendError {
    match e {
        EngineError::Rtc(m) => BackendError::BadRequest(m.to_string()),
        EngineError::UnknownSession(_) | EngineError::UnknownRoom(_) => {
            BackendError::NotFound(e.to_string())
        }
        // As over the control socket (`conflict`).
        EngineError::NotInRoom(..) | EngineError::AddressInUse(_) => {
            BackendError::Conflict(e.to_string())
        }
        EngineError::ShardDraining(_) | EngineError::NoSuchShard(_) => {
            BackendError::Unavailable(e.to_string())
        }
        other => BackendError::Engine(other.to_string()),
    }
}

fn kind_of(k: rtc_core::media::MediaKind) -> Kind {
    match k {
        rtc_core::media::MediaKind::Audio => Kind::Audio,
        rtc_core::media::MediaKind::Video => Kind::Video,
    }
}

/// The demo's engine runs in this process.
#[derive(Debug)]
pub struct InProcessBackend {
    engine: EngineHandle,
    rooms: Mutex<HashMap<String, RoomId>>,
}

impl InProcessBackend {
    /// Wraps a started engine. The backend reads the engine's events: nobody else should.
    pub fn new(engine: EngineHandle) -> Self {
        InProcessBackend {
            engine,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// The engine handle (e.g. to shut it down).
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    fn room_id(&self, room: &str, create: bool) -> Option<RoomId> {
        // A poisoned map is still a valid map: every insert completes.
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = rooms.get(room) {
            return Some(*id);
        }
        if !create {
            return None;
        }
        let id = self.engine.create_room(room).ok()?;
        rooms.insert(room.to_owned(), id);
        Some(id)
    }
}

impl Backend for InProcessBackend {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn shard_count(&self) -> usize {
        self.engine.shard_count()
    }

    fn create_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        let placement = req.shard.map_or(Placement::Auto, Placement::Shard);
        let info = self
            .engine
            .create_session(SessionSetup::Offer(req.offer.to_owned()), placement)
            .map_err(engine_err)?;
        let Some(answer) = info.answer else {
            let _ = self.engine.close_session(info.id);
            return Err(BackendError::Engine("the engine gave no answer".into()));
        };
        Ok(Created {
            session: info.id.0,
            shard: info.shard,
            answer,
        })
    }

    fn publish(&self, room: &str, session: u64) -> Result<(), BackendError> {
        let Some(id) = self.room_id(room, true) else {
            return Err(BackendError::Engine("room not created".into()));
        };
        self.engine
            .publish(id, SessionId(session))
            .map_err(engine_err)
    }

    fn subscribe(&self, sub: Subscription<'_>) -> Result<Vec<Forwarded>, BackendError> {
        let Subscription {
            room,
            subscriber,
            publisher,
        } = sub;
        let id = self
            .room_id(room, false)
            .ok_or_else(|| BackendError::NotFound(format!("unknown room {room}")))?;
        let legs = self
            .engine
            .subscribe(id, SessionId(subscriber), SessionId(publisher))
            .map_err(engine_err)?;
        Ok(legs
            .iter()
            .map(|l| Forwarded {
                track: l.publisher_mid.to_string(),
                kind: kind_of(l.kind),
            })
            .collect())
    }

    fn set_max_layer(&self, subscriber: u64, max_layer: u8) -> Result<(), BackendError> {
        let id = SessionId(subscriber);
        let legs = self.engine.leg_layers(id).map_err(engine_err)?;
        let pref = engine::Preference {
            max_spatial: max_layer.min(2),
            ..engine::Preference::default()
        };
        for l in legs {
            self.engine
                .set_preference(id, l.mid, pref)
                .map_err(engine_err)?;
        }
        Ok(())
    }

    fn request_keyframe(&self, publisher: u64) -> Result<(), BackendError> {
        self.engine
            .request_keyframe(SessionId(publisher), None)
            .map(|_| ())
            .map_err(engine_err)
    }

    fn ice_fragment(&self, session: u64, fragment: &str) -> Result<Option<String>, BackendError> {
        self.engine
            .ice_fragment(SessionId(session), fragment)
            .map(|r| r.fragment)
            .map_err(engine_err)
    }

    fn close(&self, session: u64) -> Result<(), BackendError> {
        self.engine
            .close_session(SessionId(session))
            .map_err(engine_err)
    }

    fn list_rooms(&self) -> Result<Vec<BackendRoom>, BackendError> {
        Ok(self
            .engine
            .list_rooms()
            .into_iter()
            .map(|r| BackendRoom {
                name: r.name,
                publishers: r.publishers.iter().map(|s| s.0).collect(),
                members: r.members.iter().map(|s| s.0).collect(),
            })
            .collect())
    }

    fn stats(&self) -> Result<StatsSummary, BackendError> {
        let st = self.engine.stats().map_err(engine_err)?;
        Ok(StatsSummary {
            backend: self.name(),
            shards: st
                .shards
                .iter()
                .map(|s| ShardSummary {
                    shard: s.shard,
                    sessions: s.sessions as u64,
                    packets_in: s.packets_in,
                    packets_out: s.packets_out,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    rtp_forwarded: Some(s.rtp_forwarded),
                    cross_shard_in: Some(s.cross_shard_in),
                })
                .collect(),
        })
    }

    fn next_event(&self, timeout: Duration) -> Option<BackendEvent> {
        match self.engine.events().recv_timeout(timeout).ok()? {
            EngineEvent::SessionConnected(id) => Some(BackendEvent::Connected(id.0)),
            EngineEvent::SessionClosed(id, _) => Some(BackendEvent::Closed(id.0)),
            _ => None,
        }
    }
}
