//! Fan-out throughput: one publisher → 50 subscribers, with 1 and 2 shards.
//!
//! `cargo run -p engine --release --example fanout [-- --secs 3 --rates 500,1000,2000]`
//!
//! Peers are rtc-core clients on loopback sockets in this process (full ICE + DTLS via
//! SDP). Once connected, subscribers stop reading (their sockets overflow and the kernel
//! drops), so the only work measured beyond the publisher is the engine's: per forwarded
//! packet one header rewrite, one SRTP encryption and its share of a GSO send. The
//! publisher sends bursts of equal-size 1200-byte packets every 5 ms.
//!
//! Reported per rate: packets written to subscriber legs per second (fwd/s) and
//! datagrams the kernel accepted per second (sent/s; the difference is `tx drops`,
//! sends refused with EAGAIN when the socket buffer is full), shard-thread CPU µs per forwarded
//! packet (`CLOCK_THREAD_CPUTIME_ID` of the shard threads), process CPU µs per forwarded
//! packet (`getrusage`, includes the publisher client), and datagrams per GSO send.

use test_support as common;

use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::io::cpu::process_cpu_time;
use engine::{Engine, EngineStats};

const SUBSCRIBERS: usize = 50;
const PAYLOAD: usize = 1200;

fn shard_cpu(st: &EngineStats) -> Duration {
    st.shards.iter().map(|s| s.cpu_time).sum()
}

fn gso(st: &EngineStats) -> (u64, u64, u64) {
    st.shards.iter().fold((0, 0, 0), |a, s| {
        (
            a.0 + s.io.send_messages,
            a.1 + s.io.tx_datagrams,
            a.2 + s.io.drops.send_would_block + s.io.drops.queue_full,
        )
    })
}

fn run(shards: usize, rates: &[u32], secs: u64) {
    let mut cfg = engine_config(BackendPreference::Auto, shards);
    cfg.pin = true;
    cfg.io.send_buffer_bytes = 4 << 20;
    cfg.io.recv_buffer_bytes = 4 << 20;
    let engine = Engine::start(cfg).expect("engine start");
    let mut clients = fanout_room(&engine, "fanout", SUBSCRIBERS, Duration::from_secs(10));
    drive(&mut clients, Duration::from_millis(200), |_| false);
    for c in &mut clients[1..] {
        c.deaf = true;
    }
    let backend = engine.stats().expect("stats").shards[0].backend;
    println!("shards={shards} subscribers={SUBSCRIBERS} backend={backend:?}");
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>14} {:>14} {:>10} {:>9}",
        "pub pps",
        "expected/s",
        "fwd/s",
        "sent/s",
        "shard µs/pkt",
        "proc µs/pkt",
        "dgram/send",
        "tx drops"
    );
    let mut seq: u32 = 0;
    for &rate in rates {
        let per_burst = (rate / 200).max(1);
        let st0 = engine.stats().expect("stats");
        let p0 = process_cpu_time();
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(secs);
        let mut next = t0;
        let mut sent: u64 = 0;
        let payload = vec![0x5au8; PAYLOAD];
        while Instant::now() < end {
            let now = Instant::now();
            if now >= next {
                for k in 0..per_burst {
                    clients[0].write_rtp(
                        VIDEO_PT,
                        seq as u16,
                        3000 * (seq / 10),
                        VIDEO_SSRC,
                        k + 1 == per_burst,
                        &payload,
                    );
                    seq = seq.wrapping_add(1);
                    sent += 1;
                }
                clients[0].drain(now);
                next += Duration::from_millis(5);
            }
            clients[0].step(now);
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(100));
        let wall = t0.elapsed().as_secs_f64();
        let st1 = engine.stats().expect("stats");
        let p1 = process_cpu_time();
        let fwd = st1.rtp_forwarded() - st0.rtp_forwarded();
        let expected = sent * SUBSCRIBERS as u64;
        let shard_us = (shard_cpu(&st1) - shard_cpu(&st0)).as_secs_f64() * 1e6 / fwd.max(1) as f64;
        let proc_us = (p1 - p0).as_secs_f64() * 1e6 / fwd.max(1) as f64;
        let (m0, d0, x0) = gso(&st0);
        let (m1, d1, x1) = gso(&st1);
        println!(
            "{:>10} {:>12.0} {:>12.0} {:>12.0} {:>14.3} {:>14.3} {:>10.1} {:>9}",
            rate,
            expected as f64 / wall,
            fwd as f64 / wall,
            (d1 - d0) as f64 / wall,
            shard_us,
            proc_us,
            (d1 - d0) as f64 / (m1 - m0).max(1) as f64,
            x1 - x0,
        );
    }
    engine.shutdown();
}

fn main() {
    let mut secs = 3;
    let mut rates = vec![500u32, 1000, 2000, 4000];
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--secs" => {
                secs = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(secs);
                i += 1;
            }
            "--rates" => {
                if let Some(r) = args.get(i + 1) {
                    rates = r.split(',').filter_map(|x| x.parse().ok()).collect();
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    for shards in [1, 2] {
        run(shards, &rates, secs);
    }
}
