//! Statistics an [`Rtc`](crate::Rtc) reports: per peer connection and per stream.
//!
//! A leaf module: [`crate::event`] and the `Rtc` both use these types.

use crate::media::Mid;

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
    /// RTP packets the pacer discarded because its queue was over its time budget
    /// (oldest padding, then video first).
    pub paced_dropped: u64,
    /// RTP packets not sent because SRTP refused to protect them: their
    /// (SSRC, sequence number) was already sent (a duplicate written twice) or is
    /// too old; protecting again would reuse a keystream.
    pub send_refused: u64,
    /// The DTLS version of the connection, once its keys are established.
    pub dtls_version: Option<crate::dtls::DtlsVersion>,
}
/// Statistics of one incoming stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaIngressStats {
    /// Media section.
    pub mid: Mid,
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Packets received.
    pub packets: u64,
    /// Bytes received (RTP, after SRTP).
    pub bytes: u64,
    /// Cumulative packets lost (RFC 3550).
    pub lost: i64,
    /// Interarrival jitter in RTP units.
    pub jitter: u32,
    /// NACK packets we sent.
    pub nacks_sent: u64,
    /// PLIs we sent.
    pub plis_sent: u64,
    /// FIRs we sent.
    pub firs_sent: u64,
    /// Receive bitrate over the last second.
    pub bitrate_bps: u64,
}

/// Statistics of one outgoing stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaEgressStats {
    /// Media section.
    pub mid: Mid,
    /// Our SSRC.
    pub ssrc: u32,
    /// Packets sent (RTX excluded).
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// NACK packets received.
    pub nacks_received: u64,
    /// Retransmissions sent: those the pacer queued (RTX, or on the media SSRC when
    /// RTX is not negotiated).
    pub rtx_sent: u64,
    /// Retransmissions the pacer refused (already resent within a round trip,
    /// retransmission budget spent, queue full): nothing went out for them.
    pub rtx_refused: u64,
    /// PLIs received.
    pub plis_received: u64,
    /// FIRs received.
    pub firs_received: u64,
    /// Round-trip time from the peer's last report, if any.
    pub rtt: Option<std::time::Duration>,
    /// Fraction lost the peer last reported (1/256 units).
    pub fraction_lost: u8,
    /// Send bitrate over the last second.
    pub bitrate_bps: u64,
}
