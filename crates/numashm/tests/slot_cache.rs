//! The per-thread slot cache: slots never lost or doubled across threads,
//! thread exits and segment switches.

use numashm::{Segment, SegmentConfig};

fn free_slots_of_class0(seg: &Segment) -> usize {
    seg.allocator().census().extents.iter().filter(|e| e.class == 0).map(|e| e.free).sum()
}

#[test]
fn a_thread_that_exits_leaves_its_cached_slots_to_the_others() {
    let seg = std::sync::Arc::new(Segment::create(SegmentConfig::anonymous("cache-exit")).unwrap());
    let all = free_slots_of_class0(&seg);
    let other = seg.clone();
    // `join`, not a scope: a scope may end before the thread's thread-local
    // destructors (which park its cache) have run; `join` waits for them.
    std::thread::spawn(move || {
        let tx = other.sender(0).unwrap();
        let msgs: Vec<_> = (0..3).map(|_| tx.alloc(8).unwrap()).collect();
        drop(msgs); // unsent: into this thread's cache
    })
    .join()
    .unwrap();
    // The thread exited: its three slots wait in the segment's depot, still ours.
    assert_eq!(free_slots_of_class0(&seg), all - 3);
    // Another thread's alloc takes them from there before the shared lists.
    let tx = seg.sender(0).unwrap();
    let m = tx.alloc(8).unwrap();
    assert_eq!(free_slots_of_class0(&seg), all - 3, "served from the depot");
    drop(m);
    drop(tx);
    assert_eq!(seg.flush_cache(), 3);
    assert_eq!(free_slots_of_class0(&seg), all);
}

#[test]
fn a_thread_switching_segments_parks_each_segments_slots_with_it() {
    let a = Segment::create(SegmentConfig::anonymous("cache-a")).unwrap();
    let b = Segment::create(SegmentConfig::anonymous("cache-b")).unwrap();
    let (all_a, all_b) = (free_slots_of_class0(&a), free_slots_of_class0(&b));
    let (ta, tb) = (a.sender(0).unwrap(), b.sender(0).unwrap());
    drop(ta.alloc(8).unwrap()); // cached for a
    drop(tb.alloc(8).unwrap()); // the cache turns to b: a's slot is parked in a's depot
    drop(ta.alloc(8).unwrap()); // and back: b's parked, a's refilled from its depot
    assert_eq!(free_slots_of_class0(&a), all_a - 1, "one slot of a, never two");
    assert_eq!(free_slots_of_class0(&b), all_b - 1);
    assert_eq!(a.flush_cache(), 1);
    assert_eq!(b.flush_cache(), 1);
    assert_eq!((free_slots_of_class0(&a), free_slots_of_class0(&b)), (all_a, all_b));
}

#[test]
fn a_cache_that_outlives_its_segment_is_harmless() {
    {
        let gone = Segment::create(SegmentConfig::anonymous("cache-gone")).unwrap();
        let tx = gone.sender(0).unwrap();
        drop(tx.alloc(8).unwrap()); // cached; the segment's drop reclaims it
    }
    // The thread-local still names the dropped segment; using another one parks
    // those dead handles without touching the unmapped memory.
    let seg = Segment::create(SegmentConfig::anonymous("cache-next")).unwrap();
    let all = free_slots_of_class0(&seg);
    let tx = seg.sender(0).unwrap();
    drop(tx.alloc(8).unwrap());
    assert_eq!(seg.flush_cache(), 1);
    assert_eq!(free_slots_of_class0(&seg), all);
}
