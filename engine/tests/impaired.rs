//! Media over impaired links: 3 % loss and 20 ms of jitter (which reorders) between the
//! publisher and the engine and between the engine and each of five subscribers, through
//! `test_support::relay::Relay`. NACK/RTX (publisher to engine, engine to subscribers)
//! must keep every subscriber's video complete; the test prints what each link lost.
//!
//! The publisher writes on its negotiated send SSRCs, so its `Rtc` keeps what it sent
//! and answers the engine's NACKs with RTX (on unsignalled SSRCs a NACK finds nothing to
//! resend: packets lost on the uplink were then missing at every subscriber).

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, Placement, SessionSetup};
use rtc_core::ice::Candidate;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Protocol, Rtc};
use test_support::relay::{Link, Relay};
use test_support::*;

/// The impaired link of every hop (each direction).
fn impaired() -> Link {
    Link {
        jitter: Duration::from_millis(20),
        ..Link::lossy(0.03)
    }
}

/// A client whose traffic to and from the engine crosses `relay`.
fn client_via(
    name: &str,
    engine: &EngineHandle,
    shard: usize,
    media: &[(MediaKind, Direction)],
    (up, down): (Link, Link),
    seed: u64,
) -> (Client, Relay) {
    let now = Instant::now();
    let target = engine.shard_addrs(shard).expect("shard")[0];
    let relay = Relay::start(target, seed).expect("relay");
    relay.set_uplink(up);
    relay.set_downlink(down);
    let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
    s.set_nonblocking(true).expect("non-blocking");
    let addr = s.local_addr().expect("addr");
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).expect("rtc");
    rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("candidate"));
    let mut api = rtc.sdp_api();
    let mids = media.iter().map(|(k, d)| api.add_media(*k, *d)).collect();
    let (offer, pending) = api.apply().expect("offer");
    let info = engine
        .create_session(
            SessionSetup::Offer(offer.to_sdp_string()),
            Placement::Shard(shard),
        )
        .expect("session");
    let answer = relay.route_sdp(info.answer.as_deref().expect("answer"));
    let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    let c = Client::new(name, rtc, Transport::Std(s), addr, now, info.id, mids);
    (c, relay)
}

#[test]
fn nack_rtx_keep_five_subscribers_complete_over_lossy_jittery_links() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let room = engine.create_room("impaired").unwrap();
    let publish = [
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ];
    let receive = [
        (MediaKind::Audio, Direction::RecvOnly),
        (MediaKind::Video, Direction::RecvOnly),
    ];
    let mut clients = Vec::new();
    let mut relays = Vec::new();
    let (c, r) = client_via("pub", &engine, 0, &publish, (impaired(), impaired()), 1);
    clients.push(c);
    relays.push(r);
    for i in 0..5u64 {
        let (c, r) = client_via(
            &format!("sub{i}"),
            &engine,
            (i as usize) % 2,
            &receive,
            (impaired(), impaired()),
            2 + i,
        );
        clients.push(c);
        relays.push(r);
    }
    let ids: Vec<_> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    for c in &clients[1..] {
        assert_eq!(engine.subscribe(room, c.id(), publisher).unwrap().len(), 2);
    }
    drive(&mut clients, Duration::from_millis(200), |_| false);

    // 5 s of media (90 video packets/s, 50 audio packets/s).
    let tx_ssrc = |i: usize| {
        let p = &clients[0];
        // The publisher negotiated a send stream on each of its two m-lines.
        p.rtc.tx_ssrc(p.mids[i]).expect("negotiated send stream")
    };
    let mut s = Streamer::with_ssrcs(tx_ssrc(1), tx_ssrc(0));
    stream(&mut clients, 0, &mut s, Duration::from_secs(5), |_, _| {});
    let nv = s.video_sent;
    // Media goes on for a second, so a loss of the last packets is detected (a gap
    // needs a later packet); only the first `nv` video packets are checked.
    stream(&mut clients, 0, &mut s, Duration::from_secs(1), |_, _| {});
    // Then until every subscriber has every video packet, or 10 s (retransmissions of
    // the last packets need a few round trips; a loaded machine makes them slower).
    let complete = |cs: &[Client]| {
        cs[1..].iter().all(|c| {
            let got: BTreeSet<u32> = c
                .rtp
                .iter()
                .filter_map(|p| check_payload(&p.payload))
                .filter(|(k, _)| *k == MediaKind::Video)
                .map(|(_, i)| i)
                .collect();
            let first = got.first().copied().unwrap_or(nv);
            got.range(..nv).count() == (nv - first) as usize
        })
    };
    drive(&mut clients, Duration::from_secs(10), complete);

    let mut results: Vec<(String, u64, u32)> = Vec::new();
    for (c, r) in clients[1..].iter().zip(&relays[1..]) {
        let video: BTreeSet<u32> = c
            .rtp
            .iter()
            .filter_map(|p| check_payload(&p.payload))
            .filter(|(k, _)| *k == MediaKind::Video)
            .map(|(_, i)| i)
            .collect();
        let (recv, _, lost, _) = r.downlink_stats().snapshot();
        // The stream starts at the first packet the engine got: with a reordering
        // uplink the first frame's first packets may come after a later one and are
        // then not part of the stream (not NACKed, not forwarded).
        let first = video.first().copied().unwrap_or(nv);
        assert!(
            first < 3,
            "{}: the stream starts in the first frame ({first})",
            c.name
        );
        let gaps: Vec<u32> = (first..nv).filter(|i| !video.contains(i)).collect();
        let video: BTreeSet<u32> = video.range(..nv).copied().collect();
        eprintln!(
            "{}: downlink lost {lost} of {recv} datagrams; video {} of {nv} packets, missing {gaps:?}",
            c.name,
            video.len()
        );
        results.push((c.name.clone(), lost, gaps.len() as u32));
    }
    let (up_recv, _, up_lost, _) = relays[0].uplink_stats().snapshot();
    eprintln!("publisher uplink lost {up_lost} of {up_recv} datagrams");
    assert!(
        up_lost > 0,
        "the publisher's uplink lost nothing (not a test of upstream recovery)"
    );
    let st = engine.stats().unwrap();
    for sh in &st.shards {
        eprintln!(
            "shard {}: rtx_resent {} rtx_unanswered {} keyframe_requests {}",
            sh.shard, sh.rtx_resent, sh.rtx_unanswered, sh.keyframe_requests
        );
    }
    for (name, lost, missing) in results {
        assert!(
            lost > 0,
            "{name}: the link lost nothing (not a test of recovery)"
        );
        assert_eq!(missing, 0, "{name}: every video packet arrived");
    }
    engine.shutdown();
}
