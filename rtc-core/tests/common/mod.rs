//! Test harness: two `Rtc` wired through a simulated network, driven by a virtual
//! clock (no sleeping; runs faster than real time).
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtc_core::Rtc;
use rtc_core::event::{ChannelId, Event, FailReason, KeyframeRequestKind};
use rtc_core::ice::Candidate;
use rtc_core::ice::IceConnectionState;
use rtc_core::io::{Input, Output, Protocol, Receive};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};

/// An owned copy of the events a test cares about.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Ice(IceConnectionState),
    Connected,
    Failed(FailReason),
    Keyframe(u32, KeyframeRequestKind),
    ChannelOpen(ChannelId, String),
    ChannelData(ChannelId, bool, Vec<u8>),
    ChannelClose(ChannelId),
    Media {
        mid: Mid,
        pt: u8,
        time: u64,
        keyframe: bool,
        contiguous: bool,
        data: Vec<u8>,
    },
    MediaAdded(Mid),
    Rtp {
        ssrc: u32,
        seq_no: u64,
        payload: Vec<u8>,
    },
    Other(String),
}

pub struct Peer {
    pub name: &'static str,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub events: Vec<Ev>,
    pub timeout: Instant,
}

impl Peer {
    pub fn new(name: &'static str, rtc: Rtc, addr: SocketAddr, now: Instant) -> Self {
        Peer {
            name,
            rtc,
            addr,
            events: Vec::new(),
            timeout: now,
        }
    }

    pub fn connected(&self) -> bool {
        self.events.contains(&Ev::Connected)
    }

    pub fn failed(&self) -> Option<&FailReason> {
        self.events.iter().find_map(|e| match e {
            Ev::Failed(r) => Some(r),
            _ => None,
        })
    }

    pub fn rtp_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Ev::Rtp { .. }))
            .count()
    }
}

/// Network conditions, applied per datagram.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    /// Probability that a datagram is held back an extra `delay` (reordering).
    pub reorder: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
        }
    }
}

struct InFlight {
    at: Instant,
    seq: u64,
    to_b: bool,
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Pair {
    pub a: Peer,
    pub b: Peer,
    pub now: Instant,
    pub start: Instant,
    pub net: NetConfig,
    /// When false, datagrams are silently dropped (a dead network).
    pub link_up: bool,
    rng: StdRng,
    seq: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    pub delivered: u64,
    pub lost: u64,
}

impl Pair {
    pub fn new(a: Peer, b: Peer, now: Instant, net: NetConfig, seed: u64) -> Self {
        Pair {
            a,
            b,
            now,
            start: now,
            net,
            link_up: true,
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            queue: BinaryHeap::new(),
            delivered: 0,
            lost: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self, to_b: bool) {
        let peer = if to_b { &mut self.a } else { &mut self.b };
        let mut sends = Vec::new();
        loop {
            match peer.rtc.poll_output().expect("poll_output") {
                Output::Timeout(t) => {
                    peer.timeout = t;
                    break;
                }
                Output::Transmit(t) => {
                    sends.push((t.proto, t.source, t.destination, t.contents.to_vec()));
                }
                Output::Event(e) => {
                    let ev = match e {
                        Event::IceConnectionStateChange(s) => Ev::Ice(s),
                        Event::Connected => Ev::Connected,
                        Event::Failed(r) => Ev::Failed(r),
                        Event::MediaAdded(m) => Ev::MediaAdded(m.mid),
                        Event::RtpPacket(p) => Ev::Rtp {
                            ssrc: p.ssrc,
                            seq_no: p.seq_no,
                            payload: p.payload().to_vec(),
                        },
                        Event::KeyframeRequest(k) => Ev::Keyframe(k.ssrc, k.kind),
                        Event::ChannelOpen(id, label) => Ev::ChannelOpen(id, label),
                        Event::ChannelData(d) => Ev::ChannelData(d.id, d.binary, d.data),
                        Event::ChannelClose(id) => Ev::ChannelClose(id),
                        Event::MediaData(d) => Ev::Media {
                            mid: d.mid,
                            pt: d.pt,
                            time: d.time,
                            keyframe: d.keyframe,
                            contiguous: d.contiguous,
                            data: d.data,
                        },
                        other => Ev::Other(format!("{other:?}")),
                    };
                    peer.events.push(ev);
                }
            }
        }
        for (proto, source, destination, data) in sends {
            self.send_datagram(to_b, proto, source, destination, data);
        }
    }

    /// Puts one datagram on the simulated network (with its loss, delay, jitter and
    /// reordering), from A to B when `to_b`. For datagrams a test takes from an
    /// `Rtc` other than through `poll_output` (sent in place).
    pub fn send_datagram(
        &mut self,
        to_b: bool,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    ) {
        let now = self.now;
        if !self.link_up || self.rng.random_bool(self.net.loss) {
            self.lost += 1;
            return;
        }
        let mut d = self.net.delay;
        if !self.net.jitter.is_zero() {
            d += self.net.jitter.mul_f64(self.rng.random::<f64>());
        }
        if self.net.reorder > 0.0 && self.rng.random_bool(self.net.reorder) {
            d += self.net.delay;
        }
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at: now + d,
            seq: self.seq,
            to_b,
            proto,
            source,
            destination,
            data,
        }));
    }

    /// One step: drain both peers, then advance the clock to the next event
    /// (a delivery or a timeout) and apply it.
    pub fn step(&mut self) {
        self.drain(true);
        self.drain(false);
        let next_delivery = self.queue.peek().map(|r| r.0.at);
        let next_timeout = [&self.a, &self.b]
            .iter()
            .filter(|p| p.rtc.is_alive())
            .map(|p| p.timeout)
            .min()
            .unwrap_or(self.now + Duration::from_secs(1))
            .max(self.now);
        let next = match next_delivery {
            Some(d) if d <= next_timeout => d,
            _ => next_timeout,
        };
        self.now = self.now.max(next);
        while let Some(Reverse(f)) = self.queue.peek() {
            if f.at > self.now {
                break;
            }
            let Reverse(f) = self.queue.pop().expect("peeked");
            let peer = if f.to_b { &mut self.b } else { &mut self.a };
            if f.destination != peer.addr || !peer.rtc.is_alive() {
                continue;
            }
            self.delivered += 1;
            let r = Receive {
                proto: f.proto,
                source: f.source,
                destination: f.destination,
                contents: &f.data,
            };
            peer.rtc
                .handle_input(Input::Receive(self.now, r))
                .expect("handle_input receive");
        }
        for peer in [&mut self.a, &mut self.b] {
            if peer.rtc.is_alive() && peer.timeout <= self.now {
                peer.rtc
                    .handle_input(Input::Timeout(self.now))
                    .expect("handle_input timeout");
            }
        }
    }

    /// Steps until `done` holds or `limit` of virtual time passed. Returns whether `done`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        let mut guard = 0u64;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
            guard += 1;
            assert!(guard < 5_000_000, "harness made no progress");
        }
        done(self)
    }

    pub fn both_connected(&self) -> bool {
        self.a.connected() && self.b.connected()
    }
}

impl Peer {
    /// Frames received in frame mode: (mid, pt, keyframe, contiguous, data).
    pub fn media(&self) -> Vec<(Mid, u8, bool, bool, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Media {
                    mid,
                    pt,
                    keyframe,
                    contiguous,
                    data,
                    ..
                } => Some((*mid, *pt, *keyframe, *contiguous, data.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Two `Rtc`s (A offers an audio and a video section, both send-receive, B answers)
/// connected over a clean simulated network; returns the pair and the sections.
pub fn connected_pair(rtp_mode: bool, net: NetConfig) -> (Pair, Mid, Mid) {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(rtp_mode).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(rtp_mode).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv);
    let video = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().unwrap();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap())
        .unwrap();
    a.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap(),
        )
        .unwrap();
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        net,
        31,
    );
    assert!(pair.run_until(Duration::from_secs(10), |p| p.both_connected()));
    (pair, audio, video)
}
