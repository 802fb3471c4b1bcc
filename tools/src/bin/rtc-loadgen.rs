//! `rtc-loadgen`: load-test the engine with many real WebRTC peers on loopback.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use tools::loadgen::{self, Cascade, Config, Mode};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "rtc-loadgen",
    version,
    about = "Load-test rtc-engine with real WebRTC peers (ICE, DTLS, SRTP) on loopback",
    group(ArgGroup::new("mode").required(true).args(["whip", "control", "in_process"]))
)]
struct Cli {
    /// WHIP/WHEP against rtc-demo at this base URL (POST {URL}/whip/{room},
    /// POST {URL}/whep/{room}/{publisher}, DELETE the Location).
    #[arg(long, value_name = "URL")]
    whip: Option<String>,
    /// A running rtc-engine's control socket.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Start an engine in this process.
    #[arg(long)]
    in_process: bool,
    /// Cascade: a second rtc-engine's control socket (engine B; --control is engine
    /// A). Subscribers beyond --relay-local per room are created on B and receive the
    /// room's publishers through the relay given by --relay.
    #[arg(long, value_name = "PATH", requires_all = ["control", "relay"])]
    relay_control: Option<PathBuf>,
    /// Cascade: a connected relay from A to B, as `ID_ON_A:ID_ON_B` (the session ids
    /// `relay.connect` on A and `relay.listen` on B answered).
    #[arg(long, value_name = "A:B", value_parser = parse_relay, requires = "relay_control")]
    relay: Option<(u64, u64)>,
    /// Cascade: subscribers per room on engine A (the rest are on B).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        requires = "relay_control"
    )]
    relay_local: usize,
    /// Engine shards with --in-process.
    #[arg(long, default_value_t = 2)]
    engine_shards: usize,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, short = 'n', default_value_t = 1)]
    publishers: usize,
    /// Subscribers per room.
    #[arg(long, short = 'm', default_value_t = 3)]
    subscribers: usize,
    /// Event-loop threads driving the peers.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds of steady state after every peer is up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Peers set up per second (0: as fast as signalling goes).
    #[arg(long, default_value_t = 50.0)]
    ramp: f64,
    /// Seconds to wait for the last peers to connect.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Video bitrate per publisher, kbit/s.
    #[arg(long, default_value_t = 500)]
    video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds between keyframes.
    #[arg(long, default_value_t = 2.0)]
    keyframe_interval: f64,
    /// Audio payload bytes per packet.
    #[arg(long, default_value_t = 80)]
    audio_bytes: usize,
    /// Milliseconds between audio packets, 10-2000 (400: a DTX-like silent speaker).
    #[arg(long, default_value_t = 20)]
    audio_period_ms: u64,
    /// Send no video.
    #[arg(long)]
    no_video: bool,
    /// Send no audio.
    #[arg(long)]
    no_audio: bool,
    /// Simulcast (with --control and --no-audio): publishers send three VP8 layers on
    /// their own SSRCs (150, 500, 1500 kbit/s; --video-kbps is ignored) and subscriber i
    /// of each room is capped at layer i % 3 with track.set_preference.
    #[arg(long)]
    simulcast: bool,
    /// Room name prefix (rooms are PREFIX-0, PREFIX-1, ...).
    #[arg(long, default_value = "loadgen")]
    room_prefix: String,
    /// Bearer token for WHIP/WHEP.
    #[arg(long)]
    token: Option<String>,
    /// Seconds one signalling request may take.
    #[arg(long, default_value_t = 10.0)]
    signalling_timeout: f64,
    /// Allow non-loopback targets (never needed on one machine).
    #[arg(long)]
    allow_remote: bool,
    /// Fully verify (SRTP authentication, payload checksum, latency) one received RTP
    /// packet in N; count the others from their clear header (loss stays exact).
    #[arg(long, default_value = "1/16", value_name = "1/N", value_parser = loadgen::parse_verify)]
    verify: u16,
    /// Print the report as JSON (progress lines still go to stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("--{name} must be a non-negative number"))
}

fn parse_relay(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--relay wants ID_ON_A:ID_ON_B, got {s:?}");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

fn config(cli: &Cli) -> Result<Config, String> {
    let mode = if let Some(u) = &cli.whip {
        Mode::Whip(u.clone())
    } else if let (Some(a), Some(b), Some((relay_a, relay_b))) =
        (&cli.control, &cli.relay_control, cli.relay)
    {
        Mode::Cascade(Cascade {
            a: a.clone(),
            b: b.clone(),
            relay_a,
            relay_b,
            local_subscribers: cli.relay_local,
        })
    } else if let Some(p) = &cli.control {
        Mode::Control(p.clone())
    } else {
        Mode::InProcess {
            shards: cli.engine_shards,
        }
    };
    Ok(Config {
        mode,
        rooms: cli.rooms,
        publishers: cli.publishers,
        subscribers: cli.subscribers,
        threads: cli.threads,
        duration: secs("duration", cli.duration)?,
        ramp: cli.ramp,
        connect_timeout: secs("connect-timeout", cli.connect_timeout)?,
        video: !cli.no_video,
        audio: !cli.no_audio,
        video_kbps: cli.video_kbps,
        fps: cli.fps,
        keyframe_interval: cli.keyframe_interval,
        audio_bytes: cli.audio_bytes,
        audio_period: Duration::from_millis(cli.audio_period_ms),
        room_prefix: cli.room_prefix.clone(),
        allow_remote: cli.allow_remote,
        token: cli.token.clone(),
        signalling_timeout: secs("signalling-timeout", cli.signalling_timeout)?,
        verify_every: cli.verify,
        simulcast: cli.simulcast,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtc-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = cli.quiet;
    let mut progress = |p: &loadgen::Progress| {
        if !quiet {
            eprintln!("{}", p.line());
        }
    };
    let report = match loadgen::run_with_progress(&cfg, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtc-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => writeln!(out, "{s}"),
            Err(e) => {
                eprintln!("rtc-loadgen: json: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        write!(out, "{}", report.to_text())
    };
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    // Failures the operator must notice: peers that never connected, corrupt payloads.
    let ok = report.peers.connected == report.peers.planned && report.received.checks.corrupt == 0;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_ids_parse_as_a_colon_b_and_nothing_else() {
        assert_eq!(parse_relay("3:7"), Ok((3, 7)));
        assert_eq!(parse_relay(" 3 : 7 "), Ok((3, 7)));
        for bad in ["", "3", "3:", ":7", "a:7", "3:7:9", "-1:2"] {
            assert!(parse_relay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relay_control_with_relay_ids_selects_cascade_mode() {
        let cli = Cli::try_parse_from([
            "rtc-loadgen",
            "--control",
            "/a.sock",
            "--relay-control",
            "/b.sock",
            "--relay",
            "3:7",
            "--relay-local",
            "2",
        ])
        .expect("valid arguments");
        let Mode::Cascade(c) = config(&cli).expect("a config").mode else {
            panic!("not cascade mode");
        };
        assert_eq!((c.relay_a, c.relay_b, c.local_subscribers), (3, 7, 2));
        assert_eq!(
            (c.a.to_str(), c.b.to_str()),
            (Some("/a.sock"), Some("/b.sock"))
        );
        // The relay ids need the second engine, and it needs them.
        assert!(Cli::try_parse_from(["rtc-loadgen", "--control", "/a", "--relay", "1:2"]).is_err());
        assert!(
            Cli::try_parse_from(["rtc-loadgen", "--control", "/a", "--relay-control", "/b"])
                .is_err()
        );
    }
}
