//! The inputs an [`Rtc`](crate::Rtc) takes and the outputs it produces.

use std::net::SocketAddr;
use std::time::Instant;

use crate::event::Event;
pub use crate::ice::Protocol;

/// A datagram (or, for TCP candidates, one RFC 4571 frame) received from the network.
#[derive(Debug, Clone, Copy)]
pub struct Receive<'a> {
    /// Transport it arrived on.
    pub proto: Protocol,
    /// Remote address it came from.
    pub source: SocketAddr,
    /// Local address it arrived at (the address of a local candidate).
    pub destination: SocketAddr,
    /// The datagram bytes. The `Rtc` copies what it keeps.
    pub contents: &'a [u8],
}

/// Input to [`Rtc::handle_input`](crate::Rtc::handle_input).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Time has passed (at least to this instant).
    Timeout(Instant),
    /// A datagram arrived at this instant.
    Receive(Instant, Receive<'a>),
    /// A datagram read at `now` that reached the host earlier, at `arrival` (e.g. the
    /// kernel's receive timestamp, `SO_TIMESTAMPNS`, of a datagram a busy server read
    /// late). Handled as [`Input::Receive`] at `now`; `arrival` is used where arrival
    /// time is the measure — the transport-wide congestion feedback sent back, so the
    /// sender's estimate sees the network's delay and not the reader's scheduling. An
    /// `arrival` after `now` counts as `now`; before a previous input is fine.
    ReceiveArrived {
        /// The time now (as for [`Input::Receive`]: never earlier than a previous input).
        now: Instant,
        /// When the datagram arrived.
        arrival: Instant,
        /// The datagram.
        receive: Receive<'a>,
    },
}

/// A datagram the caller must send.
///
/// `contents` borrows a buffer inside the `Rtc`; it is valid until the next call on
/// the `Rtc`, so send (or copy) it before polling again. Transmits reuse internal
/// buffers: steady-state media sending does not allocate.
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    /// Transport to send it on.
    pub proto: Protocol,
    /// Local address to send from (the base of the selected local candidate).
    pub source: SocketAddr,
    /// Remote address to send to.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: &'a [u8],
}

/// Output of [`Rtc::poll_output`](crate::Rtc::poll_output).
#[derive(Debug)]
pub enum Output<'a> {
    /// Send this datagram.
    Transmit(Transmit<'a>),
    /// Something happened.
    Event(Event<'a>),
    /// Nothing more to do until this instant (or until new input arrives).
    Timeout(Instant),
}
