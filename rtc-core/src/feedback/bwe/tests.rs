use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn loss_based_by_hand() {
    let mut l = LossBasedBwe::new(1_000_000, 10_000, 10_000_000);
    // 5 of 20 lost (25%): 1_000_000 * (1 - 0.125) = 875_000.
    assert_eq!(l.update(5, 20, 1_000_000), 875_000);
    assert_eq!(l.last_loss(), Some(0.25));
    // Fewer than 20 packets: not evaluated yet.
    assert_eq!(l.update(0, 10, 875_000), 875_000);
    // 0 of 20 lost: * 1.05 = 918_750.
    assert_eq!(l.update(0, 10, 875_000), 918_750);
    // 5% loss: hold.
    assert_eq!(l.update(1, 20, 918_750), 918_750);
    // 15% loss with a lower combined estimate: 500_000 * (1 - 0.075) = 462_500.
    assert_eq!(l.update(3, 20, 500_000), 462_500);
    // Bounded below.
    for _ in 0..100 {
        l.update(20, 20, 1);
    }
    assert_eq!(l.estimate(), 10_000);
}

#[test]
fn aimd_by_hand() {
    let t0 = Instant::now();
    let mut b = DelayBasedBwe::new(1_000_000, 10_000, 10_000_000);
    assert_eq!(b.update(t0, None), 1_000_000);
    // Normal for 1 s: * 1.08.
    assert_eq!(b.update(t0 + ms(1000), Some(1_000_000)), 1_080_000);
    // The increase is capped at 1.5 * acked + 10 kbps = 1_360_000 ...
    let mut c = b.clone();
    assert_eq!(c.update(t0 + ms(2000), Some(900_000)), 1_166_400);
    assert_eq!(c.update(t0 + ms(3000), Some(600_000)), 1_166_400);
    // ... which stops increases but never lowers the estimate.
    assert_eq!(c.update(t0 + ms(3100), Some(200_000)), 1_166_400);
    // Overuse: 0.85 * acked 900_000 = 765_000.
    b.usage = BwUsage::Overusing;
    assert_eq!(b.update(t0 + ms(1100), Some(900_000)), 765_000);
    // Underuse holds.
    b.usage = BwUsage::Underusing;
    assert_eq!(b.update(t0 + ms(1300), Some(900_000)), 765_000);
    // Normal again: 0.5 s of increase, 765_000 * 1.08^0.5 = 795_011.3.
    b.usage = BwUsage::Normal;
    assert_eq!(b.update(t0 + ms(1800), Some(900_000)), 795_011);
    // Bounded above.
    let mut b = DelayBasedBwe::new(9_990_000, 10_000, 10_000_000);
    b.update(t0, None);
    assert_eq!(b.update(t0 + ms(1000), None), 10_000_000);
}

/// Feeds groups sent every 10 ms whose one-way delay changes by `step_us` per
/// group; returns the usage after `n` groups.
fn run_groups(b: &mut DelayBasedBwe, t0: Instant, start: u64, n: u64, step_us: i64) -> BwUsage {
    for i in start..start + n {
        let send = t0 + ms(10 * i);
        let delay = 50_000 + step_us * (i - start) as i64;
        b.on_packet(send, (10_000 * i) as i64 + delay);
    }
    b.usage()
}

#[test]
fn detector_signals() {
    let t0 = Instant::now();
    let mut b = DelayBasedBwe::new(1_000_000, 10_000, 10_000_000);
    // Constant delay: normal; the threshold adapts down towards its floor of 6.
    assert_eq!(run_groups(&mut b, t0, 0, 50, 0), BwUsage::Normal);
    assert!(b.threshold() < INITIAL_THRESHOLD);
    assert!(b.threshold() >= 6.0);
    // Delay growing 1 ms per 10 ms group (queue filling at 10% over capacity).
    assert_eq!(run_groups(&mut b, t0, 50, 50, 1_000), BwUsage::Overusing);
    // Delay shrinking 1 ms per group (queue draining).
    assert_eq!(run_groups(&mut b, t0, 100, 50, -1_000), BwUsage::Underusing);
    // Stable again.
    assert_eq!(run_groups(&mut b, t0, 150, 100, 0), BwUsage::Normal);
}

/// A result for packet `seq` of 1200 B sent at `send_us` and received at
/// `recv_us` (None: lost).
fn res(t0: Instant, seq: u64, send_us: u64, recv_us: Option<i64>) -> TwccResult {
    TwccResult {
        seq,
        send_time: t0 + Duration::from_micros(send_us),
        size: 1200,
        recv_us,
        probe_cluster: 0,
    }
}

#[test]
fn burst_meter_measures_what_the_path_delivered() {
    let t0 = Instant::now();
    let mut m = BurstMeter::default();
    // 10 packets sent 1 ms apart (9.6 Mbit/s) through a 2 Mbit/s bottleneck
    // (4.8 ms apart on arrival), estimate 1 Mbit/s.
    for i in 0..10u64 {
        let r = res(t0, i, i * 1000, Some(100_000 + 4800 * i as i64));
        assert_eq!(m.on_result(&r, 1_000_000, u64::MAX), None);
    }
    // A packet 20 ms later (0.48 Mbit/s) ends the burst: min(send, recv) is the
    // receive rate, 9 × 1200 B over 43.2 ms = 2 Mbit/s.
    let r = res(t0, 10, 29_000, Some(200_000));
    assert_eq!(m.on_result(&r, 1_000_000, u64::MAX), Some(2_000_000));
    // Below the bottleneck the send rate is the result: 9 × 1200 B over 9 × 2 ms.
    let mut m = BurstMeter::default();
    for i in 0..10u64 {
        let r = res(t0, i, i * 2000, Some(100_000 + 2000 * i as i64));
        m.on_result(&r, 1_000_000, u64::MAX);
    }
    assert_eq!(
        m.on_result(&res(t0, 10, 60_000, Some(0)), 1_000_000, u64::MAX),
        Some(4_800_000)
    );
    // Too few packets, or a gap in the reported numbers: no result.
    let mut m = BurstMeter::default();
    for i in 0..4u64 {
        m.on_result(
            &res(t0, i, i * 1000, Some(4800 * i as i64)),
            1_000_000,
            u64::MAX,
        );
    }
    assert_eq!(
        m.on_result(&res(t0, 4, 40_000, Some(0)), 1_000_000, u64::MAX),
        None
    );
    // One packet reported at a late arrival (its retransmission) does not
    // stretch the receive span; a lost one still counts as sent.
    let mut m = BurstMeter::default();
    for i in 0..10u64 {
        let recv = match i {
            3 => Some(100_000 + 50_000),
            5 => None,
            _ => Some(100_000 + 4800 * i as i64),
        };
        m.on_result(&res(t0, i, i * 1000, recv), 1_000_000, u64::MAX);
    }
    // Received in order: 0, 1, 2, 4, 6..9: 7 × 1200 B after the first over
    // 43.2 ms = 1.555 Mbit/s.
    assert_eq!(
        m.on_result(&res(t0, 10, 29_000, Some(0)), 1_000_000, u64::MAX),
        Some(1_555_555)
    );
}

fn res_in(t0: Instant, seq: u64, send_us: u64, recv_us: Option<i64>, cluster: u16) -> TwccResult {
    TwccResult {
        probe_cluster: cluster,
        ..res(t0, seq, send_us, recv_us)
    }
}

#[test]
fn a_probe_cluster_only_a_little_above_the_estimate_is_measured() {
    // Estimate 1 Mbit/s; a probe to 1.2 Mbit/s: 8 packets of 1200 B 8 ms apart, too
    // slow to pass for a burst, but tagged as one probe cluster.
    let t0 = Instant::now();
    let mut m = BurstMeter::default();
    for i in 0..8u64 {
        let r = res_in(t0, i, i * 8000, Some(50_000 + 8000 * i as i64), 7);
        assert_eq!(m.on_result(&r, 1_000_000, 1_200_000), None);
    }
    // The first untagged packet ends it: 7 × 1200 B over 56 ms = 1.2 Mbit/s.
    let end = res(t0, 8, 70_000, Some(130_000));
    assert_eq!(m.on_result(&end, 1_000_000, u64::MAX), Some(1_200_000));
    // Untagged, the same packets are no burst at all.
    let mut m = BurstMeter::default();
    for i in 0..8u64 {
        let r = res(t0, i, i * 8000, Some(50_000 + 8000 * i as i64));
        m.on_result(&r, 1_000_000, u64::MAX);
    }
    assert_eq!(m.on_result(&end, 1_000_000, u64::MAX), None);
}

#[test]
fn a_probe_cluster_released_at_one_instant_is_measured_by_its_arrivals_up_to_its_goal() {
    // A late sender released the whole probe at one instant (send span 0).
    let t0 = Instant::now();
    let once = |gap_us: i64, goal: u64| {
        let mut m = BurstMeter::default();
        for i in 0..10u64 {
            let r = res_in(t0, i, 5000, Some(20_000 + gap_us * i as i64), 3);
            assert_eq!(m.on_result(&r, 500_000, goal), None);
        }
        m.on_result(&res(t0, 10, 90_000, Some(200_000)), 500_000, u64::MAX)
    };
    // A 0.96 Mbit/s bottleneck spread it 10 ms apart: that is the result.
    assert_eq!(once(10_000, 2_000_000), Some(960_000));
    // Arrivals 1 ms apart (9.6 Mbit/s, a receiver reading in bursts as likely as a
    // fast path): no more than the goal, all the probe asked.
    assert_eq!(once(1000, 2_000_000), Some(2_000_000));
    // Arrivals at one instant tell nothing.
    assert_eq!(once(0, 2_000_000), None);
}

#[test]
fn a_probe_cluster_survives_a_lost_packet_but_not_too_few_arrivals() {
    let t0 = Instant::now();
    let run = |lost: &[u64]| {
        let mut m = BurstMeter::default();
        for i in 0..6u64 {
            let recv = (!lost.contains(&i)).then_some(10_000 + 4000 * i as i64);
            m.on_result(&res_in(t0, i, i * 4000, recv, 9), 1_000_000, 2_400_000);
        }
        m.on_result(&res(t0, 6, 60_000, Some(100_000)), 1_000_000, u64::MAX)
    };
    // 6 × 1200 B 4 ms apart: 2.4 Mbit/s.
    assert_eq!(run(&[]), Some(2_400_000));
    // One lost: still measured (from the 5 that arrived, the lost one counted as
    // sent).
    assert!(run(&[2]).is_some());
    // Three lost: 3 arrivals are too few.
    assert_eq!(run(&[1, 2, 3]), None);
}

/// Feeds `n` packets sent every `gap_us` from `start_us`, arriving `owd_us`
/// later (or lost when `lost(i)`), as one feedback at the last arrival.
fn feed(
    b: &mut Bwe,
    t0: Instant,
    seq: &mut u64,
    start_us: u64,
    n: u64,
    gap_us: u64,
    lost: impl Fn(u64) -> bool,
) -> u64 {
    let owd = 20_000u64;
    let rs: Vec<TwccResult> = (0..n)
        .map(|i| {
            let send = start_us + i * gap_us;
            let recv = (!lost(i)).then_some((send + owd) as i64);
            *seq += 1;
            res(t0, *seq, send, recv)
        })
        .collect();
    let now = t0 + Duration::from_micros(start_us + n * gap_us + 2 * owd);
    b.on_feedback(now, rs)
}

#[test]
fn a_probe_lifts_the_estimate_and_even_pacing_does_not() {
    let t0 = Instant::now();
    let config = BweConfig {
        initial_bps: 300_000,
        min_bps: 30_000,
        max_bps: 10_000_000,
    };
    let mut b = Bwe::new(config);
    let mut seq = 0;
    // Evenly at 300 kbit/s (1200 B every 32 ms) for 1 s: slow increase only.
    let e = feed(&mut b, t0, &mut seq, 0, 31, 32_000, |_| false);
    assert!(e < 330_000, "{e}");
    assert_eq!(b.probe_results(), 0);
    // A burst at 1.92 Mbit/s (every 5 ms) delivered in full, then a packet at
    // the old pace ends it.
    let e = feed(&mut b, t0, &mut seq, 1_000_000, 10, 5_000, |_| false);
    assert_eq!(e, b.estimate());
    let e = feed(&mut b, t0, &mut seq, 1_100_000, 2, 32_000, |_| false);
    assert_eq!(b.probe_results(), 1);
    // 9 × 1200 B over 45 ms = 1.92 Mbit/s.
    assert_eq!(e, 1_920_000);
    assert_eq!(b.loss_based().estimate(), 1_920_000);
}

#[test]
fn late_arrivals_are_kept_from_the_delay_estimator() {
    let t0 = Instant::now();
    let mut b = Bwe::new(BweConfig::default());
    let mut rs: Vec<TwccResult> = (0..10u64)
        .map(|i| res(t0, i, i * 10_000, Some(20_000 + 10_000 * i as i64)))
        .collect();
    // Packet 4 is reported at the arrival of its retransmission, 60 ms late.
    rs[4].recv_us = Some(20_000 + 40_000 + 60_000);
    b.on_feedback(t0 + Duration::from_millis(200), rs);
    assert_eq!(b.reordered(), 1);
    assert_eq!(b.usage(), BwUsage::Normal);
}

#[test]
fn losses_of_packets_sent_before_a_decrease_count_once() {
    let t0 = Instant::now();
    let config = BweConfig {
        initial_bps: 1_000_000,
        min_bps: 30_000,
        max_bps: 10_000_000,
    };
    let mut b = Bwe::new(config);
    let mut seq = 0;
    let every_other = |i: u64| i % 2 == 1;
    // 20 packets at ~1 Mbit/s, half lost: 1_000_000 × (1 − 0.25).
    let e1 = feed(&mut b, t0, &mut seq, 0, 20, 9_600, every_other);
    assert_eq!(e1, 750_000);
    // The feedback came at 232 ms; 20 more, sent before it, also half lost: the
    // decrease already answered them.
    let e2 = feed(&mut b, t0, &mut seq, 12_000, 20, 10_000, every_other);
    assert_eq!(e2, e1);
    assert_eq!(b.loss_based().estimate(), 750_000);
    // 20 sent after it, half lost: a new decrease of the loss-based part.
    feed(&mut b, t0, &mut seq, 500_000, 20, 12_800, every_other);
    assert_eq!(b.loss_based().estimate(), 562_500);
}

#[test]
fn a_probe_result_bounds_the_cap_and_the_back_off_and_decreases_are_spaced() {
    let t0 = Instant::now();
    let mut b = DelayBasedBwe::new(1_000_000, 10_000, 10_000_000);
    b.update(t0, None);
    assert!(b.on_probe_result(2_000_000));
    assert_eq!(b.estimate(), 2_000_000);
    // The acknowledged rate lags (500 kbit/s): the cap stays at the probe.
    assert_eq!(b.update(t0 + ms(100), Some(500_000)), 2_000_000);
    // Overuse: back off from the probe result, not from the lagging acked rate.
    b.usage = BwUsage::Overusing;
    assert!(!b.on_probe_result(1_900_000));
    assert_eq!(b.update(t0 + ms(200), Some(1_000_000)), 1_700_000);
    // Still overusing 100 ms later: the last decrease has not shown yet.
    assert_eq!(b.update(t0 + ms(300), Some(1_000_000)), 1_700_000);
    // 200 ms after it: the decrease forgot the probe, so it backs off from acked.
    assert_eq!(b.update(t0 + ms(400), Some(1_000_000)), 850_000);
    // Acked far below the estimate (under half): no need to wait.
    assert_eq!(b.update(t0 + ms(450), Some(300_000)), 255_000);
}

#[test]
fn slope_by_hand() {
    // y = 2x + 1 exactly.
    let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)];
    assert_eq!(slope(&pts), Some(2.0));
    assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
}

#[test]
fn a_sender_that_sends_less_keeps_its_estimate() {
    // An SFU leg measured at 2 Mbit/s is moved to a layer of ~150 kbit/s: the
    // acknowledged rate falls, but nothing says the path carries less, so the
    // estimate stays (libwebrtc's AIMD only stops increasing above 1.5 × acked).
    let t0 = Instant::now();
    let config = BweConfig {
        initial_bps: 2_000_000,
        ..BweConfig::default()
    };
    let mut b = Bwe::new(config);
    let mut seq = 0;
    // 2 s at 2 Mbit/s (1200 B every 4.8 ms), fed back every 96 ms.
    let mut start = 0;
    let mut high = 0;
    for _ in 0..21 {
        high = feed(&mut b, t0, &mut seq, start, 20, 4_800, |_| false);
        start += 96_000;
    }
    assert!(high >= 2_000_000, "{high}");
    assert_eq!(b.probe_results(), 0);
    // Then 5 s at 150 kbit/s (1200 B every 64 ms), fed back every 320 ms.
    for _ in 0..16 {
        let e = feed(&mut b, t0, &mut seq, start, 5, 64_000, |_| false);
        assert_eq!(e, high, "kept while sending less");
        start += 320_000;
    }
    assert!(b.acked_bitrate().is_some_and(|a| a < 300_000));
}
