//! RTCP of an `Rtc`: reports (SR/RR with RTT), NACK and RTX, transport-wide
//! congestion control feedback and bandwidth estimation, keyframe requests and
//! periodic stats. Everything is driven by the `now` the caller passes in.

use std::time::{Duration, Instant};

use super::{BUF_SIZE, PendingEvent, Rtc, RtcError, WriteError};
use crate::direct::RtxOutcome;
use crate::event::ResendRequest;
use crate::event::{KeyframeRequestKind, MediaEgressStats, MediaIngressStats};
use crate::feedback::{Admission, RtxParams, write_rtx};
use crate::rtcp::{
    Nack, ReceiverReport, ReportBlock, ReportBlocks, RtcpPacket, Sdes, SdesItem, SenderReport,
    TransportFeedback,
};
use crate::rtp::RtpPacket;

/// How often receiver/sender reports are sent.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_millis(1000);

/// SDES CNAME item type (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;

impl Rtc {
    /// The RTX payload type the session pairs with payload type `pt` on the media
    /// section `mid`, if it has one.
    fn rtx_pt_for(&self, mid: crate::media::Mid, pt: u8) -> Option<u8> {
        self.session
            .media
            .iter()
            .find(|m| m.mid == mid)
            .and_then(|m| m.rtx.iter().find(|(p, _)| *p == pt))
            .map(|(_, r)| *r)
    }

    /// Work due at `now`: the ICE connect timeout, then (once connected) reports,
    /// NACKs, TWCC feedback and stats.
    pub(super) fn handle_rtcp_timers(&mut self, now: Instant) {
        // Not RTCP, but the one timer hook every input passes through.
        self.check_ice_connect_timeout(now);
        if !self.transport.connected || !self.alive {
            return;
        }
        if now >= self.session.next_report_at {
            self.session.next_report_at = now + REPORT_INTERVAL;
            self.send_reports(now);
        }
        self.send_nacks(now);
        self.send_twcc_feedback(now);
        if let Some(interval) = self.config.stats_interval
            && now >= self.session.next_stats_at
        {
            self.session.next_stats_at = now + interval;
            self.emit_stats(now);
        }
    }

    /// The earliest RTCP-related deadline.
    pub(super) fn rtcp_timeout(&self) -> Option<Instant> {
        if !self.transport.connected || !self.alive {
            return None;
        }
        let mut t = self.session.next_report_at;
        if let Some(x) = self.session.twcc_rx.poll_timeout() {
            t = t.min(x);
        }
        for s in &self.session.rx_streams {
            if let Some(x) = s.nack.poll_timeout() {
                t = t.min(x);
            }
        }
        if self.config.stats_interval.is_some() {
            t = t.min(self.session.next_stats_at);
        }
        Some(t)
    }

    /// One compound packet: an SR per send stream (or one RR), report blocks for
    /// what we receive, and our CNAME.
    fn send_reports(&mut self, now: Instant) {
        let mut blocks = ReportBlocks::new();
        for s in self
            .session
            .rx_streams
            .iter_mut()
            .filter(|s| s.rtx_of.is_none())
        {
            if let Some(b) = s.register.report_block(now) {
                // At most 31 blocks fit one report; the rest wait for the next one.
                if blocks.push(b).is_err() {
                    break;
                }
            }
        }
        let ntp = self.session.ntp.ntp(now);
        let mut buf = self.pool.take();
        let limit = BUF_SIZE - 64;
        let mut n = 0usize;
        let mut first_ssrc = self.session.rtcp_ssrc;
        if self.session.tx.is_empty() {
            let rr = ReceiverReport {
                ssrc: self.session.rtcp_ssrc,
                reports: blocks,
            };
            n += rr.write(&mut buf[..limit]).unwrap_or(0);
        } else {
            for (i, tx) in self.session.tx.iter_mut().enumerate() {
                let info = tx.sender.sender_info(now, ntp, tx.clock_rate.max(1));
                let sr = SenderReport {
                    ssrc: tx.ssrc,
                    info,
                    // Report blocks ride on the first SR only.
                    reports: if i == 0 { blocks } else { ReportBlocks::new() },
                };
                let Ok(w) = sr.write(&mut buf[n..limit]) else {
                    break;
                };
                tx.sender.on_sr_sent(now, ntp);
                n += w;
                if i == 0 {
                    first_ssrc = tx.ssrc;
                }
            }
        }
        let item = SdesItem {
            kind: SDES_CNAME,
            value: self.session.cname.as_bytes(),
        };
        if let Ok(w) = Sdes::write_chunks(&[(first_ssrc, &[item][..])], &mut buf[n..limit]) {
            n += w;
        }
        if n > 0 {
            self.stats.reports_sent += 1;
            let _ = self.protect_rtcp_and_queue(buf, n);
        } else {
            self.pool.put(buf);
        }
    }

    /// NACKs for gaps that are due to be (re)requested.
    fn send_nacks(&mut self, now: Instant) {
        let sender_ssrc = self.session.rtcp_ssrc;
        for i in 0..self.session.rx_streams.len() {
            if self.session.rx_streams[i]
                .nack
                .poll_timeout()
                .is_none_or(|t| t > now)
            {
                continue;
            }
            let mut buf = self.pool.take();
            let st = &mut self.session.rx_streams[i];
            let media_ssrc = st.ssrc;
            match st
                .nack
                .write_nack(now, sender_ssrc, media_ssrc, &mut buf[..BUF_SIZE - 64])
            {
                Ok(Some(n)) => {
                    st.nacks_sent += 1;
                    let _ = self.protect_rtcp_and_queue(buf, n);
                }
                _ => self.pool.put(buf),
            }
        }
    }

    /// Transport-wide congestion control feedback for what arrived.
    fn send_twcc_feedback(&mut self, now: Instant) {
        loop {
            let mut buf = self.pool.take();
            match self
                .session
                .twcc_rx
                .poll_feedback(now, &mut buf[..BUF_SIZE - 64])
            {
                Some(n) => {
                    self.stats.twcc_feedback_sent += 1;
                    let _ = self.protect_rtcp_and_queue(buf, n);
                }
                None => {
                    self.pool.put(buf);
                    break;
                }
            }
        }
    }

    /// Protects one RTCP packet in `buf[..len]` and queues it.
    pub(super) fn protect_rtcp_and_queue(
        &mut self,
        mut buf: Vec<u8>,
        len: usize,
    ) -> Result<(), RtcError> {
        let Some(srtp) = self.transport.srtp_tx.as_mut() else {
            self.pool.put(buf);
            return Err(RtcError::InvalidState("no SRTP context"));
        };
        match srtp.protect_rtcp(&mut buf, len) {
            Ok(n) => self.queue_on_path(buf, n),
            Err(e) => {
                self.pool.put(buf);
                Err(RtcError::Write(e.into()))
            }
        }
    }

    /// Reacts to the packets of one decrypted (compound) RTCP packet.
    pub(super) fn handle_rtcp_packets(&mut self, now: Instant, plain: &[u8]) {
        for p in RtcpPacket::iter(plain) {
            match p {
                Ok(RtcpPacket::SenderReport(sr)) => {
                    if let Some(st) = self
                        .session
                        .rx_streams
                        .iter_mut()
                        .find(|s| s.ssrc == sr.ssrc)
                    {
                        st.register
                            .on_sender_report(now, sr.info.ntp_time, sr.info.rtp_time);
                    }
                    self.on_report_blocks(now, sr.reports.as_slice());
                }
                Ok(RtcpPacket::ReceiverReport(rr)) => {
                    self.on_report_blocks(now, rr.reports.as_slice());
                }
                Ok(RtcpPacket::Pli(pli)) => {
                    self.keyframe_requested(pli.media_ssrc, KeyframeRequestKind::Pli);
                }
                Ok(RtcpPacket::Fir(fir)) => {
                    for e in fir.entries() {
                        self.keyframe_requested(e.ssrc, KeyframeRequestKind::Fir);
                    }
                }
                Ok(RtcpPacket::Nack(nack)) => self.on_nack(now, &nack),
                Ok(RtcpPacket::Bye(bye)) => {
                    for ssrc in bye.ssrcs() {
                        // Only streams we receive: a BYE for anything else says nothing.
                        if let Some(st) = self.session.rx_streams.iter().find(|s| s.ssrc == ssrc) {
                            let ended = crate::event::StreamEnded { mid: st.mid, ssrc };
                            self.outbox
                                .events
                                .push_back(PendingEvent::StreamEnded(ended));
                        }
                    }
                }
                Ok(RtcpPacket::TransportFeedback(fb)) => self.on_twcc(now, &fb),
                Ok(RtcpPacket::Remb(remb)) => {
                    self.outbox
                        .events
                        .push_back(PendingEvent::Remb(remb.bitrate));
                }
                Ok(_) => {}
                Err(_) => self.stats.dropped += 1,
            }
        }
    }

    fn on_report_blocks(&mut self, now: Instant, blocks: &[ReportBlock]) {
        for b in blocks {
            if let Some(tx) = self.session.tx.iter_mut().find(|t| t.ssrc == b.ssrc)
                && let Some(rtt) = tx.sender.on_report_block(now, b)
            {
                tx.rtt = Some(rtt);
                tx.fraction_lost = b.fraction_lost;
                for st in &mut self.session.rx_streams {
                    st.nack.set_rtt(rtt);
                }
            }
        }
    }

    /// Answers a NACK from the send buffer with RTX packets (RFC 4588).
    ///
    /// A NACK is untrusted input that can name thousands of packets: each request
    /// goes through the stream's [`ResendLimiter`](crate::feedback::ResendLimiter)
    /// (no second resend of a packet within one RTT, at most 16 per RTT, bytes
    /// bounded by half the stream's send rate). Once a budget is spent, the
    /// rest of the NACK is ignored; the peer asks again later.
    fn on_nack(&mut self, now: Instant, nack: &Nack<'_>) {
        let Some(idx) = self
            .session
            .tx
            .iter()
            .position(|t| t.ssrc == nack.media_ssrc)
        else {
            return;
        };
        self.session.tx[idx].nacks_received += 1;
        let mid = self.session.tx[idx].mid;
        let send_rate = self.session.tx[idx].rate.rate_bps(now).unwrap_or(0);
        if self.config.external_rtx() {
            self.request_resend(now, idx, nack, send_rate);
            return;
        }
        for lost in nack.lost() {
            let tx = &self.session.tx[idx];
            let Some(seq) = tx.extend_sent_seq(lost) else {
                continue;
            };
            let Some((pt, len)) = tx
                .rtx_buf
                .get(now, seq)
                .and_then(|p| Some((p.get(1)? & 0x7f, p.len())))
            else {
                continue;
            };
            let Some(rtx_pt) = self.rtx_pt_for(mid, pt) else {
                continue;
            };
            let tx = &mut self.session.tx[idx];
            // The retransmission is the original plus the 2-byte OSN.
            match tx.resend.admit(now, seq, len + 2, tx.rtt, send_rate) {
                Admission::Resend => {}
                Admission::Duplicate => continue,
                Admission::OverBudget => break,
            }
            let params = RtxParams {
                ssrc: tx.rtx_ssrc,
                payload_type: rtx_pt,
                seq: tx.rtx_seq,
            };
            let mut buf = self.pool.take();
            let tx = &mut self.session.tx[idx];
            match tx
                .rtx_buf
                .build_rtx(now, seq, params, &mut buf[..BUF_SIZE - 64])
            {
                Some(n) => {
                    tx.rtx_seq = tx.rtx_seq.wrapping_add(1);
                    let outcome = self.protect_and_queue(buf, n, Some(mid), false);
                    self.session.tx[idx].count_rtx(outcome.ok());
                }
                None => self.pool.put(buf),
            }
        }
    }

    /// External retransmission cache: turns a NACK into an
    /// [`Event::ResendRequest`](crate::Event::ResendRequest), after the same
    /// de-duplication and budgets as [`Rtc::on_nack`] (the size charged per packet is
    /// the stream's average packet size).
    fn request_resend(&mut self, now: Instant, idx: usize, nack: &Nack<'_>, send_rate: u64) {
        let tx = &mut self.session.tx[idx];
        let mut request = ResendRequest::new(tx.mid, tx.ssrc);
        let avg =
            usize::try_from(tx.bytes.checked_div(tx.packets).unwrap_or(0)).unwrap_or(usize::MAX);
        for lost in nack.lost() {
            let Some(seq) = tx.extend_sent_seq(lost) else {
                continue;
            };
            match tx.resend.admit(now, seq, avg + 2, tx.rtt, send_rate) {
                Admission::Resend => {}
                Admission::Duplicate => continue,
                Admission::OverBudget => break,
            }
            // Never full: the limiter admits at most MAX_RESEND_SEQS per interval.
            if !request.push(lost) {
                break;
            }
        }
        if !request.seqs().is_empty() {
            self.outbox
                .events
                .push_back(PendingEvent::ResendRequest(request));
        }
    }

    /// Retransmits `packet`, a plaintext RTP packet as it was first sent on our
    /// stream `ssrc`: as RTX (RFC 4588: RTX SSRC, payload type and sequence number,
    /// the original sequence number prepended to the payload) when RTX is negotiated
    /// for its payload type, else as is on the media SSRC. Returns whether the pacer
    /// queued it (see [`DirectApi::write_rtx`](crate::direct::DirectApi::write_rtx)).
    pub(crate) fn write_rtx(&mut self, ssrc: u32, packet: &[u8]) -> Result<RtxOutcome, RtcError> {
        if !self.transport.connected {
            return Err(RtcError::InvalidState("not connected"));
        }
        let Some(idx) = self.session.tx.iter().position(|t| t.ssrc == ssrc) else {
            return Err(RtcError::InvalidState("no send stream with this SSRC"));
        };
        let mid = self.session.tx[idx].mid;
        let pt = RtpPacket::parse(packet)
            .map_err(|e| RtcError::Write(e.into()))?
            .header
            .payload_type;
        let rtx_pt = self.rtx_pt_for(mid, pt);
        let mut buf = self.pool.take();
        let n = match rtx_pt {
            Some(rtx_pt) => {
                let tx = &mut self.session.tx[idx];
                let params = RtxParams {
                    ssrc: tx.rtx_ssrc,
                    payload_type: rtx_pt,
                    seq: tx.rtx_seq,
                };
                let Some(n) = write_rtx(packet, params, None, &mut buf[..BUF_SIZE - 64]) else {
                    self.pool.put(buf);
                    return Err(RtcError::Write(WriteError::TooLarge));
                };
                tx.rtx_seq = tx.rtx_seq.wrapping_add(1);
                n
            }
            None => {
                let Some(out) = buf
                    .get_mut(..packet.len())
                    .filter(|_| packet.len() <= BUF_SIZE - 64)
                else {
                    self.pool.put(buf);
                    return Err(RtcError::Write(WriteError::TooLarge));
                };
                out.copy_from_slice(packet);
                packet.len()
            }
        };
        let outcome = self.protect_and_queue(buf, n, Some(mid), false);
        self.session.tx[idx].count_rtx(outcome.as_ref().ok().copied());
        outcome
    }

    fn on_twcc(&mut self, now: Instant, fb: &TransportFeedback<'_>) {
        self.stats.twcc_feedback_received += 1;
        let results = self.session.twcc_tx.apply_feedback(fb);
        let before = super::bwe_of(&self.session.bwe).estimate();
        let estimate = super::bwe_mut_of(&mut self.session.bwe).on_feedback(now, results);
        if estimate != before {
            self.outbox
                .events
                .push_back(PendingEvent::EgressBitrateEstimate(estimate));
        }
    }

    fn emit_stats(&mut self, now: Instant) {
        for st in self
            .session
            .rx_streams
            .iter_mut()
            .filter(|s| s.rtx_of.is_none())
        {
            let Some(mid) = st.mid else { continue };
            let r = st.register.stats();
            let bitrate = st.rate.rate_bps(now).unwrap_or(0);
            self.outbox
                .events
                .push_back(PendingEvent::IngressStats(MediaIngressStats {
                    mid,
                    ssrc: st.ssrc,
                    packets: st.packets,
                    bytes: st.bytes,
                    lost: r.lost,
                    jitter: r.jitter,
                    nacks_sent: st.nacks_sent,
                    plis_sent: st.plis_sent,
                    firs_sent: st.firs_sent,
                    bitrate_bps: bitrate,
                }));
        }
        for tx in self.session.tx.iter_mut() {
            let bitrate = tx.rate.rate_bps(now).unwrap_or(0);
            self.outbox
                .events
                .push_back(PendingEvent::EgressStats(MediaEgressStats {
                    mid: tx.mid,
                    ssrc: tx.ssrc,
                    packets: tx.packets,
                    bytes: tx.bytes,
                    nacks_received: tx.nacks_received,
                    rtx_sent: tx.rtx_sent,
                    rtx_refused: tx.rtx_refused,
                    plis_received: tx.plis_received,
                    firs_received: tx.firs_received,
                    rtt: tx.rtt,
                    fraction_lost: tx.fraction_lost,
                    bitrate_bps: bitrate,
                }));
        }
        self.outbox
            .events
            .push_back(PendingEvent::PeerStats(self.stats.clone()));
    }
}
