//! The layout-v4 path (`numashm::pool`), through the facade users call:
//! `pool_rtt_vs_floor`, `pool_alloc_vs_malloc`, `pool_alloc_vs_pool`,
//! `pool_alloc_2t_scaling`, `fanout4_vs_unicast`, `pool_spsc_vs_rtrb`.
//!
//! Round trip: the parent joins a fresh rendezvous with its own sealed pool,
//! sends on channel 0 and receives on channel 1; the `pool-echo` child (this
//! executable, see [`crate::child`]) joins by the inherited rendezvous fd with a
//! pool of its own, receives on 0 and replies on 1. Each side allocates in its
//! own pool, writes in place and sends; the other reads through its read-only
//! mapping and returns the slot by dropping the message.

use std::cell::RefCell;
use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Message, Peer, PeerConfig, Receiver, Sender};
use numashm_ring::{SplitConsumer, SplitProducer, SplitRing};

use crate::child::{inheritable, other_cpu, pin_current_thread, Child, Floor, Pinned, Watchdog, PAYLOAD};
use crate::{interleave, per_op, per_op_for, Budget, Comparison};

fn iters(budget: Budget, quick: u64, full: u64) -> u64 {
    if budget.rounds <= Budget::QUICK.rounds {
        quick
    } else {
        full
    }
}

fn spin_recv<'p>(rx: &Receiver<'p>) -> Message<'p> {
    let mut dog = crate::child::Watchdog::new("pool echo reply");
    loop {
        match rx.try_recv() {
            Ok(m) => return m,
            Err(ChannelError::Empty) => dog.tick(),
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// A rendezvous shared with a `pool-echo` child that echoes every message
/// (channel 0 out, channel 1 back), each side sending from its own pool.
pub struct PoolEcho {
    host: Peer,
    child: Option<Child>,
}

impl PoolEcho {
    /// Creates the rendezvous and starts the child.
    pub fn start() -> PoolEcho {
        let host = Peer::create_anonymous("numashm-bench-pool", 4, PeerConfig::new("numashm-bench-pool-host")).expect("create");
        let fd = inheritable(host.rendezvous_fd());
        let child = Child::spawn(&format!("pool-echo:{}", fd.as_raw_fd()));
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
        drop(self.child.take());
    }
}

/// One 64 B round trip through the pools (the public path), returning a byte
/// of the reply so that nothing is optimised away.
pub fn round_trip(tx: &Sender<'_>, rx: &Receiver<'_>) -> u8 {
    let mut m = tx.alloc(PAYLOAD).expect("alloc");
    m.fill(7);
    tx.send(m).map_err(|e| e.error).expect("send");
    let r = spin_recv(rx);
    let b = r[PAYLOAD - 1];
    drop(r);
    b
}

/// The `pool-echo` child: receive on channel 0, reply the same bytes on 1.
pub(crate) fn echo_child(fd: OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
    let peer = Peer::join_fd(fd, PeerConfig::new("numashm-bench-pool-echo"))?;
    let rx = peer.receiver(0)?;
    let tx = peer.sender(1)?;
    crate::child::signal_ready()?;
    loop {
        let mut got = None;
        for _ in 0..(1 << 12) {
            match rx.try_recv() {
                Ok(m) => {
                    got = Some(m);
                    break;
                }
                Err(ChannelError::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        let m = match got {
            Some(m) => m,
            None => rx.recv()?,
        };
        let mut r = tx.alloc(m.len())?;
        r.copy_from_slice(&m);
        drop(m);
        tx.send_timeout(r, Duration::from_secs(10)).map_err(|e| e.error)?;
    }
}

/// `pool_rtt_vs_floor`: the v4 64 B round trip vs 64 B + a flag flip on a shared page.
pub fn compare_pool_rtt_vs_floor(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let echo = PoolEcho::start();
    let (tx, rx) = echo.ends();
    let mut floor = Floor::start();
    let (n, max) = (iters(budget, 50_000, 200_000), Duration::from_millis(iters(budget, 80, 150)));
    let payload = [7u8; PAYLOAD];
    let r = interleave(
        budget.rounds,
        || {
            per_op_for(100, max, || {
                black_box(round_trip(&tx, &rx));
            });
            per_op_for(n, max, || {
                black_box(round_trip(&tx, &rx));
            })
        },
        || {
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
        "pool_rtt_vs_floor",
        "v4 pools, 64 B round trip between two processes: alloc, write, send / try_recv, read, return, reply",
        "two processes, shared page: write 64 B + flip a flag, the other reads, writes 64 B, flips back",
        r,
        1.2,
    )
}

/// A fresh rendezvous with one peer (its own pool).
fn lone_peer(name: &str) -> Peer {
    Peer::create_anonymous(name, 2, PeerConfig::new(name)).expect("create")
}

/// `n` × `Sender::alloc(1024)` + drop: ns per pair.
pub fn alloc_drop(tx: &Sender<'_>, n: u64) -> f64 {
    per_op(n, || {
        let mut m = tx.alloc(black_box(1024)).expect("alloc");
        // As the baseline's `black_box(p)`: the slot's address escapes (not the
        // whole guard, whose copy through memory would time the harness).
        black_box(m.as_mut_ptr());
        drop(m);
    })
}

/// One thread, for instruction counts: `n` × alloc(1024) + drop.
pub fn hot_alloc(n: u64) -> f64 {
    let peer = lone_peer("numashm-hot-pool-alloc");
    let tx = peer.sender(0).expect("sender");
    alloc_drop(&tx, n)
}

fn try_recv_now<'p>(rx: &Receiver<'p>) -> Message<'p> {
    let mut dog = Watchdog::new("pool receive in one thread");
    loop {
        match rx.try_recv() {
            Ok(m) => return m,
            Err(ChannelError::Empty) => dog.tick(),
            Err(e) => panic!("receive: {e}"),
        }
    }
}

/// Touch a received payload: its first word and last byte (the 64 B payload's
/// one line), as a reader that looks at a header would.
fn read_sum(m: &[u8]) -> u64 {
    let head = m.first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w));
    head.wrapping_add(m.last().map_or(0, |&b| u64::from(b)))
}

/// One thread, two peers, for instruction counts: `n` × (alloc 64 B, fill,
/// send, try_recv, read, drop).
pub fn hot_loopback(n: u64) -> f64 {
    let a = lone_peer("numashm-hot-pool-loop");
    let b = a.join_same(PeerConfig::new("numashm-hot-pool-loop-b")).expect("join");
    let (tx, rx) = (a.sender(0).expect("sender"), b.receiver(0).expect("receiver"));
    look_once(&rx);
    per_op(n, || {
        let mut m = tx.alloc(PAYLOAD).expect("alloc");
        m.fill(7);
        tx.send(m).map_err(|e| e.error).expect("send");
        black_box(read_sum(&try_recv_now(&rx)));
    })
}

/// A receiver in the same thread as its producer looks once before the first
/// send (docs/pools.md, the bind handshake: it reads a ring only after the
/// producer's next call names it).
fn look_once(rx: &Receiver<'_>) {
    assert!(matches!(rx.try_recv(), Err(ChannelError::Empty)), "nothing was sent yet");
}

/// Five peers in one thread: a writer producing channels 1..=4 and a reader on each.
struct FanOut {
    readers: Vec<Peer>,
    writer: Peer,
}

/// The ends of a [`FanOut`], made once.
struct FanEnds<'p> {
    txs: Vec<Sender<'p>>,
    rxs: Vec<Receiver<'p>>,
}

impl FanOut {
    fn new(name: &str) -> Self {
        let writer = Peer::create_anonymous(name, 8, PeerConfig::new(name)).expect("create");
        let readers = (1..=4).map(|i| writer.join_same(PeerConfig::new(&format!("{name}-{i}"))).expect("join")).collect();
        FanOut { readers, writer }
    }

    fn ends(&self) -> FanEnds<'_> {
        let txs = (1..=4).map(|c| self.writer.sender(c).expect("sender")).collect();
        let rxs: Vec<Receiver<'_>> = self.readers.iter().zip(1..=4).map(|(p, c)| p.receiver(c).expect("receiver")).collect();
        rxs.iter().for_each(look_once);
        FanEnds { txs, rxs }
    }

    /// `n` messages: with `fan`, each is one 64 B slot sent to all four
    /// channels; without, four slots, one per channel. Every reader receives,
    /// touches and returns each. ns per message (per 64 B payload given to four).
    fn run(&self, e: &FanEnds<'_>, n: u64, fan: bool) -> f64 {
        let to: Vec<&Sender<'_>> = e.txs.iter().collect();
        per_op(n, || {
            if fan {
                let mut m = e.txs[0].alloc(PAYLOAD).expect("alloc");
                m.fill(7);
                self.writer.send_to_all(m, &to).map_err(|e| e.error).expect("send to all");
            } else {
                for tx in &e.txs {
                    let mut m = tx.alloc(PAYLOAD).expect("alloc");
                    m.fill(7);
                    tx.send(m).map_err(|e| e.error).expect("send");
                }
            }
            for rx in &e.rxs {
                black_box(read_sum(&try_recv_now(rx)));
            }
        })
    }
}

/// One thread, five peers, for instruction counts: `fanout4` or `unicast4`.
pub fn hot_fanout(n: u64, fan: bool) -> f64 {
    let f = FanOut::new("numashm-hot-pool-fan");
    let e = f.ends();
    f.run(&e, n, fan)
}

/// `pool_alloc_vs_malloc`: `Sender::alloc(1024)` + drop (the owner's pool, one thread) vs glibc.
pub fn compare_pool_alloc_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let peer = lone_peer("numashm-bench-pool-alloc");
    let tx = peer.sender(0).expect("sender");
    let n = iters(budget, 100_000, 400_000);
    let r = interleave(budget.rounds, || alloc_drop(&tx, n), || crate::alloc::malloc_free(n));
    Comparison::times(
        "pool_alloc_vs_malloc",
        "v4 pools: Sender::alloc (1 KiB class) + drop, the pool's owner thread",
        "glibc malloc(1024) + free",
        r,
        0.9,
    )
}

/// `pool_alloc_vs_pool`: `Sender::alloc(1024)` + drop vs a slot pool's pop + push.
pub fn compare_pool_alloc_vs_pool(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let peer = lone_peer("numashm-bench-pool-vs-pool");
    let tx = peer.sender(0).expect("sender");
    let q = crate::alloc::pool();
    let n = iters(budget, 100_000, 400_000);
    let r = interleave(budget.rounds, || alloc_drop(&tx, n), || crate::alloc::pool_pop_push(&q, n));
    Comparison::times(
        "pool_alloc_vs_pool",
        "v4 pools: Sender::alloc (1 KiB class) + drop, the pool's owner thread",
        "crossbeam ArrayQueue<u32> pop + push (a slot pool)",
        r,
        0.6,
    )
}

/// Round control shared by the two threads of [`compare_pool_alloc_2t_scaling`].
struct Rounds {
    start: Barrier,
    iters: AtomicU64,
    running: AtomicU32,
    done: AtomicU32,
}

impl Rounds {
    /// Both threads have arrived: the clock may start.
    fn both_running(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
        while self.running.load(Ordering::Acquire) < 2 {
            std::hint::spin_loop();
        }
    }
}

/// `pool_alloc_2t_scaling` (higher is better): two threads, each with its own
/// peer and pool, alloc+drop at once, vs one thread alone.
pub fn compare_pool_alloc_2t_scaling(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let n = iters(budget, 100_000, 400_000);
    let rounds = Rounds { start: Barrier::new(2), iters: AtomicU64::new(0), running: AtomicU32::new(0), done: AtomicU32::new(0) };
    let medians = std::thread::scope(|s| {
        let r = &rounds;
        let helper = s.spawn(move || {
            pin_current_thread(other_cpu());
            let peer = lone_peer("numashm-bench-pool-2t-b");
            let tx = peer.sender(0).expect("sender");
            loop {
                r.start.wait();
                // Relaxed: the Barrier orders this after the parent's store of the round.
                let n = r.iters.load(Ordering::Relaxed);
                if n == 0 {
                    return;
                }
                r.both_running();
                alloc_drop(&tx, n);
                r.done.store(1, Ordering::Release);
            }
        });
        let peer = lone_peer("numashm-bench-pool-2t-a");
        let tx = peer.sender(0).expect("sender");
        let pair = |n: u64| {
            // Relaxed: published to the helper by the Barrier.
            r.iters.store(n, Ordering::Relaxed);
            r.running.store(0, Ordering::Relaxed);
            r.done.store(0, Ordering::Relaxed);
            r.start.wait();
            r.both_running();
            let t0 = Instant::now();
            alloc_drop(&tx, n);
            while r.done.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            crate::ns(t0.elapsed()) / (2 * n) as f64
        };
        let m = interleave(budget.rounds, || pair(n), || alloc_drop(&tx, n));
        r.iters.store(0, Ordering::Relaxed);
        r.start.wait();
        helper.join().expect("helper thread");
        m
    });
    Comparison::rates(
        "pool_alloc_2t_scaling",
        "two threads (CPU 0, 1), each its own peer and pool, Sender::alloc(1024) + drop, wall time per pair",
        "one thread, same",
        medians,
        1.8,
    )
}

/// `fanout4_vs_unicast`: one 64 B message to four readers vs four unicast
/// messages; one thread plays all five peers, so this measures work.
pub fn compare_fanout4_vs_unicast(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let f = FanOut::new("numashm-bench-pool-fan");
    let e = f.ends();
    let n = iters(budget, 20_000, 80_000);
    let r = interleave(budget.rounds, || f.run(&e, n, true), || f.run(&e, n, false));
    Comparison::times(
        "fanout4_vs_unicast",
        "v4 pools: one 64 B slot sent to 4 channels (Peer::send_to_all), 4 readers receive, read, return; one thread",
        "4 slots of 64 B, one sent on each channel, same readers; one thread",
        r,
        0.6,
    )
}

/// The split ring (heap memory, capacity 1024) between two threads, kept across rounds.
struct SplitPair {
    tx: Option<SplitProducer>,
    rx: SplitConsumer,
}

impl SplitPair {
    fn new() -> Self {
        let (tx, rx) = SplitRing::new(crate::ring::CAPACITY).expect("split ring");
        SplitPair { tx: Some(tx), rx }
    }

    /// Cells `[i, 0, 0]` one at a time from the other CPU; this thread pops and
    /// times up to `n` of them (or `max`): (popped, elapsed).
    fn transfer(&mut self, n: u64, max: Duration) -> (u64, Duration) {
        let mut tx = self.tx.take().expect("producer");
        let rx = &mut self.rx;
        let stop = AtomicBool::new(false);
        let stop = &stop;
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
                                // Relaxed: a stop flag; the join orders the rest.
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
            // Relaxed: as above.
            stop.store(true, Ordering::Relaxed);
            ((got, elapsed), producer.join().expect("split producer"))
        });
        self.tx = Some(tx);
        while let Ok(Some(_)) = self.rx.pop() {}
        out
    }
}

/// `pool_spsc_vs_rtrb` (higher is better): the pools' split ring (heap memory)
/// vs rtrb, one cell at a time between two threads.
pub fn compare_pool_spsc_vs_rtrb(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let quick = budget.rounds <= Budget::QUICK.rounds;
    let n: u64 = if quick { 1 << 20 } else { 1 << 22 };
    let max = Duration::from_millis(if quick { 100 } else { 200 });
    let per = |(got, d): (u64, Duration)| crate::ns(d) / got.max(1) as f64;
    let split = RefCell::new(SplitPair::new());
    let rtrb = RefCell::new(crate::ring::RtrbRing::default());
    let medians = interleave(budget.rounds, || per(split.borrow_mut().transfer(n, max)), || per(rtrb.borrow_mut().transfer(n, max)));
    Comparison::rates(
        "pool_spsc_vs_rtrb",
        "split ring (the pools' ring, heap memory, cap 1024): 3-word cells one at a time, two threads",
        "rtrb 0.3, u64, same capacity, one at a time, two threads",
        medians,
        1.0,
    )
}
