//! Lock-free variable-slot allocator for shared memory segments.
//!
//! A segment holds a small control area (header, size-class table, extent table, one
//! metadata word per slot) and extents: runs of equal slots, each extent with its own
//! Treiber free list. `alloc`, `free` and `resolve` are lock-free, make no system call
//! and allocate nothing; every word read from the segment is treated as hostile.
//!
//! The algorithm is written once over two abstractions:
//! - [`Words`]: where the atomic control words live: [`HeapWords`] (loom, miri, tests)
//!   or [`SegmentWords`] (inside the segment, shared by processes);
//! - [`SegmentMemory`]: the bytes (a fixed base that grows in place): [`HeapMemory`]
//!   here, a shared mapping in `numashm-region`.
//!
//! The byte layout, state machine and memory orderings are in `docs/varslot.md`.
//!
//! # Examples
//!
//! ```
//! use numashm_varslot::{Config, HeapAllocator};
//! let a = HeapAllocator::new(&Config::new().class(64, 16).class(1024, 4)).unwrap();
//! let h = a.alloc(100, 1).unwrap(); // class 1 (1 KiB)
//! let mut slot = a.resolve(h).unwrap();
//! // SAFETY: `h` is ours and nobody else touches its slot.
//! unsafe { slot.as_mut_slice()[0] = 42 };
//! let raw = h.to_u64(); // what a ring carries
//! let h2 = numashm_varslot::Handle::from_u64(raw).unwrap();
//! a.free(h2).unwrap();
//! assert!(a.free(h).is_err()); // double free is an error, not corruption
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod alloc;
mod error;
mod handle;
mod layout;
mod located;
mod loom;
mod magazine;
mod memory;
#[cfg(not(numashm_loom))]
mod owner;
#[cfg(not(numashm_loom))]
mod shared;
mod slot;
pub mod sync;
mod words;

pub use alloc::{nodes_by_distance, Allocator, Census, ExtentCensus, HeapAllocator, Stats};
pub use error::{AllocError, AttachError, CreateError, GrowError, HandleError, ReleaseError, SlotState};
pub use handle::{Handle, PeerId, MAX_CLASSES, MAX_EXTENTS, MAX_SLOTS};
pub use layout::Config;
pub use located::Located;
pub use magazine::Magazine;
pub use memory::{HeapMemory, MemoryError, SegmentMemory};
#[cfg(not(numashm_loom))]
pub use owner::{
    ClassCensus, CommitError, GiveBack, HandleParts, HeapPoolMemory, OwnedSlot, OwnerAlloc, OwnerCensus, OwnerConfig,
    OwnerError, PoolMemory, ReturnError, HANDLE_EXTENT_BITS, HANDLE_SLOT_BITS, MAX_OWNER_CLASSES, MAX_OWNER_EXTENTS,
    MAX_OWNER_SLOTS, OWNER_MAGIC, OWNER_VERSION,
};
#[cfg(not(numashm_loom))]
pub use shared::SharedAllocator;
#[cfg(not(numashm_loom))]
pub use owner::{ExtentView, OwnerView, OwnerViewError};
pub use slot::Slot;
#[cfg(not(numashm_loom))]
pub use words::SegmentWords;
pub use words::{HeapWords, Words};
#[cfg(test)] mod documented;
