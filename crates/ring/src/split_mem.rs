//! Where a split ring's two blocks live: "one algorithm, two memories".
//!
//! A split ring from producer P to consumer C is two blocks, each written by
//! one side only (layout version 1, native-endian, see `docs/ring.md`):
//!
//! Producer block (P's memory, C maps it read-only):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `SPLIT_MAGIC` (written last at init, Release) |
//! | 8 | 4 | layout version (1) |
//! | 16 | 8 | capacity (power of two) |
//! | 128 | 8 | `tail` (inspection and recovery; C polls stamps) |
//! | 256 | 4 | `data_seq`: futex word C parks on |
//! | 260 | 4 | `space_waiting`: P's "I wait for room" word |
//! | 384 | 32 × capacity | cells `[stamp, w0, w1, w2]` |
//!
//! Consumer block (C's memory, P maps it read-only), `SPLIT_CONSUMER_BYTES`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | `head` (C's position, stored after each pop) |
//! | 128 | 4 | `parked`: C's "I wait for data" word |
//! | 132 | 4 | `space_seq`: futex word P parks on |
//!
//! The words written on every operation (`tail`, `head`) sit on lines of
//! their own, so the doorbell words each side checks after every operation
//! stay clean in its cache while the peer is busy.
#![allow(unsafe_code)]

#[cfg(not(numashm_loom))]
use core::ptr::NonNull;
use std::sync::Arc;

use crate::error::LayoutError;
#[cfg(not(numashm_loom))]
use crate::mem::ALIGN;
use crate::mem::MAX_CAPACITY;
#[cfg(not(numashm_loom))]
use crate::loom::sync::atomic::Ordering;
use crate::loom::sync::atomic::{AtomicU32, AtomicU64};

/// First word of a split ring's producer block: `b"nshmSPLT"` as a
/// little-endian `u64`.
///
/// # Examples
///
/// ```
/// assert_eq!(&numashm_ring::SPLIT_MAGIC.to_le_bytes(), b"nshmSPLT");
/// ```
pub const SPLIT_MAGIC: u64 = u64::from_le_bytes(*b"nshmSPLT");
/// Layout version of split ring blocks.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::SPLIT_LAYOUT_VERSION, 1);
/// ```
pub const SPLIT_LAYOUT_VERSION: u32 = 1;
/// Payload words per cell (each cell also has a stamp word).
///
/// # Examples
///
/// ```
/// let cell: [u64; numashm_ring::SPLIT_CELL_WORDS] = [1, 2, 3];
/// # let _ = cell;
/// ```
pub const SPLIT_CELL_WORDS: usize = 3;
/// Bytes of a consumer block (two 128-byte lines).
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::SPLIT_CONSUMER_BYTES, 256);
/// ```
pub const SPLIT_CONSUMER_BYTES: usize = 256;
/// Bytes in front of a producer block's cells (three 128-byte lines).
const HEADER_BYTES: usize = 384;
/// Bytes of one cell.
const CELL_BYTES: usize = 32;

/// Bytes a producer block of `capacity` cells needs (saturating at
/// `usize::MAX` for absurd capacities, which no constructor accepts).
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::split_producer_bytes(4), 384 + 4 * 32);
/// ```
pub const fn split_producer_bytes(capacity: usize) -> usize {
    capacity
        .saturating_mul(CELL_BYTES)
        .saturating_add(HEADER_BYTES)
}

/// Split rings take any power of two in `1..=MAX_CAPACITY`.
pub(crate) fn check_capacity(capacity: u64) -> Result<(), LayoutError> {
    if capacity == 0 || !capacity.is_power_of_two() || capacity > MAX_CAPACITY {
        return Err(LayoutError::Capacity(capacity));
    }
    Ok(())
}

#[repr(C, align(128))]
pub(crate) struct Meta {
    magic: AtomicU64,
    version: AtomicU32,
    _reserved: AtomicU32,
    capacity: AtomicU64,
}

#[repr(C, align(128))]
pub(crate) struct TailLine {
    pub(crate) tail: AtomicU64,
}

#[repr(C, align(128))]
pub(crate) struct ProducerBell {
    pub(crate) data_seq: AtomicU32,
    pub(crate) space_waiting: AtomicU32,
}

/// The three lines in front of a producer block's cells. Fields are crate
/// private: the block is read only through the split ring ends.
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::SplitProducerHeader>(), 384);
/// ```
#[repr(C)]
pub struct SplitProducerHeader {
    pub(crate) meta: Meta,
    pub(crate) tail: TailLine,
    pub(crate) bell: ProducerBell,
}

/// One cell: `[stamp, w0, w1, w2]`.
///
/// # Examples
///
/// ```
/// assert_eq!(std::mem::size_of::<numashm_ring::SplitCell>(), 32);
/// ```
#[repr(C, align(32))]
pub struct SplitCell {
    pub(crate) stamp: AtomicU64,
    pub(crate) words: [AtomicU64; SPLIT_CELL_WORDS],
}

#[repr(C, align(128))]
pub(crate) struct HeadLine {
    pub(crate) head: AtomicU64,
}

#[repr(C, align(128))]
pub(crate) struct ConsumerBell {
    pub(crate) parked: AtomicU32,
    pub(crate) space_seq: AtomicU32,
}

/// A consumer block: C's `head` line and its doorbell line.
///
/// # Examples
///
/// ```
/// use numashm_ring::{SplitConsumerBlock, SPLIT_CONSUMER_BYTES};
/// assert_eq!(std::mem::size_of::<SplitConsumerBlock>(), SPLIT_CONSUMER_BYTES);
/// ```
#[repr(C)]
pub struct SplitConsumerBlock {
    pub(crate) head: HeadLine,
    pub(crate) bell: ConsumerBell,
}

#[cfg(not(numashm_loom))]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<SplitProducerHeader>() == HEADER_BYTES);
    assert!(align_of::<SplitProducerHeader>() == ALIGN);
    assert!(offset_of!(SplitProducerHeader, tail) == 128);
    assert!(offset_of!(SplitProducerHeader, bell) == 256);
    assert!(offset_of!(Meta, capacity) == 16);
    assert!(size_of::<SplitCell>() == CELL_BYTES);
    assert!(size_of::<SplitConsumerBlock>() == SPLIT_CONSUMER_BYTES);
    assert!(align_of::<SplitConsumerBlock>() == ALIGN);
    assert!(offset_of!(SplitConsumerBlock, bell) == 128);
};

impl SplitProducerHeader {
    fn new(capacity: u64, magic: u64) -> Self {
        SplitProducerHeader {
            meta: Meta {
                magic: AtomicU64::new(magic),
                version: AtomicU32::new(SPLIT_LAYOUT_VERSION),
                _reserved: AtomicU32::new(0),
                capacity: AtomicU64::new(capacity),
            },
            tail: TailLine {
                tail: AtomicU64::new(0),
            },
            bell: ProducerBell {
                data_seq: AtomicU32::new(0),
                space_waiting: AtomicU32::new(0),
            },
        }
    }
}

impl SplitCell {
    fn new() -> Self {
        SplitCell {
            stamp: AtomicU64::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

impl SplitConsumerBlock {
    fn new() -> Self {
        SplitConsumerBlock {
            head: HeadLine {
                head: AtomicU64::new(0),
            },
            bell: ConsumerBell {
                parked: AtomicU32::new(0),
                space_seq: AtomicU32::new(0),
            },
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Memory a split ring's blocks live in: [`HeapSplit`] or [`SharedSplit`].
///
/// Sealed: the ring ends rely on `cells()` having the validated capacity.
///
/// # Examples
///
/// ```
/// use numashm_ring::{SplitMemory, SplitProducer, SplitRing};
/// fn cap<M: SplitMemory>(tx: &SplitProducer<M>) -> usize { tx.capacity() }
/// assert_eq!(cap(&SplitRing::new(8)?.0), 8);
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
pub trait SplitMemory: sealed::Sealed + Send + Sync {
    /// The producer block's header lines.
    #[doc(hidden)]
    fn header(&self) -> &SplitProducerHeader;
    /// The producer block's cells (`capacity` of them).
    #[doc(hidden)]
    fn cells(&self) -> &[SplitCell];
    /// The consumer block, if attached.
    #[doc(hidden)]
    fn consumer_block(&self) -> Option<&SplitConsumerBlock>;
    /// Loom's stand-in for `data_seq`'s futex queue.
    #[cfg(numashm_loom)]
    #[doc(hidden)]
    fn data_futex(&self) -> &crate::split_bell::SplitFutex;
    /// Loom's stand-in for `space_seq`'s futex queue.
    #[cfg(numashm_loom)]
    #[doc(hidden)]
    fn space_futex(&self) -> &crate::split_bell::SplitFutex;
}

struct HeapProducerBlock {
    header: SplitProducerHeader,
    cells: Box<[SplitCell]>,
    #[cfg(numashm_loom)]
    futex: crate::split_bell::SplitFutex,
}

struct HeapConsumerBlock {
    block: SplitConsumerBlock,
    #[cfg(numashm_loom)]
    futex: crate::split_bell::SplitFutex,
}

/// A split ring's two blocks on the heap, in two separate allocations (as
/// they are in two memories when shared); both ends hold an `Arc` of each.
///
/// # Examples
///
/// ```
/// let (tx, _rx): (numashm_ring::SplitProducer<numashm_ring::HeapSplit>, _) =
///     numashm_ring::SplitRing::new(2)?;
/// assert_eq!(tx.capacity(), 2);
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
#[derive(Clone)]
pub struct HeapSplit {
    p: Arc<HeapProducerBlock>,
    c: Arc<HeapConsumerBlock>,
}

impl core::fmt::Debug for HeapSplit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapSplit")
            .field("cells", &self.p.cells.len())
            .finish()
    }
}

impl HeapSplit {
    pub(crate) fn new(capacity: u64) -> Result<Self, LayoutError> {
        check_capacity(capacity)?;
        let cells = (0..capacity).map(|_| SplitCell::new()).collect();
        Ok(HeapSplit {
            p: Arc::new(HeapProducerBlock {
                header: SplitProducerHeader::new(capacity, SPLIT_MAGIC),
                cells,
                #[cfg(numashm_loom)]
                futex: crate::split_bell::SplitFutex::new(),
            }),
            c: Arc::new(HeapConsumerBlock {
                block: SplitConsumerBlock::new(),
                #[cfg(numashm_loom)]
                futex: crate::split_bell::SplitFutex::new(),
            }),
        })
    }
}

impl sealed::Sealed for HeapSplit {}
impl SplitMemory for HeapSplit {
    #[inline(always)]
    fn header(&self) -> &SplitProducerHeader {
        &self.p.header
    }
    #[inline(always)]
    fn cells(&self) -> &[SplitCell] {
        &self.p.cells
    }
    #[inline(always)]
    fn consumer_block(&self) -> Option<&SplitConsumerBlock> {
        Some(&self.c.block)
    }
    #[cfg(numashm_loom)]
    fn data_futex(&self) -> &crate::split_bell::SplitFutex {
        &self.p.futex
    }
    #[cfg(numashm_loom)]
    fn space_futex(&self) -> &crate::split_bell::SplitFutex {
        &self.c.futex
    }
}

/// A split ring's blocks inside shared mappings, viewed at this process's
/// addresses. Made only by the `unsafe` constructors of the ring ends
/// ([`SplitProducer::init_shared`](crate::SplitProducer::init_shared),
/// [`SplitConsumer::attach_shared`](crate::SplitConsumer::attach_shared)),
/// whose contracts keep both ranges mapped while this value lives.
///
/// # Examples
///
/// ```
/// use core::ptr::NonNull;
/// use numashm_ring::{SharedSplit, SplitProducer};
/// #[repr(C, align(128))]
/// struct Buf([u8; 512]);
/// let mut buf = Buf([0; 512]);
/// let p = NonNull::new(buf.0.as_mut_ptr()).unwrap();
/// // SAFETY: buf outlives the producer and is used only through it.
/// let tx: SplitProducer<SharedSplit> = unsafe { SplitProducer::init_shared(p, 512, 4, None, 0)? };
/// assert_eq!(tx.capacity(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(numashm_loom))]
#[derive(Debug)]
pub struct SharedSplit {
    header: NonNull<SplitProducerHeader>,
    /// `n_cells` cells follow `HEADER_BYTES` after `header`, inside its range.
    cells: *const SplitCell,
    n_cells: usize,
    consumer: Option<NonNull<SplitConsumerBlock>>,
}

// SAFETY: 1. every access through the pointers is to atomics, so use from any
// thread (and process) is data-race free; 2. the constructors' contracts keep
// both ranges mapped while this value exists, whichever thread holds it.
#[cfg(not(numashm_loom))]
unsafe impl Send for SharedSplit {}
// SAFETY: as for `Send`: `&SharedSplit` only hands out `&` to atomics.
#[cfg(not(numashm_loom))]
unsafe impl Sync for SharedSplit {}

#[cfg(not(numashm_loom))]
impl sealed::Sealed for SharedSplit {}
#[cfg(not(numashm_loom))]
impl SplitMemory for SharedSplit {
    #[inline(always)]
    fn header(&self) -> &SplitProducerHeader {
        // SAFETY: 1. 128-aligned with HEADER_BYTES inside the range (checked
        // by the constructors); 2. only atomics, valid for any bits; 3. mapped
        // while `self` lives (constructor contract). A read-only mapping is
        // fine: the consumer only loads through it (lock-free loads of <= 8
        // bytes are allowed on read-only memory).
        unsafe { self.header.as_ref() }
    }
    #[inline(always)]
    fn cells(&self) -> &[SplitCell] {
        // SAFETY: 1. `cells` is 32-aligned and `n_cells * 32` bytes follow it
        // inside the range (checked by the constructors); 2.-3. as `header`.
        unsafe { core::slice::from_raw_parts(self.cells, self.n_cells) }
    }
    #[inline(always)]
    fn consumer_block(&self) -> Option<&SplitConsumerBlock> {
        // SAFETY: 1. 128-aligned with SPLIT_CONSUMER_BYTES inside its range
        // (checked by `check_consumer`); 2.-3. as `header` (the producer only
        // loads through it).
        self.consumer.map(|c| unsafe { &*c.as_ptr() })
    }
}

#[cfg(not(numashm_loom))]
fn check_aligned(ptr: NonNull<u8>) -> Result<(), LayoutError> {
    let addr = ptr.as_ptr() as usize;
    if addr % ALIGN != 0 {
        return Err(LayoutError::Misaligned { addr, align: ALIGN });
    }
    Ok(())
}

/// Checks a consumer block's range (alignment and length).
#[cfg(not(numashm_loom))]
pub(crate) fn check_consumer(
    ptr: NonNull<u8>,
    len: usize,
) -> Result<NonNull<SplitConsumerBlock>, LayoutError> {
    check_aligned(ptr)?;
    if len < SPLIT_CONSUMER_BYTES {
        return Err(LayoutError::TooSmall {
            needed: SPLIT_CONSUMER_BYTES,
            len,
        });
    }
    Ok(ptr.cast())
}

#[cfg(not(numashm_loom))]
impl SharedSplit {
    fn from_checked(base: NonNull<u8>, capacity: u64) -> Self {
        // `base + HEADER_BYTES` is inside the range (len checked by the
        // callers), so the add never wraps and keeps `base`'s provenance.
        let cells = base.as_ptr().wrapping_add(HEADER_BYTES).cast::<SplitCell>();
        SharedSplit {
            header: base.cast(),
            cells,
            n_cells: capacity as usize,
            consumer: None,
        }
    }

    pub(crate) fn set_consumer(&mut self, block: NonNull<SplitConsumerBlock>) {
        self.consumer = Some(block);
    }

    /// Writes a fresh producer block (zero tail, bells and cells; magic last).
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` is valid for reads and writes while the result lives,
    /// nobody else accesses it during this call, and afterwards it is only
    /// accessed atomically.
    pub(crate) unsafe fn init_producer(
        ptr: NonNull<u8>,
        len: usize,
        capacity: u64,
    ) -> Result<Self, LayoutError> {
        check_capacity(capacity)?;
        check_aligned(ptr)?;
        let needed = split_producer_bytes(capacity as usize);
        if len < needed {
            return Err(LayoutError::TooSmall { needed, len });
        }
        let mem = Self::from_checked(ptr, capacity);
        // SAFETY: 1. aligned and in bounds (checked above); 2. the caller
        // grants exclusive access during init; magic stays 0 until the
        // Release store below.
        unsafe {
            mem.header
                .as_ptr()
                .write(SplitProducerHeader::new(capacity, 0))
        };
        for i in 0..mem.n_cells {
            // SAFETY: i < n_cells and n_cells cells follow the header inside
            // the range (len >= needed); exclusive access as above.
            unsafe { mem.cells.cast_mut().add(i).write(SplitCell::new()) };
        }
        // SYNC split-init: header, bells and cells are written before the
        // magic; pairs with the Acquire load of the magic in `attach_producer`.
        mem.header()
            .meta
            .magic
            .store(SPLIT_MAGIC, Ordering::Release);
        Ok(mem)
    }

    /// Validates the producer block at `ptr` (magic, version, capacity, fits
    /// in `len`) and views it; never writes to it.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` is valid for reads while the result lives and is only
    /// ever accessed atomically.
    pub(crate) unsafe fn attach_producer(
        ptr: NonNull<u8>,
        len: usize,
    ) -> Result<Self, LayoutError> {
        check_aligned(ptr)?;
        if len < HEADER_BYTES {
            return Err(LayoutError::TooSmall {
                needed: HEADER_BYTES,
                len,
            });
        }
        // SAFETY: 1. aligned and HEADER_BYTES long (checked); 2. only
        // atomics, valid for any bits; 3. the caller keeps it mapped.
        let header: &SplitProducerHeader = unsafe { ptr.cast::<SplitProducerHeader>().as_ref() };
        // SYNC split-init: pairs with the Release store in `init_producer`.
        let magic = header.meta.magic.load(Ordering::Acquire);
        if magic != SPLIT_MAGIC {
            return Err(LayoutError::Magic(magic));
        }
        // Relaxed: ordered after the magic by its Acquire; written once.
        let version = header.meta.version.load(Ordering::Relaxed);
        if version != SPLIT_LAYOUT_VERSION {
            return Err(LayoutError::Version(version));
        }
        // Relaxed: as the version. Hostile: validated here, and only this
        // copy is used afterwards (the field is never read again).
        let capacity = header.meta.capacity.load(Ordering::Relaxed);
        check_capacity(capacity)?;
        let needed = split_producer_bytes(capacity as usize);
        if len < needed {
            return Err(LayoutError::TooSmall { needed, len });
        }
        Ok(Self::from_checked(ptr, capacity))
    }

    /// Zeroes a consumer block.
    ///
    /// # Safety
    ///
    /// As [`crate::init_consumer_block`].
    pub(crate) unsafe fn init_consumer(ptr: NonNull<u8>, len: usize) -> Result<(), LayoutError> {
        let block = check_consumer(ptr, len)?;
        // SAFETY: aligned and SPLIT_CONSUMER_BYTES long (checked); the caller
        // grants exclusive access during this call.
        unsafe { block.as_ptr().write(SplitConsumerBlock::new()) };
        Ok(())
    }
}

/// Number of cells a memory holds (fixed when it was made or validated).
pub(crate) fn capacity_of<M: SplitMemory>(mem: &M) -> u64 {
    mem.cells().len() as u64
}
