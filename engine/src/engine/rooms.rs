//! Rooms and forwarding on the handle: rooms, publishing, subscriptions (legs),
//! keyframe requests and per-leg layer preferences.

use super::*;

impl EngineHandle {
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
        let mut replies = Replies::default();
        for (sub, sub_mid) in legs {
            self.remove_leg(&mut reg, sub, sub_mid, &mut replies)?;
        }
        reg.rooms.remove(&room);
        drop(reg);
        self.settle(replies)
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

    /// How many of `room`'s members each shard holds (one entry per shard); `None` for an
    /// unknown room. Costs the room's size, not the engine's session count.
    pub fn room_shard_counts(&self, room: RoomId) -> Option<Vec<usize>> {
        let reg = self.registry();
        let r = reg.rooms.get(&room)?;
        let mut counts = vec![0usize; self.shard_count()];
        for m in &r.members {
            if let Some(c) = reg.sessions.get(m).and_then(|s| counts.get_mut(s.shard)) {
                *c += 1;
            }
        }
        Some(counts)
    }

    /// The rooms `publisher` publishes in, by room id, each paired with whether `member`
    /// is a member of it: what choosing the room of a subscription needs, without
    /// copying every room's member list ([`EngineHandle::list_rooms`]).
    pub fn publishing_rooms(&self, publisher: SessionId, member: SessionId) -> Vec<(RoomId, bool)> {
        let reg = self.registry();
        let mut v: Vec<(RoomId, bool)> = reg
            .rooms
            .iter()
            .filter(|(_, r)| r.publishers.contains(&publisher))
            .map(|(id, r)| (*id, r.members.contains(&member)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Makes `session` a member of `room` (without publishing).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] or [`EngineError::UnknownRoom`].
    pub fn join_room(&self, room: RoomId, session: SessionId) -> Result<(), EngineError> {
        join(&mut self.registry(), room, session).map(|_| ())
    }

    /// Makes `session` a publisher in `room`: its received media sections become tracks
    /// others can subscribe to.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownSession`] or [`EngineError::UnknownRoom`].
    pub fn publish(&self, room: RoomId, session: SessionId) -> Result<(), EngineError> {
        let mut reg = self.registry();
        let r = join(&mut reg, room, session)?;
        if !r.publishers.contains(&session) {
            r.publishers.push(session);
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
        let mut out = Vec::new();
        let mut replies = Replies::default();
        let mut added = Vec::new();
        let mut reg = self.registry();
        let planned = self.plan_subscribe(
            &mut reg,
            (room, subscriber, publisher, mids),
            &mut out,
            &mut replies,
            &mut added,
        );
        // The registry already holds the new legs and the shards have their commands
        // queued in the same order; the replies are awaited without the lock.
        drop(reg);
        let settled = self.settle(replies);
        let mut refused = Vec::new();
        let mut failed = Ok(());
        for (p, sub_mid) in added {
            match self.wait(p) {
                Ok(true) => {}
                Ok(false) => refused.push(sub_mid),
                Err(e) => failed = failed.and(Err(e)),
            }
        }
        if !refused.is_empty() {
            // The subscriber ended on its shard before its legs arrived (its end is
            // reported too): take back what is left of them here.
            let mut reg = self.registry();
            let mut undo = Replies::default();
            for sub_mid in refused {
                let ours = reg.sessions.get(&subscriber).is_some_and(|s| {
                    s.legs
                        .iter()
                        .any(|l| l.sub_mid == sub_mid && l.publisher == publisher)
                });
                if ours {
                    let _ = self.remove_leg(&mut reg, subscriber, sub_mid, &mut undo);
                }
            }
            drop(reg);
            let _ = self.settle(undo);
            return Err(EngineError::UnknownSession(subscriber));
        }
        planned.and(settled).and(failed)?;
        Ok(out)
    }

    /// The registry side of [`EngineHandle::subscribe_tracks`] under the lock: the legs
    /// are entered in the registry and their commands queued (`added`: the `AddLeg`
    /// replies with the subscriber's media section).
    #[allow(clippy::type_complexity)]
    fn plan_subscribe(
        &self,
        reg: &mut Registry,
        (room, subscriber, publisher, mids): (RoomId, SessionId, SessionId, Option<&[Mid]>),
        out: &mut Vec<LegInfo>,
        replies: &mut Replies,
        added: &mut Vec<(registry::Pending<bool>, Mid)>,
    ) -> Result<(), EngineError> {
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
                // A leg of the room has its subscriber among the room's members (joined at
                // its subscription, kept until the session ends with its legs), so the
                // members' legs are all of them: the room's size, not the engine's.
                let in_room: usize = reg.rooms.get(&room).map_or(0, |r| {
                    r.members
                        .iter()
                        .filter_map(|m| reg.sessions.get(m))
                        .map(|s| s.legs.iter().filter(|l| l.room == room).count())
                        .sum()
                });
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
                pin: None,
                nack: slot.nack,
            };
            // Remote reference first, so the publisher's shard is asked to send copies
            // before the leg appears.
            if pub_shard != sub_shard {
                self.add_remote_ref(reg, (publisher, track.mid), spec.route, sub_shard, replies)?;
            }
            let pending = match self.send(sub_shard, |reply| Command::AddLeg {
                spec: Box::new(spec),
                reply,
            }) {
                Ok(p) => p,
                Err(e) => {
                    if pub_shard != sub_shard {
                        let _ =
                            self.drop_remote_ref(reg, (publisher, track.mid), sub_shard, replies);
                    }
                    return Err(e);
                }
            };
            added.push((pending, slot.mid));
            let old = reg.sessions.get_mut(&subscriber).and_then(|s| {
                let old = replaced.map(|i| s.legs.remove(i));
                // A few legs per session: no doubling slack (a first push makes room
                // for four).
                s.legs.reserve_exact(1);
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
                self.release_remote(reg, &old, sub_shard, replies)?;
            }
            out.push(LegInfo {
                subscriber_mid: slot.mid,
                publisher_mid: track.mid,
                ssrc,
                kind: track.kind,
            });
        }
        Ok(())
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
        let mut replies = Replies::default();
        for m in mids {
            self.remove_leg(&mut reg, subscriber, m, &mut replies)?;
        }
        drop(reg);
        self.settle(replies)
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
}

/// Makes `session` a member of `room` in `reg` and returns the room.
///
/// # Errors
///
/// [`EngineError::UnknownSession`] or [`EngineError::UnknownRoom`].
fn join(reg: &mut Registry, room: RoomId, session: SessionId) -> Result<&mut RegRoom, EngineError> {
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
    Ok(r)
}
