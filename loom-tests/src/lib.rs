//! Loom models of numashm's lock-free structures live in `tests/`.
//!
//! They compile only with `RUSTFLAGS="--cfg numashm_loom"`, which makes
//! numashm-ring and numashm-varslot take their atomics from loom (see their `src/loom.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom
//! ```
