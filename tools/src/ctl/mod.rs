//! Helpers for `rtcctl`: human-readable rendering of responses and events, the `top`
//! frame computation, and terminal raw mode.

pub mod human;
pub mod term;
pub mod top;

use std::path::PathBuf;

/// The default control socket: `$XDG_RUNTIME_DIR/rtc-engine/control.sock` when
/// `XDG_RUNTIME_DIR` is set, else `/run/rtc-engine/control.sock`.
pub fn default_socket() -> PathBuf {
    default_socket_from(std::env::var_os("XDG_RUNTIME_DIR"))
}

/// [`default_socket`] with the runtime dir given (for tests).
pub fn default_socket_from(xdg_runtime_dir: Option<std::ffi::OsString>) -> PathBuf {
    match xdg_runtime_dir {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("rtc-engine").join("control.sock"),
        _ => PathBuf::from("/run/rtc-engine/control.sock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_defaults() {
        assert_eq!(
            default_socket_from(Some("/run/user/1000".into())),
            PathBuf::from("/run/user/1000/rtc-engine/control.sock")
        );
        assert_eq!(
            default_socket_from(None),
            PathBuf::from("/run/rtc-engine/control.sock")
        );
        assert_eq!(
            default_socket_from(Some("".into())),
            PathBuf::from("/run/rtc-engine/control.sock")
        );
    }
}
