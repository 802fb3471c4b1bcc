//! Per-SSRC send and receive state of an `Rtc`, and the frame-mode glue between RTP
//! and the payloaders in [`crate::packet`].

use std::time::Instant;

use std::time::Duration;

use crate::direct::RtxOutcome;
use crate::feedback::{
    NackConfig, NackRegister, RateMeter, ReceiveRegister, ResendLimiter, RtxSendBuffer,
    SenderRegister,
};
use crate::media::{Codec, MediaInfo, Mid, Rid};
use crate::packet::{
    self, CodecDepacketizer, CodecPacketizer, DepackConfig, DepacketizingBuffer, Packetizer,
};
use crate::rtp::{SeqUnwrapper, TimestampUnwrapper};

/// Codec and clock rate negotiated for a payload type of a media section.
pub(crate) fn pt_params(info: &MediaInfo, pt: u8) -> Option<(Codec, u32)> {
    info.payloads
        .iter()
        .find(|p| p.pt == pt)
        .map(|p| (p.codec.clone(), p.clock_rate))
}

/// Receive state of one remote SSRC.
pub(crate) struct RxStream {
    pub(crate) ssrc: u32,
    pub(crate) mid: Option<Mid>,
    pub(crate) seq: SeqUnwrapper,
    pub(crate) time: TimestampUnwrapper,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    /// Frame mode: the depacketizer for the payload type in use.
    pub(crate) depack: Option<(u8, DepacketizingBuffer)>,
    /// When we last asked for a keyframe on this stream (rate limit).
    pub(crate) last_keyframe_request: Option<Instant>,
    /// RFC 3550 reception statistics (for our report blocks).
    pub(crate) register: ReceiveRegister,
    /// Gaps to NACK.
    pub(crate) nack: NackRegister,
    /// This SSRC carries RTX (RFC 4588) for the given primary SSRC.
    pub(crate) rtx_of: Option<u32>,
    /// The simulcast layer (RFC 8852 RID) this SSRC was bound to, from the `rid` or
    /// (for its RTX) `repaired-rid` header extension.
    pub(crate) rid: Option<Rid>,
    /// Position of `rid` in the section's remote RID list.
    pub(crate) layer: Option<u8>,
    /// Bound by `repaired-rid`: the RTX of layer `rid` (`rtx_of` is filled once that
    /// layer's SSRC is known).
    pub(crate) repair: bool,
    pub(crate) nacks_sent: u64,
    pub(crate) plis_sent: u64,
    pub(crate) firs_sent: u64,
    pub(crate) rate: RateMeter,
}

impl RxStream {
    pub(crate) fn new(ssrc: u32, mid: Option<Mid>) -> Self {
        RxStream {
            ssrc,
            mid,
            seq: SeqUnwrapper::default(),
            time: TimestampUnwrapper::default(),
            packets: 0,
            bytes: 0,
            depack: None,
            last_keyframe_request: None,
            register: ReceiveRegister::new(ssrc),
            nack: NackRegister::new(NackConfig::default()),
            rtx_of: None,
            rid: None,
            layer: None,
            repair: false,
            nacks_sent: 0,
            plis_sent: 0,
            firs_sent: 0,
            rate: RateMeter::new(Duration::from_secs(1), 10),
        }
    }

    /// The depacketizer for `pt`/`codec`, replaced when the payload type changes; `None`
    /// when the codec cannot be depacketized.
    pub(crate) fn depacketizer(
        &mut self,
        pt: u8,
        codec: &Codec,
    ) -> Option<&mut DepacketizingBuffer> {
        if self.depack.as_ref().is_none_or(|(p, _)| *p != pt) {
            // Wait up to ~10 frames (about 300 ms of 30 fps video) for retransmissions
            // before giving up on a frame.
            let config = DepackConfig {
                max_frames_ahead: 10,
                ..DepackConfig::default()
            };
            self.depack = Some((
                pt,
                DepacketizingBuffer::new(CodecDepacketizer::new(codec)?, config),
            ));
        }
        self.depack.as_mut().map(|(_, buffer)| buffer)
    }
}

/// Send state of one media section.
pub(crate) struct TxStream {
    pub(crate) mid: Mid,
    pub(crate) ssrc: u32,
    pub(crate) rtx_ssrc: u32,
    pub(crate) cname: String,
    pub(crate) stream_id: String,
    pub(crate) track_id: String,
    /// Next RTP sequence number (frame mode).
    pub(crate) next_seq: u16,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    packetizers: Vec<(u8, CodecPacketizer)>,
    /// Sender-report state and RTT.
    pub(crate) sender: SenderRegister,
    /// Sent packets kept for retransmission.
    pub(crate) rtx_buf: RtxSendBuffer,
    /// Whether `rtx_buf` is used (false with an external retransmission cache).
    pub(crate) keep_for_rtx: bool,
    /// De-duplication and budgets for answering NACKs.
    pub(crate) resend: ResendLimiter,
    /// Next RTX sequence number.
    pub(crate) rtx_seq: u16,
    /// RTP clock rate of what was last sent (for SR timestamps).
    pub(crate) clock_rate: u32,
    /// Highest sequence number sent, extended.
    pub(crate) highest_sent: Option<u64>,
    pub(crate) rtt: Option<Duration>,
    pub(crate) fraction_lost: u8,
    pub(crate) nacks_received: u64,
    /// Retransmissions the pacer queued.
    pub(crate) rtx_sent: u64,
    /// Retransmissions the pacer refused (duplicate, over budget, queue full).
    pub(crate) rtx_refused: u64,
    pub(crate) plis_received: u64,
    pub(crate) firs_received: u64,
    pub(crate) rate: RateMeter,
}

impl TxStream {
    /// Counts a retransmission handed to the pacer: sent when it was queued,
    /// refused when the pacer turned it away; `None` (it failed before) counts as
    /// neither.
    pub(crate) fn count_rtx(&mut self, outcome: Option<RtxOutcome>) {
        match outcome {
            Some(RtxOutcome::Queued) => self.rtx_sent += 1,
            Some(RtxOutcome::Refused(_)) => self.rtx_refused += 1,
            None => {}
        }
    }

    pub(crate) fn new(mid: Mid, cname: &str, rtx_packets: usize, rtx_age: Duration) -> Self {
        let ssrc: u32 = rand::random();
        TxStream {
            mid,
            ssrc,
            rtx_ssrc: rand::random(),
            cname: cname.to_string(),
            stream_id: format!("rtc-{:08x}", rand::random::<u32>()),
            track_id: format!("{mid}-{:08x}", rand::random::<u32>()),
            next_seq: rand::random(),
            packets: 0,
            bytes: 0,
            packetizers: Vec::new(),
            sender: SenderRegister::new(ssrc),
            rtx_buf: RtxSendBuffer::new(rtx_packets.max(1), rtx_age),
            keep_for_rtx: rtx_packets > 0,
            resend: ResendLimiter::new(),
            rtx_seq: rand::random(),
            clock_rate: 90_000,
            highest_sent: None,
            rtt: None,
            fraction_lost: 0,
            nacks_received: 0,
            rtx_sent: 0,
            rtx_refused: 0,
            plis_received: 0,
            firs_received: 0,
            rate: RateMeter::new(Duration::from_secs(1), 10),
        }
    }

    /// Records a sent RTP packet (plaintext) for reports and retransmission.
    pub(crate) fn record_sent(&mut self, now: Instant, packet: &[u8]) {
        if packet.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ext = match self.highest_sent {
            None => u64::from(seq),
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16);
                if delta < 0x8000 {
                    h + u64::from(delta)
                } else {
                    h.saturating_sub(u64::from(h as u16).wrapping_sub(u64::from(seq)) & 0xffff)
                }
            }
        };
        if self.highest_sent.is_none_or(|h| ext > h) {
            self.highest_sent = Some(ext);
        }
        if self.keep_for_rtx {
            self.rtx_buf.store(now, ext, packet);
        }
        self.sender
            .on_packet_sent(now, ts, packet.len().saturating_sub(12));
        self.rate.add(now, packet.len() as u64);
    }

    /// The extended form of a sequence number we sent recently (for NACKs).
    pub(crate) fn extend_sent_seq(&self, seq: u16) -> Option<u64> {
        let h = self.highest_sent?;
        let back = (h as u16).wrapping_sub(seq);
        if back >= 0x8000 {
            return None;
        }
        h.checked_sub(u64::from(back))
    }

    /// How this stream is signalled in SDP (`msid`, `ssrc`, FID group).
    pub(crate) fn sender(&self, with_rtx: bool) -> crate::sdp::jsep::LocalSender {
        crate::sdp::jsep::LocalSender {
            cname: self.cname.clone(),
            stream_id: self.stream_id.clone(),
            track_id: self.track_id.clone(),
            ssrc: Some(self.ssrc),
            rtx_ssrc: with_rtx.then_some(self.rtx_ssrc),
            rids: Vec::new(),
        }
    }

    /// Packetizes one frame for `pt` into payloads of at most `mtu` bytes. A codec that
    /// cannot be packetized ([`Codec::can_packetize`]) is reported as an unsupported
    /// payload type.
    pub(crate) fn packetize(
        &mut self,
        pt: u8,
        codec: &Codec,
        mtu: usize,
        frame: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), packet::PacketError> {
        let idx = match self.packetizers.iter().position(|(p, _)| *p == pt) {
            Some(i) => i,
            None => {
                let packetizer =
                    CodecPacketizer::new(codec).ok_or(packet::PacketError::Unsupported(pt))?;
                self.packetizers.push((pt, packetizer));
                self.packetizers.len() - 1
            }
        };
        self.packetizers[idx].1.packetize(mtu, frame, out)
    }

    /// Whether the marker bit goes on `payload` (the `last` of its frame).
    pub(crate) fn is_marker(&self, pt: u8, payload: &[u8], last: bool) -> bool {
        self.packetizers
            .iter()
            .find(|(p, _)| *p == pt)
            .is_some_and(|(_, pk)| pk.is_marker(payload, last))
    }
}
