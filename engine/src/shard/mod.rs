//! One shard: a thread (pinned to a core) that owns its sessions, its I/O backend, a
//! timer heap and the forwarding routes of the streams it publishes or fans out.
//!
//! Shards share nothing: control commands arrive over a channel plus the backend's
//! [`Waker`]; RTP packets for subscribers on other shards travel in batches over bounded
//! channels (full → dropped and counted, never blocking), and the emptied batches come
//! back over a return channel so that steady-state forwarding does not allocate.
//!
//! This module holds the types, the [`Shard`] struct, its run loop and small shared
//! helpers; the work is in `recv` (datagrams and cross-shard batches), `drive` (timers and
//! draining the sessions' output), `forward` (fan-out through each leg's downtrack,
//! batches, keyframe requests per layer), `layers` (publisher layers with their packet
//! caches, the per-subscriber allocators, speaker and layer-selection reports),
//! `session` (creation and removal) and `command` (control commands).
//!
//! Forwarding: publisher packet → its layer (cache, meter, clock) → every leg's
//! [`DownTrack`] (layer choice from the subscriber's allocator, seq/ts/VP8 continuity) →
//! the subscriber's `Rtc`. Cross-shard batches carry each packet's layer and facts
//! ([`layers::PktInfo`]), so the receiving shard's downtracks decide the same way.
//! The layer is the one the publisher's `Rtc` bound the SSRC's rid to; its clock is the
//! publisher's RTCP sender report (arrival times for publishers that send none).
//!
//! Retransmission: with `rtx_buffer_packets = 0` the sessions' `Rtc`s keep no ring and
//! surface NACKs as `Event::ResendRequest`; the subscriber's shard resolves each NACKed
//! sequence number through the leg's downtrack NACK map (`forward::on_resend`: source
//! layer and sequence number, and the numbering it went out with) and answers it from
//! the publisher layer's cache. The caches live on the publisher's shard: for a leg
//! whose publisher is elsewhere the resolved NACK travels there in the cross-shard batch
//! ([`RtxAsk`]), the publisher's shard copies the cached packet (with its codec and
//! forwarded extension values) into its batch back ([`RtxPkt`]), and the subscriber's
//! shard rewrites it for the leg and writes it as RTX. Both hops use the pooled batches
//! (no allocation, no lock, no blocking: a full channel drops the batch and counts the
//! NACKs it carried as unanswered).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use rtc_core::Rtc;
use rtc_core::event::ChannelData;
use rtc_core::ice::IceConnectionState;
use rtc_core::media::{MediaKind, Mid};

use crate::api::{
    ChannelTarget, CloseReason, DropCounters, EngineError, EngineEvent, LegLayers, SessionId,
    SessionInfo, SessionSnapshot, ShardStats, TrackCounters,
};
use crate::forward::LegParams;
use crate::io::{IoBackend, Received, SendHint, Waker};
use crate::sfu::DownTrack;
use crate::sfu::allocator::{Allocator, Preference, RateDrive};
use crate::sfu::codec::VideoCodec;
use crate::sfu::speaker::{SpeakerConfig, SpeakerDetector};
use layers::{Layers, PktInfo};

mod command;
mod drive;
mod forward;
mod fwd_latency;
mod layers;
mod recv;
mod relay;
mod session;

pub(crate) use relay::{
    RelayCmd, RelayEnd, RelaySetup, accept_relay, prepare_plain, prepare_relay,
};
pub(crate) use session::{Prepared, Renegotiated, SdpChange, SessionParams, prepare_session};

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
    /// Forward only this publisher layer, whatever the subscriber's estimate (a relay's
    /// per-layer leg: see `relay`); `None`: the subscriber's allocator chooses.
    pub pin: Option<u8>,
    /// The subscriber may NACK this leg ([`MediaDesc::nack`](crate::MediaDesc::nack)):
    /// without it the leg keeps no NACK map, and its NACKs go unanswered.
    pub nack: bool,
}

/// Control commands (from [`EngineHandle`](crate::EngineHandle)).
pub(crate) enum Command {
    /// Install a session built off the shard; `Ok(None)` back: its ufrag is taken here.
    CreateSession {
        prepared: Box<Prepared>,
        reply: Sender<Result<Option<SessionInfo>, EngineError>>,
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
    SetPreference {
        sub: SessionId,
        sub_mid: Mid,
        pref: Preference,
        reply: Sender<bool>,
    },
    SetEstimate {
        sub: SessionId,
        bps: Option<u64>,
        reply: Sender<bool>,
    },
    LegLayers {
        sub: SessionId,
        reply: Sender<Vec<LegLayers>>,
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
    /// Test hook: panic in the shard loop itself, outside the per-session guard.
    InjectShardPanic,
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
    /// A new offer or an ICE fragment for a live session.
    Renegotiate {
        id: SessionId,
        change: SdpChange,
        reply: Sender<Result<Renegotiated, EngineError>>,
    },
    Shutdown,
    /// Test hook: the shard tells `entered`, then handles nothing (no command, no
    /// datagram) until `release` gets a message or is dropped (at most 60 s): every reply
    /// it owes is late, as from a shard under load.
    DebugHold {
        entered: Sender<()>,
        release: Receiver<()>,
    },
    /// Relay sessions between engines (see `relay`).
    Relay(RelayCmd),
}

/// Shard-to-shard data.
pub(crate) enum DataMsg {
    /// RTP packets of publishers on the sending shard, for local fan-out, and the
    /// retransmission requests and answers between a subscriber's shard and its
    /// publisher's (see [`Batch`]).
    Batch(Batch),
    /// A subscriber on the sending shard wants a keyframe of this layer of a publisher
    /// stream.
    Keyframe(RouteKey, u8),
    /// The publisher track ended (a relayed track, on the relay's shard): the receiving
    /// shard ends its legs of it with an RTCP BYE, as the sending shard did its own.
    EndRoute(RouteKey),
}

/// A batch for another shard: plaintext RTP packets of publishers on the sending shard
/// (`pkts`), NACKed packets its subscribers want from the receiving shard's layer
/// caches (`asks`), and cached packets answering the receiving shard's asks (`rtx`).
/// Batches are pooled: the receiver empties a batch and returns it to its sender over
/// the sender's return channel, so that steady-state traffic does not allocate.
pub(crate) struct Batch {
    from: usize,
    recv_at: Instant,
    buf: Vec<u8>,
    pkts: Vec<BatchPkt>,
    asks: Vec<RtxAsk>,
    rtx: Vec<RtxPkt>,
}

impl Batch {
    fn new(from: usize, recv_at: Instant, forward_batch: usize) -> Batch {
        Batch {
            from,
            recv_at,
            buf: Vec::with_capacity(BATCH_BYTES),
            pkts: Vec::with_capacity(forward_batch),
            // Retransmission traffic is rare: these grow on first use and keep their
            // capacity in the pool.
            asks: Vec::new(),
            rtx: Vec::new(),
        }
    }

    /// Whether one more entry of `len` bytes would exceed the batch's limits
    /// (`max` entries, [`BATCH_BYTES`] bytes).
    fn is_full(&self, len: usize, max: usize) -> bool {
        self.pkts.len() + self.asks.len() + self.rtx.len() >= max
            || self.buf.len() + len > BATCH_BYTES
    }

    /// Empties the batch (keeping its memory for the pool).
    fn clear(&mut self) {
        self.buf.clear();
        self.pkts.clear();
        self.asks.clear();
        self.rtx.clear();
    }
}

struct BatchPkt {
    key: RouteKey,
    info: PktInfo,
    start: usize,
    end: usize,
}

/// Which subscriber leg NACKed a packet and how the packet went out on it (what its
/// downtrack's NACK map says): travels to the publisher's shard and back with the
/// cached packet, so that the subscriber's shard can rewrite it for the leg.
#[derive(Debug, Clone, Copy)]
struct RtxTicket {
    sub: SessionId,
    /// The leg's SSRC (the NACK's media SSRC).
    ssrc: u32,
    /// Source layer and sequence number; output sequence number, timestamp and VP8
    /// numbering.
    entry: crate::sfu::NackEntry,
}

/// A subscriber's NACK of one packet of a route whose publisher is on the receiving
/// shard.
#[derive(Debug, Clone, Copy)]
struct RtxAsk {
    key: RouteKey,
    ticket: RtxTicket,
}

/// A cached packet (bytes `start..end` of the batch buffer) answering an [`RtxAsk`],
/// with what rewriting it for the leg needs that only the publisher's shard knows.
struct RtxPkt {
    key: RouteKey,
    ticket: RtxTicket,
    codec: VideoCodec,
    ext: crate::forward::FwdExt,
    meta: crate::sfu::PacketMeta,
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
    /// Announced ICE-TCP listener addresses (passive TCP host candidates), one per
    /// listener of the backend; empty: no TCP.
    pub announced_tcp: Vec<SocketAddr>,
    pub cmd_rx: Receiver<Command>,
    pub data_rx: Receiver<DataMsg>,
    pub ret_rx: Receiver<Batch>,
    pub peers: Vec<PeerLink>,
    pub events_tx: Sender<EngineEvent>,
    /// Closing events: unbounded, at most one per session (never dropped).
    pub closed_tx: Sender<EngineEvent>,
    /// Sessions that ended, for the control side's registry: unbounded, one per session.
    pub gone_tx: Sender<SessionId>,
    pub gauge: Arc<AtomicUsize>,
    /// Cleared when the shard thread dies.
    pub alive: Arc<AtomicBool>,
    pub keyframe_interval: Duration,
    /// Queued datagrams after which draining submits them
    /// ([`EngineConfig::submit_every`](crate::EngineConfig)), at least 1.
    pub submit_every: u64,
    pub forward_batch: usize,
    /// Close sessions not connected this long after creation.
    pub connect_timeout: Duration,
    /// Live sessions this shard takes.
    pub max_sessions: usize,
    /// Open data channels per session.
    pub max_channels: usize,
    /// Longest data-channel label, bytes.
    pub max_label: usize,
    pub cache_video_packets: usize,
    pub cache_audio_packets: usize,
}

struct Session {
    id: SessionId,
    rtc: Rtc,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    /// Peers of the ICE-TCP connections this session validated (keys of `Shard::by_tcp`).
    tcp_addrs: Vec<SocketAddr>,
    /// The `Rtc`'s next timeout.
    timer_at: Instant,
    /// The earliest entry this session has in the timer heap.
    heap_at: Option<Instant>,
    touched: bool,
    /// Payload type → media section, for packets whose SSRC the `Rtc` cannot place.
    pt_mid: Vec<(u8, Mid)>,
    /// Extension map of each section (the publisher's ids).
    rx_ext: Vec<(Mid, rtc_core::rtp::ExtensionMap)>,
    /// Payload type → codec facts parser, for published video.
    pt_codec: Vec<(u8, VideoCodec)>,
    /// The subscriber's bandwidth allocator over its legs (keyed by its own mid).
    alloc: Allocator<Mid>,
    /// Allocation → the `Rtc`'s send rate and probes.
    rate: RateDrive,
    /// Latest send-side estimate of the `Rtc` (`None`: none yet).
    estimate: Option<u64>,
    /// Test/control override of `estimate`.
    estimate_override: Option<u64>,
    repair_pts: u128,
    /// Last media SSRC seen per published section.
    rx_ssrcs: Vec<(Mid, u32)>,
    /// Legs this session subscribes through: (own mid, route, leg SSRC).
    legs: Vec<(Mid, RouteKey, u32)>,
    /// Legs pinned to one publisher layer (own mid, layer): a relay's per-layer legs.
    /// Empty for every other session.
    pins: Vec<(Mid, u8)>,
    /// Received SSRC → layer (and section) of a relayed simulcast track, as the
    /// sending engine signalled them (no rids on a relay). Empty for other sessions.
    ssrc_layers: Vec<(u32, u8, Mid)>,
    last_srtp_errors: u64,
    last_dropped: u64,
    panic_next: bool,
    /// The send batch this session's last datagram went into (joined by its next one to
    /// the same destination before the backend's flush).
    send_hint: SendHint,
    ice_state: IceConnectionState,
    /// Latest periodic stream reports, one entry per (mid, direction).
    track_stats: Vec<TrackCounters>,
    rtt: Option<Duration>,
    /// Open data channels: (stream id, label).
    channels: Vec<(u16, String)>,
    /// RTP packets and bytes received per published section (repair streams excluded).
    rx_counts: Vec<(Mid, u64, u64)>,
    /// The `Rtc` reported `Connected` (ICE and DTLS up).
    connected: bool,
    /// When the session was created (for [`ShardStats::handshake_ns`]).
    created: Instant,
    /// Our offer awaiting the peer's answer (`session.offer` → `session.answer`).
    /// Boxed: 520 bytes inline, and almost every session never makes an offer.
    pending_offer: Option<Box<rtc_core::sdp_api::SdpPendingOffer>>,
}

impl Session {
    fn put_track(&mut self, t: TrackCounters) {
        match self
            .track_stats
            .iter_mut()
            .find(|x| x.mid == t.mid && x.inbound == t.inbound)
        {
            Some(x) => *x = t,
            None => {
                // One or two entries per section, kept for the session's life: no
                // doubling slack (a first push would make room for four).
                self.track_stats.reserve_exact(1);
                self.track_stats.push(t);
            }
        }
    }
}

struct Leg {
    sub: SessionId,
    slot: usize,
    params: LegParams,
    /// Layer choice and seq/ts/picture-id continuity of this subscriber's stream.
    dt: DownTrack,
    /// The stream generation last seen per publisher layer.
    generations: [u8; layers::MAX_LAYERS],
    /// RTP packets and bytes written on this leg.
    packets: u64,
    bytes: u64,
}

struct Route {
    spec: RouteSpec,
    legs: Vec<Leg>,
    /// Bit set of remote shards with subscribers.
    remote: u64,
    /// The publisher's layers (caches on its shard; meters and liveness everywhere).
    layers: Layers,
    /// A local leg of this route may be NACKed ([`LegSpec::nack`]). Never cleared while
    /// the route lives.
    nack: bool,
}

impl Route {
    fn new(spec: RouteSpec) -> Route {
        Route {
            spec,
            legs: Vec::new(),
            remote: 0,
            layers: Layers::new(),
            nack: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.legs.is_empty() && self.remote == 0
    }

    /// Packets each publisher layer's cache holds. Video: `ctx`'s video size (the cache
    /// also finds the publisher's duplicate RTX probes). Audio: its audio size when a
    /// subscriber may NACK — a local leg that negotiated it, or any leg on another
    /// shard (not told apart) — else [`NO_NACK_AUDIO_PACKETS`]: browsers never NACK
    /// Opus, and the full cache (46 KiB per audio track) would answer nobody.
    fn cache_packets(&self, ctx: &ShardCtx) -> usize {
        match self.spec.kind {
            MediaKind::Video => ctx.cache_video_packets,
            MediaKind::Audio if self.nack || self.remote != 0 => ctx.cache_audio_packets,
            MediaKind::Audio => NO_NACK_AUDIO_PACKETS.min(ctx.cache_audio_packets),
        }
    }

    /// After a leg that may NACK arrived: caches created smaller than
    /// [`Route::cache_packets`] are replaced by full-size ones (empty: what they held
    /// was never NACK-able). Control path; allocates.
    fn grow_caches(&mut self, ctx: &ShardCtx) {
        let packets = self.cache_packets(ctx);
        self.layers
            .grow_caches(packets, self.spec.kind == MediaKind::Audio);
    }
}

/// Packets cached per audio track that no subscriber may NACK: enough to spot a
/// repeated packet; with the smallest byte ring about 1.8 KiB instead of 46.
pub(crate) const NO_NACK_AUDIO_PACKETS: usize = 4;

#[derive(Default)]
struct Counters {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
    rtp_forwarded: u64,
    fwd_in_place: u64,
    cross_shard_out: u64,
    cross_shard_in: u64,
    keyframe_requests: u64,
    resent: u64,
    resend_missed: u64,
    resend_refused: u64,
    panics: u64,
    connect_timeouts: u64,
    channels_refused: u64,
    iterations: u64,
    drops: DropCounters,
    handshakes: u64,
    handshake_failures: u64,
}

/// A received RTP packet (copied to the shard's scratch buffer) and what the session's
/// `Rtc` said of it, for [`Shard::on_rtp`].
struct RtpAct {
    mid: Option<Mid>,
    ssrc: u32,
    pt: u8,
    len: usize,
    seq: u64,
    ts: u32,
    marker: bool,
    payload_offset: usize,
    /// The simulcast layer the `Rtc` bound the SSRC to (see [`layers::rid_layer`]).
    layer: Option<u8>,
    /// Forwarded extensions (ranges refer to the packet as copied to scratch).
    fwd: crate::forward::FwdExt,
}

/// What the shard does after one `poll_output` of a session (the output itself borrows
/// the `Rtc`, so it is turned into this owned value first).
enum Act {
    Continue,
    Timeout(Instant),
    Rtp(RtpAct),
    Estimate(u64),
    Keyframe(u32),
    /// The subscriber NACKed packets of a leg (external retransmission cache).
    Resend(rtc_core::event::ResendRequest),
    Connected,
    Failed,
    Panicked,
    Ice(IceConnectionState),
    Track(TrackCounters, Option<Duration>),
    ChannelOpen(u16, String),
    ChannelData(ChannelData),
    ChannelClose(u16),
    /// The peer ended a stream (RTCP BYE) on this media section.
    StreamEnded(Option<Mid>),
}

pub(crate) struct Shard {
    ctx: ShardCtx,
    /// Boxed: see `alloc_slot`.
    sessions: Vec<Option<Box<Session>>>,
    free: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
    /// ICE-TCP connection (by peer address) → the session slot it authenticated to.
    by_tcp: HashMap<SocketAddr, usize>,
    /// Verdicts on ICE-TCP connections for the backend, applied after the poll callback.
    tcp_verdicts: Vec<(SocketAddr, crate::io::TcpVerdict)>,
    /// Scratch for [`IoBackend::tcp_take_closed`].
    tcp_closed: Vec<SocketAddr>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Boxed: a route is ~1 KB (layers, meters, caches' handles), and a doubling table
    /// of inline routes held up to twice that per route, plus one large block per
    /// rehash.
    routes: HashMap<RouteKey, Box<Route>>,
    touched: Vec<usize>,
    doomed: Vec<(SessionId, CloseReason)>,
    /// Connect deadlines in creation order (so in deadline order): (deadline, slot, id).
    connect_deadlines: VecDeque<(Instant, usize, SessionId)>,
    scratch: Box<[u8]>,
    out_batches: Vec<Option<Batch>>,
    /// Remote batches forwarded this iteration: (receive time at the origin, packets).
    remote_fwd: Vec<(Instant, u64)>,
    /// Local forwards of this iteration not yet booked in the latency histograms.
    local_fwd: u64,
    /// This iteration's receive completion: where its local forwards' latency starts.
    fwd_from: Instant,
    c: Counters,
    loop_ns: Histogram<u64>,
    latency_ns: Histogram<u64>,
    /// Creation to connected, per session (see [`ShardStats::handshake_ns`]).
    handshake_ns: Histogram<u64>,
    /// The same latency in fixed buckets, taken after the backend's flush.
    fwd_latency: fwd_latency::ForwardLatency,
    stop: bool,
    /// When the allocators run next.
    next_alloc: Instant,
    /// Epoch of the arrival-time (fallback) sender-report clocks of this shard's publishers.
    epoch: Instant,
    /// Active-speaker detection over this shard's audio publishers.
    speakers: SpeakerDetector<SessionId>,
    /// Relay sessions on this shard (keepalive, liveness).
    relays: relay::Relays,
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Runs `f` on the session's `Rtc` under `catch_unwind`. `Err(())` means it panicked.
/// The result may borrow the `Rtc` (e.g. its `poll_output`).
fn guarded<'s, R>(s: &'s mut Session, f: impl FnOnce(&'s mut Rtc) -> R) -> Result<R, ()> {
    guarded_rtc(&mut s.panic_next, &mut s.rtc, f)
}

/// [`guarded`] over the session's `Rtc` and panic hook only (the rest of the session stays
/// free while the result borrows the `Rtc`).
fn guarded_rtc<'s, R>(
    panic_next: &mut bool,
    rtc: &'s mut Rtc,
    f: impl FnOnce(&'s mut Rtc) -> R,
) -> Result<R, ()> {
    let inject = std::mem::take(panic_next);
    catch_unwind(AssertUnwindSafe(move || {
        if inject {
            panic!("injected panic (test hook)");
        }
        f(rtc)
    }))
    .map_err(|_| ())
}

fn touch(s: &mut Session, slot: usize, touched: &mut Vec<usize>) {
    if !s.touched {
        s.touched = true;
        touched.push(slot);
    }
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
            by_tcp: HashMap::new(),
            tcp_verdicts: Vec::new(),
            tcp_closed: Vec::new(),
            by_ufrag: HashMap::new(),
            timers: BinaryHeap::new(),
            routes: HashMap::new(),
            touched: Vec::new(),
            doomed: Vec::new(),
            connect_deadlines: VecDeque::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            out_batches: (0..n).map(|_| None).collect(),
            remote_fwd: Vec::new(),
            local_fwd: 0,
            fwd_from: Instant::now(),
            c: Counters::default(),
            loop_ns: histogram(),
            latency_ns: histogram(),
            handshake_ns: histogram(),
            fwd_latency: fwd_latency::ForwardLatency::new(),
            stop: false,
            next_alloc: Instant::now(),
            epoch: Instant::now(),
            speakers: SpeakerDetector::new(SpeakerConfig::default()),
            relays: relay::Relays::new(),
        }
    }

    /// The shard loop. Returns on [`Command::Shutdown`] or when the control side is gone.
    /// A panic escaping it (outside the per-session guard) leaves the shard for
    /// [`Shard::die`].
    pub(crate) fn run(&mut self, backend: &mut dyn IoBackend) {
        let mut last = Instant::now();
        while !self.stop {
            let timeout = match self.timers.peek() {
                Some(Reverse((t, _, _))) => t.saturating_duration_since(last),
                None => Duration::from_secs(1),
            }
            .min(Duration::from_secs(1));
            let timeout = match self.connect_deadlines.front() {
                Some((t, _, _)) => timeout.min(t.saturating_duration_since(last)),
                None => timeout,
            };
            let timeout = match self.relay_next_due() {
                Some(t) => timeout.min(t.saturating_duration_since(last)),
                None => timeout,
            };
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
            self.sync_tcp(&mut *backend);
            // The one clock read of this iteration (taken at the first datagram, if any).
            let now = now_cell.unwrap_or_else(Instant::now);
            let received = now;
            self.fwd_from = received;
            self.c.iterations += 1;
            self.bury();
            let mut commands = false;
            loop {
                match self.ctx.cmd_rx.try_recv() {
                    Ok(cmd) => {
                        commands = true;
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
            // A session installed by a command was built on another thread, at an
            // instant that may be later than this iteration's: read the clock again so
            // that no session is ever handed a time earlier than the one it was built at.
            let now = if commands { Instant::now() } else { now };
            while let Ok(msg) = self.ctx.data_rx.try_recv() {
                self.on_data(msg, now, &mut *backend);
            }
            self.drive_timers(now);
            self.reap_unconnected(now, &mut *backend);
            self.relay_tick(now, &mut *backend);
            if now >= self.next_alloc {
                self.next_alloc = now + layers::ALLOC_INTERVAL;
                self.poll_sender_reports(now);
                self.allocate_all(now);
                self.report_speakers(now);
            }
            self.bury();
            self.drain_touched(now, &mut *backend);
            self.send_batches();
            let end = Instant::now();
            self.loop_ns
                .saturating_record(nanos(end.saturating_duration_since(now)));
            if self.local_fwd > 0 {
                let _ = self.latency_ns.record_n(
                    nanos(end.saturating_duration_since(received)),
                    self.local_fwd,
                );
            }
            for &(at, n) in &self.remote_fwd {
                let _ = self
                    .latency_ns
                    .record_n(nanos(end.saturating_duration_since(at)), n);
            }
            self.sync_tcp(&mut *backend);
            if let Err(e) = backend.flush() {
                tracing::warn!(shard = self.ctx.index, error = %e, "backend flush failed");
            }
            self.record_forward_latency(received);
            last = end;
        }
    }

    /// After a panic escaped [`Shard::run`]: marks the shard dead (placement skips it)
    /// and reports it and each of its sessions as closed. The sessions' state is not
    /// touched (it may be what broke); they are dropped with the shard.
    pub(crate) fn die(&mut self) {
        self.ctx.alive.store(false, Ordering::Release);
        self.ctx.gauge.store(0, Ordering::Relaxed);
        let shard = self.ctx.index;
        let ids: Vec<SessionId> = self.by_id.keys().copied().collect();
        tracing::error!(
            shard,
            sessions = ids.len(),
            "shard thread panicked outside a session guard: it is down, its sessions are \
             closed and no new session is placed on it"
        );
        // Unbounded queues: these sends fail only when the engine handle is gone.
        let _ = self.ctx.closed_tx.send(EngineEvent::ShardDown {
            shard,
            sessions: ids.len(),
        });
        for id in ids {
            let _ = self
                .ctx
                .closed_tx
                .send(EngineEvent::SessionClosed(id, CloseReason::ShardDown));
            let _ = self.ctx.gone_tx.send(id);
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
            fwd_in_place: self.c.fwd_in_place,
            cross_shard_out: self.c.cross_shard_out,
            cross_shard_in: self.c.cross_shard_in,
            keyframe_requests: self.c.keyframe_requests,
            rtx_resent: self.c.resent,
            rtx_unanswered: self.c.resend_missed,
            rtx_refused: self.c.resend_refused,
            alive: true,
            panics: self.c.panics,
            connect_timeouts: self.c.connect_timeouts,
            channels_refused: self.c.channels_refused,
            iterations: self.c.iterations,
            cpu_time: crate::io::cpu::thread_cpu_time(),
            drops: self.c.drops,
            io: *backend.stats(),
            loop_ns: self.loop_ns.clone(),
            forward_latency_ns: self.latency_ns.clone(),
            legs: self.routes.values().map(|r| r.legs.len()).sum(),
            handshakes: self.c.handshakes,
            handshake_failures: self.c.handshake_failures,
            handshake_ns: self.handshake_ns.clone(),
            forward_ns: self.fwd_latency.buckets(),
            maps: self.table_sizes(),
            free_buffer_bytes: rtc_core::free_packet_buffer_bytes() as u64,
        }
    }

    /// Entries of every table of this shard that grows with its sessions, routes or
    /// relays (see [`ShardStats::maps`]). With no session left each is 0 (the lazily
    /// drained ones after at most `connect_timeout` or the sessions' last timer).
    fn table_sizes(&self) -> std::collections::BTreeMap<String, u64> {
        let n = |v: usize| v as u64;
        let pubs = self
            .routes
            .values()
            .flat_map(|r| r.layers.pubs.iter().flatten());
        let (caches, cache_bytes) = pubs.fold((0usize, 0usize), |(c, b), l| {
            (c + 1, b + l.cache.heap_bytes())
        });
        [
            ("sessions", n(self.by_id.len())),
            ("session_slots", n(self.sessions.len())),
            ("free_slots", n(self.free.len())),
            ("by_addr", n(self.by_addr.len())),
            ("by_ufrag", n(self.by_ufrag.len())),
            ("by_tcp", n(self.by_tcp.len())),
            ("timers", n(self.timers.len())),
            ("connect_deadlines", n(self.connect_deadlines.len())),
            ("routes", n(self.routes.len())),
            ("legs", n(self.routes.values().map(|r| r.legs.len()).sum())),
            (
                "remote_routes",
                n(self.routes.values().filter(|r| r.remote != 0).count()),
            ),
            ("layer_caches", n(caches)),
            ("layer_cache_bytes", n(cache_bytes)),
            ("speaker_tracks", n(self.speakers.followed())),
            ("relays", n(self.relays.len())),
            ("touched", n(self.touched.len())),
            ("doomed", n(self.doomed.len())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every audio session of a dense shard holds a `Session` and, as a subscriber, a
    /// `Leg`: state that only some sessions use (an offer awaiting its answer, video
    /// layers) or only negotiation needs belongs on the heap, created when used, not
    /// inline. The bounds leave ~10 % room over the sizes measured when this test was
    /// written (issue #15 density: `Session` 7,456 bytes, 8,208 before its pending offer
    /// was boxed, of which the `Rtc` 6,624 and dimpl's DTLS state 3,360; `Leg` 832).
    #[test]
    fn per_session_state_stays_small() {
        assert!(std::mem::size_of::<Session>() <= 8 * 1024);
        // Under 1 KiB, a route's first leg reserves room for exactly one (`add_leg`).
        assert!(std::mem::size_of::<Leg>() <= 920);
    }
}
