//! Single-producer single-consumer ring of `u64` handles.
//!
//! The producer side is rtrb's: monotonically increasing 64-bit indices
//! (never wrapped in practice), cell `i & mask`, the producer keeping its own
//! index locally and a cached copy of the consumer's index, refreshed only
//! when the cache says the ring is full. The consumer does not read the
//! producer's index at all: every cell is `[stamp, value]` and the producer
//! writes `stamp = position + 1` (Release) after the value, so the consumer
//! polls the cell it will read next. A message then costs the consumer one
//! cache line (the cell) instead of two (the tail index, then the cell),
//! which is most of a cross-process round trip. The producer still publishes
//! its index for `len`, new ends and recovery; nobody reads it on the busy
//! path, so that store stays in the producer's cache.
//!
//! Orderings (named in the code, explained in `docs/ring.md`):
//! - `SYNC spsc-publish`: the producer's value store happens-before the
//!   consumer's value load (stamp Release store / stamp Acquire load; for
//!   `len`, new ends and salvage, the tail Release store / Acquire load).
//! - `SYNC spsc-release`: the consumer's cell load happens-before the
//!   producer's next store into that cell (head Release store / head Acquire
//!   load), so a cell is never overwritten before it is read.

use crate::error::{Corrupt, LayoutError, PopError, PushError};
use crate::mem::{capacity_of, ring_bytes, HeapMemory, Kind, RingMemory};
use crate::loom::sync::atomic::Ordering;

/// A bounded SPSC ring of `u64` handles, in heap or shared memory.
///
/// This value is a view: clone it freely and make one [`SpscProducer`] and
/// one [`SpscConsumer`] from it (in the same or in different processes).
/// Two live producers (or consumers) on one ring lose or duplicate items but
/// cannot cause memory unsafety: every shared word is an atomic.
///
/// # Examples
///
/// ```
/// use numashm_ring::Spsc;
/// let (mut tx, mut rx) = Spsc::new(4)?.split()?;
/// tx.push(42).unwrap();
/// assert_eq!(rx.pop(), Ok(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Spsc<M: RingMemory = HeapMemory> {
    mem: M,
    capacity: u64,
    mask: u64,
}

impl Spsc<HeapMemory> {
    /// A new empty ring on the heap.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Capacity`] unless `capacity` is a power of two in
    /// `1..=MAX_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(1024)?;
    /// assert_eq!(ring.capacity(), 1024);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn new(capacity: usize) -> Result<Self, LayoutError> {
        Ok(Self::from_mem(HeapMemory::new(Kind::Spsc, capacity as u64)?))
    }
}


impl<M: RingMemory> Spsc<M> {
    pub(crate) fn from_mem(mem: M) -> Self {
        let capacity = capacity_of(&mem, Kind::Spsc);
        Spsc { mem, capacity, mask: capacity - 1 }
    }

    /// Bytes an SPSC ring of `capacity` needs in shared memory (header and
    /// cells), or `None` if `capacity` is above `MAX_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Spsc::<numashm_ring::HeapMemory>::bytes_for(16), Some(384 + 16 * 16)); // cells are [stamp, value]
    /// ```
    pub const fn bytes_for(capacity: usize) -> Option<usize> {
        ring_bytes(Kind::Spsc, capacity as u64)
    }

    /// Number of cells.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Spsc::new(2)?.capacity(), 2);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Reads `(head, tail)` and checks them against each other.
    fn indices(&self) -> Result<(u64, u64), Corrupt> {
        let h = self.mem.header();
        // Acquire on head: synchronises with the consumer's Release store of
        // it, which came after its Acquire load of a tail >= head, so the tail
        // load below returns >= head in a correct ring (coherence).
        let head = h.head.value.load(Ordering::Acquire);
        // Acquire: the end made from these indices reads cells up to tail
        // (SYNC spsc-publish).
        let tail = h.tail.value.load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.capacity {
            return Err(Corrupt::Indices { head, tail, capacity: self.capacity });
        }
        Ok((head, tail))
    }

    /// Whether position `pos` was pushed: its cell's stamp says so, or the
    /// producer's published index is past it. A recoverer asks this about the
    /// position a dead producer recorded before pushing: the stamp is the push's
    /// linearisation point (a consumer pops by it), and the producer may have
    /// died between storing the stamp and its index.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// let mut tx = ring.producer()?;
    /// assert!(!ring.written(tx.position()));
    /// tx.push(7).unwrap();
    /// assert!(ring.written(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn written(&self, pos: u64) -> bool {
        let stamped = self.mem.words().get(stamp_word(pos, self.mask)).is_some_and(|stamp| {
            // Acquire: SYNC spsc-publish, as for a consumer.
            stamp.load(Ordering::Acquire) == pos.wrapping_add(1)
        });
        let past = self.pushed().wrapping_sub(pos).wrapping_sub(1) < self.capacity;
        stamped || past
    }

    /// The producer's published index: how many values were pushed since the
    /// ring was made (or last reset). A push is complete exactly when this has
    /// moved past its position (see [`SpscProducer::position`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// assert_eq!(ring.pushed(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pushed(&self) -> u64 {
        // Acquire: SYNC spsc-publish, as in `indices`.
        self.mem.header().tail.value.load(Ordering::Acquire)
    }

    /// Items in the ring now (the consumer's lag); a snapshot.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the shared indices are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// let mut tx = ring.producer()?;
    /// tx.push(1).unwrap();
    /// assert_eq!(ring.len()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, Corrupt> {
        let (head, tail) = self.indices()?;
        Ok(tail.wrapping_sub(head) as usize)
    }

    /// Whether the ring is empty now; a snapshot.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the shared indices are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ring::Spsc::new(4)?.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, Corrupt> {
        Ok(self.len()? == 0)
    }

    /// The producer end, starting at the shared tail. Make one per ring.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the shared indices are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// let mut tx = ring.producer()?;
    /// tx.push(9).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(&self) -> Result<SpscProducer<M>, Corrupt> {
        let (head, tail) = self.indices()?;
        Ok(SpscProducer { ring: self.clone(), tail, cached_head: head })
    }

    /// The consumer end, starting at the shared head. Make one per ring.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the shared indices are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// let mut rx = ring.consumer()?;
    /// assert!(rx.pop().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(&self) -> Result<SpscConsumer<M>, Corrupt> {
        // The tail is only checked (against head); the consumer reads stamps.
        let (head, _) = self.indices()?;
        Ok(SpscConsumer { ring: self.clone(), head })
    }

    /// Both ends.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the shared indices are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// tx.push(1).unwrap();
    /// assert_eq!(rx.pop(), Ok(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn split(self) -> Result<(SpscProducer<M>, SpscConsumer<M>), Corrupt> {
        Ok((self.producer()?, self.consumer()?))
    }

    /// Hands every handle still in the ring to `out` (oldest first), then
    /// [`reset`](Self::reset)s it; for a recoverer after the consumer died
    /// (its undelivered handles must be reclaimed). Returns how many.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the indices are impossible; the ring is reset
    /// anyway and nothing is handed out.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// ring.producer()?.push_slice(&[1, 2, 3])?;
    /// let mut saved = Vec::new();
    /// assert_eq!(ring.salvage(|h| saved.push(h))?, 3);
    /// assert_eq!(saved, [1, 2, 3]);
    /// assert!(ring.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn salvage(&self, mut out: impl FnMut(u64)) -> Result<usize, Corrupt> {
        let (head, tail) = match self.indices() {
            Ok(ht) => ht,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        let n = tail.wrapping_sub(head);
        for i in 0..n {
            let pos = head.wrapping_add(i);
            if let Some(cell) = self.mem.words().get(value_word(pos, self.mask)) {
                // Relaxed: made visible by the tail Acquire in `indices`
                // (SYNC spsc-publish).
                out(cell.load(Ordering::Relaxed));
            }
        }
        self.reset();
        Ok(n as usize)
    }

    /// Empties the ring and repairs corrupt indices, for a recoverer.
    ///
    /// Memory-safe at any time, but correct only when no end of this ring is
    /// in use anywhere (its peers are dead or detached): ends made before the
    /// reset keep stale local indices and must be made again.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// ring.producer()?.push(1).unwrap();
    /// ring.reset();
    /// assert_eq!(ring.len()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) {
        let h = self.mem.header();
        // Stale stamps would read as items at the restarted positions.
        // Relaxed: published by the Release stores below.
        for stamp in self.mem.words().iter().step_by(2) {
            stamp.store(0, Ordering::Relaxed);
        }
        // Release: ends made after the reset (and after whatever the recoverer
        // publishes next) see the reset indices and stamps.
        h.head.value.store(0, Ordering::Release);
        h.tail.value.store(0, Ordering::Release);
    }
}

/// The producing end of an [`Spsc`] ring.
///
/// # Examples
///
/// ```
/// let (mut tx, _rx) = numashm_ring::Spsc::new(2)?.split()?;
/// assert_eq!(tx.push_slice(&[1, 2, 3])?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SpscProducer<M: RingMemory = HeapMemory> {
    ring: Spsc<M>,
    /// Our index: the only writer of the shared tail is us, so this copy is
    /// trusted.
    tail: u64,
    /// Last head we read; lags the real head, so free space is at least
    /// `capacity - (tail - cached_head)`.
    cached_head: u64,
}

impl<M: RingMemory> SpscProducer<M> {
    /// Free cells, refreshing the cached head only when fewer than `want`.
    #[inline(always)]
    fn free(&mut self, want: u64) -> Result<u64, Corrupt> {
        let free = self.ring.capacity - self.tail.wrapping_sub(self.cached_head);
        if free >= want {
            return Ok(free);
        }
        self.refresh_head()
    }

    #[cold]
    fn refresh_head(&mut self) -> Result<u64, Corrupt> {
        // SYNC spsc-release: pairs with the consumer's Release store of head:
        // its loads of the cells before `head` happen-before our overwrites.
        let head = self.ring.mem.header().head.value.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.ring.capacity {
            // Hostile head: report it, keep the old (valid) cache.
            return Err(Corrupt::Indices { head, tail: self.tail, capacity: self.ring.capacity });
        }
        self.cached_head = head;
        Ok(self.ring.capacity - used)
    }

    #[inline(always)]
    fn store_cell(&self, pos: u64, value: u64) {
        // `2 * (pos & mask) + 1 < 2 * capacity == words().len()`, so `get`
        // always succeeds; it keeps the access checked without a panic path.
        let words = self.ring.mem.words();
        if let (Some(stamp), Some(cell)) = (words.get(stamp_word(pos, self.ring.mask)), words.get(value_word(pos, self.ring.mask))) {
            // Relaxed: published by the stamp Release store (SYNC spsc-publish).
            cell.store(value, Ordering::Relaxed);
            // SYNC spsc-publish: the value store above happens-before the
            // consumer's load of it (its Acquire load of the stamp).
            stamp.store(pos.wrapping_add(1), Ordering::Release);
        }
    }

    /// Pushes one handle, or hands it back if the ring is full.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the value; [`PushError::Corrupt`] with the
    /// value if the consumer's index is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::PushError;
    /// let (mut tx, _rx) = numashm_ring::Spsc::new(1)?.split()?;
    /// tx.push(1).unwrap();
    /// assert_eq!(tx.push(2), Err(PushError::Full(2)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push(&mut self, value: u64) -> Result<(), PushError> {
        match self.free(1) {
            Ok(0) => return Err(PushError::Full(value)),
            Ok(_) => {}
            Err(e) => return Err(PushError::Corrupt(value, e)),
        }
        let tail = self.tail;
        self.store_cell(tail, value);
        self.tail = tail.wrapping_add(1);
        // SYNC spsc-publish (for `len`, new ends and salvage; the consumer's
        // busy path reads the stamp instead).
        self.ring.mem.header().tail.value.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Pushes as many of `values` as fit, in order; returns how many.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the consumer's index is impossible (nothing
    /// was pushed).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// assert_eq!(tx.push_slice(&[1, 2, 3])?, 3);
    /// let mut out = [0; 8];
    /// assert_eq!(rx.pop_into(&mut out)?, 3);
    /// assert_eq!(&out[..3], &[1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_slice(&mut self, values: &[u64]) -> Result<usize, Corrupt> {
        let free = self.free(values.len() as u64)?;
        let n = values.len().min(free as usize);
        let tail = self.tail;
        for (i, &v) in values[..n].iter().enumerate() {
            self.store_cell(tail.wrapping_add(i as u64), v);
        }
        self.tail = tail.wrapping_add(n as u64);
        // SYNC spsc-publish: all n cell stores before the consumer sees them.
        self.ring.mem.header().tail.value.store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// The position the next push writes: how many values were pushed since
    /// the ring was made (or last reset). A recoverer compares it with
    /// [`Spsc::pushed`] to learn whether a push it did not see finish
    /// happened.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Spsc::new(4)?;
    /// let mut tx = ring.producer()?;
    /// tx.push(1).unwrap();
    /// assert_eq!((tx.position(), ring.pushed()), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Items waiting for the consumer (its lag).
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the consumer's index is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// tx.push(1).unwrap();
    /// assert_eq!(tx.len()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, Corrupt> {
        // Acquire: SYNC spsc-release, as in `refresh_head`.
        let head = self.ring.mem.header().head.value.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.ring.capacity {
            return Err(Corrupt::Indices { head, tail: self.tail, capacity: self.ring.capacity });
        }
        Ok(used as usize)
    }

    /// Whether the consumer has taken everything.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the consumer's index is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// assert!(tx.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, Corrupt> {
        Ok(self.len()? == 0)
    }

    /// The ring this end belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// assert_eq!(tx.ring().capacity(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Spsc<M> {
        &self.ring
    }
}

/// The consuming end of an [`Spsc`] ring.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = numashm_ring::Spsc::new(2)?.split()?;
/// tx.push(3).unwrap();
/// assert_eq!(rx.pop(), Ok(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SpscConsumer<M: RingMemory = HeapMemory> {
    ring: Spsc<M>,
    /// Our index: trusted, we are the only writer of the shared head.
    head: u64,
}

impl<M: RingMemory> SpscConsumer<M> {
    /// The value at `pos` if its stamp says it is written (SYNC spsc-publish).
    #[inline(always)]
    fn ready(&self, pos: u64) -> Option<u64> {
        let words = self.ring.mem.words();
        // Always in bounds (see `SpscProducer::store_cell`).
        let (stamp, cell) = (words.get(stamp_word(pos, self.ring.mask))?, words.get(value_word(pos, self.ring.mask))?);
        // SYNC spsc-publish: pairs with the producer's stamp Release store. A
        // hostile stamp can only make a garbage value look ready, which the
        // caller validates like any value.
        if stamp.load(Ordering::Acquire) != pos.wrapping_add(1) {
            return None;
        }
        // Relaxed: ordered by the stamp Acquire above.
        Some(cell.load(Ordering::Relaxed))
    }

    /// Pops the oldest handle.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] when the next cell's stamp does not say it is
    /// written (a hostile index elsewhere in the ring cannot change that).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::PopError;
    /// let (mut tx, mut rx) = numashm_ring::Spsc::new(2)?.split()?;
    /// tx.push(8).unwrap();
    /// assert_eq!(rx.pop(), Ok(8));
    /// assert_eq!(rx.pop(), Err(PopError::Empty));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Result<u64, PopError> {
        let head = self.head;
        let Some(value) = self.ready(head) else { return Err(PopError::Empty) };
        self.head = head.wrapping_add(1);
        // SYNC spsc-release: our cell load happens-before the producer's
        // next store into the cell (its Acquire load of head).
        self.ring.mem.header().head.value.store(self.head, Ordering::Release);
        Ok(value)
    }

    /// Pops up to `out.len()` handles into `out`, oldest first; returns how
    /// many.
    ///
    /// # Errors
    ///
    /// None today: the consumer reads only cell stamps, and no stamp pattern
    /// can make more than `capacity` consecutive cells look ready. The
    /// `Result` matches [`Mpmc::pop_into`](crate::Mpmc::pop_into).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// tx.push_slice(&[4, 5])?;
    /// let mut out = [0; 1];
    /// assert_eq!(rx.pop_into(&mut out)?, 1);
    /// assert_eq!(out, [4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_into(&mut self, out: &mut [u64]) -> Result<usize, Corrupt> {
        let head = self.head;
        let mut n = 0;
        for slot in out.iter_mut() {
            let Some(v) = self.ready(head.wrapping_add(n as u64)) else { break };
            *slot = v;
            n += 1;
        }
        if n > 0 {
            self.head = head.wrapping_add(n as u64);
            // SYNC spsc-release: all n cell loads before the producer reuses them.
            self.ring.mem.header().head.value.store(self.head, Ordering::Release);
        }
        Ok(n)
    }

    /// Items waiting (our lag behind the producer).
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the producer's index is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// tx.push_slice(&[1, 2])?;
    /// assert_eq!(rx.len()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, Corrupt> {
        // Acquire: SYNC spsc-publish, as in `refresh_tail`.
        let tail = self.ring.mem.header().tail.value.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.ring.capacity {
            return Err(Corrupt::Indices { head: self.head, tail, capacity: self.ring.capacity });
        }
        Ok(avail as usize)
    }

    /// Whether nothing is waiting.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the producer's index is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// assert!(rx.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, Corrupt> {
        Ok(self.len()? == 0)
    }

    /// The ring this end belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = numashm_ring::Spsc::new(4)?.split()?;
    /// assert_eq!(rx.ring().capacity(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> &Spsc<M> {
        &self.ring
    }
}

/// Word index of position `pos`'s stamp (cells are `[stamp, value]`).
#[inline(always)]
fn stamp_word(pos: u64, mask: u64) -> usize {
    2 * (pos & mask) as usize
}

/// Word index of position `pos`'s value.
#[inline(always)]
fn value_word(pos: u64, mask: u64) -> usize {
    2 * (pos & mask) as usize + 1
}
