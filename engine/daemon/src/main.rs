//! `rtc-engine`: the data-plane daemon (its own package, so that the `engine` library
//! carries no command-line, TOML, logging-subscriber or allocator dependencies).
//!
//! Settings come from an optional TOML file (`--config`), overridden by command-line flags.
//! The daemon starts the shards, serves the control socket (`docs/control-protocol.md`),
//! logs the shards' addresses and periodic statistics, and shuts down cleanly on SIGINT
//! or SIGTERM (the control socket is closed and removed, sessions are closed with DTLS
//! close_notify).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use control::{ControlServer, EventHub, ServerConfig};
use engine::control::{ControlOptions, EngineControl};
use engine::io::BackendPreference;
use engine::io::signal::ShutdownSignals;
use engine::{Engine, EngineConfig};
use rtc_core::dtls::DtlsVersions;
use rtc_core::sdp::OpusRed;
use serde::Deserialize;

mod metrics;

/// The largest per-leg retransmission ring `rtx-buffer-packets` accepts (32,768 packets
/// of ~1.2 KiB is ~40 MiB per leg).
const MAX_RTX_BUFFER_PACKETS: usize = 32_768;

/// Why the settings (file, flags) cannot be used.
#[derive(Debug, thiserror::Error)]
enum SettingsError {
    /// The configuration file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `submit-every = 0` names no batch.
    #[error("submit-every must be at least 1")]
    ZeroSubmitEvery,
    /// `keyframe-interval-ms = 0` would take every request to the publisher.
    #[error("keyframe-interval-ms must be at least 1")]
    ZeroKeyframeInterval,
    /// `pacing-burst-ms` above a second is no pacing at all.
    #[error("pacing-burst-ms must be at most 1000, not {0}")]
    PacingBurstTooLong(u64),
    /// `rtx-buffer-packets` beyond [`MAX_RTX_BUFFER_PACKETS`].
    #[error("rtx-buffer-packets must be at most {MAX_RTX_BUFFER_PACKETS}, not {0}")]
    RtxBufferTooLarge(usize),
    /// The configuration file is not valid TOML for [`Settings`].
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// `--bind` is an IPv6 address.
    #[error("--bind {0} is not IPv4 (use --bind6)")]
    BindNotV4(IpAddr),
    /// `--bind6` is an IPv4 address.
    #[error("--bind6 {0} is not IPv6")]
    BindNotV6(IpAddr),
    /// `--dtls` names no version choice.
    #[error("unknown DTLS setting {0:?} (auto, 1.2, 1.3)")]
    UnknownDtls(String),
    /// `--opus-red` names no policy.
    #[error("unknown Opus RED setting {0:?} (prefer, accept, off)")]
    UnknownOpusRed(String),
    /// `--backend` names no backend.
    #[error("unknown backend {0:?} (auto, io-uring, portable)")]
    UnknownBackend(String),
    /// `--control-mode` is not an octal mode of at most `0777`.
    #[error("--control-mode {0:?} is not an octal file mode")]
    BadMode(String),
    /// `/etc/group` cannot be read.
    #[error("/etc/group: {0}")]
    GroupFile(#[source] std::io::Error),
    /// `--control-group` names no group.
    #[error("no group {0:?} in /etc/group")]
    UnknownGroup(String),
    /// The control socket's directory cannot be created, or (the fallback under the
    /// temporary directory) is not a private directory of ours.
    #[error("{}: {source}", path.display())]
    SocketDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

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
    /// ICE-TCP (passive TCP candidates) for peers whose networks block UDP: TCP port of
    /// shard 0, shard i uses port + i (0: ephemeral). Off when not given.
    #[arg(long)]
    tcp_port: Option<u16>,
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
    /// Control socket path (default `$XDG_RUNTIME_DIR/rtc-engine/control.sock`, else
    /// `/run/rtc-engine/control.sock`; the directory is created).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Control socket file mode, octal (default `0600`; e.g. `0660` with a group).
    #[arg(long)]
    control_mode: Option<String>,
    /// Group (name or numeric gid) given to the control socket file.
    #[arg(long)]
    control_group: Option<String>,
    /// Further uids allowed to use the control socket (the engine's own uid and root
    /// always are), e.g. `1000,1001`.
    #[arg(long, value_delimiter = ',')]
    control_allow_uids: Option<Vec<u32>>,
    /// Seconds between statistics log lines (0: off; default 10).
    #[arg(long)]
    stats_interval: Option<u64>,
    /// Log filter (`RUST_LOG` syntax; default `info`, `RUST_LOG` wins when set).
    #[arg(long)]
    log: Option<String>,
    /// Seconds a session may take to connect before it is closed (default 30).
    #[arg(long)]
    connect_timeout: Option<u64>,
    /// Live sessions per shard (default 5000).
    #[arg(long)]
    max_sessions_per_shard: Option<usize>,
    /// Live sessions in the engine (default 20000).
    #[arg(long)]
    max_sessions: Option<usize>,
    /// Media sections (m-lines) per session (default 64).
    #[arg(long)]
    max_media_per_session: Option<usize>,
    /// Rooms (default 10000).
    #[arg(long)]
    max_rooms: Option<usize>,
    /// Forwarding legs (subscribed tracks) per room (default 10000).
    #[arg(long)]
    max_legs_per_room: Option<usize>,
    /// Open data channels per session (default 64).
    #[arg(long)]
    max_channels_per_session: Option<usize>,
    /// Longest data-channel label in bytes (default 256).
    #[arg(long)]
    max_channel_label: Option<usize>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `127.0.0.1:9464`; off
    /// unless given).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// DTLS versions: `auto` (default: 1.3 when the peer offers it, else 1.2), `1.2`,
    /// `1.3`.
    #[arg(long)]
    dtls: Option<String>,
    /// Opus RED (RFC 2198) negotiation: `prefer` (default), `accept`, `off`.
    #[arg(long)]
    opus_red: Option<String>,
    /// A room's share of one shard: a room's sessions fill the shard holding most of
    /// them up to this many, then spread to the least-loaded shard (default 256; 0:
    /// every session is placed by load alone).
    #[arg(long)]
    room_shard_sessions: Option<usize>,
    /// Keyframe requests (PLI) to a publisher's layer are sent at most once per this
    /// many milliseconds; later ones wait for the interval's end (default 500; at least
    /// 1).
    #[arg(long)]
    keyframe_interval_ms: Option<u64>,
    /// A shard submits its queued sends each time this many are queued while it drains
    /// its sessions, not only at the end of an iteration (default 64): the first legs of
    /// a fan-out leave while the last are encrypted. Smaller: lower engine-side latency,
    /// more submissions and smaller GSO batches.
    #[arg(long)]
    submit_every: Option<usize>,
    /// Burst allowance of each session's pacer, milliseconds at its pacing rate
    /// (default 40, libwebrtc's send burst interval; 0..=1000): a video frame's packets
    /// leave together, sealed in place and sent as one GSO batch. Smaller smooths
    /// frames for paths with shallow buffers, at more CPU per packet.
    #[arg(long)]
    pacing_burst_ms: Option<u64>,
    /// Packets each subscriber leg keeps to answer NACKs itself (default 0: NACKs are
    /// answered from the publisher layers' shared packet caches, one per layer, and a
    /// forwarded packet is not copied per leg; at most 32768). A ring per leg costs
    /// ~1.2 KiB of memory per packet per leg and a copy per forwarded packet.
    #[arg(long)]
    rtx_buffer_packets: Option<usize>,
    /// Let the kernel back the heap with transparent huge pages (default true). `false`
    /// disables them for this process (`PR_SET_THP_DISABLE`): ~12 KiB less RSS per
    /// small audio session (the allocator's partly used 2 MiB pages), ~5–10 % more CPU
    /// per forwarded packet in a video fan-out (TLB misses); for audio-density hosts.
    #[arg(long)]
    transparent_hugepages: Option<bool>,
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
            tcp_port,
            announce,
            announce6,
            backend,
            recv_buffer,
            send_buffer,
            gso,
            gro,
            control_socket,
            control_mode,
            control_group,
            control_allow_uids,
            stats_interval,
            log,
            connect_timeout,
            max_sessions_per_shard,
            max_sessions,
            max_media_per_session,
            max_rooms,
            max_legs_per_room,
            max_channels_per_session,
            max_channel_label,
            metrics,
            dtls,
            opus_red,
            room_shard_sessions,
            keyframe_interval_ms,
            submit_every,
            pacing_burst_ms,
            rtx_buffer_packets,
            transparent_hugepages
        );
        self
    }

    fn engine_config(&self) -> Result<EngineConfig, SettingsError> {
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
                return Err(SettingsError::BindNotV4(b));
            }
            cfg.bind_v4 = Some(b);
        }
        if let Some(b) = self.bind6 {
            if !b.is_ipv6() {
                return Err(SettingsError::BindNotV6(b));
            }
            cfg.bind_v6 = Some(b);
        }
        cfg.base_port = self.port.unwrap_or(0);
        cfg.tcp_port = self.tcp_port;
        cfg.announce_v4 = self.announce;
        cfg.announce_v6 = self.announce6;
        cfg.backend = match self.backend.as_deref().unwrap_or("auto") {
            "auto" => BackendPreference::Auto,
            "io-uring" | "io_uring" | "uring" => BackendPreference::IoUring,
            "portable" => BackendPreference::Portable,
            other => {
                return Err(SettingsError::UnknownBackend(other.to_owned()));
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
        if let Some(s) = self.connect_timeout {
            cfg.connect_timeout = Duration::from_secs(s);
        }
        if let Some(ms) = self.keyframe_interval_ms {
            if ms == 0 {
                return Err(SettingsError::ZeroKeyframeInterval);
            }
            cfg.keyframe_interval = Duration::from_millis(ms);
        }
        if let Some(n) = self.submit_every {
            if n == 0 {
                return Err(SettingsError::ZeroSubmitEvery);
            }
            cfg.submit_every = n;
        }
        if let Some(ms) = self.pacing_burst_ms {
            if ms > 1000 {
                return Err(SettingsError::PacingBurstTooLong(ms));
            }
            cfg.pacing_burst = Duration::from_millis(ms);
        }
        if let Some(n) = self.rtx_buffer_packets {
            if n > MAX_RTX_BUFFER_PACKETS {
                return Err(SettingsError::RtxBufferTooLarge(n));
            }
            cfg.rtx_buffer_packets = n;
        }
        cfg.dtls_versions = match self.dtls.as_deref().unwrap_or("auto") {
            "auto" => DtlsVersions::Auto,
            "1.2" => DtlsVersions::Dtls12,
            "1.3" => DtlsVersions::Dtls13,
            other => return Err(SettingsError::UnknownDtls(other.to_owned())),
        };
        cfg.opus_red = match self.opus_red.as_deref().unwrap_or("prefer") {
            "prefer" => OpusRed::Prefer,
            "accept" => OpusRed::Accept,
            "off" => OpusRed::Off,
            other => return Err(SettingsError::UnknownOpusRed(other.to_owned())),
        };
        let caps = [
            (self.max_sessions_per_shard, &mut cfg.max_sessions_per_shard),
            (self.max_sessions, &mut cfg.max_sessions),
            (self.max_media_per_session, &mut cfg.max_media_per_session),
            (self.max_rooms, &mut cfg.max_rooms),
            (self.max_legs_per_room, &mut cfg.max_legs_per_room),
            (
                self.max_channels_per_session,
                &mut cfg.max_channels_per_session,
            ),
            (self.max_channel_label, &mut cfg.max_channel_label),
        ];
        for (set, field) in caps {
            if let Some(v) = set {
                *field = v;
            }
        }
        Ok(cfg)
    }
}

/// Our effective uid, without `unsafe`: the owner of `/proc/self` is the process's euid.
fn euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The default control socket path: under `$XDG_RUNTIME_DIR` when set, else `/run`.
fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("rtc-engine/control.sock"),
        _ => PathBuf::from("/run/rtc-engine/control.sock"),
    }
}

/// Resolves a group name or number (names through `/etc/group`).
fn resolve_group(g: &str) -> Result<u32, SettingsError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(SettingsError::GroupFile)?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == g).then_some(gid)
        })
        .next()
        .ok_or_else(|| SettingsError::UnknownGroup(g.to_owned()))
}

/// Creates the socket's directory (mode 0700, or 0750 when a group is given) if missing.
fn ensure_dir(dir: &Path, group: Option<u32>) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mode = if group.is_some() { 0o750 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(dir, None, Some(gid))?;
    }
    Ok(())
}

/// Prepares the fallback socket directory `dir` (under the shared temporary directory)
/// for a daemon running as `uid`: created when missing, and in any case refused unless it
/// is a directory of ours that nobody else can write (someone else may have created it
/// first, to swap the socket).
fn fallback_socket_dir(dir: &Path, uid: u32, group: Option<u32>) -> Result<PathBuf, SettingsError> {
    let err = |source| SettingsError::SocketDir {
        path: dir.to_path_buf(),
        source,
    };
    // `ensure_dir` follows a symbolic link: look at the entry itself first.
    if std::fs::symlink_metadata(dir).is_ok() {
        control::check_socket_dir(dir, uid).map_err(err)?;
    }
    ensure_dir(dir, group).map_err(err)?;
    control::check_socket_dir(dir, uid).map_err(err)?;
    Ok(dir.to_path_buf())
}

impl Settings {
    /// The control plane's placement options.
    fn control_options(&self) -> ControlOptions {
        let mut o = ControlOptions::default();
        if let Some(n) = self.room_shard_sessions {
            o.room_shard_sessions = n;
        }
        o
    }

    /// The control server settings, with the socket's directory created.
    fn server_config(&self) -> Result<ServerConfig, SettingsError> {
        let group = self
            .control_group
            .as_deref()
            .map(resolve_group)
            .transpose()?;
        let mode = match self.control_mode.as_deref() {
            None => 0o600,
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| SettingsError::BadMode(m.to_owned()))?,
        };
        let path = match &self.control_socket {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    ensure_dir(dir, group).map_err(|source| SettingsError::SocketDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                p.clone()
            }
            None => {
                let p = default_socket_path();
                let dir = p.parent().unwrap_or(Path::new("/"));
                match ensure_dir(dir, group) {
                    Ok(()) => p,
                    Err(e) => {
                        // E.g. not root and no XDG_RUNTIME_DIR: a private directory
                        // under the temporary directory still works.
                        let uid = euid().unwrap_or(u32::MAX);
                        let alt = std::env::temp_dir().join(format!("rtc-engine-{uid}"));
                        tracing::warn!(
                            dir = %dir.display(),
                            error = %e,
                            fallback = %alt.display(),
                            "cannot create the default control socket directory; using the fallback (pass --control-socket to rtcctl)"
                        );
                        fallback_socket_dir(&alt, uid, group)?.join("control.sock")
                    }
                }
            }
        };
        let mut cfg = ServerConfig::new(path);
        cfg.mode = mode;
        cfg.group = group;
        // Members of the socket's group may connect (docs/operations.md), by primary or
        // supplementary group.
        if let Some(g) = group
            && !cfg.allowed_gids.contains(&g)
        {
            cfg.allowed_gids.push(g);
        }
        for u in self.control_allow_uids.iter().flatten() {
            if !cfg.allowed_uids.contains(u) {
                cfg.allowed_uids.push(*u);
            }
        }
        Ok(cfg)
    }
}

fn load(cli: &Cli) -> Result<Settings, SettingsError> {
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                path: path.clone(),
                source,
            })?;
            toml::from_str::<Settings>(&text).map_err(|source| SettingsError::Parse {
                path: path.clone(),
                source,
            })?
        }
        None => Settings::default(),
    };
    Ok(file.merged(&cli.settings))
}

fn log_stats(engine: &engine::EngineHandle) {
    match engine.stats() {
        Ok(st) => {
            for s in st.shards.iter().filter(|s| !s.alive) {
                tracing::error!(shard = s.shard, "shard is down");
            }
            for s in st.shards.iter().filter(|s| s.alive) {
                let dropped = s.drops.total();
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

/// Disables transparent huge pages for this process (`prctl(PR_SET_THP_DISABLE)`,
/// `--transparent-hugepages false`): mimalloc asks for huge pages on its arenas
/// (`MADV_HUGEPAGE`), and with many small sessions their partly used 2 MiB pages cost
/// RSS (audio density run: 69 → 57 KiB per session), while a video fan-out forwards
/// 5–10 % cheaper with them (`docs/benchmarks.md`). `false` when the kernel refuses (it
/// is then left as it was).
fn disable_thp() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument and touches no memory of
    // ours; the unused arguments are zero as prctl(2) asks.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        eprintln!(
            "rtc-engine: cannot disable transparent huge pages: {}",
            std::io::Error::last_os_error()
        );
    }
    r == 0
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
    // Before the engine allocates its per-session state (only the settings' small
    // allocations come first).
    let thp_disabled = !settings.transparent_hugepages.unwrap_or(true) && disable_thp();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(settings.log.as_deref().unwrap_or("info"))
    });
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if thp_disabled {
        tracing::debug!("transparent huge pages disabled for this process");
    }

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
    if settings.bind.is_none() && settings.announce.is_none() {
        tracing::info!(
            "no --bind/--announce configured: listening on and announcing 127.0.0.1 (loopback \
             peers only); for remote peers use --bind 0.0.0.0 --announce <public IPv4>"
        );
    }
    for i in 0..engine.shard_count() {
        tracing::info!(
            shard = i,
            bound = ?engine.shard_addrs(i).unwrap_or(&[]),
            announced = ?engine.shard_announced(i).unwrap_or(&[]),
            "shard ready"
        );
    }
    let server_cfg = match settings.server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("control socket: {e}");
            engine.shutdown();
            return std::process::ExitCode::from(2);
        }
    };
    let hub = match EventHub::new(server_cfg.event_queue) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "control event hub");
            engine.shutdown();
            return std::process::ExitCode::FAILURE;
        }
    };
    let handler =
        EngineControl::with_options(engine.clone(), hub.clone(), settings.control_options());
    let socket_path = server_cfg.path.clone();
    let mut server = match ControlServer::bind_with_events(
        server_cfg,
        Arc::clone(&handler) as Arc<dyn control::ControlHandler>,
        hub,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(path = %socket_path.display(), error = %e, "cannot serve the control socket");
            handler.shutdown();
            engine.shutdown();
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(
        path = %socket_path.display(),
        "control socket ready (rtcctl --socket {} engine stats)",
        socket_path.display()
    );
    let metrics_server = match settings.metrics {
        None => None,
        Some(addr) => {
            let control = Arc::clone(&handler);
            let source: metrics::Source = Arc::new(move || metrics::Snapshot {
                stats: control
                    .stats()
                    .inspect_err(|e| tracing::warn!(error = %e, "metrics: engine stats failed"))
                    .ok(),
                rss_bytes: metrics::rss_bytes(),
            });
            match metrics::MetricsServer::start(addr, source) {
                Ok(m) => {
                    // The address is in the message (not only a field) so that scripts
                    // and tests can read the real port when port 0 was asked for.
                    tracing::info!(
                        "metrics endpoint ready on http://{}/metrics",
                        m.local_addr()
                    );
                    Some(m)
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot serve the metrics endpoint");
                    server.shutdown();
                    handler.shutdown();
                    engine.shutdown();
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    };
    let interval = Duration::from_secs(settings.stats_interval.unwrap_or(10));
    let mut next_stats = Instant::now() + interval;
    let mut code = std::process::ExitCode::SUCCESS;
    loop {
        let wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            next_stats.saturating_duration_since(Instant::now())
        }
        // Shard health is checked at least once a second.
        .min(Duration::from_secs(1));
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
        if engine.live_shards() == 0 {
            tracing::error!("every shard thread has died; exiting");
            code = std::process::ExitCode::FAILURE;
            break;
        }
        if !interval.is_zero() && Instant::now() >= next_stats {
            log_stats(&engine);
            next_stats = Instant::now() + interval;
        }
    }
    // Metrics and control first (no new requests; the control server reaps sessions of
    // connected clients), then the event thread, then the shards.
    if let Some(m) = metrics_server {
        m.stop();
    }
    server.shutdown();
    handler.shutdown();
    engine.shutdown();
    tracing::info!("stopped");
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_socket_dir_must_be_private_and_ours() {
        let me = euid().unwrap();
        let base = std::env::temp_dir().join(format!("rtc-engine-fb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // Fresh: created 0700 and accepted.
        let fresh = base.join("fresh");
        assert_eq!(fallback_socket_dir(&fresh, me, None).unwrap(), fresh);
        // Pre-created world-writable (anyone could swap the socket): refused.
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = fallback_socket_dir(&open, me, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("writable"), "{e}");
        // Pre-created by another user: refused (tested as that user's directory).
        let theirs = base.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = fallback_socket_dir(&theirs, me.wrapping_add(1), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("owned by uid"), "{e}");
        // A symbolic link in its place: refused.
        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(fallback_socket_dir(&link, me, None).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn toml_and_flags_merge() {
        let file: Settings = toml::from_str(
            "cores = [0, 1]\nport = 40000\ntcp-port = 41100\nbind = \"127.0.0.1\"\nbackend = \"portable\"\nrecv-buffer = 1048576\ncontrol-socket = \"/tmp/x.sock\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["rtc-engine", "--port", "41000", "--gso", "false"]);
        let s = file.merged(&cli.settings);
        let cfg = s.engine_config().unwrap();
        assert_eq!(cfg.cores, Some(vec![0, 1]));
        assert_eq!(cfg.base_port, 41000);
        assert_eq!(cfg.tcp_port, Some(41100), "tcp-port from the file");
        assert_eq!(cfg.backend, BackendPreference::Portable);
        assert_eq!(cfg.io.recv_buffer_bytes, 1_048_576);
        assert!(!cfg.io.gso);
        let limited = Cli::parse_from(["rtc-engine", "--connect-timeout", "5", "--max-rooms", "7"]);
        let cfg = limited.settings.engine_config().unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_secs(5));
        assert_eq!(cfg.max_rooms, 7);
        assert_eq!(cfg.max_sessions, EngineConfig::default().max_sessions);
        assert_eq!(cfg.tcp_port, None, "ICE-TCP is off unless asked for");
        assert_eq!(s.control_socket, Some(PathBuf::from("/tmp/x.sock")));
        let c = Settings {
            control_mode: Some("0660".into()),
            control_group: Some("0".into()),
            control_allow_uids: Some(vec![4242]),
            control_socket: Some(
                std::env::temp_dir()
                    .join(format!("rtc-engine-test-{}/sub/c.sock", std::process::id())),
            ),
            ..Settings::default()
        };
        let sc = c.server_config().unwrap();
        assert_eq!(sc.mode, 0o660);
        assert_eq!(sc.group, Some(0));
        assert!(sc.allowed_uids.contains(&4242));
        assert!(
            sc.allowed_gids.contains(&0),
            "--control-group members may connect"
        );
        assert!(sc.path.parent().unwrap().is_dir());
        let _ = std::fs::remove_dir_all(sc.path.parent().unwrap().parent().unwrap());
        let bad_mode = Settings {
            control_mode: Some("999".into()),
            ..Settings::default()
        };
        assert!(bad_mode.server_config().is_err());
        assert!(resolve_group("root").is_ok_and(|g| g == 0));
        // The example configuration shipped in deploy/ parses and is valid.
        let example: Settings =
            toml::from_str(include_str!("../../../deploy/config/rtc-engine.toml")).unwrap();
        let cfg = example.engine_config().unwrap();
        assert_eq!(cfg.base_port, 40000);
        assert!(cfg.announce_v4.is_some());
        assert_eq!(example.control_mode.as_deref(), Some("0660"));
        assert_eq!(example.transparent_hugepages, Some(true));
        assert_eq!(example.control_options().room_shard_sessions, 256);
        assert_eq!(
            example.engine_config().unwrap().keyframe_interval,
            Duration::from_millis(500)
        );
        let fast: Settings = toml::from_str("keyframe-interval-ms = 50").unwrap();
        assert_eq!(
            fast.engine_config().unwrap().keyframe_interval,
            Duration::from_millis(50)
        );
        let small: Settings = toml::from_str("submit-every = 8").unwrap();
        assert_eq!(small.engine_config().unwrap().submit_every, 8);
        let none: Settings = toml::from_str("submit-every = 0").unwrap();
        assert!(matches!(
            none.engine_config(),
            Err(SettingsError::ZeroSubmitEvery)
        ));
        assert_eq!(
            example.engine_config().unwrap().pacing_burst,
            Duration::from_millis(40)
        );
        let strict: Settings = toml::from_str("pacing-burst-ms = 0").unwrap();
        assert_eq!(strict.engine_config().unwrap().pacing_burst, Duration::ZERO);
        let long: Settings = toml::from_str("pacing-burst-ms = 1001").unwrap();
        assert!(matches!(
            long.engine_config(),
            Err(SettingsError::PacingBurstTooLong(1001))
        ));
        assert_eq!(example.engine_config().unwrap().rtx_buffer_packets, 0);
        let ring: Settings = toml::from_str("rtx-buffer-packets = 512").unwrap();
        assert_eq!(ring.engine_config().unwrap().rtx_buffer_packets, 512);
        let huge: Settings = toml::from_str("rtx-buffer-packets = 40000").unwrap();
        assert!(matches!(
            huge.engine_config(),
            Err(SettingsError::RtxBufferTooLarge(40000))
        ));
        let zero: Settings = toml::from_str("keyframe-interval-ms = 0").unwrap();
        assert!(matches!(
            zero.engine_config(),
            Err(SettingsError::ZeroKeyframeInterval)
        ));
        let spread: Settings = toml::from_str("room-shard-sessions = 3").unwrap();
        assert_eq!(spread.control_options().room_shard_sessions, 3);
        assert!(resolve_group("no-such-group-xyz").is_err());
        assert!(toml::from_str::<Settings>("nonsense = 1").is_err());
        let bad = Settings {
            backend: Some("epoll".into()),
            ..Settings::default()
        };
        assert!(bad.engine_config().is_err());
    }

    #[test]
    fn transparent_huge_pages_are_disabled_for_the_process() {
        assert!(disable_thp(), "prctl(PR_SET_THP_DISABLE) refused");
        // SAFETY: PR_GET_THP_DISABLE takes no further arguments and touches no memory.
        let now = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(now, 1);
    }
}
