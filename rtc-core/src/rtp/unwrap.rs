//! Extending wrapping RTP counters (sequence numbers, timestamps) to 64 bits.

/// Shared logic: `bits`-wide counters extended relative to the highest value seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Unwrapper {
    highest: Option<u64>,
}

impl Unwrapper {
    fn unwrap(&mut self, value: u64, bits: u32) -> u64 {
        let Some(highest) = self.highest else {
            self.highest = Some(value);
            return value;
        };
        let modulus = 1u64 << bits;
        let mask = modulus - 1;
        let half = modulus >> 1;
        // Forward distance from the highest value, modulo 2^bits.
        let fwd = value.wrapping_sub(highest) & mask;
        let ext = if fwd < half {
            highest + fwd
        } else {
            let back = modulus - fwd;
            match highest.checked_sub(back) {
                Some(v) => v,
                // Older than the start of the stream across a wrap: no extended value
                // exists below zero, so keep the raw value in cycle 0.
                None => value,
            }
        };
        if ext > highest {
            self.highest = Some(ext);
        }
        ext
    }
}

/// Extends 16-bit RTP sequence numbers to 64 bits, handling rollover and reordering
/// in both directions.
///
/// The first value maps to itself (rollover count 0). Each later value maps to the
/// extended number closest to the highest one seen so far (forward distances
/// below 2^15 count as newer, others as older). A value that would map below zero
/// (older than the first value across a wrap) is returned unextended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqUnwrapper {
    inner: Unwrapper,
}

impl SeqUnwrapper {
    /// A fresh unwrapper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends `seq`, updating the highest value seen.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        // Generic 64-bit extension (not Option::unwrap).
        self.inner.unwrap(u64::from(seq), 16)
    }

    /// The highest extended value seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.inner.highest
    }
}

/// Extends 32-bit RTP timestamps to 64 bits, like [`SeqUnwrapper`] with a 2^31
/// window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampUnwrapper {
    inner: Unwrapper,
}

impl TimestampUnwrapper {
    /// A fresh unwrapper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends `ts`, updating the highest value seen.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        // Generic 64-bit extension (not Option::unwrap).
        self.inner.unwrap(u64::from(ts), 32)
    }

    /// The highest extended value seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.inner.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seq_rollover_and_reorder() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(65533), 65533);
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(1), 65537); // forward across wrap
        assert_eq!(u.unwrap(65534), 65534); // late packet from before the wrap
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(2), 65538);
        assert_eq!(u.highest(), Some(65538));
        // Backwards across a wrap later on.
        let mut u = SeqUnwrapper::new();
        u.unwrap(10);
        assert_eq!(u.unwrap(65530), 65530); // cannot go below zero
        let mut u = SeqUnwrapper::new();
        for s in (0..=200_000u64).step_by(1000) {
            assert_eq!(u.unwrap(s as u16), s);
        }
        assert_eq!(u.unwrap(60_000), 196_608 + 60_000 - 65_536);
    }

    #[test]
    fn timestamp_rollover() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 10), u64::from(u32::MAX) - 10);
        assert_eq!(u.unwrap(5), (1 << 32) + 5);
        assert_eq!(u.unwrap(u32::MAX), u64::from(u32::MAX));
        assert_eq!(u.unwrap(100), (1 << 32) + 100);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn seq_matches_truth(start in 40_000u64..1_000_000, steps in proptest::collection::vec(-1000i64..3000, 1..200)) {
            let mut u = SeqUnwrapper::new();
            // The first value maps to itself, so expected = truth - offset.
            let offset = start - (start & 0xffff);
            let mut truth = start;
            let mut highest = start;
            prop_assert_eq!(u.unwrap(truth as u16), truth - offset);
            for s in steps {
                // Keep within the window relative to the highest value.
                let cand = truth as i64 + s;
                if cand < offset as i64 || (highest as i64 - cand) >= 30_000 || cand - highest as i64 >= 30_000 {
                    continue;
                }
                truth = cand as u64;
                highest = highest.max(truth);
                prop_assert_eq!(u.unwrap(truth as u16), truth - offset);
            }
        }
    }
}
