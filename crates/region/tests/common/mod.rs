//! Helpers shared by the region integration tests: unique paths, root checks,
//! and re-running this test binary as a child process with a role.
#![allow(dead_code)]
// Test bookkeeping, not shared-memory algorithms: the loom ban does not apply.
#![allow(clippy::disallowed_types)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh path under /dev/shm (tmpfs, where placement applies).
pub fn shm_path(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!("/dev/shm/numashm-test-{tag}-{}-{n}", std::process::id()))
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// Runs this test binary again, executing only the test named `entry`, with
/// `NUMASHM_CHILD_ROLE=role` and extra env vars; waits at most `timeout`.
pub fn run_child(entry: &str, role: &str, env: &[(&str, String)], timeout: Duration) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env("NUMASHM_CHILD_ROLE", role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn child");
    let pid = child.id();
    // Watchdog: a child that hangs is killed, and the test fails on its status.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    });
    let out = child.wait_with_output().expect("wait child");
    let _ = tx.send(());
    let _ = watchdog.join();
    out
}

pub fn role() -> Option<String> {
    std::env::var("NUMASHM_CHILD_ROLE").ok()
}

pub fn assert_child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes sure at least `pages` free hugetlb pages of `size` exist (root only).
/// Returns false (after printing why) when they cannot be had.
pub fn ensure_huge_pages(size: usize, pages: u64) -> bool {
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", size / 1024);
    let read = |f: &str| -> Option<u64> { std::fs::read_to_string(format!("{dir}/{f}")).ok()?.trim().parse().ok() };
    let Some(free) = read("free_hugepages") else {
        skip(&format!("no {} KiB hugetlb support ({dir} missing)", size / 1024));
        return false;
    };
    if free >= pages {
        return true;
    }
    if !is_root() {
        skip(&format!("{free} free {} KiB huge pages and not root to reserve more", size / 1024));
        return false;
    }
    let total = read("nr_hugepages").unwrap_or(0);
    let _ = std::fs::write(format!("{dir}/nr_hugepages"), (total + pages - free).to_string());
    let free = read("free_hugepages").unwrap_or(0);
    if free < pages {
        skip(&format!("could not reserve {pages} {} KiB huge pages (got {free} free)", size / 1024));
        return false;
    }
    true
}

/// Turns shmem THP on (`advise`) when root; false (after printing why) otherwise.
pub fn ensure_shmem_thp() -> bool {
    let path = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
    match numashm_region::shmem_thp_mode().as_deref() {
        Some("always" | "advise" | "within_size" | "force") => true,
        None => {
            skip("no shmem THP support in this kernel");
            false
        }
        Some(mode) if is_root() => {
            if std::fs::write(path, "advise").is_err() {
                skip(&format!("shmem THP is {mode} and could not be set to advise"));
                return false;
            }
            true
        }
        Some(mode) => {
            skip(&format!("shmem THP is {mode}; run as root to set advise"));
            false
        }
    }
}
