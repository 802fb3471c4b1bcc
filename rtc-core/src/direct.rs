//! The direct API: set a connection up without SDP.
//!
//! For servers whose signalling is not SDP: exchange ICE credentials, the DTLS
//! fingerprint and roles by any means, then declare media and streams here.

use crate::dtls::Fingerprint;
use crate::event::KeyframeRequestKind;
use crate::ice::IceCreds;
use crate::io::Transmit;
use crate::media::{MediaInfo, MediaKind, Mid};
use crate::rtc::{Rtc, RtcError};
use crate::sctp::{ChannelConfig, ChannelId};

/// What became of a retransmission handed to [`DirectApi::write_rtx`].
///
/// Only [`RtxOutcome::Queued`] puts a packet on the wire (and is counted in
/// [`MediaEgressStats::rtx_sent`](crate::stats::MediaEgressStats::rtx_sent));
/// a refusal is counted in
/// [`MediaEgressStats::rtx_refused`](crate::stats::MediaEgressStats::rtx_refused).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtxOutcome {
    /// The pacer queued it (or it was sent at once, pacing being off).
    Queued,
    /// The pacer refused it: nothing goes out.
    Refused(RtxRefusal),
}

/// What [`DirectApi::write_rtp_packet_in_place`] did with a packet.
#[must_use]
#[derive(Debug)]
pub enum RtpWritten<'a> {
    /// `fill` wrote nothing (it returned `None`, or more than fits).
    Nothing,
    /// Protected in place in the caller's buffer and counted as sent: the caller
    /// sends this datagram (it borrows the buffer) instead of waiting for it from
    /// [`Rtc::poll_output`](crate::Rtc::poll_output).
    Sent(Transmit<'a>),
    /// Copied into the `Rtc` and queued (another packet waits ahead of it, or the
    /// pacer holds it): it leaves through [`Rtc::poll_output`](crate::Rtc::poll_output)
    /// as usual.
    Queued,
}

/// Why the pacer refused a retransmission ([`RtxOutcome::Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtxRefusal {
    /// The same packet was retransmitted less than a round trip (plus the time
    /// retransmissions wait in the pacer) ago: the request crossed it.
    Duplicate,
    /// The retransmission budget (a share of the pacing target rate) is spent.
    OverBudget,
    /// The pacer's queue for its class is full.
    QueueFull,
}

/// Borrowed handle from [`Rtc::direct_api`].
pub struct DirectApi<'a> {
    rtc: &'a mut Rtc,
}

impl<'a> DirectApi<'a> {
    /// The declared media section `mid`.
    fn media_mut(&mut self, mid: Mid) -> Result<&mut crate::media::MediaInfo, RtcError> {
        self.rtc
            .session
            .media
            .iter_mut()
            .find(|m| m.mid == mid)
            .ok_or(RtcError::UnknownMid(mid))
    }

    pub(crate) fn new(rtc: &'a mut Rtc) -> Self {
        DirectApi { rtc }
    }

    /// Our ICE credentials (to send to the peer).
    pub fn local_ice_credentials(&self) -> IceCreds {
        self.rtc.transport.ice.local_credentials().clone()
    }

    /// The peer's ICE credentials.
    pub fn set_remote_ice_credentials(&mut self, creds: IceCreds) {
        self.rtc.transport.ice.set_remote_credentials(creds);
    }

    /// Whether we are the ICE controlling agent (the offerer usually is; an ICE-lite
    /// agent is always controlled).
    pub fn set_ice_controlling(&mut self, controlling: bool) {
        self.rtc.transport.ice.set_controlling(controlling);
    }

    /// Our DTLS certificate fingerprint (to send to the peer).
    pub fn local_dtls_fingerprint(&self) -> Fingerprint {
        self.rtc.transport.dtls.local_fingerprint().clone()
    }

    /// The fingerprint the peer's certificate must match.
    pub fn set_remote_fingerprint(&mut self, fp: Fingerprint) {
        self.rtc.transport.dtls.set_remote_fingerprint(fp);
    }

    /// Fixes the DTLS role: `true` makes us the DTLS client (we send ClientHello once
    /// ICE connects), `false` the server. Must be set before the handshake starts.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when the DTLS role is already set to the other value.
    pub fn start_dtls(&mut self, active: bool) -> Result<(), RtcError> {
        if self
            .rtc
            .transport
            .dtls
            .is_active()
            .is_some_and(|a| a != active)
        {
            return Err(RtcError::InvalidState("DTLS role already set"));
        }
        self.rtc.transport.dtls.set_active(active);
        Ok(())
    }

    /// Plain RTP mode: no ICE and no DTLS. Media goes to `remote` (from `local`, the
    /// address of the caller's socket) at once and is accepted only from `remote`,
    /// unprotected or, with `srtp`, protected with keys agreed out of band. The
    /// `Rtc` is connected when this returns ([`Event::Connected`](crate::Event::Connected)
    /// follows); declare media and streams as for any direct-API connection. Call it
    /// before anything starts ICE or DTLS.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when ICE or DTLS already started, or `remote` is
    /// unspecified or has port 0; [`RtcError::SrtpKeys`] when a key ‖ salt does not
    /// have the profile's length ([`PlainSrtp::key_len`](crate::PlainSrtp::key_len)).
    pub fn start_plain(
        &mut self,
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        srtp: Option<&crate::PlainSrtp>,
    ) -> Result<(), RtcError> {
        self.rtc.start_plain(local, remote, srtp)
    }

    /// Declares a media section.
    pub fn declare_media(&mut self, mid: Mid, kind: MediaKind) {
        self.rtc.add_media_entry(MediaInfo::new(mid, kind));
    }

    /// Declares an incoming SSRC as belonging to a media section.
    ///
    /// # Errors
    ///
    /// [`RtcError::UnknownMid`] when no media section `mid` is declared.
    pub fn expect_stream_rx(&mut self, mid: Mid, ssrc: u32) -> Result<(), RtcError> {
        if !self.rtc.session.media.iter().any(|m| m.mid == mid) {
            return Err(RtcError::UnknownMid(mid));
        }
        self.rtc.add_remote_ssrc(mid, ssrc);
        Ok(())
    }

    /// Pairs payload type `pt` of section `mid` with the RTX (RFC 4588) payload type
    /// `rtx_pt`, as `a=rtpmap:… rtx` with `apt=` would: retransmissions we send for `pt`
    /// go out as RTX on the stream's RTX SSRC, and RTX we receive with `rtx_pt` is
    /// unwrapped to `pt`. Both ends declare the same pairs.
    ///
    /// # Errors
    ///
    /// [`RtcError::UnknownMid`] when no media section `mid` is declared.
    pub fn set_rtx_payload(&mut self, mid: Mid, pt: u8, rtx_pt: u8) -> Result<(), RtcError> {
        let m = self.media_mut(mid)?;
        if !m.rtx.contains(&(pt, rtx_pt)) {
            m.rtx.push((pt, rtx_pt));
        }
        Ok(())
    }

    /// Declares an incoming RTX stream `rtx_ssrc` repairing the stream `ssrc` of section
    /// `mid` (as `a=ssrc-group:FID ssrc rtx_ssrc` would).
    ///
    /// # Errors
    ///
    /// [`RtcError::UnknownMid`] when no media section `mid` is declared.
    pub fn expect_rtx_rx(&mut self, mid: Mid, ssrc: u32, rtx_ssrc: u32) -> Result<(), RtcError> {
        let m = self.media_mut(mid)?;
        if !m.remote_rtx.contains(&(ssrc, rtx_ssrc)) {
            m.remote_rtx.push((ssrc, rtx_ssrc));
        }
        self.rtc.add_remote_ssrc(mid, rtx_ssrc);
        Ok(())
    }

    /// Enables data channels over this connection (the SCTP association starts once
    /// DTLS is up; the DTLS client is the SCTP client). Set the DTLS role first.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when the DTLS role is not set yet.
    pub fn start_sctp(&mut self, remote_max_message_size: Option<u64>) -> Result<(), RtcError> {
        if self.rtc.transport.dtls.is_active().is_none() {
            return Err(RtcError::InvalidState(
                "set the DTLS role before start_sctp",
            ));
        }
        self.rtc.ensure_sctp(remote_max_message_size);
        Ok(())
    }

    /// Opens a data channel: in-band (DCEP) or, with `config.negotiated = Some(id)`,
    /// pre-negotiated on a fixed stream id (the peer must do the same).
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when data channels are not started
    /// ([`DirectApi::start_sctp`]); [`RtcError::Channel`] when the SCTP transport
    /// refuses the channel (stream id in use, association closed).
    pub fn create_data_channel(&mut self, config: ChannelConfig) -> Result<ChannelId, RtcError> {
        self.rtc.open_channel(config)
    }

    /// Asks the peer for a keyframe on its stream `media_ssrc` (RTCP PLI or FIR).
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected (no SRTP keys or no ICE path yet);
    /// [`RtcError::Write`] when the RTCP packet cannot be written or protected.
    pub fn request_keyframe(
        &mut self,
        media_ssrc: u32,
        kind: KeyframeRequestKind,
    ) -> Result<(), RtcError> {
        self.rtc.request_keyframe(media_ssrc, kind)
    }

    /// Ends our streams `ssrcs` (at most 31): sends an RTCP BYE (RFC 3550 §6.6) with an
    /// optional reason (at most 255 bytes); the peer's `Rtc` reports
    /// [`Event::StreamEnded`](crate::Event::StreamEnded) for each stream it receives.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected; [`RtcError::Write`] for more than
    /// 31 SSRCs, a reason too long, or when SRTCP protection fails.
    pub fn send_bye(&mut self, ssrcs: &[u32], reason: Option<&[u8]>) -> Result<(), RtcError> {
        self.rtc
            .send_rtcp(|buf| crate::rtcp::Bye::write_with(ssrcs, reason, buf))
    }

    /// Moves the `Rtc`'s notion of the current time forward to `now` without running
    /// its timers (an earlier `now` is ignored). A server that writes packets into
    /// many `Rtc`s per loop iteration calls this before the writes, so that each
    /// packet is paced, stamped in its transport-wide send history and counted at the
    /// time it was written rather than at the `Rtc`'s last input; timers still run at
    /// the next [`Input::Timeout`](crate::Input::Timeout), which may carry the same
    /// `now`. Costs a comparison.
    pub fn advance_time(&mut self, now: std::time::Instant) {
        self.rtc.advance_time(now);
    }

    /// RTP mode: builds one RTP packet directly in the `Rtc`'s send buffer, then
    /// protects and queues it — one copy fewer than [`DirectApi::write_rtp_packet`].
    /// `fill` writes the plaintext packet into the buffer it is given and returns its
    /// length, or `None` to send nothing (then `Ok(false)`).
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected (no SRTP keys or no ICE path yet);
    /// [`RtcError::Write`] ([`WriteError::Srtp`](crate::error::WriteError::Srtp)) when
    /// SRTP protection fails.
    pub fn write_rtp_packet_with(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<bool, RtcError> {
        self.rtc.send_rtp_with(fill)
    }

    /// RTP mode: builds one RTP packet with `fill` directly in the caller's buffer
    /// `out` — typically the slot of a send batch — and, when it would leave at once
    /// anyway, protects it there and hands it back as [`RtpWritten::Sent`]: the
    /// packet is copied once in all (by `fill`), and no [`Rtc::poll_output`] call is
    /// needed for it. It leaves at once when nothing waits ahead of it in the
    /// `Rtc` (transmits, paced packets), no probe runs and the pacing budget allows
    /// it; it is stamped, kept for RTX and counted exactly as a queued packet is.
    /// Otherwise it is copied into the `Rtc` and queued ([`RtpWritten::Queued`]),
    /// as [`DirectApi::write_rtp_packet_with`] does.
    ///
    /// `out` should be at least 64 bytes longer than the largest packet `fill`
    /// writes (room for the SRTP tag); `fill` is given `out` less that room, at most
    /// the `Rtc`'s buffer size.
    ///
    /// [`Rtc::poll_output`]: crate::Rtc::poll_output
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected (no SRTP keys or no ICE path yet);
    /// [`RtcError::Write`] ([`WriteError::Srtp`](crate::error::WriteError::Srtp)) when
    /// SRTP protection fails.
    pub fn write_rtp_packet_in_place<'b>(
        &mut self,
        out: &'b mut [u8],
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<RtpWritten<'b>, RtcError> {
        self.rtc.send_rtp_with_in_place(out, fill)
    }

    /// RTP mode: protects and sends one complete RTP packet (header + payload).
    ///
    /// To forward header extension values (read with
    /// [`RtpPacketReceived::extensions`](crate::event::RtpPacketReceived::extensions)),
    /// write the header with [`RtpHeader::write`](crate::rtp::RtpHeader::write) and
    /// [`HeaderExtension::Values`](crate::rtp::HeaderExtension::Values), using this
    /// peer's ids from [`MediaInfo::extensions`](crate::media::MediaInfo::extensions)
    /// of [`Rtc::media_info`]: extension ids are per peer.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected (no SRTP keys or no ICE path yet);
    /// [`RtcError::Write`] when the packet is too large
    /// ([`WriteError::TooLarge`](crate::error::WriteError::TooLarge)) or SRTP
    /// protection fails.
    pub fn write_rtp_packet(&mut self, packet: &[u8]) -> Result<(), RtcError> {
        self.rtc.send_rtp_packet(packet)
    }

    /// Retransmits one packet from an external cache, answering an
    /// [`Event::ResendRequest`](crate::Event::ResendRequest). `packet` is the
    /// plaintext RTP packet as it was first sent on our stream `ssrc` (its header
    /// already rewritten for this stream: this SSRC, its sequence number). It goes out
    /// as RTX (RFC 4588: the stream's RTX SSRC, payload type and sequence number, with
    /// the original sequence number prepended to the payload) when RTX is negotiated
    /// for its payload type, else unchanged on the media SSRC.
    ///
    /// With pacing on, the pacer may refuse it (already resent within a round trip,
    /// retransmission budget spent, queue full): the result says whether it was
    /// queued, so that only retransmissions that go out are counted as such.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected or `ssrc` is not one of our send
    /// streams; [`RtcError::Write`] when the packet does not parse or fit, or SRTP
    /// protection fails.
    pub fn write_rtx(&mut self, ssrc: u32, packet: &[u8]) -> Result<RtxOutcome, RtcError> {
        self.rtc.write_rtx(ssrc, packet)
    }

    /// Protects and sends one raw (compound) RTCP packet as is: for fuzz targets
    /// and tests that play a misbehaving peer. Not a public API.
    ///
    /// # Errors
    ///
    /// [`RtcError::InvalidState`] when not connected; [`RtcError::Write`] when the
    /// packet does not fit a datagram or SRTCP protection fails.
    #[cfg(feature = "_internal")]
    #[doc(hidden)]
    pub fn write_rtcp_packet(&mut self, packet: &[u8]) -> Result<(), RtcError> {
        self.rtc.send_rtcp(|buf| {
            let out = buf
                .get_mut(..packet.len())
                .ok_or(crate::rtcp::RtcpError::BufferTooSmall)?;
            out.copy_from_slice(packet);
            Ok(packet.len())
        })
    }
}
