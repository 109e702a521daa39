//! [`OwnerAlloc`]: creation, allocation and on-demand growth. Returns (free, lend,
//! give back) are in `returns.rs`, counts in `census.rs`.
//!
//! Orderings: only this thread writes the pool, so no word needs a read-modify-write;
//! plain Relaxed loads and stores suffice for the owner itself. Other processes read
//! the words concurrently (hence atomics); the two Release stores below publish the
//! header and new extents to such readers.
#![allow(unsafe_code)] // `recycle` is an `unsafe fn`: its contract keeps one holder per slot

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::error::{OwnerError, ReturnError};
use super::layout::*;
use super::memory::PoolMemory;
use super::words::PoolWords;
use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// A slot handed out by [`OwnerAlloc::alloc`]: its handle (what a ring carries), where
/// it is and how many bytes it holds.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// let s = a.alloc(100, true).unwrap();
/// assert_eq!(s.capacity, 256);
/// assert_eq!(s.offset % 128, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnedSlot {
    /// `generation << 32 | extent << 20 | slot` (see [`HandleParts`]).
    pub handle: u64,
    /// Byte offset of the slot from the memory base.
    pub offset: usize,
    /// Bytes the slot holds.
    pub capacity: usize,
}

/// What [`OwnerAlloc::give_back`] did.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{GiveBack, HeapPoolMemory, OwnerAlloc, OwnerConfig};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// let s = a.alloc(1, true).unwrap();
/// a.lend(s.handle, 0b11).unwrap();
/// assert_eq!(a.give_back(s.handle, 0), Ok(GiveBack::StillLent));
/// assert_eq!(a.give_back(s.handle, 1), Ok(GiveBack::Freed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// That was the last reader: the slot is free again (new generation).
    Freed,
    /// Other readers still hold the slot.
    StillLent,
}

/// The single-owner pool allocator: all its state lives in the pool memory (header,
/// class table, extent table, per-slot metadata), written only by the one thread that
/// holds this value; other processes may read it. `Send` but not `Sync`.
///
/// See `docs/varslot.md` ("Single-owner pool allocator") for the layout and states:
/// Free -> Owned (`alloc`) -> Lent (`lend`) -> Free (last `give_back`), Lent -> Owned
/// (`take_back`), Owned -> Free (`free`).
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// let s = a.alloc(1000, true).unwrap();
/// let p = a.slot_ptr(&s).unwrap();
/// // SAFETY: the slot is ours, `capacity` bytes long, and nobody else touches it.
/// unsafe { p.as_ptr().write_bytes(7, s.capacity) };
/// a.free(s.handle).unwrap();
/// assert!(a.free(s.handle).is_err()); // a double free is refused
/// ```
///
/// Not `Sync` (one writer):
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<numashm_varslot::OwnerAlloc<numashm_varslot::HeapPoolMemory>>();
/// ```
#[derive(Debug)]
pub struct OwnerAlloc<M: PoolMemory> {
    pub(crate) words: PoolWords<M>,
    pub(crate) layout: TableLayout,
    /// Slot sizes, also kept in process memory so the hot path finds a class without
    /// reading the pool (immutable after `create`).
    pub(crate) classes: Box<[usize]>,
    /// Each class's data skip (bytes from an extent's start to its first slot), local
    /// for the same reason.
    pub(crate) skips: Box<[usize]>,
    /// `lookup[ceil(len / 64)]`: the smallest class that fits `len`, for every `len`
    /// up to the largest class or `LOOKUP_MAX` (classes are multiples of 64, so this
    /// is exact); process memory, immutable after `create`.
    lookup: Box<[u8]>,
    pub(crate) max_extents: u32,
    /// The front cache: per class, up to `FRONT_DEPTH` slots the owner allocated and
    /// dropped without ever lending them (see [`OwnerAlloc::recycle`]). Process memory
    /// only: the slots stay Owned in the pool's metadata.
    front: Box<[FrontStack]>,
    /// Process-local copy of each published extent's row (see [`ExtentShadow`]), the
    /// first `shadow_used` of them: a returned handle is checked against these, not
    /// the pool's extent table, so the check reads no pool word before the slot's own
    /// metadata (the pool's rows stay, for inspection and the census).
    pub(crate) shadow: Box<[Cell<ExtentShadow>]>,
    /// Extents published (= the header's extent count, kept here too).
    pub(crate) shadow_used: Cell<u32>,
    /// `!Sync`: one thread writes the pool.
    _not_sync: PhantomData<Cell<()>>,
}

/// An extent as the owner published it: where its slot metadata starts, how many
/// slots it has and their class (`classes.len()`: dedicated). Process memory, written
/// by `publish_extent` only, so a returned handle's extent and slot fields are checked
/// against values no other process can reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExtentShadow {
    /// Byte offset of the extent (its first slot's metadata).
    pub(crate) start: u64,
    /// Slots in the extent.
    pub(crate) slots: u32,
    /// The extent's class.
    pub(crate) class: u32,
}

/// Lengths above this find their class by a scan instead of `lookup`.
const LOOKUP_MAX: usize = 64 << 10;

/// The class table as `lookup[ceil(len / 64)]` (see `OwnerAlloc::lookup`).
fn class_lookup(classes: &[usize]) -> Box<[u8]> {
    let top = classes.last().copied().unwrap_or(0).min(LOOKUP_MAX);
    (0..=top / 64)
        .map(|i| classes.iter().position(|&size| size >= i * 64).unwrap_or(0) as u8)
        .collect()
}

/// Slots each class's front cache holds at most (a burst of unsent drops).
pub(crate) const FRONT_DEPTH: usize = 8;

/// One class's front cache: a LIFO stack of Owned, never-lent slots.
#[derive(Debug, Default)]
struct FrontStack {
    len: Cell<usize>,
    slots: [Cell<OwnedSlot>; FRONT_DEPTH],
}

impl Default for OwnedSlot {
    /// Handle 0 (never valid), offset 0, capacity 0: an empty cache entry.
    fn default() -> Self {
        OwnedSlot {
            handle: 0,
            offset: 0,
            capacity: 0,
        }
    }
}

/// Load a word the owner itself wrote.
#[inline(always)]
pub(crate) fn get(w: &AtomicU64) -> u64 {
    // Relaxed: this thread is the only writer, so it always sees its own last store.
    w.load(Ordering::Relaxed)
}

/// Store a word; readers elsewhere only look, and nothing here is published by it.
#[inline(always)]
pub(crate) fn put(w: &AtomicU64, v: u64) {
    // Relaxed: single writer; other processes' reads are inspections that tolerate a
    // moment's inconsistency (see the SYNC pairs for what is published).
    w.store(v, Ordering::Relaxed)
}

/// Byte offset of slot `slot`'s metadata in the extent starting at `ext_off` (only
/// used once `meta` found it in bounds, so it does not wrap).
#[inline(always)]
pub(crate) fn meta_offset(ext_off: u64, slot: u32) -> u64 {
    ext_off.wrapping_add(u64::from(slot) * META_BYTES as u64)
}

/// Add `d` (two's complement) to a counter word; a plain load and store (one writer).
#[inline(always)]
pub(crate) fn bump(w: &AtomicU64, d: i64) {
    put(w, get(w).wrapping_add_signed(d))
}

impl<M: PoolMemory> OwnerAlloc<M> {
    /// Lay a new allocator out in `mem` at byte offset `at` (128-aligned), whatever the
    /// bytes held before. Commits only the header and tables; an extent is committed
    /// when its class is first used. The allocator owns `at..reserved()`.
    ///
    /// # Errors
    ///
    /// [`OwnerError::Config`], [`OwnerError::Misaligned`], [`OwnerError::TooSmall`] if
    /// the tables do not fit the reservation, [`OwnerError::Commit`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, PoolMemory};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 4096, &OwnerConfig::default()).unwrap();
    /// assert!(a.memory().committed() < 64 << 10); // tables only
    /// ```
    pub fn create(mem: M, at: usize, cfg: &OwnerConfig) -> Result<Self, OwnerError> {
        let t = cfg.table_layout(at)?;
        let reserved = mem.reserved();
        if t.tables_end > reserved {
            return Err(OwnerError::TooSmall {
                needed: t.tables_end,
                reserved,
            });
        }
        let base = mem.base();
        if base.as_ptr() as usize % EXTENT_ALIGN != 0 {
            return Err(OwnerError::Corrupt {
                what: "memory base not 128-aligned",
            });
        }
        mem.commit(page_end(t.tables_end, reserved))?;
        let committed = mem.committed();
        if committed < t.tables_end || committed > reserved {
            return Err(OwnerError::Corrupt {
                what: "memory committed less than asked",
            });
        }
        let words = PoolWords::new(mem);
        let classes = cfg.classes.clone().into_boxed_slice();
        let skips = classes
            .iter()
            .map(|&s| class_data_skip(cfg.slots_per_extent(s)))
            .collect();
        let a = Self {
            words,
            layout: t,
            classes,
            skips,
            max_extents: cfg.max_extents,
            lookup: class_lookup(&cfg.classes),
            front: (0..cfg.classes.len())
                .map(|_| FrontStack::default())
                .collect(),
            shadow: (0..cfg.max_extents).map(|_| Cell::default()).collect(),
            shadow_used: Cell::new(0),
            _not_sync: PhantomData,
        };
        a.write_tables(cfg)?;
        Ok(a)
    }

    fn write_tables(&self, cfg: &OwnerConfig) -> Result<(), OwnerError> {
        let t = self.layout;
        let corrupt = OwnerError::Corrupt {
            what: "tables beyond committed",
        };
        let h = self.words.block::<16>(t.at).ok_or(corrupt)?;
        let n = self.classes.len();
        for w in h {
            put(w, 0); // the magic, at word 0, is stored last
        }
        put(&h[H_VERSION], OWNER_VERSION);
        put(&h[H_CLASS_COUNT], n as u64);
        put(&h[H_EXTENT_BYTES], cfg.extent_bytes as u64);
        put(&h[H_MAX_EXTENTS], u64::from(cfg.max_extents));
        put(&h[H_EXTENTS_USED], 0);
        put(&h[H_BUMP], t.tables_end as u64);
        put(&h[H_AT], t.at as u64);
        put(&h[H_TABLES_END], t.tables_end as u64);
        put(&h[H_RESERVED], self.words.mem().reserved() as u64);
        for c in 0..=n {
            let row = self
                .words
                .block::<16>(t.class_table + c * CLASS_ROW_BYTES)
                .ok_or(corrupt)?;
            for w in row {
                put(w, 0);
            }
            if let Some(&size) = self.classes.get(c) {
                let slots = cfg.slots_per_extent(size);
                put(&row[C_SLOT_SIZE], size as u64);
                put(&row[C_SLOTS_PER_EXTENT], slots as u64);
                put(&row[C_DATA_SKIP], class_data_skip(slots) as u64);
            } else {
                // The dedicated row: one slot per extent, the slot on the next page.
                put(&row[C_SLOTS_PER_EXTENT], 1);
                put(&row[C_DATA_SKIP], PAGE as u64);
            }
        }
        for e in 0..self.max_extents as usize {
            for w in self
                .words
                .block::<4>(t.extent_table + e * EXTENT_ROW_BYTES)
                .ok_or(corrupt)?
            {
                put(w, 0);
            }
        }
        // SYNC owner-header-publish (Release): a reader that Acquire-loads the magic sees
        // the whole header and tables written above.
        h[H_MAGIC].store(OWNER_MAGIC, Ordering::Release);
        Ok(())
    }

    /// The memory the pool lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, PoolMemory};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(1 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.memory().reserved(), 1 << 20);
    /// ```
    pub fn memory(&self) -> &M {
        self.words.mem()
    }

    /// Byte offset (from the base) where the tables end and the first extent may start.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(1 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.tables_end(), 128 + 9 * 128 + 1024 * 32);
    /// ```
    pub fn tables_end(&self) -> usize {
        self.layout.tables_end
    }

    /// The slot sizes of the classes, ascending (class `i` is `slot_sizes()[i]`).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let cfg = OwnerConfig { classes: vec![64, 512], extent_bytes: 4096, max_extents: 4 };
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(1 << 20).unwrap(), 0, &cfg).unwrap();
    /// assert_eq!(a.slot_sizes().collect::<Vec<_>>(), [64, 512]);
    /// ```
    pub fn slot_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.classes.iter().copied()
    }

    /// Allocate a slot of at least `len` bytes: pops the smallest fitting class's free
    /// list (the slot freed last comes first); when it is empty and `grow` is set,
    /// commits a new extent of that class. `len` above the largest class gets a
    /// dedicated extent of `len` rounded up to 4096 (a freed one that is large enough
    /// is reused first). The slot is Owned.
    ///
    /// # Errors
    ///
    /// [`OwnerError::Exhausted`] (`class` = class count for oversize) when nothing is
    /// free and growing is off, out of extents or out of reservation;
    /// [`OwnerError::TooLarge`] when `len` can never fit the reservation;
    /// [`OwnerError::Commit`] when the memory refuses to grow.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, OwnerError};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.alloc(64, false), Err(OwnerError::Exhausted { class: 0 }));
    /// let s = a.alloc(64, true).unwrap();
    /// assert_eq!(s.capacity, 64);
    /// ```
    #[inline(always)]
    pub fn alloc(&self, len: usize, grow: bool) -> Result<OwnedSlot, OwnerError> {
        match self.class_for(len).and_then(|c| self.pop_cached(c)) {
            Some(s) => Ok(s),
            None => self.alloc_uncached(len, grow),
        }
    }

    /// `alloc` past the front cache: the class's free list, growth, or a dedicated extent.
    #[inline(never)]
    fn alloc_uncached(&self, len: usize, grow: bool) -> Result<OwnedSlot, OwnerError> {
        match self.class_for(len) {
            Some(c) => self.alloc_class(c, grow),
            None => self.alloc_dedicated(len, grow),
        }
    }

    /// Dedicated extents made so far (each holds one oversize slot: in use, lent
    /// or free for reuse). Reads one of the owner's own counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(32 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.dedicated_extents(), 0);
    /// a.alloc(8 << 20, true).unwrap(); // above the largest class
    /// assert_eq!(a.dedicated_extents(), 1);
    /// ```
    pub fn dedicated_extents(&self) -> u64 {
        self.row(self.classes.len()).map_or(0, |r| get(&r[C_EXTENTS]))
    }

    /// The smallest class whose slots hold `len` bytes, if any (`None`: a dedicated
    /// extent). Reads process memory only.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.class_for(1), Some(0));
    /// assert_eq!(a.slot_sizes().nth(a.class_for(1000).unwrap()), Some(1024));
    /// assert_eq!(a.class_for(usize::MAX), None);
    /// ```
    #[inline(always)]
    pub fn class_for(&self, len: usize) -> Option<usize> {
        match self.lookup.get(len.div_ceil(64)) {
            Some(&c) => Some(c as usize),
            // Beyond the table: a short linear scan (few classes).
            None => self.class_scan(len),
        }
    }

    #[cold]
    fn class_scan(&self, len: usize) -> Option<usize> {
        self.classes.iter().position(|&size| size >= len)
    }

    /// The slot class `c`'s front cache pushed last, if any: the fast path of
    /// [`OwnerAlloc::alloc`], touching no pool word (the slot stays Owned).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let c = a.class_for(100).unwrap();
    /// assert_eq!(a.pop_cached(c), None);
    /// let s = a.alloc(100, true).unwrap();
    /// // SAFETY: `s` came from `a.alloc`, was never lent, and is not used again.
    /// assert_eq!(unsafe { a.push_cached(c, s) }, Ok(()));
    /// assert_eq!(a.pop_cached(c), Some(s));
    /// ```
    #[inline(always)]
    pub fn pop_cached(&self, c: usize) -> Option<OwnedSlot> {
        let f = self.front.get(c)?;
        let n = f.len.get().checked_sub(1)?;
        let s = f.slots.get(n)?.get();
        f.len.set(n);
        Some(s)
    }

    /// Put a slot back in class `c`'s front cache, where the next
    /// [`OwnerAlloc::alloc`] of that class finds it, with no write to the pool (the
    /// slot stays Owned, same generation, so no handle to it ever reached a reader).
    /// `Err(s)` when `s` is not a slot of class `c` or the cache is full: the caller
    /// still holds it (see [`OwnerAlloc::recycle`], which then frees it).
    ///
    /// # Safety
    ///
    /// As for [`OwnerAlloc::recycle`]: `s` was returned by this allocator's `alloc`,
    /// is Owned now, and on `Ok` the caller neither uses `s` nor passes it on again.
    ///
    /// # Examples
    ///
    /// See [`OwnerAlloc::pop_cached`].
    #[inline(always)]
    pub unsafe fn push_cached(&self, c: usize, s: OwnedSlot) -> Result<(), OwnedSlot> {
        let (Some(f), Some(&size)) = (self.front.get(c), self.classes.get(c)) else {
            return Err(s);
        };
        let n = f.len.get();
        match f.slots.get(n) {
            Some(entry) if size == s.capacity => {
                // The slot popped last is usually the one coming back, still in its
                // entry: skipping that store keeps a pop from waiting on a push
                // (no store-to-load forwarding through the entry).
                if entry.get() != s {
                    entry.set(s);
                }
                f.len.set(n + 1);
                Ok(())
            }
            _ => Err(s),
        }
    }

    /// Give back a slot this allocator handed out and the caller never lent (it is
    /// Owned): it goes to its class's front cache, which `alloc` pops first, with no
    /// write to the pool (the slot stays Owned, same generation, so no handle to it
    /// ever reached a reader). A full cache, or a dedicated slot, is freed as by
    /// [`OwnerAlloc::free`]. This is the one slot cache of the product: the facade's
    /// unsent `SlotMut` drops go here.
    ///
    /// # Safety
    ///
    /// `s` was returned by [`OwnerAlloc::alloc`] of this allocator, is Owned now
    /// (never lent, or taken back), and the caller neither uses `s` nor passes it to
    /// `recycle`, `free` or `lend` again: the next `alloc` may hand the same slot out,
    /// and callers that write through [`OwnerAlloc::slot_ptr`] rely on each slot having
    /// one holder.
    ///
    /// # Errors
    ///
    /// Those of [`OwnerAlloc::free`] when the slot is freed instead of cached.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(100, true).unwrap();
    /// // SAFETY: `s` came from `a.alloc`, was never lent, and is not used again.
    /// unsafe { a.recycle(s) }.unwrap();
    /// assert_eq!(a.cached(), 1);
    /// assert_eq!(a.audit().unwrap(), a.census()); // a cached slot counts as Owned
    /// assert_eq!(a.alloc(100, false).unwrap(), s); // the same slot, from the cache
    /// ```
    #[inline(always)]
    pub unsafe fn recycle(&self, s: OwnedSlot) -> Result<(), ReturnError> {
        let Some(c) = self.class_for(s.capacity) else {
            return self.free(s.handle);
        };
        // SAFETY: the caller's contract for `recycle` is that of `push_cached`.
        match unsafe { self.push_cached(c, s) } {
            Ok(()) => Ok(()),
            Err(s) => self.free(s.handle),
        }
    }

    /// Slots held in the front caches (Owned in the pool's counts).
    ///
    /// # Examples
    ///
    /// See [`OwnerAlloc::recycle`].
    pub fn cached(&self) -> usize {
        self.front.iter().map(|f| f.len.get()).sum()
    }

    /// Free every slot of the front caches (Owned -> Free, new generation), so the
    /// pool's counts show them free.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(100, true).unwrap();
    /// // SAFETY: `s` came from `a.alloc`, was never lent, and is not used again.
    /// unsafe { a.recycle(s) }.unwrap();
    /// a.flush_cache();
    /// assert_eq!((a.cached(), a.census().classes[2].owned), (0, 0));
    /// ```
    pub fn flush_cache(&self) {
        for c in 0..self.front.len() {
            while let Some(s) = self.pop_cached(c) {
                // Cannot fail for a slot `recycle` accepted (it is Owned, ours).
                let _ = self.free(s.handle);
            }
        }
    }

    /// The row of class `c` (`c == classes.len()`: the dedicated row).
    #[inline(always)]
    pub(crate) fn row(&self, c: usize) -> Result<&[AtomicU64; 16], OwnerError> {
        let off = self.layout.class_table + c * CLASS_ROW_BYTES;
        self.words
            .block::<16>(off)
            .ok_or(OwnerError::Corrupt { what: "class row" })
    }

    /// The header words.
    #[inline(always)]
    pub(crate) fn header(&self) -> Option<&[AtomicU64; 16]> {
        self.words.block::<16>(self.layout.at)
    }

    /// The row of extent `e` (any `e < max_extents`).
    #[inline(always)]
    pub(crate) fn extent_row(&self, e: u32) -> Option<&[AtomicU64; 4]> {
        if e >= self.max_extents {
            return None;
        }
        self.words
            .block::<4>(self.layout.extent_table + e as usize * EXTENT_ROW_BYTES)
    }

    /// Extent `e` as published (process memory), if `e` is below the extent count.
    #[inline(always)]
    pub(crate) fn shadow(&self, e: u32) -> Option<ExtentShadow> {
        if e >= self.shadow_used.get() {
            return None;
        }
        self.shadow.get(e as usize).map(Cell::get)
    }

    /// Record extent `e` as published (`publish_extent`, before the count moves past it).
    pub(crate) fn set_shadow(&self, e: u32, x: ExtentShadow) {
        if let Some(c) = self.shadow.get(e as usize) {
            c.set(x);
            self.shadow_used.set(self.shadow_used.get().max(e + 1));
        }
    }

    /// The metadata of slot `slot` of the extent starting at `ext_off`.
    #[inline(always)]
    pub(crate) fn meta(&self, ext_off: u64, slot: u32) -> Option<&[AtomicU64; 4]> {
        let off = usize::try_from(ext_off)
            .ok()?
            .checked_add(slot as usize * META_BYTES)?;
        self.words.block::<4>(off)
    }

    #[inline]
    fn alloc_class(&self, c: usize, grow: bool) -> Result<OwnedSlot, OwnerError> {
        let row = self.row(c)?;
        let mut head = get(&row[C_FREE_HEAD]);
        if head == 0 {
            if !grow {
                return Err(OwnerError::Exhausted { class: c });
            }
            self.grow_class(c, row)?;
            head = get(&row[C_FREE_HEAD]);
        }
        // The head is the slot's metadata offset; its position word names the slot, so
        // the pop reads no extent row.
        let meta = usize::try_from(head)
            .ok()
            .and_then(|off| self.words.block::<4>(off))
            .ok_or(OwnerError::Corrupt { what: "free head" })?;
        let st = get(&meta[M_STATE]);
        if st & STATE_MASK != S_FREE {
            return Err(OwnerError::Corrupt {
                what: "free list holds a slot that is not free",
            });
        }
        let pos = get(&meta[M_POSITION]);
        put(&row[C_FREE_HEAD], get(&meta[M_NEXT_FREE]));
        put(&meta[M_STATE], st & !STATE_MASK | S_OWNED);
        bump(&row[C_OWNED], 1);
        let (size, skip) = (self.classes[c], self.skips[c]);
        // meta = extent + slot * 32 and data = extent + skip + slot * size, so
        // data = meta + skip + slot * (size - 32); cannot overflow (both lie in the
        // committed bytes: `size > 32`, and `slot` came from this extent).
        let slot = pos as usize & (MAX_OWNER_SLOTS - 1);
        let offset = head as usize + skip + slot * (size - META_BYTES);
        Ok(OwnedSlot {
            handle: (st & !STATE_MASK) | pos,
            offset,
            capacity: size,
        })
    }

    /// Pointer to the slot's bytes (`base + offset`), checked to lie inside the
    /// committed extents (not the tables). Writing through it is the caller's `unsafe`.
    ///
    /// # Errors
    ///
    /// [`ReturnError::Invalid`] (`field: "offset"`) if `offset..offset + capacity` is not
    /// inside the committed bytes after the tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, OwnedSlot};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(10, true).unwrap();
    /// assert!(a.slot_ptr(&s).is_ok());
    /// assert!(a.slot_ptr(&OwnedSlot { handle: 0, offset: 0, capacity: 64 }).is_err());
    /// ```
    #[inline]
    pub fn slot_ptr(&self, s: &OwnedSlot) -> Result<NonNull<u8>, ReturnError> {
        if s.offset < self.layout.tables_end {
            return Err(ReturnError::Invalid { field: "offset" });
        }
        self.words
            .ptr(s.offset, s.capacity)
            .ok_or(ReturnError::Invalid { field: "offset" })
    }
}

/// `end` rounded up to a page, but not past `reserved`: what to ask `commit` for.
pub(super) fn page_end(end: usize, reserved: usize) -> usize {
    round_up(end, PAGE)
        .unwrap_or(usize::MAX)
        .min(reserved)
        .max(end)
}
