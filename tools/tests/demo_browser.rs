//! Browser end-to-end test of rtc-demo: an in-process engine with 2 shards behind the
//! demo's HTTP server; headless Chromium pages (driven by `tools/browser/demo-e2e.js`)
//! join one room through the demo page. Two publishers, placed on different shards by
//! the demo's round-robin placement, see each other's video and receive audio (so
//! cross-shard forwarding is exercised by a real browser); a third page joining late
//! gets video within 2 s of subscribing; a page that leaves disappears from the others.
//!
//! Fails (never skips) when Chromium or node cannot run: `scripts/test-all.sh`
//! installs Chromium and the Node packages first.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::{Engine, EngineConfig};
use serde_json::Value;
use tools::demo::{Backend, DemoConfig, DemoServer, InProcessBackend};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .unwrap_or_else(|| panic!("no {path:?} in result: {v}"));
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in result: {v}"))
}

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
    let engine = Engine::start(EngineConfig {
        shards: Some(2),
        pin: false,
        ..EngineConfig::default()
    })
    .expect("engine starts");
    let backend = Arc::new(InProcessBackend::new(engine.clone()));
    let server = DemoServer::start(
        backend.clone(),
        DemoConfig {
            http: "127.0.0.1:0".parse().expect("address"),
            ..DemoConfig::default()
        },
    )
    .expect("demo listens");
    let base = format!("http://{}", server.local_addr());

    let mut child = Command::new("node")
        .arg(dir.join("demo-e2e.js"))
        .arg(&base)
        .arg("e2e")
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
    let deadline = Instant::now() + Duration::from_secs(55);
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
    // Server-side view before tearing down.
    let room = server.room("e2e");
    let stats = backend.stats();
    let _ = child.kill();
    let _ = child.wait();
    server.shutdown();
    engine.shutdown();

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
    let room = room.expect("room e2e still listed");
    let pubs: Vec<u64> = room.publishers.iter().map(|p| p.id).collect();
    assert_eq!(pubs, vec![a, c], "{room:?}");
    let mut watched: Vec<u64> = room.viewers.iter().map(|v| v.publisher).collect();
    watched.sort_unstable();
    assert_eq!(watched, vec![a, c], "{room:?}");
    assert!(room.viewers.iter().all(|v| v.connected), "{room:?}");
    assert!(!pubs.contains(&b));
    // Media crossed shards inside the engine.
    let stats = stats.expect("engine stats");
    let cross: u64 = stats
        .shards
        .iter()
        .map(|s| s.cross_shard_in.unwrap_or(0))
        .sum();
    assert!(
        cross > 100,
        "only {cross} packets crossed shards: {stats:?}"
    );
}
