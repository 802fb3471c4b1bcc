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
use crate::sys::{self, EventFd};

mod io_loop;
mod jobs;

use io_loop::IoLoop;

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
        let (jobs_tx, jobs_rx) = jobs::queue::<Job>();
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

        let io_thread = IoLoop::start(
            listener,
            jobs_tx,
            done_rx,
            Arc::clone(&wake),
            hub.clone(),
            Arc::clone(&stop),
            config,
        )?;

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
    jobs: jobs::JobRx<Job>,
    done: Sender<Done>,
    handler: Arc<dyn ControlHandler>,
    wake: Arc<EventFd>,
) {
    while let Some(job) = jobs.recv() {
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

/// Whether a peer with these credentials may connect: its uid is allowed, or its primary
/// gid, or (asked only when needed) one of its supplementary groups.
pub(super) fn peer_allowed(
    cfg: &ServerConfig,
    uid: u32,
    gid: u32,
    groups: impl FnOnce() -> Vec<u32>,
) -> bool {
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
