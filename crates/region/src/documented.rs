//! docs/region.md against the code: the header table row by row (offsets and
//! sizes from `offset_of!` on [`RegionHeader`], codes from the constants) and
//! the documented limits. Changing either side fails a test here.

use crate::header::{
    parse_header, RegionHeader, HEADER_FIELDS_LEN, HEADER_LEN, MAX_REGION_LEN, REGION_MAGIC,
    REGION_VERSION,
};
use crate::policy::{
    MemPolicy, NodeSet, PageSize, FLAG_COMMIT, FLAG_DONTDUMP, FLAG_DONTFORK, FLAG_LOCK,
    FLAG_POPULATE, KNOWN_FLAGS,
};
use crate::{RegionOptions, MAX_POOL_LEN};
use core::mem::{offset_of, size_of};

const DOC: &str = include_str!("../../../docs/region.md");

#[path = "doc_table.rs"]
mod doc_table;

/// The body rows of the first table after `anchor`, as trimmed cells.
fn table_after(anchor: &str) -> Vec<Vec<&'static str>> {
    doc_table::table_after(DOC, "docs/region.md", anchor)
}

/// The size of the header field `f` selects.
fn size_of_field<T>(_: fn(&RegionHeader) -> &T) -> usize {
    size_of::<T>()
}

/// `bytes` as the docs write a power-of-two size ("64 TiB", "1 GiB").
fn human(bytes: usize) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let (mut v, mut u) = (bytes, 0);
    while v >= 1024 && v % 1024 == 0 && u + 1 < units.len() {
        v /= 1024;
        u += 1;
    }
    format!("{v} {}", units[u])
}

#[test]
fn region_md_header_table_is_the_region_header() {
    macro_rules! field {
        ($f:ident) => {
            (
                offset_of!(RegionHeader, $f),
                size_of_field(|h| &h.$f),
                stringify!($f),
            )
        };
    }
    let code = [
        field!(magic),
        field!(version),
        field!(header_len),
        field!(len),
        field!(epoch),
        field!(max_len),
        field!(page_size),
        field!(policy),
        field!(flags),
        field!(creator_pid),
        field!(nodes),
        field!(checksum),
        field!(descriptor_at),
        field!(reserved),
    ];
    let rows = table_after(&format!("## Header layout (version {REGION_VERSION})"));
    let doc: Vec<(usize, usize, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[0].parse().expect("offset column"),
                r[1].parse().expect("size column"),
                r[2],
            )
        })
        .collect();
    assert_eq!(doc, code, "docs/region.md's header table: (offset, size, field) of every RegionHeader field, in order");
    let end = code.last().map(|&(o, s, _)| o + s);
    assert_eq!(
        end,
        Some(HEADER_FIELDS_LEN),
        "the table covers the whole header"
    );
    assert_eq!(size_of::<RegionHeader>(), HEADER_FIELDS_LEN);

    let meaning = |field: &str| {
        rows.iter()
            .find(|r| r[2] == field)
            .map(|r| r[3])
            .expect("row present")
    };
    let magic = String::from_utf8(REGION_MAGIC.to_le_bytes().to_vec()).expect("ascii magic");
    assert!(
        meaning("magic").starts_with(&format!("`\"{magic}\"`")),
        "magic"
    );
    assert_eq!(meaning("version"), REGION_VERSION.to_string());
    assert_eq!(meaning("header_len"), HEADER_LEN.to_string());
    let pages = [
        (0, "base"),
        (1, "THP"),
        (2, "hugetlb 2 MiB"),
        (3, "hugetlb 1 GiB"),
    ];
    let codes: Vec<String> = pages
        .iter()
        .map(|(c, name)| format!("{c} {name}"))
        .collect();
    assert_eq!(meaning("page_size"), codes.join(", "));
    let page_of = [
        PageSize::Base,
        PageSize::Thp,
        PageSize::Huge2M,
        PageSize::Huge1G,
    ];
    for (&(c, _), p) in pages.iter().zip(page_of) {
        assert_eq!(PageSize::from_raw(c), Some(p), "page size code {c}");
    }
    assert_eq!(
        PageSize::from_raw(4),
        None,
        "no page size code beyond the documented ones"
    );
    let policies = [
        (MemPolicy::Bind, "bind"),
        (MemPolicy::Preferred, "preferred"),
        (MemPolicy::Interleave, "interleave"),
    ];
    let codes: Vec<String> = policies
        .iter()
        .map(|&(p, name)| format!("{} {name}", p as u32))
        .collect();
    assert_eq!(meaning("policy"), format!("0 none, {}", codes.join(", ")));
    let flags = [
        (FLAG_POPULATE, "populate"),
        (FLAG_LOCK, "lock"),
        (FLAG_DONTFORK, "dontfork"),
        (FLAG_DONTDUMP, "dontdump"),
        (FLAG_COMMIT, "commit"),
    ];
    let codes: Vec<String> = flags
        .iter()
        .map(|(f, name)| format!("{f} {name}"))
        .collect();
    assert_eq!(meaning("flags"), codes.join(", "));
    assert_eq!(
        flags.iter().fold(0, |a, (f, _)| a | f),
        KNOWN_FLAGS,
        "every known flag is documented"
    );
    assert_eq!(
        meaning("nodes"),
        format!("node bitmask (nodes 0–{})", NodeSet::CAPACITY - 1)
    );
    assert_eq!(
        8 * field!(nodes).1,
        NodeSet::CAPACITY as usize,
        "the nodes field holds exactly the documented nodes"
    );
    assert_eq!(meaning("reserved"), "zero");
}

/// The table says `descriptor_at` is not in the checksum: a header whose
/// `descriptor_at` changed still validates, one whose `max_len` changed does not.
#[test]
#[cfg_attr(miri, ignore)]
fn region_md_descriptor_at_is_outside_the_checksum() {
    let region = RegionOptions::new(1 << 20)
        .create_anonymous("documented-header")
        .expect("region");
    let mut bytes = [0u8; HEADER_FIELDS_LEN];
    region.read_at(0, &mut bytes).expect("header bytes");
    let at = offset_of!(RegionHeader, descriptor_at);
    bytes[at..at + 8].copy_from_slice(&12288u64.to_le_bytes());
    assert!(
        parse_header(&bytes, 1 << 20).is_ok(),
        "descriptor_at is not checked by the checksum"
    );
    let m = offset_of!(RegionHeader, max_len);
    bytes[m..m + 8].copy_from_slice(&(2u64 << 30).to_le_bytes());
    assert!(
        parse_header(&bytes, 1 << 20).is_err(),
        "max_len is in the checksum"
    );
}

#[test]
fn region_md_limits_are_the_constants() {
    assert!(DOC.contains(&format!(
        "The first {HEADER_LEN} bytes of every region are reserved for the header; user data\nstarts at `data_offset()` = {HEADER_LEN}."
    )));
    assert!(
        DOC.contains(&format!(
            "max_len (non-zero, ≤ {}, page multiple)",
            human(MAX_REGION_LEN)
        )),
        "attach's max_len bound"
    );
    assert!(
        DOC.contains(&format!(
            "at least 1 GiB;\nat most {})",
            human(MAX_REGION_LEN)
        )),
        "the maximum size"
    );
    assert!(
        DOC.contains(&format!(
            "`max_len` is at most `MAX_POOL_LEN`\n({})",
            human(MAX_POOL_LEN)
        )),
        "the pool bound"
    );
    assert_eq!(
        (human(MAX_REGION_LEN), human(MAX_POOL_LEN)),
        ("64 TiB".to_string(), "1 TiB".to_string())
    );
}

/// "default 4× the initial length, at least 1 GiB".
#[test]
#[cfg_attr(miri, ignore)]
fn region_md_default_max_len_is_four_times_at_least_a_gib() {
    assert!(DOC.contains("`max_len` (default 4× the initial length, at least 1 GiB;"));
    let small = RegionOptions::new(1 << 20)
        .create_anonymous("documented-small")
        .expect("small region");
    assert_eq!(human(small.max_len()), "1 GiB");
    let large = RegionOptions::new(512 << 20)
        .commit(false)
        .create_anonymous("documented-large")
        .expect("large region");
    assert_eq!(large.max_len(), 4 * (512 << 20));
}
