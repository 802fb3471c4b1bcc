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
                self.rate *= INCREASE_PER_SEC.powf(dt.as_secs_f64());
                if let Some(a) = acked {
                    // Do not run far ahead of what the path has shown it carries
                    // (measured, or shown by a probe since the last decrease).
                    let cap = (1.5 * a + 10_000.0).max(self.probe_floor.unwrap_or(0.0));
                    self.rate = self.rate.min(cap);
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
/// whether padding or media). A burst's result is the smaller of its send rate
/// and its receive rate: what the path delivered while offered more than the
/// estimate.
#[derive(Debug, Clone)]
struct BurstMeter {
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
    /// this packet ended, if enough of it arrived to be measured.
    fn on_result(&mut self, r: &TwccResult, estimate_bps: u64) -> Option<u64> {
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
        if self.count == 0 || !fast || gap_in_seq || self.count >= BURST_MAX_PACKETS {
            result = self.result();
            self.count = 0;
            self.first_send_us = send_us;
            self.sent_bytes = 0;
            self.received = 0;
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
        if send_span < PROBE_MIN_SPAN_US {
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
        if n < PROBE_MIN_PACKETS as usize || recv_span <= 0 {
            return None;
        }
        // Bytes sent during the send span (lost ones included) exclude the last
        // packet; bytes received during the receive span exclude the first arrival.
        let send = (self.sent_bytes - self.last_size) as f64 * 8e6 / send_span as f64;
        let recv = (bytes - u64::from(first_size)) as f64 * 8e6 / recv_span as f64;
        Some(send.min(recv) as u64) // finite: spans are positive
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
    /// When the estimate last fell: bursts sent before it are not probes of the
    /// current state.
    last_decrease: Option<Instant>,
    probe_results: u64,
    /// The last received packet, held until the next one shows it arrived in order.
    held: Option<(Instant, i64)>,
    reordered: u64,
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
            last_decrease: None,
            probe_results: 0,
            held: None,
            reordered: 0,
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

    /// Feeds one result to the burst meter; a finished burst sent wholly after the
    /// last decrease yields its delivered rate.
    fn burst_result(&mut self, r: &TwccResult) -> Option<u64> {
        let started = self.bursts.epoch.map(|e| {
            let us = u64::try_from(self.bursts.open_since_us()).unwrap_or(0);
            e + Duration::from_micros(us)
        });
        let result = self.bursts.on_result(r, self.estimate)?;
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
mod tests {
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
        // The increase is capped at 1.5 * acked + 10 kbps = 310_000.
        let mut c = b.clone();
        assert_eq!(c.update(t0 + ms(1100), Some(200_000)), 310_000);
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
            assert_eq!(m.on_result(&r, 1_000_000), None);
        }
        // A packet 20 ms later (0.48 Mbit/s) ends the burst: min(send, recv) is the
        // receive rate, 9 × 1200 B over 43.2 ms = 2 Mbit/s.
        let r = res(t0, 10, 29_000, Some(200_000));
        assert_eq!(m.on_result(&r, 1_000_000), Some(2_000_000));
        // Below the bottleneck the send rate is the result: 9 × 1200 B over 9 × 2 ms.
        let mut m = BurstMeter::default();
        for i in 0..10u64 {
            let r = res(t0, i, i * 2000, Some(100_000 + 2000 * i as i64));
            m.on_result(&r, 1_000_000);
        }
        assert_eq!(
            m.on_result(&res(t0, 10, 60_000, Some(0)), 1_000_000),
            Some(4_800_000)
        );
        // Too few packets, or a gap in the reported numbers: no result.
        let mut m = BurstMeter::default();
        for i in 0..4u64 {
            m.on_result(&res(t0, i, i * 1000, Some(4800 * i as i64)), 1_000_000);
        }
        assert_eq!(m.on_result(&res(t0, 4, 40_000, Some(0)), 1_000_000), None);
        // One packet reported at a late arrival (its retransmission) does not
        // stretch the receive span; a lost one still counts as sent.
        let mut m = BurstMeter::default();
        for i in 0..10u64 {
            let recv = match i {
                3 => Some(100_000 + 50_000),
                5 => None,
                _ => Some(100_000 + 4800 * i as i64),
            };
            m.on_result(&res(t0, i, i * 1000, recv), 1_000_000);
        }
        // Received in order: 0, 1, 2, 4, 6..9: 7 × 1200 B after the first over
        // 43.2 ms = 1.555 Mbit/s.
        assert_eq!(
            m.on_result(&res(t0, 10, 29_000, Some(0)), 1_000_000),
            Some(1_555_555)
        );
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
}
