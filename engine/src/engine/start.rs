//! [`Engine::start`]: opening the backends and spawning the shard threads.

use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rtc_core::dtls::DtlsCert;

use super::{Engine, EngineHandle, Inner, Registry, ShardLink};
use crate::api::{ConfigError, EngineError};
use crate::config::EngineConfig;
use crate::io::{IoBackend, open_backend};
use crate::shard::{Command, PeerLink, Shard, ShardCtx};

fn socket_addrs(cfg: &EngineConfig, port: u16) -> Vec<(SocketAddr, Option<IpAddr>)> {
    let mut v = Vec::new();
    if let Some(ip) = cfg.bind_v4 {
        v.push((SocketAddr::new(ip, port), cfg.announce_v4));
    }
    if let Some(ip) = cfg.bind_v6 {
        v.push((SocketAddr::new(ip, port), cfg.announce_v6));
    }
    v
}

/// Shard `i`'s port: `base + i`, or 0 (ephemeral) for base 0.
fn shard_port(base: u16, i: usize, shards: usize) -> Result<u16, ConfigError> {
    if base == 0 {
        return Ok(0);
    }
    u16::try_from(usize::from(base) + i).map_err(|_| ConfigError::PortRange {
        base_port: base,
        shards,
    })
}

/// The announced addresses of bound sockets (the configured public address, else the
/// bound one), refusing wildcards.
fn announce(
    locals: &[SocketAddr],
    socks: &[(SocketAddr, Option<IpAddr>)],
) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut announced = Vec::with_capacity(locals.len());
    for (local, (_, ann)) in locals.iter().zip(socks) {
        let a = SocketAddr::new(ann.unwrap_or(local.ip()), local.port());
        if a.ip().is_unspecified() {
            return Err(ConfigError::WildcardAddress(*local));
        }
        announced.push(a);
    }
    Ok(announced)
}

/// Lives on a shard thread's stack: dropped while unwinding, it marks the shard dead.
struct DeathWatch {
    shard: usize,
    alive: Arc<AtomicBool>,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() && self.alive.swap(false, Ordering::AcqRel) {
            tracing::error!(shard = self.shard, "shard thread died");
        }
    }
}

impl Engine {
    /// Opens one backend per shard (sockets on `base_port + index`), spawns the shard
    /// threads (pinned when configured) and returns the control handle.
    ///
    /// # Errors
    ///
    /// [`EngineError::Config`] for a configuration that cannot run (see [`ConfigError`](crate::ConfigError)),
    /// [`EngineError::Io`] when a socket or backend cannot be opened or a thread spawned, and
    /// [`EngineError::Rtc`] when the DTLS certificate cannot be generated.
    pub fn start(cfg: EngineConfig) -> Result<EngineHandle, EngineError> {
        let cores = cfg.shard_cores();
        let n = cores.len();
        if n > 64 {
            return Err(ConfigError::TooManyShards(n).into());
        }
        if n == 0 {
            return Err(ConfigError::NoShards.into());
        }
        if cfg.bind_v4.is_none() && cfg.bind_v6.is_none() {
            return Err(ConfigError::NoBindAddress.into());
        }
        let mut backends: Vec<Box<dyn IoBackend>> = Vec::with_capacity(n);
        let mut announced_all = Vec::with_capacity(n);
        for i in 0..n {
            let port = shard_port(cfg.base_port, i, n)?;
            let socks = socket_addrs(&cfg, port);
            let mut io = cfg.io.clone();
            io.bind = socks.iter().map(|(a, _)| *a).collect();
            let tcp_socks = match cfg.tcp_port {
                Some(p) => socket_addrs(&cfg, shard_port(p, i, n)?),
                None => Vec::new(),
            };
            io.tcp.bind = tcp_socks.iter().map(|(a, _)| *a).collect();
            let backend = open_backend(cfg.backend, &io)?;
            let announced = announce(backend.local_addrs(), &socks)?;
            let announced_tcp = announce(backend.tcp_local_addrs(), &tcp_socks)?;
            announced_all.push((announced, announced_tcp));
            backends.push(backend);
        }

        let mut cmd = Vec::new();
        let mut data = Vec::new();
        let mut ret = Vec::new();
        for _ in 0..n {
            cmd.push(crossbeam_channel::bounded::<Command>(
                cfg.command_queue.max(1),
            ));
            data.push(crossbeam_channel::bounded(cfg.forward_queue.max(1)));
            ret.push(crossbeam_channel::bounded(cfg.forward_queue.max(1) * 2));
        }
        let peers: Vec<PeerLink> = (0..n)
            .map(|i| PeerLink {
                data_tx: data[i].0.clone(),
                ret_tx: ret[i].0.clone(),
                waker: backends[i].waker(),
            })
            .collect();
        let (events_tx, events_rx) = crossbeam_channel::bounded(cfg.event_queue.max(1));
        // Unbounded, but at most one entry per session: each session closes once.
        let (closed_tx, closed_rx) = crossbeam_channel::unbounded();
        let (gone_tx, gone_rx) = crossbeam_channel::unbounded();

        let mut links = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, (backend, (announced, announced_tcp))) in
            backends.into_iter().zip(announced_all).enumerate()
        {
            let gauge = Arc::new(AtomicUsize::new(0));
            let alive = Arc::new(AtomicBool::new(true));
            let cert = DtlsCert::new_ecdsa_p256().map_err(rtc_core::RtcError::from)?;
            let ctx = ShardCtx {
                index: i,
                core: cores[i],
                announced: announced.clone(),
                announced_tcp: announced_tcp.clone(),
                cmd_rx: cmd[i].1.clone(),
                data_rx: data[i].1.clone(),
                ret_rx: ret[i].1.clone(),
                peers: peers.clone(),
                events_tx: events_tx.clone(),
                closed_tx: closed_tx.clone(),
                gone_tx: gone_tx.clone(),
                gauge: gauge.clone(),
                alive: alive.clone(),
                keyframe_interval: cfg.keyframe_interval,
                submit_every: u64::try_from(cfg.submit_every.max(1)).unwrap_or(u64::MAX),
                forward_batch: cfg.forward_batch.clamp(1, 1024),
                connect_timeout: cfg.connect_timeout,
                max_sessions: cfg.max_sessions_per_shard,
                max_channels: cfg.max_channels_per_session,
                max_label: cfg.max_channel_label,
                cache_video_packets: cfg.cache_video_packets.clamp(1, 1 << 15),
                cache_audio_packets: cfg.cache_audio_packets.clamp(1, 1 << 15),
            };
            links.push(ShardLink {
                cmd_tx: cmd[i].0.clone(),
                waker: backend.waker(),
                gauge,
                draining: AtomicBool::new(false),
                alive,
                backend: backend.kind(),
                core: cores[i],
                local_addrs: backend.local_addrs().to_vec(),
                announced,
                announced_tcp,
                cert,
            });
            let core = cores[i];
            let hook = cfg.on_thread_start.clone();
            let t = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    // Reports a death by panic anywhere in this thread, even where
                    // `Shard::die` cannot run (the hook, `die` itself).
                    let _watch = DeathWatch {
                        shard: i,
                        alive: Arc::clone(&ctx.alive),
                    };
                    if let Some(c) = core
                        && !core_affinity::set_for_current(core_affinity::CoreId { id: c })
                    {
                        tracing::warn!(shard = i, core = c, "could not pin shard thread");
                    }
                    if let Some(h) = hook {
                        h(i);
                    }
                    let mut backend = backend;
                    let mut shard = Shard::new(ctx);
                    let run = catch_unwind(AssertUnwindSafe(|| shard.run(&mut *backend)));
                    if run.is_err() {
                        shard.die();
                    }
                })?;
            threads.push(t);
        }
        tracing::info!(shards = n, "engine started");
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                shards: links,
                reg: Mutex::new(Registry::default()),
                next_session: AtomicU64::new(1),
                events_rx: super::EngineEvents {
                    events: events_rx,
                    closed: closed_rx,
                },
                gone_rx,
                threads: Mutex::new(threads),
                reply_timeout: cfg.reply_timeout,
                limits: super::Limits {
                    max_sessions: cfg.max_sessions,
                    max_sessions_per_shard: cfg.max_sessions_per_shard,
                    max_media: cfg.max_media_per_session,
                    max_rooms: cfg.max_rooms,
                    max_legs_per_room: cfg.max_legs_per_room,
                },
                rtx_buffer_packets: cfg.rtx_buffer_packets,
                pacing_burst: cfg.pacing_burst,
                opus_red: cfg.opus_red,
                dtls_versions: cfg.dtls_versions,
                relays: Mutex::new(super::relay::Relays::default()),
            }),
        })
    }
}
