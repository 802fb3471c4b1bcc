//! CPU time of the calling thread and of the process (for per-packet cost figures).

use std::time::Duration;

/// CPU time (user + system) consumed by the calling thread
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`); zero if the clock is unavailable.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the call fills in.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// CPU time (user + system) consumed by the whole process (`getrusage(RUSAGE_SELF)`);
/// zero if the call fails.
pub fn process_cpu_time() -> Duration {
    // SAFETY: rusage is plain data; all-zero is a valid value for the call to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live rusage the call fills in.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_usec).unwrap_or(0).saturating_mul(1000),
        )
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clocks_advance() {
        let (t0, p0) = (thread_cpu_time(), process_cpu_time());
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(thread_cpu_time() > t0);
        assert!(process_cpu_time() >= p0);
        assert!(process_cpu_time() >= thread_cpu_time());
    }
}
