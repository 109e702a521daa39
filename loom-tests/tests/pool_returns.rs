//! Loom models of the layout-v4 return path (`numashm::pool`), run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom --test pool_returns
//! ```
//!
//! `OwnerAlloc` is single-threaded by design (one writer per pool), so the
//! owner here is a tiny model of it driven by one thread: a `Vec` of slot
//! states with generations, and the same checks `give_back` makes (range,
//! generation, lent to that reader, not yet returned). The cross-thread part
//! is real: the crate's heap split rings carry `[handle, slot, len]` to each
//! reader and `[handle, 0, 0]` back on the reader's own return ring. Payloads
//! are `loom::cell::UnsafeCell`s, so loom reports a data race if the owner
//! can rewrite a slot while a reader may still read it.
//!
//! Each model was checked to fail when the protocol is broken (see the
//! `BREAK_*` switches: set one to `true` and the model panics with a causality
//! violation or a failed assertion).
#![cfg(numashm_loom)]
#![allow(unsafe_code)] // loom's UnsafeCell is read and written through raw pointers

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use numashm_ring::{HeapSplit, SplitConsumer, SplitProducer, SplitPushError, SplitRing};

/// Model a broken owner that frees a slot when it sends it (not on return).
const BREAK_FREE_ON_SEND: bool = false;
/// Model a broken owner that ignores the generation of a returned handle.
const BREAK_NO_GENERATION: bool = false;
/// Model a broken owner that frees a fan-out slot at its first return.
const BREAK_FREE_AT_FIRST_RETURN: bool = false;
/// Model a broken grower that publishes its length Relaxed.
const BREAK_RELAXED_LENGTH: bool = false;

/// Payload words of every slot, written only by the owner while it owns the
/// slot and read by readers while it is lent to them.
struct Slots(Vec<UnsafeCell<[u64; 2]>>);

// SAFETY: access is through loom's UnsafeCell, which checks (and reports) any
// pair of accesses not ordered by happens-before; that is what we test.
unsafe impl Sync for Slots {}
// SAFETY: as above; the cells hold plain integers.
unsafe impl Send for Slots {}

impl Slots {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Slots((0..n).map(|_| UnsafeCell::new([0; 2])).collect()))
    }

    /// The owner writes message `value` into `slot`: the value and a check word.
    fn write(&self, slot: usize, value: u64) {
        // SAFETY: loom checks this write against every read of the slot.
        self.0[slot].with_mut(|p| unsafe { *p = [value, !value] });
    }

    /// A reader reads `slot` and checks it holds an intact message `value`.
    fn read(&self, slot: usize, value: u64) {
        // SAFETY: loom checks this read against the owner's writes.
        let got = self.0[slot].with(|p| unsafe { *p });
        assert_eq!(
            got,
            [value, !value],
            "message {value} intact in slot {slot}"
        );
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    Free,
    Owned,
    /// Lent to the readers whose bits are set.
    Lent(u64),
}

/// The owner's allocator model: one thread, plain fields.
struct Owner {
    state: Vec<State>,
    generation: Vec<u64>,
    freed: Vec<u64>,
    bad: u64,
}

impl Owner {
    fn new(n: usize) -> Self {
        Owner {
            state: vec![State::Free; n],
            generation: vec![1; n],
            freed: vec![0; n],
            bad: 0,
        }
    }

    fn alloc(&mut self) -> Option<usize> {
        let s = self.state.iter().position(|s| *s == State::Free)?;
        self.state[s] = State::Owned;
        Some(s)
    }

    fn handle(&self, slot: usize) -> u64 {
        self.generation[slot] << 32 | slot as u64
    }

    fn lend(&mut self, slot: usize, readers: u64) -> u64 {
        assert_eq!(self.state[slot], State::Owned, "lend an owned slot");
        self.state[slot] = State::Lent(readers);
        if BREAK_FREE_ON_SEND {
            self.free(slot);
        }
        self.handle(slot)
    }

    fn free(&mut self, slot: usize) {
        self.state[slot] = State::Free;
        self.generation[slot] += 1;
        self.freed[slot] += 1;
    }

    /// `give_back`'s checks: range, generation, lent, lent to `reader`.
    fn give_back(&mut self, h: u64, reader: u32) {
        let slot = (h & 0xffff_ffff) as usize;
        if slot >= self.state.len() || (!BREAK_NO_GENERATION && h >> 32 != self.generation[slot]) {
            self.bad += 1;
            return;
        }
        let bit = 1u64 << reader;
        match self.state[slot] {
            State::Lent(mask) if mask & bit != 0 => {
                if mask == bit || BREAK_FREE_AT_FIRST_RETURN {
                    self.free(slot);
                } else {
                    self.state[slot] = State::Lent(mask & !bit);
                }
            }
            _ => self.bad += 1,
        }
    }

    /// Drains every return waiting on reader `reader`'s return ring.
    fn drain(&mut self, returns: &mut SplitConsumer<HeapSplit>, reader: u32) {
        while let Some([h, _, _]) = returns.pop().unwrap() {
            self.give_back(h, reader);
        }
    }
}

/// Pushes `cell`, yielding to the model while the ring is full.
fn push_spinning(tx: &mut SplitProducer<HeapSplit>, cell: [u64; 3]) {
    loop {
        match tx.push(cell) {
            Ok(()) => return,
            Err(SplitPushError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Pops the next cell, yielding while the ring is empty.
fn pop_spinning(rx: &mut SplitConsumer<HeapSplit>) -> [u64; 3] {
    loop {
        if let Some(c) = rx.pop().unwrap() {
            return c;
        }
        thread::yield_now();
    }
}

/// The owner allocates a slot, draining `returns` (reader `i` on ring `i`)
/// while none is free.
fn alloc_draining(owner: &mut Owner, returns: &mut [SplitConsumer<HeapSplit>]) -> usize {
    loop {
        if let Some(s) = owner.alloc() {
            return s;
        }
        for (r, ring) in returns.iter_mut().enumerate() {
            owner.drain(ring, r as u32);
        }
        thread::yield_now();
    }
}

/// One honest reader: pops `n` messages from `data`, reads each, returns it
/// (`dup`: returns it twice, and a garbage handle once, as a hostile reader).
fn reader(
    slots: Arc<Slots>,
    mut data: SplitConsumer<HeapSplit>,
    mut returns: SplitProducer<HeapSplit>,
    n: u64,
    dup: bool,
) -> impl FnOnce() {
    move || {
        for _ in 0..n {
            let [h, slot, value] = pop_spinning(&mut data);
            slots.read(slot as usize, value);
            push_spinning(&mut returns, [h, 0, 0]);
            if dup {
                push_spinning(&mut returns, [h, 0, 0]);
            }
        }
        if dup {
            push_spinning(&mut returns, [u64::MAX, 0, 0]);
        }
    }
}

#[test]
fn returned_slots_are_reused_without_a_race_and_freed_once_each() {
    // One slot, three messages: each reuse needs the previous return.
    loom::model(|| {
        const N: u64 = 3;
        let slots = Slots::new(1);
        let (mut tx, rx) = SplitRing::new(2).unwrap();
        let (ret_tx, ret_rx) = SplitRing::new(2).unwrap();
        let r = thread::spawn(reader(slots.clone(), rx, ret_tx, N, false));
        let mut owner = Owner::new(1);
        let mut returns = [ret_rx];
        for value in 1..=N {
            let s = alloc_draining(&mut owner, &mut returns);
            slots.write(s, value);
            let h = owner.lend(s, 1);
            push_spinning(&mut tx, [h, s as u64, value]);
        }
        r.join().unwrap();
        owner.drain(&mut returns[0], 0);
        assert_eq!(owner.freed, vec![N], "every lend freed exactly once");
        assert_eq!(owner.state, vec![State::Free]);
        assert_eq!(owner.bad, 0);
    });
}

#[test]
fn double_stale_and_garbage_returns_are_refused_while_the_slot_is_reused() {
    // A hostile reader returns every handle twice (the second one races the
    // slot's reuse for the next message) and a garbage handle at the end.
    loom::model(|| {
        const N: u64 = 3;
        let slots = Slots::new(1);
        let (mut tx, rx) = SplitRing::new(2).unwrap();
        let (ret_tx, ret_rx) = SplitRing::new(8).unwrap();
        let r = thread::spawn(reader(slots.clone(), rx, ret_tx, N, true));
        let mut owner = Owner::new(1);
        let mut returns = [ret_rx];
        for value in 1..=N {
            let s = alloc_draining(&mut owner, &mut returns);
            slots.write(s, value);
            let h = owner.lend(s, 1);
            push_spinning(&mut tx, [h, s as u64, value]);
        }
        r.join().unwrap();
        owner.drain(&mut returns[0], 0);
        assert_eq!(owner.freed, vec![N], "no double free");
        assert_eq!(
            owner.bad,
            N + 1,
            "each duplicate and the garbage handle refused"
        );
        assert_eq!(owner.state, vec![State::Free]);
    });
}

/// Fan-out of one message over one slot to `readers` readers, each on its
/// own data ring and return ring; then the owner reuses the slot (rewrites
/// it) as soon as its model says it is free.
///
/// The readers start after the cell is pushed, so only the owner spins
/// (several spinning threads exceed loom's branch budget; the push/pop
/// ordering of the data ring is what the first model checks). The owner
/// waits on one return ring at a time, the first with a return outstanding.
fn fan_out(readers: usize) {
    loom::model(move || {
        let slots = Slots::new(1);
        let mut owner = Owner::new(1);
        let s = owner.alloc().unwrap();
        slots.write(s, 7);
        let h = owner.lend(s, (1u64 << readers) - 1);
        let mut returns = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..readers {
            let (mut tx, rx) = SplitRing::new(2).unwrap();
            let (ret_tx, ret_rx) = SplitRing::new(2).unwrap();
            tx.push([h, s as u64, 7]).unwrap();
            returns.push(ret_rx);
            threads.push(thread::spawn(reader(slots.clone(), rx, ret_tx, 1, false)));
        }
        let mut next = 0;
        let s = loop {
            if let Some(s) = owner.alloc() {
                break s;
            }
            assert!(next < readers, "a slot is lent, so a return is due");
            let [h, _, _] = pop_spinning(&mut returns[next]);
            owner.give_back(h, next as u32);
            next += 1;
        };
        // The reuse: a reader still reading would race with this write.
        slots.write(s, 8);
        assert_eq!(next, readers, "freed only at the last return");
        for t in threads {
            t.join().unwrap();
        }
        for (r, ring) in returns.iter_mut().enumerate() {
            owner.drain(ring, r as u32);
        }
        assert_eq!(owner.freed, vec![1], "freed once");
        assert_eq!(owner.bad, 0);
    });
}

#[test]
fn fan_out_to_two_readers_frees_after_the_last_return() {
    fan_out(2);
}

#[test]
fn fan_out_to_three_readers_frees_after_the_last_return() {
    fan_out(3);
}

#[test]
fn a_reader_that_sees_a_grown_length_sees_initialised_bytes() {
    // The owner initialises new bytes, then publishes the longer length
    // (Release, as `Region` publishes its mapped length); a reader reads
    // only below the length it loaded (Acquire).
    loom::model(|| {
        let bytes = Slots::new(4);
        let len = Arc::new(AtomicUsize::new(1));
        bytes.write(0, 10);
        let grower = {
            let (bytes, len) = (bytes.clone(), len.clone());
            thread::spawn(move || {
                let publish = if BREAK_RELAXED_LENGTH {
                    Ordering::Relaxed
                } else {
                    Ordering::Release
                };
                bytes.write(1, 11);
                bytes.write(2, 12);
                len.store(3, publish);
                bytes.write(3, 13);
                len.store(4, publish);
            })
        };
        for _ in 0..2 {
            let n = len.load(Ordering::Acquire);
            assert!((1..=4).contains(&n));
            for k in 0..n {
                bytes.read(k, 10 + k as u64);
            }
            thread::yield_now();
        }
        grower.join().unwrap();
        assert_eq!(len.load(Ordering::Acquire), 4);
    });
}
