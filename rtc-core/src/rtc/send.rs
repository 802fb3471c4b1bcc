//! The send side of an `Rtc`: the frame-mode [`Writer`] and RTP-mode [`StreamTx`],
//! building, protecting and queueing RTP and RTCP, and draining output.

use std::time::{Duration, Instant};

use super::{BUF_SIZE, PendingEvent, PendingTransmit, Rtc, RtcError, WriteError};
use crate::direct::{RtpWritten, RtxOutcome};
use crate::event::{Event, KeyframeRequestKind, RtpPacketReceived};
use crate::io::{Output, Transmit};
use crate::media::Mid;
use crate::rtcp::{Fir, FirEntry, Pli, RtcpError};
use crate::rtp::{Extension, ExtensionValues, HeaderExtension, RtpHeader};
use crate::streams::{TxStream, pt_params};

/// Largest RTP payload we packetize to (leaves room for header, extensions and SRTP
/// within a 1200-byte datagram).
const MAX_RTP_PAYLOAD: usize = 1100;

impl Rtc {
    /// Writes one RTCP packet with `write`, protects it and queues it.
    pub(crate) fn send_rtcp(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<usize, RtcpError>,
    ) -> Result<(), RtcError> {
        if !self.transport.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.pool.take();
        let n = match write(&mut buf[..BUF_SIZE - 64]) {
            Ok(n) => n,
            Err(e) => {
                self.pool.put(buf);
                return Err(RtcError::Write(e.into()));
            }
        };
        let Some(srtp) = self.transport.srtp_tx.as_mut() else {
            self.pool.put(buf);
            return Err(RtcError::InvalidState("no SRTP context"));
        };
        match srtp.protect_rtcp(&mut buf, n) {
            Ok(len) => self.queue_on_path(buf, len),
            Err(e) => {
                self.pool.put(buf);
                Err(RtcError::Write(e.into()))
            }
        }
    }

    /// Asks the peer for a keyframe on its stream `media_ssrc`.
    pub(crate) fn request_keyframe(
        &mut self,
        media_ssrc: u32,
        kind: KeyframeRequestKind,
    ) -> Result<(), RtcError> {
        let sender_ssrc = self.session.rtcp_ssrc;
        if let Some(st) = self
            .session
            .rx_streams
            .iter_mut()
            .find(|s| s.ssrc == media_ssrc)
        {
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
                self.session.fir_seq = self.session.fir_seq.wrapping_add(1);
                let seq = self.session.fir_seq;
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

    pub(super) fn flush_dtls(&mut self) {
        let Some((proto, source, destination)) = self.transport.send_path else {
            return;
        };
        while let Some(p) = self.transport.dtls.poll_transmit() {
            // Copied into a pooled buffer (as ICE's are): a record's own buffer would join
            // the thread's free list afterwards, which would then grow with every
            // handshake instead of holding what is in flight.
            let mut buf = self.pool.take();
            if p.len() > buf.len() {
                buf.resize(p.len(), 0);
            }
            buf[..p.len()].copy_from_slice(&p);
            self.outbox.transmits.push_back(PendingTransmit {
                proto,
                source,
                destination,
                len: p.len(),
                buf,
            });
        }
    }

    /// Queues an already-protected datagram on the selected path (internal).
    pub(crate) fn queue_on_path(&mut self, buf: Vec<u8>, len: usize) -> Result<(), RtcError> {
        let Some((proto, source, destination)) = self.transport.send_path else {
            self.pool.put(buf);
            return Err(RtcError::InvalidState("no ICE path selected yet"));
        };
        self.outbox.transmits.push_back(PendingTransmit {
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
        if !self.transport.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.pool.take();
        if packet.len() + 64 > buf.len() {
            self.pool.put(buf);
            return Err(RtcError::Write(WriteError::TooLarge));
        }
        buf[..packet.len()].copy_from_slice(packet);
        // Packets on one of our send streams' SSRCs are kept for NACK/RTX.
        self.protect_and_queue(buf, packet.len(), None, true)
            .map(|_| ())
    }

    /// Protects the plaintext RTP packet in `buf[..len]` in place and queues it.
    /// Builds a plaintext RTP packet with `fill` in a pooled buffer, then protects
    /// and queues it (kept for RTX when it is on one of our send streams).
    pub(crate) fn send_rtp_with(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<bool, RtcError> {
        if !self.transport.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let mut buf = self.pool.take();
        // Leave room for the SRTP tag.
        let Some(n) = fill(&mut buf[..BUF_SIZE - 64]).filter(|&n| n <= BUF_SIZE - 64) else {
            self.pool.put(buf);
            return Ok(false);
        };
        self.protect_and_queue(buf, n, None, true).map(|_| true)
    }

    /// Builds a plaintext RTP packet with `fill` in the caller's buffer `out` and
    /// sends it from there, protected in place, when it leaves at once (see
    /// `send_rtp_in_place`); otherwise it is copied to a pooled buffer and queued as
    /// [`Rtc::send_rtp_with`] does.
    pub(crate) fn send_rtp_with_in_place<'a>(
        &mut self,
        out: &'a mut [u8],
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<RtpWritten<'a>, RtcError> {
        if !self.transport.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        // Leave room for the SRTP tag; a packet must also fit a pooled buffer.
        let room = out.len().saturating_sub(64).min(BUF_SIZE - 64);
        let Some(n) = out.get_mut(..room).and_then(fill).filter(|&n| n <= room) else {
            return Ok(RtpWritten::Nothing);
        };
        if let Some(len) = self.send_rtp_in_place(out, n)? {
            // `send_rtp_in_place` answers `Some` only with a path selected.
            let Some((proto, source, destination)) = self.transport.send_path else {
                return Err(RtcError::InvalidState("no ICE path selected yet"));
            };
            return Ok(RtpWritten::Sent(Transmit {
                proto,
                source,
                destination,
                contents: &out[..len],
            }));
        }
        let mut buf = self.pool.take();
        buf[..n].copy_from_slice(&out[..n]);
        self.protect_and_queue(buf, n, None, true)
            .map(|_| RtpWritten::Queued)
    }

    /// With `store`, the packet is also kept for RTX and counted in reports. The
    /// packet goes through the pacer (see `pacing`), which writes its transport-wide
    /// sequence number, keeps and protects it as it leaves. Returns whether the
    /// pacer took it (see `pace_rtp`).
    pub(super) fn protect_and_queue(
        &mut self,
        buf: Vec<u8>,
        len: usize,
        mid: Option<Mid>,
        store: bool,
    ) -> Result<RtxOutcome, RtcError> {
        if !self.transport.connected {
            self.pool.put(buf);
            return Err(RtcError::InvalidState("not connected"));
        }
        if let Some(ssrc) = buf.get(8..12) {
            let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
            if !self.session.tx_ssrcs.iter().any(|(s, _)| *s == ssrc) {
                self.session.tx_ssrcs.push((ssrc, mid));
            }
        }
        self.pace_rtp(buf, len, mid, store, None)
    }

    /// The send stream of a media section, created on first use (and when SDP
    /// negotiation lets us send, so its SSRC is signalled).
    pub(crate) fn ensure_tx(&mut self, mid: Mid) -> &mut TxStream {
        let idx = match self.session.tx.iter().position(|t| t.mid == mid) {
            Some(i) => i,
            None => {
                let (packets, age) = self.config.rtx_buffer;
                let t = TxStream::new(mid, &self.session.cname, packets, age);
                self.session.tx.push(t);
                self.session.tx.len() - 1
            }
        };
        &mut self.session.tx[idx]
    }

    /// The RTX SSRC of our send stream on a media section (see [`Rtc::tx_ssrc`]).
    pub fn tx_rtx_ssrc(&self, mid: Mid) -> Option<u32> {
        self.session
            .tx
            .iter()
            .find(|t| t.mid == mid)
            .map(|t| t.rtx_ssrc)
    }

    /// The SSRC we send with on a media section (signalled in SDP), once negotiation
    /// allowed us to send there.
    pub fn tx_ssrc(&self, mid: Mid) -> Option<u32> {
        self.session
            .tx
            .iter()
            .find(|t| t.mid == mid)
            .map(|t| t.ssrc)
    }

    /// Frame mode: a writer for a media section we may send on.
    pub fn writer(&mut self, mid: Mid) -> Option<Writer<'_>> {
        let info = self.session.media.iter().find(|m| m.mid == mid)?;
        if !info.direction.can_send() {
            return None;
        }
        Some(Writer { rtc: self, mid })
    }

    /// RTP mode: the send stream of a media section we may send on.
    pub fn stream_tx(&mut self, mid: Mid) -> Option<StreamTx<'_>> {
        let info = self.session.media.iter().find(|m| m.mid == mid)?;
        if !info.direction.can_send() {
            return None;
        }
        self.ensure_tx(mid);
        Some(StreamTx { rtc: self, mid })
    }

    /// Builds, protects and queues one RTP packet of `mid`'s send stream.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_media(
        &mut self,
        mid: Mid,
        pt: u8,
        seq: u16,
        timestamp: u32,
        marker: bool,
        ext: &ExtensionValues<'_>,
        payload: &[u8],
    ) -> Result<(), RtcError> {
        let Some(info) = self.session.media.iter().find(|m| m.mid == mid) else {
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
            // A placeholder: the number is written as the packet leaves the pacer.
            values.transport_cc = Some(0);
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
        let mut buf = self.pool.take();
        let n = match header.write(
            HeaderExtension::Values {
                map: &map,
                values: &values,
            },
            &mut buf,
        ) {
            Ok(n) => n,
            Err(e) => {
                self.pool.put(buf);
                return Err(RtcError::Write(e.into()));
            }
        };
        if n + payload.len() + 64 > buf.len() {
            self.pool.put(buf);
            return Err(RtcError::Write(WriteError::TooLarge));
        }
        buf[n..n + payload.len()].copy_from_slice(payload);
        let total = n + payload.len();
        let clock_rate = self
            .session
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
            .map(|_| ())
    }

    /// Drains output: datagrams to send, events, and finally the next timeout.
    ///
    /// # Errors
    ///
    /// None at present: the `Result` is kept for API stability.
    pub fn poll_output(&mut self) -> Result<Output<'_>, RtcError> {
        if let Some(b) = self.pool.lent.take() {
            self.pool.put(b);
        }
        // Remote credentials may have arrived since the last input: start the ICE
        // connect timer so that its deadline is in the timeout returned below.
        self.check_ice_connect_timeout(self.last_now);
        if self.outbox.transmits.is_empty() {
            self.release_paced();
        }
        if let Some(t) = self.outbox.transmits.pop_front() {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += t.len as u64;
            let len = t.len;
            let lent = self.pool.lent.insert(t.buf);
            return Ok(Output::Transmit(Transmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                contents: &lent[..len],
            }));
        }
        if let Some(ev) = self.outbox.events.pop_front() {
            return Ok(Output::Event(match ev {
                PendingEvent::Ice(s) => Event::IceConnectionStateChange(s),
                PendingEvent::Connected => Event::Connected,
                PendingEvent::Failed(r) => Event::Failed(r),
                PendingEvent::MediaAdded(m) => Event::MediaAdded(m),
                PendingEvent::KeyframeRequest(k) => Event::KeyframeRequest(k),
                PendingEvent::StreamEnded(e) => Event::StreamEnded(e),
                PendingEvent::ResendRequest(r) => Event::ResendRequest(r),
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
        if let Some(p) = self.outbox.rtp_in.pop_front() {
            let lent = self.pool.lent.insert(p.buf);
            return Ok(Output::Event(Event::RtpPacket(RtpPacketReceived {
                mid: p.mid,
                rid: p.rid,
                layer: p.layer,
                ssrc: p.ssrc,
                payload_type: p.payload_type,
                seq_no: p.seq_no,
                timestamp: p.timestamp,
                marker: p.marker,
                packet: &lent[..p.len],
                payload_offset: p.payload_offset,
                red: p.red,
                ext_map: &self.session.rx_ext_map,
            })));
        }
        let mut next = self.last_now + Duration::from_secs(1);
        // SCTP runs only once DTLS is up; before that its timers are not driven.
        if let Some(t) = self.rtcp_timeout() {
            next = next.min(t);
        }
        // One timer at a time (not an array of five `Option`s folded by an iterator:
        // this runs once per leg and forwarded packet, after its transmit).
        earlier(&mut next, self.ice_connect_deadline());
        earlier(&mut next, self.transport.ice.poll_timeout());
        earlier(&mut next, self.transport.dtls.poll_timeout());
        if self.transport.connected {
            earlier(&mut next, self.sctp.as_ref().and_then(|s| s.poll_timeout()));
        }
        earlier(&mut next, self.pacing_timeout());
        Ok(Output::Timeout(next.max(self.last_now)))
    }
}

/// Moves `next` back to `t` when `t` is earlier.
#[inline]
fn earlier(next: &mut Instant, t: Option<Instant>) {
    if let Some(t) = t
        && t < *next
    {
        *next = t;
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
            .session
            .media
            .iter()
            .filter(|m| m.mid == self.mid)
            .flat_map(|m| m.payloads.iter())
            .filter(|p| p.codec.can_packetize())
    }

    /// Packetizes and sends one encoded frame. `media_time` is in the codec's RTP
    /// clock (90 kHz video, 48 kHz Opus), extended to 64 bits; `wallclock` is when the
    /// frame was captured.
    ///
    /// # Errors
    ///
    /// [`RtcError::UnknownMid`] when the section is gone; [`RtcError::Write`] when `pt`
    /// is not negotiated ([`WriteError::UnknownPayloadType`]), its codec has no
    /// packetizer ([`WriteError::NoPacketizer`]), the frame cannot be packetized or a
    /// packet not protected; [`RtcError::InvalidState`] when not connected.
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
            .session
            .media
            .iter()
            .find(|m| m.mid == mid)
            .ok_or(RtcError::UnknownMid(mid))?;
        let (codec, _) = pt_params(info, pt)
            .ok_or(RtcError::Write(WriteError::UnknownPayloadType { pt, mid }))?;
        if !codec.can_packetize() {
            return Err(RtcError::Write(WriteError::NoPacketizer(pt)));
        }
        let mut payloads = std::mem::take(&mut rtc.session.payload_scratch);
        payloads.clear();
        let tx = rtc.ensure_tx(mid);
        if let Err(e) = tx.packetize(pt, &codec, MAX_RTP_PAYLOAD, data, &mut payloads) {
            rtc.session.payload_scratch = payloads;
            return Err(RtcError::Write(e.into()));
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
        rtc.session.payload_scratch = payloads;
        result
    }

    /// Asks the peer for a keyframe on the streams it sends on this section.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when no incoming stream is known on this section yet
    /// or the connection is not up; [`RtcError::Write`] when the RTCP packet cannot be
    /// written or protected.
    pub fn request_keyframe(self, kind: KeyframeRequestKind) -> Result<(), RtcError> {
        let ssrcs: Vec<u32> = self
            .rtc
            .session
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
            .session
            .tx
            .iter()
            .find(|t| t.mid == self.mid)
            .map_or(0, |t| t.ssrc)
    }

    /// Sends one RTP packet: the header is written with this stream's SSRC and the
    /// section's negotiated extension ids (the `mid` extension is added), then the
    /// packet is protected and queued. `seq_no` is truncated to 16 bits on the wire.
    ///
    /// # Errors
    ///
    /// [`RtcError::Write`] when the header cannot be written ([`WriteError::Rtp`]), the
    /// packet is too large ([`WriteError::TooLarge`]) or SRTP protection fails;
    /// [`RtcError::InvalidState`] when not connected.
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
