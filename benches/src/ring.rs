//! SPSC ring throughput: `spsc_vs_rtrb` (higher is better).
//!
//! Ours is the pools' ring: a [`SplitRing`] (producer and consumer halves in
//! their own memory; heap memory here, as the ring algorithm alone is
//! measured), capacity 1024, 3-word cells; the baseline is `rtrb` 0.3 with the
//! same capacity and `u64` items. In both, a producer thread on CPU 1 pushes
//! one at a time (spinning while full) and the consumer on CPU 0 pops one at a
//! time (spinning while empty). The clock runs from the consumer's first pop
//! to its last, so thread start-up is not counted. Both rings are kept across
//! rounds (the producer end moves to its thread and comes back).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use numashm_ring::{SplitConsumer, SplitProducer, SplitRing};

use crate::child::{other_cpu, pin_current_thread, Pinned, Watchdog};
use crate::{interleave, Budget, Comparison};

/// Ring capacity of both sides.
pub const CAPACITY: usize = 1024;

/// Keeps the stop flag on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// The consumer's timed loop, shared by both rings: pops the first item,
/// then times up to `n - 1` more (or until `max` has passed); sets `stop` when done.
fn consume(n: u64, max: Duration, pop: &mut impl FnMut() -> u64, stop: &AtomicBool) -> (u64, Duration) {
    black_box(pop());
    let t0 = Instant::now();
    let mut got = 0;
    while got + 1 < n {
        let chunk = 1024.min(n - 1 - got);
        for _ in 0..chunk {
            black_box(pop());
        }
        got += chunk;
        if t0.elapsed() > max {
            break;
        }
    }
    let elapsed = t0.elapsed();
    // Relaxed: a stop request, it publishes nothing (the join orders the rest).
    stop.store(true, Ordering::Relaxed);
    (got, elapsed)
}

/// Ours: the split ring (heap memory, capacity [`CAPACITY`]) between two threads.
pub struct SplitPair {
    tx: Option<SplitProducer>,
    rx: SplitConsumer,
}

impl Default for SplitPair {
    fn default() -> Self {
        let (tx, rx) = SplitRing::new(CAPACITY).expect("split ring");
        SplitPair { tx: Some(tx), rx }
    }
}

impl SplitPair {
    /// Moves up to `n` cells `[i, 0, 0]` from a producer thread (CPU 1) to this
    /// thread, one at a time, stopping early once `max` has passed (on a loaded
    /// machine). Returns (cells timed, time from the first pop to the last).
    pub fn transfer(&mut self, n: u64, max: Duration) -> (u64, Duration) {
        let mut tx = self.tx.take().expect("producer");
        let rx = &mut self.rx;
        let stop = Padded(AtomicBool::new(false));
        let stop = &stop.0;
        let (out, tx) = std::thread::scope(|s| {
            let producer = s.spawn(move || {
                pin_current_thread(other_cpu());
                let mut dog = Watchdog::new("split producer");
                'all: for i in 1..=n {
                    loop {
                        match tx.push([i, 0, 0]) {
                            Ok(()) => {
                                dog.progress();
                                break;
                            }
                            Err(_) => {
                                // Relaxed: as in `consume`.
                                if stop.load(Ordering::Relaxed) {
                                    break 'all;
                                }
                                dog.tick_busy();
                            }
                        }
                    }
                }
                tx
            });
            let mut dog = Watchdog::new("split consumer");
            let mut pop = || loop {
                match rx.pop() {
                    Ok(Some(c)) => {
                        dog.progress();
                        return c[0];
                    }
                    Ok(None) => dog.tick_busy(),
                    Err(e) => panic!("split pop: {e}"),
                }
            };
            let out = consume(n, max, &mut pop, stop);
            (out, producer.join().expect("split producer"))
        });
        self.tx = Some(tx);
        // Leave the ring empty for the next round.
        while let Ok(Some(_)) = self.rx.pop() {}
        out
    }

    /// One thread: `n` × (push one, pop one), for instruction counts.
    pub fn push_pop(&mut self, n: u64) -> u64 {
        let tx = self.tx.as_mut().expect("producer");
        let mut sum = 0u64;
        for i in 0..n {
            tx.push([black_box(i), 0, 0]).expect("room");
            sum = sum.wrapping_add(self.rx.pop().expect("intact").expect("item")[0]);
        }
        sum
    }
}

/// One thread: `n` × (push one, pop one) through rtrb, for instruction counts.
pub fn rtrb_push_pop(n: u64) -> u64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let mut sum = 0u64;
    for i in 0..n {
        tx.push(black_box(i)).expect("room");
        sum = sum.wrapping_add(rx.pop().expect("item"));
    }
    sum
}

/// The baseline ring: `rtrb` with the same capacity, kept across rounds as ours is.
pub struct RtrbRing {
    tx: Option<rtrb::Producer<u64>>,
    rx: rtrb::Consumer<u64>,
}

impl Default for RtrbRing {
    fn default() -> Self {
        let (tx, rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
        RtrbRing { tx: Some(tx), rx }
    }
}

impl RtrbRing {
    /// As [`SplitPair::transfer`], with `u64` items.
    pub fn transfer(&mut self, n: u64, max: Duration) -> (u64, Duration) {
        let mut tx = self.tx.take().expect("producer");
        let rx = &mut self.rx;
        let stop = Padded(AtomicBool::new(false));
        let stop = &stop.0;
        let (out, tx) = std::thread::scope(|s| {
            // The producer end moves to its thread (and comes back), as ours does.
            let producer = s.spawn(move || {
                pin_current_thread(other_cpu());
                let mut dog = Watchdog::new("rtrb producer");
                'all: for i in 1..=n {
                    let mut v = i;
                    loop {
                        match tx.push(v) {
                            Ok(()) => {
                                dog.progress();
                                break;
                            }
                            Err(rtrb::PushError::Full(back)) => {
                                // Relaxed: as in `consume`.
                                if stop.load(Ordering::Relaxed) {
                                    break 'all;
                                }
                                v = back;
                                dog.tick_busy();
                            }
                        }
                    }
                }
                tx
            });
            let mut dog = Watchdog::new("rtrb consumer");
            let mut pop = || loop {
                match rx.pop() {
                    Ok(v) => {
                        dog.progress();
                        return v;
                    }
                    Err(rtrb::PopError::Empty) => dog.tick_busy(),
                }
            };
            let out = consume(n, max, &mut pop, stop);
            (out, producer.join().expect("rtrb producer"))
        });
        self.tx = Some(tx);
        while self.rx.pop().is_ok() {}
        out
    }
}

/// `spsc_vs_rtrb` (higher is better): the pools' split ring vs rtrb, one item
/// at a time between two threads; our items/s ÷ rtrb's, reported as ns per item.
pub fn compare_spsc_vs_rtrb(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let quick = budget.rounds <= Budget::QUICK.rounds;
    let n: u64 = if quick { 1 << 20 } else { 1 << 22 };
    let max = Duration::from_millis(if quick { 100 } else { 200 });
    let per = |(got, d): (u64, Duration)| crate::ns(d) / got.max(1) as f64;
    let split = std::cell::RefCell::new(SplitPair::default());
    let rtrb = std::cell::RefCell::new(RtrbRing::default());
    let medians = interleave(budget.rounds, || per(split.borrow_mut().transfer(n, max)), || per(rtrb.borrow_mut().transfer(n, max)));
    Comparison::rates(
        "spsc_vs_rtrb",
        "split ring (the pools' ring, heap memory, cap 1024): 3-word cells one at a time, two threads",
        "rtrb 0.3, u64, same capacity, one at a time, two threads",
        medians,
        1.0,
    )
}
