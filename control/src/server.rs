//! The server half: a Unix-socket listener with one epoll I/O thread and a small pool
//! of worker threads that call the [`ControlHandler`].
//!
//! Each connection has at most one request in the handler at a time (requests of one
//! client are answered in order); different clients are served in parallel by the
//! workers. Events reach subscribed clients through the [`EventHub`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::error::{ControlError, ErrorCode};
use crate::protocol::{
    Event, EventKind, EventsSubscribed, MAX_LINE, Request, RequestId, Response, error_line,
    hello_line, parse_request_line, response_line,
};
use crate::sys::{self, Epoll, EventFd};

/// Identifies one control connection for the lifetime of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client#{}", self.0)
    }
}

/// What the engine implements to serve control requests.
///
/// Calls come from the server's worker threads, several at once for different clients,
/// never two at once for the same client. `events.subscribe`/`events.unsubscribe` are
/// handled by the server and never reach the handler.
pub trait ControlHandler: Send + Sync + 'static {
    /// Serve one request. The returned [`Response`] must fit the request's operation
    /// ([`Response::fits`]); a misfit is reported to the client as `internal`.
    /// A panic is caught and reported as `internal`.
    ///
    /// # Errors
    /// The error is sent to the client as `{"id":..,"error":{..}}`.
    fn handle(&self, client: ClientId, req: Request) -> Result<Response, ControlError>;

    /// The client disconnected (or the server shut down). Called exactly once per
    /// accepted client, after its last `handle` call returned; use it to reap sessions
    /// created with `reap_on_disconnect`.
    fn client_gone(&self, client: ClientId);
}

/// Somewhere to publish events (implemented by [`EventHub`]; a test double can stand in).
pub trait EventSink: Send + Sync {
    /// Publish `event` to every subscriber of its kind; returns how many got it.
    fn publish(&self, event: &Event) -> usize;
}

/// Server settings. Build with [`ServerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path. A stale socket file there is removed; a live one is an error.
    pub path: PathBuf,
    /// File mode of the socket (default `0o600`).
    pub mode: u32,
    /// Group to give the socket file (with e.g. `mode = 0o660`).
    pub group: Option<u32>,
    /// Peer uids allowed to connect (checked with `SO_PEERCRED`; default: our euid and 0).
    pub allowed_uids: Vec<u32>,
    /// Peer groups also allowed, as the peer's primary gid or one of its supplementary
    /// groups (`SO_PEERGROUPS`) (default: none).
    pub allowed_gids: Vec<u32>,
    /// Maximum line length (default [`MAX_LINE`], 1 MiB).
    pub max_line: usize,
    /// Maximum concurrent clients (default 4096); more are refused with `unavailable`.
    pub max_clients: usize,
    /// Worker threads calling the handler (default 4).
    pub workers: usize,
    /// Per-client event queue length in events (default 1024); a subscriber whose
    /// queue overflows is disconnected.
    pub event_queue: usize,
    /// Server name in the hello line.
    pub server_name: String,
}

impl ServerConfig {
    /// Defaults for a socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let me = sys::euid();
        let mut allowed_uids = vec![me];
        if me != 0 {
            allowed_uids.push(0);
        }
        ServerConfig {
            path: path.into(),
            mode: 0o600,
            group: None,
            allowed_uids,
            allowed_gids: Vec::new(),
            max_line: MAX_LINE,
            max_clients: 4096,
            workers: 4,
            event_queue: 1024,
            server_name: concat!("rtc-engine/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Event hub
// ---------------------------------------------------------------------------------------

struct Subscriber {
    id: ClientId,
    kinds: AtomicU32,
    tx: Sender<Arc<[u8]>>,
    rx: Receiver<Arc<[u8]>>,
    notified: AtomicBool,
    overflow: AtomicBool,
}

struct HubInner {
    subs: RwLock<HashMap<ClientId, Arc<Subscriber>>>,
    ready_tx: Sender<ClientId>,
    ready_rx: Receiver<ClientId>,
    wake: EventFd,
    capacity: usize,
}

/// Publishes events to subscribed control clients. Cheap to clone; share it with the
/// engine. Publishing never blocks on a client: each subscriber has a bounded queue and
/// a subscriber whose queue is full is disconnected (`slow_consumer`).
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

impl EventHub {
    /// A hub whose subscribers queue up to `capacity` events each.
    ///
    /// # Errors
    /// When the wake-up eventfd cannot be created.
    pub fn new(capacity: usize) -> io::Result<EventHub> {
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        Ok(EventHub {
            inner: Arc::new(HubInner {
                subs: RwLock::new(HashMap::new()),
                ready_tx,
                ready_rx,
                wake: EventFd::new()?,
                capacity: capacity.max(1),
            }),
        })
    }

    /// Publish `event`; returns the number of subscribers it was queued for.
    /// Serialises the event once, and only when someone subscribes to its kind.
    pub fn publish(&self, event: &Event) -> usize {
        let bit = event.kind().bit();
        let subs = self.inner.subs.read().unwrap_or_else(|p| p.into_inner());
        let mut line: Option<Arc<[u8]>> = None;
        let mut delivered = 0;
        let mut wake = false;
        for s in subs.values() {
            if s.kinds.load(Ordering::Relaxed) & bit == 0 || s.overflow.load(Ordering::Relaxed) {
                continue;
            }
            let l = line.get_or_insert_with(|| Arc::from(event.to_line()));
            match s.tx.try_send(Arc::clone(l)) {
                Ok(()) => delivered += 1,
                Err(TrySendError::Full(_)) => s.overflow.store(true, Ordering::Relaxed),
                Err(TrySendError::Disconnected(_)) => continue,
            }
            if !s.notified.swap(true, Ordering::AcqRel) {
                // The receiver lives in `inner`, so the channel is never disconnected.
                let _ = self.inner.ready_tx.send(s.id);
                wake = true;
            }
        }
        if wake {
            self.inner.wake.notify();
        }
        delivered
    }

    /// Number of subscribed clients.
    pub fn subscribers(&self) -> usize {
        self.inner
            .subs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn subscribe(&self, id: ClientId, kinds: u32) -> Arc<Subscriber> {
        let mut subs = self.inner.subs.write().unwrap_or_else(|p| p.into_inner());
        let s = subs.entry(id).or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::bounded(self.inner.capacity);
            Arc::new(Subscriber {
                id,
                kinds: AtomicU32::new(0),
                tx,
                rx,
                notified: AtomicBool::new(false),
                overflow: AtomicBool::new(false),
            })
        });
        s.kinds.store(kinds, Ordering::Relaxed);
        Arc::clone(s)
    }

    fn unsubscribe(&self, id: ClientId) {
        self.inner
            .subs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

impl EventSink for EventHub {
    fn publish(&self, event: &Event) -> usize {
        EventHub::publish(self, event)
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

enum Job {
    Request {
        client: ClientId,
        id: RequestId,
        req: Request,
    },
    Gone(ClientId),
}

struct Done {
    client: ClientId,
    line: Vec<u8>,
}

/// A running control server. Dropping it shuts it down.
pub struct ControlServer {
    path: PathBuf,
    inode: Option<(u64, u64)>,
    hub: EventHub,
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    io_thread: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Bind the socket and start the I/O thread and workers, with a fresh [`EventHub`]
    /// (get it with [`ControlServer::events`]).
    ///
    /// # Errors
    /// When the path holds a live socket (`AddrInUse`) or a non-socket file
    /// (`AlreadyExists`), or binding, `chmod`, `chown` or thread creation fail.
    pub fn bind(
        config: ServerConfig,
        handler: Arc<dyn ControlHandler>,
    ) -> io::Result<ControlServer> {
        let hub = EventHub::new(config.event_queue)?;
        Self::bind_with_events(config, handler, hub)
    }

    /// Like [`ControlServer::bind`] with a hub created beforehand (so the handler can
    /// hold it from construction). Use one hub per server.
    ///
    /// # Errors
    /// As [`ControlServer::bind`].
    pub fn bind_with_events(
        config: ServerConfig,
        handler: Arc<dyn ControlHandler>,
        hub: EventHub,
    ) -> io::Result<ControlServer> {
        let path = config.path.clone();
        let listener = bind_socket(&path)?;
        // The socket is bound with the process umask; tighten before serving anybody
        // (peers slipping in before this are still checked with SO_PEERCRED).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.mode))?;
        if let Some(gid) = config.group {
            std::os::unix::fs::chown(&path, None, Some(gid))?;
        }
        let md = std::fs::metadata(&path)?;
        let inode = Some((md.dev(), md.ino()));
        listener.set_nonblocking(true)?;

        let wake = Arc::new(EventFd::new()?);
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();

        let mut workers = Vec::new();
        for n in 0..config.workers.max(1) {
            let rx = jobs_rx.clone();
            let tx = done_tx.clone();
            let h = Arc::clone(&handler);
            let w = Arc::clone(&wake);
            let t = std::thread::Builder::new()
                .name(format!("control-w{n}"))
                .spawn(move || worker(rx, tx, h, w));
            match t {
                Ok(t) => workers.push(t),
                Err(e) => {
                    drop(jobs_tx);
                    for t in workers {
                        let _ = t.join();
                    }
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            }
        }
        drop(done_tx);

        let io = IoLoop {
            epoll: Epoll::new()?,
            listener,
            listener_paused: None,
            conns: HashMap::new(),
            next_id: 1,
            jobs: Some(jobs_tx),
            done: done_rx,
            wake: Arc::clone(&wake),
            hub: hub.clone(),
            stop: Arc::clone(&stop),
            cfg: config,
            scratch: vec![0u8; 64 * 1024],
        };
        io.epoll
            .add(io.listener.as_raw_fd(), TOKEN_LISTENER, sys::IN)?;
        io.epoll.add(wake.raw(), TOKEN_WAKE, sys::IN)?;
        io.epoll.add(hub.inner.wake.raw(), TOKEN_HUB, sys::IN)?;
        let io_thread = std::thread::Builder::new()
            .name("control-io".into())
            .spawn(move || io.run())?;

        Ok(ControlServer {
            path,
            inode,
            hub,
            stop,
            wake,
            io_thread: Some(io_thread),
            workers,
        })
    }

    /// The event hub to publish events to this server's subscribers.
    pub fn events(&self) -> EventHub {
        self.hub.clone()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop serving: close every connection (calling `client_gone` for each, after any
    /// in-flight request finished), stop the threads and remove the socket file.
    /// Idempotent.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify();
        if let Some(t) = self.io_thread.take() {
            let _ = t.join();
        }
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        if let Some((dev, ino)) = self.inode.take() {
            // Remove the file only if it is still the socket we bound.
            if let Ok(md) = std::fs::symlink_metadata(&self.path)
                && md.dev() == dev
                && md.ino() == ino
            {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a server is already listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

fn worker(
    jobs: Receiver<Job>,
    done: Sender<Done>,
    handler: Arc<dyn ControlHandler>,
    wake: Arc<EventFd>,
) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Request { client, id, req } => {
                let kind = req.kind();
                let res = catch_unwind(AssertUnwindSafe(|| handler.handle(client, req)));
                let line = match res {
                    Ok(Ok(resp)) if resp.fits(kind) => response_line(&id, &resp),
                    Ok(Ok(_)) => error_line(
                        Some(&id),
                        &ControlError::internal(format!(
                            "the engine returned a response of the wrong shape for {kind}"
                        )),
                    ),
                    Ok(Err(e)) => error_line(Some(&id), &e),
                    Err(_) => error_line(
                        Some(&id),
                        &ControlError::internal(format!("the engine panicked handling {kind}")),
                    ),
                };
                if done.send(Done { client, line }).is_err() {
                    return;
                }
                wake.notify();
            }
            Job::Gone(client) => {
                let _ = catch_unwind(AssertUnwindSafe(|| handler.client_gone(client)));
            }
        }
    }
}

const TOKEN_LISTENER: u64 = 0;
const TOKEN_WAKE: u64 = 1;
const TOKEN_HUB: u64 = 2;
const TOKEN_BASE: u64 = 16;

/// Stop dispatching/reading while this much output is pending for a client.
const OUT_HIGH: usize = 256 * 1024;
/// Pull queued events into the output buffer only below this.
const OUT_EVENTS: usize = 64 * 1024;
/// Rounds of dispatch/pull/flush per wake-up of one connection.
const MAX_ROUNDS: usize = 16;
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    in_start: usize,
    scan: usize,
    out: Vec<u8>,
    out_pos: usize,
    busy: bool,
    read_closed: bool,
    dead: bool,
    close_after_flush: bool,
    registered: bool,
    interest: u32,
    sub: Option<Arc<Subscriber>>,
}

impl Conn {
    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn unprocessed(&self) -> usize {
        self.inbuf.len() - self.in_start
    }

    /// The next complete line (without `\n`), as a range into `inbuf`.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let from = self.scan.max(self.in_start);
        let rest = self.inbuf.get(from..)?;
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let start = self.in_start;
                let end = from + i;
                self.in_start = end + 1;
                self.scan = self.in_start;
                Some((start, end))
            }
            None => {
                self.scan = self.inbuf.len();
                None
            }
        }
    }

    fn compact_input(&mut self) {
        if self.in_start == self.inbuf.len() {
            self.inbuf.clear();
            self.in_start = 0;
            self.scan = 0;
            if self.inbuf.capacity() > 64 * 1024 {
                self.inbuf.shrink_to(4096);
            }
        } else if self.in_start > 64 * 1024 && self.in_start > self.inbuf.len() / 2 {
            self.inbuf.drain(..self.in_start);
            self.scan -= self.in_start;
            self.in_start = 0;
        }
    }

    fn flush(&mut self) {
        while self.out_pos < self.out.len() {
            let Some(pending) = self.out.get(self.out_pos..) else {
                break;
            };
            match self.stream.write(pending) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 1024 * 1024 {
                self.out.shrink_to(4096);
            }
        }
    }
}

struct IoLoop {
    epoll: Epoll,
    listener: UnixListener,
    listener_paused: Option<Instant>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    wake: Arc<EventFd>,
    hub: EventHub,
    stop: Arc<AtomicBool>,
    cfg: ServerConfig,
    scratch: Vec<u8>,
}

impl IoLoop {
    fn run(mut self) {
        let mut ready = Vec::new();
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let timeout = if shutdown_deadline.is_some() || self.listener_paused.is_some() {
                100
            } else {
                -1
            };
            if self.epoll.wait(&mut ready, timeout).is_err() {
                // epoll_wait only fails on programming errors (EBADF/EINVAL); stop
                // rather than spin.
                break;
            }
            if let Some(t) = self.listener_paused
                && t <= Instant::now()
                && shutdown_deadline.is_none()
            {
                self.listener_paused = None;
                let _ = self
                    .epoll
                    .add(self.listener.as_raw_fd(), TOKEN_LISTENER, sys::IN);
            }
            for r in ready.iter().copied() {
                match r.token {
                    TOKEN_LISTENER => self.accept_all(),
                    TOKEN_WAKE => {
                        self.wake.drain();
                        while let Ok(d) = self.done.try_recv() {
                            self.on_done(d);
                        }
                    }
                    TOKEN_HUB => {
                        self.hub.inner.wake.drain();
                        while let Ok(id) = self.hub.inner.ready_rx.try_recv() {
                            if let Some(c) = self.conns.get(&id.0)
                                && let Some(s) = &c.sub
                            {
                                s.notified.store(false, Ordering::Release);
                            }
                            self.drive(id.0);
                        }
                    }
                    t => self.on_io(t - TOKEN_BASE, r.events),
                }
            }
            if self.stop.load(Ordering::Acquire) && shutdown_deadline.is_none() {
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                let _ = self.epoll.delete(self.listener.as_raw_fd());
                let ids: Vec<u64> = self.conns.keys().copied().collect();
                for id in ids {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.dead = true;
                    }
                    self.drive(id);
                }
            }
            if let Some(deadline) = shutdown_deadline {
                while let Ok(d) = self.done.try_recv() {
                    self.on_done(d);
                }
                if self.conns.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
        }
        // Whatever is left (handlers stuck past the grace period): report them gone.
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.finalize(id);
        }
        // Dropping the job sender lets the workers finish the queue and exit.
        self.jobs = None;
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.on_accept(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) => {
                    // Out of descriptors or memory: stop accepting for a moment
                    // instead of spinning on a readable listener.
                    let _ = self.epoll.delete(self.listener.as_raw_fd());
                    self.listener_paused = Some(Instant::now() + Duration::from_millis(100));
                    break;
                }
            }
        }
    }

    fn on_accept(&mut self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let allowed = match sys::peer_cred(stream.as_raw_fd()) {
            Ok(c) => peer_allowed(&self.cfg, c.uid, c.gid, || {
                // Unreadable groups (kernel before 4.13): only uid and primary gid count.
                sys::peer_groups(stream.as_raw_fd()).unwrap_or_default()
            }),
            Err(_) => false,
        };
        if !allowed {
            let e = ControlError::new(ErrorCode::Forbidden, "peer credentials are not allowed");
            let _ = (&stream).write(&error_line(None, &e));
            return;
        }
        if self.conns.len() >= self.cfg.max_clients {
            let e = ControlError::unavailable("too many control clients");
            let _ = (&stream).write(&error_line(None, &e));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn {
            stream,
            inbuf: Vec::new(),
            in_start: 0,
            scan: 0,
            out: hello_line(&self.cfg.server_name),
            out_pos: 0,
            busy: false,
            read_closed: false,
            dead: false,
            close_after_flush: false,
            registered: false,
            interest: 0,
            sub: None,
        };
        let fd = conn.stream.as_raw_fd();
        if self.epoll.add(fd, TOKEN_BASE + id, 0).is_err() {
            return;
        }
        let mut conn = conn;
        conn.registered = true;
        self.conns.insert(id, conn);
        self.drive(id);
    }

    fn on_io(&mut self, id: u64, events: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if events & (sys::IN | sys::RDHUP) != 0 {
            read_some(c, &mut self.scratch, self.cfg.max_line);
        }
        if events & sys::OUT != 0 {
            c.flush();
        }
        if events & (sys::HUP | sys::ERR) != 0 {
            // The peer closed both directions (HUP is level-triggered and cannot be
            // masked): nothing more can be delivered. Wait for an in-flight request
            // to finish, then report the client gone.
            c.dead = true;
            c.read_closed = true;
        }
        self.drive(id);
    }

    fn on_done(&mut self, d: Done) {
        let Some(c) = self.conns.get_mut(&d.client.0) else {
            return;
        };
        c.busy = false;
        if !c.dead {
            c.out.extend_from_slice(&d.line);
        }
        self.drive(d.client.0);
    }

    /// Advance one connection: dispatch complete lines, pull events, flush, decide
    /// whether to close, and update the epoll interest.
    fn drive(&mut self, id: u64) {
        let stopping = self.stop.load(Ordering::Acquire);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let client = ClientId(id);
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                // Fairness: let other connections run. Queued events would get no new
                // wake-up, so ask the hub loop to come back to this client.
                if let Some(s) = &c.sub
                    && !s.rx.is_empty()
                    && !s.notified.swap(true, Ordering::AcqRel)
                {
                    let _ = self.hub.inner.ready_tx.send(client);
                    self.hub.inner.wake.notify();
                }
                break;
            }
            if c.dead {
                break;
            }
            if let Some(s) = &c.sub
                && s.overflow.load(Ordering::Relaxed)
            {
                c.dead = true;
                break;
            }
            let mut progressed = false;
            // Dispatch complete lines.
            while !c.busy && !c.close_after_flush && !stopping && c.pending_out() < OUT_HIGH {
                let Some((start, end)) = c.next_line() else {
                    break;
                };
                progressed = true;
                if end - start > self.cfg.max_line {
                    line_too_long(c, self.cfg.max_line);
                    break;
                }
                let Some(line) = c.inbuf.get(start..end) else {
                    break;
                };
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                match parse_request_line(line) {
                    Err(e) => {
                        let l = error_line(e.id.as_ref(), &e.error);
                        c.out.extend_from_slice(&l);
                    }
                    Ok(env) => match env.request {
                        Request::EventsSubscribe(p) => {
                            let kinds = p.kinds.unwrap_or_else(|| EventKind::ALL.to_vec());
                            let mask = kinds.iter().fold(0u32, |m, k| m | k.bit());
                            c.sub = Some(self.hub.subscribe(client, mask));
                            let resp = Response::EventsSubscribed(EventsSubscribed { kinds });
                            c.out.extend_from_slice(&response_line(&env.id, &resp));
                        }
                        Request::EventsUnsubscribe => {
                            if c.sub.take().is_some() {
                                self.hub.unsubscribe(client);
                            }
                            c.out
                                .extend_from_slice(&response_line(&env.id, &Response::Done));
                        }
                        req => {
                            let sent = self.jobs.as_ref().is_some_and(|j| {
                                j.send(Job::Request {
                                    client,
                                    id: env.id.clone(),
                                    req,
                                })
                                .is_ok()
                            });
                            if sent {
                                c.busy = true;
                            } else {
                                let e = ControlError::new(
                                    ErrorCode::ShuttingDown,
                                    "the server is shutting down",
                                );
                                c.out.extend_from_slice(&error_line(Some(&env.id), &e));
                            }
                        }
                    },
                }
            }
            c.compact_input();
            // An incomplete line that is already too long.
            if !c.close_after_flush && c.unprocessed() > self.cfg.max_line {
                let has_newline = c
                    .inbuf
                    .get(c.scan.max(c.in_start)..)
                    .is_some_and(|r| r.contains(&b'\n'));
                if !has_newline && !c.busy {
                    line_too_long(c, self.cfg.max_line);
                }
            }
            // Events.
            if let Some(s) = &c.sub {
                while c.pending_out() < OUT_EVENTS {
                    match s.rx.try_recv() {
                        Ok(l) => {
                            c.out.extend_from_slice(&l);
                            progressed = true;
                        }
                        Err(_) => break,
                    }
                }
            }
            let before = c.pending_out();
            c.flush();
            if c.pending_out() < before {
                progressed = true;
            }
            if !progressed || c.dead {
                break;
            }
        }
        if c.read_closed && !c.busy && !c.close_after_flush {
            // Peer finished sending: answer what is complete, drop a partial line.
            let complete = c
                .inbuf
                .get(c.scan.max(c.in_start)..)
                .is_some_and(|r| r.contains(&b'\n'));
            if !complete {
                c.close_after_flush = true;
            }
        }
        let finished = c.close_after_flush && !c.busy && c.pending_out() == 0;
        if (c.dead || finished || stopping) && !c.busy {
            self.finalize(id);
            return;
        }
        if c.dead {
            // Waiting for the in-flight request: stop watching the socket.
            if c.registered {
                let _ = self.epoll.delete(c.stream.as_raw_fd());
                c.registered = false;
            }
            return;
        }
        let mut want = 0;
        let can_read = !c.read_closed
            && !c.close_after_flush
            && c.unprocessed() <= self.cfg.max_line
            && c.pending_out() < OUT_HIGH;
        if can_read {
            want |= sys::IN | sys::RDHUP;
        }
        if c.pending_out() > 0 {
            want |= sys::OUT;
        }
        if c.registered && want != c.interest {
            if self
                .epoll
                .modify(c.stream.as_raw_fd(), TOKEN_BASE + id, want)
                .is_err()
            {
                c.dead = true;
                if !c.busy {
                    self.finalize(id);
                }
                return;
            }
            c.interest = want;
        }
    }

    fn finalize(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        if c.registered {
            let _ = self.epoll.delete(c.stream.as_raw_fd());
        }
        if c.sub.is_some() {
            self.hub.unsubscribe(ClientId(id));
        }
        drop(c);
        if let Some(j) = &self.jobs {
            let _ = j.send(Job::Gone(ClientId(id)));
        }
    }
}

fn line_too_long(c: &mut Conn, max: usize) {
    let e = ControlError::new(
        ErrorCode::LineTooLong,
        format!("line longer than {max} bytes; closing"),
    );
    c.out.extend_from_slice(&error_line(None, &e));
    c.close_after_flush = true;
    c.read_closed = true;
    c.inbuf.clear();
    c.in_start = 0;
    c.scan = 0;
}

fn read_some(c: &mut Conn, scratch: &mut [u8], max_line: usize) {
    while !c.read_closed && !c.close_after_flush && c.unprocessed() <= max_line {
        match c.stream.read(scratch) {
            Ok(0) => c.read_closed = true,
            Ok(n) => {
                let Some(chunk) = scratch.get(..n) else {
                    break;
                };
                c.inbuf.extend_from_slice(chunk);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.dead = true;
                c.read_closed = true;
            }
        }
    }
}

/// Whether a peer with these credentials may connect: its uid is allowed, or its primary
/// gid, or (asked only when needed) one of its supplementary groups.
fn peer_allowed(cfg: &ServerConfig, uid: u32, gid: u32, groups: impl FnOnce() -> Vec<u32>) -> bool {
    if cfg.allowed_uids.contains(&uid) || cfg.allowed_gids.contains(&gid) {
        return true;
    }
    !cfg.allowed_gids.is_empty() && groups().iter().any(|g| cfg.allowed_gids.contains(g))
}

/// Checks that `dir`, meant to hold a control socket, is a real directory (not a
/// symbolic link) owned by `owner` and writable by nobody else. A directory in a shared
/// place such as `/tmp` may have been created by another user beforehand, who could then
/// replace the socket with one of their own.
///
/// # Errors
///
/// [`io::ErrorKind::PermissionDenied`] naming what is wrong; the error of `lstat`.
pub fn check_socket_dir(dir: &Path, owner: u32) -> io::Result<()> {
    let md = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("control socket directory {}: {why}", dir.display()),
        ))
    };
    if !md.is_dir() {
        return refuse("not a directory (a symbolic link or a file is refused)".into());
    }
    if md.uid() != owner {
        return refuse(format!("owned by uid {}, not by uid {owner}", md.uid()));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "mode {mode:04o} is group- or world-writable (0700 or 0750 expected)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(uids: &[u32], gids: &[u32]) -> ServerConfig {
        let mut c = ServerConfig::new("/nonexistent/c.sock");
        c.allowed_uids = uids.to_vec();
        c.allowed_gids = gids.to_vec();
        c
    }

    #[test]
    fn supplementary_group_of_the_peer_is_allowed() {
        let c = cfg(&[1], &[4242]);
        // Primary gid 1000, member of 4242 through its supplementary groups.
        assert!(peer_allowed(&c, 1000, 1000, || vec![27, 4242]));
        assert!(!peer_allowed(&c, 1000, 1000, || vec![27, 100]));
        assert!(peer_allowed(&c, 1000, 4242, || unreachable!(
            "primary gid suffices"
        )));
        assert!(peer_allowed(&c, 1, 1000, || unreachable!("uid suffices")));
        // No group allowed: the groups are not even asked for.
        assert!(!peer_allowed(
            &cfg(&[1], &[]),
            1000,
            1000,
            || unreachable!()
        ));
    }

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut got = sys::peer_groups(a.as_raw_fd()).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mut want: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .unwrap()
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn socket_dir_must_be_private_and_owned() {
        let me = sys::euid();
        let base = std::env::temp_dir().join(format!("control-dir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let good = base.join("good");
        std::fs::create_dir(&good).unwrap();
        mode(&good, 0o700);
        check_socket_dir(&good, me).unwrap();
        mode(&good, 0o750);
        check_socket_dir(&good, me).unwrap();
        mode(&good, 0o777);
        let e = check_socket_dir(&good, me).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("0777"), "{e}");
        mode(&good, 0o770);
        assert!(check_socket_dir(&good, me).is_err());
        mode(&good, 0o700);
        let e = check_socket_dir(&good, me.wrapping_add(1)).unwrap_err();
        assert!(e.to_string().contains("owned by uid"), "{e}");
        let link = base.join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(check_socket_dir(&link, me).is_err());
        assert!(check_socket_dir(&base.join("missing"), me).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
