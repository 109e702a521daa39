//! # numashm-ownership
//!
//! Handing shared memory between unrelated processes with explicit grants,
//! the kernel — not convention — enforcing who may read and write.
//!
//! - [`Descriptor`]: a `#[repr(C)]` block at the start of a region's data area
//!   holding the region's **owner** (changed only by compare-and-swap), a
//!   **mapping table** (which process mapped it where, with which permissions)
//!   and a **capability table** (random 64-bit tokens bound to one process;
//!   read-only, read-write, or move = ownership passes; revocable; move is
//!   single-use). Everything read from it is validated as hostile bytes.
//! - [`Broker`] / [`BrokerClient`]: **offer / claim / list** of page ranges over
//!   a Unix `SOCK_SEQPACKET` socket passing memfds with `SCM_RIGHTS`, peers
//!   identified by `SO_PEERCRED`. Read-only grants are memfds sealed
//!   `F_SEAL_FUTURE_WRITE`: the receiver cannot map them writable at all.
//! - [`decode_message`]: the broker's wire format, validated field by field.
//! - [`physical_frames`]: frame numbers from `/proc/self/pagemap`.
//!
//! The model, the wire format and the threat model are in docs/ownership.md.
//!
//! ```
//! use numashm_ownership::{CapMode, Descriptor, Perms};
//! use numashm_region::RegionOptions;
//!
//! let region = RegionOptions::new(1 << 20).create_anonymous("crate-doc")?;
//! let desc = Descriptor::create(&region)?; // we own it, our mapping is recorded
//! let me = std::process::id();
//! assert_eq!(desc.owner()?.pid, me);
//! assert_eq!(desc.get_mapping(me)?.unwrap().perms, Perms::RW);
//! let token = desc.create_capability(me, CapMode::ReadWrite)?;
//! desc.revoke(token)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod broker;
mod client;
mod descriptor;
mod error;
mod flags;
mod frames;
mod loom;
mod transport;
mod wire;

pub use broker::{Broker, BrokerHandle, MAX_CLIENTS, MAX_OFFERS_PER_PROCESS, MAX_REGIONS_PER_CLIENT};
pub use client::{BrokerClient, Claimed, DEFAULT_TIMEOUT};
pub use descriptor::{
    Descriptor, Mapping, MappingInfo, Owner, DESCRIPTOR_LEN, DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION, MAX_CAPABILITIES,
    MAX_MAPPINGS,
};
pub use error::{BrokerError, DescriptorError, Errno, FramesError, OfferError, WireError};
pub use flags::{CapMode, OfferFlags, Perms};
pub use frames::physical_frames;
pub use wire::{
    decode_message, ErrorCode, Message, OfferInfo, OfferState, HEADER_LEN as WIRE_HEADER_LEN, MAX_LIST, MAX_MESSAGE,
    MAX_OFFER_LEN, OFFER_INFO_LEN, WIRE_MAGIC, WIRE_VERSION,
};

/// Test hooks: raw sends for hostile-client tests. Not part of the stable API.
#[doc(hidden)]
pub mod testing {
    use std::os::fd::BorrowedFd;

    /// Sends raw bytes with `fds` attached on a connected socket.
    ///
    /// # Errors
    ///
    /// The sendmsg errno.
    pub fn send_raw(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), crate::Errno> {
        crate::transport::send_raw(sock, bytes, fds)
    }
}
#[cfg(test)] mod documented;
