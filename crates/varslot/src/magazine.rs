//! [`Magazine`]: a per-peer (per-thread) cache of slots in front of the free lists.

use crate::alloc::Allocator;
use crate::error::{AllocError, HandleError};
use crate::handle::{Handle, PeerId};
use crate::memory::SegmentMemory;
use crate::layout::{meta, meta_index, next_gen, H_RECLAIMS, S_ALLOCATED};
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

/// A small per-thread cache of slots per class, in front of the shared free lists.
///
/// `free` through a magazine bumps the slot's generation with one CAS (so stale handles
/// and double frees are caught exactly as with [`Allocator::free`]) and keeps the slot
/// **Allocated to this peer** instead of pushing it; `alloc` hands a cached slot out
/// again with no atomic write. Cached slots are therefore never hidden from
/// [`Allocator::reclaim_peer`]: if the peer dies they are reclaimed with the rest.
/// Dropping the magazine (or [`flush`](Self::flush)) frees the cached slots.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HandleError, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
/// let mut m = a.magazine(1, 8);
/// let h = m.alloc(10).unwrap();
/// m.free(h).unwrap();
/// assert_eq!(m.free(h), Err(HandleError::Stale)); // still caught
/// let h2 = m.alloc(10).unwrap(); // the cached slot, new generation
/// assert_eq!((h2.slot(), h2 == h), (h.slot(), false));
/// assert_eq!(a.reclaim_peer(1), 1 + m.cached()); // nothing hidden
/// ```
#[derive(Debug)]
pub struct Magazine<'a, W: Words, M: SegmentMemory> {
    alloc: &'a Allocator<W, M>,
    /// The allocator's control words (length checked against the layout).
    words: &'a [AtomicU64],
    peer: PeerId,
    cap: usize,
    /// The layout's extent bound: a hostile published count is capped by it.
    max_extents: u64,
    /// The allocator's reclaim count when every cached slot was last known to
    /// be ours: while it has not moved, no cached slot can have been taken.
    reclaims_seen: u64,
    /// Per class: what the hot path needs, copied out of the validated layout so
    /// a cached alloc or free reads no allocator field, plus the cache's fill.
    classes: Box<[CachedClass]>,
    /// Class `c`'s cache is `bufs[c * cap .. c * cap + classes[c].len]`.
    bufs: Box<[Cached]>,
}

#[derive(Debug, Clone, Copy)]
struct CachedClass {
    slot_size: usize,
    slots: usize,
    /// Word index of extent 0's first slot metadata word.
    meta_base: usize,
    len: usize,
}

/// A cached slot: its live handle and the index of its metadata word, so taking
/// it out again costs one load.
#[derive(Debug, Clone, Copy)]
struct Cached {
    handle: Handle,
    meta: usize,
    /// The metadata word while the slot is still ours: Allocated to us under
    /// `handle`'s generation.
    expect: u64,
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// A magazine for `peer` caching up to `per_class` slots of each class. Use one per
    /// thread; it allocates its buffers now and never again.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let m = a.magazine(3, 16);
    /// assert_eq!(m.cached(), 0);
    /// ```
    pub fn magazine(&self, peer: PeerId, per_class: usize) -> Magazine<'_, W, M> {
        let (layout, words) = self.layout_and_words();
        let classes: Box<[CachedClass]> = layout
            .classes
            .iter()
            .map(|c| CachedClass {
                slot_size: c.slot_size,
                slots: c.slots,
                meta_base: c.meta_base,
                len: 0,
            })
            .collect();
        // Placeholder entries: below `len` every entry is a real one.
        let empty = Cached { handle: Handle::PLACEHOLDER, meta: 0, expect: 0 };
        Magazine {
            alloc: self,
            words,
            peer,
            cap: per_class,
            max_extents: layout.max_extents as u64,
            reclaims_seen: self.reclaims(),
            bufs: vec![empty; classes.len() * per_class].into_boxed_slice(),
            classes,
        }
    }
}

impl<W: Words, M: SegmentMemory> Magazine<'_, W, M> {
    /// Allocate: a cached slot of the class if there is one, else
    /// [`Allocator::alloc`].
    ///
    /// # Errors
    ///
    /// As [`Allocator::alloc`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, SlotState};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let mut m = a.magazine(2, 4);
    /// let h = m.alloc(64).unwrap();
    /// assert_eq!(a.state(h), Ok((SlotState::Allocated, 2)));
    /// ```
    #[inline]
    pub fn alloc(&mut self, len: usize) -> Result<Handle, AllocError> {
        let cap = self.cap;
        // A cached slot is ours unless someone reclaimed this peer while it was
        // alive (a protocol breach): that shows as a new reclaim count, and then
        // every cached slot is checked before any is handed out.
        // SYNC reclaim-count (Acquire): pairs with the AcqRel increment that starts
        // every reclaim pass.
        if word(self.words, H_RECLAIMS).load(Ordering::Acquire) != self.reclaims_seen {
            self.recheck();
        }
        for (class, c) in self.classes.iter_mut().enumerate() {
            if len <= c.slot_size {
                if let Some(n) = c.len.checked_sub(1) {
                    c.len = n;
                    return Ok(entry(&self.bufs, class * cap + n).handle);
                }
                break;
            }
        }
        self.alloc.alloc(len, self.peer)
    }

    /// Drops cached slots that are no longer Allocated to us as we left them.
    #[cold]
    fn recheck(&mut self) {
        self.reclaims_seen = self.alloc.reclaims();
        let cap = self.cap;
        for (class, c) in self.classes.iter_mut().enumerate() {
            let mut kept = 0;
            for i in 0..c.len {
                let e = entry(&self.bufs, class * cap + i);
                // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
                if word(self.words, e.meta).load(Ordering::Acquire) == e.expect {
                    *entry_mut(&mut self.bufs, class * cap + kept) = e;
                    kept += 1;
                }
            }
            c.len = kept;
        }
    }

    /// Free: into the cache if the class's cache has room (one CAS), else
    /// [`Allocator::free`].
    ///
    /// # Errors
    ///
    /// As [`Allocator::free`]: a stale handle or a double free is
    /// [`HandleError::Stale`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let mut m = a.magazine(2, 1);
    /// let (x, y) = (m.alloc(1).unwrap(), m.alloc(1).unwrap());
    /// m.free(x).unwrap(); // cached
    /// m.free(y).unwrap(); // cache full: back to the free list
    /// assert_eq!(m.cached(), 1);
    /// ```
    #[inline]
    pub fn free(&mut self, h: Handle) -> Result<(), HandleError> {
        let class = h.class();
        let cap = self.cap;
        let Some(c) = self.classes.get_mut(class) else { return self.alloc.free(h) };
        if c.len >= cap {
            return self.alloc.free(h);
        }
        // The fast path accepts only what it can check with the local copy of the
        // layout; anything else (a slot in another state, a stale generation)
        // takes the general path for its exact answer. It does not read the
        // published extent count: `ext < max_extents` keeps the index inside the
        // metadata area, and a slot of an extent not published yet is never
        // Allocated, so the CAS below cannot succeed on one.
        let (ext, slot) = (h.extent(), h.slot());
        if (ext as u64) < self.max_extents && slot < c.slots {
            let idx = meta_index(c.meta_base, c.slots, ext, slot);
            let w = word(self.words, idx);
            let g = h.generation();
            let next = next_gen(g);
            let expect = meta(S_ALLOCATED, next, self.peer);
            // The common case, predicted without a load: the slot is Allocated to
            // this peer under `g`. Anything else (InFlight, another owner, stale)
            // goes to `free_slow`, which reads the word and decides.
            // SYNC slot-state (AcqRel): as in `Allocator::free`; exactly one of
            // racing frees wins.
            if w.compare_exchange(meta(S_ALLOCATED, g, self.peer), expect, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                let at = class * cap + c.len;
                c.len += 1;
                *entry_mut(&mut self.bufs, at) = Cached { handle: h.with_generation(next), meta: idx, expect };
                return Ok(());
            }
        }
        self.free_slow(h)
    }

    #[cold]
    fn free_slow(&mut self, h: Handle) -> Result<(), HandleError> {
        let (handle, idx) = self.alloc.recycle_indexed(h, self.peer)?;
        let cap = self.cap;
        match self.classes.get_mut(handle.class()) {
            Some(c) if c.len < cap => {
                let at = handle.class() * cap + c.len;
                c.len += 1;
                let expect = meta(S_ALLOCATED, handle.generation(), self.peer);
                *entry_mut(&mut self.bufs, at) = Cached { handle, meta: idx, expect };
                Ok(())
            }
            _ => self.alloc.free(handle),
        }
    }

    /// Slots held in the cache (all classes).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// assert_eq!(a.magazine(0, 4).cached(), 0);
    /// ```
    pub fn cached(&self) -> usize {
        self.classes.iter().map(|c| c.len).sum()
    }

    /// Free every cached slot back to the shared free lists.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let mut m = a.magazine(0, 4);
    /// let h = m.alloc(1).unwrap();
    /// m.free(h).unwrap();
    /// m.flush();
    /// assert!(a.alloc(1, 9).is_ok()); // back on the shared list
    /// ```
    pub fn flush(&mut self) {
        for (class, c) in self.classes.iter_mut().enumerate() {
            let start = class * self.cap;
            for e in &self.bufs[start..start + c.len] {
                // A slot reclaimed meanwhile is Stale here: nothing to do.
                let _ = self.alloc.free(e.handle);
            }
            c.len = 0;
        }
    }
}

impl<W: Words, M: SegmentMemory> Drop for Magazine<'_, W, M> {
    fn drop(&mut self) {
        self.flush();
    }
}

// Unchecked indexing for the cached hot path, kept to these two helpers.
//
// Invariants (established in `Allocator::magazine`, kept by every method):
// - `words.len() >= layout.control_words` (checked by the allocator's create /
//   attach), and every word index used here is below `control_words`: the
//   header's reclaim count (word 11 of the 16 header words), metadata
//   words of `(ext, slot)` with `ext < max_extents`, `slot < slots` (the layout
//   places all of them below `control_words`);
// - `bufs.len() == classes.len() * cap` and every buffer index is
//   `class * cap + i` with `class < classes.len()`, `i < cap`.

#[inline(always)]
#[allow(unsafe_code)]
fn word(words: &[AtomicU64], i: usize) -> &AtomicU64 {
    debug_assert!(i < words.len());
    // SAFETY: `i < words.len()` by the invariants above.
    unsafe { words.get_unchecked(i) }
}

#[inline(always)]
#[allow(unsafe_code)]
fn entry(bufs: &[Cached], i: usize) -> Cached {
    debug_assert!(i < bufs.len());
    // SAFETY: `i < bufs.len()` by the invariants above.
    unsafe { *bufs.get_unchecked(i) }
}

#[inline(always)]
#[allow(unsafe_code)]
fn entry_mut(bufs: &mut [Cached], i: usize) -> &mut Cached {
    debug_assert!(i < bufs.len());
    // SAFETY: `i < bufs.len()` by the invariants above.
    unsafe { bufs.get_unchecked_mut(i) }
}
