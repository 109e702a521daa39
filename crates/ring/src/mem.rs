//! Where a ring's atomic words live: "one algorithm, two memories".
//!
//! A ring is a [`RingHeader`] followed by an array of `AtomicU64` cell words.
//! [`HeapMemory`] owns them on the heap (what loom and miri run);
//! [`SharedMemory`] views them inside a byte range of a shared mapping at
//! whatever address this process mapped it (no pointers are stored in the
//! range itself). The ring algorithms in `spsc` and `mpmc` see only
//! [`RingMemory`] and are written once.
//!
//! Layout version 2 (SPSC cells gained a stamp), all integers native-endian (see `docs/ring.md`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `RING_MAGIC` (written last, Release) |
//! | 8 | 4 | layout version (2) |
//! | 12 | 4 | kind (1 = SPSC, 2 = MPMC) |
//! | 16 | 8 | capacity (power of two) |
//! | 24..128 | | padding (never written or read) |
//! | 128 | 8 | head: consumer index (SPSC) / dequeue position (MPMC) |
//! | 256 | 8 | tail: producer index (SPSC) / enqueue position (MPMC) |
//! | 384 | 8 × capacity × words-per-cell | cells |
#![allow(unsafe_code)]

use core::mem::size_of;
#[cfg(not(numashm_loom))]
use core::ptr::NonNull;
use std::sync::Arc;

use crate::error::LayoutError;
#[cfg(not(numashm_loom))]
use crate::loom::sync::atomic::Ordering;
use crate::loom::sync::atomic::{AtomicU32, AtomicU64};

/// First word of every ring header: `b"nshmRING"` read as a little-endian `u64`.
///
/// # Examples
///
/// ```
/// assert_eq!(&numashm_ring::RING_MAGIC.to_le_bytes(), b"nshmRING");
/// ```
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"nshmRING");
/// Layout version written into, and required from, ring and doorbell headers.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::LAYOUT_VERSION, 2);
/// ```
pub const LAYOUT_VERSION: u32 = 2;
/// Alignment required of a ring's or doorbell's base address, and the size of
/// one padded line (two 64-byte cache lines, against adjacent-line prefetch).
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::align_of::<numashm_ring::RingHeader>(), numashm_ring::ALIGN);
/// ```
pub const ALIGN: usize = 128;
/// Largest capacity a ring may have (2^32 cells).
///
/// # Examples
///
/// ```
/// assert!(numashm_ring::Spsc::new((numashm_ring::MAX_CAPACITY * 2) as usize).is_err());
/// ```
pub const MAX_CAPACITY: u64 = 1 << 32;
/// Bytes of a ring header; the cells start at this offset.
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::RingHeader>(), numashm_ring::RING_HEADER_BYTES);
/// ```
pub const RING_HEADER_BYTES: usize = 3 * ALIGN;

/// Kind of ring recorded in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Spsc = 1,
    Mpmc = 2,
}

impl Kind {
    /// `u64` words per cell: SPSC cells are `[stamp, value]` (the stamp is
    /// the position plus one once that position's value is written, so a
    /// consumer polls the cell itself, not the producer's index); MPMC cells
    /// are `[sequence, value]`.
    pub(crate) const fn words_per_cell(self) -> usize {
        match self {
            Kind::Spsc => 2,
            Kind::Mpmc => 2,
        }
    }
}

/// The first padded line of a ring: identity and geometry, written once.
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::RingMeta>(), 128);
/// ```
#[repr(C, align(128))]
pub struct RingMeta {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    capacity: AtomicU64,
}

/// One hot index alone on its padded line (`CachePadded` for shared memory).
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::PaddedIndex>(), 128);
/// ```
#[repr(C, align(128))]
pub struct PaddedIndex {
    pub(crate) value: AtomicU64,
}

/// The 384-byte header in front of a ring's cells.
///
/// Fields are private: the header is read only through the ring types.
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::RingHeader>(), 384);
/// ```
#[repr(C)]
pub struct RingHeader {
    meta: RingMeta,
    /// Consumer index (SPSC) or dequeue position (MPMC); written by consumers.
    pub(crate) head: PaddedIndex,
    /// Producer index (SPSC) or enqueue position (MPMC); written by producers.
    pub(crate) tail: PaddedIndex,
}

#[cfg(not(numashm_loom))]
const _: () = {
    assert!(size_of::<RingMeta>() == ALIGN);
    assert!(size_of::<PaddedIndex>() == ALIGN);
    assert!(size_of::<RingHeader>() == RING_HEADER_BYTES);
    assert!(core::mem::align_of::<RingHeader>() == ALIGN);
    assert!(core::mem::offset_of!(RingMeta, capacity) == 16);
};

impl RingHeader {
    fn new(kind: Kind, capacity: u64, magic: u64) -> Self {
        RingHeader {
            meta: RingMeta {
                magic: AtomicU64::new(magic),
                version: AtomicU32::new(LAYOUT_VERSION),
                kind: AtomicU32::new(kind as u32),
                capacity: AtomicU64::new(capacity),
            },
            head: PaddedIndex { value: AtomicU64::new(0) },
            tail: PaddedIndex { value: AtomicU64::new(0) },
        }
    }
}

/// Bytes a ring of `kind` with `capacity` cells occupies; `None` on overflow.
pub(crate) const fn ring_bytes(kind: Kind, capacity: u64) -> Option<usize> {
    if capacity > MAX_CAPACITY {
        return None;
    }
    let cells = (capacity as usize).checked_mul(kind.words_per_cell() * size_of::<u64>());
    match cells {
        Some(c) => c.checked_add(RING_HEADER_BYTES),
        None => None,
    }
}

/// SPSC rings take any power of two; MPMC rings need at least 2 cells (with
/// one cell, "free for position p" and "full with p - 1" are both sequence p).
pub(crate) fn check_capacity(kind: Kind, capacity: u64) -> Result<(), LayoutError> {
    let min = match kind {
        Kind::Spsc => 1,
        Kind::Mpmc => 2,
    };
    if capacity < min || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(LayoutError::Capacity(capacity));
    }
    Ok(())
}

/// Initial value of cell word `i` (MPMC sequence words start at their index).
fn initial_word(kind: Kind, i: usize) -> u64 {
    match kind {
        Kind::Spsc => 0,
        Kind::Mpmc if i % 2 == 0 => (i / 2) as u64,
        Kind::Mpmc => 0,
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Memory a ring's words live in: [`HeapMemory`] or [`SharedMemory`].
///
/// Sealed: the ring algorithms rely on `words()` having the length the header
/// was validated against.
///
/// # Examples
///
/// ```
/// use numashm_ring::{HeapMemory, RingMemory, Spsc};
/// fn capacity_of<M: RingMemory>(ring: &Spsc<M>) -> usize { ring.capacity() }
/// assert_eq!(capacity_of::<HeapMemory>(&Spsc::new(8)?), 8);
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
pub trait RingMemory: sealed::Sealed + Clone + Send + Sync {
    /// The ring's header.
    #[doc(hidden)]
    fn header(&self) -> &RingHeader;
    /// The ring's cell words (`capacity × words-per-cell` of them).
    #[doc(hidden)]
    fn words(&self) -> &[AtomicU64];
}

struct HeapRing {
    header: RingHeader,
    words: Box<[AtomicU64]>,
}

/// A ring's words owned on the heap and shared between threads by `Arc`.
///
/// # Examples
///
/// ```
/// use numashm_ring::{HeapMemory, Mpmc};
/// let ring: Mpmc<HeapMemory> = Mpmc::new(4)?;
/// ring.push(1).unwrap();
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
#[derive(Clone)]
pub struct HeapMemory(Arc<HeapRing>);

impl core::fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapMemory").field("words", &self.0.words.len()).finish()
    }
}

impl HeapMemory {
    pub(crate) fn new(kind: Kind, capacity: u64) -> Result<Self, LayoutError> {
        check_capacity(kind, capacity)?;
        let n = capacity as usize * kind.words_per_cell();
        let words = (0..n).map(|i| AtomicU64::new(initial_word(kind, i))).collect();
        Ok(HeapMemory(Arc::new(HeapRing {
            header: RingHeader::new(kind, capacity, RING_MAGIC),
            words,
        })))
    }
}

impl sealed::Sealed for HeapMemory {}
impl RingMemory for HeapMemory {
    #[inline(always)]
    fn header(&self) -> &RingHeader {
        &self.0.header
    }
    #[inline(always)]
    fn words(&self) -> &[AtomicU64] {
        &self.0.words
    }
}

/// A ring's words inside a shared mapping, viewed at this process's address.
///
/// Made only by the `unsafe` `init_in` / `attach_in` constructors of the ring
/// types, whose contract keeps the mapping alive and mapped for as long as
/// any clone of this value exists.
///
/// # Examples
///
/// ```
/// use numashm_ring::{SharedMemory, Spsc};
/// #[repr(C, align(128))]
/// struct Buf([u8; 1024]);
/// let mut buf = Buf([0; 1024]);
/// // SAFETY: buf is live, aligned, and only used through the ring below.
/// let ring: Spsc<SharedMemory> = unsafe { Spsc::init_in(buf.0.as_mut_ptr(), 1024, 4)? };
/// assert_eq!(ring.capacity(), 4);
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
#[cfg(not(numashm_loom))]
#[derive(Clone, Debug)]
pub struct SharedMemory {
    header: NonNull<RingHeader>,
    /// Non-null: inside the range, `RING_HEADER_BYTES` after `header`.
    words: *const AtomicU64,
    n_words: usize,
}

// SAFETY: 1. every access through the pointers is to atomics, so concurrent
// use from several threads (and processes) is data-race free; 2. the
// `init_in`/`attach_in` contract keeps the pointed-to range mapped while any
// `SharedMemory` exists, whichever thread holds it.
#[cfg(not(numashm_loom))]
unsafe impl Send for SharedMemory {}
// SAFETY: as for `Send`: `&SharedMemory` only hands out `&` to atomics.
#[cfg(not(numashm_loom))]
unsafe impl Sync for SharedMemory {}

#[cfg(not(numashm_loom))]
impl sealed::Sealed for SharedMemory {}
#[cfg(not(numashm_loom))]
impl RingMemory for SharedMemory {
    #[inline(always)]
    fn header(&self) -> &RingHeader {
        // SAFETY: 1. `header` is 128-aligned and points at RING_HEADER_BYTES
        // bytes inside the range (checked by init_in/attach_in); 2. all its
        // fields are atomics, valid for every bit pattern; 3. the range stays
        // mapped while `self` lives (constructor contract).
        unsafe { self.header.as_ref() }
    }
    #[inline(always)]
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: 1. `words` is 8-aligned and `n_words * 8` bytes follow it
        // inside the range (checked by init_in/attach_in); 2. AtomicU64 is
        // valid for every bit pattern; 3. the range stays mapped while `self`
        // lives (constructor contract).
        unsafe { core::slice::from_raw_parts(self.words, self.n_words) }
    }
}

#[cfg(not(numashm_loom))]
fn check_range(ptr: *mut u8, len: usize) -> Result<NonNull<u8>, LayoutError> {
    let addr = ptr as usize;
    let Some(base) = NonNull::new(ptr) else {
        return Err(LayoutError::Misaligned { addr, align: ALIGN });
    };
    if addr % ALIGN != 0 {
        return Err(LayoutError::Misaligned { addr, align: ALIGN });
    }
    if len < RING_HEADER_BYTES {
        return Err(LayoutError::TooSmall { needed: RING_HEADER_BYTES, len });
    }
    Ok(base)
}

#[cfg(not(numashm_loom))]
impl SharedMemory {
    fn from_checked(base: NonNull<u8>, kind: Kind, capacity: u64) -> Self {
        let n_words = capacity as usize * kind.words_per_cell();
        // `base + RING_HEADER_BYTES` stays inside the range (len checked), so
        // the wrapping add never wraps and keeps `base`'s provenance.
        let words = base.as_ptr().wrapping_add(RING_HEADER_BYTES).cast::<AtomicU64>();
        SharedMemory { header: base.cast(), words, n_words }
    }

    /// Writes a fresh ring header and cells at `ptr`.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned value or any clone of it is used.
    /// - No other code reads or writes the range while it is initialised
    ///   (peers attach only after this returns).
    /// - After this returns, the range is accessed only atomically (through
    ///   ring values from `init_in`/`attach_in`).
    pub(crate) unsafe fn init_in(
        ptr: *mut u8,
        len: usize,
        kind: Kind,
        capacity: u64,
    ) -> Result<Self, LayoutError> {
        check_capacity(kind, capacity)?;
        let base = check_range(ptr, len)?;
        let needed = ring_bytes(kind, capacity).ok_or(LayoutError::Capacity(capacity))?;
        if len < needed {
            return Err(LayoutError::TooSmall { needed, len });
        }
        let mem = Self::from_checked(base, kind, capacity);
        // SAFETY: 1. the header pointer is aligned and in bounds (checked
        // above); 2. the caller guarantees exclusive access during init, so
        // writing without reading the old bytes is fine; magic is 0 until the
        // Release store below.
        unsafe { mem.header.as_ptr().write(RingHeader::new(kind, capacity, 0)) };
        for i in 0..mem.n_words {
            debug_assert!(RING_HEADER_BYTES + (i + 1) * 8 <= len);
            // SAFETY: 1. i < n_words and n_words * 8 bytes follow `words`
            // inside the range (len >= needed); 2. exclusive access as above.
            unsafe { mem.words.cast_mut().add(i).write(AtomicU64::new(initial_word(kind, i))) };
        }
        // SYNC ring-init: every header and cell word is written before the
        // magic; pairs with the Acquire load of the magic in `attach_in`.
        mem.header().meta.magic.store(RING_MAGIC, Ordering::Release);
        Ok(mem)
    }

    /// Validates the ring header at `ptr` and views it.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned value or any clone of it is used.
    /// - Every access to the range by anyone is atomic (the range holds a
    ///   ring made by `init_in`, or bytes nobody writes non-atomically).
    pub(crate) unsafe fn attach_in(ptr: *mut u8, len: usize, kind: Kind) -> Result<Self, LayoutError> {
        let base = check_range(ptr, len)?;
        // SAFETY: 1. aligned and RING_HEADER_BYTES long (checked); 2. only
        // atomics, valid for any bits; 3. the caller keeps it mapped.
        let header: &RingHeader = unsafe { base.cast::<RingHeader>().as_ref() };
        // SYNC ring-init: pairs with the Release store in `init_in`, so the
        // header fields and cells read below are the initialised ones.
        let magic = header.meta.magic.load(Ordering::Acquire);
        if magic != RING_MAGIC {
            return Err(LayoutError::Magic(magic));
        }
        // Relaxed: ordered after the magic by the Acquire above; written once.
        let version = header.meta.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LayoutError::Version(version));
        }
        // Relaxed: as for the version.
        let found = header.meta.kind.load(Ordering::Relaxed);
        if found != kind as u32 {
            return Err(LayoutError::Kind { expected: kind as u32, found });
        }
        // Relaxed: as for the version. Hostile: validated right below, and
        // only this validated copy is used afterwards.
        let capacity = header.meta.capacity.load(Ordering::Relaxed);
        check_capacity(kind, capacity)?;
        let needed = ring_bytes(kind, capacity).ok_or(LayoutError::Capacity(capacity))?;
        if len < needed {
            return Err(LayoutError::TooSmall { needed, len });
        }
        Ok(Self::from_checked(base, kind, capacity))
    }
}

/// The ring's capacity, from the word count fixed when `mem` was made (the
/// header's capacity field is never re-read, so a later rewrite of it by a
/// hostile peer cannot change the geometry).
pub(crate) fn capacity_of<M: RingMemory>(mem: &M, kind: Kind) -> u64 {
    (mem.words().len() / kind.words_per_cell()) as u64
}

/// Magic in a standalone doorbell block: `b"BELL"` as a little-endian `u32`.
///
/// # Examples
///
/// ```
/// assert_eq!(&numashm_ring::BELL_MAGIC.to_le_bytes(), b"BELL");
/// ```
pub const BELL_MAGIC: u32 = u32::from_le_bytes(*b"BELL");

/// A doorbell's words: one padded line (the ring's layout version, 2).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `seq`: futex word, bumped by a notifier that saw parked waiters |
/// | 4 | 4 | `waiters`: low 16 bits parked (futex) waiters, high 16 bits armed (eventfd) waiters |
/// | 8 | 4 | magic `BELL_MAGIC` (written last, Release) |
/// | 12 | 4 | layout version (2) |
/// | 16..128 | | padding (never written or read) |
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::BellBlock>(), numashm_ring::BELL_BYTES);
/// ```
#[repr(C, align(128))]
pub struct BellBlock {
    pub(crate) seq: AtomicU32,
    pub(crate) waiters: AtomicU32,
    magic: AtomicU32,
    version: AtomicU32,
}

/// Bytes of a doorbell block in shared memory.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::BELL_BYTES, 128);
/// ```
pub const BELL_BYTES: usize = ALIGN;

#[cfg(not(numashm_loom))]
const _: () = {
    assert!(size_of::<BellBlock>() == BELL_BYTES);
    assert!(core::mem::offset_of!(BellBlock, waiters) == 4);
};

impl BellBlock {
    fn new(magic: u32) -> Self {
        BellBlock {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            magic: AtomicU32::new(magic),
            version: AtomicU32::new(LAYOUT_VERSION),
        }
    }
}

/// Memory a doorbell's words live in: [`HeapBell`] or [`SharedBell`].
///
/// # Examples
///
/// ```
/// use numashm_ring::{BellMemory, Doorbell, HeapBell};
/// fn ring_it<B: BellMemory>(bell: &Doorbell<B>) { bell.notify().unwrap(); }
/// ring_it::<HeapBell>(&Doorbell::new());
/// ```
pub trait BellMemory: sealed::Sealed + Clone + Send + Sync {
    /// The doorbell's words.
    #[doc(hidden)]
    fn block(&self) -> &BellBlock;
    /// Loom's stand-in for the futex (loom builds only).
    #[cfg(numashm_loom)]
    #[doc(hidden)]
    fn parker(&self) -> &crate::doorbell::LoomFutex;
}

struct HeapBellInner {
    block: BellBlock,
    #[cfg(numashm_loom)]
    parker: crate::doorbell::LoomFutex,
}

/// A doorbell's words on the heap, shared between threads by `Arc`.
///
/// # Examples
///
/// ```
/// let bell: numashm_ring::Doorbell<numashm_ring::HeapBell> = numashm_ring::Doorbell::new();
/// assert_eq!(bell.notify().unwrap().parked, 0);
/// ```
#[derive(Clone)]
pub struct HeapBell(Arc<HeapBellInner>);

impl core::fmt::Debug for HeapBell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HeapBell")
    }
}

impl HeapBell {
    pub(crate) fn new() -> Self {
        HeapBell(Arc::new(HeapBellInner {
            block: BellBlock::new(BELL_MAGIC),
            #[cfg(numashm_loom)]
            parker: crate::doorbell::LoomFutex::new(),
        }))
    }
}

impl sealed::Sealed for HeapBell {}
impl BellMemory for HeapBell {
    #[inline(always)]
    fn block(&self) -> &BellBlock {
        &self.0.block
    }
    #[cfg(numashm_loom)]
    fn parker(&self) -> &crate::doorbell::LoomFutex {
        &self.0.parker
    }
}

/// A doorbell's words inside a shared mapping, viewed at this process's
/// address. Made by the `unsafe` `Doorbell::init_in` / `attach_in`.
///
/// # Examples
///
/// ```
/// use numashm_ring::{Doorbell, SharedBell};
/// #[repr(C, align(128))]
/// struct Buf([u8; 128]);
/// let mut buf = Buf([0; 128]);
/// // SAFETY: buf outlives the bell and is used only through it.
/// let bell: Doorbell<SharedBell> = unsafe { Doorbell::init_in(buf.0.as_mut_ptr(), 128)? };
/// bell.notify()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(numashm_loom))]
#[derive(Clone, Debug)]
pub struct SharedBell {
    block: NonNull<BellBlock>,
}

// SAFETY: 1. only atomics are reached through the pointer; 2. the
// init_in/attach_in contract keeps the range mapped while any copy lives.
#[cfg(not(numashm_loom))]
unsafe impl Send for SharedBell {}
// SAFETY: as for `Send`.
#[cfg(not(numashm_loom))]
unsafe impl Sync for SharedBell {}

#[cfg(not(numashm_loom))]
impl sealed::Sealed for SharedBell {}
#[cfg(not(numashm_loom))]
impl BellMemory for SharedBell {
    #[inline(always)]
    fn block(&self) -> &BellBlock {
        // SAFETY: 1. aligned and BELL_BYTES long (checked by the
        // constructors); 2. only atomics, valid for any bits; 3. mapped while
        // `self` lives (constructor contract).
        unsafe { self.block.as_ref() }
    }
}

#[cfg(not(numashm_loom))]
fn check_bell_range(ptr: *mut u8, len: usize) -> Result<NonNull<BellBlock>, LayoutError> {
    let addr = ptr as usize;
    let base = NonNull::new(ptr).ok_or(LayoutError::Misaligned { addr, align: ALIGN })?;
    if addr % ALIGN != 0 {
        return Err(LayoutError::Misaligned { addr, align: ALIGN });
    }
    if len < BELL_BYTES {
        return Err(LayoutError::TooSmall { needed: BELL_BYTES, len });
    }
    Ok(base.cast())
}

#[cfg(not(numashm_loom))]
impl SharedBell {
    /// # Safety
    ///
    /// As `Doorbell::<SharedBell>::init_in`.
    pub(crate) unsafe fn init_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        let block = check_bell_range(ptr, len)?;
        // SAFETY: 1. aligned and in bounds (checked); 2. the caller grants
        // exclusive access during init; magic stays 0 until the store below.
        unsafe { block.as_ptr().write(BellBlock::new(0)) };
        let bell = SharedBell { block };
        // SYNC bell-init: the block is written before the magic; pairs with
        // the Acquire load in `attach_in`.
        bell.block().magic.store(BELL_MAGIC, Ordering::Release);
        Ok(bell)
    }

    /// # Safety
    ///
    /// As `Doorbell::<SharedBell>::attach_in`.
    pub(crate) unsafe fn attach_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        let block = check_bell_range(ptr, len)?;
        let bell = SharedBell { block };
        // SYNC bell-init: pairs with the Release store in `init_in`.
        let magic = bell.block().magic.load(Ordering::Acquire);
        if magic != BELL_MAGIC {
            return Err(LayoutError::Magic(u64::from(magic)));
        }
        // Relaxed: ordered after the magic by its Acquire; written once.
        let version = bell.block().version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LayoutError::Version(version));
        }
        Ok(bell)
    }
}
