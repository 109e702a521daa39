//! docs/ownership.md against the code: the wire header and body tables
//! (every documented field read back, at the offset its row gives, from the
//! bytes `Message::encode` makes, and every kind the decoder accepts listed)
//! and the descriptor layout table (read back from a real descriptor).
//! Changing either the doc or the code fails a test here.

use crate::{
    decode_message, CapMode, Descriptor, ErrorCode, Message, OfferFlags, OfferInfo, OfferState,
    Perms, WireError, DESCRIPTOR_LEN, DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION, MAX_CAPABILITIES,
    MAX_CLIENTS, MAX_LIST, MAX_MAPPINGS, MAX_MESSAGE, MAX_OFFERS_PER_PROCESS, MAX_OFFER_LEN,
    MAX_REGIONS_PER_CLIENT, OFFER_INFO_LEN, WIRE_HEADER_LEN, WIRE_MAGIC, WIRE_VERSION,
};
use numashm_region::process::PID_MAX;
use numashm_region::RegionOptions;

const DOC: &str = include_str!("../../../docs/ownership.md");

#[path = "../../region/src/doc_table.rs"]
mod doc_table;

/// The body rows of the first table after `anchor`, as trimmed cells.
fn table_after(anchor: &str) -> Vec<Vec<&'static str>> {
    doc_table::table_after(DOC, "docs/ownership.md", anchor)
}

/// `text` split at the commas outside parentheses and braces.
fn top_level_items(text: &str) -> Vec<&str> {
    let (mut depth, mut from, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[from..].trim());
    out
}

/// `(name, bytes)` of each documented field "name u32" / "name u64 (...)".
fn fields(text: &str) -> Vec<(&str, usize)> {
    top_level_items(text)
        .into_iter()
        .map(|item| {
            let mut words = item.split_whitespace();
            let name = words.next().expect("field name");
            let size = match words.next() {
                Some("u32") => 4,
                Some("u64") => 8,
                other => panic!("{item:?}: unknown type {other:?}"),
            };
            (name, size)
        })
        .collect()
}

/// The variant name a message's `Debug` output starts with.
fn variant(debug: &str) -> &str {
    debug.split([' ', '{']).next().unwrap_or("")
}

fn le(bytes: &[u8], at: usize, size: usize) -> u64 {
    let mut w = [0u8; 8];
    w[..size].copy_from_slice(&bytes[at..at + size]);
    u64::from_le_bytes(w)
}

/// One message of each kind, with distinct values, and the value each
/// documented body field must hold.
fn samples() -> Vec<(Message, Vec<(&'static str, u64)>)> {
    let flags = OfferFlags::from_bits(1 | 2 | 16).expect("flags");
    let claim = OfferFlags::from_bits(1 | 4).expect("flags");
    let entry = |i: u32| OfferInfo {
        src_pid: 100 + i,
        dest_pid: 200 + i,
        addr: 0x10_000 * u64::from(i + 1),
        len: 0x1000 * u64::from(i + 1),
        flags: OfferFlags::from_bits(i + 1).expect("flags"),
        state: OfferState::from_raw(i + 1),
    };
    vec![
        (
            Message::Offer {
                dest_pid: 11,
                flags,
                addr: 0x7000,
                len: 0x3000,
            },
            vec![
                ("dest_pid", 11),
                ("flags", 19),
                ("addr", 0x7000),
                ("len", 0x3000),
            ],
        ),
        (
            Message::Claim {
                src_pid: 12,
                flags: claim,
                addr: 0x9000,
            },
            vec![("src_pid", 12), ("flags", 5), ("addr", 0x9000)],
        ),
        (Message::List { max: 77 }, vec![("max", 77)]),
        (
            Message::DropDone {
                offer_id: 0x1234_5678_9abc,
                errno: 13,
            },
            vec![("offer_id", 0x1234_5678_9abc), ("errno", 13)],
        ),
        (Message::RegisterRegion, vec![]),
        (
            Message::AttachCapability {
                owner_pid: 14,
                token: 0xfeed_f00d_0000_0001,
            },
            vec![("owner_pid", 14), ("token", 0xfeed_f00d_0000_0001)],
        ),
        (Message::Done { value: 0x55aa }, vec![("value", 0x55aa)]),
        (
            Message::Error {
                code: ErrorCode::Limit,
                detail: 0x77,
            },
            vec![("code", 9), ("detail", 0x77)],
        ),
        (
            Message::Claimed {
                offer_id: 21,
                len: 0x5000,
                perms: Perms::RW,
            },
            vec![("offer_id", 21), ("len", 0x5000), ("perms", 3)],
        ),
        (
            Message::Offers {
                total: 5,
                entries: vec![entry(0), entry(1)],
            },
            vec![("total", 5), ("count", 2)],
        ),
        (
            Message::DropRequest {
                offer_id: 31,
                addr: 0xa000,
                len: 0x2000,
                drop: Perms::W,
            },
            vec![
                ("offer_id", 31),
                ("addr", 0xa000),
                ("len", 0x2000),
                ("drop", 2),
            ],
        ),
        (
            Message::Attached {
                mode: CapMode::ReadWrite,
            },
            vec![("mode", 2)],
        ),
    ]
}

#[test]
fn ownership_md_wire_header_table_is_what_encode_writes() {
    assert!(DOC.contains(&format!("## Wire format (version {WIRE_VERSION})")));
    let rows = table_after(&format!("Header ({WIRE_HEADER_LEN} bytes):"));
    let mut at = 0;
    for r in &rows {
        assert_eq!(
            r[0].parse::<usize>().ok(),
            Some(at),
            "header row {:?} follows the previous one",
            r[2]
        );
        at += r[1].parse::<usize>().expect("size");
    }
    assert_eq!(at, WIRE_HEADER_LEN, "the header rows cover the header");
    let magic = String::from_utf8(WIRE_MAGIC.to_le_bytes().to_vec()).expect("ascii");
    let kinds = table_after("Bodies (all reserved fields must be 0):");
    for (msg, _) in samples() {
        let bytes = msg.encode();
        let name = format!("{msg:?}");
        let kind = kinds
            .iter()
            .find(|k| variant(&name) == k[1])
            .expect("a row for every kind")[0];
        for r in &rows {
            let (off, size) = (r[0].parse().expect("offset"), r[1].parse().expect("size"));
            let expected = match r[2] {
                f if f == format!("magic `\"{magic}\"`") => u64::from(WIRE_MAGIC),
                f if f == format!("version = {WIRE_VERSION}") => u64::from(WIRE_VERSION),
                "kind" => kind.parse().expect("kind number"),
                "total length in bytes, header included = the datagram's length" => {
                    bytes.len() as u64
                }
                "number of fds attached" => msg.fd_count() as u64,
                "reserved = 0" => 0,
                other => panic!("undocumented header field {other:?}"),
            };
            assert_eq!(
                le(&bytes, off, size),
                expected,
                "{name}: header {:?} at {off}",
                r[2]
            );
        }
    }
}

#[test]
fn ownership_md_wire_body_table_is_what_encode_writes() {
    let rows = table_after("Bodies (all reserved fields must be 0):");
    let samples = samples();
    assert_eq!(rows.len(), samples.len(), "one row per kind");
    for ((msg, values), row) in samples.iter().zip(&rows) {
        let name = format!("{msg:?}");
        assert_eq!(variant(&name), row[1], "row {}'s name", row[0]);
        let bytes = msg.encode();
        assert_eq!(
            le(&bytes, 6, 2),
            row[0].parse::<u64>().expect("kind"),
            "{name}'s kind"
        );
        assert_eq!(
            decode_message(&bytes).as_ref(),
            Ok(msg),
            "{name} round-trips"
        );
        assert_eq!(
            row[3].split(' ').next(),
            Some(&*msg.fd_count().to_string()),
            "{name}'s fds"
        );
        let body = &bytes[WIRE_HEADER_LEN..];
        let (fixed, entries) = match row[2].split_once(" × {") {
            Some((head, tail)) => (
                head.rsplit_once(", ").expect("count field").0,
                tail.strip_suffix('}'),
            ),
            None => (row[2], None),
        };
        let mut at = 0;
        if fixed != "—" {
            for (field, size) in fields(fixed) {
                let want = if field == "reserved" {
                    0
                } else {
                    values
                        .iter()
                        .find(|(n, _)| *n == field)
                        .unwrap_or_else(|| panic!("{name}: no value for {field}"))
                        .1
                };
                assert_eq!(
                    le(body, at, size),
                    want,
                    "{name}: {field} at body byte {at}"
                );
                at += size;
            }
        }
        if let (Some(entries), Message::Offers { entries: sent, .. }) = (entries, msg) {
            let fields = fields(entries);
            assert_eq!(
                fields.iter().map(|f| f.1).sum::<usize>(),
                OFFER_INFO_LEN,
                "an Offers entry's size"
            );
            for e in sent {
                for (field, size) in &fields {
                    let want = match *field {
                        "src_pid" => u64::from(e.src_pid),
                        "dest_pid" => u64::from(e.dest_pid),
                        "addr" => e.addr,
                        "len" => e.len,
                        "flags" => u64::from(e.flags.bits()),
                        "state" => e.state.map_or(0, |s| s as u64),
                        other => panic!("undocumented entry field {other}"),
                    };
                    assert_eq!(
                        le(body, at, *size),
                        want,
                        "Offers entry: {field} at body byte {at}"
                    );
                    at += size;
                }
            }
        }
        assert_eq!(
            at,
            body.len(),
            "{name}: the documented fields are the whole body"
        );
    }
    // No other kind decodes: the table lists them all.
    let documented: Vec<u16> = rows.iter().map(|r| r[0].parse().expect("kind")).collect();
    let mut bytes = Message::List { max: 1 }.encode();
    for kind in 0..=u16::MAX {
        bytes[6..8].copy_from_slice(&kind.to_le_bytes());
        let unknown = matches!(decode_message(&bytes), Err(WireError::UnknownKind { .. }));
        assert_eq!(unknown, !documented.contains(&kind), "kind {kind}");
    }
    let cancel = Message::Offer {
        dest_pid: 1,
        flags: OfferFlags::GRANT_R,
        addr: 0x1000,
        len: 0,
    };
    assert!(
        rows[0][3] == "1 (0 if cancel)" && cancel.fd_count() == 0,
        "a cancel carries no fd"
    );
}

fn superscript(n: u32) -> String {
    n.to_string()
        .chars()
        .map(|c| {
            "⁰¹²³⁴⁵⁶⁷⁸⁹"
                .chars()
                .nth(c.to_digit(10).expect("digit") as usize)
                .expect("digit")
        })
        .collect()
}

#[test]
fn ownership_md_wire_limits_are_the_constants() {
    let grouped = format!("{} {:03}", MAX_MESSAGE / 1000, MAX_MESSAGE % 1000);
    assert!(
        DOC.contains(&format!("at most `MAX_MESSAGE` = {grouped} bytes")),
        "MAX_MESSAGE"
    );
    let flags = [
        ("GRANT_R", OfferFlags::GRANT_R),
        ("GRANT_W", OfferFlags::GRANT_W),
        ("GRANT_X", OfferFlags::GRANT_X),
        ("DROP_R", OfferFlags::DROP_R),
        ("DROP_W", OfferFlags::DROP_W),
        ("DROP_X", OfferFlags::DROP_X),
    ];
    let listed: Vec<String> = flags
        .iter()
        .map(|(n, f)| format!("{n} {}", f.bits()))
        .collect();
    assert!(DOC.contains(&format!(
        "Flags: {}. Pids are\n1..=2{}.",
        listed.join(", "),
        superscript(PID_MAX.trailing_zeros())
    )));
    assert_eq!(
        OfferFlags::from_bits(64),
        None,
        "no flag beyond the documented ones"
    );
    assert!(PID_MAX.is_power_of_two());
    // "Addresses are page-aligned, non-zero, below 2⁵⁷".
    assert!(DOC.contains("Addresses are page-aligned, non-zero, below 2⁵⁷"));
    let offer = |addr: u64| {
        Message::Offer {
            dest_pid: 1,
            flags: OfferFlags::GRANT_R,
            addr,
            len: 0x1000,
        }
        .encode()
    };
    assert!(
        decode_message(&offer((1 << 57) - 0x1000)).is_ok()
            && decode_message(&offer(1 << 57)).is_err()
    );
    assert_eq!(MAX_OFFER_LEN, 1 << 40);
    assert!(DOC.contains("lengths are page\nmultiples up to 1 TiB"));
    let (first, last) = (
        ErrorCode::from_raw(1).expect("first"),
        ErrorCode::from_raw(15).expect("last"),
    );
    assert!(DOC.contains(&format!(
        "Error codes: `ErrorCode` (1 {first:?} … 15 {last:?})"
    )));
    assert!(
        ErrorCode::from_raw(0).is_none() && ErrorCode::from_raw(16).is_none(),
        "1..=15 are all the codes"
    );
    assert!(DOC.contains(&format!(
        "| 3 | List | max u32 (≤ {MAX_LIST}), reserved u32 | 0 |"
    )));
    assert!(DOC.contains(&format!(
        "Limits: {MAX_CLIENTS} clients, {MAX_OFFERS_PER_PROCESS} offers per process, {MAX_REGIONS_PER_CLIENT} regions per client."
    )));
}

#[test]
#[cfg_attr(miri, ignore)]
fn ownership_md_descriptor_table_is_a_real_descriptor() {
    assert!(DOC.contains(&format!(
        "The mapping table has {MAX_MAPPINGS} slots `{{key, start_time, addr, len, perms}}`"
    )));
    assert!(DOC.contains(&format!(
        "{MAX_CAPABILITIES} slots `{{state, token, target_pid, target_start}}`"
    )));
    let rows = table_after(&format!(
        "### Descriptor layout (version {DESCRIPTOR_VERSION})"
    ));
    assert!(DOC.contains(&format!(
        "The descriptor takes `DESCRIPTOR_LEN` = {DESCRIPTOR_LEN} bytes"
    )));
    let size = |s: &str| -> usize {
        s.split(" × ")
            .map(|n| n.parse::<usize>().expect("size"))
            .product()
    };
    let mut at = 0;
    for r in &rows {
        assert_eq!(
            r[0].parse::<usize>().ok(),
            Some(at),
            "row {:?} follows the previous one",
            r[2]
        );
        at += size(r[1]);
    }
    assert_eq!(at, DESCRIPTOR_LEN, "the rows cover DESCRIPTOR_LEN");

    let region = RegionOptions::new(64 << 10)
        .create_anonymous("documented-descriptor")
        .expect("region");
    let desc = Descriptor::create(&region).expect("descriptor");
    let me = std::process::id();
    let live = desc
        .create_capability(me, CapMode::ReadWrite)
        .expect("capability");
    let gone = desc
        .create_capability(me, CapMode::ReadOnly)
        .expect("capability");
    let moved = desc
        .create_capability(me, CapMode::Move)
        .expect("capability");
    desc.revoke(gone).expect("revoke");
    desc.redeem_capability(moved, me).expect("redeem");
    let owner = desc.owner().expect("owner");
    let mine = desc.get_mapping(me).expect("mapping").expect("recorded");
    let mut b = vec![0u8; DESCRIPTOR_LEN];
    region
        .read_at(region.data_offset(), &mut b)
        .expect("descriptor bytes");
    let word = |at: usize| le(&b, at, 8);

    let row = |prefix: &str| {
        rows.iter()
            .find(|r| r[2].starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix:?}"))
    };
    let magic = String::from_utf8(DESCRIPTOR_MAGIC.to_le_bytes().to_vec()).expect("ascii");
    let offset = |r: &Vec<&str>| r[0].parse::<usize>().expect("offset");
    assert_eq!(
        word(offset(row(&format!("magic `\"{magic}\"`")))),
        DESCRIPTOR_MAGIC
    );
    assert_eq!(
        word(offset(row(&format!("version = {DESCRIPTOR_VERSION}")))),
        DESCRIPTOR_VERSION
    );
    let sizes = format!(
        "table sizes: mapping slots (low 32 bits) = {MAX_MAPPINGS}, capability slots (high 32) = {MAX_CAPABILITIES}"
    );
    assert_eq!(
        word(offset(row(&sizes))),
        MAX_MAPPINGS as u64 | (MAX_CAPABILITIES as u64) << 32
    );
    let owner_at = offset(row("owner: pid (low 32 bits), generation (high 32)"));
    assert_eq!(
        word(owner_at),
        u64::from(owner.pid) | u64::from(owner.generation) << 32
    );
    assert_eq!(
        (owner.pid, owner.generation),
        (me, 1),
        "the Move redeem bumped the generation"
    );

    let maps = row("mapping slots `{key, start_time, addr, len, perms}` (perms: R 1, W 2, X 4)");
    assert_eq!(
        maps[1],
        format!("{MAX_MAPPINGS} × 40"),
        "5 words per mapping slot"
    );
    assert_eq!(
        (Perms::R.bits(), Perms::W.bits(), Perms::X.bits()),
        (1, 2, 4)
    );
    let slot = (0..MAX_MAPPINGS)
        .map(|i| offset(maps) + 40 * i)
        .find(|&s| word(s) & 0xffff_ffff == u64::from(me))
        .expect("our mapping slot");
    assert_eq!(
        word(slot) >> 32 & 1,
        0,
        "an even sequence: not being written"
    );
    let got = [
        word(slot + 8),
        word(slot + 16),
        word(slot + 24),
        word(slot + 32),
    ];
    assert_eq!(
        got,
        [
            mine.start_time,
            mine.addr as u64,
            mine.len as u64,
            u64::from(mine.perms.bits())
        ]
    );
    assert_eq!(mine.addr, region.as_ptr() as usize);

    let caps = row("capability slots `{state, token, target_pid, target_start}`; status 0 free, 1 writing, 2 active, 3 used, 4 revoked (a used or revoked slot is taken again like a free one)");
    assert_eq!(
        caps[1],
        format!("{MAX_CAPABILITIES} × 32"),
        "4 words per capability slot"
    );
    assert!(DOC.contains("`state = status | mode << 8\n| seq << 16`"));
    let cap = |token: u64| {
        (0..MAX_CAPABILITIES)
            .map(|i| offset(caps) + 32 * i)
            .find(|&s| word(s + 8) == token)
            .expect("capability slot")
    };
    for (token, status, mode) in [
        (live, 2, CapMode::ReadWrite),
        (gone, 4, CapMode::ReadOnly),
        (moved, 3, CapMode::Move),
    ] {
        let s = cap(token);
        assert_eq!(
            (word(s) & 0xff, word(s) >> 8 & 0xff),
            (status, mode as u64),
            "status and mode of {mode:?}"
        );
        assert_eq!(
            [word(s + 16), word(s + 24)],
            [u64::from(me), mine.start_time],
            "bound to our pid and start time"
        );
    }
    let unused = (0..MAX_CAPABILITIES)
        .map(|i| offset(caps) + 32 * i)
        .filter(|&s| word(s) & 0xff == 0)
        .count();
    assert_eq!(
        unused,
        MAX_CAPABILITIES - 3,
        "the other slots are free (status 0)"
    );
    // A new capability takes the first free, used or revoked slot: here the revoked one.
    let (gone_at, gone_seq) = (cap(gone), word(cap(gone)) >> 16);
    let again = desc
        .create_capability(me, CapMode::ReadOnly)
        .expect("capability");
    region
        .read_at(region.data_offset(), &mut b)
        .expect("descriptor bytes");
    let s = (0..MAX_CAPABILITIES)
        .map(|i| offset(caps) + 32 * i)
        .find(|&s| le(&b, s + 8, 8) == again);
    assert_eq!(s, Some(gone_at), "the revoked slot is reused");
    assert_eq!(
        le(&b, gone_at, 8),
        2 | (CapMode::ReadOnly as u64) << 8 | (gone_seq + 1) << 16,
        "active, next sequence"
    );
}
