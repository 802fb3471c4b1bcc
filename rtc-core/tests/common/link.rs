//! A bottleneck link simulator and a driver for two `Rtc` connected through it,
//! on a virtual clock (no sleeping; runs faster than real time).
//!
//! The link from `a` to `b` has a capacity (bits per second), a drop-tail queue
//! bounded in queueing delay, a propagation delay and optional random loss from a
//! seeded RNG, so every run is deterministic. The reverse link (`b` to `a`, which
//! carries feedback) has the same propagation delay and no bottleneck.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtc_core::Rtc;
use rtc_core::event::Event;
use rtc_core::io::{Input, Output, Protocol, Receive};
use rtc_core::rtp::{ExtensionMap, RtpPacket};

/// One direction of a simulated path.
#[derive(Debug)]
pub struct Link {
    /// Bottleneck capacity (bps); `u64::MAX` for none.
    pub capacity_bps: u64,
    /// A packet arriving while the queue already holds more than this much
    /// transmission time is dropped (drop-tail).
    pub queue_limit: Duration,
    /// Propagation delay added after the bottleneck.
    pub delay: Duration,
    /// Probability that a packet is lost at random (before the queue).
    pub loss: f64,
    /// When the bottleneck finishes sending what is queued.
    busy_until: Option<Instant>,
    rng: StdRng,
    /// Packets offered, dropped by the queue, lost at random, and delivered.
    pub offered: u64,
    pub queue_drops: u64,
    pub random_losses: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
}

impl Link {
    pub fn new(
        capacity_bps: u64,
        queue_limit: Duration,
        delay: Duration,
        loss: f64,
        seed: u64,
    ) -> Self {
        Link {
            capacity_bps,
            queue_limit,
            delay,
            loss,
            busy_until: None,
            rng: StdRng::seed_from_u64(seed),
            offered: 0,
            queue_drops: 0,
            random_losses: 0,
            delivered: 0,
            delivered_bytes: 0,
        }
    }

    /// A link with only a propagation delay.
    pub fn unconstrained(delay: Duration) -> Self {
        Link::new(u64::MAX, Duration::MAX, delay, 0.0, 0)
    }

    /// The queueing delay a packet offered at `now` would see.
    pub fn backlog(&self, now: Instant) -> Duration {
        self.busy_until
            .map_or(Duration::ZERO, |b| b.saturating_duration_since(now))
    }

    /// Changes the capacity. Packets already queued keep their departure times;
    /// packets offered from now on are sent at the new rate.
    pub fn set_capacity(&mut self, capacity_bps: u64) {
        self.capacity_bps = capacity_bps;
    }

    /// Offers a packet of `bytes` at `now`; returns its arrival time at the far end,
    /// or `None` if it was dropped.
    pub fn send(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        self.offered += 1;
        if self.loss > 0.0 && self.rng.random_bool(self.loss) {
            self.random_losses += 1;
            return None;
        }
        if self.capacity_bps == u64::MAX {
            self.delivered += 1;
            self.delivered_bytes += bytes as u64;
            return Some(now + self.delay);
        }
        if self.backlog(now) > self.queue_limit {
            self.queue_drops += 1;
            return None;
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let tx = Duration::from_nanos(bytes as u64 * 8 * 1_000_000_000 / self.capacity_bps);
        let done = start + tx;
        self.busy_until = Some(done);
        self.delivered += 1;
        self.delivered_bytes += bytes as u64;
        Some(done + self.delay)
    }
}

struct Flight {
    at: Instant,
    seq: u64,
    to_b: bool,
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Flight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Flight {}
impl PartialOrd for Flight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Flight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Two `Rtc` joined by a [`Link`] each way, with the events the estimator tests
/// care about recorded.
pub struct LinkedPair {
    pub a: Rtc,
    pub b: Rtc,
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub now: Instant,
    pub start: Instant,
    /// `a` to `b`: the bottleneck.
    pub ab: Link,
    /// `b` to `a`: feedback.
    pub ba: Link,
    a_timeout: Instant,
    b_timeout: Instant,
    seq: u64,
    flights: BinaryHeap<Reverse<Flight>>,
    pub a_connected: bool,
    pub b_connected: bool,
    /// `a`'s egress bitrate estimates with the time they were emitted.
    pub estimates: Vec<(Instant, u64)>,
    /// RTP packets `b` received: (arrival time, payload bytes).
    pub received: Vec<(Instant, usize)>,
    /// With `ext_map` set: (RTP sequence number, transport-wide sequence number) of
    /// each RTP packet `b` received (retransmissions after RTX unwrapping).
    pub received_twcc: Vec<(u16, u16)>,
    /// `b`'s header extension map, to read `received_twcc`.
    pub ext_map: Option<ExtensionMap>,
    /// When set, `a` runs only at multiples of this period since the start: its
    /// timeouts, its application's wake-ups and the packets it receives all wait for
    /// the next tick, as on a loaded machine where the sender's thread gets the CPU
    /// late and then releases at one instant what fell due meanwhile.
    pub a_tick: Option<Duration>,
}

impl LinkedPair {
    pub fn new(
        a: Rtc,
        a_addr: SocketAddr,
        b: Rtc,
        b_addr: SocketAddr,
        now: Instant,
        ab: Link,
        ba: Link,
    ) -> Self {
        LinkedPair {
            a,
            b,
            a_addr,
            b_addr,
            now,
            start: now,
            ab,
            ba,
            a_timeout: now,
            b_timeout: now,
            seq: 0,
            flights: BinaryHeap::new(),
            a_connected: false,
            b_connected: false,
            estimates: Vec::new(),
            received: Vec::new(),
            received_twcc: Vec::new(),
            ext_map: None,
            a_tick: None,
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// When `a` runs for something due at `t`: `t` itself, or with
    /// [`LinkedPair::a_tick`] the first tick at or after `t`.
    pub fn a_time(&self, t: Instant) -> Instant {
        let Some(q) = self.a_tick.filter(|q| !q.is_zero()) else {
            return t;
        };
        let since = t.saturating_duration_since(self.start).as_nanos();
        let ticks = since.div_ceil(q.as_nanos());
        self.start + Duration::from_nanos(u64::try_from(ticks * q.as_nanos()).unwrap_or(u64::MAX))
    }

    /// `a`'s latest estimate, if any was emitted.
    pub fn estimate(&self) -> Option<u64> {
        self.estimates.last().map(|e| e.1)
    }

    fn drain(&mut self, from_a: bool) {
        let now = self.now;
        loop {
            let rtc = if from_a { &mut self.a } else { &mut self.b };
            let (source, destination, data) = match rtc.poll_output().expect("poll_output") {
                Output::Timeout(t) => {
                    if from_a {
                        self.a_timeout = t;
                    } else {
                        self.b_timeout = t;
                    }
                    break;
                }
                Output::Transmit(t) => (t.source, t.destination, t.contents.to_vec()),
                Output::Event(e) => {
                    match (from_a, e) {
                        (true, Event::Connected) => self.a_connected = true,
                        (false, Event::Connected) => self.b_connected = true,
                        (true, Event::EgressBitrateEstimate(bps)) => {
                            self.estimates.push((now, bps))
                        }
                        (false, Event::RtpPacket(p)) => {
                            self.received.push((now, p.payload().len()));
                            if let Some(map) = &self.ext_map
                                && let Ok(pkt) = RtpPacket::parse(p.packet)
                                && let Ok(v) = pkt.extensions(map)
                                && let Some(t) = v.transport_cc
                            {
                                self.received_twcc.push((pkt.header.sequence_number, t));
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
            };
            let link = if from_a { &mut self.ab } else { &mut self.ba };
            if let Some(at) = link.send(now, data.len()) {
                let at = if from_a { at } else { self.a_time(at) };
                self.seq += 1;
                self.flights.push(Reverse(Flight {
                    at,
                    seq: self.seq,
                    to_b: from_a,
                    source,
                    destination,
                    data,
                }));
            }
        }
    }

    /// Brings `a`'s clock to `now` so that what the caller writes next is stamped
    /// with the current time.
    pub fn touch_a(&mut self) {
        self.a
            .handle_input(Input::Timeout(self.now))
            .expect("handle_input timeout");
    }

    /// Runs until both ends report `Connected`, for at most `limit`. Returns
    /// whether they did.
    pub fn connect(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        while self.now < end && !(self.a_connected && self.b_connected) {
            self.step(None, end);
        }
        self.a_connected && self.b_connected
    }

    /// Runs until `end` (virtual time). `app` is called at every step with the pair
    /// (its clock at the current time) and returns when it next wants to run.
    pub fn run_until(
        &mut self,
        end: Instant,
        app: &mut impl FnMut(&mut LinkedPair) -> Option<Instant>,
    ) {
        let mut guard = 0u64;
        let mut wake = None;
        while self.now < end {
            // The application runs on `a`'s thread: only on its ticks.
            if guard == 0 || self.a_time(self.now) == self.now {
                wake = app(self);
            }
            let w = match self.a_tick {
                None => wake,
                Some(_) => wake.map(|w| self.a_time(w.max(self.now + Duration::from_nanos(1)))),
            };
            self.step(w, end);
            guard += 1;
            assert!(guard < 10_000_000, "simulation made no progress");
        }
    }

    /// One step: drain both ends into the links, advance the clock to the next
    /// delivery, timeout, `wake` or `end`, and apply what is due.
    fn step(&mut self, wake: Option<Instant>, end: Instant) {
        self.drain(true);
        self.drain(false);
        let a_at = self.a_time(self.a_timeout);
        let mut next = a_at.min(self.b_timeout).min(end);
        if let Some(w) = wake {
            next = next.min(w);
        }
        if let Some(Reverse(f)) = self.flights.peek() {
            next = next.min(f.at);
        }
        self.now = self.now.max(next);
        while self.flights.peek().is_some_and(|f| f.0.at <= self.now) {
            let Reverse(f) = self.flights.pop().expect("peeked");
            let rtc = if f.to_b { &mut self.b } else { &mut self.a };
            let r = Receive {
                proto: Protocol::Udp,
                source: f.source,
                destination: f.destination,
                contents: &f.data,
            };
            rtc.handle_input(Input::Receive(self.now, r))
                .expect("handle_input receive");
        }
        if a_at <= self.now {
            self.a
                .handle_input(Input::Timeout(self.now))
                .expect("handle_input timeout");
        }
        if self.b_timeout <= self.now {
            self.b
                .handle_input(Input::Timeout(self.now))
                .expect("handle_input timeout");
        }
    }
}
