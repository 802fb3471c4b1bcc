//! WHIP/WHEP through rtc-demo's HTTP API with rtc-core clients on real UDP sockets: a
//! publisher POSTs a sendonly offer to `/whip/{room}`, a viewer POSTs a recvonly offer
//! to `/whep/{room}/{publisher}`, media flows byte-exact through the engine (two shards,
//! publisher and viewer on different ones), `DELETE` ends the sessions, and bad requests
//! get 4xx with a reason. Runs over both backends: the in-process engine, and the
//! control-socket client against the engine's real control handler
//! (`engine::control::EngineControl`) served by the real control server on a temporary
//! socket, over an in-process engine: what `rtc-engine` runs.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::{ControlServer, EventHub, ServerConfig};
use engine::control::EngineControl;
use engine::{Engine, EngineConfig, EngineHandle, SessionId};
use rtc_core::ice::Candidate;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Protocol, Rtc};
use serde_json::Value;
use test_support::{Client, Streamer, Transport, check_payload, drive, stream};
use tools::demo::{Backend, ControlBackend, DemoConfig, DemoServer, InProcessBackend};

// ---- a tiny HTTP client --------------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the demo");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body: ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let text = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

const SDP: (&str, &str) = ("Content-Type", "application/sdp");

// ---- rtc-core WHIP/WHEP clients ---------------------------------------------------------

const PUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const SUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];

/// Posts an offer with `media` to `path`; returns the connected-to-be client and the
/// 201's Location and shard.
fn whip_client(
    addr: SocketAddr,
    name: &str,
    path: &str,
    media: &[(MediaKind, Direction)],
    auth: &[(&str, &str)],
) -> (Client, String, usize) {
    let now = Instant::now();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let local = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    rtc.add_local_candidate(Candidate::host(local, Protocol::Udp).unwrap());
    let mut api = rtc.sdp_api();
    let mids = media.iter().map(|(k, d)| api.add_media(*k, *d)).collect();
    let (offer, pending) = api.apply().unwrap();
    let mut headers = vec![SDP];
    headers.extend_from_slice(auth);
    let r = http(
        addr,
        "POST",
        path,
        &headers,
        offer.to_sdp_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{path}: {}", r.body);
    assert_eq!(r.header("Content-Type"), Some("application/sdp"));
    let location = r.header("Location").expect("Location").to_owned();
    let session: u64 = r.header("X-Session-Id").unwrap().parse().unwrap();
    let shard: usize = r.header("X-Shard").unwrap().parse().unwrap();
    let answer = SdpAnswer::from_sdp_string(&r.body).expect("the answer parses");
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let client = Client {
        name: name.to_owned(),
        rtc,
        transport: Transport::Std(sock),
        addr: local,
        next_timeout: now,
        connected: false,
        failed: false,
        rtp: Vec::new(),
        keyframe_requests: Vec::new(),
        ended: Vec::new(),
        block_stun: false,
        deaf: false,
        id: Some(SessionId(session)),
        mids,
    };
    (client, location, shard)
}

fn sessions(backend: &dyn Backend) -> u64 {
    backend
        .stats()
        .expect("stats")
        .shards
        .iter()
        .map(|s| s.sessions)
        .sum()
}

/// Publish, view, stream, check byte-exact delivery, list, delete.
fn publish_view_delete(backend: Arc<dyn Backend>) {
    let server = DemoServer::start(
        Arc::clone(&backend),
        DemoConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            ..DemoConfig::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();

    let (publisher, pub_loc, pub_shard) = whip_client(addr, "pub", "/whip/demo", &PUB_MEDIA, &[]);
    assert!(pub_loc.starts_with("/whip/demo/"), "{pub_loc}");
    let pub_id = publisher.id().0;
    let (viewer, view_loc, view_shard) = whip_client(
        addr,
        "view",
        &format!("/whep/demo/{pub_id}"),
        &SUB_MEDIA,
        &[],
    );
    assert!(
        view_loc.starts_with(&format!("/whep/demo/{pub_id}/")),
        "{view_loc}"
    );
    assert_ne!(
        pub_shard, view_shard,
        "the viewer is placed on another shard"
    );
    let view_id = viewer.id().0;

    let mut clients = vec![publisher, viewer];
    assert!(
        drive(&mut clients, Duration::from_secs(10), |cs| cs
            .iter()
            .all(|c| c.connected)),
        "ICE/DTLS did not come up"
    );
    // Let the engine's connected events reach the demo.
    drive(&mut clients, Duration::from_millis(300), |_| false);

    let room: Value =
        serde_json::from_str(&http(addr, "GET", "/rooms/demo", &[], b"").body).unwrap();
    assert_eq!(room["room"], "demo");
    assert_eq!(room["publishers"][0]["id"], pub_id);
    assert_eq!(room["publishers"][0]["shard"], pub_shard);
    assert_eq!(
        room["publishers"][0]["kinds"],
        serde_json::json!(["audio", "video"])
    );
    assert_eq!(room["publishers"][0]["connected"], true);
    assert_eq!(room["viewers"][0]["id"], view_id);
    assert_eq!(room["viewers"][0]["publisher"], pub_id);
    assert_eq!(room["viewers"][0]["connected"], true);
    let rooms: Value = serde_json::from_str(&http(addr, "GET", "/rooms", &[], b"").body).unwrap();
    assert_eq!(
        rooms,
        serde_json::json!([{"room": "demo", "publishers": 1, "viewers": 1}])
    );
    let listed = backend.list_rooms().unwrap();
    let engine_room = listed
        .iter()
        .find(|r| r.name == "demo")
        .expect("engine room");
    assert_eq!(engine_room.publishers, vec![pub_id]);

    // Media: byte-exact from publisher to viewer.
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1500),
        |_, _| {},
    );
    drive(&mut clients, Duration::from_millis(400), |_| false);
    let mut video = BTreeSet::new();
    let mut audio = BTreeSet::new();
    for p in &clients[1].rtp {
        let (kind, index) = check_payload(&p.payload).expect("payload is byte-exact");
        let fresh = match kind {
            MediaKind::Video => video.insert(index),
            MediaKind::Audio => audio.insert(index),
        };
        assert!(fresh, "duplicate {kind:?} {index}");
    }
    assert!(s.video_sent > 100 && s.audio_sent > 50);
    assert_eq!(video, (0..s.video_sent).collect(), "video lost on the way");
    assert_eq!(audio, (0..s.audio_sent).collect(), "audio lost on the way");

    // The stats endpoint reports both shards.
    let st: Value = serde_json::from_str(&http(addr, "GET", "/stats", &[], b"").body).unwrap();
    assert_eq!(st["shards"].as_array().map(Vec::len), Some(2));
    assert_eq!(st["backend"], backend.name());

    // DELETE ends the sessions.
    assert_eq!(http(addr, "DELETE", &view_loc, &[], b"").status, 200);
    assert_eq!(http(addr, "DELETE", &view_loc, &[], b"").status, 404);
    let room: Value =
        serde_json::from_str(&http(addr, "GET", "/rooms/demo", &[], b"").body).unwrap();
    assert_eq!(room["viewers"], serde_json::json!([]));
    assert_eq!(http(addr, "DELETE", &pub_loc, &[], b"").status, 200);
    assert_eq!(http(addr, "GET", "/rooms/demo", &[], b"").status, 404);
    let end = Instant::now() + Duration::from_secs(3);
    while sessions(&*backend) > 0 && Instant::now() < end {
        drive(&mut clients, Duration::from_millis(50), |_| false);
    }
    assert_eq!(sessions(&*backend), 0, "the engine still has sessions");
    server.shutdown();
}

fn engine2() -> EngineHandle {
    Engine::start(EngineConfig {
        shards: Some(2),
        pin: false,
        ..EngineConfig::default()
    })
    .unwrap()
}

#[test]
fn whip_whep_in_process() {
    let engine = engine2();
    publish_view_delete(Arc::new(InProcessBackend::new(engine.clone())));
    engine.shutdown();
}

#[test]
fn client_errors_get_4xx_with_reasons() {
    let engine = engine2();
    let backend: Arc<dyn Backend> = Arc::new(InProcessBackend::new(engine.clone()));
    let server = DemoServer::start(
        Arc::clone(&backend),
        DemoConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            token: Some("t0ken".into()),
            max_body: 16 * 1024,
            ..DemoConfig::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let auth = ("Authorization", "Bearer t0ken");

    // A real offer to mutilate.
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .unwrap();
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly);
    let (offer, _pending) = api.apply().unwrap();
    let offer = offer.to_sdp_string();

    let r = http(addr, "POST", "/whip/err", &[SDP], offer.as_bytes());
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("WWW-Authenticate").is_some());
    let r = http(
        addr,
        "POST",
        "/whip/err",
        &[SDP, ("Authorization", "Bearer nope")],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = http(
        addr,
        "POST",
        "/whip/err",
        &[("Content-Type", "text/plain"), auth],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 415);
    assert!(r.body.contains("application/sdp"), "{}", r.body);
    let r = http(addr, "POST", "/whip/err", &[SDP, auth], b"not sdp at all");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("bad SDP"), "{}", r.body);
    // Parses, but the engine refuses it (no ICE credentials).
    let no_ice: String = offer
        .split("\r\n")
        .filter(|l| !l.starts_with("a=ice-"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let r = http(
        addr,
        "POST",
        "/whip/err",
        &[SDP, auth],
        no_ice.trim_end().as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let recv = offer.replace("a=sendonly", "a=recvonly");
    let r = http(addr, "POST", "/whip/err", &[SDP, auth], recv.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.body.contains("must send"), "{}", r.body);
    let big = vec![b'a'; 100 * 1024];
    let r = http(addr, "POST", "/whip/err", &[SDP, auth], &big);
    assert_eq!(r.status, 413, "{}", r.body);
    let r = http(
        addr,
        "POST",
        "/whip/no%20spaces",
        &[SDP, auth],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 400);
    let r = http(
        addr,
        "POST",
        "/whip/err?shard=7",
        &[SDP, auth],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("shard"), "{}", r.body);
    // Nothing was left behind by the failures.
    assert_eq!(http(addr, "GET", "/rooms/err", &[], b"").status, 404);
    assert_eq!(sessions(&*backend), 0);

    // WHEP: unknown room, unknown publisher, wrong direction.
    let (publisher, pub_loc, _) = whip_client(addr, "pub", "/whip/err", &PUB_MEDIA, &[auth]);
    let pub_id = publisher.id().0;
    let r = http(
        addr,
        "POST",
        &format!("/whep/nope/{pub_id}"),
        &[SDP, auth],
        recv.as_bytes(),
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("unknown room"), "{}", r.body);
    let r = http(
        addr,
        "POST",
        "/whep/err/999999",
        &[SDP, auth],
        recv.as_bytes(),
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no publisher"), "{}", r.body);
    let r = http(
        addr,
        "POST",
        &format!("/whep/err/{pub_id}"),
        &[SDP, auth],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("must receive"), "{}", r.body);

    // PATCH (RFC 9725 §4.3): trickle ICE and ICE restart with entity-tag checks.
    const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");
    let trickle = b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50999 typ host\r\na=end-of-candidates\r\n";
    let r = http(addr, "PATCH", &pub_loc, &[FRAG, auth], trickle);
    assert_eq!(r.status, 428, "no If-Match: {}", r.body);
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[FRAG, auth, ("If-Match", "\"stale\"")],
        trickle,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let etag = r
        .header("ETag")
        .expect("412 names the current ETag")
        .to_string();
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[SDP, auth, ("If-Match", &etag)],
        trickle,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[FRAG, auth, ("If-Match", &etag)],
        b"v=0\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[FRAG, auth, ("If-Match", &etag)],
        trickle,
    );
    assert_eq!(r.status, 204, "trickle: {}", r.body);
    // New credentials: an ICE restart, answered with the engine's fragment and a new tag.
    let restart = b"a=ice-ufrag:n3wU\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50998 typ host\r\n";
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[FRAG, auth, ("If-Match", "*")],
        restart,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let ours = rtc_core::sdp::IceFragment::parse(&r.body).expect("the answer is a fragment");
    assert!(
        ours.credentials().is_some(),
        "new engine credentials: {}",
        r.body
    );
    assert!(
        ours.end_of_candidates() && ours.candidates().count() > 0,
        "{}",
        r.body
    );
    let new_tag = r.header("ETag").expect("a new ETag").to_string();
    assert_ne!(new_tag, etag);
    // The old tag names the previous ICE session now.
    let r = http(
        addr,
        "PATCH",
        &pub_loc,
        &[FRAG, auth, ("If-Match", &etag)],
        trickle,
    );
    assert_eq!(r.status, 412, "{}", r.body);
    let r = http(
        addr,
        "PATCH",
        "/whip/err",
        &[FRAG, auth, ("If-Match", "*")],
        trickle,
    );
    assert_eq!(r.status, 405);
    let r = http(
        addr,
        "PATCH",
        "/whip/err/0000",
        &[FRAG, auth, ("If-Match", "*")],
        trickle,
    );
    assert_eq!(r.status, 404);
    // OPTIONS answers CORS; DELETE needs the token.
    let r = http(addr, "OPTIONS", "/whip/err", &[], b"");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(r.header("Accept-Post"), Some("application/sdp"));
    assert!(
        r.header("Access-Control-Allow-Headers")
            .unwrap()
            .contains("Authorization")
    );
    assert_eq!(http(addr, "DELETE", &pub_loc, &[], b"").status, 401);
    assert_eq!(http(addr, "DELETE", &pub_loc, &[auth], b"").status, 200);
    assert_eq!(sessions(&*backend), 0);
    // Malformed HTTP.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    // The page is served.
    let r = http(addr, "GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/app.js"));
    assert_eq!(http(addr, "GET", "/app.js", &[], b"").status, 200);
    assert_eq!(http(addr, "GET", "/style.css", &[], b"").status, 200);
    drop(publisher);
    server.shutdown();
    engine.shutdown();
}

// ---- the control backend against the engine's control server ------------------------

#[test]
fn whip_whep_over_the_control_socket() {
    let engine = engine2();
    let hub = EventHub::new(1024).unwrap();
    let path = std::env::temp_dir().join(format!("rtc-demo-test-{}.sock", std::process::id()));
    let handler = EngineControl::new(engine.clone(), hub.clone());
    let mut server =
        ControlServer::bind_with_events(ServerConfig::new(&path), handler.clone(), hub).unwrap();
    let backend = ControlBackend::connect(&path).expect("control backend connects");
    assert_eq!(backend.shard_count(), 2);
    publish_view_delete(Arc::new(backend));
    server.shutdown();
    handler.shutdown();
    engine.shutdown();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn control_backend_reconnects_after_the_daemon_restarts() {
    let engine = engine2();
    let path = std::env::temp_dir().join(format!("rtc-demo-reconnect-{}.sock", std::process::id()));
    let serve = || {
        let hub = EventHub::new(1024).unwrap();
        let handler = EngineControl::new(engine.clone(), hub.clone());
        let server =
            ControlServer::bind_with_events(ServerConfig::new(&path), handler.clone(), hub)
                .unwrap();
        (server, handler)
    };
    let (mut server, handler) = serve();
    let backend = ControlBackend::connect(&path).expect("control backend connects");
    backend.list_rooms().expect("a request before the restart");
    // The daemon restarts on the same path.
    server.shutdown();
    handler.shutdown();
    drop(server);
    let (mut server, handler) = serve();
    let rooms = backend.list_rooms();
    assert!(
        rooms.is_ok(),
        "the next request after the restart: {rooms:?}"
    );
    assert!(backend.stats().is_ok());
    server.shutdown();
    handler.shutdown();
    engine.shutdown();
    let _ = std::fs::remove_file(&path);
}
