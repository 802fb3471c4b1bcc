//! # rtc-core
//!
//! A Sans-I/O WebRTC library. An [`Rtc`] state machine is driven entirely by its
//! caller: network input and the passage of time are *inputs*, datagrams to send and
//! timer deadlines are *outputs*. The crate never spawns threads, never performs I/O and
//! never reads the clock.
//!
//! ## The drive loop
//!
//! Every embedder runs the same loop: feed [`Input::Receive`] for each datagram that
//! arrives and [`Input::Timeout`] when the last deadline passed, then call
//! [`Rtc::poll_output`] until it returns [`Output::Timeout`], sending each
//! [`Output::Transmit`] and handling each [`Output::Event`] on the way. The example
//! connects two `Rtc`s in memory; a real program sends the transmits on its sockets and
//! sleeps until the deadline or the next datagram.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//!
//! use rtc_core::channel::ChannelConfig;
//! use rtc_core::ice::Candidate;
//! use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut now = Instant::now();
//! let addrs: [SocketAddr; 2] = ["10.0.0.1:5000".parse()?, "10.0.0.2:6000".parse()?];
//! let mut peers = [Rtc::new(now), Rtc::new(now)];
//! for (rtc, addr) in peers.iter_mut().zip(addrs) {
//!     rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp)?);
//! }
//!
//! // Negotiate: the first peer offers a data channel, the second answers. A real
//! // program carries `offer` and `answer` over its signalling channel.
//! let [a, b] = &mut peers;
//! let mut api = a.sdp_api();
//! api.add_channel(ChannelConfig::default())?;
//! let (offer, pending) = api.apply().expect("a data channel to offer");
//! let answer = b.sdp_api().accept_offer(offer)?;
//! a.sdp_api().accept_answer(pending, answer)?;
//!
//! // Drive both until ICE and DTLS are up. The "network" delivers instantly.
//! let mut connected = [false; 2];
//! let mut in_flight: Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
//! for _ in 0..1_000 {
//!     let mut deadline = now + Duration::from_secs(1);
//!     for (i, rtc) in peers.iter_mut().enumerate() {
//!         loop {
//!             match rtc.poll_output()? {
//!                 Output::Transmit(t) => {
//!                     // `t.contents` borrows the Rtc: send (here: copy) it before polling on.
//!                     in_flight.push((1 - i, t.source, t.destination, t.contents.to_vec()));
//!                 }
//!                 Output::Event(Event::Connected) => connected[i] = true,
//!                 Output::Event(_) => {}
//!                 Output::Timeout(t) => {
//!                     deadline = deadline.min(t);
//!                     break;
//!                 }
//!             }
//!         }
//!     }
//!     if connected == [true; 2] {
//!         break;
//!     }
//!     if in_flight.is_empty() {
//!         // Nothing to deliver: let time pass to the earliest deadline.
//!         now = now.max(deadline);
//!         for rtc in &mut peers {
//!             rtc.handle_input(Input::Timeout(now))?;
//!         }
//!     }
//!     for (to, source, destination, data) in in_flight.drain(..) {
//!         let datagram = Receive { proto: Protocol::Udp, source, destination, contents: &data };
//!         peers[to].handle_input(Input::Receive(now, datagram))?;
//!     }
//! }
//! assert_eq!(connected, [true, true]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Public surface
//!
//! - the state machine: [`Rtc`], [`RtcConfig`], [`RtcError`], [`PeerStats`], and the
//!   handles [`Writer`] (frame mode), [`StreamTx`] (RTP mode) and [`Channel`];
//! - [`io`]: what goes in ([`Input`], [`Receive`]) and comes out ([`Output`],
//!   [`Transmit`]); [`event`]: the [`Event`]s;
//! - negotiation: [`sdp_api`] (offer/answer) with the SDP model in [`sdp`], or
//!   [`direct`] (no SDP);
//! - [`media`]: [`Mid`], [`MediaKind`], [`Codec`], [`media::MediaInfo`]; [`rtp`]: the
//!   RTP packet view an SFU forwards with in RTP mode;
//! - [`ice`]: candidates, credentials, connection state, ICE-TCP framing, and the STUN
//!   peek a server uses to demultiplex sessions ([`ice::stun_ufrag`]); [`dtls`]:
//!   certificates and fingerprints; [`channel`]: data channel configuration.
//!
//! The wire formats (STUN, DTLS records, SRTP, RTCP, SCTP, RTP payload formats, the
//! bandwidth estimators) are internal. Each parser borrows from its input and each writer
//! writes into a caller-provided buffer and returns the length.
// No unsafe code in the library; its unit tests may allow it where they must (the
// allocation-counting allocator of the hardening tests).
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]
#![deny(missing_docs)]

pub mod direct;
pub mod dtls;
pub mod error;
pub mod event;
pub mod ice;
pub mod io;
pub mod media;
pub mod pacer;
pub mod rtp;
pub mod sdp;
pub mod sdp_api;
pub mod stats;

// The wire formats are complete implementations; some of their parts (writers of
// packets we never send, accessors, statistics) are used only by the tests, benchmarks
// and fuzz targets, the last two through `_internal`.
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod demux;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod feedback;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod packet;
mod rtc;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod rtcp;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod sctp;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod srtp;
mod streams;
#[cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]
pub(crate) mod stun;

pub use event::Event;
pub use io::{Input, Output, Protocol, Receive, Transmit};
pub use media::{Codec, MediaKind, Mid, Rid};
pub use rtc::UnverifiedRtp;
pub use rtc::{
    Channel, PeerStats, PlainSrtp, Rtc, RtcConfig, RtcError, StreamTx, Writer,
    free_packet_buffer_bytes,
};

/// Data channels: how a channel is configured and identified. Channels are added with
/// [`sdp_api::SdpApi::add_channel`] or [`direct::DirectApi::create_data_channel`] and
/// used through [`Rtc::channel`].
pub mod channel {
    pub use crate::sctp::{ChannelConfig, ChannelId, Reliability};
}

/// The wire-level modules, for the crate's benchmarks and fuzz targets only.
///
/// Compiled only with the `_internal` cargo feature. Nothing here is part of the public
/// API: it changes without notice.
#[cfg(feature = "_internal")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod _internal {
    pub mod demux {
        pub use crate::demux::*;
    }
    pub mod feedback {
        pub use crate::feedback::*;
    }
    pub mod packet {
        pub use crate::packet::*;
    }
    pub mod rtcp {
        pub use crate::rtcp::*;
    }
    pub mod sctp {
        pub use crate::sctp::*;
    }
    pub mod srtp {
        pub use crate::srtp::*;
    }
    pub mod stun {
        pub use crate::stun::*;
    }
}
