//! Property test: a segment whose words were overwritten at random never makes
//! `attach`, `alloc`, `free`, `resolve` or `reclaim_peer` panic or touch memory out of
//! bounds (miri checks the latter on these heap-backed runs).

use std::sync::Arc;

use numashm_varslot::sync::Ordering;
use numashm_varslot::{Config, Handle, HeapMemory, SegmentMemory, SharedAllocator, Words};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 6 } else { 1024 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn corrupted_segments_yield_errors_not_crashes(
        writes in proptest::collection::vec((any::<u16>(), any::<u64>(), any::<bool>()), 1..12),
        raw_handles in proptest::collection::vec(any::<u64>(), 1..6),
    ) {
        let cfg = Config::new().class(64, 4).class(256, 2).max_extents(2);
        let mem = Arc::new(HeapMemory::new(cfg.min_segment_len() + 2 * 4096).unwrap());
        let owner = SharedAllocator::create(&cfg, mem.clone()).unwrap();
        let live: Vec<Handle> = (0..3).filter_map(|i| owner.alloc(i * 100, 1).ok()).collect();
        let words = owner.words().words();
        for &(at, value, small) in &writes {
            let i = usize::from(at) % words.len();
            // Small values hit the interesting boundaries more often than random ones.
            let v = if small { value % 8 } else { value };
            words[i].store(v, Ordering::SeqCst);
        }
        let guest = SharedAllocator::attach(mem);
        let mut handles: Vec<Handle> = raw_handles.iter().filter_map(|&r| Handle::from_u64(r)).collect();
        handles.extend(&live);
        for a in [Some(&owner), guest.as_ref().ok()].into_iter().flatten() {
            for _ in 0..3 {
                if let Ok(h) = a.alloc(10, 2) {
                    handles.push(h);
                }
            }
            for &h in &handles {
                if let Ok(s) = a.resolve(h) {
                    // In bounds of the memory: resolve checked it against the mapping.
                    prop_assert!(s.len() <= a.memory().max_len());
                }
                let _ = a.state(h);
                let _ = a.mark_in_flight(h, 3);
                let _ = a.free(h);
            }
            let _ = a.reclaim_peer(1);
            let _ = a.release_extent(0, 0);
            let _ = a.grow(1, None);
            let _ = a.inspect();
        }
    }
}
