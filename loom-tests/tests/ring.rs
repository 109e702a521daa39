//! Loom models of the ring layer (`numashm-ring`), run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target-loom --test ring
//! ```
//!
//! The rings and doorbells are the crate's own code, built over loom's
//! atomics (the crate's `sync` module); the futex is modelled by a loom
//! mutex + condvar that compares the word under the lock, as the kernel does.
#![cfg(numashm_loom)]

use loom::thread;
use numashm_ring::{Doorbell, Mpmc, PopError, PushError, Spsc};

/// Pushes `v`, yielding to the model while the ring is full.
fn push_spsc(tx: &mut numashm_ring::SpscProducer, mut v: u64) {
    loop {
        match tx.push(v) {
            Ok(()) => return,
            Err(PushError::Full(back)) => v = back,
            Err(e) => panic!("{e}"),
        }
        thread::yield_now();
    }
}

#[test]
fn spsc_push_pop_wraps_around_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::new(2).unwrap().split().unwrap();
        let producer = thread::spawn(move || {
            for i in 1..=3 {
                push_spsc(&mut tx, i);
            }
        });
        let mut next = 1;
        while next <= 3 {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.len().unwrap(), 0);
    });
}

#[test]
fn spsc_batches_wrap_around_in_order() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::new(2).unwrap().split().unwrap();
        let producer = thread::spawn(move || {
            let items = [1, 2, 3];
            let mut done = 0;
            while done < items.len() {
                let n = tx.push_slice(&items[done..]).unwrap();
                done += n;
                if n == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        let mut out = [0; 2];
        while got.len() < 3 {
            let n = rx.pop_into(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// Pops one item, yielding while the ring is empty.
fn pop_mpmc(ring: &Mpmc, batch: bool) -> u64 {
    loop {
        if batch {
            let mut out = [0];
            if ring.pop_into(&mut out).unwrap() == 1 {
                return out[0];
            }
        } else {
            match ring.pop() {
                Ok(v) => return v,
                Err(PopError::Empty) => {}
                Err(e) => panic!("{e}"),
            }
        }
        thread::yield_now();
    }
}

#[test]
fn mpmc_two_producers_two_consumers_take_each_item_once() {
    // No thread spins: each consumer tries once (single and batch pop), and
    // the main thread drains what is left after everyone joined. Every
    // interleaving must deliver each item exactly once.
    loom::model(|| {
        let ring = Mpmc::new(2).unwrap();
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let ring = ring.clone();
                thread::spawn(move || {
                    if p == 0 {
                        ring.push(10).unwrap();
                    } else {
                        assert_eq!(ring.push_slice(&[20]).unwrap(), 1);
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                let ring = ring.clone();
                thread::spawn(move || {
                    if c == 0 {
                        match ring.pop() {
                            Ok(v) => vec![v],
                            Err(PopError::Empty) => vec![],
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        let mut out = [0; 2];
                        let n = ring.pop_into(&mut out).unwrap();
                        out[..n].to_vec()
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut got: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        while let Ok(v) = ring.pop() {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, [10, 20]);
    });
}

#[test]
fn mpmc_producer_and_consumer_threads_wrap_around() {
    // Two threads that each push then pop: retry loops, wrap-around of the
    // cell sequences (capacity 2, four items in all).
    loom::model(|| {
        let ring = Mpmc::new(2).unwrap();
        let r2 = ring.clone();
        let other = thread::spawn(move || {
            while r2.push(20).is_err() {
                thread::yield_now();
            }
            pop_mpmc(&r2, true)
        });
        ring.push(10).unwrap();
        let a = pop_mpmc(&ring, false);
        while ring.push(30).is_err() {
            thread::yield_now();
        }
        let b = other.join().unwrap();
        let c = pop_mpmc(&ring, false);
        let mut got = [a, b, c];
        got.sort_unstable();
        assert_eq!(got, [10, 20, 30]);
    });
}

#[test]
fn mpmc_full_ring_wraps_with_concurrent_consumer() {
    loom::model(|| {
        let ring = Mpmc::new(2).unwrap();
        ring.push_slice(&[1, 2]).unwrap();
        let r2 = ring.clone();
        let producer = thread::spawn(move || {
            while r2.push(3).is_err() {
                thread::yield_now();
            }
        });
        let got = [pop_mpmc(&ring, false), pop_mpmc(&ring, true), pop_mpmc(&ring, false)];
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

#[test]
fn doorbell_park_wake_loses_no_wakeup() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::new(2).unwrap().split().unwrap();
        let bell = Doorbell::new();
        let b2 = bell.clone();
        let producer = thread::spawn(move || {
            tx.push(7).unwrap();
            b2.notify().unwrap();
        });
        // A lost wakeup leaves this thread parked forever: loom reports the
        // deadlock and the test fails.
        assert_eq!(bell.wait_for(|| rx.pop().ok(), None).unwrap(), 7);
        producer.join().unwrap();
        assert_eq!(bell.waiters().parked, 0);
    });
}

#[test]
fn doorbell_two_waiters_both_wake() {
    loom::model(|| {
        let ring = Mpmc::new(2).unwrap();
        let bell = Doorbell::new();
        let (r2, b2) = (ring.clone(), bell.clone());
        let waiter = thread::spawn(move || b2.wait_for(|| r2.pop().ok(), None).unwrap());
        let (r3, b3) = (ring.clone(), bell.clone());
        let producer = thread::spawn(move || {
            r3.push_slice(&[1, 2]).unwrap();
            b3.notify().unwrap();
        });
        let mine = bell.wait_for(|| ring.pop().ok(), None).unwrap();
        let theirs = waiter.join().unwrap();
        producer.join().unwrap();
        let mut got = [mine, theirs];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn doorbells_both_ways_over_a_full_ring_lose_no_wakeup() {
    // Capacity 1, two items: the producer must park on "space" while the
    // consumer parks on "data"; each side notifies the other.
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::new(1).unwrap().split().unwrap();
        let (data, space) = (Doorbell::new(), Doorbell::new());
        let (d2, s2) = (data.clone(), space.clone());
        let producer = thread::spawn(move || {
            for i in 1..=2 {
                let mut v = i;
                s2.wait_for(
                    || match tx.push(v) {
                        Ok(()) => Some(()),
                        Err(e) => {
                            v = e.into_inner();
                            None
                        }
                    },
                    None,
                )
                .unwrap();
                d2.notify().unwrap();
            }
        });
        for i in 1..=2 {
            assert_eq!(data.wait_for(|| rx.pop().ok(), None).unwrap(), i);
            space.notify().unwrap();
        }
        producer.join().unwrap();
    });
}
