//! The per-subscriber bandwidth allocator.
//!
//! One [`Allocator`] runs per subscriber peer. It is told the peer's send-side bandwidth
//! estimate (from its transport-wide congestion control) and, per downtrack, the media
//! kind, a priority (1–255, higher first), the spatial/temporal layers the publisher
//! currently sends with their measured bitrates, the control plane's [`Preference`] and
//! whether the track is active. [`Allocator::update`] answers with a [`Target`] per
//! downtrack (a layer to forward, or paused and why), whether the peer is *deficient*
//! (some track is below what its preference allows) and the bitrate a pacer should probe
//! to.
//!
//! Rules:
//! - Audio is never managed: an active audio track is always forwarded and its measured
//!   rate (or [`AllocatorConfig::default_audio_bps`]) is reserved before video. Only an
//!   explicit pause in its [`Preference`] stops it.
//! - Video is allocated in rungs `(spatial, temporal)`, ordered spatial first then
//!   temporal. Every track first gets its base rung, in priority order; then all tracks
//!   climb level by level (each level `(s, t)` is offered to every track in priority
//!   order) while the budget lasts. A track whose next rung does not fit stops climbing.
//! - Simulcast costs: forwarding `(s, t)` costs the bitrate of spatial layer `s` summed
//!   over its temporal layers `0..=t`; a spatial layer with no measurement yet costs
//!   [`AllocatorConfig::default_layer_bps`], spread evenly over its temporal layers.
//! - Hysteresis: the allocation drops once the estimate is below
//!   [`AllocatorConfig::downgrade_pct`] % of the current allocation (audio included) —
//!   at once when the estimate itself fell (below that percentage of the estimate the
//!   allocation was committed at: a *bandwidth-driven* downgrade), else only when the
//!   allocation stayed over it for [`AllocatorConfig::cost_hold`] (its measured cost
//!   rose: a keyframe burst, often one this downtrack's own layer switch asked for,
//!   lifts a layer's 1-s rate for a second and must not undo the switch). It rises only
//!   when the estimate covers the higher allocation with
//!   [`AllocatorConfig::upgrade_margin_pct`] % for [`AllocatorConfig::upgrade_hold`] (what
//!   is committed then is, per track, the lowest rung offered during the hold). For
//!   [`AllocatorConfig::spatial_block`] after a bandwidth-driven downgrade, upgrades stay
//!   within the current spatial layer, unless the estimate grows past
//!   `upgrade_margin_pct` % of the one the dropped allocation was committed at (the
//!   link now carries more than when that layer was taken: the drop was transient).
//! - A new track, or one whose kind, priority, activity, layers or preference changed, is
//!   re-allocated at once (from its base rung up, other tracks capped at their current
//!   rung, all within the estimate), so base layers go out by priority.
//!
//! Deterministic and Sans-I/O: `now` is an input. Steady-state calls do not allocate
//! (the track table and the priority order are reused).

use std::cmp::Reverse;
use std::time::{Duration, Instant};

mod layers;
pub use layers::*;

/// What the control plane allows a downtrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preference {
    /// Highest spatial layer wanted (0..=2).
    pub max_spatial: u8,
    /// Highest temporal layer wanted (0..=3).
    pub max_temporal: u8,
    /// Forward nothing.
    pub paused: bool,
}

impl Default for Preference {
    /// Everything, not paused.
    fn default() -> Self {
        Self {
            max_spatial: (MAX_SPATIAL - 1) as u8,
            max_temporal: (MAX_TEMPORAL - 1) as u8,
            paused: false,
        }
    }
}

/// One downtrack as the allocator sees it. Fields are updated in place through
/// [`Allocator::input_mut`] or replaced with [`Allocator::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DowntrackInput {
    /// Audio or video.
    pub kind: MediaKind,
    /// 1–255, higher is served first (0 counts as 1).
    pub priority: u8,
    /// Whether the publisher's track is live (not muted, sending).
    pub active: bool,
    /// Spatial layers the publisher currently sends.
    pub layers: LayerSet,
    /// Temporal layers per spatial layer, 1..=4 (0 counts as 1).
    pub temporal_layers: u8,
    /// Measured bitrate in bit/s of the packets of spatial layer `s` with temporal id
    /// exactly `t`, at `[s][t]`; a spatial layer whose entries are all 0 counts as not
    /// measured yet. Audio uses `[0][0]`.
    pub bitrates: [[u64; MAX_TEMPORAL]; MAX_SPATIAL],
    /// The control plane's limits.
    pub preference: Preference,
}

impl DowntrackInput {
    /// An active audio track, priority 1, not measured yet.
    pub fn audio() -> Self {
        Self {
            kind: MediaKind::Audio,
            priority: 1,
            active: true,
            layers: LayerSet::first(1),
            temporal_layers: 1,
            bitrates: [[0; MAX_TEMPORAL]; MAX_SPATIAL],
            preference: Preference::default(),
        }
    }

    /// An active video track with these spatial layers and `temporal_layers` temporal
    /// layers each, priority 1, not measured yet.
    pub fn video(layers: LayerSet, temporal_layers: u8) -> Self {
        Self {
            kind: MediaKind::Video,
            priority: 1,
            active: true,
            layers,
            temporal_layers,
            bitrates: [[0; MAX_TEMPORAL]; MAX_SPATIAL],
            preference: Preference::default(),
        }
    }

    /// The same with this priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
}

/// Tuning of the [`Allocator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// An upgrade needs `estimate ≥ allocation × upgrade_margin_pct / 100` (default 110).
    pub upgrade_margin_pct: u32,
    /// A downgrade happens once `estimate < allocation × downgrade_pct / 100` (default 95).
    pub downgrade_pct: u32,
    /// How long an upgrade must stay covered before it is committed (default 2 s).
    pub upgrade_hold: Duration,
    /// How long the allocation must stay above the estimate, while the estimate itself
    /// did not fall, before it is dropped (default 2 s; see the module docs).
    pub cost_hold: Duration,
    /// No spatial upgrade for this long after a bandwidth-driven downgrade (default 10 s).
    pub spatial_block: Duration,
    /// Cost of a spatial layer not measured yet, bit/s (default 150k, 500k, 1.5M).
    pub default_layer_bps: [u64; MAX_SPATIAL],
    /// Cost of an audio track not measured yet, bit/s (default 40k).
    pub default_audio_bps: u64,
    /// The probe goal adds this percentage of the next step (default 120) ...
    pub probe_step_pct: u32,
    /// ... but at least this many bit/s (default 200k).
    pub probe_min_bps: u64,
    /// Every active video track keeps at least its base rung even when the estimate
    /// does not cover it, instead of [`PauseReason::Bandwidth`] (default false). A
    /// sender that pauses a track starves its own estimate of the media it measures:
    /// an SFU whose probes cannot lift the estimate (no padding stream) would never
    /// resume it.
    pub base_always: bool,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            upgrade_margin_pct: 110,
            downgrade_pct: 95,
            upgrade_hold: Duration::from_secs(2),
            cost_hold: Duration::from_secs(2),
            spatial_block: Duration::from_secs(10),
            default_layer_bps: [150_000, 500_000, 1_500_000],
            default_audio_bps: 40_000,
            probe_step_pct: 120,
            probe_min_bps: 200_000,
            base_always: false,
        }
    }
}

/// The outcome of one [`Allocator::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocationReport {
    /// Some target changed (see [`Allocator::changes`]).
    pub changed: bool,
    /// Some video track is below what its preference and layers allow.
    pub deficient: bool,
    /// Bit/s the committed targets use (audio included).
    pub expected_bps: u64,
    /// When deficient: the rate the pacer should probe to, `expected + max(probe_step_pct
    /// % of the next step, probe_min_bps)`.
    pub probe_goal_bps: Option<u64>,
    /// When deficient: the estimate the next step needs before it is taken, `(expected
    /// + step) × upgrade_margin_pct %`.
    pub upgrade_bps: Option<u64>,
    /// Bit/s of every track at the highest rung its preference and layers allow (audio
    /// included): more bandwidth than this is of no use to the peer.
    pub ceiling_bps: u64,
    /// Whether `ceiling_bps` is made of measured rates only. Before a video track's
    /// top layer is measured its cost is a configured default, which may be far below
    /// what the publisher sends: no cap may be derived from it.
    pub ceiling_known: bool,
}

/// The inputs whose change makes a track re-allocated at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    kind: MediaKind,
    priority: u8,
    active: bool,
    layers: LayerSet,
    temporal_layers: u8,
    preference: Preference,
}

impl Fingerprint {
    fn of(input: &DowntrackInput) -> Self {
        Self {
            kind: input.kind,
            priority: input.priority,
            active: input.active,
            layers: input.layers,
            temporal_layers: input.temporal_layers,
            preference: input.preference,
        }
    }
}

/// A rung or paused (`None`); `None` orders below every rung.
type Rung = Option<Layer>;

#[derive(Debug, Clone)]
struct Slot<K> {
    key: K,
    input: DowntrackInput,
    /// The fingerprint at the last update (`None` before the first).
    seen: Option<Fingerprint>,
    /// The committed target.
    target: Target,
    /// The target changed in the last update.
    changed: bool,
    // Per-update state, recomputed by `prepare`.
    /// A video track the allocator manages (active, not paused, has layers).
    managed: bool,
    /// Re-allocate at once (new or changed inputs).
    dirty: bool,
    /// Spatial layers the track may climb.
    ladder: LayerSet,
    /// Highest temporal layer it may climb to.
    top_t: u8,
    /// Cumulative cost of each rung, bit/s.
    costs: [[u64; MAX_TEMPORAL]; MAX_SPATIAL],
    /// Spatial layers whose costs are measured (the others' are the configured
    /// defaults).
    measured: LayerSet,
    /// Working rung of the current pass.
    work: Rung,
    /// Highest rung allowed in the current pass.
    cap: Rung,
    /// The track stopped climbing: its next rung did not fit.
    frozen: bool,
    /// Lowest rung offered since the pending upgrade began.
    pending: Rung,
}

impl<K> Slot<K> {
    fn cost(&self, r: Rung) -> u64 {
        r.map_or(0, |l| {
            self.costs[usize::from(l.spatial)][usize::from(l.temporal)]
        })
    }

    fn current(&self) -> Rung {
        self.target.layer()
    }

    fn base(&self) -> Rung {
        self.ladder.lowest().map(|s| Layer::new(s, 0))
    }

    fn top(&self) -> Rung {
        self.ladder.highest().map(|s| Layer::new(s, self.top_t))
    }

    /// The rung after `r` on this track's ladder.
    fn next(&self, r: Rung) -> Rung {
        match r {
            None => self.base(),
            Some(l) if l.temporal < self.top_t => Some(Layer::new(l.spatial, l.temporal + 1)),
            Some(l) => self
                .ladder
                .iter()
                .find(|&s| s > l.spatial)
                .map(|s| Layer::new(s, 0)),
        }
    }
}

/// The bandwidth allocator of one subscriber peer (see the module docs). `K` names a
/// downtrack.
#[derive(Debug, Clone)]
pub struct Allocator<K> {
    config: AllocatorConfig,
    slots: Vec<Slot<K>>,
    /// Managed slot indices by priority (reused every update).
    order: Vec<usize>,
    /// When the pending upgrade began.
    pending_since: Option<Instant>,
    /// No spatial upgrade before this instant ...
    spatial_block_until: Option<Instant>,
    /// ... unless the estimate reaches this.
    spatial_block_lift_bps: u64,
    /// The estimate the current allocation was committed at.
    commit_estimate: u64,
    /// Since when the allocation has been over the estimate without the estimate
    /// having fallen.
    over_since: Option<Instant>,
    last: AllocationReport,
}

impl<K: Copy + Eq> Allocator<K> {
    /// An allocator with no downtracks.
    pub fn new(config: AllocatorConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
            order: Vec::new(),
            pending_since: None,
            spatial_block_until: None,
            spatial_block_lift_bps: u64::MAX,
            commit_estimate: 0,
            over_since: None,
            last: AllocationReport::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Number of downtracks.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no downtrack.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a downtrack, or replaces the inputs of an existing one (its target stays
    /// until the next [`Allocator::update`]).
    pub fn insert(&mut self, key: K, input: DowntrackInput) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.key == key) {
            slot.input = input;
            return;
        }
        // One at a time: a subscriber has a few downtracks, and a doubling Vec would
        // hold room for four ~250-byte slots from the first (most are audio-only).
        self.slots.reserve_exact(1);
        self.slots.push(Slot {
            key,
            input,
            seen: None,
            target: Target::Paused(PauseReason::Inactive),
            changed: false,
            managed: false,
            dirty: true,
            ladder: LayerSet::EMPTY,
            top_t: 0,
            costs: [[0; MAX_TEMPORAL]; MAX_SPATIAL],
            measured: LayerSet::EMPTY,
            work: None,
            cap: None,
            frozen: false,
            pending: None,
        });
    }

    /// Removes a downtrack, returning its inputs. Its bandwidth is handed out by later
    /// updates (as an upgrade of the others).
    pub fn remove(&mut self, key: K) -> Option<DowntrackInput> {
        let idx = self.slots.iter().position(|s| s.key == key)?;
        self.pending_since = None;
        Some(self.slots.remove(idx).input)
    }

    /// The inputs of a downtrack, to update measured bitrates, layers, preference, ...
    pub fn input_mut(&mut self, key: K) -> Option<&mut DowntrackInput> {
        self.slots
            .iter_mut()
            .find(|s| s.key == key)
            .map(|s| &mut s.input)
    }

    /// The inputs of a downtrack.
    pub fn input(&self, key: K) -> Option<&DowntrackInput> {
        self.slots.iter().find(|s| s.key == key).map(|s| &s.input)
    }

    /// The committed target of a downtrack (paused as inactive before its first update).
    pub fn target(&self, key: K) -> Option<Target> {
        self.slots.iter().find(|s| s.key == key).map(|s| s.target)
    }

    /// All downtracks with their committed targets, in insertion order.
    pub fn targets(&self) -> impl Iterator<Item = (K, Target)> + '_ {
        self.slots.iter().map(|s| (s.key, s.target))
    }

    /// The downtracks whose target changed in the last update.
    pub fn changes(&self) -> impl Iterator<Item = (K, Target)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.changed)
            .map(|s| (s.key, s.target))
    }

    /// The report of the last update.
    pub fn last_report(&self) -> AllocationReport {
        self.last
    }

    /// Re-allocates for the send-side estimate `estimate_bps` at `now` (see the module
    /// docs for the rules).
    pub fn update(&mut self, now: Instant, estimate_bps: u64) -> AllocationReport {
        let cfg = &self.config;
        let mut audio_bps: u64 = 0;
        let mut any_dirty = false;
        self.order.clear();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let first = slot.seen.is_none();
            let fixed = prepare(slot, cfg);
            slot.changed = false;
            match fixed {
                Some(target) => {
                    if let (MediaKind::Audio, Target::Forward(_)) = (slot.input.kind, target) {
                        audio_bps = audio_bps.saturating_add(slot.costs[0][0]);
                    }
                    slot.changed = first || slot.target != target;
                    slot.target = target;
                }
                None => {
                    any_dirty |= slot.dirty;
                    self.order.push(i);
                }
            }
        }
        let slots = &self.slots;
        self.order
            .sort_unstable_by_key(|&i| (Reverse(slots[i].input.priority.max(1)), i));

        let current_bps = self.order.iter().fold(audio_bps, |acc, &i| {
            let s = &self.slots[i];
            if s.dirty {
                acc
            } else {
                acc.saturating_add(s.cost(s.current()))
            }
        });
        let pct = u128::from(self.config.downgrade_pct);
        let over = u128::from(estimate_bps) * 100 < u128::from(current_bps) * pct;
        let fell = u128::from(estimate_bps) * 100 < u128::from(self.commit_estimate) * pct;
        let downgrade = over
            && (fell
                || self
                    .over_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.config.cost_hold));
        self.over_since = match (over, fell) {
            (true, false) => self.over_since.or(Some(now)),
            _ => None,
        };
        if self.spatial_block_until.is_some() && estimate_bps >= self.spatial_block_lift_bps {
            self.spatial_block_until = None;
        }

        if any_dirty || downgrade {
            // Re-allocate from scratch within the estimate; settled tracks may only stay
            // or drop (a paused one may compete for its base rung), changed ones climb to
            // their top.
            for &i in &self.order {
                let s = &mut self.slots[i];
                s.work = None;
                s.frozen = false;
                s.cap = if s.dirty {
                    s.top()
                } else {
                    s.current().or_else(|| s.base())
                };
            }
            // Over the estimate but not dropping yet (a cost burst within its hold):
            // what settled tracks use now stays affordable.
            let budget = if over && !downgrade {
                estimate_bps.max(current_bps)
            } else {
                estimate_bps
            };
            self.climb(budget.saturating_sub(audio_bps));
            let dropped = self
                .order
                .iter()
                .any(|&i| !self.slots[i].dirty && self.slots[i].work < self.slots[i].current());
            if downgrade && fell && dropped {
                self.spatial_block_until = Some(now + self.config.spatial_block);
                let margin = u128::from(self.config.upgrade_margin_pct.max(100));
                let lift = u128::from(self.commit_estimate) * margin / 100;
                self.spatial_block_lift_bps = u64::try_from(lift).unwrap_or(u64::MAX);
            }
            if downgrade {
                self.over_since = None;
            }
            self.pending_since = None;
            self.commit_estimate = estimate_bps;
            self.commit_work();
        } else {
            let margin = u128::from(self.config.upgrade_margin_pct.max(100));
            let covered = u128::from(estimate_bps) * 100 / margin;
            let budget = u64::try_from(covered)
                .unwrap_or(u64::MAX)
                .saturating_sub(audio_bps);
            let blocked = self.spatial_block_until.is_some_and(|t| now < t);
            for &i in &self.order {
                let s = &mut self.slots[i];
                s.work = s.current();
                s.frozen = false;
                s.cap = s.top();
                if blocked {
                    let spatial = s.current().or_else(|| s.base()).map(|l| l.spatial);
                    let limit = spatial.map(|sp| Layer::new(sp, s.top_t));
                    s.cap = s.cap.min(limit);
                }
            }
            self.climb(budget);
            let offered = self
                .order
                .iter()
                .any(|&i| self.slots[i].work != self.slots[i].current());
            if !offered {
                self.pending_since = None;
            } else {
                let since = match self.pending_since {
                    Some(since) => {
                        for &i in &self.order {
                            let s = &mut self.slots[i];
                            s.pending = s.pending.min(s.work);
                        }
                        since
                    }
                    None => {
                        for &i in &self.order {
                            let s = &mut self.slots[i];
                            s.pending = s.work;
                        }
                        self.pending_since = Some(now);
                        now
                    }
                };
                if now.saturating_duration_since(since) >= self.config.upgrade_hold {
                    for &i in &self.order {
                        let s = &mut self.slots[i];
                        s.work = s.pending;
                    }
                    self.pending_since = None;
                    self.commit_estimate = estimate_bps;
                    self.commit_work();
                }
            }
        }

        for slot in &mut self.slots {
            slot.seen = Some(Fingerprint::of(&slot.input));
        }
        self.last = self.report(audio_bps);
        self.last
    }

    /// Base rungs by priority, then level by level while `budget` lasts, starting from
    /// each managed slot's `work` and never above its `cap`.
    fn climb(&mut self, budget: u64) {
        let slots = &mut self.slots;
        let mut used = self.order.iter().fold(0u64, |acc, &i| {
            acc.saturating_add(slots[i].cost(slots[i].work))
        });
        let try_rung = |s: &mut Slot<K>, rung: Rung, used: &mut u64| {
            let after = used
                .saturating_sub(s.cost(s.work))
                .saturating_add(s.cost(rung));
            if after <= budget {
                s.work = rung;
                *used = after;
            } else {
                s.frozen = true;
            }
        };
        let base_always = self.config.base_always;
        for &i in &self.order {
            let s = &mut slots[i];
            let base = s.base();
            if s.work.is_none() && base.is_some() && base <= s.cap {
                if base_always {
                    used = used.saturating_add(s.cost(base));
                    s.work = base;
                } else {
                    try_rung(s, base, &mut used);
                }
            }
        }
        for spatial in 0..MAX_SPATIAL as u8 {
            for temporal in 0..MAX_TEMPORAL as u8 {
                let level = Some(Layer::new(spatial, temporal));
                for &i in &self.order {
                    let s = &mut slots[i];
                    if s.frozen
                        || s.work.is_none()
                        || s.work >= level
                        || level > s.cap
                        || !s.ladder.contains(spatial)
                        || temporal > s.top_t
                    {
                        continue;
                    }
                    try_rung(s, level, &mut used);
                }
            }
        }
    }

    /// Makes every managed slot's `work` its committed target.
    fn commit_work(&mut self) {
        for &i in &self.order {
            let s = &mut self.slots[i];
            let target = match s.work {
                Some(l) => Target::Forward(l),
                None => Target::Paused(PauseReason::Bandwidth),
            };
            s.changed = s.seen.is_none() || s.target != target;
            s.target = target;
        }
    }

    fn report(&self, audio_bps: u64) -> AllocationReport {
        let mut expected = audio_bps;
        let mut ceiling = audio_bps;
        let mut ceiling_known = true;
        let mut next_step: Option<(bool, Rung, u64)> = None;
        for &i in &self.order {
            let s = &self.slots[i];
            let cur = s.current();
            expected = expected.saturating_add(s.cost(cur));
            ceiling = ceiling.saturating_add(s.cost(s.top()));
            if s.top().is_some_and(|l| !s.measured.contains(l.spatial)) {
                ceiling_known = false;
            }
            if cur < s.top() {
                let next = s.next(cur);
                let step = s.cost(next).saturating_sub(s.cost(cur));
                let rank = (cur.is_some(), next);
                if next_step.is_none_or(|(a, b, _)| rank < (a, b)) {
                    next_step = Some((rank.0, rank.1, step));
                }
            }
        }
        let changed = self.slots.iter().any(|s| s.changed);
        let probe_goal_bps = next_step.map(|(_, _, step)| {
            let extra = u128::from(step) * u128::from(self.config.probe_step_pct) / 100;
            let extra = u64::try_from(extra)
                .unwrap_or(u64::MAX)
                .max(self.config.probe_min_bps);
            expected.saturating_add(extra)
        });
        let margin = u128::from(self.config.upgrade_margin_pct.max(100));
        let upgrade_bps = next_step.map(|(_, _, step)| {
            let needed = u128::from(expected.saturating_add(step)) * margin / 100;
            u64::try_from(needed).unwrap_or(u64::MAX)
        });
        AllocationReport {
            changed,
            deficient: next_step.is_some(),
            expected_bps: expected,
            probe_goal_bps,
            upgrade_bps,
            ceiling_bps: ceiling,
            ceiling_known,
        }
    }
}

/// Recomputes a slot's ladder, costs and dirtiness. Returns the fixed target of a track
/// the allocator does not manage, `None` for a managed one.
fn prepare<K>(slot: &mut Slot<K>, cfg: &AllocatorConfig) -> Option<Target> {
    let input = &slot.input;
    slot.dirty = slot.seen != Some(Fingerprint::of(input));
    slot.managed = false;
    slot.ladder = LayerSet::EMPTY;
    slot.top_t = 0;
    slot.costs = [[0; MAX_TEMPORAL]; MAX_SPATIAL];
    if input.kind == MediaKind::Audio {
        slot.costs[0][0] = match input.bitrates[0][0] {
            0 => cfg.default_audio_bps,
            bps => bps,
        };
        return Some(if input.preference.paused {
            Target::Paused(PauseReason::Preference)
        } else if !input.active {
            Target::Paused(PauseReason::Inactive)
        } else {
            Target::Forward(Layer::new(0, 0))
        });
    }
    let temporal_count = input.temporal_layers.clamp(1, MAX_TEMPORAL as u8);
    slot.top_t = (temporal_count - 1).min(input.preference.max_temporal);
    let wanted = LayerSet::first(input.preference.max_spatial.saturating_add(1));
    let within = LayerSet::from_bits(input.layers.bits() & wanted.bits());
    // Nothing at or below the preferred layer: the lowest layer sent is the only rung.
    slot.ladder = if within.is_empty() {
        input
            .layers
            .lowest()
            .map_or(LayerSet::EMPTY, |s| LayerSet::from_bits(1 << s))
    } else {
        within
    };
    let count = usize::from(temporal_count);
    let mut known = 0u8;
    for (s, ((costs, rates), default)) in slot
        .costs
        .iter_mut()
        .zip(&input.bitrates)
        .zip(cfg.default_layer_bps)
        .enumerate()
    {
        let measured = rates[..count].iter().any(|&r| r > 0);
        if measured {
            known |= 1 << s;
        }
        let mut sum: u64 = 0;
        for (t, (cost, &rate)) in costs.iter_mut().zip(rates).enumerate() {
            *cost = if t >= count {
                // Above the layers sent: as much as the highest one.
                sum
            } else if measured {
                sum = sum.saturating_add(rate);
                sum
            } else {
                sum = default.saturating_mul(t as u64 + 1) / u64::from(temporal_count);
                sum
            };
        }
    }
    slot.measured = LayerSet::from_bits(known);
    if input.preference.paused {
        return Some(Target::Paused(PauseReason::Preference));
    }
    if !input.active || slot.ladder.is_empty() {
        return Some(Target::Paused(PauseReason::Inactive));
    }
    slot.managed = true;
    None
}

/// The spatial layers of `available` that none of `targets` (all downtracks of one
/// publisher track) forwards: the publisher may stop encoding them.
pub fn unused_layers(available: LayerSet, targets: impl IntoIterator<Item = Target>) -> LayerSet {
    let mut unused = available;
    for target in targets {
        if let Target::Forward(l) = target {
            unused.remove(l.spatial);
        }
    }
    unused
}

pub mod drive;
pub use drive::{RateCommand, RateDrive};

#[cfg(test)]
mod tests;
