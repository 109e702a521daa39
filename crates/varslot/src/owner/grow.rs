//! [`OwnerAlloc`]'s growth: carving a new extent out of the reservation,
//! publishing it to readers, a class's new extent and its free list, and
//! dedicated extents for oversize requests (made, or a freed one reused).
//! Split from `alloc.rs` (the hot path and creation); same single-writer rules.

use super::alloc::{bump, get, page_end, put, ExtentShadow, OwnedSlot, OwnerAlloc};
use super::error::OwnerError;
use super::layout::*;
use super::memory::PoolMemory;
use crate::loom::sync::atomic::{AtomicU64, Ordering};

impl<M: PoolMemory> OwnerAlloc<M> {
    /// Reserve room for a new extent of `bytes` aligned to `align`: its start, or
    /// Exhausted/Commit. Does not publish anything.
    pub(super) fn carve(&self, class: usize, bytes: usize, align: usize) -> Result<(u32, usize), OwnerError> {
        let h = self
            .header()
            .ok_or(OwnerError::Corrupt { what: "header" })?;
        let used = get(&h[H_EXTENTS_USED]);
        if used >= u64::from(self.max_extents) {
            return Err(OwnerError::Exhausted { class });
        }
        let reserved = self.memory().reserved();
        let start =
            round_up(get(&h[H_BUMP]) as usize, align).ok_or(OwnerError::Exhausted { class })?;
        let end = start
            .checked_add(bytes)
            .filter(|&e| e <= reserved)
            .ok_or(OwnerError::Exhausted { class })?;
        self.memory().commit(page_end(end, reserved))?;
        let committed = self.memory().committed();
        if committed < end || committed > reserved {
            return Err(OwnerError::Corrupt {
                what: "memory committed less than asked",
            });
        }
        self.words.sync_limit();
        Ok((used as u32, start))
    }

    /// Publish extent `e` at `start`: its row, then the header's count and bump.
    pub(super) fn publish_extent(
        &self,
        e: u32,
        start: usize,
        bytes: usize,
        class: usize,
        slots: usize,
    ) -> Result<(), OwnerError> {
        let corrupt = OwnerError::Corrupt {
            what: "extent table",
        };
        let x = self.extent_row(e).ok_or(corrupt)?;
        put(&x[X_OFFSET], start as u64);
        put(&x[X_BYTES], bytes as u64);
        put(&x[X_CLASS], class as u64);
        put(&x[X_SLOTS], slots as u64);
        let h = self.header().ok_or(corrupt)?;
        // The owner's private copy, what returned handles are checked against.
        let (slots32, class32) = (u32::try_from(slots), u32::try_from(class));
        let (Ok(slots32), Ok(class32)) = (slots32, class32) else {
            return Err(corrupt);
        };
        self.set_shadow(
            e,
            ExtentShadow {
                start: start as u64,
                slots: slots32,
                class: class32,
            },
        );
        put(&h[H_BUMP], (start + bytes) as u64);
        // SYNC owner-extent-publish (Release): a reader that Acquire-loads the count sees
        // the extent's row and slot metadata written before it.
        h[H_EXTENTS_USED].store(u64::from(e) + 1, Ordering::Release);
        Ok(())
    }

    /// Commit a new extent of class `c`, all its slots free (generation 1), pushed on the
    /// class's free list so slot 0 comes out first.
    #[cold]
    pub(super) fn grow_class(&self, c: usize, row: &[AtomicU64; 16]) -> Result<(), OwnerError> {
        let slots = get(&row[C_SLOTS_PER_EXTENT]) as usize;
        let (size, skip) = (self.classes[c], self.skips[c]);
        if slots == 0 || slots > MAX_OWNER_SLOTS || skip != class_data_skip(slots) {
            return Err(OwnerError::Corrupt { what: "class row" });
        }
        let bytes = slots
            .checked_mul(size)
            .and_then(|b| b.checked_add(skip))
            .ok_or(OwnerError::Exhausted { class: c })?;
        let (e, start) = self.carve(c, bytes, EXTENT_ALIGN)?;
        let old_head = get(&row[C_FREE_HEAD]);
        for s in 0..slots as u32 {
            let meta = self.meta(start as u64, s).ok_or(OwnerError::Corrupt {
                what: "extent metadata",
            })?;
            let next = if s as usize + 1 < slots {
                (start + (s as usize + 1) * META_BYTES) as u64
            } else {
                old_head
            };
            put(&meta[M_STATE], 1 << 32 | S_FREE);
            put(&meta[M_LENT_MASK], 0);
            put(&meta[M_NEXT_FREE], next);
            put(
                &meta[M_POSITION],
                HandleParts {
                    generation: 0,
                    extent: e,
                    slot: s,
                }
                .encode(),
            );
        }
        put(&row[C_FREE_HEAD], start as u64);
        bump(&row[C_EXTENTS], 1);
        bump(&row[C_SLOTS], slots as i64);
        self.publish_extent(e, start, bytes, c, slots)
    }

    /// Oversize: reuse a free dedicated extent that is large enough (first fit), else
    /// commit a new one of `len` rounded up to a page, after a page of metadata.
    #[cold]
    pub(super) fn alloc_dedicated(&self, len: usize, grow: bool) -> Result<OwnedSlot, OwnerError> {
        let class = self.classes.len();
        let room = self
            .memory()
            .reserved()
            .saturating_sub(round_up(self.layout.tables_end, PAGE).unwrap_or(usize::MAX));
        let max = room.saturating_sub(PAGE);
        let need = match round_up(len, PAGE) {
            Some(n) if n <= max => n,
            _ => return Err(OwnerError::TooLarge { len, max }),
        };
        let row = self.row(class)?;
        if let Some(s) = self.reuse_dedicated(row, len)? {
            return Ok(s);
        }
        if !grow {
            return Err(OwnerError::Exhausted { class });
        }
        let bytes = PAGE + need;
        let (e, start) = self.carve(class, bytes, PAGE)?;
        let meta = self.meta(start as u64, 0).ok_or(OwnerError::Corrupt {
            what: "extent metadata",
        })?;
        put(&meta[M_STATE], 1 << 32 | S_OWNED);
        put(&meta[M_LENT_MASK], 0);
        put(&meta[M_NEXT_FREE], 0);
        put(
            &meta[M_POSITION],
            HandleParts {
                generation: 0,
                extent: e,
                slot: 0,
            }
            .encode(),
        );
        bump(&row[C_OWNED], 1);
        bump(&row[C_EXTENTS], 1);
        bump(&row[C_SLOTS], 1);
        self.publish_extent(e, start, bytes, class, 1)?;
        let handle = HandleParts {
            generation: 1,
            extent: e,
            slot: 0,
        }
        .encode();
        Ok(OwnedSlot {
            handle,
            offset: start + PAGE,
            capacity: need,
        })
    }

    /// First fit on the dedicated free list (bounded by the extent count).
    pub(super) fn reuse_dedicated(
        &self,
        row: &[AtomicU64; 16],
        len: usize,
    ) -> Result<Option<OwnedSlot>, OwnerError> {
        let corrupt = |what| OwnerError::Corrupt { what };
        let mut prev: Option<&AtomicU64> = None;
        let mut cur = get(&row[C_FREE_HEAD]);
        for _ in 0..self.max_extents {
            if cur == 0 {
                return Ok(None);
            }
            let meta = usize::try_from(cur)
                .ok()
                .and_then(|off| self.words.block::<4>(off))
                .ok_or(corrupt("dedicated free list"))?;
            let pos = get(&meta[M_POSITION]);
            let p = HandleParts::decode(pos);
            let x = self
                .extent_row(p.extent)
                .ok_or(corrupt("dedicated free list"))?;
            let (start, bytes) = (get(&x[X_OFFSET]), get(&x[X_BYTES]) as usize);
            let st = get(&meta[M_STATE]);
            if st & STATE_MASK != S_FREE || p.slot != 0 || start != cur {
                return Err(corrupt("free list holds a slot that is not free"));
            }
            let capacity = bytes.saturating_sub(PAGE);
            if capacity >= len {
                put(prev.unwrap_or(&row[C_FREE_HEAD]), get(&meta[M_NEXT_FREE]));
                put(&meta[M_STATE], st & !STATE_MASK | S_OWNED);
                bump(&row[C_OWNED], 1);
                let handle = (st & !STATE_MASK) | pos;
                return Ok(Some(OwnedSlot {
                    handle,
                    offset: start as usize + PAGE,
                    capacity,
                }));
            }
            prev = Some(&meta[M_NEXT_FREE]);
            cur = get(&meta[M_NEXT_FREE]);
        }
        Err(corrupt("dedicated free list longer than the extent table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::{HeapPoolMemory, OwnerConfig, ReturnError};

    /// The owner's private extent copy says what the pool's extent table says, for class
    /// and dedicated extents, and knows nothing past the published count.
    #[test]
    fn the_extent_shadow_matches_every_published_row() {
        let cfg = OwnerConfig { classes: vec![64, 1024], extent_bytes: 8192, max_extents: 16 };
        let a = OwnerAlloc::create(HeapPoolMemory::new(16 << 20).unwrap(), 0, &cfg).unwrap();
        assert_eq!(a.shadow(0), None);
        let small: Vec<_> = (0..200).map(|_| a.alloc(64, true).unwrap()).collect();
        let _big = a.alloc(1000, true).unwrap();
        let ded = a.alloc(2 << 20, true).unwrap();
        let used = get(&a.header().unwrap()[H_EXTENTS_USED]) as u32;
        assert!(used >= 4, "several class extents and a dedicated one: {used}");
        for e in 0..used {
            let x = a.extent_row(e).unwrap();
            let want = ExtentShadow {
                start: get(&x[X_OFFSET]),
                slots: get(&x[X_SLOTS]) as u32,
                class: get(&x[X_CLASS]) as u32,
            };
            assert_eq!(a.shadow(e), Some(want), "extent {e}");
        }
        assert_eq!(a.shadow(used), None);
        // Handles are checked against it: a slot past its extent's count, an extent not
        // published yet.
        let p = HandleParts::decode(ded.handle);
        let past = HandleParts { slot: 1, ..p }.encode();
        assert_eq!(a.give_back(past, 0), Err(ReturnError::Invalid { field: "slot" }));
        let unborn = HandleParts { extent: used, ..p }.encode();
        assert_eq!(a.give_back(unborn, 0), Err(ReturnError::Invalid { field: "extent" }));
        a.lend(small[150].handle, 0b1).unwrap();
        assert_eq!(a.give_back(small[150].handle, 0), Ok(crate::owner::GiveBack::Freed));
    }
}
