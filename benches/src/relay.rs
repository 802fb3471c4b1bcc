//! Cascading: one publisher → `subscribers` split over two `rtc-engine` processes joined
//! by a relay, against the same fan-out on one engine in the same invocation.
//!
//! The relay run starts engine A and engine B (both on 127.0.0.1, ephemeral ports),
//! connects a relay from A to B over their control sockets (`relay.listen` on B,
//! `relay.connect` on A, `relay.accept` on B) and waits until both ends are connected.
//! Then `rtc-loadgen --control A --relay-control B --relay RA:RB --relay-local N` sets
//! up the publisher and `N` subscribers on A and the other subscribers on B; for B's
//! first subscriber it relays the publisher's track (`relay.publish` on A,
//! `relay.attach` and `publish` of the relay session on B), and B's subscribers
//! subscribe to the relay session. The baseline is [`scenario::run_engine`] with the same
//! fan-out on one engine, run just before.
//!
//! Figures over the load generator's steady window (samples at its first and last
//! progress lines, both engines and both relay ends read at each):
//!
//! * per engine: packets forwarded (the shards' `forward_us` counts: on A every local
//!   subscriber leg plus the relay's leg, on B every subscriber leg fed by the relay),
//!   CPU (`/proc`, all threads) per forwarded packet, engine-side latency (`forward_ns`);
//! * **relayed**: RTP packets that crossed the relay (the relay end on B's inbound track
//!   packets; `session.stats` of the sending end on A lists no tracks, so A's side is
//!   reported as the UDP datagrams its relay end sent, RTP plus keepalives and RTCP);
//! * **delivered**: packets forwarded to subscribers, `fwd_A + fwd_B − relayed` (the
//!   relay leg is not a subscriber);
//! * **relay hop cost per relayed packet**: `(CPU_A + CPU_B − c_single × delivered) /
//!   relayed`, where `c_single` is the one-engine run's CPU per forwarded packet: the CPU
//!   the two engines spent beyond what one engine spends delivering as many packets,
//!   per packet that crossed the relay (A's extra leg with its SRTP encryption and send,
//!   B's receive, decryption and layer cache, and the second process's fixed costs:
//!   timers, keepalives, RTCP, its idle loop). It is also given in units of
//!   `c_single` ("forwards": how many in-engine forwards one crossing costs), and the
//!   cascade's CPU per delivered packet as a ratio to the one-engine run.
//!
//! The hop is a few percent of a 1 → 100 run's CPU, below one pair of runs' noise on a
//! shared VM, so the pair (one engine, then two) runs `rounds` times in a row and the
//! report gives every round's hop cost and ratio and their medians; the table shows the
//! round whose hop cost is the median. Compare ratios, not absolute figures across
//! invocations.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use control::{
    ControlClient, LatencyBuckets, RelayAccept, RelayConnect, RelayListen, Request, Response,
    SessionRef, SessionState, SessionStats,
};
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::child::Proc;
use crate::report::{LatencyMs, Row};
use crate::scenario::{
    self, EngineProc, Options, Workload, cpu_of, engine_stats, follow_loadgen, forwarded,
    latency_us, merged_forward_ns, pct, secs,
};

/// How the relay scenario runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// Subscribers of the one publisher, over both engines.
    pub subscribers: usize,
    /// Of them, on engine B (through the relay); the rest are on A with the publisher.
    pub on_b: usize,
    /// Shards of each engine (and of the one-engine baseline).
    pub shards: usize,
    /// Pairs of runs (one engine, then two).
    pub rounds: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            subscribers: 100,
            on_b: 50,
            shards: 1,
            rounds: 3,
        }
    }
}

/// One engine of the relay run, over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineSide {
    /// Sessions on the engine (including the relay's end).
    pub sessions: u64,
    /// Packets forwarded (the shards' `forward_us` count).
    pub forwarded: u64,
    /// Forwarded per second.
    pub fwd_pps: f64,
    /// Engine CPU over the window, microseconds.
    pub cpu_us: f64,
    /// Engine CPU per forwarded packet, microseconds.
    pub cpu_us_per_pkt: Option<f64>,
    /// Engine CPU, percent of one core.
    pub cpu_pct: f64,
    /// Engine-side forwarding latency (`forward_ns`), microseconds.
    pub engine_latency_us: Option<LatencyMs>,
}

/// The whole relay scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Subscribers in all.
    pub subscribers: usize,
    /// Subscribers on engine B.
    pub on_b: usize,
    /// Shards per engine.
    pub shards: usize,
    /// The one-engine baseline (same fan-out, same invocation).
    pub single: Row,
    /// The relay run as one row: both engines' CPU over packets delivered to
    /// subscribers; loss and latency of the load generator (all subscribers).
    pub relay: Row,
    /// The load generator's latency of the subscribers on B only (through the relay),
    /// ms; `relay.latency_ms` covers every subscriber.
    pub relayed_latency_ms: Option<LatencyMs>,
    /// Engine A (publisher, local subscribers, relay's sending end).
    pub a: EngineSide,
    /// Engine B (relay's receiving end, remote subscribers).
    pub b: EngineSide,
    /// RTP packets that crossed the relay in the window (received by its end on B).
    pub relayed: u64,
    /// UDP datagrams the relay's end on A sent in the window (RTP, keepalives, RTCP).
    pub relay_datagrams_out: u64,
    /// Packets delivered to subscribers in the window (`fwd_A + fwd_B − relayed`).
    pub delivered: u64,
    /// The relay's RTT on A at the end of the window, ms.
    pub relay_rtt_ms: Option<f64>,
    /// Packets B's relay end counted lost, and NACKs it sent, over the whole run.
    pub relay_lost: u64,
    /// NACKs B's relay end sent over the whole run.
    pub relay_nacks: u64,
    /// Whole run (relay up to the end of the load): RTP packets B's relay end received.
    pub total_relayed: u64,
    /// Whole run: UDP datagrams A's relay end sent.
    pub total_relay_datagrams_out: u64,
    /// Whole run: packets B forwarded to its subscribers.
    pub total_b_forwarded: u64,
    /// Whole run: packets A forwarded (local subscribers and the relay leg).
    pub total_a_forwarded: u64,
    /// Relay hop cost per relayed packet, microseconds (module docs).
    pub hop_us_per_relayed: Option<f64>,
    /// The same in units of the baseline's CPU per forwarded packet.
    pub hop_in_forwards: Option<f64>,
    /// The relay run's CPU per delivered packet over the baseline's.
    pub cpu_ratio: Option<f64>,
    /// Every round's figures, in run order (the fields above are the median round's).
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// One round's headline figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The one-engine run's CPU per forwarded packet, µs.
    pub single_cpu_us_per_pkt: Option<f64>,
    /// The relay run's CPU (both engines) per delivered packet, µs.
    pub relay_cpu_us_per_pkt: Option<f64>,
    /// Relay hop cost per relayed packet, µs.
    pub hop_us_per_relayed: Option<f64>,
    /// The same in in-engine forwards.
    pub hop_in_forwards: Option<f64>,
    /// Relay run's CPU per delivered packet over the one-engine run's.
    pub cpu_ratio: Option<f64>,
    /// Load-generator loss of the one-engine and the relay run.
    pub loss: (f64, f64),
}

/// The median of the finite values (mean of the middle two for an even count).
pub fn median(v: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = v.into_iter().flatten().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn f(v: Option<f64>, p: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.p$}"))
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

impl RelayReport {
    /// The text report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let on_a = self.subscribers.saturating_sub(self.on_b);
        let _ = writeln!(
            s,
            "relay: 1 -> {} ({} on A with the publisher, {} on B through one relay), {} shard(s) per engine, window {:.1} s",
            self.subscribers, on_a, self.on_b, self.shards, self.relay.seconds
        );
        let _ = writeln!(
            s,
            "{:<8} {:>6} {:>6} {:>10} {:>10} {:>6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
            "run",
            "engine",
            "sess",
            "fwd pps",
            "cpu us/pkt",
            "cpu%",
            "eng p50",
            "eng p99",
            "eng p99.9",
            "loss%",
            "lg p50ms",
            "lg p99ms"
        );
        let lat = |l: Option<&LatencyMs>, pick: fn(&LatencyMs) -> f64| f(l.map(pick), 0);
        let lg = |r: &Row| {
            if r.latency_ms.count > 0 {
                (
                    format!("{:.3}", r.latency_ms.p50),
                    format!("{:.3}", r.latency_ms.p99),
                )
            } else {
                ("-".to_owned(), "-".to_owned())
            }
        };
        let (p50, p99) = lg(&self.single);
        let el = self.single.engine_latency_us.as_ref();
        let _ = writeln!(
            s,
            "{:<8} {:>6} {:>6} {:>10.0} {:>10} {:>6.0} {:>8} {:>8} {:>9} {:>8.3} {:>8} {:>8}",
            "single",
            "1",
            self.single.sessions,
            self.single.fwd_pps,
            f(self.single.cpu_us_per_pkt, 2),
            self.single.cpu_pct,
            lat(el, |l| l.p50),
            lat(el, |l| l.p99),
            lat(el, |l| l.p999),
            self.single.loss * 100.0,
            p50,
            p99
        );
        for (name, e) in [("A", &self.a), ("B", &self.b)] {
            let el = e.engine_latency_us.as_ref();
            let _ = writeln!(
                s,
                "{:<8} {:>6} {:>6} {:>10.0} {:>10} {:>6.0} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
                "relay",
                name,
                e.sessions,
                e.fwd_pps,
                f(e.cpu_us_per_pkt, 2),
                e.cpu_pct,
                lat(el, |l| l.p50),
                lat(el, |l| l.p99),
                lat(el, |l| l.p999),
                "",
                "",
                ""
            );
        }
        let (p50, p99) = lg(&self.relay);
        let _ = writeln!(
            s,
            "{:<8} {:>6} {:>6} {:>10.0} {:>10} {:>6.0} {:>8} {:>8} {:>9} {:>8.3} {:>8} {:>8}",
            "relay",
            "A+B",
            self.a.sessions + self.b.sessions,
            self.relay.fwd_pps,
            f(self.relay.cpu_us_per_pkt, 2),
            self.relay.cpu_pct,
            "",
            "",
            "",
            self.relay.loss * 100.0,
            p50,
            p99
        );
        let ms = |l: &LatencyMs| {
            if l.count > 0 {
                format!("{:.3} / {:.3} / {:.3}", l.p50, l.p99, l.p999)
            } else {
                "-".to_owned()
            }
        };
        let _ = writeln!(
            s,
            "load generator latency p50 / p99 / p99.9 ms: single {}; relay, all subscribers {}; relay, subscribers on B {}",
            ms(&self.single.latency_ms),
            ms(&self.relay.latency_ms),
            self.relayed_latency_ms
                .as_ref()
                .map_or_else(|| "-".to_owned(), ms)
        );
        let _ = writeln!(
            s,
            "(fwd pps: A counts its relay leg; A+B: packets delivered to subscribers = fwd_A + fwd_B - relayed; cpu us/pkt of A+B: (CPU_A + CPU_B) / delivered; eng p*: engine-side forward_ns, us; lg: load generator, all subscribers)"
        );
        let _ = writeln!(
            s,
            "relayed: {} RTP packets A -> B in the window (A's relay end sent {} datagrams); whole run: {} RTP packets, {} datagrams, {} lost, {} NACKs; relay rtt {} ms",
            self.relayed,
            self.relay_datagrams_out,
            self.total_relayed,
            self.total_relay_datagrams_out,
            self.relay_lost,
            self.relay_nacks,
            f(self.relay_rtt_ms, 2)
        );
        let _ = writeln!(
            s,
            "relay hop cost = (CPU_A + CPU_B - {} us/pkt single x {} delivered) / {} relayed = {} us per relayed packet = {} in-engine forwards; cascade CPU per delivered packet = {} x single",
            f(self.single.cpu_us_per_pkt, 2),
            self.delivered,
            self.relayed,
            f(self.hop_us_per_relayed, 1),
            f(self.hop_in_forwards, 1),
            f(self.cpu_ratio, 2),
        );
        if self.rounds.len() > 1 {
            let list = |g: fn(&Round) -> Option<f64>, p: usize| {
                self.rounds
                    .iter()
                    .map(|r| f(g(r), p))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                s,
                "{} rounds (table: the median round): hop us/relayed [{}] median {}; in forwards [{}] median {}; cascade/single CPU per delivered packet [{}] median {}; single us/pkt [{}]; relay us/pkt [{}]; loss% single/relay [{}]",
                self.rounds.len(),
                list(|r| r.hop_us_per_relayed, 1),
                f(median(self.rounds.iter().map(|r| r.hop_us_per_relayed)), 1),
                list(|r| r.hop_in_forwards, 1),
                f(median(self.rounds.iter().map(|r| r.hop_in_forwards)), 1),
                list(|r| r.cpu_ratio, 3),
                f(median(self.rounds.iter().map(|r| r.cpu_ratio)), 3),
                list(|r| r.single_cpu_us_per_pkt, 2),
                list(|r| r.relay_cpu_us_per_pkt, 2),
                self.rounds
                    .iter()
                    .map(|r| format!("{:.3}/{:.3}", r.loss.0 * 100.0, r.loss.1 * 100.0))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let mut seen: Vec<&String> = Vec::new();
        for n in self.single.notes.iter().chain(&self.notes) {
            if !seen.contains(&n) {
                seen.push(n);
                let _ = writeln!(s, "note: {n}");
            }
        }
        s
    }

    /// Fills in the derived figures (`delivered`, the relay row's rates, the hop cost and
    /// the ratios) from the measured ones.
    pub fn derive(&mut self) {
        self.delivered = (self.a.forwarded + self.b.forwarded).saturating_sub(self.relayed);
        let wall = self.relay.seconds;
        let cpu_us = self.a.cpu_us + self.b.cpu_us;
        self.relay.fwd_pps = if wall > 0.0 {
            self.delivered as f64 / wall
        } else {
            0.0
        };
        self.relay.cpu_us_per_pkt = ratio(cpu_us, self.delivered as f64);
        self.relay.cpu_pct = self.a.cpu_pct + self.b.cpu_pct;
        let single = self.single.cpu_us_per_pkt.filter(|c| *c > 0.0);
        self.hop_us_per_relayed =
            single.and_then(|c| ratio(cpu_us - c * self.delivered as f64, self.relayed as f64));
        self.hop_in_forwards = match (self.hop_us_per_relayed, single) {
            (Some(h), Some(c)) => ratio(h, c),
            _ => None,
        };
        self.cpu_ratio = match (self.relay.cpu_us_per_pkt, single) {
            (Some(r), Some(c)) => ratio(r, c),
            _ => None,
        };
    }
}

/// RTP packets of a receiving relay end's media tracks (not the keepalive section):
/// (packets, lost, nacks).
fn relay_packets(s: &SessionStats) -> (u64, u64, u64) {
    s.tracks
        .iter()
        .filter(|t| t.inbound && t.track.0 != "ka")
        .fold((0, 0, 0), |(p, l, n), t| {
            (p + t.packets, l + t.lost, n + t.nacks)
        })
}

fn session_stats(
    c: &mut ControlClient,
    id: control::SessionId,
) -> Result<SessionStats, BenchError> {
    match c.request(Request::SessionStats(SessionRef { session: id })) {
        Ok(Response::SessionStats(s)) => Ok(s),
        Ok(_) => Err(BenchError::Measure(
            "session.stats: unexpected response".into(),
        )),
        Err(e) => Err(BenchError::Measure(format!("session.stats {}: {e}", id.0))),
    }
}

/// One reading of an engine and its relay end.
#[derive(Debug, Clone)]
struct Side {
    forwarded: u64,
    sessions: u64,
    cpu: Duration,
    forward_ns: LatencyBuckets,
    relay: SessionStats,
}

fn read_side(e: &mut EngineProc, relay: control::SessionId) -> Result<Side, BenchError> {
    let s = engine_stats(&mut e.ctl)?;
    Ok(Side {
        forwarded: forwarded(&s),
        sessions: s.sessions,
        cpu: cpu_of(e.proc.pid()),
        forward_ns: merged_forward_ns(&s),
        relay: session_stats(&mut e.ctl, relay)?,
    })
}

/// Both engines read at one instant (as close as two control round trips allow).
#[derive(Debug, Clone)]
struct Both {
    at: Instant,
    a: Side,
    b: Side,
    loadgen_cpu: Duration,
}

fn read_both(
    a: &mut EngineProc,
    b: &mut EngineProc,
    ra: control::SessionId,
    rb: control::SessionId,
    loadgen: u32,
) -> Result<Both, BenchError> {
    let at = Instant::now();
    Ok(Both {
        at,
        a: read_side(a, ra)?,
        b: read_side(b, rb)?,
        loadgen_cpu: cpu_of(loadgen),
    })
}

fn side(first: &Side, last: &Side, wall: f64) -> EngineSide {
    let fwd = last.forwarded.saturating_sub(first.forwarded);
    let cpu = last.cpu.saturating_sub(first.cpu);
    let cpu_us = cpu.as_secs_f64() * 1e6;
    EngineSide {
        sessions: first.sessions,
        forwarded: fwd,
        fwd_pps: if wall > 0.0 { fwd as f64 / wall } else { 0.0 },
        cpu_us,
        cpu_us_per_pkt: ratio(cpu_us, fwd as f64),
        cpu_pct: pct(cpu, wall),
        engine_latency_us: last
            .forward_ns
            .since(&first.forward_ns)
            .as_ref()
            .and_then(latency_us),
    }
}

/// Connects a relay from `a` to `b`: (its id on A, its id on B), once both ends are
/// connected.
fn connect_relay(
    a: &mut EngineProc,
    b: &mut EngineProc,
) -> Result<(control::SessionId, control::SessionId), BenchError> {
    let req = |c: &mut ControlClient, r: Request, what: &str| {
        c.request(r)
            .map_err(|e| BenchError::Measure(format!("{what}: {e}")))
    };
    let Response::RelayInvite(invite) = req(
        &mut b.ctl,
        Request::RelayListen(RelayListen::default()),
        "relay.listen",
    )?
    else {
        return Err(BenchError::Measure(
            "relay.listen: unexpected response".into(),
        ));
    };
    let Response::RelayAnswer(answer) = req(
        &mut a.ctl,
        Request::RelayConnect(RelayConnect {
            invite: invite.clone(),
            keepalive_ms: None,
            timeout_ms: None,
        }),
        "relay.connect",
    )?
    else {
        return Err(BenchError::Measure(
            "relay.connect: unexpected response".into(),
        ));
    };
    req(
        &mut b.ctl,
        Request::RelayAccept(RelayAccept {
            relay: invite.relay,
            answer: answer.clone(),
        }),
        "relay.accept",
    )?;
    let (ra, rb) = (answer.relay, invite.relay);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let sa = session_stats(&mut a.ctl, ra)?.state;
        let sb = session_stats(&mut b.ctl, rb)?.state;
        if sa == SessionState::Connected && sb == SessionState::Connected {
            return Ok((ra, rb));
        }
        if Instant::now() >= until {
            return Err(BenchError::Measure(format!(
                "the relay did not connect in 20 s (A: {sa:?}, B: {sb:?})"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the baseline (one engine) and the relay run (two engines).
pub fn run_relay(
    o: &Options,
    r: &RelayOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RelayReport, BenchError> {
    let subscribers = r.subscribers.max(1);
    let on_b = r.on_b.min(subscribers);
    let shards = r.shards.max(1);
    let workload = Workload::Fanout { subscribers };
    let rounds = r.rounds.max(1);
    let mut reps = Vec::with_capacity(rounds);
    for i in 1..=rounds {
        progress(&format!(
            "round {i}/{rounds}: one engine, 1 -> {subscribers}"
        ));
        let mut single = scenario::run_engine(o, shards, &workload)?;
        single.scenario = "relay".into();
        single.workload = format!("single-1x{subscribers}");
        progress(&format!(
            "round {i}/{rounds}: two engines, 1 -> {} on A + {on_b} on B through a relay",
            subscribers - on_b
        ));
        let mut rep = run_cascade(o, subscribers, on_b, shards, &workload)?;
        rep.single = single;
        rep.derive();
        reps.push(rep);
    }
    let summary: Vec<Round> = reps
        .iter()
        .map(|r| Round {
            single_cpu_us_per_pkt: r.single.cpu_us_per_pkt,
            relay_cpu_us_per_pkt: r.relay.cpu_us_per_pkt,
            hop_us_per_relayed: r.hop_us_per_relayed,
            hop_in_forwards: r.hop_in_forwards,
            cpu_ratio: r.cpu_ratio,
            loss: (r.single.loss, r.relay.loss),
        })
        .collect();
    let mid = median_index(&reps);
    // `reps` has `rounds >= 1` entries and `median_index` returns one of its indexes.
    let mut rep = reps.swap_remove(mid);
    rep.rounds = summary;
    Ok(rep)
}

/// The index of the round whose hop cost is the median (lower median for an even count;
/// rounds without one sort last); 0 for an empty list.
fn median_index(reps: &[RelayReport]) -> usize {
    let mut idx: Vec<usize> = (0..reps.len()).collect();
    idx.sort_by(|&x, &y| {
        let k = |i: usize| reps[i].hop_us_per_relayed.unwrap_or(f64::INFINITY);
        k(x).total_cmp(&k(y))
    });
    let with = reps
        .iter()
        .filter(|r| r.hop_us_per_relayed.is_some())
        .count();
    idx.get(with.saturating_sub(1) / 2).copied().unwrap_or(0)
}

fn run_cascade(
    o: &Options,
    subscribers: usize,
    on_b: usize,
    shards: usize,
    workload: &Workload,
) -> Result<RelayReport, BenchError> {
    let loadgen_bin = scenario::locate(&o.bin_dir, "rtc-loadgen")?;
    let budget = o.connect_timeout + o.secs + 90.0;
    let life = secs(budget + 30.0);
    let tag = format!("relay-{subscribers}-{on_b}");
    let mut a = scenario::start_engine(o, shards, &format!("{tag}-a"), &[], life)?;
    let mut b = scenario::start_engine(o, shards, &format!("{tag}-b"), &[], life)?;
    let (ra, rb) = connect_relay(&mut a, &mut b)?;
    let start = read_both(&mut a, &mut b, ra, rb, 0)?;
    let mut lg_cmd = Command::new(&loadgen_bin);
    scenario::confine(&mut lg_cmd, &a.pinning.loadgen);
    let mut lg = Proc::spawn(
        "rtc-loadgen",
        lg_cmd
            .arg("--control")
            .arg(&a.sock)
            .arg("--relay-control")
            .arg(&b.sock)
            .args([
                "--relay".to_owned(),
                format!("{}:{}", ra.0, rb.0),
                "--relay-local".to_owned(),
                (subscribers - on_b).to_string(),
            ])
            .args(workload.loadgen_args(o)),
        secs(budget),
    )?;
    let lg_pid = lg.pid();
    let until = Instant::now() + secs(budget);
    let (steady, json) = follow_loadgen(&mut lg, until, o.verbose, || {
        read_both(&mut a, &mut b, ra, rb, lg_pid)
    })?;
    let status = lg.wait()?;
    let end = read_both(&mut a, &mut b, ra, rb, 0)?;
    let report: tools::loadgen::Report = serde_json::from_str(&json)
        .map_err(|e| lg.error(&format!("no JSON report (exit {status}): {e}")))?;
    a.proc.stop();
    b.proc.stop();

    let mut rep = RelayReport {
        subscribers,
        on_b,
        shards,
        ..RelayReport::default()
    };
    rep.notes.push(a.pinning.note.clone());
    if report.peers.connected < report.peers.planned {
        rep.notes.push(format!(
            "{} of {} peers connected",
            report.peers.connected, report.peers.planned
        ));
    }
    if report.received.checks.corrupt > 0 {
        rep.notes.push(format!(
            "{} corrupt payloads",
            report.received.checks.corrupt
        ));
    }
    if let Some(e) = report.errors.first() {
        rep.notes.push(format!("loadgen: {e}"));
    }
    rep.relay = Row {
        scenario: "relay".into(),
        workload: format!("relay-1x{subscribers}-b{on_b}"),
        shards,
        fanout: subscribers,
        sessions: report.peers.connected,
        loss: report.received.loss_ratio,
        latency_ms: LatencyMs::from(&report.latency_ms),
        ..Row::default()
    };
    rep.relayed_latency_ms = report.latency_relayed_ms.as_ref().map(LatencyMs::from);
    let (tot_in, lost, nacks) = relay_packets(&end.b.relay);
    let (in0, _, _) = relay_packets(&start.b.relay);
    rep.total_relayed = tot_in.saturating_sub(in0);
    rep.total_relay_datagrams_out = end
        .a
        .relay
        .packets_out
        .saturating_sub(start.a.relay.packets_out);
    rep.relay_lost = lost;
    rep.relay_nacks = nacks;
    rep.total_a_forwarded = end.a.forwarded.saturating_sub(start.a.forwarded);
    rep.total_b_forwarded = end.b.forwarded.saturating_sub(start.b.forwarded);
    if let (Some(first), Some(last)) = (steady.first(), steady.last())
        && steady.len() >= 2
    {
        let wall = last.at.duration_since(first.at).as_secs_f64();
        rep.relay.seconds = wall;
        rep.relay.loadgen_cpu_pct = pct(last.loadgen_cpu.saturating_sub(first.loadgen_cpu), wall);
        rep.a = side(&first.a, &last.a, wall);
        rep.b = side(&first.b, &last.b, wall);
        rep.relayed = relay_packets(&last.b.relay)
            .0
            .saturating_sub(relay_packets(&first.b.relay).0);
        rep.relay_datagrams_out = last
            .a
            .relay
            .packets_out
            .saturating_sub(first.a.relay.packets_out);
        rep.relay_rtt_ms = last.a.relay.rtt_ms;
    } else {
        rep.notes
            .push("fewer than two steady-phase samples: raise --secs".to_owned());
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_cost_is_the_cpu_beyond_one_engine_per_relayed_packet() {
        let mut r = RelayReport {
            subscribers: 100,
            on_b: 50,
            shards: 1,
            single: Row {
                cpu_us_per_pkt: Some(5.0),
                ..Row::default()
            },
            relay: Row {
                seconds: 2.0,
                ..Row::default()
            },
            // 1000 publisher packets: A forwards 50 + 1 legs, B 50.
            a: EngineSide {
                forwarded: 51_000,
                cpu_us: 260_000.0,
                cpu_pct: 13.0,
                ..EngineSide::default()
            },
            b: EngineSide {
                forwarded: 50_000,
                cpu_us: 260_000.0,
                cpu_pct: 13.0,
                ..EngineSide::default()
            },
            relayed: 1000,
            ..RelayReport::default()
        };
        r.derive();
        assert_eq!(r.delivered, 100_000);
        // 520 ms of CPU where one engine would spend 500 ms: 20 us per relayed packet.
        assert!((r.hop_us_per_relayed.unwrap() - 20.0).abs() < 1e-9);
        assert!((r.hop_in_forwards.unwrap() - 4.0).abs() < 1e-9);
        assert!((r.cpu_ratio.unwrap() - 1.04).abs() < 1e-9);
        assert!((r.relay.fwd_pps - 50_000.0).abs() < 1e-9);
        let t = r.table();
        assert!(t.contains("20.0 us per relayed packet"), "{t}");
        assert!(t.contains("1.04 x single"), "{t}");
    }

    #[test]
    fn the_median_round_is_picked_and_medians_skip_missing_values() {
        let rep = |h: Option<f64>| RelayReport {
            hop_us_per_relayed: h,
            ..RelayReport::default()
        };
        let reps = [rep(Some(9.0)), rep(None), rep(Some(-3.0)), rep(Some(4.0))];
        assert_eq!(median_index(&reps), 3);
        assert_eq!(median_index(&reps[..2]), 0);
        assert_eq!(median_index(&[]), 0);
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(3.0), Some(1.0)]), Some(2.0));
        assert_eq!(median([None, Some(f64::NAN)]), None);
    }

    #[test]
    fn nothing_relayed_gives_no_hop_cost() {
        let mut r = RelayReport::default();
        r.derive();
        assert_eq!(r.hop_us_per_relayed, None);
        assert_eq!(r.cpu_ratio, None);
        assert!(r.table().contains("relay hop cost"));
    }
}
