//! Data Channel Establishment Protocol (DCEP, RFC 8832) messages.
//!
//! DCEP messages travel as SCTP user messages with PPID 50 on the stream of the data
//! channel they open. Two messages exist: `DATA_CHANNEL_OPEN` (type `0x03`) and
//! `DATA_CHANNEL_ACK` (type `0x02`).
//!
//! The parser borrows the label and protocol from its input; the writer writes into a
//! caller-provided buffer.

use thiserror::Error;

/// Message type of `DATA_CHANNEL_OPEN` (RFC 8832 §8.2.1).
pub const MSG_DATA_CHANNEL_OPEN: u8 = 0x03;
/// Message type of `DATA_CHANNEL_ACK` (RFC 8832 §8.2.1).
pub const MSG_DATA_CHANNEL_ACK: u8 = 0x02;

/// Size of the fixed part of a `DATA_CHANNEL_OPEN` message (before label and protocol).
pub const OPEN_HEADER_LEN: usize = 12;

/// Priority value "normal" (RFC 8832 §5.1 / RFC 8831 §6.4).
pub const PRIORITY_NORMAL: u16 = 256;

/// Errors from parsing or writing DCEP messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DcepError {
    /// The message had no bytes at all.
    #[error("empty DCEP message")]
    Empty,
    /// The first byte is not a known DCEP message type.
    #[error("unknown DCEP message type {0:#04x}")]
    UnknownMessageType(u8),
    /// The message is shorter than its header or its declared label/protocol lengths.
    #[error("truncated DCEP message: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes required by the header and declared lengths.
        needed: usize,
        /// Bytes actually present.
        have: usize,
    },
    /// The channel type byte is not one defined by RFC 8832 §8.2.2.
    #[error("unknown DCEP channel type {0:#04x}")]
    UnknownChannelType(u8),
    /// The label or protocol is not valid UTF-8.
    #[error("DCEP label or protocol is not valid UTF-8")]
    InvalidUtf8,
    /// The label or protocol is longer than the 16-bit length field allows.
    #[error("DCEP label or protocol longer than 65535 bytes")]
    FieldTooLong,
    /// The output buffer is too small for the message.
    #[error("buffer too small: need {needed} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
}

/// The channel type of a `DATA_CHANNEL_OPEN` (RFC 8832 §5.1): reliability class and
/// whether delivery is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// `DATA_CHANNEL_RELIABLE` (0x00).
    Reliable,
    /// `DATA_CHANNEL_RELIABLE_UNORDERED` (0x80).
    ReliableUnordered,
    /// `DATA_CHANNEL_PARTIAL_RELIABLE_REXMIT` (0x01).
    PartialReliableRexmit,
    /// `DATA_CHANNEL_PARTIAL_RELIABLE_REXMIT_UNORDERED` (0x81).
    PartialReliableRexmitUnordered,
    /// `DATA_CHANNEL_PARTIAL_RELIABLE_TIMED` (0x02).
    PartialReliableTimed,
    /// `DATA_CHANNEL_PARTIAL_RELIABLE_TIMED_UNORDERED` (0x82).
    PartialReliableTimedUnordered,
}

impl ChannelType {
    /// The wire value of this channel type.
    pub fn to_u8(self) -> u8 {
        match self {
            ChannelType::Reliable => 0x00,
            ChannelType::ReliableUnordered => 0x80,
            ChannelType::PartialReliableRexmit => 0x01,
            ChannelType::PartialReliableRexmitUnordered => 0x81,
            ChannelType::PartialReliableTimed => 0x02,
            ChannelType::PartialReliableTimedUnordered => 0x82,
        }
    }

    /// Parses a wire value; unknown values are an error.
    ///
    /// # Errors
    ///
    /// [`DcepError::UnknownChannelType`] for a value RFC 8832 does not define.
    pub fn from_u8(v: u8) -> Result<Self, DcepError> {
        Ok(match v {
            0x00 => ChannelType::Reliable,
            0x80 => ChannelType::ReliableUnordered,
            0x01 => ChannelType::PartialReliableRexmit,
            0x81 => ChannelType::PartialReliableRexmitUnordered,
            0x02 => ChannelType::PartialReliableTimed,
            0x82 => ChannelType::PartialReliableTimedUnordered,
            other => return Err(DcepError::UnknownChannelType(other)),
        })
    }

    /// Whether messages on this channel are delivered in order.
    pub fn is_ordered(self) -> bool {
        self.to_u8() & 0x80 == 0
    }
}

/// A parsed or to-be-written `DATA_CHANNEL_OPEN` message (RFC 8832 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcepOpen<'a> {
    /// Channel type: reliability class and ordering.
    pub channel_type: ChannelType,
    /// Priority of the channel (RFC 8831 §6.4 values: 128, 256, 512, 1024).
    pub priority: u16,
    /// Reliability parameter: retransmission count or lifetime in ms (ignored for
    /// reliable channels, where it should be 0).
    pub reliability_parameter: u32,
    /// Channel label (UTF-8).
    pub label: &'a str,
    /// Sub-protocol name (UTF-8), possibly empty.
    pub protocol: &'a str,
}

impl<'a> DcepOpen<'a> {
    /// Length in bytes of the encoded message.
    pub fn encoded_len(&self) -> usize {
        OPEN_HEADER_LEN + self.label.len() + self.protocol.len()
    }

    /// Writes the message into `buf`, returning the number of bytes written.
    ///
    /// # Errors
    ///
    /// [`DcepError::FieldTooLong`] when the label or protocol exceeds 65535 bytes;
    /// [`DcepError::BufferTooSmall`] when `buf` cannot hold the message.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, DcepError> {
        let label_len = u16::try_from(self.label.len()).map_err(|_| DcepError::FieldTooLong)?;
        let proto_len = u16::try_from(self.protocol.len()).map_err(|_| DcepError::FieldTooLong)?;
        let needed = self.encoded_len();
        let have = buf.len();
        let out = buf
            .get_mut(..needed)
            .ok_or(DcepError::BufferTooSmall { needed, have })?;
        let (head, rest) = out.split_at_mut(OPEN_HEADER_LEN);
        head[0] = MSG_DATA_CHANNEL_OPEN;
        head[1] = self.channel_type.to_u8();
        head[2..4].copy_from_slice(&self.priority.to_be_bytes());
        head[4..8].copy_from_slice(&self.reliability_parameter.to_be_bytes());
        head[8..10].copy_from_slice(&label_len.to_be_bytes());
        head[10..12].copy_from_slice(&proto_len.to_be_bytes());
        let (label, proto) = rest.split_at_mut(self.label.len());
        label.copy_from_slice(self.label.as_bytes());
        proto.copy_from_slice(self.protocol.as_bytes());
        Ok(needed)
    }

    /// Parses the body of a `DATA_CHANNEL_OPEN` (`buf` includes the type byte).
    fn parse(buf: &'a [u8]) -> Result<Self, DcepError> {
        let truncated = |needed: usize| DcepError::Truncated {
            needed,
            have: buf.len(),
        };
        let head: &[u8; OPEN_HEADER_LEN] = buf
            .get(..OPEN_HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(truncated(OPEN_HEADER_LEN))?;
        let channel_type = ChannelType::from_u8(head[1])?;
        let priority = u16::from_be_bytes([head[2], head[3]]);
        let reliability_parameter = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let label_len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let proto_len = usize::from(u16::from_be_bytes([head[10], head[11]]));
        let needed = OPEN_HEADER_LEN + label_len + proto_len;
        let label = buf
            .get(OPEN_HEADER_LEN..OPEN_HEADER_LEN + label_len)
            .ok_or(truncated(needed))?;
        let protocol = buf
            .get(OPEN_HEADER_LEN + label_len..needed)
            .ok_or(truncated(needed))?;
        Ok(DcepOpen {
            channel_type,
            priority,
            reliability_parameter,
            label: core::str::from_utf8(label).map_err(|_| DcepError::InvalidUtf8)?,
            protocol: core::str::from_utf8(protocol).map_err(|_| DcepError::InvalidUtf8)?,
        })
    }
}

/// A DCEP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcepMessage<'a> {
    /// `DATA_CHANNEL_OPEN`.
    Open(DcepOpen<'a>),
    /// `DATA_CHANNEL_ACK`.
    Ack,
}

impl<'a> DcepMessage<'a> {
    /// Parses one DCEP message (the whole SCTP user message with PPID 50).
    ///
    /// Bytes after the declared label and protocol of an OPEN, and after the type byte
    /// of an ACK, are ignored.
    ///
    /// # Errors
    ///
    /// [`DcepError::Empty`] for no bytes, [`DcepError::UnknownMessageType`] for an
    /// unknown type byte, and [`DcepError::Truncated`],
    /// [`DcepError::UnknownChannelType`] or [`DcepError::InvalidUtf8`] for a malformed
    /// OPEN.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DcepError> {
        match buf.first() {
            None => Err(DcepError::Empty),
            Some(&MSG_DATA_CHANNEL_OPEN) => DcepOpen::parse(buf).map(DcepMessage::Open),
            Some(&MSG_DATA_CHANNEL_ACK) => Ok(DcepMessage::Ack),
            Some(&other) => Err(DcepError::UnknownMessageType(other)),
        }
    }

    /// Length in bytes of the encoded message.
    pub fn encoded_len(&self) -> usize {
        match self {
            DcepMessage::Open(o) => o.encoded_len(),
            DcepMessage::Ack => 1,
        }
    }

    /// Writes the message into `buf`, returning the number of bytes written.
    ///
    /// # Errors
    ///
    /// [`DcepError::BufferTooSmall`] when `buf` is empty.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, DcepError> {
        match self {
            DcepMessage::Open(o) => o.write(buf),
            DcepMessage::Ack => {
                let b = buf
                    .first_mut()
                    .ok_or(DcepError::BufferTooSmall { needed: 1, have: 0 })?;
                *b = MSG_DATA_CHANNEL_ACK;
                Ok(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_open_known_bytes() {
        // OPEN, reliable-unordered, priority 256, param 0, label "chat", protocol "x".
        let bytes = [
            0x03, 0x80, 0x01, 0x00, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01, b'c', b'h', b'a', b't',
            b'x',
        ];
        let m = DcepMessage::parse(&bytes).unwrap();
        let DcepMessage::Open(o) = m else {
            panic!("expected open")
        };
        assert_eq!(o.channel_type, ChannelType::ReliableUnordered);
        assert!(!o.channel_type.is_ordered());
        assert_eq!(o.priority, 256);
        assert_eq!(o.reliability_parameter, 0);
        assert_eq!(o.label, "chat");
        assert_eq!(o.protocol, "x");
        let mut out = [0u8; 32];
        let n = m.write(&mut out).unwrap();
        assert_eq!(&out[..n], &bytes[..]);
    }

    #[test]
    fn parse_ack() {
        assert_eq!(DcepMessage::parse(&[0x02]).unwrap(), DcepMessage::Ack);
        let mut out = [0u8; 1];
        assert_eq!(DcepMessage::Ack.write(&mut out).unwrap(), 1);
        assert_eq!(out, [0x02]);
        assert!(matches!(
            DcepMessage::Ack.write(&mut []),
            Err(DcepError::BufferTooSmall { needed: 1, have: 0 })
        ));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(DcepMessage::parse(&[]), Err(DcepError::Empty));
        assert_eq!(
            DcepMessage::parse(&[0x07]),
            Err(DcepError::UnknownMessageType(0x07))
        );
        assert!(matches!(
            DcepMessage::parse(&[0x03, 0x00, 0x01]),
            Err(DcepError::Truncated {
                needed: 12,
                have: 3
            })
        ));
        // Declares a 5-byte label but carries 2.
        assert!(matches!(
            DcepMessage::parse(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, b'a', b'b']),
            Err(DcepError::Truncated {
                needed: 17,
                have: 14
            })
        ));
        assert_eq!(
            DcepMessage::parse(&[0x03, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DcepError::UnknownChannelType(0x05))
        );
        assert_eq!(
            DcepMessage::parse(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff]),
            Err(DcepError::InvalidUtf8)
        );
    }

    #[test]
    fn write_too_small() {
        let o = DcepOpen {
            channel_type: ChannelType::Reliable,
            priority: PRIORITY_NORMAL,
            reliability_parameter: 0,
            label: "abc",
            protocol: "",
        };
        let mut out = [0u8; 14];
        assert_eq!(
            o.write(&mut out),
            Err(DcepError::BufferTooSmall {
                needed: 15,
                have: 14
            })
        );
    }

    fn channel_type() -> impl Strategy<Value = ChannelType> {
        prop_oneof![
            Just(ChannelType::Reliable),
            Just(ChannelType::ReliableUnordered),
            Just(ChannelType::PartialReliableRexmit),
            Just(ChannelType::PartialReliableRexmitUnordered),
            Just(ChannelType::PartialReliableTimed),
            Just(ChannelType::PartialReliableTimedUnordered),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn open_round_trip(
            ct in channel_type(),
            priority in any::<u16>(),
            param in any::<u32>(),
            label in ".{0,40}",
            protocol in ".{0,20}",
        ) {
            let o = DcepOpen { channel_type: ct, priority, reliability_parameter: param, label: &label, protocol: &protocol };
            let mut buf = vec![0u8; o.encoded_len()];
            let n = o.write(&mut buf).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert_eq!(DcepMessage::parse(&buf).unwrap(), DcepMessage::Open(o));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = DcepMessage::parse(&bytes) {
                let mut buf = vec![0u8; m.encoded_len()];
                prop_assert_eq!(m.write(&mut buf).unwrap(), buf.len());
            }
        }
    }
}
