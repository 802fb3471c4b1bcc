//! Result rows, the ratios between them, and their renderings: a text table, JSON and a
//! hand-written SVG plot (throughput and CPU per packet against subscribers).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use crate::floor::LatencyMs;

/// One measured run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `floor` or `engine`.
    pub scenario: String,
    /// `fanout-50`, `rooms-20x3`, `audio-200`, `storm-200`.
    pub workload: String,
    /// Engine shards (0 for the floor).
    pub shards: usize,
    /// Copies sent per received media packet (subscribers per publisher).
    pub fanout: usize,
    /// Sessions (engine) or receiver sockets (floor) during the window.
    pub sessions: u64,
    /// Seconds of the measurement window.
    pub seconds: f64,
    /// Packets forwarded per second (engine: `engine.stats` deltas; floor: datagrams
    /// delivered to the receivers).
    pub fwd_pps: f64,
    /// Server-process CPU (utime + stime) per forwarded packet, microseconds.
    pub cpu_us_per_pkt: Option<f64>,
    /// Server-process CPU over the window, percent of one core.
    pub cpu_pct: f64,
    /// Load-generator CPU over the window, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// Loss ratio reported by the load generator.
    pub loss: f64,
    /// Send-to-receive latency.
    pub latency_ms: LatencyMs,
    /// Engine-side forwarding latency over the window (receive completion to send
    /// submission, from the shards' `forward_ns` buckets: each figure is the upper bound
    /// of its bucket), microseconds; `count` is packets. `None` for the floor.
    #[serde(default)]
    pub engine_latency_us: Option<LatencyMs>,
    /// The engine's datagrams per send message over the window (1 = no GSO batching;
    /// more: GSO batches of that many segments on average). `None` for the floor.
    #[serde(default)]
    pub segments_per_send: Option<f64>,
    /// Share of the forwarded packets the engine protected in place in their send
    /// buffer (`detail.fwd_in_place` over `rtp_forwarded`, 0 to 1); the rest waited in
    /// the subscribers' pacers and cost a copy more. `None` for the floor.
    #[serde(default)]
    pub in_place_share: Option<f64>,
    /// Server RSS growth per session, KiB.
    pub rss_kib_per_session: Option<f64>,
    /// Sessions connected per second (handshake storm).
    pub handshakes_per_s: Option<f64>,
    /// Handshakes per CPU-second of the engine (= per fully used core).
    pub handshakes_per_cpu_s: Option<f64>,
    /// Forwarded packets/s relative to the floor with the same fan-out.
    pub vs_floor_pps: Option<f64>,
    /// CPU per packet relative to the floor with the same fan-out.
    pub vs_floor_cpu: Option<f64>,
    /// Forwarded packets/s (storm: handshakes/s) relative to the 1-shard run.
    pub vs_1shard_rate: Option<f64>,
    /// CPU per packet (storm: per handshake) relative to the 1-shard run.
    pub vs_1shard_cpu: Option<f64>,
    /// RTP packets per second handed between shards (`detail.cross_shard_out` of every
    /// shard over the window): a room spread over shards.
    #[serde(default)]
    pub cross_shard_pps: Option<f64>,
    /// Engine CPU per handed-off packet beyond the 1-shard run of the same workload,
    /// microseconds: (CPU per forwarded packet here − there) × forwarded packets/s ÷
    /// handed-off packets/s. Noisy: a difference of two measurements.
    #[serde(default)]
    pub cross_shard_us: Option<f64>,
    /// Remarks (connect failures, missing samples, ...).
    pub notes: Vec<String>,
    /// Simulcast workloads: the load generator's per-layer counts (whole run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulcast: Option<tools::loadgen::SimulcastCounts>,
}

/// The whole run: machine facts and rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The command line.
    pub command: String,
    /// `nproc`.
    pub cpus: usize,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Rows in run order.
    pub rows: Vec<Row>,
    /// The saturation scenario's report, when it ran.
    #[serde(default)]
    pub saturation: Option<crate::saturate::SaturationReport>,
    /// The relay (cascading) scenario's report, when it ran.
    #[serde(default)]
    pub relay: Option<crate::relay::RelayReport>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Fills in the `vs_*` ratios: engine rows against the floor row of the same fan-out and
/// against the 1-shard row of the same workload.
pub fn compute_ratios(rows: &mut [Row]) {
    let snapshot = rows.to_vec();
    for r in rows.iter_mut().filter(|r| r.scenario == "engine") {
        if r.fanout > 0
            && r.handshakes_per_s.is_none()
            && let Some(f) = snapshot
                .iter()
                .find(|f| f.scenario == "floor" && f.fanout == r.fanout)
        {
            r.vs_floor_pps = ratio(Some(r.fwd_pps), Some(f.fwd_pps));
            r.vs_floor_cpu = ratio(r.cpu_us_per_pkt, f.cpu_us_per_pkt);
        }
        if r.shards > 1
            && let Some(one) = snapshot
                .iter()
                .find(|o| o.scenario == "engine" && o.shards == 1 && o.workload == r.workload)
        {
            if r.handshakes_per_s.is_some() {
                r.vs_1shard_rate = ratio(r.handshakes_per_s, one.handshakes_per_s);
                let per = |x: &Row| x.handshakes_per_cpu_s.map(|h| 1.0 / h);
                r.vs_1shard_cpu = ratio(per(r), per(one));
            } else {
                r.vs_1shard_rate = ratio(Some(r.fwd_pps), Some(one.fwd_pps));
                r.vs_1shard_cpu = ratio(r.cpu_us_per_pkt, one.cpu_us_per_pkt);
                if let (Some(x), Some(c2), Some(c1)) =
                    (r.cross_shard_pps, r.cpu_us_per_pkt, one.cpu_us_per_pkt)
                    && x > 0.0
                {
                    let us = (c2 - c1) * r.fwd_pps / x;
                    r.cross_shard_us = Some(us);
                    r.notes.push(format!(
                        "spread over shards: {x:.0} packets/s handed between shards \
                         ({:.4} per forwarded packet); CPU per forwarded packet x{:.2} the \
                         1-shard run, i.e. {us:+.1} us per handed-off packet",
                        x / r.fwd_pps.max(1e-9),
                        c2 / c1.max(1e-9),
                    ));
                }
            }
        }
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}"))
}

/// The text table (one line per row, then the notes).
pub fn table(rows: &[Row]) -> String {
    let head = [
        "scenario",
        "workload",
        "shards",
        "sess",
        "fwd pps",
        "cpu us/pkt",
        "srv cpu%",
        "lg cpu%",
        "loss%",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "KiB/sess",
        "hs/s",
        "hs/cpu-s",
        "xfloor pps",
        "xfloor cpu",
        "x1sh rate",
        "x1sh cpu",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let lat = r.latency_ms.count > 0;
        let l = |v: f64| {
            if lat {
                format!("{v:.3}")
            } else {
                "-".to_owned()
            }
        };
        let packets = r.handshakes_per_s.is_none();
        cells.push(vec![
            r.scenario.clone(),
            r.workload.clone(),
            if r.shards == 0 {
                "-".into()
            } else {
                r.shards.to_string()
            },
            r.sessions.to_string(),
            if packets {
                format!("{:.0}", r.fwd_pps)
            } else {
                "-".into()
            },
            opt(r.cpu_us_per_pkt, 2),
            format!("{:.0}", r.cpu_pct),
            format!("{:.0}", r.loadgen_cpu_pct),
            format!("{:.3}", r.loss * 100.0),
            l(r.latency_ms.p50),
            l(r.latency_ms.p99),
            l(r.latency_ms.p999),
            opt(r.rss_kib_per_session, 1),
            opt(r.handshakes_per_s, 0),
            opt(r.handshakes_per_cpu_s, 0),
            opt(r.vs_floor_pps, 3),
            opt(r.vs_floor_cpu, 1),
            opt(r.vs_1shard_rate, 2),
            opt(r.vs_1shard_cpu, 2),
        ]);
    }
    let cols = head.len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            cells
                .iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if c < 2 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (cols - 1);
            let _ = writeln!(s, "{}", "-".repeat(total));
        }
    }
    for r in rows {
        for n in &r.notes {
            let _ = writeln!(
                s,
                "note: {} {} ({} shards): {n}",
                r.scenario, r.workload, r.shards
            );
        }
    }
    s
}

/// A markdown version of the table (for `docs/benchmarks.md`).
pub fn markdown(rows: &[Row]) -> String {
    let t = table(rows);
    let mut s = String::new();
    for (i, line) in t.lines().enumerate() {
        if line.starts_with("note:") {
            let _ = writeln!(s, "\n{line}");
            continue;
        }
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
        if i == 0 {
            let _ = writeln!(s, "|{}", " --- |".repeat(cells.len()));
        }
    }
    s
}

const W: f64 = 420.0;
const H: f64 = 300.0;
const ML: f64 = 70.0;
const MT: f64 = 40.0;
const MB: f64 = 50.0;
const MR: f64 = 20.0;

struct Series {
    name: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

fn log_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    Some((
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
    ))
}

fn panel(s: &mut String, x0: f64, title: &str, ylabel: &str, xs: &[f64], series: &[Series]) {
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let _ = writeln!(
        s,
        r#"<g transform="translate({x0},0)"><text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{title}</text>"#,
        W / 2.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let (Some(xlo), Some(xhi), Some((yl, yh))) = (
        xs.iter().copied().filter(|x| *x > 0.0).reduce(f64::min),
        xs.iter().copied().filter(|x| *x > 0.0).reduce(f64::max),
        log_range(series.iter().flat_map(|p| p.points.iter().map(|q| q.1))),
    ) else {
        let _ = writeln!(s, "</g>");
        return;
    };
    let xspan = (xhi.log10() - xlo.log10()).max(1e-9);
    let px = |x: f64| ML + 20.0 + (pw - 40.0) * (x.log10() - xlo.log10()) / xspan;
    let py = |y: f64| MT + ph - ph * (y.log10() - yl.log10()) / (yh.log10() - yl.log10());
    let mut d = yl;
    while d <= yh * 1.0001 {
        let y = py(d);
        let _ = writeln!(
            s,
            r##"<line x1="{ML}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            ML + pw,
            ML - 5.0,
            y + 4.0,
            human(d)
        );
        d *= 10.0;
    }
    for &x in xs {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{x}</text>"#,
            px(x),
            MT + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">subscribers (fan-out)</text>"#,
        ML + pw / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 16 {})">{ylabel}</text>"#,
        MT + ph / 2.0,
        MT + ph / 2.0
    );
    for (i, se) in series.iter().enumerate() {
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !pts.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                pts.join(" "),
                se.color
            );
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#,
                    se.color
                );
            }
        }
        let ly = MT + 14.0 + 14.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            ML + 8.0,
            ly - 9.0,
            se.color,
            ML + 22.0,
            ly,
            xml(&se.name)
        );
    }
    let _ = writeln!(s, "</g>");
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG plot of the fan-out rows: forwarded packets/s and CPU µs per packet against
/// subscribers, one line per configuration (floor, engine with 1 and N shards), log
/// scales.
pub fn svg(rows: &[Row]) -> String {
    const COLORS: [&str; 5] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"];
    let fan: Vec<&Row> = rows
        .iter()
        .filter(|r| r.workload.starts_with("fanout-"))
        .collect();
    let mut xs: Vec<f64> = fan.iter().map(|r| r.fanout as f64).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut keys: Vec<(String, usize)> = Vec::new();
    for r in &fan {
        let k = (r.scenario.clone(), r.shards);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<Series> {
        keys.iter()
            .enumerate()
            .map(|(i, (sc, sh))| Series {
                name: if sc == "floor" {
                    "floor (raw UDP reflector)".to_owned()
                } else {
                    format!("engine, {sh} shard(s)")
                },
                color: COLORS.get(i % COLORS.len()).copied().unwrap_or("#000"),
                points: fan
                    .iter()
                    .filter(|r| &r.scenario == sc && r.shards == *sh)
                    .filter_map(|r| f(r).map(|y| (r.fanout as f64, y)))
                    .collect(),
            })
            .collect()
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}" viewBox="0 0 {} {H}" font-family="sans-serif">"#,
        2.0 * W,
        2.0 * W
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    panel(
        &mut s,
        0.0,
        "Forwarded packets/s",
        "packets/s",
        &xs,
        &series(&|r| Some(r.fwd_pps)),
    );
    panel(
        &mut s,
        W,
        "Server CPU per forwarded packet",
        "CPU µs / packet",
        &xs,
        &series(&|r| r.cpu_us_per_pkt),
    );
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sc: &str, wl: &str, shards: usize, fanout: usize, pps: f64, cpu: f64) -> Row {
        Row {
            scenario: sc.into(),
            workload: wl.into(),
            shards,
            fanout,
            fwd_pps: pps,
            cpu_us_per_pkt: Some(cpu),
            ..Row::default()
        }
    }

    #[test]
    fn ratios() {
        let mut rows = vec![
            row("floor", "fanout-10", 0, 10, 100_000.0, 0.5),
            row("engine", "fanout-10", 1, 10, 10_000.0, 2.0),
            row("engine", "fanout-10", 2, 10, 12_000.0, 3.0),
        ];
        compute_ratios(&mut rows);
        assert_eq!(rows[1].vs_floor_pps, Some(0.1));
        assert_eq!(rows[1].vs_floor_cpu, Some(4.0));
        assert_eq!(rows[1].vs_1shard_rate, None);
        assert_eq!(rows[2].vs_1shard_rate, Some(1.2));
        assert_eq!(rows[2].vs_1shard_cpu, Some(1.5));
        assert_eq!(rows[0].vs_floor_pps, None);
    }

    #[test]
    fn renderings() {
        let rows = vec![
            row("floor", "fanout-10", 0, 10, 100_000.0, 0.5),
            row("floor", "fanout-50", 0, 50, 200_000.0, 0.3),
            row("engine", "fanout-10", 1, 10, 10_000.0, 2.0),
            row("engine", "fanout-50", 1, 50, 40_000.0, 1.5),
        ];
        let t = table(&rows);
        assert_eq!(t.lines().count(), 2 + rows.len());
        assert!(t.contains("fanout-50") && t.contains("200000"));
        let m = markdown(&rows);
        assert!(m.starts_with("| scenario | workload |"));
        assert_eq!(m.lines().count(), 2 + rows.len());
        let s = svg(&rows);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("engine, 1 shard(s)"));
    }
}
