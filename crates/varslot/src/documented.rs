//! docs/varslot.md against the code (the multi-writer allocator's byte
//! layout): the header words, class table and extent table rows, the slot
//! metadata and handle bit tables, and the layout formulas, each built from
//! the constants (and [`Layout::compute`]), so changing either side fails.

use crate::handle::{
    Handle, CLASS_BITS, EXTENT_BITS, GEN_BITS, GEN_MASK, MAX_CLASSES, MAX_EXTENTS, MAX_SLOTS,
    SLOT_BITS,
};
use crate::layout::*;

const DOC: &str = include_str!("../../../docs/varslot.md");

#[path = "../../region/src/doc_table.rs"]
mod doc_table;

/// The body rows of the first table after `anchor`, as trimmed cells.
fn table_after(anchor: &str) -> Vec<Vec<&'static str>> {
    doc_table::table_after(DOC, "docs/varslot.md", anchor)
}

/// The first two cells of every row.
fn keys(rows: &[Vec<&'static str>]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect()
}

fn column(rows: &[Vec<&'static str>], key: &str, col: usize) -> &'static str {
    rows.iter()
        .find(|r| r[0] == key)
        .map(|r| r[col])
        .unwrap_or_else(|| panic!("no row {key:?}"))
}

#[test]
fn varslot_md_header_words_are_the_h_constants() {
    assert!(DOC.contains(&format!("## Byte layout, version {VERSION}")));
    let heading = format!(
        "### Header: words 0..{HEADER_WORDS} ({} bytes)",
        8 * HEADER_WORDS
    );
    let rows = table_after(&heading);
    let named = [
        (H_MAGIC, "magic"),
        (H_VERSION, "version"),
        (H_CLASS_COUNT, "class_count"),
        (H_MAX_EXTENTS, "max_extents"),
        (H_CONTROL_WORDS, "control_words"),
        (H_DATA_START, "data_start"),
        (H_MAX_LEN, "max_len"),
        (H_DATA_END, "data_end"),
        (H_EPOCH, "epoch"),
        (H_COMMITTED, "committed"),
        (H_GROW_REQUESTS, "grow_requests"),
        (H_RECLAIMS, "reclaims"),
    ];
    let mut code: Vec<(String, String, String)> = named
        .iter()
        .map(|&(w, f)| (w.to_string(), (8 * w).to_string(), format!("`{f}`")))
        .collect();
    let first_free = H_RECLAIMS + 1;
    code.push((
        format!("{first_free}..{HEADER_WORDS}"),
        (8 * first_free).to_string(),
        "reserved".into(),
    ));
    let doc: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].to_string(), r[2].to_string()))
        .collect();
    assert_eq!(doc, code, "header rows: word, byte, field");

    let magic = String::from_utf8(MAGIC.to_le_bytes().to_vec()).expect("ascii");
    let meaning = |w: usize| column(&rows, &w.to_string(), 3);
    assert!(
        meaning(H_MAGIC).starts_with(&format!("`b\"{magic}\"`")),
        "magic"
    );
    assert_eq!(meaning(H_VERSION), VERSION.to_string());
    assert_eq!(meaning(H_CLASS_COUNT), format!("C, 1..={MAX_CLASSES}"));
    assert_eq!(
        meaning(H_MAX_EXTENTS),
        format!("E, extents per class, 1..={MAX_EXTENTS}")
    );
    assert!(
        meaning(H_DATA_START).contains(&format!("multiple of {EXTENT_ALIGN}")),
        "data_start alignment"
    );
    assert_eq!(
        column(&rows, &format!("{first_free}..{HEADER_WORDS}"), 3),
        "0"
    );
}

#[test]
fn varslot_md_class_and_extent_tables_are_the_c_and_x_constants() {
    let heading = format!(
        "### Class table: words {CLASS_TABLE} .. {CLASS_TABLE} + {CLASS_WORDS}C ({} bytes per class)",
        8 * CLASS_WORDS
    );
    let rows = table_after(&heading);
    let code = [
        (format!("+{C_SLOT_SIZE}"), "`slot_size` (bytes)".to_string()),
        (format!("+{C_SLOTS}"), "`slots_per_extent` (S)".to_string()),
        (
            format!("+{C_EXTENTS}"),
            "`extent_count` — published extents (the SYNC extent-publish word)".to_string(),
        ),
        (
            format!("+{}..+{CLASS_WORDS}", C_EXTENTS + 1),
            "reserved".to_string(),
        ),
    ];
    assert_eq!(keys(&rows), code, "class table rows");

    let heading = format!(
        "### Extent table: from word X0 = round_up({CLASS_TABLE} + {CLASS_WORDS}C, {EXT_WORDS}), {EXT_WORDS} words ({} bytes) per extent",
        8 * EXT_WORDS
    );
    let rows = table_after(&heading);
    let none = format!("`{:#x}`", NONE).replace("0xffffffff", "0xffff_ffff");
    let code = [
        (format!("+{X_HEAD}"), format!("free-list head: bits 0..32 slot index ({none} = empty), bits 32..64 tag (alone on its cache line)")),
        (format!("+{X_OFFSET}"), format!("`offset`: first byte of the extent, from the data-area base (multiple of {EXTENT_ALIGN})")),
        (
            format!("+{X_NODE}"),
            format!("bits 0..32 NUMA node ({none} = none); bit {} `released`", X_RELEASED.trailing_zeros()),
        ),
        ("others".to_string(), "reserved".to_string()),
    ];
    assert_eq!(keys(&rows), code, "extent table rows");
    assert_eq!(X_RELEASED.count_ones(), 1);
    assert_eq!(
        head_index(head_next(0, NONE)),
        NONE,
        "an empty head's index is NONE"
    );
    assert_eq!(
        head_next(5 << 32 | 1, 2),
        6 << 32 | 2,
        "the tag is bits 32..64, +1 per CAS"
    );
    // The head alone on its (64-byte) cache line: the next field is a line further on.
    const { assert!((X_OFFSET - X_HEAD) * 8 >= 64) };
}

#[test]
fn varslot_md_layout_formulas_are_layout_compute() {
    assert!(DOC.contains(&format!(
        "Class c's extent e is at word `X0 + (c * E + e) * {EXT_WORDS}`."
    )));
    assert!(DOC.contains(&format!(
        "Class c's metadata starts at `M_c = round_up(X0 + C * E * {EXT_WORDS}, {META_STRIDE}) + Σ_{{k<c}} {META_STRIDE} * E * S_k`;\nslot s of extent e is word `M_c + {META_STRIDE} * (e * S_c + s)`: each slot's metadata word has a\n{}-byte line to itself. Word +{META_AUX} of that line is the slot's *aux* word",
        8 * META_STRIDE
    )));
    assert!(DOC.contains(&format!(
        "An extent occupies `round_up(slot_size * S, {EXTENT_ALIGN})` bytes"
    )));
    let (classes, e) = ([(64u64, 3u64), (128, 5), (4096, 2)], 7usize);
    let layout = Layout::compute(&classes, e as u64).expect("layout");
    let c = classes.len();
    let x0 = round_up(CLASS_TABLE + CLASS_WORDS * c, EXT_WORDS).expect("x0");
    let mut m = round_up(x0 + c * e * EXT_WORDS, META_STRIDE).expect("m0");
    for (i, (info, &(size, slots))) in layout.classes.iter().zip(&classes).enumerate() {
        assert_eq!(
            info.class_word,
            CLASS_TABLE + i * CLASS_WORDS,
            "class {i}'s row"
        );
        assert_eq!(
            info.ext_base,
            x0 + i * e * EXT_WORDS,
            "class {i}'s extent 0"
        );
        assert_eq!(info.meta_base, m, "M_{i}");
        assert_eq!(
            info.meta_index(2, 1),
            m + META_STRIDE * (2 * slots as usize + 1),
            "slot 1 of extent 2"
        );
        assert_eq!(
            info.extent_bytes,
            round_up(size as usize * slots as usize, EXTENT_ALIGN).expect("bytes")
        );
        m += META_STRIDE * e * slots as usize;
    }
    assert_eq!(
        layout.control_words, m,
        "the control area ends after the last class's metadata"
    );
}

#[test]
fn varslot_md_metadata_and_handle_bits_are_the_encodings() {
    let rows = table_after("### Slot metadata: after the extent table");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0][0], rows[0][1]),
        ("0..2", &*format!("state: {S_FREE} Free, {S_ALLOCATED} Allocated, {S_IN_FLIGHT} InFlight (3 is corrupt)"))
    );
    assert_eq!(rows[1][0], format!("2..{}", 2 + GEN_BITS));
    assert!(rows[1][1].starts_with(&format!(
        "generation ({GEN_BITS} bits, never 0; starts at 1, +1 on every free, wraps to 1)"
    )));
    assert_eq!(rows[2][0], format!("{}..64", 2 + GEN_BITS));
    let w = meta(S_IN_FLIGHT, 0x2aaa_aaaa, 0xdead_beef);
    assert_eq!(
        (w & 3, w >> 2 & GEN_MASK, w >> 32),
        (S_IN_FLIGHT, 0x2aaa_aaaa, 0xdead_beef),
        "bits as documented"
    );
    assert_eq!(
        (meta_state(w), meta_gen(w), meta_payload(w)),
        (S_IN_FLIGHT, 0x2aaa_aaaa, 0xdead_beef)
    );
    assert_eq!(next_gen(GEN_MASK as u32), 1, "the generation wraps to 1");

    let rows = table_after("## Handle (u64)");
    let mut at = 0;
    let mut code = Vec::new();
    for (name, bits) in [
        ("generation", GEN_BITS),
        ("slot", SLOT_BITS),
        ("extent", EXTENT_BITS),
        ("class", CLASS_BITS),
    ] {
        code.push((
            format!("{at}..{}", at + bits),
            name.to_string(),
            bits.to_string(),
        ));
        at += bits;
    }
    let doc: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].split(' ').next().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(doc, code, "handle rows: bits, field, width");
    let h = Handle::pack(MAX_CLASSES - 1, 3, 5, 7)
        .expect("handle")
        .to_u64();
    let field = |shift: u32, bits: u32| h >> shift & ((1 << bits) - 1);
    let fields = [
        field(0, GEN_BITS),
        field(GEN_BITS, SLOT_BITS),
        field(GEN_BITS + SLOT_BITS, EXTENT_BITS),
        field(GEN_BITS + SLOT_BITS + EXTENT_BITS, CLASS_BITS),
    ];
    assert_eq!(
        fields,
        [7, 5, 3, MAX_CLASSES as u64 - 1],
        "a packed handle's fields at the documented bits"
    );
    assert!(DOC.contains(&format!(
        "at most {MAX_CLASSES} classes, {MAX_EXTENTS}\nextents per class, 2^{} slots per extent.",
        MAX_SLOTS.trailing_zeros()
    )));
    assert!(DOC.contains(&format!("Slot sizes are multiples of {SLOT_ALIGN} bytes")));
}
