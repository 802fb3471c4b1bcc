//! The per-operation dispatch of [`ControlHandler::handle`] and the operations on
//! sessions, publications, subscriptions, keyframes, stats, shards and data channels.

use std::time::Instant;

use control::{ChannelPayload, ClientId, ControlError, ControlHandler, Event, Request, Response};
use rtc_core::media::{MediaKind, Mid};

use super::rooms::check_room_name;
use super::wire::{
    answer_role, direct_params, fingerprint_of, kind_of, map_err, parse_mid, shard_head, shard_id,
    shard_stats, stats_of, track_id,
};
use super::{EngineControl, Sess};
use crate::api::{
    ChannelTarget, EngineError, MediaDesc, Placement, RoomId, SessionId, SessionSetup,
};

impl ControlHandler for EngineControl {
    fn handle(&self, client: ClientId, req: Request) -> Result<Response, ControlError> {
        self.shared.state().clients.insert(client);
        match req {
            Request::SessionCreate(c) => self.session_create(client, c),
            Request::SessionClose(r) => self.session_close(r),
            Request::SessionStats(r) => self.session_stats(SessionId(r.session.0)),
            Request::RoomCreate(r) => self.room_create(r),
            Request::RoomClose(r) => self.room_close(r),
            Request::RoomList => Ok(self.room_list()),
            Request::Publish(p) => self.publish(p),
            Request::Subscribe(s) => self.subscribe(s),
            Request::Unsubscribe(s) => self.unsubscribe(s),
            Request::KeyframeRequest(k) => self.keyframe(k),
            Request::TrackSetPreference(p) => self.set_preference(p),
            Request::EngineStats => self.engine_stats(),
            Request::ShardList => self.shard_list(),
            Request::ShardDrain(s) => self.shard_drain(s),
            Request::ChannelSend(c) => self.channel_send(c),
            Request::RelayListen(r) => self.relay_listen(r),
            Request::RelayConnect(r) => self.relay_connect(client, r),
            Request::RelayAccept(r) => self.relay_accept(client, r),
            Request::RelayPublish(r) => self.relay_publish(r),
            Request::RelayUnpublish(r) => self.relay_unpublish(r),
            Request::RelayAttach(r) => self.relay_attach(r),
            Request::RelayClose(r) => self.relay_close(r),
            Request::PlainEgress(r) => self.plain_egress(client, r),
            Request::PlainIngest(r) => self.plain_ingest(client, r),
            Request::SessionRenegotiate(r) => {
                let id = SessionId(r.session.0);
                self.renegotiated(id, self.shared.engine.renegotiate(id, &r.offer))
            }
            Request::SessionIce(r) => {
                let id = SessionId(r.session.0);
                self.renegotiated(id, self.shared.engine.ice_fragment(id, &r.fragment))
            }
            Request::SessionOffer(r) => {
                let id = SessionId(r.session.0);
                let add: Vec<(MediaKind, rtc_core::sdp::Direction)> = r
                    .add
                    .iter()
                    .map(|m| {
                        let kind = match m.kind {
                            control::MediaKind::Audio => MediaKind::Audio,
                            control::MediaKind::Video => MediaKind::Video,
                        };
                        let dir = match m.direction {
                            control::MediaDirection::Sendrecv => rtc_core::sdp::Direction::SendRecv,
                            control::MediaDirection::Sendonly => rtc_core::sdp::Direction::SendOnly,
                            control::MediaDirection::Recvonly => rtc_core::sdp::Direction::RecvOnly,
                            control::MediaDirection::Inactive => rtc_core::sdp::Direction::Inactive,
                        };
                        (kind, dir)
                    })
                    .collect();
                let remove = r
                    .remove
                    .iter()
                    .map(parse_mid)
                    .collect::<Result<Vec<Mid>, _>>()?;
                self.renegotiated(
                    id,
                    self.shared
                        .engine
                        .create_offer(id, &add, &remove, r.ice_restart),
                )
            }
            Request::SessionAnswer(r) => {
                let id = SessionId(r.session.0);
                self.renegotiated(id, self.shared.engine.accept_answer(id, &r.answer))
            }
            // `events.*` never reach a handler, and `Request` is `#[non_exhaustive]`.
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

impl EngineControl {
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
                let rid = match self.ensure_room(name) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = eng.close_session(info.id);
                        return Err(map_err(e));
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

    fn session_close(&self, r: control::SessionRef) -> Result<Response, ControlError> {
        let id = SessionId(r.session.0);
        let res = self.shared.engine.close_session(id).map_err(map_err);
        let mut st = self.shared.state();
        st.sessions.remove(&id);
        st.published.retain(|(s, _), _| *s != id);
        res.map(|()| Response::Done)
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

    pub(super) fn publish(&self, p: control::Publish) -> Result<Response, ControlError> {
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
                local_track: None,
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
        // Publishing rooms by id: the first the subscriber is a member of, else the first.
        let rooms = self.shared.engine.publishing_rooms(publisher, subscriber);
        let room = rooms
            .iter()
            .find(|(_, member)| *member)
            .or(rooms.first())
            .map(|(id, _)| *id)?;
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
                    local_track: Some(track_id(l.subscriber_mid)),
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

    fn set_preference(&self, p: control::TrackPreference) -> Result<Response, ControlError> {
        let id = SessionId(p.session.0);
        let mid = parse_mid(&p.track)?;
        let max_layer = p.max_layer.unwrap_or(2);
        let max_temporal = p.max_temporal.unwrap_or(3);
        if max_layer > 2 || max_temporal > 3 {
            return Err(ControlError::bad_params(format!(
                "max_layer must be 0..=2 and max_temporal 0..=3 (got {max_layer}, {max_temporal})"
            )));
        }
        let pref = engine_preference(max_layer, max_temporal, p.paused);
        if !self
            .shared
            .engine
            .set_preference(id, mid, pref)
            .map_err(map_err)?
        {
            return Err(ControlError::not_found(format!(
                "session {} forwards nothing on track {:?}",
                id.0, p.track.0
            )));
        }
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
        self.stats().map(Response::EngineStats)
    }

    /// What `engine.stats` answers, for an in-process reader (the daemon's metrics
    /// endpoint): one stats request to every shard, answered between loop iterations.
    ///
    /// # Errors
    ///
    /// As `engine.stats`: a live shard that does not answer in time.
    pub fn stats(&self) -> Result<control::EngineStats, ControlError> {
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
        Ok(control::EngineStats {
            uptime_ms: u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sessions: stats.sessions() as u64,
            rooms: rooms as u64,
            control_clients: clients as u64,
            shards,
        })
    }

    fn shard_list(&self) -> Result<Response, ControlError> {
        let eng = &self.shared.engine;
        let stats = eng.stats().map_err(map_err)?;
        Ok(Response::Shards(control::ShardList {
            shards: stats
                .shards
                .iter()
                .map(|s| control::ShardInfo {
                    head: shard_head(s, eng.shard_draining(s.shard).unwrap_or(false)),
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

    fn shard_drain(&self, s: control::ShardRef) -> Result<Response, ControlError> {
        let eng = &self.shared.engine;
        let i = usize::try_from(s.shard.0).unwrap_or(usize::MAX);
        eng.drain_shard(i, false).map_err(map_err)?;
        Ok(Response::Draining(control::DrainStatus {
            shard: s.shard,
            sessions: eng.shard_sessions(i).unwrap_or(0) as u64,
        }))
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
            Err(e @ (EngineError::Rtc(_) | EngineError::SessionPanicked(_))) => {
                Err(ControlError::conflict(e.to_string()))
            }
            Err(e) => Err(map_err(e)),
        }
    }
}

impl EngineControl {
    /// The answer to `session.renegotiate` / `session.ice`; the session's recorded media
    /// follow the change.
    fn renegotiated(
        &self,
        id: SessionId,
        r: Result<crate::api::Renegotiation, EngineError>,
    ) -> Result<Response, ControlError> {
        let r = r.map_err(map_err)?;
        if let Some(s) = self.shared.state().sessions.get_mut(&id) {
            s.media = r.media.clone();
        }
        Ok(Response::Renegotiated(control::Renegotiated {
            answer: r.answer,
            fragment: r.fragment,
            offer: r.offer,
            added: r.added.iter().map(|m| m.to_string()).collect(),
            removed: r.removed.iter().map(|m| m.to_string()).collect(),
            ice_restarted: r.ice_restarted,
        }))
    }
}

/// The engine's preference for a validated `track.set_preference`.
fn engine_preference(max_spatial: u8, max_temporal: u8, paused: bool) -> crate::Preference {
    crate::Preference {
        max_spatial,
        max_temporal,
        paused,
    }
}
