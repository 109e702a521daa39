//! Sealable memfds of a given size and their seals: [`SharedObject::with_len`],
//! [`add_seals`], [`seals_of`]. Sealing is what lets another process rely on
//! an object it did not make (no shrinking under its mappings: no SIGBUS).

use std::os::fd::BorrowedFd;

use super::SharedObject;
use crate::error::{RegionError, Result, SealFlags};

impl SharedObject {
    /// A new memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`, base pages) of exactly
    /// `len` bytes of zeroes, unsealed: seal it with [`add_seals`]. Unlike
    /// [`SharedObject::new`] it holds no region header: map it with
    /// [`FdMapping`](super::FdMapping) or over a region's range with
    /// [`Region::add_fd_mapping`](super::Region::add_fd_mapping).
    ///
    /// # Errors
    ///
    /// [`RegionError::InvalidArgument`] for `len == 0`; the `memfd_create` or
    /// `ftruncate` errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{add_seals, seals_of, SealFlags, SharedObject};
    /// let o = SharedObject::with_len("doc-with-len", 8192)?;
    /// assert_eq!(std::fs::File::from(o.as_fd().try_clone_to_owned().unwrap()).metadata().unwrap().len(), 8192);
    /// add_seals(o.as_fd(), SealFlags::SHRINK | SealFlags::GROW)?;
    /// assert!(seals_of(o.as_fd())?.contains(SealFlags::SHRINK | SealFlags::GROW));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    #[doc(alias = "memfd_create")]
    pub fn with_len(name: &str, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(RegionError::invalid("len", "an object holds at least one byte"));
        }
        let object = SharedObject::new(name)?;
        rustix::fs::ftruncate(&object.fd, len as u64).map_err(|e| RegionError::sys("ftruncate", e))?;
        Ok(object)
    }
}

/// Adds `seals` to the memfd `fd` (`F_ADD_SEALS`); seals already present are fine.
///
/// # Errors
///
/// The fcntl errno: `EINVAL` when `fd` is not shmem (no seals at all),
/// `EPERM` when sealing is closed (`F_SEAL_SEAL`) or, for
/// `F_SEAL_WRITE`, a writable mapping exists; `EBUSY` likewise.
///
/// # Examples
///
/// See [`SharedObject::with_len`].
pub fn add_seals(fd: BorrowedFd<'_>, seals: SealFlags) -> Result<()> {
    rustix::fs::fcntl_add_seals(fd, seals).map_err(|e| RegionError::sys("fcntl(F_ADD_SEALS)", e))
}

/// The seals of `fd` as the kernel reports them now (`F_GET_SEALS`).
///
/// # Errors
///
/// The fcntl errno: `EINVAL` when `fd` is not shmem.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// let o = numashm_region::SharedObject::with_len("doc-seals-of", 4096)?;
/// assert!(numashm_region::seals_of(o.as_fd())?.is_empty());
/// let file = std::fs::File::open("/proc/self/exe").unwrap();
/// assert!(numashm_region::seals_of(file.as_fd()).is_err()); // not shmem
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
pub fn seals_of(fd: BorrowedFd<'_>) -> Result<SealFlags> {
    rustix::fs::fcntl_get_seals(fd).map_err(|e| RegionError::sys("fcntl(F_GET_SEALS)", e))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::error::Errno;

    #[test]
    #[cfg_attr(miri, ignore)]
    fn with_len_sizes_the_object_and_refuses_zero() {
        let o = SharedObject::with_len("t-len", 12288).unwrap();
        assert_eq!(rustix::fs::fstat(o.as_fd()).unwrap().st_size, 12288);
        assert!(matches!(SharedObject::with_len("t-zero", 0), Err(RegionError::InvalidArgument { what: "len", .. })));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn seals_are_added_and_enforced_and_sealing_can_be_closed() {
        let o = SharedObject::with_len("t-seal", 4096).unwrap();
        add_seals(o.as_fd(), SealFlags::SHRINK).unwrap();
        add_seals(o.as_fd(), SealFlags::SHRINK).unwrap(); // idempotent
        assert_eq!(rustix::fs::ftruncate(o.as_fd(), 0), Err(Errno::PERM));
        add_seals(o.as_fd(), SealFlags::SEAL).unwrap();
        assert_eq!(add_seals(o.as_fd(), SealFlags::GROW).unwrap_err().errno(), Some(Errno::PERM));
        assert_eq!(seals_of(o.as_fd()).unwrap(), SealFlags::SHRINK | SealFlags::SEAL);
    }
}
