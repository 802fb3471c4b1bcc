//! Session-key derivation (RFC 3711 §4.3, RFC 7714 §11) and the per-packet transforms
//! (AES-CM + HMAC-SHA1 from RFC 3711, AES-GCM from RFC 7714), on aws-lc-rs.
//!
//! Every key is expanded once when the session cipher is built; a packet only builds
//! an IV/nonce on the stack and runs the cipher.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{self, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::{SrtpError, SrtpProfile};

/// Length of the AES-CM session salt (112 bits).
pub(crate) const CM_SALT_LEN: usize = 14;
/// Length of the AES-GCM session salt (96 bits).
pub(crate) const GCM_SALT_LEN: usize = 12;
/// Length of the HMAC-SHA1 session authentication key (160 bits).
pub(crate) const AUTH_KEY_LEN: usize = 20;
/// Length of the HMAC-SHA1 tag kept on the wire (80 bits).
const CM_TAG_LEN: usize = 10;
/// Length of the AES-GCM tag.
const GCM_TAG_LEN: usize = 16;
/// Length of the fixed RTCP header covered as AAD / left in clear (V..PT, length, SSRC).
pub(crate) const RTCP_HEADER_LEN: usize = 8;
/// Length of the E-flag / SRTCP-index word.
pub(crate) const SRTCP_INDEX_LEN: usize = 4;
/// The E (encrypted) flag in the SRTCP index word.
pub(crate) const E_FLAG: u32 = 0x8000_0000;

/// Key-derivation labels (RFC 3711 §4.3.1 / §4.3.2).
#[derive(Clone, Copy)]
pub(crate) struct Labels {
    enc: u8,
    auth: u8,
    salt: u8,
}

/// Labels for the SRTP session keys.
pub(crate) const SRTP_LABELS: Labels = Labels {
    enc: 0x00,
    auth: 0x01,
    salt: 0x02,
};
/// Labels for the SRTCP session keys.
pub(crate) const SRTCP_LABELS: Labels = Labels {
    enc: 0x03,
    auth: 0x04,
    salt: 0x05,
};

fn aes_algorithm(key_len: usize) -> Result<&'static cipher::Algorithm, SrtpError> {
    match key_len {
        16 => Ok(&cipher::AES_128),
        32 => Ok(&cipher::AES_256),
        _ => Err(SrtpError::BadKeyLength),
    }
}

fn ctr_key(key: &[u8]) -> Result<EncryptingKey, SrtpError> {
    let unbound = UnboundCipherKey::new(aes_algorithm(key.len())?, key)
        .map_err(|_| SrtpError::BadKeyLength)?;
    EncryptingKey::ctr(unbound).map_err(|_| SrtpError::Crypto)
}

/// XOR AES counter-mode keystream, starting at counter block `iv`, into `in_out`.
fn ctr_apply(key: &EncryptingKey, iv: [u8; 16], in_out: &mut [u8]) -> Result<(), SrtpError> {
    if in_out.is_empty() {
        return Ok(());
    }
    key.less_safe_encrypt(in_out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map(|_| ())
        .map_err(|_| SrtpError::Crypto)
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with key-derivation rate 0: fills `out` with
/// keystream under the master key, starting at IV `(label XOR master_salt) * 2^16`.
/// A 96-bit master salt (GCM profiles, RFC 7714 §11) is zero-padded on the right to
/// 112 bits.
pub(crate) fn derive_key(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let mut iv = [0u8; 16];
    let salt_dst = iv
        .get_mut(..master_salt.len())
        .filter(|_| master_salt.len() <= CM_SALT_LEN)
        .ok_or(SrtpError::BadSaltLength)?;
    salt_dst.copy_from_slice(master_salt);
    // key_id = label || r (48 bits, zero for kdr 0) sits in the low 56 bits of the
    // 112-bit value, so the label lands on byte 7.
    iv[7] ^= label;
    out.fill(0);
    let key = ctr_key(master_key)?;
    ctr_apply(&key, iv, out)
}

/// Session keys of one direction and one of SRTP/SRTCP, pre-expanded.
// The AES and HMAC states of `Cm` (1.7 KB) are boxed, allocated once with the keys: a
// context holds two ciphers and a session two contexts, so inline they would cost an
// AES-GCM session (24-byte key handle) ~6.8 KB for nothing.
pub(crate) enum SessionCipher {
    /// AES counter mode with HMAC-SHA1-80 (RFC 3711).
    Cm {
        ctr: Box<EncryptingKey>,
        auth: Box<hmac::Key>,
        salt: [u8; CM_SALT_LEN],
    },
    /// AES-GCM AEAD (RFC 7714).
    Gcm {
        key: LessSafeKey,
        salt: [u8; GCM_SALT_LEN],
    },
}

impl core::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        match self {
            SessionCipher::Cm { .. } => f.write_str("SessionCipher::Cm"),
            SessionCipher::Gcm { .. } => f.write_str("SessionCipher::Gcm"),
        }
    }
}

impl SessionCipher {
    /// Derive the session keys for `labels` from a master key and salt.
    pub(crate) fn derive(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        labels: Labels,
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.master_key_len() {
            return Err(SrtpError::BadKeyLength);
        }
        if master_salt.len() != profile.master_salt_len() {
            return Err(SrtpError::BadSaltLength);
        }
        let mut enc = [0u8; 32];
        let enc = enc
            .get_mut(..profile.master_key_len())
            .ok_or(SrtpError::BadKeyLength)?;
        derive_key(master_key, master_salt, labels.enc, enc)?;
        let cipher = if profile.is_aead() {
            let mut salt = [0u8; GCM_SALT_LEN];
            derive_key(master_key, master_salt, labels.salt, &mut salt)?;
            Self::gcm(enc, salt)
        } else {
            let mut salt = [0u8; CM_SALT_LEN];
            derive_key(master_key, master_salt, labels.salt, &mut salt)?;
            let mut auth = [0u8; AUTH_KEY_LEN];
            derive_key(master_key, master_salt, labels.auth, &mut auth)?;
            let c = Self::cm(enc, salt, &auth);
            auth.fill(0);
            c
        };
        enc.fill(0);
        cipher
    }

    /// An AES-CM/HMAC-SHA1 cipher from session keys.
    pub(crate) fn cm(
        enc_key: &[u8],
        salt: [u8; CM_SALT_LEN],
        auth_key: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(SessionCipher::Cm {
            ctr: Box::new(ctr_key(enc_key)?),
            auth: Box::new(hmac::Key::new(
                hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                auth_key,
            )),
            salt,
        })
    }

    /// An AES-GCM cipher from session keys.
    pub(crate) fn gcm(enc_key: &[u8], salt: [u8; GCM_SALT_LEN]) -> Result<Self, SrtpError> {
        let alg = match enc_key.len() {
            16 => &aead::AES_128_GCM,
            32 => &aead::AES_256_GCM,
            _ => return Err(SrtpError::BadKeyLength),
        };
        let key = UnboundKey::new(alg, enc_key).map_err(|_| SrtpError::BadKeyLength)?;
        Ok(SessionCipher::Gcm {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// Length of the authentication tag this cipher appends.
    pub(crate) const fn tag_len(&self) -> usize {
        match self {
            SessionCipher::Cm { .. } => CM_TAG_LEN,
            SessionCipher::Gcm { .. } => GCM_TAG_LEN,
        }
    }

    /// Encrypt and authenticate the RTP packet `buf[..len]` (header `buf[..hdr]`) with
    /// 48-bit packet index `index`, appending the tag. `buf` must hold `len + tag_len`.
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut [u8],
        hdr: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let out_len = len + self.tag_len();
        let pkt = buf.get_mut(..out_len).ok_or(SrtpError::BufferTooSmall)?;
        let (body, tag_out) = pkt.split_at_mut(len);
        let (head, payload) = body.split_at_mut(hdr.min(len));
        match self {
            SessionCipher::Cm { ctr, auth, salt } => {
                ctr_apply(ctr, cm_iv(salt, ssrc, index), payload)?;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(head);
                ctx.update(payload);
                ctx.update(&roc);
                let tag = ctx.sign();
                copy_prefix(tag_out, tag.as_ref())
            }
            SessionCipher::Gcm { key, salt } => {
                let nonce = gcm_iv(salt, ssrc, index);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&*head), payload)
                    .map_err(|_| SrtpError::Crypto)?;
                copy_prefix(tag_out, tag.as_ref())
            }
        }?;
        Ok(out_len)
    }

    /// Authenticate and decrypt the SRTP packet `buf` (header `buf[..hdr]`, tag at the
    /// end) with packet index `index`. Returns the plaintext length.
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        hdr: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let n = buf
            .len()
            .checked_sub(self.tag_len())
            .filter(|n| *n >= hdr)
            .ok_or(SrtpError::TooShort)?;
        let (body, tag) = buf.split_at_mut(n);
        let (head, payload) = body.split_at_mut(hdr);
        match self {
            SessionCipher::Cm { ctr, auth, salt } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(head);
                ctx.update(payload);
                ctx.update(&roc);
                let expected = ctx.sign();
                let expected = expected
                    .as_ref()
                    .get(..CM_TAG_LEN)
                    .ok_or(SrtpError::Crypto)?;
                verify_slices_are_equal(expected, tag).map_err(|_| SrtpError::AuthFailed)?;
                ctr_apply(ctr, cm_iv(salt, ssrc, index), payload)?;
            }
            SessionCipher::Gcm { key, salt } => {
                let nonce = gcm_iv(salt, ssrc, index);
                key.open_in_place_separate_tag(nonce, Aad::from(&*head), tag, payload)
                    .map_err(|_| SrtpError::AuthFailed)?;
            }
        }
        Ok(n)
    }

    /// Encrypt and authenticate the RTCP packet `buf[..len]` with SRTCP index
    /// `index` (31 bits), appending the E-flag/index word and the tag (AES-CM:
    /// `index word | tag`; GCM: `tag | index word`, RFC 7714 §9).
    pub(crate) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let out_len = len + self.tag_len() + SRTCP_INDEX_LEN;
        let pkt = buf.get_mut(..out_len).ok_or(SrtpError::BufferTooSmall)?;
        let word = (index | E_FLAG).to_be_bytes();
        let (body, trailer) = pkt.split_at_mut(len);
        let (head, payload) = body.split_at_mut(RTCP_HEADER_LEN.min(len));
        match self {
            SessionCipher::Cm { ctr, auth, salt } => {
                ctr_apply(ctr, cm_iv(salt, ssrc, u64::from(index)), payload)?;
                let (word_out, tag_out) = trailer.split_at_mut(SRTCP_INDEX_LEN);
                word_out.copy_from_slice(&word);
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(head);
                ctx.update(payload);
                ctx.update(&word);
                let tag = ctx.sign();
                copy_prefix(tag_out, tag.as_ref())?;
            }
            SessionCipher::Gcm { key, salt } => {
                let nonce = gcm_rtcp_iv(salt, ssrc, index);
                let aad = rtcp_aad(head, word)?;
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&aad[..]), payload)
                    .map_err(|_| SrtpError::Crypto)?;
                let (tag_out, word_out) = trailer.split_at_mut(GCM_TAG_LEN);
                copy_prefix(tag_out, tag.as_ref())?;
                word_out.copy_from_slice(&word);
            }
        }
        Ok(out_len)
    }

    /// Read the SRTCP index word of the protected packet `buf` (which must be at least
    /// header + trailer long). Returns `(encrypted, index)`.
    pub(crate) fn srtcp_index(&self, buf: &[u8]) -> Result<(bool, u32), SrtpError> {
        let min = RTCP_HEADER_LEN + self.tag_len() + SRTCP_INDEX_LEN;
        if buf.len() < min {
            return Err(SrtpError::TooShort);
        }
        let at = match self {
            SessionCipher::Cm { .. } => buf.len() - CM_TAG_LEN - SRTCP_INDEX_LEN,
            SessionCipher::Gcm { .. } => buf.len() - SRTCP_INDEX_LEN,
        };
        let word = read_u32(buf, at)?;
        Ok((word & E_FLAG != 0, word & !E_FLAG))
    }

    /// Authenticate and (if the E flag is set) decrypt the SRTCP packet `buf`. Returns
    /// the plaintext RTCP length. On failure `buf` may have been modified.
    pub(crate) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        encrypted: bool,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let n = buf
            .len()
            .checked_sub(self.tag_len() + SRTCP_INDEX_LEN)
            .filter(|n| *n >= RTCP_HEADER_LEN)
            .ok_or(SrtpError::TooShort)?;
        let word = (if encrypted { index | E_FLAG } else { index }).to_be_bytes();
        match self {
            SessionCipher::Cm { ctr, auth, salt } => {
                let (authed, tag) = buf.split_at_mut(n + SRTCP_INDEX_LEN);
                let expected = hmac::sign(auth, authed);
                let expected = expected
                    .as_ref()
                    .get(..CM_TAG_LEN)
                    .ok_or(SrtpError::Crypto)?;
                verify_slices_are_equal(expected, tag).map_err(|_| SrtpError::AuthFailed)?;
                if encrypted {
                    let payload = authed
                        .get_mut(RTCP_HEADER_LEN..n)
                        .ok_or(SrtpError::TooShort)?;
                    ctr_apply(ctr, cm_iv(salt, ssrc, u64::from(index)), payload)?;
                }
            }
            SessionCipher::Gcm { key, salt } => {
                let nonce = gcm_rtcp_iv(salt, ssrc, index);
                let mut tag = [0u8; GCM_TAG_LEN];
                tag.copy_from_slice(buf.get(n..n + GCM_TAG_LEN).ok_or(SrtpError::TooShort)?);
                if encrypted {
                    let (body, _) = buf.split_at_mut(n);
                    let (head, payload) = body.split_at_mut(RTCP_HEADER_LEN);
                    let aad = rtcp_aad(head, word)?;
                    key.open_in_place_separate_tag(nonce, Aad::from(&aad[..]), &tag, payload)
                        .map_err(|_| SrtpError::AuthFailed)?;
                } else {
                    // Unencrypted SRTCP (RFC 7714 §9.2): the whole packet and the index
                    // word are AAD. Move the word next to the packet so the AAD is one
                    // contiguous slice.
                    let word_dst = buf
                        .get_mut(n..n + SRTCP_INDEX_LEN)
                        .ok_or(SrtpError::TooShort)?;
                    word_dst.copy_from_slice(&word);
                    let aad = buf.get(..n + SRTCP_INDEX_LEN).ok_or(SrtpError::TooShort)?;
                    key.open_in_place_separate_tag(nonce, Aad::from(aad), &tag, &mut [])
                        .map_err(|_| SrtpError::AuthFailed)?;
                }
            }
        }
        Ok(n)
    }
}

/// The AES-CM IV of RFC 3711 §4.1.1: `(k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`.
pub(crate) fn cm_iv(salt: &[u8; CM_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..CM_SALT_LEN].copy_from_slice(salt);
    xor_into(&mut iv[4..8], &ssrc.to_be_bytes());
    xor_into(&mut iv[8..14], &index.to_be_bytes()[2..]);
    iv
}

/// The SRTP AES-GCM IV of RFC 7714 §8.1: `(0 || SSRC || ROC || SEQ) XOR salt`.
fn gcm_iv(salt: &[u8; GCM_SALT_LEN], ssrc: u32, index: u64) -> Nonce {
    let mut iv = *salt;
    xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
    xor_into(&mut iv[6..12], &index.to_be_bytes()[2..]);
    Nonce::assume_unique_for_key(iv)
}

/// The SRTCP AES-GCM IV of RFC 7714 §9.1: `(0 || SSRC || 0 || 0 || index) XOR salt`.
fn gcm_rtcp_iv(salt: &[u8; GCM_SALT_LEN], ssrc: u32, index: u32) -> Nonce {
    let mut iv = *salt;
    xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
    xor_into(&mut iv[8..12], &index.to_be_bytes());
    Nonce::assume_unique_for_key(iv)
}

/// SRTCP GCM AAD for encrypted packets: 8-byte header then the E/index word.
fn rtcp_aad(head: &[u8], word: [u8; 4]) -> Result<[u8; 12], SrtpError> {
    let mut aad = [0u8; RTCP_HEADER_LEN + SRTCP_INDEX_LEN];
    aad[..RTCP_HEADER_LEN].copy_from_slice(head.get(..RTCP_HEADER_LEN).ok_or(SrtpError::TooShort)?);
    aad[RTCP_HEADER_LEN..].copy_from_slice(&word);
    Ok(aad)
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

fn copy_prefix(dst: &mut [u8], src: &[u8]) -> Result<(), SrtpError> {
    let src = src.get(..dst.len()).ok_or(SrtpError::Crypto)?;
    dst.copy_from_slice(src);
    Ok(())
}

fn read_u32(buf: &[u8], at: usize) -> Result<u32, SrtpError> {
    let b: [u8; 4] = buf
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or(SrtpError::TooShort)?;
    Ok(u32::from_be_bytes(b))
}
