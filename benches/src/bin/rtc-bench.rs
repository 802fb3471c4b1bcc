//! `rtc-bench`: the end-to-end performance harness. Runs the floor (a raw UDP
//! reflector on the engine's I/O backend) and `rtc-engine` driven by `rtc-loadgen`, as
//! real processes on loopback, and prints one table (optionally JSON and an SVG plot).
//!
//! Build first: `cargo build --release -p rtc-engine -p tools -p benches`.
//!
//! `rtc-bench churn --churn-secs 600`: the churn soak (see `benches::churn`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use benches::churn::{ChurnOptions, run_churn};
use benches::floor::{self, LoadConfig};
use benches::relay::{RelayOptions, run_relay};
use benches::report::{self, Results, Row};
use benches::saturate::{Ladder, SaturateOptions, run_saturation};
use benches::scenario::{self, Options, Workload};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every scenario below.
    All,
    /// Raw UDP reflector with the fan-outs of the packet scenarios.
    Floor,
    /// One publisher → each of --subscribers.
    Fanout,
    /// Many small rooms.
    Rooms,
    /// Audio-only density (50 packets/s per publisher).
    Audio,
    /// Handshake storm (sessions connected per second).
    Storm,
    /// Density: --density-sessions audio sessions (pairs of one DTX-like publisher,
    /// a packet every 400 ms, and one subscriber) on one shard: engine RSS per
    /// session. Not part of `all` (10,000 sessions take minutes to set up).
    Density,
    /// Offered load raised until loss > 0.1 % or engine p99 > 5 ms: packets/s per core
    /// at saturation beside the floor, engine-side latency at 50 % and 90 % of it.
    Saturate,
    /// 1 → --relay-subscribers split over two engines joined by a relay, against the
    /// same fan-out on one engine: per-engine CPU per packet and the relay hop's cost.
    Relay,
    /// One simulcast publisher (3 layers) → --simulcast-subscribers, a third capped at
    /// each layer with track.set_preference (the link mix is set by preference).
    Simulcast,
}

#[derive(Debug, Parser)]
#[command(
    name = "rtc-bench",
    about = "End-to-end performance harness: floor vs rtc-engine (1 and N shards) on loopback",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the SVG plot (fan-out: throughput and CPU/packet vs subscribers) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the table as markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Short runs with small sizes (smoke test; numbers are rough).
    #[arg(long)]
    quick: bool,
    /// Shards of the "N shards" engine runs.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Fan-out sizes (default 10,50,200; --quick 5,20).
    #[arg(long, value_delimiter = ',')]
    subscribers: Option<Vec<usize>>,
    /// Rooms of the small-rooms workload (default 20; --quick 4).
    #[arg(long)]
    rooms: Option<usize>,
    /// Peers per small room, 2-4.
    #[arg(long, default_value_t = 3)]
    room_size: usize,
    /// Sessions of the audio-density workload (default 200; --quick 20). The issue's
    /// number is 10000; pass --sessions 10000 on a machine with the cores for it.
    #[arg(long)]
    sessions: Option<usize>,
    /// Sessions of the handshake storm (default 200; --quick 20).
    #[arg(long)]
    storm: Option<usize>,
    /// Sessions of the density workload (default 10000; --quick 200).
    #[arg(long)]
    density_sessions: Option<usize>,
    /// Measurement window per run, seconds (default 5; --quick 2.2).
    #[arg(long)]
    secs: Option<f64>,
    /// Publisher video bitrate in the fan-out workload, kbit/s (~ 1130-byte packets;
    /// 1000 kbit/s at 30 fps ≈ 120 packets/s).
    #[arg(long, default_value_t = 1000)]
    video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Load-generator threads.
    #[arg(long, default_value_t = 2)]
    loadgen_threads: usize,
    /// I/O backend of the engine and the floor: auto, io-uring, portable.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Floor: datagrams per second from the sender (0: closed loop, as fast as it goes).
    #[arg(long, default_value_t = 0)]
    floor_rate: u64,
    /// Floor, closed loop: delivered copies in flight at most (the sender keeps
    /// max(1, this / fan-out) datagrams in flight; larger windows overrun socket buffers).
    #[arg(long, default_value_t = 640)]
    floor_window: u64,
    /// Seconds the load generator waits for peers to connect.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Saturation: what the ladder raises: `rooms` (more 1 -> fan-out rooms at
    /// --sat-start-kbps each) or `bitrate` (one room's publisher bitrate).
    #[arg(long, default_value = "rooms", value_parser = ["rooms", "bitrate"])]
    sat_ladder: String,
    /// Saturation: rooms of the first step of the rooms ladder (default 2; --quick 1).
    #[arg(long)]
    sat_start_rooms: Option<usize>,
    /// Saturation: subscribers of each publisher (default 50; --quick 5).
    #[arg(long)]
    sat_fanout: Option<usize>,
    /// Saturation: publisher bitrate of the first step (rooms ladder: of every step),
    /// kbit/s (default 2000; --quick 500).
    #[arg(long)]
    sat_start_kbps: Option<u32>,
    /// Saturation: ratio of rooms (or bitrate) between steps.
    #[arg(long, default_value_t = 1.5)]
    sat_factor: f64,
    /// Saturation: most steps (default 10; --quick 1).
    #[arg(long)]
    sat_steps: Option<usize>,
    /// Saturation: engine shards.
    #[arg(long, default_value_t = 1)]
    sat_shards: usize,
    /// Saturation: engine-side p99 limit of a step, µs (0: loss alone decides).
    #[arg(long, default_value_t = benches::saturate::MAX_P99_US)]
    sat_max_p99_us: f64,
    /// Simulcast: subscribers of the one simulcast publisher, a third capped at each layer
    /// (default 50; --quick 6).
    #[arg(long)]
    simulcast_subscribers: Option<usize>,
    /// Relay: subscribers of the one publisher over both engines (default 100; --quick 6).
    #[arg(long)]
    relay_subscribers: Option<usize>,
    /// Relay: of them, on engine B through the relay (default: half).
    #[arg(long)]
    relay_on_b: Option<usize>,
    /// Relay: shards of each engine and of the one-engine baseline.
    #[arg(long, default_value_t = 1)]
    relay_shards: usize,
    /// Relay: rounds of (one engine, two engines) runs; the report gives the medians
    /// (default 3; --quick 1).
    #[arg(long)]
    relay_rounds: Option<usize>,
    /// Directory of rtc-engine and rtc-loadgen (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Show the load generator's progress lines.
    #[arg(long, short)]
    verbose: bool,
    /// One more `rtc-engine` argument for every engine run (repeat it; e.g.
    /// `--engine-arg=--submit-every --engine-arg=16`).
    #[arg(long, allow_hyphen_values = true)]
    engine_arg: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Churn soak: sessions join and leave continuously (waves of rtc-loadgen), then
    /// RSS and every per-shard table of the engine must be back at their baseline.
    /// Exits non-zero when one is not.
    Churn(ChurnArgs),
    /// (internal) The floor's reflector process.
    #[command(hide = true)]
    FloorReflector {
        #[arg(long, default_value = "auto")]
        backend: String,
        #[arg(long, default_value_t = 60.0)]
        max_secs: f64,
        /// Fixed batching: datagrams per receiver per GSO batch (default: whatever a
        /// poll brought).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// (internal) The floor's sender and receivers.
    #[command(hide = true)]
    FloorLoad {
        #[arg(long)]
        reflector: SocketAddr,
        #[arg(long)]
        fanout: usize,
        #[arg(long, default_value_t = 1200)]
        size: usize,
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 640)]
        window: u64,
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

#[derive(Debug, clap::Args)]
struct ChurnArgs {
    /// How long sessions keep joining and leaving, seconds.
    #[arg(long, default_value_t = 600.0)]
    churn_secs: f64,
    /// Engine shards.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Rooms per wave (one publisher each).
    #[arg(long, default_value_t = 2)]
    wave_rooms: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 2)]
    wave_subscribers: usize,
    /// Media seconds of one wave, after its peers connected.
    #[arg(long, default_value_t = 4.0)]
    wave_secs: f64,
    /// Waves running at once (started wave-secs / overlap apart).
    #[arg(long, default_value_t = 2)]
    overlap: usize,
    /// The engine's --connect-timeout, seconds.
    #[arg(long, default_value_t = 10)]
    engine_connect_timeout: u64,
    /// Seconds the tables may take to return after the last wave (plus the engine's
    /// connect timeout).
    #[arg(long, default_value_t = 30.0)]
    settle_secs: f64,
    /// Allowed RSS growth over the baseline taken after the warm-up waves, MiB (the
    /// allocator keeps some freed memory for reuse; see `benches::churn`).
    #[arg(long, default_value_t = 16)]
    rss_tolerance_mib: u64,
    /// Video bitrate per publisher, kbit/s.
    #[arg(long, default_value_t = 300)]
    video_kbps: u32,
    /// Seconds a wave's load generator waits for its peers to connect.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// I/O backend of the engine: auto, io-uring, portable.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Directory of rtc-engine and rtc-loadgen (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Show the load generators' progress lines.
    #[arg(long, short)]
    verbose: bool,
}

fn bin_dir(given: Option<PathBuf>, exe: &std::path::Path) -> PathBuf {
    given
        .or_else(|| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn churn(a: ChurnArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rtc-bench: current_exe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = Options {
        bin_dir: bin_dir(a.bin_dir, &exe),
        bench_exe: exe,
        secs: a.churn_secs,
        warmup: 0.0,
        backend: a.backend,
        loadgen_threads: 1,
        video_kbps: a.video_kbps,
        fps: 30,
        floor_rate: 0,
        floor_window: 0,
        connect_timeout: a.connect_timeout,
        verbose: a.verbose,
        engine_args: Vec::new(),
    };
    let c = ChurnOptions {
        churn_secs: a.churn_secs.max(0.0),
        shards: a.shards.max(1),
        wave_rooms: a.wave_rooms.max(1),
        wave_subscribers: a.wave_subscribers,
        wave_secs: a.wave_secs.max(0.1),
        overlap: a.overlap.max(1),
        engine_connect_timeout: a.engine_connect_timeout.max(1),
        settle_secs: a.settle_secs.max(0.0),
        rss_tolerance_kib: a.rss_tolerance_mib.saturating_mul(1024),
        video_kbps: a.video_kbps,
        ..ChurnOptions::default()
    };
    let r = match run_churn(&o, &c) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtc-bench churn: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", r.table());
    let mut ok = r.passed();
    if let Some(p) = &a.json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => {
                if let Err(e) = std::fs::write(p, s) {
                    eprintln!("rtc-bench: write {}: {e}", p.display());
                    ok = false;
                }
            }
            Err(e) => {
                eprintln!("rtc-bench: json: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn dur(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(1))
}

fn internal(cmd: Cmd) -> Result<(), benches::BenchError> {
    match cmd {
        // Dispatched in `main`.
        Cmd::Churn(_) => Ok(()),
        Cmd::FloorReflector {
            backend,
            max_secs,
            batch,
        } => floor::run_reflector(floor::backend_pref(&backend)?, dur(max_secs), batch, |a| {
            println!("READY {a}");
            let _ = std::io::stdout().flush();
        }),
        Cmd::FloorLoad {
            reflector,
            fanout,
            size,
            warmup,
            secs,
            rate,
            window,
            backend,
        } => {
            let cfg = LoadConfig {
                reflector,
                fanout: fanout.max(1),
                size: size.clamp(17, 1472),
                warmup: dur(warmup),
                duration: dur(secs),
                rate,
                window: (window / fanout.max(1) as u64).max(1),
                backend: floor::backend_pref(&backend)?,
            };
            let r = floor::run_load(&cfg, &mut |m| {
                println!("{m}");
                let _ = std::io::stdout().flush();
            })?;
            let json = serde_json::to_string(&r)
                .map_err(|e| benches::BenchError::Measure(format!("json: {e}")))?;
            println!("{json}");
            Ok(())
        }
    }
}

fn machine() -> (usize, String, String) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    (cpus, model, kernel)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cmd) = cli.cmd {
        if let Cmd::Churn(a) = cmd {
            return churn(a);
        }
        return match internal(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtc-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let q = cli.quick;
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rtc-bench: current_exe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bin_dir = bin_dir(cli.bin_dir.clone(), &exe);
    let o = Options {
        bin_dir,
        bench_exe: exe,
        secs: cli.secs.unwrap_or(if q { 2.2 } else { 5.0 }),
        warmup: if q { 0.3 } else { 1.0 },
        backend: cli.backend.clone(),
        loadgen_threads: cli.loadgen_threads.max(1),
        video_kbps: cli.video_kbps,
        fps: cli.fps,
        floor_rate: cli.floor_rate,
        floor_window: cli.floor_window,
        connect_timeout: cli.connect_timeout,
        verbose: cli.verbose,
        engine_args: cli.engine_arg.clone(),
    };
    let subs = cli
        .subscribers
        .clone()
        .unwrap_or_else(|| if q { vec![5, 20] } else { vec![10, 50, 200] });
    let rooms = cli.rooms.unwrap_or(if q { 4 } else { 20 });
    let room_size = cli.room_size.clamp(2, 4);
    let sessions = cli.sessions.unwrap_or(if q { 20 } else { 200 });
    let storm = cli.storm.unwrap_or(if q { 20 } else { 200 });
    let sel = if cli.scenarios.is_empty() {
        vec![Scenario::All]
    } else {
        cli.scenarios.clone()
    };
    let on = |s: Scenario| sel.contains(&Scenario::All) || sel.contains(&s);
    let density = sel.contains(&Scenario::Density);

    let mut workloads: Vec<Workload> = Vec::new();
    if on(Scenario::Fanout) {
        workloads.extend(subs.iter().map(|&s| Workload::Fanout {
            subscribers: s.max(1),
        }));
    }
    if on(Scenario::Rooms) {
        workloads.push(Workload::Rooms {
            rooms: rooms.max(1),
            size: room_size,
        });
    }
    if on(Scenario::Audio) {
        workloads.push(Workload::Audio {
            sessions: sessions.max(2),
        });
    }
    if on(Scenario::Simulcast) {
        workloads.push(Workload::Simulcast {
            subscribers: cli
                .simulcast_subscribers
                .unwrap_or(if q { 6 } else { 50 })
                .max(1),
        });
    }
    if on(Scenario::Storm) {
        workloads.push(Workload::Storm {
            sessions: storm.max(2),
        });
    }
    if density {
        workloads.push(Workload::Density {
            sessions: cli
                .density_sessions
                .unwrap_or(if q { 200 } else { 10_000 })
                .max(2),
        });
    }
    let mut fanouts: Vec<usize> = if on(Scenario::Floor) {
        let mut f: Vec<usize> = workloads
            .iter()
            .filter(|w| !matches!(w, Workload::Storm { .. } | Workload::Density { .. }))
            .map(Workload::fanout)
            .collect();
        if f.is_empty() {
            f = subs.clone();
        }
        f
    } else {
        Vec::new()
    };
    fanouts.sort_unstable();
    fanouts.dedup();

    let mut shard_counts = vec![1];
    if cli.shards > 1 {
        shard_counts.push(cli.shards);
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    for &k in &fanouts {
        eprintln!("rtc-bench: floor, fan-out {k} ...");
        match scenario::run_floor(&o, k) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("rtc-bench: floor fan-out {k}: {e}");
                failed = true;
            }
        }
    }
    for w in &workloads {
        // Density is a one-shard figure.
        let counts: &[usize] = if matches!(w, Workload::Density { .. }) {
            &[1]
        } else {
            &shard_counts
        };
        for &n in counts {
            eprintln!("rtc-bench: engine, {n} shard(s), {} ...", w.name());
            match scenario::run_engine(&o, n, w) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    eprintln!("rtc-bench: engine {n} shard(s) {}: {e}", w.name());
                    failed = true;
                }
            }
        }
    }
    let mut saturation = None;
    if on(Scenario::Saturate) {
        let so = SaturateOptions {
            ladder: if cli.sat_ladder == "bitrate" {
                Ladder::Bitrate
            } else {
                Ladder::Rooms
            },
            start_rooms: cli.sat_start_rooms.unwrap_or(if q { 1 } else { 2 }).max(1),
            fanout: cli.sat_fanout.unwrap_or(if q { 5 } else { 50 }).max(1),
            shards: cli.sat_shards.max(1),
            start_kbps: cli.sat_start_kbps.unwrap_or(if q { 500 } else { 2000 }),
            factor: cli.sat_factor,
            max_steps: cli.sat_steps.unwrap_or(if q { 1 } else { 10 }),
            latency_steps: true,
            max_p99_us: (cli.sat_max_p99_us > 0.0).then_some(cli.sat_max_p99_us),
        };
        match run_saturation(&o, &so, &mut |m| eprintln!("rtc-bench: saturate: {m} ...")) {
            Ok(r) => saturation = Some(r),
            Err(e) => {
                eprintln!("rtc-bench: saturate: {e}");
                failed = true;
            }
        }
    }
    let mut relay = None;
    if on(Scenario::Relay) {
        let subscribers = cli
            .relay_subscribers
            .unwrap_or(if q { 6 } else { 100 })
            .max(1);
        let ro = RelayOptions {
            subscribers,
            on_b: cli.relay_on_b.unwrap_or(subscribers / 2).min(subscribers),
            shards: cli.relay_shards.max(1),
            rounds: cli.relay_rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
        };
        match run_relay(&o, &ro, &mut |m| eprintln!("rtc-bench: relay: {m} ...")) {
            Ok(r) => relay = Some(r),
            Err(e) => {
                eprintln!("rtc-bench: relay: {e}");
                failed = true;
            }
        }
    }
    report::compute_ratios(&mut rows);
    let (cpus, cpu_model, kernel) = machine();
    let results = Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cpus,
        cpu_model,
        kernel,
        rows,
        saturation,
        relay,
    };
    println!(
        "rtc-bench: {} CPU(s), {}, kernel {}",
        results.cpus, results.cpu_model, results.kernel
    );
    if !results.rows.is_empty() {
        print!("{}", report::table(&results.rows));
    }
    if let Some(sat) = &results.saturation {
        print!("{}", sat.table());
    }
    if let Some(r) = &results.relay {
        print!("{}", r.table());
    }
    let write = |p: &PathBuf, s: String| {
        if let Err(e) = std::fs::write(p, s) {
            eprintln!("rtc-bench: write {}: {e}", p.display());
            false
        } else {
            true
        }
    };
    let mut ok = !failed
        && (!results.rows.is_empty() || results.saturation.is_some() || results.relay.is_some());
    if let Some(p) = &cli.json {
        match serde_json::to_string_pretty(&results) {
            Ok(s) => ok &= write(p, s),
            Err(e) => {
                eprintln!("rtc-bench: json: {e}");
                ok = false;
            }
        }
    }
    if let Some(p) = &cli.svg {
        ok &= write(p, report::svg(&results.rows));
    }
    if let Some(p) = &cli.markdown {
        let mut md = report::markdown(&results.rows);
        if let Some(sat) = &results.saturation {
            md.push_str(&format!("\n```text\n{}```\n", sat.table()));
        }
        if let Some(r) = &results.relay {
            md.push_str(&format!("\n```text\n{}```\n", r.table()));
        }
        ok &= write(p, md);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
