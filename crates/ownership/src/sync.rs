//! The atomics this crate uses, from one place (see the workspace's loom setup).
//!
//! The descriptor lives in memory mapped from the kernel, which loom cannot
//! model, so this shim always names the real atomics. Type aliases (not
//! re-exports) so that clippy's `disallowed-types` ban on `core::sync::atomic`
//! fires everywhere but here.
#![allow(clippy::disallowed_types)]

pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
pub(crate) use core::sync::atomic::Ordering;
