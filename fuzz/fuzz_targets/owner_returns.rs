//! The single-owner pool allocator fed arbitrary u64 handles and reader ids through
//! give_back / take_back / free / lend, interleaved with real allocations and
//! returns: every call ends in Ok or a typed error (no panic), and after every step
//! `audit` confirms the counters, states and free lists agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};

fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let cfg = OwnerConfig {
        classes: vec![64, 256, 1024],
        extent_bytes: 1024,
        max_extents: 8,
    };
    let Ok(mem) = HeapPoolMemory::new(64 * 1024) else {
        return;
    };
    let Ok(a) = OwnerAlloc::create(mem, 0, &cfg) else {
        return;
    };
    let mut handles: Vec<u64> = Vec::new();
    while let Some([op]) = take::<1>(&mut data) {
        let Some(v) = take::<8>(&mut data) else {
            return;
        };
        let v = u64::from_le_bytes(v);
        // High bit: an arbitrary handle; otherwise one the allocator handed out.
        let h = if op & 0x80 != 0 {
            v
        } else {
            handles
                .get(v as usize % handles.len().max(1))
                .copied()
                .unwrap_or(v)
        };
        let reader = (v >> 40) as u32 % 70; // mostly valid ids, some >= 64
        match (op & 0x7f) % 7 {
            0 => {
                let len = (v % 6000) as usize;
                if let Ok(s) = a.alloc(len, v & 1 << 63 == 0) {
                    assert!(s.capacity >= len);
                    assert!(a.slot_ptr(&s).is_ok());
                    handles.push(s.handle);
                }
            }
            1 => {
                let _ = a.free(h);
            }
            2 => {
                let _ = a.lend(h, v >> 48);
            }
            3 => {
                let _ = a.give_back(h, reader);
            }
            4 => {
                let _ = a.take_back(h);
            }
            5 => {
                let _ = a.reclaim_reader(reader);
            }
            _ => {
                let _ = a.give_back(v, (v >> 32) as u32);
            }
        }
        let c = a.audit().expect("owner tables consistent");
        for k in c.classes.iter().chain([&c.dedicated]) {
            assert_eq!(k.free + k.owned + k.lent, k.slots);
        }
        assert!(c.committed <= c.reserved);
    }
});
