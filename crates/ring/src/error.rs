//! Typed errors of the ring layer. None of them allocates.

use thiserror::Error;

/// A shared index or cell sequence that no correct peer could have written.
///
/// The reader that meets it gets this error instead of touching memory out of
/// bounds, panicking or looping; the ring stays unusable until a recoverer
/// calls `reset`.
///
/// # Examples
///
/// ```
/// use numashm_ring::Corrupt;
/// let e = Corrupt::Indices { head: 10, tail: 3, capacity: 4 };
/// assert!(e.to_string().contains("head 10"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Corrupt {
    /// `tail - head` (wrapping) is larger than the capacity.
    #[error("ring indices impossible: head {head}, tail {tail}, capacity {capacity}")]
    Indices {
        /// Consumer index as read.
        head: u64,
        /// Producer index as read.
        tail: u64,
        /// Capacity of the ring (from the validated header).
        capacity: u64,
    },
    /// An MPMC cell's sequence number is not one a correct ring can hold at
    /// this position.
    #[error("ring cell sequence {seq} impossible at position {pos}")]
    Sequence {
        /// Position (enqueue or dequeue index) being worked on.
        pos: u64,
        /// Sequence number read from the cell.
        seq: u64,
    },
    /// A retry loop saw the shared index change more than
    /// [`MAX_RETRIES`](crate::MAX_RETRIES) times without completing: a peer
    /// keeps rewriting it.
    #[error("ring index kept changing for {retries} retries at position {pos}")]
    NoProgress {
        /// Last position tried.
        pos: u64,
        /// Retries made.
        retries: u32,
    },
}

/// Why a push did not happen.
///
/// # Examples
///
/// ```
/// use numashm_ring::{PushError, Spsc};
/// let (mut tx, _rx) = Spsc::new(1)?.split()?;
/// tx.push(7).unwrap();
/// assert_eq!(tx.push(8), Err(PushError::Full(8)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PushError {
    /// The ring is full; the value is handed back.
    #[error("ring full")]
    Full(u64),
    /// The ring's shared state is corrupt; the value is handed back too.
    #[error("{1}")]
    Corrupt(u64, #[source] Corrupt),
}

impl PushError {
    /// The value that was not pushed.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::PushError;
    /// assert_eq!(PushError::Full(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> u64 {
        match self {
            PushError::Full(v) | PushError::Corrupt(v, _) => v,
        }
    }
}

/// Why a pop returned nothing.
///
/// # Examples
///
/// ```
/// use numashm_ring::{PopError, Spsc};
/// let (_tx, mut rx) = Spsc::new(4)?.split()?;
/// assert_eq!(rx.pop(), Err(PopError::Empty));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PopError {
    /// Nothing to pop.
    #[error("ring empty")]
    Empty,
    /// The ring's shared state is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Why a ring or doorbell could not be created in, or attached to, memory.
///
/// # Examples
///
/// ```
/// use numashm_ring::{LayoutError, Spsc};
/// assert_eq!(Spsc::new(3).err(), Some(LayoutError::Capacity(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// The capacity is not a power of two, below the kind's minimum (1 for
    /// SPSC, 2 for MPMC) or above [`MAX_CAPACITY`](crate::MAX_CAPACITY).
    #[error("capacity {0} is not a power of two in 1..=2^32 (2..=2^32 for MPMC)")]
    Capacity(u64),
    /// The base pointer is not aligned to [`ALIGN`](crate::ALIGN) bytes.
    #[error("base address {addr:#x} is not {align}-byte aligned")]
    Misaligned {
        /// The address given.
        addr: usize,
        /// The alignment required.
        align: usize,
    },
    /// The byte range is too short for the layout.
    #[error("{needed} bytes needed, {len} given")]
    TooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
    /// The header's magic number is wrong (not initialised, or not a ring).
    #[error("bad magic {0:#x}")]
    Magic(u64),
    /// The header has a layout version this build does not read.
    #[error("unsupported layout version {0}")]
    Version(u32),
    /// The header describes another kind of ring.
    #[error("ring kind {found} found, {expected} expected")]
    Kind {
        /// Kind wanted (1 = SPSC, 2 = MPMC).
        expected: u32,
        /// Kind in the header.
        found: u32,
    },
}

/// Why waiting on a doorbell ended without the condition.
///
/// # Examples
///
/// ```
/// use numashm_ring::{Doorbell, WaitError};
/// use std::time::Duration;
/// let bell = Doorbell::new();
/// # if cfg!(miri) { return; }
/// assert_eq!(bell.wait_for(|| None::<()>, Some(Duration::from_millis(1))), Err(WaitError::TimedOut));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WaitError {
    /// The timeout passed first.
    #[error("timed out")]
    TimedOut,
    /// `futex(FUTEX_WAIT_BITSET)` or `clock_gettime` failed unexpectedly.
    #[error("{op} failed: {errno}")]
    Sys {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        errno: rustix::io::Errno,
    },
}

/// A system call of the doorbell or eventfd layer failed.
///
/// # Examples
///
/// ```
/// use numashm_ring::SysError;
/// let e = SysError { op: "futex(FUTEX_WAKE)", errno: rustix::io::Errno::FAULT };
/// assert!(e.to_string().starts_with("futex"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{op} failed: {errno}")]
pub struct SysError {
    /// The call that failed.
    pub op: &'static str,
    /// Its errno.
    pub errno: rustix::io::Errno,
}
