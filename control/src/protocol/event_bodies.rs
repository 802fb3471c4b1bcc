//! Event bodies: the `params` object of each event.

use base64::Engine as _;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::params::ChannelPayload;
use crate::types::*;

/// `session.state`: a session changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStateChange {
    /// The session.
    pub session: SessionId,
    /// The new state.
    pub state: SessionState,
    /// The previous state.
    pub previous: SessionState,
}

/// `track.added` / `track.removed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackChange {
    /// The session owning the track.
    pub session: SessionId,
    /// The track.
    pub track: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The room it is published in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
}

/// `keyframe.requested`: a subscriber asked a publisher for a keyframe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyframeRequested {
    /// The publishing session asked.
    pub session: SessionId,
    /// The track.
    pub track: TrackId,
    /// The subscriber that asked (`None` when asked over the control socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<SessionId>,
}

/// `session.failed` / `session.panicked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFailure {
    /// The session.
    pub session: SessionId,
    /// The shard it ran on.
    pub shard: ShardId,
    /// What happened.
    pub reason: String,
}

/// `shard.down`: a shard thread died (a panic outside the per-session guard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFailure {
    /// The shard.
    pub shard: ShardId,
    /// Sessions it held; each is reported closed.
    pub sessions: u64,
    /// What happened.
    pub reason: String,
}

/// `channel.message`: a message arrived on a session's data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    /// The session.
    pub session: SessionId,
    /// The channel (stream id).
    pub channel: u16,
    /// The channel label.
    pub label: String,
    /// The message (on the wire `data` for text, `data_b64` for binary).
    pub payload: ChannelPayload,
}

#[derive(Serialize, Deserialize)]
struct RawChannelMessage {
    session: SessionId,
    channel: u16,
    label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
}

impl Serialize for ChannelMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (data, data_b64) = match &self.payload {
            ChannelPayload::Text(t) => (Some(t.clone()), None),
            ChannelPayload::Binary(b) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ),
        };
        RawChannelMessage {
            session: self.session,
            channel: self.channel,
            label: self.label.clone(),
            data,
            data_b64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChannelMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawChannelMessage::deserialize(d)?;
        let payload = match (r.data, r.data_b64) {
            (Some(t), None) => ChannelPayload::Text(t),
            (None, Some(b)) => ChannelPayload::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(de::Error::custom)?,
            ),
            _ => return Err(de::Error::custom("exactly one of `data`, `data_b64`")),
        };
        Ok(ChannelMessage {
            session: r.session,
            channel: r.channel,
            label: r.label,
            payload,
        })
    }
}
