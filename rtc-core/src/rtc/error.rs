//! The error types of the [`Rtc`](super::Rtc) API.

use crate::dtls::DtlsError;
use crate::ice::IceError;
use crate::media::Mid;
use crate::packet::PacketError;
use crate::rtcp::RtcpError;
use crate::rtp::RtpError;
use crate::sctp::SctpError;
use crate::sdp::jsep::JsepError;
use crate::sdp::{FragmentError, SdpError};
use crate::srtp::SrtpError;

/// Errors from the `Rtc` API (bad input or misuse; never broken invariants).
///
/// [`std::error::Error::source`] leads to the error of the layer that refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// The `Rtc` is closed or failed.
    #[error("the Rtc is no longer alive")]
    NotAlive,
    /// Time went backwards.
    #[error("time went backwards")]
    TimeWentBackwards,
    /// A DTLS-level error.
    #[error(transparent)]
    Dtls(#[from] DtlsError),
    /// An SDP offer or answer could not be negotiated as a whole.
    #[error("sdp: {0}")]
    Sdp(#[from] JsepError),
    /// An SDP text could not be parsed (before any negotiation).
    #[error("sdp parse: {0}")]
    SdpParse(#[from] SdpError),
    /// A trickle ICE fragment (`application/trickle-ice-sdpfrag`) could not be parsed.
    #[error("sdpfrag parse: {0}")]
    SdpFragment(#[from] FragmentError),
    /// An ICE candidate was refused (bad address or protocol).
    #[error("ice candidate: {0}")]
    Candidate(#[from] IceError),
    /// One media section of an SDP offer or answer could not be negotiated.
    #[error("sdp: mid {mid:?}: {source}")]
    SdpSection {
        /// The section's mid, as it appeared in the SDP.
        mid: Option<String>,
        /// Why it could not be negotiated.
        #[source]
        source: JsepError,
    },
    /// An unknown media section.
    #[error("unknown mid {0}")]
    UnknownMid(Mid),
    /// A media write was refused.
    #[error("write: {0}")]
    Write(#[from] WriteError),
    /// The operation does not fit the current state.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// SRTP keys given for plain RTP mode were refused (wrong length for the profile).
    #[error("srtp keys: {0}")]
    SrtpKeys(#[source] SrtpError),
    /// A data-channel operation failed.
    #[error("data channel: {0}")]
    Channel(#[from] SctpError),
}

/// Why a media or RTCP write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The payload type is not negotiated on the media section.
    #[error("payload type {pt} not negotiated for {mid}")]
    UnknownPayloadType {
        /// The payload type written with.
        pt: u8,
        /// The media section.
        mid: Mid,
    },
    /// The payload type's codec has no packetizer (frame mode).
    #[error("no packetizer for payload type {0}")]
    NoPacketizer(u8),
    /// The packet does not fit a datagram with room for the SRTP tag.
    #[error("packet too large")]
    TooLarge,
    /// The frame could not be packetized.
    #[error("packetize: {0}")]
    Packetize(#[from] PacketError),
    /// The RTP header could not be written (e.g. an extension value too long).
    #[error("rtp: {0}")]
    Rtp(#[from] RtpError),
    /// The RTCP packet could not be written.
    #[error("rtcp: {0}")]
    Rtcp(#[from] RtcpError),
    /// SRTP/SRTCP protection failed.
    #[error("srtp: {0}")]
    Srtp(#[from] SrtpError),
}
