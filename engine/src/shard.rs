//! One shard: a thread (pinned to a core) that owns its sessions, its I/O backend, a
//! timer heap and the forwarding routes of the streams it publishes or fans out.
//!
//! Shards share nothing: control commands arrive over a channel plus the backend's
//! [`Waker`]; RTP packets for subscribers on other shards travel in batches over bounded
//! channels (full → dropped and counted, never blocking), and the emptied batches come
//! back over a return channel so that steady-state forwarding does not allocate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;
use rtc_core::dtls::DtlsCert;
use rtc_core::event::{ChannelData, ChannelId, KeyframeRequestKind};
use rtc_core::ice::{Candidate, IceConnectionState, IceCreds, stun_ufrag};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::Extension;
use rtc_core::sdp_api::SdpOffer;
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

use crate::api::{
    ChannelTarget, CloseReason, DropCounters, EngineError, EngineEvent, MediaDesc, SessionId,
    SessionInfo, SessionSetup, SessionSnapshot, ShardStats, TrackCounters,
};
use crate::forward::{LegParams, PayloadDesc, SeqTsRewriter, repair_pts, rewrite_for_leg};
use crate::io::{IoBackend, Received, Waker};

/// A publisher's media section: the unit of routing.
pub(crate) type RouteKey = (SessionId, Mid);

/// Fixed facts about a route, supplied by the control side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteSpec {
    pub kind: MediaKind,
    pub pub_shard: usize,
}

/// A leg to install on the subscriber's shard.
#[derive(Debug, Clone)]
pub(crate) struct LegSpec {
    pub sub: SessionId,
    pub key: RouteKey,
    pub route: RouteSpec,
    pub params: LegParams,
}

/// Control commands (from [`EngineHandle`](crate::EngineHandle)).
pub(crate) enum Command {
    CreateSession {
        id: SessionId,
        setup: SessionSetup,
        reply: Sender<Result<SessionInfo, EngineError>>,
    },
    CloseSession {
        id: SessionId,
        reply: Sender<bool>,
    },
    AddLeg {
        spec: Box<LegSpec>,
        reply: Sender<bool>,
    },
    RemoveLeg {
        sub: SessionId,
        sub_mid: Mid,
        reply: Sender<bool>,
    },
    SetRemote {
        key: RouteKey,
        spec: RouteSpec,
        shard: usize,
        on: bool,
        reply: Sender<()>,
    },
    RequestKeyframe {
        publisher: SessionId,
        mid: Option<Mid>,
        reply: Sender<bool>,
    },
    Stats {
        reply: Sender<ShardStats>,
    },
    CloseAll {
        reply: Sender<usize>,
    },
    InjectPanic {
        id: SessionId,
    },
    SessionStats {
        id: SessionId,
        reply: Sender<Option<SessionSnapshot>>,
    },
    ChannelSend {
        id: SessionId,
        target: ChannelTarget,
        binary: bool,
        data: Vec<u8>,
        reply: Sender<Result<usize, EngineError>>,
    },
    Shutdown,
}

/// Shard-to-shard data.
pub(crate) enum DataMsg {
    /// RTP packets of publishers on the sending shard, for local fan-out.
    Batch(Batch),
    /// A subscriber on the sending shard wants a keyframe of this publisher stream.
    Keyframe(RouteKey),
}

/// A batch of plaintext RTP packets for another shard.
pub(crate) struct Batch {
    from: usize,
    recv_at: Instant,
    buf: Vec<u8>,
    pkts: Vec<BatchPkt>,
}

struct BatchPkt {
    key: RouteKey,
    start: usize,
    end: usize,
}

/// Byte capacity of a batch buffer.
const BATCH_BYTES: usize = 64 * 1024;
/// Largest RTP packet the shard forwards (the `Rtc` buffers hold 2048 bytes).
const SCRATCH: usize = 4096;
/// A DTLS-looking datagram used to ask an `Rtc` whether it accepts a source (ICE-validated).
const DTLS_PROBE: [u8; 13] = [22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Links to one shard (every shard holds one per shard, itself included).
#[derive(Clone)]
pub(crate) struct PeerLink {
    pub data_tx: Sender<DataMsg>,
    pub ret_tx: Sender<Batch>,
    pub waker: Waker,
}

/// Everything a shard thread starts with.
pub(crate) struct ShardCtx {
    pub index: usize,
    pub core: Option<usize>,
    pub announced: Vec<SocketAddr>,
    pub cert: DtlsCert,
    pub cmd_rx: Receiver<Command>,
    pub data_rx: Receiver<DataMsg>,
    pub ret_rx: Receiver<Batch>,
    pub peers: Vec<PeerLink>,
    pub events_tx: Sender<EngineEvent>,
    pub gone_tx: Sender<SessionId>,
    pub gauge: Arc<AtomicUsize>,
    pub keyframe_interval: Duration,
    pub rtx_buffer_packets: usize,
    pub forward_batch: usize,
}

struct Session {
    id: SessionId,
    rtc: Rtc,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    /// The `Rtc`'s next timeout.
    timer_at: Instant,
    /// The earliest entry this session has in the timer heap.
    heap_at: Option<Instant>,
    touched: bool,
    /// Payload type → media section, for packets whose SSRC the `Rtc` cannot place.
    pt_mid: Vec<(u8, Mid)>,
    repair_pts: u128,
    /// Last media SSRC seen per published section.
    rx_ssrcs: Vec<(Mid, u32)>,
    /// Legs this session subscribes through: (own mid, route, leg SSRC).
    legs: Vec<(Mid, RouteKey, u32)>,
    last_srtp_errors: u64,
    last_dropped: u64,
    panic_next: bool,
    ice_state: IceConnectionState,
    /// Latest periodic stream reports, one entry per (mid, direction).
    track_stats: Vec<TrackCounters>,
    rtt: Option<Duration>,
    /// Open data channels: (stream id, label).
    channels: Vec<(u16, String)>,
    /// RTP packets and bytes received per published section (repair streams excluded).
    rx_counts: Vec<(Mid, u64, u64)>,
}

impl Session {
    fn put_track(&mut self, t: TrackCounters) {
        match self
            .track_stats
            .iter_mut()
            .find(|x| x.mid == t.mid && x.inbound == t.inbound)
        {
            Some(x) => *x = t,
            None => self.track_stats.push(t),
        }
    }
}

struct Leg {
    sub: SessionId,
    slot: usize,
    params: LegParams,
    rw: SeqTsRewriter,
    /// RTP packets and bytes written on this leg.
    packets: u64,
    bytes: u64,
}

struct Route {
    spec: RouteSpec,
    legs: Vec<Leg>,
    /// Bit set of remote shards with subscribers.
    remote: u64,
    src_ssrc: Option<u32>,
    kf_last: Option<Instant>,
    kf_pending: bool,
}

impl Route {
    fn new(spec: RouteSpec) -> Route {
        Route {
            spec,
            legs: Vec::new(),
            remote: 0,
            src_ssrc: None,
            kf_last: None,
            kf_pending: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.legs.is_empty() && self.remote == 0
    }
}

#[derive(Default)]
struct Counters {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    rtp_forwarded: u64,
    cross_shard_out: u64,
    cross_shard_in: u64,
    keyframe_requests: u64,
    panics: u64,
    iterations: u64,
    drops: DropCounters,
}

enum Act {
    Continue,
    Timeout(Instant),
    Rtp {
        mid: Option<Mid>,
        ssrc: u32,
        pt: u8,
        len: usize,
    },
    Keyframe(u32),
    Connected,
    Failed,
    Panicked,
    Ice(IceConnectionState),
    Track(TrackCounters, Option<Duration>),
    ChannelOpen(u16, String),
    ChannelData(ChannelData),
    ChannelClose(u16),
}

pub(crate) struct Shard {
    ctx: ShardCtx,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    routes: HashMap<RouteKey, Route>,
    touched: Vec<usize>,
    doomed: Vec<(SessionId, CloseReason)>,
    scratch: Box<[u8]>,
    out_batches: Vec<Option<Batch>>,
    /// Remote batches forwarded this iteration: (receive time at the origin, packets).
    remote_fwd: Vec<(Instant, u64)>,
    local_fwd: u64,
    c: Counters,
    loop_ns: Histogram<u64>,
    latency_ns: Histogram<u64>,
    stop: bool,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Runs `f` on the session's `Rtc` under `catch_unwind`. `Err(())` means it panicked.
fn guarded<R>(s: &mut Session, f: impl FnOnce(&mut Rtc) -> R) -> Result<R, ()> {
    let inject = std::mem::take(&mut s.panic_next);
    let rtc = &mut s.rtc;
    catch_unwind(AssertUnwindSafe(move || {
        if inject {
            panic!("injected panic (test hook)");
        }
        f(rtc)
    }))
    .map_err(|_| ())
}

/// Pins a closure to `FnOnce` (so it may return a borrow of what it captured).
fn once<R, F: FnOnce() -> R>(f: F) -> F {
    f
}

fn touch(s: &mut Session, slot: usize, touched: &mut Vec<usize>) {
    if !s.touched {
        s.touched = true;
        touched.push(slot);
    }
}

/// Writes the packet for every local leg of a route. Returns the packets written.
#[allow(clippy::too_many_arguments)]
fn forward_legs(
    legs: &mut [Leg],
    packet: &[u8],
    source: u64,
    sessions: &mut [Option<Session>],
    touched: &mut Vec<usize>,
    doomed: &mut Vec<(SessionId, CloseReason)>,
    drops: &mut DropCounters,
    now: Instant,
) -> u64 {
    let mut n_fwd = 0;
    for leg in legs {
        let Some(Some(s)) = sessions.get_mut(leg.slot) else {
            continue;
        };
        if s.id != leg.sub {
            continue;
        }
        // The leg's packet is rewritten straight into the subscriber's send buffer.
        let mut n = 0usize;
        let (params, rw) = (&leg.params, &mut leg.rw);
        let res = guarded(s, |rtc| {
            rtc.direct_api().write_rtp_packet_with(|buf| {
                n = rewrite_for_leg(packet, source, params, rw, now, buf).ok()?;
                Some(n)
            })
        });
        match res {
            Ok(Ok(false)) => {
                drops.leg_rewrite += 1;
            }
            Ok(Ok(true)) => {
                n_fwd += 1;
                leg.packets += 1;
                leg.bytes += n as u64;
                touch(s, leg.slot, touched);
            }
            Ok(Err(_)) => drops.leg_not_ready += 1,
            Err(()) => doomed.push((leg.sub, CloseReason::Panicked)),
        }
    }
    n_fwd
}

fn media_descs(rtc: &Rtc) -> Vec<MediaDesc> {
    let mids: Vec<Mid> = rtc.media().map(|(m, _)| m).collect();
    mids.iter()
        .filter_map(|m| rtc.media_info(*m))
        .map(|info| MediaDesc {
            mid: info.mid,
            kind: info.kind,
            direction: info.direction,
            payloads: info
                .payloads
                .iter()
                .map(|p| PayloadDesc {
                    pt: p.pt,
                    codec: p.codec.clone(),
                    clock_rate: p.clock_rate,
                })
                .collect(),
            mid_ext_id: info.extensions.id_of(Extension::Mid),
            tx_ssrc: rtc.tx_ssrc(info.mid),
        })
        .collect()
}

impl Shard {
    pub(crate) fn new(ctx: ShardCtx) -> Shard {
        let n = ctx.peers.len();
        Shard {
            ctx,
            sessions: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: BinaryHeap::new(),
            routes: HashMap::new(),
            touched: Vec::new(),
            doomed: Vec::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            out_batches: (0..n).map(|_| None).collect(),
            remote_fwd: Vec::new(),
            local_fwd: 0,
            c: Counters::default(),
            loop_ns: histogram(),
            latency_ns: histogram(),
            stop: false,
        }
    }

    /// The shard loop. Returns on [`Command::Shutdown`] or when the control side is gone.
    pub(crate) fn run(mut self, mut backend: Box<dyn IoBackend>) {
        let mut last = Instant::now();
        while !self.stop {
            let timeout = match self.timers.peek() {
                Some(Reverse((t, _, _))) => t.saturating_duration_since(last),
                None => Duration::from_secs(1),
            }
            .min(Duration::from_secs(1));
            let timeout = if self.ctx.cmd_rx.is_empty() && self.ctx.data_rx.is_empty() {
                timeout
            } else {
                Duration::ZERO
            };
            let mut now_cell: Option<Instant> = None;
            let polled = backend.poll(Some(timeout), &mut |r: Received<'_>| {
                let now = *now_cell.get_or_insert_with(Instant::now);
                self.on_datagram(now, r);
            });
            if let Err(e) = polled {
                tracing::warn!(shard = self.ctx.index, error = %e, "backend poll failed");
            }
            // The one clock read of this iteration (taken at the first datagram, if any).
            let now = now_cell.unwrap_or_else(Instant::now);
            self.c.iterations += 1;
            self.bury();
            loop {
                match self.ctx.cmd_rx.try_recv() {
                    Ok(cmd) => {
                        self.on_command(cmd, now, &mut *backend);
                        self.bury();
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        // Every handle is gone: no command can ever arrive again.
                        tracing::info!(shard = self.ctx.index, "control side gone; stopping");
                        self.close_all(now, &mut *backend, CloseReason::Shutdown);
                        self.stop = true;
                        break;
                    }
                }
            }
            while let Ok(msg) = self.ctx.data_rx.try_recv() {
                self.on_data(msg, now);
            }
            self.drive_timers(now);
            self.bury();
            self.drain_touched(now, &mut *backend);
            self.send_batches();
            let end = Instant::now();
            self.loop_ns
                .saturating_record(nanos(end.saturating_duration_since(now)));
            if self.local_fwd > 0 {
                let _ = self
                    .latency_ns
                    .record_n(nanos(end.saturating_duration_since(now)), self.local_fwd);
                self.local_fwd = 0;
            }
            for (at, n) in self.remote_fwd.drain(..) {
                let _ = self
                    .latency_ns
                    .record_n(nanos(end.saturating_duration_since(at)), n);
            }
            if let Err(e) = backend.flush() {
                tracing::warn!(shard = self.ctx.index, error = %e, "backend flush failed");
            }
            last = end;
        }
    }

    fn stats(&self, backend: &dyn IoBackend) -> ShardStats {
        ShardStats {
            shard: self.ctx.index,
            core: self.ctx.core,
            backend: backend.kind(),
            local_addrs: backend.local_addrs().to_vec(),
            sessions: self.by_id.len(),
            routes: self.routes.len(),
            packets_in: self.c.packets_in,
            bytes_in: self.c.bytes_in,
            packets_out: self.c.packets_out,
            bytes_out: self.c.bytes_out,
            rtp_forwarded: self.c.rtp_forwarded,
            cross_shard_out: self.c.cross_shard_out,
            cross_shard_in: self.c.cross_shard_in,
            keyframe_requests: self.c.keyframe_requests,
            panics: self.c.panics,
            iterations: self.c.iterations,
            cpu_time: crate::io::cpu::thread_cpu_time(),
            drops: self.c.drops,
            io: *backend.stats(),
            loop_ns: self.loop_ns.clone(),
            forward_latency_ns: self.latency_ns.clone(),
        }
    }

    // ---- receive path -------------------------------------------------------------

    fn on_datagram(&mut self, now: Instant, r: Received<'_>) {
        self.c.packets_in += 1;
        self.c.bytes_in += r.data.len() as u64;
        let data: &[u8] = r.data;
        let destination = self.ctx.announced.get(r.socket).copied().unwrap_or(r.local);
        let is_stun = matches!(data.first(), Some(0..=3));
        let slot = match data.first() {
            Some(0..=3) => {
                let Ok(ufrag) = stun_ufrag(data) else {
                    self.c.drops.malformed += 1;
                    return;
                };
                let by_ufrag = ufrag.and_then(|ours| self.by_ufrag.get(ours).copied());
                match by_ufrag.or_else(|| self.by_addr.get(&r.source).copied()) {
                    Some(s) => s,
                    None => {
                        self.c.drops.unknown_source += 1;
                        return;
                    }
                }
            }
            Some(20..=63) | Some(128..=191) => match self.by_addr.get(&r.source) {
                Some(&s) => s,
                None => {
                    self.c.drops.unknown_source += 1;
                    return;
                }
            },
            _ => {
                self.c.drops.malformed += 1;
                return;
            }
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            self.c.drops.unknown_source += 1;
            return;
        };
        let recv = Receive {
            proto: Protocol::Udp,
            source: r.source,
            destination,
            contents: data,
        };
        match guarded(s, |rtc| rtc.handle_input(Input::Receive(now, recv))) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.c.drops.dead_session += 1;
                self.doomed.push((s.id, CloseReason::Failed));
                return;
            }
            Err(()) => {
                self.doomed.push((s.id, CloseReason::Panicked));
                return;
            }
        }
        let st = s.rtc.stats();
        self.c.drops.srtp_auth += st.srtp_errors.saturating_sub(s.last_srtp_errors);
        self.c.drops.rtc_dropped += st.dropped.saturating_sub(s.last_dropped);
        s.last_srtp_errors = st.srtp_errors;
        s.last_dropped = st.dropped;
        touch(s, slot, &mut self.touched);
        if is_stun && self.by_addr.get(&r.source) != Some(&slot) {
            let probe = Receive {
                contents: &DTLS_PROBE,
                ..recv
            };
            // Learn the address only once ICE validated it (a checked binding request).
            if s.rtc.accepts(&probe) {
                self.by_addr.insert(r.source, slot);
                if !s.addrs.contains(&r.source) {
                    s.addrs.push(r.source);
                }
            }
        }
    }

    fn on_data(&mut self, msg: DataMsg, now: Instant) {
        match msg {
            DataMsg::Keyframe(key) => self.request_keyframe_route(key, now),
            DataMsg::Batch(mut batch) => {
                let mut n_fwd = 0;
                for p in &batch.pkts {
                    self.c.cross_shard_in += 1;
                    let Some(route) = self.routes.get_mut(&p.key) else {
                        self.c.drops.no_route += 1;
                        continue;
                    };
                    let Some(packet) = batch.buf.get(p.start..p.end) else {
                        continue;
                    };
                    n_fwd += forward_legs(
                        &mut route.legs,
                        packet,
                        p.key.0.0,
                        &mut self.sessions,
                        &mut self.touched,
                        &mut self.doomed,
                        &mut self.c.drops,
                        now,
                    );
                }
                self.c.rtp_forwarded += n_fwd;
                if n_fwd > 0 {
                    self.remote_fwd.push((batch.recv_at, n_fwd));
                }
                batch.buf.clear();
                batch.pkts.clear();
                if let Some(peer) = self.ctx.peers.get(batch.from) {
                    // Full or gone: the batch is simply freed.
                    let _ = peer.ret_tx.try_send(batch);
                }
                self.bury();
            }
        }
    }

    // ---- timers and output --------------------------------------------------------

    fn drive_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, slot, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(Some(s)) = self.sessions.get_mut(slot) else {
                continue;
            };
            if s.id.0 != id || s.heap_at != Some(t) {
                continue;
            }
            s.heap_at = None;
            if s.timer_at > now {
                s.heap_at = Some(s.timer_at);
                self.timers.push(Reverse((s.timer_at, slot, id)));
                continue;
            }
            match guarded(s, |rtc| rtc.handle_input(Input::Timeout(now))) {
                Ok(Ok(())) => touch(s, slot, &mut self.touched),
                Ok(Err(_)) => self.doomed.push((s.id, CloseReason::Failed)),
                Err(()) => self.doomed.push((s.id, CloseReason::Panicked)),
            }
        }
    }

    fn drain_touched(&mut self, now: Instant, backend: &mut dyn IoBackend) {
        while let Some(slot) = self.touched.pop() {
            if let Some(Some(s)) = self.sessions.get_mut(slot) {
                s.touched = false;
                self.drain(slot, now, backend);
            }
            self.bury();
        }
    }

    /// Drains one session's output: transmits to the backend, events handled, the next
    /// timeout scheduled.
    fn drain(&mut self, slot: usize, now: Instant, backend: &mut dyn IoBackend) {
        loop {
            let act = {
                let Some(Some(s)) = self.sessions.get_mut(slot) else {
                    return;
                };
                let inject = std::mem::take(&mut s.panic_next);
                let rtc = &mut s.rtc;
                let res = catch_unwind(AssertUnwindSafe(once(move || {
                    if inject {
                        panic!("injected panic (test hook)");
                    }
                    rtc.poll_output()
                })));
                match res {
                    Err(_) => Act::Panicked,
                    Ok(Err(_)) => Act::Failed,
                    Ok(Ok(Output::Timeout(t))) => Act::Timeout(t),
                    Ok(Ok(Output::Transmit(t))) => {
                        let sock = self
                            .ctx
                            .announced
                            .iter()
                            .position(|a| *a == t.source)
                            .or_else(|| {
                                self.ctx
                                    .announced
                                    .iter()
                                    .position(|a| a.is_ipv4() == t.destination.is_ipv4())
                            })
                            .unwrap_or(0);
                        if backend.queue_send(sock, t.destination, t.contents) {
                            self.c.packets_out += 1;
                            self.c.bytes_out += t.contents.len() as u64;
                        }
                        Act::Continue
                    }
                    Ok(Ok(Output::Event(ev))) => match ev {
                        Event::RtpPacket(p) => match self.scratch.get_mut(..p.packet.len()) {
                            Some(dst) => {
                                dst.copy_from_slice(p.packet);
                                Act::Rtp {
                                    mid: p.mid,
                                    ssrc: p.ssrc,
                                    pt: p.payload_type,
                                    len: p.packet.len(),
                                }
                            }
                            None => {
                                self.c.drops.leg_rewrite += 1;
                                Act::Continue
                            }
                        },
                        Event::KeyframeRequest(k) => Act::Keyframe(k.ssrc),
                        Event::Connected => Act::Connected,
                        Event::Failed(_) => Act::Failed,
                        Event::IceConnectionStateChange(st) => Act::Ice(st),
                        Event::MediaIngressStats(st) => Act::Track(
                            TrackCounters {
                                mid: st.mid,
                                inbound: true,
                                packets: st.packets,
                                bytes: st.bytes,
                                lost: u64::try_from(st.lost).unwrap_or(0),
                                nacks: st.nacks_sent,
                                keyframe_requests: st.plis_sent + st.firs_sent,
                            },
                            None,
                        ),
                        Event::MediaEgressStats(st) => Act::Track(
                            TrackCounters {
                                mid: st.mid,
                                inbound: false,
                                packets: st.packets,
                                bytes: st.bytes,
                                lost: st.rtx_sent,
                                nacks: st.nacks_received,
                                keyframe_requests: st.plis_received + st.firs_received,
                            },
                            st.rtt,
                        ),
                        Event::ChannelOpen(id, label) => Act::ChannelOpen(id.0, label),
                        Event::ChannelData(d) => Act::ChannelData(d),
                        Event::ChannelClose(id) => Act::ChannelClose(id.0),
                        _ => Act::Continue,
                    },
                }
            };
            match act {
                Act::Continue => {}
                Act::Timeout(t) => {
                    if let Some(Some(s)) = self.sessions.get_mut(slot) {
                        s.timer_at = t;
                        if s.heap_at.is_none_or(|h| t < h) {
                            s.heap_at = Some(t);
                            self.timers.push(Reverse((t, slot, s.id.0)));
                        }
                        if !s.rtc.is_alive() {
                            self.doomed.push((s.id, CloseReason::Failed));
                        }
                    }
                    return;
                }
                Act::Rtp { mid, ssrc, pt, len } => self.on_rtp(slot, mid, ssrc, pt, len, now),
                Act::Keyframe(ssrc) => self.on_keyframe_request(slot, ssrc, now),
                Act::Connected => {
                    if let Some(Some(s)) = self.sessions.get(slot) {
                        let _ = self
                            .ctx
                            .events_tx
                            .try_send(EngineEvent::SessionConnected(s.id));
                    }
                }
                Act::Failed => {
                    // Keep draining (a failing Rtc may still flush an alert), then remove.
                    self.doom(slot, CloseReason::Failed);
                }
                Act::Panicked => {
                    self.doom(slot, CloseReason::Panicked);
                    return;
                }
                Act::Ice(st) => {
                    if let Some(Some(s)) = self.sessions.get_mut(slot) {
                        s.ice_state = st;
                        let _ = self.ctx.events_tx.try_send(EngineEvent::IceState(s.id, st));
                    }
                }
                Act::Track(t, rtt) => {
                    if let Some(Some(s)) = self.sessions.get_mut(slot) {
                        s.put_track(t);
                        if rtt.is_some() {
                            s.rtt = rtt;
                        }
                    }
                }
                Act::ChannelOpen(channel, label) => {
                    if let Some(Some(s)) = self.sessions.get_mut(slot) {
                        s.channels.retain(|(c, _)| *c != channel);
                        s.channels.push((channel, label.clone()));
                        let _ = self.ctx.events_tx.try_send(EngineEvent::ChannelOpen {
                            session: s.id,
                            channel,
                            label,
                        });
                    }
                }
                Act::ChannelData(d) => {
                    if let Some(Some(s)) = self.sessions.get(slot) {
                        let label = s
                            .channels
                            .iter()
                            .find(|(c, _)| *c == d.id.0)
                            .map(|(_, l)| l.clone())
                            .unwrap_or_default();
                        let _ = self.ctx.events_tx.try_send(EngineEvent::ChannelMessage {
                            session: s.id,
                            channel: d.id.0,
                            label,
                            binary: d.binary,
                            data: d.data,
                        });
                    }
                }
                Act::ChannelClose(channel) => {
                    if let Some(Some(s)) = self.sessions.get_mut(slot) {
                        s.channels.retain(|(c, _)| *c != channel);
                    }
                }
            }
        }
    }

    // ---- forwarding ---------------------------------------------------------------

    fn on_rtp(
        &mut self,
        slot: usize,
        mid: Option<Mid>,
        ssrc: u32,
        pt: u8,
        len: usize,
        now: Instant,
    ) {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let id = s.id;
        let mid = mid.or_else(|| s.pt_mid.iter().find(|(p, _)| *p == pt).map(|(_, m)| *m));
        let Some(mid) = mid else {
            self.c.drops.no_route += 1;
            return;
        };
        let repair = pt < 128 && s.repair_pts & (1u128 << pt) != 0;
        if !repair {
            match s.rx_ssrcs.iter_mut().find(|(m, _)| *m == mid) {
                Some(e) => e.1 = ssrc,
                None => s.rx_ssrcs.push((mid, ssrc)),
            }
            match s.rx_counts.iter_mut().find(|(m, _, _)| *m == mid) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += len as u64;
                }
                None => s.rx_counts.push((mid, 1, len as u64)),
            }
        }
        let key = (id, mid);
        let Some(route) = self.routes.get_mut(&key) else {
            self.c.drops.no_route += 1;
            return;
        };
        if repair {
            self.c.drops.leg_rewrite += 1;
            return;
        }
        route.src_ssrc = Some(ssrc);
        let remote = route.remote;
        let packet = self.scratch.get(..len).unwrap_or(&[]);
        let n_fwd = forward_legs(
            &mut route.legs,
            packet,
            id.0,
            &mut self.sessions,
            &mut self.touched,
            &mut self.doomed,
            &mut self.c.drops,
            now,
        );
        let kf_due = route.kf_pending
            && route
                .kf_last
                .is_none_or(|t| now.saturating_duration_since(t) >= self.ctx.keyframe_interval);
        self.c.rtp_forwarded += n_fwd;
        self.local_fwd += n_fwd;
        if remote != 0 {
            self.push_remote(key, remote, len, now);
        }
        if kf_due {
            self.request_keyframe_route(key, now);
        }
    }

    fn push_remote(&mut self, key: RouteKey, mut remote: u64, len: usize, now: Instant) {
        while remote != 0 {
            let shard = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            let full = match self.out_batches.get(shard) {
                Some(Some(b)) => {
                    b.pkts.len() >= self.ctx.forward_batch || b.buf.len() + len > BATCH_BYTES
                }
                Some(None) => false,
                None => continue,
            };
            if full {
                self.send_batch(shard);
            }
            let batch = match self.out_batches.get_mut(shard) {
                Some(Some(b)) => b,
                Some(slot) => {
                    let b = self.ctx.ret_rx.try_recv().unwrap_or_else(|_| Batch {
                        from: self.ctx.index,
                        recv_at: now,
                        buf: Vec::with_capacity(BATCH_BYTES),
                        pkts: Vec::with_capacity(self.ctx.forward_batch),
                    });
                    slot.insert(Batch { recv_at: now, ..b })
                }
                None => continue,
            };
            let start = batch.buf.len();
            batch
                .buf
                .extend_from_slice(self.scratch.get(..len).unwrap_or(&[]));
            batch.pkts.push(BatchPkt {
                key,
                start,
                end: start + len,
            });
            self.c.cross_shard_out += 1;
        }
    }

    fn send_batch(&mut self, shard: usize) {
        let Some(batch) = self.out_batches.get_mut(shard).and_then(Option::take) else {
            return;
        };
        let Some(peer) = self.ctx.peers.get(shard) else {
            return;
        };
        let n = batch.pkts.len() as u64;
        match peer.data_tx.try_send(DataMsg::Batch(batch)) {
            Ok(()) => peer.waker.wake(),
            Err(TrySendError::Full(DataMsg::Batch(mut b)))
            | Err(TrySendError::Disconnected(DataMsg::Batch(mut b))) => {
                self.c.drops.cross_shard_full += n;
                b.buf.clear();
                b.pkts.clear();
                if let Some(me) = self.ctx.peers.get(self.ctx.index) {
                    let _ = me.ret_tx.try_send(b);
                }
            }
            Err(_) => self.c.drops.cross_shard_full += n,
        }
    }

    fn send_batches(&mut self) {
        for shard in 0..self.out_batches.len() {
            self.send_batch(shard);
        }
    }

    fn on_keyframe_request(&mut self, slot: usize, leg_ssrc: u32, now: Instant) {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return;
        };
        let Some(&(_, key, _)) = s.legs.iter().find(|(_, _, ssrc)| *ssrc == leg_ssrc) else {
            return;
        };
        let _ = self.ctx.events_tx.try_send(EngineEvent::KeyframeRequested {
            publisher: key.0,
            mid: key.1,
            requester: s.id,
        });
        self.keyframe_upstream(key, now);
    }

    /// Asks the publisher of `key` for a keyframe, on its shard.
    fn keyframe_upstream(&mut self, key: RouteKey, now: Instant) {
        let Some(route) = self.routes.get(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let pub_shard = route.spec.pub_shard;
        if pub_shard == self.ctx.index {
            self.request_keyframe_route(key, now);
        } else if let Some(peer) = self.ctx.peers.get(pub_shard) {
            match peer.data_tx.try_send(DataMsg::Keyframe(key)) {
                Ok(()) => peer.waker.wake(),
                Err(_) => self.c.drops.cross_shard_full += 1,
            }
        }
    }

    /// On the publisher's shard: sends a PLI for the route's source stream, at most one
    /// per keyframe interval (later requests are remembered and sent when it elapses).
    fn request_keyframe_route(&mut self, key: RouteKey, now: Instant) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let due = route
            .kf_last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.ctx.keyframe_interval);
        let (Some(ssrc), true) = (route.src_ssrc, due) else {
            route.kf_pending = true;
            return;
        };
        route.kf_pending = false;
        route.kf_last = Some(now);
        let Some(&slot) = self.by_id.get(&key.0) else {
            return;
        };
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            match guarded(s, |rtc| {
                rtc.direct_api()
                    .request_keyframe(ssrc, KeyframeRequestKind::Pli)
            }) {
                Ok(Ok(())) => {
                    self.c.keyframe_requests += 1;
                    touch(s, slot, &mut self.touched);
                }
                Ok(Err(_)) => {}
                Err(()) => self.doomed.push((s.id, CloseReason::Panicked)),
            }
        }
    }

    // ---- sessions -----------------------------------------------------------------

    /// Removes sessions recorded as failed or panicked.
    fn bury(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            if let Some(&slot) = self.by_id.get(&id) {
                self.remove_session(slot, reason);
            }
        }
    }

    /// Records the session in `slot` for removal at the next [`Shard::bury`].
    fn doom(&mut self, slot: usize, reason: CloseReason) {
        if let Some(Some(s)) = self.sessions.get(slot) {
            self.doomed.push((s.id, reason));
        }
    }

    fn remove_session(&mut self, slot: usize, reason: CloseReason) {
        let Some(s) = self.sessions.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if reason == CloseReason::Panicked {
            self.c.panics += 1;
            tracing::warn!(shard = self.ctx.index, session = %s.id, "session panicked; removed");
        }
        self.by_id.remove(&s.id);
        self.by_ufrag.remove(&s.ufrag);
        for a in &s.addrs {
            if self.by_addr.get(a) == Some(&slot) {
                self.by_addr.remove(a);
            }
        }
        for (_, key, _) in &s.legs {
            if let Some(r) = self.routes.get_mut(key) {
                r.legs.retain(|l| l.sub != s.id);
                if r.is_empty() {
                    self.routes.remove(key);
                }
            }
        }
        self.free.push(slot);
        self.ctx.gauge.fetch_sub(1, Ordering::Relaxed);
        let _ = self
            .ctx
            .events_tx
            .try_send(EngineEvent::SessionClosed(s.id, reason));
        let _ = self.ctx.gone_tx.try_send(s.id);
    }

    fn create_session(
        &mut self,
        id: SessionId,
        setup: SessionSetup,
        now: Instant,
    ) -> Result<SessionInfo, EngineError> {
        let mut creds = IceCreds::random();
        while self.by_ufrag.contains_key(&creds.ufrag) {
            creds = IceCreds::random();
        }
        let cert = self.ctx.cert.clone();
        let rtx_packets = self.ctx.rtx_buffer_packets;
        let announced = self.ctx.announced.clone();
        let ufrag = creds.ufrag.clone();
        let local_ice = creds.clone();
        let built = catch_unwind(AssertUnwindSafe(move || -> Result<_, EngineError> {
            let rtc_err = |e: rtc_core::RtcError| EngineError::Rtc(e.to_string());
            let mut rtc = Rtc::builder()
                .set_ice_lite(true)
                .set_rtp_mode(true)
                .set_dtls_cert(cert)
                .set_local_ice_credentials(creds)
                .set_rtx_buffer(rtx_packets, Duration::from_secs(2))
                .build(now)
                .map_err(rtc_err)?;
            let mut candidates = Vec::new();
            for a in &announced {
                let c = Candidate::host(*a, Protocol::Udp)
                    .map_err(|e| EngineError::Rtc(e.to_string()))?;
                candidates.push(c.to_sdp_string());
                rtc.add_local_candidate(c);
            }
            let answer = match setup {
                SessionSetup::Offer(sdp) => {
                    let offer = SdpOffer::from_sdp_string(&sdp)
                        .map_err(|e| EngineError::Rtc(e.to_string()))?;
                    let answer = rtc.sdp_api().accept_offer(offer).map_err(rtc_err)?;
                    Some(answer.to_sdp_string())
                }
                SessionSetup::Direct(p) => {
                    let mut api = rtc.direct_api();
                    api.set_remote_ice_credentials(p.remote_ice);
                    api.set_remote_fingerprint(p.remote_fingerprint);
                    api.set_ice_controlling(false);
                    api.start_dtls(p.dtls_active).map_err(rtc_err)?;
                    for (mid, kind) in &p.media {
                        api.declare_media(*mid, *kind);
                    }
                    for (mid, ssrc) in &p.rx_ssrcs {
                        api.expect_stream_rx(*mid, *ssrc).map_err(rtc_err)?;
                    }
                    None
                }
            };
            Ok((rtc, candidates, answer))
        }));
        let (rtc, candidates, answer) = match built {
            Ok(r) => r?,
            Err(_) => {
                self.c.panics += 1;
                return Err(EngineError::Rtc("session set-up panicked".into()));
            }
        };
        let media = media_descs(&rtc);
        let mut pt_mid: Vec<(u8, Mid)> = Vec::new();
        let mut ambiguous: Vec<u8> = Vec::new();
        for m in &media {
            for p in &m.payloads {
                if pt_mid.iter().any(|(pt, _)| *pt == p.pt) {
                    ambiguous.push(p.pt);
                } else {
                    pt_mid.push((p.pt, m.mid));
                }
            }
        }
        pt_mid.retain(|(pt, _)| !ambiguous.contains(pt));
        let repair = media
            .iter()
            .fold(0u128, |acc, m| acc | repair_pts(&m.payloads));
        let fingerprint = rtc.local_fingerprint().clone();
        let session = Session {
            id,
            rtc,
            ufrag: ufrag.clone(),
            addrs: Vec::new(),
            timer_at: now,
            heap_at: None,
            touched: false,
            pt_mid,
            repair_pts: repair,
            rx_ssrcs: Vec::new(),
            legs: Vec::new(),
            last_srtp_errors: 0,
            last_dropped: 0,
            panic_next: false,
            ice_state: IceConnectionState::New,
            track_stats: Vec::new(),
            rtt: None,
            channels: Vec::new(),
            rx_counts: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.sessions.push(None);
                self.sessions.len() - 1
            }
        };
        let Some(entry) = self.sessions.get_mut(slot) else {
            return Err(EngineError::Rtc("slot vanished".into()));
        };
        let s = entry.insert(session);
        touch(s, slot, &mut self.touched);
        self.by_id.insert(id, slot);
        self.by_ufrag.insert(ufrag, slot);
        self.ctx.gauge.fetch_add(1, Ordering::Relaxed);
        Ok(SessionInfo {
            id,
            shard: self.ctx.index,
            answer,
            local_ice,
            fingerprint,
            candidates,
            candidate_addrs: self.ctx.announced.clone(),
            media,
        })
    }

    fn close_session(
        &mut self,
        slot: usize,
        now: Instant,
        backend: &mut dyn IoBackend,
        reason: CloseReason,
    ) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            if guarded(s, |rtc| rtc.disconnect()).is_err() {
                self.remove_session(slot, CloseReason::Panicked);
                return;
            }
            self.drain(slot, now, backend);
        }
        self.remove_session(slot, reason);
    }

    fn close_all(
        &mut self,
        now: Instant,
        backend: &mut dyn IoBackend,
        reason: CloseReason,
    ) -> usize {
        let slots: Vec<usize> = self.by_id.values().copied().collect();
        for slot in &slots {
            self.close_session(*slot, now, backend, reason);
        }
        self.bury();
        slots.len()
    }

    // ---- commands -----------------------------------------------------------------

    fn on_command(&mut self, cmd: Command, now: Instant, backend: &mut dyn IoBackend) {
        match cmd {
            Command::CreateSession { id, setup, reply } => {
                let r = self.create_session(id, setup, now);
                let _ = reply.send(r);
            }
            Command::CloseSession { id, reply } => {
                let found = match self.by_id.get(&id) {
                    Some(&slot) => {
                        self.close_session(slot, now, backend, CloseReason::Requested);
                        true
                    }
                    None => false,
                };
                let _ = reply.send(found);
            }
            Command::AddLeg { spec, reply } => {
                let ok = self.add_leg(*spec, now);
                let _ = reply.send(ok);
            }
            Command::RemoveLeg {
                sub,
                sub_mid,
                reply,
            } => {
                let ok = self.remove_leg(sub, sub_mid).is_some();
                let _ = reply.send(ok);
            }
            Command::SetRemote {
                key,
                spec,
                shard,
                on,
                reply,
            } => {
                if shard < 64 {
                    let bit = 1u64 << shard;
                    if on {
                        self.routes
                            .entry(key)
                            .or_insert_with(|| Route::new(spec))
                            .remote |= bit;
                    } else if let Some(r) = self.routes.get_mut(&key) {
                        r.remote &= !bit;
                        if r.is_empty() {
                            self.routes.remove(&key);
                        }
                    }
                }
                let _ = reply.send(());
            }
            Command::RequestKeyframe {
                publisher,
                mid,
                reply,
            } => {
                let ok = self.request_keyframe_api(publisher, mid);
                let _ = reply.send(ok);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats(backend));
            }
            Command::CloseAll { reply } => {
                let n = self.close_all(now, backend, CloseReason::Shutdown);
                let _ = reply.send(n);
            }
            Command::InjectPanic { id } => {
                if let Some(&slot) = self.by_id.get(&id)
                    && let Some(Some(s)) = self.sessions.get_mut(slot)
                {
                    s.panic_next = true;
                }
            }
            Command::SessionStats { id, reply } => {
                let _ = reply.send(self.snapshot(id));
            }
            Command::ChannelSend {
                id,
                target,
                binary,
                data,
                reply,
            } => {
                let _ = reply.send(self.channel_send(id, &target, binary, &data));
            }
            Command::Shutdown => {
                self.close_all(now, backend, CloseReason::Shutdown);
                self.stop = true;
            }
        }
    }

    fn snapshot(&self, id: SessionId) -> Option<SessionSnapshot> {
        let slot = *self.by_id.get(&id)?;
        let s = self.sessions.get(slot)?.as_ref()?;
        let remote_addr = s.addrs.last().copied();
        let local_addr = remote_addr.and_then(|r| {
            self.ctx
                .announced
                .iter()
                .find(|a| a.is_ipv4() == r.is_ipv4())
                .copied()
        });
        Some(SessionSnapshot {
            id,
            shard: self.ctx.index,
            alive: s.rtc.is_alive(),
            connected: s.rtc.is_connected(),
            ice_state: s.ice_state,
            local_addr,
            remote_addr,
            rtt: s.rtt,
            peer: s.rtc.stats().clone(),
            tracks: self.track_counters(s),
            channels: s.channels.clone(),
        })
    }

    /// The `Rtc`'s stream reports, with packet and byte counts from the shard's own
    /// counters (raw RTP-mode writes are not counted by the `Rtc`'s reports).
    fn track_counters(&self, s: &Session) -> Vec<TrackCounters> {
        let mut v = s.track_stats.clone();
        let mut put = |mid: Mid, inbound: bool, packets: u64, bytes: u64| match v
            .iter_mut()
            .find(|t| t.mid == mid && t.inbound == inbound)
        {
            Some(t) => {
                t.packets = t.packets.max(packets);
                t.bytes = t.bytes.max(bytes);
            }
            None => v.push(TrackCounters {
                mid,
                inbound,
                packets,
                bytes,
                lost: 0,
                nacks: 0,
                keyframe_requests: 0,
            }),
        };
        for (mid, p, b) in &s.rx_counts {
            put(*mid, true, *p, *b);
        }
        for (mid, key, _) in &s.legs {
            if let Some(leg) = self.routes.get(key).and_then(|r| {
                r.legs
                    .iter()
                    .find(|l| l.sub == s.id && l.params.mid == *mid)
            }) {
                put(*mid, false, leg.packets, leg.bytes);
            }
        }
        v
    }

    fn channel_send(
        &mut self,
        id: SessionId,
        target: &ChannelTarget,
        binary: bool,
        data: &[u8],
    ) -> Result<usize, EngineError> {
        let slot = *self.by_id.get(&id).ok_or(EngineError::UnknownSession(id))?;
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return Err(EngineError::UnknownSession(id));
        };
        let channel = match target {
            ChannelTarget::Id(c) => s.channels.iter().find(|(x, _)| x == c),
            ChannelTarget::Label(l) => s.channels.iter().find(|(_, x)| x == l),
        }
        .map(|(c, _)| *c)
        .ok_or_else(|| {
            let name = match target {
                ChannelTarget::Id(c) => c.to_string(),
                ChannelTarget::Label(l) => format!("{l:?}"),
            };
            EngineError::NoSuchChannel(id, name)
        })?;
        let res = guarded(s, |rtc| match rtc.channel(ChannelId(channel)) {
            Some(mut ch) => ch.write(binary, data).map_err(|e| e.to_string()),
            None => Err("no data-channel transport".to_string()),
        });
        touch(s, slot, &mut self.touched);
        match res {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(EngineError::Rtc(e)),
            Err(()) => {
                self.doomed.push((id, CloseReason::Panicked));
                Err(EngineError::Rtc("session panicked".into()))
            }
        }
    }

    fn add_leg(&mut self, spec: LegSpec, now: Instant) -> bool {
        let Some(&slot) = self.by_id.get(&spec.sub) else {
            return false;
        };
        // A leg already on this media section is moved (a source switch): it keeps its
        // rewriter so that sequence numbers and timestamps stay continuous.
        let rw = self
            .remove_leg(spec.sub, spec.params.mid)
            .unwrap_or_default();
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return false;
        };
        s.legs.push((spec.params.mid, spec.key, spec.params.ssrc));
        let route = self
            .routes
            .entry(spec.key)
            .or_insert_with(|| Route::new(spec.route));
        route.legs.push(Leg {
            sub: spec.sub,
            slot,
            params: spec.params,
            rw,
            packets: 0,
            bytes: 0,
        });
        // A new subscriber needs a keyframe to start decoding.
        self.keyframe_upstream(spec.key, now);
        true
    }

    /// Removes the leg of `sub` on its media section `sub_mid`; returns its rewriter.
    fn remove_leg(&mut self, sub: SessionId, sub_mid: Mid) -> Option<SeqTsRewriter> {
        let slot = *self.by_id.get(&sub)?;
        let s = self.sessions.get_mut(slot)?.as_mut()?;
        let pos = s.legs.iter().position(|(m, _, _)| *m == sub_mid)?;
        let (_, key, _) = s.legs.remove(pos);
        let route = self.routes.get_mut(&key)?;
        let i = route
            .legs
            .iter()
            .position(|l| l.sub == sub && l.params.mid == sub_mid)?;
        let leg = route.legs.swap_remove(i);
        if route.is_empty() {
            self.routes.remove(&key);
        }
        Some(leg.rw)
    }

    fn request_keyframe_api(&mut self, publisher: SessionId, mid: Option<Mid>) -> bool {
        let Some(&slot) = self.by_id.get(&publisher) else {
            return false;
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return false;
        };
        let targets: Vec<u32> = s
            .rx_ssrcs
            .iter()
            .filter(|(m, _)| mid.is_none_or(|want| want == *m))
            .map(|(_, ssrc)| *ssrc)
            .collect();
        let mut any = false;
        for ssrc in targets {
            match guarded(s, |rtc| {
                rtc.direct_api()
                    .request_keyframe(ssrc, KeyframeRequestKind::Pli)
            }) {
                Ok(Ok(())) => {
                    any = true;
                    self.c.keyframe_requests += 1;
                }
                Ok(Err(_)) => {}
                Err(()) => {
                    self.doomed.push((s.id, CloseReason::Panicked));
                    break;
                }
            }
        }
        touch(s, slot, &mut self.touched);
        any
    }
}
