//! Where this crate's atomics come from (the pattern every numashm crate
//! follows, see docs/design.md, Principles): `crate::loom::sync::atomic`.
//! Always std's: the bridge's atomics are process-local flags.

/// The shape of `std::sync`.
pub(crate) mod sync {
    /// The shape of `std::sync::atomic`: the one place this crate names real atomics.
    #[allow(clippy::disallowed_types)]
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::Ordering;
        /// std's `AtomicBool`.
        pub(crate) type AtomicBool = std::sync::atomic::AtomicBool;
    }
}
