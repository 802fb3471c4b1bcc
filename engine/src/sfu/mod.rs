//! SFU building blocks that are pure logic: no I/O, no clock reads (every `now` is an
//! input), no allocation on the per-packet paths.
//!
//! - [`rate`]: a sliding-window bitrate meter per layer.
//! - [`allocator`]: the per-subscriber bandwidth allocator (which layer each downtrack
//!   forwards under the subscriber's send-side estimate).
//! - [`speaker`]: active-speaker detection from RFC 6464 audio levels.

// The shard wires these modules in at integration; until then nothing outside the tests
// calls them, which is why dead code is allowed here.
#[allow(dead_code)]
pub(crate) mod allocator;
#[allow(dead_code)]
pub(crate) mod rate;
#[allow(dead_code)]
pub(crate) mod speaker;
