//! What safe code may do with a segment's allocator: look, and add extents.
//!
//! The raw allocator can free or hand out any slot by handle, including one a
//! live `SlotMut` or `Message` of this process is using; two `&mut [u8]` over
//! the same bytes would follow from safe calls. So the raw allocator is behind
//! `unsafe` ([`crate::Segment::raw_allocator`]) and safe code gets this view.

use numashm_varslot::{Census, GrowError, SegmentMemory, SharedAllocator};

/// A read-only view of a segment's allocator, plus growth.
///
/// # Examples
///
/// ```
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view"))?;
/// let a = seg.allocator();
/// assert_eq!(a.class_count(), 4);
/// assert_eq!(a.slot_size(0), Some(1024));
/// # Ok::<(), numashm::SegmentError>(())
/// ```
/// Safe code cannot free a slot a live guard holds (this compiled before
/// the view existed, and gave two live `&mut [u8]` over the same bytes):
///
/// ```compile_fail
/// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view-unsound"))?;
/// let tx = seg.sender(0)?;
/// let mut a = tx.alloc(8)?;
/// seg.allocator().free(a.handle())?; // no such method on the view
/// let mut b = tx.alloc(8)?;          // would be the same slot as `a`
/// a[0] = 1;
/// b[0] = 2;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AllocatorView<'s, M: SegmentMemory> {
    pub(crate) alloc: &'s SharedAllocator<M>,
}

impl<M: SegmentMemory> AllocatorView<'_, M> {
    /// Number of size classes.
    ///
    /// # Examples
    ///
    /// See [`AllocatorView`].
    pub fn class_count(&self) -> usize {
        self.alloc.class_count()
    }

    /// Slot size of `class`.
    ///
    /// # Examples
    ///
    /// See [`AllocatorView`].
    pub fn slot_size(&self, class: usize) -> Option<usize> {
        self.alloc.slot_size(class)
    }

    /// Extents of `class` published so far.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view-ext"))?;
    /// assert!(seg.allocator().extent_count(0) >= 1);
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn extent_count(&self, class: usize) -> usize {
        self.alloc.extent_count(class)
    }

    /// `(node it was placed on, whether released)` of one extent.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view-info"))?;
    /// assert_eq!(seg.allocator().extent_info(0, 0), Some((None, false)));
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn extent_info(&self, class: usize, extent: usize) -> Option<(Option<u32>, bool)> {
        self.alloc.extent_info(class, extent)
    }

    /// Counts per class and extent (slot states), read with atomic loads.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view-census"))?;
    /// assert!(!seg.allocator().census().extents.is_empty());
    /// # Ok::<(), numashm::SegmentError>(())
    /// ```
    pub fn census(&self) -> Census {
        self.alloc.census()
    }

    /// Adds an extent to `class` (owner only), placed on `node`.
    ///
    /// # Errors
    ///
    /// As [`SharedAllocator::grow`].
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = numashm::Segment::create(numashm::SegmentConfig::anonymous("doc-view-grow"))?;
    /// let before = seg.allocator().extent_count(0);
    /// seg.allocator().grow(0, None)?;
    /// assert_eq!(seg.allocator().extent_count(0), before + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn grow(&self, class: usize, node: Option<u32>) -> Result<usize, GrowError> {
        self.alloc.grow(class, node)
    }
}
