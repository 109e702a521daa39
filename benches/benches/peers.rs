//! Criterion, feature `peers` only: `rtt_vs_iceoryx2`, our 64 B cross-process
//! round trip through pools beside the payload floor (as in `rtt_vs_floor`)
//! and an iceoryx2 0.10 publish-subscribe ping-pong (64 B written and read on
//! each side), so one run reports all three. See `docs/benchmarks.md`.
//!
//! `cargo bench -p numashm-benches --features peers --bench peers`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use numashm_benches::child::{Floor, Pinned, PAYLOAD};
use numashm_benches::peers::{cleanup, Iceoryx2};
use numashm_benches::rtt::{self, PoolEcho};

fn rtt_vs_iceoryx2(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let payload = [7u8; PAYLOAD];
    let mut g = c.benchmark_group("rtt_vs_iceoryx2");
    // One second process at a time, each ended before the next starts: an idle
    // child pinned to CPU 1 that still polls took it from the one measured and
    // cost that side ~20 % (see docs/benchmarks.md, "harness fix"); iceoryx2's
    // child cannot park at all. Our echo child and the floor's park when idle,
    // but ending them is surer.
    let pools = PoolEcho::start();
    let (tx, rx) = pools.ends();
    g.bench_function("pools_64B", |b| b.iter(|| rtt::round_trip(&tx, &rx)));
    drop((tx, rx));
    drop(pools);
    let mut floor = Floor::start();
    black_box(floor.wake_round_trip(&payload));
    g.bench_function("floor_64B", |b| b.iter(|| floor.round_trip(black_box(&payload))));
    drop(floor);
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
