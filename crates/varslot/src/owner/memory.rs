//! The memory a pool allocator lives in: [`PoolMemory`], and [`HeapPoolMemory`] for
//! tests, proptest and miri.
#![allow(unsafe_code)]

use core::ptr::NonNull;
use std::alloc::Layout;

use super::error::CommitError;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};

/// Alignment of [`HeapPoolMemory`]'s base (a page, like a real mapping).
const HEAP_ALIGN: usize = 4096;

/// A pool's bytes: a fixed base, `committed()` bytes usable now, growing in place up to
/// `reserved()`. The facade implements it over a sealed region (`commit` = resize);
/// [`HeapPoolMemory`] implements it on the heap.
///
/// # Safety
///
/// Implementors promise, for as long as the value lives (even after it is moved):
/// 1. `base()` always returns the same pointer, aligned to 128 bytes, valid for reads
///    and writes of `committed()` bytes by this process (others may read them);
/// 2. `committed()` never decreases and never exceeds `reserved()`, which is constant;
/// 3. after `commit(len)` returns `Ok`, `committed() >= len`;
/// 4. committed bytes stay committed, and nothing but the user of this value writes them.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, PoolMemory};
/// let m = HeapPoolMemory::new(1 << 16).unwrap();
/// m.commit(4096).unwrap();
/// assert!(m.committed() >= 4096);
/// assert_eq!(m.reserved(), 1 << 16);
/// ```
pub unsafe trait PoolMemory {
    /// Start of the pool memory; the same pointer forever.
    fn base(&self) -> NonNull<u8>;
    /// Bytes usable now.
    fn committed(&self) -> usize;
    /// The most bytes ever usable.
    fn reserved(&self) -> usize;
    /// Grow the usable bytes to at least `len` (at most `reserved()`).
    ///
    /// # Errors
    ///
    /// [`CommitError::BeyondReserved`] past the reservation, [`CommitError::Os`] if the
    /// system refuses.
    fn commit(&self, len: usize) -> Result<(), CommitError>;
}

/// A zeroed, 4096-aligned heap allocation of `reserved` bytes that "commits" by bumping
/// a length: what the unit tests, proptest and miri run the pool allocator on.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, PoolMemory};
/// let m = HeapPoolMemory::new(8192).unwrap();
/// assert_eq!(m.committed(), 0);
/// m.commit(100).unwrap();
/// assert_eq!(m.committed(), 100);
/// ```
#[derive(Debug)]
pub struct HeapPoolMemory {
    ptr: NonNull<u8>,
    reserved: usize,
    committed: AtomicUsize,
}

// SAFETY: the allocation is owned outright; its bytes are reached only through raw
// pointers whose users follow the pool protocol, and `committed` is atomic.
unsafe impl Send for HeapPoolMemory {}
// SAFETY: as above; `&HeapPoolMemory` exposes nothing but an atomic and a raw base.
unsafe impl Sync for HeapPoolMemory {}

impl HeapPoolMemory {
    /// Allocate `reserved` zeroed bytes (4096-aligned), with nothing committed yet.
    ///
    /// # Errors
    ///
    /// [`CommitError::BeyondReserved`] if `reserved` is zero or too large for a layout,
    /// [`CommitError::Os`] (`op: "alloc"`) if the heap refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = numashm_varslot::HeapPoolMemory::new(4096).unwrap();
    /// assert!(numashm_varslot::HeapPoolMemory::new(0).is_err());
    /// # drop(m);
    /// ```
    pub fn new(reserved: usize) -> Result<Self, CommitError> {
        let layout = Self::layout(reserved)?;
        // SAFETY: `layout` has a non-zero size (checked in `layout`).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(CommitError::Os {
            op: "alloc",
            errno: 12,
        })?;
        Ok(Self {
            ptr,
            reserved,
            committed: AtomicUsize::new(0),
        })
    }

    fn layout(reserved: usize) -> Result<Layout, CommitError> {
        if reserved == 0 {
            return Err(CommitError::BeyondReserved {
                len: 0,
                reserved: 0,
            });
        }
        Layout::from_size_align(reserved, HEAP_ALIGN).map_err(|_| CommitError::BeyondReserved {
            len: reserved,
            reserved: isize::MAX as usize,
        })
    }
}

impl Drop for HeapPoolMemory {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.reserved) {
            // SAFETY: `ptr` came from `alloc_zeroed` with this same layout; freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: 1. `ptr` never changes, is 4096-aligned and valid for `reserved` bytes;
// 2. `committed` only grows (`fetch_max`) and `commit` caps it at `reserved`;
// 3. `commit` stores at least `len` before returning Ok; 4. nothing is freed before drop.
unsafe impl PoolMemory for HeapPoolMemory {
    fn base(&self) -> NonNull<u8> {
        self.ptr
    }
    fn committed(&self) -> usize {
        // Relaxed: a bound known to the one owner thread that commits; the heap bytes
        // exist from the start, so no data is published by this word.
        self.committed.load(Ordering::Relaxed)
    }
    fn reserved(&self) -> usize {
        self.reserved
    }
    fn commit(&self, len: usize) -> Result<(), CommitError> {
        if len > self.reserved {
            return Err(CommitError::BeyondReserved {
                len,
                reserved: self.reserved,
            });
        }
        // Relaxed: see `committed`.
        self.committed.fetch_max(len, Ordering::Relaxed);
        Ok(())
    }
}

// SAFETY: forwarding to `T`, which upholds the contract.
unsafe impl<T: PoolMemory + ?Sized> PoolMemory for std::sync::Arc<T> {
    fn base(&self) -> NonNull<u8> {
        (**self).base()
    }
    fn committed(&self) -> usize {
        (**self).committed()
    }
    fn reserved(&self) -> usize {
        (**self).reserved()
    }
    fn commit(&self, len: usize) -> Result<(), CommitError> {
        (**self).commit(len)
    }
}
