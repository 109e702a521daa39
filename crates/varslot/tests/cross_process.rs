//! Two processes allocate, write, verify and free many slots of mixed sizes through one
//! shared memfd mapping while the owner grows the segment; at the end no slot is lost or
//! was ever held twice. The child is this test binary run again with an env variable.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use numashm_varslot::sync::{AtomicUsize, Ordering};
use numashm_varslot::{AllocError, Config, Handle, MemoryError, SegmentMemory, SharedAllocator};
use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::mm::{MapFlags, ProtFlags};

const MAX_LEN: usize = 64 << 20;
const PAGE: usize = 4096;
const ENV: &str = "NUMASHM_VARSLOT_CHILD_FD";
const BARRIER_ENV: &str = "NUMASHM_VARSLOT_BARRIER";

/// A start barrier word living in a slot both processes resolve, so the two stress
/// loops really overlap. Waits (with a watchdog) until the word is at least `until`.
fn barrier(a: &SharedAllocator<ShmMemory>, h: Handle) -> &numashm_varslot::sync::AtomicU64 {
    let s = a.resolve(h).unwrap();
    assert!(s.len() >= 8 && s.as_ptr() as usize % 8 == 0);
    // SAFETY: 1. the slot is mapped, 8-aligned and at least 8 bytes (checked); 2. it
    // stays allocated until both processes are done with it (the parent frees it last);
    // 3. both processes access these 8 bytes only atomically.
    unsafe { &*s.as_ptr().cast::<numashm_varslot::sync::AtomicU64>() }
}

/// Aborts the process if it is not dropped within `secs` (a hang must not stall CI).
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    fn new(secs: u64) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
                eprintln!("watchdog: cross-process test hung for {secs} s; aborting");
                std::process::abort();
            }
        });
        Self(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread with `Disconnected`.
        self.0.take();
    }
}

fn wait_for(word: &numashm_varslot::sync::AtomicU64, until: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    // Acquire: pairs with the other side's Release store (SYNC test-barrier).
    while word.load(Ordering::Acquire) < until {
        assert!(Instant::now() < deadline, "watchdog: the other process never arrived");
        std::thread::yield_now();
    }
}

/// Test-only shared memory: a reserved virtual range with a memfd mapped over its prefix.
struct ShmMemory {
    fd: OwnedFd,
    base: NonNull<u8>,
    mapped: AtomicUsize,
    lock: Mutex<()>,
}

// SAFETY: the mapping is process-wide; `mapped` is atomic and remapping is serialised by
// `lock`; the bytes are accessed per the allocator's protocol.
unsafe impl Send for ShmMemory {}
// SAFETY: as above.
unsafe impl Sync for ShmMemory {}

fn os(op: &'static str) -> impl Fn(rustix::io::Errno) -> MemoryError {
    move |e| MemoryError::Os { op, errno: e.raw_os_error() }
}

impl ShmMemory {
    fn new(fd: OwnedFd) -> Self {
        // SAFETY: a fresh PROT_NONE reservation at an address the kernel picks.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                MAX_LEN,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .expect("reserve");
        Self { fd, base: NonNull::new(p.cast()).unwrap(), mapped: AtomicUsize::new(0), lock: Mutex::new(()) }
    }

    /// Map `[mapped, upto)` of the file over the reservation.
    fn map_upto(&self, upto: usize) -> Result<bool, MemoryError> {
        let _g = self.lock.lock().unwrap();
        let have = self.mapped.load(Ordering::Acquire);
        if upto <= have {
            return Ok(false);
        }
        assert!(upto <= MAX_LEN);
        // SAFETY: 1. `base + have .. base + upto` lies inside our reservation; 2. MAP_FIXED
        // replaces only PROT_NONE pages nobody references.
        unsafe {
            rustix::mm::mmap(
                self.base.as_ptr().add(have).cast::<c_void>(),
                upto - have,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                self.fd.as_fd(),
                have as u64,
            )
        }
        .map_err(os("mmap"))?;
        self.mapped.store(upto, Ordering::Release);
        Ok(true)
    }
}

impl Drop for ShmMemory {
    fn drop(&mut self) {
        // SAFETY: our reservation; nothing borrows it any more (the allocator is gone).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), MAX_LEN) };
    }
}

// SAFETY: 1. `base` is the fixed, page-aligned reservation; 2. `mapped` only grows (under
// `lock`) up to MAX_LEN; 3. nothing is unmapped before drop.
unsafe impl SegmentMemory for ShmMemory {
    fn base(&self) -> NonNull<u8> {
        self.base
    }
    fn mapped_len(&self) -> usize {
        self.mapped.load(Ordering::Acquire)
    }
    fn max_len(&self) -> usize {
        MAX_LEN
    }
    fn grow_to(&self, new_len: usize) -> Result<(), MemoryError> {
        let len = new_len.div_ceil(PAGE) * PAGE;
        if len > MAX_LEN {
            return Err(MemoryError::OutOfRange { end: len, max_len: MAX_LEN });
        }
        let size = rustix::fs::fstat(&self.fd).map_err(os("fstat"))?.st_size as usize;
        if size < len {
            rustix::fs::ftruncate(&self.fd, len as u64).map_err(os("ftruncate"))?;
        }
        self.map_upto(len).map(|_| ())
    }
    fn refresh(&self) -> Result<bool, MemoryError> {
        let size = rustix::fs::fstat(&self.fd).map_err(os("fstat"))?.st_size as usize;
        self.map_upto(size.min(MAX_LEN))
    }
    fn place(&self, _: usize, _: usize, _: Option<u32>) -> Result<(), MemoryError> {
        Ok(())
    }
    unsafe fn release(&self, offset: usize, len: usize) -> Result<(), MemoryError> {
        rustix::fs::fallocate(&self.fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset as u64, len as u64)
            .map_err(os("fallocate"))
    }
}

fn config() -> Config {
    Config::new().class(64, 256).class(1024, 64).class(16 << 10, 8).max_extents(6)
}

const LENS: [usize; 5] = [8, 64, 700, 1024, 9000];

fn pattern(peer: u32, n: u64, i: usize) -> u8 {
    (u64::from(peer) * 131 + n * 31 + i as u64 * 7) as u8
}

/// Alloc / write / verify / free `rounds` slots with up to `window` live at once.
/// Returns (slots allocated, checksum of verified bytes, mismatches).
fn stress(a: &SharedAllocator<ShmMemory>, peer: u32, rounds: u64, grow: bool) -> (u64, u64, u64) {
    let window = 24;
    let mut live: Vec<(Handle, u64)> = Vec::with_capacity(window);
    let (mut allocated, mut sum, mut bad) = (0u64, 0u64, 0u64);
    let mut n = 0u64;
    let verify_free = |h: Handle, k: u64, sum: &mut u64, bad: &mut u64| {
        let s = a.resolve(h).expect("own handle resolves");
        // SAFETY: the slot is ours (Allocated by us, not freed); nobody else may write it.
        let bytes = unsafe { s.as_slice() };
        for (i, &b) in bytes.iter().enumerate().step_by(61) {
            if b != pattern(peer, k, i) {
                *bad += 1;
            }
            *sum = sum.wrapping_add(u64::from(b));
        }
        a.free(h).expect("own handle frees");
    };
    while n < rounds {
        if grow {
            let req = a.take_grow_requests();
            for class in 0..a.class_count() {
                if req & 1 << class != 0 {
                    let _ = a.grow(class, None);
                }
            }
        }
        if live.len() == window || (n % 3 == 0 && !live.is_empty()) {
            let (h, k) = live.swap_remove((n as usize * 7) % live.len());
            verify_free(h, k, &mut sum, &mut bad);
        }
        let len = LENS[(n % LENS.len() as u64) as usize];
        match a.alloc(len, peer) {
            Ok(h) => {
                let mut s = a.resolve(h).expect("fresh handle resolves");
                // SAFETY: freshly allocated to us; nobody else may touch it.
                let bytes = unsafe { s.as_mut_slice() };
                for (i, b) in bytes.iter_mut().enumerate().step_by(61) {
                    *b = pattern(peer, n, i);
                }
                live.push((h, n));
                allocated += 1;
                n += 1;
            }
            Err(AllocError::Exhausted { .. }) => {
                if let Some((h, k)) = live.pop() {
                    verify_free(h, k, &mut sum, &mut bad);
                }
                std::thread::yield_now();
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }
    for (h, k) in live.drain(..) {
        verify_free(h, k, &mut sum, &mut bad);
    }
    (allocated, sum, bad)
}

fn rounds() -> u64 {
    if cfg!(debug_assertions) {
        300_000
    } else {
        2_000_000
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn two_processes_share_slots_without_loss_or_duplication() {
    let _watchdog = Watchdog::new(900);
    let fd = rustix::fs::memfd_create("varslot-test", MemfdFlags::CLOEXEC).unwrap();
    let mem = ShmMemory::new(fd);
    let a = SharedAllocator::create(&config(), mem).unwrap();
    let bar = a.alloc(8, 1).unwrap();
    let path = format!("/proc/{}/fd/{}", std::process::id(), {
        use std::os::fd::AsRawFd;
        a.memory().fd.as_raw_fd()
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cross_process_child", "--nocapture", "--test-threads=1"])
        .env(ENV, &path)
        .env(BARRIER_ENV, bar.to_u64().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let word = barrier(&a, bar);
    wait_for(word, 1);
    // Release: SYNC test-barrier.
    word.store(2, Ordering::Release);
    let (ours, _, bad) = stress(&a, 1, rounds(), true);
    assert_eq!(bad, 0, "a slot of ours was overwritten: handed out twice");
    // Watchdog: never wait forever for the child.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child hung");
        }
        // Keep serving growth requests while the child runs.
        let req = a.take_grow_requests();
        for class in 0..a.class_count() {
            if req & 1 << class != 0 {
                let _ = a.grow(class, None);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = std::io::read_to_string(child.stdout.take().unwrap()).unwrap();
    assert!(status.success(), "child failed: {out}");
    let report = out.split("CHILD ").nth(1).unwrap_or_else(|| panic!("no child report in: {out}"));
    let theirs: u64 = report.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(ours, rounds());
    assert_eq!(theirs, rounds());
    a.free(bar).unwrap();
    // No slot lost: every slot of every published extent can be allocated, once.
    for class in 0..a.class_count() {
        let total = a.extent_count(class) * a.slots_per_extent(class).unwrap();
        let size = a.slot_size(class).unwrap();
        let mut seen = std::collections::HashSet::new();
        while let Ok(h) = a.alloc(size, 9) {
            assert!(seen.insert((h.extent(), h.slot())), "slot handed out twice");
        }
        assert_eq!(seen.len(), total, "class {class} lost slots");
    }
    assert!((0..a.class_count()).any(|c| a.extent_count(c) > 1), "the segment never grew");
}

/// The child half; a no-op unless run by the test above.
#[test]
#[cfg_attr(miri, ignore)]
fn cross_process_child() {
    let Ok(path) = std::env::var(ENV) else { return };
    let _watchdog = Watchdog::new(600);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let a = SharedAllocator::attach(ShmMemory::new(file.into())).unwrap();
    let bar = Handle::from_u64(std::env::var(BARRIER_ENV).unwrap().parse().unwrap()).unwrap();
    let word = barrier(&a, bar);
    // Release: SYNC test-barrier.
    word.store(1, Ordering::Release);
    wait_for(word, 2);
    let (n, sum, bad) = stress(&a, 2, rounds(), false);
    assert_eq!(bad, 0, "a slot of ours was overwritten: handed out twice");
    println!("CHILD {n} {sum}");
}
