//! A consumer that drops its `Receiver` and makes a new one on the same peer
//! before the producer's next slow path (docs/reliability.md, the pool_bind
//! finding): no message is delivered twice, what is sent afterwards arrives,
//! and every slot comes back to the producer.

use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Peer, PeerConfig, Receiver, Sender};

/// Watchdog of every wait below.
const T: Duration = Duration::from_secs(30);

fn lent(p: &Peer) -> u64 {
    let c = p.census();
    c.classes.iter().map(|k| k.lent).sum::<u64>() + c.dedicated.lent
}

fn send(tx: &Sender<'_>, v: u64) -> Result<(), ChannelError> {
    let mut m = tx.alloc(8)?;
    m.copy_from_slice(&v.to_le_bytes());
    tx.send(m).map_err(|e| e.error)
}

/// Every message waiting now (each dropped once read), as numbers.
fn drain(rx: &Receiver<'_>, got: &mut Vec<u64>) {
    while let Ok(m) = rx.try_recv() {
        got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_receiver_made_again_before_the_producer_notices_gets_no_message_twice() {
    let a = Peer::create_anonymous("again", 4, PeerConfig::new("again-a").ring_capacity(8)).unwrap();
    let b = a.join_same(PeerConfig::new("again-b")).unwrap();
    let tx = a.sender(0).unwrap();
    let rx = b.receiver(0).unwrap();
    send(&tx, 1).unwrap();
    let m = rx.recv_timeout(T).expect("message 1");
    assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), 1);
    drop(m);
    drop(rx);
    // Made again at once: the producer has run no slow path since.
    let rx = b.receiver(0).unwrap();
    let mut got = Vec::new();
    drain(&rx, &mut got);
    assert!(!got.contains(&1), "message 1 delivered twice: {got:?}");
    // The producer goes on sending (its slow paths run as they come: a full
    // ring, a wait slice); the consumer polls and waits in slices. Messages
    // sent before the producer noticed the old link gone may be reclaimed
    // (counted lost); those sent after must arrive.
    let deadline = Instant::now() + T;
    let mut next = 2u64;
    let mut first_bound = None;
    while first_bound.is_none_or(|f| next < f + 20) {
        assert!(Instant::now() < deadline, "no message arrived after the receiver was made again: {got:?}");
        match send(&tx, next) {
            Ok(()) => next += 1,
            Err(ChannelError::Full) => {}
            Err(e) => panic!("send {next}: {e}"),
        }
        let before = got.len();
        drain(&rx, &mut got);
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(1)) {
            got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
        }
        if first_bound.is_none() && got.len() > before {
            first_bound = Some(next);
        }
    }
    drain(&rx, &mut got);
    assert!(!got.contains(&1), "message 1 delivered twice: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, each once: {got:?}");
    // Once the producer bound the new receiver, nothing is lost: every later
    // message arrives.
    let from = first_bound.unwrap();
    let tail: Vec<u64> = got.iter().copied().filter(|&v| v >= from).collect();
    assert_eq!(tail, (from..next).collect::<Vec<_>>(), "every message sent after the bind");
    let lost = a.lost_to_dead_consumers();
    // What was not received was reclaimed and counted, nothing else.
    assert_eq!(got.len() as u64 + lost, next - 2, "received {got:?}, lost {lost}");
    drop(rx);
    drop(b);
    a.collect_returns();
    assert_eq!(lent(&a), 0, "every slot back with the producer");
    assert_eq!(a.returns().1, 0, "no bad return");
}
