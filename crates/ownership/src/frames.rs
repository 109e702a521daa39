//! Physical frame numbers of a region's pages, from `/proc/self/pagemap`.

use std::os::fd::AsFd;

use numashm_region::Region;
use rustix::fs::{Mode, OFlags};

use crate::error::FramesError;

const PAGE: usize = 4096;
const PRESENT: u64 = 1 << 63;
const PFN_MASK: u64 = (1 << 55) - 1;

/// The physical frame number of every 4 KiB page of `[offset, offset+len)` of
/// `region` (offsets from its base), read from `/proc/self/pagemap`. Each page
/// is touched (read) first so that it is present.
///
/// With hugetlb backing the frames of one huge page are contiguous (a 2 MiB
/// page is 512 consecutive frames): the kernel reports each 4 KiB piece.
///
/// # Errors
///
/// [`FramesError::NoCapability`] without `CAP_SYS_ADMIN` (the kernel zeroes the
/// frame numbers), [`FramesError::Misaligned`], [`FramesError::OutOfBounds`],
/// [`FramesError::NotPresent`].
///
/// # References
///
/// - [pagemap](https://www.kernel.org/doc/Documentation/vm/pagemap.txt)
///
/// # Examples
///
/// ```
/// use numashm_ownership::{physical_frames, FramesError};
/// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-frames")?;
/// match physical_frames(&r, r.data_offset(), 8192) {
///     Ok(frames) => assert_eq!(frames.len(), 2),
///     Err(FramesError::NoCapability) => {} // not root
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "pagemap")]
pub fn physical_frames(region: &Region, offset: usize, len: usize) -> Result<Vec<u64>, FramesError> {
    if offset % PAGE != 0 || len % PAGE != 0 {
        return Err(FramesError::Misaligned { offset, len });
    }
    let size = region.len();
    if offset.checked_add(len).map_or(true, |end| end > size) {
        return Err(FramesError::OutOfBounds { offset, len, size });
    }
    let pages = len / PAGE;
    let mut probe = [0u8; 1];
    for p in 0..pages {
        // Fault the page in (a read of shared memory allocates it).
        region
            .read_at(offset + p * PAGE, &mut probe)
            .map_err(|_| FramesError::OutOfBounds { offset, len, size })?;
    }
    let fd = rustix::fs::open("/proc/self/pagemap", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| FramesError::Syscall { op: "open /proc/self/pagemap", errno: e })?;
    let first = (region.as_ptr() as usize + offset) / PAGE;
    let mut raw = vec![0u8; pages * 8];
    let mut done = 0;
    while done < raw.len() {
        let n = rustix::io::pread(fd.as_fd(), &mut raw[done..], (first * 8 + done) as u64)
            .map_err(|e| FramesError::Syscall { op: "pread /proc/self/pagemap", errno: e })?;
        if n == 0 {
            return Err(FramesError::Syscall { op: "pread /proc/self/pagemap", errno: rustix::io::Errno::IO });
        }
        done += n;
    }
    let mut frames = Vec::with_capacity(pages);
    for (p, chunk) in raw.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if entry & PRESENT == 0 {
            return Err(FramesError::NotPresent { offset: offset + p * PAGE });
        }
        let pfn = entry & PFN_MASK;
        if pfn == 0 {
            return Err(FramesError::NoCapability);
        }
        frames.push(pfn);
    }
    Ok(frames)
}
