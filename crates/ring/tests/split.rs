//! The split SPSC ring in one thread: FIFO order, full/empty, wrap-around,
//! the shared constructors' validation, and hostile values in the peer's
//! block (typed errors, never a panic or an access outside the block).
//! Runs under miri (the shared version over aligned heap buffers).
#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)] // tests poke raw words with core atomics
mod common;

use core::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{scaled, AlignedBuf};
use numashm_ring::{
    init_consumer_block, split_producer_bytes, LayoutError, SharedSplit, SplitAttachError,
    SplitConsumer, SplitCorrupt, SplitProducer, SplitPushError, SplitRing, SPLIT_CONSUMER_BYTES,
    SPLIT_MAGIC,
};

/// Producer block offsets (see `docs/ring.md`).
const CAPACITY: usize = 16;
const VERSION: usize = 8;
const TAIL: usize = 128;
const CELLS: usize = 384;
/// Consumer block offset.
const HEAD: usize = 0;

/// Overwrites the `u64` at byte `off` of the buffer, as a hostile peer would.
fn poke(buf: &mut AlignedBuf, off: usize, v: u64) {
    assert!(off % 8 == 0 && off + 8 <= buf.len());
    // SAFETY: 1. in bounds and 8-aligned (asserted; base is 128-aligned);
    // 2. the ring ends access these bytes only atomically, and so do we.
    unsafe { (*buf.ptr().add(off).cast::<AtomicU64>()).store(v, Ordering::SeqCst) };
}

fn peek(buf: &mut AlignedBuf, off: usize) -> u64 {
    assert!(off % 8 == 0 && off + 8 <= buf.len());
    // SAFETY: as in `poke`.
    unsafe { (*buf.ptr().add(off).cast::<AtomicU64>()).load(Ordering::SeqCst) }
}

fn nn(buf: &mut AlignedBuf) -> NonNull<u8> {
    NonNull::new(buf.ptr()).unwrap()
}

/// A shared-memory split ring over two heap buffers (one per side).
struct Pair {
    p: AlignedBuf,
    c: AlignedBuf,
}

impl Pair {
    fn new(cap: usize) -> Pair {
        Pair {
            p: AlignedBuf::new(split_producer_bytes(cap)),
            c: AlignedBuf::new(SPLIT_CONSUMER_BYTES),
        }
    }

    fn producer(&mut self, cap: usize, with_consumer: bool) -> SplitProducer<SharedSplit> {
        let (pl, cl) = (self.p.len(), self.c.len());
        let c = nn(&mut self.c);
        // SAFETY: the buffers outlive the ends in every test; each block is
        // written only by its end (and by the test's deliberate pokes, which
        // are atomic).
        unsafe {
            init_consumer_block(c, cl).unwrap();
            SplitProducer::init_shared(nn(&mut self.p), pl, cap, with_consumer.then_some(c), cl)
                .unwrap()
        }
    }

    fn consumer(&mut self, start: u64) -> Result<SplitConsumer<SharedSplit>, LayoutError> {
        let (pl, cl) = (self.p.len(), self.c.len());
        // SAFETY: as in `producer`.
        unsafe { SplitConsumer::attach_shared(nn(&mut self.p), pl, nn(&mut self.c), cl, start) }
    }
}

#[test]
fn heap_ring_is_fifo_and_reports_full_and_empty() {
    let (mut tx, mut rx) = SplitRing::new(4).unwrap();
    assert_eq!(rx.pop(), Ok(None));
    for i in 0..4 {
        tx.push([i, i * 10, i * 100]).unwrap();
    }
    assert_eq!(tx.push([9, 9, 9]), Err(SplitPushError::Full));
    assert_eq!(tx.free_space(), Ok(0));
    for i in 0..4 {
        assert_eq!(rx.pop(), Ok(Some([i, i * 10, i * 100])));
    }
    assert_eq!(rx.pop(), Ok(None));
    assert_eq!(tx.free_space(), Ok(4));
    assert_eq!((tx.position(), rx.position()), (4, 4));
}

#[test]
fn heap_ring_wraps_around_many_times() {
    let (mut tx, mut rx) = SplitRing::new(8).unwrap();
    let n = scaled(100_000) as u64;
    let mut next = 0u64;
    for i in 0..n {
        // Vary the fill level: push until full every few rounds.
        while tx.push([i, !i, i.rotate_left(7)]).is_err() {
            let [a, b, c] = rx.pop().unwrap().unwrap();
            assert_eq!([a, b, c], [next, !next, next.rotate_left(7)]);
            next += 1;
        }
        if i % 3 == 0 {
            let [a, ..] = rx.pop().unwrap().unwrap();
            assert_eq!(a, next);
            next += 1;
        }
    }
    while let Some([a, ..]) = rx.pop().unwrap() {
        assert_eq!(a, next);
        next += 1;
    }
    assert_eq!(next, n);
    assert_eq!(tx.position(), n);
}

#[test]
fn capacity_one_alternates() {
    let (mut tx, mut rx) = SplitRing::new(1).unwrap();
    for i in 0..10 {
        tx.push([i; 3]).unwrap();
        assert_eq!(tx.push([0; 3]), Err(SplitPushError::Full));
        assert!(rx.ready());
        assert_eq!(rx.pop(), Ok(Some([i; 3])));
        assert!(!rx.ready());
    }
}

#[test]
fn bad_capacities_are_rejected() {
    for cap in [0, 3, 6, 1 << 33] {
        assert_eq!(
            SplitRing::new(cap).err(),
            Some(LayoutError::Capacity(cap as u64))
        );
    }
}

#[test]
fn shared_ring_is_fifo_and_publishes_tail_and_head() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, true);
    let mut rx = pair.consumer(0).unwrap();
    for round in 0..5u64 {
        for i in 0..4 {
            tx.push([round, i, 7]).unwrap();
        }
        assert_eq!(tx.push([0; 3]), Err(SplitPushError::Full));
        assert_eq!(peek(&mut pair.p, TAIL), (round + 1) * 4);
        for i in 0..4 {
            assert_eq!(rx.pop(), Ok(Some([round, i, 7])));
        }
        assert_eq!(peek(&mut pair.c, HEAD), (round + 1) * 4);
    }
}

#[test]
fn producer_pushes_capacity_cells_before_a_consumer_exists() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, false);
    assert!(!tx.consumer_attached());
    for i in 0..4 {
        tx.push([i; 3]).unwrap();
    }
    assert_eq!(tx.push([0; 3]), Err(SplitPushError::Full));
    assert_eq!(tx.notify(), Ok(false)); // nobody to wake
    let mut rx = pair.consumer(0).unwrap();
    assert_eq!(rx.pop(), Ok(Some([0; 3])));
    let (c, cl) = (nn(&mut pair.c), pair.c.len());
    // SAFETY: as in `Pair::producer`.
    unsafe { tx.attach_consumer(c, cl) }.unwrap();
    assert!(tx.consumer_attached());
    assert_eq!(tx.free_space(), Ok(1));
    tx.push([4; 3]).unwrap();
    for i in 1..5 {
        assert_eq!(rx.pop(), Ok(Some([i; 3])));
    }
}

#[test]
fn attach_consumer_validates_the_head() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, false);
    tx.push([1; 3]).unwrap();
    tx.push([2; 3]).unwrap();
    let (c, cl) = (nn(&mut pair.c), pair.c.len());
    for (head, ok) in [(3, false), (u64::MAX, false), (2, true), (1, true)] {
        poke(&mut pair.c, HEAD, head);
        // SAFETY: as in `Pair::producer`.
        let r = unsafe { tx.attach_consumer(c, cl) };
        if ok {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(
                r,
                Err(SplitAttachError::Corrupt(SplitCorrupt::Head {
                    head,
                    tail: 2,
                    capacity: 4
                }))
            );
        }
    }
    // Head 1: one cell still unread, three free.
    assert_eq!(tx.free_space(), Ok(3));
    // SAFETY: as in `Pair::producer`.
    let short = unsafe { tx.attach_consumer(c, 128) };
    assert!(matches!(
        short,
        Err(SplitAttachError::Layout(LayoutError::TooSmall {
            needed: 256,
            len: 128
        }))
    ));
}

#[test]
fn hostile_heads_are_typed_errors_and_a_valid_head_recovers() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, true);
    let mut rx = pair.consumer(0).unwrap();
    for i in 0..4 {
        tx.push([i; 3]).unwrap();
    }
    for _ in 0..4 {
        rx.pop().unwrap().unwrap();
    }
    for i in 0..4 {
        tx.push([i; 3]).unwrap(); // tail 8; the cached head (0) says full now
    }
    for head in [9, u64::MAX, 3, 0] {
        // head > tail, then tail - head > capacity.
        poke(&mut pair.c, HEAD, head);
        let e = SplitCorrupt::Head {
            head,
            tail: 8,
            capacity: 4,
        };
        assert_eq!(tx.push([0; 3]), Err(SplitPushError::Corrupt(e)));
        assert_eq!(tx.free_space(), Err(e));
    }
    assert_eq!(tx.position(), 8); // nothing was pushed
    poke(&mut pair.c, HEAD, 4); // the consumer's real head
    assert_eq!(tx.push([0; 3]), Err(SplitPushError::Full));
    assert_eq!(rx.pop(), Ok(Some([0; 3])));
    tx.push([4; 3]).unwrap();
}

#[test]
fn stamps_beyond_the_position_are_corrupt_and_garbage_ready_stamps_are_just_cells() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, true);
    let mut rx = pair.consumer(0).unwrap();
    tx.push([1, 2, 3]).unwrap();
    assert_eq!(rx.pop(), Ok(Some([1, 2, 3])));
    // Cell 1 (position 1): a stamp from the future, then u64::MAX.
    for stamp in [6, u64::MAX] {
        poke(&mut pair.p, CELLS + 32, stamp);
        assert_eq!(rx.pop(), Err(SplitCorrupt::Stamp { pos: 1, stamp }));
        assert_eq!(rx.position(), 1);
    }
    // A garbage payload under a "ready" stamp is delivered as is (the
    // facade validates payloads); an old lap's stamp reads as empty.
    poke(&mut pair.p, CELLS + 32, 2);
    poke(&mut pair.p, CELLS + 40, u64::MAX);
    assert_eq!(rx.pop().unwrap().map(|c| c[0]), Some(u64::MAX));
    poke(&mut pair.p, CELLS + 64, 0);
    assert_eq!(rx.pop(), Ok(None));
}

#[test]
fn producer_header_is_validated_at_attach() {
    let mut pair = Pair::new(4);
    let len = pair.p.len();
    pair.producer(4, false);
    let cases: [(usize, u64, LayoutError); 5] = [
        (0, 0, LayoutError::Magic(0)),
        (VERSION, 7, LayoutError::Version(7)),
        (CAPACITY, 3, LayoutError::Capacity(3)),
        (CAPACITY, 1 << 40, LayoutError::Capacity(1 << 40)),
        (
            CAPACITY,
            1 << 20,
            LayoutError::TooSmall {
                needed: split_producer_bytes(1 << 20),
                len,
            },
        ),
    ];
    for (off, v, err) in cases {
        let saved = peek(&mut pair.p, off);
        poke(&mut pair.p, off, v);
        assert_eq!(pair.consumer(0).err(), Some(err));
        poke(&mut pair.p, off, saved);
    }
    assert_eq!(peek(&mut pair.p, 0), SPLIT_MAGIC);
    assert!(pair.consumer(0).is_ok());
}

#[test]
fn misaligned_or_short_ranges_are_layout_errors() {
    let mut pair = Pair::new(4);
    let (pl, cl) = (pair.p.len(), pair.c.len());
    let p = nn(&mut pair.p);
    let c = nn(&mut pair.c);
    let p8 = NonNull::new(p.as_ptr().wrapping_add(8)).unwrap();
    // SAFETY: every call fails its checks before touching the memory.
    unsafe {
        assert!(matches!(
            SplitProducer::init_shared(p8, pl - 8, 4, None, 0),
            Err(SplitAttachError::Layout(LayoutError::Misaligned { .. }))
        ));
        assert!(matches!(
            SplitProducer::init_shared(p, 500, 4, None, 0),
            Err(SplitAttachError::Layout(LayoutError::TooSmall {
                needed: 512,
                len: 500
            }))
        ));
        assert!(matches!(
            SplitProducer::init_shared(p, pl, 5, None, 0),
            Err(SplitAttachError::Layout(LayoutError::Capacity(5)))
        ));
        assert!(matches!(
            init_consumer_block(c, 255),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            SplitConsumer::attach_shared(p8, pl, c, cl, 0),
            Err(LayoutError::Misaligned { .. })
        ));
    }
}

#[test]
fn a_header_rewritten_after_attach_does_not_move_the_consumer_out_of_its_block() {
    // Capacity is read once at attach; a later rewrite to a huge value must
    // not make the consumer index past the cells (miri checks the bounds).
    let mut pair = Pair::new(2);
    let mut tx = pair.producer(2, true);
    let mut rx = pair.consumer(0).unwrap();
    poke(&mut pair.p, CAPACITY, 1 << 32);
    for i in 0..6 {
        tx.push([i; 3]).unwrap();
        assert_eq!(rx.pop(), Ok(Some([i; 3])));
    }
    assert_eq!(rx.capacity(), 2);
}

#[test]
fn consumer_restarts_at_a_given_position() {
    let mut pair = Pair::new(4);
    let mut tx = pair.producer(4, true);
    let mut rx = pair.consumer(0).unwrap();
    for i in 0..3 {
        tx.push([i; 3]).unwrap();
    }
    assert_eq!(rx.pop(), Ok(Some([0; 3])));
    let mut rx = pair.consumer(1).unwrap(); // replaces the first consumer
    assert_eq!(peek(&mut pair.c, HEAD), 1);
    assert_eq!(rx.pop(), Ok(Some([1; 3])));
    // A consumer restarted behind cells the producer overwrote sees stamps
    // from the future: a typed error, not stale cells.
    for i in 3..6 {
        tx.push([i; 3]).unwrap();
    }
    let mut late = pair.consumer(0).unwrap();
    assert_eq!(late.pop(), Err(SplitCorrupt::Stamp { pos: 0, stamp: 5 }));
}
