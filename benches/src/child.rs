//! The second process of the cross-process comparisons, and CPU pinning.
//!
//! The parent re-runs its own executable (`std::env::current_exe()`) with
//! `NUMASHM_BENCH_CHILD=<role>`; the executable's `main` calls
//! [`child_main_if_requested`] first, which runs the role and exits. Shared
//! objects reach the child as inherited file descriptors (memfd, eventfd), so
//! nothing is left in `/dev/shm`. The child:
//! - pins itself to the other CPU (the parent measures on CPU 0);
//! - writes one byte `R` to stdout when it is ready, so the parent never
//!   measures a child still attaching (and sees at once if it failed);
//! - exits as soon as its stdin reaches EOF, i.e. when the parent drops its
//!   [`Child`] or dies: a watcher thread blocks on stdin, so no role can
//!   outlive the parent, whatever its loop is doing;
//! - never spins for long while idle: it falls back to parking (futex,
//!   eventfd read) or to sleeping polls, so it does not steal the CPU the
//!   parent uses to measure the baseline in between.
#![allow(unsafe_code)] // fds passed by number, the floor page mapping

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::CpuSet;

/// The environment variable naming the child role.
pub const CHILD_ENV: &str = "NUMASHM_BENCH_CHILD";

/// Runs the requested child role and exits if [`CHILD_ENV`] is set; returns
/// at once otherwise. Call it first thing in every `main` that may run the
/// cross-process comparisons (the criterion benches, the `numashm` CLI).
pub fn child_main_if_requested() {
    let Some(role) = std::env::var_os(CHILD_ENV) else { return };
    let role = role.to_string_lossy().into_owned();
    watch_parent();
    pin_current_thread(other_cpu());
    let code = match run_role(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("numashm-benches child ({role}): {e}");
            1
        }
    };
    std::process::exit(code);
}

type ChildResult = Result<(), Box<dyn std::error::Error>>;

fn run_role(role: &str) -> ChildResult {
    let (name, args) = role.split_once(':').ok_or("role is NAME:ARGS")?;
    #[cfg(feature = "peers")]
    if name == "iceoryx2" {
        return crate::peers::echo_child(args.parse()?);
    }
    let fds: Vec<RawFd> = args.split(',').map(str::parse).collect::<Result<_, _>>()?;
    // SAFETY: the parent passed these descriptors, open and without CLOEXEC,
    // for this process alone; nothing else in this process owns them.
    let mut owned: Vec<OwnedFd> = fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
    match (name, owned.len()) {
        ("echo", 1) => crate::rtt::echo_child(owned.remove(0)),
        ("floor", 1) => floor_child(owned.remove(0)),
        ("eventfd", 2) => {
            let pong = owned.remove(1);
            eventfd_child(owned.remove(0), pong)
        }
        _ => Err(format!("unknown role {role}").into()),
    }
}

/// Exits this process when stdin reaches EOF (the parent dropped its end or died).
fn watch_parent() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(1..) = stdin.read(&mut buf) {}
        std::process::exit(0);
    });
}

/// Tells the parent this child is ready.
pub(crate) fn signal_ready() -> ChildResult {
    let mut out = std::io::stdout();
    out.write_all(b"R")?;
    out.flush()?;
    Ok(())
}

/// The CPU the second side runs on: the lowest one after 0 in the machine's
/// topology (hwloc's; normally 1), or 0 on a one-CPU machine. (Not
/// `available_parallelism`, which counts the caller's affinity mask: 1 once
/// the caller is pinned.)
pub fn other_cpu() -> usize {
    let Ok(topo) = numashm_region::Topology::get() else { return 0 };
    topo.nodes().iter().flat_map(|n| n.cpus.iter().copied()).filter(|&c| c != 0).min().map_or(0, |c| c as usize)
}

/// Pins the calling thread to `cpu` (best effort: a failure leaves it unpinned).
pub fn pin_current_thread(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

/// Pins the calling thread to a CPU until dropped, then restores its affinity.
#[derive(Debug)]
pub struct Pinned {
    saved: Option<CpuSet>,
}

impl Pinned {
    /// Pins the calling thread to `cpu`.
    pub fn to(cpu: usize) -> Pinned {
        let saved = rustix::thread::sched_getaffinity(None).ok();
        pin_current_thread(cpu);
        Pinned { saved }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(set) = &self.saved {
            let _ = rustix::thread::sched_setaffinity(None, set);
        }
    }
}

/// A running child process; dropping it ends the child (stdin EOF, then kill
/// after two seconds) and reaps it.
#[derive(Debug)]
pub struct Child {
    proc: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Child {
    /// Starts this executable as child `role` (`NAME:FD,FD…`) and waits until
    /// it is ready. The fds named in `role` must be open without CLOEXEC.
    ///
    /// # Panics
    ///
    /// If the child cannot be started or exits before it is ready.
    pub fn spawn(role: &str) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut proc = Command::new(exe)
            .env(CHILD_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the benchmark child");
        let stdin = proc.stdin.take();
        let mut out = proc.stdout.take().expect("piped stdout");
        let mut b = [0u8; 1];
        let ready = matches!(out.read(&mut b), Ok(1)) && b[0] == b'R';
        let mut child = Child { proc, stdin };
        if !ready {
            drop(child.stdin.take());
            let status = child.proc.wait();
            panic!("benchmark child {role} failed to start: {status:?} (is child_main_if_requested() the first call in main?)");
        }
        child
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the child exits
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// A descriptor a child inherits: a dup without CLOEXEC. Keep it until the
/// child is spawned, then drop it.
pub(crate) fn inheritable(fd: impl AsFd) -> OwnedFd {
    rustix::io::dup(fd).expect("dup")
}

/// Deadline check for spin loops: panics after 10 s without progress, so a
/// dead peer fails the benchmark instead of hanging it. Cheap: reads the
/// clock once every 65536 spins.
pub(crate) struct Watchdog {
    spins: u32,
    deadline: Option<Instant>,
    what: &'static str,
}

impl Watchdog {
    pub(crate) fn new(what: &'static str) -> Self {
        Watchdog { spins: 0, deadline: None, what }
    }

    /// One more spin without progress.
    #[inline]
    pub(crate) fn tick(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 0xFFFF == 0 {
            self.check();
        }
        std::hint::spin_loop();
    }

    /// As [`tick`](Self::tick), without the `pause` hint (for loops whose
    /// baseline spins without one, like rtrb's own benchmarks).
    #[inline]
    pub(crate) fn tick_busy(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 0xFFFF == 0 {
            self.check();
        }
    }

    /// Progress was made: the 10 s start again.
    #[inline]
    pub(crate) fn progress(&mut self) {
        self.spins = 0;
        self.deadline = None;
    }

    #[cold]
    fn check(&mut self) {
        let now = Instant::now();
        match self.deadline {
            None => self.deadline = Some(now + Duration::from_secs(10)),
            Some(d) if now > d => panic!("{}: no progress from the other side in 10 s", self.what),
            Some(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// The payload floor: one shared page, 64 B written and a flag flipped.

/// Layout of the floor page: the flag alone on its line, ping and pong payloads on theirs.
const FLOOR_PAGE: usize = 4096;
const FLAG_AT: usize = 0;
const PING_AT: usize = 128;
const PONG_AT: usize = 256;
/// The payload size of `rtt_vs_floor` (and of our small round trip).
pub const PAYLOAD: usize = 64;

/// A mapping of the floor page.
pub(crate) struct FloorPage {
    base: *mut u8,
}

impl FloorPage {
    fn map(fd: impl AsFd) -> FloorPage {
        // SAFETY: a fresh shared mapping of a 4 KiB memfd at a kernel-chosen address.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                FLOOR_PAGE,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        }
        .expect("mmap floor page");
        FloorPage { base: base.cast() }
    }

    /// The flag: a sequence number, odd = ping, even = pong (32 bits, so the
    /// idle child can park on it with a futex).
    fn flag(&self) -> &AtomicU32 {
        // SAFETY: offset 0 of a live, page-aligned mapping; accessed only atomically.
        unsafe { &*self.base.add(FLAG_AT).cast::<AtomicU32>() }
    }

    /// Writes `src` (64 B) at `at`.
    fn write(&self, at: usize, src: &[u8; PAYLOAD]) {
        // SAFETY: `at + 64 <= 4096`; the other process reads these bytes only after
        // the Release store of the flag that follows (and we write them only after
        // the Acquire load that saw its flip), so the accesses never overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(at), PAYLOAD) };
    }

    /// Reads 64 B at `at` and returns their sum (so the reads are not elided).
    fn read(&self, at: usize) -> u64 {
        let mut buf = [0u8; PAYLOAD];
        // SAFETY: as in `write`, after the Acquire load that saw the writer's flip.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(at), buf.as_mut_ptr(), PAYLOAD) };
        std::hint::black_box(buf).iter().map(|&b| u64::from(b)).sum()
    }
}

impl Drop for FloorPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no references into it outlive `self`.
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), FLOOR_PAGE) };
    }
}

/// The parent's side of the floor: the page, the child, and the round count.
pub struct Floor {
    page: FloorPage,
    seq: u32,
    _child: Child,
}

impl Floor {
    /// Creates the page and starts the child that answers on it.
    pub fn start() -> Floor {
        let fd = rustix::fs::memfd_create("numashm-bench-floor", rustix::fs::MemfdFlags::empty()).expect("memfd");
        rustix::fs::ftruncate(&fd, FLOOR_PAGE as u64).expect("ftruncate");
        let page = FloorPage::map(&fd);
        let child = Child::spawn(&format!("floor:{}", fd.as_raw_fd()));
        drop(fd);
        Floor { page, seq: 0, _child: child }
    }

    /// One round trip: write 64 B and flip the flag; wait for the flip back and
    /// read the 64 B the other side wrote.
    #[inline]
    pub fn round_trip(&mut self, payload: &[u8; PAYLOAD]) -> u64 {
        self.ping(payload);
        self.pong()
    }

    /// A round trip that first wakes the child if it parked while idle: call it
    /// before timing after a pause (the busy round trips make no syscall).
    pub fn wake_round_trip(&mut self, payload: &[u8; PAYLOAD]) -> u64 {
        self.ping(payload);
        self.wake();
        self.pong()
    }

    /// After the flip: a child that has not parked yet sees the new value
    /// (FUTEX_WAIT compares it), one that has is woken here.
    fn wake(&self) {
        let _ = rustix::thread::futex::wake(self.page.flag(), rustix::thread::futex::Flags::empty(), 1);
    }

    #[inline]
    fn ping(&mut self, payload: &[u8; PAYLOAD]) {
        self.page.write(PING_AT, payload);
        self.seq = self.seq.wrapping_add(2);
        // SYNC floor-ping: Release publishes the ping payload to the child's Acquire.
        self.page.flag().store(self.seq.wrapping_sub(1), Ordering::Release);
    }

    #[inline]
    fn pong(&mut self) -> u64 {
        let mut dog = Watchdog::new("floor round trip");
        let mut spins = 0u32;
        // SYNC floor-pong: Acquire pairs with the child's Release; its payload is visible.
        while self.page.flag().load(Ordering::Acquire) != self.seq {
            dog.tick();
            spins += 1;
            if spins == 1 << 12 {
                // No answer yet: the child may have parked in a pause between
                // rounds we did not announce (criterion's). Busy round trips never
                // get here.
                self.wake();
            }
        }
        self.page.read(PONG_AT)
    }
}

fn floor_child(fd: OwnedFd) -> ChildResult {
    let page = FloorPage::map(&fd);
    signal_ready()?;
    let mut last = 0u32;
    loop {
        // Spin (about 50 µs), then park on the flag word until the parent's
        // `wake_round_trip`. Parked, it never runs while the parent measures
        // something else on our CPU: polling every 50 µs instead made the
        // other comparison's child lose its CPU ~10 000 times a second, which
        // cost our round trip ~20 % (an A/B on 2026-11-25).
        let mut spins = 0u32;
        let seq = loop {
            // SYNC floor-ping (Acquire).
            let s = page.flag().load(Ordering::Acquire);
            if s != last && s % 2 == 1 {
                break s;
            }
            spins += 1;
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                // Sleeps only while the flag still reads `last` (checked by the
                // kernel atomically with going to sleep); the timeout is a safety
                // net for a parent that flips without waking.
                let timeout = rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
                let _ = rustix::thread::futex::wait(page.flag(), rustix::thread::futex::Flags::empty(), last, Some(&timeout));
                spins = 0;
            }
        };
        let sum = page.read(PING_AT);
        page.write(PONG_AT, &[sum as u8; PAYLOAD]);
        last = seq.wrapping_add(1);
        // SYNC floor-pong (Release): the pong payload before the flip back.
        page.flag().store(last, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// Raw eventfd ping-pong.

/// The parent's side of the eventfd ping-pong.
pub struct EventPair {
    ping: OwnedFd,
    pong: OwnedFd,
    dead: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _child: Child,
}

impl EventPair {
    /// Creates two eventfds and starts the child that answers through them.
    pub fn start() -> EventPair {
        use rustix::event::{eventfd, EventfdFlags};
        let ping = eventfd(0, EventfdFlags::empty()).expect("eventfd");
        let pong = eventfd(0, EventfdFlags::empty()).expect("eventfd");
        let child = Child::spawn(&format!("eventfd:{},{}", ping.as_raw_fd(), pong.as_raw_fd()));
        // A blocking read of `pong` would hang if the child died: a thread waits
        // for its exit (pidfd) and then unblocks the read, which sees `dead`.
        let dead = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pid = rustix::process::Pid::from_raw(child.proc.id() as i32).expect("child pid");
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open");
        let (flag, unblock) = (dead.clone(), rustix::io::dup(&pong).expect("dup"));
        std::thread::spawn(move || {
            let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
            let _ = rustix::event::poll(&mut fds, None);
            flag.store(true, Ordering::SeqCst);
            let _ = rustix::io::write(&unblock, &1u64.to_ne_bytes());
        });
        EventPair { ping, pong, dead, _child: child }
    }

    /// One round trip: signal `ping`, block reading `pong`.
    #[inline]
    pub fn round_trip(&self) {
        rustix::io::write(&self.ping, &1u64.to_ne_bytes()).expect("eventfd write");
        let mut buf = [0u8; 8];
        rustix::io::read(&self.pong, &mut buf).expect("eventfd read");
        assert!(!self.dead.load(Ordering::Relaxed), "eventfd child died");
    }
}

fn eventfd_child(ping: OwnedFd, pong: OwnedFd) -> ChildResult {
    signal_ready()?;
    let mut buf = [0u8; 8];
    loop {
        rustix::io::read(&ping, &mut buf)?; // blocks while idle
        rustix::io::write(&pong, &1u64.to_ne_bytes())?;
    }
}
