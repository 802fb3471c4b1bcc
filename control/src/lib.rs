//! The control plane: protocol types, the Unix-socket server half and a Rust client.
//!
//! - [`protocol`]: requests ([`Request`]), responses ([`Response`]), events ([`Event`])
//!   and the newline-delimited JSON framing.
//! - [`server`]: [`ControlServer`] serving a [`ControlHandler`] (implemented by the
//!   engine) and an [`EventHub`] to publish events.
//! - [`client`]: the blocking [`ControlClient`].
//!
//! The wire protocol is described in `docs/control-protocol.md`.
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod client;
pub mod error;
pub mod hist;
pub mod protocol;
pub mod server;
mod sys;
pub mod types;

pub use client::{ClientError, ControlClient, ControlRequester, EventStream, ProtocolViolation};
pub use error::{ControlError, ErrorCode};
pub use hist::{HistogramSummary, LatencyBuckets, summarize};
pub use protocol::*;
pub use server::{
    ClientId, ControlHandler, ControlServer, EventHub, EventSink, ServerConfig, check_socket_dir,
};
pub use types::*;
