//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
use super::cipher::{SessionCipher, derive_key};
use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test hex")
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().expect("test hex length")
}

/// A minimal RTP packet: V=2, PT 96, given seq/SSRC, then `payload`.
fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x60];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A minimal RTCP packet (receiver report, no blocks) with trailing `extra` bytes.
fn rtcp(ssrc: u32, extra: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(extra);
    p
}

fn protect_rtp(ctx: &mut SrtpContext, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; pkt.len() + SrtpProfile::MAX_RTP_OVERHEAD];
    buf[..pkt.len()].copy_from_slice(pkt);
    let n = ctx.protect_rtp(&mut buf, pkt.len()).expect("protect_rtp");
    buf.truncate(n);
    buf
}

fn unprotect_rtp(ctx: &mut SrtpContext, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtp.to_vec();
    let n = ctx.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn protect_rtcp(ctx: &mut SrtpContext, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; pkt.len() + SrtpProfile::MAX_RTCP_OVERHEAD];
    buf[..pkt.len()].copy_from_slice(pkt);
    let n = ctx.protect_rtcp(&mut buf, pkt.len()).expect("protect_rtcp");
    buf.truncate(n);
    buf
}

fn unprotect_rtcp(ctx: &mut SrtpContext, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtcp.to_vec();
    let n = ctx.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn km(profile: SrtpProfile, seed: u8) -> Vec<u8> {
    (0..profile.keying_material_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// (outbound of the DTLS client, inbound of the DTLS server) for `profile`.
fn client_to_server(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let km = km(profile, 3);
    let (tx, _) = SrtpContext::pair_from_keying_material(profile, &km, true).expect("client");
    let (_, rx) = SrtpContext::pair_from_keying_material(profile, &km, false).expect("server");
    (tx, rx)
}

// ---------------------------------------------------------------- profiles

#[test]
fn profile_parameters_and_dtls_ids() {
    for p in SrtpProfile::ALL {
        assert_eq!(SrtpProfile::from_dtls_id(p.dtls_id()), Some(p));
        assert!(p.rtp_overhead() <= SrtpProfile::MAX_RTP_OVERHEAD);
        assert!(p.rtcp_overhead() <= SrtpProfile::MAX_RTCP_OVERHEAD);
    }
    assert_eq!(SrtpProfile::Aes128CmSha1_80.dtls_id(), 0x0001);
    assert_eq!(SrtpProfile::AeadAes128Gcm.dtls_id(), 0x0007);
    assert_eq!(SrtpProfile::AeadAes256Gcm.dtls_id(), 0x0008);
    assert_eq!(SrtpProfile::from_dtls_id(0x0002), None);
    assert_eq!(SrtpProfile::from_dtls_id(0x0000), None);
    assert_eq!(SrtpProfile::Aes128CmSha1_80.keying_material_len(), 60);
    assert_eq!(SrtpProfile::AeadAes128Gcm.keying_material_len(), 56);
    assert_eq!(SrtpProfile::AeadAes256Gcm.keying_material_len(), 88);
    assert_eq!(SrtpProfile::Aes128CmSha1_80.rtp_overhead(), 10);
    assert_eq!(SrtpProfile::Aes128CmSha1_80.rtcp_overhead(), 14);
    assert_eq!(SrtpProfile::AeadAes256Gcm.rtp_overhead(), 16);
    assert_eq!(SrtpProfile::AeadAes256Gcm.rtcp_overhead(), 20);
}

#[test]
fn bad_key_lengths_are_rejected() {
    let p = SrtpProfile::Aes128CmSha1_80;
    assert_eq!(
        SrtpContext::new(p, &[0; 15], &[0; 14]).map(|_| ()),
        Err(SrtpError::BadKeyLength)
    );
    assert_eq!(
        SrtpContext::new(p, &[0; 16], &[0; 12]).map(|_| ()),
        Err(SrtpError::BadSaltLength)
    );
    assert_eq!(
        SrtpContext::new(SrtpProfile::AeadAes256Gcm, &[0; 16], &[0; 12]).map(|_| ()),
        Err(SrtpError::BadKeyLength)
    );
    assert_eq!(
        SrtpContext::pair_from_keying_material(p, &[0; 59], true).map(|_| ()),
        Err(SrtpError::BadKeyingMaterialLength)
    );
}

// ------------------------------------------------------- RFC 3711 vectors

/// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E..., salt F0F1..FD,
/// SSRC 0, ROC 0, SEQ 0. A zero payload encrypts to the keystream itself.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let cipher = SessionCipher::cm(
        &unhex("2B7E151628AED2A6ABF7158809CF4F3C"),
        arr("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
        &[0u8; 20],
    )
    .expect("cipher");
    let spare = SessionCipher::cm(&[0u8; 16], [0u8; 14], &[0u8; 20]).expect("cipher");
    let mut ctx = SrtpContext::from_ciphers(SrtpProfile::Aes128CmSha1_80, cipher, spare);
    let blocks = 0xff02;
    let pkt = rtp(0, 0, &vec![0u8; blocks * 16]);
    let out = protect_rtp(&mut ctx, &pkt);
    let ks = &out[12..12 + blocks * 16];
    let block = |i: usize| &ks[i * 16..(i + 1) * 16];
    assert_eq!(block(0), &unhex("E03EAD0935C95E80E166B16DD92B4EB4")[..]);
    assert_eq!(block(1), &unhex("D23513162B02D0F72A43A2FE4A5F97AB")[..]);
    assert_eq!(block(2), &unhex("41E95B3BB0A2E8DD477901E4FCA894C0")[..]);
    assert_eq!(
        block(0xfeff),
        &unhex("EC8CDF7398607CB0F2D21675EA9EA1E4")[..]
    );
    assert_eq!(
        block(0xff00),
        &unhex("362B7C3C6773516318A077D7FC5073AE")[..]
    );
    assert_eq!(
        block(0xff01),
        &unhex("6A2CC3787889374FBEB4C81B17BA6C44")[..]
    );
}

/// RFC 3711 Appendix B.3: key derivation with kdr 0.
#[test]
fn rfc3711_b3_key_derivation() {
    let key = unhex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = unhex("0EC675AD498AFEEBB6960B3AABE6");
    let mut enc = [0u8; 16];
    derive_key(&key, &salt, 0, &mut enc).expect("derive");
    assert_eq!(enc[..], unhex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
    let mut s = [0u8; 14];
    derive_key(&key, &salt, 2, &mut s).expect("derive");
    assert_eq!(s[..], unhex("30CBBC08863D8C85D49DB34A9AE1")[..]);
    let mut auth = [0u8; 94];
    derive_key(&key, &salt, 1, &mut auth).expect("derive");
    assert_eq!(
        auth[..],
        unhex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
        )[..]
    );
}

/// The well-known AES_CM_128_HMAC_SHA1_80 reference packets for the B.3 master
/// key/salt (SSRC 0xcafebabe, SEQ 0x1234, SRTCP index 1): full derivation,
/// encryption and authentication, both directions.
#[test]
fn aes_cm_sha1_80_reference_packets() {
    let key = unhex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = unhex("0EC675AD498AFEEBB6960B3AABE6");
    let p = SrtpProfile::Aes128CmSha1_80;
    let mut tx = SrtpContext::new(p, &key, &salt).expect("ctx");
    let mut rx = SrtpContext::new(p, &key, &salt).expect("ctx");

    let plain = unhex("800f1234decafbadcafebabe abababababababababababababababab");
    let srtp =
        unhex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    assert_eq!(protect_rtp(&mut tx, &plain), srtp);
    assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(plain));

    let plain = unhex("81c8000bcafebabe abababababababababababababababab");
    let srtcp =
        unhex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
    // Send index 0 first so the reference packet gets index 1.
    let _ = protect_rtcp(&mut tx, &plain);
    assert_eq!(protect_rtcp(&mut tx, &plain), srtcp);
    assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(plain));
}

// ------------------------------------------------------- RFC 7714 vectors

const GCM_SALT: &str = "517569642070726f2071756f";
const GCM_RTP: &str = "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e6973
                       20646976697361 20696e207061727465732074726573";
const GCM_RTCP: &str = "81c8000d4d617273 4e5450314e545032525450200000042a0000e9304c756e61
                        deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

fn gcm_ctx(profile: SrtpProfile, key: &str) -> SrtpContext {
    let key = unhex(key);
    let rtp = SessionCipher::gcm(&key, arr(GCM_SALT)).expect("gcm");
    let rtcp = SessionCipher::gcm(&key, arr(GCM_SALT)).expect("gcm");
    SrtpContext::from_ciphers(profile, rtp, rtcp)
}

fn gcm_vectors() -> [(SrtpProfile, &'static str, &'static str, &'static str); 2] {
    [
        (
            SrtpProfile::AeadAes128Gcm,
            "000102030405060708090a0b0c0d0e0f",
            "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f
             42a5f47a51c7d19b36de3adf8833 899d7f27beb16a9152cf765ee4390cce",
            "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda
             4ce09b4686303ded0bb9275bc84aa458 96cf4d2fc5abf87245d9eade 800005d4",
        ),
        (
            SrtpProfile::AeadAes256Gcm,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "8040f17b8041f8d35501a0b2 32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3
             b50b2a0276ffae0f1ba63799b87b 7aa3db36dfffd6b0f9bb7878d7a76c13",
            "81c8000d4d617273 d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be
             8415f658c61de0476f1b6fad1d1eb30c 4446839f57ff6f6cb26ac3be 800005d4",
        ),
    ]
}

/// RFC 7714 §16: AEAD_AES_128_GCM and AEAD_AES_256_GCM RTP, SSRC 0x5501a0b2, ROC 0,
/// SEQ 0xf17b, session key/salt given directly.
#[test]
fn rfc7714_rtp_vectors() {
    for (profile, key, srtp, _) in gcm_vectors() {
        let plain = unhex(GCM_RTP);
        let expected = unhex(srtp);
        let mut tx = gcm_ctx(profile, key);
        assert_eq!(
            protect_rtp(&mut tx, &plain),
            expected,
            "{profile:?} encrypt"
        );
        let mut rx = gcm_ctx(profile, key);
        assert_eq!(
            unprotect_rtp(&mut rx, &expected),
            Ok(plain),
            "{profile:?} decrypt"
        );
    }
}

/// RFC 7714 §17: encrypted SRTCP with SRTCP index 0x5d4.
#[test]
fn rfc7714_rtcp_vectors() {
    for (profile, key, _, srtcp) in gcm_vectors() {
        let plain = unhex(GCM_RTCP);
        let expected = unhex(srtcp);
        let mut tx = gcm_ctx(profile, key);
        *tx.rtcp_send
            .get_or_insert_with(0x4d61_7273, || 0)
            .expect("insert") = 0x5d4;
        assert_eq!(
            protect_rtcp(&mut tx, &plain),
            expected,
            "{profile:?} encrypt"
        );
        let mut rx = gcm_ctx(profile, key);
        assert_eq!(
            unprotect_rtcp(&mut rx, &expected),
            Ok(plain),
            "{profile:?} decrypt"
        );
    }
}

/// Unencrypted SRTCP (E = 0) built independently with aws-lc-rs: GCM authenticates
/// header, payload and index word as AAD (RFC 7714 §9.2).
#[test]
fn gcm_unencrypted_srtcp_is_accepted() {
    use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = unhex("000102030405060708090a0b0c0d0e0f");
    let plain = unhex(GCM_RTCP);
    let word = 0x0000_05d4u32.to_be_bytes();
    let mut aad = plain.clone();
    aad.extend_from_slice(&word);
    let mut iv: [u8; 12] = arr(GCM_SALT);
    for (d, s) in iv[2..6].iter_mut().zip(0x4d61_7273u32.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in iv[8..12].iter_mut().zip(word) {
        *d ^= s;
    }
    let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("key"));
    let tag = k
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&aad), &mut [])
        .expect("seal");
    let mut srtcp = plain.clone();
    srtcp.extend_from_slice(tag.as_ref());
    srtcp.extend_from_slice(&word);

    let mut rx = gcm_ctx(
        SrtpProfile::AeadAes128Gcm,
        "000102030405060708090a0b0c0d0e0f",
    );
    assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(plain.clone()));
    assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Err(SrtpError::Replayed));
    let mut bad = srtcp.clone();
    bad[10] ^= 1;
    let mut rx = gcm_ctx(
        SrtpProfile::AeadAes128Gcm,
        "000102030405060708090a0b0c0d0e0f",
    );
    assert_eq!(unprotect_rtcp(&mut rx, &bad), Err(SrtpError::AuthFailed));
}

/// Unencrypted SRTCP for AES-CM: HMAC over packet || E=0/index, payload in clear.
#[test]
fn cm_unencrypted_srtcp_is_accepted() {
    use aws_lc_rs::hmac;
    let auth_key = [0x42u8; 20];
    let mk = || {
        SrtpContext::from_ciphers(
            SrtpProfile::Aes128CmSha1_80,
            SessionCipher::cm(&[1u8; 16], [2u8; 14], &[3u8; 20]).expect("cm"),
            SessionCipher::cm(&[4u8; 16], [5u8; 14], &auth_key).expect("cm"),
        )
    };
    let plain = rtcp(0xabcd_0001, b"hello rtcp!!");
    let mut srtcp = plain.clone();
    srtcp.extend_from_slice(&7u32.to_be_bytes());
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
        &srtcp,
    );
    srtcp.extend_from_slice(&tag.as_ref()[..10]);
    let mut rx = mk();
    assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(plain));
    assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Err(SrtpError::Replayed));
}

// ------------------------------------------------------------ round trips

#[test]
fn cm_round_trip_with_known_keys_both_directions() {
    let p = SrtpProfile::Aes128CmSha1_80;
    let km = km(p, 9);
    let (mut c_tx, mut c_rx) = SrtpContext::pair_from_keying_material(p, &km, true).expect("c");
    let (mut s_tx, mut s_rx) = SrtpContext::pair_from_keying_material(p, &km, false).expect("s");
    for seq in 100..110u16 {
        let pkt = rtp(seq, 0x1111, &[seq as u8; 100]);
        let srtp = protect_rtp(&mut c_tx, &pkt);
        assert_eq!(srtp.len(), pkt.len() + 10);
        assert_eq!(&srtp[..12], &pkt[..12], "header stays in clear");
        assert_ne!(&srtp[12..112], &pkt[12..], "payload encrypted");
        assert_eq!(unprotect_rtp(&mut s_rx, &srtp), Ok(pkt.clone()));
        // The client's own inbound context has the other key.
        assert_eq!(unprotect_rtp(&mut c_rx, &srtp), Err(SrtpError::AuthFailed));

        let pkt = rtp(seq, 0x2222, &[0x5a; 33]);
        let srtp = protect_rtp(&mut s_tx, &pkt);
        assert_eq!(unprotect_rtp(&mut c_rx, &srtp), Ok(pkt));

        let r = rtcp(0x1111, &[seq as u8; 24]);
        let srtcp = protect_rtcp(&mut c_tx, &r);
        assert_eq!(srtcp.len(), r.len() + 14);
        assert_eq!(unprotect_rtcp(&mut s_rx, &srtcp), Ok(r));
    }
}

#[test]
fn header_with_csrcs_and_extension_round_trips() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        // V=2, X=1, CC=2; two CSRCs; extension 0xBEDE with 2 words.
        let mut pkt = vec![0x92, 0x60, 0x00, 0x05, 0, 0, 0, 1, 0, 0, 0, 9];
        pkt.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]);
        pkt.extend_from_slice(&[0xbe, 0xde, 0x00, 0x02, 0x10, 0xaa, 0, 0, 0x21, 1, 2, 0]);
        let hdr_len = pkt.len();
        pkt.extend_from_slice(b"payload bytes");
        let srtp = protect_rtp(&mut tx, &pkt);
        assert_eq!(&srtp[..hdr_len], &pkt[..hdr_len], "{p:?}: header in clear");
        assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(pkt.clone()));

        // Extension longer than the packet.
        let mut bad = pkt.clone();
        bad[22] = 0x40;
        let mut buf = bad.clone();
        buf.resize(bad.len() + 16, 0);
        assert_eq!(
            tx.protect_rtp(&mut buf, bad.len()),
            Err(SrtpError::BadHeader)
        );
        // Version 1.
        let mut v1 = pkt.clone();
        v1[0] = 0x40 | 0x12;
        let mut buf = v1.clone();
        buf.resize(v1.len() + 16, 0);
        assert_eq!(
            tx.protect_rtp(&mut buf, v1.len()),
            Err(SrtpError::BadHeader)
        );
    }
}

#[test]
fn protect_needs_room_for_the_trailer() {
    for p in SrtpProfile::ALL {
        let (mut tx, _) = client_to_server(p);
        let pkt = rtp(1, 5, &[0; 20]);
        let mut buf = pkt.clone();
        buf.resize(pkt.len() + p.rtp_overhead() - 1, 0);
        assert_eq!(
            tx.protect_rtp(&mut buf, pkt.len()),
            Err(SrtpError::BufferTooSmall)
        );
        let too_long = buf.len() + 1;
        assert_eq!(
            tx.protect_rtp(&mut buf, too_long),
            Err(SrtpError::BufferTooSmall)
        );
        let r = rtcp(5, &[0; 8]);
        let mut buf = r.clone();
        buf.resize(r.len() + p.rtcp_overhead() - 1, 0);
        assert_eq!(
            tx.protect_rtcp(&mut buf, r.len()),
            Err(SrtpError::BufferTooSmall)
        );
        let mut short = [0x80u8; 7 + 20];
        assert_eq!(tx.protect_rtcp(&mut short, 7), Err(SrtpError::TooShort));
    }
}

// --------------------------------------------------------------- rollover

#[test]
fn sequence_rollover_both_directions() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let ssrc = 0xfeed_beef;
        let mut sent = Vec::new();
        for seq in [65533u16, 65534, 65535, 0, 1, 2] {
            let pkt = rtp(seq, ssrc, &[seq as u8; 40]);
            sent.push((pkt.clone(), protect_rtp(&mut tx, &pkt)));
        }
        assert_eq!(tx.outbound_roc(ssrc), Some(1), "{p:?}");
        // Deliver all but the first, then the first late (from before the wrap).
        for (pkt, srtp) in &sent[1..] {
            assert_eq!(unprotect_rtp(&mut rx, srtp).as_ref(), Ok(pkt), "{p:?}");
        }
        assert_eq!(rx.inbound_roc(ssrc), Some(1));
        let (pkt, srtp) = &sent[0];
        assert_eq!(unprotect_rtp(&mut rx, srtp).as_ref(), Ok(pkt), "{p:?} late");
        assert_eq!(
            rx.inbound_roc(ssrc),
            Some(1),
            "late packet does not move ROC"
        );
        // A replay of a post-wrap packet is still caught.
        assert_eq!(unprotect_rtp(&mut rx, &sent[3].1), Err(SrtpError::Replayed));

        // A sender retransmitting a pre-wrap sequence number keeps ROC 0 for it.
        let pkt = rtp(65530, ssrc, b"rtx");
        let srtp = protect_rtp(&mut tx, &pkt);
        assert_eq!(tx.outbound_roc(ssrc), Some(1));
        assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(pkt), "{p:?} rtx");
    }
}

#[test]
fn rollover_without_the_roc_would_not_authenticate() {
    // A receiver that first sees the stream after the wrap starts at ROC 0 and
    // cannot authenticate ROC-1 packets: ROC is bound into the tag / IV.
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let _ = protect_rtp(&mut tx, &rtp(65535, 1, b"x"));
        let srtp = protect_rtp(&mut tx, &rtp(0, 1, b"y"));
        assert_eq!(
            unprotect_rtp(&mut rx, &srtp),
            Err(SrtpError::AuthFailed),
            "{p:?}"
        );
        assert_eq!(rx.inbound_roc(1), None, "failed packet creates no state");
    }
}

// ----------------------------------------------------------------- replay

#[test]
fn replay_and_too_old_are_rejected() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let packets: Vec<_> = (0..300u16)
            .map(|seq| protect_rtp(&mut tx, &rtp(seq, 77, &[1, 2, 3])))
            .collect();
        assert!(unprotect_rtp(&mut rx, &packets[0]).is_ok());
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[0]),
            Err(SrtpError::Replayed)
        );
        for srtp in &packets[150..300] {
            assert!(unprotect_rtp(&mut rx, srtp).is_ok());
        }
        // highest = 299: 172 is the oldest index inside a 128-packet window.
        assert!(unprotect_rtp(&mut rx, &packets[149]).is_err());
        assert_eq!(unprotect_rtp(&mut rx, &packets[10]), Err(SrtpError::TooOld));
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[200]),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[299]),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn reordered_within_window_is_accepted_once() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let packets: Vec<_> = (0..200u16)
            .map(|seq| protect_rtp(&mut tx, &rtp(seq, 78, &[9; 5])))
            .collect();
        assert!(unprotect_rtp(&mut rx, &packets[199]).is_ok());
        assert!(unprotect_rtp(&mut rx, &packets[199 - 127]).is_ok());
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[199 - 127]),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[199 - 128]),
            Err(SrtpError::TooOld)
        );
    }
}

#[test]
fn srtcp_replay_is_rejected() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let packets: Vec<_> = (0..200u8)
            .map(|i| protect_rtcp(&mut tx, &rtcp(0x55, &[i; 12])))
            .collect();
        assert!(unprotect_rtcp(&mut rx, &packets[5]).is_ok());
        assert_eq!(
            unprotect_rtcp(&mut rx, &packets[5]),
            Err(SrtpError::Replayed)
        );
        assert!(unprotect_rtcp(&mut rx, &packets[3]).is_ok());
        assert!(unprotect_rtcp(&mut rx, &packets[199]).is_ok());
        assert_eq!(unprotect_rtcp(&mut rx, &packets[6]), Err(SrtpError::TooOld));
        assert_eq!(
            unprotect_rtcp(&mut rx, &packets[199]),
            Err(SrtpError::Replayed)
        );
        // The index word carries E=1 and the index.
        let last = &packets[199];
        let at = if p.is_aead() {
            last.len() - 4
        } else {
            last.len() - 14
        };
        assert_eq!(&last[at..at + 4], &(0x8000_0000u32 | 199).to_be_bytes());
    }
}

// ------------------------------------------------------------- tampering

#[test]
fn tampering_is_detected_and_leaves_state_untouched() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let pkt = rtp(40, 0x99, &[0x33; 64]);
        let srtp = protect_rtp(&mut tx, &pkt);
        let n = srtp.len();
        for (what, at) in [("tag", n - 1), ("payload", 20), ("header", 3), ("ssrc", 11)] {
            let mut bad = srtp.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                unprotect_rtp(&mut rx, &bad),
                Err(SrtpError::AuthFailed),
                "{p:?}: tampered {what}"
            );
        }
        assert_eq!(rx.inbound_roc(0x99), None);
        assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(pkt));

        let r = rtcp(0x99, &[7; 20]);
        let srtcp = protect_rtcp(&mut tx, &r);
        let n = srtcp.len();
        for at in [1, 5, 10, n - 1, n - 5, n - 15] {
            let mut bad = srtcp.clone();
            bad[at] ^= 0x04;
            assert!(
                unprotect_rtcp(&mut rx, &bad).is_err(),
                "{p:?}: rtcp byte {at}"
            );
        }
        assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(r));
    }
}

#[test]
fn truncated_input_at_every_length_is_an_error() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let mut pkt = vec![0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8];
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 1, 0, 0]);
        pkt.extend_from_slice(&[0xee; 30]);
        let srtp = protect_rtp(&mut tx, &pkt);
        for len in 0..srtp.len() {
            assert!(
                unprotect_rtp(&mut rx, &srtp[..len]).is_err(),
                "{p:?} rtp len {len}"
            );
        }
        let r = rtcp(8, &[0xcc; 16]);
        let srtcp = protect_rtcp(&mut tx, &r);
        for len in 0..srtcp.len() {
            assert!(
                unprotect_rtcp(&mut rx, &srtcp[..len]).is_err(),
                "{p:?} rtcp len {len}"
            );
        }
        assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(pkt));
        assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(r));
    }
}

#[test]
fn protecting_an_index_twice_is_refused() {
    for p in SrtpProfile::ALL {
        let (mut tx, mut rx) = client_to_server(p);
        let first = protect_rtp(&mut tx, &rtp(10, 3, b"first"));
        let pkt = rtp(10, 3, b"other");
        let mut buf = pkt.clone();
        buf.resize(pkt.len() + 16, 0);
        assert_eq!(
            tx.protect_rtp(&mut buf, pkt.len()),
            Err(SrtpError::Replayed),
            "{p:?}"
        );
        for seq in 11..200 {
            let _ = protect_rtp(&mut tx, &rtp(seq, 3, b"x"));
        }
        let mut buf = rtp(20, 3, b"y");
        let l = buf.len();
        buf.resize(l + 16, 0);
        assert_eq!(tx.protect_rtp(&mut buf, l), Err(SrtpError::TooOld), "{p:?}");
        // A gap left earlier may still be filled once.
        let mut tx2 = client_to_server(p).0;
        let _ = protect_rtp(&mut tx2, &rtp(100, 4, b"a"));
        let _ = protect_rtp(&mut tx2, &rtp(102, 4, b"c"));
        let late = protect_rtp(&mut tx2, &rtp(101, 4, b"b"));
        assert_eq!(unprotect_rtp(&mut rx, &late), Ok(rtp(101, 4, b"b")));
        assert_eq!(unprotect_rtp(&mut rx, &first), Ok(rtp(10, 3, b"first")));
    }
}

#[test]
fn ssrc_limit_is_enforced() {
    let (mut tx, _) = client_to_server(SrtpProfile::AeadAes128Gcm);
    for ssrc in 0..1024u32 {
        let _ = protect_rtp(&mut tx, &rtp(0, ssrc, b"a"));
    }
    let pkt = rtp(0, 5000, b"a");
    let mut buf = pkt.clone();
    buf.resize(pkt.len() + 16, 0);
    assert_eq!(
        tx.protect_rtp(&mut buf, pkt.len()),
        Err(SrtpError::TooManySsrcs)
    );
}

// --------------------------------------------------------------- proptest

fn any_profile() -> impl Strategy<Value = SrtpProfile> {
    prop::sample::select(SrtpProfile::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rtp_round_trip(
        profile in any_profile(),
        seq in any::<u16>(),
        ssrc in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let (mut tx, mut rx) = client_to_server(profile);
        let pkt = rtp(seq, ssrc, &payload);
        let srtp = protect_rtp(&mut tx, &pkt);
        prop_assert_eq!(srtp.len(), pkt.len() + profile.rtp_overhead());
        prop_assert_eq!(unprotect_rtp(&mut rx, &srtp), Ok(pkt));
    }

    #[test]
    fn rtcp_round_trip(
        profile in any_profile(),
        ssrc in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let (mut tx, mut rx) = client_to_server(profile);
        let pkt = rtcp(ssrc, &payload);
        let srtcp = protect_rtcp(&mut tx, &pkt);
        prop_assert_eq!(srtcp.len(), pkt.len() + profile.rtcp_overhead());
        prop_assert_eq!(unprotect_rtcp(&mut rx, &srtcp), Ok(pkt));
    }

    #[test]
    fn unprotect_never_panics(
        profile in any_profile(),
        data in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (_, mut rx) = client_to_server(profile);
        let mut a = data.clone();
        prop_assert!(rx.unprotect_rtp(&mut a).is_err());
        let mut b = data;
        prop_assert!(rx.unprotect_rtcp(&mut b).is_err());
    }
}

/// The example of the module documentation.
#[test]
fn module_example() {
    let profile = SrtpProfile::AeadAes128Gcm;
    let km = [7u8; 56]; // DTLS exporter output, profile.keying_material_len() bytes
    let (mut tx, _) = SrtpContext::pair_from_keying_material(profile, &km, true).unwrap();
    let (_, mut rx) = SrtpContext::pair_from_keying_material(profile, &km, false).unwrap();

    let mut buf = [0u8; 1500];
    let rtp = [
        0x80, 0x60, 0x00, 0x01, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3,
    ];
    buf[..rtp.len()].copy_from_slice(&rtp);
    let n = tx.protect_rtp(&mut buf, rtp.len()).unwrap();
    assert_eq!(n, rtp.len() + profile.rtp_overhead());
    let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
    assert_eq!(&buf[..m], &rtp[..]);
}
