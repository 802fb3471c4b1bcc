//! Send-side bandwidth estimation from transport-wide feedback, after the
//! Google Congestion Control design (draft-ietf-rmcat-gcc-02): a delay-based
//! estimator (one-way delay gradient trend, overuse detector with adaptive threshold,
//! AIMD rate controller) capped by a loss-based estimator.

use super::rate::RateMeter;
use super::{TwccResult, since_us};
use std::time::{Duration, Instant};

/// Packets sent within this span (from the group's first packet) form one group.
const GROUP_SPAN_US: i64 = 5_000;
/// Number of (arrival time, smoothed delay) points in the trendline regression.
const TREND_WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the trend before comparing with the threshold.
const TREND_GAIN: f64 = 4.0;
/// The trend is scaled by the number of deltas seen, up to this many.
const MAX_DELTA_SCALE: f64 = 60.0;
/// Overuse must last this long (in send time) before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;
/// Threshold adaptation gains when the trend is below / above the threshold.
const K_DOWN: f64 = 0.039;
const K_UP: f64 = 0.0087;
const INITIAL_THRESHOLD: f64 = 12.5;
/// Multiplicative increase per second in the increase state.
const INCREASE_PER_SEC: f64 = 1.08;
/// Decrease factor applied to the acknowledged rate on overuse.
const BETA: f64 = 0.85;
/// A further decrease needs this long since the last one (the upper bound of the
/// round-trip-time based interval in libwebrtc), unless the acknowledged rate fell
/// below half the estimate.
const REDUCE_INTERVAL: Duration = Duration::from_millis(200);
/// A packet sent at least this multiple of the estimate (its size over the gap
/// since the previous packet) extends a burst; bursts are measured as probes.
const PROBE_RATE_FACTOR: f64 = 1.5;
/// A burst must hold at least this many packets to be measured.
const PROBE_MIN_PACKETS: u32 = 5;
/// A burst must span at least this long in send time to be measured.
const PROBE_MIN_SPAN_US: i64 = 5_000;
/// Packets of a probe cluster that must arrive for it to be measured (a lost probe
/// packet or two must not void the measurement).
const CLUSTER_MIN_RECEIVED: usize = 4;
/// A probe cluster sent over a shorter span than this (a sender released it at one
/// instant) is measured by its receive span alone, capped at its goal.
const CLUSTER_MIN_SEND_SPAN_US: i64 = 1_000;
/// Probe clusters whose goals are remembered (the newest ones).
const CLUSTERS_KEPT: usize = 4;

/// Output of the overuse detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BwUsage {
    /// Delay is stable.
    #[default]
    Normal,
    /// Delay is decreasing (queues draining).
    Underusing,
    /// Delay is increasing (queues building).
    Overusing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateState {
    Hold,
    Increase,
    Decrease,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_recv_us: i64,
}

/// The delay-based part of [`Bwe`]: groups packets by send time, fits a trendline
/// to the accumulated one-way delay variation, detects overuse against an adaptive
/// threshold and drives an AIMD rate controller.
#[derive(Debug, Clone)]
pub struct DelayBasedBwe {
    epoch: Option<Instant>,
    current: Option<Group>,
    prev: Option<Group>,
    // Trendline.
    first_arrival_ms: Option<f64>,
    accumulated: f64,
    smoothed: f64,
    points: [(f64, f64); TREND_WINDOW],
    n_points: usize,
    next_point: usize,
    num_deltas: u32,
    prev_trend: f64,
    // Detector.
    threshold: f64,
    last_threshold_ms: Option<f64>,
    time_over_using: f64,
    overuse_count: u32,
    usage: BwUsage,
    // Rate control.
    state: RateState,
    rate: f64,
    min_bps: f64,
    max_bps: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// The last probe result since the last decrease: the throughput cap of the
    /// increase does not undercut what a probe showed the path carries.
    probe_floor: Option<f64>,
}

impl DelayBasedBwe {
    /// An estimator starting at `initial_bps`, bounded to `min_bps..=max_bps`.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let (min_bps, max_bps) = (min_bps as f64, (max_bps as f64).max(min_bps as f64));
        DelayBasedBwe {
            epoch: None,
            current: None,
            prev: None,
            first_arrival_ms: None,
            accumulated: 0.0,
            smoothed: 0.0,
            points: [(0.0, 0.0); TREND_WINDOW],
            n_points: 0,
            next_point: 0,
            num_deltas: 0,
            prev_trend: 0.0,
            threshold: INITIAL_THRESHOLD,
            last_threshold_ms: None,
            time_over_using: -1.0,
            overuse_count: 0,
            usage: BwUsage::Normal,
            state: RateState::Hold,
            rate: (initial_bps as f64).clamp(min_bps, max_bps),
            min_bps,
            max_bps,
            last_update: None,
            last_decrease: None,
            probe_floor: None,
        }
    }

    /// The current estimate in bits per second.
    pub fn estimate(&self) -> u64 {
        self.rate.round() as u64 // finite and within min..=max
    }

    /// Applies a probe result: the path delivered `bps` while offered more. Unless
    /// the detector signals overuse, the estimate rises to it (within the bounds).
    /// Either way, until the next decrease the throughput cap of the increase and
    /// the throughput the decrease backs off from are at least `bps`. Returns
    /// whether the estimate was raised.
    pub fn on_probe_result(&mut self, bps: u64) -> bool {
        let bps = bps as f64;
        if !bps.is_finite() {
            return false;
        }
        // A measurement of what the path carries even when the probe itself
        // overfilled the queue.
        self.probe_floor = Some(self.probe_floor.map_or(bps, |f| f.max(bps)));
        if self.usage == BwUsage::Overusing || bps <= self.rate {
            return false;
        }
        self.rate = bps.clamp(self.min_bps, self.max_bps);
        true
    }

    /// The detector's current signal.
    pub fn usage(&self) -> BwUsage {
        self.usage
    }

    /// The adaptive threshold (ms) the modified trend is compared with.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Feeds one received packet: sent at `send_time`, arrived at `recv_us` on the
    /// receiver's clock. Packets must come in send order (feedback order); packets
    /// sent before the current group are ignored.
    pub fn on_packet(&mut self, send_time: Instant, recv_us: i64) {
        let epoch = *self.epoch.get_or_insert(send_time);
        let send_us = i64::try_from(since_us(epoch, send_time)).unwrap_or(i64::MAX);
        let Some(g) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                last_recv_us: recv_us,
            });
            return;
        };
        if send_us < g.first_send_us {
            return;
        }
        if send_us - g.first_send_us <= GROUP_SPAN_US {
            g.last_send_us = g.last_send_us.max(send_us);
            g.last_recv_us = g.last_recv_us.max(recv_us);
            return;
        }
        let done = *g;
        if let Some(p) = self.prev {
            let send_ms = (done.last_send_us - p.last_send_us) as f64 / 1000.0;
            let recv_ms = done.last_recv_us.saturating_sub(p.last_recv_us) as f64 / 1000.0;
            self.on_delta(send_ms, recv_ms, done.last_recv_us as f64 / 1000.0);
        }
        self.prev = Some(done);
        self.current = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            last_recv_us: recv_us,
        });
    }

    fn on_delta(&mut self, send_ms: f64, recv_ms: f64, arrival_ms: f64) {
        self.num_deltas = (self.num_deltas + 1).min(1000);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated += recv_ms - send_ms;
        self.smoothed = SMOOTHING * self.smoothed + (1.0 - SMOOTHING) * self.accumulated;
        if let Some(p) = self.points.get_mut(self.next_point) {
            *p = (arrival_ms - first, self.smoothed);
        }
        self.next_point = (self.next_point + 1) % TREND_WINDOW;
        self.n_points = (self.n_points + 1).min(TREND_WINDOW);
        let trend = if self.n_points == TREND_WINDOW {
            slope(&self.points).unwrap_or(self.prev_trend)
        } else {
            self.prev_trend
        };
        self.detect(trend, send_ms, arrival_ms);
    }

    fn detect(&mut self, trend: f64, send_ms: f64, now_ms: f64) {
        let m = f64::from(self.num_deltas).min(MAX_DELTA_SCALE) * trend * TREND_GAIN;
        if m > self.threshold {
            if self.time_over_using < 0.0 {
                self.time_over_using = send_ms / 2.0;
            } else {
                self.time_over_using += send_ms;
            }
            self.overuse_count += 1;
            if self.time_over_using > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.prev_trend
            {
                self.time_over_using = 0.0;
                self.overuse_count = 0;
                self.usage = BwUsage::Overusing;
            }
        } else if m < -self.threshold {
            self.time_over_using = -1.0;
            self.overuse_count = 0;
            self.usage = BwUsage::Underusing;
        } else {
            self.time_over_using = -1.0;
            self.overuse_count = 0;
            self.usage = BwUsage::Normal;
        }
        self.prev_trend = trend;
        self.update_threshold(m, now_ms);
    }

    fn update_threshold(&mut self, m: f64, now_ms: f64) {
        let last = *self.last_threshold_ms.get_or_insert(now_ms);
        self.last_threshold_ms = Some(now_ms);
        let abs = m.abs();
        if !abs.is_finite() || abs > self.threshold + 15.0 {
            return; // a spike: do not adapt to it
        }
        let k = if abs < self.threshold { K_DOWN } else { K_UP };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold = (self.threshold + k * (abs - self.threshold) * dt).clamp(6.0, 600.0);
    }

    /// Runs the rate controller at `now` with the acknowledged (received) bitrate,
    /// and returns the new estimate. Call once per feedback, after its packets.
    pub fn update(&mut self, now: Instant, acked_bps: Option<u64>) -> u64 {
        self.state = match (self.usage, self.state) {
            (BwUsage::Overusing, _) => RateState::Decrease,
            (BwUsage::Underusing, _) => RateState::Hold,
            (BwUsage::Normal, RateState::Decrease) => RateState::Hold,
            (BwUsage::Normal, _) => RateState::Increase,
        };
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        let acked = acked_bps.map(|a| a as f64);
        match self.state {
            RateState::Increase => {
                let increased = self.rate * INCREASE_PER_SEC.powf(dt.as_secs_f64());
                // Do not run far ahead of what the path has shown it carries
                // (measured, or shown by a probe since the last decrease). The cap
                // only stops increases, as in libwebrtc's AIMD: an estimate above it
                // is kept, so a sender that sends less for a while (an SFU leg moved
                // to a lower layer, a muted track) does not lose the rate the path
                // was measured to carry. Only overuse and loss lower it.
                let cap = acked.map_or(f64::INFINITY, |a| {
                    (1.5 * a + 10_000.0).max(self.probe_floor.unwrap_or(0.0))
                });
                if self.rate < cap {
                    self.rate = increased.min(cap);
                }
            }
            RateState::Decrease
                if self.last_decrease.is_some_and(|t| {
                    now.saturating_duration_since(t) < REDUCE_INTERVAL
                        && acked.is_none_or(|a| a >= 0.5 * self.rate)
                }) =>
            {
                // One overuse episode spans several feedbacks: reduce again only
                // after the last reduction had time to show (or when the
                // acknowledged rate is far below the estimate).
                self.state = RateState::Hold;
            }
            RateState::Decrease => {
                self.last_decrease = Some(now);
                // Back off below the throughput: the acknowledged rate, or what a
                // probe since the last decrease measured when the acknowledged rate
                // (averaged over a window) still lags behind it.
                let throughput = match (acked, self.probe_floor) {
                    (Some(a), Some(p)) => a.max(p),
                    (a, p) => a.or(p).unwrap_or(self.rate),
                };
                let target = throughput * BETA;
                self.rate = self.rate.min(target);
                self.state = RateState::Hold;
                self.probe_floor = None;
            }
            RateState::Hold => {}
        }
        if !self.rate.is_finite() {
            self.rate = self.min_bps;
        }
        self.rate = self.rate.clamp(self.min_bps, self.max_bps);
        self.estimate()
    }
}

/// Least-squares slope of `points` (None when all x are equal).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den != 0.0 && den.is_finite()).then(|| num / den)
}

/// The loss-based part of [`Bwe`]: evaluated every `MIN_PACKETS` (20) reported
/// packets. Loss above 10% lowers the rate to `(1 − loss/2)` of the current
/// estimate; loss below 2% raises it by 5%; in between it holds.
#[derive(Debug, Clone)]
pub struct LossBasedBwe {
    rate: f64,
    min_bps: f64,
    max_bps: f64,
    lost: u64,
    total: u64,
    last_loss: Option<f64>,
}

impl LossBasedBwe {
    /// Packets needed before a loss fraction is evaluated.
    pub const MIN_PACKETS: u64 = 20;

    /// An estimator starting at `initial_bps`, bounded to `min_bps..=max_bps`.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let (min_bps, max_bps) = (min_bps as f64, (max_bps as f64).max(min_bps as f64));
        LossBasedBwe {
            rate: (initial_bps as f64).clamp(min_bps, max_bps),
            min_bps,
            max_bps,
            lost: 0,
            total: 0,
            last_loss: None,
        }
    }

    /// The current loss-based cap in bits per second.
    pub fn estimate(&self) -> u64 {
        self.rate.round() as u64 // finite and within min..=max
    }

    /// Applies a probe result: the path delivered `bps`, so the loss-based cap
    /// rises to it (within the bounds).
    pub fn on_probe_result(&mut self, bps: u64) {
        self.rate = self.rate.max(bps as f64).clamp(self.min_bps, self.max_bps);
    }

    /// Forgets the packets counted towards the next evaluation (after a decrease,
    /// so that the next loss fraction describes the new rate only).
    fn restart_interval(&mut self) {
        self.lost = 0;
        self.total = 0;
    }

    /// The loss fraction of the last evaluated interval.
    pub fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// Adds `lost` of `total` reported packets; `current_bps` is the combined
    /// estimate in force. Returns the (possibly updated) cap.
    pub fn update(&mut self, lost: u64, total: u64, current_bps: u64) -> u64 {
        self.lost += lost.min(total);
        self.total += total;
        if self.total >= Self::MIN_PACKETS {
            let p = self.lost as f64 / self.total as f64;
            self.lost = 0;
            self.total = 0;
            self.last_loss = Some(p);
            if p > 0.10 {
                self.rate = self.rate.min(current_bps as f64) * (1.0 - 0.5 * p);
            } else if p < 0.02 {
                self.rate *= 1.05;
            }
            self.rate = self.rate.clamp(self.min_bps, self.max_bps);
        }
        self.estimate()
    }
}

/// Most packets measured in one burst; a longer run is measured in pieces.
const BURST_MAX_PACKETS: usize = 64;

/// Measures bursts: runs of packets sent faster than the estimate (probes,
/// whether padding or media), and probe clusters: the packets the sender tagged as
/// sent during one probe ([`TwccResult::probe_cluster`]), whatever their spacing — a
/// probe only a little above the estimate, or one a late sender released in clumps,
/// is still one measurement. A burst's result is the smaller of its send rate and
/// its receive rate: what the path delivered while offered more than the estimate;
/// a cluster's is also capped at the probe's goal (all it asked the path).
#[derive(Debug, Clone)]
struct BurstMeter {
    /// The probe cluster of the open burst (0: an untagged burst), and its goal.
    cluster: u16,
    goal_bps: u64,
    epoch: Option<Instant>,
    last_seq: Option<u64>,
    /// Send time (µs from `epoch`) of the previous packet.
    last_send_us: i64,
    /// Packets in the burst, and send time of its first one.
    count: usize,
    first_send_us: i64,
    /// Bytes sent, and the size of the last packet sent.
    sent_bytes: u64,
    last_size: u64,
    /// (arrival µs, size) of the received packets, in send order.
    arrivals: [(i64, u32); BURST_MAX_PACKETS],
    received: usize,
}

impl Default for BurstMeter {
    fn default() -> Self {
        BurstMeter {
            cluster: 0,
            goal_bps: u64::MAX,
            epoch: None,
            last_seq: None,
            last_send_us: 0,
            count: 0,
            first_send_us: 0,
            sent_bytes: 0,
            last_size: 0,
            arrivals: [(0, 0); BURST_MAX_PACKETS],
            received: 0,
        }
    }
}

impl BurstMeter {
    /// Adds one reported packet (in sequence order); returns the result of a burst
    /// this packet ended, if enough of it arrived to be measured. `goal_bps`: the
    /// goal of the packet's probe cluster (`u64::MAX` when unknown or untagged).
    fn on_result(&mut self, r: &TwccResult, estimate_bps: u64, goal_bps: u64) -> Option<u64> {
        if self.last_seq.is_some_and(|l| r.seq <= l) {
            return None; // reported again or out of order
        }
        let gap_in_seq = self.last_seq.is_some_and(|l| r.seq != l + 1);
        self.last_seq = Some(r.seq);
        let epoch = *self.epoch.get_or_insert(r.send_time);
        let send_us = i64::try_from(since_us(epoch, r.send_time)).unwrap_or(i64::MAX);
        let gap_us = send_us.saturating_sub(self.last_send_us);
        let size = u64::from(r.size);
        // Sent at `size / gap` ≥ factor × estimate (a zero gap is infinitely fast).
        let fast =
            (size as f64) * 8.0 * 1e6 >= PROBE_RATE_FACTOR * estimate_bps as f64 * gap_us as f64;
        let mut result = None;
        // A tagged packet continues its cluster however slowly it was sent; an
        // untagged one continues a burst only when sent fast.
        let tagged = r.probe_cluster != 0;
        if self.count == 0
            || r.probe_cluster != self.cluster
            || (!tagged && !fast)
            || gap_in_seq
            || self.count >= BURST_MAX_PACKETS
        {
            result = self.result();
            self.count = 0;
            self.first_send_us = send_us;
            self.sent_bytes = 0;
            self.received = 0;
            self.cluster = r.probe_cluster;
            self.goal_bps = goal_bps;
        }
        self.count += 1;
        self.last_send_us = send_us;
        self.last_size = size;
        self.sent_bytes += size;
        if let (Some(t), Some(slot)) = (r.recv_us, self.arrivals.get_mut(self.received)) {
            *slot = (t, r.size);
            self.received += 1;
        }
        result
    }

    /// The delivered rate of the burst so far, if it qualifies.
    fn result(&self) -> Option<u64> {
        let send_span = self.last_send_us - self.first_send_us;
        let cluster = self.cluster != 0;
        if !cluster && send_span < PROBE_MIN_SPAN_US {
            return None;
        }
        // The receive span runs from the first to the last arrival in send order,
        // leaving out packets that arrived after one sent later (reordered, or
        // reported at the arrival of their retransmission).
        let arrivals = self.arrivals.get(..self.received)?;
        let (mut n, mut bytes, mut first, mut last) = (0usize, 0u64, None, None);
        let mut min_after = i64::MAX;
        for &(t, size) in arrivals.iter().rev() {
            if t > min_after {
                continue;
            }
            min_after = t;
            n += 1;
            // Walking backwards: the latest in-order arrival is met first, and the
            // first arrival's size (met last) is taken out again below.
            last.get_or_insert(t);
            first = Some((t, size));
            bytes += u64::from(size);
        }
        let (first_t, first_size) = first?;
        let recv_span = last? - first_t;
        let min_received = if cluster {
            CLUSTER_MIN_RECEIVED
        } else {
            PROBE_MIN_PACKETS as usize
        };
        if n < min_received || recv_span <= 0 {
            return None;
        }
        // Bytes sent during the send span (lost ones included) exclude the last
        // packet; bytes received during the receive span exclude the first arrival.
        let send = if cluster && send_span < CLUSTER_MIN_SEND_SPAN_US {
            f64::INFINITY // released at once: the receive side tells the rate
        } else {
            (self.sent_bytes - self.last_size) as f64 * 8e6 / send_span as f64
        };
        let recv = (bytes - u64::from(first_size)) as f64 * 8e6 / recv_span as f64;
        let rate = send.min(recv); // finite: the receive span is positive
        let cap = if cluster { self.goal_bps } else { u64::MAX };
        Some((rate as u64).min(cap))
    }

    /// Send time (µs from the epoch) of the first packet of the open burst.
    fn open_since_us(&self) -> i64 {
        self.first_send_us
    }
}

/// Configuration of a [`Bwe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    /// Starting estimate (bps).
    pub initial_bps: u64,
    /// Lower bound (bps).
    pub min_bps: u64,
    /// Upper bound (bps).
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        BweConfig {
            initial_bps: 300_000,
            min_bps: 30_000,
            max_bps: 10_000_000,
        }
    }
}

/// Send-side bandwidth estimator: feed it the results of each transport-wide
/// feedback ([`super::TwccSendRegister::apply_feedback`]); the estimate is the
/// smaller of the delay-based and loss-based ones, within the configured bounds.
#[derive(Debug, Clone)]
pub struct Bwe {
    config: BweConfig,
    delay: DelayBasedBwe,
    loss: LossBasedBwe,
    acked: RateMeter,
    remote_base: Option<i64>,
    acked_bps: Option<u64>,
    estimate: u64,
    bursts: BurstMeter,
    /// (cluster, goal) of the newest probe clusters the sender started.
    clusters: [(u16, u64); CLUSTERS_KEPT],
    next_cluster: usize,
    /// When the estimate last fell: bursts sent before it are not probes of the
    /// current state.
    last_decrease: Option<Instant>,
    probe_results: u64,
    /// The last received packet, held until the next one shows it arrived in order.
    held: Option<(Instant, i64)>,
    reordered: u64,
    /// Packets the feedback reported, and of those reported not received (totals).
    reported: u64,
    reported_lost: u64,
}

impl Bwe {
    /// An estimator with `config`.
    pub fn new(config: BweConfig) -> Self {
        let max = config.max_bps.max(config.min_bps);
        Bwe {
            config,
            delay: DelayBasedBwe::new(config.initial_bps, config.min_bps, max),
            loss: LossBasedBwe::new(config.initial_bps, config.min_bps, max),
            acked: RateMeter::new(Duration::from_millis(500), 50),
            remote_base: None,
            acked_bps: None,
            estimate: config.initial_bps.clamp(config.min_bps, max),
            bursts: BurstMeter::default(),
            clusters: [(0, 0); CLUSTERS_KEPT],
            next_cluster: 0,
            last_decrease: None,
            probe_results: 0,
            held: None,
            reordered: 0,
            reported: 0,
            reported_lost: 0,
        }
    }

    /// Processes the results of one feedback packet received at `now` and returns
    /// the new estimate (bps).
    pub fn on_feedback(
        &mut self,
        now: Instant,
        results: impl IntoIterator<Item = TwccResult>,
    ) -> u64 {
        let mut total = 0u64;
        // Loss counted over packets sent since the last decrease only: losses of
        // packets sent at the old rate were already answered.
        let (mut lost, mut counted) = (0u64, 0u64);
        let mut missing = 0u64;
        let mut latest: Option<u64> = None;
        let mut probe: Option<u64> = None;
        for r in results {
            total += 1;
            if let Some(p) = self.burst_result(&r) {
                probe = Some(probe.map_or(p, |q| q.max(p)));
            }
            let current = self.last_decrease.is_none_or(|d| r.send_time >= d);
            counted += u64::from(current);
            let Some(t) = r.recv_us else {
                lost += u64::from(current);
                missing += 1;
                continue;
            };
            let base = *self.remote_base.get_or_insert(t);
            let rel = u64::try_from(t.saturating_sub(base)).unwrap_or(0);
            self.acked.add_us(rel, u64::from(r.size));
            latest = Some(latest.map_or(rel, |l| l.max(rel)));
            // The delay estimator gets each packet once the next one is known: a
            // packet that arrived after a later-sent one (reordered, or reported
            // at the arrival of its retransmission) is no sample of the path's
            // queueing delay at its send time.
            if let Some((send, recv)) = self.held.replace((r.send_time, t)) {
                if recv <= t {
                    self.delay.on_packet(send, recv);
                } else {
                    self.reordered += 1;
                }
            }
        }
        self.reported += total;
        self.reported_lost += missing;
        if let Some(t) = latest {
            self.acked_bps = self.acked.rate_bps_us(t);
        }
        if total == 0 {
            return self.estimate;
        }
        if let Some(p) = probe
            && self.delay.on_probe_result(p)
        {
            self.loss.on_probe_result(p);
            self.probe_results += 1;
        }
        let d = self.delay.update(now, self.acked_bps);
        let l = self.loss.update(lost, counted, self.estimate);
        let max = self.config.max_bps.max(self.config.min_bps);
        let estimate = d.min(l).clamp(self.config.min_bps, max);
        if estimate < self.estimate {
            self.loss.restart_interval();
            self.last_decrease = Some(now);
        }
        self.estimate = estimate;
        self.estimate
    }

    /// Tells the estimator that the sender starts probe `cluster` (not 0) with goal
    /// `goal_bps`: packets it tags with that cluster
    /// ([`super::TwccSendRegister::next_seq_in_probe`]) are measured together, and
    /// the result is at most the goal.
    pub fn on_probe_cluster(&mut self, cluster: u16, goal_bps: u64) {
        if cluster == 0 {
            return;
        }
        let i = self.next_cluster % CLUSTERS_KEPT;
        self.clusters[i] = (cluster, goal_bps.max(1));
        self.next_cluster = (i + 1) % CLUSTERS_KEPT;
    }

    /// Feeds one result to the burst meter; a finished burst sent wholly after the
    /// last decrease yields its delivered rate.
    fn burst_result(&mut self, r: &TwccResult) -> Option<u64> {
        let started = self.bursts.epoch.map(|e| {
            let us = u64::try_from(self.bursts.open_since_us()).unwrap_or(0);
            e + Duration::from_micros(us)
        });
        let goal = match r.probe_cluster {
            0 => u64::MAX,
            c => self
                .clusters
                .iter()
                .find(|k| k.0 == c)
                .map_or(u64::MAX, |k| k.1),
        };
        let result = self.bursts.on_result(r, self.estimate, goal)?;
        let after_decrease = match (started, self.last_decrease) {
            (Some(s), Some(d)) => s >= d,
            _ => true,
        };
        after_decrease.then_some(result)
    }

    /// Received packets kept from the delay estimator because they arrived after a
    /// packet sent later.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Packets the transport-wide feedback has reported on so far, and how many of
    /// them it reported as not received (lost, or late past the feedback).
    pub fn reported(&self) -> (u64, u64) {
        (self.reported, self.reported_lost)
    }

    /// Bursts measured and applied as probe results so far.
    pub fn probe_results(&self) -> u64 {
        self.probe_results
    }

    /// The current estimate (bps).
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// The acknowledged bitrate measured from the feedback (bps).
    pub fn acked_bitrate(&self) -> Option<u64> {
        self.acked_bps
    }

    /// The delay-based detector's current signal.
    pub fn usage(&self) -> BwUsage {
        self.delay.usage()
    }

    /// The delay-based estimator.
    pub fn delay_based(&self) -> &DelayBasedBwe {
        &self.delay
    }

    /// The loss-based estimator.
    pub fn loss_based(&self) -> &LossBasedBwe {
        &self.loss
    }
}

#[cfg(test)]
mod tests;
