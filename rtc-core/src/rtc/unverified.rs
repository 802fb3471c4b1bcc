//! A cheap accounting entry point for load generators: book an SRTP packet from its
//! clear RTP header without authenticating or decrypting it.

use std::time::Instant;

use super::Rtc;
use crate::demux::Datagram;
use crate::io::Receive;
use crate::rtp::{ExtensionValues, parse_header};
use crate::streams::pt_params;

/// What [`Rtc::account_rtp_unverified`] booked: the packet's clear header fields.
///
/// None of it is authenticated: an on-path attacker could have forged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiedRtp {
    /// The packet's SSRC (of an already bound, non-RTX receive stream).
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number extended to 64 bits by the stream's unwrapper (the same
    /// numbering as [`RtpPacketReceived::seq_no`](crate::event::RtpPacketReceived)).
    pub seq_no: u64,
    /// Length of the whole datagram (header, encrypted payload and SRTP tag).
    pub len: usize,
}

impl Rtc {
    /// Books a received SRTP packet from its **clear header only**: no authentication,
    /// no decryption, no event. For load generators and test peers that fully verify
    /// only a sample of what they receive and must still keep their receive state
    /// exact: the stream's packet/byte counters, sequence-number extension, report
    /// (RFC 3550 loss/jitter) and NACK registers, and the transport-wide sequence
    /// number for TWCC feedback are updated as if the packet had been verified, so the
    /// peer neither NACKs nor reports as lost what it skipped.
    ///
    /// Never use it on traffic you do not trust: it believes the header. SRTP's replay
    /// window only advances on packets given to [`Rtc::handle_input`].
    ///
    /// Returns `None`, having booked nothing, when the datagram must go through
    /// [`Rtc::handle_input`] instead: the `Rtc` is closed, `now` is earlier than a
    /// previous input's, the datagram is not RTP, comes from an address ICE has not
    /// validated, arrives before the SRTP keys, has a malformed header, or belongs to
    /// an SSRC not yet bound to a receive stream (first packets bind streams from their
    /// authenticated `mid`/`rid`) or to an RTX stream (its original sequence number is
    /// encrypted). Timers are not run: keep feeding [`Input::Timeout`](crate::Input).
    pub fn account_rtp_unverified(
        &mut self,
        now: Instant,
        r: &Receive<'_>,
    ) -> Option<UnverifiedRtp> {
        if !self.alive || now < self.last_now {
            return None;
        }
        if Datagram::classify(r.contents) != Datagram::Rtp
            || !self.known_source(r)
            || self.transport.srtp_rx.is_none()
        {
            return None;
        }
        let (h, hlen) = parse_header(r.contents).ok()?;
        let idx = self
            .session
            .rx_streams
            .iter()
            .position(|s| s.ssrc == h.ssrc)?;
        {
            let st = &self.session.rx_streams[idx];
            if st.rtx_of.is_some() || st.repair {
                return None;
            }
        }
        self.last_now = now;
        let len = r.contents.len();
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += len as u64;
        if h.extension {
            // `parse_header` checked that the extension block lies within the datagram.
            let block = r
                .contents
                .get(hlen - usize::from(h.ext_len)..hlen)
                .unwrap_or(&[]);
            let v = ExtensionValues::parse(h.ext_profile, block, &self.session.rx_ext_map)
                .unwrap_or_default();
            if let Some(t) = v.transport_cc {
                self.record_twcc(now, h.ssrc, t);
            }
        }
        let clock_rate = self.session.rx_streams[idx]
            .mid
            .and_then(|m| self.session.media.iter().find(|x| x.mid == m))
            .and_then(|info| pt_params(info, h.payload_type))
            .map_or(90_000, |(_, c)| c);
        let st = &mut self.session.rx_streams[idx];
        st.packets += 1;
        st.bytes += len as u64;
        st.rate.add(now, len as u64);
        // Extends the 16-bit sequence number (a method named unwrap, not Option::unwrap).
        let seq_no = st.seq.unwrap(h.sequence_number);
        // Extends the RTP timestamp (not Option::unwrap); keeps the unwrapper current.
        let _ = st.time.unwrap(h.timestamp);
        st.register.update(now, seq_no, h.timestamp, clock_rate);
        st.nack.on_packet(now, seq_no);
        Some(UnverifiedRtp {
            ssrc: h.ssrc,
            payload_type: h.payload_type,
            seq_no,
            len,
        })
    }
}
