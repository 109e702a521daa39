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

/// Waits for a child with a watchdog; panics with its output if it fails.
pub fn wait_ok(child: Child, timeout: Duration) {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
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
}

pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Counts the free slots of every class by allocating until exhaustion (as
/// `peer`), then frees them all again. Call only when no other peer allocates.
pub fn count_free(seg: &numashm::Segment, peer: u32) -> Vec<usize> {
    // Slots this process keeps for reuse are not free: give them back first.
    seg.flush_cache();
    // SAFETY: callers hold no SlotMut or Message of `seg` (see above); every
    // handle freed here was allocated here.
    let a = unsafe { seg.raw_allocator() };
    let mut counts = Vec::new();
    for class in 0..a.class_count() {
        let size = a.slot_size(class).unwrap();
        let mut held = Vec::new();
        loop {
            match a.alloc(size, peer) {
                Ok(h) if h.class() == class => held.push(h),
                Ok(h) => {
                    // Served by a larger class: this one is exhausted.
                    a.free(h).unwrap();
                    break;
                }
                Err(_) => break,
            }
        }
        counts.push(held.len());
        for h in held {
            a.free(h).unwrap();
        }
    }
    counts
}

pub fn total_slots(seg: &numashm::Segment) -> Vec<usize> {
    // SAFETY: only reads counts.
    let a = unsafe { seg.raw_allocator() };
    (0..a.class_count()).map(|c| a.slots_per_extent(c).unwrap() * a.extent_count(c)).collect()
}
