//! A sender hands its live pool to a successor process (`Peer::hand_over`) and
//! exits; the reader, in another process, keeps its link and reads on: every
//! message in flight at the hand-over and every message the successor sends
//! afterwards from the same pool arrives once, in order, intact, and every
//! slot comes back to the successor.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{check, fill, len_of, role, spawn, wait_ok};
use numashm::pool::{ChannelError, Handover, Peer, PeerConfig, Sender};

/// Watchdog of every wait below.
const T: Duration = Duration::from_secs(60);
/// Sent by the first owner and still unread by anybody when it hands over.
const IN_FLIGHT: u64 = 200;
/// Sent by the successor.
const AFTER: u64 = 20_000;
/// Replies the other way (channel 1, reader to sender): sent before the
/// hand-over and unread then, and sent after it.
const REPLIES: u64 = 50;

fn send(tx: &Sender<'_>, i: u64, deadline: Instant) {
    loop {
        let mut m = tx.alloc(len_of(i)).unwrap();
        fill(i, &mut m);
        match tx.send(m) {
            Ok(()) => return,
            Err(e) if matches!(e.error, ChannelError::Full) => {
                assert!(Instant::now() < deadline, "message {i}: the ring stayed full");
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("send {i}: {}", e.error),
        }
    }
}

fn lent(p: &Peer) -> u64 {
    common::lent(p)
}

/// The sender: the first owner sends `IN_FLIGHT` messages, hands over and
/// exits; the successor (its child) sends `AFTER` more from the same pool,
/// waits until every slot is back, and reports. It also consumes channel 1
/// (linked before the hand-over, read only after it: the successor inherits a
/// consumer's side too).
fn sender_role() {
    let path = std::env::var("NUMASHM_PATH").unwrap();
    let peer = Peer::join(&path, PeerConfig::new("handover-sender").ring_capacity(256)).unwrap();
    let deadline = Instant::now() + T;
    // Claims channel 1 and links the reader's ring, and keeps both across the
    // hand-over (a dropped Receiver would leave the channel).
    peer.receiver(1).unwrap().detach();
    {
        let tx = peer.sender(0).unwrap();
        for i in 0..IN_FLIGHT {
            send(&tx, i, deadline);
        }
    }
    assert_eq!(lent(&peer), IN_FLIGHT, "nothing was read yet: all {IN_FLIGHT} are in flight");
    let first = std::process::id();
    // SAFETY: this role's thread is the only one that touches anything the
    // successor uses (the harness's main thread only waits for the result).
    match unsafe { peer.hand_over(Duration::from_secs(20)) }.map_err(|e| e.error).unwrap() {
        Handover::Predecessor { successor } => {
            println!("handed {first} {successor}");
            std::process::exit(0);
        }
        Handover::Successor(peer) => {
            let me = std::process::id();
            assert_ne!(me, first);
            let d = peer.descriptor().unwrap();
            let owner = d.owner().unwrap();
            assert_eq!(owner.pid, me, "the descriptor names the successor");
            assert!(d.get_mapping(me).unwrap().is_some(), "the successor's mapping is recorded");
            assert_eq!(lent(&peer), IN_FLIGHT, "the successor holds what was in flight");
            {
                let tx = peer.sender(0).unwrap();
                for i in IN_FLIGHT..IN_FLIGHT + AFTER {
                    send(&tx, i, deadline);
                }
            }
            // Channel 1: the replies queued before the hand-over, then those sent after.
            let rx = peer.receiver(1).unwrap();
            for i in 0..2 * REPLIES {
                let m = rx.recv_timeout(T).unwrap_or_else(|e| panic!("reply {i}: {e}"));
                check(i, &m);
            }
            // Not dropped: a Receiver dropped leaves the channel and frees its
            // return ring, and what the reader had not taken back from it yet
            // would count as lost. Detached, it stays until we exit, and the
            // reader takes every return back, before or after our exit.
            rx.detach();
            // Every slot comes back here, the predecessor's messages too.
            while lent(&peer) != 0 {
                assert!(Instant::now() < deadline, "{} slots never came back", lent(&peer));
                if peer.collect_returns() == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            // The predecessor removed its record before it said "handed", and the
            // reader started reading only after that line.
            assert!(peer.descriptor().unwrap().get_mapping(first).unwrap().is_none(), "the predecessor's mapping record is gone");
            let (accepted, bad) = peer.returns();
            println!(
                "done {me} owner={} generation={} accepted={accepted} bad={bad} lost={} replies={}",
                owner.pid,
                owner.generation,
                peer.lost_to_dead_consumers(),
                2 * REPLIES
            );
            peer.audit().unwrap();
            drop(peer);
            std::process::exit(0);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn an_owner_hands_its_pool_to_a_successor_and_the_reader_loses_nothing() {
    if role().as_deref() == Some("sender") {
        return sender_role();
    }
    let path = common::path("handover");
    let reader = Peer::create(&path, 4, PeerConfig::new("handover-reader")).unwrap();
    let rx = reader.receiver(0).unwrap();
    // Replies queued for the sender before it exists (bound when it links).
    let replies = reader.sender(1).unwrap();
    for i in 0..REPLIES {
        send(&replies, i, Instant::now() + T);
    }
    let mut child = spawn("an_owner_hands_its_pool_to_a_successor_and_the_reader_loses_nothing", "sender", &[("NUMASHM_PATH", path.clone())]);
    // Its complaints, as they come (wait_ok would show them only at its end).
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("sender: {line}");
        }
    });
    // The sender's stdout is shared by the predecessor and the successor.
    let (lines_tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // While it waits, the reader keeps calling its peer (a producer binds its
    // consumer on its own calls).
    let wanted = |prefix: &str| loop {
        let give_up = Instant::now() + T;
        let line = loop {
            match lines.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => break line,
                Err(_) => {
                    assert!(Instant::now() < give_up, "no `{prefix}` line from the sender");
                    reader.collect_returns();
                }
            }
        };
        // (The harness's "test NAME ... " has no newline: the word may follow it.)
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        }
    };
    // Nothing is read before the hand-over: every message is in flight then.
    let handed = wanted("handed ");
    let (first, successor): (u32, u32) = (handed[0].parse().unwrap(), handed[1].parse().unwrap());
    assert_eq!(first, child.id());
    let status = wait_ok(child, T).status;
    assert!(status.success(), "the first owner exits cleanly");
    let report = numashm::pool::inspect(&path).unwrap();
    let entry = report.entries.iter().find(|e| e.pid == successor).expect("the sender's entry names the successor");
    assert!(!entry.alive.is_dead(), "the successor holds the entry's lock");
    for i in REPLIES..2 * REPLIES {
        send(&replies, i, Instant::now() + T);
    }
    let deadline = Instant::now() + T;
    for i in 0..IN_FLIGHT + AFTER {
        let m = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => break m,
                Err(ChannelError::TimedOut) => assert!(Instant::now() < deadline, "message {i} never came"),
                Err(e) => panic!("receive {i}: {e}"),
            }
        };
        check(i, &m);
    }
    assert!(matches!(rx.try_recv(), Err(ChannelError::Empty)), "nothing more, nothing twice");
    let done = wanted("done ");
    assert_eq!(done[0], successor.to_string());
    assert_eq!(done[1], format!("owner={successor}"));
    assert_eq!(done[2], "generation=1", "one change of owner");
    assert_eq!(done[3], format!("accepted={}", IN_FLIGHT + AFTER), "every message came back to the successor");
    assert_eq!(done[4], "bad=0");
    assert_eq!(done[5], "lost=0", "nothing reclaimed from the reader: it never looked dead");
    assert_eq!(done[6], format!("replies={}", 2 * REPLIES), "the successor read channel 1 on");
    // The replies come back to the reader, from the successor: it never looked
    // dead to the reader either (nothing reclaimed).
    while common::lent(&reader) != 0 {
        assert!(Instant::now() < deadline, "{} replies never came back", common::lent(&reader));
        if reader.collect_returns() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(reader.lost_to_dead_consumers(), 0, "the consumer side was never taken for dead");
    assert_eq!(reader.returns(), (2 * REPLIES, 0));
    let report = numashm::pool::inspect(&path).unwrap();
    if let Some(e) = report.entries.iter().find(|e| e.pool_id == entry.pool_id) {
        assert_ne!(e.pid, first, "the entry never names the first owner again");
    }
    drop(rx);
    drop(reader);
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_hand_over_that_times_out_leaves_the_pool_with_its_owner_and_working() {
    let a = Peer::create_anonymous("handover-fail", 4, PeerConfig::new("handover-fail-a")).unwrap();
    let b = a.join_same(PeerConfig::new("handover-fail-b")).unwrap();
    // One thread drives both peers: both ends first (the send binds the
    // reader), the reader kept across the hand-over (a receiver made again is
    // another story: pool_rebind.rs).
    let rx;
    {
        let tx = a.sender(0).unwrap();
        rx = b.receiver(0).unwrap();
        send(&tx, 0, Instant::now() + T);
        check(0, &rx.recv_timeout(T).unwrap());
    }
    let me = std::process::id();
    // A zero timeout: the child cannot say "ready" in time; it is killed and reaped.
    // SAFETY: the child runs only the hand-over's own steps before it is killed
    // or exits (it never returns to this test's code while the parent lives).
    let err = match unsafe { a.hand_over(Duration::ZERO) } {
        Err(e) => e,
        // (Never: the child's own deadline has passed too; it exits at once.)
        Ok(Handover::Successor(_)) => std::process::exit(0),
        Ok(Handover::Predecessor { .. }) => panic!("handed over with a zero timeout"),
    };
    assert!(matches!(err.error, numashm::pool::PoolError::Handover { step: "successor ready", .. }), "{}", err.error);
    let mut a = err.peer;
    // Failed hand-overs leave no capability behind (the table has 32 slots):
    // 40 more fail the same way, not with a full table.
    for _ in 0..40 {
        // SAFETY: as above.
        a = match unsafe { a.hand_over(Duration::ZERO) } {
            Err(e) if matches!(e.error, numashm::pool::PoolError::Handover { step: "successor ready", .. }) => e.peer,
            Err(e) => panic!("{}", e.error),
            Ok(Handover::Successor(_)) => std::process::exit(0),
            Ok(Handover::Predecessor { .. }) => panic!("handed over with a zero timeout"),
        };
    }
    let owner = a.descriptor().unwrap().owner().unwrap();
    assert_eq!((owner.pid, owner.generation), (me, 0), "the owner never changed");
    let tx = a.sender(0).unwrap();
    for i in 1..100 {
        send(&tx, i, Instant::now() + T);
        check(i, &rx.recv_timeout(T).unwrap());
    }
    assert_eq!(a.lost_to_dead_consumers(), 0);
}
