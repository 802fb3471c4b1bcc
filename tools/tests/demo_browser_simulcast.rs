//! Browser simulcast test of rtc-demo: `rtc-engine` (2 shards) and `rtc-demo --control`
//! run as separate processes; headless Chromium (driven by
//! `tools/browser/demo-simulcast.js`) publishes 3-layer simulcast from a 1280×720 fake
//! camera through the demo page (its default), and two more pages play it over WHEP:
//! B with no cap decodes a layer at least 640 wide, C with `?max_layer=0` one at most
//! 320 wide, and both decode frames in every 1 s window for 5 s (no freeze).
//!
//! Fails (never skips) when Chromium or node cannot run: `scripts/test-all.sh`
//! installs Chromium and the Node packages first.

use std::time::Duration;

use control::{
    ControlClient, Event, EventKind, EventsSubscribe, MediaKind, Request, Response, SessionId,
    SessionRef,
};
use serde_json::Value;

mod browser_common;
use browser_common::*;

fn nums(v: &Value, path: &[&str]) -> Vec<u64> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .unwrap_or_else(|| panic!("no {path:?} in result: {v}"));
    }
    cur.as_array()
        .unwrap_or_else(|| panic!("{path:?} is not an array in result: {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .unwrap_or_else(|| panic!("{path:?}: {x} is not a number"))
        })
        .collect()
}

/// Video packets the engine sent to viewer `session`, from `session.stats`.
fn video_packets_out(stack: &DemoStack, session: u64) -> u64 {
    let resp = stack.request(Request::SessionStats(SessionRef {
        session: SessionId(session),
    }));
    let Response::SessionStats(st) = resp else {
        panic!("unexpected session.stats answer: {resp:?}");
    };
    st.tracks
        .iter()
        .filter(|t| !t.inbound && t.kind == MediaKind::Video)
        .map(|t| t.packets)
        .sum()
}

#[test]
fn chromium_simulcast_viewers_get_the_layer_they_ask_for() {
    let stack = DemoStack::start("demo-simulcast", &["--shards", "2", "--pin", "false"], &[]);
    // What the downtracks select, as the engine reports it: `track.layers_unused`.
    let mut events = ControlClient::connect(&stack.sock).expect("control connection for events");
    events
        .request(Request::EventsSubscribe(EventsSubscribe {
            kinds: Some(vec![EventKind::TrackLayersUnused]),
        }))
        .expect("events.subscribe");
    let driver = Driver::start("demo-simulcast.js", &[&stack.base(), "simulcast"]);
    let r = driver.result_explained(Duration::from_secs(55), || stack.explain_rooms());
    eprintln!("{}", stack.explain_rooms());

    // The demo page published simulcast: Chromium encodes more than one RID (all three
    // once its bandwidth estimate has ramped up; the script waits for that).
    assert_eq!(r["publisher"]["simulcast"], Value::Bool(true), "{r:#}");
    let live: Vec<&str> = r["liveRids"]
        .as_array()
        .unwrap_or_else(|| panic!("no liveRids in {r:#}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        live.len() >= 2,
        "Chromium encodes fewer than 2 simulcast layers: {live:?}: {r:#}"
    );
    if live.len() < 3 {
        eprintln!("note: Chromium encoded only {live:?} (not all 3 layers)");
    }
    // Whether B reached the widest layer Chromium encoded is reported, not asserted:
    // the engine raises a viewer's layer only as far as its bandwidth estimate of the
    // viewer's link allows, and without probing that estimate grows only with what
    // is already sent.
    let top = nums(&r, &["topSent"]);
    let b_widths = nums(&r, &["widths", "B"]);
    eprintln!("widest layer encoded per window: {top:?}; B decoded widths: {b_widths:?}");

    // B (no cap) decodes a layer at least 640 wide, C (max_layer=0) one at most 320
    // wide, in every sample of the no-freeze phase.
    for w in nums(&r, &["widths", "B"]) {
        assert!(w >= 640, "B decodes a {w}-wide layer: {r:#}");
    }
    for w in nums(&r, &["widths", "C"]) {
        assert!(w > 0 && w <= 320, "C decodes a {w}-wide layer: {r:#}");
    }
    assert!(num(&r, &["B", "width"]) > num(&r, &["C", "width"]));
    // No freeze: frames decoded in each 1 s window.
    for k in ["B", "C"] {
        let windows = nums(&r, &["framesPerWindow", k]);
        assert_eq!(windows.len(), 5, "{k}: {windows:?}");
        assert!(
            windows.iter().all(|&n| n > 0),
            "{k} froze: frames per 1 s window {windows:?}"
        );
    }
    // The engine agrees that C's layer (0) and B's layer (from its width: 640 is layer
    // 1, 1280 layer 2) are in use: the last `track.layers_unused` of the publisher names
    // neither. This holds only if the engine numbers layers by RID (as the publisher's
    // `Rtc` bound them), not by arrival order.
    let publisher = num(&r, &["publisher", "id"]);
    let mut unused = Vec::new();
    while let Ok(Some(ev)) = events.next_event(Some(Duration::from_millis(300))) {
        if let Event::TrackLayersUnused(u) = ev
            && u.publisher == SessionId(publisher)
        {
            eprintln!(
                "engine: layers unused by any viewer of {}: {:?}",
                u.track, u.layers
            );
            unused = u.layers;
        }
    }
    assert!(
        !unused.contains(&0),
        "engine reports layer 0 unused while C plays it: {unused:?}"
    );
    if b_widths.windows(2).all(|w| w[0] == w[1]) {
        let b_layer = if b_widths[0] <= 640 { 1 } else { 2 };
        assert!(
            !unused.contains(&b_layer),
            "B decodes layer {b_layer} by RID but the engine reports it unused \
             ({unused:?}): the engine's layer numbers do not follow the RIDs"
        );
    }
    // The engine sent video to both viewers.
    for k in ["B", "C"] {
        let session = num(&r, &[k, "session"]);
        let pkts = video_packets_out(&stack, session);
        assert!(
            pkts > 100,
            "viewer {k} (#{session}): {pkts} video packets out"
        );
    }
}
