//! The atomics of the allocator's words, for other crates and tests: loom's under
//! `--cfg numashm_loom`, std's otherwise. A window on the crate's private
//! `loom::sync::atomic` shim (the same module every numashm crate has), so a test
//! that pokes a word uses the very type the allocator does.
//!
//! # Examples
//!
//! ```
//! use numashm_varslot::sync::{AtomicU64, Ordering};
//! let w = AtomicU64::new(7);
//! assert_eq!(w.load(Ordering::SeqCst), 7);
//! ```

pub use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
