//! The control-area layout (header, class table, extent table, slot metadata), the
//! metadata word encoding, and [`Config`]. See `docs/varslot.md` for the byte layout.

use crate::error::CreateError;
use crate::handle::{GEN_MASK, MAX_CLASSES, MAX_EXTENTS, MAX_SLOTS};

/// `b"NUMASVS1"` as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"NUMASVS1");
/// Layout version; bump on any change to the word layout.
pub(crate) const VERSION: u64 = 3;
/// Extents (and the data area) start on this boundary (a page).
pub(crate) const EXTENT_ALIGN: usize = 4096;
/// Slot sizes are multiples of this (a cache line).
pub(crate) const SLOT_ALIGN: usize = 64;

// Header words (16 words = 128 bytes).
pub(crate) const H_MAGIC: usize = 0;
pub(crate) const H_VERSION: usize = 1;
pub(crate) const H_CLASS_COUNT: usize = 2;
pub(crate) const H_MAX_EXTENTS: usize = 3;
pub(crate) const H_CONTROL_WORDS: usize = 4;
pub(crate) const H_DATA_START: usize = 5;
pub(crate) const H_MAX_LEN: usize = 6;
pub(crate) const H_DATA_END: usize = 7;
pub(crate) const H_EPOCH: usize = 8;
pub(crate) const H_COMMITTED: usize = 9;
pub(crate) const H_GROW_REQUESTS: usize = 10;
/// Reclaim passes started (`reclaim_peer`, `sweep_lost_slots`): a cache that saw
/// no change since it stored a slot knows the slot was not taken from it.
pub(crate) const H_RECLAIMS: usize = 11;
pub(crate) const HEADER_WORDS: usize = 16;

// Class table: 8 words (one cache line) per class, right after the header.
pub(crate) const CLASS_TABLE: usize = HEADER_WORDS;
pub(crate) const CLASS_WORDS: usize = 8;
pub(crate) const C_SLOT_SIZE: usize = 0;
pub(crate) const C_SLOTS: usize = 1;
pub(crate) const C_EXTENTS: usize = 2;

// Extent records: 16 words (two cache lines); the free-list head alone on the first.
pub(crate) const EXT_WORDS: usize = 16;
pub(crate) const X_HEAD: usize = 0;
/// Words between two slots' metadata words: one 64-byte cache line each.
pub(crate) const META_STRIDE: usize = 8;
/// Word index of the metadata word of slot `slot` of extent `ext`, in a class
/// whose extent 0 starts its metadata at word `meta_base`, `slots` per extent.
#[inline(always)]
pub(crate) fn meta_index(meta_base: usize, slots: usize, ext: usize, slot: usize) -> usize {
    meta_base + (ext * slots + slot) * META_STRIDE
}
/// Word of a slot's metadata line holding its aux value (`set_aux` / `aux`).
pub(crate) const META_AUX: usize = 1;
pub(crate) const X_OFFSET: usize = 8;
pub(crate) const X_NODE: usize = 9;
/// In the `X_NODE` word: bit 32 set while the extent's pages are released.
pub(crate) const X_RELEASED: u64 = 1 << 32;
/// "No node" / "no index".
pub(crate) const NONE: u32 = u32::MAX;

// Slot metadata word: state (2 bits) | generation (30) | payload (32: next-free when
// Free, owner peer when Allocated / InFlight).
pub(crate) const S_FREE: u64 = 0;
pub(crate) const S_ALLOCATED: u64 = 1;
pub(crate) const S_IN_FLIGHT: u64 = 2;

#[inline]
pub(crate) const fn meta(state: u64, generation: u32, payload: u32) -> u64 {
    state | ((generation as u64) & GEN_MASK) << 2 | (payload as u64) << 32
}
#[inline]
pub(crate) const fn meta_state(m: u64) -> u64 {
    m & 3
}
#[inline]
pub(crate) const fn meta_gen(m: u64) -> u32 {
    ((m >> 2) & GEN_MASK) as u32
}
#[inline]
pub(crate) const fn meta_payload(m: u64) -> u32 {
    (m >> 32) as u32
}
/// The generation after `g`: 30 bits, skipping 0.
#[inline]
pub(crate) const fn next_gen(g: u32) -> u32 {
    let n = (g as u64 + 1) & GEN_MASK;
    // Branch-free: `n == 0` adds 1.
    (n + (n == 0) as u64) as u32
}

// Tagged free-list head: index (low 32, NONE = empty) | tag (high 32, +1 per CAS).
#[inline]
pub(crate) const fn head_index(h: u64) -> u32 {
    h as u32
}
#[inline]
pub(crate) const fn head_next(h: u64, index: u32) -> u64 {
    index as u64 | ((h >> 32).wrapping_add(1) & 0xffff_ffff) << 32
}

pub(crate) const fn round_up(x: usize, to: usize) -> Option<usize> {
    match x.checked_add(to - 1) {
        Some(v) => Some(v / to * to),
        None => None,
    }
}

/// What each process keeps about a class: validated once, read on the hot path
/// without touching shared memory.
#[derive(Debug, Clone)]
pub(crate) struct ClassInfo {
    pub(crate) slot_size: usize,
    pub(crate) slots: usize,
    pub(crate) extent_bytes: usize,
    /// Word index of this class's table entry.
    pub(crate) class_word: usize,
    /// Word index of extent 0's record.
    pub(crate) ext_base: usize,
    /// Word index of extent 0's first slot metadata word.
    pub(crate) meta_base: usize,
}

impl ClassInfo {
    /// Word index of the metadata word of slot `slot` of extent `ext`.
    #[inline(always)]
    pub(crate) fn meta_index(&self, ext: usize, slot: usize) -> usize {
        meta_index(self.meta_base, self.slots, ext, slot)
    }
}

/// The whole control-area layout, computed from `(slot_size, slots)` pairs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) classes: Box<[ClassInfo]>,
    pub(crate) max_extents: usize,
    pub(crate) control_words: usize,
}

/// Why a class table is unacceptable: the field and the class index.
pub(crate) type LayoutFault = (&'static str, usize);

impl Layout {
    pub(crate) fn compute(table: &[(u64, u64)], max_extents: u64) -> Result<Self, LayoutFault> {
        if table.is_empty() || table.len() > MAX_CLASSES {
            return Err(("class_count", 0));
        }
        if max_extents == 0 || max_extents > MAX_EXTENTS as u64 {
            return Err(("max_extents", 0));
        }
        let max_extents = max_extents as usize;
        let mut ext_base = CLASS_TABLE + table.len() * CLASS_WORDS;
        ext_base = round_up(ext_base, EXT_WORDS).ok_or(("class_count", 0))?;
        // Each slot's metadata word has a cache line of its own: peers working on
        // neighbouring slots (per-peer magazines, two threads on one class) would
        // otherwise fight over one line.
        let mut meta_base = round_up(ext_base + table.len() * max_extents * EXT_WORDS, META_STRIDE).ok_or(("class_count", 0))?;
        let mut classes = Vec::with_capacity(table.len());
        let mut prev = 0u64;
        for (i, &(slot_size, slots)) in table.iter().enumerate() {
            if slot_size == 0 || slot_size % SLOT_ALIGN as u64 != 0 || slot_size <= prev {
                return Err(("slot_size", i));
            }
            prev = slot_size;
            if slots == 0 || slots > MAX_SLOTS as u64 {
                return Err(("slots_per_extent", i));
            }
            let slot_size = usize::try_from(slot_size).map_err(|_| ("slot_size", i))?;
            let slots = slots as usize;
            let extent_bytes = slot_size
                .checked_mul(slots)
                .and_then(|b| round_up(b, EXTENT_ALIGN))
                .filter(|&b| b <= isize::MAX as usize / MAX_EXTENTS)
                .ok_or(("slot_size", i))?;
            classes.push(ClassInfo {
                slot_size,
                slots,
                extent_bytes,
                class_word: CLASS_TABLE + i * CLASS_WORDS,
                ext_base: ext_base + i * max_extents * EXT_WORDS,
                meta_base,
            });
            meta_base = slots
                .checked_mul(max_extents)
                .and_then(|n| n.checked_mul(META_STRIDE))
                .and_then(|n| meta_base.checked_add(n))
                .ok_or(("slots_per_extent", i))?;
        }
        Ok(Self { classes: classes.into_boxed_slice(), max_extents, control_words: meta_base })
    }
}

/// The shape of a new segment: size classes, extents per class, initial extents, node.
///
/// `Config::new()` starts with no classes; `Config::default()` is the reference table
/// 1 KiB×1024, 16 KiB×256, 256 KiB×32, 4 MiB×8 with 16 extents per class.
///
/// # Examples
///
/// ```
/// use numashm_varslot::Config;
/// let cfg = Config::new().class(256, 64).class(4096, 8).max_extents(4).initial_extents(1);
/// assert!(cfg.min_segment_len() > 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) classes: Vec<(u64, u64)>,
    pub(crate) max_extents: u32,
    pub(crate) initial_extents: u32,
    pub(crate) node: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
            .class(1 << 10, 1024)
            .class(16 << 10, 256)
            .class(256 << 10, 32)
            .class(4 << 20, 8)
            .max_extents(16)
    }
}

impl Config {
    /// No classes, 16 extents per class at most, 1 extent per class at creation, no node.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::new().class(64, 16);
    /// # drop(cfg);
    /// ```
    pub fn new() -> Self {
        Self { classes: Vec::new(), max_extents: 16, initial_extents: 1, node: None }
    }

    /// Add a class of `slots_per_extent` slots of `slot_size` bytes (a multiple of 64,
    /// larger than the previous class; checked at creation).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::new().class(64, 16).class(1024, 4);
    /// # drop(cfg);
    /// ```
    pub fn class(mut self, slot_size: usize, slots_per_extent: usize) -> Self {
        self.classes.push((slot_size as u64, slots_per_extent as u64));
        self
    }

    /// Most extents any class may grow to (1..=1024).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::default().max_extents(64);
    /// # drop(cfg);
    /// ```
    pub fn max_extents(mut self, n: u32) -> Self {
        self.max_extents = n;
        self
    }

    /// Extents each class gets at creation (0..=max_extents).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::default().initial_extents(2);
    /// # drop(cfg);
    /// ```
    pub fn initial_extents(mut self, n: u32) -> Self {
        self.initial_extents = n;
        self
    }

    /// NUMA node for the control area and the initial extents.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::default().node(Some(0));
    /// # drop(cfg);
    /// ```
    pub fn node(mut self, node: Option<u32>) -> Self {
        self.node = node;
        self
    }

    pub(crate) fn layout(&self) -> Result<Layout, CreateError> {
        if self.initial_extents > self.max_extents {
            return Err(CreateError::Config { field: "initial_extents", class: 0 });
        }
        Layout::compute(&self.classes, u64::from(self.max_extents))
            .map_err(|(field, class)| CreateError::Config { field, class })
    }

    /// Bytes of control area (header, tables, metadata) in a segment; 0 if invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_varslot::Config::default().control_len() > 128);
    /// ```
    pub fn control_len(&self) -> usize {
        self.layout().map(|l| l.control_words * 8).unwrap_or(0)
    }

    /// Smallest segment (`max_len`) that holds the control area plus the initial
    /// extents; 0 if the config is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::new().class(64, 4);
    /// assert_eq!(cfg.min_segment_len() % 4096, 0);
    /// ```
    pub fn min_segment_len(&self) -> usize {
        let data_start = round_up(self.control_len(), EXTENT_ALIGN).unwrap_or(0);
        data_start + self.data_len(self.initial_extents)
    }

    /// Data bytes for `extents` extents of every class (a heap allocator's memory).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm_varslot::Config::new().class(64, 4).max_extents(2);
    /// assert_eq!(cfg.data_len(2), 2 * 4096);
    /// ```
    pub fn data_len(&self, extents: u32) -> usize {
        match self.layout() {
            Ok(l) => l.classes.iter().map(|c| c.extent_bytes * extents as usize).sum(),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_word_round_trips() {
        let m = meta(S_IN_FLIGHT, (1 << 30) - 1, 0xdead_beef);
        assert_eq!(meta_state(m), S_IN_FLIGHT);
        assert_eq!(meta_gen(m), (1 << 30) - 1);
        assert_eq!(meta_payload(m), 0xdead_beef);
        assert_eq!(next_gen((1 << 30) - 1), 1);
    }

    #[test]
    fn head_tag_changes_on_every_update() {
        let h = head_next(0xffff_ffff_0000_0003, NONE);
        assert_eq!(head_index(h), NONE);
        assert_eq!(h >> 32, 0);
        assert_ne!(head_next(h, NONE), h);
    }

    #[test]
    fn classes_must_grow() {
        assert_eq!(Layout::compute(&[(128, 1), (64, 1)], 1).unwrap_err(), ("slot_size", 1));
        assert_eq!(Layout::compute(&[(100, 1)], 1).unwrap_err(), ("slot_size", 0));
        assert_eq!(Layout::compute(&[(64, 0)], 1).unwrap_err(), ("slots_per_extent", 0));
        assert_eq!(Layout::compute(&[(64, 1)], 0).unwrap_err(), ("max_extents", 0));
    }
}
