//! Shutdown signals for the daemon, taken synchronously.
//!
//! [`ShutdownSignals::block`] blocks `SIGINT` and `SIGTERM` in the calling thread; threads
//! spawned afterwards (the shards) inherit the mask, so the signals stay pending until the
//! main thread collects them with [`ShutdownSignals::wait`] (`sigtimedwait`). No handler
//! runs, so nothing has to be async-signal-safe.

use std::io;
use std::time::Duration;

/// The blocked set `{SIGINT, SIGTERM}`.
pub struct ShutdownSignals {
    set: libc::sigset_t,
}

impl std::fmt::Debug for ShutdownSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownSignals(SIGINT, SIGTERM)")
    }
}

impl ShutdownSignals {
    /// Blocks `SIGINT` and `SIGTERM` in the calling thread. Call it before spawning any
    /// thread that must not receive them.
    ///
    /// # Errors
    ///
    /// The `sigprocmask`-family call's error.
    pub fn block() -> io::Result<ShutdownSignals> {
        // SAFETY: sigset_t is plain data; an all-zero value is a valid argument for
        // sigemptyset, which initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live, exclusively borrowed sigset_t; the signal numbers are valid.
        let r = unsafe {
            libc::sigemptyset(&mut set)
                | libc::sigaddset(&mut set, libc::SIGINT)
                | libc::sigaddset(&mut set, libc::SIGTERM)
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(ShutdownSignals { set })
    }

    /// Waits up to `timeout` for `SIGINT` or `SIGTERM`; returns the signal number, or
    /// `None` on timeout (or an unrelated interruption).
    ///
    /// # Errors
    ///
    /// The `sigtimedwait` error (other than a timeout or an interruption).
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<i32>> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `self.set` is an initialised sigset_t, `ts` a live timespec; a null
        // siginfo pointer is allowed.
        let r = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        if r >= 0 {
            return Ok(Some(r));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_signal_is_collected() {
        // Run in a fresh thread so the mask change does not leak into the test harness.
        std::thread::spawn(|| {
            let s = ShutdownSignals::block().unwrap();
            assert_eq!(s.wait(Duration::from_millis(10)).unwrap(), None);
            // SAFETY: raising a signal that is blocked in this thread only marks it pending
            // for this thread.
            let r = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGTERM) };
            assert_eq!(r, 0);
            assert_eq!(s.wait(Duration::from_secs(1)).unwrap(), Some(libc::SIGTERM));
        })
        .join()
        .unwrap();
    }
}
