//! Typed errors of the split SPSC ring ([`crate::split`]) and its doorbell.

use thiserror::Error;

use crate::error::{LayoutError, SysError};

/// A value in the peer's block that no correct peer could have written.
///
/// The side that reads it gets this error instead of touching memory out of
/// bounds, overflowing or looping; each variant names the field.
///
/// # Examples
///
/// ```
/// use numashm_ring::SplitCorrupt;
/// let e = SplitCorrupt::Head { head: 9, tail: 3, capacity: 4 };
/// assert!(e.to_string().contains("head 9"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SplitCorrupt {
    /// The consumer block's `head` is above the producer's tail, or more
    /// than `capacity` below it.
    #[error(
        "consumer block field `head` impossible: head {head}, tail {tail}, capacity {capacity}"
    )]
    Head {
        /// `head` as read from the consumer's block.
        head: u64,
        /// The producer's own (trusted) tail.
        tail: u64,
        /// Capacity of the ring.
        capacity: u64,
    },
    /// A cell's `stamp` is past the consumer's position: the producer (or a
    /// stale ring) claims a push the consumer's head never made room for.
    #[error("producer cell field `stamp` impossible: stamp {stamp} at position {pos}")]
    Stamp {
        /// The consumer's position (the cell it was about to read).
        pos: u64,
        /// The stamp read from that cell.
        stamp: u64,
    },
}

/// Why [`SplitProducer::push`](crate::SplitProducer::push) did not push (or,
/// for `Wake`, pushed but could not wake the consumer).
///
/// # Examples
///
/// ```
/// use numashm_ring::{SplitPushError, SplitRing};
/// let (mut tx, _rx) = SplitRing::new(1)?;
/// tx.push([1, 2, 3])?;
/// assert_eq!(tx.push([4, 5, 6]), Err(SplitPushError::Full));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SplitPushError {
    /// The ring is full (the caller still has its `Copy` cell).
    #[error("split ring full")]
    Full,
    /// The consumer's block holds an impossible head; nothing was pushed.
    #[error(transparent)]
    Corrupt(#[from] SplitCorrupt),
    /// Only from `push_notify`: the cell WAS pushed, but `FUTEX_WAKE` failed.
    #[error("pushed, but waking the consumer failed: {0}")]
    Wake(#[source] SysError),
}

/// Why a split ring end could not be made over, or attached to, memory.
///
/// # Examples
///
/// ```
/// use numashm_ring::{LayoutError, SplitAttachError};
/// let e = SplitAttachError::from(LayoutError::Capacity(3));
/// assert!(matches!(e, SplitAttachError::Layout(LayoutError::Capacity(3))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SplitAttachError {
    /// Alignment, size, magic, version or capacity is wrong.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The consumer block's head does not fit the producer's tail.
    #[error(transparent)]
    Corrupt(#[from] SplitCorrupt),
}

/// Why a split-ring wait ended without its condition.
///
/// # Examples
///
/// ```
/// use numashm_ring::{SplitRing, SplitWaitError};
/// # if cfg!(miri) { return Ok(()); }
/// let (_tx, mut rx) = SplitRing::new(4)?;
/// let now = std::time::Instant::now();
/// assert_eq!(rx.wait(Some(now)), Err(SplitWaitError::TimedOut));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SplitWaitError {
    /// The deadline passed first.
    #[error("timed out")]
    TimedOut,
    /// The peer's block holds an impossible value.
    #[error(transparent)]
    Corrupt(#[from] SplitCorrupt),
    /// `futex` failed unexpectedly.
    #[error(transparent)]
    Sys(#[from] SysError),
}
