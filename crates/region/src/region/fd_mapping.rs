//! Standalone shared mappings of an fd ([`FdMapping`], unmapped on drop), and
//! protection changes of ranges a caller mapped over a region
//! ([`protect_range`], [`revoke_range`]): the mapping calls the ownership layer
//! needs, kept in this crate so that it is the one place that maps memory.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

use super::Protection;
use crate::error::{Errno, RegionError, Result};

fn page() -> usize {
    rustix::param::page_size()
}

/// A shared mapping of `len` bytes of an fd (from offset 0), outside any
/// region; unmapped when dropped.
///
/// Copies in and out are bounds-checked; the memory may be written by other
/// processes at any time, so no reference into it is ever handed out.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use numashm_region::{FdMapping, Protection, SharedObject};
/// let object = SharedObject::with_len("doc-fdmap", 8192)?;
/// let writer = FdMapping::map(object.as_fd(), 8192, Protection::ReadWrite)?;
/// let reader = FdMapping::map(object.as_fd(), 8192, Protection::Read)?;
/// writer.write_at(4096, b"shared")?;
/// let mut buf = [0u8; 6];
/// reader.read_at(4096, &mut buf)?;
/// assert_eq!(&buf, b"shared");
/// assert!(reader.write_at(0, b"x").is_err());
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug)]
pub struct FdMapping {
    ptr: NonNull<u8>,
    len: usize,
    prot: Protection,
}

// SAFETY: `FdMapping` owns its mapping; the raw pointer is only dereferenced in
// bounds-checked copies, which are sound from any thread.
unsafe impl Send for FdMapping {}
// SAFETY: as above: `&self` methods copy bytes and never hand out references.
unsafe impl Sync for FdMapping {}

impl FdMapping {
    /// Maps `len` bytes of `fd` (from offset 0) shared, at an address the
    /// kernel chooses, with `prot`.
    ///
    /// Touching pages past the file's end raises SIGBUS: map only objects that
    /// cannot shrink below `len` (e.g. memfds sealed `F_SEAL_SHRINK`).
    ///
    /// # Errors
    ///
    /// [`RegionError::InvalidArgument`] for `len == 0`; the mmap errno
    /// (`EACCES` when `fd`'s access mode does not allow `prot`).
    ///
    /// # Examples
    ///
    /// See [`FdMapping`].
    #[doc(alias = "mmap")]
    pub fn map(fd: BorrowedFd<'_>, len: usize, prot: Protection) -> Result<FdMapping> {
        Self::map_with(fd, len, prot, None)
    }

    /// Maps `len` bytes of `fd` (from offset 0) shared at exactly `addr`, with
    /// `MAP_FIXED_NOREPLACE`: an address range already in use is an error,
    /// never replaced.
    ///
    /// # Errors
    ///
    /// [`RegionError::Misaligned`] when `addr` is 0 or not page-aligned;
    /// [`RegionError::InvalidArgument`] for `len == 0`; a
    /// [`RegionError::Syscall`] with errno `EEXIST` when the range is taken
    /// (also when a kernel older than 4.17 ignored NOREPLACE and mapped
    /// elsewhere: that mapping is undone); other mmap errnos.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Errno, FdMapping, Protection, SharedObject};
    /// let object = SharedObject::with_len("doc-fdmap-at", 4096)?;
    /// let first = FdMapping::map(object.as_fd(), 4096, Protection::Read)?;
    /// let taken = FdMapping::map_at(object.as_fd(), 4096, Protection::Read, first.addr());
    /// assert_eq!(taken.unwrap_err().errno(), Some(Errno::EXIST));
    /// let addr = first.addr();
    /// first.unmap()?;
    /// assert_eq!(FdMapping::map_at(object.as_fd(), 4096, Protection::Read, addr)?.addr(), addr);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    #[doc(alias = "MAP_FIXED_NOREPLACE")]
    pub fn map_at(fd: BorrowedFd<'_>, len: usize, prot: Protection, addr: usize) -> Result<FdMapping> {
        if addr == 0 || addr % page() != 0 {
            return Err(RegionError::Misaligned { offset: addr, len, align: page() });
        }
        Self::map_with(fd, len, prot, Some(addr))
    }

    fn map_with(fd: BorrowedFd<'_>, len: usize, prot: Protection, at: Option<usize>) -> Result<FdMapping> {
        if len == 0 {
            return Err(RegionError::invalid("len", "a mapping holds at least one byte"));
        }
        let (hint, flags, op) = match at {
            Some(a) => (a, MapFlags::SHARED | MapFlags::FIXED_NOREPLACE, "mmap (MAP_FIXED_NOREPLACE)"),
            None => (0, MapFlags::SHARED, "mmap"),
        };
        // SAFETY: a new shared mapping; without an address the kernel picks a
        // free range, with one FIXED_NOREPLACE refuses (EEXIST) any range in
        // use, so no existing mapping is replaced.
        let ptr = unsafe { rustix::mm::mmap(hint as *mut _, len, prot.flags(), flags, fd, 0) }
            .map_err(|e| RegionError::sys(op, e))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| RegionError::invalid("mmap", "null mapping"))?;
        let mapping = FdMapping { ptr, len, prot };
        if at.is_some_and(|a| a != mapping.addr()) {
            // A kernel older than 4.17 treats NOREPLACE as a hint; dropping
            // `mapping` unmaps what it placed elsewhere.
            return Err(RegionError::sys(op, Errno::EXIST));
        }
        Ok(mapping)
    }

    /// Where the mapping starts in this process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let o = numashm_region::SharedObject::with_len("doc-fdmap-addr", 4096)?;
    /// let m = numashm_region::FdMapping::map(o.as_fd(), 4096, numashm_region::Protection::Read)?;
    /// assert_eq!(m.addr() % 4096, 0);
    /// assert_eq!(m.addr(), m.as_ptr() as usize);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The start of the mapping as a pointer (dereferencing it is the caller's
    /// `unsafe`: other processes may write the memory at any time).
    ///
    /// # Examples
    ///
    /// See [`FdMapping::addr`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Bytes mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let o = numashm_region::SharedObject::with_len("doc-fdmap-len", 8192)?;
    /// let m = numashm_region::FdMapping::map(o.as_fd(), 8192, numashm_region::Protection::Read)?;
    /// assert_eq!(m.len(), 8192);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: [`FdMapping::map`] refuses empty mappings.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let o = numashm_region::SharedObject::with_len("doc-fdmap-empty", 4096)?;
    /// let m = numashm_region::FdMapping::map(o.as_fd(), 4096, numashm_region::Protection::Read)?;
    /// assert!(!m.is_empty());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapping's protection now.
    ///
    /// # Examples
    ///
    /// See [`FdMapping::set_protection`].
    pub fn protection(&self) -> Protection {
        self.prot
    }

    /// Changes the protection of the whole mapping (`mprotect`). Raising it
    /// needs an fd that allows it (a read-only fd, or a memfd sealed
    /// `F_SEAL_FUTURE_WRITE`, refuses write).
    ///
    /// # Errors
    ///
    /// The mprotect errno (`EACCES` when the fd does not allow `prot`); the
    /// protection is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{FdMapping, Protection, SharedObject};
    /// let o = SharedObject::with_len("doc-fdmap-prot", 4096)?;
    /// let mut m = FdMapping::map(o.as_fd(), 4096, Protection::ReadWrite)?;
    /// m.set_protection(Protection::Read)?;
    /// assert_eq!(m.protection(), Protection::Read);
    /// assert!(m.write_at(0, b"x").is_err());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    #[doc(alias = "mprotect")]
    pub fn set_protection(&mut self, prot: Protection) -> Result<()> {
        // SAFETY: the range is exactly our own mapping. `&mut self` excludes the
        // bounds-checked copies meanwhile, and they check `self.prot` afterwards;
        // raw pointers from `as_ptr` are the caller's unsafe.
        unsafe { rustix::mm::mprotect(self.ptr.as_ptr().cast(), self.len, mprotect_flags(prot)) }
            .map_err(|e| RegionError::sys("mprotect", e))?;
        self.prot = prot;
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(RegionError::OutOfBounds { offset, len, size: self.len }),
        }
    }

    /// Copies bytes out of the mapping at `offset`.
    ///
    /// # Errors
    ///
    /// [`RegionError::OutOfBounds`].
    ///
    /// # Examples
    ///
    /// See [`FdMapping`].
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: 1. in bounds of our mapping (checked), readable under every
        // `Protection`; 2. `buf` is a distinct buffer. Other processes may write
        // the bytes meanwhile: we copy raw bytes, no reference escapes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies bytes into the mapping at `offset`.
    ///
    /// # Errors
    ///
    /// [`RegionError::ReadOnly`] when the protection has no write;
    /// [`RegionError::OutOfBounds`].
    ///
    /// # Examples
    ///
    /// See [`FdMapping`].
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        if !self.prot.is_writable() {
            return Err(RegionError::ReadOnly);
        }
        self.check(offset, data.len())?;
        // SAFETY: 1. in bounds of our writable mapping (checked); 2. `data` is distinct.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Unmaps now, reporting the error the drop would ignore.
    ///
    /// # Errors
    ///
    /// The munmap errno.
    ///
    /// # Examples
    ///
    /// See [`FdMapping::map_at`].
    #[doc(alias = "munmap")]
    pub fn unmap(self) -> Result<()> {
        let r = self.release();
        std::mem::forget(self);
        r
    }

    fn release(&self) -> Result<()> {
        // SAFETY: unmaps exactly the mapping `map_with` made, which nothing else
        // owns; `self` is consumed or dropped, so no copy through it follows.
        unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) }.map_err(|e| RegionError::sys("munmap", e))
    }
}

impl Drop for FdMapping {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn mprotect_flags(prot: Protection) -> MprotectFlags {
    MprotectFlags::from_bits_truncate(prot.flags().bits())
}

/// Changes the protection of `[addr, addr+len)` in this process (`mprotect`),
/// e.g. of a range mapped over a region with [`Region::add_fd_mapping`](super::Region::add_fd_mapping)
/// when only its address is at hand.
///
/// # Safety
///
/// - The range is memory this process mapped and the caller owns (no other
///   owner, e.g. another [`FdMapping`] or a [`Region`](super::Region)'s copy methods,
///   relies on the old protection);
/// - nothing accesses the range afterwards in a way `prot` forbids.
///
/// # Errors
///
/// [`RegionError::Misaligned`] when `addr` is not page-aligned or `len` is 0;
/// the mprotect errno (`ENOMEM`: not mapped, `EACCES`: the fd refuses `prot`).
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use numashm_region::{protect_range, Protection, RegionOptions, SharedObject};
/// let region = RegionOptions::new(64 << 10).create_anonymous("doc-protect")?;
/// let object = SharedObject::with_len("doc-protect-obj", 4096)?;
/// // SAFETY: nothing else uses the range; it is read-only from here on.
/// unsafe {
///     region.add_fd_mapping(8192, 4096, object.as_fd(), 0, Protection::ReadWrite)?;
///     protect_range(region.as_ptr().add(8192), 4096, Protection::Read)?;
/// }
/// let mut b = [1u8; 1];
/// region.read_at(8192, &mut b)?;
/// assert_eq!(b, [0]);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[doc(alias = "mprotect")]
pub unsafe fn protect_range(addr: *mut u8, len: usize, prot: Protection) -> Result<()> {
    if addr as usize % page() != 0 || len == 0 {
        return Err(RegionError::Misaligned { offset: addr as usize, len, align: page() });
    }
    // SAFETY: the caller owns the range and upholds the new protection.
    unsafe { rustix::mm::mprotect(addr.cast(), len, mprotect_flags(prot)) }.map_err(|e| RegionError::sys("mprotect", e))
}

/// Replaces `[addr, addr+len)` with an inaccessible reservation (a private
/// `PROT_NONE` anonymous mapping, `MAP_FIXED`): its old contents are gone from
/// this process, and unlike `munmap` no hole is left where another mapping
/// could land inside an owner's reserved range (a [`Region`](super::Region)
/// unmaps its whole reservation on drop).
///
/// # Safety
///
/// - The range is memory this process mapped and the caller owns;
/// - nothing accesses it afterwards (every access faults).
///
/// # Errors
///
/// [`RegionError::Misaligned`] when `addr` is not page-aligned or `len` is 0; the mmap errno.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use numashm_region::{revoke_range, Protection, RegionOptions, SharedObject};
/// let region = RegionOptions::new(64 << 10).create_anonymous("doc-revoke")?;
/// let object = SharedObject::with_len("doc-revoke-obj", 4096)?;
/// // SAFETY: nothing touches the range after the revocation but `remove_mapping`.
/// unsafe {
///     region.add_fd_mapping(8192, 4096, object.as_fd(), 0, Protection::ReadWrite)?;
///     revoke_range(region.as_ptr().add(8192), 4096)?;
/// }
/// region.remove_mapping(8192, 4096)?; // the region's own memory comes back
/// region.write_at(8192, b"back")?;
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
pub unsafe fn revoke_range(addr: *mut u8, len: usize) -> Result<()> {
    if addr as usize % page() != 0 || len == 0 {
        return Err(RegionError::Misaligned { offset: addr as usize, len, align: page() });
    }
    // SAFETY: the caller owns the range and never touches it again; MAP_FIXED
    // replaces exactly that range.
    unsafe {
        rustix::mm::mmap_anonymous(
            addr.cast(),
            len,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
        )
    }
    .map_err(|e| RegionError::sys("mmap (revoke: PROT_NONE, MAP_FIXED)", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::region::SharedObject;

    /// The line of /proc/self/maps that starts at `addr`.
    fn maps_line(addr: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().find(|l| l.starts_with(&format!("{addr:x}-"))).map(str::to_owned)
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn two_mappings_of_one_object_share_bytes_and_drop_unmaps() {
        let o = SharedObject::with_len("t-share", 8192).unwrap();
        let a = FdMapping::map(o.as_fd(), 8192, Protection::ReadWrite).unwrap();
        let b = FdMapping::map(o.as_fd(), 8192, Protection::Read).unwrap();
        assert_ne!(a.addr(), b.addr());
        a.write_at(8190, b"hi").unwrap();
        let mut buf = [0u8; 2];
        b.read_at(8190, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        let addr = a.addr();
        assert!(maps_line(addr).is_some_and(|l| l.contains("rw-s")));
        drop(a);
        assert!(maps_line(addr).is_none(), "dropping the mapping unmaps it");
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn copies_are_bounds_and_protection_checked() {
        let o = SharedObject::with_len("t-bounds", 4096).unwrap();
        let m = FdMapping::map(o.as_fd(), 4096, Protection::Read).unwrap();
        let mut buf = [0u8; 2];
        assert!(matches!(m.read_at(4095, &mut buf), Err(RegionError::OutOfBounds { offset: 4095, len: 2, size: 4096 })));
        assert!(matches!(m.read_at(usize::MAX, &mut buf), Err(RegionError::OutOfBounds { .. })));
        assert!(matches!(m.write_at(0, b"x"), Err(RegionError::ReadOnly)));
        assert!(matches!(FdMapping::map(o.as_fd(), 0, Protection::Read), Err(RegionError::InvalidArgument { what: "len", .. })));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn map_at_never_replaces_and_checks_alignment() {
        let o = SharedObject::with_len("t-at", 4096).unwrap();
        let m = FdMapping::map(o.as_fd(), 4096, Protection::ReadWrite).unwrap();
        m.write_at(0, b"kept").unwrap();
        let err = FdMapping::map_at(o.as_fd(), 4096, Protection::Read, m.addr()).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EXIST));
        let mut buf = [0u8; 4];
        m.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"kept");
        assert!(matches!(FdMapping::map_at(o.as_fd(), 4096, Protection::Read, 0), Err(RegionError::Misaligned { .. })));
        assert!(matches!(FdMapping::map_at(o.as_fd(), 4096, Protection::Read, m.addr() + 1), Err(RegionError::Misaligned { .. })));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn the_kernel_refuses_write_on_a_sealed_object_and_protection_stays() {
        let o = SharedObject::with_len("t-sealed", 4096).unwrap();
        crate::region::add_seals(o.as_fd(), rustix::fs::SealFlags::FUTURE_WRITE).unwrap();
        assert!(FdMapping::map(o.as_fd(), 4096, Protection::ReadWrite).is_err());
        let mut m = FdMapping::map(o.as_fd(), 4096, Protection::Read).unwrap();
        assert!(m.set_protection(Protection::ReadWrite).is_err());
        assert_eq!(m.protection(), Protection::Read);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn protect_and_revoke_change_the_range_in_the_maps() {
        let region = crate::RegionOptions::new(64 << 10).create_anonymous("t-revoke").unwrap();
        let o = SharedObject::with_len("t-revoke-obj", 8192).unwrap();
        let base = region.as_ptr() as usize;
        // SAFETY: nothing else uses the range; only `maps_line` looks at it afterwards.
        unsafe {
            region.add_fd_mapping(8192, 8192, o.as_fd(), 0, Protection::ReadWrite).unwrap();
            protect_range(region.as_ptr().add(8192), 4096, Protection::Read).unwrap();
            revoke_range(region.as_ptr().add(12288), 4096).unwrap();
            assert!(matches!(protect_range(region.as_ptr().add(1), 4096, Protection::Read), Err(RegionError::Misaligned { .. })));
            assert!(matches!(revoke_range(region.as_ptr().add(8192), 0), Err(RegionError::Misaligned { .. })));
        }
        let ro = maps_line(base + 8192).unwrap();
        assert!(ro.contains("r--s") && ro.contains("memfd"), "{ro}");
        let gone = maps_line(base + 12288).unwrap();
        assert!(gone.contains("---p") && !gone.contains("memfd"), "{gone}");
    }
}
