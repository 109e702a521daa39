//! What a recoverer gets from a ring whose peers died.
#![allow(clippy::disallowed_types)] // tests poke raw words with core atomics
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::AlignedBuf;
use numashm_ring::{Corrupt, Mpmc, PopError, Spsc};

fn poke(buf: &mut AlignedBuf, off: usize, v: u64) {
    assert!(off % 8 == 0 && off + 8 <= buf.len());
    // SAFETY: 1. in bounds and 8-aligned; 2. all access to the bytes is atomic.
    unsafe { (*buf.ptr().add(off).cast::<AtomicU64>()).store(v, Ordering::SeqCst) };
}

#[test]
fn salvage_hands_back_undelivered_spsc_handles_once() {
    let ring = Spsc::new(4).unwrap();
    let (mut tx, mut rx) = ring.clone().split().unwrap();
    tx.push_slice(&[1, 2, 3, 4]).unwrap();
    assert_eq!(rx.pop(), Ok(1));
    tx.push(5).unwrap(); // wraps
    drop(rx); // the consumer "dies"
    let mut saved = Vec::new();
    assert_eq!(ring.salvage(|h| saved.push(h)), Ok(4));
    assert_eq!(saved, [2, 3, 4, 5]);
    assert_eq!(ring.salvage(|_| panic!("salvaged twice")), Ok(0));
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.push(6).unwrap();
    assert_eq!(rx.pop(), Ok(6));
}

#[test]
fn salvage_gets_past_a_cell_claimed_by_a_producer_that_died() {
    let mut buf = AlignedBuf::new(1024);
    // SAFETY: buf outlives the ring and is accessed only atomically.
    let ring = unsafe { Mpmc::init_in(buf.ptr(), buf.len(), 4) }.unwrap();
    ring.push(10).unwrap();
    // A producer claims position 1 (tail 1 -> 2) and dies before filling it.
    poke(&mut buf, 256, 2);
    ring.push(30).unwrap(); // position 2
    assert_eq!(ring.pop(), Ok(10));
    assert_eq!(ring.pop(), Err(PopError::Empty)); // stuck at position 1
    let mut saved = Vec::new();
    assert_eq!(ring.salvage(|h| saved.push(h)), Ok(1));
    assert_eq!(saved, [30]);
    ring.push(40).unwrap();
    assert_eq!(ring.pop(), Ok(40));
}

#[test]
fn salvage_of_corrupt_indices_resets_and_reports() {
    let mut buf = AlignedBuf::new(1024);
    // SAFETY: buf outlives the ring and is accessed only atomically.
    let ring = unsafe { Spsc::init_in(buf.ptr(), buf.len(), 4) }.unwrap();
    poke(&mut buf, 256, 99);
    assert!(matches!(ring.salvage(|_| panic!("garbage handed out")), Err(Corrupt::Indices { .. })));
    assert_eq!(ring.len(), Ok(0));
}
