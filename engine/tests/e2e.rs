//! End-to-end SFU tests on loopback: rtc-core peers (full ICE, SDP) against the engine.

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{
    CloseReason, Engine, EngineConfig, EngineEvent, EngineHandle, LegInfo, Placement, SessionId,
};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

const PUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const SUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];

/// What one subscriber received: indices per kind, checked byte for byte.
struct Received {
    video: BTreeSet<u32>,
    audio: BTreeSet<u32>,
}

fn received(c: &Client, legs: &[LegInfo]) -> Received {
    let mut r = Received {
        video: BTreeSet::new(),
        audio: BTreeSet::new(),
    };
    let mut last_video_seq: Option<u64> = None;
    for p in &c.rtp {
        let (kind, index) = check_payload(&p.payload).unwrap_or_else(|| {
            panic!(
                "{}: payload not byte-exact: {:?}",
                c.name,
                &p.payload[..8.min(p.payload.len())]
            )
        });
        let leg = legs
            .iter()
            .find(|l| l.kind == kind)
            .unwrap_or_else(|| panic!("{}: no leg of kind {kind:?}", c.name));
        assert_eq!(p.ssrc, leg.ssrc, "{}: SSRC is the leg's", c.name);
        match kind {
            MediaKind::Video => {
                assert_eq!(p.pt, VIDEO_PT);
                if let Some(prev) = last_video_seq {
                    assert_eq!(
                        p.seq,
                        prev + 1,
                        "{}: rewritten sequence is continuous",
                        c.name
                    );
                }
                last_video_seq = Some(p.seq);
                assert_eq!(p.marker, index % 3 == 2, "{}: marker kept", c.name);
                assert_eq!(
                    p.timestamp,
                    3000 * (index / 3),
                    "{}: timestamp kept",
                    c.name
                );
                assert!(r.video.insert(index), "{}: duplicate video {index}", c.name);
            }
            MediaKind::Audio => {
                assert_eq!(p.pt, AUDIO_PT);
                assert!(r.audio.insert(index), "{}: duplicate audio {index}", c.name);
            }
        }
    }
    r
}

/// How long a test waits for the engine to deliver what was sent (a bound for a
/// condition, not a window: the wait ends as soon as the condition holds).
const CATCH_UP: Duration = Duration::from_secs(10);

fn all(n: u32) -> BTreeSet<u32> {
    (0..n).collect()
}

fn connect_all(engine: &EngineHandle, clients: &mut [Client]) {
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(engine, clients, &ids);
}

fn sfu_end_to_end(backend: BackendPreference) {
    let engine = Engine::start(engine_config(backend, 2)).unwrap();
    let room = engine.create_room("e2e").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &PUB_MEDIA,
        true,
    )];
    for i in 0..6 {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Shard(i % 2),
            &SUB_MEDIA,
            false,
        ));
    }
    connect_all(&engine, &mut clients);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    let mut legs: Vec<Vec<LegInfo>> = vec![Vec::new()];
    for c in &clients[1..] {
        let l = engine.subscribe(room, c.id(), publisher).unwrap();
        assert_eq!(l.len(), 2, "audio and video legs");
        legs.push(l);
    }
    drive(&mut clients, Duration::from_millis(100), |_| false);

    // Stream to six subscribers on two shards.
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1500),
        |_, _| {},
    );

    // A late subscriber: a keyframe request reaches the publisher within 300 ms.
    let late = Client::connect_sdp("late", &engine, Placement::Shard(1), &SUB_MEDIA, false);
    let late_id = late.id();
    clients.push(late);
    wait_engine_connected(&engine, &mut clients, &[late_id]);
    s.resync(Instant::now());
    let kf_before = clients[0].keyframe_requests.len();
    let t_join = Instant::now();
    legs.push(engine.subscribe(room, late_id, publisher).unwrap());
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(500),
        |_, _| {},
    );
    let kf: Vec<Duration> = clients[0].keyframe_requests[kf_before..]
        .iter()
        .map(|(at, ssrc)| {
            assert_eq!(*ssrc, VIDEO_SSRC);
            at.saturating_duration_since(t_join)
        })
        .collect();
    assert!(!kf.is_empty(), "no keyframe request after the late join");
    assert!(
        kf[0] <= Duration::from_millis(300),
        "keyframe request after {:?}",
        kf[0]
    );
    assert!(kf.len() <= 1, "coalesced: {kf:?}");
    assert!(
        clients[0].keyframe_requests.len() >= 2,
        "one at stream start, one for the late subscriber"
    );

    // A subscriber leaves mid-stream; the others are untouched.
    let leaver = clients[6].id();
    let sent_at_leave = (s.video_sent, s.audio_sent);
    engine.close_session(leaver).unwrap();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(800),
        |_, _| {},
    );
    // Until the five staying subscribers have everything (a shard under CPU load can
    // run well behind the stream): a bound, not a window.
    let want = (s.video_sent + s.audio_sent) as usize;
    drive(&mut clients, CATCH_UP, |cs| {
        cs[1..=5].iter().all(|c| c.rtp.len() >= want)
    });

    let (nv, na) = (s.video_sent, s.audio_sent);
    assert!(nv > 100 && na > 100, "sent {nv} video, {na} audio");
    for i in 1..=5 {
        let r = received(&clients[i], &legs[i]);
        assert_eq!(r.video, all(nv), "{} video", clients[i].name);
        assert_eq!(r.audio, all(na), "{} audio", clients[i].name);
    }
    let r = received(&clients[6], &legs[6]);
    assert!(
        r.video.iter().all(|i| *i < sent_at_leave.0 + 30),
        "leaver got video after leaving"
    );
    assert!(
        r.video.len() as u32 >= sent_at_leave.0 - 30,
        "leaver got {} of {}",
        r.video.len(),
        sent_at_leave.0
    );
    let r = received(&clients[7], &legs[7]);
    let first = *r.video.first().expect("late subscriber got video");
    assert_eq!(r.video, (first..nv).collect(), "late subscriber: no gaps");
    assert!(!r.audio.is_empty());

    let st = engine.stats().unwrap();
    for sh in &st.shards {
        eprintln!(
            "shard {}: in {} out {} fwd {} xout {} xin {} kf {} drops {:?} io {:?} p50 latency {} ns",
            sh.shard,
            sh.packets_in,
            sh.packets_out,
            sh.rtp_forwarded,
            sh.cross_shard_out,
            sh.cross_shard_in,
            sh.keyframe_requests,
            sh.drops,
            sh.io,
            sh.forward_latency_ns.value_at_quantile(0.5)
        );
    }
    let gso: u64 = st.shards.iter().map(|s| s.io.gso_sends).sum();
    assert!(
        gso > 0,
        "GSO batches: {:?}",
        st.shards.iter().map(|s| s.io).collect::<Vec<_>>()
    );
    assert!(
        st.shards[0].io.gro_coalesced > 0,
        "GRO on the publisher's shard: {:?}",
        st.shards[0].io
    );
    assert!(st.shards[0].cross_shard_out > 0);
    assert!(st.shards[1].cross_shard_in > 0);
    assert_eq!(st.shards[0].drops.cross_shard_full, 0);
    assert!(st.rtp_forwarded() >= u64::from(nv + na) * 5);
    assert_eq!(st.sessions(), 7);
    assert!(
        !st.shards[0].forward_latency_ns.is_empty() && !st.shards[1].forward_latency_ns.is_empty()
    );
    // The bucketed engine-side latency books the same forwarded packets (local and
    // cross-shard), measured to after the flush.
    for sh in &st.shards {
        assert_eq!(
            sh.forward_ns.count(),
            sh.forward_latency_ns.len(),
            "shard {}",
            sh.shard
        );
        assert!(sh.forward_ns.p99().is_some());
    }
    let merged = engine.forward_latency().unwrap();
    assert!(merged.count() >= st.shards.iter().map(|s| s.forward_ns.count()).sum::<u64>());
    let want = match backend {
        BackendPreference::Portable => engine::io::BackendKind::Portable,
        _ => engine::io::BackendKind::IoUring,
    };
    assert!(st.shards.iter().all(|s| s.backend == want));
    engine.shutdown();
}

#[test]
fn sfu_two_shards_six_subscribers_io_uring() {
    sfu_end_to_end(BackendPreference::IoUring);
}

#[test]
fn sfu_two_shards_six_subscribers_portable() {
    sfu_end_to_end(BackendPreference::Portable);
}

#[test]
fn panicking_session_is_removed_and_others_continue() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let room = engine.create_room("panic").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &PUB_MEDIA,
        false,
    )];
    for i in 0..3 {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Shard(i % 2),
            &SUB_MEDIA,
            false,
        ));
    }
    connect_all(&engine, &mut clients);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    let mut legs = vec![Vec::new()];
    for c in &clients[1..] {
        legs.push(engine.subscribe(room, c.id(), publisher).unwrap());
    }
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let victim = clients[1].id();
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(300),
        |_, _| {},
    );
    engine.debug_inject_panic(victim).unwrap();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(500),
        |_, _| {},
    );
    // Wait for the engine to catch up instead of giving it a fixed window: under CPU
    // load a shard can run hundreds of milliseconds behind the wall clock, so the panic
    // (which fires at the victim's next forwarded packet) and the last packets to the
    // other subscribers may come well after the stream stops.
    let mut closed = None;
    let want = (s.video_sent + s.audio_sent) as usize;
    let caught_up = drive(&mut clients, CATCH_UP, |cs| {
        while let Ok(ev) = engine.events().try_recv() {
            if let EngineEvent::SessionClosed(id, reason) = ev {
                closed = Some((id, reason));
            }
        }
        closed.is_some() && cs[2..].iter().all(|c| c.rtp.len() >= want)
    });
    assert_eq!(closed, Some((victim, CloseReason::Panicked)));
    assert!(
        caught_up,
        "the other subscribers did not get all {want} packets"
    );
    let st = engine.stats().unwrap();
    assert_eq!(st.shards.iter().map(|s| s.panics).sum::<u64>(), 1);
    assert_eq!(st.sessions(), 3);
    for i in 2..=3 {
        let r = received(&clients[i], &legs[i]);
        assert_eq!(r.video, all(s.video_sent), "{}", clients[i].name);
        assert_eq!(r.audio, all(s.audio_sent), "{}", clients[i].name);
    }
    // The registry forgot the victim.
    assert!(matches!(
        engine.close_session(victim),
        Err(engine::EngineError::UnknownSession(_))
    ));
    assert!(engine.list_rooms()[0].members.iter().all(|m| *m != victim));
    engine.shutdown();
}

#[test]
fn unknown_sources_are_dropped_silently() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 1)).unwrap();
    let target = engine.shard_addrs(0).unwrap()[0];
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A STUN binding request for an unknown ufrag, an RTP-looking packet, garbage.
    let mut stun = vec![0u8; 20];
    stun[1] = 1; // Binding request
    stun[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    stranger.send_to(&stun, target).unwrap();
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    rtp.extend_from_slice(&[0u8; 100]);
    stranger.send_to(&rtp, target).unwrap();
    stranger.send_to(&[0xff, 1, 2, 3], target).unwrap();
    stranger.send_to(&[0x00, 1, 2], target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let st = engine.stats().unwrap();
        let d = st.shards[0].drops;
        if d.unknown_source == 2 && d.malformed == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "drops: {d:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut buf = [0u8; 100];
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "unknown sources get no reply"
    );
    engine.shutdown();
}

/// What a session may NACK is read from its negotiation: the engine offers `nack` on
/// video codecs only, so a browser-like subscriber's audio section says no (its leg
/// keeps no NACK map) and its video section yes.
#[test]
fn a_section_without_negotiated_nack_is_marked_so() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 1)).unwrap();
    let mut media = Vec::new();
    let _c = Client::connect_offer("sub", &SUB_MEDIA, |offer| {
        let info = engine
            .create_session(engine::SessionSetup::Offer(offer), Placement::Auto)
            .unwrap();
        media = info.media.clone();
        (info.id, info.answer.unwrap())
    });
    let nack = |kind| media.iter().find(|m| m.kind == kind).map(|m| m.nack);
    assert_eq!(nack(MediaKind::Audio), Some(false), "{media:?}");
    assert_eq!(nack(MediaKind::Video), Some(true), "{media:?}");
    engine.shutdown();
}

/// An audio track only browser-like subscribers receive (no `nack` on Opus) keeps a
/// small packet cache; the first subscriber that may NACK it (a direct-API session)
/// gets it a full one, and its audio flows as before.
#[test]
fn an_audio_track_gets_its_full_cache_only_when_a_subscriber_may_nack() {
    use rtc_core::media::Mid;
    let engine = Engine::start(engine_config(BackendPreference::Portable, 1)).unwrap();
    let room = engine.create_room("audio-cache").unwrap();
    let (a, v) = (Mid::new("a").unwrap(), Mid::new("v").unwrap());
    let media = [(a, MediaKind::Audio), (v, MediaKind::Video)];
    let mut clients = vec![
        Client::connect_sdp("pub", &engine, Placement::Shard(0), &PUB_MEDIA, false),
        Client::connect_sdp("sdp-sub", &engine, Placement::Shard(0), &SUB_MEDIA, false),
        Client::connect_direct("direct-sub", &engine, Placement::Shard(0), &media, &[]),
    ];
    connect_all(&engine, &mut clients);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    let sdp_legs = engine.subscribe(room, clients[1].id(), publisher).unwrap();
    let cache_bytes = |engine: &EngineHandle| {
        let st = engine.stats().unwrap();
        let m = |name: &str| st.shards[0].maps.get(name).copied().unwrap_or(0);
        (m("layer_caches"), m("layer_cache_bytes"))
    };
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(400),
        |_, _| {},
    );
    let (caches, before) = cache_bytes(&engine);
    assert_eq!(caches, 2, "one cache per published track");
    let direct_legs = engine.subscribe(room, clients[2].id(), publisher).unwrap();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(400),
        |_, _| {},
    );
    let (caches, after) = cache_bytes(&engine);
    assert_eq!(caches, 2);
    // 128 packets of 320 bytes: the full audio cache, instead of the small one.
    assert!(
        after >= before + 38 * 1024,
        "audio cache grew by {} bytes only",
        after.saturating_sub(before)
    );
    drive(&mut clients, Duration::from_millis(200), |_| false);
    let sdp = received(&clients[1], &sdp_legs);
    let direct = received(&clients[2], &direct_legs);
    assert_eq!(sdp.audio, all(s.audio_sent));
    assert!(
        direct.audio.len() as u32 + 25 >= s.audio_sent / 2,
        "the direct subscriber got {} of the last ~{} audio packets",
        direct.audio.len(),
        s.audio_sent / 2
    );
    engine.shutdown();
}

#[test]
fn direct_api_publisher_to_sdp_and_direct_subscribers() {
    use rtc_core::media::Mid;
    let engine = Engine::start(engine_config(BackendPreference::Auto, 2)).unwrap();
    let room = engine.create_room("direct").unwrap();
    let (a, v) = (Mid::new("a").unwrap(), Mid::new("v").unwrap());
    let media = [(a, MediaKind::Audio), (v, MediaKind::Video)];
    let mut clients = vec![
        Client::connect_direct(
            "pub",
            &engine,
            Placement::Shard(1),
            &media,
            &[(a, AUDIO_SSRC), (v, VIDEO_SSRC)],
        ),
        Client::connect_sdp("sdp-sub", &engine, Placement::Shard(0), &SUB_MEDIA, false),
        Client::connect_direct("direct-sub", &engine, Placement::Shard(1), &media, &[]),
    ];
    connect_all(&engine, &mut clients);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    let mut legs = vec![Vec::new()];
    for c in &clients[1..] {
        let l = engine.subscribe(room, c.id(), publisher).unwrap();
        assert_eq!(l.len(), 2);
        legs.push(l);
    }
    // Direct sessions send and receive on every section: the direct subscriber's legs
    // use its own mids.
    assert!(
        legs[2]
            .iter()
            .any(|l| l.subscriber_mid == v && l.publisher_mid == v)
    );
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(600),
        |_, _| {},
    );
    drive(&mut clients, Duration::from_millis(200), |_| false);
    for i in 1..=2 {
        let r = received(&clients[i], &legs[i]);
        assert_eq!(r.video, all(s.video_sent), "{}", clients[i].name);
        assert_eq!(r.audio, all(s.audio_sent), "{}", clients[i].name);
    }
    // The API keyframe request reaches the publisher.
    let before = clients[0].keyframe_requests.len();
    assert!(engine.request_keyframe(publisher, Some(v)).unwrap());
    assert!(drive(&mut clients, Duration::from_secs(2), |cs| cs[0]
        .keyframe_requests
        .len()
        > before));
    engine.shutdown();
}

#[test]
fn rooms_and_placement() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let r1 = engine.create_room("one").unwrap();
    let r2 = engine.create_room("two").unwrap();
    let names: Vec<String> = engine.list_rooms().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["one", "two"]);
    // Automatic placement spreads sessions over the shards.
    let c1 = Client::connect_sdp("a", &engine, Placement::Auto, &SUB_MEDIA, false);
    let c2 = Client::connect_sdp("b", &engine, Placement::Auto, &SUB_MEDIA, false);
    let st = engine.stats().unwrap();
    assert_eq!(
        st.shards.iter().map(|s| s.sessions).collect::<Vec<_>>(),
        [1, 1]
    );
    // Subscribing to a non-publisher is refused.
    assert!(matches!(
        engine.subscribe(r1, c1.id(), c2.id()),
        Err(engine::EngineError::NotInRoom(..))
    ));
    engine.publish(r1, c2.id()).unwrap();
    // The publisher offered recvonly only (nothing to publish): no legs.
    assert!(engine.subscribe(r1, c1.id(), c2.id()).unwrap().is_empty());
    // Drain: shard 0 takes no new sessions and its sessions close.
    assert_eq!(engine.drain_shard(0, true).unwrap(), 1);
    assert!(matches!(
        engine.create_session(
            engine::SessionSetup::Offer(String::new()),
            Placement::Shard(0)
        ),
        Err(engine::EngineError::ShardDraining(0))
    ));
    let bad = engine.create_session(
        engine::SessionSetup::Offer("v=0\r\n".into()),
        Placement::Auto,
    );
    assert!(matches!(bad, Err(engine::EngineError::Rtc(_))), "{bad:?}");
    engine.close_room(r2).unwrap();
    assert!(matches!(
        engine.close_room(r2),
        Err(engine::EngineError::UnknownRoom(_))
    ));
    assert_eq!(engine.list_rooms().len(), 1);
    assert_eq!(engine.stats().unwrap().sessions(), 1);
    engine.shutdown();
}

/// 1 -> 8 on one shard with `submit_every`: (everything arrived, sends submitted,
/// forwarded packets, forwarded packets booked in the engine-side latency, forwarded
/// packets protected in place in their send buffer).
fn fan_out_with_submit_every(submit_every: usize) -> (bool, u64, u64, u64, u64) {
    fan_out(submit_every, EngineConfig::default().pacing_burst)
}

/// [`fan_out_with_submit_every`] with the sessions' pacer burst allowance.
fn fan_out(submit_every: usize, pacing_burst: Duration) -> (bool, u64, u64, u64, u64) {
    let r = fan_out_run(|cfg| {
        cfg.submit_every = submit_every;
        cfg.pacing_burst = pacing_burst;
    });
    (r.complete, r.submissions, r.forwarded, r.booked, r.in_place)
}

/// What one [`fan_out_run`] measured on its shard.
struct FanOut {
    /// Every subscriber got every packet, byte-exact and in order.
    complete: bool,
    submissions: u64,
    forwarded: u64,
    /// Forwarded packets booked in the engine-side latency.
    booked: u64,
    in_place: u64,
    /// Datagrams the send queue dropped for want of room.
    queue_full: u64,
}

/// 1 -> 8 on one shard (io_uring) with the engine configuration `tweak` makes.
fn fan_out_run(tweak: impl FnOnce(&mut EngineConfig)) -> FanOut {
    let mut cfg = engine_config(BackendPreference::IoUring, 1);
    tweak(&mut cfg);
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("submit").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Auto,
        &PUB_MEDIA,
        true,
    )];
    for i in 0..8 {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Auto,
            &SUB_MEDIA,
            false,
        ));
    }
    connect_all(&engine, &mut clients);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    let legs: Vec<Vec<LegInfo>> = clients[1..]
        .iter()
        .map(|c| engine.subscribe(room, c.id(), publisher).unwrap())
        .collect();
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let before = engine.stats().unwrap();
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1000),
        |_, _| {},
    );
    let want = (s.video_sent + s.audio_sent) as usize;
    drive(&mut clients, CATCH_UP, |cs| {
        cs[1..].iter().all(|c| c.rtp.len() >= want)
    });
    let complete = clients[1..].iter().zip(&legs).all(|(c, l)| {
        let r = received(c, l);
        r.video == all(s.video_sent) && r.audio == all(s.audio_sent)
    });
    let after = engine.stats().unwrap();
    let (b, a) = (&before.shards[0], &after.shards[0]);
    engine.shutdown();
    FanOut {
        complete,
        submissions: a.io.send_syscalls - b.io.send_syscalls,
        forwarded: a.rtp_forwarded - b.rtp_forwarded,
        booked: a.forward_ns.count() - b.forward_ns.count(),
        in_place: a.fwd_in_place - b.fwd_in_place,
        queue_full: a.io.drops.queue_full - b.io.drops.queue_full,
    }
}

#[test]
fn a_fan_out_wider_than_the_send_queue_is_submitted_not_dropped() {
    // Each leg's packets join a send batch of their own (one destination each), so one
    // publisher packet to 8 legs needs 8 batches. With room for 4 batches between two
    // submissions, the queue must hand what it holds to the kernel to take more, not
    // drop: with the 40 ms pacing burst a frame leaves in place to every leg at once
    // (a keyframe to 200 legs filled the default 256 batches and ~4 % of the packets
    // came only as retransmissions, ~90 ms late).
    let r = fan_out_run(|cfg| cfg.io.send_batches = 4);
    assert_eq!(r.queue_full, 0, "datagrams dropped for a full send queue");
    assert!(r.complete, "every subscriber got every packet");
    assert!(r.in_place > 0);
}

#[test]
fn forwarded_packets_are_protected_in_place_in_their_send_buffer_and_arrive_byte_exact() {
    // Each leg's packet is written and sealed in a buffer the backend lends, which
    // then joins the send batch as it is, whenever the subscriber's `Rtc` lets it
    // leave at once; the others go through the subscriber's pacer. Both kinds arrive
    // byte-exact and in order (checked by `received`), and are counted apart.
    let (ok, _, fwd, booked, in_place) = fan_out_with_submit_every(64);
    assert!(ok, "every subscriber got every packet");
    assert_eq!(booked, fwd);
    eprintln!("{in_place} of {fwd} forwarded packets protected in place");
    assert!(
        in_place > 0 && in_place <= fwd,
        "{in_place} of {fwd} in place"
    );
}

#[test]
fn a_frame_within_the_pacing_burst_leaves_in_place_and_beyond_it_through_the_pacer() {
    // The streamer's frames are three 1,000-byte packets every 33 ms. With no burst
    // allowance beyond one full-size packet (1,500 bytes) a leg's pacer lets a frame's
    // first packets out at once and holds the rest, which then leave through the
    // subscriber's queue; with the default 40 ms at the pacing rate (at least 3,750
    // bytes: 2.5 x the estimator's 300 kbit/s start) whole frames leave at once, each
    // packet sealed in place. Both ways every packet arrives, byte-exact and in order.
    let (strict_ok, _, strict_fwd, _, strict_in_place) = fan_out(64, Duration::ZERO);
    let (burst_ok, _, burst_fwd, _, burst_in_place) =
        fan_out(64, EngineConfig::default().pacing_burst);
    assert!(strict_ok && burst_ok, "every subscriber got every packet");
    eprintln!(
        "in place: {strict_in_place} of {strict_fwd} with no burst allowance, \
         {burst_in_place} of {burst_fwd} with 40 ms"
    );
    assert!(
        strict_in_place < strict_fwd,
        "a frame larger than the burst allowance queues its tail"
    );
    assert!(
        burst_in_place * strict_fwd > strict_in_place * burst_fwd,
        "the burst allowance lets more packets leave in place: {burst_in_place}/{burst_fwd} \
         against {strict_in_place}/{strict_fwd}"
    );
}

#[test]
fn a_fan_out_is_submitted_in_parts_of_submit_every_datagrams() {
    // Submitted only at the end of each iteration, then every 2 queued datagrams: the
    // same stream, byte-exact both ways, needs several times the submissions (a video
    // frame's packets to 8 legs are one iteration's work), and every forwarded packet
    // is booked once in the engine-side latency either way.
    let (whole_ok, whole_subs, whole_fwd, whole_booked, _) = fan_out_with_submit_every(usize::MAX);
    let (parts_ok, parts_subs, parts_fwd, parts_booked, _) = fan_out_with_submit_every(2);
    assert!(whole_ok && parts_ok, "every subscriber got every packet");
    assert_eq!(whole_booked, whole_fwd);
    assert_eq!(parts_booked, parts_fwd);
    eprintln!(
        "submissions: {whole_subs} at the end of iterations, {parts_subs} every 2 datagrams \
         ({whole_fwd} / {parts_fwd} forwarded)"
    );
    assert!(
        parts_subs * whole_fwd >= 2 * whole_subs * parts_fwd,
        "submissions per forwarded packet: {parts_subs}/{parts_fwd} against \
         {whole_subs}/{whole_fwd}"
    );
}
