//! Two or more threads through the heap rings and doorbells, with checksums.
mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use numashm_ring::{Doorbell, Mpmc, PopError, Spsc};

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish
/// within a generous watchdog limit; never asserts a duration otherwise.
fn with_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(f()).unwrap());
    let limit = if cfg!(miri) { Duration::from_secs(3600) } else { Duration::from_secs(120) };
    rx.recv_timeout(limit).expect("watchdog: test did not finish")
}

#[test]
fn spsc_two_threads_deliver_every_handle_in_order() {
    with_watchdog(|| {
        let n = common::scaled(100_000) as u64;
        let (mut tx, mut rx) = Spsc::new(64).unwrap().split().unwrap();
        let producer = thread::spawn(move || {
            for i in 1..=n {
                let mut v = i;
                loop {
                    match tx.push(v) {
                        Ok(()) => break,
                        Err(e) => v = e.into_inner(),
                    }
                    thread::yield_now();
                }
            }
        });
        let mut next = 1;
        let mut sum = 0u64;
        while next <= n {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, next);
                    sum = sum.wrapping_add(v);
                    next += 1;
                }
                Err(PopError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(sum, n * (n + 1) / 2);
    });
}

#[test]
fn spsc_batches_between_two_threads() {
    with_watchdog(|| {
        let n = common::scaled(100_000) as u64;
        let (mut tx, mut rx) = Spsc::new(32).unwrap().split().unwrap();
        let producer = thread::spawn(move || {
            let items: Vec<u64> = (1..=n).collect();
            let mut done = 0;
            while done < items.len() {
                let k = tx.push_slice(&items[done..(done + 7).min(items.len())]).unwrap();
                done += k;
                if k == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut next = 1;
        let mut out = [0u64; 5];
        while next <= n {
            let k = rx.pop_into(&mut out).unwrap();
            for &v in &out[..k] {
                assert_eq!(v, next);
                next += 1;
            }
            if k == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn mpmc_two_producers_two_consumers_deliver_each_handle_once() {
    with_watchdog(|| {
        let per = common::scaled(50_000) as u64;
        let ring = Mpmc::new(16).unwrap();
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let ring = ring.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        let v = p * per + i;
                        if p == 0 || i % 3 != 0 {
                            while ring.push(v).is_err() {
                                thread::yield_now();
                            }
                        } else {
                            while ring.push_slice(&[v]).unwrap() == 0 {
                                thread::yield_now();
                            }
                        }
                    }
                })
            })
            .collect();
        let total = 2 * per;
        let taken = std::sync::Arc::new(numashm_ring_test_counter::Counter::default());
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                let ring = ring.clone();
                let taken = taken.clone();
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut out = [0u64; 3];
                    while taken.get() < total {
                        let got = if c == 0 {
                            ring.pop().map(|v| vec![v]).unwrap_or_default()
                        } else {
                            let k = ring.pop_into(&mut out).unwrap();
                            out[..k].to_vec()
                        };
                        if got.is_empty() {
                            thread::yield_now();
                        }
                        taken.add(got.len() as u64);
                        seen.extend(got);
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..total).collect::<Vec<_>>());
    });
}

/// A tiny counter for the test (core atomics are fine in tests).
mod numashm_ring_test_counter {
    #![allow(clippy::disallowed_types)]
    use std::sync::atomic::{AtomicU64, Ordering};
    #[derive(Default)]
    pub struct Counter(AtomicU64);
    impl Counter {
        pub fn get(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        pub fn add(&self, n: u64) {
            self.0.fetch_add(n, Ordering::SeqCst);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)] // futex
fn doorbell_wakes_a_parked_thread_for_every_item() {
    with_watchdog(|| {
        let n = 2_000u64;
        let (mut tx, mut rx) = Spsc::new(4).unwrap().split().unwrap();
        let data = Doorbell::new();
        let space = Doorbell::new();
        let (d2, s2) = (data.clone(), space.clone());
        let consumer = thread::spawn(move || {
            let mut sum = 0u64;
            for _ in 0..n {
                let v = d2.wait_for(|| rx.pop().ok(), None).unwrap();
                sum += v;
                s2.notify().unwrap();
            }
            sum
        });
        for i in 1..=n {
            let mut v = i;
            space
                .wait_for(
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
            data.notify().unwrap();
        }
        assert_eq!(consumer.join().unwrap(), n * (n + 1) / 2);
    });
}

#[test]
#[cfg_attr(miri, ignore)] // futex
fn parked_waiter_is_woken_and_notify_reports_it() {
    with_watchdog(|| {
        let (mut tx, mut rx) = Spsc::new(4).unwrap().split().unwrap();
        let bell = Doorbell::new();
        let b2 = bell.clone();
        let waiter = thread::spawn(move || b2.wait_for(|| rx.pop().ok(), None).unwrap());
        while bell.waiters().parked == 0 {
            thread::yield_now();
        }
        tx.push(77).unwrap();
        assert_eq!(bell.notify().unwrap().parked, 1);
        assert_eq!(waiter.join().unwrap(), 77);
        assert_eq!(bell.waiters().parked, 0);
    });
}

#[test]
#[cfg_attr(miri, ignore)] // futex timeout
fn wait_times_out_when_nobody_notifies() {
    let bell = Doorbell::new();
    assert_eq!(
        bell.wait_for(|| None::<u64>, Some(Duration::from_millis(20))),
        Err(numashm_ring::WaitError::TimedOut)
    );
    assert_eq!(bell.waiters().parked, 0);
}

#[test]
fn notify_without_waiters_makes_no_syscall() {
    // Nothing to observe directly; the count is what decides, and it is 0.
    let bell = Doorbell::new();
    let n = bell.notify().unwrap();
    assert_eq!((n.parked, n.armed), (0, 0));
}
