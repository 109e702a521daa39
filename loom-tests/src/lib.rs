//! Loom models of numashm's lock-free structures live in `tests/`.
//!
//! They compile only with `RUSTFLAGS="--cfg numashm_loom"`, which makes every
//! numashm crate take its atomics from loom (see each crate's `sync` module):
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom
//! ```
