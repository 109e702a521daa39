//! Raw system calls that rustix 1.1 does not wrap: `mbind`, `move_pages`,
//! `get_mempolicy` (NUMA) and `mincore`. The constants libc lacks are defined here, once.
#![allow(unsafe_code)]

use rustix::io::Errno;

/// `MPOL_PREFERRED`.
pub(crate) const MPOL_PREFERRED: i32 = 1;
/// `MPOL_BIND`.
pub(crate) const MPOL_BIND: i32 = 2;
/// `MPOL_INTERLEAVE`.
pub(crate) const MPOL_INTERLEAVE: i32 = 3;
/// `MPOL_MF_STRICT`: fail if existing pages do not follow the policy.
pub(crate) const MPOL_MF_STRICT: u32 = 1 << 0;
/// `MPOL_MF_MOVE`: migrate pages mapped only by this process.
pub(crate) const MPOL_MF_MOVE: u32 = 1 << 1;
/// `MPOL_F_NODE` for get_mempolicy.
pub(crate) const MPOL_F_NODE: u32 = 1 << 0;
/// `MPOL_F_ADDR` for get_mempolicy.
pub(crate) const MPOL_F_ADDR: u32 = 1 << 1;

/// Bits in the node masks we pass to the kernel.
pub(crate) const MASK_BITS: usize = 256;

fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
}

/// `mbind(2)`: set the NUMA policy of `[addr, addr+len)`.
///
/// # Safety
///
/// - `addr..addr+len` must be a mapping owned by the caller; with `MPOL_MF_MOVE`
///   pages may migrate, which is transparent to readers.
///
/// # References
/// - [`mbind(2)`](https://man7.org/linux/man-pages/man2/mbind.2.html)
pub(crate) unsafe fn mbind(
    addr: *mut u8,
    len: usize,
    mode: i32,
    mask: &[u64; MASK_BITS / 64],
    flags: u32,
) -> Result<(), Errno> {
    // SAFETY: 1. the kernel reads `maxnode - 1` bits from `mask`, which holds
    // MASK_BITS bits; 2. the caller guarantees the address range is its own mapping.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            mode,
            mask.as_ptr(),
            MASK_BITS as libc::c_ulong + 1,
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `move_pages(2)` with `nodes == NULL`: ask which node each page is on.
///
/// Writes the node, or a negative errno (e.g. `-ENOENT` for a page not faulted in),
/// into `status`. Moves nothing and never writes to the pages, so any address is
/// safe to pass: the kernel validates each one.
///
/// # References
/// - [`move_pages(2)`](https://man7.org/linux/man-pages/man2/move_pages.2.html)
#[doc(alias = "move_pages")]
pub(crate) fn query_pages(pages: &[usize], status: &mut [i32]) -> Result<(), Errno> {
    assert_eq!(pages.len(), status.len());
    // SAFETY: 1. `pages` and `status` are valid arrays of `count` elements;
    // 2. with `nodes == NULL` the kernel only reads the page tables and writes
    //    `status`; it never touches the memory behind the addresses.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0 as libc::c_int,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            std::ptr::null::<libc::c_int>(),
            status.as_mut_ptr(),
            0 as libc::c_int,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`: the node of the page at `addr`.
///
/// Read-faults the page in if it is not present (for shared memory that
/// allocates it under the range's policy).
///
/// # Safety
///
/// - `addr` must point into a readable mapping of the caller.
///
/// # References
/// - [`get_mempolicy(2)`](https://man7.org/linux/man-pages/man2/get_mempolicy.2.html)
#[doc(alias = "get_mempolicy")]
pub(crate) unsafe fn node_of_address(addr: *const u8) -> Result<u32, Errno> {
    let mut node: libc::c_int = -1;
    // SAFETY: 1. `node` is a valid out pointer; 2. the nodemask is NULL with
    // maxnode 0, as MPOL_F_NODE|MPOL_F_ADDR allows; 3. the caller guarantees `addr`
    // is inside a readable mapping.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            addr,
            (MPOL_F_NODE | MPOL_F_ADDR) as libc::c_ulong,
        )
    };
    if rc == 0 && node >= 0 {
        Ok(node as u32)
    } else {
        Err(last_errno())
    }
}

/// `mincore(2)`: which pages of `[addr, addr+len)` are resident in the page cache.
///
/// # Safety
///
/// - `addr..addr+len` must be a mapping of the caller, `addr` page-aligned.
///
/// # References
/// - [`mincore(2)`](https://man7.org/linux/man-pages/man2/mincore.2.html)
#[doc(alias = "mincore")]
pub(crate) unsafe fn resident(addr: *mut u8, len: usize, out: &mut [u8]) -> Result<(), Errno> {
    assert!(out.len() >= len.div_ceil(4096));
    // libc, not rustix: rustix 1.1 has no mincore wrapper.
    // SAFETY: 1. `out` holds one byte per 4 KiB page of the range (asserted);
    // 2. the caller guarantees the range is its own page-aligned mapping.
    let rc = unsafe { libc::mincore(addr.cast(), len, out.as_mut_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}
