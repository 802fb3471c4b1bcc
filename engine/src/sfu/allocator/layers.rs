//! The allocator's vocabulary: media kinds, layers, targets and layer sets.

/// Spatial layers a track can have (0..=2).
pub const MAX_SPATIAL: usize = 3;
/// Temporal layers a spatial layer can have (0..=3).
pub const MAX_TEMPORAL: usize = 4;

/// The kind of media a downtrack carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Audio: never managed, always forwarded.
    Audio,
    /// Video: layers chosen by the allocator.
    Video,
}

/// One forwarding rung: a spatial layer and the highest temporal layer forwarded in it.
/// Ordered by spatial layer, then temporal layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer {
    /// Spatial layer, 0..=2.
    pub spatial: u8,
    /// Highest temporal layer forwarded, 0..=3.
    pub temporal: u8,
}

impl Layer {
    /// A rung.
    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Self { spatial, temporal }
    }
}

/// Why a downtrack forwards nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// The control plane paused it ([`Preference::paused`](super::Preference::paused)).
    Preference,
    /// The publisher's track is not active or sends no layer.
    Inactive,
    /// Not even its base layer fits the estimate.
    Bandwidth,
}

/// What a downtrack should forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Forward this rung (audio always reads `Layer::new(0, 0)`).
    Forward(Layer),
    /// Forward nothing.
    Paused(PauseReason),
}

impl Target {
    /// The forwarded rung, if any.
    pub fn layer(self) -> Option<Layer> {
        match self {
            Target::Forward(l) => Some(l),
            Target::Paused(_) => None,
        }
    }
}

/// A set of spatial layers (0..=2), as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LayerSet(u8);

impl LayerSet {
    /// No layer.
    pub const EMPTY: Self = Self(0);
    /// Layers 0, 1 and 2.
    pub const ALL: Self = Self(0b111);

    /// The set of the bits of `mask` (bit `s` = layer `s`; bits above 2 are dropped).
    pub const fn from_bits(mask: u8) -> Self {
        Self(mask & 0b111)
    }

    /// Layers `0..count` (count clamped to 3).
    pub const fn first(count: u8) -> Self {
        let n = if count > 3 { 3 } else { count };
        Self((1u8 << n) - 1)
    }

    /// The bit mask.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether layer `s` is in the set.
    pub const fn contains(self, s: u8) -> bool {
        s < 3 && self.0 & (1 << s) != 0
    }

    /// Adds layer `s` (ignored when `s > 2`).
    pub fn insert(&mut self, s: u8) {
        if s < 3 {
            self.0 |= 1 << s;
        }
    }

    /// Removes layer `s`.
    pub fn remove(&mut self, s: u8) {
        if s < 3 {
            self.0 &= !(1 << s);
        }
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowest layer in the set.
    pub fn lowest(self) -> Option<u8> {
        (0..3).find(|&s| self.contains(s))
    }

    /// The highest layer in the set.
    pub fn highest(self) -> Option<u8> {
        (0..3).rev().find(|&s| self.contains(s))
    }

    /// The layers in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..3).filter(move |&s| self.contains(s))
    }
}
