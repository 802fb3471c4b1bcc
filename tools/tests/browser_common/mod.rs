//! Helpers shared by the browser end-to-end tests: child processes that are reaped,
//! the `rtc-engine` binary, an engine + demo pair, the node driver, ports, plain HTTP
//! and result parsing.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use control::{ControlClient, Request, Response};
use serde_json::Value;

/// Kills a child process when dropped (also when the test panics).
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rtc-engine` from the same target directory as this test (cargo builds every
/// workspace binary for `cargo test --workspace --all-targets`; otherwise build it).
pub fn rtc_engine() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/rtc-engine
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("rtc-engine");
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "rtc-engine", "--bin", "rtc-engine"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok && bin.exists(), "could not build {}", bin.display());
    }
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A fresh scratch directory for one test (`<tmp>/rtc-demo-<tag>-<pid>`) and the path of
/// the control socket inside it (removed if a previous run left it).
pub fn scratch_dir(tag: &str) -> (PathBuf, PathBuf) {
    let tmp = std::env::temp_dir().join(format!("rtc-demo-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let sock = tmp.join("control.sock");
    let _ = std::fs::remove_file(&sock);
    (tmp, sock)
}

/// `unshare -n bash -c script` (a fresh network namespace) with the paths the demo
/// scripts use: `$ENGINE`, `$DEMO`, `$SOCK` (the control socket) and `$JS` (the
/// browser script `js` under `tools/browser`).
pub fn in_fresh_netns(script: &str, sock: &Path, js: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "bash", "-c", script])
        .env("ENGINE", rtc_engine())
        .env("DEMO", env!("CARGO_BIN_EXE_rtc-demo"))
        .env("SOCK", sock)
        .env("JS", browser_dir().join(js));
    cmd
}

pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

pub fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .unwrap_or_else(|| panic!("no {path:?} in result: {v}"));
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in result: {v}"))
}

/// `rtc-engine` and `rtc-demo --control` as separate processes, both answering: the
/// engine's control socket exists and the demo serves `GET /rooms`. Dropping it stops
/// the demo, then the engine.
pub struct DemoStack {
    /// The engine's control socket.
    pub sock: PathBuf,
    /// The demo's HTTP address (`127.0.0.1:port`).
    pub http: String,
    _demo: Reap,
    _engine: Reap,
}

impl DemoStack {
    /// Starts both: `engine_args` go to `rtc-engine` (its control socket is added),
    /// `demo_args` to `rtc-demo` (`--control` and `--http` are added). `tag` names the
    /// temporary directory of the socket.
    pub fn start(tag: &str, engine_args: &[&str], demo_args: &[&str]) -> DemoStack {
        let tmp = std::env::temp_dir().join(format!("rtc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("temp dir");
        let sock = tmp.join("control.sock");
        let _ = std::fs::remove_file(&sock);
        let engine = Reap(
            Command::new(rtc_engine())
                .args(engine_args)
                .arg("--control-socket")
                .arg(&sock)
                // The engine logs to stdout: shown when the test runs with RUST_LOG
                // set (e.g. `RUST_LOG=info,engine::shard::drive=debug` for the
                // subscribers' bandwidth estimates), else dropped.
                .stdout(if std::env::var_os("RUST_LOG").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .stderr(Stdio::inherit())
                .spawn()
                .expect("rtc-engine starts"),
        );
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "rtc-engine never created its control socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let http = format!("127.0.0.1:{}", free_port());
        let demo = Reap(
            Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
                .arg("--control")
                .arg(&sock)
                .args(["--http", &http])
                .args(demo_args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("rtc-demo starts"),
        );
        while http_get(&http, "/rooms").is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "rtc-demo never answered HTTP"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        DemoStack {
            sock,
            http,
            _demo: demo,
            _engine: engine,
        }
    }

    /// `http://` + the demo's address.
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// One request over a new control connection; panics when it fails.
    pub fn request(&self, req: Request) -> Response {
        ControlClient::connect(&self.sock)
            .and_then(|mut c| c.request(req).map_err(std::io::Error::other))
            .expect("a control request to the engine")
    }

    /// The engine's view of every session in every room (`room.list`, then
    /// `session.stats` of each), for a failure message: the bandwidth estimate, probes
    /// and per-leg layers say why a viewer got what it got.
    #[allow(dead_code)] // not every browser test explains its failures this way
    pub fn explain_rooms(&self) -> String {
        let Ok(mut c) = ControlClient::connect(&self.sock) else {
            return "engine: control socket unreachable".into();
        };
        let rooms = match c.request(Request::RoomList) {
            Ok(Response::Rooms(r)) => r.rooms,
            other => return format!("engine: room.list answered {other:?}"),
        };
        let mut out = String::new();
        if let Ok(Response::EngineStats(e)) = c.request(Request::EngineStats) {
            for sh in &e.shards {
                let drops: Vec<_> = sh.drops.iter().filter(|(_, n)| **n > 0).collect();
                out.push_str(&format!(
                    "engine, shard {}: {} datagrams out, drops {drops:?}\n",
                    sh.head.shard.0, sh.packets_out
                ));
            }
        }
        for room in rooms {
            for session in room.sessions {
                let st = c.request(Request::SessionStats(control::SessionRef { session }));
                out.push_str(&format!("engine, room {}: {st:?}\n", room.room.0));
            }
        }
        out
    }
}

/// A browser driver script (`tools/browser/<script>`) run by node, directly or as the
/// last step of a wrapper command; killed when dropped (with its whole process group
/// when it was started in one of its own).
pub struct Driver {
    lines: mpsc::Receiver<String>,
    child: Child,
    group: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        match i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this test created for the driver.
            Ok(pid) if self.group => unsafe {
                libc::kill(-pid, libc::SIGKILL);
            },
            _ => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Runs `node tools/browser/<script> args…` with its stdout read line by line.
    pub fn start(script: &str, args: &[&str]) -> Driver {
        let mut cmd = Command::new("node");
        cmd.arg(browser_dir().join(script)).args(args);
        Driver::spawn(cmd, false)
    }

    /// Runs `cmd`, a wrapper that ends by running a driver script, with its stdout read
    /// line by line. With `group` the command is put in a process group of its own, and
    /// everything in it (engine, demo, node, Chromium) is killed when the driver drops.
    pub fn spawn(mut cmd: Command, group: bool) -> Driver {
        let dir = browser_dir();
        assert!(
            dir.join("node_modules/playwright-core").exists(),
            "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
            dir.display()
        );
        if group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (or the wrapper running it) must be installed for browser tests");
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Driver {
            lines: rx,
            child,
            group,
        }
    }

    /// The script's `RESULT {json}` line, echoing everything it prints before; panics
    /// when none comes `within` (a bound on a stuck driver, not on the media) or when
    /// the result is not `"ok": true`.
    pub fn result(&self, within: Duration) -> Value {
        self.result_explained(within, String::new)
    }

    /// [`Driver::result`], with `explain()` (e.g. the engine's view of the sessions,
    /// taken while they still run) added to the panic message of a failed run.
    pub fn result_explained(&self, within: Duration, explain: impl FnOnce() -> String) -> Value {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    eprintln!("{line}");
                    if let Some(json) = line.strip_prefix("RESULT ") {
                        let r: Value = serde_json::from_str(json).expect("RESULT is JSON");
                        if r["ok"] != Value::Bool(true) {
                            panic!("browser run failed: {r:#}\n{}", explain());
                        }
                        return r;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("the browser script printed no RESULT line in time");
    }
}
