//! The send-side bandwidth estimator (GCC) of an `Rtc`, exercised end to end on a
//! simulated bottleneck link: two `Rtc` in RTP mode, the sender writing video
//! packets at the rate of its latest `EgressBitrateEstimate` (as an encoder would);
//! the `Rtc` paces them and probes the link itself. Virtual time, seeded
//! randomness: every run is identical.

#[path = "common/link.rs"]
mod link;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use link::{Link, LinkedPair};
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::ExtensionValues;
use rtc_core::sdp::{Codec, Direction};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rtc};

/// RTP payload of a video packet: about 1200 B on the wire with headers and SRTP.
const MEDIA_PAYLOAD: usize = 1150;
/// The estimate an `Rtc` starts from (`BweConfig::default`).
const INITIAL_BPS: u64 = 300_000;
/// One-way propagation delay each way.
const PROP: Duration = Duration::from_millis(20);
/// The bottleneck's drop-tail queue, in queueing delay.
const QUEUE: Duration = Duration::from_millis(300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Two `Rtc` in RTP mode with one video section, connected through `ab`;
/// `rtx` off keeps the sender from retransmitting.
fn connected(ab: Link, rtx: bool) -> (LinkedPair, Mid, u8) {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).set_pacing(true);
    if !rtx {
        // Nothing is kept long enough to be retransmitted.
        a = a.set_rtx_buffer(1, Duration::ZERO);
    }
    let mut a = a.build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().unwrap();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap())
        .unwrap();
    a.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap(),
        )
        .unwrap();
    let pt = a.media_info(video).unwrap().pt_for(&Codec::Vp8).unwrap();
    let map = b.media_info(video).unwrap().extensions.clone();
    let mut pair = LinkedPair::new(a, a_addr, b, b_addr, now, ab, Link::unconstrained(PROP));
    pair.ext_map = Some(map);
    assert!(pair.connect(Duration::from_secs(10)), "not connected");
    (pair, video, pt)
}

/// The sending application: an encoder producing packets evenly at the latest
/// estimate. The `Rtc` paces them and runs the bandwidth probes itself (3× and 6×
/// the start rate when connected, then 2× while a probe is confirmed).
struct Sender {
    video: Mid,
    pt: u8,
    target: u64,
    next_media: Instant,
    seq: u64,
    payload: Vec<u8>,
    /// Media at this fixed rate instead of the estimate (an SFU forwarding a layer).
    fixed: Option<u64>,
    /// Every n-th packet is written a second time, unchanged (an SFU forwarding a
    /// publisher's redundant retransmission): how many were.
    repeat_every: Option<u64>,
    repeated: u64,
}

impl Sender {
    fn new(video: Mid, pt: u8, now: Instant) -> Self {
        Sender {
            video,
            pt,
            target: INITIAL_BPS,
            next_media: now,
            seq: 0,
            payload: vec![0x11; MEDIA_PAYLOAD],
            fixed: None,
            repeat_every: None,
            repeated: 0,
        }
    }

    /// One wake-up at `p.now`: produce what is due and write it. Returns the next
    /// wake-up time (the `Rtc`'s own timeout covers pacing and probing).
    fn step(&mut self, p: &mut LinkedPair) -> Option<Instant> {
        p.touch_a();
        let now = p.now;
        if let Some(e) = self.fixed.or(p.estimate()) {
            self.target = e;
        }
        let gap = Duration::from_nanos(MEDIA_PAYLOAD as u64 * 8 * 1_000_000_000 / self.target);
        while self.next_media <= now {
            self.seq += 1;
            let ts = (self.seq * 300) as u32;
            let (video, pt, seq, payload) = (self.video, self.pt, self.seq, &self.payload);
            let write = |a: &mut Rtc| {
                a.stream_tx(video).expect("send stream").write_rtp(
                    pt,
                    seq,
                    ts,
                    now,
                    false,
                    &ExtensionValues::default(),
                    payload,
                )
            };
            write(&mut p.a).expect("write_rtp");
            if self.repeat_every.is_some_and(|n| seq.is_multiple_of(n)) {
                // Refused once it reaches SRTP (that sequence number was sent).
                let _ = write(&mut p.a);
                self.repeated += 1;
            }
            self.next_media += gap;
        }
        Some(self.next_media)
    }
}

/// Runs the sender until `until` (time since the start of the pair).
fn run(pair: &mut LinkedPair, s: &mut Sender, until: Duration) {
    let end = pair.start + until;
    pair.run_until(end, &mut |p| s.step(p));
}

/// The estimate in force at each 100 ms of `from..to` (times since the start).
fn samples(pair: &LinkedPair, from: Duration, to: Duration) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let at = pair.start + t;
        let e = pair
            .estimates
            .iter()
            .take_while(|e| e.0 <= at)
            .last()
            .map_or(INITIAL_BPS, |e| e.1);
        out.push(e);
        t += ms(100);
    }
    out
}

/// The first time in `from..to` (since the start) the estimate is in `band`.
fn first_in(
    pair: &LinkedPair,
    from: Duration,
    to: Duration,
    band: &std::ops::RangeInclusive<u64>,
) -> Option<Duration> {
    samples(pair, from, to)
        .iter()
        .position(|e| band.contains(e))
        .map(|i| from + ms(100) * i as u32)
}

/// Mean estimate of each whole second of `from..to`.
fn second_means(pair: &LinkedPair, from: Duration, to: Duration) -> Vec<u64> {
    samples(pair, from, to)
        .chunks_exact(10)
        .map(|c| c.iter().sum::<u64>() / 10)
        .collect()
}

fn trace(pair: &LinkedPair, from: Duration, to: Duration) -> String {
    samples(pair, from, to)
        .iter()
        .map(|e| format!("{}", e / 1000))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Converged to `capacity` within 15 % over `from..to`: the mean estimate within
/// 15 % of it, no sample above 115 %, and none below 80 % (the AIMD sawtooth backs
/// off to 0.85 × the acknowledged rate after each overuse, by design).
fn assert_converged(pair: &LinkedPair, from: Duration, to: Duration, capacity: u64, what: &str) {
    let s = samples(pair, from, to);
    let mean = s.iter().sum::<u64>() / s.len() as u64;
    let (min, max) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
    let means: Vec<u64> = second_means(pair, from, to)
        .iter()
        .map(|m| m / 1000)
        .collect();
    eprintln!("{what}: mean {mean}, min {min}, max {max}; one-second means (kbit/s) {means:?}");
    assert!(
        (capacity * 85 / 100..=capacity * 115 / 100).contains(&mean)
            && max <= capacity * 115 / 100
            && min >= capacity * 80 / 100,
        "{what}: mean {mean}, min {min}, max {max}; trace {}",
        trace(pair, from, to)
    );
}

#[test]
fn converges_to_a_2_mbit_link_within_10_s() {
    let (mut pair, video, pt) = connected(Link::new(2_000_000, QUEUE, PROP, 0.0, 1), true);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    let end = t0 + Duration::from_secs(20);
    run(&mut pair, &mut s, end);
    let at = first_in(&pair, t0, end, &(1_700_000..=2_300_000));
    eprintln!(
        "reached 2 Mbit/s ± 15 % after {:?}; link: offered {} queue drops {}; trace (kbit/s per 100 ms): {}",
        at.map(|a| a - t0),
        pair.ab.offered,
        pair.ab.queue_drops,
        trace(&pair, t0, end)
    );
    let at = at.expect("never reached 2 Mbit/s ± 15 %");
    assert!(
        at - t0 < Duration::from_secs(10),
        "reached after {:?}",
        at - t0
    );
    // Whole seconds from there on: converged, and no sustained loss.
    let from = t0 + Duration::from_secs((at - t0).as_secs() + 1);
    assert_converged(&pair, from, end, 2_000_000, "2 Mbit/s");
    assert_eq!(pair.ab.queue_drops, 0, "the bottleneck queue overflowed");
    let got: usize = pair.received.iter().map(|r| r.1).sum();
    assert!(got > 0);
}

#[test]
fn follows_a_drop_to_500_kbit_and_recovers() {
    // Retransmissions on: they are paced and carry their own transport-wide
    // sequence numbers, so the estimator sees them.
    let (mut pair, video, pt) = connected(Link::new(2_000_000, QUEUE, PROP, 0.0, 2), true);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    let drop_at = t0 + Duration::from_secs(10);
    let back_at = drop_at + Duration::from_secs(10);
    let end = back_at + Duration::from_secs(25);
    run(&mut pair, &mut s, drop_at);
    pair.ab.set_capacity(500_000);
    run(&mut pair, &mut s, back_at);
    pair.ab.set_capacity(2_000_000);
    let drops_before_back = pair.ab.queue_drops;
    run(&mut pair, &mut s, end);
    let followed = first_in(&pair, drop_at, back_at, &(0..=575_000));
    let recovered = first_in(&pair, back_at, end, &(1_700_000..=2_300_000));
    eprintln!(
        "followed the drop after {:?}, recovered after {:?}; queue drops {} (before recovery {}); trace: {}",
        followed.map(|f| f - drop_at),
        recovered.map(|r| r - back_at),
        pair.ab.queue_drops,
        drops_before_back,
        trace(&pair, t0, end)
    );
    let followed = followed.expect("never followed the drop");
    assert!(
        followed - drop_at <= Duration::from_secs(3),
        "followed after {:?}",
        followed - drop_at
    );
    // Settled at 500 kbit/s, not collapsed: from 4 s after the drop.
    assert_converged(
        &pair,
        drop_at + Duration::from_secs(4),
        back_at,
        500_000,
        "500 kbit/s",
    );
    let recovered = recovered.expect("never recovered to 2 Mbit/s ± 15 %");
    let from = back_at + Duration::from_secs((recovered - back_at).as_secs() + 1);
    assert_converged(&pair, from, end, 2_000_000, "2 Mbit/s again");
}

#[test]
fn two_percent_random_loss_does_not_collapse_the_estimate() {
    let (mut pair, video, pt) = connected(Link::new(5_000_000, QUEUE, PROP, 0.02, 3), true);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    let end = t0 + Duration::from_secs(20);
    run(&mut pair, &mut s, end);
    let loss = pair.ab.random_losses as f64 / pair.ab.offered as f64;
    let at = first_in(&pair, t0, end, &(4_250_000..=5_750_000));
    eprintln!(
        "loss {:.2} %, reached 5 Mbit/s ± 15 % after {:?}; trace: {}",
        loss * 100.0,
        at.map(|a| a - t0),
        trace(&pair, t0, end)
    );
    assert!((0.015..0.025).contains(&loss), "loss {loss}");
    let at = at.expect("never reached 5 Mbit/s ± 15 %");
    assert!(
        at - t0 < Duration::from_secs(10),
        "reached after {:?}",
        at - t0
    );
    // Not collapsed: from there on never below 70 % of the link, 85 % on average.
    let s = samples(&pair, at, end);
    let mean = s.iter().sum::<u64>() / s.len() as u64;
    let min = *s.iter().min().expect("samples");
    eprintln!("after reaching it: mean {mean}, min {min}");
    assert!(min >= 3_500_000, "fell to {min}");
    assert!(mean >= 4_250_000, "mean {mean}");
}

#[test]
fn retransmissions_are_paced_with_their_own_transport_sequence_numbers() {
    let (mut pair, video, pt) = connected(Link::new(2_000_000, QUEUE, PROP, 0.05, 4), true);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    run(&mut pair, &mut s, t0 + Duration::from_secs(5));
    let rtx = pair.a.pacer_stats().sent[1];
    let padding = pair.a.pacer_stats().sent[3];
    assert!(rtx > 10, "retransmissions went through the pacer: {rtx}");
    assert!(padding > 0, "probes were padded: {padding}");
    // Every packet b got has its own transport-wide number...
    let mut numbers: Vec<u16> = pair.received_twcc.iter().map(|r| r.1).collect();
    let n = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), n, "a transport-wide number was used twice");
    // ...and a retransmission's is newer than those of packets sent after the
    // original (it was numbered when it was sent, not copied from the original).
    let mut by_seq = pair.received_twcc.clone();
    by_seq.sort_unstable_by_key(|r| r.0);
    let inversions = by_seq.windows(2).filter(|w| w[0].1 > w[1].1).count();
    assert!(inversions > 0, "no retransmission carried a fresh number");
}

#[test]
fn a_packet_written_twice_leaves_once_and_costs_no_transport_sequence_number() {
    // Every 3rd packet written twice with the same sequence number, at a fixed
    // 500 kbit/s on an unconstrained link. The copy cannot be protected again (SRTP
    // never reuses an index); if it kept the transport-wide number it was given,
    // the receiver's feedback would report a third of all numbers lost and the
    // loss-based estimate would collapse on a lossless path.
    let (mut pair, video, pt) = connected(Link::unconstrained(PROP), false);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    s.fixed = Some(500_000);
    s.repeat_every = Some(3);
    run(&mut pair, &mut s, t0 + Duration::from_secs(6));
    assert!(s.repeated > 50, "{} repeated", s.repeated);
    // b's feedback reports every transport-wide number received: none was spent
    // on a packet that never left.
    let (reported, missing) = pair.a.bwe().expect("transport-cc negotiated").reported();
    assert!(reported > 300, "{reported} reported");
    assert_eq!(missing, 0, "of {reported} reported by the feedback");
    assert_eq!(
        pair.a.stats().send_refused,
        s.repeated,
        "every repeat refused by SRTP and counted"
    );
    let est = pair.estimate().expect("estimate");
    assert!(
        est >= INITIAL_BPS,
        "the estimate fell to {est} on a lossless link: {}",
        trace(&pair, t0, t0 + Duration::from_secs(6))
    );
}

#[test]
fn converges_to_a_2_mbit_link_when_the_sender_runs_only_every_10_ms() {
    // A loaded machine: the sender's thread gets the CPU every 10 ms and then sends
    // at one instant what the pacer let fall due meanwhile, probes included. The
    // probes must still be measured.
    // Nothing held for retransmission: probes are padding-only packets (at most 255
    // bytes of padding each), several of which fit in one release.
    let (mut pair, video, pt) = connected(Link::new(2_000_000, QUEUE, PROP, 0.0, 5), false);
    pair.a_tick = Some(ms(10));
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    let end = t0 + Duration::from_secs(20);
    run(&mut pair, &mut s, end);
    let at = first_in(&pair, t0, end, &(1_700_000..=2_300_000));
    eprintln!(
        "reached 2 Mbit/s ± 15 % after {:?}; trace (kbit/s per 100 ms): {}",
        at.map(|a| a - t0),
        trace(&pair, t0, end)
    );
    let at = at.expect("never reached 2 Mbit/s ± 15 %");
    assert!(
        at - t0 < Duration::from_secs(10),
        "reached after {:?}",
        at - t0
    );
    let from = t0 + Duration::from_secs((at - t0).as_secs() + 1);
    assert_converged(&pair, from, end, 2_000_000, "2 Mbit/s, late sender");
}

#[test]
fn a_probe_requested_a_little_above_the_estimate_is_measured() {
    // An SFU's sender: media at a fixed 400 kbit/s (the layer it forwards), far
    // below the 3 Mbit/s link, so the estimate stays near what media shows. The
    // application asks for a probe 20 % above the estimate (the next layer's need),
    // which is below the rate that makes a burst of media look like a probe: the
    // probe itself must be measured and lift the estimate to its goal.
    // The link carries 500 kbit/s at first (the start-up probes find that), then
    // 3 Mbit/s: nothing but a probe shows it.
    let (mut pair, video, pt) = connected(Link::new(500_000, QUEUE, PROP, 0.0, 6), true);
    let t0 = pair.elapsed();
    let mut s = Sender::new(video, pt, pair.now);
    s.fixed = Some(400_000);
    let mut app = |p: &mut LinkedPair| s.step(p);
    pair.run_until(pair.start + t0 + Duration::from_secs(10), &mut app);
    pair.ab.set_capacity(3_000_000);
    pair.run_until(pair.start + t0 + Duration::from_secs(15), &mut app);
    let before = pair.estimate().expect("an estimate");
    let goal = before * 6 / 5;
    pair.a.request_probe(goal);
    let asked = pair.elapsed();
    pair.run_until(pair.start + asked + Duration::from_secs(1), &mut app);
    let after = pair.estimate().expect("an estimate");
    eprintln!(
        "estimate {before} before the probe to {goal}, {after} 1 s later; trace: {}",
        trace(&pair, t0, pair.elapsed())
    );
    assert!(
        after >= before + (goal - before) * 3 / 4,
        "the probe to {goal} left the estimate at {after} (was {before})"
    );
}
