//! The control plane: protocol types, the Unix-socket server half and a Rust client.
#![deny(missing_docs)]
