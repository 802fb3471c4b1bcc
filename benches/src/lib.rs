//! Benchmarks: criterion micro benches (see `benches/`) and the end-to-end harness
//! `rtc-bench` (see `README.md` and `docs/benchmarks.md`).
//!
//! The harness runs scenarios against real processes on loopback: a raw UDP reflector
//! (the machine's floor, [`floor`]), and `rtc-engine` driven by `rtc-loadgen`
//! ([`scenario`]). Figures come from the engine's control socket (`engine.stats`
//! deltas) and `/proc` ([`procfs`]); [`report`] renders the table, JSON and SVG.
//! [`saturate`] raises the offered load until the engine stops keeping up (the
//! headline packets/s per core). [`relay`] splits a fan-out over two engines joined by
//! a relay and prices the relay hop against one engine. [`churn`] is the churn soak: sessions joining and leaving for minutes, then every
//! per-shard table and the RSS back at their baseline.

pub mod child;
pub mod churn;
pub mod floor;
pub mod pair;
pub mod procfs;
pub mod relay;
pub mod report;
pub mod saturate;
pub mod scenario;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An I/O error (spawning, pipes, sockets).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A child process misbehaved (exited early, timed out, printed garbage).
    #[error("{0}")]
    Child(String),
    /// A measurement could not be taken.
    #[error("{0}")]
    Measure(String),
}

impl BenchError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}
