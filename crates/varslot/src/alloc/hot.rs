//! The hot path: choosing a class, popping a slot off an extent's free list
//! (`alloc`, `alloc_on`), pushing it back (`free`) and turning a handle into
//! its bytes (`resolve`). Lock-free, no system call, no allocation.

use super::{Allocator, Hot, Loc};
use crate::error::{AllocError, HandleError, SlotState};
use crate::handle::{Handle, PeerId};
use crate::layout::*;
use crate::memory::SegmentMemory;
use crate::slot::Slot;
use crate::loom::hint::spin_loop;
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
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
    pub(super) fn push(&self, hot: Hot<'_>, c: &ClassInfo, ext: usize, slot: usize, g: u32, mut head: u64) {
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

    /// Resolve a handle against the local layout and the published extent count.
    #[inline(always)]
    pub(super) fn locate<'s>(&'s self, hot: Hot<'s>, h: Handle) -> Result<Loc<'s>, HandleError> {
        let c = self.layout.classes.get(h.class()).ok_or(HandleError::Invalid { field: "class" })?;
        if h.extent() >= hot.extents(c) {
            return Err(HandleError::Invalid { field: "extent" });
        }
        if h.slot() >= c.slots {
            return Err(HandleError::Invalid { field: "slot" });
        }
        Ok(Loc { class: c, ext: h.extent(), slot: h.slot() })
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

    #[cold]
    pub(super) fn refresh_for(&self, end: usize) -> Result<(), HandleError> {
        self.mem.refresh()?;
        if end > self.mem.mapped_len() {
            return Err(HandleError::NotMapped);
        }
        Ok(())
    }
}

/// Check a metadata word against a handle: the live state, or why not.
#[inline(always)]
pub(super) fn check(m: u64, h: Handle) -> Result<SlotState, HandleError> {
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
