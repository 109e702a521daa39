//! The allocator: one lock-free algorithm over [`Words`] (where the atomics live) and
//! [`SegmentMemory`] (where the slot bytes live).
//!
//! SYNC points (each a Release/Acquire pair; see `docs/varslot.md`):
//! - `header-publish`: creator stores the magic (Release) after every header and class
//!   word; `attach` loads it (Acquire) before reading them.
//! - `extent-publish`: `grow` stores a class's extent count (Release) after the extent
//!   record, its slot metadata and its free-list head are initialised and the memory is
//!   grown and placed; every reader loads the count (Acquire) before touching an extent.
//! - `free-push`: a push onto an extent's free list is a Release CAS of the head, after
//!   the slot's metadata (its `next`) is stored and after the freeing peer's last write
//!   to the slot's bytes; a pop loads the head with Acquire, so the new owner sees both.
//! - `slot-state`: every CAS on a slot's metadata is AcqRel and `resolve` loads it with
//!   Acquire, so what a holder wrote before `mark_in_flight` / `take` / `free` is
//!   visible to whoever performs the next transition.

use crate::layout::*;
use crate::memory::{HeapMemory, SegmentMemory};
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::Mutex;
use crate::words::{HeapWords, Words};

// One part of the allocator each; children, so they share the private fields
// and the word helpers below.
mod census;
mod create;
mod grow;
mod hot;
mod raw;
mod reclaim;
mod transitions;

pub use census::{Census, ExtentCensus, Stats};
pub use hot::nodes_by_distance;
pub(crate) use transitions::recycle_word;

/// The lock-free variable-slot allocator.
///
/// `W` holds the control words (header, class and extent tables, slot metadata); `M`
/// holds the slot bytes. Every method takes `&self` and is lock-free except
/// [`grow`](Self::grow) and [`release_extent`](Self::release_extent), which the owner
/// serialises with a process-local lock. `alloc`, `free` and `resolve` make no system call
/// and allocate nothing (a `resolve` of a slot beyond this process's mapping calls
/// [`SegmentMemory::refresh`] once).
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HeapAllocator};
/// let a = HeapAllocator::new(&Config::default().max_extents(1)).unwrap();
/// let h = a.alloc(3000, 7).unwrap(); // served by the 16 KiB class
/// assert_eq!(h.class(), 1);
/// a.free(h).unwrap();
/// ```
#[derive(Debug)]
pub struct Allocator<W: Words, M: SegmentMemory> {
    words: W,
    mem: M,
    layout: Layout,
    data_start: usize,
    max_len: usize,
    owner: bool,
    /// Owner only: serialises `grow` / `release_extent` and holds the authoritative
    /// end of the data area (the shared `data_end` word is informational: a hostile
    /// guest could rewrite it).
    grow_lock: Mutex<OwnerState>,
}

/// What the owner keeps to itself about the data area, so that hostile rewrites of
/// shared words cannot steer `grow` or `release_extent` (which punches holes).
#[derive(Debug)]
struct OwnerState {
    data_end: usize,
    /// Offset of extent `e` of class `c` at `c * max_extents + e` (empty in guests).
    offsets: Vec<usize>,
    /// Extents this owner created per class: the shared count is a hint other
    /// peers can rewrite, so growth and release go by this one.
    extents: Vec<usize>,
    /// Whether this owner released extent `c * max_extents + e` (the shared
    /// released bit is for others to read, never to steer us).
    released: Vec<bool>,
}

/// The allocator with heap-owned words and heap memory: what tests, loom and miri run.
pub type HeapAllocator = Allocator<HeapWords, HeapMemory>;

/// Where a handle's slot lives, resolved against the local layout.
struct Loc<'a> {
    class: &'a ClassInfo,
    ext: usize,
    slot: usize,
}

/// The control words and the bound every computed index respects, copied out of
/// `&self` once per operation so the hot path keeps them in registers.
#[derive(Clone, Copy)]
struct Hot<'a> {
    w: &'a [AtomicU64],
    max_extents: usize,
}

impl<'a> Hot<'a> {
    /// Word `i`. Every index the allocator computes comes from the validated local
    /// layout (class < classes, extent < max_extents, slot < slots), so it is below
    /// `layout.control_words`, which `create` / `attach` checked against the word
    /// array's length; the check is therefore a `debug_assert!`.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn at(self, i: usize) -> &'a AtomicU64 {
        debug_assert!(i < self.w.len());
        // SAFETY: `i < layout.control_words <= w.len()` (see above): in bounds.
        unsafe { self.w.get_unchecked(i) }
    }

    #[inline(always)]
    fn ext_word(self, c: &ClassInfo, ext: usize, field: usize) -> &'a AtomicU64 {
        self.at(c.ext_base + ext * EXT_WORDS + field)
    }

    #[inline(always)]
    fn meta_word(self, c: &ClassInfo, ext: usize, slot: usize) -> &'a AtomicU64 {
        self.at(c.meta_index(ext, slot))
    }

    /// Published extent count of a class, capped by the local maximum (hostile input).
    #[inline(always)]
    fn extents(self, c: &ClassInfo) -> usize {
        // SYNC extent-publish (Acquire): pairs with the Release store in `grow`; the
        // extent records and metadata below this count are initialised.
        let n = self.at(c.class_word + C_EXTENTS).load(Ordering::Acquire);
        (n as usize).min(self.max_extents)
    }
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// The control words.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, Words};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// assert!(a.words().words().len() >= 16);
    /// ```
    pub fn words(&self) -> &W {
        &self.words
    }

    /// The segment memory.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, SegmentMemory};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// assert!(a.memory().mapped_len() >= 4096);
    /// ```
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether this process created the segment (and so may grow and release).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// assert!(HeapAllocator::new(&Config::new().class(64, 1)).unwrap().is_owner());
    /// ```
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Number of size classes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// assert_eq!(HeapAllocator::new(&Config::default().max_extents(1)).unwrap().class_count(), 4);
    /// ```
    pub fn class_count(&self) -> usize {
        self.layout.classes.len()
    }

    /// Slot size of `class`, `None` if there is no such class.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// assert_eq!(a.slot_size(0), Some(64));
    /// assert_eq!(a.slot_size(1), None);
    /// ```
    pub fn slot_size(&self, class: usize) -> Option<usize> {
        self.layout.classes.get(class).map(|c| c.slot_size)
    }

    /// Slots per extent of `class`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 5)).unwrap();
    /// assert_eq!(a.slots_per_extent(0), Some(5));
    /// ```
    pub fn slots_per_extent(&self, class: usize) -> Option<usize> {
        self.layout.classes.get(class).map(|c| c.slots)
    }

    /// Published extents of `class` (0 for no such class).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).initial_extents(2)).unwrap();
    /// assert_eq!(a.extent_count(0), 2);
    /// ```
    pub fn extent_count(&self, class: usize) -> usize {
        self.layout.classes.get(class).map_or(0, |c| self.extents(c))
    }

    #[inline(always)]
    fn hot(&self) -> Hot<'_> {
        debug_assert!(self.layout.control_words <= self.words.words().len());
        Hot { w: self.words.words(), max_extents: self.layout.max_extents }
    }

    #[inline]
    fn w(&self, i: usize) -> &AtomicU64 {
        self.hot().at(i)
    }

    #[inline]
    fn ext_word(&self, c: &ClassInfo, ext: usize, field: usize) -> &AtomicU64 {
        self.hot().ext_word(c, ext, field)
    }

    #[inline]
    fn meta_word(&self, c: &ClassInfo, ext: usize, slot: usize) -> &AtomicU64 {
        self.hot().meta_word(c, ext, slot)
    }

    #[inline]
    fn extents(&self, c: &ClassInfo) -> usize {
        self.hot().extents(c)
    }
}
