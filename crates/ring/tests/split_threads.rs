//! The split ring between two threads over heap memory: every cell arrives
//! once, in order, with its payload intact, through full and empty phases,
//! with the doorbell parking both sides. Every wait has a deadline.
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::scaled;
use numashm_ring::{SplitPushError, SplitRing, SplitWaitError};

const WATCHDOG: Duration = Duration::from_secs(120);

fn cell(i: u64) -> [u64; 3] {
    [
        i,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        i.rotate_left(17) ^ 0x5555,
    ]
}

fn checksum(acc: u64, c: [u64; 3]) -> u64 {
    c.iter().fold(acc, |a, &w| {
        a.rotate_left(5) ^ w.wrapping_mul(0xff51_afd7_ed55_8ccd)
    })
}

#[test]
fn two_threads_pass_a_million_cells_with_checksums() {
    let n = scaled(1_000_000) as u64;
    let (mut tx, mut rx) = SplitRing::new(64).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    let producer = thread::spawn(move || {
        let mut sum = 0;
        for i in 0..n {
            let c = cell(i);
            // Batches of 16 with one notify, to exercise both paths.
            loop {
                match tx.push(c) {
                    Ok(()) => break,
                    Err(SplitPushError::Full) => {
                        tx.notify().unwrap();
                        if cfg!(miri) {
                            thread::yield_now();
                        } else {
                            tx.wait_for_space(Some(deadline)).unwrap();
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if i % 16 == 15 {
                tx.notify().unwrap();
            }
            sum = checksum(sum, c);
        }
        tx.notify().unwrap();
        sum
    });
    let mut sum = 0;
    let mut next = 0;
    while next < n {
        let got = if cfg!(miri) {
            let got = rx.pop().unwrap();
            if got.is_none() {
                thread::yield_now();
            }
            got
        } else {
            rx.wait(Some(deadline)).unwrap()
        };
        if let Some(c) = got {
            assert_eq!(c, cell(next), "cell {next}");
            sum = checksum(sum, c);
            next += 1;
            if next % 8 == 0 || next == n {
                rx.notify_space().unwrap();
            }
        }
    }
    assert_eq!(producer.join().unwrap(), sum);
    assert_eq!(rx.pop(), Ok(None));
}

#[test]
#[cfg_attr(miri, ignore)] // futex
fn a_parked_consumer_is_woken_by_push_notify() {
    // The consumer parks at once (empty ring); the producer pushes after a
    // pause. At least one of several rounds must find it parked and wake it
    // (a round may land between two MAX_PARK slices); every round delivers.
    let (mut tx, mut rx) = SplitRing::new(4).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    let consumer = thread::spawn(move || {
        for i in 0..5u64 {
            let c = loop {
                if let Some(c) = rx.wait(Some(deadline)).unwrap() {
                    break c;
                }
            };
            assert_eq!(c, [i; 3]);
        }
    });
    let mut woke = 0;
    for i in 0..5u64 {
        thread::sleep(Duration::from_millis(20));
        woke += u32::from(tx.push_notify([i; 3]).unwrap());
    }
    consumer.join().unwrap();
    assert!(woke >= 1, "no push found the consumer parked");
}

#[test]
#[cfg_attr(miri, ignore)] // futex
fn a_parked_producer_is_woken_by_notify_space() {
    let (mut tx, mut rx) = SplitRing::new(1).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    tx.push([0; 3]).unwrap();
    let producer = thread::spawn(move || {
        for i in 1..6u64 {
            while tx.wait_for_space(Some(deadline)).unwrap().is_none() {}
            tx.push([i; 3]).unwrap();
        }
    });
    let mut woke = 0;
    for i in 0..6u64 {
        thread::sleep(Duration::from_millis(20));
        let c = loop {
            if let Some(c) = rx.pop().unwrap() {
                break c;
            }
            assert!(Instant::now() < deadline, "watchdog");
            thread::yield_now();
        };
        assert_eq!(c, [i; 3]);
        woke += u32::from(rx.notify_space().unwrap());
    }
    producer.join().unwrap();
    assert!(woke >= 1, "no pop found the producer parked");
}

#[test]
#[cfg_attr(miri, ignore)] // futex with a timeout
fn waits_end_at_the_deadline_or_after_a_slice() {
    let (mut tx, mut rx) = SplitRing::new(1).unwrap();
    let past = Instant::now();
    assert_eq!(rx.wait(Some(past)), Err(SplitWaitError::TimedOut));
    // No deadline: returns after one MAX_PARK slice with nothing.
    assert_eq!(rx.wait(None), Ok(None));
    tx.push([1; 3]).unwrap();
    assert_eq!(tx.wait_for_space(Some(past)), Err(SplitWaitError::TimedOut));
    assert_eq!(tx.wait_for_space(None), Ok(None));
    assert_eq!(rx.wait(Some(past)), Ok(Some([1; 3]))); // data first, then the deadline
    assert_eq!(tx.wait_for_space(Some(past)), Ok(Some(1)));
}
