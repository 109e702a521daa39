//! The pool allocator's byte layout (header, class table, extent table, extents), the
//! handle and metadata encodings, and [`OwnerConfig`]. `docs/varslot.md` ("Single-owner
//! pool allocator") draws it; the `const` asserts below pin it.

use super::error::OwnerError;

/// `b"nshmOWNR"` as a little-endian u64: header word 0.
pub const OWNER_MAGIC: u64 = u64::from_le_bytes(*b"nshmOWNR");
/// Layout version (header word 1); bump on any change to the layout.
pub const OWNER_VERSION: u64 = 1;
/// Most size classes an [`OwnerConfig`] may have.
pub const MAX_OWNER_CLASSES: usize = 32;

// Handle: generation (32 high bits) | extent (12 bits) | slot (20 bits).
/// Bits of a handle holding the slot index within its extent (the low bits).
pub const HANDLE_SLOT_BITS: u32 = 20;
/// Bits of a handle holding the extent index (above the slot bits).
pub const HANDLE_EXTENT_BITS: u32 = 12;
/// Most extents a pool can have (`2^HANDLE_EXTENT_BITS`).
pub const MAX_OWNER_EXTENTS: usize = 1 << HANDLE_EXTENT_BITS;
/// Most slots an extent can have (`2^HANDLE_SLOT_BITS`).
pub const MAX_OWNER_SLOTS: usize = 1 << HANDLE_SLOT_BITS;
const _: () = assert!(HANDLE_SLOT_BITS + HANDLE_EXTENT_BITS == 32);

/// Header: 16 words (128 bytes) at `at`.
pub(crate) const HEADER_BYTES: usize = 128;
pub(crate) const H_MAGIC: usize = 0;
pub(crate) const H_VERSION: usize = 1;
pub(crate) const H_CLASS_COUNT: usize = 2;
pub(crate) const H_EXTENT_BYTES: usize = 3;
pub(crate) const H_MAX_EXTENTS: usize = 4;
/// Extents created so far (the extent table's used prefix).
pub(crate) const H_EXTENTS_USED: usize = 5;
/// Byte offset (from the memory base) where the next extent starts.
pub(crate) const H_BUMP: usize = 6;
pub(crate) const H_AT: usize = 7;
pub(crate) const H_TABLES_END: usize = 8;
pub(crate) const H_RESERVED: usize = 9;

/// Class table: one 128-byte row per class plus one for dedicated (oversize) extents;
/// the words the hot path touches share the row's first cache line.
pub(crate) const CLASS_ROW_BYTES: usize = 128;
/// Free-list head: byte offset (from the base) of the first free slot's metadata, 0
/// when empty.
pub(crate) const C_FREE_HEAD: usize = 0;
/// Slots the owner holds. (Free slots are `slots - owned - lent`: one counter fewer
/// to maintain on the hot path.)
pub(crate) const C_OWNED: usize = 1;
pub(crate) const C_LENT: usize = 2;
/// Slot size (0 in the dedicated row: each dedicated extent has its own).
pub(crate) const C_SLOT_SIZE: usize = 3;
/// Bytes from an extent's start to its first slot (metadata plus padding).
pub(crate) const C_DATA_SKIP: usize = 4;
pub(crate) const C_SLOTS_PER_EXTENT: usize = 5;
pub(crate) const C_EXTENTS: usize = 6;
/// Slots in all the class's extents.
pub(crate) const C_SLOTS: usize = 7;

/// Extent table: 4 words (32 bytes) per extent: `{offset, bytes, class, slots}`.
pub(crate) const EXTENT_ROW_BYTES: usize = 32;
/// Byte offset (from the base) of the extent's start (its slot metadata).
pub(crate) const X_OFFSET: usize = 0;
/// Extent length in bytes, metadata included.
pub(crate) const X_BYTES: usize = 1;
pub(crate) const X_CLASS: usize = 2;
pub(crate) const X_SLOTS: usize = 3;

/// Slot metadata: 4 words (32 bytes) per slot at the start of its extent.
pub(crate) const META_BYTES: usize = 32;
/// `generation << 32 | state`.
pub(crate) const M_STATE: usize = 0;
/// Readers still holding a lent slot (bit r = reader r).
pub(crate) const M_LENT_MASK: usize = 1;
/// Byte offset of the next free slot's metadata (0 = end of list).
pub(crate) const M_NEXT_FREE: usize = 2;
/// The slot's position, `extent << 20 | slot` (set when the extent is created), so a
/// free-list pop finds the slot without reading the extent table.
pub(crate) const M_POSITION: usize = 3;

/// Slot states (low 32 bits of `M_STATE`).
pub(crate) const S_FREE: u64 = 1;
pub(crate) const S_OWNED: u64 = 2;
pub(crate) const S_LENT: u64 = 3;
pub(crate) const STATE_MASK: u64 = 0xffff_ffff;

/// Class extents start on this boundary (and so do slot metadata and class slots).
pub(crate) const EXTENT_ALIGN: usize = 128;
/// Dedicated extents, and their single slot, start on a page.
pub(crate) const PAGE: usize = 4096;

const _: () = assert!(HEADER_BYTES == 16 * 8 && H_RESERVED < 16);
// The whole row, hot words included, is the first cache line of a 128-byte row.
const _: () = assert!(CLASS_ROW_BYTES == 16 * 8 && C_SLOTS < 8);
const _: () = assert!(EXTENT_ROW_BYTES == 4 * 8 && X_SLOTS < 4);
const _: () = assert!(META_BYTES == 4 * 8 && M_POSITION < 4);
// Slots are larger than their metadata, so `slot * (size - META_BYTES)` is positive.
const _: () = assert!(META_BYTES < 64);
const _: () = assert!(EXTENT_ALIGN % 64 == 0 && PAGE % EXTENT_ALIGN == 0);

/// The three fields of a pool handle: `generation << 32 | extent << 20 | slot`.
///
/// A generation is never 0 for a live slot, so handle 0 is never valid.
///
/// # Examples
///
/// ```
/// use numashm_varslot::HandleParts;
/// let p = HandleParts { generation: 3, extent: 2, slot: 5 };
/// assert_eq!(p.encode(), 3 << 32 | 2 << 20 | 5);
/// assert_eq!(HandleParts::decode(p.encode()), p);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandleParts {
    /// Generation of the slot when handed out (32 high bits).
    pub generation: u32,
    /// Extent index (12 bits).
    pub extent: u32,
    /// Slot index in the extent (20 bits).
    pub slot: u32,
}

impl HandleParts {
    /// Split a raw handle into its fields (any u64 splits; nothing is validated).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_varslot::HandleParts::decode(u64::MAX);
    /// assert_eq!((p.generation, p.extent, p.slot), (u32::MAX, 4095, (1 << 20) - 1));
    /// ```
    #[inline]
    #[must_use]
    pub const fn decode(h: u64) -> Self {
        Self {
            generation: (h >> 32) as u32,
            extent: ((h >> HANDLE_SLOT_BITS) & (MAX_OWNER_EXTENTS as u64 - 1)) as u32,
            slot: (h & (MAX_OWNER_SLOTS as u64 - 1)) as u32,
        }
    }

    /// Pack the fields into a raw handle (`extent` and `slot` are masked to their bits).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_varslot::HandleParts { generation: 1, extent: 0, slot: 0 };
    /// assert_eq!(p.encode(), 1 << 32);
    /// ```
    #[inline]
    #[must_use]
    pub const fn encode(self) -> u64 {
        (self.generation as u64) << 32 | self.position()
    }

    /// `extent << 20 | slot`: the slot's place, without the generation.
    #[inline]
    pub(crate) const fn position(self) -> u64 {
        ((self.extent as u64) & (MAX_OWNER_EXTENTS as u64 - 1)) << HANDLE_SLOT_BITS
            | (self.slot as u64) & (MAX_OWNER_SLOTS as u64 - 1)
    }
}

/// The generation after `g`: wraps, skipping 0 (never a live generation).
#[inline]
pub(crate) const fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// `x` rounded up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub(crate) const fn round_up(x: usize, align: usize) -> Option<usize> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Configuration of an [`crate::OwnerAlloc`].
///
/// # Examples
///
/// ```
/// use numashm_varslot::OwnerConfig;
/// let cfg = OwnerConfig { classes: vec![64, 1024], extent_bytes: 4096, max_extents: 8 };
/// assert_eq!(OwnerConfig::default().classes.len(), 8);
/// # drop(cfg);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerConfig {
    /// Slot sizes, strictly ascending, multiples of 64 (of 128 from 128 up), at most
    /// [`MAX_OWNER_CLASSES`].
    pub classes: Vec<usize>,
    /// Bytes of slots per class extent (each extent holds at least one slot, and at
    /// most [`MAX_OWNER_SLOTS`]).
    pub extent_bytes: usize,
    /// Most extents (class and dedicated together), 1..=[`MAX_OWNER_EXTENTS`].
    pub max_extents: u32,
}

impl Default for OwnerConfig {
    /// Classes 64 B, 256 B, 1 KiB, 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB; 64 KiB extents;
    /// 1024 extents.
    fn default() -> Self {
        Self {
            classes: (0..8).map(|i| 64 << (2 * i)).collect(),
            extent_bytes: 64 << 10,
            max_extents: 1024,
        }
    }
}

/// Where the tables of a pool laid out at `at` with a config lie (all byte offsets from
/// the memory base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableLayout {
    pub(crate) at: usize,
    pub(crate) class_table: usize,
    pub(crate) extent_table: usize,
    /// End of the extent table, rounded up to 128: where the first extent may start.
    pub(crate) tables_end: usize,
}

impl OwnerConfig {
    /// Check the config; on success, where the tables go when laid out at `at`.
    pub(crate) fn table_layout(&self, at: usize) -> Result<TableLayout, OwnerError> {
        let bad = |field| OwnerError::Config { field };
        let n = self.classes.len();
        if n == 0 || n > MAX_OWNER_CLASSES {
            return Err(bad("classes"));
        }
        let mut prev = 0;
        for &s in &self.classes {
            // Multiples of 64 (128 from 128 up) keep slots on cache lines (pairs); the
            // 2^40 cap keeps `slot * size` far from overflow.
            let align = if s >= 128 { 128 } else { 64 };
            if s == 0 || s % align != 0 || s <= prev || s > 1 << 40 {
                return Err(bad("classes"));
            }
            prev = s;
        }
        if self.extent_bytes == 0 || self.extent_bytes / self.classes[0] > MAX_OWNER_SLOTS {
            return Err(bad("extent_bytes"));
        }
        if self.max_extents == 0 || self.max_extents as usize > MAX_OWNER_EXTENTS {
            return Err(bad("max_extents"));
        }
        if at % EXTENT_ALIGN != 0 {
            return Err(OwnerError::Misaligned { at });
        }
        let class_table = at.checked_add(HEADER_BYTES).ok_or(bad("at"))?;
        let extent_table = class_table + (n + 1) * CLASS_ROW_BYTES;
        let tables_end = round_up(
            extent_table + self.max_extents as usize * EXTENT_ROW_BYTES,
            EXTENT_ALIGN,
        )
        .ok_or(bad("at"))?;
        Ok(TableLayout {
            at,
            class_table,
            extent_table,
            tables_end,
        })
    }

    /// Slots per extent of a class of `slot_size` bytes: at least one.
    pub(crate) fn slots_per_extent(&self, slot_size: usize) -> usize {
        (self.extent_bytes / slot_size).max(1)
    }
}

/// Bytes from a class extent's start to its first slot: the metadata, padded to 128.
pub(crate) const fn class_data_skip(slots: usize) -> usize {
    // Cannot overflow: slots <= 2^20.
    (slots * META_BYTES + EXTENT_ALIGN - 1) & !(EXTENT_ALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented layout (docs/varslot.md), read back from the constants.
    #[test]
    fn layout_constants_match_the_doc() {
        assert_eq!(&OWNER_MAGIC.to_le_bytes(), b"nshmOWNR");
        assert_eq!(OWNER_VERSION, 1);
        assert_eq!(
            [
                H_MAGIC,
                H_VERSION,
                H_CLASS_COUNT,
                H_EXTENT_BYTES,
                H_MAX_EXTENTS
            ],
            [0, 1, 2, 3, 4]
        );
        assert_eq!(
            [H_EXTENTS_USED, H_BUMP, H_AT, H_TABLES_END, H_RESERVED],
            [5, 6, 7, 8, 9]
        );
        assert_eq!(
            (HEADER_BYTES, CLASS_ROW_BYTES, EXTENT_ROW_BYTES, META_BYTES),
            (128, 128, 32, 32)
        );
        assert_eq!([C_FREE_HEAD, C_OWNED, C_LENT, C_SLOT_SIZE], [0, 1, 2, 3]);
        assert_eq!(
            [C_DATA_SKIP, C_SLOTS_PER_EXTENT, C_EXTENTS, C_SLOTS],
            [4, 5, 6, 7]
        );
        assert_eq!([X_OFFSET, X_BYTES, X_CLASS, X_SLOTS], [0, 1, 2, 3]);
        assert_eq!(
            [M_STATE, M_LENT_MASK, M_NEXT_FREE, M_POSITION],
            [0, 1, 2, 3]
        );
        assert_eq!([S_FREE, S_OWNED, S_LENT], [1, 2, 3]);
        assert_eq!((EXTENT_ALIGN, PAGE), (128, 4096));
        assert_eq!((HANDLE_SLOT_BITS, HANDLE_EXTENT_BITS), (20, 12));
        // Default config at 0: header 128, 9 class rows, 1024 extent rows.
        let t = OwnerConfig::default().table_layout(0).unwrap();
        assert_eq!(
            (t.class_table, t.extent_table, t.tables_end),
            (128, 128 + 9 * 128, 1280 + 1024 * 32)
        );
        assert_eq!(class_data_skip(1024), 32 * 1024);
        assert_eq!(class_data_skip(1), 128);
        assert_eq!(class_data_skip(5), 256);
    }

    #[test]
    fn generations_skip_zero() {
        assert_eq!(next_generation(u32::MAX), 1);
        assert_eq!(next_generation(1), 2);
    }

    #[test]
    fn bad_configs_name_their_field() {
        let ok = OwnerConfig::default();
        let f = |c: OwnerConfig| c.table_layout(0).unwrap_err();
        assert_eq!(
            f(OwnerConfig {
                classes: vec![],
                ..ok.clone()
            }),
            OwnerError::Config { field: "classes" }
        );
        assert_eq!(
            f(OwnerConfig {
                classes: vec![64, 64],
                ..ok.clone()
            }),
            OwnerError::Config { field: "classes" }
        );
        assert_eq!(
            f(OwnerConfig {
                classes: vec![100],
                ..ok.clone()
            }),
            OwnerError::Config { field: "classes" }
        );
        assert_eq!(
            f(OwnerConfig {
                classes: vec![192],
                ..ok.clone()
            }),
            OwnerError::Config { field: "classes" }
        );
        assert_eq!(
            f(OwnerConfig {
                extent_bytes: 0,
                ..ok.clone()
            }),
            OwnerError::Config {
                field: "extent_bytes"
            }
        );
        assert_eq!(
            f(OwnerConfig {
                extent_bytes: 1 << 30,
                ..ok.clone()
            }),
            OwnerError::Config {
                field: "extent_bytes"
            }
        );
        assert_eq!(
            f(OwnerConfig {
                max_extents: 0,
                ..ok.clone()
            }),
            OwnerError::Config {
                field: "max_extents"
            }
        );
        assert_eq!(
            f(OwnerConfig {
                max_extents: 4097,
                ..ok.clone()
            }),
            OwnerError::Config {
                field: "max_extents"
            }
        );
        assert_eq!(ok.table_layout(64), Err(OwnerError::Misaligned { at: 64 }));
    }
}
