//! Rings of `u64` slot handles and doorbells, living in memory that several
//! processes map at different addresses.
//!
//! - [`Spsc`]: single-producer single-consumer ring (rtrb's algorithm: each
//!   side caches the other's index; batch [`push_slice`](SpscProducer::push_slice)
//!   / [`pop_into`](SpscConsumer::pop_into)).
//! - [`Mpmc`]: multi-producer multi-consumer ring (Vyukov's sequence-numbered
//!   cells; batch variants).
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
mod mem;
mod mpmc;
#[cfg(not(numashm_loom))]
mod shared;
mod spsc;
mod sync;

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
