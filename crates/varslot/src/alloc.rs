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

use crate::error::{AllocError, AttachError, CreateError, GrowError, HandleError, ReleaseError, SlotState};
use crate::handle::{Handle, PeerId};
use crate::layout::*;
use crate::memory::{HeapMemory, MemoryError, SegmentMemory};
use crate::slot::Slot;
use crate::sync::{spin_loop, AtomicU64, Mutex, Ordering};
use crate::words::{HeapWords, Words};

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

/// Counters from [`Allocator::inspect`].
///
/// # Examples
///
/// ```
/// # use numashm_varslot::{Config, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 64)).unwrap();
/// let s = a.inspect();
/// assert_eq!(s.committed_bytes, 4096);
/// assert!(s.reserved_bytes >= s.committed_bytes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the segment may ever use (its `max_len`).
    pub reserved_bytes: u64,
    /// Bytes committed: the control area (in a segment) plus every extent not released.
    pub committed_bytes: u64,
    /// End of the last extent, in bytes from the base.
    pub data_end: u64,
    /// Bumped after every publish, release and recommit.
    pub epoch: u64,
    /// Bit `c` set: some peer found class `c` exhausted and asks the owner to grow it.
    pub grow_requests: u64,
}

/// Slot counts of one extent, from [`Allocator::census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentCensus {
    /// Class index.
    pub class: usize,
    /// Extent index within the class.
    pub extent: usize,
    /// Free slots.
    pub free: usize,
    /// Allocated slots.
    pub allocated: usize,
    /// Slots in flight.
    pub in_flight: usize,
}

/// Result of [`Allocator::census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// Per extent, in class order.
    pub extents: Vec<ExtentCensus>,
    /// `(owner, allocated, in flight)` per owner, ascending.
    pub owners: Vec<(PeerId, usize, usize)>,
}

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

impl HeapAllocator {
    /// A heap allocator for `cfg`: room for `max_extents` extents of every class,
    /// `initial_extents` of them created now.
    ///
    /// # Errors
    ///
    /// [`CreateError::Config`] for a bad configuration, [`CreateError::Memory`] if the
    /// heap allocation fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = numashm_varslot::HeapAllocator::new(&numashm_varslot::Config::new().class(64, 8)).unwrap();
    /// assert_eq!(a.class_count(), 1);
    /// ```
    pub fn new(cfg: &Config) -> Result<Self, CreateError> {
        let layout = cfg.layout()?;
        let mem = HeapMemory::new(cfg.data_len(cfg.max_extents).max(1))?;
        Self::create_with(cfg, HeapWords::new(layout.control_words), mem)
    }
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// Create a segment: `words` (at least the control area, its content ignored) and
    /// `mem`, whose data area starts at offset 0. The caller becomes the owner.
    ///
    /// # Errors
    ///
    /// [`CreateError::Config`], [`CreateError::TooSmall`] when `words` is short,
    /// [`CreateError::Grow`] when the initial extents do not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use numashm_varslot::{Allocator, Config, HeapMemory, HeapWords};
    /// let cfg = Config::new().class(64, 4);
    /// let words = Arc::new(HeapWords::new(1024));
    /// let mem = Arc::new(HeapMemory::new(cfg.data_len(16)).unwrap());
    /// let owner = Allocator::create_with(&cfg, words.clone(), mem.clone()).unwrap();
    /// let guest = Allocator::attach_with(words, mem).unwrap();
    /// let h = guest.alloc(1, 2).unwrap();
    /// owner.free(h).unwrap();
    /// ```
    pub fn create_with(cfg: &Config, words: W, mem: M) -> Result<Self, CreateError> {
        Self::create_at(cfg, words, mem, 0)
    }

    pub(crate) fn create_at(cfg: &Config, words: W, mem: M, data_start: usize) -> Result<Self, CreateError> {
        let layout = cfg.layout()?;
        let w = words.words();
        if w.len() < layout.control_words {
            return Err(CreateError::TooSmall { needed: layout.control_words, available: w.len() });
        }
        let max_len = mem.max_len();
        if max_len < data_start {
            return Err(CreateError::TooSmall { needed: data_start, available: max_len });
        }
        // Relaxed (all stores below): nobody reads this area before the Release store of
        // the magic (SYNC header-publish) or of an extent count (SYNC extent-publish).
        for word in &w[..CLASS_TABLE + layout.classes.len() * CLASS_WORDS] {
            word.store(0, Ordering::Relaxed);
        }
        w[H_VERSION].store(VERSION, Ordering::Relaxed);
        w[H_CLASS_COUNT].store(layout.classes.len() as u64, Ordering::Relaxed);
        w[H_MAX_EXTENTS].store(layout.max_extents as u64, Ordering::Relaxed);
        w[H_CONTROL_WORDS].store(layout.control_words as u64, Ordering::Relaxed);
        w[H_DATA_START].store(data_start as u64, Ordering::Relaxed);
        w[H_MAX_LEN].store(max_len as u64, Ordering::Relaxed);
        w[H_DATA_END].store(data_start as u64, Ordering::Relaxed);
        w[H_COMMITTED].store(data_start as u64, Ordering::Relaxed);
        for c in layout.classes.iter() {
            w[c.class_word + C_SLOT_SIZE].store(c.slot_size as u64, Ordering::Relaxed);
            w[c.class_word + C_SLOTS].store(c.slots as u64, Ordering::Relaxed);
        }
        // SYNC header-publish (Release): every word above is visible to an attacher
        // that Acquire-loads the magic.
        w[H_MAGIC].store(MAGIC, Ordering::Release);
        let owned = OwnerState {
            data_end: data_start,
            offsets: vec![usize::MAX; layout_len(&layout)],
            extents: vec![0; layout.classes.len()],
            released: vec![false; layout_len(&layout)],
        };
        let grow_lock = Mutex::new(owned);
        let this = Self { words, mem, layout, data_start, max_len, owner: true, grow_lock };
        for class in 0..this.layout.classes.len() {
            for _ in 0..cfg.initial_extents {
                this.grow(class, cfg.node)?;
            }
        }
        Ok(this)
    }

    /// Attach as a guest to a segment created by [`create_with`](Self::create_with) in
    /// the same `words` and `mem`. Every field is validated first.
    ///
    /// # Errors
    ///
    /// [`AttachError::BadField`] naming the first impossible field,
    /// [`AttachError::Memory`] if mapping the owner's growth fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{Allocator, AttachError, HeapMemory, HeapWords};
    /// let e = Allocator::attach_with(HeapWords::new(64), HeapMemory::new(4096).unwrap());
    /// assert!(matches!(e, Err(AttachError::BadField { field: "magic", .. })));
    /// ```
    pub fn attach_with(words: W, mem: M) -> Result<Self, AttachError> {
        Self::attach_at(words, mem, 0)
    }

    pub(crate) fn attach_at(words: W, mem: M, min_data_start: usize) -> Result<Self, AttachError> {
        // The values validated are the values kept: nothing is re-read from the segment.
        let (layout, data_start, max_len) = validate(words.words(), &mem, min_data_start)?;
        Ok(Self { words, mem, layout, data_start, max_len, owner: false, grow_lock: Mutex::new(OwnerState { data_end: data_start, offsets: Vec::new(), extents: Vec::new(), released: Vec::new() }) })
    }

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

    /// NUMA node recorded for an extent, and whether its pages are released.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).node(Some(1))).unwrap();
    /// assert_eq!(a.extent_info(0, 0), Some((Some(1), false)));
    /// ```
    pub fn extent_info(&self, class: usize, extent: usize) -> Option<(Option<u32>, bool)> {
        let c = self.layout.classes.get(class)?;
        if extent >= self.extents(c) {
            return None;
        }
        // Relaxed: ordered after the extent-publish Acquire in `extents`; a hint anyway.
        let n = self.ext_word(c, extent, X_NODE).load(Ordering::Relaxed);
        let node = n as u32;
        Some(((node != NONE).then_some(node), n & X_RELEASED != 0))
    }

    /// Committed versus reserved bytes, growth epoch and pending grow requests.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// assert_eq!(a.inspect().epoch, 1);
    /// ```
    pub fn inspect(&self) -> Stats {
        let w = self.words.words();
        // Relaxed: statistics; no data is read on their strength.
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        Stats {
            reserved_bytes: self.max_len as u64,
            committed_bytes: r(H_COMMITTED),
            data_end: r(H_DATA_END),
            epoch: r(H_EPOCH),
            grow_requests: r(H_GROW_REQUESTS),
        }
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

    /// Smallest class whose slots hold `len` bytes.
    ///
    /// # Errors
    ///
    /// [`AllocError::TooLarge`] beyond the largest class.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).class(1024, 1)).unwrap();
    /// assert_eq!(a.class_for(100), Ok(1));
    /// assert!(a.class_for(2000).is_err());
    /// ```
    #[inline]
    pub fn class_for(&self, len: usize) -> Result<usize, AllocError> {
        for (i, c) in self.layout.classes.iter().enumerate() {
            if len <= c.slot_size {
                return Ok(i);
            }
        }
        let max = self.layout.classes.last().map_or(0, |c| c.slot_size);
        Err(AllocError::TooLarge { len, max })
    }

    /// Allocate a slot of at least `len` bytes for `peer` from the smallest class that
    /// fits, trying the class's extents in order.
    ///
    /// # Errors
    ///
    /// [`AllocError::TooLarge`] when no class fits; [`AllocError::Exhausted`] when the
    /// class is full (its bit in the grow-request word is then set);
    /// [`AllocError::Corrupt`] when a free list is corrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{AllocError, Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(64, 3).unwrap();
    /// assert_eq!(a.alloc(1, 3), Err(AllocError::Exhausted { class: 0 }));
    /// assert_eq!(a.inspect().grow_requests, 1);
    /// # a.free(h).unwrap();
    /// ```
    #[inline]
    pub fn alloc(&self, len: usize, peer: PeerId) -> Result<Handle, AllocError> {
        let hot = self.hot();
        let class = self.class_for(len)?;
        let c = &self.layout.classes[class];
        let n = hot.extents(c);
        for ext in 0..n {
            if let Some(h) = self.pop(hot, c, class, ext, peer)? {
                return Ok(h);
            }
        }
        Err(self.exhausted(class))
    }

    /// Like [`alloc`](Self::alloc), preferring extents on the nodes of `order` (nearest
    /// first: e.g. the caller's node, then the others by distance, see
    /// [`crate::nodes_by_distance`]); falls back to any extent.
    ///
    /// # Errors
    ///
    /// As [`alloc`](Self::alloc).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).max_extents(2)).unwrap();
    /// a.grow(0, Some(1)).unwrap();
    /// let h = a.alloc_on(1, 0, &[1, 0]).unwrap();
    /// assert_eq!(h.extent(), 1);
    /// ```
    pub fn alloc_on(&self, len: usize, peer: PeerId, order: &[u32]) -> Result<Handle, AllocError> {
        let hot = self.hot();
        let class = self.class_for(len)?;
        let c = &self.layout.classes[class];
        let n = hot.extents(c);
        for &node in order {
            for ext in 0..n {
                // Relaxed: placement is a preference; a stale node only costs locality.
                if hot.ext_word(c, ext, X_NODE).load(Ordering::Relaxed) as u32 == node {
                    if let Some(h) = self.pop(hot, c, class, ext, peer)? {
                        return Ok(h);
                    }
                }
            }
        }
        for ext in 0..n {
            if let Some(h) = self.pop(hot, c, class, ext, peer)? {
                return Ok(h);
            }
        }
        Err(self.exhausted(class))
    }

    #[cold]
    fn exhausted(&self, class: usize) -> AllocError {
        // Relaxed: a request flag; the owner reacts with `grow`, whose publication has
        // its own SYNC point.
        self.w(H_GROW_REQUESTS).fetch_or(1 << class, Ordering::Relaxed);
        AllocError::Exhausted { class }
    }

    /// Owner: take (and clear) the grow-request bits set by exhausted allocations.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).initial_extents(0)).unwrap();
    /// assert!(a.alloc(1, 0).is_err());
    /// assert_eq!(a.take_grow_requests(), 1);
    /// assert_eq!(a.take_grow_requests(), 0);
    /// ```
    pub fn take_grow_requests(&self) -> u64 {
        // Relaxed: see `exhausted`.
        self.w(H_GROW_REQUESTS).swap(0, Ordering::Relaxed)
    }

    /// Pop one slot from an extent's free list (Treiber stack, tagged head).
    #[inline(always)]
    fn pop(&self, hot: Hot<'_>, c: &ClassInfo, class: usize, ext: usize, peer: PeerId) -> Result<Option<Handle>, AllocError> {
        let head_w = hot.ext_word(c, ext, X_HEAD);
        // SYNC free-push (Acquire): see the pushed slot's metadata and the last
        // owner's writes to its bytes.
        let mut head = head_w.load(Ordering::Acquire);
        loop {
            let idx = head_index(head);
            if idx == NONE {
                return Ok(None);
            }
            let mut good = (idx as usize) < c.slots;
            let mut m = 0;
            if good {
                // Relaxed: ordered after the Acquire of `head`, which published it; a
                // stale value can only come with a head that has moved (the CAS fails).
                m = hot.meta_word(c, ext, idx as usize).load(Ordering::Relaxed);
                let next = meta_payload(m);
                good = meta_state(m) == S_FREE
                    && meta_gen(m) != 0
                    && (next == NONE || (next as usize) < c.slots);
            }
            if !good {
                // Either we raced with a pop (the head moved) or the segment is corrupt.
                // A CAS reads the latest head: unchanged means corrupt.
                // Acquire: as the first load (SYNC free-push).
                match head_w.compare_exchange(head, head, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => return Err(AllocError::Corrupt { what: "free-list head" }),
                    Err(cur) => {
                        head = cur;
                        continue;
                    }
                }
            }
            let new = head_next(head, meta_payload(m));
            // Acquire on both: a failure reloads the head for the next try (SYNC
            // free-push); success needs nothing published by us.
            match head_w.compare_exchange(head, new, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    let g = meta_gen(m);
                    // Relaxed: the slot is ours alone now; later transitions are CASes
                    // (SYNC slot-state) and handoffs to other peers synchronise there.
                    hot.meta_word(c, ext, idx as usize).store(meta(S_ALLOCATED, g, peer), Ordering::Relaxed);
                    // `class`, `ext`, `idx` are in range (local layout); `g != 0` checked.
                    return Ok(Handle::pack_in_range(class, ext, idx as usize, g));
                }
                Err(cur) => {
                    head = cur;
                    spin_loop();
                }
            }
        }
    }

    /// Push a slot whose metadata we just turned Free (generation `g`) onto its list.
    #[inline(always)]
    fn push(&self, hot: Hot<'_>, c: &ClassInfo, ext: usize, slot: usize, g: u32, mut head: u64) {
        let head_w = hot.ext_word(c, ext, X_HEAD);
        let meta_w = hot.meta_word(c, ext, slot);
        loop {
            // SYNC free-push (Release): our metadata store (next) and every earlier write
            // to the slot's bytes happen-before the next pop. Failure: Relaxed, we only
            // need the new value to link to (published by the Release we will do).
            match head_w.compare_exchange(head, head_next(head, slot as u32), Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(cur) => {
                    head = cur;
                    // Relaxed: published by the Release CAS that follows.
                    meta_w.store(meta(S_FREE, g, head_index(cur)), Ordering::Relaxed);
                    spin_loop();
                }
            }
        }
    }

    /// Stores `value` in the slot's spare metadata word (each slot's metadata has
    /// a cache line of its own, with room beside the state word): a length or a
    /// tag that travels with the slot without touching its bytes. Only the slot's
    /// holder writes it; the next state transition (`mark_in_flight`, `free`)
    /// publishes it to whoever makes the transition after that.
    ///
    /// # Errors
    ///
    /// [`HandleError::Invalid`] for fields outside the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
    /// let h = a.alloc(10, 1).unwrap();
    /// a.set_aux(h, 10).unwrap();
    /// a.mark_in_flight(h, 2).unwrap();
    /// a.take(h, 2).unwrap();
    /// assert_eq!(a.aux(h).unwrap(), 10);
    /// ```
    #[inline]
    pub fn set_aux(&self, h: Handle, value: u64) -> Result<(), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        // Relaxed: published by the holder's next AcqRel transition (SYNC slot-state).
        hot.at(l.class.meta_index(l.ext, l.slot) + META_AUX).store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Reads the slot's spare metadata word (see [`set_aux`](Self::set_aux)).
    /// Hostile like every shared word: check it before use.
    ///
    /// # Errors
    ///
    /// [`HandleError::Invalid`] for fields outside the segment.
    ///
    /// # Examples
    ///
    /// See [`set_aux`](Self::set_aux).
    #[inline]
    pub fn aux(&self, h: Handle) -> Result<u64, HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        // Relaxed: the caller's transition (take / resolve's Acquire) ordered us
        // after the writer's publishing CAS.
        Ok(hot.at(l.class.meta_index(l.ext, l.slot) + META_AUX).load(Ordering::Relaxed))
    }

    /// Resolve a handle against the local layout and the published extent count.
    #[inline(always)]
    fn locate<'s>(&'s self, hot: Hot<'s>, h: Handle) -> Result<Loc<'s>, HandleError> {
        let c = self.layout.classes.get(h.class()).ok_or(HandleError::Invalid { field: "class" })?;
        if h.extent() >= hot.extents(c) {
            return Err(HandleError::Invalid { field: "extent" });
        }
        if h.slot() >= c.slots {
            return Err(HandleError::Invalid { field: "slot" });
        }
        Ok(Loc { class: c, ext: h.extent(), slot: h.slot() })
    }

    /// CAS a slot's metadata from a state accepted by `from` to Free (next generation)
    /// and push it. Returns `Ok(false)` when `from` declines the current value.
    fn to_free(&self, l: &Loc<'_>, mut from: impl FnMut(u64) -> Result<bool, HandleError>) -> Result<bool, HandleError> {
        let meta_w = self.meta_word(l.class, l.ext, l.slot);
        let head_w = self.ext_word(l.class, l.ext, X_HEAD);
        // Relaxed (both): first guesses; the CASes below validate them.
        let mut cur = meta_w.load(Ordering::Relaxed);
        let head = head_w.load(Ordering::Relaxed);
        loop {
            if !from(cur)? {
                return Ok(false);
            }
            let g = next_gen(meta_gen(cur));
            // SYNC slot-state (AcqRel): exactly one of racing free / reclaim wins, and it
            // sees what the holder did. Failure Relaxed: we only re-check the new value.
            match meta_w.compare_exchange(cur, meta(S_FREE, g, head_index(head)), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.push(self.hot(), l.class, l.ext, l.slot, g, head);
                    return Ok(true);
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Free a slot (Allocated or InFlight) so it can be allocated again; its
    /// generation moves on, so `h` and every copy of it become stale.
    ///
    /// # Errors
    ///
    /// [`HandleError::Stale`] for a stale handle or a double free (also when two peers
    /// race to free the same handle: exactly one succeeds), [`HandleError::Invalid`] for
    /// fields outside the segment, [`HandleError::Corrupt`] for a corrupt metadata word.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 0).unwrap();
    /// a.free(h).unwrap();
    /// assert_ne!(a.alloc(1, 0).unwrap(), h); // same slot, new generation
    /// ```
    #[inline]
    pub fn free(&self, h: Handle) -> Result<(), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let meta_w = hot.meta_word(l.class, l.ext, l.slot);
        // Relaxed (both): first guesses; the CASes validate them.
        let mut cur = meta_w.load(Ordering::Relaxed);
        let head = hot.ext_word(l.class, l.ext, X_HEAD).load(Ordering::Relaxed);
        let g = next_gen(h.generation());
        loop {
            check(cur, h)?;
            // SYNC slot-state (AcqRel): as in `to_free`.
            match meta_w.compare_exchange(cur, meta(S_FREE, g, head_index(head)), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.push(hot, l.class, l.ext, l.slot, g, head);
        Ok(())
    }

    /// Cache support (the [`Magazine`](crate::Magazine), the facade's slot cache):
    /// turn a live handle (Allocated or InFlight) into a fresh handle of the same
    /// slot, Allocated to `peer` with the next generation (so `h` and its copies
    /// die exactly as with `free`), without putting the slot on a free list.
    ///
    /// # Errors
    ///
    /// As [`free`](Self::free).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HandleError, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 1).unwrap();
    /// let fresh = a.recycle(h, 1).unwrap();
    /// assert_eq!(a.free(h), Err(HandleError::Stale));
    /// assert!(a.still_ours(fresh, 1));
    /// ```
    #[inline]
    pub fn recycle(&self, h: Handle, peer: PeerId) -> Result<Handle, HandleError> {
        self.recycle_indexed(h, peer).map(|(fresh, _)| fresh)
    }

    /// Magazine support: the validated local layout and the control words.
    pub(crate) fn layout_and_words(&self) -> (&Layout, &[AtomicU64]) {
        (&self.layout, self.hot().w)
    }

    /// [`recycle`](Self::recycle) that also returns the index of the slot's
    /// metadata word (for the magazine, which re-checks cached slots by it).
    #[inline(always)]
    pub(crate) fn recycle_indexed(&self, h: Handle, peer: PeerId) -> Result<(Handle, usize), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let idx = l.class.meta_index(l.ext, l.slot);
        // The guess: a slot its holder `peer` recycles is usually Allocated to it.
        let (fresh, _) = recycle_word(hot.at(idx), h, meta(S_ALLOCATED, h.generation(), peer), peer)?;
        Ok((fresh, idx))
    }
    /// Cache support: is the slot still Allocated to `peer` under `h`'s generation
    /// (it is not if someone reclaimed `peer` while it was alive)?
    ///
    /// # Examples
    ///
    /// See [`recycle`](Self::recycle).
    #[inline]
    pub fn still_ours(&self, h: Handle, peer: PeerId) -> bool {
        let hot = self.hot();
        match self.locate(hot, h) {
            // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
            Ok(l) => hot.meta_word(l.class, l.ext, l.slot).load(Ordering::Acquire) == meta(S_ALLOCATED, h.generation(), peer),
            Err(_) => false,
        }
    }

    /// Allocated → InFlight, recording `to` (the receiving peer, who will free it) as
    /// owner: call before pushing the handle into a ring.
    ///
    /// # Errors
    ///
    /// [`HandleError::Stale`], [`HandleError::WrongState`] if already InFlight,
    /// [`HandleError::Invalid`], [`HandleError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, SlotState};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 1).unwrap();
    /// a.mark_in_flight(h, 2).unwrap();
    /// assert_eq!(a.state(h), Ok((SlotState::InFlight, 2)));
    /// ```
    pub fn mark_in_flight(&self, h: Handle, to: PeerId) -> Result<(), HandleError> {
        self.transition(h, S_ALLOCATED, S_IN_FLIGHT, to)
    }

    /// InFlight → Allocated, owned by `peer`: the receiver keeps the slot instead of
    /// freeing it right away.
    ///
    /// # Errors
    ///
    /// As [`mark_in_flight`](Self::mark_in_flight) (WrongState if not InFlight).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, SlotState};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 1).unwrap();
    /// a.mark_in_flight(h, 2).unwrap();
    /// a.take(h, 2).unwrap();
    /// assert_eq!(a.state(h), Ok((SlotState::Allocated, 2)));
    /// ```
    pub fn take(&self, h: Handle, peer: PeerId) -> Result<(), HandleError> {
        self.transition(h, S_IN_FLIGHT, S_ALLOCATED, peer)
    }

    fn transition(&self, h: Handle, from: u64, to: u64, peer: PeerId) -> Result<(), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let meta_w = hot.meta_word(l.class, l.ext, l.slot);
        // Relaxed: a first guess, validated by the CAS.
        let mut cur = meta_w.load(Ordering::Relaxed);
        loop {
            let state = check(cur, h)?;
            if meta_state(cur) != from {
                return Err(HandleError::WrongState { found: state });
            }
            // SYNC slot-state (AcqRel): publishes the holder's writes to the next holder.
            // Failure Relaxed: we re-check the new value.
            match meta_w.compare_exchange(cur, meta(to, h.generation(), peer), Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// State and owner of the slot `h` names (owner is 0 for a free slot).
    ///
    /// # Errors
    ///
    /// [`HandleError::Stale`] once the slot has been freed, [`HandleError::Invalid`],
    /// [`HandleError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HandleError, HeapAllocator, SlotState};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 9).unwrap();
    /// assert_eq!(a.state(h), Ok((SlotState::Allocated, 9)));
    /// a.free(h).unwrap();
    /// assert_eq!(a.state(h), Err(HandleError::Stale));
    /// ```
    pub fn state(&self, h: Handle) -> Result<(SlotState, PeerId), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
        let m = hot.meta_word(l.class, l.ext, l.slot).load(Ordering::Acquire);
        Ok((check(m, h)?, meta_payload(m)))
    }

    /// The bytes of a live (Allocated or InFlight) slot. A slot beyond this process's
    /// mapping triggers one [`SegmentMemory::refresh`].
    ///
    /// # Errors
    ///
    /// [`HandleError::Stale`], [`HandleError::Invalid`], [`HandleError::Corrupt`] (also
    /// for an extent offset outside the segment), [`HandleError::NotMapped`],
    /// [`HandleError::Memory`] if the refresh fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 0).unwrap();
    /// let s = a.resolve(h).unwrap();
    /// assert_eq!(s.len(), 64);
    /// ```
    #[inline]
    pub fn resolve(&self, h: Handle) -> Result<Slot<'_>, HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let c = l.class;
        // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
        let m = hot.meta_word(c, l.ext, l.slot).load(Ordering::Acquire);
        check(m, h)?;
        // Relaxed: written before the extent-publish Release that `locate` acquired.
        let off = hot.ext_word(c, l.ext, X_OFFSET).load(Ordering::Relaxed) as usize;
        if off < self.data_start || off > self.max_len.saturating_sub(c.extent_bytes) {
            return Err(HandleError::Corrupt { what: "extent offset" });
        }
        // In range: off + extent_bytes <= max_len, and slot < slots.
        let start = off + l.slot * c.slot_size;
        let end = start + c.slot_size;
        if end > self.mem.mapped_len() {
            self.refresh_for(end)?;
        }
        let p = self.mem.base().as_ptr().wrapping_add(start);
        core::ptr::NonNull::new(p).map(|p| Slot::new(p, c.slot_size)).ok_or(HandleError::NotMapped)
    }

    /// `Located` support: where a handle's slot is (metadata word index, byte
    /// offset, size), validated as in `resolve` but without reading its state.
    #[inline(always)]
    pub(crate) fn where_is(&self, h: Handle) -> Result<(usize, usize, usize), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let c = l.class;
        // Relaxed: written before the extent-publish Release that `locate` acquired.
        let off = hot.ext_word(c, l.ext, X_OFFSET).load(Ordering::Relaxed) as usize;
        if off < self.data_start || off > self.max_len.saturating_sub(c.extent_bytes) {
            return Err(HandleError::Corrupt { what: "extent offset" });
        }
        let meta_index = c.meta_index(l.ext, l.slot);
        Ok((meta_index, off + l.slot * c.slot_size, c.slot_size))
    }

    /// `Located` support: control word `i`, checked (a `Located` may come from
    /// another allocator).
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> Result<&AtomicU64, HandleError> {
        self.words.words().get(i).ok_or(HandleError::Invalid { field: "located slot" })
    }

    /// `Located` support: the aux word of the slot whose metadata word is `i`.
    #[inline(always)]
    pub(crate) fn aux_word(&self, i: usize) -> Result<&AtomicU64, HandleError> {
        self.word(i + META_AUX)
    }

    /// `Located` support: `check` without the state.
    #[inline(always)]
    pub(crate) fn check_live(&self, m: u64, h: Handle) -> Result<(), HandleError> {
        check(m, h).map(|_| ())
    }

    /// `Located` support: the bytes at `offset .. offset + size` (validated when
    /// the `Located` was made; the end is checked against `max_len` again).
    #[inline(always)]
    pub(crate) fn slot_at(&self, offset: usize, size: usize) -> Result<Slot<'_>, HandleError> {
        let end = offset.checked_add(size).filter(|&e| e <= self.max_len).ok_or(HandleError::Invalid { field: "located slot" })?;
        if end > self.mem.mapped_len() {
            self.refresh_for(end)?;
        }
        let p = self.mem.base().as_ptr().wrapping_add(offset);
        core::ptr::NonNull::new(p).map(|p| Slot::new(p, size)).ok_or(HandleError::NotMapped)
    }

    #[cold]
    fn refresh_for(&self, end: usize) -> Result<(), HandleError> {
        self.mem.refresh()?;
        if end > self.mem.mapped_len() {
            return Err(HandleError::NotMapped);
        }
        Ok(())
    }

    /// Free every slot owned by `peer` (Allocated or InFlight), bumping generations so
    /// its handles die. Each slot is reclaimed exactly once even if reclaimers (or a
    /// late `free`) race. Returns how many slots this call freed.
    ///
    /// A peer that dies between popping a slot and recording itself as owner leaks that
    /// one slot (it reads Free but is on no list).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HandleError, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let h = a.alloc(1, 5).unwrap();
    /// let _mine = a.alloc(1, 6).unwrap();
    /// assert_eq!(a.reclaim_peer(5), 1);
    /// assert_eq!(a.reclaim_peer(5), 0);
    /// assert_eq!(a.free(h), Err(HandleError::Stale));
    /// ```
    pub fn reclaim_peer(&self, peer: PeerId) -> usize {
        self.count_reclaim();
        let mut n = 0;
        for c in self.layout.classes.iter() {
            for ext in 0..self.extents(c) {
                for slot in 0..c.slots {
                    let l = Loc { class: c, ext, slot };
                    let owned = |m: u64| {
                        let s = meta_state(m);
                        Ok((s == S_ALLOCATED || s == S_IN_FLIGHT) && meta_payload(m) == peer)
                    };
                    if let Ok(true) = self.to_free(&l, owned) {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Counts the slots of every extent by state, and the slots each owner holds,
    /// by reading the metadata words once (a snapshot: concurrent operations may
    /// move a slot between counts while it runs). Read-only: inspectors use it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let h = a.alloc(1, 9).unwrap();
    /// a.mark_in_flight(a.alloc(1, 9).unwrap(), 3).unwrap();
    /// let c = a.census();
    /// assert_eq!((c.extents[0].free, c.extents[0].allocated, c.extents[0].in_flight), (2, 1, 1));
    /// assert_eq!(c.owners, vec![(3, 0, 1), (9, 1, 0)]);
    /// # a.free(h).unwrap();
    /// ```
    pub fn census(&self) -> Census {
        let mut extents = Vec::new();
        let mut owners: std::collections::BTreeMap<PeerId, (usize, usize)> = std::collections::BTreeMap::new();
        for (class, c) in self.layout.classes.iter().enumerate() {
            for ext in 0..self.extents(c) {
                let mut e = ExtentCensus { class, extent: ext, free: 0, allocated: 0, in_flight: 0 };
                for slot in 0..c.slots {
                    // Relaxed: a statistic; every word is read once.
                    let m = self.meta_word(c, ext, slot).load(Ordering::Relaxed);
                    match meta_state(m) {
                        S_FREE => e.free += 1,
                        S_ALLOCATED => {
                            e.allocated += 1;
                            owners.entry(meta_payload(m)).or_default().0 += 1;
                        }
                        S_IN_FLIGHT => {
                            e.in_flight += 1;
                            owners.entry(meta_payload(m)).or_default().1 += 1;
                        }
                        _ => {}
                    }
                }
                extents.push(e);
            }
        }
        Census { extents, owners: owners.into_iter().map(|(p, (a, f))| (p, a, f)).collect() }
    }

    /// Handles of every slot `peer` owns (Allocated, or in flight to it), read
    /// from the metadata words (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let h = a.alloc(1, 5).unwrap();
    /// assert_eq!(a.owned_by(5), vec![h]);
    /// assert!(a.owned_by(6).is_empty());
    /// ```
    pub fn owned_by(&self, peer: PeerId) -> Vec<Handle> {
        let mut out = Vec::new();
        for (class, c) in self.layout.classes.iter().enumerate() {
            for ext in 0..self.extents(c) {
                for slot in 0..c.slots {
                    // Relaxed: a snapshot; callers act through CASes that re-check.
                    let m = self.meta_word(c, ext, slot).load(Ordering::Relaxed);
                    let s = meta_state(m);
                    if (s == S_ALLOCATED || s == S_IN_FLIGHT) && meta_payload(m) == peer {
                        if let Some(h) = Handle::pack_in_range(class, ext, slot, meta_gen(m)) {
                            out.push(h);
                        }
                    }
                }
            }
        }
        out
    }

    /// Finds slots that are Free but on no free list and puts them back; returns
    /// how many. A slot is lost that way when a process dies in the few
    /// instructions between a free-list CAS and the slot's metadata update: after
    /// popping it in `alloc` (still reads Free), or after marking it Free in `free`
    /// and before pushing it. [`reclaim_peer`](Self::reclaim_peer) cannot see such
    /// a slot (it has no owner any more); this sweep can, but only while nobody
    /// else touches the allocator.
    ///
    /// Released extents are left alone. A cycle or a non-Free slot on a list (a
    /// corrupt segment) ends that list's walk; the slots past it are not counted
    /// as on the list, so they are re-pushed only if they read Free.
    ///
    /// # Safety
    ///
    /// - No other thread or process may use this allocator while the sweep runs:
    ///   it walks the free lists without synchronising with concurrent pops and
    ///   pushes, and would push a slot twice if one were in flight. (The facade
    ///   runs it only when its caller is the segment's sole peer and holds new
    ///   attachers off.)
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 8)).unwrap();
    /// let h = a.alloc(1, 1).unwrap();
    /// // SAFETY: this thread is the allocator's only user.
    /// assert_eq!(unsafe { a.sweep_lost_slots() }, 0); // nothing lost
    /// a.free(h).unwrap();
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn sweep_lost_slots(&self) -> usize {
        self.count_reclaim();
        let hot = self.hot();
        let mut found = 0;
        for c in self.layout.classes.iter() {
            for ext in 0..self.extents(c) {
                // Relaxed (all loads and stores here): the caller guarantees
                // exclusive use; the final push publishes with Release.
                if self.ext_word(c, ext, X_NODE).load(Ordering::Relaxed) & X_RELEASED != 0 {
                    continue;
                }
                let head_w = hot.ext_word(c, ext, X_HEAD);
                let mut on_list = vec![false; c.slots];
                let mut idx = head_index(head_w.load(Ordering::Acquire));
                while idx != NONE && (idx as usize) < c.slots && !on_list[idx as usize] {
                    let m = hot.meta_word(c, ext, idx as usize).load(Ordering::Relaxed);
                    if meta_state(m) != S_FREE {
                        break;
                    }
                    on_list[idx as usize] = true;
                    idx = meta_payload(m);
                }
                for (slot, listed) in on_list.iter().enumerate() {
                    let meta_w = hot.meta_word(c, ext, slot);
                    let m = meta_w.load(Ordering::Relaxed);
                    if *listed || meta_state(m) != S_FREE || meta_gen(m) == 0 {
                        continue;
                    }
                    let head = head_w.load(Ordering::Relaxed);
                    meta_w.store(meta(S_FREE, meta_gen(m), head_index(head)), Ordering::Relaxed);
                    self.push(hot, c, ext, slot, meta_gen(m), head);
                    found += 1;
                }
            }
        }
        found
    }

    /// Owner: give `class` another extent, on `node`: recommit a released extent if the
    /// class has one, else append a new extent at the end of the data area (growing the
    /// memory), initialise it fully and publish it with one Release store of the class's
    /// extent count. Returns the extent index.
    ///
    /// # Errors
    ///
    /// [`GrowError::NotOwner`], [`GrowError::NoClass`], [`GrowError::Full`],
    /// [`GrowError::OutOfSpace`], [`GrowError::Memory`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).max_extents(2)).unwrap();
    /// let _h = a.alloc(1, 0).unwrap();
    /// assert_eq!(a.grow(0, None), Ok(1));
    /// assert!(a.alloc(1, 0).is_ok());
    /// ```
    pub fn grow(&self, class: usize, node: Option<u32>) -> Result<usize, GrowError> {
        if !self.owner {
            return Err(GrowError::NotOwner);
        }
        let c = self.layout.classes.get(class).ok_or(GrowError::NoClass { class })?;
        let mut st = self.grow_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Our own count and released flags, not the shared words (any peer can write those).
        let n = st.extents.get(class).copied().unwrap_or(0);
        for ext in 0..n {
            let idx = class * self.layout.max_extents + ext;
            if st.released.get(idx).copied().unwrap_or(false) {
                let off = st.offsets[idx];
                self.recommit(c, ext, off, node)?;
                st.released[idx] = false;
                return Ok(ext);
            }
        }
        if n >= self.layout.max_extents {
            return Err(GrowError::Full { class });
        }
        let off = st.data_end;
        let end = off.checked_add(c.extent_bytes).filter(|&e| e <= self.max_len);
        let end = end.ok_or(GrowError::OutOfSpace { end: off.saturating_add(c.extent_bytes), max_len: self.max_len })?;
        // Place before growing: growth commits the pages (fallocate / populate),
        // and they must be allocated on the extent's node, not the segment's.
        // Memory that cannot bind a range it has not mapped yet (hugetlb) is
        // placed right after growing instead.
        let placed_early = self.mem.place(off, c.extent_bytes, node).is_ok();
        self.mem.grow_to(end)?;
        if !placed_early {
            self.mem.place(off, c.extent_bytes, node)?;
        }
        // Relaxed (all initialising stores): published by the extent-publish Release.
        for slot in 0..c.slots {
            let next = if slot + 1 < c.slots { slot as u32 + 1 } else { NONE };
            self.meta_word(c, n, slot).store(meta(S_FREE, 1, next), Ordering::Relaxed);
        }
        self.ext_word(c, n, X_OFFSET).store(off as u64, Ordering::Relaxed);
        self.ext_word(c, n, X_NODE).store(u64::from(node.unwrap_or(NONE)), Ordering::Relaxed);
        self.ext_word(c, n, X_HEAD).store(0, Ordering::Relaxed);
        st.data_end = end;
        st.offsets[class * self.layout.max_extents + n] = off;
        st.extents[class] = n + 1;
        self.w(H_DATA_END).store(end as u64, Ordering::Relaxed);
        self.w(H_COMMITTED).fetch_add(c.extent_bytes as u64, Ordering::Relaxed);
        // SYNC extent-publish (Release): the extent record, its metadata and head, and
        // the grown memory are visible before the count that makes them reachable.
        self.w(c.class_word + C_EXTENTS).store(n as u64 + 1, Ordering::Release);
        self.bump_epoch();
        Ok(n)
    }

    /// Announce a reclaim pass before it frees anything (see `H_RECLAIMS`).
    fn count_reclaim(&self) {
        // AcqRel: sequenced before this pass's CASes, so any cache that can see
        // one of them (through whatever synchronisation) sees this count too.
        self.w(H_RECLAIMS).fetch_add(1, Ordering::AcqRel);
    }

    /// Reclaim passes started so far ([`reclaim_peer`](Self::reclaim_peer),
    /// [`sweep_lost_slots`](Self::sweep_lost_slots)). A cache of slots that sees
    /// the same count as when it last checked them knows none was taken from it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let before = a.reclaims();
    /// a.reclaim_peer(3);
    /// assert_eq!(a.reclaims(), before + 1);
    /// ```
    #[inline(always)]
    pub fn reclaims(&self) -> u64 {
        // Acquire: pairs with `count_reclaim`.
        self.w(H_RECLAIMS).load(Ordering::Acquire)
    }

    fn bump_epoch(&self) {
        // Release: a guest that Acquire-loads a new epoch and then refreshes sees the
        // change (SYNC epoch; informational, data goes through extent-publish).
        self.w(H_EPOCH).fetch_add(1, Ordering::Release);
    }

    /// Rebuild a released extent's free list (keeping generations) and republish it.
    fn recommit(&self, c: &ClassInfo, ext: usize, off: usize, node: Option<u32>) -> Result<(), GrowError> {
        self.mem.place(off, c.extent_bytes, node)?;
        // Relaxed (initialising stores): published by the Release push CAS below.
        for slot in 0..c.slots {
            let g = meta_gen(self.meta_word(c, ext, slot).load(Ordering::Relaxed)).max(1);
            let next = if slot + 1 < c.slots { slot as u32 + 1 } else { NONE };
            self.meta_word(c, ext, slot).store(meta(S_FREE, g, next), Ordering::Relaxed);
        }
        self.ext_word(c, ext, X_NODE).store(u64::from(node.unwrap_or(NONE)), Ordering::Relaxed);
        // Rewrite our own record of the offset, repairing any tampering.
        self.ext_word(c, ext, X_OFFSET).store(off as u64, Ordering::Relaxed);
        self.w(H_COMMITTED).fetch_add(c.extent_bytes as u64, Ordering::Relaxed);
        self.push_chain(c, ext, 0, c.slots - 1);
        self.bump_epoch();
        Ok(())
    }

    /// Push the private chain `top ..= tail` (linked through metadata) onto a list.
    fn push_chain(&self, c: &ClassInfo, ext: usize, top: usize, tail: usize) {
        let head_w = self.ext_word(c, ext, X_HEAD);
        let tail_w = self.meta_word(c, ext, tail);
        // Relaxed: a guess validated by the CAS.
        let mut head = head_w.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the Release CAS below.
            let g = meta_gen(tail_w.load(Ordering::Relaxed));
            tail_w.store(meta(S_FREE, g, head_index(head)), Ordering::Relaxed);
            // SYNC free-push (Release), as in `push`.
            match head_w.compare_exchange(head, head_next(head, top as u32), Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(cur) => head = cur,
            }
        }
    }

    /// Owner: if every slot of the extent is free, give its pages back
    /// ([`SegmentMemory::release`]) while its range and slots stay valid; the next
    /// [`grow`](Self::grow) of the class recommits it before reuse.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotOwner`], [`ReleaseError::NoExtent`],
    /// [`ReleaseError::AlreadyReleased`], [`ReleaseError::NotEmpty`] (some slot is
    /// allocated or being freed right now), [`ReleaseError::Memory`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 64).max_extents(2)).unwrap();
    /// a.release_extent(0, 0).unwrap();
    /// assert_eq!(a.inspect().committed_bytes, 0);
    /// assert!(a.alloc(1, 0).is_err());
    /// assert_eq!(a.grow(0, None), Ok(0)); // recommitted, not appended
    /// assert!(a.alloc(1, 0).is_ok());
    /// ```
    pub fn release_extent(&self, class: usize, ext: usize) -> Result<(), ReleaseError> {
        if !self.owner {
            return Err(ReleaseError::NotOwner);
        }
        let c = self.layout.classes.get(class).ok_or(ReleaseError::NoExtent)?;
        let mut st = self.grow_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Our own count and flag decide (a peer may have rewritten the shared ones).
        if ext >= st.extents.get(class).copied().unwrap_or(0) {
            return Err(ReleaseError::NoExtent);
        }
        let idx = class * self.layout.max_extents + ext;
        if st.released[idx] {
            return Err(ReleaseError::AlreadyReleased);
        }
        let node_w = self.ext_word(c, ext, X_NODE);
        // Relaxed: owner-only field, written under `grow_lock`; its released bit
        // is rewritten from our flag below.
        let node = node_w.load(Ordering::Relaxed) & !X_RELEASED;
        // Take the whole list: nobody can allocate from the extent meanwhile.
        let head_w = self.ext_word(c, ext, X_HEAD);
        // Relaxed: a guess validated by the CAS.
        let mut head = head_w.load(Ordering::Relaxed);
        loop {
            // SYNC free-push (Acquire on success): we read the pushed slots' metadata.
            match head_w.compare_exchange(head, head_next(head, NONE), Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => head = cur,
            }
        }
        let top = head_index(head);
        let (mut count, mut tail, mut i) = (0, NONE, top);
        while i != NONE && (i as usize) < c.slots && count < c.slots {
            count += 1;
            tail = i;
            // Relaxed: published by the Acquire above.
            let m = self.meta_word(c, ext, i as usize).load(Ordering::Relaxed);
            if meta_state(m) != S_FREE {
                break;
            }
            i = meta_payload(m);
        }
        if count != c.slots || i != NONE {
            if tail != NONE {
                self.push_chain(c, ext, top as usize, tail as usize);
            }
            return Err(ReleaseError::NotEmpty);
        }
        // Every slot is free and on our private list: nobody references the bytes.
        // Relaxed: owner-only field; allocators never look at it.
        node_w.store(node | X_RELEASED, Ordering::Relaxed);
        // Our own record of the offset, not the shared word (a guest could rewrite that).
        let off = st.offsets[idx];
        let released = self.release_pages(off, c.extent_bytes);
        if let Err(e) = released {
            node_w.store(node, Ordering::Relaxed);
            self.push_chain(c, ext, top as usize, tail as usize);
            return Err(e.into());
        }
        st.released[idx] = true;
        // Relaxed: statistics.
        self.w(H_COMMITTED).fetch_sub(c.extent_bytes as u64, Ordering::Relaxed);
        self.bump_epoch();
        Ok(())
    }

    #[allow(unsafe_code)]
    fn release_pages(&self, off: usize, len: usize) -> Result<(), MemoryError> {
        // SAFETY: only `release_extent` calls this, holding the extent's whole free list
        // privately with every slot Free: 1. no live reference into the range exists
        // (a `Slot` borrow requires an Allocated/InFlight slot, per `Slot`'s contract);
        // 2. nobody can allocate, and so write, a slot of the extent meanwhile.
        unsafe { self.mem.release(off, len) }
    }
}

fn layout_len(l: &Layout) -> usize {
    l.classes.len() * l.max_extents
}

/// Recycle's CAS loop on `h`'s metadata word `w`: whatever live word of `h`'s
/// generation is there (first tried: `guess`, which must be one) becomes
/// Allocated to `peer` under the next generation. Returns the fresh handle and
/// the word written.
#[inline(always)]
pub(crate) fn recycle_word(w: &AtomicU64, h: Handle, guess: u64, peer: PeerId) -> Result<(Handle, u64), HandleError> {
    debug_assert!(check(guess, h).is_ok());
    let next = next_gen(h.generation());
    let fresh = meta(S_ALLOCATED, next, peer);
    let mut cur = guess;
    loop {
        // SYNC slot-state (AcqRel): as in `free`; exactly one of racing frees wins.
        // Failure Relaxed: we only check the new value.
        match w.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Ok((h.with_generation(next), fresh)),
            Err(now) => {
                check(now, h)?;
                cur = now;
            }
        }
    }
}

/// Check a metadata word against a handle: the live state, or why not.
#[inline(always)]
fn check(m: u64, h: Handle) -> Result<SlotState, HandleError> {
    if meta_gen(m) != h.generation() {
        return Err(HandleError::Stale);
    }
    match meta_state(m) {
        S_ALLOCATED => Ok(SlotState::Allocated),
        S_IN_FLIGHT => Ok(SlotState::InFlight),
        // Free with the handle's generation: a forged handle for the next allocation.
        S_FREE => Err(HandleError::Stale),
        _ => Err(HandleError::Corrupt { what: "slot state" }),
    }
}

/// Validate the header, class table and extent table; build the local layout.
fn validate(
    w: &[AtomicU64],
    mem: &impl SegmentMemory,
    min_data_start: usize,
) -> Result<(Layout, usize, usize), AttachError> {
    let bad = |field: &'static str, at: usize, found: u64| AttachError::BadField { field, at, found };
    if w.len() < HEADER_WORDS {
        return Err(bad("control_words", 0, w.len() as u64));
    }
    // SYNC header-publish (Acquire): pairs with the creator's Release store of the magic.
    let magic = w[H_MAGIC].load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(bad("magic", 0, magic));
    }
    // Relaxed (all header reads): ordered after the magic Acquire.
    let r = |i: usize| w[i].load(Ordering::Relaxed);
    if r(H_VERSION) != VERSION {
        return Err(bad("version", 0, r(H_VERSION)));
    }
    let classes = r(H_CLASS_COUNT);
    if classes == 0 || classes > crate::handle::MAX_CLASSES as u64 {
        return Err(bad("class_count", 0, classes));
    }
    let classes = classes as usize;
    if w.len() < CLASS_TABLE + classes * CLASS_WORDS {
        return Err(bad("control_words", 0, w.len() as u64));
    }
    let table: Vec<(u64, u64)> = (0..classes)
        .map(|i| (r(CLASS_TABLE + i * CLASS_WORDS + C_SLOT_SIZE), r(CLASS_TABLE + i * CLASS_WORDS + C_SLOTS)))
        .collect();
    let layout = Layout::compute(&table, r(H_MAX_EXTENTS)).map_err(|(field, at)| match field {
        "max_extents" => bad("max_extents", 0, r(H_MAX_EXTENTS)),
        "class_count" => bad("class_count", 0, classes as u64),
        "slot_size" => bad("class.slot_size", at, table[at].0),
        _ => bad("class.slots_per_extent", at, table[at].1),
    })?;
    let cw = r(H_CONTROL_WORDS);
    if cw != layout.control_words as u64 || w.len() < layout.control_words {
        return Err(bad("control_words", 0, cw));
    }
    let max_len = r(H_MAX_LEN);
    if max_len > mem.max_len() as u64 {
        return Err(bad("max_len", 0, max_len));
    }
    let data_start = r(H_DATA_START);
    if data_start < min_data_start as u64 || data_start % EXTENT_ALIGN as u64 != 0 || data_start > max_len {
        return Err(bad("data_start", 0, data_start));
    }
    let data_end = r(H_DATA_END);
    if data_end < data_start || data_end > max_len {
        return Err(bad("data_end", 0, data_end));
    }
    let mut ranges = Vec::new();
    for (i, c) in layout.classes.iter().enumerate() {
        // SYNC extent-publish (Acquire): the records below the count are initialised.
        let n = w[c.class_word + C_EXTENTS].load(Ordering::Acquire);
        if n > layout.max_extents as u64 {
            return Err(bad("class.extent_count", i, n));
        }
        for e in 0..n as usize {
            let at = i * layout.max_extents + e;
            let off = r(c.ext_base + e * EXT_WORDS + X_OFFSET);
            let end = off.checked_add(c.extent_bytes as u64);
            let inside = matches!(end, Some(end) if off >= data_start && end <= data_end);
            if !inside || off % EXTENT_ALIGN as u64 != 0 {
                return Err(bad("extent.offset", at, off));
            }
            ranges.push((off, off + c.extent_bytes as u64, at));
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(bad("extent.offset", pair[1].2, pair[1].0));
        }
    }
    mem.refresh()?;
    if data_end > mem.mapped_len() as u64 {
        return Err(bad("data_end", 0, data_end));
    }
    Ok((layout, data_start as usize, max_len as usize))
}

/// Order the nodes by distance from a node: `row[j]` is the distance to node `j` (a row
/// of the distance matrix, e.g. from hwloc or `/sys/devices/system/node/nodeN/distance`).
/// Writes the node ids nearest first into `out` (ties by id) and returns that prefix.
///
/// # Examples
///
/// ```
/// let mut out = [0u32; 4];
/// assert_eq!(numashm_varslot::nodes_by_distance(&[20, 10, 30, 20], &mut out), &[1, 0, 3, 2]);
/// ```
pub fn nodes_by_distance<'o>(row: &[u32], out: &'o mut [u32]) -> &'o [u32] {
    let n = row.len().min(out.len());
    for (i, o) in out.iter_mut().enumerate().take(n) {
        *o = i as u32;
    }
    let out = &mut out[..n];
    out.sort_unstable_by_key(|&j| (row[j as usize], j));
    out
}

#[cfg(test)]
#[allow(unsafe_code)] // calls the exclusive-use sweep
mod sweep_tests {
    use super::*;
    use crate::Config;

    fn free_count(a: &HeapAllocator) -> usize {
        let mut held = Vec::new();
        while let Ok(h) = a.alloc(1, 1) {
            held.push(h);
        }
        let n = held.len();
        for h in held {
            a.free(h).unwrap();
        }
        n
    }

    #[test]
    fn rewritten_extent_count_and_released_bits_cannot_steer_grow_or_release() {
        let a = HeapAllocator::new(&Config::new().class(64, 4).max_extents(4)).unwrap();
        let c = a.layout.classes[0].clone();
        let created = a.extent_count(0);
        // A hostile peer claims every extent exists and is released.
        a.w(c.class_word + C_EXTENTS).store(u64::MAX, Ordering::Relaxed);
        for ext in 0..4 {
            a.ext_word(&c, ext, X_NODE).store(X_RELEASED, Ordering::Relaxed);
        }
        // Release of an extent we never made: refused, nothing punched.
        assert_eq!(a.release_extent(0, created), Err(ReleaseError::NoExtent));
        // Growth appends after our own extents instead of "recommitting" a phantom one.
        assert_eq!(a.grow(0, None), Ok(created));
        // Every slot of every real extent is usable once.
        a.w(c.class_word + C_EXTENTS).store((created + 1) as u64, Ordering::Relaxed);
        let mut held = Vec::new();
        while let Ok(h) = a.alloc(1, 1) {
            held.push(h);
        }
        assert_eq!(held.len(), 4 * (created + 1));
    }

    #[test]
    fn a_slot_lost_between_pop_and_owner_record_is_swept_back() {
        let a = HeapAllocator::new(&Config::new().class(64, 8)).unwrap();
        let h = a.alloc(1, 7).unwrap();
        // What a process killed right after the pop CAS leaves: off the list, reading Free.
        let c = &a.layout.classes[0];
        a.meta_word(c, h.extent(), h.slot()).store(meta(S_FREE, h.generation(), NONE), Ordering::Relaxed);
        assert_eq!(a.reclaim_peer(7), 0, "reclaim cannot see it: no owner");
        assert_eq!(free_count(&a), 7, "one slot lost");
        // SAFETY: this test is the allocator's only user.
        assert_eq!(unsafe { a.sweep_lost_slots() }, 1);
        assert_eq!(free_count(&a), 8, "every slot back");
        // SAFETY: as above.
        assert_eq!(unsafe { a.sweep_lost_slots() }, 0, "a second sweep finds nothing");
    }

    #[test]
    fn a_slot_lost_between_free_mark_and_push_is_swept_back() {
        let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
        let hs: Vec<_> = (0..4).map(|_| a.alloc(1, 2).unwrap()).collect();
        // Killed in `free` after the metadata CAS, before the push.
        let c = &a.layout.classes[0];
        let h = hs[2];
        a.meta_word(c, h.extent(), h.slot()).store(meta(S_FREE, next_gen(h.generation()), NONE), Ordering::Relaxed);
        for &other in [hs[0], hs[1], hs[3]].iter() {
            a.free(other).unwrap();
        }
        assert_eq!(free_count(&a), 3);
        // SAFETY: this test is the allocator's only user.
        assert_eq!(unsafe { a.sweep_lost_slots() }, 1);
        assert_eq!(free_count(&a), 4);
        assert_eq!(a.free(h), Err(HandleError::Stale), "the dead peer's handle stays stale");
    }
}
