//! Unit tests of the DTLS transport (a `#[cfg(test)]` module of `dtls`).

use super::*;
use std::time::Duration;

fn pump(a: &mut DtlsTransport, b: &mut DtlsTransport, now: Instant) {
    for _ in 0..50 {
        let mut moved = false;
        while let Some(p) = a.poll_transmit() {
            b.handle_packet(now, &p);
            moved = true;
        }
        while let Some(p) = b.poll_transmit() {
            a.handle_packet(now, &p);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

fn pair(mismatch: bool) -> (DtlsTransport, DtlsTransport) {
    pair_v(mismatch, DtlsVersions::Auto, DtlsVersions::Auto)
}

/// `a` is the client with versions `va`, `b` the server with `vb`.
fn pair_v(mismatch: bool, va: DtlsVersions, vb: DtlsVersions) -> (DtlsTransport, DtlsTransport) {
    let all = vec![
        SrtpProfileId::AeadAes256Gcm,
        SrtpProfileId::AeadAes128Gcm,
        SrtpProfileId::Aes128CmSha1_80,
    ];
    let ca = DtlsCert::new_ecdsa_p256().unwrap();
    let cb = DtlsCert::new_ecdsa_p256().unwrap();
    let other = DtlsCert::new_ecdsa_p256().unwrap();
    let mut a = DtlsTransport::new(ca.clone(), all.clone(), va);
    let mut b = DtlsTransport::new(cb.clone(), all, vb);
    a.set_remote_fingerprint(if mismatch {
        other.fingerprint().clone()
    } else {
        cb.fingerprint().clone()
    });
    b.set_remote_fingerprint(ca.fingerprint().clone());
    a.set_active(true);
    b.set_active(false);
    (a, b)
}

fn events(t: &mut DtlsTransport) -> Vec<DtlsEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

#[test]
fn associations_share_one_dimpl_config() {
    let (a, b) = pair(false);
    assert!(Arc::ptr_eq(&a.config, &b.config));
    // And the shared one still completes handshakes (every test here uses it).
    assert_eq!(a.config.mtu(), 1200);
}

#[test]
fn handshake_exports_matching_keys() {
    let now = Instant::now();
    let (mut a, mut b) = pair(false);
    a.start(now).unwrap();
    pump(&mut a, &mut b, now);
    assert!(a.is_connected() && b.is_connected());
    let ka = events(&mut a);
    let kb = events(&mut b);
    let key = |ev: &[DtlsEvent]| {
        ev.iter().find_map(|e| match e {
            DtlsEvent::SrtpKeys {
                profile,
                material,
                we_are_client,
            } => Some((*profile, material.clone(), *we_are_client)),
            _ => None,
        })
    };
    let (pa, ma, ca) = key(&ka).expect("client keys");
    let (pb, mb, cb) = key(&kb).expect("server keys");
    assert_eq!(pa, pb);
    assert_eq!(ma, mb);
    assert!(ca && !cb);
    assert!(matches!(ka[0], DtlsEvent::Connected));
}

#[test]
fn version_negotiation_matrix() {
    use DtlsVersions::*;
    let cases = [
        (Auto, Auto, Some(DtlsVersion::Dtls13)),
        (Auto, Dtls12, Some(DtlsVersion::Dtls12)),
        (Dtls12, Auto, Some(DtlsVersion::Dtls12)),
        (Auto, Dtls13, Some(DtlsVersion::Dtls13)),
        (Dtls13, Auto, Some(DtlsVersion::Dtls13)),
        (Dtls12, Dtls12, Some(DtlsVersion::Dtls12)),
        (Dtls13, Dtls12, None),
        (Dtls12, Dtls13, None),
    ];
    for (va, vb, want) in cases {
        let now = Instant::now();
        let (mut a, mut b) = pair_v(false, va, vb);
        a.start(now).unwrap();
        pump(&mut a, &mut b, now);
        let ka = events(&mut a);
        let kb = events(&mut b);
        let keys = |ev: &[DtlsEvent]| {
            ev.iter().find_map(|e| match e {
                DtlsEvent::SrtpKeys {
                    profile, material, ..
                } => Some((*profile, material.clone())),
                _ => None,
            })
        };
        match want {
            Some(v) => {
                assert!(a.is_connected() && b.is_connected(), "{va:?}/{vb:?}");
                assert_eq!((a.version(), b.version()), (Some(v), Some(v)));
                let (ka, kb) = (keys(&ka).expect("client keys"), keys(&kb).expect("keys"));
                assert_eq!(ka, kb, "{va:?}/{vb:?}");
            }
            None => {
                assert!(!a.is_connected() && !b.is_connected(), "{va:?}/{vb:?}");
                assert!(keys(&ka).is_none() && keys(&kb).is_none());
            }
        }
    }
}

#[test]
fn fingerprint_mismatch_fails_without_keys() {
    let now = Instant::now();
    let (mut a, mut b) = pair(true);
    a.start(now).unwrap();
    pump(&mut a, &mut b, now);
    let ev = events(&mut a);
    assert!(
        ev.iter()
            .any(|e| matches!(e, DtlsEvent::Failed(DtlsError::FingerprintMismatch)))
    );
    assert!(!ev.iter().any(|e| matches!(e, DtlsEvent::SrtpKeys { .. })));
    assert!(!a.is_connected());
}

#[test]
fn application_data_both_ways() {
    let now = Instant::now();
    let (mut a, mut b) = pair(false);
    a.start(now).unwrap();
    pump(&mut a, &mut b, now);
    events(&mut a);
    events(&mut b);
    a.send_data(b"hello").unwrap();
    b.send_data(b"world").unwrap();
    pump(&mut a, &mut b, now);
    assert!(matches!(&events(&mut b)[..], [DtlsEvent::Data(d)] if d == b"hello"));
    assert!(matches!(&events(&mut a)[..], [DtlsEvent::Data(d)] if d == b"world"));
}

#[test]
fn retransmits_on_timeout_after_loss() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(false);
    a.start(now).unwrap();
    // Lose the first ClientHello.
    assert!(a.poll_transmit().is_some());
    let t = a.poll_timeout().expect("retransmit timer");
    now = now.max(t) + Duration::from_millis(1);
    a.handle_timeout(now);
    pump(&mut a, &mut b, now);
    for _ in 0..20 {
        if a.is_connected() && b.is_connected() {
            break;
        }
        now += Duration::from_millis(500);
        a.handle_timeout(now);
        b.handle_timeout(now);
        pump(&mut a, &mut b, now);
    }
    assert!(a.is_connected() && b.is_connected());
}

#[test]
fn fingerprint_parse_and_display() {
    let c = DtlsCert::new_ecdsa_p256().unwrap();
    let s = c.fingerprint().to_string();
    assert!(s.starts_with("sha-256 "));
    let back: Fingerprint = s.parse().unwrap();
    assert_eq!(&back, c.fingerprint());
    assert!("sha-256 AB:CD".parse::<Fingerprint>().is_err());
    assert!("md5 AB".parse::<Fingerprint>().is_err());
    assert!("sha-256".parse::<Fingerprint>().is_err());
    assert!(
        "sha-1 ZZ:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"
            .parse::<Fingerprint>()
            .is_err()
    );
}

/// The provider's key for `der` while `current` is this thread's certificate.
fn load_with(current: Option<&DtlsCert>, der: &[u8]) -> Box<dyn SigningKey> {
    let provider = shared_config();
    let load = || {
        provider
            .crypto_provider()
            .key_provider
            .load_private_key(der)
    };
    match current {
        Some(c) => with_cert(c, load),
        None => load(),
    }
    .expect("key loads")
}

fn verifies(cert: &DtlsCert, key: &mut dyn SigningKey) -> bool {
    let mut sig = Buf::new();
    key.sign(b"transcript", HashAlgorithm::SHA256, &mut sig)
        .expect("signs");
    let provider = shared_config();
    provider
        .crypto_provider()
        .signature_verification
        .verify_signature(
            &cert.inner.certificate,
            b"transcript",
            &sig,
            HashAlgorithm::SHA256,
            SignatureAlgorithm::ECDSA,
        )
        .is_ok()
}

#[test]
fn the_parsed_key_is_shared_only_for_the_current_certificates_own_bytes() {
    let cert = DtlsCert::new_ecdsa_p256().unwrap();
    let other = DtlsCert::new_ecdsa_p256().unwrap();
    let parsed = cert.key.clone().expect("rcgen's PKCS#8 key parses");
    let strong = Arc::strong_count(&parsed);
    // Inside the certificate's scope its own bytes give the shared key ...
    let mut shared = load_with(Some(&cert), &cert.inner.private_key);
    assert_eq!(Arc::strong_count(&parsed), strong + 1);
    assert!(verifies(&cert, &mut *shared));
    drop(shared);
    // ... any other bytes, or no scope, are parsed afresh and still sign correctly.
    let mut parsed_other = load_with(Some(&cert), &other.inner.private_key);
    let mut unscoped = load_with(None, &cert.inner.private_key);
    assert_eq!(Arc::strong_count(&parsed), strong);
    assert!(verifies(&other, &mut *parsed_other));
    assert!(verifies(&cert, &mut *unscoped));
    // The scope is restored afterwards, also when nested.
    with_cert(&other, || {
        with_cert(&cert, || {});
        let again = CURRENT_CERT.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|(inner, _)| Arc::ptr_eq(inner, &other.inner))
        });
        assert!(again, "the outer certificate is current again");
    });
    assert!(CURRENT_CERT.with(|c| c.borrow().is_none()));
}

#[test]
fn a_signature_with_the_wrong_hash_is_refused() {
    let cert = DtlsCert::new_ecdsa_p256().unwrap();
    let mut key = load_with(Some(&cert), &cert.inner.private_key);
    let mut sig = Buf::new();
    assert!(matches!(
        key.sign(b"x", HashAlgorithm::SHA384, &mut sig),
        Err(CryptoError::SigningKeyHashMismatch { .. })
    ));
    assert_eq!(key.supported_hash_algorithms(), &[HashAlgorithm::SHA256]);
}
