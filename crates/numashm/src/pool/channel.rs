//! Sending and receiving through pools: a message is a slot of the sender's
//! pool, written in place, lent to the receiver by a ring cell
//! `[handle, offset, length]`, read in place through the receiver's read-only
//! mapping, and handed back on the receiver's return ring when dropped.
#![allow(unsafe_code)] // slices over slot memory (constructors checked, SAFETY on each)

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use numashm_ring::{SharedSplit, SplitProducer, SplitPushError};
use numashm_varslot::OwnedSlot;

use crate::pool::error::{ChannelError, PoolError};
use crate::pool::own::{P_RECEIVED, P_SENT};
use crate::pool::ends::Link;
use crate::pool::peer::Peer;
use crate::pool::returns::Consumers;

/// A slot of our pool being written: `&mut [u8]` over memory only we can
/// write. Dropped unsent, it goes back to the free list.
///
/// # Examples
///
/// ```
/// let p = numashm::pool::Peer::create_anonymous("doc-slot", 2, numashm::pool::PeerConfig::new("doc-s"))?;
/// let tx = p.sender(0)?;
/// let mut m = tx.alloc(3)?;
/// m.copy_from_slice(b"abc");
/// assert_eq!(m.capacity(), 64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SlotMut<'p> {
    peer: &'p Peer,
    slot: OwnedSlot,
    ptr: NonNull<u8>,
    len: usize,
    /// The slot's class, from the length asked (`NO_CLASS`: a dedicated extent): the
    /// drop finds its front cache without reading anything the allocation wrote.
    class: usize,
}

/// [`SlotMut::class`] of a slot in a dedicated extent.
const NO_CLASS: usize = usize::MAX;

/// Dedicated extents (oversize messages) a pool makes before it waits for
/// returns to reuse one.
const DEDICATED_ROTATION: u64 = 4;

impl SlotMut<'_> {
    /// Bytes the slot can hold.
    ///
    /// # Examples
    ///
    /// See [`SlotMut`].
    pub fn capacity(&self) -> usize {
        self.slot.capacity
    }

    /// The slot's handle (what crosses to the receiver, with the offset and length).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-h", 2, numashm::pool::PeerConfig::new("doc-h"))?;
    /// assert_ne!(p.sender(0)?.alloc(1)?.handle(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> u64 {
        self.slot.handle
    }

    /// Sets the payload length (up to the capacity).
    ///
    /// # Errors
    ///
    /// [`ChannelError::BadLength`] beyond the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-len", 2, numashm::pool::PeerConfig::new("doc-len"))?;
    /// let mut m = p.sender(0)?.alloc(10)?;
    /// m.set_len(4)?;
    /// assert_eq!(m.len(), 4);
    /// assert!(m.set_len(65).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_len(&mut self, len: usize) -> Result<(), ChannelError> {
        if len > self.slot.capacity {
            return Err(ChannelError::BadLength { len, cap: self.slot.capacity });
        }
        self.len = len;
        Ok(())
    }
}

impl std::ops::Deref for SlotMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: 1. `ptr .. ptr + len` is inside the slot (len <= capacity),
        // committed in our pool, which never moves while the peer lives ('p);
        // 2. the slot is Owned by us: our allocator hands a slot out only when
        // free and frees it only through this guard or after it was lent, so no
        // other reference to these bytes exists in this process; the kernel
        // keeps every other process from writing them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for SlotMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SlotMut<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // Never sent: to the allocator's front cache (no pool write), or its
        // free list when that is full. It is Owned, so this cannot fail short of
        // a bug, which the allocator reports rather than acts on.
        // SAFETY: `slot` came from this peer's `alloc`, is Owned (a lent slot's
        // guard is forgotten in `send_masked`; a failed send took it back), and
        // this guard, its only holder, is going away.
        if let Err(slot) = unsafe { self.peer.pool.alloc.push_cached(self.class, self.slot) } {
            recycle_uncached(self.peer, slot);
        }
    }
}

/// A dropped unsent slot the front cache did not take: freed.
#[cold]
#[inline(never)]
fn recycle_uncached(peer: &Peer, slot: OwnedSlot) {
    // SAFETY: as in `SlotMut::drop`, whose guard is going away.
    let _ = unsafe { peer.pool.alloc.recycle(slot) };
}

/// A message received: `&[u8]` over the sender's pool, which the kernel keeps
/// read-only for us. Dropping it hands the slot back to its owner.
///
/// # Examples
///
/// See [`Peer`].
#[derive(Debug)]
pub struct Message<'p> {
    peer: &'p Peer,
    channel: usize,
    link: usize,
    handle: u64,
    ptr: NonNull<u8>,
    len: usize,
}

impl Message<'_> {
    /// The slot's handle in its owner's pool.
    ///
    /// # Examples
    ///
    /// ```
    /// # let a = numashm::pool::Peer::create_anonymous("doc-mh", 2, numashm::pool::PeerConfig::new("doc-mh-a"))?;
    /// # let b = a.join_same(numashm::pool::PeerConfig::new("doc-mh-b"))?;
    /// # let (tx, rx) = (a.sender(0)?, b.receiver(0)?);
    /// tx.send(tx.alloc(1)?).map_err(|e| e.error)?;
    /// assert_ne!(rx.recv_timeout(std::time::Duration::from_secs(5))?.handle(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> u64 {
        self.handle
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr .. ptr + len` was checked to lie inside the sender's
        // memfd (whose size never shrinks: F_SEAL_SHRINK) when received, and the
        // link keeps that read-only mapping alive while we ('p) exist. The owner
        // may still write these bytes (it is its memory); the slice is of plain
        // bytes, so that can change values, never validity.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.peer.give_back_now(self.channel, self.link, self.handle) {
            self.peer.give_back(self.channel, self.link, self.handle);
        }
    }
}

/// A send that failed hands the message back.
#[derive(Debug)]
pub struct SendError<'p> {
    /// Why.
    pub error: ChannelError,
    /// The message, still ours.
    pub message: SlotMut<'p>,
}

impl std::fmt::Display for SendError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "send: {}", self.error)
    }
}

impl std::error::Error for SendError<'_> {}

/// The producer end of a channel: allocates in our pool and pushes into our ring.
///
/// # Examples
///
/// See [`Peer`].
#[derive(Debug)]
pub struct Sender<'p> {
    pub(crate) peer: &'p Peer,
    pub(crate) channel: usize,
}

/// The consumer end of a channel: reads every producer's ring, returns slots.
///
/// # Examples
///
/// See [`Peer`].
#[derive(Debug)]
pub struct Receiver<'p> {
    pub(crate) peer: &'p Peer,
    pub(crate) channel: usize,
}

impl Peer {
    /// The producer end of channel `c` (any number of peers may produce a channel).
    ///
    /// # Errors
    ///
    /// [`PoolError::NoSuchChannel`], [`PoolError::Alloc`] when the pool cannot hold the ring.
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn sender(&self, c: usize) -> Result<Sender<'_>, PoolError> {
        self.produce(c)?;
        Ok(Sender { peer: self, channel: c })
    }

    /// The consumer end of channel `c` (one live consumer per channel).
    ///
    /// # Errors
    ///
    /// [`PoolError::ChannelTaken`] when another live peer consumes it,
    /// [`PoolError::NoSuchChannel`].
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn receiver(&self, c: usize) -> Result<Receiver<'_>, PoolError> {
        self.consume(c)?;
        Ok(Receiver { peer: self, channel: c })
    }

    /// Sends one message to several channels (fan-out): each consumer reads
    /// the same bytes; the slot is freed when the last one has returned it.
    /// Channels whose ring is full are skipped; the result lists the channels
    /// that got it.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Full`] (with the message back) when no channel took it.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::pool::{Peer, PeerConfig};
    /// let a = Peer::create_anonymous("doc-fan", 4, PeerConfig::new("doc-fan-a"))?;
    /// let (b, c) = (a.join_same(PeerConfig::new("doc-fan-b"))?, a.join_same(PeerConfig::new("doc-fan-c"))?);
    /// let (t1, t2) = (a.sender(1)?, a.sender(2)?);
    /// let (r1, r2) = (b.receiver(1)?, c.receiver(2)?);
    /// let mut m = t1.alloc(2)?;
    /// m.copy_from_slice(b"hi");
    /// assert_eq!(a.send_to_all(m, &[&t1, &t2]).map_err(|e| e.error)?, 0b110);
    /// let d = std::time::Duration::from_secs(5);
    /// assert_eq!(&*r1.recv_timeout(d)?, b"hi");
    /// assert_eq!(&*r2.recv_timeout(d)?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to_all<'p>(&'p self, msg: SlotMut<'p>, to: &[&Sender<'p>]) -> Result<u64, SendError<'p>> {
        let mask = to.iter().fold(0u64, |m, s| m | 1 << s.channel);
        if mask == 0 {
            return Err(SendError { error: ChannelError::Full, message: msg });
        }
        self.send_masked(msg, mask)
    }

    /// Lends `msg` to every channel in `mask`, pushes a cell into each ring.
    fn send_masked<'p>(&'p self, msg: SlotMut<'p>, mask: u64) -> Result<u64, SendError<'p>> {
        let alloc = &self.pool.alloc;
        let h = msg.slot.handle;
        if let Err(e) = alloc.lend_slot(&msg.slot, mask) {
            return Err(SendError { error: ChannelError::Handle(e), message: msg });
        }
        let cell = [h, msg.slot.offset as u64, msg.len as u64];
        let mut sent = 0u64;
        let mut rebind = 0u64;
        {
            let mut produced = self.produced.borrow_mut();
            // The consumer word is read while unbound, and while bound once
            // per move of the change count (a claim or a release bumps it
            // after its CAS): `Rendezvous::settled`. One load for every channel.
            let changes = self.rdv.changes();
            let settled = self.rdv.settled(changes);
            let mut m = mask;
            while m != 0 {
                let c = m.trailing_zeros() as usize;
                m &= m - 1;
                let Some(p) = produced[c].as_mut() else { continue };
                if settled & 1 << c == 0 || p.bound.is_none() {
                    if p.wants_bind(self.rdv.consumer_of(c)) {
                        rebind |= 1 << c;
                    } else if p.bound.is_some() {
                        // It names our consumer: no need to read it again until the count moves.
                        self.rdv.settle(c, changes);
                    }
                }
                match p.ring.push(cell) {
                    Ok(()) => {
                        sent |= 1 << c;
                        p.unreturned += 1;
                        if p.bound.is_none() {
                            self.unbound_sent.set(self.unbound_sent.get() | 1 << c);
                        }
                        if p.returns_due() {
                            self.returns_due.set(self.returns_due.get() | 1 << c);
                        }
                    }
                    Err(SplitPushError::Full | SplitPushError::Corrupt(_) | SplitPushError::Wake(_)) => {}
                }
            }
            if sent != 0 {
                // One Dekker fence for every ring pushed above (a fan-out pays one), then each bell.
                SplitProducer::<SharedSplit>::notify_fence();
                let mut m = sent;
                while m != 0 {
                    let c = m.trailing_zeros() as usize;
                    m &= m - 1;
                    if let Some(p) = produced[c].as_mut() {
                        // A failed FUTEX_WAKE still pushed: the receiver's bounded park finds it.
                        if let Ok(true) = p.ring.notify_after_fence() {
                            // It was parked: an async consumer waits on its wake pipe.
                            if let Some(b) = p.bound.as_mut() {
                                b.wake.signal(&b.remote);
                            }
                        }
                    }
                }
            }
        }
        if sent == 0 {
            // Nobody took it: Lent -> Owned again, so the caller can retry or drop it.
            let _ = alloc.take_back(h);
            return Err(SendError { error: ChannelError::Full, message: msg });
        }
        // Channels that did not take it give their share back (a share stays: not freed).
        let mut m = mask & !sent;
        while m != 0 {
            let _ = alloc.give_back(h, m.trailing_zeros());
            m &= m - 1;
        }
        std::mem::forget(msg); // lent now: the readers' returns free it
        self.pool.bump(P_SENT, 1);
        // Slow path, rarely: no consumer bound yet, or the rendezvous names another.
        while rebind != 0 {
            let _ = self.bind(rebind.trailing_zeros() as usize);
            rebind &= rebind - 1;
        }
        Ok(sent)
    }
}

impl<'p> Sender<'p> {
    /// A slot of at least `len` bytes in our pool.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Alloc`] when the pool is at its maximum (after taking
    /// back every returned slot) or `len` can never fit.
    ///
    /// # Examples
    ///
    /// See [`SlotMut`].
    #[inline(always)]
    pub fn alloc(&self, len: usize) -> Result<SlotMut<'p>, ChannelError> {
        let peer = self.peer;
        let alloc = &peer.pool.alloc;
        // The fast path: a slot this thread allocated and dropped unsent, from the
        // class's front cache (no pool word read or written).
        if let Some(class) = alloc.class_for(len) {
            if let Some(slot) = alloc.pop_cached(class) {
                if let Ok(ptr) = alloc.slot_ptr(&slot) {
                    return Ok(SlotMut { peer, slot, ptr, len, class });
                }
                recycle_uncached(peer, slot);
            }
        }
        self.alloc_slow(len)
    }

    /// Nothing in the front cache: the class's free list; when that is empty,
    /// take back what readers returned, then grow.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, len: usize) -> Result<SlotMut<'p>, ChannelError> {
        let peer = self.peer;
        let alloc = &peer.pool.alloc;
        // Returns from readers that may have many (so that no return ring
        // fills up and makes its reader hold returns back), then the free
        // list; when the class is dry, all returns, silent consumers, growth.
        if peer.returns_due.get() != 0 {
            peer.drain_returns(Consumers::Quiet);
        }
        let class = alloc.class_for(len).unwrap_or(NO_CLASS);
        let slot = match alloc.alloc(len, false) {
            Ok(s) => s,
            // An oversize message with no free extent large enough: a few such
            // extents rotate, so that sending the next one does not wait for the
            // return of the one just sent (taking returns one at a time costs a
            // line transfer per message).
            Err(_) if class == NO_CLASS && alloc.dedicated_extents() < DEDICATED_ROTATION => match alloc.alloc(len, true) {
                Ok(s) => s,
                Err(_) => {
                    peer.drain_returns(Consumers::IfSilent);
                    alloc.alloc(len, true)?
                }
            },
            Err(_) => {
                peer.drain_returns(Consumers::IfSilent);
                alloc.alloc(len, true)?
            }
        };
        let ptr = match alloc.slot_ptr(&slot) {
            Ok(p) => p,
            Err(e) => {
                recycle_uncached(peer, slot);
                return Err(ChannelError::Handle(e));
            }
        };
        Ok(SlotMut { peer, slot, ptr, len, class })
    }

    /// Sends without waiting; a full ring hands the message back.
    ///
    /// # Errors
    ///
    /// [`SendError`] with [`ChannelError::Full`].
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    #[inline]
    pub fn send(&self, msg: SlotMut<'p>) -> Result<(), SendError<'p>> {
        match self.peer.send_masked(msg, 1 << self.channel) {
            Ok(_) => Ok(()),
            Err(SendError { error: ChannelError::Full, message }) => {
                // Slow path: a consumer that died is replaced (its slots reclaimed).
                let _ = self.peer.bind(self.channel);
                self.peer.send_masked(message, 1 << self.channel).map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ChannelError::TimedOut`] with the message back, and those of [`Sender::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-st", 2, numashm::pool::PeerConfig::new("doc-st"))?;
    /// let tx = p.sender(0)?;
    /// tx.send_timeout(tx.alloc(1)?, std::time::Duration::from_millis(10)).map_err(|e| e.error)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, msg: SlotMut<'p>, timeout: Duration) -> Result<(), SendError<'p>> {
        // The busy path (room in the ring) reads no clock.
        let mut msg = match self.send(msg) {
            Err(SendError { error: ChannelError::Full, message }) => message,
            other => return other,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(SendError { error: ChannelError::TimedOut, message: msg });
            }
            self.peer.upkeep();
            let slice = deadline.min(Instant::now() + Duration::from_millis(50));
            {
                let mut produced = self.peer.produced.borrow_mut();
                if let Some(p) = produced[self.channel].as_mut() {
                    let _ = p.ring.wait_for_space(Some(slice));
                }
            }
            match self.send(msg) {
                Err(SendError { error: ChannelError::Full, message }) => msg = message,
                other => return other,
            }
        }
    }

    /// Messages in this end's ring that its consumer has not taken yet (all
    /// of them while no consumer is bound): each is lent until read and returned.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-queued", 2, numashm::pool::PeerConfig::new("doc-q"))?;
    /// let tx = p.sender(0)?;
    /// tx.send(tx.alloc(1)?).map_err(|e| e.error)?;
    /// assert_eq!(tx.queued(), 1); // nobody consumes channel 0 yet
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn queued(&self) -> usize {
        let mut produced = self.peer.produced.borrow_mut();
        let Some(p) = produced[self.channel].as_mut() else { return 0 };
        let cap = p.ring.capacity();
        // A corrupt head (a hostile consumer) counts as a full ring.
        cap - p.ring.free_space().unwrap_or(0)
    }

    /// The channel this end feeds.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-sc", 2, numashm::pool::PeerConfig::new("doc-sc"))?;
    /// assert_eq!(p.sender(3)?.channel(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> usize {
        self.channel
    }
}

impl<'p> Receiver<'p> {
    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Empty`] when nothing waits. A cell whose offset or
    /// length does not fit its sender's pool is dropped and counted, never read.
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    #[inline]
    pub fn try_recv(&self) -> Result<Message<'p>, ChannelError> {
        match self.recv_next() {
            Some(m) => Ok(m),
            None => self.try_recv_all(),
        }
    }

    /// The busy path: one pop from the link whose turn it is, when that link is
    /// confirmed and has no held-back returns; `None` sends the caller to
    /// [`Receiver::try_recv_all`], which goes on from the same link (a cell
    /// popped and dropped here was a bad one, which it would skip too).
    #[inline(always)]
    fn recv_next(&self) -> Option<Message<'p>> {
        let mut consumed = self.peer.consumed.borrow_mut();
        let cs = consumed.get_mut(self.channel)?.as_mut()?;
        let li = cs.next;
        let n = cs.links.len();
        let l = cs.links.get_mut(li)?.as_mut()?;
        if !l.confirmed || !l.overflow.is_empty() {
            return None;
        }
        let cell = l.ring.pop().ok()??;
        let m = self.deliver(l, li, cell)?;
        cs.next = if li + 1 >= n { 0 } else { li + 1 };
        Some(m)
    }

    /// Every link, round-robin from the one whose turn it is; the slow paths
    /// (held-back returns, an unconfirmed link, a rescan) are taken here.
    #[inline(never)]
    fn try_recv_all(&self) -> Result<Message<'p>, ChannelError> {
        let peer = self.peer;
        let c = self.channel;
        {
            let mut consumed = peer.consumed.borrow_mut();
            if let Some(cs) = consumed[c].as_mut() {
                let n = cs.links.len();
                // Round-robin from `next`, wrapping without a division.
                let mut li = if cs.next < n { cs.next } else { 0 };
                for _ in 0..n {
                    let i = li;
                    li = if li + 1 == n { 0 } else { li + 1 };
                    let Some(l) = cs.links[i].as_mut() else { continue };
                    // Only a ring whose producer has bound us (see ends.rs).
                    if !l.readable(peer.pool.id) {
                        continue;
                    }
                    if !l.overflow.is_empty() {
                        crate::pool::returns::flush_overflow(l);
                    }
                    // Bounded: a hostile producer's bad cells are skipped, at most a ring's worth.
                    for _ in 0..=l.ring.capacity() {
                        let cell = match l.ring.pop() {
                            Ok(Some(cell)) => cell,
                            Ok(None) | Err(_) => break,
                        };
                        if let Some(m) = self.deliver(l, i, cell) {
                            cs.next = li;
                            return Ok(m);
                        }
                    }
                }
                if peer.rdv.changes() == cs.seen_changes {
                    drop(consumed);
                    peer.idle();
                    return Err(ChannelError::Empty);
                }
            }
        }
        // Slow path: the set of producers may have changed.
        peer.rescan(c);
        peer.idle();
        Err(ChannelError::Empty)
    }

    /// A popped cell `[handle, offset, length]` as a message, if it lies
    /// inside its sender's pool (else it is dropped: nothing to read or return).
    #[inline(always)]
    fn deliver(&self, l: &mut Link, li: usize, cell: [u64; 3]) -> Option<Message<'p>> {
        let [handle, off, len] = cell;
        // Room in the producer's ring now: a producer parked on it is told (batched).
        l.popped();
        if !l.covers(off, len) {
            return None;
        }
        let ptr = l.remote.ptr(off);
        l.held += 1;
        self.peer.pool.bump(P_RECEIVED, 1);
        Some(Message { peer: self.peer, channel: self.channel, link: li, handle, ptr, len: len as usize })
    }

    /// Receives, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`ChannelError::TimedOut`], and those of [`Receiver::try_recv`] but `Empty`.
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<'p>, ChannelError> {
        // A message already waiting is taken without reading the clock.
        match self.try_recv() {
            Err(ChannelError::Empty) => {}
            other => return other,
        }
        self.wait(Some(Instant::now() + timeout))
    }

    /// Receives, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// Those of [`Receiver::try_recv`] but `Empty`.
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn recv(&self) -> Result<Message<'p>, ChannelError> {
        self.wait(None)
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<Message<'p>, ChannelError> {
        let mut spins = 0u32;
        loop {
            match self.try_recv() {
                Err(ChannelError::Empty) => {}
                other => return other,
            }
            spins += 1;
            if spins < 64 {
                // Spinning reads no clock: a message is seen as soon as it lands.
                std::hint::spin_loop();
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ChannelError::TimedOut);
            }
            // Park on the producer's doorbell when there is exactly one link;
            // with several, sleep in short slices (each producer's bell is its
            // own word). Either way the slice is bounded, so a change of
            // producers (or the deadline) is seen.
            if spins % 8 == 0 {
                // Every few slices: repair what others may have overwritten, relink.
                self.peer.upkeep();
            }
            // A consumer of ours may be waiting for us to bind it.
            self.peer.bind_unbound();
            let single = self.links() == 1;
            let slice = Instant::now() + if single { Duration::from_millis(50) } else { Duration::from_micros(200) };
            let slice = deadline.map_or(slice, |d| d.min(slice));
            if !single {
                std::thread::sleep(slice.saturating_duration_since(Instant::now()));
                continue;
            }
            let mut consumed = self.peer.consumed.borrow_mut();
            let Some(cs) = consumed[self.channel].as_mut() else { continue };
            let Some((li, l)) = cs.links.iter_mut().enumerate().find_map(|(i, l)| l.as_mut().map(|l| (i, l))) else { continue };
            if !l.readable(self.peer.pool.id) {
                // Not bound yet: the producer binds on its next slow path.
                drop(consumed);
                std::thread::sleep(Duration::from_micros(200).min(slice.saturating_duration_since(Instant::now())));
                continue;
            }
            if let Ok(Some(cell)) = l.ring.wait(Some(slice)) {
                if let Some(m) = self.deliver(l, li, cell) {
                    return Ok(m);
                }
            }
        }
    }

    fn links(&self) -> usize {
        self.peer.consumed.borrow()[self.channel].as_ref().map_or(0, |cs| cs.links.iter().flatten().count())
    }

    /// Ends this handle without leaving the channel: the claim, the links and
    /// their positions stay with the peer, and the next `receiver(c)` of the
    /// same peer reads on from where this one stopped. Dropping a `Receiver`
    /// leaves the channel instead (its producers rebind the next consumer to a
    /// fresh ring). For [`Peer::hand_over`], which needs every end dropped:
    /// the successor's `receiver(c)` reads on, nothing lost or read twice.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = numashm::pool::Peer::create_anonymous("doc-detach", 2, numashm::pool::PeerConfig::new("doc-da"))?;
    /// let b = a.join_same(numashm::pool::PeerConfig::new("doc-db"))?;
    /// let tx = a.sender(0)?;
    /// b.receiver(0)?.detach();
    /// let mut m = tx.alloc(1)?;
    /// m[0] = 7;
    /// tx.send(m).map_err(|e| e.error)?;
    /// assert_eq!(b.receiver(0)?.recv_timeout(std::time::Duration::from_secs(5))?[0], 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(self) {
        // No `unconsume`: the peer keeps consuming the channel.
        std::mem::forget(self);
    }

    /// The channel this end drains.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-rc", 2, numashm::pool::PeerConfig::new("doc-rc"))?;
    /// assert_eq!(p.receiver(2)?.channel(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(&self) -> usize {
        self.channel
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        // A copy left in a hand-over's successor by `fork` leaves nothing.
        if self.peer.pid == std::process::id() {
            self.peer.unconsume(self.channel);
        }
    }
}
