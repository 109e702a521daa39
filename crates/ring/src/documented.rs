//! docs/ring.md against the code: the ring header, doorbell and split ring
//! block tables row by row. Offsets of crate-visible fields come from
//! `offset_of!`; the private header words (magic, version, kind, capacity) are
//! read back from a block the real constructor wrote, at the offset the doc
//! gives, so changing either the doc or the layout fails a test here.
#![allow(unsafe_code)] // lays rings over local buffers with the `unsafe` constructors.

use crate::mem::{BellBlock, PaddedIndex, RingHeader};
use crate::split_mem::{
    ConsumerBell, HeadLine, ProducerBell, SplitCell, SplitConsumerBlock, SplitProducerHeader,
    TailLine,
};
use crate::{
    init_consumer_block, split_producer_bytes, Doorbell, Mpmc, SplitConsumer, SplitProducer, Spsc,
    BELL_BYTES, BELL_MAGIC, LAYOUT_VERSION, MAX_CAPACITY, MAX_RETRIES, RING_HEADER_BYTES,
    RING_MAGIC, SPLIT_CELL_WORDS, SPLIT_CONSUMER_BYTES, SPLIT_LAYOUT_VERSION, SPLIT_MAGIC,
};
use core::mem::{offset_of, size_of};
use core::ptr::NonNull;

const DOC: &str = include_str!("../../../docs/ring.md");

#[repr(C, align(128))]
struct Buf<const N: usize>([u8; N]);

/// A documented row: offset, size (as written) and field text.
struct Row {
    offset: usize,
    size: &'static str,
    field: &'static str,
}

#[path = "../../region/src/doc_table.rs"]
mod doc_table;

/// The body rows of the first table after `anchor`.
fn table_after(anchor: &str) -> Vec<Row> {
    doc_table::table_after(DOC, "docs/ring.md", anchor)
        .into_iter()
        .map(|cells| Row {
            offset: cells[0].parse().expect("offset column"),
            size: cells[1],
            field: cells[2],
        })
        .collect()
}

/// The row whose field starts with `field`; its offset and size in bytes.
fn row(rows: &[Row], field: &str) -> (usize, usize) {
    let r = rows
        .iter()
        .find(|r| r.field.starts_with(field))
        .unwrap_or_else(|| panic!("no row {field:?}"));
    (
        r.offset,
        r.size
            .parse()
            .unwrap_or_else(|_| panic!("size of {field:?}")),
    )
}

/// The rows must tile `0..end` with no gap or overlap.
fn assert_contiguous(rows: &[Row], end: usize) {
    let mut at = 0;
    for r in rows {
        assert_eq!(
            r.offset, at,
            "row {:?} starts where the previous one ends",
            r.field
        );
        at += r
            .size
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("size of {:?}", r.field));
    }
    assert_eq!(at, end, "the rows cover the block");
}

fn word(bytes: &[u8], at: usize, size: usize) -> u64 {
    let mut w = [0u8; 8];
    w[..size].copy_from_slice(&bytes[at..at + size]);
    u64::from_ne_bytes(w)
}

fn power(v: u64) -> String {
    assert!(v.is_power_of_two(), "{v} is documented as a power of two");
    format!("2^{}", v.trailing_zeros())
}

#[test]
fn ring_md_ring_header_table_is_the_ring_header() {
    let rows = table_after(&format!(
        "## Ring layout (SPSC and MPMC), version {LAYOUT_VERSION}"
    ));
    let (last, cells) = rows.split_last().expect("rows");
    assert_eq!(
        (last.offset, last.size, last.field),
        (RING_HEADER_BYTES, "…", "cells")
    );
    assert_eq!(size_of::<RingHeader>(), RING_HEADER_BYTES);
    assert_contiguous(cells, RING_HEADER_BYTES);

    let magic = String::from_utf8(RING_MAGIC.to_le_bytes().to_vec()).expect("ascii");
    let magic_row = format!("magic `RING_MAGIC` = `b\"{magic}\"` as LE u64");
    let version_row = format!("layout version = {LAYOUT_VERSION}");
    let cap_row = format!(
        "capacity (power of two; SPSC ≥ 1, MPMC ≥ 2; ≤ {})",
        power(MAX_CAPACITY)
    );
    assert!(
        Spsc::<crate::HeapMemory>::new(1).is_ok()
            && Mpmc::<crate::HeapMemory>::new(1).is_err()
            && Mpmc::<crate::HeapMemory>::new(2).is_ok(),
        "the documented minimum capacities"
    );
    let head = offset_of!(RingHeader, head) + offset_of!(PaddedIndex, value);
    let tail = offset_of!(RingHeader, tail) + offset_of!(PaddedIndex, value);
    assert_eq!(row(cells, "`head`"), (head, 8));
    assert_eq!(row(cells, "`tail`"), (tail, 8));

    for (kind, cell_word) in [(1u64, 0u64), (2, 1)] {
        const CAP: usize = 4;
        let mut buf = Buf([0xa5u8; RING_HEADER_BYTES + 16 * CAP]);
        let (ptr, len) = (buf.0.as_mut_ptr(), buf.0.len());
        if kind == 1 {
            assert_eq!(Spsc::<crate::SharedMemory>::bytes_for(CAP), Some(len));
            // SAFETY: `buf` outlives the ring and its ends, which are dropped
            // before `buf` is read; nothing else touches it meanwhile.
            let (mut tx, mut rx) = unsafe { Spsc::init_in(ptr, len, CAP) }
                .expect("spsc")
                .split()
                .expect("ends");
            tx.push_slice(&[0xabc, 2, 3]).expect("room");
            assert_eq!(rx.pop(), Ok(0xabc));
        } else {
            assert_eq!(Mpmc::<crate::SharedMemory>::bytes_for(CAP), Some(len));
            // SAFETY: as above.
            let ring = unsafe { Mpmc::init_in(ptr, len, CAP) }.expect("mpmc");
            ring.push_slice(&[0xabc, 2, 3]).expect("room");
            assert_eq!(ring.pop(), Ok(0xabc));
        }
        let b = &buf.0;
        for (field, value) in [
            (magic_row.as_str(), RING_MAGIC),
            (&version_row, u64::from(LAYOUT_VERSION)),
            ("kind: 1 = SPSC, 2 = MPMC", kind),
            (&cap_row, CAP as u64),
            ("`head`", 1),
            ("`tail`", 3),
        ] {
            let (at, size) = row(cells, field);
            assert_eq!(word(b, at, size), value, "kind {kind}: {field} at {at}");
        }
        // Cells from RING_HEADER_BYTES, 16 bytes each: the popped position 0
        // has stamp 1 (SPSC) or sequence 0 + capacity (MPMC, freed for the next lap).
        let cell = |i: usize, w: usize| word(b, RING_HEADER_BYTES + 16 * i + 8 * w, 8);
        assert_eq!(cell(0, 1), 0xabc, "kind {kind}: cell 0's handle");
        assert_eq!(cell(1, 1), 2, "kind {kind}: cell 1's handle");
        if cell_word == 0 {
            assert_eq!(
                [cell(0, 0), cell(1, 0), cell(3, 0)],
                [1, 2, 0],
                "SPSC stamps are position + 1"
            );
        } else {
            assert_eq!(
                [cell(0, 0), cell(1, 0), cell(3, 0)],
                [CAP as u64, 2, 3],
                "MPMC sequences"
            );
        }
        // Padding is never read: garbage there changes nothing for a peer
        // that attaches.
        for r in cells.iter().filter(|r| r.field.starts_with("padding")) {
            let size: usize = r.size.parse().expect("size");
            buf.0[r.offset..r.offset + size].fill(0xff);
        }
        let ptr = buf.0.as_mut_ptr();
        if kind == 1 {
            // SAFETY: as above; the earlier views are gone.
            let (_, mut rx) = unsafe { Spsc::attach_in(ptr, len) }
                .expect("attach over garbage padding")
                .split()
                .expect("ends");
            assert_eq!(rx.pop(), Ok(2));
        } else {
            // SAFETY: as above.
            let ring = unsafe { Mpmc::attach_in(ptr, len) }.expect("attach over garbage padding");
            assert_eq!(ring.pop(), Ok(2));
        }
    }
    assert!(DOC.contains(&format!(
        "Total `{RING_HEADER_BYTES} + 16·capacity`\n  bytes (`Spsc::bytes_for`)"
    )));
    assert!(DOC.contains(&format!(
        "Total `{RING_HEADER_BYTES} + 16·capacity` bytes (`Mpmc::bytes_for`)"
    )));
    assert!(DOC.contains(&format!(
        "(`size_of::<RingHeader>() == {}`, `size_of::<BellBlock>() == {}`",
        size_of::<RingHeader>(),
        size_of::<BellBlock>()
    )));
    assert!(DOC.contains(&format!(
        "`MAX_RETRIES` ({})",
        power(u64::from(MAX_RETRIES))
    )));
}

#[test]
fn ring_md_doorbell_table_is_the_bell_block() {
    let rows = table_after(&format!("## Doorbell layout, version {LAYOUT_VERSION}"));
    assert_contiguous(&rows, BELL_BYTES);
    assert_eq!(size_of::<BellBlock>(), BELL_BYTES);
    assert_eq!(row(&rows, "`seq`"), (offset_of!(BellBlock, seq), 4));
    let waiters = row(
        &rows,
        "`waiters`: bits 0–15 parked (futex) waiters, bits 16–31 armed (eventfd) waiters",
    );
    assert_eq!(waiters, (offset_of!(BellBlock, waiters), 4));
    let magic = String::from_utf8(BELL_MAGIC.to_le_bytes().to_vec()).expect("ascii");
    let magic_row = format!("magic `BELL_MAGIC` = `b\"{magic}\"`");
    let version_row = format!("layout version = {LAYOUT_VERSION}");

    let mut buf = Buf([0xa5u8; BELL_BYTES]);
    let ptr = buf.0.as_mut_ptr();
    {
        // SAFETY: `buf` outlives the bell, dropped before `buf` is read.
        let bell = unsafe { Doorbell::init_in(ptr, BELL_BYTES) }.expect("bell");
        // Kept registered (guards forgotten) so the word can be read below.
        core::mem::forget(bell.arm());
        core::mem::forget(bell.arm());
    }
    let b = &buf.0;
    assert_eq!(
        word(b, waiters.0, 4),
        2 << 16,
        "two armed waiters count in bits 16–31"
    );
    assert_eq!(word(b, row(&rows, &magic_row).0, 4), u64::from(BELL_MAGIC));
    assert_eq!(
        word(b, row(&rows, &version_row).0, 4),
        u64::from(LAYOUT_VERSION)
    );
    // Parked waiters are bits 0–15: write 5 parked, 3 armed and read them
    // back, with garbage in the padding (never read).
    let padding = row(&rows, "padding (never written or read)");
    buf.0[padding.0..padding.0 + padding.1].fill(0xff);
    buf.0[waiters.0..waiters.0 + 4].copy_from_slice(&(3u32 << 16 | 5).to_ne_bytes());
    // SAFETY: as above; the earlier bell is gone.
    let bell = unsafe { Doorbell::attach_in(buf.0.as_mut_ptr(), BELL_BYTES) }.expect("attach");
    let w = bell.waiters();
    assert_eq!((w.parked, w.armed), (5, 3));
}

#[test]
fn ring_md_split_ring_tables_are_the_split_blocks() {
    const CAP: usize = 4;
    let cell_bytes = size_of::<SplitCell>();
    let header = size_of::<SplitProducerHeader>();
    let magic = String::from_utf8(SPLIT_MAGIC.to_le_bytes().to_vec()).expect("ascii");
    assert!(DOC.contains(&format!(
        "Producer block, `split_producer_bytes(capacity)` = {header} + {cell_bytes} × capacity bytes,\n128-aligned, magic `b\"{magic}\"`, layout version {SPLIT_LAYOUT_VERSION}:"
    )));
    assert_eq!(split_producer_bytes(CAP), header + cell_bytes * CAP);
    assert!(DOC.contains(&format!(
        "Consumer block, `SPLIT_CONSUMER_BYTES` = {} bytes",
        size_of::<SplitConsumerBlock>()
    )));
    assert_eq!(size_of::<SplitConsumerBlock>(), SPLIT_CONSUMER_BYTES);

    let prows = table_after("Producer block, `split_producer_bytes(capacity)`");
    let crows = table_after("Consumer block, `SPLIT_CONSUMER_BYTES`");
    let words: Vec<String> = (0..SPLIT_CELL_WORDS).map(|i| format!("w{i}")).collect();
    let cells_row = format!("cells `[stamp, {}]`", words.join(", "));
    let version_row = format!("layout version ({SPLIT_LAYOUT_VERSION})");
    let cap_row = format!("capacity (power of two, 1..={})", power(MAX_CAPACITY));
    let tail = offset_of!(SplitProducerHeader, tail) + offset_of!(TailLine, tail);
    let data_seq = offset_of!(SplitProducerHeader, bell) + offset_of!(ProducerBell, data_seq);
    let space_waiting =
        offset_of!(SplitProducerHeader, bell) + offset_of!(ProducerBell, space_waiting);
    let head = offset_of!(SplitConsumerBlock, head) + offset_of!(HeadLine, head);
    let parked = offset_of!(SplitConsumerBlock, bell) + offset_of!(ConsumerBell, parked);
    let space_seq = offset_of!(SplitConsumerBlock, bell) + offset_of!(ConsumerBell, space_seq);
    let documented: Vec<(usize, &str)> = prows.iter().map(|r| (r.offset, r.size)).collect();
    let cells_size = format!("{cell_bytes} × cap");
    let code = [
        (0, "8"),
        (8, "4"),
        (16, "8"),
        (tail, "8"),
        (data_seq, "4"),
        (space_waiting, "4"),
        (header, &cells_size[..]),
    ];
    assert_eq!(documented, code, "producer block rows (offset, size)");
    assert_eq!(row(&prows, "`tail`").0, tail);
    assert_eq!(row(&prows, "`data_seq`").0, data_seq);
    assert_eq!(row(&prows, "`space_waiting`").0, space_waiting);
    assert!(
        prows.last().is_some_and(|r| r.field == cells_row),
        "{cells_row}"
    );
    let documented: Vec<(usize, usize)> = crows
        .iter()
        .map(|r| (r.offset, r.size.parse().expect("size")))
        .collect();
    assert_eq!(
        documented,
        [(head, 8), (parked, 4), (space_seq, 4)],
        "consumer block rows (offset, size)"
    );
    assert_eq!(row(&crows, "`head`").0, head);
    assert_eq!(row(&crows, "`parked`").0, parked);
    assert_eq!(row(&crows, "`space_seq`").0, space_seq);

    let mut pb = Buf([0xa5u8; 384 + 32 * CAP]);
    let mut cb = Buf([0xa5u8; 256]);
    assert_eq!(
        (pb.0.len(), cb.0.len()),
        (split_producer_bytes(CAP), SPLIT_CONSUMER_BYTES)
    );
    let p = NonNull::new(pb.0.as_mut_ptr()).expect("non-null");
    let c = NonNull::new(cb.0.as_mut_ptr()).expect("non-null");
    {
        // SAFETY: both buffers outlive the ends, which are dropped before the
        // buffers are read; each block is written by its own end only.
        let (mut tx, mut rx) = unsafe {
            init_consumer_block(c, SPLIT_CONSUMER_BYTES).expect("consumer block");
            let tx = SplitProducer::init_shared(
                p,
                split_producer_bytes(CAP),
                CAP,
                Some(c),
                SPLIT_CONSUMER_BYTES,
            );
            (
                tx.expect("producer"),
                SplitConsumer::attach_shared(
                    p,
                    split_producer_bytes(CAP),
                    c,
                    SPLIT_CONSUMER_BYTES,
                    0,
                )
                .expect("consumer"),
            )
        };
        tx.push([7, 8, 9]).expect("room");
        tx.push([10, 11, 12]).expect("room");
        assert_eq!(rx.pop().expect("pop"), Some([7, 8, 9]));
    }
    let b = &pb.0;
    for (field, value) in [
        ("magic (last at init, Release)", SPLIT_MAGIC),
        (version_row.as_str(), u64::from(SPLIT_LAYOUT_VERSION)),
        (&cap_row, CAP as u64),
        ("`tail`", 2),
        ("`data_seq`", 0),
        ("`space_waiting`", 0),
    ] {
        let (at, size) = row(&prows, field);
        assert_eq!(word(b, at, size), value, "producer block: {field} at {at}");
    }
    let cell = |i: usize, w: usize| word(b, header + cell_bytes * i + 8 * w, 8);
    assert_eq!(
        [cell(0, 0), cell(0, 1), cell(0, 2), cell(0, 3)],
        [1, 7, 8, 9],
        "cell 0 = [stamp, w0, w1, w2]"
    );
    assert_eq!([cell(1, 0), cell(1, 1), cell(1, 3)], [2, 10, 12], "cell 1");
    let b = &cb.0;
    for (field, value) in [("`head`", 1), ("`parked`", 0), ("`space_seq`", 0)] {
        let (at, size) = row(&crows, field);
        assert_eq!(word(b, at, size), value, "consumer block: {field} at {at}");
    }
}
