//! Taking slots back from peers that died: every slot a peer held
//! (`reclaim_peer`), and slots lost between two steps of a dead peer's pop or
//! free (`sweep_lost_slots`); the reclaim counter caches watch.

use super::{Allocator, Loc};
use crate::error::HandleError;
use crate::handle::PeerId;
use crate::layout::*;
use crate::memory::SegmentMemory;
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
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
}

#[cfg(test)]
#[allow(unsafe_code)] // calls the exclusive-use sweep
mod sweep_tests {
    use super::*;
    use crate::alloc::HeapAllocator;
    use crate::error::ReleaseError;
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
