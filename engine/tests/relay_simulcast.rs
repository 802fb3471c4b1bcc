//! A simulcast publisher relayed between two engines in this process (A on 127.0.0.2,
//! B on 127.0.0.3): every layer crosses the relay, so on B the relayed track is a
//! simulcast publisher track whose layers B's own allocator hands out per subscriber,
//! and a layer switch on B asks the publisher on A for a keyframe of that layer.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::relay::{Link, Relay};
use common::*;
use engine::io::BackendPreference;
use engine::{Engine, EngineEvent, EngineHandle, Placement, Preference, RelayParams, SessionId};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::sdp::Direction;

const LAYER_SSRC: [u32; 3] = [0x5000_0000, 0x5000_0001, 0x5000_0002];
/// Payload bytes per packet (one packet per frame) of each layer.
const LAYER_SIZE: [usize; 3] = [200, 600, 1200];

fn engine_at(ip: [u8; 4], shards: usize) -> EngineHandle {
    let mut cfg = engine_config(BackendPreference::Portable, shards);
    cfg.bind_v4 = Some(IpAddr::from(ip));
    // Keyframe requests are coalesced to one per interval per layer: a short interval
    // keeps a switch's request from waiting behind an earlier one.
    cfg.keyframe_interval = Duration::from_millis(50);
    Engine::start(cfg).unwrap()
}

/// A VP8 payload: descriptor with a 15-bit PictureID, the frame header byte (bit 0 clear
/// on a keyframe), then the layer and the frame index, padded to the layer's size.
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

/// The publisher's three layers (three SSRCs, no rids: layers by order of appearance).
struct Simulcast {
    frame: u32,
    next: Instant,
    /// Keyframe requests (PLI/FIR) read so far from the publisher's client.
    kf_seen: usize,
    key_due: [bool; 3],
    /// Keyframe requests the publisher received, per layer.
    asked: [usize; 3],
}

impl Simulcast {
    fn new() -> Simulcast {
        Simulcast {
            frame: 0,
            next: Instant::now(),
            kf_seen: 0,
            key_due: [true; 3],
            asked: [0; 3],
        }
    }

    /// Sends the frames due at `now` on all three layers; a layer whose SSRC got a
    /// keyframe request sends a keyframe next.
    fn tick(&mut self, c: &mut Client, now: Instant) {
        for (_, ssrc) in &c.keyframe_requests[self.kf_seen..] {
            if let Some(l) = LAYER_SSRC.iter().position(|s| s == ssrc) {
                self.key_due[l] = true;
                self.asked[l] += 1;
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

/// Streams the layers from `clients[0]` for `dur` (or until `stop` holds), stepping
/// every client. Returns whether `stop` held.
fn run(
    clients: &mut [Client],
    sim: &mut Simulcast,
    dur: Duration,
    mut stop: impl FnMut(&[Client], &Simulcast) -> bool,
) -> bool {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let now = Instant::now();
        sim.tick(&mut clients[0], now);
        let mut busy = false;
        for c in clients.iter_mut() {
            busy |= c.step(now);
        }
        if stop(clients, sim) {
            return true;
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    false
}

/// Target and current layer of the one leg of `sub`.
fn current(engine: &EngineHandle, sub: SessionId) -> (Option<u8>, Option<u8>) {
    let l = engine.leg_layers(sub).unwrap();
    assert_eq!(l.len(), 1);
    (l[0].target, l[0].current)
}

/// The frame index a payload carries.
fn frame_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[6], payload[7], payload[8], payload[9]])
}

/// Every payload `c` received is the publisher's bytes for its layer and frame (the
/// PictureID apart, which a downtrack renumbers across switches; with `exact_pid` that
/// too).
fn check_payloads(c: &Client, exact_pid: bool) {
    assert!(!c.rtp.is_empty(), "{}: nothing received", c.name);
    for p in &c.rtp {
        assert!(p.payload.len() >= 10, "{}: short payload", c.name);
        let layer = p.payload[5];
        assert!(layer < 3, "{}: not a layer: {layer}", c.name);
        let key = p.payload[4] & 0x01 == 0;
        let frame = frame_of(&p.payload);
        let sent = vp8_payload(layer, frame, key);
        let pid_bytes = if exact_pid { 0..0 } else { 2..4 };
        let same = p.payload.len() == sent.len()
            && p.payload
                .iter()
                .zip(&sent)
                .enumerate()
                .all(|(i, (a, b))| a == b || pid_bytes.contains(&i));
        assert!(
            same,
            "{}: payload of layer {layer} frame {frame} altered",
            c.name
        );
    }
}

/// Checks one subscriber's stream: its payloads ([`check_payloads`]), one SSRC,
/// sequence numbers +1, timestamps rising, PictureIDs +1, the first packet and every
/// packet after a layer change a keyframe. Returns the layers in the order they were
/// forwarded.
fn check_stream(c: &Client, exact_pid: bool) -> Vec<u8> {
    check_payloads(c, exact_pid);
    let mut layers: Vec<u8> = Vec::new();
    let mut prev: Option<&GotRtp> = None;
    for p in &c.rtp {
        let layer = p.payload[5];
        let key = p.payload[4] & 0x01 == 0;
        let pid = (u16::from(p.payload[2] & 0x7f) << 8) | u16::from(p.payload[3]);
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

/// Where things go: engines of `shards` shards; on A the publisher and the relay, on
/// B the relay and the subscribers.
#[derive(Clone, Copy)]
struct Layout {
    shards: usize,
    publisher: Placement,
    relay_a: Placement,
    relay_b: Placement,
    subscribers: Placement,
}

/// One shard per engine.
const ONE_SHARD: Layout = Layout {
    shards: 1,
    publisher: Placement::Auto,
    relay_a: Placement::Auto,
    relay_b: Placement::Auto,
    subscribers: Placement::Auto,
};

/// Engines A and B with a connected relay whose path runs through `relay` (an
/// impairing UDP relay; clean unless a test sets its links). Returns (A, B, the relay
/// session on A, on B, the path).
fn connect_pair(layout: Layout) -> (EngineHandle, EngineHandle, SessionId, SessionId, Relay) {
    let a = engine_at([127, 0, 0, 2], layout.shards);
    let b = engine_at([127, 0, 0, 3], layout.shards);
    let on = |placement| RelayParams {
        placement,
        ..RelayParams::default()
    };
    let mut invite = b.relay_listen(on(layout.relay_b)).unwrap();
    let path = Relay::start(invite.addr, 23).unwrap();
    invite.addr = path.front();
    let answer = a.relay_connect(&invite, on(layout.relay_a)).unwrap();
    b.relay_accept(invite.relay, &answer).unwrap();
    let (ra, rb) = (answer.relay, invite.relay);
    let mut up = (false, false);
    let mut none: Vec<Client> = Vec::new();
    let ok = drive(&mut none, Duration::from_secs(20), |_| {
        while let Ok(ev) = a.events().try_recv() {
            up.0 |= ev == EngineEvent::SessionConnected(ra);
        }
        while let Ok(ev) = b.events().try_recv() {
            up.1 |= ev == EngineEvent::SessionConnected(rb);
        }
        up == (true, true)
    });
    assert!(ok, "relay not connected: {up:?}");
    (a, b, ra, rb, path)
}

/// A publisher of three layers on A, relayed to B; subscribers `names` on B, each
/// with plenty of estimate. Returns the clients (publisher first), the subscribers'
/// media sections, the engines and relay sessions, and the path.
struct Call {
    a: EngineHandle,
    b: EngineHandle,
    ra: SessionId,
    rb: SessionId,
    /// The relayed track's section on the relay session (both engines).
    relayed: Mid,
    path: Relay,
    clients: Vec<Client>,
    ids: Vec<SessionId>,
    sub_mids: Vec<Mid>,
}

fn relayed_simulcast(names: &[&str], layout: Layout) -> Call {
    let (a, b, ra, rb, path) = connect_pair(layout);
    let room_a = a.create_room("a").unwrap();
    let room_b = b.create_room("b").unwrap();
    let pub_media = [(MediaKind::Video, Direction::SendOnly)];
    let sub_media = [(MediaKind::Video, Direction::RecvOnly)];
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &a,
        layout.publisher,
        &pub_media,
        false,
    )];
    for name in names {
        clients.push(Client::connect_sdp(
            name,
            &b,
            layout.subscribers,
            &sub_media,
            false,
        ));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&a, &mut clients[..1], &ids[..1]);
    wait_engine_connected(&b, &mut clients[1..], &ids[1..]);
    a.publish(room_a, ids[0]).unwrap();
    let pub_mid = clients[0].mids[0];
    let track = a.relay_publish(ra, ids[0], pub_mid).unwrap();
    let relayed = b.relay_attach(rb, &track).unwrap();
    b.publish(room_b, rb).unwrap();
    let mut sub_mids = Vec::new();
    for sub in &ids[1..] {
        let legs = b.subscribe(room_b, *sub, rb).unwrap();
        assert_eq!(legs.len(), 1);
        sub_mids.push(legs[0].subscriber_mid);
        // Bandwidth is no constraint: preferences are.
        assert!(b.set_estimate_override(*sub, Some(20_000_000)).unwrap());
    }
    Call {
        a,
        b,
        ra,
        rb,
        relayed,
        path,
        clients,
        ids,
        sub_mids,
    }
}

#[test]
fn relayed_simulcast_layers_are_chosen_per_subscriber_on_the_receiving_engine() {
    layers_chosen_per_subscriber(ONE_SHARD);
}

/// Nothing where the relay is: on A the publisher on shard 0 and the relay on shard 1
/// (the pinned legs take the layers from a cross-shard batch, keyframe requests go back
/// over the shard queue); on B the relay on shard 0 and the subscribers on shard 1.
#[test]
fn relayed_simulcast_layers_are_chosen_per_subscriber_across_shards() {
    layers_chosen_per_subscriber(Layout {
        shards: 2,
        publisher: Placement::Shard(0),
        relay_a: Placement::Shard(1),
        relay_b: Placement::Shard(0),
        subscribers: Placement::Shard(1),
    });
}

/// A 3-layer publisher on A relayed to B; on B "low" (max layer 0), "high"
/// (unconstrained) and "thin" (an estimate for the base layer only) get their layers
/// byte for byte, and "high"'s switch down to layer 1 asks the publisher on A for a
/// keyframe of layer 1.
fn layers_chosen_per_subscriber(layout: Layout) {
    let mut call = relayed_simulcast(&["low", "high", "thin"], layout);
    let (low, high, thin) = (call.ids[1], call.ids[2], call.ids[3]);
    // "low" wants the base layer only; "high" takes what its estimate allows; "thin"'s
    // estimate affords the base layer (≈ 50 kbit/s) but not layer 1 (≈ 150 kbit/s).
    let base = Preference {
        max_spatial: 0,
        ..Preference::default()
    };
    assert!(call.b.set_preference(low, call.sub_mids[0], base).unwrap());
    assert!(call.b.set_estimate_override(thin, Some(120_000)).unwrap());

    let mut sim = Simulcast::new();
    let settled = run(
        &mut call.clients,
        &mut sim,
        Duration::from_secs(20),
        |_, _| {
            current(&call.b, low) == (Some(0), Some(0))
                && current(&call.b, high) == (Some(2), Some(2))
                && current(&call.b, thin) == (Some(0), Some(0))
        },
    );
    assert!(
        settled,
        "B's subscribers on their layers: low {:?}, high {:?}, thin {:?}",
        current(&call.b, low),
        current(&call.b, high),
        current(&call.b, thin)
    );
    // Some more media on the settled layers.
    run(
        &mut call.clients,
        &mut sim,
        Duration::from_millis(700),
        |_, _| false,
    );
    drive(&mut call.clients, Duration::from_millis(200), |_| false);

    // On B the relayed track has the publisher's three layers.
    let (mut live, mut selected) = (0u8, 0u8);
    while let Ok(ev) = call.b.events().try_recv() {
        if let EngineEvent::LayersSelected {
            publisher,
            live: l,
            selected: s,
            ..
        } = ev
            && publisher == call.rb
        {
            (live, selected) = (l, s);
        }
    }
    assert_eq!(
        (live, selected),
        (0b111, 0b101),
        "B: layers live and selected"
    );

    // "low" got the base layer only, byte for byte (PictureIDs too: it never switched);
    // "high" ends on the top layer, every payload the publisher's.
    let ll = check_stream(&call.clients[1], true);
    assert_eq!(ll, [0], "low: only the base layer");
    let lh = check_stream(&call.clients[2], false);
    assert_eq!(lh.last(), Some(&2), "high: on the top layer: {lh:?}");
    let top = call.clients[2]
        .rtp
        .iter()
        .filter(|p| p.payload[5] == 2)
        .count();
    assert!(top > 10, "high: {top} packets of the top layer");
    // Until the layers' rates are measured the allocator prices them by defaults, so
    // "thin" may start elsewhere; it ends on the base layer.
    let lt = check_stream(&call.clients[3], false);
    assert_eq!(lt.last(), Some(&0), "thin: on the base layer: {lt:?}");

    // A switch on B: "high" is capped to layer 1. B's downtrack wants a keyframe of
    // layer 1; the request crosses the relay and reaches the publisher's layer 1.
    let asked_before = sim.asked;
    let capped = Preference {
        max_spatial: 1,
        ..Preference::default()
    };
    assert!(
        call.b
            .set_preference(high, call.sub_mids[1], capped)
            .unwrap()
    );
    let switched = run(
        &mut call.clients,
        &mut sim,
        Duration::from_secs(20),
        |_, sim| sim.asked[1] > asked_before[1] && current(&call.b, high) == (Some(1), Some(1)),
    );
    assert!(
        switched,
        "high: {:?}; keyframe requests per layer at the publisher {:?} (before {:?})",
        current(&call.b, high),
        sim.asked,
        asked_before
    );
    run(
        &mut call.clients,
        &mut sim,
        Duration::from_millis(300),
        |_, _| false,
    );
    let lh = check_stream(&call.clients[2], false);
    assert!(lh.ends_with(&[2, 1]), "high: down from 2 to 1: {lh:?}");
    assert_eq!(
        check_stream(&call.clients[1], true),
        [0],
        "low: still the base layer"
    );
    call.a.shutdown();
    call.b.shutdown();
}

#[test]
fn relayed_simulcast_layers_repair_losses_per_layer_and_end_together() {
    let mut call = relayed_simulcast(&["low", "high"], ONE_SHARD);
    let (low, high) = (call.ids[1], call.ids[2]);
    let base = Preference {
        max_spatial: 0,
        ..Preference::default()
    };
    assert!(call.b.set_preference(low, call.sub_mids[0], base).unwrap());
    let mut sim = Simulcast::new();
    let settled = run(
        &mut call.clients,
        &mut sim,
        Duration::from_secs(20),
        |_, _| {
            current(&call.b, low) == (Some(0), Some(0))
                && current(&call.b, high) == (Some(2), Some(2))
        },
    );
    assert!(settled, "B's subscribers did not settle on layers 0 and 2");
    // 8 % loss from A to B for 5 s: each layer's relay stream loses packets (of ≈ 150
    // per layer), B NACKs them on that stream, and A answers each from its leg of that
    // layer, out of that layer's cache.
    call.path.set_uplink(Link::lossy(0.08));
    let from = (
        call.clients[1].rtp.len(),
        call.clients[2].rtp.len(),
        sim.frame,
    );
    run(
        &mut call.clients,
        &mut sim,
        Duration::from_secs(5),
        |_, _| false,
    );
    let upto = sim.frame;
    call.path.set_uplink(Link::clean());
    // Per layer section on A (`r1`, `r1.1`, `r1.2`): NACKs received and retransmissions
    // sent (the periodic stream reports carry them).
    let sections: Vec<Mid> = ["", ".1", ".2"]
        .iter()
        .filter_map(|tail| Mid::new(&format!("{}{tail}", call.relayed)))
        .collect();
    let per_layer = |a: &EngineHandle, ra: SessionId| -> Vec<(u64, u64)> {
        let st = a.relay_stats(ra).unwrap();
        sections
            .iter()
            .map(|m| {
                st.tracks
                    .iter()
                    .find(|t| t.mid == *m && !t.inbound)
                    .map_or((0, 0), |t| (t.nacks, t.lost))
            })
            .collect()
    };
    let (a, ra) = (call.a.clone(), call.ra);
    let repaired = run(
        &mut call.clients,
        &mut sim,
        Duration::from_secs(10),
        |_, _| per_layer(&a, ra).iter().all(|&(n, r)| n > 0 && r > 0),
    );
    let (_, _, dropped, _) = call.path.uplink_stats().snapshot();
    assert!(
        repaired,
        "(NACKs received, retransmissions) per layer on A: {:?}; path dropped {dropped}",
        per_layer(&a, ra)
    );
    drive(&mut call.clients, Duration::from_millis(300), |_| false);
    // End to end, the subscribers have their layers' frames of the lossy stretch but
    // for the few whose retransmission was lost too: B's relay spaces its (at most 5)
    // NACKs of a packet by the measured RTT, ≈ 1 ms here, so they all fall inside A's
    // de-duplication interval (≥ 10 ms) of the first resend, and a lost resend is not
    // repeated (≈ 8 % × 8 % of packets). Without repair ≈ 12 of 150 frames per layer
    // would miss, 24 of both layers.
    let mut missing_total = 0;
    for (c, layer, start) in [(1usize, 0u8, from.0), (2, 2, from.1)] {
        let frames: std::collections::BTreeSet<u32> = call.clients[c].rtp[start..]
            .iter()
            .filter(|p| p.payload[5] == layer)
            .map(|p| frame_of(&p.payload))
            .collect();
        let missing: Vec<u32> = (from.2..upto).filter(|f| !frames.contains(f)).collect();
        eprintln!(
            "{}: {} of {} frames of layer {layer} missing after repair: {missing:?}",
            call.clients[c].name,
            missing.len(),
            upto - from.2,
        );
        missing_total += missing.len();
        // Repairs arrive out of order: payloads only.
        check_payloads(&call.clients[c], layer == 0);
    }
    assert!(
        missing_total <= 10,
        "{missing_total} frames missing after repair (path dropped {dropped}; (NACKs, \
         retransmissions) per layer on A {:?})",
        per_layer(&a, ra)
    );

    // Unpublished on A: one BYE covers every layer's stream; B's subscribers see the
    // track end.
    let pub_id = call.ids[0];
    call.a.relay_unpublish(call.ra, call.relayed).unwrap();
    let ended = drive(&mut call.clients, Duration::from_secs(10), |cs| {
        cs[1..].iter().all(|c| !c.ended.is_empty())
    });
    assert!(ended, "B's subscribers saw no end of the relayed track");
    assert!(
        call.a
            .relay_publish(call.ra, pub_id, call.clients[0].mids[0])
            .is_ok(),
        "the track can be relayed again once unpublished"
    );
    call.a.shutdown();
    call.b.shutdown();
}
