//! SPSC ring throughput: `spsc_vs_rtrb` (higher is better).
//!
//! Ours is `Spsc::<SharedMemory>` laid with `init_in` over the data area of a
//! memfd region (the way a segment lays its rings), capacity 1024; the
//! baseline is `rtrb` 0.3 with the same capacity. In both, a producer thread
//! on CPU 1 pushes `u64`s one at a time (spinning while full) and the
//! consumer on CPU 0 pops them one at a time (spinning while empty). The
//! clock runs from the consumer's first pop to its last, so thread start-up
//! is not counted.
#![allow(unsafe_code)] // laying the ring over the region

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use numashm_region::{Region, RegionOptions};
use numashm_ring::{PopError, PushError, SharedMemory, Spsc};

use crate::child::{other_cpu, pin_current_thread, Pinned, Watchdog};
use crate::{interleave, Budget, Comparison};

/// Ring capacity of both sides.
pub const CAPACITY: usize = 1024;

/// A region holding one SPSC ring in its data area.
pub struct SharedRing {
    ring: Spsc<SharedMemory>,
    // Dropped after `ring` (fields drop in order): the mapping outlives the ring.
    _region: Region,
}

impl SharedRing {
    /// Creates the region and lays the ring in it.
    pub fn new() -> SharedRing {
        let bytes = Spsc::<SharedMemory>::bytes_for(CAPACITY).expect("ring size");
        let region = RegionOptions::new(64 << 10).create_anonymous("numashm-bench-spsc").expect("region");
        let off = region.data_offset().next_multiple_of(128);
        assert!(off + bytes <= region.len(), "region too small for the ring");
        // SAFETY: 1. `off..off+bytes` lies inside the region's data area, mapped
        // read-write while `region` lives, and `region` outlives `ring` (field
        // order); 2. nothing else uses these bytes (the region is ours and
        // fresh); 3. afterwards only ring values access them.
        let ring = unsafe { Spsc::init_in(region.as_ptr().add(off), bytes, CAPACITY) }.expect("init ring");
        SharedRing { ring, _region: region }
    }

    /// Moves up to `n` handles from a producer thread (CPU 1) to this thread,
    /// one at a time, stopping early once `max` has passed (on a loaded
    /// machine). Returns (handles timed, time from the first pop to the last).
    pub fn transfer(&self, n: u64, max: Duration) -> (u64, Duration) {
        let mut rx = self.ring.consumer().expect("consumer");
        let stop = Padded(AtomicBool::new(false));
        let stop = &stop.0;
        let ring = &self.ring;
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                pin_current_thread(other_cpu());
                // Each end on its own thread's stack: no false sharing of the
                // ends' cached indices.
                let mut tx = ring.producer().expect("producer");
                let mut dog = Watchdog::new("spsc producer");
                for i in 1..=n {
                    let mut v = i;
                    loop {
                        match tx.push(v) {
                            Ok(()) => {
                                dog.progress();
                                break;
                            }
                            Err(PushError::Full(back)) => {
                                // Relaxed: a stop request, it publishes nothing.
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                v = back;
                                dog.tick_busy();
                            }
                            Err(e) => panic!("push: {e:?}"),
                        }
                    }
                }
            });
            let mut dog = Watchdog::new("spsc consumer");
            let mut pop = || loop {
                match rx.pop() {
                    Ok(v) => {
                        dog.progress();
                        return v;
                    }
                    Err(PopError::Empty) => dog.tick_busy(),
                    Err(e) => panic!("pop: {e:?}"),
                }
            };
            consume(n, max, &mut pop, stop)
        });
        // Leave the ring empty for the next round.
        while rx.pop().is_ok() {}
        out
    }
}

/// Keeps the stop flag on its own cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// The consumer's timed loop, shared by both rings: pops the first handle,
/// then times up to `n - 1` more; sets `stop` when done.
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
    stop.store(true, Ordering::Relaxed);
    (got, elapsed)
}

impl SharedRing {
    /// One thread: `n` × (push one, pop one), for instruction counts.
    pub fn push_pop(&self, n: u64) -> u64 {
        let (mut tx, mut rx) = (self.ring.producer().expect("producer"), self.ring.consumer().expect("consumer"));
        let mut sum = 0u64;
        for i in 0..n {
            tx.push(black_box(i)).expect("room");
            sum = sum.wrapping_add(rx.pop().expect("item"));
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

impl Default for SharedRing {
    fn default() -> Self {
        Self::new()
    }
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
    /// As [`SharedRing::transfer`].
    pub fn transfer(&mut self, n: u64, max: Duration) -> (u64, Duration) {
        let mut tx = self.tx.take().expect("producer");
        let rx = &mut self.rx;
        let stop = Padded(AtomicBool::new(false));
        let stop = &stop.0;
        let (out, tx) = std::thread::scope(|s| {
            // The producer end moves to its thread (and comes back), as ours is made there.
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
                                // Relaxed: as above.
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

/// `spsc_vs_rtrb` (higher is better): our handles/s ÷ rtrb's, reported as ns per handle.
pub fn compare_spsc_vs_rtrb(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let ring = SharedRing::new();
    let quick = budget.rounds <= Budget::QUICK.rounds;
    let n: u64 = if quick { 1 << 20 } else { 1 << 22 };
    let max = Duration::from_millis(if quick { 100 } else { 200 });
    let per = |(got, d): (u64, Duration)| crate::ns(d) / got.max(1) as f64;
    let rtrb = std::cell::RefCell::new(RtrbRing::default());
    let medians = interleave(budget.rounds, || per(ring.transfer(n, max)), || per(rtrb.borrow_mut().transfer(n, max)));
    Comparison::rates(
        "spsc_vs_rtrb",
        "u64 handles one at a time through our SPSC ring in a memfd region, cap 1024, two threads",
        "rtrb 0.3, same capacity, one at a time, two threads",
        medians,
        1.0,
    )
}
