//! Shared low-level pieces: socket setup, address and control-message encoding, the
//! eventfd waker, anonymous memory mappings.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use super::IoConfig;

/// Bytes reserved for a source address (`sockaddr_in6` is the largest we accept).
pub(crate) const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

const CMSG_HDR: usize = cmsg_align(std::mem::size_of::<libc::cmsghdr>());

const fn cmsg_align(len: usize) -> usize {
    let a = std::mem::size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// `CMSG_SPACE(n)` without `unsafe`.
pub(crate) const fn cmsg_space(n: usize) -> usize {
    CMSG_HDR + cmsg_align(n)
}

/// `CMSG_LEN(n)` without `unsafe`.
const fn cmsg_len(n: usize) -> usize {
    CMSG_HDR + n
}

/// Control space needed for one `UDP_GRO` (int) message on receive.
pub(crate) const GRO_CONTROL_LEN: usize = cmsg_space(std::mem::size_of::<libc::c_int>());

/// Control space for one `SCM_TIMESTAMPNS` (`timespec`) message on receive.
pub(crate) const TS_CONTROL_LEN: usize = cmsg_space(std::mem::size_of::<libc::timespec>());

/// Control space a receive asks for: a `UDP_GRO` and a `SCM_TIMESTAMPNS` message.
pub(crate) const RECV_CONTROL_LEN: usize = GRO_CONTROL_LEN + TS_CONTROL_LEN;

/// Control space for one `UDP_SEGMENT` (u16) message on send.
pub(crate) const GSO_CONTROL_LEN: usize = cmsg_space(std::mem::size_of::<u16>());

/// An 8-byte aligned control buffer for one `UDP_SEGMENT` message.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct GsoControl(pub(crate) [u8; GSO_CONTROL_LEN]);

impl GsoControl {
    /// A control buffer carrying `UDP_SEGMENT = seg`.
    pub(crate) fn new(seg: u16) -> Self {
        let mut b = [0u8; GSO_CONTROL_LEN];
        let len = cmsg_len(std::mem::size_of::<u16>());
        let (l, rest) = b.split_at_mut(std::mem::size_of::<usize>());
        l.copy_from_slice(&len.to_ne_bytes());
        let (lvl, rest) = rest.split_at_mut(4);
        lvl.copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        let (ty, _) = rest.split_at_mut(4);
        ty.copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
        if let Some(d) = b.get_mut(CMSG_HDR..CMSG_HDR + 2) {
            d.copy_from_slice(&seg.to_ne_bytes());
        }
        Self(b)
    }
}

/// What a receive's control messages said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecvControl {
    /// `SOL_UDP`/`UDP_GRO`: the segment size of a coalesced buffer.
    pub seg: Option<usize>,
    /// `SOL_SOCKET`/`SCM_TIMESTAMPNS`: the kernel's receive time (`CLOCK_REALTIME`), in
    /// nanoseconds since the epoch.
    pub stamp_ns: Option<i128>,
}

/// Parses the `UDP_GRO` and `SCM_TIMESTAMPNS` control messages of one receive (others
/// are skipped; a malformed list ends the walk with what was found).
pub(crate) fn parse_recv_control(control: &[u8]) -> RecvControl {
    let mut out = RecvControl::default();
    let w = std::mem::size_of::<usize>();
    let mut rest = control;
    while rest.len() >= CMSG_HDR {
        let field = |r: &[u8], at: usize| -> Option<i32> {
            Some(i32::from_ne_bytes(r.get(at..at + 4)?.try_into().ok()?))
        };
        let Some(len) = rest
            .get(..w)
            .and_then(|b| b.try_into().ok())
            .map(usize::from_ne_bytes)
        else {
            break;
        };
        let (Some(level), Some(ty)) = (field(rest, w), field(rest, w + 4)) else {
            break;
        };
        if len < CMSG_HDR {
            break;
        }
        if level == libc::SOL_UDP && ty == libc::UDP_GRO {
            out.seg = field(rest, CMSG_HDR)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0);
        } else if level == libc::SOL_SOCKET && ty == libc::SCM_TIMESTAMPNS {
            // `struct timespec { tv_sec: i64, tv_nsec: i64 }` on 64-bit Linux.
            let word = |at: usize| -> Option<i64> {
                Some(i64::from_ne_bytes(rest.get(at..at + 8)?.try_into().ok()?))
            };
            if let (Some(sec), Some(nsec)) = (word(CMSG_HDR), word(CMSG_HDR + 8)) {
                out.stamp_ns = Some(i128::from(sec) * 1_000_000_000 + i128::from(nsec));
            }
        }
        let Some(step) = len.checked_add(w - 1).map(|l| l & !(w - 1)) else {
            break;
        };
        match rest.get(step..) {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// Finds a `SOL_UDP`/`UDP_GRO` control message and returns the segment size it carries.
#[cfg(test)]
pub(crate) fn parse_gro_segment(control: &[u8]) -> Option<usize> {
    parse_recv_control(control).seg
}

/// The oldest kernel receive stamp turned into an arrival instant: older ones (a
/// stepped wall clock, a datagram stuck for seconds) are ignored.
const MAX_STAMP_AGE_NS: i128 = 2_000_000_000;

/// Two clock reads further apart than this were interrupted: [`RxClock::now`] reads
/// again.
const PAIR_SLACK: std::time::Duration = std::time::Duration::from_micros(20);

/// Converts kernel receive stamps (`CLOCK_REALTIME`) to monotonic instants: one reading
/// of both clocks per receive batch, each stamp placed `wall - stamp` before `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxClock {
    at: std::time::Instant,
    wall_ns: i128,
}

impl RxClock {
    /// Both clocks, now, read as one: the wall clock between two monotonic reads, `at`
    /// their midpoint. A thread preempted between the reads would misplace every stamp
    /// of the batch by the preemption (tens of milliseconds on a loaded host), so a
    /// pair more than [`PAIR_SLACK`] apart is read again, up to three times, and the
    /// closest pair kept.
    pub(crate) fn now() -> RxClock {
        let wall = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
        };
        let mut best: Option<(std::time::Duration, RxClock)> = None;
        for _ in 0..3 {
            let before = std::time::Instant::now();
            let wall_ns = wall();
            let after = std::time::Instant::now();
            let gap = after.saturating_duration_since(before);
            let pair = RxClock {
                at: before + gap / 2,
                wall_ns,
            };
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, pair));
            }
            if gap <= PAIR_SLACK {
                break;
            }
        }
        match best {
            Some((_, pair)) => pair,
            // The loop runs at least once.
            None => RxClock {
                at: std::time::Instant::now(),
                wall_ns: wall(),
            },
        }
    }

    /// The instant of a stamp, `None` when it is over 2 s old or more than 1 ms ahead
    /// (a wall clock stepped between the two); a stamp up to 1 ms ahead is `at`.
    pub(crate) fn arrival(&self, stamp_ns: i128) -> Option<std::time::Instant> {
        let age = self.wall_ns - stamp_ns;
        if !(-1_000_000..=MAX_STAMP_AGE_NS).contains(&age) {
            return None;
        }
        let age = u64::try_from(age.max(0)).ok()?;
        self.at.checked_sub(std::time::Duration::from_nanos(age))
    }
}

/// Parses a kernel-written `sockaddr_in`/`sockaddr_in6`.
pub(crate) fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(name.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Creates, configures and binds one non-blocking UDP socket per configured address.
pub(crate) fn open_sockets(cfg: &IoConfig) -> io::Result<(Vec<Socket>, Vec<SocketAddr>)> {
    if cfg.bind.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IoConfig::bind is empty",
        ));
    }
    let mut socks = Vec::with_capacity(cfg.bind.len());
    let mut addrs = Vec::with_capacity(cfg.bind.len());
    for &addr in &cfg.bind {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        s.set_cloexec(true)?;
        if cfg.recv_buffer_bytes > 0 {
            s.set_recv_buffer_size(cfg.recv_buffer_bytes)?;
            // Linux reports twice the granted value (bookkeeping overhead).
            let got = s.recv_buffer_size()? / 2;
            if got < cfg.recv_buffer_bytes {
                tracing::warn!(
                    %addr, asked = cfg.recv_buffer_bytes, got,
                    "SO_RCVBUF capped by the kernel; raise net.core.rmem_max"
                );
            }
        }
        if cfg.send_buffer_bytes > 0 {
            s.set_send_buffer_size(cfg.send_buffer_bytes)?;
            let got = s.send_buffer_size()? / 2;
            if got < cfg.send_buffer_bytes {
                tracing::warn!(
                    %addr, asked = cfg.send_buffer_bytes, got,
                    "SO_SNDBUF capped by the kernel; raise net.core.wmem_max"
                );
            }
        }
        if cfg.gro {
            set_int_opt(s.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)?;
        }
        if cfg.rx_timestamps
            && let Err(e) = set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
        {
            // Not fatal: arrivals are then the time the shard reads them.
            tracing::warn!(%addr, error = %e, "SO_TIMESTAMPNS refused; no kernel receive times");
        }
        s.bind(&addr.into())?;
        let local = s
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
        socks.push(s);
        addrs.push(local);
    }
    Ok((socks, addrs))
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed matches its size; the kernel only
    // reads from the pointer during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Wakes a blocked [`IoBackend::poll`](super::IoBackend::poll) from any thread by writing
/// to the backend's eventfd.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Creates a non-blocking eventfd.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd: Arc::new(fd) })
    }

    /// Wakes the backend. Cheap, never blocks; wakes coalesce until the next `poll`.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we keep open via the Arc.
        // EAGAIN (counter saturated) means a wake is already pending, which is all we need.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Resets the counter; returns whether a wake was pending.
    pub(crate) fn drain(&self) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
        r == 8 && v > 0
    }
}

/// An anonymous, page-aligned, zeroed private mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned exclusively by this value; moving ownership to
// another thread is sound.
unsafe impl Send for Mmap {}

impl Mmap {
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: p.cast(), len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created in `new` and unmapped only here.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_control_round_trips_layout() {
        let c = GsoControl::new(1200);
        assert_eq!(GSO_CONTROL_LEN, 24);
        assert_eq!(usize::from_ne_bytes(c.0[..8].try_into().unwrap()), 18);
        assert_eq!(i32::from_ne_bytes(c.0[8..12].try_into().unwrap()), 17);
        assert_eq!(i32::from_ne_bytes(c.0[12..16].try_into().unwrap()), 103);
        assert_eq!(u16::from_ne_bytes(c.0[16..18].try_into().unwrap()), 1200);
    }

    #[test]
    fn gro_parse_finds_segment_and_rejects_garbage() {
        let mut b = [0u8; GRO_CONTROL_LEN];
        b[..8].copy_from_slice(&20usize.to_ne_bytes());
        b[8..12].copy_from_slice(&17i32.to_ne_bytes());
        b[12..16].copy_from_slice(&104i32.to_ne_bytes());
        b[16..20].copy_from_slice(&1400i32.to_ne_bytes());
        assert_eq!(parse_gro_segment(&b), Some(1400));
        assert_eq!(parse_gro_segment(&b[..10]), None);
        b[..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(parse_gro_segment(&b), None);
        assert_eq!(parse_gro_segment(&[0xff; 64]), None);
    }

    #[test]
    fn recv_control_finds_gro_and_timestamp_in_one_list() {
        let mut b = [0u8; RECV_CONTROL_LEN];
        b[..8].copy_from_slice(&20usize.to_ne_bytes());
        b[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        b[12..16].copy_from_slice(&libc::UDP_GRO.to_ne_bytes());
        b[16..20].copy_from_slice(&1200i32.to_ne_bytes());
        let t = GRO_CONTROL_LEN;
        b[t..t + 8].copy_from_slice(&32usize.to_ne_bytes());
        b[t + 8..t + 12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        b[t + 12..t + 16].copy_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        b[t + 16..t + 24].copy_from_slice(&1_700_000_000i64.to_ne_bytes());
        b[t + 24..t + 32].copy_from_slice(&250_000_000i64.to_ne_bytes());
        let c = parse_recv_control(&b);
        assert_eq!(c.seg, Some(1200));
        assert_eq!(c.stamp_ns, Some(1_700_000_000_250_000_000));
        // Cut inside the timestamp: the segment is still found.
        let c = parse_recv_control(&b[..t + 20]);
        assert_eq!((c.seg, c.stamp_ns), (Some(1200), None));
        assert_eq!(parse_recv_control(&[0xff; 64]), RecvControl::default());
    }

    #[test]
    fn rx_clock_places_stamps_before_now_and_refuses_odd_ones() {
        let clock = RxClock::now();
        let at = |age_ns: i128| clock.arrival(clock.wall_ns - age_ns);
        assert_eq!(at(0), Some(clock.at));
        assert_eq!(
            at(30_000_000),
            clock.at.checked_sub(std::time::Duration::from_millis(30))
        );
        // A little ahead (clocks read a moment apart): now; far ahead or too old: none.
        assert_eq!(at(-500_000), Some(clock.at));
        assert_eq!(at(-5_000_000), None);
        assert_eq!(at(3_000_000_000), None);
    }

    #[test]
    fn sockaddr_parse_v4_v6_and_garbage() {
        let v4: SocketAddr = "10.1.2.3:5004".parse().unwrap();
        let s = socket2::SockAddr::from(v4);
        // SAFETY: test-only view of the initialised bytes of a SockAddr.
        let bytes =
            unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(v4));
        let v6: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        let s = socket2::SockAddr::from(v6);
        // SAFETY: as above.
        let bytes =
            unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(v6));
        assert_eq!(parse_sockaddr(&[0u8; 3]), None);
        assert_eq!(parse_sockaddr(&[0xffu8; 28]), None);
    }
}
