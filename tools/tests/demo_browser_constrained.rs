//! Bandwidth-driven layer selection with real browsers: headless Chromium publishes
//! 3-layer simulcast through `rtc-demo` (its default) and two viewers play it over WHEP
//! (`tools/browser/demo-constrained.js`): B on an unconstrained path, D from a second
//! Chromium in a network namespace of its own, reached over a veth pair whose engine
//! side carries a `tc tbf` qdisc. Everything runs in a network namespace this test
//! creates (`unshare -n`): the engine and the demo listen on the veth's 10.99.0.1, D's
//! browser has 10.99.0.2.
//!
//! While D's link is wide, D reaches a layer at least 640 wide like B; once the script
//! narrows it to 400 kbit/s, the engine's estimate of D's link falls and its allocator
//! moves D to the 320-wide layer on its own, without freezing it and without touching
//! B. The engine's view (`session.stats`: estimate and layers) is checked as well.
//!
//! The narrow link's token bucket allows a 2 KB burst, less than one probe cluster
//! (5 packets, 6 KB): with the 16 KB it once had, every probe passed at its own rate,
//! so D's estimate became the probe's goal (which follows the publisher's layer-1
//! rate) instead of a measure of the link — an artifact of the shaper that fooled
//! libwebrtc's 5-packet probes the same way.
//!
//! Needs root (namespaces), `unshare`/`nsenter` (util-linux), `ip` and `tc` (iproute2):
//! `scripts/test-all.sh` installs them. Fails, never skips.

use std::time::Duration;

use control::{ControlClient, MediaKind, Request, Response, SessionId, SessionRef};
use serde_json::Value;

mod browser_common;
use browser_common::*;

fn session_stats(sock: &std::path::Path, id: u64) -> control::SessionStats {
    let resp = ControlClient::connect(sock)
        .and_then(|mut c| {
            c.request(Request::SessionStats(SessionRef {
                session: SessionId(id),
            }))
            .map_err(std::io::Error::other)
        })
        .expect("session.stats over the control socket");
    match resp {
        Response::SessionStats(s) => s,
        other => panic!("unexpected session.stats answer: {other:?}"),
    }
}

/// The video leg's (layer, target layer) in a viewer's `session.stats`.
fn video_layers(s: &control::SessionStats) -> (Option<u8>, Option<u8>) {
    s.tracks
        .iter()
        .find(|t| !t.inbound && t.kind == MediaKind::Video)
        .map_or((None, None), |t| (t.layer, t.target_layer))
}

#[test]
fn chromium_viewer_behind_a_narrowed_link_is_moved_to_a_lower_layer() {
    let (tmp, sock) = scratch_dir("narrow");
    let wrapper = tmp.join("chromium-d");
    let shape = tmp.join("shape");
    // D's namespace is held by a `sleep` started with `unshare -n`; its Chromium is
    // started there by the wrapper (`nsenter`), which playwright runs as the browser.
    let script = r#"
set -e
ip link set lo up
unshare -n sleep 300 &
VIEWER=$!
trap 'kill $VIEWER 2>/dev/null' EXIT
until [ "$(readlink /proc/$VIEWER/ns/net)" != "$(readlink /proc/$$/ns/net)" ]; do sleep 0.02; done
ip link add veth0 type veth peer name veth1
ip link set veth1 netns "$VIEWER"
ip addr add 10.99.0.1/24 dev veth0
ip link set veth0 up
nsenter -t "$VIEWER" -n sh -c 'ip link set lo up; ip addr add 10.99.0.2/24 dev veth1; ip link set veth1 up'
tc qdisc add dev veth0 root tbf rate 50mbit burst 256kb latency 50ms
printf '#!/bin/sh\nexec nsenter -t %s -n "%s" "$@"\n' "$VIEWER" "${CHROMIUM:-/usr/bin/chromium}" > "$WRAPPER"
printf '#!/bin/sh\nexec tc qdisc change dev veth0 root tbf rate "$1" burst 2kb latency 200ms\n' > "$SHAPE"
chmod +x "$WRAPPER" "$SHAPE"
"$ENGINE" --shards 2 --pin false --bind 10.99.0.1 --control-socket "$SOCK" >/dev/null &
until [ -S "$SOCK" ]; do sleep 0.05; done
"$DEMO" --control "$SOCK" --http 10.99.0.1:8080 >/dev/null &
until (exec 3<>/dev/tcp/10.99.0.1/8080) 2>/dev/null; do sleep 0.05; done
CONSTRAINED_CHROMIUM="$WRAPPER" SHAPE="$SHAPE" node "$JS" http://10.99.0.1:8080 narrow
"#;
    let mut cmd = in_fresh_netns(script, &sock, "demo-constrained.js");
    cmd.env("WRAPPER", &wrapper).env("SHAPE", &shape);
    let driver = Driver::spawn(cmd, true);
    let r = driver.result(Duration::from_secs(100));
    // The engine's view while everything still runs (the driver's process group,
    // engine included, is killed when `driver` drops).
    let b = session_stats(&sock, num(&r, &["B", "session"]));
    let d = session_stats(&sock, num(&r, &["D", "session"]));
    drop(driver);
    eprintln!(
        "wide link: B {} D {} wide; D down {} ms after narrowing; engine: B {:?} at {:?} bps, D {:?} at {:?} bps",
        r["wide"]["B"],
        r["wide"]["D"],
        r["dropMs"],
        video_layers(&b),
        b.estimate_bps,
        video_layers(&d),
        d.estimate_bps
    );

    // After narrowing: D decodes a layer at most 320 wide in every window, B one at
    // least 640 wide, both without a freeze.
    for (k, ok) in [("D", (1..=320u64)), ("B", (640..=u64::MAX))] {
        let widths = r["widths"][k]
            .as_array()
            .unwrap_or_else(|| panic!("no widths.{k} in {r:#}"));
        for w in widths {
            let w = w.as_u64().unwrap_or(0);
            assert!(
                ok.contains(&w),
                "{k} decodes a {w}-wide layer after narrowing: {r:#}"
            );
        }
        let frames = r["framesPerWindow"][k]
            .as_array()
            .unwrap_or_else(|| panic!("no framesPerWindow.{k} in {r:#}"));
        assert!(
            !frames.is_empty() && frames.iter().all(|n| n.as_u64().unwrap_or(0) > 0),
            "{k} froze: frames per 1 s window {frames:?}"
        );
    }
    // The engine agrees: D's leg forwards the lowest layer because D's estimate does
    // not carry the next one, B's a higher one.
    assert_eq!(video_layers(&d).0, Some(0), "D's leg: {d:?}");
    assert!(video_layers(&b).0.is_some_and(|l| l >= 1), "B's leg: {b:?}");
    let (Some(eb), Some(ed)) = (b.estimate_bps, d.estimate_bps) else {
        panic!("no estimates: B {b:?} D {d:?}");
    };
    assert!(ed < 600_000, "D's estimate {ed} bps over a 400 kbit/s link");
    assert!(eb > ed, "B's estimate {eb} not above D's {ed}");
    assert_eq!(r["publisher"]["simulcast"], Value::Bool(true), "{r:#}");
}
