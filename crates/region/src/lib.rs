//! # numashm-region
//!
//! Shared-memory regions for processes on one host: a named file, an anonymous
//! memfd object or hugetlb memory, **placed on a chosen NUMA node with `mbind`
//! before first touch**, with a chosen cache policy (page size, prefault, mlock,
//! fork/dump behaviour), committed at creation so that running out of memory is
//! an error there and never a SIGBUS later, and **growing in place**: the base
//! address never moves, and guests notice growth with
//! [`Region::check_and_remap`], whose no-change path is an atomic load.
//!
//! Placement is verified page by page ([`Region::verify_placement`]), not assumed.
//!
//! ```
//! use numashm_region::{MemPolicy, Region, RegionOptions, Topology};
//! use std::os::fd::AsFd;
//!
//! let node = Topology::get()?.nodes()[0].os_index;
//! let host = RegionOptions::new(2 << 20)
//!     .max_len(64 << 20)
//!     .node(node)
//!     .policy(MemPolicy::Bind)
//!     .populate(true)
//!     .create_anonymous("crate-doc")?;
//! let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
//! host.resize(4 << 20)?;
//! assert!(guest.check_and_remap()?);
//! assert_eq!(guest.as_ptr() as usize % 4096, 0);
//! host.verify_placement()?;
//! # Ok::<(), numashm_region::RegionError>(())
//! ```
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod error;
mod header;
mod loom;
mod policy;
pub mod process;
mod region;
mod sys;
mod topology;

pub use error::{Errno, Hint, RegionError, Result, SealFlags};
pub use header::{parse_header, HeaderInfo, HEADER_FIELDS_LEN, HEADER_LEN, MAX_REGION_LEN, REGION_MAGIC, REGION_VERSION};
pub use policy::{CachePolicy, MemPolicy, NodeSet, PageSize, Placement};
pub use region::{AttachOptions, MAX_POOL_LEN, NodePages, Protection, Region, RegionAdvice, RegionOptions, SharedObject, UncheckedAdvice};
pub use region::{add_seals, protect_range, revoke_range, seals_of, FdMapping};
pub use topology::{anon_thp_mode, free_huge_pages, shmem_thp_mode, total_huge_pages, NumaNode, Topology};
#[cfg(test)] mod documented;
