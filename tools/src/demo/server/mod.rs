//! The demo's HTTP front end: WHIP/WHEP resources, room listings, the page, and the
//! bookkeeping of who publishes and who watches.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::backend::{Backend, BackendEvent, Kind};
use super::http::{self, Request};

mod routes;

use routes::route;
pub use routes::valid_room;

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
    /// ICE servers advertised to WHIP/WHEP clients (RFC 9725 §4.6) in `Link` headers of
    /// `OPTIONS` and `201 Created` answers: `URL` (`stun:host:port`) or
    /// `URL|USERNAME|CREDENTIAL` for a TURN server with long-term credentials.
    pub ice_servers: Vec<String>,
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
            ice_servers: Vec::new(),
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
    /// The entity-tag of the resource's ICE session (RFC 9725 §4.3.1), quoted; a new
    /// one after each ICE restart.
    etag: String,
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

#[cfg(test)]
mod tests;
