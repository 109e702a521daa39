//! [`Located`]: a live slot looked up once, for holders that touch it again.
//!
//! A sender's or receiver's hot path handles one slot several times (allocate,
//! write, mark in flight; receive, read, recycle). Each [`Allocator`] operation
//! on a bare [`Handle`] validates it against the layout again; a [`Located`]
//! carries what that lookup found (the index of the slot's metadata word, the
//! slot's byte offset) and the metadata word its holder expects, so the next
//! transition is a single CAS predicted without a load. A wrong prediction (the
//! slot changed under the holder) falls back to the general, checked path, so
//! the errors are exactly those of the handle operations.

use crate::alloc::{recycle_word, Allocator};
use crate::error::HandleError;
use crate::handle::{Handle, PeerId};
use crate::layout::{meta, S_ALLOCATED, S_IN_FLIGHT};
use crate::memory::SegmentMemory;
use crate::slot::Slot;
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

/// A live slot and where it is: made by [`Allocator::locate_live`],
/// [`Allocator::recycle_located`] or [`Allocator::receive`]. Its indices are
/// checked again on use (a `Located` handed to another allocator is an error,
/// never an out-of-bounds access).
///
/// # Examples
///
/// ```
/// # use numashm_varslot::{Config, HeapAllocator, SlotState};
/// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
/// let l = a.locate_live(a.alloc(10, 1).unwrap()).unwrap();
/// assert_eq!(l.len(), 64);
/// a.send_located(&l, 1, 2, 10).unwrap();
/// assert_eq!(a.state(l.handle()), Ok((SlotState::InFlight, 2)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    handle: Handle,
    /// Index of the slot's metadata word.
    meta: usize,
    /// Byte offset of the slot in the segment.
    offset: usize,
    size: usize,
    /// The metadata word as its holder last saw or wrote it.
    expect: u64,
}

impl Located {
    /// The slot's handle.
    ///
    /// # Examples
    ///
    /// See [`Located`].
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// The slot's size in bytes (its class's slot size).
    ///
    /// # Examples
    ///
    /// See [`Located`].
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.size
    }
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// Locates a live (Allocated or InFlight) slot.
    ///
    /// # Errors
    ///
    /// As [`resolve`](Self::resolve).
    ///
    /// # Examples
    ///
    /// See [`Located`].
    #[inline]
    pub fn locate_live(&self, h: Handle) -> Result<Located, HandleError> {
        let (meta_index, offset, size) = self.where_is(h)?;
        // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
        let m = self.word(meta_index)?.load(Ordering::Acquire);
        self.check_live(m, h)?;
        Ok(Located { handle: h, meta: meta_index, offset, size, expect: m })
    }

    /// The bytes of a located slot; a slot beyond this process's mapping
    /// triggers one [`SegmentMemory::refresh`].
    ///
    /// # Errors
    ///
    /// [`HandleError::NotMapped`], [`HandleError::Memory`] as
    /// [`resolve`](Self::resolve).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
    /// let l = a.locate_live(a.alloc(1, 1).unwrap()).unwrap();
    /// assert_eq!(a.bytes(&l).unwrap().len(), 64);
    /// ```
    #[inline]
    pub fn bytes(&self, l: &Located) -> Result<Slot<'_>, HandleError> {
        self.slot_at(l.offset, l.size)
    }

    /// [`recycle`](Self::recycle) that also locates the slot. The prediction
    /// used: `h` is Allocated or InFlight to `peer` (a slot this peer holds).
    ///
    /// # Errors
    ///
    /// As [`free`](Self::free).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HandleError, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let h = a.alloc(1, 4).unwrap();
    /// let l = a.recycle_located(h, 4).unwrap();
    /// assert!(a.is_ours(&l, 4));
    /// assert_eq!(a.free(h), Err(HandleError::Stale));
    /// ```
    #[inline]
    pub fn recycle_located(&self, h: Handle, peer: PeerId) -> Result<Located, HandleError> {
        let (meta_index, offset, size) = self.where_is(h)?;
        self.recycle_at(h, meta_index, offset, size, meta(S_ALLOCATED, h.generation(), peer), peer)
    }

    /// Like [`recycle_located`](Self::recycle_located) for a slot already
    /// located: predicts the word its holder last saw.
    ///
    /// # Errors
    ///
    /// As [`free`](Self::free).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let l = a.locate_live(a.alloc(1, 4).unwrap()).unwrap();
    /// let again = a.recycle_held(&l, 4).unwrap();
    /// assert_eq!(again.handle().slot(), l.handle().slot());
    /// ```
    #[inline]
    pub fn recycle_held(&self, l: &Located, peer: PeerId) -> Result<Located, HandleError> {
        self.recycle_at(l.handle, l.meta, l.offset, l.size, l.expect, peer)
    }

    #[inline(always)]
    fn recycle_at(&self, h: Handle, meta_index: usize, offset: usize, size: usize, guess: u64, peer: PeerId) -> Result<Located, HandleError> {
        let (handle, expect) = recycle_word(self.word(meta_index)?, h, guess, peer)?;
        Ok(Located { handle, meta: meta_index, offset, size, expect })
    }
    /// Is the located slot still Allocated to `peer` as its holder left it (it
    /// is not if `peer` was reclaimed meanwhile)? One load.
    ///
    /// # Examples
    ///
    /// See [`recycle_located`](Self::recycle_located).
    #[inline]
    pub fn is_ours(&self, l: &Located, peer: PeerId) -> bool {
        // SYNC slot-state (Acquire): pairs with the AcqRel transition CASes.
        l.expect == meta(S_ALLOCATED, l.handle.generation(), peer)
            && self.word(l.meta).is_ok_and(|w| w.load(Ordering::Acquire) == l.expect)
    }

    /// The sending side in one step: record `aux` (e.g. the message length) in
    /// the slot's metadata line, then Allocated to `from` → InFlight to `to`
    /// (see [`mark_in_flight`](Self::mark_in_flight)).
    ///
    /// # Errors
    ///
    /// As [`mark_in_flight`](Self::mark_in_flight).
    ///
    /// # Examples
    ///
    /// See [`Located`].
    #[inline]
    pub fn send_located(&self, l: &Located, from: PeerId, to: PeerId, aux: u64) -> Result<(), HandleError> {
        // Relaxed: published by the AcqRel CAS below (SYNC slot-state).
        self.aux_word(l.meta)?.store(aux, Ordering::Relaxed);
        let w = self.word(l.meta)?;
        let g = l.handle.generation();
        // SYNC slot-state (AcqRel): publishes the holder's writes to the receiver.
        match w.compare_exchange(meta(S_ALLOCATED, g, from), meta(S_IN_FLIGHT, g, to), Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(_) => self.mark_in_flight(l.handle, to),
        }
    }

    /// The receiving side in one step: a popped handle in flight to `peer` is
    /// already `peer`'s (it is reclaimed with `peer`, and `free` accepts it), so
    /// it stays as it is and costs one load; one in flight to anyone else (a
    /// ring's pseudo-peer, a previous holder of the ring end) becomes Allocated to
    /// `peer` by CAS, exactly as [`take`](Self::take). Then the slot is located
    /// and its aux value read (recorded by [`send_located`](Self::send_located)
    /// or [`set_aux`](Self::set_aux)).
    ///
    /// # Errors
    ///
    /// As [`take`](Self::take).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator, SlotState};
    /// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
    /// let l = a.locate_live(a.alloc(1, 1).unwrap()).unwrap();
    /// a.send_located(&l, 1, 2, 42).unwrap();
    /// let (got, aux) = a.receive(l.handle(), 2).unwrap();
    /// assert_eq!((got.handle(), aux), (l.handle(), 42));
    /// ```
    #[inline]
    pub fn receive(&self, h: Handle, peer: PeerId) -> Result<(Located, u64), HandleError> {
        let (meta_index, offset, size) = self.where_is(h)?;
        let w = self.word(meta_index)?;
        let mine = meta(S_IN_FLIGHT, h.generation(), peer);
        // SYNC slot-state (Acquire): pairs with the sender's AcqRel CAS, so its
        // writes to the slot (and the aux word) are visible.
        let expect = if w.load(Ordering::Acquire) == mine {
            mine
        } else {
            self.take(h, peer)?;
            meta(S_ALLOCATED, h.generation(), peer)
        };
        // Relaxed: ordered after the sender's CAS by the Acquire above / take.
        let aux = self.aux_word(meta_index)?.load(Ordering::Relaxed);
        Ok((Located { handle: h, meta: meta_index, offset, size, expect }, aux))
    }
}
