//! Handing a live pool to a successor process (`Peer::hand_over`).
//!
//! A pool is sealed `F_SEAL_FUTURE_WRITE`: no process can ever map it writable
//! again, not even its owner through a new fd (region.md, "Sealed pools"). The
//! one mapping that writes it is the owner's, and the only way another process
//! gets that mapping is to inherit it: `fork`. So the successor is a child of
//! the owner, made at the moment of the handover, with the owner's whole state
//! (allocator, rings, bindings, links) as it was; the owner stops driving the
//! pool at that instant and leaves. Readers see nothing change: same pool, same
//! rings, same positions; what they return comes back to the successor.
//!
//! The steps, over a socket pair (every wait bounded by the caller's timeout):
//! 1. fork; the child records its mapping in the pool's ownership descriptor
//!    (`Descriptor::register`) and says "ready";
//! 2. the owner moves the descriptor's owner word to the child (one CAS:
//!    `transfer_ownership`, which checks the child is alive and attached) and
//!    says "yes";
//! 3. the child writes its pid and start time into the pool header (one word
//!    for readers: `P_OWNER`) and our rendezvous entry — nothing else — and
//!    says "done" (readers ask the kernel about the process named there:
//!    `RemotePool::owner_liveness`);
//! 4. the owner says "go" and lets go: its pid stayed alive until the pool
//!    named the successor, so no reader ever sees the pool's owner dead in
//!    between; the child, on "go" only, starts driving the pool. Until "go" a
//!    failure leaves the pool as the owner had it (the child wrote only its
//!    identity, which the owner writes back) and the child exits.
//!
//! The rendezvous entry stays ours throughout: its lock is held by an open file
//! description that the child shares (`fork` duplicates descriptors, not
//! descriptions), so the kernel's "is anybody there?" keeps saying yes.
#![allow(unsafe_code)] // fork(2)

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use numashm_ownership::{CapMode, Descriptor};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::pool::error::PoolError;
use crate::pool::liveness::start_time;
use crate::pool::peer::Peer;
use crate::pool::rendezvous::E_STARTED;

/// What [`Peer::hand_over`] returns, in each of the two processes it leaves.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once per hand-over; a Box would only add an unboxing for the caller
pub enum Handover {
    /// In the calling process: the pool now belongs to `successor` (our child),
    /// and our `Peer` is gone. This process should exit (or `waitpid` the
    /// successor eventually: it is our child).
    Predecessor {
        /// The successor's pid.
        successor: u32,
    },
    /// In the successor (the new child process): the same peer, ours now.
    Successor(Peer),
}

/// A hand-over that did not happen: the peer is still the caller's, untouched
/// (any child made was killed and reaped).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct HandoverError {
    /// Why.
    pub error: PoolError,
    /// The peer, still ours.
    pub peer: Peer,
}

const READY: u8 = b'r';
const YES: u8 = b'y';
const DONE: u8 = b'd';
const GO: u8 = b'g';
/// How long a successor waits for "go" after "done" at least (the owner says
/// it at once, or kills the child).
const GO_WAIT: Duration = Duration::from_secs(30);

fn failed(step: &'static str, detail: impl std::fmt::Display) -> PoolError {
    PoolError::Handover { step, detail: detail.to_string() }
}

/// Waits (bounded) for one byte from the other process; EOF or another byte is an error.
fn expect(sock: &OwnedFd, want: u8, deadline: Instant, step: &'static str) -> Result<(), PoolError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed(step, "timed out"));
        }
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [rustix::event::PollFd::new(sock, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(failed(step, e)),
        }
        let mut b = [0u8];
        return match rustix::net::recv(sock, &mut b, RecvFlags::DONTWAIT) {
            Ok((1, _)) if b[0] == want => Ok(()),
            Ok((1, _)) => Err(failed(step, format!("the other side said {:?}", b[0] as char))),
            Ok(_) => Err(failed(step, "the other process went away")),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
            Err(e) => Err(failed(step, e)),
        };
    }
}

/// One byte to the other process (no SIGPIPE if it is gone).
fn say(sock: &OwnedFd, b: u8, step: &'static str) -> Result<(), PoolError> {
    match rustix::net::send(sock, &[b], SendFlags::NOSIGNAL) {
        Ok(1) => Ok(()),
        Ok(_) => Err(failed(step, "short send")),
        Err(e) => Err(failed(step, e)),
    }
}

fn kill_and_reap(child: rustix::process::Pid) {
    let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
    let _ = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty());
}

impl Peer {
    /// Hands this peer — its pool with every message in flight, its rings, its
    /// rendezvous entry — to a successor process, a child made by `fork(2)`
    /// now, and returns in both: [`Handover::Predecessor`] here,
    /// [`Handover::Successor`] with the same peer in the child. Readers keep
    /// their links and positions; what they return comes back to the
    /// successor; the pool's ownership descriptor names the successor (its
    /// generation one higher).
    ///
    /// Why a child: the pool is sealed against every new writable mapping
    /// (the kernel's single-writer guarantee), so only a process that inherits
    /// the owner's mapping can write it. A successor built from another binary
    /// (an upgrade) starts a pool of its own instead; readers keep the old
    /// pool's messages until they return them (docs/pools.md, "Handing a pool
    /// over").
    ///
    /// # Safety
    ///
    /// `fork` copies only the calling thread. The caller must make sure the
    /// successor can run on the copy: no other thread of this process holds a
    /// lock the successor will take (glibc's `fork` keeps `malloc` usable;
    /// `std`'s stdout lock, a `Mutex` of the application, an async runtime are
    /// the caller's to think about), and the successor must not rely on other
    /// threads, which do not exist in it. The successor also holds copies of
    /// every other value of this process: other `Peer`s and their ends. Those
    /// are the predecessor's; the successor must not use them, nor drop a
    /// `SlotMut` or `Message` of them (that would write the predecessor's
    /// pools: `std::mem::forget` them, or end with `_exit`). A dropped copy of
    /// a `Peer` or `Receiver` does nothing there (their drops check the pid).
    /// A process with one thread and one peer meets all of this.
    ///
    /// # Errors
    ///
    /// [`HandoverError`] (the peer is still ours; a child made was killed and
    /// reaped) with [`PoolError::Handover`] naming the step that failed, within
    /// `timeout`; [`PoolError::Config`] when the pool is mapped `MADV_DONTFORK`
    /// (a child would not inherit it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use numashm::pool::{Handover, Peer, PeerConfig};
    /// let peer = Peer::join("/dev/shm/my-rendezvous", PeerConfig::new("sender"))?;
    /// // ... send; then, to restart without losing what is in flight:
    /// // SAFETY: this process runs one thread.
    /// match unsafe { peer.hand_over(std::time::Duration::from_secs(5)) }.map_err(|e| e.error)? {
    ///     Handover::Predecessor { .. } => std::process::exit(0),
    ///     Handover::Successor(peer) => { /* go on sending from the same pool */ drop(peer) }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "transfer_ownership")]
    #[doc(alias = "fork")]
    #[allow(clippy::result_large_err)] // the error gives the peer back; once per hand-over
    pub unsafe fn hand_over(self, timeout: Duration) -> Result<Handover, HandoverError> {
        if self.pool.region.cache_policy().dont_fork {
            let error = PoolError::Config { field: "cache_policy", detail: "the pool is MADV_DONTFORK: a successor would not inherit it" };
            return Err(HandoverError { error, peer: self });
        }
        // A timeout too large for the clock (Duration::MAX: "as long as it takes") is a day.
        let deadline = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        let take_back = match self.descriptor().and_then(|d| Ok(d.create_capability(std::process::id(), CapMode::Move)?)) {
            Ok(t) => t,
            Err(error) => return Err(HandoverError { error, peer: self }),
        };
        let (ours, theirs) =
            match rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None) {
                Ok(pair) => pair,
                Err(e) => {
                    self.drop_take_back(take_back);
                    return Err(HandoverError { error: failed("socketpair", e), peer: self });
                }
            };
        // SAFETY: the caller promises the child can run on a copy of this one
        // thread (see # Safety); the child touches only memory it owns (its copy
        // of `self`), the inherited mappings and fds, and then returns to its caller.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            self.drop_take_back(take_back);
            return Err(HandoverError { error: failed("fork", e), peer: self });
        }
        if pid == 0 {
            drop(ours);
            return Ok(self.become_successor(&theirs, take_back, deadline));
        }
        drop(theirs);
        let child = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
        let successor = child.as_raw_nonzero().get() as u32;
        match self.let_go(&ours, successor, deadline) {
            Ok(()) => {
                self.forget_as_predecessor();
                Ok(Handover::Predecessor { successor })
            }
            Err((error, transferred)) => {
                kill_and_reap(child);
                if transferred {
                    self.take_back(take_back);
                } else {
                    self.drop_take_back(take_back);
                }
                Err(HandoverError { error, peer: self })
            }
        }
    }

    /// Our pool's ownership descriptor: its owner (us, or the successor we
    /// handed it to), the mappings that write it (ours; a successor's while a
    /// hand-over runs) and capabilities. Other peers can read it
    /// ([`Descriptor::open`] on their read-only mapping) but not change it.
    ///
    /// # Errors
    ///
    /// [`PoolError::Ownership`] when the descriptor does not validate.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-desc", 2, numashm::pool::PeerConfig::new("doc-desc"))?;
    /// let d = p.descriptor()?;
    /// assert_eq!(d.owner()?.pid, std::process::id());
    /// assert!(d.get_mapping(std::process::id())?.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn descriptor(&self) -> Result<Descriptor<'_>, PoolError> {
        Ok(Descriptor::open(&self.pool.region)?)
    }

    /// The owner's side: steps 2 and 4. On failure, says whether the owner
    /// word already names the child.
    fn let_go(&self, sock: &OwnedFd, child: u32, deadline: Instant) -> Result<(), (PoolError, bool)> {
        expect(sock, READY, deadline, "successor ready").map_err(|e| (e, false))?;
        let desc = self.descriptor().map_err(|e| (e, false))?;
        desc.transfer_ownership(child).map_err(|e| (failed("transfer", e), false))?;
        say(sock, YES, "transfer")
            .and_then(|()| expect(sock, DONE, deadline, "successor done"))
            // From "go" on the pool is the child's for good; before it, the
            // child has written only its identity, which `take_back` rewrites.
            .and_then(|()| say(sock, GO, "go"))
            .map_err(|e| (e, true))?;
        let _ = desc.unregister();
        Ok(())
    }

    /// A hand-over that failed before the owner word moved: the way back is
    /// not needed (its capability slot is freed for the next hand-over).
    fn drop_take_back(&self, take_back: u64) {
        let _ = self.descriptor().map(|d| d.revoke(take_back));
    }

    /// After a failed hand-over whose child is dead (killed and reaped): we
    /// still hold the only other writable mapping, so the pool is ours again,
    /// and says so (the child may have written its pid into the header and
    /// our entry). `take_back` is the move capability bound to us, made
    /// before the fork for this.
    fn take_back(&self, take_back: u64) {
        if let Ok(d) = self.descriptor() {
            let _ = d.redeem_capability(take_back, self.pid);
        }
        self.pool.set_owner(self.pid, self.started);
        self.upkeep();
    }

    /// The child's side: steps 1 and 3. A child that cannot finish exits at
    /// once (status 70): it never returns to code that would drive the pool
    /// beside its parent.
    fn become_successor(mut self, sock: &OwnedFd, take_back: u64, deadline: Instant) -> Handover {
        let me = std::process::id();
        let step = (|| -> Result<(), PoolError> {
            self.descriptor()?.register()?;
            say(sock, READY, "successor ready")?;
            expect(sock, YES, deadline, "transfer")?;
            if self.descriptor()?.owner()?.pid != me {
                return Err(failed("transfer", "the descriptor does not name us"));
            }
            let started = start_time(me).unwrap_or(0);
            // Only our identity before "go": the pool header's owner and our
            // rendezvous entry's pid and start time. Nothing else of the pool
            // or the rendezvous changes until the owner has let go for good (a
            // failed hand-over takes the pool back as it was).
            self.pool.set_owner(me, started);
            self.pid = me;
            self.started = started;
            self.rdv.repair(self.me, self.epoch, me, &[(E_STARTED, started)]);
            say(sock, DONE, "successor done")?;
            // Bounded by the owner: it says "go" at once, or kills us.
            expect(sock, GO, deadline.max(Instant::now() + GO_WAIT), "go")
        })();
        if step.is_err() {
            // SAFETY: `_exit` ends this process at once; nothing of the copied
            // state runs (no destructor touches the pool the parent still owns).
            unsafe { libc::_exit(70) };
        }
        // The predecessor's way back is not needed any more (and its
        // capability slot is free for the next hand-over); then the upkeep a
        // peer does on its slow paths.
        let _ = self.descriptor().map(|d| d.revoke(take_back));
        self.upkeep();
        Handover::Successor(self)
    }
}
