//! # numashm
//!
//! Zero-copy messages between processes through shared memory placed on the
//! NUMA node you choose. A host creates a [`Segment`] (a region holding a peer
//! table, rings of slot handles and a lock-free slot allocator); guests attach
//! by path or fd; messages are slots written and read in place.
//!
//! ```
//! use numashm::{Segment, SegmentConfig};
//! use std::os::fd::AsFd;
//!
//! let host = Segment::create(SegmentConfig::anonymous("crate-doc"))?;
//! let guest = Segment::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
//! let (tx, rx) = (host.sender(0)?, guest.receiver(0)?);
//!
//! let mut msg = tx.alloc(5)?;          // a slot in shared memory
//! msg.copy_from_slice(b"hello");       // written in place
//! tx.send(msg).map_err(|e| e.error)?;  // only its handle crosses
//!
//! let got = rx.recv()?;                // read in place
//! assert_eq!(&*got, b"hello");
//! drop(got);                           // frees the slot
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod allocator_view;
mod cache;
mod channel;
mod error;
mod inspect;
mod layout;
mod memory;
mod peers;
pub mod pool;
mod prefetch;
mod segment;
mod sync;
mod words;

pub use allocator_view::AllocatorView;
pub use channel::{Message, Receiver, SendError, Sender, SlotMut};
pub use error::{MessageError, SegmentError};
pub use inspect::{ClassReport, ExtentReport, SegmentReport};
pub use layout::{RingKind, RingSpec, MAX_PEERS, MAX_RINGS, SEGMENT_MAGIC, SEGMENT_VERSION};
pub use peers::{PeerInfo, PeerState};
pub use segment::{placement_of, Recovery, RingInfo, Segment, SegmentConfig, SWEEP_WAIT};

pub use numashm_region::{
    CachePolicy, MemPolicy, NodeSet, PageSize, Placement, Region, RegionError, RegionOptions, Topology,
};
pub use numashm_ring::EventFd;
pub use numashm_varslot::{Config as ClassConfig, Handle, OwnerConfig};

/// Ownership, capabilities and offer/claim of memory between unrelated
/// processes, with the kernel enforcing permissions (`numashm-ownership`).
pub use numashm_ownership as ownership;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
