//! RTP feedback machinery as Sans-I/O units, one instance per stream.
//!
//! Each unit is a plain struct driven by method calls; time is always an `Instant`
//! parameter, nothing reads a clock and nothing performs I/O.
//!
//! | Unit | Role |
//! |------|------|
//! | [`ReceiveRegister`] | RFC 3550 receive statistics for one incoming SSRC → report block |
//! | [`SenderRegister`] | SR bookkeeping for one outgoing SSRC and RTT from report blocks |
//! | [`NtpClock`] | maps `Instant` to 64-bit NTP time from one caller-supplied pair |
//! | [`NackRegister`] | loss detection and NACK scheduling for one incoming SSRC |
//! | [`RtxSendBuffer`] | history of sent packets and RFC 4588 RTX packet building |
//! | [`ResendLimiter`] | de-duplication and budgets for answering NACKs |
//! | [`TwccSendRegister`] | transport-wide sequence numbers and feedback matching |
//! | [`TwccRecvRegister`] | transport-wide feedback generation |
//! | [`Bwe`] | delay- and loss-based send bandwidth estimation from TWCC results |
//! | [`RateMeter`] | bitrate over a sliding window without allocation |
//!
//! Sequence numbers handed to these units are *extended* (64-bit, see
//! [`crate::rtp::SeqUnwrapper`]) unless a method says otherwise.

mod bwe;
mod nack;
mod rate;
mod receive;
mod resend;
mod rtx;
mod sender;
mod twcc;

pub use bwe::{BwUsage, Bwe, BweConfig, DelayBasedBwe, LossBasedBwe};
pub use nack::{NackConfig, NackRegister, NackStats};
pub use rate::RateMeter;
pub use receive::{ReceiveRegister, ReceiveStats};
pub use resend::{Admission, MIN_NACK_REPEAT, ResendLimiter, ResendStats};
pub use rtx::{RtxParams, RtxSendBuffer, RtxStats, write_rtx};
pub use sender::{NTP_UNIX_OFFSET_SECS, NtpClock, SenderRegister, ntp_middle, system_time_to_ntp};
pub use twcc::{TwccRecvRegister, TwccResult, TwccResults, TwccSendRegister};

use std::time::{Duration, Instant};

/// Microseconds in `d`, saturating at `u64::MAX`.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds from `epoch` to `now` (0 if `now` is earlier).
fn since_us(epoch: Instant, now: Instant) -> u64 {
    micros(now.saturating_duration_since(epoch))
}

/// `d` in 1/65536 s units (the RTCP "compact NTP" unit), saturating at `u32::MAX`.
fn to_compact(d: Duration) -> u32 {
    let v = d.as_nanos().saturating_mul(65_536) / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A value in 1/65536 s units as a `Duration`.
fn from_compact(v: u32) -> Duration {
    Duration::from_nanos(u64::from(v) * 1_000_000_000 / 65_536)
}

#[cfg(test)]
mod tests;
