//! Segments: a region holding a peer table, rings of slot handles and the
//! variable-slot allocator. A host creates one; guests attach to it.
#![allow(unsafe_code)] // laying rings over the mapping (three calls, each with SAFETY)

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use numashm_region::{AttachOptions, CachePolicy, MemPolicy, PageSize, Placement, Region, RegionOptions};
use numashm_ring::{Doorbell, Mpmc, SharedBell, SharedMemory, Spsc};
use numashm_varslot::{Config as ClassConfig, Handle, Located, PeerId, SharedAllocator};

use crate::error::SegmentError;
use crate::layout::{
    Layout, RingKind, RingSpec, BELL_LEN, HEADER_WORDS, RING_ENDS_LEN, W_MAGIC, W_RING_SPECS, W_SWEEP, W_SWEEP_PENDING,
};
use crate::cache::SlotCache;
use crate::memory::RegionMemory;
use crate::peers::{is_alive, Claimant, PeerInfo, PeerState, PeerTable, ENTRY_WORDS};
use crate::sync::Ordering;
use crate::words::Words;

/// Varslot peer ids: peer table index + 1 (0 means "nobody").
pub(crate) fn peer_id(index: u32) -> PeerId {
    index + 1
}

/// Longest an attacher waits for a sweep (a sweep walks the allocator once,
/// alone; seconds are far beyond it).
pub const SWEEP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The owner recorded for handles in flight through an MPMC ring, whose
/// receiver is not known when they are sent.
pub(crate) fn ring_pseudo_peer(ring: usize) -> PeerId {
    0x4000_0000 + ring as u32
}

/// How to create a segment.
///
/// # Examples
///
/// ```
/// use numashm::{RingSpec, Segment, SegmentConfig};
/// let seg = Segment::create(
///     SegmentConfig::anonymous("doc-config").rings(vec![RingSpec::spsc(256); 2]).max_peers(8),
/// )?;
/// assert_eq!(seg.ring_count(), 2);
/// # Ok::<(), numashm::SegmentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    path: Option<PathBuf>,
    name: String,
    size: Option<usize>,
    max_size: Option<usize>,
    nodes: Vec<u32>,
    policy: MemPolicy,
    cache: CachePolicy,
    fallback: bool,
    classes: ClassConfig,
    rings: Vec<RingSpec>,
    max_peers: u32,
    keep_file: bool,
}

impl SegmentConfig {
    fn new(path: Option<PathBuf>, name: &str) -> Self {
        SegmentConfig {
            path,
            name: name.to_string(),
            size: None,
            max_size: None,
            nodes: Vec::new(),
            policy: MemPolicy::Bind,
            cache: CachePolicy::default(),
            fallback: false,
            classes: ClassConfig::default(),
            rings: vec![RingSpec::spsc(1024), RingSpec::spsc(1024)],
            max_peers: 64,
            keep_file: false,
        }
    }

    /// A segment in a named file (e.g. `/dev/shm/NAME`), attachable by path.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::file("/dev/shm/example");
    /// # let _ = c;
    /// ```
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self::new(Some(path.as_ref().to_path_buf()), "numashm")
    }

    /// An anonymous segment (memfd); guests attach through its fd.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-anon"))?;
    /// assert!(seg.region().path().is_none());
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn anonymous(name: &str) -> Self {
        Self::new(None, name)
    }

    /// Initial size in bytes (default: what the layout and one extent per class need).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::{Segment, SegmentConfig, SegmentError};
    /// let err = Segment::create(SegmentConfig::anonymous("doc-small").size(8192)).unwrap_err();
    /// assert!(matches!(err, SegmentError::Config { field: "size", .. }));
    /// ```
    pub fn size(mut self, bytes: usize) -> Self {
        self.size = Some(bytes);
        self
    }

    /// Most the segment may grow to (default: 4× size, at least 1 GiB).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").max_size(1 << 30);
    /// # let _ = c;
    /// ```
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Place the segment on a NUMA node (bind by default).
    ///
    /// # Examples
    ///
    /// ```
    /// let node = numashm::Topology::get()?.nodes()[0].os_index;
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-node").node(node))?;
    /// seg.region().verify_placement()?;
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn node(mut self, node: u32) -> Self {
        self.nodes = vec![node];
        self
    }

    /// Placement policy with [`SegmentConfig::node`].
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").policy(numashm::MemPolicy::Preferred);
    /// # let _ = c;
    /// ```
    pub fn policy(mut self, policy: MemPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Cache policy (page size, populate, lock, dontfork, dontdump).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::{CachePolicy, PageSize};
    /// let c = numashm::SegmentConfig::anonymous("x").cache_policy(CachePolicy { populate: true, ..Default::default() });
    /// # let _ = c;
    /// ```
    pub fn cache_policy(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Page size shortcut.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").page_size(numashm::PageSize::Thp).fallback(true);
    /// # let _ = c;
    /// ```
    pub fn page_size(mut self, page_size: PageSize) -> Self {
        self.cache.page_size = page_size;
        self
    }

    /// Degrade the cache policy when it cannot be had (see `RegionOptions::fallback`).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").fallback(true);
    /// # let _ = c;
    /// ```
    pub fn fallback(mut self, yes: bool) -> Self {
        self.fallback = yes;
        self
    }

    /// Size classes of the slot allocator.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::{ClassConfig, Segment, SegmentConfig};
    /// let seg = Segment::create(SegmentConfig::anonymous("doc-classes").classes(ClassConfig::new().class(256, 64)))?;
    /// assert_eq!(seg.allocator().class_count(), 1);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn classes(mut self, classes: ClassConfig) -> Self {
        self.classes = classes;
        self
    }

    /// The rings (default: two SPSC rings of 1024, for ping-pong).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").rings(vec![numashm::RingSpec::mpmc(64)]);
    /// # let _ = c;
    /// ```
    pub fn rings(mut self, rings: Vec<RingSpec>) -> Self {
        self.rings = rings;
        self
    }

    /// Keep a named segment's file when the creating process drops it (by default
    /// the creator owns the file and unlinks it on drop).
    ///
    /// # Examples
    ///
    /// ```
    /// let path = format!("/dev/shm/numashm-doc-keep-{}", std::process::id());
    /// drop(numashm::Segment::create(numashm::SegmentConfig::file(&path).keep_file(true))?);
    /// assert!(std::path::Path::new(&path).exists());
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn keep_file(mut self, keep: bool) -> Self {
        self.keep_file = keep;
        self
    }

    /// Peer table capacity (default 64).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = numashm::SegmentConfig::anonymous("x").max_peers(4);
    /// # let _ = c;
    /// ```
    pub fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self
    }
}

/// One ring of the segment with its doorbells.
#[derive(Debug)]
pub(crate) struct RingSlot {
    pub(crate) spec: RingSpec,
    pub(crate) spsc: Option<Spsc<SharedMemory>>,
    pub(crate) mpmc: Option<Mpmc<SharedMemory>>,
    /// Rung when a handle is pushed ("data available").
    pub(crate) data_bell: Doorbell<SharedBell>,
    /// Rung when a handle is popped ("space available").
    pub(crate) space_bell: Doorbell<SharedBell>,
    /// Word 0: producer peer id (0 = none); word 1: consumer peer id; word 2:
    /// stale handles skipped by receivers.
    pub(crate) ends: Words,
}

pub(crate) const END_PRODUCER: usize = 0;
pub(crate) const END_CONSUMER: usize = 1;
pub(crate) const END_SKIPPED: usize = 2;
// Word 3 is unused since layout 2 (it counted pushes; the ring's own tail now tells).
/// The handle an SPSC producer is sending or last sent (0 = none): written before
/// it marks the slot in flight.
pub(crate) const END_PENDING: usize = 4;
/// The ring position that send's push writes: the push happened exactly when the
/// ring's published tail has moved past it.
pub(crate) const END_PENDING_AT: usize = 5;

/// A shared segment, as seen by one process (the host that created it or a
/// guest that attached). Dropping it detaches: the peer's slots are given back.
///
/// # Examples
///
/// ```
/// use numashm::{Segment, SegmentConfig};
/// use std::os::fd::AsFd;
/// let host = Segment::create(SegmentConfig::anonymous("doc-seg"))?;
/// let guest = Segment::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
/// let tx = host.sender(0)?;
/// let rx = guest.receiver(0)?;
/// let mut msg = tx.alloc(5)?;
/// msg.copy_from_slice(b"hello");
/// tx.send(msg).map_err(|e| e.error)?;
/// assert_eq!(&*rx.recv()?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    pub(crate) region: Arc<Region>,
    pub(crate) layout: Layout,
    pub(crate) alloc: SharedAllocator<RegionMemory>,
    pub(crate) rings: Vec<RingSlot>,
    pub(crate) peers: PeerTable,
    pub(crate) header: Words,
    pub(crate) me: u32,
    pub(crate) my_epoch: u32,
    pub(crate) node: Option<u32>,
    /// NUMA nodes nearest first from the CPU this process attached on (getcpu +
    /// hwloc distances): the order `Sender::alloc` prefers extents in.
    pub(crate) alloc_order: Vec<u32>,
    /// Slots this process's threads freed and keep for their next allocations
    /// (see `cache.rs`).
    pub(crate) cache: SlotCache,
    host: bool,
}


/// Nodes nearest first from the node of the CPU we run on now.
pub(crate) fn local_node_order() -> Vec<u32> {
    let Ok(topo) = numashm_region::Topology::get() else { return Vec::new() };
    // libc's sched_getcpu, not rustix's: rustix finds the vDSO by parsing the
    // auxiliary vector itself, which crashes under valgrind (callgrind counts of
    // the message path need it).
    // SAFETY: sched_getcpu has no preconditions; it returns -1 on error.
    let cpu = unsafe { libc::sched_getcpu() };
    let Ok(cpu) = u32::try_from(cpu) else { return Vec::new() };
    match topo.nodes().iter().find(|n| n.cpus.contains(&cpu)) {
        Some(n) => topo.nodes_by_distance(n.os_index),
        None => Vec::new(),
    }
}

/// What one recovery pass did.
///
/// # Examples
///
/// ```
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-rec"))?;
/// let report = seg.recover_dead_peers();
/// assert!(report.peers.is_empty());
/// # Ok::<(), numashm::SegmentError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// `(peer index, pid, slots reclaimed)` for each dead peer this pass recovered.
    pub peers: Vec<(u32, u32, usize)>,
}

pub(crate) fn header_snapshot(words: &Words) -> [u64; HEADER_WORDS] {
    let mut out = [0u64; HEADER_WORDS];
    for (i, w) in out.iter_mut().enumerate() {
        // SYNC segment-init: the magic with Acquire (pairs with the creator's Release);
        // Relaxed for the rest, read after it and validated before use.
        *w = words.at(i).load(if i == W_MAGIC { Ordering::Acquire } else { Ordering::Relaxed });
    }
    out
}

impl Segment {
    /// Creates a segment and attaches this process as its first peer (the host).
    ///
    /// # Errors
    ///
    /// [`SegmentError::Config`] for impossible settings (size too small for the
    /// layout, bad ring capacities, too many peers), region errors (unknown
    /// node, unavailable cache policy, existing path), allocator errors.
    ///
    /// # Examples
    ///
    /// See [`Segment`].
    pub fn create(config: SegmentConfig) -> Result<Segment, SegmentError> {
        let page = config.cache.page_size.bytes();
        let layout = Layout::compute(config.max_peers, &config.rings, page)?;
        let classes = config.classes.clone().node(config.nodes.first().copied());
        let alloc_min = classes.min_segment_len();
        if alloc_min == 0 {
            return Err(SegmentError::Config { field: "classes", detail: "the size-class table is empty or invalid".into() });
        }
        let needed = (layout.alloc_off + alloc_min).div_ceil(page) * page;
        let size = config.size.unwrap_or(needed);
        if size < needed {
            return Err(SegmentError::Config {
                field: "size",
                detail: format!("{size} bytes is less than the {needed} the layout and one extent per class need"),
            });
        }
        let mut opts = RegionOptions::new(size).cache_policy(config.cache).fallback(config.fallback);
        if let Some(m) = config.max_size {
            opts = opts.max_len(m);
        }
        if !config.nodes.is_empty() {
            opts = opts.nodes(&config.nodes).policy(config.policy);
        }
        let mut region = match &config.path {
            Some(p) => opts.create_file(p)?,
            None => opts.create_anonymous(&config.name)?,
        };
        if config.keep_file {
            region.release_ownership();
        }
        let region = Arc::new(region);
        // Rings and bells first; the allocator; then the header, magic last.
        let rings = Self::lay_rings(&region, &layout, true)?;
        let alloc = SharedAllocator::create(&classes, RegionMemory::new(region.clone(), layout.alloc_off))?;
        let header = Words::new(region.clone(), layout.header_off, HEADER_WORDS)
            .ok_or_else(|| SegmentError::Config { field: "size", detail: "header beyond the region".into() })?;
        let words = layout.words();
        for (i, w) in words.iter().enumerate().skip(1) {
            // Relaxed: published by the Release store of the magic below.
            header.at(i).store(*w, Ordering::Relaxed);
        }
        for (i, r) in layout.rings.iter().enumerate() {
            header.at(W_RING_SPECS + i).store(r.encode(), Ordering::Relaxed); // Relaxed: as above
        }
        // SYNC segment-init: Release publishes the header, the rings and the allocator.
        header.at(W_MAGIC).store(words[W_MAGIC], Ordering::Release);
        Self::join(region, layout, alloc, rings, config.nodes.first().copied(), true)
    }

    /// Attaches to a named segment.
    ///
    /// # Errors
    ///
    /// Region errors (missing file, symlink, foreign owner, corrupt region
    /// header), [`SegmentError::Corrupt`] naming the first bad segment field,
    /// allocator and ring layout errors, [`SegmentError::PeersFull`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::{Segment, SegmentConfig};
    /// let path = format!("/dev/shm/numashm-doc-attach-{}", std::process::id());
    /// let host = Segment::create(SegmentConfig::file(&path))?;
    /// let guest = Segment::attach(&path)?;
    /// assert_eq!(guest.peers().iter().filter(|p| p.state == numashm::PeerState::Attached).count(), 2);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn attach(path: impl AsRef<Path>) -> Result<Segment, SegmentError> {
        Self::attach_region(Region::attach_file(path)?)
    }

    /// Attaches through an fd (e.g. a memfd received over a Unix socket).
    ///
    /// # Errors
    ///
    /// As [`Segment::attach`].
    ///
    /// # Examples
    ///
    /// See [`Segment`].
    pub fn attach_fd(fd: OwnedFd) -> Result<Segment, SegmentError> {
        Self::attach_region(Region::attach_fd_with(fd, AttachOptions::default())?)
    }

    fn attach_region(region: Region) -> Result<Segment, SegmentError> {
        let region = Arc::new(region);
        let header = Words::new(region.clone(), numashm_region::HEADER_LEN, HEADER_WORDS)
            .ok_or_else(|| SegmentError::Corrupt { field: "len", detail: "region too small for a segment header".into() })?;
        let layout = Layout::parse(&header_snapshot(&header), region.page_size(), region.len())?;
        let rings = Self::lay_rings(&region, &layout, false)?;
        let alloc = SharedAllocator::attach(RegionMemory::new(region.clone(), layout.alloc_off))?;
        let node = region.placement().and_then(|p| p.nodes().iter().next());
        Self::join(region, layout, alloc, rings, node, false)
    }

    pub(crate) fn lay_rings(region: &Arc<Region>, layout: &Layout, init: bool) -> Result<Vec<RingSlot>, SegmentError> {
        let mut rings = Vec::with_capacity(layout.rings.len());
        for (i, spec) in layout.rings.iter().enumerate() {
            let off = layout.ring_off(i);
            let block = Words::new(region.clone(), off, layout.ring_stride / 8)
                .ok_or_else(|| SegmentError::Corrupt { field: "rings_off", detail: format!("ring {i} beyond the region") })?;
            let ends = Words::new(region.clone(), off, RING_ENDS_LEN / 8).expect("inside the block checked above");
            let ptr = |at: usize| block.byte_ptr(at).expect("inside the block");
            let ring_len = layout.ring_stride - RING_ENDS_LEN - 2 * BELL_LEN;
            let cap = spec.capacity as usize;
            // SAFETY: for all four constructors: 1. each range lies inside the ring's
            // block, which `Words::new` checked is mapped, and the blocks of
            // different rings do not overlap (stride); 2. the region stays mapped
            // at the same address while `block` (an Arc on it) lives, and the ring
            // values are dropped with the Segment that holds that Arc; 3. the
            // bytes are only accessed through the ring crate's atomics.
            let (data_bell, space_bell, spsc, mpmc) = unsafe {
                let (db, sb) = if init {
                    (Doorbell::init_in(ptr(RING_ENDS_LEN), BELL_LEN)?, Doorbell::init_in(ptr(RING_ENDS_LEN + BELL_LEN), BELL_LEN)?)
                } else {
                    (Doorbell::attach_in(ptr(RING_ENDS_LEN), BELL_LEN)?, Doorbell::attach_in(ptr(RING_ENDS_LEN + BELL_LEN), BELL_LEN)?)
                };
                let at = ptr(RING_ENDS_LEN + 2 * BELL_LEN);
                match (spec.kind, init) {
                    (RingKind::Spsc, true) => (db, sb, Some(Spsc::init_in(at, ring_len, cap)?), None),
                    (RingKind::Spsc, false) => (db, sb, Some(Spsc::attach_in(at, ring_len)?), None),
                    (RingKind::Mpmc, true) => (db, sb, None, Some(Mpmc::init_in(at, ring_len, cap)?)),
                    (RingKind::Mpmc, false) => (db, sb, None, Some(Mpmc::attach_in(at, ring_len)?)),
                }
            };
            let found = spsc.as_ref().map(|r| r.capacity()).or(mpmc.as_ref().map(|r| r.capacity()));
            if found != Some(cap) {
                return Err(SegmentError::Corrupt { field: "ring_specs", detail: format!("ring {i}: header says {cap}, ring says {found:?}") });
            }
            rings.push(RingSlot { spec: *spec, spsc, mpmc, data_bell, space_bell, ends });
        }
        Ok(rings)
    }

    fn join(
        region: Arc<Region>,
        layout: Layout,
        alloc: SharedAllocator<RegionMemory>,
        rings: Vec<RingSlot>,
        node: Option<u32>,
        host: bool,
    ) -> Result<Segment, SegmentError> {
        let words = Words::new(region.clone(), layout.peers_off, layout.max_peers as usize * ENTRY_WORDS)
            .ok_or_else(|| SegmentError::Corrupt { field: "peers_off", detail: "peer table beyond the region".into() })?;
        let peers = PeerTable { words, max: layout.max_peers };
        let pid = std::process::id();
        let mut found = peers.attach(pid, region.as_ptr() as u64);
        if found.is_none() {
            // Full: free the slots of dead peers, then try once more.
            let seg_peers = peers.clone();
            recover_with(&seg_peers, &alloc, &rings);
            found = peers.attach(pid, region.as_ptr() as u64);
        }
        let (me, my_epoch) = found.ok_or(SegmentError::PeersFull { max: layout.max_peers })?;
        let header = Words::new(region.clone(), layout.header_off, HEADER_WORDS).expect("validated at create/attach");
        let alloc_order = local_node_order();
        let cache = SlotCache::new(alloc.class_count());
        let seg = Segment { region, layout, alloc, rings, peers, header, me, my_epoch, node, alloc_order, cache, host };
        seg.wait_for_sweep()?;
        Ok(seg)
    }

    /// An attacher must not allocate while a recoverer sweeps (see `sweep_if_alone`).
    /// Bounded: a live holder that keeps the word past [`SWEEP_WAIT`] is an error.
    fn wait_for_sweep(&self) -> Result<(), SegmentError> {
        // SYNC sweep-exclusion (Dekker): our attach CAS, then this fence, then the
        // flag load; the sweeper stores the flag, fences, then loads the peer
        // states. With both fences SeqCst, at least one side sees the other.
        crate::sync::fence(Ordering::SeqCst);
        let flag = self.header.at(W_SWEEP);
        let start = std::time::Instant::now();
        loop {
            let holder = flag.load(Ordering::SeqCst);
            if holder == 0 {
                return Ok(());
            }
            let named = (1..=u64::from(self.peers.max)).contains(&holder);
            let index = (holder as u32).wrapping_sub(1);
            let live = named && {
                let (state, _, pid) = self.peers.ident(index);
                state == PeerState::Attached && is_alive(pid, self.peers.started(index))
            };
            if !live {
                // The sweeper died (or the word names nobody): its sweep is void (it
                // ran only while alone, and will be redone); clear the flag.
                let _ = flag.compare_exchange(holder, 0, Ordering::SeqCst, Ordering::SeqCst);
                self.header.at(W_SWEEP_PENDING).store(1, Ordering::SeqCst);
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= SWEEP_WAIT {
                return Err(SegmentError::SweepStuck { holder, waited_ms: waited.as_millis() as u64 });
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// Frees slots in flight to a ring (sent before any consumer had claimed it)
    /// that no ring holds any more: a consumer popped them and died before
    /// taking them over. Runs inside the exclusive sweep only: the rings are
    /// emptied and refilled in order to see what they hold.
    fn sweep_orphaned_in_flight(&self) -> usize {
        let mut queued = std::collections::HashSet::new();
        for r in &self.rings {
            let mut held = Vec::new();
            match (&r.spsc, &r.mpmc) {
                (Some(s), _) => {
                    let _ = s.salvage(|h| held.push(h));
                    if let Ok(mut p) = s.producer() {
                        for &h in &held {
                            let _ = p.push(h);
                        }
                    }
                }
                (_, Some(m)) => {
                    let _ = m.salvage(|h| held.push(h));
                    for &h in &held {
                        let _ = m.push(h);
                    }
                }
                _ => {}
            }
            queued.extend(held);
        }
        let me = peer_id(self.me);
        let mut freed = 0;
        for ring in 0..self.rings.len() {
            for h in self.alloc.owned_by(ring_pseudo_peer(ring)) {
                // `take` succeeds only while it is still in flight.
                if !queued.contains(&h.to_u64()) && self.alloc.take(h, me).is_ok() && self.alloc.free(h).is_ok() {
                    freed += 1;
                }
            }
        }
        freed
    }

    /// Puts back slots lost inside the allocator by a peer killed in the few
    /// instructions of alloc/free between a free-list CAS and the slot's state
    /// update (no owner accounts for such a slot, so recovery cannot free it).
    /// The sweep needs the allocator to itself: it runs only when this process
    /// is the segment's sole peer (new attachers wait for it), and `&mut self`
    /// proves no sender, receiver or slot of this process is alive. Returns
    /// `Some(slots found)`, or `None` when other peers are attached (the sweep
    /// stays pending; recovery marks it so).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-sweep"))?;
    /// assert_eq!(seg.sweep_lost_slots(), Some(0));
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn sweep_lost_slots(&mut self) -> Option<usize> {
        let flag = self.header.at(W_SWEEP);
        let me = u64::from(peer_id(self.me));
        // SeqCst: SYNC sweep-exclusion (see wait_for_sweep).
        if flag.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return None;
        }
        crate::sync::fence(Ordering::SeqCst);
        let alone = (0..self.peers.max).all(|i| i == self.me || self.peers.ident(i).0 == PeerState::Empty);
        let found = if alone {
            // SAFETY: 1. no other peer is attached, and attachers wait for the flag
            // before touching the allocator (SYNC sweep-exclusion); 2. `&mut self`
            // means no Sender, Receiver, slot or allocator borrow of this process
            // is alive. So this thread is the allocator's only user.
            let n = unsafe { self.alloc.sweep_lost_slots() } + self.sweep_orphaned_in_flight();
            self.header.at(W_SWEEP_PENDING).store(0, Ordering::SeqCst);
            Some(n)
        } else {
            self.header.at(W_SWEEP_PENDING).store(1, Ordering::SeqCst);
            None
        };
        flag.store(0, Ordering::SeqCst);
        found
    }

    /// The region under the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-region"))?;
    /// assert!(seg.region().len() > 0);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The slot allocator, for inspection and growth (safe: it cannot free or
    /// hand out a slot).
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-alloc"))?;
    /// assert_eq!(seg.allocator().class_count(), 4);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn allocator(&self) -> crate::AllocatorView<'_, impl numashm_varslot::SegmentMemory> {
        crate::AllocatorView { alloc: &self.alloc }
    }

    /// The raw slot allocator: alloc, free, take and reclaim by handle.
    ///
    /// # Safety
    ///
    /// The caller must not free, recycle, take, send, receive or reclaim (for
    /// this process's peer id) a slot that a live [`SlotMut`](crate::SlotMut) or
    /// [`Message`](crate::Message) of this segment holds: that slot could then be
    /// handed out again while the guard's `&mut [u8]` / `&[u8]` lives.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-raw"))?;
    /// // SAFETY: no SlotMut or Message of this segment exists.
    /// let a = unsafe { seg.raw_allocator() };
    /// let h = a.alloc(10, seg.peer_index() + 1)?;
    /// a.free(h)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn raw_allocator(&self) -> &SharedAllocator<impl numashm_varslot::SegmentMemory> {
        &self.alloc
    }

    /// Whether this process created the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-host"))?;
    /// assert!(seg.is_host());
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// Byte offsets of the segment's parts inside the region: `(segment header,
    /// peer table, rings, allocator)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-layout"))?;
    /// let (header, peers, rings, alloc) = seg.layout_offsets();
    /// assert!(header < peers && peers < rings && rings < alloc);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn layout_offsets(&self) -> (usize, usize, usize, usize) {
        (self.layout.header_off, self.layout.peers_off, self.layout.rings_off, self.layout.alloc_off)
    }

    /// Frees the slots the calling thread keeps cached for its next allocations,
    /// and those parked by threads that exited (normally they are reused by
    /// `Sender::alloc`, and reclaimed with the peer when it detaches or dies).
    /// For exact accounting, e.g. before counting free slots through
    /// [`Segment::allocator`]; other live threads' caches are theirs (each holds
    /// at most 32 slots per class).
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-flush"))?;
    /// let (tx, rx) = (seg.sender(0)?, seg.receiver(0)?);
    /// tx.send(tx.alloc(8)?).map_err(|e| e.error)?;
    /// drop(rx.recv()?);              // the slot goes to the cache
    /// assert_eq!(seg.flush_cache(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_cache(&self) -> usize {
        self.cache.flush(&self.alloc)
    }

    /// Whether `h`'s slot is worth keeping in this process's cache: its extent is
    /// on our node (or unplaced), or there is only one node.
    #[inline]
    fn is_local(&self, h: Handle) -> bool {
        self.alloc_order.len() <= 1
            || match self.alloc.extent_info(h.class(), h.extent()) {
                Some((None, _)) => true,
                Some((node, _)) => node == self.alloc_order.first().copied(),
                None => false,
            }
    }

    /// Gives back a slot we hold (unsent, or received and read), keeping it in
    /// the cache when useful.
    #[inline]
    pub(crate) fn free_slot(&self, l: &Located) {
        if self.is_local(l.handle()) {
            self.cache.keep(&self.alloc, peer_id(self.me), l);
        } else {
            // A failure means it was reclaimed already (we were presumed dead).
            let _ = self.alloc.free(l.handle());
        }
    }

    /// Number of rings.
    ///
    /// # Examples
    ///
    /// See [`SegmentConfig`].
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// `(spec, fill, producer peer, consumer peer, stale handles skipped)` of a ring.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NoSuchRing`], [`SegmentError::RingCorrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-ringinfo"))?;
    /// let info = seg.ring_info(0)?;
    /// assert_eq!(info.fill, 0);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn ring_info(&self, ring: usize) -> Result<RingInfo, SegmentError> {
        ring_info_of(self.ring(ring)?)
    }

    pub(crate) fn ring(&self, ring: usize) -> Result<&RingSlot, SegmentError> {
        self.rings.get(ring).ok_or(SegmentError::NoSuchRing { ring, count: self.rings.len() })
    }

    /// This process's index in the peer table.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-me"))?;
    /// assert_eq!(seg.peer_index(), 0);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn peer_index(&self) -> u32 {
        self.me
    }

    /// A snapshot of every peer entry.
    ///
    /// # Examples
    ///
    /// See [`PeerInfo`].
    pub fn peers(&self) -> Vec<PeerInfo> {
        (0..self.peers.max).map(|i| self.peers.info(i)).collect()
    }

    /// Where the attached process `pid` mapped the segment (its base address).
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotAttached`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-map"))?;
    /// assert_eq!(seg.get_mapping(std::process::id())?, seg.region().as_ptr() as u64);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn get_mapping(&self, pid: u32) -> Result<u64, SegmentError> {
        let i = self.peers.find_pid(pid).ok_or(SegmentError::NotAttached { pid })?;
        Ok(self.peers.info(i).mapping)
    }

    /// Finds peers whose process died (pidfd, plus the start time against pid
    /// reuse) and reclaims everything they held: their slots (Allocated or in
    /// flight to them) are freed with new generations, so their stale handles
    /// fail; rings they consumed are drained; their ring ends are released.
    /// Safe when several processes recover at once (one CAS decides who
    /// reclaims each peer) and when run repeatedly. Never panics or aborts.
    ///
    /// # Examples
    ///
    /// See [`Recovery`].
    pub fn recover_dead_peers(&self) -> Recovery {
        let report = recover_with(&self.peers, &self.alloc, &self.rings);
        if !report.peers.is_empty() {
            // A peer killed inside alloc/free may have lost a slot no owner accounts
            // for: `sweep_lost_slots` finds it once the sweeper is alone.
            // Relaxed: a hint for whoever sweeps next.
            self.header.at(W_SWEEP_PENDING).store(1, Ordering::Relaxed);
        }
        report
    }

    /// What the owner does between messages: grow the size classes guests asked
    /// for, recover dead peers, notice region growth, and check that the backing
    /// file was not truncated under the mapping.
    ///
    /// # Errors
    ///
    /// Region errors from noticing growth; [`numashm_region::RegionError::Corrupt`]
    /// when the backing file was truncated.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-service"))?;
    /// seg.service()?;
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn service(&self) -> Result<Recovery, SegmentError> {
        self.region.check_and_remap()?;
        // A named file truncated by an outsider would SIGBUS whoever touches the
        // lost pages: detect it here, off the hot path.
        self.region.verify_backing()?;
        if self.alloc.is_owner() {
            let requests = self.alloc.take_grow_requests();
            for class in 0..self.alloc.class_count().min(64) {
                if requests & (1 << class) != 0 {
                    // A full extent table is not an error of the service loop: the
                    // guest keeps getting Exhausted, which it already handles.
                    let _ = self.alloc.grow(class, self.node);
                }
            }
        }
        Ok(self.recover_dead_peers())
    }
}

/// A ring as seen by `Segment::ring_info`.
///
/// # Examples
///
/// See [`Segment::ring_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// Kind and capacity.
    pub spec: RingSpec,
    /// Handles in the ring now (the consumer's lag).
    pub fill: usize,
    /// Peer index holding the producer end.
    pub producer: Option<u32>,
    /// Peer index holding the consumer end.
    pub consumer: Option<u32>,
    /// Stale handles receivers skipped (sent by a peer that died meanwhile).
    pub skipped: u64,
}

fn recover_with(peers: &PeerTable, alloc: &SharedAllocator<RegionMemory>, rings: &[RingSlot]) -> Recovery {
    let mut me = None;
    let mut report = Recovery::default();
    for i in 0..peers.max {
        let (state, epoch, pid) = peers.ident(i);
        let candidate = match state {
            PeerState::Attached => {
                let dead = !is_alive(pid, peers.started(i));
                if dead {
                    // One caller's CAS marks it Dead (losing means another did);
                    // whoever then wins the claim recovers it.
                    let _ = peers.begin_recover(i, epoch, pid);
                }
                dead
            }
            // Being recovered, or a recoverer (or a leaving peer) died half-way:
            // the claim says whether someone alive is on it, and
            // `recover_claimed` whether a leaver is still alive.
            PeerState::Dead | PeerState::Leaving => true,
            PeerState::Empty => false,
        };
        if !candidate {
            continue;
        }
        let me = *me.get_or_insert_with(Claimant::this_process);
        if peers.claim_recovery(i, me) {
            if let Some(done) = recover_claimed(peers, alloc, rings, i) {
                report.peers.push(done);
            }
            peers.unclaim_recovery(i, me);
        }
    }
    report
}

/// Recovers entry `i`, whose recovery claim the caller holds: with it, nobody
/// else can move the entry out of Dead / Leaving. It is looked at again, since
/// between the caller's first look and its claim another recoverer may have
/// finished it and a new peer attached there (whose slots are not ours to take).
/// Returns `(entry, pid, slots reclaimed)` when it recovered something.
pub(crate) fn recover_claimed(peers: &PeerTable, alloc: &SharedAllocator<RegionMemory>, rings: &[RingSlot], i: u32) -> Option<(u32, u32, usize)> {
    let (state, epoch, pid) = peers.ident(i);
    let ours = match state {
        PeerState::Dead => true,
        PeerState::Leaving => !is_alive(pid, peers.started(i)),
        PeerState::Attached | PeerState::Empty => false,
    };
    if !ours {
        return None;
    }
    let n = release_peer(i, alloc, rings);
    peers.add_reclaimed(i, n as u64);
    peers.release(i, epoch, pid);
    Some((i, pid, n))
}

/// Gives back everything peer `i` holds. Returns the slots reclaimed.
pub(crate) fn release_peer(i: u32, alloc: &SharedAllocator<RegionMemory>, rings: &[RingSlot]) -> usize {
    let n = alloc.reclaim_peer(peer_id(i));
    for r in rings {
        release_producer_end(i, alloc, r);
        release_consumer_end(i, alloc, r);
    }
    n
}

/// If peer `i` (dead, or leaving) holds `r`'s producer end: finish a send it died
/// in the middle of, then free the end; what it already pushed stays for the
/// consumer. Taking the end first (AcqRel) makes this caller the only one
/// looking at the pending record. Returns whether this call freed the end.
pub(crate) fn release_producer_end(i: u32, alloc: &SharedAllocator<RegionMemory>, r: &RingSlot) -> bool {
    let id = u64::from(peer_id(i));
    if r.ends.at(END_PRODUCER).compare_exchange(id, u64::MAX, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return false;
    }
    // Acquire: pairs with the sender's Release store of the position, so the
    // handle read next is the one written before it.
    let at = r.ends.at(END_PENDING_AT).load(Ordering::Acquire);
    // Relaxed: ordered by the Acquire above.
    let pending = r.ends.at(END_PENDING).load(Ordering::Relaxed);
    // Only SPSC producers keep a pending record.
    let unpushed = r.spsc.as_ref().is_some_and(|s| !s.written(at));
    if let Some(h) = Handle::from_u64(pending).filter(|_| unpushed) {
        // Marked in flight (perhaps) but its push never happened: nobody can pop
        // it, so free it here. `take` succeeds only if it is in flight (if it is
        // still Allocated to the dead peer, its reclaim frees it).
        if alloc.take(h, peer_id(i)).is_ok() {
            let _ = alloc.free(h);
        }
    }
    r.ends.at(END_PENDING).store(0, Ordering::Relaxed); // Relaxed: published by the Release below
    // Release: the cleanup happens before the end is free for the next producer.
    r.ends.at(END_PRODUCER).store(0, Ordering::Release);
    true
}

/// If peer `i` (dead, or leaving) holds `r`'s consumer end: take it over (one
/// caller wins), drain what was in flight to it (a dead peer's reclaim frees
/// those; slots in flight to the ring itself are freed here), then free the
/// end. Returns whether this call freed the end.
pub(crate) fn release_consumer_end(i: u32, alloc: &SharedAllocator<RegionMemory>, r: &RingSlot) -> bool {
    let id = u64::from(peer_id(i));
    if r.ends.at(END_CONSUMER).compare_exchange(id, u64::MAX, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return false;
    }
    if let Some(s) = &r.spsc {
        if let Ok(mut c) = s.consumer() {
            let mut buf = [0u64; 64];
            while let Ok(k @ 1..) = c.pop_into(&mut buf) {
                // In flight to the dead peer: reclaimed with it (stale then). In
                // flight to the ring (sent before it claimed the end): free here.
                for h in buf[..k].iter().filter_map(|&raw| Handle::from_u64(raw)) {
                    if alloc.take(h, peer_id(i)).is_ok() {
                        let _ = alloc.free(h);
                    }
                }
            }
        }
    }
    // Release: the drain happens before the end is free for the next consumer.
    r.ends.at(END_CONSUMER).store(0, Ordering::Release);
    // A producer parked on "space available" may go on.
    let _ = r.space_bell.notify();
    true
}

impl Drop for Segment {
    fn drop(&mut self) {
        let pid = std::process::id();
        if self.peers.begin_leave(self.me, self.my_epoch, pid) {
            let n = release_peer(self.me, &self.alloc, &self.rings);
            self.peers.add_reclaimed(self.me, n as u64);
            self.peers.release(self.me, self.my_epoch, pid);
        }
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.region.as_fd()
    }
}

/// Where a segment is placed (for inspection).
///
/// # Examples
///
/// ```
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-pl"))?;
/// assert!(numashm::placement_of(&seg).is_none());
/// # Ok::<(), numashm::SegmentError>(())
/// ```
pub fn placement_of(segment: &Segment) -> Option<Placement> {
    segment.region.placement()
}

impl RingSlot {
    /// Handles in the ring now.
    pub(crate) fn fill(&self) -> Result<usize, numashm_ring::Corrupt> {
        match (&self.spsc, &self.mpmc) {
            (Some(s), _) => s.len(),
            (_, Some(m)) => m.len(),
            _ => Ok(0),
        }
    }
}

/// A ring's fill, ends and counters.
pub(crate) fn ring_info_of(r: &RingSlot) -> Result<RingInfo, SegmentError> {
    let fill = r.fill()?;
    // Relaxed: observation only.
    let end = |w| r.ends.at(w).load(Ordering::Relaxed);
    // Any value another process wrote: only a peer id (1..=u32::MAX) names a holder.
    let holder = |v: u64| u32::try_from(v).ok().and_then(|v| v.checked_sub(1));
    Ok(RingInfo { spec: r.spec, fill, producer: holder(end(END_PRODUCER)), consumer: holder(end(END_CONSUMER)), skipped: end(END_SKIPPED) })
}

#[cfg(test)]
mod recovery_tests {
    use super::*;
    use crate::peers::start_time;

    /// An end word no peer id can be (>= 2^32, or a low half of zero) made
    /// `sender()` spin forever and `ring_info` panic; now the end is taken over
    /// and the report shows no holder.
    #[test]
    fn garbage_end_words_are_taken_over_not_spun_on() {
        let seg = Segment::create(SegmentConfig::anonymous("garbage-ends")).unwrap();
        for garbage in [1u64 << 40 | 3, 1 << 32, u64::from(u32::MAX) + 7, u64::from(seg.peers.max) + 1] {
            let slot = seg.ring(0).unwrap();
            slot.ends.at(END_PRODUCER).store(garbage, Ordering::Relaxed);
            slot.ends.at(END_CONSUMER).store(garbage, Ordering::Relaxed);
            let info = ring_info_of(slot).unwrap();
            assert_eq!(info.producer, u32::try_from(garbage).ok().and_then(|v| v.checked_sub(1)), "report of {garbage:#x}");
            let tx = seg.sender(0).expect("a garbage producer end is taken over");
            let rx = seg.receiver(0).expect("a garbage consumer end is taken over");
            tx.send(tx.alloc(1).unwrap()).map_err(|e| e.error).unwrap();
            assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap().len(), 1);
        }
    }

    /// A live peer that writes its id into the sweep word used to block every
    /// new attacher forever; now attach ends in a typed error after SWEEP_WAIT.
    #[test]
    fn a_sweep_word_held_by_a_live_peer_ends_attach_with_an_error() {
        let seg = Segment::create(SegmentConfig::anonymous("stuck-sweep")).unwrap();
        // Our own entry is live: claim the sweep word in its name and never sweep.
        seg.header.at(W_SWEEP).store(u64::from(peer_id(seg.me)), Ordering::SeqCst);
        let start = std::time::Instant::now();
        let e = Segment::attach_fd(seg.as_fd().try_clone_to_owned().unwrap()).unwrap_err();
        assert!(matches!(e, SegmentError::SweepStuck { holder, .. } if holder == u64::from(peer_id(seg.me))), "{e}");
        assert!(start.elapsed() >= SWEEP_WAIT);
        // Garbage in the word names nobody: cleared, attach proceeds.
        seg.header.at(W_SWEEP).store(u64::MAX - 3, Ordering::SeqCst);
        let guest = Segment::attach_fd(seg.as_fd().try_clone_to_owned().unwrap()).expect("attach past a garbage sweep word");
        assert_eq!(seg.header.at(W_SWEEP).load(Ordering::SeqCst), 0);
        drop(guest);
    }

    /// A pid that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().expect("spawn true");
        c.wait().expect("wait");
        c.id()
    }

    /// An Empty entry of `seg` made to look attached by a dead process that holds
    /// `n` slots; returns its index and the handles.
    fn dead_peer_with_slots(seg: &Segment, n: usize) -> (u32, Vec<numashm_varslot::Handle>) {
        let i = (0..seg.peers.max).find(|&i| seg.peers.ident(i).0 == PeerState::Empty).expect("a free entry");
        seg.peers.pretend_attached(i, 7, dead_pid());
        let held = (0..n).map(|_| seg.alloc.alloc(64, peer_id(i)).expect("alloc")).collect();
        (i, held)
    }

    #[test]
    fn a_live_recoverer_keeps_others_out_and_a_dead_one_is_taken_over() {
        let seg = Segment::create(SegmentConfig::anonymous("rec-claim")).unwrap();
        let (i, held) = dead_peer_with_slots(&seg, 3);
        // Another process claims the recovery of entry i and is still running.
        let mut other = std::process::Command::new("sleep").arg("60").spawn().expect("spawn sleep");
        let claimant = Claimant::of(other.id(), start_time(other.id()).expect("start time"));
        seg.peers.recoverer(i).store(claimant.0, Ordering::Release);

        let report = seg.recover_dead_peers();
        assert!(report.peers.iter().all(|p| p.0 != i), "entry {i} recovered under a live claimant: {report:?}");
        assert_eq!(seg.peers()[i as usize].recovered_by, Some(other.id()), "operators see who recovers it");
        assert_eq!(seg.peers.ident(i).0, PeerState::Dead, "marked dead, left to the claimant");
        for &h in &held {
            assert_eq!(seg.alloc.state(h), Ok((numashm_varslot::SlotState::Allocated, peer_id(i))));
        }

        // The claimant dies half-way: the next recovery takes over and finishes.
        other.kill().unwrap();
        other.wait().unwrap();
        let report = seg.recover_dead_peers();
        assert!(report.peers.iter().any(|&(e, _, n)| e == i && n == 3), "{report:?}");
        assert_eq!(seg.peers.ident(i).0, PeerState::Empty);
        assert_eq!(seg.peers.recoverer(i).load(Ordering::Acquire), 0, "claim given back");
        assert_eq!(seg.peers()[i as usize].recovered_by, None);
        for &h in &held {
            assert_eq!(seg.alloc.state(h), Err(numashm_varslot::HandleError::Stale));
        }
    }

    #[test]
    fn an_entry_another_thread_of_ours_recovers_is_skipped() {
        let seg = Segment::create(SegmentConfig::anonymous("rec-self")).unwrap();
        let (i, held) = dead_peer_with_slots(&seg, 2);
        seg.peers.recoverer(i).store(Claimant::this_process().0, Ordering::Release);
        assert!(seg.recover_dead_peers().peers.iter().all(|p| p.0 != i));
        assert_eq!(seg.alloc.state(held[0]), Ok((numashm_varslot::SlotState::Allocated, peer_id(i))));
        seg.peers.recoverer(i).store(0, Ordering::Release);
        assert!(seg.recover_dead_peers().peers.iter().any(|p| p.0 == i));
    }

    #[test]
    fn a_late_recoverer_leaves_the_next_attacher_alone() {
        // A recoverer saw entry i Dead, but before it claimed the entry another
        // recoverer finished it and a new peer attached there: holding the claim,
        // it looks again and takes nothing (peer ids are entry indices, so the
        // new peer's slots carry the dead one's id).
        let seg = Segment::create(SegmentConfig::anonymous("rec-late")).unwrap();
        let (i, _) = dead_peer_with_slots(&seg, 1);
        assert!(seg.recover_dead_peers().peers.iter().any(|p| p.0 == i));
        let (state, epoch, _) = seg.peers.ident(i);
        assert_eq!(state, PeerState::Empty);
        seg.peers.pretend_attached(i, epoch + 1, std::process::id());
        let new_peers_slot = seg.alloc.alloc(64, peer_id(i)).unwrap();
        let me = Claimant::this_process();
        assert!(seg.peers.claim_recovery(i, me));
        assert_eq!(recover_claimed(&seg.peers, &seg.alloc, &seg.rings, i), None);
        seg.peers.unclaim_recovery(i, me);
        assert_eq!(seg.alloc.state(new_peers_slot), Ok((numashm_varslot::SlotState::Allocated, peer_id(i))));
        assert_eq!(seg.peers.ident(i), (PeerState::Attached, epoch + 1, std::process::id()));
    }
}
