//! Rings of `u64` slot handles and doorbells, living in memory that several
//! processes map at different addresses.
//!
//! - [`Spsc`]: single-producer single-consumer ring (rtrb's algorithm: each
//!   side caches the other's index; batch [`push_slice`](SpscProducer::push_slice)
//!   / [`pop_into`](SpscConsumer::pop_into)).
//! - [`Mpmc`]: multi-producer multi-consumer ring (Vyukov's sequence-numbered
//!   cells; batch variants).
//! - [`SplitRing`]: SPSC ring of 3-word cells whose producer and consumer
//!   each write only their own block ([`SplitProducer`], [`SplitConsumer`]),
//!   with a doorbell that needs no shared writable word (`MAX_PARK`-bounded
//!   parks).
//! - [`Doorbell`]: spin → yield → park on a shared futex word; a notifier
//!   makes a syscall only when a waiter is parked. [`EventFd`] lets a service
//!   wait in epoll / mio / tokio instead.
//!
//! Each structure is written once over a memory abstraction ("one algorithm,
//! two memories"): [`HeapMemory`] / [`HeapBell`] own their atomics on the heap
//! (loom and miri run these); [`SharedMemory`] / [`SharedBell`] view a byte
//! range of a shared mapping through the `unsafe` `init_in` / `attach_in`
//! constructors. No pointers are stored in shared memory; every index and
//! sequence read from it is validated, and an impossible one is a
//! [`Corrupt`] error for the reader. Layouts and orderings: `docs/ring.md`.
//!
//! # Examples
//!
//! ```
//! use numashm_ring::{PushError, Spsc};
//! let (mut tx, mut rx) = Spsc::new(2)?.split()?;
//! tx.push_slice(&[1, 2])?;
//! assert_eq!(tx.push(3), Err(PushError::Full(3))); // the value comes back
//! assert_eq!(rx.pop(), Ok(1));
//! assert_eq!(rx.len()?, 1); // consumer lag
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod doorbell;
mod error;
mod eventfd;
mod loom;
mod mem;
mod mpmc;
#[cfg(not(numashm_loom))]
mod shared;
mod spsc;
mod split;
mod split_bell;
mod split_error;
mod split_mem;
#[cfg(not(numashm_loom))]
mod split_shared;

pub use doorbell::{Armed, Doorbell, Notified};
#[cfg(numashm_loom)]
#[doc(hidden)]
pub use doorbell::LoomFutex;
pub use error::{Corrupt, LayoutError, PopError, PushError, SysError, WaitError};
pub use eventfd::EventFd;
pub use mem::{
    BellBlock, BellMemory, HeapBell, HeapMemory, PaddedIndex, RingHeader, RingMemory, RingMeta,
    ALIGN, BELL_BYTES, BELL_MAGIC, LAYOUT_VERSION, MAX_CAPACITY, RING_HEADER_BYTES, RING_MAGIC,
};
#[cfg(not(numashm_loom))]
pub use mem::{SharedBell, SharedMemory};
pub use mpmc::{Mpmc, MAX_RETRIES};
pub use spsc::{Spsc, SpscConsumer, SpscProducer};
pub use split::{SplitConsumer, SplitProducer, SplitRing};
#[cfg(numashm_loom)]
#[doc(hidden)]
pub use split_bell::SplitFutex;
pub use split_bell::MAX_PARK;
pub use split_error::{SplitAttachError, SplitCorrupt, SplitPushError, SplitWaitError};
#[cfg(not(numashm_loom))]
pub use split_mem::SharedSplit;
pub use split_mem::{
    split_producer_bytes, HeapSplit, SplitCell, SplitConsumerBlock, SplitMemory, SplitProducerHeader,
    SPLIT_CELL_WORDS, SPLIT_CONSUMER_BYTES, SPLIT_LAYOUT_VERSION, SPLIT_MAGIC,
};
#[cfg(not(numashm_loom))]
pub use split_shared::init_consumer_block;
#[cfg(all(test, not(numashm_loom)))] mod documented;
