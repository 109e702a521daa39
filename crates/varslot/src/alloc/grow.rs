//! Owner-side growth and release: appending (or recommitting) an extent and
//! publishing it, and giving an empty extent's pages back. The owner decides
//! from its own records (`OwnerState`), never from shared words a guest can
//! rewrite.

use super::Allocator;
use crate::error::{GrowError, ReleaseError};
use crate::layout::*;
use crate::memory::{MemoryError, SegmentMemory};
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
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
