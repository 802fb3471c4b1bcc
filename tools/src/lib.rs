//! Shared helpers for the command-line tools (rtcctl, rtc-loadgen, rtc-demo).
pub mod ctl;
pub mod demo;
pub mod loadgen;
