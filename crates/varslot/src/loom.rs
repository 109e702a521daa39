//! Where this crate's atomics, locks and spin hints come from: `crate::loom::sync::atomic`
//! is the path of `std::sync::atomic` with `std` swapped for `crate::loom` (tokio's
//! pattern; every numashm crate with atomics has this module, see docs/design.md,
//! Principles). Other crates reach the same atomics through the public [`crate::sync`].
//!
//! Built normally these are std's atomics. Built with `RUSTFLAGS="--cfg numashm_loom"`
//! they are loom's, so the loom models in `loom-tests/` run the very same code as
//! production (on heap words: the in-segment forms are not built under loom).
//!
//! std's types are aliases, not re-exports: clippy's `disallowed-types` (clippy.toml)
//! resolves a re-export to std's type and would flag every user; an alias is its own
//! item, so the ban fires on a direct std/core atomic anywhere but here. No wrapper
//! types: loom 0.7's atomics have every method this crate calls, and the loom build
//! (CI's loom clippy) rejects any that loom lacks.

/// The shape of `std::sync` (std's).
#[cfg(not(numashm_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::Mutex;

    /// The shape of `std::sync::atomic`: the one place this crate names real atomics.
    #[allow(clippy::disallowed_types)]
    pub(crate) mod atomic {
        pub use std::sync::atomic::Ordering;
        /// std's `AtomicU64` (loom's under `--cfg numashm_loom`).
        ///
        /// # Examples
        ///
        /// ```
        /// use numashm_varslot::sync::{AtomicU64, Ordering};
        /// let a = AtomicU64::new(1);
        /// assert_eq!(a.fetch_add(1, Ordering::SeqCst), 1);
        /// ```
        pub type AtomicU64 = std::sync::atomic::AtomicU64;
        /// std's `AtomicUsize` (loom's under `--cfg numashm_loom`).
        ///
        /// # Examples
        ///
        /// ```
        /// use numashm_varslot::sync::{AtomicUsize, Ordering};
        /// let a = AtomicUsize::new(1);
        /// assert_eq!(a.fetch_add(1, Ordering::SeqCst), 1);
        /// ```
        pub type AtomicUsize = std::sync::atomic::AtomicUsize;
    }
}

/// The shape of `std::sync` (loom's).
#[cfg(numashm_loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::Mutex;

    /// loom's atomics.
    pub(crate) mod atomic {
        pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    }
}

/// The shape of `std::hint`: only `spin_loop`.
pub(crate) mod hint {
    /// Hint that we are in a CAS retry loop; under loom this yields to the other threads.
    #[inline]
    pub(crate) fn spin_loop() {
        #[cfg(numashm_loom)]
        loom::hint::spin_loop();
        #[cfg(not(numashm_loom))]
        std::hint::spin_loop();
    }
}
