//! Per-SSRC state: packet-index estimation (RFC 3711 §3.3.1) and the replay window
//! (RFC 3711 §3.3.2).

use super::SrtpError;

/// Maximum number of distinct SSRCs tracked per table.
pub(crate) const MAX_SSRCS: usize = 1024;

/// Number of packet indices covered by the replay window.
pub(crate) const REPLAY_WINDOW: u64 = 128;

/// Largest 48-bit SRTP packet index.
pub(crate) const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;

/// Largest 31-bit SRTCP index.
pub(crate) const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

/// A small map from SSRC to per-stream state, kept sorted for binary search. It only
/// allocates when a new SSRC is inserted.
#[derive(Debug, Default)]
pub(crate) struct SsrcTable<T> {
    entries: Vec<(u32, T)>,
}

impl<T> SsrcTable<T> {
    pub(crate) const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn position(&self, ssrc: u32) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&ssrc, |(s, _)| *s)
    }

    pub(crate) fn get(&self, ssrc: u32) -> Option<&T> {
        self.position(ssrc)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, t)| t)
    }

    /// The state for `ssrc`, inserting `make()` if absent (fails beyond [`MAX_SSRCS`]).
    pub(crate) fn get_or_insert_with(
        &mut self,
        ssrc: u32,
        make: impl FnOnce() -> T,
    ) -> Result<&mut T, SrtpError> {
        let i = match self.position(ssrc) {
            Ok(i) => i,
            Err(i) => {
                if self.entries.len() >= MAX_SSRCS {
                    return Err(SrtpError::TooManySsrcs);
                }
                self.entries.insert(i, (ssrc, make()));
                i
            }
        };
        self.entries
            .get_mut(i)
            .map(|(_, t)| t)
            .ok_or(SrtpError::TooManySsrcs)
    }

    /// Whether a new SSRC could be inserted.
    pub(crate) fn has_room_for(&self, ssrc: u32) -> bool {
        self.entries.len() < MAX_SSRCS || self.position(ssrc).is_ok()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Estimate the 48-bit packet index of a packet with sequence number `seq`, given
/// the highest index seen so far (`s_l` is its low 16 bits, ROC its upper 32), as in
/// RFC 3711 §3.3.1. Returns `None` when the guess falls outside `0..2^48`.
pub(crate) fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    let index = (v << 16) | u64::from(seq);
    (index <= MAX_SRTP_INDEX).then_some(index)
}

/// A sliding replay window over packet indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    /// Highest authenticated index received.
    pub(crate) highest: u64,
    /// Bit `i` set: index `highest - i` was received.
    bits: u128,
}

impl ReplayWindow {
    /// A window whose only received index is `index`.
    pub(crate) const fn starting_at(index: u64) -> Self {
        Self {
            highest: index,
            bits: 1,
        }
    }

    /// A window positioned at `index` in which nothing was received yet.
    pub(crate) const fn empty_at(index: u64) -> Self {
        Self {
            highest: index,
            bits: 0,
        }
    }

    /// Whether `index` may be accepted (not yet received, not too old).
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let delta = self.highest - index;
        if delta >= REPLAY_WINDOW {
            return Err(SrtpError::TooOld);
        }
        if self.bits & (1u128 << delta) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Record `index` as received (call only after it authenticated and passed
    /// [`ReplayWindow::check`]).
    pub(crate) fn commit(&mut self, index: u64) {
        if index > self.highest {
            let shift = index - self.highest;
            self.bits = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.highest = index;
        } else {
            let delta = self.highest - index;
            if delta < REPLAY_WINDOW {
                self.bits |= 1u128 << delta;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_follows_rfc3711_rules() {
        // Plain increase.
        assert_eq!(estimate_index(10, 11), Some(11));
        // Rollover forward: s_l high, seq low.
        assert_eq!(estimate_index(0xffff, 0), Some(0x1_0000));
        assert_eq!(estimate_index(0xfff0, 5), Some(0x1_0005));
        // Late packet from before the wrap: s_l low, seq high.
        assert_eq!(estimate_index(0x1_0002, 0xfffe), Some(0xfffe));
        // ... but with ROC 0 there is nothing before.
        assert_eq!(estimate_index(0x0002, 0xfffe), None);
        // No change near the middle.
        assert_eq!(estimate_index(0x8000, 0x0001), Some(0x0001));
        assert_eq!(estimate_index(0x8000, 0x0000), Some(0x0000));
        assert_eq!(estimate_index(0x8001, 0x0000), Some(0x1_0000));
        // Index space end.
        assert_eq!(estimate_index(MAX_SRTP_INDEX, 0), None);
    }

    #[test]
    fn window_rejects_replays_and_old() {
        let mut w = ReplayWindow::starting_at(1000);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed));
        assert_eq!(w.check(1001), Ok(()));
        assert_eq!(w.check(999), Ok(()));
        w.commit(999);
        assert_eq!(w.check(999), Err(SrtpError::Replayed));
        assert_eq!(w.check(1000 - 127), Ok(()));
        assert_eq!(w.check(1000 - 128), Err(SrtpError::TooOld));
        w.commit(1200);
        assert_eq!(w.highest, 1200);
        assert_eq!(w.check(1000), Err(SrtpError::TooOld));
        assert_eq!(w.check(1100), Ok(()));
        w.commit(1100);
        assert_eq!(w.check(1100), Err(SrtpError::Replayed));
        w.commit(1201);
        assert_eq!(w.check(1200), Err(SrtpError::Replayed));
        assert_eq!(w.check(1100), Err(SrtpError::Replayed));
        assert_eq!(w.check(1101), Ok(()));
    }

    #[test]
    fn table_caps_ssrcs() {
        let mut t: SsrcTable<u8> = SsrcTable::new();
        for s in 0..MAX_SSRCS as u32 {
            t.get_or_insert_with(s.wrapping_mul(2_654_435_761), || 1)
                .expect("below cap");
        }
        assert_eq!(t.len(), MAX_SSRCS);
        assert!(!t.has_room_for(7));
        assert_eq!(
            t.get_or_insert_with(7, || 1).map(|v| *v),
            Err(SrtpError::TooManySsrcs)
        );
        // Existing entries stay reachable.
        assert!(t.get_or_insert_with(0, || 2).is_ok());
        assert_eq!(t.get(2_654_435_761), Some(&1));
    }
}
