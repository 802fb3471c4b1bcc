//! Sans-I/O ICE (RFC 8445) with consent freshness (RFC 7675) and ICE-TCP (RFC 6544).
//!
//! [`IceAgent`] is driven by its caller: STUN messages received on the sockets go in
//! through [`IceAgent::handle_packet`], the passage of time through
//! [`IceAgent::handle_timeout`]; STUN datagrams to send come out of
//! [`IceAgent::poll_transmit`] and state changes out of [`IceAgent::poll_event`].
//! One component (RTP and RTCP multiplexed) is supported.

mod agent;
mod candidate;
pub mod framing;

pub use agent::{IceAgent, IceAgentEvent, IceConnectionState, StunTransmit};
pub use candidate::{Candidate, CandidateKind, Protocol, TcpType};

use rand::Rng;

/// Errors from ICE candidate handling.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IceError {
    /// The address is unspecified, multicast, a host name, or of the wrong family.
    #[error("invalid candidate address")]
    InvalidAddress,
    /// The candidate address is an mDNS `.local` name, which this agent cannot resolve.
    #[error("mDNS (.local) candidates are not supported")]
    Mdns,
    /// The transport is neither UDP nor TCP.
    #[error("unsupported candidate transport")]
    UnsupportedTransport,
    /// A field of the SDP candidate line is missing or malformed.
    #[error("malformed candidate: {0}")]
    Malformed(&'static str),
}

/// ICE credentials: username fragment and password (RFC 8445 §5.3, RFC 8839 §5.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IceCreds {
    /// Username fragment (ice-ufrag), at least 4 ice-chars.
    pub ufrag: String,
    /// Password (ice-pwd), at least 22 ice-chars.
    pub pass: String,
}

impl IceCreds {
    /// Random credentials: an 8-character ufrag and a 24-character password drawn
    /// from the ice-char set (A-Z, a-z, 0-9, `+`, `/`).
    pub fn random() -> IceCreds {
        const CHARS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
                .collect()
        };
        IceCreds {
            ufrag: pick(8),
            pass: pick(24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_creds() {
        let a = IceCreds::random();
        let b = IceCreds::random();
        assert_ne!(a, b);
        assert!(a.ufrag.len() >= 4 && a.pass.len() >= 22);
        assert!(
            a.ufrag
                .bytes()
                .chain(a.pass.bytes())
                .all(candidate::is_ice_char)
        );
    }
}
