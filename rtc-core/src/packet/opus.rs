//! Opus payload format (RFC 7587): one whole Opus packet per RTP payload.

use super::{CodecExtra, Depacketizer, PacketError, PacketResult, Packetizer, Payloads};

/// Opus packetizer: the frame is sent as one payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpusPacketizer;

impl Packetizer for OpusPacketizer {
    fn split_frame(&mut self, mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        // RFC 7587 §4.2: Opus packets are never fragmented.
        if frame.len() > mtu {
            return Err(PacketError::TooLarge {
                len: frame.len(),
                mtu,
            });
        }
        out.push(frame.to_vec());
        Ok(())
    }

    /// RFC 7587 §4.1 reserves the marker for the first packet after DTX, which only the
    /// caller can know; this always returns `false`.
    fn is_marker(&self, _payload: &[u8], _last: bool) -> bool {
        false
    }
}

/// Opus depacketizer: each payload is one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpusDepacketizer;

impl Depacketizer for OpusDepacketizer {
    fn depacketize(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        _extra: &mut CodecExtra,
    ) -> PacketResult {
        if payload.is_empty() {
            return Err(PacketError::EmptyPayload);
        }
        out.extend_from_slice(payload);
        Ok(())
    }

    fn is_partition_head(&self, _payload: &[u8]) -> bool {
        true
    }

    fn is_partition_tail(&self, _marker: bool, _payload: &[u8]) -> bool {
        true
    }

    fn is_keyframe(&self, _payload: &[u8]) -> bool {
        true
    }
}
