//! Slot transitions driven by handles: `free`, `lend`, `give_back`, `take_back`, and
//! `reclaim_reader`. A handle coming back from a reader is hostile input: every field
//! is checked against the owner's own tables before it is used.

use core::cell::Cell;

use super::alloc::{bump, get, meta_offset, put, GiveBack, OwnedSlot, OwnerAlloc};
use super::error::ReturnError;
use super::layout::*;
use super::memory::PoolMemory;
use crate::loom::sync::atomic::AtomicU64;

/// A live slot found from a checked handle.
struct Live<'a> {
    meta: &'a [AtomicU64; 4],
    /// The slot's class (`classes.len()`: dedicated), from the owner's extent shadow.
    class: usize,
    /// The state word (generation matches the handle's).
    st: u64,
    /// Byte offset of the slot's metadata (its free-list link).
    meta_off: u64,
}

impl Live<'_> {
    fn state(&self) -> u64 {
        self.st & STATE_MASK
    }
}

impl<M: PoolMemory> OwnerAlloc<M> {
    /// Check every field of `h` and find its slot; Free slots count as stale (their
    /// current generation was never handed out). The extent and slot fields are checked
    /// against the owner's process-local copy of the extent table (`shadow`), so the
    /// only pool word read is the slot's own state.
    #[inline(always)]
    fn live(&self, h: u64) -> Result<Live<'_>, ReturnError> {
        let p = HandleParts::decode(h);
        if p.generation == 0 {
            return Err(ReturnError::Invalid {
                field: "generation",
            });
        }
        let Some(x) = self.shadow(p.extent) else {
            return Err(ReturnError::Invalid { field: "extent" });
        };
        if p.slot >= x.slots {
            return Err(ReturnError::Invalid { field: "slot" });
        }
        let meta = self.meta(x.start, p.slot).ok_or(ReturnError::Corrupt {
            what: "extent offset",
        })?;
        let st = get(&meta[M_STATE]);
        if (st >> 32) as u32 != p.generation || st & STATE_MASK == S_FREE {
            return Err(ReturnError::Stale);
        }
        Ok(Live {
            meta,
            class: x.class as usize,
            st,
            meta_off: meta_offset(x.start, p.slot),
        })
    }

    /// Make a slot Free with a new generation and push it on its class's free list.
    /// Nothing is written if its class row cannot be found (a corrupt table).
    #[inline]
    fn release(&self, s: &Live<'_>, from: usize) -> Result<(), ReturnError> {
        let row = self
            .row(s.class)
            .map_err(|_| ReturnError::Corrupt { what: "class row" })?;
        let gen = next_generation((s.st >> 32) as u32);
        put(&s.meta[M_STATE], u64::from(gen) << 32 | S_FREE);
        if from == C_LENT {
            // An Owned slot's mask is already 0 (only Lent slots have bits).
            put(&s.meta[M_LENT_MASK], 0);
        }
        put(&s.meta[M_NEXT_FREE], get(&row[C_FREE_HEAD]));
        put(&row[C_FREE_HEAD], s.meta_off);
        bump(&row[from], -1);
        Ok(())
    }

    /// Owned -> Free: the owner drops a slot it never sent (or took back). The slot gets
    /// a new generation, so every earlier handle to it is stale.
    ///
    /// # Errors
    ///
    /// [`ReturnError::Invalid`] (`generation` 0, `extent`, `slot` out of range),
    /// [`ReturnError::Stale`], [`ReturnError::NotOwned`] if it is lent.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, ReturnError};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// a.free(s.handle).unwrap();
    /// assert_eq!(a.free(s.handle), Err(ReturnError::Stale));
    /// ```
    #[inline]
    pub fn free(&self, h: u64) -> Result<(), ReturnError> {
        let s = self.live(h)?;
        match s.state() {
            S_OWNED => self.release(&s, C_OWNED),
            S_LENT => Err(ReturnError::NotOwned),
            _ => Err(ReturnError::Corrupt { what: "slot state" }),
        }
    }

    /// Owned -> Lent to the readers in `readers` (bit r = reader r): the owner is about
    /// to send the handle to each of them; each gives it back once.
    ///
    /// # Errors
    ///
    /// [`ReturnError::Invalid`] (`readers` 0, or a bad handle field),
    /// [`ReturnError::Stale`], [`ReturnError::NotOwned`] if already lent.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, ReturnError};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// a.lend(s.handle, 1 << 5).unwrap();
    /// assert_eq!(a.lend(s.handle, 1), Err(ReturnError::NotOwned));
    /// ```
    #[inline]
    pub fn lend(&self, h: u64, readers: u64) -> Result<(), ReturnError> {
        if readers == 0 {
            return Err(ReturnError::Invalid { field: "readers" });
        }
        let s = self.live(h)?;
        match s.state() {
            S_OWNED => {
                let row = self
                    .row(s.class)
                    .map_err(|_| ReturnError::Corrupt { what: "class row" })?;
                put(&s.meta[M_LENT_MASK], readers);
                put(&s.meta[M_STATE], s.st & !STATE_MASK | S_LENT);
                bump(&row[C_OWNED], -1);
                bump(&row[C_LENT], 1);
                Ok(())
            }
            S_LENT => Err(ReturnError::NotOwned),
            _ => Err(ReturnError::Corrupt { what: "slot state" }),
        }
    }

    /// [`OwnerAlloc::lend`] for a slot as `alloc` handed it out: its metadata is
    /// found from the slot's offset and class (one extent-row load confirms it is
    /// exactly that slot's), not by walking the header and extent table. Anything
    /// that does not match (a forged or stale `s`) goes through `lend`, with its
    /// errors.
    ///
    /// # Errors
    ///
    /// Those of [`OwnerAlloc::lend`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnedSlot, OwnerAlloc, OwnerConfig, ReturnError};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// let forged = OwnedSlot { handle: s.handle ^ 2 << 32, ..s }; // another generation
    /// assert_eq!(a.lend_slot(&forged, 0b1), Err(ReturnError::Stale));
    /// assert_eq!(a.lend_slot(&s, 0), Err(ReturnError::Invalid { field: "readers" }));
    /// a.lend_slot(&s, 0b1).unwrap();
    /// assert_eq!(a.lend_slot(&s, 0b1), Err(ReturnError::NotOwned));
    /// assert_eq!(a.audit().unwrap().classes[0].lent, 1);
    /// ```
    #[inline]
    pub fn lend_slot(&self, s: &OwnedSlot, readers: u64) -> Result<(), ReturnError> {
        let p = HandleParts::decode(s.handle);
        let (class, meta_off) = match self.class_for(s.capacity) {
            Some(c) if self.classes.get(c) == Some(&s.capacity) => {
                // data = meta + skip + slot * (size - 32) (see `alloc_class`).
                let back = (p.slot as usize)
                    .checked_mul(s.capacity.wrapping_sub(META_BYTES))
                    .and_then(|b| b.checked_add(*self.skips.get(c)?));
                (c, back.and_then(|b| s.offset.checked_sub(b)))
            }
            // Dedicated: the metadata fills the page before the slot.
            _ => (self.classes.len(), s.offset.checked_sub(PAGE)),
        };
        let found = meta_off.and_then(|m| {
            let x = self.extent_row(p.extent)?;
            // Exactly this slot's metadata: the extent row (written only by us,
            // zero for extents not made yet, so `slots` fails them) of the
            // slot's class places it there.
            let expect = get(&x[X_OFFSET]).checked_add(u64::from(p.slot) * META_BYTES as u64)?;
            let fits = u64::from(p.slot) < get(&x[X_SLOTS]) && get(&x[X_CLASS]) == class as u64;
            (readers != 0 && fits && expect == m as u64).then_some(())?;
            let meta = self.words.block::<4>(m)?;
            (get(&meta[M_STATE]) == u64::from(p.generation) << 32 | S_OWNED).then_some(meta)
        });
        let (Some(meta), Ok(row)) = (found, self.row(class)) else {
            return self.lend(s.handle, readers);
        };
        put(&meta[M_LENT_MASK], readers);
        put(&meta[M_STATE], u64::from(p.generation) << 32 | S_LENT);
        bump(&row[C_OWNED], -1);
        bump(&row[C_LENT], 1);
        Ok(())
    }

    /// Reader `reader` (0..64) returns a lent slot: its bit is cleared; when it was the
    /// last, the slot is Free again with a new generation (fan-out countdown).
    ///
    /// # Errors
    ///
    /// [`ReturnError::Invalid`] (`reader` >= 64, or a bad handle field),
    /// [`ReturnError::Stale`], [`ReturnError::NotLent`] if the owner holds it,
    /// [`ReturnError::NotLentTo`] if it is not lent to `reader` (or it already gave it
    /// back).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{GiveBack, HeapPoolMemory, OwnerAlloc, OwnerConfig, ReturnError};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// a.lend(s.handle, 0b101).unwrap();
    /// assert_eq!(a.give_back(s.handle, 1), Err(ReturnError::NotLentTo { reader: 1 }));
    /// assert_eq!(a.give_back(s.handle, 0), Ok(GiveBack::StillLent));
    /// assert_eq!(a.give_back(s.handle, 0), Err(ReturnError::NotLentTo { reader: 0 }));
    /// assert_eq!(a.give_back(s.handle, 2), Ok(GiveBack::Freed));
    /// ```
    #[inline]
    pub fn give_back(&self, h: u64, reader: u32) -> Result<GiveBack, ReturnError> {
        if reader >= 64 {
            return Err(ReturnError::Invalid { field: "reader" });
        }
        self.give_back_bit(h, reader)
    }

    /// [`OwnerAlloc::give_back`] of every handle in `handles` by reader `reader`, each
    /// checked as there (a bad one changes nothing): how many were accepted and how
    /// many of those freed their slot. The rest (`handles.len()` minus accepted) were
    /// refused. One loop over a batch, so the owner's tables are looked up the same way
    /// for each handle without the caller's state in between.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let (s, t) = (a.alloc(1, true).unwrap(), a.alloc(1, true).unwrap());
    /// a.lend(s.handle, 0b11).unwrap();
    /// a.lend(t.handle, 0b10).unwrap();
    /// // t freed, s still lent to reader 0; the second s is a double return, 7 is garbage.
    /// assert_eq!(a.give_back_all(&[s.handle, t.handle, s.handle, 7], 1), (2, 1));
    /// assert_eq!(a.give_back_all(&[s.handle], 64), (0, 0)); // no reader 64
    /// ```
    #[inline(never)]
    pub fn give_back_all(&self, handles: &[u64], reader: u32) -> (usize, usize) {
        if reader >= 64 {
            return (0, 0);
        }
        let bit = 1u64 << reader;
        // Kept in registers for the whole batch: the committed words and the extents
        // published (neither changes during it: a give-back commits and publishes
        // nothing).
        let words = self.words.view();
        let shadow = &self.shadow[..(self.shadow_used.get() as usize).min(self.shadow.len())];
        let (mut ok, mut freed) = (0, 0);
        for &h in handles {
            // The checks of `give_back`, in its order: extent and slot in range (the
            // owner's own copy of the extent table), generation non-zero and current,
            // Lent, lent to `reader` and not yet returned by it.
            let p = HandleParts::decode(h);
            let Some(x) = shadow.get(p.extent as usize).map(Cell::get) else { continue };
            if p.generation == 0 || p.slot >= x.slots {
                continue;
            }
            let meta_off = meta_offset(x.start, p.slot);
            let Some(meta) = usize::try_from(meta_off).ok().and_then(|off| words.block::<4>(off)) else {
                continue;
            };
            let st = get(&meta[M_STATE]);
            if st != u64::from(p.generation) << 32 | S_LENT {
                continue;
            }
            let mask = get(&meta[M_LENT_MASK]);
            if mask & bit == 0 {
                continue;
            }
            if mask != bit {
                put(&meta[M_LENT_MASK], mask & !bit);
                ok += 1;
                continue;
            }
            let live = Live { meta, class: x.class as usize, st, meta_off };
            if self.release(&live, C_LENT).is_ok() {
                ok += 1;
                freed += 1;
            }
        }
        (ok, freed)
    }

    /// `give_back` for a reader already checked to be below 64.
    #[inline(always)]
    fn give_back_bit(&self, h: u64, reader: u32) -> Result<GiveBack, ReturnError> {
        let s = self.live(h)?;
        match s.state() {
            S_LENT => {}
            S_OWNED => return Err(ReturnError::NotLent),
            _ => return Err(ReturnError::Corrupt { what: "slot state" }),
        }
        let mask = get(&s.meta[M_LENT_MASK]);
        let bit = 1u64 << (reader & 63);
        if mask & bit == 0 {
            return Err(ReturnError::NotLentTo { reader });
        }
        if mask == bit {
            self.release(&s, C_LENT)?;
            Ok(GiveBack::Freed)
        } else {
            put(&s.meta[M_LENT_MASK], mask & !bit);
            Ok(GiveBack::StillLent)
        }
    }

    /// Lent -> Owned, all readers' bits cleared: the send failed, so no reader has the
    /// handle; the owner retries or frees it.
    ///
    /// # Errors
    ///
    /// [`ReturnError::Invalid`], [`ReturnError::Stale`], [`ReturnError::NotLent`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// a.lend(s.handle, 1).unwrap();
    /// a.take_back(s.handle).unwrap();
    /// a.free(s.handle).unwrap();
    /// ```
    #[inline]
    pub fn take_back(&self, h: u64) -> Result<(), ReturnError> {
        let s = self.live(h)?;
        match s.state() {
            S_LENT => {
                let row = self
                    .row(s.class)
                    .map_err(|_| ReturnError::Corrupt { what: "class row" })?;
                put(&s.meta[M_LENT_MASK], 0);
                put(&s.meta[M_STATE], s.st & !STATE_MASK | S_OWNED);
                bump(&row[C_LENT], -1);
                bump(&row[C_OWNED], 1);
                Ok(())
            }
            S_OWNED => Err(ReturnError::NotLent),
            _ => Err(ReturnError::Corrupt { what: "slot state" }),
        }
    }

    /// A reader died: clear its bit on every lent slot, freeing those it held last.
    /// Returns how many slots it held. A reader id >= 64 holds nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(1, true).unwrap();
    /// a.lend(s.handle, 0b10).unwrap();
    /// assert_eq!(a.reclaim_reader(1), 1);
    /// assert!(a.free(s.handle).is_err()); // freed by the reclaim
    /// ```
    pub fn reclaim_reader(&self, reader: u32) -> usize {
        if reader >= 64 {
            return 0;
        }
        let bit = 1u64 << reader;
        let Some(h) = self.header() else { return 0 };
        let used = get(&h[H_EXTENTS_USED]).min(u64::from(self.max_extents)) as u32;
        let mut held = 0;
        for e in 0..used {
            let Some(x) = self.extent_row(e) else { break };
            let class = (get(&x[X_CLASS]) as usize).min(self.classes.len());
            if self.row(class).is_err() {
                break;
            }
            let (start, slots) = (
                get(&x[X_OFFSET]),
                get(&x[X_SLOTS]).min(MAX_OWNER_SLOTS as u64) as u32,
            );
            for slot in 0..slots {
                let Some(meta) = self.meta(start, slot) else {
                    break;
                };
                let st = get(&meta[M_STATE]);
                let mask = get(&meta[M_LENT_MASK]);
                if st & STATE_MASK != S_LENT || mask & bit == 0 {
                    continue;
                }
                held += 1;
                if mask == bit {
                    let live = Live {
                        meta,
                        class,
                        st,
                        meta_off: meta_offset(start, slot),
                    };
                    // Cannot fail: the class row was found above.
                    let _ = self.release(&live, C_LENT);
                } else {
                    put(&meta[M_LENT_MASK], mask & !bit);
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use crate::owner::{GiveBack, HandleParts, HeapPoolMemory, OwnerAlloc, OwnerConfig};

    /// Two allocators given the same slots, lends and returns: one takes the returns one
    /// by one with `give_back`, the other in batches with `give_back_all`. Valid, double,
    /// stale, wrong-reader, unlent, garbage and out-of-range handles alike: the same
    /// handles are accepted and freed, and both pools end up word for word the same.
    #[test]
    fn give_back_all_accepts_and_refuses_exactly_what_give_back_does() {
        let cfg = OwnerConfig { classes: vec![64, 256], extent_bytes: 4096, max_extents: 8 };
        let make = || OwnerAlloc::create(HeapPoolMemory::new(1 << 20).unwrap(), 0, &cfg).unwrap();
        let (one, all) = (make(), make());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut lent = Vec::new();
        let (mut accepted, mut frees, mut refused) = (0, 0, 0);
        for round in 0..200 {
            // Allocate and lend a few (same sequence in both: same handles).
            for _ in 0..next() % 6 {
                let len = if next() % 3 == 0 { 200 } else { 40 };
                let (Ok(s), Ok(t)) = (one.alloc(len, true), all.alloc(len, true)) else { break };
                assert_eq!(s, t);
                if next() % 5 == 0 {
                    lent.push(s.handle); // kept Owned: returning it is a bad return
                    continue;
                }
                let mask = 1 << (next() % 4) | 1 << (next() % 4); // one or two of readers 0..4
                one.lend(s.handle, mask).unwrap();
                all.lend(t.handle, mask).unwrap();
                lent.push(s.handle);
            }
            // A batch of returns by one reader, good and bad mixed.
            let reader = match next() % 10 {
                0 => 64 + (next() % 2) as u32, // no such reader
                _ => (next() % 5) as u32,      // 4: never lent to
            };
            let batch: Vec<u64> = (0..next() % 40)
                .map(|_| match next() % 8 {
                    0 => next(),                                              // garbage
                    1 => HandleParts { extent: 7, ..HandleParts::decode(next()) }.encode(), // unborn extent
                    _ if lent.is_empty() => next(),
                    k => {
                        let h = lent[(next() as usize) % lent.len()];
                        if k == 2 { h ^ 1 << 32 } else { h } // another generation, or the handle
                    }
                })
                .collect();
            let (mut ok, mut freed) = (0, 0);
            for &h in &batch {
                match one.give_back(h, reader) {
                    Ok(GiveBack::Freed) => (ok, freed) = (ok + 1, freed + 1),
                    Ok(GiveBack::StillLent) => ok += 1,
                    Err(_) => {}
                }
            }
            assert_eq!(all.give_back_all(&batch, reader), (ok, freed), "round {round}");
            (accepted, frees, refused) = (accepted + ok, frees + freed, refused + batch.len() - ok);
            assert_eq!(one.audit().unwrap(), all.audit().unwrap(), "round {round}");
        }
        // The mix exercised every outcome.
        assert!(accepted > frees && frees > 20 && refused > 100, "{accepted} {frees} {refused}");
        let words = |a: &OwnerAlloc<HeapPoolMemory>| {
            (0..a.words.limit() / 8).map(|i| a.words.block::<1>(i * 8).map(|w| super::get(&w[0]))).collect::<Vec<_>>()
        };
        assert_eq!(words(&one), words(&all));
    }
}
