//! NACKs answered from the publisher layer's shared packet cache: with
//! `rtx_buffer_packets = 0` the subscriber's `Rtc` keeps no retransmission ring, so a
//! packet lost on the way to the subscriber comes back only through the engine's
//! `Event::ResendRequest` → downtrack NACK map → layer cache → `write_rtx` path.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, Placement, SessionId};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::{Input, Protocol, Receive};

/// Every `DROP_EVERY`-th media datagram to the subscriber is lost (before the first
/// retransmissions: answers must get through).
const DROP_EVERY: u32 = 7;

/// Receives the subscriber's datagrams itself, losing some of the engine's RTP
/// packets (RTP, not RTCP: payload types outside 72..=79 after masking) and noting
/// the (SSRC, sequence number) of each in `lost`.
fn lossy_step(c: &mut Client, now: Instant, n_media: &mut u32, lost: &mut Vec<(u32, u16)>) -> bool {
    let Transport::Std(s) = &c.transport else {
        panic!("std socket client");
    };
    let mut inbox: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => inbox.push((from, buf[..n].to_vec())),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => break,
        }
    }
    let busy = !inbox.is_empty();
    for (from, data) in inbox {
        let rtp = matches!(data.first(), Some(128..=191))
            && data
                .get(1)
                .is_some_and(|b| !(72..=79).contains(&(b & 0x7f)));
        if rtp && c.connected {
            *n_media += 1;
            if n_media.is_multiple_of(DROP_EVERY) && *n_media < 400 {
                // RTP (first byte 128..=191): the header, 12 bytes, is not encrypted.
                if let (Some(seq), Some(ssrc)) = (data.get(2..4), data.get(8..12)) {
                    let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                    lost.push((ssrc, u16::from_be_bytes([seq[0], seq[1]])));
                }
                continue;
            }
        }
        let _ = c.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: c.addr,
                contents: &data,
            },
        ));
    }
    if now >= c.next_timeout {
        let _ = c.rtc.handle_input(Input::Timeout(now));
    }
    c.drain(now);
    busy
}

/// What one lossy run saw.
struct Run {
    /// Media datagrams the subscriber dropped.
    lost: u32,
    /// Dropped media packets that arrived later (retransmitted).
    repaired: u64,
    /// Packet indices up to the last dropped one that never arrived.
    missing: Vec<u32>,
    /// Retransmissions written, per shard.
    resent: Vec<u64>,
    /// NACKed packets not answered, per shard.
    unanswered: Vec<u64>,
    drops: Vec<engine::DropCounters>,
}

/// A video publisher on shard `pub_shard` and a subscriber on `sub_shard` (of an engine
/// with `shards` shards, sessions without a retransmission ring) that loses every
/// [`DROP_EVERY`]-th media datagram among its first 400. Streams until every packet up to
/// the last lost one arrived (repaired), or for at most 20 s (then the run failed).
fn lossy_run(shards: usize, pub_shard: usize, sub_shard: usize) -> Run {
    let mut cfg = engine_config(BackendPreference::Portable, shards);
    cfg.rtx_buffer_packets = 0;
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("resend").unwrap();
    let mut clients = vec![
        Client::connect_sdp(
            "pub",
            &engine,
            Placement::Shard(pub_shard),
            &[(MediaKind::Video, Direction::SendOnly)],
            false,
        ),
        Client::connect_sdp(
            "sub",
            &engine,
            Placement::Shard(sub_shard),
            &[(MediaKind::Video, Direction::RecvOnly)],
            false,
        ),
    ];
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    assert_eq!(engine.subscribe(room, ids[1], ids[0]).unwrap().len(), 1);
    let placed = engine.stats().unwrap();
    assert_eq!(
        placed.shards[pub_shard].sessions,
        1 + usize::from(pub_shard == sub_shard)
    );
    assert_eq!(
        placed.shards[sub_shard].sessions,
        1 + usize::from(pub_shard == sub_shard)
    );

    let (mut n_media, mut dropped) = (0u32, Vec::new());
    let mut s = Streamer::new();
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut next_check = Instant::now();
    let missing = |c: &Client| -> Option<Vec<u32>> {
        let got: BTreeSet<u32> = c
            .rtp
            .iter()
            .filter_map(|p| check_payload(&p.payload))
            .map(|(_, i)| i)
            .collect();
        let first = *got.first()?;
        // The newest packet received: everything before it was sent before it.
        let last = *got.last()?;
        Some((first..last).filter(|i| !got.contains(i)).collect())
    };
    loop {
        let now = Instant::now();
        s.tick(&mut clients[0], now);
        let mut busy = clients[0].step(now);
        busy |= lossy_step(&mut clients[1], now, &mut n_media, &mut dropped);
        // Done once the losses are over (400 media datagrams seen) and repaired, with
        // some packets after the last loss received.
        if now >= next_check {
            next_check = now + Duration::from_millis(100);
            if n_media >= 450 && missing(&clients[1]).is_some_and(|m| m.is_empty()) {
                break;
            }
        }
        if now >= give_up {
            break;
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    let stats = engine.stats().unwrap();
    // Lost media packets that arrived after all: each came from the engine's
    // retransmission path (the subscriber's `Rtc` holds no RTX ring). Dropped probe
    // packets (RTX copies of packets already delivered, which nobody asks for) are
    // not among them.
    let repaired = dropped
        .iter()
        .filter(|&&(ssrc, seq)| {
            clients[1]
                .rtp
                .iter()
                .any(|p| p.ssrc == ssrc && p.seq as u16 == seq)
        })
        .count() as u64;
    Run {
        lost: dropped.len() as u32,
        repaired,
        missing: missing(&clients[1]).expect("media received"),
        resent: stats.shards.iter().map(|s| s.rtx_resent).collect(),
        unanswered: stats.shards.iter().map(|s| s.rtx_unanswered).collect(),
        drops: stats.shards.iter().map(|s| s.drops).collect(),
    }
}

/// Asserts what both placements must show: every packet arrived (the lost ones
/// repaired), and the retransmissions were written on the subscriber's shard.
fn assert_repaired(r: &Run, sub_shard: usize) {
    assert!(r.lost >= 10, "lost {}", r.lost);
    assert!(
        r.missing.is_empty(),
        "missing {:?} (lost {}, resent {:?}, unanswered {:?}, drops {:?})",
        r.missing,
        r.lost,
        r.resent,
        r.unanswered,
        r.drops
    );
    assert!(
        r.repaired >= 10,
        "repaired {} of {} lost",
        r.repaired,
        r.lost
    );
    assert!(
        r.resent[sub_shard] >= r.repaired,
        "resent {:?} < repaired {}",
        r.resent,
        r.repaired
    );
}

#[test]
fn subscriber_nacks_are_answered_from_the_publisher_layer_cache() {
    assert_repaired(&lossy_run(1, 0, 0), 0);
}

/// The publisher's layer cache lives on its shard; a subscriber on another shard NACKs
/// through its own shard, which asks the publisher's shard for the cached packet and
/// writes the retransmission for its leg.
#[test]
fn nack_from_a_subscriber_on_another_shard_is_answered() {
    assert_repaired(&lossy_run(2, 0, 1), 1);
}
