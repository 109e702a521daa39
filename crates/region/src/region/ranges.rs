//! Byte ranges of a region: bounds checks, copying in and out
//! ([`Region::read_at`], [`Region::write_at`]), mapping another fd over a
//! range, and `msync`.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

use rustix::mm::{MapFlags, ProtFlags};

use super::Region;
use crate::error::{RegionError, Result};
use crate::header::HEADER_LEN;

/// Memory protection for [`Region::add_fd_mapping`] and [`FdMapping`](super::FdMapping).
/// Every protection includes read: write or execute without read is still
/// readable on x86 and arm64, so this type does not pretend otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
    /// Read and execute.
    ReadExec,
    /// Read, write and execute.
    ReadWriteExec,
}

impl Protection {
    pub(super) fn flags(self) -> ProtFlags {
        match self {
            Protection::Read => ProtFlags::READ,
            Protection::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
            Protection::ReadExec => ProtFlags::READ | ProtFlags::EXEC,
            Protection::ReadWriteExec => ProtFlags::READ | ProtFlags::WRITE | ProtFlags::EXEC,
        }
    }

    /// Whether writes are allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_region::Protection::ReadWrite.is_writable());
    /// assert!(!numashm_region::Protection::ReadExec.is_writable());
    /// ```
    pub fn is_writable(self) -> bool {
        matches!(self, Protection::ReadWrite | Protection::ReadWriteExec)
    }
}

impl Region {
    pub(super) fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        let size = self.len();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(RegionError::OutOfBounds { offset, len, size }),
        }
    }

    pub(super) fn check_pages(&self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        let align = self.page_size.bytes();
        if offset % align != 0 || len % align != 0 || len == 0 {
            return Err(RegionError::Misaligned { offset, len, align });
        }
        Ok(())
    }

    pub(super) fn check_data_pages(&self, offset: usize, len: usize) -> Result<()> {
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
}
