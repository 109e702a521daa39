//! [`SharedAllocator`]: the allocator with its control words inside the segment, so
//! every process mapping the segment shares them.
#![allow(unsafe_code)]

use crate::alloc::Allocator;
use crate::error::{AttachError, CreateError};
use crate::layout::{round_up, Config, EXTENT_ALIGN, HEADER_WORDS, H_CONTROL_WORDS, H_MAGIC, MAGIC};
use crate::memory::SegmentMemory;
use crate::loom::sync::atomic::Ordering;
use crate::words::{SegmentWords, Words};

/// The allocator living entirely inside a [`SegmentMemory`]: control area at offset 0,
/// extents after it (page aligned).
pub type SharedAllocator<M> = Allocator<SegmentWords, M>;

impl<M: SegmentMemory> Allocator<SegmentWords, M> {
    /// Owner: lay out a new segment in `mem` (whose content is ignored), grow it to hold
    /// the control area and the initial extents, and publish the header.
    ///
    /// # Errors
    ///
    /// [`CreateError::Config`], [`CreateError::TooSmall`] if `mem.max_len()` cannot hold
    /// the control area, [`CreateError::Grow`] / [`CreateError::Memory`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{Config, HeapMemory, SharedAllocator};
    /// let cfg = Config::new().class(64, 8);
    /// let a = SharedAllocator::create(&cfg, HeapMemory::new(cfg.min_segment_len()).unwrap()).unwrap();
    /// let h = a.alloc(10, 1).unwrap();
    /// a.free(h).unwrap();
    /// ```
    pub fn create(cfg: &Config, mem: M) -> Result<Self, CreateError> {
        let layout = cfg.layout()?;
        let control = layout.control_words * 8;
        let data_start = round_up(control, EXTENT_ALIGN).unwrap_or(usize::MAX);
        if mem.max_len() < data_start {
            return Err(CreateError::TooSmall { needed: data_start, available: mem.max_len() });
        }
        mem.grow_to(data_start)?;
        mem.place(0, data_start, cfg.node)?;
        debug_assert!(mem.mapped_len() >= control);
        // SAFETY: 1. `base()` is 64-aligned and, after `grow_to(data_start)`, valid for
        // `control` bytes; 2. it stays valid and fixed while `mem` lives, and `mem` moves
        // into the same `Allocator` as the words (SegmentMemory contract); 3. the control
        // bytes are only accessed through these atomics.
        let words = unsafe { SegmentWords::new(mem.base(), layout.control_words) };
        Self::create_at(cfg, words, mem, data_start)
    }

    /// Guest: attach to a segment another process created in `mem`, after validating
    /// every header, class-table and extent-table field.
    ///
    /// # Errors
    ///
    /// [`AttachError::BadField`] naming the first bad field, [`AttachError::Memory`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use numashm_varslot::{Config, HeapMemory, SharedAllocator};
    /// let cfg = Config::new().class(64, 8);
    /// let mem = Arc::new(HeapMemory::new(cfg.min_segment_len()).unwrap());
    /// let owner = SharedAllocator::create(&cfg, mem.clone()).unwrap();
    /// let guest = SharedAllocator::attach(mem).unwrap();
    /// owner.free(guest.alloc(1, 2).unwrap()).unwrap();
    /// ```
    pub fn attach(mem: M) -> Result<Self, AttachError> {
        let bad = |field, found| AttachError::BadField { field, at: 0, found };
        mem.refresh()?;
        let mapped = mem.mapped_len();
        if mapped < HEADER_WORDS * 8 {
            return Err(bad("mapped_len", mapped as u64));
        }
        // SAFETY: 1. aligned, and `HEADER_WORDS * 8 <= mapped_len` bytes are valid;
        // 2. `header` is only used before `mem` moves; 3. atomic access only.
        let header = unsafe { SegmentWords::new(mem.base(), HEADER_WORDS) };
        // SYNC header-publish (Acquire): pairs with the creator's Release store of the
        // magic; `validate` re-checks it and everything else.
        let magic = header.words()[H_MAGIC].load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(bad("magic", magic));
        }
        // Relaxed: ordered after the magic's Acquire; only a bound for the slice below.
        let cw = header.words()[H_CONTROL_WORDS].load(Ordering::Relaxed);
        if cw < HEADER_WORDS as u64 || cw > (mapped / 8) as u64 {
            return Err(bad("control_words", cw));
        }
        let cw = cw as usize;
        // SAFETY: 1. aligned, and `cw * 8 <= mapped_len` bytes are valid (checked above);
        // 2. `mem` moves into the same `Allocator`; 3. atomic access only.
        let words = unsafe { SegmentWords::new(mem.base(), cw) };
        Self::attach_at(words, mem, cw * 8)
    }
}
