//! What the kernel does with a range's memory: `madvise` (safe and
//! content-changing advice), giving pages back and committing them.
#![allow(unsafe_code)]

use rustix::fs::FallocateFlags;
use rustix::mm::Advice;

use super::Region;
use crate::error::{RegionError, Result};

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

impl Region {
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
}
