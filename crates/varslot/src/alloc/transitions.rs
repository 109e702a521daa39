//! Slot state transitions by a holder: handing a slot over (`mark_in_flight`,
//! `take`), recycling it under a new generation, its auxiliary word, and
//! reading its state. Each is one CAS on the slot's metadata word.

use super::hot::check;
use super::Allocator;
use crate::error::{HandleError, SlotState};
use crate::handle::{Handle, PeerId};
use crate::layout::*;
use crate::memory::SegmentMemory;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
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
