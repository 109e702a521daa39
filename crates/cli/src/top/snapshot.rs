//! One screen of `numashm top`: two successive [`RendezvousReport`]s turned
//! into rows, with rates from the difference of their counters. Every value
//! comes from memory other processes write (validated by the inspector);
//! here a counter that went backwards (a pool replaced, a ring started
//! afresh, a hostile word) gives no rate rather than a huge one.

use std::collections::HashMap;

use numashm::pool::{ClassCensus, EntryReport, EntryState, Liveness, PoolReport, RendezvousReport, RingReport};
use serde_json::{json, Value};

/// Everything one frame (or `--once --json`) shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub path: String,
    /// Seconds between the two reports the rates come from.
    pub seconds: f64,
    pub max_peers: u32,
    pub peers: Vec<PeerRow>,
    pub channels: Vec<ChannelRow>,
    pub pools: Vec<PoolRow>,
    pub recoveries: Recoveries,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    pub entry: u32,
    pub pid: u32,
    /// The name its pool header gives (`PeerConfig::new`).
    pub name: Option<String>,
    pub state: String,
    pub alive: &'static str,
    pub produces: u64,
    pub consumes: u64,
    pub sent: Option<u64>,
    pub received: Option<u64>,
    pub sent_rate: Option<f64>,
    pub received_rate: Option<f64>,
    /// Messages it dropped on purpose (a bridge with back-pressure "drop").
    pub dropped: Option<u64>,
    /// Messages it read and has not given back (over the rings it consumes).
    pub held: Option<u64>,
    /// Its slots lent to readers (in rings, held, or returned but not taken back).
    pub lent: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRow {
    pub channel: usize,
    pub consumer: Result<u32, String>,
    pub consumer_alive: Option<&'static str>,
    pub rings: Vec<RingRow>,
    /// Messages per second put on the channel (all its rings).
    pub rate: Option<f64>,
    /// Who holds the channel back, if anyone does (see [`slow`]).
    pub slow: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RingRow {
    pub producer: u32,
    pub capacity: usize,
    pub tail: u64,
    pub bound: bool,
    pub fill: Option<u64>,
    pub rate: Option<f64>,
    pub held: Option<u64>,
    pub returns_waiting: Option<u64>,
    pub returns_capacity: Option<usize>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub entry: u32,
    pub committed: usize,
    pub reserved: usize,
    pub pages: Result<Vec<(u32, usize)>, String>,
    pub extents: Result<(usize, u32), String>,
    /// Classes with slots (name, census), the dedicated extents last.
    pub classes: Vec<(String, ClassCensus)>,
    pub class_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recoveries {
    /// Returned handles the owners refused, over all pools.
    pub bad_returns: u64,
    pub bad_returns_rate: Option<f64>,
    /// Slots owners took back from consumers that died holding them, over all pools.
    pub lost_to_dead_consumers: u64,
    /// Entries the kernel says are dead (entry, pid).
    pub dead: Vec<(u32, u32)>,
    /// Channels whose named consumer is dead: its producers reclaim what it held.
    pub dead_consumers: Vec<usize>,
    /// Rings that started afresh between the two reports (a producer replaced
    /// the ring of a consumer that died or left): (channel, producer).
    pub rings_replaced: Vec<(usize, u32)>,
    /// Parts of the report that failed validation.
    pub errors: Vec<String>,
}

fn alive(l: Liveness) -> &'static str {
    match l {
        Liveness::Alive => "yes",
        Liveness::Dead => "no",
        Liveness::Unknown => "unknown",
    }
}

/// A peer is the same across two reports if its entry, pid and pool are.
type PeerKey = (u32, u32, u64);

fn key(e: &EntryReport) -> PeerKey {
    (e.index, e.pid, e.pool_id)
}

fn pool(e: &EntryReport) -> Option<&PoolReport> {
    e.pool.as_ref().and_then(|p| p.as_ref().ok())
}

/// `(now - before) / seconds`, none if the counter went backwards.
fn rate(before: Option<u64>, now: u64, seconds: f64) -> Option<f64> {
    let d = now.checked_sub(before?)?;
    (seconds > 0.0).then(|| d as f64 / seconds)
}

/// Builds the frame from the report taken `seconds` earlier and the one now.
pub fn build(path: &str, before: &RendezvousReport, now: &RendezvousReport, seconds: f64) -> Snapshot {
    let prev: HashMap<PeerKey, &EntryReport> = before.entries.iter().map(|e| (key(e), e)).collect();
    let pool_id: HashMap<u32, u64> = now.entries.iter().map(|e| (e.index, e.pool_id)).collect();
    let prev_tails: HashMap<(usize, u32, u64), u64> = before
        .channels
        .iter()
        .flat_map(|c| c.rings.iter().flatten().map(move |r| (c.channel, r)))
        .filter_map(|(c, r)| {
            let id = before.entries.iter().find(|e| e.index == r.producer)?.pool_id;
            Some(((c, r.producer, id), r.tail))
        })
        .collect();
    let mut rec = Recoveries::default();
    let mut held_by: HashMap<u32, u64> = HashMap::new();
    let mut channels = Vec::new();
    for c in &now.channels {
        let consumer = c.consumer.as_ref().map(|&e| e).map_err(ToString::to_string);
        // A leftover names an earlier user of the entry: nobody consumes the channel.
        let consumer_alive = consumer.as_ref().ok().filter(|_| !c.leftover).and_then(|&e| now.entries.iter().find(|x| x.index == e)).map(|e| e.alive);
        if consumer_alive == Some(Liveness::Dead) {
            rec.dead_consumers.push(c.channel);
        }
        if let Err(e) = &consumer {
            rec.errors.push(format!("channel {}: {e}", c.channel));
        }
        let mut rings = Vec::new();
        for r in &c.rings {
            match r {
                Ok(r) => {
                    let before = pool_id.get(&r.producer).and_then(|id| prev_tails.get(&(c.channel, r.producer, *id)).copied());
                    if before.is_some_and(|t| t > r.tail) {
                        rec.rings_replaced.push((c.channel, r.producer));
                    }
                    let row = ring_row(r, rate(before, r.tail, seconds));
                    if let (Ok(e), Some(h)) = (&consumer, row.held) {
                        *held_by.entry(*e).or_default() += h;
                    }
                    if let Some(err) = &row.error {
                        rec.errors.push(format!("channel {} ring of entry {}: {err}", c.channel, r.producer));
                    }
                    rings.push(row);
                }
                Err(e) => rec.errors.push(format!("channel {}: {e}", c.channel)),
            }
        }
        let rate = rings.iter().map(|r| r.rate).sum::<Option<f64>>();
        let slow = slow(consumer.as_ref().ok().copied().filter(|_| !c.leftover), &rings);
        let consumer_alive = if c.leftover { Some("leftover") } else { consumer_alive.map(alive) };
        channels.push(ChannelRow { channel: c.channel, consumer, consumer_alive, rings, rate, slow });
    }
    let mut peers = Vec::new();
    let mut pools = Vec::new();
    let mut bad_before = Some(0u64);
    for e in &now.entries {
        let was = prev.get(&key(e)).copied().and_then(pool);
        let p = pool(e);
        if e.alive == Liveness::Dead {
            rec.dead.push((e.index, e.pid));
        }
        let error = match &e.pool {
            Some(Err(err)) => Some(err.to_string()),
            _ => None,
        };
        if let Some(err) = &error {
            rec.errors.push(format!("pool of entry {}: {err}", e.index));
        }
        if let Some(p) = p {
            rec.bad_returns = rec.bad_returns.saturating_add(p.bad_returns);
            rec.lost_to_dead_consumers = rec.lost_to_dead_consumers.saturating_add(p.lost_to_dead_consumers);
            bad_before = bad_before.zip(was.map(|w| w.bad_returns)).map(|(a, b)| a.saturating_add(b));
            pools.push(pool_row(e.index, p, &mut rec.errors));
        }
        let lent = p.and_then(|p| p.allocator.as_ref().ok()).map(|v| {
            v.classes.iter().chain([&v.dedicated]).filter_map(|c| c.as_ref().ok()).fold(0u64, |a, c| a.saturating_add(c.lent))
        });
        peers.push(PeerRow {
            entry: e.index,
            pid: e.pid,
            name: p.map(|p| p.name.clone()),
            state: match e.state {
                EntryState::Corrupt(v) => format!("corrupt ({v:#x})"),
                s => format!("{s:?}"),
            },
            alive: alive(e.alive),
            produces: e.produces,
            consumes: e.consumes,
            sent: p.map(|p| p.sent),
            received: p.map(|p| p.received),
            sent_rate: p.and_then(|p| rate(was.map(|w| w.sent), p.sent, seconds)),
            received_rate: p.and_then(|p| rate(was.map(|w| w.received), p.received, seconds)),
            dropped: p.map(|p| p.dropped),
            held: p.map(|_| held_by.get(&e.index).copied().unwrap_or(0)),
            lent,
            error,
        });
    }
    rec.bad_returns_rate = rate(bad_before, rec.bad_returns, seconds);
    Snapshot { path: path.to_string(), seconds, max_peers: now.max_peers, peers, channels, pools, recoveries: rec }
}

fn ring_row(r: &RingReport, rate: Option<f64>) -> RingRow {
    let link = r.link.as_ref().ok().and_then(|l| l.as_ref());
    RingRow {
        producer: r.producer,
        capacity: r.capacity,
        tail: r.tail,
        bound: r.bound,
        fill: r.fill(),
        rate,
        held: link.and_then(|l| l.held()),
        returns_waiting: link.map(|l| l.returns_waiting()),
        returns_capacity: link.map(|l| l.returns_capacity),
        error: r.link.as_ref().err().map(ToString::to_string),
    }
}

/// Who holds a channel back: its consumer when one of its rings is at least
/// half full (it does not keep up) or it holds at least a ring's worth of
/// messages unreturned; a producer when at least half its return ring waits
/// for it (it does not take its returns back).
fn slow(consumer: Option<u32>, rings: &[RingRow]) -> Option<String> {
    let full = rings.iter().filter(|r| r.capacity > 0).max_by_key(|r| r.fill.unwrap_or(0) * 1000 / r.capacity as u64)?;
    let fill = full.fill.unwrap_or(0);
    if let Some(c) = consumer {
        if fill * 2 >= full.capacity as u64 && fill > 0 {
            return Some(format!("entry {c}: reads behind (ring of entry {} {fill}/{})", full.producer, full.capacity));
        }
        if let Some(r) = rings.iter().find(|r| r.held.is_some_and(|h| h >= r.capacity as u64 && h > 0)) {
            return Some(format!("entry {c}: holds {} of entry {}'s messages", r.held.unwrap_or(0), r.producer));
        }
    }
    rings
        .iter()
        .find(|r| matches!((r.returns_waiting, r.returns_capacity), (Some(w), Some(cap)) if w > 0 && w * 2 >= cap as u64))
        .map(|r| format!("entry {}: returns lag ({}/{})", r.producer, r.returns_waiting.unwrap_or(0), r.returns_capacity.unwrap_or(0)))
}

fn pool_row(entry: u32, p: &PoolReport, errors: &mut Vec<String>) -> PoolRow {
    let mut classes = Vec::new();
    let mut class_errors = Vec::new();
    let extents = match &p.allocator {
        Ok(v) => {
            let named = v.classes.iter().enumerate().map(|(i, c)| (i.to_string(), c)).chain([("dedicated".to_string(), &v.dedicated)]);
            for (name, c) in named {
                match c {
                    Ok(c) if c.slots > 0 || c.extents > 0 => {
                        let label = if c.slot_size == 0 { name } else { crate::util::human(c.slot_size as u64).replace(' ', "") };
                        classes.push((label, *c));
                    }
                    Ok(_) => {}
                    Err(e) => class_errors.push(format!("class {name}: {e}")),
                }
            }
            class_errors.extend(v.extents.iter().filter_map(|x| x.as_ref().err()).map(ToString::to_string));
            Ok((v.extents.len(), v.max_extents))
        }
        Err(e) => Err(e.to_string()),
    };
    errors.extend(class_errors.iter().map(|e| format!("pool of entry {entry}: {e}")));
    if let Err(e) = &extents {
        errors.push(format!("pool of entry {entry}: {e}"));
    }
    PoolRow {
        entry,
        committed: p.committed,
        reserved: p.reserved,
        pages: p.pages.as_ref().map(|pg| pg.per_node.clone()).map_err(ToString::to_string),
        extents,
        classes,
        class_errors,
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

impl Snapshot {
    /// The frame as JSON (`numashm top --once --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "interval_s": self.seconds,
            "max_peers": self.max_peers,
            "peers": self.peers.iter().map(|p| json!({
                "entry": p.entry, "pid": p.pid, "name": opt(p.name.as_deref()), "state": p.state, "alive": p.alive,
                "produces": p.produces, "consumes": p.consumes,
                "sent": opt(p.sent), "received": opt(p.received),
                "sent_per_s": opt(p.sent_rate), "received_per_s": opt(p.received_rate),
                "dropped": opt(p.dropped), "held": opt(p.held), "lent": opt(p.lent), "error": opt(p.error.as_deref()),
            })).collect::<Vec<_>>(),
            "channels": self.channels.iter().map(|c| json!({
                "channel": c.channel,
                "consumer": c.consumer.as_ref().map_or_else(|e| json!({"error": e}), |e| json!(e)),
                "consumer_alive": opt(c.consumer_alive),
                "producers": c.rings.iter().map(|r| r.producer).collect::<Vec<_>>(),
                "per_s": opt(c.rate),
                "slow": opt(c.slow.as_deref()),
                "rings": c.rings.iter().map(|r| json!({
                    "producer": r.producer, "capacity": r.capacity, "tail": r.tail, "bound": r.bound,
                    "fill": opt(r.fill), "per_s": opt(r.rate), "held": opt(r.held),
                    "returns_waiting": opt(r.returns_waiting), "returns_capacity": opt(r.returns_capacity),
                    "error": opt(r.error.as_deref()),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "pools": self.pools.iter().map(|p| json!({
                "entry": p.entry, "committed": p.committed, "reserved": p.reserved,
                "pages_per_node": p.pages.as_ref().map_or_else(
                    |e| json!({"error": e}),
                    |pg| json!(pg.iter().map(|(n, c)| json!({"node": n, "pages": c})).collect::<Vec<_>>())),
                "extents": p.extents.as_ref().map_or_else(|e| json!({"error": e}), |(n, max)| json!({"used": n, "max": max})),
                "classes": p.classes.iter().map(|(name, c)| json!({
                    "class": name, "slot_size": c.slot_size, "slots": c.slots, "free": c.free,
                    "owned": c.owned, "lent": c.lent, "in_use": c.owned.saturating_add(c.lent),
                })).collect::<Vec<_>>(),
                "errors": p.class_errors,
            })).collect::<Vec<_>>(),
            "recoveries": {
                "bad_returns": self.recoveries.bad_returns,
                "bad_returns_per_s": opt(self.recoveries.bad_returns_rate),
                "slots_reclaimed_from_dead_consumers": self.recoveries.lost_to_dead_consumers,
                "dead_entries": self.recoveries.dead.iter().map(|(e, pid)| json!({"entry": e, "pid": pid})).collect::<Vec<_>>(),
                "channels_with_dead_consumer": self.recoveries.dead_consumers,
                "rings_replaced": self.recoveries.rings_replaced.iter().map(|(c, p)| json!({"channel": c, "producer": p})).collect::<Vec<_>>(),
                "errors": self.recoveries.errors,
            },
        })
    }
}

#[cfg(test)]
pub(super) fn rate_for_tests(before: Option<u64>, now: u64, seconds: f64) -> Option<f64> {
    rate(before, now, seconds)
}
