//! `numashm __pool-peer PATH host|guest ROUNDS` (hidden): one side of a
//! ping-pong through a layout-4 rendezvous, for the CLI's tests of `inspect`
//! (examples/pool_host.rs and pool_guest.rs are the documented versions).
//! After ROUNDS round trips it prints `ready`, then stays joined until its
//! stdin closes (or 120 s pass), so an inspector sees it alive with traffic.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use numashm::pool::{ChannelError, Peer, PeerConfig};

use crate::util::CliError;

/// Longest a child stays joined if nobody closes its stdin.
const WATCHDOG: Duration = Duration::from_secs(120);

pub fn run(path: &Path, role: &str, rounds: u64) -> Result<(), CliError> {
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        std::process::exit(3);
    });
    let fail = |e: &dyn std::fmt::Display| CliError(format!("pool peer {role} on {}: {e}", path.display()));
    let peer = Peer::join(path, PeerConfig::new(&format!("numashm-{role}"))).map_err(|e| fail(&e))?;
    // The host sends on 0 and reads 1; the guest the other way round.
    let (out, inn) = if role == "host" { (0, 1) } else { (1, 0) };
    let (tx, rx) = (peer.sender(out).map_err(|e| fail(&e))?, peer.receiver(inn).map_err(|e| fail(&e))?);
    let deadline = Instant::now() + Duration::from_secs(60);
    let recv = || loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Err(ChannelError::TimedOut) if Instant::now() < deadline => continue,
            r => return r,
        }
    };
    for i in 0..rounds {
        if role == "host" {
            let mut m = tx.alloc(1000).map_err(|e| fail(&e))?;
            m[..8].copy_from_slice(&i.to_le_bytes());
            tx.send_timeout(m, Duration::from_secs(30)).map_err(|e| fail(&e.error))?;
            let reply = recv().map_err(|e| fail(&e))?;
            if reply[..8] != i.to_le_bytes() {
                return Err(fail(&format!("round {i}: wrong reply")));
            }
        } else {
            let m = recv().map_err(|e| fail(&e))?;
            let mut reply = tx.alloc(m.len()).map_err(|e| fail(&e))?;
            reply.copy_from_slice(&m);
            drop(m);
            tx.send_timeout(reply, Duration::from_secs(30)).map_err(|e| fail(&e.error))?;
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
