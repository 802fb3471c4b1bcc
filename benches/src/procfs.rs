//! Per-process CPU time and resident memory from `/proc/PID/stat` and `/proc/PID/status`.

use std::time::Duration;

/// Clock ticks per second used by `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 when
/// the call fails).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Parses the text of `/proc/PID/stat` into user + system CPU time (all threads).
pub fn parse_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = rest.split_whitespace();
    // After ')': state(3) ppid(4) ... utime is field 14, stime 15 (1-based, whole line).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_sec.max(1);
    Some(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// Parses `VmRSS` (KiB) out of the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of process `pid` (all its live threads); `None` once it is gone.
///
/// Nanosecond precision from `/proc/PID/task/*/schedstat` (time on CPU, user + system,
/// per thread) when available, else `utime + stime` from `/proc/PID/stat` (clock ticks,
/// usually 10 ms: too coarse for short windows at low packet rates).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    schedstat_cpu(pid).or_else(|| stat_cpu(pid))
}

/// `utime + stime` of process `pid` from `/proc/PID/stat`.
pub fn stat_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&s, clock_ticks())
}

/// Sum of the first field (ns on CPU) of every `/proc/PID/task/*/schedstat`.
pub fn schedstat_cpu(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    let mut any = false;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            total = total.saturating_add(ns);
            any = true;
        }
    }
    any.then(|| Duration::from_nanos(total))
}

/// Resident set size of process `pid` in KiB; `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss_kib(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let s = "1234 (rtc engine (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(parse_stat_cpu(s, 100), Some(Duration::from_millis(3800)));
        assert_eq!(parse_stat_cpu("garbage", 100), None);
    }

    #[test]
    fn status_rss() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_rss_kib(s), Some(2048));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|r| r > 0));
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time(pid).is_some_and(|c| c > Duration::ZERO));
        assert!(stat_cpu(pid).is_some_and(|c| c > Duration::ZERO));
    }

    #[test]
    fn both_clocks_see_the_same_work_of_a_single_threaded_process() {
        // Not this test process: its `stat` also counts the threads other tests ran and
        // ended (which `task/*/schedstat` no longer lists), so the two clocks part by
        // whatever those used. A busy single-threaded child has no such threads.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        // Until it has run a while (ticks are 10 ms: a short run reads as 0).
        while stat_cpu(pid).is_none_or(|c| c < Duration::from_millis(200))
            && t.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (a, b) = (schedstat_cpu(pid), stat_cpu(pid));
        let _ = child.kill();
        let _ = child.wait();
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(b >= Duration::from_millis(200), "{b:?}");
        // Both clocks see the same work (ticks are coarse: allow slack).
        assert!(
            a + Duration::from_millis(100) > b && b + Duration::from_millis(100) > a,
            "schedstat {a:?}, stat {b:?}"
        );
    }
}
