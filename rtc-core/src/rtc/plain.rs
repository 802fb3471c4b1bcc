//! Plain RTP mode: an `Rtc` without ICE and DTLS.
//!
//! The caller gives the remote address and, optionally, SRTP master keys agreed out of
//! band (SDES-style, RFC 4568 `inline:` key‖salt); the `Rtc` is connected at once and
//! sends RTP/RTCP unprotected ([`Protection::Plain`]) or protected with those keys. The
//! rest (streams, RTCP reports, NACK/PLI, RTP mode) is the same as for a DTLS-SRTP
//! connection. This is how RTP tools that speak neither ICE nor DTLS (ffmpeg,
//! GStreamer's `udpsrc`/`udpsink`) exchange media with an `Rtc`.

use std::net::SocketAddr;
use std::time::Duration;

use super::{PendingEvent, Rtc, RtcError};
use crate::dtls::SrtpProfileId;
use crate::io::Protocol;
use crate::srtp::{SrtpContext, SrtpError, SrtpProfile};

/// How one direction of media is protected: SRTP, or not at all (plain RTP mode
/// without keys). The methods mirror [`SrtpContext`]'s so the send and receive paths
/// do not care which.
///
/// The SRTP variant is large; it lives once per direction in each `Rtc`, in place like
/// the `Option<SrtpContext>` it replaced, so boxing it would only add a pointer chase
/// per packet.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Protection {
    /// SRTP/SRTCP with a context keyed by DTLS-SRTP or given keys.
    Srtp(SrtpContext),
    /// Plain RTP/RTCP: packets pass unchanged.
    Plain,
}

impl Protection {
    pub(crate) fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        match self {
            Protection::Srtp(c) => c.protect_rtp(buf, len),
            Protection::Plain => Ok(len),
        }
    }

    pub(crate) fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        match self {
            Protection::Srtp(c) => c.protect_rtcp(buf, len),
            Protection::Plain => Ok(len),
        }
    }

    pub(crate) fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        match self {
            Protection::Srtp(c) => c.unprotect_rtp(buf),
            Protection::Plain => Ok(buf.len()),
        }
    }

    pub(crate) fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        match self {
            Protection::Srtp(c) => c.unprotect_rtcp(buf),
            Protection::Plain => Ok(buf.len()),
        }
    }
}

/// SRTP master keys for a plain RTP connection, agreed out of band: each is the
/// master key followed by the master salt (the bytes of an SDES `inline:` value,
/// RFC 4568 §6.1, after base64 decoding).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainSrtp {
    /// The protection profile (crypto suite).
    pub profile: SrtpProfileId,
    /// Key ‖ salt we protect what we send with.
    pub local_key: Vec<u8>,
    /// Key ‖ salt the peer protects what it sends with.
    pub remote_key: Vec<u8>,
}

impl std::fmt::Debug for PlainSrtp {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainSrtp")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl PlainSrtp {
    /// Length in bytes of key ‖ salt for `profile` (30 for AES_CM_128_HMAC_SHA1_80,
    /// 28 for AEAD_AES_128_GCM, 44 for AEAD_AES_256_GCM).
    pub const fn key_len(profile: SrtpProfileId) -> usize {
        let p = srtp_profile(profile);
        p.master_key_len() + p.master_salt_len()
    }
}

const fn srtp_profile(p: SrtpProfileId) -> SrtpProfile {
    match p {
        SrtpProfileId::Aes128CmSha1_80 => SrtpProfile::Aes128CmSha1_80,
        SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
    }
}

/// A context from one key ‖ salt.
fn context(profile: SrtpProfileId, key_salt: &[u8]) -> Result<SrtpContext, SrtpError> {
    let p = srtp_profile(profile);
    if key_salt.len() != p.master_key_len() + p.master_salt_len() {
        return Err(SrtpError::BadKeyLength);
    }
    let (key, salt) = key_salt.split_at(p.master_key_len());
    SrtpContext::new(p, key, salt)
}

impl Rtc {
    /// Switches to plain RTP mode (see [`DirectApi::start_plain`](crate::direct::DirectApi::start_plain)).
    pub(crate) fn start_plain(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        srtp: Option<&PlainSrtp>,
    ) -> Result<(), RtcError> {
        if self.transport.send_path.is_some()
            || self.transport.connected
            || self.transport.dtls.is_active().is_some()
        {
            return Err(RtcError::InvalidState(
                "plain mode must be set before ICE or DTLS start",
            ));
        }
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(RtcError::InvalidState("plain mode needs a remote address"));
        }
        let (tx, rx) = match srtp {
            Some(k) => (
                Protection::Srtp(context(k.profile, &k.local_key).map_err(RtcError::SrtpKeys)?),
                Protection::Srtp(context(k.profile, &k.remote_key).map_err(RtcError::SrtpKeys)?),
            ),
            None => (Protection::Plain, Protection::Plain),
        };
        let now = self.last_now;
        let t = &mut self.transport;
        t.srtp_tx = Some(tx);
        t.srtp_rx = Some(rx);
        t.srtp_profile = srtp.map(|k| k.profile);
        t.send_path = Some((Protocol::Udp, local, remote));
        t.recv_sources = vec![(Protocol::Udp, remote)];
        t.connected = true;
        t.plain = true;
        self.session.next_report_at = now + Duration::from_millis(200);
        if let Some(i) = self.config.stats_interval {
            self.session.next_stats_at = now + i;
        }
        self.outbox.events.push_back(PendingEvent::Connected);
        Ok(())
    }

    /// Whether this `Rtc` is in plain RTP mode (no ICE, no DTLS).
    pub fn is_plain(&self) -> bool {
        self.transport.plain
    }
}
