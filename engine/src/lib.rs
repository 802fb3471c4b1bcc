//! The sharded, core-pinned io_uring data plane.
pub mod io;
