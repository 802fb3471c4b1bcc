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

use std::time::Duration;

use serde_json::Value;

mod browser_common;
use browser_common::*;

#[test]
fn chromium_restarts_ice_through_whip_patch_and_keeps_decoding() {
    let stack = DemoStack::start(
        "demo-ice",
        &["--shards", "2", "--pin", "false"],
        // Advertised only (RFC 9725 Link header); the page does not use it, so
        // nothing leaves loopback.
        &["--ice-server", "stun:stun.invalid:3478"],
    );
    // Each browser step waits at most 20 s (event-driven polling); this bounds the
    // whole run (launch + 6 steps) with room to spare on two busy cores.
    let r = Driver::start("demo-ice-restart.js", &[&stack.base(), "ice"])
        .result(Duration::from_secs(150));
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
