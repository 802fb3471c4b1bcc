//! History of sent RTP packets and RFC 4588 retransmission packet building.

use crate::rtp::{HeaderExtension, RtpHeader, RtpPacket};
use std::time::{Duration, Instant};

/// The RTX stream fields of a retransmission (RFC 4588 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxParams {
    /// SSRC of the RTX stream.
    pub ssrc: u32,
    /// Payload type of the RTX stream (associated with the original one via `apt`).
    pub payload_type: u8,
    /// Sequence number of the RTX stream for this packet.
    pub seq: u16,
}

/// Counters of an [`RtxSendBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtxStats {
    /// Packets stored.
    pub stored: u64,
    /// Retransmissions built.
    pub rtx_packets: u64,
    /// Bytes of retransmissions built.
    pub rtx_bytes: u64,
    /// Retransmission requests for packets no longer (or never) held, or too old.
    pub misses: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    at: Option<Instant>,
    data: Vec<u8>,
}

/// Sent RTP packets by extended sequence number, for retransmission.
///
/// A ring of `capacity` reusable buffers: packet `seq` lives in slot
/// `seq % capacity`, so storing a newer packet evicts the one `capacity` numbers
/// older. Buffers grow to the largest packet stored in them and are then reused:
/// once warm, [`RtxSendBuffer::store`] does not allocate. Packets older than
/// `max_age` are not returned.
#[derive(Debug, Clone)]
pub struct RtxSendBuffer {
    slots: Box<[Entry]>,
    max_age: Duration,
    stats: RtxStats,
}

impl Default for RtxSendBuffer {
    /// 1024 packets, 3 s.
    fn default() -> Self {
        Self::new(1024, Duration::from_secs(3))
    }
}

impl RtxSendBuffer {
    /// A buffer holding up to `capacity` packets (at least 1) for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let empty = Entry {
            seq: 0,
            at: None,
            data: Vec::new(),
        };
        RtxSendBuffer {
            slots: vec![empty; capacity.max(1)].into_boxed_slice(),
            max_age,
            stats: RtxStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> RtxStats {
        self.stats
    }

    fn index(&self, seq: u64) -> usize {
        // The remainder is below slots.len(), which is a usize.
        (seq % self.slots.len() as u64) as usize
    }

    /// Stores the plaintext RTP packet `packet` sent at `now` with extended sequence
    /// number `seq`, evicting whatever occupied its slot.
    pub fn store(&mut self, now: Instant, seq: u64, packet: &[u8]) {
        let i = self.index(seq);
        if let Some(e) = self.slots.get_mut(i) {
            e.seq = seq;
            e.at = Some(now);
            e.data.clear();
            e.data.extend_from_slice(packet);
            self.stats.stored += 1;
        }
    }

    /// The stored packet `seq`, if held and not older than `max_age` at `now`.
    pub fn get(&self, now: Instant, seq: u64) -> Option<&[u8]> {
        let e = self.slots.get(self.index(seq))?;
        let at = e.at?;
        (e.seq == seq && now.saturating_duration_since(at) <= self.max_age)
            .then_some(e.data.as_slice())
    }

    /// Builds the RFC 4588 retransmission of packet `seq` into `out`: the original
    /// header (marker, timestamp, CSRCs and extension block copied) with the RTX
    /// SSRC, payload type and sequence number, then the original sequence number
    /// (OSN) and the original payload; padding is dropped. Returns the length, or
    /// `None` if the packet is not held (or too old), unparseable, or `out` is too
    /// small.
    pub fn build_rtx(
        &mut self,
        now: Instant,
        seq: u64,
        rtx: RtxParams,
        out: &mut [u8],
    ) -> Option<usize> {
        self.build(now, seq, rtx, None, out)
    }

    /// Like [`RtxSendBuffer::build_rtx`] but writes `ext` as the header extension
    /// instead of copying the original block (e.g. to put a fresh transport-wide
    /// sequence number on the retransmission).
    pub fn build_rtx_with_ext(
        &mut self,
        now: Instant,
        seq: u64,
        rtx: RtxParams,
        ext: HeaderExtension<'_>,
        out: &mut [u8],
    ) -> Option<usize> {
        self.build(now, seq, rtx, Some(ext), out)
    }

    fn build(
        &mut self,
        now: Instant,
        seq: u64,
        rtx: RtxParams,
        ext: Option<HeaderExtension<'_>>,
        out: &mut [u8],
    ) -> Option<usize> {
        let n = self
            .get(now, seq)
            .and_then(|pkt| write_rtx(pkt, rtx, ext, out));
        match n {
            Some(n) => {
                self.stats.rtx_packets += 1;
                self.stats.rtx_bytes += n as u64;
            }
            None => self.stats.misses += 1,
        }
        n
    }
}

/// Writes the RFC 4588 retransmission of the plaintext RTP packet `original` into
/// `out` (see [`RtxSendBuffer::build_rtx`]; `ext` replaces the header extension
/// block when given). `None` when `original` does not parse or `out` is too small.
pub fn write_rtx(
    original: &[u8],
    rtx: RtxParams,
    ext: Option<HeaderExtension<'_>>,
    out: &mut [u8],
) -> Option<usize> {
    let p = RtpPacket::parse(original).ok()?;
    let header = RtpHeader {
        ssrc: rtx.ssrc,
        payload_type: rtx.payload_type,
        sequence_number: rtx.seq,
        ..p.header
    };
    let ext = ext.unwrap_or(if p.header.extension {
        HeaderExtension::Raw {
            profile: p.header.ext_profile,
            data: p.extension,
        }
    } else {
        HeaderExtension::None
    });
    let h = header.write(ext, out).ok()?;
    let end = h + 2 + p.payload.len();
    let body = out.get_mut(h..end)?;
    body[..2].copy_from_slice(&p.header.sequence_number.to_be_bytes());
    body[2..].copy_from_slice(p.payload);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(seq: u16, marker: bool, payload: &[u8], padding: u8) -> Vec<u8> {
        let h = RtpHeader {
            marker,
            payload_type: 96,
            sequence_number: seq,
            timestamp: 0x0102_0304,
            ssrc: 0xaabb_ccdd,
            ..RtpHeader::default()
        };
        let mut buf = vec![0u8; 1500];
        let n = h
            .write(
                HeaderExtension::Raw {
                    profile: 0xbede,
                    data: &[0x10, 0x2a, 0, 0],
                },
                &mut buf,
            )
            .unwrap();
        buf.truncate(n);
        buf.extend_from_slice(payload);
        if padding > 0 {
            buf[0] |= 0x20;
            buf.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            buf.push(padding);
        }
        buf
    }

    #[test]
    fn rtx_packet_layout() {
        let t0 = Instant::now();
        let mut b = RtxSendBuffer::default();
        let orig = packet(0x1234, true, &[9, 8, 7], 4);
        b.store(t0, 0x1_1234, &orig);
        assert_eq!(b.get(t0, 0x1_1234), Some(&orig[..]));
        let mut out = [0u8; 100];
        let rtx = RtxParams {
            ssrc: 0x0102_0304,
            payload_type: 97,
            seq: 7,
        };
        let n = b.build_rtx(t0, 0x1_1234, rtx, &mut out).unwrap();
        let want = [
            0x90,
            0x80 | 97,
            0,
            7, // V=2 X=1, M=1 PT=97, seq 7; P cleared
            1,
            2,
            3,
            4, // timestamp copied
            1,
            2,
            3,
            4, // RTX SSRC
            0xbe,
            0xde,
            0,
            1,
            0x10,
            0x2a,
            0,
            0, // extension copied
            0x12,
            0x34, // OSN
            9,
            8,
            7, // original payload, padding dropped
        ];
        assert_eq!(&out[..n], &want);
        // Too small an output, unknown seq: None and counted.
        assert_eq!(b.build_rtx(t0, 0x1_1234, rtx, &mut out[..22]), None);
        assert_eq!(b.build_rtx(t0, 0x1235, rtx, &mut out), None);
        let s = b.stats();
        assert_eq!(
            (s.stored, s.rtx_packets, s.rtx_bytes, s.misses),
            (1, 1, 25, 2)
        );
    }

    #[test]
    fn evicts_by_count_and_age() {
        let t0 = Instant::now();
        let mut b = RtxSendBuffer::new(4, Duration::from_secs(3));
        for s in 0..6u64 {
            b.store(t0, s, &packet(s as u16, false, &[s as u8], 0));
        }
        // 0 and 1 were overwritten by 4 and 5.
        assert_eq!(b.get(t0, 0), None);
        assert_eq!(b.get(t0, 1), None);
        assert!(b.get(t0, 2).is_some());
        assert!(b.get(t0, 5).is_some());
        assert_eq!(b.get(t0, 9), None); // slot 1 holds 5, not 9
        assert!(b.get(t0 + Duration::from_secs(3), 5).is_some());
        assert_eq!(b.get(t0 + Duration::from_millis(3001), 5), None);
    }

    #[test]
    fn with_replacement_extension() {
        let t0 = Instant::now();
        let mut b = RtxSendBuffer::default();
        b.store(t0, 3, &packet(3, false, &[1], 0));
        let mut out = [0u8; 64];
        let rtx = RtxParams {
            ssrc: 5,
            payload_type: 97,
            seq: 1,
        };
        let n = b
            .build_rtx_with_ext(t0, 3, rtx, HeaderExtension::None, &mut out)
            .unwrap();
        assert_eq!(n, 12 + 2 + 1);
        assert_eq!(out[0], 0x80);
        assert_eq!(&out[12..15], &[0, 3, 1]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn rtx_round_trip(
            seq: u16, ts: u32, ssrc: u32, marker: bool, pt in 0u8..128,
            csrcs in proptest::collection::vec(any::<u32>(), 0..4),
            ext in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3)),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            padding in 0u8..8,
            rtx_ssrc: u32, rtx_pt in 0u8..128, rtx_seq: u16,
        ) {
            let mut h = RtpHeader {
                marker, payload_type: pt, sequence_number: seq, timestamp: ts, ssrc,
                ..RtpHeader::default()
            };
            h.csrc[..csrcs.len()].copy_from_slice(&csrcs);
            h.csrc_count = csrcs.len() as u8;
            let ext_data: Vec<u8> = ext.iter().flatten().flat_map(|&b| [b, 1, 2, 3]).collect();
            let hext = match &ext {
                Some(_) => HeaderExtension::Raw { profile: 0x1000, data: &ext_data },
                None => HeaderExtension::None,
            };
            let mut plain = vec![0u8; 1600];
            let hl = h.write(hext, &mut plain).unwrap();
            plain.truncate(hl);
            plain.extend_from_slice(&payload);
            let mut sent = plain.clone();
            if padding > 0 {
                sent[0] |= 0x20;
                sent.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
                sent.push(padding);
            }
            let t0 = Instant::now();
            let mut b = RtxSendBuffer::default();
            b.store(t0, u64::from(seq), &sent);
            let rtx = RtxParams { ssrc: rtx_ssrc, payload_type: rtx_pt, seq: rtx_seq };
            let mut out = vec![0u8; 1600];
            let n = b.build_rtx(t0, u64::from(seq), rtx, &mut out).unwrap();
            let p = RtpPacket::parse(&out[..n]).unwrap();
            prop_assert_eq!(p.header.ssrc, rtx_ssrc);
            prop_assert_eq!(p.header.payload_type, rtx_pt);
            prop_assert_eq!(p.header.sequence_number, rtx_seq);
            prop_assert_eq!(p.padding_len, 0);
            // Restore the original: OSN back into the header, original SSRC and PT.
            let osn = u16::from_be_bytes([p.payload[0], p.payload[1]]);
            let restored = RtpHeader { ssrc, payload_type: pt, sequence_number: osn, ..p.header };
            let rext = if p.header.extension {
                HeaderExtension::Raw { profile: p.header.ext_profile, data: p.extension }
            } else {
                HeaderExtension::None
            };
            let mut back = vec![0u8; 1600];
            let m = restored.write(rext, &mut back).unwrap();
            back.truncate(m);
            back.extend_from_slice(&p.payload[2..]);
            prop_assert_eq!(back, plain);
        }
    }
}
