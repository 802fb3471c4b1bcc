//! ICE-TCP streams (RFC 6544 passive candidates, RFC 4571 framing) for both backends.
//!
//! Each shard listens on its own TCP port(s) and accepts connections from peers that
//! cannot use UDP. [`TcpStreams`] owns the listeners, the accepted connections and one
//! `epoll` set over all of them; the backends watch that one descriptor (the portable
//! backend in its `poll(2)` set, the io_uring backend with one multishot `POLL_ADD`) and
//! call [`TcpStreams::process`] when it is ready. Accept, receive and send are then
//! non-blocking syscalls on the ready sockets: TCP is the fallback transport for a few
//! peers, so per-connection ring operations (and their buffer lifetimes) would buy little.
//!
//! Frames (the datagrams inside the RFC 4571 length prefixes) reach the shard through the
//! same `on_recv` callback as UDP datagrams, marked [`Transport::Tcp`]. The shard decides
//! what a connection is: it reports the first validated STUN binding request with
//! [`TcpVerdict::Authenticated`] and garbage with [`TcpVerdict::Close`].
//!
//! Bounds, so that a slow, dead or hostile peer cannot stall the shard or grow its memory:
//!
//! * at most [`TcpConfig::max_conns`] connections (beyond it new ones are closed at once);
//! * a connection not authenticated within [`TcpConfig::auth_timeout`] is closed;
//! * a frame that is empty or longer than [`MAX_FRAME`] closes the connection (garbage);
//! * each connection's send buffer holds at most [`TcpConfig::send_buffer`] bytes; a frame
//!   that does not fit is dropped ([`DropStats::tcp_send_full`](super::DropStats::tcp_send_full)),
//!   and a connection whose send buffer does not drain for
//!   [`TcpConfig::blocked_timeout`] is closed.
//!
//! Buffers are allocated when a connection is accepted (receive) or first sends (send
//! buffer, reserved to its bound at once): the steady path does not allocate.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{IoStats, Received, Transport};

/// Largest frame accepted from a peer (payload bytes after the 2-byte length). Media and
/// DTLS records fit far below it; longer frames are treated as garbage.
pub const MAX_FRAME: usize = 4096;
/// Receive buffer per connection: several maximal frames, read in one call.
const RX_BUF: usize = 4 * (MAX_FRAME + 2);
/// Read calls per ready connection per [`TcpStreams::process`] before moving on.
const MAX_READS: usize = 8;
/// `epoll_wait` batch.
const MAX_EVENTS: usize = 64;
/// Token bit marking a listener (else: a connection slot and its generation).
const LISTENER: u64 = 1 << 63;
/// How often the timeouts are checked at most.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// ICE-TCP settings of a backend (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Addresses to listen on (one listener each; empty: no TCP). IPv6 listeners are
    /// v6-only.
    pub bind: Vec<SocketAddr>,
    /// Open connections at most.
    pub max_conns: usize,
    /// Bytes queued for sending per connection at most (frames beyond it are dropped).
    pub send_buffer: usize,
    /// A connection must carry a validated STUN binding request this soon.
    pub auth_timeout: Duration,
    /// A connection whose send buffer has not drained (been written out completely) for
    /// this long is closed.
    pub blocked_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            max_conns: 256,
            send_buffer: 256 * 1024,
            auth_timeout: Duration::from_secs(10),
            blocked_timeout: Duration::from_secs(5),
        }
    }
}

/// ICE-TCP connection counters (totals since the backend was opened, except `open`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections open now.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at once because [`TcpConfig::max_conns`] were open.
    pub refused: u64,
    /// Connections the shard authenticated (a validated STUN binding request).
    pub authenticated: u64,
    /// Closed: the peer closed or reset it.
    pub closed_peer: u64,
    /// Closed: an empty or oversized frame, or a first frame that was not a binding
    /// request for a known session.
    pub closed_garbage: u64,
    /// Closed: not authenticated within [`TcpConfig::auth_timeout`].
    pub closed_unauthenticated: u64,
    /// Closed: its send buffer did not drain for [`TcpConfig::blocked_timeout`].
    pub closed_blocked: u64,
    /// Closed by the shard (its session ended).
    pub closed_local: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Frames queued for sending.
    pub tx_frames: u64,
}

/// What the shard decided about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// It carried a validated binding request: no authentication timeout any more.
    Authenticated,
    /// Close it as garbage (not a binding request for a known session, bad framing).
    Close,
    /// Close it because its session ended.
    SessionGone,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: usize,
    generation: u32,
    rx: Box<[u8]>,
    rx_len: usize,
    out: Vec<u8>,
    out_head: usize,
    /// `EPOLLOUT` is in the interest set.
    want_out: bool,
    /// Listed in `dirty` (has bytes to write this flush).
    dirty: bool,
    authenticated: bool,
    opened: Instant,
    /// Since when queued bytes have been waiting (reset when the buffer drains: a peer
    /// that reads slowly but keeps up empties it now and then; a stalled one never does,
    /// even when its kernel trickles a few bytes in as it compacts its receive queue).
    blocked_since: Option<Instant>,
}

/// Why a connection is closed (for the counters).
#[derive(Debug, Clone, Copy)]
enum Why {
    Peer,
    Garbage,
    Unauthenticated,
    Blocked,
    Local,
}

/// The ICE-TCP listeners and connections of one backend. See the [module docs](self).
pub struct TcpStreams {
    cfg: TcpConfig,
    epoll: Option<OwnedFd>,
    listeners: Vec<TcpListener>,
    locals: Vec<SocketAddr>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_peer: HashMap<SocketAddr, usize>,
    dirty: Vec<usize>,
    closed: Vec<SocketAddr>,
    events: Vec<libc::epoll_event>,
    next_generation: u32,
    /// A connection or listener may have more to read than the last call took.
    pending: bool,
    next_scan: Option<Instant>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

impl TcpStreams {
    /// Binds the listeners (none when `cfg.bind` is empty).
    ///
    /// # Errors
    ///
    /// A bind, listen or `epoll` set-up error.
    pub fn open(cfg: &TcpConfig) -> io::Result<Self> {
        let mut me = Self {
            cfg: cfg.clone(),
            epoll: None,
            listeners: Vec::new(),
            locals: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            by_peer: HashMap::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            events: Vec::new(),
            next_generation: 0,
            pending: false,
            next_scan: None,
        };
        if cfg.bind.is_empty() {
            return Ok(me);
        }
        // SAFETY: plain syscall; the result is checked and owned right away.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        me.epoll = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        for (i, a) in cfg.bind.iter().enumerate() {
            let l = listen(*a)?;
            me.locals.push(l.local_addr()?);
            me.ctl(
                libc::EPOLL_CTL_ADD,
                l.as_raw_fd(),
                libc::EPOLLIN as u32,
                LISTENER | i as u64,
            )?;
            me.listeners.push(l);
        }
        let cap = cfg.max_conns.min(1024);
        me.conns.reserve(cap);
        me.by_peer.reserve(cap);
        me.dirty.reserve(cap);
        me.closed.reserve(cap);
        me.events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        Ok(me)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let Some(ep) = &self.epoll else {
            return Ok(());
        };
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are live; `ev` is a valid epoll_event.
        cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &raw mut ev) }).map(|_| ())
    }

    /// Whether any listener is open.
    pub fn enabled(&self) -> bool {
        self.epoll.is_some()
    }

    /// The `epoll` descriptor a backend waits on (readable: something to do).
    pub fn epoll_fd(&self) -> Option<RawFd> {
        self.epoll.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The listening addresses (with the real port when port 0 was requested).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// More may be readable than the last [`TcpStreams::process`] took, or a timeout is
    /// due: the backend should not block.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Accepts, reads and writes whatever is ready, hands received frames to `on_recv`
    /// and closes connections whose timeouts expired.
    pub fn process(&mut self, stats: &mut IoStats, on_recv: &mut dyn FnMut(Received<'_>)) {
        let Some(ep) = self.epoll_fd() else {
            return;
        };
        self.pending = false;
        let mut events = std::mem::take(&mut self.events);
        // SAFETY: `events` holds MAX_EVENTS initialised entries the kernel may overwrite.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 0) };
        let n = usize::try_from(n).unwrap_or(0);
        if n == events.len() {
            self.pending = true;
        }
        for ev in events.iter().take(n) {
            let (token, flags) = (ev.u64, ev.events);
            if token & LISTENER != 0 {
                self.accept((token & !LISTENER) as usize, stats);
                continue;
            }
            let slot = (token & 0xffff_ffff) as usize;
            let generation = (token >> 32) as u32;
            let live = matches!(self.conns.get(slot), Some(Some(c)) if c.generation == generation);
            if !live {
                continue;
            }
            if flags & libc::EPOLLOUT as u32 != 0 {
                self.write(slot, stats);
            }
            if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32
                != 0
            {
                self.read(slot, stats, on_recv);
            }
        }
        self.events = events;
        self.scan(stats);
    }

    fn accept(&mut self, li: usize, stats: &mut IoStats) {
        for _ in 0..MAX_EVENTS {
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            let (stream, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the rest for the next readiness.
                    tracing::debug!(error = %e, "tcp accept failed");
                    return;
                }
            };
            let open = self.conns.len() - self.free.len();
            if open >= self.cfg.max_conns || self.by_peer.contains_key(&peer) {
                stats.tcp.refused += 1;
                continue;
            }
            let Some(&local) = self.locals.get(li) else {
                return;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or(self.conns.len());
            self.next_generation = self.next_generation.wrapping_add(1);
            let generation = self.next_generation;
            let token = (u64::from(generation) << 32) | slot as u64;
            let interest = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if self
                .ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), interest, token)
                .is_err()
            {
                if slot < self.conns.len() {
                    self.free.push(slot);
                }
                continue;
            }
            let now = Instant::now();
            let conn = Conn {
                stream,
                peer,
                local,
                listener: li,
                generation,
                rx: vec![0; RX_BUF].into_boxed_slice(),
                rx_len: 0,
                out: Vec::new(),
                out_head: 0,
                want_out: false,
                dirty: false,
                authenticated: false,
                opened: now,
                blocked_since: None,
            };
            if slot == self.conns.len() {
                self.conns.push(Some(conn));
            } else if let Some(c) = self.conns.get_mut(slot) {
                *c = Some(conn);
            }
            self.by_peer.insert(peer, slot);
            stats.tcp.accepted += 1;
            stats.tcp.open += 1;
            self.arm_scan(now);
            // Bytes that arrived before the connection joined the epoll set: whether
            // that raises a fresh readiness on the set's own descriptor is not
            // something to rely on, so look again on the next poll without waiting.
            self.pending = true;
        }
        self.pending = true;
    }

    fn arm_scan(&mut self, now: Instant) {
        if self.next_scan.is_none() {
            self.next_scan = Some(now + SCAN_INTERVAL);
        }
    }

    fn read(&mut self, slot: usize, stats: &mut IoStats, on_recv: &mut dyn FnMut(Received<'_>)) {
        for _ in 0..MAX_READS {
            let Some(Some(c)) = self.conns.get_mut(slot) else {
                return;
            };
            let Some(space) = c.rx.get_mut(c.rx_len..) else {
                return;
            };
            let room = space.len();
            let got = match c.stream.read(space) {
                Ok(0) => return self.close(slot, Why::Peer, stats),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(slot, Why::Peer, stats),
            };
            c.rx_len += got;
            let (mut at, end) = (0, c.rx_len);
            let (socket, source, local) = (c.listener, c.peer, c.local);
            let mut garbage = false;
            while let Some(head) = c.rx.get(at..(at + 2).min(end)).filter(|h| h.len() == 2) {
                let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
                if len == 0 || len > MAX_FRAME {
                    garbage = true;
                    break;
                }
                let Some(data) =
                    c.rx.get_mut(at + 2..at + 2 + len)
                        .filter(|_| at + 2 + len <= end)
                else {
                    break;
                };
                stats.tcp.rx_frames += 1;
                stats.rx_datagrams += 1;
                stats.rx_bytes += len as u64;
                on_recv(Received {
                    socket,
                    source,
                    local,
                    transport: Transport::Tcp,
                    data,
                    arrival: None,
                });
                at += 2 + len;
            }
            if garbage {
                return self.close(slot, Why::Garbage, stats);
            }
            c.rx.copy_within(at..end, 0);
            c.rx_len = end - at;
            if got < room {
                return;
            }
        }
        self.pending = true;
    }

    /// Queues one frame for `peer`. Returns `false` (and counts the drop) when there is
    /// no such connection or its send buffer is full.
    pub fn send(&mut self, peer: SocketAddr, data: &[u8], stats: &mut IoStats) -> bool {
        let Some(&slot) = self.by_peer.get(&peer) else {
            stats.drops.bad_socket += 1;
            return false;
        };
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            stats.drops.bad_socket += 1;
            return false;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            stats.drops.too_large += 1;
            return false;
        };
        let need = data.len() + 2;
        if c.out.len() + need > self.cfg.send_buffer && c.out_head > 0 {
            c.out.copy_within(c.out_head.., 0);
            c.out.truncate(c.out.len() - c.out_head);
            c.out_head = 0;
        }
        if c.out.len() + need > self.cfg.send_buffer {
            stats.drops.tcp_send_full += 1;
            return false;
        }
        if c.out.capacity() == 0 {
            // Once per connection: the whole bound, so that queueing never allocates again.
            c.out.reserve_exact(self.cfg.send_buffer);
        }
        c.out.extend_from_slice(&len.to_be_bytes());
        c.out.extend_from_slice(data);
        stats.tcp.tx_frames += 1;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(slot);
        }
        true
    }

    /// Writes what the connections queued since the last flush.
    pub fn flush(&mut self, stats: &mut IoStats) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            if let Some(Some(c)) = self.conns.get_mut(slot) {
                c.dirty = false;
            }
            self.write(slot, stats);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn write(&mut self, slot: usize, stats: &mut IoStats) {
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return;
        };
        let mut failed = false;
        while let Some(rest) = c.out.get(c.out_head..).filter(|r| !r.is_empty()) {
            match c.stream.write(rest) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    c.out_head += n;
                    stats.tx_bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            return self.close(slot, Why::Peer, stats);
        }
        let drained = c.out_head >= c.out.len();
        if drained {
            c.out.clear();
            c.out_head = 0;
            c.blocked_since = None;
        } else if c.blocked_since.is_none() {
            c.blocked_since = Some(Instant::now());
        }
        let token = (u64::from(c.generation) << 32) | slot as u64;
        let fd = c.stream.as_raw_fd();
        if c.want_out == drained {
            c.want_out = !drained;
            let mut interest = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if !drained {
                interest |= libc::EPOLLOUT as u32;
                let now = Instant::now();
                self.arm_scan(now);
            }
            let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token);
        }
    }

    /// Applies the shard's verdict on the connection from `peer` (if it is still open).
    pub fn verdict(&mut self, peer: SocketAddr, v: TcpVerdict, stats: &mut IoStats) {
        let Some(&slot) = self.by_peer.get(&peer) else {
            return;
        };
        match v {
            TcpVerdict::Authenticated => {
                if let Some(Some(c)) = self.conns.get_mut(slot)
                    && !c.authenticated
                {
                    c.authenticated = true;
                    stats.tcp.authenticated += 1;
                }
            }
            TcpVerdict::Close => self.close(slot, Why::Garbage, stats),
            TcpVerdict::SessionGone => self.close(slot, Why::Local, stats),
        }
    }

    /// Moves the peers of connections closed since the last call into `out`.
    pub fn take_closed(&mut self, out: &mut Vec<SocketAddr>) {
        out.append(&mut self.closed);
    }

    fn close(&mut self, slot: usize, why: Why, stats: &mut IoStats) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.ctl(libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), 0, 0);
        self.by_peer.remove(&c.peer);
        self.free.push(slot);
        self.closed.push(c.peer);
        stats.tcp.open = stats.tcp.open.saturating_sub(1);
        let n = match why {
            Why::Peer => &mut stats.tcp.closed_peer,
            Why::Garbage => &mut stats.tcp.closed_garbage,
            Why::Unauthenticated => &mut stats.tcp.closed_unauthenticated,
            Why::Blocked => &mut stats.tcp.closed_blocked,
            Why::Local => &mut stats.tcp.closed_local,
        };
        *n += 1;
        if self.free.len() == self.conns.len() {
            self.next_scan = None;
        }
    }

    /// Closes connections whose authentication or blocked timeout expired (checks at
    /// most every 200 ms).
    pub fn scan(&mut self, stats: &mut IoStats) {
        let Some(at) = self.next_scan else {
            return;
        };
        let now = Instant::now();
        if now < at {
            return;
        }
        self.next_scan = None;
        for slot in 0..self.conns.len() {
            let Some(Some(c)) = self.conns.get(slot) else {
                continue;
            };
            let why = if !c.authenticated && now >= c.opened + self.cfg.auth_timeout {
                Some(Why::Unauthenticated)
            } else if c
                .blocked_since
                .is_some_and(|t| now >= t + self.cfg.blocked_timeout)
            {
                Some(Why::Blocked)
            } else {
                None
            };
            match why {
                Some(w) => self.close(slot, w, stats),
                None => self.arm_scan(now),
            }
        }
    }
}
