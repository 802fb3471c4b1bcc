//! From allocation to the subscriber's sender: what the peer's `Rtc` is told after each
//! [`Allocator::update`](super::Allocator::update).
//!
//! The allocator chooses layers within the send-side estimate; [`RateDrive`] turns its
//! [`AllocationReport`] into the two knobs of the peer's sender:
//! - **Send rate** (`Rtc::set_send_rate(target, max)`): the pacer paces to the estimate,
//!   but never below what the allocation forwards (`target` = the allocation when it is
//!   above the estimate, e.g. base layers kept with
//!   [`AllocatorConfig::base_always`](super::AllocatorConfig::base_always), else 0 for
//!   "the estimate"), and neither pacing nor probing goes above
//!   [`MAX_HEADROOM_PCT`] % of the most the peer's preferences can use
//!   ([`AllocationReport::ceiling_bps`]). Re-applied only when either moves by more than
//!   [`RATE_HYSTERESIS_PCT`] %.
//! - **Probes** (`Rtc::request_probe(goal)`): while the allocation is deficient and the
//!   estimate is below [`PROBE_OVER_PCT`] % of what the next step needs
//!   ([`AllocationReport::upgrade_bps`]), a probe to that (at least the allocator's own
//!   probe goal): the estimate rises only when the path carries it, and the allocator
//!   switches up only once it did — probe first, switch after. An estimate just above
//!   the need is probed too: the step's cost (a measured layer rate) moves by more than
//!   the few percent it has left, and the upgrade must stay covered for its whole hold. The first probe waits
//!   [`PROBE_GAP_MIN`] after the peer became deficient (the `Rtc`'s own start-up probes
//!   run first); a probe that did not change the allocation doubles the gap to the next,
//!   up to [`PROBE_GAP_MAX`], so a peer at its link's capacity is probed rarely.
//!
//! Deterministic and Sans-I/O like the allocator; no allocation.

use std::time::{Duration, Instant};

use super::AllocationReport;

/// Pacing and probes are capped at this percentage of the most the peer can use.
pub const MAX_HEADROOM_PCT: u64 = 150;
/// A probe aims this much (percent) above the estimate the next step needs.
pub const PROBE_OVER_PCT: u64 = 115;
/// The send rate is re-applied when target or maximum move by more than this percentage.
pub const RATE_HYSTERESIS_PCT: u64 = 10;
/// Shortest gap between probes (and before the first).
pub const PROBE_GAP_MIN: Duration = Duration::from_secs(2);
/// Longest gap between probes that change nothing.
pub const PROBE_GAP_MAX: Duration = Duration::from_secs(8);

/// What to tell the peer's `Rtc` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateCommand {
    /// `Some((target, max))`: call `set_send_rate(target, max)`.
    pub send_rate: Option<(u64, u64)>,
    /// `Some(goal)`: call `request_probe(goal)`.
    pub probe_bps: Option<u64>,
}

impl RateCommand {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.send_rate.is_none() && self.probe_bps.is_none()
    }
}

/// The per-peer state between allocation and sender (see the module docs).
#[derive(Debug, Clone)]
pub struct RateDrive {
    applied: Option<(u64, u64)>,
    next_probe: Option<Instant>,
    gap: Duration,
    /// The allocation when the last probe was asked for.
    probed_expected: Option<u64>,
    probes: u64,
}

impl Default for RateDrive {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether `new` differs from `old` by more than [`RATE_HYSTERESIS_PCT`] % (or one of
/// them is 0 and the other not).
fn moved(old: u64, new: u64) -> bool {
    if (old == 0) != (new == 0) {
        return true;
    }
    let diff = u128::from(old.abs_diff(new)) * 100;
    diff > u128::from(old) * u128::from(RATE_HYSTERESIS_PCT)
}

fn pct(v: u64, p: u64) -> u64 {
    u64::try_from(u128::from(v) * u128::from(p) / 100).unwrap_or(u64::MAX)
}

impl RateDrive {
    /// Nothing applied yet.
    pub fn new() -> Self {
        Self {
            applied: None,
            next_probe: None,
            gap: PROBE_GAP_MIN,
            probed_expected: None,
            probes: 0,
        }
    }

    /// Probes asked for so far.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// What the peer's sender should be told after an allocation at `now` with the
    /// estimate `estimate_bps` the allocator was given. `probing`: whether probes may
    /// be asked for (false when the estimate is not the sender's own, e.g. a test
    /// override).
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        report: &AllocationReport,
        probing: bool,
    ) -> RateCommand {
        let mut cmd = RateCommand::default();
        // No cap from a ceiling made of default layer costs: a publisher's single
        // 2 Mbit/s layer would be paced at a fraction of its rate until measured.
        let max = match report.ceiling_bps {
            0 => 0,
            _ if !report.ceiling_known => 0,
            c => pct(c, MAX_HEADROOM_PCT),
        };
        let target = if report.expected_bps > estimate_bps {
            report.expected_bps
        } else {
            0
        };
        let apply = match self.applied {
            None => true,
            Some((t, m)) => moved(t, target) || moved(m, max),
        };
        if apply {
            self.applied = Some((target, max));
            cmd.send_rate = Some((target, max));
        }
        let need = report
            .upgrade_bps
            .filter(|&u| probing && report.deficient && pct(u, PROBE_OVER_PCT) > estimate_bps);
        let Some(need) = need else {
            self.next_probe = None;
            self.gap = PROBE_GAP_MIN;
            self.probed_expected = None;
            return cmd;
        };
        let due = *self.next_probe.get_or_insert(now + self.gap);
        if now < due {
            return cmd;
        }
        if self
            .probed_expected
            .is_some_and(|e| report.expected_bps <= e)
        {
            // The last probe did not lift the allocation: the link is likely full.
            self.gap = (self.gap * 2).min(PROBE_GAP_MAX);
        } else {
            self.gap = PROBE_GAP_MIN;
        }
        self.probed_expected = Some(report.expected_bps);
        self.next_probe = Some(now + self.gap);
        let mut goal = pct(need, PROBE_OVER_PCT).max(report.probe_goal_bps.unwrap_or(0));
        if max > 0 {
            goal = goal.min(max);
        }
        self.probes += 1;
        cmd.probe_bps = Some(goal);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn report(expected: u64, upgrade: Option<u64>, ceiling: u64) -> AllocationReport {
        AllocationReport {
            changed: false,
            deficient: upgrade.is_some(),
            expected_bps: expected,
            probe_goal_bps: upgrade.map(|u| expected + (u - expected) / 2),
            upgrade_bps: upgrade,
            ceiling_bps: ceiling,
            ceiling_known: true,
        }
    }

    #[test]
    fn a_ceiling_of_default_layer_costs_caps_nothing() {
        // Before the publisher's layers are measured, their costs are defaults (150k
        // for a single layer that may carry 2 Mbit/s): capping the pacer at 150 % of
        // that held a subscriber's first half second in a 100 KB pacer queue.
        let t0 = Instant::now();
        let mut d = RateDrive::new();
        let guess = AllocationReport {
            ceiling_known: false,
            ..report(150_000, None, 190_000)
        };
        let c = d.update(t0, 300_000, &guess, true);
        assert_eq!(c.send_rate, Some((0, 0)));
        // Once measured, the cap applies.
        let c = d.update(t0 + S, 300_000, &report(150_000, None, 2_050_000), true);
        assert_eq!(c.send_rate, Some((0, 3_075_000)));
    }

    #[test]
    fn send_rate_follows_the_allocation_with_hysteresis() {
        let t0 = Instant::now();
        let mut d = RateDrive::new();
        // Base layer within the estimate: pace to the estimate, cap at 150 % of 1.5M.
        let c = d.update(t0, 300_000, &report(150_000, None, 1_500_000), true);
        assert_eq!(c.send_rate, Some((0, 2_250_000)));
        // A small change of the ceiling is not re-applied; a large one is.
        let c = d.update(t0 + S, 300_000, &report(150_000, None, 1_550_000), true);
        assert!(c.is_empty());
        let c = d.update(t0 + S, 300_000, &report(150_000, None, 500_000), true);
        assert_eq!(c.send_rate, Some((0, 750_000)));
        // An allocation above the estimate (bases kept): never paced below it.
        let c = d.update(t0 + S, 100_000, &report(150_000, None, 500_000), true);
        assert_eq!(c.send_rate, Some((150_000, 750_000)));
    }

    #[test]
    fn probes_wait_then_back_off_while_nothing_changes() {
        let t0 = Instant::now();
        let mut d = RateDrive::new();
        // Deficient: layer 1 needs 550k, the estimate is 300k.
        let r = report(150_000, Some(550_000), 1_500_000);
        assert_eq!(d.update(t0, 300_000, &r, true).probe_bps, None);
        assert_eq!(d.update(t0 + S, 300_000, &r, true).probe_bps, None);
        // After the first gap: 115 % of the need.
        assert_eq!(
            d.update(t0 + 2 * S, 300_000, &r, true).probe_bps,
            Some(632_500)
        );
        // Nothing changed: the next ones come 2 s, 4 s, then every 8 s later.
        let mut at = Vec::new();
        for s in 3..40 {
            if d.update(t0 + s * S, 300_000, &r, true).probe_bps.is_some() {
                at.push(s);
            }
        }
        assert_eq!(at, vec![4, 8, 16, 24, 32]);
        // The allocation rose: back to the shortest gap.
        let r1 = report(500_000, Some(1_650_000), 1_500_000);
        assert_eq!(
            d.update(t0 + 46 * S, 600_000, &r1, true).probe_bps,
            Some(1_897_500)
        );
        assert_eq!(d.update(t0 + 47 * S, 600_000, &r1, true).probe_bps, None);
        assert!(
            d.update(t0 + 48 * S, 600_000, &r1, true)
                .probe_bps
                .is_some()
        );
        // Not deficient, or the estimate already covers the step, or not allowed:
        // no probe, and the wait starts again.
        assert_eq!(d.update(t0 + 60 * S, 3_000_000, &r1, true).probe_bps, None);
        assert_eq!(d.update(t0 + 70 * S, 600_000, &r1, false).probe_bps, None);
        let done = report(1_500_000, None, 1_500_000);
        assert_eq!(d.update(t0 + 80 * S, 600_000, &done, true).probe_bps, None);
        assert_eq!(d.update(t0 + 81 * S, 600_000, &r1, true).probe_bps, None);
        assert!(
            d.update(t0 + 83 * S, 600_000, &r1, true)
                .probe_bps
                .is_some()
        );
        assert_eq!(d.probes(), 9);
    }

    /// A viewer whose estimate sits just above what the next layer needs (460k for a
    /// 430k need) is probed on: a keyframe or a busier scene lifts the layer's measured
    /// rate past the estimate and restarts the upgrade's hold, so only a margin makes
    /// the upgrade stick. (Seen in the simulcast browser test: stuck 10 s at 320 wide.)
    #[test]
    fn an_estimate_just_above_the_need_is_still_probed() {
        let t0 = Instant::now();
        let mut d = RateDrive::new();
        let r = report(200_000, Some(430_000), 1_500_000);
        assert_eq!(d.update(t0, 460_000, &r, true).probe_bps, None);
        assert_eq!(
            d.update(t0 + 2 * S, 460_000, &r, true).probe_bps,
            Some(494_500)
        );
        // With the margin reached, no more probes.
        let mut d = RateDrive::new();
        for s in 0..10 {
            assert_eq!(d.update(t0 + s * S, 500_000, &r, true).probe_bps, None);
        }
    }
}
