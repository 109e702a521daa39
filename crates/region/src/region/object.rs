//! [`SharedObject`]: an anonymous memfd whose first map sizes it and whose
//! later maps attach to it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use super::grow::FlockGuard;
use super::{AttachOptions, Backing, Region, RegionOptions};
use crate::error::{RegionError, Result};
use crate::policy::{CachePolicy, PageSize};

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
    pub(super) fd: OwnedFd,
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

    pub(super) fn new_with(name: &str, page_size: PageSize) -> Result<Self> {
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

    pub(super) fn map_resolved(self, options: &RegionOptions, cache: CachePolicy) -> Result<Region> {
        options.init(self.fd, Backing::Memfd, cache, false)
    }
}

impl AsFd for SharedObject {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
