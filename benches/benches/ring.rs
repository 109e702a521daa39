//! Criterion: the pools' split ring beside rtrb (definitions in
//! `docs/benchmarks.md`). The measured code is `numashm_benches::ring`, the
//! same that `numashm bench` runs.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use numashm_benches::child::Pinned;
use numashm_benches::ring;

fn spsc(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let mut g = c.benchmark_group("spsc_cap1024_one_at_a_time");
    g.throughput(Throughput::Elements(1));
    // One iteration = one item; each sample is one producer/consumer run.
    // No early stop: criterion wants exactly `iters` (one item is popped before the clock starts).
    let all = Duration::from_secs(3600);
    let mut split = ring::SplitPair::default();
    g.bench_function("ours_split_ring", |b| b.iter_custom(|iters| split.transfer(iters + 1, all).1));
    let mut rtrb = ring::RtrbRing::default();
    g.bench_function("rtrb", |b| b.iter_custom(|iters| rtrb.transfer(iters + 1, all).1));
    g.finish();
}

criterion_group!(benches, spsc);

fn main() {
    numashm_benches::child_main_if_requested();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
