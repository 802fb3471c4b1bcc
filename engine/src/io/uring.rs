//! The io_uring backend: multishot `recvmsg` on a provided-buffer ring, `sendmsg` (with
//! `UDP_SEGMENT` for GSO batches), an eventfd read kept in the ring, one `io_uring_enter`
//! per `poll` and per `flush`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use socket2::Socket;

use super::portable::deliver;
use super::send::{Outcome, SendHint, SendQueue};
use super::sys::{self, Mmap, NAME_LEN, RECV_CONTROL_LEN, RxClock, Waker};
use super::tcp::{TcpStreams, TcpVerdict};
use super::{BackendKind, IoBackend, IoConfig, IoStats, OnRecv, Received};

/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 0;
/// Size of `struct io_uring_recvmsg_out`, which precedes every multishot recvmsg buffer.
const RECVMSG_OUT: usize = 16;

/// What a submission is, carried in its `user_data` and read back from its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// The multishot receive of socket `n`.
    Recv(usize),
    /// The send batch in slot `n` of the send queue.
    Send(usize),
    /// The wake-up read of the waker's eventfd.
    Wake,
    /// The shutdown cancel-all.
    Cancel,
    /// The multishot poll of the ICE-TCP epoll set.
    Tcp,
}

impl Token {
    /// Bits of `user_data` above the index: the kind.
    const SHIFT: u32 = 56;
    const INDEX_MASK: u64 = (1 << Self::SHIFT) - 1;
    const RECV: u64 = 1;
    const SEND: u64 = 2;
    const WAKE: u64 = 3;
    const CANCEL: u64 = 4;
    const TCP: u64 = 5;

    /// Encodes the token: the kind in the top byte, the index below (indices are socket
    /// and send-slot numbers, far below 2^56).
    fn into_user_data(self) -> u64 {
        let (kind, idx) = match self {
            Token::Recv(i) => (Self::RECV, i),
            Token::Send(i) => (Self::SEND, i),
            Token::Wake => (Self::WAKE, 0),
            Token::Cancel => (Self::CANCEL, 0),
            Token::Tcp => (Self::TCP, 0),
        };
        (kind << Self::SHIFT) | (idx as u64 & Self::INDEX_MASK)
    }

    /// Decodes a completion's `user_data`; `None` for a value no submission carried.
    fn from_user_data(ud: u64) -> Option<Token> {
        // The index fits `usize`: it was encoded from one (and masked to 56 bits).
        let idx = usize::try_from(ud & Self::INDEX_MASK).ok()?;
        match ud >> Self::SHIFT {
            Self::RECV => Some(Token::Recv(idx)),
            Self::SEND => Some(Token::Send(idx)),
            Self::WAKE => Some(Token::Wake),
            Self::CANCEL => Some(Token::Cancel),
            Self::TCP => Some(Token::Tcp),
            _ => None,
        }
    }
}

/// Whether an error from [`UringBackend::open`] means "io_uring is not available here"
/// (kernel too old, disabled by sysctl, or refused by seccomp) rather than a real failure.
pub fn is_setup_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP | libc::EACCES)
    ) || e.kind() == io::ErrorKind::Unsupported
}

/// io_uring backend. See the [module docs](super).
pub struct UringBackend {
    // Field order matters for drop: the ring is closed (after the explicit cancel in `Drop`)
    // before the memory it referenced is unmapped.
    ring: IoUring,
    sockets: Vec<Socket>,
    locals: Vec<SocketAddr>,
    waker: Waker,
    wake_buf: Box<u64>,
    wake_armed: bool,
    recv_msg: Box<libc::msghdr>,
    recv_armed: Vec<bool>,
    control_len: usize,
    /// Receive timestamps asked for, and the clocks read when the completions of the
    /// current batch were reaped.
    timestamps: bool,
    rx_clock: RxClock,
    gro: bool,
    ring_mem: Mmap,
    bufs: Mmap,
    buf_size: usize,
    buf_count: usize,
    tail: u16,
    sendq: SendQueue,
    in_flight: usize,
    cqes: Vec<cqueue::Entry>,
    deferred: Vec<cqueue::Entry>,
    /// ICE-TCP listeners and connections; their epoll set is watched by a multishot poll.
    tcp: TcpStreams,
    tcp_armed: bool,
    /// The epoll set reported readiness since the last `TcpStreams::process`.
    tcp_ready: bool,
    stats: IoStats,
}

// SAFETY: the raw pointers (msghdr template, buffer ring, buffers) refer to memory owned by
// this value, and the ring is not set up with SINGLE_ISSUER, so the backend may be moved to
// another thread as a whole. It is never shared (`&self` methods only read counters/addrs).
unsafe impl Send for UringBackend {}

impl UringBackend {
    /// Sets up the ring, registers the provided-buffer ring and binds the sockets. The
    /// multishot receive per socket and the wake-up read are armed by the first
    /// [`IoBackend::poll`], on the thread that polls.
    ///
    /// # Errors
    ///
    /// The ring, buffer-ring, socket or waker set-up error; [`is_setup_refusal`] tells
    /// "io_uring is not available here" apart.
    pub fn open(cfg: &IoConfig) -> io::Result<Self> {
        let entries = cfg.ring_entries.clamp(8, 32_768).next_power_of_two();
        let buf_count = cfg.recv_buffers.count.clamp(1, 32_768).next_power_of_two();
        let cq = (entries as usize * 2)
            .max(buf_count + cfg.send_batches + 64)
            .next_power_of_two()
            .min(65_536);
        let ring: IoUring = IoUring::builder().setup_cqsize(cq as u32).build(entries)?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without IORING_FEAT_EXT_ARG",
            ));
        }
        let control_len = if cfg.gro || cfg.rx_timestamps {
            RECV_CONTROL_LEN
        } else {
            0
        };
        let mut payload = cfg.recv_buffers.size.max(1);
        if cfg.gro {
            payload = payload.max(65_535);
        }
        let buf_size = (RECVMSG_OUT + NAME_LEN + control_len + payload).next_multiple_of(64);
        let ring_mem = Mmap::new(buf_count * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mmap::new(buf_count * buf_size)?;
        let base = ring_mem.as_ptr().cast::<BufRingEntry>();
        for bid in 0..buf_count {
            // SAFETY: `ring_mem` holds `buf_count` zeroed entries; `bid < buf_count`.
            let e = unsafe { &mut *base.add(bid) };
            // SAFETY: `bufs` holds `buf_count * buf_size` bytes.
            e.set_addr(unsafe { bufs.as_ptr().add(bid * buf_size) } as u64);
            e.set_len(buf_size as u32);
            e.set_bid(bid as u16);
        }
        // `buf_count <= 32768`, so it fits the 16-bit tail.
        let tail = buf_count as u16;
        // SAFETY: `ring_mem` is page-aligned, sized for `buf_count` entries, and stays mapped
        // (field of the backend) until after the ring is closed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ring_mem.as_ptr() as u64,
                tail,
                BGID,
                0,
            )?;
        }
        let (sockets, locals) = sys::open_sockets(cfg)?;
        let tcp = TcpStreams::open(&cfg.tcp)?;
        // SAFETY: msghdr is a plain C struct; all-zero is valid. Only the name and control
        // lengths matter for multishot recvmsg.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = NAME_LEN as libc::socklen_t;
        recv_msg.msg_controllen = control_len;
        let n = sockets.len();
        let sendq = SendQueue::new(cfg.send_batches, cfg.gso, &locals);
        let me = Self {
            ring,
            recv_armed: vec![false; n],
            sockets,
            locals,
            waker: Waker::new()?,
            wake_buf: Box::new(0),
            wake_armed: false,
            recv_msg,
            control_len,
            timestamps: cfg.rx_timestamps,
            rx_clock: RxClock::now(),
            gro: cfg.gro,
            ring_mem,
            bufs,
            buf_size,
            buf_count,
            tail,
            sendq,
            in_flight: 0,
            cqes: Vec::with_capacity(cq),
            deferred: Vec::with_capacity(64),
            tcp,
            tcp_armed: false,
            tcp_ready: false,
            stats: IoStats::default(),
        };
        me.publish_tail();
        // Nothing is armed here: the first `poll` arms the receives on the thread that
        // polls. The kernel runs an operation's completion work (a multishot receive
        // retried after its socket became readable) on the thread that submitted it;
        // armed here, on the thread that opens the backends, every datagram a shard
        // received woke that thread as well (~10 % of the engine's CPU in a handshake
        // storm). Datagrams that arrive before that are kept in the socket's buffer.
        Ok(me)
    }

    fn publish_tail(&self) {
        // SAFETY: the tail lives inside entry 0 of the mapped ring (`BufRingEntry::tail`), is
        // 2-byte aligned and is only written by us; the kernel reads it concurrently, hence
        // the atomic release store.
        let t = unsafe { &*BufRingEntry::tail(self.ring_mem.as_ptr().cast()).cast::<AtomicU16>() };
        t.store(self.tail, Ordering::Release);
    }

    /// Gives buffer `bid` back to the kernel.
    fn recycle(&mut self, bid: u16) {
        let bid = usize::from(bid);
        if bid >= self.buf_count {
            return;
        }
        let idx = usize::from(self.tail) & (self.buf_count - 1);
        // SAFETY: idx < buf_count entries in `ring_mem`; the kernel does not read entries
        // beyond the published tail, and this slot is behind it until `publish_tail`.
        let e = unsafe { &mut *self.ring_mem.as_ptr().cast::<BufRingEntry>().add(idx) };
        // SAFETY: bid < buf_count, so the address is inside `bufs`.
        e.set_addr(unsafe { self.bufs.as_ptr().add(bid * self.buf_size) } as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid as u16);
        self.tail = self.tail.wrapping_add(1);
        self.publish_tail();
    }

    fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry we build references memory owned by `self` that outlives the
            // operation (msghdr template, wake buffer, boxed send batches kept until their CQE).
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.stats.uring_sqes += 1;
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Arms whatever is not armed: multishot receives and the wake-up read.
    fn arm(&mut self) {
        for i in 0..self.sockets.len() {
            if self.recv_armed.get(i).copied().unwrap_or(true) {
                continue;
            }
            let Some(fd) = self.sockets.get(i).map(AsRawFd::as_raw_fd) else {
                continue;
            };
            let e = opcode::RecvMsgMulti::new(Fd(fd), &raw const *self.recv_msg, BGID)
                .build()
                .user_data(Token::Recv(i).into_user_data());
            if self.push(&e).is_ok()
                && let Some(a) = self.recv_armed.get_mut(i)
            {
                *a = true;
            }
        }
        if !self.wake_armed {
            let e = opcode::Read::new(Fd(self.waker.raw_fd()), (&raw mut *self.wake_buf).cast(), 8)
                .build()
                .user_data(Token::Wake.into_user_data());
            if self.push(&e).is_ok() {
                self.wake_armed = true;
            }
        }
        if !self.tcp_armed
            && let Some(fd) = self.tcp.epoll_fd()
        {
            let e = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(Token::Tcp.into_user_data());
            if self.push(&e).is_ok() {
                self.tcp_armed = true;
            }
        }
    }

    /// Handles one send CQE; returns `false` if it is not a send.
    fn reap_send(&mut self, c: &cqueue::Entry) -> bool {
        let Some(Token::Send(slot)) = Token::from_user_data(c.user_data()) else {
            return false;
        };
        let r = c.result();
        let outcome = if r >= 0 {
            Outcome::Sent
        } else {
            Outcome::Failed(-r)
        };
        let fd = self
            .sendq
            .socket_of(slot)
            .and_then(|si| self.sockets.get(si))
            .map(AsRawFd::as_raw_fd);
        self.sendq.complete(slot, outcome, fd, &mut self.stats);
        self.in_flight = self.in_flight.saturating_sub(1);
        true
    }

    fn handle(&mut self, c: &cqueue::Entry, on_recv: &mut dyn FnMut(Received<'_>)) {
        if self.reap_send(c) {
            return;
        }
        let r = c.result();
        let flags = c.flags();
        match Token::from_user_data(c.user_data()) {
            Some(Token::Recv(idx)) => {
                if r >= 0 {
                    self.stats.recv_completions += 1;
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        self.on_buffer(idx, bid, r as usize, on_recv);
                        self.recycle(bid);
                    } else {
                        self.stats.drops.recv_error += 1;
                    }
                } else if -r == libc::ENOBUFS {
                    self.stats.buf_ring_exhausted += 1;
                } else if -r != libc::ECANCELED {
                    self.stats.drops.recv_error += 1;
                }
                if !cqueue::more(flags)
                    && let Some(a) = self.recv_armed.get_mut(idx)
                {
                    *a = false;
                    self.stats.recv_rearms += 1;
                }
            }
            Some(Token::Wake) => {
                self.wake_armed = false;
                // Also reset the counter: wakes that raced with this read (e.g. a second
                // `wake` after the read completed) must not cause another early return.
                let raced = self.waker.drain();
                if (r == 8 && *self.wake_buf > 0) || raced {
                    self.stats.wakeups += 1;
                }
            }
            Some(Token::Tcp) => {
                self.tcp_ready = true;
                if !cqueue::more(flags) {
                    self.tcp_armed = false;
                }
            }
            _ => {}
        }
    }

    fn on_buffer(
        &mut self,
        si: usize,
        bid: u16,
        len: usize,
        on_recv: &mut dyn FnMut(Received<'_>),
    ) {
        let bid = usize::from(bid);
        if bid >= self.buf_count {
            self.stats.drops.recv_error += 1;
            return;
        }
        let Some(&local) = self.locals.get(si) else {
            return;
        };
        let len = len.min(self.buf_size);
        // SAFETY: buffer `bid` lies inside `bufs` and is owned by us (not in the ring) from
        // its CQE until `recycle`; the kernel writes no other buffer into this range.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(self.bufs.as_ptr().add(bid * self.buf_size), len)
        };
        let Some((hdr, rest)) = buf.split_at_mut_checked(RECVMSG_OUT) else {
            self.stats.drops.recv_error += 1;
            return;
        };
        let word = |i: usize| -> usize {
            hdr.get(i * 4..i * 4 + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u32::from_ne_bytes(b) as usize)
        };
        let (namelen, controllen, payloadlen, mflags) = (word(0), word(1), word(2), word(3));
        let Some((name, rest)) = rest.split_at_mut_checked(NAME_LEN) else {
            self.stats.drops.recv_error += 1;
            return;
        };
        let Some((control, payload)) = rest.split_at_mut_checked(self.control_len) else {
            self.stats.drops.recv_error += 1;
            return;
        };
        if mflags & (libc::MSG_TRUNC as usize) != 0 || payloadlen > payload.len() {
            self.stats.drops.recv_truncated += 1;
            return;
        }
        let Some(source) = name
            .get(..namelen.min(NAME_LEN))
            .and_then(sys::parse_sockaddr)
        else {
            self.stats.drops.recv_error += 1;
            return;
        };
        let ctl = control
            .get(..controllen.min(self.control_len))
            .map(sys::parse_recv_control)
            .unwrap_or_default();
        let seg = ctl.seg.filter(|_| self.gro);
        let arrival = ctl.stamp_ns.and_then(|t| self.rx_clock.arrival(t));
        let Some(data) = payload.get_mut(..payloadlen) else {
            return;
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

    fn drain_cq(&mut self) {
        self.cqes.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        self.cqes.extend(&mut cq);
        self.stats.uring_cqes += self.cqes.len() as u64;
        if self.timestamps && !self.cqes.is_empty() {
            self.rx_clock = RxClock::now();
        }
    }
}

impl IoBackend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    fn poll(&mut self, timeout: Option<Duration>, on_recv: OnRecv<'_>) -> io::Result<()> {
        let mut deferred = std::mem::take(&mut self.deferred);
        let had_deferred = !deferred.is_empty();
        for c in deferred.drain(..) {
            self.handle(&c, on_recv);
        }
        self.deferred = deferred;
        self.arm();
        let ready = had_deferred || self.tcp.pending() || !self.ring.completion().is_empty();
        let res = if ready || timeout == Some(Duration::ZERO) {
            self.ring.submit()
        } else if let Some(d) = timeout {
            let ts = Timespec::from(d);
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        self.stats.recv_syscalls += 1;
        if let Err(e) = res {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        // A full completion queue may have more waiting (or overflowed): go round a few
        // times, without waiting, until it is empty.
        for _ in 0..4 {
            self.drain_cq();
            let cqes = std::mem::take(&mut self.cqes);
            let empty = cqes.is_empty();
            for c in &cqes {
                self.handle(c, on_recv);
            }
            self.cqes = cqes;
            if empty {
                break;
            }
        }
        self.cqes.clear();
        self.tcp.scan(&mut self.stats);
        if std::mem::take(&mut self.tcp_ready) || self.tcp.pending() {
            self.tcp.process(&mut self.stats, on_recv);
        }
        self.arm();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush(&mut self.stats);
        let n = self.sendq.queued().len();
        for k in 0..n {
            let Some(&slot) = self.sendq.queued().get(k) else {
                break;
            };
            let Some(b) = self.sendq.batch_mut(slot) else {
                continue;
            };
            let socket = b.socket;
            let msg = b.prepare_msg();
            let Some(fd) = self.sockets.get(socket).map(AsRawFd::as_raw_fd) else {
                self.sendq
                    .complete(slot, Outcome::Failed(libc::EBADF), None, &mut self.stats);
                continue;
            };
            let e = opcode::SendMsg::new(Fd(fd), msg)
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(Token::Send(slot).into_user_data());
            if let Err(err) = self.push(&e) {
                self.sendq
                    .complete(slot, Outcome::Failed(libc::EAGAIN), None, &mut self.stats);
                tracing::debug!(error = %err, "io_uring submit failed while queueing sends");
                continue;
            }
            self.in_flight += 1;
        }
        self.sendq.take_queued();
        if self.ring.submission().is_empty() {
            return Ok(());
        }
        self.ring.submit()?;
        self.stats.send_syscalls += 1;
        // Reap send completions right away so their batches return to the pool; keep the
        // rest for the next `poll`.
        self.drain_cq();
        let cqes = std::mem::take(&mut self.cqes);
        for c in &cqes {
            if !self.reap_send(c) {
                self.deferred.push(c.clone());
            }
        }
        self.cqes = cqes;
        self.cqes.clear();
        Ok(())
    }

    shared_backend_methods!();
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Cancel every outstanding operation and wait (bounded) for the kernel to let go of
        // the buffers, msghdrs and batches they reference before any of it is freed.
        let e = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(Token::Cancel.into_user_data());
        let deferred = std::mem::take(&mut self.deferred);
        for c in &deferred {
            self.note_terminal(c);
        }
        if self.push(&e).is_err() {
            return;
        }
        for _ in 0..100 {
            let pending = self.in_flight
                + usize::from(self.wake_armed)
                + usize::from(self.tcp_armed)
                + self.recv_armed.iter().filter(|a| **a).count();
            if pending == 0 {
                break;
            }
            let ts = Timespec::from(Duration::from_millis(10));
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.drain_cq();
            let cqes = std::mem::take(&mut self.cqes);
            for c in &cqes {
                self.note_terminal(c);
            }
            self.cqes = cqes;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

impl UringBackend {
    /// Shutdown bookkeeping: notes which operations have finished for good.
    fn note_terminal(&mut self, c: &cqueue::Entry) {
        if self.reap_send(c) {
            return;
        }
        match Token::from_user_data(c.user_data()) {
            Some(Token::Recv(idx)) if !cqueue::more(c.flags()) => {
                if let Some(a) = self.recv_armed.get_mut(idx) {
                    *a = false;
                }
            }
            Some(Token::Wake) => self.wake_armed = false,
            Some(Token::Tcp) if !cqueue::more(c.flags()) => self.tcp_armed = false,
            _ => {}
        }
    }
}

impl UringBackend {
    queue_room_method!();
}

#[cfg(test)]
mod token_tests {
    use super::Token;

    #[test]
    fn tokens_round_trip_through_user_data() {
        for t in [
            Token::Recv(0),
            Token::Recv(3),
            Token::Send(0),
            Token::Send(4095),
            Token::Wake,
            Token::Cancel,
            Token::Tcp,
        ] {
            assert_eq!(Token::from_user_data(t.into_user_data()), Some(t));
        }
        // Kinds differ even for the same index.
        assert_ne!(
            Token::Recv(1).into_user_data(),
            Token::Send(1).into_user_data()
        );
        assert_eq!(Token::from_user_data(0), None);
        assert_eq!(Token::from_user_data(u64::MAX), None);
    }
}
