//! Browser end-to-end test of rtc-demo: `rtc-engine` (2 shards) and `rtc-demo
//! --control` run as separate processes, the demo driving the engine over the control
//! socket with the public client only; headless Chromium pages (driven by
//! `tools/browser/demo-e2e.js`) join one room through the demo page. Two publishers, placed on different shards by
//! the demo's round-robin placement, see each other's video and receive audio (so
//! cross-shard forwarding is exercised by a real browser); a third page joining late
//! gets video within 2 s of subscribing; a page that leaves disappears from the others.
//!
//! Fails (never skips) when Chromium or node cannot run: `scripts/test-all.sh`
//! installs Chromium and the Node packages first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use control::{ControlClient, Request, Response};
use serde_json::Value;

mod browser_common;
use browser_common::*;

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap_or_else(|| panic!("not an id: {x}")))
        .collect()
}

#[test]
fn chromium_pages_meet_in_a_room_across_shards() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
        dir.display()
    );
    let tmp = std::env::temp_dir().join(format!("rtc-demo-e2e-{}", std::process::id()));
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
        .arg(dir.join("demo-e2e.js"))
        .arg(&base)
        .arg("e2e")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed to run the browser tests");
    let result = read_result(&mut child, Duration::from_secs(55));
    // Server-side view before tearing down: the demo's room listing and the engine's
    // stats over the control socket.
    let room: Value = http_get(&http, "/rooms/e2e")
        .and_then(|b| serde_json::from_str(&b).ok())
        .expect("GET /rooms/e2e answers JSON");
    let stats = ControlClient::connect(&sock)
        .and_then(|mut c| {
            c.request(Request::EngineStats)
                .map_err(std::io::Error::other)
        })
        .expect("engine.stats over the control socket");
    let _ = child.kill();
    let _ = child.wait();

    let r = result.expect("the browser script printed no RESULT line in time");
    assert_eq!(r["ok"], Value::Bool(true), "browser run failed: {r:#}");

    // The two first publishers are on different shards.
    let (a, b, c) = (
        num(&r, &["publishers", "A", "id"]),
        num(&r, &["publishers", "B", "id"]),
        num(&r, &["publishers", "C", "id"]),
    );
    assert_ne!(
        num(&r, &["publishers", "A", "shard"]),
        num(&r, &["publishers", "B", "shard"]),
        "publishers A and B share a shard: {r:#}"
    );
    // Each sees the other's video (> 30 frames decoded) and receives audio.
    for k in ["aSeesB", "bSeesA"] {
        assert!(num(&r, &[k, "framesDecoded"]) > 30, "{k}: {r:#}");
        assert!(num(&r, &[k, "audioPackets"]) > 0, "{k}: no audio");
        assert!(
            num(&r, &[k, "width"]) > 0 && num(&r, &[k, "height"]) > 0,
            "{k}"
        );
    }
    // Every WHEP leg of A and B crosses shards (the demo's viewer placement).
    assert_ne!(
        num(&r, &["aSeesB", "shard"]),
        num(&r, &["aSeesB", "viewerShard"])
    );
    assert_ne!(
        num(&r, &["bSeesA", "shard"]),
        num(&r, &["bSeesA", "viewerShard"])
    );
    // The late page gets video within 2 s of subscribing, from both publishers; the
    // earlier pages get its video too.
    for p in ["A", "B"] {
        let ms = num(&r, &["cFirstFrameMs", p]);
        assert!(
            ms <= 2000,
            "late joiner: first frame from {p} after {ms} ms"
        );
    }
    for k in ["cSeesA", "cSeesB", "aSeesC", "bSeesC"] {
        assert!(num(&r, &[k, "framesDecoded"]) > 0, "{k}: {r:#}");
        assert!(num(&r, &[k, "audioPackets"]) > 0, "{k}: no audio");
    }
    // B left: A and C only play each other.
    assert_eq!(ids(&r["finalRemotes"]["A"]), vec![c]);
    assert_eq!(ids(&r["finalRemotes"]["C"]), vec![a]);

    // The server agrees: A and C publish, each watches the other, B is gone.
    let pubs = ids(&Value::Array(
        room["publishers"]
            .as_array()
            .unwrap_or_else(|| panic!("no publishers in {room}"))
            .iter()
            .map(|p| p["id"].clone())
            .collect(),
    ));
    assert_eq!(pubs, vec![a, c], "{room}");
    assert!(!pubs.contains(&b));
    // Both shards of the separate engine process forwarded media.
    let Response::EngineStats(es) = stats else {
        panic!("unexpected engine.stats answer: {stats:?}");
    };
    assert_eq!(es.shards.len(), 2);
    for sh in &es.shards {
        assert!(
            sh.packets_out > 100,
            "shard {:?} forwarded little: {es:?}",
            sh.shard
        );
    }
}
