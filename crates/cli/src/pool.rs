//! `numashm create` and `numashm inspect`: a layout-4 rendezvous
//! (`numashm::pool`). Each peer brings its own sealed pool, so `create` only
//! lays out the rendezvous file, and `inspect` opens every live peer's pool
//! read-only; a file that is not a rendezvous is the pool inspector's error.
//! Every value shown was read from memory other processes write: what fails
//! validation is printed as an `error:` line in its place.

use std::path::Path;

use numashm::pool::{EntryReport, EntryState, InspectError, Liveness, OwnerView, PoolReport, RendezvousReport};
use serde_json::{json, Value};

use crate::util::{ctx, human, table, CliError};

/// `numashm create PATH [--size N] [--max-peers N]` (layout 4).
pub fn create(path: &Path, max_peers: u32, size: Option<usize>) -> Result<(), CliError> {
    let len = numashm::pool::create_rendezvous(path, max_peers, size.unwrap_or(0)).map_err(ctx("create", path))?;
    println!(
        "created {} (layout 4 rendezvous, {}, {max_peers} peers max); peers join it with numashm::pool::Peer::join, each with its own pool",
        path.display(),
        human(len as u64)
    );
    Ok(())
}

/// `numashm inspect PATH [--json]` for a rendezvous.
pub fn inspect(path: &Path, as_json: bool) -> Result<(), CliError> {
    let r = numashm::pool::inspect(path).map_err(|e| {
        // A valid region holding something else (e.g. an older segment layout).
        let hint = match e {
            numashm::pool::PoolError::Corrupt { what: "rendezvous", field: "magic", .. } => {
                "; not a layout-4 rendezvous (`numashm create` makes one)"
            }
            _ => "",
        };
        CliError(format!("inspect {}: {e}{hint}", path.display()))
    })?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(path, &r)).unwrap_or_default());
    } else {
        print!("{}", text(path, &r));
    }
    Ok(())
}

fn mask(m: u64) -> String {
    if m == 0 {
        return "-".into();
    }
    (0..64).filter(|c| m >> c & 1 == 1).map(|c: u32| c.to_string()).collect::<Vec<_>>().join(",")
}

fn alive(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "yes",
        Liveness::Dead => "no",
        Liveness::Unknown => "unknown",
    }
}

fn state(s: EntryState) -> String {
    match s {
        EntryState::Corrupt(v) => format!("corrupt ({v:#x})"),
        s => format!("{s:?}"),
    }
}

/// The human report.
fn text(path: &Path, r: &RendezvousReport) -> String {
    let mut out = format!("rendezvous {} (layout {})\n", path.display(), numashm::pool::RENDEZVOUS_VERSION);
    let rows = vec![
        vec!["size".into(), human(r.len as u64)],
        vec!["max peers".into(), r.max_peers.to_string()],
        vec!["live peers".into(), r.live_peers().count().to_string()],
        vec!["change counter".into(), r.changes.to_string()],
    ];
    out += &table(&["field", "value"], &rows);
    out += "\nchannels (consumer word set):\n";
    let rows: Vec<Vec<String>> = r
        .channels
        .iter()
        .map(|c| {
            let consumer = match &c.consumer {
                Err(e) => format!("error: {e}"),
                Ok(e) if c.leftover => format!("none (leftover of entry {e}, epoch {})", c.consumer_epoch),
                Ok(e) => format!("entry {e}"),
            };
            vec![c.channel.to_string(), consumer]
        })
        .collect();
    out += &table(&["channel", "consumer"], &rows);
    out += "\npeers:\n";
    let rows: Vec<Vec<String>> = r.entries.iter().map(entry_row).collect();
    out += &table(
        &["entry", "state", "pid", "alive", "name", "produces", "consumes", "sent", "received", "dropped", "returns", "bad returns", "committed", "reserved"],
        &rows,
    );
    for e in &r.entries {
        match &e.pool {
            None => {}
            Some(Err(err)) => out += &format!("\npool of entry {} (pid {}): error: {err}\n", e.index, e.pid),
            Some(Ok(p)) => out += &pool_text(e, p),
        }
    }
    out
}

fn entry_row(e: &EntryReport) -> Vec<String> {
    let mut row = vec![
        e.index.to_string(),
        state(e.state),
        e.pid.to_string(),
        alive(e.alive).into(),
        e.pool.as_ref().and_then(|p| p.as_ref().ok()).map_or_else(|| "-".into(), |p| p.name.clone()),
        mask(e.produces),
        mask(e.consumes),
    ];
    match &e.pool {
        Some(Ok(p)) => row.extend([
            p.sent.to_string(),
            p.received.to_string(),
            p.dropped.to_string(),
            p.returns_accepted.to_string(),
            p.bad_returns.to_string(),
            human(p.committed as u64),
            human(p.reserved as u64),
        ]),
        Some(Err(_)) => row.push("error (below)".into()),
        None => row.push("-".into()),
    }
    row
}

fn pool_text(e: &EntryReport, p: &PoolReport) -> String {
    let mut out = format!("\npool of entry {} (pid {}, id {:#x}):\n", e.index, e.pid, e.pool_id);
    match &p.owner {
        // Generation: one more per hand-over to a successor process.
        Ok(o) => out += &format!("  owner: pid {} (generation {}){}\n", o.pid, o.generation, if p.ticketed { "; shows a join ticket" } else { "" }),
        Err(err) => out += &format!("  owner: error: {err}\n"),
    }
    match &p.pages {
        Ok(pages) => {
            let per: Vec<String> = pages.per_node.iter().map(|(n, c)| format!("node {n}: {c}")).collect();
            out += &format!(
                "  resident pages ({}): {}; not resident {}\n",
                human(pages.page_size as u64),
                if per.is_empty() { "none".into() } else { per.join(", ") },
                pages.not_present
            );
        }
        Err(err) => out += &format!("  pages: error: {err}\n"),
    }
    match &p.allocator {
        Err(err) => out += &format!("  error: {err}\n"),
        Ok(v) => out += &classes_text(v),
    }
    out
}

fn classes_text(v: &OwnerView) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let rows_of = v.classes.iter().enumerate().map(|(c, r)| (c.to_string(), r)).chain([("dedicated".to_string(), &v.dedicated)]);
    for (name, r) in rows_of {
        rows.push(match r {
            Ok(c) => vec![
                name,
                if c.slot_size == 0 { "-".into() } else { human(c.slot_size as u64) },
                c.extents.to_string(),
                c.slots.to_string(),
                c.free.to_string(),
                c.owned.to_string(),
                c.lent.to_string(),
            ],
            Err(err) => vec![name, format!("error: {err}")],
        });
    }
    let mut out = String::new();
    for line in table(&["class", "slot", "extents", "slots", "free", "owned", "lent"], &rows).lines() {
        out += &format!("  {line}\n");
    }
    let bad: Vec<String> = v.extents.iter().filter_map(|x| x.as_ref().err().map(|e| format!("  error: {e}\n"))).collect();
    out += &format!(
        "  extents: {} of {} ({} bad), allocator next extent at {}\n",
        v.extents.len(),
        v.max_extents,
        bad.len(),
        human(v.bump)
    );
    out + &bad.concat()
}

fn err_json(e: &impl std::fmt::Display) -> Value {
    json!({ "error": e.to_string() })
}

fn to_json(path: &Path, r: &RendezvousReport) -> Value {
    json!({
        "path": path.display().to_string(),
        "layout": numashm::pool::RENDEZVOUS_VERSION,
        "len": r.len,
        "max_peers": r.max_peers,
        "changes": r.changes,
        "channels": r.channels.iter().map(|c| json!({
            "channel": c.channel,
            "consumer": c.consumer.as_ref().map_or_else(err_json, |e| json!(e)),
            "consumer_epoch": c.consumer_epoch,
            "leftover": c.leftover,
        })).collect::<Vec<_>>(),
        "peers": r.entries.iter().map(|e| json!({
            "entry": e.index,
            "state": state(e.state),
            "epoch": e.epoch,
            "pid": e.pid,
            "alive": alive(e.alive),
            "pool_id": e.pool_id,
            "produces": e.produces,
            "consumes": e.consumes,
            "pool": match &e.pool {
                None => Value::Null,
                Some(Err(err)) => err_json(err),
                Some(Ok(p)) => pool_json(p),
            },
        })).collect::<Vec<_>>(),
    })
}

fn pool_json(p: &PoolReport) -> Value {
    let pages = p.pages.as_ref().map_or_else(
        |e: &InspectError| err_json(e),
        |pg| {
            json!({
                "page_size": pg.page_size,
                "per_node": pg.per_node.iter().map(|(n, c)| json!({"node": n, "pages": c})).collect::<Vec<_>>(),
                "not_resident": pg.not_present,
            })
        },
    );
    let class = |r: &Result<numashm::pool::ClassCensus, numashm::pool::OwnerViewError>| {
        r.as_ref().map_or_else(err_json, |c| {
            json!({"slot_size": c.slot_size, "extents": c.extents, "slots": c.slots, "free": c.free, "owned": c.owned, "lent": c.lent})
        })
    };
    let allocator = p.allocator.as_ref().map_or_else(
        |e: &InspectError| err_json(e),
        |v| {
            json!({
                "classes": v.classes.iter().map(class).collect::<Vec<_>>(),
                "dedicated": class(&v.dedicated),
                "extents": v.extents.iter().map(|x| x.as_ref().map_or_else(err_json, |x| json!({
                    "offset": x.offset, "bytes": x.bytes, "class": x.class, "slots": x.slots,
                }))).collect::<Vec<_>>(),
                "max_extents": v.max_extents,
                "bump": v.bump,
            })
        },
    );
    json!({
        "committed": p.committed,
        "reserved": p.reserved,
        "pages": pages,
        "name": p.name,
        "sent": p.sent,
        "received": p.received,
        "dropped": p.dropped,
        "returns_accepted": p.returns_accepted,
        "bad_returns": p.bad_returns,
        "lost_to_dead_consumers": p.lost_to_dead_consumers,
        "owner": p.owner.as_ref().map_or_else(|e| json!({ "error": e.to_string() }), |o| json!({ "pid": o.pid, "generation": o.generation })),
        "ticketed": p.ticketed,
        "allocator": allocator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use numashm::pool::{Peer, PeerConfig};

    /// The consumer column: the entry for a current claim, "none" for a
    /// leftover of an earlier use of the entry (JSON: `leftover`).
    #[test]
    fn a_leftover_consumer_word_is_reported_as_none() {
        let host = Peer::create_anonymous("cli-leftover", 4, PeerConfig::new("cli-leftover-a")).unwrap();
        let guest = host.join_same(PeerConfig::new("cli-leftover-b")).unwrap();
        let _rx = guest.receiver(4).unwrap();
        let fd = || numashm::pool::inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        let epoch = fd().entries.iter().find(|e| e.index == guest.entry()).unwrap().epoch;
        // Channel 5's consumer word (docs/pools.md: from byte 4608, `epoch << 32 | entry + 1`)
        // names the guest's entry in an earlier epoch, as any peer could write it.
        let word = u64::from(epoch - 1) << 32 | u64::from(guest.entry() + 1);
        let f = std::fs::File::from(host.rendezvous_fd().try_clone_to_owned().unwrap());
        std::os::unix::fs::FileExt::write_all_at(&f, &word.to_le_bytes(), 4608 + 8 * 5).unwrap();
        let r = fd();
        let text = text(Path::new("/dev/shm/x"), &r);
        assert!(text.contains(&format!("4        entry {}", guest.entry())), "{text}");
        assert!(text.contains(&format!("5        none (leftover of entry {}, epoch {})", guest.entry(), epoch - 1)), "{text}");
        let json = to_json(Path::new("/dev/shm/x"), &r);
        let ch = |c: u64| json["channels"].as_array().unwrap().iter().find(|x| x["channel"] == c).unwrap().clone();
        assert_eq!((&ch(4)["leftover"], &ch(4)["consumer_epoch"]), (&json!(false), &json!(epoch)));
        assert_eq!((&ch(5)["leftover"], &ch(5)["consumer"]), (&json!(true), &json!(guest.entry())));
    }

    /// Each pool's owner as its descriptor says (generation: hand-overs), and
    /// whether it shows a join ticket.
    #[test]
    fn inspect_shows_each_pools_owner_and_ticket() {
        let gate = Peer::create_anonymous("cli-owner", 4, PeerConfig::new("cli-owner-gate").gatekeeper()).unwrap();
        let ticket = gate.grant_join(std::process::id()).unwrap();
        let member = gate.join_same(PeerConfig::new("cli-owner-member").ticket(ticket)).unwrap();
        let r = numashm::pool::inspect_fd(gate.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        let me = std::process::id();
        let text = text(Path::new("/dev/shm/x"), &r);
        assert!(text.contains(&format!("  owner: pid {me} (generation 0)\n")), "{text}");
        assert!(text.contains(&format!("  owner: pid {me} (generation 0); shows a join ticket\n")), "{text}");
        let json = to_json(Path::new("/dev/shm/x"), &r);
        let pool = |entry: u32| json["peers"].as_array().unwrap().iter().find(|e| e["entry"] == entry).unwrap()["pool"].clone();
        assert_eq!((&pool(gate.entry())["owner"]["pid"], &pool(gate.entry())["ticketed"]), (&json!(me), &json!(false)));
        assert_eq!((&pool(member.entry())["owner"]["generation"], &pool(member.entry())["ticketed"]), (&json!(0), &json!(true)));
    }
}
