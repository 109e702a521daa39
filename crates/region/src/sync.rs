//! The atomics this crate uses, from one place (see the workspace's loom setup).
//!
//! The region header lives in memory mapped from the kernel, which loom cannot
//! model, so this shim always names the real atomics; the allocator and ring
//! crates, whose algorithms run on heap memory too, swap in loom under
//! `--cfg numashm_loom`. Type aliases (not re-exports) so that clippy's
//! `disallowed-types` ban on `core::sync::atomic` fires everywhere but here.
#![allow(clippy::disallowed_types)]

pub(crate) type AtomicU32 = core::sync::atomic::AtomicU32;
pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
pub(crate) type AtomicUsize = core::sync::atomic::AtomicUsize;
pub(crate) use core::sync::atomic::Ordering;
