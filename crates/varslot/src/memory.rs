//! The memory the allocator lives in: [`SegmentMemory`], and [`HeapMemory`] for tests,
//! loom and miri.
#![allow(unsafe_code)]

use core::ptr::NonNull;
use std::alloc::Layout;

use crate::loom::sync::atomic::{AtomicUsize, Ordering};

/// Why a [`SegmentMemory`] operation failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapMemory, MemoryError, SegmentMemory};
/// let m = HeapMemory::new(4096).unwrap();
/// assert!(matches!(m.grow_to(8192), Err(MemoryError::OutOfRange { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The requested range lies beyond the maximum length.
    #[error("range end {end} is beyond the maximum length {max_len}")]
    OutOfRange {
        /// End of the requested range, in bytes from the base.
        end: usize,
        /// The memory's maximum length.
        max_len: usize,
    },
    /// A system call failed.
    #[error("{op} failed: errno {errno}")]
    Os {
        /// The call that failed (`"mmap"`, `"mbind"`, ...).
        op: &'static str,
        /// The raw errno.
        errno: i32,
    },
    /// This memory cannot do that (for example growing from a guest).
    #[error("{op} is not supported by this memory")]
    Unsupported {
        /// The operation attempted.
        op: &'static str,
    },
}

/// Memory the allocator lives in: a contiguous byte range whose base never moves and
/// which may grow in place up to a maximum.
///
/// The region crate implements this for a shared mapping (one reserved virtual range per
/// process, so the base is stable); [`HeapMemory`] implements it on the heap.
///
/// # Safety
///
/// Implementors promise, for as long as the value lives:
/// 1. `base()` always returns the same pointer (even after the value is moved), aligned to 64 bytes, valid for reads
///    and writes (shared between threads, and possibly processes) of `mapped_len()` bytes;
/// 2. `mapped_len()` never decreases and never exceeds `max_len()`, which is constant;
/// 3. bytes once mapped stay mapped (a `release`d range stays valid and reads as zero).
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapMemory, SegmentMemory};
/// let m = HeapMemory::new(1 << 16).unwrap();
/// m.grow_to(4096).unwrap();
/// assert_eq!(m.mapped_len(), 4096);
/// assert_eq!(m.max_len(), 1 << 16);
/// ```
pub unsafe trait SegmentMemory {
    /// Start of the usable area; the same pointer forever.
    fn base(&self) -> NonNull<u8>;
    /// Bytes currently mapped (usable) in this process.
    fn mapped_len(&self) -> usize;
    /// The most the memory can ever grow to.
    fn max_len(&self) -> usize;
    /// Owner only: grow (commit) the memory so that at least `new_len` bytes are mapped.
    ///
    /// # Errors
    ///
    /// [`MemoryError::OutOfRange`] past `max_len`, [`MemoryError::Os`] from the OS.
    fn grow_to(&self, new_len: usize) -> Result<(), MemoryError>;
    /// Guest: map whatever the owner has grown since the last call. `Ok(true)` if the
    /// mapping changed. No-op when nothing changed.
    ///
    /// # Errors
    ///
    /// [`MemoryError::Os`] from the OS.
    fn refresh(&self) -> Result<bool, MemoryError>;
    /// Bind `offset..offset + len` to NUMA node `node` before it is first touched
    /// (`None`: no preference). Heap memory ignores it.
    ///
    /// # Errors
    ///
    /// [`MemoryError::OutOfRange`], [`MemoryError::Os`].
    fn place(&self, offset: usize, len: usize, node: Option<u32>) -> Result<(), MemoryError>;
    /// Give the pages of `offset..offset + len` back to the OS (punch a hole); the range
    /// stays mapped and reads as zero afterwards.
    ///
    /// # Safety
    ///
    /// - no reference into the range is live, in any process, while this runs;
    /// - the caller owns the range (nobody writes it concurrently).
    ///
    /// # Errors
    ///
    /// [`MemoryError::OutOfRange`], [`MemoryError::Os`].
    unsafe fn release(&self, offset: usize, len: usize) -> Result<(), MemoryError>;
}

// SAFETY: forwarding to `T`, which upholds the contract.
unsafe impl<T: SegmentMemory + ?Sized> SegmentMemory for std::sync::Arc<T> {
    fn base(&self) -> NonNull<u8> {
        (**self).base()
    }
    fn mapped_len(&self) -> usize {
        (**self).mapped_len()
    }
    fn max_len(&self) -> usize {
        (**self).max_len()
    }
    fn grow_to(&self, new_len: usize) -> Result<(), MemoryError> {
        (**self).grow_to(new_len)
    }
    fn refresh(&self) -> Result<bool, MemoryError> {
        (**self).refresh()
    }
    fn place(&self, offset: usize, len: usize, node: Option<u32>) -> Result<(), MemoryError> {
        (**self).place(offset, len, node)
    }
    unsafe fn release(&self, offset: usize, len: usize) -> Result<(), MemoryError> {
        // SAFETY: the caller upholds `release`'s contract; we forward it unchanged.
        unsafe { (**self).release(offset, len) }
    }
}

/// A zeroed heap allocation of `max_len` bytes, 64-byte aligned, that "grows" by bumping
/// a length: the memory loom and miri run the allocator on.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapMemory, SegmentMemory};
/// let m = HeapMemory::new(8192).unwrap();
/// assert_eq!(m.mapped_len(), 0);
/// m.grow_to(100).unwrap();
/// assert_eq!(m.mapped_len(), 100);
/// ```
#[derive(Debug)]
pub struct HeapMemory {
    ptr: NonNull<u8>,
    max_len: usize,
    len: AtomicUsize,
}

// SAFETY: `HeapMemory` owns its allocation outright; the bytes are only reached through
// raw pointers whose users follow the slot protocol, and `len` is atomic.
unsafe impl Send for HeapMemory {}
// SAFETY: as above; `&HeapMemory` exposes nothing but atomics and a raw base pointer.
unsafe impl Sync for HeapMemory {}

impl HeapMemory {
    /// Allocate `max_len` zeroed bytes (64-byte aligned), with nothing mapped yet.
    ///
    /// # Errors
    ///
    /// [`MemoryError::OutOfRange`] if `max_len` is zero or too large for a layout,
    /// [`MemoryError::Os`] (`op: "alloc"`) if the allocator refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = numashm_varslot::HeapMemory::new(4096).unwrap();
    /// # drop(m);
    /// ```
    pub fn new(max_len: usize) -> Result<Self, MemoryError> {
        let layout = Self::layout(max_len)?;
        // SAFETY: `layout` has non-zero size (checked in `layout`).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(MemoryError::Os { op: "alloc", errno: 12 })?;
        Ok(Self { ptr, max_len, len: AtomicUsize::new(0) })
    }

    fn layout(max_len: usize) -> Result<Layout, MemoryError> {
        if max_len == 0 {
            return Err(MemoryError::OutOfRange { end: 0, max_len: 0 });
        }
        Layout::from_size_align(max_len, 64)
            .map_err(|_| MemoryError::OutOfRange { end: max_len, max_len: isize::MAX as usize })
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MemoryError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.max_len => Ok(()),
            _ => Err(MemoryError::OutOfRange { end: offset.saturating_add(len), max_len: self.max_len }),
        }
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.max_len) {
            // SAFETY: `ptr` came from `alloc_zeroed` with this same layout and is freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

// SAFETY: 1. `ptr` never changes, is 64-aligned and valid for `max_len` bytes;
// 2. `len` only grows (`fetch_max`) and is capped at `max_len`; 3. nothing is unmapped
// before drop.
unsafe impl SegmentMemory for HeapMemory {
    fn base(&self) -> NonNull<u8> {
        self.ptr
    }
    fn mapped_len(&self) -> usize {
        // Relaxed: the length is a hint for bounds checks; the data it covers is
        // published by the allocator's own SYNC extent-publish pair.
        self.len.load(Ordering::Relaxed)
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
    fn grow_to(&self, new_len: usize) -> Result<(), MemoryError> {
        self.check(0, new_len)?;
        // Relaxed: see `mapped_len`.
        self.len.fetch_max(new_len, Ordering::Relaxed);
        Ok(())
    }
    fn refresh(&self) -> Result<bool, MemoryError> {
        Ok(false)
    }
    fn place(&self, offset: usize, len: usize, _node: Option<u32>) -> Result<(), MemoryError> {
        self.check(offset, len)
    }
    unsafe fn release(&self, offset: usize, len: usize) -> Result<(), MemoryError> {
        self.check(offset, len)?;
        debug_assert!(offset + len <= self.max_len);
        // SAFETY: 1. `offset + len <= max_len` (checked above), so the range is inside our
        // allocation; 2. the caller guarantees no live reference and no concurrent writer.
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) };
        Ok(())
    }
}
