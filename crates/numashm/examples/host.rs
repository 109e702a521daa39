//! A host: creates a segment and serves guests. Run it, then the guest in a
//! second terminal:
//!
//! ```text
//! cargo run --release -p numashm --example host -- ping-pong      # terminal 1
//! cargo run --release -p numashm --example guest -- ping-pong     # terminal 2
//!
//! cargo run --release -p numashm --example host -- fan-out 3      # terminal 1
//! cargo run --release -p numashm --example guest -- fan-out 0     # terminals 2, 3, 4
//! cargo run --release -p numashm --example guest -- fan-out 1     #   (one per ring)
//! cargo run --release -p numashm --example guest -- fan-out 2
//! ```
//!
//! The segment is `/dev/shm/numashm-example` (or `$NUMASHM_EXAMPLE_PATH`).

use std::time::{Duration, Instant};

use numashm::{MessageError, RingSpec, SendError, Segment, SegmentConfig};

fn path() -> String {
    std::env::var("NUMASHM_EXAMPLE_PATH").unwrap_or_else(|_| "/dev/shm/numashm-example".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("ping-pong");
    let _ = std::fs::remove_file(path()); // a previous run's leftovers
    match mode {
        "ping-pong" => ping_pong(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000)),
        "fan-out" => fan_out(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(3)),
        other => Err(format!("unknown mode {other}: use ping-pong or fan-out").into()),
    }
}

fn wait_for_peers(seg: &Segment, n: usize) {
    println!("waiting for {n} guest(s) on {} ...", path());
    while seg.peers().iter().filter(|p| p.state == numashm::PeerState::Attached).count() < n + 1 {
        seg.recover_dead_peers();
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ping_pong(n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::create(SegmentConfig::file(path()))?;
    wait_for_peers(&seg, 1);
    let (tx, rx) = (seg.sender(0)?, seg.receiver(1)?);
    let start = Instant::now();
    for i in 0..n {
        let mut msg = tx.alloc(64)?;
        msg[..8].copy_from_slice(&i.to_le_bytes());
        tx.send_blocking(msg).map_err(|e| e.error)?;
        let reply = rx.recv_timeout(Duration::from_secs(10))?;
        assert_eq!(&reply[..8], &i.to_le_bytes());
    }
    let per = start.elapsed() / n as u32;
    println!("{n} round trips of 64 B, {per:?} each on average");
    let mut stop = tx.alloc(0)?;
    stop.set_len(0)?;
    tx.send_blocking(stop).map_err(|e| e.error)?;
    Ok(())
}

fn fan_out(consumers: usize) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::create(SegmentConfig::file(path()).rings(vec![RingSpec::spsc(64); consumers]))?;
    wait_for_peers(&seg, consumers);
    let txs: Vec<_> = (0..consumers).map(|r| seg.sender(r)).collect::<Result<_, _>>()?;
    let mut full = vec![0u64; consumers];
    for i in 0..100_000u64 {
        for (r, tx) in txs.iter().enumerate() {
            let mut msg = tx.alloc(64)?;
            msg[..8].copy_from_slice(&i.to_le_bytes());
            match tx.send(msg) {
                Ok(()) => {}
                // A slow consumer only fills its own ring: its messages are dropped
                // here (handed back), the others go on.
                Err(SendError { error: MessageError::Full, .. }) => full[r] += 1,
                Err(e) => return Err(e.error.into()),
            }
        }
    }
    for (r, tx) in txs.iter().enumerate() {
        let mut stop = tx.alloc(0)?;
        stop.set_len(0)?;
        let _ = tx.send_timeout(stop, Some(Duration::from_secs(5)));
        println!("ring {r}: {} messages dropped because that consumer lagged (fill now {})", full[r], seg.ring_info(r)?.fill);
    }
    Ok(())
}
