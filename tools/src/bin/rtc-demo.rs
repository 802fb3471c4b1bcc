//! `rtc-demo`: WHIP/WHEP endpoints and a browser page with rooms, in front of the engine.
//!
//! By default an engine is started in-process (2 shards); with `--control PATH` the demo
//! drives a running `rtc-engine` over its control socket instead. With `--control`
//! given several times it spreads each room over those engines: publishers on the first,
//! viewers beyond `--relay-threshold` per engine on the next, joined by relays.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use engine::{Engine, EngineConfig};
use tools::demo::{
    Backend, CascadeBackend, ControlBackend, DemoConfig, DemoServer, InProcessBackend,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "rtc-demo",
    version,
    about = "WHIP/WHEP + browser rooms in front of the rtc engine"
)]
struct Cli {
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    http: SocketAddr,
    /// Drive a running rtc-engine over this control socket instead of starting one;
    /// repeatable: a room spreads over the engines in order (publishers on the first).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["shards", "media_bind", "announce", "port", "tcp_port", "keyframe_interval_ms"])]
    control: Vec<PathBuf>,
    /// With several `--control` engines: viewers of a room one engine takes before the
    /// next one does (the last takes the rest).
    #[arg(long, default_value_t = 10, value_name = "N")]
    relay_threshold: usize,
    /// In-process engine: number of shards.
    #[arg(long, default_value_t = 2, value_name = "N")]
    shards: usize,
    /// In-process engine: address the shards' UDP sockets bind.
    #[arg(long = "media-bind", default_value = "127.0.0.1", value_name = "IP")]
    media_bind: IpAddr,
    /// In-process engine: address announced in candidates (1:1 NAT).
    #[arg(long, value_name = "IP")]
    announce: Option<IpAddr>,
    /// In-process engine: UDP port of shard 0 (shard i uses port + i; 0: ephemeral).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    port: u16,
    /// In-process engine: ICE-TCP (passive TCP candidates) for browsers whose networks
    /// block UDP: TCP port of shard 0, shard i uses port + i (0: ephemeral). Off when not
    /// given.
    #[arg(long, value_name = "PORT")]
    tcp_port: Option<u16>,
    /// In-process engine: at most one keyframe request per publisher stream per this
    /// many milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    keyframe_interval_ms: u64,
    /// Require `Authorization: Bearer TOKEN` on WHIP/WHEP requests.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Largest accepted SDP offer, bytes.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    max_body: usize,
    /// Let pages of this origin (`https://app.example`) use the API too; repeatable; `*`
    /// allows any. The demo's own page needs none.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Answer for this host name too (IP addresses and `localhost` always work);
    /// repeatable; `*` allows any.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
    /// Advertise this ICE server to WHIP/WHEP clients (RFC 9725 `Link: <URL>;
    /// rel="ice-server"` on OPTIONS and 201 answers); repeatable. `URL` (e.g.
    /// `stun:stun.example.net:3478`) or `URL|USERNAME|CREDENTIAL` for TURN.
    #[arg(long = "ice-server", value_name = "URL")]
    ice_server: Vec<String>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut engine = None;
    let backend: Arc<dyn Backend> = match cli.control.as_slice() {
        [path] => match ControlBackend::connect(path) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                eprintln!("rtc-demo: {e}");
                return ExitCode::from(3);
            }
        },
        [_, _, ..] => {
            let engines: Result<Vec<ControlBackend>, _> =
                cli.control.iter().map(ControlBackend::connect).collect();
            match engines.and_then(|e| CascadeBackend::new(e, cli.relay_threshold)) {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    eprintln!("rtc-demo: {e}");
                    return ExitCode::from(3);
                }
            }
        }
        [] => {
            let cfg = EngineConfig {
                shards: Some(cli.shards.max(1)),
                pin: false,
                bind_v4: Some(cli.media_bind),
                announce_v4: cli.announce,
                base_port: cli.port,
                tcp_port: cli.tcp_port,
                keyframe_interval: Duration::from_millis(cli.keyframe_interval_ms),
                ..EngineConfig::default()
            };
            match Engine::start(cfg) {
                Ok(h) => {
                    engine = Some(h.clone());
                    Arc::new(InProcessBackend::new(h))
                }
                Err(e) => {
                    eprintln!("rtc-demo: cannot start the engine: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    let cfg = DemoConfig {
        http: cli.http,
        token: cli.token.clone(),
        max_body: cli.max_body,
        allowed_origins: cli.allow_origin.clone(),
        allowed_hosts: cli.allow_host.clone(),
        ice_servers: cli.ice_server.clone(),
        ..DemoConfig::default()
    };
    let server = match DemoServer::start(Arc::clone(&backend), cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtc-demo: cannot listen on {}: {e}", cli.http);
            if let Some(h) = engine {
                h.shutdown();
            }
            return ExitCode::from(1);
        }
    };
    println!(
        "rtc-demo: http://{} ({} backend, {} shard(s))",
        server.local_addr(),
        backend.name(),
        backend.shard_count()
    );
    // SAFETY: installing a handler that only stores to an atomic is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("rtc-demo: shutting down");
    server.shutdown();
    if let Some(h) = engine {
        h.shutdown();
    }
    ExitCode::SUCCESS
}
