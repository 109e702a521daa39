//! Criterion: the segment's slot allocator beside its baselines (definitions
//! in `docs/benchmarks.md`). The measured code is `numashm_benches::alloc`,
//! the same that `numashm bench` runs.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use numashm_benches::alloc;
use numashm_benches::child::Pinned;

fn alloc_free(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let seg = alloc::segment();
    // SAFETY: the benchmark makes no SlotMut or Message of `seg`; it allocates
    // and frees only its own raw handles.
    let (a, peer) = (unsafe { seg.raw_allocator() }, alloc::peer_of(&seg));
    let pool = alloc::pool();
    let mut g = c.benchmark_group("alloc_free_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours_segment", |b| {
        b.iter(|| {
            let h = a.alloc(black_box(alloc::SLOT_LEN), peer).unwrap();
            a.free(h).unwrap();
        })
    });
    g.bench_function("arrayqueue_pool", |b| {
        b.iter(|| {
            let i = pool.pop().unwrap();
            pool.push(black_box(i)).unwrap();
        })
    });
    g.bench_function("malloc_free", |b| b.iter_custom(|iters| Duration::from_nanos((alloc::malloc_free(iters) * iters as f64) as u64)));
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let seg = alloc::segment();
    let mut g = c.benchmark_group("alloc_free_1KiB_threads");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours_1_thread", |b| {
        b.iter_custom(|iters| Duration::from_nanos((alloc::ours(&seg, iters) * iters as f64) as u64))
    });
    alloc::with_two_threads(&seg, alloc::ours, |round| {
        // One iteration = one alloc+free pair, half done by each thread.
        g.bench_function("ours_2_threads", |b| b.iter_custom(|iters| round(iters.div_ceil(2))));
    });
    g.finish();
}

criterion_group!(benches, alloc_free, two_threads);

fn main() {
    numashm_benches::child_main_if_requested();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
