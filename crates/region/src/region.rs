//! Regions: shared mappings reserved once at their maximum size, placed with
//! `mbind` before first touch, committed at create/grow, growing in place.
//!
//! This file holds the [`Region`] and [`RegionOptions`] types, their plain
//! accessors and the drop; each child module holds one part of their API.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::error::{RegionError, Result};
use crate::header::{parse_header, HeaderInfo, RegionHeader, HEADER_FIELDS_LEN, HEADER_LEN};
use crate::policy::{CachePolicy, MemPolicy, PageSize, Placement};
use crate::loom::sync::atomic::{AtomicUsize, Ordering};

// One part of the API each. Child modules, so they reuse the private fields
// and the mapping machinery (`mapping`).
mod advice;
mod attach;
mod create;
mod grow;
mod mapping;
mod numa;
mod object;
mod options;
mod ranges;
// Sealed single-writer pools: the owner side (create + seal) and the reader
// side (attach a peer's pool read-only).
mod peer_pool;
mod sealed;
// Standalone fd mappings and sealable memfds: the ownership layer's mapping calls.
mod fd_mapping;
mod memfd;

pub use advice::{RegionAdvice, UncheckedAdvice};
pub use attach::AttachOptions;
pub use numa::NodePages;
pub use object::SharedObject;
pub use peer_pool::MAX_POOL_LEN;
pub use ranges::Protection;
pub use fd_mapping::{protect_range, revoke_range, FdMapping};
pub use memfd::{add_seals, seals_of};

const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// Builder for new regions, in the manner of memmap2's `MmapOptions`.
///
/// # Examples
///
/// ```
/// use numashm_region::{MemPolicy, PageSize, RegionOptions, Topology};
/// let node = Topology::get()?.nodes()[0].os_index;
/// let region = RegionOptions::new(4 << 20)
///     .node(node)
///     .policy(MemPolicy::Bind)
///     .page_size(PageSize::Base)
///     .populate(true)
///     .create_anonymous("doc-example")?;
/// region.verify_placement()?;
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegionOptions {
    len: usize,
    max_len: Option<usize>,
    nodes: Vec<u32>,
    policy: MemPolicy,
    cache: CachePolicy,
    commit: bool,
    fallback: bool,
}

/// How the region was obtained.
#[derive(Debug)]
enum Backing {
    File(PathBuf),
    Memfd,
}

/// A shared mapping whose base address never moves.
///
/// The whole maximum length is reserved (PROT_NONE) when the region is created
/// or attached; growth maps the new tail inside that reservation with
/// `MAP_FIXED`. The first [`HEADER_LEN`] bytes hold the region header; user
/// data starts at [`Region::data_offset`].
///
/// # Examples
///
/// ```
/// use numashm_region::RegionOptions;
/// let region = RegionOptions::new(1 << 20).max_len(8 << 20).create_anonymous("doc-grow")?;
/// let base = region.as_ptr();
/// region.write_at(region.data_offset(), b"hello")?;
/// region.resize(4 << 20)?;
/// assert_eq!(region.as_ptr(), base);
/// let mut buf = [0u8; 5];
/// region.read_at(region.data_offset(), &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
    /// Bytes reserved at `base` (max_len).
    reserved: usize,
    max_len: usize,
    /// Bytes mapped in this process; only grows.
    mapped: AtomicUsize,
    grow_lock: Mutex<()>,
    fd: OwnedFd,
    backing: Backing,
    owner: bool,
    writable: bool,
    page_size: PageSize,
    placement: Option<Placement>,
    cache: CachePolicy,
    commit: bool,
    /// A sealed single-writer pool (owner or reader side): see `sealed.rs`.
    sealed_pool: bool,
}

// Send/Sync of the raw base pointer: the one unsafe part of this file with
// `header` and the drop (the child modules allow unsafe code for themselves).
#[allow(unsafe_code)]
// SAFETY: `Region` owns its mapping; the raw base pointer is only dereferenced
// through methods that bounds-check against `mapped`, the header is made of
// atomics, and growth is serialised by `grow_lock` (and flock across processes).
unsafe impl Send for Region {}
#[allow(unsafe_code)]
// SAFETY: as above; every `&self` method is safe to call concurrently.
unsafe impl Sync for Region {}

impl Region {
    #[allow(unsafe_code)] // reads the header at the base.
    fn header(&self) -> &RegionHeader {
        // SAFETY: the first page is mapped for the region's whole life and
        // RegionHeader (atomics only, align 8) is valid for any bit pattern.
        unsafe { &*(self.base.as_ptr() as *const RegionHeader) }
    }

    /// Base address of the mapping (the header is at offset 0).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-ptr")?;
    /// assert_eq!(r.as_ptr() as usize % 4096, 0);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Bytes mapped in this process (crosvm's `size`); same as [`Region::len`].
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-size")?;
    /// assert_eq!(r.size(), 64 << 10);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn size(&self) -> usize {
        self.len()
    }

    /// Bytes mapped in this process, header included.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-len")?;
    /// assert_eq!(r.len(), 64 << 10);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn len(&self) -> usize {
        // Acquire: SYNC local-mapped, so callers may touch what the length covers.
        self.mapped.load(Ordering::Acquire)
    }

    /// Always `false`: a region holds at least its header page.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-empty")?;
    /// assert!(!r.is_empty());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most the region can grow to; its whole address range is reserved.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-maxlen")?;
    /// assert!(r.max_len() >= 1 << 30);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Offset of the first byte after the region header.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-data")?;
    /// assert_eq!(r.data_offset(), numashm_region::HEADER_LEN);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn data_offset(&self) -> usize {
        HEADER_LEN
    }

    /// Where this region's ownership descriptor (`numashm-ownership`) starts, as
    /// recorded in header bytes 96..104 by [`Region::set_descriptor_offset`];
    /// `None` when nothing was recorded. Any process that can write the header may
    /// have stored anything there: the value is checked here only to be a page
    /// multiple inside the header-less part of the mapping; the descriptor's reader
    /// validates what it finds.
    ///
    /// # Errors
    ///
    /// [`RegionError::Corrupt`] (`descriptor_at`) for a value that is not a page
    /// multiple at or past [`HEADER_LEN`] and inside the mapped length.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-desc-at")?;
    /// assert_eq!(r.descriptor_offset()?, None);
    /// r.set_descriptor_offset(8192)?;
    /// assert_eq!(r.descriptor_offset()?, Some(8192));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn descriptor_offset(&self) -> Result<Option<usize>> {
        // Relaxed: a hint the descriptor's own magic and checks confirm.
        let at = self.header().descriptor_at.load(Ordering::Relaxed);
        if at == 0 {
            return Ok(None);
        }
        match usize::try_from(at) {
            Ok(off) if off >= HEADER_LEN && off % HEADER_LEN == 0 && off < self.len() => Ok(Some(off)),
            _ => Err(RegionError::Corrupt {
                field: "descriptor_at",
                detail: format!("{at:#x} is not a page offset inside the region's {:#x} bytes", self.len()),
            }),
        }
    }

    /// Records where this region's ownership descriptor starts (see
    /// [`Region::descriptor_offset`]), so that a process given only the region's
    /// fd finds it: a layout whose data area starts with something else (a pool
    /// header, a rendezvous) puts its descriptor elsewhere and says so here.
    ///
    /// # Errors
    ///
    /// [`RegionError::ReadOnly`] when the region is mapped read-only here;
    /// [`RegionError::InvalidArgument`] for an offset that is not a page multiple
    /// at or past [`HEADER_LEN`] inside the region's length.
    ///
    /// # Examples
    ///
    /// See [`Region::descriptor_offset`].
    pub fn set_descriptor_offset(&self, off: usize) -> Result<()> {
        if !self.writable {
            return Err(RegionError::ReadOnly);
        }
        if off < HEADER_LEN || off % HEADER_LEN != 0 || off >= self.len() {
            return Err(RegionError::InvalidArgument {
                what: "descriptor offset",
                detail: format!("{off:#x} is not a page offset inside the region's {:#x} bytes", self.len()),
            });
        }
        // Relaxed: a hint; the descriptor publishes itself by its magic (SeqCst).
        self.header().descriptor_at.store(off as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The path of a named region.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-path")?;
    /// assert_eq!(r.path(), None);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File(p) => Some(p),
            Backing::Memfd => None,
        }
    }

    /// Whether dropping this region unlinks its file.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("numashm-doc-own-{}", std::process::id()));
    /// let mut r = numashm_region::RegionOptions::new(64 << 10).create_file(&path)?;
    /// assert!(r.is_owner());
    /// r.release_ownership();
    /// drop(r);
    /// assert!(path.exists());
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Makes this region unlink its file when dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{Region, RegionOptions};
    /// let path = std::env::temp_dir().join(format!("numashm-doc-take-{}", std::process::id()));
    /// let mut host = RegionOptions::new(64 << 10).create_file(&path)?;
    /// host.release_ownership();
    /// let mut guest = Region::attach_file(&path)?;
    /// guest.take_ownership();
    /// drop(host);
    /// drop(guest);
    /// assert!(!path.exists());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn take_ownership(&mut self) {
        self.owner = true;
    }

    /// Keeps the file when this region is dropped.
    ///
    /// # Examples
    ///
    /// See [`Region::is_owner`].
    pub fn release_ownership(&mut self) {
        self.owner = false;
    }

    /// Whether this process mapped the region writable.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-w")?;
    /// assert!(r.is_writable());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The placement applied, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-pl")?;
    /// assert!(r.placement().is_none()); // no node given: first touch, no policy
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn placement(&self) -> Option<Placement> {
        self.placement
    }

    /// The cache policy actually applied (after any opted-in fallback).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-cache")?;
    /// assert_eq!(r.cache_policy().page_size, numashm_region::PageSize::Base);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn cache_policy(&self) -> CachePolicy {
        self.cache
    }

    /// The page size of the mapping, in bytes (granularity of lengths and page operations).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-ps")?;
    /// assert_eq!(r.page_size(), 4096);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn page_size(&self) -> usize {
        self.page_size.bytes()
    }

    /// A validated copy of the header as it is now.
    ///
    /// # Errors
    ///
    /// [`RegionError::Corrupt`] if a peer damaged it.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-hi")?;
    /// assert_eq!(r.header_info()?.version, numashm_region::REGION_VERSION);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn header_info(&self) -> Result<HeaderInfo> {
        let file_len = rustix::fs::fstat(&self.fd).map_err(|e| RegionError::sys("fstat", e))?.st_size as u64;
        parse_header(&self.header().snapshot(), file_len)
    }

    /// The growth epoch: how many times the region has grown.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-epoch")?;
    /// r.resize(128 << 10)?;
    /// assert_eq!(r.epoch(), 1);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn epoch(&self) -> u64 {
        // Acquire: pairs with the Release increment in resize.
        self.header().epoch.load(Ordering::Acquire)
    }
}

impl AsFd for Region {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[allow(unsafe_code)] // unmaps the reservation.
impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: we own the whole reservation; no reference into it outlives
        // `self` (read_at/write_at copy, raw pointers are the caller's unsafe).
        unsafe {
            let _ = rustix::mm::munmap(self.base.as_ptr().cast(), self.reserved);
        }
        if self.owner {
            if let Backing::File(path) = &self.backing {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

const _: () = assert!(HEADER_FIELDS_LEN <= HEADER_LEN);
