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

#[test]
fn subscriber_nacks_are_answered_from_the_publisher_layer_cache() {
    let mut cfg = engine_config(BackendPreference::Portable, 1);
    cfg.rtx_buffer_packets = 0;
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("resend").unwrap();
    let mut clients = vec![
        Client::connect_sdp(
            "pub",
            &engine,
            Placement::Shard(0),
            &[(MediaKind::Video, Direction::SendOnly)],
            false,
        ),
        Client::connect_sdp(
            "sub",
            &engine,
            Placement::Shard(0),
            &[(MediaKind::Video, Direction::RecvOnly)],
            false,
        ),
    ];
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    assert_eq!(engine.subscribe(room, ids[1], ids[0]).unwrap().len(), 1);

    let (mut n_media, mut dropped) = (0u32, Vec::new());
    let mut s = Streamer::new();
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        let now = Instant::now();
        s.tick(&mut clients[0], now);
        let mut busy = clients[0].step(now);
        busy |= lossy_step(&mut clients[1], now, &mut n_media, &mut dropped);
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    let lost = dropped.len();
    assert!(lost >= 10, "lost {lost} of {n_media}");
    let got: BTreeSet<u32> = clients[1]
        .rtp
        .iter()
        .filter_map(|p| check_payload(&p.payload))
        .map(|(_, i)| i)
        .collect();
    let stats = engine.stats().unwrap();
    let resent: u64 = stats.shards.iter().map(|s| s.rtx_resent).sum();
    // Everything up to the last second was received, the lost packets included.
    let first = *got.first().expect("media received");
    let upto = s.video_sent.saturating_sub(60);
    let missing: Vec<u32> = (first..upto).filter(|i| !got.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?} (lost {lost}, resent {resent}, stats {:?})",
        stats.shards[0].drops
    );
    // Each lost media packet that arrived after all came from the engine's
    // retransmission path (the subscriber's `Rtc` holds no RTX ring). Not `lost`
    // itself: that also counts dropped probe packets (RTX copies of packets already
    // delivered, which nobody asks for) and losses of the last moments, too late to
    // be NACKed before the end.
    let repaired = dropped
        .iter()
        .filter(|&&(ssrc, seq)| {
            clients[1]
                .rtp
                .iter()
                .any(|p| p.ssrc == ssrc && p.seq as u16 == seq)
        })
        .count();
    assert!(repaired >= 10, "repaired {repaired} of {lost} lost");
    assert!(
        resent >= repaired as u64,
        "resent {resent} < repaired {repaired}"
    );
}
