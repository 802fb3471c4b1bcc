//! Running one scenario: the floor (two `rtc-bench` child processes) or the engine
//! (`rtc-engine` + `rtc-loadgen --control`), sampling `/proc` and `engine.stats` over
//! the measurement window.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control::{
    ControlClient, EngineStats, Event, EventKind, EventsSubscribe, LatencyBuckets, Request,
    Response, SessionState,
};

use crate::BenchError;
use crate::child::{Line, Proc, TempDir};
use crate::floor::{LatencyMs, LoadReport};
use crate::procfs;
use crate::report::Row;

/// Settings shared by every scenario.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding `rtc-engine` and `rtc-loadgen`.
    pub bin_dir: PathBuf,
    /// The `rtc-bench` executable (for the floor's hidden subcommands).
    pub bench_exe: PathBuf,
    /// Measurement window per run, seconds.
    pub secs: f64,
    /// Floor warm-up before the window, seconds.
    pub warmup: f64,
    /// I/O backend for the engine and the floor (`auto`, `io-uring`, `portable`).
    pub backend: String,
    /// Load-generator event-loop threads.
    pub loadgen_threads: usize,
    /// Publisher video bitrate in the fan-out workload, kbit/s.
    pub video_kbps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Floor: datagrams per second (0: closed loop, as fast as it goes).
    pub floor_rate: u64,
    /// Floor: datagrams in flight (closed loop).
    pub floor_window: u64,
    /// Seconds the load generator waits for the last peers to connect.
    pub connect_timeout: f64,
    /// Print progress to stderr.
    pub verbose: bool,
    /// More `rtc-engine` arguments for every engine the run starts (after the
    /// workload's own, so they win).
    pub engine_args: Vec<String>,
}

/// What the load generator runs against the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// One publisher (video) → `subscribers`.
    Fanout {
        /// Subscribers.
        subscribers: usize,
    },
    /// `rooms` rooms of one video publisher → `subscribers` each (the saturation
    /// ladder's load: more publishers, not more bits per publisher).
    Fanouts {
        /// Rooms.
        rooms: usize,
        /// Subscribers per room.
        subscribers: usize,
    },
    /// `rooms` rooms of one publisher (audio + video) and `size - 1` subscribers.
    Rooms {
        /// Rooms.
        rooms: usize,
        /// Peers per room (2–4).
        size: usize,
    },
    /// `sessions / 2` rooms of one audio publisher (50 packets/s) and one subscriber.
    Audio {
        /// Sessions (publishers + subscribers).
        sessions: usize,
    },
    /// One simulcast publisher (three VP8 layers: 150, 500, 1500 kbit/s) →
    /// `subscribers`, subscriber `i` capped at layer `i % 3` with `track.set_preference`
    /// (`rtc-loadgen --simulcast`): the "mixed link sizes" are set by preference, not by
    /// shaped links.
    Simulcast {
        /// Subscribers.
        subscribers: usize,
    },
    /// Density: `sessions / 2` rooms of one audio publisher and one subscriber, the
    /// publishers DTX-like (one packet every [`DENSITY_AUDIO_PERIOD_MS`] ms, what Opus
    /// DTX sends in silence), consent running, on one shard: the figure is the engine's
    /// RSS per connected session.
    Density {
        /// Sessions (publishers + subscribers).
        sessions: usize,
    },
    /// As [`Workload::Audio`], set up as fast as signalling goes: connects per second;
    /// connected publishers send one packet every [`STORM_AUDIO_PERIOD_MS`] ms.
    Storm {
        /// Sessions.
        sessions: usize,
    },
}

impl Workload {
    /// Short name (`fanout-50`, ...).
    pub fn name(&self) -> String {
        match self {
            Workload::Fanout { subscribers } => format!("fanout-{subscribers}"),
            Workload::Fanouts { rooms, subscribers } => format!("fanout-{subscribers}x{rooms}"),
            Workload::Rooms { rooms, size } => format!("rooms-{rooms}x{size}"),
            Workload::Audio { sessions } => format!("audio-{sessions}"),
            Workload::Storm { sessions } => format!("storm-{sessions}"),
            Workload::Density { sessions } => format!("density-{sessions}"),
            Workload::Simulcast { subscribers } => format!("simulcast-{subscribers}"),
        }
    }

    /// Copies the server sends per media packet it receives.
    pub fn fanout(&self) -> usize {
        match self {
            Workload::Fanout { subscribers }
            | Workload::Simulcast { subscribers }
            | Workload::Fanouts { subscribers, .. } => *subscribers,
            Workload::Rooms { size, .. } => size.saturating_sub(1).max(1),
            Workload::Audio { .. } | Workload::Storm { .. } | Workload::Density { .. } => 1,
        }
    }

    pub(crate) fn loadgen_args(&self, o: &Options) -> Vec<String> {
        let (rooms, subs, audio, video, ramp, secs) = match self {
            Workload::Fanout { subscribers } | Workload::Simulcast { subscribers } => {
                (1, *subscribers, false, true, 0.0, o.secs)
            }
            Workload::Fanouts { rooms, subscribers } => {
                (*rooms, *subscribers, false, true, 0.0, o.secs)
            }
            Workload::Rooms { rooms, size } => (
                *rooms,
                size.saturating_sub(1).max(1),
                true,
                true,
                0.0,
                o.secs,
            ),
            Workload::Audio { sessions } | Workload::Density { sessions } => {
                ((*sessions / 2).max(1), 1, true, false, 0.0, o.secs)
            }
            Workload::Storm { sessions } => ((*sessions / 2).max(1), 1, true, false, 0.0, 1.5),
        };
        let kbps = match self {
            Workload::Rooms { .. } => (o.video_kbps / 2).max(100),
            _ => o.video_kbps,
        };
        let mut a: Vec<String> = vec![
            "--json".into(),
            "--rooms".into(),
            rooms.to_string(),
            "--publishers".into(),
            "1".into(),
            "--subscribers".into(),
            subs.to_string(),
            "--threads".into(),
            o.loadgen_threads.to_string(),
            "--duration".into(),
            format!("{secs}"),
            "--ramp".into(),
            format!("{ramp}"),
            "--connect-timeout".into(),
            format!("{}", o.connect_timeout),
            "--video-kbps".into(),
            kbps.to_string(),
            "--fps".into(),
            o.fps.to_string(),
            "--room-prefix".into(),
            self.name(),
        ];
        if !audio {
            a.push("--no-audio".into());
        }
        if !video {
            a.push("--no-video".into());
        }
        if matches!(self, Workload::Simulcast { .. }) {
            a.push("--simulcast".into());
        }
        if matches!(self, Workload::Density { .. }) {
            a.push("--audio-period-ms".into());
            a.push(DENSITY_AUDIO_PERIOD_MS.to_string());
        }
        if matches!(self, Workload::Storm { .. }) {
            // The storm measures set-up: connected peers send the slowest audio the load
            // generator offers, so forwarding does not count as handshake CPU.
            a.push("--audio-period-ms".into());
            a.push(STORM_AUDIO_PERIOD_MS.to_string());
        }
        a
    }

    /// Extra `rtc-engine` arguments for a run on `shards` shards: the density run lifts
    /// the per-shard session cap (default 5,000) to its session count and turns
    /// transparent huge pages off; a fan-out room
    /// on more than one shard gets a room share of one shard
    /// (`--room-shard-sessions`) of its sessions over the shards, so placement spreads
    /// it evenly (with the default share of 256 a room of ≤ 256 would stay on one shard
    /// and a 2-shard run would measure one shard).
    pub(crate) fn engine_args(&self, shards: usize) -> Vec<String> {
        match self {
            // An audio-density host's settings: no transparent huge pages (~12 KiB of
            // RSS per session, `docs/benchmarks.md`).
            Workload::Density { sessions } => vec![
                "--max-sessions-per-shard".into(),
                sessions.to_string(),
                "--max-sessions".into(),
                sessions.max(&20_000).to_string(),
                "--transparent-hugepages".into(),
                "false".into(),
            ],
            Workload::Fanout { subscribers } | Workload::Simulcast { subscribers }
                if shards > 1 =>
            {
                vec![
                    "--room-shard-sessions".into(),
                    (subscribers + 1).div_ceil(shards).to_string(),
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// Milliseconds between a storm publisher's audio packets once connected (the load
/// generator's slowest): the handshake figures are not to include forwarding.
pub const STORM_AUDIO_PERIOD_MS: u64 = 2000;

/// Milliseconds between a density publisher's audio packets (Opus DTX in silence).
pub const DENSITY_AUDIO_PERIOD_MS: u64 = 400;

/// Locates a sibling binary, with a message saying how to build it.
pub fn locate(dir: &Path, name: &str) -> Result<PathBuf, BenchError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(BenchError::Child(format!(
            "{} not found; build it first: cargo build --release -p rtc-engine -p tools -p benches \
             (or pass --bin-dir)",
            p.display()
        )))
    }
}

/// Seconds as a duration (1 s for nonsense).
pub fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

pub(crate) fn cpu_of(pid: u32) -> Duration {
    procfs::cpu_time(pid).unwrap_or_default()
}

pub(crate) fn pct(cpu: Duration, wall: f64) -> f64 {
    if wall > 0.0 {
        cpu.as_secs_f64() / wall * 100.0
    } else {
        0.0
    }
}

/// Runs the floor with `fanout` receivers.
pub fn run_floor(o: &Options, fanout: usize) -> Result<Row, BenchError> {
    run_floor_batched(o, fanout, None)
}

/// [`run_floor`] with the reflector's batching fixed at `batch` datagrams per receiver
/// per GSO batch (`None`: whatever one poll brought, as [`run_floor`]).
pub fn run_floor_batched(
    o: &Options,
    fanout: usize,
    batch: Option<usize>,
) -> Result<Row, BenchError> {
    let life = o.warmup + o.secs + 30.0;
    let mut cmd = Command::new(&o.bench_exe);
    cmd.args([
        "floor-reflector",
        "--backend",
        &o.backend,
        "--max-secs",
        &format!("{life}"),
    ]);
    if let Some(b) = batch {
        cmd.args(["--batch", &b.to_string()]);
    }
    let mut refl = Proc::spawn("floor-reflector", &mut cmd, secs(life + 5.0))?;
    let until = Instant::now() + Duration::from_secs(10);
    let addr = refl.wait_for(until, |l| match l {
        Line::Out(s) => s.strip_prefix("READY ").map(str::to_owned),
        Line::Err(_) => None,
    })?;
    let mut load = Proc::spawn(
        "floor-load",
        Command::new(&o.bench_exe).args([
            "floor-load",
            "--reflector",
            &addr,
            "--fanout",
            &fanout.to_string(),
            "--secs",
            &format!("{}", o.secs),
            "--warmup",
            &format!("{}", o.warmup),
            "--rate",
            &o.floor_rate.to_string(),
            "--window",
            &o.floor_window.to_string(),
            "--backend",
            &o.backend,
        ]),
        secs(life),
    )?;
    let until = Instant::now() + secs(life);
    let is =
        |want: &'static str| move |l: &Line| matches!(l, Line::Out(s) if s == want).then_some(());
    load.wait_for(until, is("STEADY"))?;
    let (t0, r0, l0) = (Instant::now(), cpu_of(refl.pid()), cpu_of(load.pid()));
    load.wait_for(until, is("END"))?;
    let (wall, r1, l1) = (
        t0.elapsed().as_secs_f64(),
        cpu_of(refl.pid()),
        cpu_of(load.pid()),
    );
    let json = load.wait_for(until, |l| match l {
        Line::Out(s) if s.starts_with('{') => Some(s.clone()),
        _ => None,
    })?;
    let rep: LoadReport = serde_json::from_str(&json)
        .map_err(|e| load.error(&format!("bad report {json:?}: {e}")))?;
    let _ = load.wait();
    refl.stop();
    let cpu = r1.saturating_sub(r0);
    let mut notes = Vec::new();
    if rep.delivered == 0 {
        notes.push("nothing delivered".to_owned());
    }
    Ok(Row {
        scenario: "floor".into(),
        workload: match batch {
            None => format!("fanout-{fanout}"),
            Some(b) => format!("fanout-{fanout}/batch-{b}"),
        },
        shards: 0,
        fanout,
        sessions: fanout as u64,
        seconds: rep.seconds,
        fwd_pps: rep.delivered as f64 / rep.seconds.max(1e-9),
        cpu_us_per_pkt: (rep.delivered > 0).then(|| cpu.as_secs_f64() * 1e6 / rep.delivered as f64),
        cpu_pct: pct(cpu, wall),
        loadgen_cpu_pct: pct(l1.saturating_sub(l0), wall),
        loss: rep.loss,
        latency_ms: rep.latency_ms,
        notes,
        ..Row::default()
    })
}

/// One sample of the engine's counters and its and the load generator's `/proc` figures.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    forwarded: u64,
    /// Packets handed between shards (every shard's `cross_shard_out`).
    cross_shard: u64,
    /// Forwarded packets protected in place in their send buffer (every shard's
    /// `fwd_in_place`).
    in_place: u64,
    sessions: u64,
    engine_cpu: Duration,
    engine_rss: u64,
    loadgen_cpu: Duration,
    /// Every shard's `forward_ns` buckets, merged.
    forward_ns: LatencyBuckets,
    /// Datagrams sent and send messages (a datagram or a GSO batch), every shard.
    sent: (u64, u64),
}

pub(crate) fn forwarded(s: &EngineStats) -> u64 {
    // `forward_us` records one value per forwarded packet, so its count is the engine's
    // `rtp_forwarded` counter.
    s.shards
        .iter()
        .map(|x| x.histograms.get("forward_us").map_or(0, |h| h.count))
        .sum()
}

/// One `engine.stats` request.
/// Reads the load generator's output until it exits (or `until`): its stdout is the
/// JSON report, returned whole; each steady-state mark on its stderr takes a sample
/// with `on_steady`. Its stderr is echoed when `verbose`.
pub fn follow_loadgen<T>(
    lg: &mut Proc,
    until: Instant,
    verbose: bool,
    mut on_steady: impl FnMut() -> Result<T, BenchError>,
) -> Result<(Vec<T>, String), BenchError> {
    let mut samples = Vec::new();
    let mut json = String::new();
    while let Some(l) = lg.next_line(until)? {
        match l {
            Line::Out(s) => {
                json.push_str(&s);
                json.push('\n');
            }
            Line::Err(s) => {
                if verbose {
                    eprintln!("  loadgen: {s}");
                }
                if s.contains(" steady]") {
                    samples.push(on_steady()?);
                }
            }
        }
    }
    Ok((samples, json))
}

pub fn engine_stats(c: &mut ControlClient) -> Result<EngineStats, BenchError> {
    match c.request(Request::EngineStats) {
        Ok(Response::EngineStats(s)) => Ok(s),
        Ok(_) => Err(BenchError::Measure(
            "engine.stats: unexpected response".into(),
        )),
        Err(e) => Err(BenchError::Measure(format!("engine.stats: {e}"))),
    }
}

fn sample(c: &mut ControlClient, engine: u32, loadgen: u32) -> Result<Sample, BenchError> {
    let s = engine_stats(c)?;
    Ok(Sample {
        at: Instant::now(),
        forwarded: forwarded(&s),
        cross_shard: s.shards.iter().map(|x| x.detail.cross_shard_out).sum(),
        in_place: s.shards.iter().map(|x| x.detail.fwd_in_place).sum(),
        sessions: s.sessions,
        engine_cpu: cpu_of(engine),
        engine_rss: procfs::rss_kib(engine).unwrap_or(0),
        loadgen_cpu: cpu_of(loadgen),
        forward_ns: merged_forward_ns(&s),
        sent: s.shards.iter().fold((0, 0), |(d, m), x| {
            let b = &x.detail.send_batches;
            (d + b.sum, m + b.counts.iter().sum::<u64>())
        }),
    })
}

pub(crate) fn merged_forward_ns(s: &EngineStats) -> LatencyBuckets {
    let mut all = LatencyBuckets::default();
    for sh in &s.shards {
        // Every shard uses the same layout; a mismatch (an engine of another version)
        // leaves that shard out.
        let _ = all.merge(&sh.forward_ns);
    }
    all
}

/// p50/p99/p99.9 of `b`, microseconds (`None` when empty).
pub(crate) fn latency_us(b: &LatencyBuckets) -> Option<LatencyMs> {
    let us = |q: f64| b.quantile(q).map_or(0.0, |ns| ns as f64 / 1000.0);
    (b.count() > 0).then(|| LatencyMs {
        count: b.count(),
        p50: us(0.50),
        p99: us(0.99),
        p999: us(0.999),
    })
}

/// Connect events seen by a control-socket subscriber: (time, engine CPU then).
type Connects = Vec<(Instant, Duration)>;

fn watch_connects(
    path: PathBuf,
    engine: u32,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Connects>, BenchError> {
    let mut c =
        ControlClient::connect(&path).map_err(|e| BenchError::io("events connection", e))?;
    c.set_timeout(Some(Duration::from_secs(5)));
    c.request(Request::EventsSubscribe(EventsSubscribe {
        kinds: Some(vec![EventKind::SessionState]),
    }))
    .map_err(|e| BenchError::Measure(format!("events.subscribe: {e}")))?;
    Ok(std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Acquire) {
            match c.next_event(Some(Duration::from_millis(50))) {
                Ok(Some(Event::SessionState(s))) if s.state == SessionState::Connected => {
                    out.push((Instant::now(), cpu_of(engine)));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        out
    }))
}

/// Where the engine's shards and the load generator run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinning {
    /// Cores of the shards (one each); empty: the engine's default placement.
    pub engine: Vec<usize>,
    /// Cores the load generator is confined to; empty: unpinned.
    pub loadgen: Vec<usize>,
    /// What was done, for the report.
    pub note: String,
}

impl Pinning {
    /// Shards on the first `shards` of the `allowed` cores and the load generator on
    /// the rest, when there is at least one core left for it; otherwise nothing is
    /// pinned by the bench (the note says so).
    pub fn plan(shards: usize, allowed: &[usize]) -> Pinning {
        if shards == 0 || allowed.len() <= shards {
            return Pinning {
                engine: Vec::new(),
                loadgen: Vec::new(),
                note: format!(
                    "not pinned: {} core(s) for {shards} shard(s) + load generator",
                    allowed.len()
                ),
            };
        }
        let (engine, loadgen) = allowed.split_at(shards);
        Pinning {
            engine: engine.to_vec(),
            loadgen: loadgen.to_vec(),
            note: format!("pinned: shards on cores {engine:?}, load generator on {loadgen:?}"),
        }
    }
}

/// The cores this process may run on (its affinity mask), in order.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: all-zero is a valid (empty) `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c < CPU_SETSIZE`, within the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Confines the process `cmd` starts (and every thread it creates) to `cores`.
pub(crate) fn confine(cmd: &mut Command, cores: &[usize]) {
    use std::os::unix::process::CommandExt;
    if cores.is_empty() {
        return;
    }
    // SAFETY: all-zero is a valid (empty) `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cores {
        // SAFETY: `CPU_SET` ignores nothing out of range: cores come from the
        // affinity mask, so `c < CPU_SETSIZE`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: the closure runs in the child between fork and exec and only makes one
    // async-signal-safe system call on a copy of `set`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running `rtc-engine` with a control connection, in its own scratch directory.
#[derive(Debug)]
pub struct EngineProc {
    /// The process (stopped on drop).
    pub proc: Proc,
    /// A control connection (5 s timeout per request).
    pub ctl: ControlClient,
    /// Its control socket.
    pub sock: PathBuf,
    /// Where shards and load generator run.
    pub pinning: Pinning,
    /// The scratch directory of the socket (removed on drop, after the process).
    pub tmp: TempDir,
}

/// Starts `rtc-engine` with `shards` shards on loopback (statistics log off, `warn`
/// logs, the options' backend, plus `extra` arguments) and connects to its control
/// socket. `tag` names the scratch directory; `life` bounds the process's run time.
pub fn start_engine(
    o: &Options,
    shards: usize,
    tag: &str,
    extra: &[String],
    life: Duration,
) -> Result<EngineProc, BenchError> {
    let engine_bin = locate(&o.bin_dir, "rtc-engine")?;
    let tmp = TempDir::new(tag)?;
    let sock = tmp.path().join("control.sock");
    let pinning = Pinning::plan(shards, &allowed_cores());
    if o.verbose {
        eprintln!("  {tag}: {}", pinning.note);
    }
    let mut engine_cmd = Command::new(&engine_bin);
    if pinning.engine.is_empty() {
        engine_cmd.args(["--shards", &shards.to_string()]);
    } else {
        let cores: Vec<String> = pinning.engine.iter().map(|c| c.to_string()).collect();
        engine_cmd.args(["--cores", &cores.join(",")]);
    }
    let mut engine = Proc::spawn(
        "rtc-engine",
        engine_cmd
            .args([
                "--bind",
                "127.0.0.1",
                "--stats-interval",
                "0",
                "--log",
                "warn",
            ])
            .args(["--backend", &o.backend])
            .args(extra)
            .args(&o.engine_args)
            .arg("--control-socket")
            .arg(&sock)
            .env_remove("RUST_LOG"),
        life,
    )?;
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut ctl = loop {
        match ControlClient::connect(&sock) {
            Ok(c) => break c,
            Err(_) if Instant::now() < ready_by && engine.alive() => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                // Collect what the engine printed for the message.
                while let Ok(Some(_)) = engine.next_line(Instant::now() + Duration::from_millis(50))
                {
                }
                return Err(engine.error(&format!("control socket not ready: {e}")));
            }
        }
    };
    ctl.set_timeout(Some(Duration::from_secs(5)));
    Ok(EngineProc {
        proc: engine,
        ctl,
        sock,
        pinning,
        tmp,
    })
}

/// Runs `workload` against a fresh `rtc-engine` with `shards` shards.
pub fn run_engine(o: &Options, shards: usize, workload: &Workload) -> Result<Row, BenchError> {
    let loadgen_bin = locate(&o.bin_dir, "rtc-loadgen")?;
    let budget = o.connect_timeout + o.secs + 90.0;
    let EngineProc {
        proc: mut engine,
        mut ctl,
        sock,
        pinning,
        tmp,
    } = start_engine(
        o,
        shards,
        &format!("{}-{shards}", workload.name()),
        &workload.engine_args(shards),
        secs(budget + 30.0),
    )?;
    let base = sample(&mut ctl, engine.pid(), 0)?;
    let storm = matches!(workload, Workload::Storm { .. });
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = if storm {
        Some(watch_connects(sock.clone(), engine.pid(), stop.clone())?)
    } else {
        None
    };
    let spawned = Instant::now();
    let cpu_at_spawn = cpu_of(engine.pid());
    let mut lg_cmd = Command::new(&loadgen_bin);
    confine(&mut lg_cmd, &pinning.loadgen);
    let mut lg = Proc::spawn(
        "rtc-loadgen",
        lg_cmd
            .arg("--control")
            .arg(&sock)
            .args(workload.loadgen_args(o)),
        secs(budget),
    )?;
    let lg_pid = lg.pid();
    let until = Instant::now() + secs(budget);
    let engine_pid = engine.pid();
    let (steady, json) = follow_loadgen(&mut lg, until, o.verbose, || {
        sample(&mut ctl, engine_pid, lg_pid)
    })?;
    let status = lg.wait()?;
    stop.store(true, Ordering::Release);
    let connects = watcher.and_then(|h| h.join().ok()).unwrap_or_default();
    let report: tools::loadgen::Report = serde_json::from_str(&json)
        .map_err(|e| lg.error(&format!("no JSON report (exit {status}): {e}")))?;
    engine.stop();
    let mut notes = vec![pinning.note.clone()];
    if report.peers.connected < report.peers.planned {
        notes.push(format!(
            "{} of {} peers connected",
            report.peers.connected, report.peers.planned
        ));
    }
    if report.received.checks.corrupt > 0 {
        notes.push(format!(
            "{} corrupt payloads",
            report.received.checks.corrupt
        ));
    }
    if let Some(e) = report.errors.first() {
        notes.push(format!("loadgen: {e}"));
    }
    if let Some(sc) = &report.simulcast {
        notes.push(simulcast_note(sc));
    }
    let mut row = Row {
        scenario: "engine".into(),
        workload: workload.name(),
        shards,
        fanout: workload.fanout(),
        sessions: report.peers.connected,
        loss: report.received.loss_ratio,
        latency_ms: LatencyMs::from(&report.latency_ms),
        notes,
        simulcast: report.simulcast.clone(),
        ..Row::default()
    };
    if let (Some(a), Some(b)) = (steady.first(), steady.last())
        && steady.len() >= 2
    {
        let wall = b.at.duration_since(a.at).as_secs_f64();
        let fwd = b.forwarded.saturating_sub(a.forwarded);
        let cpu = b.engine_cpu.saturating_sub(a.engine_cpu);
        row.seconds = wall;
        row.sessions = a.sessions;
        row.fwd_pps = fwd as f64 / wall.max(1e-9);
        let cross = b.cross_shard.saturating_sub(a.cross_shard);
        row.cross_shard_pps = (shards > 1).then(|| cross as f64 / wall.max(1e-9));
        row.cpu_us_per_pkt = (fwd > 0).then(|| cpu.as_secs_f64() * 1e6 / fwd as f64);
        row.cpu_pct = pct(cpu, wall);
        row.loadgen_cpu_pct = pct(b.loadgen_cpu.saturating_sub(a.loadgen_cpu), wall);
        let msgs = b.sent.1.saturating_sub(a.sent.1);
        row.segments_per_send =
            (msgs > 0).then(|| b.sent.0.saturating_sub(a.sent.0) as f64 / msgs as f64);
        row.in_place_share =
            (fwd > 0).then(|| b.in_place.saturating_sub(a.in_place) as f64 / fwd as f64);
        row.engine_latency_us = b
            .forward_ns
            .since(&a.forward_ns)
            .as_ref()
            .and_then(latency_us);
        row.rss_kib_per_session = (a.sessions > 0)
            .then(|| a.engine_rss.saturating_sub(base.engine_rss) as f64 / a.sessions as f64);
    } else if !storm {
        row.notes
            .push("fewer than two steady-phase samples: raise --secs".to_owned());
    }
    if storm {
        if let (Some(first), Some(last)) = (connects.first(), connects.last()) {
            let n = connects.len();
            let span = last.0.duration_since(first.0).as_secs_f64();
            let total = last.0.duration_since(spawned).as_secs_f64();
            row.handshakes_per_s = Some(if n >= 2 && span > 0.0 {
                (n - 1) as f64 / span
            } else {
                n as f64 / total.max(1e-9)
            });
            let cpu = last.1.saturating_sub(cpu_at_spawn).as_secs_f64();
            row.handshakes_per_cpu_s = (cpu > 0.0).then(|| n as f64 / cpu);
            row.cpu_pct = pct(last.1.saturating_sub(cpu_at_spawn), total);
            // The storm's figures are per handshake; its short audio phase is not the point.
            row.cpu_us_per_pkt = None;
            row.fwd_pps = 0.0;
            row.seconds = total;
        } else {
            row.notes.push("no session connected".to_owned());
        }
    }
    drop(tmp);
    Ok(row)
}

/// The simulcast counts of a run in one line: per layer, packets sent, subscribers
/// capped there, packets they received, and the verified sample's layers per cap.
pub fn simulcast_note(sc: &tools::loadgen::SimulcastCounts) -> String {
    let mut s = String::from("simulcast (whole run):");
    for l in 0..3 {
        let v = sc.verified_by_cap_layer[l];
        s.push_str(&format!(
            " L{l} sent {} | cap {l}: {} subs, {} pkts rx, verified by layer {}/{}/{};",
            sc.sent_by_layer[l], sc.subscribers_by_cap[l], sc.received_by_cap[l], v[0], v[1], v[2]
        ));
    }
    s
}

#[cfg(test)]
mod pinning_tests {
    use super::*;

    #[test]
    fn shards_and_loadgen_get_separate_cores_when_there_are_enough() {
        let p = Pinning::plan(1, &[0, 1]);
        assert_eq!((p.engine, p.loadgen), (vec![0], vec![1]));
        let p = Pinning::plan(2, &[2, 3, 5, 7]);
        assert_eq!((p.engine, p.loadgen), (vec![2, 3], vec![5, 7]));
        assert!(p.note.starts_with("pinned"), "{}", p.note);
    }

    #[test]
    fn too_few_cores_pin_nothing_and_say_so() {
        let p = Pinning::plan(2, &[0, 1]);
        assert!(p.engine.is_empty() && p.loadgen.is_empty());
        assert!(p.note.starts_with("not pinned"), "{}", p.note);
        assert!(Pinning::plan(1, &[]).engine.is_empty());
    }

    #[test]
    fn this_process_has_an_affinity_mask() {
        assert!(!allowed_cores().is_empty());
    }
}
