//! Relays between two engines in this process, on different loopback addresses
//! (127.0.0.2 and 127.0.0.3: the whole 127/8 is loopback on Linux), with an impairing
//! UDP relay (`test_support::relay::Relay`) on the path between them.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::relay::{Link, Relay};
use common::*;
use engine::io::BackendPreference;
use engine::{
    Engine, EngineEvent, EngineHandle, Placement, RelayDownReason, RelayParams, RoomId, SessionId,
};
use rtc_core::event::KeyframeRequestKind;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::Direction;

const SUBSCRIBERS: usize = 20;

fn engine_at(ip: [u8; 4]) -> EngineHandle {
    engine_with_shards_at(ip, 1)
}

fn engine_with_shards_at(ip: [u8; 4], shards: usize) -> EngineHandle {
    let mut cfg = engine_config(BackendPreference::Portable, shards);
    cfg.bind_v4 = Some(IpAddr::from(ip));
    // Repeated keyframe requests are coalesced to one per interval per layer; a short
    // one keeps the late subscriber's request from waiting behind an earlier one.
    cfg.keyframe_interval = Duration::from_millis(50);
    Engine::start(cfg).unwrap()
}

/// Reads `engine`'s events while stepping `clients` until `pred` holds for one (or
/// `limit` passes); returns it.
fn wait_event(
    engine: &EngineHandle,
    clients: &mut [Client],
    limit: Duration,
    mut pred: impl FnMut(&EngineEvent) -> bool,
) -> Option<EngineEvent> {
    let mut found = None;
    drive(clients, limit, |_| {
        while let Ok(ev) = engine.events().try_recv() {
            if pred(&ev) {
                found = Some(ev);
                return true;
            }
        }
        false
    });
    found
}

/// Engines A (publisher side) and B (subscriber side) with a connected relay whose
/// path runs through `relay`.
struct Pair {
    a: EngineHandle,
    b: EngineHandle,
    relay: Relay,
    /// The relay session on A and on B.
    ra: SessionId,
    rb: SessionId,
}

fn connect_pair(params: RelayParams, clients: &mut [Client]) -> Pair {
    connect_pair_on(1, (params, params), clients)
}

/// [`connect_pair`] with engines of `shards` shards and the relay's parameters (its
/// placement) on A and on B.
fn connect_pair_on(
    shards: usize,
    (params_a, params_b): (RelayParams, RelayParams),
    clients: &mut [Client],
) -> Pair {
    let a = engine_with_shards_at([127, 0, 0, 2], shards);
    let b = engine_with_shards_at([127, 0, 0, 3], shards);
    let mut invite = b.relay_listen(params_b).unwrap();
    let relay = Relay::start(invite.addr, 17).unwrap();
    // A reaches B through the impairing relay.
    invite.addr = relay.front();
    let answer = a.relay_connect(&invite, params_a).unwrap();
    b.relay_accept(invite.relay, &answer).unwrap();
    let (ra, rb) = (answer.relay, invite.relay);
    let mut up = (false, false);
    let ok = drive(clients, Duration::from_secs(20), |_| {
        while let Ok(ev) = a.events().try_recv() {
            up.0 |= ev == EngineEvent::SessionConnected(ra);
        }
        while let Ok(ev) = b.events().try_recv() {
            up.1 |= ev == EngineEvent::SessionConnected(rb);
        }
        up == (true, true)
    });
    assert!(ok, "relay not connected: {up:?}");
    Pair {
        a,
        b,
        relay,
        ra,
        rb,
    }
}

fn publisher(engine: &EngineHandle) -> Client {
    publisher_on(engine, Placement::Auto)
}

fn publisher_on(engine: &EngineHandle, placement: Placement) -> Client {
    Client::connect_sdp(
        "pub",
        engine,
        placement,
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
        false,
    )
}

fn subscriber(engine: &EngineHandle, name: &str) -> Client {
    subscriber_on(engine, name, Placement::Auto)
}

fn subscriber_on(engine: &EngineHandle, name: &str, placement: Placement) -> Client {
    Client::connect_sdp(
        name,
        engine,
        placement,
        &[
            (MediaKind::Audio, Direction::RecvOnly),
            (MediaKind::Video, Direction::RecvOnly),
        ],
        false,
    )
}

/// Relays the tracks `mids` of `publisher` on A to B and publishes the relay session
/// in `room_b`. Returns the relayed tracks' media sections on B.
fn relay_tracks(p: &Pair, publisher: SessionId, mids: &[Mid], room_b: RoomId) -> Vec<Mid> {
    let mut out = Vec::new();
    for mid in mids {
        let track = p.a.relay_publish(p.ra, publisher, *mid).unwrap();
        out.push(p.b.relay_attach(p.rb, &track).unwrap());
    }
    p.b.publish(room_b, p.rb).unwrap();
    out
}

/// Video packet indexes `c` received intact.
fn video_got(c: &Client) -> BTreeSet<u32> {
    c.rtp
        .iter()
        .filter_map(|p| check_payload(&p.payload))
        .filter(|(k, _)| *k == MediaKind::Video)
        .map(|(_, i)| i)
        .collect()
}

#[test]
fn relay_carries_tracks_to_twenty_subscribers_with_nack_repair_and_fast_keyframes() {
    let mut clients: Vec<Client> = Vec::new();
    let p = connect_pair(RelayParams::default(), &mut clients);
    p.relay.set_uplink(Link::lossy(0.02));
    p.relay.set_downlink(Link::lossy(0.02));

    let room_a = p.a.create_room("a").unwrap();
    let room_b = p.b.create_room("b").unwrap();
    clients.push(publisher(&p.a));
    for i in 0..SUBSCRIBERS {
        clients.push(subscriber(&p.b, &format!("sub{i}")));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&p.a, &mut clients[..1], &ids[..1]);
    wait_engine_connected(&p.b, &mut clients[1..], &ids[1..]);
    p.a.publish(room_a, ids[0]).unwrap();
    let pub_mids = clients[0].mids.clone();
    let mids = relay_tracks(&p, ids[0], &pub_mids, room_b);
    assert_eq!(mids.len(), 2);
    for sub in &ids[1..] {
        assert_eq!(p.b.subscribe(room_b, *sub, p.rb).unwrap().len(), 2);
    }

    let mut s = Streamer::new();
    stream(&mut clients, 0, &mut s, Duration::from_secs(3), |_, _| {});
    // Let the last retransmissions land.
    drive(&mut clients, Duration::from_millis(500), |_| false);

    let stats = p.b.relay_stats(p.rb).unwrap();
    let (sent_up, _, dropped_up, _) = p.relay.uplink_stats().snapshot();
    assert!(stats.connected);
    // 2 % of A's datagrams to B were dropped on the way (and repaired, below).
    assert!(
        dropped_up > 0,
        "the relay lost {dropped_up} of {sent_up}: {stats:?}"
    );
    assert!(stats.nacks > 0, "no NACK crossed the relay: {stats:?}");
    let sent_a = p.a.relay_stats(p.ra).unwrap();
    eprintln!(
        "relay B: rtt {:?} lost {} nacks {}; relay A: rtt {:?} nacks {}; link dropped {dropped_up} of {sent_up} A->B",
        stats.rtt, stats.lost, stats.nacks, sent_a.rtt, sent_a.nacks
    );
    assert!(
        sent_a.rtt.is_some(),
        "no RTT on the sending end: {sent_a:?}"
    );
    assert!(
        sent_a.nacks > 0,
        "no NACK reached the sending end: {sent_a:?}"
    );
    let resent: u64 =
        p.a.stats()
            .unwrap()
            .shards
            .iter()
            .map(|s| s.rtx_resent)
            .sum();
    let st = p.a.stats().unwrap();
    assert!(
        resent > 0,
        "nothing retransmitted from A's layer cache: missed {} {sent_a:?}",
        st.shards[0].rtx_unanswered
    );

    // Every subscriber got every video packet from its first one up to the last 200 ms,
    // byte for byte, losses on the relay repaired.
    let upto = s.video_sent.saturating_sub(18);
    for c in &clients[1..] {
        let got = video_got(c);
        let first = *got
            .first()
            .unwrap_or_else(|| panic!("{}: no media", c.name));
        assert!(first < 60, "{}: first packet {first}", c.name);
        let missing: Vec<u32> = (first..upto).filter(|i| !got.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "{}: missing {missing:?} ({stats:?})",
            c.name
        );
        let audio = c
            .rtp
            .iter()
            .filter(|p| check_payload(&p.payload).is_some_and(|(k, _)| k == MediaKind::Audio))
            .count();
        assert!(audio > 50, "{}: {audio} audio packets", c.name);
        assert!(
            c.rtp.iter().all(|p| check_payload(&p.payload).is_some()),
            "{}: a payload was altered",
            c.name
        );
    }

    // A late subscriber on B asks for a keyframe; the publisher on A hears of it. The
    // path is clean now, so no loss-driven request of another subscriber interferes.
    p.relay.set_uplink(Link::clean());
    p.relay.set_downlink(Link::clean());
    clients.push(subscriber(&p.b, "late"));
    let late = clients.len() - 1;
    let late_id = clients[late].id();
    wait_engine_connected(&p.b, &mut clients[late..], &[late_id]);
    let legs = p.b.subscribe(room_b, late_id, p.rb).unwrap();
    let video_leg = legs
        .iter()
        .find(|l| l.kind == MediaKind::Video)
        .expect("a video leg")
        .ssrc;
    // Media reaches it first (its subscription's own keyframe request is long served).
    let mut s2 = Streamer::new();
    s2.video_sent = s.video_sent;
    s2.audio_sent = s.audio_sent;
    let mut reached = false;
    let end = Instant::now() + Duration::from_secs(10);
    while !reached && Instant::now() < end {
        stream(
            &mut clients,
            0,
            &mut s2,
            Duration::from_millis(100),
            |_, _| {},
        );
        reached = !video_got(&clients[late]).is_empty();
    }
    assert!(reached, "no media reached the late subscriber");
    stream(
        &mut clients,
        0,
        &mut s2,
        Duration::from_millis(300),
        |_, _| {},
    );
    let before = clients[0].keyframe_requests.len();
    let asked = Instant::now();
    clients[late]
        .rtc
        .direct_api()
        .request_keyframe(video_leg, KeyframeRequestKind::Pli)
        .unwrap();
    clients[late].drain(asked);
    let heard = drive(&mut clients, Duration::from_secs(5), |cs| {
        cs[0].keyframe_requests.len() > before
    });
    let took = clients[0]
        .keyframe_requests
        .get(before)
        .map(|(at, _)| at.saturating_duration_since(asked));
    assert!(heard, "the keyframe request never reached the publisher");
    eprintln!("late subscriber's keyframe request reached the publisher after {took:?}");
    // The bound for the whole path (subscriber → B → relay → A → publisher).
    assert!(
        took.is_some_and(|t| t <= Duration::from_millis(300)),
        "keyframe request took {took:?}"
    );
    p.a.shutdown();
    p.b.shutdown();
}

/// Publisher on A, `n` subscribers on B taking its relayed tracks; streams a second.
fn relayed_call(p: &Pair, n: usize) -> (Vec<Client>, Streamer) {
    let room_a = p.a.create_room("a").unwrap();
    let room_b = p.b.create_room("b").unwrap();
    let mut clients = vec![publisher(&p.a)];
    for i in 0..n {
        clients.push(subscriber(&p.b, &format!("sub{i}")));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&p.a, &mut clients[..1], &ids[..1]);
    wait_engine_connected(&p.b, &mut clients[1..], &ids[1..]);
    p.a.publish(room_a, ids[0]).unwrap();
    let pub_mids = clients[0].mids.clone();
    relay_tracks(p, ids[0], &pub_mids, room_b);
    for sub in &ids[1..] {
        assert_eq!(p.b.subscribe(room_b, *sub, p.rb).unwrap().len(), 2);
    }
    let mut s = Streamer::new();
    stream(&mut clients, 0, &mut s, Duration::from_secs(1), |_, _| {});
    for c in &clients[1..] {
        assert!(
            !video_got(c).is_empty(),
            "{}: no media before the failure",
            c.name
        );
    }
    (clients, s)
}

/// Waits (event-driven, generous bound) for `engine` to report `relay` down.
fn wait_relay_down(
    engine: &EngineHandle,
    clients: &mut [Client],
    relay: SessionId,
    limit: Duration,
) -> Option<RelayDownReason> {
    match wait_event(
        engine,
        clients,
        limit,
        |ev| matches!(ev, EngineEvent::RelayDown { relay: r, .. } if *r == relay),
    ) {
        Some(EngineEvent::RelayDown { reason, .. }) => Some(reason),
        _ => None,
    }
}

/// Every subscriber got an RTCP BYE (`Event::StreamEnded`) for both its legs.
fn assert_ended(clients: &mut [Client]) {
    let ok = drive(clients, Duration::from_secs(10), |cs| {
        cs[1..].iter().all(|c| c.ended.len() >= 2)
    });
    let counts: Vec<usize> = clients[1..].iter().map(|c| c.ended.len()).collect();
    assert!(ok, "not every subscriber saw both tracks end: {counts:?}");
}

/// Two shards per engine, nothing where the relay is: on A the publisher on shard 0 and
/// the relay on shard 1 (B's NACKs are answered from the layer cache on A's shard 0); on
/// B the relay on shard 0 and the subscribers on shard 1 (the relay's repaired packets
/// and the end of the tracks cross to them).
#[test]
fn relay_on_another_shard_than_publisher_and_subscribers_repairs_losses_and_ends_tracks() {
    let on = |shard| RelayParams {
        placement: Placement::Shard(shard),
        ..RelayParams::default()
    };
    let mut clients: Vec<Client> = Vec::new();
    let p = connect_pair_on(2, (on(1), on(0)), &mut clients);
    p.relay.set_uplink(Link::lossy(0.02));
    p.relay.set_downlink(Link::lossy(0.02));
    let room_a = p.a.create_room("a").unwrap();
    let room_b = p.b.create_room("b").unwrap();
    clients.push(publisher_on(&p.a, Placement::Shard(0)));
    for i in 0..3 {
        clients.push(subscriber_on(&p.b, &format!("sub{i}"), Placement::Shard(1)));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&p.a, &mut clients[..1], &ids[..1]);
    wait_engine_connected(&p.b, &mut clients[1..], &ids[1..]);
    let (sa, sb) = (p.a.stats().unwrap(), p.b.stats().unwrap());
    let sessions =
        |st: &engine::EngineStats| -> Vec<usize> { st.shards.iter().map(|s| s.sessions).collect() };
    assert_eq!(sessions(&sa), [1, 1], "A: publisher on 0, relay on 1");
    assert_eq!(sessions(&sb), [1, 3], "B: relay on 0, subscribers on 1");
    p.a.publish(room_a, ids[0]).unwrap();
    let pub_mids = clients[0].mids.clone();
    relay_tracks(&p, ids[0], &pub_mids, room_b);
    for sub in &ids[1..] {
        assert_eq!(p.b.subscribe(room_b, *sub, p.rb).unwrap().len(), 2);
    }

    let mut s = Streamer::new();
    stream(&mut clients, 0, &mut s, Duration::from_secs(3), |_, _| {});
    // Let the last retransmissions land.
    drive(&mut clients, Duration::from_millis(500), |_| false);
    let (sent_up, _, dropped_up, _) = p.relay.uplink_stats().snapshot();
    assert!(dropped_up > 0, "the relay lost nothing of {sent_up}");
    let st = p.a.stats().unwrap();
    let resent: Vec<u64> = st.shards.iter().map(|s| s.rtx_resent).collect();
    let unanswered: Vec<u64> = st.shards.iter().map(|s| s.rtx_unanswered).collect();
    // The retransmissions go out on the relay's shard.
    assert!(
        resent[1] > 0,
        "A resent {resent:?}, unanswered {unanswered:?}"
    );
    let upto = s.video_sent.saturating_sub(18);
    for c in &clients[1..] {
        let got = video_got(c);
        let first = *got
            .first()
            .unwrap_or_else(|| panic!("{}: no media", c.name));
        let missing: Vec<u32> = (first..upto).filter(|i| !got.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "{}: missing {missing:?} (link dropped {dropped_up} of {sent_up}; A resent \
             {resent:?}, unanswered {unanswered:?})",
            c.name
        );
        assert!(
            c.rtp.iter().all(|p| check_payload(&p.payload).is_some()),
            "{}: a payload was altered",
            c.name
        );
    }

    // The relay closes: subscribers on B's other shard get their BYEs too.
    p.a.relay_close(p.ra).unwrap();
    let reason_b = wait_relay_down(&p.b, &mut clients, p.rb, Duration::from_secs(30));
    assert_eq!(reason_b, Some(RelayDownReason::Failed));
    assert_ended(&mut clients);
    p.a.shutdown();
    p.b.shutdown();
}

#[test]
fn relay_peer_silent_past_the_window_is_reported_down_and_its_tracks_end() {
    // Keepalives every 100 ms; 1.5 s (15 keepalives) of silence means down.
    let params = RelayParams {
        keepalive: Duration::from_millis(100),
        timeout: Duration::from_millis(1500),
        ..RelayParams::default()
    };
    let mut none: Vec<Client> = Vec::new();
    let p = connect_pair(params, &mut none);
    let (mut clients, _s) = relayed_call(&p, 3);
    let before = p.b.relay_stats(p.rb).unwrap();
    // The path between the engines goes dead both ways (a peer that vanished without
    // a word: no close_notify, nothing).
    p.relay.set_uplink(Link::lossy(1.0));
    p.relay.set_downlink(Link::lossy(1.0));
    let cut = Instant::now();
    // Generous bound: the window plus time for a loaded machine; the event is what
    // ends the wait.
    let reason = wait_relay_down(&p.b, &mut clients, p.rb, Duration::from_secs(30));
    assert_eq!(reason, Some(RelayDownReason::Silent));
    // Not before the window: the detection is the keepalive timeout, not noise.
    // Not long before the window (measured from the cut, while the last packet was
    // heard a moment earlier): the detection is the timeout, not noise.
    let took = cut.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "down after {took:?}; before the cut: {before:?}"
    );
    assert_ended(&mut clients);
    let reason_a = wait_relay_down(&p.a, &mut clients, p.ra, Duration::from_secs(30));
    assert_eq!(reason_a, Some(RelayDownReason::Silent));
    assert!(
        p.b.relay_stats(p.rb).is_err(),
        "the relay session is gone on B"
    );
    p.a.shutdown();
    p.b.shutdown();
}

#[test]
fn relay_closed_on_one_engine_ends_on_both_and_subscribers_see_the_end() {
    let mut none: Vec<Client> = Vec::new();
    let p = connect_pair(RelayParams::default(), &mut none);
    let (mut clients, _s) = relayed_call(&p, 2);
    p.a.relay_close(p.ra).unwrap();
    let reason_a = wait_relay_down(&p.a, &mut clients, p.ra, Duration::from_secs(30));
    assert_eq!(reason_a, Some(RelayDownReason::Closed));
    // B hears the DTLS close_notify: no need to wait for the silence window.
    let reason_b = wait_relay_down(&p.b, &mut clients, p.rb, Duration::from_secs(30));
    assert_eq!(reason_b, Some(RelayDownReason::Failed));
    assert_ended(&mut clients);
    p.a.shutdown();
    p.b.shutdown();
}

#[test]
fn relay_unpublish_ends_the_track_for_subscribers_on_the_peer() {
    let mut none: Vec<Client> = Vec::new();
    let p = connect_pair(RelayParams::default(), &mut none);
    let (mut clients, _s) = relayed_call(&p, 2);
    let relayed: Vec<Mid> = ["r1", "r2"].iter().filter_map(|m| Mid::new(m)).collect();
    for m in &relayed {
        p.a.relay_unpublish(p.ra, *m).unwrap();
    }
    assert_ended(&mut clients);
    // The relay itself stays up.
    assert!(p.b.relay_stats(p.rb).unwrap().connected);
    p.a.shutdown();
    p.b.shutdown();
}

/// An engine behind a control socket.
struct Ctl {
    engine: EngineHandle,
    handler: std::sync::Arc<engine::control::EngineControl>,
    server: control::ControlServer,
    path: std::path::PathBuf,
}

impl Ctl {
    fn start(ip: [u8; 4], tag: &str) -> Ctl {
        let engine = engine_at(ip);
        let path = std::env::temp_dir().join(format!(
            "relay-ctl-{}-{tag}/control.sock",
            std::process::id()
        ));
        let hub = control::EventHub::new(4096).unwrap();
        let handler = engine::control::EngineControl::new(engine.clone(), hub.clone());
        let server = control::ControlServer::bind_with_events(
            control::ServerConfig::new(&path),
            handler.clone(),
            hub,
        )
        .unwrap();
        Ctl {
            engine,
            handler,
            server,
            path,
        }
    }

    fn client(&self) -> control::ControlClient {
        let mut c = control::ControlClient::connect(&self.path).unwrap();
        c.set_timeout(Some(Duration::from_secs(10)));
        c
    }

    fn events(&self) -> (control::ControlRequester, control::EventStream) {
        let mut c = self.client();
        c.request(control::Request::EventsSubscribe(
            control::EventsSubscribe::default(),
        ))
        .unwrap();
        c.split().unwrap()
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.server.shutdown();
        self.handler.shutdown();
        self.engine.shutdown();
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Steps `clients` until `ev` delivers a `relay.down` for `relay`; returns its reason.
fn wait_relay_down_event(
    ev: &control::EventStream,
    clients: &mut [Client],
    relay: u64,
) -> Option<String> {
    let mut reason = None;
    drive(clients, Duration::from_secs(30), |_| {
        while let Ok(Some(e)) = ev.recv(Some(Duration::ZERO)) {
            if let control::Event::RelayDown(d) = e
                && d.relay.0 == relay
            {
                reason = Some(d.reason);
                return true;
            }
        }
        false
    });
    reason
}

#[test]
fn relay_ops_over_the_control_socket_carry_media_and_report_the_end() {
    use control::{Request, Response};
    let a = Ctl::start([127, 0, 0, 2], "a");
    let b = Ctl::start([127, 0, 0, 3], "b");
    let mut ca = a.client();
    let mut cb = b.client();
    let (_ra_req, ev_a) = a.events();
    let (_rb_req, ev_b) = b.events();

    let Response::RelayInvite(invite) = cb
        .request(Request::RelayListen(control::RelayListen::default()))
        .unwrap()
    else {
        panic!("relay.listen answers an invitation");
    };
    let Response::RelayAnswer(answer) = ca
        .request(Request::RelayConnect(control::RelayConnect {
            invite: invite.clone(),
            keepalive_ms: None,
            timeout_ms: None,
        }))
        .unwrap()
    else {
        panic!("relay.connect answers");
    };
    cb.request(Request::RelayAccept(control::RelayAccept {
        relay: invite.relay,
        answer: answer.clone(),
    }))
    .unwrap();
    // Bad input is refused, not obeyed.
    let bad = ca.request(Request::RelayConnect(control::RelayConnect {
        invite: control::RelayInvite {
            fingerprint: "not a fingerprint".into(),
            ..invite.clone()
        },
        keepalive_ms: None,
        timeout_ms: None,
    }));
    assert!(bad.is_err(), "a bad fingerprint was accepted");

    let room_a = a.engine.create_room("a").unwrap();
    let room_b = b.engine.create_room("b").unwrap();
    let mut clients = vec![publisher(&a.engine), subscriber(&b.engine, "sub")];
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    // The control servers read the engines' events: wait on the peers' side.
    let up = drive(&mut clients, Duration::from_secs(20), |cs| {
        cs.iter().all(|c| c.connected)
    });
    assert!(up, "peers not connected");
    a.engine.publish(room_a, ids[0]).unwrap();
    for mid in clients[0].mids.clone() {
        let Response::RelayTrack(track) = ca
            .request(Request::RelayPublish(control::RelayPublish {
                relay: answer.relay,
                session: control::SessionId(ids[0].0),
                track: control::TrackId(mid.to_string()),
            }))
            .unwrap()
        else {
            panic!("relay.publish answers a track");
        };
        cb.request(Request::RelayAttach(control::RelayAttach {
            relay: invite.relay,
            track,
        }))
        .unwrap();
    }
    let rb = SessionId(invite.relay.0);
    b.engine.publish(room_b, rb).unwrap();
    assert_eq!(b.engine.subscribe(room_b, ids[1], rb).unwrap().len(), 2);
    let mut s = Streamer::new();
    let mut got = false;
    let end = Instant::now() + Duration::from_secs(20);
    while !got && Instant::now() < end {
        stream(
            &mut clients,
            0,
            &mut s,
            Duration::from_millis(100),
            |_, _| {},
        );
        got = video_got(&clients[1]).len() > 10;
    }
    assert!(
        got,
        "no media through the relay set up over the control socket"
    );

    ca.request(Request::RelayClose(control::RelayRef {
        relay: answer.relay,
    }))
    .unwrap();
    assert_eq!(
        wait_relay_down_event(&ev_a, &mut clients, answer.relay.0).as_deref(),
        Some("closed")
    );
    assert_eq!(
        wait_relay_down_event(&ev_b, &mut clients, invite.relay.0).as_deref(),
        Some("failed")
    );
    let ok = drive(&mut clients, Duration::from_secs(10), |cs| {
        cs[1].ended.len() >= 2
    });
    assert!(ok, "the subscriber on B saw no end of the relayed tracks");
}

/// Connects a relay from `a` to a new listener on `b` (no impairing relay between),
/// `a`'s end placed by `placement`. Returns (A's end, B's end) or A's error.
fn try_relay(
    a: &EngineHandle,
    b: &EngineHandle,
    params: RelayParams,
    placement: Placement,
) -> Result<(SessionId, SessionId), engine::EngineError> {
    let invite = b.relay_listen(params).unwrap();
    let answer = a.relay_connect(
        &invite,
        RelayParams {
            placement,
            ..params
        },
    )?;
    b.relay_accept(invite.relay, &answer).unwrap();
    Ok((answer.relay, invite.relay))
}

#[test]
fn a_second_relay_to_the_same_listener_address_takes_another_shard_or_is_refused() {
    // B has one shard: every relay it listens for has the same address. A shard of A's
    // tells its sessions apart by the peer's address, so a second relay from the same
    // shard of A would take the first one's packets (both went down, unannounced):
    // automatic placement passes such a shard over, and where none is left (or the
    // shard was named) the connect is refused.
    let a = engine_with_shards_at([127, 0, 0, 4], 2);
    let b = engine_with_shards_at([127, 0, 0, 5], 1);
    let params = RelayParams {
        keepalive: Duration::from_millis(50),
        timeout: Duration::from_millis(1000),
        ..RelayParams::default()
    };
    // Shard 1 of A is busier, so automatic placement prefers shard 0.
    let mut clients = vec![
        publisher_on(&a, Placement::Shard(1)),
        publisher_on(&a, Placement::Shard(1)),
    ];
    let (ra1, rb1) = try_relay(&a, &b, params, Placement::Shard(0)).unwrap();
    let (ra2, rb2) = try_relay(&a, &b, params, Placement::Auto).unwrap();
    a.relay_stats(ra2).expect("the second relay is installed");
    match try_relay(&a, &b, params, Placement::Shard(0)) {
        Err(engine::EngineError::AddressInUse(_)) => {}
        other => panic!("a named shard already relaying with B: {other:?}"),
    }
    match try_relay(&a, &b, params, Placement::Auto) {
        Err(engine::EngineError::AddressInUse(_)) => {}
        other => panic!("every shard of A already relays with B: {other:?}"),
    }
    let ends = [(&a, ra1), (&a, ra2), (&b, rb1), (&b, rb2)];
    let mut down = Vec::new();
    let ok = drive(&mut clients, Duration::from_secs(20), |_| {
        for e in [&a, &b] {
            while let Ok(ev) = e.events().try_recv() {
                if let EngineEvent::RelayDown { relay, .. } = ev {
                    down.push(relay);
                }
            }
        }
        ends.iter()
            .all(|(e, r)| e.relay_stats(*r).is_ok_and(|s| s.connected))
    });
    assert!(ok, "both relays connect on both ends (down: {down:?})");
    // Both stay up past the silence window: each end hears its own peer's keepalives.
    let t0 = Instant::now();
    let heard: Vec<u64> = ends
        .iter()
        .map(|(e, r)| e.relay_stats(*r).map_or(0, |s| s.datagrams_in))
        .collect();
    drive(&mut clients, Duration::from_millis(2500), |_| {
        for e in [&a, &b] {
            while let Ok(ev) = e.events().try_recv() {
                if let EngineEvent::RelayDown { relay, .. } = ev {
                    down.push(relay);
                }
            }
        }
        t0.elapsed() >= Duration::from_millis(2500)
    });
    assert!(down.is_empty(), "relays reported down: {down:?}");
    for ((e, r), before) in ends.iter().zip(heard) {
        let s = e.relay_stats(*r).unwrap();
        assert!(
            s.connected && s.datagrams_in > before,
            "relay {r:?} heard nothing more: {s:?}"
        );
    }
    a.shutdown();
    b.shutdown();
}
