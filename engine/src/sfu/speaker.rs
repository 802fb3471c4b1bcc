//! Active-speaker detection from RFC 6464 audio levels.
//!
//! Every audio packet of a publisher track carries a level in -dBov (0 = loudest, 127 =
//! silence) and, optionally, a voice-activity flag. [`SpeakerDetector::record`] turns it
//! into a loudness above a silence floor ([`SpeakerConfig::silence_dbov`]; a packet
//! flagged as no voice counts as silent) and sums it into fixed time buckets per track.
//! A track's activity score is the mean over the window's buckets of each bucket's mean
//! loudness (an empty bucket counts as silent, so discontinuous transmission decays the
//! score like silence does), in hundredths of a dB above the floor.
//!
//! [`SpeakerDetector::update`] ranks the tracks whose score reaches
//! [`SpeakerConfig::min_score`] (a track already listed gets
//! [`SpeakerConfig::stickiness_pct`] % added for the comparison) and keeps the first
//! [`SpeakerConfig::max_speakers`]. The published ordered list only changes when a
//! different ordered list has been ranked at every update for
//! [`SpeakerConfig::debounce`]; then `update` reports the change. No clock reads: `now`
//! is an input. `record` does not allocate.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::rate::{bucket_index, duration_ns};

/// Buckets a window is split into.
pub const SPEAKER_BUCKETS: usize = 10;
/// Ring slots: the window's buckets plus the one being filled.
const SLOTS: usize = SPEAKER_BUCKETS + 1;
/// RFC 6464: the quietest level.
pub const SILENT_DBOV: u8 = 127;

/// Tuning of the [`SpeakerDetector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// The smoothing window (default 1.5 s).
    pub window: Duration,
    /// Levels at or above this -dBov count as silence (default 70).
    pub silence_dbov: u8,
    /// Minimum score, in hundredths of a dB above the floor, to count as speaking
    /// (default 500).
    pub min_score: u32,
    /// How long a new ranking must hold before it is published (default 500 ms).
    pub debounce: Duration,
    /// How many speakers are published (default 3).
    pub max_speakers: usize,
    /// Bonus of an already published speaker when ranking, percent (default 10).
    pub stickiness_pct: u32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(1500),
            silence_dbov: 70,
            min_score: 500,
            debounce: Duration::from_millis(500),
            max_speakers: 3,
            stickiness_pct: 10,
        }
    }
}

#[derive(Debug, Clone)]
struct Track<K> {
    key: K,
    /// Summed loudness (dB above the floor) per bucket.
    loud: [u32; SLOTS],
    /// Packets per bucket.
    count: [u32; SLOTS],
    /// Absolute bucket index + 1 each slot holds; 0 = unused.
    stamp: [u64; SLOTS],
    /// Newest bucket written.
    newest: u64,
}

impl<K> Track<K> {
    fn bucket_mean(&self, b: u64) -> u32 {
        let slot = (b % SLOTS as u64) as usize;
        if self.stamp[slot] == b + 1 && self.count[slot] > 0 {
            self.loud[slot].saturating_mul(100) / self.count[slot]
        } else {
            0
        }
    }

    fn has_samples(&self, b: u64) -> bool {
        let slot = (b % SLOTS as u64) as usize;
        self.stamp[slot] == b + 1 && self.count[slot] > 0
    }

    /// The score at bucket `cur`: the window ends at `cur` when it has samples already,
    /// else at the bucket before.
    fn score(&self, cur: u64) -> u32 {
        let cur = cur.max(self.newest);
        let end = if self.has_samples(cur) {
            cur
        } else {
            match cur.checked_sub(1) {
                Some(end) => end,
                None => return 0,
            }
        };
        let start = end.saturating_sub(SPEAKER_BUCKETS as u64 - 1);
        let sum: u64 = (start..=end).map(|b| u64::from(self.bucket_mean(b))).sum();
        u32::try_from(sum / SPEAKER_BUCKETS as u64).unwrap_or(u32::MAX)
    }
}

/// Active-speaker detection over the audio tracks of a room (see the module docs). `K`
/// names a publisher audio track.
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    config: SpeakerConfig,
    width_ns: u64,
    epoch: Option<Instant>,
    tracks: Vec<Track<K>>,
    /// The published ordered list.
    published: Vec<K>,
    /// The ranking of the last update, waiting to be published.
    pending: Vec<K>,
    pending_since: Option<Instant>,
    /// Scratch: this update's ranking (track indices, then keys).
    ranked: Vec<(u64, usize, usize)>,
    candidate: Vec<K>,
    /// A published speaker was removed: report a change at the next update.
    removed: bool,
}

impl<K: Copy + Eq> SpeakerDetector<K> {
    /// A detector with no tracks.
    pub fn new(config: SpeakerConfig) -> Self {
        Self {
            width_ns: (duration_ns(config.window) / SPEAKER_BUCKETS as u64).max(1),
            config,
            epoch: None,
            tracks: Vec::new(),
            published: Vec::new(),
            pending: Vec::new(),
            pending_since: None,
            ranked: Vec::new(),
            candidate: Vec::new(),
            removed: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// Tracks followed (for the shard's table sizes in `engine.stats`).
    pub fn followed(&self) -> usize {
        self.tracks.len()
    }

    /// Starts following an audio track (no-op when already followed).
    pub fn add_track(&mut self, key: K) {
        if self.tracks.iter().any(|t| t.key == key) {
            return;
        }
        self.tracks.push(Track {
            key,
            loud: [0; SLOTS],
            count: [0; SLOTS],
            stamp: [0; SLOTS],
            newest: 0,
        });
    }

    /// Stops following a track; if it was published, it leaves the list at once and the
    /// next [`SpeakerDetector::update`] reports a change. Returns whether it was followed.
    pub fn remove_track(&mut self, key: K) -> bool {
        let Some(idx) = self.tracks.iter().position(|t| t.key == key) else {
            return false;
        };
        self.tracks.remove(idx);
        if let Some(pos) = self.published.iter().position(|&k| k == key) {
            self.published.remove(pos);
            self.removed = true;
        }
        self.pending_since = None;
        true
    }

    /// Counts one audio packet of `key` with RFC 6464 `level` (-dBov, values above 127
    /// read as 127) and its voice-activity flag, if the extension carries one. Returns
    /// false for a track not followed. Does not allocate.
    pub fn record(&mut self, key: K, level: u8, voice: Option<bool>, now: Instant) -> bool {
        let epoch = *self.epoch.get_or_insert(now);
        let idx = bucket_index(epoch, self.width_ns, now);
        let loud = if voice == Some(false) {
            0
        } else {
            u32::from(
                self.config
                    .silence_dbov
                    .saturating_sub(level.min(SILENT_DBOV)),
            )
        };
        let Some(track) = self.tracks.iter_mut().find(|t| t.key == key) else {
            return false;
        };
        if idx.saturating_add(SLOTS as u64) <= track.newest {
            return true;
        }
        let slot = (idx % SLOTS as u64) as usize;
        if track.stamp[slot] != idx + 1 {
            track.stamp[slot] = idx + 1;
            track.loud[slot] = 0;
            track.count[slot] = 0;
        }
        track.loud[slot] = track.loud[slot].saturating_add(loud);
        track.count[slot] = track.count[slot].saturating_add(1);
        track.newest = track.newest.max(idx);
        true
    }

    /// The activity score of a track at `now` (hundredths of a dB above the silence
    /// floor, averaged over the window).
    pub fn score(&self, key: K, now: Instant) -> Option<u32> {
        let track = self.tracks.iter().find(|t| t.key == key)?;
        Some(match self.epoch {
            Some(epoch) => track.score(bucket_index(epoch, self.width_ns, now)),
            None => 0,
        })
    }

    /// Re-ranks at `now`; returns true when the published ordered list changed (see
    /// [`SpeakerDetector::top`]).
    pub fn update(&mut self, now: Instant) -> bool {
        let mut changed = std::mem::take(&mut self.removed);
        let epoch = *self.epoch.get_or_insert(now);
        let cur = bucket_index(epoch, self.width_ns, now);
        self.ranked.clear();
        for (i, track) in self.tracks.iter().enumerate() {
            let score = track.score(cur);
            if score < self.config.min_score.max(1) {
                continue;
            }
            let listed = self.published.iter().position(|&k| k == track.key);
            let bonus = if listed.is_some() {
                100 + u64::from(self.config.stickiness_pct)
            } else {
                100
            };
            let effective = u64::from(score) * bonus;
            self.ranked
                .push((effective, listed.unwrap_or(usize::MAX), i));
        }
        self.ranked
            .sort_unstable_by_key(|&(effective, listed, i)| (Reverse(effective), listed, i));
        self.candidate.clear();
        let tracks = &self.tracks;
        self.candidate.extend(
            self.ranked
                .iter()
                .take(self.config.max_speakers)
                .map(|&(_, _, i)| tracks[i].key),
        );

        if self.candidate == self.published {
            self.pending_since = None;
        } else if self.pending_since.is_some() && self.pending == self.candidate {
            let since = self.pending_since.unwrap_or(now);
            if now.saturating_duration_since(since) >= self.config.debounce {
                self.published.clear();
                self.published.extend_from_slice(&self.candidate);
                self.pending_since = None;
                changed = true;
            }
        } else {
            self.pending.clear();
            self.pending.extend_from_slice(&self.candidate);
            self.pending_since = Some(now);
        }
        changed
    }

    /// The first `n` published speakers, loudest first.
    pub fn top(&self, n: usize) -> &[K] {
        &self.published[..n.min(self.published.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds 20 ms packets of the given levels (None = no packet) for `ms` starting at
    /// `*t`, calling `update` after each; returns the instants at which it reported a
    /// change.
    fn run(
        d: &mut SpeakerDetector<u32>,
        t: &mut Instant,
        ms: u32,
        levels: &[(u32, Option<u8>)],
    ) -> Vec<Instant> {
        let mut changes = Vec::new();
        for _ in 0..ms / 20 {
            for &(key, level) in levels {
                if let Some(level) = level {
                    d.record(key, level, None, *t);
                }
            }
            if d.update(*t) {
                changes.push(*t);
            }
            *t += MS * 20;
        }
        changes
    }

    #[test]
    fn speakers_are_ordered_by_loudness() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        for k in 1..=4 {
            d.add_track(k);
        }
        let mut t = Instant::now();
        let changes = run(
            &mut d,
            &mut t,
            3000,
            &[(1, Some(40)), (2, Some(20)), (3, Some(127)), (4, Some(30))],
        );
        assert!(!changes.is_empty());
        assert_eq!(d.top(3), [2, 4, 1]);
        assert_eq!(d.top(1), [2]);
        assert_eq!(d.top(10).len(), 3);
        // Loudness 50 dB above the floor.
        assert_eq!(d.score(2, t), Some(5000));
        assert_eq!(d.score(3, t), Some(0));
        assert_eq!(d.score(9, t), None);
        // At most max_speakers.
        let mut d = SpeakerDetector::new(SpeakerConfig {
            max_speakers: 1,
            ..SpeakerConfig::default()
        });
        d.add_track(1);
        d.add_track(2);
        run(&mut d, &mut t, 2000, &[(1, Some(40)), (2, Some(20))]);
        assert_eq!(d.top(5), [2]);
    }

    #[test]
    fn voice_activity_flag_and_silence() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        d.add_track(1);
        d.add_track(2);
        let mut t = Instant::now();
        for _ in 0..100 {
            d.record(1, 10, Some(false), t);
            d.record(2, 30, Some(true), t);
            d.update(t);
            t += MS * 20;
        }
        assert_eq!(d.top(3), [2]);
        assert!(!d.record(7, 10, None, t));

        // Silence (level 127) and no packets at all (DTX) both empty the list, after
        // the window has slid past the speech.
        let mut changes = Vec::new();
        for step in 0..150u32 {
            if step % 2 == 0 {
                d.record(2, SILENT_DBOV, None, t);
            }
            if d.update(t) {
                changes.push((step, d.top(3).to_vec()));
            }
            t += MS * 20;
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (step, ref list) = changes[0];
        assert!(list.is_empty());
        // Not before the score fell under the floor (≥ 0.5 s) and the debounce passed.
        assert!(step * 20 >= 1000, "emptied after {} ms", step * 20);
    }

    #[test]
    fn changes_are_debounced() {
        let cfg = SpeakerConfig {
            window: Duration::from_millis(200),
            ..SpeakerConfig::default()
        };
        let mut d = SpeakerDetector::new(cfg);
        d.add_track(1);
        d.add_track(2);
        let mut t = Instant::now();
        run(&mut d, &mut t, 1000, &[(1, Some(20)), (2, Some(40))]);
        assert_eq!(d.top(2), [1, 2]);

        // A 300 ms burst of 2 louder than 1 does not reorder.
        let changes = run(&mut d, &mut t, 300, &[(1, Some(20)), (2, Some(5))]);
        assert!(changes.is_empty());
        run(&mut d, &mut t, 600, &[(1, Some(20)), (2, Some(40))]);
        assert_eq!(d.top(2), [1, 2]);

        // Held longer, 2 takes the lead — one change, ≥ 500 ms after it started.
        let start = t;
        let changes = run(&mut d, &mut t, 2000, &[(1, Some(20)), (2, Some(5))]);
        assert_eq!(changes.len(), 1);
        assert!(changes[0] - start >= MS * 500, "{:?}", changes[0] - start);
        assert!(changes[0] - start <= MS * 800, "{:?}", changes[0] - start);
        assert_eq!(d.top(2), [2, 1]);

        // Near-equal speakers alternating slightly do not flap the order.
        let mut flips = 0;
        for round in 0..40 {
            let (l1, l2) = if round % 2 == 0 { (20, 19) } else { (19, 20) };
            flips += run(&mut d, &mut t, 200, &[(1, Some(l1)), (2, Some(l2))]).len();
        }
        assert_eq!(flips, 0);

        // A removed speaker leaves at once.
        assert!(d.remove_track(2));
        assert_eq!(d.top(2), [1]);
        assert!(d.update(t));
        assert!(!d.remove_track(2));
    }
}
