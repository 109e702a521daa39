//! Loom models of the split SPSC ring and its doorbell (`numashm-ring`),
//! run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom --test split
//! ```
//!
//! The ring and doorbell are the crate's own code over loom's atomics and
//! fences; each futex is modelled by a loom mutex + condvar that compares
//! the word under the lock, as the kernel does. A wait without a deadline
//! parks until woken, so a lost wake-up is a deadlock loom reports.
#![cfg(numashm_loom)]

use loom::thread;
use numashm_ring::{SplitConsumer, SplitProducer, SplitPushError, SplitRing};

/// Pushes `cell`, yielding to the model while the ring is full.
fn push_spinning(tx: &mut SplitProducer, cell: [u64; 3]) {
    loop {
        match tx.push(cell) {
            Ok(()) => return,
            Err(SplitPushError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Waits (parking, no deadline) for the next cell.
fn wait(rx: &mut SplitConsumer) -> [u64; 3] {
    loop {
        if let Some(c) = rx.wait(None).unwrap() {
            return c;
        }
    }
}

#[test]
fn split_push_pop_wraps_around_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = SplitRing::new(2).unwrap();
        let producer = thread::spawn(move || {
            for i in 1..=3 {
                push_spinning(&mut tx, [i, i * 10, i * 100]);
            }
        });
        let mut next = 1;
        while next <= 3 {
            match rx.pop().unwrap() {
                Some(c) => {
                    assert_eq!(c, [next, next * 10, next * 100]);
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop().unwrap(), None);
    });
}

#[test]
fn split_parked_consumer_is_never_left_asleep_with_data() {
    // Two pushes: the second may see the consumer's stale `parked` word and
    // skip the wake-up; the consumer must still get both cells.
    loom::model(|| {
        let (mut tx, mut rx) = SplitRing::new(2).unwrap();
        let producer = thread::spawn(move || {
            tx.push_notify([7, 0, 0]).unwrap();
            tx.push_notify([8, 0, 0]).unwrap();
        });
        assert_eq!(wait(&mut rx), [7, 0, 0]);
        assert_eq!(wait(&mut rx), [8, 0, 0]);
        producer.join().unwrap();
    });
}

#[test]
fn split_parked_producer_is_never_left_asleep_with_room() {
    loom::model(|| {
        let (mut tx, mut rx) = SplitRing::new(1).unwrap();
        tx.push([1, 0, 0]).unwrap();
        let producer = thread::spawn(move || {
            while tx.wait_for_space(None).unwrap().is_none() {}
            tx.push([2, 0, 0]).unwrap();
        });
        assert_eq!(rx.pop().unwrap(), Some([1, 0, 0]));
        rx.notify_space().unwrap();
        producer.join().unwrap();
        assert_eq!(rx.pop().unwrap(), Some([2, 0, 0]));
    });
}

#[test]
fn split_doorbells_both_ways_over_a_full_ring_lose_no_wakeup() {
    // Capacity 1, two cells: the producer parks on "space" while the
    // consumer parks on "data"; each side notifies the other.
    loom::model(|| {
        let (mut tx, mut rx) = SplitRing::new(1).unwrap();
        let producer = thread::spawn(move || {
            for i in 1..=2 {
                loop {
                    match tx.push_notify([i, 0, 0]) {
                        Ok(_) => break,
                        Err(SplitPushError::Full) => {
                            tx.wait_for_space(None).unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 1..=2 {
            assert_eq!(wait(&mut rx), [i, 0, 0]);
            rx.notify_space().unwrap();
        }
        producer.join().unwrap();
    });
}

/// An eventfd or pipe as the async waiter sees it: a counter, readable while
/// non-zero; `wait` sleeps until readable (the reactor's part).
struct FdModel {
    count: loom::sync::Mutex<u64>,
    readable: loom::sync::Condvar,
}

impl FdModel {
    fn new() -> Self {
        FdModel {
            count: loom::sync::Mutex::new(0),
            readable: loom::sync::Condvar::new(),
        }
    }

    fn signal(&self) {
        *self.count.lock().unwrap() += 1;
        self.readable.notify_all();
    }

    /// Sleeps until readable (no timeout: a lost wake-up is a deadlock).
    fn wait(&self) {
        let mut n = self.count.lock().unwrap();
        while *n == 0 {
            n = self.readable.wait(n).unwrap();
        }
    }

    fn drain(&self) {
        *self.count.lock().unwrap() = 0;
    }
}

/// The async receive loop over the crate's `arm` / `arm_fence` / `has_news`
/// / `disarm`, waiting on the fd model: pop, else arm, fence, re-check, wait,
/// disarm, drain.
fn wait_fd(rx: &mut SplitConsumer, fd: &FdModel) -> [u64; 3] {
    loop {
        if let Some(c) = rx.pop().unwrap() {
            return c;
        }
        assert!(rx.arm());
        SplitConsumer::<numashm_ring::HeapSplit>::arm_fence();
        if !rx.has_news() {
            fd.wait();
        }
        rx.disarm();
        fd.drain();
    }
}

#[test]
fn split_fd_waiting_consumer_is_never_left_asleep_with_data() {
    // As the futex model, with the fd: the producer signals the fd whenever
    // `notify` says it found the consumer parked. Two pushes: the second may
    // see a stale parked word; a signal may land after the drain (a spare
    // wake-up); neither may leave the consumer asleep with a cell.
    loom::model(|| {
        let fd = std::sync::Arc::new(FdModel::new());
        let (mut tx, mut rx) = SplitRing::new(2).unwrap();
        let pfd = fd.clone();
        let producer = thread::spawn(move || {
            for i in [7, 8] {
                if tx.push_notify([i, 0, 0]).unwrap() {
                    pfd.signal();
                }
            }
        });
        assert_eq!(wait_fd(&mut rx, &fd), [7, 0, 0]);
        assert_eq!(wait_fd(&mut rx, &fd), [8, 0, 0]);
        producer.join().unwrap();
    });
}

#[test]
fn split_fd_waiting_producer_is_never_left_asleep_with_room() {
    // The space direction: the producer arms `space_waiting`, re-checks the
    // head, waits on its fd; the consumer signals it when `notify_space` says so.
    loom::model(|| {
        let fd = std::sync::Arc::new(FdModel::new());
        let (mut tx, mut rx) = SplitRing::new(1).unwrap();
        tx.push([1, 0, 0]).unwrap();
        let pfd = fd.clone();
        let producer = thread::spawn(move || loop {
            match tx.push([2, 0, 0]) {
                Ok(()) => break,
                Err(SplitPushError::Full) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(tx.arm_space());
            SplitConsumer::<numashm_ring::HeapSplit>::arm_fence();
            if tx.free_space().unwrap() == 0 {
                pfd.wait();
            }
            tx.disarm_space();
            pfd.drain();
        });
        assert_eq!(rx.pop().unwrap(), Some([1, 0, 0]));
        if rx.notify_space().unwrap() {
            fd.signal();
        }
        producer.join().unwrap();
        assert_eq!(rx.pop().unwrap(), Some([2, 0, 0]));
    });
}
