//! Where this crate's atomics come from: `crate::loom::sync::atomic`, the path of
//! `std::sync::atomic` with `std` swapped for `crate::loom` (tokio's pattern; every
//! numashm crate with atomics has this module, see docs/design.md, Principles).
//!
//! Always std's, even under `--cfg numashm_loom`: the descriptor lives in memory
//! the kernel maps, which loom cannot model.
//!
//! Aliases, not re-exports: clippy's `disallowed-types` (clippy.toml) resolves a
//! re-export to std's type and would flag every user; an alias is its own item,
//! so the ban fires on a direct std/core atomic anywhere but here.

/// The shape of `std::sync`.
pub(crate) mod sync {
    /// The shape of `std::sync::atomic`: the one place this crate names real atomics.
    #[allow(clippy::disallowed_types)]
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::Ordering;
        /// std's `AtomicBool`.
        pub(crate) type AtomicBool = std::sync::atomic::AtomicBool;
        /// std's `AtomicU64`.
        pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;
    }
}
