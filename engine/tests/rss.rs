//! Memory per subscriber session with and without per-leg retransmission rings
//! (`rtx_buffer_packets` 512 vs 0, the latter answering NACKs from the shared layer
//! caches). A measurement, not a check: run with
//! `RSS_RTX=512 cargo test -p engine --test rss -- --ignored --nocapture` (and
//! `RSS_RTX=0`), one configuration per process so freed memory does not blur the
//! numbers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, Placement, SessionId};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

const SUBSCRIBERS: usize = 20;
/// Video packets sent: more than a 512-packet ring holds.
const PACKETS: u32 = 900;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

#[test]
#[ignore = "measurement; see the module docs"]
fn rss_per_subscriber_session() {
    let rtx: usize = std::env::var("RSS_RTX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mut cfg = engine_config(BackendPreference::Portable, 1);
    cfg.rtx_buffer_packets = rtx;
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("rss").unwrap();
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &[(MediaKind::Video, Direction::SendOnly)],
        false,
    )];
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    // Warm the publisher's layer cache and the process before the baseline.
    let mut i = 0u32;
    let send = |c: &mut Client, n: u32, i: &mut u32| {
        for _ in 0..n {
            c.write_rtp(
                VIDEO_PT,
                *i as u16,
                3000 * (*i / 3),
                VIDEO_SSRC,
                *i % 3 == 2,
                &payload(MediaKind::Video, *i),
            );
            *i += 1;
        }
    };
    let pace = |clients: &mut Vec<Client>, i: &mut u32, n: u32| {
        let end = *i + n;
        while *i < end {
            let now = Instant::now();
            send(&mut clients[0], 3, i);
            clients[0].drain(now);
            for c in clients.iter_mut() {
                c.step(now);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        drive(clients, Duration::from_millis(300), |_| false);
    };
    pace(&mut clients, &mut i, PACKETS);
    let base = rss_kib();
    for k in 0..SUBSCRIBERS {
        clients.push(Client::connect_sdp(
            &format!("sub{k}"),
            &engine,
            Placement::Shard(0),
            &[(MediaKind::Video, Direction::RecvOnly)],
            false,
        ));
    }
    let ids: Vec<SessionId> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids[1..]);
    for id in &ids[1..] {
        engine.subscribe(room, *id, ids[0]).unwrap();
    }
    let connected = rss_kib();
    pace(&mut clients, &mut i, PACKETS);
    let filled = rss_kib();
    let got: usize = clients[1..].iter().map(|c| c.rtp.len()).sum();
    println!(
        "rtx_buffer_packets={rtx}: {SUBSCRIBERS} subscribers, {got} packets received; \
         RSS per subscriber session: {} KiB after connecting, {} KiB after {PACKETS} \
         forwarded packets (process incl. the test's client Rtcs)",
        (connected.saturating_sub(base)) / SUBSCRIBERS as u64,
        (filled.saturating_sub(base)) / SUBSCRIBERS as u64,
    );
}
