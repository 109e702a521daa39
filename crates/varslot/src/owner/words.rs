//! [`PoolWords`]: bounds-checked atomic access to the `u64` words of a pool memory, and
//! raw pointers to its slots. The one place the pool allocator turns offsets into
//! references.
#![allow(unsafe_code)]

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;

use super::memory::PoolMemory;
use crate::loom::sync::atomic::AtomicU64;

/// The pool's memory as seen by its one owner thread: the memory itself, its base, and
/// how many bytes past it are known committed. Every access checks its offset against
/// that bound and its alignment, so even a wrong table value can only produce `None`.
#[derive(Debug)]
pub(crate) struct PoolWords<M> {
    mem: M,
    /// `mem.base()`, fixed forever (PoolMemory contract 1).
    base: NonNull<u8>,
    /// Committed bytes (only grows). `Cell`: the owner thread alone updates it.
    limit: Cell<usize>,
}

// SAFETY: `base` points into `mem`, which moves with it and keeps it valid (PoolMemory
// contract); `Cell` keeps the value `!Sync`, so one thread at a time uses it.
unsafe impl<M: PoolMemory + Send> Send for PoolWords<M> {}

impl<M: PoolMemory> PoolWords<M> {
    /// Take the memory; bytes below its current committed length become reachable.
    pub(crate) fn new(mem: M) -> Self {
        let base = mem.base();
        let limit = mem.committed().min(mem.reserved());
        Self {
            mem,
            base,
            limit: Cell::new(limit),
        }
    }

    /// The memory.
    #[inline]
    pub(crate) fn mem(&self) -> &M {
        &self.mem
    }

    /// Learn what the memory has committed since (after a successful `commit`).
    pub(crate) fn sync_limit(&self) {
        let committed = self.mem.committed().min(self.mem.reserved());
        if committed > self.limit.get() {
            self.limit.set(committed);
        }
    }

    /// Bytes known committed.
    #[inline]
    pub(crate) fn limit(&self) -> usize {
        self.limit.get()
    }

    /// The `N` consecutive words starting at byte `off`, if `off` is 8-aligned and they
    /// lie inside the committed bytes.
    #[inline]
    pub(crate) fn block<const N: usize>(&self, off: usize) -> Option<&[AtomicU64; N]> {
        let end = off.checked_add(N * 8)?;
        if off % 8 != 0 || end > self.limit.get() {
            return None;
        }
        // SAFETY: 1. `off` is 8-aligned and `base` is 128-aligned (PoolMemory contract
        // 1), so the words are aligned; 2. `off..end` is inside the committed bytes,
        // valid while `self.mem` lives (contracts 1, 2, 4: committed bytes stay); 3. any bit pattern is a valid
        // `AtomicU64`, and these bytes are only accessed atomically, so shared references
        // are fine even while other processes read them.
        Some(unsafe { &*self.base.as_ptr().add(off).cast::<[AtomicU64; N]>() })
    }

    /// Pointer to `len` bytes at `off`, if they lie inside the committed bytes.
    #[inline]
    pub(crate) fn ptr(&self, off: usize, len: usize) -> Option<NonNull<u8>> {
        if off.checked_add(len)? > self.limit.get() {
            return None;
        }
        // SAFETY: `off <= limit`, and the committed bytes are one allocation or mapping
        // starting at `base` (PoolMemory contract 1), so the offset pointer stays in bounds (and is non-null).
        Some(unsafe { NonNull::new_unchecked(self.base.as_ptr().add(off)) })
    }

    /// The words as they are committed now, in a value a loop can keep in registers
    /// (a `block` through `self` reloads the base and the limit after every store to a
    /// pool word, which the compiler cannot tell apart from them).
    #[inline(always)]
    pub(crate) fn view(&self) -> WordsView<'_> {
        WordsView {
            base: self.base,
            limit: self.limit.get(),
            _words: PhantomData,
        }
    }
}

/// [`PoolWords`] frozen at one committed length, borrowed from it: every access is
/// checked as by [`PoolWords::block`], against that length (committed bytes stay
/// committed while the memory lives, which the borrow guarantees).
#[derive(Clone, Copy)]
pub(crate) struct WordsView<'a> {
    base: NonNull<u8>,
    limit: usize,
    _words: PhantomData<&'a ()>,
}

impl<'a> WordsView<'a> {
    /// As [`PoolWords::block`].
    #[inline(always)]
    pub(crate) fn block<const N: usize>(self, off: usize) -> Option<&'a [AtomicU64; N]> {
        let end = off.checked_add(N * 8)?;
        if off % 8 != 0 || end > self.limit {
            return None;
        }
        // SAFETY: as in `PoolWords::block`: 1. aligned (`off` 8-aligned, `base`
        // 128-aligned); 2. `off..end` is inside bytes that were committed when the view
        // was made, and committed bytes stay valid while the memory lives (PoolMemory
        // contracts 1, 2, 4), which the view's borrow of the `PoolWords` (and so of the
        // memory) outlives; 3. any bit pattern is a valid `AtomicU64`.
        Some(unsafe { &*self.base.as_ptr().add(off).cast::<[AtomicU64; N]>() })
    }
}
