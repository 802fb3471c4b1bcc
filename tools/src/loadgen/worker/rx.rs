//! The receive path's helpers: booking streams and sequence numbers, and the socket
//! calls (`epoll`, `recvmmsg`) behind [`Worker`]'s receive loop.

use super::*;

/// Datagrams read from one socket per loop iteration (fairness between peers); one
/// `recvmmsg` call.
pub(super) const RECV_BATCH: usize = 64;
/// Bytes per receive slot (larger datagrams are truncated and then fail SRTP).
pub(super) const SLOT: usize = 2048;
/// Readiness events taken per `epoll_wait`.
pub(super) const MAX_EVENTS: usize = 256;
/// `epoll` user data of the wake socket (peers use their index + 1).
pub(super) const WAKE_TOKEN: u64 = 0;

/// Notes the (publisher, kind) stream of a verified packet on the receiving peer.
pub(super) fn record_stream(streams: &mut Vec<RxStream>, stamp: &Stamp) {
    let known = streams
        .iter()
        .any(|s| s.publisher == stamp.publisher && s.kind == stamp.kind);
    if !known && streams.len() < MAX_STREAMS {
        streams.push(RxStream {
            publisher: stamp.publisher,
            kind: stamp.kind,
        });
    }
}

/// Books a received packet (verified or not) on its SSRC's sequence tracker.
pub(super) fn record_ssrc(ssrcs: &mut Vec<RxSsrc>, totals: &mut Totals, ssrc: u32, seq_no: u64) {
    let pos = ssrcs.iter().position(|s| s.ssrc == ssrc);
    let s = match pos {
        Some(i) => &mut ssrcs[i],
        None if ssrcs.len() < MAX_STREAMS => {
            ssrcs.push(RxSsrc {
                ssrc,
                seq: SeqTracker::new(),
            });
            let last = ssrcs.len() - 1;
            &mut ssrcs[last]
        }
        None => return,
    };
    let (e0, u0, o0, d0) = (
        s.seq.expected(),
        s.seq.unique(),
        s.seq.out_of_order(),
        s.seq.duplicates(),
    );
    s.seq.record(seq_no);
    totals.expected += s.seq.expected() - e0;
    totals.unique += s.seq.unique() - u0;
    totals.checks.out_of_order += s.seq.out_of_order() - o0;
    totals.checks.duplicates += s.seq.duplicates() - d0;
}

/// The RTP sequence number of a datagram that looks like RTP (version 2, not an
/// RTCP packet type per RFC 5761), read from its clear header.
pub(super) fn rtp_seq(d: &[u8]) -> Option<u16> {
    let (&b0, &b1) = (d.first()?, d.get(1)?);
    if b0 >> 6 != 2 || (64..=95).contains(&(b1 & 0x7f)) || d.len() < 12 {
        return None;
    }
    Some(u16::from_be_bytes([d[2], d[3]]))
}

/// Adds `fd` to `epoll` for input, level-triggered, with user data `token`.
pub(super) fn epoll_add(epoll: &std::os::fd::OwnedFd, fd: i32, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: both descriptors are valid; `ev` lives across the call.
    let r = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Stops watching `fd` (a failed peer); errors (already removed) are ignored.
pub(super) fn epoll_del(epoll: &std::os::fd::OwnedFd, fd: i32) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: both descriptors are valid; `ev` lives across the call (older kernels
    // want a non-null pointer for EPOLL_CTL_DEL).
    let _ = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
}

/// One `recvmmsg` batch: datagram lengths and sources, slot `k` at `k * SLOT`.
pub(super) struct Batch {
    pub(super) count: usize,
    pub(super) lens: [usize; RECV_BATCH],
    pub(super) sources: [Option<SocketAddr>; RECV_BATCH],
}

/// Reads up to `RECV_BATCH` datagrams from `socket` (non-blocking) into `bufs`.
pub(super) fn recv_batch(socket: &UdpSocket, bufs: &mut [u8]) -> std::io::Result<Batch> {
    let mut batch = Batch {
        count: 0,
        lens: [0; RECV_BATCH],
        sources: [None; RECV_BATCH],
    };
    if bufs.len() < RECV_BATCH * SLOT {
        return Ok(batch);
    }
    // SAFETY: all-zero is a valid `sockaddr_storage` (a plain C struct).
    let mut addrs: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let base = bufs.as_mut_ptr();
    let mut iovs: [libc::iovec; RECV_BATCH] = std::array::from_fn(|k| libc::iovec {
        // SAFETY: `k * SLOT + SLOT <= bufs.len()` (checked above), so the slot is in
        // bounds of `bufs`.
        iov_base: unsafe { base.add(k * SLOT) }.cast(),
        iov_len: SLOT,
    });
    // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths).
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (k, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_iov = &mut iovs[k];
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    let n = loop {
        // SAFETY: `msgs` holds `RECV_BATCH` headers whose iovecs and name buffers point
        // into `bufs` and `addrs`, all alive and exclusively borrowed for the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return if e.kind() == ErrorKind::WouldBlock {
                Ok(batch)
            } else {
                Err(e)
            };
        }
    };
    batch.count = n.min(RECV_BATCH);
    for k in 0..batch.count {
        batch.lens[k] = msgs[k].msg_len as usize;
        batch.sources[k] = sockaddr_to_std(&addrs[k]);
    }
    Ok(batch)
}

/// Converts a kernel-filled socket address (IPv4 or IPv6) to a `SocketAddr`.
pub(super) fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which fits in
            // and is no more aligned than `sockaddr_storage`.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(v4.sin_addr.s_addr).into(),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                v6.sin6_addr.s6_addr.into(),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Nanoseconds from `start` (the worker's) to `t`: the clock of the payload stamps whose
/// latency the receive path measures.
pub(super) fn ns_since(start: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}
