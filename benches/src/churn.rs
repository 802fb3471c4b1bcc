//! The churn soak (`rtc-bench churn`): sessions join and leave continuously for a while,
//! then, once all of them are gone, the engine's resident memory and every per-shard
//! table (`engine.stats` → `shards[].maps`, plus the engine's `sessions` and `rooms`)
//! must be back at their baseline.
//!
//! The load is waves of `rtc-loadgen --control` runs against one `rtc-engine`: each wave
//! creates its own rooms (one video + audio publisher and subscribers per room), sends
//! media for `wave_secs`, then closes its sessions and rooms and exits. `overlap` waves
//! run at once, started `wave_secs / overlap` apart, so that at any moment some sessions
//! are connecting, some forwarding and some leaving. Sessions that do not connect in
//! time are closed by the engine's connect timeout: another way out that must not leak.
//!
//! Baselines. Tables: the values of the idle engine before the first session (all 0 on
//! today's engine). Memory: the RSS after warm-up waves (as many as run at once in the
//! churn, so the same peak of live sessions) have come and gone, not the
//! cold RSS: the first sessions grow the allocator's per-thread heaps (shards, control
//! workers), lazily built statics and kernel socket state to their working size, and
//! the engine's allocator (mimalloc) keeps part of the freed pages in those heaps for
//! reuse instead of returning them to the kernel at once. That retention is bounded by
//! the peak working set, not by the number of sessions that came and went, so the check
//! is `end ≤ baseline + tolerance` with a tolerance (default 16 MiB) above that
//! retention noise; a leak of even 1 KiB per session over a 10 minute soak (thousands of
//! sessions) exceeds it, and the table check catches leaks of entries at any size.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use control::EngineStats;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::child::{Line, Proc};
use crate::procfs;
use crate::scenario::{EngineProc, Options, confine, engine_stats, locate, secs, start_engine};

/// Settings of the churn soak.
#[derive(Debug, Clone)]
pub struct ChurnOptions {
    /// How long waves keep starting, seconds.
    pub churn_secs: f64,
    /// Engine shards.
    pub shards: usize,
    /// Rooms per wave.
    pub wave_rooms: usize,
    /// Subscribers per room.
    pub wave_subscribers: usize,
    /// Media time of one wave (after its peers connected), seconds.
    pub wave_secs: f64,
    /// Waves running at once.
    pub overlap: usize,
    /// The engine's connect timeout (`--connect-timeout`), seconds: sessions not
    /// connected by then are closed, and its lazily drained deadline queue
    /// (`connect_deadlines`) is empty this long after the last session was created.
    pub engine_connect_timeout: u64,
    /// How long the tables may take to return to their baseline after the last wave,
    /// seconds (on top of the engine's connect timeout).
    pub settle_secs: f64,
    /// Allowed RSS growth over the warm baseline, KiB.
    pub rss_tolerance_kib: u64,
    /// Interval between samples of `engine.stats` and RSS.
    pub sample_every: Duration,
    /// Video bitrate per publisher, kbit/s.
    pub video_kbps: u32,
}

impl Default for ChurnOptions {
    fn default() -> Self {
        ChurnOptions {
            churn_secs: 600.0,
            shards: 2,
            wave_rooms: 2,
            wave_subscribers: 2,
            wave_secs: 4.0,
            overlap: 2,
            engine_connect_timeout: 10,
            settle_secs: 30.0,
            rss_tolerance_kib: 16 * 1024,
            sample_every: Duration::from_millis(500),
            video_kbps: 300,
        }
    }
}

/// Baseline, peak and end of one measured quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Before the churn (see the module docs for which moment).
    pub baseline: u64,
    /// The highest value sampled.
    pub peak: u64,
    /// After every session is gone (and the tables settled, or the settle time ran out).
    pub end: u64,
}

/// One per-shard table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpan {
    /// Shard index.
    pub shard: u32,
    /// Table name (a key of `engine.stats` → `shards[].maps`).
    pub name: String,
    /// Its entries.
    #[serde(flatten)]
    pub span: Span,
}

/// The result of a churn soak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Seconds waves kept starting.
    pub churn_seconds: f64,
    /// Waves run (the warm-up waves excluded).
    pub waves: u64,
    /// Waves whose load generator failed to report (crashed, timed out, bad output).
    pub waves_failed: u64,
    /// Peers the waves asked for.
    pub peers_planned: u64,
    /// Peers that connected.
    pub peers_connected: u64,
    /// The first load-generator errors (at most 10).
    pub errors: Vec<String>,
    /// RSS of the idle engine before any session, KiB.
    pub rss_cold_kib: u64,
    /// RSS, KiB: baseline after the warm-up waves, peak, end.
    pub rss_kib: Span,
    /// Allowed end − baseline, KiB.
    pub rss_tolerance_kib: u64,
    /// Live sessions of the engine.
    pub sessions: Span,
    /// Live rooms of the engine.
    pub rooms: Span,
    /// Every per-shard table.
    pub maps: Vec<MapSpan>,
    /// Every 30 s of the churn: (seconds, RSS KiB, live sessions).
    pub rss_trend: Vec<(f64, u64, u64)>,
    /// Seconds from the last wave's exit until the tables were back (`None`: they were
    /// not, within the settle time).
    pub settled_after_secs: Option<f64>,
    /// Why the soak failed; empty when it passed.
    pub failures: Vec<String>,
}

impl ChurnReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// A plain-text table of the figures.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "churn: {:.0} s, {} waves ({} failed), {} of {} peers connected",
            self.churn_seconds,
            self.waves,
            self.waves_failed,
            self.peers_connected,
            self.peers_planned
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>12} {:>12}",
            "quantity", "baseline", "peak", "end"
        );
        let mut row = |name: &str, v: &Span| {
            let _ = writeln!(
                s,
                "{name:<28} {:>12} {:>12} {:>12}",
                v.baseline, v.peak, v.end
            );
        };
        row("rss_kib", &self.rss_kib);
        row("engine.sessions", &self.sessions);
        row("engine.rooms", &self.rooms);
        for m in &self.maps {
            row(&format!("shard{}.{}", m.shard, m.name), &m.span);
        }
        let _ = writeln!(
            s,
            "rss: cold {} KiB, end - baseline {} KiB (tolerance {} KiB); tables settled {}",
            self.rss_cold_kib,
            self.rss_kib.end as i64 - self.rss_kib.baseline as i64,
            self.rss_tolerance_kib,
            match self.settled_after_secs {
                Some(t) => format!("{t:.1} s after the last wave"),
                None => "NOT within the settle time".to_owned(),
            }
        );
        if self.passed() {
            let _ = writeln!(s, "PASS");
        } else {
            for f in &self.failures {
                let _ = writeln!(s, "FAIL: {f}");
            }
        }
        s
    }
}

/// Table sizes of one `engine.stats`: (shard, name) → entries.
type Maps = BTreeMap<(u32, String), u64>;

fn maps_of(s: &EngineStats) -> Maps {
    s.shards
        .iter()
        .flat_map(|sh| {
            sh.maps
                .iter()
                .map(move |(k, v)| ((sh.head.shard.0, k.clone()), *v))
        })
        .collect()
}

/// One running `rtc-loadgen` wave.
struct Wave {
    proc: Proc,
    json: String,
    /// When it must have exited (then it is killed and counted as failed).
    until: Instant,
}

impl Wave {
    /// Takes whatever the load generator printed so far (without waiting).
    fn drain(&mut self, verbose: bool) -> bool {
        loop {
            match self.proc.next_line(Instant::now()) {
                Ok(Some(Line::Out(s))) => {
                    self.json.push_str(&s);
                    self.json.push('\n');
                }
                Ok(Some(Line::Err(s))) => {
                    if verbose {
                        eprintln!("  loadgen: {s}");
                    }
                }
                // Both pipes closed: it exited.
                Ok(None) => return true,
                // Nothing yet (or its deadline passed: `finished` then reports it).
                Err(_) => return false,
            }
        }
    }
}

/// What a finished wave reported.
struct WaveResult {
    planned: u64,
    connected: u64,
    errors: Vec<String>,
}

/// Waits for the wave to exit (killing it past its deadline) and reads its report.
fn finish_wave(mut w: Wave, verbose: bool) -> Result<WaveResult, String> {
    while !w.drain(verbose) {
        if !w.proc.alive() {
            // Exited: the pumps may still hold its last lines for a moment.
            let until = Instant::now() + Duration::from_secs(2);
            while !w.drain(verbose) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        if Instant::now() >= w.until {
            w.proc.kill();
            return Err(w.proc.error("did not finish in time (killed)").to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = w.proc.wait().map_err(|e| e.to_string())?;
    let r: tools::loadgen::Report = serde_json::from_str(&w.json).map_err(|e| {
        format!(
            "wave: no JSON report (exit {status}): {e}\n{}",
            w.proc.stderr_tail()
        )
    })?;
    Ok(WaveResult {
        planned: r.peers.planned,
        connected: r.peers.connected,
        errors: r.errors,
    })
}

struct Churn<'a> {
    o: &'a Options,
    c: &'a ChurnOptions,
    engine: EngineProc,
    loadgen_bin: std::path::PathBuf,
    next_wave: u64,
    report: ChurnReport,
    /// (shard, name) → span.
    maps: BTreeMap<(u32, String), Span>,
}

impl Churn<'_> {
    fn spawn_wave(&mut self) -> Result<Wave, BenchError> {
        let n = self.next_wave;
        self.next_wave += 1;
        let mut cmd = Command::new(&self.loadgen_bin);
        confine(&mut cmd, &self.engine.pinning.loadgen);
        cmd.arg("--control").arg(&self.engine.sock).args([
            "--json".to_owned(),
            "--rooms".into(),
            self.c.wave_rooms.max(1).to_string(),
            "--publishers".into(),
            "1".into(),
            "--subscribers".into(),
            self.c.wave_subscribers.to_string(),
            "--threads".into(),
            "1".into(),
            "--duration".into(),
            format!("{}", self.c.wave_secs),
            "--ramp".into(),
            "0".into(),
            "--connect-timeout".into(),
            format!("{}", self.o.connect_timeout),
            "--video-kbps".into(),
            self.c.video_kbps.to_string(),
            "--fps".into(),
            self.o.fps.to_string(),
            "--room-prefix".into(),
            format!("churn-w{n}"),
        ]);
        let life = secs(self.o.connect_timeout + self.c.wave_secs + 60.0);
        Ok(Wave {
            proc: Proc::spawn(&format!("rtc-loadgen wave {n}"), &mut cmd, life)?,
            json: String::new(),
            until: Instant::now() + life,
        })
    }

    fn stats(&mut self) -> Result<EngineStats, BenchError> {
        if !self.engine.proc.alive() {
            return Err(self.engine.proc.error("the engine exited"));
        }
        engine_stats(&mut self.engine.ctl)
    }

    fn rss(&self) -> u64 {
        procfs::rss_kib(self.engine.proc.pid()).unwrap_or(0)
    }

    /// Samples the engine, raising the peaks.
    fn sample(&mut self) -> Result<(EngineStats, u64), BenchError> {
        let s = self.stats()?;
        let rss = self.rss();
        let r = &mut self.report;
        r.rss_kib.peak = r.rss_kib.peak.max(rss);
        r.sessions.peak = r.sessions.peak.max(s.sessions);
        r.rooms.peak = r.rooms.peak.max(s.rooms);
        for (k, v) in maps_of(&s) {
            let e = self.maps.entry(k).or_default();
            e.peak = e.peak.max(v);
        }
        Ok((s, rss))
    }

    fn book(&mut self, res: Result<WaveResult, String>) {
        let r = &mut self.report;
        match res {
            Ok(w) => {
                r.peers_planned += w.planned;
                r.peers_connected += w.connected;
                for e in w.errors {
                    if r.errors.len() < 10 {
                        r.errors.push(e);
                    }
                }
            }
            Err(e) => {
                r.waves_failed += 1;
                if r.errors.len() < 10 {
                    r.errors.push(e);
                }
            }
        }
    }

    /// Runs waves for `churn_secs`, then waits for the running ones.
    fn churn(&mut self, churn_secs: f64) -> Result<(), BenchError> {
        let overlap = self.c.overlap.max(1);
        let stagger = secs(self.c.wave_secs / overlap as f64);
        let start = Instant::now();
        let end = start + secs(churn_secs);
        let mut running: Vec<Wave> = Vec::new();
        let mut last_start: Option<Instant> = None;
        let mut progress = Instant::now();
        loop {
            let now = Instant::now();
            if now < end
                && running.len() < overlap
                && last_start.is_none_or(|t| now.duration_since(t) >= stagger)
            {
                running.push(self.spawn_wave()?);
                self.report.waves += 1;
                last_start = Some(now);
            }
            let mut i = 0;
            while i < running.len() {
                let w = &mut running[i];
                if w.drain(self.o.verbose) || !w.proc.alive() || Instant::now() >= w.until {
                    let w = running.swap_remove(i);
                    let res = finish_wave(w, self.o.verbose);
                    self.book(res);
                } else {
                    i += 1;
                }
            }
            if now >= end && running.is_empty() {
                break;
            }
            let (s, rss) = self.sample()?;
            if progress.elapsed() >= Duration::from_secs(30) {
                progress = Instant::now();
                self.report
                    .rss_trend
                    .push((start.elapsed().as_secs_f64(), rss, s.sessions));
                eprintln!(
                    "rtc-bench churn: {:.0} s, {} waves, {} sessions live, {} connected so far, rss {} KiB",
                    start.elapsed().as_secs_f64(),
                    self.report.waves,
                    s.sessions,
                    self.report.peers_connected,
                    rss
                );
            }
            std::thread::sleep(self.c.sample_every);
        }
        self.report.churn_seconds = start.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Runs the churn soak against a fresh `rtc-engine` (see the module docs). `Err` when
/// the harness could not run it; a report with failures when a check failed.
pub fn run_churn(o: &Options, c: &ChurnOptions) -> Result<ChurnReport, BenchError> {
    let loadgen_bin = locate(&o.bin_dir, "rtc-loadgen")?;
    let life = secs(
        c.churn_secs
            + 2.0 * (o.connect_timeout + c.wave_secs)
            + c.engine_connect_timeout as f64
            + c.settle_secs
            + 180.0,
    );
    let engine = start_engine(
        o,
        c.shards.max(1),
        "churn",
        &[
            "--connect-timeout".to_owned(),
            c.engine_connect_timeout.max(1).to_string(),
        ],
        life,
    )?;
    let mut ch = Churn {
        o,
        c,
        engine,
        loadgen_bin,
        next_wave: 0,
        report: ChurnReport {
            rss_tolerance_kib: c.rss_tolerance_kib,
            ..ChurnReport::default()
        },
        maps: BTreeMap::new(),
    };
    // Cold baseline: the idle engine.
    let (cold, cold_rss) = ch.sample()?;
    let base_maps = maps_of(&cold);
    if base_maps.is_empty() {
        return Err(BenchError::Measure(
            "engine.stats has no per-shard `maps`: an engine older than this harness?".into(),
        ));
    }
    ch.report.rss_cold_kib = cold_rss;
    ch.report.sessions.baseline = cold.sessions;
    ch.report.rooms.baseline = cold.rooms;
    for (k, v) in &base_maps {
        ch.maps.insert(
            k.clone(),
            Span {
                baseline: *v,
                peak: *v,
                end: *v,
            },
        );
    }
    // Warm-up: as many waves as run at once in the churn, started as in the churn, so
    // that the allocator's heaps reach the churn's working size; the RSS baseline is
    // taken once their sessions and rooms are gone.
    eprintln!("rtc-bench churn: warm-up ({} waves) ...", c.overlap.max(1));
    ch.churn(c.wave_secs * 0.99)?;
    if ch.report.peers_connected == 0 {
        return Err(BenchError::Child(format!(
            "warm-up: no peer connected ({} waves failed): {:?}",
            ch.report.waves_failed, ch.report.errors
        )));
    }
    ch.report = ChurnReport {
        rss_tolerance_kib: c.rss_tolerance_kib,
        rss_cold_kib: cold_rss,
        rss_kib: ch.report.rss_kib,
        sessions: ch.report.sessions,
        rooms: ch.report.rooms,
        ..ChurnReport::default()
    };
    let until = Instant::now() + secs(c.settle_secs + c.engine_connect_timeout as f64);
    loop {
        let (s, _) = ch.sample()?;
        if s.sessions == cold.sessions && s.rooms == cold.rooms {
            break;
        }
        if Instant::now() >= until {
            return Err(BenchError::Measure(format!(
                "after the warm-up the engine still has {} sessions and {} rooms",
                s.sessions, s.rooms
            )));
        }
        std::thread::sleep(c.sample_every);
    }
    // Give the allocator's delayed purge a moment, as at the end.
    std::thread::sleep(Duration::from_secs(1));
    ch.report.rss_kib.baseline = ch.rss();
    eprintln!(
        "rtc-bench churn: baseline rss {} KiB (cold {} KiB); churning for {} s ...",
        ch.report.rss_kib.baseline, cold_rss, c.churn_secs
    );
    ch.churn(c.churn_secs)?;
    // Every wave is gone: wait for the tables to return.
    let done = Instant::now();
    let until = done + secs(c.settle_secs + c.engine_connect_timeout as f64);
    let last = loop {
        let (s, _) = ch.sample()?;
        let back = maps_of(&s) == base_maps && s.sessions == cold.sessions && s.rooms == cold.rooms;
        if back {
            ch.report.settled_after_secs = Some(done.elapsed().as_secs_f64());
            break s;
        }
        if Instant::now() >= until {
            break s;
        }
        std::thread::sleep(c.sample_every);
    };
    std::thread::sleep(Duration::from_secs(1));
    ch.report.rss_kib.end = ch.rss();
    ch.report.rss_kib.peak = ch.report.rss_kib.peak.max(ch.report.rss_kib.end);
    ch.report.sessions.end = last.sessions;
    ch.report.rooms.end = last.rooms;
    let end_maps = maps_of(&last);
    for (k, span) in &mut ch.maps {
        span.end = end_maps.get(k).copied().unwrap_or(0);
    }
    ch.report.maps = ch
        .maps
        .iter()
        .map(|((shard, name), span)| MapSpan {
            shard: *shard,
            name: name.clone(),
            span: *span,
        })
        .collect();
    ch.report.failures = verdict(&ch.report);
    let report = ch.report.clone();
    ch.engine.proc.stop();
    Ok(report)
}

/// The checks of a finished soak: every table, the engine's sessions and rooms back at
/// their baseline, RSS within the tolerance, and something actually churned.
pub fn verdict(r: &ChurnReport) -> Vec<String> {
    let mut failures = Vec::new();
    for m in r.maps.iter().filter(|m| m.span.end != m.span.baseline) {
        failures.push(format!(
            "shard {} table `{}` has {} entries after the churn (baseline {})",
            m.shard, m.name, m.span.end, m.span.baseline
        ));
    }
    if r.sessions.end != r.sessions.baseline {
        failures.push(format!(
            "{} sessions left after the churn (baseline {})",
            r.sessions.end, r.sessions.baseline
        ));
    }
    if r.rooms.end != r.rooms.baseline {
        failures.push(format!(
            "{} rooms left after the churn (baseline {})",
            r.rooms.end, r.rooms.baseline
        ));
    }
    if r.rss_kib.end > r.rss_kib.baseline.saturating_add(r.rss_tolerance_kib) {
        failures.push(format!(
            "RSS grew by {} KiB over the warm baseline (tolerance {} KiB)",
            r.rss_kib.end - r.rss_kib.baseline,
            r.rss_tolerance_kib
        ));
    }
    if r.peers_connected == 0 {
        failures.push("no peer connected during the churn: nothing was soaked".to_owned());
    }
    if r.sessions.peak == 0 {
        failures.push("no session was ever seen live during the churn".to_owned());
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> ChurnReport {
        let span = |baseline, peak, end| Span {
            baseline,
            peak,
            end,
        };
        ChurnReport {
            peers_connected: 40,
            rss_kib: span(60_000, 70_000, 65_000),
            rss_tolerance_kib: 16 * 1024,
            sessions: span(0, 12, 0),
            rooms: span(0, 4, 0),
            maps: vec![MapSpan {
                shard: 0,
                name: "by_addr".into(),
                span: span(0, 6, 0),
            }],
            ..ChurnReport::default()
        }
    }

    #[test]
    fn a_clean_soak_passes() {
        assert!(verdict(&clean()).is_empty(), "{:?}", verdict(&clean()));
    }

    #[test]
    fn a_table_not_back_at_its_baseline_fails_the_soak() {
        let mut r = clean();
        r.maps[0].span.end = 1;
        let f = verdict(&r);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("by_addr"), "{f:?}");
    }

    #[test]
    fn rss_growth_beyond_the_tolerance_fails_the_soak() {
        let mut r = clean();
        r.rss_kib.end = r.rss_kib.baseline + r.rss_tolerance_kib;
        assert!(verdict(&r).is_empty());
        r.rss_kib.end += 1;
        assert!(verdict(&r)[0].contains("RSS grew"), "{:?}", verdict(&r));
    }

    #[test]
    fn leftover_sessions_or_rooms_or_no_churn_fail_the_soak() {
        let mut r = clean();
        r.sessions.end = 2;
        r.rooms.end = 1;
        assert_eq!(verdict(&r).len(), 2);
        let mut r = clean();
        r.peers_connected = 0;
        r.sessions.peak = 0;
        assert_eq!(verdict(&r).len(), 2);
    }
}
