//! SRTP protection profiles and their parameters.

/// An SRTP protection profile (crypto suite) negotiated through DTLS-SRTP (RFC 5764).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711, DTLS-SRTP id `0x0001`): AES-128 counter
    /// mode with an 80-bit HMAC-SHA1 authentication tag.
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714, DTLS-SRTP id `0x0007`).
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714, DTLS-SRTP id `0x0008`).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Every supported profile, most preferred first.
    pub const ALL: [SrtpProfile; 3] = [
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::Aes128CmSha1_80,
    ];

    /// The largest [`SrtpProfile::rtp_overhead`] of any profile: spare bytes a caller
    /// must leave after an RTP packet to protect it with any profile.
    pub const MAX_RTP_OVERHEAD: usize = 16;

    /// The largest [`SrtpProfile::rtcp_overhead`] of any profile.
    pub const MAX_RTCP_OVERHEAD: usize = 20;

    /// Length in bytes of the master key.
    pub const fn master_key_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 | SrtpProfile::AeadAes128Gcm => 16,
            SrtpProfile::AeadAes256Gcm => 32,
        }
    }

    /// Length in bytes of the master salt (112 bits for AES-CM, 96 bits for GCM).
    pub const fn master_salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 => 14,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 12,
        }
    }

    /// Length in bytes of the authentication tag appended to each packet.
    pub const fn tag_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 => 10,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 16,
        }
    }

    /// Bytes added to an RTP packet by [`SrtpContext::protect_rtp`](super::SrtpContext::protect_rtp).
    pub const fn rtp_overhead(self) -> usize {
        self.tag_len()
    }

    /// Bytes added to an RTCP packet by
    /// [`SrtpContext::protect_rtcp`](super::SrtpContext::protect_rtcp): the tag plus the
    /// 4-byte E-flag/SRTCP-index word.
    pub const fn rtcp_overhead(self) -> usize {
        self.tag_len() + 4
    }

    /// Length of the DTLS exporter output needed to key both directions (RFC 5764 §4.2):
    /// two master keys plus two master salts.
    pub const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// The DTLS-SRTP protection profile identifier (RFC 5764 §4.1.2, RFC 7714 §14.2).
    pub const fn dtls_id(self) -> u16 {
        match self {
            SrtpProfile::Aes128CmSha1_80 => 0x0001,
            SrtpProfile::AeadAes128Gcm => 0x0007,
            SrtpProfile::AeadAes256Gcm => 0x0008,
        }
    }

    /// The profile for a DTLS-SRTP protection profile identifier, if supported.
    pub const fn from_dtls_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(SrtpProfile::Aes128CmSha1_80),
            0x0007 => Some(SrtpProfile::AeadAes128Gcm),
            0x0008 => Some(SrtpProfile::AeadAes256Gcm),
            _ => None,
        }
    }

    /// Whether this is one of the RFC 7714 AEAD (AES-GCM) profiles.
    pub const fn is_aead(self) -> bool {
        matches!(
            self,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm
        )
    }
}
