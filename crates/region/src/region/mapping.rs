//! The private mapping machinery: the address-space reservation, mapping a
//! tail of the backing inside it, placement and advice on a fresh range, and
//! commit, populate and lock of a new tail.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, ProtFlags};

use super::Region;
use crate::error::{RegionError, Result};
use crate::header::MAX_REGION_LEN;
use crate::policy::PageSize;
use crate::sys;
use crate::topology::huge_pages_dir;

/// Reserves `len` bytes of address space aligned to `align`, PROT_NONE.
pub(super) fn reserve(len: usize, align: usize) -> Result<NonNull<u8>> {
    let padded = len.checked_add(align).ok_or(RegionError::TooLarge { requested: len, max: MAX_REGION_LEN })?;
    // SAFETY: a fresh PROT_NONE anonymous mapping at a kernel-chosen address
    // aliases nothing.
    let raw = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            padded,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }
    .map_err(|e| RegionError::sys("mmap (reserve address space)", e))?;
    let start = raw as usize;
    let aligned = start.next_multiple_of(align);
    // SAFETY: both trims lie inside the mapping we just created and own.
    unsafe {
        if aligned > start {
            let _ = rustix::mm::munmap(raw, aligned - start);
        }
        let end = aligned + len;
        if start + padded > end {
            let _ = rustix::mm::munmap(end as *mut _, start + padded - end);
        }
    }
    NonNull::new(aligned as *mut u8).ok_or(RegionError::invalid("mmap", "null reservation"))
}

impl Region {
    /// Whether the whole reservation is one shared mapping of the backing,
    /// made at create/attach. Then growth needs no mmap: pages past the
    /// published length lie past the file's end and become valid when the file
    /// grows. hugetlb cannot do this (its mmap reserves huge pages for the whole
    /// mapping), so it maps each new tail inside a PROT_NONE reservation.
    pub(super) fn maps_ahead(&self) -> bool {
        !self.page_size.is_hugetlb()
    }

    /// How much to map at create/attach when `len` bytes are published.
    pub(super) fn ahead_len(&self, len: usize) -> usize {
        if self.maps_ahead() {
            self.reserved
        } else {
            len
        }
    }

    /// Maps `[from, to)` and applies placement and advice to it.
    pub(super) fn map_and_place(&self, from: usize, to: usize, prot: ProtFlags) -> Result<()> {
        self.map_tail_prot(from, to, prot)?;
        self.apply_policy(from, to)
    }

    pub(super) fn prot(&self) -> ProtFlags {
        if self.writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        }
    }

    /// Maps `[from, to)` of the backing at the same offsets inside the reservation.
    pub(super) fn map_tail_prot(&self, from: usize, to: usize, prot: ProtFlags) -> Result<()> {
        debug_assert!(from <= to && to <= self.reserved);
        if from == to {
            return Ok(());
        }
        // SAFETY: `[base+from, base+to)` lies inside our own reservation (to <=
        // reserved), which holds either PROT_NONE pages or earlier mappings of the
        // same backing at the same offsets; MAP_FIXED replaces only those.
        unsafe {
            rustix::mm::mmap(
                self.base.as_ptr().add(from).cast(),
                to - from,
                prot,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.fd,
                from as u64,
            )
        }
        .map_err(|e| match e {
            Errno::NOMEM if self.page_size.is_hugetlb() => RegionError::Unavailable {
                what: "hugetlb pages",
                hint: format!(
                    "the kernel could not reserve {} bytes of {} KiB pages: echo N > {}/nr_hugepages (as root)",
                    to - from,
                    self.page_size.bytes() / 1024,
                    huge_pages_dir(self.page_size.bytes(), None)
                )
                .into(),
            },
            e => RegionError::sys("mmap (MAP_FIXED)", e),
        })?;
        Ok(())
    }

    /// mbind + madvise on a freshly mapped range.
    pub(super) fn apply_policy(&self, from: usize, to: usize) -> Result<()> {
        let len = to - from;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is mapped by us; mbind without MPOL_MF_MOVE only sets
        // the policy (for shmem: the inode's shared policy) for future faults.
        let ptr = unsafe { self.base.as_ptr().add(from) };
        if let Some(p) = &self.placement {
            // SAFETY: see above.
            unsafe { sys::mbind(ptr, len, p.policy().mode(), p.nodes().words(), 0) }
                .map_err(|e| RegionError::sys("mbind", e))?;
        }
        let mut advice = Vec::new();
        if self.page_size == PageSize::Thp {
            advice.push(Advice::LinuxHugepage);
        }
        if self.cache.dont_fork {
            advice.push(Advice::LinuxDontFork);
        }
        if self.cache.dont_dump {
            advice.push(Advice::LinuxDontDump);
        }
        for a in advice {
            // SAFETY: these advices change no contents of our own mapped range.
            unsafe { rustix::mm::madvise(ptr.cast(), len, a) }
                .map_err(|e| RegionError::sys(format!("madvise({a:?})"), e))?;
        }
        Ok(())
    }

    /// Placement, commit, populate and lock of a new tail `[from, to)`, before
    /// anyone else can see it.
    pub(super) fn prepare_tail(&self, from: usize, to: usize, fallback: bool) -> Result<()> {
        self.commit_tail(from, to)?;
        self.fault_tail(from, to, fallback)
    }

    /// Commit: runs after placement and before anything touches the pages.
    pub(super) fn commit_tail(&self, from: usize, to: usize) -> Result<()> {
        if self.commit && self.page_size == PageSize::Base {
            // Allocates the pages now (under the shared policy set above), so that
            // out-of-memory is an error here and never a SIGBUS in a peer. hugetlb
            // memory is reserved by mmap; THP memory is committed by populating
            // through the mapping (fallocate has no VMA, so it would allocate base
            // pages under shmem_enabled=advise). KEEP_SIZE: growth may commit
            // before extending the file.
            rustix::fs::fallocate(&self.fd, FallocateFlags::KEEP_SIZE, from as u64, (to - from) as u64)
                .map_err(|e| RegionError::sys("fallocate (commit)", e))?;
        }
        Ok(())
    }

    /// Populate and lock; the file must already cover `[from, to)`.
    pub(super) fn fault_tail(&self, from: usize, to: usize, fallback: bool) -> Result<()> {
        let len = to - from;
        // SAFETY: in-range of our own mapping.
        let ptr = unsafe { self.base.as_ptr().add(from) };
        let populate = self.cache.populate
            || (self.page_size.is_hugetlb() && self.placement.is_some())
            || (self.page_size == PageSize::Thp && self.commit);
        if populate {
            // SAFETY: populating faults pages in; contents are unchanged.
            unsafe { rustix::mm::madvise(ptr.cast(), len, Advice::LinuxPopulateWrite) }.map_err(|e| match e {
                Errno::NOMEM | Errno::FAULT if self.page_size.is_hugetlb() => RegionError::Unavailable {
                    what: "hugetlb pages",
                    hint: format!(
                        "not enough free {} KiB pages on the chosen node(s): reserve them in /sys/devices/system/node/nodeN/hugepages/hugepages-{}kB/nr_hugepages (as root)",
                        self.page_size.bytes() / 1024,
                        self.page_size.bytes() / 1024
                    )
                    .into(),
                },
                e => RegionError::sys("madvise(MADV_POPULATE_WRITE)", e),
            })?;
        }
        if self.cache.lock {
            // SAFETY: locking our own mapped range changes no contents.
            if let Err(e) = unsafe { rustix::mm::mlock(ptr.cast(), len) } {
                let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
                let err = RegionError::Unavailable {
                    what: "mlock",
                    hint: format!(
                        "mlock of {len} bytes failed ({e}); RLIMIT_MEMLOCK is {:?} bytes: raise it (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK",
                        limit.current
                    )
                    .into(),
                };
                let _ = fallback;
                return Err(err);
            }
        }
        Ok(())
    }
}
