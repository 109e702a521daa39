//! Error types of the single-owner pool allocator. All are `Copy` and allocate nothing,
//! so the return path (hostile handles from readers) never allocates.

/// Why a [`crate::PoolMemory::commit`] failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{CommitError, HeapPoolMemory, PoolMemory};
/// let m = HeapPoolMemory::new(4096).unwrap();
/// assert!(matches!(m.commit(8192), Err(CommitError::BeyondReserved { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The requested length is beyond the reservation.
    #[error("commit of {len} bytes is beyond the reservation of {reserved}")]
    BeyondReserved {
        /// Bytes asked for.
        len: usize,
        /// The memory's reserved size.
        reserved: usize,
    },
    /// The operating system (or allocator) refused.
    #[error("{op} failed: errno {errno}")]
    Os {
        /// The call that failed (`"ftruncate"`, `"alloc"`, ...).
        op: &'static str,
        /// The raw errno.
        errno: i32,
    },
}

/// Why creating an [`crate::OwnerAlloc`] or allocating from it failed.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, OwnerError};
/// let mem = HeapPoolMemory::new(1 << 20).unwrap();
/// let e = OwnerAlloc::create(mem, 64, &OwnerConfig::default()).unwrap_err();
/// assert_eq!(e, OwnerError::Misaligned { at: 64 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// The configuration is invalid: `field` (`"classes"`, `"extent_bytes"`,
    /// `"max_extents"`, or `"at"` when the tables would end past `usize::MAX`).
    #[error("invalid owner configuration: {field}")]
    Config {
        /// The offending field.
        field: &'static str,
    },
    /// `at` is not a multiple of 128.
    #[error("allocator offset {at} is not 128-aligned")]
    Misaligned {
        /// The offset given.
        at: usize,
    },
    /// The reservation cannot even hold the header and tables.
    #[error("pool too small: the tables end at {needed}, reservation is {reserved}")]
    TooSmall {
        /// Byte offset where the tables end.
        needed: usize,
        /// The memory's reserved size.
        reserved: usize,
    },
    /// `len` can never fit: a dedicated extent for it is larger than all the room after
    /// the tables.
    #[error("{len} bytes can never fit this pool (at most {max})")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// The largest dedicated slot an empty pool could hold.
        max: usize,
    },
    /// No free slot in class `class`, and growing was not allowed or not possible (no
    /// extent left, or the reservation is full). `class` equals the number of classes
    /// for dedicated (oversize) extents.
    #[error("class {class} is exhausted")]
    Exhausted {
        /// The class (the class count for oversize requests).
        class: usize,
    },
    /// The memory refused to commit a new extent.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The owner's own tables are inconsistent (a bug: only the owner writes them).
    #[error("owner tables corrupt: {what}")]
    Corrupt {
        /// What was found wrong.
        what: &'static str,
    },
}

/// Why a handle operation (`free`, `lend`, `give_back`, `take_back`, `slot_ptr`) was
/// refused. Returned handles are hostile input: each refusal names what was wrong and
/// changes nothing.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig, ReturnError};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// assert_eq!(a.free(0), Err(ReturnError::Invalid { field: "generation" }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    /// A field of the handle (`"generation"`, `"extent"`, `"slot"`), the reader id
    /// (`"reader"`), the reader mask (`"readers"`) or a slot's offset (`"offset"`) is
    /// out of range.
    #[error("invalid {field}")]
    Invalid {
        /// The offending field.
        field: &'static str,
    },
    /// The generation does not match the slot's, or the slot is free: the handle is not
    /// live (a stale handle, a double free or return, or a forgery).
    #[error("stale handle")]
    Stale,
    /// The slot is lent, so the owner may not free or lend it again (take it back first).
    #[error("slot is lent, not owned")]
    NotOwned,
    /// The slot is owned, not lent: there is nothing to give or take back.
    #[error("slot is not lent")]
    NotLent,
    /// The slot is lent, but not (or no longer) to this reader.
    #[error("slot is not lent to reader {reader}")]
    NotLentTo {
        /// The reader that tried to give it back.
        reader: u32,
    },
    /// The owner's own tables are inconsistent (a bug: only the owner writes them).
    #[error("owner tables corrupt: {what}")]
    Corrupt {
        /// What was found wrong.
        what: &'static str,
    },
}
