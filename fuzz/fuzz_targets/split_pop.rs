//! Split ring attach, pop, push and doorbell calls with hostile peer blocks:
//! a valid producer block and consumer block laid in buffers, arbitrary words
//! of both overwritten (as a hostile peer could, each in its own block), then
//! the consumer attaches and pops, the producer re-attaches the consumer
//! block and pushes — every call ends in Ok or a typed error, and terminates.
#![no_main]

use core::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use numashm_ring::{init_consumer_block, SplitConsumer, SplitProducer};

#[repr(C, align(128))]
struct Buf<const N: usize>([AtomicU64; N]);

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Buf(std::array::from_fn(|_| AtomicU64::new(0)))
    }
    fn ptr(&self) -> NonNull<u8> {
        NonNull::new(self.0.as_ptr() as *mut u8).unwrap()
    }
    const LEN: usize = N * 8;
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, mut rest)) = data.split_first() else {
        return;
    };
    let (pbuf, cbuf) = (Buf::<176>::new(), Buf::<32>::new()); // 1408 and 256 bytes
    let cap = 1usize << (kind as usize % 6); // 1..=32 cells: 384 + 32 × 32 fits
    let start = u64::from(kind >> 6);
    // SAFETY: both buffers outlive every end made over them (dropped at the
    // end of this closure, before them) and are only accessed atomically.
    let made = unsafe {
        init_consumer_block(cbuf.ptr(), Buf::<32>::LEN).is_ok()
            && SplitProducer::init_shared(
                pbuf.ptr(),
                Buf::<176>::LEN,
                cap,
                Some(cbuf.ptr()),
                Buf::<32>::LEN,
            )
            .map(|mut tx| (0..kind % 4).all(|i| tx.push([u64::from(i); 3]).is_ok()))
            .is_ok()
    };
    if !made {
        return;
    }
    // Overwrite words: the high bit of the index byte picks the block.
    while let Some((chunk, tail)) = rest.split_first_chunk::<10>() {
        let i = u16::from_le_bytes([chunk[0], chunk[1]]) as usize;
        let v = u64::from_le_bytes(chunk[2..10].try_into().unwrap());
        if i & 0x8000 == 0 {
            pbuf.0[i % pbuf.0.len()].store(v, Ordering::Relaxed);
        } else {
            cbuf.0[i % cbuf.0.len()].store(v, Ordering::Relaxed);
        }
        rest = tail;
    }
    let past = Some(Instant::now());
    // SAFETY: as above (a second producer block `pbuf2` likewise outlives
    // its end). The producer only loads from the hostile consumer block.
    unsafe {
        // A fresh producer fed the hostile consumer block (before the
        // consumer's attach below stores its own head over it).
        let pbuf2 = Buf::<176>::new();
        if let Ok(mut tx) = SplitProducer::init_shared(pbuf2.ptr(), Buf::<176>::LEN, cap, None, 0) {
            for i in 0..(kind % 8) {
                let _ = tx.push([u64::from(i); 3]);
            }
            if tx.attach_consumer(cbuf.ptr(), Buf::<32>::LEN).is_ok() {
                for i in 0..8 {
                    let _ = tx.push_notify([i; 3]);
                    let _ = tx.free_space();
                }
                let _ = tx.wait_for_space(past);
            }
        }
        // The consumer over the hostile producer block.
        if let Ok(mut rx) = SplitConsumer::attach_shared(
            pbuf.ptr(),
            Buf::<176>::LEN,
            cbuf.ptr(),
            Buf::<32>::LEN,
            start,
        ) {
            for _ in 0..8 {
                let _ = rx.pop();
                let _ = rx.ready();
                let _ = rx.notify_space();
            }
            let _ = rx.wait(past);
        }
    }
});
