//! Where this crate's atomics, locks and spin hints come from: `crate::loom::sync::atomic`
//! is the path of `std::sync::atomic` with `std` swapped for `crate::loom` (tokio's
//! pattern; every numashm crate with atomics has this module, see docs/design.md,
//! Principles).
//!
//! Built normally these are std's atomics and `crossbeam_utils::Backoff`. Built with
//! `RUSTFLAGS="--cfg numashm_loom"` they are loom's, so the same ring and doorbell
//! code runs inside `loom::model` (see `loom-tests/`).
//!
//! std's types are aliases, not re-exports: clippy's `disallowed-types` (clippy.toml)
//! resolves a re-export to std's type and would flag every user; an alias is its own
//! item, so the ban fires on a direct std/core atomic anywhere but here. `fence` is a
//! wrapper for the same reason (`disallowed-methods`).

/// The shape of `std::sync` (std's).
#[cfg(not(numashm_loom))]
pub(crate) mod sync {
    /// The shape of `std::sync::atomic`: the one place this crate names real atomics.
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)]
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::Ordering;
        /// std's `AtomicU32`.
        pub(crate) type AtomicU32 = std::sync::atomic::AtomicU32;
        /// std's `AtomicU64`.
        pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;

        /// std's `fence`.
        #[inline]
        pub(crate) fn fence(order: Ordering) {
            std::sync::atomic::fence(order);
        }
    }
}

/// The shape of `std::sync` (loom's).
#[cfg(numashm_loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::{Condvar, Mutex};

    /// loom's atomics.
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
    }
}

/// Spin-loop hints: a scheduling point under loom, where a spin loop is otherwise
/// a state-space explosion.
pub(crate) mod hint {
    /// Exponential backoff for spin loops (the doorbell only uses `spin`: it
    /// counts its own steps and parks, never yields).
    #[cfg(not(numashm_loom))]
    pub(crate) use crossbeam_utils::Backoff;

    /// Under loom each spin step is one yield to the model's scheduler.
    #[cfg(numashm_loom)]
    #[derive(Debug, Default)]
    pub(crate) struct Backoff;

    #[cfg(numashm_loom)]
    impl Backoff {
        pub(crate) fn new() -> Self {
            Backoff
        }
        pub(crate) fn spin(&self) {
            loom::thread::yield_now();
        }
    }

    /// A hint inside a retry loop; a scheduling point under loom.
    #[inline]
    pub(crate) fn spin_loop() {
        #[cfg(not(numashm_loom))]
        std::hint::spin_loop();
        #[cfg(numashm_loom)]
        loom::thread::yield_now();
    }
}

/// The shape of `std::thread`: only `yield_now`.
pub(crate) mod thread {
    /// Give the CPU away; loom's `yield_now` under loom.
    #[inline]
    #[cfg_attr(not(numashm_loom), allow(dead_code))] // only the loom build's park calls it
    pub(crate) fn yield_now() {
        #[cfg(not(numashm_loom))]
        std::thread::yield_now();
        #[cfg(numashm_loom)]
        loom::thread::yield_now();
    }
}
