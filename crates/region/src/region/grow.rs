//! Growth in place: the owner's [`Region::resize`], a guest's
//! [`Region::check_and_remap`], and the checks and seals around the backing's
//! length.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FallocateFlags, FlockOperation, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::Region;
use crate::error::{RegionError, Result};
use crate::loom::sync::atomic::Ordering;

/// `flock` held for the scope: serialises first-map and growth across processes.
pub(super) struct FlockGuard<'a>(BorrowedFd<'a>);

impl<'a> FlockGuard<'a> {
    pub(super) fn exclusive(fd: BorrowedFd<'a>) -> Result<Self> {
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
