//! STUN message codec (RFC 8489) with the ICE attributes of RFC 8445.
//!
//! [`StunMessage::parse`] validates the framing of a message and decodes the attributes
//! ICE needs into typed, borrowed fields; nothing is copied. [`StunWriter`] builds a
//! message into a caller-provided buffer, optionally closing it with
//! MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32).
//!
//! Only the first occurrence of each known attribute is kept. Attributes that follow
//! MESSAGE-INTEGRITY (other than FINGERPRINT and MESSAGE-INTEGRITY-SHA256) and anything
//! that follows FINGERPRINT are ignored, as RFC 8489 §14.5 and §14.7 require.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aws_lc_rs::{constant_time, hmac};

mod write;

pub use write::StunWriter;

/// The fixed magic cookie of every RFC 5389/8489 STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN message header in bytes.
pub const HEADER_LEN: usize = 20;
/// XOR constant applied to the CRC-32 of the FINGERPRINT attribute.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Attribute type numbers used by this module (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Longest USERNAME value accepted or written (RFC 8489 §14.3).
const MAX_USERNAME: usize = 513;
/// Longest REALM, NONCE, SOFTWARE or ERROR-CODE reason value, in bytes (RFC 8489: 763).
const MAX_TEXT: usize = 763;
const MI_LEN: usize = 20;

/// Errors from parsing or writing STUN messages.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Fewer than 20 bytes, or fewer bytes than the header's length field announces.
    #[error("STUN message truncated")]
    Truncated,
    /// The two most significant bits of the message are not zero.
    #[error("not a STUN message (leading bits set)")]
    NotStun,
    /// The magic cookie is not 0x2112A442.
    #[error("bad STUN magic cookie")]
    BadMagicCookie,
    /// The length field is not a multiple of 4 or disagrees with the datagram size.
    #[error("bad STUN message length")]
    BadLength,
    /// An attribute (with its padding) runs past the end of the message.
    #[error("STUN attribute 0x{0:04x} overruns the message")]
    AttributeOverrun(u16),
    /// A known attribute has a malformed value.
    #[error("malformed STUN attribute 0x{0:04x}")]
    BadAttribute(u16),
    /// The output buffer is too small for what is being written.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// An attribute was written after MESSAGE-INTEGRITY or FINGERPRINT.
    #[error("STUN attribute written after MESSAGE-INTEGRITY or FINGERPRINT")]
    AttributeOrder,
    /// A value is too long for its attribute or an ERROR-CODE is out of range.
    #[error("STUN attribute value out of range")]
    ValueOutOfRange,
}

/// The class of a STUN message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request; expects a response.
    Request,
    /// An indication; no response.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// The method of a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Binding (0x001), the only method ICE uses.
    Binding,
    /// Any other 12-bit method number.
    Other(u16),
}

impl Method {
    fn number(self) -> u16 {
        match self {
            Method::Binding => 1,
            Method::Other(m) => m & 0x0fff,
        }
    }
    fn from_number(n: u16) -> Method {
        if n == 1 {
            Method::Binding
        } else {
            Method::Other(n)
        }
    }
}

/// Encodes class and method into the 14-bit message type field.
fn message_type(class: Class, method: Method) -> u16 {
    let m = method.number();
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_message_type(t: u16) -> (Class, Method) {
    let m = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let c = ((t >> 4) & 1) | ((t >> 7) & 2);
    let class = match c {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (class, Method::from_number(m))
}

/// A 96-bit STUN transaction id.
pub type TransactionId = [u8; 12];

/// The value of an ERROR-CODE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The error code, 300..=699 (e.g. 487 Role Conflict).
    pub code: u16,
    /// The UTF-8 reason phrase.
    pub reason: &'a str,
}

/// A parsed STUN message borrowing from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunMessage<'a> {
    raw: &'a [u8],
    class: Class,
    method: Method,
    transaction_id: TransactionId,
    username: Option<&'a str>,
    realm: Option<&'a str>,
    nonce: Option<&'a str>,
    software: Option<&'a str>,
    xor_mapped_address: Option<SocketAddr>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    error_code: Option<ErrorCode<'a>>,
    /// Offset of the MESSAGE-INTEGRITY attribute header and its value.
    integrity: Option<(usize, &'a [u8])>,
    /// Offset of the FINGERPRINT attribute header and its value.
    fingerprint: Option<(usize, u32)>,
    unknown_required: Option<u16>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn text(typ: u16, v: &[u8], max: usize) -> Result<&str, StunError> {
    if v.len() > max {
        return Err(StunError::BadAttribute(typ));
    }
    std::str::from_utf8(v).map_err(|_| StunError::BadAttribute(typ))
}

fn fixed<const N: usize>(typ: u16, v: &[u8]) -> Result<[u8; N], StunError> {
    v.try_into().map_err(|_| StunError::BadAttribute(typ))
}

fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Result<SocketAddr, StunError> {
    let bad = StunError::BadAttribute(attr::XOR_MAPPED_ADDRESS);
    let (head, addr) = v.split_at_checked(4).ok_or(bad)?;
    let port = u16::from_be_bytes([head[2], head[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (head[1], addr.len()) {
        (0x01, 4) => {
            let x = u32::from_be_bytes(fixed::<4>(attr::XOR_MAPPED_ADDRESS, addr)?) ^ MAGIC_COOKIE;
            IpAddr::V4(Ipv4Addr::from(x))
        }
        (0x02, 16) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tid);
            let mut a = fixed::<16>(attr::XOR_MAPPED_ADDRESS, addr)?;
            for (b, k) in a.iter_mut().zip(key) {
                *b ^= k;
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(bad),
    };
    Ok(SocketAddr::new(ip, port))
}

impl<'a> StunMessage<'a> {
    /// Parses and validates one STUN message that occupies all of `buf`.
    ///
    /// Checks the leading zero bits, the magic cookie, that the length field is a
    /// multiple of 4 and matches `buf`, and that every attribute (with padding) fits.
    /// Unknown attributes are skipped. Does not verify MESSAGE-INTEGRITY or
    /// FINGERPRINT; use [`check_integrity`](Self::check_integrity) and
    /// [`check_fingerprint`](Self::check_fingerprint).
    ///
    /// # Errors
    ///
    /// A [`StunError`] naming the first check that failed (truncated input, not STUN,
    /// bad magic cookie, bad length, or an attribute that overruns or is malformed).
    pub fn parse(buf: &'a [u8]) -> Result<StunMessage<'a>, StunError> {
        let header: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(StunError::Truncated)?;
        if header[0] & 0xc0 != 0 {
            return Err(StunError::NotStun);
        }
        let typ = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
            return Err(StunError::BadMagicCookie);
        }
        if !len.is_multiple_of(4) {
            return Err(StunError::BadLength);
        }
        if buf.len() < HEADER_LEN + len {
            return Err(StunError::Truncated);
        }
        if buf.len() != HEADER_LEN + len {
            return Err(StunError::BadLength);
        }
        let (class, method) = split_message_type(typ);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&header[8..20]);
        let mut msg = StunMessage {
            raw: buf,
            class,
            method,
            transaction_id,
            username: None,
            realm: None,
            nonce: None,
            software: None,
            xor_mapped_address: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            error_code: None,
            integrity: None,
            fingerprint: None,
            unknown_required: None,
        };
        let mut pos = HEADER_LEN;
        while pos < buf.len() {
            let (Some(atyp), Some(alen)) = (be16(buf, pos), be16(buf, pos + 2)) else {
                return Err(StunError::Truncated);
            };
            let alen = usize::from(alen);
            let start = pos + 4;
            let padded = (alen + 3) & !3;
            if start + padded > buf.len() {
                return Err(StunError::AttributeOverrun(atyp));
            }
            let v = &buf[start..start + alen];
            let at = pos;
            pos = start + padded;
            if msg.integrity.is_some()
                && atyp != attr::FINGERPRINT
                && atyp != attr::MESSAGE_INTEGRITY_SHA256
            {
                // RFC 8489 §14.5: ignore everything after MESSAGE-INTEGRITY except
                // MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.
                continue;
            }
            match atyp {
                attr::USERNAME if msg.username.is_none() => {
                    msg.username = Some(text(atyp, v, MAX_USERNAME)?);
                }
                attr::REALM if msg.realm.is_none() => msg.realm = Some(text(atyp, v, MAX_TEXT)?),
                attr::NONCE if msg.nonce.is_none() => msg.nonce = Some(text(atyp, v, MAX_TEXT)?),
                attr::SOFTWARE if msg.software.is_none() => {
                    msg.software = Some(text(atyp, v, MAX_TEXT)?);
                }
                attr::XOR_MAPPED_ADDRESS if msg.xor_mapped_address.is_none() => {
                    msg.xor_mapped_address = Some(decode_xor_address(v, &msg.transaction_id)?);
                }
                attr::PRIORITY if msg.priority.is_none() => {
                    msg.priority = Some(u32::from_be_bytes(fixed(atyp, v)?));
                }
                attr::USE_CANDIDATE => {
                    if !v.is_empty() {
                        return Err(StunError::BadAttribute(atyp));
                    }
                    msg.use_candidate = true;
                }
                attr::ICE_CONTROLLING if msg.ice_controlling.is_none() => {
                    msg.ice_controlling = Some(u64::from_be_bytes(fixed(atyp, v)?));
                }
                attr::ICE_CONTROLLED if msg.ice_controlled.is_none() => {
                    msg.ice_controlled = Some(u64::from_be_bytes(fixed(atyp, v)?));
                }
                attr::ERROR_CODE if msg.error_code.is_none() => {
                    let (head, reason) =
                        v.split_at_checked(4).ok_or(StunError::BadAttribute(atyp))?;
                    let class = u16::from(head[2] & 0x07);
                    let number = u16::from(head[3]);
                    if !(3..=6).contains(&class) || number > 99 {
                        return Err(StunError::BadAttribute(atyp));
                    }
                    msg.error_code = Some(ErrorCode {
                        code: class * 100 + number,
                        reason: text(atyp, reason, MAX_TEXT)?,
                    });
                }
                attr::MESSAGE_INTEGRITY => {
                    if v.len() != MI_LEN {
                        return Err(StunError::BadAttribute(atyp));
                    }
                    msg.integrity = Some((at, v));
                }
                attr::FINGERPRINT => {
                    msg.fingerprint = Some((at, u32::from_be_bytes(fixed(atyp, v)?)));
                    // RFC 8489 §14.7: FINGERPRINT is last; ignore whatever follows.
                    break;
                }
                attr::USERNAME
                | attr::REALM
                | attr::NONCE
                | attr::SOFTWARE
                | attr::XOR_MAPPED_ADDRESS
                | attr::PRIORITY
                | attr::ICE_CONTROLLING
                | attr::ICE_CONTROLLED
                | attr::ERROR_CODE
                | attr::MAPPED_ADDRESS
                | attr::UNKNOWN_ATTRIBUTES
                | attr::MESSAGE_INTEGRITY_SHA256 => {}
                other => {
                    if other < 0x8000 && msg.unknown_required.is_none() {
                        msg.unknown_required = Some(other);
                    }
                }
            }
        }
        Ok(msg)
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
    /// The message class.
    pub fn class(&self) -> Class {
        self.class
    }
    /// The message method.
    pub fn method(&self) -> Method {
        self.method
    }
    /// The transaction id.
    pub fn transaction_id(&self) -> &TransactionId {
        &self.transaction_id
    }
    /// True for a Binding request.
    pub fn is_binding_request(&self) -> bool {
        self.class == Class::Request && self.method == Method::Binding
    }
    /// True for a Binding success or error response.
    pub fn is_binding_response(&self) -> bool {
        matches!(self.class, Class::Success | Class::Error) && self.method == Method::Binding
    }
    /// USERNAME, if present.
    pub fn username(&self) -> Option<&'a str> {
        self.username
    }
    /// REALM, if present.
    pub fn realm(&self) -> Option<&'a str> {
        self.realm
    }
    /// NONCE, if present.
    pub fn nonce(&self) -> Option<&'a str> {
        self.nonce
    }
    /// SOFTWARE, if present.
    pub fn software(&self) -> Option<&'a str> {
        self.software
    }
    /// XOR-MAPPED-ADDRESS, decoded, if present.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }
    /// PRIORITY, if present.
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }
    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }
    /// ICE-CONTROLLING tie-breaker, if present.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }
    /// ICE-CONTROLLED tie-breaker, if present.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }
    /// ERROR-CODE, if present.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        self.error_code
    }
    /// Whether a MESSAGE-INTEGRITY attribute is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }
    /// Whether a FINGERPRINT attribute is present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }
    /// The first unknown comprehension-required attribute type (< 0x8000), if any.
    pub fn unknown_comprehension_required(&self) -> Option<u16> {
        self.unknown_required
    }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1) with `key` (RFC 8489 §14.5).
    ///
    /// For ICE short-term credentials the key is the password bytes; for long-term
    /// credentials it is `MD5(username ":" realm ":" password)`. Returns false when the
    /// attribute is absent. The comparison is constant-time.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some((at, tag)) = self.integrity else {
            return false;
        };
        // The length field must cover the message up to and including MI.
        let Ok(adjusted) = u16::try_from(at + 4 + MI_LEN - HEADER_LEN) else {
            return false;
        };
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&key);
        let Some(covered) = self.raw.get(4..at) else {
            return false;
        };
        ctx.update(self.raw.get(..2).unwrap_or_default());
        ctx.update(&adjusted.to_be_bytes());
        ctx.update(covered);
        let computed = ctx.sign();
        constant_time::verify_slices_are_equal(computed.as_ref(), tag).is_ok()
    }

    /// Verifies FINGERPRINT (RFC 8489 §14.7). Returns false when absent.
    pub fn check_fingerprint(&self) -> bool {
        let Some((at, value)) = self.fingerprint else {
            return false;
        };
        let (Ok(adjusted), Some(head), Some(covered)) = (
            u16::try_from(at + 8 - HEADER_LEN),
            self.raw.get(..2),
            self.raw.get(4..at),
        ) else {
            return false;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(head);
        h.update(&adjusted.to_be_bytes());
        h.update(covered);
        (h.finalize() ^ FINGERPRINT_XOR) == value
    }
}

/// Returns true if `buf` looks like a STUN message (RFC 8489 §5 header checks only).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] & 0xc0 == 0
        && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
        && buf[3].is_multiple_of(4)
}

#[cfg(test)]
mod tests;
