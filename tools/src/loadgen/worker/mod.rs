//! One event-loop thread driving many peers: `epoll` over their UDP sockets, `recvmmsg`
//! batches, a timer heap of `Rtc` timeouts and media ticks, no thread per peer.
//!
//! Subscribers fully verify (SRTP authentication and decryption, payload checksum,
//! latency) one packet in [`Worker`]'s `verify_every` (chosen by RTP sequence number)
//! and book the others from their clear header with
//! [`Rtc::account_rtp_unverified`], so the `Rtc`'s receive state (reports, NACK, TWCC)
//! and the loss count by SSRC and sequence number stay exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtc_core::media::Mid;
use rtc_core::rtp::{ExtensionValues, HeaderExtension, RtpHeader};
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

use super::RecvChecks;
use super::payload::{self, Stamp, StreamKind};
use super::stats::{SeqTracker, new_histogram};

/// Longest wait in `ppoll` (counters are published at least this often).
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Audio RTP clock ticks per millisecond (Opus, 48 kHz).
const AUDIO_TICKS_PER_MS: u32 = 48;
/// Bitrates of the three simulcast layers (`--simulcast`), kbit/s, lowest first.
pub(crate) const SIMULCAST_KBPS: [u32; 3] = [150, 500, 1500];
/// SSRC of simulcast layer `l` of publisher `p`: `SIMULCAST_SSRC_BASE + 4 p + l`
/// (never announced in the offer: the engine takes each new SSRC of the video section as
/// the next layer, in order of appearance, and layer 0 is sent first).
const SIMULCAST_SSRC_BASE: u32 = 0x5100_0000;
/// The most incoming streams one peer tracks (bounds state).
const MAX_STREAMS: usize = 256;

/// Media settings shared by every publisher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaParams {
    /// Send video.
    pub video: bool,
    /// Send audio.
    pub audio: bool,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// A keyframe every this many frames.
    pub keyframe_every: u64,
    /// Audio payload size in bytes.
    pub audio_bytes: usize,
    /// Time between audio packets: 20 ms (Opus frames), or longer for a DTX-like
    /// silent speaker (Opus DTX sends a frame every 400 ms).
    pub audio_period: Duration,
    /// Send three simulcast layers of [`SIMULCAST_KBPS`] instead of one video stream.
    pub simulcast: bool,
}

impl MediaParams {
    /// RTP timestamp step between audio packets.
    fn audio_ts_step(&self) -> u32 {
        let ms = u32::try_from(self.audio_period.as_millis()).unwrap_or(u32::MAX);
        ms.saturating_mul(AUDIO_TICKS_PER_MS)
    }

    fn frame_period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.fps.max(1)))
    }

    /// (keyframe size, interframe size): keyframes are 3× an interframe, and the GOP
    /// averages `video_kbps`.
    fn frame_sizes(&self) -> (usize, usize) {
        self.frame_sizes_at(self.video_kbps)
    }

    /// [`MediaParams::frame_sizes`] at `kbps`.
    fn frame_sizes_at(&self, kbps: u32) -> (usize, usize) {
        let per_frame = u64::from(kbps) * 1000 / 8 / u64::from(self.fps.max(1));
        let k = self.keyframe_every.max(1);
        let delta = per_frame * k / (k + 2);
        ((delta * 3) as usize, delta as usize)
    }
}

/// What a peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Sends audio and video with this publisher id.
    Publisher(u32),
    /// Receives.
    Subscriber,
}

/// A set-up peer handed to a worker.
pub(crate) struct PeerSetup {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub role: Role,
    /// When its set-up started, ns since the run's start.
    pub created_ns: u64,
    /// Video section and payload type (publishers).
    pub video: Option<(Mid, u8)>,
    /// Audio section and payload type (publishers).
    pub audio: Option<(Mid, u8)>,
    /// Streams it should receive (subscribers).
    pub expected_streams: u64,
    /// A subscriber on a cascade's second engine (its latency is also booked apart).
    pub relayed: bool,
    /// `--simulcast` subscribers: the highest layer the engine was told to forward.
    pub layer_cap: Option<u8>,
}

/// Commands to a worker.
pub(crate) enum Cmd {
    Add(Box<PeerSetup>),
    StopMedia,
    Shutdown,
}

/// Counters a worker publishes for progress lines (relaxed atomics, monotonic).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub peers: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub rtp_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rtp_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub expected: AtomicU64,
    pub unique: AtomicU64,
    pub corrupt: AtomicU64,
}

/// Totals of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub peers: u64,
    pub connected: u64,
    pub failed: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub bytes_out: u64,
    pub send_errors: u64,
    pub keyframe_requests: u64,
    pub rtp_in: u64,
    pub bytes_in: u64,
    pub expected: u64,
    pub unique: u64,
    /// Packets booked from their clear header only (not verified).
    pub unverified: u64,
    pub checks: RecvChecks,
    /// `--simulcast`: video packets sent per layer.
    pub sent_layer: [u64; 3],
    /// `--simulcast`: subscribers per layer cap.
    pub subs_cap: [u64; 3],
    /// `--simulcast`: packets received by the subscribers of each cap.
    pub rx_cap: [u64; 3],
    /// `--simulcast`: verified packets by (subscriber's cap, payload's layer).
    pub rx_cap_layer: [[u64; 3]; 3],
}

impl Totals {
    pub(crate) fn add(&mut self, o: &Totals) {
        self.peers += o.peers;
        self.connected += o.connected;
        self.failed += o.failed;
        self.video_packets += o.video_packets;
        self.audio_packets += o.audio_packets;
        self.video_frames += o.video_frames;
        self.keyframes += o.keyframes;
        self.bytes_out += o.bytes_out;
        self.send_errors += o.send_errors;
        self.keyframe_requests += o.keyframe_requests;
        self.rtp_in += o.rtp_in;
        self.bytes_in += o.bytes_in;
        self.expected += o.expected;
        self.unique += o.unique;
        self.unverified += o.unverified;
        self.checks.add(&o.checks);
        for l in 0..3 {
            self.sent_layer[l] += o.sent_layer[l];
            self.subs_cap[l] += o.subs_cap[l];
            self.rx_cap[l] += o.rx_cap[l];
            for k in 0..3 {
                self.rx_cap_layer[l][k] += o.rx_cap_layer[l][k];
            }
        }
    }

    fn publish(&self, s: &Shared) {
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        st(&s.peers, self.peers);
        st(&s.connected, self.connected);
        st(&s.failed, self.failed);
        st(&s.rtp_out, self.video_packets + self.audio_packets);
        st(&s.bytes_out, self.bytes_out);
        st(&s.rtp_in, self.rtp_in);
        st(&s.bytes_in, self.bytes_in);
        st(&s.expected, self.expected);
        st(&s.unique, self.unique);
        st(&s.corrupt, self.checks.corrupt);
    }
}

/// What a worker hands back when it ends.
pub(crate) struct WorkerResult {
    pub totals: Totals,
    /// End-to-end latency, ns.
    pub latency: Histogram<u64>,
    /// The same, of relayed subscribers only (cascade mode).
    pub latency_relayed: Histogram<u64>,
    /// Set-up start to `Connected`, ns.
    pub connect: Histogram<u64>,
}

struct VideoTx {
    mid: Mid,
    pt: u8,
    seq: u64,
    /// `--simulcast`: packets sent per layer (RTP sequence numbers and stamps).
    layer_seq: [u64; 3],
    frame: u64,
    force_key: bool,
    next: Instant,
}

struct AudioTx {
    mid: Mid,
    pt: u8,
    seq: u64,
    next: Instant,
}

struct RxStream {
    publisher: u32,
    kind: StreamKind,
}

/// Loss accounting of one received SSRC, by the `Rtc`'s extended sequence numbers
/// (verified and unverified packets alike).
struct RxSsrc {
    ssrc: u32,
    seq: SeqTracker,
}

struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    role: Role,
    created_ns: u64,
    relayed: bool,
    alive: bool,
    connected: bool,
    /// The `Rtc`'s wanted timeout.
    want: Instant,
    /// The earliest heap entry of this peer's `Rtc` timer.
    queued: Option<Instant>,
    touched: bool,
    video: Option<VideoTx>,
    audio: Option<AudioTx>,
    /// (publisher, kind) pairs seen in verified payloads.
    streams: Vec<RxStream>,
    /// Sequence tracking per received SSRC.
    ssrcs: Vec<RxSsrc>,
    /// `--simulcast` subscribers: the layer cap (index into the per-cap counters).
    layer_cap: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Rtc,
    Video,
    Audio,
}

type Timer = Reverse<(Instant, u32, TimerKind)>;

/// The state of one worker thread.
pub(crate) struct Worker {
    start: Instant,
    media: MediaParams,
    cmds: Receiver<Cmd>,
    wake: UnixDatagram,
    shared: Arc<Shared>,
    peers: Vec<Peer>,
    /// The `epoll` instance watching the wake socket and every live peer socket.
    epoll: std::os::fd::OwnedFd,
    /// Whether the wake socket was readable in the last wait.
    woken: bool,
    /// Peers whose socket was readable in the last wait.
    ready: Vec<u32>,
    /// Fully verify one received RTP packet in this many.
    verify_every: u16,
    heap: BinaryHeap<Timer>,
    touched: Vec<u32>,
    media_on: bool,
    stopping: bool,
    totals: Totals,
    latency: Histogram<u64>,
    latency_relayed: Histogram<u64>,
    connect: Histogram<u64>,
    /// `RECV_BATCH` receive slots of `SLOT` bytes for `recvmmsg`.
    bufs: Vec<u8>,
    out: Vec<u8>,
}

impl Worker {
    /// A worker; `verify_every` (at least 1) is the `N` of `--verify 1/N`.
    ///
    /// # Errors
    ///
    /// When the `epoll` instance cannot be created or the wake socket not added.
    pub(crate) fn new(
        start: Instant,
        media: MediaParams,
        verify_every: u16,
        cmds: Receiver<Cmd>,
        wake: UnixDatagram,
        shared: Arc<Shared>,
    ) -> std::io::Result<Worker> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        let epoll = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        epoll_add(&epoll, wake.as_raw_fd(), WAKE_TOKEN)?;
        Ok(Worker {
            start,
            media,
            cmds,
            wake,
            shared,
            peers: Vec::new(),
            epoll,
            woken: false,
            ready: Vec::with_capacity(MAX_EVENTS),
            verify_every: verify_every.max(1),
            heap: BinaryHeap::new(),
            touched: Vec::new(),
            media_on: true,
            stopping: false,
            totals: Totals::default(),
            latency: new_histogram(),
            latency_relayed: new_histogram(),
            connect: new_histogram(),
            bufs: vec![0u8; RECV_BATCH * SLOT],
            out: vec![0u8; payload::MAX_PAYLOAD],
        })
    }

    /// Runs until [`Cmd::Shutdown`] (or the command channel closes).
    pub(crate) fn run(mut self) -> WorkerResult {
        loop {
            if !self.commands() {
                break;
            }
            let now = Instant::now();
            self.receive(now);
            self.timers(now);
            self.drain_touched();
            self.totals.publish(&self.shared);
            self.wait();
        }
        self.shutdown();
        WorkerResult {
            totals: self.totals,
            latency: self.latency,
            latency_relayed: self.latency_relayed,
            connect: self.connect,
        }
    }

    /// Handles queued commands. Returns false on shutdown.
    fn commands(&mut self) -> bool {
        if std::mem::take(&mut self.woken) {
            let mut b = [0u8; 64];
            while self.wake.recv(&mut b).is_ok() {}
        }
        loop {
            match self.cmds.try_recv() {
                Ok(Cmd::Add(p)) => self.add(*p),
                Ok(Cmd::StopMedia) => {
                    self.media_on = false;
                    self.stopping = true;
                }
                Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn add(&mut self, p: PeerSetup) {
        let now = Instant::now();
        let idx = self.peers.len() as u32;
        let watched = epoll_add(&self.epoll, p.socket.as_raw_fd(), u64::from(idx) + 1).is_ok();
        self.totals.peers += 1;
        self.totals.checks.streams_expected += p.expected_streams;
        let video = p.video.map(|(mid, pt)| VideoTx {
            mid,
            pt,
            seq: 0,
            layer_seq: [0; 3],
            frame: 0,
            force_key: false,
            next: now,
        });
        let audio = p.audio.map(|(mid, pt)| AudioTx {
            mid,
            pt,
            seq: 0,
            next: now,
        });
        self.peers.push(Peer {
            rtc: p.rtc,
            socket: p.socket,
            local: p.local,
            role: p.role,
            created_ns: p.created_ns,
            relayed: p.relayed,
            alive: watched,
            connected: false,
            want: now,
            queued: None,
            touched: false,
            video,
            audio,
            streams: Vec::new(),
            ssrcs: Vec::new(),
            layer_cap: p.layer_cap.map(usize::from).filter(|&c| c < 3),
        });
        if let Some(n) = p
            .layer_cap
            .and_then(|c| self.totals.subs_cap.get_mut(usize::from(c)))
        {
            *n += 1;
        }
        if !watched {
            self.totals.failed += 1;
        }
        // Start ICE right away: a timeout now, then drain.
        if let Some(peer) = self.peers.last_mut() {
            let _ = peer.rtc.handle_input(Input::Timeout(now));
        }
        self.touch(idx);
    }

    fn touch(&mut self, idx: u32) {
        if let Some(p) = self.peers.get_mut(idx as usize)
            && !p.touched
        {
            p.touched = true;
            self.touched.push(idx);
        }
    }

    fn receive(&mut self, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        for &i in &ready {
            if self.receive_peer(i as usize, now) {
                self.touch(i);
            }
        }
        ready.clear();
        self.ready = ready;
    }

    /// Reads one `recvmmsg` batch of peer `i` and feeds it to its `Rtc`. Returns
    /// whether anything arrived.
    fn receive_peer(&mut self, i: usize, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(i) else {
            return false;
        };
        let n = match recv_batch(&peer.socket, &mut self.bufs) {
            Ok(b) => b,
            Err(_) => return false,
        };
        let (lens, sources) = (&n.lens[..n.count], &n.sources[..n.count]);
        if !peer.alive {
            return n.count > 0;
        }
        let subscriber = peer.role == Role::Subscriber && peer.connected;
        let every = self.verify_every;
        for (k, (&len, &source)) in lens.iter().zip(sources).enumerate() {
            let Some(contents) = self.bufs.get(k * SLOT..k * SLOT + len.min(SLOT)) else {
                continue;
            };
            let Some(source) = source else {
                continue;
            };
            let recv = Receive {
                proto: Protocol::Udp,
                source,
                destination: peer.local,
                contents,
            };
            if subscriber
                && every > 1
                && rtp_seq(contents).is_some_and(|s| s % every != 0)
                && let Some(u) = peer.rtc.account_rtp_unverified(now, &recv)
            {
                self.totals.rtp_in += 1;
                self.totals.unverified += 1;
                if let Some(n) = peer.layer_cap.and_then(|c| self.totals.rx_cap.get_mut(c)) {
                    *n += 1;
                }
                record_ssrc(&mut peer.ssrcs, &mut self.totals, u.ssrc, u.seq_no);
                continue;
            }
            let r = peer.rtc.handle_input(Input::Receive(now, recv));
            if r.is_err() && !peer.rtc.is_alive() {
                peer.alive = false;
                break;
            }
        }
        n.count > 0
    }

    fn timers(&mut self, now: Instant) {
        while let Some(Reverse((t, idx, kind))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            let Some(peer) = self.peers.get_mut(idx as usize) else {
                continue;
            };
            match kind {
                TimerKind::Rtc => {
                    if peer.queued == Some(t) {
                        peer.queued = None;
                    }
                    if peer.alive && peer.want <= now {
                        if peer.rtc.handle_input(Input::Timeout(now)).is_err()
                            && !peer.rtc.is_alive()
                        {
                            peer.alive = false;
                        }
                        self.touch(idx);
                    } else if peer.alive && peer.queued.is_none() {
                        peer.queued = Some(peer.want);
                        self.heap.push(Reverse((peer.want, idx, TimerKind::Rtc)));
                    }
                }
                TimerKind::Video => self.send_video(idx, now),
                TimerKind::Audio => self.send_audio(idx, now),
            }
        }
    }

    fn send_video(&mut self, idx: u32, now: Instant) {
        if !self.media_on {
            return;
        }
        let Some(peer) = self.peers.get_mut(idx as usize) else {
            return;
        };
        let (Role::Publisher(publisher), Some(v)) = (peer.role, peer.video.as_mut()) else {
            return;
        };
        if !peer.alive {
            return;
        }
        let m = self.media;
        let key = v.force_key || v.frame % m.keyframe_every.max(1) == 0;
        v.force_key = false;
        if m.simulcast {
            send_simulcast_frame(
                &mut peer.rtc,
                v,
                publisher,
                key,
                &m,
                self.start,
                &mut self.totals,
            );
            self.finish_frame(idx, now, key);
            return;
        }
        let (key_size, delta_size) = m.frame_sizes();
        let (n, base, extra) = payload::split_frame(if key { key_size } else { delta_size });
        let ts = (v.frame * 90_000 / u64::from(m.fps.max(1))) as u32;
        let sent_at = Instant::now();
        let send_ns = ns_since(self.start, sent_at);
        let (mid, pt) = (v.mid, v.pt);
        let mut seq = v.seq;
        let mut ok_packets = 0u64;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        for i in 0..n {
            let len = base + usize::from(i < extra);
            let stamp = Stamp {
                publisher,
                kind: StreamKind::Video,
                keyframe: key,
                layer: 0,
                seq,
                send_ns,
            };
            let written = payload::write_video(&mut self.out, len, i == 0, &stamp);
            let Some(data) = written.ok().and_then(|l| self.out.get(..l)) else {
                errors += 1;
                continue;
            };
            let r = match peer.rtc.stream_tx(mid) {
                Some(mut tx) => tx.write_rtp(
                    pt,
                    seq,
                    ts,
                    sent_at,
                    i + 1 == n,
                    &ExtensionValues::default(),
                    data,
                ),
                None => {
                    errors += 1;
                    continue;
                }
            };
            seq += 1;
            match r {
                Ok(()) => {
                    ok_packets += 1;
                    bytes += data.len() as u64;
                }
                Err(_) => errors += 1,
            }
        }
        v.seq = seq;
        self.totals.video_packets += ok_packets;
        self.totals.bytes_out += bytes;
        self.totals.send_errors += errors;
        self.finish_frame(idx, now, key);
    }

    /// After a publisher's frame: counts it and schedules the next one.
    fn finish_frame(&mut self, idx: u32, now: Instant, key: bool) {
        let Some(v) = self
            .peers
            .get_mut(idx as usize)
            .and_then(|p| p.video.as_mut())
        else {
            return;
        };
        v.frame += 1;
        let period = self.media.frame_period();
        v.next += period;
        if v.next < now {
            // Fell behind (overload): skip ahead instead of bursting.
            v.next = now + period;
        }
        let next = v.next;
        self.totals.video_frames += 1;
        self.totals.keyframes += u64::from(key);
        self.heap.push(Reverse((next, idx, TimerKind::Video)));
        self.touch(idx);
    }

    fn send_audio(&mut self, idx: u32, now: Instant) {
        if !self.media_on {
            return;
        }
        let Some(peer) = self.peers.get_mut(idx as usize) else {
            return;
        };
        let (Role::Publisher(publisher), Some(a)) = (peer.role, peer.audio.as_mut()) else {
            return;
        };
        if !peer.alive {
            return;
        }
        let sent_at = Instant::now();
        let stamp = Stamp {
            publisher,
            kind: StreamKind::Audio,
            keyframe: false,
            layer: 0,
            seq: a.seq,
            send_ns: ns_since(self.start, sent_at),
        };
        let size = self.media.audio_bytes.max(payload::MIN_AUDIO_PAYLOAD);
        let ts = (a.seq as u32).wrapping_mul(self.media.audio_ts_step());
        let written = payload::write_audio(&mut self.out, size, &stamp);
        let r = match (
            written.ok().and_then(|l| self.out.get(..l)),
            peer.rtc.stream_tx(a.mid),
        ) {
            (Some(data), Some(mut tx)) => tx
                .write_rtp(
                    a.pt,
                    a.seq,
                    ts,
                    sent_at,
                    false,
                    &ExtensionValues::default(),
                    data,
                )
                .map(|()| data.len()),
            _ => Err(rtc_core::RtcError::InvalidState("no audio stream")),
        };
        a.seq += 1;
        match r {
            Ok(len) => {
                self.totals.audio_packets += 1;
                self.totals.bytes_out += len as u64;
            }
            Err(_) => self.totals.send_errors += 1,
        }
        a.next += self.media.audio_period;
        if a.next < now {
            a.next = now + self.media.audio_period;
        }
        let next = a.next;
        self.heap.push(Reverse((next, idx, TimerKind::Audio)));
        self.touch(idx);
    }

    fn drain_touched(&mut self) {
        let mut list = std::mem::take(&mut self.touched);
        for &idx in &list {
            self.drain(idx);
        }
        list.clear();
        self.touched = list;
    }

    /// Polls a peer's output: sends datagrams, handles events, re-arms its timer.
    fn drain(&mut self, idx: u32) {
        let now = Instant::now();
        let now_ns = ns_since(self.start, now);
        let Some(peer) = self.peers.get_mut(idx as usize) else {
            return;
        };
        peer.touched = false;
        let mut start_media = false;
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    if peer.socket.send_to(t.contents, t.destination).is_err() {
                        self.totals.send_errors += 1;
                    }
                }
                Ok(Output::Event(ev)) => match ev {
                    Event::Connected if !peer.connected => {
                        peer.connected = true;
                        self.totals.connected += 1;
                        let _ = self
                            .connect
                            .record(now_ns.saturating_sub(peer.created_ns).max(1));
                        start_media = true;
                    }
                    Event::Failed(_) => {
                        peer.alive = false;
                        if !self.stopping {
                            self.totals.failed += 1;
                        }
                    }
                    Event::KeyframeRequest(_) => {
                        if let Some(v) = peer.video.as_mut() {
                            v.force_key = true;
                            self.totals.keyframe_requests += 1;
                        }
                    }
                    Event::RtpPacket(p) => {
                        self.totals.rtp_in += 1;
                        let data = p.payload();
                        self.totals.bytes_in += data.len() as u64;
                        record_ssrc(&mut peer.ssrcs, &mut self.totals, p.ssrc, p.seq_no);
                        if let Some(n) = peer.layer_cap.and_then(|c| self.totals.rx_cap.get_mut(c))
                        {
                            *n += 1;
                        }
                        match payload::check(data) {
                            Ok(stamp) => {
                                if let Some(n) = peer
                                    .layer_cap
                                    .and_then(|c| self.totals.rx_cap_layer.get_mut(c))
                                    .and_then(|row| row.get_mut(usize::from(stamp.layer)))
                                {
                                    *n += 1;
                                }
                                let ns = now_ns.saturating_sub(stamp.send_ns).max(1);
                                let _ = self.latency.record(ns);
                                if peer.relayed {
                                    let _ = self.latency_relayed.record(ns);
                                }
                                record_stream(&mut peer.streams, &stamp);
                            }
                            Err(payload::PayloadError::BadMagic) => self.totals.checks.foreign += 1,
                            Err(_) => self.totals.checks.corrupt += 1,
                        }
                    }
                    _ => {}
                },
                Ok(Output::Timeout(t)) => {
                    peer.want = t;
                    break;
                }
                Err(_) => {
                    peer.alive = false;
                    break;
                }
            }
        }
        if !peer.alive {
            epoll_del(&self.epoll, peer.socket.as_raw_fd());
            return;
        }
        if peer.queued.is_none_or(|q| peer.want < q) {
            peer.queued = Some(peer.want);
            self.heap.push(Reverse((peer.want, idx, TimerKind::Rtc)));
        }
        if start_media && self.media_on {
            if let Some(v) = peer.video.as_mut().filter(|_| self.media.video) {
                v.next = now;
                self.heap.push(Reverse((now, idx, TimerKind::Video)));
            }
            if let Some(a) = peer.audio.as_mut().filter(|_| self.media.audio) {
                a.next = now;
                self.heap.push(Reverse((now, idx, TimerKind::Audio)));
            }
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        let wait = if !self.touched.is_empty() {
            Duration::ZERO
        } else {
            self.heap
                .peek()
                .map_or(MAX_WAIT, |Reverse((t, _, _))| {
                    t.saturating_duration_since(now)
                })
                .min(MAX_WAIT)
        };
        // Round up to whole milliseconds so a timer is never polled early in a loop.
        let ms = wait.as_nanos().div_ceil(1_000_000) as libc::c_int;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // SAFETY: `events` is a valid, writable array of `MAX_EVENTS` entries; the epoll
        // descriptor is owned by `self`.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_EVENTS as libc::c_int,
                ms,
            )
        };
        // n < 0 (EINTR): nothing ready; the next iteration waits again.
        let n = usize::try_from(n).unwrap_or(0);
        self.ready.clear();
        for e in events.iter().take(n) {
            let token = e.u64;
            if token == WAKE_TOKEN {
                self.woken = true;
            } else {
                self.ready.push((token - 1) as u32);
            }
        }
    }

    fn shutdown(&mut self) {
        for idx in 0..self.peers.len() {
            if let Some(p) = self.peers.get_mut(idx) {
                p.rtc.disconnect();
                // Send what the disconnect queued (DTLS close_notify).
                while let Ok(out) = p.rtc.poll_output() {
                    match out {
                        Output::Transmit(t) => {
                            let _ = p.socket.send_to(t.contents, t.destination);
                        }
                        Output::Event(_) => {}
                        Output::Timeout(_) => break,
                    }
                }
            }
        }
        for p in &self.peers {
            self.totals.checks.streams_receiving += p.streams.len() as u64;
        }
        self.totals.publish(&self.shared);
    }
}

mod rx;
use rx::*;

#[cfg(test)]
mod tests;

/// Sends one frame on each of the three simulcast layers (`--simulcast`), layer 0 first,
/// each on its own SSRC with its own sequence numbers, all with the frame's timestamp.
fn send_simulcast_frame(
    rtc: &mut Rtc,
    v: &mut VideoTx,
    publisher: u32,
    key: bool,
    m: &MediaParams,
    start: Instant,
    totals: &mut Totals,
) {
    let ts = (v.frame * 90_000 / u64::from(m.fps.max(1))) as u32;
    let sent_at = Instant::now();
    let send_ns = ns_since(start, sent_at);
    rtc.direct_api().advance_time(sent_at);
    for (l, &kbps) in SIMULCAST_KBPS.iter().enumerate() {
        let (key_size, delta_size) = m.frame_sizes_at(kbps);
        let (n, base, extra) = payload::split_frame(if key { key_size } else { delta_size });
        let ssrc = SIMULCAST_SSRC_BASE
            .wrapping_add(publisher.wrapping_mul(4))
            .wrapping_add(l as u32);
        for i in 0..n {
            let len = base + usize::from(i < extra);
            let seq = v.layer_seq[l];
            let stamp = Stamp {
                publisher,
                kind: StreamKind::Video,
                keyframe: key,
                layer: l as u8,
                seq,
                send_ns,
            };
            let header = RtpHeader {
                marker: i + 1 == n,
                payload_type: v.pt,
                sequence_number: seq as u16,
                timestamp: ts,
                ssrc,
                ..RtpHeader::default()
            };
            let r = rtc.direct_api().write_rtp_packet_with(|buf| {
                let h = header.write(HeaderExtension::None, buf).ok()?;
                let body = buf.get_mut(h..)?;
                let p = payload::write_video(body, len, i == 0, &stamp).ok()?;
                Some(h + p)
            });
            v.layer_seq[l] += 1;
            match r {
                Ok(true) => {
                    totals.video_packets += 1;
                    totals.sent_layer[l] += 1;
                    totals.bytes_out += len as u64;
                }
                Ok(false) | Err(_) => totals.send_errors += 1,
            }
        }
    }
}
