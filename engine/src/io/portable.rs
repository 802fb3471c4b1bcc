//! The portable backend: `poll(2)` + `recvmmsg` + `sendmmsg`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::Socket;

use super::send::{Outcome, SendHint, SendQueue};
use super::sys::{self, NAME_LEN, RECV_CONTROL_LEN, RxClock, Waker};
use super::tcp::{TcpStreams, TcpVerdict};
use super::{BackendKind, IoBackend, IoConfig, IoStats, OnRecv, Received, Transport};

/// Messages per `recvmmsg` call at most.
const MAX_RECV_BATCH: usize = 64;
/// `recvmmsg` rounds per socket per `poll` before yielding to the caller.
const MAX_RECV_ROUNDS: usize = 8;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Name([u8; 32]);

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

const _: () = assert!(NAME_LEN <= 32 && RECV_CONTROL_LEN <= 64);

/// `poll` + `recvmmsg` + `sendmmsg` backend. See the [module docs](super).
pub struct PortableBackend {
    sockets: Vec<Socket>,
    locals: Vec<SocketAddr>,
    waker: Waker,
    pollfds: Vec<libc::pollfd>,
    gro: bool,
    /// GRO or receive timestamps asked for: receives carry a control buffer.
    control: bool,
    buf: Vec<u8>,
    buf_size: usize,
    names: Vec<Name>,
    controls: Vec<Control>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    sendq: SendQueue,
    send_hdrs: Vec<libc::mmsghdr>,
    send_slots: Vec<usize>,
    tcp: TcpStreams,
    stats: IoStats,
}

// SAFETY: the raw pointers held in `iovs`/`hdrs`/`send_hdrs` point only into buffers owned by
// this same value (and are rebuilt before every syscall); nothing is shared with other
// threads, so moving the whole backend to another thread is sound.
unsafe impl Send for PortableBackend {}

impl PortableBackend {
    /// Binds the sockets and allocates the buffer pools.
    ///
    /// # Errors
    ///
    /// The socket (bind, options) or waker set-up error.
    pub fn open(cfg: &IoConfig) -> io::Result<Self> {
        let (sockets, locals) = sys::open_sockets(cfg)?;
        let tcp = TcpStreams::open(&cfg.tcp)?;
        let waker = Waker::new()?;
        let mut pollfds = Vec::with_capacity(sockets.len() + 2);
        pollfds.push(libc::pollfd {
            fd: waker.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for s in &sockets {
            pollfds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // The ICE-TCP epoll set, last (after the sockets).
        if let Some(fd) = tcp.epoll_fd() {
            pollfds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let n = cfg.recv_buffers.count.clamp(1, MAX_RECV_BATCH);
        let mut buf_size = cfg.recv_buffers.size.max(1);
        if cfg.gro {
            buf_size = buf_size.max(65_535);
        }
        // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid (empty) value.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let iov0 = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(Self {
            sendq: SendQueue::new(cfg.send_batches, cfg.gso, &locals),
            send_hdrs: vec![zero_hdr; cfg.send_batches.max(1)],
            send_slots: Vec::with_capacity(cfg.send_batches.max(1)),
            sockets,
            locals,
            waker,
            pollfds,
            gro: cfg.gro,
            control: cfg.gro || cfg.rx_timestamps,
            buf: vec![0; n * buf_size],
            buf_size,
            names: vec![Name([0; 32]); n],
            controls: vec![Control([0; 64]); n],
            iovs: vec![iov0; n],
            hdrs: vec![zero_hdr; n],
            tcp,
            stats: IoStats::default(),
        })
    }

    fn recv_socket(&mut self, si: usize, on_recv: &mut dyn FnMut(Received<'_>)) {
        let Some(sock) = self.sockets.get(si) else {
            return;
        };
        let fd = sock.as_raw_fd();
        let Some(&local) = self.locals.get(si) else {
            return;
        };
        let n = self.hdrs.len();
        for _ in 0..MAX_RECV_ROUNDS {
            let base = self.buf.as_mut_ptr();
            for (k, ((h, iov), (name, ctl))) in self
                .hdrs
                .iter_mut()
                .zip(self.iovs.iter_mut())
                .zip(self.names.iter_mut().zip(self.controls.iter_mut()))
                .enumerate()
            {
                // SAFETY: k < n and `buf` holds n * buf_size bytes, so the offset is in bounds.
                iov.iov_base = unsafe { base.add(k * self.buf_size) }.cast();
                iov.iov_len = self.buf_size;
                h.msg_hdr.msg_name = name.0.as_mut_ptr().cast();
                h.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                if self.control {
                    h.msg_hdr.msg_control = ctl.0.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = RECV_CONTROL_LEN;
                } else {
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                }
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            // SAFETY: every header points at live, correctly sized buffers owned by `self`
            // that are not otherwise borrowed during the call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            self.stats.recv_syscalls += 1;
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) => continue,
                    _ => {
                        self.stats.drops.recv_error += 1;
                        return;
                    }
                }
            }
            let got = r as usize;
            self.stats.recv_completions += got as u64;
            // Both clocks are read once per batch, and only when a stamp came with it.
            let mut clock: Option<RxClock> = None;
            for k in 0..got.min(n) {
                let Some(h) = self.hdrs.get(k) else { break };
                let len = h.msg_len as usize;
                let flags = h.msg_hdr.msg_flags;
                let namelen = (h.msg_hdr.msg_namelen as usize).min(NAME_LEN);
                let ctllen = h.msg_hdr.msg_controllen.min(RECV_CONTROL_LEN);
                if flags & libc::MSG_TRUNC != 0 {
                    self.stats.drops.recv_truncated += 1;
                    continue;
                }
                let source = self
                    .names
                    .get(k)
                    .and_then(|nm| nm.0.get(..namelen))
                    .and_then(sys::parse_sockaddr);
                let Some(source) = source else {
                    self.stats.drops.recv_error += 1;
                    continue;
                };
                let ctl = if self.control && ctllen > 0 {
                    self.controls
                        .get(k)
                        .and_then(|c| c.0.get(..ctllen))
                        .map(sys::parse_recv_control)
                        .unwrap_or_default()
                } else {
                    sys::RecvControl::default()
                };
                let seg = ctl.seg.filter(|_| self.gro);
                let arrival = ctl
                    .stamp_ns
                    .and_then(|t| clock.get_or_insert_with(RxClock::now).arrival(t));
                let start = k * self.buf_size;
                let Some(data) = self.buf.get_mut(start..start + len.min(self.buf_size)) else {
                    continue;
                };
                deliver(
                    &mut self.stats,
                    (si, source, local),
                    data,
                    seg,
                    arrival,
                    on_recv,
                );
            }
            if got < n {
                return;
            }
        }
    }
}

/// Hands one received buffer to the callback, split into GRO segments when `seg` says so.
pub(super) fn deliver(
    stats: &mut IoStats,
    (socket, source, local): (usize, SocketAddr, SocketAddr),
    data: &mut [u8],
    seg: Option<usize>,
    arrival: Option<std::time::Instant>,
    on_recv: &mut dyn FnMut(Received<'_>),
) {
    let transport = Transport::Udp;
    match seg {
        Some(seg) if seg > 0 && data.len() > seg => {
            stats.gro_coalesced += 1;
            let n = data.len().div_ceil(seg) as u64;
            stats.rx_batch_sizes[super::batch_bucket(n)] += 1;
            for chunk in data.chunks_mut(seg) {
                stats.gro_segments += 1;
                stats.rx_datagrams += 1;
                stats.rx_bytes += chunk.len() as u64;
                on_recv(Received {
                    socket,
                    source,
                    local,
                    transport,
                    data: chunk,
                    arrival,
                });
            }
        }
        _ => {
            stats.rx_batch_sizes[0] += 1;
            stats.rx_datagrams += 1;
            stats.rx_bytes += data.len() as u64;
            on_recv(Received {
                socket,
                source,
                local,
                transport,
                data,
                arrival,
            });
        }
    }
}

/// `poll(2)` timeout in milliseconds, rounded up so a short timeout does not spin.
pub(super) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

impl IoBackend for PortableBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Portable
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    fn poll(&mut self, timeout: Option<Duration>, on_recv: OnRecv<'_>) -> io::Result<()> {
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        let timeout = if self.tcp.pending() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        // SAFETY: `pollfds` is a live, correctly sized array of pollfd.
        let r = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                timeout_ms(timeout),
            )
        };
        self.tcp.scan(&mut self.stats);
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        if r == 0 && !self.tcp.pending() {
            return Ok(());
        }
        if self.pollfds.first().is_some_and(|p| p.revents != 0) && self.waker.drain() {
            self.stats.wakeups += 1;
        }
        for si in 0..self.sockets.len() {
            let ready = self
                .pollfds
                .get(si + 1)
                .is_some_and(|p| p.revents & (libc::POLLIN | libc::POLLERR) != 0);
            if ready {
                self.recv_socket(si, on_recv);
            }
        }
        let tcp_ready = self.tcp.enabled()
            && self
                .pollfds
                .get(self.sockets.len() + 1)
                .is_some_and(|p| p.revents != 0);
        if tcp_ready || self.tcp.pending() {
            self.tcp.process(&mut self.stats, on_recv);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush(&mut self.stats);
        if self.sendq.is_empty() {
            return Ok(());
        }
        for si in 0..self.sockets.len() {
            let Some(fd) = self.sockets.get(si).map(AsRawFd::as_raw_fd) else {
                continue;
            };
            self.send_slots.clear();
            for &i in self.sendq.queued() {
                if self.sendq.socket_of(i) == Some(si) {
                    self.send_slots.push(i);
                }
            }
            let m = self.send_slots.len();
            if m == 0 {
                continue;
            }
            if self.send_hdrs.len() < m {
                // SAFETY: all-zero mmsghdr is a valid empty value.
                let zero: libc::mmsghdr = unsafe { std::mem::zeroed() };
                self.send_hdrs.resize(m, zero);
            }
            for k in 0..m {
                let Some(&i) = self.send_slots.get(k) else {
                    break;
                };
                let Some(b) = self.sendq.batch_mut(i) else {
                    continue;
                };
                let msg = b.prepare_msg();
                if let Some(h) = self.send_hdrs.get_mut(k) {
                    // SAFETY: `prepare_msg` returns a pointer to the batch's own live msghdr.
                    h.msg_hdr = unsafe { *msg };
                    h.msg_len = 0;
                }
            }
            let mut off = 0;
            while off < m {
                // SAFETY: headers off..m are initialised above and point into batches that are
                // not touched until the loop ends.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.send_hdrs.as_mut_ptr().add(off),
                        (m - off) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                self.stats.send_syscalls += 1;
                if r < 0 {
                    let e = io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO);
                    if e == libc::EINTR {
                        continue;
                    }
                    if let Some(&i) = self.send_slots.get(off) {
                        self.sendq
                            .complete(i, Outcome::Failed(e), Some(fd), &mut self.stats);
                    }
                    off += 1;
                } else if r == 0 {
                    // Not expected for a non-empty vector; count it rather than loop.
                    if let Some(&i) = self.send_slots.get(off) {
                        self.sendq.complete(
                            i,
                            Outcome::Failed(libc::EAGAIN),
                            None,
                            &mut self.stats,
                        );
                    }
                    off += 1;
                } else {
                    let sent = (r as usize).min(m - off);
                    for k in off..off + sent {
                        if let Some(&i) = self.send_slots.get(k) {
                            self.sendq.complete(i, Outcome::Sent, None, &mut self.stats);
                        }
                    }
                    off += sent;
                }
            }
        }
        self.sendq.take_queued();
        Ok(())
    }

    shared_backend_methods!();
}

impl PortableBackend {
    queue_room_method!();
}
