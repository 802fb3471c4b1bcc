//! Browser test of WHIP trickle ICE and ICE restart through `PATCH` (RFC 9725 §4.3):
//! `rtc-engine` and `rtc-demo --control` run as separate processes (so the demo's
//! `PATCH` goes over the control socket's `session.ice`), and a headless Chromium page
//! (driven by `tools/browser/demo-ice-restart.js`) publishes via WHIP with an offer
//! that carries no candidate, trickling every candidate afterwards by `PATCH`; a WHEP
//! viewer in the same page decodes the video; the publisher then restarts ICE twice
//! through `PATCH` (new credentials, `If-Match: *`) and must reconnect with the new
//! credentials while the viewer's decoded frame count keeps rising.
//!
//! Fails (never skips) when Chromium or node cannot run: `scripts/test-all.sh`
//! installs Chromium and the Node packages first.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod browser_common;
use browser_common::*;

#[test]
fn chromium_restarts_ice_through_whip_patch_and_keeps_decoding() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
        dir.display()
    );
    let tmp = std::env::temp_dir().join(format!("rtc-demo-ice-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let sock = tmp.join("control.sock");
    let _engine = Reap(
        Command::new(rtc_engine())
            .args(["--shards", "2", "--pin", "false", "--control-socket"])
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
    let _demo = Reap(
        Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
            .arg("--control")
            .arg(&sock)
            .args(["--http", &http])
            // Advertised only (RFC 9725 Link header); the page does not use it, so
            // nothing leaves loopback.
            .args(["--ice-server", "stun:stun.invalid:3478"])
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
    let base = format!("http://{http}");

    let mut child = Command::new("node")
        .arg(dir.join("demo-ice-restart.js"))
        .arg(&base)
        .arg("ice")
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
    // Each browser step waits at most 20 s (event-driven polling); this bounds the
    // whole run (launch + 6 steps) with room to spare on two busy cores.
    let deadline = Instant::now() + Duration::from_secs(150);
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
    let _ = child.kill();
    let _ = child.wait();

    let r = result.expect("the browser script printed no RESULT line in time");
    assert_eq!(r["ok"], Value::Bool(true), "browser run failed: {r:#}");
    assert_eq!(
        r["link"].as_str(),
        Some("<stun:stun.invalid:3478>; rel=\"ice-server\""),
        "{r:#}"
    );
    // Candidates went out only by PATCH (the offer had none), all answered 204, the
    // last one with a=end-of-candidates.
    let trickle = r["trickle"].as_array().expect("trickle list");
    assert!(trickle.iter().any(|p| num(p, &["candidates"]) > 0), "{r:#}");
    assert!(trickle.iter().all(|p| num(p, &["status"]) == 204), "{r:#}");
    assert!(
        trickle.iter().any(|p| p["eoc"] == Value::Bool(true)),
        "{r:#}"
    );
    assert!(num(&r, &["framesBefore"]) > 30);
    let restarts = r["afterRestart"].as_array().expect("restart list");
    assert_eq!(restarts.len(), 2, "{r:#}");
    let mut frames = num(&r, &["framesBefore"]);
    let mut tags = vec![];
    for x in restarts {
        assert_eq!(num(x, &["status"]), 200, "{x:#}");
        assert_eq!(
            x["type"].as_str(),
            Some("application/trickle-ice-sdpfrag"),
            "{x:#}"
        );
        assert_ne!(x["etag"], x["oldEtag"], "a restart gives a new ETag: {x:#}");
        tags.push(x["etag"].clone());
        assert_eq!(x["transport"]["ufrag"], x["localUfrag"], "{x:#}");
        let after = num(x, &["frames"]);
        assert!(after > frames + 30, "decoding stalled: {x:#}");
        frames = after;
    }
    assert_ne!(tags[0], tags[1]);
    // Candidates of the restarted ICE sessions were trickled with the new ETags too.
    let all = r["patchesAfter"].as_array().expect("patch list");
    assert!(all.iter().all(|p| num(p, &["status"]) == 204), "{r:#}");
    assert!(
        all.len() > trickle.len(),
        "no trickle after the restarts: {r:#}"
    );
}
