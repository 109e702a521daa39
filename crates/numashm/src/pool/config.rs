//! How a peer's pool is made: where it lives, how big it may grow, its classes.

use numashm_region::{CachePolicy, MemPolicy};
use numashm_varslot::OwnerConfig;

/// Settings of the pool a peer creates when it joins.
///
/// By default the pool is bound (`MemPolicy::Bind`) to the NUMA node of the CPU the
/// joining thread runs on, reserves 1 GiB of address space (committing
/// memory only as classes are first used) and uses the default classes.
///
/// # Examples
///
/// ```
/// let cfg = numashm::pool::PeerConfig::new("doc-cfg").reserve(64 << 20).ring_capacity(512);
/// assert_eq!(cfg.ring_capacity_value(), 512);
/// ```
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub(crate) name: String,
    pub(crate) reserve: usize,
    pub(crate) nodes: Vec<u32>,
    pub(crate) policy: MemPolicy,
    pub(crate) fallback: bool,
    pub(crate) cache: CachePolicy,
    pub(crate) classes: OwnerConfig,
    pub(crate) ring_capacity: usize,
    pub(crate) here: bool,
    pub(crate) gate: crate::pool::gate::Gate,
}

impl PeerConfig {
    /// Defaults; `name` names the memfd (seen in `/proc/PID/fd`).
    ///
    /// # Examples
    ///
    /// See [`PeerConfig`].
    pub fn new(name: &str) -> Self {
        PeerConfig {
            name: name.to_owned(),
            reserve: 1 << 30,
            nodes: Vec::new(),
            policy: MemPolicy::Bind,
            fallback: false,
            cache: CachePolicy::default(),
            classes: OwnerConfig::default(),
            ring_capacity: 256,
            here: true,
            gate: crate::pool::gate::Gate::Open,
        }
    }

    /// Most bytes the pool may ever hold (address space reserved once).
    ///
    /// # Examples
    ///
    /// See [`PeerConfig`].
    pub fn reserve(mut self, bytes: usize) -> Self {
        self.reserve = bytes;
        self
    }

    /// Places the pool on these nodes with this policy instead of the node of
    /// the joining CPU (`Preferred` and `Interleave` stay what they are).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::pool::PeerConfig;
    /// let cfg = PeerConfig::new("doc-nodes").nodes(&[0], numashm::MemPolicy::Preferred);
    /// # let _ = cfg;
    /// ```
    pub fn nodes(mut self, nodes: &[u32], policy: MemPolicy) -> Self {
        self.nodes = nodes.to_vec();
        self.policy = policy;
        self.here = false;
        self
    }

    /// No NUMA policy at all (the kernel's default, first touch).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm::pool::PeerConfig::new("doc-unplaced").unplaced();
    /// # let _ = cfg;
    /// ```
    pub fn unplaced(mut self) -> Self {
        self.nodes.clear();
        self.here = false;
        self
    }

    /// Whether an unavailable placement may fall back to none (default: an error).
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm::pool::PeerConfig::new("doc-fb").fallback(true);
    /// # let _ = cfg;
    /// ```
    pub fn fallback(mut self, yes: bool) -> Self {
        self.fallback = yes;
        self
    }

    /// Page size, THP, prefault and the rest of the cache policy.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm::pool::PeerConfig::new("doc-cache").cache_policy(numashm::CachePolicy::default());
    /// # let _ = cfg;
    /// ```
    pub fn cache_policy(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// The allocator's size classes and extent sizes.
    ///
    /// # Examples
    ///
    /// ```
    /// let cfg = numashm::pool::PeerConfig::new("doc-classes").classes(numashm::OwnerConfig::default());
    /// # let _ = cfg;
    /// ```
    pub fn classes(mut self, classes: OwnerConfig) -> Self {
        self.classes = classes;
        self
    }

    /// Cells of each data ring this peer produces (a power of two, 2..=65536).
    ///
    /// # Examples
    ///
    /// See [`PeerConfig`].
    pub fn ring_capacity(mut self, cells: usize) -> Self {
        self.ring_capacity = cells;
        self
    }

    /// Makes this peer the gatekeeper of a gated rendezvous: it exchanges
    /// messages only with processes it granted a ticket
    /// ([`Peer::grant_join`](crate::pool::Peer::grant_join)) and with its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::pool::{Peer, PeerConfig};
    /// let gate = Peer::create_anonymous("doc-keeper", 4, PeerConfig::new("doc-keeper").gatekeeper())?;
    /// assert!(gate.grant_join(std::process::id()).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gatekeeper(mut self) -> Self {
        self.gate = crate::pool::gate::Gate::Keeper;
        self
    }

    /// Joins a gated rendezvous with `ticket`: our pool shows its token, so
    /// that peers of the same gate exchange messages with us, and we exchange
    /// messages only with peers the ticket's gatekeeper admitted (and the
    /// gatekeeper's own process).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::pool::{Peer, PeerConfig};
    /// let gate = Peer::create_anonymous("doc-ticketed", 4, PeerConfig::new("doc-gate").gatekeeper())?;
    /// let ticket = gate.grant_join(std::process::id())?; // another process's pid, in practice
    /// let member = gate.join_same(PeerConfig::new("doc-member").ticket(ticket))?;
    /// let (tx, rx) = (gate.sender(0)?, member.receiver(0)?);
    /// let mut m = tx.alloc(2)?;
    /// m.copy_from_slice(b"ok");
    /// tx.send(m).map_err(|e| e.error)?;
    /// assert_eq!(&*rx.recv_timeout(std::time::Duration::from_secs(5))?, b"ok");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ticket(mut self, ticket: crate::pool::JoinTicket) -> Self {
        self.gate = crate::pool::gate::Gate::Ticket(ticket);
        self
    }

    /// The ring capacity set.
    ///
    /// # Examples
    ///
    /// See [`PeerConfig`].
    pub fn ring_capacity_value(&self) -> usize {
        self.ring_capacity
    }

    /// Resolves "the node of the joining CPU" into a node list (hwloc via the
    /// region layer's topology), once, at join.
    pub(crate) fn resolved(&self) -> PeerConfig {
        let mut cfg = self.clone();
        if cfg.here {
            if let Some(node) = crate::local_node::local_node_order().first().copied() {
                cfg.nodes = vec![node];
                cfg.policy = MemPolicy::Bind;
            }
        }
        cfg
    }
}
