//! Params and bodies of the renegotiation operations: `session.renegotiate` (the peer's
//! new offer → our answer) and `session.ice` (a trickle ICE fragment, RFC 8840).

use serde::{Deserialize, Serialize};

use crate::types::SessionId;

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

/// The result of `session.renegotiate` and `session.ice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Renegotiated {
    /// Our SDP answer (`session.renegotiate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Our trickle ICE fragment when the peer's fragment restarted ICE (`session.ice`);
    /// absent for a plain trickle update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment: Option<String>,
    /// Tracks (mids) the change added.
    pub added: Vec<String>,
    /// Tracks (mids) the change removed; their forwarding ended.
    pub removed: Vec<String>,
    /// The engine's ICE credentials changed (ICE restart).
    pub ice_restarted: bool,
}
