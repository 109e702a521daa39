//! Placement (which NUMA nodes, which policy) and cache policy (page size,
//! prefault, lock, fork/dump behaviour) of a region.

use crate::error::{RegionError, Result};
use crate::sys::MASK_BITS;

/// A set of NUMA nodes (OS indices below 256).
///
/// # Examples
///
/// ```
/// use numashm_region::NodeSet;
/// let set = NodeSet::from_nodes(&[0, 3])?;
/// assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3]);
/// assert!(set.contains(3) && !set.contains(1));
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
// Not hwlocality's NodeSet (an FFI heap bitmap): plain Copy words, kept in the region header and given to mbind as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NodeSet {
    bits: [u64; MASK_BITS / 64],
}

impl NodeSet {
    /// The largest node number a set can hold, plus one.
    pub const CAPACITY: u32 = MASK_BITS as u32;

    /// The empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_region::NodeSet::empty().is_empty());
    /// ```
    pub const fn empty() -> Self {
        NodeSet { bits: [0; MASK_BITS / 64] }
    }

    /// A set of one node. Nodes at or above [`NodeSet::CAPACITY`] give an empty
    /// set, which placement rejects.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_region::NodeSet::single(1).contains(1));
    /// ```
    pub fn single(node: u32) -> Self {
        let mut set = Self::empty();
        let _ = set.insert(node);
        set
    }

    /// A set of the given nodes.
    ///
    /// # Errors
    ///
    /// [`RegionError::InvalidArgument`] for a node at or above [`NodeSet::CAPACITY`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_region::NodeSet::from_nodes(&[1000]).is_err());
    /// ```
    pub fn from_nodes(nodes: &[u32]) -> Result<Self> {
        let mut set = Self::empty();
        for &n in nodes {
            set.insert(n)?;
        }
        Ok(set)
    }

    /// Adds a node.
    ///
    /// # Errors
    ///
    /// [`RegionError::InvalidArgument`] for a node at or above [`NodeSet::CAPACITY`].
    ///
    /// # Examples
    ///
    /// ```
    /// let mut set = numashm_region::NodeSet::empty();
    /// set.insert(2)?;
    /// assert!(set.contains(2));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn insert(&mut self, node: u32) -> Result<()> {
        if node >= Self::CAPACITY {
            return Err(RegionError::invalid(
                "node",
                format!("node {node} is beyond the {} nodes numashm supports", Self::CAPACITY),
            ));
        }
        self.bits[node as usize / 64] |= 1 << (node % 64);
        Ok(())
    }

    /// Whether `node` is in the set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!numashm_region::NodeSet::single(0).contains(1));
    /// ```
    pub fn contains(&self, node: u32) -> bool {
        node < Self::CAPACITY && self.bits[node as usize / 64] & (1 << (node % 64)) != 0
    }

    /// Whether the set is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!numashm_region::NodeSet::single(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The nodes, ascending.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = numashm_region::NodeSet::from_nodes(&[5, 1])?;
    /// assert_eq!(set.iter().next(), Some(1));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..Self::CAPACITY).filter(move |&n| self.contains(n))
    }

    /// Number of nodes in the set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_region::NodeSet::from_nodes(&[0, 1])?.len(), 2);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(crate) fn words(&self) -> &[u64; MASK_BITS / 64] {
        &self.bits
    }

    pub(crate) fn from_words(bits: [u64; MASK_BITS / 64]) -> Self {
        NodeSet { bits }
    }
}

/// How the kernel places a region's pages on its nodes (`mbind` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MemPolicy {
    /// `MPOL_BIND`: only these nodes; allocation fails rather than spill elsewhere.
    Bind = 1,
    /// `MPOL_PREFERRED`: this one node first, others when it is full.
    Preferred = 2,
    /// `MPOL_INTERLEAVE`: pages spread round-robin over the nodes.
    Interleave = 3,
}

impl MemPolicy {
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(MemPolicy::Bind),
            2 => Some(MemPolicy::Preferred),
            3 => Some(MemPolicy::Interleave),
            _ => None,
        }
    }

    pub(crate) fn mode(self) -> i32 {
        match self {
            MemPolicy::Bind => crate::sys::MPOL_BIND,
            MemPolicy::Preferred => crate::sys::MPOL_PREFERRED,
            MemPolicy::Interleave => crate::sys::MPOL_INTERLEAVE,
        }
    }
}

/// Where a region's memory lives: a node set and a policy.
///
/// # Examples
///
/// ```
/// use numashm_region::{MemPolicy, NodeSet, Placement};
/// let p = Placement::new(NodeSet::single(0), MemPolicy::Bind);
/// assert_eq!(p.policy(), MemPolicy::Bind);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placement {
    nodes: NodeSet,
    policy: MemPolicy,
}

impl Placement {
    /// A placement on `nodes` with `policy`.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement};
    /// let p = Placement::new(NodeSet::from_nodes(&[0])?, MemPolicy::Interleave);
    /// assert!(p.nodes().contains(0));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn new(nodes: NodeSet, policy: MemPolicy) -> Self {
        Placement { nodes, policy }
    }

    /// The nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement};
    /// assert_eq!(Placement::new(NodeSet::single(0), MemPolicy::Bind).nodes().len(), 1);
    /// ```
    pub fn nodes(&self) -> &NodeSet {
        &self.nodes
    }

    /// The policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement};
    /// assert_eq!(Placement::new(NodeSet::single(0), MemPolicy::Preferred).policy(), MemPolicy::Preferred);
    /// ```
    pub fn policy(&self) -> MemPolicy {
        self.policy
    }

    /// Checks the placement against the machine: nodes exist, have memory, and
    /// `Preferred` names exactly one node.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(RegionError::invalid("node", "empty node set"));
        }
        if self.policy == MemPolicy::Preferred && self.nodes.len() != 1 {
            return Err(RegionError::invalid(
                "node",
                "the preferred policy takes exactly one node",
            ));
        }
        crate::topology::Topology::get()?.validate(&self.nodes)
    }
}

/// The page size backing a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum PageSize {
    /// Base pages (4 KiB).
    #[default]
    Base = 0,
    /// Base pages with `MADV_HUGEPAGE`: the kernel may back 2 MiB-aligned parts
    /// with transparent huge pages. Needs `shmem_enabled` = advise, always or
    /// within_size for shared memory. The region's length is a multiple of 2 MiB.
    Thp = 1,
    /// hugetlb 2 MiB pages (`MFD_HUGETLB | MFD_HUGE_2MB`, or a hugetlbfs file).
    Huge2M = 2,
    /// hugetlb 1 GiB pages.
    Huge1G = 3,
}

impl PageSize {
    /// The granularity of lengths and offsets, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::PageSize;
    /// assert_eq!(PageSize::Base.bytes(), 4096);
    /// assert_eq!(PageSize::Huge2M.bytes(), 2 << 20);
    /// ```
    pub const fn bytes(self) -> usize {
        match self {
            PageSize::Base => 4096,
            PageSize::Thp | PageSize::Huge2M => 2 << 20,
            PageSize::Huge1G => 1 << 30,
        }
    }

    /// Whether this is hugetlb memory.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_region::PageSize::Huge1G.is_hugetlb());
    /// ```
    pub const fn is_hugetlb(self) -> bool {
        matches!(self, PageSize::Huge2M | PageSize::Huge1G)
    }

    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(PageSize::Base),
            1 => Some(PageSize::Thp),
            2 => Some(PageSize::Huge2M),
            3 => Some(PageSize::Huge1G),
            _ => None,
        }
    }
}

/// Cache policy: what "cache" means for memory in user space — the page size
/// (TLB reach), whether pages are faulted in up front (no first-touch faults on
/// the hot path), locked in RAM (never swapped), and kept out of `fork` children
/// and core dumps.
///
/// # Examples
///
/// ```
/// use numashm_region::{CachePolicy, PageSize};
/// let c = CachePolicy { page_size: PageSize::Base, populate: true, ..CachePolicy::default() };
/// assert!(c.populate && !c.lock);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CachePolicy {
    /// Page size.
    pub page_size: PageSize,
    /// Fault every page in at create/grow (`MADV_POPULATE_WRITE`). Some regions
    /// are always populated because that is how their memory is committed: THP
    /// regions (fallocate would allocate base pages) and hugetlb regions with a
    /// placement (so a node without free huge pages fails at create time, not
    /// with SIGBUS later).
    pub populate: bool,
    /// `mlock` the region (needs RLIMIT_MEMLOCK or CAP_IPC_LOCK).
    pub lock: bool,
    /// `MADV_DONTFORK`: children of `fork` do not inherit the mapping.
    pub dont_fork: bool,
    /// `MADV_DONTDUMP`: the mapping is left out of core dumps.
    pub dont_dump: bool,
}

pub(crate) const FLAG_POPULATE: u32 = 1;
pub(crate) const FLAG_LOCK: u32 = 2;
pub(crate) const FLAG_DONTFORK: u32 = 4;
pub(crate) const FLAG_DONTDUMP: u32 = 8;
pub(crate) const FLAG_COMMIT: u32 = 16;
pub(crate) const KNOWN_FLAGS: u32 = 31;

impl CachePolicy {
    pub(crate) fn flags(&self) -> u32 {
        let mut f = 0;
        if self.populate {
            f |= FLAG_POPULATE;
        }
        if self.lock {
            f |= FLAG_LOCK;
        }
        if self.dont_fork {
            f |= FLAG_DONTFORK;
        }
        if self.dont_dump {
            f |= FLAG_DONTDUMP;
        }
        f
    }

    pub(crate) fn from_flags(page_size: PageSize, flags: u32) -> Self {
        CachePolicy {
            page_size,
            populate: flags & FLAG_POPULATE != 0,
            lock: flags & FLAG_LOCK != 0,
            dont_fork: flags & FLAG_DONTFORK != 0,
            dont_dump: flags & FLAG_DONTDUMP != 0,
        }
    }
}
