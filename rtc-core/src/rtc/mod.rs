//! The [`Rtc`] state machine: one WebRTC peer connection, driven by its caller.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

mod rtcp;

use crate::demux::Datagram;
use crate::dtls::{DtlsCert, DtlsError, DtlsEvent, DtlsTransport, Fingerprint, SrtpProfileId};
use crate::event::{
    ChannelData, Event, FailReason, KeyframeRequest, KeyframeRequestKind, MediaAdded, MediaData,
    RtpPacketReceived,
};
use crate::feedback::{Bwe, BweConfig, NtpClock, TwccRecvRegister, TwccSendRegister};
use crate::ice::{Candidate, IceAgent, IceAgentEvent, IceConnectionState, IceCreds};
use crate::io::{Input, Output, Protocol, Receive, Transmit};
use crate::media::{MediaInfo, MediaKind, Mid};
use crate::rtcp::{Fir, FirEntry, Pli, RtcpError};
use crate::rtp::{Extension, ExtensionValues, HeaderExtension, RtpHeader, RtpPacket};
use crate::sctp::{ChannelConfig, ChannelId, SctpError, SctpEvent, SctpTransport};
use crate::srtp::{SrtpContext, SrtpProfile};
use crate::streams::{RxStream, TxStream, pt_params};
use crate::stun::StunMessage;

/// Errors from the `Rtc` API (bad input or misuse; never broken invariants).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// The `Rtc` is closed or failed.
    #[error("the Rtc is no longer alive")]
    NotAlive,
    /// Time went backwards.
    #[error("time went backwards")]
    TimeWentBackwards,
    /// A DTLS-level error.
    #[error(transparent)]
    Dtls(#[from] DtlsError),
    /// SDP could not be parsed or negotiated.
    #[error("sdp: {0}")]
    Sdp(String),
    /// An ICE candidate was rejected.
    #[error("ice: {0}")]
    Ice(String),
    /// An unknown media section.
    #[error("unknown mid {0}")]
    UnknownMid(Mid),
    /// A media write was refused.
    #[error("write: {0}")]
    Write(String),
    /// The operation does not fit the current state.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// A data-channel operation failed.
    #[error("data channel: {0}")]
    Channel(SctpError),
}

/// Write access to one data channel, from [`Rtc::channel`].
pub struct Channel<'a> {
    rtc: &'a mut Rtc,
    id: ChannelId,
}

impl Channel<'_> {
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut SctpTransport, ChannelId) -> Result<T, SctpError>,
    ) -> Result<T, RtcError> {
        let Some(sctp) = self.rtc.sctp.as_mut() else {
            return Err(RtcError::InvalidState("no data-channel transport"));
        };
        let r = f(sctp, self.id).map_err(RtcError::Channel)?;
        let now = self.rtc.last_now;
        self.rtc.pump_sctp(now);
        self.rtc.flush_dtls();
        Ok(r)
    }

    /// Sends a message (binary or text). Returns the bytes accepted.
    pub fn write(&mut self, binary: bool, data: &[u8]) -> Result<usize, RtcError> {
        self.with(|s, id| s.write(id, binary, data))
    }

    /// Bytes queued but not yet acknowledged by the peer.
    pub fn buffered_amount(&mut self) -> Result<usize, RtcError> {
        self.with(|s, id| s.buffered_amount(id))
    }

    /// Sets the low-water mark for [`Event::ChannelBufferedAmountLow`].
    pub fn set_buffered_amount_low_threshold(&mut self, n: usize) -> Result<(), RtcError> {
        self.with(|s, id| s.set_buffered_amount_low_threshold(id, n))
    }

    /// Closes the channel (stream reset).
    pub fn close(&mut self) -> Result<(), RtcError> {
        self.with(|s, id| s.close_channel(id))
    }

    /// The channel's label.
    pub fn label(&self) -> Option<&str> {
        self.rtc
            .sctp
            .as_ref()
            .and_then(|s| s.channel_label(self.id))
    }
}

/// Configuration for an [`Rtc`], built with [`Rtc::builder`].
#[derive(Debug, Clone)]
pub struct RtcConfig {
    pub(crate) ice_lite: bool,
    pub(crate) rtp_mode: bool,
    pub(crate) cert: Option<DtlsCert>,
    pub(crate) srtp_profiles: Vec<SrtpProfileId>,
    pub(crate) local_creds: Option<IceCreds>,
    pub(crate) answer_dtls_active: bool,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) ntp_reference: Option<SystemTime>,
    pub(crate) rtx_buffer: (usize, Duration),
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            ice_lite: false,
            rtp_mode: false,
            cert: None,
            srtp_profiles: vec![
                SrtpProfileId::AeadAes128Gcm,
                SrtpProfileId::AeadAes256Gcm,
                SrtpProfileId::Aes128CmSha1_80,
            ],
            local_creds: None,
            answer_dtls_active: true,
            stats_interval: Some(Duration::from_secs(1)),
            ntp_reference: None,
            rtx_buffer: (1024, Duration::from_secs(3)),
        }
    }
}

impl RtcConfig {
    /// Default configuration: full ICE agent, frame mode, a fresh certificate, all
    /// three SRTP profiles allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Act as an ICE-lite agent (servers with public addresses): never send
    /// connectivity checks, answer them, and signal `a=ice-lite`.
    pub fn set_ice_lite(mut self, lite: bool) -> Self {
        self.ice_lite = lite;
        self
    }

    /// RTP mode: incoming packets surface as [`Event::RtpPacket`] and media is
    /// written per packet; frame assembly is off. What an SFU uses.
    pub fn set_rtp_mode(mut self, rtp_mode: bool) -> Self {
        self.rtp_mode = rtp_mode;
        self
    }

    /// Use this DTLS certificate (share one across many `Rtc` to save the key
    /// generation). Without it, each `Rtc` generates its own.
    pub fn set_dtls_cert(mut self, cert: DtlsCert) -> Self {
        self.cert = Some(cert);
        self
    }

    /// The SRTP profiles this side accepts, in preference order. At least one.
    ///
    /// `dimpl` (the DTLS engine) negotiates with a fixed server-side preference
    /// (AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80); this list
    /// filters: a handshake that lands on a profile not listed fails.
    pub fn set_srtp_profiles(mut self, profiles: &[SrtpProfileId]) -> Self {
        if !profiles.is_empty() {
            self.srtp_profiles = profiles.to_vec();
        }
        self
    }

    /// Fixed local ICE credentials (otherwise random ones are generated).
    pub fn set_local_ice_credentials(mut self, creds: IceCreds) -> Self {
        self.local_creds = Some(creds);
        self
    }

    /// The DTLS role taken when answering an offer with `a=setup:actpass`: `true`
    /// (default, RFC 8842 §5.3) answers `active` and we are the DTLS client; `false`
    /// answers `passive` and we are the DTLS server.
    pub fn set_answer_dtls_active(mut self, active: bool) -> Self {
        self.answer_dtls_active = active;
        self
    }

    /// How often stats events are emitted (`None`: never). Default 1 s.
    pub fn set_stats_interval(mut self, interval: Option<Duration>) -> Self {
        self.stats_interval = interval;
        self
    }

    /// The wallclock time at the `now` given to `build`, for NTP timestamps in sender
    /// reports (the `Rtc` never reads the clock itself). Without it, reports carry a
    /// consistent NTP timeline with an arbitrary origin, which is enough for RTT.
    pub fn set_ntp_reference(mut self, wallclock_at_build: SystemTime) -> Self {
        self.ntp_reference = Some(wallclock_at_build);
        self
    }

    /// How many sent packets each send stream keeps for retransmission (RTX), and for
    /// how long. Default 1024 packets, 3 s. Each kept packet costs its size in memory
    /// once the ring has filled; an SFU with many legs may want fewer.
    pub fn set_rtx_buffer(mut self, packets: usize, max_age: Duration) -> Self {
        self.rtx_buffer = (packets.max(1), max_age);
        self
    }

    /// Whether RTP mode is on.
    pub fn rtp_mode(&self) -> bool {
        self.rtp_mode
    }

    /// Builds the `Rtc`. `now` is the current time; the `Rtc` never reads a clock.
    pub fn build(self, now: Instant) -> Result<Rtc, RtcError> {
        Rtc::from_config(self, now)
    }
}

/// The most remote SSRCs one `Rtc` tracks (bounds state a peer can make us hold).
const MAX_RX_STREAMS: usize = 64;

/// How often frame mode asks for a keyframe while it cannot repair a stream.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Largest RTP payload we packetize to (leaves room for header, extensions and SRTP
/// within a 1200-byte datagram).
const MAX_RTP_PAYLOAD: usize = 1100;

/// The largest data-channel message we accept (announced in SDP).
pub(crate) const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Size of a pooled packet buffer: a full UDP datagram plus SRTP overhead room.
const BUF_SIZE: usize = 2048;

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
    ssrc: u32,
    payload_type: u8,
    seq_no: u64,
    timestamp: u32,
    marker: bool,
    buf: Vec<u8>,
    len: usize,
    payload_offset: usize,
}

/// Owned events (everything but the borrowing RTP event).
enum PendingEvent {
    Ice(IceConnectionState),
    Connected,
    Failed(FailReason),
    MediaAdded(MediaAdded),
    KeyframeRequest(KeyframeRequest),
    ChannelOpen(ChannelId, String),
    ChannelData(ChannelData),
    ChannelLow(ChannelId),
    ChannelClose(ChannelId),
    MediaData(MediaData),
    Remb(u64),
    EgressBitrateEstimate(u64),
    IngressStats(crate::event::MediaIngressStats),
    EgressStats(crate::event::MediaEgressStats),
    PeerStats(PeerStats),
}

/// Counters of one peer connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// SRTP packets decrypted successfully.
    pub srtp_packets_in: u64,
    /// SRTCP packets decrypted successfully.
    pub srtcp_packets_in: u64,
    /// SRTP/SRTCP packets that failed authentication, replay checks or parsing.
    pub srtp_errors: u64,
    /// Of `srtp_errors`: authentication failures (tampered or foreign packets).
    pub srtp_auth_failures: u64,
    /// Of `srtp_errors`: replayed or too-old packets.
    pub srtp_replays: u64,
    /// Datagrams dropped: unknown source, malformed, or not for us.
    pub dropped: u64,
    /// RTCP report packets (SR/RR) sent.
    pub reports_sent: u64,
    /// Transport-wide congestion control feedback packets sent.
    pub twcc_feedback_sent: u64,
    /// Transport-wide congestion control feedback packets received.
    pub twcc_feedback_received: u64,
}

/// A Sans-I/O WebRTC peer connection.
///
/// Drive it with [`handle_input`](Rtc::handle_input) and drain
/// [`poll_output`](Rtc::poll_output) until it returns [`Output::Timeout`] (the crate
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
///    close_notify); a DTLS failure or close by the peer, a fingerprint mismatch, or an
///    ICE failure (including lost consent) ends it otherwise, reported as
///    [`Event::Failed`](crate::Event::Failed). Either way
///    [`is_alive`](Rtc::is_alive) turns false for good: the caller stops driving the
///    `Rtc` and drops it. A new connection needs a new `Rtc`.
pub struct Rtc {
    pub(crate) config: RtcConfig,
    alive: bool,
    pub(crate) ice: IceAgent,
    pub(crate) dtls: DtlsTransport,
    srtp_tx: Option<SrtpContext>,
    srtp_rx: Option<SrtpContext>,
    srtp_profile: Option<SrtpProfileId>,
    send_path: Option<(Protocol, SocketAddr, SocketAddr)>,
    recv_sources: Vec<(Protocol, SocketAddr)>,
    ice_state: IceConnectionState,
    connected: bool,
    events: VecDeque<PendingEvent>,
    transmits: VecDeque<PendingTransmit>,
    rtp_in: VecDeque<PendingRtp>,
    pool: Vec<Vec<u8>>,
    lent: Option<Vec<u8>>,
    pub(crate) media: Vec<MediaInfo>,
    rx_streams: Vec<RxStream>,
    last_now: Instant,
    stats: PeerStats,
    pub(crate) session_id: u64,
    /// SSRCs we have sent RTP on, with their media section when known.
    tx_ssrcs: Vec<(u32, Option<Mid>)>,
    /// Sender SSRC for RTCP we originate (feedback), random per `Rtc`.
    rtcp_ssrc: u32,
    /// FIR command sequence number (RFC 5104 §4.3.1.1).
    fir_seq: u8,
    /// Data channels, once negotiated (SDP application section or direct API).
    pub(crate) sctp: Option<SctpTransport>,
    /// The mid of the negotiated data-channel section.
    pub(crate) app_mid: Option<Mid>,
    /// Send streams, one per media section we send on.
    pub(crate) tx: Vec<TxStream>,
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
    /// Send-side bandwidth estimate.
    bwe: Bwe,
    /// `twcc_rx` names a real media SSRC in its feedback.
    twcc_media_ssrc_set: bool,
    /// Our side of the last completed SDP negotiation (basis of re-offers).
    pub(crate) local_sections: Vec<crate::sdp::MediaSection>,
    /// ICE roles were fixed by a negotiation (kept until an ICE restart).
    pub(crate) ice_negotiated: bool,
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
        let cert = match &config.cert {
            Some(c) => c.clone(),
            None => DtlsCert::new_ecdsa_p256()?,
        };
        let mut ice = IceAgent::new();
        ice.set_ice_lite(config.ice_lite);
        if let Some(c) = &config.local_creds {
            ice.set_local_credentials(c.clone());
        }
        let dtls = DtlsTransport::new(cert, config.srtp_profiles.clone());
        Ok(Rtc {
            config,
            alive: true,
            ice,
            dtls,
            srtp_tx: None,
            srtp_rx: None,
            srtp_profile: None,
            send_path: None,
            recv_sources: Vec::new(),
            ice_state: IceConnectionState::New,
            connected: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            rtp_in: VecDeque::new(),
            pool: Vec::new(),
            lent: None,
            media: Vec::new(),
            rx_streams: Vec::new(),
            last_now: now,
            stats: PeerStats::default(),
            // SDP o= session ids are 63-bit positive numbers (RFC 8866 §5.2).
            session_id: rand::random::<u64>() >> 1,
            tx_ssrcs: Vec::new(),
            rtcp_ssrc: rand::random(),
            fir_seq: 0,
            sctp: None,
            app_mid: None,
            ntp: match ntp_reference {
                Some(w) => NtpClock::from_system_time(now, w),
                // 2024-01-01T00:00:00Z in NTP seconds, as an arbitrary fixed origin.
                None => NtpClock::new(now, 3_913_056_000u64 << 32),
            },
            next_report_at: now,
            next_stats_at: now,
            twcc_rx: TwccRecvRegister::new(0, 0),
            twcc_tx: TwccSendRegister::default(),
            bwe: Bwe::new(BweConfig::default()),
            twcc_media_ssrc_set: false,
            tx: Vec::new(),
            cname: format!("rtc-{:016x}", rand::random::<u64>()),
            payload_scratch: Vec::new(),
            local_sections: Vec::new(),
            ice_negotiated: false,
        })
    }

    /// Whether the connection is still usable: true from creation (also before it
    /// connects), false for good after [`disconnect`](Rtc::disconnect), a DTLS failure or
    /// close, a fingerprint mismatch, or an ICE failure (including lost consent). Once it
    /// is false the caller should stop driving the `Rtc` and drop it.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Whether ICE and DTLS are up and SRTP keys installed.
    pub fn is_connected(&self) -> bool {
        self.connected && self.alive
    }

    /// The negotiated SRTP profile, once connected.
    pub fn srtp_profile(&self) -> Option<SrtpProfileId> {
        self.srtp_profile
    }

    /// Closes the connection (sends DTLS close_notify when connected).
    pub fn disconnect(&mut self) {
        if self.alive {
            self.dtls.close();
            self.flush_dtls();
            self.alive = false;
        }
    }

    /// Adds a local candidate (e.g. a bound UDP socket's address). Returns false when
    /// it was redundant or rejected.
    pub fn add_local_candidate(&mut self, c: Candidate) -> bool {
        self.ice.add_local_candidate(c)
    }

    /// Adds a remote candidate (trickle ICE).
    pub fn add_remote_candidate(&mut self, c: Candidate) {
        self.ice.add_remote_candidate(c);
    }

    /// The local DTLS certificate fingerprint (for signalling).
    pub fn local_fingerprint(&self) -> &Fingerprint {
        self.dtls.local_fingerprint()
    }

    /// The media sections negotiated or declared so far.
    pub fn media(&self) -> impl Iterator<Item = (Mid, MediaKind)> + '_ {
        self.media.iter().map(|m| (m.mid, m.kind))
    }

    fn count_srtp_error(&mut self, e: &crate::srtp::SrtpError) {
        match e {
            crate::srtp::SrtpError::AuthFailed => self.stats.srtp_auth_failures += 1,
            crate::srtp::SrtpError::Replayed | crate::srtp::SrtpError::TooOld => {
                self.stats.srtp_replays += 1
            }
            _ => {}
        }
    }

    /// Our ICE credentials (for signalling).
    pub fn local_ice_credentials(&self) -> &IceCreds {
        self.ice.local_credentials()
    }

    /// Our local ICE candidates (for signalling).
    pub fn local_candidates(&self) -> &[Candidate] {
        self.ice.local_candidates()
    }

    /// Counters of this peer connection.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// The current ICE connection state.
    pub fn ice_connection_state(&self) -> IceConnectionState {
        self.ice_state
    }

    /// The SDP offer/answer API.
    pub fn sdp_api(&mut self) -> crate::sdp_api::SdpApi<'_> {
        crate::sdp_api::SdpApi::new(self)
    }

    /// The direct API: configure the connection without SDP.
    pub fn direct_api(&mut self) -> crate::direct::DirectApi<'_> {
        crate::direct::DirectApi::new(self)
    }

    /// Feeds input: a received datagram or the passage of time.
    pub fn handle_input(&mut self, input: Input<'_>) -> Result<(), RtcError> {
        if !self.alive {
            return Err(RtcError::NotAlive);
        }
        match input {
            Input::Timeout(now) => self.handle_timeout(now),
            Input::Receive(now, r) => {
                self.handle_timeout(now)?;
                self.handle_receive(now, r);
                Ok(())
            }
        }
    }

    /// Whether this datagram belongs to this `Rtc` (a STUN request for our ufrag, or
    /// traffic from a remote address ICE has validated). Servers demultiplexing many
    /// `Rtc` on one socket use this.
    pub fn accepts(&self, r: &Receive<'_>) -> bool {
        match Datagram::classify(r.contents) {
            Datagram::Stun => StunMessage::parse(r.contents)
                .map(|m| self.ice.accepts_message(&m))
                .unwrap_or(false),
            Datagram::Dtls | Datagram::Rtp | Datagram::Rtcp => {
                self.recv_sources.contains(&(r.proto, r.source))
            }
            _ => false,
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), RtcError> {
        if now < self.last_now {
            // Monotonic clocks do not go back; tolerate equal instants.
            return Err(RtcError::TimeWentBackwards);
        }
        self.last_now = now;
        self.ice.handle_timeout(now);
        self.dtls.handle_timeout(now);
        if self.connected
            && let Some(sctp) = self.sctp.as_mut()
        {
            sctp.handle_timeout(now);
        }
        self.handle_rtcp_timers(now);
        self.process(now);
        Ok(())
    }

    fn handle_receive(&mut self, now: Instant, r: Receive<'_>) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += r.contents.len() as u64;
        match Datagram::classify(r.contents) {
            Datagram::Stun => match StunMessage::parse(r.contents) {
                Ok(msg) if self.ice.accepts_message(&msg) => {
                    self.ice
                        .handle_packet(now, r.proto, r.source, r.destination, &msg);
                }
                _ => self.stats.dropped += 1,
            },
            Datagram::Dtls if self.known_source(&r) => {
                self.dtls.handle_packet(now, r.contents);
            }
            Datagram::Rtp if self.known_source(&r) => self.handle_rtp(r.contents),
            Datagram::Rtcp if self.known_source(&r) => self.handle_rtcp(r.contents),
            _ => self.stats.dropped += 1,
        }
        self.process(now);
    }

    fn known_source(&self, r: &Receive<'_>) -> bool {
        self.recv_sources.contains(&(r.proto, r.source))
    }

    /// A packet buffer of `BUF_SIZE` bytes from the pool (allocates only when the
    /// pool is empty, i.e. while warming up).
    fn take_buf(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.resize(BUF_SIZE, 0);
        b
    }

    /// Copies a received SRTP/SRTCP datagram into a pooled buffer, or counts a drop
    /// when no keys are installed yet or the datagram cannot fit.
    fn copy_in(&mut self, contents: &[u8]) -> Option<Vec<u8>> {
        if self.srtp_rx.is_none() || contents.len() > BUF_SIZE {
            self.stats.dropped += 1;
            return None;
        }
        let mut buf = self.take_buf();
        buf[..contents.len()].copy_from_slice(contents);
        Some(buf)
    }

    fn handle_rtp(&mut self, contents: &[u8]) {
        let Some(mut buf) = self.copy_in(contents) else {
            return;
        };
        let Some(srtp) = self.srtp_rx.as_mut() else {
            // copy_in checked that the keys are installed.
            self.pool.push(buf);
            return;
        };
        let len = match srtp.unprotect_rtp(&mut buf[..contents.len()]) {
            Ok(n) => n,
            Err(e) => {
                self.stats.srtp_errors += 1;
                self.count_srtp_error(&e);
                self.pool.push(buf);
                return;
            }
        };
        self.stats.srtp_packets_in += 1;
        let Ok(pkt) = RtpPacket::parse(&buf[..len]) else {
            self.stats.dropped += 1;
            self.pool.push(buf);
            return;
        };
        let h = pkt.header;
        let payload_offset = len - pkt.payload.len() - usize::from(pkt.padding_len);
        let mut payload_end = len - usize::from(pkt.padding_len);
        let mut len = len;
        let now = self.last_now;
        // Header extensions share one id space on a bundled transport.
        let (twcc_seq, ext_mid) = match self.media.first().map(|m| pkt.extensions(&m.extensions)) {
            Some(Ok(v)) => (v.transport_cc, v.mid.and_then(Mid::new)),
            _ => (None, None),
        };
        let ext_mid = ext_mid.filter(|m| self.media.iter().any(|x| x.mid == *m));
        if let Some(t) = twcc_seq {
            if !self.twcc_media_ssrc_set {
                // Receivers (libwebrtc) only apply feedback whose media SSRC is one of
                // the streams they send: name the first one we hear from.
                self.twcc_rx = TwccRecvRegister::new(self.rtcp_ssrc, h.ssrc);
                self.twcc_media_ssrc_set = true;
            }
            self.twcc_rx.on_packet(now, t);
        }
        let Some(mut idx) = self.rx_stream_index(h.ssrc, ext_mid) else {
            self.stats.dropped += 1;
            self.pool.push(buf);
            return;
        };
        let mut ssrc = h.ssrc;
        let mut pt = h.payload_type;
        let mut seq16 = h.sequence_number;
        {
            let st = &mut self.rx_streams[idx];
            st.packets += 1;
            st.bytes += len as u64;
            st.rate.add(now, len as u64);
            if st.mid.is_none() {
                st.mid = ext_mid;
            }
        }
        if let Some(primary) = self.rx_streams[idx].rtx_of {
            // RFC 4588: unwrap to the original packet (OSN, associated PT, primary SSRC).
            let apt = self.rx_streams[idx]
                .mid
                .and_then(|m| self.media.iter().find(|x| x.mid == m))
                .and_then(|info| info.rtx.iter().find(|(_, r)| *r == pt).map(|(p, _)| *p));
            let (Some(apt), Some(osn)) = (apt, buf.get(payload_offset..payload_offset + 2)) else {
                // Padding-only RTX probes (bandwidth probing) and unknown PTs end here.
                self.pool.push(buf);
                return;
            };
            let osn = u16::from_be_bytes([osn[0], osn[1]]);
            buf.copy_within(payload_offset + 2..len, payload_offset);
            len -= 2;
            payload_end -= 2;
            buf[1] = (buf[1] & 0x80) | apt;
            buf[2..4].copy_from_slice(&osn.to_be_bytes());
            buf[8..12].copy_from_slice(&primary.to_be_bytes());
            ssrc = primary;
            pt = apt;
            seq16 = osn;
            let mid = self.rx_streams[idx].mid;
            let Some(i) = self.rx_stream_index(primary, mid) else {
                self.pool.push(buf);
                return;
            };
            idx = i;
        }
        if payload_end <= payload_offset {
            // Padding only (bandwidth probe): nothing to deliver.
            self.pool.push(buf);
            return;
        }
        let clock_rate = self.rx_streams[idx]
            .mid
            .and_then(|m| self.media.iter().find(|x| x.mid == m))
            .and_then(|info| pt_params(info, pt))
            .map_or(90_000, |(_, c)| c);
        let st = &mut self.rx_streams[idx];
        // Extends the 16-bit sequence number (a method named unwrap, not Option::unwrap).
        let seq_no = st.seq.unwrap(seq16);
        // Extends the 32-bit RTP timestamp (not Option::unwrap).
        let time = st.time.unwrap(h.timestamp);
        st.register.update(now, seq_no, h.timestamp, clock_rate);
        st.nack.on_packet(now, seq_no);
        let mid = st.mid;
        if self.config.rtp_mode {
            self.rtp_in.push_back(PendingRtp {
                mid,
                ssrc,
                payload_type: pt,
                seq_no,
                timestamp: h.timestamp,
                marker: h.marker,
                buf,
                len,
                payload_offset,
            });
            return;
        }
        // Frame mode: depacketize into whole frames (of a known media section).
        let Some(mid) = mid else {
            self.pool.push(buf);
            return;
        };
        let params = self
            .media
            .iter()
            .find(|x| x.mid == mid)
            .and_then(|info| pt_params(info, pt));
        let Some((codec, clock_rate)) = params else {
            self.pool.push(buf);
            return;
        };
        let st = &mut self.rx_streams[idx];
        let Some(depack) = st.depacketizer(pt, &codec) else {
            self.pool.push(buf);
            return;
        };
        let meta = crate::packet::PacketMeta {
            seq: seq_no,
            time,
            marker: h.marker,
            received: now,
        };
        depack.push(meta, buf.get(payload_offset..payload_end).unwrap_or(&[]));
        let mut frames = Vec::new();
        while let Some(f) = depack.pop() {
            frames.push(f);
        }
        let wants_keyframe = depack.needs_keyframe()
            && st
                .last_keyframe_request
                .is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if wants_keyframe {
            st.last_keyframe_request = Some(now);
        }
        self.pool.push(buf);
        for f in frames {
            match f {
                Ok(f) => self.events.push_back(PendingEvent::MediaData(MediaData {
                    mid,
                    ssrc,
                    pt,
                    codec: codec.clone(),
                    clock_rate,
                    time: f.time,
                    network_time: f.received,
                    contiguous: f.contiguous,
                    keyframe: f.keyframe,
                    data: f.data,
                })),
                Err(_) => self.stats.dropped += 1,
            }
        }
        if wants_keyframe
            && self
                .media_info(mid)
                .is_some_and(|m| m.kind == MediaKind::Video)
        {
            let _ = self.request_keyframe(ssrc, KeyframeRequestKind::Pli);
        }
    }

    /// The receive stream of `ssrc`, created on first sight (bounded).
    fn rx_stream_index(&mut self, ssrc: u32, ext_mid: Option<Mid>) -> Option<usize> {
        if let Some(i) = self.rx_streams.iter().position(|s| s.ssrc == ssrc) {
            return Some(i);
        }
        if self.rx_streams.len() >= MAX_RX_STREAMS {
            return None;
        }
        let mid = self
            .media
            .iter()
            .find(|m| m.remote_ssrcs.contains(&ssrc))
            .map(|m| m.mid)
            .or(ext_mid);
        let rtx_of = self
            .media
            .iter()
            .flat_map(|m| m.remote_rtx.iter())
            .find(|(_, rtx)| *rtx == ssrc)
            .map(|(p, _)| *p);
        let mut st = RxStream::new(ssrc, mid);
        st.rtx_of = rtx_of;
        self.rx_streams.push(st);
        Some(self.rx_streams.len() - 1)
    }

    fn handle_rtcp(&mut self, contents: &[u8]) {
        let Some(mut buf) = self.copy_in(contents) else {
            return;
        };
        let Some(srtp) = self.srtp_rx.as_mut() else {
            // copy_in checked that the keys are installed.
            self.pool.push(buf);
            return;
        };
        match srtp.unprotect_rtcp(&mut buf[..contents.len()]) {
            Ok(n) => {
                self.stats.srtcp_packets_in += 1;
                let now = self.last_now;
                self.handle_rtcp_packets(now, &buf[..n]);
            }
            Err(e) => {
                self.stats.srtp_errors += 1;
                self.count_srtp_error(&e);
            }
        }
        self.pool.push(buf);
    }

    fn keyframe_requested(&mut self, ssrc: u32, kind: KeyframeRequestKind) {
        // Only streams we actually send can be asked for keyframes.
        let Some(&(_, mid)) = self.tx_ssrcs.iter().find(|(s, _)| *s == ssrc) else {
            return;
        };
        if let Some(tx) = self.tx.iter_mut().find(|t| t.ssrc == ssrc) {
            match kind {
                KeyframeRequestKind::Pli => tx.plis_received += 1,
                KeyframeRequestKind::Fir => tx.firs_received += 1,
            }
        }
        self.events
            .push_back(PendingEvent::KeyframeRequest(KeyframeRequest {
                mid,
                ssrc,
                kind,
            }));
    }

    /// Writes one RTCP packet with `write`, protects it and queues it.
    fn send_rtcp(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<usize, RtcpError>,
    ) -> Result<(), RtcError> {
        if !self.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.take_buf();
        let n = match write(&mut buf[..BUF_SIZE - 64]) {
            Ok(n) => n,
            Err(e) => {
                self.pool.push(buf);
                return Err(RtcError::Write(e.to_string()));
            }
        };
        let Some(srtp) = self.srtp_tx.as_mut() else {
            self.pool.push(buf);
            return Err(RtcError::InvalidState("no SRTP context"));
        };
        match srtp.protect_rtcp(&mut buf, n) {
            Ok(len) => self.queue_on_path(buf, len),
            Err(e) => {
                self.pool.push(buf);
                Err(RtcError::Write(e.to_string()))
            }
        }
    }

    /// Asks the peer for a keyframe on its stream `media_ssrc`.
    pub(crate) fn request_keyframe(
        &mut self,
        media_ssrc: u32,
        kind: KeyframeRequestKind,
    ) -> Result<(), RtcError> {
        let sender_ssrc = self.rtcp_ssrc;
        if let Some(st) = self.rx_streams.iter_mut().find(|s| s.ssrc == media_ssrc) {
            match kind {
                KeyframeRequestKind::Pli => st.plis_sent += 1,
                KeyframeRequestKind::Fir => st.firs_sent += 1,
            }
        }
        match kind {
            KeyframeRequestKind::Pli => self.send_rtcp(|b| {
                Pli {
                    sender_ssrc,
                    media_ssrc,
                }
                .write(b)
            }),
            KeyframeRequestKind::Fir => {
                self.fir_seq = self.fir_seq.wrapping_add(1);
                let seq = self.fir_seq;
                self.send_rtcp(|b| {
                    Fir::write_entries(
                        sender_ssrc,
                        &[FirEntry {
                            ssrc: media_ssrc,
                            seq,
                        }],
                        b,
                    )
                })
            }
        }
    }

    /// Moves ICE and DTLS outputs into our queues and reacts to their events.
    fn process(&mut self, now: Instant) {
        while let Some(t) = self.ice.poll_transmit() {
            let mut buf = self.take_buf();
            if t.contents.len() > buf.len() {
                buf.resize(t.contents.len(), 0);
            }
            buf[..t.contents.len()].copy_from_slice(&t.contents);
            self.transmits.push_back(PendingTransmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                len: t.contents.len(),
                buf,
            });
            self.ice.recycle_buffer(t.contents);
        }
        while let Some(ev) = self.ice.poll_event() {
            match ev {
                IceAgentEvent::IceConnectionStateChange(s) => {
                    self.ice_state = s;
                    self.events.push_back(PendingEvent::Ice(s));
                    match s {
                        IceConnectionState::Connected | IceConnectionState::Completed
                            if self.dtls.is_active() == Some(true) =>
                        {
                            if let Err(e) = self.dtls.start(now) {
                                self.fail(FailReason::Dtls(e));
                            }
                        }
                        IceConnectionState::Disconnected => {
                            self.fail(FailReason::IceFailed);
                        }
                        _ => {}
                    }
                }
                IceAgentEvent::NominatedSend {
                    proto,
                    source,
                    destination,
                } => {
                    self.send_path = Some((proto, source, destination));
                    if !self.recv_sources.contains(&(proto, destination)) {
                        self.recv_sources.push((proto, destination));
                    }
                }
                IceAgentEvent::DiscoveredRecv { proto, source } => {
                    if !self.recv_sources.contains(&(proto, source)) {
                        self.recv_sources.push((proto, source));
                    }
                }
            }
        }
        while let Some(ev) = self.dtls.poll_event() {
            match ev {
                DtlsEvent::Connected => {}
                DtlsEvent::SrtpKeys {
                    profile,
                    material,
                    we_are_client,
                } => {
                    let p = match profile {
                        SrtpProfileId::Aes128CmSha1_80 => SrtpProfile::Aes128CmSha1_80,
                        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
                        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
                    };
                    match SrtpContext::pair_from_keying_material(p, &material, we_are_client) {
                        Ok((tx, rx)) => {
                            self.srtp_tx = Some(tx);
                            self.srtp_rx = Some(rx);
                            self.srtp_profile = Some(profile);
                            self.connected = true;
                            self.next_report_at = now + Duration::from_millis(200);
                            if let Some(i) = self.config.stats_interval {
                                self.next_stats_at = now + i;
                            }
                            self.twcc_rx = TwccRecvRegister::new(self.rtcp_ssrc, 0);
                            self.twcc_media_ssrc_set = false;
                            self.events.push_back(PendingEvent::Connected);
                        }
                        Err(e) => self.fail(FailReason::Dtls(DtlsError::Protocol(format!(
                            "srtp keying: {e}"
                        )))),
                    }
                }
                DtlsEvent::Data(d) => {
                    if let Some(sctp) = self.sctp.as_mut()
                        && sctp.handle_input(now, &d).is_err()
                    {
                        self.stats.dropped += 1;
                    }
                }
                DtlsEvent::Closed => {
                    self.fail(FailReason::Dtls(DtlsError::Closed));
                }
                DtlsEvent::Failed(DtlsError::FingerprintMismatch) => {
                    self.fail(FailReason::FingerprintMismatch);
                }
                DtlsEvent::Failed(e) => self.fail(FailReason::Dtls(e)),
            }
        }
        self.pump_sctp(now);
        self.flush_dtls();
    }

    /// Moves SCTP packets into DTLS and SCTP events into ours (once DTLS is up).
    fn pump_sctp(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        let Some(sctp) = self.sctp.as_mut() else {
            return;
        };
        while let Some(p) = sctp.poll_transmit(now) {
            if self.dtls.send_data(&p).is_err() {
                break;
            }
        }
        while let Some(ev) = sctp.poll_event() {
            let ev = match ev {
                SctpEvent::ChannelOpen { id, label, .. } => PendingEvent::ChannelOpen(id, label),
                SctpEvent::ChannelData { id, binary, data } => {
                    PendingEvent::ChannelData(ChannelData { id, binary, data })
                }
                SctpEvent::BufferedAmountLow { id } => PendingEvent::ChannelLow(id),
                SctpEvent::ChannelClose { id } => PendingEvent::ChannelClose(id),
                _ => continue,
            };
            self.events.push_back(ev);
        }
    }

    /// Sets up the data-channel transport (idempotent). The DTLS client is the SCTP
    /// client (RFC 8841).
    pub(crate) fn ensure_sctp(&mut self, remote_max_message_size: Option<u64>) {
        let client = self.dtls.is_active() == Some(true);
        let sctp = self
            .sctp
            .get_or_insert_with(|| SctpTransport::new(client, MAX_MESSAGE_SIZE));
        if let Some(m) = remote_max_message_size {
            sctp.set_remote_max_message_size(usize::try_from(m).unwrap_or(usize::MAX));
        }
    }

    /// Opens a data channel (in-band DCEP, or pre-negotiated when `config.negotiated`
    /// is set). Channels opened before the connection is up open once it is.
    pub(crate) fn open_channel(&mut self, config: ChannelConfig) -> Result<ChannelId, RtcError> {
        let Some(sctp) = self.sctp.as_mut() else {
            return Err(RtcError::InvalidState(
                "no data-channel transport negotiated (add_channel / start_sctp)",
            ));
        };
        let id = sctp.open_channel(config).map_err(RtcError::Channel)?;
        let now = self.last_now;
        self.pump_sctp(now);
        self.flush_dtls();
        Ok(id)
    }

    /// A handle to write to a data channel. `None` when data channels are not set up.
    pub fn channel(&mut self, id: ChannelId) -> Option<Channel<'_>> {
        if self.sctp.is_some() {
            Some(Channel { rtc: self, id })
        } else {
            None
        }
    }

    fn flush_dtls(&mut self) {
        let Some((proto, source, destination)) = self.send_path else {
            return;
        };
        while let Some(p) = self.dtls.poll_transmit() {
            self.transmits.push_back(PendingTransmit {
                proto,
                source,
                destination,
                len: p.len(),
                buf: p,
            });
        }
    }

    fn fail(&mut self, reason: FailReason) {
        if self.alive {
            self.alive = false;
            self.events.push_back(PendingEvent::Failed(reason));
        }
    }

    /// Queues an already-protected datagram on the selected path (internal).
    pub(crate) fn queue_on_path(&mut self, buf: Vec<u8>, len: usize) -> Result<(), RtcError> {
        let Some((proto, source, destination)) = self.send_path else {
            self.pool.push(buf);
            return Err(RtcError::InvalidState("no ICE path selected yet"));
        };
        self.transmits.push_back(PendingTransmit {
            proto,
            source,
            destination,
            buf,
            len,
        });
        Ok(())
    }

    /// Protects and queues one RTP packet (header + payload in `packet`).
    pub(crate) fn send_rtp_packet(&mut self, packet: &[u8]) -> Result<(), RtcError> {
        if !self.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.take_buf();
        if packet.len() + 64 > buf.len() {
            self.pool.push(buf);
            return Err(RtcError::Write("packet too large".into()));
        }
        buf[..packet.len()].copy_from_slice(packet);
        // Packets on one of our send streams' SSRCs are kept for NACK/RTX.
        self.protect_and_queue(buf, packet.len(), None, true)
    }

    /// Protects the plaintext RTP packet in `buf[..len]` in place and queues it.
    /// Builds a plaintext RTP packet with `fill` in a pooled buffer, then protects
    /// and queues it (kept for RTX when it is on one of our send streams).
    pub(crate) fn send_rtp_with(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<bool, RtcError> {
        if !self.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.take_buf();
        // Leave room for the SRTP tag.
        let Some(n) = fill(&mut buf[..BUF_SIZE - 64]).filter(|&n| n <= BUF_SIZE - 64) else {
            self.pool.push(buf);
            return Ok(false);
        };
        self.protect_and_queue(buf, n, None, true).map(|()| true)
    }

    /// With `store`, the packet is also kept for RTX and counted in reports.
    fn protect_and_queue(
        &mut self,
        mut buf: Vec<u8>,
        len: usize,
        mid: Option<Mid>,
        store: bool,
    ) -> Result<(), RtcError> {
        if !self.connected {
            self.pool.push(buf);
            return Err(RtcError::InvalidState("not connected"));
        }
        if let Some(ssrc) = buf.get(8..12) {
            let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
            if !self.tx_ssrcs.iter().any(|(s, _)| *s == ssrc) {
                self.tx_ssrcs.push((ssrc, mid));
            }
            if store && let Some(tx) = self.tx.iter_mut().find(|t| t.ssrc == ssrc) {
                let now = self.last_now;
                tx.record_sent(now, &buf[..len]);
            }
        }
        let Some(srtp) = self.srtp_tx.as_mut() else {
            self.pool.push(buf);
            return Err(RtcError::InvalidState("no SRTP context"));
        };
        let len = match srtp.protect_rtp(&mut buf, len) {
            Ok(n) => n,
            Err(e) => {
                self.pool.push(buf);
                return Err(RtcError::Write(e.to_string()));
            }
        };
        self.queue_on_path(buf, len)
    }

    /// Registers a media section (SDP or direct API) and reports it; a known mid is
    /// updated in place (re-negotiation) without a new event.
    pub(crate) fn add_media_entry(&mut self, info: MediaInfo) {
        if let Some(m) = self.media.iter_mut().find(|m| m.mid == info.mid) {
            let mut info = info;
            for s in &m.remote_ssrcs {
                if !info.remote_ssrcs.contains(s) {
                    info.remote_ssrcs.push(*s);
                }
            }
            *m = info;
        } else {
            let (mid, kind) = (info.mid, info.kind);
            self.media.push(info);
            self.events
                .push_back(PendingEvent::MediaAdded(MediaAdded { mid, kind }));
        }
        let known: Vec<(u32, Mid)> = self
            .media
            .iter()
            .flat_map(|m| m.remote_ssrcs.iter().map(move |s| (*s, m.mid)))
            .collect();
        for (ssrc, mid) in known {
            for s in self.rx_streams.iter_mut().filter(|s| s.ssrc == ssrc) {
                s.mid = Some(mid);
            }
        }
    }

    /// The send stream of a media section, created on first use (and when SDP
    /// negotiation lets us send, so its SSRC is signalled).
    pub(crate) fn ensure_tx(&mut self, mid: Mid) -> &mut TxStream {
        let idx = match self.tx.iter().position(|t| t.mid == mid) {
            Some(i) => i,
            None => {
                let (packets, age) = self.config.rtx_buffer;
                let t = TxStream::new(mid, &self.cname, packets, age);
                self.tx.push(t);
                self.tx.len() - 1
            }
        };
        &mut self.tx[idx]
    }

    /// The SSRC we send with on a media section (signalled in SDP), once negotiation
    /// allowed us to send there.
    pub fn tx_ssrc(&self, mid: Mid) -> Option<u32> {
        self.tx.iter().find(|t| t.mid == mid).map(|t| t.ssrc)
    }

    /// Frame mode: a writer for a media section we may send on.
    pub fn writer(&mut self, mid: Mid) -> Option<Writer<'_>> {
        let info = self.media.iter().find(|m| m.mid == mid)?;
        if !info.direction.can_send() {
            return None;
        }
        Some(Writer { rtc: self, mid })
    }

    /// RTP mode: the send stream of a media section we may send on.
    pub fn stream_tx(&mut self, mid: Mid) -> Option<StreamTx<'_>> {
        let info = self.media.iter().find(|m| m.mid == mid)?;
        if !info.direction.can_send() {
            return None;
        }
        self.ensure_tx(mid);
        Some(StreamTx { rtc: self, mid })
    }

    /// Builds, protects and queues one RTP packet of `mid`'s send stream.
    #[allow(clippy::too_many_arguments)]
    fn send_media(
        &mut self,
        mid: Mid,
        pt: u8,
        seq: u16,
        timestamp: u32,
        marker: bool,
        ext: &ExtensionValues<'_>,
        payload: &[u8],
    ) -> Result<(), RtcError> {
        let Some(info) = self.media.iter().find(|m| m.mid == mid) else {
            return Err(RtcError::UnknownMid(mid));
        };
        let map = info.extensions.clone();
        let ssrc = self.ensure_tx(mid).ssrc;
        let mut values = *ext;
        let mid_str = mid.to_string();
        if map.id_of(Extension::Mid).is_some() {
            values.mid = Some(&mid_str);
        }
        if map.id_of(Extension::TransportSequenceNumber).is_some() {
            let now = self.last_now;
            values.transport_cc = Some(self.twcc_tx.next_seq(now, payload.len() + 40));
        }
        let header = RtpHeader {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        };
        let mut buf = self.take_buf();
        let n = match header.write(
            HeaderExtension::Values {
                map: &map,
                values: &values,
            },
            &mut buf,
        ) {
            Ok(n) => n,
            Err(e) => {
                self.pool.push(buf);
                return Err(RtcError::Write(e.to_string()));
            }
        };
        if n + payload.len() + 64 > buf.len() {
            self.pool.push(buf);
            return Err(RtcError::Write("packet too large".into()));
        }
        buf[n..n + payload.len()].copy_from_slice(payload);
        let total = n + payload.len();
        let clock_rate = self
            .media
            .iter()
            .find(|m| m.mid == mid)
            .and_then(|info| pt_params(info, pt))
            .map_or(90_000, |(_, c)| c);
        let tx = self.ensure_tx(mid);
        tx.packets += 1;
        tx.bytes += total as u64;
        tx.clock_rate = clock_rate;
        self.protect_and_queue(buf, total, Some(mid), true)
    }

    /// What was negotiated for a media section.
    pub fn media_info(&self, mid: Mid) -> Option<&MediaInfo> {
        self.media.iter().find(|m| m.mid == mid)
    }

    /// Associates a remote SSRC with a media section.
    pub(crate) fn add_remote_ssrc(&mut self, mid: Mid, ssrc: u32) {
        if let Some(m) = self.media.iter_mut().find(|m| m.mid == mid)
            && !m.remote_ssrcs.contains(&ssrc)
        {
            m.remote_ssrcs.push(ssrc);
        }
        for s in self.rx_streams.iter_mut().filter(|s| s.ssrc == ssrc) {
            s.mid = Some(mid);
        }
    }

    /// Drains output: datagrams to send, events, and finally the next timeout.
    pub fn poll_output(&mut self) -> Result<Output<'_>, RtcError> {
        if let Some(b) = self.lent.take() {
            self.pool.push(b);
        }
        if let Some(t) = self.transmits.pop_front() {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += t.len as u64;
            let len = t.len;
            let lent = self.lent.insert(t.buf);
            return Ok(Output::Transmit(Transmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                contents: &lent[..len],
            }));
        }
        if let Some(ev) = self.events.pop_front() {
            return Ok(Output::Event(match ev {
                PendingEvent::Ice(s) => Event::IceConnectionStateChange(s),
                PendingEvent::Connected => Event::Connected,
                PendingEvent::Failed(r) => Event::Failed(r),
                PendingEvent::MediaAdded(m) => Event::MediaAdded(m),
                PendingEvent::KeyframeRequest(k) => Event::KeyframeRequest(k),
                PendingEvent::ChannelOpen(id, label) => Event::ChannelOpen(id, label),
                PendingEvent::ChannelData(d) => Event::ChannelData(d),
                PendingEvent::ChannelLow(id) => Event::ChannelBufferedAmountLow(id),
                PendingEvent::ChannelClose(id) => Event::ChannelClose(id),
                PendingEvent::MediaData(d) => Event::MediaData(d),
                PendingEvent::Remb(b) => Event::Remb(b),
                PendingEvent::EgressBitrateEstimate(b) => Event::EgressBitrateEstimate(b),
                PendingEvent::IngressStats(s) => Event::MediaIngressStats(s),
                PendingEvent::EgressStats(s) => Event::MediaEgressStats(s),
                PendingEvent::PeerStats(s) => Event::PeerStats(s),
            }));
        }
        if let Some(p) = self.rtp_in.pop_front() {
            let lent = self.lent.insert(p.buf);
            return Ok(Output::Event(Event::RtpPacket(RtpPacketReceived {
                mid: p.mid,
                ssrc: p.ssrc,
                payload_type: p.payload_type,
                seq_no: p.seq_no,
                timestamp: p.timestamp,
                marker: p.marker,
                packet: &lent[..p.len],
                payload_offset: p.payload_offset,
            })));
        }
        let mut next = self.last_now + Duration::from_secs(1);
        // SCTP runs only once DTLS is up; before that its timers are not driven.
        if let Some(t) = self.rtcp_timeout() {
            next = next.min(t);
        }
        let sctp_timeout = if self.connected {
            self.sctp.as_ref().and_then(|s| s.poll_timeout())
        } else {
            None
        };
        for t in [
            self.ice.poll_timeout(),
            self.dtls.poll_timeout(),
            sctp_timeout,
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        Ok(Output::Timeout(next.max(self.last_now)))
    }
}

/// Frame-mode writer of one media section, from [`Rtc::writer`].
pub struct Writer<'a> {
    rtc: &'a mut Rtc,
    mid: Mid,
}

impl Writer<'_> {
    /// The payload types negotiated for this section (pick one to write with).
    pub fn payload_params(&self) -> impl Iterator<Item = &crate::sdp::PayloadType> + '_ {
        self.rtc
            .media
            .iter()
            .filter(|m| m.mid == self.mid)
            .flat_map(|m| m.payloads.iter())
            .filter(|p| p.codec.can_packetize())
    }

    /// Packetizes and sends one encoded frame. `media_time` is in the codec's RTP
    /// clock (90 kHz video, 48 kHz Opus), extended to 64 bits; `wallclock` is when the
    /// frame was captured.
    pub fn write(
        self,
        pt: u8,
        wallclock: Instant,
        media_time: u64,
        data: &[u8],
    ) -> Result<(), RtcError> {
        let _ = wallclock;
        let rtc = self.rtc;
        let mid = self.mid;
        let info = rtc
            .media
            .iter()
            .find(|m| m.mid == mid)
            .ok_or(RtcError::UnknownMid(mid))?;
        let (codec, _) = pt_params(info, pt).ok_or_else(|| {
            RtcError::Write(format!("payload type {pt} not negotiated for {mid}"))
        })?;
        if !codec.can_packetize() {
            return Err(RtcError::Write(format!("no packetizer for {codec:?}")));
        }
        let mut payloads = std::mem::take(&mut rtc.payload_scratch);
        payloads.clear();
        let tx = rtc.ensure_tx(mid);
        if let Err(e) = tx.packetize(pt, &codec, MAX_RTP_PAYLOAD, data, &mut payloads) {
            rtc.payload_scratch = payloads;
            return Err(RtcError::Write(e.to_string()));
        }
        let n = payloads.len();
        let mut result = Ok(());
        for (i, p) in payloads.iter().enumerate() {
            let tx = rtc.ensure_tx(mid);
            let marker = tx.is_marker(pt, p, i + 1 == n);
            let seq = tx.next_seq;
            tx.next_seq = seq.wrapping_add(1);
            result = rtc.send_media(
                mid,
                pt,
                seq,
                media_time as u32,
                marker,
                &ExtensionValues::default(),
                p,
            );
            if result.is_err() {
                break;
            }
        }
        rtc.payload_scratch = payloads;
        result
    }

    /// Asks the peer for a keyframe on the streams it sends on this section.
    pub fn request_keyframe(self, kind: KeyframeRequestKind) -> Result<(), RtcError> {
        let ssrcs: Vec<u32> = self
            .rtc
            .rx_streams
            .iter()
            .filter(|s| s.mid == Some(self.mid))
            .map(|s| s.ssrc)
            .collect();
        if ssrcs.is_empty() {
            return Err(RtcError::InvalidState("no incoming stream on this mid yet"));
        }
        for ssrc in ssrcs {
            self.rtc.request_keyframe(ssrc, kind)?;
        }
        Ok(())
    }
}

/// RTP-mode send stream of one media section, from [`Rtc::stream_tx`].
pub struct StreamTx<'a> {
    rtc: &'a mut Rtc,
    mid: Mid,
}

impl StreamTx<'_> {
    /// The SSRC this stream sends with (signalled in SDP).
    pub fn ssrc(&self) -> u32 {
        self.rtc
            .tx
            .iter()
            .find(|t| t.mid == self.mid)
            .map_or(0, |t| t.ssrc)
    }

    /// Sends one RTP packet: the header is written with this stream's SSRC and the
    /// section's negotiated extension ids (the `mid` extension is added), then the
    /// packet is protected and queued. `seq_no` is truncated to 16 bits on the wire.
    #[allow(clippy::too_many_arguments)]
    pub fn write_rtp(
        &mut self,
        pt: u8,
        seq_no: u64,
        timestamp: u32,
        wallclock: Instant,
        marker: bool,
        ext: &ExtensionValues<'_>,
        payload: &[u8],
    ) -> Result<(), RtcError> {
        let _ = wallclock;
        self.rtc
            .send_media(self.mid, pt, seq_no as u16, timestamp, marker, ext, payload)
    }
}
