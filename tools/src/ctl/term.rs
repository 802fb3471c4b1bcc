//! Terminal raw mode for `rtcctl top`: keys arrive unbuffered, unechoed, and Ctrl-C
//! arrives as a byte (so the terminal is always restored on exit).

use std::os::fd::RawFd;
use std::time::Duration;

const STDIN: RawFd = 0;

/// Raw mode on stdin, restored on drop.
pub struct RawMode {
    orig: libc::termios,
}

impl RawMode {
    /// Enter raw mode (no canonical input, no echo, no signal keys). `None` when stdin
    /// is not a terminal.
    pub fn enable() -> Option<RawMode> {
        // SAFETY: isatty takes no pointers.
        if unsafe { libc::isatty(STDIN) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; an all-zero value is valid and tcgetattr
        // overwrites it.
        let mut orig: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: orig is a live termios.
        if unsafe { libc::tcgetattr(STDIN, &mut orig) } != 0 {
            return None;
        }
        let mut raw = orig;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: raw is a live termios.
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { orig })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: orig is the termios read in enable().
        unsafe {
            libc::tcsetattr(STDIN, libc::TCSANOW, &self.orig);
        }
    }
}

/// What [`wait_key`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// No key within the timeout.
    None,
    /// A byte.
    Byte(u8),
    /// Stdin is closed (stop polling it).
    Eof,
}

/// Wait up to `timeout` for a byte on stdin.
pub fn wait_key(timeout: Duration) -> Key {
    let mut pfd = libc::pollfd {
        fd: STDIN,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: pfd is one live pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n <= 0 {
        return Key::None;
    }
    let mut b = [0u8; 1];
    // SAFETY: reads at most 1 byte into a live 1-byte buffer.
    let r = unsafe { libc::read(STDIN, b.as_mut_ptr().cast(), 1) };
    match r {
        1 => Key::Byte(b[0]),
        0 => Key::Eof,
        _ => Key::None,
    }
}
