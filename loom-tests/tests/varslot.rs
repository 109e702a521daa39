//! Loom models of the varslot allocator (heap words and memory, loom atomics).
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --test varslot
//! ```
#![cfg(numashm_loom)]

use std::collections::HashSet;
use std::sync::Arc;

use loom::thread;
use numashm_varslot::{AllocError, Config, Handle, HandleError, HeapAllocator};

fn allocator(slots: usize, max_extents: u32) -> Arc<HeapAllocator> {
    Arc::new(HeapAllocator::new(&Config::new().class(64, slots).max_extents(max_extents)).unwrap())
}

/// Allocate until exhausted; assert every slot is distinct; return the count.
fn drain(a: &HeapAllocator) -> usize {
    let mut seen = HashSet::new();
    loop {
        match a.alloc(1, 0) {
            Ok(h) => assert!(seen.insert((h.extent(), h.slot())), "slot handed out twice: {h:?}"),
            Err(AllocError::Exhausted { .. }) => return seen.len(),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn alloc_free_two_threads() {
    loom::model(|| {
        let a = allocator(2, 1);
        let ts: Vec<_> = (0..2)
            .map(|t| {
                let a = a.clone();
                thread::spawn(move || {
                    let h = a.alloc(1, t).unwrap();
                    assert!(a.resolve(h).is_ok());
                    a.free(h).unwrap();
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(drain(&a), 2);
    });
}

#[test]
fn three_threads_one_slot_short() {
    loom::model(|| {
        let a = allocator(2, 1);
        let ts: Vec<_> = (0..3)
            .map(|t| {
                let a = a.clone();
                thread::spawn(move || a.alloc(1, t).ok())
            })
            .collect();
        let got: Vec<Handle> = ts.into_iter().filter_map(|t| t.join().unwrap()).collect();
        assert_eq!(got.len(), 2, "two slots, three takers: exactly two win");
        assert_ne!(got[0].slot(), got[1].slot());
        assert_eq!(drain(&a), 0);
    });
}

/// The ABA interleaving: while one thread is about to pop A (having read next = B),
/// another pops A, pops B and pushes A back. The first thread's CAS must fail (the tag
/// moved) or B would be handed out twice.
#[test]
fn aba_stale_pop_fails() {
    loom::model(|| {
        let a = allocator(3, 1);
        let a1 = a.clone();
        let t1 = thread::spawn(move || a1.alloc(1, 1).unwrap());
        let a2 = a.clone();
        let t2 = thread::spawn(move || {
            let x = a2.alloc(1, 2).unwrap();
            let y = a2.alloc(1, 2).unwrap();
            a2.free(x).unwrap();
            y
        });
        let h1 = t1.join().unwrap();
        let h2 = t2.join().unwrap();
        assert_ne!(h1.slot(), h2.slot());
        // One slot is still free, exactly once.
        assert_eq!(drain(&a), 1);
    });
}

#[test]
fn double_free_race_frees_once() {
    loom::model(|| {
        let a = allocator(2, 1);
        let h = a.alloc(1, 0).unwrap();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                thread::spawn(move || a.free(h))
            })
            .collect();
        let results: Vec<_> = ts.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.contains(&Err(HandleError::Stale)));
        assert_eq!(drain(&a), 2);
    });
}

/// The owner publishes a new extent while another thread allocates: the allocator either
/// finds the class exhausted or gets a slot of the new, fully initialised extent.
#[test]
fn growth_published_while_allocating() {
    loom::model(|| {
        let a = allocator(1, 2);
        let first = a.alloc(1, 0).unwrap();
        let owner = a.clone();
        let grower = thread::spawn(move || owner.grow(0, None).unwrap());
        let a2 = a.clone();
        let taker = thread::spawn(move || match a2.alloc(1, 7) {
            Ok(h) => {
                assert_eq!(h.extent(), 1);
                assert!(a2.resolve(h).is_ok());
                a2.free(h).unwrap();
                true
            }
            Err(AllocError::Exhausted { class: 0 }) => false,
            Err(e) => panic!("{e}"),
        });
        assert_eq!(grower.join().unwrap(), 1);
        taker.join().unwrap();
        a.free(first).unwrap();
        assert_eq!(drain(&a), 2);
    });
}

/// A peer's `free` races a reclaimer (and a second reclaimer): each slot is freed once.
#[test]
fn reclaim_racing_free() {
    loom::model(|| {
        let a = allocator(2, 1);
        let h = a.alloc(1, 5).unwrap();
        let a1 = a.clone();
        let freer = thread::spawn(move || a1.free(h).is_ok());
        let a2 = a.clone();
        let reclaimer = thread::spawn(move || a2.reclaim_peer(5));
        let freed = freer.join().unwrap() as usize;
        let reclaimed = reclaimer.join().unwrap();
        assert_eq!(freed + reclaimed, 1);
        assert_eq!(drain(&a), 2);
    });
}

#[test]
fn two_reclaimers_reclaim_once() {
    loom::model(|| {
        let a = allocator(2, 1);
        let _h = a.alloc(1, 5).unwrap();
        let _k = a.alloc(1, 5).unwrap();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                thread::spawn(move || a.reclaim_peer(5))
            })
            .collect();
        let total: usize = ts.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 2);
        assert_eq!(drain(&a), 2);
    });
}

/// The owner releases an extent while another thread allocates and frees in it: the
/// release either finds a slot in use (NotEmpty) or wins, and then the allocation saw
/// the extent empty. After a recommit every slot is there exactly once.
#[test]
fn release_racing_alloc_free() {
    loom::model(|| {
        let a = allocator(2, 1);
        let a1 = a.clone();
        let user = thread::spawn(move || match a1.alloc(1, 3) {
            Ok(h) => {
                a1.free(h).unwrap();
                true
            }
            Err(AllocError::Exhausted { .. }) => false,
            Err(e) => panic!("{e}"),
        });
        let released = a.release_extent(0, 0);
        let used = user.join().unwrap();
        match released {
            Ok(()) => {
                assert_eq!(a.grow(0, None), Ok(0));
            }
            Err(numashm_varslot::ReleaseError::NotEmpty) => assert!(used),
            Err(e) => panic!("{e}"),
        }
        assert_eq!(drain(&a), 2);
    });
}

#[test]
fn alloc_free_three_threads() {
    loom::model(|| {
        let a = allocator(2, 1);
        let ts: Vec<_> = (0..3)
            .map(|t| {
                let a = a.clone();
                thread::spawn(move || {
                    if let Ok(h) = a.alloc(1, t) {
                        a.free(h).unwrap();
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(drain(&a), 2);
    });
}

/// A magazine frees (caches) and flushes a slot while a reclaimer reclaims its peer:
/// the slot ends up on the free list exactly once.
#[test]
fn magazine_free_racing_reclaim() {
    loom::model(|| {
        let a = allocator(2, 1);
        let h = a.alloc(1, 5).unwrap();
        let a1 = a.clone();
        let user = thread::spawn(move || {
            let mut m = a1.magazine(5, 2);
            let freed = m.free(h).is_ok();
            drop(m); // flush
            freed
        });
        let a2 = a.clone();
        let reclaimer = thread::spawn(move || a2.reclaim_peer(5));
        let freed = user.join().unwrap();
        let reclaimed = reclaimer.join().unwrap();
        assert!(freed || reclaimed == 1);
        assert_eq!(drain(&a), 2);
    });
}
