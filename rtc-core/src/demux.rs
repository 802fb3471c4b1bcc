//! Datagram demultiplexing per RFC 7983 (as updated by RFC 9443).
//!
//! One UDP 5-tuple carries STUN, DTLS, RTP and RTCP. The first byte tells them apart:
//!
//! | first byte | protocol |
//! | --- | --- |
//! | 0..=3 | STUN |
//! | 16..=19 | ZRTP (not used by WebRTC; reported as [`Datagram::Unknown`]) |
//! | 20..=63 | DTLS |
//! | 64..=79 | TURN channel data |
//! | 128..=191 | RTP or RTCP, split by the payload type byte (RFC 5761) |

/// What a datagram carries, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datagram {
    /// A STUN message (ICE connectivity checks, consent).
    Stun,
    /// A DTLS record (handshake, alerts, SCTP application data).
    Dtls,
    /// An RTP packet (possibly SRTP-protected).
    Rtp,
    /// An RTCP packet (possibly SRTCP-protected).
    Rtcp,
    /// TURN ChannelData (RFC 8656 §12).
    TurnChannel,
    /// Too short, or a first byte no WebRTC protocol uses.
    Unknown,
}

impl Datagram {
    /// Classifies a datagram by RFC 7983/9443 rules.
    ///
    /// RTP and RTCP are told apart by the second byte (payload type with the marker bit
    /// cleared): RTCP packet types 192..=223 fall in 64..=95 once the marker bit is masked,
    /// which no dynamic or static RTP payload type used by WebRTC collides with (RFC 5761 §4).
    pub fn classify(buf: &[u8]) -> Datagram {
        let Some(&b0) = buf.first() else {
            return Datagram::Unknown;
        };
        match b0 {
            0..=3 if buf.len() >= 20 => Datagram::Stun,
            20..=63 if buf.len() >= 13 => Datagram::Dtls,
            64..=79 if buf.len() >= 4 => Datagram::TurnChannel,
            128..=191 if buf.len() >= 8 => {
                let pt = buf[1] & 0x7f;
                if (64..=95).contains(&pt) {
                    Datagram::Rtcp
                } else if buf.len() >= 12 {
                    Datagram::Rtp
                } else {
                    Datagram::Unknown
                }
            }
            _ => Datagram::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte() {
        let mut stun = [0u8; 20];
        stun[1] = 0x01;
        assert_eq!(Datagram::classify(&stun), Datagram::Stun);
        let mut dtls = [0u8; 13];
        dtls[0] = 22; // handshake
        assert_eq!(Datagram::classify(&dtls), Datagram::Dtls);
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 96;
        assert_eq!(Datagram::classify(&rtp), Datagram::Rtp);
        rtp[1] = 0x80 | 111; // marker set, Opus
        assert_eq!(Datagram::classify(&rtp), Datagram::Rtp);
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert_eq!(Datagram::classify(&rtcp), Datagram::Rtcp);
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1];
        assert_eq!(Datagram::classify(&pli), Datagram::Rtcp);
        let mut turn = [0u8; 4];
        turn[0] = 0x40;
        assert_eq!(Datagram::classify(&turn), Datagram::TurnChannel);
    }

    #[test]
    fn short_and_unknown_inputs() {
        assert_eq!(Datagram::classify(&[]), Datagram::Unknown);
        assert_eq!(Datagram::classify(&[0, 1]), Datagram::Unknown);
        assert_eq!(Datagram::classify(&[22, 254, 253]), Datagram::Unknown);
        assert_eq!(Datagram::classify(&[0x80, 96, 0, 1]), Datagram::Unknown);
        assert_eq!(Datagram::classify(&[17; 40]), Datagram::Unknown); // ZRTP range
        assert_eq!(Datagram::classify(&[255; 40]), Datagram::Unknown);
    }

    #[test]
    fn every_first_byte_is_classified_without_panic() {
        for b in 0..=255u8 {
            for len in 0..40 {
                let mut v = vec![0u8; len];
                if let Some(f) = v.first_mut() {
                    *f = b;
                }
                let _ = Datagram::classify(&v);
            }
        }
    }
}
