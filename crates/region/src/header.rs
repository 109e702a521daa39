//! The region header: 128 bytes at offset 0 of every region, inside a reserved
//! first 4 KiB. Written once by the creator; `len` and `epoch` change on growth.
//!
//! Every field is read as if an adversary wrote it: attach copies the header out
//! with atomic loads and validates the copy ([`parse_header`]), so the same code
//! checks a live mapping and arbitrary bytes (the fuzz target).

use crate::error::{RegionError, Result};
use crate::policy::{CachePolicy, MemPolicy, NodeSet, PageSize, Placement, KNOWN_FLAGS, FLAG_COMMIT};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `"NUMASHMR"` little-endian: marks an initialised region header.
pub const REGION_MAGIC: u64 = u64::from_le_bytes(*b"NUMASHMR");
/// Layout version of the region header; bumped on any incompatible change.
pub const REGION_VERSION: u32 = 1;
/// Bytes reserved for the header at the start of every region; user data starts here.
pub const HEADER_LEN: usize = 4096;
/// Bytes of the header that carry fields (the rest of [`HEADER_LEN`] is zero).
pub const HEADER_FIELDS_LEN: usize = 128;
/// Largest region (and reservation) numashm accepts: 64 TiB.
pub const MAX_REGION_LEN: usize = 1 << 46;

/// The shared header. All fields are atomics because other processes may write
/// (or scribble on) them at any time.
#[repr(C)]
pub(crate) struct RegionHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_len: AtomicU32,
    /// Published length in bytes; grows only.
    pub(crate) len: AtomicU64,
    /// Bumped once per growth.
    pub(crate) epoch: AtomicU64,
    pub(crate) max_len: AtomicU64,
    pub(crate) page_size: AtomicU32,
    pub(crate) policy: AtomicU32,
    pub(crate) flags: AtomicU32,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) nodes: [AtomicU64; 4],
    pub(crate) checksum: AtomicU64,
    /// Where the region's ownership descriptor starts (0: none recorded). Not in
    /// the checksum: it is set after creation, by the owner of a writable mapping.
    pub(crate) descriptor_at: AtomicU64,
    pub(crate) reserved: [AtomicU64; 3],
}

const _: () = assert!(core::mem::size_of::<RegionHeader>() == HEADER_FIELDS_LEN);
const _: () = assert!(core::mem::align_of::<RegionHeader>() == 8);

/// A validated copy of a region header.
///
/// # Examples
///
/// ```
/// use numashm_region::{parse_header, RegionOptions};
/// let region = RegionOptions::new(1 << 20).create_anonymous("doc-header")?;
/// let info = region.header_info()?;
/// assert_eq!(info.len, 1 << 20);
/// assert_eq!(info.epoch, 0);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version.
    pub version: u32,
    /// Published length in bytes.
    pub len: usize,
    /// Growth epoch (number of growths so far).
    pub epoch: u64,
    /// Maximum length the region may grow to.
    pub max_len: usize,
    /// Cache policy the creator applied.
    pub cache: CachePolicy,
    /// Whether memory is committed (fallocate) at create/grow.
    pub commit: bool,
    /// Placement the creator applied, if any.
    pub placement: Option<Placement>,
    /// Process id of the creator.
    pub creator_pid: u32,
}

fn fnv1a(words: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Checksum over the fields that never change after creation (one argument
/// per header field, in header order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn immutable_checksum(
    version: u32,
    header_len: u32,
    max_len: u64,
    page_size: u32,
    policy: u32,
    flags: u32,
    creator_pid: u32,
    nodes: &[u64; 4],
) -> u64 {
    fnv1a(&[
        u64::from(version) | u64::from(header_len) << 32,
        max_len,
        u64::from(page_size) | u64::from(policy) << 32,
        u64::from(flags) | u64::from(creator_pid) << 32,
        nodes[0],
        nodes[1],
        nodes[2],
        nodes[3],
    ])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Validates a region header given as bytes (the first [`HEADER_FIELDS_LEN`] bytes
/// of a region) against the size of the file or object that holds it.
///
/// # Errors
///
/// [`RegionError::NotInitialized`] when the magic is still zero (the creator is
/// mid-way), otherwise [`RegionError::Corrupt`] naming the first bad field.
///
/// # Examples
///
/// ```
/// use numashm_region::{parse_header, RegionError};
/// let err = parse_header(&[0xff; 128], 1 << 20).unwrap_err();
/// assert!(matches!(err, RegionError::Corrupt { field: "magic", .. }));
/// ```
pub fn parse_header(bytes: &[u8], file_len: u64) -> Result<HeaderInfo> {
    if bytes.len() < HEADER_FIELDS_LEN {
        return Err(RegionError::corrupt(
            "header",
            format!("{} bytes, need {HEADER_FIELDS_LEN}", bytes.len()),
        ));
    }
    let magic = le_u64(bytes, 0);
    if magic == 0 {
        return Err(RegionError::NotInitialized);
    }
    if magic != REGION_MAGIC {
        return Err(RegionError::corrupt("magic", format!("{magic:#018x} is not a numashm region")));
    }
    let version = le_u32(bytes, 8);
    if version != REGION_VERSION {
        return Err(RegionError::corrupt(
            "version",
            format!("layout version {version}, this build reads {REGION_VERSION}"),
        ));
    }
    let header_len = le_u32(bytes, 12);
    if header_len as usize != HEADER_LEN {
        return Err(RegionError::corrupt("header_len", format!("{header_len}, expected {HEADER_LEN}")));
    }
    let len = le_u64(bytes, 16);
    let epoch = le_u64(bytes, 24);
    let max_len = le_u64(bytes, 32);
    let page_raw = le_u32(bytes, 40);
    let policy_raw = le_u32(bytes, 44);
    let flags = le_u32(bytes, 48);
    let creator_pid = le_u32(bytes, 52);
    let nodes = [le_u64(bytes, 56), le_u64(bytes, 64), le_u64(bytes, 72), le_u64(bytes, 80)];
    let checksum = le_u64(bytes, 88);
    let expected =
        immutable_checksum(version, header_len, max_len, page_raw, policy_raw, flags, creator_pid, &nodes);
    if checksum != expected {
        return Err(RegionError::corrupt(
            "checksum",
            format!("{checksum:#x} does not match the immutable fields ({expected:#x})"),
        ));
    }
    let page_size = PageSize::from_raw(page_raw)
        .ok_or_else(|| RegionError::corrupt("page_size", format!("unknown page size code {page_raw}")))?;
    let page = page_size.bytes() as u64;
    if max_len == 0 || max_len > MAX_REGION_LEN as u64 || max_len % page != 0 {
        return Err(RegionError::corrupt(
            "max_len",
            format!("{max_len:#x} is zero, above {MAX_REGION_LEN:#x} or not a multiple of {page:#x}"),
        ));
    }
    if len < page.max(HEADER_LEN as u64) || len > max_len || len % page != 0 {
        return Err(RegionError::corrupt(
            "len",
            format!("{len:#x} is not a page-aligned length between one page and max_len {max_len:#x}"),
        ));
    }
    if len > file_len {
        return Err(RegionError::corrupt(
            "len",
            format!("{len:#x} is beyond the end of the backing ({file_len:#x} bytes)"),
        ));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RegionError::corrupt("flags", format!("unknown bits {:#x}", flags & !KNOWN_FLAGS)));
    }
    let node_set = NodeSet::from_words(nodes);
    let placement = match policy_raw {
        0 if node_set.is_empty() => None,
        0 => return Err(RegionError::corrupt("nodes", "nodes given without a policy")),
        raw => {
            let policy = MemPolicy::from_raw(raw)
                .ok_or_else(|| RegionError::corrupt("policy", format!("unknown policy code {raw}")))?;
            if node_set.is_empty() {
                return Err(RegionError::corrupt("nodes", "policy given with no nodes"));
            }
            Some(Placement::new(node_set, policy))
        }
    };
    Ok(HeaderInfo {
        version,
        len: len as usize,
        epoch,
        max_len: max_len as usize,
        cache: CachePolicy::from_flags(page_size, flags),
        commit: flags & FLAG_COMMIT != 0,
        placement,
        creator_pid,
    })
}

impl RegionHeader {
    /// Copies the fields out with atomic loads (no torn reads of a single field).
    pub(crate) fn snapshot(&self) -> [u8; HEADER_FIELDS_LEN] {
        let mut out = [0u8; HEADER_FIELDS_LEN];
        // SYNC region-init: Acquire pairs with the creator's Release store of the
        // magic, so every other field written before it is visible.
        out[0..8].copy_from_slice(&self.magic.load(Ordering::Acquire).to_le_bytes());
        // Relaxed: the fields below are immutable after init (checked by checksum)
        // except len/epoch, whose own Acquire happens in check_and_remap.
        out[8..12].copy_from_slice(&self.version.load(Ordering::Relaxed).to_le_bytes());
        out[12..16].copy_from_slice(&self.header_len.load(Ordering::Relaxed).to_le_bytes());
        out[16..24].copy_from_slice(&self.len.load(Ordering::Acquire).to_le_bytes());
        out[24..32].copy_from_slice(&self.epoch.load(Ordering::Relaxed).to_le_bytes());
        out[32..40].copy_from_slice(&self.max_len.load(Ordering::Relaxed).to_le_bytes());
        out[40..44].copy_from_slice(&self.page_size.load(Ordering::Relaxed).to_le_bytes());
        out[44..48].copy_from_slice(&self.policy.load(Ordering::Relaxed).to_le_bytes());
        out[48..52].copy_from_slice(&self.flags.load(Ordering::Relaxed).to_le_bytes());
        out[52..56].copy_from_slice(&self.creator_pid.load(Ordering::Relaxed).to_le_bytes());
        for (i, w) in self.nodes.iter().enumerate() {
            out[56 + 8 * i..64 + 8 * i].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        out[88..96].copy_from_slice(&self.checksum.load(Ordering::Relaxed).to_le_bytes());
        out
    }
}
