//! [`StunWriter`]: building one STUN message into a caller-provided buffer.

use super::*;

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
