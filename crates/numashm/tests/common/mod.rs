//! Child-process plumbing for the facade's cross-process tests.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn path(tag: &str) -> String {
    format!("/dev/shm/numashm-facade-{tag}-{}", std::process::id())
}

pub fn role() -> Option<String> {
    std::env::var("NUMASHM_ROLE").ok()
}

/// Spawns this test binary running only `entry`, in `role`.
pub fn spawn(entry: &str, role: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"]).env("NUMASHM_ROLE", role).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for a child with a watchdog; panics with its output if it fails,
/// else returns the output.
pub fn wait_ok(child: Child, timeout: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    let _ = dog.join();
    assert!(
        out.status.success(),
        "child failed: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Slots of `p`'s pool lent to readers now.
pub fn lent(p: &numashm::pool::Peer) -> u64 {
    let c = p.census();
    c.classes.iter().map(|k| k.lent).sum::<u64>() + c.dedicated.lent
}

/// Honest messages a test sends (`NUMASHM_MESSAGES`, default 100 000).
pub fn messages() -> u64 {
    std::env::var("NUMASHM_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// Message `i`: `[i, checksum of the rest, bytes derived from i]`, 16..=4096 bytes, some 64 KiB.
pub fn fill(i: u64, buf: &mut [u8]) {
    for (k, b) in buf[16..].iter_mut().enumerate() {
        *b = (i as usize * 31 + k * 7) as u8;
    }
    buf[..8].copy_from_slice(&i.to_le_bytes());
    let sum = checksum(&buf[16..]);
    buf[8..16].copy_from_slice(&sum.to_le_bytes());
}

/// The length of message `i` (see [`fill`]).
pub fn len_of(i: u64) -> usize {
    if i % 1000 == 999 {
        64 << 10
    } else {
        16 + (i as usize * 37) % 4081
    }
}

/// Message `i` as [`fill`] wrote it: its length, its place in the order, its checksum.
pub fn check(i: u64, msg: &[u8]) {
    assert_eq!(msg.len(), len_of(i), "length of message {i}");
    assert_eq!(u64::from_le_bytes(msg[..8].try_into().unwrap()), i, "in order");
    assert_eq!(u64::from_le_bytes(msg[8..16].try_into().unwrap()), checksum(&msg[16..]), "payload of {i} intact");
}

/// A heartbeat: the watchdog ends the test process if it stops moving.
#[derive(Clone)]
pub struct Beat(std::sync::Arc<std::sync::Mutex<u64>>);

impl Beat {
    /// Progress.
    pub fn tick(&self) {
        *self.0.lock().unwrap() += 1;
    }

    /// Stops the watchdog.
    pub fn done(&self) {
        *self.0.lock().unwrap() = u64::MAX;
    }
}

/// Ends the test process (exit 101) if `beat` does not move for `limit`: a
/// peer that stalls fails the test instead of hanging it.
pub fn watchdog(what: &'static str, limit: Duration) -> Beat {
    let beat = Beat(std::sync::Arc::new(std::sync::Mutex::new(0)));
    let b = beat.clone();
    std::thread::spawn(move || {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(limit);
            let now = *b.0.lock().unwrap();
            if now == u64::MAX {
                return;
            }
            if now == last {
                eprintln!("watchdog: {what} made no progress for {limit:?}");
                std::process::exit(101);
            }
            last = now;
        }
    });
    beat
}
