//! NUMA queries and moves: where a region's pages are ([`NodePages`],
//! [`Region::verify_placement`]), changing the policy of a range or migrating
//! it, and the page size the kernel really used.
#![allow(unsafe_code)]

use rustix::io::Errno;
use rustix::mm::Advice;

use super::Region;
use crate::error::{RegionError, Result};
use crate::policy::Placement;
use crate::sys;

/// Pages of a range, counted per NUMA node.
///
/// # Examples
///
/// ```
/// use numashm_region::RegionOptions;
/// let region = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-pages")?;
/// let pages = region.pages_per_node(0, region.len())?;
/// assert_eq!(pages.present(), (1 << 20) / 4096);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePages {
    /// `(node, pages)` for each node holding pages of the range, ascending.
    pub per_node: Vec<(u32, usize)>,
    /// Pages not faulted in by this process.
    pub not_present: usize,
    /// The page size counted in bytes.
    pub page_size: usize,
}

impl NodePages {
    /// Pages present on any node.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_region::NodePages { per_node: vec![(0, 3), (1, 2)], not_present: 1, page_size: 4096 };
    /// assert_eq!(p.present(), 5);
    /// ```
    pub fn present(&self) -> usize {
        self.per_node.iter().map(|(_, n)| n).sum()
    }

    /// Pages on `node`.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm_region::NodePages { per_node: vec![(1, 2)], not_present: 0, page_size: 4096 };
    /// assert_eq!(p.on_node(1), 2);
    /// assert_eq!(p.on_node(0), 0);
    /// ```
    pub fn on_node(&self, node: u32) -> usize {
        self.per_node.iter().find(|(n, _)| *n == node).map_or(0, |(_, c)| *c)
    }
}

impl Region {
    /// Binds `[offset, offset+size)` to a placement of its own (e.g. an extent
    /// on another node), before its pages are touched.
    ///
    /// # Errors
    ///
    /// Unknown or memoryless nodes, bounds and alignment errors, the mbind errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement, RegionOptions, Topology};
    /// let r = RegionOptions::new(1 << 20).commit(false).create_anonymous("doc-place")?;
    /// let node = Topology::get()?.nodes()[0].os_index;
    /// r.place_range(1 << 19, 1 << 19, Placement::new(NodeSet::single(node), MemPolicy::Bind))?;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    ///
    /// A region whose whole reservation is mapped up front (base pages and THP)
    /// can also place a range beyond its current length, before growing into it,
    /// so that the growth commits the pages on the right node.
    pub fn place_range(&self, offset: usize, size: usize, placement: Placement) -> Result<()> {
        let limit = if self.maps_ahead() { self.reserved } else { self.len() };
        match offset.checked_add(size) {
            Some(end) if end <= limit => {}
            _ => return Err(RegionError::OutOfBounds { offset, len: size, size: limit }),
        }
        let align = self.page_size.bytes();
        if offset % align != 0 || size % align != 0 || size == 0 {
            return Err(RegionError::Misaligned { offset, len: size, align });
        }
        placement.validate()?;
        // SAFETY: our own mapped range; no MPOL_MF_MOVE, so only future faults change.
        unsafe { sys::mbind(self.base.as_ptr().add(offset), size, placement.policy().mode(), placement.nodes().words(), 0) }
            .map_err(|e| RegionError::sys("mbind", e))
    }

    /// Moves the pages of `[offset, offset+size)` that are already present to
    /// `placement` (`mbind` with `MPOL_MF_MOVE | MPOL_MF_STRICT`) and sets the
    /// policy for future faults. Only pages mapped by this process alone move
    /// (moving pages other processes map needs `CAP_SYS_NICE`); `EIO` means some
    /// page could not be moved.
    ///
    /// # Errors
    ///
    /// Unknown or memoryless nodes, bounds and alignment errors, the mbind errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, NodeSet, Placement, RegionOptions, Topology};
    /// let r = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-migrate")?;
    /// let node = Topology::get()?.nodes()[0].os_index;
    /// r.migrate_range(4096, (1 << 20) - 4096, Placement::new(NodeSet::single(node), MemPolicy::Bind))?;
    /// assert_eq!(r.pages_per_node(4096, (1 << 20) - 4096)?.on_node(node), 255);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn migrate_range(&self, offset: usize, size: usize, placement: Placement) -> Result<()> {
        self.check_pages(offset, size)?;
        placement.validate()?;
        let flags = sys::MPOL_MF_MOVE | sys::MPOL_MF_STRICT;
        // SAFETY: our own mapped range; migration keeps contents and addresses.
        unsafe { sys::mbind(self.base.as_ptr().add(offset), size, placement.policy().mode(), placement.nodes().words(), flags) }
            .map_err(|e| RegionError::sys("mbind (MPOL_MF_MOVE|MPOL_MF_STRICT)", e))
    }

    /// Counts the pages of `[offset, offset+size)` per NUMA node, as the kernel
    /// reports them now (`move_pages` with no target nodes). Pages this process
    /// has not faulted in are counted as not present.
    ///
    /// # Errors
    ///
    /// Bounds errors; the move_pages errno.
    ///
    /// # Examples
    ///
    /// See [`NodePages`].
    pub fn pages_per_node(&self, offset: usize, size: usize) -> Result<NodePages> {
        self.check_range(offset, size)?;
        let page = self.query_granule();
        let start = offset - offset % page;
        let end = (offset + size).next_multiple_of(page).min(self.len());
        let mut counts: Vec<(u32, usize)> = Vec::new();
        let mut not_present = 0;
        const CHUNK: usize = 4096;
        let mut addrs = Vec::with_capacity(CHUNK);
        let mut status = vec![0i32; CHUNK];
        let mut at = start;
        while at < end {
            addrs.clear();
            while at < end && addrs.len() < CHUNK {
                addrs.push(self.base.as_ptr() as usize + at);
                at += page;
            }
            let st = &mut status[..addrs.len()];
            sys::query_pages(&addrs, st).map_err(|e| RegionError::sys("move_pages (query)", e))?;
            for &s in st.iter() {
                if s < 0 {
                    not_present += 1;
                } else {
                    match counts.iter_mut().find(|(n, _)| *n == s as u32) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((s as u32, 1)),
                    }
                }
            }
        }
        counts.sort_unstable();
        Ok(NodePages { per_node: counts, not_present, page_size: page })
    }

    /// Counts the pages of the whole region per NUMA node without allocating
    /// anything: pages resident in the backing (`mincore`) are mapped read-only
    /// into this process (`MADV_POPULATE_READ`) and then counted; holes stay
    /// holes. This is how an observer (e.g. `numashm inspect`) measures a region
    /// that other processes use, without disturbing it.
    ///
    /// # Errors
    ///
    /// The mincore, madvise or move_pages errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(1 << 20).populate(true).create_anonymous("doc-resident")?;
    /// let observer = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap())?;
    /// // The observer has mapped only the header (and the kernel's fault-around) so far.
    /// assert!(observer.pages_per_node(0, observer.len())?.present() < 256);
    /// assert_eq!(observer.resident_pages_per_node()?.present(), 256);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn resident_pages_per_node(&self) -> Result<NodePages> {
        let len = self.len();
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: our own page-aligned mapping of `len` bytes; one byte per page.
        unsafe { sys::resident(self.base.as_ptr(), len, &mut vec) }.map_err(|e| RegionError::sys("mincore", e))?;
        let mut page = 0;
        while page < vec.len() {
            if vec[page] & 1 == 0 {
                page += 1;
                continue;
            }
            let start = page;
            while page < vec.len() && vec[page] & 1 != 0 {
                page += 1;
            }
            // SAFETY: populating (read) resident pages of our own mapping maps
            // them without changing or allocating anything.
            unsafe {
                rustix::mm::madvise(self.base.as_ptr().add(start * 4096).cast(), (page - start) * 4096, Advice::LinuxPopulateRead)
            }
            .map_err(|e| RegionError::sys("madvise(MADV_POPULATE_READ)", e))?;
        }
        self.pages_per_node(0, len)
    }

    /// The node of the page at `offset`, faulting it in if needed
    /// (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`): a second opinion to
    /// [`Region::pages_per_node`].
    ///
    /// # Errors
    ///
    /// Bounds errors; the get_mempolicy errno.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-nodeof")?;
    /// let node = r.node_of(8192)?;
    /// assert!(numashm_region::Topology::get()?.node(node).is_some());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn node_of(&self, offset: usize) -> Result<u32> {
        self.check_range(offset, 1)?;
        // SAFETY: the address is inside our mapped, readable range.
        unsafe { sys::node_of_address(self.base.as_ptr().add(offset)) }.map_err(|e| RegionError::sys("get_mempolicy", e))
    }

    /// Checks, page by page, that every page this process has faulted in lies
    /// on a node of the region's placement. Returns the counts.
    ///
    /// # Errors
    ///
    /// [`RegionError::Misplaced`] naming the first page off its node.
    ///
    /// # Examples
    ///
    /// See [`RegionOptions`](crate::RegionOptions).
    pub fn verify_placement(&self) -> Result<NodePages> {
        let pages = self.pages_per_node(0, self.len())?;
        if let Some(p) = &self.placement {
            if let Some(&(found, _)) = pages.per_node.iter().find(|(n, _)| !p.nodes().contains(*n)) {
                // Find the first offending page for the report.
                let offset = self.first_page_on(found)?.unwrap_or(0);
                return Err(RegionError::Misplaced { offset, found, expected: p.nodes().iter().collect() });
            }
        }
        Ok(pages)
    }

    /// The unit placement is counted in: the hugetlb page, else the base page
    /// (a THP region may mix huge and base pages).
    fn query_granule(&self) -> usize {
        if self.page_size.is_hugetlb() {
            self.page_size.bytes()
        } else {
            4096
        }
    }

    fn first_page_on(&self, node: u32) -> Result<Option<usize>> {
        let page = self.query_granule();
        let mut status = [0i32; 1];
        for off in (0..self.len()).step_by(page) {
            sys::query_pages(&[self.base.as_ptr() as usize + off], &mut status)
                .map_err(|e| RegionError::sys("move_pages (query)", e))?;
            if status[0] == node as i32 {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }

    /// The kernel page size backing the mapping and the bytes of it mapped
    /// with huge PMDs (THP), read from `/proc/self/smaps`.
    ///
    /// # Errors
    ///
    /// I/O errors reading smaps, or the mapping not found there.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).populate(true).create_anonymous("doc-smaps")?;
    /// let (kernel_page, _thp_bytes) = r.kernel_page_size()?;
    /// assert_eq!(kernel_page, 4096);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn kernel_page_size(&self) -> Result<(usize, usize)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| {
            RegionError::sys("read /proc/self/smaps", Errno::from_io_error(&e).unwrap_or(Errno::IO))
        })?;
        let base = self.base.as_ptr() as usize;
        let mut in_ours = false;
        let mut kernel_page = None;
        let mut pmd = 0usize;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, _hi)) = range.split_once('-') {
                    if let Ok(lo) = usize::from_str_radix(lo, 16) {
                        if range.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                            in_ours = lo >= base && lo < base + self.len();
                            continue;
                        }
                    }
                }
            }
            if !in_ours {
                continue;
            }
            let mut parts = line.split_whitespace();
            let key = parts.next().unwrap_or("");
            let kib: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match key {
                "KernelPageSize:" => kernel_page = kernel_page.or(Some(kib * 1024)),
                "ShmemPmdMapped:" | "FilePmdMapped:" => pmd += kib * 1024,
                _ => {}
            }
        }
        kernel_page
            .map(|k| (k, pmd))
            .ok_or_else(|| RegionError::invalid("mapping", "not found in /proc/self/smaps"))
    }
}
