//! The one place atomics come from: loom's under `--cfg numashm_loom`, core's otherwise.
//!
//! Every lock-free word of the allocator is a [`AtomicU64`] taken from here, so the
//! loom models in `loom-tests/` run the very same code as production.
//!
//! # Examples
//!
//! ```
//! use numashm_varslot::sync::{AtomicU64, Ordering};
//! let w = AtomicU64::new(7);
//! assert_eq!(w.load(Ordering::SeqCst), 7);
//! ```

#[cfg(numashm_loom)]
pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(numashm_loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(numashm_loom))]
pub use core::sync::atomic::Ordering;
#[cfg(not(numashm_loom))]
pub use native::{AtomicU64, AtomicUsize};

/// Thin `#[repr(transparent)]` wrappers over core's atomics (this module is the one place
/// allowed to name them; clippy's `disallowed-types` bans them elsewhere), exposing the
/// subset of loom's API we use, so loom and core are interchangeable.
#[cfg(not(numashm_loom))]
#[allow(clippy::disallowed_types)] // the sanctioned home of core atomics
mod native {
    use core::sync::atomic::Ordering;

    macro_rules! atomic {
        ($name:ident, $core:ty, $int:ty) => {
            #[doc = concat!("`", stringify!($core), "` (loom's under `--cfg numashm_loom`).")]
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let a = numashm_varslot::sync::", stringify!($name), "::new(1);")]
            /// assert_eq!(a.fetch_add(1, numashm_varslot::sync::Ordering::SeqCst), 1);
            /// ```
            #[derive(Debug, Default)]
            #[repr(transparent)]
            pub struct $name($core);

            impl $name {
                /// A new atomic holding `v`.
                #[inline]
                pub const fn new(v: $int) -> Self {
                    Self(<$core>::new(v))
                }
                /// See the core method of the same name.
                #[inline]
                pub fn load(&self, o: Ordering) -> $int {
                    self.0.load(o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn store(&self, v: $int, o: Ordering) {
                    self.0.store(v, o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn swap(&self, v: $int, o: Ordering) -> $int {
                    self.0.swap(v, o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn compare_exchange(
                    &self,
                    current: $int,
                    new: $int,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$int, $int> {
                    self.0.compare_exchange(current, new, success, failure)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn fetch_add(&self, v: $int, o: Ordering) -> $int {
                    self.0.fetch_add(v, o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn fetch_sub(&self, v: $int, o: Ordering) -> $int {
                    self.0.fetch_sub(v, o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn fetch_or(&self, v: $int, o: Ordering) -> $int {
                    self.0.fetch_or(v, o)
                }
                /// See the core method of the same name.
                #[inline]
                pub fn fetch_max(&self, v: $int, o: Ordering) -> $int {
                    self.0.fetch_max(v, o)
                }
            }
        };
    }

    atomic!(AtomicU64, core::sync::atomic::AtomicU64, u64);
    atomic!(AtomicUsize, core::sync::atomic::AtomicUsize, usize);
    const _: () = assert!(core::mem::size_of::<AtomicU64>() == 8 && core::mem::align_of::<AtomicU64>() == 8);
}
#[cfg(not(numashm_loom))]
pub(crate) use std::sync::Mutex;

/// Hint that we are in a CAS retry loop; under loom this yields to the other threads.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(numashm_loom)]
    loom::hint::spin_loop();
    #[cfg(not(numashm_loom))]
    core::hint::spin_loop();
}

/// Give up the CPU (loom: let another modelled thread run).
#[inline]
#[allow(dead_code)]
pub(crate) fn yield_now() {
    #[cfg(numashm_loom)]
    loom::thread::yield_now();
    #[cfg(not(numashm_loom))]
    std::thread::yield_now();
}
