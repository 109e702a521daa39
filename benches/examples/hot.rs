//! Single-thread hot paths for `valgrind --tool=callgrind` instruction counts
//! (timings are too noisy on shared VMs). Run twice with different counts and
//! divide the difference, e.g.
//! `valgrind --tool=callgrind ./hot alloc 1` and `… alloc 100001`.
//! Paths: alloc, magazine, pool, malloc, spsc, rtrb, loopback (64 B send + try_recv + drop,
//! one process, one segment).

use std::hint::black_box;

use numashm_benches::{alloc, ring};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    match what.as_str() {
        "alloc" => {
            let seg = alloc::segment();
            black_box(alloc::ours(&seg, n));
        }
        "magazine" => {
            let seg = alloc::segment();
            black_box(alloc::ours_magazine(&seg, n));
        }
        "pool" => {
            let q = alloc::pool();
            black_box(alloc::pool_pop_push(&q, n));
        }
        "malloc" => {
            black_box(alloc::malloc_free(n));
        }
        "spsc" => {
            let r = ring::SharedRing::new();
            black_box(r.push_pop(n));
        }
        "rtrb" => {
            black_box(ring::rtrb_push_pop(n));
        }
        "loopback" => {
            let seg = alloc::segment();
            let (tx, rx) = (seg.sender(0).unwrap(), seg.receiver(0).unwrap());
            for _ in 0..n {
                let mut m = tx.alloc(64).unwrap();
                m.fill(7);
                tx.send(m).map_err(|e| e.error).unwrap();
                let got = rx.try_recv().unwrap();
                black_box(got.iter().map(|&b| u64::from(b)).sum::<u64>());
            }
        }
        _ => eprintln!("unknown path {what}"),
    }
}
