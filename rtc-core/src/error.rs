//! Every public error type of the crate, in one place.
//!
//! Each layer has its own error enum, defined next to the code that returns it;
//! this module re-exports them all. The [`RtcError`] of the `Rtc` API wraps the
//! lower layers' errors, and [`std::error::Error::source`] leads from it to the
//! layer that refused. All enums are `#[non_exhaustive]`.

pub use crate::dtls::DtlsError;
pub use crate::ice::IceError;
pub use crate::ice::framing::FramingError;
pub use crate::packet::{DepackError, PacketError};
pub use crate::rtc::{RtcError, WriteError};
pub use crate::rtcp::RtcpError;
pub use crate::rtp::RtpError;
pub use crate::sctp::SctpError;
pub use crate::sctp::dcep::DcepError;
pub use crate::sdp::codec::ProfileLevelIdError;
pub use crate::sdp::jsep::JsepError;
pub use crate::sdp::{SdpError, SdpErrorKind};
pub use crate::srtp::SrtpError;
pub use crate::stun::StunError;
