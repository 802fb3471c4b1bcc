//! Where a new session goes: the room's shard while it has room, else the least-loaded
//! open shard (see the module docs of [`super`]).

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
        // Keep the room together while its shard has room.
        if let Some(room) = room {
            let st = self.shared.state();
            if let Some(rid) = st.rooms.get(room).copied() {
                let mut per_shard = vec![0usize; n];
                for s in st.sessions.values() {
                    if s.room == Some(rid)
                        && let Some(c) = per_shard.get_mut(s.shard)
                    {
                        *c += 1;
                    }
                }
                let best = open
                    .iter()
                    .copied()
                    .filter(|i| per_shard.get(*i).is_some_and(|c| *c > 0))
                    .filter(|i| {
                        sessions.get(*i).copied().unwrap_or(0)
                            < self.shared.opts.room_shard_sessions
                    })
                    .max_by_key(|i| (per_shard.get(*i).copied().unwrap_or(0), usize::MAX - i));
                if let Some(b) = best {
                    return Ok(b);
                }
            }
        }
        let rates = self.rates();
        let total_s: usize = sessions.iter().sum();
        let total_r: f64 = rates.iter().sum();
        let score = |i: usize| {
            let s = sessions.get(i).copied().unwrap_or(0) as f64 / total_s.max(1) as f64;
            let r = if total_r > 0.0 {
                rates.get(i).copied().unwrap_or(0.0) / total_r
            } else {
                0.0
            };
            s + r
        };
        // `open` is not empty (checked above); ties go to the lowest index.
        open.iter()
            .copied()
            .min_by(|a, b| score(*a).total_cmp(&score(*b)))
            .ok_or_else(|| ControlError::unavailable("every shard is draining"))
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
