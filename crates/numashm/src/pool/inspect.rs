//! Looking at a layout-v4 rendezvous from outside: [`inspect`] maps it read-only,
//! joins nothing, and opens each attached peer's pool read-only with the same
//! verification a peer uses ([`RemotePool::open`]: a sealed memfd whose header
//! names the advertised pid and pool id). Every word it reads is another
//! process's: each is validated, and a bad one becomes an error in its place in
//! the report (an entry, a pool, a class row), never a panic; the rest is still
//! reported. [`create_rendezvous`] lays out a rendezvous file that outlives its
//! creator, for peers to join later by path (`numashm create`).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use numashm_region::{AttachOptions, NodePages, Region, RegionOptions};
pub use numashm_varslot::{ClassCensus, ExtentView, OwnerView, OwnerViewError};

use crate::pool::error::PoolError;
use crate::pool::liveness::{liveness, Liveness};
use crate::pool::own::{name_of, ALLOC_OFF, P_ALLOC_OFF, P_BAD_RETURNS, P_DROPPED, P_LOST_TO_DEAD, P_NAME, P_RECEIVED, P_RETURNS, P_SENT, P_TICKET, POOL_HEADER_OFF, POOL_HEADER_WORDS, POOL_NAME_BYTES};
use crate::pool::remote::{ChannelHint, RemotePool};
use crate::pool::rendezvous::{
    rendezvous_len, unpack_consumer, Rendezvous, CHANNELS_OFF, ENTRY_WORDS, E_CONSUMES, MAX_CHANNELS, MAX_POOL_PEERS, PEERS_OFF, S_ATTACHED,
    S_EMPTY, S_JOINING,
};
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

/// How many times a pool's allocator tables are re-read when they look
/// inconsistent: the owner writes them while we read, so a torn read is
/// retried; what stays wrong this many times in a row is reported.
const VIEW_ATTEMPTS: usize = 4;

/// Why one part of a [`RendezvousReport`] could not be read.
///
/// # Examples
///
/// ```
/// let e = numashm::pool::InspectError::Allocator(numashm::pool::OwnerViewError::Header { field: "magic", value: 0 });
/// assert_eq!(e.to_string(), "allocator: owner header: corrupt magic (0x0)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The pool could not be opened or verified, or a pool word is out of its domain.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The pool's allocator tables are not valid.
    #[error("allocator: {0}")]
    Allocator(#[from] OwnerViewError),
}

/// The state word of a rendezvous entry.
///
/// # Examples
///
/// ```
/// assert_ne!(numashm::pool::EntryState::Attached, numashm::pool::EntryState::Joining);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Free (left by its last user).
    Empty,
    /// Taken, being filled.
    Joining,
    /// Published: the words describe a peer.
    Attached,
    /// No state at all (the value found): somebody wrote garbage.
    Corrupt(u64),
}

/// A peer's pool as seen read-only.
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug)]
pub struct PoolReport {
    /// The name its owner gave (`PeerConfig::new`), as its header keeps it.
    pub name: String,
    /// Bytes the memfd holds now.
    pub committed: usize,
    /// Bytes it may grow to (the owner's reservation).
    pub reserved: usize,
    /// Its resident pages per NUMA node (only resident pages are mapped to be counted).
    pub pages: Result<NodePages, InspectError>,
    /// Messages the owner sent.
    pub sent: u64,
    /// Messages the owner received.
    pub received: u64,
    /// Returned handles the owner accepted.
    pub returns_accepted: u64,
    /// Returned handles the owner refused (bogus, stale, not lent to that reader).
    pub bad_returns: u64,
    /// Slots the owner took back from consumers that died holding them (or
    /// with them queued), counted by the owner.
    pub lost_to_dead_consumers: u64,
    /// Messages the owner dropped on purpose ([`crate::pool::Peer::count_dropped`]).
    pub dropped: u64,
    /// The owner allocator's classes and extents, validated.
    pub allocator: Result<OwnerView, InspectError>,
    /// What the pool's ownership descriptor says: its owner (pid and
    /// generation: one more per hand-over, `Peer::hand_over`), validated.
    pub owner: Result<numashm_ownership::Owner, InspectError>,
    /// The owner shows a join ticket's token (a gated rendezvous member).
    pub ticketed: bool,
}

/// One non-empty entry of the rendezvous.
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug)]
pub struct EntryReport {
    /// Entry index.
    pub index: u32,
    /// Its state.
    pub state: EntryState,
    /// Its epoch (bumped by each joiner).
    pub epoch: u32,
    /// The pid it names.
    pub pid: u32,
    /// That process's start time it names (clock ticks since boot).
    pub started: u64,
    /// What the kernel says: whether some process holds the entry's lock
    /// (or, where that cannot be asked, whether the named pid and start time live).
    pub alive: Liveness,
    /// Pool id it advertises.
    pub pool_id: u64,
    /// Channels it says it produces (bit c = channel c).
    pub produces: u64,
    /// Channels it says it consumes.
    pub consumes: u64,
    /// Its pool, for an attached entry whose process is not dead for sure.
    pub pool: Option<Result<PoolReport, InspectError>>,
}

/// A channel whose consumer word is not 0.
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug)]
pub struct ChannelReport {
    /// The channel.
    pub channel: usize,
    /// The consumer's entry, or the corrupt word (an entry past the table,
    /// or an epoch wider than 24 bits: `PoolError::Corrupt` naming the field).
    pub consumer: Result<u32, PoolError>,
    /// The use of that entry the word names (its epoch; 0 for a corrupt word).
    pub consumer_epoch: u32,
    /// The word names an earlier use of its entry than the current one (the
    /// entry's epoch moved on): nobody consumes the channel; the next
    /// claimer takes the word over.
    pub leftover: bool,
    /// The ring of each reported producer of the channel (an attached entry
    /// that says it produces it and whose pool has the ring), in entry order.
    pub rings: Vec<Result<RingReport, InspectError>>,
}

/// One producer's ring of a channel: its tail, read from the producer's pool,
/// and what the channel's consumer's pool says of its reading (read-only).
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug)]
pub struct RingReport {
    /// The producer's entry.
    pub producer: u32,
    /// Cells of the ring.
    pub capacity: usize,
    /// Messages the producer has put on this ring (its tail; a ring replaced
    /// after its consumer died starts again from 0).
    pub tail: u64,
    /// Whether the producer has bound this ring to the channel's consumer
    /// (the producer's channel table names that consumer's pool id).
    pub bound: bool,
    /// The consumer's side: `None` while the consumer (named by the channel
    /// word, alive, pool opened) has not linked this ring.
    pub link: Result<Option<RingLink>, InspectError>,
}

/// A consumer's reading of one ring, read from its pool; validated against the
/// producer's words (`head <= tail <= head + capacity`, and the same for the
/// return ring).
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLink {
    /// Messages the consumer has taken off the ring (its head).
    pub head: u64,
    /// Handles it has given back on its return ring (that ring's tail).
    pub returned: u64,
    /// Handles of those the producer has taken back (the return ring's head,
    /// in the producer's pool).
    pub returns_taken: u64,
    /// Cells of the return ring.
    pub returns_capacity: usize,
}

impl RingReport {
    /// Messages on the ring not yet taken by the consumer (`tail - head`).
    ///
    /// # Examples
    ///
    /// See [`inspect`].
    pub fn fill(&self) -> Option<u64> {
        self.link
            .as_ref()
            .ok()
            .and_then(|l| l.as_ref())
            .and_then(|l| self.tail.checked_sub(l.head))
    }
}

impl RingLink {
    /// Messages the consumer took off the ring and has not given back yet
    /// (`head - returned`; `None` if its words say it returned more than it took).
    ///
    /// # Examples
    ///
    /// ```
    /// let l = numashm::pool::RingLink { head: 10, returned: 7, returns_taken: 5, returns_capacity: 16 };
    /// assert_eq!((l.held(), l.returns_waiting()), (Some(3), 2));
    /// ```
    pub fn held(&self) -> Option<u64> {
        self.head.checked_sub(self.returned)
    }

    /// Returned handles the producer has not taken back yet.
    ///
    /// # Examples
    ///
    /// See [`RingLink::held`].
    pub fn returns_waiting(&self) -> u64 {
        self.returned.saturating_sub(self.returns_taken)
    }
}

/// What [`inspect`] found.
///
/// # Examples
///
/// See [`inspect`].
#[derive(Debug)]
pub struct RendezvousReport {
    /// Entries the rendezvous holds.
    pub max_peers: u32,
    /// Bytes of the rendezvous file.
    pub len: usize,
    /// The change counter.
    pub changes: u64,
    /// Channels with a consumer word set.
    pub channels: Vec<ChannelReport>,
    /// Entries not Empty.
    pub entries: Vec<EntryReport>,
}

impl RendezvousReport {
    /// Entries that say Attached and whose process the kernel does not call dead.
    ///
    /// # Examples
    ///
    /// See [`inspect`].
    pub fn live_peers(&self) -> impl Iterator<Item = &EntryReport> {
        self.entries.iter().filter(|e| e.state == EntryState::Attached && !e.alive.is_dead())
    }
}

/// Creates a version-4 rendezvous file at `path` for `max_peers` peers (of at
/// least `min_len` bytes) that stays when this process exits, unlike
/// [`crate::pool::Peer::create`]'s; peers join it later with
/// [`crate::pool::Peer::join`]. Returns its length.
///
/// # Errors
///
/// [`PoolError::Config`] for `max_peers` outside `1..=1024`; [`PoolError::Region`]
/// (the file exists, mapping).
///
/// # Examples
///
/// ```
/// let path = std::env::temp_dir().join(format!("doc-create-rdv-{}", std::process::id()));
/// let len = numashm::pool::create_rendezvous(&path, 8, 0)?;
/// assert!(len >= 64 << 10);
/// let peer = numashm::pool::Peer::join(&path, numashm::pool::PeerConfig::new("doc-create-rdv"))?;
/// assert_eq!(peer.peers().len(), 1);
/// # drop(peer);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create_rendezvous(path: impl AsRef<Path>, max_peers: u32, min_len: usize) -> Result<usize, PoolError> {
    if max_peers == 0 || max_peers > MAX_POOL_PEERS {
        return Err(PoolError::Config { field: "max_peers", detail: "1..=1024" });
    }
    let len = rendezvous_len(max_peers)
        .max(min_len)
        .checked_next_multiple_of(4096)
        .ok_or(PoolError::Config { field: "len", detail: "too large" })?
        .max(64 << 10);
    // The region owns (unlinks) the file until it is laid out: a failure leaves nothing.
    let region = Arc::new(RegionOptions::new(len).create_file(path)?);
    drop(Rendezvous::init(region.clone(), max_peers)?);
    match Arc::try_unwrap(region) {
        Ok(mut r) => r.release_ownership(),
        Err(_) => return Err(PoolError::Config { field: "rendezvous", detail: "still mapped after init" }),
    }
    Ok(len)
}

/// Inspects the rendezvous file at `path` without joining it (see the module doc).
///
/// # Errors
///
/// [`PoolError::Region`] if the file cannot be mapped read-only;
/// [`PoolError::Corrupt`] if it is not a version-4 rendezvous (magic, version,
/// `max_peers`, length). Everything past the header is reported in place.
///
/// # Examples
///
/// ```
/// use numashm::pool::{inspect, EntryState, Peer, PeerConfig};
/// let path = std::env::temp_dir().join(format!("doc-inspect-{}", std::process::id()));
/// let host = Peer::create(&path, 4, PeerConfig::new("doc-inspect-host"))?;
/// let guest = Peer::join(&path, PeerConfig::new("doc-inspect-guest"))?;
/// let (tx, rx) = (host.sender(0)?, guest.receiver(0)?);
/// let m = tx.alloc(100)?;
/// tx.send(m).map_err(|e| e.error)?;
/// drop(rx.recv_timeout(std::time::Duration::from_secs(5))?);
///
/// let report = inspect(&path)?;
/// assert_eq!(report.live_peers().count(), 2);
/// assert_eq!(report.channels[0].consumer.as_ref().ok(), Some(&guest.entry()));
/// let e = &report.entries[host.entry() as usize];
/// assert_eq!((e.state, e.produces), (EntryState::Attached, 1));
/// let Some(Ok(pool)) = &e.pool else { panic!("{:?}", e.pool) };
/// assert_eq!(pool.sent, 1);
/// let Ok(view) = &pool.allocator else { panic!("{:?}", pool.allocator) };
/// assert!(view.classes.iter().any(|c| c.as_ref().is_ok_and(|c| c.slots > 0)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(path: impl AsRef<Path>) -> Result<RendezvousReport, PoolError> {
    report(Region::attach_file_with(path, AttachOptions { read_only: true })?)
}

/// Like [`inspect`], through the rendezvous's fd (e.g. [`crate::pool::Peer::rendezvous_fd`]).
///
/// # Errors
///
/// As [`inspect`].
///
/// # Examples
///
/// ```
/// let p = numashm::pool::Peer::create_anonymous("doc-inspect-fd", 2, numashm::pool::PeerConfig::new("doc-ifd"))?;
/// let r = numashm::pool::inspect_fd(p.rendezvous_fd().try_clone_to_owned()?)?;
/// assert_eq!((r.max_peers, r.entries.len()), (2, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect_fd(fd: OwnedFd) -> Result<RendezvousReport, PoolError> {
    report(Region::attach_fd_with(fd, AttachOptions { read_only: true })?)
}

fn report(region: Region) -> Result<RendezvousReport, PoolError> {
    let region = Arc::new(region);
    let rdv = Rendezvous::open(region.clone())?;
    let too_small = || PoolError::Corrupt { what: "rendezvous", field: "len", value: region.len() as u64 };
    let channel_words = Words::new(region.clone(), CHANNELS_OFF, MAX_CHANNELS).ok_or_else(too_small)?;
    let entry_words = Words::new(region.clone(), PEERS_OFF, rdv.max_peers as usize * ENTRY_WORDS).ok_or_else(too_small)?;
    let named: Vec<(usize, Result<u32, PoolError>, u32, bool)> = (0..MAX_CHANNELS)
        .filter_map(|c| {
            // Relaxed: a hint for a report; nothing is derived from it but text.
            let v = channel_words.at(c).load(Ordering::Relaxed);
            match unpack_consumer(v, rdv.max_peers) {
                Ok(None) => None,
                Ok(Some((entry, epoch))) => Some((c, Ok(entry), epoch, rdv.entry(entry).epoch != epoch)),
                Err(field) => Some((c, Err(PoolError::Corrupt { what: "rendezvous channel", field, value: v }), 0, false)),
            }
        })
        .collect();
    let mut entries = Vec::new();
    // The pools opened, kept to read the rings across producer and consumer.
    let mut remotes: Vec<RemotePool> = Vec::new();
    for i in 0..rdv.max_peers {
        let hint = rdv.entry(i);
        if hint.state == S_EMPTY {
            continue;
        }
        let state = match hint.state {
            S_JOINING => EntryState::Joining,
            S_ATTACHED => EntryState::Attached,
            s => EntryState::Corrupt(s),
        };
        // The entry's lock is the kernel's word (held: somebody lives there);
        // only if the kernel would not say, the pid named by the entry is asked about.
        let alive = match rdv.entry_liveness(i) {
            Liveness::Unknown => liveness(u64::from(hint.pid), hint.started),
            known => known,
        };
        let pool = (state == EntryState::Attached && !alive.is_dead()).then(|| {
            match RemotePool::open(i, &hint) {
                Ok(remote) => {
                    let report = pool_report(&remote);
                    remotes.push(remote);
                    report
                }
                Err(e) => Err(e.into()),
            }
        });
        // Relaxed: a hint for a report.
        let consumes = entry_words
            .at(i as usize * ENTRY_WORDS + E_CONSUMES)
            .load(Ordering::Relaxed);
        entries.push(EntryReport {
            index: i,
            state,
            epoch: hint.epoch,
            pid: hint.pid,
            started: hint.started,
            alive,
            pool_id: hint.pool_id,
            produces: hint.produces,
            consumes,
            pool,
        });
    }
    let channels = named
        .into_iter()
        .map(|(c, consumer, consumer_epoch, leftover)| {
            // A leftover's entry is somebody else's now: it reads nothing of these rings.
            let reader = consumer
                .as_ref()
                .ok()
                .filter(|_| !leftover)
                .and_then(|&e| remotes.iter().find(|r| r.entry == e));
            let rings = entries
                .iter()
                .filter(|e| e.produces >> c & 1 == 1)
                .filter_map(|e| remotes.iter().find(|r| r.entry == e.index))
                .filter_map(|producer| ring_report(c, producer, reader).transpose())
                .collect();
            ChannelReport {
                channel: c,
                consumer,
                consumer_epoch,
                leftover,
                rings,
            }
        })
        .collect();
    Ok(RendezvousReport { max_peers: rdv.max_peers, len: region.len(), changes: rdv.changes(), channels, entries })
}

/// Reads an opened pool's (verified as a peer would: [`RemotePool::open`])
/// counters, pages and allocator tables.
fn pool_report(remote: &RemotePool) -> Result<PoolReport, InspectError> {
    let region = remote.region.clone();
    let corrupt = |field, value| PoolError::Corrupt { what: "pool", field, value };
    let header = Words::new(region.clone(), POOL_HEADER_OFF, POOL_HEADER_WORDS).ok_or(corrupt("len", region.len() as u64))?;
    // Relaxed: statistics the owner bumps with plain stores; a report tolerates a stale one.
    let word = |w| header.at(w).load(Ordering::Relaxed);
    let alloc_off = word(P_ALLOC_OFF);
    let allocator = if alloc_off != ALLOC_OFF as u64 {
        // The only offset this layout version puts the allocator at.
        Err(corrupt("allocator offset", alloc_off).into())
    } else {
        allocator_view(&region, ALLOC_OFF)
    };
    Ok(PoolReport {
        name: name_of(std::array::from_fn::<_, { POOL_NAME_BYTES / 8 }, _>(|i| word(P_NAME + i))),
        committed: region.len(),
        reserved: region.max_len(),
        pages: region.resident_pages_per_node().map_err(|e| InspectError::Pool(e.into())),
        sent: word(P_SENT),
        received: word(P_RECEIVED),
        returns_accepted: word(P_RETURNS),
        bad_returns: word(P_BAD_RETURNS),
        lost_to_dead_consumers: word(P_LOST_TO_DEAD),
        dropped: word(P_DROPPED),
        allocator,
        owner: numashm_ownership::Descriptor::open(&region)
            .and_then(|d| d.owner())
            .map_err(|e| InspectError::Pool(e.into())),
        ticketed: word(P_TICKET) != 0,
    })
}

/// Byte offset of the tail in a split ring's producer block, and of the head
/// in its consumer block (the layout table of `numashm_ring::split_mem`).
const RING_TAIL_AT: usize = 128;
const RING_HEAD_AT: usize = 0;

/// One word at byte `off` of a pool mapped read-only, if the memfd covers it.
fn pool_word(
    remote: &RemotePool,
    off: usize,
    what: &'static str,
    field: &'static str,
) -> Result<u64, PoolError> {
    let bad = PoolError::Corrupt {
        what,
        field,
        value: off as u64,
    };
    if off % 8 != 0 || !remote.covers(off as u64, 8) {
        return Err(bad);
    }
    let w = Words::new(remote.region.clone(), off, 1).ok_or(bad)?;
    // Relaxed: a report; the values are checked against each other below, never followed.
    Ok(w.at(0).load(Ordering::Relaxed))
}

/// `producer`'s ring of channel `c` (`None`: its table has no ring for it) and,
/// if `reader` (the channel's consumer, opened) linked it, the reading side.
fn ring_report(
    c: usize,
    producer: &RemotePool,
    reader: Option<&RemotePool>,
) -> Result<Option<RingReport>, InspectError> {
    let Some(ChannelHint {
        bound,
        ring_off,
        capacity,
        returns_head_off,
    }) = producer.channel(c)?
    else {
        return Ok(None);
    };
    let tail = pool_word(producer, ring_off + RING_TAIL_AT, "pool ring", "tail")?;
    let link = match reader {
        None => Ok(None),
        Some(reader) => ring_link(
            c,
            producer,
            reader,
            tail,
            capacity,
            returns_head_off,
            ring_off,
        ),
    };
    let bound = reader.is_some_and(|r| bound == r.id);
    Ok(Some(RingReport {
        producer: producer.entry,
        capacity,
        tail,
        bound,
        link,
    }))
}

/// The consumer's words for one ring, checked against the producer's.
fn ring_link(
    c: usize,
    producer: &RemotePool,
    reader: &RemotePool,
    tail: u64,
    capacity: usize,
    returns_head_off: usize,
    ring_off: usize,
) -> Result<Option<RingLink>, InspectError> {
    let Some(l) = reader.link_to(c, producer.entry, producer.id, ring_off)? else {
        return Ok(None);
    };
    let corrupt = |what, field, value| PoolError::Corrupt { what, field, value };
    let head = pool_word(reader, l.head_off + RING_HEAD_AT, "pool ring", "head")?;
    if head > tail || tail - head > capacity as u64 {
        return Err(corrupt("pool ring", "head", head).into());
    }
    let returned = pool_word(
        reader,
        l.returns_off + RING_TAIL_AT,
        "pool return ring",
        "tail",
    )?;
    let taken = pool_word(
        producer,
        returns_head_off + RING_HEAD_AT,
        "pool return ring",
        "head",
    )?;
    if taken > returned || returned - taken > l.returns_capacity as u64 {
        return Err(corrupt("pool return ring", "tail", returned).into());
    }
    Ok(Some(RingLink {
        head,
        returned,
        returns_taken: taken,
        returns_capacity: l.returns_capacity,
    }))
}

/// The allocator's tables through atomic loads of the read-only mapping,
/// re-read while they look torn (the owner writes as we read).
fn allocator_view(region: &Arc<Region>, at: usize) -> Result<OwnerView, InspectError> {
    let words = Words::new(region.clone(), 0, region.len() / 8)
        .ok_or(PoolError::Corrupt { what: "pool", field: "len", value: region.len() as u64 })?;
    // Relaxed: an inspection; consistency is checked by the parser and retried below.
    let read = |off: usize| (off % 8 == 0).then(|| words.get(off / 8)).flatten().map(|w| w.load(Ordering::Relaxed));
    let mut last = OwnerView::parse_with(at, read);
    for _ in 1..VIEW_ATTEMPTS {
        let clean = last.as_ref().is_ok_and(|v| {
            v.classes.iter().all(Result::is_ok) && v.dedicated.is_ok() && v.extents.iter().all(Result::is_ok)
        });
        if clean {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        last = OwnerView::parse_with(at, read);
    }
    Ok(last?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Peer, PeerConfig};

    fn tmp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("numashm-inspect-{tag}-{}", std::process::id()))
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_created_rendezvous_outlives_its_creator_and_is_joined_later() {
        let p = tmp("create");
        let _ = std::fs::remove_file(&p);
        create_rendezvous(&p, 4, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert!(matches!(create_rendezvous(&p, 4, 0), Err(PoolError::Region(_))), "the file exists");
        assert!(p.exists(), "a failed create leaves the existing file alone");
        let r = inspect(&p).unwrap();
        assert_eq!((r.max_peers, r.entries.len(), r.channels.len()), (4, 0, 0));
        let a = Peer::join(&p, PeerConfig::new("inspect-create-a")).unwrap();
        let b = Peer::join(&p, PeerConfig::new("inspect-create-b")).unwrap();
        let (tx, rx) = (a.sender(3).unwrap(), b.receiver(3).unwrap());
        for _ in 0..10 {
            let m = tx.alloc(5000).unwrap();
            tx.send(m).map_err(|e| e.error).unwrap();
            drop(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap());
        }
        let r = inspect(&p).unwrap();
        assert_eq!(r.live_peers().count(), 2);
        assert_eq!(r.channels.len(), 1);
        assert_eq!((r.channels[0].channel, r.channels[0].consumer.as_ref().ok()), (3, Some(&b.entry())));
        let ea = &r.entries[a.entry() as usize];
        let eb = &r.entries[b.entry() as usize];
        assert_eq!((r.channels[0].consumer_epoch, r.channels[0].leftover), (eb.epoch, false), "the word names b's use of its entry");
        assert_eq!((ea.produces, eb.consumes), (1 << 3, 1 << 3));
        assert_eq!(ea.alive, Liveness::Alive);
        let pa = ea.pool.as_ref().unwrap().as_ref().unwrap();
        let pb = eb.pool.as_ref().unwrap().as_ref().unwrap();
        assert_eq!((pa.sent, pb.received), (10, 10));
        assert!(pa.committed <= pa.reserved && pa.reserved == 1 << 30);
        assert!(pa.pages.as_ref().unwrap().present() > 0);
        // The census the owner keeps, read through the validating view.
        let view = pa.allocator.as_ref().unwrap();
        let census = a.census();
        for (c, row) in view.classes.iter().enumerate() {
            assert_eq!(row.as_ref().unwrap().slots, census.classes[c].slots, "class {c}");
        }
        assert!(view.classes[4].as_ref().unwrap().slots > 0, "5000 B messages use the 16 KiB class");
        let ring = r.channels[0].rings[0].as_ref().unwrap();
        assert_eq!(
            (ring.producer, ring.tail, ring.bound, ring.fill()),
            (a.entry(), 10, true, Some(0))
        );
        let link = ring.link.as_ref().unwrap().unwrap();
        assert_eq!(
            (link.head, link.held()),
            (10, Some(0)),
            "all 10 read and dropped: {link:?}"
        );
        assert_eq!(link.returned, 10);
        drop((tx, rx));
        drop((a, b));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn rings_show_what_waits_for_the_consumer_and_what_it_holds() {
        let host =
            Peer::create_anonymous("inspect-rings", 4, PeerConfig::new("inspect-rings-a")).unwrap();
        let guest = host.join_same(PeerConfig::new("inspect-rings-b")).unwrap();
        let (tx, rx) = (host.sender(1).unwrap(), guest.receiver(1).unwrap());
        let ring_of = |r: &RendezvousReport| {
            let ch = r.channels.iter().find(|c| c.channel == 1).unwrap();
            assert_eq!(ch.rings.len(), 1, "{ch:?}");
            let ring = ch.rings[0].as_ref().unwrap();
            (ring.tail, ring.fill(), *ring.link.as_ref().unwrap())
        };
        let report = || inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        for _ in 0..5 {
            tx.send(tx.alloc(64).unwrap()).map_err(|e| e.error).unwrap();
        }
        // The guest linked the ring when it made its receiver; it has read nothing yet.
        let (tail, fill, link) = ring_of(&report());
        assert_eq!((tail, fill, link.map(|l| l.head)), (5, Some(5), Some(0)));
        // Two read and held, none given back.
        let held: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap())
            .collect();
        let (_, fill, link) = ring_of(&report());
        let link = link.unwrap();
        assert_eq!(
            (fill, link.head, link.held(), link.returned),
            (Some(3), 2, Some(2), 0)
        );
        // Given back, not yet taken by the owner (it takes returns when it allocates or collects).
        drop(held);
        let link = ring_of(&report()).2.unwrap();
        assert_eq!(
            (link.held(), link.returned, link.returns_waiting()),
            (Some(0), 2, 2)
        );
        host.collect_returns();
        let link = ring_of(&report()).2.unwrap();
        assert_eq!((link.returns_taken, link.returns_waiting()), (2, 0));
        // A hostile head (the guest writes its own pool): an error in place of the link.
        let region = guest.pool_region();
        let mut off = [0u8; 8];
        region
            .read_at(
                POOL_HEADER_OFF + (crate::pool::own::P_LINKS + 2) * 8,
                &mut off,
            )
            .unwrap();
        let head_at = u64::from_le_bytes(off) as usize + RING_HEAD_AT;
        let mut was = [0u8; 8];
        region.read_at(head_at, &mut was).unwrap();
        region.write_at(head_at, &u64::MAX.to_le_bytes()).unwrap();
        let r = report();
        let ring = r.channels.iter().find(|c| c.channel == 1).unwrap().rings[0]
            .as_ref()
            .unwrap();
        assert!(
            matches!(
                ring.link,
                Err(InspectError::Pool(PoolError::Corrupt {
                    field: "head",
                    value: u64::MAX,
                    ..
                }))
            ),
            "{:?}",
            ring.link
        );
        assert_eq!((ring.tail, ring.fill()), (5, None));
        region.write_at(head_at, &was).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn hostile_entry_and_channel_words_are_errors_in_place() {
        let host = Peer::create_anonymous("inspect-hostile", 8, PeerConfig::new("inspect-hostile-a")).unwrap();
        let rdv = &host.rdv;
        // Entry 5: attached, our pid, a pool fd that is not a sealed memfd (stdin).
        let w = |e: usize, i: usize, v: u64| {
            Words::new(rdv.region.clone(), PEERS_OFF, 8 * ENTRY_WORDS).unwrap().at(e * ENTRY_WORDS + i).store(v, Ordering::Relaxed)
        };
        let me = std::process::id();
        // Somebody holds entry 5's lock (as a live squatter would), so the report looks at its pool.
        let squatter = crate::pool::entry_lock::EntryLocks::open(std::os::fd::AsFd::as_fd(&*rdv.region)).unwrap();
        assert!(squatter.try_take(5).unwrap());
        w(5, 0, crate::pool::rendezvous::pack(S_ATTACHED, 1, me));
        w(5, 2, 0);
        w(5, 3, 77);
        // Entry 6: a state that does not exist.
        w(6, 0, 0x55 << 56 | u64::from(me));
        // Entry 7: attached, a pid no process can have.
        w(7, 0, crate::pool::rendezvous::pack(S_ATTACHED, 1, u32::MAX));
        let channel = |c: usize, v: u64| Words::new(rdv.region.clone(), CHANNELS_OFF, MAX_CHANNELS).unwrap().at(c).store(v, Ordering::Relaxed);
        channel(9, 0xdead);
        // Channel 10: a fine entry with an epoch wider than 24 bits; 11: the host's entry, an earlier epoch.
        channel(10, 1 << 60 | 1);
        let host_epoch = rdv.entry(host.entry()).epoch;
        channel(11, crate::pool::rendezvous::pack_consumer(host.entry(), host_epoch.wrapping_sub(1) & 0x00ff_ffff));
        let r = inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        let e = |i| r.entries.iter().find(|e| e.index == i).unwrap();
        assert!(matches!(e(5).pool, Some(Err(InspectError::Pool(PoolError::Region(_))))), "{:?}", e(5).pool);
        assert_eq!(e(6).state, EntryState::Corrupt(0x55));
        assert!(e(6).pool.is_none());
        assert_eq!((e(7).alive, e(7).pool.is_none()), (Liveness::Dead, true));
        let c9 = r.channels.iter().find(|c| c.channel == 9).unwrap();
        assert!(matches!(c9.consumer, Err(PoolError::Corrupt { field: "consumer", value: 0xdead, .. })));
        let ch = |c| r.channels.iter().find(|x| x.channel == c).unwrap();
        assert!(matches!(ch(10).consumer, Err(PoolError::Corrupt { field: "consumer epoch", value: 0x1000_0000_0000_0001, .. })));
        assert_eq!((ch(11).consumer.as_ref().ok(), ch(11).leftover), (Some(&host.entry()), true), "an earlier use of the host's entry");
        assert!(e(host.entry()).pool.as_ref().unwrap().is_ok(), "the honest peer is still reported");
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_corrupt_pool_header_or_allocator_row_is_a_typed_error() {
        let host = Peer::create_anonymous("inspect-pool", 2, PeerConfig::new("inspect-pool-a")).unwrap();
        let tx = host.sender(0).unwrap();
        drop(tx.alloc(10).unwrap());
        let region = host.pool_region();
        // Class 0's owned counter: larger than its slots.
        let owned = ALLOC_OFF + 128 + 8;
        let mut was = [0u8; 8];
        region.read_at(owned, &mut was).unwrap();
        region.write_at(owned, &u64::MAX.to_le_bytes()).unwrap();
        let r = inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        let pool = r.entries[0].pool.as_ref().unwrap().as_ref().unwrap();
        let view = pool.allocator.as_ref().unwrap();
        assert!(matches!(view.classes[0], Err(OwnerViewError::Class { class: 0, field: "owned", .. })));
        assert!(view.classes[1].is_ok());
        // The allocator offset in the pool header.
        region.write_at(POOL_HEADER_OFF + P_ALLOC_OFF * 8, &3u64.to_le_bytes()).unwrap();
        let r = inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        let pool = r.entries[0].pool.as_ref().unwrap().as_ref().unwrap();
        assert!(matches!(
            pool.allocator,
            Err(InspectError::Pool(PoolError::Corrupt { field: "allocator offset", value: 3, .. }))
        ));
        // The pool id: the pool no longer matches its entry, so it is not read at all.
        region.write_at(POOL_HEADER_OFF + crate::pool::own::P_ID * 8, &1u64.to_le_bytes()).unwrap();
        let r = inspect_fd(host.rendezvous_fd().try_clone_to_owned().unwrap()).unwrap();
        assert!(matches!(
            r.entries[0].pool,
            Some(Err(InspectError::Pool(PoolError::Corrupt { what: "pool", field: "id", value: 1 })))
        ));
        // Put the words back so the peer's own teardown meets its own tables.
        region.write_at(POOL_HEADER_OFF + crate::pool::own::P_ID * 8, &host.pool.id.to_le_bytes()).unwrap();
        region.write_at(POOL_HEADER_OFF + P_ALLOC_OFF * 8, &(ALLOC_OFF as u64).to_le_bytes()).unwrap();
        region.write_at(owned, &was).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn not_a_rendezvous_is_a_corrupt_magic() {
        let p = tmp("foreign");
        let _ = std::fs::remove_file(&p);
        let mut r = RegionOptions::new(64 << 10).create_file(&p).unwrap();
        r.release_ownership();
        drop(r);
        assert!(matches!(inspect(&p), Err(PoolError::Corrupt { what: "rendezvous", field: "magic", .. })));
        assert!(matches!(create_rendezvous(&p, 0, 0), Err(PoolError::Config { field: "max_peers", .. })));
        std::fs::remove_file(&p).unwrap();
    }
}
