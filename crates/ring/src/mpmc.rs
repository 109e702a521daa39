//! Multi-producer multi-consumer ring of `u64` handles (Vyukov's bounded
//! queue with sequence-numbered cells).
//!
//! Cell `i` is two words, `[sequence, value]`. A cell is free for position
//! `p` (with `p & mask == i`) when its sequence is `p`, full with the item of
//! position `p` when its sequence is `p + 1`; the consumer of `p` frees it for
//! `p + capacity`. Producers claim positions by CAS on the tail, consumers by
//! CAS on the head.
//!
//! Orderings (named in the code, explained in `docs/ring.md`):
//! - `SYNC mpmc-publish`: the producer's value store happens-before the
//!   consumer's value load (sequence Release store `p + 1` / Acquire load).
//! - `SYNC mpmc-free`: the consumer's value load happens-before the next
//!   producer's value store into the cell (sequence Release store
//!   `p + capacity` / Acquire load).
//! - `SYNC mpmc-claim`: successful index CASes are Release and index loads
//!   Acquire, so a thread that reads position `p` from an index also sees
//!   every cell sequence that the claimers of positions before `p` had seen;
//!   this bounds how stale a sequence can look and lets every other value be
//!   reported as [`Corrupt::Sequence`].

use crate::error::{Corrupt, LayoutError, PopError, PushError};
use crate::mem::{capacity_of, ring_bytes, HeapMemory, Kind, RingMemory};
use crate::loom::hint::spin_loop;
use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// How many times one operation retries after losing a race or meeting a
/// stale index before it reports [`Corrupt::NoProgress`]. Each retry means
/// another operation completed (or a peer rewrote the index), so an honest
/// ring never gets near this.
pub const MAX_RETRIES: u32 = 1 << 16;

/// A bounded MPMC ring of `u64` handles, in heap or shared memory.
///
/// Clone it (or share a reference) to every producer and consumer thread;
/// in other processes attach to the same bytes with
/// [`attach_in`](Mpmc::attach_in).
///
/// # Examples
///
/// ```
/// let ring = numashm_ring::Mpmc::new(8)?;
/// let r2 = ring.clone();
/// std::thread::spawn(move || r2.push(7).unwrap()).join().unwrap();
/// assert_eq!(ring.pop(), Ok(7));
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mpmc<M: RingMemory = HeapMemory> {
    mem: M,
    capacity: u64,
    mask: u64,
}

/// What a cell's sequence says about position `pos`.
enum Step {
    /// The cell is ready for this operation at `pos`.
    Ready,
    /// The cell is not ready: full (push) or empty (pop), perhaps only until
    /// a peer mid-operation finishes.
    Blocked,
    /// `pos` is stale: peers have moved past it.
    Stale,
    /// No correct ring holds this sequence here.
    Corrupt,
}

impl Mpmc<HeapMemory> {
    /// A new empty ring on the heap.
    ///
    /// # Errors
    ///
    /// [`LayoutError::Capacity`] unless `capacity` is a power of two in
    /// `2..=MAX_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Mpmc::new(64)?.capacity(), 64);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn new(capacity: usize) -> Result<Self, LayoutError> {
        Ok(Self::from_mem(HeapMemory::new(Kind::Mpmc, capacity as u64)?))
    }
}


impl<M: RingMemory> Mpmc<M> {
    pub(crate) fn from_mem(mem: M) -> Self {
        let capacity = capacity_of(&mem, Kind::Mpmc);
        Mpmc { mem, capacity, mask: capacity - 1 }
    }

    /// Bytes an MPMC ring of `capacity` needs in shared memory, or `None` if
    /// `capacity` is above `MAX_CAPACITY`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Mpmc::<numashm_ring::HeapMemory>::bytes_for(16), Some(384 + 16 * 16));
    /// ```
    pub const fn bytes_for(capacity: usize) -> Option<usize> {
        ring_bytes(Kind::Mpmc, capacity as u64)
    }

    /// Number of cells.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Mpmc::new(4)?.capacity(), 4);
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// `(sequence, value)` words of the cell for position `pos`.
    #[inline(always)]
    fn cell(&self, pos: u64) -> Option<(&AtomicU64, &AtomicU64)> {
        let i = ((pos & self.mask) as usize) * 2;
        let words = self.mem.words();
        // Always in bounds: i + 1 < 2 * capacity == words.len().
        debug_assert!(i + 1 < words.len());
        match (words.get(i), words.get(i + 1)) {
            (Some(s), Some(v)) => Some((s, v)),
            _ => None,
        }
    }

    /// Classifies `seq` for an operation at `pos` that wants `pos + want`
    /// (0 for push, 1 for pop). Legitimate sequences at a possibly stale
    /// `pos` are `≡ pos` or `≡ pos + 1` modulo the capacity and, thanks to
    /// SYNC mpmc-claim, no older than one lap.
    #[inline(always)]
    fn classify(&self, seq: u64, pos: u64, want: u64) -> Step {
        let d = seq.wrapping_sub(pos.wrapping_add(want)) as i64;
        if d == 0 {
            return Step::Ready;
        }
        let rel = seq.wrapping_sub(pos);
        if rel & self.mask > 1 && self.capacity > 2 {
            return Step::Corrupt;
        }
        if d < 0 {
            if seq.wrapping_sub(pos) as i64 >= -(self.capacity as i64) {
                Step::Blocked
            } else {
                Step::Corrupt
            }
        } else {
            Step::Stale
        }
    }

    /// Pushes one handle, or hands it back if the ring is full.
    ///
    /// Like Vyukov's queue, a push can report `Full` while a consumer that
    /// has claimed the oldest cell has not finished reading it.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with the value; [`PushError::Corrupt`] with the
    /// value if an index or cell sequence is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{Mpmc, PushError};
    /// let ring = Mpmc::new(2)?;
    /// ring.push_slice(&[1, 2])?;
    /// assert_eq!(ring.push(3), Err(PushError::Full(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push(&self, value: u64) -> Result<(), PushError> {
        let tail = &self.mem.header().tail.value;
        // SYNC mpmc-claim: Acquire pairs with the Release CASes on tail.
        let mut pos = tail.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let Some((seq_w, val_w)) = self.cell(pos) else { break };
            // SYNC mpmc-free: pairs with the consumer's Release store of
            // `pos` into the sequence; its value load is done.
            let seq = seq_w.load(Ordering::Acquire);
            match self.classify(seq, pos, 0) {
                Step::Ready => {
                    // Success Release (SYNC mpmc-claim); failure Acquire: the
                    // returned position is used like a fresh Acquire load.
                    match tail.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        Ordering::Release,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            // Relaxed: published by the sequence Release below.
                            val_w.store(value, Ordering::Relaxed);
                            // SYNC mpmc-publish: the value before the consumer
                            // sees sequence `pos + 1`.
                            seq_w.store(pos.wrapping_add(1), Ordering::Release);
                            return Ok(());
                        }
                        Err(now) => {
                            pos = now;
                            spin_loop();
                        }
                    }
                }
                Step::Blocked => return Err(PushError::Full(value)),
                Step::Stale => {
                    // Acquire: SYNC mpmc-claim.
                    let now = tail.load(Ordering::Acquire);
                    if now == pos {
                        // The cell says pos was claimed; the index says not.
                        return Err(PushError::Corrupt(value, Corrupt::Sequence { pos, seq }));
                    }
                    pos = now;
                }
                Step::Corrupt => {
                    return Err(PushError::Corrupt(value, Corrupt::Sequence { pos, seq }))
                }
            }
        }
        Err(PushError::Corrupt(value, Corrupt::NoProgress { pos, retries: MAX_RETRIES }))
    }

    /// Pops the oldest handle.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] (also while the producer that claimed the oldest
    /// cell has not finished writing it); [`PopError::Corrupt`] if an index or
    /// cell sequence is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{Mpmc, PopError};
    /// let ring = Mpmc::new(2)?;
    /// assert_eq!(ring.pop(), Err(PopError::Empty));
    /// ring.push(3).unwrap();
    /// assert_eq!(ring.pop(), Ok(3));
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn pop(&self) -> Result<u64, PopError> {
        let head = &self.mem.header().head.value;
        // SYNC mpmc-claim: Acquire pairs with the Release CASes on head.
        let mut pos = head.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let Some((seq_w, val_w)) = self.cell(pos) else { break };
            // SYNC mpmc-publish: pairs with the producer's Release store of
            // `pos + 1`; its value store is visible.
            let seq = seq_w.load(Ordering::Acquire);
            match self.classify(seq, pos, 1) {
                Step::Ready => {
                    // Success Release / failure Acquire: SYNC mpmc-claim.
                    match head.compare_exchange_weak(
                        pos,
                        pos.wrapping_add(1),
                        Ordering::Release,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            // Relaxed: ordered by the sequence Acquire above.
                            let value = val_w.load(Ordering::Relaxed);
                            // SYNC mpmc-free: our value load before the next
                            // producer of this cell stores.
                            seq_w.store(pos.wrapping_add(self.capacity), Ordering::Release);
                            return Ok(value);
                        }
                        Err(now) => {
                            pos = now;
                            spin_loop();
                        }
                    }
                }
                Step::Blocked => return Err(PopError::Empty),
                Step::Stale => {
                    // Acquire: SYNC mpmc-claim.
                    let now = head.load(Ordering::Acquire);
                    if now == pos {
                        return Err(Corrupt::Sequence { pos, seq }.into());
                    }
                    pos = now;
                }
                Step::Corrupt => return Err(Corrupt::Sequence { pos, seq }.into()),
            }
        }
        Err(Corrupt::NoProgress { pos, retries: MAX_RETRIES }.into())
    }

    /// Pushes a prefix of `values` (as many as are free in a row) with one
    /// CAS; returns how many were pushed (0 if full).
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if an index or cell sequence is impossible (nothing was
    /// pushed).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Mpmc::new(4)?;
    /// assert_eq!(ring.push_slice(&[1, 2, 3, 4, 5])?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn push_slice(&self, values: &[u64]) -> Result<usize, Corrupt> {
        self.batch(values.len(), 0, |pos, i, val_w| {
            let _ = pos;
            // Relaxed: published by the sequence Release (SYNC mpmc-publish).
            val_w.store(values[i], Ordering::Relaxed);
        })
    }

    /// Pops up to `out.len()` handles (as many as are ready in a row) with
    /// one CAS; returns how many (0 if empty).
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if an index or cell sequence is impossible (nothing was
    /// popped).
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Mpmc::new(4)?;
    /// ring.push_slice(&[1, 2])?;
    /// let mut out = [0; 4];
    /// assert_eq!(ring.pop_into(&mut out)?, 2);
    /// assert_eq!(&out[..2], &[1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pop_into(&self, out: &mut [u64]) -> Result<usize, Corrupt> {
        let len = out.len();
        self.batch(len, 1, |_, i, val_w| {
            // Relaxed: ordered by the sequence Acquire (SYNC mpmc-publish).
            out[i] = val_w.load(Ordering::Relaxed);
        })
    }

    /// Shared body of the batch operations: `want` is 0 for push (cells free
    /// at `pos`), 1 for pop (cells full with `pos`).
    fn batch(
        &self,
        max: usize,
        want: u64,
        mut each: impl FnMut(u64, usize, &AtomicU64),
    ) -> Result<usize, Corrupt> {
        if max == 0 {
            return Ok(0);
        }
        let h = self.mem.header();
        let index = if want == 0 { &h.tail.value } else { &h.head.value };
        let max = max.min(self.capacity as usize) as u64;
        // SYNC mpmc-claim.
        let mut pos = index.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let Some((seq_w, _)) = self.cell(pos) else { break };
            // SYNC mpmc-publish (pop) / mpmc-free (push).
            let seq = seq_w.load(Ordering::Acquire);
            match self.classify(seq, pos, want) {
                Step::Ready => {}
                Step::Blocked => return Ok(0),
                Step::Stale => {
                    let now = index.load(Ordering::Acquire);
                    if now == pos {
                        return Err(Corrupt::Sequence { pos, seq });
                    }
                    pos = now;
                    continue;
                }
                Step::Corrupt => return Err(Corrupt::Sequence { pos, seq }),
            }
            // Count the run of ready cells after the first.
            let mut n = 1;
            while n < max {
                let p = pos.wrapping_add(n);
                let Some((s, _)) = self.cell(p) else { break };
                // As above: SYNC mpmc-publish / mpmc-free.
                if s.load(Ordering::Acquire) != p.wrapping_add(want) {
                    break;
                }
                n += 1;
            }
            // SYNC mpmc-claim; nobody else can claim pos..pos+n after this
            // succeeds, and the cells were ready when counted.
            match index.compare_exchange_weak(
                pos,
                pos.wrapping_add(n),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    for i in 0..n {
                        let p = pos.wrapping_add(i);
                        let Some((s, v)) = self.cell(p) else { break };
                        each(p, i as usize, v);
                        let next = if want == 0 { p.wrapping_add(1) } else { p.wrapping_add(self.capacity) };
                        // SYNC mpmc-publish (push) / mpmc-free (pop).
                        s.store(next, Ordering::Release);
                    }
                    return Ok(n as usize);
                }
                Err(now) => {
                    pos = now;
                    spin_loop();
                }
            }
        }
        Err(Corrupt::NoProgress { pos, retries: MAX_RETRIES })
    }

    /// Items in the ring now, clamped to `0..=capacity`; a snapshot.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if the tail is behind the head.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Mpmc::new(4)?;
    /// ring.push(1).unwrap();
    /// assert_eq!(ring.len()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> Result<usize, Corrupt> {
        let h = self.mem.header();
        // SYNC mpmc-claim: after reading head `p` we have seen every claim of
        // a position < p, whose producers' claims came first, so the tail
        // read next is >= p in a correct ring. It may be more than one lap
        // ahead by then; hence the clamp.
        let head = h.head.value.load(Ordering::Acquire);
        let tail = h.tail.value.load(Ordering::Acquire);
        let d = tail.wrapping_sub(head);
        if (d as i64) < 0 {
            return Err(Corrupt::Indices { head, tail, capacity: self.capacity });
        }
        Ok(d.min(self.capacity) as usize)
    }

    /// Whether the ring is empty now; a snapshot.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ring::Mpmc::new(4)?.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, Corrupt> {
        Ok(self.len()? == 0)
    }

    /// Hands every published handle still in the ring to `out` (oldest
    /// first), then [`reset`](Self::reset)s it; for a recoverer, after the
    /// peers using the ring died or stopped.
    ///
    /// Unlike popping, this also gets past a cell that a producer claimed but
    /// never filled (it died between its CAS and its sequence store), which
    /// would otherwise leave consumers seeing `Empty` at that position
    /// forever. Such a cell, and a cell a dying consumer claimed but had not
    /// released, are skipped: their handles belong to the dead peer's own
    /// records. Returns how many handles were handed out.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Indices`] if `tail - head` exceeds the capacity; the ring is
    /// reset anyway and nothing is handed out.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Mpmc::new(4)?;
    /// ring.push_slice(&[7, 8])?;
    /// let mut saved = Vec::new();
    /// assert_eq!(ring.salvage(|h| saved.push(h))?, 2);
    /// assert_eq!(saved, [7, 8]);
    /// assert!(ring.is_empty()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn salvage(&self, mut out: impl FnMut(u64)) -> Result<usize, Corrupt> {
        let h = self.mem.header();
        // Acquire (both): SYNC mpmc-claim, the recoverer sees every claim.
        let head = h.head.value.load(Ordering::Acquire);
        let tail = h.tail.value.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head);
        if n > self.capacity {
            self.reset();
            return Err(Corrupt::Indices { head, tail, capacity: self.capacity });
        }
        let mut handed = 0;
        for i in 0..n {
            let p = head.wrapping_add(i);
            let Some((s, v)) = self.cell(p) else { break };
            // Acquire: SYNC mpmc-publish, the value of a published cell.
            if s.load(Ordering::Acquire) == p.wrapping_add(1) {
                // Relaxed: ordered by the sequence Acquire.
                out(v.load(Ordering::Relaxed));
                handed += 1;
            }
        }
        self.reset();
        Ok(handed)
    }

    /// Empties the ring and repairs indices and cell sequences, for a
    /// recoverer. Memory-safe at any time; correct only when nobody else uses
    /// the ring meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// let ring = numashm_ring::Mpmc::new(4)?;
    /// ring.push(1).unwrap();
    /// ring.reset();
    /// assert!(ring.pop().is_err());
    /// # Ok::<(), numashm_ring::LayoutError>(())
    /// ```
    pub fn reset(&self) {
        for (i, w) in self.mem.words().iter().enumerate() {
            // Release: as for the indices below.
            w.store(if i % 2 == 0 { (i / 2) as u64 } else { 0 }, Ordering::Release);
        }
        let h = self.mem.header();
        // Release: whoever next acquires the indices sees the reset cells.
        h.head.value.store(0, Ordering::Release);
        h.tail.value.store(0, Ordering::Release);
    }
}
