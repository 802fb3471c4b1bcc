//! Child processes that cannot outlive the harness: each one is killed when its handle
//! is dropped (normal exit, error or panic), gets `SIGKILL` from the kernel if the
//! harness dies (`PR_SET_PDEATHSIG`, which covers Ctrl-C), and every wait has a deadline.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::BenchError;

/// How long a child gets to exit after `SIGTERM` before `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// Stderr lines kept for error messages.
const TAIL: usize = 20;

/// A line a child printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// On stdout.
    Out(String),
    /// On stderr.
    Err(String),
}

/// A running child process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    lines: Receiver<Line>,
    tail: VecDeque<String>,
    deadline: Instant,
}

fn pump<R: Read + Send + 'static>(r: R, tx: Sender<Line>, out: bool) {
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            let msg = if out { Line::Out(l) } else { Line::Err(l) };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
}

impl Proc {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured line by line). The child
    /// may run for at most `timeout`; [`Proc::next_line`] and [`Proc::wait`] enforce it.
    pub fn spawn(name: &str, cmd: &mut Command, timeout: Duration) -> Result<Proc, BenchError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| BenchError::io(format!("spawn {name} ({:?})", cmd.get_program()), e))?;
        let (tx, rx) = mpsc::channel();
        if let Some(o) = child.stdout.take() {
            pump(o, tx.clone(), true);
        }
        if let Some(e) = child.stderr.take() {
            pump(e, tx, false);
        }
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            tail: VecDeque::new(),
            deadline: Instant::now() + timeout,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last stderr lines seen (for error messages).
    pub fn stderr_tail(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// An error that names this child and shows its last stderr lines.
    pub fn error(&self, what: &str) -> BenchError {
        BenchError::Child(format!(
            "{}: {what}\n--- last stderr lines of {} ---\n{}",
            self.name,
            self.name,
            self.stderr_tail()
        ))
    }

    /// Whether the child still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The next line, waiting until `until` (capped by the child's deadline). `Ok(None)`
    /// when both pipes are closed; an error on timeout.
    pub fn next_line(&mut self, until: Instant) -> Result<Option<Line>, BenchError> {
        let until = until.min(self.deadline);
        let wait = until.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(l) => {
                if let Line::Err(s) = &l {
                    if self.tail.len() == TAIL {
                        self.tail.pop_front();
                    }
                    self.tail.push_back(s.clone());
                }
                Ok(Some(l))
            }
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(self.error("timed out")),
        }
    }

    /// Reads lines until `f` returns `Some` (or the pipes close / time runs out).
    pub fn wait_for<T>(
        &mut self,
        until: Instant,
        mut f: impl FnMut(&Line) -> Option<T>,
    ) -> Result<T, BenchError> {
        loop {
            match self.next_line(until)? {
                Some(l) => {
                    if let Some(t) = f(&l) {
                        return Ok(t);
                    }
                }
                None => return Err(self.error("exited before it was ready")),
            }
        }
    }

    /// Waits for the child to exit by its deadline (killing it otherwise).
    pub fn wait(&mut self) -> Result<ExitStatus, BenchError> {
        let Some(c) = self.child.as_mut() else {
            return Err(BenchError::Child(format!("{}: already reaped", self.name)));
        };
        loop {
            match c.try_wait() {
                Ok(Some(s)) => {
                    self.child = None;
                    return Ok(s);
                }
                Ok(None) if Instant::now() >= self.deadline => {
                    self.kill();
                    return Err(self.error("did not exit in time (killed)"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(BenchError::io(format!("wait {}", self.name), e)),
            }
        }
    }

    /// `SIGTERM`, then `SIGKILL` after a grace period; reaps the child.
    pub fn stop(&mut self) {
        let Some(c) = self.child.as_mut() else { return };
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: plain syscall on our own child's pid (not yet reaped, so not reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + TERM_GRACE;
        while Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// `SIGKILL` and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/rtc-bench-<pid>-<tag>`.
    pub fn new(tag: &str) -> Result<TempDir, BenchError> {
        let p = std::env::temp_dir().join(format!("rtc-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| BenchError::io(format!("mkdir {p:?}"), e))?;
        Ok(TempDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_exit() {
        let mut p = Proc::spawn(
            "sh",
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        let mut got = Vec::new();
        while let Some(l) = p
            .next_line(Instant::now() + Duration::from_secs(5))
            .unwrap()
        {
            got.push(l);
        }
        got.sort_by_key(|l| matches!(l, Line::Err(_)));
        assert_eq!(got, vec![Line::Out("out".into()), Line::Err("err".into())]);
        assert!(p.wait().unwrap().success());
        assert_eq!(p.stderr_tail(), "err");
    }

    #[test]
    fn timeout_kills() {
        let mut p = Proc::spawn(
            "sleep",
            Command::new("sleep").arg("30"),
            Duration::from_millis(200),
        )
        .unwrap();
        let t = Instant::now();
        assert!(p.wait().is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!p.alive());
    }

    #[test]
    fn drop_stops() {
        let p = Proc::spawn(
            "sleep",
            Command::new("sleep").arg("30"),
            Duration::from_secs(60),
        )
        .unwrap();
        let pid = p.pid();
        drop(p);
        assert!(crate::procfs::cpu_time(pid).is_none());
    }
}
