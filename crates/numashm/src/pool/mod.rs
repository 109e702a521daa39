//! Pools: messages between processes with **one writer per shared word,
//! enforced by the kernel** (rendezvous layout version 4, pool layout version 5).
//!
//! Each peer owns a *pool*: a memfd it maps writable and seals
//! (`F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL`) before anyone else
//! can reach it; every other peer maps it read-only, and the kernel refuses
//! every route to write it. A pool holds its owner's allocator (size classes,
//! extents, slot metadata), the producer side of its rings (cells and tail),
//! and the consumer side of the rings it reads (its heads and its return
//! rings). The *rendezvous* (a file or memfd every peer maps writable) says
//! only who exists and where their pools are; every word read from it is a
//! hint, checked against the kernel before use.
//!
//! | who | writes | reads |
//! |---|---|---|
//! | a producer | its pool: slots, slot metadata, ring cells and tail, return-ring heads | the consumer's head (only when its ring looks full) and return ring |
//! | a consumer | its pool: ring heads, return rings | the producer's cells and payloads (read-only mapping) |
//! | every peer | the rendezvous (its own entry; channel words by CAS) | the rendezvous, as hints |
//!
//! A message costs the receiver the cell's line and the payload; the owner
//! frees a returned slot with plain stores after checking it (range,
//! generation, lent to that reader, not yet returned). See `docs/pools.md`.
//!
//! ```
//! use numashm::pool::{Peer, PeerConfig};
//! let host = Peer::create_anonymous("pool-doc", 4, PeerConfig::new("pool-doc-host"))?;
//! let guest = host.join_same(PeerConfig::new("pool-doc-guest"))?; // another process: Peer::join(path, ..)
//! let (tx, rx) = (host.sender(0)?, guest.receiver(0)?);
//! let mut m = tx.alloc(64)?;
//! m.copy_from_slice(&[7; 64]);
//! tx.send(m).map_err(|e| e.error)?;
//! assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5))?[..], [7; 64]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "tokio")]
mod async_end;
mod channel;
mod config;
mod ends;
mod entry_lock;
mod error;
mod gate;
mod handover;
mod inspect;
mod liveness;
mod own;
mod peer;
mod remote;
mod rendezvous;
mod returns;
mod wake;

#[cfg(feature = "tokio")]
pub use async_end::{AsyncError, AsyncReceiver, AsyncSendError, AsyncSender};
pub use channel::{Message, Receiver, SendError, Sender, SlotMut};
pub use config::PeerConfig;
pub use error::{ChannelError, PoolError};
pub use gate::JoinTicket;
pub use handover::{Handover, HandoverError};
pub use inspect::{create_rendezvous, inspect, inspect_fd, ChannelReport, ClassCensus, EntryReport, EntryState, ExtentView, InspectError, OwnerView, OwnerViewError, PoolReport, RendezvousReport, RingLink, RingReport};
pub use liveness::Liveness;
pub use own::{MAX_LINKS, POOL_MAGIC, POOL_VERSION};
pub use peer::Peer;
pub use rendezvous::{MAX_CHANNELS, MAX_POOL_PEERS, RENDEZVOUS_MAGIC, RENDEZVOUS_VERSION};
