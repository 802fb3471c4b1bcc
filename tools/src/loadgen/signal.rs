//! Signalling back-ends: an in-process engine, the engine's control socket, or WHIP/WHEP
//! over HTTP (rtc-demo).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use control::{
    ClientError, ControlClient, ErrorCode, Publish, RelayAttach, RelayPublish, Request, Response,
    RoomRef, SessionCreate, SessionRef, Subscribe, TrackId,
};
use engine::{EngineConfig, EngineHandle, Placement};

use super::LoadgenError;
use super::http::{self, HttpUrl};

/// A room as the back-end knows it.
#[derive(Debug, Clone)]
pub(crate) enum RoomKey {
    Engine(engine::RoomId, String),
    Named(String),
}

impl RoomKey {
    pub(crate) fn name(&self) -> &str {
        match self {
            RoomKey::Engine(_, n) | RoomKey::Named(n) => n,
        }
    }
}

/// A session as the back-end knows it.
#[derive(Debug, Clone)]
pub(crate) enum SessionKey {
    Engine(engine::SessionId),
    Control(control::SessionId),
    /// A session on the second engine of a cascade (engine B).
    Remote(control::SessionId),
    /// A WHIP/WHEP resource: its URL and the id (last path segment of the Location).
    Http {
        url: HttpUrl,
        id: String,
    },
}

/// The SDP answer for a new session and the key the back-end knows it by.
pub(crate) type Answered = Result<(String, SessionKey), LoadgenError>;

/// Sets up and tears down sessions.
pub(crate) trait Signaller {
    /// Creates (or names) a room.
    fn create_room(&mut self, name: &str) -> Result<RoomKey, LoadgenError>;
    /// Publishes a new session from `offer` (sendonly audio + video). Returns the answer.
    fn publish(&mut self, room: &RoomKey, offer: &str) -> Answered;
    /// A new session from `offer` (recvonly sections) that receives `publishers`.
    fn subscribe(&mut self, room: &RoomKey, publishers: &[SessionKey], offer: &str) -> Answered;
    /// Ends a session.
    fn close(&mut self, session: &SessionKey) -> Result<(), LoadgenError>;
    /// Ends a room (its sessions are closed already).
    fn close_room(&mut self, room: &RoomKey) -> Result<(), LoadgenError>;
    /// Whether one subscriber session can receive several publishers. The default: it can
    /// (WHEP cannot: one publisher each).
    fn multi_publisher_subscribe(&self) -> bool {
        true
    }
    /// Caps the simulcast layer the engine forwards to `subscriber` (all its video
    /// tracks, `track.set_preference`). Only the control back-end can.
    fn cap_layers(&mut self, subscriber: &SessionKey, max_layer: u8) -> Result<(), LoadgenError> {
        let _ = (subscriber, max_layer);
        Err(LoadgenError::Config(
            "layer caps (--simulcast) need --control".into(),
        ))
    }
    /// Counters of the engine, when it runs in this process.
    fn engine_stats(&self) -> Option<engine::EngineStats> {
        None
    }
    /// Stops what the back-end started.
    fn shutdown(&mut self) {}
}

fn wrong(what: &str, key: &SessionKey) -> LoadgenError {
    LoadgenError::Signalling(format!(
        "{what}: session {key:?} belongs to another back-end"
    ))
}

/// An engine started in this process.
pub(crate) struct InProcess {
    engine: EngineHandle,
}

impl InProcess {
    pub(crate) fn start(shards: usize) -> Result<InProcess, LoadgenError> {
        let mut cfg = EngineConfig {
            shards: Some(shards.max(1)),
            pin: false,
            ..EngineConfig::default()
        };
        cfg.io.recv_buffer_bytes = 4 << 20;
        cfg.io.send_buffer_bytes = 4 << 20;
        let engine = engine::Engine::start(cfg)
            .map_err(|e| LoadgenError::Signalling(format!("engine start: {e}")))?;
        Ok(InProcess { engine })
    }

    fn create(&self, offer: &str) -> Result<(String, engine::SessionId), LoadgenError> {
        let info = self
            .engine
            .create_session(
                engine::SessionSetup::Offer(offer.to_string()),
                Placement::Auto,
            )
            .map_err(|e| LoadgenError::Signalling(format!("create session: {e}")))?;
        let answer = info
            .answer
            .ok_or_else(|| LoadgenError::Signalling("engine returned no answer".into()))?;
        Ok((answer, info.id))
    }
}

fn engine_room(room: &RoomKey) -> Result<engine::RoomId, LoadgenError> {
    match room {
        RoomKey::Engine(id, _) => Ok(*id),
        RoomKey::Named(n) => Err(LoadgenError::Signalling(format!(
            "room {n} is not an engine room"
        ))),
    }
}

impl Signaller for InProcess {
    fn create_room(&mut self, name: &str) -> Result<RoomKey, LoadgenError> {
        let room = self
            .engine
            .create_room(name)
            .map_err(|e| LoadgenError::Setup(format!("create room {name:?}: {e}")))?;
        Ok(RoomKey::Engine(room, name.to_string()))
    }

    fn publish(&mut self, room: &RoomKey, offer: &str) -> Answered {
        let room = engine_room(room)?;
        let (answer, id) = self.create(offer)?;
        if let Err(e) = self.engine.publish(room, id) {
            let _ = self.engine.close_session(id);
            return Err(LoadgenError::Signalling(format!("publish: {e}")));
        }
        Ok((answer, SessionKey::Engine(id)))
    }

    fn subscribe(&mut self, room: &RoomKey, publishers: &[SessionKey], offer: &str) -> Answered {
        let room = engine_room(room)?;
        let (answer, id) = self.create(offer)?;
        for p in publishers {
            let SessionKey::Engine(p) = p else {
                let _ = self.engine.close_session(id);
                return Err(wrong("subscribe", p));
            };
            if let Err(e) = self.engine.subscribe(room, id, *p) {
                let _ = self.engine.close_session(id);
                return Err(LoadgenError::Signalling(format!("subscribe: {e}")));
            }
        }
        Ok((answer, SessionKey::Engine(id)))
    }

    fn close(&mut self, session: &SessionKey) -> Result<(), LoadgenError> {
        let SessionKey::Engine(id) = session else {
            return Err(wrong("close", session));
        };
        self.engine
            .close_session(*id)
            .map_err(|e| LoadgenError::Signalling(format!("close: {e}")))
    }

    fn close_room(&mut self, room: &RoomKey) -> Result<(), LoadgenError> {
        self.engine
            .close_room(engine_room(room)?)
            .map_err(|e| LoadgenError::Signalling(format!("close room: {e}")))
    }

    fn engine_stats(&self) -> Option<engine::EngineStats> {
        self.engine.stats().ok()
    }

    fn shutdown(&mut self) {
        self.engine.shutdown();
    }
}

/// A running rtc-engine, through its control socket.
pub(crate) struct Control {
    client: ControlClient,
    /// (subscriber, its own video track) of each `subscribe` answer, for
    /// [`Signaller::cap_layers`].
    video_local: HashMap<control::SessionId, Vec<control::TrackId>>,
}

impl Control {
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Control, LoadgenError> {
        let mut client = ControlClient::connect(path).map_err(|e| {
            LoadgenError::Signalling(format!("control socket {}: {e}", path.display()))
        })?;
        client.set_timeout(Some(timeout));
        Ok(Control {
            client,
            video_local: HashMap::new(),
        })
    }

    fn req(&mut self, what: &str, r: Request) -> Result<Response, LoadgenError> {
        self.client
            .request(r)
            .map_err(|e| LoadgenError::Signalling(format!("{what}: {e}")))
    }

    fn create(
        &mut self,
        room: &RoomKey,
        offer: &str,
    ) -> Result<(String, control::SessionId), LoadgenError> {
        let r = self.req(
            "session.create",
            Request::SessionCreate(SessionCreate {
                setup: control::SessionSetup::Offer(offer.to_string()),
                room: Some(control::RoomId(room.name().to_string())),
                shard: None,
                reap_on_disconnect: true,
            }),
        )?;
        let Response::SessionCreated(c) = r else {
            return Err(LoadgenError::Signalling(
                "session.create: unexpected response".into(),
            ));
        };
        let answer = c
            .answer
            .ok_or_else(|| LoadgenError::Signalling("session.create: no answer".into()))?;
        Ok((answer, c.session))
    }

    fn close_id(&mut self, id: control::SessionId) {
        let _ = self.req(
            "session.close",
            Request::SessionClose(SessionRef { session: id }),
        );
    }
}

impl Signaller for Control {
    fn create_room(&mut self, name: &str) -> Result<RoomKey, LoadgenError> {
        let r = self.client.request(Request::RoomCreate(RoomRef {
            room: control::RoomId(name.to_string()),
        }));
        match r {
            Ok(_) => {}
            Err(ClientError::Server(e)) if e.code == ErrorCode::AlreadyExists => {}
            Err(e) => return Err(LoadgenError::Signalling(format!("room.create: {e}"))),
        }
        Ok(RoomKey::Named(name.to_string()))
    }

    fn publish(&mut self, room: &RoomKey, offer: &str) -> Answered {
        let (answer, id) = self.create(room, offer)?;
        let r = self.req(
            "publish",
            Request::Publish(Publish {
                session: id,
                room: control::RoomId(room.name().to_string()),
                tracks: None,
            }),
        );
        if let Err(e) = r {
            self.close_id(id);
            return Err(e);
        }
        Ok((answer, SessionKey::Control(id)))
    }

    fn subscribe(&mut self, room: &RoomKey, publishers: &[SessionKey], offer: &str) -> Answered {
        let (answer, id) = self.create(room, offer)?;
        for p in publishers {
            let SessionKey::Control(p) = p else {
                self.close_id(id);
                return Err(wrong("subscribe", p));
            };
            let r = self.req(
                "subscribe",
                Request::Subscribe(Subscribe {
                    subscriber: id,
                    publisher: *p,
                    tracks: None,
                }),
            );
            match r {
                Ok(Response::Tracks(list)) => {
                    let local = list.tracks.into_iter().filter_map(|t| {
                        (t.kind == control::MediaKind::Video)
                            .then_some(t.local_track)
                            .flatten()
                    });
                    self.video_local.entry(id).or_default().extend(local);
                }
                Ok(_) => {}
                Err(e) => {
                    self.close_id(id);
                    return Err(e);
                }
            }
        }
        Ok((answer, SessionKey::Control(id)))
    }

    fn cap_layers(&mut self, subscriber: &SessionKey, max_layer: u8) -> Result<(), LoadgenError> {
        let SessionKey::Control(id) = subscriber else {
            return Err(wrong("track.set_preference", subscriber));
        };
        let tracks = self.video_local.get(id).cloned().unwrap_or_default();
        if tracks.is_empty() {
            return Err(LoadgenError::Signalling(format!(
                "track.set_preference: subscriber {id:?} has no video track to cap"
            )));
        }
        for track in tracks {
            self.req(
                "track.set_preference",
                Request::TrackSetPreference(control::TrackPreference {
                    session: *id,
                    track,
                    max_layer: Some(max_layer),
                    max_temporal: None,
                    paused: false,
                }),
            )?;
        }
        Ok(())
    }

    fn close(&mut self, session: &SessionKey) -> Result<(), LoadgenError> {
        let SessionKey::Control(id) = session else {
            return Err(wrong("close", session));
        };
        self.req(
            "session.close",
            Request::SessionClose(SessionRef { session: *id }),
        )
        .map(|_| ())
    }

    fn close_room(&mut self, room: &RoomKey) -> Result<(), LoadgenError> {
        self.req(
            "room.close",
            Request::RoomClose(RoomRef {
                room: control::RoomId(room.name().to_string()),
            }),
        )
        .map(|_| ())
    }
}

/// Two engines joined by a relay ([`super::Mode::Cascade`]): publishers and the first
/// `local_subscribers` subscribers of each room on A, the others on B, which receive the
/// publishers' tracks relayed (each publisher relayed once, on its first subscriber on B).
pub(crate) struct CascadeSignaller {
    a: Control,
    b: Control,
    relay_a: control::SessionId,
    relay_b: control::SessionId,
    local_subscribers: usize,
    /// Subscribers placed so far, by room name.
    placed: HashMap<String, usize>,
    /// The relay tracks of each publisher (by its id on A) relayed so far.
    relayed: HashMap<u64, Vec<TrackId>>,
}

fn unexpected(what: &str) -> LoadgenError {
    LoadgenError::Signalling(format!("{what}: unexpected response"))
}

impl CascadeSignaller {
    pub(crate) fn connect(
        c: &super::Cascade,
        timeout: Duration,
    ) -> Result<CascadeSignaller, LoadgenError> {
        Ok(CascadeSignaller {
            a: Control::connect(&c.a, timeout)?,
            b: Control::connect(&c.b, timeout)?,
            relay_a: control::SessionId(c.relay_a),
            relay_b: control::SessionId(c.relay_b),
            local_subscribers: c.local_subscribers,
            placed: HashMap::new(),
            relayed: HashMap::new(),
        })
    }

    /// `publisher`'s tracks relayed to B (relayed now when they are not yet): their
    /// relay track ids, which the relay session on B publishes in `room`.
    fn relay(
        &mut self,
        room: &RoomKey,
        publisher: control::SessionId,
    ) -> Result<Vec<TrackId>, LoadgenError> {
        if let Some(t) = self.relayed.get(&publisher.0) {
            return Ok(t.clone());
        }
        let room_id = control::RoomId(room.name().to_string());
        // `publish` is idempotent and answers the published tracks.
        let Response::Tracks(published) = self.a.req(
            "publish",
            Request::Publish(Publish {
                session: publisher,
                room: room_id.clone(),
                tracks: None,
            }),
        )?
        else {
            return Err(unexpected("publish"));
        };
        let mut out = Vec::new();
        for t in published.tracks {
            let Response::RelayTrack(track) = self.a.req(
                "relay.publish",
                Request::RelayPublish(RelayPublish {
                    relay: self.relay_a,
                    session: publisher,
                    track: t.track,
                }),
            )?
            else {
                return Err(unexpected("relay.publish"));
            };
            out.push(track.relay_track.clone());
            self.b.req(
                "relay.attach",
                Request::RelayAttach(RelayAttach {
                    relay: self.relay_b,
                    track,
                }),
            )?;
        }
        self.b.req(
            "publish",
            Request::Publish(Publish {
                session: self.relay_b,
                room: room_id,
                tracks: None,
            }),
        )?;
        self.relayed.insert(publisher.0, out.clone());
        Ok(out)
    }
}

impl Signaller for CascadeSignaller {
    fn create_room(&mut self, name: &str) -> Result<RoomKey, LoadgenError> {
        self.b.create_room(name)?;
        self.a.create_room(name)
    }

    fn publish(&mut self, room: &RoomKey, offer: &str) -> Answered {
        self.a.publish(room, offer)
    }

    fn subscribe(&mut self, room: &RoomKey, publishers: &[SessionKey], offer: &str) -> Answered {
        let placed = self.placed.entry(room.name().to_string()).or_insert(0);
        let local = *placed < self.local_subscribers;
        *placed += 1;
        if local {
            return self.a.subscribe(room, publishers, offer);
        }
        let mut tracks = Vec::new();
        for p in publishers {
            let SessionKey::Control(p) = p else {
                return Err(wrong("subscribe", p));
            };
            tracks.extend(self.relay(room, *p)?);
        }
        let (answer, id) = self.b.create(room, offer)?;
        let r = self.b.req(
            "subscribe",
            Request::Subscribe(Subscribe {
                subscriber: id,
                publisher: self.relay_b,
                tracks: Some(tracks),
            }),
        );
        if let Err(e) = r {
            self.b.close_id(id);
            return Err(e);
        }
        Ok((answer, SessionKey::Remote(id)))
    }

    fn close(&mut self, session: &SessionKey) -> Result<(), LoadgenError> {
        match session {
            SessionKey::Remote(id) => self
                .b
                .req(
                    "session.close",
                    Request::SessionClose(SessionRef { session: *id }),
                )
                .map(|_| ()),
            other => self.a.close(other),
        }
    }

    fn close_room(&mut self, room: &RoomKey) -> Result<(), LoadgenError> {
        let b = self.b.close_room(room);
        self.a.close_room(room).and(b)
    }
}

/// WHIP (`POST {base}/whip/{room}`) and WHEP (`POST {base}/whep/{room}/{publisher}`)
/// against rtc-demo; `DELETE` on the returned `Location` ends a session.
pub(crate) struct Whip {
    base: HttpUrl,
    loopback_only: bool,
    token: Option<String>,
    timeout: Duration,
}

impl Whip {
    pub(crate) fn new(
        base: &str,
        loopback_only: bool,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Whip, LoadgenError> {
        let mut base = HttpUrl::parse(base).map_err(|e| LoadgenError::Config(e.to_string()))?;
        base.resolve(loopback_only)
            .map_err(|e| LoadgenError::Config(e.to_string()))?;
        while base.path.ends_with('/') {
            base.path.pop();
        }
        Ok(Whip {
            base,
            loopback_only,
            token,
            timeout,
        })
    }

    fn send(
        &self,
        method: &str,
        url: &HttpUrl,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<http::HttpResponse, LoadgenError> {
        let addr = url
            .resolve(self.loopback_only)
            .map_err(|e| LoadgenError::Signalling(e.to_string()))?;
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        http::request(url, addr, method, &headers, body, self.timeout)
            .map_err(|e| LoadgenError::Signalling(format!("{method} {}: {e}", url.path)))
    }

    fn post_offer(&self, path: String, offer: &str) -> Answered {
        let url = HttpUrl {
            path,
            ..self.base.clone()
        };
        let resp = self.send("POST", &url, Some("application/sdp"), offer.as_bytes())?;
        if resp.status != 201 {
            let reason = String::from_utf8_lossy(&resp.body);
            return Err(LoadgenError::Signalling(format!(
                "POST {}: status {} {}",
                url.path,
                resp.status,
                reason.trim()
            )));
        }
        let location = resp
            .header("location")
            .ok_or_else(|| LoadgenError::Signalling(format!("POST {}: no Location", url.path)))?;
        let res = url
            .join(location)
            .map_err(|e| LoadgenError::Signalling(e.to_string()))?;
        let id = res
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("")
            .to_string();
        let answer = String::from_utf8(resp.body)
            .map_err(|_| LoadgenError::Signalling("answer is not UTF-8".into()))?;
        Ok((answer, SessionKey::Http { url: res, id }))
    }
}

impl Signaller for Whip {
    fn create_room(&mut self, name: &str) -> Result<RoomKey, LoadgenError> {
        Ok(RoomKey::Named(name.to_string()))
    }

    fn publish(&mut self, room: &RoomKey, offer: &str) -> Answered {
        self.post_offer(format!("{}/whip/{}", self.base.path, room.name()), offer)
    }

    fn subscribe(&mut self, room: &RoomKey, publishers: &[SessionKey], offer: &str) -> Answered {
        let [SessionKey::Http { id, .. }] = publishers else {
            return Err(LoadgenError::Signalling(
                "WHEP subscribes to exactly one WHIP publisher".into(),
            ));
        };
        self.post_offer(
            format!("{}/whep/{}/{id}", self.base.path, room.name()),
            offer,
        )
    }

    fn close(&mut self, session: &SessionKey) -> Result<(), LoadgenError> {
        let SessionKey::Http { url, .. } = session else {
            return Err(wrong("close", session));
        };
        let resp = self.send("DELETE", url, None, &[])?;
        if (200..300).contains(&resp.status) {
            Ok(())
        } else {
            Err(LoadgenError::Signalling(format!(
                "DELETE {}: status {}",
                url.path, resp.status
            )))
        }
    }

    fn close_room(&mut self, _room: &RoomKey) -> Result<(), LoadgenError> {
        Ok(())
    }

    fn multi_publisher_subscribe(&self) -> bool {
        false
    }
}
