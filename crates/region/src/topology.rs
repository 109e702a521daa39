//! The machine's NUMA nodes, their memory, CPUs and distances, read once per
//! process with hwlocality (building a topology costs milliseconds).

use std::sync::OnceLock;

use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;

use crate::error::{RegionError, Result};
use crate::policy::NodeSet;

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// The kernel's node number (what `mbind` and `/sys/devices/system/node/nodeN` use).
    pub os_index: u32,
    /// Memory local to the node, in bytes (0 for a memoryless node).
    pub total_memory: u64,
    /// The CPUs (OS indices) local to the node.
    pub cpus: Vec<u32>,
}

/// The NUMA topology of this machine, as hwloc reports it.
///
/// # Examples
///
/// ```
/// let topo = numashm_region::Topology::get()?;
/// assert!(!topo.nodes().is_empty());
/// let first = topo.nodes()[0].os_index;
/// assert_eq!(topo.distance(first, first).is_some(), true);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Topology {
    nodes: Vec<NumaNode>,
    /// Row-major distances between `nodes[i]` and `nodes[j]` (hwloc's, or 10/20
    /// when the firmware gives none).
    distances: Vec<u64>,
}

static TOPOLOGY: OnceLock<std::result::Result<Topology, String>> = OnceLock::new();

impl Topology {
    /// The process-wide topology, built on first use.
    ///
    /// # Errors
    ///
    /// [`RegionError::Topology`] when hwloc cannot read the machine.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = numashm_region::Topology::get()? as *const _;
    /// let b = numashm_region::Topology::get()? as *const _;
    /// assert_eq!(a, b); // built once
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn get() -> Result<&'static Topology> {
        TOPOLOGY
            .get_or_init(Topology::read)
            .as_ref()
            .map_err(|e| RegionError::Topology(e.clone()))
    }

    fn read() -> std::result::Result<Topology, String> {
        let topo = hwlocality::Topology::new().map_err(|e| e.to_string())?;
        let mut nodes: Vec<NumaNode> = topo
            .objects_with_type(ObjectType::NUMANode)
            .filter_map(|obj| {
                let os_index = u32::try_from(obj.os_index()?).ok()?;
                let total_memory = match obj.attributes() {
                    Some(ObjectAttributes::NUMANode(numa)) => {
                        numa.local_memory().map_or(0, |m| m.get())
                    }
                    _ => 0,
                };
                let cpus = obj
                    .cpuset()
                    .map(|set| set.iter_set().filter_map(|c| u32::try_from(usize::from(c)).ok()).collect())
                    .unwrap_or_default();
                Some(NumaNode { os_index, total_memory, cpus })
            })
            .collect();
        nodes.sort_by_key(|n| n.os_index);
        let n = nodes.len();
        let mut distances: Vec<u64> = (0..n * n)
            .map(|k| if k / n == k % n { 10 } else { 20 })
            .collect();
        if let Ok(matrices) = topo.distances(None) {
            for matrix in matrices {
                let objs: Vec<Option<u32>> = matrix
                    .objects()
                    .map(|o| {
                        o.filter(|o| o.object_type() == ObjectType::NUMANode)
                            .and_then(|o| o.os_index())
                            .and_then(|i| u32::try_from(i).ok())
                    })
                    .collect();
                if objs.iter().any(Option::is_none) {
                    continue;
                }
                let m = objs.len();
                let values = matrix.distances();
                for (i, a) in objs.iter().enumerate() {
                    for (j, b) in objs.iter().enumerate() {
                        let ia = nodes.iter().position(|x| Some(x.os_index) == *a);
                        let ib = nodes.iter().position(|x| Some(x.os_index) == *b);
                        if let (Some(ia), Some(ib), Some(v)) = (ia, ib, values.get(i * m + j)) {
                            distances[ia * n + ib] = *v;
                        }
                    }
                }
                break;
            }
        }
        Ok(Topology { nodes, distances })
    }

    /// The NUMA nodes, by OS index.
    ///
    /// # Examples
    ///
    /// ```
    /// for node in numashm_region::Topology::get()?.nodes() {
    ///     println!("node {}: {} bytes, cpus {:?}", node.os_index, node.total_memory, node.cpus);
    /// }
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn nodes(&self) -> &[NumaNode] {
        &self.nodes
    }

    /// The node with this OS index.
    ///
    /// # Examples
    ///
    /// ```
    /// let topo = numashm_region::Topology::get()?;
    /// assert!(topo.node(100_000).is_none());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn node(&self, os_index: u32) -> Option<&NumaNode> {
        self.nodes.iter().find(|n| n.os_index == os_index)
    }

    /// Distance between two nodes (10 = local), if both exist.
    ///
    /// # Examples
    ///
    /// ```
    /// let topo = numashm_region::Topology::get()?;
    /// let n = topo.nodes()[0].os_index;
    /// assert_eq!(topo.distance(n, n), Some(10));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn distance(&self, from: u32, to: u32) -> Option<u64> {
        let i = self.nodes.iter().position(|n| n.os_index == from)?;
        let j = self.nodes.iter().position(|n| n.os_index == to)?;
        self.distances.get(i * self.nodes.len() + j).copied()
    }

    /// Nodes with memory, nearest first from `from` (itself first).
    ///
    /// # Examples
    ///
    /// ```
    /// let topo = numashm_region::Topology::get()?;
    /// let n = topo.nodes()[0].os_index;
    /// assert_eq!(topo.nodes_by_distance(n).first(), Some(&n));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn nodes_by_distance(&self, from: u32) -> Vec<u32> {
        let mut nodes: Vec<u32> =
            self.nodes.iter().filter(|n| n.total_memory > 0).map(|n| n.os_index).collect();
        nodes.sort_by_key(|&n| (self.distance(from, n).unwrap_or(u64::MAX), n));
        nodes
    }

    /// Free memory of a node right now (`MemFree` in its sysfs meminfo), in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let topo = numashm_region::Topology::get()?;
    /// let n = topo.nodes()[0].os_index;
    /// if let Some(free) = topo.free_memory(n) { assert!(free > 0); }
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn free_memory(&self, node: u32) -> Option<u64> {
        let text =
            std::fs::read_to_string(format!("/sys/devices/system/node/node{node}/meminfo")).ok()?;
        text.lines().find_map(|line| {
            let rest = line.split_once("MemFree:")?.1;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    }

    /// Checks that every node of `nodes` exists and has memory.
    ///
    /// # Errors
    ///
    /// [`RegionError::UnknownNode`] or [`RegionError::MemorylessNode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{NodeSet, RegionError, Topology};
    /// let topo = Topology::get()?;
    /// assert!(matches!(topo.validate(&NodeSet::single(200)), Err(RegionError::UnknownNode { node: 200, .. })));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn validate(&self, nodes: &NodeSet) -> Result<()> {
        for node in nodes.iter() {
            match self.node(node) {
                None => {
                    return Err(RegionError::UnknownNode {
                        node,
                        known: self.nodes.iter().map(|n| n.os_index).collect(),
                    })
                }
                Some(n) if n.total_memory == 0 => {
                    return Err(RegionError::MemorylessNode {
                        node,
                        with_memory: self
                            .nodes
                            .iter()
                            .filter(|n| n.total_memory > 0)
                            .map(|n| n.os_index)
                            .collect(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// What the kernel will do with `MADV_HUGEPAGE` on shared memory:
/// the bracketed word of `/sys/kernel/mm/transparent_hugepage/shmem_enabled`.
///
/// # Examples
///
/// ```
/// if let Some(mode) = numashm_region::shmem_thp_mode() {
///     println!("shmem THP: {mode}");
/// }
/// ```
pub fn shmem_thp_mode() -> Option<String> {
    bracketed("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
}

/// The bracketed word of `/sys/kernel/mm/transparent_hugepage/enabled` (anonymous THP).
///
/// # Examples
///
/// ```
/// let _ = numashm_region::anon_thp_mode();
/// ```
pub fn anon_thp_mode() -> Option<String> {
    bracketed("/sys/kernel/mm/transparent_hugepage/enabled")
}

fn bracketed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_string())
}

/// Free huge pages of `page_size` bytes, on `node` or machine-wide.
///
/// # Examples
///
/// ```
/// let free = numashm_region::free_huge_pages(2 << 20, None);
/// println!("{free:?} free 2 MiB pages");
/// ```
pub fn free_huge_pages(page_size: usize, node: Option<u32>) -> Option<u64> {
    read_huge_counter(page_size, node, "free_hugepages")
}

/// Reserved (total) huge pages of `page_size` bytes, on `node` or machine-wide.
///
/// # Examples
///
/// ```
/// let total = numashm_region::total_huge_pages(2 << 20, None);
/// println!("{total:?} reserved 2 MiB pages");
/// ```
pub fn total_huge_pages(page_size: usize, node: Option<u32>) -> Option<u64> {
    read_huge_counter(page_size, node, "nr_hugepages")
}

pub(crate) fn huge_pages_dir(page_size: usize, node: Option<u32>) -> String {
    let kib = page_size / 1024;
    match node {
        Some(n) => format!("/sys/devices/system/node/node{n}/hugepages/hugepages-{kib}kB"),
        None => format!("/sys/kernel/mm/hugepages/hugepages-{kib}kB"),
    }
}

fn read_huge_counter(page_size: usize, node: Option<u32>, file: &str) -> Option<u64> {
    let dir = huge_pages_dir(page_size, node);
    std::fs::read_to_string(format!("{dir}/{file}")).ok()?.trim().parse().ok()
}
