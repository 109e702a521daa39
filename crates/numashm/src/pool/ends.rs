//! Channel ends: our producer side of a channel (a ring in our pool, bound to
//! one consumer) and our consumer side (one link per producer: our head and
//! our return ring, in our pool). All of it runs on slow paths only.
//!
//! The bind handshake keeps every slot's reader known to its owner:
//! 1. A consumer claims the channel word, then links to each producer's
//!    current ring: it publishes, in its own pool, a link naming the producer's
//!    entry, pool id and ring offset, with its head block and return ring.
//! 2. The producer, on a slow path (a send every so often while unbound, a
//!    full ring, an empty free list, a wait slice, or a changed channel word),
//!    finds that link, attaches to it, and writes the consumer's pool id into
//!    its channel table (word 3, Release).
//! 3. The consumer reads a ring only once the producer's channel table names
//!    that ring and its own pool id: so whoever reads a slot is the consumer
//!    the producer has bound, and the producer knows whom to reclaim from.
//! 4. When the bound consumer dies (a pidfd says so) or leaves (its link is
//!    gone, or is not the one we attached to), the producer reclaims every
//!    slot lent to that reader (read, held, or still in the ring: counted as
//!    lost) and starts a fresh ring; the next consumer links to the fresh
//!    ring. A consumer stops reading a ring its producer replaced (the slots
//!    in it were reclaimed).
//! 5. A consumer never links a ring whose channel table already names its
//!    pool as bound while it has no link to it: that binding was an earlier
//!    link of ours, dropped (a `Receiver` dropped and made again before the
//!    producer looked). A fresh link would start at position 0 and deliver
//!    again what the old one read, while the producer stays attached to the
//!    old link's freed blocks. It waits instead: the producer's next bind
//!    (every bind looks at the bound link, whatever the channel word says)
//!    finds the old link gone and starts a fresh ring, which it links.
//!
//! The binding is kept, whatever the rendezvous says, while the consumer
//! lives and keeps its link: a hostile rewrite of the channel word costs a
//! look at the consumer's link table, nothing else.
#![allow(unsafe_code)] // ring ends over pool blocks (three constructors, SAFETY on each)

use std::sync::Arc;

use numashm_ring::{SharedSplit, SplitConsumer, SplitProducer, SPLIT_CONSUMER_BYTES};
use numashm_varslot::OwnedSlot;

use crate::loom::sync::atomic::Ordering;
use crate::pool::error::PoolError;
use crate::pool::own::{LINK_VALID, MAX_LINKS, P_BAD_RETURNS, P_LOST_TO_DEAD, P_RETURNS};
use crate::pool::peer::Peer;
use crate::pool::wake::PeerWake;
use crate::pool::remote::{LinkHint, RemotePool, LINK_SERIAL_MASK, LINK_SERIAL_SHIFT, MAX_RING_CELLS};
use crate::pool::rendezvous::{E_CONSUMES, E_PRODUCES, S_ATTACHED};
use crate::pool::MAX_CHANNELS;

/// Channel table word: the bound consumer's pool id (0: none yet).
pub(crate) const CH_BOUND: usize = 3;

/// Our producer side of one channel.
#[derive(Debug)]
pub(crate) struct Produced {
    pub(crate) ring: SplitProducer<SharedSplit>,
    ring_block: OwnedSlot,
    head_block: OwnedSlot,
    pub(crate) bound: Option<Bound>,
    /// Whether a consumer was ever bound to this ring (then a new one gets a fresh ring).
    was_bound: bool,
    /// Messages pushed into this ring whose returns we have not taken yet (our
    /// own count): the reader's return ring cannot be fuller than this, so the
    /// allocation path drains it only once this nears the return ring's size.
    pub(crate) unreturned: u64,
}

/// The consumer a producer serves, as the kernel confirmed it at bind time.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) remote: Arc<RemotePool>,
    /// The link we attached to (its head block and return ring): the
    /// binding lasts while the consumer's link table still holds this one.
    link: LinkHint,
    pub(crate) returns: SplitConsumer<SharedSplit>,
    /// The consumer's wake pipe (async waits), opened when first needed.
    pub(crate) wake: PeerWake,
}

impl Produced {
    /// Whether the reader's return ring may be half full (by our own count):
    /// the allocation path then takes its returns before the free list.
    #[inline]
    pub(crate) fn returns_due(&self) -> bool {
        self.bound.as_ref().is_some_and(|b| self.unreturned >= (b.returns.capacity() / 2) as u64)
    }

    /// Whether this send should also try to (re)bind: while unbound, every
    /// send (a consumer waits for it; the state does not last); while bound,
    /// when the channel word names another entry (one load of a line that is
    /// rarely written).
    #[inline]
    pub(crate) fn wants_bind(&self, consumer_word: Option<u32>) -> bool {
        match &self.bound {
            Some(b) => consumer_word != Some(b.remote.entry),
            None => consumer_word.is_some(),
        }
    }
}

/// Our consumer side of one channel: one link per producer ring.
#[derive(Debug, Default)]
pub(crate) struct Consumed {
    /// We hold the channel's consumer claim (false after `Receiver` drops:
    /// links then go as their held messages come back).
    pub(crate) active: bool,
    pub(crate) links: Vec<Option<Link>>,
    pub(crate) seen_changes: u64,
    pub(crate) next: usize,
    /// Links made for this channel: the serial in the next link's tag.
    serial: u64,
}

/// One producer's ring as we read it, and our return ring to it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) remote: Arc<RemotePool>,
    pub(crate) ring: SplitConsumer<SharedSplit>,
    pub(crate) returns: SplitProducer<SharedSplit>,
    /// Returns that did not fit the return ring yet (pushed first next time).
    pub(crate) overflow: Vec<u64>,
    /// Messages from this link we hold now: the link (and so the mapping of
    /// the producer's pool they point into) stays while any is held.
    pub(crate) held: usize,
    /// The producer bound us to this ring: we may read it.
    pub(crate) confirmed: bool,
    /// Pops since we last told a producer waiting for room (see `Link::popped`).
    pub(crate) unnotified: u32,
    /// Tell a producer waiting for room every this many pops: `capacity / 4`, 1 to 32.
    notify_every: u32,
    /// Bytes of the producer's pool known mapped (a lower bound: a mapping only
    /// grows), so a cell inside them is accepted without asking the region.
    known_len: u64,
    /// The producer's wake pipe (an async send waiting for room), opened when first needed.
    pub(crate) wake: PeerWake,
    /// The producer replaced this ring (we were found gone): read nothing more.
    pub(crate) stale: bool,
    pub(crate) channel: usize,
    ring_off: usize,
    table_slot: usize,
    head_block: OwnedSlot,
    returns_block: OwnedSlot,
}

impl Link {
    /// After a pop: a producer parked on a full ring is told there is room
    /// every `capacity / 4` pops (at most 32). Each tell costs a SeqCst fence
    /// (the Dekker pair with the producer's park), so it is not paid on every
    /// pop. None is missed: a producer parks only on a full ring, so `capacity`
    /// pops can follow its park, and a tell comes within `capacity / 4` of them
    /// (the tell's fence against the park's: either we see its flag, or its
    /// re-check sees our head). Only a consumer that stops reading with fewer
    /// than `capacity / 4` pops since leaves the producer parked, for at most
    /// its wait slice (`numashm_ring::MAX_PARK`).
    #[inline]
    pub(crate) fn popped(&mut self) {
        self.unnotified += 1;
        if self.unnotified >= self.notify_every {
            self.unnotified = 0;
            if let Ok(true) = self.ring.notify_space() {
                // It was waiting: an async producer waits on its wake pipe.
                self.wake.signal(&self.remote);
            }
        }
    }

    /// Whether `[off, off + len)` lies inside the producer's pool: against the
    /// length known mapped, else asking the region (which maps what the owner
    /// published since, if it can).
    #[inline]
    pub(crate) fn covers(&mut self, off: u64, len: u64) -> bool {
        match off.checked_add(len) {
            Some(end) if end <= self.known_len => true,
            _ => self.covers_slow(off, len),
        }
    }

    #[cold]
    fn covers_slow(&mut self, off: u64, len: u64) -> bool {
        if !self.remote.covers(off, len) {
            return false;
        }
        self.known_len = self.remote.mapped_len() as u64;
        true
    }

    /// Whether we may read this ring now; checks the producer's channel table
    /// until it names this ring and our pool (two loads of a line the producer
    /// rarely writes), then never again.
    #[inline]
    pub(crate) fn readable(&mut self, our_pool: u64) -> bool {
        if self.confirmed {
            return true;
        }
        if self.stale {
            return false;
        }
        match self.remote.channel(self.channel) {
            Ok(Some(ch)) if ch.ring_off == self.ring_off => {
                self.confirmed = ch.bound == our_pool;
                self.confirmed
            }
            // Replaced, removed, or corrupt: this ring is not ours to read.
            _ => {
                self.stale = true;
                false
            }
        }
    }
}

/// The channel numbers whose bits are set in `mask`, ascending.
pub(crate) fn channels(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let c = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (c < 64).then_some(c)
    })
}

impl Peer {
    /// Our producer side of `c`, made on first use: a ring block and the head
    /// block our consumer's return ring reads back, both in our pool.
    pub(crate) fn produce(&self, c: usize) -> Result<(), PoolError> {
        if c >= MAX_CHANNELS {
            return Err(PoolError::NoSuchChannel(c));
        }
        if self.produced.borrow()[c].is_some() {
            return Ok(());
        }
        let p = self.new_ring(c)?;
        self.produced.borrow_mut()[c] = Some(p);
        self.produced_mask.set(self.produced_mask.get() | 1 << c);
        self.rdv.set_bit(self.me, E_PRODUCES, c);
        let _ = self.bind(c);
        Ok(())
    }

    fn new_ring(&self, c: usize) -> Result<Produced, PoolError> {
        let cap = self.cfg.ring_capacity;
        let alloc = &self.pool.alloc;
        let ring_block = alloc.alloc(numashm_ring::split_producer_bytes(cap), true)?;
        let head_block = match alloc.alloc(SPLIT_CONSUMER_BYTES, true) {
            Ok(h) => h,
            Err(e) => {
                let _ = alloc.free(ring_block.handle);
                return Err(e.into());
            }
        };
        // SAFETY: both blocks are ours (fresh from our allocator, 128-aligned,
        // inside the committed pool, which never moves); only this peer writes them.
        let ring = unsafe {
            numashm_ring::init_consumer_block(self.pool.block(&head_block, SPLIT_CONSUMER_BYTES)?, SPLIT_CONSUMER_BYTES)?;
            SplitProducer::init_shared(self.pool.block(&ring_block, ring_block.capacity)?, ring_block.capacity, cap, None, 0)?
        };
        // Relaxed: published by the Release store of the ring offset (SYNC channel-publish).
        self.pool.channel_word(c, 1).store(cap as u64, Ordering::Relaxed);
        self.pool.channel_word(c, 2).store(head_block.offset as u64, Ordering::Relaxed);
        self.pool.channel_word(c, CH_BOUND).store(0, Ordering::Relaxed);
        // Release: SYNC channel-publish, the ring's header and words before its offset.
        self.pool.channel_word(c, 0).store(ring_block.offset as u64, Ordering::Release);
        Ok(Produced { ring, ring_block, head_block, bound: None, was_bound: false, unreturned: 0 })
    }

    /// Binds channel `c`'s producer side to its consumer if it is not bound;
    /// replaces a binding whose consumer died or left (reclaiming what was lent
    /// to it and starting a fresh ring). Returns whether a consumer is bound.
    pub(crate) fn bind(&self, c: usize) -> Result<bool, PoolError> {
        let mut produced = self.produced.borrow_mut();
        let Some(p) = produced[c].as_mut() else { return Ok(false) };
        let named = self.rdv.consumer_of(c);
        if let Some(b) = p.bound.as_mut() {
            // Whatever the rendezvous says, the link we attached to must still be
            // there: a consumer that dropped it and claimed the channel again (a
            // `Receiver` made again) names itself in the word as before, and its
            // old head block and return ring are freed. A word naming someone
            // else (perhaps a lie) moves nothing while the link stays.
            let linked =
                matches!(b.remote.link_to(c, self.me, self.pool.id, p.ring_block.offset), Ok(Some(l)) if l == b.link);
            if linked && !b.remote.owner_liveness().is_dead() {
                return Ok(true);
            }
            if linked {
                // A dead reader's return ring is as it left it (its pool is
                // frozen, our binding keeps it mapped): what it gave back before
                // it died comes back as returned, not as lost. (A reader that left
                // freed its return ring: nothing there is read.)
                let (ok, bad, _) = self.take_returns(c, b);
                p.unreturned = p.unreturned.saturating_sub(ok + bad);
                self.pool.bump(P_RETURNS, ok);
                self.pool.bump(P_BAD_RETURNS, bad);
            }
        }
        if p.was_bound {
            // The reader of this ring is gone: every slot lent to it (held, or
            // still in the ring) comes back; the next consumer gets a fresh ring.
            let reclaimed = self.pool.alloc.reclaim_reader(c as u32);
            self.lost_to_dead.set(self.lost_to_dead.get() + reclaimed as u64);
            self.pool.bump(P_LOST_TO_DEAD, reclaimed as u64);
            let old = std::mem::replace(p, self.new_ring(c)?);
            let _ = self.pool.alloc.free(old.ring_block.handle);
            let _ = self.pool.alloc.free(old.head_block.handle);
        }
        // A word naming ourselves is a lie (we do not read our own rings).
        let Some(consumer) = named.filter(|&e| e != self.me) else { return Ok(false) };
        let remote = self.remote(consumer)?;
        if remote.owner_liveness().is_dead() {
            return Ok(false);
        }
        // A gated rendezvous: only a consumer our gate admitted (gate.rs).
        if !self.admits(&remote) {
            return Ok(false);
        }
        let Some(link) = remote.link_to(c, self.me, self.pool.id, p.ring_block.offset)? else { return Ok(false) };
        // SAFETY: the head block and return ring lie inside the consumer's pool
        // (`link_to` checked them against the memfd's size), mapped read-only
        // for as long as `remote` lives, which the binding keeps; our head block
        // for its return ring is ours.
        let returns = unsafe {
            p.ring.attach_consumer(remote.ptr(link.head_off as u64), SPLIT_CONSUMER_BYTES)?;
            SplitConsumer::attach_shared(
                remote.ptr(link.returns_off as u64),
                numashm_ring::split_producer_bytes(link.returns_capacity),
                self.pool.block(&p.head_block, SPLIT_CONSUMER_BYTES)?,
                SPLIT_CONSUMER_BYTES,
                0,
            )?
        };
        // Release: SYNC bind-publish, our attachment before the consumer may read
        // (it reads only after seeing its pool id here, Acquire).
        self.pool.channel_word(c, CH_BOUND).store(remote.id, Ordering::Release);
        let mut bound = Bound { remote, link, returns, wake: PeerWake::default() };
        // An async consumer waiting for this bind is told now (if it has a wake pipe).
        bound.wake.signal(&bound.remote);
        self.unbound_sent.set(self.unbound_sent.get() & !(1 << c));
        p.bound = Some(bound);
        p.was_bound = true;
        Ok(true)
    }

    /// An empty receive: if we sent into a ring no consumer is bound to,
    /// try to bind it now and then (its consumer waits for that).
    #[inline]
    pub(crate) fn idle(&self) {
        if self.unbound_sent.get() != 0 {
            self.bind_while_idle();
        }
    }

    /// Every 1024th empty receive while `unbound_sent` is not empty: bind
    /// those channels (a few syscalls each when a consumer is named).
    #[cold]
    fn bind_while_idle(&self) {
        let n = self.idle_polls.get().wrapping_add(1);
        self.idle_polls.set(n);
        if n % 1024 != 1 {
            return;
        }
        for c in channels(self.unbound_sent.get()) {
            if let Ok(true) = self.bind(c) {
                self.unbound_sent.set(self.unbound_sent.get() & !(1 << c));
            }
        }
    }

    /// Tries to bind every channel we produce that has no consumer bound yet
    /// (a consumer that linked waits for it): on every wait slice.
    pub(crate) fn bind_unbound(&self) {
        for c in channels(self.produced_mask.get()) {
            let unbound = self.produced.borrow()[c].as_ref().is_some_and(|p| p.bound.is_none());
            if unbound {
                let _ = self.bind(c);
            }
        }
    }

    /// Claims channel `c` as its consumer and links every producer found.
    pub(crate) fn consume(&self, c: usize) -> Result<(), PoolError> {
        if c >= MAX_CHANNELS {
            return Err(PoolError::NoSuchChannel(c));
        }
        // The bit first: a claim whose holder's entry lacks it may be taken over.
        let was_active = self.consumed.borrow()[c].as_ref().is_some_and(|cs| cs.active);
        self.rdv.set_bit(self.me, E_CONSUMES, c);
        if let Err(peer) = self.rdv.claim_consumer(c, self.me) {
            if !was_active {
                self.rdv.clear_bit(self.me, E_CONSUMES, c);
            }
            return Err(PoolError::ChannelTaken { channel: c, peer });
        }
        self.consumed.borrow_mut()[c].get_or_insert_with(Consumed::default).active = true;
        self.rescan(c);
        Ok(())
    }

    /// Links producer rings of `c` we have no link to yet, and drops links
    /// that can give nothing more (a slow path: on `receiver`, on an empty
    /// receive after the rendezvous changed, and on wait slices).
    pub(crate) fn rescan(&self, c: usize) {
        let changes = self.rdv.changes();
        let mut draining = false;
        {
            let mut consumed = self.consumed.borrow_mut();
            let Some(cs) = consumed[c].as_mut() else { return };
            cs.seen_changes = changes;
            for slot in cs.links.iter_mut() {
                let Some(l) = slot.as_mut() else { continue };
                // A replaced ring is stale; a dead producer's ring is read to its end.
                let readable = l.readable(self.pool.id);
                let left = l.ring.ready();
                // (The kernel is asked only where the answer matters.)
                let dead = !l.stale && (!left || readable) && l.remote.owner_liveness().is_dead();
                // A dead producer's ring we can still read from holds messages
                // sent before any newer producer's: no new ring is linked until
                // it is drained (a restarted sender — a bridge — keeps its
                // order across the restart).
                draining |= readable && left && dead;
                let finished = l.stale || (!left && dead);
                // Held messages point into the producer's pool: keep the link (and the
                // mapping) until they are back.
                if finished && l.held == 0 {
                    if let Some(l) = slot.take() {
                        self.drop_link(l);
                    }
                }
            }
        }
        if draining {
            // Looked at again on the next rescan (an empty receive once the
            // rendezvous changed, or a wait slice): the rings are empty by then.
            if let Some(cs) = self.consumed.borrow_mut()[c].as_mut() {
                cs.seen_changes = changes.wrapping_sub(1);
            }
            return;
        }
        for entry in 0..self.rdv.max_peers {
            if entry == self.me {
                continue;
            }
            let hint = self.rdv.entry(entry);
            if hint.state != S_ATTACHED || hint.produces & (1 << c) == 0 {
                continue;
            }
            // A peer whose pool does not verify is skipped (and tried again later).
            let _ = self.link(c, entry, hint.pool_id);
        }
    }

    fn link(&self, c: usize, entry: u32, pool_id: u64) -> Result<(), PoolError> {
        let remote = self.remote(entry)?;
        let Some(ch) = remote.channel(c)? else { return Ok(()) };
        let linked = self.consumed.borrow()[c].as_ref().is_some_and(|cs| {
            cs.links.iter().flatten().any(|l| l.remote.entry == entry && l.remote.id == pool_id && l.ring_off == ch.ring_off)
        });
        if linked {
            return Ok(());
        }
        if ch.bound == self.pool.id {
            // Bound to an earlier link of ours, since dropped: not ours to read
            // from position 0 (step 5 above). Its producer starts a fresh ring on
            // its next bind, which a later rescan links (a wait slice's upkeep, as
            // for any replaced ring).
            return Ok(());
        }
        // A gated rendezvous: a new link only to a producer our gate admitted (gate.rs).
        if !self.admits(&remote) {
            return Ok(());
        }
        let table_slot = (0..MAX_LINKS)
            .find(|&l| self.pool.link_word(l, 0).load(Ordering::Relaxed) & LINK_VALID == 0)
            .ok_or(PoolError::Full { what: "link table", max: MAX_LINKS })?;
        let ret_cap = (ch.capacity * 2).min(MAX_RING_CELLS);
        let alloc = &self.pool.alloc;
        let head_block = alloc.alloc(SPLIT_CONSUMER_BYTES, true)?;
        let returns_block = match alloc.alloc(numashm_ring::split_producer_bytes(ret_cap), true) {
            Ok(b) => b,
            Err(e) => {
                let _ = alloc.free(head_block.handle);
                return Err(e.into());
            }
        };
        let made = (|| -> Result<_, PoolError> {
            // SAFETY: our two blocks are fresh from our allocator (128-aligned,
            // committed, only we write them); the producer's ring and its return
            // head block were checked by `channel` against the memfd's size and
            // stay mapped while `remote` lives (the link keeps it).
            unsafe {
                numashm_ring::init_consumer_block(self.pool.block(&head_block, SPLIT_CONSUMER_BYTES)?, SPLIT_CONSUMER_BYTES)?;
                let ring = SplitConsumer::attach_shared(
                    remote.ptr(ch.ring_off as u64),
                    numashm_ring::split_producer_bytes(ch.capacity),
                    self.pool.block(&head_block, SPLIT_CONSUMER_BYTES)?,
                    SPLIT_CONSUMER_BYTES,
                    0,
                )?;
                let mut returns =
                    SplitProducer::init_shared(self.pool.block(&returns_block, returns_block.capacity)?, returns_block.capacity, ret_cap, None, 0)?;
                returns.attach_consumer(remote.ptr(ch.returns_head_off as u64), SPLIT_CONSUMER_BYTES)?;
                Ok((ring, returns))
            }
        })();
        let (ring, returns) = match made {
            Ok(r) => r,
            Err(e) => {
                let _ = alloc.free(head_block.handle);
                let _ = alloc.free(returns_block.handle);
                return Err(e);
            }
        };
        // Release, each word: a producer that reads one (Acquire) then sees this
        // slot's earlier drop (its tag 0), and refuses a mix of two links
        // (`RemotePool::link_to` reads the tag again after the words).
        let lw = |w: usize, v: u64| self.pool.link_word(table_slot, w).store(v, Ordering::Release);
        lw(1, remote.id);
        lw(2, head_block.offset as u64);
        lw(3, returns_block.offset as u64);
        lw(4, ch.ring_off as u64);
        lw(5, ret_cap as u64);
        let serial = {
            let mut consumed = self.consumed.borrow_mut();
            let cs = consumed[c].get_or_insert_with(Consumed::default);
            cs.serial = cs.serial.wrapping_add(1);
            cs.serial << LINK_SERIAL_SHIFT & LINK_SERIAL_MASK
        };
        // Release: SYNC link-publish, the link's words before its valid tag.
        self.pool
            .link_word(table_slot, 0)
            .store(LINK_VALID | serial | (c as u64) << 32 | u64::from(entry), Ordering::Release);
        let notify_every = (ring.capacity() / 4).clamp(1, 32) as u32;
        let link = Link {
            remote,
            ring,
            returns,
            overflow: Vec::new(),
            held: 0,
            confirmed: false,
            unnotified: 0,
            notify_every,
            known_len: 0,
            wake: PeerWake::default(),
            stale: false,
            channel: c,
            ring_off: ch.ring_off,
            table_slot,
            head_block,
            returns_block,
        };
        let mut consumed = self.consumed.borrow_mut();
        let cs = consumed[c].get_or_insert_with(Consumed::default);
        match cs.links.iter_mut().find(|s| s.is_none()) {
            Some(s) => *s = Some(link),
            None => cs.links.push(Some(link)),
        }
        Ok(())
    }

    pub(crate) fn drop_link(&self, l: Link) {
        debug_assert_eq!(l.held, 0, "a link is dropped only when no message of it is held");
        // Release: the producer stops finding it before we reuse its blocks.
        self.pool.link_word(l.table_slot, 0).store(0, Ordering::Release);
        let _ = self.pool.alloc.free(l.head_block.handle);
        let _ = self.pool.alloc.free(l.returns_block.handle);
    }

    /// Gives channel `c`'s consumer side up (its links stay until our held
    /// messages are back; see `Receiver`'s drop).
    pub(crate) fn unconsume(&self, c: usize) {
        self.rdv.release_consumer(c, self.me);
        self.rdv.clear_bit(self.me, E_CONSUMES, c);
        // Links go now (the producer sees them gone and rebinds the next
        // consumer to a fresh ring), or with their last held message.
        let mut consumed = self.consumed.borrow_mut();
        let Some(cs) = consumed[c].as_mut() else { return };
        cs.active = false;
        for slot in cs.links.iter_mut() {
            if slot.as_ref().is_some_and(|l| l.held == 0) {
                if let Some(l) = slot.take() {
                    self.drop_link(l);
                }
            }
        }
    }
}
