use super::routes::token_matches;
use super::*;
use crate::demo::backend::{
    BackendError, BackendRoom, Created, Forwarded, SessionRequest, StatsSummary, Subscription,
};
use crate::demo::http::Response;
use std::sync::atomic::AtomicU64;

/// Records calls; answers every offer with a fixed text.
#[derive(Default)]
struct Fake {
    next: AtomicU64,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn shard_count(&self) -> usize {
        2
    }
    fn create_session(&self, req: SessionRequest<'_>) -> Result<Created, BackendError> {
        let SessionRequest { room, offer, shard } = req;
        if offer.contains("refuse") {
            return Err(BackendError::BadRequest("refused".into()));
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.log(format!("create {room} {id} {shard:?}"));
        Ok(Created {
            session: id,
            shard: shard.unwrap_or(0),
            answer: format!("answer-{id}"),
        })
    }
    fn publish(&self, room: &str, session: u64) -> Result<(), BackendError> {
        self.log(format!("publish {room} {session}"));
        Ok(())
    }
    fn subscribe(&self, sub: Subscription<'_>) -> Result<Vec<Forwarded>, BackendError> {
        let Subscription {
            room,
            subscriber,
            publisher,
        } = sub;
        self.log(format!("subscribe {room} {subscriber} {publisher}"));
        Ok(vec![Forwarded {
            track: "0".into(),
            kind: Kind::Video,
        }])
    }
    fn ice_fragment(&self, session: u64, fragment: &str) -> Result<Option<String>, BackendError> {
        self.log(format!("ice {session}"));
        Ok(fragment
            .contains("a=ice-pwd")
            .then(|| "a=ice-ufrag:eng2\r\na=ice-pwd:0123456789012345678901\r\n".to_string()))
    }
    fn request_keyframe(&self, publisher: u64) -> Result<(), BackendError> {
        self.log(format!("keyframe {publisher}"));
        Ok(())
    }
    fn close(&self, session: u64) -> Result<(), BackendError> {
        self.log(format!("close {session}"));
        Ok(())
    }
    fn list_rooms(&self) -> Result<Vec<BackendRoom>, BackendError> {
        Ok(Vec::new())
    }
    fn stats(&self) -> Result<StatsSummary, BackendError> {
        Ok(StatsSummary {
            backend: "fake",
            shards: Vec::new(),
        })
    }
    fn next_event(&self, timeout: Duration) -> Option<BackendEvent> {
        std::thread::sleep(timeout);
        None
    }
}

fn shared(token: Option<&str>) -> (Arc<Fake>, Shared) {
    let fake = Arc::new(Fake::default());
    let s = Shared {
        backend: fake.clone(),
        cfg: DemoConfig {
            token: token.map(str::to_owned),
            ..DemoConfig::default()
        },
        state: Mutex::new(State::default()),
        stop: AtomicBool::new(false),
    };
    (fake, s)
}

const SEND: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n";

fn req(method: &str, path: &str, ct: Option<&str>, body: &str) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut headers = Vec::new();
    if let Some(ct) = ct {
        headers.push(("content-type".to_string(), ct.to_string()));
    }
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn whip_whep_delete_and_placement() {
    let (fake, s) = shared(None);
    let sdp = Some("application/sdp");
    let a = route(&s, &req("POST", "/whip/lobby", sdp, SEND));
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.body, b"answer-1");
    assert_eq!(header(&a, "content-type"), Some("application/sdp"));
    let loc_a = header(&a, "location").unwrap().to_owned();
    assert!(
        loc_a.starts_with("/whip/lobby/") && loc_a.len() == 12 + 32,
        "{loc_a}"
    );
    let b = route(&s, &req("POST", "/whip/lobby", sdp, SEND));
    assert_eq!(b.status, 201);
    // Round-robin: the two publishers are on different shards.
    assert_eq!(header(&a, "x-shard"), Some("0"));
    assert_eq!(header(&b, "x-shard"), Some("1"));

    let recv = SEND.replace("sendonly", "recvonly");
    let v = route(&s, &req("POST", "/whep/lobby/1", sdp, &recv));
    assert_eq!(v.status, 201);
    // The viewer of the shard-0 publisher goes to shard 1.
    assert_eq!(header(&v, "x-shard"), Some("1"));
    let loc_v = header(&v, "location").unwrap().to_owned();
    assert!(loc_v.starts_with("/whep/lobby/1/"));

    let view = s.state().view("lobby").unwrap();
    assert_eq!(
        view.publishers.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(view.publishers[0].kinds, vec![Kind::Audio, Kind::Video]);
    assert_eq!(view.viewers.len(), 1);
    assert_eq!(view.viewers[0].publisher, 1);

    // Connected viewer → keyframe request to its publisher.
    handle_event(&s, BackendEvent::Connected(3));
    assert!(s.state().view("lobby").unwrap().viewers[0].connected);

    // The publisher leaves: its viewer is closed too.
    assert_eq!(route(&s, &req("DELETE", &loc_a, None, "")).status, 200);
    assert_eq!(route(&s, &req("DELETE", &loc_a, None, "")).status, 404);
    let view = s.state().view("lobby").unwrap();
    assert_eq!(view.publishers.len(), 1);
    assert!(view.viewers.is_empty());
    // The engine reports the other publisher closed: the room empties.
    handle_event(&s, BackendEvent::Closed(2));
    assert!(s.state().view("lobby").is_none());
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            "create lobby 1 Some(0)",
            "publish lobby 1",
            "create lobby 2 Some(1)",
            "publish lobby 2",
            "create lobby 3 Some(1)",
            "subscribe lobby 3 1",
            "keyframe 1",
            "close 3",
            "close 1",
        ]
    );
}

#[test]
fn client_errors() {
    let (_fake, s) = shared(None);
    let sdp = Some("application/sdp");
    let st = |r: Response| (r.status, String::from_utf8_lossy(&r.body).into_owned());
    assert_eq!(
        st(route(
            &s,
            &req("POST", "/whip/lobby", Some("text/plain"), SEND)
        ))
        .0,
        415
    );
    assert_eq!(
        st(route(&s, &req("POST", "/whip/lobby", None, SEND))).0,
        415
    );
    let (code, why) = st(route(&s, &req("POST", "/whip/lobby", sdp, "hello")));
    assert_eq!(code, 400);
    assert!(why.contains("bad SDP"), "{why}");
    let recv = SEND.replace("sendonly", "recvonly");
    let (code, why) = st(route(&s, &req("POST", "/whip/lobby", sdp, &recv)));
    assert_eq!(code, 400);
    assert!(why.contains("must send"), "{why}");
    assert_eq!(
        st(route(&s, &req("POST", "/whip/bad%20room", sdp, SEND))).0,
        400
    );
    assert_eq!(
        st(route(&s, &req("POST", "/whip/lobby?shard=2", sdp, SEND))).0,
        400
    );
    let refused = format!("{SEND}a=refuse\r\n");
    assert_eq!(
        st(route(&s, &req("POST", "/whip/lobby", sdp, &refused))).0,
        400
    );
    // Failed set-ups leave no room behind.
    assert!(s.state().rooms.is_empty());
    let (code, why) = st(route(&s, &req("POST", "/whep/nope/1", sdp, &recv)));
    assert_eq!(code, 404);
    assert!(why.contains("unknown room"), "{why}");
    assert_eq!(
        route(&s, &req("POST", "/whip/lobby", sdp, SEND)).status,
        201
    );
    let (code, why) = st(route(&s, &req("POST", "/whep/lobby/99", sdp, &recv)));
    assert_eq!(code, 404);
    assert!(why.contains("no publisher 99"), "{why}");
    // Neither a session id nor a WHIP resource id of this room.
    assert_eq!(
        st(route(&s, &req("POST", "/whep/lobby/x", sdp, &recv))).0,
        404
    );
    let (code, why) = st(route(&s, &req("POST", "/whep/lobby/1", sdp, SEND)));
    assert_eq!(code, 400, "{why}");
    let (code, why) = st(route(
        &s,
        &req("POST", "/whep/lobby/1?max_layer=7", sdp, &recv),
    ));
    assert_eq!(code, 400);
    assert!(why.contains("max_layer"), "{why}");
    // A backend without layer control refuses the parameter.
    let (code, why) = st(route(
        &s,
        &req("POST", "/whep/lobby/1?max_layer=1", sdp, &recv),
    ));
    assert_eq!(code, 400);
    assert!(why.contains("cannot limit layers"), "{why}");
    assert_eq!(
        st(route(&s, &req("PATCH", "/whip/lobby/abc", None, ""))).0,
        404
    );
    assert_eq!(st(route(&s, &req("PATCH", "/whip/lobby", None, ""))).0, 405);
    assert_eq!(st(route(&s, &req("GET", "/whip/lobby", None, ""))).0, 405);
    assert_eq!(
        st(route(&s, &req("DELETE", "/whip/lobby/abc", None, ""))).0,
        404
    );
    assert_eq!(st(route(&s, &req("GET", "/rooms/nope", None, ""))).0, 404);
    assert_eq!(st(route(&s, &req("GET", "/nope", None, ""))).0, 404);
    assert_eq!(st(route(&s, &req("PUT", "/", None, ""))).0, 405);
    let o = route(&s, &req("OPTIONS", "/whip/lobby", None, ""));
    assert_eq!(o.status, 204);
    assert_eq!(header(&o, "accept-post"), Some("application/sdp"));
    assert_eq!(header(&o, "link"), None, "no ICE servers configured");
}

const FRAG: &str = "application/trickle-ice-sdpfrag";
const TRICKLE: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
    a=candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host\r\n";
const RESTART: &str = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n";

fn with(mut r: Request, name: &str, value: &str) -> Request {
    r.headers.push((name.into(), value.into()));
    r
}

#[test]
fn patch_trickles_and_restarts_ice_with_entity_tags() {
    let (fake, s) = shared(None);
    let created = route(
        &s,
        &req("POST", "/whip/lobby", Some("application/sdp"), SEND),
    );
    assert_eq!(created.status, 201);
    assert_eq!(header(&created, "accept-patch"), Some(FRAG));
    let loc = header(&created, "location").unwrap().to_string();
    let etag = header(&created, "etag").unwrap().to_string();
    let patch = |ct: &str, body: &str| req("PATCH", &loc, Some(ct), body);

    assert_eq!(route(&s, &patch(FRAG, TRICKLE)).status, 428);
    let stale = route(&s, &with(patch(FRAG, TRICKLE), "if-match", "\"nope\""));
    assert_eq!(stale.status, 412);
    assert_eq!(header(&stale, "etag"), Some(etag.as_str()));
    assert_eq!(
        route(
            &s,
            &with(patch("application/sdp", TRICKLE), "if-match", &etag)
        )
        .status,
        415
    );
    assert_eq!(
        route(&s, &with(patch(FRAG, "garbage"), "if-match", &etag)).status,
        400
    );
    assert_eq!(
        route(&s, &with(patch(FRAG, TRICKLE), "if-match", &etag)).status,
        204
    );
    let r = route(&s, &with(patch(FRAG, RESTART), "if-match", "*"));
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-type"), Some(FRAG));
    let new_tag = header(&r, "etag").unwrap().to_string();
    assert_ne!(new_tag, etag);
    assert_eq!(
        route(&s, &with(patch(FRAG, TRICKLE), "if-match", &etag)).status,
        412
    );
    assert_eq!(
        route(&s, &with(patch(FRAG, TRICKLE), "if-match", &new_tag)).status,
        204
    );
    let log = fake.calls.lock().unwrap().join("\n");
    assert_eq!(log.matches("ice ").count(), 3, "{log}");
}

#[test]
fn ice_servers_are_advertised_in_link_headers() {
    let (_fake, mut s) = shared(None);
    s.cfg.ice_servers = vec![
        "stun:stun.example.net:3478".into(),
        "turn:turn.example.net?transport=udp|user|pa\"ss".into(),
    ];
    let o = route(&s, &req("OPTIONS", "/whip/lobby", None, ""));
    let link = header(&o, "link").expect("Link on OPTIONS").to_string();
    assert_eq!(
        link,
        "<stun:stun.example.net:3478>; rel=\"ice-server\", \
         <turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
         credential=\"pa\\\"ss\"; credential-type=\"password\""
    );
    let created = route(
        &s,
        &req("POST", "/whip/lobby", Some("application/sdp"), SEND),
    );
    assert_eq!(header(&created, "link"), Some(link.as_str()));
    // Sessions are not endpoints: no ICE servers there.
    assert_eq!(
        header(
            &route(&s, &req("OPTIONS", "/whip/lobby/x", None, "")),
            "link"
        ),
        None
    );
}

#[test]
fn bearer_token() {
    let (_fake, s) = shared(Some("sekrit"));
    let mut r = req("POST", "/whip/lobby", Some("application/sdp"), SEND);
    let denied = route(&s, &r);
    assert_eq!(denied.status, 401);
    assert!(header(&denied, "www-authenticate").is_some());
    r.headers
        .push(("authorization".into(), "Bearer wrong".into()));
    assert_eq!(route(&s, &r).status, 401);
    r.headers.pop();
    r.headers
        .push(("authorization".into(), "Bearer sekrit".into()));
    assert_eq!(route(&s, &r).status, 201);
    // The page and listings stay public.
    assert_eq!(route(&s, &req("GET", "/", None, "")).status, 200);
    assert_eq!(route(&s, &req("GET", "/rooms/lobby", None, "")).status, 200);
}

#[test]
fn token_compare_is_constant_time() {
    // By construction (see `token_matches`): the loop runs over the secret only and
    // folds with `subtle`'s constant-time operations. Here: it decides correctly,
    // including for prefixes, extensions and tokens of other lengths.
    assert!(token_matches(b"sekrit", b"sekrit"));
    for bad in [
        &b""[..],
        b"s",
        b"sekri",
        b"sekrit ",
        b"sekrit\0",
        b"Sekrit",
        b"xxxxxx",
    ] {
        assert!(!token_matches(bad, b"sekrit"), "{bad:?}");
    }
    assert!(!token_matches(b"a", b""));
    assert!(token_matches(b"", b""));
}

#[test]
fn room_names() {
    assert!(valid_room("a-b_C9"));
    assert!(!valid_room(""));
    assert!(!valid_room("a b"));
    assert!(!valid_room(&"a".repeat(65)));
}
