use super::*;

const MS: Duration = Duration::from_millis(1);
const AUDIO: u32 = 0;
const A: u32 = 1;
const B: u32 = 2;

fn fwd(s: u8, t: u8) -> Target {
    Target::Forward(Layer::new(s, t))
}

/// Audio measured at 50 kbit/s, two 3-layer video tracks (1 temporal layer each) at
/// the default costs 150k / 500k / 1.5M.
fn peer(prio_a: u8, prio_b: u8) -> Allocator<u32> {
    let mut al = Allocator::new(AllocatorConfig::default());
    let mut audio = DowntrackInput::audio();
    audio.bitrates[0][0] = 50_000;
    al.insert(AUDIO, audio);
    al.insert(
        A,
        DowntrackInput::video(LayerSet::ALL, 1).with_priority(prio_a),
    );
    al.insert(
        B,
        DowntrackInput::video(LayerSet::ALL, 1).with_priority(prio_b),
    );
    al
}

fn targets(al: &Allocator<u32>) -> (Target, Target, Target) {
    (
        al.target(AUDIO).unwrap(),
        al.target(A).unwrap(),
        al.target(B).unwrap(),
    )
}

#[test]
fn one_megabit_goes_to_audio_then_base_layers_then_steps() {
    let t0 = Instant::now();
    let mut al = peer(1, 1);
    let r = al.update(t0, 1_000_000);
    // 50k audio, 150k + 150k bases, then A climbs to 500k; B's step to 500k would
    // need 1.05M.
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(0, 0)));
    assert!(r.changed);
    assert_eq!(al.changes().count(), 3);
    assert_eq!(r.expected_bps, 700_000);
    assert!(r.deficient);
    // Next step: B 150k → 500k (350k); 120 % of it is 420k.
    assert_eq!(r.probe_goal_bps, Some(1_120_000));
    // Taking it needs 1.05M × 110 %; everything would be 50k + 2 × 1.5M.
    assert_eq!(r.upgrade_bps, Some(1_155_000));
    assert_eq!(r.ceiling_bps, 3_050_000);

    // Tight: both bases fit, nothing more.
    let mut al = peer(1, 1);
    al.update(t0, 360_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(0, 0)));
    // Tighter: only one base; audio is never cut.
    let mut al = peer(1, 1);
    al.update(t0, 250_000);
    assert_eq!(
        targets(&al),
        (fwd(0, 0), fwd(0, 0), Target::Paused(PauseReason::Bandwidth))
    );
    let mut al = peer(1, 1);
    let r = al.update(t0, 0);
    assert_eq!(al.target(AUDIO), Some(fwd(0, 0)));
    assert_eq!(al.target(A), Some(Target::Paused(PauseReason::Bandwidth)));
    assert_eq!(r.expected_bps, 50_000);
    // The next step is a base layer (150k): goal = 50k + max(180k, 200k).
    assert_eq!(r.probe_goal_bps, Some(250_000));
}

#[test]
fn priority_decides_who_is_served_first() {
    let t0 = Instant::now();
    let mut al = peer(1, 200);
    al.update(t0, 1_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(1, 0)));
    let mut al = peer(1, 200);
    al.update(t0, 250_000);
    assert_eq!(
        targets(&al),
        (fwd(0, 0), Target::Paused(PauseReason::Bandwidth), fwd(0, 0))
    );
    // Measured rates replace the defaults: B's layer 1 measured cheap.
    let mut al = peer(1, 200);
    al.input_mut(B).unwrap().bitrates = [[100_000, 0, 0, 0], [200_000, 0, 0, 0], [0; 4]];
    al.update(t0, 1_000_000);
    // 50k + A 150k + B 200k = 400k; A → 500k (750k); B → 1.5M default does not fit.
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(1, 0)));
}

#[test]
fn estimate_drop_downgrades_at_once() {
    let t0 = Instant::now();
    let mut al = peer(1, 1);
    al.update(t0, 3_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(2, 0), fwd(1, 0)));
    assert_eq!(al.last_report().expected_bps, 2_050_000);
    // 97 % of the allocation: kept.
    let r = al.update(t0 + MS * 100, 1_990_000);
    assert!(!r.changed);
    let r = al.update(t0 + MS * 200, 1_000_000);
    assert!(r.changed);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(0, 0)));
    let changed: Vec<u32> = al.changes().map(|(k, _)| k).collect();
    assert_eq!(changed, [A, B]);
}

#[test]
fn estimate_rise_upgrades_only_after_the_hold() {
    let t0 = Instant::now();
    let mut al = peer(1, 1);
    al.update(t0, 1_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(0, 0)));
    let t1 = t0 + MS * 500;
    let mut t = t1;
    while t < t1 + MS * 2000 {
        let r = al.update(t, 3_000_000);
        assert!(!r.changed, "upgraded early at {:?}", t - t1);
        t += MS * 100;
    }
    let r = al.update(t1 + MS * 2000, 3_000_000);
    assert!(r.changed);
    // 3M / 1.1 = 2.727M covered: A → 1.5M, B → 500k.
    assert_eq!(targets(&al), (fwd(0, 0), fwd(2, 0), fwd(1, 0)));
    assert!(r.deficient);

    // A dip below the margin during the hold restarts it.
    let mut al = peer(1, 1);
    al.update(t0, 1_000_000);
    al.update(t0 + MS * 100, 3_000_000);
    al.update(t0 + MS * 1500, 1_000_000);
    let r = al.update(t0 + MS * 2200, 3_000_000);
    assert!(!r.changed);
    let r = al.update(t0 + MS * 4100, 3_000_000);
    assert!(!r.changed);
    let r = al.update(t0 + MS * 4200, 3_000_000);
    assert!(r.changed);
}

#[test]
fn no_flapping_around_a_step_boundary() {
    // Allocation costs of the steps of this peer (audio 50k, A/B 150k/500k/1.5M).
    for boundary in [350_000u64, 700_000, 1_050_000, 2_050_000, 3_050_000] {
        for (period_ms, start_pct) in [(100u32, 100u64), (100, 95), (2_500, 100), (2_500, 95)] {
            let t0 = Instant::now();
            let mut al = peer(1, 1);
            al.update(t0, boundary * start_pct / 100);
            let mut changes = 0;
            for step in 1..600u32 {
                let now = t0 + MS * (100 * step);
                let high = (100 * step / period_ms) % 2 == 0;
                let estimate = if high {
                    boundary * 105 / 100
                } else {
                    boundary * 95 / 100
                };
                if al.update(now, estimate).changed {
                    changes += 1;
                }
            }
            assert!(
                changes <= 1,
                "{changes} changes around {boundary} (period {period_ms} ms)"
            );
        }
    }
}

#[test]
fn spatial_upgrades_wait_after_a_bandwidth_downgrade() {
    let t0 = Instant::now();
    let mut al = Allocator::new(AllocatorConfig::default());
    // One video track, 2 temporal layers: rungs cost 75k,150k / 250k,500k / 750k,1.5M.
    al.insert(A, DowntrackInput::video(LayerSet::ALL, 2));
    al.update(t0, 2_000_000);
    assert_eq!(al.target(A), Some(fwd(2, 1)));
    al.update(t0 + MS * 100, 400_000);
    assert_eq!(al.target(A), Some(fwd(1, 0)));
    // Plenty again: after the hold only the temporal layer comes back, for the
    // whole block (10 s from the downgrade).
    for step in 2..=101u32 {
        al.update(t0 + MS * (100 * step), 2_000_000);
    }
    assert_eq!(al.target(A), Some(fwd(1, 1)));
    // After the block the spatial upgrade follows its hold.
    for step in 102..140u32 {
        al.update(t0 + MS * (100 * step), 2_000_000);
    }
    assert_eq!(al.target(A), Some(fwd(2, 1)));
}

#[test]
fn preference_caps_and_pauses() {
    let t0 = Instant::now();
    let mut al = peer(1, 1);
    al.input_mut(A).unwrap().preference.max_spatial = 0;
    let r = al.update(t0, 5_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(2, 0)));
    assert!(!r.deficient);
    assert_eq!(r.probe_goal_bps, None);

    // Paused: forwards nothing at once and costs nothing; B gets the room as an
    // upgrade, after the hold.
    let mut al = peer(1, 1);
    al.update(t0, 1_000_000);
    al.input_mut(A).unwrap().preference.paused = true;
    let r = al.update(t0 + MS * 100, 1_000_000);
    assert!(r.changed);
    assert_eq!(
        targets(&al),
        (
            fwd(0, 0),
            Target::Paused(PauseReason::Preference),
            fwd(0, 0)
        )
    );
    al.update(t0 + MS * 2000, 1_000_000);
    assert_eq!(al.target(B), Some(fwd(0, 0)));
    al.update(t0 + MS * 2100, 1_000_000);
    assert_eq!(al.target(B), Some(fwd(1, 0)));
    // Audio can be paused by preference too; inactive tracks are paused as such.
    al.input_mut(AUDIO).unwrap().preference.paused = true;
    al.input_mut(B).unwrap().active = false;
    let r = al.update(t0 + MS * 2200, 1_000_000);
    assert_eq!(
        targets(&al),
        (
            Target::Paused(PauseReason::Preference),
            Target::Paused(PauseReason::Preference),
            Target::Paused(PauseReason::Inactive)
        )
    );
    assert_eq!(r.expected_bps, 0);

    // Max temporal layer.
    let mut al = Allocator::new(AllocatorConfig::default());
    let mut v = DowntrackInput::video(LayerSet::ALL, 3);
    v.preference.max_temporal = 1;
    al.insert(A, v);
    al.update(t0, 10_000_000);
    assert_eq!(al.target(A), Some(fwd(2, 1)));

    // Only a layer above the preferred one is sent: it is used.
    let mut al = Allocator::new(AllocatorConfig::default());
    let mut v = DowntrackInput::video(LayerSet::from_bits(0b100), 1);
    v.preference.max_spatial = 1;
    al.insert(A, v);
    al.update(t0, 10_000_000);
    assert_eq!(al.target(A), Some(fwd(2, 0)));
}

#[test]
fn new_track_gets_its_base_at_once() {
    let t0 = Instant::now();
    let mut al = peer(1, 1);
    al.update(t0, 1_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(0, 0)));
    al.insert(3, DowntrackInput::video(LayerSet::ALL, 1).with_priority(50));
    let r = al.update(t0 + MS * 100, 1_000_000);
    assert!(r.changed);
    // The new, higher-priority track takes its base and then the step A had.
    assert_eq!(al.target(3), Some(fwd(1, 0)));
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(0, 0)));
    assert!(al.remove(3).is_some());
    assert_eq!(al.len(), 3);
}

#[test]
fn measured_temporal_layers_cost_cumulatively() {
    let t0 = Instant::now();
    let mut al = Allocator::new(AllocatorConfig::default());
    // Layer 0 measured per temporal id: TL0 100k, TL1 50k, TL2 50k (200k in all);
    // layer 1 not measured: 500k spread over 3 temporal layers.
    let mut v = DowntrackInput::video(LayerSet::first(2), 3);
    v.bitrates[0] = [100_000, 50_000, 50_000, 0];
    al.insert(A, v);
    al.update(t0, 160_000);
    assert_eq!(al.target(A), Some(fwd(0, 1)));
    let mut al2 = Allocator::new(AllocatorConfig::default());
    al2.insert(A, al.input_mut(A).unwrap().clone());
    al2.update(t0, 340_000);
    // (1, 0) costs 500k / 3 = 166k < 200k of (0, 2), so it fits; (1, 1) = 333k too.
    assert_eq!(al2.target(A), Some(fwd(1, 1)));
    let r = al2.update(t0 + MS * 100, 340_000);
    assert!(r.deficient);
    // Next step (1, 2): 500k − 333k = 166k → the 200k minimum.
    assert_eq!(r.expected_bps, 333_333);
    assert_eq!(r.probe_goal_bps, Some(533_333));
}

#[test]
fn unused_layers_are_those_nobody_forwards() {
    let targets = [fwd(0, 2), fwd(2, 0), Target::Paused(PauseReason::Bandwidth)];
    assert_eq!(
        unused_layers(LayerSet::ALL, targets),
        LayerSet::from_bits(0b010)
    );
    assert_eq!(unused_layers(LayerSet::ALL, []), LayerSet::ALL);
    assert_eq!(
        unused_layers(LayerSet::from_bits(0b011), [fwd(0, 0), fwd(1, 1)]),
        LayerSet::EMPTY
    );
    let mut set = LayerSet::EMPTY;
    set.insert(1);
    set.insert(7);
    assert_eq!(set.iter().collect::<Vec<_>>(), [1]);
    assert_eq!((set.lowest(), set.highest()), (Some(1), Some(1)));
}

#[test]
fn base_always_keeps_every_base_layer_when_the_estimate_is_short() {
    let t0 = Instant::now();
    let config = AllocatorConfig {
        base_always: true,
        ..AllocatorConfig::default()
    };
    let mut al = peer(1, 1);
    al.config = config;
    let r = al.update(t0, 0);
    // Audio and both bases though nothing fits; still deficient, the next step is a
    // spatial one.
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(0, 0)));
    assert_eq!(r.expected_bps, 350_000);
    assert!(r.deficient);
    // A drop later keeps the bases too (and climbing still needs the estimate).
    al.update(t0 + MS * 100, 2_000_000);
    al.update(t0 + MS * 2200, 2_000_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(1, 0), fwd(1, 0)));
    al.update(t0 + MS * 2300, 100_000);
    assert_eq!(targets(&al), (fwd(0, 0), fwd(0, 0), fwd(0, 0)));
    // Without it, the shortest estimate pauses video.
    let mut al = peer(1, 1);
    al.update(t0, 100_000);
    assert_eq!(
        targets(&al),
        (
            fwd(0, 0),
            Target::Paused(PauseReason::Bandwidth),
            Target::Paused(PauseReason::Bandwidth)
        )
    );
}

/// One video track (1 temporal layer) whose layers are measured at 150k / 500k / 1.5M,
/// settled on layer 1 at a 700k estimate.
fn settled_on_layer_1(t0: Instant) -> Allocator<u32> {
    let mut al = Allocator::new(AllocatorConfig::default());
    let mut v = DowntrackInput::video(LayerSet::ALL, 1);
    v.bitrates = [[150_000, 0, 0, 0], [500_000, 0, 0, 0], [1_500_000, 0, 0, 0]];
    al.insert(A, v);
    al.update(t0, 700_000);
    assert_eq!(al.target(A), Some(fwd(1, 0)));
    al
}

/// A keyframe burst lifts the forwarded layer's 1-s rate above the estimate for a
/// second (the burst the switch to it asked for): the estimate did not fall, so the
/// downtrack keeps its layer. A rise that lasts the whole hold does drop it — without
/// blocking spatial upgrades, as the link did not shrink.
#[test]
fn a_keyframe_burst_on_the_forwarded_layer_does_not_undo_the_switch() {
    let t0 = Instant::now();
    let mut al = settled_on_layer_1(t0);
    let rate = |al: &mut Allocator<u32>, bps: u64| {
        al.input_mut(A).unwrap().bitrates[1][0] = bps;
    };
    rate(&mut al, 900_000);
    for step in 1..=10u32 {
        let r = al.update(t0 + MS * (100 * step), 700_000);
        assert!(!r.changed, "dropped by a burst at {} ms", 100 * step);
    }
    rate(&mut al, 500_000);
    for step in 11..=40u32 {
        assert!(!al.update(t0 + MS * (100 * step), 700_000).changed);
    }
    assert_eq!(al.target(A), Some(fwd(1, 0)));

    // The publisher really sends more on layer 1: dropped after the hold.
    rate(&mut al, 900_000);
    let t1 = t0 + MS * 4100;
    assert!(!al.update(t1, 700_000).changed);
    assert!(!al.update(t1 + MS * 1900, 700_000).changed);
    assert!(al.update(t1 + MS * 2000, 700_000).changed);
    assert_eq!(al.target(A), Some(fwd(0, 0)));
    // Cheap again: back up after the upgrade hold, no 10-s spatial block.
    rate(&mut al, 500_000);
    let t2 = t1 + MS * 2100;
    for step in 0..=21u32 {
        al.update(t2 + MS * (100 * step), 700_000);
    }
    assert_eq!(al.target(A), Some(fwd(1, 0)));
}

/// A drop of the estimate still downgrades at once and blocks spatial upgrades; the
/// block ends early once the estimate exceeds, with the upgrade margin, the one the
/// dropped layer was taken at (the drop was transient: the link now carries more).
#[test]
fn the_spatial_block_ends_when_the_estimate_outgrows_the_one_the_layer_was_taken_at() {
    let t0 = Instant::now();
    let mut al = settled_on_layer_1(t0);
    assert!(al.update(t0 + MS * 100, 300_000).changed);
    assert_eq!(al.target(A), Some(fwd(0, 0)));
    // Back to the estimate the layer was taken at: still blocked (10 s).
    for step in 2..=60u32 {
        al.update(t0 + MS * (100 * step), 700_000);
    }
    assert_eq!(al.target(A), Some(fwd(0, 0)));
    // More than 110 % of it: the block is lifted, the upgrade follows its hold.
    for step in 61..=82u32 {
        al.update(t0 + MS * (100 * step), 800_000);
    }
    assert_eq!(al.target(A), Some(fwd(1, 0)));
}

#[test]
fn the_ceiling_is_known_only_once_every_top_layer_is_measured() {
    // One video layer, not measured yet: its cost is the configured default (150k),
    // far below the 2 Mbit/s the publisher may send, so the ceiling is a guess.
    let t0 = Instant::now();
    let mut al = Allocator::new(AllocatorConfig::default());
    let mut audio = DowntrackInput::audio();
    audio.bitrates[0][0] = 50_000;
    al.insert(AUDIO, audio);
    al.insert(A, DowntrackInput::video(LayerSet::first(1), 1));
    let r = al.update(t0, 5_000_000);
    assert_eq!(r.ceiling_bps, 200_000);
    assert!(!r.ceiling_known);
    // Measured: the ceiling is the measured rate.
    if let Some(v) = al.input_mut(A) {
        v.bitrates[0][0] = 2_000_000;
    }
    let r = al.update(t0 + 300 * MS, 5_000_000);
    assert_eq!(r.ceiling_bps, 2_050_000);
    assert!(r.ceiling_known);
    // Three layers with only the lowest measured: the top is still a default.
    al.insert(B, DowntrackInput::video(LayerSet::ALL, 1));
    if let Some(v) = al.input_mut(B) {
        v.bitrates[0][0] = 150_000;
    }
    let r = al.update(t0 + 600 * MS, 5_000_000);
    assert!(!r.ceiling_known);
}
