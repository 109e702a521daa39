//! Single-thread hot paths of the pools (`numashm::pool`) and of the
//! baselines, for `valgrind --tool=callgrind` instruction counts (timings are
//! too noisy on shared VMs). Run twice with different counts and divide the
//! difference, e.g. `… hot_pool alloc 1` and `… alloc 100001`.
//! Paths of ours: `alloc` (`Sender::alloc(1024)` + drop), `loopback` (64 B alloc,
//! send, try_recv, read, drop, two peers in one thread), `fanout4` (one 64 B
//! message to four readers, all received and returned), `unicast4` (four 64 B
//! messages, one each), `split` (the pools' split ring: push one, pop one).
//! Baselines: `malloc` (`malloc(1024)` + `free`), `arrayqueue` (slot pool pop +
//! push), `rtrb` (push one, pop one).

use std::hint::black_box;

use numashm_benches::{baselines, pool, ring};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    match what.as_str() {
        "alloc" => black_box(pool::hot_alloc(n)),
        "loopback" => black_box(pool::hot_loopback(n)),
        "fanout4" => black_box(pool::hot_fanout(n, true)),
        "unicast4" => black_box(pool::hot_fanout(n, false)),
        "split" => black_box(ring::SplitPair::default().push_pop(n) as f64),
        "malloc" => black_box(baselines::malloc_free(n)),
        "arrayqueue" => black_box(baselines::pool_pop_push(&baselines::slot_pool(), n)),
        "rtrb" => black_box(ring::rtrb_push_pop(n) as f64),
        _ => {
            eprintln!("unknown path {what}");
            0.0
        }
    };
}
