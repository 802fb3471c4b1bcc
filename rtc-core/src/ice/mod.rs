//! ICE (RFC 8445) with consent freshness (RFC 7675) and ICE-TCP (RFC 6544).
//!
//! Public here: the [`Candidate`]s an embedder gathers and signals, the [`IceCreds`] of
//! each side, the [`IceConnectionState`] reported in events, [`stun_ufrag`], the STUN
//! peek a server uses to find the session a datagram belongs to, and the RFC 4571
//! [`framing`] of ICE-TCP streams.
//!
//! Internally a Sans-I/O agent runs the connectivity checks: STUN messages received on
//! the sockets go in, the passage of time goes in, STUN datagrams to send and state
//! changes come out. One component (RTP and RTCP multiplexed) is supported.

// Some of the agent's accessors serve only its tests (or nothing yet, like `ice_lite`).
#[allow(dead_code)]
mod agent;
mod candidate;
pub mod framing;

pub use crate::stun::StunError;
pub use agent::IceConnectionState;
pub(crate) use agent::{IceAgent, IceAgentEvent};
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

/// The local username fragment a STUN message is addressed to: the part of its USERNAME
/// attribute before the `:` (`<receiver ufrag>:<sender ufrag>`, RFC 8445 §7.2.2).
///
/// A server that runs many [`Rtc`](crate::Rtc)s behind one socket uses it to pick the
/// session of an incoming connectivity check: it is the
/// [`ufrag`](IceCreds::ufrag) of that session's local credentials. Only the message
/// framing is checked, not its integrity (the session's `Rtc` does that).
///
/// `Ok(None)` when the message has no USERNAME or the USERNAME has no `:`; an error when
/// `datagram` is not a well-formed STUN message.
///
/// ```
/// // A binding request without attributes: well formed, but addressed to no one.
/// let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
/// request.extend_from_slice(&[7; 12]);
/// assert_eq!(rtc_core::ice::stun_ufrag(&request), Ok(None));
/// assert!(rtc_core::ice::stun_ufrag(b"not stun").is_err());
/// ```
pub fn stun_ufrag(datagram: &[u8]) -> Result<Option<&str>, StunError> {
    let message = crate::stun::StunMessage::parse(datagram)?;
    Ok(message
        .username()
        .and_then(|u| u.split_once(':'))
        .map(|(ours, _)| ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: Option<&str>) -> Vec<u8> {
        use crate::stun::{Class, Method, StunWriter};
        let mut buf = [0u8; 128];
        let mut w = StunWriter::new(&mut buf, Class::Request, Method::Binding, &[9; 12]).unwrap();
        if let Some(u) = username {
            w.username(u).unwrap();
        }
        let n = w.finish();
        buf[..n].to_vec()
    }

    #[test]
    fn stun_ufrag_is_the_receiver_part_of_the_username() {
        assert_eq!(
            stun_ufrag(&binding_request(Some("srv1:cli2"))),
            Ok(Some("srv1"))
        );
        assert_eq!(stun_ufrag(&binding_request(Some("nocolon"))), Ok(None));
        assert_eq!(stun_ufrag(&binding_request(None)), Ok(None));
        let mut bad = binding_request(Some("srv1:cli2"));
        bad[4] ^= 0xff; // magic cookie
        assert_eq!(stun_ufrag(&bad), Err(StunError::BadMagicCookie));
        assert_eq!(stun_ufrag(&[0u8; 4]), Err(StunError::Truncated));
    }

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
