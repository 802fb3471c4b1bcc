//! `rtcctl top`: per-shard rates from two `engine.stats` samples, rendered as a table.

use std::fmt::Write as _;
use std::time::Duration;

use control::{EngineStats, ShardStats};
use serde::Serialize;

/// One shard's line in the `top` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRow {
    /// Shard number.
    pub shard: u32,
    /// Pinned core, if any.
    pub core: Option<u32>,
    /// I/O backend.
    pub backend: String,
    /// Live sessions.
    pub sessions: u64,
    /// Whether the shard is draining.
    pub draining: bool,
    /// Datagrams per second received.
    pub pps_in: f64,
    /// Datagrams per second sent.
    pub pps_out: f64,
    /// Megabits per second received.
    pub mbps_in: f64,
    /// Megabits per second sent.
    pub mbps_out: f64,
    /// Total drops since start.
    pub drops: u64,
    /// Drops per second.
    pub drops_per_s: f64,
    /// Event-loop iteration p99 in microseconds.
    pub loop_p99_us: u64,
}

fn rate(prev: u64, cur: u64, secs: f64) -> f64 {
    // Counters restart from zero when the engine restarts: report 0, not a huge rate.
    if secs <= 0.0 {
        return 0.0;
    }
    cur.saturating_sub(prev) as f64 / secs
}

/// Rows from two samples taken `dt` apart (shards are matched by number; a shard absent
/// from `prev` gets zero rates).
pub fn rows(prev: &EngineStats, cur: &EngineStats, dt: Duration) -> Vec<TopRow> {
    let secs = dt.as_secs_f64();
    cur.shards
        .iter()
        .map(|c| {
            let p = prev.shards.iter().find(|p| p.head.shard == c.head.shard);
            let zero;
            let p: &ShardStats = match p {
                Some(p) => p,
                None => {
                    zero = ShardStats {
                        packets_in: c.packets_in,
                        packets_out: c.packets_out,
                        bytes_in: c.bytes_in,
                        bytes_out: c.bytes_out,
                        drops: c.drops.clone(),
                        ..c.clone()
                    };
                    &zero
                }
            };
            TopRow {
                shard: c.head.shard.0,
                core: c.head.core,
                backend: c.head.backend.clone(),
                sessions: c.head.sessions,
                draining: c.head.draining,
                pps_in: rate(p.packets_in, c.packets_in, secs),
                pps_out: rate(p.packets_out, c.packets_out, secs),
                mbps_in: rate(p.bytes_in, c.bytes_in, secs) * 8.0 / 1e6,
                mbps_out: rate(p.bytes_out, c.bytes_out, secs) * 8.0 / 1e6,
                drops: c.drops_total(),
                drops_per_s: rate(p.drops_total(), c.drops_total(), secs),
                loop_p99_us: c.loop_us.p99,
            }
        })
        .collect()
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// Render one frame (no terminal control codes; the caller clears the screen).
pub fn render(cur: &EngineStats, rows: &[TopRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rtc-engine  up {}  sessions {}  rooms {}  shards {}  control clients {}",
        uptime(cur.uptime_ms),
        cur.sessions,
        cur.rooms,
        cur.shards.len(),
        cur.control_clients
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>5} {:>4} {:<9} {:>8} {:>10} {:>10} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "SHARD",
        "CORE",
        "BACKEND",
        "SESSIONS",
        "PPS_IN",
        "PPS_OUT",
        "MBPS_IN",
        "MBPS_OUT",
        "DROPS",
        "DROP/S",
        "LOOP_P99"
    );
    let mut t = TopRow {
        shard: 0,
        core: None,
        backend: String::new(),
        sessions: 0,
        draining: false,
        pps_in: 0.0,
        pps_out: 0.0,
        mbps_in: 0.0,
        mbps_out: 0.0,
        drops: 0,
        drops_per_s: 0.0,
        loop_p99_us: 0,
    };
    for r in rows {
        let shard = if r.draining {
            format!("{}*", r.shard)
        } else {
            r.shard.to_string()
        };
        let core = r.core.map_or_else(|| "-".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "{:>5} {:>4} {:<9} {:>8} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>8.0} {:>7}us",
            shard,
            core,
            r.backend,
            r.sessions,
            r.pps_in,
            r.pps_out,
            r.mbps_in,
            r.mbps_out,
            r.drops,
            r.drops_per_s,
            r.loop_p99_us
        );
        t.sessions += r.sessions;
        t.pps_in += r.pps_in;
        t.pps_out += r.pps_out;
        t.mbps_in += r.mbps_in;
        t.mbps_out += r.mbps_out;
        t.drops = t.drops.saturating_add(r.drops);
        t.drops_per_s += r.drops_per_s;
        t.loop_p99_us = t.loop_p99_us.max(r.loop_p99_us);
    }
    let _ = writeln!(
        out,
        "{:>5} {:>4} {:<9} {:>8} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>8.0} {:>7}us",
        "TOTAL",
        "",
        "",
        t.sessions,
        t.pps_in,
        t.pps_out,
        t.mbps_in,
        t.mbps_out,
        t.drops,
        t.drops_per_s,
        t.loop_p99_us
    );
    if rows.iter().any(|r| r.draining) {
        let _ = writeln!(out, "(* draining)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::{HistogramSummary, ShardHead, ShardId};
    use std::collections::BTreeMap;

    fn shard(i: u32, pk: u64, by: u64, drops: u64) -> ShardStats {
        let mut d = BTreeMap::new();
        d.insert("x".to_string(), drops);
        ShardStats {
            head: ShardHead {
                shard: ShardId(i),
                core: Some(i),
                backend: "io_uring".into(),
                sessions: 3,
                draining: i == 1,
            },
            healthy: true,
            packets_in: pk,
            packets_out: pk * 2,
            bytes_in: by,
            bytes_out: by * 2,
            drops: d,
            gso_batches: 0,
            gro_batches: 0,
            loop_us: HistogramSummary {
                p99: 40 + u64::from(i),
                ..HistogramSummary::default()
            },
            histograms: BTreeMap::new(),
            forward_ns: control::LatencyBuckets::default(),
            detail: control::ShardDetail::default(),
            maps: BTreeMap::new(),
        }
    }

    fn stats(shards: Vec<ShardStats>) -> EngineStats {
        EngineStats {
            uptime_ms: 3_723_000,
            sessions: 6,
            rooms: 1,
            control_clients: 1,
            shards,
        }
    }

    #[test]
    fn rates_from_deltas() {
        let a = stats(vec![shard(0, 1000, 1_000_000, 5), shard(1, 0, 0, 0)]);
        let b = stats(vec![
            shard(0, 3000, 3_500_000, 9),
            shard(1, 500, 125_000, 0),
        ]);
        let r = rows(&a, &b, Duration::from_secs(2));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].pps_in, 1000.0);
        assert_eq!(r[0].pps_out, 2000.0);
        assert_eq!(r[0].mbps_in, 10.0);
        assert_eq!(r[0].mbps_out, 20.0);
        assert_eq!(r[0].drops, 9);
        assert_eq!(r[0].drops_per_s, 2.0);
        assert_eq!(r[1].pps_in, 250.0);
        assert_eq!(r[1].mbps_in, 0.5);
        // A restarted engine (counters went down) shows zero, and a new shard too.
        let c = stats(vec![shard(0, 10, 10, 0), shard(2, 99, 99, 9)]);
        let r = rows(&b, &c, Duration::from_secs(1));
        assert_eq!(r[0].pps_in, 0.0);
        assert_eq!(r[1].pps_in, 0.0);
        assert_eq!(r[1].drops, 9);
    }

    #[test]
    fn frame_has_header_rows_and_total() {
        let a = stats(vec![shard(0, 0, 0, 0), shard(1, 0, 0, 0)]);
        let b = stats(vec![shard(0, 100, 125_000, 1), shard(1, 300, 125_000, 2)]);
        let r = rows(&a, &b, Duration::from_secs(1));
        let f = render(&b, &r);
        let lines: Vec<&str> = f.lines().collect();
        assert!(lines[0].contains("up 1h02m03s"), "{}", lines[0]);
        assert!(lines[2].contains("SHARD") && lines[2].contains("LOOP_P99"));
        assert!(lines[3].trim_start().starts_with("0 "), "{}", lines[3]);
        assert!(lines[4].trim_start().starts_with("1*"), "{}", lines[4]);
        let total: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(
            total,
            ["TOTAL", "6", "400", "800", "2.00", "4.00", "3", "3", "41us"]
        );
        assert_eq!(lines[6], "(* draining)");
    }
}
