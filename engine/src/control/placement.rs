//! Where a new session goes: with its room while the room's shard holds fewer than
//! [`ControlOptions::room_shard_sessions`](super::ControlOptions::room_shard_sessions) of
//! the room's sessions, else the least-loaded open shard (see the module docs of
//! [`super`]). The decision is two rules, [`with_room`] then [`least_loaded`], pure
//! functions of the loads.

use std::time::Instant;

use control::ControlError;

use super::EngineControl;
use crate::api::EngineStats;

impl EngineControl {
    /// The shard a new session goes to: `pin` if given (it must exist and not be
    /// draining), else the room's shard while it fits, else the least-loaded shard.
    ///
    /// # Errors
    /// `not_found` for a pinned shard that does not exist, `unavailable` when the
    /// pinned shard or every shard is draining.
    pub fn place(
        &self,
        room: Option<&str>,
        pin: Option<control::ShardId>,
    ) -> Result<usize, ControlError> {
        let eng = &self.shared.engine;
        let n = eng.shard_count();
        if let Some(p) = pin {
            let i = usize::try_from(p.0).unwrap_or(usize::MAX);
            return match eng.shard_draining(i) {
                None => Err(ControlError::not_found(format!("no shard {}", p.0))),
                Some(true) => Err(ControlError::unavailable(format!(
                    "shard {} is draining",
                    p.0
                ))),
                Some(false) => Ok(i),
            };
        }
        let open: Vec<usize> = (0..n)
            .filter(|i| eng.shard_draining(*i) == Some(false))
            .collect();
        if open.is_empty() {
            return Err(ControlError::unavailable("every shard is draining"));
        }
        let sessions: Vec<usize> = (0..n).map(|i| eng.shard_sessions(i).unwrap_or(0)).collect();
        // The room's members per shard, from the engine's registry: the room's size, not
        // every session of the engine (placement ran once per session create).
        let rid = room.and_then(|name| self.shared.state().rooms.get(name).copied());
        let room_here = rid
            .and_then(|r| eng.room_shard_counts(r))
            .unwrap_or_else(|| vec![0usize; n]);
        let mut loads = Loads {
            open: &open,
            sessions: &sessions,
            room_here: &room_here,
            rates: &[],
            room_shard_sessions: self.shared.opts.room_shard_sessions,
            shard_cap: eng.shard_session_cap(),
        };
        if let Some(s) = with_room(&loads) {
            return Ok(s);
        }
        // The packet rates cost an `engine.stats` round trip when stale: only sampled
        // when the room does not decide.
        let rates = if n > 1 { self.rates() } else { Vec::new() };
        loads.rates = &rates;
        least_loaded(&loads).ok_or_else(|| ControlError::unavailable("every shard is draining"))
    }

    /// Packet rates per shard (in + out datagrams per second), refreshed when stale.
    fn rates(&self) -> Vec<f64> {
        let now = Instant::now();
        {
            let mut st = self.shared.state();
            let fresh = st
                .load
                .at
                .is_some_and(|t| now.duration_since(t) < self.shared.opts.load_sample_interval);
            if fresh {
                return st.load.rates.clone();
            }
            // Claim this refresh so concurrent placements do not all sample.
            st.load.at = Some(now);
        }
        if let Ok(stats) = self.shared.engine.stats() {
            self.record_load(&stats, now);
        }
        self.shared.state().load.rates.clone()
    }

    pub(super) fn record_load(&self, stats: &EngineStats, now: Instant) {
        let mut st = self.shared.state();
        let packets: Vec<u64> = stats
            .shards
            .iter()
            .map(|s| s.packets_in.saturating_add(s.packets_out))
            .collect();
        let prev_at = st
            .load
            .at
            .filter(|_| st.load.packets.len() == packets.len());
        let dt = prev_at
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        if dt > 0.0 {
            st.load.rates = packets
                .iter()
                .zip(&st.load.packets)
                .map(|(a, b)| a.saturating_sub(*b) as f64 / dt)
                .collect();
        } else if st.load.rates.len() != packets.len() {
            st.load.rates = vec![0.0; packets.len()];
        }
        st.load.packets = packets;
        st.load.at = Some(now);
    }
}

/// What placement decides from, one entry per shard in each slice.
#[derive(Debug)]
struct Loads<'a> {
    /// Shards taking new sessions (not draining, alive), ascending.
    open: &'a [usize],
    /// Live sessions per shard.
    sessions: &'a [usize],
    /// Sessions of the joining session's room per shard (all 0 without a room).
    room_here: &'a [usize],
    /// Packets per second per shard (in + out).
    rates: &'a [f64],
    /// A room's sessions one shard takes before the room spreads.
    room_shard_sessions: usize,
    /// Live sessions one shard takes at all.
    shard_cap: usize,
}

/// Both rules: [`with_room`], else [`least_loaded`] (the tests' view of placement).
#[cfg(test)]
fn choose(l: &Loads<'_>) -> Option<usize> {
    with_room(l).or_else(|| least_loaded(l))
}

fn at(v: &[usize], i: usize) -> usize {
    v.get(i).copied().unwrap_or(0)
}

/// Rule 1, with its room: among the open shards that already hold some of the room,
/// below both `room_shard_sessions` of the room's sessions and the shard cap, the one
/// holding most of the room (ties: the lower index). A room thereby fills one shard to
/// its share, then the next, and its subscribers' legs spread in blocks (one copy of
/// each publisher packet per remote shard). `None`: the room does not decide.
fn with_room(l: &Loads<'_>) -> Option<usize> {
    l.open
        .iter()
        .copied()
        .filter(|i| {
            let here = at(l.room_here, *i);
            here > 0 && here < l.room_shard_sessions && at(l.sessions, *i) < l.shard_cap
        })
        .max_by_key(|i| (at(l.room_here, *i), usize::MAX - i))
}

/// Rule 2: the least-loaded open shard below the cap, where load is the shard's share
/// of all sessions plus its share of the packet rate (ties: the lower index); when
/// every open shard is at the cap, the least-loaded open one (its refusal is the
/// caller's error). `None` when no shard is open.
fn least_loaded(l: &Loads<'_>) -> Option<usize> {
    let total_s: usize = l.sessions.iter().sum();
    let total_r: f64 = l.rates.iter().sum();
    let score = |i: usize| {
        let s = at(l.sessions, i) as f64 / total_s.max(1) as f64;
        let r = if total_r > 0.0 {
            l.rates.get(i).copied().unwrap_or(0.0) / total_r
        } else {
            0.0
        };
        s + r
    };
    let least = |only_below_cap: bool| {
        l.open
            .iter()
            .copied()
            .filter(|i| !only_below_cap || at(l.sessions, *i) < l.shard_cap)
            .min_by(|a, b| score(*a).total_cmp(&score(*b)).then(a.cmp(b)))
    };
    least(true).or_else(|| least(false))
}

#[cfg(test)]
mod tests {
    use super::{Loads, choose};

    fn loads<'a>(
        open: &'a [usize],
        sessions: &'a [usize],
        room_here: &'a [usize],
        rates: &'a [f64],
        room_shard_sessions: usize,
    ) -> Loads<'a> {
        Loads {
            open,
            sessions,
            room_here,
            rates,
            room_shard_sessions,
            shard_cap: 5000,
        }
    }

    /// Places `n` sessions of one room one after another on `shards` idle shards.
    fn fill(shards: usize, n: usize, room_shard_sessions: usize) -> Vec<usize> {
        let open: Vec<usize> = (0..shards).collect();
        let mut sessions = vec![0; shards];
        let mut room = vec![0; shards];
        let rates = vec![0.0; shards];
        for _ in 0..n {
            let s = choose(&loads(&open, &sessions, &room, &rates, room_shard_sessions))
                .expect("open shards");
            sessions[s] += 1;
            room[s] += 1;
        }
        room
    }

    #[test]
    fn a_room_within_its_share_stays_on_one_shard() {
        assert_eq!(fill(2, 201, 256), vec![201, 0]);
    }

    #[test]
    fn a_room_bigger_than_one_shards_share_spreads_in_blocks() {
        assert_eq!(fill(2, 201, 101), vec![101, 100]);
        assert_eq!(fill(4, 201, 60), vec![60, 60, 60, 21]);
    }

    #[test]
    fn a_small_room_stays_together_on_a_busy_shard() {
        // Shard 0 holds 300 other sessions and two of this room's: the third member
        // joins them rather than the idle shard (no cross-shard copies for small rooms).
        let l = loads(&[0, 1], &[302, 0], &[2, 0], &[9000.0, 0.0], 256);
        assert_eq!(choose(&l), Some(0));
    }

    #[test]
    fn a_new_room_goes_to_the_least_loaded_shard() {
        let l = loads(&[0, 1], &[10, 10], &[0, 0], &[5000.0, 100.0], 256);
        assert_eq!(choose(&l), Some(1));
        // Ties go to the lower index.
        let l = loads(&[0, 1], &[0, 0], &[0, 0], &[0.0, 0.0], 256);
        assert_eq!(choose(&l), Some(0));
    }

    #[test]
    fn draining_and_full_shards_are_skipped() {
        // The room's shard 0 is draining: its members go elsewhere.
        let l = loads(&[1, 2], &[5, 3, 1], &[5, 0, 0], &[0.0; 3], 256);
        assert_eq!(choose(&l), Some(2));
        // The room's shard is at its session cap: spill.
        let mut l = loads(&[0, 1], &[4, 1], &[4, 0], &[0.0; 2], 256);
        l.shard_cap = 4;
        assert_eq!(choose(&l), Some(1));
        // Every shard full: the least loaded, whose refusal the caller reports.
        let mut l = loads(&[0, 1], &[4, 4], &[0, 0], &[1.0, 0.0], 256);
        l.shard_cap = 4;
        assert_eq!(choose(&l), Some(1));
        assert_eq!(choose(&loads(&[], &[1], &[0], &[0.0], 256)), None);
    }
}
