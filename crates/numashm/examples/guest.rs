//! A guest: attaches to the host's segment (see `examples/host.rs`).
//!
//! ```text
//! cargo run --release -p numashm --example guest -- ping-pong
//! cargo run --release -p numashm --example guest -- fan-out RING [SLOW_US]
//! ```

use std::time::Duration;

use numashm::Segment;

fn path() -> String {
    std::env::var("NUMASHM_EXAMPLE_PATH").unwrap_or_else(|_| "/dev/shm/numashm-example".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seg = loop {
        match Segment::attach(path()) {
            Ok(s) => break s,
            Err(e) => {
                eprintln!("waiting for the host ({e})");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    match args.first().map(String::as_str).unwrap_or("ping-pong") {
        "ping-pong" => {
            let (rx, tx) = (seg.receiver(0)?, seg.sender(1)?);
            let mut n = 0u64;
            loop {
                let msg = rx.recv()?;
                if msg.is_empty() {
                    break;
                }
                let mut reply = tx.alloc(msg.len())?;
                reply.copy_from_slice(&msg);
                drop(msg); // frees the host's slot
                tx.send_blocking(reply).map_err(|e| e.error)?;
                n += 1;
            }
            println!("echoed {n} messages");
        }
        "fan-out" => {
            let ring: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(0);
            let slow_us: u64 = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(0);
            let rx = seg.receiver(ring)?;
            let mut n = 0u64;
            loop {
                let msg = rx.recv()?;
                if msg.is_empty() {
                    break;
                }
                n += 1;
                if slow_us > 0 {
                    std::thread::sleep(Duration::from_micros(slow_us));
                }
            }
            println!("ring {ring}: received {n} messages");
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
