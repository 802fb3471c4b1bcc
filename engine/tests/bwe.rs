//! Each subscriber's layer follows its own link, with real sockets: a 3-layer VP8
//! simulcast publisher (synthetic layers at 150 kbit/s, 500 kbit/s and 1.5 Mbit/s) and
//! three subscribers, each behind its own shaping UDP relay (300 kbit/s, 1 Mbit/s,
//! unconstrained). Nothing tells the engine about the links: each subscriber's layer comes
//! from the estimate its own transport-wide feedback drives (forwarded packets carry
//! transport-wide sequence numbers, the leg's `Rtc` paces and probes, the allocator
//! chooses), so each settles on the layer its link carries, moves down when its link
//! shrinks and back up (after probing) when it recovers — and every stream stays
//! decodable: one sequence without holes (losses repaired by NACK from the publisher's
//! packet cache), layer switches only at keyframes, every frame whole.
//!
//! Waits are event-driven with long deadlines (the test reports the measured times with
//! `eprintln!`); no bound is close to what a loaded 2-core machine needs.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, Placement, SessionId, SessionSetup};
use rtc_core::ice::Candidate;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Protocol, Rtc};
use test_support::relay::{Link, Relay};

const LAYER_SSRC: [u32; 3] = [0x6000_0000, 0x6000_0001, 0x6000_0002];
/// Bit/s of each synthetic layer.
const LAYER_BPS: [u64; 3] = [150_000, 500_000, 1_500_000];
const FPS: u64 = 30;
/// Largest payload per packet.
const MAX_PAYLOAD: usize = 1100;
/// The relays' queues hold this long at their rate (a deep access-link buffer: the
/// moments before a move down overfill it less; with 250 ms a packet or so is lost
/// there and the test peer's NACKs give up after 1 s, so the hole is not always
/// repaired in time).
const QUEUE_MS: u64 = 500;

/// The VP8 payload of packet `part` (of `parts`) of `frame` on `layer`: descriptor with
/// a 15-bit PictureID (S set on the first packet), the frame header byte on the first
/// packet (bit 0 clear on a keyframe), then what the receiver checks: layer, frame
/// index, part, parts and the keyframe flag.
fn vp8_packet(layer: u8, frame: u32, part: u8, parts: u8, key: bool, len: usize) -> Vec<u8> {
    let pid = (frame & 0x7fff) as u16;
    let first = part == 0;
    let mut p = vec![
        if first { 0x90 } else { 0x80 },
        0x80,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        if first && key { 0x00 } else { 0x01 },
        layer,
    ];
    p.extend_from_slice(&frame.to_be_bytes());
    p.extend_from_slice(&[part, parts, u8::from(key)]);
    p.resize(len.max(p.len()), 0x5a);
    p
}

/// What a received payload says: (layer, frame, part, parts, key).
type PacketFacts = (u8, u32, u8, u8, bool);
/// (target, current) layer of a subscriber's leg.
type LegState = (Option<u8>, Option<u8>);

/// Parsed back from a received payload.
fn parse_packet(p: &[u8]) -> Option<PacketFacts> {
    let layer = *p.get(5)?;
    let frame = u32::from_be_bytes(p.get(6..10)?.try_into().ok()?);
    Some((layer, frame, *p.get(10)?, *p.get(11)?, *p.get(12)? == 1))
}

/// The publisher's encoder: three layers at their rates, 30 frames a second; a layer
/// whose SSRC got a keyframe request sends a keyframe next.
struct Simulcast {
    frame: u32,
    next: Instant,
    kf_seen: usize,
    key_due: [bool; 3],
    seq: [u16; 3],
}

impl Simulcast {
    fn new() -> Simulcast {
        Simulcast {
            frame: 0,
            next: Instant::now(),
            kf_seen: 0,
            key_due: [true; 3],
            seq: [0, 10_000, 20_000],
        }
    }

    fn tick(&mut self, c: &mut Client, now: Instant) {
        for (_, ssrc) in &c.keyframe_requests[self.kf_seen..] {
            if let Some(l) = LAYER_SSRC.iter().position(|s| s == ssrc) {
                self.key_due[l] = true;
            }
        }
        self.kf_seen = c.keyframe_requests.len();
        let mut frames = 0;
        while now >= self.next && frames < 5 {
            frames += 1;
            for l in 0..3u8 {
                let li = usize::from(l);
                let key = std::mem::take(&mut self.key_due[li]);
                let bytes = (LAYER_BPS[li] / 8 / FPS) as usize;
                let parts = bytes.div_ceil(MAX_PAYLOAD);
                let ts = (90_000 / FPS as u32)
                    .wrapping_mul(self.frame)
                    .wrapping_add(1_000_000 * u32::from(l));
                for part in 0..parts {
                    let len = bytes / parts;
                    let p = vp8_packet(l, self.frame, part as u8, parts as u8, key, len);
                    c.write_rtp(
                        VIDEO_PT,
                        self.seq[li],
                        ts,
                        LAYER_SSRC[li],
                        part + 1 == parts,
                        &p,
                    );
                    self.seq[li] = self.seq[li].wrapping_add(1);
                }
            }
            self.frame += 1;
            self.next += Duration::from_micros(1_000_000 / FPS);
        }
        if now >= self.next {
            // Far behind (the test thread was descheduled): skip, do not burst.
            self.next = now + Duration::from_micros(1_000_000 / FPS);
        }
        c.drain(now);
    }
}

/// A subscriber whose traffic to and from the engine goes through `relay`.
fn subscriber_behind(name: &str, engine: &EngineHandle, relay_seed: u64) -> (Client, Relay) {
    let now = Instant::now();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let addr = sock.local_addr().unwrap();
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly);
    let (offer, pending) = api.apply().unwrap();
    let info = engine
        .create_session(
            SessionSetup::Offer(offer.to_sdp_string()),
            Placement::Shard(0),
        )
        .unwrap();
    let engine_addr: SocketAddr = info.candidate_addrs[0];
    let relay = Relay::start(engine_addr, relay_seed).unwrap();
    let answer = relay.route_sdp(info.answer.as_deref().unwrap());
    let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let client = Client::new(
        name,
        rtc,
        Transport::Std(sock),
        addr,
        now,
        info.id,
        vec![mid],
    );
    (client, relay)
}

/// (target, current) layer of the subscriber's one leg.
fn layers(engine: &EngineHandle, sub: SessionId) -> LegState {
    let l = engine.leg_layers(sub).unwrap();
    assert_eq!(l.len(), 1);
    (l[0].target, l[0].current)
}

/// Drives everything until `done` holds or `limit` passes; returns the time it took.
fn run_until(
    clients: &mut [Client],
    sim: &mut Simulcast,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    let mut checked = start;
    loop {
        let now = Instant::now();
        if now.duration_since(checked) >= Duration::from_millis(50) {
            checked = now;
            if done() {
                return Some(now.duration_since(start));
            }
        }
        if now.duration_since(start) > limit {
            return None;
        }
        sim.tick(&mut clients[0], now);
        let mut busy = false;
        for c in clients.iter_mut() {
            busy |= c.step(now);
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

/// Runs until every subscriber's current layer is its expected one and has been for
/// `stable` (targets and currents polled every 50 ms).
fn settle(
    engine: &EngineHandle,
    clients: &mut [Client],
    sim: &mut Simulcast,
    subs: &[(SessionId, u8)],
    stable: Duration,
    limit: Duration,
) -> Result<Duration, Vec<LegState>> {
    let mut since: Option<Instant> = None;
    let start = Instant::now();
    let took = run_until(clients, sim, limit, || {
        let ok = subs
            .iter()
            .all(|(id, want)| layers(engine, *id).1 == Some(*want));
        let now = Instant::now();
        match (ok, since) {
            (true, None) => {
                since = Some(now);
                false
            }
            (true, Some(t)) => now.duration_since(t) >= stable,
            (false, _) => {
                since = None;
                false
            }
        }
    });
    match took {
        Some(_) => Ok(since.map_or(Duration::ZERO, |t| t.duration_since(start))),
        None => Err(subs.iter().map(|(id, _)| layers(engine, *id)).collect()),
    }
}

/// Checks one subscriber's stream for decodability: one SSRC; the sequence numbers
/// received (repairs included) leave no hole, except in the last `tail` packets (repairs
/// may still be on their way); a layer change happens only at the first packet of a
/// keyframe; every frame before the tail arrived whole. Returns the layers in the order
/// they were forwarded.
fn check_decodable(c: &Client, tail: usize) -> Vec<u8> {
    assert!(!c.rtp.is_empty(), "{}: nothing received", c.name);
    let ssrc = c.rtp[0].ssrc;
    assert!(c.rtp.iter().all(|p| p.ssrc == ssrc), "{}: one SSRC", c.name);
    let mut pkts: Vec<(u64, PacketFacts)> = c
        .rtp
        .iter()
        .map(|p| (p.seq, parse_packet(&p.payload).expect("our payload")))
        .collect();
    pkts.sort_by_key(|p| p.0);
    pkts.dedup_by_key(|p| p.0);
    let end = pkts.len().saturating_sub(tail);
    let pkts = &pkts[..end];
    let mut holes = Vec::new();
    for w in pkts.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            holes.push((w[0].0, w[1].0));
        }
    }
    if std::env::var("BWE_DEBUG").is_ok() {
        let mut last = None;
        for (seq, (layer, f, part, _, key)) in pkts.iter().take(400) {
            if last != Some(*layer) || *key {
                eprintln!(
                    "{}: seq {seq} layer {layer} frame {f} part {part} key {key}",
                    c.name
                );
                last = Some(*layer);
            }
        }
    }
    assert!(
        holes.is_empty(),
        "{}: unrepaired sequence holes {holes:?} (of {} packets)",
        c.name,
        pkts.len()
    );
    let first = pkts.first().expect("packets").1;
    assert!(first.4 && first.2 == 0, "{}: starts at a keyframe", c.name);
    let mut order = vec![first.0];
    let mut frame = (first.0, first.1);
    let mut parts_seen = 0u8;
    let mut parts_total = first.3;
    for (seq, (layer, f, part, parts, key)) in pkts.iter().copied() {
        if (layer, f) != frame {
            assert_eq!(
                parts_seen, parts_total,
                "{}: frame {frame:?} incomplete before seq {seq}",
                c.name
            );
            assert_eq!(part, 0, "{}: frame {f} starts mid-frame at {seq}", c.name);
            if Some(&layer) != order.last() {
                // On failure: the packets around it, in sequence order and as they
                // arrived (a repair arrives late), to tell a forwarding fault from a
                // wrong repair.
                let around = |s: u64| {
                    let arrived: Vec<_> = c
                        .rtp
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.seq + 3 >= s && p.seq <= s + 3)
                        .map(|(i, p)| (i, p.seq, parse_packet(&p.payload)))
                        .collect();
                    format!("(arrival index, seq, (layer, frame, part, parts, key))): {arrived:?}")
                };
                assert!(
                    key,
                    "{}: switch to layer {layer} at seq {seq} not at a keyframe; {}",
                    c.name,
                    around(seq)
                );
                order.push(layer);
            }
            frame = (layer, f);
            parts_seen = 0;
            parts_total = parts;
        }
        assert_eq!(parts_seen, part, "{}: part order", c.name);
        parts_seen += 1;
    }
    order
}

#[test]
fn each_subscriber_follows_its_own_link() {
    let mut cfg = engine_config(BackendPreference::Auto, 1);
    // NACKs are answered from the publisher's packet cache.
    cfg.rtx_buffer_packets = 0;
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("bwe").expect("room");
    let publisher = Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &[(MediaKind::Video, Direction::SendOnly)],
        false,
    );
    let mut clients = vec![publisher];
    let mut relays = Vec::new();
    for (i, name) in ["low", "mid", "high"].into_iter().enumerate() {
        let (c, r) = subscriber_behind(name, &engine, 7 + i as u64);
        clients.push(c);
        relays.push(r);
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    for sub in &ids[1..] {
        assert_eq!(engine.subscribe(room, *sub, ids[0]).unwrap().len(), 1);
    }
    let (low, mid, high) = (ids[1], ids[2], ids[3]);
    let link_1m = Link::shaped(1_000_000, QUEUE_MS);
    relays[0].set_downlink(Link::shaped(300_000, QUEUE_MS));
    relays[1].set_downlink(link_1m);
    let mut sim = Simulcast::new();

    // 1. Each settles on the layer its link carries, and stays there for 3 s.
    let subs = [(low, 0u8), (mid, 1), (high, 2)];
    let took = settle(
        &engine,
        &mut clients,
        &mut sim,
        &subs,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|now| panic!("not settled in 60 s: (target, current) {now:?}"));
    eprintln!("settled on 0 / 1 / 2 after {took:?}");

    // 2. The 1 Mbit/s link drops to 300 kbit/s: that subscriber moves down (the issue
    // asks for 3 s; the bound allows for a loaded machine), the others stay.
    relays[1].set_downlink(Link::shaped(300_000, QUEUE_MS));
    let down = run_until(&mut clients, &mut sim, Duration::from_secs(10), || {
        layers(&engine, mid).1 == Some(0)
    })
    .unwrap_or_else(|| panic!("mid not down in 10 s: {:?}", layers(&engine, mid)));
    eprintln!("mid down to layer 0 {down:?} after its link dropped");
    assert_eq!(layers(&engine, low).1, Some(0));
    assert_eq!(layers(&engine, high).1, Some(2));

    // 3. Restored: it probes, then moves back up (after the allocator's 10 s block of
    // spatial upgrades following a bandwidth downgrade, and its hold).
    relays[1].set_downlink(link_1m);
    let up = run_until(&mut clients, &mut sim, Duration::from_secs(60), || {
        layers(&engine, mid).1 == Some(1)
    })
    .unwrap_or_else(|| panic!("mid not back up in 60 s: {:?}", layers(&engine, mid)));
    eprintln!("mid back up to layer 1 {up:?} after its link recovered");
    let took = settle(
        &engine,
        &mut clients,
        &mut sim,
        &subs,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|now| panic!("not settled again: {now:?}"));
    eprintln!("all settled again after {took:?}");
    // Let repairs of the last losses arrive (and put the last switch well before the
    // tail that is not checked for holes).
    run_until(&mut clients, &mut sim, Duration::from_millis(3000), || {
        false
    });

    if std::env::var("BWE_DEBUG").is_ok() {
        let st = engine.stats().unwrap();
        for sh in &st.shards {
            eprintln!(
                "shard {}: resent {} unanswered {} drops {:?}",
                sh.shard, sh.rtx_resent, sh.rtx_unanswered, sh.drops
            );
        }
        for c in &clients {
            eprintln!("{}: {:?}", c.name, c.rtc.stats());
        }
    }
    // 4. Decodable, and each went where its link let it.
    // About 1 s of the lowest layer, 0.3 s of the highest.
    let tail = 30;
    let lo = check_decodable(&clients[1], tail);
    let mi = check_decodable(&clients[2], tail);
    let hi = check_decodable(&clients[3], tail);
    eprintln!("layer sequences: low {lo:?}, mid {mi:?}, high {hi:?}");
    assert_eq!(lo.last(), Some(&0));
    assert_eq!(hi.last(), Some(&2));
    assert!(mi.ends_with(&[0, 1]), "mid: down, then up: {mi:?}");
    for (r, name) in relays.iter().zip(["low", "mid", "high"]) {
        eprintln!(
            "{name} downlink (received, delivered, lost, queue drops): {:?}",
            r.downlink_stats().snapshot()
        );
    }
    engine.shutdown();
}
