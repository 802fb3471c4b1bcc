//! # rtc-core
//!
//! A Sans-I/O WebRTC library. An [`Rtc`]-style state machine is driven entirely by
//! its caller: network input and the passage of time are *inputs*, datagrams to send
//! and timer deadlines are *outputs*. The crate never spawns threads, never performs
//! I/O and never reads the clock.
//!
//! The wire formats live in one module per concern; each parser borrows from its
//! input and each writer writes into a caller-provided buffer and returns the length.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demux;
pub mod direct;
pub mod dtls;
pub mod error;
pub mod event;
pub mod feedback;
pub mod ice;
pub mod io;
pub mod media;
pub mod pacer;
mod rtc;
pub mod rtcp;
pub mod rtp;
pub mod sctp;
pub mod sdp_api;
pub mod srtp;
pub mod stats;
mod streams;
pub mod stun;

pub use event::Event;
pub use io::{Input, Output, Protocol, Receive, Transmit};
pub use rtc::{Channel, PeerStats, Rtc, RtcConfig, RtcError, StreamTx, Writer};
pub mod packet;
pub mod sdp;
