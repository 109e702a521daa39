//! Criterion, feature `peers` only: `rtt_vs_iceoryx2`, our 64 B cross-process
//! round trip (layout 3 `Segment`, and layout 4 pools) beside an iceoryx2 0.10
//! publish-subscribe ping-pong (64 B written and read on each side). See
//! `docs/benchmarks.md`.
//!
//! `cargo bench -p numashm-benches --features peers --bench peers`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, Criterion};
use numashm_benches::child::{Pinned, PAYLOAD};
use numashm_benches::peers::{cleanup, Iceoryx2};
use numashm_benches::pool::{self, PoolEcho};
use numashm_benches::rtt::{self, Echo};

fn rtt_vs_iceoryx2(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let echo = Echo::start();
    let (tx, rx) = echo.ends();
    let payload = [7u8; PAYLOAD];
    let mut g = c.benchmark_group("rtt_vs_iceoryx2");
    g.bench_function("ours_64B", |b| b.iter(|| rtt::round_trip(&tx, &rx, PAYLOAD)));
    drop((tx, rx));
    drop(echo);
    // Layout 4 (pools): each side sends from its own sealed pool.
    let pools = PoolEcho::start();
    let (ptx, prx) = pools.ends();
    g.bench_function("pools_64B", |b| b.iter(|| pool::round_trip(&ptx, &prx)));
    drop((ptx, prx));
    drop(pools);
    // iceoryx2's child starts only now: idle, it polls every 50 µs (its
    // subscriber cannot park), on the CPU our echo child uses, which cost our
    // round trip ~20 % when it ran during ours. Our echo child parks (futex)
    // while iceoryx2 is measured.
    let ice = Iceoryx2::start();
    g.bench_function("iceoryx2_64B", |b| b.iter(|| ice.round_trip(&payload)));
    g.finish();
    drop(ice);
    cleanup();
}

criterion_group!(benches, rtt_vs_iceoryx2);

fn main() {
    numashm_benches::child_main_if_requested();
    benches();
    Criterion::default().configure_from_args().final_summary();
    cleanup();
}
