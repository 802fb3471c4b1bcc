//! Unit tests of the STUN codec (a `#[cfg(test)]` module of `stun`).

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).unwrap()
}

const PASS: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

fn req_2_1() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff
         80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}
fn resp_2_2() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}
fn resp_2_3() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}
fn req_2_4() -> Vec<u8> {
    hex("00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
         00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
         00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
         00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
         00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66")
}
/// MD5("マトリックス:example.org:TheMatrIX"), the RFC 5769 §2.4 long-term key
/// (computed offline; the crate does not depend on MD5).
const LONG_TERM_KEY: [u8; 16] = [
    0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51, 0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda, 0xb2, 0xa9,
];

/// Writes a message the way the RFC 5769 vectors are built (transaction id `TID`,
/// padding 0x20, `attrs`, then MESSAGE-INTEGRITY with `PASS` and FINGERPRINT) and
/// asserts it equals the vector `b`.
fn assert_rebuilds(b: &[u8], class: Class, attrs: impl FnOnce(&mut StunWriter<'_>)) {
    let mut out = [0u8; 256];
    let mut w = StunWriter::new(&mut out, class, Method::Binding, &TID).unwrap();
    w.set_padding_byte(0x20);
    attrs(&mut w);
    w.message_integrity(PASS).unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    assert_eq!(&out[..n], b);
}

/// The RFC 5769 §2.2/§2.3 success responses: SOFTWARE "test vector" and `addr`.
fn check_response(b: &[u8], addr: SocketAddr) {
    let m = StunMessage::parse(b).unwrap();
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.software(), Some("test vector"));
    assert_eq!(m.xor_mapped_address(), Some(addr));
    assert!(m.check_integrity(PASS));
    assert!(m.check_fingerprint());

    assert_rebuilds(b, Class::Success, |w| {
        w.software("test vector").unwrap();
        w.xor_mapped_address(addr).unwrap();
    });
}

#[test]
fn rfc5769_2_1_request() {
    let b = req_2_1();
    let m = StunMessage::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), Method::Binding);
    assert!(m.is_binding_request());
    assert_eq!(m.transaction_id(), &TID);
    assert_eq!(m.software(), Some("STUN test client"));
    assert_eq!(m.priority(), Some(0x6e0001ff));
    assert_eq!(m.ice_controlled(), Some(0x932ff9b151263b36));
    assert_eq!(m.ice_controlling(), None);
    assert!(!m.use_candidate());
    assert_eq!(m.username(), Some("evtj:h6vY"));
    assert!(m.has_integrity() && m.has_fingerprint());
    assert!(m.check_integrity(PASS));
    assert!(!m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
    assert!(m.check_fingerprint());

    assert_rebuilds(&b, Class::Request, |w| {
        w.software("STUN test client").unwrap();
        w.priority(0x6e0001ff).unwrap();
        w.ice_controlled(0x932ff9b151263b36).unwrap();
        w.username("evtj:h6vY").unwrap();
    });
}

#[test]
fn rfc5769_2_2_ipv4_response() {
    let b = resp_2_2();
    assert!(StunMessage::parse(&b).unwrap().is_binding_response());
    check_response(&b, "192.0.2.1:32853".parse().unwrap());
}

#[test]
fn rfc5769_2_3_ipv6_response() {
    let addr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853";
    check_response(&resp_2_3(), addr.parse().unwrap());
}

#[test]
fn rfc5769_2_4_long_term() {
    let b = req_2_4();
    let m = StunMessage::parse(&b).unwrap();
    assert!(m.is_binding_request());
    assert_eq!(m.username(), Some("マトリックス"));
    assert_eq!(m.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
    assert_eq!(m.realm(), Some("example.org"));
    assert!(!m.has_fingerprint());
    assert!(!m.check_fingerprint());
    assert!(m.check_integrity(&LONG_TERM_KEY));
    assert!(!m.check_integrity(PASS));

    let tid: TransactionId = b[8..20].try_into().unwrap();
    let mut out = [0u8; 256];
    let mut w = StunWriter::new(&mut out, Class::Request, Method::Binding, &tid).unwrap();
    w.username("マトリックス").unwrap();
    w.nonce("f//499k954d6OL34oL9FSTvy64sA").unwrap();
    w.realm("example.org").unwrap();
    w.message_integrity(&LONG_TERM_KEY).unwrap();
    let n = w.finish();
    assert_eq!(&out[..n], &b[..]);
}

#[test]
fn tampering_is_detected() {
    let b = req_2_1();
    for i in HEADER_LEN..b.len() - 8 {
        let mut t = b.clone();
        t[i] ^= 0x01;
        if let Ok(m) = StunMessage::parse(&t) {
            assert!(!m.check_fingerprint(), "byte {i}");
            assert!(!m.check_integrity(PASS), "byte {i}");
        }
    }
}

#[test]
fn truncated_and_malformed_rejected() {
    let b = req_2_1();
    for n in 0..b.len() {
        assert!(StunMessage::parse(&b[..n]).is_err(), "len {n}");
    }
    let mut t = b.clone();
    t[4] ^= 1;
    assert_eq!(StunMessage::parse(&t), Err(StunError::BadMagicCookie));
    let mut t = b.clone();
    t[0] |= 0x80;
    assert_eq!(StunMessage::parse(&t), Err(StunError::NotStun));
    let mut t = b.clone();
    t[3] = 0x57;
    assert_eq!(StunMessage::parse(&t), Err(StunError::BadLength));
    let mut t = b.clone();
    t.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(StunMessage::parse(&t), Err(StunError::BadLength));
    // SOFTWARE claims 0xf0 bytes: overruns the message.
    let mut t = b.clone();
    t[23] = 0xf0;
    assert_eq!(
        StunMessage::parse(&t),
        Err(StunError::AttributeOverrun(attr::SOFTWARE))
    );
    // PRIORITY of the wrong size.
    let mut t = b.clone();
    t[43] = 3;
    assert_eq!(
        StunMessage::parse(&t),
        Err(StunError::BadAttribute(attr::PRIORITY))
    );
}

#[test]
fn attributes_after_integrity_and_fingerprint_ignored() {
    let mut out = [0u8; 256];
    let mut w = StunWriter::new(&mut out, Class::Request, Method::Binding, &TID).unwrap();
    w.username("a:b").unwrap();
    w.message_integrity(b"key").unwrap();
    assert_eq!(w.priority(1), Err(StunError::AttributeOrder));
    w.fingerprint().unwrap();
    assert_eq!(w.fingerprint(), Err(StunError::AttributeOrder));
    let n = w.finish();
    // Append PRIORITY after FINGERPRINT by hand and fix the length.
    let mut v = out[..n].to_vec();
    v.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0, 0, 0, 9]);
    let body = (v.len() - HEADER_LEN) as u16;
    v[2..4].copy_from_slice(&body.to_be_bytes());
    let m = StunMessage::parse(&v).unwrap();
    assert_eq!(m.priority(), None);
    assert!(m.check_integrity(b"key"));
    assert!(m.check_fingerprint());
}

#[test]
fn error_code_and_unknown_attributes() {
    let mut out = [0u8; 128];
    let mut w = StunWriter::new(&mut out, Class::Error, Method::Binding, &TID).unwrap();
    w.raw_attribute(0x7777, b"xyz").unwrap();
    w.raw_attribute(0xC001, b"zz").unwrap();
    w.error_code(487, "Role Conflict").unwrap();
    assert_eq!(w.error_code(200, ""), Err(StunError::ValueOutOfRange));
    let n = w.finish();
    let m = StunMessage::parse(&out[..n]).unwrap();
    assert_eq!(m.class(), Class::Error);
    assert_eq!(
        m.error_code(),
        Some(ErrorCode {
            code: 487,
            reason: "Role Conflict"
        })
    );
    assert_eq!(m.unknown_comprehension_required(), Some(0x7777));
}

#[test]
fn message_type_bits() {
    assert_eq!(message_type(Class::Request, Method::Binding), 0x0001);
    assert_eq!(message_type(Class::Success, Method::Binding), 0x0101);
    assert_eq!(message_type(Class::Error, Method::Binding), 0x0111);
    assert_eq!(message_type(Class::Indication, Method::Binding), 0x0011);
    assert_eq!(message_type(Class::Request, Method::Other(0x003)), 0x0003);
    for t in 0..0x4000u16 {
        let (c, m) = split_message_type(t);
        assert_eq!(message_type(c, m), t);
    }
}

#[test]
fn writer_buffer_too_small() {
    let mut out = [0u8; 19];
    assert_eq!(
        StunWriter::new(&mut out, Class::Request, Method::Binding, &TID).unwrap_err(),
        StunError::BufferTooSmall
    );
    let mut out = [0u8; 40];
    let mut w = StunWriter::new(&mut out, Class::Request, Method::Binding, &TID).unwrap();
    assert_eq!(w.message_integrity(b"k"), Err(StunError::BufferTooSmall));
    assert_eq!(w.len(), HEADER_LEN);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn writer_round_trip(
        tid in any::<[u8; 12]>(),
        class in 0u8..4,
        user in "[a-zA-Z0-9+/]{0,40}:[a-zA-Z0-9+/]{0,40}",
        prio in any::<u32>(),
        tie in any::<u64>(),
        controlling in any::<bool>(),
        use_cand in any::<bool>(),
        v6 in any::<bool>(),
        ip4 in any::<u32>(),
        ip6 in any::<u128>(),
        port in any::<u16>(),
        err in proptest::option::of((300u16..700, "[ -~]{0,30}")),
        key in proptest::collection::vec(any::<u8>(), 1..40),
        fp in any::<bool>(),
    ) {
        let class = [Class::Request, Class::Indication, Class::Success, Class::Error][usize::from(class)];
        let addr = if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip6)), port)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip4)), port)
        };
        let mut out = [0u8; 512];
        let mut w = StunWriter::new(&mut out, class, Method::Binding, &tid).unwrap();
        w.username(&user).unwrap();
        w.priority(prio).unwrap();
        if controlling { w.ice_controlling(tie).unwrap() } else { w.ice_controlled(tie).unwrap() }
        if use_cand { w.use_candidate().unwrap() }
        w.xor_mapped_address(addr).unwrap();
        if let Some((code, reason)) = &err { w.error_code(*code, reason).unwrap() }
        w.message_integrity(&key).unwrap();
        if fp { w.fingerprint().unwrap() }
        let n = w.finish();
        let m = StunMessage::parse(&out[..n]).unwrap();
        prop_assert_eq!(m.class(), class);
        prop_assert_eq!(m.transaction_id(), &tid);
        prop_assert_eq!(m.username(), Some(user.as_str()));
        prop_assert_eq!(m.priority(), Some(prio));
        prop_assert_eq!(m.ice_controlling(), controlling.then_some(tie));
        prop_assert_eq!(m.ice_controlled(), (!controlling).then_some(tie));
        prop_assert_eq!(m.use_candidate(), use_cand);
        prop_assert_eq!(m.xor_mapped_address(), Some(addr));
        prop_assert_eq!(m.error_code().map(|e| (e.code, e.reason.to_string())), err);
        prop_assert!(m.check_integrity(&key));
        prop_assert_eq!(m.check_fingerprint(), fp);
        prop_assert!(is_stun(&out[..n]));
    }

    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = StunMessage::parse(&data) {
            let _ = m.check_integrity(b"k");
            let _ = m.check_fingerprint();
        }
    }
}
