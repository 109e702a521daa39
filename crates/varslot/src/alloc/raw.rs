//! By-index access for the fast paths that keep a slot's place themselves
//! ([`Located`](crate::Located), [`Magazine`](crate::Magazine)): the layout and
//! words, a slot's metadata index and bytes, each bounds-checked.

use super::hot::check;
use super::Allocator;
use crate::error::HandleError;
use crate::handle::Handle;
use crate::layout::*;
use crate::memory::SegmentMemory;
use crate::slot::Slot;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// Magazine support: the validated local layout and the control words.
    pub(crate) fn layout_and_words(&self) -> (&Layout, &[AtomicU64]) {
        (&self.layout, self.hot().w)
    }

    /// `Located` support: where a handle's slot is (metadata word index, byte
    /// offset, size), validated as in `resolve` but without reading its state.
    #[inline(always)]
    pub(crate) fn where_is(&self, h: Handle) -> Result<(usize, usize, usize), HandleError> {
        let hot = self.hot();
        let l = self.locate(hot, h)?;
        let c = l.class;
        // Relaxed: written before the extent-publish Release that `locate` acquired.
        let off = hot.ext_word(c, l.ext, X_OFFSET).load(Ordering::Relaxed) as usize;
        if off < self.data_start || off > self.max_len.saturating_sub(c.extent_bytes) {
            return Err(HandleError::Corrupt { what: "extent offset" });
        }
        let meta_index = c.meta_index(l.ext, l.slot);
        Ok((meta_index, off + l.slot * c.slot_size, c.slot_size))
    }

    /// `Located` support: control word `i`, checked (a `Located` may come from
    /// another allocator).
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> Result<&AtomicU64, HandleError> {
        self.words.words().get(i).ok_or(HandleError::Invalid { field: "located slot" })
    }

    /// `Located` support: the aux word of the slot whose metadata word is `i`.
    #[inline(always)]
    pub(crate) fn aux_word(&self, i: usize) -> Result<&AtomicU64, HandleError> {
        self.word(i + META_AUX)
    }

    /// `Located` support: `check` without the state.
    #[inline(always)]
    pub(crate) fn check_live(&self, m: u64, h: Handle) -> Result<(), HandleError> {
        check(m, h).map(|_| ())
    }

    /// `Located` support: the bytes at `offset .. offset + size` (validated when
    /// the `Located` was made; the end is checked against `max_len` again).
    #[inline(always)]
    pub(crate) fn slot_at(&self, offset: usize, size: usize) -> Result<Slot<'_>, HandleError> {
        let end = offset.checked_add(size).filter(|&e| e <= self.max_len).ok_or(HandleError::Invalid { field: "located slot" })?;
        if end > self.mem.mapped_len() {
            self.refresh_for(end)?;
        }
        let p = self.mem.base().as_ptr().wrapping_add(offset);
        core::ptr::NonNull::new(p).map(|p| Slot::new(p, size)).ok_or(HandleError::NotMapped)
    }
}
