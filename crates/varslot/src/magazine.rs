//! [`Magazine`]: a per-peer (per-thread) cache of slots in front of the free lists.

use crate::alloc::Allocator;
use crate::error::{AllocError, HandleError};
use crate::handle::{Handle, PeerId};
use crate::memory::SegmentMemory;
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
    peer: PeerId,
    cap: usize,
    /// Class `c`'s cache is `bufs[c * cap .. c * cap + lens[c]]`.
    bufs: Box<[Option<Handle>]>,
    lens: Box<[usize]>,
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
        let n = self.class_count();
        Magazine {
            alloc: self,
            peer,
            cap: per_class,
            bufs: vec![None; n * per_class].into_boxed_slice(),
            lens: vec![0; n].into_boxed_slice(),
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
        let class = self.alloc.class_for(len)?;
        let base = class * self.cap;
        while self.lens[class] > 0 {
            self.lens[class] -= 1;
            if let Some(h) = self.bufs[base + self.lens[class]].take() {
                // Reclaimed while we were alive (a protocol breach): forget it.
                if self.alloc.still_ours(h, self.peer) {
                    return Ok(h);
                }
            }
        }
        self.alloc.alloc(len, self.peer)
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
        match self.lens.get(class) {
            Some(&n) if n < self.cap => {
                let fresh = self.alloc.recycle(h, self.peer)?;
                self.bufs[class * self.cap + n] = Some(fresh);
                self.lens[class] = n + 1;
                Ok(())
            }
            _ => self.alloc.free(h),
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
        self.lens.iter().sum()
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
        for class in 0..self.lens.len() {
            for i in 0..self.lens[class] {
                if let Some(h) = self.bufs[class * self.cap + i].take() {
                    // A slot reclaimed meanwhile is Stale here: nothing to do.
                    let _ = self.alloc.free(h);
                }
            }
            self.lens[class] = 0;
        }
    }
}

impl<W: Words, M: SegmentMemory> Drop for Magazine<'_, W, M> {
    fn drop(&mut self) {
        self.flush();
    }
}
