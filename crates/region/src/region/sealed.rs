//! Sealed single-writer pools, owner side: a memfd that only its creator maps
//! writable. The creator maps the whole reservation writable, then seals
//! `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL`: from then on the kernel
//! refuses every new write route to the object (write(2), writable shared
//! mmap, mprotect to writable, hole punching, shrinking, changing the seals),
//! while the creator keeps writing through the mapping it already has and grows
//! the object with ftruncate inside that mapping.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::SealFlags;
use rustix::io::Errno;

use super::{Backing, Region, RegionOptions, SharedObject, MAX_POOL_LEN};
use crate::error::{RegionError, Result};
use crate::policy::PageSize;

/// The seals every pool carries; a reader refuses an object missing any of them.
pub(super) const POOL_SEALS: [(SealFlags, &str); 3] = [
    (SealFlags::FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
    (SealFlags::SHRINK, "F_SEAL_SHRINK"),
    (SealFlags::SEAL, "F_SEAL_SEAL"),
];

/// Adds the pool seals to a memfd whose one writable mapping exists already.
pub(super) fn seal_pool(fd: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|e| {
        RegionError::sys(
            "fcntl(F_ADD_SEALS, F_SEAL_FUTURE_WRITE|F_SEAL_SHRINK|F_SEAL_SEAL)",
            e,
        )
    })
}

impl RegionOptions {
    /// Creates a **sealed single-writer pool**: a memfd (`MFD_ALLOW_SEALING |
    /// MFD_CLOEXEC`) whose whole reservation ([`RegionOptions::max_len`]) this
    /// process maps writable, placed with `mbind` over the whole reservation
    /// before first touch, committed as the options say, then sealed
    /// `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL` before the header is
    /// written. Other processes attach with [`Region::attach_pool_fd`] or
    /// [`Region::attach_pool_of`] and can only read; this region keeps writing
    /// and grows with [`Region::resize`] (ftruncate inside the existing
    /// mapping, no new mmap).
    ///
    /// hugetlb pages cannot back a pool: a writable hugetlbfs mapping extends
    /// the file to its end at mmap time, so the file size would no longer tell
    /// readers which pages exist (a reader's fault on a hole would allocate a
    /// huge page, and SIGBUS when none is free). With
    /// [`RegionOptions::fallback`] a hugetlb request degrades to THP (then base
    /// pages); without it, it is an error.
    ///
    /// # Errors
    ///
    /// Those of [`RegionOptions::create_anonymous`];
    /// [`RegionError::Unavailable`] for hugetlb pages without fallback;
    /// [`RegionError::TooLarge`] when `max_len` exceeds [`MAX_POOL_LEN`]
    /// (readers would refuse the pool).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{RegionOptions, SealFlags};
    /// let pool = RegionOptions::new(1 << 20).max_len(8 << 20).create_sealed("doc-pool")?;
    /// assert!(pool.is_sealed_pool());
    /// assert!(pool.seals()?.contains(SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::SEAL));
    /// pool.write_at(pool.data_offset(), b"still writable here")?;
    /// pool.resize(2 << 20)?;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn create_sealed(&self, name: &str) -> Result<Region> {
        let mut options = self.clone();
        if options.cache.page_size.is_hugetlb() {
            if !options.fallback {
                return Err(RegionError::Unavailable {
                    what: "hugetlb pages for a sealed pool",
                    hint: "a writable hugetlbfs mapping sets the file size to its end, so readers could not bound what exists: use PageSize::Thp or Base, or .fallback(true)".into(),
                });
            }
            options.cache.page_size = PageSize::Thp;
        }
        let cache = options.resolve_cache()?;
        let (_, max_len) = options.check_len(cache.page_size)?;
        if max_len > MAX_POOL_LEN {
            return Err(RegionError::TooLarge {
                requested: max_len,
                max: MAX_POOL_LEN,
            });
        }
        let object = SharedObject::new_with(name, cache.page_size)?;
        options.init(object.fd, Backing::Memfd, cache, true)
    }
}

impl Region {
    /// Whether this is a sealed single-writer pool: created with
    /// [`RegionOptions::create_sealed`] (the writer) or attached with
    /// [`Region::attach_pool_fd`] / [`Region::attach_pool_of`] (a reader).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::RegionOptions;
    /// assert!(RegionOptions::new(1 << 20).max_len(4 << 20).create_sealed("doc-is")?.is_sealed_pool());
    /// assert!(!RegionOptions::new(1 << 20).create_anonymous("doc-isnt")?.is_sealed_pool());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn is_sealed_pool(&self) -> bool {
        self.sealed_pool
    }

    /// The seals of the backing object as the kernel reports them now
    /// (`F_GET_SEALS`).
    ///
    /// # Errors
    ///
    /// The fcntl errno: `EINVAL` for a named file on a filesystem without seals.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{RegionOptions, SealFlags};
    /// let r = RegionOptions::new(1 << 20).create_anonymous("doc-seals")?;
    /// assert_eq!(r.seals()?, SealFlags::SHRINK);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn seals(&self) -> Result<SealFlags> {
        rustix::fs::fcntl_get_seals(self.fd.as_fd())
            .map_err(|e| RegionError::sys("fcntl(F_GET_SEALS)", e))
    }

    /// Grows the backing to at least `len` bytes and never shrinks it: another
    /// process holding the fd writable may have grown it past `len` already
    /// (a memfd sealed against shrinking would then refuse our ftruncate).
    pub(super) fn grow_file_to(&self, len: usize) -> Result<()> {
        let size = || -> Result<u64> {
            Ok(rustix::fs::fstat(&self.fd)
                .map_err(|e| RegionError::sys("fstat", e))?
                .st_size as u64)
        };
        if size()? >= len as u64 {
            return Ok(());
        }
        match rustix::fs::ftruncate(&self.fd, len as u64) {
            Ok(()) => Ok(()),
            // Grown past `len` by someone else between fstat and ftruncate.
            Err(Errno::PERM) if size()? >= len as u64 => Ok(()),
            Err(e) => Err(RegionError::sys("ftruncate (grow)", e)),
        }
    }
}
