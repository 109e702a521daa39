//! Errors of the facade.

use numashm_region::RegionError;
use numashm_ring::{Corrupt, LayoutError, SysError, WaitError};
use numashm_varslot::{AllocError, AttachError, CreateError, GrowError, HandleError};

/// Everything that can go wrong with a segment.
///
/// # Examples
///
/// ```
/// use numashm::{SegmentConfig, SegmentError, Segment};
/// let err = Segment::create(SegmentConfig::anonymous("doc").size(0)).unwrap_err();
/// assert!(matches!(err, SegmentError::Config { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The region layer failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The configuration is impossible.
    #[error("invalid segment configuration: {field}: {detail}")]
    Config {
        /// The offending setting.
        field: &'static str,
        /// Why.
        detail: String,
    },
    /// The segment header (or a table it points to) is inconsistent.
    #[error("corrupt segment: field `{field}`: {detail}")]
    Corrupt {
        /// The first bad field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The allocator could not be created.
    #[error("allocator: {0}")]
    AllocatorCreate(#[from] CreateError),
    /// The allocator in the segment is invalid.
    #[error("allocator: {0}")]
    AllocatorAttach(#[from] AttachError),
    /// A ring's layout is invalid.
    #[error("ring: {0}")]
    RingLayout(#[from] LayoutError),
    /// A ring's indices are corrupt.
    #[error("ring: {0}")]
    RingCorrupt(#[from] Corrupt),
    /// Every peer slot is taken.
    #[error("all {max} peer slots are taken; detach idle peers or create the segment with more (SegmentConfig::max_peers)")]
    PeersFull {
        /// The segment's peer capacity.
        max: u32,
    },
    /// A ring index does not exist.
    #[error("ring {ring} does not exist (the segment has {count})")]
    NoSuchRing {
        /// Asked for.
        ring: usize,
        /// Rings in the segment.
        count: usize,
    },
    /// The ring end is held by another live peer.
    #[error("ring {ring}'s {end} end is held by peer {peer}")]
    EndTaken {
        /// The ring.
        ring: usize,
        /// "producer" or "consumer".
        end: &'static str,
        /// Who holds it.
        peer: u32,
    },
    /// A system call failed.
    #[error("{op} failed: {errno}")]
    Sys {
        /// The operation.
        op: &'static str,
        /// The errno.
        errno: rustix::io::Errno,
    },
    /// The process to act on does not exist or is not attached.
    #[error("process {pid} is not an attached peer")]
    NotAttached {
        /// The pid.
        pid: u32,
    },
    /// A live peer held the sweep word longer than any sweep takes (a sweep
    /// runs only while its peer is alone; a peer that keeps the word is stuck
    /// or hostile): attach gives up instead of waiting without end.
    #[error("peer {holder} has held the sweep word for {waited_ms} ms")]
    SweepStuck {
        /// The word's value (peer id + 1 of the holder, as written).
        holder: u64,
        /// How long attach waited.
        waited_ms: u64,
    },
}

impl From<SysError> for SegmentError {
    fn from(e: SysError) -> Self {
        SegmentError::Sys { op: e.op, errno: e.errno }
    }
}

/// Errors of the message path.
///
/// # Examples
///
/// ```
/// use numashm::MessageError;
/// let e = MessageError::Empty;
/// assert_eq!(e.to_string(), "no message available");
/// ```
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// Allocation failed (too large, or the class is exhausted: the owner was asked to grow it).
    #[error("alloc: {0}")]
    Alloc(#[from] AllocError),
    /// A handle was stale, invalid or corrupt.
    #[error("handle: {0}")]
    Handle(#[from] HandleError),
    /// The ring's shared indices are corrupt.
    #[error("ring: {0}")]
    Ring(#[from] Corrupt),
    /// Nothing to receive (non-blocking receive).
    #[error("no message available")]
    Empty,
    /// The ring is full (the message is handed back in [`crate::SendError`]).
    #[error("ring full (the consumer lags)")]
    Full,
    /// A message's length is larger than its slot (written by a hostile peer).
    #[error("message length {len} exceeds its slot ({cap} bytes)")]
    BadLength {
        /// The length found.
        len: u64,
        /// The slot's payload capacity.
        cap: usize,
    },
    /// The wait timed out.
    #[error("timed out")]
    TimedOut,
    /// Waiting failed.
    #[error("wait: {0}")]
    Wait(String),
    /// The allocator could not grow.
    #[error("grow: {0}")]
    Grow(String),
}

impl From<WaitError> for MessageError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::TimedOut => MessageError::TimedOut,
            other => MessageError::Wait(other.to_string()),
        }
    }
}

impl From<GrowError> for MessageError {
    fn from(e: GrowError) -> Self {
        MessageError::Grow(e.to_string())
    }
}
