//! The region builder: [`RegionOptions`]'s settings (length, maximum,
//! placement, cache policy, commit, fallback) and their checking, including
//! the cache policy actually applied when degrading is allowed.

use super::RegionOptions;
use crate::error::{RegionError, Result};
use crate::header::{HEADER_LEN, MAX_REGION_LEN};
use crate::policy::{CachePolicy, MemPolicy, NodeSet, PageSize, Placement};
use crate::topology::{free_huge_pages, huge_pages_dir, shmem_thp_mode};

/// Default maximum: four times the initial length, at least 1 GiB.
const DEFAULT_MIN_MAX_LEN: usize = 1 << 30;

impl RegionOptions {
    /// Options for a region of `len` bytes (header included), no placement
    /// (the kernel's first-touch policy, never a silent node 0), base pages,
    /// memory committed at creation.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-new")?;
    /// assert_eq!(r.len(), 64 << 10);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn new(len: usize) -> Self {
        RegionOptions {
            len,
            max_len: None,
            nodes: Vec::new(),
            policy: MemPolicy::Bind,
            cache: CachePolicy::default(),
            commit: true,
            fallback: false,
        }
    }

    /// The most the region may grow to (reserved as address space up front).
    /// Default: four times `len`, at least 1 GiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).max_len(1 << 20).create_anonymous("doc-max")?;
    /// assert_eq!(r.max_len(), 1 << 20);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// Place the region on one NUMA node.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{RegionError, RegionOptions};
    /// let err = RegionOptions::new(64 << 10).node(200).create_anonymous("doc-node").unwrap_err();
    /// assert!(matches!(err, RegionError::UnknownNode { node: 200, .. }));
    /// ```
    pub fn node(mut self, node: u32) -> Self {
        self.nodes = vec![node];
        self
    }

    /// Place the region on a set of NUMA nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{MemPolicy, RegionOptions, Topology};
    /// let nodes: Vec<u32> = Topology::get()?.nodes().iter().map(|n| n.os_index).collect();
    /// let r = RegionOptions::new(64 << 10).nodes(&nodes).policy(MemPolicy::Interleave).create_anonymous("doc-nodes")?;
    /// assert_eq!(r.placement().unwrap().policy(), MemPolicy::Interleave);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn nodes(mut self, nodes: &[u32]) -> Self {
        self.nodes = nodes.to_vec();
        self
    }

    /// The placement policy used with the node(s); default [`MemPolicy::Bind`].
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = numashm_region::RegionOptions::new(4096).policy(numashm_region::MemPolicy::Preferred);
    /// # let _ = opts;
    /// ```
    pub fn policy(mut self, policy: MemPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The page size; default [`PageSize::Base`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{PageSize, RegionOptions};
    /// // Falls back to base pages when no hugetlb pages are reserved.
    /// let r = RegionOptions::new(2 << 20).page_size(PageSize::Huge2M).fallback(true).create_anonymous("doc-huge")?;
    /// assert!(r.len() >= 2 << 20);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn page_size(mut self, page_size: PageSize) -> Self {
        self.cache.page_size = page_size;
        self
    }

    /// Fault every page in at create and grow.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).populate(true).create_anonymous("doc-pop")?;
    /// assert!(r.cache_policy().populate);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn populate(mut self, populate: bool) -> Self {
        self.cache.populate = populate;
        self
    }

    /// Lock the region in RAM (`mlock`).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).lock(true).fallback(true).create_anonymous("doc-lock")?;
    /// # let _ = r;
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn lock(mut self, lock: bool) -> Self {
        self.cache.lock = lock;
        self
    }

    /// `MADV_DONTFORK` on the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).dont_fork(true).create_anonymous("doc-df")?;
    /// assert!(r.cache_policy().dont_fork);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn dont_fork(mut self, yes: bool) -> Self {
        self.cache.dont_fork = yes;
        self
    }

    /// `MADV_DONTDUMP` on the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).dont_dump(true).create_anonymous("doc-dd")?;
    /// assert!(r.cache_policy().dont_dump);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn dont_dump(mut self, yes: bool) -> Self {
        self.cache.dont_dump = yes;
        self
    }

    /// The whole cache policy at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{CachePolicy, RegionOptions};
    /// let r = RegionOptions::new(64 << 10).cache_policy(CachePolicy::default()).create_anonymous("doc-cp")?;
    /// assert_eq!(r.cache_policy(), CachePolicy::default());
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn cache_policy(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Commit memory at create/grow (default: yes) so that running out of
    /// memory is an error there, never a SIGBUS later in some peer. Turning it
    /// off is for measurements and for callers that commit themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(64 << 10).commit(false).create_anonymous("doc-lazy")?;
    /// assert!(!r.header_info()?.commit);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn commit(mut self, commit: bool) -> Self {
        self.commit = commit;
        self
    }

    /// Opt in to degrading the cache policy when it cannot be had: 1 GiB → 2 MiB
    /// hugetlb → THP → base pages, and no `mlock` when the limit forbids it.
    /// [`Region::cache_policy`](crate::Region::cache_policy) tells what was applied.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = numashm_region::RegionOptions::new(2 << 20)
    ///     .page_size(numashm_region::PageSize::Huge1G).fallback(true).create_anonymous("doc-fb")?;
    /// println!("got {:?}", r.cache_policy().page_size);
    /// # Ok::<(), numashm_region::RegionError>(())
    /// ```
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }

    pub(super) fn check_len(&self, page_size: PageSize) -> Result<(usize, usize)> {
        let page = page_size.bytes();
        let len = self.len;
        if len == 0 {
            return Err(RegionError::invalid("len", "a region needs at least one page"));
        }
        if len % page != 0 || len < HEADER_LEN {
            return Err(RegionError::invalid(
                "len",
                format!("{len} is not a multiple of the page size {page} (at least {HEADER_LEN})"),
            ));
        }
        let max_len = match self.max_len {
            Some(m) => m,
            None => len.saturating_mul(4).max(DEFAULT_MIN_MAX_LEN).div_ceil(page) * page,
        };
        if max_len < len || max_len % page != 0 {
            return Err(RegionError::invalid(
                "max_len",
                format!("{max_len} must be at least len ({len}) and a multiple of {page}"),
            ));
        }
        if max_len > MAX_REGION_LEN {
            return Err(RegionError::TooLarge { requested: max_len, max: MAX_REGION_LEN });
        }
        Ok((len, max_len))
    }

    pub(super) fn placement(&self) -> Result<Option<Placement>> {
        if self.nodes.is_empty() {
            return Ok(None);
        }
        let placement = Placement::new(NodeSet::from_nodes(&self.nodes)?, self.policy);
        placement.validate()?;
        Ok(Some(placement))
    }

    /// Decides the cache policy that will be applied, degrading it only when
    /// the caller opted in.
    pub(super) fn resolve_cache(&self) -> Result<CachePolicy> {
        let placement = self.placement()?;
        let mut cache = self.cache;
        loop {
            let page = cache.page_size;
            let problem = match page {
                PageSize::Base => None,
                PageSize::Thp => match shmem_thp_mode().as_deref() {
                    Some("always" | "within_size" | "advise" | "force") => None,
                    mode => Some((
                        "shmem transparent huge pages",
                        format!(
                            "shmem_enabled is {}: echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled (as root)",
                            mode.unwrap_or("unknown")
                        ),
                    )),
                },
                PageSize::Huge2M | PageSize::Huge1G => {
                    let needed = (self.len / page.bytes()).max(1) as u64;
                    let nodes: Vec<Option<u32>> = match &placement {
                        Some(p) if p.policy() == MemPolicy::Bind => p.nodes().iter().map(Some).collect(),
                        _ => vec![None],
                    };
                    let free: u64 = nodes.iter().map(|&n| free_huge_pages(page.bytes(), n).unwrap_or(0)).sum();
                    if free >= needed {
                        None
                    } else {
                        let dir = huge_pages_dir(page.bytes(), nodes[0]);
                        Some((
                            "hugetlb pages",
                            format!(
                                "{needed} free {} KiB pages needed{}, {free} free: echo {needed} > {dir}/nr_hugepages (as root)",
                                page.bytes() / 1024,
                                nodes[0].map(|n| format!(" on node {n}")).unwrap_or_default(),
                            ),
                        ))
                    }
                }
            };
            match problem {
                None => break,
                Some((what, hint)) if !self.fallback => {
                    return Err(RegionError::Unavailable { what, hint: hint.into() })
                }
                Some(_) => {
                    cache.page_size = match page {
                        PageSize::Huge1G => PageSize::Huge2M,
                        PageSize::Huge2M => PageSize::Thp,
                        _ => PageSize::Base,
                    };
                }
            }
        }
        // A fallback to a smaller page keeps lengths valid: all sizes divide 1 GiB.
        self.check_len(cache.page_size)?;
        Ok(cache)
    }
}
