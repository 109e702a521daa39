//! # numashm
//!
//! Zero-copy messages between processes on one host, through shared memory
//! placed on the NUMA node you choose, with **one writer per shared word,
//! enforced by the kernel**: each peer sends from its own *pool* (a sealed
//! memfd that every other process can only map read-only), and a shared
//! *rendezvous* file says who exists and where their pools are. See
//! [`pool`] and `docs/pools.md`.
//!
//! ```
//! use numashm::{Peer, PeerConfig};
//!
//! let host = Peer::create_anonymous("crate-doc", 4, PeerConfig::new("crate-doc-host"))?;
//! // Another process: `Peer::join(path, PeerConfig::new(..))` or `Peer::join_fd(..)`.
//! let guest = host.join_same(PeerConfig::new("crate-doc-guest"))?;
//! let (tx, rx) = (host.sender(0)?, guest.receiver(0)?);
//!
//! let mut msg = tx.alloc(5)?;          // a slot of the host's pool
//! msg.copy_from_slice(b"hello");       // written in place
//! tx.send(msg).map_err(|e| e.error)?;  // only its handle crosses
//!
//! let got = rx.recv_timeout(std::time::Duration::from_secs(5))?; // read in place, read-only
//! assert_eq!(&*got, b"hello");
//! drop(got);                           // handed back to the host's pool
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod local_node;
mod loom;
pub mod pool;
mod words;

pub use pool::{ChannelError, Message, Peer, PeerConfig, PoolError, Receiver, SendError, Sender, SlotMut};

pub use numashm_region::{
    CachePolicy, MemPolicy, NodeSet, PageSize, Placement, Region, RegionError, RegionOptions, Topology,
};
pub use numashm_ring::EventFd;
pub use numashm_varslot::OwnerConfig;

/// Ownership, capabilities and offer/claim of memory between unrelated
/// processes, with the kernel enforcing permissions (`numashm-ownership`).
pub use numashm_ownership as ownership;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
