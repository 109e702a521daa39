//! Another peer's pool, mapped read-only. The kernel keeps it read-only for
//! us (the owner sealed it); everything in it is still the owner's word, so
//! every offset read from it is checked against the length the kernel says
//! the memfd has before a byte is touched.
#![allow(unsafe_code)] // pointers into the read-only mapping (bounds checked first)

use std::ptr::NonNull;
use std::sync::Arc;

use numashm_region::{AttachOptions, Region};

use crate::pool::error::PoolError;
use crate::pool::own::{
    CHANNEL_WORDS, LINK_VALID, LINK_WORDS, MAX_LINKS, POOL_HEADER_OFF, POOL_HEADER_WORDS, POOL_MAGIC, POOL_VERSION,
    P_CHANNELS, P_ID, P_LINKS, P_MAGIC, P_OWNER, P_PID, P_VERSION, owner_of,
};
use crate::pool::liveness::{liveness, start_time, Liveness};
use numashm_region::process::maps_writable;
use std::os::fd::AsFd;
use crate::pool::rendezvous::EntryHint;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

/// A peer's pool as we see it: read-only, verified once at open.
#[derive(Debug)]
pub(crate) struct RemotePool {
    pub(crate) region: Arc<Region>,
    header: Words,
    pub(crate) entry: u32,
    pub(crate) epoch: u32,
    pub(crate) pid: u32,
    pub(crate) started: u64,
    pub(crate) id: u64,
    /// The last header word 15 the kernel confirmed (its process maps the pool writable).
    verified: AtomicU64,
}

/// What a producer's channel table says of one channel (validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelHint {
    /// Pool id of the consumer the producer bound to this ring (0: none).
    pub(crate) bound: u64,
    pub(crate) ring_off: usize,
    pub(crate) capacity: usize,
    pub(crate) returns_head_off: usize,
}

/// What a consumer's link table says of its link to us (validated), read
/// whole: every word of one link (its tag, serial included, read before and
/// after the words and found unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkHint {
    /// Word 0: `LINK_VALID | serial << 38 | channel << 32 | producer entry`.
    pub(crate) tag: u64,
    pub(crate) head_off: usize,
    pub(crate) returns_off: usize,
    pub(crate) returns_capacity: usize,
}

/// Link tag bits holding the link's serial (new with each link the consumer
/// makes): a link dropped and made again in the same table slot has another tag.
pub(crate) const LINK_SERIAL_SHIFT: u32 = 38;
pub(crate) const LINK_SERIAL_MASK: u64 = ((1 << 25) - 1) << LINK_SERIAL_SHIFT;

/// Largest ring a peer may ask us to read (cells).
pub(crate) const MAX_RING_CELLS: usize = 1 << 16;

impl RemotePool {
    /// Opens entry `entry`'s pool through `/proc/PID/fd/N` and verifies it:
    /// the region layer checks it is a memfd sealed against writes, shrinking
    /// and new seals; here its header must name the pool id and pid the
    /// rendezvous advertised.
    pub(crate) fn open(entry: u32, hint: &EntryHint) -> Result<Self, PoolError> {
        let fd = i32::try_from(hint.pool_fd)
            .map_err(|_| PoolError::Corrupt { what: "rendezvous entry", field: "pool fd", value: hint.pool_fd })?;
        let region = Arc::new(Region::attach_pool_of(hint.pid, fd, AttachOptions { read_only: true })?);
        let header = Words::new(region.clone(), POOL_HEADER_OFF, POOL_HEADER_WORDS)
            .ok_or(PoolError::Corrupt { what: "pool", field: "len", value: region.len() as u64 })?;
        // Acquire: SYNC pool-init (the owner stored the magic last).
        let magic = header.at(P_MAGIC).load(Ordering::Acquire);
        let check = |field, value: u64, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(PoolError::Corrupt { what: "pool", field, value })
            }
        };
        check("magic", magic, magic == POOL_MAGIC)?;
        let v = header.at(P_VERSION).load(Ordering::Relaxed);
        check("version", v, v == POOL_VERSION)?;
        let id = header.at(P_ID).load(Ordering::Relaxed);
        check("id", id, id == hint.pool_id && id != 0)?;
        let pid = header.at(P_PID).load(Ordering::Relaxed);
        check("pid", pid, pid == u64::from(hint.pid))?;
        // The start time of the process we opened it from, from the kernel (the
        // rendezvous's word is anybody's to rewrite).
        let started = start_time(hint.pid).unwrap_or(hint.started);
        Ok(RemotePool { region, header, entry, epoch: hint.epoch, pid: hint.pid, started, id, verified: AtomicU64::new(0) })
    }

    /// The kernel's word on the process that owns this pool *now*: the one its
    /// header names (`P_OWNER`) if the kernel confirms it writes the pool, else
    /// the one we opened it from. An owner that hands the pool to a successor
    /// (`Peer::hand_over`) writes the successor there before it exits, so a link
    /// or binding follows the pool, not the first process; an owner that writes
    /// any other process there (to look dead while it lives, or alive after it
    /// died) is not believed: only its fork successor can map its pool writable.
    pub(crate) fn owner_liveness(&self) -> Liveness {
        // Relaxed: a hint the kernel's answer confirms. One word: never the
        // successor's pid with the predecessor's start time (a process that
        // does not exist, which would read as a dead owner).
        let mut word = self.header.at(P_OWNER).load(Ordering::Relaxed);
        // A "dead" may be about a predecessor that handed the pool over and
        // exited after we read its word: asked again about the word now (the
        // kernel saw it exit after the successor's store, so we see that
        // store). Bounded: an owner flipping its word forever reads as alive.
        for _ in 0..4 {
            let (pid, started) = self.owner_now(word);
            let verdict = liveness(u64::from(pid), started);
            if !verdict.is_dead() {
                return verdict;
            }
            let now = self.header.at(P_OWNER).load(Ordering::Relaxed);
            if now == word {
                return verdict;
            }
            word = now;
        }
        Liveness::Unknown
    }

    /// The owner by header word 15 (`word`), believed when it is the process
    /// we opened the pool from or one the kernel says maps it writable
    /// (checked once per word: `verified`); else the process we opened it from.
    fn owner_now(&self, word: u64) -> (u32, u64) {
        let (pid, started) = owner_of(word);
        if pid == 0 || pid == self.pid {
            return (self.pid, self.started);
        }
        // Relaxed: a cache of our own check, read and written by this peer only.
        if self.verified.load(Ordering::Relaxed) == word {
            return (pid, started);
        }
        if matches!(maps_writable(pid, self.region.as_fd()), Ok(true)) {
            self.verified.store(word, Ordering::Relaxed);
            return (pid, started);
        }
        (self.pid, self.started)
    }

    /// The process that writes this pool, as the kernel says: the owner its
    /// header names, or the process we opened it from, whichever has a
    /// writable shared mapping of it; `None` if neither (an fd of another's
    /// pool, advertised as one's own). Reads `/proc/PID/maps`: slow paths only.
    pub(crate) fn writer(&self) -> Option<u32> {
        // Relaxed: a hint the kernel confirms.
        let (named, _) = owner_of(self.header.at(P_OWNER).load(Ordering::Relaxed));
        [named, self.pid].into_iter().find(|&p| p != 0 && matches!(maps_writable(p, self.region.as_fd()), Ok(true)))
    }

    /// The pid the pool's header names as its owner now (a successor after a
    /// hand-over, when the kernel confirms it), or the one it was opened with:
    /// where its fds are found (`/proc/PID/fd`).
    pub(crate) fn owner_pid(&self) -> u32 {
        // Relaxed: a hint; what is opened there is checked (wake.rs).
        self.owner_now(self.header.at(P_OWNER).load(Ordering::Relaxed)).0
    }

    /// Header word `i` as the owner wrote it (a hint: validate before use).
    pub(crate) fn header_word(&self, i: usize) -> u64 {
        // Relaxed: a value checked against the kernel or another pool before use.
        self.header.at(i).load(Ordering::Relaxed)
    }

    /// Whether `[off, off + len)` lies inside what the kernel says the memfd
    /// holds (no syscall unless the pool grew since we last asked).
    #[inline]
    pub(crate) fn covers(&self, off: u64, len: u64) -> bool {
        match off.checked_add(len) {
            Some(end) => usize::try_from(end).is_ok_and(|end| self.region.len_at_least(end)),
            None => false,
        }
    }

    /// Bytes of the pool mapped now (never less later: a sealed pool cannot
    /// shrink, and the mapping only grows).
    pub(crate) fn mapped_len(&self) -> usize {
        self.region.len()
    }

    /// Pointer to byte `off` after `covers(off, len)` said yes.
    pub(crate) fn ptr(&self, off: u64) -> NonNull<u8> {
        debug_assert!(self.covers(off, 0));
        // SAFETY: `off` is inside the mapping (checked by the caller through
        // `covers`); the mapping never moves while `region` lives.
        unsafe { NonNull::new_unchecked(self.region.as_ptr().add(off as usize)) }
    }

    /// The producer side of channel `c` in this pool, if it has one that fits.
    pub(crate) fn channel(&self, c: usize) -> Result<Option<ChannelHint>, PoolError> {
        let w = |i| self.header.at(P_CHANNELS + c * CHANNEL_WORDS + i).load(Ordering::Acquire);
        let (ring_off, capacity, returns_head_off) = (w(0), w(1), w(2));
        if ring_off == 0 {
            return Ok(None);
        }
        let bad = |field, value| PoolError::Corrupt { what: "pool channel table", field, value };
        if !capacity.is_power_of_two() || capacity as usize > MAX_RING_CELLS {
            return Err(bad("capacity", capacity));
        }
        let ring_len = numashm_ring::split_producer_bytes(capacity as usize) as u64;
        if ring_off % 128 != 0 || !self.covers(ring_off, ring_len) {
            return Err(bad("ring offset", ring_off));
        }
        if returns_head_off % 128 != 0 || !self.covers(returns_head_off, numashm_ring::SPLIT_CONSUMER_BYTES as u64) {
            return Err(bad("return head offset", returns_head_off));
        }
        Ok(Some(ChannelHint { bound: w(3), ring_off: ring_off as usize, capacity: capacity as usize, returns_head_off: returns_head_off as usize }))
    }

    /// The link this (consumer) pool made to our channel `c` ring at `ring_off`.
    ///
    /// Its tag is read before and after its words, both Acquire: the consumer
    /// stores every word Release, after the store of 0 that dropped the slot's
    /// previous link, so a word of a newer link read here makes the second
    /// read see that 0 or the newer tag (another serial), and the mix is
    /// refused. What is returned is one link, as its consumer published it.
    pub(crate) fn link_to(&self, c: usize, producer_entry: u32, producer_pool: u64, ring_off: usize) -> Result<Option<LinkHint>, PoolError> {
        for l in 0..MAX_LINKS {
            let w = |i| self.header.at(P_LINKS + l * LINK_WORDS + i).load(Ordering::Acquire);
            let tag = w(0);
            if tag & !LINK_SERIAL_MASK != LINK_VALID | (c as u64) << 32 | u64::from(producer_entry) {
                continue;
            }
            if w(1) != producer_pool || w(4) != ring_off as u64 {
                continue;
            }
            let (head_off, returns_off, cap) = (w(2), w(3), w(5));
            if w(0) != tag {
                // Dropped (and perhaps made again) while we read: not this one.
                continue;
            }
            let bad = |field, value| PoolError::Corrupt { what: "pool link table", field, value };
            if !cap.is_power_of_two() || cap as usize > MAX_RING_CELLS {
                return Err(bad("return capacity", cap));
            }
            if head_off % 128 != 0 || !self.covers(head_off, numashm_ring::SPLIT_CONSUMER_BYTES as u64) {
                return Err(bad("head offset", head_off));
            }
            let rlen = numashm_ring::split_producer_bytes(cap as usize) as u64;
            if returns_off % 128 != 0 || !self.covers(returns_off, rlen) {
                return Err(bad("return ring offset", returns_off));
            }
            return Ok(Some(LinkHint { tag, head_off: head_off as usize, returns_off: returns_off as usize, returns_capacity: cap as usize }));
        }
        Ok(None)
    }
}
