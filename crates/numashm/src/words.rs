//! A bounds-checked view of `u64` atomics laid over a region.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use numashm_region::Region;

use crate::loom::sync::atomic::AtomicU64;

/// `len` atomic words at a fixed offset of a region, kept alive by an Arc.
#[derive(Debug, Clone)]
pub(crate) struct Words {
    _region: Arc<Region>,
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the words are atomics in a shared mapping owned (via Arc) by this
// value; sharing `&AtomicU64` across threads is what atomics are for.
unsafe impl Send for Words {}
// SAFETY: as above.
unsafe impl Sync for Words {}

impl Words {
    /// Words `[offset, offset + 8 * len)` of `region`, which must be mapped,
    /// 8-aligned and only ever accessed atomically.
    pub(crate) fn new(region: Arc<Region>, offset: usize, len: usize) -> Option<Self> {
        let end = offset.checked_add(len.checked_mul(8)?)?;
        if end > region.len() || offset % 8 != 0 {
            return None;
        }
        // SAFETY: in bounds of the mapped part (checked just above).
        let p = unsafe { region.as_ptr().add(offset) }.cast::<AtomicU64>();
        Some(Words { ptr: NonNull::new(p)?, len, _region: region })
    }

    /// Word `i`; `None` past the end.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&AtomicU64> {
        if i < self.len {
            // SAFETY: 1. i < len, inside the mapped range checked in `new`, which
            // stays mapped while `_region` lives (regions never shrink or move);
            // 2. aligned; 3. any bit pattern is a valid AtomicU64.
            Some(unsafe { &*self.ptr.as_ptr().add(i) })
        } else {
            None
        }
    }

    /// Word `i`, for indices the caller derived from validated layout constants.
    #[inline]
    pub(crate) fn at(&self, i: usize) -> &AtomicU64 {
        // Indices come from validated layout constants: one out of range is a
        // bug, and it fails loudly here rather than touching another word.
        match self.get(i) {
            Some(w) => w,
            None => panic!("word index {i} out of range ({} words): a layout bug", self.len),
        }
    }
}
