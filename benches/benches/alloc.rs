//! Criterion: allocation in a pool (`Sender::alloc(1024)` + drop, the pool's
//! owner thread) beside its baselines (definitions in `docs/benchmarks.md`).
//! The measured code is `numashm_benches::pool` and `::baselines`, the same
//! that `numashm bench` runs.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use numashm::pool::{Peer, PeerConfig};
use numashm_benches::child::Pinned;
use numashm_benches::{baselines, pool};

fn alloc_free(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let peer = Peer::create_anonymous("numashm-bench-alloc", 2, PeerConfig::new("numashm-bench-alloc")).unwrap();
    let tx = peer.sender(0).unwrap();
    let slots = baselines::slot_pool();
    let mut g = c.benchmark_group("alloc_free_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ours_pool", |b| {
        b.iter(|| {
            let mut m = tx.alloc(black_box(1024)).unwrap();
            // As in `pool::alloc_drop`: the slot's address escapes, not the whole guard.
            black_box(m.as_mut_ptr());
            drop(m);
        })
    });
    g.bench_function("arrayqueue_pool", |b| {
        b.iter(|| {
            let i = slots.pop().unwrap();
            slots.push(black_box(i)).unwrap();
        })
    });
    g.bench_function("malloc_free", |b| b.iter_custom(|iters| Duration::from_nanos((baselines::malloc_free(iters) * iters as f64) as u64)));
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let mut g = c.benchmark_group("alloc_free_1KiB_threads");
    g.throughput(Throughput::Elements(1));
    pool::with_two_threads(|pair, tx| {
        g.bench_function("ours_1_thread", |b| {
            b.iter_custom(|iters| Duration::from_nanos((pool::alloc_drop(tx, iters) * iters as f64) as u64))
        });
        // One iteration = one alloc+drop pair, half done by each thread (each in its own pool).
        g.bench_function("ours_2_threads", |b| b.iter_custom(|iters| pair(iters.div_ceil(2))));
    });
    g.finish();
}

criterion_group!(benches, alloc_free, two_threads);

fn main() {
    numashm_benches::child_main_if_requested();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
