//! Async ends (feature `tokio`): a receiver whose `recv().await` and a sender
//! whose `send(msg).await` park on the peer's wake pipe, registered with
//! tokio's `AsyncFd`, instead of a futex.
//!
//! A wait: arm the doorbell of every ring concerned (the parked word in our
//! own block, `SplitConsumer::arm` / `SplitProducer::arm_space`), one SeqCst
//! fence, re-check the rings, then await the pipe for at most `MAX_PARK`;
//! disarm, drain the pipe, look again. The notifier writes a byte into the
//! pipe whenever its doorbell found us parked (`wake.rs`), so no wake-up is
//! lost (the futex wait's Dekker pair; loom `split.rs`). The slice bound lets
//! the wait repair our rendezvous words and bind or link peers, as the sync
//! waits do; an idle end wakes once per slice and does nothing else.
//!
//! The futures borrow the `Peer`, which one thread drives: run them on a
//! current-thread runtime or a `LocalSet` (they are not `Send`).
#![allow(unsafe_code)] // tokio's `AsyncFd::register_with_interest` (one call, SAFETY there)

use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};

use numashm_ring::{SharedSplit, SplitConsumer, MAX_PARK};
use tokio::io::unix::AsyncFd;

use crate::pool::channel::{Message, Receiver, SendError, Sender, SlotMut};
use crate::pool::error::ChannelError;
use crate::pool::peer::Peer;
use crate::pool::wake::{drain, WakePipe};

/// Slices between two upkeeps (rendezvous repair, relinking), as the sync wait.
const UPKEEP_EVERY: u64 = 8;

/// Why an async end could not be made or could not wait.
///
/// # Examples
///
/// ```
/// let e = numashm::pool::AsyncError::NoRuntime;
/// assert_eq!(e.to_string(), "not inside a tokio runtime");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncError {
    /// Made outside a tokio runtime.
    #[error("not inside a tokio runtime")]
    NoRuntime,
    /// The wake pipe could not be made (`pipe2`, `fstat`: e.g. out of fds).
    #[error("wake pipe: {0}")]
    Pipe(std::io::Error),
    /// The reactor refused the pipe or failed while waiting on it.
    #[error("reactor: {0}")]
    Reactor(std::io::Error),
    /// Receiving or sending failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// A send that failed hands the message back.
#[derive(Debug)]
pub struct AsyncSendError<'p> {
    /// Why.
    pub error: AsyncError,
    /// The message, still ours.
    pub message: SlotMut<'p>,
}

impl std::fmt::Display for AsyncSendError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "send: {}", self.error)
    }
}

impl std::error::Error for AsyncSendError<'_> {}

impl Peer {
    /// Our wake pipe, made and published in our pool header on first use.
    fn wake_pipe(&self) -> Result<&WakePipe, AsyncError> {
        if let Some(p) = self.wake.get() {
            return Ok(p);
        }
        let p = WakePipe::new().map_err(AsyncError::Pipe)?;
        p.publish(&self.pool.header);
        Ok(self.wake.get_or_init(|| p))
    }

    /// Our wake pipe registered with the current runtime's reactor (each async
    /// end its own duplicate, so each has its own registration and readiness).
    fn wake_fd(&self) -> Result<AsyncFd<OwnedFd>, AsyncError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(AsyncError::NoRuntime);
        }
        let fd = self
            .wake_pipe()?
            .read
            .as_fd()
            .try_clone_to_owned()
            .map_err(AsyncError::Pipe)?;
        // SAFETY: the AsyncFd takes ownership of `fd`, an open OwnedFd whose
        // `as_raw_fd` always returns the same number and which stays open (and
        // the same file description) until the AsyncFd drops it.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| AsyncError::Reactor(e.into_parts().1))
    }

    /// The consumer end of channel `c`, awaitable (see [`AsyncReceiver`]).
    ///
    /// # Errors
    ///
    /// Those of [`Peer::receiver`] (as [`AsyncError::Channel`]) and
    /// [`Receiver::into_async`].
    ///
    /// # Examples
    ///
    /// See [`AsyncReceiver`].
    pub fn async_receiver(&self, c: usize) -> Result<AsyncReceiver<'_>, AsyncError> {
        // The pipe first: a producer that binds us right away finds it.
        self.wake_pipe()?;
        self.receiver(c)
            .map_err(|e| AsyncError::Channel(e.into()))?
            .into_async()
    }

    /// The producer end of channel `c`, awaitable (see [`AsyncSender`]).
    ///
    /// # Errors
    ///
    /// Those of [`Peer::sender`] (as [`AsyncError::Channel`]) and
    /// [`Sender::into_async`].
    ///
    /// # Examples
    ///
    /// See [`AsyncSender`].
    pub fn async_sender(&self, c: usize) -> Result<AsyncSender<'_>, AsyncError> {
        self.sender(c)
            .map_err(|e| AsyncError::Channel(e.into()))?
            .into_async()
    }

    /// Slow-path chores of a wait slice that ended (as the sync waits).
    fn slice_over(&self, slices: u64) {
        if slices % UPKEEP_EVERY == 0 {
            self.upkeep();
        }
        self.bind_unbound();
    }
}

/// How often an async end's waits ended: woken through the pipe, or at the
/// end of a slice with nothing.
#[derive(Debug, Default)]
struct Wakes {
    woken: Cell<u64>,
    slices: Cell<u64>,
}

impl Wakes {
    /// Counts one wait's end; returns the slices so far if it was a slice.
    fn count(&self, woke: bool) -> Option<u64> {
        let c = if woke { &self.woken } else { &self.slices };
        c.set(c.get() + 1);
        (!woke).then(|| c.get())
    }

    fn get(&self) -> (u64, u64) {
        (self.woken.get(), self.slices.get())
    }
}

/// Runs its closure when dropped: a wait's doorbell is disarmed however the
/// wait ends (a dropped future included), so no peer keeps waking us.
struct Disarm<F: FnMut()>(F);

impl<F: FnMut()> Drop for Disarm<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Waits until `fd` is readable or the slice ends; drains it when readable.
/// `Ok(true)`: woken (or spare wake-up); `Ok(false)`: the slice ended.
async fn await_wake(fd: &AsyncFd<OwnedFd>) -> Result<bool, AsyncError> {
    let mut guard = match tokio::time::timeout(MAX_PARK, fd.readable()).await {
        Err(_elapsed) => return Ok(false),
        Ok(r) => r.map_err(AsyncError::Reactor)?,
    };
    match drain(fd.get_ref().as_fd()) {
        // Empty now: the reactor's readiness goes until the next byte.
        Ok(true) => guard.clear_ready(),
        // End of file cannot happen while the pipe's write end is ours; if it
        // did, the next await would return at once: treat it as an error.
        Ok(false) => {
            return Err(AsyncError::Reactor(
                std::io::ErrorKind::UnexpectedEof.into(),
            ))
        }
        Err(e) => return Err(AsyncError::Reactor(e)),
    }
    Ok(true)
}

/// The consumer end of a channel, awaitable: [`recv`](Self::recv) parks on
/// the peer's wake pipe through tokio's `AsyncFd` (no thread, no polling)
/// until a producer's doorbell wakes it, in slices of at most
/// [`MAX_PARK`](numashm_ring::MAX_PARK).
///
/// # Examples
///
/// ```
/// use numashm::pool::{Peer, PeerConfig};
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let a = Peer::create_anonymous("doc-async-rx", 4, PeerConfig::new("doc-arx-a"))?;
/// let b = a.join_same(PeerConfig::new("doc-arx-b"))?; // another process would join by path or fd
/// let tx = a.sender(0)?;
/// rt.block_on(async {
///     let rx = b.async_receiver(0)?;
///     let mut m = tx.alloc(2)?;
///     m.copy_from_slice(b"hi");
///     tx.send(m).map_err(|e| e.error)?;
///     assert_eq!(&*rx.recv().await?, b"hi");
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncReceiver<'p> {
    rx: Receiver<'p>,
    fd: AsyncFd<OwnedFd>,
    wakes: Wakes,
}

impl<'p> Receiver<'p> {
    /// This end, awaitable. Call inside a tokio runtime with IO and time
    /// enabled (`enable_all`).
    ///
    /// # Panics
    ///
    /// Inside a runtime built without IO (tokio's `AsyncFd` panics then);
    /// `recv` panics on one built without time (tokio's timers do).
    ///
    /// # Errors
    ///
    /// [`AsyncError::NoRuntime`] outside a runtime; [`AsyncError::Pipe`] when
    /// the wake pipe cannot be made; [`AsyncError::Reactor`] when the runtime
    /// refuses it.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-into-async", 2, numashm::pool::PeerConfig::new("doc-ia"))?;
    /// assert!(matches!(p.receiver(0)?.into_async(), Err(numashm::pool::AsyncError::NoRuntime)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_async(self) -> Result<AsyncReceiver<'p>, AsyncError> {
        let fd = self.peer.wake_fd()?;
        Ok(AsyncReceiver {
            rx: self,
            fd,
            wakes: Wakes::default(),
        })
    }
}

impl<'p> AsyncReceiver<'p> {
    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// As [`Receiver::try_recv`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # let _g = rt.enter();
    /// let p = numashm::pool::Peer::create_anonymous("doc-atry", 2, numashm::pool::PeerConfig::new("doc-atry"))?;
    /// let rx = p.async_receiver(0)?;
    /// assert!(matches!(rx.try_recv(), Err(numashm::pool::ChannelError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&self) -> Result<Message<'p>, ChannelError> {
        self.rx.try_recv()
    }

    /// Receives, waiting as long as it takes without blocking the thread.
    ///
    /// # Errors
    ///
    /// [`AsyncError::Channel`] with those of [`Receiver::try_recv`] but
    /// `Empty`; [`AsyncError::Reactor`] if the runtime fails.
    ///
    /// # Examples
    ///
    /// See [`AsyncReceiver`].
    pub async fn recv(&self) -> Result<Message<'p>, AsyncError> {
        let peer = self.rx.peer;
        loop {
            match self.rx.try_recv() {
                Err(ChannelError::Empty) => {}
                other => return other.map_err(AsyncError::from),
            }
            // Disarmed when this wait ends, or when the future is dropped.
            let armed = Disarm(|| self.disarm());
            if !self.arm() {
                // Nothing yet: wait for the pipe (a push or a bind signals it) or the slice end.
                let woke = await_wake(&self.fd).await;
                drop(armed);
                if let Some(slices) = self.wakes.count(woke?) {
                    peer.slice_over(slices);
                }
            }
        }
    }

    /// Arms every ring we may read, fences, re-checks: `true` if one has news
    /// (or the set of producers changed), so the caller must not sleep.
    fn arm(&self) -> bool {
        let peer = self.rx.peer;
        let mut consumed = peer.consumed.borrow_mut();
        let Some(cs) = consumed[self.rx.channel].as_mut() else {
            return false;
        };
        let mut armed = false;
        for l in cs.links.iter_mut().flatten() {
            if l.readable(peer.pool.id) {
                armed |= l.ring.arm();
            }
        }
        if armed {
            SplitConsumer::<SharedSplit>::arm_fence();
        }
        let news = cs
            .links
            .iter_mut()
            .flatten()
            .any(|l| l.readable(peer.pool.id) && l.ring.has_news());
        news || peer.rdv.changes() != cs.seen_changes
    }

    fn disarm(&self) {
        let peer = self.rx.peer;
        if let Some(cs) = peer.consumed.borrow_mut()[self.rx.channel].as_mut() {
            cs.links.iter_mut().flatten().for_each(|l| l.ring.disarm());
        }
    }

    /// How the waits of this end ended so far: `(woken through the wake
    /// pipe, slices that ended with nothing)`. An idle receiver counts one
    /// slice per [`MAX_PARK`](numashm_ring::MAX_PARK) and nothing else.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # let _g = rt.enter();
    /// let p = numashm::pool::Peer::create_anonymous("doc-wakes", 2, numashm::pool::PeerConfig::new("doc-wakes"))?;
    /// assert_eq!(p.async_receiver(0)?.wakes(), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wakes(&self) -> (u64, u64) {
        self.wakes.get()
    }

    /// The sync end inside (for `recv_timeout`, `channel`, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # let _g = rt.enter();
    /// let p = numashm::pool::Peer::create_anonymous("doc-arecv", 2, numashm::pool::PeerConfig::new("doc-arecv"))?;
    /// assert_eq!(p.async_receiver(3)?.receiver().channel(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receiver(&self) -> &Receiver<'p> {
        &self.rx
    }
}

/// The producer end of a channel, awaitable: [`send`](Self::send) waits for
/// room in a full ring on the peer's wake pipe (tokio's `AsyncFd`), which
/// the consumer signals when its doorbell says we wait.
///
/// # Examples
///
/// ```
/// use numashm::pool::{Peer, PeerConfig};
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let a = Peer::create_anonymous("doc-async-tx", 4, PeerConfig::new("doc-atx-a").ring_capacity(2))?;
/// let b = a.join_same(PeerConfig::new("doc-atx-b"))?;
/// rt.block_on(async {
///     let tx = a.async_sender(0)?;
///     let rx = b.receiver(0)?; // links to the ring; the first send binds it
///     for i in 0..2u8 {
///         let mut m = tx.sender().alloc(1).map_err(numashm::pool::AsyncError::from)?;
///         m[0] = i;
///         tx.send(m).await.map_err(|e| e.error)?;
///     }
///     assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5))?[0], 0);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncSender<'p> {
    tx: Sender<'p>,
    fd: AsyncFd<OwnedFd>,
    wakes: Wakes,
}

impl<'p> Sender<'p> {
    /// This end, awaitable. Call inside a tokio runtime with IO and time
    /// enabled (`enable_all`).
    ///
    /// # Panics
    ///
    /// As [`Receiver::into_async`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::into_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-tx-async", 2, numashm::pool::PeerConfig::new("doc-txa"))?;
    /// assert!(matches!(p.sender(0)?.into_async(), Err(numashm::pool::AsyncError::NoRuntime)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_async(self) -> Result<AsyncSender<'p>, AsyncError> {
        let fd = self.peer.wake_fd()?;
        Ok(AsyncSender {
            tx: self,
            fd,
            wakes: Wakes::default(),
        })
    }
}

impl<'p> AsyncSender<'p> {
    /// Sends, waiting for room in the ring as long as it takes without
    /// blocking the thread.
    ///
    /// # Errors
    ///
    /// [`AsyncSendError`] with the message back: [`AsyncError::Channel`] with
    /// those of [`Sender::send`] but `Full`; [`AsyncError::Reactor`].
    ///
    /// # Examples
    ///
    /// See [`AsyncSender`].
    pub async fn send(&self, msg: SlotMut<'p>) -> Result<(), AsyncSendError<'p>> {
        let peer = self.tx.peer;
        let mut msg = msg;
        loop {
            match self.tx.send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError {
                    error: ChannelError::Full,
                    message,
                }) => msg = message,
                Err(SendError { error, message }) => {
                    return Err(AsyncSendError {
                        error: error.into(),
                        message,
                    })
                }
            }
            // Disarmed when this wait ends, or when the future is dropped.
            let armed = Disarm(|| self.disarm());
            if !self.arm() {
                let woke = await_wake(&self.fd).await;
                drop(armed);
                match woke {
                    Ok(woke) => {
                        if let Some(slices) = self.wakes.count(woke) {
                            peer.slice_over(slices);
                        }
                    }
                    Err(error) => {
                        return Err(AsyncSendError {
                            error,
                            message: msg,
                        })
                    }
                }
            }
        }
    }

    /// Arms our ring's space doorbell, fences, re-checks: `true` if there is
    /// room (or no consumer block to arm, when the slice must rebind).
    fn arm(&self) -> bool {
        let peer = self.tx.peer;
        let mut produced = peer.produced.borrow_mut();
        let Some(p) = produced[self.tx.channel].as_mut() else {
            return false;
        };
        if p.ring.arm_space() {
            SplitConsumer::<SharedSplit>::arm_fence();
        }
        // A corrupt head (a hostile consumer) counts as full: the slice rebinds.
        p.ring.free_space().is_ok_and(|n| n > 0)
    }

    fn disarm(&self) {
        if let Some(p) = self.tx.peer.produced.borrow_mut()[self.tx.channel].as_mut() {
            p.ring.disarm_space();
        }
    }

    /// How the waits for room of this end ended so far: `(woken through
    /// the wake pipe, slices that ended with no room)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # let _g = rt.enter();
    /// let p = numashm::pool::Peer::create_anonymous("doc-swakes", 2, numashm::pool::PeerConfig::new("doc-swakes"))?;
    /// assert_eq!(p.async_sender(0)?.wakes(), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wakes(&self) -> (u64, u64) {
        self.wakes.get()
    }

    /// The sync end inside (to allocate, `queued`, ...).
    ///
    /// # Examples
    ///
    /// See [`AsyncSender`].
    pub fn sender(&self) -> &Sender<'p> {
        &self.tx
    }
}
