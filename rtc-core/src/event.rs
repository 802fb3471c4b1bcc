//! Events an [`Rtc`](crate::Rtc) reports through [`Output::Event`](crate::Output::Event).

use crate::dtls::DtlsError;
use crate::ice::IceConnectionState;
use crate::media::{MediaKind, Mid, Rid};
use crate::rtp::{ExtensionMap, ExtensionValues, RtpPacket};
pub use crate::sctp::ChannelId;
pub use crate::stats::{MediaEgressStats, MediaIngressStats, PeerStats};

/// Something that happened inside the `Rtc`.
///
/// Events may borrow from the `Rtc` (an RTP payload, for instance); the borrow ends
/// with the next call on the `Rtc`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The ICE connection state changed.
    IceConnectionStateChange(IceConnectionState),
    /// ICE and DTLS are up and the peer's certificate matched its fingerprint:
    /// SRTP keys are installed and media may flow.
    Connected,
    /// The connection failed for good (DTLS failure, fingerprint mismatch, consent
    /// lost). The `Rtc` is no longer alive.
    Failed(FailReason),
    /// A media section was added by SDP negotiation or the direct API.
    MediaAdded(MediaAdded),
    /// RTP mode: one incoming RTP packet, decrypted and parsed.
    RtpPacket(RtpPacketReceived<'a>),
    /// Frame mode: one whole received frame (audio or video). Of a section the peer
    /// sends simulcast on, only the first layer (its first RID) is assembled; the
    /// other layers are dropped (use RTP mode to forward layers).
    MediaData(MediaData),
    /// The peer's REMB (receiver estimated maximum bitrate), in bits per second.
    Remb(u64),
    /// Our send-side bandwidth estimate changed (from transport-wide feedback), bps.
    EgressBitrateEstimate(u64),
    /// Periodic statistics of an incoming stream.
    MediaIngressStats(MediaIngressStats),
    /// Periodic statistics of an outgoing stream.
    MediaEgressStats(MediaEgressStats),
    /// Periodic counters of the whole peer connection.
    PeerStats(PeerStats),
    /// A data channel opened (either side created it).
    ChannelOpen(ChannelId, String),
    /// A message arrived on a data channel.
    ChannelData(ChannelData),
    /// The channel's buffered amount fell to or below its low-water threshold.
    ChannelBufferedAmountLow(ChannelId),
    /// A data channel closed.
    ChannelClose(ChannelId),
    /// The peer asked for a keyframe on one of the streams we send (RTCP PLI or FIR).
    KeyframeRequest(KeyframeRequest),
    /// The peer ended one of its streams (RTCP BYE, RFC 3550 §6.6) — reported once per
    /// BYE for streams this side receives.
    StreamEnded(StreamEnded),
    /// With an external retransmission cache
    /// ([`RtcConfig::set_rtx_buffer`](crate::RtcConfig::set_rtx_buffer) with 0
    /// packets): the peer asked for these packets of a stream we send, after
    /// de-duplication and the retransmission budgets. Answer each one found with
    /// [`DirectApi::write_rtx`](crate::direct::DirectApi::write_rtx).
    ResendRequest(ResendRequest),
}

/// Packets the peer wants retransmitted, from [`Event::ResendRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendRequest {
    /// The media section of the stream.
    pub mid: Mid,
    /// Our SSRC the packets were sent with.
    pub ssrc: u32,
    seqs: [u16; MAX_RESEND_SEQS],
    len: u8,
}

/// The most sequence numbers one [`ResendRequest`] carries (the per-RTT cap of
/// retransmissions of one stream).
pub const MAX_RESEND_SEQS: usize = 16;

impl ResendRequest {
    /// An empty request for `ssrc` on `mid`.
    pub(crate) fn new(mid: Mid, ssrc: u32) -> Self {
        ResendRequest {
            mid,
            ssrc,
            seqs: [0; MAX_RESEND_SEQS],
            len: 0,
        }
    }

    /// Adds a sequence number; false when full.
    pub(crate) fn push(&mut self, seq: u16) -> bool {
        match self.seqs.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = seq;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The RTP sequence numbers (as sent on the wire) to retransmit, oldest request
    /// first.
    pub fn seqs(&self) -> &[u16] {
        self.seqs.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// A frame received in frame mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaData {
    /// Media section.
    pub mid: Mid,
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// Codec of the payload type.
    pub codec: crate::packet::Codec,
    /// RTP clock rate of `time`.
    pub clock_rate: u32,
    /// Media time: the RTP timestamp extended to 64 bits.
    pub time: u64,
    /// When the last packet of the frame arrived.
    pub network_time: std::time::Instant,
    /// No frame was lost since the previous one.
    pub contiguous: bool,
    /// The frame is independently decodable.
    pub keyframe: bool,
    /// The frame (codec bitstream: Annex-B for H.264, OBUs with sizes for AV1).
    pub data: Vec<u8>,
}

/// One data-channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    /// The channel.
    pub id: ChannelId,
    /// Binary (true) or text (false) message.
    pub binary: bool,
    /// The message.
    pub data: Vec<u8>,
}

/// How a keyframe is requested (RFC 4585 PLI or RFC 5104 FIR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyframeRequestKind {
    /// Picture Loss Indication.
    Pli,
    /// Full Intra Request.
    Fir,
}

/// A keyframe request received from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeRequest {
    /// The media section of the requested stream, when known.
    pub mid: Option<Mid>,
    /// The SSRC of our outgoing stream the request is for.
    pub ssrc: u32,
    /// PLI or FIR.
    pub kind: KeyframeRequestKind,
}

/// A stream the peer sent ended: it sent an RTCP BYE for its SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnded {
    /// The media section of the stream, when known.
    pub mid: Option<Mid>,
    /// The SSRC that left.
    pub ssrc: u32,
}

/// Why the connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The DTLS handshake or session failed.
    Dtls(DtlsError),
    /// The peer's certificate does not match the signalled fingerprint.
    FingerprintMismatch,
    /// ICE failed or consent to send expired (RFC 7675).
    IceFailed,
    /// No ICE candidate pair worked within the connect timeout
    /// ([`RtcConfig::set_ice_connect_timeout`](crate::RtcConfig::set_ice_connect_timeout)).
    IceConnectTimeout,
}

/// A media section that appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAdded {
    /// Its mid.
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
}

/// An RTP packet received in RTP mode, after SRTP (and after RTX unwrapping: a
/// retransmission arrives as the original packet of its primary SSRC).
#[derive(Debug)]
pub struct RtpPacketReceived<'a> {
    /// Media section it belongs to, when it could be resolved.
    pub mid: Option<Mid>,
    /// The simulcast layer (RFC 8852 RID) the SSRC was bound to, for sections the peer
    /// sends simulcast on; `None` otherwise. Bound from the `rid` (media) or
    /// `repaired-rid` (RTX) header extension of the SSRC's first packet, so later
    /// packets without these extensions keep their layer.
    pub rid: Option<Rid>,
    /// Position of `rid` in the section's remote RID list
    /// ([`MediaInfo::remote_rids`](crate::media::MediaInfo::remote_rids), the order of
    /// the peer's `a=rid` lines, normally its `a=simulcast` order).
    pub layer: Option<u8>,
    /// The packet's SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number extended to 64 bits.
    pub seq_no: u64,
    /// RTP timestamp as sent.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// The whole decrypted RTP packet (header and payload).
    pub packet: &'a [u8],
    /// Offset of the payload in `packet`.
    pub payload_offset: usize,
    /// The payload type is the section's RED (`red/48000/2`, RFC 2198) one: the payload
    /// is a list of encodings, read with
    /// [`RedPayload::parse`](crate::rtp::red::RedPayload::parse).
    pub red: bool,
    /// The receive-side header extension ids (this peer's negotiation).
    pub(crate) ext_map: &'a ExtensionMap,
}

impl<'a> RtpPacketReceived<'a> {
    /// The payload (after the header, without padding).
    pub fn payload(&self) -> &'a [u8] {
        self.packet.get(self.payload_offset..).unwrap_or(&[])
    }

    /// The packet's header extension values (audio level and voice activity, video
    /// orientation, abs-capture-time, playout delay, the AV1 dependency descriptor,
    /// mid, rid, ...), read with the ids this peer negotiated. Parsed on each call,
    /// without allocating; empty when the packet has no (valid) extension block.
    ///
    /// To forward them, put the wanted values in the
    /// [`ExtensionValues`] given to [`StreamTx::write_rtp`](crate::StreamTx::write_rtp)
    /// (or written with [`RtpHeader::write`](crate::rtp::RtpHeader::write) and the
    /// subscriber's [`MediaInfo::extensions`](crate::media::MediaInfo::extensions)): they
    /// are written under the subscriber's own ids.
    pub fn extensions(&self) -> ExtensionValues<'a> {
        RtpPacket::parse(self.packet)
            .and_then(|p| p.extensions(self.ext_map))
            .unwrap_or_default()
    }
}

/// The last RTCP sender report of an incoming SSRC, from
/// [`Rtc::sender_report`](crate::Rtc::sender_report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReportInfo {
    /// Media section of the SSRC, when known.
    pub mid: Option<Mid>,
    /// The SSRC the report describes.
    pub ssrc: u32,
    /// Its simulcast layer, when it was bound by RID.
    pub rid: Option<Rid>,
    /// The sender's NTP time of the report (64-bit NTP format).
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_time: u32,
    /// When the report arrived (the `now` of that input).
    pub received: std::time::Instant,
}
