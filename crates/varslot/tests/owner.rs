//! The single-owner pool allocator on heap memory: each transition, each refusal, memory
//! committed on demand, dedicated extents, fan-out and reader reclaim. Runs under miri.

use numashm_varslot::{
    GiveBack, HandleParts, HeapPoolMemory, OwnedSlot, OwnerAlloc, OwnerConfig, OwnerError,
    PoolMemory, ReturnError,
};

const MIB: usize = 1 << 20;

fn small_cfg() -> OwnerConfig {
    OwnerConfig {
        classes: vec![64, 256, 1024],
        extent_bytes: 4096,
        max_extents: 16,
    }
}

fn pool(reserved: usize, cfg: &OwnerConfig) -> OwnerAlloc<HeapPoolMemory> {
    OwnerAlloc::create(HeapPoolMemory::new(reserved).unwrap(), 0, cfg).unwrap()
}

fn with_gen(h: u64, g: u32) -> u64 {
    HandleParts {
        generation: g,
        ..HandleParts::decode(h)
    }
    .encode()
}

#[test]
fn alloc_picks_the_smallest_fitting_class_and_aligns_slots() {
    let a = pool(MIB, &small_cfg());
    for (len, cap) in [
        (0, 64),
        (1, 64),
        (64, 64),
        (65, 256),
        (256, 256),
        (1000, 1024),
    ] {
        let s = a.alloc(len, true).unwrap();
        assert_eq!(s.capacity, cap, "len {len}");
        assert_eq!(s.offset % if cap >= 128 { 128 } else { 64 }, 0);
        assert!(s.offset >= a.tables_end());
        assert_ne!(HandleParts::decode(s.handle).generation, 0);
    }
    let c = a.census();
    assert_eq!(
        [c.classes[0].owned, c.classes[1].owned, c.classes[2].owned],
        [3, 2, 1]
    );
}

#[test]
fn free_list_is_lifo_and_free_makes_a_new_generation() {
    let a = pool(MIB, &small_cfg());
    let s1 = a.alloc(10, true).unwrap();
    let s2 = a.alloc(10, true).unwrap();
    a.free(s1.handle).unwrap();
    let s3 = a.alloc(10, true).unwrap();
    assert_eq!(s3.offset, s1.offset, "the slot just freed comes out first");
    assert_eq!(
        HandleParts::decode(s3.handle).generation,
        HandleParts::decode(s1.handle).generation + 1
    );
    assert_eq!(
        a.free(s1.handle),
        Err(ReturnError::Stale),
        "the old handle is stale"
    );
    a.free(s3.handle).unwrap();
    a.free(s2.handle).unwrap();
    let c = a.audit().unwrap();
    assert_eq!(
        (c.classes[0].free, c.classes[0].owned),
        (c.classes[0].slots, 0)
    );
}

#[test]
fn each_transition_updates_state_and_counts() {
    let a = pool(MIB, &small_cfg());
    let s = a.alloc(100, true).unwrap();
    let count = |a: &OwnerAlloc<HeapPoolMemory>| {
        let c = a.audit().unwrap().classes[1];
        (c.free, c.owned, c.lent)
    };
    let slots = a.census().classes[1].slots;
    assert_eq!(count(&a), (slots - 1, 1, 0));
    a.lend(s.handle, 0b1).unwrap(); // Owned -> Lent
    assert_eq!(count(&a), (slots - 1, 0, 1));
    a.take_back(s.handle).unwrap(); // Lent -> Owned
    assert_eq!(count(&a), (slots - 1, 1, 0));
    a.lend(s.handle, 0b10).unwrap();
    assert_eq!(a.give_back(s.handle, 1), Ok(GiveBack::Freed)); // Lent -> Free
    assert_eq!(count(&a), (slots, 0, 0));
    let s = a.alloc(100, true).unwrap();
    a.free(s.handle).unwrap(); // Owned -> Free
    assert_eq!(count(&a), (slots, 0, 0));
}

#[test]
fn every_return_error_is_typed() {
    let a = pool(MIB, &small_cfg());
    let s = a.alloc(1, true).unwrap();
    let p = HandleParts::decode(s.handle);
    // Handle 0 and generation 0.
    assert_eq!(
        a.free(0),
        Err(ReturnError::Invalid {
            field: "generation"
        })
    );
    assert_eq!(
        a.give_back(with_gen(s.handle, 0), 0),
        Err(ReturnError::Invalid {
            field: "generation"
        })
    );
    // Out-of-range extent and slot.
    let ext = HandleParts { extent: 1, ..p }.encode();
    assert_eq!(
        a.take_back(ext),
        Err(ReturnError::Invalid { field: "extent" })
    );
    let slot = HandleParts { slot: 64, ..p }.encode(); // 4096 / 64 = 64 slots: 0..64
    assert_eq!(a.lend(slot, 1), Err(ReturnError::Invalid { field: "slot" }));
    assert_eq!(
        a.free(u64::MAX),
        Err(ReturnError::Invalid { field: "extent" })
    );
    // Bad reader id and empty mask.
    assert_eq!(
        a.give_back(s.handle, 64),
        Err(ReturnError::Invalid { field: "reader" })
    );
    assert_eq!(
        a.lend(s.handle, 0),
        Err(ReturnError::Invalid { field: "readers" })
    );
    // Stale generation, and a free slot (never handed out at its generation).
    assert_eq!(
        a.free(with_gen(s.handle, p.generation + 1)),
        Err(ReturnError::Stale)
    );
    let free_slot = HandleParts { slot: 5, ..p }.encode();
    assert_eq!(a.free(free_slot), Err(ReturnError::Stale));
    // Not lent: give_back / take_back of an owned slot.
    assert_eq!(a.give_back(s.handle, 0), Err(ReturnError::NotLent));
    assert_eq!(a.take_back(s.handle), Err(ReturnError::NotLent));
    // Lent: free / lend refused; lent to another reader; double return.
    a.lend(s.handle, 0b110).unwrap();
    assert_eq!(a.free(s.handle), Err(ReturnError::NotOwned));
    assert_eq!(a.lend(s.handle, 1), Err(ReturnError::NotOwned));
    assert_eq!(
        a.give_back(s.handle, 0),
        Err(ReturnError::NotLentTo { reader: 0 })
    );
    assert_eq!(a.give_back(s.handle, 1), Ok(GiveBack::StillLent));
    assert_eq!(
        a.give_back(s.handle, 1),
        Err(ReturnError::NotLentTo { reader: 1 })
    );
    assert_eq!(a.give_back(s.handle, 2), Ok(GiveBack::Freed));
    assert_eq!(
        a.give_back(s.handle, 2),
        Err(ReturnError::Stale),
        "a return after the last is stale"
    );
    // No refusal changed anything.
    let c = a.audit().unwrap();
    assert_eq!((c.classes[0].owned, c.classes[0].lent), (0, 0));
}

#[test]
fn memory_on_demand() {
    let cfg = OwnerConfig::default();
    let at = 4096;
    let a = OwnerAlloc::create(HeapPoolMemory::new(4 * MIB).unwrap(), at, &cfg).unwrap();
    let fresh = a.memory().committed();
    assert!(fresh <= a.tables_end() + MIB, "fresh: {fresh}");
    assert!(fresh < at + 64 * 1024, "only the tables: {fresh}");
    assert_eq!(a.census().extents, 0);
    // First use of the 64-byte class commits its one extent (32 KiB metadata + 64 KiB).
    let s = a.alloc(64, true).unwrap();
    let after = a.memory().committed();
    assert!(
        after > fresh && after <= fresh + 96 * 1024 + 4096,
        "{fresh} -> {after}"
    );
    assert!(s.offset + s.capacity <= after);
    // A second alloc of the same class commits nothing.
    let _ = a.alloc(64, true).unwrap();
    assert_eq!(a.memory().committed(), after);
    // Every default class can be used once in a 4 MiB reservation.
    for &size in &cfg.classes {
        let s = a.alloc(size, true).unwrap();
        assert_eq!(s.capacity, size);
    }
    let c = a.audit().unwrap();
    assert_eq!(c.extents, 8);
    assert!(c.committed <= 4 * MIB);
}

#[test]
fn alloc_without_grow_is_exhausted_and_the_extent_limit_holds() {
    let cfg = OwnerConfig {
        classes: vec![64, 4096],
        extent_bytes: 4096,
        max_extents: 2,
    };
    let a = pool(MIB, &cfg);
    assert_eq!(a.alloc(1, false), Err(OwnerError::Exhausted { class: 0 }));
    let one = a.alloc(4096, true).unwrap(); // 1 slot per extent
    assert_eq!(
        a.alloc(4096, false),
        Err(OwnerError::Exhausted { class: 1 })
    );
    let _two = a.alloc(4096, true).unwrap();
    assert_eq!(
        a.alloc(4096, true),
        Err(OwnerError::Exhausted { class: 1 }),
        "max_extents"
    );
    assert_eq!(a.alloc(1, true), Err(OwnerError::Exhausted { class: 0 }));
    a.free(one.handle).unwrap();
    assert_eq!(a.alloc(4000, false).unwrap().offset, one.offset);
    // Out of reservation rather than extents.
    let cfg = OwnerConfig {
        classes: vec![64, 65536],
        extent_bytes: 65536,
        max_extents: 64,
    };
    let a = pool(256 * 1024, &cfg);
    let mut n = 0;
    while a.alloc(65536, true).is_ok() {
        n += 1;
    }
    assert!((1..4).contains(&n));
    assert_eq!(
        a.alloc(65536, true),
        Err(OwnerError::Exhausted { class: 1 })
    );
    a.audit().unwrap();
}

#[test]
fn oversize_gets_a_dedicated_extent_sized_to_it() {
    let a = pool(8 * MIB, &OwnerConfig::default());
    let before = a.memory().committed();
    let s = a.alloc(MIB + 1, true).unwrap();
    assert_eq!(s.capacity, MIB + 4096, "rounded up to a page");
    assert_eq!(s.offset % 4096, 0);
    assert!(a.memory().committed() >= s.offset + s.capacity);
    assert!(a.memory().committed() - before <= s.capacity + 2 * 4096);
    let c = a.audit().unwrap();
    assert_eq!((c.dedicated.extents, c.dedicated.owned), (1, 1));
    // Freed, it is reused for a request that fits, even without growing.
    a.free(s.handle).unwrap();
    let again = a.alloc(MIB + 100, false).unwrap();
    assert_eq!((again.offset, again.capacity), (s.offset, s.capacity));
    assert_eq!(a.free(s.handle), Err(ReturnError::Stale));
    // A larger one does not fit the freed extent: a new one, or Exhausted without grow.
    a.free(again.handle).unwrap();
    assert_eq!(
        a.alloc(2 * MIB, false),
        Err(OwnerError::Exhausted { class: 8 })
    );
    let big = a.alloc(2 * MIB, true).unwrap();
    assert!(big.offset > s.offset && big.capacity == 2 * MIB);
    a.lend(big.handle, 1).unwrap();
    assert_eq!(a.give_back(big.handle, 0), Ok(GiveBack::Freed));
    assert_eq!(a.audit().unwrap().dedicated.free, 2);
}

#[test]
fn too_large_for_the_reservation_is_a_typed_error() {
    let a = pool(4 * MIB, &OwnerConfig::default());
    match a.alloc(4 * MIB, true) {
        Err(OwnerError::TooLarge { len, max }) => assert!(len == 4 * MIB && max < 4 * MIB),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.alloc(usize::MAX, true),
        Err(OwnerError::TooLarge { .. })
    ));
    // Fits an empty pool, but not after the reservation is used: Exhausted.
    let big = a.alloc(3 * MIB, true).unwrap();
    assert_eq!(
        a.alloc(2 * MIB, true),
        Err(OwnerError::Exhausted { class: 8 })
    );
    a.free(big.handle).unwrap();
    assert_eq!(a.census().committed, a.memory().committed());
}

#[test]
fn fan_out_frees_exactly_at_the_last_reader() {
    let a = pool(MIB, &small_cfg());
    let s = a.alloc(500, true).unwrap();
    let readers = [3u32, 7, 40, 63];
    a.lend(s.handle, readers.iter().fold(0, |m, r| m | 1 << r))
        .unwrap();
    for (i, &r) in readers.iter().enumerate() {
        let last = i == readers.len() - 1;
        assert_eq!(
            a.give_back(s.handle, r),
            Ok(if last {
                GiveBack::Freed
            } else {
                GiveBack::StillLent
            })
        );
        if !last {
            assert_eq!(
                a.give_back(s.handle, r),
                Err(ReturnError::NotLentTo { reader: r }),
                "double return"
            );
            assert_eq!(a.audit().unwrap().classes[2].lent, 1);
        }
    }
    assert_eq!(a.audit().unwrap().classes[2].lent, 0);
    // The slot is handed out again with a new generation.
    let t = a.alloc(500, true).unwrap();
    assert_eq!(t.offset, s.offset);
    assert_ne!(t.handle, s.handle);
}

#[test]
fn reclaim_reader_frees_only_what_it_held_last() {
    let a = pool(MIB, &small_cfg());
    let only = a.alloc(1, true).unwrap();
    let shared = a.alloc(1, true).unwrap();
    let other = a.alloc(1, true).unwrap();
    let kept = a.alloc(1, true).unwrap();
    a.lend(only.handle, 1 << 9).unwrap();
    a.lend(shared.handle, 1 << 9 | 1 << 2).unwrap();
    a.lend(other.handle, 1 << 2).unwrap();
    assert_eq!(a.reclaim_reader(9), 2);
    assert_eq!(
        a.free(only.handle),
        Err(ReturnError::Stale),
        "freed: reader 9 held it last"
    );
    assert_eq!(
        a.give_back(shared.handle, 9),
        Err(ReturnError::NotLentTo { reader: 9 })
    );
    assert_eq!(
        a.give_back(shared.handle, 2),
        Ok(GiveBack::Freed),
        "reader 2 still held it"
    );
    assert_eq!(a.give_back(other.handle, 2), Ok(GiveBack::Freed));
    a.free(kept.handle).unwrap();
    assert_eq!(a.reclaim_reader(9), 0);
    assert_eq!(a.reclaim_reader(64), 0);
    assert_eq!(a.reclaim_reader(u32::MAX), 0);
    let c = a.audit().unwrap();
    assert_eq!(c.classes[0].free, c.classes[0].slots);
}

#[test]
fn slot_ptr_is_checked_and_slots_do_not_overlap() {
    let a = pool(MIB, &small_cfg());
    let slots: Vec<OwnedSlot> = (0..70)
        .map(|i| a.alloc(if i % 2 == 0 { 64 } else { 1024 }, true).unwrap())
        .collect();
    for (i, s) in slots.iter().enumerate() {
        let p = a.slot_ptr(s).unwrap();
        // SAFETY: the slot is ours, `capacity` bytes, and nothing else writes it.
        unsafe { p.as_ptr().write_bytes(i as u8, s.capacity) };
    }
    for (i, s) in slots.iter().enumerate() {
        let p = a.slot_ptr(s).unwrap();
        // SAFETY: as above; only read now.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), s.capacity) };
        assert!(
            bytes.iter().all(|&b| b == i as u8),
            "slot {i} was overwritten"
        );
    }
    a.audit().unwrap();
    let beyond = OwnedSlot {
        handle: 0,
        offset: a.memory().committed(),
        capacity: 1,
    };
    assert_eq!(
        a.slot_ptr(&beyond),
        Err(ReturnError::Invalid { field: "offset" })
    );
    let tables = OwnedSlot {
        handle: 0,
        offset: 0,
        capacity: 64,
    };
    assert_eq!(
        a.slot_ptr(&tables),
        Err(ReturnError::Invalid { field: "offset" })
    );
    let huge = OwnedSlot {
        handle: 0,
        offset: slots[0].offset,
        capacity: usize::MAX,
    };
    assert_eq!(
        a.slot_ptr(&huge),
        Err(ReturnError::Invalid { field: "offset" })
    );
}

#[test]
fn create_refuses_bad_placement() {
    let cfg = OwnerConfig::default();
    let e = OwnerAlloc::create(HeapPoolMemory::new(MIB).unwrap(), 100, &cfg).unwrap_err();
    assert_eq!(e, OwnerError::Misaligned { at: 100 });
    let e = OwnerAlloc::create(HeapPoolMemory::new(8192).unwrap(), 0, &cfg).unwrap_err();
    assert!(matches!(e, OwnerError::TooSmall { needed, reserved: 8192 } if needed > 8192));
    let bad = OwnerConfig {
        classes: vec![64, 32],
        ..cfg
    };
    let e = OwnerAlloc::create(HeapPoolMemory::new(MIB).unwrap(), 0, &bad).unwrap_err();
    assert_eq!(e, OwnerError::Config { field: "classes" });
}

#[test]
fn the_header_is_in_pool_memory() {
    use std::sync::Arc;
    let mem = Arc::new(HeapPoolMemory::new(MIB).unwrap());
    let at = 256;
    let a = OwnerAlloc::create(mem.clone(), at, &small_cfg()).unwrap();
    let _ = a.alloc(1, true).unwrap();
    let word = |i: usize| {
        // SAFETY: the header lies in the committed bytes; u64 reads of bytes that only
        // this thread writes (the allocator, which is idle now).
        unsafe { mem.base().as_ptr().add(at + 8 * i).cast::<u64>().read() }
    };
    assert_eq!(word(0).to_le_bytes(), *b"nshmOWNR");
    assert_eq!(word(1), 1); // version
    assert_eq!(word(2), 3); // classes
    assert_eq!(word(5), 1); // extents used
    assert_eq!(word(7), at as u64);
    assert_eq!(word(8), a.tables_end() as u64);
}

#[test]
fn owner_alloc_is_send() {
    fn send<T: Send>(_: &T) {}
    let a = pool(MIB, &small_cfg());
    send(&a);
    let s = std::thread::spawn(move || a.alloc(1, true).map(|s| s.capacity))
        .join()
        .unwrap();
    assert_eq!(s, Ok(64));
}

#[test]
fn the_front_cache_takes_only_its_own_class_and_depth() {
    let a = pool(4 << 20, &small_cfg());
    let c = a.class_for(100).unwrap();
    let other = a.class_for(1).unwrap();
    assert_ne!(c, other);
    let s = a.alloc(100, true).unwrap();
    // `s` and `slots` came from `a.alloc` and were never lent; a slot the cache took is
    // not used again (only compared).
    let push = |c, x| {
        // SAFETY: as said above.
        unsafe { a.push_cached(c, x) }
    };
    assert_eq!(push(other, s), Err(s), "wrong class refused");
    assert_eq!(push(usize::MAX, s), Err(s), "no such class refused");
    assert_eq!(push(c, s), Ok(()));
    assert_eq!(a.cached(), 1);
    assert_eq!(a.alloc(100, false).unwrap(), s, "the cached slot comes back first");
    // Fill the cache to its depth: the next push is refused and the caller keeps the slot.
    let slots: Vec<_> = (0..9).map(|_| a.alloc(100, true).unwrap()).collect();
    let pushed = slots.iter().take_while(|&&x| push(c, x).is_ok()).count();
    assert_eq!(pushed, 8, "depth");
    assert_eq!(push(c, slots[8]), Err(slots[8]));
    a.free(slots[8].handle).unwrap();
    a.free(s.handle).unwrap();
    // LIFO, each slot once, and the census counts cached slots as Owned.
    let popped: Vec<_> = std::iter::from_fn(|| a.pop_cached(c)).collect();
    assert_eq!(popped, slots[..8].iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(a.audit().unwrap(), a.census());
}
