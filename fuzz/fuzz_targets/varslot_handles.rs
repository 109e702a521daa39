//! The allocator's resolve/free/take/state with arbitrary handles over a valid
//! allocator whose metadata words are then overwritten with arbitrary values:
//! every call ends in Ok or a typed error — no panic, no out-of-bounds, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_varslot::{Config, Handle, HeapAllocator, Words};
use std::sync::atomic::Ordering;

fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Ok(a) = HeapAllocator::new(&Config::new().class(64, 8).class(1024, 4).max_extents(2)) else { return };
    // A few real handles first, so mutations hit live state too.
    let mut handles: Vec<u64> = (0..4).filter_map(|i| a.alloc(if i % 2 == 0 { 10 } else { 500 }, 1).ok()).map(|h| h.to_u64()).collect();
    // Mutations: (word index, value) pairs until a zero byte.
    let words = a.words().words();
    while let Some([tag]) = take::<1>(&mut data) {
        if tag == 0 {
            break;
        }
        let (Some(i), Some(v)) = (take::<2>(&mut data), take::<8>(&mut data)) else { return };
        let i = u16::from_le_bytes(i) as usize % words.len();
        words[i].store(u64::from_le_bytes(v), Ordering::Relaxed);
    }
    // Operations with real or arbitrary handles.
    while let Some([op]) = take::<1>(&mut data) {
        let raw = match take::<8>(&mut data) {
            Some(v) if op & 0x80 != 0 => u64::from_le_bytes(v),
            Some(v) => handles.get(v[0] as usize % handles.len().max(1)).copied().unwrap_or(1),
            None => return,
        };
        let h = Handle::from_u64(raw);
        match (op & 0x7f) % 8 {
            0 => {
                if let Ok(h) = a.alloc(raw as usize % 2000, (raw >> 32) as u32 % 4) {
                    handles.push(h.to_u64());
                }
            }
            1 => {
                if let Some(h) = h {
                    let _ = a.free(h);
                }
            }
            2 => {
                if let Some(h) = h {
                    if let Ok(slot) = a.resolve(h) {
                        assert!(slot.len() >= 64);
                    }
                }
            }
            3 => {
                if let Some(h) = h {
                    let _ = a.mark_in_flight(h, 2);
                }
            }
            4 => {
                if let Some(h) = h {
                    let _ = a.take(h, 3);
                }
            }
            5 => {
                let _ = a.reclaim_peer((raw % 4) as u32);
            }
            6 => {
                if let Some(h) = h {
                    let _ = a.state(h);
                }
            }
            _ => {
                let _ = a.inspect();
            }
        }
    }
});
