//! Criterion: the region layer beside its baselines (definitions in
//! `../shared/benchmarks.md`). The measured code is `numashm_benches::region`,
//! the same that `numashm bench` runs.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::os::fd::AsFd;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use numashm_benches::region;

fn node() -> u32 {
    numashm_region::Topology::get().map(|t| t.nodes()[0].os_index).unwrap_or(0)
}

fn region_create(c: &mut Criterion) {
    let mut g = c.benchmark_group("region_create_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let n = node();
    g.bench_function("ours", |b| b.iter_custom(|iters| (0..iters).map(|_| region::create_ours(n)).sum()));
    g.bench_function("raw_syscalls", |b| b.iter_custom(|iters| (0..iters).map(|_| region::create_raw(n)).sum()));
    g.finish();
}

fn check_and_remap(c: &mut Criterion) {
    let mut g = c.benchmark_group("check_and_remap");
    let (_host, guest) = region::host_and_guest(1 << 20, 4 << 20, true);
    let fd = guest.as_fd().try_clone_to_owned().unwrap();
    g.bench_function("ours_no_change", |b| b.iter(|| guest.check_and_remap().unwrap()));
    g.bench_function("fstat", |b| b.iter(|| rustix::fs::fstat(&fd).unwrap()));
    g.finish();
}

fn grow(c: &mut Criterion) {
    let mut g = c.benchmark_group("grow_64_to_128MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for commit in [false, true] {
        let tag = if commit { "committed" } else { "lazy" };
        g.bench_function(format!("ours_{tag}"), |b| b.iter_custom(|iters| (0..iters).map(|_| region::grow_ours(commit)).sum()));
        g.bench_function(format!("raw_{tag}"), |b| b.iter_custom(|iters| (0..iters).map(|_| region::grow_raw(commit)).sum()));
    }
    g.finish();
}

criterion_group!(benches, region_create, check_and_remap, grow);
criterion_main!(benches);
