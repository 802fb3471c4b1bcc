//! Building blocks of the simulcast SFU: one packet cache per publisher layer, codec
//! payload facts, the per-subscriber downtrack that turns up to three simulcast layers
//! into one continuous stream, the per-subscriber bandwidth allocator, per-layer bitrate
//! meters and active-speaker detection.
//!
//! These are pure data structures (no I/O, no clock reads: callers pass `now`; no
//! allocation on the per-packet paths); the shard wires them into its forwarding path.
//!
//! - [`cache`]: a fixed ring of packet slots per publisher layer.
//! - [`codec`]: VP8/VP9/H.264 payload facts (keyframe, temporal id, layer sync) and the
//!   VP8 picture-id rewrite.
//! - [`downtrack`]: one subscriber's view of one publisher track.
//! - [`rate`]: a sliding-window bitrate meter per layer.
//! - [`allocator`]: which layer each downtrack forwards under the subscriber's estimate.
//! - [`speaker`]: active-speaker detection from RFC 6464 audio levels.

pub mod allocator;
pub mod cache;
pub mod codec;
pub mod downtrack;
pub mod rate;
pub mod speaker;

pub use cache::{CacheRefused, PacketCache, PacketMeta};
pub use codec::{H264Desc, PayloadFacts, VideoCodec, Vp8Desc, Vp8Rewrite, Vp9Desc};
pub use downtrack::{DownTrack, DropReason, NackEntry, SrClock, Verdict};
