//! Regions: shared mappings reserved once at their maximum size, placed with
//! `mbind` before first touch, committed at create/grow, growing in place.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;

use rustix::fs::{FallocateFlags, FlockOperation, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};

use crate::error::{RegionError, Result};
use crate::header::{
    immutable_checksum, parse_header, HeaderInfo, RegionHeader, HEADER_FIELDS_LEN, HEADER_LEN,
    MAX_REGION_LEN, REGION_MAGIC, REGION_VERSION,
};
use crate::policy::{CachePolicy, MemPolicy, NodeSet, PageSize, Placement, FLAG_COMMIT};
use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::sys;
use crate::topology::{free_huge_pages, huge_pages_dir, shmem_thp_mode, Topology};

// Sealed single-writer pools: the owner side (create + seal) and the reader
// side (attach a peer's pool read-only). Child modules, so they reuse the
// private mapping machinery below.
mod peer_pool;
mod sealed;

pub use peer_pool::MAX_POOL_LEN;

const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// Default maximum: four times the initial length, at least 1 GiB.
const DEFAULT_MIN_MAX_LEN: usize = 1 << 30;

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

// SAFETY: `Region` owns its mapping; the raw base pointer is only dereferenced
// through methods that bounds-check against `mapped`, the header is made of
// atomics, and growth is serialised by `grow_lock` (and flock across processes).
unsafe impl Send for Region {}
// SAFETY: as above; every `&self` method is safe to call concurrently.
unsafe impl Sync for Region {}

/// Advice that cannot change the contents visible through the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionAdvice {
    /// `MADV_NORMAL`.
    Normal,
    /// `MADV_RANDOM`.
    Random,
    /// `MADV_SEQUENTIAL`.
    Sequential,
    /// `MADV_WILLNEED`.
    WillNeed,
    /// `MADV_HUGEPAGE`.
    HugePage,
    /// `MADV_NOHUGEPAGE`.
    NoHugePage,
    /// `MADV_DONTFORK`.
    DontFork,
    /// `MADV_DOFORK`.
    DoFork,
    /// `MADV_DONTDUMP`.
    DontDump,
    /// `MADV_DODUMP`.
    DoDump,
    /// `MADV_POPULATE_WRITE`: fault the range in, writable.
    PopulateWrite,
}

/// Advice that changes what the mapping shows (memory is given back and reads
/// as zero afterwards, for every process sharing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UncheckedAdvice {
    /// `MADV_DONTNEED`.
    DontNeed,
    /// `MADV_REMOVE`: free the backing pages (punch a hole).
    Remove,
}

impl RegionAdvice {
    fn raw(self) -> Advice {
        match self {
            RegionAdvice::Normal => Advice::Normal,
            RegionAdvice::Random => Advice::Random,
            RegionAdvice::Sequential => Advice::Sequential,
            RegionAdvice::WillNeed => Advice::WillNeed,
            RegionAdvice::HugePage => Advice::LinuxHugepage,
            RegionAdvice::NoHugePage => Advice::LinuxNoHugepage,
            RegionAdvice::DontFork => Advice::LinuxDontFork,
            RegionAdvice::DoFork => Advice::LinuxDoFork,
            RegionAdvice::DontDump => Advice::LinuxDontDump,
            RegionAdvice::DoDump => Advice::LinuxDoDump,
            RegionAdvice::PopulateWrite => Advice::LinuxPopulateWrite,
        }
    }
}

/// Memory protection for [`Region::add_fd_mapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

impl Protection {
    fn flags(self) -> ProtFlags {
        match self {
            Protection::Read => ProtFlags::READ,
            Protection::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        }
    }
}

/// Pages of a range, counted per NUMA node.
///
/// # Examples
///
/// ```
/// use numashm_region::RegionOptions;
/// let region = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-pages")?;
/// let pages = region.pages_per_node(0, region.len())?;
/// assert_eq!(pages.present(), (1 << 20) / 4096);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePages {
    /// `(node, pages)` for each node holding pages of the range, ascending.
    pub per_node: Vec<(u32, usize)>,
    /// Pages not faulted in by this process.
    pub not_present: usize,
    /// The page size counted in bytes.
    pub page_size: usize,
}

impl NodePages {
    /// Pages present on any node.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_region::NodePages { per_node: vec![(0, 3), (1, 2)], not_present: 1, page_size: 4096 };
    /// assert_eq!(p.present(), 5);
    /// ```
    pub fn present(&self) -> usize {
        self.per_node.iter().map(|(_, n)| n).sum()
    }

    /// Pages on `node`.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_region::NodePages { per_node: vec![(1, 2)], not_present: 0, page_size: 4096 };
    /// assert_eq!(p.on_node(1), 2);
    /// assert_eq!(p.on_node(0), 0);
    /// ```
    pub fn on_node(&self, node: u32) -> usize {
        self.per_node.iter().find(|(n, _)| *n == node).map_or(0, |(_, c)| *c)
    }
}

/// Options for attaching to an existing region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachOptions {
    /// Map read-only (the file may be opened read-only).
    pub read_only: bool,
}

impl RegionOptions {
    /// Options for a region of `len` bytes (header included), no placement
    /// (the kernel's first-touch policy, never a silent node 0), base pages,
    /// memory committed at creation.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-new")?;
    /// assert_eq!(r.len(), 64 << 10);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn new(len: usize) -> Self {
        RegionOptions {
            len,
            max_len: None,
            nodes: Vec::new(),
            policy: MemPolicy::Bind,
            cache: CachePolicy::default(),
            commit: true,
            fallback: false,
        }
    }

    /// The most the region may grow to (reserved as address space up front).
    /// Default: four times `len`, at least 1 GiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).max_len(1 << 20).create_anonymous("doc-max")?;
    /// assert_eq!(r.max_len(), 1 << 20);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// Place the region on one NUMA node.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{RegionError, RegionOptions};
    /// let err = RegionOptions::new(64 << 10).node(200).create_anonymous("doc-node").unwrap_err();
    /// assert!(matches!(err, RegionError::UnknownNode { node: 200, .. }));
    /// ```
    pub fn node(mut self, node: u32) -> Self {
        self.nodes = vec![node];
        self
    }

    /// Place the region on a set of NUMA nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, RegionOptions, Topology};
    /// let nodes: Vec<u32> = Topology::get()?.nodes().iter().map(|n| n.os_index).collect();
    /// let r = RegionOptions::new(64 << 10).nodes(&nodes).policy(MemPolicy::Interleave).create_anonymous("doc-nodes")?;
    /// assert_eq!(r.placement().unwrap().policy(), MemPolicy::Interleave);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn nodes(mut self, nodes: &[u32]) -> Self {
        self.nodes = nodes.to_vec();
        self
    }

    /// The placement policy used with the node(s); default [`MemPolicy::Bind`].
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = numashm_region::RegionOptions::new(4096).policy(numashm_region::MemPolicy::Preferred);
    /// # let _ = opts;
    /// ```
    pub fn policy(mut self, policy: MemPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The page size; default [`PageSize::Base`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{PageSize, RegionOptions};
    /// // Falls back to base pages when no hugetlb pages are reserved.
    /// let r = RegionOptions::new(2 << 20).page_size(PageSize::Huge2M).fallback(true).create_anonymous("doc-huge")?;
    /// assert!(r.len() >= 2 << 20);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn page_size(mut self, page_size: PageSize) -> Self {
        self.cache.page_size = page_size;
        self
    }

    /// Fault every page in at create and grow.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).populate(true).create_anonymous("doc-pop")?;
    /// assert!(r.cache_policy().populate);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn populate(mut self, populate: bool) -> Self {
        self.cache.populate = populate;
        self
    }

    /// Lock the region in RAM (`mlock`).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).lock(true).fallback(true).create_anonymous("doc-lock")?;
    /// # let _ = r;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn lock(mut self, lock: bool) -> Self {
        self.cache.lock = lock;
        self
    }

    /// `MADV_DONTFORK` on the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).dont_fork(true).create_anonymous("doc-df")?;
    /// assert!(r.cache_policy().dont_fork);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn dont_fork(mut self, yes: bool) -> Self {
        self.cache.dont_fork = yes;
        self
    }

    /// `MADV_DONTDUMP` on the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).dont_dump(true).create_anonymous("doc-dd")?;
    /// assert!(r.cache_policy().dont_dump);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn dont_dump(mut self, yes: bool) -> Self {
        self.cache.dont_dump = yes;
        self
    }

    /// The whole cache policy at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{CachePolicy, RegionOptions};
    /// let r = RegionOptions::new(64 << 10).cache_policy(CachePolicy::default()).create_anonymous("doc-cp")?;
    /// assert_eq!(r.cache_policy(), CachePolicy::default());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn cache_policy(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Commit memory at create/grow (default: yes) so that running out of
    /// memory is an error there, never a SIGBUS later in some peer. Turning it
    /// off is for measurements and for callers that commit themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).commit(false).create_anonymous("doc-lazy")?;
    /// assert!(!r.header_info()?.commit);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn commit(mut self, commit: bool) -> Self {
        self.commit = commit;
        self
    }

    /// Opt in to degrading the cache policy when it cannot be had: 1 GiB → 2 MiB
    /// hugetlb → THP → base pages, and no `mlock` when the limit forbids it.
    /// [`Region::cache_policy`] tells what was applied.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(2 << 20)
    ///     .page_size(numashm_region::PageSize::Huge1G).fallback(true).create_anonymous("doc-fb")?;
    /// println!("got {:?}", r.cache_policy().page_size);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }

    /// Creates a named file at `path` (mode 0600, `O_EXCL|O_NOFOLLOW`) and maps it.
    /// The region owns the file: it is unlinked on drop unless
    /// [`Region::release_ownership`] is called. For placement, use a path on
    /// tmpfs (e.g. `/dev/shm`); for hugetlb, a path on hugetlbfs.
    ///
    /// # Errors
    ///
    /// `EEXIST` if the path exists, `ELOOP` for a symlink, plus every error of
    /// [`RegionOptions::create_anonymous`].
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("numashm-doc-{}", std::process::id()));
    /// let region = numashm_region::RegionOptions::new(1 << 20).create_file(&path)?;
    /// assert_eq!(region.path(), Some(path.as_path()));
    /// drop(region);
    /// assert!(!path.exists());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn create_file(&self, path: impl AsRef<Path>) -> Result<Region> {
        let path = path.as_ref();
        let cache = self.resolve_cache()?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| open_error("create", path, e))?;
        // The file exists from here: a failure below must unlink it.
        let cleanup = UnlinkOnError(Some(path.to_path_buf()));
        let statfs = rustix::fs::fstatfs(&fd).map_err(|e| RegionError::sys("fstatfs", e))?;
        let on_hugetlbfs = statfs.f_type as i64 == HUGETLBFS_MAGIC;
        if on_hugetlbfs != cache.page_size.is_hugetlb()
            || (on_hugetlbfs && statfs.f_bsize as usize != cache.page_size.bytes())
        {
            return Err(RegionError::invalid(
                "path",
                format!(
                    "{} is {}on hugetlbfs but the page size is {:?}; hugetlb regions need a file on a hugetlbfs mount of that page size (e.g. /dev/hugepages), others must not be on one",
                    path.display(),
                    if on_hugetlbfs { "" } else { "not " },
                    cache.page_size
                ),
            ));
        }
        let region = self.init(fd, Backing::File(path.to_path_buf()), cache, false)?;
        std::mem::forget(cleanup);
        Ok(region)
    }

    /// Creates an anonymous shared-memory object (memfd) and maps it. Its fd can
    /// be handed to another process ([`Region::as_fd`]), which attaches with
    /// [`Region::attach_fd`]. The memfd is sealed against shrinking, so no peer
    /// can truncate it under the others.
    ///
    /// # Errors
    ///
    /// Typed errors for zero or misaligned lengths, unknown or memoryless
    /// nodes, unavailable cache policies (with a hint), and syscall failures.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(1 << 20).create_anonymous("doc-memfd")?;
    /// assert!(region.path().is_none());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn create_anonymous(&self, name: &str) -> Result<Region> {
        let cache = self.resolve_cache()?;
        SharedObject::new_with(name, cache.page_size)?.map_resolved(self, cache)
    }

    fn check_len(&self, page_size: PageSize) -> Result<(usize, usize)> {
        let page = page_size.bytes();
        let len = self.len;
        if len == 0 {
            return Err(RegionError::invalid("len", "a region needs at least one page"));
        }
        if len % page != 0 || len < HEADER_LEN {
            return Err(RegionError::invalid(
                "len",
                format!("{len} is not a multiple of the page size {page} (at least {HEADER_LEN})"),
            ));
        }
        let max_len = match self.max_len {
            Some(m) => m,
            None => len.saturating_mul(4).max(DEFAULT_MIN_MAX_LEN).div_ceil(page) * page,
        };
        if max_len < len || max_len % page != 0 {
            return Err(RegionError::invalid(
                "max_len",
                format!("{max_len} must be at least len ({len}) and a multiple of {page}"),
            ));
        }
        if max_len > MAX_REGION_LEN {
            return Err(RegionError::TooLarge { requested: max_len, max: MAX_REGION_LEN });
        }
        Ok((len, max_len))
    }

    fn placement(&self) -> Result<Option<Placement>> {
        if self.nodes.is_empty() {
            return Ok(None);
        }
        let placement = Placement::new(NodeSet::from_nodes(&self.nodes)?, self.policy);
        placement.validate()?;
        Ok(Some(placement))
    }

    /// Decides the cache policy that will be applied, degrading it only when
    /// the caller opted in.
    fn resolve_cache(&self) -> Result<CachePolicy> {
        let placement = self.placement()?;
        let mut cache = self.cache;
        loop {
            let page = cache.page_size;
            let problem = match page {
                PageSize::Base => None,
                PageSize::Thp => match shmem_thp_mode().as_deref() {
                    Some("always" | "within_size" | "advise" | "force") => None,
                    mode => Some((
                        "shmem transparent huge pages",
                        format!(
                            "shmem_enabled is {}: echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled (as root)",
                            mode.unwrap_or("unknown")
                        ),
                    )),
                },
                PageSize::Huge2M | PageSize::Huge1G => {
                    let needed = (self.len / page.bytes()).max(1) as u64;
                    let nodes: Vec<Option<u32>> = match &placement {
                        Some(p) if p.policy() == MemPolicy::Bind => p.nodes().iter().map(Some).collect(),
                        _ => vec![None],
                    };
                    let free: u64 = nodes.iter().map(|&n| free_huge_pages(page.bytes(), n).unwrap_or(0)).sum();
                    if free >= needed {
                        None
                    } else {
                        let dir = huge_pages_dir(page.bytes(), nodes[0]);
                        Some((
                            "hugetlb pages",
                            format!(
                                "{needed} free {} KiB pages needed{}, {free} free: echo {needed} > {dir}/nr_hugepages (as root)",
                                page.bytes() / 1024,
                                nodes[0].map(|n| format!(" on node {n}")).unwrap_or_default(),
                            ),
                        ))
                    }
                }
            };
            match problem {
                None => break,
                Some((what, hint)) if !self.fallback => {
                    return Err(RegionError::Unavailable { what, hint: hint.into() })
                }
                Some(_) => {
                    cache.page_size = match page {
                        PageSize::Huge1G => PageSize::Huge2M,
                        PageSize::Huge2M => PageSize::Thp,
                        _ => PageSize::Base,
                    };
                }
            }
        }
        // A fallback to a smaller page keeps lengths valid: all sizes divide 1 GiB.
        self.check_len(cache.page_size)?;
        Ok(cache)
    }

    /// Sets up a fresh, empty backing `fd`: size, reservation, placement, cache
    /// policy, commit, header. Runs before any other process can see the memory.
    ///
    /// With `pool`, the object is sealed `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK |
    /// F_SEAL_SEAL` right after the one writable mapping of the whole
    /// reservation is made, before placement, commit and header.
    fn init(&self, fd: OwnedFd, backing: Backing, mut cache: CachePolicy, pool: bool) -> Result<Region> {
        let placement = self.placement()?;
        let (len, max_len) = self.check_len(cache.page_size)?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(|e| RegionError::sys("ftruncate", e))?;
        let base = reserve(max_len, cache.page_size.bytes())?;
        let region = Region {
            base,
            reserved: max_len,
            max_len,
            mapped: AtomicUsize::new(0),
            grow_lock: Mutex::new(()),
            fd,
            backing,
            owner: true,
            writable: true,
            page_size: cache.page_size,
            placement,
            cache,
            commit: self.commit,
            sealed_pool: pool,
        };
        if pool {
            // After F_SEAL_FUTURE_WRITE no writable shared mapping can be made:
            // map the whole reservation first (past EOF is allowed), then seal
            // at once, so the unsealed window is as short as it can be.
            region.map_tail_prot(0, region.reserved, ProtFlags::READ | ProtFlags::WRITE)?;
            sealed::seal_pool(region.fd.as_fd())?;
            region.apply_policy(0, region.reserved)?;
        } else {
            region.map_and_place(0, region.ahead_len(len), ProtFlags::READ | ProtFlags::WRITE)?;
        }
        if let Err(e) = region.prepare_tail(0, len, self.fallback) {
            if matches!(e, RegionError::Unavailable { what: "mlock", .. }) && self.fallback {
                cache.lock = false;
            } else {
                return Err(e);
            }
        }
        let mut region = region;
        region.cache = cache;
        region.mapped.store(len, Ordering::Relaxed); // Relaxed: not shared yet.
        region.write_header(len, max_len);
        if let (Backing::Memfd, false) = (&region.backing, pool) {
            // Nobody may truncate the object under the others and SIGBUS them.
            rustix::fs::fcntl_add_seals(&region.fd, SealFlags::SHRINK)
                .map_err(|e| RegionError::sys("fcntl(F_ADD_SEALS, F_SEAL_SHRINK)", e))?;
        }
        Ok(region)
    }
}

/// Unlinks a half-created file if creation fails.
struct UnlinkOnError(Option<PathBuf>);

impl Drop for UnlinkOnError {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn open_error(what: &str, path: &Path, e: Errno) -> RegionError {
    match e {
        Errno::LOOP => RegionError::Access {
            path: path.display().to_string(),
            detail: "it is a symbolic link; numashm never follows links to segments".into(),
        },
        Errno::EXIST => RegionError::sys_hint(
            format!("{what} {}", path.display()),
            e,
            "the file exists: attach to it, or remove it first (numashm rm PATH)",
        ),
        _ => RegionError::sys(format!("{what} {}", path.display()), e),
    }
}

/// Reserves `len` bytes of address space aligned to `align`, PROT_NONE.
fn reserve(len: usize, align: usize) -> Result<NonNull<u8>> {
    let padded = len.checked_add(align).ok_or(RegionError::TooLarge { requested: len, max: MAX_REGION_LEN })?;
    // SAFETY: a fresh PROT_NONE anonymous mapping at a kernel-chosen address
    // aliases nothing.
    let raw = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            padded,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }
    .map_err(|e| RegionError::sys("mmap (reserve address space)", e))?;
    let start = raw as usize;
    let aligned = start.next_multiple_of(align);
    // SAFETY: both trims lie inside the mapping we just created and own.
    unsafe {
        if aligned > start {
            let _ = rustix::mm::munmap(raw, aligned - start);
        }
        let end = aligned + len;
        if start + padded > end {
            let _ = rustix::mm::munmap(end as *mut _, start + padded - end);
        }
    }
    NonNull::new(aligned as *mut u8).ok_or(RegionError::invalid("mmap", "null reservation"))
}

/// An anonymous shared-memory object (memfd): like opening a "new"
/// shared-memory object, its size is decided by the first map; later maps of
/// the same object map the same memory.
///
/// # Examples
///
/// ```
/// use numashm_region::{RegionOptions, SharedObject};
/// let object = SharedObject::new("doc-object")?;
/// let first = object.map(&RegionOptions::new(1 << 20))?;   // decides the size
/// let second = object.map(&RegionOptions::new(4096))?;     // same memory, size from the object
/// first.write_at(first.data_offset(), b"x")?;
/// let mut b = [0u8; 1];
/// second.read_at(second.data_offset(), &mut b)?;
/// assert_eq!(&b, b"x");
/// assert_eq!(second.len(), 1 << 20);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug)]
pub struct SharedObject {
    fd: OwnedFd,
}

impl SharedObject {
    /// A new, empty object with base pages.
    ///
    /// # Errors
    ///
    /// The `memfd_create` errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let o = numashm_region::SharedObject::new("doc")?;
    /// # let _ = o;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn new(name: &str) -> Result<Self> {
        Self::new_with(name, PageSize::Base)
    }

    fn new_with(name: &str, page_size: PageSize) -> Result<Self> {
        use rustix::fs::MemfdFlags;
        let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        match page_size {
            PageSize::Huge2M => flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB,
            PageSize::Huge1G => flags |= MemfdFlags::HUGETLB | MemfdFlags::HUGE_1GB,
            _ => {}
        }
        let fd = rustix::fs::memfd_create(name, flags).map_err(|e| RegionError::sys("memfd_create", e))?;
        Ok(SharedObject { fd })
    }

    /// Wraps an object received from another process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let a = numashm_region::SharedObject::new("doc")?;
    /// let b = numashm_region::SharedObject::from_fd(a.as_fd().try_clone_to_owned().unwrap());
    /// # let _ = b;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Self {
        SharedObject { fd }
    }

    /// Maps the object: the first map sizes and initialises it from `options`,
    /// later maps attach to what the first one made (`options` is then unused).
    ///
    /// # Errors
    ///
    /// Those of [`RegionOptions::create_anonymous`] for the first map, those of
    /// [`Region::attach_fd`] for later ones.
    ///
    /// # Examples
    ///
    /// See [`SharedObject`].
    pub fn map(&self, options: &RegionOptions) -> Result<Region> {
        let _lock = FlockGuard::exclusive(self.fd.as_fd())?;
        let size = rustix::fs::fstat(&self.fd).map_err(|e| RegionError::sys("fstat", e))?.st_size;
        let fd = self.fd.try_clone().map_err(|e| RegionError::sys("dup", Errno::from_io_error(&e).unwrap_or(Errno::INVAL)))?;
        if size == 0 {
            let cache = options.resolve_cache()?;
            options.init(fd, Backing::Memfd, cache, false)
        } else {
            Region::attach_fd_with(fd, AttachOptions::default())
        }
    }

    fn map_resolved(self, options: &RegionOptions, cache: CachePolicy) -> Result<Region> {
        options.init(self.fd, Backing::Memfd, cache, false)
    }
}

impl AsFd for SharedObject {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `flock` held for the scope: serialises first-map and growth across processes.
struct FlockGuard<'a>(BorrowedFd<'a>);

impl<'a> FlockGuard<'a> {
    fn exclusive(fd: BorrowedFd<'a>) -> Result<Self> {
        rustix::fs::flock(fd, FlockOperation::LockExclusive).map_err(|e| RegionError::sys("flock", e))?;
        Ok(FlockGuard(fd))
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, FlockOperation::Unlock);
    }
}

impl Region {
    /// Attaches to a named region created by another process (read-write).
    ///
    /// # Errors
    ///
    /// `ENOENT`, [`RegionError::Access`] for a symlink or a file owned by another
    /// user, [`RegionError::NotInitialized`] while the creator is mid-way, and
    /// [`RegionError::Corrupt`] naming the first bad header field.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{Region, RegionOptions};
    /// let path = std::env::temp_dir().join(format!("numashm-doc-attach-{}", std::process::id()));
    /// let host = RegionOptions::new(1 << 20).create_file(&path)?;
    /// let guest = Region::attach_file(&path)?;
    /// assert_eq!(guest.len(), host.len());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_file(path: impl AsRef<Path>) -> Result<Region> {
        Self::attach_file_with(path, AttachOptions::default())
    }

    /// Attaches to a named region with options (e.g. read-only).
    ///
    /// # Errors
    ///
    /// As [`Region::attach_file`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{AttachOptions, Region, RegionError, RegionOptions};
    /// let path = std::env::temp_dir().join(format!("numashm-doc-ro-{}", std::process::id()));
    /// let host = RegionOptions::new(1 << 20).create_file(&path)?;
    /// let guest = Region::attach_file_with(&path, AttachOptions { read_only: true })?;
    /// assert!(matches!(guest.write_at(guest.data_offset(), b"x"), Err(RegionError::ReadOnly)));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_file_with(path: impl AsRef<Path>, options: AttachOptions) -> Result<Region> {
        let path = path.as_ref();
        let access = if options.read_only { OFlags::RDONLY } else { OFlags::RDWR };
        let fd = rustix::fs::open(path, access | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| open_error("open", path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| RegionError::sys("fstat", e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(RegionError::Access { path: path.display().to_string(), detail: "not a regular file".into() });
        }
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me {
            return Err(RegionError::Access {
                path: path.display().to_string(),
                detail: format!("owned by uid {}, not by us (uid {me}); segments are private to their user", stat.st_uid),
            });
        }
        let mut region = Self::attach_inner(fd, options, false)?;
        region.backing = Backing::File(path.to_path_buf());
        Ok(region)
    }

    /// Attaches to a region through its fd (e.g. a memfd received over a Unix
    /// socket), read-write.
    ///
    /// # Errors
    ///
    /// As [`Region::attach_file`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(1 << 20).create_anonymous("doc-fd")?;
    /// let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
    /// assert_eq!(guest.len(), host.len());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_fd(fd: OwnedFd) -> Result<Region> {
        Self::attach_fd_with(fd, AttachOptions::default())
    }

    /// Attaches through an fd with options.
    ///
    /// # Errors
    ///
    /// As [`Region::attach_file`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{AttachOptions, Region, RegionOptions};
    /// let host = RegionOptions::new(1 << 20).create_anonymous("doc-fd-ro")?;
    /// let guest = Region::attach_fd_with(host.as_fd().try_clone_to_owned().unwrap(), AttachOptions { read_only: true })?;
    /// assert!(!guest.is_writable());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_fd_with(fd: OwnedFd, options: AttachOptions) -> Result<Region> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| RegionError::sys("fstat", e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(RegionError::invalid("fd", "not a regular file or memfd"));
        }
        Self::attach_inner(fd, options, false)
    }

    /// Maps a region through `fd`. With `pool` (a sealed peer pool, checked by
    /// the caller) the header's `max_len` must not exceed [`MAX_POOL_LEN`]: a
    /// hostile owner chooses it, and it is reserved as address space here.
    fn attach_inner(fd: OwnedFd, options: AttachOptions, pool: bool) -> Result<Region> {
        let file_len = rustix::fs::fstat(&fd).map_err(|e| RegionError::sys("fstat", e))?.st_size as u64;
        let statfs = rustix::fs::fstatfs(&fd).map_err(|e| RegionError::sys("fstatfs", e))?;
        let fs_page = if statfs.f_type as i64 == HUGETLBFS_MAGIC { statfs.f_bsize as usize } else { 4096 };
        if file_len < fs_page.max(HEADER_LEN) as u64 {
            return Err(RegionError::corrupt("len", format!("the backing holds {file_len} bytes, less than a header")));
        }
        let prot = if options.read_only { ProtFlags::READ } else { ProtFlags::READ | ProtFlags::WRITE };
        // Read the header through a temporary one-page mapping.
        let info = {
            // SAFETY: a fresh shared read-only mapping of the first page, which the
            // file holds (checked above); unmapped before leaving the block.
            let ptr = unsafe {
                rustix::mm::mmap(std::ptr::null_mut(), fs_page, ProtFlags::READ, MapFlags::SHARED, &fd, 0)
            }
            .map_err(|e| RegionError::sys("mmap (header)", e))?;
            // SAFETY: the mapping is page-aligned, at least HEADER_FIELDS_LEN bytes
            // long, and RegionHeader is made of atomics, valid for any bytes.
            let bytes = unsafe { &*(ptr as *const RegionHeader) }.snapshot();
            // SAFETY: unmapping the mapping made just above; no reference to it survives.
            unsafe {
                let _ = rustix::mm::munmap(ptr, fs_page);
            }
            parse_header(&bytes, file_len)?
        };
        let page_size = info.cache.page_size;
        if page_size.is_hugetlb() != (fs_page != 4096) || (page_size.is_hugetlb() && page_size.bytes() != fs_page) {
            return Err(RegionError::corrupt(
                "page_size",
                format!("header says {page_size:?} but the backing has {fs_page}-byte pages"),
            ));
        }
        if pool && info.max_len > MAX_POOL_LEN {
            return Err(RegionError::corrupt(
                "max_len",
                format!("{:#x} exceeds the largest pool a reader reserves ({MAX_POOL_LEN:#x})", info.max_len),
            ));
        }
        if let Some(p) = &info.placement {
            // Nodes written by another process are checked like user input.
            Topology::get()?.validate(p.nodes()).map_err(|e| RegionError::corrupt("nodes", e.to_string()))?;
        }
        let base = reserve(info.max_len, page_size.bytes())?;
        let region = Region {
            base,
            reserved: info.max_len,
            max_len: info.max_len,
            mapped: AtomicUsize::new(0),
            grow_lock: Mutex::new(()),
            fd,
            backing: Backing::Memfd,
            owner: false,
            writable: !options.read_only,
            page_size,
            placement: info.placement,
            cache: CachePolicy { lock: false, populate: false, ..info.cache },
            commit: info.commit,
            sealed_pool: pool,
        };
        region.map_and_place(0, region.ahead_len(info.len), prot)?;
        // Fault the header page in now: check_and_remap reads it on every call,
        // and its first read should not pay a page fault.
        // Relaxed: only touches the page; the value is not used.
        std::hint::black_box(region.header().len.load(Ordering::Relaxed));
        region.mapped.store(info.len, Ordering::Release); // SYNC local-mapped (see check_and_remap)
        Ok(region)
    }

    fn header(&self) -> &RegionHeader {
        // SAFETY: the first page is mapped for the region's whole life and
        // RegionHeader (atomics only, align 8) is valid for any bit pattern.
        unsafe { &*(self.base.as_ptr() as *const RegionHeader) }
    }

    fn write_header(&self, len: usize, max_len: usize) {
        let page_raw = self.page_size as u32;
        let (policy, nodes) = match &self.placement {
            Some(p) => (p.policy() as u32, *p.nodes().words()),
            None => (0, [0; 4]),
        };
        let mut flags = self.cache.flags();
        if self.commit {
            flags |= FLAG_COMMIT;
        }
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let checksum = immutable_checksum(REGION_VERSION, HEADER_LEN as u32, max_len as u64, page_raw, policy, flags, pid, &nodes);
        let header = RegionHeader {
            magic: AtomicU64::new(0),
            version: AtomicU32::new(REGION_VERSION),
            header_len: AtomicU32::new(HEADER_LEN as u32),
            len: AtomicU64::new(len as u64),
            epoch: AtomicU64::new(0),
            max_len: AtomicU64::new(max_len as u64),
            page_size: AtomicU32::new(page_raw),
            policy: AtomicU32::new(policy),
            flags: AtomicU32::new(flags),
            creator_pid: AtomicU32::new(pid),
            nodes: nodes.map(AtomicU64::new),
            checksum: AtomicU64::new(checksum),
            reserved: [0; 4].map(AtomicU64::new),
        };
        // SAFETY: the first page is mapped read-write, aligned, and not yet visible
        // to any other process; `ptr::write` initialises the atomics in place.
        unsafe { std::ptr::write(self.base.as_ptr() as *mut RegionHeader, header) };
        // SYNC region-init: Release publishes every field above before the magic.
        self.header().magic.store(REGION_MAGIC, Ordering::Release);
    }

    /// Whether the whole reservation is one shared mapping of the backing,
    /// made at create/attach. Then growth needs no mmap: pages past the
    /// published length lie past the file's end and become valid when the file
    /// grows. hugetlb cannot do this (its mmap reserves huge pages for the whole
    /// mapping), so it maps each new tail inside a PROT_NONE reservation.
    fn maps_ahead(&self) -> bool {
        !self.page_size.is_hugetlb()
    }

    /// How much to map at create/attach when `len` bytes are published.
    fn ahead_len(&self, len: usize) -> usize {
        if self.maps_ahead() {
            self.reserved
        } else {
            len
        }
    }

    /// Maps `[from, to)` and applies placement and advice to it.
    fn map_and_place(&self, from: usize, to: usize, prot: ProtFlags) -> Result<()> {
        self.map_tail_prot(from, to, prot)?;
        self.apply_policy(from, to)
    }

    fn prot(&self) -> ProtFlags {
        if self.writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        }
    }

    /// Maps `[from, to)` of the backing at the same offsets inside the reservation.
    fn map_tail_prot(&self, from: usize, to: usize, prot: ProtFlags) -> Result<()> {
        debug_assert!(from <= to && to <= self.reserved);
        if from == to {
            return Ok(());
        }
        // SAFETY: `[base+from, base+to)` lies inside our own reservation (to <=
        // reserved), which holds either PROT_NONE pages or earlier mappings of the
        // same backing at the same offsets; MAP_FIXED replaces only those.
        unsafe {
            rustix::mm::mmap(
                self.base.as_ptr().add(from).cast(),
                to - from,
                prot,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.fd,
                from as u64,
            )
        }
        .map_err(|e| match e {
            Errno::NOMEM if self.page_size.is_hugetlb() => RegionError::Unavailable {
                what: "hugetlb pages",
                hint: format!(
                    "the kernel could not reserve {} bytes of {} KiB pages: echo N > {}/nr_hugepages (as root)",
                    to - from,
                    self.page_size.bytes() / 1024,
                    huge_pages_dir(self.page_size.bytes(), None)
                )
                .into(),
            },
            e => RegionError::sys("mmap (MAP_FIXED)", e),
        })?;
        Ok(())
    }

    /// mbind + madvise on a freshly mapped range.
    fn apply_policy(&self, from: usize, to: usize) -> Result<()> {
        let len = to - from;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is mapped by us; mbind without MPOL_MF_MOVE only sets
        // the policy (for shmem: the inode's shared policy) for future faults.
        let ptr = unsafe { self.base.as_ptr().add(from) };
        if let Some(p) = &self.placement {
            // SAFETY: see above.
            unsafe { sys::mbind(ptr, len, p.policy().mode(), p.nodes().words(), 0) }
                .map_err(|e| RegionError::sys("mbind", e))?;
        }
        let mut advice = Vec::new();
        if self.page_size == PageSize::Thp {
            advice.push(Advice::LinuxHugepage);
        }
        if self.cache.dont_fork {
            advice.push(Advice::LinuxDontFork);
        }
        if self.cache.dont_dump {
            advice.push(Advice::LinuxDontDump);
        }
        for a in advice {
            // SAFETY: these advices change no contents of our own mapped range.
            unsafe { rustix::mm::madvise(ptr.cast(), len, a) }
                .map_err(|e| RegionError::sys(format!("madvise({a:?})"), e))?;
        }
        Ok(())
    }

    /// Placement, commit, populate and lock of a new tail `[from, to)`, before
    /// anyone else can see it.
    fn prepare_tail(&self, from: usize, to: usize, fallback: bool) -> Result<()> {
        self.commit_tail(from, to)?;
        self.fault_tail(from, to, fallback)
    }

    /// Commit: runs after placement and before anything touches the pages.
    fn commit_tail(&self, from: usize, to: usize) -> Result<()> {
        if self.commit && self.page_size == PageSize::Base {
            // Allocates the pages now (under the shared policy set above), so that
            // out-of-memory is an error here and never a SIGBUS in a peer. hugetlb
            // memory is reserved by mmap; THP memory is committed by populating
            // through the mapping (fallocate has no VMA, so it would allocate base
            // pages under shmem_enabled=advise). KEEP_SIZE: growth may commit
            // before extending the file.
            rustix::fs::fallocate(&self.fd, FallocateFlags::KEEP_SIZE, from as u64, (to - from) as u64)
                .map_err(|e| RegionError::sys("fallocate (commit)", e))?;
        }
        Ok(())
    }

    /// Populate and lock; the file must already cover `[from, to)`.
    fn fault_tail(&self, from: usize, to: usize, fallback: bool) -> Result<()> {
        let len = to - from;
        // SAFETY: in-range of our own mapping.
        let ptr = unsafe { self.base.as_ptr().add(from) };
        let populate = self.cache.populate
            || (self.page_size.is_hugetlb() && self.placement.is_some())
            || (self.page_size == PageSize::Thp && self.commit);
        if populate {
            // SAFETY: populating faults pages in; contents are unchanged.
            unsafe { rustix::mm::madvise(ptr.cast(), len, Advice::LinuxPopulateWrite) }.map_err(|e| match e {
                Errno::NOMEM | Errno::FAULT if self.page_size.is_hugetlb() => RegionError::Unavailable {
                    what: "hugetlb pages",
                    hint: format!(
                        "not enough free {} KiB pages on the chosen node(s): reserve them in /sys/devices/system/node/nodeN/hugepages/hugepages-{}kB/nr_hugepages (as root)",
                        self.page_size.bytes() / 1024,
                        self.page_size.bytes() / 1024
                    )
                    .into(),
                },
                e => RegionError::sys("madvise(MADV_POPULATE_WRITE)", e),
            })?;
        }
        if self.cache.lock {
            // SAFETY: locking our own mapped range changes no contents.
            if let Err(e) = unsafe { rustix::mm::mlock(ptr.cast(), len) } {
                let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
                let err = RegionError::Unavailable {
                    what: "mlock",
                    hint: format!(
                        "mlock of {len} bytes failed ({e}); RLIMIT_MEMLOCK is {:?} bytes: raise it (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK",
                        limit.current
                    )
                    .into(),
                };
                let _ = fallback;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Grows the region to `new_len` bytes in place: the base address never
    /// changes, placement and cache policy apply to the new part, and memory is
    /// committed before the new length is published in the header (one Release
    /// store), where guests find it with [`Region::check_and_remap`].
    ///
    /// At the maximum ([`Region::max_len`]), growth fails with
    /// [`RegionError::TooLarge`]; nothing changes.
    ///
    /// # Errors
    ///
    /// [`RegionError::Shrink`] if `new_len` is below the current length,
    /// [`RegionError::TooLarge`], [`RegionError::InvalidArgument`] for a length
    /// not a multiple of the page size, [`RegionError::ReadOnly`], and syscall
    /// errors (`ENOSPC` when the backing is full). On error the region is as before.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{RegionError, RegionOptions};
    /// let r = RegionOptions::new(1 << 20).max_len(4 << 20).create_anonymous("doc-resize")?;
    /// r.resize(2 << 20)?;
    /// assert_eq!(r.len(), 2 << 20);
    /// assert!(matches!(r.resize(1 << 20), Err(RegionError::Shrink { .. })));
    /// assert!(matches!(r.resize(8 << 20), Err(RegionError::TooLarge { .. })));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn resize(&self, new_len: usize) -> Result<()> {
        if !self.writable {
            return Err(RegionError::ReadOnly);
        }
        let page = self.page_size.bytes();
        if new_len > self.max_len {
            return Err(RegionError::TooLarge { requested: new_len, max: self.max_len });
        }
        if new_len % page != 0 {
            return Err(RegionError::invalid("len", format!("{new_len} is not a multiple of the page size {page}")));
        }
        let _local = self.grow_lock.lock().unwrap_or_else(|p| p.into_inner());
        // A sealed pool has one writer (us): no cross-process lock, which a
        // reader could otherwise hold forever to stall our growth.
        let _flock = if self.sealed_pool { None } else { Some(FlockGuard::exclusive(self.fd.as_fd())?) };
        // Another process may have grown it meanwhile: map that first.
        self.remap_locked()?;
        let current = self.mapped.load(Ordering::Relaxed); // Relaxed: we hold grow_lock.
        if new_len < current {
            return Err(RegionError::Shrink { current, requested: new_len });
        }
        if new_len == current {
            return Ok(());
        }
        let mapped_here = !self.maps_ahead();
        let result = if mapped_here { self.map_and_place(current, new_len, self.prot()) } else { Ok(()) }
            .and_then(|()| self.commit_tail(current, new_len))
            .and_then(|()| {
                // The file grows before populating: touching past its end faults.
                self.grow_file_to(new_len)
            })
            .and_then(|()| self.fault_tail(current, new_len, false));
        if let Err(e) = result {
            // Give the tail back to the reservation. The file may have grown
            // already (it cannot shrink: sealed); the header's length is what counts.
            if mapped_here {
                // SAFETY: the tail lies in our reservation and is not yet published.
                let _ = unsafe { rustix::mm::mmap_anonymous(
                    self.base.as_ptr().add(current).cast(),
                    new_len - current,
                    ProtFlags::empty(),
                    MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
                ) };
            }
            if self.commit && !self.page_size.is_hugetlb() {
                let _ = rustix::fs::fallocate(
                    &self.fd,
                    FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE,
                    current as u64,
                    (new_len - current) as u64,
                );
            }
            return Err(e);
        }
        // SYNC local-mapped: Release so a thread that sees the new length also sees the mapping.
        self.mapped.store(new_len, Ordering::Release);
        let header = self.header();
        // SYNC region-grow: Release publishes the committed, placed tail (and
        // whatever the grower initialised in it) before guests see the length.
        header.len.store(new_len as u64, Ordering::Release);
        // Release: pairs with readers of the epoch that then read the length.
        header.epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Notices growth by the creator (or another peer) and maps the new part.
    ///
    /// When nothing changed this is one atomic load from the header and one
    /// from this process's state — no syscall. Returns `true` when the mapping
    /// was extended; the base address never changes, so pointers stay valid.
    ///
    /// # Errors
    ///
    /// [`RegionError::Corrupt`] when the published length is inconsistent
    /// (shrunk, beyond the maximum or the end of the file); mapping errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(1 << 20).max_len(4 << 20).create_anonymous("doc-remap")?;
    /// let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
    /// assert!(!guest.check_and_remap()?);
    /// host.resize(2 << 20)?;
    /// assert!(guest.check_and_remap()?);
    /// assert!(!guest.check_and_remap()?);
    /// assert_eq!(guest.len(), 2 << 20);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    #[inline]
    pub fn check_and_remap(&self) -> Result<bool> {
        // SYNC region-grow: Acquire pairs with the grower's Release store of `len`.
        let published = self.header().len.load(Ordering::Acquire);
        // SYNC local-mapped: Acquire pairs with the Release store after mapping.
        if published == self.mapped.load(Ordering::Acquire) as u64 {
            return Ok(false);
        }
        self.check_and_remap_slow()
    }

    #[cold]
    fn check_and_remap_slow(&self) -> Result<bool> {
        let _local = self.grow_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.remap_locked()
    }

    /// Maps up to the published length; caller holds `grow_lock`.
    fn remap_locked(&self) -> Result<bool> {
        let published = self.header().len.load(Ordering::Acquire); // SYNC region-grow
        let mapped = self.mapped.load(Ordering::Relaxed); // Relaxed: we hold grow_lock.
        let published = usize::try_from(published).unwrap_or(usize::MAX);
        if published == mapped {
            return Ok(false);
        }
        if published < mapped {
            return Err(RegionError::corrupt("len", format!("published length {published:#x} shrank below {mapped:#x}")));
        }
        if published > self.max_len || published % self.page_size.bytes() != 0 {
            return Err(RegionError::corrupt(
                "len",
                format!("published length {published:#x} is beyond max_len {:#x} or misaligned", self.max_len),
            ));
        }
        // The length is hostile until the file backs it: mapping past the end
        // would SIGBUS on first access.
        let file_len = rustix::fs::fstat(&self.fd).map_err(|e| RegionError::sys("fstat", e))?.st_size as usize;
        if file_len < published {
            return Err(RegionError::corrupt(
                "len",
                format!("published length {published:#x} is beyond the end of the backing ({file_len:#x})"),
            ));
        }
        if !self.maps_ahead() {
            self.map_and_place(mapped, published, self.prot())?;
        }
        self.mapped.store(published, Ordering::Release); // SYNC local-mapped
        Ok(true)
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

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        let size = self.len();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(RegionError::OutOfBounds { offset, len, size }),
        }
    }

    fn check_pages(&self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        let align = self.page_size.bytes();
        if offset % align != 0 || len % align != 0 || len == 0 {
            return Err(RegionError::Misaligned { offset, len, align });
        }
        Ok(())
    }

    fn check_data_pages(&self, offset: usize, len: usize) -> Result<()> {
        self.check_pages(offset, len)?;
        if offset < HEADER_LEN {
            return Err(RegionError::HeaderRange { offset, len, header: HEADER_LEN });
        }
        Ok(())
    }

    /// Copies bytes out of the region at `offset` (from the base).
    ///
    /// # Errors
    ///
    /// [`RegionError::OutOfBounds`].
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-read")?;
    /// let mut buf = [1u8; 4];
    /// r.read_at(r.data_offset(), &mut buf)?;
    /// assert_eq!(buf, [0; 4]);
    /// assert!(r.read_at(r.len() - 2, &mut buf).is_err());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: 1. the range is inside the mapped, readable part (checked);
        // 2. `buf` is a distinct local buffer. Other processes may write the
        // shared bytes concurrently; we copy raw bytes and give out no reference
        // into the mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies bytes into the region at `offset` (from the base). The header
    /// (first [`HEADER_LEN`] bytes) cannot be written this way.
    ///
    /// # Errors
    ///
    /// [`RegionError::OutOfBounds`], [`RegionError::HeaderRange`], [`RegionError::ReadOnly`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::RegionError;
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-write")?;
    /// r.write_at(r.data_offset(), b"abc")?;
    /// assert!(matches!(r.write_at(0, b"x"), Err(RegionError::HeaderRange { .. })));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(RegionError::ReadOnly);
        }
        self.check_range(offset, data.len())?;
        if offset < HEADER_LEN {
            return Err(RegionError::HeaderRange { offset, len: data.len(), header: HEADER_LEN });
        }
        // SAFETY: 1. the range is inside the mapped, writable part past the header
        // (checked); 2. `data` is a distinct buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Maps `size` bytes of `fd` at `fd_offset` over the region at `offset`
    /// (crosvm's `add_fd_mapping`). Page-aligned, inside the mapped part, past
    /// the header.
    ///
    /// # Errors
    ///
    /// Bounds, alignment and header errors; the mmap errno.
    ///
    /// # Safety
    ///
    /// - Nothing may access `[offset, offset+size)` through this region in a
    ///   way the new mapping does not allow (e.g. [`Region::write_at`] over a
    ///   [`Protection::Read`] mapping faults).
    /// - Pointers into the range now see `fd`'s contents, not the region's.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Protection, RegionOptions};
    /// let r = RegionOptions::new(64 << 10).create_anonymous("doc-addfd")?;
    /// let other = RegionOptions::new(64 << 10).create_anonymous("doc-other")?;
    /// other.write_at(8192, b"other")?;
    /// // SAFETY: nothing else uses the range, and it is mapped read-write.
    /// unsafe { r.add_fd_mapping(8192, 4096, other.as_fd(), 8192, Protection::ReadWrite)? };
    /// let mut b = [0u8; 5];
    /// r.read_at(8192, &mut b)?;
    /// assert_eq!(&b, b"other");
    /// r.remove_mapping(8192, 4096)?;
    /// r.read_at(8192, &mut b)?;
    /// assert_eq!(b, [0; 5]);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub unsafe fn add_fd_mapping(
        &self,
        offset: usize,
        size: usize,
        fd: BorrowedFd<'_>,
        fd_offset: u64,
        prot: Protection,
    ) -> Result<()> {
        self.check_data_pages(offset, size)?;
        if fd_offset % self.page_size.bytes() as u64 != 0 {
            return Err(RegionError::Misaligned { offset: fd_offset as usize, len: size, align: self.page_size.bytes() });
        }
        // SAFETY: the range is inside our reservation and mapped (checked); the
        // caller upholds the access obligations of the new contents.
        unsafe {
            rustix::mm::mmap(
                self.base.as_ptr().add(offset).cast(),
                size,
                prot.flags(),
                MapFlags::SHARED | MapFlags::FIXED,
                fd,
                fd_offset,
            )
        }
        .map_err(|e| RegionError::sys("mmap (add_fd_mapping)", e))?;
        Ok(())
    }

    /// Restores the region's own backing over `[offset, offset+size)` (undoing
    /// [`Region::add_fd_mapping`]), with the region's protection and placement.
    ///
    /// # Errors
    ///
    /// Bounds, alignment and header errors; the mmap errno.
    ///
    /// # Examples
    ///
    /// See [`Region::add_fd_mapping`].
    pub fn remove_mapping(&self, offset: usize, size: usize) -> Result<()> {
        self.check_data_pages(offset, size)?;
        self.map_and_place(offset, offset + size, self.prot())
    }

    /// `msync(MS_SYNC)` of a range (for named files on a disk filesystem).
    ///
    /// # Errors
    ///
    /// Bounds and alignment errors; the msync errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-msync")?;
    /// r.msync(0, 4096)?;
    /// assert!(r.msync(1, 4096).is_err());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn msync(&self, offset: usize, size: usize) -> Result<()> {
        self.check_pages(offset, size)?;
        // SAFETY: msync only writes back our own mapped range.
        unsafe { rustix::mm::msync(self.base.as_ptr().add(offset).cast(), size, rustix::mm::MsyncFlags::SYNC) }
            .map_err(|e| RegionError::sys("msync", e))
    }

    /// `madvise` with advice that keeps the contents.
    ///
    /// # Errors
    ///
    /// Bounds and alignment errors; the madvise errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::RegionAdvice;
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-madvise")?;
    /// r.madvise(4096, 8192, RegionAdvice::WillNeed)?;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn madvise(&self, offset: usize, size: usize, advice: RegionAdvice) -> Result<()> {
        self.check_pages(offset, size)?;
        // SAFETY: RegionAdvice holds only advice that changes no contents.
        unsafe { rustix::mm::madvise(self.base.as_ptr().add(offset).cast(), size, advice.raw()) }
            .map_err(|e| RegionError::sys(format!("madvise({advice:?})"), e))
    }

    /// `madvise` with advice that discards contents.
    ///
    /// # Errors
    ///
    /// Bounds, alignment and header errors; the madvise errno.
    ///
    /// # Safety
    ///
    /// - The range's contents become zero (after `Remove`) for every process
    ///   sharing the region; nobody may rely on them.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::UncheckedAdvice;
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-remove")?;
    /// r.write_at(8192, b"gone")?;
    /// // SAFETY: nobody relies on these bytes.
    /// unsafe { r.madvise_unchecked(8192, 4096, UncheckedAdvice::Remove)? };
    /// let mut b = [1u8; 4];
    /// r.read_at(8192, &mut b)?;
    /// assert_eq!(b, [0; 4]);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub unsafe fn madvise_unchecked(&self, offset: usize, size: usize, advice: UncheckedAdvice) -> Result<()> {
        self.check_data_pages(offset, size)?;
        let raw = match advice {
            UncheckedAdvice::DontNeed => Advice::LinuxDontNeed,
            UncheckedAdvice::Remove => Advice::LinuxRemove,
        };
        // SAFETY: the range is ours and past the header; the caller accepts the
        // loss of its contents.
        unsafe { rustix::mm::madvise(self.base.as_ptr().add(offset).cast(), size, raw) }
            .map_err(|e| RegionError::sys(format!("madvise({advice:?})"), e))
    }

    /// Gives the pages of a range back to the system (punches a hole in the
    /// backing) while the range stays mapped and valid; it reads as zero and is
    /// committed again by [`Region::commit_range`] before reuse.
    ///
    /// # Errors
    ///
    /// Bounds, alignment and header errors; the fallocate errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-release")?;
    /// r.write_at(8192, b"x")?;
    /// r.release_range(8192, 4096)?;
    /// r.commit_range(8192, 4096)?;
    /// let mut b = [1u8; 1];
    /// r.read_at(8192, &mut b)?;
    /// assert_eq!(b, [0]);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn release_range(&self, offset: usize, size: usize) -> Result<()> {
        if !self.writable {
            return Err(RegionError::ReadOnly);
        }
        self.check_data_pages(offset, size)?;
        rustix::fs::fallocate(&self.fd, FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE, offset as u64, size as u64)
            .map_err(|e| RegionError::sys("fallocate (punch hole)", e))
    }

    /// Commits a range again (allocates its pages under the region's placement).
    ///
    /// # Errors
    ///
    /// Bounds and alignment errors; the fallocate errno (`ENOSPC`, `ENOMEM`).
    ///
    /// # Examples
    ///
    /// See [`Region::release_range`].
    pub fn commit_range(&self, offset: usize, size: usize) -> Result<()> {
        if !self.writable {
            return Err(RegionError::ReadOnly);
        }
        self.check_pages(offset, size)?;
        if self.page_size.is_hugetlb() {
            // SAFETY: populating our own range changes no contents.
            return unsafe { rustix::mm::madvise(self.base.as_ptr().add(offset).cast(), size, Advice::LinuxPopulateWrite) }
                .map_err(|e| RegionError::sys("madvise(MADV_POPULATE_WRITE)", e));
        }
        rustix::fs::fallocate(&self.fd, FallocateFlags::KEEP_SIZE, offset as u64, size as u64)
            .map_err(|e| RegionError::sys("fallocate (commit)", e))
    }

    /// Binds `[offset, offset+size)` to a placement of its own (e.g. an extent
    /// on another node), before its pages are touched.
    ///
    /// # Errors
    ///
    /// Unknown or memoryless nodes, bounds and alignment errors, the mbind errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement, RegionOptions, Topology};
    /// let r = RegionOptions::new(1 << 20).commit(false).create_anonymous("doc-place")?;
    /// let node = Topology::get()?.nodes()[0].os_index;
    /// r.place_range(1 << 19, 1 << 19, Placement::new(NodeSet::single(node), MemPolicy::Bind))?;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    ///
    /// A region whose whole reservation is mapped up front (base pages and THP)
    /// can also place a range beyond its current length, before growing into it,
    /// so that the growth commits the pages on the right node.
    pub fn place_range(&self, offset: usize, size: usize, placement: Placement) -> Result<()> {
        let limit = if self.maps_ahead() { self.reserved } else { self.len() };
        match offset.checked_add(size) {
            Some(end) if end <= limit => {}
            _ => return Err(RegionError::OutOfBounds { offset, len: size, size: limit }),
        }
        let align = self.page_size.bytes();
        if offset % align != 0 || size % align != 0 || size == 0 {
            return Err(RegionError::Misaligned { offset, len: size, align });
        }
        placement.validate()?;
        // SAFETY: our own mapped range; no MPOL_MF_MOVE, so only future faults change.
        unsafe { sys::mbind(self.base.as_ptr().add(offset), size, placement.policy().mode(), placement.nodes().words(), 0) }
            .map_err(|e| RegionError::sys("mbind", e))
    }

    /// Moves the pages of `[offset, offset+size)` that are already present to
    /// `placement` (`mbind` with `MPOL_MF_MOVE | MPOL_MF_STRICT`) and sets the
    /// policy for future faults. Only pages mapped by this process alone move
    /// (moving pages other processes map needs `CAP_SYS_NICE`); `EIO` means some
    /// page could not be moved.
    ///
    /// # Errors
    ///
    /// Unknown or memoryless nodes, bounds and alignment errors, the mbind errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement, RegionOptions, Topology};
    /// let r = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-migrate")?;
    /// let node = Topology::get()?.nodes()[0].os_index;
    /// r.migrate_range(4096, (1 << 20) - 4096, Placement::new(NodeSet::single(node), MemPolicy::Bind))?;
    /// assert_eq!(r.pages_per_node(4096, (1 << 20) - 4096)?.on_node(node), 255);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn migrate_range(&self, offset: usize, size: usize, placement: Placement) -> Result<()> {
        self.check_pages(offset, size)?;
        placement.validate()?;
        let flags = sys::MPOL_MF_MOVE | sys::MPOL_MF_STRICT;
        // SAFETY: our own mapped range; migration keeps contents and addresses.
        unsafe { sys::mbind(self.base.as_ptr().add(offset), size, placement.policy().mode(), placement.nodes().words(), flags) }
            .map_err(|e| RegionError::sys("mbind (MPOL_MF_MOVE|MPOL_MF_STRICT)", e))
    }

    /// Counts the pages of `[offset, offset+size)` per NUMA node, as the kernel
    /// reports them now (`move_pages` with no target nodes). Pages this process
    /// has not faulted in are counted as not present.
    ///
    /// # Errors
    ///
    /// Bounds errors; the move_pages errno.
    ///
    /// # Examples
    ///
    /// See [`NodePages`].
    pub fn pages_per_node(&self, offset: usize, size: usize) -> Result<NodePages> {
        self.check_range(offset, size)?;
        let page = self.query_granule();
        let start = offset - offset % page;
        let end = (offset + size).next_multiple_of(page).min(self.len());
        let mut counts: Vec<(u32, usize)> = Vec::new();
        let mut not_present = 0;
        const CHUNK: usize = 4096;
        let mut addrs = Vec::with_capacity(CHUNK);
        let mut status = vec![0i32; CHUNK];
        let mut at = start;
        while at < end {
            addrs.clear();
            while at < end && addrs.len() < CHUNK {
                addrs.push(self.base.as_ptr() as usize + at);
                at += page;
            }
            let st = &mut status[..addrs.len()];
            sys::query_pages(&addrs, st).map_err(|e| RegionError::sys("move_pages (query)", e))?;
            for &s in st.iter() {
                if s < 0 {
                    not_present += 1;
                } else {
                    match counts.iter_mut().find(|(n, _)| *n == s as u32) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((s as u32, 1)),
                    }
                }
            }
        }
        counts.sort_unstable();
        Ok(NodePages { per_node: counts, not_present, page_size: page })
    }

    /// Counts the pages of the whole region per NUMA node without allocating
    /// anything: pages resident in the backing (`mincore`) are mapped read-only
    /// into this process (`MADV_POPULATE_READ`) and then counted; holes stay
    /// holes. This is how an observer (e.g. `numashm inspect`) measures a region
    /// that other processes use, without disturbing it.
    ///
    /// # Errors
    ///
    /// The mincore, madvise or move_pages errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-resident")?;
    /// let observer = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
    /// // The observer has mapped only the header (and the kernel's fault-around) so far.
    /// assert!(observer.pages_per_node(0, observer.len())?.present() < 256);
    /// assert_eq!(observer.resident_pages_per_node()?.present(), 256);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn resident_pages_per_node(&self) -> Result<NodePages> {
        let len = self.len();
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: our own page-aligned mapping of `len` bytes; one byte per page.
        unsafe { sys::resident(self.base.as_ptr(), len, &mut vec) }.map_err(|e| RegionError::sys("mincore", e))?;
        let mut page = 0;
        while page < vec.len() {
            if vec[page] & 1 == 0 {
                page += 1;
                continue;
            }
            let start = page;
            while page < vec.len() && vec[page] & 1 != 0 {
                page += 1;
            }
            // SAFETY: populating (read) resident pages of our own mapping maps
            // them without changing or allocating anything.
            unsafe {
                rustix::mm::madvise(self.base.as_ptr().add(start * 4096).cast(), (page - start) * 4096, Advice::LinuxPopulateRead)
            }
            .map_err(|e| RegionError::sys("madvise(MADV_POPULATE_READ)", e))?;
        }
        self.pages_per_node(0, len)
    }

    /// The node of the page at `offset`, faulting it in if needed
    /// (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`): a second opinion to
    /// [`Region::pages_per_node`].
    ///
    /// # Errors
    ///
    /// Bounds errors; the get_mempolicy errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-nodeof")?;
    /// let node = r.node_of(8192)?;
    /// assert!(numashm_region::Topology::get()?.node(node).is_some());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn node_of(&self, offset: usize) -> Result<u32> {
        self.check_range(offset, 1)?;
        // SAFETY: the address is inside our mapped, readable range.
        unsafe { sys::node_of_address(self.base.as_ptr().add(offset)) }.map_err(|e| RegionError::sys("get_mempolicy", e))
    }

    /// Checks, page by page, that every page this process has faulted in lies
    /// on a node of the region's placement. Returns the counts.
    ///
    /// # Errors
    ///
    /// [`RegionError::Misplaced`] naming the first page off its node.
    ///
    /// # Examples
    ///
    /// See [`RegionOptions`].
    pub fn verify_placement(&self) -> Result<NodePages> {
        let pages = self.pages_per_node(0, self.len())?;
        if let Some(p) = &self.placement {
            if let Some(&(found, _)) = pages.per_node.iter().find(|(n, _)| !p.nodes().contains(*n)) {
                // Find the first offending page for the report.
                let offset = self.first_page_on(found)?.unwrap_or(0);
                return Err(RegionError::Misplaced { offset, found, expected: p.nodes().iter().collect() });
            }
        }
        Ok(pages)
    }

    /// The unit placement is counted in: the hugetlb page, else the base page
    /// (a THP region may mix huge and base pages).
    fn query_granule(&self) -> usize {
        if self.page_size.is_hugetlb() {
            self.page_size.bytes()
        } else {
            4096
        }
    }

    fn first_page_on(&self, node: u32) -> Result<Option<usize>> {
        let page = self.query_granule();
        let mut status = [0i32; 1];
        for off in (0..self.len()).step_by(page) {
            sys::query_pages(&[self.base.as_ptr() as usize + off], &mut status)
                .map_err(|e| RegionError::sys("move_pages (query)", e))?;
            if status[0] == node as i32 {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }

    /// The kernel page size backing the mapping and the bytes of it mapped
    /// with huge PMDs (THP), read from `/proc/self/smaps`.
    ///
    /// # Errors
    ///
    /// I/O errors reading smaps, or the mapping not found there.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).populate(true).create_anonymous("doc-smaps")?;
    /// let (kernel_page, _thp_bytes) = r.kernel_page_size()?;
    /// assert_eq!(kernel_page, 4096);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn kernel_page_size(&self) -> Result<(usize, usize)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| {
            RegionError::sys("read /proc/self/smaps", Errno::from_io_error(&e).unwrap_or(Errno::IO))
        })?;
        let base = self.base.as_ptr() as usize;
        let mut in_ours = false;
        let mut kernel_page = None;
        let mut pmd = 0usize;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, _hi)) = range.split_once('-') {
                    if let Ok(lo) = usize::from_str_radix(lo, 16) {
                        if range.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                            in_ours = lo >= base && lo < base + self.len();
                            continue;
                        }
                    }
                }
            }
            if !in_ours {
                continue;
            }
            let mut parts = line.split_whitespace();
            let key = parts.next().unwrap_or("");
            let kib: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match key {
                "KernelPageSize:" => kernel_page = kernel_page.or(Some(kib * 1024)),
                "ShmemPmdMapped:" | "FilePmdMapped:" => pmd += kib * 1024,
                _ => {}
            }
        }
        kernel_page
            .map(|k| (k, pmd))
            .ok_or_else(|| RegionError::invalid("mapping", "not found in /proc/self/smaps"))
    }

    /// Checks that the backing still holds every mapped byte. A named file can be
    /// truncated by anyone with write access to it (memfds cannot: they are
    /// sealed); touching a mapped page past the file's new end raises SIGBUS.
    /// `read_at`/`write_at` check only the mapped length, so a host sharing a
    /// named file with untrusted peers calls this periodically (the facade's
    /// `Segment::service` does) and stops using the region when it fails.
    ///
    /// # Errors
    ///
    /// [`RegionError::Corrupt`] (`field: "file size"`) when the backing is
    /// shorter than the mapping; the fstat errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("numashm-doc-backing-{}", std::process::id()));
    /// let r = numashm_region::RegionOptions::new(1 << 20).create_file(&path)?;
    /// r.verify_backing()?;
    /// std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
    /// assert!(r.verify_backing().is_err());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn verify_backing(&self) -> Result<()> {
        let file_len = rustix::fs::fstat(&self.fd).map_err(|e| RegionError::sys("fstat", e))?.st_size as u64;
        let mapped = self.len() as u64;
        if file_len < mapped {
            return Err(RegionError::corrupt(
                "file size",
                format!("the backing holds {file_len:#x} bytes but {mapped:#x} are mapped: it was truncated by another process"),
            ));
        }
        Ok(())
    }

    /// Seals the memfd against growth too (`F_SEAL_GROW`), when growth is over.
    ///
    /// # Errors
    ///
    /// The fcntl errno (`EINVAL` for a named file, which cannot be sealed).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-seal")?;
    /// r.seal_growth()?;
    /// assert!(r.resize(128 << 10).is_err());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn seal_growth(&self) -> Result<()> {
        rustix::fs::fcntl_add_seals(&self.fd, SealFlags::GROW)
            .map_err(|e| RegionError::sys(Cow::Borrowed("fcntl(F_ADD_SEALS, F_SEAL_GROW)"), e))
    }
}

impl AsFd for Region {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

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
