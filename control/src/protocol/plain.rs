//! Params and answers of the plain RTP operations (`plain.*`): media to and from RTP
//! tools that speak neither ICE nor DTLS (ffmpeg, GStreamer), see
//! `docs/control-protocol.md`.

use serde::{Deserialize, Serialize};

use super::RelayPayload;
use crate::types::{MediaKind, RoomId, SessionId, ShardId, TrackId};

/// SRTP keys given in the request (SDES-style, RFC 4568).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainSrtp {
    /// `AES_CM_128_HMAC_SHA1_80`, `AEAD_AES_128_GCM` or `AEAD_AES_256_GCM`.
    pub suite: String,
    /// Base64 of master key ‖ master salt (as in an SDES `inline:` value) of the
    /// media the operation is about: what the engine sends (`plain.egress`) or what
    /// the source sends (`plain.ingest`).
    pub key: String,
    /// Base64 key ‖ salt of the other direction (RTCP feedback); default: `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_key: Option<String>,
}

/// A publisher's track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainTrackRef {
    /// The publishing session.
    pub session: SessionId,
    /// Its track.
    pub track: TrackId,
}

/// `plain.egress`: send a room's tracks (or the chosen ones) as plain RTP (or SRTP)
/// to `addr`, one port per track (`port`, `port + 2`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainEgress {
    /// The room whose published tracks are sent.
    pub room: RoomId,
    /// Only these tracks (default: every track published in the room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<PlainTrackRef>>,
    /// The receiver's IP address.
    pub addr: String,
    /// The first track's port; track `i` goes to `port + 2 i` (RTCP multiplexed).
    pub port: u16,
    /// SRTP keys (default: plain RTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<PlainSrtp>,
}

/// One track of a `plain.egress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainEgressTrack {
    /// The plain session sending it (close it with `session.close`).
    pub session: SessionId,
    /// The publisher track it carries.
    pub source: PlainTrackRef,
    /// Audio or video.
    pub kind: MediaKind,
    /// The receiver's port for it.
    pub port: u16,
    /// The SSRC it is sent with.
    pub ssrc: u32,
    /// The publisher's payload types.
    pub payloads: Vec<RelayPayload>,
}

/// What `plain.egress` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainEgressed {
    /// One plain session per track.
    pub tracks: Vec<PlainEgressTrack>,
    /// An SDP file describing what arrives (for `ffmpeg -i rec.sdp`, GStreamer).
    pub sdp: String,
}

/// One track a `plain.ingest` receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainIngestTrack {
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRC the source sends it with.
    pub ssrc: u32,
    /// Its payload types.
    pub payloads: Vec<RelayPayload>,
}

/// `plain.ingest`: receive plain RTP (or SRTP) from `source`; the tracks are published
/// tracks of the new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainIngest {
    /// The source's address (`ip:port` it sends from); nothing else reaches the session.
    pub source: String,
    /// What it sends.
    pub tracks: Vec<PlainIngestTrack>,
    /// Publish the tracks in this room (created if missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    /// SRTP keys (default: plain RTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<PlainSrtp>,
    /// Close the session when the source sent nothing for this long (milliseconds;
    /// default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Place the session on this shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardId>,
}

/// What `plain.ingest` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainIngested {
    /// The session (a publisher of `tracks`; close it with `session.close`).
    pub session: SessionId,
    /// Its shard.
    pub shard: ShardId,
    /// Where the source sends RTP and RTCP (`ip:port`).
    pub addr: String,
    /// The session's track per requested track, in order.
    pub tracks: Vec<TrackId>,
    /// An SDP describing what the engine expects.
    pub sdp: String,
}
