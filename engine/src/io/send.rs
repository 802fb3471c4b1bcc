//! Send batching shared by both backends: pooled buffers grouped per (socket, destination,
//! segment size), each batch leaving as one `sendmsg` (with `UDP_SEGMENT` when it holds more
//! than one datagram).

use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

use super::sys::{GSO_CONTROL_LEN, GsoControl};
use super::{IoStats, MAX_GSO_SEGMENTS, MAX_UDP_PAYLOAD};

/// Open batches a datagram queued without a [`SendHint`] may join: the newest few (a
/// caller's datagrams to one destination are mostly consecutive).
const PROBE: usize = 4;

/// Where a caller's previous datagram was queued, so that its next one to the same
/// destination joins that batch without a lookup (the queue keeps no destination map: no
/// hashing per datagram, nothing a remote peer's choice of address could degrade).
///
/// Valid until the queue's next flush; the queue checks it (generation, socket,
/// destination) before use, so a stale or foreign hint only costs a new batch. Keep one
/// per sender (a session) and pass it to every [`super::IoBackend::queue_send_hinted`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SendHint {
    /// The queue's flush generation when the hint was set (0: never set).
    generation: u64,
    slot: usize,
}

/// Batches allocated when the queue is created; more are allocated (once each) on demand up
/// to the configured maximum.
const PREALLOCATED: usize = 16;
/// Size of one pooled buffer chunk. Each datagram of a batch starts a chunk of its own
/// and takes as many as it needs (one `iovec` each; GSO segments the concatenation of
/// the `iovec`s, wherever their boundaries fall), so the memory a queue holds follows
/// the datagrams queued in one loop iteration instead of a 64 KiB buffer per
/// destination, and a datagram can be written in place in a chunk lent before it is
/// queued ([`SendBuf`]).
pub(crate) const CHUNK: usize = 2048;
/// Chunks (and `iovec`s) one batch can hold: one per segment of a full GSO batch of
/// datagrams up to [`CHUNK`] bytes; a larger datagram takes several (a batch of
/// 65,507 bytes in datagrams of 2,049 bytes takes 62).
const MAX_CHUNKS: usize = MAX_GSO_SEGMENTS;

/// A send buffer lent by the backend ([`super::IoBackend::lend_send_buf`]): the caller
/// writes a datagram into it and queues it with
/// [`super::IoBackend::queue_send_buf`] — the datagram then goes out from where it was
/// written, without a copy — or hands it back with
/// [`super::IoBackend::return_send_buf`]. Dropping it instead only loses the chunk to
/// the pool (it is freed).
#[derive(Debug)]
pub struct SendBuf(Box<[u8]>);

impl SendBuf {
    /// The buffer ([`CHUNK`] bytes: 2,048).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A datagram to queue: bytes to copy, or a lent chunk holding `len` bytes (taken out
/// of the `Option` once it is placed in a batch).
enum Datagram<'a> {
    Copy(&'a [u8]),
    Lent(Option<Box<[u8]>>, usize),
}

impl Datagram<'_> {
    fn len(&self) -> usize {
        match self {
            Datagram::Copy(d) => d.len(),
            Datagram::Lent(_, n) => *n,
        }
    }
}

/// The shared pool of chunks. Chunks are allocated on demand (once each, up to the most
/// ever queued at the same time) and returned when their batch completes; `spare` keeps a
/// capacity of every chunk ever made, so returning one never allocates.
struct ChunkPool {
    spare: Vec<Box<[u8]>>,
    made: usize,
    limit: usize,
}

impl ChunkPool {
    fn take(&mut self) -> Option<Box<[u8]>> {
        if let Some(c) = self.spare.pop() {
            return Some(c);
        }
        if self.made >= self.limit {
            return None;
        }
        self.made += 1;
        // `spare` is empty here: room for every chunk made so far.
        self.spare.reserve(self.made);
        Some(vec![0u8; CHUNK].into_boxed_slice())
    }

    fn give(&mut self, c: Box<[u8]>) {
        self.spare.push(c);
    }
}

/// One pending `sendmsg`: a destination and one or more equal-size segments (the last may be
/// shorter). Boxed by the queue so that the `msghdr` pointers into it stay valid while the
/// kernel owns it.
pub(crate) struct Batch {
    pub(crate) socket: usize,
    /// `dest` as given (compared by the grouping; `dest` is its encoding for the kernel).
    to: SocketAddr,
    dest: SockAddr,
    seg: usize,
    pub(crate) segs: usize,
    closed: bool,
    /// Bytes queued over `chunks`.
    len: usize,
    /// Pooled chunks holding the datagrams, each starting a chunk (capacity
    /// [`MAX_CHUNKS`], never reallocated; the chunks' heap memory does not move while
    /// the kernel reads it).
    chunks: Vec<Box<[u8]>>,
    control: GsoControl,
    /// One per chunk, set as the chunk joins: its start and the bytes used in it.
    iov: [libc::iovec; MAX_CHUNKS],
    msg: libc::msghdr,
}

// SAFETY: the raw pointers inside `iov`/`msg` point only into this same heap-allocated batch
// and the chunks it owns; they carry no shared ownership and moving the batch's owner
// between threads is sound.
unsafe impl Send for Batch {}

impl Batch {
    fn new() -> Box<Self> {
        Box::new(Self {
            socket: 0,
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            dest: SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            seg: 0,
            segs: 0,
            closed: true,
            len: 0,
            chunks: Vec::with_capacity(MAX_CHUNKS),
            control: GsoControl::new(0),
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_CHUNKS],
            // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Bytes queued in this batch.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The queued bytes, chunk by chunk.
    pub(crate) fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.chunks
            .iter()
            .zip(self.iov.iter())
            .map(|(c, v)| c.get(..v.iov_len).unwrap_or(&[]))
    }

    /// Adds `c` with its first `n` bytes used as the batch's next chunk. The caller
    /// checked that there is room (`chunks.len() < MAX_CHUNKS`) and `n <= c.len()`.
    fn push_chunk(&mut self, mut c: Box<[u8]>, n: usize) {
        if let Some(v) = self.iov.get_mut(self.chunks.len()) {
            *v = libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: n,
            };
            self.chunks.push(c);
            self.len += n;
        }
    }

    /// Appends `d` as the batch's next datagram (a lent chunk is taken out of `d`);
    /// `false` (nothing appended, `d` as it was) when the batch has no `iovec` left
    /// for it or the pool is exhausted.
    fn put(&mut self, pool: &mut ChunkPool, d: &mut Datagram<'_>) -> bool {
        match d {
            Datagram::Copy(data) => self.append(pool, data),
            Datagram::Lent(c, n) => {
                if self.chunks.len() >= MAX_CHUNKS || c.as_ref().is_none_or(|c| *n > c.len()) {
                    return false;
                }
                match c.take() {
                    Some(c) => {
                        self.push_chunk(c, *n);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// Appends `data` as the batch's next datagram, starting a chunk, taking chunks from
    /// `pool` as needed; `false` (nothing appended) when the batch would exceed
    /// [`MAX_CHUNKS`] or the pool is exhausted.
    fn append(&mut self, pool: &mut ChunkPool, data: &[u8]) -> bool {
        let need = data.len().div_ceil(CHUNK).max(1);
        if self.chunks.len() + need > MAX_CHUNKS {
            return false;
        }
        let had = self.chunks.len();
        let mut rest = data;
        for _ in 0..need {
            let Some(mut c) = pool.take() else {
                while self.chunks.len() > had {
                    if let Some(c) = self.chunks.pop() {
                        self.len -= self.iov[self.chunks.len()].iov_len;
                        pool.give(c);
                    }
                }
                return false;
            };
            let n = rest.len().min(CHUNK);
            let (head, tail) = rest.split_at(n);
            // Pool chunks are CHUNK bytes long and n <= CHUNK.
            if let Some(dst) = c.get_mut(..n) {
                dst.copy_from_slice(head);
            }
            self.push_chunk(c, n);
            rest = tail;
        }
        true
    }

    /// Returns the chunks to `pool` and empties the batch.
    fn release(&mut self, pool: &mut ChunkPool) {
        while let Some(c) = self.chunks.pop() {
            pool.give(c);
        }
        self.len = 0;
    }

    /// Fills in the `msghdr` for this batch and returns it. The pointers stay valid until the
    /// batch is mutated or released.
    pub(crate) fn prepare_msg(&mut self) -> *const libc::msghdr {
        // The `iovec`s were set as the chunks joined.
        let n = self.chunks.len();
        self.msg.msg_name = self.dest.as_ptr().cast_mut().cast();
        self.msg.msg_namelen = self.dest.len();
        self.msg.msg_iov = self.iov.as_mut_ptr();
        // At most MAX_CHUNKS (64): fits any integer type the platform uses here.
        self.msg.msg_iovlen = n as _;
        self.msg.msg_flags = 0;
        if self.segs > 1 {
            // `seg` never exceeds MAX_UDP_PAYLOAD (< u16::MAX) when a batch has several segments.
            self.control = GsoControl::new(u16::try_from(self.seg).unwrap_or(u16::MAX));
            self.msg.msg_control = self.control.0.as_mut_ptr().cast();
            self.msg.msg_controllen = GSO_CONTROL_LEN;
        } else {
            self.msg.msg_control = std::ptr::null_mut();
            self.msg.msg_controllen = 0;
        }
        &raw const self.msg
    }
}

/// What happened to one batch once the kernel answered.
pub(crate) enum Outcome {
    /// Handed to the kernel.
    Sent,
    /// Failed with this errno.
    Failed(i32),
}

/// Pooled, grouped send queue.
pub(crate) struct SendQueue {
    // Boxed on purpose: io_uring holds pointers into in-flight batches, which must not move
    // when the pool grows.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Batch>>,
    free: Vec<usize>,
    queued: Vec<usize>,
    /// Flush generation (starts at 1; [`SendHint`]s of other generations are stale).
    generation: u64,
    max: usize,
    gso: bool,
    v6: Vec<bool>,
    pool: ChunkPool,
    /// A batch's bytes made contiguous for the unsegmented fallback (rare path).
    gather: Vec<u8>,
}

impl SendQueue {
    pub(crate) fn new(max_batches: usize, gso: bool, locals: &[SocketAddr]) -> Self {
        let max = max_batches.max(1);
        let pre = max.min(PREALLOCATED);
        let mut q = Self {
            slots: Vec::with_capacity(max),
            free: Vec::with_capacity(max),
            queued: Vec::with_capacity(max),
            generation: 1,
            max,
            gso,
            v6: locals.iter().map(SocketAddr::is_ipv6).collect(),
            pool: ChunkPool {
                spare: Vec::new(),
                made: 0,
                limit: max * MAX_CHUNKS,
            },
            gather: Vec::new(),
        };
        for i in 0..pre {
            q.slots.push(Batch::new());
            q.free.push(i);
        }
        // One chunk per preallocated batch.
        let chunks: Vec<_> = (0..pre).filter_map(|_| q.pool.take()).collect();
        for c in chunks {
            q.pool.give(c);
        }
        q
    }

    /// Chunks allocated so far (the queue's buffer memory is this times [`CHUNK`]).
    #[cfg(test)]
    fn chunks_made(&self) -> usize {
        self.pool.made
    }

    /// Queues one datagram; `false` = dropped (counted in `stats`). It joins the newest
    /// batch to the same (socket, destination) if that is among the newest [`PROBE`]
    /// queued and still open.
    #[cfg(test)]
    pub(crate) fn push(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        data: &[u8],
        stats: &mut IoStats,
    ) -> bool {
        self.push_hinted(socket, dest, data, stats, None)
    }

    /// Whether `data` can join slot `i` as its next segment.
    fn joins(&self, i: usize, socket: usize, dest: SocketAddr, len: usize) -> bool {
        self.slots.get(i).is_some_and(|b| {
            !b.closed
                && b.socket == socket
                && b.to == dest
                && len <= b.seg
                && b.len + len <= MAX_UDP_PAYLOAD
        })
    }

    /// Queues one datagram; `false` = dropped (counted in `stats`). With a `hint` it joins
    /// the open batch the hint names when that batch still goes to the same (socket,
    /// destination), and the hint then names the batch it went into; without one it
    /// joins the newest batch to the destination when that is among the newest [`PROBE`]
    /// and still open. A sender's datagrams to one destination stay in order as long as it
    /// queues them all with its hint or all without.
    pub(crate) fn push_hinted(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        data: &[u8],
        stats: &mut IoStats,
        hint: Option<&mut SendHint>,
    ) -> bool {
        self.push_datagram(socket, dest, Datagram::Copy(data), stats, hint)
    }

    /// A chunk to write a datagram into (for [`SendQueue::push_lent`]); `None` when the
    /// queue's chunk limit is reached.
    pub(crate) fn lend(&mut self) -> Option<SendBuf> {
        self.pool.take().map(SendBuf)
    }

    /// Takes back a lent chunk unused.
    pub(crate) fn give_back(&mut self, buf: SendBuf) {
        self.pool.give(buf.0);
    }

    /// [`SendQueue::push_hinted`] for a datagram of `len` bytes written in the lent
    /// chunk `buf`: the chunk joins the batch as it is, without a copy (the chunk goes
    /// back to the pool when the datagram is dropped).
    pub(crate) fn push_lent(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        buf: SendBuf,
        len: usize,
        stats: &mut IoStats,
        hint: Option<&mut SendHint>,
    ) -> bool {
        if len > buf.0.len() {
            self.pool.give(buf.0);
            stats.drops.too_large += 1;
            return false;
        }
        self.push_datagram(socket, dest, Datagram::Lent(Some(buf.0), len), stats, hint)
    }

    /// [`SendQueue::push_hinted`] for a datagram to copy or a lent chunk.
    fn push_datagram(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        mut data: Datagram<'_>,
        stats: &mut IoStats,
        hint: Option<&mut SendHint>,
    ) -> bool {
        let ok = self.place(socket, dest, &mut data, stats, hint);
        if let Datagram::Lent(Some(c), _) = data {
            // Not placed (dropped): the chunk goes back to the pool.
            self.pool.give(c);
        }
        ok
    }

    fn place(
        &mut self,
        socket: usize,
        dest: SocketAddr,
        data: &mut Datagram<'_>,
        stats: &mut IoStats,
        hint: Option<&mut SendHint>,
    ) -> bool {
        let len = data.len();
        let Some(&v6) = self.v6.get(socket) else {
            stats.drops.bad_socket += 1;
            return false;
        };
        if v6 != dest.is_ipv6() {
            stats.drops.family_mismatch += 1;
            return false;
        }
        if len > MAX_UDP_PAYLOAD {
            stats.drops.too_large += 1;
            return false;
        }
        let open = if !self.gso || len == 0 {
            None
        } else {
            match &hint {
                Some(h) => (h.generation == self.generation
                    && self.joins(h.slot, socket, dest, len))
                .then_some(h.slot),
                // Only the newest batch to the destination may take more: joining an
                // older one would send this datagram ahead of those in the newer.
                None => self
                    .queued
                    .iter()
                    .rev()
                    .take(PROBE)
                    .copied()
                    .find(|&i| {
                        self.slots
                            .get(i)
                            .is_some_and(|b| b.socket == socket && b.to == dest)
                    })
                    .filter(|&i| self.joins(i, socket, dest, len)),
            }
        };
        if let Some(i) = open
            && let Some(b) = self.slots.get_mut(i)
        {
            if b.put(&mut self.pool, data) {
                b.segs += 1;
                if len < b.seg || b.segs >= MAX_GSO_SEGMENTS || b.len + b.seg > MAX_UDP_PAYLOAD {
                    b.closed = true;
                }
                return true;
            }
            // No chunk or `iovec` left for it: this datagram starts a batch of its own,
            // if it can.
            b.closed = true;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.max => {
                self.slots.push(Batch::new());
                self.slots.len() - 1
            }
            None => {
                stats.drops.queue_full += 1;
                return false;
            }
        };
        let gso = self.gso;
        let Some(b) = self.slots.get_mut(i) else {
            // Indices in `free` always refer to existing slots; keep the slot accounted.
            stats.drops.queue_full += 1;
            return false;
        };
        b.release(&mut self.pool);
        if !b.put(&mut self.pool, data) {
            self.free.push(i);
            stats.drops.queue_full += 1;
            return false;
        }
        b.socket = socket;
        b.to = dest;
        b.dest = SockAddr::from(dest);
        b.seg = len;
        b.segs = 1;
        b.closed = !gso || len == 0 || 2 * len > MAX_UDP_PAYLOAD;
        self.queued.push(i);
        if let Some(h) = hint {
            *h = SendHint {
                generation: self.generation,
                slot: i,
            };
        }
        true
    }

    /// Slots queued since the last [`SendQueue::take_queued`], in queue order.
    pub(crate) fn queued(&self) -> &[usize] {
        &self.queued
    }

    /// Whether a datagram may find no room: every batch slot is taken (queued, or in
    /// flight until its completion is reaped) or the chunk pool is spent. The backends
    /// then submit what is queued before queueing more (`queue_room`), so a fan-out
    /// wider than the queue goes out in parts instead of being dropped.
    pub(crate) fn is_full(&self) -> bool {
        (self.free.is_empty() && self.slots.len() >= self.max)
            || (self.pool.spare.is_empty() && self.pool.made >= self.pool.limit)
    }

    /// Whether anything is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// The socket index of slot `i`.
    pub(crate) fn socket_of(&self, i: usize) -> Option<usize> {
        self.slots.get(i).map(|b| b.socket)
    }

    /// Mutable access to one slot.
    pub(crate) fn batch_mut(&mut self, i: usize) -> Option<&mut Batch> {
        self.slots.get_mut(i).map(|b| &mut **b)
    }

    /// Forgets the queued list (the slots stay allocated until released) and closes all
    /// open groups (every [`SendHint`] given out so far goes stale).
    pub(crate) fn take_queued(&mut self) {
        self.queued.clear();
        self.generation = self.generation.wrapping_add(1).max(1);
    }

    /// Returns slot `i` and its chunks to the pools.
    fn release(&mut self, i: usize) {
        if let Some(b) = self.slots.get_mut(i) {
            b.release(&mut self.pool);
        }
        self.free.push(i);
    }

    /// Accounts a kernel answer for slot `i` and returns it to the pool. A GSO send refused
    /// for reasons specific to segmentation (`EIO`: no checksum offload, `EINVAL`: segment
    /// larger than the path MTU, `EMSGSIZE`) is retried once, synchronously, as individual
    /// datagrams on `fd`.
    pub(crate) fn complete(
        &mut self,
        i: usize,
        outcome: Outcome,
        fd: Option<RawFd>,
        stats: &mut IoStats,
    ) {
        if let (Outcome::Failed(e), Some(fd)) = (&outcome, fd)
            && matches!(*e, libc::EIO | libc::EINVAL | libc::EMSGSIZE)
            && self.slots.get(i).is_some_and(|b| b.segs > 1)
        {
            if *e == libc::EIO && self.gso {
                tracing::warn!("GSO send failed with EIO (no checksum offload?); disabling GSO");
                self.gso = false;
            }
            self.send_unsegmented(i, fd, stats);
            return;
        }
        let Some(b) = self.slots.get(i) else { return };
        let segs = b.segs as u64;
        match outcome {
            Outcome::Sent => {
                stats.tx_datagrams += segs;
                stats.tx_bytes += b.len as u64;
                stats.send_messages += 1;
                stats.tx_batch_sizes[super::batch_bucket(segs)] += 1;
                if b.segs > 1 {
                    stats.gso_sends += 1;
                    stats.gso_segments += segs;
                }
            }
            Outcome::Failed(e) if e == libc::EAGAIN || e == libc::ENOBUFS => {
                stats.drops.send_would_block += segs;
            }
            Outcome::Failed(_) => {
                stats.drops.send_error += segs;
            }
        }
        self.release(i);
    }

    /// Sends the segments of slot `i` one `sendto` each (rare fallback path) and returns the
    /// slot to the pool.
    fn send_unsegmented(&mut self, i: usize, fd: RawFd, stats: &mut IoStats) {
        let Some(b) = self.slots.get(i) else { return };
        stats.gso_fallbacks += 1;
        let seg = b.seg.max(1);
        self.gather.clear();
        for part in b.slices() {
            self.gather.extend_from_slice(part);
        }
        for chunk in self.gather.chunks(seg) {
            // SAFETY: `chunk` and the encoded destination are live for the whole call; the
            // kernel only reads them.
            let r = unsafe {
                libc::sendto(
                    fd,
                    chunk.as_ptr().cast(),
                    chunk.len(),
                    libc::MSG_DONTWAIT,
                    b.dest.as_ptr().cast(),
                    b.dest.len(),
                )
            };
            if r >= 0 {
                stats.tx_datagrams += 1;
                stats.tx_bytes += chunk.len() as u64;
                stats.send_messages += 1;
                stats.tx_batch_sizes[0] += 1;
            } else {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::ENOBUFS) => stats.drops.send_would_block += 1,
                    _ => stats.drops.send_error += 1,
                }
            }
        }
        self.release(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(gso: bool) -> SendQueue {
        SendQueue::new(
            8,
            gso,
            &["127.0.0.1:1".parse().unwrap(), "[::1]:1".parse().unwrap()],
        )
    }

    fn d(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn equal_sizes_group_and_short_tail_closes() {
        let mut s = IoStats::default();
        let mut q = q(true);
        for _ in 0..5 {
            assert!(q.push(0, d(9), &[1; 100], &mut s));
        }
        assert!(q.push(0, d(9), &[2; 40], &mut s));
        assert!(q.push(0, d(9), &[3; 100], &mut s));
        assert_eq!(q.queued().len(), 2);
        let first = q.queued()[0];
        let b = q.batch_mut(first).unwrap();
        assert_eq!((b.segs, b.len()), (6, 540));
    }

    #[test]
    fn groups_per_destination_and_socket() {
        let mut s = IoStats::default();
        let mut q = q(true);
        assert!(q.push(0, d(1), &[0; 10], &mut s));
        assert!(q.push(0, d(2), &[0; 10], &mut s));
        assert!(q.push(0, d(1), &[0; 10], &mut s));
        assert!(q.push(1, "[::1]:5".parse().unwrap(), &[0; 10], &mut s));
        assert_eq!(q.queued().len(), 3);
        let i = q.queued()[0];
        assert_eq!(q.batch_mut(i).unwrap().segs, 2);
    }

    /// Each sender's hint brings its datagrams together even when more senders than the
    /// hintless probe covers are queued in between; a flush makes every hint stale.
    #[test]
    fn hinted_datagrams_group_across_interleaving_until_flush() {
        let mut s = IoStats::default();
        let mut q = q(true);
        let mut hints = [SendHint::default(); 6];
        for _ in 0..3 {
            for (p, h) in hints.iter_mut().enumerate() {
                assert!(q.push_hinted(0, d(p as u16), &[0; 10], &mut s, Some(h)));
            }
        }
        assert_eq!(q.queued().len(), 6);
        for &i in q.queued() {
            assert_eq!(q.slots[i].segs, 3);
        }
        let idx = q.queued().to_vec();
        q.take_queued();
        for i in idx {
            q.complete(i, Outcome::Sent, None, &mut s);
        }
        assert!(q.push_hinted(0, d(0), &[0; 10], &mut s, Some(&mut hints[0])));
        assert!(q.push_hinted(0, d(1), &[0; 10], &mut s, Some(&mut hints[1])));
        assert_eq!(q.queued().len(), 2);
        for &i in q.queued() {
            assert_eq!(q.slots[i].segs, 1);
        }
    }

    /// A hint naming a batch to another destination (or socket) is not followed.
    #[test]
    fn hint_for_another_destination_opens_a_new_batch() {
        let mut s = IoStats::default();
        let mut q = q(true);
        let mut h = SendHint::default();
        assert!(q.push_hinted(0, d(1), &[0; 10], &mut s, Some(&mut h)));
        assert!(q.push_hinted(0, d(2), &[0; 10], &mut s, Some(&mut h)));
        assert!(q.push_hinted(0, d(2), &[0; 10], &mut s, Some(&mut h)));
        assert_eq!(q.queued().len(), 2);
        let (a, b) = (q.queued()[0], q.queued()[1]);
        assert_eq!((q.slots[a].segs, q.slots[b].segs), (1, 2));
    }

    #[test]
    fn limits_and_drops() {
        let mut s = IoStats::default();
        let mut q = q(true);
        assert!(!q.push(5, d(1), &[0; 10], &mut s));
        assert!(!q.push(0, "[::1]:5".parse().unwrap(), &[0; 10], &mut s));
        assert!(!q.push(0, d(1), &vec![0; MAX_UDP_PAYLOAD + 1], &mut s));
        assert_eq!(
            (
                s.drops.bad_socket,
                s.drops.family_mismatch,
                s.drops.too_large
            ),
            (1, 1, 1)
        );
        for _ in 0..(MAX_GSO_SEGMENTS + 1) {
            assert!(q.push(0, d(1), &[0; 10], &mut s));
        }
        assert_eq!(q.queued().len(), 2);
        for p in 0..6 {
            assert!(q.push(0, d(100 + p), &[0; 10], &mut s));
        }
        assert!(!q.push(0, d(200), &[0; 10], &mut s));
        assert_eq!(s.drops.queue_full, 1);
        let i = q.queued()[0];
        q.take_queued();
        q.complete(i, Outcome::Sent, None, &mut s);
        assert_eq!((s.gso_sends, s.gso_segments, s.tx_datagrams), (1, 64, 64));
        assert!(q.push(0, d(200), &[0; 10], &mut s));
    }

    #[test]
    fn no_gso_means_one_datagram_per_batch() {
        let mut s = IoStats::default();
        let mut q = q(false);
        assert!(q.push(0, d(1), &[0; 10], &mut s));
        assert!(q.push(0, d(1), &[0; 10], &mut s));
        assert_eq!(q.queued().len(), 2);
    }

    #[test]
    fn refused_gso_batch_is_resent_unsegmented() {
        use std::os::fd::AsRawFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = IoStats::default();
        let mut q = SendQueue::new(4, true, &[tx.local_addr().unwrap()]);
        let dest = rx.local_addr().unwrap();
        assert!(q.push(0, dest, &[1; 500], &mut s));
        assert!(q.push(0, dest, &[2; 500], &mut s));
        assert!(q.push(0, dest, &[3; 100], &mut s));
        let i = q.queued()[0];
        q.take_queued();
        q.complete(
            i,
            Outcome::Failed(libc::EINVAL),
            Some(tx.as_raw_fd()),
            &mut s,
        );
        assert_eq!((s.gso_fallbacks, s.tx_datagrams, s.tx_bytes), (1, 3, 1100));
        assert_eq!(s.drops, super::super::DropStats::default());
        let mut buf = [0u8; 600];
        for (fill, len) in [(1u8, 500), (2, 500), (3, 100)] {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &vec![fill; len][..]);
        }
        // The slot went back to the pool, and EINVAL does not turn GSO off.
        assert!(q.gso);
        // A single-datagram failure is just counted.
        assert!(q.push(0, dest, &[4; 10], &mut s));
        let j = q.queued()[0];
        q.take_queued();
        q.complete(
            j,
            Outcome::Failed(libc::EINVAL),
            Some(tx.as_raw_fd()),
            &mut s,
        );
        assert_eq!(s.drops.send_error, 1);
    }

    /// Buffer memory follows the bytes queued: a 3-packet frame to each of 16 destinations
    /// takes two chunks per destination (not a 64 KiB buffer each), and completed batches
    /// give their chunks back for the next iteration.
    #[test]
    fn chunks_follow_datagrams_and_are_reused() {
        let mut s = IoStats::default();
        let mut q = SendQueue::new(256, true, &["127.0.0.1:1".parse().unwrap()]);
        for round in 0..3 {
            for p in 0..16 {
                for _ in 0..3 {
                    assert!(q.push(0, d(p), &[round; 1200], &mut s));
                }
            }
            let idx = q.queued().to_vec();
            assert_eq!(idx.len(), 16);
            for &i in &idx {
                let b = q.batch_mut(i).unwrap();
                assert_eq!((b.segs, b.len()), (3, 3600));
                assert!(b.slices().flatten().all(|&x| x == round));
            }
            // One chunk per datagram (each starts a chunk, so that one can be written in
            // place before it is queued).
            assert_eq!(q.chunks_made(), 48);
            q.take_queued();
            for i in idx {
                q.complete(i, Outcome::Sent, None, &mut s);
            }
        }
        assert_eq!((s.gso_sends, s.tx_datagrams), (48, 144));
    }

    #[test]
    fn lent_buffers_join_batches_in_place_and_go_back_to_the_pool() {
        let mut s = IoStats::default();
        let mut q = SendQueue::new(64, true, &["127.0.0.1:1".parse().unwrap()]);
        let mut hint = SendHint::default();
        // Copied and lent datagrams to one destination share one GSO batch, in order.
        assert!(q.push_hinted(0, d(1), &[1; 1000], &mut s, Some(&mut hint)));
        for k in 2..=4u8 {
            let mut b = q.lend().unwrap();
            let at = b.bytes_mut().as_ptr();
            b.bytes_mut()[..1000].fill(k);
            assert!(q.push_lent(0, d(1), b, 1000, &mut s, Some(&mut hint)));
            // The lent chunk itself is in the batch: no copy.
            let i = q.queued()[0];
            let last = q.batch_mut(i).unwrap().slices().last().unwrap();
            assert_eq!(last.as_ptr(), at);
        }
        // A shorter one closes the batch as its tail.
        let mut b = q.lend().unwrap();
        b.bytes_mut()[..10].fill(5);
        assert!(q.push_lent(0, d(1), b, 10, &mut s, Some(&mut hint)));
        assert_eq!(q.queued().len(), 1);
        let i = q.queued()[0];
        let batch = q.batch_mut(i).unwrap();
        assert_eq!((batch.segs, batch.len()), (5, 4010));
        let bytes: Vec<u8> = batch.slices().flatten().copied().collect();
        let mut want = vec![1u8; 1000];
        for k in 2..=4u8 {
            want.extend(std::iter::repeat_n(k, 1000));
        }
        want.extend([5u8; 10]);
        assert_eq!(bytes, want);
        let made = q.chunks_made();
        // A lent buffer given back, or dropped by the queue (no such socket, larger
        // than the buffer), returns to the pool: lending again allocates nothing.
        let b = q.lend().unwrap();
        q.give_back(b);
        let b = q.lend().unwrap();
        assert!(!q.push_lent(7, d(1), b, 100, &mut s, None));
        let b = q.lend().unwrap();
        assert!(!q.push_lent(0, d(1), b, CHUNK + 1, &mut s, None));
        assert_eq!((s.drops.bad_socket, s.drops.too_large), (1, 1));
        let b = q.lend().unwrap();
        q.give_back(b);
        assert_eq!(q.chunks_made(), made);
        q.take_queued();
        q.complete(i, Outcome::Sent, None, &mut s);
        assert_eq!((s.gso_sends, s.tx_datagrams, s.tx_bytes), (1, 5, 4010));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Concatenating the batches per destination reproduces what was queued, and every
        /// batch obeys the GSO shape rules.
        #[test]
        fn batches_preserve_bytes_and_shape(
            pkts in proptest::collection::vec((0u16..3, 0usize..1500, any::<u8>()), 0..200)
        ) {
            let mut s = IoStats::default();
            let mut q = SendQueue::new(1000, true, &["127.0.0.1:1".parse().unwrap()]);
            let mut want: [Vec<u8>; 3] = Default::default();
            for (p, len, fill) in &pkts {
                let data = vec![*fill; *len];
                prop_assert!(q.push(0, d(*p), &data, &mut s));
                want[*p as usize].extend_from_slice(&data);
            }
            let mut got: [Vec<u8>; 3] = Default::default();
            let idx: Vec<usize> = q.queued().to_vec();
            for i in idx {
                let b = q.batch_mut(i).unwrap();
                prop_assert!(b.segs >= 1 && b.segs <= MAX_GSO_SEGMENTS);
                prop_assert!(b.len() <= MAX_UDP_PAYLOAD);
                prop_assert!(b.len() <= b.seg * b.segs);
                prop_assert!(b.segs == 1 || b.len() > b.seg * (b.segs - 1));
                let port = b.dest.as_socket().unwrap().port() as usize;
                for part in b.slices() {
                    got[port].extend_from_slice(part);
                }
            }
            prop_assert_eq!(got, want);
        }

        /// The same with each destination's datagrams queued under its own hint, more
        /// destinations than the hintless probe covers.
        #[test]
        fn hinted_batches_preserve_bytes_and_shape(
            pkts in proptest::collection::vec((0u16..8, 0usize..1500, any::<u8>()), 0..200)
        ) {
            let mut s = IoStats::default();
            let mut q = SendQueue::new(1000, true, &["127.0.0.1:1".parse().unwrap()]);
            let mut want: [Vec<u8>; 8] = Default::default();
            let mut hints = [SendHint::default(); 8];
            for (p, len, fill) in &pkts {
                let data = vec![*fill; *len];
                let h = &mut hints[*p as usize];
                prop_assert!(q.push_hinted(0, d(*p), &data, &mut s, Some(h)));
                want[*p as usize].extend_from_slice(&data);
            }
            let mut got: [Vec<u8>; 8] = Default::default();
            let idx: Vec<usize> = q.queued().to_vec();
            for i in idx {
                let b = q.batch_mut(i).unwrap();
                prop_assert!(b.segs >= 1 && b.segs <= MAX_GSO_SEGMENTS);
                prop_assert!(b.len() <= MAX_UDP_PAYLOAD);
                prop_assert!(b.len() <= b.seg * b.segs);
                prop_assert!(b.segs == 1 || b.len() > b.seg * (b.segs - 1));
                let port = b.dest.as_socket().unwrap().port() as usize;
                for part in b.slices() {
                    got[port].extend_from_slice(part);
                }
            }
            prop_assert_eq!(got, want);
        }
    }
}
