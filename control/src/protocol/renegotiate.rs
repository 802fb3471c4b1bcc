//! Params and bodies of the renegotiation operations: `session.renegotiate` (the peer's
//! new offer → our answer) and `session.ice` (a trickle ICE fragment, RFC 8840).

use serde::{Deserialize, Serialize};

use crate::types::{MediaKind, SessionId, TrackId};

/// Params of `session.renegotiate`: the peer's new SDP offer for a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRenegotiate {
    /// The session.
    pub session: SessionId,
    /// The new offer (SDP): may add or remove (reject) media sections and restart ICE.
    pub offer: String,
}

/// Params of `session.ice`: a trickle ICE fragment for a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionIce {
    /// The session.
    pub session: SessionId,
    /// An `application/trickle-ice-sdpfrag` body (RFC 8840): candidates,
    /// `a=end-of-candidates`, and `a=ice-ufrag`/`a=ice-pwd` (new ones restart ICE).
    pub fragment: String,
}

/// A direction of a media section, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaDirection {
    /// The engine sends and receives.
    Sendrecv,
    /// The engine sends (to a subscriber).
    Sendonly,
    /// The engine receives (from a publisher).
    Recvonly,
    /// Neither.
    Inactive,
}

/// A media section for `session.offer` to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferMedia {
    /// Audio or video.
    pub kind: MediaKind,
    /// The engine's direction on it.
    pub direction: MediaDirection,
}

/// Params of `session.offer`: the engine makes an offer on a live session (the peer
/// answers with `session.answer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOffer {
    /// The session.
    pub session: SessionId,
    /// Media sections to add.
    #[serde(default)]
    pub add: Vec<OfferMedia>,
    /// Tracks (mids) to remove.
    #[serde(default)]
    pub remove: Vec<TrackId>,
    /// Restart ICE (new engine credentials).
    #[serde(default)]
    pub ice_restart: bool,
}

/// Params of `session.answer`: the peer's answer to the engine's `session.offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAnswer {
    /// The session.
    pub session: SessionId,
    /// The SDP answer.
    pub answer: String,
}

/// The result of `session.renegotiate`, `session.ice`, `session.offer` and
/// `session.answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Renegotiated {
    /// Our SDP answer (`session.renegotiate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Our trickle ICE fragment when the peer's fragment restarted ICE (`session.ice`);
    /// absent for a plain trickle update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
    /// Our SDP offer (`session.offer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Tracks (mids) the change added.
    pub added: Vec<String>,
    /// Tracks (mids) the change removed; their forwarding ended.
    pub removed: Vec<String>,
    /// The engine's ICE credentials changed (ICE restart).
    pub ice_restarted: bool,
}
