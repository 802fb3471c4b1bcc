//! Building blocks of the simulcast SFU: one packet cache per publisher layer, codec
//! payload facts, and the per-subscriber downtrack that turns up to three simulcast layers
//! into one continuous stream.
//!
//! These are pure data structures (no I/O, no clock reads: callers pass `now`); the shard
//! wires them into its forwarding path.

pub mod cache;
pub mod codec;
pub mod downtrack;
// Written in parallel on another branch (task D2); the lead enables them when merging:
// pub mod allocator;
// pub mod speaker;

pub use cache::{CacheRefused, PacketCache, PacketMeta};
pub use codec::{H264Desc, PayloadFacts, VideoCodec, Vp8Desc, Vp8Rewrite, Vp9Desc};
pub use downtrack::{DownTrack, DropReason, NackEntry, SrClock, Verdict};
