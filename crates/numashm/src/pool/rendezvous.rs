//! The rendezvous: the one memory every peer writes, so every word read from
//! it is a hint. It says which peers exist and where their pools are; who
//! consumes each channel; which channels each peer produces. Nothing read here
//! is used before the kernel confirms it (the process lives, the pool fd is a
//! sealed memfd, the pool's own header names the same id).
//!
//! Layout (version 4; offsets from the region base, `u64` words):
//!
//! | offset | words | part |
//! |---|---|---|
//! | 0 | | region header (region.md) |
//! | 4096 | 64 | header: magic, `version \| max_peers << 32`, change counter |
//! | 4608 | 64 | channel words: consumer `epoch << 32 \| entry + 1` (0 = none), taken by CAS |
//! | 5120 | 16 × max_peers | peer entries |
//!
//! Peer entry words: 0 `state (8) | epoch (24) | pid (32)` (CAS), 1 start
//! time, 2 pool fd number in the owner, 3 pool id, 4 pool reservation bytes,
//! 5 produced-channel mask, 6 consumed-channel mask.
//!
//! A channel word names a *use* of an entry (its epoch), not only the entry:
//! a word whose epoch is not the entry's current one is a leftover of an
//! earlier user (who died or left), never the claim of the entry's new user.
//! Without the epoch a claimer that found the dead user's entry free could
//! take the channel from the next user of that entry, who had just been told
//! it holds it (loom `pool_attach.rs`, the late recoverer).

use std::cell::Cell;
use std::os::fd::AsFd;
use std::sync::Arc;

use numashm_region::{Region, HEADER_LEN};

use crate::pool::entry_lock::EntryLocks;
use crate::pool::error::PoolError;
use crate::pool::liveness::Liveness;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::words::Words;

/// First header word: `b"NSHMRDV4"` little-endian.
pub const RENDEZVOUS_MAGIC: u64 = u64::from_le_bytes(*b"NSHMRDV4");
/// Layout version of the rendezvous.
pub const RENDEZVOUS_VERSION: u64 = 4;
/// Channels per rendezvous (a channel is one bit of a `u64` mask).
pub const MAX_CHANNELS: usize = 64;
/// Most peers a rendezvous holds.
pub const MAX_POOL_PEERS: u32 = 1024;

pub(crate) const HEADER_OFF: usize = HEADER_LEN;
const HEADER_WORDS: usize = 64;
pub(crate) const CHANNELS_OFF: usize = HEADER_OFF + HEADER_WORDS * 8;
pub(crate) const PEERS_OFF: usize = CHANNELS_OFF + MAX_CHANNELS * 8;
pub(crate) const ENTRY_WORDS: usize = 16;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_CHANGES: usize = 2;

pub(crate) const E_IDENT: usize = 0;
pub(crate) const E_STARTED: usize = 1;
pub(crate) const E_POOL_FD: usize = 2;
pub(crate) const E_POOL_ID: usize = 3;
pub(crate) const E_POOL_RESERVED: usize = 4;
pub(crate) const E_PRODUCES: usize = 5;
pub(crate) const E_CONSUMES: usize = 6;

/// Entry states (word 0, bits 56..64).
pub(crate) const S_EMPTY: u64 = 0;
pub(crate) const S_JOINING: u64 = 1;
pub(crate) const S_ATTACHED: u64 = 2;

pub(crate) fn pack(state: u64, epoch: u32, pid: u32) -> u64 {
    state << 56 | u64::from(epoch & 0x00ff_ffff) << 32 | u64::from(pid)
}

pub(crate) fn unpack(w: u64) -> (u64, u32, u32) {
    (w >> 56, (w >> 32) as u32 & 0x00ff_ffff, w as u32)
}

/// Epochs are 24 bits (entry word 0).
const EPOCH_MASK: u32 = 0x00ff_ffff;

/// A channel's consumer word: `epoch << 32 | entry + 1` (0 = none).
pub(crate) fn pack_consumer(entry: u32, epoch: u32) -> u64 {
    u64::from(epoch & EPOCH_MASK) << 32 | (u64::from(entry) + 1)
}

/// Decodes a consumer word read from the rendezvous (any process may have
/// written it): `Ok(None)` for 0, `Ok(Some((entry, epoch)))` for a word whose
/// entry is below `max_peers` and whose epoch fits 24 bits, else `Err` naming
/// the bad field.
pub(crate) fn unpack_consumer(w: u64, max_peers: u32) -> Result<Option<(u32, u32)>, &'static str> {
    if w == 0 {
        return Ok(None);
    }
    let (low, epoch) = (w & 0xffff_ffff, w >> 32);
    if low == 0 || low > u64::from(max_peers) {
        return Err("consumer");
    }
    if epoch > u64::from(EPOCH_MASK) {
        return Err("consumer epoch");
    }
    Ok(Some(((low - 1) as u32, epoch as u32)))
}

/// Bytes a rendezvous for `max_peers` needs.
pub(crate) fn rendezvous_len(max_peers: u32) -> usize {
    PEERS_OFF + max_peers as usize * ENTRY_WORDS * 8
}

/// What one peer entry says (hints, copied out with atomic loads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryHint {
    pub(crate) state: u64,
    pub(crate) epoch: u32,
    pub(crate) pid: u32,
    pub(crate) started: u64,
    pub(crate) pool_fd: u64,
    pub(crate) pool_id: u64,
    pub(crate) pool_reserved: u64,
    pub(crate) produces: u64,
    pub(crate) consumes: u64,
}

/// The mapped rendezvous, validated once at open (magic, version, size).
#[derive(Debug)]
pub(crate) struct Rendezvous {
    pub(crate) region: Arc<Region>,
    header: Words,
    channels: Words,
    peers: Words,
    pub(crate) max_peers: u32,
    /// Our entry's kernel-held lock and the probe of everyone's (`Err`: why
    /// they could not be opened; joining then fails with it, probing says
    /// `Unknown`).
    locks: Result<EntryLocks, std::io::ErrorKind>,
    /// The entry this view joined and its epoch (set by `join`): our channel
    /// claims name that use of the entry.
    joined: Cell<Option<(u32, u32)>>,
    /// The send path's gate (`settle`, `settled`): the change count loaded
    /// before the reads it records, and the channels whose word those reads
    /// found naming the consumer bound to them.
    settled_at: Cell<u64>,
    settled: Cell<u64>,
}

impl Rendezvous {
    /// Lays out a fresh rendezvous in a new, zeroed, writable region.
    pub(crate) fn init(region: Arc<Region>, max_peers: u32) -> Result<Self, PoolError> {
        let r = Self::view(region, max_peers)?;
        // Relaxed: published by the Release store of the magic (SYNC rendezvous-init).
        r.header.at(H_VERSION).store(RENDEZVOUS_VERSION | u64::from(max_peers) << 32, Ordering::Relaxed);
        r.header.at(H_MAGIC).store(RENDEZVOUS_MAGIC, Ordering::Release);
        Ok(r)
    }

    /// Opens an existing rendezvous: every header word is hostile.
    pub(crate) fn open(region: Arc<Region>) -> Result<Self, PoolError> {
        let head = Words::new(region.clone(), HEADER_OFF, HEADER_WORDS)
            .ok_or(PoolError::Corrupt { what: "rendezvous", field: "len", value: region.len() as u64 })?;
        // Acquire: SYNC rendezvous-init, the creator's words before the magic.
        let magic = head.at(H_MAGIC).load(Ordering::Acquire);
        if magic != RENDEZVOUS_MAGIC {
            return Err(PoolError::Corrupt { what: "rendezvous", field: "magic", value: magic });
        }
        let v = head.at(H_VERSION).load(Ordering::Relaxed);
        if v & 0xffff_ffff != RENDEZVOUS_VERSION {
            return Err(PoolError::Corrupt { what: "rendezvous", field: "version", value: v & 0xffff_ffff });
        }
        let max_peers = (v >> 32) as u32;
        if max_peers == 0 || max_peers > MAX_POOL_PEERS {
            return Err(PoolError::Corrupt { what: "rendezvous", field: "max_peers", value: u64::from(max_peers) });
        }
        Self::view(region, max_peers)
    }

    fn view(region: Arc<Region>, max_peers: u32) -> Result<Self, PoolError> {
        let too_small = || PoolError::Corrupt { what: "rendezvous", field: "len", value: region.len() as u64 };
        let header = Words::new(region.clone(), HEADER_OFF, HEADER_WORDS).ok_or_else(too_small)?;
        let channels = Words::new(region.clone(), CHANNELS_OFF, MAX_CHANNELS).ok_or_else(too_small)?;
        let peers = Words::new(region.clone(), PEERS_OFF, max_peers as usize * ENTRY_WORDS).ok_or_else(too_small)?;
        let locks = EntryLocks::open(region.as_fd()).map_err(|e| e.kind());
        let (settled_at, settled) = (Cell::new(0), Cell::new(0));
        Ok(Rendezvous { region, header, channels, peers, max_peers, locks, joined: Cell::new(None), settled_at, settled })
    }

    fn word(&self, entry: u32, w: usize) -> &AtomicU64 {
        debug_assert!(entry < self.max_peers && w < ENTRY_WORDS);
        self.peers.at(entry as usize * ENTRY_WORDS + w)
    }

    /// Counter bumped after every change of the set of peers or producers,
    /// of an entry's ident word, and of a channel's consumer word (claim,
    /// release, leave): a hint to rescan or re-read (a hostile bump only
    /// costs a rescan; a hostile writer that changes a word without a bump,
    /// or puts the count back, only delays what the slow paths re-read
    /// anyway, see `consumer_since`).
    #[inline]
    pub(crate) fn changes(&self) -> u64 {
        // Acquire: SYNC rendezvous-changes, the words changed before the bump we see.
        self.header.at(H_CHANGES).load(Ordering::Acquire)
    }

    pub(crate) fn bump_changes(&self) {
        // Release: SYNC rendezvous-changes, every word changed before this bump
        // (entry words, masks, ident, a consumer word's CAS) is seen by a reader
        // that loads the new count.
        self.header.at(H_CHANGES).fetch_add(1, Ordering::Release);
    }

    /// Whether a process holds entry `i` (its kernel-held lock; see
    /// `entry_lock.rs`): `Dead` only if nobody does.
    pub(crate) fn entry_liveness(&self, i: u32) -> Liveness {
        match &self.locks {
            Ok(l) => l.holder(i),
            Err(_) => Liveness::Unknown,
        }
    }

    /// Takes the first entry nobody holds (its lock, taken first, is the
    /// claim: the kernel gives it to one process only), fills it, then says
    /// `Attached`. Whatever the entry's words said before (a dead peer's, or
    /// a lie), nobody held it.
    pub(crate) fn join(&self, pid: u32, started: u64, pool_fd: u64, pool_id: u64, reserved: u64) -> Result<(u32, u32), PoolError> {
        let locks = self.locks.as_ref().map_err(|&k| PoolError::EntryLock(k.into()))?;
        for i in 0..self.max_peers {
            if !locks.try_take(i).map_err(PoolError::EntryLock)? {
                continue; // held by a live process
            }
            let ident = self.word(i, E_IDENT);
            // Relaxed: only the epoch is reused, to tell this use from the last.
            let (_, epoch, _) = unpack(ident.load(Ordering::Relaxed));
            let epoch = epoch.wrapping_add(1) & 0x00ff_ffff;
            // Relaxed: published by the Release store of the Attached state below.
            ident.store(pack(S_JOINING, epoch, pid), Ordering::Relaxed);
            self.word(i, E_STARTED).store(started, Ordering::Relaxed);
            self.word(i, E_POOL_FD).store(pool_fd, Ordering::Relaxed);
            self.word(i, E_POOL_ID).store(pool_id, Ordering::Relaxed);
            self.word(i, E_POOL_RESERVED).store(reserved, Ordering::Relaxed);
            self.word(i, E_PRODUCES).store(0, Ordering::Relaxed);
            self.word(i, E_CONSUMES).store(0, Ordering::Relaxed);
            // Release: SYNC peer-publish, the entry's words before the state says Attached.
            ident.store(pack(S_ATTACHED, epoch, pid), Ordering::Release);
            self.bump_changes();
            self.joined.set(Some((i, epoch)));
            return Ok((i, epoch));
        }
        Err(PoolError::Full { what: "peer table", max: self.max_peers as usize })
    }

    /// Puts our own entry's words back where another process overwrote them
    /// (every peer may write the rendezvous; each repairs what is its own, on
    /// its slow paths). The entry is ours as long as we hold its lock, which
    /// no other process can take from us.
    pub(crate) fn repair(&self, entry: u32, epoch: u32, pid: u32, words: &[(usize, u64)]) {
        let ident = self.word(entry, E_IDENT);
        let mine = pack(S_ATTACHED, epoch, pid);
        // Relaxed: a check on a slow path; the words it guards are re-validated by readers.
        let cur = ident.load(Ordering::Relaxed);
        let mut changed = false;
        for &(w, v) in words {
            let word = self.word(entry, w);
            if word.load(Ordering::Relaxed) != v {
                // Relaxed: published by the Release store of the ident below.
                word.store(v, Ordering::Relaxed);
                changed = true;
            }
        }
        if cur != mine || changed {
            // Release: SYNC peer-publish again.
            ident.store(mine, Ordering::Release);
            self.bump_changes();
        }
    }

    /// Gives our entry back (only if it is still ours: a hostile rewrite is left alone).
    pub(crate) fn leave(&self, entry: u32, epoch: u32, pid: u32) {
        let mine = pack_consumer(entry, epoch);
        for c in 0..MAX_CHANNELS {
            let _ = self.channels.at(c).compare_exchange(mine, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        // Release: everything we did as this entry happens before its next user's join.
        let _ = self.word(entry, E_IDENT).compare_exchange(
            pack(S_ATTACHED, epoch, pid),
            pack(S_EMPTY, epoch, 0),
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.bump_changes();
        // Last: the next joiner may take the entry once its lock is free.
        if let Ok(l) = &self.locks {
            l.release(entry);
        }
    }

    /// The hints of entry `i` (an Attached entry's words were published before its state).
    pub(crate) fn entry(&self, i: u32) -> EntryHint {
        // Acquire: SYNC peer-publish.
        let (state, epoch, pid) = unpack(self.word(i, E_IDENT).load(Ordering::Acquire));
        // Relaxed: ordered after the Acquire load above.
        let load = |w| self.word(i, w).load(Ordering::Relaxed);
        EntryHint {
            state,
            epoch,
            pid,
            started: load(E_STARTED),
            pool_fd: load(E_POOL_FD),
            pool_id: load(E_POOL_ID),
            pool_reserved: load(E_POOL_RESERVED),
            produces: load(E_PRODUCES),
            consumes: load(E_CONSUMES),
        }
    }

    /// Marks channel `c` as produced (or consumed) by our entry: our own bits only.
    pub(crate) fn set_bit(&self, entry: u32, word: usize, c: usize) {
        // Relaxed + the change counter's Release: a scanner reads the mask after the counter.
        self.word(entry, word).fetch_or(1 << c, Ordering::Relaxed);
        self.bump_changes();
    }

    pub(crate) fn clear_bit(&self, entry: u32, word: usize, c: usize) {
        self.word(entry, word).fetch_and(!(1u64 << c), Ordering::Relaxed);
        self.bump_changes();
    }

    /// The entry named as channel `c`'s consumer (a hint): `None` for an
    /// empty or malformed word, and for a leftover (its epoch is not the
    /// entry's current one: an earlier user of the entry claimed it).
    pub(crate) fn consumer_of(&self, c: usize) -> Option<u32> {
        // Acquire: the consumer's claim CAS (AcqRel) published its entry.
        let (entry, epoch) = unpack_consumer(self.channels.at(c).load(Ordering::Acquire), self.max_peers).ok()??;
        // Acquire: SYNC peer-publish (only the epoch is used).
        let (_, current, _) = unpack(self.word(entry, E_IDENT).load(Ordering::Acquire));
        (current == epoch).then_some(entry)
    }

    /// The channels whose consumer word the send path need not read: each
    /// was read after the change count `changes` (loaded with
    /// [`Self::changes`] before this call) and named the consumer bound to
    /// it then ([`Self::settle`]). Empty once the count moved: every change
    /// of what [`Self::consumer_of`] reads by a well-behaved peer (a claim's
    /// or a release's CAS, a join, repair or leave of the named entry) is
    /// followed by a bump (SYNC rendezvous-changes), so a send that loads the
    /// new count reads the new word.
    ///
    /// A writer that changes the word without a bump (or puts the count
    /// back) is not seen here until the count moves. What that delays is a
    /// rebind, never a wrong one: a binding is kept whatever the word says
    /// while its consumer lives and keeps its link, and the paths that call
    /// `Peer::bind` read the word themselves, gate or not (a full ring, every
    /// upkeep of a wait slice, `collect_returns`, a class with no free slot).
    #[inline]
    pub(crate) fn settled(&self, changes: u64) -> u64 {
        if self.settled_at.get() == changes {
            self.settled.get()
        } else {
            0
        }
    }

    /// Records that channel `c`'s word, read after count `changes`, named
    /// the consumer bound to `c` (see [`Self::settled`]).
    #[inline]
    pub(crate) fn settle(&self, c: usize, changes: u64) {
        let kept = self.settled(changes);
        self.settled_at.set(changes);
        self.settled.set(kept | 1 << c);
    }

    /// Claims channel `c`'s consumer word for `entry` (the entry this view
    /// joined: the word names it with its epoch): from 0, from a malformed
    /// word, from a leftover (a word naming an earlier epoch of its entry),
    /// or from a consumer whose entry nobody holds (its lock is free: the
    /// kernel's word), whose entry is not Attached (left, or taken over), or
    /// whose entry does not say it consumes `c` (a claimer raises that bit
    /// before it claims, and repairs it; a word naming a live peer that does
    /// not consume `c` is a lie another process wrote).
    /// A live consumer keeps it: `Err(its entry)`; `Err(None)` when the word
    /// keeps changing under us, or this view has not joined as `entry`.
    pub(crate) fn claim_consumer(&self, c: usize, entry: u32) -> Result<(), Option<u32>> {
        let Some(mine) = self.my_consumer_word(entry) else { return Err(None) };
        for _ in 0..4 {
            // Acquire: see the previous consumer's entry words.
            let cur = self.channels.at(c).load(Ordering::Acquire);
            // The whole word: our entry with an older epoch is a leftover, not us.
            if cur == mine {
                return Ok(());
            }
            if let Some(h) = self.live_consumer(c, cur) {
                return Err(Some(h));
            }
            if self.take_consumer(c, cur, mine) {
                return Ok(());
            }
        }
        // The word keeps changing under us (a hostile writer): give up, typed.
        Err(None)
    }

    /// Our consumer word, if this view joined as `entry`.
    fn my_consumer_word(&self, entry: u32) -> Option<u64> {
        let (me, epoch) = self.joined.get()?;
        debug_assert_eq!(me, entry, "a view claims only for the entry it joined");
        (me == entry).then(|| pack_consumer(entry, epoch))
    }

    /// The live consumer of channel `c` that the word value `cur` names:
    /// its entry is held (by its lock), Attached, in the epoch the word
    /// names, and says it consumes `c`. `None`: the word is free to take.
    fn live_consumer(&self, c: usize, cur: u64) -> Option<u32> {
        let (h, epoch) = unpack_consumer(cur, self.max_peers).ok()??;
        let e = self.entry(h);
        let consumes = e.consumes & (1 << c) != 0;
        (e.state == S_ATTACHED && e.epoch == epoch && consumes && !self.entry_liveness(h).is_dead()).then_some(h)
    }

    /// Replaces channel `c`'s word `cur` (garbage, empty, a leftover or a
    /// gone consumer's) by `mine`. AcqRel: one claimer wins; a word that
    /// changed since `cur` was read (a new claim) is left alone.
    fn take_consumer(&self, c: usize, cur: u64, mine: u64) -> bool {
        let won = self.channels.at(c).compare_exchange(cur, mine, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if won {
            self.bump_changes();
        }
        won
    }

    /// Gives channel `c`'s consumer word back if it is ours (our entry and epoch).
    pub(crate) fn release_consumer(&self, c: usize, entry: u32) {
        if let Some(mine) = self.my_consumer_word(entry) {
            // Release: what we did as consumer happens before the next claimer's Acquire.
            let _ = self.channels.at(c).compare_exchange(mine, 0, Ordering::Release, Ordering::Relaxed);
        }
        self.bump_changes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use numashm_region::RegionOptions;

    const C: usize = 3;

    /// A fresh rendezvous for 4 peers, and a way to open more views of it:
    /// each view opens its own lock descriptions, so views behave as
    /// processes do (dropping one without `leave` is its process dying).
    fn rendezvous(name: &str) -> (Arc<Region>, Rendezvous) {
        let region = Arc::new(RegionOptions::new(64 << 10).create_anonymous(name).unwrap());
        let rdv = Rendezvous::init(region.clone(), 4).unwrap();
        (region, rdv)
    }

    fn join(rdv: &Rendezvous, pool_id: u64) -> (u32, u32) {
        rdv.join(std::process::id(), 0, 0, pool_id, 0).unwrap()
    }

    fn word(rdv: &Rendezvous) -> u64 {
        rdv.channels.at(C).load(Ordering::Relaxed)
    }

    /// The late recoverer (loom `pool_attach.rs`), step by step on the real
    /// code: R reads the word of a dead consumer D (entry 0) and finds it
    /// free to take; J joins entry 0 (the next epoch) and claims; R's CAS
    /// from the word it read must then fail, leaving the channel to J. With
    /// an epoch-less word J was told `Ok` (the word already said "entry 0")
    /// and R's CAS succeeded too: two consumers, J's receiver starved.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_late_recoverer_cannot_take_the_channel_of_the_new_user_of_a_dead_entry() {
        let (region, _creator) = rendezvous("rdv-late-recoverer");
        let d = Rendezvous::open(region.clone()).unwrap();
        let (d_entry, d_epoch) = join(&d, 11);
        let r = Rendezvous::open(region.clone()).unwrap();
        let (r_entry, _) = join(&r, 22);
        assert_eq!((d_entry, r_entry), (0, 1));
        d.set_bit(d_entry, E_CONSUMES, C);
        assert_eq!(d.claim_consumer(C, d_entry), Ok(()));
        assert_eq!(r.consumer_of(C), Some(d_entry));
        drop(d); // D dies: its lock goes, its words stay.

        // R (claim_consumer, first steps): the word names D, whose entry nobody holds.
        r.set_bit(r_entry, E_CONSUMES, C);
        let seen = word(&r);
        assert_eq!(seen, pack_consumer(d_entry, d_epoch));
        assert_eq!(r.live_consumer(C, seen), None, "D is dead: R may take its word");

        // J joins D's entry and claims the channel before R's CAS.
        let j = Rendezvous::open(region.clone()).unwrap();
        let (j_entry, j_epoch) = join(&j, 33);
        assert_eq!((j_entry, j_epoch), (d_entry, d_epoch + 1));
        j.set_bit(j_entry, E_CONSUMES, C);
        assert_eq!(j.claim_consumer(C, j_entry), Ok(()), "D's word is a leftover: J takes it");
        assert_eq!(word(&j), pack_consumer(j_entry, j_epoch));

        // R's CAS from the word it read fails: J's claim changed it.
        let r_word = r.my_consumer_word(r_entry).unwrap();
        assert!(!r.take_consumer(C, seen, r_word), "the late CAS must not steal J's channel");
        assert_eq!(r.claim_consumer(C, r_entry), Err(Some(j_entry)), "J is live and holds it");
        assert_eq!((r.consumer_of(C), j.consumer_of(C)), (Some(j_entry), Some(j_entry)));
    }

    /// A leftover of an entry's earlier use names nobody, and its entry's new
    /// user (or anyone) takes it; the current use keeps it against others.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_word_of_an_earlier_epoch_is_a_leftover_and_the_current_one_is_kept() {
        let (region, _creator) = rendezvous("rdv-leftover");
        let a = Rendezvous::open(region.clone()).unwrap();
        let (a_entry, a_epoch) = join(&a, 11);
        let b = Rendezvous::open(region.clone()).unwrap();
        let (b_entry, _) = join(&b, 22);
        a.set_bit(a_entry, E_CONSUMES, C);
        b.set_bit(b_entry, E_CONSUMES, C);
        // A word naming A's entry with an older epoch (a dead earlier user's).
        a.channels.at(C).store(pack_consumer(a_entry, a_epoch - 1), Ordering::Relaxed);
        assert_eq!(b.consumer_of(C), None, "a leftover names no consumer");
        assert_eq!(b.claim_consumer(C, b_entry), Ok(()), "a leftover is free to take, though A is live");
        assert_eq!(a.claim_consumer(C, a_entry), Err(Some(b_entry)));
        // B leaves: its word goes to 0; a leftover of B's entry is not B's to clear.
        b.release_consumer(C, b_entry);
        assert_eq!(word(&a), 0);
        assert_eq!(a.claim_consumer(C, a_entry), Ok(()));
        a.channels.at(C).store(pack_consumer(b_entry, 9), Ordering::Relaxed);
        b.release_consumer(C, b_entry);
        assert_eq!(word(&a), pack_consumer(b_entry, 9));
    }

    /// Malformed words (entry out of range, entry part 0 with an epoch,
    /// epoch wider than 24 bits) are typed errors naming the field, never an
    /// index: `consumer_of` says nobody, a claimer takes them.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn malformed_consumer_words_are_refused_and_taken_over() {
        for (w, field) in [(5, "consumer"), (u64::MAX, "consumer"), (7 << 32, "consumer"), (1 << 56 | 1, "consumer epoch")] {
            assert_eq!(unpack_consumer(w, 4), Err(field), "{w:#x}");
        }
        assert_eq!(unpack_consumer(0, 4), Ok(None));
        assert_eq!(unpack_consumer(pack_consumer(3, EPOCH_MASK), 4), Ok(Some((3, EPOCH_MASK))));
        let (region, _creator) = rendezvous("rdv-malformed");
        let a = Rendezvous::open(region.clone()).unwrap();
        let (me, _) = join(&a, 11);
        a.set_bit(me, E_CONSUMES, C);
        for w in [5, u64::MAX, 1 << 56 | 1] {
            a.channels.at(C).store(w, Ordering::Relaxed);
            assert_eq!(a.consumer_of(C), None, "{w:#x}");
            assert_eq!(a.claim_consumer(C, me), Ok(()), "{w:#x}");
            assert_eq!(a.consumer_of(C), Some(me));
        }
    }

    /// The entry channel `C` of `p` is bound to (its producer side), if any.
    fn bound_entry(p: &crate::pool::Peer) -> Option<u32> {
        p.produced.borrow()[C].as_ref().and_then(|s| s.bound.as_ref().map(|b| b.remote.entry))
    }

    /// Sends `v` on `tx` (one byte).
    fn send(tx: &crate::pool::Sender<'_>, v: u8) {
        let mut m = tx.alloc(1).unwrap();
        m.copy_from_slice(&[v]);
        tx.send(m).map_err(|e| e.error).unwrap();
    }

    /// Three peers of one fresh rendezvous: a producer `a`, consumers `b` and `c`.
    fn three_peers(name: &str) -> [crate::pool::Peer; 3] {
        use crate::pool::{Peer, PeerConfig};
        let a = Peer::create_anonymous(name, 4, PeerConfig::new("gate-a")).unwrap();
        let b = a.join_same(PeerConfig::new("gate-b")).unwrap();
        let c = a.join_same(PeerConfig::new("gate-c")).unwrap();
        [a, b, c]
    }

    /// Sends until `a` is bound to `rb`'s peer and its send path no longer
    /// reads channel `C`'s word (settled at the current count).
    fn settle_on_b<'p>(a: &'p crate::pool::Peer, tx: &crate::pool::Sender<'p>, rb: &crate::pool::Receiver<'_>) {
        for v in 0..3 {
            send(tx, v);
            assert_eq!(&*rb.recv_timeout(std::time::Duration::from_secs(5)).unwrap(), &[v]);
        }
        assert_eq!(bound_entry(a), Some(rb_entry(rb)));
        assert_ne!(a.rdv.settled(a.rdv.changes()) & 1 << C, 0, "the send path no longer reads the word");
    }

    fn rb_entry(rx: &crate::pool::Receiver<'_>) -> u32 {
        rx.peer.me
    }

    /// A consumer that claims the channel of a bound producer is seen
    /// through the change counter (the claim bumps it after its CAS): the
    /// producer's very next send reads the word, drops the consumer that left
    /// and then binds the new one, within a few sends (well under a ring's
    /// worth: no full-ring slow path, and the producer never waits).
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_claim_seen_through_the_change_counter_rebinds_from_the_send_path() {
        let [a, b, c] = three_peers("rdv-gate-claim");
        let tx = a.sender(C).unwrap();
        let rb = b.receiver(C).unwrap();
        settle_on_b(&a, &tx, &rb);
        drop(rb); // releases the word (a bump) and drops its links
        let rc = c.receiver(C).unwrap(); // claims it (a bump)
        assert_eq!(a.rdv.settled(a.rdv.changes()), 0, "the count moved: the gate is open");
        send(&tx, 10);
        assert_eq!(bound_entry(&a), None, "the first send saw the claim and let the consumer that left go");
        let mut got = None;
        for v in 11..61 {
            send(&tx, v);
            if let Ok(m) = rc.recv_timeout(std::time::Duration::from_millis(20)) {
                got = Some(m[0]);
                break;
            }
        }
        assert!(got.is_some_and(|v| v > 10), "the new consumer is bound from the send path: {got:?}");
        assert_eq!(bound_entry(&a), Some(c.me));
    }

    /// A writer that hides a change of the word from the counter (here: it
    /// puts the count back after a release and a claim) only delays the
    /// rebind: the producer keeps sending into the old binding's ring, and
    /// its next wait slice (`upkeep`, which reads the word whatever the
    /// gate says) lets the consumer that left go; the new one is then bound
    /// and receives.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_word_change_hidden_from_the_counter_is_caught_by_the_wait_slice() {
        let [a, b, c] = three_peers("rdv-gate-hidden");
        let tx = a.sender(C).unwrap();
        let ra = a.receiver(C + 1).unwrap(); // something for `a` to wait on (its claim bumps: made first)
        let rb = b.receiver(C).unwrap();
        settle_on_b(&a, &tx, &rb);
        let seen = a.rdv.changes();
        drop(rb);
        let rc = c.receiver(C).unwrap();
        a.rdv.header.at(H_CHANGES).store(seen, Ordering::Relaxed); // the hostile writer
        for v in 10..14 {
            send(&tx, v);
        }
        assert_eq!(bound_entry(&a), Some(b.me), "hidden from the counter: the send path did not look");
        assert!(matches!(rc.try_recv(), Err(crate::pool::ChannelError::Empty)), "nobody bound c");
        assert!(ra.recv_timeout(std::time::Duration::from_millis(30)).is_err(), "nothing on C + 1");
        assert_ne!(bound_entry(&a), Some(b.me), "the wait slice's upkeep read the word and let b go");
        // Every slot lent to b came back: the 4 sent into its ring after it
        // left, and the 3 it returned that `a` had not taken back yet.
        assert_eq!(a.lost_to_dead_consumers(), 7);
        let mut got = None;
        for v in 20..70 {
            send(&tx, v);
            let _ = ra.recv_timeout(std::time::Duration::from_millis(5));
            if let Ok(m) = rc.recv_timeout(std::time::Duration::from_millis(20)) {
                got = Some(m[0]);
                break;
            }
        }
        assert!(got.is_some_and(|v| v >= 20), "the new consumer is bound: {got:?}");
        assert_eq!(bound_entry(&a), Some(c.me));
    }
}
