//! The demo's HTTP front end: WHIP/WHEP resources, room listings, the page, and the
//! bookkeeping of who publishes and who watches.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc_core::media::MediaKind;
use rtc_core::sdp::{SectionKind, SessionDescription};
use serde::Serialize;

use super::backend::{Backend, BackendError, BackendEvent, Kind};
use super::http::{self, Request, Response};

/// Front-end settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Where to listen (`127.0.0.1:8080` by default; port 0 for an ephemeral port).
    pub http: SocketAddr,
    /// When set, `POST`/`DELETE`/`PATCH` on WHIP/WHEP resources need
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest accepted request body (SDP offer), bytes.
    pub max_body: usize,
    /// How long a connection may take to send its request head (a deadline for the
    /// whole head, not per read), and again its body.
    pub read_timeout: Duration,
    /// Origins (`scheme://host[:port]`) whose pages may use the API besides the
    /// server's own (same-origin pages need nothing); `*` allows any. Requests from
    /// other origins get no CORS permission and, unless `GET`/`HEAD`, a `403`.
    pub allowed_origins: Vec<String>,
    /// Host names the server answers for besides IP addresses and `localhost` (other
    /// `Host` values get `421`, which stops DNS-rebinding pages); `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests whose handler (backend calls) runs at once; others wait up to 5 s,
    /// then get `503`.
    pub max_in_flight: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body: 64 * 1024,
            read_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: 4096,
            max_in_flight: 32,
        }
    }
}

/// A publisher as listed by `GET /rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublisherView {
    /// Its session id (what `POST /whep/{room}/{id}` takes).
    pub id: u64,
    /// The shard its session runs on.
    pub shard: usize,
    /// The kinds it sends.
    pub kinds: Vec<Kind>,
    /// Whether ICE and DTLS are up.
    pub connected: bool,
    /// Seconds since it started publishing.
    pub age_s: u64,
}

/// A viewer (WHEP session) as listed by `GET /rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewerView {
    /// Its session id.
    pub id: u64,
    /// The shard its session runs on.
    pub shard: usize,
    /// The publisher it watches.
    pub publisher: u64,
    /// Whether ICE and DTLS are up.
    pub connected: bool,
}

/// The body of `GET /rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomView {
    /// The room name.
    pub room: String,
    /// Publishers by id.
    pub publishers: Vec<PublisherView>,
    /// Viewers by id.
    pub viewers: Vec<ViewerView>,
}

struct Publisher {
    shard: usize,
    kinds: Vec<Kind>,
    connected: bool,
    since: Instant,
    resource: String,
}

struct Viewer {
    shard: usize,
    publisher: u64,
    connected: bool,
    resource: String,
}

#[derive(Default)]
struct Room {
    publishers: BTreeMap<u64, Publisher>,
    viewers: BTreeMap<u64, Viewer>,
    next_pub_shard: usize,
    next_view_shard: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Whip,
    Whep,
}

struct Resource {
    role: Role,
    room: String,
    session: u64,
}

#[derive(Default)]
struct State {
    rooms: BTreeMap<String, Room>,
    resources: HashMap<String, Resource>,
}

impl State {
    /// Removes a session (publisher or viewer); returns the viewers of a removed
    /// publisher (to close them).
    fn remove_session(&mut self, room: &str, session: u64) -> Vec<u64> {
        let Some(r) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut orphans = Vec::new();
        if let Some(p) = r.publishers.remove(&session) {
            self.resources.remove(&p.resource);
            let gone: Vec<u64> = r
                .viewers
                .iter()
                .filter(|(_, v)| v.publisher == session)
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some(v) = r.viewers.remove(&id) {
                    self.resources.remove(&v.resource);
                }
                orphans.push(id);
            }
        }
        if let Some(v) = r.viewers.remove(&session) {
            self.resources.remove(&v.resource);
        }
        if r.publishers.is_empty() && r.viewers.is_empty() {
            self.rooms.remove(room);
        }
        orphans
    }

    fn find_session(&self, session: u64) -> Option<String> {
        self.rooms
            .iter()
            .find(|(_, r)| r.publishers.contains_key(&session) || r.viewers.contains_key(&session))
            .map(|(name, _)| name.clone())
    }

    fn view(&self, name: &str) -> Option<RoomView> {
        let r = self.rooms.get(name)?;
        Some(RoomView {
            room: name.to_owned(),
            publishers: r
                .publishers
                .iter()
                .map(|(id, p)| PublisherView {
                    id: *id,
                    shard: p.shard,
                    kinds: p.kinds.clone(),
                    connected: p.connected,
                    age_s: p.since.elapsed().as_secs(),
                })
                .collect(),
            viewers: r
                .viewers
                .iter()
                .map(|(id, v)| ViewerView {
                    id: *id,
                    shard: v.shard,
                    publisher: v.publisher,
                    connected: v.connected,
                })
                .collect(),
        })
    }
}

struct Shared {
    backend: Arc<dyn Backend>,
    cfg: DemoConfig,
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation of the state completes before the lock is released.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running demo front end. Dropping it does not stop it: call [`DemoServer::shutdown`].
pub struct DemoServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    http: Option<http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DemoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoServer")
            .field("addr", &self.addr)
            .field("backend", &self.shared.backend.name())
            .finish()
    }
}

impl DemoServer {
    /// Binds `cfg.http` and serves in background threads: the HTTP server (hyper on
    /// a one-thread tokio runtime, handlers on its blocking pool; see [`http`] for its
    /// limits) and an engine-event reader.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn start(backend: Arc<dyn Backend>, cfg: DemoConfig) -> io::Result<DemoServer> {
        let listener = TcpListener::bind(cfg.http)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            backend,
            cfg,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let cfg = &shared.cfg;
        let policy = http::Policy {
            max_body: cfg.max_body,
            read_timeout: cfg.read_timeout,
            max_connections: cfg.max_connections,
            max_in_flight: cfg.max_in_flight,
            allowed_origins: cfg.allowed_origins.clone(),
            allowed_hosts: cfg.allowed_hosts.clone(),
        };
        let s = Arc::clone(&shared);
        let app: http::App = Arc::new(move |req: Request| route(&s, &req));
        let server = http::Server::start(listener, policy, app)?;
        let s = Arc::clone(&shared);
        let events = std::thread::Builder::new()
            .name("demo-events".into())
            .spawn(move || event_loop(&s));
        let events = match events {
            Ok(t) => t,
            Err(e) => {
                server.stop();
                return Err(e);
            }
        };
        Ok(DemoServer {
            shared,
            addr,
            http: Some(server),
            threads: vec![events],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The room as `GET /rooms/{room}` would list it.
    pub fn room(&self, name: &str) -> Option<RoomView> {
        self.shared.state().view(name)
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    /// Stops accepting, closes every session the demo created and joins its threads.
    pub fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.http.take() {
            h.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let sessions: Vec<u64> = self
            .shared
            .state()
            .resources
            .values()
            .map(|r| r.session)
            .collect();
        for s in sessions {
            let _ = self.shared.backend.close(s);
        }
    }
}

fn event_loop(shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(ev) = shared.backend.next_event(Duration::from_millis(200)) else {
            continue;
        };
        handle_event(shared, ev);
    }
}

fn handle_event(shared: &Shared, ev: BackendEvent) {
    match ev {
        BackendEvent::Connected(id) => {
            let mut keyframe_from = None;
            {
                let mut st = shared.state();
                for r in st.rooms.values_mut() {
                    if let Some(p) = r.publishers.get_mut(&id) {
                        p.connected = true;
                    }
                    if let Some(v) = r.viewers.get_mut(&id) {
                        v.connected = true;
                        keyframe_from = Some(v.publisher);
                    }
                }
            }
            // A viewer that just connected needs a keyframe to start decoding; the one
            // the engine requested when the leg was added may have gone by before the
            // viewer could receive it.
            if let Some(p) = keyframe_from {
                let _ = shared.backend.request_keyframe(p);
            }
        }
        BackendEvent::Closed(id) => {
            let orphans = {
                let mut st = shared.state();
                let Some(room) = st.find_session(id) else {
                    return;
                };
                st.remove_session(&room, id)
            };
            for o in orphans {
                let _ = shared.backend.close(o);
            }
        }
    }
}

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// Room names: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn route(shared: &Shared, req: &Request) -> Response {
    let segs: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let m = req.method.as_str();
    match (m, segs.as_slice()) {
        ("GET" | "HEAD", []) => Response::new(200, "text/html; charset=utf-8", INDEX_HTML),
        ("GET" | "HEAD", ["app.js"]) => {
            Response::new(200, "text/javascript; charset=utf-8", APP_JS)
        }
        ("GET" | "HEAD", ["style.css"]) => Response::new(200, "text/css; charset=utf-8", STYLE_CSS),
        ("GET", ["rooms"]) => list_rooms(shared),
        ("GET", ["rooms", room]) => match shared.state().view(room) {
            Some(v) => Response::json(200, &v).with("Cache-Control", "no-store"),
            None => Response::text(404, format!("unknown room {room:?}")),
        },
        ("GET", ["stats"]) => match shared.backend.stats() {
            Ok(s) => Response::json(200, &s).with("Cache-Control", "no-store"),
            Err(e) => error_response(&e),
        },
        ("OPTIONS", ["whip", ..] | ["whep", ..]) => options(&segs),
        ("OPTIONS", _) => Response::empty(204)
            .with("Access-Control-Allow-Methods", "GET, OPTIONS")
            .with("Allow", "GET, OPTIONS"),
        (_, ["whip", ..] | ["whep", ..]) => {
            if let Some(denied) = check_token(shared, req) {
                return denied;
            }
            match (m, segs.as_slice()) {
                ("POST", ["whip", room]) => whip_post(shared, req, room),
                ("POST", ["whep", room, publisher]) => whep_post(shared, req, room, publisher),
                ("DELETE", ["whip", room, res]) => delete(shared, Role::Whip, room, res),
                ("DELETE", ["whep", room, _, res]) => delete(shared, Role::Whep, room, res),
                ("PATCH", ["whip", _, _] | ["whep", _, _, _]) => Response::text(
                    405,
                    "trickle ICE and ICE restarts are not supported: the engine is ICE-lite \
                     and its answer carries all its candidates; send a new offer instead",
                )
                .with("Allow", "DELETE, OPTIONS"),
                (_, ["whip", _]) | (_, ["whep", _, _]) => {
                    Response::text(405, format!("{m} not allowed here; POST an SDP offer"))
                        .with("Allow", "POST, OPTIONS")
                }
                (_, ["whip", _, _]) | (_, ["whep", _, _, _]) => {
                    Response::text(405, format!("{m} not allowed on a session; DELETE ends it"))
                        .with("Allow", "DELETE, PATCH, OPTIONS")
                }
                _ => Response::text(404, "no such resource"),
            }
        }
        ("GET" | "HEAD", _) => Response::text(404, "not found"),
        _ => Response::text(405, format!("{m} not allowed here")).with("Allow", "GET, OPTIONS"),
    }
}

fn options(segs: &[&str]) -> Response {
    let methods = match segs.len() {
        2 if segs.first() == Some(&"whip") => "POST, OPTIONS",
        3 if segs.first() == Some(&"whep") => "POST, OPTIONS",
        _ => "DELETE, PATCH, OPTIONS",
    };
    Response::empty(204)
        .with("Allow", methods)
        .with("Access-Control-Allow-Methods", methods)
        .with(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, If-Match",
        )
        .with("Access-Control-Max-Age", "600")
        .with("Accept-Post", "application/sdp")
}

fn check_token(shared: &Shared, req: &Request) -> Option<Response> {
    let want = shared.cfg.token.as_deref()?;
    let got = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if got.is_some_and(|g| token_matches(g.as_bytes(), want.as_bytes())) {
        None
    } else {
        Some(
            Response::text(401, "missing or wrong bearer token")
                .with("WWW-Authenticate", "Bearer realm=\"rtc-demo\""),
        )
    }
}

/// Whether `got` equals the secret `want`, in time that depends only on `want`'s length:
/// every byte of `want` is compared (against `got`'s byte or a stand-in past its end),
/// with no early exit on a mismatch or a length difference.
fn token_matches(got: &[u8], want: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let mut same = (got.len() as u64).ct_eq(&(want.len() as u64));
    for (i, w) in want.iter().enumerate() {
        let g = got.get(i).copied().unwrap_or(!*w);
        same &= g.ct_eq(w);
    }
    same.into()
}

fn error_response(e: &BackendError) -> Response {
    let status = match e {
        BackendError::BadRequest(_) => 400,
        BackendError::NotFound(_) => 404,
        BackendError::Unavailable(_) => 503,
        _ => 502,
    };
    Response::text(status, e)
}

/// The audio/video sections of an offer with whether the client sends and receives on
/// them.
fn offer_media(req: &Request) -> Result<Vec<(Kind, bool, bool)>, Response> {
    let ct = req.header("content-type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Err(Response::text(
            415,
            format!("Content-Type must be application/sdp, got {ct:?}"),
        )
        .with("Accept-Post", "application/sdp"));
    }
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| Response::text(400, "the offer is not UTF-8"))?;
    let sdp = SessionDescription::parse(text)
        .map_err(|e| Response::text(400, format!("bad SDP offer: {e}")))?;
    let media: Vec<(Kind, bool, bool)> = sdp
        .media
        .iter()
        .filter(|m| m.port != 0)
        .filter_map(|m| {
            let kind = match m.kind {
                SectionKind::Media(MediaKind::Audio) => Kind::Audio,
                SectionKind::Media(MediaKind::Video) => Kind::Video,
                _ => return None,
            };
            let d = sdp.direction_for(m);
            Some((kind, d.can_send(), d.can_recv()))
        })
        .collect();
    if media.is_empty() {
        return Err(Response::text(
            400,
            "the offer has no audio or video section",
        ));
    }
    Ok(media)
}

fn new_resource_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn shard_hint(shared: &Shared, req: &Request) -> Result<Option<usize>, Response> {
    let Some(v) = req.query_param("shard") else {
        return Ok(None);
    };
    let n = shared.backend.shard_count();
    match v.parse::<usize>() {
        Ok(s) if s < n => Ok(Some(s)),
        _ => Err(Response::text(
            400,
            format!("shard must be a number below {n}, got {v:?}"),
        )),
    }
}

fn created(location: String, answer: String, session: u64, shard: usize, res: &str) -> Response {
    Response::new(201, "application/sdp", answer)
        .with("Location", location)
        .with("ETag", format!("\"{res}\""))
        .with("X-Session-Id", session.to_string())
        .with("X-Shard", shard.to_string())
}

fn whip_post(shared: &Shared, req: &Request, room: &str) -> Response {
    if !valid_room(room) {
        return Response::text(400, "room names are 1-64 of A-Z a-z 0-9 _ -");
    }
    let media = match offer_media(req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut kinds: Vec<Kind> = media.iter().filter(|m| m.1).map(|m| m.0).collect();
    kinds.dedup();
    if kinds.is_empty() {
        return Response::text(
            400,
            "a WHIP offer must send media (sendonly or sendrecv audio/video)",
        );
    }
    let hint = match shard_hint(shared, req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    // Placement: publishers of a room go round-robin over the shards, so a room's
    // publishers sit on different cores and forwarding crosses shards.
    let n = shared.backend.shard_count().max(1);
    let shard = hint.unwrap_or_else(|| {
        let mut st = shared.state();
        let r = st.rooms.entry(room.to_owned()).or_default();
        let s = r.next_pub_shard % n;
        r.next_pub_shard = r.next_pub_shard.wrapping_add(1);
        s
    });
    let body = String::from_utf8_lossy(&req.body);
    let c = match shared.backend.create_session(room, &body, Some(shard)) {
        Ok(c) => c,
        Err(e) => {
            drop_empty_room(shared, room);
            return error_response(&e);
        }
    };
    if let Err(e) = shared.backend.publish(room, c.session) {
        let _ = shared.backend.close(c.session);
        drop_empty_room(shared, room);
        return error_response(&e);
    }
    let res = new_resource_id();
    {
        let mut st = shared.state();
        st.resources.insert(
            res.clone(),
            Resource {
                role: Role::Whip,
                room: room.to_owned(),
                session: c.session,
            },
        );
        st.rooms
            .entry(room.to_owned())
            .or_default()
            .publishers
            .insert(
                c.session,
                Publisher {
                    shard: c.shard,
                    kinds,
                    connected: false,
                    since: Instant::now(),
                    resource: res.clone(),
                },
            );
    }
    created(
        format!("/whip/{room}/{res}"),
        c.answer,
        c.session,
        c.shard,
        &res,
    )
}

fn drop_empty_room(shared: &Shared, room: &str) {
    let mut st = shared.state();
    if st
        .rooms
        .get(room)
        .is_some_and(|r| r.publishers.is_empty() && r.viewers.is_empty())
    {
        st.rooms.remove(room);
    }
}

fn whep_post(shared: &Shared, req: &Request, room: &str, publisher: &str) -> Response {
    // The publisher is named by its session id (as listed in `/rooms/{room}`) or by
    // the resource id of its WHIP Location (all a plain WHIP client knows).
    let by_resource = {
        let st = shared.state();
        st.resources
            .get(publisher)
            .filter(|r| r.role == Role::Whip && r.room == room)
            .map(|r| r.session)
    };
    let Some(publisher) = by_resource.or_else(|| publisher.parse::<u64>().ok()) else {
        return Response::text(
            404,
            format!(
                "no publisher {publisher:?} in room {room:?} (use a session id or a WHIP resource id)"
            ),
        );
    };
    let media = match offer_media(req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !media.iter().any(|m| m.2) {
        return Response::text(
            400,
            "a WHEP offer must receive media (recvonly audio/video)",
        );
    }
    let hint = match shard_hint(shared, req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    // `?max_layer=0|1|2`: the viewer receives at most this simulcast layer.
    let max_layer = match req.query_param("max_layer") {
        None => None,
        Some(v) => match v.parse::<u8>() {
            Ok(l) if l <= 2 => Some(l),
            _ => {
                return Response::text(400, format!("max_layer must be 0, 1 or 2 (got {v:?})"));
            }
        },
    };
    // Placement: a viewer goes to a shard other than its publisher's (round-robin over
    // the others), so every WHEP leg exercises cross-shard forwarding when there are
    // several shards.
    let n = shared.backend.shard_count().max(1);
    let shard = {
        let mut st = shared.state();
        let Some(r) = st.rooms.get_mut(room) else {
            return Response::text(404, format!("unknown room {room:?}"));
        };
        let Some(p) = r.publishers.get(&publisher) else {
            return Response::text(404, format!("no publisher {publisher} in room {room:?}"));
        };
        let pub_shard = p.shard;
        hint.unwrap_or_else(|| {
            if n == 1 {
                return 0;
            }
            let k = r.next_view_shard % (n - 1);
            r.next_view_shard = r.next_view_shard.wrapping_add(1);
            (pub_shard + 1 + k) % n
        })
    };
    let body = String::from_utf8_lossy(&req.body);
    let c = match shared.backend.create_session(room, &body, Some(shard)) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let legs = match shared.backend.subscribe(room, c.session, publisher) {
        Ok(l) => l,
        Err(e) => {
            let _ = shared.backend.close(c.session);
            return error_response(&e);
        }
    };
    if let Some(l) = max_layer
        && let Err(e) = shared.backend.set_max_layer(c.session, l)
    {
        let _ = shared.backend.close(c.session);
        return error_response(&e);
    }
    if legs.is_empty() {
        let _ = shared.backend.close(c.session);
        return Response::text(
            400,
            "none of the offer's receiving sections matches a track of that publisher",
        );
    }
    let answer = c.answer.clone();
    let res = new_resource_id();
    {
        let mut st = shared.state();
        // The publisher may have left meanwhile.
        let Some(r) = st
            .rooms
            .get_mut(room)
            .filter(|r| r.publishers.contains_key(&publisher))
        else {
            drop(st);
            let _ = shared.backend.close(c.session);
            return Response::text(404, format!("publisher {publisher} left room {room:?}"));
        };
        r.viewers.insert(
            c.session,
            Viewer {
                shard: c.shard,
                publisher,
                connected: false,
                resource: res.clone(),
            },
        );
        st.resources.insert(
            res.clone(),
            Resource {
                role: Role::Whep,
                room: room.to_owned(),
                session: c.session,
            },
        );
    }
    created(
        format!("/whep/{room}/{publisher}/{res}"),
        answer,
        c.session,
        c.shard,
        &res,
    )
}

fn delete(shared: &Shared, role: Role, room: &str, res: &str) -> Response {
    let (session, orphans) = {
        let mut st = shared.state();
        let Some(r) = st.resources.get(res) else {
            return Response::text(404, "no such session (already ended?)");
        };
        if r.role != role || r.room != room {
            return Response::text(404, "no such session in this room");
        }
        let session = r.session;
        (session, st.remove_session(room, session))
    };
    for o in orphans {
        let _ = shared.backend.close(o);
    }
    match shared.backend.close(session) {
        // Already gone in the engine (e.g. failed): the resource is gone either way.
        Ok(()) | Err(BackendError::NotFound(_)) => Response::empty(200),
        Err(e) => error_response(&e),
    }
}

fn list_rooms(shared: &Shared) -> Response {
    #[derive(Serialize)]
    struct Entry {
        room: String,
        publishers: usize,
        viewers: usize,
    }
    let st = shared.state();
    let v: Vec<Entry> = st
        .rooms
        .iter()
        .map(|(name, r)| Entry {
            room: name.clone(),
            publishers: r.publishers.len(),
            viewers: r.viewers.len(),
        })
        .collect();
    Response::json(200, &v).with("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::backend::{BackendRoom, Created, Forwarded, StatsSummary};
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
        fn create_session(
            &self,
            room: &str,
            offer: &str,
            shard: Option<usize>,
        ) -> Result<Created, BackendError> {
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
        fn subscribe(
            &self,
            room: &str,
            subscriber: u64,
            publisher: u64,
        ) -> Result<Vec<Forwarded>, BackendError> {
            self.log(format!("subscribe {room} {subscriber} {publisher}"));
            Ok(vec![Forwarded {
                track: "0".into(),
                kind: Kind::Video,
            }])
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
            405
        );
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
}
