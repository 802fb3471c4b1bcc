//! Offer/answer through SDP between two `Rtc`, and answers to real browser offers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ev, NetConfig, Pair, Peer};
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::Extension;
use rtc_core::sdp::{Codec, Direction, IceFragment, Setup};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rtc};

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn answers_a_real_chromium_offer() {
    let now = Instant::now();
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    rtc.add_local_candidate(Candidate::host(local, Protocol::Udp).unwrap());
    let offer = SdpOffer::from_sdp_string(&fixture("chromium-156-av-datachannel.sdp")).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    let a = answer.description();
    assert_eq!(
        a.bundle_mids(),
        Some(&["0".to_string(), "1".into(), "2".into()][..])
    );
    for m in &a.media {
        assert_eq!(m.setup, Some(Setup::Active));
        assert!(m.candidates.iter().any(|c| c.contains("127.0.0.1 5000")));
    }
    let video = rtc.media_info(Mid::new("1").unwrap()).expect("video mid");
    assert_eq!(video.kind, MediaKind::Video);
    assert_eq!(video.pt_for(&Codec::Vp8), Some(96));
    assert!(video.rtx.contains(&(96, 97)));
    assert_eq!(video.extensions.id_of(Extension::Mid), Some(4));
    assert!(!video.remote_ssrcs.is_empty());
    let audio = rtc.media_info(Mid::new("0").unwrap()).expect("audio mid");
    assert_eq!(audio.pt_for(&Codec::Opus), Some(111));
    assert_eq!(audio.direction, Direction::SendRecv);
    // The answer parses back.
    SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
}

#[test]
fn firefox_offer_with_mdns_candidates_is_answered() {
    let mut rtc = Rtc::new(Instant::now());
    let offer = SdpOffer::from_sdp_string(&fixture("firefox-esr-153-av-datachannel.sdp")).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    assert_eq!(answer.description().media.len(), 3);
    assert!(
        rtc.media_info(Mid::new("0").unwrap())
            .unwrap()
            .pt_for(&Codec::Opus)
            .is_some()
    );
}

#[test]
fn bad_offer_names_the_line() {
    let e = SdpOffer::from_sdp_string(
        "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x UDP 0\r\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 5);
}

#[test]
fn two_rtc_negotiate_by_sdp_and_connect() {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());

    let mut api = a.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv);
    let video = api.add_media(MediaKind::Video, Direction::SendOnly);
    let (offer, pending) = api.apply().expect("changes");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let answer = b.sdp_api().accept_offer(offer).unwrap();
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
    a.sdp_api().accept_answer(pending, answer).unwrap();

    assert_eq!(b.media_info(video).unwrap().direction, Direction::RecvOnly);
    assert_eq!(a.media_info(video).unwrap().direction, Direction::SendOnly);
    assert_eq!(a.media_info(audio).unwrap().pt_for(&Codec::Opus), Some(111));

    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        9,
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let h = rtc_core::rtp::RtpHeader {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc,
        ..Default::default()
    };
    let mut buf = vec![0u8; 200];
    let n = h
        .write(rtc_core::rtp::HeaderExtension::None, &mut buf)
        .unwrap();
    buf.truncate(n + 100);
    buf
}

/// A writes RTP packets with the given sequence numbers (SSRC 42), one per step.
fn send_rtp(pair: &mut Pair, seqs: std::ops::Range<u16>) {
    for i in seqs {
        pair.a
            .rtc
            .direct_api()
            .write_rtp_packet(&rtp(i, 42))
            .unwrap();
        pair.step();
    }
}

fn negotiate(a: &mut Rtc, b: &mut Rtc, restart: bool, add_video: bool) {
    let mut api = a.sdp_api();
    if restart {
        api.ice_restart();
    }
    if add_video {
        api.add_media(MediaKind::Video, Direction::SendRecv);
    }
    let (offer, pending) = api.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let answer = b.sdp_api().accept_offer(offer).unwrap();
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
    a.sdp_api().accept_answer(pending, answer).unwrap();
}

#[test]
fn ice_restart_by_reoffer_keeps_media_flowing() {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    negotiate(&mut a, &mut b, false, true);
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        21,
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));
    send_rtp(&mut pair, 0..10);
    pair.run_until(Duration::from_millis(200), |_| false);
    assert_eq!(pair.b.rtp_count(), 10);

    // A re-offers with an ICE restart; B answers; both get new credentials.
    let ufrag_a = pair.a.rtc.direct_api().local_ice_credentials().ufrag;
    let ufrag_b = pair.b.rtc.direct_api().local_ice_credentials().ufrag;
    let events_before = pair.a.events.len();
    negotiate(&mut pair.a.rtc, &mut pair.b.rtc, true, false);
    assert_ne!(
        pair.a.rtc.direct_api().local_ice_credentials().ufrag,
        ufrag_a
    );
    assert_ne!(
        pair.b.rtc.direct_api().local_ice_credentials().ufrag,
        ufrag_b
    );
    // The re-offer carries the existing media section (same mid), not a new one.
    assert_eq!(pair.a.rtc.media().count(), 1);
    send_rtp(&mut pair, 10..30);
    // Run well past the 30 s consent window: only the restarted session's checks
    // (new credentials) can keep consent alive now, as both sides dropped the old ones.
    pair.run_until(Duration::from_secs(45), |_| false);
    assert!(
        pair.a.rtc.is_alive() && pair.b.rtc.is_alive(),
        "a={:?}",
        &pair.a.events[events_before..]
    );
    assert!(
        !pair.a.events[events_before..]
            .iter()
            .any(|e| matches!(e, Ev::Failed(_)))
    );
    send_rtp(&mut pair, 30..40);
    pair.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(
        pair.b.rtp_count(),
        40,
        "media must flow through and after the restart"
    );
    assert!(pair.a.rtc.is_alive() && pair.b.rtc.is_alive());
}

/// One fragment hop: to text and parsed back, as a WHIP `PATCH` body would travel.
fn over_the_wire(f: &IceFragment) -> IceFragment {
    IceFragment::parse(&f.to_sdpfrag()).expect("our fragment parses")
}

#[test]
fn ice_restart_by_fragment_keeps_media_flowing() {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    negotiate(&mut a, &mut b, false, true);
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        23,
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));
    send_rtp(&mut pair, 0..10);
    pair.run_until(Duration::from_millis(200), |_| false);
    assert_eq!(pair.b.rtp_count(), 10);

    // A restarts ICE with a fragment (no offer); B answers with its own fragment.
    let ufrag_a = pair.a.rtc.direct_api().local_ice_credentials().ufrag;
    let ufrag_b = pair.b.rtc.direct_api().local_ice_credentials().ufrag;
    let events_before = pair.a.events.len();
    let restart = pair.a.rtc.sdp_api().ice_restart_fragment().unwrap();
    let (new_a, _) = restart.credentials().unwrap();
    assert_ne!(new_a, ufrag_a);
    assert!(restart.candidates().any(|c| c.contains("10.0.0.1 5000")));
    let answer = pair
        .b
        .rtc
        .sdp_api()
        .accept_ice_fragment(&over_the_wire(&restart))
        .unwrap()
        .expect("new credentials restart ICE: B answers with its fragment");
    let new_b = pair.b.rtc.direct_api().local_ice_credentials().ufrag;
    assert_ne!(new_b, ufrag_b);
    assert_eq!(answer.credentials().unwrap().0, new_b);
    assert!(answer.end_of_candidates());
    // A completes the restart: no further answer.
    assert_eq!(
        pair.a
            .rtc
            .sdp_api()
            .accept_ice_fragment(&over_the_wire(&answer))
            .unwrap(),
        None
    );
    send_rtp(&mut pair, 10..30);
    // Past the 30 s consent window: only checks with the new credentials keep it.
    pair.run_until(Duration::from_secs(45), |_| false);
    assert!(
        pair.a.rtc.is_alive() && pair.b.rtc.is_alive(),
        "a={:?}",
        &pair.a.events[events_before..]
    );
    send_rtp(&mut pair, 30..40);
    pair.run_until(Duration::from_millis(500), |_| false);
    assert_eq!(
        pair.b.rtp_count(),
        40,
        "media must flow through and after the restart"
    );
}

#[test]
fn candidates_trickled_after_negotiation_are_used() {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    // Neither side has a candidate when the offer and answer are exchanged.
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    negotiate(&mut a, &mut b, false, true);
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        29,
    );
    assert!(!pair.run_until(Duration::from_secs(2), |p| p.both_connected()));

    pair.a
        .rtc
        .add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    pair.b
        .rtc
        .add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let from_a = pair.a.rtc.sdp_api().local_ice_fragment();
    let from_b = pair.b.rtc.sdp_api().local_ice_fragment();
    // Same credentials: trickle, no answer.
    assert_eq!(
        pair.b
            .rtc
            .sdp_api()
            .accept_ice_fragment(&over_the_wire(&from_a))
            .unwrap(),
        None
    );
    assert_eq!(
        pair.a
            .rtc
            .sdp_api()
            .accept_ice_fragment(&over_the_wire(&from_b))
            .unwrap(),
        None
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));
}

#[test]
fn ice_fragments_are_refused_before_negotiation_and_for_unknown_mids() {
    let now = Instant::now();
    let mut a = Rtc::new(now);
    let frag =
        IceFragment::parse("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n").unwrap();
    assert!(matches!(
        a.sdp_api().accept_ice_fragment(&frag),
        Err(rtc_core::RtcError::InvalidState(_))
    ));
    assert!(matches!(
        a.sdp_api().ice_restart_fragment(),
        Err(rtc_core::RtcError::InvalidState(_))
    ));
    let mut b = Rtc::new(now);
    negotiate(&mut a, &mut b, false, true);
    let unknown = IceFragment::parse("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:7\r\n").unwrap();
    assert!(a.sdp_api().accept_ice_fragment(&unknown).is_err());
    // A ufrag alone that differs from the peer's cannot restart ICE.
    let half = IceFragment::parse("a=ice-ufrag:zzzz\r\n").unwrap();
    let before = a.direct_api().local_ice_credentials();
    assert!(matches!(
        a.sdp_api().accept_ice_fragment(&half),
        Err(rtc_core::RtcError::InvalidState(_))
    ));
    assert_eq!(a.direct_api().local_ice_credentials(), before);
}

#[test]
fn reoffer_removes_and_adds_media_on_a_live_session() {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv);
    let video = api.add_media(MediaKind::Video, Direction::SendOnly);
    let (offer, pending) = api.apply().unwrap();
    let answer = b.sdp_api().accept_offer(offer).unwrap();
    a.sdp_api().accept_answer(pending, answer).unwrap();
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        31,
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));

    // A removes the video section and adds a second audio one in one re-offer.
    let mut api = pair.a.rtc.sdp_api();
    api.remove_media(video).unwrap();
    assert!(matches!(
        api.remove_media(Mid::new("9").unwrap()),
        Err(rtc_core::RtcError::UnknownMid(_))
    ));
    let audio2 = api.add_media(MediaKind::Audio, Direction::SendRecv);
    assert_ne!(audio2, video, "a removed mid is not reused");
    let (offer, pending) = api.apply().unwrap();
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let v = offer.description().media_by_mid(video.as_str()).unwrap();
    assert!(v.is_rejected());
    assert!(
        !offer
            .description()
            .bundle_mids()
            .unwrap()
            .contains(&video.to_string())
    );
    let answer = pair.b.rtc.sdp_api().accept_offer(offer).unwrap();
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
    assert!(
        answer
            .description()
            .media_by_mid(video.as_str())
            .unwrap()
            .is_rejected()
    );
    pair.a.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    for rtc in [&pair.a.rtc, &pair.b.rtc] {
        let mids: Vec<Mid> = rtc.media().map(|(m, _)| m).collect();
        assert_eq!(mids, vec![audio, audio2]);
        assert!(rtc.media_info(video).is_none());
    }
    // The session stays up through the renegotiation.
    pair.run_until(Duration::from_secs(2), |_| false);
    assert!(pair.a.rtc.is_alive() && pair.b.rtc.is_alive());
    assert!(pair.a.failed().is_none() && pair.b.failed().is_none());
}
