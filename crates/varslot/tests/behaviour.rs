//! Behaviour of the allocator on heap memory (runs under miri).

use std::collections::HashSet;
use std::sync::Arc;

use numashm_varslot::sync::Ordering;
use numashm_varslot::{
    AllocError, Allocator, AttachError, Config, GrowError, Handle, HandleError, HeapAllocator, HeapMemory,
    HeapWords, ReleaseError, SegmentMemory, SharedAllocator, SlotState, Words,
};

fn small() -> Config {
    Config::new().class(64, 8).class(256, 4).max_extents(4)
}

#[test]
fn alloc_picks_the_smallest_class_that_fits() {
    let a = HeapAllocator::new(&small()).unwrap();
    assert_eq!(a.alloc(0, 0).unwrap().class(), 0);
    assert_eq!(a.alloc(64, 0).unwrap().class(), 0);
    assert_eq!(a.alloc(65, 0).unwrap().class(), 1);
    assert_eq!(a.alloc(257, 0), Err(AllocError::TooLarge { len: 257, max: 256 }));
}

#[test]
fn every_slot_is_handed_out_once_until_exhausted() {
    let a = HeapAllocator::new(&small()).unwrap();
    let mut seen = HashSet::new();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let h = a.alloc(1, 1).unwrap();
        assert!(seen.insert((h.extent(), h.slot())));
        handles.push(h);
    }
    assert_eq!(a.alloc(1, 1), Err(AllocError::Exhausted { class: 0 }));
    assert_eq!(a.take_grow_requests(), 1);
    for h in handles {
        a.free(h).unwrap();
    }
    for _ in 0..8 {
        a.alloc(1, 1).unwrap();
    }
}

#[test]
fn stale_handle_is_rejected() {
    let a = HeapAllocator::new(&small()).unwrap();
    let h = a.alloc(1, 0).unwrap();
    a.free(h).unwrap();
    let h2 = a.alloc(1, 0).unwrap();
    assert_eq!((h2.extent(), h2.slot()), (h.extent(), h.slot()));
    assert_eq!(a.free(h), Err(HandleError::Stale));
    assert!(matches!(a.resolve(h), Err(HandleError::Stale)));
    assert_eq!(a.mark_in_flight(h, 1), Err(HandleError::Stale));
    a.free(h2).unwrap();
}

#[test]
fn forged_handles_are_errors_not_accesses() {
    let a = HeapAllocator::new(&small()).unwrap();
    let h = a.alloc(1, 0).unwrap();
    let raw = h.to_u64();
    let class15 = Handle::from_u64(raw | 15 << 60).unwrap();
    assert_eq!(a.free(class15), Err(HandleError::Invalid { field: "class" }));
    let ext3 = Handle::from_u64(raw | 3 << 50).unwrap();
    assert_eq!(a.free(ext3), Err(HandleError::Invalid { field: "extent" }));
    let slot9 = Handle::from_u64(raw | 9 << 30).unwrap();
    assert_eq!(a.free(slot9), Err(HandleError::Invalid { field: "slot" }));
    // The free slot 1 has generation 1 too: a forged handle to it is stale.
    let free_slot = Handle::from_u64(raw | 1 << 30).unwrap();
    assert_eq!(a.free(free_slot), Err(HandleError::Stale));
    a.free(h).unwrap();
}

#[test]
fn state_machine_free_allocated_in_flight_free() {
    let a = HeapAllocator::new(&small()).unwrap();
    let h = a.alloc(1, 1).unwrap();
    assert_eq!(a.take(h, 2), Err(HandleError::WrongState { found: SlotState::Allocated }));
    a.mark_in_flight(h, 2).unwrap();
    assert_eq!(a.mark_in_flight(h, 3), Err(HandleError::WrongState { found: SlotState::InFlight }));
    assert_eq!(a.state(h), Ok((SlotState::InFlight, 2)));
    assert!(a.resolve(h).is_ok());
    a.free(h).unwrap();
    assert_eq!(a.state(h), Err(HandleError::Stale));
}

#[test]
fn slot_bytes_survive_until_free() {
    let a = HeapAllocator::new(&small()).unwrap();
    let hs: Vec<Handle> = (0..8).map(|_| a.alloc(64, 0).unwrap()).collect();
    for (i, &h) in hs.iter().enumerate() {
        let mut s = a.resolve(h).unwrap();
        // SAFETY: each handle is ours alone; no other reference to its slot.
        unsafe { s.as_mut_slice().fill(i as u8) };
    }
    for (i, &h) in hs.iter().enumerate() {
        let s = a.resolve(h).unwrap();
        // SAFETY: as above, and nobody writes meanwhile.
        assert!(unsafe { s.as_slice() }.iter().all(|&b| b == i as u8));
    }
}

#[test]
fn reclaim_frees_only_that_peer_and_only_once() {
    let a = HeapAllocator::new(&small()).unwrap();
    let p5: Vec<Handle> = (0..3).map(|_| a.alloc(1, 5).unwrap()).collect();
    let p6 = a.alloc(1, 6).unwrap();
    let sent = a.alloc(1, 6).unwrap();
    a.mark_in_flight(sent, 5).unwrap();
    assert_eq!(a.reclaim_peer(5), 4);
    assert_eq!(a.reclaim_peer(5), 0);
    for h in p5 {
        assert_eq!(a.free(h), Err(HandleError::Stale));
    }
    assert_eq!(a.free(sent), Err(HandleError::Stale));
    a.free(p6).unwrap();
}

#[test]
fn grown_extent_is_used_after_exhaustion() {
    let a = HeapAllocator::new(&small()).unwrap();
    let before = a.inspect();
    let _hs: Vec<Handle> = (0..8).map(|_| a.alloc(1, 0).unwrap()).collect();
    assert!(a.alloc(1, 0).is_err());
    assert_eq!(a.grow(0, Some(3)), Ok(1));
    let h = a.alloc(1, 0).unwrap();
    assert_eq!(h.extent(), 1);
    let after = a.inspect();
    assert_eq!(after.committed_bytes, before.committed_bytes + 4096);
    assert_eq!(after.epoch, before.epoch + 1);
    assert_eq!(a.extent_info(0, 1), Some((Some(3), false)));
    for _ in 0..2 {
        a.grow(0, None).unwrap();
    }
    assert_eq!(a.grow(0, None), Err(GrowError::Full { class: 0 }));
    assert_eq!(a.grow(9, None), Err(GrowError::NoClass { class: 9 }));
}

#[test]
fn grow_stops_at_max_len() {
    let cfg = Config::new().class(64, 64).max_extents(8);
    let a = Allocator::create_with(&cfg, HeapWords::new(cfg.control_len() / 8), HeapMemory::new(2 * 4096).unwrap()).unwrap();
    a.grow(0, None).unwrap();
    assert!(matches!(a.grow(0, None), Err(GrowError::OutOfSpace { .. })));
}

#[test]
fn released_extent_keeps_its_slots_and_is_recommitted() {
    let a = HeapAllocator::new(&small()).unwrap();
    let h = a.alloc(1, 0).unwrap();
    assert_eq!(a.release_extent(0, 0), Err(ReleaseError::NotEmpty));
    let mut s = a.resolve(h).unwrap();
    // SAFETY: `h` is ours alone.
    unsafe { s.as_mut_slice().fill(0xaa) };
    a.free(h).unwrap();
    let committed = a.inspect().committed_bytes;
    a.release_extent(0, 0).unwrap();
    assert_eq!(a.release_extent(0, 0), Err(ReleaseError::AlreadyReleased));
    assert_eq!(a.inspect().committed_bytes, committed - 4096);
    assert_eq!(a.extent_info(0, 0), Some((None, true)));
    assert!(matches!(a.alloc(1, 0), Err(AllocError::Exhausted { .. })));
    assert_eq!(a.free(h), Err(HandleError::Stale));
    assert_eq!(a.grow(0, None), Ok(0));
    assert_eq!(a.inspect().committed_bytes, committed);
    let hs: Vec<Handle> = (0..8).map(|_| a.alloc(1, 0).unwrap()).collect();
    assert!(hs.iter().all(|x| x.extent() == 0));
    // Generations survived the release: the old handle stays dead.
    assert!(hs.iter().all(|x| *x != h));
    // Released bytes read as zero.
    let back = hs.iter().find(|x| x.slot() == h.slot()).unwrap();
    // SAFETY: ours alone.
    assert!(unsafe { a.resolve(*back).unwrap().as_slice() }.iter().all(|&b| b == 0));
}

#[test]
fn guest_cannot_grow_or_release() {
    let cfg = small();
    let words = Arc::new(HeapWords::new(cfg.control_len() / 8));
    let mem = Arc::new(HeapMemory::new(cfg.data_len(4)).unwrap());
    let owner = Allocator::create_with(&cfg, words.clone(), mem.clone()).unwrap();
    let guest = Allocator::attach_with(words, mem).unwrap();
    assert!(!guest.is_owner());
    assert_eq!(guest.grow(0, None), Err(GrowError::NotOwner));
    assert_eq!(guest.release_extent(0, 0), Err(ReleaseError::NotOwner));
    let h = guest.alloc(1, 2).unwrap();
    owner.mark_in_flight(h, 3).unwrap();
    guest.free(h).unwrap();
}

#[test]
fn alloc_on_prefers_the_nearest_node() {
    let a = HeapAllocator::new(&Config::new().class(64, 1).max_extents(3).node(Some(0))).unwrap();
    a.grow(0, Some(2)).unwrap();
    a.grow(0, Some(1)).unwrap();
    let mut order = [0u32; 3];
    let order = numashm_varslot::nodes_by_distance(&[21, 10, 15], &mut order);
    assert_eq!(order, &[1, 2, 0]);
    assert_eq!(a.alloc_on(1, 0, order).unwrap().extent(), 2);
    assert_eq!(a.alloc_on(1, 0, order).unwrap().extent(), 1);
    assert_eq!(a.alloc_on(1, 0, order).unwrap().extent(), 0);
    assert!(a.alloc_on(1, 0, order).is_err());
}

#[test]
fn threads_never_share_a_slot() {
    let a = Arc::new(HeapAllocator::new(&Config::new().class(64, 16).max_extents(1)).unwrap());
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    let threads: Vec<_> = (0..3u32)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    let Ok(h) = a.alloc(1, t) else { continue };
                    let mut s = a.resolve(h).unwrap();
                    // SAFETY: the slot is ours until we free it.
                    let b = unsafe { s.as_mut_slice() };
                    b[..8].copy_from_slice(&(i as u64 ^ u64::from(t) << 56).to_le_bytes());
                    std::hint::spin_loop();
                    assert_eq!(b[..8], (i as u64 ^ u64::from(t) << 56).to_le_bytes());
                    a.free(h).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all: Vec<Handle> = (0..16).map(|_| a.alloc(1, 0).unwrap()).collect();
    assert_eq!(all.iter().map(|h| h.slot()).collect::<HashSet<_>>().len(), 16);
}

#[test]
fn double_free_race_frees_once() {
    let rounds = if cfg!(miri) { 5 } else { 2_000 };
    let a = Arc::new(HeapAllocator::new(&Config::new().class(64, 2)).unwrap());
    for _ in 0..rounds {
        let h = a.alloc(1, 0).unwrap();
        let ts: Vec<_> = (0..2).map(|_| {
            let a = a.clone();
            std::thread::spawn(move || a.free(h).is_ok())
        }).collect();
        let wins = ts.into_iter().map(|t| t.join().unwrap() as u32).sum::<u32>();
        assert_eq!(wins, 1);
    }
    let x = a.alloc(1, 0).unwrap();
    let y = a.alloc(1, 0).unwrap();
    assert_ne!(x.slot(), y.slot());
}

// ---- hostile segments -------------------------------------------------------------

fn shared_pair(cfg: &Config) -> (SharedAllocator<Arc<HeapMemory>>, Arc<HeapMemory>) {
    let mem = Arc::new(HeapMemory::new(cfg.min_segment_len() + 4 * 4096).unwrap());
    (SharedAllocator::create(cfg, mem.clone()).unwrap(), mem)
}

fn corrupt_and_attach(word: usize, value: u64) -> AttachError {
    let cfg = small();
    let (owner, mem) = shared_pair(&cfg);
    owner.words().words()[word].store(value, Ordering::SeqCst);
    SharedAllocator::attach(mem).unwrap_err()
}

#[test]
fn attach_validates_a_good_segment() {
    let cfg = small();
    let (owner, mem) = shared_pair(&cfg);
    let guest = SharedAllocator::attach(mem).unwrap();
    let h = guest.alloc(200, 4).unwrap();
    assert_eq!(owner.state(h), Ok((SlotState::Allocated, 4)));
    owner.free(h).unwrap();
}

#[test]
fn attach_names_the_bad_field() {
    let field = |e: AttachError| match e {
        AttachError::BadField { field, .. } => field,
        other => panic!("{other}"),
    };
    assert_eq!(field(corrupt_and_attach(0, 1)), "magic");
    assert_eq!(field(corrupt_and_attach(1, 99)), "version");
    assert_eq!(field(corrupt_and_attach(2, 0)), "class_count");
    assert_eq!(field(corrupt_and_attach(2, 3)), "class.slot_size");
    assert_eq!(field(corrupt_and_attach(3, 5000)), "max_extents");
    assert_eq!(field(corrupt_and_attach(4, 1 << 40)), "control_words");
    assert_eq!(field(corrupt_and_attach(5, 4097)), "data_start");
    assert_eq!(field(corrupt_and_attach(6, u64::MAX)), "max_len");
    assert_eq!(field(corrupt_and_attach(7, 1)), "data_end");
    assert_eq!(field(corrupt_and_attach(16, 100)), "class.slot_size");
    assert_eq!(field(corrupt_and_attach(16 + 8 + 1, 0)), "class.slots_per_extent");
    assert_eq!(field(corrupt_and_attach(16 + 2, 77)), "class.extent_count");
}

#[test]
fn attach_rejects_overlapping_and_outside_extents() {
    let cfg = small();
    let (owner, mem) = shared_pair(&cfg);
    // Class 1, extent 0 record: move it onto class 0's extent.
    let ext_base = 32; // round_up(16 + 2 * 8, 16)
    let c0 = owner.words().words()[ext_base + 8].load(Ordering::SeqCst);
    let c1_off = ext_base + 4 * 16 + 8;
    owner.words().words()[c1_off].store(c0, Ordering::SeqCst);
    let e = SharedAllocator::attach(mem.clone()).unwrap_err();
    assert!(matches!(e, AttachError::BadField { field: "extent.offset", .. }), "{e}");
    owner.words().words()[c1_off].store(1 << 50, Ordering::SeqCst);
    let e = SharedAllocator::attach(mem).unwrap_err();
    assert!(matches!(e, AttachError::BadField { field: "extent.offset", at: 4, .. }), "{e}");
}

#[test]
fn corrupt_metadata_is_an_error_not_a_crash() {
    let cfg = small();
    let (owner, _mem) = shared_pair(&cfg);
    let h = owner.alloc(1, 0).unwrap();
    let words = owner.words().words();
    let ext_base = 32;
    // Garbage in the extent offset: resolve refuses.
    let off = words[ext_base + 8].load(Ordering::SeqCst);
    words[ext_base + 8].store(u64::MAX - 5, Ordering::SeqCst);
    assert!(matches!(owner.resolve(h), Err(HandleError::Corrupt { .. })));
    words[ext_base + 8].store(off, Ordering::SeqCst);
    assert!(owner.resolve(h).is_ok());
    // A free-list head pointing past the extent: alloc reports corruption.
    words[ext_base].store(1000, Ordering::SeqCst);
    assert!(matches!(owner.alloc(1, 0), Err(AllocError::Corrupt { .. })));
    // A head pointing at an allocated slot: corruption too.
    words[ext_base].store(u64::from(h.slot() as u32), Ordering::SeqCst);
    assert!(matches!(owner.alloc(1, 0), Err(AllocError::Corrupt { .. })));
    // Garbage everywhere in the control area never panics.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for w in words.iter().skip(16) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.store(x, Ordering::SeqCst);
    }
    for _ in 0..20 {
        let _ = owner.alloc(1, 0);
        let _ = owner.free(h);
        let _ = owner.resolve(h);
    }
    let _ = owner.reclaim_peer(0);
    let _ = owner.release_extent(0, 0);
}

#[test]
fn guest_refreshes_to_see_owner_growth() {
    // A memory whose guest view lags until `refresh`.
    struct Lagging {
        inner: Arc<HeapMemory>,
        seen: numashm_varslot::sync::AtomicUsize,
        refreshes: numashm_varslot::sync::AtomicUsize,
    }
    // SAFETY: forwards to `HeapMemory`; `mapped_len` reports a value that only grows
    // and never exceeds the inner mapped length.
    #[allow(unsafe_code)]
    unsafe impl SegmentMemory for Lagging {
        fn base(&self) -> core::ptr::NonNull<u8> {
            self.inner.base()
        }
        fn mapped_len(&self) -> usize {
            self.seen.load(Ordering::SeqCst)
        }
        fn max_len(&self) -> usize {
            self.inner.max_len()
        }
        fn grow_to(&self, _: usize) -> Result<(), numashm_varslot::MemoryError> {
            Err(numashm_varslot::MemoryError::Unsupported { op: "grow" })
        }
        fn refresh(&self) -> Result<bool, numashm_varslot::MemoryError> {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            let now = self.inner.mapped_len();
            Ok(self.seen.swap(now, Ordering::SeqCst) != now)
        }
        fn place(&self, _: usize, _: usize, _: Option<u32>) -> Result<(), numashm_varslot::MemoryError> {
            Ok(())
        }
        #[allow(unsafe_code)]
        unsafe fn release(&self, o: usize, l: usize) -> Result<(), numashm_varslot::MemoryError> {
            // SAFETY: forwarded contract.
            unsafe { self.inner.release(o, l) }
        }
    }
    let cfg = Config::new().class(64, 1).max_extents(2);
    let (owner, mem) = shared_pair(&cfg);
    let guest_mem = Lagging {
        inner: mem,
        seen: numashm_varslot::sync::AtomicUsize::new(0),
        refreshes: numashm_varslot::sync::AtomicUsize::new(0),
    };
    let guest = SharedAllocator::attach(guest_mem).unwrap();
    let _ = owner.alloc(1, 0).unwrap();
    owner.grow(0, None).unwrap();
    let h = owner.alloc(1, 0).unwrap();
    assert_eq!(h.extent(), 1);
    let before = guest.memory().refreshes.load(Ordering::SeqCst);
    assert!(guest.resolve(h).is_ok());
    assert_eq!(guest.memory().refreshes.load(Ordering::SeqCst), before + 1);
    assert_eq!(guest.grow(0, None), Err(GrowError::NotOwner));
}

#[test]
fn tampered_shared_words_do_not_steer_the_owner() {
    let cfg = Config::new().class(64, 64).max_extents(3);
    let (owner, mem) = shared_pair(&cfg);
    let words = owner.words().words();
    let ext0 = 32; // class 0, extent 0 record
    let good = words[ext0 + 8].load(Ordering::SeqCst);
    // A guest rewrites data_end and extent 0's offset (onto the control area).
    words[7].store(0, Ordering::SeqCst);
    words[ext0 + 8].store(0, Ordering::SeqCst);
    // Releasing extent 0 uses the owner's own offset record (would punch the header
    // otherwise), and recommit repairs the shared word.
    owner.release_extent(0, 0).unwrap();
    assert_eq!(owner.grow(0, None), Ok(0));
    assert_eq!(words[ext0 + 8].load(Ordering::SeqCst), good);
    // Growth appends after the owner's own data end, not at the tampered one.
    assert_eq!(owner.grow(0, None), Ok(1));
    words[7].store(owner.memory().mapped_len() as u64, Ordering::SeqCst);
    let guest = SharedAllocator::attach(mem).unwrap();
    assert_eq!(guest.extent_count(0), 2);
    assert_eq!(owner.inspect().reserved_bytes as usize, owner.memory().max_len());
}

#[test]
fn magazine_threads_never_share_a_slot_and_hide_nothing() {
    let a = Arc::new(HeapAllocator::new(&Config::new().class(64, 16).max_extents(1)).unwrap());
    let rounds = if cfg!(miri) { 20 } else { 20_000 };
    let threads: Vec<_> = (0..3u32)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut m = a.magazine(t, 4);
                for i in 0..rounds {
                    let Ok(h) = m.alloc(1) else { continue };
                    let mut s = a.resolve(h).unwrap();
                    // SAFETY: the slot is ours until we free it.
                    let b = unsafe { s.as_mut_slice() };
                    b[..8].copy_from_slice(&(i as u64 ^ u64::from(t) << 56).to_le_bytes());
                    assert_eq!(b[..8], (i as u64 ^ u64::from(t) << 56).to_le_bytes());
                    m.free(h).unwrap();
                    assert_eq!(m.free(h), Err(HandleError::Stale));
                }
                m.cached()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() <= 4);
    }
    // Magazines were dropped (flushed): every slot is back.
    let all: Vec<Handle> = (0..16).map(|_| a.alloc(1, 0).unwrap()).collect();
    assert_eq!(all.iter().map(|h| h.slot()).collect::<HashSet<_>>().len(), 16);
    for h in all {
        a.free(h).unwrap();
    }
    // A dead peer's cached slots are reclaimed like its allocated ones.
    let mut m = a.magazine(7, 4);
    let hs: Vec<Handle> = (0..3).map(|_| m.alloc(1).unwrap()).collect();
    for h in &hs[..2] {
        m.free(*h).unwrap();
    }
    assert_eq!(m.cached(), 2);
    assert_eq!(a.reclaim_peer(7), 3);
    // The magazine notices (a protocol breach while alive) and never double-hands.
    let fresh: Vec<Handle> = (0..16).map(|_| a.alloc(1, 0).unwrap()).collect();
    assert!(m.alloc(1).is_err());
    drop(m);
    assert_eq!(fresh.iter().map(|h| h.slot()).collect::<HashSet<_>>().len(), 16);
}

#[test]
fn magazine_free_takes_every_state_a_handle_can_be_in() {
    let a = HeapAllocator::new(&small()).unwrap();
    let mut m = a.magazine(5, 4);
    // InFlight to us (a received message): cached, Allocated to us afterwards.
    let sent = a.alloc(1, 9).unwrap();
    a.mark_in_flight(sent, 5).unwrap();
    m.free(sent).unwrap();
    assert_eq!(a.state(sent), Err(HandleError::Stale));
    let again = m.alloc(1).unwrap();
    assert_eq!((again.slot(), a.state(again)), (sent.slot(), Ok((SlotState::Allocated, 5))));
    // Allocated to another peer: freed through our cache all the same (any holder may free).
    let theirs = a.alloc(1, 9).unwrap();
    m.free(theirs).unwrap();
    assert_eq!(m.free(theirs), Err(HandleError::Stale));
    // Stale, forged and out-of-range handles: errors, nothing cached.
    let before = m.cached();
    assert_eq!(m.free(sent), Err(HandleError::Stale));
    let beyond = Handle::from_u64(again.to_u64() + (3 << 50)).unwrap(); // extent 3: not published
    assert!(matches!(m.free(beyond), Err(HandleError::Invalid { .. })));
    let class = Handle::from_u64(again.to_u64() | (15 << 60)).unwrap();
    assert!(matches!(m.free(class), Err(HandleError::Invalid { .. })));
    assert_eq!(m.cached(), before);
    m.free(again).unwrap();
}

#[test]
fn two_magazines_racing_to_free_one_handle_cache_it_once() {
    let rounds = if cfg!(miri) { 10 } else { 5_000 };
    let a = Arc::new(HeapAllocator::new(&Config::new().class(64, 4)).unwrap());
    for _ in 0..rounds {
        let h = a.alloc(1, 1).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2u32)
            .map(|t| {
                let (a, barrier) = (a.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut m = a.magazine(10 + t, 4);
                    barrier.wait();
                    let won = m.free(h).is_ok();
                    (won, m.cached())
                })
            })
            .collect();
        let results: Vec<(bool, usize)> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.0).count(), 1, "exactly one free wins");
        assert_eq!(results.iter().map(|r| r.1).sum::<usize>(), 1, "cached once");
        // Both magazines dropped: the slot is free again, once.
        let all: Vec<Handle> = (0..4).map(|_| a.alloc(1, 0).unwrap()).collect();
        assert!(a.alloc(1, 0).is_err());
        for h in all {
            a.free(h).unwrap();
        }
    }
}
