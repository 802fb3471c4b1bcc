//! Smoke test of the harness: tiny scenarios with `--quick`, checking that the table,
//! the JSON and the SVG are produced and that the numbers are sane.
//!
//! Needs the debug `rtc-engine` and `rtc-loadgen` next to `rtc-bench` in the same
//! target directory: `cargo build -p rtc-engine -p tools` (cargo does not build other
//! packages' binaries for a test).

use std::path::PathBuf;
use std::process::Command;

use benches::report::Results;

/// `rtc-bench`, after checking that the binaries it runs are next to it, and a fresh
/// output directory named after `tag`.
fn bench_and_out(tag: &str) -> (PathBuf, PathBuf) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rtc-bench"));
    let dir = exe.parent().expect("binary has a directory").to_path_buf();
    for b in ["rtc-engine", "rtc-loadgen"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build -p rtc-engine -p tools` first",
            dir.join(b).display()
        );
    }
    let out = std::env::temp_dir().join(format!("rtc-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    (exe, out)
}

#[test]
fn quick_run_produces_table_json_svg() {
    let (exe, out) = bench_and_out("smoke");
    let (json, svg) = (out.join("r.json"), out.join("r.svg"));
    let run = Command::new(&exe)
        .args([
            "--quick",
            "floor",
            "fanout",
            "storm",
            "--subscribers",
            "3",
            "--storm",
            "6",
        ])
        .args(["--secs", "2.1", "--loadgen-threads", "1"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("scenario") && stdout.contains("fanout-3"),
        "{stdout}"
    );
    assert!(stdout.contains("storm-6"), "{stdout}");

    let r: Results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(r.cpus >= 1);
    // floor + engine 1 and 2 shards for fan-out, engine 1 and 2 shards for the storm.
    assert_eq!(r.rows.len(), 5, "{:#?}", r.rows);
    for row in r.rows.iter().filter(|x| x.workload == "fanout-3") {
        assert!(row.fwd_pps > 0.0, "{row:#?}");
        assert!(row.cpu_us_per_pkt.is_some_and(|c| c > 0.0), "{row:#?}");
        assert!(
            row.latency_ms.count > 0 && row.latency_ms.p50 > 0.0,
            "{row:#?}"
        );
        assert!((0.0..=1.0).contains(&row.loss), "{row:#?}");
        if row.scenario == "engine" {
            assert_eq!(row.sessions, 4, "{row:#?}");
            assert!(row.vs_floor_cpu.is_some_and(|v| v > 0.0), "{row:#?}");
            assert!(row.rss_kib_per_session.is_some(), "{row:#?}");
        }
    }
    assert!(
        r.rows
            .iter()
            .any(|x| x.scenario == "engine" && x.shards == 2 && x.vs_1shard_rate.is_some())
    );
    for row in r.rows.iter().filter(|x| x.workload == "storm-6") {
        assert!(row.handshakes_per_s.is_some_and(|h| h > 0.0), "{row:#?}");
    }
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("<polyline"), "{s}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The saturation scenario, one tiny step (1 -> 3, 300 kbit/s) plus its 50 % and 90 %
/// latency steps: only that it produces its report (the figures of a debug build on a
/// shared machine mean nothing).
#[test]
fn quick_saturation_produces_a_report() {
    let (exe, out) = bench_and_out("saturate");
    let json = out.join("s.json");
    let run = Command::new(&exe)
        .args([
            "--quick",
            "saturate",
            "--sat-fanout",
            "3",
            "--sat-start-kbps",
            "300",
            "--sat-start-rooms",
            "2",
        ])
        .args([
            "--sat-steps",
            "1",
            "--secs",
            "2.1",
            "--loadgen-threads",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("saturation: more of 1 -> 3 fan-out rooms"),
        "{stdout}"
    );
    let r: Results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let sat = r.saturation.expect("saturation report");
    assert!(sat.floor.is_some(), "{sat:#?}");
    assert_eq!(sat.steps.len(), 1, "{sat:#?}");
    // The rooms ladder's first step: two 1 -> 3 rooms.
    assert_eq!(sat.steps[0].rooms, 2, "{sat:#?}");
    assert!(sat.steps[0].row.fwd_pps > 0.0, "{sat:#?}");
    // The engine's batching is measured, and a step that held gets the floor again at
    // that batching.
    assert!(
        sat.steps[0].row.segments_per_send.is_some_and(|b| b >= 1.0),
        "{sat:#?}"
    );
    // And the share of forwarded packets protected in place in their send buffer.
    assert!(
        sat.steps[0]
            .row
            .in_place_share
            .is_some_and(|x| x > 0.0 && x <= 1.0),
        "{sat:#?}"
    );
    if sat.saturation.is_some() {
        let fl = sat.floor_same_batching.as_ref().expect("the batched floor");
        assert!(fl.workload.contains("/batch-"), "{fl:#?}");
        assert!(
            stdout.contains("floor at the engine's batching"),
            "{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The relay scenario, tiny (1 -> 4 on the baseline engine, then 2 on A and 2 on B
/// through the relay): media crossed the relay and the engines' counters agree with each
/// other. No figure is judged (a debug build on a shared machine).
#[test]
fn quick_relay_run_moves_media_across_the_relay_with_consistent_counters() {
    let (exe, out) = bench_and_out("relay");
    let json = out.join("relay.json");
    let run = Command::new(&exe)
        .args([
            "--quick",
            "relay",
            "--relay-subscribers",
            "4",
            "--relay-on-b",
            "2",
        ])
        .args(["--secs", "2.1", "--loadgen-threads", "1"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("relay: 1 -> 4 (2 on A"), "{stdout}");
    assert!(stdout.contains("relay hop cost"), "{stdout}");
    let r: Results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rel = r.relay.expect("relay report");
    // The baseline ran and forwarded.
    assert!(rel.single.fwd_pps > 0.0, "{rel:#?}");
    // Every peer of the relay run connected: the publisher and 4 subscribers.
    assert_eq!(rel.relay.sessions, 5, "{rel:#?}");
    assert!((0.0..=1.0).contains(&rel.relay.loss), "{rel:#?}");
    // RTP crossed the relay, and A's relay end sent at least as many datagrams as B's
    // end received RTP packets (the rest: keepalives, RTCP).
    assert!(rel.total_relayed > 0, "{rel:#?}");
    assert!(
        rel.total_relay_datagrams_out >= rel.total_relayed,
        "{rel:#?}"
    );
    // A forwarded to its local subscribers and to the relay's leg: at least every packet
    // that crossed.
    assert!(rel.total_a_forwarded >= rel.total_relayed, "{rel:#?}");
    // B forwarded relayed media to its 2 subscribers: some, and at most 2 copies of each
    // packet that crossed (plus repairs of the NACKed ones: at most 17 per NACK).
    assert!(rel.total_b_forwarded > 0, "{rel:#?}");
    assert!(
        rel.total_b_forwarded <= 2 * (rel.total_relayed + 17 * rel.relay_nacks),
        "{rel:#?}"
    );
    // The subscribers on B verified media that came through the relay.
    assert!(
        rel.relayed_latency_ms.is_some_and(|l| l.count > 0),
        "{rel:#?}"
    );
    // The window saw both engines: A with the publisher, 2 subscribers and the relay's
    // end, B with 2 subscribers and the relay's end.
    assert_eq!((rel.a.sessions, rel.b.sessions), (4, 3), "{rel:#?}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The simulcast scenario, tiny (1 simulcast publisher -> 3 subscribers, one capped at
/// each layer): every layer was sent, every cap group received media, no subscriber was
/// ever sent a layer above its cap, and the per-cap counters agree with the row. Whether
/// the capped-at-1 and capped-at-2 subscribers reach their caps within the run depends
/// on how fast their bandwidth estimates ramp up, so it is not asserted (no timing).
#[test]
fn quick_simulcast_run_respects_each_subscribers_layer_cap() {
    let (exe, out) = bench_and_out("simulcast");
    let json = out.join("sc.json");
    let run = Command::new(&exe)
        .args(["--quick", "simulcast", "--simulcast-subscribers", "3"])
        .args(["--shards", "1", "--secs", "2.1", "--loadgen-threads", "1"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("simulcast-3"), "{stdout}");
    let r: Results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let row = r
        .rows
        .iter()
        .find(|x| x.workload == "simulcast-3")
        .expect("simulcast row");
    assert_eq!(row.sessions, 4, "{row:#?}");
    assert!(row.fwd_pps > 0.0, "{row:#?}");
    let sc = row.simulcast.as_ref().expect("simulcast counts");
    assert_eq!(sc.subscribers_by_cap, [1, 1, 1], "{sc:#?}");
    for l in 0..3 {
        assert!(sc.sent_by_layer[l] > 0, "layer {l} sent: {sc:#?}");
        assert!(sc.received_by_cap[l] > 0, "cap {l} received: {sc:#?}");
        let verified: u64 = sc.verified_by_cap_layer[l].iter().sum();
        assert!(verified <= sc.received_by_cap[l], "{sc:#?}");
        for above in l + 1..3 {
            assert_eq!(
                sc.verified_by_cap_layer[l][above], 0,
                "cap {l} got layer {above}: {sc:#?}"
            );
        }
    }
    // The base-layer subscriber got the base layer (verified samples say so), and the
    // engine forwarded at least what the subscribers received.
    assert!(sc.verified_by_cap_layer[0][0] > 0, "{sc:#?}");
    let received: u64 = sc.received_by_cap.iter().sum();
    assert!(
        (row.fwd_pps * row.seconds) as u64 <= received + row.fwd_pps as u64 + 1,
        "{row:#?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
