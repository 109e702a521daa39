//! The layout-v4 path (`numashm::pool`): `pool_rtt_vs_floor` and
//! `pool_alloc_vs_malloc`, through the facade users call.
//!
//! Round trip: the parent joins a fresh rendezvous with its own sealed pool,
//! sends on channel 0 and receives on channel 1; the `pool-echo` child (this
//! executable, see [`crate::child`]) joins by the inherited rendezvous fd with a
//! pool of its own, receives on 0 and replies on 1. Each side allocates in its
//! own pool, writes in place and sends; the other reads through its read-only
//! mapping and returns the slot by dropping the message.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use numashm::pool::{ChannelError, Message, Peer, PeerConfig, Receiver, Sender};

use crate::child::{inheritable, Child, Floor, Pinned, PAYLOAD};
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

fn round_trip(tx: &Sender<'_>, rx: &Receiver<'_>) -> u8 {
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
    let host = Peer::create_anonymous("numashm-bench-pool", 4, PeerConfig::new("numashm-bench-pool-host")).expect("create");
    let fd = inheritable(host.rendezvous_fd());
    let child = Child::spawn(&format!("pool-echo:{}", fd.as_raw_fd()));
    drop(fd);
    let tx = host.sender(0).expect("sender 0");
    let rx = host.receiver(1).expect("receiver 1");
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
    drop(child);
    Comparison::times(
        "pool_rtt_vs_floor",
        "v4 pools, 64 B round trip between two processes: alloc, write, send / try_recv, read, return, reply",
        "two processes, shared page: write 64 B + flip a flag, the other reads, writes 64 B, flips back",
        r,
        1.2,
    )
}

/// `pool_alloc_vs_malloc`: `Sender::alloc(1024)` + drop (the owner's pool, one thread) vs glibc.
pub fn compare_pool_alloc_vs_malloc(budget: Budget) -> Comparison {
    let _pin = Pinned::to(0);
    let peer = Peer::create_anonymous("numashm-bench-pool-alloc", 2, PeerConfig::new("numashm-bench-pool-alloc")).expect("create");
    let tx = peer.sender(0).expect("sender");
    let n = iters(budget, 100_000, 400_000);
    let r = interleave(
        budget.rounds,
        || {
            per_op(n, || {
                let m = tx.alloc(black_box(1024)).expect("alloc");
                drop(black_box(m));
            })
        },
        || crate::alloc::malloc_free(n),
    );
    Comparison::times(
        "pool_alloc_vs_malloc",
        "v4 pools: Sender::alloc (1 KiB class) + drop, the pool's owner thread",
        "glibc malloc(1024) + free",
        r,
        0.9,
    )
}
