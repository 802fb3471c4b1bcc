//! Opus RED and DTLS 1.3 with a real browser: `rtc-engine` and `rtc-demo --control` as
//! separate processes, headless Chromium (driven by `tools/browser/red-dtls.js`)
//! publishing its fake microphone over WHIP and watching it over WHEP twice — once
//! offering RED (Chromium's default), once Opus only.
//!
//! - The engine prefers RED: the WHIP and the RED viewer's answers list `red/48000/2`
//!   first, the Opus-only viewer's has no RED; both viewers decode audio. Chromium's
//!   `getStats` names the primary codec (`audio/opus`) even for RED streams, so RED
//!   shows in the bytes: the RED viewer receives about twice the payload bytes of the
//!   Opus-only one (each packet repeats the previous frame), which gets the primary
//!   frames the engine extracts.
//! - DTLS: with `--dtls auto` the engine and Chromium agree on a version and both report
//!   it (`session.stats` `dtls_version`, the browser's transport `tlsVersion`); with
//!   `--dtls 1.2` it is 1.2 on both sides.
//!
//! Fails (never skips) when Chromium or node cannot run: `scripts/test-all.sh` installs
//! them first.

use std::time::Duration;

use control::{ControlClient, Request, Response, SessionId, SessionRef};
use serde_json::Value;

mod browser_common;
use browser_common::*;

/// What one run saw: the driver's RESULT and the engine's DTLS version per session
/// (publisher, RED viewer, Opus viewer).
struct Run {
    r: Value,
    engine_dtls: Vec<Option<String>>,
}

fn run(dtls: &str) -> Run {
    let stack = DemoStack::start(
        &format!("red-dtls-{dtls}"),
        &["--shards", "1", "--pin", "false", "--dtls", dtls],
        &[],
    );
    let driver = Driver::start("red-dtls.js", &[&stack.base(), "red"]);
    // The driver's own waits end after 10 s (page load) + 20 s (audio): 60 s is a bound
    // on a stuck driver, not on the media.
    let r = driver.result(Duration::from_secs(60));
    // Ask the engine while the sessions are up.
    let mut ctl = ControlClient::connect(&stack.sock).expect("control socket");
    let engine_dtls = ["pub", "red", "plain"]
        .iter()
        .map(|k| {
            let id = num(&r, &["setup", k, "session"]);
            let resp = ctl
                .request(Request::SessionStats(SessionRef {
                    session: SessionId(id),
                }))
                .expect("session.stats");
            let Response::SessionStats(s) = resp else {
                panic!("unexpected session.stats answer: {resp:?}");
            };
            s.dtls_version
        })
        .collect();
    drop(driver);
    Run { r, engine_dtls }
}

/// The payload types of an `m=` line, in order.
fn pts(mline: &Value) -> Vec<String> {
    let s = mline
        .as_str()
        .unwrap_or_else(|| panic!("no m-line: {mline}"));
    s.split_whitespace().skip(3).map(str::to_string).collect()
}

/// The payload type of an `a=rtpmap:<pt> red/48000/2` line.
fn red_pt(rtpmap: &Value) -> String {
    let s = rtpmap
        .as_str()
        .unwrap_or_else(|| panic!("no RED rtpmap: {rtpmap}"));
    let rest = s.strip_prefix("a=rtpmap:").expect("an rtpmap line");
    rest.split_whitespace()
        .next()
        .expect("a payload type")
        .to_string()
}

/// The DTLS version the browser reports (`tlsVersion`: the record-layer version in hex;
/// FEFD is DTLS 1.2, FEFC is DTLS 1.3).
fn browser_dtls(r: &Value, pc: &str) -> &'static str {
    match r["stats"][pc]["tlsVersion"].as_str() {
        Some(v) if v.eq_ignore_ascii_case("FEFD") => "1.2",
        Some(v) if v.eq_ignore_ascii_case("FEFC") => "1.3",
        other => panic!("{pc}: unexpected tlsVersion {other:?}: {r:#}"),
    }
}

fn check_red_and_audio(run: &Run) {
    let r = &run.r;
    // The engine answers RED first to the publisher and to the viewer that offered it.
    for k in ["pub", "red"] {
        let red = red_pt(&r["setup"][k]["redRtpmap"]);
        assert_eq!(
            pts(&r["setup"][k]["mline"]).first(),
            Some(&red),
            "{k}: RED not first in the answer: {r:#}"
        );
    }
    assert_eq!(r["setup"]["red"]["offeredRed"], Value::Bool(true));
    // The Opus-only viewer gets no RED.
    assert_eq!(r["setup"]["plain"]["offeredRed"], Value::Bool(false));
    assert!(r["setup"]["plain"]["redRtpmap"].is_null(), "{r:#}");
    assert_eq!(
        r["stats"]["plain"]["mimeType"].as_str(),
        Some("audio/opus"),
        "{r:#}"
    );
    // RED on the wire: a RED payload is the primary frame plus a copy of the previous
    // one (and 5 header bytes), about twice an Opus payload; 1.5x leaves room for frames
    // of varying size and for the first packets before RED started.
    let (red_bytes, plain_bytes) = (
        num(r, &["stats", "red", "bytes"]),
        num(r, &["stats", "plain", "bytes"]),
    );
    assert!(
        red_bytes * 2 > plain_bytes * 3,
        "RED viewer {red_bytes} B vs Opus viewer {plain_bytes} B: {r:#}"
    );
    // Both viewers decode audio (the driver waited for two seconds of it): mostly real
    // samples, not concealment.
    for v in ["red", "plain"] {
        let samples = num(r, &["stats", v, "samples"]);
        let concealed = num(r, &["stats", v, "concealed"]);
        assert!(samples > 96_000, "{v}: {r:#}");
        assert!(concealed * 2 < samples, "{v}: mostly concealed: {r:#}");
    }
}

#[test]
fn chromium_negotiates_opus_red_and_dtls_version_auto() {
    let run = run("auto");
    check_red_and_audio(&run);
    // Engine and browser agree on the version, on every session.
    for (i, k) in ["pub", "red", "plain"].iter().enumerate() {
        let b = browser_dtls(&run.r, k);
        assert_eq!(run.engine_dtls[i].as_deref(), Some(b), "{k}: {:#}", run.r);
    }
    eprintln!(
        "DTLS with --dtls auto: {:?}, SRTP {:?}, bytes RED viewer {:?} / Opus viewer {:?}",
        run.engine_dtls,
        run.r["stats"]["pub"]["srtpCipher"],
        run.r["stats"]["red"]["bytes"],
        run.r["stats"]["plain"]["bytes"]
    );
}

#[test]
fn chromium_with_dtls_12_only() {
    let run = run("1.2");
    check_red_and_audio(&run);
    for (i, k) in ["pub", "red", "plain"].iter().enumerate() {
        assert_eq!(browser_dtls(&run.r, k), "1.2", "{k}");
        assert_eq!(run.engine_dtls[i].as_deref(), Some("1.2"), "{k}");
    }
}
