//! [`OwnerView`]: a read-only, validating parse of an owner allocator's tables (header,
//! class table, extent table) from memory another process wrote, for inspection tools.
//!
//! Every word is hostile: the owner may be buggy, dying mid-update, or malicious, and it
//! keeps writing while we read. Each value is checked against the layout rules of
//! `layout.rs` (and against the words it must agree with) before it is used; a bad one
//! is a typed error naming the table, the row and the field. A bad header ends the parse;
//! a bad class row or extent row is an error in its own place of the view, the rest is
//! still reported. The work is bounded by the layout's limits (32 classes, 4096 extents),
//! whatever the words say. Slot metadata is not walked: an inspector reads the class
//! table's counters, which the owner keeps exact.

use super::alloc::OwnerAlloc;
use super::census::ClassCensus;
use super::layout::*;
use super::memory::PoolMemory;
use crate::loom::sync::atomic::Ordering;

/// Why an [`OwnerView`] (or a row of it) could not be read.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{OwnerView, OwnerViewError};
/// let zeros = vec![0u8; 64 << 10];
/// assert_eq!(OwnerView::parse(&zeros, 0).unwrap_err(), OwnerViewError::Header { field: "magic", value: 0 });
/// assert_eq!(OwnerView::parse(&zeros[..4], 0).unwrap_err(), OwnerViewError::Unreadable { offset: 0 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerViewError {
    /// The word at byte `offset` is not in the readable memory (or not 8-aligned).
    #[error("word at byte {offset} is not readable")]
    Unreadable {
        /// Byte offset from the memory base.
        offset: usize,
    },
    /// A header field is out of its domain.
    #[error("owner header: corrupt {field} ({value:#x})")]
    Header {
        /// The field (`"magic"`, `"version"`, `"class count"`, `"at"`, ...).
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A class row field is out of its domain or disagrees with the extent table.
    #[error("class {class}: corrupt {field} ({value:#x})")]
    Class {
        /// The class (the class count for the dedicated row).
        class: usize,
        /// The field (`"slot size"`, `"slots per extent"`, `"extents"`, `"owned"`, ...).
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// An extent row field is out of its domain.
    #[error("extent {extent}: corrupt {field} ({value:#x})")]
    Extent {
        /// The extent index.
        extent: u32,
        /// The field (`"offset"`, `"bytes"`, `"class"`, `"slots"`).
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// One extent as the extent table describes it (validated).
///
/// # Examples
///
/// See [`OwnerView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentView {
    /// Byte offset of its start (slot metadata first) from the memory base.
    pub offset: u64,
    /// Its length in bytes, metadata included.
    pub bytes: u64,
    /// Its class (the class count for a dedicated extent).
    pub class: usize,
    /// Slots it holds.
    pub slots: u64,
}

/// An owner allocator's tables as read from memory another process writes.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{HeapPoolMemory, OwnerAlloc, OwnerConfig};
/// let a = OwnerAlloc::create(HeapPoolMemory::new(4 << 20).unwrap(), 0, &OwnerConfig::default()).unwrap();
/// let s = a.alloc(100, true).unwrap(); // class 1 (256 B)
/// let v = a.view()?;
/// let c = v.classes[1].as_ref().unwrap();
/// assert_eq!((c.slot_size, c.owned, c.extents), (256, 1, 1));
/// assert_eq!(v.extents.len(), 1);
/// assert_eq!(v.extents[0].unwrap().class, 1);
/// # let _ = s;
/// # Ok::<(), numashm_varslot::OwnerViewError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerView {
    /// Byte offset of the allocator's header from the memory base.
    pub at: usize,
    /// Bytes of slots per class extent.
    pub extent_bytes: u64,
    /// Most extents.
    pub max_extents: u32,
    /// Where the tables end (the first extent may start here).
    pub tables_end: u64,
    /// Where the next extent would start.
    pub bump: u64,
    /// Bytes the owner's memory reserves.
    pub reserved: u64,
    /// Per class, in class order: its counts, or what is wrong with its row.
    pub classes: Vec<Result<ClassCensus, OwnerViewError>>,
    /// The dedicated (oversize) extents' row.
    pub dedicated: Result<ClassCensus, OwnerViewError>,
    /// Each created extent, or what is wrong with its row.
    pub extents: Vec<Result<ExtentView, OwnerViewError>>,
}

/// A class row's fixed fields, once validated.
#[derive(Clone, Copy)]
struct RowShape {
    size: u64,
    per_extent: u64,
    skip: u64,
}

impl OwnerView {
    /// Parses a snapshot: `bytes` are the memory from its base (byte 0), the allocator's
    /// header at `at`. Words are little-endian; bytes past the end are unreadable.
    ///
    /// # Errors
    ///
    /// [`OwnerViewError::Unreadable`] if the header or tables lie past `bytes`,
    /// [`OwnerViewError::Header`] for a bad header field; bad rows are errors inside the
    /// view.
    ///
    /// # Examples
    ///
    /// See [`OwnerViewError`].
    pub fn parse(bytes: &[u8], at: usize) -> Result<Self, OwnerViewError> {
        Self::parse_with(at, |off| {
            let b = bytes.get(off..off.checked_add(8)?)?;
            (off % 8 == 0).then(|| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        })
    }

    /// Parses through `read(offset)`, which returns the `u64` word at byte `offset` from
    /// the memory base, or `None` where nothing may be read (e.g. an atomic load from a
    /// read-only mapping, bounded by its length). Each word is read once, header first.
    ///
    /// # Errors
    ///
    /// As [`OwnerView::parse`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_varslot::{OwnerView, OwnerViewError};
    /// let e = OwnerView::parse_with(128, |_| Some(u64::MAX)).unwrap_err();
    /// assert_eq!(e, OwnerViewError::Header { field: "magic", value: u64::MAX });
    /// ```
    pub fn parse_with(
        at: usize,
        read: impl Fn(usize) -> Option<u64>,
    ) -> Result<Self, OwnerViewError> {
        let word = |off: usize| read(off).ok_or(OwnerViewError::Unreadable { offset: off });
        let at_word = |i: usize| {
            at.checked_add(i * 8)
                .ok_or(OwnerViewError::Unreadable { offset: usize::MAX })
        };
        let head = |field, value| OwnerViewError::Header { field, value };
        let magic = word(at_word(H_MAGIC)?)?;
        if magic != OWNER_MAGIC {
            return Err(head("magic", magic));
        }
        let mut h = [0u64; 16];
        for (i, w) in h.iter_mut().enumerate() {
            *w = word(at_word(i)?)?;
        }
        if h[H_VERSION] != OWNER_VERSION {
            return Err(head("version", h[H_VERSION]));
        }
        let n = h[H_CLASS_COUNT];
        if n == 0 || n > MAX_OWNER_CLASSES as u64 {
            return Err(head("class count", n));
        }
        let n = n as usize;
        if h[H_AT] != at as u64 || at % EXTENT_ALIGN != 0 {
            return Err(head("at", h[H_AT]));
        }
        let max_extents = h[H_MAX_EXTENTS];
        if max_extents == 0 || max_extents > MAX_OWNER_EXTENTS as u64 {
            return Err(head("max extents", max_extents));
        }
        let extent_bytes = h[H_EXTENT_BYTES];
        if extent_bytes == 0 || extent_bytes > 1 << 40 {
            return Err(head("extent bytes", extent_bytes));
        }
        // Cannot overflow: at is a usize, the rest is bounded by the checks above.
        let class_table = at as u64 + HEADER_BYTES as u64;
        let extent_table = class_table + (n as u64 + 1) * CLASS_ROW_BYTES as u64;
        let tables_end = (extent_table + max_extents * EXTENT_ROW_BYTES as u64)
            .next_multiple_of(EXTENT_ALIGN as u64);
        if h[H_TABLES_END] != tables_end {
            return Err(head("tables end", h[H_TABLES_END]));
        }
        let reserved = h[H_RESERVED];
        if reserved < tables_end {
            return Err(head("reserved", reserved));
        }
        let bump = h[H_BUMP];
        if bump < tables_end || bump > reserved {
            return Err(head("bump", bump));
        }
        let used = h[H_EXTENTS_USED];
        if used > max_extents {
            return Err(head("extents used", used));
        }
        let table_off = |base: u64, i: usize| {
            usize::try_from(base)
                .ok()
                .and_then(|b| b.checked_add(i * 8))
        };
        let read_row = |base: u64, words: usize| -> Result<Vec<u64>, OwnerViewError> {
            (0..words)
                .map(|i| {
                    let off = table_off(base, i)
                        .ok_or(OwnerViewError::Unreadable { offset: usize::MAX })?;
                    word(off)
                })
                .collect()
        };
        let rows: Vec<Vec<u64>> = (0..=n)
            .map(|c| read_row(class_table + (c * CLASS_ROW_BYTES) as u64, 8))
            .collect::<Result<_, _>>()?;
        let shapes = shapes(&rows, n, extent_bytes);
        let mut per_class = vec![(0u64, 0u64); n + 1];
        let mut extents = Vec::with_capacity(used as usize);
        let mut end = tables_end;
        for e in 0..used as u32 {
            let x = read_row(extent_table + u64::from(e) * EXTENT_ROW_BYTES as u64, 4)?;
            let r = check_extent(e, &x, n, &shapes, end, bump);
            if let Ok(v) = r {
                end = v.offset + v.bytes;
                per_class[v.class].0 += 1;
                per_class[v.class].1 += v.slots;
            }
            extents.push(r);
        }
        let mut classes: Vec<Result<ClassCensus, OwnerViewError>> = (0..=n)
            .map(|c| {
                let shape = shapes[c]?;
                counts(c, &rows[c], shape, per_class[c])
            })
            .collect();
        let dedicated = classes.pop().unwrap_or(Err(head("class count", 0)));
        Ok(OwnerView {
            at,
            extent_bytes,
            max_extents: max_extents as u32,
            tables_end,
            bump,
            reserved,
            classes,
            dedicated,
            extents,
        })
    }
}

/// Validates each class row's fixed fields (size, slots per extent, data skip) against
/// the header and the rows before it.
fn shapes(rows: &[Vec<u64>], n: usize, extent_bytes: u64) -> Vec<Result<RowShape, OwnerViewError>> {
    let mut prev = 0u64;
    let mut out = Vec::with_capacity(n + 1);
    for (c, r) in rows.iter().enumerate() {
        let bad = |field, value| {
            Err(OwnerViewError::Class {
                class: c,
                field,
                value,
            })
        };
        let (size, per_extent, skip) = (r[C_SLOT_SIZE], r[C_SLOTS_PER_EXTENT], r[C_DATA_SKIP]);
        let shape = if c == n {
            if size != 0 {
                bad("slot size", size)
            } else if per_extent != 1 {
                bad("slots per extent", per_extent)
            } else if skip != PAGE as u64 {
                bad("data skip", skip)
            } else {
                Ok(RowShape {
                    size,
                    per_extent,
                    skip,
                })
            }
        } else {
            let align = if size >= 128 { 128 } else { 64 };
            let want = (extent_bytes / size.max(1)).max(1);
            if size == 0 || size % align != 0 || size <= prev || size > 1 << 40 {
                bad("slot size", size)
            } else if per_extent != want || per_extent > MAX_OWNER_SLOTS as u64 {
                bad("slots per extent", per_extent)
            } else if skip != class_data_skip(per_extent as usize) as u64 {
                bad("data skip", skip)
            } else {
                Ok(RowShape {
                    size,
                    per_extent,
                    skip,
                })
            }
        };
        if shape.is_ok() {
            prev = size;
        }
        out.push(shape);
    }
    out
}

/// Validates extent row `e` (`x`: offset, bytes, class, slots) against its class's shape,
/// the end of the previous extent and the bump pointer.
fn check_extent(
    e: u32,
    x: &[u64],
    n: usize,
    shapes: &[Result<RowShape, OwnerViewError>],
    prev_end: u64,
    bump: u64,
) -> Result<ExtentView, OwnerViewError> {
    let bad = |field, value| OwnerViewError::Extent {
        extent: e,
        field,
        value,
    };
    let (offset, bytes, class, slots) = (x[X_OFFSET], x[X_BYTES], x[X_CLASS], x[X_SLOTS]);
    if class > n as u64 {
        return Err(bad("class", class));
    }
    let class = class as usize;
    let shape = shapes[class].map_err(|_| bad("class", class as u64))?;
    let align = if class == n { PAGE } else { EXTENT_ALIGN } as u64;
    if offset < prev_end || offset % align != 0 {
        return Err(bad("offset", offset));
    }
    if slots != shape.per_extent {
        return Err(bad("slots", slots));
    }
    let ok_bytes = if class == n {
        bytes >= 2 * PAGE as u64 && bytes % PAGE as u64 == 0
    } else {
        // Cannot overflow: per_extent <= 2^20 and size <= 2^40 (checked in `shapes`).
        bytes == shape.skip + slots * shape.size
    };
    if !ok_bytes || offset.checked_add(bytes).map_or(true, |end| end > bump) {
        return Err(bad("bytes", bytes));
    }
    Ok(ExtentView {
        offset,
        bytes,
        class,
        slots,
    })
}

/// A class row's counters, checked against what the extent table holds for the class.
fn counts(
    c: usize,
    r: &[u64],
    shape: RowShape,
    (extents, slots): (u64, u64),
) -> Result<ClassCensus, OwnerViewError> {
    let bad = |field, value| {
        Err(OwnerViewError::Class {
            class: c,
            field,
            value,
        })
    };
    let (row_extents, row_slots, owned, lent) = (r[C_EXTENTS], r[C_SLOTS], r[C_OWNED], r[C_LENT]);
    if row_extents != extents {
        return bad("extents", row_extents);
    }
    if row_slots != slots {
        return bad("slots", row_slots);
    }
    if owned > slots {
        return bad("owned", owned);
    }
    if lent > slots - owned {
        return bad("lent", lent);
    }
    Ok(ClassCensus {
        slot_size: shape.size as usize,
        extents,
        slots,
        free: slots - owned - lent,
        owned,
        lent,
    })
}

impl<M: PoolMemory> OwnerAlloc<M> {
    /// This allocator's tables read back through the validating parser another process
    /// would use ([`OwnerView::parse_with`]): a self-check for tests and tools.
    ///
    /// # Errors
    ///
    /// As [`OwnerView::parse`] (only if the tables were damaged behind the owner's back).
    ///
    /// # Examples
    ///
    /// See [`OwnerView`].
    pub fn view(&self) -> Result<OwnerView, OwnerViewError> {
        OwnerView::parse_with(self.layout.at, |off| {
            // Relaxed: an inspection of words this thread wrote.
            self.words
                .block::<1>(off)
                .map(|w| w[0].load(Ordering::Relaxed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::{HeapPoolMemory, OwnerConfig};

    fn alloc_with_traffic() -> OwnerAlloc<HeapPoolMemory> {
        let a = OwnerAlloc::create(
            HeapPoolMemory::new(8 << 20).unwrap(),
            4096,
            &OwnerConfig::default(),
        )
        .unwrap();
        let s1 = a.alloc(10, true).unwrap();
        let _s2 = a.alloc(10, true).unwrap();
        let s3 = a.alloc(3000, true).unwrap();
        a.lend(s3.handle, 1).unwrap();
        let _big = a.alloc(3 << 20, true).unwrap();
        a.free(s1.handle).unwrap();
        a
    }

    /// The allocator's memory as bytes (what an inspector copies out).
    fn snapshot(a: &OwnerAlloc<HeapPoolMemory>) -> Vec<u8> {
        let len = a.words.limit();
        (0..len / 8)
            .flat_map(|i| {
                a.words
                    .block::<1>(i * 8)
                    .map_or(0, |w| w[0].load(Ordering::Relaxed))
                    .to_le_bytes()
            })
            .collect()
    }

    fn put(bytes: &mut [u8], off: usize, v: u64) {
        bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn get(bytes: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
    }

    #[test]
    // Copies the whole committed pool word by word (megabytes): hours under miri;
    // the parse is plain safe code over a byte slice.
    #[cfg_attr(miri, ignore)]
    fn a_view_agrees_with_the_census() {
        let a = alloc_with_traffic();
        let v = a.view().unwrap();
        let c = a.census();
        let classes: Vec<ClassCensus> = v.classes.iter().map(|r| r.unwrap()).collect();
        assert_eq!(classes, c.classes);
        assert_eq!(v.dedicated.unwrap(), c.dedicated);
        assert_eq!(v.extents.len() as u64, c.extents);
        assert_eq!(
            v.extents[2].unwrap().class,
            8,
            "the 3 MiB slot has a dedicated extent"
        );
        assert_eq!(OwnerView::parse(&snapshot(&a), 4096).unwrap(), v);
    }

    #[test]
    // Copies the whole committed pool word by word (megabytes): hours under miri;
    // the parse is plain safe code over a byte slice.
    #[cfg_attr(miri, ignore)]
    fn a_bad_header_is_a_typed_error_naming_the_field() {
        let a = alloc_with_traffic();
        let good = snapshot(&a);
        let cases: [(usize, u64, &str); 7] = [
            (H_MAGIC, 1, "magic"),
            (H_VERSION, 9, "version"),
            (H_CLASS_COUNT, 33, "class count"),
            (H_AT, 0, "at"),
            (H_MAX_EXTENTS, u64::MAX, "max extents"),
            (H_BUMP, u64::MAX, "bump"),
            (H_EXTENTS_USED, 5000, "extents used"),
        ];
        for (w, value, field) in cases {
            let mut b = good.clone();
            put(&mut b, 4096 + w * 8, value);
            assert_eq!(
                OwnerView::parse(&b, 4096).unwrap_err(),
                OwnerViewError::Header { field, value },
                "{field}"
            );
        }
        // Tables past the readable bytes.
        assert!(matches!(
            OwnerView::parse(&good[..5000], 4096),
            Err(OwnerViewError::Unreadable { .. })
        ));
        // A header at the wrong place.
        assert!(OwnerView::parse(&good, 0).is_err());
        assert!(OwnerView::parse(&good, usize::MAX - 7).is_err());
    }

    #[test]
    // Copies the whole committed pool word by word (megabytes): hours under miri;
    // the parse is plain safe code over a byte slice.
    #[cfg_attr(miri, ignore)]
    fn a_bad_class_row_is_an_error_in_its_place_and_the_rest_is_reported() {
        let a = alloc_with_traffic();
        let good = snapshot(&a);
        let row = |c: usize, w: usize| 4096 + HEADER_BYTES + c * CLASS_ROW_BYTES + w * 8;
        let mut b = good.clone();
        put(&mut b, row(0, C_OWNED), 1 << 40);
        put(&mut b, row(5, C_SLOT_SIZE), 100);
        put(&mut b, row(3, C_LENT), get(&good, row(3, C_SLOTS)) + 1);
        let v = OwnerView::parse(&b, 4096).unwrap();
        assert_eq!(
            v.classes[0],
            Err(OwnerViewError::Class {
                class: 0,
                field: "owned",
                value: 1 << 40
            })
        );
        assert_eq!(
            v.classes[5],
            Err(OwnerViewError::Class {
                class: 5,
                field: "slot size",
                value: 100
            })
        );
        assert_eq!(
            v.classes[3],
            Err(OwnerViewError::Class {
                class: 3,
                field: "lent",
                value: 17
            })
        );
        assert_eq!(v.classes[2], a.view().unwrap().classes[2]);
        assert!(v.dedicated.is_ok());
    }

    #[test]
    // Copies the whole committed pool word by word (megabytes): hours under miri;
    // the parse is plain safe code over a byte slice.
    #[cfg_attr(miri, ignore)]
    fn a_bad_extent_row_is_an_error_and_its_class_counts_disagree() {
        let a = alloc_with_traffic();
        let good = snapshot(&a);
        let n = 8;
        let xrow = |e: usize, w: usize| {
            4096 + HEADER_BYTES + (n + 1) * CLASS_ROW_BYTES + e * EXTENT_ROW_BYTES + w * 8
        };
        for (w, value, field) in [
            (X_OFFSET, 8, "offset"),
            (X_BYTES, u64::MAX, "bytes"),
            (X_CLASS, 99, "class"),
            (X_SLOTS, 0, "slots"),
        ] {
            let mut b = good.clone();
            put(&mut b, xrow(0, w), value);
            let v = OwnerView::parse(&b, 4096).unwrap();
            assert_eq!(
                v.extents[0],
                Err(OwnerViewError::Extent {
                    extent: 0,
                    field,
                    value
                }),
                "{field}"
            );
            // Extent 0 is class 0's: its row now counts an extent the table does not hold.
            assert_eq!(
                v.classes[0],
                Err(OwnerViewError::Class {
                    class: 0,
                    field: "extents",
                    value: 1
                })
            );
            assert!(v.extents[1].is_ok() && v.classes[2].is_ok());
        }
    }

    #[test]
    // Copies the whole committed pool word by word (megabytes): hours under miri;
    // the parse is plain safe code over a byte slice.
    #[cfg_attr(miri, ignore)]
    fn any_bytes_parse_to_a_view_or_an_error_without_panicking() {
        let a = alloc_with_traffic();
        let good = snapshot(&a);
        // Every header and table word set to a handful of hostile values, one at a time.
        let end = a.layout.extent_table + 4 * EXTENT_ROW_BYTES;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for off in (4096..end).step_by(8) {
            for v in [0, 1, u64::MAX, 1 << 63, get(&good, off).wrapping_add(1)] {
                let mut b = good.clone();
                put(&mut b, off, v);
                let _ = OwnerView::parse(&b, 4096);
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut b = good.clone();
            put(&mut b, off, seed);
            let _ = OwnerView::parse(&b, 4096);
        }
    }
}
