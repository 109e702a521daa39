//! The `unsafe` constructors that lay split ring ends over shared mappings.
//! Kept apart so the algorithms (`split`, `split_bell`) stay free of `unsafe`.
//!
//! Contracts common to every function here (each `# Safety` refers to them):
//!
//! - **Alignment and size** are checked (128-byte aligned bases, lengths at
//!   least what the layout needs); a violation is a [`LayoutError`].
//! - **Lifetime**: each range stays mapped (readable; writable where this
//!   side writes it) for as long as the returned end lives.
//! - **One writer per block**: the producer block is written only by the
//!   producer end (and its `init_shared`), the consumer block only by the
//!   consumer end (and `init_consumer_block`). The other side may map it
//!   read-only: this crate only ever loads through that view.
//! - **Atomic access only**: nobody reads or writes the ranges non-atomically
//!   while ends exist (init functions need exclusive access while they run).
#![allow(unsafe_code)]

use core::ptr::NonNull;

use crate::error::LayoutError;
use crate::split::{checked_head, SplitConsumer, SplitProducer};
use crate::split_error::SplitAttachError;
use crate::split_mem::{check_consumer, SharedSplit, SplitMemory};
use crate::loom::sync::atomic::Ordering;

/// Zeroes a consumer block (`head` 0, not parked, `space_seq` 0) at `ptr`.
///
/// # Safety
///
/// - `ptr..ptr+len` is valid for writes and nobody else accesses it while
///   this runs (the producer attaches afterwards).
/// - Afterwards the range is accessed only atomically, written only by the
///   consumer end (see the module contract).
///
/// # Errors
///
/// [`LayoutError::Misaligned`] unless `ptr` is 128-byte aligned;
/// [`LayoutError::TooSmall`] if `len < SPLIT_CONSUMER_BYTES`.
///
/// # Examples
///
/// ```
/// use core::ptr::NonNull;
/// #[repr(C, align(128))]
/// struct Buf([u8; 256]);
/// let mut buf = Buf([0xff; 256]);
/// let p = NonNull::new(buf.0.as_mut_ptr()).unwrap();
/// // SAFETY: buf is ours and used only through split ring ends afterwards.
/// unsafe { numashm_ring::init_consumer_block(p, 256)? };
/// assert_eq!(buf.0[0], 0);
/// # Ok::<(), numashm_ring::LayoutError>(())
/// ```
pub unsafe fn init_consumer_block(ptr: NonNull<u8>, len: usize) -> Result<(), LayoutError> {
    // SAFETY: the caller's obligations are `init_consumer`'s.
    unsafe { SharedSplit::init_consumer(ptr, len) }
}

impl SplitProducer<SharedSplit> {
    /// Writes a fresh producer block of `capacity` cells at `producer_block`
    /// (tail 0, every stamp 0, magic last) and returns its producer end,
    /// optionally viewing the consumer block at once (else see
    /// [`attach_consumer`](Self::attach_consumer); until then the head is
    /// taken as 0, so `capacity` cells can be pushed).
    ///
    /// # Safety
    ///
    /// - `producer_block..+producer_len` is valid for reads and writes while
    ///   the end lives, nobody else accesses it during this call, and
    ///   afterwards only this end writes it (others may read it, atomically).
    /// - `consumer_block..+consumer_len`, if given, is valid for reads while
    ///   the end lives (a read-only mapping is enough) and is only accessed
    ///   atomically; this end never writes it.
    ///
    /// # Errors
    ///
    /// [`SplitAttachError::Layout`] for a bad capacity, alignment or length;
    /// [`SplitAttachError::Corrupt`] if the consumer block's head is not 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use numashm_ring::{init_consumer_block, SplitConsumer, SplitProducer};
    /// #[repr(C, align(128))]
    /// struct Buf<const N: usize>([u8; N]);
    /// let (mut pb, mut cb) = (Buf([0u8; 512]), Buf([0u8; 256]));
    /// let p = NonNull::new(pb.0.as_mut_ptr()).unwrap();
    /// let c = NonNull::new(cb.0.as_mut_ptr()).unwrap();
    /// // SAFETY: both buffers outlive the ends and are used only through them;
    /// // each block is written by its own end only.
    /// let (mut tx, mut rx) = unsafe {
    ///     init_consumer_block(c, 256)?;
    ///     let tx = SplitProducer::init_shared(p, 512, 4, Some(c), 256)?;
    ///     (tx, SplitConsumer::attach_shared(p, 512, c, 256, 0)?)
    /// };
    /// tx.push([1, 2, 3])?;
    /// assert_eq!(rx.pop()?, Some([1, 2, 3]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn init_shared(
        producer_block: NonNull<u8>,
        producer_len: usize,
        capacity: usize,
        consumer_block: Option<NonNull<u8>>,
        consumer_len: usize,
    ) -> Result<Self, SplitAttachError> {
        // SAFETY: the caller's obligations on the producer range are
        // `init_producer`'s.
        let mem =
            unsafe { SharedSplit::init_producer(producer_block, producer_len, capacity as u64)? };
        let mut end = Self::from_mem(mem, 0);
        if let Some(c) = consumer_block {
            // SAFETY: the caller's obligations on the consumer range are
            // `attach_consumer`'s.
            unsafe { end.attach_consumer(c, consumer_len)? };
        }
        Ok(end)
    }

    /// Views the consumer's block (read-only for us) and validates its head
    /// against our tail; from now on pushes wait for the consumer to make
    /// room, and `notify` wakes it. Replaces a consumer block attached before.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` is valid for reads while this end lives (a read-only
    /// mapping is enough) and is only accessed atomically; only the consumer
    /// end writes it.
    ///
    /// # Errors
    ///
    /// [`SplitAttachError::Layout`] for bad alignment or length;
    /// [`SplitAttachError::Corrupt`] unless `head <= tail` and
    /// `tail - head <= capacity` (the end is unchanged then).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use numashm_ring::{init_consumer_block, SplitProducer};
    /// #[repr(C, align(128))]
    /// struct Buf<const N: usize>([u8; N]);
    /// let (mut pb, mut cb) = (Buf([0u8; 512]), Buf([0u8; 256]));
    /// let p = NonNull::new(pb.0.as_mut_ptr()).unwrap();
    /// let c = NonNull::new(cb.0.as_mut_ptr()).unwrap();
    /// // SAFETY: both buffers outlive the producer and are used only through ends.
    /// unsafe {
    ///     let mut tx = SplitProducer::init_shared(p, 512, 4, None, 0)?;
    ///     tx.push([1, 2, 3])?; // before any consumer exists
    ///     init_consumer_block(c, 256)?;
    ///     tx.attach_consumer(c, 256)?;
    ///     assert_eq!(tx.free_space()?, 3);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn attach_consumer(
        &mut self,
        ptr: NonNull<u8>,
        len: usize,
    ) -> Result<(), SplitAttachError> {
        let block = check_consumer(ptr, len)?;
        // SAFETY: aligned and SPLIT_CONSUMER_BYTES long (checked); the caller
        // keeps it mapped and accessed atomically; we only load from it.
        let view = unsafe { block.as_ref() };
        // SYNC split-release: as in `refresh_head`.
        let head = view.head.head.load(Ordering::Acquire);
        let head = checked_head(head, self.tail, self.capacity)?;
        self.mem.set_consumer(block);
        self.cached_head = head;
        Ok(())
    }
}

impl SplitConsumer<SharedSplit> {
    /// The consumer end over the producer block at `producer_block` (which
    /// this end only reads: a read-only mapping is enough) and its own
    /// consumer block, starting at position `start` (normally 0; the
    /// position after the last cell a previous consumer popped when one
    /// takes over). Validates the producer header once (magic, version,
    /// capacity a power of two, the block fits `producer_len`) and stores
    /// `start` as the head.
    ///
    /// # Safety
    ///
    /// - `producer_block..+producer_len` is valid for reads while the end
    ///   lives and only accessed atomically; this end never writes it.
    /// - `consumer_block..+consumer_len` is valid for reads and writes while
    ///   the end lives, is initialised by [`init_consumer_block`] (or by an
    ///   earlier consumer end), only accessed atomically, and written by no
    ///   other live consumer end.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] for a bad alignment, length, magic, version or
    /// capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use numashm_ring::{LayoutError, SplitConsumer};
    /// #[repr(C, align(128))]
    /// struct Buf<const N: usize>([u8; N]);
    /// let (mut pb, mut cb) = (Buf([0u8; 512]), Buf([0u8; 256]));
    /// let p = NonNull::new(pb.0.as_mut_ptr()).unwrap();
    /// let c = NonNull::new(cb.0.as_mut_ptr()).unwrap();
    /// // SAFETY: both buffers outlive the call and are used only through ends.
    /// let r = unsafe { SplitConsumer::attach_shared(p, 512, c, 256, 0) };
    /// assert!(matches!(r, Err(LayoutError::Magic(0)))); // no producer block yet
    /// ```
    pub unsafe fn attach_shared(
        producer_block: NonNull<u8>,
        producer_len: usize,
        consumer_block: NonNull<u8>,
        consumer_len: usize,
        start: u64,
    ) -> Result<Self, LayoutError> {
        let block = check_consumer(consumer_block, consumer_len)?;
        // SAFETY: the caller's obligations on the producer range are
        // `attach_producer`'s.
        let mut mem = unsafe { SharedSplit::attach_producer(producer_block, producer_len)? };
        mem.set_consumer(block);
        // Our own word, written only by consumer ends: any value is a valid
        // starting copy. Relaxed: it publishes nothing to us.
        let space_seq = mem
            .consumer_block()
            .map_or(0, |b| b.bell.space_seq.load(Ordering::Relaxed));
        Ok(Self::from_mem(mem, start, space_seq))
    }
}
