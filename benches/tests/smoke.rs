//! Smoke test of the harness: tiny scenarios with `--quick`, checking that the table,
//! the JSON and the SVG are produced and that the numbers are sane.
//!
//! Needs the debug `rtc-engine` and `rtc-loadgen` next to `rtc-bench` in the same
//! target directory: `cargo build -p rtc-engine -p tools` (cargo does not build other
//! packages' binaries for a test).

use std::path::PathBuf;
use std::process::Command;

use benches::report::Results;

#[test]
fn quick_run_produces_table_json_svg() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rtc-bench"));
    let dir = exe.parent().expect("binary has a directory").to_path_buf();
    for b in ["rtc-engine", "rtc-loadgen"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build -p rtc-engine -p tools` first",
            dir.join(b).display()
        );
    }
    let out = std::env::temp_dir().join(format!("rtc-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
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
