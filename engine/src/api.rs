//! Types of the in-process control API ([`EngineHandle`](crate::EngineHandle)).

use std::fmt;
use std::net::SocketAddr;

use hdrhistogram::Histogram;
use rtc_core::PeerStats;
use rtc_core::dtls::Fingerprint;
use rtc_core::ice::{IceConnectionState, IceCreds};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::Direction;

use crate::forward::PayloadDesc;
use crate::io::{BackendKind, IoStats};

/// Identifies a session (one peer connection) engine-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Identifies a room engine-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u64);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Where a new session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The shard with the fewest sessions that is not draining.
    #[default]
    Auto,
    /// This shard.
    Shard(usize),
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub enum SessionSetup {
    /// The peer's SDP offer; the engine answers it (ICE-lite, BUNDLE, RTP mode).
    Offer(String),
    /// SDP-free set-up through the direct API.
    Direct(DirectParams),
}

/// Parameters of a session set up without SDP.
#[derive(Debug, Clone)]
pub struct DirectParams {
    /// The peer's ICE credentials.
    pub remote_ice: IceCreds,
    /// The peer's DTLS certificate fingerprint.
    pub remote_fingerprint: Fingerprint,
    /// `true`: the engine is the DTLS client; `false`: the DTLS server.
    pub dtls_active: bool,
    /// Media sections (both sides must use the same mids).
    pub media: Vec<(Mid, MediaKind)>,
    /// SSRCs the peer will send, by media section.
    pub rx_ssrcs: Vec<(Mid, u32)>,
}

/// The layers of one subscriber leg ([`EngineHandle::leg_layers`](crate::EngineHandle::leg_layers)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegLayers {
    /// The subscriber's media section.
    pub mid: Mid,
    /// The publisher layer the allocator chose (`None`: paused).
    pub target: Option<u8>,
    /// The publisher layer being forwarded (`None`: none yet, or paused).
    pub current: Option<u8>,
}

/// A media section of a session, as negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    /// Its mid.
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
    /// The engine's direction: `SendOnly`/`SendRecv` sections can carry subscriber legs,
    /// `RecvOnly`/`SendRecv` sections are published tracks.
    pub direction: Direction,
    /// Negotiated payload types (empty for direct-API sessions).
    pub payloads: Vec<PayloadDesc>,
    /// The negotiated id of the `mid` RTP header extension.
    pub mid_ext_id: Option<u8>,
    /// The SSRC the session announced for what the engine sends on this section;
    /// subscriber legs use it, so the browser's track binds to what it receives.
    pub tx_ssrc: Option<u32>,
    /// Whether the session may NACK what the engine sends on this section: `nack`
    /// feedback negotiated on one of its payload types, or nothing negotiated at all
    /// (direct-API and relay sections). A leg on a section without it keeps no NACK map
    /// (browsers do not negotiate NACK for Opus: 2 KiB less per audio leg).
    pub nack: bool,
}

impl MediaDesc {
    /// Whether the engine may send on this section (a subscriber slot).
    pub fn can_send(&self) -> bool {
        matches!(self.direction, Direction::SendOnly | Direction::SendRecv)
    }

    /// Whether the engine receives on this section (a published track).
    pub fn can_recv(&self) -> bool {
        matches!(self.direction, Direction::RecvOnly | Direction::SendRecv)
    }
}

/// What [`EngineHandle::create_session`](crate::EngineHandle::create_session) returns.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The new session.
    pub id: SessionId,
    /// Its shard.
    pub shard: usize,
    /// The SDP answer (for [`SessionSetup::Offer`]).
    pub answer: Option<String>,
    /// The engine's ICE credentials for this session.
    pub local_ice: IceCreds,
    /// The engine's DTLS fingerprint.
    pub fingerprint: Fingerprint,
    /// The engine's ICE candidates (SDP `candidate:` attribute values).
    pub candidates: Vec<String>,
    /// The engine's candidate addresses.
    pub candidate_addrs: Vec<SocketAddr>,
    /// Media sections.
    pub media: Vec<MediaDesc>,
}

/// What [`EngineHandle::renegotiate`](crate::EngineHandle::renegotiate) and
/// [`EngineHandle::ice_fragment`](crate::EngineHandle::ice_fragment) did to a live
/// session.
#[derive(Debug, Clone)]
pub struct Renegotiation {
    /// Our SDP answer (for a new offer).
    pub answer: Option<String>,
    /// Our trickle ICE fragment (`application/trickle-ice-sdpfrag`) when the peer's
    /// fragment restarted ICE; `None` for a plain trickle update.
    pub fragment: Option<String>,
    /// Our SDP offer (from [`EngineHandle::create_offer`](crate::EngineHandle::create_offer)).
    pub offer: Option<String>,
    /// The session's media sections afterwards.
    pub media: Vec<MediaDesc>,
    /// Sections the change added.
    pub added: Vec<Mid>,
    /// Sections the change removed (rejected); their legs are gone.
    pub removed: Vec<Mid>,
    /// The engine's ICE credentials changed (ICE restart).
    pub ice_restarted: bool,
}

/// One forwarding leg created by a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegInfo {
    /// The subscriber's media section the leg sends on.
    pub subscriber_mid: Mid,
    /// The publisher's media section it forwards.
    pub publisher_mid: Mid,
    /// The leg's SSRC (what the subscriber receives).
    pub ssrc: u32,
    /// Audio or video.
    pub kind: MediaKind,
}

/// A room, as listed by [`EngineHandle::list_rooms`](crate::EngineHandle::list_rooms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its id.
    pub id: RoomId,
    /// Its name.
    pub name: String,
    /// Sessions publishing in it.
    pub publishers: Vec<SessionId>,
    /// Sessions that joined it (publishers and subscribers).
    pub members: Vec<SessionId>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Closed through the API.
    Requested,
    /// The connection failed (DTLS, fingerprint, ICE consent) or closed remotely.
    Failed,
    /// A call into its `Rtc` panicked; the session was removed.
    Panicked,
    /// The engine shut down or the shard was drained.
    Shutdown,
    /// It was not connected (ICE and DTLS up)
    /// [`EngineConfig::connect_timeout`](crate::EngineConfig::connect_timeout) after
    /// its creation.
    ConnectTimeout,
    /// Its shard thread died; the session is gone with it.
    ShardDown,
}

/// Why a relay ended ([`EngineEvent::RelayDown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayDownReason {
    /// Closed through the API on this engine.
    Closed,
    /// The peer engine sent nothing (not even a keepalive) for the relay's timeout.
    Silent,
    /// The connection failed or the peer closed it.
    Failed,
    /// This engine shut down or the shard was drained.
    Shutdown,
}

impl RelayDownReason {
    /// A short name (`closed`, `silent`, `failed`, `shutdown`).
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDownReason::Closed => "closed",
            RelayDownReason::Silent => "silent",
            RelayDownReason::Failed => "failed",
            RelayDownReason::Shutdown => "shutdown",
        }
    }
}

/// Something the control plane may want to know, from [`EngineHandle::events`](crate::EngineHandle::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// ICE and DTLS are up; media flows.
    SessionConnected(SessionId),
    /// A session ended. Never dropped (see [`EngineEvents`](crate::EngineEvents)).
    SessionClosed(SessionId, CloseReason),
    /// A shard thread died (a panic outside the per-session guard). Its sessions are
    /// reported closed with [`CloseReason::ShardDown`], and no new session is placed
    /// on it. Never dropped.
    ShardDown {
        /// The shard index.
        shard: usize,
        /// Sessions it held when it died.
        sessions: usize,
    },
    /// A session's ICE connection state changed.
    IceState(SessionId, IceConnectionState),
    /// A subscriber asked for a keyframe of a publisher's media section (reported on the
    /// subscriber's shard, before rate limiting).
    KeyframeRequested {
        /// The publishing session.
        publisher: SessionId,
        /// The publisher's media section.
        mid: Mid,
        /// The subscriber that asked.
        requester: SessionId,
    },
    /// A data channel of a session opened.
    ChannelOpen {
        /// The session.
        session: SessionId,
        /// The SCTP stream id.
        channel: u16,
        /// The channel label.
        label: String,
    },
    /// The loudest audio publishers on one shard changed (debounced; loudest first, with
    /// their activity scores, hundredths of a dB above the silence floor). The control
    /// plane merges the shards' lists per room.
    ActiveSpeakers {
        /// The shard.
        shard: usize,
        /// Publishing sessions and their scores, loudest first (empty: silence).
        speakers: Vec<(SessionId, u32)>,
    },
    /// What one shard's subscribers of a publisher track select changed: the layers the
    /// track sends (as seen on that shard) and the layers some local downtrack targets,
    /// as bit sets (bit `i` = layer `i`). The control plane merges shards and reports the
    /// layers nobody selects.
    LayersSelected {
        /// The shard.
        shard: usize,
        /// The publishing session.
        publisher: SessionId,
        /// Its media section.
        mid: Mid,
        /// Layers seen live.
        live: u8,
        /// Layers some downtrack on the shard targets.
        selected: u8,
    },
    /// A relay to another engine ended (see
    /// [`EngineHandle::relay_listen`](crate::EngineHandle::relay_listen)). Its session is
    /// reported closed too; the local subscribers of the tracks it brought in got an
    /// RTCP BYE and their legs were removed. Never dropped.
    RelayDown {
        /// The relay (its session id).
        relay: SessionId,
        /// Why.
        reason: RelayDownReason,
    },
    /// A message arrived on a session's data channel.
    ChannelMessage {
        /// The session.
        session: SessionId,
        /// The SCTP stream id.
        channel: u16,
        /// The channel label (empty when unknown).
        label: String,
        /// Binary (`true`) or text message.
        binary: bool,
        /// The message.
        data: Vec<u8>,
    },
}

/// Latest counters of one media section of a session, from the `Rtc`'s periodic
/// (1 s) stream reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackCounters {
    /// The media section.
    pub mid: Mid,
    /// `true` for a stream the peer sends (a published track), `false` for one the
    /// engine sends (a subscriber leg).
    pub inbound: bool,
    /// RTP packets.
    pub packets: u64,
    /// RTP bytes.
    pub bytes: u64,
    /// Inbound: packets lost (RFC 3550 cumulative). Outbound: RTX retransmissions.
    pub lost: u64,
    /// Inbound: NACKs sent. Outbound: NACKs received.
    pub nacks: u64,
    /// Inbound: PLI/FIR sent. Outbound: PLI/FIR received.
    pub keyframe_requests: u64,
    /// Outbound video leg: the publisher layer forwarded now (0 = lowest; `None`:
    /// nothing yet, paused, or not a leg).
    pub layer: Option<u8>,
    /// Outbound video leg: the layer the allocator chose, which the leg switches to at
    /// that layer's next keyframe (`None`: paused, or not a leg).
    pub target_layer: Option<u8>,
    /// Inbound video track: the received bitrate of each simulcast layer (index 0 =
    /// lowest; a single-stream track is layer 0) in bit/s over the last second, as the
    /// allocator sees it. `None`: the layer carried nothing in that second, or the
    /// track is not routed yet (no subscriber).
    pub layer_bps: [Option<u64>; 3],
}

/// A point-in-time view of one session, from
/// [`EngineHandle::session_stats`](crate::EngineHandle::session_stats).
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// The session.
    pub id: SessionId,
    /// Its shard.
    pub shard: usize,
    /// The `Rtc` is still alive.
    pub alive: bool,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// The ICE connection state.
    pub ice_state: IceConnectionState,
    /// The engine's address used towards the peer (the announced address of the
    /// remote's family), once a remote address is known.
    pub local_addr: Option<SocketAddr>,
    /// The latest ICE-validated remote address.
    pub remote_addr: Option<SocketAddr>,
    /// Round-trip time from the peer's latest receiver report on any outgoing stream.
    pub rtt: Option<std::time::Duration>,
    /// Whole-connection counters.
    pub peer: PeerStats,
    /// Per media section counters (sections without a report yet are absent).
    pub tracks: Vec<TrackCounters>,
    /// Open data channels: (SCTP stream id, label).
    pub channels: Vec<(u16, String)>,
    /// The send-side bandwidth estimate towards the peer in bit/s (from its transport-wide
    /// congestion control feedback; an override set for tests or by an operator wins).
    /// `None` until there is one.
    pub estimate_bps: Option<u64>,
    /// Bandwidth probes the allocator asked for so far (to raise the estimate when a
    /// higher layer needs more than it allows).
    pub probes: u64,
}

/// Which data channel of a session to send on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// By SCTP stream id.
    Id(u16),
    /// By label (the first open channel with it).
    Label(String),
}

/// Why an [`EngineConfig`](crate::EngineConfig) cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// More shards than the engine supports (64: remote subscribers are a 64-bit set).
    #[error("at most 64 shards ({0} configured)")]
    TooManyShards(usize),
    /// An empty core list: no shard would run.
    #[error("no shards (the core list is empty)")]
    NoShards,
    /// Neither an IPv4 nor an IPv6 bind address.
    #[error("no bind address")]
    NoBindAddress,
    /// `base_port + index` of the last shard does not fit a port number.
    #[error("base_port {base_port} + {shards} shards exceeds 65535")]
    PortRange {
        /// The configured port of shard 0.
        base_port: u16,
        /// The number of shards.
        shards: usize,
    },
    /// A wildcard bind address without an announced address for its family.
    #[error("{0} is a wildcard address: set an announced address")]
    WildcardAddress(SocketAddr),
}

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Bad configuration.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// Socket or backend set-up failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No such session.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    /// No such room.
    #[error("unknown room {0}")]
    UnknownRoom(RoomId),
    /// No such shard.
    #[error("no shard {0}")]
    NoSuchShard(usize),
    /// The shard is draining and takes no new sessions.
    #[error("shard {0} is draining")]
    ShardDraining(usize),
    /// The session is not a member of the room (or not a publisher in it).
    #[error("session {0} is not in room {1} in that role")]
    NotInRoom(SessionId, RoomId),
    /// The peer connection refused the set-up or the operation (bad SDP, bad
    /// parameters, a data channel that cannot take the message).
    #[error("rtc: {0}")]
    Rtc(#[from] rtc_core::RtcError),
    /// A call into the session's `Rtc` panicked; the session is removed.
    #[error("session {0} panicked")]
    SessionPanicked(SessionId),
    /// A shard did not answer in time.
    #[error("shard {0} did not answer in time")]
    Timeout(usize),
    /// A shard thread is gone (engine shut down).
    #[error("shard {0} is gone")]
    ShardGone(usize),
    /// The shard thread died (see [`EngineEvent::ShardDown`]); it takes no sessions and
    /// answers no calls.
    #[error("shard {0} is down")]
    ShardDown(usize),
    /// The session has no such open data channel (or no data-channel transport).
    #[error("session {0} has no open data channel {1}")]
    NoSuchChannel(SessionId, String),
    /// The shard holds [`EngineConfig::max_sessions_per_shard`](crate::EngineConfig::max_sessions_per_shard)
    /// sessions.
    #[error("shard {shard} is full ({limit} sessions)")]
    ShardFull {
        /// The shard.
        shard: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The engine holds [`EngineConfig::max_sessions`](crate::EngineConfig::max_sessions)
    /// sessions (closing events not yet read included).
    #[error("the engine is full ({limit} sessions, unread closing events included)")]
    EngineFull {
        /// The configured limit.
        limit: usize,
    },
    /// The offer (or the direct parameters) has more media sections than
    /// [`EngineConfig::max_media_per_session`](crate::EngineConfig::max_media_per_session).
    #[error("{sections} media sections (at most {limit})")]
    TooManyMedia {
        /// Media sections asked for.
        sections: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The address is the peer of another live session on the shard (plain RTP, or a
    /// second relay to the same listener address: a shard demultiplexes by source
    /// address and never moves one to a second session).
    #[error("address {0} is in use by another session")]
    AddressInUse(std::net::SocketAddr),
    /// The engine has no shard address of the family of the plain RTP peer's.
    #[error("no engine address to reach {0}")]
    NoRoute(std::net::SocketAddr),
    /// [`EngineConfig::max_rooms`](crate::EngineConfig::max_rooms) rooms exist.
    #[error("too many rooms (at most {limit})")]
    TooManyRooms {
        /// The configured limit.
        limit: usize,
    },
    /// The room has [`EngineConfig::max_legs_per_room`](crate::EngineConfig::max_legs_per_room)
    /// forwarding legs.
    #[error("room {room} has too many subscriptions (at most {limit} legs)")]
    TooManyLegs {
        /// The room.
        room: RoomId,
        /// The configured limit.
        limit: usize,
    },
}

/// Drops by reason (per shard, totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Datagrams from an unknown address that were not a STUN request for a known ufrag.
    /// Never answered.
    pub unknown_source: u64,
    /// Datagrams that are not STUN/DTLS/RTP/RTCP, or STUN that does not parse.
    pub malformed: u64,
    /// SRTP/SRTCP authentication or replay failures (from the sessions' counters).
    pub srtp_auth: u64,
    /// Datagrams a session's `Rtc` dropped for other reasons (not for it, bad RTCP).
    pub rtc_dropped: u64,
    /// RTP packets from a publisher with no forwarding route (nobody subscribed, or an
    /// unresolvable media section).
    pub no_route: u64,
    /// Packets not forwarded on a leg: no payload type mapping (e.g. RTX), malformed.
    pub leg_rewrite: u64,
    /// Packets a subscriber's `Rtc` refused (not connected yet).
    pub leg_not_ready: u64,
    /// Packets (or keyframe requests) dropped because another shard's channel was full.
    pub cross_shard_full: u64,
    /// Datagrams that arrived for a session whose `Rtc` is no longer alive.
    pub dead_session: u64,
    /// Publisher RTP packets not forwarded because the layer's packet cache already
    /// held their sequence number: retransmissions that repaired nothing (Chromium
    /// probes its estimate with such redundant RTX payloads).
    pub duplicate: u64,
}

impl DropCounters {
    /// Number of drop reasons (entries of [`DropCounters::named`]).
    pub const COUNT: usize = 10;

    /// Every counter with its stable name (the field name, e.g. `"unknown_source"`), in
    /// declaration order. This is the one name table of the drop reasons: the control
    /// protocol's shard statistics and the load generator use these names.
    pub fn named(&self) -> [(&'static str, u64); Self::COUNT] {
        // Destructured so that a new counter cannot be forgotten here.
        let DropCounters {
            unknown_source,
            malformed,
            srtp_auth,
            rtc_dropped,
            no_route,
            leg_rewrite,
            leg_not_ready,
            cross_shard_full,
            dead_session,
            duplicate,
        } = *self;
        [
            ("unknown_source", unknown_source),
            ("malformed", malformed),
            ("srtp_auth", srtp_auth),
            ("rtc_dropped", rtc_dropped),
            ("no_route", no_route),
            ("leg_rewrite", leg_rewrite),
            ("leg_not_ready", leg_not_ready),
            ("cross_shard_full", cross_shard_full),
            ("dead_session", dead_session),
            ("duplicate", duplicate),
        ]
    }

    /// The sum of every counter.
    pub fn total(&self) -> u64 {
        self.named().iter().map(|(_, v)| v).sum()
    }
}

/// Counters and histograms of one shard.
#[derive(Debug, Clone)]
pub struct ShardStats {
    /// Shard index.
    pub shard: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// Its I/O backend.
    pub backend: BackendKind,
    /// Its socket addresses.
    pub local_addrs: Vec<SocketAddr>,
    /// Live sessions.
    pub sessions: usize,
    /// Forwarding routes (publisher media sections with subscribers on or via this shard).
    pub routes: usize,
    /// Datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams queued for sending.
    pub packets_out: u64,
    /// Bytes queued for sending.
    pub bytes_out: u64,
    /// RTP packets written to subscriber legs.
    pub rtp_forwarded: u64,
    /// Of `rtp_forwarded`, the packets protected in place in their send buffer and
    /// queued for the kernel at once (the rest waited in the subscriber's pacer or
    /// behind its other output, or no send buffer was free, and left through its
    /// drain, one copy more).
    pub fwd_in_place: u64,
    /// RTP packets sent to other shards (one per packet and remote shard).
    pub cross_shard_out: u64,
    /// RTP packets received from other shards.
    pub cross_shard_in: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Packets retransmitted to subscribers from the publishers' layer caches (answers
    /// to NACKs when sessions keep no retransmission ring, `rtx_buffer_packets = 0`):
    /// only those the subscriber's pacer queued.
    pub rtx_resent: u64,
    /// NACKed packets that could not be answered that way (no longer in the leg's NACK
    /// map or the layer's cache, already resent within the RTT, or the request or its
    /// answer dropped on a full cross-shard queue), counted on the shard that found out
    /// (the subscriber's, or the publisher's for a packet no longer cached).
    pub rtx_unanswered: u64,
    /// Retransmissions from the layer caches that the subscriber's pacer refused
    /// (the packet already resent within a round trip, the retransmission budget
    /// spent, or its queue full): nothing went out for them.
    pub rtx_refused: u64,
    /// The shard thread runs. `false`: it died (see [`EngineEvent::ShardDown`]); the
    /// other fields are zero, except its index, core, backend and addresses.
    pub alive: bool,
    /// Sessions removed after a panic.
    pub panics: u64,
    /// Sessions closed because they did not connect within
    /// [`EngineConfig::connect_timeout`](crate::EngineConfig::connect_timeout).
    pub connect_timeouts: u64,
    /// Data channels the peer opened beyond
    /// [`EngineConfig::max_channels_per_session`](crate::EngineConfig::max_channels_per_session)
    /// or with a label longer than
    /// [`EngineConfig::max_channel_label`](crate::EngineConfig::max_channel_label); each
    /// was closed.
    pub channels_refused: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// CPU time the shard thread has used.
    pub cpu_time: std::time::Duration,
    /// Drops by reason.
    pub drops: DropCounters,
    /// Backend counters (GSO/GRO batches, syscalls, backend drops).
    pub io: IoStats,
    /// Work time of one loop iteration (after the wait), nanoseconds.
    pub loop_ns: Histogram<u64>,
    /// Per forwarded packet: from the iteration in which it was received (the
    /// publisher's shard) to the hand-off of the re-encrypted copy to the backend,
    /// nanoseconds.
    pub forward_latency_ns: Histogram<u64>,
    /// Forwarding legs (subscribed tracks) with their subscriber on this shard.
    pub legs: usize,
    /// Sessions that connected (ICE and DTLS up) for the first time.
    pub handshakes: u64,
    /// Sessions that ended without ever connecting, because the connection failed, it
    /// did not connect in time or its `Rtc` panicked (not those closed through the API
    /// or at shutdown).
    pub handshake_failures: u64,
    /// Per connected session: from its creation to connected (ICE and DTLS up),
    /// nanoseconds.
    pub handshake_ns: Histogram<u64>,
    /// Per forwarded packet: from the receive completion of its batch (the publisher's
    /// shard; for packets from another shard, their batch there) to the submission of
    /// the sends (after the backend's flush), in fixed log2-linear buckets
    /// ([`control::LatencyBuckets::log2_linear`]).
    pub forward_ns: control::LatencyBuckets,
    /// Entries of every per-shard table that grows with sessions, by name: `sessions`,
    /// `session_slots` and `free_slots` (the slot table, released when the last session
    /// leaves), `by_addr`, `by_ufrag`, `timers` (the timer heap, stale entries included),
    /// `connect_deadlines` (drained lazily, within `connect_timeout`), `routes`, `legs`,
    /// `remote_routes`, `layer_caches` and `layer_cache_bytes` (publisher packet
    /// caches), `speaker_tracks`, `relays`, `touched`, `doomed`. All 0 on an idle shard
    /// (the churn soak of `rtc-bench` checks they return to their baseline).
    pub maps: std::collections::BTreeMap<String, u64>,
    /// Bytes of free packet buffers the shard thread keeps for its sessions to reuse
    /// ([`rtc_core::free_packet_buffer_bytes`]): at most 2 MiB per shard, following the
    /// most packets in flight at once, not the session count.
    pub free_buffer_bytes: u64,
}

/// Snapshot of every shard.
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// One entry per shard, by index.
    pub shards: Vec<ShardStats>,
}

impl EngineStats {
    /// RTP packets forwarded, all shards.
    pub fn rtp_forwarded(&self) -> u64 {
        self.shards.iter().map(|s| s.rtp_forwarded).sum()
    }

    /// Live sessions, all shards.
    pub fn sessions(&self) -> usize {
        self.shards.iter().map(|s| s.sessions).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counter_names_are_unique_and_match_fields() {
        let d = DropCounters {
            unknown_source: 1,
            malformed: 2,
            srtp_auth: 3,
            rtc_dropped: 4,
            no_route: 5,
            leg_rewrite: 6,
            leg_not_ready: 7,
            cross_shard_full: 8,
            dead_session: 9,
            duplicate: 10,
        };
        let named = d.named();
        assert_eq!(named[0], ("unknown_source", 1));
        assert_eq!(named[2], ("srtp_auth", 3));
        assert_eq!(named[8], ("dead_session", 9));
        for (i, (_, v)) in named.iter().enumerate() {
            assert_eq!(*v, i as u64 + 1, "entry {i} is out of declaration order");
        }
        let mut names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropCounters::COUNT);
        assert_eq!(d.total(), 55);
        assert_eq!(DropCounters::default().total(), 0);
    }
}
