//! A guest through a layout-4 rendezvous (see `examples/pool_host.rs`): joins
//! the host's rendezvous by path, with a pool of its own, and echoes every
//! message on channel 0 back on channel 1 until a zero-length one arrives.
//!
//! ```text
//! cargo run --release -p numashm --example pool_guest
//! ```
//!
//! A message is read in place from the host's pool (a read-only mapping);
//! dropping it returns the slot to the host, which frees it after checking it.

use std::time::Duration;

use numashm::pool::{ChannelError, Peer, PeerConfig};

fn path() -> String {
    std::env::var("NUMASHM_EXAMPLE_PATH").unwrap_or_else(|_| "/dev/shm/numashm-pool-example".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guest = loop {
        match Peer::join(path(), PeerConfig::new("pool-example-guest")) {
            Ok(p) => break p,
            Err(e) => {
                eprintln!("waiting for the host ({e})");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let (rx, tx) = (guest.receiver(0)?, guest.sender(1)?);
    let mut n = 0u64;
    loop {
        let msg = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(m) => m,
            Err(ChannelError::TimedOut) => return Err("no message for 30 s: is the host gone?".into()),
            Err(e) => return Err(e.into()),
        };
        if msg.is_empty() {
            break;
        }
        let mut reply = tx.alloc(msg.len())?;
        reply.copy_from_slice(&msg);
        drop(msg); // returns the host's slot
        tx.send_timeout(reply, Duration::from_secs(10)).map_err(|e| e.error)?;
        n += 1;
    }
    println!("echoed {n} messages");
    Ok(())
}
