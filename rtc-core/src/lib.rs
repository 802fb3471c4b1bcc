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
pub mod packet;
