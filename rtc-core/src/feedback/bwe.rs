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
        }
    }

    /// The current estimate in bits per second.
    pub fn estimate(&self) -> u64 {
        self.rate.round() as u64 // finite and within min..=max
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
                    // Do not run far ahead of what the path has shown it carries.
                    self.rate = self.rate.min(1.5 * a + 10_000.0);
                }
            }
            RateState::Decrease => {
                let target = acked.unwrap_or(self.rate) * BETA;
                self.rate = self.rate.min(target);
                self.state = RateState::Hold;
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
}

impl Bwe {
    /// An estimator with `config`.
    pub fn new(config: BweConfig) -> Self {
        let max = config.max_bps.max(config.min_bps);
        Bwe {
            config,
            delay: DelayBasedBwe::new(config.initial_bps, config.min_bps, max),
            loss: LossBasedBwe::new(config.initial_bps, config.min_bps, max),
            acked: RateMeter::new(Duration::from_millis(500), 10),
            remote_base: None,
            acked_bps: None,
            estimate: config.initial_bps.clamp(config.min_bps, max),
        }
    }

    /// Processes the results of one feedback packet received at `now` and returns
    /// the new estimate (bps).
    pub fn on_feedback(
        &mut self,
        now: Instant,
        results: impl IntoIterator<Item = TwccResult>,
    ) -> u64 {
        let (mut lost, mut total) = (0u64, 0u64);
        let mut latest: Option<u64> = None;
        for r in results {
            total += 1;
            let Some(t) = r.recv_us else {
                lost += 1;
                continue;
            };
            let base = *self.remote_base.get_or_insert(t);
            let rel = u64::try_from(t.saturating_sub(base)).unwrap_or(0);
            self.acked.add_us(rel, u64::from(r.size));
            latest = Some(latest.map_or(rel, |l| l.max(rel)));
            self.delay.on_packet(r.send_time, t);
        }
        if let Some(t) = latest {
            self.acked_bps = self.acked.rate_bps_us(t);
        }
        if total == 0 {
            return self.estimate;
        }
        let d = self.delay.update(now, self.acked_bps);
        let l = self.loss.update(lost, total, self.estimate);
        let max = self.config.max_bps.max(self.config.min_bps);
        self.estimate = d.min(l).clamp(self.config.min_bps, max);
        self.estimate
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

    #[test]
    fn slope_by_hand() {
        // y = 2x + 1 exactly.
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)];
        assert_eq!(slope(&pts), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
