//! Baselines of the allocator rows (a slot pool, glibc malloc) and the
//! reference row `locked_rmw_vs_malloc`; the eventfd side of
//! `doorbell_vs_eventfd` ([`eventfd_round_trip`]).
//!
//! The cross-process baselines that need a child process (the payload floor,
//! the eventfd pair) live in [`crate::child`].
#![allow(unsafe_code)] // malloc/free

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::child::{EventPair, Pinned};
use crate::{interleave, per_op, Budget, Comparison};

/// Slots in the slot-pool baseline (as many as a 64 KiB extent of the 64 B class has).
pub const POOL_SLOTS: u32 = 1024;

/// How long a parked round trip leaves both sides idle before each timed
/// round trip, so that both have parked (a receiver spins a few µs, then parks).
pub const PARK_GAP: Duration = Duration::from_micros(300);

/// A full `ArrayQueue<u32>` of slot indices, used as a slot pool.
pub fn slot_pool() -> ArrayQueue<u32> {
    let q = ArrayQueue::new(POOL_SLOTS as usize);
    for i in 0..POOL_SLOTS {
        q.push(i).expect("room");
    }
    q
}

/// Baseline: `iters` × (pop + push) on the slot pool, ns per pair.
pub fn pool_pop_push(q: &ArrayQueue<u32>, iters: u64) -> f64 {
    per_op(iters, || {
        let i = q.pop().expect("pool empty");
        q.push(black_box(i)).expect("pool full");
    })
}

/// Baseline: `iters` × glibc `malloc(1024)` + `free`, ns per pair.
pub fn malloc_free(iters: u64) -> f64 {
    per_op(iters, || {
        // libc's malloc and free are the baseline itself.
        // SAFETY: malloc of a fixed size; the pointer (possibly null) goes straight to free.
        unsafe {
            let p = libc::malloc(black_box(1024));
            libc::free(black_box(p));
        }
    })
}

/// The eventfd baseline of a parked round trip: idle [`PARK_GAP`] (not timed),
/// then one ping-pong through the pair; the time of the round trip alone.
pub fn eventfd_round_trip(pair: &EventPair) -> Duration {
    std::thread::sleep(PARK_GAP);
    let start = Instant::now();
    pair.round_trip();
    start.elapsed()
}

/// Reference: `iters` × one locked read-modify-write (`lock xadd`) on a word
/// only this thread touches (always in its cache), ns each.
pub fn locked_rmw(iters: u64) -> f64 {
    let word = AtomicU64::new(0);
    per_op(iters, || {
        // AcqRel: the ordering a shared free list's CAS would use; measured, not relied on.
        black_box(word.fetch_add(1, Ordering::AcqRel));
    })
}

/// `locked_rmw_vs_malloc` (reference, no target): one locked RMW vs glibc
/// `malloc(1024)` + `free`: what one locked instruction per alloc + free pair
/// (the least an allocator that several processes write needs, so that of two
/// racing frees exactly one wins) costs on this CPU against the whole malloc
/// pair. A pool's owner is its only writer and needs none.
pub fn compare_locked_rmw_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let n = if budget.rounds <= Budget::QUICK.rounds { 100_000 } else { 400_000 };
    let r = interleave(budget.rounds, || locked_rmw(n), || malloc_free(n));
    Comparison::reference(
        "locked_rmw_vs_malloc",
        "one locked read-modify-write on a cached private word (what a multi-writer free needs at least)",
        "glibc malloc(1024) + free",
        r,
    )
}
