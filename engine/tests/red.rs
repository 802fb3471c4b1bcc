//! Opus RED (RFC 2198) through the engine: a publisher that negotiated RED sends RED; a
//! subscriber that negotiated RED receives it as RED, one that did not receives the
//! primary Opus encoding alone, under its Opus payload type.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, Placement, SessionSetup};
use rtc_core::ice::Candidate;
use rtc_core::media::{Codec, MediaKind};
use rtc_core::rtp::red::{RedBlock, RedPayload, write_red};
use rtc_core::sdp::{Direction, OpusRed};
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Protocol, RtcConfig};

const PACKETS: u32 = 40;

/// A client that offers one audio section in `dir` with RED negotiation `red`.
fn connect(name: &str, engine: &EngineHandle, dir: Direction, red: OpusRed) -> Client {
    let now = Instant::now();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let addr = s.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .set_opus_red(red)
        .build(now)
        .unwrap();
    rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, dir);
    let (offer, pending) = api.apply().unwrap();
    let info = engine
        .create_session(SessionSetup::Offer(offer.to_sdp_string()), Placement::Auto)
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(info.answer.as_deref().unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    Client::new(name, rtc, Transport::Std(s), addr, now, info.id, vec![mid])
}

/// The payload type of `codec` the client negotiated on its only section.
fn pt_of(c: &Client, codec: Codec) -> Option<u8> {
    let info = c.rtc.media_info(c.mids[0]).unwrap();
    info.payloads
        .iter()
        .find(|p| p.codec == codec)
        .map(|p| p.pt)
}

fn first_codec(c: &Client) -> Codec {
    let info = c.rtc.media_info(c.mids[0]).unwrap();
    info.payloads[0].codec.clone()
}

#[test]
fn red_reaches_red_subscribers_as_red_and_others_as_primary_opus() {
    // Engine default: RED preferred.
    let engine = Engine::start(engine_config(BackendPreference::Auto, 1)).unwrap();
    let room = engine.create_room("red").unwrap();
    let mut clients = vec![
        // Offers RED after Opus (as browsers do); the engine answers RED first.
        connect("pub", &engine, Direction::SendOnly, OpusRed::Accept),
        connect("sub-red", &engine, Direction::RecvOnly, OpusRed::Accept),
        connect("sub-plain", &engine, Direction::RecvOnly, OpusRed::Off),
    ];
    assert_eq!(first_codec(&clients[0]), Codec::Red, "engine prefers RED");
    assert_eq!(first_codec(&clients[1]), Codec::Red);
    assert_eq!(pt_of(&clients[2], Codec::Red), None);
    let ids: Vec<_> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    for s in &ids[1..] {
        assert_eq!(engine.subscribe(room, *s, ids[0]).unwrap().len(), 1);
    }
    drive(&mut clients, Duration::from_millis(100), |_| false);

    let red_pt = pt_of(&clients[0], Codec::Red).unwrap();
    let opus_pt = pt_of(&clients[0], Codec::Opus).unwrap();
    let mut buf = [0u8; 1200];
    let mut next = Instant::now();
    for i in 0..PACKETS {
        let primary = payload(MediaKind::Audio, i);
        let previous = payload(MediaKind::Audio, i.wrapping_sub(1));
        let redundant = [RedBlock {
            payload_type: opus_pt,
            timestamp_offset: 960,
            data: &previous,
        }];
        let blocks = if i == 0 { &[][..] } else { &redundant[..] };
        let block = RedBlock {
            payload_type: opus_pt,
            timestamp_offset: 0,
            data: &primary,
        };
        let n = write_red(&block, blocks, &mut buf).unwrap();
        clients[0].write_rtp(red_pt, i as u16, 960 * i, AUDIO_SSRC, false, &buf[..n]);
        clients[0].drain(Instant::now());
        next += Duration::from_millis(20);
        drive(
            &mut clients,
            next.saturating_duration_since(Instant::now()),
            |_| false,
        );
    }
    let all_in = drive(&mut clients, Duration::from_secs(10), |cs| {
        cs[1..].iter().all(|c| c.rtp.len() >= PACKETS as usize)
    });
    assert!(
        all_in,
        "received {} / {}",
        clients[1].rtp.len(),
        clients[2].rtp.len()
    );

    // The RED subscriber: RED under its RED payload type, blocks in its Opus numbering,
    // the primary and the redundant frame intact.
    let (sub_red, sub_opus) = (
        pt_of(&clients[1], Codec::Red).unwrap(),
        pt_of(&clients[1], Codec::Opus).unwrap(),
    );
    let mut seen = Vec::new();
    for p in &clients[1].rtp {
        assert!(p.red && p.pt == sub_red, "{p:?}");
        let r = RedPayload::parse(&p.payload).unwrap();
        assert_eq!(r.primary.payload_type, sub_opus);
        let (kind, i) = check_payload(r.primary.data).expect("primary frame intact");
        assert_eq!(kind, MediaKind::Audio);
        for b in r.redundant() {
            assert_eq!(b.payload_type, sub_opus);
            assert_eq!(b.timestamp_offset, 960);
            assert_eq!(check_payload(b.data), Some((MediaKind::Audio, i - 1)));
        }
        assert_eq!(r.redundant_count(), usize::from(i > 0));
        seen.push(i);
    }
    assert_eq!(seen, (0..PACKETS).collect::<Vec<_>>());

    // The plain subscriber: the primary frame only, as Opus.
    let plain_opus = pt_of(&clients[2], Codec::Opus).unwrap();
    let mut seen = Vec::new();
    for p in &clients[2].rtp {
        assert!(!p.red && p.pt == plain_opus, "{p:?}");
        assert_eq!(p.payload.len(), AUDIO_PAYLOAD, "primary only");
        let (kind, i) = check_payload(&p.payload).expect("opus frame intact");
        assert_eq!(kind, MediaKind::Audio);
        assert_eq!(
            p.timestamp.wrapping_sub(clients[2].rtp[0].timestamp),
            960 * i
        );
        seen.push(i);
    }
    assert_eq!(seen, (0..PACKETS).collect::<Vec<_>>());
    engine.shutdown();
}
