//! `numashm inspect PATH`: validate and show a segment without disturbing it
//! (read-only mapping, no peer slot taken, nothing allocated).

use std::path::Path;

use numashm::{PeerState, RingKind, Segment};
use serde_json::json;

use crate::util::{ctx, human, table, CliError};

pub fn run(path: &Path, as_json: bool) -> Result<(), CliError> {
    let r = Segment::inspect(path).map_err(ctx("inspect", path))?;
    let info = &r.region;
    let placement = info.placement.map(|p| (format!("{:?}", p.policy()), p.nodes().iter().collect::<Vec<u32>>()));
    if as_json {
        let v = json!({
            "path": path.display().to_string(),
            "version": info.version,
            "len": info.len,
            "max_len": info.max_len,
            "epoch": info.epoch,
            "page_size": format!("{:?}", info.cache.page_size),
            "populate": info.cache.populate,
            "lock": info.cache.lock,
            "commit": info.commit,
            "placement": placement.as_ref().map(|(p, n)| json!({"policy": p, "nodes": n})),
            "creator_pid": info.creator_pid,
            "offsets": {"segment_header": r.offsets.0, "peers": r.offsets.1, "rings": r.offsets.2, "allocator": r.offsets.3},
            "allocator": {"committed_bytes": r.committed_bytes, "reserved_bytes": r.reserved_bytes},
            "classes": r.classes.iter().map(|c| json!({
                "class": c.class, "slot_size": c.slot_size, "slots_per_extent": c.slots_per_extent,
                "extents": c.extents.iter().map(|e| json!({
                    "node": e.node, "released": e.released, "free": e.free, "allocated": e.allocated, "in_flight": e.in_flight,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "rings": r.rings.iter().enumerate().map(|(i, ring)| json!({
                "ring": i, "kind": format!("{:?}", ring.spec.kind), "capacity": ring.spec.capacity,
                "fill": ring.fill, "producer": ring.producer, "consumer": ring.consumer, "skipped": ring.skipped,
            })).collect::<Vec<_>>(),
            "peers": r.peers.iter().map(|p| json!({
                "index": p.index, "state": format!("{:?}", p.state), "pid": p.pid, "epoch": p.epoch,
                "alive": p.alive, "recovered_by": p.recovered_by, "sent": p.sent, "received": p.received, "reclaimed": p.reclaimed,
                "mapping": format!("{:#x}", p.mapping),
                "slots_allocated": r.held.iter().find(|h| h.0 == p.index + 1).map_or(0, |h| h.1),
                "slots_in_flight": r.held.iter().find(|h| h.0 == p.index + 1).map_or(0, |h| h.2),
            })).collect::<Vec<_>>(),
            "held": r.held.iter().map(|(o, a, f)| json!({"owner": o, "allocated": a, "in_flight": f})).collect::<Vec<_>>(),
            "pages": {
                "page_size": r.pages.page_size,
                "per_node": r.pages.per_node.iter().map(|(n, c)| json!({"node": n, "pages": c})).collect::<Vec<_>>(),
                "not_resident": r.pages.not_present,
            },
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("segment {}", path.display());
    let rows = vec![
        vec!["layout version".into(), format!("region {}, segment {}", info.version, numashm::SEGMENT_VERSION)],
        vec!["size".into(), format!("{} (max {})", human(info.len as u64), human(info.max_len as u64))],
        vec!["growth epoch".into(), info.epoch.to_string()],
        vec!["page size".into(), format!("{:?}", info.cache.page_size)],
        vec!["cache policy".into(), format!("populate={} lock={} commit={}", info.cache.populate, info.cache.lock, info.commit)],
        vec![
            "placement".into(),
            placement.map(|(p, n)| format!("{p} on nodes {n:?}")).unwrap_or_else(|| "none (first touch)".into()),
        ],
        vec!["creator".into(), format!("pid {}", info.creator_pid)],
        vec![
            "allocator".into(),
            format!("{} committed of {} reserved", human(r.committed_bytes), human(r.reserved_bytes)),
        ],
    ];
    print!("{}", table(&["field", "value"], &rows));
    println!("\nsize classes:");
    let mut rows: Vec<Vec<String>> = Vec::new();
    for c in &r.classes {
        for (i, e) in c.extents.iter().enumerate() {
            rows.push(vec![
                if i == 0 { c.class.to_string() } else { String::new() },
                if i == 0 { human(c.slot_size as u64) } else { String::new() },
                i.to_string(),
                format!("{}{}", e.node.map(|n| n.to_string()).unwrap_or_else(|| "-".into()), if e.released { " (released)" } else { "" }),
                e.free.to_string(),
                e.allocated.to_string(),
                e.in_flight.to_string(),
            ]);
        }
    }
    print!("{}", table(&["class", "slot", "extent", "node", "free", "allocated", "in flight"], &rows));
    println!("\nrings:");
    let rows: Vec<Vec<String>> = r
        .rings
        .iter()
        .enumerate()
        .map(|(i, ring)| {
            let who = |p: Option<u32>| p.map(|p| format!("peer {p}")).unwrap_or_else(|| "-".into());
            vec![
                i.to_string(),
                match ring.spec.kind {
                    RingKind::Spsc => "spsc".into(),
                    RingKind::Mpmc => "mpmc".into(),
                },
                ring.spec.capacity.to_string(),
                ring.fill.to_string(),
                who(ring.producer),
                who(ring.consumer),
                ring.skipped.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["ring", "kind", "capacity", "fill", "producer", "consumer", "stale skipped"], &rows));
    println!("\npeers:");
    let rows: Vec<Vec<String>> = r
        .peers
        .iter()
        .map(|p| {
            vec![
                p.index.to_string(),
                match p.recovered_by {
                    Some(by) => format!("{:?} (recovery: pid {by})", p.state),
                    None => format!("{:?}", p.state),
                },
                p.pid.to_string(),
                if p.state == PeerState::Attached { (if p.alive { "yes" } else { "NO (recoverable)" }).into() } else { "-".into() },
                p.epoch.to_string(),
                p.sent.to_string(),
                p.received.to_string(),
                r.held.iter().find(|h| h.0 == p.index + 1).map_or(0, |h| h.1 + h.2).to_string(),
                p.reclaimed.to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["peer", "state", "pid", "alive", "epoch", "sent", "received", "slots held", "reclaimed"], &rows));
    println!("\npages per NUMA node (measured now, {} pages):", human(r.pages.page_size as u64));
    let mut rows: Vec<Vec<String>> = r
        .pages
        .per_node
        .iter()
        .map(|(n, c)| vec![n.to_string(), c.to_string(), human((*c * r.pages.page_size) as u64)])
        .collect();
    rows.push(vec!["not resident".into(), r.pages.not_present.to_string(), human((r.pages.not_present * r.pages.page_size) as u64)]);
    print!("{}", table(&["node", "pages", "bytes"], &rows));
    Ok(())
}
