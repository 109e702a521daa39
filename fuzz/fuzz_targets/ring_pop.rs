//! Ring attach and pop with corrupted indices and cells: a valid SPSC or MPMC
//! ring laid in a buffer, arbitrary words overwritten, then attach, pop, push,
//! len and salvage — every call ends in Ok or a typed error, and terminates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_ring::{Mpmc, Spsc};
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C, align(128))]
struct Buf([AtomicU64; 512]);

fuzz_target!(|data: &[u8]| {
    let Some((&kind, mut rest)) = data.split_first() else { return };
    let buf = Buf(std::array::from_fn(|_| AtomicU64::new(0)));
    let ptr = buf.0.as_ptr() as *mut u8;
    let len = std::mem::size_of::<Buf>();
    let cap = 1usize << (kind as usize % 4 + 1);
    let mpmc = kind & 0x10 != 0;
    // SAFETY: `buf` outlives every ring made over it (they are dropped at the end
    // of this closure, before it) and is only accessed atomically.
    let made = unsafe {
        if mpmc {
            Mpmc::init_in(ptr, len, cap).map(|r| r.push(1).is_ok()).is_ok()
        } else {
            Spsc::init_in(ptr, len, cap).map(|r| r.producer().map(|mut p| p.push(1).is_ok()).is_ok()).is_ok()
        }
    };
    if !made {
        return;
    }
    while let Some((chunk, tail)) = rest.split_first_chunk::<10>() {
        let i = u16::from_le_bytes([chunk[0], chunk[1]]) as usize % buf.0.len();
        let v = u64::from_le_bytes(chunk[2..10].try_into().unwrap());
        buf.0[i].store(v, Ordering::Relaxed);
        rest = tail;
    }
    // SAFETY: as above.
    unsafe {
        if mpmc {
            if let Ok(r) = Mpmc::attach_in(ptr, len) {
                for _ in 0..8 {
                    let _ = r.pop();
                    let _ = r.push(7);
                }
                let _ = r.len();
                let _ = r.salvage(|_| {});
            }
        } else if let Ok(r) = Spsc::attach_in(ptr, len) {
            if let (Ok(mut p), Ok(mut c)) = (r.producer(), r.consumer()) {
                for _ in 0..8 {
                    let _ = c.pop();
                    let _ = p.push(7);
                }
                let mut out = [0u64; 4];
                let _ = c.pop_into(&mut out);
            }
            let _ = r.len();
            let _ = r.salvage(|_| {});
        }
    }
});
