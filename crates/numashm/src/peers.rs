//! The peer table: one 128-byte entry per peer, attach/detach by CAS, liveness
//! by pidfd (plus the process start time, so a reused pid is not mistaken for
//! the dead peer).
//!
//! Entry word 0 packs `state (8 bits) | epoch (24 bits) | pid (32 bits)`, so a
//! peer's identity and state change together in one CAS.

use crate::sync::Ordering;
use crate::words::Words;

/// What a peer slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Free for the next attacher.
    Empty,
    /// A live process uses the segment.
    Attached,
    /// Detaching: its slots are being given back.
    Leaving,
    /// Found dead; a recoverer is reclaiming its slots.
    Dead,
}

const S_EMPTY: u64 = 0;
const S_ATTACHED: u64 = 1;
const S_LEAVING: u64 = 2;
const S_DEAD: u64 = 3;

pub(crate) const E_IDENT: usize = 0;
pub(crate) const E_START_TIME: usize = 1;
pub(crate) const E_MAPPING: usize = 2;
pub(crate) const E_SENT: usize = 3;
pub(crate) const E_RECEIVED: usize = 4;
pub(crate) const E_RECLAIMED: usize = 5;
/// Who is recovering this entry: a [`Claimant`] word, 0 = nobody.
pub(crate) const E_RECOVERER: usize = 6;
pub(crate) const ENTRY_WORDS: usize = 16;

fn pack(state: u64, epoch: u32, pid: u32) -> u64 {
    state << 56 | u64::from(epoch & 0x00ff_ffff) << 32 | u64::from(pid)
}

fn unpack(w: u64) -> (u64, u32, u32) {
    (w >> 56, (w >> 32) as u32 & 0x00ff_ffff, w as u32)
}

/// A snapshot of one peer entry, for inspection.
///
/// # Examples
///
/// ```
/// use numashm::{Segment, SegmentConfig, PeerState};
/// let seg = Segment::create(SegmentConfig::anonymous("doc-peers"))?;
/// let me = seg.peers().into_iter().find(|p| p.state == PeerState::Attached).unwrap();
/// assert_eq!(me.pid, std::process::id());
/// assert_eq!(me.recovered_by, None); // nobody is recovering a live peer
/// # Ok::<(), numashm::SegmentError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Index in the peer table.
    pub index: u32,
    /// State.
    pub state: PeerState,
    /// Bumped on every attach of this slot.
    pub epoch: u32,
    /// Process id.
    pub pid: u32,
    /// Where the peer mapped the segment (its base address).
    pub mapping: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Slots reclaimed from this peer after it died or left.
    pub reclaimed: u64,
    /// Whether the process is alive now (pidfd), for Attached peers.
    pub alive: bool,
    /// The pid of the process holding this entry's recovery claim (it is
    /// reclaiming the dead peer's slots now, or died doing it), if any.
    pub recovered_by: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct PeerTable {
    pub(crate) words: Words,
    pub(crate) max: u32,
}

pub(crate) use numashm_region::process::start_time;
use numashm_region::process::{identify, liveness, IdentifyError};

/// Whether `pid` may still be the process that started at `started` (0: not
/// known yet, the pidfd alone decides). Only a proof of death is `false`: when
/// the kernel cannot tell (EMFILE, EPERM, `/proc` missing) the peer counts as
/// alive, so a live peer's slots are never reclaimed under it.
pub(crate) fn is_alive(pid: u32, started: u64) -> bool {
    !liveness(u64::from(pid), started).is_dead()
}

/// A process that recovers a peer entry, as stored in the entry's recoverer word:
/// `pid << 32 | low 32 bits of its start time`, one word so that both change
/// together (never 0: pid 0 is not a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claimant(pub(crate) u64);

impl Claimant {
    /// This process (looked up each time: a forked child is another claimant).
    pub(crate) fn this_process() -> Claimant {
        let pid = std::process::id();
        Claimant::of(pid, start_time(pid).unwrap_or(0))
    }

    pub(crate) fn of(pid: u32, started: u64) -> Claimant {
        Claimant(u64::from(pid) << 32 | (started & 0xffff_ffff))
    }

    /// Whether the claimant process still runs (low start-time bits 0: not
    /// known, the pidfd alone decides).
    fn is_alive(self) -> bool {
        let low = self.0 & 0xffff_ffff;
        match identify((self.0 >> 32) as u32) {
            Ok(id) => low == 0 || id.start_time & 0xffff_ffff == low,
            Err(IdentifyError::Sys(..)) => true, // unknown counts as alive
            Err(_) => false,
        }
    }
}

impl PeerTable {
    fn word(&self, peer: u32, w: usize) -> &crate::sync::AtomicU64 {
        self.words.at(peer as usize * ENTRY_WORDS + w)
    }

    /// Takes an Empty slot for `pid`: one CAS, so two attachers never share a slot.
    pub(crate) fn attach(&self, pid: u32, mapping: u64) -> Option<(u32, u32)> {
        let started = start_time(pid).unwrap_or(0);
        for i in 0..self.max {
            let ident = self.word(i, E_IDENT);
            // Relaxed: a first look; the CAS below decides.
            let cur = ident.load(Ordering::Relaxed);
            let (state, epoch, _) = unpack(cur);
            if state != S_EMPTY {
                continue;
            }
            let epoch = (epoch + 1) & 0x00ff_ffff;
            // SYNC peer-attach: AcqRel; Acquire orders us after the previous holder's
            // release of the slot. Only the winner writes the entry's other words:
            // written before the CAS, a losing attacher's start time could land in
            // the winner's entry and make the winner look dead.
            if ident
                .compare_exchange(cur, pack(S_ATTACHED, epoch, pid), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: counters and the mapping are observations; the start time
                // reads 0 ("not yet known") until this Release store lands.
                self.word(i, E_MAPPING).store(mapping, Ordering::Relaxed);
                self.word(i, E_SENT).store(0, Ordering::Relaxed);
                self.word(i, E_RECEIVED).store(0, Ordering::Relaxed);
                self.word(i, E_START_TIME).store(started, Ordering::Release);
                return Some((i, epoch));
            }
        }
        None
    }

    /// Attached(epoch, pid) → `to`; exactly one caller wins.
    fn transition(&self, peer: u32, epoch: u32, pid: u32, from: u64, to: u64) -> bool {
        // SYNC peer-state: AcqRel, the winner sees everything the peer published.
        self.word(peer, E_IDENT)
            .compare_exchange(pack(from, epoch, pid), pack(to, epoch, pid), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn begin_leave(&self, peer: u32, epoch: u32, pid: u32) -> bool {
        self.transition(peer, epoch, pid, S_ATTACHED, S_LEAVING)
    }

    pub(crate) fn begin_recover(&self, peer: u32, epoch: u32, pid: u32) -> bool {
        self.transition(peer, epoch, pid, S_ATTACHED, S_DEAD)
    }

    /// Leaving/Dead → Empty (keeping the epoch, so the next attach gets a new one).
    /// Only the entry's one releaser calls this: the leaving peer itself, or the
    /// recoverer holding the entry's recovery claim.
    pub(crate) fn release(&self, peer: u32, epoch: u32, pid: u32) {
        // The releaser holds the entry (Leaving/Dead) alone: clear the start time
        // so the next attacher's entry reads "not yet known" until it stores its own.
        // Relaxed: published by the AcqRel transition below.
        self.word(peer, E_START_TIME).store(0, Ordering::Relaxed);
        for from in [S_LEAVING, S_DEAD] {
            if self.transition(peer, epoch, pid, from, S_EMPTY) {
                return;
            }
        }
    }

    /// Takes the right to recover entry `peer` — from nobody, or from a claimant
    /// that died — so that this caller alone moves it out of Dead / Leaving.
    /// `false` while a live process holds it (perhaps another thread of ours).
    ///
    /// Why a claim and not only the state CASes: peer ids are entry indices, so
    /// once one recoverer has moved the entry to Empty and a new peer attached
    /// there, a second recoverer still working from its earlier look at "Dead"
    /// would reclaim the *new* peer's slots and ring ends.
    pub(crate) fn claim_recovery(&self, peer: u32, me: Claimant) -> bool {
        let w = self.word(peer, E_RECOVERER);
        // Acquire: a dead claimant's work on the entry is visible to us.
        let cur = w.load(Ordering::Acquire);
        if cur != 0 && (cur == me.0 || Claimant(cur).is_alive()) {
            return false;
        }
        // SYNC peer-claim: AcqRel; exactly one of racing claimants wins, and it
        // sees what the previous holder did before releasing (or dying).
        w.compare_exchange(cur, me.0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Gives the recovery claim on `peer` back.
    pub(crate) fn unclaim_recovery(&self, peer: u32, me: Claimant) {
        // Release: SYNC peer-claim, our work on the entry before the next claim.
        let _ = self.word(peer, E_RECOVERER).compare_exchange(me.0, 0, Ordering::Release, Ordering::Relaxed);
    }

    pub(crate) fn add_reclaimed(&self, peer: u32, n: u64) {
        // Relaxed: a statistic.
        self.word(peer, E_RECLAIMED).fetch_add(n, Ordering::Relaxed);
    }

    /// One counter of `peer`, written only by that peer (single writer).
    pub(crate) fn bump(&self, peer: u32, w: usize, n: u64) {
        let c = self.word(peer, w);
        // Relaxed: a single-writer statistic; load+store avoids a locked RMW on the hot path.
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub(crate) fn ident(&self, peer: u32) -> (PeerState, u32, u32) {
        // Acquire: SYNC peer-attach, so the entry's other words are the attacher's.
        let (s, e, p) = unpack(self.word(peer, E_IDENT).load(Ordering::Acquire));
        let state = match s {
            S_ATTACHED => PeerState::Attached,
            S_LEAVING => PeerState::Leaving,
            S_DEAD => PeerState::Dead,
            _ => PeerState::Empty,
        };
        (state, e, p)
    }

    pub(crate) fn info(&self, peer: u32) -> PeerInfo {
        let (state, epoch, pid) = self.ident(peer);
        // Relaxed: statistics and immutable-while-attached fields read after the Acquire above.
        let r = |w| self.word(peer, w).load(Ordering::Relaxed);
        PeerInfo {
            index: peer,
            state,
            epoch,
            pid,
            mapping: r(E_MAPPING),
            sent: r(E_SENT),
            received: r(E_RECEIVED),
            reclaimed: r(E_RECLAIMED),
            alive: state == PeerState::Attached && is_alive(pid, r(E_START_TIME)),
            recovered_by: match r(E_RECOVERER) {
                0 => None,
                claim => Some((claim >> 32) as u32),
            },
        }
    }

    pub(crate) fn started(&self, peer: u32) -> u64 {
        // Acquire: pairs with the attacher's Release store of its start time.
        self.word(peer, E_START_TIME).load(Ordering::Acquire)
    }

    pub(crate) fn find_pid(&self, pid: u32) -> Option<u32> {
        (0..self.max).find(|&i| {
            let (s, _, p) = self.ident(i);
            s == PeerState::Attached && p == pid
        })
    }
}

#[cfg(test)]
impl PeerTable {
    /// Test support: makes entry `peer` look attached by `pid` (a process of the
    /// test's choosing, e.g. one that has exited).
    pub(crate) fn pretend_attached(&self, peer: u32, epoch: u32, pid: u32) {
        self.word(peer, E_START_TIME).store(0, Ordering::Relaxed);
        self.word(peer, E_IDENT).store(pack(S_ATTACHED, epoch, pid), Ordering::Release);
    }

    /// Test support: the recoverer word of `peer`.
    pub(crate) fn recoverer(&self, peer: u32) -> &crate::sync::AtomicU64 {
        self.word(peer, E_RECOVERER)
    }
}
