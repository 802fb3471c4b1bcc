//! Plain RTP mode (`DirectApi::start_plain`): two `Rtc`s without ICE and DTLS exchange
//! RTP and RTCP, unprotected or with SRTP keys given out of band.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ev, NetConfig, Pair, Peer};
use rtc_core::dtls::SrtpProfileId;
use rtc_core::event::KeyframeRequestKind;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::{PlainSrtp, Rtc, RtcError};

const SSRC: u32 = 0x1234_5678;

fn mid() -> Mid {
    Mid::new("v").expect("valid mid")
}

/// A sends on section `v`, B receives it; both in plain mode with `keys` (A's and B's).
fn plain_pair(keys: Option<(PlainSrtp, PlainSrtp)>) -> Pair {
    let now = Instant::now();
    let a_addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let b_addr: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).expect("rtc");
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).expect("rtc");
    let (ka, kb) = match &keys {
        Some((x, y)) => (Some(x), Some(y)),
        None => (None, None),
    };
    let mut api = a.direct_api();
    api.start_plain(a_addr, b_addr, ka).expect("plain a");
    api.declare_media(mid(), MediaKind::Video);
    let mut api = b.direct_api();
    api.start_plain(b_addr, a_addr, kb).expect("plain b");
    api.declare_media(mid(), MediaKind::Video);
    api.expect_stream_rx(mid(), SSRC).expect("rx");
    assert!(a.is_connected() && a.is_plain());
    Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        7,
    )
}

fn send(p: &mut Pair, seq: u16) {
    let h = RtpHeader {
        payload_type: 96,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc: SSRC,
        marker: true,
        ..RtpHeader::default()
    };
    p.a.rtc
        .direct_api()
        .write_rtp_packet_with(|buf| {
            let n = h.write(HeaderExtension::None, buf).ok()?;
            buf.get_mut(n..n + 4)?
                .copy_from_slice(&[1, 2, 3, u8::try_from(seq % 256).ok()?]);
            Some(n + 4)
        })
        .expect("write");
}

fn exchange(mut p: Pair) -> Pair {
    assert!(p.run_until(Duration::from_millis(50), |p| p.both_connected()));
    for seq in 1..=20u16 {
        send(&mut p, seq);
        p.run_until(Duration::from_millis(20), |_| false);
    }
    assert!(p.run_until(Duration::from_secs(1), |p| p.b.rtp_count() == 20));
    let payloads: Vec<Vec<u8>> =
        p.b.events
            .iter()
            .filter_map(|e| match e {
                Ev::Rtp { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect();
    assert_eq!(payloads[4], vec![1, 2, 3, 5]);
    // RTCP flows back: a keyframe request from B reaches A.
    p.b.rtc
        .direct_api()
        .request_keyframe(SSRC, KeyframeRequestKind::Pli)
        .expect("pli");
    assert!(p.run_until(Duration::from_secs(1), |p| {
        p.a.events
            .contains(&Ev::Keyframe(SSRC, KeyframeRequestKind::Pli))
    }));
    p
}

#[test]
fn plain_rtp_flows_without_ice_or_dtls() {
    let p = exchange(plain_pair(None));
    assert_eq!(p.b.rtc.srtp_profile(), None);
}

fn keys(profile: SrtpProfileId, a: u8, b: u8) -> (PlainSrtp, PlainSrtp) {
    let n = PlainSrtp::key_len(profile);
    let (ka, kb) = (vec![a; n], vec![b; n]);
    (
        PlainSrtp {
            profile,
            local_key: ka.clone(),
            remote_key: kb.clone(),
        },
        PlainSrtp {
            profile,
            local_key: kb,
            remote_key: ka,
        },
    )
}

#[test]
fn srtp_with_given_keys_flows_for_each_profile() {
    for profile in [
        SrtpProfileId::Aes128CmSha1_80,
        SrtpProfileId::AeadAes128Gcm,
        SrtpProfileId::AeadAes256Gcm,
    ] {
        let p = exchange(plain_pair(Some(keys(profile, 1, 2))));
        assert_eq!(p.b.rtc.srtp_profile(), Some(profile));
        assert_eq!(p.b.rtc.stats().srtp_errors, 0);
    }
}

#[test]
fn wrong_keys_are_dropped_as_srtp_errors() {
    let (a, mut b) = keys(SrtpProfileId::Aes128CmSha1_80, 1, 2);
    b.remote_key = vec![9; a.local_key.len()];
    let mut p = plain_pair(Some((a, b)));
    assert!(p.run_until(Duration::from_millis(50), |p| p.both_connected()));
    for seq in 1..=5u16 {
        send(&mut p, seq);
    }
    p.run_until(Duration::from_millis(200), |_| false);
    assert_eq!(p.b.rtp_count(), 0);
    assert!(p.b.rtc.stats().srtp_errors >= 5);
}

#[test]
fn bad_plain_parameters_are_typed_errors() {
    let now = Instant::now();
    let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let remote: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
    let mut rtc = Rtc::new(now);
    let short = PlainSrtp {
        profile: SrtpProfileId::AeadAes128Gcm,
        local_key: vec![0; 10],
        remote_key: vec![0; 28],
    };
    let err = rtc
        .direct_api()
        .start_plain(local, remote, Some(&short))
        .expect_err("short key");
    assert!(matches!(err, RtcError::SrtpKeys(_)), "{err:?}");
    let port0: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let err = rtc
        .direct_api()
        .start_plain(local, port0, None)
        .expect_err("port 0");
    assert!(matches!(err, RtcError::InvalidState(_)), "{err:?}");
    // A DTLS role fixed first: too late for plain mode.
    let mut rtc = Rtc::new(now);
    rtc.direct_api().start_dtls(true).expect("role");
    let err = rtc
        .direct_api()
        .start_plain(local, remote, None)
        .expect_err("dtls started");
    assert!(matches!(err, RtcError::InvalidState(_)), "{err:?}");
    assert!(!rtc.is_connected());
}
