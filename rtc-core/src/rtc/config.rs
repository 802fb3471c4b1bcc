//! [`RtcConfig`]: how an [`Rtc`] is configured before it is built.

use std::time::{Duration, Instant, SystemTime};

use super::{Rtc, RtcError};
use crate::dtls::{DtlsCert, DtlsVersions, SrtpProfileId};
use crate::ice::IceCreds;
use crate::pacer::PacerConfig;
use crate::sdp::OpusRed;

/// Default of [`RtcConfig::set_ice_connect_timeout`].
const DEFAULT_ICE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub(crate) ice_connect_timeout: Option<Duration>,
    pub(crate) pacing: bool,
    pub(crate) pacer: PacerConfig,
    pub(crate) opus_red: OpusRed,
    pub(crate) dtls_versions: DtlsVersions,
    pub(crate) probe_redundancy: bool,
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
            ice_connect_timeout: Some(DEFAULT_ICE_CONNECT_TIMEOUT),
            pacing: false,
            pacer: PacerConfig::default(),
            opus_red: OpusRed::Off,
            dtls_versions: DtlsVersions::Auto,
            probe_redundancy: true,
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

    /// RTP mode: incoming packets surface as [`Event::RtpPacket`](crate::Event::RtpPacket) and media is
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
    /// The DTLS server chooses: `dimpl`'s DTLS 1.2 server by a fixed preference
    /// (AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES_CM_128_HMAC_SHA1_80), its DTLS 1.3 server
    /// by the client's order (see [`crate::dtls`]); this list filters: a handshake that
    /// lands on a profile not listed fails.
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
    ///
    /// `packets == 0` means an *external* cache: the `Rtc` keeps nothing, and a NACK
    /// (after the same de-duplication and budgets as with the internal buffer)
    /// surfaces as [`Event::ResendRequest`](crate::Event::ResendRequest); the
    /// application answers from its own cache with
    /// [`DirectApi::write_rtx`](crate::direct::DirectApi::write_rtx). What an SFU
    /// with one cache per publisher layer wants. `max_age` is then unused.
    pub fn set_rtx_buffer(mut self, packets: usize, max_age: Duration) -> Self {
        self.rtx_buffer = (packets, max_age);
        self
    }

    /// Whether retransmissions come from an external cache (`set_rtx_buffer(0, _)`).
    pub(crate) fn external_rtx(&self) -> bool {
        self.rtx_buffer.0 == 0
    }

    /// How long ICE may take to find a working candidate pair (default 30 s; `None`:
    /// wait forever).
    ///
    /// The clock starts when the `Rtc` first sees the peer's ICE credentials (from an
    /// SDP offer or answer, or
    /// [`DirectApi::set_remote_ice_credentials`](crate::direct::DirectApi::set_remote_ice_credentials)):
    /// at the `now` of the
    /// first input, or of the latest input when polled, after they were set. An `Rtc`
    /// that never learns them never times out this way. If no candidate pair
    /// succeeded (no path was nominated) by then, the `Rtc` fails with
    /// [`FailReason::IceConnectTimeout`](crate::event::FailReason::IceConnectTimeout):
    /// [`Event::Failed`](crate::Event::Failed) is emitted and
    /// [`Rtc::is_alive`] turns false. The deadline is part of the timeout
    /// [`Rtc::poll_output`] returns, so a caller driving only timeouts sees it. Once a
    /// pair has worked, this timeout no longer applies (consent freshness takes over).
    pub fn set_ice_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.ice_connect_timeout = timeout;
        self
    }

    /// Send pacing (default off): outgoing RTP leaves through a leaky bucket at the
    /// pacer's multiple of the target rate ([`Rtc::set_send_rate`], else the
    /// bandwidth estimate), audio and retransmissions ahead of video, and bandwidth
    /// probes pad the sent rate. Off, RTP is sent as soon as it is written and no
    /// probes run. Packets pass unpaced anyway while there is no rate to pace to: no
    /// target set and nothing sent with a transport-wide sequence number yet (the
    /// estimate would not measure it).
    ///
    /// Off by default because pacing only helps a sender that follows the rate it is
    /// given: an application writing at a fixed rate above the estimate would see its
    /// packets wait, then be dropped at the queue's time budget (never sent, so never
    /// repairable). Turn it on when the encoder follows
    /// [`Event::EgressBitrateEstimate`](crate::Event::EgressBitrateEstimate) or the
    /// application sets [`Rtc::set_send_rate`].
    pub fn set_pacing(mut self, enabled: bool) -> Self {
        self.pacing = enabled;
        self
    }

    /// Whether bandwidth probes may re-send recent packets as RTX (default true); when
    /// false, probes are padding-only packets on the RTX stream. An SFU turns it off:
    /// its receivers would see the redundant copies as packets received twice (an RTX
    /// copy is unwrapped to the media stream), and its legs may hold no RTX ring.
    pub fn set_probe_redundancy(mut self, enabled: bool) -> Self {
        self.probe_redundancy = enabled;
        self
    }

    /// The pacer's configuration: rate multiplier, burst, queue time budget and
    /// per-class capacities (default [`PacerConfig::default`]).
    pub fn set_pacer_config(mut self, config: PacerConfig) -> Self {
        self.pacer = config;
        self
    }

    /// Opus RED (`red/48000/2`, RFC 2198) negotiation: [`OpusRed::Prefer`] answers it
    /// first (a browser then sends RED), [`OpusRed::Accept`] after Opus,
    /// [`OpusRed::Off`] (default) never. Received RED packets are flagged
    /// ([`RtpPacketReceived::red`](crate::event::RtpPacketReceived::red)); frame mode
    /// does not assemble them (RED is for RTP mode, e.g. an SFU).
    pub fn set_opus_red(mut self, red: OpusRed) -> Self {
        self.opus_red = red;
        self
    }

    /// Which DTLS versions the handshake may use (default [`DtlsVersions::Auto`]: 1.3
    /// when the peer offers or accepts it, else 1.2). The version chosen is reported by
    /// [`Rtc::dtls_version`].
    pub fn set_dtls_versions(mut self, versions: DtlsVersions) -> Self {
        self.dtls_versions = versions;
        self
    }

    /// Whether RTP mode is on.
    pub fn rtp_mode(&self) -> bool {
        self.rtp_mode
    }

    /// Builds the `Rtc`. `now` is the current time; the `Rtc` never reads a clock.
    ///
    /// # Errors
    ///
    /// [`RtcError::Dtls`] when no certificate was given and generating one fails.
    pub fn build(self, now: Instant) -> Result<Rtc, RtcError> {
        Rtc::from_config(self, now)
    }
}
