//! One publisher layer's packet cache: the single copy of recent packets that every
//! subscriber's NACK path reads from.
//!
//! The cache is a ring of fixed-size slots in one contiguous buffer allocated (and written
//! to, so that no page faults later) once at construction. A packet lives in slot
//! `ext_seq & (capacity - 1)`; each slot remembers which extended sequence number it holds,
//! so a lookup for a packet that was overwritten answers `None`. Nothing here allocates
//! after construction.

use std::time::Instant;

pub use rtc_core::rtp::SeqUnwrapper;

/// The smallest slot size accepted: one Ethernet MTU.
pub const MIN_SLOT_SIZE: usize = 1500;

/// Page size assumed when pre-faulting the buffer (touching one byte per page suffices).
const PAGE: usize = 4096;

/// Facts about one cached packet: what the downtrack and the NACK path need without
/// re-parsing the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Extended (64-bit) sequence number in the publisher layer's stream.
    pub ext_seq: u64,
    /// RTP timestamp as received.
    pub timestamp: u32,
    /// RTP marker bit (last packet of a frame for video).
    pub marker: bool,
    /// The packet starts a keyframe (a valid switch point), from the codec parser.
    pub keyframe: bool,
    /// Temporal layer id, when the codec carries one.
    pub tid: Option<u8>,
    /// Temporal layer switch point (VP8 Y bit, VP9 U bit).
    pub layer_sync: bool,
    /// Offset of the RTP payload in the packet (after header, CSRCs and extensions).
    pub payload_offset: u16,
    /// Length of the media payload, excluding RTP padding; 0 for a padding-only packet.
    pub payload_len: u16,
    /// Length of the whole packet (set by [`PacketCache::insert`]).
    pub len: u16,
    /// When the packet arrived.
    pub arrival: Instant,
}

impl PacketMeta {
    /// Meta for a packet with no codec facts (no keyframe, no temporal layer); the caller
    /// fills in the codec fields from [`super::codec::PayloadFacts`].
    pub fn new(
        ext_seq: u64,
        timestamp: u32,
        marker: bool,
        payload_offset: u16,
        payload_len: u16,
        arrival: Instant,
    ) -> PacketMeta {
        PacketMeta {
            ext_seq,
            timestamp,
            marker,
            keyframe: false,
            tid: None,
            layer_sync: false,
            payload_offset,
            payload_len,
            len: 0,
            arrival,
        }
    }

    /// True when the packet carries no media (padding only, e.g. a bandwidth probe).
    pub fn is_padding(&self) -> bool {
        self.payload_len == 0
    }
}

/// Why [`PacketCache::insert`] did not store a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheRefused {
    /// The packet is larger than a slot.
    #[error("packet of {len} bytes larger than the {slot} byte slot")]
    TooLarge {
        /// The packet's length.
        len: usize,
        /// The slot size.
        slot: usize,
    },
    /// The packet is older than the window of the newest packet.
    #[error("packet older than the cache window")]
    TooOld,
    /// The slot already holds this sequence number (a duplicate or a retransmission).
    #[error("packet already cached")]
    Duplicate,
}

/// A ring of recent packets of one publisher layer, indexed by extended sequence number.
pub struct PacketCache {
    /// `capacity * slot_size` bytes.
    buf: Box<[u8]>,
    /// The metadata of each slot; `None` for a slot never written.
    metas: Box<[Option<PacketMeta>]>,
    slot_size: usize,
    /// `capacity - 1` (capacity is a power of two).
    mask: u64,
    newest: Option<u64>,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size)
            .field("newest", &self.newest)
            .finish()
    }
}

impl PacketCache {
    /// A cache of `capacity` slots (rounded up to a power of two, at least 1) of
    /// `slot_size` bytes each (at least [`MIN_SLOT_SIZE`]). All memory is allocated and
    /// touched here.
    pub fn new(capacity: usize, slot_size: usize) -> PacketCache {
        let capacity = capacity.max(1).next_power_of_two();
        let slot_size = slot_size.max(MIN_SLOT_SIZE);
        let mut buf = vec![0u8; capacity * slot_size].into_boxed_slice();
        // `vec![0; n]` may hand back lazily mapped zero pages; write one byte per page so
        // the first packets do not page-fault on the data path. `black_box` keeps the
        // writes from being optimised away.
        for page in buf.chunks_mut(PAGE) {
            if let Some(b) = page.first_mut() {
                *b = std::hint::black_box(0);
            }
        }
        PacketCache {
            buf,
            metas: vec![None; capacity].into_boxed_slice(),
            slot_size,
            mask: capacity as u64 - 1,
            newest: None,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.metas.len()
    }

    /// Size of one slot in bytes (the largest packet accepted).
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Total bytes held by the packet buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The highest extended sequence number stored, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    fn slot_of(&self, ext_seq: u64) -> usize {
        // The mask keeps the value below capacity, which fits in usize.
        (ext_seq & self.mask) as usize
    }

    /// Stores `packet` as `ext_seq`. `meta.ext_seq` and `meta.len` are overwritten with
    /// `ext_seq` and the packet's length. Refused: packets larger than a slot, packets at
    /// least `capacity` older than the newest, and a sequence number already stored.
    pub fn insert(
        &mut self,
        ext_seq: u64,
        packet: &[u8],
        mut meta: PacketMeta,
    ) -> Result<(), CacheRefused> {
        if packet.len() > self.slot_size || packet.len() > usize::from(u16::MAX) {
            return Err(CacheRefused::TooLarge {
                len: packet.len(),
                slot: self.slot_size,
            });
        }
        if let Some(newest) = self.newest
            && ext_seq < newest
            && newest - ext_seq > self.mask
        {
            return Err(CacheRefused::TooOld);
        }
        let slot = self.slot_of(ext_seq);
        let Some(m) = self.metas.get_mut(slot) else {
            // slot_of is below capacity == metas.len().
            return Err(CacheRefused::TooOld);
        };
        if m.is_some_and(|m| m.ext_seq == ext_seq) {
            return Err(CacheRefused::Duplicate);
        }
        let start = slot * self.slot_size;
        let Some(dst) = self.buf.get_mut(start..start + packet.len()) else {
            // The slot lies inside buf and packet.len() <= slot_size.
            return Err(CacheRefused::TooOld);
        };
        dst.copy_from_slice(packet);
        meta.ext_seq = ext_seq;
        // Checked against u16::MAX above.
        meta.len = packet.len() as u16;
        *m = Some(meta);
        if self.newest.is_none_or(|n| ext_seq > n) {
            self.newest = Some(ext_seq);
        }
        Ok(())
    }

    /// The packet stored as `ext_seq` and its meta, if its slot still holds it.
    pub fn get(&self, ext_seq: u64) -> Option<(&[u8], &PacketMeta)> {
        let slot = self.slot_of(ext_seq);
        let meta = self.metas.get(slot)?.as_ref()?;
        if meta.ext_seq != ext_seq {
            return None;
        }
        let start = slot * self.slot_size;
        let bytes = self.buf.get(start..start + usize::from(meta.len))?;
        Some((bytes, meta))
    }

    /// Forgets every packet (e.g. when the publisher restarts its stream); keeps memory.
    pub fn clear(&mut self) {
        self.metas.iter_mut().for_each(|m| *m = None);
        self.newest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(now: Instant) -> PacketMeta {
        PacketMeta::new(0, 1000, true, 12, 4, now)
    }

    #[test]
    fn capacity_is_power_of_two_and_slot_at_least_mtu() {
        let c = PacketCache::new(300, 100);
        assert_eq!(c.capacity(), 512);
        assert_eq!(c.slot_size(), MIN_SLOT_SIZE);
        assert_eq!(c.buffer_bytes(), 512 * MIN_SLOT_SIZE);
        assert_eq!(c.newest(), None);
        assert_eq!(PacketCache::new(0, 2000).capacity(), 1);
    }

    #[test]
    fn insert_get_roundtrip_and_meta_filled() {
        let now = Instant::now();
        let mut c = PacketCache::new(8, 1500);
        let mut m = meta(now);
        m.keyframe = true;
        m.tid = Some(1);
        c.insert(70_000, &[1, 2, 3, 4, 5], m).unwrap();
        let (bytes, got) = c.get(70_000).unwrap();
        assert_eq!(bytes, &[1, 2, 3, 4, 5]);
        assert_eq!(got.ext_seq, 70_000);
        assert_eq!(got.len, 5);
        assert!(got.keyframe);
        assert_eq!(got.tid, Some(1));
        assert_eq!(c.newest(), Some(70_000));
        // Same slot, different sequence number: not found.
        assert!(c.get(70_008).is_none());
        assert!(c.get(69_992).is_none());
    }

    #[test]
    fn overwritten_slot_answers_none() {
        let now = Instant::now();
        let mut c = PacketCache::new(4, 1500);
        for s in 0..6u64 {
            c.insert(s, &[s as u8; 10], meta(now)).unwrap();
        }
        assert!(c.get(0).is_none());
        assert!(c.get(1).is_none());
        assert_eq!(c.get(2).unwrap().0, &[2u8; 10]);
        assert_eq!(c.get(5).unwrap().0, &[5u8; 10]);
    }

    #[test]
    fn refusals() {
        let now = Instant::now();
        let mut c = PacketCache::new(4, 1500);
        assert_eq!(
            c.insert(1, &[0u8; 1501], meta(now)),
            Err(CacheRefused::TooLarge {
                len: 1501,
                slot: 1500
            })
        );
        c.insert(100, &[1], meta(now)).unwrap();
        assert_eq!(c.insert(96, &[1], meta(now)), Err(CacheRefused::TooOld));
        // Within the window, older than newest: accepted (reordering).
        c.insert(97, &[7], meta(now)).unwrap();
        assert_eq!(c.newest(), Some(100));
        assert_eq!(c.insert(97, &[7], meta(now)), Err(CacheRefused::Duplicate));
        assert_eq!(c.get(97).unwrap().0, &[7]);
    }

    #[test]
    fn largest_packet_fits_a_slot_without_spilling() {
        let now = Instant::now();
        let mut c = PacketCache::new(2, 1500);
        c.insert(0, &[0xAA; 1500], meta(now)).unwrap();
        c.insert(1, &[0xBB; 1500], meta(now)).unwrap();
        assert!(c.get(0).unwrap().0.iter().all(|&b| b == 0xAA));
        assert!(c.get(1).unwrap().0.iter().all(|&b| b == 0xBB));
    }

    #[test]
    fn clear_forgets() {
        let now = Instant::now();
        let mut c = PacketCache::new(4, 1500);
        c.insert(3, &[3], meta(now)).unwrap();
        c.clear();
        assert!(c.get(3).is_none());
        assert_eq!(c.newest(), None);
        c.insert(3, &[3], meta(now)).unwrap();
    }

    #[test]
    fn unwrapper_feeds_the_cache_across_rollover() {
        let now = Instant::now();
        let mut u = SeqUnwrapper::new();
        let mut c = PacketCache::new(16, 1500);
        for seq in [65_534u16, 65_535, 0, 1] {
            let e = u.unwrap(seq);
            c.insert(e, &seq.to_be_bytes(), meta(now)).unwrap();
        }
        assert_eq!(c.newest(), Some(65_537));
        assert_eq!(c.get(65_536).unwrap().0, &0u16.to_be_bytes());
    }

    proptest! {
        /// Whatever the order of inserts, `get` returns exactly the bytes inserted for a
        /// sequence number still inside the window, and never another packet's bytes.
        #[test]
        fn get_never_returns_wrong_packet(seqs in proptest::collection::vec(0u64..200, 1..300)) {
            let now = Instant::now();
            let mut c = PacketCache::new(32, 1500);
            for &s in &seqs {
                let body = s.to_be_bytes();
                let _ = c.insert(s, &body, meta(now));
            }
            for s in 0..200u64 {
                if let Some((bytes, m)) = c.get(s) {
                    prop_assert_eq!(bytes, &s.to_be_bytes()[..]);
                    prop_assert_eq!(m.ext_seq, s);
                }
            }
            let newest = *seqs.iter().max().unwrap();
            prop_assert!(c.get(newest).is_some());
            prop_assert_eq!(c.newest(), Some(newest));
        }
    }
}
