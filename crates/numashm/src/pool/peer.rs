//! A peer: our entry in the rendezvous, our own sealed pool, and what we know
//! of the pools we read from. One thread drives a `Peer` (it is `Send`, not
//! `Sync`): every word of our pool has exactly one writer, and that writer
//! needs no locked instruction. A process that sends from several threads
//! joins once per thread (each thread its own pool).
//!
//! How channel ends bind and link is in `ends.rs`; returns in `returns.rs`.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use numashm_region::{AttachOptions, Region, RegionOptions};

use crate::pool::config::PeerConfig;
use crate::pool::error::PoolError;
use crate::pool::ends::{Consumed, Produced};
use crate::pool::liveness::start_time;
use crate::pool::own::{OwnPool, P_BAD_RETURNS, P_DROPPED, P_RECEIVED, P_RETURNS, P_SENT};
use crate::pool::remote::{RemotePool, MAX_RING_CELLS};
use crate::pool::rendezvous::{
    rendezvous_len, Rendezvous, E_CONSUMES, E_POOL_FD, E_POOL_ID, E_POOL_RESERVED, E_PRODUCES, E_STARTED, S_ATTACHED,
};
use crate::pool::MAX_CHANNELS;
use crate::loom::sync::atomic::Ordering;

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
    pub(crate) epoch: u32,
    /// Our pid and start time (a successor made by `hand_over` writes its own).
    pub(crate) pid: u32,
    pub(crate) started: u64,
    pub(crate) pool: OwnPool,
    pub(crate) cfg: PeerConfig,
    remotes: RefCell<Vec<Arc<RemotePool>>>,
    pub(crate) produced: RefCell<Vec<Option<Produced>>>,
    /// Bit `c` set once `produced[c]` exists (never cleared): the channels whose
    /// returns and bindings the owner walks, without visiting all 64.
    pub(crate) produced_mask: Cell<u64>,
    /// Bit `c` set when channel `c`'s reader may have half a return ring
    /// waiting for us (`Produced::returns_due`); cleared when drained.
    pub(crate) returns_due: Cell<u64>,
    /// Bit `c` set when we pushed into channel `c`'s ring while no consumer
    /// was bound to it: its consumer reads only after we bind it (the bind
    /// handshake), so our empty receives try to bind it now and then
    /// (`Peer::bind_while_idle`), and a sender that only waits on replies
    /// cannot deadlock with its consumer.
    pub(crate) unbound_sent: Cell<u64>,
    /// Empty receives since the last `bind_while_idle` attempt.
    pub(crate) idle_polls: Cell<u32>,
    pub(crate) consumed: RefCell<Vec<Option<Consumed>>>,
    pub(crate) lost_to_dead: Cell<u64>,
    /// Our wake pipe for async waits (`wake.rs`), made on first use and
    /// kept while we live (its fd number is published in our pool header).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async ends
    pub(crate) wake: std::cell::OnceCell<crate::pool::wake::WakePipe>,
    /// The gatekeeper's pool and whom we refused (`gate.rs`).
    pub(crate) gate_state: crate::pool::gate::GateState,
    /// Set in the predecessor of a hand-over: dropping gives nothing back.
    handed_over: Cell<bool>,
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
            produced_mask: Cell::new(0),
            returns_due: Cell::new(0),
            unbound_sent: Cell::new(0),
            idle_polls: Cell::new(0),
            consumed: RefCell::new((0..MAX_CHANNELS).map(|_| None).collect()),
            lost_to_dead: Cell::new(0),
            wake: std::cell::OnceCell::new(),
            gate_state: Default::default(),
            handed_over: Cell::new(false),
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

    /// Counts `n` messages this peer's application dropped on purpose (a
    /// bridge that found its ring full, configured to drop rather than
    /// wait): the count is published in our pool header, where `numashm
    /// inspect` and `numashm top` show it beside sent and received.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-drop", 2, numashm::pool::PeerConfig::new("doc-d"))?;
    /// p.count_dropped(3);
    /// assert_eq!(p.dropped(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn count_dropped(&self, n: u64) {
        self.pool.bump(P_DROPPED, n);
    }

    /// Messages counted by [`Peer::count_dropped`].
    ///
    /// # Examples
    ///
    /// See [`Peer::count_dropped`].
    pub fn dropped(&self) -> u64 {
        // Relaxed: a statistic only we write.
        self.pool.header.at(P_DROPPED).load(Ordering::Relaxed)
    }

    /// Messages we sent and received, as our pool header counts them (what
    /// `numashm inspect` shows for us).
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-counts", 2, numashm::pool::PeerConfig::new("doc-c"))?;
    /// assert_eq!(p.counts(), (0, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn counts(&self) -> (u64, u64) {
        let h = &self.pool.header;
        // Relaxed: statistics only we write.
        (h.at(P_SENT).load(Ordering::Relaxed), h.at(P_RECEIVED).load(Ordering::Relaxed))
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
        let produces = self.produced_mask.get();
        let consumes = (0..MAX_CHANNELS)
            .filter(|&c| self.consumed.borrow()[c].as_ref().is_some_and(|cs| cs.active))
            .fold(0u64, |m, c| m | 1 << c);
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
            if let Some(cs) = self.consumed.borrow_mut()[c].as_mut() {
                cs.links.iter_mut().flatten().for_each(crate::pool::returns::flush_overflow);
            }
        }
        let mut m = produces;
        while m != 0 {
            let c = m.trailing_zeros() as usize;
            m &= m - 1;
            let _ = self.bind(c);
        }
    }

    /// Checks every slot and free list of our pool against the allocator's
    /// counts (a full walk: for tests and soaks, not the hot path).
    ///
    /// # Errors
    ///
    /// The allocator's [`numashm_varslot::OwnerError::Corrupt`] naming what disagrees.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-audit", 2, numashm::pool::PeerConfig::new("doc-audit"))?;
    /// let census = p.audit()?;
    /// assert_eq!(census.classes.iter().map(|c| c.lent).sum::<u64>(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn audit(&self) -> Result<numashm_varslot::OwnerCensus, numashm_varslot::OwnerError> {
        self.pool.alloc.audit()
    }
}

impl Peer {
    /// Our pool's fd number in this process (others open it through `/proc/PID/fd`).
    pub(crate) fn pool_fd_number(&self) -> u32 {
        self.pool.region.as_fd_raw() as u32
    }

    /// In the predecessor of a hand-over: our copy of the peer goes without
    /// giving anything back — the successor holds our entry (its lock's open
    /// file description is shared with the child), our channel claims and the
    /// pool. No `leave`; the rendezvous mapping is leaked here so that a file we
    /// created is not unlinked (the successor removes it when it goes); our own
    /// mappings and fds close (the child has its copies).
    pub(crate) fn forget_as_predecessor(self) {
        std::mem::forget(self.rdv.region.clone());
        self.handed_over.set(true);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Not in the predecessor of a hand-over, and not in a copy another
        // peer of the same process left in a hand-over's successor (`fork`
        // copies every value): the entry, claims and lock are not ours there.
        if !self.handed_over.get() && self.pid == std::process::id() {
            self.rdv.leave(self.me, self.epoch, self.pid);
        }
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
