//! `rtc-loadgen`: many real WebRTC peers (rtc-core `Rtc`: ICE, DTLS, SRTP) on loopback
//! UDP against the engine, driven by a few event-loop threads.
//!
//! [`run`] plans `rooms × (publishers + subscribers)` peers, sets each up through a
//! signalling back-end ([`Mode`]: an in-process engine, the engine's control socket, or
//! WHIP/WHEP against rtc-demo), hands it to one of `threads` event loops (`ppoll` over
//! the peers' sockets with `recvmmsg` batches, and a timer heap of `Rtc` timeouts and
//! media ticks), lets publishers send synthetic VP8-shaped video and Opus-sized audio
//! whose payloads carry a checksummed trailer (publisher, sequence, send time), and has
//! subscribers fully verify (SRTP, payload checksum, end-to-end latency) one packet in
//! [`Config::verify_every`], booking the others from their clear RTP header
//! ([`Rtc::account_rtp_unverified`]) so loss, counted per SSRC and sequence number, stays
//! exact. It ends with a [`Report`].
//!
//! Phases: **ramp** (peers set up at `ramp` per second, then up to `connect_timeout` for
//! the last to connect), **steady** (`duration`), **drain** (media stops, 300 ms for
//! packets in flight), teardown (sessions closed through the back-end, `Rtc`s
//! disconnected).
//!
//! In WHIP mode a subscriber is one WHEP session per publisher of its room (WHEP serves
//! one publisher per session); in the other modes one session receives every publisher.

mod config;
pub mod http;
pub mod payload;
mod report;
mod signal;
pub mod stats;
mod worker;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc_core::dtls::DtlsCert;
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::{Codec, Direction};
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Protocol, Rtc};

pub use config::{Cascade, Config, LoadgenError, MAX_VERIFY_EVERY, Mode, parse_verify};
pub use http::{HttpError, HttpUrl};
pub use report::{
    EngineSummary, PeerCounts, Progress, RecvChecks, RecvCounts, Report, SentCounts,
    SimulcastCounts, Throughput,
};
pub use stats::Percentiles;

use signal::{RoomKey, SessionKey, Signaller};
use worker::{Cmd, MediaParams, PeerSetup, Role, Shared, Totals, Worker};

/// How long media keeps flowing to subscribers after publishers stop (packets in flight).
const DRAIN: Duration = Duration::from_millis(300);
/// Receive and send buffer size asked for each peer socket.
const SOCKET_BUFFER: usize = 2 << 20;
/// The most errors kept in the report.
const MAX_ERRORS: usize = 20;

/// Runs the load test and returns its report (no progress output).
pub fn run(config: &Config) -> Result<Report, LoadgenError> {
    run_with_progress(config, &mut |_| {})
}

/// Runs the load test, calling `progress` about once a second.
pub fn run_with_progress(
    config: &Config,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, LoadgenError> {
    config.validate()?;
    let start = Instant::now();
    let mut sig: Box<dyn Signaller> = match &config.mode {
        Mode::InProcess { shards } => Box::new(signal::InProcess::start(*shards)?),
        Mode::Control(path) => Box::new(signal::Control::connect(path, config.signalling_timeout)?),
        Mode::Cascade(c) => Box::new(signal::CascadeSignaller::connect(
            c,
            config.signalling_timeout,
        )?),
        Mode::Whip(url) => Box::new(signal::Whip::new(
            url,
            !config.allow_remote,
            config.token.clone(),
            config.signalling_timeout,
        )?),
    };
    let result = Run::new(config, start).and_then(|mut r| {
        let out = r.execute(config, sig.as_mut(), progress);
        let totals = r.finish(sig.as_mut());
        out.map(|steady| (r, steady, totals))
    });
    let engine = sig.engine_stats().map(|s| {
        let mut by = std::collections::BTreeMap::new();
        for x in &s.shards {
            for (k, v) in drop_reasons(x) {
                if v > 0 {
                    *by.entry(k.to_string()).or_insert(0) += v;
                }
            }
        }
        EngineSummary {
            shards: s.shards.len(),
            rtp_forwarded: s.rtp_forwarded(),
            packets_in: s.shards.iter().map(|x| x.packets_in).sum(),
            packets_out: s.shards.iter().map(|x| x.packets_out).sum(),
            drops: by.values().sum(),
            drops_by_reason: by,
            cpu_seconds: s.shards.iter().map(|x| x.cpu_time.as_secs_f64()).sum(),
        }
    });
    sig.shutdown();
    let (run, steady, (totals, latency, latency_relayed, connect)) = result?;
    let planned = run.planned;
    let r = RecvCounts {
        packets: totals.rtp_in,
        payload_bytes: totals.bytes_in,
        expected: totals.expected,
        lost: totals.expected.saturating_sub(totals.unique),
        loss_ratio: ratio(
            totals.expected.saturating_sub(totals.unique),
            totals.expected,
        ),
        checks: totals.checks,
        verified: totals.rtp_in - totals.unverified,
    };
    Ok(Report {
        simulcast: config.simulcast.then_some(SimulcastCounts {
            sent_by_layer: totals.sent_layer,
            subscribers_by_cap: totals.subs_cap,
            received_by_cap: totals.rx_cap,
            verified_by_cap_layer: totals.rx_cap_layer,
        }),
        mode: config.mode.name().into(),
        rooms: config.rooms,
        publishers_per_room: config.publishers,
        subscribers_per_room: config.subscribers,
        threads: config.threads,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        peers: PeerCounts {
            planned,
            created: totals.peers,
            connected: totals.connected,
            failed: totals.failed,
            signalling_errors: run.signalling_errors,
        },
        connect_ms: Percentiles::from_ns(&connect),
        latency_ms: Percentiles::from_ns(&latency),
        latency_relayed_ms: matches!(config.mode, Mode::Cascade(_))
            .then(|| Percentiles::from_ns(&latency_relayed)),
        sent: SentCounts {
            video_packets: totals.video_packets,
            audio_packets: totals.audio_packets,
            video_frames: totals.video_frames,
            keyframes: totals.keyframes,
            payload_bytes: totals.bytes_out,
            keyframe_requests: totals.keyframe_requests,
            send_errors: totals.send_errors,
        },
        received: r,
        throughput: steady,
        engine,
        errors: run.errors,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

struct WorkerLink {
    cmds: Sender<Cmd>,
    wake: UnixDatagram,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<worker::WorkerResult>>,
}

impl WorkerLink {
    fn send(&self, c: Cmd) {
        if self.cmds.send(c).is_ok() {
            // A full wake socket already holds a pending wake-up.
            let _ = self.wake.send(&[1]);
        }
    }
}

/// A snapshot of the summed worker counters.
#[derive(Debug, Clone, Copy, Default)]
struct Snap {
    at: Option<Instant>,
    created: u64,
    connected: u64,
    failed: u64,
    rtp_out: u64,
    bytes_out: u64,
    rtp_in: u64,
    bytes_in: u64,
    expected: u64,
    unique: u64,
    corrupt: u64,
}

/// The coordinator's state during a run.
struct Run {
    start: Instant,
    workers: Vec<WorkerLink>,
    cert: DtlsCert,
    planned: u64,
    next_worker: usize,
    /// Subscribers set up so far (`--simulcast`: the next one's layer cap is this % 3).
    subscribers_made: usize,
    sessions: Vec<SessionKey>,
    rooms: Vec<RoomKey>,
    signalling_errors: u64,
    errors: Vec<String>,
    last_progress: Snap,
    next_progress: Instant,
    phase: &'static str,
}

impl Run {
    fn new(config: &Config, start: Instant) -> Result<Run, LoadgenError> {
        let cert = DtlsCert::new_ecdsa_p256()
            .map_err(|e| LoadgenError::Setup(format!("certificate: {e}")))?;
        let media = config.media();
        let verify_every = config.verify_every;
        let mut workers = Vec::with_capacity(config.threads);
        for i in 0..config.threads {
            let (tx, rx) = mpsc::channel();
            let (a, b) = UnixDatagram::pair()
                .map_err(|e| LoadgenError::Setup(format!("wake socket: {e}")))?;
            a.set_nonblocking(true)
                .and_then(|()| b.set_nonblocking(true))
                .map_err(|e| LoadgenError::Setup(format!("wake socket: {e}")))?;
            let shared = Arc::new(Shared::default());
            let sh = shared.clone();
            let w = Worker::new(start, media, verify_every, rx, b, sh)
                .map_err(|e| LoadgenError::Setup(format!("epoll: {e}")))?;
            let handle = std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || w.run())
                .map_err(|e| LoadgenError::Setup(format!("thread: {e}")))?;
            workers.push(WorkerLink {
                cmds: tx,
                wake: a,
                shared,
                handle: Some(handle),
            });
        }
        Ok(Run {
            start,
            workers,
            cert,
            planned: 0,
            next_worker: 0,
            subscribers_made: 0,
            sessions: Vec::new(),
            rooms: Vec::new(),
            signalling_errors: 0,
            errors: Vec::new(),
            last_progress: Snap::default(),
            next_progress: start + Duration::from_secs(1),
            phase: "ramp",
        })
    }

    fn error(&mut self, e: impl std::fmt::Display) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e.to_string());
        }
    }

    fn snap(&self) -> Snap {
        let mut s = Snap {
            at: Some(Instant::now()),
            ..Snap::default()
        };
        for w in &self.workers {
            let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let sh = &w.shared;
            s.created += l(&sh.peers);
            s.connected += l(&sh.connected);
            s.failed += l(&sh.failed);
            s.rtp_out += l(&sh.rtp_out);
            s.bytes_out += l(&sh.bytes_out);
            s.rtp_in += l(&sh.rtp_in);
            s.bytes_in += l(&sh.bytes_in);
            s.expected += l(&sh.expected);
            s.unique += l(&sh.unique);
            s.corrupt += l(&sh.corrupt);
        }
        s
    }

    /// Emits a progress line when one is due.
    fn tick(&mut self, progress: &mut dyn FnMut(&Progress)) {
        let now = Instant::now();
        if now < self.next_progress {
            return;
        }
        self.next_progress += Duration::from_secs(1);
        if self.next_progress < now {
            self.next_progress = now + Duration::from_secs(1);
        }
        let s = self.snap();
        let prev = self.last_progress;
        let dt = prev
            .at
            .unwrap_or(self.start)
            .elapsed()
            .as_secs_f64()
            .max(1e-3);
        progress(&Progress {
            elapsed: self.start.elapsed().as_secs_f64(),
            phase: self.phase,
            planned: self.planned,
            created: s.created,
            connected: s.connected,
            failed: s.failed,
            pps_out: (s.rtp_out - prev.rtp_out) as f64 / dt,
            pps_in: (s.rtp_in - prev.rtp_in) as f64 / dt,
            loss: ratio(s.expected.saturating_sub(s.unique), s.expected),
            corrupt: s.corrupt,
        });
        self.last_progress = s;
    }

    /// Sleeps until `until`, emitting progress lines.
    fn sleep_until(&mut self, until: Instant, progress: &mut dyn FnMut(&Progress)) {
        loop {
            self.tick(progress);
            let now = Instant::now();
            if now >= until {
                return;
            }
            let step = until.min(self.next_progress).saturating_duration_since(now);
            std::thread::sleep(step.min(Duration::from_millis(100)));
        }
    }

    fn execute(
        &mut self,
        config: &Config,
        sig: &mut dyn Signaller,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Throughput, LoadgenError> {
        let multi = sig.multi_publisher_subscribe();
        let per_sub = if multi { 1 } else { config.publishers };
        self.planned = (config.rooms * (config.publishers + config.subscribers * per_sub)) as u64;
        let ramp_start = Instant::now();
        let mut index = 0u64;
        let mut next_publisher = 0u32;
        for r in 0..config.rooms {
            let name = format!("{}-{r}", config.room_prefix);
            let room = sig.create_room(&name)?;
            self.rooms.push(room.clone());
            let mut pubs = Vec::new();
            for _ in 0..config.publishers {
                self.pace(config, ramp_start, index, progress);
                index += 1;
                let id = next_publisher;
                next_publisher += 1;
                match self.create_peer(config, sig, &room, Role::Publisher(id), &[]) {
                    Ok(key) => pubs.push(key),
                    Err(e) => {
                        self.signalling_errors += 1;
                        self.error(format!("room {name} publisher {id}: {e}"));
                    }
                }
            }
            for s in 0..config.subscribers {
                let groups: Vec<Vec<SessionKey>> = if multi {
                    vec![pubs.clone()]
                } else {
                    pubs.iter().map(|p| vec![p.clone()]).collect()
                };
                for g in groups {
                    self.pace(config, ramp_start, index, progress);
                    index += 1;
                    if let Err(e) = self.create_peer(config, sig, &room, Role::Subscriber, &g) {
                        self.signalling_errors += 1;
                        self.error(format!("room {name} subscriber {s}: {e}"));
                    }
                }
            }
        }
        // Wait for every created peer to connect (or fail), up to the timeout.
        let deadline = Instant::now() + config.connect_timeout;
        loop {
            self.tick(progress);
            let s = self.snap();
            if s.created == self.sessions.len() as u64 && s.connected + s.failed >= s.created {
                break;
            }
            if Instant::now() >= deadline {
                let missing = (self.sessions.len() as u64).saturating_sub(s.connected + s.failed);
                self.error(format!(
                    "{missing} peer(s) not connected after the connect timeout"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.phase = "steady";
        let s0 = self.snap();
        let t0 = Instant::now();
        self.sleep_until(t0 + config.duration, progress);
        let s1 = self.snap();
        let secs = t0.elapsed().as_secs_f64().max(1e-6);
        self.phase = "drain";
        for w in &self.workers {
            w.send(Cmd::StopMedia);
        }
        self.sleep_until(Instant::now() + DRAIN, progress);
        Ok(Throughput {
            seconds: secs,
            pps_out: (s1.rtp_out - s0.rtp_out) as f64 / secs,
            pps_in: (s1.rtp_in - s0.rtp_in) as f64 / secs,
            mbps_out: (s1.bytes_out - s0.bytes_out) as f64 * 8.0 / secs / 1e6,
            mbps_in: (s1.bytes_in - s0.bytes_in) as f64 * 8.0 / secs / 1e6,
        })
    }

    /// Waits for the ramp slot of peer `index`.
    fn pace(
        &mut self,
        config: &Config,
        ramp_start: Instant,
        index: u64,
        progress: &mut dyn FnMut(&Progress),
    ) {
        if config.ramp > 0.0 {
            let at = ramp_start + Duration::from_secs_f64(index as f64 / config.ramp);
            self.sleep_until(at, progress);
        } else {
            self.tick(progress);
        }
    }

    fn create_peer(
        &mut self,
        config: &Config,
        sig: &mut dyn Signaller,
        room: &RoomKey,
        role: Role,
        publishers: &[SessionKey],
    ) -> Result<SessionKey, LoadgenError> {
        let now = Instant::now();
        let created_ns = u64::try_from(now.duration_since(self.start).as_nanos()).unwrap_or(0);
        let socket = peer_socket().map_err(|e| LoadgenError::Setup(format!("socket: {e}")))?;
        let local = socket
            .local_addr()
            .map_err(|e| LoadgenError::Setup(format!("socket: {e}")))?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_stats_interval(None)
            .build(now)
            .map_err(|e| LoadgenError::Setup(format!("rtc: {e}")))?;
        let cand = Candidate::host(local, Protocol::Udp)
            .map_err(|e| LoadgenError::Setup(format!("candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        let (video_mids, audio_mids) = {
            let mut api = rtc.sdp_api();
            let (dir, count) = match role {
                Role::Publisher(_) => (Direction::SendOnly, 1),
                Role::Subscriber => (Direction::RecvOnly, publishers.len().max(1)),
            };
            let mut v = Vec::new();
            let mut a = Vec::new();
            for _ in 0..count {
                if config.video {
                    v.push(api.add_media(MediaKind::Video, dir));
                }
                if config.audio {
                    a.push(api.add_media(MediaKind::Audio, dir));
                }
            }
            let Some((offer, pending)) = api.apply() else {
                return Err(LoadgenError::Config("no media to negotiate".into()));
            };
            let offer_sdp = offer.to_sdp_string();
            let (answer, key) = match role {
                Role::Publisher(_) => sig.publish(room, &offer_sdp)?,
                Role::Subscriber => sig.subscribe(room, publishers, &offer_sdp)?,
            };
            if !config.allow_remote
                && let Some(a) = non_loopback_candidate(&answer)
            {
                let _ = sig.close(&key);
                return Err(LoadgenError::Config(format!(
                    "answer offers non-loopback candidate {a} (pass --allow-remote to allow it)"
                )));
            }
            let parsed = SdpAnswer::from_sdp_string(&answer);
            let accepted = match parsed {
                Ok(ans) => rtc
                    .sdp_api()
                    .accept_answer(pending, ans)
                    .map_err(|e| LoadgenError::Signalling(format!("answer: {e}"))),
                Err(e) => Err(LoadgenError::Signalling(format!("answer: {e}"))),
            };
            if let Err(e) = accepted {
                let _ = sig.close(&key);
                return Err(e);
            }
            self.sessions.push(key);
            (v, a)
        };
        let layer_cap = if config.simulcast && role == Role::Subscriber {
            let cap = (self.subscribers_made % 3) as u8;
            self.subscribers_made += 1;
            if let Some(key) = self.sessions.last()
                && let Err(e) = sig.cap_layers(key, cap)
            {
                let _ = sig.close(key);
                return Err(e);
            }
            Some(cap)
        } else {
            None
        };
        let key = self
            .sessions
            .last()
            .cloned()
            // Pushed just above.
            .expect("session recorded");
        let pick = |rtc: &Rtc, mids: &[Mid], codec: Codec| -> Option<(Mid, u8)> {
            let mid = *mids.first()?;
            let pt = rtc.media_info(mid)?.pt_for(&codec)?;
            Some((mid, pt))
        };
        let (video, audio, expected_streams) = match role {
            Role::Publisher(_) => (
                pick(&rtc, &video_mids, Codec::Vp8),
                pick(&rtc, &audio_mids, Codec::Opus),
                0,
            ),
            Role::Subscriber => (None, None, publishers.len() as u64 * config.kinds()),
        };
        if matches!(role, Role::Publisher(_))
            && ((config.video && video.is_none()) || (config.audio && audio.is_none()))
        {
            self.error("a publisher's answer lacks VP8 or Opus; it sends what was negotiated");
        }
        let setup = PeerSetup {
            rtc,
            socket,
            local,
            role,
            created_ns,
            video,
            audio,
            expected_streams,
            relayed: matches!(key, SessionKey::Remote(_)),
            layer_cap,
        };
        let w = self.next_worker % self.workers.len();
        self.next_worker += 1;
        if let Some(link) = self.workers.get(w) {
            link.send(Cmd::Add(Box::new(setup)));
        }
        Ok(key)
    }

    /// Closes sessions through the back-end, stops the workers and merges their results.
    fn finish(
        &mut self,
        sig: &mut dyn Signaller,
    ) -> (
        Totals,
        hdrhistogram::Histogram<u64>,
        hdrhistogram::Histogram<u64>,
        hdrhistogram::Histogram<u64>,
    ) {
        for w in &self.workers {
            w.send(Cmd::StopMedia);
        }
        let sessions = std::mem::take(&mut self.sessions);
        for s in sessions.iter().rev() {
            if let Err(e) = sig.close(s) {
                self.error(format!("teardown: {e}"));
            }
        }
        for r in std::mem::take(&mut self.rooms) {
            if let Err(e) = sig.close_room(&r) {
                self.error(format!("teardown: {e}"));
            }
        }
        let mut totals = Totals::default();
        let mut latency = stats::new_histogram();
        let mut latency_relayed = stats::new_histogram();
        let mut connect = stats::new_histogram();
        for w in &mut self.workers {
            w.send(Cmd::Shutdown);
        }
        for w in &mut self.workers {
            let Some(h) = w.handle.take() else { continue };
            match h.join() {
                Ok(r) => {
                    totals.add(&r.totals);
                    let _ = latency.add(&r.latency);
                    let _ = latency_relayed.add(&r.latency_relayed);
                    let _ = connect.add(&r.connect);
                }
                Err(_) => {
                    if self.errors.len() < MAX_ERRORS {
                        self.errors.push("an event-loop thread panicked".into());
                    }
                }
            }
        }
        (totals, latency, latency_relayed, connect)
    }
}

/// A non-blocking UDP socket on an ephemeral loopback port with large buffers (the
/// kernel caps them at `net.core.rmem_max`/`wmem_max`), so a briefly busy event loop
/// does not lose datagrams.
fn peer_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The first non-loopback address among an SDP's `a=candidate` lines.
fn non_loopback_candidate(sdp: &str) -> Option<SocketAddr> {
    for line in sdp.lines() {
        let Some(c) = line.trim().strip_prefix("a=candidate:") else {
            continue;
        };
        let mut f = c.split_whitespace();
        let (Some(ip), Some(port)) = (f.nth(4), f.next()) else {
            continue;
        };
        let (Ok(ip), Ok(port)) = (ip.parse::<std::net::IpAddr>(), port.parse::<u16>()) else {
            continue;
        };
        if !ip.is_loopback() {
            return Some(SocketAddr::new(ip, port));
        }
    }
    None
}

/// The engine's drop counters of one shard under the report's names
/// (`drops_by_reason` keys): the I/O backend's counters prefixed `io_`, then the shard's
/// own reasons under the engine's names ([`engine::DropCounters::named`]).
fn drop_reasons(x: &engine::ShardStats) -> impl Iterator<Item = (&'static str, u64)> {
    let io = &x.io.drops;
    [
        ("io_queue_full", io.queue_full),
        ("io_too_large", io.too_large),
        ("io_bad_socket", io.bad_socket),
        ("io_family_mismatch", io.family_mismatch),
        ("io_send_would_block", io.send_would_block),
        ("io_send_error", io.send_error),
        ("io_recv_truncated", io.recv_truncated),
        ("io_recv_error", io.recv_error),
        ("io_tcp_send_full", io.tcp_send_full),
    ]
    .into_iter()
    .chain(x.drops.named())
}

#[cfg(test)]
mod tests;
