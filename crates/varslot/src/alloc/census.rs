//! Looking at an allocator without changing it: counters ([`Stats`]), slot
//! counts per extent and per owner ([`Census`]), the handles a peer holds.

use super::Allocator;
use crate::handle::{Handle, PeerId};
use crate::layout::*;
use crate::memory::SegmentMemory;
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

/// Counters from [`Allocator::inspect`].
///
/// # Examples
///
/// ```
/// # use numashm_varslot::{Config, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 64)).unwrap();
/// let s = a.inspect();
/// assert_eq!(s.committed_bytes, 4096);
/// assert!(s.reserved_bytes >= s.committed_bytes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the segment may ever use (its `max_len`).
    pub reserved_bytes: u64,
    /// Bytes committed: the control area (in a segment) plus every extent not released.
    pub committed_bytes: u64,
    /// End of the last extent, in bytes from the base.
    pub data_end: u64,
    /// Bumped after every publish, release and recommit.
    pub epoch: u64,
    /// Bit `c` set: some peer found class `c` exhausted and asks the owner to grow it.
    pub grow_requests: u64,
}

/// Slot counts of one extent, from [`Allocator::census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentCensus {
    /// Class index.
    pub class: usize,
    /// Extent index within the class.
    pub extent: usize,
    /// Free slots.
    pub free: usize,
    /// Allocated slots.
    pub allocated: usize,
    /// Slots in flight.
    pub in_flight: usize,
}

/// Result of [`Allocator::census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// Per extent, in class order.
    pub extents: Vec<ExtentCensus>,
    /// `(owner, allocated, in flight)` per owner, ascending.
    pub owners: Vec<(PeerId, usize, usize)>,
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// NUMA node recorded for an extent, and whether its pages are released.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1).node(Some(1))).unwrap();
    /// assert_eq!(a.extent_info(0, 0), Some((Some(1), false)));
    /// ```
    pub fn extent_info(&self, class: usize, extent: usize) -> Option<(Option<u32>, bool)> {
        let c = self.layout.classes.get(class)?;
        if extent >= self.extents(c) {
            return None;
        }
        // Relaxed: ordered after the extent-publish Acquire in `extents`; a hint anyway.
        let n = self.ext_word(c, extent, X_NODE).load(Ordering::Relaxed);
        let node = n as u32;
        Some(((node != NONE).then_some(node), n & X_RELEASED != 0))
    }

    /// Committed versus reserved bytes, growth epoch and pending grow requests.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// assert_eq!(a.inspect().epoch, 1);
    /// ```
    pub fn inspect(&self) -> Stats {
        let w = self.words.words();
        // Relaxed: statistics; no data is read on their strength.
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        Stats {
            reserved_bytes: self.max_len as u64,
            committed_bytes: r(H_COMMITTED),
            data_end: r(H_DATA_END),
            epoch: r(H_EPOCH),
            grow_requests: r(H_GROW_REQUESTS),
        }
    }

    /// Counts the slots of every extent by state, and the slots each owner holds,
    /// by reading the metadata words once (a snapshot: concurrent operations may
    /// move a slot between counts while it runs). Read-only: inspectors use it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let h = a.alloc(1, 9).unwrap();
    /// a.mark_in_flight(a.alloc(1, 9).unwrap(), 3).unwrap();
    /// let c = a.census();
    /// assert_eq!((c.extents[0].free, c.extents[0].allocated, c.extents[0].in_flight), (2, 1, 1));
    /// assert_eq!(c.owners, vec![(3, 0, 1), (9, 1, 0)]);
    /// # a.free(h).unwrap();
    /// ```
    pub fn census(&self) -> Census {
        let mut extents = Vec::new();
        let mut owners: std::collections::BTreeMap<PeerId, (usize, usize)> = std::collections::BTreeMap::new();
        for (class, c) in self.layout.classes.iter().enumerate() {
            for ext in 0..self.extents(c) {
                let mut e = ExtentCensus { class, extent: ext, free: 0, allocated: 0, in_flight: 0 };
                for slot in 0..c.slots {
                    // Relaxed: a statistic; every word is read once.
                    let m = self.meta_word(c, ext, slot).load(Ordering::Relaxed);
                    match meta_state(m) {
                        S_FREE => e.free += 1,
                        S_ALLOCATED => {
                            e.allocated += 1;
                            owners.entry(meta_payload(m)).or_default().0 += 1;
                        }
                        S_IN_FLIGHT => {
                            e.in_flight += 1;
                            owners.entry(meta_payload(m)).or_default().1 += 1;
                        }
                        _ => {}
                    }
                }
                extents.push(e);
            }
        }
        Census { extents, owners: owners.into_iter().map(|(p, (a, f))| (p, a, f)).collect() }
    }

    /// Handles of every slot `peer` owns (Allocated, or in flight to it), read
    /// from the metadata words (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 4)).unwrap();
    /// let h = a.alloc(1, 5).unwrap();
    /// assert_eq!(a.owned_by(5), vec![h]);
    /// assert!(a.owned_by(6).is_empty());
    /// ```
    pub fn owned_by(&self, peer: PeerId) -> Vec<Handle> {
        let mut out = Vec::new();
        for (class, c) in self.layout.classes.iter().enumerate() {
            for ext in 0..self.extents(c) {
                for slot in 0..c.slots {
                    // Relaxed: a snapshot; callers act through CASes that re-check.
                    let m = self.meta_word(c, ext, slot).load(Ordering::Relaxed);
                    let s = meta_state(m);
                    if (s == S_ALLOCATED || s == S_IN_FLIGHT) && meta_payload(m) == peer {
                        if let Some(h) = Handle::pack_in_range(class, ext, slot, meta_gen(m)) {
                            out.push(h);
                        }
                    }
                }
            }
        }
        out
    }
}
