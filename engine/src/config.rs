//! Engine configuration.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc_core::dtls::DtlsVersions;
use rtc_core::sdp::OpusRed;

use crate::io::{BackendPreference, IoConfig};

/// A function run at the start of every shard thread, with the shard index (e.g. to set
/// thread-local state; tests use it to mark shard threads for an allocation counter).
pub type ThreadStartHook = Arc<dyn Fn(usize) + Send + Sync>;

/// Configuration of [`Engine::start`](crate::Engine::start).
#[derive(Clone)]
pub struct EngineConfig {
    /// Explicit cores, one shard per entry, each shard pinned to its core. `None`: one
    /// shard per available core (or [`EngineConfig::shards`] shards).
    pub cores: Option<Vec<usize>>,
    /// Number of shards when `cores` is `None` (`None`: one per available core). Shards
    /// are pinned to the first cores when [`EngineConfig::pin`] is set.
    pub shards: Option<usize>,
    /// Pin shard threads to cores.
    pub pin: bool,
    /// IPv4 address the shards bind (one socket each).
    pub bind_v4: Option<IpAddr>,
    /// IPv6 address the shards bind (one v6-only socket each), if any.
    pub bind_v6: Option<IpAddr>,
    /// Port of shard 0; shard `i` binds `base_port + i`. 0: ephemeral ports.
    pub base_port: u16,
    /// ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing) for peers whose networks
    /// block UDP: `None` (default) = off; `Some(0)` = each shard listens on an ephemeral
    /// TCP port; `Some(p)` = shard `i` listens on `p + i` (one port per shard, like UDP:
    /// a connection must reach the shard that holds its session). Bounds are in
    /// [`IoConfig::tcp`](crate::io::IoConfig::tcp).
    pub tcp_port: Option<u16>,
    /// Public IPv4 address announced in candidates instead of `bind_v4` (1:1 NAT).
    pub announce_v4: Option<IpAddr>,
    /// Public IPv6 address announced instead of `bind_v6`.
    pub announce_v6: Option<IpAddr>,
    /// Which backend to open.
    pub backend: BackendPreference,
    /// Backend settings; `bind` is filled per shard.
    pub io: IoConfig,
    /// Control command queue length per shard.
    pub command_queue: usize,
    /// Cross-shard packet queue length per shard (batches; full → drop and count).
    pub forward_queue: usize,
    /// RTP packets per cross-shard batch (at most).
    pub forward_batch: usize,
    /// At most one keyframe request per publisher stream per this interval.
    pub keyframe_interval: Duration,
    /// While a shard drains its sessions' output, it submits the queued sends to the
    /// kernel each time this many datagrams are queued, not only at the end of the
    /// iteration: the first legs of a fan-out leave while the last ones are still being
    /// encrypted, instead of every packet of the iteration waiting for all of them (the
    /// engine-side latency). A smaller number means more submissions and smaller GSO
    /// batches. `usize::MAX`: only at the end of the iteration.
    pub submit_every: usize,
    /// Burst allowance of each session's pacer: a subscriber leg may send up to this
    /// much time at its pacing rate at once before its pacer holds the rest (never
    /// less than one full-size packet). At 40 ms (the default, the send burst interval
    /// of libwebrtc's pacer) a video frame's packets leave together: each is sealed in
    /// place in its send chunk and the frame goes to the kernel as one GSO batch.
    /// Smaller values smooth a frame over more time for paths with shallow buffers, at
    /// the cost of a copy and a pacer round per held packet and smaller send batches.
    pub pacing_burst: Duration,
    /// Packets each subscriber leg keeps for NACK/RTX answers (memory per leg grows to
    /// this many packets once traffic has filled the ring, and every forwarded packet
    /// is copied into it).
    ///
    /// `0` (the default): legs keep no ring; NACKs are answered from the publisher
    /// layers' shared packet caches ([`cache_video_packets`](Self::cache_video_packets)), rewritten for
    /// the leg again. The caches live on the publisher's shard: a leg on another shard
    /// asks that shard for the cached packet over the cross-shard queue (one loop
    /// iteration of each shard). NACKs that cannot be answered (packet no longer cached,
    /// queue full) are counted in
    /// [`ShardStats::rtx_unanswered`](crate::ShardStats::rtx_unanswered).
    pub rtx_buffer_packets: usize,
    /// Packets cached per published video layer (one cache per layer, shared by every
    /// subscriber; rounded up to a power of two).
    pub cache_video_packets: usize,
    /// Packets cached per published audio track whose subscribers may NACK it: one of
    /// them negotiated `nack` on its audio section, or is a direct-API or relay leg, or
    /// sits on another shard. Browsers do not negotiate NACK for Opus; a track only they
    /// receive keeps a 4-packet cache (enough to spot a repeated packet).
    pub cache_audio_packets: usize,
    /// How long control calls wait for a shard's answer.
    pub reply_timeout: Duration,
    /// Engine events queue length (events are dropped when nobody reads them).
    pub event_queue: usize,
    /// Run at the start of every shard thread.
    pub on_thread_start: Option<ThreadStartHook>,
    /// A session not connected (ICE and DTLS up) this long after its creation is closed
    /// with [`CloseReason::ConnectTimeout`](crate::CloseReason::ConnectTimeout)
    /// (default 30 s).
    pub connect_timeout: Duration,
    /// Live sessions per shard; beyond it creation fails with
    /// [`EngineError::ShardFull`](crate::EngineError::ShardFull) (default 5,000).
    pub max_sessions_per_shard: usize,
    /// Live sessions in the engine, plus closing events not yet read from
    /// [`EngineHandle::events`](crate::EngineHandle::events); beyond it creation fails
    /// with [`EngineError::EngineFull`](crate::EngineError::EngineFull) (default 20,000).
    pub max_sessions: usize,
    /// Media sections (SDP m-lines, or direct-API sections) per session; more fails
    /// with [`EngineError::TooManyMedia`](crate::EngineError::TooManyMedia) before the
    /// shard parses anything (default 64).
    pub max_media_per_session: usize,
    /// Rooms; beyond it [`EngineHandle::create_room`](crate::EngineHandle::create_room)
    /// fails with [`EngineError::TooManyRooms`](crate::EngineError::TooManyRooms)
    /// (default 10,000).
    pub max_rooms: usize,
    /// Forwarding legs (one per subscriber media section) per room; beyond it a
    /// subscription fails with [`EngineError::TooManyLegs`](crate::EngineError::TooManyLegs)
    /// (default 10,000).
    pub max_legs_per_room: usize,
    /// Open data channels per session. The peer opens them, so there is no caller to
    /// refuse: a channel beyond the cap is closed (stream reset), never reported, and
    /// counted in [`ShardStats::channels_refused`](crate::ShardStats::channels_refused)
    /// (default 64).
    pub max_channels_per_session: usize,
    /// Longest data-channel label, bytes; a channel with a longer label is closed and
    /// counted like one beyond [`EngineConfig::max_channels_per_session`] (default 256).
    pub max_channel_label: usize,
    /// Opus RED negotiation with every session (default [`OpusRed::Prefer`]: a browser
    /// that offers RED publishes RED). Subscribers that negotiated RED receive it as
    /// published; the others receive the primary Opus encoding only.
    pub opus_red: OpusRed,
    /// DTLS versions sessions may use (default [`DtlsVersions::Auto`]: 1.3 when the peer
    /// offers it, else 1.2).
    pub dtls_versions: DtlsVersions,
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("cores", &self.cores)
            .field("shards", &self.shards)
            .field("pin", &self.pin)
            .field("bind_v4", &self.bind_v4)
            .field("bind_v6", &self.bind_v6)
            .field("base_port", &self.base_port)
            .field("tcp_port", &self.tcp_port)
            .field("announce_v4", &self.announce_v4)
            .field("announce_v6", &self.announce_v6)
            .field("backend", &self.backend)
            .field("io", &self.io)
            .field("command_queue", &self.command_queue)
            .field("forward_queue", &self.forward_queue)
            .field("forward_batch", &self.forward_batch)
            .field("submit_every", &self.submit_every)
            .field("pacing_burst", &self.pacing_burst)
            .field("keyframe_interval", &self.keyframe_interval)
            .field("rtx_buffer_packets", &self.rtx_buffer_packets)
            .field("cache_video_packets", &self.cache_video_packets)
            .field("cache_audio_packets", &self.cache_audio_packets)
            .field("reply_timeout", &self.reply_timeout)
            .field("event_queue", &self.event_queue)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("max_sessions_per_shard", &self.max_sessions_per_shard)
            .field("max_sessions", &self.max_sessions)
            .field("max_media_per_session", &self.max_media_per_session)
            .field("max_rooms", &self.max_rooms)
            .field("max_legs_per_room", &self.max_legs_per_room)
            .field("max_channels_per_session", &self.max_channels_per_session)
            .field("max_channel_label", &self.max_channel_label)
            .field("opus_red", &self.opus_red)
            .field("dtls_versions", &self.dtls_versions)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cores: None,
            shards: None,
            pin: true,
            bind_v4: Some(IpAddr::from([127, 0, 0, 1])),
            bind_v6: None,
            base_port: 0,
            tcp_port: None,
            announce_v4: None,
            announce_v6: None,
            backend: BackendPreference::Auto,
            io: IoConfig::default(),
            command_queue: 256,
            forward_queue: 1024,
            forward_batch: 64,
            keyframe_interval: Duration::from_millis(500),
            submit_every: 64,
            pacing_burst: Duration::from_millis(40),
            rtx_buffer_packets: 0,
            cache_video_packets: 512,
            cache_audio_packets: 128,
            reply_timeout: Duration::from_secs(5),
            event_queue: 4096,
            on_thread_start: None,
            connect_timeout: Duration::from_secs(30),
            max_sessions_per_shard: 5_000,
            max_sessions: 20_000,
            max_media_per_session: 64,
            max_rooms: 10_000,
            max_legs_per_room: 10_000,
            max_channels_per_session: 64,
            max_channel_label: 256,
            opus_red: OpusRed::Prefer,
            dtls_versions: DtlsVersions::Auto,
        }
    }
}

impl EngineConfig {
    /// The cores the shards use (`None` entries: not pinned).
    pub(crate) fn shard_cores(&self) -> Vec<Option<usize>> {
        if let Some(c) = &self.cores {
            return c.iter().map(|c| Some(*c)).collect();
        }
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let n = self.shards.unwrap_or_else(|| available.len().max(1)).max(1);
        (0..n)
            .map(|i| {
                if self.pin && !available.is_empty() {
                    available.get(i % available.len()).copied()
                } else {
                    None
                }
            })
            .collect()
    }
}
