//! `rtc-engine`: the data-plane daemon.
//!
//! Settings come from an optional TOML file (`--config`), overridden by command-line flags.
//! The daemon starts the shards, logs their addresses and periodic statistics, and shuts
//! down cleanly on SIGINT or SIGTERM (sessions are closed with DTLS close_notify).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use engine::io::BackendPreference;
use engine::io::signal::ShutdownSignals;
use engine::{Engine, EngineConfig};
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Settings shared by the TOML file and the command line (every field optional).
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    /// Cores to run shards on, one shard per core (e.g. `0,1,2`).
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Number of shards when no core list is given (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// Pin shard threads to cores (default true).
    #[arg(long)]
    pin: Option<bool>,
    /// IPv4 address to bind (default 127.0.0.1; `0.0.0.0` needs `--announce`).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// IPv6 address to bind (optional).
    #[arg(long)]
    bind6: Option<IpAddr>,
    /// UDP port of shard 0; shard i uses port + i (0: ephemeral).
    #[arg(long)]
    port: Option<u16>,
    /// Public IPv4 address announced in ICE candidates.
    #[arg(long)]
    announce: Option<IpAddr>,
    /// Public IPv6 address announced in ICE candidates.
    #[arg(long)]
    announce6: Option<IpAddr>,
    /// I/O backend: `auto`, `io-uring` or `portable`.
    #[arg(long)]
    backend: Option<String>,
    /// SO_RCVBUF in bytes.
    #[arg(long)]
    recv_buffer: Option<usize>,
    /// SO_SNDBUF in bytes.
    #[arg(long)]
    send_buffer: Option<usize>,
    /// UDP GSO on send (default true).
    #[arg(long)]
    gso: Option<bool>,
    /// UDP GRO on receive (default true).
    #[arg(long)]
    gro: Option<bool>,
    /// Control socket path (stored; the control server is attached separately).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Seconds between statistics log lines (0: off; default 10).
    #[arg(long)]
    stats_interval: Option<u64>,
    /// Log filter (`RUST_LOG` syntax; default `info`, `RUST_LOG` wins when set).
    #[arg(long)]
    log: Option<String>,
}

#[derive(Debug, Parser)]
#[command(
    name = "rtc-engine",
    version,
    about = "Sharded io_uring WebRTC SFU data plane"
)]
struct Cli {
    /// TOML configuration file (keys as the long flags, e.g. `recv-buffer = 4194304`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

macro_rules! merge {
    ($base:ident, $over:ident, $($f:ident),*) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f.clone(); } )*
    };
}

impl Settings {
    fn merged(mut self, over: &Settings) -> Settings {
        merge!(
            self,
            over,
            cores,
            shards,
            pin,
            bind,
            bind6,
            port,
            announce,
            announce6,
            backend,
            recv_buffer,
            send_buffer,
            gso,
            gro,
            control_socket,
            stats_interval,
            log
        );
        self
    }

    fn engine_config(&self) -> Result<EngineConfig, String> {
        let mut cfg = EngineConfig {
            cores: self.cores.clone(),
            shards: self.shards,
            ..EngineConfig::default()
        };
        if let Some(p) = self.pin {
            cfg.pin = p;
        }
        if let Some(b) = self.bind {
            if !b.is_ipv4() {
                return Err(format!("--bind {b} is not IPv4 (use --bind6)"));
            }
            cfg.bind_v4 = Some(b);
        }
        if let Some(b) = self.bind6 {
            if !b.is_ipv6() {
                return Err(format!("--bind6 {b} is not IPv6"));
            }
            cfg.bind_v6 = Some(b);
        }
        cfg.base_port = self.port.unwrap_or(0);
        cfg.announce_v4 = self.announce;
        cfg.announce_v6 = self.announce6;
        cfg.backend = match self.backend.as_deref().unwrap_or("auto") {
            "auto" => BackendPreference::Auto,
            "io-uring" | "io_uring" | "uring" => BackendPreference::IoUring,
            "portable" => BackendPreference::Portable,
            other => {
                return Err(format!(
                    "unknown backend {other:?} (auto, io-uring, portable)"
                ));
            }
        };
        if let Some(n) = self.recv_buffer {
            cfg.io.recv_buffer_bytes = n;
        }
        if let Some(n) = self.send_buffer {
            cfg.io.send_buffer_bytes = n;
        }
        if let Some(g) = self.gso {
            cfg.io.gso = g;
        }
        if let Some(g) = self.gro {
            cfg.io.gro = g;
        }
        Ok(cfg)
    }
}

fn load(cli: &Cli) -> Result<Settings, String> {
    let file = match &cli.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<Settings>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Settings::default(),
    };
    Ok(file.merged(&cli.settings))
}

fn log_stats(engine: &engine::EngineHandle) {
    match engine.stats() {
        Ok(st) => {
            for s in &st.shards {
                let d = s.drops;
                let dropped = d.unknown_source
                    + d.malformed
                    + d.srtp_auth
                    + d.rtc_dropped
                    + d.no_route
                    + d.leg_rewrite
                    + d.leg_not_ready
                    + d.cross_shard_full
                    + d.dead_session;
                tracing::info!(
                    shard = s.shard,
                    sessions = s.sessions,
                    packets_in = s.packets_in,
                    packets_out = s.packets_out,
                    forwarded = s.rtp_forwarded,
                    dropped,
                    gso_sends = s.io.gso_sends,
                    gro_coalesced = s.io.gro_coalesced,
                    loop_p99_us = s.loop_ns.value_at_quantile(0.99) / 1000,
                    fwd_p50_us = s.forward_latency_ns.value_at_quantile(0.5) / 1000,
                    fwd_p99_us = s.forward_latency_ns.value_at_quantile(0.99) / 1000,
                    "stats"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "stats failed"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtc-engine: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(settings.log.as_deref().unwrap_or("info"))
    });
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let cfg = match settings.engine_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Before any thread exists, so every shard inherits the blocked mask.
    let signals = match ShutdownSignals::block() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot block SIGINT/SIGTERM");
            return std::process::ExitCode::FAILURE;
        }
    };
    let engine = match Engine::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "engine start failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    for i in 0..engine.shard_count() {
        tracing::info!(
            shard = i,
            bound = ?engine.shard_addrs(i).unwrap_or(&[]),
            announced = ?engine.shard_announced(i).unwrap_or(&[]),
            "shard ready"
        );
    }
    if let Some(p) = &settings.control_socket {
        tracing::info!(path = %p.display(), "control socket configured (served by the control plane)");
    }
    let interval = Duration::from_secs(settings.stats_interval.unwrap_or(10));
    let mut next_stats = Instant::now() + interval;
    loop {
        let wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            next_stats.saturating_duration_since(Instant::now())
        };
        match signals.wait(wait) {
            Ok(Some(sig)) => {
                tracing::info!(signal = sig, "shutting down");
                break;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "waiting for signals failed; shutting down");
                break;
            }
        }
        if !interval.is_zero() && Instant::now() >= next_stats {
            log_stats(&engine);
            next_stats = Instant::now() + interval;
        }
    }
    engine.shutdown();
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_flags_merge() {
        let file: Settings = toml::from_str(
            "cores = [0, 1]\nport = 40000\nbind = \"127.0.0.1\"\nbackend = \"portable\"\nrecv-buffer = 1048576\ncontrol-socket = \"/tmp/x.sock\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["rtc-engine", "--port", "41000", "--gso", "false"]);
        let s = file.merged(&cli.settings);
        let cfg = s.engine_config().unwrap();
        assert_eq!(cfg.cores, Some(vec![0, 1]));
        assert_eq!(cfg.base_port, 41000);
        assert_eq!(cfg.backend, BackendPreference::Portable);
        assert_eq!(cfg.io.recv_buffer_bytes, 1_048_576);
        assert!(!cfg.io.gso);
        assert_eq!(s.control_socket, Some(PathBuf::from("/tmp/x.sock")));
        assert!(toml::from_str::<Settings>("nonsense = 1").is_err());
        let bad = Settings {
            backend: Some("epoll".into()),
            ..Settings::default()
        };
        assert!(bad.engine_config().is_err());
    }
}
