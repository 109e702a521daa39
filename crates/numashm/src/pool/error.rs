//! Errors of the pool layer: each names what was wrong, none allocates on the hot path.

use numashm_region::RegionError;

/// Why a pool operation failed.
///
/// # Examples
///
/// ```
/// let e = numashm::pool::PoolError::Full { what: "peer table", max: 8 };
/// assert_eq!(e.to_string(), "peer table is full (8)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The memory layer failed (mapping, sealing, growth, placement, opening a peer's pool).
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A value read from memory another process writes is out of its domain.
    #[error("{what}: corrupt {field} ({value:#x})")]
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A table is full.
    #[error("{what} is full ({max})")]
    Full {
        /// Which table.
        what: &'static str,
        /// Its size.
        max: usize,
    },
    /// Our rendezvous entry's lock (the kernel-held proof that we live) could
    /// not be taken: `/proc/self/fd` could not be opened or `fcntl` refused.
    #[error("rendezvous entry lock: {0}")]
    EntryLock(std::io::Error),
    /// The channel index is not below [`crate::pool::MAX_CHANNELS`].
    #[error("no channel {0}")]
    NoSuchChannel(usize),
    /// Another live peer consumes this channel (`None`: the word kept changing).
    #[error("channel {channel} is consumed by peer {peer:?}")]
    ChannelTaken {
        /// The channel.
        channel: usize,
        /// The entry holding it.
        peer: Option<u32>,
    },
    /// A configuration value is out of range.
    #[error("config: {field}: {detail}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// Why.
        detail: &'static str,
    },
    /// The owner allocator refused.
    #[error("allocator: {0}")]
    Alloc(#[from] numashm_varslot::OwnerError),
    /// A ring block's header does not describe a ring that fits.
    #[error("ring: {0}")]
    RingLayout(#[from] numashm_ring::LayoutError),
    /// A ring end could not be attached.
    #[error("ring: {0}")]
    RingAttach(#[from] numashm_ring::SplitAttachError),
    /// A ring index another process writes is out of its domain.
    #[error("ring: {0}")]
    RingCorrupt(#[from] numashm_ring::SplitCorrupt),
    /// The pool's ownership descriptor refused or is corrupt.
    #[error("ownership: {0}")]
    Ownership(#[from] numashm_ownership::DescriptorError),
    /// Handing the pool to a successor failed at `step` (`Peer::hand_over`);
    /// the pool is still the caller's.
    #[error("hand-over: {step}: {detail}")]
    Handover {
        /// What failed: `fork`, `successor ready`, `transfer`, `successor done`, ...
        step: &'static str,
        /// Why.
        detail: String,
    },
}

/// Why a message could not be allocated, sent or received.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm::pool::ChannelError::Empty.to_string(), "nothing to receive");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Nothing waiting (non-blocking receive).
    #[error("nothing to receive")]
    Empty,
    /// The ring is full: the consumer lags (the message is handed back).
    #[error("the ring is full")]
    Full,
    /// A deadline passed.
    #[error("timed out")]
    TimedOut,
    /// The allocator refused (the pool is at its maximum, or the size can never fit).
    #[error("allocator: {0}")]
    Alloc(#[from] numashm_varslot::OwnerError),
    /// Our allocator refused a handle operation (a bug in the caller's use of it).
    #[error("handle: {0}")]
    Handle(#[from] numashm_varslot::ReturnError),
    /// A peer's memory says something impossible; the message is dropped, nothing else is lost.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The payload length asked is larger than the slot.
    #[error("length {len} exceeds the capacity {cap}")]
    BadLength {
        /// Asked.
        len: usize,
        /// Slot capacity.
        cap: usize,
    },
}
