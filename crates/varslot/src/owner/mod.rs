//! The single-owner pool allocator: every word lives in the pool memory (so another
//! process can inspect it read-only and a successor could take the pool over), but only
//! one thread of one process, the owner, ever writes it. No read-modify-write, no CAS,
//! no lock: plain Relaxed loads and stores of `u64` words (atomic only because other
//! processes read them).
//!
//! - [`PoolMemory`]: the bytes (fixed base, grows in place); [`HeapPoolMemory`] on the
//!   heap for tests and miri, the facade's sealed region in production.
//! - [`OwnerAlloc`]: size classes with on-demand extents and intrusive LIFO free lists;
//!   dedicated extents for oversize requests; lending to up to 64 readers with a
//!   fan-out countdown; handles coming back are checked field by field.
//!
//! Layout and state machine: `docs/varslot.md`, "Single-owner pool allocator".

mod alloc;
mod census;
mod error;
mod grow;
mod layout;
mod memory;
mod returns;
mod view;
mod words;

pub use alloc::{GiveBack, OwnedSlot, OwnerAlloc};
pub use census::{ClassCensus, OwnerCensus};
pub use error::{CommitError, OwnerError, ReturnError};
pub use layout::{
    HandleParts, OwnerConfig, HANDLE_EXTENT_BITS, HANDLE_SLOT_BITS, MAX_OWNER_CLASSES,
    MAX_OWNER_EXTENTS, MAX_OWNER_SLOTS, OWNER_MAGIC, OWNER_VERSION,
};
pub use memory::{HeapPoolMemory, PoolMemory};
pub use view::{ExtentView, OwnerView, OwnerViewError};
