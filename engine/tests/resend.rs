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
/// packets (RTP, not RTCP: payload types outside 72..=79 after masking).
fn lossy_step(c: &mut Client, now: Instant, n_media: &mut u32, lost: &mut u32) -> bool {
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
                *lost += 1;
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

    let (mut n_media, mut lost) = (0u32, 0u32);
    let mut s = Streamer::new();
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        let now = Instant::now();
        s.tick(&mut clients[0], now);
        let mut busy = clients[0].step(now);
        busy |= lossy_step(&mut clients[1], now, &mut n_media, &mut lost);
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
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
    assert!(resent >= u64::from(lost), "resent {resent} < lost {lost}");
}
