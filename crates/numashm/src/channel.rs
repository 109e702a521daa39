//! Typed zero-copy send and receive over a ring of slot handles.
//!
//! A message is a slot of the segment's allocator: the sender allocates it,
//! writes the payload in place and sends its handle; the receiver reads the
//! payload in place and frees the slot by dropping the message. The payload
//! starts at the slot's first byte (a 64 B message is one cache line); its
//! length travels in the slot's spare metadata word (`set_aux`), on the
//! metadata line both sides touch anyway, and is hostile input to the receiver.
#![allow(unsafe_code)] // slices over slot memory (two constructors, each with SAFETY)

use std::cell::RefCell;
use std::time::{Duration, Instant};

use numashm_ring::{Armed, EventFd, PopError, PushError, SharedBell, SharedMemory, SpscConsumer, SpscProducer};
use numashm_varslot::{AllocError, Handle, HandleError, Located};

use crate::error::{MessageError, SegmentError};
use crate::peers::{E_RECEIVED, E_SENT};
use crate::segment::{
    peer_id, ring_pseudo_peer, RingSlot, Segment, END_CONSUMER, END_PENDING, END_PENDING_AT, END_PRODUCER, END_SKIPPED,
};
use crate::sync::Ordering;


/// A slot being written: dereferences to the payload bytes; freed on drop
/// unless sent.
///
/// # Examples
///
/// ```
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-slotmut"))?;
/// let tx = seg.sender(0)?;
/// let mut msg = tx.alloc(3)?;
/// msg.copy_from_slice(b"abc");
/// assert_eq!(msg.len(), 3);
/// drop(msg); // never sent: the slot is freed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SlotMut<'s> {
    seg: &'s Segment,
    slot: Option<Located>,
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

impl SlotMut<'_> {
    /// The slot's handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-handle"))?;
    /// let msg = seg.sender(0)?.alloc(1)?;
    /// assert_ne!(msg.handle().to_u64(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> Handle {
        self.slot.map(|l| l.handle()).expect("a live SlotMut has a slot")
    }

    /// Payload capacity of the slot (its class size).
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-cap"))?;
    /// assert_eq!(seg.sender(0)?.alloc(10)?.capacity(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Changes the payload length (up to the capacity).
    ///
    /// # Errors
    ///
    /// [`MessageError::BadLength`] beyond the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-setlen"))?;
    /// let mut m = seg.sender(0)?.alloc(10)?;
    /// m.set_len(4)?;
    /// assert_eq!(m.len(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_len(&mut self, len: usize) -> Result<(), MessageError> {
        if len > self.cap {
            return Err(MessageError::BadLength { len: len as u64, cap: self.cap });
        }
        self.len = len;
        Ok(())
    }
}

impl std::ops::Deref for SlotMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: 1. `ptr .. ptr + len` lies inside the slot (len <= cap = slot
        // size), which stays mapped while the segment lives;
        // 2. the slot is Allocated to this process, so by protocol no other peer
        // writes it until it is sent (a hostile peer writing anyway can only
        // change byte values: the slice is of plain bytes).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for SlotMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for SlotMut<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.slot.take() {
            // Unsent: give the slot back.
            self.seg.free_slot(&l);
        }
    }
}

/// A received message: dereferences to the payload; frees its slot on drop.
///
/// # Examples
///
/// See [`Receiver`].
#[derive(Debug)]
pub struct Message<'s> {
    seg: &'s Segment,
    slot: Located,
    ptr: *const u8,
    len: usize,
}

impl Message<'_> {
    /// The slot's handle.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::os::fd::AsFd;
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-msg"))?;
    /// let (tx, rx) = (seg.sender(0)?, seg.receiver(0)?);
    /// tx.send(tx.alloc(1)?).map_err(|e| e.error)?;
    /// assert_ne!(rx.recv()?.handle().to_u64(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> Handle {
        self.slot.handle()
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr .. ptr + len` was checked against the slot size when the
        // message was received; the slot is Allocated to us until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        // This slot is likely our next alloc (the cache is LIFO): ask for its
        // first line writable now, so that the write waits on no other core.
        crate::prefetch::prefetch_for_write(self.ptr);
        self.seg.free_slot(&self.slot);
    }
}

/// A failed send hands the message back.
#[derive(Debug)]
pub struct SendError<'s> {
    /// Why.
    pub error: MessageError,
    /// The message, still allocated, to retry or drop.
    pub message: SlotMut<'s>,
}

impl std::fmt::Display for SendError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "send: {}", self.error)
    }
}

impl std::error::Error for SendError<'_> {}

/// The sending end of a ring (the SPSC producer end is exclusive to one peer).
///
/// # Examples
///
/// See [`Segment`].
#[derive(Debug)]
pub struct Sender<'s> {
    seg: &'s Segment,
    ring: usize,
    slot: &'s RingSlot,
    producer: RefCell<Option<SpscProducer<SharedMemory>>>,
    event: Option<EventFd>,
}

/// The receiving end of a ring (the SPSC consumer end is exclusive to one peer).
///
/// # Examples
///
/// ```
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-rx"))?;
/// let (tx, rx) = (seg.sender(0)?, seg.receiver(0)?);
/// assert!(matches!(rx.try_recv(), Err(numashm::MessageError::Empty)));
/// let mut m = tx.alloc(2)?;
/// m.copy_from_slice(b"hi");
/// tx.send(m).map_err(|e| e.error)?;
/// let got = rx.recv_timeout(std::time::Duration::from_secs(1))?;
/// assert_eq!(&*got, b"hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Receiver<'s> {
    seg: &'s Segment,
    ring: usize,
    slot: &'s RingSlot,
    consumer: RefCell<Option<SpscConsumer<SharedMemory>>>,
}

impl Segment {
    fn claim_end(&self, ring: usize, slot: &RingSlot, word: usize, name: &'static str) -> Result<(), SegmentError> {
        let me = u64::from(peer_id(self.me));
        let end = slot.ends.at(word);
        let mut recovered = false;
        let mut last = 0;
        // Bounded: a word another process keeps rewriting ends in EndTaken, not a spin.
        for _ in 0..64 {
            // Acquire: see what the previous holder did before releasing the end.
            let cur = end.load(Ordering::Acquire);
            if cur == me {
                return Ok(());
            }
            let named = cur != u64::MAX && (1..=u64::from(self.peers.max)).contains(&cur);
            if cur != 0 && cur != u64::MAX && !named {
                // Not a peer id at all (another process wrote garbage): nobody holds
                // the end. AcqRel: exactly one claimer takes it.
                last = (cur as u32).wrapping_sub(1);
                if end.compare_exchange(cur, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if cur != 0 {
                // Held: only by a live, attached peer (a dead one's end is recoverable).
                let holder = (cur as u32).wrapping_sub(1);
                last = holder;
                let held = cur != u64::MAX && holder < self.peers.max && {
                    let (state, _, pid) = self.peers.ident(holder);
                    state == crate::PeerState::Attached && crate::peers::is_alive(pid, self.peers.started(holder))
                };
                if held || cur == u64::MAX {
                    return Err(SegmentError::EndTaken { ring, end: name, peer: holder });
                }
                // A dead holder: never just take its end over. A producer may have
                // died between marking a slot in flight and pushing it, which only
                // its pending-send record tells; a consumer's ring holds slots in
                // flight to it. Recover it (any peer may), which frees the end.
                if !recovered {
                    recovered = true;
                    self.recover_dead_peers();
                    continue;
                }
                // Still named after a recovery (its entry was already released, e.g.
                // by a recoverer that died half-way): clean up this end alone.
                let _ = if word == END_PRODUCER {
                    crate::segment::release_producer_end(holder, &self.alloc, slot)
                } else {
                    crate::segment::release_consumer_end(holder, &self.alloc, slot)
                };
                continue;
            }
            // AcqRel: exactly one claimer wins the end.
            if end.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Ok(());
            }
        }
        Err(SegmentError::EndTaken { ring, end: name, peer: last })
    }

    /// The sending end of ring `ring`.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NoSuchRing`], [`SegmentError::EndTaken`] when another
    /// live peer holds an SPSC producer end, [`SegmentError::RingCorrupt`].
    ///
    /// # Examples
    ///
    /// See [`Segment`].
    pub fn sender(&self, ring: usize) -> Result<Sender<'_>, SegmentError> {
        let slot = self.ring(ring)?;
        let producer = match &slot.spsc {
            Some(s) => {
                self.claim_end(ring, slot, END_PRODUCER, "producer")?;
                Some(s.producer()?)
            }
            None => None,
        };
        Ok(Sender { seg: self, ring, slot, producer: RefCell::new(producer), event: None })
    }

    /// The receiving end of ring `ring`.
    ///
    /// # Errors
    ///
    /// As [`Segment::sender`], for the consumer end.
    ///
    /// # Examples
    ///
    /// See [`Receiver`].
    pub fn receiver(&self, ring: usize) -> Result<Receiver<'_>, SegmentError> {
        let slot = self.ring(ring)?;
        let consumer = match &slot.spsc {
            Some(s) => {
                self.claim_end(ring, slot, END_CONSUMER, "consumer")?;
                Some(s.consumer()?)
            }
            None => None,
        };
        Ok(Receiver { seg: self, ring, slot, consumer: RefCell::new(consumer) })
    }

    fn release_end(&self, slot: &RingSlot, word: usize) {
        let me = u64::from(peer_id(self.me));
        // Release: what we did with the end happens before the next holder's claim.
        let _ = slot.ends.at(word).compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

impl<'s> Sender<'s> {
    /// Allocates a slot for a payload of `len` bytes, owned by this peer.
    ///
    /// # Errors
    ///
    /// [`MessageError::Alloc`] (`TooLarge`, or `Exhausted` after the owner was
    /// asked to grow the class — the host grows it at once).
    ///
    /// # Examples
    ///
    /// See [`SlotMut`].
    ///
    /// With extents on several NUMA nodes, extents on the node this process
    /// attached on are preferred, then the others by distance; see
    /// [`Sender::alloc_on`] to choose.
    #[inline]
    pub fn alloc(&self, len: usize) -> Result<SlotMut<'s>, MessageError> {
        self.alloc_in_order(len, &self.seg.alloc_order, true)
    }

    /// Like [`Sender::alloc`], preferring extents on `node`, then the others by
    /// distance from it.
    ///
    /// # Errors
    ///
    /// As [`Sender::alloc`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-alloc-on"))?;
    /// let node = numashm::Topology::get()?.nodes()[0].os_index;
    /// let msg = seg.sender(0)?.alloc_on(100, node)?;
    /// assert_eq!(seg.allocator().extent_info(msg.handle().class(), msg.handle().extent()).unwrap().0, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc_on(&self, len: usize, node: u32) -> Result<SlotMut<'s>, MessageError> {
        let order = numashm_region::Topology::get().map(|t| t.nodes_by_distance(node)).unwrap_or_default();
        self.alloc_in_order(len, &order, false)
    }

    /// `cached`: whether this process's slot cache may serve it (the default
    /// order only; the cache does not sort its slots by node).
    #[inline]
    fn alloc_in_order(&self, len: usize, order: &[u32], cached: bool) -> Result<SlotMut<'s>, MessageError> {
        let seg = self.seg;
        let me = peer_id(seg.me);
        let need = len.max(1);
        // This process's cache first (not for an explicit node choice).
        if cached {
            if let Some(l) = seg.alloc.class_for(need).ok().and_then(|c| seg.cache.pop(&seg.alloc, me, c)) {
                match seg.alloc.bytes(&l) {
                    Ok(slot) => return Ok(SlotMut { seg, slot: Some(l), ptr: slot.as_ptr(), len, cap: slot.len() }),
                    Err(_) => {
                        let _ = seg.alloc.free(l.handle());
                    }
                }
            }
        }
        // With one node there is nothing to prefer: take the plain (faster) path.
        let alloc = |need| if order.len() > 1 { seg.alloc.alloc_on(need, me, order) } else { seg.alloc.alloc(need, me) };
        let h = match alloc(need) {
            Ok(h) => h,
            Err(AllocError::Exhausted { class }) if seg.alloc.is_owner() => {
                seg.alloc.grow(class, seg.node)?;
                alloc(need)?
            }
            Err(e) => return Err(e.into()),
        };
        let located = seg.alloc.locate_live(h).and_then(|l| seg.alloc.bytes(&l).map(|s| (l, s)));
        let (l, slot) = match located {
            Ok(ls) => ls,
            Err(e) => {
                let _ = seg.alloc.free(h);
                return Err(e.into());
            }
        };
        let cap = slot.len();
        Ok(SlotMut { seg, slot: Some(l), ptr: slot.as_ptr(), len, cap })
    }

    /// Sends without waiting. A full ring hands the message back.
    ///
    /// # Errors
    ///
    /// [`SendError`] with [`MessageError::Full`] (the consumer lags),
    /// [`MessageError::Ring`] for corrupt indices, [`MessageError::Handle`]
    /// when the slot was reclaimed meanwhile.
    ///
    /// # Examples
    ///
    /// See [`Segment`].
    #[inline]
    pub fn send(&self, mut msg: SlotMut<'s>) -> Result<(), SendError<'s>> {
        let seg = self.seg;
        let Some(l) = msg.slot else {
            return Err(SendError { error: MessageError::Handle(HandleError::Stale), message: msg });
        };
        let h = l.handle();
        // The receiver becomes the slot's owner while in flight, so if it dies the
        // slot is reclaimed with it; with no consumer yet (or MPMC), the ring holds it.
        // Acquire: the consumer end's claim is visible before we use its id.
        let consumer = self.slot.ends.at(END_CONSUMER).load(Ordering::Acquire);
        let to = if self.slot.spsc.is_some() && consumer != 0 && consumer != u64::MAX {
            consumer as u32
        } else {
            ring_pseudo_peer(self.ring)
        };
        let mut producer = self.producer.borrow_mut();
        if let Some(p) = producer.as_ref() {
            // Intent record for recovery, in case we die between marking the slot
            // in flight and pushing it (see `release_peer`): the handle, then the
            // position its push will write. Single writer: this peer holds the
            // producer end. Relaxed: published by the Release store after it.
            let ends = &self.slot.ends;
            ends.at(END_PENDING).store(h.to_u64(), Ordering::Relaxed);
            // Release: a recoverer that reads this position reads the handle above.
            ends.at(END_PENDING_AT).store(p.position(), Ordering::Release);
        }
        // The length rides in the slot's spare metadata word, published by the
        // AcqRel CAS that marks it in flight.
        if let Err(e) = seg.alloc.send_located(&l, peer_id(seg.me), to, msg.len as u64) {
            return Err(SendError { error: e.into(), message: msg });
        }
        let pushed = match producer.as_mut() {
            Some(p) => p.push(h.to_u64()),
            None => match &self.slot.mpmc {
                Some(m) => m.push(h.to_u64()),
                None => Ok(()),
            },
        };
        match pushed {
            Ok(()) => {
                drop(producer);
                msg.slot = None; // now the receiver's to free
                seg.peers.bump(seg.me, E_SENT, 1);
                // No syscall unless a receiver is parked (futex) or armed (eventfd).
                let _ = match &self.event {
                    Some(ev) => self.slot.data_bell.notify_with(ev),
                    None => self.slot.data_bell.notify(),
                };
                Ok(())
            }
            Err(e) => {
                // Back to Allocated-by-us so the caller can retry or drop it.
                let _ = seg.alloc.take(h, peer_id(seg.me));
                let error = match e {
                    PushError::Full(_) => MessageError::Full,
                    PushError::Corrupt(_, c) => MessageError::Ring(c),
                };
                Err(SendError { error, message: msg })
            }
        }
    }

    /// Sends, waiting up to `timeout` (forever with `None`) for room in the ring:
    /// spin, then park on the ring's "space" doorbell.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`], plus [`MessageError::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-sendt"))?;
    /// let tx = seg.sender(0)?;
    /// tx.send_timeout(tx.alloc(1)?, Some(std::time::Duration::from_millis(10))).map_err(|e| e.error)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, mut msg: SlotMut<'s>, timeout: Option<Duration>) -> Result<(), SendError<'s>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match self.send(msg) {
                Err(SendError { error: MessageError::Full, message }) => msg = message,
                other => return other,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(SendError { error: MessageError::TimedOut, message: msg });
            }
            let cap = self.slot.spec.capacity as usize;
            let has_room = || (self.slot.fill().unwrap_or(cap) < cap).then_some(());
            if let Err(e) = self.slot.space_bell.wait_for(has_room, left) {
                return Err(SendError { error: e.into(), message: msg });
            }
        }
    }

    /// Sends, waiting as long as it takes for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-sendb"))?;
    /// let tx = seg.sender(0)?;
    /// tx.send_blocking(tx.alloc(1)?).map_err(|e| e.error)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_blocking(&self, msg: SlotMut<'s>) -> Result<(), SendError<'s>> {
        self.send_timeout(msg, None)
    }

    /// Also signal `event` when a receiver has armed the ring
    /// ([`Receiver::arm`]): the receiving process waits on that eventfd in
    /// epoll / mio / tokio. The eventfd is created by the receiver and reaches
    /// the sender by `fork`, `SCM_RIGHTS` (see [`crate::ownership`]'s broker) or
    /// `pidfd_getfd`. While nobody is armed, sending makes no syscall.
    ///
    /// With tokio, the receiving side looks like this:
    ///
    /// ```text
    /// let ev = numashm::EventFd::new()?;               // send a dup to the producer
    /// let afd = tokio::io::unix::AsyncFd::new(ev)?;
    /// loop {
    ///     let _armed = rx.arm();                       // producers signal us now
    ///     match rx.try_recv() {
    ///         Ok(msg) => { handle(&msg); continue; }   // drain before waiting
    ///         Err(numashm::MessageError::Empty) => {}
    ///         Err(e) => return Err(e.into()),
    ///     }
    ///     let mut guard = afd.readable().await?;
    ///     guard.get_inner().drain()?;
    ///     guard.clear_ready();
    /// }
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-eventfd"))?;
    /// let ev = numashm::EventFd::new()?;
    /// let mut tx = seg.sender(0)?;
    /// use std::os::fd::AsFd;
    /// tx.set_eventfd(numashm::EventFd::from(ev.as_fd().try_clone_to_owned()?));
    /// let rx = seg.receiver(0)?;
    /// let armed = rx.arm();
    /// tx.send(tx.alloc(1)?).map_err(|e| e.error)?;
    /// assert_eq!(ev.drain()?, 1); // the eventfd became readable
    /// drop(armed);
    /// assert_eq!(rx.try_recv()?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_eventfd(&mut self, event: EventFd) {
        self.event = Some(event);
    }

    /// The ring this sender feeds.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-ring"))?;
    /// assert_eq!(seg.sender(1)?.ring(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> usize {
        self.ring
    }
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        if self.slot.spsc.is_some() {
            self.seg.release_end(self.slot, END_PRODUCER);
        }
    }
}

impl<'s> Receiver<'s> {
    fn pop_handle(&self) -> Result<Option<u64>, MessageError> {
        let popped = match self.consumer.borrow_mut().as_mut() {
            Some(c) => c.pop(),
            None => match &self.slot.mpmc {
                Some(m) => m.pop(),
                None => Err(PopError::Empty),
            },
        };
        match popped {
            Ok(v) => Ok(Some(v)),
            Err(PopError::Empty) => Ok(None),
            Err(PopError::Corrupt(c)) => Err(MessageError::Ring(c)),
        }
    }

    /// Receives without waiting. Handles whose slot was reclaimed (their sender
    /// died) are skipped and counted in the ring's `skipped` counter.
    ///
    /// # Errors
    ///
    /// [`MessageError::Empty`] when nothing is there; [`MessageError::Ring`]
    /// for corrupt ring indices; [`MessageError::BadLength`] for a hostile
    /// length (the slot is freed).
    ///
    /// # Examples
    ///
    /// See [`Receiver`].
    #[inline]
    pub fn try_recv(&self) -> Result<Message<'s>, MessageError> {
        let seg = self.seg;
        let me = peer_id(seg.me);
        loop {
            let Some(raw) = self.pop_handle()? else { return Err(MessageError::Empty) };
            // Room in the ring now: wake a producer parked on it (no syscall otherwise).
            let _ = self.slot.space_bell.notify();
            // In flight to us (the sender saw us holding this end): ours already,
            // one load. In flight to anyone else (the ring's pseudo-peer, an earlier
            // holder of this end): made ours by CAS, so that exactly one of us and
            // a recoverer gets it, and we never read a slot someone else frees.
            let received = Handle::from_u64(raw)
                .ok_or(HandleError::Invalid { field: "handle" })
                .and_then(|h| seg.alloc.receive(h, me));
            let (l, len) = match received {
                Ok(r) => r,
                Err(_) => {
                    // Stale (reclaimed) or garbage: skip it, visibly.
                    // Relaxed: a statistic.
                    self.slot.ends.at(END_SKIPPED).fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let slot = match seg.alloc.bytes(&l) {
                Ok(s) => s,
                Err(e) => {
                    let _ = seg.alloc.free(l.handle());
                    return Err(e.into());
                }
            };
            let cap = slot.len();
            if len > cap as u64 {
                let _ = seg.alloc.free(l.handle());
                return Err(MessageError::BadLength { len, cap });
            }
            seg.peers.bump(seg.me, E_RECEIVED, 1);
            return Ok(Message { seg, slot: l, ptr: slot.as_ptr(), len: len as usize });
        }
    }

    /// Receives, waiting up to `timeout` (forever with `None`): spin, then
    /// park on the ring's futex doorbell; the sender only makes a syscall
    /// when a receiver is parked.
    ///
    /// # Errors
    ///
    /// [`MessageError::TimedOut`], and those of [`Receiver::try_recv`].
    ///
    /// # Examples
    ///
    /// See [`Receiver`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<'s>, MessageError> {
        self.wait(Some(timeout))
    }

    /// Receives, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// Those of [`Receiver::try_recv`] other than `Empty`.
    ///
    /// # Examples
    ///
    /// See [`Segment`].
    pub fn recv(&self) -> Result<Message<'s>, MessageError> {
        self.wait(None)
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<Message<'s>, MessageError> {
        let poll = || match self.try_recv() {
            Err(MessageError::Empty) => None,
            other => Some(other),
        };
        self.slot.data_bell.wait_for(poll, timeout)?
    }

    /// Registers this receiver as waiting on an eventfd: until the guard drops,
    /// senders with [`Sender::set_eventfd`] signal it on every send. Drain the
    /// ring after arming and before waiting, so no message slips between.
    ///
    /// # Examples
    ///
    /// See [`Sender::set_eventfd`].
    pub fn arm(&self) -> Armed<'_, SharedBell> {
        self.slot.data_bell.arm()
    }

    /// Handles waiting in the ring (this consumer's lag).
    ///
    /// # Errors
    ///
    /// [`MessageError::Ring`] for corrupt indices.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-lag"))?;
    /// assert_eq!(seg.receiver(0)?.lag()?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lag(&self) -> Result<usize, MessageError> {
        Ok(self.slot.fill()?)
    }

    /// The ring this receiver drains.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-rring"))?;
    /// assert_eq!(seg.receiver(1)?.ring(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ring(&self) -> usize {
        self.ring
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        if self.slot.spsc.is_some() {
            self.seg.release_end(self.slot, END_CONSUMER);
        }
    }
}
