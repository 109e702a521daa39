//! Creating an allocator (the owner writes the header, class table and first
//! extents) and attaching to one (every word of the segment is validated once
//! and the validated values are what the guest keeps).

use super::{Allocator, HeapAllocator, OwnerState};
use crate::error::{AttachError, CreateError};
use crate::layout::*;
use crate::memory::{HeapMemory, SegmentMemory};
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::Mutex;
use crate::words::{HeapWords, Words};

impl HeapAllocator {
    /// A heap allocator for `cfg`: room for `max_extents` extents of every class,
    /// `initial_extents` of them created now.
    ///
    /// # Errors
    ///
    /// [`CreateError::Config`] for a bad configuration, [`CreateError::Memory`] if the
    /// heap allocation fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = numashm_varslot::HeapAllocator::new(&numashm_varslot::Config::new().class(64, 8)).unwrap();
    /// assert_eq!(a.class_count(), 1);
    /// ```
    pub fn new(cfg: &Config) -> Result<Self, CreateError> {
        let layout = cfg.layout()?;
        let mem = HeapMemory::new(cfg.data_len(cfg.max_extents).max(1))?;
        Self::create_with(cfg, HeapWords::new(layout.control_words), mem)
    }
}

impl<W: Words, M: SegmentMemory> Allocator<W, M> {
    /// Create a segment: `words` (at least the control area, its content ignored) and
    /// `mem`, whose data area starts at offset 0. The caller becomes the owner.
    ///
    /// # Errors
    ///
    /// [`CreateError::Config`], [`CreateError::TooSmall`] when `words` is short,
    /// [`CreateError::Grow`] when the initial extents do not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use numashm_varslot::{Allocator, Config, HeapMemory, HeapWords};
    /// let cfg = Config::new().class(64, 4);
    /// let words = Arc::new(HeapWords::new(1024));
    /// let mem = Arc::new(HeapMemory::new(cfg.data_len(16)).unwrap());
    /// let owner = Allocator::create_with(&cfg, words.clone(), mem.clone()).unwrap();
    /// let guest = Allocator::attach_with(words, mem).unwrap();
    /// let h = guest.alloc(1, 2).unwrap();
    /// owner.free(h).unwrap();
    /// ```
    pub fn create_with(cfg: &Config, words: W, mem: M) -> Result<Self, CreateError> {
        Self::create_at(cfg, words, mem, 0)
    }

    pub(crate) fn create_at(cfg: &Config, words: W, mem: M, data_start: usize) -> Result<Self, CreateError> {
        let layout = cfg.layout()?;
        let w = words.words();
        if w.len() < layout.control_words {
            return Err(CreateError::TooSmall { needed: layout.control_words, available: w.len() });
        }
        let max_len = mem.max_len();
        if max_len < data_start {
            return Err(CreateError::TooSmall { needed: data_start, available: max_len });
        }
        // Relaxed (all stores below): nobody reads this area before the Release store of
        // the magic (SYNC header-publish) or of an extent count (SYNC extent-publish).
        for word in &w[..CLASS_TABLE + layout.classes.len() * CLASS_WORDS] {
            word.store(0, Ordering::Relaxed);
        }
        w[H_VERSION].store(VERSION, Ordering::Relaxed);
        w[H_CLASS_COUNT].store(layout.classes.len() as u64, Ordering::Relaxed);
        w[H_MAX_EXTENTS].store(layout.max_extents as u64, Ordering::Relaxed);
        w[H_CONTROL_WORDS].store(layout.control_words as u64, Ordering::Relaxed);
        w[H_DATA_START].store(data_start as u64, Ordering::Relaxed);
        w[H_MAX_LEN].store(max_len as u64, Ordering::Relaxed);
        w[H_DATA_END].store(data_start as u64, Ordering::Relaxed);
        w[H_COMMITTED].store(data_start as u64, Ordering::Relaxed);
        for c in layout.classes.iter() {
            w[c.class_word + C_SLOT_SIZE].store(c.slot_size as u64, Ordering::Relaxed);
            w[c.class_word + C_SLOTS].store(c.slots as u64, Ordering::Relaxed);
        }
        // SYNC header-publish (Release): every word above is visible to an attacher
        // that Acquire-loads the magic.
        w[H_MAGIC].store(MAGIC, Ordering::Release);
        let owned = OwnerState {
            data_end: data_start,
            offsets: vec![usize::MAX; layout_len(&layout)],
            extents: vec![0; layout.classes.len()],
            released: vec![false; layout_len(&layout)],
        };
        let grow_lock = Mutex::new(owned);
        let this = Self { words, mem, layout, data_start, max_len, owner: true, grow_lock };
        for class in 0..this.layout.classes.len() {
            for _ in 0..cfg.initial_extents {
                this.grow(class, cfg.node)?;
            }
        }
        Ok(this)
    }

    /// Attach as a guest to a segment created by [`create_with`](Self::create_with) in
    /// the same `words` and `mem`. Every field is validated first.
    ///
    /// # Errors
    ///
    /// [`AttachError::BadField`] naming the first impossible field,
    /// [`AttachError::Memory`] if mapping the owner's growth fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{Allocator, AttachError, HeapMemory, HeapWords};
    /// let e = Allocator::attach_with(HeapWords::new(64), HeapMemory::new(4096).unwrap());
    /// assert!(matches!(e, Err(AttachError::BadField { field: "magic", .. })));
    /// ```
    pub fn attach_with(words: W, mem: M) -> Result<Self, AttachError> {
        Self::attach_at(words, mem, 0)
    }

    pub(crate) fn attach_at(words: W, mem: M, min_data_start: usize) -> Result<Self, AttachError> {
        // The values validated are the values kept: nothing is re-read from the segment.
        let (layout, data_start, max_len) = validate(words.words(), &mem, min_data_start)?;
        Ok(Self { words, mem, layout, data_start, max_len, owner: false, grow_lock: Mutex::new(OwnerState { data_end: data_start, offsets: Vec::new(), extents: Vec::new(), released: Vec::new() }) })
    }
}

fn layout_len(l: &Layout) -> usize {
    l.classes.len() * l.max_extents
}

/// Validate the header, class table and extent table; build the local layout.
fn validate(
    w: &[AtomicU64],
    mem: &impl SegmentMemory,
    min_data_start: usize,
) -> Result<(Layout, usize, usize), AttachError> {
    let bad = |field: &'static str, at: usize, found: u64| AttachError::BadField { field, at, found };
    if w.len() < HEADER_WORDS {
        return Err(bad("control_words", 0, w.len() as u64));
    }
    // SYNC header-publish (Acquire): pairs with the creator's Release store of the magic.
    let magic = w[H_MAGIC].load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(bad("magic", 0, magic));
    }
    // Relaxed (all header reads): ordered after the magic Acquire.
    let r = |i: usize| w[i].load(Ordering::Relaxed);
    if r(H_VERSION) != VERSION {
        return Err(bad("version", 0, r(H_VERSION)));
    }
    let classes = r(H_CLASS_COUNT);
    if classes == 0 || classes > crate::handle::MAX_CLASSES as u64 {
        return Err(bad("class_count", 0, classes));
    }
    let classes = classes as usize;
    if w.len() < CLASS_TABLE + classes * CLASS_WORDS {
        return Err(bad("control_words", 0, w.len() as u64));
    }
    let table: Vec<(u64, u64)> = (0..classes)
        .map(|i| (r(CLASS_TABLE + i * CLASS_WORDS + C_SLOT_SIZE), r(CLASS_TABLE + i * CLASS_WORDS + C_SLOTS)))
        .collect();
    let layout = Layout::compute(&table, r(H_MAX_EXTENTS)).map_err(|(field, at)| match field {
        "max_extents" => bad("max_extents", 0, r(H_MAX_EXTENTS)),
        "class_count" => bad("class_count", 0, classes as u64),
        "slot_size" => bad("class.slot_size", at, table[at].0),
        _ => bad("class.slots_per_extent", at, table[at].1),
    })?;
    let cw = r(H_CONTROL_WORDS);
    if cw != layout.control_words as u64 || w.len() < layout.control_words {
        return Err(bad("control_words", 0, cw));
    }
    let max_len = r(H_MAX_LEN);
    if max_len > mem.max_len() as u64 {
        return Err(bad("max_len", 0, max_len));
    }
    let data_start = r(H_DATA_START);
    if data_start < min_data_start as u64 || data_start % EXTENT_ALIGN as u64 != 0 || data_start > max_len {
        return Err(bad("data_start", 0, data_start));
    }
    let data_end = r(H_DATA_END);
    if data_end < data_start || data_end > max_len {
        return Err(bad("data_end", 0, data_end));
    }
    let mut ranges = Vec::new();
    for (i, c) in layout.classes.iter().enumerate() {
        // SYNC extent-publish (Acquire): the records below the count are initialised.
        let n = w[c.class_word + C_EXTENTS].load(Ordering::Acquire);
        if n > layout.max_extents as u64 {
            return Err(bad("class.extent_count", i, n));
        }
        for e in 0..n as usize {
            let at = i * layout.max_extents + e;
            let off = r(c.ext_base + e * EXT_WORDS + X_OFFSET);
            let end = off.checked_add(c.extent_bytes as u64);
            let inside = matches!(end, Some(end) if off >= data_start && end <= data_end);
            if !inside || off % EXTENT_ALIGN as u64 != 0 {
                return Err(bad("extent.offset", at, off));
            }
            ranges.push((off, off + c.extent_bytes as u64, at));
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(bad("extent.offset", pair[1].2, pair[1].0));
        }
    }
    mem.refresh()?;
    if data_end > mem.mapped_len() as u64 {
        return Err(bad("data_end", 0, data_end));
    }
    Ok((layout, data_start as usize, max_len as usize))
}
