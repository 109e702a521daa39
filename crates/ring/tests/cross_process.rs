//! Real processes sharing a `memfd_create` + `mmap(MAP_SHARED)` segment.
//!
//! The parent re-runs this test binary as the child (`--exact child_entry`
//! with a role in the environment); the child maps the inherited memfd at an
//! address of its own choosing and attaches to the rings and doorbells the
//! parent created in it. Every wait has a timeout and every child a watchdog.
#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)] // test bookkeeping uses core atomics directly
#![cfg_attr(miri, allow(dead_code, unused_imports))]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use numashm_ring::{Doorbell, EventFd, Mpmc, PopError, SharedBell, SharedMemory, Spsc};

const ROLE: &str = "NUMASHM_RING_TEST_ROLE";
const MEMFD: &str = "NUMASHM_RING_TEST_MEMFD";
const EVFD: &str = "NUMASHM_RING_TEST_EVFD";

const N: u64 = 100_000;
const SPSC_OFF: usize = 0; // capacity 1024: 384 + 16 × 1024 bytes
const SPSC_CAP: usize = 1024;
const MPMC_OFF: usize = 16768; // capacity 256: 384 + 16 × 256 bytes
const MPMC_CAP: usize = 256;
const RESULT_OFF: usize = 21248; // capacity 16: 384 + 16 × 16 bytes
const BELL_DATA: usize = 21888;
const BELL_SPACE: usize = 22016;
const BELL_RESULT: usize = 22144;
const SEG_LEN: usize = 24576;
const WAIT: Option<Duration> = Some(Duration::from_secs(60));
const WATCHDOG: Duration = Duration::from_secs(120);

/// A mapping of the test segment; unmapped on drop.
struct Segment {
    fd: OwnedFd,
    base: *mut u8,
}

impl Segment {
    /// A fresh memfd (inheritable: no CLOEXEC) of SEG_LEN bytes, mapped.
    fn create() -> Segment {
        use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
        let fd = memfd_create("numashm-ring-test", MemfdFlags::empty()).unwrap();
        ftruncate(&fd, SEG_LEN as u64).unwrap();
        Segment::map(fd)
    }

    fn map(fd: OwnedFd) -> Segment {
        use rustix::mm::{mmap, MapFlags, ProtFlags};
        // SAFETY: 1. a fresh mapping chosen by the kernel aliases nothing of
        // ours; 2. fd is a memfd of SEG_LEN bytes.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                SEG_LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .unwrap();
        Segment { fd, base: base.cast() }
    }

    fn at(&self, off: usize) -> *mut u8 {
        self.base.wrapping_add(off)
    }

    // The views below are used only while `self` is alive (the tests keep
    // the segment until the end), and the segment is accessed only through
    // rings and doorbells: the contract of init_in/attach_in.
    fn init(&self) {
        // SAFETY: see above; the child is spawned after this returns.
        unsafe {
            Spsc::init_in(self.at(SPSC_OFF), MPMC_OFF - SPSC_OFF, SPSC_CAP).unwrap();
            Mpmc::init_in(self.at(MPMC_OFF), RESULT_OFF - MPMC_OFF, MPMC_CAP).unwrap();
            Spsc::init_in(self.at(RESULT_OFF), BELL_DATA - RESULT_OFF, 16).unwrap();
            for off in [BELL_DATA, BELL_SPACE, BELL_RESULT] {
                Doorbell::init_in(self.at(off), 128).unwrap();
            }
        }
    }
    fn spsc(&self) -> Spsc<SharedMemory> {
        // SAFETY: see above.
        unsafe { Spsc::attach_in(self.at(SPSC_OFF), MPMC_OFF - SPSC_OFF).unwrap() }
    }
    fn mpmc(&self) -> Mpmc<SharedMemory> {
        // SAFETY: see above.
        unsafe { Mpmc::attach_in(self.at(MPMC_OFF), RESULT_OFF - MPMC_OFF).unwrap() }
    }
    fn results(&self) -> Spsc<SharedMemory> {
        // SAFETY: see above.
        unsafe { Spsc::attach_in(self.at(RESULT_OFF), BELL_DATA - RESULT_OFF).unwrap() }
    }
    fn bell(&self, off: usize) -> Doorbell<SharedBell> {
        // SAFETY: see above.
        unsafe { Doorbell::attach_in(self.at(off), 128).unwrap() }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length; the
        // ring views made from it are dropped (they live in the test body).
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), SEG_LEN) };
    }
}

fn inheritable(fd: BorrowedFd<'_>) {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).unwrap();
}

fn spawn_child(role: &str, seg: &Segment, ev: Option<&EventFd>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::null())
        .env(ROLE, role)
        .env(MEMFD, seg.fd.as_raw_fd().to_string());
    if let Some(ev) = ev {
        inheritable(ev.as_fd());
        cmd.env(EVFD, ev.as_fd().as_raw_fd().to_string());
    }
    cmd.spawn().unwrap()
}

/// Waits for the child; kills it and fails if it outlives the watchdog.
fn join_child(mut child: Child) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "child failed: {status}");
            return;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            panic!("watchdog: child did not finish");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn checksum(acc: u64, v: u64) -> u64 {
    acc.rotate_left(5) ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The child side; a no-op unless run by `spawn_child`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let code = match run_child(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child {role}: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn env_fd(name: &str) -> OwnedFd {
    let raw: RawFd = std::env::var(name).unwrap().parse().unwrap();
    // SAFETY: the parent passed us this inherited fd, owned by nobody else here.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

fn run_child(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::map(env_fd(MEMFD));
    match role {
        "spsc_consumer" => {
            let mut rx = seg.spsc().consumer()?;
            let (data, space) = (seg.bell(BELL_DATA), seg.bell(BELL_SPACE));
            let mut sum = 0u64;
            for i in 1..=N {
                let v = data.wait_for(|| rx.pop().ok(), WAIT)?;
                if v != i {
                    return Err(format!("got {v}, expected {i}").into());
                }
                sum = checksum(sum, v);
                space.notify()?;
            }
            let mut results = seg.results().producer()?;
            results.push(sum).map_err(|e| format!("{e}"))?;
            seg.bell(BELL_RESULT).notify()?;
        }
        "mpmc_producer_0" | "mpmc_producer_1" => {
            let k: u64 = role.ends_with('1').into();
            let ring = seg.mpmc();
            let vals: Vec<u64> = (k * N / 2..(k + 1) * N / 2).collect();
            let mut done = 0;
            while done < vals.len() {
                let n = if done % 2 == 0 {
                    ring.push(vals[done]).map(|()| 1).or_else(|e| match e {
                        numashm_ring::PushError::Full(_) => Ok(0),
                        e => Err(e),
                    })?
                } else {
                    ring.push_slice(&vals[done..(done + 8).min(vals.len())])?
                };
                done += n;
                if n == 0 {
                    thread::yield_now();
                }
            }
        }
        "futex_waiter" => {
            let mut rx = seg.spsc().consumer()?;
            let v = seg.bell(BELL_DATA).wait_for(|| rx.pop().ok(), WAIT)?;
            if v != 4242 {
                return Err(format!("got {v}").into());
            }
        }
        "eventfd_waiter" => {
            let ev = EventFd::from(env_fd(EVFD));
            let mut rx = seg.spsc().consumer()?;
            let bell = seg.bell(BELL_DATA);
            let deadline = Instant::now() + WAIT.unwrap();
            let v = loop {
                let armed = bell.arm();
                match rx.pop() {
                    Ok(v) => break v,
                    Err(PopError::Empty) => {}
                    Err(e) => return Err(e.into()),
                }
                if Instant::now() > deadline {
                    return Err("eventfd never became readable".into());
                }
                ev.wait(Some(Duration::from_secs(1)))?;
                ev.drain()?;
                drop(armed);
            };
            if v != 4243 {
                return Err(format!("got {v}").into());
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore)] // memfd, mmap, processes
fn spsc_carries_100k_handles_to_another_process_with_checksum() {
    let seg = Segment::create();
    seg.init();
    let child = spawn_child("spsc_consumer", &seg, None);
    let mut tx = seg.spsc().producer().unwrap();
    let (data, space) = (seg.bell(BELL_DATA), seg.bell(BELL_SPACE));
    let mut sum = 0u64;
    for i in 1..=N {
        let mut v = i;
        space
            .wait_for(
                || match tx.push(v) {
                    Ok(()) => Some(()),
                    Err(e) => {
                        v = e.into_inner();
                        None
                    }
                },
                WAIT,
            )
            .unwrap();
        sum = checksum(sum, i);
        data.notify().unwrap();
    }
    let mut results = seg.results().consumer().unwrap();
    let theirs = seg.bell(BELL_RESULT).wait_for(|| results.pop().ok(), WAIT).unwrap();
    assert_eq!(theirs, sum);
    join_child(child);
}

#[test]
#[cfg_attr(miri, ignore)] // memfd, mmap, processes
fn mpmc_carries_100k_handles_from_two_processes_each_exactly_once() {
    let seg = Segment::create();
    seg.init();
    let children = [spawn_child("mpmc_producer_0", &seg, None), spawn_child("mpmc_producer_1", &seg, None)];
    let ring = seg.mpmc();
    let seen: Vec<std::sync::atomic::AtomicU8> = (0..N).map(|_| Default::default()).collect();
    let count = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    thread::scope(|s| {
        for c in 0..2 {
            let (ring, seen, count) = (ring.clone(), &seen, &count);
            s.spawn(move || {
                let mut out = [0u64; 4];
                #[allow(clippy::disallowed_types)]
                use std::sync::atomic::Ordering::Relaxed;
                while count.load(Relaxed) < N {
                    assert!(start.elapsed() < WATCHDOG, "watchdog: consumers stuck");
                    let k = if c == 0 {
                        match ring.pop() {
                            Ok(v) => {
                                out[0] = v;
                                1
                            }
                            Err(PopError::Empty) => 0,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        ring.pop_into(&mut out).unwrap()
                    };
                    for &v in &out[..k] {
                        assert!(v < N, "foreign handle {v}");
                        assert_eq!(seen[v as usize].fetch_add(1, Relaxed), 0, "{v} twice");
                    }
                    count.fetch_add(k as u64, Relaxed);
                    if k == 0 {
                        thread::yield_now();
                    }
                }
            });
        }
    });
    for c in children {
        join_child(c);
    }
    assert_eq!(count.into_inner(), N);
    assert!(seen.iter().all(|s| s.load(std::sync::atomic::Ordering::Relaxed) == 1));
    assert_eq!(ring.len().unwrap(), 0);
}

/// Waits (with a watchdog) until `f` holds.
fn eventually(mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WATCHDOG, "watchdog: condition never held");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
#[cfg_attr(miri, ignore)] // memfd, mmap, processes, futex
fn futex_doorbell_wakes_a_parked_process() {
    let seg = Segment::create();
    seg.init();
    let child = spawn_child("futex_waiter", &seg, None);
    let bell = seg.bell(BELL_DATA);
    eventually(|| bell.waiters().parked == 1);
    // Give the child time to get into FUTEX_WAIT (not asserted: either way
    // the wake must reach it).
    thread::sleep(Duration::from_millis(50));
    seg.spsc().producer().unwrap().push(4242).unwrap();
    assert_eq!(bell.notify().unwrap().parked, 1);
    join_child(child);
    assert_eq!(bell.waiters().parked, 0);
}

#[test]
#[cfg_attr(miri, ignore)] // memfd, mmap, processes, eventfd
fn eventfd_doorbell_wakes_a_process_polling_it() {
    let seg = Segment::create();
    seg.init();
    let ev = EventFd::new().unwrap();
    let child = spawn_child("eventfd_waiter", &seg, Some(&ev));
    let bell = seg.bell(BELL_DATA);
    eventually(|| bell.waiters().armed == 1);
    seg.spsc().producer().unwrap().push(4243).unwrap();
    assert_eq!(bell.notify_with(&ev).unwrap().armed, 1);
    join_child(child);
}
