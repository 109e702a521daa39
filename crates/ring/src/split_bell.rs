//! The split ring's doorbell: park and wake with no shared writable word.
//!
//! Each direction uses one word the waiter writes in its own block (its
//! "parked" word) and one futex word the notifier writes in *its* own block
//! (a sequence it bumps before `FUTEX_WAKE`); the waiter `FUTEX_WAIT`s on the
//! notifier's word through its read-only mapping.
//!
//! Data direction (C waits, P notifies); the space direction is the same
//! with the roles swapped (P's `space_waiting`, C's `space_seq`, and the
//! condition "head moved" instead of "stamp written"):
//!
//! ```text
//! C (waiter)                           P (notifier)
//! s = data_seq            (Acquire)    store payload, stamp (Release)
//! parked = word(s)                     fence(SeqCst)                  [X]
//! fence(SeqCst)                 [Y]    p = parked
//! re-check the stamp                   if p == word(my data_seq):
//! FUTEX_WAIT(data_seq, s, slice)           data_seq += 1  (Release)
//! parked = 0                               FUTEX_WAKE(data_seq)
//! ```
//!
//! `SYNC split-data-dekker` / `split-space-dekker` (why no wake-up is lost):
//! the two SeqCst fences are totally ordered. If X precedes Y, C's stamp
//! re-check (after Y) sees P's stamp (before X) and C does not sleep. If Y
//! precedes X, P's load of `parked` (after X) sees `word(s)` (stored before
//! Y) or a later value; a later value is 0 or another word, stored only
//! after this wait ended, so nobody sleeps on `s`. Seeing `word(s)`:
//! - if P's `data_seq` is still `s`, P bumps it and wakes: the kernel
//!   compares `data_seq` with `s` under its bucket lock, so C either finds
//!   `s + 1` and does not sleep, or sleeps first and is woken;
//! - otherwise P bumped `data_seq` away from `s` earlier, and every bump is
//!   followed by a `FUTEX_WAKE`: C either sleeps before that wake (and is
//!   woken) or its `FUTEX_WAIT` compares after the bump (and returns).
//!
//! The second case is why `parked` holds a word of the awaited sequence and
//! not a bare flag: while C is still waking up, further pushes see a stale
//! `parked` and skip the syscall instead of waking it again. `word` is never
//! 0 (0 means "not parked"); it may map two sequences to one word, which
//! only costs a spare wake-up. A hostile peer can thus only cause spare
//! wake-ups or a sleep until the slice ends (`MAX_PARK`): every park is
//! bounded, so the facade gets control back to check the peer's liveness.
//!
//! Waiting on an fd instead of the futex (an async runtime's reactor):
//! [`SplitConsumer::arm`] / [`SplitProducer::arm_space`] store the same
//! parked word, [`SplitConsumer::arm_fence`] is fence Y, the caller re-checks
//! and then waits for its fd; the notifier signals that fd whenever
//! `notify` / `notify_space` returns `Ok(true)` (it bumped the sequence). The
//! argument above holds with "the fd is readable" for "the kernel compares
//! the word": the signal follows every bump, and the waiter drains the fd
//! only after it woke and before its next re-check, so a signal meant for a
//! wait is never consumed before that wait's re-check. Modelled in
//! `loom-tests/tests/split.rs` (the fd as a counter with a condvar).
//!
//! `SYNC split-data-seq` / `split-space-seq`: the notifier's Release bump
//! pairs with the waiter's Acquire load of the sequence (a waiter that reads
//! the bump sees the condition it announces).
//!
//! Cost: the busy path of a notify is one SeqCst fence and one load of the
//! peer's doorbell line, which the peer writes only when it parks, so the
//! line stays clean in the notifier's cache. Batch pushes and notify once.

#[cfg(not(numashm_loom))]
use std::time::Duration;
use std::time::Instant;

use crate::error::SysError;
use crate::split::{SplitConsumer, SplitProducer};
use crate::split_error::{SplitPushError, SplitWaitError};
use crate::split_mem::SplitMemory;
use crate::loom::hint::Backoff;
use crate::loom::sync::atomic::{fence, AtomicU32, Ordering};

/// Longest a waiter sleeps in one slice before `wait` / `wait_for_space`
/// return `Ok(None)`, so the caller can check the peer's liveness.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_ring::MAX_PARK, std::time::Duration::from_millis(50));
/// ```
pub const MAX_PARK: core::time::Duration = core::time::Duration::from_millis(50);

/// Exponential spin steps before a waiter parks (as the `Doorbell`'s); under
/// loom each step is a scheduling point, so fewer.
#[cfg(not(numashm_loom))]
const SPIN_STEPS: u32 = 10;
#[cfg(numashm_loom)]
const SPIN_STEPS: u32 = 1;

/// Marks a waiter's word "parked on sequence `seq`": never 0.
const PARKED_BIT: u32 = 1 << 31;

#[inline(always)]
fn parked_word(seq: u32) -> u32 {
    seq | PARKED_BIT
}

/// What to do next in a wait loop.
#[cfg_attr(numashm_loom, allow(dead_code))] // under loom time never ends a slice
enum Step {
    /// Park, for at most this long (`None`: unbounded, loom only).
    Park(Option<core::time::Duration>),
    /// This slice is over: return `Ok(None)`.
    SliceOver,
    /// The caller's deadline passed.
    TimedOut,
}

/// The next step at the current time; `slice_end` is set on first use.
#[cfg(not(numashm_loom))]
fn step(deadline: Option<Instant>, slice_end: &mut Option<Instant>) -> Step {
    let now = Instant::now();
    let end = *slice_end.get_or_insert_with(|| now + MAX_PARK);
    if deadline.is_some_and(|d| d <= now) {
        return Step::TimedOut;
    }
    if end <= now {
        return Step::SliceOver;
    }
    let until = deadline.map_or(end, |d| d.min(end));
    Step::Park(Some(until.saturating_duration_since(now)))
}

/// Under loom time does not pass: a wait with a deadline may time out at
/// any park (modelled as at once), one without parks until woken (so a lost
/// wake-up is a deadlock loom reports).
#[cfg(numashm_loom)]
fn step(deadline: Option<Instant>, _slice_end: &mut Option<Instant>) -> Step {
    match deadline {
        Some(_) => Step::Park(Some(core::time::Duration::ZERO)),
        None => Step::Park(None),
    }
}

/// `FUTEX_WAIT` on a word that may be in a read-only shared mapping (no
/// `FUTEX_PRIVATE_FLAG`: the word is in memory other processes map).
/// Returns `Ok(true)` if the timeout expired.
#[cfg(not(numashm_loom))]
fn park(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<bool, SysError> {
    use rustix::thread::futex;
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(false),
        Err(rustix::io::Errno::TIMEDOUT) => Ok(true),
        Err(errno) => Err(SysError {
            op: "futex(FUTEX_WAIT)",
            errno,
        }),
    }
}

/// `FUTEX_WAKE` of every waiter on our own (writable) word.
#[cfg(not(numashm_loom))]
fn wake(word: &AtomicU32) -> Result<(), SysError> {
    use rustix::thread::futex;
    futex::wake(word, futex::Flags::empty(), i32::MAX as u32)
        .map(drop)
        .map_err(|errno| SysError {
            op: "futex(FUTEX_WAKE)",
            errno,
        })
}

/// Loom's stand-in for a futex word's kernel wait queue: compare and sleep
/// under the lock the waker takes, as the kernel does under its bucket lock.
#[cfg(numashm_loom)]
#[doc(hidden)]
#[derive(Debug)]
pub struct SplitFutex {
    mutex: crate::loom::sync::Mutex<()>,
    condvar: crate::loom::sync::Condvar,
}

#[cfg(numashm_loom)]
impl SplitFutex {
    pub(crate) fn new() -> Self {
        SplitFutex {
            mutex: crate::loom::sync::Mutex::new(()),
            condvar: crate::loom::sync::Condvar::new(),
        }
    }

    /// A timed park may time out at once (returns `true`); an untimed one
    /// sleeps until woken.
    fn park(
        &self,
        word: &AtomicU32,
        expected: u32,
        timeout: Option<core::time::Duration>,
    ) -> Result<bool, SysError> {
        if timeout.is_some() {
            return Ok(true);
        }
        let guard = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        // Acquire: as the kernel's read of the futex word (SYNC split-*-seq).
        if word.load(Ordering::Acquire) == expected {
            drop(self.condvar.wait(guard));
        }
        Ok(false)
    }

    fn wake(&self) -> Result<(), SysError> {
        let _guard = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        self.condvar.notify_all();
        Ok(())
    }
}

impl<M: SplitMemory> SplitProducer<M> {
    /// Wakes the consumer if it is parked waiting for data; call after
    /// pushing. Returns whether a `FUTEX_WAKE` was made. Without a consumer
    /// block attached there is nobody to wake.
    ///
    /// # Errors
    ///
    /// [`SysError`] if `futex(FUTEX_WAKE)` fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = numashm_ring::SplitRing::new(4)?;
    /// tx.push([1, 2, 3])?;
    /// assert!(!tx.notify()?); // nobody parked: no syscall
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn notify(&mut self) -> Result<bool, SysError> {
        // SYNC split-data-dekker: orders our stamp stores before the load of
        // `parked` (see the module docs).
        fence(Ordering::SeqCst);
        self.notify_after_fence()
    }

    /// The fence [`notify_after_fence`](Self::notify_after_fence) relies on:
    /// `fence(SeqCst)`, once after the last push into any number of rings
    /// (a fan-out pays one fence, not one per ring).
    ///
    /// # Examples
    ///
    /// See [`notify_after_fence`](Self::notify_after_fence).
    #[inline]
    pub fn notify_fence() {
        // SYNC split-data-dekker: the fence X of the module docs, shared by
        // every ring pushed before it.
        fence(Ordering::SeqCst);
    }

    /// [`notify`](Self::notify) without its fence: the caller called
    /// [`notify_fence`](Self::notify_fence) after its last push into this ring
    /// (and before this call). Without that fence a parked consumer may miss
    /// this push until its park slice ends ([`MAX_PARK`]).
    ///
    /// # Errors
    ///
    /// [`SysError`] if `futex(FUTEX_WAKE)` fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{SplitProducer, SplitRing};
    /// let ((mut t1, _r1), (mut t2, _r2)) = (SplitRing::new(4)?, SplitRing::new(4)?);
    /// t1.push([1, 2, 3])?;
    /// t2.push([1, 2, 3])?;
    /// SplitProducer::<numashm_ring::HeapSplit>::notify_fence();
    /// assert!(!t1.notify_after_fence()? && !t2.notify_after_fence()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn notify_after_fence(&mut self) -> Result<bool, SysError> {
        let Some(block) = self.mem.consumer_block() else {
            return Ok(false);
        };
        // Relaxed: ordered by the caller's fence; hostile values only decide
        // whether we make a spare wake-up.
        if block.bell.parked.load(Ordering::Relaxed) != parked_word(self.data_seq) {
            return Ok(false);
        }
        self.data_seq = self.data_seq.wrapping_add(1);
        let word = &self.mem.header().bell.data_seq;
        // SYNC split-data-seq: Release, pairs with the waiter's Acquire load.
        word.store(self.data_seq, Ordering::Release);
        #[cfg(not(numashm_loom))]
        wake(word)?;
        #[cfg(numashm_loom)]
        self.mem.data_futex().wake()?;
        Ok(true)
    }

    /// [`push`](Self::push), then [`notify`](Self::notify); returns whether
    /// a consumer was woken.
    ///
    /// # Errors
    ///
    /// As `push`; [`SplitPushError::Wake`] if the cell was pushed but the
    /// wake failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
    /// assert!(!tx.push_notify([4, 5, 6])?);
    /// assert_eq!(rx.pop()?, Some([4, 5, 6]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push_notify(&mut self, cell: [u64; 3]) -> Result<bool, SplitPushError> {
        self.push(cell)?;
        self.notify().map_err(SplitPushError::Wake)
    }

    /// Waits until the ring has room: spins briefly, then parks on the
    /// consumer's `space_seq` for at most [`MAX_PARK`] (and not past
    /// `deadline`). Returns `Ok(Some(free cells))`, or `Ok(None)` when the
    /// slice ended without room (check the consumer's liveness, call again).
    /// The consumer must call [`SplitConsumer::notify_space`] after popping.
    ///
    /// # Errors
    ///
    /// [`SplitWaitError::TimedOut`] once `deadline` passed;
    /// [`SplitWaitError::Corrupt`] for an impossible head;
    /// [`SplitWaitError::Sys`] if the futex fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = numashm_ring::SplitRing::new(2)?;
    /// assert_eq!(tx.wait_for_space(None)?, Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_space(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<usize>, SplitWaitError> {
        let backoff = Backoff::new();
        for _ in 0..SPIN_STEPS {
            match self.free_space()? {
                0 => backoff.spin(),
                n => return Ok(Some(n)),
            }
        }
        let mut slice_end = None;
        loop {
            let timeout = match step(deadline, &mut slice_end) {
                Step::Park(t) => t,
                Step::SliceOver => return Ok(None),
                Step::TimedOut => return Err(SplitWaitError::TimedOut),
            };
            // SYNC split-space-seq: pairs with the consumer's Release bump.
            let seq = self
                .mem
                .consumer_block()
                .map(|b| b.bell.space_seq.load(Ordering::Acquire));
            let Some(seq) = seq else {
                // Nobody can make room (or wake us) yet: sleep the slice.
                sleep(timeout);
                continue;
            };
            let waiting = &self.mem.header().bell.space_waiting;
            // Relaxed: ordered by the fence below.
            waiting.store(parked_word(seq), Ordering::Relaxed);
            // SYNC split-space-dekker: orders our `space_waiting` store before
            // the head re-check (see the module docs).
            fence(Ordering::SeqCst);
            let free = self.free_space();
            let timed_out = match free {
                Ok(0) => self.park_space(seq, timeout),
                _ => Ok(false),
            };
            // Relaxed: unregistering publishes nothing.
            self.mem
                .header()
                .bell
                .space_waiting
                .store(0, Ordering::Relaxed);
            if let n @ 1.. = free? {
                return Ok(Some(n));
            }
            let timed_out = timed_out?;
            match self.free_space()? {
                0 if timed_out && cfg!(numashm_loom) => return Err(SplitWaitError::TimedOut),
                0 => {}
                n => return Ok(Some(n)),
            }
        }
    }

    /// Announces a wait for room made on something else than the futex (an
    /// fd the consumer signals when
    /// [`notify_space`](SplitConsumer::notify_space) returns `Ok(true)`):
    /// stores "waiting on the consumer's current `space_seq`" in our block.
    /// Then [`SplitConsumer::arm_fence`], re-check
    /// [`free_space`](Self::free_space), wait, and
    /// [`disarm_space`](Self::disarm_space) (`SYNC split-space-dekker`).
    /// Returns `false` without a consumer block (nobody can make room yet).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{SplitConsumer, SplitRing};
    /// # if cfg!(miri) { return Ok(()); } // notify_space makes a FUTEX_WAKE, which miri does not run
    /// let (mut tx, mut rx) = SplitRing::new(1)?;
    /// tx.push([1, 0, 0])?;
    /// assert!(tx.arm_space());
    /// SplitConsumer::<numashm_ring::HeapSplit>::arm_fence();
    /// assert_eq!(tx.free_space()?, 0); // full: wait on the fd
    /// rx.pop()?;
    /// assert!(rx.notify_space()?); // the consumer saw us waiting: it signals the fd
    /// tx.disarm_space();
    /// assert_eq!(tx.free_space()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm_space(&mut self) -> bool {
        // SYNC split-space-seq: pairs with the consumer's Release bump.
        let Some(seq) = self
            .mem
            .consumer_block()
            .map(|b| b.bell.space_seq.load(Ordering::Acquire))
        else {
            return false;
        };
        // Relaxed: ordered by the caller's `arm_fence`.
        self.mem
            .header()
            .bell
            .space_waiting
            .store(parked_word(seq), Ordering::Relaxed);
        true
    }

    /// Ends a wait [`arm_space`](Self::arm_space) announced.
    ///
    /// # Examples
    ///
    /// See [`arm_space`](Self::arm_space).
    pub fn disarm_space(&mut self) {
        // Relaxed: unregistering publishes nothing.
        self.mem
            .header()
            .bell
            .space_waiting
            .store(0, Ordering::Relaxed);
    }

    /// Parks on the consumer's `space_seq` while it equals `seq`; `Ok(true)`
    /// if the timeout expired.
    fn park_space(
        &self,
        seq: u32,
        timeout: Option<core::time::Duration>,
    ) -> Result<bool, SysError> {
        let Some(block) = self.mem.consumer_block() else {
            return Ok(true);
        };
        #[cfg(not(numashm_loom))]
        return park(&block.bell.space_seq, seq, timeout);
        #[cfg(numashm_loom)]
        return self
            .mem
            .space_futex()
            .park(&block.bell.space_seq, seq, timeout);
    }
}

/// Sleeps a slice when there is no word to park on.
#[cfg(not(numashm_loom))]
fn sleep(timeout: Option<core::time::Duration>) {
    std::thread::sleep(timeout.unwrap_or(MAX_PARK));
}

#[cfg(numashm_loom)]
fn sleep(_timeout: Option<core::time::Duration>) {
    crate::loom::thread::yield_now();
}

impl<M: SplitMemory> SplitConsumer<M> {
    /// Wakes the producer if it is parked waiting for room; call after
    /// popping. Returns whether a `FUTEX_WAKE` was made.
    ///
    /// # Errors
    ///
    /// [`SysError`] if `futex(FUTEX_WAKE)` fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
    /// tx.push([1, 2, 3])?;
    /// rx.pop()?;
    /// assert!(!rx.notify_space()?); // nobody parked: no syscall
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn notify_space(&mut self) -> Result<bool, SysError> {
        let Some(block) = self.mem.consumer_block() else {
            return Ok(false);
        };
        // SYNC split-space-dekker: orders our head store before the load of
        // `space_waiting` (see the module docs).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence; hostile values only decide whether
        // we make a spare wake-up.
        let waiting = self.mem.header().bell.space_waiting.load(Ordering::Relaxed);
        if waiting != parked_word(self.space_seq) {
            return Ok(false);
        }
        self.space_seq = self.space_seq.wrapping_add(1);
        let word = &block.bell.space_seq;
        // SYNC split-space-seq: Release, pairs with the waiter's Acquire load.
        word.store(self.space_seq, Ordering::Release);
        #[cfg(not(numashm_loom))]
        wake(word)?;
        #[cfg(numashm_loom)]
        self.mem.space_futex().wake()?;
        Ok(true)
    }

    /// Announces a wait for data that the caller makes on something else
    /// than the futex (an fd the producer signals when
    /// [`notify`](SplitProducer::notify) returns `Ok(true)`): stores "parked
    /// on the current `data_seq`" in our block. Then call
    /// [`arm_fence`](Self::arm_fence) once (after arming every ring), re-check
    /// with [`has_news`](Self::has_news), wait, and [`disarm`](Self::disarm).
    /// The Dekker pair is the futex wait's (`SYNC split-data-dekker`), so a
    /// push after the re-check finds us parked and its `notify` returns
    /// `true`. Returns `false` without a consumer block (nobody could tell
    /// us; wait a bounded slice).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{SplitConsumer, SplitRing};
    /// # if cfg!(miri) { return Ok(()); } // notify makes a FUTEX_WAKE, which miri does not run
    /// let (mut tx, mut rx) = SplitRing::new(4)?;
    /// assert!(rx.arm());
    /// SplitConsumer::<numashm_ring::HeapSplit>::arm_fence();
    /// assert!(!rx.has_news()); // nothing yet: wait on the fd
    /// tx.push([1, 2, 3])?;
    /// assert!(tx.notify()?); // the producer saw us parked: it signals the fd
    /// rx.disarm();
    /// assert_eq!(rx.pop()?, Some([1, 2, 3]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm(&mut self) -> bool {
        let Some(block) = self.mem.consumer_block() else {
            return false;
        };
        // SYNC split-data-seq: pairs with the producer's Release bump.
        let seq = self.mem.header().bell.data_seq.load(Ordering::Acquire);
        // Relaxed: ordered by the caller's `arm_fence`.
        block.bell.parked.store(parked_word(seq), Ordering::Relaxed);
        true
    }

    /// The fence Y of the module docs (`fence(SeqCst)`), once after
    /// [`arm`](Self::arm) of any number of rings and before their re-checks.
    ///
    /// # Examples
    ///
    /// See [`arm`](Self::arm).
    #[inline]
    pub fn arm_fence() {
        // SYNC split-data-dekker (and split-space-dekker for
        // `SplitProducer::arm_space`): orders the parked stores before the
        // re-checks.
        fence(Ordering::SeqCst);
    }

    /// Ends a wait [`arm`](Self::arm) announced: the producer stops waking us.
    ///
    /// # Examples
    ///
    /// See [`arm`](Self::arm).
    pub fn disarm(&mut self) {
        if let Some(block) = self.mem.consumer_block() {
            // Relaxed: unregistering publishes nothing.
            block.bell.parked.store(0, Ordering::Relaxed);
        }
    }

    /// Pops the next cell, waiting for it: spins briefly, then parks on the
    /// producer's `data_seq` for at most [`MAX_PARK`] (and not past
    /// `deadline`). Returns `Ok(Some(cell))`, or `Ok(None)` when the slice
    /// ended without data (check the producer's liveness, call again). The
    /// producer must call [`SplitProducer::notify`] after pushing. Does not
    /// notify space itself.
    ///
    /// # Errors
    ///
    /// [`SplitWaitError::TimedOut`] once `deadline` passed;
    /// [`SplitWaitError::Corrupt`] for an impossible stamp;
    /// [`SplitWaitError::Sys`] if the futex fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = numashm_ring::SplitRing::new(4)?;
    /// let t = std::thread::spawn(move || tx.push_notify([1, 2, 3]).map(|_| ()));
    /// let cell = loop {
    ///     if let Some(c) = rx.wait(None)? { break c; } // None: a slice ended
    /// };
    /// assert_eq!(cell, [1, 2, 3]);
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&mut self, deadline: Option<Instant>) -> Result<Option<[u64; 3]>, SplitWaitError> {
        let backoff = Backoff::new();
        for _ in 0..SPIN_STEPS {
            if let Some(cell) = self.pop()? {
                return Ok(Some(cell));
            }
            backoff.spin();
        }
        let mut slice_end = None;
        loop {
            if let Some(cell) = self.pop()? {
                return Ok(Some(cell));
            }
            let timeout = match step(deadline, &mut slice_end) {
                Step::Park(t) => t,
                Step::SliceOver => return Ok(None),
                Step::TimedOut => return Err(SplitWaitError::TimedOut),
            };
            let word = &self.mem.header().bell.data_seq;
            // SYNC split-data-seq: pairs with the producer's Release bump.
            let seq = word.load(Ordering::Acquire);
            let Some(block) = self.mem.consumer_block() else {
                sleep(timeout);
                continue;
            };
            // Relaxed: ordered by the fence below.
            block.bell.parked.store(parked_word(seq), Ordering::Relaxed);
            // SYNC split-data-dekker: orders our `parked` store before the
            // stamp re-check (see the module docs).
            fence(Ordering::SeqCst);
            let timed_out = if self.has_news() {
                Ok(false)
            } else {
                #[cfg(not(numashm_loom))]
                let r = park(word, seq, timeout);
                #[cfg(numashm_loom)]
                let r = self.mem.data_futex().park(word, seq, timeout);
                r
            };
            // Relaxed: unregistering publishes nothing.
            block.bell.parked.store(0, Ordering::Relaxed);
            if timed_out? && cfg!(numashm_loom) {
                return self.pop()?.map(Some).ok_or(SplitWaitError::TimedOut);
            }
        }
    }
}
