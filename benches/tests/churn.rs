//! A short churn soak (`rtc-bench churn`, see `benches::churn`): 20 s of sessions joining
//! and leaving a debug engine, then every per-shard table, the engine's sessions and
//! rooms back at their baseline and RSS within the tolerance.
//!
//! Needs the debug `rtc-engine` and `rtc-loadgen` next to `rtc-bench` in the same
//! target directory: `cargo build -p rtc-engine -p tools` (cargo does not build other
//! packages' binaries for a test; CI runs `cargo build --workspace --bins` first).
//!
//! Nothing here is timed: the waves take as long as the machine needs (each one's own
//! deadlines are minutes), the soak waits for the tables event by event (sampling), and
//! the RSS tolerance is 32 MiB on this short debug run (a debug engine's heaps are
//! larger and a short run has little time to reach its steady working set), far above
//! the end − baseline measured while writing it (−0.5 to +1.3 MiB over four runs on a
//! busy 2-core machine, one of them beside a release build); the tables are checked
//! exactly.

use std::path::PathBuf;
use std::process::Command;

use benches::churn::ChurnReport;

#[test]
fn churn_soak_returns_every_shard_table_and_rss_to_baseline() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rtc-bench"));
    let dir = exe.parent().expect("binary has a directory").to_path_buf();
    for b in ["rtc-engine", "rtc-loadgen"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build -p rtc-engine -p tools` first",
            dir.join(b).display()
        );
    }
    let json = std::env::temp_dir().join(format!("rtc-bench-churn-{}.json", std::process::id()));
    let run = Command::new(&exe)
        .args(["churn", "--churn-secs", "20", "--rss-tolerance-mib", "32"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("rtc-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    // The figures, for the log (`--nocapture`).
    eprintln!("{stdout}");
    let r: ChurnReport =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("report parses");
    let _ = std::fs::remove_file(&json);
    assert!(r.passed(), "{r:#?}");
    // Sessions really came and went, over several waves.
    assert!(r.waves >= 2, "{r:#?}");
    assert!(r.peers_connected > 0 && r.sessions.peak > 0, "{r:#?}");
    // The tables that grow with sessions were seen growing, and all came back.
    for name in [
        "sessions",
        "by_addr",
        "by_ufrag",
        "routes",
        "legs",
        "layer_caches",
    ] {
        let rows: Vec<_> = r.maps.iter().filter(|m| m.name == name).collect();
        assert!(!rows.is_empty(), "no table {name}: {r:#?}");
        assert!(
            rows.iter().any(|m| m.span.peak > 0),
            "{name} never grew: {r:#?}"
        );
        assert!(
            rows.iter().all(|m| m.span.end == m.span.baseline),
            "{name}: {rows:#?}"
        );
    }
    assert_eq!(r.sessions.end, r.sessions.baseline, "{r:#?}");
    assert_eq!(r.rooms.end, r.rooms.baseline, "{r:#?}");
}
