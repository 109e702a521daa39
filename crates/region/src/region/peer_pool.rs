//! Sealed single-writer pools, reader side: map another process's pool
//! read-only, after checking that the kernel enforces its single writer.
//!
//! A reader trusts nothing the owner wrote: the header is validated, the
//! reservation is bounded by [`MAX_POOL_LEN`], and the readable length never
//! exceeds the object's real size (fstat), which `F_SEAL_SHRINK` keeps from
//! ever going down; so every byte below [`Region::len`] stays readable without
//! SIGBUS for the attachment's whole life.

use std::os::fd::OwnedFd;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::sealed::POOL_SEALS;
use super::{AttachOptions, Region};
use crate::error::{RegionError, Result};

/// Largest `max_len` a pool may have (1 TiB). A reader reserves the owner's
/// `max_len` as address space (PROT_READ, no memory), so the bound keeps a
/// hostile owner from exhausting a reader's address space with one pool;
/// [`crate::RegionOptions::create_sealed`] refuses larger pools up front.
///
/// # Examples
///
/// ```
/// use numashm_region::{RegionError, RegionOptions, MAX_POOL_LEN};
/// let err = RegionOptions::new(1 << 20).max_len(2 * MAX_POOL_LEN).create_sealed("doc-max-pool").unwrap_err();
/// assert!(matches!(err, RegionError::TooLarge { max: MAX_POOL_LEN, .. }));
/// ```
pub const MAX_POOL_LEN: usize = 1 << 40;

/// `TMPFS_MAGIC`: memfds (without hugetlb) live on the kernel's internal shmem mount.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `PROC_SUPER_MAGIC`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The filesystem magic of a statfs result.
#[allow(clippy::unnecessary_cast)] // `f_type`'s integer type differs between targets.
fn fs_magic(statfs: &rustix::fs::StatFs) -> i64 {
    statfs.f_type as i64
}

/// Checks that `fd` is a memfd sealed `F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK |
/// F_SEAL_SEAL`. The memfd test is: a regular file on shmem (fstat, fstatfs
/// `TMPFS_MAGIC`) whose seals `F_GET_SEALS` reads. It needs no `/proc`. A tmpfs
/// file opened by path passes the first two, but always carries `F_SEAL_SEAL`
/// and no other seal, so only a memfd created with `MFD_ALLOW_SEALING` and
/// sealed by its creator gets through the seal check.
fn check_pool_fd(fd: &OwnedFd) -> Result<()> {
    let stat = rustix::fs::fstat(fd).map_err(|e| RegionError::sys("fstat", e))?;
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(RegionError::NotMemfd {
            detail: format!("the fd is a {file_type:?}, not a regular shmem file"),
        });
    }
    let statfs = rustix::fs::fstatfs(fd).map_err(|e| RegionError::sys("fstatfs", e))?;
    if fs_magic(&statfs) != TMPFS_MAGIC {
        return Err(RegionError::NotMemfd {
            detail: format!(
                "the file is on a filesystem of type {:#x}, not shmem (memfd)",
                fs_magic(&statfs)
            ),
        });
    }
    let present = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        Err(Errno::INVAL) => {
            return Err(RegionError::NotMemfd {
                detail: "F_GET_SEALS is refused (EINVAL): not a sealable memfd".into(),
            })
        }
        Err(e) => return Err(RegionError::sys("fcntl(F_GET_SEALS)", e)),
    };
    match POOL_SEALS.iter().find(|(flag, _)| !present.contains(*flag)) {
        Some(&(_, missing)) => Err(RegionError::MissingSeal { missing, present }),
        None => Ok(()),
    }
}

impl Region {
    /// Attaches to another process's sealed pool through its fd, read-only.
    ///
    /// Checks that `fd` is a memfd sealed `F_SEAL_FUTURE_WRITE |
    /// F_SEAL_SHRINK | F_SEAL_SEAL` (see [`RegionOptions::create_sealed`]), so
    /// that the kernel refuses this process (and every other one but the
    /// owner, through the mapping it made before sealing) every way to write
    /// the pool. Then maps the pool `PROT_READ`, `MAP_SHARED`, reserving the
    /// header's `max_len` (at most [`MAX_POOL_LEN`]) so the base never moves.
    /// [`Region::len`] never exceeds the object's real size, whatever the
    /// owner writes into the header.
    ///
    /// `options.read_only` must be `true`: a pool is never mapped writable by
    /// a reader (the kernel would refuse it anyway).
    ///
    /// [`RegionOptions::create_sealed`]: crate::RegionOptions::create_sealed
    ///
    /// # Errors
    ///
    /// [`RegionError::InvalidArgument`] (`options.read_only`) for a writable
    /// request, [`RegionError::NotMemfd`], [`RegionError::MissingSeal`] naming
    /// the first missing seal, [`RegionError::Corrupt`] for a bad header or a
    /// `max_len` above [`MAX_POOL_LEN`], [`RegionError::NotInitialized`], and
    /// syscall errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{AttachOptions, Region, RegionOptions};
    /// let owner = RegionOptions::new(1 << 20).max_len(4 << 20).create_sealed("doc-attach-pool")?;
    /// owner.write_at(owner.data_offset(), b"hi")?;
    /// let fd = owner.as_fd().try_clone_to_owned().unwrap();
    /// let reader = Region::attach_pool_fd(fd, AttachOptions { read_only: true })?;
    /// let mut buf = [0u8; 2];
    /// reader.read_at(reader.data_offset(), &mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// assert!(!reader.is_writable() && reader.is_sealed_pool());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_pool_fd(fd: OwnedFd, options: AttachOptions) -> Result<Region> {
        if !options.read_only {
            return Err(RegionError::invalid(
                "options.read_only",
                "a peer's pool is only ever mapped read-only: pass AttachOptions { read_only: true }",
            ));
        }
        check_pool_fd(&fd)?;
        Self::attach_inner(fd, options, true)
    }

    /// Attaches to the sealed pool that process `pid` holds as its fd
    /// `fd_number`, by opening `/proc/<pid>/fd/<fd_number>` `O_RDONLY |
    /// O_CLOEXEC`, then as [`Region::attach_pool_fd`].
    ///
    /// Needs: `/proc` mounted (procfs); `pid` in this process's pid namespace
    /// (the number is looked up in our `/proc`); and `PTRACE_MODE_READ` access
    /// to the peer, which the kernel grants to the same user when the peer is
    /// dumpable, or to a holder of `CAP_SYS_PTRACE`, and which Yama or another
    /// LSM may narrow. Passing the fd over a Unix socket
    /// ([`Region::attach_pool_fd`]) needs none of this.
    ///
    /// # Errors
    ///
    /// [`RegionError::ProcUnavailable`] when `/proc` is not procfs,
    /// [`RegionError::PeerNotFound`] (no such process or fd: ENOENT, ESRCH),
    /// [`RegionError::PeerAccessDenied`] (EACCES, EPERM),
    /// [`RegionError::InvalidArgument`] for a negative fd number, and every
    /// error of [`Region::attach_pool_fd`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::{AsFd, AsRawFd};
    /// use numashm_region::{AttachOptions, Region, RegionError, RegionOptions};
    /// let owner = RegionOptions::new(1 << 20).max_len(4 << 20).create_sealed("doc-pool-of")?;
    /// let me = std::process::id();
    /// let reader = Region::attach_pool_of(me, owner.as_fd().as_raw_fd(), AttachOptions { read_only: true })?;
    /// assert_eq!(reader.len(), owner.len());
    /// let err = Region::attach_pool_of(me, 1 << 30, AttachOptions { read_only: true }).unwrap_err();
    /// assert!(matches!(err, RegionError::PeerNotFound { .. }));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn attach_pool_of(pid: u32, fd_number: i32, options: AttachOptions) -> Result<Region> {
        if fd_number < 0 {
            return Err(RegionError::invalid(
                "fd_number",
                format!("{fd_number} is negative"),
            ));
        }
        match rustix::fs::statfs("/proc") {
            Ok(s) if fs_magic(&s) == PROC_SUPER_MAGIC => {}
            Ok(s) => {
                return Err(RegionError::ProcUnavailable {
                    detail: format!(
                        "/proc is a filesystem of type {:#x}, not procfs",
                        fs_magic(&s)
                    ),
                })
            }
            Err(e) => {
                return Err(RegionError::ProcUnavailable {
                    detail: format!("statfs /proc: {e}"),
                })
            }
        }
        let path = format!("/proc/{pid}/fd/{fd_number}");
        // The magic link must be followed: it is how /proc reopens the peer's object.
        let fd = rustix::fs::open(
            path.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOENT | Errno::SRCH => RegionError::PeerNotFound {
                pid,
                fd: fd_number,
                path: path.clone(),
            },
            Errno::ACCESS | Errno::PERM => RegionError::PeerAccessDenied {
                pid,
                fd: fd_number,
                path: path.clone(),
                errno: e,
            },
            // A socket, or another object that cannot be reopened by path.
            Errno::NXIO => RegionError::NotMemfd {
                detail: format!("{path} cannot be opened (ENXIO): not a file"),
            },
            e => RegionError::sys(format!("open {path}"), e),
        })?;
        Self::attach_pool_fd(fd, options)
    }

    /// Whether `[0, end)` lies within the readable length, after noticing
    /// growth: the fast path (`end <= len()`) is one atomic load and no
    /// syscall; otherwise [`Region::check_and_remap`] runs once (an fstat only
    /// when the header announces growth) and the length is compared again. For
    /// a pool reader the length never exceeds the object's real size, so a
    /// `true` answer means every byte below `end` reads without SIGBUS, for the
    /// rest of the attachment. Use it to validate `offset + len` read from
    /// memory another process writes before building a slice.
    ///
    /// A header that fails validation (e.g. claims more than the object holds)
    /// leaves the length as it was, so the answer is then `false` for any
    /// `end` beyond it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{AttachOptions, Region, RegionOptions};
    /// let owner = RegionOptions::new(1 << 20).max_len(4 << 20).create_sealed("doc-len-at-least")?;
    /// let fd = owner.as_fd().try_clone_to_owned().unwrap();
    /// let reader = Region::attach_pool_fd(fd, AttachOptions { read_only: true })?;
    /// assert!(reader.len_at_least(1 << 20));
    /// assert!(!reader.len_at_least((1 << 20) + 1));
    /// owner.resize(2 << 20)?;
    /// assert!(reader.len_at_least(2 << 20));
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    #[inline]
    pub fn len_at_least(&self, end: usize) -> bool {
        if end <= self.len() {
            return true;
        }
        self.check_and_remap().is_ok() && end <= self.len()
    }
}
