//! Engine events → control events: the thread that reads [`EngineHandle::events`]
//! and publishes on the [`EventHub`](control::EventHub).
//!
//! [`EngineHandle::events`]: crate::engine::EngineHandle::events

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use control::{ChannelPayload, Event};
use rtc_core::ice::IceConnectionState;
use rtc_core::media::Mid;

use super::Shared;
use super::wire::{kind_of, shard_id, track_id};
use crate::api::{CloseReason, EngineEvent, SessionId};

struct Pump<'a> {
    shared: &'a Shared,
    states: HashMap<SessionId, control::SessionState>,
    /// Latest loudest publishers per shard, with scores.
    shard_speakers: HashMap<usize, Vec<(SessionId, u32)>>,
    /// Last `room.active_speakers` list published per room name.
    room_speakers: HashMap<String, Vec<SessionId>>,
    /// Per publisher track, per shard: (live, selected) layer bit sets.
    layers: HashMap<(SessionId, Mid), HashMap<usize, (u8, u8)>>,
    /// Last unused-layer set published per publisher track.
    unused: HashMap<(SessionId, Mid), u8>,
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
            EngineEvent::ShardDown { shard, sessions } => {
                self.shared
                    .hub
                    .publish(&Event::ShardDown(control::ShardFailure {
                        shard: shard_id(shard),
                        sessions: sessions as u64,
                        reason: "the shard thread panicked outside a session guard".into(),
                    }));
            }
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
            EngineEvent::LayersSelected {
                shard,
                publisher,
                mid,
                live,
                selected,
            } => self.on_layers(shard, (publisher, mid), live, selected),
            EngineEvent::ActiveSpeakers { shard, speakers } => {
                self.shard_speakers.insert(shard, speakers);
                self.publish_speakers();
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
            EngineEvent::RelayDown { relay, reason } => {
                self.shared
                    .hub
                    .publish(&super::relay::down_event(relay, reason));
            }
            _ => {}
        }
    }

    /// Merges the shards' layer selections of a publisher track and publishes
    /// `track.layers_unused` when the set of live layers nobody selects changed.
    fn on_layers(&mut self, shard: usize, key: (SessionId, Mid), live: u8, selected: u8) {
        let per_shard = self.layers.entry(key).or_default();
        per_shard.insert(shard, (live, selected));
        let (live, selected) = per_shard
            .values()
            .fold((0u8, 0u8), |(l, s), (l2, s2)| (l | l2, s | s2));
        let unused = live & !selected;
        let last = self.unused.insert(key, unused).unwrap_or(0);
        if last == unused {
            return;
        }
        self.shared
            .hub
            .publish(&Event::TrackLayersUnused(control::TrackLayersUnused {
                publisher: control::SessionId(key.0.0),
                track: track_id(key.1),
                layers: (0..3u8).filter(|l| unused & (1 << l) != 0).collect(),
            }));
    }

    /// Merges the shards' speaker lists per room (members only, loudest first, at most
    /// the detector's `max_speakers`) and publishes `room.active_speakers` for every room
    /// whose list changed.
    fn publish_speakers(&mut self) {
        let max = crate::sfu::speaker::SpeakerConfig::default().max_speakers;
        let mut all: Vec<(SessionId, u32)> =
            self.shard_speakers.values().flatten().copied().collect();
        all.sort_by_key(|(id, score)| (std::cmp::Reverse(*score), id.0));
        for room in self.shared.engine.list_rooms() {
            let list: Vec<SessionId> = all
                .iter()
                .filter(|(id, _)| room.members.contains(id))
                .map(|(id, _)| *id)
                .take(max)
                .collect();
            let last = self.room_speakers.get(&room.name);
            if last == Some(&list) || (last.is_none() && list.is_empty()) {
                continue;
            }
            self.room_speakers.insert(room.name.clone(), list.clone());
            self.shared
                .hub
                .publish(&Event::RoomActiveSpeakers(control::RoomActiveSpeakers {
                    room: control::RoomId(room.name),
                    sessions: list.into_iter().map(|s| control::SessionId(s.0)).collect(),
                }));
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
        let failed = match reason {
            CloseReason::Failed => {
                Some("the connection failed (ICE consent, DTLS or remote close)")
            }
            CloseReason::ConnectTimeout => {
                Some("not connected within the engine's connect_timeout")
            }
            CloseReason::ShardDown => Some("its shard thread died"),
            _ => None,
        };
        if let Some(reason) = failed {
            self.transition(id, control::SessionState::Failed);
            self.shared
                .hub
                .publish(&Event::SessionFailed(control::SessionFailure {
                    session,
                    shard,
                    reason: reason.into(),
                }));
        }
        if reason == CloseReason::Panicked {
            self.shared
                .hub
                .publish(&Event::SessionPanicked(control::SessionFailure {
                    session,
                    shard,
                    reason: "a call into the session's Rtc panicked; the shard removed it".into(),
                }));
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

/// Runs until [`Shared::stop`] is set or the engine's event channel closes.
pub(super) fn event_pump(shared: &Shared) {
    let mut pump = Pump {
        shared,
        states: HashMap::new(),
        shard_speakers: HashMap::new(),
        room_speakers: HashMap::new(),
        layers: HashMap::new(),
        unused: HashMap::new(),
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
