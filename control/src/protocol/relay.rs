//! Params, answers and events of the relay operations (`relay.*`): one relay session
//! between two engines carries many tracks (see `docs/control-protocol.md`).

use serde::{Deserialize, Serialize};

use crate::types::{SessionId, TrackId};

/// Defines a params struct whose last fields are a relay's timing, `keepalive_ms` and
/// `timeout_ms` (the same on both ends of a relay).
macro_rules! with_relay_timing {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Keepalive interval, milliseconds (default 500).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub keepalive_ms: Option<u64>,
            /// Silence after which the relay is down, milliseconds (default 5000).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timeout_ms: Option<u64>,
        }
    };
}

with_relay_timing! {
    /// `relay.listen`: the receiving end of a relay.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RelayListen {}
}

/// What `relay.listen` answers: hand it to the other engine's `relay.connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayInvite {
    /// The relay on the listening engine.
    pub relay: SessionId,
    /// Its ICE username fragment.
    pub ice_ufrag: String,
    /// Its ICE password.
    pub ice_pwd: String,
    /// Its DTLS certificate fingerprint (`sha-256 AB:CD:…`).
    pub fingerprint: String,
    /// Where the connecting engine sends (`ip:port`).
    pub addr: String,
    /// Its keepalive SSRC.
    pub keepalive_ssrc: u32,
}

with_relay_timing! {
    /// `relay.connect`: the sending end of a relay, from the listener's invitation.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RelayConnect {
        /// What the listening engine's `relay.listen` answered.
        pub invite: RelayInvite,
    }
}

/// What `relay.connect` answers: hand it to the listening engine's `relay.accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAnswer {
    /// The relay on the connecting engine.
    pub relay: SessionId,
    /// Its ICE username fragment.
    pub ice_ufrag: String,
    /// Its ICE password.
    pub ice_pwd: String,
    /// Its DTLS certificate fingerprint.
    pub fingerprint: String,
    /// Its keepalive SSRC.
    pub keepalive_ssrc: u32,
}

/// `relay.accept`: completes a listening relay with the connecting engine's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAccept {
    /// The listening relay.
    pub relay: SessionId,
    /// What the other engine's `relay.connect` answered.
    pub answer: RelayAnswer,
}

/// `relay.publish`: send a publisher's track over a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayPublish {
    /// The relay (sending end).
    pub relay: SessionId,
    /// The publishing session.
    pub session: SessionId,
    /// Its track.
    pub track: TrackId,
}

/// One payload type of a relayed track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayPayload {
    /// Payload type number.
    pub pt: u8,
    /// Codec name (`VP8`, `opus`, …).
    pub codec: String,
    /// RTP clock rate.
    pub clock_rate: u32,
}

/// What `relay.publish` answers: hand it to the other engine's `relay.attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTrack {
    /// The relay's track carrying it (the same id on both engines).
    pub relay_track: TrackId,
    /// `audio` or `video`.
    pub kind: String,
    /// The SSRC it arrives with.
    pub ssrc: u32,
    /// The SSRC of its retransmissions (RTX).
    pub rtx_ssrc: u32,
    /// (payload type, RTX payload type) pairs.
    pub rtx: Vec<(u8, u8)>,
    /// The publisher's payload types.
    pub payloads: Vec<RelayPayload>,
    /// A simulcast video track: one stream per publisher layer (layer 0's SSRCs are
    /// also `ssrc` and `rtx_ssrc`); the receiving engine makes them the layers of one
    /// published track. Absent or empty: one stream, `ssrc`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<RelayLayer>,
}

/// One layer of a relayed simulcast track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayLayer {
    /// The publisher's layer index (0 = lowest, at most 2).
    pub layer: u8,
    /// The SSRC the layer's stream arrives with.
    pub ssrc: u32,
    /// The SSRC of its retransmissions (RTX).
    pub rtx_ssrc: u32,
}

/// `relay.attach`: take a track the other engine relays; it becomes a published track
/// of the relay session here (publish the relay session in a room, subscribe to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAttach {
    /// The relay (receiving end).
    pub relay: SessionId,
    /// What the other engine's `relay.publish` answered.
    pub track: RelayTrack,
}

/// `relay.unpublish`: stop sending a relayed track (the other engine's subscribers of
/// it get an RTCP BYE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTrackRef {
    /// The relay.
    pub relay: SessionId,
    /// The relay's track.
    pub relay_track: TrackId,
}

/// `relay.close`: close a relay (both engines report `relay.down`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRef {
    /// The relay.
    pub relay: SessionId,
}

/// `relay.down`: a relay ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayDown {
    /// The relay.
    pub relay: SessionId,
    /// `closed` (here), `silent` (the peer sent nothing for the relay's timeout),
    /// `failed` (connection failed or the peer closed it), `shutdown`.
    pub reason: String,
}
