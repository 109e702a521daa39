//! Quick interleaved throughput check: handles/s through our SPSC ring vs
//! `rtrb` 0.3, two threads, capacity 1024, one item at a time (the
//! `spsc_vs_rtrb` row of `shared/benchmarks.md`; the criterion benchmark
//! lives in `benches/`). Prints the ratio per round and the median.
//!
//! `cargo run --release -p numashm-ring --example spsc_vs_rtrb`

use std::thread;
use std::time::Instant;

const N: u64 = 20_000_000;
const CAP: usize = 1024;

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn ours() -> f64 {
    let (mut tx, mut rx) = numashm_ring::Spsc::new(CAP).unwrap().split().unwrap();
    let start = Instant::now();
    let p = thread::spawn(move || {
        pin(1);
        for i in 0..N {
            while tx.push(i).is_err() {
                core::hint::spin_loop();
            }
        }
    });
    pin(0);
    let mut sum = 0u64;
    let mut got = 0;
    while got < N {
        if let Ok(v) = rx.pop() {
            sum = sum.wrapping_add(v);
            got += 1;
        }
    }
    p.join().unwrap();
    assert_eq!(sum, N * (N - 1) / 2);
    N as f64 / start.elapsed().as_secs_f64()
}

fn theirs() -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
    let start = Instant::now();
    let p = thread::spawn(move || {
        pin(1);
        for i in 0..N {
            while tx.push(i).is_err() {
                core::hint::spin_loop();
            }
        }
    });
    pin(0);
    let mut sum = 0u64;
    let mut got = 0;
    while got < N {
        if let Ok(v) = rx.pop() {
            sum = sum.wrapping_add(v);
            got += 1;
        }
    }
    p.join().unwrap();
    assert_eq!(sum, N * (N - 1) / 2);
    N as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut ratios = Vec::new();
    for round in 0..7 {
        let (a, b) = if round % 2 == 0 {
            let a = ours();
            (a, theirs())
        } else {
            let b = theirs();
            (ours(), b)
        };
        println!("round {round}: ours {:.1} M/s, rtrb {:.1} M/s, ratio {:.2}", a / 1e6, b / 1e6, a / b);
        ratios.push(a / b);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio ours/rtrb: {:.2}", ratios[ratios.len() / 2]);
}
