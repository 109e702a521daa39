//! Read-only inspection of a segment in use: maps it read-only, validates every
//! table, and joins nothing (no peer slot is taken, nothing is written).

use std::path::Path;
use std::sync::Arc;

use numashm_region::{AttachOptions, HeaderInfo, NodePages, Region};
use numashm_varslot::SharedAllocator;

use crate::error::SegmentError;
use crate::layout::{Layout, HEADER_WORDS};
use crate::memory::RegionMemory;
use crate::peers::{PeerInfo, PeerTable, ENTRY_WORDS};
use crate::segment::{header_snapshot, RingInfo, Segment};
use crate::words::Words;

/// One size class as inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassReport {
    /// Class index.
    pub class: usize,
    /// Slot size in bytes.
    pub slot_size: usize,
    /// Slots per extent.
    pub slots_per_extent: usize,
    /// Each extent.
    pub extents: Vec<ExtentReport>,
}

/// One extent as inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentReport {
    /// NUMA node it was placed on, if any.
    pub node: Option<u32>,
    /// Whether its memory was given back (it is committed again before reuse).
    pub released: bool,
    /// Free slots.
    pub free: usize,
    /// Allocated slots.
    pub allocated: usize,
    /// Slots in flight.
    pub in_flight: usize,
}

/// Everything `numashm inspect` shows.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    /// The region header.
    pub region: HeaderInfo,
    /// `(segment header, peer table, rings, allocator)` byte offsets.
    pub offsets: (usize, usize, usize, usize),
    /// Size classes.
    pub classes: Vec<ClassReport>,
    /// Committed / reserved bytes of the allocator.
    pub committed_bytes: u64,
    /// Bytes the allocator may ever use.
    pub reserved_bytes: u64,
    /// Rings.
    pub rings: Vec<RingInfo>,
    /// Peers that are not Empty.
    pub peers: Vec<PeerInfo>,
    /// `(owner, allocated, in flight)`: slots held per owner. Owners are peer
    /// index + 1; `0x4000_0000 + ring` is a ring holding handles for a consumer
    /// that has not claimed it (or an MPMC ring).
    pub held: Vec<(u32, usize, usize)>,
    /// Pages per NUMA node, measured now without allocating anything.
    pub pages: NodePages,
}

impl Segment {
    /// Inspects the named segment without joining it or writing to it.
    ///
    /// # Errors
    ///
    /// Region errors, [`SegmentError::Corrupt`] naming the first bad field,
    /// ring and allocator layout errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm::{Segment, SegmentConfig};
    /// let path = format!("/dev/shm/numashm-doc-inspect-{}", std::process::id());
    /// let seg = Segment::create(SegmentConfig::file(&path))?;
    /// let report = Segment::inspect(&path)?;
    /// assert_eq!(report.peers.len(), 1); // the inspector did not join
    /// assert_eq!(report.rings.len(), 2);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn inspect(path: impl AsRef<Path>) -> Result<SegmentReport, SegmentError> {
        let region = Arc::new(Region::attach_file_with(path, AttachOptions { read_only: true })?);
        let info = region.header_info()?;
        let header = Words::new(region.clone(), numashm_region::HEADER_LEN, HEADER_WORDS)
            .ok_or_else(|| SegmentError::Corrupt { field: "len", detail: "region too small for a segment header".into() })?;
        let layout = Layout::parse(&header_snapshot(&header), region.page_size(), region.len())?;
        let rings = Segment::lay_rings(&region, &layout, false)?;
        let alloc = SharedAllocator::attach(RegionMemory::new(region.clone(), layout.alloc_off))?;
        let words = Words::new(region.clone(), layout.peers_off, layout.max_peers as usize * ENTRY_WORDS)
            .ok_or_else(|| SegmentError::Corrupt { field: "peers_off", detail: "peer table beyond the region".into() })?;
        let peers = PeerTable { words, max: layout.max_peers };
        let census = alloc.census();
        let classes = (0..alloc.class_count())
            .map(|c| ClassReport {
                class: c,
                slot_size: alloc.slot_size(c).unwrap_or(0),
                slots_per_extent: alloc.slots_per_extent(c).unwrap_or(0),
                extents: census
                    .extents
                    .iter()
                    .filter(|e| e.class == c)
                    .map(|e| {
                        let (node, released) = alloc.extent_info(c, e.extent).unwrap_or((None, false));
                        ExtentReport { node, released, free: e.free, allocated: e.allocated, in_flight: e.in_flight }
                    })
                    .collect(),
            })
            .collect();
        let stats = alloc.inspect();
        let ring_infos = (0..rings.len()).map(|i| crate::segment::ring_info_of(&rings[i])).collect::<Result<Vec<_>, _>>()?;
        let pages = region.resident_pages_per_node()?;
        Ok(SegmentReport {
            region: info,
            offsets: (layout.header_off, layout.peers_off, layout.rings_off, layout.alloc_off),
            classes,
            committed_bytes: stats.committed_bytes,
            reserved_bytes: stats.reserved_bytes,
            rings: ring_infos,
            peers: (0..peers.max).map(|i| peers.info(i)).filter(|p| p.state != crate::PeerState::Empty).collect(),
            held: census.owners,
            pages,
        })
    }
}
