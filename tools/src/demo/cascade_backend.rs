//! [`Backend`] over several `rtc-engine`s: one room spread over engines joined by relays
//! (`rtc-demo --control A --control B ...`), the orchestration a signalling service does
//! to cascade (`docs/operations.md`, "Cascading rooms over several engines").
//!
//! Placement: every publisher lands on the first engine. Viewers of a room fill the
//! first engine up to the relay threshold, then the next engine up to the threshold, and
//! so on; the last engine takes every viewer beyond. A viewer on another engine than its
//! publisher is served through a relay from the first engine to its own: one relay per
//! (room, engine), set up on first need (`relay.listen` there, `relay.connect` on the
//! first engine, `relay.accept` there), carrying every relayed track of the room. A
//! publisher's tracks are relayed once per engine (`relay.publish` on the first engine,
//! `relay.attach` on the other, which then publishes its relay session in the room), and
//! the viewer subscribes to the relayed tracks on its own engine (set-ups are serialised,
//! so viewers arriving together share the room's relay). When the publisher
//! leaves, its relayed tracks are unpublished (their viewers get an RTCP BYE). A relay
//! that went down (its `relay.*` request fails) is set up again on the next need.
//!
//! Session ids: engine `i`'s session `s` is `s + i * 2^48` here (engine 0's ids are
//! unchanged); shards are numbered across the engines in order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use control::{
    RelayAccept, RelayAttach, RelayConnect, RelayListen, RelayPublish, RelayTrackRef, Request,
    Response, SessionId, Subscribe, TrackId,
};

use super::backend::{
    Backend, BackendError, BackendEvent, BackendRoom, Created, Forwarded, Kind, SessionRequest,
    StatsSummary, Subscription,
};
use super::control_backend::ControlBackend;

/// Bits of a demo session id that hold the engine's own id.
const ENGINE_SHIFT: u32 = 48;

/// A relay from engine 0 to another engine, for one room.
#[derive(Debug, Clone, Copy)]
struct RelayIds {
    /// Its id on engine 0 (the sending end).
    from: u64,
    /// Its id on the receiving engine.
    to: u64,
}

/// One track of a publisher relayed to an engine.
#[derive(Debug, Clone)]
struct Relayed {
    /// The relay's track id (the same on both ends).
    relay_track: String,
    kind: Kind,
}

#[derive(Debug, Default)]
struct State {
    /// Live viewers: demo session id → (room, engine).
    viewers: HashMap<u64, (String, usize)>,
    /// Relays by (room, receiving engine).
    relays: HashMap<(String, usize), RelayIds>,
    /// Relayed tracks by (publisher's demo id, receiving engine), with the room.
    relayed: HashMap<(u64, usize), (String, Vec<Relayed>)>,
}

/// Drives several engines as one: see the module docs.
#[derive(Debug)]
pub struct CascadeBackend {
    engines: Vec<ControlBackend>,
    /// Viewers per room an engine takes before the next one does.
    threshold: usize,
    /// Shard numbers: engine `i`'s shards start at `shard_base[i]`.
    shard_base: Vec<usize>,
    state: Mutex<State>,
    /// Held while a relayed subscription sets up its relay and relays its publisher's
    /// tracks: two viewers subscribing at once must share one relay per (room, engine),
    /// not each set up their own (a second relay between the same two shard sockets is
    /// refused by the engine, `AddressInUse`).
    setup: Mutex<()>,
    /// The engine whose events `next_event` reads first (turns rotate).
    next_events: AtomicUsize,
}

fn unexpected(r: &Response) -> BackendError {
    BackendError::Engine(format!("unexpected control response {r:?}"))
}

impl CascadeBackend {
    /// Drives `engines` (at least one; publishers on the first), moving a room's viewers
    /// to the next engine once `threshold` of them are on one.
    ///
    /// # Errors
    /// [`BackendError::BadRequest`] for an empty list or more engines than ids can tell
    /// apart.
    pub fn new(engines: Vec<ControlBackend>, threshold: usize) -> Result<Self, BackendError> {
        if engines.is_empty() || engines.len() >= 1 << (64 - ENGINE_SHIFT) {
            return Err(BackendError::BadRequest(format!(
                "{} engines (1 to 65535)",
                engines.len()
            )));
        }
        let mut shard_base = Vec::with_capacity(engines.len());
        let mut n = 0;
        for e in &engines {
            shard_base.push(n);
            n += e.shard_count();
        }
        Ok(CascadeBackend {
            engines,
            threshold,
            shard_base,
            state: Mutex::new(State::default()),
            setup: Mutex::new(()),
            next_events: AtomicUsize::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update of the state completes: a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (engine, its session id) of a demo session id.
    fn split(&self, id: u64) -> Result<(usize, u64), BackendError> {
        let e = (id >> ENGINE_SHIFT) as usize;
        if e >= self.engines.len() {
            return Err(BackendError::NotFound(format!("no session {id}")));
        }
        Ok((e, id & ((1 << ENGINE_SHIFT) - 1)))
    }

    fn join(e: usize, id: u64) -> u64 {
        id | ((e as u64) << ENGINE_SHIFT)
    }

    /// Engine `e`'s local shard for the demo-wide `shard`, if it is one of e's.
    fn local_shard(&self, e: usize, shard: Option<usize>) -> Option<usize> {
        let base = self.shard_base[e];
        shard
            .and_then(|s| s.checked_sub(base))
            .filter(|s| *s < self.engines[e].shard_count())
    }

    fn create_on(&self, e: usize, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        let c = self.engines[e].create_session(SessionRequest {
            shard: self.local_shard(e, req.shard),
            ..req
        })?;
        Ok(Created {
            session: Self::join(e, c.session),
            shard: self.shard_base[e] + c.shard,
            answer: c.answer,
        })
    }

    /// The relay from engine 0 to `e` for `room`, set up when missing.
    fn relay(&self, room: &str, e: usize) -> Result<RelayIds, BackendError> {
        if let Some(r) = self.state().relays.get(&(room.to_owned(), e)) {
            return Ok(*r);
        }
        let (src, dst) = (&self.engines[0], &self.engines[e]);
        let invite = match dst.request(Request::RelayListen(RelayListen::default()))? {
            Response::RelayInvite(i) => i,
            other => return Err(unexpected(&other)),
        };
        let answer = match src.request(Request::RelayConnect(RelayConnect {
            invite: invite.clone(),
            keepalive_ms: None,
            timeout_ms: None,
        }))? {
            Response::RelayAnswer(a) => a,
            other => return Err(unexpected(&other)),
        };
        dst.request(Request::RelayAccept(RelayAccept {
            relay: invite.relay,
            answer: answer.clone(),
        }))?;
        let ids = RelayIds {
            from: answer.relay.0,
            to: invite.relay.0,
        };
        self.state().relays.insert((room.to_owned(), e), ids);
        Ok(ids)
    }

    /// `publisher`'s tracks relayed to engine `e` (relayed now when they are not yet).
    fn relayed(
        &self,
        room: &str,
        publisher: u64,
        e: usize,
        relay: RelayIds,
    ) -> Result<Vec<Relayed>, BackendError> {
        if let Some((_, r)) = self.state().relayed.get(&(publisher, e)) {
            return Ok(r.clone());
        }
        let (pe, local) = self.split(publisher)?;
        if pe != 0 {
            return Err(BackendError::NotFound(format!(
                "publisher {publisher} is not on the first engine"
            )));
        }
        // `publish` is idempotent and answers the published tracks (known from the
        // offer, before any media arrives).
        let published = match self.engines[0].request(Request::Publish(control::Publish {
            session: SessionId(local),
            room: control::RoomId(room.to_owned()),
            tracks: None,
        }))? {
            Response::Tracks(t) => t.tracks,
            other => return Err(unexpected(&other)),
        };
        let mut out = Vec::new();
        for t in &published {
            let track = match self.engines[0].request(Request::RelayPublish(RelayPublish {
                relay: SessionId(relay.from),
                session: SessionId(local),
                track: t.track.clone(),
            }))? {
                Response::RelayTrack(t) => t,
                other => return Err(unexpected(&other)),
            };
            let relay_track = track.relay_track.0.clone();
            self.engines[e].request(Request::RelayAttach(RelayAttach {
                relay: SessionId(relay.to),
                track,
            }))?;
            out.push(Relayed {
                relay_track,
                kind: match t.kind {
                    control::MediaKind::Audio => Kind::Audio,
                    control::MediaKind::Video => Kind::Video,
                },
            });
        }
        // The relay session publishes in the room on `e` (again: it is idempotent).
        self.engines[e].publish(room, relay.to)?;
        self.state()
            .relayed
            .insert((publisher, e), (room.to_owned(), out.clone()));
        Ok(out)
    }

    /// Subscribes `subscriber` (local to `e`) to `publisher`'s tracks relayed there.
    fn subscribe_relayed(
        &self,
        room: &str,
        e: usize,
        subscriber: u64,
        publisher: u64,
    ) -> Result<Vec<Forwarded>, BackendError> {
        let (relay, tracks) = {
            // The guard protects no data, only the order of the set-up requests: a
            // poisoned one is as good.
            let _setup = self.setup.lock().unwrap_or_else(|p| p.into_inner());
            let relay = self.relay(room, e)?;
            (relay, self.relayed(room, publisher, e, relay)?)
        };
        let resp = self.engines[e].request(Request::Subscribe(Subscribe {
            subscriber: SessionId(subscriber),
            publisher: SessionId(relay.to),
            tracks: Some(
                tracks
                    .iter()
                    .map(|t| TrackId(t.relay_track.clone()))
                    .collect(),
            ),
        }))?;
        let Response::Tracks(t) = resp else {
            return Err(unexpected(&resp));
        };
        Ok(t.tracks
            .into_iter()
            .filter_map(|t| {
                let kind = tracks.iter().find(|r| r.relay_track == t.track.0)?.kind;
                Some(Forwarded {
                    track: t.track.0,
                    kind,
                })
            })
            .collect())
    }

    /// Forgets the relay of (`room`, `e`) and what it carried (it went down).
    fn forget_relay(&self, room: &str, e: usize) {
        let mut st = self.state();
        st.relays.remove(&(room.to_owned(), e));
        st.relayed
            .retain(|(_, re), (r, _)| !(*re == e && r == room));
    }

    /// Ends `publisher`'s relayed tracks on every engine (their viewers get a BYE).
    fn unrelay(&self, publisher: u64) {
        let gone: Vec<(usize, String, Vec<Relayed>)> = {
            let mut st = self.state();
            let keys: Vec<(u64, usize)> = st
                .relayed
                .keys()
                .filter(|(p, _)| *p == publisher)
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| st.relayed.remove(&k).map(|(room, t)| (k.1, room, t)))
                .collect()
        };
        for (e, room, tracks) in gone {
            let Some(relay) = self.state().relays.get(&(room, e)).copied() else {
                continue;
            };
            for t in tracks {
                let _ = self.engines[0].request(Request::RelayUnpublish(RelayTrackRef {
                    relay: SessionId(relay.from),
                    relay_track: TrackId(t.relay_track),
                }));
            }
        }
    }

    /// A session ended: forget it as a viewer, end its tracks' relays as a publisher.
    fn ended(&self, id: u64) {
        self.state().viewers.remove(&id);
        self.unrelay(id);
    }
}

impl Backend for CascadeBackend {
    fn name(&self) -> &'static str {
        "cascade"
    }

    fn shard_count(&self) -> usize {
        self.engines.iter().map(|e| e.shard_count()).sum()
    }

    fn create_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        self.create_on(0, req)
    }

    fn create_viewer_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        let room = req.room;
        let e = {
            let st = self.state();
            let mut count = vec![0usize; self.engines.len()];
            for (r, e) in st.viewers.values() {
                if r == room {
                    count[*e] += 1;
                }
            }
            let last = self.engines.len() - 1;
            (0..last)
                .find(|e| count[*e] < self.threshold)
                .unwrap_or(last)
        };
        let c = self.create_on(e, req)?;
        self.state().viewers.insert(c.session, (room.to_owned(), e));
        Ok(c)
    }

    fn publish(&self, room: &str, session: u64) -> Result<(), BackendError> {
        let (e, local) = self.split(session)?;
        self.engines[e].publish(room, local)
    }

    fn subscribe(&self, req: Subscription<'_>) -> Result<Vec<Forwarded>, BackendError> {
        let Subscription {
            room,
            subscriber,
            publisher,
        } = req;
        let (se, sub) = self.split(subscriber)?;
        let (pe, publ) = self.split(publisher)?;
        if se == pe {
            return self.engines[se].subscribe(Subscription {
                room,
                subscriber: sub,
                publisher: publ,
            });
        }
        match self.subscribe_relayed(room, se, sub, publisher) {
            Err(BackendError::NotFound(_)) => {
                // The relay went down (or lost the track): set it up again, once.
                self.forget_relay(room, se);
                self.subscribe_relayed(room, se, sub, publisher)
            }
            other => other,
        }
    }

    fn set_max_layer(&self, subscriber: u64, max_layer: u8) -> Result<(), BackendError> {
        let (e, local) = self.split(subscriber)?;
        self.engines[e].set_max_layer(local, max_layer)
    }

    fn request_keyframe(&self, publisher: u64) -> Result<(), BackendError> {
        let (e, local) = self.split(publisher)?;
        self.engines[e].request_keyframe(local)
    }

    fn ice_fragment(&self, session: u64, fragment: &str) -> Result<Option<String>, BackendError> {
        let (e, local) = self.split(session)?;
        self.engines[e].ice_fragment(local, fragment)
    }

    fn close(&self, session: u64) -> Result<(), BackendError> {
        let (e, local) = self.split(session)?;
        self.ended(session);
        self.engines[e].close(local)
    }

    fn list_rooms(&self) -> Result<Vec<BackendRoom>, BackendError> {
        let relay_ids: Vec<(usize, u64)> = self
            .state()
            .relays
            .iter()
            .flat_map(|((_, e), r)| [(0, r.from), (*e, r.to)])
            .collect();
        let mut rooms: Vec<BackendRoom> = Vec::new();
        for (e, eng) in self.engines.iter().enumerate() {
            let ours = |id: &u64| !relay_ids.contains(&(e, *id));
            for r in eng.list_rooms()? {
                let publishers: Vec<u64> = r
                    .publishers
                    .iter()
                    .filter(|id| ours(id))
                    .map(|id| Self::join(e, *id))
                    .collect();
                let members: Vec<u64> = r
                    .members
                    .iter()
                    .filter(|id| ours(id))
                    .map(|id| Self::join(e, *id))
                    .collect();
                match rooms.iter_mut().find(|x| x.name == r.name) {
                    Some(x) => {
                        x.publishers.extend(publishers);
                        x.members.extend(members);
                    }
                    None => rooms.push(BackendRoom {
                        name: r.name,
                        publishers,
                        members,
                    }),
                }
            }
        }
        Ok(rooms)
    }

    fn stats(&self) -> Result<StatsSummary, BackendError> {
        let mut shards = Vec::new();
        for (e, eng) in self.engines.iter().enumerate() {
            for mut s in eng.stats()?.shards {
                s.shard += self.shard_base[e];
                shards.push(s);
            }
        }
        Ok(StatsSummary {
            backend: self.name(),
            shards,
        })
    }

    fn next_event(&self, timeout: Duration) -> Option<BackendEvent> {
        let n = self.engines.len();
        let first = self.next_events.fetch_add(1, Ordering::Relaxed) % n;
        let each = timeout / n as u32;
        for k in 0..n {
            let e = (first + k) % n;
            match self.engines[e].next_event(each) {
                Some(BackendEvent::Connected(id)) => {
                    return Some(BackendEvent::Connected(Self::join(e, id)));
                }
                Some(BackendEvent::Closed(id)) => {
                    let id = Self::join(e, id);
                    self.ended(id);
                    return Some(BackendEvent::Closed(id));
                }
                None => {}
            }
        }
        None
    }
}
