//! Pools (`numashm::pool`, the facade users call) in one process:
//! `alloc_vs_pool`, `alloc_vs_malloc`, `alloc_2t_scaling`, `fanout4_vs_unicast`,
//! and the one-thread hot paths of `examples/hot_pool.rs`.
//!
//! Every allocation is `Sender::alloc` in the calling peer's own pool (its
//! owner thread, the only writer), dropped unsent (the pool's front cache) or
//! sent and returned by the readers. The cross-process round trips are in
//! [`crate::rtt`], the split ring's row in [`crate::ring`].

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Message, Peer, PeerConfig, Receiver, Sender};

use crate::child::{other_cpu, pin_current_thread, Pinned, Watchdog, PAYLOAD};
use crate::{interleave, per_op, Budget, Comparison};

fn iters(budget: Budget, quick: u64, full: u64) -> u64 {
    if budget.rounds <= Budget::QUICK.rounds {
        quick
    } else {
        full
    }
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

/// `alloc_vs_malloc`: `Sender::alloc(1024)` + drop (the owner's pool, one thread) vs glibc.
pub fn compare_alloc_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let peer = lone_peer("numashm-bench-alloc-malloc");
    let tx = peer.sender(0).expect("sender");
    let n = iters(budget, 100_000, 400_000);
    let r = interleave(budget.rounds, || alloc_drop(&tx, n), || crate::baselines::malloc_free(n));
    Comparison::times(
        "alloc_vs_malloc",
        "pools: Sender::alloc (1 KiB class) + drop, the pool's owner thread",
        "glibc malloc(1024) + free",
        r,
        0.9,
    )
}

/// `alloc_vs_pool`: `Sender::alloc(1024)` + drop vs a slot pool's pop + push.
pub fn compare_alloc_vs_pool(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let peer = lone_peer("numashm-bench-alloc-pool");
    let tx = peer.sender(0).expect("sender");
    let q = crate::baselines::slot_pool();
    let n = iters(budget, 100_000, 400_000);
    let r = interleave(budget.rounds, || alloc_drop(&tx, n), || crate::baselines::pool_pop_push(&q, n));
    Comparison::times(
        "alloc_vs_pool",
        "pools: Sender::alloc (1 KiB class) + drop, the pool's owner thread",
        "crossbeam ArrayQueue<u32> pop + push (a slot pool)",
        r,
        0.6,
    )
}

/// Round control shared by the two threads of [`with_two_threads`].
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

/// Runs `f` with a helper thread pinned to the other CPU (the caller should be
/// pinned to CPU 0), each thread with its own peer and pool. `f` gets
/// `pair(n)`: both threads do `n` × ([`alloc_drop`]), started together; it
/// returns the wall time from the common start until both are done (2n pairs
/// in all); and the caller's own sender, for one-thread rounds in between.
pub fn with_two_threads<R>(f: impl FnOnce(&mut dyn FnMut(u64) -> Duration, &Sender<'_>) -> R) -> R {
    let rounds = Rounds { start: Barrier::new(2), iters: AtomicU64::new(0), running: AtomicU32::new(0), done: AtomicU32::new(0) };
    std::thread::scope(|s| {
        let r = &rounds;
        let helper = s.spawn(move || {
            pin_current_thread(other_cpu());
            let peer = lone_peer("numashm-bench-2t-b");
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
        let peer = lone_peer("numashm-bench-2t-a");
        let tx = peer.sender(0).expect("sender");
        let mut pair = |n: u64| {
            let n = n.max(1);
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
            t0.elapsed()
        };
        let out = f(&mut pair, &tx);
        // Relaxed: as above; 0 tells the helper to end.
        r.iters.store(0, Ordering::Relaxed);
        r.start.wait();
        helper.join().expect("helper thread");
        out
    })
}

/// `alloc_2t_scaling` (higher is better): two threads, each with its own
/// peer and pool, alloc+drop at once, vs one thread alone. Reported as ns per
/// pair: ours is the two-thread wall time ÷ 2n, the baseline one thread's ÷ n.
pub fn compare_alloc_2t_scaling(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let n = iters(budget, 100_000, 400_000);
    let medians = with_two_threads(|pair, tx| interleave(budget.rounds, || crate::ns(pair(n)) / (2 * n) as f64, || alloc_drop(tx, n)));
    Comparison::rates(
        "alloc_2t_scaling",
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
        "pools: one 64 B slot sent to 4 channels (Peer::send_to_all), 4 readers receive, read, return; one thread",
        "4 slots of 64 B, one sent on each channel, same readers; one thread",
        r,
        0.6,
    )
}
