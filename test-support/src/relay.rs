//! A UDP relay that impairs the path between one peer and the engine: loss, delay,
//! jitter (which reorders), and a rate limit with a drop-tail queue — the parts of a
//! real access link that NACK/RTX, PLI and bandwidth estimation exist for.
//!
//! The peer talks to [`Relay::front`] instead of the engine's address (rewrite the
//! engine's candidate in its answer with [`Relay::route_sdp`], or add the front address
//! as the remote candidate); the relay forwards from its own back socket to the engine,
//! and the engine's replies back to the peer. Each direction has its own [`Link`], which
//! a test may change while traffic flows ([`Relay::set_uplink`], [`Relay::set_downlink`]).
//! Randomness is a seeded xorshift, so a run's loss pattern depends only on the seed
//! and the packet order.

use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The impairments of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Probability in `[0, 1]` that a datagram is dropped before the queue.
    pub loss: f64,
    /// Fixed one-way delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram; datagrams are
    /// released in order of their release time, so jitter reorders.
    pub jitter: Duration,
    /// Link capacity in bits per second; `None` for unlimited.
    pub rate_bps: Option<u64>,
    /// Drop-tail queue size in bytes in front of the rate limit.
    pub queue_bytes: usize,
    /// Drop STUN datagrams too (first byte 0..=3); when `false` (default) loss spares
    /// them so that ICE consent does not time out on a lossy test link.
    pub lose_stun: bool,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue_bytes: 64 * 1024,
            lose_stun: false,
        }
    }
}

impl Link {
    /// A clean link: nothing lost or delayed.
    pub fn clean() -> Link {
        Link::default()
    }

    /// A link that loses `loss` of its datagrams at random.
    pub fn lossy(loss: f64) -> Link {
        Link {
            loss,
            ..Link::default()
        }
    }

    /// A link limited to `bps`, with a queue that holds `queue_ms` of it.
    pub fn shaped(bps: u64, queue_ms: u64) -> Link {
        Link {
            rate_bps: Some(bps),
            queue_bytes: ((bps / 8) * queue_ms / 1000).max(1500) as usize,
            ..Link::default()
        }
    }
}

/// What happened to the datagrams of one direction.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Datagrams received from the sender.
    pub received: AtomicU64,
    /// Datagrams delivered to the receiver.
    pub delivered: AtomicU64,
    /// Datagrams dropped by random loss.
    pub lost: AtomicU64,
    /// Datagrams dropped because the rate-limit queue was full.
    pub queue_drops: AtomicU64,
}

impl DirStats {
    /// `(received, delivered, lost, queue_drops)` now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.queue_drops.load(Ordering::Relaxed),
        )
    }
}

struct Shared {
    up: Mutex<Link>,
    down: Mutex<Link>,
    up_stats: DirStats,
    down_stats: DirStats,
    stop: AtomicBool,
}

/// A running relay; stops when dropped.
pub struct Relay {
    front: SocketAddr,
    back: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Held {
    at: Instant,
    order: u64,
    up: bool,
    data: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Held) -> bool {
        self.at == o.at && self.order == o.order
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    // Earliest release first out of the (max-)heap.
    fn cmp(&self, o: &Held) -> std::cmp::Ordering {
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

/// The rate limiter and queue of one direction.
#[derive(Default)]
struct Shaper {
    /// When the link finishes serialising what is queued.
    busy_until: Option<Instant>,
}

impl Shaper {
    /// When a datagram of `len` bytes leaves the link, or `None` if the queue is full.
    fn admit(&mut self, now: Instant, len: usize, link: &Link) -> Option<Instant> {
        let Some(bps) = link.rate_bps.filter(|b| *b > 0) else {
            return Some(now);
        };
        let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
        let backlog = start.duration_since(now).as_secs_f64() * bps as f64 / 8.0;
        if backlog + len as f64 > link.queue_bytes as f64 {
            return None;
        }
        let done = start + Duration::from_secs_f64(len as f64 * 8.0 / bps as f64);
        self.busy_until = Some(done);
        Some(done)
    }
}

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Relay {
    /// Starts a relay in front of `target` (the engine's address) with clean links and
    /// loss seed `seed`.
    pub fn start(target: SocketAddr, seed: u64) -> std::io::Result<Relay> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        for s in [&front, &back] {
            s.set_nonblocking(true)?;
        }
        let shared = Arc::new(Shared {
            up: Mutex::new(Link::default()),
            down: Mutex::new(Link::default()),
            up_stats: DirStats::default(),
            down_stats: DirStats::default(),
            stop: AtomicBool::new(false),
        });
        let (front_addr, back_addr) = (front.local_addr()?, back.local_addr()?);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-relay".into())
            .spawn(move || run(front, back, target, sh, seed | 1))?;
        Ok(Relay {
            front: front_addr,
            back: back_addr,
            target,
            shared,
            thread: Some(thread),
        })
    }

    /// The address the peer sends to.
    pub fn front(&self) -> SocketAddr {
        self.front
    }

    /// The address the engine sees the peer at.
    pub fn back(&self) -> SocketAddr {
        self.back
    }

    /// Sets the peer → engine link.
    pub fn set_uplink(&self, link: Link) {
        *self
            .shared
            .up
            .lock()
            .expect("relay lock: the relay thread never panics") = link;
    }

    /// Sets the engine → peer link.
    pub fn set_downlink(&self, link: Link) {
        *self
            .shared
            .down
            .lock()
            .expect("relay lock: the relay thread never panics") = link;
    }

    /// Peer → engine counters.
    pub fn uplink_stats(&self) -> &DirStats {
        &self.shared.up_stats
    }

    /// Engine → peer counters.
    pub fn downlink_stats(&self) -> &DirStats {
        &self.shared.down_stats
    }

    /// `sdp` with every candidate at the engine's address pointed at the relay instead.
    pub fn route_sdp(&self, sdp: &str) -> String {
        let from = format!(" {} {} typ", self.target.ip(), self.target.port());
        let to = format!(" {} {} typ", self.front.ip(), self.front.port());
        sdp.replace(&from, &to)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(front: UdpSocket, back: UdpSocket, target: SocketAddr, sh: Arc<Shared>, seed: u64) {
    let mut rng = Rng(seed);
    let mut heap: BinaryHeap<Held> = BinaryHeap::new();
    let mut peer: Option<SocketAddr> = None;
    let (mut up_shaper, mut down_shaper) = (Shaper::default(), Shaper::default());
    let mut order = 0u64;
    let mut buf = vec![0u8; 65536];
    while !sh.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut got = false;
        for up in [true, false] {
            let sock = if up { &front } else { &back };
            loop {
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                got = true;
                if up {
                    peer = Some(from);
                } else if from != target {
                    continue;
                }
                let (link, stats, shaper) = if up {
                    (*lock(&sh.up), &sh.up_stats, &mut up_shaper)
                } else {
                    (*lock(&sh.down), &sh.down_stats, &mut down_shaper)
                };
                stats.received.fetch_add(1, Ordering::Relaxed);
                let stun = matches!(buf.first(), Some(0..=3));
                if (link.lose_stun || !stun) && link.loss > 0.0 && rng.next_f64() < link.loss {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(out) = shaper.admit(now, n, &link) else {
                    stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let jitter = link.jitter.mul_f64(rng.next_f64());
                order += 1;
                heap.push(Held {
                    at: out + link.delay + jitter,
                    order,
                    up,
                    data: buf[..n].to_vec(),
                });
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|h| h.at <= now) {
            let Some(h) = heap.pop() else { break };
            if h.up {
                let _ = back.send_to(&h.data, target);
                sh.up_stats.delivered.fetch_add(1, Ordering::Relaxed);
            } else if let Some(p) = peer {
                let _ = front.send_to(&h.data, p);
                sh.down_stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !got {
            let wait = heap
                .peek()
                .map(|h| h.at.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(1))
                .min(Duration::from_micros(500));
            std::thread::sleep(wait);
        }
    }
}

fn lock(m: &Mutex<Link>) -> std::sync::MutexGuard<'_, Link> {
    m.lock().expect("relay lock: the relay thread never panics")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    }

    #[test]
    fn relays_both_ways_and_loses_what_it_is_told() {
        let (engine, engine_addr) = echo();
        engine
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let relay = Relay::start(engine_addr, 7).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        peer.send_to(b"\x80hello", relay.front()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = engine.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x80hello");
        assert_eq!(from, relay.back());
        engine.send_to(b"\x80back", from).unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"\x80back"[..], relay.front()));

        relay.set_uplink(Link::lossy(0.5));
        for i in 0..400u32 {
            let mut d = vec![0x80];
            d.extend_from_slice(&i.to_be_bytes());
            peer.send_to(&d, relay.front()).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
        // Wait for the relay to have handled all of them (it may be starved under load).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (rx, dl, lost, _) = relay.uplink_stats().snapshot();
            if rx == 401 && dl + lost == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "relay stalled at {rx}/{dl}/{lost}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut delivered = 0;
        engine
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        while engine.recv_from(&mut buf).is_ok() {
            delivered += 1;
        }
        let (rx, dl, lost, _) = relay.uplink_stats().snapshot();
        assert_eq!(rx, 401);
        assert_eq!(dl, delivered + 1);
        assert_eq!(dl + lost, 401);
        assert!((120..=280).contains(&lost), "lost {lost} of 400 at 50 %");
    }

    #[test]
    fn shaper_queues_at_the_rate_and_drops_the_tail() {
        let mut s = Shaper::default();
        let link = Link::shaped(800_000, 50); // 100 kB/s, 5 kB queue
        let now = Instant::now();
        let first = s.admit(now, 1000, &link).unwrap();
        assert_eq!(first - now, Duration::from_millis(10));
        let mut admitted = 1;
        while s.admit(now, 1000, &link).is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, 5, "a 5 kB queue holds five 1 kB datagrams");
        // After 20 ms two have left: room for two more.
        let later = now + Duration::from_millis(20);
        assert!(s.admit(later, 1000, &link).is_some());
        assert!(s.admit(later, 1000, &link).is_some());
        assert!(s.admit(later, 1000, &link).is_none());
    }

    #[test]
    fn route_sdp_points_engine_candidates_at_the_relay() {
        let relay = Relay::start("127.0.0.1:5000".parse().unwrap(), 1).unwrap();
        let sdp = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n";
        let routed = relay.route_sdp(sdp);
        assert!(routed.contains(&format!("127.0.0.1 {} typ host", relay.front().port())));
    }
}
