//! The segment header: where the peer table, the rings and the allocator live
//! inside a region. Every offset is *derived* from a few validated parameters
//! (peer count, ring specs, page size), so a hostile header cannot point
//! anywhere: attach recomputes each offset and compares.

use numashm_region::HEADER_LEN;
use numashm_ring::{Doorbell, Mpmc, SharedBell, SharedMemory, Spsc};

use crate::error::SegmentError;

/// `"NUMASHMS"` little-endian.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"NUMASHMS");
/// Layout version of the segment header and tables.
pub const SEGMENT_VERSION: u32 = 3;
/// Bytes of the segment header (right after the region header).
pub const SEGMENT_HEADER_LEN: usize = 512;
/// Most rings a segment can have.
pub const MAX_RINGS: usize = 48;
/// Most peers a segment can have.
pub const MAX_PEERS: u32 = 4096;
/// Bytes of one peer entry.
pub const PEER_ENTRY_LEN: usize = 128;
/// Bytes of a ring's ends record (who holds each end, counters).
pub const RING_ENDS_LEN: usize = 128;

pub(crate) const W_MAGIC: usize = 0;
pub(crate) const W_VERSION_PEERS: usize = 1;
pub(crate) const W_RING_COUNT: usize = 2;
pub(crate) const W_PEERS_OFF: usize = 3;
pub(crate) const W_RINGS_OFF: usize = 4;
pub(crate) const W_RING_STRIDE: usize = 5;
pub(crate) const W_ALLOC_OFF: usize = 6;
pub(crate) const W_CHECKSUM: usize = 7;
pub(crate) const W_RING_SPECS: usize = 8;
/// Peer id + 1 of the recoverer sweeping the allocator (0 = none); attachers wait.
pub(crate) const W_SWEEP: usize = 63;
/// Set when a recovery could not sweep (others were attached): sweep later.
pub(crate) const W_SWEEP_PENDING: usize = 62;
pub(crate) const HEADER_WORDS: usize = SEGMENT_HEADER_LEN / 8;
const _: () = assert!(W_RING_SPECS + MAX_RINGS <= W_SWEEP_PENDING);

/// The kind of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// One producer, one consumer (fastest).
    Spsc,
    /// Many producers, many consumers.
    Mpmc,
}

/// One ring of a segment.
///
/// # Examples
///
/// ```
/// use numashm::{RingKind, RingSpec};
/// let r = RingSpec::spsc(1024);
/// assert_eq!(r.kind, RingKind::Spsc);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingSpec {
    /// SPSC or MPMC.
    pub kind: RingKind,
    /// Capacity in handles, a power of two.
    pub capacity: u32,
}

impl RingSpec {
    /// An SPSC ring of `capacity` handles.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm::RingSpec::spsc(64).capacity, 64);
    /// ```
    pub fn spsc(capacity: u32) -> Self {
        RingSpec { kind: RingKind::Spsc, capacity }
    }

    /// An MPMC ring of `capacity` handles.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm::RingSpec::mpmc(64).kind, numashm::RingKind::Mpmc);
    /// ```
    pub fn mpmc(capacity: u32) -> Self {
        RingSpec { kind: RingKind::Mpmc, capacity }
    }

    pub(crate) fn encode(self) -> u64 {
        let kind = match self.kind {
            RingKind::Spsc => 1u64,
            RingKind::Mpmc => 2,
        };
        kind | u64::from(self.capacity) << 8
    }

    pub(crate) fn decode(w: u64) -> Option<Self> {
        let kind = match w & 0xff {
            1 => RingKind::Spsc,
            2 => RingKind::Mpmc,
            _ => return None,
        };
        if w >> 40 != 0 {
            return None;
        }
        Some(RingSpec { kind, capacity: u32::try_from(w >> 8).ok()? })
    }

    pub(crate) fn ring_bytes(self) -> Option<usize> {
        match self.kind {
            RingKind::Spsc => Spsc::<SharedMemory>::bytes_for(self.capacity as usize),
            RingKind::Mpmc => Mpmc::<SharedMemory>::bytes_for(self.capacity as usize),
        }
    }
}

/// Where everything is, derived from the parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) max_peers: u32,
    pub(crate) rings: Vec<RingSpec>,
    pub(crate) header_off: usize,
    pub(crate) peers_off: usize,
    pub(crate) rings_off: usize,
    pub(crate) ring_stride: usize,
    pub(crate) alloc_off: usize,
}

pub(crate) const BELL_LEN: usize = Doorbell::<SharedBell>::BYTES;

fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl Layout {
    pub(crate) fn compute(max_peers: u32, rings: &[RingSpec], page_size: usize) -> Result<Layout, SegmentError> {
        let cfg = |field, detail: String| SegmentError::Config { field, detail };
        if max_peers == 0 || max_peers > MAX_PEERS {
            return Err(cfg("max_peers", format!("{max_peers} is not in 1..={MAX_PEERS}")));
        }
        if rings.len() > MAX_RINGS {
            return Err(cfg("rings", format!("{} rings, at most {MAX_RINGS}", rings.len())));
        }
        let mut ring_bytes = 0usize;
        for (i, r) in rings.iter().enumerate() {
            let b = r
                .ring_bytes()
                .ok_or_else(|| cfg("rings", format!("ring {i}: capacity {} is not a power of two >= 2", r.capacity)))?;
            ring_bytes = ring_bytes.max(b);
        }
        let header_off = HEADER_LEN;
        let peers_off = align(header_off + SEGMENT_HEADER_LEN, 128);
        let rings_off = align(peers_off + PEER_ENTRY_LEN * max_peers as usize, 128);
        let ring_stride = align(RING_ENDS_LEN + 2 * BELL_LEN + ring_bytes, 128);
        let alloc_off = align(rings_off + ring_stride * rings.len(), page_size.max(4096));
        Ok(Layout { max_peers, rings: rings.to_vec(), header_off, peers_off, rings_off, ring_stride, alloc_off })
    }

    pub(crate) fn ring_off(&self, i: usize) -> usize {
        self.rings_off + i * self.ring_stride
    }

    pub(crate) fn words(&self) -> [u64; W_RING_SPECS] {
        let mut w = [0u64; W_RING_SPECS];
        w[W_MAGIC] = SEGMENT_MAGIC;
        w[W_VERSION_PEERS] = u64::from(SEGMENT_VERSION) | u64::from(self.max_peers) << 32;
        w[W_RING_COUNT] = self.rings.len() as u64;
        w[W_PEERS_OFF] = self.peers_off as u64;
        w[W_RINGS_OFF] = self.rings_off as u64;
        w[W_RING_STRIDE] = self.ring_stride as u64;
        w[W_ALLOC_OFF] = self.alloc_off as u64;
        w[W_CHECKSUM] = self.checksum();
        w
    }

    pub(crate) fn checksum(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |v: u64| {
            for b in v.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(u64::from(SEGMENT_VERSION) | u64::from(self.max_peers) << 32);
        eat(self.rings.len() as u64);
        eat(self.peers_off as u64);
        eat(self.rings_off as u64);
        eat(self.ring_stride as u64);
        eat(self.alloc_off as u64);
        for r in &self.rings {
            eat(r.encode());
        }
        h
    }

    /// Validates header words read from shared memory against what they must be.
    pub(crate) fn parse(words: &[u64; HEADER_WORDS], page_size: usize, region_len: usize) -> Result<Layout, SegmentError> {
        let bad = |field, detail: String| SegmentError::Corrupt { field, detail };
        if words[W_MAGIC] == 0 {
            return Err(bad("magic", "zero: the segment is not initialised yet (retry)".into()));
        }
        if words[W_MAGIC] != SEGMENT_MAGIC {
            return Err(bad("magic", format!("{:#x} is not a numashm segment", words[W_MAGIC])));
        }
        let version = words[W_VERSION_PEERS] as u32;
        if version != SEGMENT_VERSION {
            return Err(bad("version", format!("{version}, this build reads {SEGMENT_VERSION}")));
        }
        let max_peers = (words[W_VERSION_PEERS] >> 32) as u32;
        if max_peers == 0 || max_peers > MAX_PEERS {
            return Err(bad("max_peers", format!("{max_peers}")));
        }
        let count = words[W_RING_COUNT];
        if count > MAX_RINGS as u64 {
            return Err(bad("ring_count", format!("{count} > {MAX_RINGS}")));
        }
        let mut rings = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let w = words[W_RING_SPECS + i];
            let spec = RingSpec::decode(w)
                .filter(|s| s.ring_bytes().is_some())
                .ok_or_else(|| bad("ring_specs", format!("ring {i}: {w:#x}")))?;
            rings.push(spec);
        }
        let expected = Layout::compute(max_peers, &rings, page_size).map_err(|e| bad("ring_specs", e.to_string()))?;
        for (field, idx, want) in [
            ("peers_off", W_PEERS_OFF, expected.peers_off),
            ("rings_off", W_RINGS_OFF, expected.rings_off),
            ("ring_stride", W_RING_STRIDE, expected.ring_stride),
            ("alloc_off", W_ALLOC_OFF, expected.alloc_off),
        ] {
            if words[idx] != want as u64 {
                return Err(bad(field, format!("{:#x}, the layout says {want:#x}", words[idx])));
            }
        }
        if words[W_CHECKSUM] != expected.checksum() {
            return Err(bad("checksum", format!("{:#x} != {:#x}", words[W_CHECKSUM], expected.checksum())));
        }
        if expected.alloc_off >= region_len {
            return Err(bad("alloc_off", format!("{:#x} is beyond the region ({region_len:#x})", expected.alloc_off)));
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// docs/segment.md's header table names the limits and words this file defines.
    #[test]
    fn segment_md_matches_the_header_constants() {
        let doc = include_str!("../../../docs/segment.md");
        assert!(doc.contains(&format!("| {W_RING_COUNT} | ring count (≤ {MAX_RINGS}")), "ring count row");
        assert!(doc.contains(&format!("| {W_SWEEP_PENDING} | sweep pending")), "sweep pending row");
        assert!(doc.contains(&format!("| {W_SWEEP} | sweep: peer id + 1")), "sweep row");
        assert!(doc.contains(&format!("| {W_CHECKSUM} | checksum")), "checksum row");
        assert!(doc.contains(&format!("| {W_RING_SPECS}..{W_RING_SPECS}+rings | ring spec")), "ring specs row");
    }
}
