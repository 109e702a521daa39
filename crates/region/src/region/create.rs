//! Creating a region: a named file or a memfd, sized, reserved, placed,
//! committed and given its header before any other process can see it.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::mm::ProtFlags;

use super::mapping::reserve;
use super::{sealed, Backing, Region, RegionOptions, SharedObject, HUGETLBFS_MAGIC};
use crate::error::{RegionError, Result};
use crate::header::{immutable_checksum, RegionHeader, HEADER_LEN, REGION_MAGIC, REGION_VERSION};
use crate::policy::{CachePolicy, FLAG_COMMIT};
use crate::loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

impl RegionOptions {
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

    /// Sets up a fresh, empty backing `fd`: size, reservation, placement, cache
    /// policy, commit, header. Runs before any other process can see the memory.
    ///
    /// With `pool`, the object is sealed `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK |
    /// F_SEAL_SEAL` right after the one writable mapping of the whole
    /// reservation is made, before placement, commit and header.
    pub(super) fn init(&self, fd: OwnedFd, backing: Backing, mut cache: CachePolicy, pool: bool) -> Result<Region> {
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

impl Region {
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
            descriptor_at: AtomicU64::new(0),
            reserved: [0; 3].map(AtomicU64::new),
        };
        // SAFETY: the first page is mapped read-write, aligned, and not yet visible
        // to any other process; `ptr::write` initialises the atomics in place.
        unsafe { std::ptr::write(self.base.as_ptr() as *mut RegionHeader, header) };
        // SYNC region-init: Release publishes every field above before the magic.
        self.header().magic.store(REGION_MAGIC, Ordering::Release);
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

pub(super) fn open_error(what: &str, path: &Path, e: Errno) -> RegionError {
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
