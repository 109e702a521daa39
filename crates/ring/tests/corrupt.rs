//! Hostile shared state: garbage in headers, indices and cells is a typed
//! error for the reader, never a panic, out-of-bounds access or hang.
#![allow(clippy::disallowed_types)] // tests poke raw words with core atomics
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::AlignedBuf;
use numashm_ring::{Corrupt, Doorbell, HeapMemory, LayoutError, Mpmc, PopError, PushError, Spsc};

const HEAD: usize = 128;
const TAIL: usize = 256;
const CELLS: usize = 384;

/// Overwrites the `u64` at byte `off` of the buffer, as a hostile peer would.
fn poke(buf: &mut AlignedBuf, off: usize, v: u64) {
    assert!(off % 8 == 0 && off + 8 <= buf.len());
    // SAFETY: 1. in bounds and 8-aligned (asserted; base is 128-aligned);
    // 2. the rings access these bytes only atomically, and so do we.
    unsafe { (*buf.ptr().add(off).cast::<AtomicU64>()).store(v, Ordering::SeqCst) };
}

fn spsc_in(buf: &mut AlignedBuf, cap: usize) -> Spsc<numashm_ring::SharedMemory> {
    // SAFETY: the buffer outlives the ring in every test and is used only
    // through it (and atomic pokes).
    unsafe { Spsc::init_in(buf.ptr(), buf.len(), cap) }.unwrap()
}

fn mpmc_in(buf: &mut AlignedBuf, cap: usize) -> Mpmc<numashm_ring::SharedMemory> {
    // SAFETY: as in `spsc_in`.
    unsafe { Mpmc::init_in(buf.ptr(), buf.len(), cap) }.unwrap()
}

#[test]
fn tail_beyond_capacity_is_corrupt_for_len_and_new_ends_and_ignored_by_pop() {
    let mut buf = AlignedBuf::new(1024);
    let ring = spsc_in(&mut buf, 4);
    let mut rx = ring.consumer().unwrap();
    poke(&mut buf, TAIL, 5);
    // The consumer polls cell stamps, not the tail: nothing was written.
    assert_eq!(rx.pop(), Err(PopError::Empty));
    assert_eq!(rx.pop_into(&mut [0; 4]), Ok(0));
    assert_eq!(rx.len(), Err(Corrupt::Indices { head: 0, tail: 5, capacity: 4 }));
    assert!(ring.len().is_err());
    assert!(ring.producer().is_err());
    assert!(ring.consumer().is_err());
}

#[test]
fn tail_behind_head_is_corrupt_for_len_and_ignored_by_pop() {
    let mut buf = AlignedBuf::new(1024);
    let ring = spsc_in(&mut buf, 4);
    let (mut tx, mut rx) = ring.clone().split().unwrap();
    tx.push_slice(&[1, 2, 3]).unwrap();
    rx.pop_into(&mut [0; 3]).unwrap();
    poke(&mut buf, TAIL, 1);
    assert_eq!(rx.pop(), Err(PopError::Empty));
    assert!(matches!(rx.len(), Err(Corrupt::Indices { head: 3, tail: 1, .. })));
    tx.push(4).unwrap(); // the producer keeps its own index
    assert_eq!(rx.pop(), Ok(4));
}

#[test]
fn hostile_stamps_fake_at_most_values_never_more_than_capacity_items() {
    let mut buf = AlignedBuf::new(1024);
    let ring = spsc_in(&mut buf, 4);
    let mut rx = ring.consumer().unwrap();
    // Cells are [stamp, value] at CELLS + 16 * i. Stamp "position + 1" for
    // positions 0..4 and garbage values: they read as items (the caller
    // validates values); position 4 maps to cell 0 again, whose stamp says 1.
    for i in 0..4u64 {
        poke(&mut buf, CELLS + 16 * i as usize, i + 1);
        poke(&mut buf, CELLS + 16 * i as usize + 8, 0xdead_0000 + i);
    }
    let mut out = [0; 8];
    assert_eq!(rx.pop_into(&mut out), Ok(4));
    assert_eq!(out[..4], [0xdead_0000, 0xdead_0001, 0xdead_0002, 0xdead_0003]);
    assert_eq!(rx.pop(), Err(PopError::Empty));
    // Stamps of wrong positions (stale laps, random words) are never ready.
    for (i, junk) in [(0, 0), (1, u64::MAX), (2, 4), (3, 9)] {
        poke(&mut buf, CELLS + 16 * i, junk);
    }
    assert_eq!(rx.pop(), Err(PopError::Empty));
}

#[test]
fn head_ahead_of_tail_is_corrupt_for_the_producer_and_hands_the_value_back() {
    let mut buf = AlignedBuf::new(1024);
    let ring = spsc_in(&mut buf, 2);
    let mut tx = ring.producer().unwrap();
    tx.push_slice(&[1, 2]).unwrap(); // full: the next push re-reads head
    poke(&mut buf, HEAD, u64::MAX - 7);
    let r = tx.push(9);
    assert!(matches!(r, Err(PushError::Corrupt(9, Corrupt::Indices { .. }))));
    assert_eq!(r.unwrap_err().into_inner(), 9);
    assert!(tx.push_slice(&[1]).is_err());
    assert!(tx.len().is_err());
}

#[test]
fn corrupt_spsc_is_usable_again_after_reset() {
    let mut buf = AlignedBuf::new(1024);
    let ring = spsc_in(&mut buf, 4);
    poke(&mut buf, TAIL, 1 << 50);
    assert!(ring.consumer().is_err());
    ring.reset();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.push(4).unwrap();
    assert_eq!(rx.pop(), Ok(4));
}

#[test]
fn garbage_cell_sequence_is_corrupt_for_mpmc() {
    let mut buf = AlignedBuf::new(1024);
    let ring = mpmc_in(&mut buf, 8);
    poke(&mut buf, CELLS, 12_345); // cell 0's sequence
    assert!(matches!(ring.push(1), Err(PushError::Corrupt(1, Corrupt::Sequence { pos: 0, seq: 12_345 }))));
    assert!(matches!(ring.pop(), Err(PopError::Corrupt(Corrupt::Sequence { .. }))));
    assert!(ring.push_slice(&[1, 2]).is_err());
    assert!(ring.pop_into(&mut [0; 2]).is_err());
    ring.reset();
    ring.push(1).unwrap();
    assert_eq!(ring.pop(), Ok(1));
}

#[test]
fn sequence_ahead_of_a_still_index_is_corrupt_not_a_spin() {
    let mut buf = AlignedBuf::new(1024);
    let ring = mpmc_in(&mut buf, 4);
    // Looks like "position 0 already claimed" (seq = 0 + capacity) while the
    // tail still says 0: a correct ring cannot be in this state.
    poke(&mut buf, CELLS, 4);
    assert!(matches!(ring.push(1), Err(PushError::Corrupt(1, Corrupt::Sequence { pos: 0, seq: 4 }))));
    // Same for consumers: seq says "position 0 filled a lap later".
    poke(&mut buf, CELLS, 5);
    assert!(matches!(ring.pop(), Err(PopError::Corrupt(Corrupt::Sequence { pos: 0, seq: 5 }))));
}

#[test]
fn garbage_mpmc_indices_are_corrupt() {
    let mut buf = AlignedBuf::new(1024);
    let ring = mpmc_in(&mut buf, 4);
    poke(&mut buf, TAIL, 1 << 40);
    assert!(matches!(ring.push(1), Err(PushError::Corrupt(1, _))));
    poke(&mut buf, TAIL, 0);
    poke(&mut buf, HEAD, 1 << 40);
    assert!(matches!(ring.pop(), Err(PopError::Corrupt(_))));
    assert!(ring.len().is_err());
}

fn attach_spsc(p: *mut u8, len: usize) -> Result<Spsc<numashm_ring::SharedMemory>, LayoutError> {
    // SAFETY: every caller passes a range inside a live AlignedBuf that it
    // keeps until the view is dropped and accesses only atomically.
    unsafe { Spsc::attach_in(p, len) }
}

fn attach_mpmc(p: *mut u8, len: usize) -> Result<Mpmc<numashm_ring::SharedMemory>, LayoutError> {
    // SAFETY: as in `attach_spsc`.
    unsafe { Mpmc::attach_in(p, len) }
}

fn init_spsc(p: *mut u8, len: usize, cap: usize) -> Result<Spsc<numashm_ring::SharedMemory>, LayoutError> {
    // SAFETY: as in `attach_spsc`; nobody else uses the buffer meanwhile.
    unsafe { Spsc::init_in(p, len, cap) }
}

#[test]
fn attach_validates_the_header() {
    let mut buf = AlignedBuf::new(1024);
    let (p, len) = (buf.ptr(), buf.len());
    assert_eq!(attach_spsc(p, len).err(), Some(LayoutError::Magic(0)));
    spsc_in(&mut buf, 16);
    assert!(attach_spsc(p, len).is_ok());
    assert_eq!(attach_mpmc(p, len).err(), Some(LayoutError::Kind { expected: 2, found: 1 }));
    assert!(matches!(attach_spsc(p, 400), Err(LayoutError::TooSmall { needed: 640, len: 400 })));
    assert!(matches!(attach_spsc(p.wrapping_add(8), len - 8), Err(LayoutError::Misaligned { .. })));
    poke(&mut buf, 16, 3); // capacity
    assert_eq!(attach_spsc(p, len).err(), Some(LayoutError::Capacity(3)));
    poke(&mut buf, 16, 1 << 40); // huge capacity must not overflow sizes
    assert_eq!(attach_spsc(p, len).err(), Some(LayoutError::Capacity(1 << 40)));
    poke(&mut buf, 16, 16);
    poke(&mut buf, 8, 7 | (1 << 32)); // version 7, kind 1
    assert_eq!(attach_spsc(p, len).err(), Some(LayoutError::Version(7)));
}

#[test]
fn init_refuses_bad_geometry() {
    let mut buf = AlignedBuf::new(1024);
    let (p, len) = (buf.ptr(), buf.len());
    assert_eq!(init_spsc(p, len, 6).err(), Some(LayoutError::Capacity(6)));
    // SAFETY: as in `attach_spsc`.
    assert_eq!(unsafe { Mpmc::init_in(p, len, 1) }.err(), Some(LayoutError::Capacity(1)));
    assert!(matches!(init_spsc(p, len, 1024), Err(LayoutError::TooSmall { .. })));
    assert_eq!(Spsc::<HeapMemory>::bytes_for(usize::MAX), None);
}

#[test]
fn garbage_doorbell_header_is_refused() {
    let mut buf = AlignedBuf::new(128);
    let (p, len) = (buf.ptr(), buf.len());
    poke(&mut buf, 8, 0xdead_beef);
    // SAFETY: buf outlives the view; all access atomic.
    let r = unsafe { Doorbell::attach_in(p, len) };
    assert!(matches!(r, Err(LayoutError::Magic(_))));
}

#[test]
fn garbage_waiter_count_costs_syscalls_not_correctness() {
    let mut buf = AlignedBuf::new(128);
    let (p, len) = (buf.ptr(), buf.len());
    // SAFETY: buf outlives the bell; all access atomic.
    let bell = unsafe { Doorbell::init_in(p, len) }.unwrap();
    poke(&mut buf, 0, 0x0003_0002_0000_0000 | 5); // waiters = 3 armed, 2 parked; seq 5
    if !cfg!(miri) {
        let n = bell.notify().unwrap();
        assert_eq!((n.parked, n.armed), (2, 3));
    }
    bell.reset();
    assert_eq!(bell.notify().unwrap().parked, 0);
}
