//! Helpers for the ownership integration tests: child processes with a role
//! (this test binary re-run), a line channel over their stdin, watchdogs.
#![allow(dead_code)]
// Test bookkeeping, not shared-memory algorithms: the loom ban does not apply.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use numashm_ownership::{BrokerClient, OfferInfo, OfferState};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How long any child may run before the watchdog kills it.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

pub fn sock_path(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed); // Relaxed: a unique number, nothing else.
    std::env::temp_dir().join(format!("numashm-own-{tag}-{}-{n}.sock", std::process::id()))
}

pub fn role() -> Option<String> {
    std::env::var("NUMASHM_CHILD_ROLE").ok()
}

pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("env {key} missing"))
}

pub fn env_u32(key: &str) -> u32 {
    env(key).parse().unwrap()
}

pub struct Kid {
    pub child: Child,
    pub pid: u32,
}

/// Runs this test binary again, executing only `entry`, as `role`.
pub fn spawn(entry: &str, role: &str, vars: &[(&str, String)]) -> Kid {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env("NUMASHM_CHILD_ROLE", role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn child");
    let pid = child.id();
    Kid { child, pid }
}

impl Kid {
    /// Sends one line to the child's stdin.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush");
    }

    /// Waits for the child, killing it after `CHILD_TIMEOUT`.
    pub fn finish(mut self) -> Output {
        drop(self.child.stdin.take());
        let pid = self.pid;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if rx.recv_timeout(CHILD_TIMEOUT).is_err() {
                if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        });
        let out = self.child.wait_with_output().expect("wait child");
        let _ = tx.send(());
        let _ = watchdog.join();
        out
    }

    pub fn finish_ok(self) -> Output {
        let out = self.finish();
        assert_ok(&out);
        // A child that matched no test would exit 0 having checked nothing.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
        out
    }
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One line from the parent (a child's stdin).
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("read stdin");
    line.trim().to_string()
}

/// Polls the broker until `pred` holds for one of the caller's offers.
pub fn wait_for_offer(client: &BrokerClient, pred: impl Fn(&OfferInfo) -> bool) -> OfferInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [OfferInfo::default(); 64];
    loop {
        let n = client.list_offers(&mut buf).expect("list_offers");
        if let Some(o) = buf[..n].iter().find(|o| pred(o)) {
            return *o;
        }
        assert!(Instant::now() < deadline, "watchdog: the awaited offer never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn is_claimed(o: &OfferInfo) -> bool {
    o.state == Some(OfferState::Claimed)
}

/// Whether a write to `addr` kills a forked child with SIGSEGV/SIGBUS.
pub fn write_faults(addr: usize) -> bool {
    fault_probe(addr, true)
}

/// Whether a read of `addr` kills a forked child with SIGSEGV/SIGBUS.
pub fn read_faults(addr: usize) -> bool {
    fault_probe(addr, false)
}

fn fault_probe(addr: usize, write: bool) -> bool {
    // libc's fork and _exit: rustix 1.1 has no public fork or _exit.
    // SAFETY: fork in a test process; the child only touches `addr` and calls
    // _exit, both async-signal-safe, so the other threads' state does not matter.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: in the forked child, which exists to perform this access: it
        // either faults (what the test looks for) or exits right after.
        unsafe {
            if write {
                std::ptr::write_volatile(addr as *mut u8, 0x5a);
            } else {
                std::ptr::read_volatile(addr as *const u8);
            }
            libc::_exit(0);
        }
    }
    let pid = rustix::process::Pid::from_raw(pid).expect("a forked child's pid is positive");
    let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .expect("waitpid")
        .expect("without NOHANG waitpid returns the child's status");
    use rustix::process::Signal;
    matches!(status.terminating_signal(), Some(s) if s == Signal::SEGV.as_raw() || s == Signal::BUS.as_raw())
}

/// The `/proc/self/maps` line of the mapping containing `addr`.
pub fn maps_line(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .find(|l| {
            let range = l.split_whitespace().next().unwrap_or("");
            let mut it = range.split('-');
            let (Some(a), Some(b)) = (it.next(), it.next()) else { return false };
            let (a, b) = (usize::from_str_radix(a, 16).unwrap_or(0), usize::from_str_radix(b, 16).unwrap_or(0));
            a <= addr && addr < b
        })
        .map(str::to_string)
}
