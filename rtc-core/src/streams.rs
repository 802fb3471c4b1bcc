//! Per-SSRC send and receive state of an `Rtc`, and the frame-mode glue between RTP
//! and the payloaders in [`crate::packet`].

use std::time::Instant;

use crate::media::{MediaInfo, Mid};
use crate::packet::{self, CodecPacketizer, DepackConfig, DepacketizingBuffer, Packetizer};
use crate::rtp::{SeqUnwrapper, TimestampUnwrapper};
use crate::sdp::Codec;

/// The payloader codec for an SDP codec, when we can (de)packetize it.
pub(crate) fn packet_codec(c: &Codec) -> Option<packet::Codec> {
    match c {
        Codec::Opus => Some(packet::Codec::Opus),
        Codec::Vp8 => Some(packet::Codec::Vp8),
        Codec::Vp9 => Some(packet::Codec::Vp9),
        Codec::H264 => Some(packet::Codec::H264),
        Codec::Av1 => Some(packet::Codec::Av1),
        _ => None,
    }
}

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
        }
    }

    /// The depacketizer for `pt`/`codec`, replaced when the payload type changes.
    pub(crate) fn depacketizer(
        &mut self,
        pt: u8,
        codec: packet::Codec,
    ) -> &mut DepacketizingBuffer {
        if self.depack.as_ref().is_none_or(|(p, _)| *p != pt) {
            self.depack = Some((pt, DepacketizingBuffer::new(codec, DepackConfig::default())));
        }
        // Just ensured it is Some.
        &mut self.depack.as_mut().expect("depacketizer set above").1
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
}

impl TxStream {
    pub(crate) fn new(mid: Mid, cname: &str) -> Self {
        TxStream {
            mid,
            ssrc: rand::random(),
            rtx_ssrc: rand::random(),
            cname: cname.to_string(),
            stream_id: format!("rtc-{:08x}", rand::random::<u32>()),
            track_id: format!("{mid}-{:08x}", rand::random::<u32>()),
            next_seq: rand::random(),
            packets: 0,
            bytes: 0,
            packetizers: Vec::new(),
        }
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

    /// Packetizes one frame for `pt` into payloads of at most `mtu` bytes.
    pub(crate) fn packetize(
        &mut self,
        pt: u8,
        codec: packet::Codec,
        mtu: usize,
        frame: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), packet::PacketError> {
        let idx = match self.packetizers.iter().position(|(p, _)| *p == pt) {
            Some(i) => i,
            None => {
                self.packetizers.push((pt, codec.packetizer()));
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
