//! Helpers shared by the browser end-to-end tests: child processes that are reaped,
//! the `rtc-engine` binary, ports, plain HTTP and result parsing.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// A separate `rtc-engine` process (`shards` shards, control socket in a temp dir) with
/// `rtc-demo --control` in front of it, both reaped when dropped.
pub struct DemoStack {
    pub engine: Reap,
    pub demo: Reap,
    /// The engine's control socket.
    pub sock: PathBuf,
    /// The demo's HTTP address (`ip:port`).
    pub http: String,
}

/// Starts a [`DemoStack`] and waits until the demo answers HTTP.
pub fn demo_stack(tag: &str, shards: u32) -> DemoStack {
    let tmp = std::env::temp_dir().join(format!("rtc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let sock = tmp.join("control.sock");
    let engine = Reap(
        Command::new(rtc_engine())
            .args([
                "--shards",
                &shards.to_string(),
                "--pin",
                "false",
                "--control-socket",
            ])
            .arg(&sock)
            .stdout(Stdio::null())
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
        engine,
        demo,
        sock,
        http,
    }
}

/// Runs `node <browser dir>/<script> <args>` and waits up to `limit` for the line
/// `RESULT <json>` it prints (other lines are echoed). Returns the still running node
/// process (the pages stay open until it is dropped) and the result, if one came.
pub fn node_result(script: &str, args: &[&str], limit: Duration) -> (Reap, Option<Value>) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed to run the browser tests");
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
    let deadline = Instant::now() + limit;
    let mut result = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                eprintln!("{line}");
                if let Some(json) = line.strip_prefix("RESULT ") {
                    result = Some(serde_json::from_str::<Value>(json).expect("RESULT is JSON"));
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    (Reap(child), result)
}
