//! Cross-process round trips through pools (`numashm::pool`, the facade users
//! call): `rtt_vs_floor`, `rtt_4m_vs_64b`, `doorbell_vs_eventfd`.
//!
//! The parent joins a fresh rendezvous with its own sealed pool, sends on
//! channel 0 and receives on channel 1; the `echo` child (this executable, see
//! [`crate::child`]) joins by the inherited rendezvous fd with a pool of its
//! own, receives on 0 and replies on 1. Each side allocates in its own pool,
//! writes in place and sends; the other reads through its read-only mapping
//! and returns the slot by dropping the message. Payloads up to [`PAYLOAD`]
//! bytes are written and read; larger ones ([`BIG`]) are not touched.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Message, Peer, PeerConfig, Receiver, Sender};

use crate::baselines::{eventfd_round_trip, PARK_GAP};
use crate::child::{inheritable, Child, EventPair, Floor, Pinned, Watchdog, PAYLOAD};
use crate::{interleave, per_op_for, Budget, Comparison};

/// Payload of the "4 MiB" message. It is above the largest default class
/// (1 MiB), so each side's pool gives it a dedicated extent (made once, then
/// reused once the reader has returned it); the 1 GiB default reservation
/// holds a few such extents many times over.
pub const BIG: usize = 4 << 20;

/// How long the echo child busy-polls an empty channel before it parks: well
/// under [`PARK_GAP`], so `doorbell_vs_eventfd` finds it parked. (Bounded by a
/// count of 4096 polls instead, it spun ~300 µs here and the row timed a
/// round trip to a busy child: 0.55 of the eventfd pair's, 0.99 with a 3 ms gap.)
const SPIN_FOR: Duration = Duration::from_micros(50);

/// How long a blocking receive may wait before the benchmark gives up on the other process.
const DEAD_CHILD: Duration = Duration::from_secs(10);

fn iters(budget: Budget, quick: u64, full: u64) -> u64 {
    if budget.rounds <= Budget::QUICK.rounds {
        quick
    } else {
        full
    }
}

/// Time cap of one side of one round (and of its warm-up).
fn cap(budget: Budget) -> Duration {
    Duration::from_millis(iters(budget, 80, 150))
}

/// A rendezvous shared with an `echo` child that echoes every message
/// (channel 0 out, channel 1 back), each side sending from its own pool.
pub struct PoolEcho {
    host: Peer,
    child: Option<Child>,
}

impl PoolEcho {
    /// Creates the rendezvous (default [`PeerConfig`]) and starts the child.
    pub fn start() -> PoolEcho {
        let host = Peer::create_anonymous("numashm-bench-pool", 4, PeerConfig::new("numashm-bench-pool-host")).expect("create");
        let fd = inheritable(host.rendezvous_fd());
        let child = Child::spawn(&format!("echo:{}", fd.as_raw_fd()));
        drop(fd);
        PoolEcho { host, child: Some(child) }
    }

    /// The parent's ends: sender on channel 0, receiver on channel 1.
    pub fn ends(&self) -> (Sender<'_>, Receiver<'_>) {
        (self.host.sender(0).expect("sender 0"), self.host.receiver(1).expect("receiver 1"))
    }
}

impl Drop for PoolEcho {
    fn drop(&mut self) {
        // End the child before our pool goes.
        drop(self.child.take());
    }
}

/// Busy-polls `try_recv` (the low-latency way to receive).
#[inline]
fn spin_recv<'p>(rx: &Receiver<'p>) -> Message<'p> {
    let mut dog = Watchdog::new("pool echo reply");
    loop {
        match rx.try_recv() {
            Ok(m) => return m,
            Err(ChannelError::Empty) => dog.tick(),
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// Allocates a `len`-byte message in our pool, writes it if it is at most
/// [`PAYLOAD`] bytes, and sends it.
#[inline]
fn send(tx: &Sender<'_>, len: usize) {
    let mut m = tx.alloc(len).expect("alloc");
    if len <= PAYLOAD {
        m.fill(7);
    }
    // Ping-pong never fills a ring: any error is a bug.
    tx.send(m).map_err(|e| e.error).expect("send");
}

/// Reads a reply as the round trips do: the last byte of a small payload,
/// nothing of a large one ("not touched").
#[inline]
fn read(m: &Message<'_>) -> u8 {
    if m.len() <= PAYLOAD {
        m.last().copied().unwrap_or(0)
    } else {
        0
    }
}

/// One 64 B round trip through the pools (the public path), both sides
/// busy-polling; returns a byte of the reply so that nothing is optimised away.
#[inline]
pub fn round_trip(tx: &Sender<'_>, rx: &Receiver<'_>) -> u8 {
    round_trip_of(tx, rx, PAYLOAD)
}

/// As [`round_trip`] with a `len`-byte message (not touched above [`PAYLOAD`]).
#[inline]
pub fn round_trip_of(tx: &Sender<'_>, rx: &Receiver<'_>, len: usize) -> u8 {
    send(tx, len);
    let r = spin_recv(rx);
    assert_eq!(r.len(), len, "the echo replies with the length it received");
    let b = read(&r);
    drop(r); // returns the slot to the child's pool
    b
}

/// One 64 B round trip where the other side is parked: idle [`PARK_GAP`] (not
/// timed), then send and wait with `recv_timeout` (spin, then park on the
/// channel's doorbell). Returns the time of the round trip alone.
pub fn parked_round_trip(tx: &Sender<'_>, rx: &Receiver<'_>) -> Duration {
    std::thread::sleep(PARK_GAP);
    let start = Instant::now();
    send(tx, PAYLOAD);
    let m = rx.recv_timeout(DEAD_CHILD).expect("recv (is the echo child alive?)");
    black_box(read(&m));
    drop(m);
    start.elapsed()
}

/// The `echo` child: receive on channel 0, reply the same length on 1 (a copy
/// of the bytes up to [`PAYLOAD`], untouched above).
pub(crate) fn echo_child(fd: OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
    let peer = Peer::join_fd(fd, PeerConfig::new("numashm-bench-pool-echo"))?;
    let rx = peer.receiver(0)?;
    let tx = peer.sender(1)?;
    crate::child::signal_ready()?;
    loop {
        // Busy-poll for a while (round trips in a row arrive within µs), then
        // `recv`, which parks on the channel's doorbell while the parent is
        // busy with something else (a baseline: it must not lose CPU 1 to us).
        let mut got = None;
        let mut since = None;
        for i in 0u32.. {
            match rx.try_recv() {
                Ok(m) => {
                    got = Some(m);
                    break;
                }
                Err(ChannelError::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
            // The clock only after 256 empty polls (a busy round trip's reply
            // comes sooner), then every 256: parked well within PARK_GAP.
            if i % 256 == 255 && since.get_or_insert_with(Instant::now).elapsed() > SPIN_FOR {
                break;
            }
        }
        let m = match got {
            Some(m) => m,
            None => rx.recv()?,
        };
        let mut r = tx.alloc(m.len())?;
        if m.len() <= PAYLOAD {
            r.copy_from_slice(&m);
        }
        drop(m);
        tx.send_timeout(r, DEAD_CHILD).map_err(|e| e.error)?;
    }
}

/// `rtt_vs_floor`: the 64 B round trip through pools vs 64 B + a flag flip on a shared page.
pub fn compare_rtt_vs_floor(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let mut floor = Floor::start();
    let (n, max) = (iters(budget, 50_000, 200_000), cap(budget));
    let payload = [7u8; PAYLOAD];
    let r = interleave(
        budget.rounds,
        || {
            // Wake the child (it parks while the floor is measured) before timing.
            per_op_for(100, max, || {
                black_box(round_trip(&tx, &rx));
            });
            per_op_for(n, max, || {
                black_box(round_trip(&tx, &rx));
            })
        },
        || {
            // Wake the floor's child (it parks while ours is measured) before timing.
            black_box(floor.wake_round_trip(&payload));
            per_op_for(100, max, || {
                black_box(floor.round_trip(&payload));
            });
            per_op_for(n, max, || {
                black_box(floor.round_trip(&payload));
            })
        },
    );
    drop((tx, rx));
    drop(echo);
    Comparison::times(
        "rtt_vs_floor",
        "pools, 64 B round trip between two processes: alloc, write, send / try_recv, read, return, reply",
        "two processes, shared page: write 64 B + flip a flag, the other reads, writes 64 B, flips back",
        r,
        1.2,
    )
}

/// `rtt_4m_vs_64b`: a 4 MiB message (not touched) vs a 64 B one, same path and child.
pub fn compare_rtt_4m_vs_64b(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let (n, max) = (iters(budget, 50_000, 200_000), cap(budget));
    let one = |len: usize| {
        per_op_for(100, max, || {
            black_box(round_trip_of(&tx, &rx, len));
        });
        per_op_for(n, max, || {
            black_box(round_trip_of(&tx, &rx, len));
        })
    };
    let r = interleave(budget.rounds, || one(BIG), || one(PAYLOAD));
    drop((tx, rx));
    drop(echo);
    Comparison::times(
        "rtt_4m_vs_64b",
        "pools, round trip of a 4 MiB message (a dedicated extent in each pool; payload not touched)",
        "pools, our 64 B round trip (written and read)",
        r,
        1.1,
    )
}

/// `doorbell_vs_eventfd`: a round trip where the receivers are parked on the
/// pool channels' doorbells vs an eventfd ping-pong, both after an idle gap.
pub fn compare_doorbell_vs_eventfd(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let pair = EventPair::start();
    let n = iters(budget, 100, 300);
    let r = interleave(
        budget.rounds,
        || (0..n).map(|_| crate::ns(parked_round_trip(&tx, &rx))).sum::<f64>() / n as f64,
        || (0..n).map(|_| crate::ns(eventfd_round_trip(&pair))).sum::<f64>() / n as f64,
    );
    drop((tx, rx));
    drop(echo);
    Comparison::times(
        "doorbell_vs_eventfd",
        "pools, 64 B round trip after 300 µs idle: both sides parked (Receiver::recv / recv_timeout on the channel doorbell, futex)",
        "two processes ping-ponging through two eventfds (blocking reads), same idle gap",
        r,
        1.2,
    )
}
