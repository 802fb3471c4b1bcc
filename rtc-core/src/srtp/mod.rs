//! SRTP and SRTCP (RFC 3711) with the AES-GCM profiles of RFC 7714, keyed from
//! DTLS-SRTP (RFC 5764), on aws-lc-rs.
//!
//! An [`SrtpContext`] holds the session keys of one direction (derived once from a
//! master key and salt, key-derivation rate 0) and per-SSRC state: the rollover
//! counter of outgoing streams, and the replay window (128 packets) and highest
//! index of incoming ones. Packets are transformed in place in the caller's buffer;
//! the per-packet path does not allocate (a new SSRC costs one insertion into a
//! sorted table, capped at 1024 SSRCs per table).
//!
//! The module is crate-private, so this example is not a doctest; it runs as the unit
//! test `tests::module_example`.
//!
//! ```ignore
//! use rtc_core::srtp::{SrtpContext, SrtpProfile};
//!
//! let profile = SrtpProfile::AeadAes128Gcm;
//! let km = [7u8; 56]; // DTLS exporter output, profile.keying_material_len() bytes
//! let (mut tx, _) = SrtpContext::pair_from_keying_material(profile, &km, true).unwrap();
//! let (_, mut rx) = SrtpContext::pair_from_keying_material(profile, &km, false).unwrap();
//!
//! let mut buf = [0u8; 1500];
//! let rtp = [0x80, 0x60, 0x00, 0x01, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let n = tx.protect_rtp(&mut buf, rtp.len()).unwrap();
//! assert_eq!(n, rtp.len() + profile.rtp_overhead());
//! let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
//! assert_eq!(&buf[..m], &rtp[..]);
//! ```

mod cipher;
mod error;
mod profile;
mod replay;
#[cfg(test)]
mod tests;

pub use error::SrtpError;
pub use profile::SrtpProfile;

use cipher::{RTCP_HEADER_LEN, SRTCP_LABELS, SRTP_LABELS, SessionCipher};
use replay::{MAX_SRTCP_INDEX, ReplayWindow, SsrcTable, estimate_index};

/// Length of the fixed RTP header.
const RTP_FIXED_HEADER_LEN: usize = 12;

/// Length of the RTP header at the start of `pkt` (12 + 4·CC + extension block),
/// checking version 2 and that the header fits in `pkt`.
fn rtp_header_len(pkt: &[u8]) -> Result<usize, SrtpError> {
    let first = *pkt.first().ok_or(SrtpError::TooShort)?;
    if pkt.len() < RTP_FIXED_HEADER_LEN {
        return Err(SrtpError::TooShort);
    }
    if first >> 6 != 2 {
        return Err(SrtpError::BadHeader);
    }
    let cc = usize::from(first & 0x0f);
    let mut len = RTP_FIXED_HEADER_LEN + 4 * cc;
    if first & 0x10 != 0 {
        // Extension block: 16-bit profile, 16-bit length in 32-bit words.
        let words: [u8; 2] = pkt
            .get(len + 2..len + 4)
            .and_then(|w| w.try_into().ok())
            .ok_or(SrtpError::BadHeader)?;
        let words = usize::from(u16::from_be_bytes(words));
        len += 4 + 4 * words;
    }
    if len > pkt.len() {
        return Err(SrtpError::BadHeader);
    }
    Ok(len)
}

/// `(sequence number, SSRC)` of an RTP packet whose header is known to be present.
fn rtp_seq_ssrc(pkt: &[u8]) -> Result<(u16, u32), SrtpError> {
    let h: &[u8; RTP_FIXED_HEADER_LEN] = pkt
        .get(..RTP_FIXED_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(SrtpError::TooShort)?;
    let seq = u16::from_be_bytes([h[2], h[3]]);
    let ssrc = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    Ok((seq, ssrc))
}

/// Sender SSRC of an RTCP packet, checking the 8-byte header and version 2.
fn rtcp_ssrc(pkt: &[u8]) -> Result<u32, SrtpError> {
    let h: &[u8; RTCP_HEADER_LEN] = pkt
        .get(..RTCP_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(SrtpError::TooShort)?;
    if h[0] >> 6 != 2 {
        return Err(SrtpError::BadHeader);
    }
    Ok(u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
}

/// SRTP/SRTCP crypto context for one direction of one DTLS-SRTP association.
///
/// Use an outbound context for [`protect_rtp`](Self::protect_rtp) /
/// [`protect_rtcp`](Self::protect_rtcp) and an inbound one for
/// [`unprotect_rtp`](Self::unprotect_rtp) / [`unprotect_rtcp`](Self::unprotect_rtcp);
/// see [`SrtpContext::pair_from_keying_material`].
#[derive(Debug)]
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: SessionCipher,
    rtcp: SessionCipher,
    /// Outbound RTP: indices sent per SSRC (ROC = highest >> 16).
    rtp_send: SsrcTable<ReplayWindow>,
    /// Inbound RTP: replay window per SSRC.
    rtp_recv: SsrcTable<ReplayWindow>,
    /// Outbound RTCP: next SRTCP index per SSRC.
    rtcp_send: SsrcTable<u32>,
    /// Inbound RTCP: replay window per SSRC.
    rtcp_recv: SsrcTable<ReplayWindow>,
}

impl SrtpContext {
    /// Build a context from a master key and master salt, deriving the SRTP and
    /// SRTCP session keys (RFC 3711 §4.3 with key-derivation rate 0; RFC 7714 §11).
    ///
    /// Errors: [`SrtpError::BadKeyLength`] / [`SrtpError::BadSaltLength`] when the
    /// lengths do not match `profile`.
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        let rtp = SessionCipher::derive(profile, master_key, master_salt, SRTP_LABELS)?;
        let rtcp = SessionCipher::derive(profile, master_key, master_salt, SRTCP_LABELS)?;
        Ok(Self::from_ciphers(profile, rtp, rtcp))
    }

    pub(crate) const fn from_ciphers(
        profile: SrtpProfile,
        rtp: SessionCipher,
        rtcp: SessionCipher,
    ) -> Self {
        Self {
            profile,
            rtp,
            rtcp,
            rtp_send: SsrcTable::new(),
            rtp_recv: SsrcTable::new(),
            rtcp_send: SsrcTable::new(),
            rtcp_recv: SsrcTable::new(),
        }
    }

    /// Split DTLS-SRTP keying material (RFC 5764 §4.2 layout
    /// `client_key | server_key | client_salt | server_salt`, exactly
    /// [`SrtpProfile::keying_material_len`] bytes) into `(outbound, inbound)`
    /// contexts. The DTLS client sends with the client key; the server with the
    /// server key.
    pub fn pair_from_keying_material(
        profile: SrtpProfile,
        km: &[u8],
        we_are_dtls_client: bool,
    ) -> Result<(SrtpContext, SrtpContext), SrtpError> {
        if km.len() != profile.keying_material_len() {
            return Err(SrtpError::BadKeyingMaterialLength);
        }
        let (keys, salts) = km.split_at(2 * profile.master_key_len());
        let (client_key, server_key) = keys.split_at(profile.master_key_len());
        let (client_salt, server_salt) = salts.split_at(profile.master_salt_len());
        let client = SrtpContext::new(profile, client_key, client_salt)?;
        let server = SrtpContext::new(profile, server_key, server_salt)?;
        Ok(if we_are_dtls_client {
            (client, server)
        } else {
            (server, client)
        })
    }

    /// The profile this context was created for.
    pub const fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Rollover counter of the outbound RTP stream `ssrc`, if any packet was sent.
    pub fn outbound_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_send.get(ssrc).map(|w| (w.highest >> 16) as u32)
    }

    /// Rollover counter of the inbound RTP stream `ssrc` (from its highest
    /// authenticated index), if any packet was accepted.
    pub fn inbound_roc(&self, ssrc: u32) -> Option<u32> {
        self.rtp_recv.get(ssrc).map(|w| (w.highest >> 16) as u32)
    }

    /// Protect the RTP packet `buf[..len]` in place: encrypt the payload and append
    /// the authentication tag. `buf` must have at least
    /// [`SrtpProfile::rtp_overhead`] bytes after `len`. Returns the SRTP length.
    ///
    /// The rollover counter of each SSRC is tracked from the sequence numbers sent.
    /// Protecting the same (SSRC, packet index) twice is refused with
    /// [`SrtpError::Replayed`] (and an index older than the last 128 with
    /// [`SrtpError::TooOld`]): reusing an index reuses the keystream / GCM nonce.
    /// To retransmit, resend the already-protected bytes (or use RTX).
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let hdr = rtp_header_len(pkt)?;
        let (seq, ssrc) = rtp_seq_ssrc(pkt)?;
        if buf.len() < len + self.profile.rtp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let sent = self
            .rtp_send
            .get_or_insert_with(ssrc, || ReplayWindow::empty_at(u64::from(seq)))?;
        let index = match estimate_index(sent.highest, seq) {
            Some(i) => i,
            // A sequence number "before" the first one sent, while still in ROC 0.
            None if sent.highest >> 16 == 0 => u64::from(seq),
            None => return Err(SrtpError::IndexExhausted),
        };
        // Never reuse an index: with AES-GCM a repeated nonce over different
        // plaintext would break confidentiality and authentication.
        sent.check(index)?;
        let n = self.rtp.protect_rtp(buf, hdr, len, ssrc, index)?;
        sent.commit(index);
        Ok(n)
    }

    /// Unprotect the SRTP packet `buf` (its whole length) in place: check the replay
    /// window, verify the tag, decrypt. Returns the RTP length (`buf[..n]` is the
    /// plaintext packet). The rollover counter is estimated as in RFC 3711 §3.3.1;
    /// replay/ROC state is only updated once the packet authenticates.
    ///
    /// On error the contents of `buf` are unspecified.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let body_len = buf
            .len()
            .checked_sub(self.profile.rtp_overhead())
            .ok_or(SrtpError::TooShort)?;
        let body = buf.get(..body_len).ok_or(SrtpError::TooShort)?;
        let hdr = rtp_header_len(body)?;
        let (seq, ssrc) = rtp_seq_ssrc(body)?;
        let index = match self.rtp_recv.get(ssrc) {
            Some(window) => {
                let index = match estimate_index(window.highest, seq) {
                    Some(i) => i,
                    None if window.highest >> 16 == 0 => return Err(SrtpError::TooOld),
                    None => return Err(SrtpError::IndexExhausted),
                };
                window.check(index)?;
                index
            }
            None => {
                if !self.rtp_recv.has_room_for(ssrc) {
                    return Err(SrtpError::TooManySsrcs);
                }
                u64::from(seq)
            }
        };
        let n = self.rtp.unprotect_rtp(buf, hdr, ssrc, index)?;
        self.rtp_recv
            .get_or_insert_with(ssrc, || ReplayWindow::starting_at(index))?
            .commit(index);
        Ok(n)
    }

    /// Protect the RTCP packet (or compound packet) `buf[..len]` in place: encrypt
    /// everything after the first 8 bytes, append the E flag + 31-bit SRTCP index and
    /// the tag. `buf` must have [`SrtpProfile::rtcp_overhead`] spare bytes. Returns the
    /// SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let ssrc = rtcp_ssrc(pkt)?;
        if buf.len() < len + self.profile.rtcp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let next = self.rtcp_send.get_or_insert_with(ssrc, || 0)?;
        let index = *next;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let n = self.rtcp.protect_rtcp(buf, len, ssrc, index)?;
        *next = index + 1;
        Ok(n)
    }

    /// Unprotect the SRTCP packet `buf` in place: check the replay window on the
    /// SRTCP index, verify the tag, decrypt if the E flag is set. Returns the RTCP
    /// length. On error the contents of `buf` are unspecified.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let (encrypted, index) = self.rtcp.srtcp_index(buf)?;
        let ssrc = rtcp_ssrc(buf)?;
        let index64 = u64::from(index);
        match self.rtcp_recv.get(ssrc) {
            Some(window) => window.check(index64)?,
            None if !self.rtcp_recv.has_room_for(ssrc) => return Err(SrtpError::TooManySsrcs),
            None => {}
        }
        let n = self.rtcp.unprotect_rtcp(buf, ssrc, encrypted, index)?;
        self.rtcp_recv
            .get_or_insert_with(ssrc, || ReplayWindow::starting_at(index64))?
            .commit(index64);
        Ok(n)
    }
}
