//! Cross-process round trips: `rtt_vs_floor`, `rtt_4m_vs_64b`, `doorbell_vs_eventfd`.
//!
//! Ours is the public path: an anonymous (memfd) [`Segment`] with its default
//! rings and classes; the parent sends on ring 0 and receives on ring 1, a
//! second process (this executable as the `echo` child, see [`crate::child`])
//! attaches by fd, receives on ring 0 and replies on ring 1. Each side
//! allocates its message, writes the payload in place, sends the handle; the
//! other reads the payload in place and frees the slot by dropping it.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use numashm::{Message, MessageError, Receiver, Segment, SegmentConfig, Sender};

use crate::child::{inheritable, Child, EventPair, Floor, Pinned, Watchdog, PAYLOAD};
use crate::{interleave, per_op_for, Budget, Comparison};

/// Payload of the "4 MiB" message: the whole 4 MiB slot of the default largest class.
pub const BIG: usize = 4 << 20;

/// How long the parked round trip leaves both sides idle before each timed
/// round trip, so that both have parked (our receive spins a few µs, then parks).
pub const PARK_GAP: Duration = Duration::from_micros(300);

/// How long `recv` may wait before the benchmark gives up on the other process.
const DEAD_CHILD: Duration = Duration::from_secs(10);

/// A segment shared with an echo child.
pub struct Echo {
    seg: Segment,
    child: Option<Child>,
}

impl Echo {
    /// Creates the segment and starts the child that echoes every message.
    pub fn start() -> Echo {
        let seg = Segment::create(SegmentConfig::anonymous("numashm-bench-rtt")).expect("create segment");
        let fd = inheritable(&seg);
        let child = Child::spawn(&format!("echo:{}", fd.as_raw_fd()));
        drop(fd);
        Echo { seg, child: Some(child) }
    }

    /// The parent's ends: sender on ring 0, receiver on ring 1.
    pub fn ends(&self) -> (Sender<'_>, Receiver<'_>) {
        (self.seg.sender(0).expect("sender 0"), self.seg.receiver(1).expect("receiver 1"))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // End the child before the segment goes (it is only a guest).
        drop(self.child.take());
    }
}

fn fill(payload: &mut [u8], byte: u8) {
    if payload.len() <= PAYLOAD {
        payload.fill(byte);
    }
}

fn sum(payload: &[u8]) -> u64 {
    if payload.len() <= PAYLOAD {
        payload.iter().map(|&b| u64::from(b)).sum()
    } else {
        0 // "not touched"
    }
}

/// Allocates a `len`-byte message, writes it (if it is the 64 B kind) and sends it.
#[inline]
fn send(tx: &Sender<'_>, len: usize, byte: u8) {
    let mut m = tx.alloc(len).expect("alloc");
    fill(&mut m, byte);
    // Ping-pong never fills a ring of 1024: any error is a bug.
    tx.send(m).map_err(|e| e.error).expect("send");
}

/// Busy-polls `try_recv` (the low-latency way to receive).
#[inline]
fn spin_recv<'s>(rx: &Receiver<'s>) -> Message<'s> {
    let mut dog = Watchdog::new("round trip");
    loop {
        match rx.try_recv() {
            Ok(m) => return m,
            Err(MessageError::Empty) => dog.tick(),
            Err(e) => panic!("try_recv: {e}"),
        }
    }
}

/// One round trip with both sides busy-polling: `len` bytes out, the same back.
#[inline]
pub fn round_trip(tx: &Sender<'_>, rx: &Receiver<'_>, len: usize) -> u64 {
    send(tx, len, 7);
    let m = spin_recv(rx);
    let s = sum(&m);
    drop(m); // frees the slot
    s
}

/// One round trip where the other side is parked: idle [`PARK_GAP`] (not
/// timed), then send and wait with `recv` (spin, yield, park). Returns the
/// time of the round trip alone.
pub fn parked_round_trip(tx: &Sender<'_>, rx: &Receiver<'_>) -> Duration {
    std::thread::sleep(PARK_GAP);
    let start = Instant::now();
    send(tx, PAYLOAD, 7);
    let m = rx.recv_timeout(DEAD_CHILD).expect("recv (is the echo child alive?)");
    black_box(sum(&m));
    drop(m);
    start.elapsed()
}

/// The eventfd baseline of [`parked_round_trip`], with the same idle gap.
pub fn eventfd_round_trip(pair: &EventPair) -> Duration {
    std::thread::sleep(PARK_GAP);
    let start = Instant::now();
    pair.round_trip();
    start.elapsed()
}

/// The echo child: receive on ring 0, read, free, reply the same length on ring 1.
pub(crate) fn echo_child(fd: OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::attach_fd(fd)?;
    let rx = seg.receiver(0)?;
    let tx = seg.sender(1)?;
    crate::child::signal_ready()?;
    loop {
        // Busy-poll for a while (round trips in a row arrive within µs), then
        // `recv`, which parks on the ring's doorbell while the parent is busy
        // with something else.
        let mut got = None;
        for _ in 0..(1 << 12) {
            match rx.try_recv() {
                Ok(m) => {
                    got = Some(m);
                    break;
                }
                Err(MessageError::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        let m = match got {
            Some(m) => m,
            None => rx.recv()?,
        };
        let len = m.len();
        let s = sum(&m);
        drop(m);
        let mut r = tx.alloc(len)?;
        fill(&mut r, s as u8);
        tx.send(r).map_err(|e| e.error)?;
    }
}

fn iters(budget: Budget, quick: u64, full: u64) -> u64 {
    if budget.rounds <= crate::Budget::QUICK.rounds {
        quick
    } else {
        full
    }
}

/// Time cap of one side of one round (and of its warm-up).
fn cap(budget: Budget) -> Duration {
    Duration::from_millis(iters(budget, 80, 150))
}

/// `rtt_vs_floor`: our 64 B round trip vs 64 B + a flag flip on a shared page.
pub fn compare_rtt_vs_floor(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = Echo::start();
    let (tx, rx) = echo.ends();
    let mut floor = Floor::start();
    let (n, max) = (iters(budget, 50_000, 200_000), cap(budget));
    let payload = [7u8; PAYLOAD];
    let r = interleave(
        budget.rounds,
        || {
            // Wake the child (it may be parked) before timing.
            per_op_for(100, max, || {
                black_box(round_trip(&tx, &rx, PAYLOAD));
            });
            per_op_for(n, max, || {
                black_box(round_trip(&tx, &rx, PAYLOAD));
            })
        },
        || {
            // Wake the child (it parks while ours is measured) before timing.
            black_box(floor.wake_round_trip(&payload));
            per_op_for(100, max, || {
                black_box(floor.round_trip(&payload));
            });
            per_op_for(n, max, || {
                black_box(floor.round_trip(&payload));
            })
        },
    );
    Comparison::times(
        "rtt_vs_floor",
        "64 B round trip between two processes: alloc, write, send / try_recv, read, free, reply",
        "two processes, shared page: write 64 B + flip a flag, the other reads, writes 64 B, flips back",
        r,
        1.3,
    )
}

/// `rtt_4m_vs_64b`: a 4 MiB message (not touched) vs a 64 B one, same path.
pub fn compare_rtt_4m_vs_64b(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = Echo::start();
    let (tx, rx) = echo.ends();
    let (n, max) = (iters(budget, 50_000, 200_000), cap(budget));
    let one = |len: usize| {
        per_op_for(100, max, || {
            black_box(round_trip(&tx, &rx, len));
        });
        per_op_for(n, max, || {
            black_box(round_trip(&tx, &rx, len));
        })
    };
    let r = interleave(budget.rounds, || one(BIG), || one(PAYLOAD));
    Comparison::times(
        "rtt_4m_vs_64b",
        "round trip of a 4 MiB message (payload not touched)",
        "our 64 B round trip",
        r,
        1.1,
    )
}

/// `doorbell_vs_eventfd`: a round trip where the receiver is parked.
pub fn compare_doorbell_vs_eventfd(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = Echo::start();
    let (tx, rx) = echo.ends();
    let pair = EventPair::start();
    let n = iters(budget, 100, 300);
    let r = interleave(
        budget.rounds,
        || (0..n).map(|_| crate::ns(parked_round_trip(&tx, &rx))).sum::<f64>() / n as f64,
        || (0..n).map(|_| crate::ns(eventfd_round_trip(&pair))).sum::<f64>() / n as f64,
    );
    Comparison::times(
        "doorbell_vs_eventfd",
        "64 B round trip, both sides parked between messages (futex doorbell)",
        "two processes ping-ponging through two eventfds (blocking reads)",
        r,
        1.2,
    )
}
