//! SRTP error type.

/// Everything that can go wrong creating an SRTP context or (un)protecting a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet is shorter than its header plus the SRTP trailer.
    #[error("packet too short")]
    TooShort,
    /// The RTP/RTCP header is malformed (wrong version, or its CSRC list or header
    /// extension runs past the end of the packet).
    #[error("malformed RTP/RTCP header")]
    BadHeader,
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    AuthFailed,
    /// The packet index was already received (replay).
    #[error("replayed packet")]
    Replayed,
    /// The packet index is older than the replay window allows.
    #[error("packet too old for the replay window")]
    TooOld,
    /// The per-context limit on distinct SSRCs was reached.
    #[error("too many SSRCs")]
    TooManySsrcs,
    /// The caller's buffer has no room for the SRTP/SRTCP trailer.
    #[error("buffer too small")]
    BufferTooSmall,
    /// A master key of the wrong length for the profile.
    #[error("bad master key length")]
    BadKeyLength,
    /// A master salt of the wrong length for the profile.
    #[error("bad master salt length")]
    BadSaltLength,
    /// DTLS-SRTP keying material of the wrong length for the profile.
    #[error("bad keying material length")]
    BadKeyingMaterialLength,
    /// The 48-bit SRTP index or 31-bit SRTCP index is exhausted (or would move
    /// outside its range); the session must be re-keyed.
    #[error("packet index exhausted")]
    IndexExhausted,
    /// The underlying crypto library reported an unexpected failure.
    #[error("crypto backend failure")]
    Crypto,
}
