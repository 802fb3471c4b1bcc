//! Saturation: the offered load of a fan-out room rises step by step until the engine
//! stops keeping up, and the highest load it kept up with is the headline figure.
//!
//! Each step is a fresh `rtc-engine` + `rtc-loadgen` run of fan-out rooms, one video
//! publisher → `fanout` subscribers each. The ladder ([`Ladder`]) raises either the
//! number of rooms by `factor` per step at a fixed publisher bitrate (the default: more
//! publishers, as a loaded SFU sees, with their frames' bursts unsynchronised), or one
//! room's publisher bitrate by `factor` ([`Workload::Fanout`]; more packets per second
//! per leg, every frame a burst of tens of packets × `fanout` legs in one shard
//! iteration). The packet size stays ~1.1 kB.
//! A step *holds* when the load generator saw at most [`MAX_LOSS`] loss and the
//! engine-side p99 forwarding latency (the shards' `forward_ns`, receive completion to
//! send submission) stayed at most [`MAX_P99_US`]; the ladder stops at the first step
//! that does not hold. Saturation is the step that held with the most forwarded
//! packets/s; the run reports it per fully used engine core (forwarded packets/s over the
//! engine's CPU share) beside the floor reflector with the same fan-out, measured in the
//! same run, and then runs two more steps at 50 % and 90 % of the saturation bitrate for
//! the engine-side latency there.
//!
//! The load generator's own latency (send to receive, including its queues) is
//! reported but does not end the ladder: on a machine where it shares the cores with
//! the engine it measures the load generator at least as much as the engine.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::report::Row;
use crate::scenario::{self, Options, Workload};

/// A step with more loss than this (ratio) does not hold.
pub const MAX_LOSS: f64 = 0.001;
/// A step whose engine-side p99 forwarding latency exceeds this (µs) does not hold
/// (the default of [`SaturateOptions::max_p99_us`]).
pub const MAX_P99_US: f64 = 5000.0;

/// What the ladder raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Ladder {
    /// The number of fan-out rooms, at `start_kbps` each.
    #[default]
    Rooms,
    /// One room's publisher bitrate.
    Bitrate,
}

/// How the ladder runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SaturateOptions {
    /// What the ladder raises.
    pub ladder: Ladder,
    /// Rooms of the first step (the bitrate ladder: always 1).
    pub start_rooms: usize,
    /// Subscribers of each publisher.
    pub fanout: usize,
    /// Engine shards.
    pub shards: usize,
    /// Publisher bitrate of the first step (the rooms ladder: of every step), kbit/s.
    pub start_kbps: u32,
    /// Ratio of rooms or bitrate between two steps (> 1).
    pub factor: f64,
    /// Most steps before giving up on reaching saturation.
    pub max_steps: usize,
    /// Run the 50 % / 90 % latency steps.
    pub latency_steps: bool,
    /// Engine-side p99 limit of a step, µs; `None`: loss alone decides.
    pub max_p99_us: Option<f64>,
}

impl Default for SaturateOptions {
    fn default() -> Self {
        SaturateOptions {
            ladder: Ladder::Rooms,
            start_rooms: 2,
            fanout: 50,
            shards: 1,
            start_kbps: 2000,
            factor: 1.5,
            max_steps: 10,
            latency_steps: true,
            max_p99_us: Some(MAX_P99_US),
        }
    }
}

/// One step of the ladder (or a latency step).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Fan-out rooms (publishers).
    #[serde(default = "one")]
    pub rooms: usize,
    /// Publisher bitrate, kbit/s.
    pub kbps: u32,
    /// Whether loss and engine-side p99 stayed within the limits.
    pub held: bool,
    /// The run's figures.
    pub row: Row,
}

impl Step {
    /// Forwarded packets/s per fully used engine core (forwarded packets/s over the
    /// engine's CPU share); `None` without a CPU figure.
    pub fn pps_per_core(&self) -> Option<f64> {
        per_core(&self.row)
    }
}

fn one() -> usize {
    1
}

impl Step {
    /// `2000k` (one room) or `4x1500k`.
    fn label(&self) -> String {
        if self.rooms == 1 {
            format!("{}k", self.kbps)
        } else {
            format!("{}x{}k", self.rooms, self.kbps)
        }
    }
}

fn per_core(r: &Row) -> Option<f64> {
    r.cpu_us_per_pkt.filter(|c| *c > 0.0).map(|c| 1e6 / c)
}

/// The whole saturation run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SaturationReport {
    /// What the ladder raised.
    #[serde(default)]
    pub ladder: Ladder,
    /// Subscribers of each publisher.
    pub fanout: usize,
    /// Engine shards.
    pub shards: usize,
    /// The engine-side p99 limit used, µs (`None`: loss alone decided).
    #[serde(default)]
    pub max_p99_us: Option<f64>,
    /// The floor reflector with the same fan-out, this run.
    pub floor: Option<Row>,
    /// The floor reflector again, its batching fixed at the saturation step's
    /// datagrams per send message (rounded, at least 1): the issue's "floor with the
    /// same batching". Without it the floor's own batching follows the timing of its
    /// closed loop, and its per-core figure moved 10× between runs.
    #[serde(default)]
    pub floor_same_batching: Option<Row>,
    /// The ladder, in order.
    pub steps: Vec<Step>,
    /// Index in `steps` of the saturation step (the held step with the most forwarded
    /// packets/s); `None` when no step held.
    pub saturation: Option<usize>,
    /// Whether a step failed to hold (otherwise the ladder ran out of steps and the
    /// saturation figure is a lower bound).
    pub limit_reached: bool,
    /// The saturation step's rooms at 50 % of its bitrate.
    pub at_50: Option<Step>,
    /// The saturation step's rooms at 90 % of its bitrate.
    pub at_90: Option<Step>,
}

impl SaturationReport {
    /// The saturation step.
    pub fn saturation_step(&self) -> Option<&Step> {
        self.saturation.and_then(|i| self.steps.get(i))
    }

    /// The text report: one line per step, then the summary.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "saturation: {} of 1 -> {} fan-out rooms, {} shard(s); a step holds at loss <= {:.1} %{}",
            match self.ladder {
                Ladder::Rooms => "more",
                Ladder::Bitrate => "a higher bitrate",
            },
            self.fanout,
            self.shards,
            MAX_LOSS * 100.0,
            self.max_p99_us
                .map_or_else(String::new, |l| format!(" and engine p99 <= {l:.0} us"))
        );
        let _ = writeln!(
            s,
            "{:>10} {:>5} {:>10} {:>9} {:>10} {:>7} {:>7} {:>8} {:>9} {:>9} {:>10} {:>8}",
            "step",
            "held",
            "fwd pps",
            "us/pkt",
            "pps/core",
            "srv%",
            "lg%",
            "loss%",
            "eng p50",
            "eng p99",
            "eng p99.9",
            "lg p99ms"
        );
        let line = |s: &mut String, name: String, st: &Step| {
            let r = &st.row;
            let lat = r.engine_latency_us.as_ref();
            let f =
                |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.p$}"));
            let _ = writeln!(
                s,
                "{:>10} {:>5} {:>10.0} {:>9} {:>10} {:>7.0} {:>7.0} {:>8.3} {:>9} {:>9} {:>10} {:>8.2}",
                name,
                if st.held { "yes" } else { "no" },
                r.fwd_pps,
                f(r.cpu_us_per_pkt, 2),
                f(st.pps_per_core(), 0),
                r.cpu_pct,
                r.loadgen_cpu_pct,
                r.loss * 100.0,
                f(lat.map(|l| l.p50), 0),
                f(lat.map(|l| l.p99), 0),
                f(lat.map(|l| l.p999), 0),
                r.latency_ms.p99,
            );
        };
        for st in &self.steps {
            line(&mut s, st.label(), st);
        }
        if let Some(st) = &self.at_50 {
            line(&mut s, "50%".to_owned(), st);
        }
        if let Some(st) = &self.at_90 {
            line(&mut s, "90%".to_owned(), st);
        }
        match self.saturation_step() {
            Some(st) => {
                let _ = writeln!(
                    s,
                    "saturation{}: {:.0} forwarded packets/s at {} room(s) x {} kbit/s, {:.0} % of an engine core -> {:.0} packets/s per core ({:.2} us/packet)",
                    if self.limit_reached {
                        ""
                    } else {
                        " (lower bound: every step held)"
                    },
                    st.row.fwd_pps,
                    st.rooms,
                    st.kbps,
                    st.row.cpu_pct,
                    st.pps_per_core().unwrap_or(0.0),
                    st.row.cpu_us_per_pkt.unwrap_or(0.0),
                );
                if let Some(fl) = &self.floor
                    && let (Some(f), Some(e)) = (per_core(fl), st.pps_per_core())
                {
                    let _ = writeln!(
                        s,
                        "floor (same run, fan-out {}): {:.0} delivered datagrams/s at {:.0} % of a core -> {:.0} per core; engine / floor = {:.3} ({:.1}x the floor's CPU per packet)",
                        fl.fanout,
                        fl.fwd_pps,
                        fl.cpu_pct,
                        f,
                        e / f,
                        f / e
                    );
                }
                if let Some(fl) = &self.floor_same_batching
                    && let (Some(f), Some(e)) = (per_core(fl), st.pps_per_core())
                {
                    let _ = writeln!(
                        s,
                        "floor at the engine's batching ({}; the engine sent {:.2} datagrams per send, {:.0} % of its forwarded packets protected in place): {:.0} delivered datagrams/s at {:.0} % of a core -> {:.0} per core; engine / floor = {:.3} ({:.1}x the floor's CPU per packet)",
                        fl.workload,
                        st.row.segments_per_send.unwrap_or(0.0),
                        100.0 * st.row.in_place_share.unwrap_or(0.0),
                        fl.fwd_pps,
                        fl.cpu_pct,
                        f,
                        e / f,
                        f / e
                    );
                }
            }
            None => {
                let _ = writeln!(s, "saturation: no step held");
            }
        }
        for r in self
            .steps
            .iter()
            .map(|s| &s.row)
            .chain(self.floor.iter())
            .chain(self.floor_same_batching.iter())
        {
            for n in &r.notes {
                let _ = writeln!(s, "note: {} {}: {n}", r.scenario, r.workload);
            }
        }
        s
    }
}

/// Whether a run kept up: packets forwarded, loss and engine-side p99 (unless
/// `max_p99_us` is `None`) within the limits.
pub fn held(r: &Row, max_p99_us: Option<f64>) -> bool {
    let p99_ok = match max_p99_us {
        None => true,
        Some(max) => r.engine_latency_us.as_ref().is_some_and(|l| l.p99 <= max),
    };
    r.fwd_pps > 0.0 && r.loss <= MAX_LOSS && p99_ok
}

fn step(o: &Options, s: &SaturateOptions, rooms: usize, kbps: u32) -> Result<Step, BenchError> {
    let o = Options {
        video_kbps: kbps,
        ..o.clone()
    };
    let workload = if rooms <= 1 {
        Workload::Fanout {
            subscribers: s.fanout,
        }
    } else {
        Workload::Fanouts {
            rooms,
            subscribers: s.fanout,
        }
    };
    let mut row = scenario::run_engine(&o, s.shards, &workload)?;
    row.scenario = "saturate".into();
    row.workload = format!("{}@{kbps}k", workload.name());
    Ok(Step {
        rooms: rooms.max(1),
        kbps,
        held: held(&row, s.max_p99_us),
        row,
    })
}

/// Runs the floor, the ladder and the latency steps. `progress` gets a line per run.
pub fn run_saturation(
    o: &Options,
    s: &SaturateOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<SaturationReport, BenchError> {
    let mut rep = SaturationReport {
        ladder: s.ladder,
        fanout: s.fanout,
        shards: s.shards,
        max_p99_us: s.max_p99_us,
        ..SaturationReport::default()
    };
    progress(&format!("floor, fan-out {}", s.fanout));
    rep.floor = Some(scenario::run_floor(o, s.fanout)?);
    let mut kbps = f64::from(s.start_kbps.max(1));
    let mut rooms = match s.ladder {
        Ladder::Rooms => s.start_rooms.max(1),
        Ladder::Bitrate => 1,
    };
    let factor = s.factor.max(1.01);
    for _ in 0..s.max_steps.max(1) {
        let k = kbps.round() as u32;
        progress(&format!("engine, {rooms} room(s) x {k} kbit/s"));
        let st = step(o, s, rooms, k)?;
        let held = st.held;
        rep.steps.push(st);
        if !held {
            rep.limit_reached = true;
            break;
        }
        match s.ladder {
            // At least one more room per step.
            Ladder::Rooms => rooms = ((rooms as f64 * factor).round() as usize).max(rooms + 1),
            Ladder::Bitrate => kbps *= factor,
        }
    }
    rep.saturation = rep
        .steps
        .iter()
        .enumerate()
        .filter(|(_, st)| st.held)
        .max_by(|a, b| a.1.row.fwd_pps.total_cmp(&b.1.row.fwd_pps))
        .map(|(i, _)| i);
    if let Some(b) = rep
        .saturation_step()
        .and_then(|st| st.row.segments_per_send)
    {
        let b = (b.round() as usize).max(1);
        progress(&format!(
            "floor, fan-out {}, the engine's batching ({b} per send)",
            s.fanout
        ));
        rep.floor_same_batching = Some(scenario::run_floor_batched(o, s.fanout, Some(b))?);
    }
    if s.latency_steps
        && let Some((sat_rooms, sat)) = rep.saturation_step().map(|st| (st.rooms, st.kbps))
    {
        // The saturation step's rooms at a lower bitrate: the same peers and legs, the
        // packet rate scaled.
        for (pct, slot) in [(50u32, 0usize), (90, 1)] {
            let k = (sat * pct / 100).max(1);
            progress(&format!(
                "engine, {pct} % of saturation ({sat_rooms} room(s) x {k} kbit/s)"
            ));
            let st = step(o, s, sat_rooms, k)?;
            if slot == 0 {
                rep.at_50 = Some(st);
            } else {
                rep.at_90 = Some(st);
            }
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencyMs;

    fn row(pps: f64, loss: f64, p99_us: f64) -> Row {
        Row {
            fwd_pps: pps,
            loss,
            cpu_us_per_pkt: Some(4.0),
            engine_latency_us: Some(LatencyMs {
                count: 10,
                p50: 10.0,
                p99: p99_us,
                p999: p99_us,
            }),
            ..Row::default()
        }
    }

    #[test]
    fn a_step_holds_within_both_limits_only() {
        let lim = Some(MAX_P99_US);
        assert!(held(&row(1000.0, 0.0, 100.0), lim));
        assert!(held(&row(1000.0, MAX_LOSS, MAX_P99_US), lim));
        assert!(!held(&row(1000.0, 0.002, 100.0), lim));
        assert!(!held(&row(1000.0, 0.0, 6000.0), lim));
        assert!(held(&row(1000.0, 0.0, 6000.0), None));
        assert!(!held(&row(0.0, 0.0, 100.0), lim));
        let mut no_latency = row(1000.0, 0.0, 100.0);
        no_latency.engine_latency_us = None;
        assert!(!held(&no_latency, lim));
    }

    #[test]
    fn the_report_names_saturation_and_the_floor_ratio() {
        let st = |kbps, held| Step {
            rooms: 1,
            kbps,
            held,
            row: row(f64::from(kbps) * 10.0, if held { 0.0 } else { 0.01 }, 100.0),
        };
        let rep = SaturationReport {
            ladder: Ladder::Bitrate,
            fanout: 50,
            shards: 1,
            max_p99_us: Some(MAX_P99_US),
            floor: Some(Row {
                fanout: 50,
                fwd_pps: 300_000.0,
                cpu_us_per_pkt: Some(2.0),
                cpu_pct: 60.0,
                ..Row::default()
            }),
            floor_same_batching: Some(Row {
                fanout: 50,
                workload: "fanout-50/batch-2".into(),
                fwd_pps: 200_000.0,
                cpu_us_per_pkt: Some(4.0),
                cpu_pct: 80.0,
                ..Row::default()
            }),
            steps: vec![st(1000, true), st(2000, true), st(4000, false)],
            saturation: Some(1),
            limit_reached: true,
            at_50: Some(st(1000, true)),
            at_90: Some(st(1800, true)),
        };
        let t = rep.table();
        assert!(
            t.contains("saturation: 20000 forwarded packets/s at 1 room(s) x 2000 kbit/s"),
            "{t}"
        );
        assert!(t.contains("250000 packets/s per core"), "{t}");
        assert!(t.contains("engine / floor = 0.500"), "{t}");
        // 4 us per packet: 250k per core, the engine's own figure.
        assert!(
            t.contains("floor at the engine's batching (fanout-50/batch-2;")
                && t.contains("engine / floor = 1.000"),
            "{t}"
        );
        assert!(t.contains("50%") && t.contains("90%"), "{t}");
    }
}
