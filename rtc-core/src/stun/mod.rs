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

/// Builds one STUN message into a caller-provided buffer, without allocating.
///
/// The header is written by [`new`](Self::new); each attribute method appends one
/// attribute and keeps the header's length field current. Close the message with
/// optional [`message_integrity`](Self::message_integrity) and
/// [`fingerprint`](Self::fingerprint), then [`finish`](Self::finish) to get the length.
#[derive(Debug)]
pub struct StunWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    padding: u8,
    has_integrity: bool,
    has_fingerprint: bool,
}

impl<'b> StunWriter<'b> {
    /// Starts a message of the given class and method in `buf`.
    ///
    /// # Errors
    ///
    /// [`StunError::BufferTooSmall`] when `buf` cannot hold the 20-byte header.
    pub fn new(
        buf: &'b mut [u8],
        class: Class,
        method: Method,
        transaction_id: &TransactionId,
    ) -> Result<StunWriter<'b>, StunError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall)?;
        header[0..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        header[2..4].copy_from_slice(&[0, 0]);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..20].copy_from_slice(transaction_id);
        Ok(StunWriter {
            buf,
            len: HEADER_LEN,
            padding: 0,
            has_integrity: false,
            has_fingerprint: false,
        })
    }

    /// Sets the byte used to pad attribute values to 4 bytes (default 0; any value is
    /// legal per RFC 8489 §14).
    pub fn set_padding_byte(&mut self, byte: u8) {
        self.padding = byte;
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing but the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    fn set_length(&mut self) -> Result<(), StunError> {
        let body = u16::try_from(self.len - HEADER_LEN).map_err(|_| StunError::ValueOutOfRange)?;
        self.buf[2..4].copy_from_slice(&body.to_be_bytes());
        Ok(())
    }

    /// Reserves an attribute of `value_len` bytes, writes its header and padding, and
    /// returns the value slice to fill.
    fn reserve(&mut self, typ: u16, value_len: usize) -> Result<&mut [u8], StunError> {
        let allowed = match typ {
            attr::FINGERPRINT => !self.has_fingerprint,
            _ => !self.has_integrity && !self.has_fingerprint,
        };
        if !allowed {
            return Err(StunError::AttributeOrder);
        }
        let vlen = u16::try_from(value_len).map_err(|_| StunError::ValueOutOfRange)?;
        let padded = (value_len + 3) & !3;
        let end = self.len + 4 + padded;
        if end - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::ValueOutOfRange);
        }
        let start = self.len;
        let pad = self.padding;
        let slot = self
            .buf
            .get_mut(start..end)
            .ok_or(StunError::BufferTooSmall)?;
        slot[0..2].copy_from_slice(&typ.to_be_bytes());
        slot[2..4].copy_from_slice(&vlen.to_be_bytes());
        slot[4 + value_len..].fill(pad);
        self.len = end;
        self.set_length()?;
        Ok(&mut self.buf[start + 4..start + 4 + value_len])
    }

    /// Appends an arbitrary attribute.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn raw_attribute(&mut self, typ: u16, value: &[u8]) -> Result<(), StunError> {
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(())
    }

    fn text_attribute(&mut self, typ: u16, value: &str, max: usize) -> Result<(), StunError> {
        if value.len() > max {
            return Err(StunError::ValueOutOfRange);
        }
        self.raw_attribute(typ, value.as_bytes())
    }

    /// Appends USERNAME (at most 513 bytes).
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn username(&mut self, username: &str) -> Result<(), StunError> {
        self.text_attribute(attr::USERNAME, username, MAX_USERNAME)
    }
    /// Appends REALM.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn realm(&mut self, realm: &str) -> Result<(), StunError> {
        self.text_attribute(attr::REALM, realm, MAX_TEXT)
    }
    /// Appends NONCE.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn nonce(&mut self, nonce: &str) -> Result<(), StunError> {
        self.text_attribute(attr::NONCE, nonce, MAX_TEXT)
    }
    /// Appends SOFTWARE.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn software(&mut self, software: &str) -> Result<(), StunError> {
        self.text_attribute(attr::SOFTWARE, software, MAX_TEXT)
    }
    /// Appends PRIORITY.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn priority(&mut self, priority: u32) -> Result<(), StunError> {
        self.raw_attribute(attr::PRIORITY, &priority.to_be_bytes())
    }
    /// Appends USE-CANDIDATE.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn use_candidate(&mut self) -> Result<(), StunError> {
        self.raw_attribute(attr::USE_CANDIDATE, &[])
    }
    /// Appends ICE-CONTROLLING with the given tie-breaker.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn ice_controlling(&mut self, tie_breaker: u64) -> Result<(), StunError> {
        self.raw_attribute(attr::ICE_CONTROLLING, &tie_breaker.to_be_bytes())
    }
    /// Appends ICE-CONTROLLED with the given tie-breaker.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn ice_controlled(&mut self, tie_breaker: u64) -> Result<(), StunError> {
        self.raw_attribute(attr::ICE_CONTROLLED, &tie_breaker.to_be_bytes())
    }
    /// Appends ERROR-CODE; `code` must be in 300..=699.
    ///
    /// # Errors
    ///
    /// [`StunError::ValueOutOfRange`] when `code` is outside 300..=699; otherwise as
    /// [`StunWriter::raw_attribute`].
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<(), StunError> {
        if !(300..=699).contains(&code) || reason.len() > MAX_TEXT {
            return Err(StunError::ValueOutOfRange);
        }
        let v = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        // code / 100 is 3..=6 and code % 100 < 100, both fit a byte.
        v[..4].copy_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        v[4..].copy_from_slice(reason.as_bytes());
        Ok(())
    }
    /// Appends XOR-MAPPED-ADDRESS for `addr` (IPv4 or IPv6).
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT,
    /// [`StunError::ValueOutOfRange`] when the value does not fit the attribute or the
    /// message, [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&self.buf[8..20]);
        match addr.ip() {
            IpAddr::V4(ip) => {
                let v = self.reserve(attr::XOR_MAPPED_ADDRESS, 8)?;
                v[..2].copy_from_slice(&[0, 1]);
                v[2..4].copy_from_slice(&port.to_be_bytes());
                v[4..].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            }
            IpAddr::V6(ip) => {
                let v = self.reserve(attr::XOR_MAPPED_ADDRESS, 20)?;
                v[..2].copy_from_slice(&[0, 2]);
                v[2..4].copy_from_slice(&port.to_be_bytes());
                let key = MAGIC_COOKIE.to_be_bytes().into_iter().chain(tid);
                for ((o, b), k) in v[4..].iter_mut().zip(ip.octets()).zip(key) {
                    *o = b ^ k;
                }
            }
        }
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY computed with `key` over everything written so far.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after MESSAGE-INTEGRITY or FINGERPRINT;
    /// [`StunError::BufferTooSmall`] when `buf` is full.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<(), StunError> {
        let at = self.len;
        self.reserve(attr::MESSAGE_INTEGRITY, MI_LEN)?;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let tag = hmac::sign(&key, &self.buf[..at]);
        self.buf[at + 4..at + 4 + MI_LEN].copy_from_slice(tag.as_ref());
        self.has_integrity = true;
        Ok(())
    }

    /// Appends FINGERPRINT over everything written so far.
    ///
    /// # Errors
    ///
    /// [`StunError::AttributeOrder`] after FINGERPRINT; [`StunError::BufferTooSmall`]
    /// when `buf` is full.
    pub fn fingerprint(&mut self) -> Result<(), StunError> {
        let at = self.len;
        self.reserve(attr::FINGERPRINT, 4)?;
        let crc = crc32fast::hash(&self.buf[..at]) ^ FINGERPRINT_XOR;
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        self.has_fingerprint = true;
        Ok(())
    }

    /// Ends the message and returns its total length in bytes.
    pub fn finish(self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests;
