//! Where the allocator's atomic words live: [`Words`], with a heap-owned
//! [`HeapWords`] (what loom and miri run) and the in-segment [`SegmentWords`].
#![allow(unsafe_code)]

use crate::loom::sync::atomic::AtomicU64;

/// A fixed array of atomic words holding the allocator's control area (header, class
/// table, extent table, slot metadata). Word `i` is at byte `8 * i` of the control area.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapWords, Words};
/// let w = HeapWords::new(4);
/// assert_eq!(w.words().len(), 4);
/// ```
pub trait Words {
    /// The words, always the same slice.
    fn words(&self) -> &[AtomicU64];
}

impl<T: Words + ?Sized> Words for std::sync::Arc<T> {
    fn words(&self) -> &[AtomicU64] {
        (**self).words()
    }
}

/// Control words owned on the heap (`Box<[AtomicU64]>`), all zero at first.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{sync::Ordering, HeapWords, Words};
/// let w = HeapWords::new(2);
/// assert_eq!(w.words()[1].load(Ordering::SeqCst), 0);
/// ```
#[derive(Debug)]
pub struct HeapWords(Box<[AtomicU64]>);

impl HeapWords {
    /// `n` zeroed words.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = numashm_varslot::HeapWords::new(16);
    /// # drop(w);
    /// ```
    pub fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicU64::new(0)).collect())
    }
}

impl Words for HeapWords {
    fn words(&self) -> &[AtomicU64] {
        &self.0
    }
}

#[cfg(not(numashm_loom))]
pub use segment::SegmentWords;

#[cfg(not(numashm_loom))]
mod segment {
    use core::ptr::NonNull;

    use super::Words;
    use crate::loom::sync::atomic::AtomicU64;

    /// Control words laid over the first bytes of a [`crate::SegmentMemory`]: the
    /// in-segment form, shared by every process that maps the segment.
    ///
    /// Only built by [`crate::SharedAllocator`], which keeps the memory alive beside it.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{Config, HeapMemory, SharedAllocator, Words};
    /// let cfg = Config::new().class(64, 4);
    /// let mem = HeapMemory::new(cfg.min_segment_len()).unwrap();
    /// let a = SharedAllocator::create(&cfg, mem).unwrap();
    /// assert!(a.words().words().len() > 16);
    /// ```
    #[derive(Debug)]
    pub struct SegmentWords {
        ptr: NonNull<AtomicU64>,
        len: usize,
    }

    // SAFETY: the words are atomics (Sync) in memory that the owning allocator keeps
    // mapped; a `SegmentWords` never outlives that allocator's memory (see `new`).
    unsafe impl Send for SegmentWords {}
    // SAFETY: as above: only `&AtomicU64` is handed out.
    unsafe impl Sync for SegmentWords {}

    impl SegmentWords {
        /// # Safety
        ///
        /// - `base` is 8-aligned and valid for reads and writes of `len * 8` bytes for as
        ///   long as the returned value lives (the allocator owns the memory beside it);
        /// - those bytes are only ever accessed atomically.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            debug_assert_eq!(base.as_ptr() as usize % 8, 0);
            Self { ptr: base.cast(), len }
        }
    }

    impl Words for SegmentWords {
        fn words(&self) -> &[AtomicU64] {
            // SAFETY: 1. `ptr` is aligned and valid for `len` words (contract of `new`);
            // 2. any bit pattern is a valid `AtomicU64`; 3. all access is atomic, so
            // shared `&AtomicU64`s to memory other processes also touch are fine.
            unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
    }
}
