//! The sharded, core-pinned io_uring data plane.
//!
//! [`Engine::start`] opens one UDP socket (IPv4 and optionally IPv6) per shard and spawns
//! one pinned thread per shard. A shard owns its sessions (one [`rtc_core::Rtc`] each, in
//! ICE-lite RTP mode), demultiplexes datagrams by remote address or, for the first STUN
//! request, by ICE ufrag, drives a timer heap of the sessions' timeouts and forwards RTP
//! between sessions (SFU). The [`EngineHandle`] is the in-process control API.
pub mod api;
pub mod config;
pub mod control;
mod engine;
pub mod forward;
pub mod io;
mod shard;

pub use api::{
    ChannelTarget, CloseReason, ConfigError, DirectParams, DropCounters, EngineError, EngineEvent,
    EngineStats, LegInfo, MediaDesc, Placement, RoomId, RoomInfo, SessionId, SessionInfo,
    SessionSetup, SessionSnapshot, ShardStats, TrackCounters,
};
pub use config::EngineConfig;
pub use engine::{Engine, EngineHandle};
