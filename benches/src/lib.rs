//! Benchmarks: criterion micro benches (see `benches/`) and end-to-end harnesses.
