//! The atomics this crate uses. Rendezvous and pool words live in mmapped memory, which
//! loom cannot model, so these are always the real atomics (the algorithms
//! loom checks live in numashm-varslot and numashm-ring). Type aliases so that
//! clippy's `disallowed-types` ban on `core::sync::atomic` fires everywhere else.
#![allow(clippy::disallowed_types)]

pub(crate) type AtomicU64 = core::sync::atomic::AtomicU64;
pub(crate) use core::sync::atomic::Ordering;
