//! Slot allocator: `alloc_vs_pool`, `alloc_vs_malloc`, `alloc_2t_scaling`.
//!
//! Ours is the allocator of a real [`Segment`] (anonymous memfd region, default
//! classes) with one peer id: `alloc(1016, peer)` (the 1 KiB class), then `free`.
#![allow(unsafe_code)] // malloc/free

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use numashm::{Segment, SegmentConfig};

use crate::child::{other_cpu, pin_current_thread, Pinned};
use crate::{interleave, per_op, Budget, Comparison};

/// Request size: the 1 KiB class.
pub const SLOT_LEN: usize = 1016;
/// Slots in the 1 KiB class of the default configuration (and in the pool baseline).
pub const POOL_SLOTS: u32 = 1024;

fn iters(budget: Budget) -> u64 {
    if budget.rounds <= Budget::QUICK.rounds {
        100_000
    } else {
        400_000
    }
}

/// A segment for the allocator comparisons.
pub fn segment() -> Segment {
    Segment::create(SegmentConfig::anonymous("numashm-bench-alloc")).expect("create segment")
}

/// Our peer id in `seg` (its peer-table index + 1).
pub fn peer_of(seg: &Segment) -> u32 {
    seg.peer_index() + 1
}

/// Ours: `iters` × (alloc 1 KiB class + free), ns per pair.
pub fn ours(seg: &Segment, iters: u64) -> f64 {
    // SAFETY: the allocator benchmarks make no SlotMut or Message of `seg`;
    // only raw handles they allocate themselves are freed.
    let a = unsafe { seg.raw_allocator() };
    let peer = peer_of(seg);
    per_op(iters, || {
        let h = a.alloc(black_box(SLOT_LEN), peer).expect("alloc");
        a.free(black_box(h)).expect("free");
    })
}

/// Ours through a per-peer [`Magazine`](numashm_varslot::Magazine) (the
/// allocator's optional cache: a cached alloc writes no shared word, a free is
/// one CAS on the slot's own metadata line): `iters` × (alloc + free), ns per pair.
pub fn ours_magazine(seg: &Segment, iters: u64) -> f64 {
    // SAFETY: as in `ours`: no guard of `seg` exists here.
    let mut m = unsafe { seg.raw_allocator() }.magazine(peer_of(seg), 32);
    per_op(iters, || {
        let h = m.alloc(black_box(SLOT_LEN)).expect("alloc");
        m.free(black_box(h)).expect("free");
    })
}

/// A full `ArrayQueue<u32>` of slot indices, used as a pool.
pub fn pool() -> ArrayQueue<u32> {
    let q = ArrayQueue::new(POOL_SLOTS as usize);
    for i in 0..POOL_SLOTS {
        q.push(i).expect("room");
    }
    q
}

/// Baseline: `iters` × (pop + push) on the pool, ns per pair.
pub fn pool_pop_push(q: &ArrayQueue<u32>, iters: u64) -> f64 {
    per_op(iters, || {
        let i = q.pop().expect("pool empty");
        q.push(black_box(i)).expect("pool full");
    })
}

/// Baseline: `iters` × glibc `malloc(1024)` + `free`, ns per pair.
pub fn malloc_free(iters: u64) -> f64 {
    per_op(iters, || {
        // SAFETY: malloc of a fixed size; the pointer (possibly null) goes straight to free.
        unsafe {
            let p = libc::malloc(black_box(1024));
            libc::free(black_box(p));
        }
    })
}

fn comparison(name: &'static str, baseline_label: &'static str, medians: crate::Medians, target: f64) -> Comparison {
    let ours_label = if name.contains("magazine") {
        "segment allocator through a per-peer magazine: alloc (1 KiB class) + free, one thread"
    } else {
        "segment allocator: alloc (1 KiB class) + free, one thread"
    };
    Comparison::times(name, ours_label, baseline_label, medians, target)
}

/// `alloc_vs_pool`: ours vs `ArrayQueue<u32>` pop + push.
pub fn compare_alloc_vs_pool(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let seg = segment();
    let q = pool();
    let n = iters(budget);
    let r = interleave(budget.rounds, || ours(&seg, n), || pool_pop_push(&q, n));
    comparison("alloc_vs_pool", "crossbeam ArrayQueue<u32> pop + push (a slot pool)", r, 0.8)
}

/// `alloc_vs_malloc`: ours vs glibc `malloc(1024)` + `free`.
pub fn compare_alloc_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let seg = segment();
    let n = iters(budget);
    let r = interleave(budget.rounds, || ours(&seg, n), || malloc_free(n));
    comparison("alloc_vs_malloc", "glibc malloc(1024) + free", r, 1.0)
}

/// Runs `f` with a helper thread pinned to the other CPU (the caller should be
/// pinned to CPU 0). `f` gets `round(n)`: both threads do `n` × (alloc + free)
/// on the 1 KiB class of `seg`, started together; it returns the wall time
/// from the common start until both are done (2n pairs in all).
pub fn with_two_threads<R>(
    seg: &Segment,
    work: fn(&Segment, u64) -> f64,
    f: impl FnOnce(&mut dyn FnMut(u64) -> Duration) -> R,
) -> R {
    let start = Barrier::new(2);
    let iters = AtomicU64::new(0);
    let running = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    std::thread::scope(|s| {
        let helper = s.spawn(|| {
            pin_current_thread(other_cpu());
            loop {
                start.wait();
                // Relaxed (all three loads/stores below the barrier): the Barrier
                // orders them after the parent's stores of the round.
                let n = iters.load(Ordering::Relaxed);
                if n == 0 {
                    return;
                }
                running.fetch_add(1, Ordering::AcqRel);
                while running.load(Ordering::Acquire) < 2 {
                    std::hint::spin_loop();
                }
                work(seg, n);
                done.store(1, Ordering::Release);
            }
        });
        let mut round = |n: u64| {
            let n = n.max(1);
            iters.store(n, Ordering::Relaxed);
            running.store(0, Ordering::Relaxed);
            done.store(0, Ordering::Relaxed);
            start.wait();
            // Both threads running before the clock starts (the helper may wake late).
            running.fetch_add(1, Ordering::AcqRel);
            while running.load(Ordering::Acquire) < 2 {
                std::hint::spin_loop();
            }
            let t0 = Instant::now();
            work(seg, n);
            while done.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            t0.elapsed()
        };
        let out = f(&mut round);
        iters.store(0, Ordering::Relaxed);
        start.wait();
        helper.join().expect("helper thread");
        out
    })
}

/// `alloc_2t_scaling` (higher is better): two threads' total alloc+free pairs
/// per second on one class ÷ one thread's. Reported as ns per pair: ours is
/// the two-thread wall time ÷ 2n, the baseline one thread's time ÷ n.
pub fn compare_alloc_2t_scaling(budget: Budget) -> Comparison {
    scaling("alloc_2t_scaling", ours, "two threads (CPU 0, 1) alloc+free on the 1 KiB class of one segment, wall time per pair", budget)
}

/// Like `alloc_2t_scaling`, each thread through its own magazine.
pub fn compare_alloc_magazine_2t_scaling(budget: Budget) -> Comparison {
    scaling(
        "alloc_magazine_2t_scaling",
        ours_magazine,
        "two threads (CPU 0, 1), each with its own magazine, alloc+free on the 1 KiB class of one segment, wall time per pair",
        budget,
    )
}

/// `alloc_magazine_vs_pool`: the magazine path vs `ArrayQueue<u32>` pop + push.
pub fn compare_alloc_magazine_vs_pool(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let seg = segment();
    let q = pool();
    let n = iters(budget);
    let r = interleave(budget.rounds, || ours_magazine(&seg, n), || pool_pop_push(&q, n));
    comparison("alloc_magazine_vs_pool", "crossbeam ArrayQueue<u32> pop + push (a slot pool)", r, 0.8)
}

/// `alloc_magazine_vs_malloc`: the magazine path vs glibc `malloc(1024)` + `free`.
pub fn compare_alloc_magazine_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let seg = segment();
    let n = iters(budget);
    let r = interleave(budget.rounds, || ours_magazine(&seg, n), || malloc_free(n));
    comparison("alloc_magazine_vs_malloc", "glibc malloc(1024) + free", r, 1.0)
}

/// Reference: `iters` × one locked read-modify-write (`lock xadd`) on a word
/// only this thread touches (always in its cache), ns each.
pub fn locked_rmw(iters: u64) -> f64 {
    let word = AtomicU64::new(0);
    per_op(iters, || {
        // AcqRel: the ordering a free's state change needs (SYNC slot-state).
        black_box(word.fetch_add(1, Ordering::AcqRel));
    })
}

/// `locked_rmw_vs_malloc` (reference, no target): one locked RMW vs glibc
/// `malloc(1024)` + `free`. Every free of ours makes one — the CAS that bumps the
/// slot's generation, so that of two racing frees of a handle (or a free and a
/// stale use) exactly one wins — and malloc makes none; so no alloc + free pair of
/// ours can be cheaper than this ratio.
pub fn compare_locked_rmw_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let n = iters(budget);
    let r = interleave(budget.rounds, || locked_rmw(n), || malloc_free(n));
    Comparison::reference(
        "locked_rmw_vs_malloc",
        "one locked read-modify-write on a cached private word (the one every free makes)",
        "glibc malloc(1024) + free",
        r,
    )
}

fn scaling(name: &'static str, work: fn(&Segment, u64) -> f64, ours_label: &'static str, budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let seg = segment();
    let n = iters(budget);
    let medians = with_two_threads(&seg, work, |round| {
        interleave(budget.rounds, || crate::ns(round(n)) / (2 * n) as f64, || work(&seg, n))
    });
    Comparison::rates(name, ours_label, "one thread, same", medians, 1.5)
}

/// Every allocator comparison, in report order.
pub fn all(budget: Budget) -> Vec<Comparison> {
    vec![compare_alloc_vs_pool(budget), compare_alloc_vs_malloc(budget), compare_alloc_2t_scaling(budget)]
}
