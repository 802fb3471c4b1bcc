//! Identifiers and value types shared by requests, responses and events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::{HistogramSummary, LatencyBuckets, SizeBuckets};

/// A session (one peer connection) in the engine. Assigned by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// A room (a forwarding group) named by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomId(pub String);

/// A shard (one pinned core of the data plane), numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

/// A media track of a session (its `mid`, or the track id the engine reports).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for TrackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A data channel of a session: by SCTP stream id (a JSON number) or by label (a string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChannelRef {
    /// The SCTP stream id.
    Id(u16),
    /// The channel label.
    Label(String),
}

impl std::fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelRef::Id(id) => write!(f, "{id}"),
            ChannelRef::Label(l) => f.write_str(l),
        }
    }
}

/// A DTLS certificate fingerprint (`a=fingerprint:<algorithm> <value>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// Hash function name, e.g. `"sha-256"`.
    pub algorithm: String,
    /// Upper-case hex bytes separated by colons.
    pub value: String,
}

/// A DTLS role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtlsRole {
    /// The DTLS client (sends ClientHello; SDP `setup:active`).
    Client,
    /// The DTLS server (SDP `setup:passive`).
    Server,
}

/// The kind of a media track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// The life-cycle state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionState {
    /// Created, waiting for the first ICE check.
    New,
    /// ICE and/or DTLS in progress.
    Connecting,
    /// Media flowing (ICE connected, DTLS done, SRTP keyed).
    Connected,
    /// Consent lost; may recover.
    Disconnected,
    /// ICE or DTLS failed; the session will be closed.
    Failed,
    /// Closed (by request, by failure or by its client going away).
    Closed,
}

impl SessionState {
    /// The wire name (`"connected"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::New => "new",
            SessionState::Connecting => "connecting",
            SessionState::Connected => "connected",
            SessionState::Disconnected => "disconnected",
            SessionState::Failed => "failed",
            SessionState::Closed => "closed",
        }
    }
}

/// Parameters of a session set up without SDP (the "direct API").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectParams {
    /// The remote ICE username fragment.
    pub ice_ufrag: String,
    /// The remote ICE password.
    pub ice_pwd: String,
    /// The remote DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The DTLS role the remote peer takes (the engine takes the other one).
    pub remote_dtls_role: DtlsRole,
    /// Remote ICE candidates in SDP attribute syntax (`"candidate:1 1 udp ..."`).
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Whether the remote is an ICE-lite agent.
    #[serde(default)]
    pub ice_lite: bool,
}

/// A media track as reported by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// The track id.
    pub track: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The session publishing the track.
    pub session: SessionId,
    /// In a `subscribe` answer: the subscriber's own track (its media section) that
    /// carries this publisher track, the id `track.set_preference` takes. Absent
    /// elsewhere (and from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_track: Option<TrackId>,
}

/// Per-track statistics inside [`SessionStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackStats {
    /// The track id.
    pub track: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// `true` when the session sends this track to the engine (a published track).
    pub inbound: bool,
    /// RTP packets.
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    /// Packets lost (inbound) or retransmitted (outbound).
    #[serde(default)]
    pub lost: u64,
    /// NACKs received or sent.
    #[serde(default)]
    pub nacks: u64,
    /// PLI/FIR keyframe requests received or sent.
    #[serde(default)]
    pub keyframe_requests: u64,
    /// Outbound video: the publisher's simulcast layer forwarded now (0 = lowest).
    /// Absent when nothing is forwarded yet, the track is paused, or not a forwarded leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Outbound video: the layer the engine's allocator chose for this subscriber; the
    /// track switches to it at that layer's next keyframe. Absent when paused or not a
    /// forwarded leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_layer: Option<u8>,
    /// Inbound video: the received bitrate of each layer that carried packets in the
    /// last second (lowest layer first), as the engine's allocator sees it. Absent for
    /// audio, outbound tracks, and a track no subscriber is routed to yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRate>,
}

/// One simulcast layer's received bitrate, in [`TrackStats::layers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRate {
    /// The layer (0 = lowest; a single-stream track is layer 0).
    pub layer: u8,
    /// Bits per second over the last second.
    pub bps: u64,
}

/// Statistics of one session (`session.stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// The session.
    pub session: SessionId,
    /// The shard it runs on.
    pub shard: ShardId,
    /// Its state.
    pub state: SessionState,
    /// The room it publishes in, if any.
    #[serde(default)]
    pub room: Option<RoomId>,
    /// Milliseconds since the session was created.
    #[serde(default)]
    pub age_ms: u64,
    /// The selected ICE candidate pair, `"local -> remote"`, once connected.
    #[serde(default)]
    pub selected_pair: Option<String>,
    /// Round-trip time estimate in milliseconds.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// UDP datagrams received.
    pub packets_in: u64,
    /// UDP datagrams sent.
    pub packets_out: u64,
    /// UDP bytes received.
    pub bytes_in: u64,
    /// UDP bytes sent.
    pub bytes_out: u64,
    /// Per-track figures.
    #[serde(default)]
    pub tracks: Vec<TrackStats>,
    /// The DTLS version of the connection (`"1.2"` or `"1.3"`), once keys are set.
    #[serde(default)]
    pub dtls_version: Option<String>,
    /// The engine's send-side bandwidth estimate towards this peer in bit/s, from the
    /// peer's transport-wide congestion control feedback (or an override). Absent
    /// until there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_bps: Option<u64>,
    /// Bandwidth probes the engine has sent this peer so far to find out whether its
    /// link carries a higher layer.
    #[serde(default)]
    pub probes: u64,
}

/// What `engine.stats` and `shard.list` both say of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHead {
    /// The shard.
    pub shard: ShardId,
    /// The CPU core it is pinned to, if pinned.
    #[serde(default)]
    pub core: Option<u32>,
    /// The I/O backend name (`"io_uring"`, `"portable"`, ...).
    pub backend: String,
    /// Live sessions.
    pub sessions: u64,
    /// Whether the shard is draining (takes no new sessions).
    #[serde(default)]
    pub draining: bool,
}

/// Counters of one shard (`engine.stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStats {
    /// Which shard, where it runs, and its load (flattened: these are top-level fields
    /// on the wire).
    #[serde(flatten)]
    pub head: ShardHead,
    /// Whether the shard thread runs (`false`: it died; its counters are zero and no
    /// session is placed on it). Absent (older servers): `true`.
    #[serde(default = "healthy_default")]
    pub healthy: bool,
    /// Datagrams received.
    pub packets_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Dropped datagrams by reason (`"unknown_peer"`, `"srtp_auth"`, ...).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// GSO send batches (one syscall/SQE carrying several datagrams).
    #[serde(default)]
    pub gso_batches: u64,
    /// GRO receive batches (one read returning several coalesced datagrams).
    #[serde(default)]
    pub gro_batches: u64,
    /// Event-loop iteration time in microseconds.
    #[serde(default)]
    pub loop_us: HistogramSummary,
    /// Further named histograms (e.g. `"forward_us"`), summarised.
    #[serde(default)]
    pub histograms: BTreeMap<String, HistogramSummary>,
    /// Engine-side forwarding latency in buckets: per forwarded packet, from the
    /// receive completion of its batch to the submission of the sends
    /// (`forward_us` in `histograms` is its hdrhistogram summary). Empty from
    /// engines that predate it.
    #[serde(default)]
    pub forward_ns: LatencyBuckets,
    /// Further counters for operators (metrics exporters). Absent (older servers): zeros.
    #[serde(default)]
    pub detail: ShardDetail,
    /// Entries of each per-shard table that grows with sessions, by table name
    /// (`"sessions"`, `"by_addr"`, `"routes"`, `"legs"`, `"timers"`, ...; see
    /// `docs/control-protocol.md`). On an idle shard every value returns to its
    /// baseline (0). Absent (older servers): empty.
    #[serde(default)]
    pub maps: BTreeMap<String, u64>,
}

/// Further counters of one shard ([`ShardStats::detail`]), totals since start unless
/// said otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDetail {
    /// Forwarding legs (subscribed tracks) with their subscriber on this shard (now).
    #[serde(default)]
    pub legs: u64,
    /// Forwarding routes: published tracks with subscribers on or via this shard (now).
    #[serde(default)]
    pub routes: u64,
    /// RTP packets written to subscriber legs.
    #[serde(default)]
    pub rtp_forwarded: u64,
    /// Of `rtp_forwarded`, the packets protected in place in their send buffer and
    /// queued for the kernel at once; the rest waited in the subscriber's pacer or
    /// behind its other output and left through its drain, one copy more.
    #[serde(default)]
    pub fwd_in_place: u64,
    /// RTP packets this shard handed to other shards: one per publisher packet and
    /// remote shard with subscribers of it (a room spread over shards).
    #[serde(default)]
    pub cross_shard_out: u64,
    /// RTP packets this shard received from other shards for its subscribers.
    #[serde(default)]
    pub cross_shard_in: u64,
    /// Keyframe requests (PLI/FIR) the shard sent to publishers.
    #[serde(default)]
    pub keyframe_requests: u64,
    /// Retransmissions to subscribers answered from the publishers' packet caches
    /// (the subscriber's pacer queued them).
    #[serde(default)]
    pub rtx_resent: u64,
    /// NACKed packets that could not be answered (no longer cached, already resent
    /// within the round trip, or lost on a full cross-shard queue).
    #[serde(default)]
    pub rtx_unanswered: u64,
    /// Retransmissions the subscriber's pacer refused (a duplicate request within a
    /// round trip, the retransmission budget spent, or its queue full).
    #[serde(default)]
    pub rtx_refused: u64,
    /// Sessions that connected (ICE and DTLS up).
    #[serde(default)]
    pub handshakes: u64,
    /// Sessions that ended without connecting (failed, timed out, panicked; not those
    /// closed on request or at shutdown).
    #[serde(default)]
    pub handshake_failures: u64,
    /// Per connected session: creation to connected.
    #[serde(default)]
    pub handshake_ns: LatencyBuckets,
    /// io_uring submission queue entries pushed (0 on the portable backend).
    #[serde(default)]
    pub uring_sqes: u64,
    /// io_uring completion queue entries reaped (0 on the portable backend).
    #[serde(default)]
    pub uring_cqes: u64,
    /// Datagrams per successful send message (1, or a GSO batch); `sum` is the
    /// datagrams sent.
    #[serde(default)]
    pub send_batches: SizeBuckets,
    /// Datagrams per received buffer (1, or a GRO-coalesced buffer); `sum` is the
    /// datagrams received.
    #[serde(default)]
    pub recv_batches: SizeBuckets,
    /// CPU time the shard thread has used, nanoseconds.
    #[serde(default)]
    pub cpu_ns: u64,
    /// ICE-TCP connections open now (0 when TCP is off).
    #[serde(default)]
    pub tcp_open: u64,
    /// ICE-TCP connection events since start: `accepted`, `refused` (over the cap),
    /// `authenticated`, and why connections closed: `closed_peer`, `closed_garbage`,
    /// `closed_unauthenticated`, `closed_blocked`, `closed_local` (session ended).
    #[serde(default)]
    pub tcp: BTreeMap<String, u64>,
}

fn healthy_default() -> bool {
    true
}

impl ShardStats {
    /// Sum of all drop reasons.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Engine-wide statistics (`engine.stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Milliseconds since the engine started.
    pub uptime_ms: u64,
    /// Live sessions across shards.
    pub sessions: u64,
    /// Live rooms.
    pub rooms: u64,
    /// Connected control clients.
    #[serde(default)]
    pub control_clients: u64,
    /// Per-shard counters.
    pub shards: Vec<ShardStats>,
}

/// One entry of `shard.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Which shard, where it runs, and its load (flattened: these are top-level fields
    /// on the wire).
    #[serde(flatten)]
    pub head: ShardHead,
    /// Local UDP addresses the shard listens on.
    #[serde(default)]
    pub addrs: Vec<String>,
}

/// One entry of `room.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room.
    pub room: RoomId,
    /// Sessions in the room (publishers and subscribers).
    #[serde(default)]
    pub sessions: Vec<SessionId>,
    /// Sessions publishing in the room.
    #[serde(default)]
    pub publishers: Vec<SessionId>,
}
