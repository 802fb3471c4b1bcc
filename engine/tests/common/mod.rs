//! The shared test peers now live in the dev-only `test-support` crate.
pub use test_support::*;
