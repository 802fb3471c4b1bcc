//! Two `Rtc` connected in memory through the simulated network (tests/common),
//! set up with the direct API.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ev, NetConfig, Pair, Peer};
use rtc_core::dtls::{DtlsVersion, DtlsVersions, SrtpProfileId};
use rtc_core::event::{FailReason, KeyframeRequestKind};
use rtc_core::ice::{Candidate, IceConnectionState};
use rtc_core::io::Protocol;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::{Rtc, RtcConfig};

struct Setup {
    a_lite: bool,
    b_lite: bool,
    a_dtls_client: bool,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    wrong_fingerprint: bool,
    a_profiles: Option<Vec<SrtpProfileId>>,
    a_dtls: DtlsVersions,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            a_lite: false,
            b_lite: false,
            a_dtls_client: true,
            a_addr: "10.0.0.1:5000".parse().unwrap(),
            b_addr: "10.0.0.2:6000".parse().unwrap(),
            wrong_fingerprint: false,
            a_profiles: None,
            a_dtls: DtlsVersions::Auto,
        }
    }
}

fn build(s: &Setup, net: NetConfig, seed: u64) -> Pair {
    let now = Instant::now();
    let mut ca = RtcConfig::new()
        .set_ice_lite(s.a_lite)
        .set_rtp_mode(true)
        .set_dtls_versions(s.a_dtls);
    if let Some(p) = &s.a_profiles {
        ca = ca.set_srtp_profiles(p);
    }
    let mut a = ca.build(now).unwrap();
    let mut b = Rtc::builder()
        .set_ice_lite(s.b_lite)
        .set_rtp_mode(true)
        .build(now)
        .unwrap();
    a.add_local_candidate(Candidate::host(s.a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(s.b_addr, Protocol::Udp).unwrap());
    a.add_remote_candidate(Candidate::host(s.b_addr, Protocol::Udp).unwrap());
    b.add_remote_candidate(Candidate::host(s.a_addr, Protocol::Udp).unwrap());
    let (ca, fa) = (
        a.direct_api().local_ice_credentials(),
        a.direct_api().local_dtls_fingerprint(),
    );
    let (cb, fb) = (
        b.direct_api().local_ice_credentials(),
        b.direct_api().local_dtls_fingerprint(),
    );
    let other = Rtc::new(now).direct_api().local_dtls_fingerprint();
    {
        let mut da = a.direct_api();
        da.set_remote_ice_credentials(cb);
        da.set_remote_fingerprint(if s.wrong_fingerprint { other } else { fb });
        // A lite agent is never controlling.
        da.set_ice_controlling(!s.a_lite);
        da.start_dtls(s.a_dtls_client).unwrap();
    }
    {
        let mut db = b.direct_api();
        db.set_remote_ice_credentials(ca);
        db.set_remote_fingerprint(fa);
        db.set_ice_controlling(s.a_lite);
        db.start_dtls(!s.a_dtls_client).unwrap();
    }
    Pair::new(
        Peer::new("a", a, s.a_addr, now),
        Peer::new("b", b, s.b_addr, now),
        now,
        net,
        seed,
    )
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1500];
    let n = h.write(HeaderExtension::None, &mut buf).unwrap();
    buf[n..n + payload.len()].copy_from_slice(payload);
    buf.truncate(n + payload.len());
    buf
}

fn connect(pair: &mut Pair, limit: Duration) {
    let ok = pair.run_until(limit, |p| p.both_connected());
    assert!(
        ok,
        "not connected after {:?}: a={:?} b={:?}",
        pair.elapsed(),
        pair.a.events,
        pair.b.events
    );
}

fn send_media(pair: &mut Pair, n: u16) {
    let mid = Mid::new("0").unwrap();
    pair.b.rtc.direct_api().declare_media(mid, MediaKind::Video);
    pair.b.rtc.direct_api().expect_stream_rx(mid, 1234).unwrap();
    for i in 0..n {
        let p = rtp(
            65_500u16.wrapping_add(i),
            90 * u32::from(i),
            1234,
            &[i as u8; 100],
        );
        pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        pair.step();
    }
    pair.run_until(Duration::from_secs(1), |_| false);
}

#[test]
fn connects_dtls_client_on_controlling_side() {
    let mut pair = build(&Setup::default(), NetConfig::default(), 1);
    connect(&mut pair, Duration::from_secs(5));
    assert!(
        pair.a
            .events
            .contains(&Ev::Ice(IceConnectionState::Connected))
    );
    send_media(&mut pair, 200);
    let got: Vec<u64> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Rtp {
                ssrc: 1234,
                seq_no,
                payload,
            } => {
                assert_eq!(payload.len(), 100);
                Some(*seq_no)
            }
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 200);
    // The sequence crossed 65535 -> 0 and is extended to 64 bits.
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    assert_eq!(pair.b.rtc.stats().srtp_packets_in, 200);
}

#[test]
fn connects_dtls_server_on_controlling_side() {
    let s = Setup {
        a_dtls_client: false,
        ..Default::default()
    };
    let mut pair = build(&s, NetConfig::default(), 2);
    connect(&mut pair, Duration::from_secs(5));
}

#[test]
fn ice_lite_server_with_full_client() {
    let s = Setup {
        b_lite: true,
        ..Default::default()
    };
    let mut pair = build(&s, NetConfig::default(), 3);
    connect(&mut pair, Duration::from_secs(5));
}

#[test]
fn ipv6() {
    let s = Setup {
        a_addr: "[fd00::1]:5000".parse().unwrap(),
        b_addr: "[fd00::2]:6000".parse().unwrap(),
        ..Default::default()
    };
    let mut pair = build(&s, NetConfig::default(), 4);
    connect(&mut pair, Duration::from_secs(5));
    send_media(&mut pair, 10);
    assert_eq!(pair.b.rtp_count(), 10);
}

#[test]
fn twenty_percent_loss_during_handshake() {
    for seed in 0..4 {
        let net = NetConfig {
            loss: 0.2,
            jitter: Duration::from_millis(5),
            ..Default::default()
        };
        let mut pair = build(&Setup::default(), net, 100 + seed);
        connect(&mut pair, Duration::from_secs(30));
    }
}

#[test]
fn fingerprint_mismatch_is_rejected() {
    let s = Setup {
        wrong_fingerprint: true,
        ..Default::default()
    };
    let mut pair = build(&s, NetConfig::default(), 5);
    pair.run_until(Duration::from_secs(10), |p| p.a.failed().is_some());
    assert_eq!(pair.a.failed(), Some(&FailReason::FingerprintMismatch));
    assert!(!pair.a.connected());
    assert!(!pair.a.rtc.is_alive());
    assert!(
        pair.a
            .rtc
            .direct_api()
            .write_rtp_packet(&rtp(1, 1, 1, b"x"))
            .is_err()
    );
}

#[test]
fn consent_expiry_disconnects() {
    let mut pair = build(&Setup::default(), NetConfig::default(), 6);
    connect(&mut pair, Duration::from_secs(5));
    pair.link_up = false;
    let t0 = pair.elapsed();
    let dead = pair.run_until(Duration::from_secs(60), |p| !p.a.rtc.is_alive());
    assert!(dead, "a still alive after 60 s of silence");
    let after = pair.elapsed() - t0;
    assert!(
        after >= Duration::from_secs(25) && after <= Duration::from_secs(40),
        "{after:?}"
    );
    pair.step(); // drain the final events
    assert_eq!(pair.a.failed(), Some(&FailReason::IceFailed));
}

#[test]
fn dtls_version_is_13_by_default_and_12_when_one_side_limits_it() {
    for (a_dtls, a_client, want) in [
        (DtlsVersions::Auto, true, DtlsVersion::Dtls13),
        (DtlsVersions::Auto, false, DtlsVersion::Dtls13),
        (DtlsVersions::Dtls12, true, DtlsVersion::Dtls12),
        (DtlsVersions::Dtls12, false, DtlsVersion::Dtls12),
    ] {
        let s = Setup {
            a_dtls,
            a_dtls_client: a_client,
            ..Default::default()
        };
        let mut pair = build(&s, NetConfig::default(), 11);
        connect(&mut pair, Duration::from_secs(5));
        assert_eq!(
            pair.a.rtc.dtls_version(),
            Some(want),
            "{a_dtls:?} {a_client}"
        );
        assert_eq!(
            pair.b.rtc.dtls_version(),
            Some(want),
            "{a_dtls:?} {a_client}"
        );
        assert_eq!(pair.a.rtc.stats().dtls_version, Some(want));
        // Media flows with the keys of either version.
        send_media(&mut pair, 20);
        assert!(
            pair.b.rtc.stats().srtp_packets_in >= 20,
            "{a_dtls:?} {a_client}"
        );
    }
}

#[test]
fn srtp_profile_filter_refuses_other_profiles() {
    // dimpl's server picks AEAD_AES_256_GCM (1.2: its preference; 1.3: the dimpl
    // client's first offer); allowing only CM makes the handshake fail on the client
    // rather than run with a refused profile.
    let s = Setup {
        a_profiles: Some(vec![SrtpProfileId::Aes128CmSha1_80]),
        ..Default::default()
    };
    let mut pair = build(&s, NetConfig::default(), 7);
    pair.run_until(Duration::from_secs(10), |p| p.a.failed().is_some());
    assert!(
        matches!(pair.a.failed(), Some(FailReason::Dtls(_))),
        "{:?}",
        pair.a.events
    );
}

#[test]
fn keyframe_requests_reach_the_sender() {
    let mut pair = build(&Setup::default(), NetConfig::default(), 8);
    connect(&mut pair, Duration::from_secs(5));
    send_media(&mut pair, 5);
    // Requests for an SSRC the peer never sent are ignored.
    pair.b
        .rtc
        .direct_api()
        .request_keyframe(999, KeyframeRequestKind::Pli)
        .unwrap();
    pair.b
        .rtc
        .direct_api()
        .request_keyframe(1234, KeyframeRequestKind::Pli)
        .unwrap();
    pair.b
        .rtc
        .direct_api()
        .request_keyframe(1234, KeyframeRequestKind::Fir)
        .unwrap();
    pair.run_until(Duration::from_millis(200), |_| false);
    let got: Vec<_> = pair
        .a
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Keyframe(..)))
        .cloned()
        .collect();
    assert_eq!(
        got,
        vec![
            Ev::Keyframe(1234, KeyframeRequestKind::Pli),
            Ev::Keyframe(1234, KeyframeRequestKind::Fir)
        ]
    );
    assert!(pair.a.rtc.stats().srtcp_packets_in >= 3);
}
