//! The split SPSC ring: each side writes only its own memory.
//!
//! The producer P writes cells, stamps and its tail in its own block; the
//! consumer C writes only its `head` in its own block. Each side maps the
//! other's block read-only (in v4 segments the kernel enforces this), so a
//! hostile peer can only feed garbage *values*, which are validated here:
//!
//! - P reads C's `head` only when its cached copy says the ring is full
//!   (rtrb's trick) and checks `head <= tail && tail - head <= capacity`.
//! - C polls the stamp of the cell at its position: `stamp == pos + 1`
//!   means ready; a stamp above that is impossible ([`SplitCorrupt::Stamp`]);
//!   a garbage stamp that happens to look ready yields a garbage payload,
//!   which the facade validates. C never reads outside the block it
//!   validated at attach.
//!
//! Orderings (named in the code, explained in `docs/ring.md`):
//! - `SYNC split-publish`: P's payload stores happen-before C's payload
//!   loads (stamp Release store / stamp Acquire load).
//! - `SYNC split-release`: C's payload loads happen-before P's next stores
//!   into that cell (head Release store / head Acquire load), so a cell is
//!   never overwritten before it is read.
//!
//! The doorbell (parking in both directions) is in `split_bell`.

use crate::error::LayoutError;
use crate::split_error::{SplitCorrupt, SplitPushError};
use crate::split_mem::{capacity_of, HeapSplit, SplitCell, SplitMemory};
use crate::loom::sync::atomic::Ordering;

/// Makes heap split rings (a namespace: it has no values).
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
/// tx.push([1, 2, 3])?;
/// assert_eq!(rx.pop()?, Some([1, 2, 3]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum SplitRing {}

impl SplitRing {
    /// A new empty ring on the heap: the producer block and the consumer
    /// block are two separate allocations, as they are two memories when
    /// shared.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Capacity`] unless `capacity` is a power of two in
    /// `1..=MAX_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = numashm_ring::SplitRing::new(8)?;
    /// assert_eq!((tx.capacity(), rx.capacity()), (8, 8));
    /// assert!(numashm_ring::SplitRing::new(3).is_err());
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    #[allow(clippy::new_ret_no_self)] // a namespace: it makes the two ends
    pub fn new(
        capacity: usize,
    ) -> Result<(SplitProducer<HeapSplit>, SplitConsumer<HeapSplit>), LayoutError> {
        let mem = HeapSplit::new(capacity as u64)?;
        Ok((
            SplitProducer::from_mem(mem.clone(), 0),
            SplitConsumer::from_mem(mem, 0, 0),
        ))
    }
}

/// The producing end of a split ring; owns (writes) the producer block.
///
/// # Examples
///
/// ```
/// use numashm_ring::{SplitPushError, SplitRing};
/// let (mut tx, _rx) = SplitRing::new(2)?;
/// tx.push([1, 0, 0])?;
/// tx.push([2, 0, 0])?;
/// assert_eq!(tx.push([3, 0, 0]), Err(SplitPushError::Full));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SplitProducer<M: SplitMemory = HeapSplit> {
    pub(crate) mem: M,
    pub(crate) capacity: u64,
    pub(crate) mask: u64,
    /// Our position; we are the only writer of the block's tail, so this
    /// copy is the truth.
    pub(crate) tail: u64,
    /// Last validated head (0 before a consumer block is attached); lags the
    /// real head, so free space is at least `capacity - (tail - cached_head)`.
    /// Invariant: `cached_head <= tail <= cached_head + capacity`.
    pub(crate) cached_head: u64,
    /// Our copy of `data_seq` (we are its only writer).
    pub(crate) data_seq: u32,
}

impl<M: SplitMemory> SplitProducer<M> {
    pub(crate) fn from_mem(mem: M, data_seq: u32) -> Self {
        let capacity = capacity_of(&mem);
        SplitProducer {
            mem,
            capacity,
            mask: capacity - 1,
            tail: 0,
            cached_head: 0,
            data_seq,
        }
    }

    /// Number of cells.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::SplitRing::new(16)?.0.capacity(), 16);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Position of the next push (= cells pushed so far).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = numashm_ring::SplitRing::new(4)?;
    /// tx.push([0; 3])?;
    /// assert_eq!(tx.position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Whether a consumer block is attached (always for heap rings).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ring::SplitRing::new(4)?.0.consumer_attached());
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn consumer_attached(&self) -> bool {
        self.mem.consumer_block().is_some()
    }

    /// Reads and validates the consumer's head (`head <= tail` and
    /// `tail - head <= capacity`), caching it; before a consumer block is
    /// attached the head stays at its start value.
    pub(crate) fn refresh_head(&mut self) -> Result<(), SplitCorrupt> {
        let Some(block) = self.mem.consumer_block() else {
            return Ok(());
        };
        // SYNC split-release: pairs with the consumer's Release store of
        // head: its payload loads before `head` happen-before our overwrites.
        let head = block.head.head.load(Ordering::Acquire);
        self.cached_head = checked_head(head, self.tail, self.capacity)?;
        Ok(())
    }

    /// Free cells now (reads the consumer's head).
    ///
    /// # Errors
    ///
    /// [`SplitCorrupt::Head`] if the consumer's head is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
    /// tx.push([0; 3])?;
    /// assert_eq!(tx.free_space()?, 3);
    /// rx.pop()?;
    /// assert_eq!(tx.free_space()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn free_space(&mut self) -> Result<usize, SplitCorrupt> {
        self.refresh_head()?;
        Ok(self.cached_free() as usize)
    }

    /// Free cells by the cached head (a lower bound).
    #[inline(always)]
    fn cached_free(&self) -> u64 {
        // Cannot underflow: `tail - cached_head <= capacity` (invariant).
        self.capacity - (self.tail - self.cached_head)
    }

    /// Pushes one cell, or reports the ring full. Does not wake a parked
    /// consumer: call [`notify`](Self::notify) after a batch, or use
    /// [`push_notify`](Self::push_notify).
    ///
    /// # Errors
    ///
    /// [`SplitPushError::Full`]; [`SplitPushError::Corrupt`] if the
    /// consumer's head is impossible (nothing is pushed).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(1)?;
    /// tx.push([7, 8, 9])?;
    /// assert!(tx.push([0; 3]).is_err());
    /// assert_eq!(rx.pop()?, Some([7, 8, 9]));
    /// tx.push([1, 1, 1])?; // the consumer's head made room
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push(&mut self, cell: [u64; 3]) -> Result<(), SplitPushError> {
        if self.cached_free() == 0 {
            self.refresh_head()?;
            if self.cached_free() == 0 {
                return Err(SplitPushError::Full);
            }
        }
        let pos = self.tail;
        // `pos & mask < capacity == cells().len()`: `get` always succeeds and
        // keeps the access checked without a panic path.
        if let Some(c) = self.mem.cells().get((pos & self.mask) as usize) {
            for (w, v) in c.words.iter().zip(cell) {
                // Relaxed: published by the stamp Release store below.
                w.store(v, Ordering::Relaxed);
            }
            // SYNC split-publish: the payload stores above happen-before the
            // consumer's payload loads (its Acquire load of this stamp).
            c.stamp.store(pos.wrapping_add(1), Ordering::Release);
        }
        self.tail = pos.wrapping_add(1);
        // Release: whoever reads the tail (inspection, recovery) also sees
        // the cells before it (SYNC split-publish). Nobody polls it.
        self.mem
            .header()
            .tail
            .tail
            .store(self.tail, Ordering::Release);
        Ok(())
    }
}

/// `head` read from the consumer block, accepted only if `head <= tail` and
/// `tail - head <= capacity`.
pub(crate) fn checked_head(head: u64, tail: u64, capacity: u64) -> Result<u64, SplitCorrupt> {
    match tail.checked_sub(head) {
        Some(used) if used <= capacity => Ok(head),
        _ => Err(SplitCorrupt::Head {
            head,
            tail,
            capacity,
        }),
    }
}

/// The consuming end of a split ring; owns (writes) the consumer block.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
/// assert_eq!(rx.pop()?, None);
/// tx.push([1, 2, 3])?;
/// assert!(rx.ready());
/// assert_eq!(rx.pop()?, Some([1, 2, 3]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SplitConsumer<M: SplitMemory = HeapSplit> {
    pub(crate) mem: M,
    pub(crate) mask: u64,
    /// Our position (the truth; the block's `head` is a copy for P).
    pub(crate) head: u64,
    /// Our copy of `space_seq` (we are its only writer).
    pub(crate) space_seq: u32,
}

impl<M: SplitMemory> SplitConsumer<M> {
    /// Starts at `start`, publishing it as the head. `mem` has a consumer block.
    pub(crate) fn from_mem(mem: M, start: u64, space_seq: u32) -> Self {
        let capacity = capacity_of(&mem);
        if let Some(block) = mem.consumer_block() {
            // Relaxed: a predecessor that died parked leaves a stale word,
            // which would only cost the producer a spare wake-up; clear it.
            block.bell.parked.store(0, Ordering::Relaxed);
            // SYNC split-release: as after a pop (nothing read yet before
            // `start` by this end; orders a restarted consumer's earlier reads).
            block.head.head.store(start, Ordering::Release);
        }
        SplitConsumer {
            mem,
            mask: capacity - 1,
            head: start,
            space_seq,
        }
    }

    /// Number of cells.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::SplitRing::new(16)?.1.capacity(), 16);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.mem.cells().len()
    }

    /// Position of the next pop (= cells popped so far, plus the start).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
    /// tx.push([0; 3])?;
    /// rx.pop()?;
    /// assert_eq!(rx.position(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.head
    }

    /// The cell at our position and its stamp (Acquire: SYNC split-publish).
    #[inline(always)]
    fn next(&self) -> Option<(&SplitCell, u64)> {
        // `head & mask < cells().len()`: always `Some`, checked anyway.
        let cell = self.mem.cells().get((self.head & self.mask) as usize)?;
        // SYNC split-publish: pairs with the producer's Release stamp store.
        Some((cell, cell.stamp.load(Ordering::Acquire)))
    }

    /// Whether the next cell is ready (a peek; `pop` may still report a
    /// corrupt stamp as an error, never a ready cell as empty).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = numashm_ring::SplitRing::new(4)?;
    /// assert!(!rx.ready());
    /// tx.push([0; 3])?;
    /// assert!(rx.ready());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.next()
            .is_some_and(|(_, stamp)| stamp == self.head.wrapping_add(1))
    }

    /// Whether `pop` would return something other than `Ok(None)` (a ready
    /// cell or a corrupt stamp): a waiter must not sleep then.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = numashm_ring::SplitRing::new(4)?;
    /// assert!(!rx.has_news());
    /// tx.push([0; 3])?;
    /// assert!(rx.has_news());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_news(&self) -> bool {
        match self.next() {
            Some((_, stamp)) => stamp >= self.head.wrapping_add(1),
            None => true,
        }
    }

    /// Pops the next cell, or `None` if it is not written yet. Does not wake
    /// a producer waiting for room: call
    /// [`notify_space`](Self::notify_space) after a batch.
    ///
    /// # Errors
    ///
    /// [`SplitCorrupt::Stamp`] if the next cell's stamp is beyond our
    /// position (no correct producer writes that; our position is kept).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(2)?;
    /// for i in 0..5 {
    ///     tx.push([i, i, i])?;
    ///     assert_eq!(rx.pop()?, Some([i, i, i]));
    /// }
    /// assert_eq!(rx.pop()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<Option<[u64; 3]>, SplitCorrupt> {
        let pos = self.head;
        let want = pos.wrapping_add(1);
        let Some((cell, stamp)) = self.next() else {
            return Ok(None);
        };
        if stamp != want {
            // A correct producer's stamp in this cell is `want` or an older
            // lap's (<= want - capacity) or 0; a newer one means it
            // overwrote a cell we have not read.
            if stamp > want {
                return Err(SplitCorrupt::Stamp { pos, stamp });
            }
            return Ok(None);
        }
        // Relaxed: made visible by the stamp Acquire in `next`
        // (SYNC split-publish).
        let out = [
            cell.words[0].load(Ordering::Relaxed),
            cell.words[1].load(Ordering::Relaxed),
            cell.words[2].load(Ordering::Relaxed),
        ];
        self.head = want;
        if let Some(block) = self.mem.consumer_block() {
            // SYNC split-release: our payload loads above happen-before the
            // producer's next stores into this cell (its Acquire head load).
            block.head.head.store(want, Ordering::Release);
        }
        Ok(Some(out))
    }
}
