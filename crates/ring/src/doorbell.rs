//! Doorbells: wait for a condition without burning a core, wake without a
//! syscall unless somebody sleeps.
//!
//! Protocol (see `docs/ring.md` for the proof sketch):
//!
//! - A waiter polls its condition, spinning with `Backoff::spin` (never
//!   yielding: a yielded waiter is runnable, not parked, so nobody wakes it and
//!   it can lose a time slice). If still unmet it *registers* (RMW +1 on `waiters`), reads
//!   `seq`, polls once more, and parks on the futex word `seq` expecting the
//!   value it read; after waking it unregisters and starts over.
//! - A notifier first makes the condition true (e.g. pushes and publishes the
//!   tail), then does an RMW +0 on `waiters`. Only if it sees a parked waiter
//!   does it bump `seq` and `FUTEX_WAKE` everyone; only if it sees an armed
//!   (eventfd) waiter does it write its eventfd. The busy path is one RMW on
//!   a line the notifier keeps in its cache.
//!
//! `SYNC bell-register`: the waiter's and the notifier's RMWs on `waiters`
//! are both AcqRel, so they are totally ordered in `waiters`' modification
//! order and the later one acquires the earlier one's release. If the
//! notifier's RMW comes later it sees the waiter and wakes it; if it comes
//! earlier, the waiter's poll after its RMW sees the condition the notifier
//! made true. Either way no wakeup is lost. `SYNC bell-seq`: the waiter's
//! Acquire load of `seq` pairs with the notifier's Release bump, and the
//! futex compares `seq` atomically with going to sleep (kernel bucket lock),
//! so a bump between the load and the park makes `FUTEX_WAIT` return at once.
//!
//! Shared futexes (no `FUTEX_PRIVATE_FLAG`) are used: the word is in memory
//! several processes map. Deadlines are absolute `CLOCK_MONOTONIC`
//! (`FUTEX_WAIT_BITSET`), so spurious wakeups do not stretch a timeout.

use core::time::Duration;

use crate::error::{SysError, WaitError};
use crate::eventfd::EventFd;
use crate::mem::{BellBlock, BellMemory, HeapBell};
use crate::loom::hint::Backoff;
use crate::loom::sync::atomic::Ordering;

/// Exponential spin steps before a waiter parks (crossbeam's `Backoff::spin`
/// doubles up to 2^6 hints per step).
const SPIN_STEPS: u32 = 10;

/// One parked (futex) waiter in the `waiters` word.
const PARKED_ONE: u32 = 1;
/// Mask of the parked-waiter count.
const PARKED_MASK: u32 = 0xffff;
/// One armed (eventfd) waiter in the `waiters` word.
const ARMED_ONE: u32 = 1 << 16;

/// A wait/notify word pair in heap or shared memory.
///
/// # Examples
///
/// ```
/// use numashm_ring::{Doorbell, Spsc};
/// use std::thread;
/// let (mut tx, mut rx) = Spsc::new(8)?.split()?;
/// let bell = Doorbell::new();
/// let b2 = bell.clone();
/// let t = thread::spawn(move || b2.wait_for(|| rx.pop().ok(), None));
/// tx.push(11).unwrap();
/// bell.notify()?;
/// assert_eq!(t.join().unwrap()?, 11);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Doorbell<B: BellMemory = HeapBell> {
    mem: B,
}

/// What [`Doorbell::notify`] found (and woke).
///
/// # Examples
///
/// ```
/// let n = numashm_ring::Doorbell::new().notify()?;
/// assert_eq!((n.parked, n.armed), (0, 0));
/// # Ok::<(), numashm_ring::SysError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notified {
    /// Parked (futex) waiters registered; if non-zero a `FUTEX_WAKE` was made.
    pub parked: u32,
    /// Armed (eventfd) waiters registered.
    pub armed: u32,
}

impl Default for Doorbell<HeapBell> {
    fn default() -> Self {
        Self::new()
    }
}

impl Doorbell<HeapBell> {
    /// A doorbell on the heap.
    ///
    /// # Examples
    ///
    /// ```
    /// let bell = numashm_ring::Doorbell::new();
    /// bell.notify()?;
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn new() -> Self {
        Doorbell { mem: HeapBell::new() }
    }
}


impl<B: BellMemory> Doorbell<B> {
    #[cfg(not(numashm_loom))]
    pub(crate) fn from_mem(mem: B) -> Self {
        Doorbell { mem }
    }

    fn block(&self) -> &BellBlock {
        self.mem.block()
    }

    /// Wakes whoever waits: `FUTEX_WAKE` only if a waiter is parked; nothing
    /// but one atomic RMW otherwise. Call it after making the condition true.
    ///
    /// # Errors
    ///
    /// [`SysError`] if `futex(FUTEX_WAKE)` fails (e.g. `EFAULT`).
    ///
    /// # Examples
    ///
    /// ```
    /// let bell = numashm_ring::Doorbell::new();
    /// assert_eq!(bell.notify()?.parked, 0); // nobody waits: no syscall
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    #[inline]
    pub fn notify(&self) -> Result<Notified, SysError> {
        let b = self.block();
        // SYNC bell-register: AcqRel RMW, ordered against every waiter's
        // registering RMW in the word's modification order.
        let w = b.waiters.fetch_add(0, Ordering::AcqRel);
        if w == 0 {
            return Ok(Notified::default());
        }
        let n = Notified { parked: w & PARKED_MASK, armed: w >> 16 };
        if n.parked != 0 {
            // SYNC bell-seq: Release, pairs with the waiter's Acquire load of
            // seq (a waiter that reads the bump sees the condition).
            b.seq.fetch_add(1, Ordering::Release);
            self.wake_all()?;
        }
        Ok(n)
    }

    /// Registered waiters now, without waking anybody; a snapshot (for
    /// operators and tests).
    ///
    /// # Examples
    ///
    /// ```
    /// let bell = numashm_ring::Doorbell::new();
    /// let _armed = bell.arm();
    /// assert_eq!(bell.waiters().armed, 1);
    /// ```
    pub fn waiters(&self) -> Notified {
        // Acquire: pairs with the registering RMWs, so a waiter seen here has
        // registered (it may still be polling before it parks).
        let w = self.block().waiters.load(Ordering::Acquire);
        Notified { parked: w & PARKED_MASK, armed: w >> 16 }
    }

    /// [`notify`](Self::notify), and if an armed waiter is registered, also
    /// signal `event` (the eventfd the waiter polls).
    ///
    /// # Errors
    ///
    /// [`SysError`] if `futex(FUTEX_WAKE)` or the eventfd write fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{Doorbell, EventFd};
    /// # if cfg!(miri) { return Ok(()); }
    /// let bell = Doorbell::new();
    /// let ev = EventFd::new()?;
    /// let armed = bell.arm();
    /// assert_eq!(bell.notify_with(&ev)?.armed, 1);
    /// assert_eq!(ev.drain()?, 1);
    /// drop(armed);
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn notify_with(&self, event: &EventFd) -> Result<Notified, SysError> {
        let n = self.notify()?;
        if n.armed != 0 {
            event.signal()?;
        }
        Ok(n)
    }

    /// Registers an armed waiter (one that waits on an eventfd, e.g. in
    /// epoll or tokio) until the returned guard drops. Register *before*
    /// polling the condition, then wait for the eventfd; notifiers that use
    /// [`notify_with`](Self::notify_with) signal it while the guard lives.
    ///
    /// With tokio (not a dependency of this crate):
    ///
    /// ```text
    /// let fd = tokio::io::unix::AsyncFd::new(event)?;   // event: EventFd
    /// loop {
    ///     let armed = bell.arm();
    ///     match rx.pop() {
    ///         Ok(h) => break h,
    ///         Err(PopError::Empty) => {}
    ///         Err(e) => return Err(e.into()),
    ///     }
    ///     let mut ready = fd.readable().await?;
    ///     fd.get_ref().drain()?;
    ///     ready.clear_ready();
    ///     drop(armed);
    /// }
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let bell = numashm_ring::Doorbell::new();
    /// let armed = bell.arm();
    /// assert_eq!(bell.notify()?.armed, 1);
    /// drop(armed);
    /// assert_eq!(bell.notify()?.armed, 0);
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn arm(&self) -> Armed<'_, B> {
        // SYNC bell-register (armed waiter).
        self.block().waiters.fetch_add(ARMED_ONE, Ordering::AcqRel);
        Armed { bell: self }
    }

    /// Waits until `poll` returns `Some`, spinning a few µs, then parking on
    /// the futex; returns that value.
    ///
    /// `poll` must observe state whose change is followed by
    /// [`notify`](Self::notify) (for example, pop from the ring whose
    /// producer notifies after pushing).
    ///
    /// # Errors
    ///
    /// [`WaitError::TimedOut`] once `timeout` (measured on `CLOCK_MONOTONIC`)
    /// has passed and `poll` still says `None`; [`WaitError::Sys`] if the
    /// futex or clock call fails unexpectedly.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let bell = numashm_ring::Doorbell::new();
    /// assert_eq!(bell.wait_for(|| Some(5), Some(Duration::ZERO)), Ok(5));
    /// ```
    pub fn wait_for<T>(
        &self,
        mut poll: impl FnMut() -> Option<T>,
        timeout: Option<Duration>,
    ) -> Result<T, WaitError> {
        if let Some(v) = poll() {
            return Ok(v);
        }
        // Spin, never yield, then park. A waiter that calls sched_yield stays
        // runnable instead of parked, so a notifier sees nobody parked and makes
        // no wake-up call, and on a busy machine the waiter then loses a whole
        // time slice (measured: parked round trips of 8-9 ms instead of ~0.1 ms
        // with a busy process on each CPU). Backoff::spin tops out at 2^6 spin
        // hints a step: a few µs in all.
        let backoff = Backoff::new();
        for _ in 0..SPIN_STEPS {
            backoff.spin();
            if let Some(v) = poll() {
                return Ok(v);
            }
        }
        let deadline = match timeout {
            Some(t) => Some(deadline_after(t)?),
            None => None,
        };
        let b = self.block();
        loop {
            // SYNC bell-register: AcqRel RMW; see the module docs.
            b.waiters.fetch_add(PARKED_ONE, Ordering::AcqRel);
            // SYNC bell-seq: Acquire pairs with the notifier's Release bump.
            let seq = b.seq.load(Ordering::Acquire);
            if let Some(v) = poll() {
                // Relaxed: unregistering publishes nothing.
                b.waiters.fetch_sub(PARKED_ONE, Ordering::Relaxed);
                return Ok(v);
            }
            let parked = self.park(seq, deadline.as_ref());
            // Relaxed: as above.
            b.waiters.fetch_sub(PARKED_ONE, Ordering::Relaxed);
            match parked {
                Ok(()) => {}
                Err(WaitError::TimedOut) => return poll().ok_or(WaitError::TimedOut),
                Err(e) => return Err(e),
            }
        }
    }

    /// Clears the waiter counts, for a recoverer after a waiter died while
    /// registered (its count would otherwise make every notify a syscall).
    /// Correct only when no live waiter is registered.
    ///
    /// # Examples
    ///
    /// ```
    /// let bell = numashm_ring::Doorbell::new();
    /// std::mem::forget(bell.arm()); // a waiter that "died"
    /// bell.reset();
    /// assert_eq!(bell.notify()?.armed, 0);
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn reset(&self) {
        // Release: whoever acquires the word next sees the reset.
        self.block().waiters.store(0, Ordering::Release);
    }

    #[cfg(not(numashm_loom))]
    fn park(&self, expected: u32, deadline: Option<&rustix::time::Timespec>) -> Result<(), WaitError> {
        use rustix::thread::futex;
        let r = futex::wait_bitset(
            &self.block().seq,
            futex::Flags::empty(),
            expected,
            deadline,
            core::num::NonZeroU32::MAX,
        );
        match r {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(rustix::io::Errno::TIMEDOUT) => Err(WaitError::TimedOut),
            Err(errno) => Err(WaitError::Sys { op: "futex(FUTEX_WAIT_BITSET)", errno }),
        }
    }

    #[cfg(not(numashm_loom))]
    fn wake_all(&self) -> Result<(), SysError> {
        use rustix::thread::futex;
        futex::wake(&self.block().seq, futex::Flags::empty(), i32::MAX as u32)
            .map(drop)
            .map_err(|errno| SysError { op: "futex(FUTEX_WAKE)", errno })
    }

    /// Loom model of `FUTEX_WAIT`: compare and sleep under the lock the waker
    /// takes, as the kernel does under its hash-bucket lock. A timeout may
    /// fire at any point, modelled as returning at once.
    #[cfg(numashm_loom)]
    fn park(&self, expected: u32, deadline: Option<&()>) -> Result<(), WaitError> {
        if deadline.is_some() {
            return Err(WaitError::TimedOut);
        }
        let p = self.mem.parker();
        let guard = p.mutex.lock().unwrap_or_else(|e| e.into_inner());
        // Acquire: as the kernel's read of the futex word (SYNC bell-seq).
        if self.block().seq.load(Ordering::Acquire) == expected {
            drop(p.condvar.wait(guard));
        }
        Ok(())
    }

    /// Loom model of `FUTEX_WAKE` (wake all).
    #[cfg(numashm_loom)]
    fn wake_all(&self) -> Result<(), SysError> {
        let p = self.mem.parker();
        let _guard = p.mutex.lock().unwrap_or_else(|e| e.into_inner());
        p.condvar.notify_all();
        Ok(())
    }
}

/// An armed-waiter registration; unregisters on drop.
///
/// # Examples
///
/// ```
/// let bell = numashm_ring::Doorbell::new();
/// let armed: numashm_ring::Armed<'_, _> = bell.arm();
/// drop(armed);
/// ```
#[derive(Debug)]
pub struct Armed<'a, B: BellMemory> {
    bell: &'a Doorbell<B>,
}

impl<B: BellMemory> Drop for Armed<'_, B> {
    fn drop(&mut self) {
        // Relaxed: unregistering publishes nothing.
        self.bell.block().waiters.fetch_sub(ARMED_ONE, Ordering::Relaxed);
    }
}

/// Absolute `CLOCK_MONOTONIC` deadline `t` from now.
#[cfg(not(numashm_loom))]
fn deadline_after(t: Duration) -> Result<rustix::time::Timespec, WaitError> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let mut sec = now.tv_sec.saturating_add(i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
    let mut nsec = now.tv_nsec + i64::from(t.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Ok(rustix::time::Timespec { tv_sec: sec, tv_nsec: nsec })
}

#[cfg(numashm_loom)]
fn deadline_after(_t: Duration) -> Result<(), WaitError> {
    Ok(())
}

/// Loom's stand-in for a futex word's kernel wait queue.
#[cfg(numashm_loom)]
#[doc(hidden)]
#[derive(Debug)]
pub struct LoomFutex {
    mutex: crate::loom::sync::Mutex<()>,
    condvar: crate::loom::sync::Condvar,
}

#[cfg(numashm_loom)]
impl LoomFutex {
    pub(crate) fn new() -> Self {
        LoomFutex { mutex: crate::loom::sync::Mutex::new(()), condvar: crate::loom::sync::Condvar::new() }
    }
}
