//! Datagram I/O backends driven by one shard thread each.
//!
//! Two implementations of [`IoBackend`] exist:
//!
//! * [`BackendKind::IoUring`]: multishot `recvmsg` on a registered provided-buffer ring,
//!   `sendmsg` with `UDP_SEGMENT` (GSO) control messages, an `eventfd` read kept in the ring
//!   for cross-thread wake-ups, and one `io_uring_enter` per loop iteration.
//! * [`BackendKind::Portable`]: `poll(2)` over the sockets and the `eventfd`, `recvmmsg` for
//!   receive, one `sendmmsg` per socket for send. Used where io_uring is refused (e.g. the
//!   default Docker seccomp profile).
//!
//! Both batch outgoing datagrams the same way (see [`IoBackend::queue_send`]) and both split
//! GRO-coalesced receive buffers back into datagrams before handing them to the caller.
//!
//! A backend is owned by exactly one shard thread; it is `Send` so that it may be created on
//! one thread and moved to its shard, but it is never shared.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The [`IoBackend`] methods both backends implement alike, from their fields `tcp` (a
/// [`tcp::TcpStreams`]), `waker` and `stats`: expanded inside each backend's
/// `impl IoBackend`.
macro_rules! shared_backend_methods {
    () => {
        fn tcp_local_addrs(&self) -> &[SocketAddr] {
            self.tcp.local_addrs()
        }

        fn tcp_send(&mut self, peer: SocketAddr, data: &[u8]) -> bool {
            self.tcp.send(peer, data, &mut self.stats)
        }

        fn tcp_verdict(&mut self, peer: SocketAddr, verdict: TcpVerdict) {
            self.tcp.verdict(peer, verdict, &mut self.stats);
        }

        fn tcp_take_closed(&mut self, out: &mut Vec<SocketAddr>) {
            self.tcp.take_closed(out);
        }

        fn waker(&self) -> Waker {
            self.waker.clone()
        }

        fn stats(&self) -> &IoStats {
            &self.stats
        }

        fn queue_send(&mut self, socket: usize, dest: SocketAddr, data: &[u8]) -> bool {
            self.queue_room();
            self.sendq
                .push_hinted(socket, dest, data, &mut self.stats, None)
        }

        fn queue_send_hinted(
            &mut self,
            socket: usize,
            dest: SocketAddr,
            data: &[u8],
            hint: &mut SendHint,
        ) -> bool {
            self.queue_room();
            self.sendq
                .push_hinted(socket, dest, data, &mut self.stats, Some(hint))
        }

        fn lend_send_buf(&mut self) -> Option<$crate::io::SendBuf> {
            self.queue_room();
            self.sendq.lend()
        }

        fn queue_send_buf(
            &mut self,
            socket: usize,
            dest: SocketAddr,
            buf: $crate::io::SendBuf,
            len: usize,
            hint: &mut SendHint,
        ) -> bool {
            self.queue_room();
            self.sendq
                .push_lent(socket, dest, buf, len, &mut self.stats, Some(hint))
        }

        fn return_send_buf(&mut self, buf: $crate::io::SendBuf) {
            self.sendq.give_back(buf);
        }
    };
}

/// The backends' `queue_room`: when the send queue has no room left
/// ([`SendQueue::is_full`](send::SendQueue::is_full)), submits what it holds (reaping
/// the completions, which frees the batches) before a datagram is queued, instead of
/// dropping the datagram. A fan-out wider than the queue then leaves in parts.
macro_rules! queue_room_method {
    () => {
        fn queue_room(&mut self) {
            if !self.sendq.is_full() {
                return;
            }
            if let Err(e) = <Self as $crate::io::IoBackend>::flush(self) {
                tracing::debug!(error = %e, "flush for room in the send queue failed");
            }
        }
    };
}

mod send;
mod sys;

pub mod cpu;
pub mod portable;
pub mod signal;
pub mod tcp;
pub mod uring;

pub use send::{SendBuf, SendHint};

/// Bytes of a buffer lent by [`IoBackend::lend_send_buf`].
pub const SEND_BUF_LEN: usize = send::CHUNK;
pub use sys::Waker;
pub use tcp::{TcpConfig, TcpStats, TcpVerdict};

/// Largest UDP payload that can be sent in one datagram (and one GSO send) over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Largest number of segments the backends put into one GSO send.
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Which implementation a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// io_uring with multishot receive and provided buffer rings.
    IoUring,
    /// `poll` + `recvmmsg` + `sendmmsg`.
    Portable,
}

/// What [`open_backend`] should try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendPreference {
    /// io_uring, falling back to the portable backend when the kernel or a seccomp policy
    /// refuses io_uring.
    #[default]
    Auto,
    /// io_uring only; fail when it cannot be set up.
    IoUring,
    /// The portable backend only.
    Portable,
}

/// Receive buffer pool shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvBuffers {
    /// Number of buffers (for io_uring: entries of the provided-buffer ring, rounded up to a
    /// power of two, at most 32768).
    pub count: usize,
    /// Payload capacity of each buffer in bytes. When GRO is on the backends raise this to
    /// 65,535 so that a coalesced buffer is never truncated.
    pub size: usize,
}

/// Backend configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoConfig {
    /// One UDP socket is bound per address (IPv4 and/or IPv6; IPv6 sockets are v6-only).
    pub bind: Vec<SocketAddr>,
    /// Requested `SO_RCVBUF` in bytes (0 = leave the kernel default).
    pub recv_buffer_bytes: usize,
    /// Requested `SO_SNDBUF` in bytes (0 = leave the kernel default).
    pub send_buffer_bytes: usize,
    /// Enable `UDP_GRO` on the sockets (coalesced receive, split before the callback).
    pub gro: bool,
    /// Ask the kernel for each datagram's receive time (`SO_TIMESTAMPNS`), handed over as
    /// [`Received::arrival`]: transport-wide congestion feedback then reports when a
    /// datagram reached the host, not when a busy shard got to read it (a shard
    /// descheduled for 20 ms would otherwise show the sender 20 ms of queueing delay
    /// that no network had).
    pub rx_timestamps: bool,
    /// Coalesce equal-size datagrams to one destination into one `UDP_SEGMENT` send.
    pub gso: bool,
    /// io_uring submission queue entries (the completion queue gets four times as many).
    pub ring_entries: u32,
    /// Receive buffers.
    pub recv_buffers: RecvBuffers,
    /// Maximum number of send batches (one batch = one `sendmsg`, up to 64 datagrams)
    /// pending between two flushes (io_uring: also in flight). When every batch is taken,
    /// queueing a datagram first submits what is queued (as [`IoBackend::flush`] does),
    /// so a fan-out to more destinations than this leaves in parts; only a datagram that
    /// still finds no room is dropped and counted in [`DropStats::queue_full`].
    pub send_batches: usize,
    /// ICE-TCP listeners and their bounds (no listener by default).
    pub tcp: TcpConfig,
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            recv_buffer_bytes: 4 << 20,
            send_buffer_bytes: 4 << 20,
            gro: true,
            rx_timestamps: true,
            gso: true,
            ring_entries: 1024,
            recv_buffers: RecvBuffers {
                count: 256,
                size: 2048,
            },
            send_batches: 256,
            tcp: TcpConfig::default(),
        }
    }
}

/// The transport a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP socket of [`IoConfig::bind`].
    Udp,
    /// An ICE-TCP connection accepted on a listener of [`TcpConfig::bind`]; the datagram
    /// is one RFC 4571 frame.
    Tcp,
}

/// One received datagram, handed to the `on_recv` callback of [`IoBackend::poll`].
#[derive(Debug)]
pub struct Received<'a> {
    /// Index of the receiving socket in [`IoConfig::bind`] / [`IoBackend::local_addrs`]
    /// (TCP: of the listener in [`TcpConfig::bind`] / [`IoBackend::tcp_local_addrs`]).
    pub socket: usize,
    /// Sender address.
    pub source: SocketAddr,
    /// Local address of the receiving socket.
    pub local: SocketAddr,
    /// UDP datagram or TCP frame.
    pub transport: Transport,
    /// The payload, mutable so it can be decrypted in place. Valid only during the callback.
    pub data: &'a mut [u8],
    /// When the kernel received it ([`IoConfig::rx_timestamps`]), on the monotonic clock;
    /// `None` without a timestamp (TCP, the option off or refused, a stamp over 2 s old
    /// or from the future).
    pub arrival: Option<Instant>,
}

/// Datagrams dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    /// `queue_send` found no free send batch even after submitting what was queued
    /// (batches still in flight).
    pub queue_full: u64,
    /// `queue_send` got an empty datagram or one larger than [`MAX_UDP_PAYLOAD`].
    pub too_large: u64,
    /// `queue_send` got a socket index that does not exist.
    pub bad_socket: u64,
    /// `queue_send` got an IPv6 destination for an IPv4 socket or vice versa.
    pub family_mismatch: u64,
    /// The kernel answered `EAGAIN`/`ENOBUFS` to a send (socket buffer full).
    pub send_would_block: u64,
    /// Any other send error (e.g. `ECONNREFUSED`, `ENETUNREACH`, `EMSGSIZE`).
    pub send_error: u64,
    /// A received datagram did not fit its buffer (`MSG_TRUNC`).
    pub recv_truncated: u64,
    /// A receive completed with an error, or with an unparseable source address.
    pub recv_error: u64,
    /// An ICE-TCP frame did not fit its connection's send buffer (a slow or stalled
    /// peer; see [`TcpConfig::send_buffer`]).
    pub tcp_send_full: u64,
}

/// Backend counters. All values are totals since the backend was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Datagrams delivered to the `on_recv` callback (after GRO splitting).
    pub rx_datagrams: u64,
    /// Payload bytes delivered to the `on_recv` callback.
    pub rx_bytes: u64,
    /// Datagrams handed to the kernel successfully (GSO segments counted individually).
    pub tx_datagrams: u64,
    /// Payload bytes handed to the kernel successfully.
    pub tx_bytes: u64,
    /// Receive syscalls (portable: `recvmmsg` calls) or ring waits (io_uring:
    /// `io_uring_enter` calls made by `poll`).
    pub recv_syscalls: u64,
    /// Receive completions: buffers filled by the kernel (portable: messages returned by
    /// `recvmmsg`; io_uring: successful multishot `recvmsg` CQEs).
    pub recv_completions: u64,
    /// Send syscalls (portable: `sendmmsg` calls; io_uring: submits made by `flush`).
    pub send_syscalls: u64,
    /// Send messages (`sendmsg` units; each is one datagram or one GSO batch).
    pub send_messages: u64,
    /// Received buffers that carried more than one GRO-coalesced datagram.
    pub gro_coalesced: u64,
    /// Datagrams that arrived inside such coalesced buffers.
    pub gro_segments: u64,
    /// Sends carrying a `UDP_SEGMENT` control message (more than one segment).
    pub gso_sends: u64,
    /// Datagrams sent inside GSO sends.
    pub gso_segments: u64,
    /// GSO sends the kernel refused (`EIO`/`EINVAL`/`EMSGSIZE`) and that were resent as
    /// individual datagrams.
    pub gso_fallbacks: u64,
    /// io_uring: times the provided-buffer ring ran dry (`ENOBUFS`) and the multishot
    /// receive was re-armed.
    pub buf_ring_exhausted: u64,
    /// io_uring: multishot receive re-arms for any reason (including the above).
    pub recv_rearms: u64,
    /// Wake-ups consumed (eventfd reads that returned a non-zero count).
    pub wakeups: u64,
    /// Dropped datagrams by reason.
    pub drops: DropStats,
    /// io_uring: submission queue entries pushed (receives armed, wake-up reads, sends).
    /// Portable backend: 0.
    pub uring_sqes: u64,
    /// io_uring: completion queue entries reaped. Portable backend: 0.
    pub uring_cqes: u64,
    /// Datagrams per successful send message (one datagram, or one GSO batch), as a
    /// distribution over [`BATCH_SIZE_BOUNDS`]: entry `i` counts messages of more than
    /// `BATCH_SIZE_BOUNDS[i - 1]` and at most `BATCH_SIZE_BOUNDS[i]` datagrams.
    pub tx_batch_sizes: [u64; BATCH_SIZE_BUCKETS],
    /// Datagrams per received buffer (1, or the segments of a GRO-coalesced buffer), as
    /// a distribution over [`BATCH_SIZE_BOUNDS`] like [`IoStats::tx_batch_sizes`].
    pub rx_batch_sizes: [u64; BATCH_SIZE_BUCKETS],
    /// ICE-TCP connections.
    pub tcp: TcpStats,
}

/// Number of buckets of [`IoStats::tx_batch_sizes`] and [`IoStats::rx_batch_sizes`].
pub const BATCH_SIZE_BUCKETS: usize = 8;

/// Upper bounds (datagrams, inclusive) of the batch size buckets; the last one catches
/// everything larger (a GRO buffer can hold more than [`MAX_GSO_SEGMENTS`] datagrams).
pub const BATCH_SIZE_BOUNDS: [u64; BATCH_SIZE_BUCKETS] = [1, 2, 4, 8, 16, 32, 64, u64::MAX];

/// The bucket of [`BATCH_SIZE_BOUNDS`] that a batch of `n` datagrams falls in.
pub(crate) fn batch_bucket(n: u64) -> usize {
    // ceil(log2(n)) for n >= 1, capped at the last bucket; no loop, no branch per bucket.
    let b = if n <= 1 {
        0
    } else {
        (u64::BITS - (n - 1).leading_zeros()) as usize
    };
    b.min(BATCH_SIZE_BUCKETS - 1)
}

/// The callback [`IoBackend::poll`] hands each received datagram to.
pub type OnRecv<'a> = &'a mut dyn FnMut(Received<'_>);

/// A datagram I/O backend, owned and driven by one shard thread.
pub trait IoBackend: Send {
    /// Which implementation this is.
    fn kind(&self) -> BackendKind;

    /// The bound local addresses, one per socket, in [`IoConfig::bind`] order (with the
    /// real port when port 0 was requested).
    fn local_addrs(&self) -> &[SocketAddr];

    /// Waits for datagrams and hands each one to `on_recv`.
    ///
    /// Returns after processing whatever arrived, after a [`Waker::wake`], or when
    /// `timeout` elapses (`None` = no timeout, `Some(Duration::ZERO)` = do not block).
    /// Never busy-waits. Also submits anything still queued in the io_uring submission
    /// queue and reaps send completions.
    ///
    /// # Errors
    ///
    /// A failed wait or submit (the caller logs it and carries on).
    fn poll(&mut self, timeout: Option<Duration>, on_recv: OnRecv<'_>) -> io::Result<()>;

    /// Copies `data` into a pooled send batch for `dest` on socket `socket`.
    ///
    /// Consecutive datagrams of equal size to one destination (on one socket) share a batch
    /// and leave as one GSO send when [`IoConfig::gso`] is on: a batch holds up to
    /// [`MAX_GSO_SEGMENTS`] segments and [`MAX_UDP_PAYLOAD`] bytes, and its last segment may
    /// be shorter. Nothing is sent before [`IoBackend::flush`]. Returns `false` when the
    /// datagram was dropped (counted in [`IoStats::drops`]).
    fn queue_send(&mut self, socket: usize, dest: SocketAddr, data: &[u8]) -> bool;

    /// [`IoBackend::queue_send`] for a sender that keeps a [`SendHint`]: its datagram
    /// joins the batch its previous one went into (same socket and destination, still
    /// open, since the last flush) without looking the destination up, so its datagrams
    /// group even when other senders' are queued in between. The hint is updated.
    fn queue_send_hinted(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        data: &[u8],
        hint: &mut SendHint,
    ) -> bool {
        let _ = hint;
        self.queue_send(socket, dest, data)
    }

    /// Lends a send buffer of [`SEND_BUF_LEN`] bytes from the send queue's pool, to
    /// write a datagram into and queue it there with [`IoBackend::queue_send_buf`]
    /// (no copy) or give it back with [`IoBackend::return_send_buf`]. `None` when the
    /// queue holds as many buffers as it may (then [`IoBackend::queue_send`] would drop
    /// too). Never allocates once the pool has grown to the busiest iteration's need.
    fn lend_send_buf(&mut self) -> Option<SendBuf>;

    /// [`IoBackend::queue_send_hinted`] for a datagram of `len` bytes written at the start
    /// of a lent buffer: the buffer itself joins the send batch. Returns `false` when
    /// the datagram was dropped (counted in [`IoStats::drops`]; the buffer goes back to
    /// the pool).
    fn queue_send_buf(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        buf: SendBuf,
        len: usize,
        hint: &mut SendHint,
    ) -> bool;

    /// Gives an unused lent buffer back to the pool.
    fn return_send_buf(&mut self, buf: SendBuf);

    /// Hands all queued batches to the kernel in one submit (io_uring) or one `sendmmsg`
    /// per socket (portable). Send errors are counted as drops, never retried or blocked on.
    ///
    /// # Errors
    ///
    /// A failed submit (per-datagram send errors are counted as drops instead).
    fn flush(&mut self) -> io::Result<()>;

    /// The ICE-TCP listening addresses, one per [`TcpConfig::bind`] entry (empty: no TCP).
    fn tcp_local_addrs(&self) -> &[SocketAddr];

    /// Queues one RFC 4571 frame on the ICE-TCP connection from `peer`; written at the
    /// next [`IoBackend::flush`]. Returns `false` when it was dropped (no such connection,
    /// or its send buffer is full: [`DropStats::tcp_send_full`]).
    fn tcp_send(&mut self, peer: SocketAddr, data: &[u8]) -> bool;

    /// Applies the shard's verdict on the ICE-TCP connection from `peer`.
    fn tcp_verdict(&mut self, peer: SocketAddr, verdict: TcpVerdict);

    /// Moves the peers of ICE-TCP connections closed since the last call into `out`.
    fn tcp_take_closed(&mut self, out: &mut Vec<SocketAddr>);

    /// A handle that wakes a blocked [`IoBackend::poll`] from any thread.
    fn waker(&self) -> Waker;

    /// Counters.
    fn stats(&self) -> &IoStats;
}

/// Opens a backend.
///
/// With [`BackendPreference::Auto`], io_uring is tried first; when ring setup or buffer-ring
/// registration is refused (`EPERM`, `ENOSYS`, `EINVAL`, `EOPNOTSUPP`, as under Docker's
/// default seccomp profile) the portable backend is opened instead and the reason logged.
///
/// # Errors
///
/// The backend's open error (for `Auto`, the portable backend's when io_uring is
/// unavailable, else io_uring's).
pub fn open_backend(pref: BackendPreference, cfg: &IoConfig) -> io::Result<Box<dyn IoBackend>> {
    match pref {
        BackendPreference::Portable => Ok(Box::new(portable::PortableBackend::open(cfg)?)),
        BackendPreference::IoUring => Ok(Box::new(uring::UringBackend::open(cfg)?)),
        BackendPreference::Auto => match uring::UringBackend::open(cfg) {
            Ok(b) => {
                tracing::info!("io backend: io_uring");
                Ok(Box::new(b))
            }
            Err(e) if uring::is_setup_refusal(&e) => {
                tracing::warn!(error = %e, "io_uring refused; falling back to the portable backend");
                Ok(Box::new(portable::PortableBackend::open(cfg)?))
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests;
