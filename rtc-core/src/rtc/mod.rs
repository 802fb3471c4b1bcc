//! The [`Rtc`] state machine: one WebRTC peer connection, driven by its caller.
//!
//! The `Rtc` is a few parts: the [`Transport`] (ICE, DTLS, SRTP), the media
//! [`Session`] (streams, RTCP, feedback, bandwidth estimate), the data-channel
//! transport, the output queues and a buffer pool. The code is split by path:
//!
//! - `config`: [`RtcConfig`], the builder;
//! - `receive`: input dispatch and the receive path;
//! - `send`: the send path, [`Writer`], [`StreamTx`] and `poll_output`;
//! - `rtcp`: reports, feedback, bandwidth estimation and stats;
//! - `channel`: [`Channel`] and the SCTP pump;
//! - this module: the `Rtc` struct, its construction, life cycle and accessors.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod channel;
mod config;
mod error;
#[cfg(test)]
mod hardening_tests;
mod local_sections;
mod pacing;
mod plain;
mod receive;
mod rtcp;
mod send;
#[cfg(test)]
mod tests;
mod unverified;

pub use self::channel::Channel;
pub use self::config::RtcConfig;
pub use self::error::{RtcError, WriteError};
pub use self::plain::PlainSrtp;
use self::plain::Protection;
pub use self::send::{StreamTx, Writer};
pub use self::unverified::UnverifiedRtp;
pub use crate::stats::PeerStats;

use crate::dtls::{DtlsCert, DtlsTransport, Fingerprint, SrtpProfileId};
use crate::event::{
    ChannelData, FailReason, KeyframeRequest, MediaAdded, MediaData, MediaEgressStats,
    MediaIngressStats, SenderReportInfo,
};
use crate::feedback::{Bwe, BweConfig, NtpClock, TwccRecvRegister, TwccSendRegister};
use crate::ice::{Candidate, IceAgent, IceConnectionState, IceCreds};
use crate::io::Protocol;
use crate::media::{MediaInfo, MediaKind, Mid, Rid};
use crate::rtp::ExtensionMap;
use crate::sctp::{ChannelId, SctpTransport};

use crate::streams::{RxStream, TxStream};

/// The most remote SSRCs one `Rtc` tracks (bounds state a peer can make us hold).
const MAX_RX_STREAMS: usize = 64;

/// How often frame mode asks for a keyframe while it cannot repair a stream.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Size of a pooled packet buffer: a full UDP datagram plus SRTP overhead room.
const BUF_SIZE: usize = 2048;

/// Transport-wide sequence numbers remembered per audio section of an `Rtc` without
/// video sections: 2.5 s of one 20 ms stream (50 packets/s), 1.3 s at 10 ms frames.
/// Feedback comes every 50–250 ms, so even a burst of probe padding at 500 packets/s
/// is still in the ring when its feedback arrives. 1 KiB per audio section.
const AUDIO_TWCC_PACKETS: usize = 128;

/// Transport-wide sequence numbers remembered per video section (2 s at 512 packets/s,
/// ~5 Mbit/s of 1200-byte packets), up to [`TwccSendRegister::DEFAULT_CAPACITY`]
/// (2 s at 1000 packets/s) in all.
const VIDEO_TWCC_PACKETS: usize = 1024;

/// A queued datagram waiting to be polled out.
struct PendingTransmit {
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    buf: Vec<u8>,
    len: usize,
}

/// A received RTP packet waiting to be polled out as an event (RTP mode).
struct PendingRtp {
    mid: Option<Mid>,
    rid: Option<Rid>,
    layer: Option<u8>,
    ssrc: u32,
    payload_type: u8,
    seq_no: u64,
    timestamp: u32,
    marker: bool,
    buf: Vec<u8>,
    len: usize,
    payload_offset: usize,
    red: bool,
}

/// Owned events (everything but the borrowing RTP event).
enum PendingEvent {
    Ice(IceConnectionState),
    Connected,
    Failed(FailReason),
    MediaAdded(MediaAdded),
    KeyframeRequest(KeyframeRequest),
    StreamEnded(crate::event::StreamEnded),
    ResendRequest(crate::event::ResendRequest),
    ChannelOpen(ChannelId, String),
    ChannelData(ChannelData),
    ChannelLow(ChannelId),
    ChannelClose(ChannelId),
    MediaData(MediaData),
    Remb(u64),
    EgressBitrateEstimate(u64),
    IngressStats(MediaIngressStats),
    EgressStats(MediaEgressStats),
    PeerStats(PeerStats),
}

/// The transport stack of an `Rtc`: ICE, DTLS, and the SRTP contexts DTLS keys.
pub(crate) struct Transport {
    pub(crate) ice: IceAgent,
    pub(crate) dtls: DtlsTransport,
    srtp_tx: Option<Protection>,
    srtp_rx: Option<Protection>,
    /// Plain RTP mode: no ICE, no DTLS; remote address and keys given.
    plain: bool,
    srtp_profile: Option<SrtpProfileId>,
    /// The nominated pair we send on.
    send_path: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// ICE-lite: a pair the peer nominated after `send_path` was set, to a different
    /// remote address. A lite agent takes a nomination on the strength of one binding
    /// request, which anyone who captured one can replay from a forged source; media
    /// moves there only once authenticated DTLS (during the handshake) or SRTP/SRTCP
    /// arrives from it.
    pending_path: Option<(Protocol, SocketAddr, SocketAddr)>,
    /// Remote addresses ICE validated: DTLS/SRTP from elsewhere is dropped.
    recv_sources: Vec<(Protocol, SocketAddr)>,
    ice_state: IceConnectionState,
    /// ICE and DTLS are up and SRTP keys installed.
    connected: bool,
    /// ICE roles were fixed by a negotiation (kept until an ICE restart).
    pub(crate) ice_negotiated: bool,
    /// When the remote ICE credentials were first seen (start of the connect timeout).
    ice_connect_started: Option<Instant>,
}

/// The media session of an `Rtc`: streams, RTCP state, feedback registers and the
/// bandwidth estimate.
pub(crate) struct Session {
    /// Media sections negotiated or declared.
    pub(crate) media: Vec<MediaInfo>,
    /// Receive streams, one per remote SSRC (bounded by `MAX_RX_STREAMS`).
    rx_streams: Vec<RxStream>,
    /// Send streams, one per media section we send on.
    pub(crate) tx: Vec<TxStream>,
    /// SSRCs we have sent RTP on, with their media section when known.
    tx_ssrcs: Vec<(u32, Option<Mid>)>,
    /// Sender SSRC for RTCP we originate (feedback), random per `Rtc`.
    rtcp_ssrc: u32,
    /// FIR command sequence number (RFC 5104 §4.3.1.1).
    fir_seq: u8,
    /// RTCP CNAME of this peer connection.
    pub(crate) cname: String,
    /// Frame mode: scratch list of payloads for one frame (reused).
    payload_scratch: Vec<Vec<u8>>,
    /// NTP timeline for sender reports.
    ntp: NtpClock,
    next_report_at: Instant,
    next_stats_at: Instant,
    /// Transport-wide sequence numbers we received (feedback to the peer).
    twcc_rx: TwccRecvRegister,
    /// Transport-wide sequence numbers we stamped (feedback from the peer).
    twcc_tx: TwccSendRegister,
    /// Send-side bandwidth estimate, created by the first transport-wide feedback or
    /// probe cluster: a session that only receives (an audio publisher) never feeds it,
    /// and the estimator is ~2.8 KiB. Until then it reads as a fresh estimator
    /// ([`Session::bwe`]).
    bwe: Option<Box<Bwe>>,
    /// `twcc_rx` names a real media SSRC in its feedback.
    twcc_media_ssrc_set: bool,
    /// Header extension ids of all media sections together: ids are unique across a
    /// BUNDLE group (RFC 8843 §9.1), so one map reads every received packet. The
    /// first section wins a conflict.
    rx_ext_map: ExtensionMap,
}

/// What waits to be drained by [`Rtc::poll_output`], in that order.
struct Outbox {
    transmits: VecDeque<PendingTransmit>,
    events: VecDeque<PendingEvent>,
    rtp_in: VecDeque<PendingRtp>,
}

/// The estimator every `Rtc` starts with, read in place of a session's own until that
/// is created (all sessions start from the same default configuration).
fn fresh_bwe() -> &'static Bwe {
    static FRESH: std::sync::OnceLock<Bwe> = std::sync::OnceLock::new();
    FRESH.get_or_init(|| Bwe::new(BweConfig::default()))
}

/// A session's send-side estimator (a fresh one while nothing has fed it yet).
fn bwe_of(bwe: &Option<Box<Bwe>>) -> &Bwe {
    match bwe.as_deref() {
        Some(b) => b,
        None => fresh_bwe(),
    }
}

/// A session's send-side estimator, created on first use (once per `Rtc`: the first
/// transport-wide feedback or probe cluster).
fn bwe_mut_of(bwe: &mut Option<Box<Bwe>>) -> &mut Bwe {
    bwe.get_or_insert_with(|| Box::new(Bwe::new(BweConfig::default())))
}

impl Session {
    /// The send-side estimator (a fresh one while nothing has fed it yet).
    pub(crate) fn bwe(&self) -> &Bwe {
        bwe_of(&self.bwe)
    }

    /// The send-side estimator, created on first use.
    pub(crate) fn bwe_mut(&mut self) -> &mut Bwe {
        bwe_mut_of(&mut self.bwe)
    }
}

thread_local! {
    /// Free packet buffers shared by every `Rtc` driven on this thread (a server's
    /// shard thread drives thousands): what one connection returns another takes, so
    /// the buffers kept follow what the thread has in flight at once, not the sum of
    /// every connection's worst burst. An `Rtc` moved to another thread simply uses
    /// that thread's buffers (they are plain `Vec`s).
    static FREE_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Free buffers a thread keeps (2 MiB); beyond that, returned buffers are freed.
const THREAD_POOL_KEEP: usize = 1024;

/// Packet buffers of `BUF_SIZE` bytes, reused through the thread's free list.
struct BufPool {
    /// The buffer the last `poll_output` lent out; it returns on the next call.
    lent: Option<Vec<u8>>,
}

impl BufPool {
    /// A buffer of `BUF_SIZE` bytes (allocates only when the thread's free list is
    /// empty, i.e. while warming up).
    fn take(&mut self) -> Vec<u8> {
        let mut b = pooled_buffer();
        b.resize(BUF_SIZE, 0);
        b
    }

    /// Returns a buffer for reuse by any `Rtc` on this thread (freed beyond
    /// [`THREAD_POOL_KEEP`]).
    fn put(&mut self, buf: Vec<u8>) {
        let _ = FREE_BUFS.try_with(|f| {
            if let Ok(mut f) = f.try_borrow_mut()
                && f.len() < THREAD_POOL_KEEP
            {
                // The list's own storage is sized once for everything it may keep:
                // growing it on the way (a consent check's buffer joining the ones
                // in flight) would be an allocation in the middle of forwarding.
                // (`len == capacity` is the test `push` makes anyway: the compiler
                // folds the two, where a separate `capacity() == 0` cost a compare
                // per packet.)
                let len = f.len();
                if len == f.capacity() {
                    f.reserve_exact(THREAD_POOL_KEEP - len);
                }
                f.push(buf);
            }
        });
    }
}

/// Bytes of the free packet buffers the calling thread keeps for reuse: what every
/// `Rtc` driven on it returned and none has taken again yet, at most 1024 buffers of
/// 2 KiB (2 MiB). It follows the most packets the thread had in flight at once, not
/// the number of `Rtc`s, so a server accounts it per thread, not per connection.
pub fn free_packet_buffer_bytes() -> usize {
    FREE_BUFS
        .try_with(|f| {
            f.try_borrow()
                .map_or(0, |f| f.iter().map(Vec::capacity).sum())
        })
        .unwrap_or(0)
}

/// A buffer from this thread's free list (its length is unspecified; empty and
/// unallocated when the list is empty). The ICE agent takes its STUN buffers here too,
/// so the buffers its checks lend through `poll_output` (which return to the list)
/// come back to it instead of being allocated anew every check.
pub(crate) fn pooled_buffer() -> Vec<u8> {
    // `try_with`/`try_borrow_mut`: during thread teardown, or if ever re-entered,
    // fall back to a new buffer.
    FREE_BUFS
        .try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A Sans-I/O WebRTC peer connection.
///
/// Drive it with [`handle_input`](Rtc::handle_input) and drain
/// [`poll_output`](Rtc::poll_output) until it returns [`Output::Timeout`](crate::Output::Timeout) (the crate
/// documentation shows the loop). It never reads the clock, spawns or does I/O.
///
/// # Life cycle
///
/// 1. **Create**: [`Rtc::new`], or [`Rtc::builder`] to configure ICE lite, RTP mode, the
///    DTLS certificate, SRTP profiles and more, then [`RtcConfig::build`]. Add the local
///    candidates (the addresses of the sockets the caller owns) with
///    [`add_local_candidate`](Rtc::add_local_candidate).
/// 2. **Negotiate**, either with SDP offer/answer through [`sdp_api`](Rtc::sdp_api), or
///    without SDP through [`direct_api`](Rtc::direct_api) (credentials, fingerprint, DTLS
///    role and media declared by the caller). Remote candidates go in with
///    [`add_remote_candidate`](Rtc::add_remote_candidate), at any time. Renegotiation
///    later (new media, an ICE restart) uses the same APIs.
/// 3. **Connect**: driven by the loop, ICE checks find a path and DTLS runs over it.
///    [`Event::IceConnectionStateChange`](crate::Event::IceConnectionStateChange) reports
///    ICE progress; [`Event::Connected`](crate::Event::Connected) means DTLS is up, the
///    peer's certificate matched its fingerprint and SRTP keys are installed
///    ([`is_connected`](Rtc::is_connected) turns true).
/// 4. **Media and data**: in frame mode write whole frames with [`writer`](Rtc::writer)
///    and receive [`Event::MediaData`](crate::Event::MediaData); in RTP mode write
///    packets with [`stream_tx`](Rtc::stream_tx) or the direct API and receive
///    [`Event::RtpPacket`](crate::Event::RtpPacket). Data channels are used through
///    [`channel`](Rtc::channel).
/// 5. **End**: [`disconnect`](Rtc::disconnect) closes it from our side (DTLS
///    close_notify); a DTLS failure or close by the peer, a fingerprint mismatch, an
///    ICE failure (including lost consent) or no working ICE pair within the connect
///    timeout ([`RtcConfig::set_ice_connect_timeout`]) ends it otherwise, reported as
///    [`Event::Failed`](crate::Event::Failed). Either way
///    [`is_alive`](Rtc::is_alive) turns false for good: the caller stops driving the
///    `Rtc` and drops it. A new connection needs a new `Rtc`.
pub struct Rtc {
    pub(crate) config: RtcConfig,
    alive: bool,
    /// The latest `now` the caller gave us.
    last_now: Instant,
    /// While an [`Input::ReceiveArrived`](crate::Input::ReceiveArrived) is handled: its
    /// arrival instant.
    rx_arrival: Option<Instant>,
    stats: PeerStats,
    /// ICE, DTLS and SRTP.
    pub(crate) transport: Transport,
    /// Streams, RTCP, feedback and bandwidth estimation.
    pub(crate) session: Session,
    /// Data channels, once negotiated (SDP application section or direct API); boxed,
    /// so a media-only `Rtc` does not carry the transport's inline state.
    pub(crate) sctp: Option<Box<SctpTransport>>,
    /// The mid of the negotiated data-channel section.
    pub(crate) app_mid: Option<Mid>,
    /// Output queues.
    outbox: Outbox,
    /// Packet buffers.
    pool: BufPool,
    /// Send pacing and probing.
    pacing: pacing::Pacing,
    /// SDP `o=` session id.
    pub(crate) session_id: u64,
    /// Our side of the last completed SDP negotiation (basis of re-offers), kept as
    /// SDP text.
    pub(crate) local_sections: local_sections::LocalSections,
}

impl Rtc {
    /// A peer connection with the default configuration.
    ///
    /// # Panics
    /// Only if the system's random number generator fails while generating the
    /// DTLS key (an environment fault, not an input).
    pub fn new(now: Instant) -> Rtc {
        // Default config only fails on certificate generation, which needs a working RNG.
        let built = RtcConfig::default().build(now);
        // Cannot fail but for an RNG fault, see above.
        built.expect("certificate generation with a working RNG")
    }

    /// A builder to configure the `Rtc` before creating it.
    pub fn builder() -> RtcConfig {
        RtcConfig::default()
    }

    fn from_config(config: RtcConfig, now: Instant) -> Result<Rtc, RtcError> {
        let ntp_reference = config.ntp_reference;
        let (pacing_on, pacer_config) = (config.pacing, config.pacer);
        let cert = match &config.cert {
            Some(c) => c.clone(),
            None => DtlsCert::new_ecdsa_p256()?,
        };
        let mut ice = IceAgent::new();
        ice.set_ice_lite(config.ice_lite);
        if let Some(c) = &config.local_creds {
            ice.set_local_credentials(c.clone());
        }
        let dtls = DtlsTransport::new(cert, config.srtp_profiles.clone(), config.dtls_versions);
        Ok(Rtc {
            config,
            alive: true,
            last_now: now,
            rx_arrival: None,
            stats: PeerStats::default(),
            transport: Transport {
                ice,
                dtls,
                srtp_tx: None,
                srtp_rx: None,
                plain: false,
                srtp_profile: None,
                send_path: None,
                pending_path: None,
                recv_sources: Vec::new(),
                ice_state: IceConnectionState::New,
                connected: false,
                ice_negotiated: false,
                ice_connect_started: None,
            },
            session: Session {
                media: Vec::new(),
                rx_streams: Vec::new(),
                tx: Vec::new(),
                tx_ssrcs: Vec::new(),
                rtcp_ssrc: rand::random(),
                fir_seq: 0,
                cname: format!("rtc-{:016x}", rand::random::<u64>()),
                payload_scratch: Vec::new(),
                ntp: match ntp_reference {
                    Some(w) => NtpClock::from_system_time(now, w),
                    // 2024-01-01T00:00:00Z in NTP seconds, as an arbitrary fixed origin.
                    None => NtpClock::new(now, 3_913_056_000u64 << 32),
                },
                next_report_at: now,
                next_stats_at: now,
                twcc_rx: TwccRecvRegister::new(0, 0),
                // Sized for audio until a video section comes (`add_media_entry`).
                twcc_tx: TwccSendRegister::new(AUDIO_TWCC_PACKETS),
                bwe: None,
                twcc_media_ssrc_set: false,
                rx_ext_map: ExtensionMap::empty(),
            },
            sctp: None,
            app_mid: None,
            outbox: Outbox {
                transmits: VecDeque::new(),
                events: VecDeque::new(),
                rtp_in: VecDeque::new(),
            },
            pool: BufPool { lent: None },
            pacing: pacing::Pacing::new(pacing_on, pacer_config),
            // SDP o= session ids are 63-bit positive numbers (RFC 8866 §5.2).
            session_id: rand::random::<u64>() >> 1,
            local_sections: local_sections::LocalSections::new(),
        })
    }

    /// Whether the connection is still usable: true from creation (also before it
    /// connects), false for good after [`disconnect`](Rtc::disconnect), a DTLS failure or
    /// close, a fingerprint mismatch, an ICE failure (including lost consent), or the
    /// ICE connect timeout. Once it
    /// is false the caller should stop driving the `Rtc` and drop it.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Whether ICE and DTLS are up and SRTP keys installed.
    pub fn is_connected(&self) -> bool {
        self.transport.connected && self.alive
    }

    /// The negotiated SRTP profile, once connected.
    pub fn srtp_profile(&self) -> Option<SrtpProfileId> {
        self.transport.srtp_profile
    }

    /// The DTLS version the handshake settled on (see
    /// [`RtcConfig::set_dtls_versions`](crate::RtcConfig::set_dtls_versions)); `None`
    /// until the handshake has decided it. Also in [`PeerStats::dtls_version`].
    pub fn dtls_version(&self) -> Option<crate::dtls::DtlsVersion> {
        self.transport.dtls.version()
    }

    /// Closes the connection (sends DTLS close_notify when connected).
    pub fn disconnect(&mut self) {
        if self.alive {
            self.transport.dtls.close();
            self.flush_dtls();
            self.alive = false;
        }
    }

    /// Adds a local candidate (e.g. a bound UDP socket's address). Returns false when
    /// it was redundant or rejected.
    pub fn add_local_candidate(&mut self, c: Candidate) -> bool {
        self.transport.ice.add_local_candidate(c)
    }

    /// Adds a remote candidate (trickle ICE).
    pub fn add_remote_candidate(&mut self, c: Candidate) {
        self.transport.ice.add_remote_candidate(c);
    }

    /// The local DTLS certificate fingerprint (for signalling).
    pub fn local_fingerprint(&self) -> &Fingerprint {
        self.transport.dtls.local_fingerprint()
    }

    /// The media sections negotiated or declared so far.
    pub fn media(&self) -> impl Iterator<Item = (Mid, MediaKind)> + '_ {
        self.session.media.iter().map(|m| (m.mid, m.kind))
    }

    /// Our ICE credentials (for signalling).
    pub fn local_ice_credentials(&self) -> &IceCreds {
        self.transport.ice.local_credentials()
    }

    /// Our local ICE candidates (for signalling).
    pub fn local_candidates(&self) -> &[Candidate] {
        self.transport.ice.local_candidates()
    }

    /// Counters of this peer connection.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// The current ICE connection state.
    pub fn ice_connection_state(&self) -> IceConnectionState {
        self.transport.ice_state
    }

    /// The SDP offer/answer API.
    pub fn sdp_api(&mut self) -> crate::sdp_api::SdpApi<'_> {
        crate::sdp_api::SdpApi::new(self)
    }

    /// The direct API: configure the connection without SDP.
    pub fn direct_api(&mut self) -> crate::direct::DirectApi<'_> {
        crate::direct::DirectApi::new(self)
    }

    /// Starts the ICE connect timer once the remote credentials are known, and fails
    /// the `Rtc` when it expired before any candidate pair worked.
    pub(super) fn check_ice_connect_timeout(&mut self, now: Instant) {
        let Some(timeout) = self.config.ice_connect_timeout else {
            return;
        };
        if !self.alive || self.transport.send_path.is_some() {
            return;
        }
        if self.transport.ice_connect_started.is_none()
            && self.transport.ice.remote_credentials().is_some()
        {
            self.transport.ice_connect_started = Some(now);
        }
        if let Some(started) = self.transport.ice_connect_started
            && now.saturating_duration_since(started) >= timeout
        {
            self.fail(FailReason::IceConnectTimeout);
        }
    }

    /// When the ICE connect timeout expires, while it is running.
    pub(super) fn ice_connect_deadline(&self) -> Option<Instant> {
        let timeout = self.config.ice_connect_timeout?;
        if !self.alive || self.transport.send_path.is_some() {
            return None;
        }
        let started = self.transport.ice_connect_started?;
        Some(started.checked_add(timeout).unwrap_or(started))
    }

    fn fail(&mut self, reason: FailReason) {
        if self.alive {
            self.alive = false;
            self.outbox.events.push_back(PendingEvent::Failed(reason));
        }
    }

    /// Registers a media section (SDP or direct API) and reports it; a known mid is
    /// updated in place (re-negotiation) without a new event.
    pub(crate) fn add_media_entry(&mut self, info: MediaInfo) {
        // Room in the transport-wide send ring for one more stream of this kind (a
        // subscriber of N speakers sends N audio streams; video sends many more packets
        // than audio), up to the register's default.
        let per_section = match info.kind {
            MediaKind::Audio => AUDIO_TWCC_PACKETS,
            MediaKind::Video => VIDEO_TWCC_PACKETS,
        };
        let same_kind = self
            .session
            .media
            .iter()
            .filter(|m| m.kind == info.kind && m.mid != info.mid)
            .count()
            + 1;
        self.session
            .twcc_tx
            .grow_capacity((per_section * same_kind).min(TwccSendRegister::DEFAULT_CAPACITY));
        if let Some(m) = self.session.media.iter_mut().find(|m| m.mid == info.mid) {
            let mut info = info;
            for s in &m.remote_ssrcs {
                if !info.remote_ssrcs.contains(s) {
                    info.remote_ssrcs.push(*s);
                }
            }
            *m = info;
        } else {
            let (mid, kind) = (info.mid, info.kind);
            // Sections come one by one and are few: no doubling slack.
            self.session.media.reserve_exact(1);
            self.session.media.push(info);
            self.outbox
                .events
                .push_back(PendingEvent::MediaAdded(MediaAdded { mid, kind }));
        }
        self.refresh_rx_ext_map();
        let known: Vec<(u32, Mid)> = self
            .session
            .media
            .iter()
            .flat_map(|m| m.remote_ssrcs.iter().map(move |s| (*s, m.mid)))
            .collect();
        for (ssrc, mid) in known {
            self.bind_rx_ssrc(ssrc, mid);
        }
    }

    /// Drops a media section (rejected by a renegotiation): nothing is sent or
    /// received on it any more.
    pub(crate) fn remove_media_entry(&mut self, mid: Mid) {
        let before = self.session.media.len();
        self.session.media.retain(|m| m.mid != mid);
        if self.session.media.len() != before {
            self.refresh_rx_ext_map();
        }
    }

    /// Rebuilds the bundle-wide receive extension map from the sections' maps.
    fn refresh_rx_ext_map(&mut self) {
        let mut map = ExtensionMap::empty();
        for m in &self.session.media {
            for (id, ext) in m.extensions.iter() {
                if map.get(id).is_none() && map.id_of(ext).is_none() {
                    map.set(id, ext);
                }
            }
        }
        self.session.rx_ext_map = map;
    }

    /// The last RTCP sender report the peer sent for one of its SSRCs (we receive),
    /// or `None` before the first one.
    ///
    /// An SFU aligns the RTP timestamps of simulcast layers with it: each layer has
    /// its own SSRC, RTP timestamp offset and sender reports, and the reports' NTP
    /// times share one clock. This is an accessor rather than an event: it always
    /// returns the latest report, read when a layer switch needs it.
    pub fn sender_report(&self, ssrc: u32) -> Option<SenderReportInfo> {
        let st = self.session.rx_streams.iter().find(|s| s.ssrc == ssrc)?;
        let (ntp, rtp_time, received) = st.register.last_sender_report()?;
        Some(SenderReportInfo {
            mid: st.mid,
            ssrc,
            rid: st.rid,
            ntp,
            rtp_time,
            received,
        })
    }

    /// Moves `last_now` forward to `now` (never back) without running timers.
    pub(crate) fn advance_time(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// The send-side bandwidth estimate in bit/s from the peer's transport-wide
    /// congestion control feedback, or `None` when transport-wide sequence numbers
    /// are not negotiated (then there is no feedback to estimate from). Before the
    /// first feedback it is the estimator's starting value; changes are also
    /// reported as [`Event::EgressBitrateEstimate`](crate::Event::EgressBitrateEstimate).
    pub fn bandwidth_estimate(&self) -> Option<u64> {
        self.twcc_negotiated()
            .then(|| self.session.bwe().estimate())
    }

    /// The send-side bandwidth estimator (its delay- and loss-based parts, the
    /// acknowledged rate, what the feedback reported lost), or `None` when
    /// transport-wide sequence numbers are not negotiated. For diagnostics and stats.
    pub fn bwe(&self) -> Option<&crate::feedback::Bwe> {
        self.twcc_negotiated().then(|| self.session.bwe())
    }

    /// What was negotiated for a media section.
    pub fn media_info(&self, mid: Mid) -> Option<&MediaInfo> {
        self.session.media.iter().find(|m| m.mid == mid)
    }

    /// Associates a remote SSRC with a media section.
    pub(crate) fn add_remote_ssrc(&mut self, mid: Mid, ssrc: u32) {
        if let Some(m) = self.session.media.iter_mut().find(|m| m.mid == mid)
            && !m.remote_ssrcs.contains(&ssrc)
        {
            m.remote_ssrcs.push(ssrc);
        }
        self.bind_rx_ssrc(ssrc, mid);
    }

    /// Puts the receive streams with SSRC `ssrc` under the media section `mid`.
    fn bind_rx_ssrc(&mut self, ssrc: u32, mid: Mid) {
        for s in self
            .session
            .rx_streams
            .iter_mut()
            .filter(|s| s.ssrc == ssrc)
        {
            s.mid = Some(mid);
        }
    }
}
