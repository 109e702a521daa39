//! Segment layout v4 (pools): real processes, a hostile writer on the
//! rendezvous, bogus returns, fan-out, a consumer killed holding messages.
#![allow(clippy::disallowed_types)] // the chaos thread models another process; its stop flag is a plain std atomic

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use numashm::pool::{ChannelError, Peer, PeerConfig};

const T: Duration = Duration::from_secs(30);

/// Child entry point; a no-op as a normal test.
#[test]
fn pool_child() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let peer = Peer::join(&path, PeerConfig::new("pool-child")).expect("join");
    match role.as_str() {
        // Receive on channel 0, check, send the same bytes back on channel 1.
        "echo" => {
            let rx = peer.receiver(0).unwrap();
            let tx = peer.sender(1).unwrap();
            let n: u64 = std::env::var("NUMASHM_N").unwrap().parse().unwrap();
            for i in 0..n {
                let msg = rx.recv_timeout(T).expect("recv");
                check(i, &msg);
                let mut reply = tx.alloc(msg.len()).unwrap();
                reply.copy_from_slice(&msg);
                drop(msg);
                tx.send_timeout(reply, T).map_err(|e| e.error).unwrap();
            }
            // Stay until the host has taken our last replies back.
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
        // Receive and hold everything until killed.
        "hoard" => {
            let rx = peer.receiver(0).unwrap();
            let mut held = Vec::new();
            // Bounded: a parent that failed before killing us must not leave us running.
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < until {
                if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
                    held.push(m);
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn ping_pong_across_processes_every_message_intact_and_every_slot_returned() {
    let path = path("pool-pingpong");
    let n = messages();
    let host = Peer::create(&path, 4, PeerConfig::new("pool-host")).unwrap();
    let tx = host.sender(0).unwrap();
    let rx = host.receiver(1).unwrap();
    let child = spawn("pool_child", "echo", &[("NUMASHM_PATH", path.clone()), ("NUMASHM_N", n.to_string())]);
    let committed_at_start = host.pool_region().len();
    for i in 0..n {
        let mut m = tx.alloc(len_of(i)).unwrap();
        fill(i, &mut m);
        tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
        let back = rx.recv_timeout(T).expect("echo");
        check(i, &back);
    }
    // The pool grew during the traffic (extents made on demand), and the
    // reader followed it (every message above was checked).
    assert!(host.pool_region().len() > committed_at_start, "the host's pool grew while the reader read it");
    // Wake the child's last wait with one more message, then let it go.
    let m = tx.alloc(16).unwrap();
    let _ = tx.send(m);
    wait_ok(child, Duration::from_secs(60));
    // Every slot the child read came back: only the rings' blocks stay owned.
    let _ = host.sender(0).unwrap().alloc(1 << 20); // a slow-path alloc drains the returns
    assert!(lent(&host) <= 1, "slots still lent after the reader returned them: {:?}", host.census());
    let (ok, bad) = host.returns();
    assert_eq!(bad, 0, "no bad returns from an honest reader");
    assert!(ok >= n - 1 - 256, "returns accepted: {ok} of {n}");
    drop((tx, rx));
    drop(host);
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg_attr(miri, ignore)]
fn fan_out_frees_the_slot_after_the_last_reader_returns_it() {
    let a = Peer::create_anonymous("fan", 8, PeerConfig::new("fan-a")).unwrap();
    let readers: Vec<Peer> = (0..4).map(|i| a.join_same(PeerConfig::new(&format!("fan-r{i}"))).unwrap()).collect();
    let txs: Vec<_> = (0..4).map(|c| a.sender(c).unwrap()).collect();
    let rxs: Vec<_> = readers.iter().enumerate().map(|(c, r)| r.receiver(c).unwrap()).collect();
    let mut m = txs[0].alloc(64).unwrap();
    m.copy_from_slice(&[9; 64]);
    let to: Vec<_> = txs.iter().collect();
    assert_eq!(a.send_to_all(m, &to).map_err(|e| e.error).unwrap(), 0b1111);
    let got: Vec<_> = rxs.iter().map(|rx| rx.recv_timeout(T).unwrap()).collect();
    assert!(got.iter().all(|g| g[..] == [9; 64]));
    let mut got = got;
    for k in 0..4 {
        got.remove(0);
        // Drain what was returned so far through the slow path.
        a.collect_returns();
        assert_eq!(lent(&a), if k < 3 { 1 } else { 0 }, "after {} returns", k + 1);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_hostile_writer_on_the_rendezvous_never_stalls_or_corrupts_the_channel() {
    let n = messages().min(200_000);
    let a = Peer::create_anonymous("chaos", 8, PeerConfig::new("chaos-a")).unwrap();
    let fd = a.rendezvous_fd().try_clone_to_owned().unwrap();
    let fd2 = a.rendezvous_fd().try_clone_to_owned().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chaos = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Another "process": its own writable mapping of the rendezvous.
            let r = numashm::Region::attach_fd(fd2).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut writes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Anywhere past the region header (its growth words are the region layer's).
                let off = numashm::Region::data_offset(&r) + (x as usize % (r.len() - 4096)) / 8 * 8;
                let _ = r.write_at(off, &x.rotate_left(17).to_le_bytes());
                writes += 1;
                if writes % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            writes
        })
    };
    let echo = std::thread::spawn(move || {
        let b = Peer::join_fd(fd, PeerConfig::new("chaos-b")).unwrap();
        let rx = b.receiver(0).unwrap();
        let tx = b.sender(1).unwrap();
        for i in 0..n {
            let msg = rx.recv_timeout(T).expect("recv under chaos");
            check(i, &msg);
            let mut reply = tx.alloc(msg.len()).unwrap();
            reply.copy_from_slice(&msg);
            drop(msg);
            tx.send_timeout(reply, T).map_err(|e| e.error).unwrap();
        }
    });
    let tx = a.sender(0).unwrap();
    let rx = a.receiver(1).unwrap();
    for i in 0..n {
        let mut m = tx.alloc(len_of(i)).unwrap();
        fill(i, &mut m);
        tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
        check(i, &rx.recv_timeout(T).expect("echo under chaos"));
    }
    echo.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = chaos.join().unwrap();
    assert!(writes > 1000, "the chaos writer ran ({writes} writes)");
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_consumer_killed_holding_messages_gives_every_slot_back_to_the_owner() {
    let path = path("pool-hoard");
    let host = Peer::create(&path, 4, PeerConfig::new("hoard-host").ring_capacity(64)).unwrap();
    let tx = host.sender(0).unwrap();
    let mut child = spawn("pool_child", "hoard", &[("NUMASHM_PATH", path.clone())]);
    // Fill the child's hands: 64 in the ring + what it holds.
    let mut sent = 0;
    let deadline = std::time::Instant::now() + T;
    while sent < 200 && std::time::Instant::now() < deadline {
        let m = tx.alloc(100).unwrap();
        match tx.send(m) {
            Ok(()) => sent += 1,
            Err(e) if matches!(e.error, ChannelError::Full) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sent, 200, "the hoarder consumed");
    assert!(lent(&host) >= 200 - 64);
    child.kill().unwrap();
    child.wait().unwrap();
    // The next full ring / empty free list finds the consumer dead and reclaims.
    host.collect_returns();
    assert_eq!(lent(&host), 0, "every slot lent to the dead consumer is back");
    assert!(host.lost_to_dead_consumers() >= 1);
    // Published in the pool header, for inspectors (`numashm inspect`, `numashm top`).
    let r = numashm::pool::inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
    let mine = r.entries.iter().find(|e| e.index == host.entry()).unwrap();
    assert_eq!(mine.pool.as_ref().unwrap().as_ref().unwrap().lost_to_dead_consumers, host.lost_to_dead_consumers());
    drop(host);
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_fresh_pool_commits_little_and_a_large_message_gets_its_own_extent() {
    let p = Peer::create_anonymous("ondemand", 2, PeerConfig::new("ondemand").reserve(64 << 20)).unwrap();
    let before = p.pool_region().len();
    assert!(before <= (1 << 20) + 16384, "fresh pool committed {before} bytes");
    let tx = p.sender(0).unwrap();
    let big = tx.alloc(3 << 20).unwrap();
    assert!(big.capacity() >= 3 << 20);
    assert!(p.pool_region().len() >= 3 << 20);
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_received_message_is_backed_by_pages_we_cannot_write() {
    let a = Peer::create_anonymous("ro", 4, PeerConfig::new("ro-a")).unwrap();
    let b = a.join_same(PeerConfig::new("ro-b")).unwrap();
    let (tx, rx) = (a.sender(0).unwrap(), b.receiver(0).unwrap());
    tx.send(tx.alloc(8).unwrap()).map_err(|e| e.error).unwrap();
    let m = rx.recv_timeout(T).unwrap();
    // Ask the kernel: the page holding the payload is mapped without write permission.
    let addr = m.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            let (range, _) = l.split_once(' ').unwrap();
            let (s, e) = range.split_once('-').unwrap();
            (usize::from_str_radix(s, 16).unwrap()..usize::from_str_radix(e, 16).unwrap()).contains(&addr)
        })
        .expect("payload mapped");
    let perms = line.split_whitespace().nth(1).unwrap();
    assert!(perms.starts_with("r-"), "payload mapping {line}");
    let _ = a.pool_region().as_fd();
}

/// Back-pressure: a producer on a 4-cell ring waits for room again and again
/// (its consumer tells it every capacity/4 pops) and every message arrives in order.
#[test]
#[cfg_attr(miri, ignore)]
fn a_producer_on_a_full_ring_waits_for_room_and_loses_nothing() {
    let n = 20_000u64;
    let a = Peer::create_anonymous("backpressure", 4, PeerConfig::new("bp-a").ring_capacity(4)).unwrap();
    let fd = a.rendezvous_fd().try_clone_to_owned().unwrap();
    let reader = std::thread::spawn(move || {
        let b = Peer::join_fd(fd, PeerConfig::new("bp-b")).unwrap();
        let rx = b.receiver(0).unwrap();
        for i in 0..n {
            let m = rx.recv_timeout(T).expect("recv");
            assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), i, "in order");
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(1)); // let the ring fill
            }
        }
    });
    let tx = a.sender(0).unwrap();
    for i in 0..n {
        let mut m = tx.alloc(8).unwrap();
        m.copy_from_slice(&i.to_le_bytes());
        tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
    }
    reader.join().unwrap();
}

/// A channel word rewritten to name a live peer that does not consume the
/// channel (here: its producer) must not block the channel: the consumer takes
/// its word back, the producer binds it, the message arrives. (Found by the
/// hostile-writer test, which hit it about once in seven runs.)
#[test]
#[cfg_attr(miri, ignore)]
fn a_channel_word_naming_a_live_non_consumer_is_taken_back() {
    let a = Peer::create_anonymous("lie", 4, PeerConfig::new("lie-a")).unwrap();
    let fd = a.rendezvous_fd().try_clone_to_owned().unwrap();
    let lie_fd = a.rendezvous_fd().try_clone_to_owned().unwrap();
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let b = std::thread::spawn(move || {
        let b = Peer::join_fd(fd, PeerConfig::new("lie-b")).unwrap();
        let rx = b.receiver(0).unwrap();
        let tx = b.sender(1).unwrap();
        claimed_tx.send(()).unwrap();
        let m = rx.recv_timeout(T).expect("the message through a lied-about channel");
        assert_eq!(&m[..], b"hello");
        tx.send_timeout(tx.alloc(2).unwrap(), T).map_err(|e| e.error).unwrap();
    });
    let rx = a.receiver(1).unwrap();
    claimed_rx.recv().unwrap();
    // Another process rewrites channel 0's consumer word to name `a` (alive,
    // attached, not a consumer of channel 0). Channel words start at 4096 + 512.
    let rv = numashm::Region::attach_fd(lie_fd).unwrap();
    rv.write_at(4096 + 512, &(u64::from(a.entry()) + 1).to_le_bytes()).unwrap();
    let tx = a.sender(0).unwrap();
    let mut m = tx.alloc(5).unwrap();
    m.copy_from_slice(b"hello");
    tx.send(m).map_err(|e| e.error).unwrap();
    assert_eq!(rx.recv_timeout(T).expect("the reply").len(), 2);
    b.join().unwrap();
}

/// Returns that found the receiver's return ring full wait on the receiver's
/// side; they go in as soon as there is room, on the receiver's next receive
/// (here an empty one), not only when it drops another message: after the
/// traffic stops, the owner gets every slot back.
#[test]
#[cfg_attr(miri, ignore)]
fn returns_held_back_by_a_full_return_ring_reach_the_owner_without_more_traffic() {
    let a = Peer::create_anonymous("overflow", 4, PeerConfig::new("ov-a").ring_capacity(4)).unwrap();
    let b = a.join_same(PeerConfig::new("ov-b")).unwrap();
    let (tx, rx) = (a.sender(0).unwrap(), b.receiver(0).unwrap());
    // 40 messages allocated first (no allocation, so no draining, while they
    // travel), sent four at a time and all held by the receiver, then dropped
    // at once: 8 fit the return ring, 32 wait on the receiver's side.
    let mut out: Vec<_> = (0..40u64)
        .map(|i| {
            let mut m = tx.alloc(8).unwrap();
            m.copy_from_slice(&i.to_le_bytes());
            m
        })
        .collect();
    let mut held = Vec::new();
    while !out.is_empty() {
        for m in out.drain(..4) {
            tx.send(m).map_err(|e| e.error).unwrap();
        }
        held.extend((0..4).map(|_| rx.recv_timeout(T).unwrap()));
    }
    drop(held);
    assert_eq!(lent(&a), 40);
    for round in 0..10 {
        a.collect_returns();
        if lent(&a) == 0 {
            return;
        }
        assert!(matches!(rx.try_recv(), Err(ChannelError::Empty)), "round {round}");
    }
    panic!("{} slots still lent after the receiver went idle", lent(&a));
}

/// A steady stream to a prompt reader: the owner takes returns back once a
/// reader's return ring may be half full, before popping its free list, so
/// what stays lent is bounded by the rings, not by the free slots the owner
/// happens to have (which let return rings fill up and readers hold returns
/// back before).
#[test]
#[cfg_attr(miri, ignore)]
fn a_steady_stream_keeps_lent_slots_bounded_by_the_rings() {
    let a = Peer::create_anonymous("stream", 4, PeerConfig::new("st-a").ring_capacity(8)).unwrap();
    let b = a.join_same(PeerConfig::new("st-b")).unwrap();
    let (tx, rx) = (a.sender(0).unwrap(), b.receiver(0).unwrap());
    let mut most = 0;
    for i in 0..5000u64 {
        let mut m = tx.alloc(8).unwrap();
        m.copy_from_slice(&i.to_le_bytes());
        tx.send(m).map_err(|e| e.error).unwrap();
        let got = rx.recv_timeout(T).unwrap();
        assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), i);
        drop(got);
        most = most.max(lent(&a));
    }
    // The return ring holds 16 cells; it is drained once 8 may be waiting.
    assert!(most <= 16, "up to {most} slots lent at once");
    a.collect_returns();
    assert_eq!(lent(&a), 0);
}

/// Oversize messages sent one after another rotate over a few dedicated
/// extents (the next need not wait for the return of the one just sent), and
/// no more are made than that: the pool does not grow with the traffic.
#[test]
#[cfg_attr(miri, ignore)]
fn oversize_messages_rotate_over_a_few_dedicated_extents() {
    let a = Peer::create_anonymous("oversize", 4, PeerConfig::new("os-a").reserve(256 << 20)).unwrap();
    let b = a.join_same(PeerConfig::new("os-b")).unwrap();
    let (tx, rx) = (a.sender(0).unwrap(), b.receiver(0).unwrap());
    for i in 0..50u64 {
        let mut m = tx.alloc(8 << 20).unwrap();
        m[..8].copy_from_slice(&i.to_le_bytes());
        tx.send(m).map_err(|e| e.error).unwrap();
        let got = rx.recv_timeout(T).unwrap();
        assert_eq!((got.len(), u64::from_le_bytes(got[..8].try_into().unwrap())), (8 << 20, i));
    }
    let d = a.census().dedicated;
    assert!((2..=4).contains(&d.extents), "{} dedicated extents for 50 messages", d.extents);
    a.collect_returns();
    assert_eq!(lent(&a), 0);
}

/// The bind handshake's deadlock, found by the 4 MiB round-trip bench (about
/// one run in three): a producer sends its first message before its consumer
/// has linked the ring, so the send cannot bind it, and then only polls for a
/// reply. The consumer reads a ring only once bound; the producer's empty
/// receives now bind it, so the message arrives without another send.
#[test]
#[cfg_attr(miri, ignore)]
fn a_producer_that_only_polls_after_sending_still_binds_its_late_consumer() {
    let a = Peer::create_anonymous("late-link", 4, PeerConfig::new("ll-a")).unwrap();
    let b = a.join_same(PeerConfig::new("ll-b")).unwrap();
    let rx = b.receiver(0).unwrap(); // b claims channel 0 before a produces it: no link yet
    let tx = a.sender(0).unwrap(); // a's bind finds b named but not linked
    let mut m = tx.alloc(8).unwrap();
    m.copy_from_slice(&7u64.to_le_bytes());
    tx.send(m).map_err(|e| e.error).unwrap();
    let replies = a.receiver(1).unwrap();
    assert!(matches!(rx.try_recv(), Err(ChannelError::Empty)), "b links, but a has not bound it yet");
    // a only polls (as a sender waiting for its reply does); b only polls.
    let mut got = None;
    for _ in 0..100_000 {
        assert!(matches!(replies.try_recv(), Err(ChannelError::Empty)));
        if let Ok(msg) = rx.try_recv() {
            got = Some(u64::from_le_bytes(msg[..8].try_into().unwrap()));
            break;
        }
    }
    assert_eq!(got, Some(7), "the consumer never got the message");
}
