//! The atomics this crate uses, from one place (see the workspace's loom setup).
//!
//! The region header lives in memory mapped from the kernel, which loom cannot
//! model, so this shim always re-exports the real atomics; the allocator and
//! ring crates, whose algorithms run on heap memory too, swap in loom under
//! `--cfg numashm_loom`.
#![allow(clippy::disallowed_types)]

pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
