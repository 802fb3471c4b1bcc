//! [`Backend`] over the control socket of a running `rtc-engine`, using only the public
//! [`control`] client: the embedding example.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use control::{
    ClientError, ControlClient, ControlRequester, ErrorCode, Event, EventKind, EventStream,
    EventsSubscribe, KeyframeRequest, MediaKind, Publish, Request, Response, RoomId, RoomRef,
    SessionCreate, SessionId, SessionRef, SessionSetup, SessionState, ShardId, Subscribe,
};

use super::backend::{
    Backend, BackendError, BackendEvent, BackendRoom, Created, Forwarded, Kind, SessionRequest,
    ShardSummary, StatsSummary, Subscription,
};

/// How long one control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn client_err(e: ClientError) -> BackendError {
    if connection_lost(&e) {
        // The daemon is gone (stopped, restarting): the next request connects again.
        return BackendError::Unavailable(format!("engine unreachable: {e}"));
    }
    match e.code() {
        Some(ErrorCode::BadParams | ErrorCode::BadRequest) => {
            BackendError::BadRequest(e.to_string())
        }
        Some(ErrorCode::NotFound) => BackendError::NotFound(e.to_string()),
        Some(ErrorCode::Conflict) => BackendError::Conflict(e.to_string()),
        Some(ErrorCode::Unavailable | ErrorCode::ShuttingDown) => {
            BackendError::Unavailable(e.to_string())
        }
        _ => BackendError::Engine(e.to_string()),
    }
}

fn unexpected(r: &Response) -> BackendError {
    BackendError::Engine(format!("unexpected control response {r:?}"))
}

/// Drives an `rtc-engine` over its control socket.
///
/// One connection carries the requests (serialised by a mutex: the demo makes few) and
/// the session events it subscribed to. Sessions are created with
/// `reap_on_disconnect`, so they end when the demo does. When the connection breaks
/// (the daemon restarted), the next request connects again and is retried once, and
/// the event stream is replaced. While the daemon is unreachable, requests fail as
/// [`BackendError::Unavailable`] (HTTP 503).
///
/// Each connection has a generation number. The event reader reconnects only when the
/// stream that broke is of the current connection: a request that already reconnected
/// (and may have created sessions, which live as long as their connection) is never
/// undone by a second, stale reconnect.
#[derive(Debug)]
pub struct ControlBackend {
    path: PathBuf,
    /// The requester of the current connection and its generation.
    req: Mutex<(ControlRequester, u64)>,
    /// The event stream being read and the generation of its connection.
    events: Mutex<(EventStream, u64)>,
    /// The event stream of a new connection made by a request, until `next_event`
    /// takes it (it may be waiting on the old stream meanwhile).
    fresh_events: Mutex<Option<(EventStream, u64)>>,
    shards: usize,
}

/// Whether a request failed because the connection is gone (rather than being refused).
fn connection_lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Io(_) | ClientError::Closed)
}

/// Connects, subscribes to the session events the demo follows, and reads the shard
/// count.
fn open(path: &Path) -> Result<(ControlRequester, EventStream, usize), BackendError> {
    let client = ControlClient::connect(path).map_err(|e| {
        BackendError::Unavailable(format!("control socket {}: {e}", path.display()))
    })?;
    let (mut req, events) = client
        .split()
        .map_err(|e| BackendError::Engine(format!("control client: {e}")))?;
    req.set_timeout(Some(REQUEST_TIMEOUT));
    let kinds = vec![
        EventKind::SessionState,
        EventKind::SessionFailed,
        EventKind::SessionPanicked,
    ];
    req.request(Request::EventsSubscribe(EventsSubscribe {
        kinds: Some(kinds),
    }))
    .map_err(client_err)?;
    let shards = match req.request(Request::ShardList).map_err(client_err)? {
        Response::Shards(s) => s.shards.len().max(1),
        other => return Err(unexpected(&other)),
    };
    Ok((req, events, shards))
}

impl ControlBackend {
    /// Connects to the socket at `path`, subscribes to session events and reads the
    /// shard count.
    ///
    /// # Errors
    /// When the socket cannot be reached or the engine does not answer as expected.
    pub fn connect(path: impl AsRef<Path>) -> Result<ControlBackend, BackendError> {
        let path = path.as_ref().to_path_buf();
        let (req, events, shards) = open(&path)?;
        Ok(ControlBackend {
            path,
            req: Mutex::new((req, 0)),
            events: Mutex::new((events, 0)),
            fresh_events: Mutex::new(None),
            shards,
        })
    }

    /// Replaces the connection held in `req` by a new one; its event stream waits in
    /// `fresh_events`.
    fn reconnect(&self, req: &mut (ControlRequester, u64)) -> Result<(), BackendError> {
        let (r, events, _) = open(&self.path)?;
        req.0 = r;
        req.1 += 1;
        *self.fresh_events.lock().unwrap_or_else(|p| p.into_inner()) = Some((events, req.1));
        Ok(())
    }

    /// Sends `r`; on a lost connection, connects again and retries once.
    fn exchange(&self, r: Request) -> Result<Response, ClientError> {
        // The requester stays usable after a panic elsewhere: each request is whole.
        let mut req = self.req.lock().unwrap_or_else(|p| p.into_inner());
        match req.0.request(r.clone()) {
            Err(e) if connection_lost(&e) => match self.reconnect(&mut req) {
                Ok(()) => req.0.request(r),
                Err(_) => Err(e),
            },
            other => other,
        }
    }

    /// Sends `r` (see `exchange`), with the failure sorted for the HTTP front end.
    pub(super) fn request(&self, r: Request) -> Result<Response, BackendError> {
        self.exchange(r).map_err(client_err)
    }

    fn ensure_room(&self, room: &str) -> Result<(), BackendError> {
        match self.exchange(Request::RoomCreate(RoomRef {
            room: RoomId(room.to_owned()),
        })) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => Ok(()),
            Err(e) => Err(client_err(e)),
        }
    }
}

impl Backend for ControlBackend {
    fn name(&self) -> &'static str {
        "control"
    }

    fn shard_count(&self) -> usize {
        self.shards
    }

    fn create_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        self.ensure_room(req.room)?;
        let shard = req
            .shard
            .map(|s| u32::try_from(s).map(ShardId))
            .transpose()
            .map_err(|_| BackendError::BadRequest("shard out of range".into()))?;
        let resp = self.request(Request::SessionCreate(SessionCreate {
            setup: SessionSetup::Offer(req.offer.to_owned()),
            room: Some(RoomId(req.room.to_owned())),
            shard,
            reap_on_disconnect: true,
        }))?;
        let Response::SessionCreated(c) = resp else {
            return Err(unexpected(&resp));
        };
        let Some(answer) = c.answer else {
            let _ = self.close(c.session.0);
            return Err(BackendError::Engine("the engine gave no answer".into()));
        };
        Ok(Created {
            session: c.session.0,
            shard: c.shard.0 as usize,
            answer,
        })
    }

    fn publish(&self, room: &str, session: u64) -> Result<(), BackendError> {
        self.ensure_room(room)?;
        match self.request(Request::Publish(Publish {
            session: SessionId(session),
            room: RoomId(room.to_owned()),
            tracks: None,
        }))? {
            Response::Tracks(_) | Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn subscribe(&self, sub: Subscription<'_>) -> Result<Vec<Forwarded>, BackendError> {
        match self.request(Request::Subscribe(Subscribe {
            subscriber: SessionId(sub.subscriber),
            publisher: SessionId(sub.publisher),
            tracks: None,
        }))? {
            Response::Tracks(t) => Ok(t
                .tracks
                .into_iter()
                .map(|t| Forwarded {
                    track: t.track.0,
                    kind: match t.kind {
                        MediaKind::Audio => Kind::Audio,
                        MediaKind::Video => Kind::Video,
                    },
                })
                .collect()),
            other => Err(unexpected(&other)),
        }
    }

    fn set_max_layer(&self, subscriber: u64, max_layer: u8) -> Result<(), BackendError> {
        let stats = match self.request(Request::SessionStats(control::SessionRef {
            session: SessionId(subscriber),
        }))? {
            Response::SessionStats(s) => s,
            other => return Err(unexpected(&other)),
        };
        for t in stats.tracks.iter().filter(|t| !t.inbound) {
            self.request(Request::TrackSetPreference(control::TrackPreference {
                session: SessionId(subscriber),
                track: t.track.clone(),
                max_layer: Some(max_layer.min(2)),
                max_temporal: None,
                paused: false,
            }))?;
        }
        Ok(())
    }

    fn request_keyframe(&self, publisher: u64) -> Result<(), BackendError> {
        self.request(Request::KeyframeRequest(KeyframeRequest {
            session: SessionId(publisher),
            track: None,
        }))
        .map(|_| ())
    }

    fn ice_fragment(&self, session: u64, fragment: &str) -> Result<Option<String>, BackendError> {
        match self.request(Request::SessionIce(control::SessionIce {
            session: SessionId(session),
            fragment: fragment.to_owned(),
        }))? {
            Response::Renegotiated(r) => Ok(r.fragment),
            other => Err(unexpected(&other)),
        }
    }

    fn close(&self, session: u64) -> Result<(), BackendError> {
        self.request(Request::SessionClose(SessionRef {
            session: SessionId(session),
        }))
        .map(|_| ())
    }

    fn list_rooms(&self) -> Result<Vec<BackendRoom>, BackendError> {
        match self.request(Request::RoomList)? {
            Response::Rooms(r) => Ok(r
                .rooms
                .into_iter()
                .map(|r| BackendRoom {
                    name: r.room.0,
                    publishers: r.publishers.iter().map(|s| s.0).collect(),
                    members: r.sessions.iter().map(|s| s.0).collect(),
                })
                .collect()),
            other => Err(unexpected(&other)),
        }
    }

    fn stats(&self) -> Result<StatsSummary, BackendError> {
        match self.request(Request::EngineStats)? {
            Response::EngineStats(s) => Ok(StatsSummary {
                backend: self.name(),
                shards: s
                    .shards
                    .iter()
                    .map(|s| ShardSummary {
                        shard: s.head.shard.0 as usize,
                        sessions: s.head.sessions,
                        packets_in: s.packets_in,
                        packets_out: s.packets_out,
                        bytes_in: s.bytes_in,
                        bytes_out: s.bytes_out,
                        rtp_forwarded: None,
                        cross_shard_in: None,
                    })
                    .collect(),
            }),
            other => Err(unexpected(&other)),
        }
    }

    fn next_event(&self, timeout: Duration) -> Option<BackendEvent> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fresh) = self
            .fresh_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            *events = fresh;
        }
        match events.0.recv(Some(timeout)) {
            Ok(Some(Event::SessionState(s))) => match s.state {
                SessionState::Connected => Some(BackendEvent::Connected(s.session.0)),
                SessionState::Closed | SessionState::Failed => {
                    Some(BackendEvent::Closed(s.session.0))
                }
                _ => None,
            },
            Ok(Some(Event::SessionFailed(f) | Event::SessionPanicked(f))) => {
                Some(BackendEvent::Closed(f.session.0))
            }
            Ok(_) => None,
            Err(_) => {
                // The connection is gone: try to connect again (at most once per
                // `timeout`, so a daemon that is down is not hammered), unless a
                // request already did (its stream waits in `fresh_events`).
                let broken = events.1;
                drop(events);
                let mut req = self.req.lock().unwrap_or_else(|p| p.into_inner());
                if req.1 != broken {
                    return None;
                }
                let failed = self.reconnect(&mut req).is_err();
                // Not while holding the requester: requests answer 503 meanwhile.
                drop(req);
                if failed {
                    std::thread::sleep(timeout);
                }
                None
            }
        }
    }
}
