//! Counting: [`OwnerAlloc::census`] (the class table's counters) and
//! [`OwnerAlloc::audit`] (a full walk that checks them against every slot and free list).

use super::alloc::{get, meta_offset, OwnerAlloc};
use super::error::OwnerError;
use super::layout::*;
use super::memory::PoolMemory;

/// Counts for one class (or for the dedicated extents).
///
/// # Examples
///
/// ```
/// use numashm_varslot::ClassCensus;
/// let c = ClassCensus::default();
/// assert_eq!(c.free + c.owned + c.lent, c.slots);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCensus {
    /// Slot size (0 for the dedicated row: each extent has its own).
    pub slot_size: usize,
    /// Extents created for the class.
    pub extents: u64,
    /// Slots in those extents.
    pub slots: u64,
    /// Free slots.
    pub free: u64,
    /// Slots the owner holds.
    pub owned: u64,
    /// Slots lent to readers.
    pub lent: u64,
}

/// The allocator's counts (bad returns are counted by the caller, not here).
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// let _s = a.alloc(1, true).unwrap();
/// let c = a.census();
/// assert_eq!((c.classes[0].owned, c.classes[0].slots), (1, 1024));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerCensus {
    /// One entry per class, in class order.
    pub classes: Vec<ClassCensus>,
    /// Dedicated (oversize) extents, one slot each.
    pub dedicated: ClassCensus,
    /// Extents created (classes and dedicated).
    pub extents: u64,
    /// Bytes the memory has committed.
    pub committed: usize,
    /// Bytes the memory may ever commit.
    pub reserved: usize,
}

impl<M: PoolMemory> OwnerAlloc<M> {
    fn row_census(&self, c: usize) -> ClassCensus {
        let Ok(r) = self.row(c) else {
            return ClassCensus::default();
        };
        let (slots, owned, lent) = (get(&r[C_SLOTS]), get(&r[C_OWNED]), get(&r[C_LENT]));
        ClassCensus {
            slot_size: get(&r[C_SLOT_SIZE]) as usize,
            extents: get(&r[C_EXTENTS]),
            slots,
            // Not kept in the row (one counter fewer on the hot path).
            free: slots.saturating_sub(owned).saturating_sub(lent),
            owned,
            lent,
        }
    }

    /// The counts kept in the class table (a few loads per class).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// assert_eq!(a.census().extents, 0);
    /// ```
    pub fn census(&self) -> OwnerCensus {
        let n = self.classes.len();
        let extents = self.header().map_or(0, |h| get(&h[H_EXTENTS_USED]));
        OwnerCensus {
            classes: (0..n).map(|c| self.row_census(c)).collect(),
            dedicated: self.row_census(n),
            extents,
            committed: self.memory().committed(),
            reserved: self.memory().reserved(),
        }
    }

    /// Walk every extent, slot and free list and check them against the counters: the
    /// census the walk found, if everything agrees. For tests, fuzzing and inspection
    /// tools; the owner's own writes should never make it fail.
    ///
    /// # Errors
    ///
    /// [`OwnerError::Corrupt`] naming the first disagreement (overlapping or
    /// out-of-bounds extents, a bad state, a free list that is not exactly the free
    /// slots, counters that do not match).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
    /// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
    /// let s = a.alloc(5000, true).unwrap();
    /// a.lend(s.handle, 3).unwrap();
    /// assert_eq!(a.audit().unwrap(), a.census());
    /// ```
    pub fn audit(&self) -> Result<OwnerCensus, OwnerError> {
        let bad = |what| OwnerError::Corrupt { what };
        let n = self.classes.len();
        let h = self.header().ok_or(bad("header"))?;
        let used = get(&h[H_EXTENTS_USED]);
        if used > u64::from(self.max_extents) {
            return Err(bad("extent count"));
        }
        let mut walk: Vec<ClassCensus> = (0..=n)
            .map(|c| ClassCensus {
                slot_size: self.row_census(c).slot_size,
                ..ClassCensus::default()
            })
            .collect();
        let mut free_links = Vec::new();
        let mut end = self.layout.tables_end as u64;
        for e in 0..used as u32 {
            let x = self.extent_row(e).ok_or(bad("extent row"))?;
            let (start, bytes, class, slots) = (
                get(&x[X_OFFSET]),
                get(&x[X_BYTES]),
                get(&x[X_CLASS]) as usize,
                get(&x[X_SLOTS]),
            );
            if start < end || class > n || slots == 0 || slots > MAX_OWNER_SLOTS as u64 {
                return Err(bad("extent row"));
            }
            let r = self.row(class)?;
            let (skip, size) = (get(&r[C_DATA_SKIP]), get(&r[C_SLOT_SIZE]));
            let expect = if class == n {
                bytes.max(skip)
            } else {
                skip + slots * size
            };
            if bytes != expect || skip < slots * META_BYTES as u64 {
                return Err(bad("extent bytes"));
            }
            end = start.checked_add(bytes).ok_or(bad("extent bytes"))?;
            if end > self.words.limit() as u64 || end > get(&h[H_BUMP]) {
                return Err(bad("extent beyond committed"));
            }
            let w = &mut walk[class];
            w.extents += 1;
            w.slots += slots;
            for s in 0..slots as u32 {
                let meta = self.meta(start, s).ok_or(bad("slot metadata"))?;
                let st = get(&meta[M_STATE]);
                if st >> 32 == 0 {
                    return Err(bad("generation 0"));
                }
                if get(&meta[M_POSITION])
                    != (HandleParts {
                        generation: 0,
                        extent: e,
                        slot: s,
                    })
                    .encode()
                {
                    return Err(bad("slot position"));
                }
                match st & STATE_MASK {
                    S_FREE => {
                        w.free += 1;
                        free_links.push(meta_offset(start, s));
                    }
                    S_OWNED => w.owned += 1,
                    S_LENT => w.lent += 1,
                    _ => return Err(bad("slot state")),
                }
            }
        }
        self.audit_free_lists(&mut free_links, used)?;
        let found = OwnerCensus {
            dedicated: walk.pop().unwrap_or_default(),
            classes: walk,
            extents: used,
            committed: self.memory().committed(),
            reserved: self.memory().reserved(),
        };
        if found != self.census() {
            return Err(bad("counters disagree with the slots"));
        }
        Ok(found)
    }

    /// Every free list is a chain of Free slots of its own class, and together they hold
    /// each Free slot exactly once (`free_links`: the Free slots found, consumed here).
    fn audit_free_lists(&self, free_links: &mut [u64], used: u64) -> Result<(), OwnerError> {
        let bad = |what| OwnerError::Corrupt { what };
        free_links.sort_unstable();
        let mut seen = vec![false; free_links.len()];
        for c in 0..=self.classes.len() {
            let mut cur = get(&self.row(c)?[C_FREE_HEAD]);
            while cur != 0 {
                let i = free_links
                    .binary_search(&cur)
                    .map_err(|_| bad("free list holds a slot that is not free"))?;
                if std::mem::replace(&mut seen[i], true) {
                    return Err(bad("free list revisits a slot"));
                }
                // `cur` is a Free slot's metadata offset (found above), so in bounds.
                let meta = self
                    .words
                    .block::<4>(cur as usize)
                    .ok_or(bad("free link"))?;
                let p = HandleParts::decode(get(&meta[M_POSITION]));
                let x = self
                    .extent_row(p.extent)
                    .filter(|_| u64::from(p.extent) < used)
                    .ok_or(bad("free link"))?;
                if get(&x[X_CLASS]) as usize != c {
                    return Err(bad("free list crosses classes"));
                }
                cur = get(&meta[M_NEXT_FREE]);
            }
        }
        if seen.iter().any(|s| !s) {
            return Err(bad("a free slot is on no free list"));
        }
        Ok(())
    }
}
