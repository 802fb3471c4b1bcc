//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
//! End-to-end tests of the TWCC units and the estimator over a simulated link:
//! `TwccSendRegister` → bottleneck queue → `TwccRecvRegister` → feedback bytes →
//! `TransportFeedback` parse → `TwccSendRegister::apply_feedback` → `Bwe`.

use super::*;
use crate::rtcp::RtcpPacket;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const PACKET: usize = 1200;

struct Link {
    capacity_bps: u64,
    /// One-way propagation delay (µs).
    prop_us: u64,
    /// Packets waiting longer than this in the queue are dropped (µs).
    queue_limit_us: u64,
    /// Every n-th packet is dropped at random-free "loss" (0 = none).
    drop_every: u64,
}

/// Runs the loop for `secs` seconds and returns the estimate sampled every 100 ms.
fn simulate(link: &Link, config: BweConfig, secs: u64) -> Vec<u64> {
    let t0 = Instant::now();
    let at = |us: u64| t0 + Duration::from_micros(us);
    let mut send = TwccSendRegister::default();
    let mut recv = TwccRecvRegister::new(1, 2);
    let mut bwe = Bwe::new(config);
    let mut next_send_us = 0u64;
    let mut link_free_us = 0u64;
    let mut sent = 0u64;
    let mut arrivals: VecDeque<(u64, u16)> = VecDeque::new();
    let mut feedback: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut samples = Vec::new();
    let mut buf = [0u8; 1500];
    for t in (0..secs * 1_000_000).step_by(1000) {
        while next_send_us <= t {
            let seq = send.next_seq(at(next_send_us), PACKET);
            sent += 1;
            let service = PACKET as u64 * 8 * 1_000_000 / link.capacity_bps;
            let start = next_send_us.max(link_free_us);
            let dropped = start - next_send_us > link.queue_limit_us
                || (link.drop_every > 0 && sent.is_multiple_of(link.drop_every));
            if !dropped {
                link_free_us = start + service;
                arrivals.push_back((link_free_us + link.prop_us, seq));
            }
            next_send_us += PACKET as u64 * 8 * 1_000_000 / bwe.estimate().max(1);
        }
        while arrivals.front().is_some_and(|a| a.0 <= t) {
            let (a, seq) = arrivals.pop_front().unwrap(); // front checked above
            recv.on_packet(at(a), seq);
        }
        while let Some(n) = recv.poll_feedback(at(t), &mut buf) {
            feedback.push_back((t + link.prop_us, buf[..n].to_vec()));
        }
        while feedback.front().is_some_and(|f| f.0 <= t) {
            let (_, bytes) = feedback.pop_front().unwrap(); // front checked above
            for pkt in RtcpPacket::iter(&bytes) {
                if let Ok(RtcpPacket::TransportFeedback(fb)) = pkt {
                    bwe.on_feedback(at(t), send.apply_feedback(&fb));
                }
            }
        }
        if t % 100_000 == 0 {
            samples.push(bwe.estimate());
        }
    }
    samples
}

fn mean(v: &[u64]) -> u64 {
    v.iter().sum::<u64>() / v.len() as u64
}

#[test]
fn converges_near_capacity_when_sending_above_it() {
    let link = Link {
        capacity_bps: 1_000_000,
        prop_us: 25_000,
        queue_limit_us: 1_000_000,
        drop_every: 0,
    };
    let config = BweConfig {
        initial_bps: 2_500_000,
        min_bps: 50_000,
        max_bps: 5_000_000,
    };
    let s = simulate(&link, config, 40);
    let tail = &s[200..];
    let m = mean(tail);
    assert!(
        (700_000..=1_150_000).contains(&m),
        "mean {m}, samples {s:?}"
    );
    assert!(tail.iter().all(|&e| e < 1_500_000), "{tail:?}");
}

#[test]
fn rises_to_max_without_congestion() {
    let link = Link {
        capacity_bps: 100_000_000,
        prop_us: 20_000,
        queue_limit_us: 1_000_000,
        drop_every: 0,
    };
    let config = BweConfig {
        initial_bps: 300_000,
        min_bps: 50_000,
        max_bps: 2_000_000,
    };
    let s = simulate(&link, config, 40);
    // 8 %/s from 300 kbps: about 300k * 1.08^10 = 648k after 10 s.
    assert!(s[100] > 500_000, "{}", s[100]);
    assert!(s[100] < 800_000, "{}", s[100]);
    // 300k -> 2M needs ln(6.67) / ln(1.08) = 24.7 s.
    assert_eq!(*s.last().unwrap(), 2_000_000, "{s:?}");
}

#[test]
fn heavy_loss_lowers_the_estimate() {
    let link = Link {
        capacity_bps: 100_000_000,
        prop_us: 20_000,
        queue_limit_us: 1_000_000,
        drop_every: 4, // 25 % loss
    };
    let config = BweConfig {
        initial_bps: 1_000_000,
        min_bps: 50_000,
        max_bps: 2_000_000,
    };
    let s = simulate(&link, config, 10);
    assert!(*s.last().unwrap() < 200_000, "{s:?}");
}

#[test]
fn light_loss_does_not_hold_back_growth() {
    let link = Link {
        capacity_bps: 100_000_000,
        prop_us: 20_000,
        queue_limit_us: 1_000_000,
        drop_every: 100, // 1 % loss
    };
    let config = BweConfig {
        initial_bps: 300_000,
        min_bps: 50_000,
        max_bps: 2_000_000,
    };
    let s = simulate(&link, config, 40);
    assert_eq!(*s.last().unwrap(), 2_000_000, "{s:?}");
}

mod props {
    use super::*;
    use crate::rtcp::NackPair;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Send register → receive register → feedback bytes → parse → matched
        /// results: every sent packet is reported once, lost ones as `None`, and
        /// receive times keep their spacing up to the 250 µs delta flooring.
        #[test]
        fn twcc_round_trip(
            start in 0u64..70_000,
            pkts in proptest::collection::vec((0u64..30_000, any::<bool>()), 1..250),
        ) {
            let t0 = Instant::now();
            let mut send = TwccSendRegister::new(512);
            for _ in 0..start {
                send.next_seq(t0, 1);
            }
            let mut recv = TwccRecvRegister::new(1, 2);
            let mut arrival = 0u64;
            let mut want = Vec::new();
            for (i, (gap_us, lost)) in pkts.iter().enumerate() {
                let seq = send.next_seq(t0, i);
                arrival += gap_us;
                // The first packet always arrives so the feedback starts with it.
                if i == 0 || !lost {
                    recv.on_packet(t0 + Duration::from_micros(arrival), seq);
                    want.push((start + i as u64, i as u32, Some(arrival as i64)));
                } else {
                    want.push((start + i as u64, i as u32, None));
                }
            }
            // Trailing losses are never reported (the receiver cannot know them).
            while want.last().is_some_and(|w| w.2.is_none()) {
                want.pop();
            }
            let mut buf = [0u8; 1500];
            let mut got = Vec::new();
            let now = t0 + Duration::from_micros(arrival) + Duration::from_millis(100);
            while let Some(n) = recv.poll_feedback(now, &mut buf) {
                for pkt in RtcpPacket::iter(&buf[..n]) {
                    let Ok(RtcpPacket::TransportFeedback(fb)) = pkt else {
                        panic!("not a feedback: {pkt:?}");
                    };
                    got.extend(send.apply_feedback(&fb).map(|r| (r.seq, r.size, r.recv_us)));
                }
            }
            prop_assert_eq!(got.len(), want.len());
            let base = got[0].2.unwrap();
            let w0 = want[0].2.unwrap();
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!((g.0, g.1), (w.0, w.1));
                match (g.2, w.2) {
                    (None, None) => {}
                    (Some(g), Some(w)) => {
                        // Both measured from the first arrival (time 0 on the
                        // receiver's base, so its reference-time offset is exact).
                        let d = (w - w0) - (g - base);
                        prop_assert!((0..250).contains(&d), "{} vs {}", g - base, w - w0);
                    }
                    other => prop_assert!(false, "status mismatch {:?}", other),
                }
            }
        }

        /// `write_nack` output parses back to exactly the missing numbers.
        #[test]
        fn nack_write_round_trip(
            first in 0u64..200_000,
            gaps in proptest::collection::vec(1u64..6, 1..60),
        ) {
            let t0 = Instant::now();
            let mut r = NackRegister::default();
            let mut seq = first;
            r.on_packet(t0, seq);
            let mut missing = Vec::new();
            for g in gaps {
                missing.extend((seq + 1..seq + g).map(|s| s as u16));
                seq += g;
                r.on_packet(t0, seq);
            }
            let mut buf = [0u8; 1500];
            // Gaps are NACKed once they are older than the reordering allowance.
            let t1 = t0 + NackConfig::default().max_reorder;
            let n = r.write_nack(t1, 1, 2, &mut buf).unwrap();
            match n {
                None => prop_assert!(missing.is_empty()),
                Some(n) => {
                    let Some(Ok(RtcpPacket::Nack(nack))) = RtcpPacket::iter(&buf[..n]).next() else {
                        panic!("not a NACK");
                    };
                    prop_assert_eq!((nack.sender_ssrc, nack.media_ssrc), (1, 2));
                    let lost: Vec<u16> = nack.lost().collect();
                    prop_assert_eq!(lost, missing);
                    let pairs: Vec<NackPair> = nack.pairs().collect();
                    prop_assert!(pairs.len() <= 64);
                }
            }
        }
    }
}
