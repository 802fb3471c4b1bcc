//! RFC 4571 framing of datagrams (STUN, DTLS, RTP) over ICE-TCP (RFC 6544).
//!
//! Each datagram is preceded by its length as a 16-bit big-endian integer.

/// Errors from RFC 4571 framing.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The payload is longer than 65535 bytes.
    #[error("datagram too large for RFC 4571 framing")]
    TooLarge,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The decoder would buffer more than its limit.
    #[error("stream decoder buffer limit exceeded")]
    Overflow,
}

/// Writes `payload` with its 2-byte length prefix into `out`; returns bytes written.
///
/// # Errors
///
/// [`FramingError::TooLarge`] when `payload` is longer than 65535 bytes,
/// [`FramingError::BufferTooSmall`] when `out` cannot hold prefix and payload.
pub fn frame(payload: &[u8], out: &mut [u8]) -> Result<usize, FramingError> {
    let len = u16::try_from(payload.len()).map_err(|_| FramingError::TooLarge)?;
    let total = payload.len() + 2;
    let dst = out.get_mut(..total).ok_or(FramingError::BufferTooSmall)?;
    dst[..2].copy_from_slice(&len.to_be_bytes());
    dst[2..].copy_from_slice(payload);
    Ok(total)
}

/// Accumulates bytes read from a TCP stream and yields whole datagrams.
///
/// ```
/// use rtc_core::ice::framing::{frame, StreamDecoder};
/// let mut wire = [0u8; 16];
/// let n = frame(b"hello", &mut wire).unwrap();
/// let mut dec = StreamDecoder::new();
/// dec.push(&wire[..3]).unwrap();
/// assert!(dec.next_datagram().is_none());
/// dec.push(&wire[3..n]).unwrap();
/// assert_eq!(dec.next_datagram(), Some(&b"hello"[..]));
/// ```
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    read: usize,
    limit: usize,
}

/// Default cap on buffered, undecoded bytes.
const DEFAULT_LIMIT: usize = 4 * (65535 + 2);

impl Default for StreamDecoder {
    /// The same as [`StreamDecoder::new`] (a derived default had a zero limit and refused
    /// every byte).
    fn default() -> StreamDecoder {
        StreamDecoder::new()
    }
}

impl StreamDecoder {
    /// A decoder buffering at most about four maximal datagrams.
    pub fn new() -> StreamDecoder {
        StreamDecoder::with_limit(DEFAULT_LIMIT)
    }

    /// A decoder buffering at most `limit` undecoded bytes (at least one maximal frame).
    pub fn with_limit(limit: usize) -> StreamDecoder {
        StreamDecoder {
            buf: Vec::new(),
            read: 0,
            limit: limit.max(65535 + 2),
        }
    }

    /// Appends bytes read from the stream. Fails if more than the limit would be
    /// buffered (the bytes are then not appended).
    ///
    /// # Errors
    ///
    /// [`FramingError::Overflow`] when more than the limit would be buffered.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if self.read > 0 {
            self.buf.drain(..self.read);
            self.read = 0;
        }
        if self.buf.len() + data.len() > self.limit {
            return Err(FramingError::Overflow);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Returns the next whole datagram, if one has been fully received.
    pub fn next_datagram(&mut self) -> Option<&[u8]> {
        let rest = self.buf.get(self.read..)?;
        let head = rest.get(..2)?;
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let start = self.read + 2;
        let end = start + len;
        if end > self.buf.len() {
            return None;
        }
        self.read = end;
        self.buf.get(start..end)
    }

    /// Bytes buffered but not yet returned as datagrams.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_errors() {
        let mut out = [0u8; 4];
        assert_eq!(frame(b"abc", &mut out), Err(FramingError::BufferTooSmall));
        assert_eq!(frame(b"ab", &mut out), Ok(4));
        assert_eq!(out, [0, 2, b'a', b'b']);
        let big = vec![0u8; 70000];
        let mut out = vec![0u8; 70002];
        assert_eq!(frame(&big, &mut out), Err(FramingError::TooLarge));
        assert_eq!(frame(&[], &mut out), Ok(2));
    }

    #[test]
    fn default_takes_bytes() {
        let mut d = StreamDecoder::default();
        assert_eq!(d.push(&[0, 1, 7]), Ok(()));
        assert_eq!(d.next_datagram(), Some(&[7u8][..]));
    }

    #[test]
    fn overflow() {
        let mut d = StreamDecoder::with_limit(0);
        assert_eq!(d.push(&vec![0xff; 65537]), Ok(()));
        assert_eq!(d.push(&[1]), Err(FramingError::Overflow));
        assert_eq!(d.pending(), 65537);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip_any_split(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            chunk in 1usize..50,
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                let mut out = vec![0u8; m.len() + 2];
                let n = frame(m, &mut out).unwrap();
                prop_assert_eq!(n, m.len() + 2);
                wire.extend_from_slice(&out);
            }
            let mut dec = StreamDecoder::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            for c in wire.chunks(chunk) {
                dec.push(c).unwrap();
                while let Some(d) = dec.next_datagram() {
                    got.push(d.to_vec());
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(dec.pending(), 0);
        }
    }
}
