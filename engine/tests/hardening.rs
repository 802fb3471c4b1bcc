//! Attack tests of the engine's life cycle: sessions that never connect, closing events
//! under a full event queue, a shard thread that dies.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{CloseReason, Engine, EngineError, EngineEvent, Placement, SessionId, SessionSetup};
use rtc_core::Rtc;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

/// An SDP offer (audio + video, the peer sends) that nobody will ever connect with.
fn offer(sections: usize) -> String {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .expect("rtc");
    let mut api = rtc.sdp_api();
    for i in 0..sections {
        let kind = if i % 2 == 0 {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        api.add_media(kind, Direction::SendOnly);
    }
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

/// Reads engine events until `done` holds or `limit` passes.
fn read_events(
    engine: &engine::EngineHandle,
    limit: Duration,
    mut on: impl FnMut(EngineEvent) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(ev) = engine.events().recv_timeout(Duration::from_millis(50))
            && on(ev)
        {
            return true;
        }
    }
    false
}

#[test]
fn every_session_closed_event_arrives_through_a_tiny_event_queue() {
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    cfg.event_queue = 1;
    let engine = Engine::start(cfg).unwrap();
    let sdp = offer(2);
    let ids: Vec<SessionId> = (0..100)
        .map(|_| {
            engine
                .create_session(SessionSetup::Offer(sdp.clone()), Placement::Auto)
                .unwrap()
                .id
        })
        .collect();
    for id in &ids {
        engine.close_session(*id).unwrap();
    }
    let mut seen = BTreeSet::new();
    read_events(&engine, Duration::from_secs(5), |ev| {
        if let EngineEvent::SessionClosed(id, reason) = ev {
            assert_eq!(reason, CloseReason::Requested);
            assert!(seen.insert(id), "{id} closed twice");
        }
        seen.len() == ids.len()
    });
    assert_eq!(seen, ids.iter().copied().collect::<BTreeSet<_>>());
    engine.shutdown();
}

const PUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const SUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];

/// Resident set size of this process, bytes (Linux).
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The indices a subscriber received, per kind.
fn indices(c: &Client) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut v, mut a) = (BTreeSet::new(), BTreeSet::new());
    for p in &c.rtp {
        match check_payload(&p.payload) {
            Some((MediaKind::Video, i)) => v.insert(i),
            Some((MediaKind::Audio, i)) => a.insert(i),
            None => panic!("{}: payload not byte-exact", c.name),
        };
    }
    (v, a)
}

#[test]
fn sessions_that_never_connect_are_reaped_while_a_forward_runs() {
    const FLOOD: usize = 1000;
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    cfg.connect_timeout = Duration::from_secs(2);
    let engine = Engine::start(cfg).unwrap();
    // A 1 → 2 forward across both shards, connected before the flood.
    let room = engine.create_room("flood").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &PUB_MEDIA,
        false,
    )];
    for i in 0..2 {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Shard(i),
            &SUB_MEDIA,
            false,
        ));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    for id in &ids[1..] {
        engine.subscribe(room, *id, ids[0]).unwrap();
    }
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let rss_before = rss_bytes();

    // Two floods of offers nobody answers, created while media flows; the second shows
    // whether the first left anything behind.
    let sdp = offer(2);
    let mut s = Streamer::new();
    let mut trimmed = Vec::new();
    for wave in 0..2 {
        let mut flood = Vec::with_capacity(FLOOD);
        let started = Instant::now();
        while flood.len() < FLOOD {
            for _ in 0..50 {
                let info = engine
                    .create_session(SessionSetup::Offer(sdp.clone()), Placement::Auto)
                    .unwrap();
                flood.push(info.id);
            }
            stream(
                &mut clients,
                0,
                &mut s,
                Duration::from_millis(20),
                |_, _| {},
            );
        }
        let created_in = started.elapsed();
        let rss_peak = rss_bytes();
        // Creation can be slower than the timeout (debug build, busy machine), so some
        // are reaped already: only report how many were live.
        let peak_sessions = engine.stats().unwrap().sessions();

        // Every flood session is reaped with ConnectTimeout; the forward keeps running.
        let mut reaped = BTreeSet::new();
        let end = Instant::now() + Duration::from_secs(20);
        while reaped.len() < FLOOD && Instant::now() < end {
            stream(
                &mut clients,
                0,
                &mut s,
                Duration::from_millis(50),
                |_, _| {},
            );
            while let Ok(ev) = engine.events().try_recv() {
                if let EngineEvent::SessionClosed(id, reason) = ev {
                    assert_eq!(reason, CloseReason::ConnectTimeout, "{id}");
                    assert!(!ids.contains(&id), "connected session {id} was reaped");
                    reaped.insert(id);
                }
            }
        }
        let reaped_after = started.elapsed();
        assert_eq!(reaped, flood.iter().copied().collect::<BTreeSet<_>>());
        let st = engine.stats().unwrap();
        // Per shard, only the forward's sessions are left: pub + sub0 on 0, sub1 on 1.
        let per_shard: Vec<usize> = st.shards.iter().map(|s| s.sessions).collect();
        assert_eq!(per_shard, [2, 1]);
        assert_eq!(
            st.shards.iter().map(|s| s.connect_timeouts).sum::<u64>(),
            FLOOD as u64 * (wave + 1)
        );
        let rss_after = rss_bytes();
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe { libc::malloc_trim(0) };
        let rss_trimmed = rss_bytes();
        trimmed.push(rss_trimmed);
        eprintln!(
            "flood {wave}: {FLOOD} sessions created in {created_in:?} ({peak_sessions} live \
             then), all reaped after {reaped_after:?}; RSS before {} KiB, peak {} KiB, after \
             {} KiB, after malloc_trim {} KiB",
            rss_before / 1024,
            rss_peak / 1024,
            rss_after / 1024,
            rss_trimmed / 1024,
        );
    }
    // Nothing accumulates: the second flood ends where the first did (a generous 32 MiB
    // margin for allocator noise; a leak of the flood's sessions would be ~200 MiB).
    assert!(
        trimmed[1] <= trimmed[0] + (32 << 20),
        "RSS grew from {} KiB to {} KiB",
        trimmed[0] / 1024,
        trimmed[1] / 1024
    );
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(300),
        |_, _| {},
    );
    drive(&mut clients, Duration::from_millis(300), |_| false);
    for c in &clients[1..] {
        let (v, a) = indices(c);
        assert_eq!(v, (0..s.video_sent).collect(), "{}: video", c.name);
        assert_eq!(a, (0..s.audio_sent).collect(), "{}: audio", c.name);
    }
    eprintln!(
        "forward during the floods: {} video + {} audio packets, all received by both \
         subscribers",
        s.video_sent, s.audio_sent
    );
    engine.shutdown();
}

#[test]
fn caps_refuse_with_typed_errors() {
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    cfg.max_sessions_per_shard = 2;
    cfg.max_sessions = 3;
    cfg.max_media_per_session = 4;
    cfg.max_rooms = 2;
    cfg.max_legs_per_room = 2;
    let engine = Engine::start(cfg).unwrap();
    let create = |sdp: &str, p| engine.create_session(SessionSetup::Offer(sdp.to_owned()), p);
    // Too many m-lines: refused before the shard sees it.
    let e = create(&offer(5), Placement::Auto).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::TooManyMedia {
                sections: 5,
                limit: 4
            }
        ),
        "{e}"
    );
    let two = offer(2);
    let publisher = create(&two, Placement::Shard(0)).unwrap().id;
    let mut sub_rtc = Rtc::builder().build(Instant::now()).unwrap();
    let mut api = sub_rtc.sdp_api();
    for (k, d) in SUB_MEDIA {
        api.add_media(k, d);
    }
    let sub_offer = api.apply().unwrap().0.to_sdp_string();
    let sub1 = create(&sub_offer, Placement::Shard(0)).unwrap().id;
    let e = create(&two, Placement::Shard(0)).unwrap_err();
    assert!(
        matches!(e, EngineError::ShardFull { shard: 0, limit: 2 }),
        "{e}"
    );
    let sub2 = create(&sub_offer, Placement::Shard(1)).unwrap().id;
    let e = create(&two, Placement::Auto).unwrap_err();
    assert!(matches!(e, EngineError::EngineFull { limit: 3 }), "{e}");
    // Rooms.
    let room = engine.create_room("a").unwrap();
    engine.create_room("b").unwrap();
    let e = engine.create_room("c").unwrap_err();
    assert!(matches!(e, EngineError::TooManyRooms { limit: 2 }), "{e}");
    // Legs per room: the first subscriber takes both, the second is refused.
    engine.publish(room, publisher).unwrap();
    assert_eq!(engine.subscribe(room, sub1, publisher).unwrap().len(), 2);
    let e = engine.subscribe(room, sub2, publisher).unwrap_err();
    assert!(
        matches!(e, EngineError::TooManyLegs { limit: 2, .. }),
        "{e}"
    );
    // A close not yet read still counts against the engine's cap (it is held until
    // read, never dropped); once read, the place is free.
    engine.close_session(sub2).unwrap();
    let e = create(&two, Placement::Shard(1)).unwrap_err();
    assert!(matches!(e, EngineError::EngineFull { limit: 3 }), "{e}");
    assert!(matches!(
        engine.events().recv_timeout(Duration::from_secs(1)),
        Ok(EngineEvent::SessionClosed(id, CloseReason::Requested)) if id == sub2
    ));
    create(&two, Placement::Shard(1)).unwrap();
    engine.close_room(room).unwrap();
    engine.create_room("c").unwrap();
    engine.shutdown();
}

#[test]
fn a_dead_shard_is_reported_its_sessions_closed_and_placement_avoids_it() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let sdp = offer(2);
    let create = |p| engine.create_session(SessionSetup::Offer(sdp.clone()), p);
    let on0: Vec<SessionId> = (0..3)
        .map(|_| create(Placement::Shard(0)).unwrap().id)
        .collect();
    let on1 = create(Placement::Shard(1)).unwrap().id;
    assert_eq!(engine.live_shards(), 2);
    // A panic in the shard loop itself, outside the per-session guard.
    engine.debug_inject_shard_panic(0).unwrap();
    let mut down = None;
    let mut closed = BTreeSet::new();
    read_events(&engine, Duration::from_secs(5), |ev| {
        match ev {
            EngineEvent::ShardDown { shard, sessions } => down = Some((shard, sessions)),
            EngineEvent::SessionClosed(id, reason) => {
                assert_eq!(reason, CloseReason::ShardDown, "{id}");
                closed.insert(id);
            }
            _ => {}
        }
        down.is_some() && closed.len() == on0.len()
    });
    assert_eq!(down, Some((0, 3)));
    assert_eq!(closed, on0.iter().copied().collect::<BTreeSet<_>>());
    // Health is visible, the statistics still answer, the dead shard holds nothing.
    assert!(!engine.shard_alive(0).unwrap());
    assert!(engine.shard_alive(1).unwrap());
    assert_eq!(engine.live_shards(), 1);
    let st = engine.stats().unwrap();
    assert!(!st.shards[0].alive);
    assert!(st.shards[1].alive);
    assert_eq!(st.sessions(), 1);
    // Placement avoids it (shard 0 has fewer sessions, so Auto would pick it), pinning
    // there is refused, and the registry forgot its sessions.
    for _ in 0..3 {
        assert_eq!(create(Placement::Auto).unwrap().shard, 1);
    }
    let e = create(Placement::Shard(0)).unwrap_err();
    assert!(matches!(e, EngineError::ShardDown(0)), "{e}");
    assert!(matches!(
        engine.close_session(on0[0]),
        Err(EngineError::UnknownSession(_))
    ));
    engine.close_session(on1).unwrap();
    engine.shutdown();
}

#[test]
fn data_channels_over_the_cap_or_with_long_labels_are_closed() {
    let mut cfg = engine_config(BackendPreference::Portable, 1);
    cfg.max_channels_per_session = 2;
    cfg.max_channel_label = 16;
    let engine = Engine::start(cfg).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let addr = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .unwrap();
    rtc.add_local_candidate(rtc_core::ice::Candidate::host(addr, rtc_core::Protocol::Udp).unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendOnly);
    let long = "x".repeat(17);
    for label in ["a", "b", "c", long.as_str()] {
        api.add_channel(rtc_core::channel::ChannelConfig {
            label: label.into(),
            ..Default::default()
        })
        .unwrap();
    }
    let (offer, pending) = api.apply().unwrap();
    let info = engine
        .create_session(SessionSetup::Offer(offer.to_sdp_string()), Placement::Auto)
        .unwrap();
    let answer =
        rtc_core::sdp_api::SdpAnswer::from_sdp_string(info.answer.as_deref().unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let mut peer = vec![Client::new(
        "dc",
        rtc,
        Transport::Std(sock),
        addr,
        Instant::now(),
        info.id,
        vec![mid],
    )];
    let refused = |e: &engine::EngineHandle| {
        e.stats()
            .unwrap()
            .shards
            .iter()
            .map(|s| s.channels_refused)
            .sum::<u64>()
    };
    let ok = drive(&mut peer, Duration::from_secs(10), |_| {
        refused(&engine) == 2
            && engine
                .session_stats(info.id)
                .is_ok_and(|s| s.channels.len() == 2)
    });
    let snap = engine.session_stats(info.id).unwrap();
    assert!(
        ok,
        "channels {:?}, refused {}",
        snap.channels,
        refused(&engine)
    );
    // Two of a/b/c are open on the engine side; the long label never is.
    assert!(snap.channels.iter().all(|(_, l)| l.len() == 1), "{snap:?}");
    // Refused channels raise no ChannelOpen event.
    let mut opened = 0;
    while let Ok(ev) = engine.events().try_recv() {
        if let EngineEvent::ChannelOpen { label, .. } = ev {
            assert_eq!(label.len(), 1);
            opened += 1;
        }
    }
    assert_eq!(opened, 2);
    engine.shutdown();
}

/// Every per-shard table that grows with sessions (`ShardStats::maps`) is back at 0
/// once the sessions of a forward across both shards have left, the slot table included.
#[test]
fn shard_tables_return_to_zero_when_every_session_has_left() {
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    // Bounds how long the lazily drained connect-deadline queue holds entries.
    cfg.connect_timeout = Duration::from_secs(1);
    let engine = Engine::start(cfg).unwrap();
    let idle = engine.stats().unwrap();
    for sh in &idle.shards {
        assert!(!sh.maps.is_empty(), "shard {} reports no tables", sh.shard);
        assert!(sh.maps.values().all(|&v| v == 0), "{:?}", sh.maps);
    }
    let room = engine.create_room("tables").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &PUB_MEDIA,
        false,
    )];
    for i in 0..2 {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Shard(i),
            &SUB_MEDIA,
            false,
        ));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    for id in &ids[1..] {
        engine.subscribe(room, *id, ids[0]).unwrap();
    }
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(300),
        |_, _| {},
    );
    let live = engine.stats().unwrap();
    let m = |shard: usize, name: &str| live.shards[shard].maps.get(name).copied();
    assert_eq!(m(0, "sessions"), Some(2), "{:?}", live.shards[0].maps);
    assert_eq!(m(1, "sessions"), Some(1), "{:?}", live.shards[1].maps);
    for name in [
        "by_addr",
        "by_ufrag",
        "session_slots",
        "routes",
        "legs",
        "timers",
    ] {
        assert!(
            m(0, name).is_some_and(|v| v > 0),
            "{name}: {:?}",
            live.shards[0].maps
        );
    }
    // The publisher's packet caches live on its shard; shard 1 holds the remote route.
    assert!(
        m(0, "layer_caches").is_some_and(|v| v > 0),
        "{:?}",
        live.shards[0].maps
    );
    assert!(
        m(0, "remote_routes").is_some_and(|v| v > 0),
        "{:?}",
        live.shards[0].maps
    );

    for id in &ids {
        engine.close_session(*id).unwrap();
    }
    engine.close_room(room).unwrap();
    // Event-driven: poll until every table is empty (the connect deadlines drain 1 s
    // after creation, stale timer entries when they fall due); the limit is generous.
    let end = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let st = engine.stats().unwrap();
        if st.shards.iter().all(|sh| sh.maps.values().all(|&v| v == 0)) || Instant::now() > end {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for sh in &last.shards {
        assert!(
            sh.maps.values().all(|&v| v == 0),
            "shard {}: {:?}",
            sh.shard,
            sh.maps
        );
    }
    engine.shutdown();
}
