//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1): PT 205, FMT 15.
//!
//! Receive deltas are exposed in their wire unit of 250 µs ([`TWCC_DELTA_UNIT_US`]);
//! the reference time in its wire unit of 64 ms ([`TWCC_REFERENCE_UNIT_US`]).

use super::{PT_RTPFB, RtcpError, rd16, rd32, wr32, write_fb_header};
use crate::rtp::SeqUnwrapper;

/// Microseconds per receive-delta tick.
pub const TWCC_DELTA_UNIT_US: i64 = 250;
/// Microseconds per reference-time tick.
pub const TWCC_REFERENCE_UNIT_US: i64 = 64_000;

const FMT_TWCC: u8 = 15;
const SYM_NOT_RECEIVED: u8 = 0;
const SYM_SMALL: u8 = 1;
const SYM_LARGE: u8 = 2;
const MAX_RUN: usize = 0x1fff;

/// Status of one packet in a feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwccStatus {
    /// The packet was not received (yet).
    NotReceived,
    /// Received; delta to the previous received packet (or the reference time) in
    /// 250 µs units, 0..=255.
    Small(u8),
    /// Received; large or negative delta in 250 µs units.
    Large(i16),
}

impl TwccStatus {
    /// The receive delta in microseconds, if the packet was received.
    pub fn delta_us(self) -> Option<i64> {
        match self {
            TwccStatus::NotReceived => None,
            TwccStatus::Small(d) => Some(i64::from(d) * TWCC_DELTA_UNIT_US),
            TwccStatus::Large(d) => Some(i64::from(d) * TWCC_DELTA_UNIT_US),
        }
    }
}

/// A transport-wide feedback packet; chunks and deltas validated at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportFeedback<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
    /// Transport sequence number of the first packet reported.
    pub base_seq: u16,
    /// Number of packets reported.
    pub status_count: u16,
    /// Reference time, signed 24 bits, in 64 ms units.
    pub reference_time: i32,
    /// Feedback packet count (wrapping).
    pub fb_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// Calls `f(symbol)` for the statuses of one chunk, at most `remaining` of them.
fn chunk_symbols(chunk: u16, remaining: usize) -> (u8, usize, ChunkKind) {
    if chunk & 0x8000 == 0 {
        let sym = ((chunk >> 13) & 0x3) as u8;
        let run = usize::from(chunk & 0x1fff).min(remaining);
        (sym, run, ChunkKind::Run)
    } else if chunk & 0x4000 == 0 {
        (0, 14.min(remaining), ChunkKind::OneBit)
    } else {
        (0, 7.min(remaining), ChunkKind::TwoBit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkKind {
    Run,
    OneBit,
    TwoBit,
}

fn symbol_at(chunk: u16, kind: ChunkKind, run_sym: u8, i: usize) -> u8 {
    match kind {
        ChunkKind::Run => run_sym,
        ChunkKind::OneBit => ((chunk >> (13 - i)) & 1) as u8,
        ChunkKind::TwoBit => ((chunk >> (12 - 2 * i)) & 3) as u8,
    }
}

impl<'a> TransportFeedback<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        const W: &str = "TWCC";
        let sender_ssrc = rd32(body, 0, W)?;
        let media_ssrc = rd32(body, 4, W)?;
        let base_seq = rd16(body, 8, W)?;
        let status_count = rd16(body, 10, W)?;
        let w = rd32(body, 12, W)?;
        let reference_time = (w as i32) >> 8;
        let fb_count = w as u8;
        let mut remaining = usize::from(status_count);
        let mut at = 16;
        let mut delta_bytes = 0usize;
        while remaining > 0 {
            let chunk = rd16(body, at, W)?;
            at += 2;
            let (sym, n, kind) = chunk_symbols(chunk, remaining);
            if kind == ChunkKind::Run {
                delta_bytes += n * delta_size(sym)?;
            } else {
                for i in 0..n {
                    delta_bytes += delta_size(symbol_at(chunk, kind, sym, i))?;
                }
            }
            remaining -= n;
        }
        let chunks = body.get(16..at).ok_or(RtcpError::Malformed(W))?;
        let deltas = body
            .get(at..at + delta_bytes)
            .ok_or(RtcpError::Malformed(W))?;
        Ok(TransportFeedback {
            sender_ssrc,
            media_ssrc,
            base_seq,
            status_count,
            reference_time,
            fb_count,
            chunks,
            deltas,
        })
    }

    /// The reference time in microseconds (may be negative: it is a signed field).
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * TWCC_REFERENCE_UNIT_US
    }

    /// Iterates over `(sequence number, status)` for all `status_count` packets.
    pub fn iter(&self) -> TwccIter<'a> {
        TwccIter {
            chunks: self.chunks,
            deltas: self.deltas,
            seq: self.base_seq,
            remaining: usize::from(self.status_count),
            chunk: 0,
            kind: ChunkKind::Run,
            run_sym: 0,
            idx: 0,
            len: 0,
        }
    }

    /// Re-writes the packet as parsed (zero padding to 4 bytes with the P bit set).
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when `buf` cannot hold the packet.
    /// [`RtcpError::Unencodable`] when the contents cannot be encoded.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let used = 20 + self.chunks.len() + self.deltas.len();
        let n = finish_header(
            buf,
            used,
            self.sender_ssrc,
            self.media_ssrc,
            self.base_seq,
            self.status_count,
            self.reference_time,
            self.fb_count,
        )?;
        let c = 20 + self.chunks.len();
        buf[20..c].copy_from_slice(self.chunks);
        buf[c..used].copy_from_slice(self.deltas);
        Ok(n)
    }
}

fn delta_size(sym: u8) -> Result<usize, RtcpError> {
    match sym {
        SYM_NOT_RECEIVED => Ok(0),
        SYM_SMALL => Ok(1),
        SYM_LARGE => Ok(2),
        _ => Err(RtcpError::ReservedSymbol),
    }
}

/// Writes the common header, fixed fields and padding for a feedback whose content
/// (header included) is `used` bytes; returns the padded total length.
#[allow(clippy::too_many_arguments)]
fn finish_header(
    buf: &mut [u8],
    used: usize,
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    status_count: u16,
    reference_time: i32,
    fb_count: u8,
) -> Result<usize, RtcpError> {
    let n = used.div_ceil(4) * 4;
    let pad = n - used;
    write_fb_header(buf, FMT_TWCC, PT_RTPFB, n, sender_ssrc, media_ssrc)?;
    if pad > 0 {
        buf[0] |= 0x20;
        buf[used..n].fill(0);
        buf[n - 1] = pad as u8; // pad is 1..=3
    }
    wr32(
        buf,
        12,
        (u32::from(base_seq) << 16) | u32::from(status_count),
    );
    wr32(
        buf,
        16,
        ((reference_time as u32) << 8) | u32::from(fb_count),
    );
    Ok(n)
}

/// Iterator over the statuses of a [`TransportFeedback`].
#[derive(Debug, Clone)]
pub struct TwccIter<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    seq: u16,
    remaining: usize,
    chunk: u16,
    kind: ChunkKind,
    run_sym: u8,
    idx: usize,
    len: usize,
}

impl Iterator for TwccIter<'_> {
    type Item = (u16, TwccStatus);

    fn next(&mut self) -> Option<(u16, TwccStatus)> {
        if self.remaining == 0 {
            return None;
        }
        while self.idx >= self.len {
            let (c, rest) = self.chunks.split_first_chunk::<2>()?;
            self.chunks = rest;
            self.chunk = u16::from_be_bytes(*c);
            let (sym, n, kind) = chunk_symbols(self.chunk, self.remaining);
            self.run_sym = sym;
            self.kind = kind;
            self.len = n;
            self.idx = 0;
        }
        let sym = symbol_at(self.chunk, self.kind, self.run_sym, self.idx);
        self.idx += 1;
        let status = match sym {
            SYM_SMALL => {
                let (d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                TwccStatus::Small(*d)
            }
            SYM_LARGE => {
                let (d, rest) = self.deltas.split_first_chunk::<2>()?;
                self.deltas = rest;
                TwccStatus::Large(i16::from_be_bytes(*d))
            }
            _ => TwccStatus::NotReceived,
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.remaining -= 1;
        Some((seq, status))
    }
}

/// Builds transport-wide feedback from `(transport sequence number, arrival time)`
/// records.
///
/// Consecutive feedback packets are contiguous: each starts right after the last
/// sequence number of the previous one (leading losses are reported, unless the gap
/// exceeds 8191). A packet arriving after a feedback already reported it as not
/// received is dropped.
///
/// Records are kept sorted by extended sequence number in a reusable buffer (empty
/// until the first record, it only allocates when it grows; at most [`TwccBuilder::MAX_PENDING`] records are kept,
/// the oldest being dropped). [`TwccBuilder::write`] emits one feedback packet per
/// call, so call it until it returns `Ok(None)` to flush everything; a packet ends
/// early when the buffer is full, when an inter-arrival delta does not fit 16 bits
/// of 250 µs, or after 65535 statuses.
///
/// Chunks: a run-length chunk for runs of at least 14 equal statuses (or a run that
/// ends the packet), a 1-bit status vector when the next 14 statuses have no large
/// delta, otherwise a run-length chunk for runs of at least 7 and a 2-bit vector
/// for the rest.
#[derive(Debug, Clone)]
pub struct TwccBuilder {
    sender_ssrc: u32,
    media_ssrc: u32,
    fb_count: u8,
    unwrapper: SeqUnwrapper,
    received: Vec<(u64, u64)>,
    symbols: Vec<u8>,
    next_base: Option<u64>,
}

impl TwccBuilder {
    /// Maximum number of records kept between writes.
    pub const MAX_PENDING: usize = 1 << 14;

    /// A builder for feedback sent from `sender_ssrc` about `media_ssrc`.
    pub fn new(sender_ssrc: u32, media_ssrc: u32) -> Self {
        TwccBuilder {
            sender_ssrc,
            media_ssrc,
            fb_count: 0,
            unwrapper: SeqUnwrapper::new(),
            // Grown on first use to what the arrival rate needs (a peer that sends
            // us no media never allocates them).
            received: Vec::new(),
            symbols: Vec::new(),
            next_base: None,
        }
    }

    /// Records the arrival of transport sequence number `seq` at `arrival_us`
    /// (microseconds on any monotonic clock). Duplicates are ignored.
    pub fn record(&mut self, seq: u16, arrival_us: u64) {
        // Extends the sequence number to 64 bits (not Option::unwrap).
        let ext = self.unwrapper.unwrap(seq);
        match self.received.last() {
            Some(&(last, _)) if last >= ext => {
                if let Err(pos) = self.received.binary_search_by_key(&ext, |r| r.0) {
                    self.received.insert(pos, (ext, arrival_us));
                }
            }
            _ => self.received.push((ext, arrival_us)),
        }
        if self.received.len() > Self::MAX_PENDING {
            self.received.remove(0);
        }
    }

    /// Number of recorded arrivals not yet written.
    pub fn pending(&self) -> usize {
        self.received.len()
    }

    /// Writes the next feedback packet into `buf`. Returns `Ok(None)` when nothing
    /// is pending, and [`RtcpError::BufferTooSmall`] if not even one packet fits.
    ///
    /// # Errors
    ///
    /// [`RtcpError::BufferTooSmall`] when not even one packet's feedback fits `buf`.
    pub fn write(&mut self, buf: &mut [u8]) -> Result<Option<usize>, RtcpError> {
        // Packets older than what was already reported (late arrivals that an earlier
        // feedback reported as not received) are dropped so reports never conflict.
        if let Some(nb) = self.next_base {
            let stale = self.received.partition_point(|r| r.0 < nb);
            self.received.drain(..stale);
        }
        let Some(&(first, first_arrival)) = self.received.first() else {
            return Ok(None);
        };
        let base = match self.next_base {
            Some(nb) if nb <= first && first - nb <= MAX_RUN as u64 => nb,
            _ => first,
        };
        let ref_ticks = first_arrival / TWCC_REFERENCE_UNIT_US as u64;
        let ref_us = ref_ticks * TWCC_REFERENCE_UNIT_US as u64;
        // Largest k satisfying the status-count and delta-range limits.
        let mut k = 0;
        let mut prev = 0i64;
        for &(seq, arrival) in &self.received {
            if seq - base >= 0xffff {
                break;
            }
            let t = ticks(arrival, ref_us);
            if i16::try_from(t - prev).is_err() {
                break;
            }
            prev = t;
            k += 1;
        }
        // Shrink until the packet fits the buffer.
        loop {
            match self.encode(base, k, ref_us, ref_ticks, buf) {
                Ok(n) => {
                    let last = self.received[k - 1].0; // k >= 1 here
                    self.received.drain(..k);
                    self.next_base = Some(last + 1);
                    self.fb_count = self.fb_count.wrapping_add(1);
                    return Ok(Some(n));
                }
                Err(RtcpError::BufferTooSmall) if k > 1 => k = (k * 3 / 4).min(k - 1),
                Err(e) => return Err(e),
            }
        }
    }

    fn encode(
        &mut self,
        base: u64,
        k: usize,
        ref_us: u64,
        ref_ticks: u64,
        buf: &mut [u8],
    ) -> Result<usize, RtcpError> {
        let recs = self.received.get(..k).ok_or(RtcpError::Unencodable)?;
        let Some(&(last, _)) = recs.last() else {
            return Err(RtcpError::Unencodable);
        };
        let count = usize::try_from(last - base + 1).map_err(|_| RtcpError::TooMany)?;
        let status_count = u16::try_from(count).map_err(|_| RtcpError::TooMany)?;
        self.symbols.clear();
        self.symbols.resize(count, SYM_NOT_RECEIVED);
        let mut prev = 0i64;
        for &(seq, arrival) in recs {
            let t = ticks(arrival, ref_us);
            let d = t - prev;
            prev = t;
            // seq - base < count by construction.
            self.symbols[(seq - base) as usize] = if (0..=255).contains(&d) {
                SYM_SMALL
            } else {
                SYM_LARGE
            };
        }
        // Chunks.
        let mut at = 20;
        let syms = &self.symbols[..];
        let mut i = 0;
        while i < syms.len() {
            let s = syms[i];
            let run = syms[i..]
                .iter()
                .take(MAX_RUN)
                .take_while(|&&x| x == s)
                .count();
            let left = syms.len() - i;
            let window = &syms[i..i + left.min(14)];
            let chunk: u16 = if run >= 14 || run == left {
                i += run;
                (u16::from(s) << 13) | run as u16 // run ≤ 0x1fff
            } else if window.iter().all(|&x| x <= SYM_SMALL) {
                i += window.len();
                window
                    .iter()
                    .enumerate()
                    .fold(0x8000, |c, (j, &x)| c | (u16::from(x) << (13 - j)))
            } else if run >= 7 {
                i += run;
                (u16::from(s) << 13) | run as u16
            } else {
                let w = &syms[i..i + left.min(7)];
                i += w.len();
                w.iter()
                    .enumerate()
                    .fold(0xc000, |c, (j, &x)| c | (u16::from(x) << (12 - 2 * j)))
            };
            let o = buf.get_mut(at..at + 2).ok_or(RtcpError::BufferTooSmall)?;
            o.copy_from_slice(&chunk.to_be_bytes());
            at += 2;
        }
        // Deltas.
        let mut prev = 0i64;
        for &(_, arrival) in recs {
            let t = ticks(arrival, ref_us);
            let d = t - prev;
            prev = t;
            if (0..=255).contains(&d) {
                *buf.get_mut(at).ok_or(RtcpError::BufferTooSmall)? = d as u8;
                at += 1;
            } else {
                let d = i16::try_from(d).map_err(|_| RtcpError::Unencodable)?;
                let o = buf.get_mut(at..at + 2).ok_or(RtcpError::BufferTooSmall)?;
                o.copy_from_slice(&d.to_be_bytes());
                at += 2;
            }
        }
        // 24-bit reference time: keep the low 24 bits, sign-extended.
        let reference_time = (((ref_ticks & 0xff_ffff) as u32) << 8) as i32 >> 8;
        finish_header(
            buf,
            at,
            self.sender_ssrc,
            self.media_ssrc,
            base as u16,
            status_count,
            reference_time,
            self.fb_count,
        )
    }
}

/// Arrival time relative to the reference time, in 250 µs ticks (floor).
fn ticks(arrival: u64, ref_us: u64) -> i64 {
    let rel = i128::from(arrival) - i128::from(ref_us);
    let t = rel.div_euclid(i128::from(TWCC_DELTA_UNIT_US));
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN / 2 } else { i64::MAX / 2 })
}

#[cfg(test)]
mod tests {
    use super::super::RtcpPacket;
    use super::*;
    use proptest::prelude::*;

    fn header(status_count: u16, base: u16) -> Vec<u8> {
        let mut p = vec![0x8f, 205, 0, 0];
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&base.to_be_bytes());
        p.extend_from_slice(&status_count.to_be_bytes());
        p.extend_from_slice(&[0xff, 0xff, 0xfe, 9]); // reference time -2, fb count 9
        p
    }

    fn finish(mut p: Vec<u8>) -> Vec<u8> {
        while !p.len().is_multiple_of(4) {
            p.push(0);
        }
        p[3] = (p.len() / 4 - 1) as u8;
        p
    }

    fn parse(p: &[u8]) -> TransportFeedback<'_> {
        match RtcpPacket::iter(p).next() {
            Some(Ok(RtcpPacket::TransportFeedback(t))) => t,
            other => panic!("not twcc: {other:?}"),
        }
    }

    #[test]
    fn draft_run_length_example() {
        // §3.1.3 example: run of "packet not received" of length 221:
        // 0 | 00 | 0000011011101.
        let mut p = header(221, 100);
        p.extend_from_slice(&[0b0000_0000, 0b1101_1101]);
        let p = finish(p);
        let t = parse(&p);
        assert_eq!(t.reference_time, -2);
        assert_eq!(t.reference_time_us(), -128_000);
        assert_eq!(t.fb_count, 9);
        let v: Vec<_> = t.iter().collect();
        assert_eq!(v.len(), 221);
        assert_eq!(v[0], (100, TwccStatus::NotReceived));
        assert_eq!(v[220], (320, TwccStatus::NotReceived));
        assert!(v.iter().all(|(_, s)| *s == TwccStatus::NotReceived));
    }

    #[test]
    fn draft_status_vector_examples() {
        // §3.1.4 example 1 (1-bit symbols): 1 | 0 | 0 1 1 1 1 1 0 0 0 1 1 1 0 0
        // = 1x not received, 5x received, 3x not received, 3x received, 2x not received.
        let mut p = header(14, 65530);
        p.extend_from_slice(&[0b1001_1111, 0b0001_1100]);
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let p = finish(p);
        let t = parse(&p);
        let v: Vec<_> = t.iter().collect();
        let recv: Vec<bool> = v
            .iter()
            .map(|(_, s)| *s != TwccStatus::NotReceived)
            .collect();
        let want = [
            false, true, true, true, true, true, false, false, false, true, true, true, false,
            false,
        ];
        assert_eq!(recv, want);
        assert_eq!(v[1], (65531, TwccStatus::Small(1)));
        assert_eq!(v[11], (5, TwccStatus::Small(8))); // sequence wraps
        // Shaped after §3.1.4 example 2 (2-bit symbols): 1 | 1 | 00 10 00 00 00 01 00
        // = not received, large delta, 3x not received, small delta, not received.
        let mut p = header(7, 0);
        p.extend_from_slice(&[0b1100_1000, 0b0000_0100]);
        p.extend_from_slice(&[0xff, 0x38, 40]); // large -200, small 40
        let p = finish(p);
        let v: Vec<_> = parse(&p).iter().map(|(_, s)| s).collect();
        assert_eq!(
            v,
            vec![
                TwccStatus::NotReceived,
                TwccStatus::Large(-200),
                TwccStatus::NotReceived,
                TwccStatus::NotReceived,
                TwccStatus::NotReceived,
                TwccStatus::Small(40),
                TwccStatus::NotReceived,
            ]
        );
        assert_eq!(TwccStatus::Large(-200).delta_us(), Some(-50_000));
    }

    #[test]
    fn malformed_feedback() {
        // Deltas missing.
        let mut p = header(4, 0);
        p.extend_from_slice(&[0x20, 0x04]); // run of 4 small, only 2 bytes follow
        let p = finish(p);
        assert!(matches!(
            RtcpPacket::iter(&p).next(),
            Some(Err(RtcpError::Malformed(_)))
        ));
        // Reserved symbol 11.
        let mut p = header(2, 0);
        p.extend_from_slice(&[0x60, 0x02, 0, 0]);
        let p = finish(p);
        assert_eq!(
            RtcpPacket::iter(&p).next(),
            Some(Err(RtcpError::ReservedSymbol))
        );
        // Chunks missing.
        let p = finish(header(20, 0));
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
        // Truncated fixed part.
        let p = [0x8f, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 1];
        assert!(RtcpPacket::iter(&p).next().unwrap().is_err());
    }

    /// Decodes feedback packets back into (extended seq, arrival µs relative to the
    /// first packet's reference time) for received packets.
    fn decode_all(packets: &[Vec<u8>]) -> Vec<(u16, i64)> {
        let mut out = Vec::new();
        for p in packets {
            let t = parse(p);
            let mut time = t.reference_time_us();
            for (seq, s) in t.iter() {
                if let Some(d) = s.delta_us() {
                    time += d;
                    out.push((seq, time));
                }
            }
        }
        out
    }

    fn flush(b: &mut TwccBuilder, cap: usize) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut buf = vec![0u8; cap];
        while let Some(n) = b.write(&mut buf).unwrap() {
            v.push(buf[..n].to_vec());
        }
        v
    }

    #[test]
    fn builder_gaps_and_negative_deltas() {
        let mut b = TwccBuilder::new(1, 2);
        let t0 = 10_000_000u64; // reference time 156 * 64 ms = 9.984 s
        let arrivals = [
            (100u16, t0),
            (101, t0 + 1_000),
            (105, t0 + 3_000), // gap 102..=104
            (104, t0 + 3_500), // reordered: arrives after 105
            (103, t0 + 2_000),
            (106, t0 + 100_000), // large positive delta (> 63.75 ms)
            (107, t0 + 50_000),  // negative delta
        ];
        for (s, t) in arrivals {
            b.record(s, t);
        }
        let pkts = flush(&mut b, 1500);
        assert_eq!(pkts.len(), 1);
        let t = parse(&pkts[0]);
        assert_eq!(t.base_seq, 100);
        assert_eq!(t.status_count, 8);
        assert_eq!(t.reference_time, 156);
        let st: Vec<_> = t.iter().map(|(_, s)| s).collect();
        assert_eq!(
            st,
            vec![
                TwccStatus::Small(64), // 16 ms after the reference time
                TwccStatus::Small(4),
                TwccStatus::NotReceived,
                TwccStatus::Small(4),
                TwccStatus::Small(6),
                TwccStatus::Large(-2),
                TwccStatus::Large(388),
                TwccStatus::Large(-200),
            ]
        );
        let mut want: Vec<(u16, i64)> = arrivals.iter().map(|&(s, t)| (s, t as i64)).collect();
        want.sort();
        assert_eq!(decode_all(&pkts), want);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.write(&mut [0u8; 100]), Ok(None));
    }

    #[test]
    fn builder_splits_and_reports_leading_losses() {
        let mut b = TwccBuilder::new(1, 2);
        for i in 0..300u16 {
            if i % 3 != 0 {
                b.record(i.wrapping_add(65_400), 1_000_000 + u64::from(i) * 1_000);
            }
        }
        // A small buffer forces several packets.
        let pkts = flush(&mut b, 120);
        assert!(pkts.len() > 2, "{}", pkts.len());
        for p in &pkts {
            assert!(p.len() <= 120);
        }
        let got: Vec<u16> = decode_all(&pkts).iter().map(|x| x.0).collect();
        let want: Vec<u16> = (0..300u16)
            .filter(|i| i % 3 != 0)
            .map(|i| i.wrapping_add(65_400))
            .collect();
        assert_eq!(got, want);
        // Packets are contiguous: each base follows the previous packet's last seq.
        let mut next: Option<u16> = None;
        for p in &pkts {
            let t = parse(p);
            if let Some(n) = next {
                assert_eq!(t.base_seq, n);
            }
            next = Some(t.base_seq.wrapping_add(t.status_count));
        }
        // Packet counts increase.
        let counts: Vec<u8> = pkts.iter().map(|p| parse(p).fb_count).collect();
        assert_eq!(counts, (0..pkts.len() as u8).collect::<Vec<_>>());
        assert_eq!(b.write(&mut [0u8; 10]), Ok(None), "everything was flushed");
        b.record(170, 0); // after the last reported sequence number (164)
        assert_eq!(b.write(&mut [0u8; 20]), Err(RtcpError::BufferTooSmall));
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn builder_drops_late_packets_and_reports_leading_losses() {
        let mut b = TwccBuilder::new(1, 2);
        for i in 0..10u16 {
            b.record(i, 1_000_000 + u64::from(i) * 1_000);
        }
        let first = flush(&mut b, 1500);
        assert_eq!(first.len(), 1);
        b.record(5, 1_050_000); // late: already reported
        b.record(12, 1_060_000);
        let second = flush(&mut b, 1500);
        assert_eq!(second.len(), 1);
        let t = parse(&second[0]);
        assert_eq!((t.base_seq, t.status_count), (10, 3));
        let st: Vec<_> = t.iter().collect();
        assert_eq!(st[0], (10, TwccStatus::NotReceived));
        assert_eq!(st[1], (11, TwccStatus::NotReceived));
        assert!(matches!(st[2], (12, TwccStatus::Small(_))));
        assert_eq!(t.fb_count, 1);
    }

    #[test]
    fn builder_uses_run_length_for_long_runs() {
        let mut b = TwccBuilder::new(1, 2);
        for i in 0..100u16 {
            b.record(i, 64_000 + u64::from(i) * 250);
        }
        let pkts = flush(&mut b, 1500);
        assert_eq!(pkts.len(), 1);
        // 20 header + one run chunk (2) + 100 one-byte deltas, padded.
        assert_eq!(pkts[0].len(), 124);
        assert_eq!(&pkts[0][20..22], &[0x20, 100]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn builder_round_trip(
            start: u16,
            steps in proptest::collection::vec((1u16..20, -70_000i64..200_000), 1..300),
            cap in 60usize..1500,
        ) {
            let mut b = TwccBuilder::new(7, 8);
            let mut seq = start;
            let mut t: i64 = 5_000_000_000;
            let mut want = Vec::new();
            for (gap, dt) in steps {
                seq = seq.wrapping_add(gap);
                t += dt;
                b.record(seq, t as u64);
                want.push((seq, t));
            }
            let pkts = flush(&mut b, cap);
            let mut got = Vec::new();
            for p in &pkts {
                let tf = parse(p);
                let mut time = tf.reference_time_us();
                for (s, st) in tf.iter() {
                    if let Some(d) = st.delta_us() { time += d; got.push((s, time)); }
                }
                // Re-serialising gives identical bytes.
                let mut out = [0u8; 1600];
                let n = tf.write(&mut out).unwrap();
                prop_assert_eq!(&out[..n], &p[..]);
            }
            prop_assert_eq!(got.len(), want.len());
            // Times are exact up to 250 µs flooring, relative to each packet's
            // reference time, which the 24-bit field keeps modulo 2^24 * 64 ms.
            for (p_i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert_eq!(g.0, w.0, "seq at {}", p_i);
                let wrap = (1i64 << 24) * 64_000;
                let diff = (w.1 - g.1).rem_euclid(wrap);
                prop_assert!((0..250).contains(&diff), "time at {}: {} vs {}", p_i, g.1, w.1);
            }
        }
    }
}
