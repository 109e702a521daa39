//! Error types, one small enum per operation. None allocates.

use crate::memory::MemoryError;

/// Why creating an allocator failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, CreateError, HeapAllocator};
/// let e = HeapAllocator::new(&Config::new()).unwrap_err();
/// assert!(matches!(e, CreateError::Config { field: "class_count", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The configuration is invalid: `field` of class `class`.
    #[error("invalid configuration: {field} (class {class})")]
    Config {
        /// The offending field.
        field: &'static str,
        /// The class index it belongs to (0 for global fields).
        class: usize,
    },
    /// The memory (or word array) is smaller than the layout needs.
    #[error("memory too small: {needed} bytes needed, {available} available")]
    TooSmall {
        /// Bytes (or words, for the word array) needed.
        needed: usize,
        /// Bytes (or words) available.
        available: usize,
    },
    /// The memory refused to grow or place the initial extents.
    #[error(transparent)]
    Grow(#[from] GrowError),
    /// The memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Why attaching to an existing segment failed: the first bad field found.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{AttachError, HeapMemory, SharedAllocator, SegmentMemory};
/// let mem = HeapMemory::new(1 << 16).unwrap();
/// mem.grow_to(1 << 16).unwrap(); // all zero: no magic
/// let e = SharedAllocator::attach(mem).unwrap_err();
/// assert!(matches!(e, AttachError::BadField { field: "magic", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// A header, class-table or extent-table field holds an impossible value.
    #[error("bad segment field {field} (class/extent {at}): found {found:#x}")]
    BadField {
        /// The field (`"magic"`, `"version"`, `"class.slot_size"`, `"extent.offset"`...).
        field: &'static str,
        /// The class index, or `class * max_extents + extent` for extent fields; 0 for
        /// header fields.
        at: usize,
        /// The value found.
        found: u64,
    },
    /// The memory failed (mapping what the owner grew).
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Why `alloc` failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{AllocError, Config, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
/// assert!(matches!(a.alloc(65, 0), Err(AllocError::TooLarge { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No class is that large.
    #[error("{len} bytes is more than the largest class ({max})")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Largest slot size.
        max: usize,
    },
    /// Every published extent of the class is full; the class's bit in the grow-request
    /// word has been set for the owner.
    #[error("class {class} is exhausted (growth requested)")]
    Exhausted {
        /// The class.
        class: usize,
    },
    /// Shared metadata is corrupt (a free list points at a slot that is not free).
    #[error("corrupt segment: {what}")]
    Corrupt {
        /// What was found corrupt.
        what: &'static str,
    },
}

/// Why an operation on a [`crate::Handle`] failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HandleError, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
/// let h = a.alloc(1, 0).unwrap();
/// a.free(h).unwrap();
/// assert_eq!(a.free(h), Err(HandleError::Stale));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// A field of the handle is out of range for this segment.
    #[error("handle {field} out of range")]
    Invalid {
        /// `"class"`, `"extent"` or `"slot"`.
        field: &'static str,
    },
    /// The slot has been freed (and maybe reused) since: stale handle or double free.
    #[error("stale handle (slot freed since; double free?)")]
    Stale,
    /// The slot is not in the state this operation needs (e.g. `take` of an Allocated slot).
    #[error("slot is {found:?}, operation needs another state")]
    WrongState {
        /// The state found.
        found: SlotState,
    },
    /// The slot lies beyond what this process has mapped, even after a refresh.
    #[error("slot not mapped in this process")]
    NotMapped,
    /// Shared metadata is corrupt.
    #[error("corrupt segment: {what}")]
    Corrupt {
        /// What was found corrupt.
        what: &'static str,
    },
    /// Refreshing the mapping failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A slot's state in its metadata word.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HeapAllocator, SlotState};
/// let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
/// let h = a.alloc(1, 0).unwrap();
/// assert_eq!(a.state(h), Ok((SlotState::Allocated, 0)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotState {
    /// On (or being put on) a free list.
    Free,
    /// Owned by a peer.
    Allocated,
    /// Handed to a peer through a ring; owned by the receiver.
    InFlight,
}

/// Why growing (or recommitting) a class failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, GrowError, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 1).max_extents(1)).unwrap();
/// assert_eq!(a.grow(0, None), Err(GrowError::Full { class: 0 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrowError {
    /// Only the process that created the segment may grow it.
    #[error("only the owner may grow the segment")]
    NotOwner,
    /// No such class.
    #[error("no class {class}")]
    NoClass {
        /// The class index asked for.
        class: usize,
    },
    /// The class already has its maximum number of extents.
    #[error("class {class} has its maximum number of extents")]
    Full {
        /// The class.
        class: usize,
    },
    /// The segment's maximum length leaves no room for another extent.
    #[error("segment full: extent would end at {end}, max_len {max_len}")]
    OutOfSpace {
        /// Where the extent would end.
        end: usize,
        /// The segment's maximum length.
        max_len: usize,
    },
    /// The memory failed to grow or place.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Why `release_extent` failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HeapAllocator, ReleaseError};
/// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
/// let _h = a.alloc(1, 0).unwrap();
/// assert_eq!(a.release_extent(0, 0), Err(ReleaseError::NotEmpty));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// Only the owner releases extents.
    #[error("only the owner may release extents")]
    NotOwner,
    /// No such class or extent.
    #[error("no such class or extent")]
    NoExtent,
    /// Some slot is not free (or is being freed right now).
    #[error("extent not empty")]
    NotEmpty,
    /// Already released.
    #[error("extent already released")]
    AlreadyReleased,
    /// The memory refused.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}
