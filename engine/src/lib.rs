//! The sharded, core-pinned io_uring data plane.
//!
//! [`Engine::start`] opens one UDP socket (IPv4 and optionally IPv6) per shard and spawns
//! one pinned thread per shard. A shard owns its sessions (one [`rtc_core::Rtc`] each, in
//! ICE-lite RTP mode), demultiplexes datagrams by remote address or, for the first STUN
//! request, by ICE ufrag, drives a timer heap of the sessions' timeouts and forwards RTP
//! between sessions (SFU). The [`EngineHandle`] is the in-process control API.
//!
//! # Embedding
//!
//! Start the shards, answer a browser's offer, and forward one session's media to another:
//!
//! ```no_run
//! use engine::{Engine, EngineConfig, Placement, SessionSetup};
//!
//! # fn offers() -> (String, String) { (String::new(), String::new()) }
//! # fn main() -> Result<(), engine::EngineError> {
//! let (publisher_offer, viewer_offer) = offers(); // SDP from your signalling
//! let engine = Engine::start(EngineConfig { shards: Some(2), ..EngineConfig::default() })?;
//! let publisher = engine.create_session(SessionSetup::Offer(publisher_offer), Placement::Auto)?;
//! let viewer = engine.create_session(SessionSetup::Offer(viewer_offer), Placement::Auto)?;
//! // Send `publisher.answer` and `viewer.answer` back to the peers, then:
//! let room = engine.create_room("demo")?;
//! engine.publish(room, publisher.id)?;
//! engine.subscribe(room, viewer.id, publisher.id)?;
//! # engine.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! The `rtc-engine` daemon (package `engine/daemon`) wraps this behind the control socket
//! ([`control::EngineControl`]).
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod config;
pub mod control;
mod engine;
pub mod forward;
pub mod io;
pub mod sfu;
mod shard;

pub use api::RelayDownReason;
pub use api::{
    ChannelTarget, CloseReason, ConfigError, DirectParams, DropCounters, EngineError, EngineEvent,
    EngineStats, LegInfo, LegLayers, MediaDesc, Placement, Renegotiation, RoomId, RoomInfo,
    SessionId, SessionInfo, SessionSetup, SessionSnapshot, ShardStats, TrackCounters,
};
pub use config::EngineConfig;
pub use engine::{
    Engine, EngineEvents, EngineHandle, PlainEgress, PlainIngest, PlainParams, PlainTrack,
    RelayAnswer, RelayInvite, RelayLayer, RelayParams, RelayStats, RelayTrack,
};
pub use sfu::allocator::Preference;
