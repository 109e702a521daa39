//! Slot transitions driven by handles: `free`, `lend`, `give_back`, `take_back`, and
//! `reclaim_reader`. A handle coming back from a reader is hostile input: every field
//! is checked against the owner's own tables before it is used.

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
        let s = self.live(h)?;
        match s.state() {
            S_LENT => {}
            S_OWNED => return Err(ReturnError::NotLent),
            _ => return Err(ReturnError::Corrupt { what: "slot state" }),
        }
        let mask = get(&s.meta[M_LENT_MASK]);
        let bit = 1u64 << reader;
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
