//! The receive side of an `Rtc`: input dispatch (STUN, DTLS, SRTP, SRTCP), ICE and
//! DTLS event handling, and the RTP receive path (unprotect, transport-wide
//! sequence record, RTX unwrap, stream lookup, then an RTP-mode event or frame
//! assembly with keyframe bookkeeping).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::plain::Protection;
use super::{
    BUF_SIZE, KEYFRAME_REQUEST_INTERVAL, MAX_RX_STREAMS, PendingEvent, PendingRtp, PendingTransmit,
    Rtc, RtcError,
};
use crate::demux::Datagram;
use crate::dtls::{DtlsError, DtlsEvent, SrtpProfileId};
use crate::event::{FailReason, KeyframeRequest, KeyframeRequestKind, MediaData};
use crate::feedback::TwccRecvRegister;
use crate::ice::{IceAgentEvent, IceConnectionState};
use crate::io::{Input, Protocol, Receive};
use crate::media::{MediaKind, Mid, Rid};
use crate::rtp::RtpPacket;
use crate::srtp::{SrtpContext, SrtpProfile};
use crate::streams::{RxStream, pt_params};
use crate::stun::StunMessage;

/// A decrypted RTP packet in a pooled buffer, on its way through the receive path.
struct RxRtp {
    buf: Vec<u8>,
    /// Length of the plaintext packet in `buf`.
    len: usize,
    payload_offset: usize,
    /// End of the payload (before any padding).
    payload_end: usize,
    ssrc: u32,
    pt: u8,
    seq16: u16,
    timestamp: u32,
    marker: bool,
}

/// The identifiers in a received packet's header extensions that bind an SSRC to a
/// media section and simulcast layer (validated: `mid` names a known section).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RxIds {
    pub(super) mid: Option<Mid>,
    pub(super) rid: Option<Rid>,
    pub(super) rrid: Option<Rid>,
}

/// Keyframe bookkeeping: whether a new keyframe request is due on `st` (at most one
/// per `KEYFRAME_REQUEST_INTERVAL`); records it when it is.
pub(super) fn keyframe_request_due(st: &mut RxStream, now: Instant) -> bool {
    let due = st
        .last_keyframe_request
        .is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
    if due {
        st.last_keyframe_request = Some(now);
    }
    due
}

impl Rtc {
    /// Feeds input: a received datagram or the passage of time.
    ///
    /// # Errors
    ///
    /// [`RtcError::NotAlive`] once the `Rtc` is closed or failed;
    /// [`RtcError::TimeWentBackwards`] when `now` is earlier than a previous input's.
    /// Bad datagrams are no error: they are dropped and counted in
    /// [`PeerStats`](crate::PeerStats).
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
            Input::ReceiveArrived {
                now,
                arrival,
                receive,
            } => {
                self.handle_timeout(now)?;
                self.rx_arrival = Some(arrival.min(now));
                self.handle_receive(now, receive);
                self.rx_arrival = None;
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
                .map(|m| self.transport.ice.accepts_message(&m))
                .unwrap_or(false),
            Datagram::Dtls | Datagram::Rtp | Datagram::Rtcp => {
                self.transport.recv_sources.contains(&(r.proto, r.source))
            }
            _ => false,
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) -> Result<(), RtcError> {
        if now < self.last_now {
            // Monotonic clocks do not go back; tolerate equal instants.
            return Err(RtcError::TimeWentBackwards);
        }
        self.last_now = now;
        self.transport.ice.handle_timeout(now);
        self.transport.dtls.handle_timeout(now);
        if self.transport.connected
            && let Some(sctp) = self.sctp.as_mut()
        {
            sctp.handle_timeout(now);
        }
        self.handle_rtcp_timers(now);
        self.process(now);
        Ok(())
    }

    pub(super) fn handle_receive(&mut self, now: Instant, r: Receive<'_>) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += r.contents.len() as u64;
        match Datagram::classify(r.contents) {
            Datagram::Stun => match StunMessage::parse(r.contents) {
                Ok(msg) if self.transport.ice.accepts_message(&msg) => {
                    self.transport
                        .ice
                        .handle_packet(now, r.proto, r.source, r.destination, &msg);
                }
                _ => self.stats.dropped += 1,
            },
            Datagram::Dtls if self.known_source(&r) => {
                // Before SRTP keys exist nothing stronger than DTLS can vouch for a path;
                // after, an application-data record (data channels) that decrypts does.
                if self.transport.srtp_rx.is_none() {
                    self.authenticated_from(r.proto, r.source);
                }
                let before = self.transport.dtls.app_records();
                self.transport.dtls.handle_packet(now, r.contents);
                if self.transport.dtls.app_records() != before {
                    self.authenticated_from(r.proto, r.source);
                }
            }
            Datagram::Rtp if self.known_source(&r) => {
                let before = self.stats.srtp_packets_in;
                self.handle_rtp(r.contents);
                if self.stats.srtp_packets_in != before {
                    self.authenticated_from(r.proto, r.source);
                }
            }
            Datagram::Rtcp if self.known_source(&r) => {
                let before = self.stats.srtcp_packets_in;
                self.handle_rtcp(r.contents);
                if self.stats.srtcp_packets_in != before {
                    self.authenticated_from(r.proto, r.source);
                }
            }
            _ => self.stats.dropped += 1,
        }
        self.process(now);
    }

    /// An authenticated datagram arrived from `source`: a pending ICE-lite path to it
    /// becomes the send path.
    fn authenticated_from(&mut self, proto: Protocol, source: SocketAddr) {
        if let Some(p @ (pp, _, dest)) = self.transport.pending_path
            && pp == proto
            && dest == source
        {
            self.transport.send_path = Some(p);
            self.transport.pending_path = None;
        }
    }

    pub(super) fn known_source(&self, r: &Receive<'_>) -> bool {
        self.transport.recv_sources.contains(&(r.proto, r.source))
    }

    /// Copies a received SRTP/SRTCP datagram into a pooled buffer, or counts a drop
    /// when no keys are installed yet or the datagram cannot fit.
    pub(super) fn copy_in(&mut self, contents: &[u8]) -> Option<Vec<u8>> {
        if self.transport.srtp_rx.is_none() || contents.len() > BUF_SIZE {
            self.stats.dropped += 1;
            return None;
        }
        let mut buf = self.pool.take();
        buf[..contents.len()].copy_from_slice(contents);
        Some(buf)
    }

    /// The RTP receive path, one step per function: unprotect and parse, record the
    /// transport-wide sequence number, find the stream, unwrap RTX, update the
    /// stream's registers, then an RTP-mode event or frame assembly.
    pub(super) fn handle_rtp(&mut self, contents: &[u8]) {
        let Some((mut p, twcc_seq, ids)) = self.unprotect_rtp(contents) else {
            return;
        };
        let now = self.last_now;
        if let Some(t) = twcc_seq {
            self.record_twcc(now, p.ssrc, t);
        }
        let has_payload = p.payload_end > p.payload_offset;
        let Some(mut idx) = self.rx_stream_index(p.ssrc, ids, has_payload) else {
            // Unbound padding-only probes are expected, not drops.
            if has_payload {
                self.stats.dropped += 1;
            }
            self.pool.put(p.buf);
            return;
        };
        {
            let st = &mut self.session.rx_streams[idx];
            st.packets += 1;
            st.bytes += p.len as u64;
            st.rate.add(now, p.len as u64);
            if st.mid.is_none() {
                st.mid = ids.mid;
            }
        }
        let rtx_of = {
            let st = &self.session.rx_streams[idx];
            match st.rtx_of {
                Some(primary) => Some(Some(primary)),
                // RTX bound by repaired-rid before its layer's SSRC was seen.
                None if st.repair => Some(self.layer_ssrc(st.mid, st.rid)),
                None => None,
            }
        };
        if let Some(primary) = rtx_of {
            let unwrapped = match primary {
                Some(primary) => self.unwrap_rtx(idx, primary, &mut p),
                None => None,
            };
            let Some(i) = unwrapped else {
                // Padding-only probes are expected; anything else is a drop.
                if p.payload_end > p.payload_offset {
                    self.stats.dropped += 1;
                }
                self.pool.put(p.buf);
                return;
            };
            idx = i;
        }
        if p.payload_end <= p.payload_offset {
            // Padding only (bandwidth probe): nothing to deliver.
            self.pool.put(p.buf);
            return;
        }
        let (seq_no, time, mid) = self.update_rx_stream(idx, now, &p);
        let (rid, layer) = {
            let st = &self.session.rx_streams[idx];
            (st.rid, st.layer)
        };
        if self.config.rtp_mode {
            let red = self.is_red_payload(mid, p.pt);
            self.outbox.rtp_in.push_back(PendingRtp {
                mid,
                rid,
                layer,
                ssrc: p.ssrc,
                payload_type: p.pt,
                seq_no,
                timestamp: p.timestamp,
                marker: p.marker,
                buf: p.buf,
                len: p.len,
                payload_offset: p.payload_offset,
                red,
            });
            return;
        }
        // Frame mode: depacketize into whole frames (of a known media section). Of a
        // simulcast section only the first layer is assembled; the others are dropped.
        let Some(mid) = mid.filter(|_| layer.is_none_or(|l| l == 0)) else {
            self.pool.put(p.buf);
            return;
        };
        self.depacketize(idx, mid, seq_no, time, p);
    }

    /// Step 1: copies the datagram into a pooled buffer, decrypts and parses it.
    /// Returns the packet with its transport-wide sequence number and the `mid`, `rid`
    /// and `repaired-rid` header extensions (`mid` only when it names a known
    /// section), or `None` after counting the drop.
    fn unprotect_rtp(&mut self, contents: &[u8]) -> Option<(RxRtp, Option<u16>, RxIds)> {
        let mut buf = self.copy_in(contents)?;
        let Some(srtp) = self.transport.srtp_rx.as_mut() else {
            // copy_in checked that the keys are installed.
            self.pool.put(buf);
            return None;
        };
        let len = match srtp.unprotect_rtp(&mut buf[..contents.len()]) {
            Ok(n) => n,
            Err(e) => {
                self.stats.srtp_errors += 1;
                self.count_srtp_error(&e);
                self.pool.put(buf);
                return None;
            }
        };
        self.stats.srtp_packets_in += 1;
        let Ok(pkt) = RtpPacket::parse(&buf[..len]) else {
            self.stats.dropped += 1;
            self.pool.put(buf);
            return None;
        };
        let h = pkt.header;
        // Header extensions share one id space on a bundled transport.
        let (twcc_seq, mut ids) = match pkt.extensions(&self.session.rx_ext_map) {
            Ok(v) => (
                v.transport_cc,
                RxIds {
                    mid: v.mid.and_then(Mid::new),
                    rid: v.rid.and_then(Rid::new),
                    rrid: v.repaired_rid.and_then(Rid::new),
                },
            ),
            Err(_) => (None, RxIds::default()),
        };
        ids.mid = ids
            .mid
            .filter(|m| self.session.media.iter().any(|x| x.mid == *m));
        let payload_offset = len - pkt.payload.len() - usize::from(pkt.padding_len);
        let payload_end = len - usize::from(pkt.padding_len);
        let p = RxRtp {
            len,
            payload_offset,
            payload_end,
            ssrc: h.ssrc,
            pt: h.payload_type,
            seq16: h.sequence_number,
            timestamp: h.timestamp,
            marker: h.marker,
            buf,
        };
        Some((p, twcc_seq, ids))
    }

    /// Step 2: records a transport-wide sequence number for our feedback, at the
    /// datagram's arrival ([`Input::ReceiveArrived`]) or `now`.
    pub(super) fn record_twcc(&mut self, now: Instant, ssrc: u32, seq: u16) {
        let now = self.rx_arrival.unwrap_or(now);
        let s = &mut self.session;
        if !s.twcc_media_ssrc_set {
            // Receivers (libwebrtc) only apply feedback whose media SSRC is one of
            // the streams they send: name the first one we hear from.
            s.twcc_rx = TwccRecvRegister::new(s.rtcp_ssrc, ssrc);
            s.twcc_media_ssrc_set = true;
        }
        s.twcc_rx.on_packet(now, seq);
    }

    /// Step 3 (RTX streams only): rewrites the packet in place to the original one
    /// (RFC 4588: OSN, associated PT, primary SSRC) and returns the primary stream.
    /// `None` for padding-only probes, unknown payload types or too many streams.
    fn unwrap_rtx(&mut self, idx: usize, primary: u32, p: &mut RxRtp) -> Option<usize> {
        let mid = self.session.rx_streams[idx].mid;
        let apt = mid
            .and_then(|m| self.session.media.iter().find(|x| x.mid == m))
            .and_then(|info| {
                info.rtx
                    .iter()
                    .find(|(_, r)| *r == p.pt)
                    .map(|(prim, _)| *prim)
            })?;
        // The OSN is the first two bytes of the payload, read within the packet (before
        // its padding), never from the rest of the pooled buffer. Padding-only RTX
        // probes (bandwidth probing) and truncated packets have no OSN: dropped.
        if p.payload_end < p.payload_offset + 2 || p.len > p.buf.len() {
            return None;
        }
        let osn = u16::from_be_bytes([p.buf[p.payload_offset], p.buf[p.payload_offset + 1]]);
        p.buf
            .copy_within(p.payload_offset + 2..p.len, p.payload_offset);
        p.len -= 2;
        p.payload_end -= 2;
        p.buf[1] = (p.buf[1] & 0x80) | apt;
        p.buf[2..4].copy_from_slice(&osn.to_be_bytes());
        p.buf[8..12].copy_from_slice(&primary.to_be_bytes());
        p.ssrc = primary;
        p.pt = apt;
        p.seq16 = osn;
        let ids = RxIds {
            mid,
            ..RxIds::default()
        };
        self.rx_stream_index(primary, ids, true)
    }

    /// Step 4: extends sequence number and timestamp and feeds the stream's report
    /// and NACK registers. Returns `(seq_no, time, mid)`.
    /// Whether `pt` is the RED payload type of section `mid` (a linear search of the
    /// section's few payload types; no allocation).
    fn is_red_payload(&self, mid: Option<Mid>, pt: u8) -> bool {
        mid.and_then(|m| self.session.media.iter().find(|i| i.mid == m))
            .and_then(|i| i.payloads.iter().find(|x| x.pt == pt))
            .is_some_and(|x| x.codec == crate::media::Codec::Red)
    }

    fn update_rx_stream(&mut self, idx: usize, now: Instant, p: &RxRtp) -> (u64, u64, Option<Mid>) {
        let info = self.session.rx_streams[idx]
            .mid
            .and_then(|m| self.session.media.iter().find(|x| x.mid == m));
        let clock_rate = info
            .and_then(|info| pt_params(info, p.pt))
            .map_or(90_000, |(_, c)| c);
        // Once per media stream whose section is known: a ring now if the peer may
        // be NACKed for it (`nack` negotiated on one of the section's payload types, or
        // nothing negotiated: the direct API), else no NACK register at all (browsers'
        // Opus). Not at its first loss, which would allocate in the middle of
        // forwarding.
        let st = &self.session.rx_streams[idx];
        let decide = (!st.nack.decided() && st.rtx_of.is_none() && !st.repair)
            .then_some(info)
            .flatten()
            .map(|i| {
                i.payloads.is_empty()
                    || i.payloads
                        .iter()
                        .any(|p| p.rtcp_fb.iter().any(|f| f == "nack"))
            });
        let st = &mut self.session.rx_streams[idx];
        match decide {
            Some(true) => st.nack.allocate_ring(),
            Some(false) => st.nack.turn_off(),
            None => {}
        }
        // Extends the 16-bit sequence number (a method named unwrap, not Option::unwrap).
        let seq_no = st.seq.unwrap(p.seq16);
        // Extends the 32-bit RTP timestamp (not Option::unwrap).
        let time = st.time.unwrap(p.timestamp);
        st.register.update(now, seq_no, p.timestamp, clock_rate);
        st.nack.on_packet(now, seq_no);
        (seq_no, time, st.mid)
    }

    /// Step 5 (frame mode): feeds the payload to the stream's depacketizer, reports
    /// whole frames, and asks for a keyframe (PLI, rate-limited) while a video
    /// stream cannot be repaired.
    fn depacketize(&mut self, idx: usize, mid: Mid, seq_no: u64, time: u64, p: RxRtp) {
        let now = self.last_now;
        let params = self
            .session
            .media
            .iter()
            .find(|x| x.mid == mid)
            .and_then(|info| pt_params(info, p.pt));
        let Some((codec, clock_rate)) = params else {
            self.pool.put(p.buf);
            return;
        };
        let st = &mut self.session.rx_streams[idx];
        let Some(depack) = st.depacketizer(p.pt, &codec) else {
            self.pool.put(p.buf);
            return;
        };
        let meta = crate::packet::PacketMeta {
            seq: seq_no,
            time,
            marker: p.marker,
            received: now,
        };
        depack.push(
            meta,
            p.buf.get(p.payload_offset..p.payload_end).unwrap_or(&[]),
        );
        let mut frames = Vec::new();
        while let Some(f) = depack.pop() {
            frames.push(f);
        }
        let wants_keyframe = depack.needs_keyframe() && keyframe_request_due(st, now);
        self.pool.put(p.buf);
        for f in frames {
            match f {
                Ok(f) => self
                    .outbox
                    .events
                    .push_back(PendingEvent::MediaData(MediaData {
                        mid,
                        ssrc: p.ssrc,
                        pt: p.pt,
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
            let _ = self.request_keyframe(p.ssrc, KeyframeRequestKind::Pli);
        }
    }

    /// The receive stream of `ssrc`, created on first sight (bounded by
    /// `MAX_RX_STREAMS`). An SSRC is bound once, at its first packet, and later
    /// packets find it by SSRC alone (browsers stop sending `mid`/`rid` once our
    /// reports acknowledge the SSRC). A new SSRC is resolved in this order:
    ///
    /// 1. signalled (`a=ssrc`, `ssrc-group:FID`, direct API): its section, RTX pairing;
    /// 2. `mid` names a section the peer sends simulcast on: `rid` names the layer,
    ///    `repaired-rid` that layer's RTX; neither, or a RID the section does not list,
    ///    binds nothing;
    /// 3. `mid` names another section: bound to it (if the packet has a payload);
    /// 4. no `mid`: bound without a section if the packet has a payload, its SSRC is
    ///    not 0 and no section expects simulcast (then only MID/RID can bind).
    ///
    /// So padding-only probes and SSRC-0 packets without MID/RID never take a slot.
    pub(super) fn rx_stream_index(
        &mut self,
        ssrc: u32,
        ids: RxIds,
        has_payload: bool,
    ) -> Option<usize> {
        if let Some(i) = self.session.rx_streams.iter().position(|s| s.ssrc == ssrc) {
            if let Some(rid) = ids.rid
                && self.session.rx_streams[i].rid.is_none()
            {
                // A signalled SSRC (Firefox lists a=ssrc with simulcast) learns its layer.
                self.bind_layer(i, rid);
            }
            return Some(i);
        }
        if self.session.rx_streams.len() >= MAX_RX_STREAMS {
            return None;
        }
        let media = &self.session.media;
        if let Some(m) = media.iter().find(|m| m.remote_ssrcs.contains(&ssrc)) {
            let mut st = RxStream::new(ssrc, Some(m.mid));
            st.rtx_of = media
                .iter()
                .flat_map(|m| m.remote_rtx.iter())
                .find(|(_, rtx)| *rtx == ssrc)
                .map(|(p, _)| *p);
            return Some(self.push_rx_stream(st));
        }
        let section = ids.mid.and_then(|mid| media.iter().find(|m| m.mid == mid));
        match section {
            Some(m) if !m.remote_rids.is_empty() => {
                let (rid, repair) = match (ids.rid, ids.rrid) {
                    (_, Some(r)) => (r, true),
                    (Some(r), None) => (r, false),
                    (None, None) => return None,
                };
                let layer = m.remote_rids.iter().position(|r| r == rid.as_str())?;
                let mid = m.mid;
                let mut st = RxStream::new(ssrc, Some(mid));
                st.rid = Some(rid);
                st.layer = u8::try_from(layer).ok();
                st.repair = repair;
                if repair {
                    st.rtx_of = self.layer_ssrc(Some(mid), Some(rid));
                } else {
                    // An RTX stream of this layer seen first now has its primary.
                    for s in self.session.rx_streams.iter_mut().filter(|s| {
                        s.repair && s.rtx_of.is_none() && s.mid == Some(mid) && s.rid == Some(rid)
                    }) {
                        s.rtx_of = Some(ssrc);
                    }
                }
                Some(self.push_rx_stream(st))
            }
            Some(m) if has_payload => {
                let st = RxStream::new(ssrc, Some(m.mid));
                Some(self.push_rx_stream(st))
            }
            Some(_) => None,
            None => {
                let simulcast = media.iter().any(|m| !m.remote_rids.is_empty());
                if !has_payload || ssrc == 0 || simulcast {
                    return None;
                }
                Some(self.push_rx_stream(RxStream::new(ssrc, None)))
            }
        }
    }

    /// Names the simulcast layer of stream `i` when its section lists `rid`.
    fn bind_layer(&mut self, i: usize, rid: Rid) {
        let st = &self.session.rx_streams[i];
        let layer = st
            .mid
            .and_then(|mid| self.session.media.iter().find(|m| m.mid == mid))
            .and_then(|m| m.remote_rids.iter().position(|r| r == rid.as_str()));
        if let Some(layer) = layer {
            let st = &mut self.session.rx_streams[i];
            st.rid = Some(rid);
            st.layer = u8::try_from(layer).ok();
        }
    }

    fn push_rx_stream(&mut self, mut st: RxStream) -> usize {
        // A video stream's NACK ring is allocated with the stream: video links lose
        // packets routinely, and a ring allocated at the first loss would be an
        // allocation in the middle of forwarding. Audio (rarely NACKed) and repair
        // streams (their packets are unwrapped to the media stream's register) keep
        // the lazy ring.
        let video = st.rtx_of.is_none()
            && !st.repair
            && st
                .mid
                .and_then(|m| self.session.media.iter().find(|x| x.mid == m))
                .is_some_and(|m| m.kind == crate::media::MediaKind::Video);
        if video {
            st.nack.allocate_ring();
        }
        // One at a time: most peers send one or two streams, a doubling Vec would hold
        // room for four 600-byte streams from the first.
        self.session.rx_streams.reserve_exact(1);
        self.session.rx_streams.push(st);
        self.session.rx_streams.len() - 1
    }

    /// The SSRC of the (latest bound) media stream of simulcast layer `rid` of `mid`.
    fn layer_ssrc(&self, mid: Option<Mid>, rid: Option<Rid>) -> Option<u32> {
        self.session
            .rx_streams
            .iter()
            .rev()
            .find(|s| !s.repair && s.rid.is_some() && s.rid == rid && s.mid == mid)
            .map(|s| s.ssrc)
    }

    pub(super) fn handle_rtcp(&mut self, contents: &[u8]) {
        let Some(mut buf) = self.copy_in(contents) else {
            return;
        };
        let Some(srtp) = self.transport.srtp_rx.as_mut() else {
            // copy_in checked that the keys are installed.
            self.pool.put(buf);
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
        self.pool.put(buf);
    }

    pub(super) fn count_srtp_error(&mut self, e: &crate::srtp::SrtpError) {
        match e {
            crate::srtp::SrtpError::AuthFailed => self.stats.srtp_auth_failures += 1,
            crate::srtp::SrtpError::Replayed | crate::srtp::SrtpError::TooOld => {
                self.stats.srtp_replays += 1
            }
            _ => {}
        }
    }

    pub(super) fn keyframe_requested(&mut self, ssrc: u32, kind: KeyframeRequestKind) {
        // Only streams we actually send can be asked for keyframes.
        let Some(&(_, mid)) = self.session.tx_ssrcs.iter().find(|(s, _)| *s == ssrc) else {
            return;
        };
        if let Some(tx) = self.session.tx.iter_mut().find(|t| t.ssrc == ssrc) {
            match kind {
                KeyframeRequestKind::Pli => tx.plis_received += 1,
                KeyframeRequestKind::Fir => tx.firs_received += 1,
            }
        }
        self.outbox
            .events
            .push_back(PendingEvent::KeyframeRequest(KeyframeRequest {
                mid,
                ssrc,
                kind,
            }));
    }

    /// Moves ICE and DTLS outputs into our queues and reacts to their events.
    pub(super) fn process(&mut self, now: Instant) {
        while let Some(t) = self.transport.ice.poll_transmit() {
            let mut buf = self.pool.take();
            if t.contents.len() > buf.len() {
                buf.resize(t.contents.len(), 0);
            }
            buf[..t.contents.len()].copy_from_slice(&t.contents);
            self.outbox.transmits.push_back(PendingTransmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                len: t.contents.len(),
                buf,
            });
            self.transport.ice.recycle_buffer(t.contents);
        }
        while let Some(ev) = self.transport.ice.poll_event() {
            match ev {
                IceAgentEvent::IceConnectionStateChange(s) => {
                    self.transport.ice_state = s;
                    self.outbox.events.push_back(PendingEvent::Ice(s));
                    match s {
                        IceConnectionState::Connected | IceConnectionState::Completed
                            if self.transport.dtls.is_active() == Some(true) =>
                        {
                            if let Err(e) = self.transport.dtls.start(now) {
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
                    let path = (proto, source, destination);
                    match self.transport.send_path {
                        // A lite agent's nomination is not proof that the address is
                        // the peer's: hold it until authenticated traffic comes from it.
                        Some((_, _, current))
                            if self.transport.ice.ice_lite() && current != destination =>
                        {
                            self.transport.pending_path = Some(path);
                        }
                        _ => {
                            self.transport.send_path = Some(path);
                            self.transport.pending_path = None;
                        }
                    }
                    if !self.transport.recv_sources.contains(&(proto, destination)) {
                        self.transport.recv_sources.push((proto, destination));
                    }
                }
                IceAgentEvent::DiscoveredRecv { proto, source } => {
                    if !self.transport.recv_sources.contains(&(proto, source)) {
                        self.transport.recv_sources.push((proto, source));
                    }
                }
            }
        }
        while let Some(ev) = self.transport.dtls.poll_event() {
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
                            self.transport.srtp_tx = Some(Protection::Srtp(tx));
                            self.transport.srtp_rx = Some(Protection::Srtp(rx));
                            self.transport.srtp_profile = Some(profile);
                            self.stats.dtls_version = self.transport.dtls.version();
                            self.transport.connected = true;
                            self.session.next_report_at = now + Duration::from_millis(200);
                            if let Some(i) = self.config.stats_interval {
                                self.session.next_stats_at = now + i;
                            }
                            self.session.twcc_rx = TwccRecvRegister::new(self.session.rtcp_ssrc, 0);
                            self.session.twcc_media_ssrc_set = false;
                            // The handshake's records went through the DTLS scratch.
                            self.transport.dtls.release_handshake_buffers();
                            self.outbox.events.push_back(PendingEvent::Connected);
                        }
                        Err(e) => self.fail(FailReason::Dtls(DtlsError::SrtpKeying(e))),
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
}
