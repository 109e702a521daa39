//! The one place this crate takes its atomics and spin hints from.
//!
//! Built normally, these are `core`'s atomics and `crossbeam_utils::Backoff`.
//! Built with `RUSTFLAGS="--cfg numashm_loom"`, they are loom's, so the same
//! ring and doorbell code runs inside `loom::model` (see `loom-tests/`).
//! Nothing else in the crate may name `core::sync::atomic` (clippy's
//! `disallowed-types` enforces this).

#[cfg(not(numashm_loom))]
#[allow(clippy::disallowed_types)]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(numashm_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(numashm_loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

/// Exponential backoff for spin loops (the doorbell only uses `spin`: it
/// counts its own steps and parks, never yields).
#[cfg(not(numashm_loom))]
pub(crate) use crossbeam_utils::Backoff;

/// Under loom a spin loop is a state-space explosion: each spin step is one
/// yield to the model's scheduler.
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
    core::hint::spin_loop();
    #[cfg(numashm_loom)]
    loom::thread::yield_now();
}

/// Give the CPU away; loom's `yield_now` under loom.
#[inline]
#[allow(dead_code)]
pub(crate) fn yield_now() {
    #[cfg(not(numashm_loom))]
    std::thread::yield_now();
    #[cfg(numashm_loom)]
    loom::thread::yield_now();
}
