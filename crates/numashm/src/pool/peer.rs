//! A peer: our entry in the rendezvous, our own sealed pool, and what we know
//! of the pools we read from. One thread drives a `Peer` (it is `Send`, not
//! `Sync`): every word of our pool has exactly one writer, and that writer
//! needs no locked instruction. A process that sends from several threads
//! joins once per thread (each thread its own pool).
//!
//! Binding (producer side) and linking (consumer side) happen on slow paths
//! only (creating an end, a full ring, an empty free list, an empty receive):
//! - a consumer claims the channel word in the rendezvous, then for each peer
//!   whose entry says it produces the channel, opens its pool read-only, finds
//!   the ring in its channel table, and writes a *link* into its own pool: its
//!   head block and a return ring, both in its own memory;
//! - a producer reads the channel's consumer from the rendezvous, opens that
//!   pool, finds the link naming our pool and ring, and from then on reads the
//!   consumer's head (only when our ring looks full) and drains its returns.
//!   The binding is kept, whatever the rendezvous says later, until the kernel
//!   says the consumer process is dead; then every slot lent to it is
//!   reclaimed and the channel gets a fresh ring.
#![allow(unsafe_code)] // ring ends over pool blocks (three constructors, SAFETY on each)

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use numashm_region::{AttachOptions, Region, RegionOptions};
use numashm_ring::{SharedSplit, SplitConsumer, SplitProducer, SPLIT_CONSUMER_BYTES};
use numashm_varslot::{GiveBack, OwnedSlot};

use crate::pool::config::PeerConfig;
use crate::pool::error::PoolError;
use crate::pool::liveness::{liveness, start_time};
use crate::pool::own::{OwnPool, LINK_VALID, MAX_LINKS, P_BAD_RETURNS, P_RETURNS};
use crate::pool::remote::{RemotePool, MAX_RING_CELLS};
use crate::pool::rendezvous::{
    rendezvous_len, Rendezvous, E_CONSUMES, E_POOL_FD, E_POOL_ID, E_POOL_RESERVED, E_PRODUCES, E_STARTED, S_ATTACHED,
};
use crate::pool::MAX_CHANNELS;
use crate::sync::Ordering;

/// Our producer side of one channel.
#[derive(Debug)]
pub(crate) struct Produced {
    pub(crate) ring: SplitProducer<SharedSplit>,
    ring_block: OwnedSlot,
    head_block: OwnedSlot,
    pub(crate) bound: Option<Bound>,
}

/// The consumer a producer serves, as the kernel confirmed it at bind time.
#[derive(Debug)]
pub(crate) struct Bound {
    remote: Arc<RemotePool>,
    returns: SplitConsumer<SharedSplit>,
}

/// Our consumer side of one channel: one link per producer.
#[derive(Debug, Default)]
pub(crate) struct Consumed {
    pub(crate) links: Vec<Option<Link>>,
    pub(crate) seen_changes: u64,
    pub(crate) next: usize,
}

/// One producer's ring as we read it, and our return ring to it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) remote: Arc<RemotePool>,
    pub(crate) ring: SplitConsumer<SharedSplit>,
    pub(crate) returns: SplitProducer<SharedSplit>,
    /// Returns that did not fit the return ring yet (pushed first next time).
    pub(crate) overflow: Vec<u64>,
    ring_off: usize,
    table_slot: usize,
    head_block: OwnedSlot,
    returns_block: OwnedSlot,
}

/// A member of a rendezvous with its own sealed pool.
///
/// # Examples
///
/// ```
/// use numashm::pool::{Peer, PeerConfig};
/// let a = Peer::create_anonymous("doc-peer", 8, PeerConfig::new("doc-a"))?;
/// let b = a.join_same(PeerConfig::new("doc-b"))?;   // another process would join by path or fd
/// let (tx, rx) = (a.sender(0)?, b.receiver(0)?);
/// let mut m = tx.alloc(5)?;
/// m.copy_from_slice(b"hello");
/// tx.send(m).map_err(|e| e.error)?;
/// let got = rx.recv_timeout(std::time::Duration::from_secs(5))?;
/// assert_eq!(&*got, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Peer {
    pub(crate) rdv: Rendezvous,
    pub(crate) me: u32,
    epoch: u32,
    pid: u32,
    started: u64,
    pub(crate) pool: OwnPool,
    pub(crate) cfg: PeerConfig,
    remotes: RefCell<Vec<Arc<RemotePool>>>,
    pub(crate) produced: RefCell<Vec<Option<Produced>>>,
    pub(crate) consumed: RefCell<Vec<Option<Consumed>>>,
    pub(crate) lost_to_dead: Cell<u64>,
    _one_thread: PhantomData<Cell<()>>,
}

impl Peer {
    /// Creates a rendezvous file at `path` for up to `max_peers` peers and joins it.
    ///
    /// # Errors
    ///
    /// [`PoolError::Region`] (file, mapping, sealing, placement), [`PoolError::Config`].
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("doc-pool-{}", std::process::id()));
    /// let host = numashm::pool::Peer::create(&path, 4, numashm::pool::PeerConfig::new("doc-host"))?;
    /// let guest = numashm::pool::Peer::join(&path, numashm::pool::PeerConfig::new("doc-guest"))?;
    /// assert_ne!(host.entry(), guest.entry());
    /// # drop((guest, host)); // the creator removes the file when it goes
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, max_peers: u32, cfg: PeerConfig) -> Result<Peer, PoolError> {
        let region = RegionOptions::new(rendezvous_len_paged(max_peers)?).create_file(path)?;
        Self::join_new(region, max_peers, cfg)
    }

    /// Like [`Peer::create`], in an anonymous memfd (share it with [`Peer::join_fd`]).
    ///
    /// # Errors
    ///
    /// As [`Peer::create`].
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn create_anonymous(name: &str, max_peers: u32, cfg: PeerConfig) -> Result<Peer, PoolError> {
        let region = RegionOptions::new(rendezvous_len_paged(max_peers)?).create_anonymous(name)?;
        Self::join_new(region, max_peers, cfg)
    }

    fn join_new(region: Region, max_peers: u32, cfg: PeerConfig) -> Result<Peer, PoolError> {
        let rdv = Rendezvous::init(Arc::new(region), max_peers)?;
        Self::enter(rdv, cfg)
    }

    /// Joins the rendezvous file at `path` with a new pool of ours.
    ///
    /// # Errors
    ///
    /// [`PoolError::Corrupt`] for a file that is not a version-4 rendezvous,
    /// [`PoolError::Full`] when every entry is taken by a live peer, and those
    /// of [`Peer::create`].
    ///
    /// # Examples
    ///
    /// See [`Peer::create`].
    pub fn join(path: impl AsRef<Path>, cfg: PeerConfig) -> Result<Peer, PoolError> {
        let region = Region::attach_file(path)?;
        Self::enter(Rendezvous::open(Arc::new(region))?, cfg)
    }

    /// Joins through the rendezvous's fd (e.g. received over a Unix socket).
    ///
    /// # Errors
    ///
    /// As [`Peer::join`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let a = numashm::pool::Peer::create_anonymous("doc-fd", 4, numashm::pool::PeerConfig::new("doc-fd-a"))?;
    /// let b = numashm::pool::Peer::join_fd(a.rendezvous_fd().try_clone_to_owned()?, numashm::pool::PeerConfig::new("doc-fd-b"))?;
    /// assert_eq!(b.peers().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_fd(fd: std::os::fd::OwnedFd, cfg: PeerConfig) -> Result<Peer, PoolError> {
        let region = Region::attach_fd_with(fd, AttachOptions::default())?;
        Self::enter(Rendezvous::open(Arc::new(region))?, cfg)
    }

    /// Joins the same rendezvous again from this process (a second pool, e.g.
    /// for another thread).
    ///
    /// # Errors
    ///
    /// As [`Peer::join`].
    ///
    /// # Examples
    ///
    /// See [`Peer`].
    pub fn join_same(&self, cfg: PeerConfig) -> Result<Peer, PoolError> {
        Self::enter(Rendezvous::open(self.rdv.region.clone())?, cfg)
    }

    fn enter(rdv: Rendezvous, cfg: PeerConfig) -> Result<Peer, PoolError> {
        if !cfg.ring_capacity.is_power_of_two() || !(2..=MAX_RING_CELLS).contains(&cfg.ring_capacity) {
            return Err(PoolError::Config { field: "ring_capacity", detail: "a power of two in 2..=65536" });
        }
        let cfg = cfg.resolved();
        let pid = std::process::id();
        let started = start_time(pid).unwrap_or(0);
        let pool = OwnPool::create(&cfg, pid, started)?;
        let fd = pool.region.as_fd_raw();
        let (me, epoch) = rdv.join(pid, started, fd, pool.id, pool.region.max_len() as u64)?;
        Ok(Peer {
            rdv,
            me,
            epoch,
            pid,
            started,
            pool,
            cfg,
            remotes: RefCell::new(Vec::new()),
            produced: RefCell::new((0..MAX_CHANNELS).map(|_| None).collect()),
            consumed: RefCell::new((0..MAX_CHANNELS).map(|_| None).collect()),
            lost_to_dead: Cell::new(0),
            _one_thread: PhantomData,
        })
    }

    /// Our entry index in the rendezvous.
    ///
    /// # Examples
    ///
    /// See [`Peer::create`].
    pub fn entry(&self) -> u32 {
        self.me
    }

    /// The rendezvous's fd, to hand to another process.
    ///
    /// # Examples
    ///
    /// See [`Peer::join_fd`].
    pub fn rendezvous_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.rdv.region.as_fd()
    }

    /// Our pool's memory (read-only to everyone else): placement, length.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-region", 2, numashm::pool::PeerConfig::new("doc-r"))?;
    /// assert!(p.pool_region().len() <= 2 << 20); // memory on demand
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool_region(&self) -> &Region {
        &self.pool.region
    }

    /// Entries of the rendezvous that say they are attached, with their pids.
    ///
    /// # Examples
    ///
    /// See [`Peer::join_fd`].
    pub fn peers(&self) -> Vec<(u32, u32)> {
        (0..self.rdv.max_peers)
            .filter_map(|i| {
                let e = self.rdv.entry(i);
                (e.state == S_ATTACHED).then_some((i, e.pid))
            })
            .collect()
    }

    /// The allocator's census of our pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-census", 2, numashm::pool::PeerConfig::new("doc-c"))?;
    /// let tx = p.sender(0)?;
    /// let m = tx.alloc(10)?;
    /// assert_eq!(p.census().classes[0].owned, 1);
    /// drop(m);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn census(&self) -> numashm_varslot::OwnerCensus {
        self.pool.alloc.census()
    }

    /// Returns accepted and bad returns dropped (each checked by the allocator).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-returns", 2, numashm::pool::PeerConfig::new("doc-ret"))?;
    /// assert_eq!(p.returns(), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn returns(&self) -> (u64, u64) {
        let h = &self.pool.header;
        (h.at(P_RETURNS).load(Ordering::Relaxed), h.at(P_BAD_RETURNS).load(Ordering::Relaxed))
    }

    /// Messages lost because their consumer died before reading them.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-lost", 2, numashm::pool::PeerConfig::new("doc-l"))?;
    /// assert_eq!(p.lost_to_dead_consumers(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lost_to_dead_consumers(&self) -> u64 {
        self.lost_to_dead.get()
    }

    pub(crate) fn remote(&self, entry: u32) -> Result<Arc<RemotePool>, PoolError> {
        let hint = self.rdv.entry(entry);
        if hint.state != S_ATTACHED {
            return Err(PoolError::Corrupt { what: "rendezvous entry", field: "state", value: hint.state });
        }
        let mut cache = self.remotes.borrow_mut();
        if let Some(r) = cache.iter().find(|r| r.entry == entry && r.epoch == hint.epoch && r.id == hint.pool_id && r.pid == hint.pid) {
            return Ok(r.clone());
        }
        let r = Arc::new(RemotePool::open(entry, &hint)?);
        // Pools no link or binding uses any more are unmapped here.
        cache.retain(|r| Arc::strong_count(r) > 1);
        cache.push(r.clone());
        Ok(r)
    }

    /// Slow-path upkeep: repair our own rendezvous entry and consumer claims
    /// (another process may have overwritten them), and look for producers of
    /// the channels we consume. Called from every bounded wait slice.
    pub(crate) fn upkeep(&self) {
        let produces = (0..MAX_CHANNELS).filter(|&c| self.produced.borrow()[c].is_some()).fold(0u64, |m, c| m | 1 << c);
        let consumes = (0..MAX_CHANNELS).filter(|&c| self.consumed.borrow()[c].is_some()).fold(0u64, |m, c| m | 1 << c);
        self.rdv.repair(
            self.me,
            self.epoch,
            self.pid,
            &[
                (E_STARTED, self.started),
                (E_POOL_FD, self.pool.region.as_fd_raw()),
                (E_POOL_ID, self.pool.id),
                (E_POOL_RESERVED, self.pool.region.max_len() as u64),
                (E_PRODUCES, produces),
                (E_CONSUMES, consumes),
            ],
        );
        let mut m = consumes;
        while m != 0 {
            let c = m.trailing_zeros() as usize;
            m &= m - 1;
            // A consumer word someone overwrote goes back to us (unless a live peer holds it).
            let _ = self.rdv.claim_consumer(c, self.me);
            self.rescan(c);
        }
        let mut m = produces;
        while m != 0 {
            let c = m.trailing_zeros() as usize;
            m &= m - 1;
            let _ = self.bind(c);
        }
    }

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
            numashm_ring::init_consumer_block(self.pool.ptr(head_block.offset), SPLIT_CONSUMER_BYTES)?;
            SplitProducer::init_shared(self.pool.ptr(ring_block.offset), ring_block.capacity, cap, None, 0)?
        };
        // Release: SYNC channel-publish, the ring's header before its offset.
        self.pool.channel_word(c, 1).store(cap as u64, Ordering::Relaxed);
        self.pool.channel_word(c, 2).store(head_block.offset as u64, Ordering::Relaxed);
        self.pool.channel_word(c, 0).store(ring_block.offset as u64, Ordering::Release);
        Ok(Produced { ring, ring_block, head_block, bound: None })
    }

    /// Binds channel `c`'s producer side to its consumer if it is not bound,
    /// and replaces a binding whose consumer the kernel says is dead.
    /// Returns whether a consumer is bound.
    pub(crate) fn bind(&self, c: usize) -> Result<bool, PoolError> {
        let mut produced = self.produced.borrow_mut();
        let Some(p) = produced[c].as_mut() else { return Ok(false) };
        if let Some(b) = &p.bound {
            if !liveness(u64::from(b.remote.pid), b.remote.started).is_dead() {
                return Ok(true);
            }
            // The consumer died: what it held, and what waits in the ring for
            // it, is lent to reader `c`; take it all back, and start a fresh ring.
            let reclaimed = self.pool.alloc.reclaim_reader(c as u32);
            self.lost_to_dead.set(self.lost_to_dead.get() + reclaimed as u64);
            let old = std::mem::replace(p, self.new_ring(c)?);
            let _ = self.pool.alloc.free(old.ring_block.handle);
            let _ = self.pool.alloc.free(old.head_block.handle);
        }
        let Some(consumer) = self.rdv.consumer_of(c) else { return Ok(false) };
        let remote = self.remote(consumer)?;
        if liveness(u64::from(remote.pid), remote.started).is_dead() {
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
                self.pool.ptr(p.head_block.offset),
                SPLIT_CONSUMER_BYTES,
                0,
            )?
        };
        p.bound = Some(Bound { remote, returns });
        Ok(true)
    }

    /// Takes back, now, every slot our readers have returned, and replaces
    /// the binding of any consumer the kernel says is dead (reclaiming what it
    /// held). This also happens by itself whenever a size class runs out of
    /// free slots or a ring is full; call it to account exactly.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-collect", 2, numashm::pool::PeerConfig::new("doc-co"))?;
    /// assert_eq!(p.collect_returns(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect_returns(&self) -> usize {
        self.drain_returns()
    }

    /// Takes back every returned handle waiting for us on every channel we
    /// produce; each is checked (range, generation, lent to that reader, not
    /// yet returned) and a bad one is counted and dropped. Returns how many
    /// slots were freed.
    pub(crate) fn drain_returns(&self) -> usize {
        let mut freed = 0;
        for c in 0..MAX_CHANNELS {
            if self.produced.borrow()[c].is_none() {
                continue;
            }
            let _ = self.bind(c);
            let mut produced = self.produced.borrow_mut();
            let Some(Produced { bound: Some(b), .. }) = produced[c].as_mut() else { continue };
            let (mut ok, mut bad) = (0, 0);
            // Bounded: at most one ring's worth per call, whatever the consumer writes.
            for _ in 0..b.returns.capacity() {
                match b.returns.pop() {
                    Ok(Some([h, _, _])) => match self.pool.alloc.give_back(h, c as u32) {
                        Ok(GiveBack::Freed) => {
                            ok += 1;
                            freed += 1;
                        }
                        Ok(GiveBack::StillLent) => ok += 1,
                        Err(_) => bad += 1,
                    },
                    Ok(None) => break,
                    Err(_) => {
                        bad += 1;
                        break;
                    }
                }
            }
            self.pool.bump(P_RETURNS, ok);
            self.pool.bump(P_BAD_RETURNS, bad);
        }
        freed
    }

    /// Claims channel `c` as its consumer and links every producer found.
    pub(crate) fn consume(&self, c: usize) -> Result<(), PoolError> {
        if c >= MAX_CHANNELS {
            return Err(PoolError::NoSuchChannel(c));
        }
        self.rdv.claim_consumer(c, self.me).map_err(|peer| PoolError::ChannelTaken { channel: c, peer })?;
        if self.consumed.borrow()[c].is_none() {
            self.consumed.borrow_mut()[c] = Some(Consumed::default());
            self.rdv.set_bit(self.me, E_CONSUMES, c);
        }
        self.rescan(c);
        Ok(())
    }

    /// Links producers of `c` we have no link to yet (a slow path: on
    /// `receiver`, and when receiving finds nothing and the rendezvous changed).
    pub(crate) fn rescan(&self, c: usize) {
        let changes = self.rdv.changes();
        {
            let mut consumed = self.consumed.borrow_mut();
            let Some(cs) = consumed[c].as_mut() else { return };
            cs.seen_changes = changes;
            // Links to a producer that died and has nothing left for us go.
            for slot in cs.links.iter_mut() {
                let gone = slot.as_ref().is_some_and(|l| {
                    !l.ring.ready() && liveness(u64::from(l.remote.pid), l.remote.started).is_dead()
                });
                if gone {
                    if let Some(l) = slot.take() {
                        self.drop_link(l);
                    }
                }
            }
        }
        for entry in 0..self.rdv.max_peers {
            let hint = self.rdv.entry(entry);
            if hint.state != S_ATTACHED || hint.produces & (1 << c) == 0 {
                continue;
            }
            let linked = self.consumed.borrow()[c]
                .as_ref()
                .is_some_and(|cs| cs.links.iter().flatten().any(|l| l.remote.entry == entry && l.remote.id == hint.pool_id));
            if !linked {
                // A peer whose pool does not verify is skipped (and tried again on the next change).
                let _ = self.link(c, entry);
            }
        }
    }

    fn link(&self, c: usize, entry: u32) -> Result<(), PoolError> {
        let remote = if entry == self.me { None } else { Some(self.remote(entry)?) };
        let remote = match remote {
            Some(r) => r,
            None => return Err(PoolError::Config { field: "channel", detail: "a peer does not consume its own channel" }),
        };
        let Some(ch) = remote.channel(c)? else { return Ok(()) };
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
        // SAFETY: our two blocks are fresh from our allocator (128-aligned,
        // committed, only we write them); the producer's ring and its return
        // head block were checked by `channel` against the memfd's size and
        // stay mapped while `remote` lives (the link keeps it).
        let made = (|| -> Result<_, PoolError> {
            // SAFETY: as above.
            unsafe {
                numashm_ring::init_consumer_block(self.pool.ptr(head_block.offset), SPLIT_CONSUMER_BYTES)?;
                let ring = SplitConsumer::attach_shared(
                    remote.ptr(ch.ring_off as u64),
                    numashm_ring::split_producer_bytes(ch.capacity),
                    self.pool.ptr(head_block.offset),
                    SPLIT_CONSUMER_BYTES,
                    0,
                )?;
                let mut returns = SplitProducer::init_shared(self.pool.ptr(returns_block.offset), returns_block.capacity, ret_cap, None, 0)?;
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
        let lw = |w: usize, v: u64| self.pool.link_word(table_slot, w).store(v, Ordering::Relaxed);
        lw(1, remote.id);
        lw(2, head_block.offset as u64);
        lw(3, returns_block.offset as u64);
        lw(4, ch.ring_off as u64);
        lw(5, ret_cap as u64);
        // Release: SYNC link-publish, the link's words before its valid tag.
        self.pool
            .link_word(table_slot, 0)
            .store(LINK_VALID | (c as u64) << 32 | u64::from(entry), Ordering::Release);
        let link = Link { remote, ring, returns, overflow: Vec::new(), ring_off: ch.ring_off, table_slot, head_block, returns_block };
        let mut consumed = self.consumed.borrow_mut();
        let cs = consumed[c].get_or_insert_with(Consumed::default);
        match cs.links.iter_mut().find(|s| s.is_none()) {
            Some(s) => *s = Some(link),
            None => cs.links.push(Some(link)),
        }
        Ok(())
    }

    pub(crate) fn drop_link(&self, l: Link) {
        // Release: the producer stops finding it before we reuse its blocks.
        self.pool.link_word(l.table_slot, 0).store(0, Ordering::Release);
        let _ = self.pool.alloc.free(l.head_block.handle);
        let _ = self.pool.alloc.free(l.returns_block.handle);
        let _ = l.ring_off;
    }

    /// Gives channel `c`'s consumer side up (its links stay until our held
    /// messages are back; see `Receiver`'s drop).
    pub(crate) fn unconsume(&self, c: usize) {
        self.rdv.release_consumer(c, self.me);
        self.rdv.clear_bit(self.me, E_CONSUMES, c);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.rdv.leave(self.me, self.epoch, self.pid);
    }
}

fn rendezvous_len_paged(max_peers: u32) -> Result<usize, PoolError> {
    if max_peers == 0 || max_peers > crate::pool::rendezvous::MAX_POOL_PEERS {
        return Err(PoolError::Config { field: "max_peers", detail: "1..=1024" });
    }
    Ok(rendezvous_len(max_peers).next_multiple_of(4096).max(64 << 10))
}

trait RawFdNumber {
    fn as_fd_raw(&self) -> u64;
}

impl RawFdNumber for Region {
    fn as_fd_raw(&self) -> u64 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd() as u64
    }
}
