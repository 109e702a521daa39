//! [`Handle`]: a slot reference packed into a `u64` so rings can carry it.

use core::num::NonZeroU64;

/// Identifies a peer (a process attached to the segment); recorded as a slot's owner.
///
/// # Examples
///
/// ```
/// # use numashm_varslot::{Config, HeapAllocator, PeerId};
/// let me: PeerId = 4;
/// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
/// let h = a.alloc(1, me).unwrap();
/// assert_eq!(a.state(h).unwrap().1, me);
/// ```
pub type PeerId = u32;

pub(crate) const GEN_BITS: u32 = 30;
pub(crate) const SLOT_BITS: u32 = 20;
pub(crate) const EXTENT_BITS: u32 = 10;
pub(crate) const CLASS_BITS: u32 = 4;
pub(crate) const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const SLOT_SHIFT: u32 = GEN_BITS;
const EXTENT_SHIFT: u32 = GEN_BITS + SLOT_BITS;
const CLASS_SHIFT: u32 = GEN_BITS + SLOT_BITS + EXTENT_BITS;
const _: () = assert!(CLASS_SHIFT + CLASS_BITS == 64);

/// Most size classes a segment can have.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_varslot::MAX_CLASSES, 16);
/// ```
pub const MAX_CLASSES: usize = 1 << CLASS_BITS;
/// Most extents a class can have.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_varslot::MAX_EXTENTS, 1024);
/// ```
pub const MAX_EXTENTS: usize = 1 << EXTENT_BITS;
/// Most slots an extent can have.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_varslot::MAX_SLOTS, 1 << 20);
/// ```
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;

/// A reference to one allocated slot: `{class, extent, slot, generation}` in a `u64`.
///
/// Bit layout (bit 0 = least significant):
///
/// | bits    | field      | width |
/// |---------|------------|-------|
/// | 0..30   | generation | 30 (never 0, so a handle is never 0) |
/// | 30..50  | slot       | 20    |
/// | 50..60  | extent     | 10    |
/// | 60..64  | class      | 4     |
///
/// A handle is only a claim: every operation checks it against the slot's metadata, so
/// a stale, forged or corrupted handle yields an error, never another slot's bytes.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HeapAllocator, Handle};
/// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
/// let h = a.alloc(10, 1).unwrap();
/// let raw: u64 = h.to_u64();
/// assert_eq!(Handle::from_u64(raw), Some(h));
/// assert_eq!((h.class(), h.extent(), h.slot()), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Handle(NonZeroU64);

impl Handle {
    /// A well-formed handle for filling buffers; never handed out as a live slot
    /// by itself (callers track which entries are real).
    /// The same slot under generation `g` (30 bits, non-zero: from `next_gen`).
    #[inline(always)]
    pub(crate) fn with_generation(self, g: u32) -> Self {
        debug_assert!(g != 0 && u64::from(g) <= GEN_MASK);
        let raw = (self.0.get() & !GEN_MASK) | u64::from(g);
        Self(NonZeroU64::new(raw).unwrap_or(self.0))
    }

    pub(crate) const PLACEHOLDER: Self = match NonZeroU64::new(1) {
        Some(v) => Self(v),
        None => unreachable!(),
    };

    /// Pack the fields; `None` if the generation is 0 or a field does not fit.
    #[cfg(test)]
    pub(crate) fn pack(class: usize, extent: usize, slot: usize, generation: u32) -> Option<Self> {
        if class >= MAX_CLASSES || extent >= MAX_EXTENTS || slot >= MAX_SLOTS {
            return None;
        }
        let raw = (u64::from(generation) & GEN_MASK)
            | (slot as u64) << SLOT_SHIFT
            | (extent as u64) << EXTENT_SHIFT
            | (class as u64) << CLASS_SHIFT;
        // Generation 0 is never handed out, so the low bits are non-zero when valid.
        if u64::from(generation) & GEN_MASK == 0 {
            return None;
        }
        NonZeroU64::new(raw).map(Self)
    }

    /// Pack fields already known to be in range, with `generation != 0`.
    #[inline(always)]
    pub(crate) fn pack_in_range(class: usize, extent: usize, slot: usize, generation: u32) -> Option<Self> {
        debug_assert!(class < MAX_CLASSES && extent < MAX_EXTENTS && slot < MAX_SLOTS);
        let raw = u64::from(generation)
            | (slot as u64) << SLOT_SHIFT
            | (extent as u64) << EXTENT_SHIFT
            | (class as u64) << CLASS_SHIFT;
        NonZeroU64::new(raw).map(Self)
    }

    /// The raw `u64` (what rings carry).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// # let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 0).unwrap();
    /// assert_ne!(h.to_u64(), 0);
    /// ```
    #[inline]
    pub fn to_u64(self) -> u64 {
        self.0.get()
    }

    /// Rebuild a handle from a raw `u64`; `None` for 0 or a zero generation. The fields
    /// are checked against the segment only when the handle is used.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::Handle;
    /// assert!(Handle::from_u64(0).is_none());
    /// assert!(Handle::from_u64(1).is_some());
    /// ```
    #[inline]
    pub fn from_u64(raw: u64) -> Option<Self> {
        if raw & GEN_MASK == 0 {
            return None;
        }
        NonZeroU64::new(raw).map(Self)
    }

    /// Size-class index.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_varslot::Handle::from_u64(1 | 3 << 60).unwrap().class(), 3);
    /// ```
    #[inline]
    pub fn class(self) -> usize {
        (self.0.get() >> CLASS_SHIFT) as usize
    }

    /// Extent index within the class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_varslot::Handle::from_u64(1 | 5 << 50).unwrap().extent(), 5);
    /// ```
    #[inline]
    pub fn extent(self) -> usize {
        ((self.0.get() >> EXTENT_SHIFT) & ((1 << EXTENT_BITS) - 1)) as usize
    }

    /// Slot index within the extent.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_varslot::Handle::from_u64(1 | 9 << 30).unwrap().slot(), 9);
    /// ```
    #[inline]
    pub fn slot(self) -> usize {
        ((self.0.get() >> SLOT_SHIFT) & ((1 << SLOT_BITS) - 1)) as usize
    }

    /// Generation the slot had when this handle was made (30 bits, never 0).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_varslot::Handle::from_u64(7).unwrap().generation(), 7);
    /// ```
    #[inline]
    pub fn generation(self) -> u32 {
        (self.0.get() & GEN_MASK) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_fields_round_trip() {
        let h = Handle::pack(15, 1023, MAX_SLOTS - 1, (1 << 30) - 1).unwrap();
        assert_eq!((h.class(), h.extent(), h.slot(), h.generation()), (15, 1023, MAX_SLOTS - 1, (1 << 30) - 1));
        assert_eq!(Handle::from_u64(h.to_u64()), Some(h));
    }

    #[test]
    fn zero_generation_is_not_a_handle() {
        assert!(Handle::pack(1, 1, 1, 0).is_none());
        assert!(Handle::from_u64(1 << 40).is_none());
    }
}
