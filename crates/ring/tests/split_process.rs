//! The split ring across real mappings: each block is a memfd that only its
//! owner maps writable; the peer maps it READ-ONLY (a write through that
//! mapping would kill the test with SIGSEGV). Checks that `FUTEX_WAIT`
//! works through a read-only mapping and is woken through a writable one,
//! then runs a producer process and a consumer process over the ring.
//!
//! The parent re-runs this test binary as the child (`--exact child_entry`
//! with a role in the environment). Every wait has a deadline and the child
//! a watchdog.
#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)] // test bookkeeping uses core atomics directly
#![cfg_attr(miri, allow(dead_code, unused_imports))]

use core::ptr::NonNull;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::thread;
use std::time::{Duration, Instant};

use numashm_ring::{
    init_consumer_block, split_producer_bytes, SharedSplit, SplitConsumer, SplitProducer,
    SplitPushError, SPLIT_CONSUMER_BYTES,
};

const ROLE: &str = "NUMASHM_SPLIT_TEST_ROLE";
const P_FD: &str = "NUMASHM_SPLIT_TEST_PFD";
const C_FD: &str = "NUMASHM_SPLIT_TEST_CFD";
const READY: &str = "NUMASHM_SPLIT_READY";
const N: u64 = 100_000;
const CAP: usize = 256;
const WAIT: Duration = Duration::from_secs(60);
const WATCHDOG: Duration = Duration::from_secs(120);

/// One mapping of a memfd; unmapped on drop.
struct Map {
    base: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: usize, writable: bool) -> Map {
        use rustix::mm::{mmap, MapFlags, ProtFlags};
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh mapping chosen by the kernel aliases nothing of ours.
        let base =
            unsafe { mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }.unwrap();
        Map {
            base: base.cast(),
            len,
        }
    }

    fn ptr(&self) -> NonNull<u8> {
        NonNull::new(self.base).unwrap()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: mapped by `new` with this length; the ring ends over it are
        // dropped before it (they live shorter in every test body).
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len) };
    }
}

/// A fresh memfd of `len` bytes; inheritable (no CLOEXEC) for the child.
fn memfd(len: usize) -> OwnedFd {
    use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
    let fd = memfd_create("numashm-split-test", MemfdFlags::empty()).unwrap();
    ftruncate(&fd, len as u64).unwrap();
    fd
}

fn p_len() -> usize {
    split_producer_bytes(CAP).next_multiple_of(4096)
}

fn c_len() -> usize {
    SPLIT_CONSUMER_BYTES.next_multiple_of(4096)
}

#[test]
#[cfg_attr(miri, ignore)] // mmap and futex
fn futex_wait_through_a_read_only_mapping_is_woken_through_a_writable_one() {
    use rustix::thread::futex;
    let fd = memfd(4096);
    let rw = Map::new(&fd, 4096, true);
    let ro = Map::new(&fd, 4096, false);
    assert_ne!(rw.base, ro.base);
    let ro_addr = ro.base as usize;
    let waiter = thread::spawn(move || {
        // SAFETY: `ro` stays mapped until the thread is joined below; the word
        // is only accessed atomically (loads here, the kernel's compare).
        let word = unsafe { &*(ro_addr as *const AtomicU32) };
        let timeout = rustix::time::Timespec {
            tv_sec: 60,
            tv_nsec: 0,
        };
        futex::wait(word, futex::Flags::empty(), 0, Some(&timeout))
    });
    // SAFETY: `rw` outlives this reference; the word is accessed atomically.
    let word = unsafe { &*rw.base.cast::<AtomicU32>() };
    let start = Instant::now();
    // Wake without changing the value: only a waiter queued on the same
    // futex key (memfd inode + offset) counts, so `woken == 1` proves the
    // read-only mapping's wait and the writable mapping's wake meet.
    loop {
        if futex::wake(word, futex::Flags::empty(), 1).unwrap() == 1 {
            break;
        }
        if waiter.is_finished() {
            break; // the wait failed (e.g. EFAULT): reported by the join below
        }
        assert!(start.elapsed() < WAIT, "watchdog: the waiter never queued");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        waiter.join().unwrap(),
        Ok(()),
        "FUTEX_WAIT through a read-only mapping"
    );
    drop(ro);
}

fn spawn_child(role: &str, p: &OwnedFd, c: &OwnedFd) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .env(ROLE, role)
        .env(P_FD, p.as_raw_fd().to_string())
        .env(C_FD, c.as_raw_fd().to_string())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until it says it is ready (or ends); returns
/// the pipe, to keep open while the child runs.
fn await_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if line.contains(READY) {
            return out;
        }
        line.clear();
    }
    panic!("the child ended before it was ready");
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

fn cell(i: u64) -> [u64; 3] {
    [i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15), !i]
}

#[test]
#[cfg_attr(miri, ignore)] // processes, mmap and futex
fn producer_and_consumer_processes_pass_100k_cells_over_read_only_peer_mappings() {
    let (pfd, cfd) = (memfd(p_len()), memfd(c_len()));
    for fd in [&pfd, &cfd] {
        rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    }
    // The consumer (this process) owns the consumer block: writable here.
    let cmap = Map::new(&cfd, c_len(), true);
    // SAFETY: nobody else maps it yet; afterwards only our consumer end
    // writes it (the child maps it read-only).
    unsafe { init_consumer_block(cmap.ptr(), c_len()) }.unwrap();
    let mut child = spawn_child("producer", &pfd, &cfd);
    let _stdout = await_ready(&mut child);
    // The producer block: read-only here.
    let pmap = Map::new(&pfd, p_len(), false);
    // SAFETY: both maps outlive `rx` (dropped at the end of this scope,
    // before them); the producer block is written only by the child's
    // producer end, the consumer block only by `rx`; all accesses atomic.
    let mut rx: SplitConsumer<SharedSplit> =
        unsafe { SplitConsumer::attach_shared(pmap.ptr(), p_len(), cmap.ptr(), c_len(), 0) }
            .unwrap();
    let deadline = Instant::now() + WATCHDOG;
    let mut next = 0;
    while next < N {
        match rx.wait(Some(deadline)).unwrap() {
            Some(c) => {
                assert_eq!(c, cell(next), "cell {next}");
                next += 1;
                rx.notify_space().unwrap();
            }
            None => assert!(
                child.try_wait().unwrap().is_none(),
                "producer died at {next}"
            ),
        }
    }
    assert_eq!(rx.pop(), Ok(None));
    join_child(child);
}

/// The child side; a no-op unless run by `spawn_child`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
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
    if role != "producer" {
        return Err(format!("unknown role {role}").into());
    }
    let pmap = Map::new(&env_fd(P_FD), p_len(), true);
    let cmap = Map::new(&env_fd(C_FD), c_len(), false);
    // SAFETY: both maps outlive `tx` (dropped at the end of this function,
    // before them); the consumer attaches only after READY below; we never
    // write the consumer block (mapped read-only: a write would fault).
    let mut tx: SplitProducer<SharedSplit> =
        unsafe { SplitProducer::init_shared(pmap.ptr(), p_len(), CAP, Some(cmap.ptr()), c_len())? };
    println!("{READY}");
    let deadline = Instant::now() + WAIT;
    for i in 0..N {
        loop {
            match tx.push_notify(cell(i)) {
                Ok(_) => break,
                Err(SplitPushError::Full) => {
                    tx.wait_for_space(Some(deadline))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
