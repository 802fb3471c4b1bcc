//! Simulcast forwarding on loopback: a publisher sends three VP8 layers (three SSRCs in
//! one media section without rids, so layers go by order of appearance);
//! subscribers with different preferences and estimates settle on their layers, move
//! down and up, and each sees one continuous stream.

mod common;

use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, EngineEvent, EngineHandle, Placement, Preference, SessionId};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

const LAYER_SSRC: [u32; 3] = [0x5000_0000, 0x5000_0001, 0x5000_0002];
/// Payload bytes per packet (one packet per frame) of each layer.
const LAYER_SIZE: [usize; 3] = [200, 600, 1200];

/// A VP8 payload: descriptor with a 15-bit PictureID, the frame header byte (bit 0 clear
/// on a keyframe), then the layer and the frame index.
fn vp8_payload(layer: u8, frame: u32, key: bool) -> Vec<u8> {
    let pid = (frame & 0x7fff) as u16;
    let mut p = vec![
        0x90,
        0x80,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        if key { 0x00 } else { 0x01 },
        layer,
    ];
    p.extend_from_slice(&frame.to_be_bytes());
    p.resize(LAYER_SIZE[usize::from(layer)], 0x5a);
    p
}

struct Simulcast {
    frame: u32,
    next: Instant,
    kf_seen: usize,
    key_due: [bool; 3],
}

impl Simulcast {
    fn new() -> Simulcast {
        Simulcast {
            frame: 0,
            next: Instant::now(),
            kf_seen: 0,
            key_due: [true; 3],
        }
    }

    /// Sends the frames due at `now` on all three layers; a layer whose SSRC got a
    /// keyframe request sends a keyframe next.
    fn tick(&mut self, c: &mut Client, now: Instant) {
        for (_, ssrc) in &c.keyframe_requests[self.kf_seen..] {
            if let Some(l) = LAYER_SSRC.iter().position(|s| s == ssrc) {
                self.key_due[l] = true;
            }
        }
        self.kf_seen = c.keyframe_requests.len();
        while now >= self.next {
            for l in 0..3u8 {
                let key = std::mem::take(&mut self.key_due[usize::from(l)]);
                c.write_rtp(
                    VIDEO_PT,
                    (self.frame as u16).wrapping_add(1000 * u16::from(l)),
                    (3000 * self.frame).wrapping_add(1_000_000 * u32::from(l)),
                    LAYER_SSRC[usize::from(l)],
                    true,
                    &vp8_payload(l, self.frame, key),
                );
            }
            self.frame += 1;
            self.next += Duration::from_millis(33);
        }
        c.drain(now);
    }
}

fn run(clients: &mut [Client], sim: &mut Simulcast, dur: Duration) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let now = Instant::now();
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

fn current(engine: &EngineHandle, sub: SessionId) -> (Option<u8>, Option<u8>) {
    let l = engine.leg_layers(sub).unwrap();
    assert_eq!(l.len(), 1);
    (l[0].target, l[0].current)
}

/// Checks one subscriber's stream: one SSRC, sequence numbers +1, timestamps and
/// PictureIDs rising, the first packet and every packet after a layer change a
/// keyframe. Returns the layers in the order they were forwarded.
fn check_stream(c: &Client) -> Vec<u8> {
    let mut layers: Vec<u8> = Vec::new();
    let mut prev: Option<&GotRtp> = None;
    assert!(!c.rtp.is_empty(), "{}: nothing received", c.name);
    for p in &c.rtp {
        let layer = p.payload[5];
        let key = p.payload[4] & 0x01 == 0;
        let pid = (u16::from(p.payload[2] & 0x7f) << 8) | u16::from(p.payload[3]);
        assert_eq!(p.payload.len(), LAYER_SIZE[usize::from(layer)]);
        if layers.last() != Some(&layer) {
            assert!(key, "{}: switch to layer {layer} not at a keyframe", c.name);
            layers.push(layer);
        }
        if let Some(q) = prev {
            assert_eq!(p.ssrc, q.ssrc, "{}: one SSRC", c.name);
            assert_eq!(p.seq, q.seq + 1, "{}: sequence continuous", c.name);
            let dts = p.timestamp.wrapping_sub(q.timestamp);
            assert!(
                dts > 0 && dts < 90_000,
                "{}: timestamp rises ({} → {})",
                c.name,
                q.timestamp,
                p.timestamp
            );
            let qpid = (u16::from(q.payload[2] & 0x7f) << 8) | u16::from(q.payload[3]);
            assert_eq!(pid, (qpid + 1) & 0x7fff, "{}: PictureID continuous", c.name);
        } else {
            assert!(key, "{}: first packet is a keyframe", c.name);
        }
        prev = Some(p);
    }
    layers
}

#[test]
fn subscribers_settle_on_their_layers_and_switch_continuously() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let room = engine.create_room("simulcast").expect("room");
    let pub_media = [(MediaKind::Video, Direction::SendOnly)];
    let sub_media = [(MediaKind::Video, Direction::RecvOnly)];
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &pub_media,
        false,
    )];
    for (name, shard) in [("a", 0usize), ("b", 1), ("c", 1)] {
        clients.push(Client::connect_sdp(
            name,
            &engine,
            Placement::Shard(shard),
            &sub_media,
            false,
        ));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    let (publisher, a, b, c) = (ids[0], ids[1], ids[2], ids[3]);
    engine.publish(room, publisher).unwrap();
    let mut mids = Vec::new();
    for sub in [a, b, c] {
        let legs = engine.subscribe(room, sub, publisher).unwrap();
        assert_eq!(legs.len(), 1);
        mids.push(legs[0].subscriber_mid);
    }
    // a: plenty of bandwidth; b: at most layer 1; c: only enough for layer 0.
    assert!(engine.set_estimate_override(a, Some(20_000_000)).unwrap());
    assert!(engine.set_estimate_override(b, Some(20_000_000)).unwrap());
    let capped = Preference {
        max_spatial: 1,
        ..Preference::default()
    };
    assert!(engine.set_preference(b, mids[1], capped).unwrap());
    assert!(engine.set_estimate_override(c, Some(120_000)).unwrap());

    let mut sim = Simulcast::new();
    run(&mut clients, &mut sim, Duration::from_millis(3000));
    assert_eq!(
        current(&engine, a),
        (Some(2), Some(2)),
        "a on the top layer"
    );
    assert_eq!(
        current(&engine, b),
        (Some(1), Some(1)),
        "b capped at layer 1"
    );
    assert_eq!(
        current(&engine, c),
        (Some(0), Some(0)),
        "c on the base layer"
    );
    // The publisher's stats show what each layer brings in (what the allocator prices
    // the layers by): all three live, larger packets at higher layers.
    let snap = engine.session_stats(publisher).unwrap();
    let track = snap
        .tracks
        .iter()
        .find(|t| t.inbound)
        .expect("published track");
    let rates = track.layer_bps;
    assert!(
        rates.iter().all(|r| r.is_some_and(|bps| bps > 0))
            && rates[0] < rates[1]
            && rates[1] < rates[2],
        "per-layer bitrates of the published track: {rates:?}"
    );

    // Move: a is capped to the base layer (down at once), b's cap is lifted (up at
    // once), c's estimate rises (up after the allocator's hold time).
    let base = Preference {
        max_spatial: 0,
        ..Preference::default()
    };
    assert!(engine.set_preference(a, mids[0], base).unwrap());
    assert!(
        engine
            .set_preference(b, mids[1], Preference::default())
            .unwrap()
    );
    assert!(engine.set_estimate_override(c, Some(20_000_000)).unwrap());
    run(&mut clients, &mut sim, Duration::from_millis(4500));
    assert_eq!(current(&engine, a), (Some(0), Some(0)), "a moved down");
    assert_eq!(current(&engine, b), (Some(2), Some(2)), "b moved up");
    // c was held down by bandwidth: the allocator blocks spatial upgrades for its
    // spatial_block (10 s) after such a downgrade.
    let deadline = Instant::now() + Duration::from_secs(12);
    while current(&engine, c).1 != Some(2) && Instant::now() < deadline {
        run(&mut clients, &mut sim, Duration::from_millis(500));
    }
    assert_eq!(current(&engine, c).1, Some(2), "c climbed to the top");
    run(&mut clients, &mut sim, Duration::from_millis(300));
    drive(&mut clients, Duration::from_millis(200), |_| false);

    // The shards report what their subscribers select: a takes layer 0, b and c layer 2,
    // so nobody selects layer 1.
    let mut per_shard = std::collections::HashMap::new();
    while let Ok(ev) = engine.events().try_recv() {
        if let EngineEvent::LayersSelected {
            shard,
            publisher: p,
            live,
            selected,
            ..
        } = ev
        {
            assert_eq!(p, publisher);
            per_shard.insert(shard, (live, selected));
        }
    }
    let (live, selected) = per_shard
        .values()
        .fold((0u8, 0u8), |(l, s), (l2, s2)| (l | l2, s | s2));
    assert_eq!((live, selected), (0b111, 0b101), "{per_shard:?}");

    // Before the upper layers appear, subscribers start on the ones already there.
    let la = check_stream(&clients[1]);
    assert!(la.ends_with(&[2, 0]), "a: down from 2 to 0: {la:?}");
    let lb = check_stream(&clients[2]);
    assert!(lb.ends_with(&[1, 2]), "b: up from 1 to 2: {lb:?}");
    let lc = check_stream(&clients[3]);
    // Until the layers' rates are measured the allocator prices them by defaults, so c
    // may start elsewhere; it then holds the base layer and finally climbs.
    assert!(
        lc.ends_with(&[0, 2]),
        "c: from the base layer up to 2: {lc:?}"
    );
    engine.shutdown();
}
