//! The allocator's memory: the tail of a region, from `offset` to its end,
//! growing in place with the region.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use numashm_region::{MemPolicy, NodeSet, Placement, Region, RegionError};
use numashm_varslot::{MemoryError, SegmentMemory};

/// `[offset, end)` of a region, as varslot's [`SegmentMemory`].
#[derive(Debug, Clone)]
pub(crate) struct RegionMemory {
    region: Arc<Region>,
    offset: usize,
}

impl RegionMemory {
    /// `offset` must be page-aligned and below the region's maximum length.
    pub(crate) fn new(region: Arc<Region>, offset: usize) -> Self {
        debug_assert!(offset % region.page_size() == 0 && offset < region.max_len());
        RegionMemory { region, offset }
    }
}

fn os(op: &'static str, e: RegionError) -> MemoryError {
    let errno = e.errno().map(|e| e.raw_os_error()).unwrap_or(libc_einval());
    MemoryError::Os { op, errno }
}

fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}

// SAFETY: 1. `base()` is `region.as_ptr() + offset`, fixed for the region's life
// (regions never move) and 4096-aligned (offset is page-aligned); the Arc keeps
// the region alive as long as any clone of this value; 2. `mapped_len()` follows
// the region's mapped length, which only grows, capped by `max_len`; 3. released
// ranges stay mapped (fallocate punch hole keeps the mapping).
unsafe impl SegmentMemory for RegionMemory {
    fn base(&self) -> NonNull<u8> {
        // SAFETY: offset < max_len, inside the region's reservation.
        let p = unsafe { self.region.as_ptr().add(self.offset) };
        NonNull::new(p).expect("region base is never null")
    }

    fn mapped_len(&self) -> usize {
        self.region.len().saturating_sub(self.offset)
    }

    fn max_len(&self) -> usize {
        self.region.max_len() - self.offset
    }

    fn grow_to(&self, new_len: usize) -> Result<(), MemoryError> {
        let end = self.offset.checked_add(new_len).ok_or(MemoryError::OutOfRange { end: usize::MAX, max_len: self.max_len() })?;
        if end <= self.region.len() {
            return Ok(());
        }
        let page = self.region.page_size();
        let end = end.div_ceil(page) * page;
        if end > self.region.max_len() {
            return Err(MemoryError::OutOfRange { end: new_len, max_len: self.max_len() });
        }
        match self.region.resize(end) {
            Ok(()) => Ok(()),
            // Another peer grew it further meanwhile: that serves us too.
            Err(RegionError::Shrink { .. }) => Ok(()),
            Err(e) => Err(os("grow region", e)),
        }
    }

    fn refresh(&self) -> Result<bool, MemoryError> {
        self.region.check_and_remap().map_err(|e| os("check_and_remap", e))
    }

    fn place(&self, offset: usize, len: usize, node: Option<u32>) -> Result<(), MemoryError> {
        let Some(node) = node else { return Ok(()) };
        // mbind works on whole pages of the region's page size: round outwards.
        // With huge pages, neighbouring extents in one huge page share its node.
        let page = self.region.page_size();
        let start = (self.offset + offset) / page * page;
        let end = (self.offset + offset + len).div_ceil(page) * page;
        if end <= start {
            return Ok(());
        }
        let placement = Placement::new(NodeSet::single(node), MemPolicy::Bind);
        self.region.place_range(start, end - start, placement).map_err(|e| os("mbind extent", e))
    }

    unsafe fn release(&self, offset: usize, len: usize) -> Result<(), MemoryError> {
        let page = self.region.page_size();
        // Only whole pages inside the range can be given back.
        let start = (self.offset + offset).div_ceil(page) * page;
        let end = (self.offset + offset + len) / page * page;
        if end <= start {
            return Ok(());
        }
        self.region.release_range(start, end - start).map_err(|e| os("punch hole", e))
    }
}
