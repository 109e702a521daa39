//! Attaching to a region another process created: by path or by fd, the
//! header read through a temporary mapping and checked like hostile input.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::create::open_error;
use super::mapping::reserve;
use super::{Backing, Region, HUGETLBFS_MAGIC, MAX_POOL_LEN};
use crate::error::{RegionError, Result};
use crate::header::{parse_header, RegionHeader, HEADER_LEN};
use crate::policy::CachePolicy;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::topology::Topology;

/// Options for attaching to an existing region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachOptions {
    /// Map read-only (the file may be opened read-only).
    pub read_only: bool,
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
    pub(super) fn attach_inner(fd: OwnedFd, options: AttachOptions, pool: bool) -> Result<Region> {
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
}
