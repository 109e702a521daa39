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
