//! One publisher layer's packet cache: the single copy of recent packets that every
//! subscriber's NACK path reads from.
//!
//! The packets lie back to back in one contiguous byte ring (allocated, and written to
//! so that nothing page-faults later, once at construction); an index of `capacity`
//! entries, entry `ext_seq & (capacity - 1)`, says where each one starts. A packet that
//! would cross the end of the ring starts again at its beginning, so every packet is
//! one slice. A packet is gone once its index entry holds another sequence number or
//! newer packets have written over its bytes: a lookup then answers `None`. So the
//! memory follows the bytes actually sent (small audio packets do not each hold a
//! 1500-byte slot). Nothing here allocates after construction.

use std::time::Instant;

pub use rtc_core::rtp::SeqUnwrapper;

/// The smallest byte ring accepted: one Ethernet MTU (the largest packet stored).
pub const MIN_BYTES: usize = 1500;

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
    /// The packet is larger than the byte ring.
    #[error("packet of {len} bytes larger than the {limit} byte cache")]
    TooLarge {
        /// The packet's length.
        len: usize,
        /// The byte ring's size.
        limit: usize,
    },
    /// The packet is older than the window of the newest packet.
    #[error("packet older than the cache window")]
    TooOld,
    /// The index already holds this sequence number (a duplicate or a retransmission).
    #[error("packet already cached")]
    Duplicate,
}

/// Where one cached packet lies.
#[derive(Debug, Clone, Copy)]
struct Entry {
    meta: PacketMeta,
    /// Absolute byte position of its first byte (ring offset = `start % buf.len()`).
    start: u64,
}

/// A byte ring of recent packets of one publisher layer, indexed by extended sequence
/// number.
pub struct PacketCache {
    /// The byte ring.
    buf: Box<[u8]>,
    /// One entry per index position; `None` for one never written.
    index: Box<[Option<Entry>]>,
    /// `capacity - 1` (capacity is a power of two).
    mask: u64,
    /// Absolute byte position where the next packet goes (bytes written so far, plus
    /// the ends skipped to keep packets contiguous).
    tail: u64,
    newest: Option<u64>,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("capacity", &self.capacity())
            .field("bytes", &self.buf.len())
            .field("newest", &self.newest)
            .finish()
    }
}

impl PacketCache {
    /// A cache of at most `capacity` packets (rounded up to a power of two, at least 1)
    /// in a byte ring of `bytes` bytes (at least [`MIN_BYTES`]). All memory is
    /// allocated and touched here.
    pub fn new(capacity: usize, bytes: usize) -> PacketCache {
        let capacity = capacity.max(1).next_power_of_two();
        let bytes = bytes.max(MIN_BYTES);
        let mut buf = vec![0u8; bytes].into_boxed_slice();
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
            index: vec![None; capacity].into_boxed_slice(),
            mask: capacity as u64 - 1,
            tail: 0,
            newest: None,
        }
    }

    /// Number of index entries (the most packets held).
    pub fn capacity(&self) -> usize {
        self.index.len()
    }

    /// Total bytes held by the byte ring (the largest packet accepted).
    pub fn buffer_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Heap bytes of the cache: the byte ring and the index.
    pub fn heap_bytes(&self) -> usize {
        self.buf.len() + std::mem::size_of_val(&*self.index)
    }

    /// The highest extended sequence number stored, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    fn index_of(&self, ext_seq: u64) -> usize {
        // The mask keeps the value below capacity, which fits in usize.
        (ext_seq & self.mask) as usize
    }

    /// Stores `packet` as `ext_seq`. `meta.ext_seq` and `meta.len` are overwritten with
    /// `ext_seq` and the packet's length. Refused: packets larger than the byte ring,
    /// packets at least `capacity` older than the newest, and a sequence number
    /// already stored.
    pub fn insert(
        &mut self,
        ext_seq: u64,
        packet: &[u8],
        mut meta: PacketMeta,
    ) -> Result<(), CacheRefused> {
        let size = self.buf.len() as u64;
        if packet.len() > self.buf.len() || packet.len() > usize::from(u16::MAX) {
            return Err(CacheRefused::TooLarge {
                len: packet.len(),
                limit: self.buf.len(),
            });
        }
        if let Some(newest) = self.newest
            && ext_seq < newest
            && newest - ext_seq > self.mask
        {
            return Err(CacheRefused::TooOld);
        }
        let i = self.index_of(ext_seq);
        if self.get(ext_seq).is_some() {
            return Err(CacheRefused::Duplicate);
        }
        let len = packet.len() as u64;
        // A packet that would cross the end starts at the beginning instead.
        let mut start = self.tail;
        if start % size + len > size {
            start += size - start % size;
        }
        let at = (start % size) as usize; // below size, a usize
        let Some(dst) = self.buf.get_mut(at..at + packet.len()) else {
            // at + len <= size by the wrap above.
            return Err(CacheRefused::TooLarge {
                len: packet.len(),
                limit: self.buf.len(),
            });
        };
        dst.copy_from_slice(packet);
        self.tail = start + len;
        meta.ext_seq = ext_seq;
        // Checked against u16::MAX above.
        meta.len = packet.len() as u16;
        if let Some(e) = self.index.get_mut(i) {
            *e = Some(Entry { meta, start });
        }
        if self.newest.is_none_or(|n| ext_seq > n) {
            self.newest = Some(ext_seq);
        }
        Ok(())
    }

    /// The packet stored as `ext_seq` and its meta, if it is still held (its index
    /// entry names it and no newer packet wrote over its bytes).
    pub fn get(&self, ext_seq: u64) -> Option<(&[u8], &PacketMeta)> {
        let e = self.index.get(self.index_of(ext_seq))?.as_ref()?;
        let size = self.buf.len() as u64;
        // Bytes written after it reach `tail`; they overwrite it once past start + size.
        if e.meta.ext_seq != ext_seq || self.tail > e.start + size {
            return None;
        }
        let at = (e.start % size) as usize; // below size, a usize
        let bytes = self.buf.get(at..at + usize::from(e.meta.len))?;
        Some((bytes, &e.meta))
    }

    /// Forgets every packet (e.g. when the publisher restarts its stream); keeps memory.
    pub fn clear(&mut self) {
        self.index.iter_mut().for_each(|m| *m = None);
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
    fn capacity_is_power_of_two_and_ring_at_least_mtu() {
        let c = PacketCache::new(300, 100);
        assert_eq!(c.capacity(), 512);
        assert_eq!(c.buffer_bytes(), MIN_BYTES);
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
                limit: 1500
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
    fn largest_packet_fits_and_newer_bytes_evict_older_packets() {
        let now = Instant::now();
        let mut c = PacketCache::new(2, 1500);
        c.insert(0, &[0xAA; 1500], meta(now)).unwrap();
        assert!(c.get(0).unwrap().0.iter().all(|&b| b == 0xAA));
        c.insert(1, &[0xBB; 1500], meta(now)).unwrap();
        assert!(c.get(0).is_none());
        assert!(c.get(1).unwrap().0.iter().all(|&b| b == 0xBB));
    }

    #[test]
    fn packets_never_cross_the_ring_end() {
        let now = Instant::now();
        let mut c = PacketCache::new(64, 1500);
        for s in 0..3u64 {
            c.insert(s, &[s as u8; 400], meta(now)).unwrap();
        }
        // 1200 bytes used: the fourth starts over at 0, over packet 0 only.
        c.insert(3, &[3; 400], meta(now)).unwrap();
        assert!(c.get(0).is_none());
        for s in 1..4u64 {
            assert_eq!(c.get(s).unwrap().0, &[s as u8; 400][..]);
        }
        // Small packets: many per ring, each intact until written over.
        for s in 4..40u64 {
            c.insert(s, &[s as u8; 100], meta(now)).unwrap();
        }
        assert!(c.get(30).is_none_or(|(b, _)| b == [30u8; 100]));
        assert_eq!(c.get(39).unwrap().0, &[39u8; 100][..]);
        assert!(c.get(3).is_none());
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
                // Sizes vary so packets wrap the byte ring at different places.
                let body = [s as u8; 64].repeat(1 + (s % 5) as usize);
                if c.insert(s, &body, meta(now)).is_ok() {
                    // The packet just stored is always there.
                    prop_assert_eq!(c.get(s).map(|(b, _)| b), Some(&body[..]));
                }
            }
            for s in 0..200u64 {
                if let Some((bytes, m)) = c.get(s) {
                    prop_assert_eq!(bytes, &[s as u8; 64].repeat(1 + (s % 5) as usize)[..]);
                    prop_assert_eq!(m.ext_seq, s);
                }
            }
            let newest = *seqs.iter().max().unwrap();
            prop_assert_eq!(c.newest(), Some(newest));
        }
    }
}
