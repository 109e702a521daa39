//! Criterion: cross-process round trips through pools beside the payload
//! floor and eventfds (definitions in `docs/benchmarks.md`). The measured code
//! is `numashm_benches::rtt`, the same that `numashm bench` runs; the second
//! process is this executable again, started by `child_main_if_requested`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use numashm_benches::baselines;
use numashm_benches::child::{EventPair, Floor, Pinned, PAYLOAD};
use numashm_benches::rtt::{self, PoolEcho};

fn round_trips(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let payload = [7u8; PAYLOAD];
    let mut g = c.benchmark_group("rtt_two_processes");
    g.bench_function("pools_64B", |b| b.iter(|| rtt::round_trip(&tx, &rx)));
    g.bench_function("pools_4MiB_untouched", |b| b.iter(|| rtt::round_trip_of(&tx, &rx, rtt::BIG)));
    // Our echo child ends before the floor is measured (an idle child on CPU 1
    // would take it from the floor's).
    drop((tx, rx));
    drop(echo);
    let mut floor = Floor::start();
    black_box(floor.wake_round_trip(&payload));
    g.bench_function("floor_64B_flag", |b| b.iter(|| floor.round_trip(black_box(&payload))));
    g.finish();
}

fn parked(c: &mut Criterion) {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let pair = EventPair::start();
    let mut g = c.benchmark_group("rtt_parked_two_processes");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    // Each iteration idles PARK_GAP first (not timed), so both sides park.
    g.bench_function("pools_doorbell", |b| b.iter_custom(|iters| (0..iters).map(|_| rtt::parked_round_trip(&tx, &rx)).sum::<Duration>()));
    g.bench_function("eventfd_pair", |b| b.iter_custom(|iters| (0..iters).map(|_| baselines::eventfd_round_trip(&pair)).sum::<Duration>()));
    g.finish();
}

criterion_group!(benches, round_trips, parked);

fn main() {
    numashm_benches::child_main_if_requested();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
