//! A host through a layout-4 rendezvous (`numashm::pool`): creates the
//! rendezvous file, waits for a guest, and ping-pongs with it. Run it, then the
//! guest in a second terminal (and `numashm inspect` in a third, while they run):
//!
//! ```text
//! cargo run --release -p numashm --example pool_host -- 100000     # terminal 1
//! cargo run --release -p numashm --example pool_guest              # terminal 2
//! cargo run --release -p numashm-cli -- inspect /dev/shm/numashm-pool-example   # terminal 3
//! ```
//!
//! The host sends on channel 0 and reads channel 1; the guest the other way
//! round. Each process writes only its own pool (sealed: the other maps it
//! read-only); a zero-length message tells the guest to stop. The rendezvous is
//! `/dev/shm/numashm-pool-example` (or `$NUMASHM_EXAMPLE_PATH`); the host
//! removes it when it ends.

use std::time::{Duration, Instant};

use numashm::pool::{Peer, PeerConfig};

fn path() -> String {
    std::env::var("NUMASHM_EXAMPLE_PATH").unwrap_or_else(|_| "/dev/shm/numashm-pool-example".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let _ = std::fs::remove_file(path()); // a previous run's leftovers
    let host = Peer::create(path(), 8, PeerConfig::new("pool-example-host"))?;
    let (tx, rx) = (host.sender(0)?, host.receiver(1)?);
    println!("waiting for a guest on {} ...", path());
    while host.peers().len() < 2 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    for i in 0..n {
        let mut msg = tx.alloc(64)?;
        msg[..8].copy_from_slice(&i.to_le_bytes());
        tx.send_timeout(msg, Duration::from_secs(10)).map_err(|e| e.error)?;
        let reply = rx.recv_timeout(Duration::from_secs(10))?;
        assert_eq!(&reply[..8], &i.to_le_bytes(), "round trip {i}");
    }
    let per = start.elapsed() / n.max(1) as u32;
    println!("{n} round trips of 64 B, {per:?} each on average");
    let (accepted, bad) = host.returns();
    println!("returns accepted {accepted}, bad {bad}; lost to dead consumers {}", host.lost_to_dead_consumers());
    let mut stop = tx.alloc(1)?;
    stop.set_len(0)?;
    tx.send_timeout(stop, Duration::from_secs(10)).map_err(|e| e.error)?;
    // Let the guest read the stop message before our pool goes with us.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}
