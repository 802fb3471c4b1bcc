//! The control plane against a real engine on loopback: an in-process engine (2 shards),
//! [`EngineControl`] behind a [`ControlServer`], driven with the Rust [`ControlClient`]
//! and raw Unix sockets; rtc-core peers (full ICE, DTLS, SRTP) on std UDP sockets.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use control::{
    ClientError, ControlClient, ControlServer, ErrorCode, Event, EventHub, EventStream,
    EventsSubscribe, Request, Response, ServerConfig, SessionState,
};
use engine::control::{ControlOptions, EngineControl};
use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, SessionId};
use rtc_core::channel::ChannelConfig;
use rtc_core::event::ChannelId;
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Event as RtcEvent, Input, Output, Protocol, Receive, Rtc};

const PUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const SUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];

struct Rig {
    engine: EngineHandle,
    handler: Arc<EngineControl>,
    server: ControlServer,
    path: PathBuf,
}

impl Rig {
    fn start() -> Rig {
        Rig::start_with(ControlOptions::default())
    }

    fn start_with(opts: ControlOptions) -> Rig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let engine = Engine::start(engine_config(BackendPreference::Auto, 2)).unwrap();
        let path = std::env::temp_dir().join(format!(
            "ctl-test-{}-{}/control.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let hub = EventHub::new(4096).unwrap();
        let handler = EngineControl::with_options(engine.clone(), hub.clone(), opts);
        let server =
            ControlServer::bind_with_events(ServerConfig::new(&path), handler.clone(), hub)
                .unwrap();
        Rig {
            engine,
            handler,
            server,
            path,
        }
    }

    fn client(&self) -> ControlClient {
        let mut c = ControlClient::connect(&self.path).unwrap();
        c.set_timeout(Some(Duration::from_secs(10)));
        c
    }

    /// A client subscribed to every event kind, split into its event stream.
    fn events(&self) -> (control::ControlRequester, EventStream) {
        let mut c = self.client();
        c.request(Request::EventsSubscribe(EventsSubscribe::default()))
            .unwrap();
        c.split().unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server.shutdown();
        self.handler.shutdown();
        self.engine.shutdown();
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn new_rtc(addr: std::net::SocketAddr) -> Rtc {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .unwrap();
    rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
    rtc
}

fn std_socket() -> (std::net::UdpSocket, std::net::SocketAddr) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn client_of(name: &str, rtc: Rtc, s: std::net::UdpSocket, id: u64, mids: Vec<Mid>) -> Client {
    let addr = s.local_addr().unwrap();
    Client::new(
        name,
        rtc,
        Transport::Std(s),
        addr,
        Instant::now(),
        SessionId(id),
        mids,
    )
}

#[derive(Default)]
struct Create<'a> {
    room: Option<&'a str>,
    shard: Option<u32>,
    reap: bool,
    channel: bool,
}

/// An SDP peer whose session is created over the control socket.
fn sdp_peer(
    ctl: &mut ControlClient,
    name: &str,
    media: &[(MediaKind, Direction)],
    opts: Create<'_>,
) -> (Client, control::SessionCreated) {
    let (sock, addr) = std_socket();
    let mut rtc = new_rtc(addr);
    let mut api = rtc.sdp_api();
    let mids: Vec<Mid> = media.iter().map(|(k, d)| api.add_media(*k, *d)).collect();
    if opts.channel {
        api.add_channel(ChannelConfig {
            label: "chat".into(),
            ..ChannelConfig::default()
        })
        .unwrap();
    }
    let (offer, pending) = api.apply().unwrap();
    let resp = ctl
        .request(Request::SessionCreate(control::SessionCreate {
            setup: control::SessionSetup::Offer(offer.to_sdp_string()),
            room: opts.room.map(|r| control::RoomId(r.into())),
            shard: opts.shard.map(control::ShardId),
            reap_on_disconnect: opts.reap,
        }))
        .unwrap();
    let Response::SessionCreated(created) = resp else {
        panic!("not a SessionCreated: {resp:?}");
    };
    let answer = SdpAnswer::from_sdp_string(created.answer.as_deref().unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    assert!(!created.candidates.is_empty());
    assert_eq!(created.fingerprint.algorithm, "sha-256");
    (client_of(name, rtc, sock, created.session.0, mids), created)
}

fn sid(c: &Client) -> control::SessionId {
    control::SessionId(c.id().0)
}

fn drain_events(ev: &EventStream, out: &mut Vec<Event>) {
    while let Ok(Some(e)) = ev.recv(Some(Duration::ZERO)) {
        out.push(e);
    }
}

fn connected_events(events: &[Event]) -> BTreeSet<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionState(s) if s.state == SessionState::Connected => Some(s.session.0),
            _ => None,
        })
        .collect()
}

/// Drives the clients until each is connected on both sides (the peer saw `Connected`,
/// the engine published `session.state: connected`).
fn connect(clients: &mut [Client], ev: &EventStream, events: &mut Vec<Event>) {
    let ids: BTreeSet<u64> = clients.iter().map(|c| c.id().0).collect();
    let ok = drive(clients, Duration::from_secs(10), |cs| {
        drain_events(ev, events);
        cs.iter().all(|c| c.connected) && connected_events(events).is_superset(&ids)
    });
    assert!(ok, "not connected; events so far: {events:?}");
}

fn stats(ctl: &mut ControlClient) -> control::EngineStats {
    match ctl.request(Request::EngineStats).unwrap() {
        Response::EngineStats(s) => s,
        other => panic!("{other:?}"),
    }
}

fn session_stats(ctl: &mut ControlClient, id: control::SessionId) -> control::SessionStats {
    match ctl
        .request(Request::SessionStats(control::SessionRef { session: id }))
        .unwrap()
    {
        Response::SessionStats(s) => s,
        other => panic!("{other:?}"),
    }
}

fn server_code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Media indices each subscriber received, checked byte for byte.
fn received_indices(c: &Client) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let mut v = BTreeSet::new();
    let mut a = BTreeSet::new();
    for p in &c.rtp {
        match check_payload(&p.payload) {
            Some((MediaKind::Video, i)) => {
                v.insert(i);
            }
            Some((MediaKind::Audio, i)) => {
                a.insert(i);
            }
            None => panic!("{}: payload not byte-exact", c.name),
        }
    }
    (v, a)
}

fn tracks(r: Response) -> Vec<control::TrackInfo> {
    match r {
        Response::Tracks(t) => t.tracks,
        other => panic!("{other:?}"),
    }
}

/// Publisher + two subscribers in room "lobby", created, connected, published and
/// subscribed entirely over the control socket.
struct Call {
    clients: Vec<Client>,
    shards: Vec<u32>,
}

fn setup_call(
    rig: &Rig,
    ctl: &mut ControlClient,
    ev: &EventStream,
    events: &mut Vec<Event>,
) -> Call {
    ctl.request(Request::RoomCreate(control::RoomRef {
        room: control::RoomId("lobby".into()),
    }))
    .unwrap();
    let (p, pc) = sdp_peer(
        ctl,
        "pub",
        &PUB_MEDIA,
        Create {
            room: Some("lobby"),
            shard: Some(0),
            ..Create::default()
        },
    );
    // Unpinned: placed with the room (shard 0, which holds the publisher).
    let (s0, s0c) = sdp_peer(
        ctl,
        "sub0",
        &SUB_MEDIA,
        Create {
            room: Some("lobby"),
            ..Create::default()
        },
    );
    // Pinned to the other shard: forwarding crosses shards.
    let (s1, s1c) = sdp_peer(
        ctl,
        "sub1",
        &SUB_MEDIA,
        Create {
            room: Some("lobby"),
            shard: Some(1),
            ..Create::default()
        },
    );
    assert_eq!(pc.shard.0, 0);
    assert_eq!(s0c.shard.0, 0, "a room stays together while it fits");
    assert_eq!(s1c.shard.0, 1, "a pinned session goes where it is pinned");
    let mut clients = vec![p, s0, s1];
    connect(&mut clients, ev, events);

    let published = tracks(
        ctl.request(Request::Publish(control::Publish {
            session: sid(&clients[0]),
            room: control::RoomId("lobby".into()),
            tracks: None,
        }))
        .unwrap(),
    );
    assert_eq!(
        published.len(),
        2,
        "audio and video published: {published:?}"
    );
    for i in 1..3 {
        let fwd = tracks(
            ctl.request(Request::Subscribe(control::Subscribe {
                subscriber: sid(&clients[i]),
                publisher: sid(&clients[0]),
                tracks: None,
            }))
            .unwrap(),
        );
        let kinds: BTreeSet<_> = fwd.iter().map(|t| format!("{:?}", t.kind)).collect();
        assert_eq!(kinds.len(), 2, "both kinds forwarded: {fwd:?}");
        // Each forwarded track names the subscriber's own track carrying it.
        for t in &fwd {
            let local = t
                .local_track
                .as_ref()
                .expect("subscribe names the local track");
            assert!(
                clients[i].mids.iter().any(|m| m.as_str() == local.0),
                "{local:?} is one of the subscriber's mids"
            );
        }
    }
    let _ = rig;
    drive(&mut clients, Duration::from_millis(100), |_| false);
    Call {
        clients,
        shards: vec![pc.shard.0, s0c.shard.0, s1c.shard.0],
    }
}

#[test]
fn sessions_rooms_media_and_stats_over_the_socket() {
    let rig = Rig::start();
    let mut ctl = rig.client();
    let (_evreq, ev) = rig.events();
    let mut events = Vec::new();
    let mut call = setup_call(&rig, &mut ctl, &ev, &mut events);
    assert_eq!(call.shards, vec![0, 0, 1]);

    // Media flows to both subscribers (one on each shard).
    let mut s = Streamer::new();
    stream(
        &mut call.clients,
        0,
        &mut s,
        Duration::from_millis(1500),
        |_, _| {},
    );
    drive(&mut call.clients, Duration::from_millis(200), |_| false);
    for c in &call.clients[1..] {
        let (v, a) = received_indices(c);
        assert!(
            v.len() as u32 >= s.video_sent * 8 / 10 && a.len() as u32 >= s.audio_sent * 8 / 10,
            "{}: got {} of {} video, {} of {} audio",
            c.name,
            v.len(),
            s.video_sent,
            a.len(),
            s.audio_sent
        );
    }

    // engine.stats
    let st = stats(&mut ctl);
    assert_eq!(st.sessions, 3);
    assert_eq!(st.rooms, 1);
    assert!(st.control_clients >= 1);
    assert_eq!(st.shards.len(), 2);
    let pin: u64 = st.shards.iter().map(|s| s.packets_in).sum();
    let pout: u64 = st.shards.iter().map(|s| s.packets_out).sum();
    assert!(
        pin >= u64::from(s.video_sent + s.audio_sent),
        "packets_in {pin}"
    );
    assert!(
        pout >= u64::from(s.video_sent + s.audio_sent),
        "packets_out {pout}"
    );
    for sh in &st.shards {
        assert!(sh.head.backend == "io_uring" || sh.head.backend == "portable");
        assert!(sh.loop_us.count > 0);
        assert!(sh.drops.contains_key("unknown_source"));
    }
    let fwd: u64 = st
        .shards
        .iter()
        .map(|s| s.histograms["forward_us"].count)
        .sum();
    assert!(fwd > 0, "forwarding latency recorded");
    assert_eq!(st.shards[0].head.sessions, 2);
    assert_eq!(st.shards[1].head.sessions, 1);
    // sub1 on shard 1: every publisher packet crosses once, and shard 1 sees them come in.
    let (out0, in1) = (
        st.shards[0].detail.cross_shard_out,
        st.shards[1].detail.cross_shard_in,
    );
    assert!(
        out0 >= u64::from(s.video_sent + s.audio_sent) * 8 / 10 && in1 >= out0 * 9 / 10,
        "cross-shard hand-offs: out {out0}, in {in1}, sent {}",
        s.video_sent + s.audio_sent
    );
    assert_eq!(st.shards[1].detail.cross_shard_out, 0, "nothing flows back");

    // session.stats
    let ps = session_stats(&mut ctl, sid(&call.clients[0]));
    assert_eq!(ps.state, SessionState::Connected);
    assert_eq!(ps.shard.0, 0);
    assert_eq!(ps.room.as_ref().map(|r| r.0.as_str()), Some("lobby"));
    assert!(ps.packets_in >= u64::from(s.video_sent + s.audio_sent));
    assert!(ps.bytes_in > ps.packets_in * 100);
    let pair = ps.selected_pair.clone().expect("selected pair");
    assert!(pair.ends_with(&call.clients[0].addr.to_string()), "{pair}");
    assert!(ps.age_ms > 0);
    let ss = session_stats(&mut ctl, sid(&call.clients[2]));
    assert_eq!(ss.shard.0, 1);
    assert!(ss.packets_out > 0);
    let in_video = ps
        .tracks
        .iter()
        .find(|t| t.inbound && t.kind == control::MediaKind::Video)
        .unwrap_or_else(|| panic!("inbound video figures: {ps:?}"));
    assert!(
        in_video.packets >= u64::from(s.video_sent) * 9 / 10,
        "{ps:?}"
    );
    let out_video = ss
        .tracks
        .iter()
        .find(|t| !t.inbound && t.kind == control::MediaKind::Video)
        .unwrap_or_else(|| panic!("outbound video figures: {ss:?}"));
    assert!(
        out_video.packets > 0 && out_video.bytes > out_video.packets * 100,
        "{ss:?}"
    );

    // room.list, shard.list
    match ctl.request(Request::RoomList).unwrap() {
        Response::Rooms(r) => {
            assert_eq!(r.rooms.len(), 1);
            assert_eq!(r.rooms[0].room.0, "lobby");
            assert_eq!(r.rooms[0].sessions.len(), 3);
            assert_eq!(r.rooms[0].publishers, vec![sid(&call.clients[0])]);
        }
        other => panic!("{other:?}"),
    }
    match ctl.request(Request::ShardList).unwrap() {
        Response::Shards(l) => {
            assert_eq!(l.shards.len(), 2);
            assert!(l.shards.iter().all(|s| !s.addrs.is_empty()));
        }
        other => panic!("{other:?}"),
    }

    // keyframe.request → the publisher gets a PLI, subscribers see the event.
    let before = call.clients[0].keyframe_requests.len();
    ctl.request(Request::KeyframeRequest(control::KeyframeRequest {
        session: sid(&call.clients[0]),
        track: None,
    }))
    .unwrap();
    let publisher = sid(&call.clients[0]);
    let ok = drive(&mut call.clients, Duration::from_secs(3), |cs| {
        drain_events(&ev, &mut events);
        cs[0].keyframe_requests.len() > before
            && events.iter().any(|e| {
                matches!(e, Event::KeyframeRequested(k) if k.session == publisher && k.requester.is_none())
            })
    });
    assert!(ok, "publisher received a PLI and the event was published");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::TrackAdded(t) if t.room.is_some()))
    );

    // track.set_preference on sub1's own video track (its single-layer stream keeps
    // flowing at max_layer 0); an unknown track and out-of-range values are refused.
    let sub1 = sid(&call.clients[2]);
    let vtrack = control::TrackId(call.clients[2].mids[1].as_str().to_string());
    let pref = |track: control::TrackId, max_layer: Option<u8>| {
        Request::TrackSetPreference(control::TrackPreference {
            session: sub1,
            track,
            max_layer,
            max_temporal: None,
            paused: false,
        })
    };
    assert!(matches!(
        ctl.request(pref(vtrack.clone(), Some(0))).unwrap(),
        Response::Done
    ));
    assert_eq!(
        server_code(ctl.request(pref(control::TrackId("nope".into()), None))),
        ErrorCode::NotFound
    );
    assert_eq!(
        server_code(ctl.request(pref(vtrack, Some(5)))),
        ErrorCode::BadParams
    );

    // unsubscribe sub0: it stops receiving; sub1 keeps receiving.
    ctl.request(Request::Unsubscribe(control::Subscribe {
        subscriber: sid(&call.clients[1]),
        publisher: sid(&call.clients[0]),
        tracks: None,
    }))
    .unwrap();
    drive(&mut call.clients, Duration::from_millis(100), |_| false);
    let got0 = call.clients[1].rtp.len();
    let got1 = call.clients[2].rtp.len();
    s.resync(Instant::now());
    stream(
        &mut call.clients,
        0,
        &mut s,
        Duration::from_millis(500),
        |_, _| {},
    );
    drive(&mut call.clients, Duration::from_millis(100), |_| false);
    assert_eq!(
        call.clients[1].rtp.len(),
        got0,
        "unsubscribed: nothing more"
    );
    assert!(call.clients[2].rtp.len() > got1 + 20, "still subscribed");

    // session.close
    let gone = sid(&call.clients[2]);
    ctl.request(Request::SessionClose(control::SessionRef { session: gone }))
        .unwrap();
    assert_eq!(
        server_code(ctl.request(Request::SessionStats(control::SessionRef { session: gone }))),
        ErrorCode::NotFound
    );
    let ok = drive(&mut call.clients, Duration::from_secs(3), |_| {
        drain_events(&ev, &mut events);
        events.iter().any(|e| {
            matches!(e, Event::SessionState(s) if s.session == gone && s.state == SessionState::Closed)
        })
    });
    assert!(ok, "session.state closed published");
    assert_eq!(stats(&mut ctl).sessions, 2);

    // Errors on well-formed requests.
    let bad_room = control::RoomRef {
        room: control::RoomId("lobby".into()),
    };
    assert_eq!(
        server_code(ctl.request(Request::RoomCreate(bad_room))),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        server_code(ctl.request(Request::SessionClose(control::SessionRef {
            session: control::SessionId(999_999)
        }))),
        ErrorCode::NotFound
    );
    assert_eq!(
        server_code(ctl.request(Request::Publish(control::Publish {
            session: sid(&call.clients[0]),
            room: control::RoomId("nope".into()),
            tracks: None,
        }))),
        ErrorCode::NotFound
    );
    assert_eq!(
        server_code(ctl.request(Request::Subscribe(control::Subscribe {
            subscriber: sid(&call.clients[0]),
            publisher: sid(&call.clients[1]),
            tracks: None,
        }))),
        ErrorCode::Conflict,
        "sub0 publishes in no room"
    );
    let bad_offer = Request::SessionCreate(control::SessionCreate {
        setup: control::SessionSetup::Offer("v=0\r\nnot sdp".into()),
        room: None,
        shard: None,
        reap_on_disconnect: false,
    });
    assert_eq!(server_code(ctl.request(bad_offer)), ErrorCode::BadParams);
    let pinned_nowhere = Request::SessionCreate(control::SessionCreate {
        setup: control::SessionSetup::Offer("v=0\r\n".into()),
        room: None,
        shard: Some(control::ShardId(7)),
        reap_on_disconnect: false,
    });
    assert_eq!(
        server_code(ctl.request(pinned_nowhere)),
        ErrorCode::NotFound
    );

    // shard.drain: shard 1 takes no new sessions; pinning there is refused.
    match ctl
        .request(Request::ShardDrain(control::ShardRef {
            shard: control::ShardId(1),
        }))
        .unwrap()
    {
        Response::Draining(d) => assert_eq!(d.shard.0, 1),
        other => panic!("{other:?}"),
    }
    let (_, c) = sdp_peer(&mut ctl, "late", &SUB_MEDIA, Create::default());
    assert_eq!(c.shard.0, 0, "a drained shard takes no new sessions");
    let on_drained = {
        let (sock, addr) = std_socket();
        drop(sock);
        let mut rtc = new_rtc(addr);
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly);
        let (offer, _) = api.apply().unwrap();
        Request::SessionCreate(control::SessionCreate {
            setup: control::SessionSetup::Offer(offer.to_sdp_string()),
            room: None,
            shard: Some(control::ShardId(1)),
            reap_on_disconnect: false,
        })
    };
    assert_eq!(server_code(ctl.request(on_drained)), ErrorCode::Unavailable);

    // room.close: forwarding in the room stops, sessions stay.
    ctl.request(Request::RoomClose(control::RoomRef {
        room: control::RoomId("lobby".into()),
    }))
    .unwrap();
    let st = stats(&mut ctl);
    assert_eq!((st.rooms, st.sessions), (0, 3));
}

/// Steps a peer, collecting its data-channel events (the shared `Client::step` ignores
/// them).
fn step_dc(
    c: &mut Client,
    now: Instant,
    open: &mut Vec<(ChannelId, String)>,
    got: &mut Vec<Vec<u8>>,
) {
    let Transport::Std(sock) = &c.transport else {
        unreachable!("std transport");
    };
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        let _ = c.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: c.addr,
                contents: &buf[..n],
            },
        ));
    }
    if now >= c.next_timeout {
        let _ = c.rtc.handle_input(Input::Timeout(now));
    }
    loop {
        match c.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = sock.send_to(t.contents, t.destination);
            }
            Ok(Output::Event(e)) => match e {
                RtcEvent::Connected => c.connected = true,
                RtcEvent::ChannelOpen(id, label) => open.push((id, label)),
                RtcEvent::ChannelData(d) => got.push(d.data),
                _ => {}
            },
            Ok(Output::Timeout(t)) => {
                c.next_timeout = t;
                break;
            }
            Err(_) => break,
        }
    }
}

#[test]
fn data_channel_both_ways_and_direct_sessions() {
    let rig = Rig::start();
    let mut ctl = rig.client();
    let (_evreq, ev) = rig.events();
    let mut events = Vec::new();

    let (mut peer, created) = sdp_peer(
        &mut ctl,
        "dc",
        &[(MediaKind::Audio, Direction::SendOnly)],
        Create {
            channel: true,
            ..Create::default()
        },
    );
    let mut open = Vec::new();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while open.is_empty() && Instant::now() < end {
        step_dc(&mut peer, Instant::now(), &mut open, &mut got);
        std::thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(open.len(), 1, "the channel opened");
    let (id, label) = open[0].clone();
    assert_eq!(label, "chat");
    peer.rtc
        .channel(id)
        .unwrap()
        .write(false, b"hello engine")
        .unwrap();
    // The engine may see the channel open a moment after the peer does: retry.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        step_dc(&mut peer, Instant::now(), &mut open, &mut got);
        let r = ctl.request(Request::ChannelSend(control::ChannelSend {
            session: created.session,
            channel: control::ChannelRef::Label("chat".into()),
            payload: control::ChannelPayload::Text("hello peer".into()),
        }));
        match r {
            Ok(_) => break,
            Err(ClientError::Server(e))
                if e.code == ErrorCode::NotFound && Instant::now() < end =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("channel.send: {e}"),
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    let mut from_peer = None;
    while (got.is_empty() || from_peer.is_none()) && Instant::now() < end {
        step_dc(&mut peer, Instant::now(), &mut open, &mut got);
        drain_events(&ev, &mut events);
        from_peer = events.iter().find_map(|e| match e {
            Event::ChannelMessage(m) => Some(m.clone()),
            _ => None,
        });
        std::thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(got, vec![b"hello peer".to_vec()]);
    let m = from_peer.expect("channel.message event");
    assert_eq!(m.session, created.session);
    assert_eq!(m.label, "chat");
    assert_eq!(
        m.payload,
        control::ChannelPayload::Text("hello engine".into())
    );
    assert_eq!(
        server_code(ctl.request(Request::ChannelSend(control::ChannelSend {
            session: created.session,
            channel: control::ChannelRef::Label("nope".into()),
            payload: control::ChannelPayload::Binary(vec![1, 2, 3]),
        }))),
        ErrorCode::NotFound
    );

    // A direct (SDP-free) session: ICE + DTLS come up from the exchanged parameters.
    let (sock, addr) = std_socket();
    let mut rtc = new_rtc(addr);
    let creds = rtc.direct_api().local_ice_credentials();
    let fp = rtc.direct_api().local_dtls_fingerprint().to_string();
    let (alg, value) = fp.split_once(' ').unwrap();
    let resp = ctl
        .request(Request::SessionCreate(control::SessionCreate {
            setup: control::SessionSetup::Direct(control::DirectParams {
                ice_ufrag: creds.ufrag.clone(),
                ice_pwd: creds.pass.clone(),
                fingerprint: control::Fingerprint {
                    algorithm: alg.into(),
                    value: value.into(),
                },
                remote_dtls_role: control::DtlsRole::Client,
                candidates: vec![
                    Candidate::host(addr, Protocol::Udp)
                        .unwrap()
                        .to_sdp_string(),
                ],
                ice_lite: false,
            }),
            room: Some(control::RoomId("direct".into())),
            shard: None,
            reap_on_disconnect: false,
        }))
        .unwrap();
    let Response::SessionCreated(d) = resp else {
        panic!("{resp:?}");
    };
    assert!(d.answer.is_none());
    assert_eq!(d.dtls_role, control::DtlsRole::Server);
    let mut api = rtc.direct_api();
    api.set_remote_ice_credentials(rtc_core::ice::IceCreds {
        ufrag: d.ice_ufrag.clone(),
        pass: d.ice_pwd.clone(),
    });
    api.set_remote_fingerprint(
        format!("{} {}", d.fingerprint.algorithm, d.fingerprint.value)
            .parse()
            .unwrap(),
    );
    api.set_ice_controlling(true);
    api.start_dtls(true).unwrap();
    for c in &d.candidates {
        rtc.add_remote_candidate(Candidate::from_sdp_string(c).unwrap());
    }
    let mut clients = vec![client_of("direct", rtc, sock, d.session.0, Vec::new())];
    connect(&mut clients, &ev, &mut events);
    let st = session_stats(&mut ctl, d.session);
    assert_eq!(st.state, SessionState::Connected);
    assert_eq!(st.room.map(|r| r.0), Some("direct".to_string()));
}

/// Reads one response line from a raw connection (after the hello).
fn raw_line(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 {
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8(out).unwrap()
}

fn raw(rig: &Rig) -> UnixStream {
    let mut s = UnixStream::connect(&rig.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = raw_line(&mut s);
    assert!(hello.contains("\"hello\""), "{hello}");
    s
}

#[test]
fn bad_clients_do_not_disturb_forwarding() {
    let rig = Rig::start();
    let mut ctl = rig.client();
    let (_evreq, ev) = rig.events();
    let mut events = Vec::new();
    let mut call = setup_call(&rig, &mut ctl, &ev, &mut events);
    let mut s = Streamer::new();
    stream(
        &mut call.clients,
        0,
        &mut s,
        Duration::from_millis(300),
        |_, _| {},
    );

    // Garbage, a wrong-shaped request, a huge line, half lines, clients that vanish.
    let mut g = raw(&rig);
    g.write_all(b"\x00\xffnot json at all\n").unwrap();
    assert!(raw_line(&mut g).contains("bad_json"));
    g.write_all(b"{\"id\":1,\"op\":\"session.create\",\"params\":{\"offer\":1}}\n")
        .unwrap();
    assert!(raw_line(&mut g).contains("bad_params"));
    g.write_all(b"{\"id\":2,\"op\":\"no.such\"}\n").unwrap();
    assert!(raw_line(&mut g).contains("unknown_op"));

    let mut big = raw(&rig);
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent <= control::MAX_LINE + 64 * 1024 {
        if big.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(raw_line(&mut big).contains("line_too_long"));

    for _ in 0..20 {
        let mut h = raw(&rig);
        h.write_all(b"{\"id\":1,\"op\":\"engine.st").unwrap();
        drop(h);
    }
    for _ in 0..20 {
        // Killed mid-request: the request is sent, the answer never read.
        let mut k = UnixStream::connect(&rig.path).unwrap();
        let _ =
            k.write_all(b"{\"id\":1,\"op\":\"engine.stats\"}\n{\"id\":2,\"op\":\"room.list\"}\n");
        drop(k);
    }

    // 1,000 concurrent clients, each with a pipelined request.
    let mut many: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&rig.path).unwrap())
        .collect();
    for (i, c) in many.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(format!("{{\"id\":{i},\"op\":\"room.list\"}}\n").as_bytes())
            .unwrap();
    }
    let mut answered = 0;
    for (i, c) in many.iter_mut().enumerate() {
        let hello = raw_line(c);
        assert!(hello.contains("hello"), "client {i}: {hello}");
        let line = raw_line(c);
        if line.contains(&format!("\"id\":{i},\"ok\"")) && line.contains("lobby") {
            answered += 1;
        }
    }
    assert_eq!(answered, 1000);
    drop(many);

    // The engine still forwards and still answers.
    let before: Vec<usize> = call.clients.iter().map(|c| c.rtp.len()).collect();
    s.resync(Instant::now());
    stream(
        &mut call.clients,
        0,
        &mut s,
        Duration::from_millis(500),
        |_, _| {},
    );
    drive(&mut call.clients, Duration::from_millis(100), |_| false);
    for (c, b) in call.clients[1..].iter().zip(&before[1..]) {
        assert!(c.rtp.len() > b + 30, "{} still receives", c.name);
        received_indices(c);
    }
    let st = stats(&mut ctl);
    assert_eq!(st.sessions, 3);
    g.write_all(b"{\"id\":9,\"op\":\"room.list\"}\n")
        .expect("the garbage client's connection is still served");
    assert!(raw_line(&mut g).contains("lobby"));
}

#[test]
fn reap_on_disconnect_closes_only_reaped_sessions() {
    let rig = Rig::start();
    let mut ctl = rig.client();
    let (_evreq, ev) = rig.events();
    let mut events = Vec::new();
    let mut owner = rig.client();
    let (a, ac) = sdp_peer(
        &mut owner,
        "reaped",
        &SUB_MEDIA,
        Create {
            reap: true,
            ..Create::default()
        },
    );
    let (b, bc) = sdp_peer(&mut owner, "kept", &SUB_MEDIA, Create::default());
    let mut clients = vec![a, b];
    connect(&mut clients, &ev, &mut events);
    assert_eq!(stats(&mut ctl).sessions, 2);

    drop(owner);
    let ok = drive(&mut clients, Duration::from_secs(5), |_| {
        drain_events(&ev, &mut events);
        events.iter().any(|e| {
            matches!(e, Event::SessionState(s) if s.session == ac.session && s.state == SessionState::Closed)
        })
    });
    assert!(ok, "the reaped session closed: {events:?}");
    assert_eq!(
        server_code(ctl.request(Request::SessionStats(control::SessionRef {
            session: ac.session
        }))),
        ErrorCode::NotFound
    );
    assert_eq!(
        session_stats(&mut ctl, bc.session).state,
        SessionState::Connected
    );
    assert_eq!(stats(&mut ctl).sessions, 1);
    // The peer of the reaped session sees the DTLS close.
    let ok = drive(&mut clients, Duration::from_secs(5), |cs| {
        !cs[0].rtc.is_alive() || cs[0].failed
    });
    assert!(ok, "the reaped peer saw the session end");
}

#[test]
fn engine_stats_json_as_rtcctl_prints_it() {
    // `rtcctl --json engine stats` prints the `ok` body of the response as one line;
    // the same body, produced here from the real engine, must carry every field.
    let rig = Rig::start();
    let mut ctl = rig.client();
    let resp = ctl.request(Request::EngineStats).unwrap();
    let line = serde_json::to_string(&resp).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for k in [
        "uptime_ms",
        "sessions",
        "rooms",
        "control_clients",
        "shards",
    ] {
        assert!(v.get(k).is_some(), "{k} in {line}");
    }
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"], i);
        for k in [
            "backend",
            "sessions",
            "draining",
            "packets_in",
            "packets_out",
            "bytes_in",
            "bytes_out",
            "drops",
            "gso_batches",
            "gro_batches",
            "loop_us",
            "histograms",
        ] {
            assert!(s.get(k).is_some(), "shard {i}: {k} in {line}");
        }
        assert!(s["histograms"].get("forward_us").is_some());
        assert!(s["loop_us"].get("p99").is_some());
    }
    // And it reads back as the typed response.
    let back = Response::from_value(control::OpKind::EngineStats, v).unwrap();
    assert!(matches!(back, Response::EngineStats(_)));
}

#[test]
fn a_room_bigger_than_its_share_of_a_shard_spreads_over_shards() {
    let rig = Rig::start_with(ControlOptions {
        room_shard_sessions: 2,
        ..ControlOptions::default()
    });
    let mut ctl = rig.client();
    ctl.request(Request::RoomCreate(control::RoomRef {
        room: control::RoomId("big".into()),
    }))
    .unwrap();
    let sdp = {
        let mut rtc = Rtc::builder().build(Instant::now()).unwrap();
        let mut api = rtc.sdp_api();
        for (k, d) in SUB_MEDIA {
            api.add_media(k, d);
        }
        api.apply().unwrap().0.to_sdp_string()
    };
    let mut shards = Vec::new();
    for _ in 0..4 {
        match ctl
            .request(Request::SessionCreate(control::SessionCreate {
                setup: control::SessionSetup::Offer(sdp.clone()),
                room: Some(control::RoomId("big".into())),
                shard: None,
                reap_on_disconnect: false,
            }))
            .unwrap()
        {
            Response::SessionCreated(c) => shards.push(c.shard.0),
            other => panic!("{other:?}"),
        }
    }
    // Two per shard: the room fills shard 0 to its share, then shard 1.
    assert_eq!(shards, vec![0, 0, 1, 1]);
    let st = stats(&mut ctl);
    assert_eq!(st.shards[0].head.sessions, 2);
    assert_eq!(st.shards[1].head.sessions, 2);
}

#[test]
fn a_dead_shard_is_reported_on_the_socket_and_placement_skips_it() {
    let rig = Rig::start();
    let (_evreq, ev) = rig.events();
    let mut ctl = rig.client();
    let mut rtc = Rtc::builder().build(Instant::now()).unwrap();
    let mut api = rtc.sdp_api();
    for (k, d) in PUB_MEDIA {
        api.add_media(k, d);
    }
    let sdp = api.apply().unwrap().0.to_sdp_string();
    let create = |ctl: &mut ControlClient, shard: Option<u32>| {
        ctl.request(Request::SessionCreate(control::SessionCreate {
            setup: control::SessionSetup::Offer(sdp.clone()),
            room: None,
            shard: shard.map(control::ShardId),
            reap_on_disconnect: false,
        }))
    };
    let mut victims = BTreeSet::new();
    for _ in 0..2 {
        match create(&mut ctl, Some(0)).unwrap() {
            Response::SessionCreated(c) => victims.insert(c.session.0),
            other => panic!("{other:?}"),
        };
    }
    create(&mut ctl, Some(1)).unwrap();
    rig.engine.debug_inject_shard_panic(0).unwrap();
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let closed = |events: &[Event]| -> BTreeSet<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::SessionState(s) if s.state == SessionState::Closed => Some(s.session.0),
                _ => None,
            })
            .collect()
    };
    while Instant::now() < end {
        drain_events(&ev, &mut events);
        let down = events.iter().any(|e| matches!(e, Event::ShardDown(_)));
        if down && closed(&events) == victims {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let down: Vec<&control::ShardFailure> = events
        .iter()
        .filter_map(|e| match e {
            Event::ShardDown(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(down.len(), 1, "{events:?}");
    assert_eq!((down[0].shard.0, down[0].sessions), (0, 2));
    assert_eq!(closed(&events), victims);
    let st = stats(&mut ctl);
    assert!(!st.shards[0].healthy);
    assert!(st.shards[1].healthy);
    assert_eq!(st.sessions, 1);
    // New sessions go to the live shard; pinning the dead one is refused.
    match create(&mut ctl, None).unwrap() {
        Response::SessionCreated(c) => assert_eq!(c.shard.0, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server_code(create(&mut ctl, Some(0))),
        ErrorCode::Unavailable
    );
}
