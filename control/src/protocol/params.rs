//! Request parameters: the `params` object of each operation.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::EventKind;
use crate::types::*;

/// How a session is set up: from an SDP offer, or from direct parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSetup {
    /// A remote SDP offer; the engine answers it (`"offer": "v=0..."`).
    Offer(String),
    /// Direct parameters (`"direct": {...}`).
    Direct(DirectParams),
}

/// `session.create`: create a session on a shard.
///
/// Wire params: exactly one of `"offer"` (SDP text) or `"direct"` ([`DirectParams`]),
/// plus optional `"room"`, `"shard"` and `"reap_on_disconnect"` (default `false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSessionCreate", into = "RawSessionCreate")]
pub struct SessionCreate {
    /// Offer or direct parameters.
    pub setup: SessionSetup,
    /// Join this room (as a member; publishing is a separate `publish`).
    pub room: Option<RoomId>,
    /// Place the session on this shard (default: the engine picks).
    pub shard: Option<ShardId>,
    /// Close the session when the control client that created it disconnects.
    pub reap_on_disconnect: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    direct: Option<DirectParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<ShardId>,
    #[serde(default)]
    reap_on_disconnect: bool,
}

impl TryFrom<RawSessionCreate> for SessionCreate {
    type Error = &'static str;
    fn try_from(r: RawSessionCreate) -> Result<Self, Self::Error> {
        let setup = match (r.offer, r.direct) {
            (Some(sdp), None) => SessionSetup::Offer(sdp),
            (None, Some(d)) => SessionSetup::Direct(d),
            (Some(_), Some(_)) => return Err("give either `offer` or `direct`, not both"),
            (None, None) => return Err("one of `offer` or `direct` is required"),
        };
        Ok(SessionCreate {
            setup,
            room: r.room,
            shard: r.shard,
            reap_on_disconnect: r.reap_on_disconnect,
        })
    }
}

impl From<SessionCreate> for RawSessionCreate {
    fn from(s: SessionCreate) -> Self {
        let (offer, direct) = match s.setup {
            SessionSetup::Offer(sdp) => (Some(sdp), None),
            SessionSetup::Direct(d) => (None, Some(d)),
        };
        RawSessionCreate {
            offer,
            direct,
            room: s.room,
            shard: s.shard,
            reap_on_disconnect: s.reap_on_disconnect,
        }
    }
}

/// Params naming one session (`session.close`, `session.stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// The session.
    pub session: SessionId,
}

/// Params naming one room (`room.create`, `room.close`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRef {
    /// The room.
    pub room: RoomId,
}

/// Params naming one shard (`shard.drain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRef {
    /// The shard.
    pub shard: ShardId,
}

/// `publish`: make a session's tracks available in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The publishing session.
    pub session: SessionId,
    /// The room.
    pub room: RoomId,
    /// Only these tracks (default: all of the session's inbound tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<TrackId>>,
}

/// `subscribe` / `unsubscribe`: forward a publisher's tracks to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// The receiving session.
    pub subscriber: SessionId,
    /// The publishing session.
    pub publisher: SessionId,
    /// Only these tracks (default: all published tracks of the publisher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<TrackId>>,
}

/// `keyframe.request`: send PLI/FIR to a publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyframeRequest {
    /// The publishing session.
    pub session: SessionId,
    /// Only this video track (default: all its video tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackId>,
}

/// `track.set_preference`: what one subscriber track (the subscriber's own track id) may
/// forward of its publisher's layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackPreference {
    /// The subscribing session.
    pub session: SessionId,
    /// The subscriber's track (its media section) carrying the publisher's track.
    pub track: TrackId,
    /// Highest spatial (simulcast) layer, 0..=2 (default: 2, all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_layer: Option<u8>,
    /// Highest temporal layer, 0..=3 (default: 3, all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_temporal: Option<u8>,
    /// Forward nothing (default: false).
    #[serde(default)]
    pub paused: bool,
}

/// `events.subscribe`: receive events on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSubscribe {
    /// Only these kinds (default: all kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<EventKind>>,
}

/// The payload of a data-channel message: text (`"data"`) or binary (`"data_b64"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPayload {
    /// A text (UTF-8, PPID 51) message.
    Text(String),
    /// A binary (PPID 53) message.
    Binary(Vec<u8>),
}

impl ChannelPayload {
    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ChannelPayload::Text(s) => s.as_bytes(),
            ChannelPayload::Binary(b) => b,
        }
    }
}

/// `channel.send`: send a message on a session's data channel.
///
/// Wire params: `session`, `channel` (stream id number or label string) and exactly one
/// of `"data"` (text) or `"data_b64"` (binary, standard base64 with padding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawChannelSend", into = "RawChannelSend")]
pub struct ChannelSend {
    /// The session.
    pub session: SessionId,
    /// The channel.
    pub channel: ChannelRef,
    /// The message.
    pub payload: ChannelPayload,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannelSend {
    session: SessionId,
    channel: ChannelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
}

impl TryFrom<RawChannelSend> for ChannelSend {
    type Error = String;
    fn try_from(r: RawChannelSend) -> Result<Self, Self::Error> {
        let payload = match (r.data, r.data_b64) {
            (Some(t), None) => ChannelPayload::Text(t),
            (None, Some(b)) => ChannelPayload::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| format!("data_b64: {e}"))?,
            ),
            (Some(_), Some(_)) => return Err("give either `data` or `data_b64`, not both".into()),
            (None, None) => return Err("one of `data` or `data_b64` is required".into()),
        };
        Ok(ChannelSend {
            session: r.session,
            channel: r.channel,
            payload,
        })
    }
}

impl From<ChannelSend> for RawChannelSend {
    fn from(c: ChannelSend) -> Self {
        let (data, data_b64) = match c.payload {
            ChannelPayload::Text(t) => (Some(t), None),
            ChannelPayload::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        RawChannelSend {
            session: c.session,
            channel: c.channel,
            data,
            data_b64,
        }
    }
}

/// Params of operations that take none: absent, `null` or `{}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}
