//! A producer killed with messages still in its ring, and a new producer of
//! the same channel (a restarted sender, such as an inbound bridge): the
//! consumer reads the dead producer's ring to its end before it links the new
//! one, so the channel's order holds across the restart.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{role, spawn};
use numashm::pool::{ChannelError, Peer, PeerConfig};

const T: Duration = Duration::from_secs(60);
const FIRST: u64 = 100;
const SECOND: u64 = 100;
const NAME: &str = "a_dead_producers_ring_is_read_to_its_end_before_a_new_producer_of_the_channel";

/// A producer: sends `count` messages numbered from `from` on channel 0, says
/// "sent", and stays until its slots are back (or it is killed).
fn producer() {
    let from: u64 = std::env::var("NUMASHM_FROM").unwrap().parse().unwrap();
    let count: u64 = std::env::var("NUMASHM_COUNT").unwrap().parse().unwrap();
    let peer = Peer::join(std::env::var("NUMASHM_PATH").unwrap(), PeerConfig::new("order-producer")).unwrap();
    let tx = peer.sender(0).unwrap();
    for i in from..from + count {
        let mut m = tx.alloc(8).unwrap();
        m.copy_from_slice(&i.to_le_bytes());
        tx.send_timeout(m, T).map_err(|e| e.error).unwrap();
    }
    println!("\nsent");
    let deadline = Instant::now() + T;
    while common::lent(&peer) != 0 && Instant::now() < deadline {
        peer.collect_returns();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_for_line(child: &mut std::process::Child, want: &str) {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(T).unwrap_or_else(|e| panic!("no `{want}` from the producer: {e}"));
        if line.trim() == want {
            return;
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_dead_producers_ring_is_read_to_its_end_before_a_new_producer_of_the_channel() {
    if role().as_deref() == Some("producer") {
        return producer();
    }
    let path = common::path("drain-order");
    let reader = Peer::create(&path, 4, PeerConfig::new("order-reader")).unwrap();
    let rx = reader.receiver(0).unwrap();
    let idle = reader.receiver(1).unwrap(); // nobody produces it: its waits run our upkeep
    let env = |from: u64, count: u64| [("NUMASHM_PATH", path.clone()), ("NUMASHM_FROM", from.to_string()), ("NUMASHM_COUNT", count.to_string())];
    let mut first = spawn(NAME, "producer", &env(0, FIRST));
    // The first message is read: the first producer's ring is linked and bound.
    let m = rx.recv_timeout(T).expect("the first producer's first message");
    assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), 0);
    drop(m);
    wait_for_line(&mut first, "sent");
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = spawn(NAME, "producer", &env(FIRST, SECOND));
    wait_for_line(&mut second, "sent");
    // Upkeep runs (wait slices on the idle channel) while the dead producer's
    // ring still holds 99 messages and the new producer's ring is there to link.
    assert!(matches!(idle.recv_timeout(Duration::from_millis(200)), Err(ChannelError::TimedOut)));
    let mut got = vec![0];
    let deadline = Instant::now() + T;
    while got.len() < (FIRST + SECOND) as usize {
        assert!(Instant::now() < deadline, "only {} messages: {got:?}", got.len());
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(50)) {
            got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
        }
    }
    assert_eq!(got, (0..FIRST + SECOND).collect::<Vec<_>>(), "the dead producer's messages first, then the new one's, each once");
    common::wait_ok(second, T);
}
