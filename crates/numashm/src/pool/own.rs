//! Our own pool: a sealed memfd only this peer maps writable. It holds the
//! pool header (identity, counters, the channel and link tables), and behind
//! it the owner allocator, whose extents also hold our rings' producer blocks,
//! our ring heads and our return rings.
//!
//! Pool header (version 5), `u64` words from byte 4096 of the pool:
//!
//! | word | field |
//! |---|---|
//! | 0 | magic `"NSHMPOOL"` (stored last: SYNC pool-init) |
//! | 1 | version (5) |
//! | 2 | pool id (random, also in our rendezvous entry) |
//! | 3, 4 | owner pid, owner start time |
//! | 5, 6 | messages sent, received |
//! | 7, 8 | returns accepted, bad returns dropped |
//! | 9 | allocator offset |
//! | 10, 11 | wake pipe (async waits, `wake.rs`): its read end's fd number + 1 (0: none), its inode |
//! | 64 + 4c .. | channel `c` we produce: data ring block offset, capacity, return-head block offset, bound consumer entry + 1 |
//! | 12, 13 | slots reclaimed from dead consumers, messages the owner dropped |
//! | 14 | our join ticket's token in a gated rendezvous (0: none; `gate.rs`) |
//! | 15 | the owner in one word: `pid \| start time << 22` (what readers' liveness checks read) |
//! | 16 .. 23 | the owner's name |
//! | 320 + 8l .. | link `l` (a channel we consume from one producer): `valid << 63 \| channel << 32 \| producer entry`, producer pool id, our head block offset, our return ring block offset, the producer's ring offset it reads, return ring capacity |
//! | 1024 .. 1535 | the ownership descriptor (`numashm_ownership::Descriptor`: owner, the mappings of the owner's process and its fork successor, capabilities), byte 12288 of the pool, recorded in the region header |
#![allow(unsafe_code)] // PoolMemory over the sealed mapping (one impl, SAFETY on each block)

use std::ptr::NonNull;
use std::sync::Arc;

use numashm_region::{Region, RegionOptions};
use numashm_varslot::{CommitError, OwnerAlloc, PoolMemory};

use crate::pool::config::PeerConfig;
use crate::pool::error::PoolError;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

/// First word of a pool header: `b"NSHMPOOL"` little-endian.
pub const POOL_MAGIC: u64 = u64::from_le_bytes(*b"NSHMPOOL");
/// Pool layout version.
pub const POOL_VERSION: u64 = 5;

pub(crate) const POOL_HEADER_OFF: usize = numashm_region::HEADER_LEN;
pub(crate) const POOL_HEADER_WORDS: usize = 1536; // 12 KiB: header, 64 channels, 64 links
pub(crate) const ALLOC_OFF: usize = POOL_HEADER_OFF + POOL_HEADER_WORDS * 8;
/// Links (producer, channel) one peer can consume from at once.
pub const MAX_LINKS: usize = 64;

pub(crate) const P_MAGIC: usize = 0;
pub(crate) const P_VERSION: usize = 1;
pub(crate) const P_ID: usize = 2;
pub(crate) const P_PID: usize = 3;
pub(crate) const P_STARTED: usize = 4;
pub(crate) const P_SENT: usize = 5;
pub(crate) const P_RECEIVED: usize = 6;
pub(crate) const P_RETURNS: usize = 7;
pub(crate) const P_BAD_RETURNS: usize = 8;
pub(crate) const P_ALLOC_OFF: usize = 9;
/// Slots reclaimed from consumers that died holding them (or queued to them).
pub(crate) const P_LOST_TO_DEAD: usize = 12;
/// Messages the owner's application dropped on purpose (a bridge whose ring
/// was full, with back-pressure "drop"), counted by [`crate::pool::Peer::count_dropped`].
pub(crate) const P_DROPPED: usize = 13;
/// The token of our join ticket in a gated rendezvous (0: none; `gate.rs`).
pub(crate) const P_TICKET: usize = 14;
/// The owner in one word, `pid | start time << 22` ([`owner_word`]): what
/// readers ask the kernel about. Words 3 and 4 say the same in two words,
/// which a reader could see half-changed by a hand-over (the successor's pid
/// with its predecessor's start time: a process that does not exist).
pub(crate) const P_OWNER: usize = 15;

/// Pids are below 2^22 (`PID_MAX_LIMIT` on 64-bit Linux).
const OWNER_PID_BITS: u32 = 22;

/// `pid | started << 22`; a start time (clock ticks since boot) fits 42 bits
/// for over a thousand years at 100 Hz.
pub(crate) fn owner_word(pid: u32, started: u64) -> u64 {
    u64::from(pid) & ((1 << OWNER_PID_BITS) - 1) | started << OWNER_PID_BITS
}

/// The pid and start time of an [`owner_word`].
pub(crate) fn owner_of(word: u64) -> (u32, u64) {
    ((word & ((1 << OWNER_PID_BITS) - 1)) as u32, word >> OWNER_PID_BITS)
}
/// First of the words holding the owner's name (UTF-8, zero-padded).
pub(crate) const P_NAME: usize = 16;
/// Bytes of the name kept in the header (longer names are cut at a character boundary).
pub(crate) const POOL_NAME_BYTES: usize = 64;
pub(crate) const P_CHANNELS: usize = 64;
pub(crate) const CHANNEL_WORDS: usize = 4;
pub(crate) const P_LINKS: usize = 320;
pub(crate) const LINK_WORDS: usize = 8;
pub(crate) const LINK_VALID: u64 = 1 << 63;
/// Header word where the ownership descriptor starts (a page of its own).
pub(crate) const P_DESCRIPTOR: usize = 1024;
/// Byte offset of the ownership descriptor in the pool.
pub(crate) const DESCRIPTOR_OFF: usize = POOL_HEADER_OFF + P_DESCRIPTOR * 8;

const _: () = assert!(P_NAME + POOL_NAME_BYTES / 8 <= P_CHANNELS);
const _: () = assert!(P_CHANNELS + crate::pool::MAX_CHANNELS * CHANNEL_WORDS <= P_LINKS);
const _: () = assert!(P_LINKS + MAX_LINKS * LINK_WORDS <= P_DESCRIPTOR);
const _: () = assert!(P_DESCRIPTOR * 8 + numashm_ownership::DESCRIPTOR_LEN == POOL_HEADER_WORDS * 8);
const _: () = assert!(DESCRIPTOR_OFF % 4096 == 0);
const _: () = assert!(ALLOC_OFF % 4096 == 0);

/// The sealed region as the owner allocator's memory: `commit` grows the
/// memfd in place (the base never moves; the owner mapped the whole
/// reservation before sealing).
#[derive(Debug, Clone)]
pub(crate) struct RegionPoolMemory(pub(crate) Arc<Region>);

// SAFETY: `base` is the start of a mapping reserved once for `reserved()`
// bytes that never moves or shrinks while the Arc'd region lives; `committed()`
// bytes of it are backed (the region's length is only raised after the memfd
// was grown and committed); `commit` only ever grows it.
unsafe impl PoolMemory for RegionPoolMemory {
    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.0.as_ptr()).expect("a mapped region has a non-null base")
    }

    fn committed(&self) -> usize {
        self.0.len()
    }

    fn reserved(&self) -> usize {
        self.0.max_len()
    }

    fn commit(&self, len: usize) -> Result<(), CommitError> {
        if len <= self.0.len() {
            return Ok(());
        }
        let page = self.0.page_size();
        let reserved = self.0.max_len();
        let want = len.checked_next_multiple_of(page).filter(|&w| w <= reserved).ok_or(CommitError::BeyondReserved { len, reserved })?;
        self.0.resize(want).map_err(|e| CommitError::Os { op: "resize", errno: e.errno().map_or(0, |e| e.raw_os_error()) })
    }
}

/// Our pool: the owner side of everything another peer reads from us.
#[derive(Debug)]
pub(crate) struct OwnPool {
    pub(crate) region: Arc<Region>,
    pub(crate) header: Words,
    pub(crate) alloc: OwnerAlloc<RegionPoolMemory>,
    pub(crate) id: u64,
}

impl OwnPool {
    /// Creates, places and seals a new pool, then lays out its header and allocator.
    pub(crate) fn create(cfg: &PeerConfig, pid: u32, started: u64) -> Result<Self, PoolError> {
        let mut opts = RegionOptions::new(ALLOC_OFF + 4096).max_len(cfg.reserve).cache_policy(cfg.cache);
        if !cfg.nodes.is_empty() {
            opts = opts.nodes(&cfg.nodes).policy(cfg.policy);
        }
        opts = opts.fallback(cfg.fallback);
        let region = Arc::new(opts.create_sealed(&cfg.name)?);
        let header = Words::new(region.clone(), POOL_HEADER_OFF, POOL_HEADER_WORDS)
            .ok_or(PoolError::Config { field: "reserve", detail: "too small for a pool header" })?;
        let alloc = OwnerAlloc::create(RegionPoolMemory(region.clone()), ALLOC_OFF, &cfg.classes)?;
        let id = numashm_region::process::random_nonzero()?;
        // Relaxed: published by the Release store of the magic (SYNC pool-init).
        header.at(P_VERSION).store(POOL_VERSION, Ordering::Relaxed);
        header.at(P_ID).store(id, Ordering::Relaxed);
        header.at(P_PID).store(u64::from(pid), Ordering::Relaxed);
        header.at(P_STARTED).store(started, Ordering::Relaxed);
        header.at(P_OWNER).store(owner_word(pid, started), Ordering::Relaxed);
        header.at(P_ALLOC_OFF).store(ALLOC_OFF as u64, Ordering::Relaxed);
        for (i, word) in name_words(&cfg.name).into_iter().enumerate() {
            header.at(P_NAME + i).store(word, Ordering::Relaxed);
        }
        if let crate::pool::gate::Gate::Ticket(t) = &cfg.gate {
            header.at(P_TICKET).store(t.token, Ordering::Relaxed);
        }
        // Owner, our mapping, capabilities: what `Peer::hand_over` moves.
        numashm_ownership::Descriptor::create_at(&region, DESCRIPTOR_OFF)?;
        header.at(P_MAGIC).store(POOL_MAGIC, Ordering::Release);
        Ok(OwnPool { region, header, alloc, id })
    }

    /// Names another process as the pool's owner (a hand-over): words 3 and 4
    /// for display, word 15 for readers' liveness questions, in one store.
    pub(crate) fn set_owner(&self, pid: u32, started: u64) {
        // Relaxed: hints; readers ask the kernel about the process named.
        self.header.at(P_PID).store(u64::from(pid), Ordering::Relaxed);
        self.header.at(P_STARTED).store(started, Ordering::Relaxed);
        self.header.at(P_OWNER).store(owner_word(pid, started), Ordering::Relaxed);
    }

    /// Adds `n` to one of our counters: we are its only writer, so a load and
    /// a store (no locked instruction). Relaxed: a statistic.
    #[inline]
    pub(crate) fn bump(&self, word: usize, n: u64) {
        let w = self.header.at(word);
        w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub(crate) fn channel_word(&self, c: usize, w: usize) -> &AtomicU64 {
        debug_assert!(c < crate::pool::MAX_CHANNELS && w < CHANNEL_WORDS);
        self.header.at(P_CHANNELS + c * CHANNEL_WORDS + w)
    }

    pub(crate) fn link_word(&self, l: usize, w: usize) -> &AtomicU64 {
        debug_assert!(l < MAX_LINKS && w < LINK_WORDS);
        self.header.at(P_LINKS + l * LINK_WORDS + w)
    }

    /// Pointer to a block our allocator gave us, `len` bytes of it: checked
    /// against the slot's capacity and the committed pool (the allocator's
    /// tables are ours, but a bug there must be an error, not a stray write).
    pub(crate) fn block(&self, s: &numashm_varslot::OwnedSlot, len: usize) -> Result<NonNull<u8>, PoolError> {
        if len > s.capacity {
            return Err(PoolError::Corrupt { what: "own pool", field: "block capacity", value: s.capacity as u64 });
        }
        self.alloc
            .slot_ptr(s)
            .map_err(|_| PoolError::Corrupt { what: "own pool", field: "block offset", value: s.offset as u64 })
    }
}

/// `name` as the header keeps it: its first [`POOL_NAME_BYTES`] bytes (cut
/// at a character boundary), zero-padded, as little-endian words.
fn name_words(name: &str) -> [u64; POOL_NAME_BYTES / 8] {
    let mut end = name.len().min(POOL_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = [0u8; POOL_NAME_BYTES];
    bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
    std::array::from_fn(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
}

/// The name held in header words `words` (read from a pool another process
/// writes): the bytes up to the first zero, invalid UTF-8 replaced.
pub(crate) fn name_of(words: [u64; POOL_NAME_BYTES / 8]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod documented {
    use super::*;
    use crate::pool::rendezvous::{CHANNELS_OFF, PEERS_OFF};

    /// docs/pools.md's layout tables give the offsets and words defined here.
    #[test]
    fn pools_md_matches_the_layout_constants() {
        let doc = include_str!("../../../../docs/pools.md");
        let rv = crate::pool::rendezvous::HEADER_OFF;
        assert!(doc.contains(&format!("| {rv} | 64 | 0 magic `\"NSHMRDV4\"`")), "rendezvous header at {rv}");
        assert!(doc.contains(&format!("| {CHANNELS_OFF} | 64 | channel `c`: consumer `epoch << 32 \\| entry + 1` (0 = none)")), "channel words at {CHANNELS_OFF}");
        assert_eq!(crate::pool::rendezvous::pack_consumer(2, 5), 5 << 32 | 3, "the channel word as documented");
        assert!(doc.contains(&format!("| {PEERS_OFF} | 16 × max_peers | entries")), "peer entries at {PEERS_OFF}");
        assert!(doc.contains(&format!("| {POOL_HEADER_OFF} | pool header, {POOL_HEADER_WORDS} words")), "pool header");
        assert!(doc.contains(&format!("| {ALLOC_OFF} | owner allocator")), "allocator offset");
        assert!(doc.contains(&format!("from {P_CHANNELS}, four words per channel")), "channel table");
        assert!(doc.contains(&format!("from {P_LINKS}, eight words per link")), "link table");
        assert!(doc.contains(&format!("from {P_DESCRIPTOR} (byte {DESCRIPTOR_OFF}), the ownership descriptor")), "descriptor");
        assert!(doc.contains(&format!("1 version {POOL_VERSION},")), "pool version");
        assert_eq!((CHANNEL_WORDS, LINK_WORDS), (4, 8));
        use crate::pool::wake::{P_WAKE_FD, P_WAKE_INODE};
        assert!(doc.contains(&format!("{P_WAKE_FD} wake pipe fd + 1 (0: none), {P_WAKE_INODE} wake pipe inode")), "wake pipe words");
        assert!(doc.contains(&format!("{P_LOST_TO_DEAD} slots reclaimed from dead consumers")), "lost word");
        assert!(doc.contains(&format!("{P_DROPPED} messages dropped by the owner")), "dropped word");
        assert!(doc.contains(&format!("{P_TICKET} the owner's join ticket token")), "ticket word");
        assert!(doc.contains(&format!("{P_OWNER} the owner in one word, `pid | start time << 22`")), "owner word");
        assert_eq!(owner_of(owner_word(4_194_303, (1 << 42) - 1)), (4_194_303, (1 << 42) - 1));
        let last = P_NAME + POOL_NAME_BYTES / 8 - 1;
        assert!(doc.contains(&format!("{P_NAME}–{last} the owner's name")), "name words");
    }

    #[test]
    fn a_name_survives_the_header_cut_at_a_character_boundary() {
        assert_eq!(name_of(name_words("bridge-out")), "bridge-out");
        assert_eq!(name_of(name_words("")), "");
        let long = "é".repeat(40); // 80 bytes: cut to 32 characters (64 bytes)
        assert_eq!(name_of(name_words(&long)), "é".repeat(32));
        let odd = format!("a{}", "é".repeat(40)); // the 64th byte splits an 'é'
        assert_eq!(name_of(name_words(&odd)), format!("a{}", "é".repeat(31)));
        assert_eq!(name_of([u64::MAX; 8]).chars().count(), 64, "garbage becomes replacement characters, never a panic");
    }
}
