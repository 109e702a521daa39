//! Loom model of the facade's send protocol with a sender that dies part-way
//! (the protocol of `numashm::Sender::send` and `release_peer`, over the heap
//! versions of the allocator and the SPSC ring):
//!
//! sender: alloc (Allocated, owner 1) → pending := h → pending_at := ring
//!         position (Release) → mark_in_flight(h, 2) → push h
//! receiver (peer 2, alive): pop → receive(h) (in flight to it: ours already,
//!         no CAS) → read → free (must succeed: nobody freed it under the reader)
//! recoverer (after the sender died): reclaim_peer(1); if the ring says
//!         position pending_at was never written (`Spsc::written`: stamp or
//!         tail): take(h) (only possible while in flight) → free
//!
//! For every death point (0..=5 steps done), every interleaving with the live
//! receiver ends with every slot free exactly once: none lost, none freed twice,
//! none freed while the receiver reads it.
#![cfg(numashm_loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use numashm_ring::Spsc;
use numashm_varslot::{AllocError, Config, Handle, HeapAllocator};

const SENDER: u32 = 1;
const RECEIVER: u32 = 2;
const RECOVERER: u32 = 3;

fn free_slots(a: &HeapAllocator) -> usize {
    let mut n = 0;
    loop {
        match a.alloc(1, 9) {
            Ok(_) => n += 1,
            Err(AllocError::Exhausted { .. }) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn peer_death_during_a_send_loses_no_slot_and_frees_none_twice() {
    for steps in 0..=5 {
        loom::model(move || {
            let a = Arc::new(HeapAllocator::new(&Config::new().class(64, 2)).unwrap());
            let ring = Spsc::new(2).unwrap();
            let (mut tx, mut rx) = ring.clone().split().unwrap();
            let pending = Arc::new(AtomicU64::new(0));
            let pending_at = Arc::new(AtomicU64::new(0));

            let sender = {
                let (a, pending, pending_at) = (a.clone(), pending.clone(), pending_at.clone());
                thread::spawn(move || {
                    // The sender dies after `steps` steps: it simply stops.
                    if steps == 0 {
                        return;
                    }
                    let h = a.alloc(1, SENDER).unwrap();
                    if steps == 1 {
                        return;
                    }
                    pending.store(h.to_u64(), Ordering::Relaxed);
                    if steps == 2 {
                        return;
                    }
                    pending_at.store(tx.position(), Ordering::Release);
                    if steps == 3 {
                        return;
                    }
                    a.mark_in_flight(h, RECEIVER).unwrap();
                    if steps == 4 {
                        return;
                    }
                    tx.push(h.to_u64()).unwrap();
                })
            };
            let a2 = a.clone();
            let receiver = thread::spawn(move || {
                // The live receiver takes whatever arrives, once or twice.
                let mut freed = 0;
                for _ in 0..2 {
                    if let Ok(raw) = rx.pop() {
                        if let Some(h) = Handle::from_u64(raw) {
                            if a2.receive(h, RECEIVER).is_ok() {
                                // Ours: nobody else frees it while we read, so
                                // our free succeeds.
                                a2.free(h).unwrap();
                                freed += 1;
                            }
                        }
                    }
                    thread::yield_now();
                }
                (freed, rx)
            });
            sender.join().unwrap(); // the death is noticed only after it happened
            // Recovery of the dead sender (as release_peer does it).
            a.reclaim_peer(SENDER);
            let at = pending_at.load(Ordering::Acquire);
            let raw = pending.load(Ordering::Relaxed);
            if let Some(h) = Handle::from_u64(raw).filter(|_| !ring.written(at)) {
                if a.take(h, RECOVERER).is_ok() {
                    a.free(h).unwrap();
                }
            }
            let (_, mut rx) = receiver.join().unwrap();
            // The receiver lives on: it consumes what is still in the ring.
            while let Ok(raw) = rx.pop() {
                if let Some(h) = Handle::from_u64(raw) {
                    if a.receive(h, RECEIVER).is_ok() {
                        a.free(h).unwrap();
                    }
                }
            }
            assert_eq!(free_slots(&a), 2, "death after {steps} steps: every slot free exactly once");
        });
    }
}
