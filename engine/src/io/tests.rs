//! Loopback tests run against both backends.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::*;

const BOTH: [BackendPreference; 2] = [BackendPreference::IoUring, BackendPreference::Portable];

fn cfg(bind: &str) -> IoConfig {
    IoConfig {
        bind: vec![bind.parse().unwrap()],
        recv_buffer_bytes: 1 << 20,
        send_buffer_bytes: 1 << 20,
        ring_entries: 64,
        ..IoConfig::default()
    }
}

fn open(pref: BackendPreference, c: &IoConfig) -> Box<dyn IoBackend> {
    let b = open_backend(pref, c).unwrap();
    let want = match pref {
        BackendPreference::Portable => BackendKind::Portable,
        _ => BackendKind::IoUring,
    };
    assert_eq!(b.kind(), want);
    b
}

fn std_sock(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Polls until `n` datagrams arrived (or a generous number of rounds passed).
fn recv_n(b: &mut dyn IoBackend, n: usize) -> Vec<(usize, SocketAddr, SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    for _ in 0..500 {
        if got.len() >= n {
            break;
        }
        b.poll(Some(Duration::from_millis(20)), &mut |r: Received<'_>| {
            got.push((r.socket, r.source, r.local, r.data.to_vec()));
        })
        .unwrap();
    }
    got
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k * 7) as u8).collect()
}

fn round_trip(pref: BackendPreference, addr: &str) {
    let mut b = open(pref, &cfg(addr));
    let local = b.local_addrs()[0];
    assert_ne!(local.port(), 0);
    let peer = std_sock(addr);
    peer.send_to(b"hello engine", local).unwrap();
    let got = recv_n(&mut *b, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0);
    assert_eq!(got[0].1, peer.local_addr().unwrap());
    assert_eq!(got[0].2, local);
    assert_eq!(got[0].3, b"hello engine");
    assert!(b.queue_send(0, peer.local_addr().unwrap(), b"and back"));
    b.flush().unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"and back");
    assert_eq!(from, local);
    let s = b.stats();
    assert_eq!((s.rx_datagrams, s.rx_bytes), (1, 12));
    assert_eq!((s.tx_datagrams, s.tx_bytes), (1, 8));
}

#[test]
fn round_trip_v4_both() {
    for p in BOTH {
        round_trip(p, "127.0.0.1:0");
    }
}

#[test]
fn round_trip_v6_both() {
    for p in BOTH {
        round_trip(p, "[::1]:0");
    }
}

fn gso_batch(pref: BackendPreference, addr: &str) {
    let mut b = open(pref, &cfg(addr));
    let peer = std_sock(addr);
    let dest = peer.local_addr().unwrap();
    for i in 0..40 {
        assert!(b.queue_send(0, dest, &payload(i, 1000)));
    }
    b.flush().unwrap();
    // Let the batch complete (io_uring reaps completions in flush or the next poll).
    b.poll(Some(Duration::ZERO), &mut |_| {}).unwrap();
    let s = *b.stats();
    assert_eq!(s.gso_sends, 1, "{s:?}");
    assert_eq!(s.gso_segments, 40);
    assert_eq!(s.send_messages, 1);
    assert_eq!(s.tx_datagrams, 40);
    assert_eq!(s.drops, DropStats::default());
    // One message of 40 datagrams: more than 32, at most 64.
    let mut sizes = [0u64; BATCH_SIZE_BUCKETS];
    sizes[6] = 1;
    assert_eq!(s.tx_batch_sizes, sizes);
    match b.kind() {
        // At least the send and the receive armed on open, and the send's completion.
        BackendKind::IoUring => assert!(s.uring_sqes >= 2 && s.uring_cqes >= 1, "{s:?}"),
        BackendKind::Portable => assert_eq!((s.uring_sqes, s.uring_cqes), (0, 0)),
    }
    let mut buf = [0u8; 2048];
    for i in 0..40 {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, b.local_addrs()[0]);
        assert_eq!(&buf[..n], &payload(i, 1000)[..], "datagram {i}");
    }
}

#[test]
fn gso_batch_of_40_leaves_as_one_send_both() {
    for p in BOTH {
        gso_batch(p, "127.0.0.1:0");
    }
}

#[test]
fn gso_batch_v6_both() {
    for p in BOTH {
        gso_batch(p, "[::1]:0");
    }
}

#[test]
fn gso_short_tail_and_mixed_sizes() {
    for p in BOTH {
        let mut b = open(p, &cfg("127.0.0.1:0"));
        let peer = std_sock("127.0.0.1:0");
        let dest = peer.local_addr().unwrap();
        let sizes = [300, 300, 300, 120, 300, 300, 800];
        for (i, &n) in sizes.iter().enumerate() {
            assert!(b.queue_send(0, dest, &payload(i, n)));
        }
        b.flush().unwrap();
        b.poll(Some(Duration::ZERO), &mut |_| {}).unwrap();
        // [300 x3 + 120] [300 x2] [800]
        assert_eq!(b.stats().send_messages, 3);
        assert_eq!(b.stats().gso_sends, 2);
        assert_eq!(b.stats().gso_segments, 6);
        let mut buf = [0u8; 2048];
        for (i, &n) in sizes.iter().enumerate() {
            let (got, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..got], &payload(i, n)[..]);
        }
    }
}

#[test]
fn gro_socket_receives_30_from_plain_socket_both() {
    for p in BOTH {
        let mut b = open(p, &cfg("127.0.0.1:0"));
        let local = b.local_addrs()[0];
        let peer = std_sock("127.0.0.1:0");
        for i in 0..30 {
            peer.send_to(&payload(i, 700), local).unwrap();
        }
        let got = recv_n(&mut *b, 30);
        assert_eq!(got.len(), 30);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.1, peer.local_addr().unwrap());
            assert_eq!(g.3, payload(i, 700), "datagram {i}");
        }
        let st = b.stats();
        assert_eq!(st.rx_datagrams, 30);
        // Every received buffer is in the batch size distribution, once.
        assert_eq!(st.rx_batch_sizes.iter().sum::<u64>(), st.recv_completions);
    }
}

/// A GSO send over loopback reaches a GRO socket as one coalesced buffer, which the backend
/// must split back into the original datagrams.
#[test]
fn gso_sender_to_gro_receiver_is_split_back_both() {
    for tx in BOTH {
        for rx in BOTH {
            let mut s = open(tx, &cfg("127.0.0.1:0"));
            let mut r = open(rx, &cfg("127.0.0.1:0"));
            let dest = r.local_addrs()[0];
            for i in 0..40 {
                assert!(s.queue_send(0, dest, &payload(i, 1100)));
            }
            assert!(s.queue_send(0, dest, &payload(99, 50)));
            s.flush().unwrap();
            let got = recv_n(&mut *r, 41);
            assert_eq!(got.len(), 41, "{tx:?} -> {rx:?}");
            for (i, g) in got.iter().take(40).enumerate() {
                assert_eq!(g.1, s.local_addrs()[0]);
                assert_eq!(g.3, payload(i, 1100), "datagram {i}");
            }
            assert_eq!(got[40].3, payload(99, 50));
            let st = r.stats();
            assert!(st.gro_coalesced >= 1, "{tx:?} -> {rx:?}: {st:?}");
            assert_eq!(st.gro_segments, 41);
            assert_eq!(st.rx_datagrams, 41);
            assert_eq!(st.rx_batch_sizes.iter().sum::<u64>(), st.recv_completions);
            assert_eq!(
                st.rx_batch_sizes[1..].iter().sum::<u64>(),
                st.gro_coalesced,
                "buffers of more than one datagram are the coalesced ones"
            );
        }
    }
}

#[test]
fn waker_wakes_blocked_poll_both() {
    for p in BOTH {
        let mut b = open(p, &cfg("127.0.0.1:0"));
        let w = b.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.wake();
        });
        let mut calls = 0;
        // Blocks with no timeout: only the wake can end it.
        b.poll(None, &mut |_| calls += 1).unwrap();
        t.join().unwrap();
        assert_eq!(calls, 0);
        assert_eq!(b.stats().wakeups, 1);
        // The wake was consumed: a zero-timeout poll now returns with nothing.
        b.poll(Some(Duration::ZERO), &mut |_| calls += 1).unwrap();
        assert_eq!(b.stats().wakeups, 1);
    }
}

#[test]
fn tiny_buffer_ring_exhaustion_recovers() {
    for p in BOTH {
        let mut c = cfg("127.0.0.1:0");
        c.gro = false;
        c.recv_buffers = RecvBuffers {
            count: 4,
            size: 1500,
        };
        let mut b = open(p, &c);
        let local = b.local_addrs()[0];
        let peer = std_sock("127.0.0.1:0");
        for round in 0..3 {
            for i in 0..64 {
                peer.send_to(&payload(round * 100 + i, 200), local).unwrap();
            }
            let got = recv_n(&mut *b, 64);
            assert_eq!(got.len(), 64, "{p:?} round {round}");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g.3, payload(round * 100 + i, 200));
            }
        }
        let s = b.stats();
        assert_eq!(s.rx_datagrams, 192);
        assert_eq!(s.drops, DropStats::default());
        if p == BackendPreference::IoUring {
            assert!(s.buf_ring_exhausted > 0, "{s:?}");
            assert!(s.recv_rearms >= s.buf_ring_exhausted);
        }
    }
}

#[test]
fn oversized_datagram_is_counted_as_truncated_and_service_continues() {
    for p in BOTH {
        let mut c = cfg("127.0.0.1:0");
        c.gro = false;
        c.recv_buffers = RecvBuffers {
            count: 8,
            size: 256,
        };
        let mut b = open(p, &c);
        let local = b.local_addrs()[0];
        let peer = std_sock("127.0.0.1:0");
        peer.send_to(&payload(1, 1000), local).unwrap();
        peer.send_to(&payload(2, 200), local).unwrap();
        let got = recv_n(&mut *b, 1);
        assert_eq!(got.len(), 1, "{p:?}");
        assert_eq!(got[0].3, payload(2, 200));
        assert_eq!(b.stats().drops.recv_truncated, 1, "{p:?}");
    }
}

#[test]
fn send_drops_are_counted_and_a_full_queue_submits_before_it_takes_more() {
    for p in BOTH {
        let mut c = cfg("127.0.0.1:0");
        c.send_batches = 2;
        let mut b = open(p, &c);
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!b.queue_send(3, v4, b"x"));
        assert!(!b.queue_send(0, v6, b"x"));
        assert!(!b.queue_send(0, v4, &vec![0; MAX_UDP_PAYLOAD + 1]));
        assert!(b.queue_send(0, v4, b"a"));
        assert!(b.queue_send(0, "127.0.0.1:10".parse().unwrap(), b"b"));
        assert_eq!(b.stats().tx_datagrams, 0, "{p:?}: queued, not sent yet");
        // Both batches are taken: the third destination's datagram makes the queue
        // submit the two it holds (their completions free the batches), then fits.
        assert!(b.queue_send(0, "127.0.0.1:11".parse().unwrap(), b"c"));
        assert_eq!(b.stats().tx_datagrams, 2, "{p:?}");
        let d = b.stats().drops;
        assert_eq!(
            (d.bad_socket, d.family_mismatch, d.too_large, d.queue_full),
            (1, 1, 1, 0),
            "{p:?}"
        );
        b.flush().unwrap();
        b.poll(Some(Duration::ZERO), &mut |_| {}).unwrap();
        assert_eq!(b.stats().tx_datagrams, 3, "{p:?}");
        // A lent buffer joins the same way when the queue is full.
        assert!(b.queue_send(0, v4, b"d"));
        assert!(b.queue_send(0, "127.0.0.1:10".parse().unwrap(), b"e"));
        let mut buf = b.lend_send_buf().expect("a chunk");
        buf.bytes_mut()[0] = b'f';
        let mut hint = SendHint::default();
        assert!(b.queue_send_buf(0, "127.0.0.1:12".parse().unwrap(), buf, 1, &mut hint));
        b.flush().unwrap();
        b.poll(Some(Duration::ZERO), &mut |_| {}).unwrap();
        assert_eq!(b.stats().tx_datagrams, 6, "{p:?}");
        assert_eq!(b.stats().drops.queue_full, 0, "{p:?}");
    }
}

#[test]
fn dual_stack_sockets_report_their_index() {
    for p in BOTH {
        let mut c = cfg("127.0.0.1:0");
        c.bind.push("[::1]:0".parse().unwrap());
        let mut b = open(p, &c);
        let addrs = b.local_addrs().to_vec();
        let p4 = std_sock("127.0.0.1:0");
        let p6 = std_sock("[::1]:0");
        p4.send_to(b"four", addrs[0]).unwrap();
        p6.send_to(b"six", addrs[1]).unwrap();
        let mut got = recv_n(&mut *b, 2);
        got.sort_by_key(|g| g.0);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].3.as_slice()), (0, &b"four"[..]));
        assert_eq!((got[1].0, got[1].3.as_slice()), (1, &b"six"[..]));
        assert_eq!(got[1].2, addrs[1]);
    }
}

#[test]
fn auto_prefers_io_uring_here() {
    let b = open_backend(BackendPreference::Auto, &cfg("127.0.0.1:0")).unwrap();
    assert_eq!(b.kind(), BackendKind::IoUring);
}

#[test]
fn empty_bind_is_an_error() {
    let c = IoConfig::default();
    assert!(open_backend(BackendPreference::Portable, &c).is_err());
    assert!(open_backend(BackendPreference::IoUring, &c).is_err());
}

#[test]
fn backend_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Box<dyn IoBackend>>();
    is_send::<Waker>();
}

#[test]
fn setup_refusals_are_recognised() {
    for e in [libc::EPERM, libc::ENOSYS, libc::EINVAL, libc::EOPNOTSUPP] {
        assert!(uring::is_setup_refusal(&std::io::Error::from_raw_os_error(
            e
        )));
    }
    assert!(uring::is_setup_refusal(&std::io::Error::from(
        std::io::ErrorKind::Unsupported
    )));
    assert!(!uring::is_setup_refusal(
        &std::io::Error::from_raw_os_error(libc::EADDRINUSE)
    ));
}

/// Installs, on the calling thread only, a seccomp filter that answers `io_uring_setup`
/// with `EPERM` (as Docker's default profile does) and allows everything else.
fn refuse_io_uring_on_this_thread() {
    // Classic BPF opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let nr = libc::SYS_io_uring_setup as u32;
    let mut prog = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `fprog` points at a live filter array for the call's
    // duration (the kernel copies it). Without TSYNC the filter applies to this thread only.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &raw const fprog
            ),
            0
        );
    }
}

#[test]
fn auto_falls_back_to_portable_when_seccomp_refuses_io_uring() {
    std::thread::spawn(|| {
        refuse_io_uring_on_this_thread();
        let c = cfg("127.0.0.1:0");
        let e = open_backend(BackendPreference::IoUring, &c)
            .err()
            .expect("io_uring must be refused on this thread");
        assert!(uring::is_setup_refusal(&e), "{e}");
        let mut b = open_backend(BackendPreference::Auto, &c).unwrap();
        assert_eq!(b.kind(), BackendKind::Portable);
        let peer = std_sock("127.0.0.1:0");
        peer.send_to(b"still works", b.local_addrs()[0]).unwrap();
        let got = recv_n(&mut *b, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].3, b"still works");
    })
    .join()
    .unwrap();
}

#[test]
fn batch_buckets_are_ceil_log2_capped() {
    let cases = [
        (0, 0),
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 3),
        (32, 5),
        (33, 6),
        (64, 6),
        (65, 7),
        (u64::MAX, 7),
    ];
    for (n, b) in cases {
        assert_eq!(batch_bucket(n), b, "{n} datagrams");
        assert!(
            n <= BATCH_SIZE_BOUNDS[b],
            "{n} is within its bucket's bound"
        );
    }
}

/// Datagrams a backend reads late carry the kernel's receive time: two sent 30 ms
/// apart and read together 60 ms after the first arrive 30 ms apart and before the
/// read, on both backends; with `rx_timestamps` off they carry none.
#[test]
fn datagrams_read_late_carry_their_kernel_arrival_both() {
    for p in BOTH {
        let mut b = open(p, &cfg("127.0.0.1:0"));
        let local = b.local_addrs()[0];
        let peer = std_sock("127.0.0.1:0");
        // The kernel turns receive stamping on lazily (a deferred static key, the first
        // time any socket asks): until then a datagram is stamped when it is read, not
        // when it arrived. Wait until a datagram read 20 ms late shows its age.
        let mut stamped_on_arrival = false;
        for _ in 0..100 {
            peer.send_to(b"warm", local).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let mut arrival = None;
            for _ in 0..10 {
                b.poll(Some(Duration::from_millis(20)), &mut |r: Received<'_>| {
                    arrival = r.arrival;
                })
                .unwrap();
                if arrival.is_some() {
                    break;
                }
            }
            if arrival.is_some_and(|a| a.elapsed() >= Duration::from_millis(15)) {
                stamped_on_arrival = true;
                break;
            }
        }
        assert!(
            stamped_on_arrival,
            "{p:?}: the kernel never stamped on arrival"
        );
        let sent0 = std::time::Instant::now();
        peer.send_to(b"first", local).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        peer.send_to(b"second", local).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let read = std::time::Instant::now();
        let mut got = Vec::new();
        for _ in 0..100 {
            if got.len() >= 2 {
                break;
            }
            b.poll(Some(Duration::from_millis(20)), &mut |r: Received<'_>| {
                got.push((r.data.to_vec(), r.arrival));
            })
            .unwrap();
        }
        assert_eq!(got.len(), 2, "{p:?}");
        let (Some(a0), Some(a1)) = (got[0].1, got[1].1) else {
            panic!("{p:?}: no arrival times: {got:?}");
        };
        assert!(
            a0 >= sent0 && a1 <= read,
            "{p:?}: arrivals outside the send window: first {:?} after the first send, \
             second {:?} before the read",
            a0.checked_duration_since(sent0),
            read.checked_duration_since(a1)
        );
        let gap = a1.duration_since(a0);
        assert!(
            gap >= Duration::from_millis(25),
            "{p:?}: arrivals {gap:?} apart for datagrams sent 30 ms apart"
        );

        let off = IoConfig {
            rx_timestamps: false,
            ..cfg("127.0.0.1:0")
        };
        let mut b = open(p, &off);
        let local = b.local_addrs()[0];
        peer.send_to(b"plain", local).unwrap();
        let mut arrival = Some(None);
        for _ in 0..100 {
            b.poll(Some(Duration::from_millis(20)), &mut |r: Received<'_>| {
                arrival = Some(r.arrival);
            })
            .unwrap();
            if arrival != Some(None) || b.stats().rx_datagrams > 0 {
                break;
            }
        }
        assert_eq!(arrival, Some(None), "{p:?}: no stamp asked for, none given");
        assert_eq!(b.stats().rx_datagrams, 1);
    }
}
