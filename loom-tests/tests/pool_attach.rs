//! Loom models of joining a rendezvous and taking over what a dead peer held
//! (`numashm::pool`, layout v4), run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom --test pool_attach
//! ```
//!
//! numashm's atomics are always std's (its words live in kernel-mapped
//! memory), so these are models: each step mirrors a step of the real code
//! (the function is named in a comment), with the same words, orderings and
//! checks; loom threads are processes. The kernel's OFD lock on an entry's
//! byte (`pool/entry_lock.rs`) is modelled as what it is to the protocol: a
//! per-entry word only a lock call changes (`try_take` is one atomic
//! test-and-set, as `F_OFD_SETLK` is under the kernel's lock), which a probe
//! reads (`F_OFD_GETLK`), and which the kernel frees when its holder dies. A
//! dead peer is one whose lock is free and whose words are left as it died.
//! A process's liveness by pidfd (`liveness.rs`) is a per-pid flag.
//!
//! Models (each `BREAK_*` switch was set to `true` once and its model then
//! failed; they are all `false` here):
//! - two joiners at once on a 2-entry table take distinct entries, each with
//!   its own epoch (`BREAK_PROBE_THEN_TAKE`: both take one entry;
//!   `BREAK_RELAXED_ATTACHED`: an observer sees Attached with the previous
//!   user's pool id);
//! - a joiner racing a recoverer (a claimer of the dead entry's channel): the
//!   joiner's entry is left alone (`BREAK_RECOVERER_CLEARS_ENTRY`, layout 3's
//!   cleanup, wipes the new peer);
//! - two recoverers of one dead consumer: one takes its channel, the producer
//!   reclaims the dead one's slot exactly once and keeps the message queued
//!   for the next consumer (`BREAK_CLAIM_BY_STORE`: both take the channel;
//!   `BREAK_RECLAIM_EVERY_UNBOUND_BIND`: the queued message is reclaimed);
//! - a late recoverer, acting on a stale "dead" after the entry was re-joined
//!   by a live peer that claims the channel: the new peer keeps it, because
//!   the channel word names the claimer's epoch (`BREAK_EPOCHLESS_CONSUMER_WORD`,
//!   the word as it was before the fix: both are told they consume the
//!   channel; found by this model, see the test's note);
//! - liveness: a live consumer whose entry words a hostile writer rewrote
//!   (state, pid, consumed mask, channel word) keeps its entry and its
//!   binding, and its held slot is not reclaimed (`BREAK_DEAD_BY_HINT`: the
//!   hints decide, the joiner takes its entry and the producer reclaims the
//!   slot it is reading).
#![cfg(numashm_loom)]
#![allow(unsafe_code)] // loom's UnsafeCell is read and written through raw pointers

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A joiner that probes a lock and then takes it in a second step (not the
/// kernel's one test-and-set).
const BREAK_PROBE_THEN_TAKE: bool = false;
/// The join's Attached state stored Relaxed (not SYNC peer-publish).
const BREAK_RELAXED_ATTACHED: bool = false;
/// A recoverer that, having found an entry dead, also marks it Empty (what
/// layout 3's recovery did to the entry it recovered).
const BREAK_RECOVERER_CLEARS_ENTRY: bool = false;
/// `claim_consumer` takes the word with a plain store, not a CAS.
const BREAK_CLAIM_BY_STORE: bool = false;
/// The channel word holds only `entry + 1`, no epoch (the code before the
/// late-recoverer fix): a word of an entry's dead user and one of its next
/// user are the same word.
const BREAK_EPOCHLESS_CONSUMER_WORD: bool = false;
/// `bind` reclaims on every bind that finds no live bound consumer, not only
/// from a ring a consumer was bound to (`was_bound`).
const BREAK_RECLAIM_EVERY_UNBOUND_BIND: bool = false;
/// Liveness read from the entry's words (pid, state) instead of the lock and
/// the pid the kernel confirmed at bind time.
const BREAK_DEAD_BY_HINT: bool = false;

// rendezvous.rs: entry states and the ident word `state (8) | epoch (24) | pid (32)`.
const S_EMPTY: u64 = 0;
const S_JOINING: u64 = 1;
const S_ATTACHED: u64 = 2;

fn pack(state: u64, epoch: u32, pid: u32) -> u64 {
    state << 56 | u64::from(epoch & 0x00ff_ffff) << 32 | u64::from(pid)
}

fn unpack(w: u64) -> (u64, u32, u32) {
    (w >> 56, (w >> 32) as u32 & 0x00ff_ffff, w as u32)
}

/// `rendezvous::pack_consumer`: the channel's consumer word names a use of
/// an entry, `epoch << 32 | entry + 1` (0 = none).
fn consumer_word(entry: usize, epoch: u32) -> u64 {
    if BREAK_EPOCHLESS_CONSUMER_WORD {
        entry as u64 + 1
    } else {
        u64::from(epoch & 0x00ff_ffff) << 32 | (entry as u64 + 1)
    }
}

/// The one channel of these models.
const C: u64 = 1 << 0;
/// A pid no process has (any more).
const DEAD_PID: u32 = 9;

/// The rendezvous's words for `n` entries and one channel, the kernel's
/// entry locks, and the processes' liveness.
struct Rdv {
    /// Entry word 0 (`E_IDENT`).
    ident: Vec<AtomicU64>,
    /// Entry word 3 (`E_POOL_ID`): stands for words 1..=4, all published by
    /// the Attached store.
    pool_id: Vec<AtomicU64>,
    /// Entry word 6 (`E_CONSUMES`).
    consumes: Vec<AtomicU64>,
    /// The channel's consumer word (`consumer_word`).
    channel: AtomicU64,
    /// The kernel's OFD lock of each entry: the holder's pid, 0 = nobody.
    locks: Vec<AtomicUsize>,
    /// Whether process `pid` lives (what a pidfd says), by pid.
    alive: Vec<AtomicBool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Hint {
    state: u64,
    epoch: u32,
    pid: u32,
    pool_id: u64,
    consumes: u64,
}

impl Rdv {
    fn new(n: usize) -> Self {
        Rdv {
            ident: (0..n).map(|_| AtomicU64::new(0)).collect(),
            pool_id: (0..n).map(|_| AtomicU64::new(0)).collect(),
            consumes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            channel: AtomicU64::new(0),
            locks: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            alive: (0..10).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Sets up entry `i` as peer `pid` left it (before the model runs).
    fn preset(&self, i: usize, epoch: u32, pid: u32, pool: u64, consumes: u64, holds_lock: bool) {
        self.ident[i].store(pack(S_ATTACHED, epoch, pid), Ordering::Relaxed);
        self.pool_id[i].store(pool, Ordering::Relaxed);
        self.consumes[i].store(consumes, Ordering::Relaxed);
        if holds_lock {
            self.locks[i].store(pid as usize, Ordering::Relaxed);
            self.alive[pid as usize].store(true, Ordering::Relaxed);
        }
    }

    /// Entry 0 as a dead consumer (epoch 5) left it, still named by the
    /// channel word, its lock free.
    fn preset_dead_consumer(&self) {
        self.preset(0, 5, DEAD_PID, 99, C, false);
        self.channel.store(consumer_word(0, 5), Ordering::Relaxed);
    }

    /// `EntryLocks::try_take`: `F_OFD_SETLK` is one test-and-set in the
    /// kernel (SeqCst: the kernel's lock orders every lock call).
    fn try_take(&self, i: usize, pid: u32) -> bool {
        let me = pid as usize;
        if BREAK_PROBE_THEN_TAKE {
            let cur = self.locks[i].load(Ordering::SeqCst);
            if cur != 0 && cur != me {
                return false;
            }
            self.locks[i].store(me, Ordering::SeqCst);
            return true;
        }
        match self.locks[i].compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => true,
            Err(cur) => cur == me,
        }
    }

    /// `Rendezvous::entry_liveness` / `EntryLocks::holder` (`F_OFD_GETLK`):
    /// dead only if nobody holds the lock.
    fn entry_dead(&self, i: usize) -> bool {
        if BREAK_DEAD_BY_HINT {
            let (state, _, pid) = unpack(self.ident[i].load(Ordering::Acquire));
            return state != S_ATTACHED || !self.pid_alive(pid);
        }
        self.locks[i].load(Ordering::SeqCst) == 0
    }

    /// `liveness(pid, started)`: the pidfd. Acquire: a dead process's last
    /// deeds happen before the kernel says it died.
    fn pid_alive(&self, pid: u32) -> bool {
        self.alive
            .get(pid as usize)
            .is_some_and(|a| a.load(Ordering::Acquire))
    }

    /// `Rendezvous::join`, step by step.
    fn join(&self, pid: u32, pool: u64) -> Option<(usize, u32)> {
        for i in 0..self.ident.len() {
            // The lock first: it is the claim.
            let taken = if BREAK_DEAD_BY_HINT {
                self.entry_dead(i)
            } else {
                self.try_take(i, pid)
            };
            if !taken {
                continue;
            }
            // Relaxed: only the epoch is reused.
            let (_, epoch, _) = unpack(self.ident[i].load(Ordering::Relaxed));
            let epoch = epoch.wrapping_add(1) & 0x00ff_ffff;
            // Relaxed: published by the Release store of Attached below.
            self.ident[i].store(pack(S_JOINING, epoch, pid), Ordering::Relaxed);
            self.pool_id[i].store(pool, Ordering::Relaxed);
            self.consumes[i].store(0, Ordering::Relaxed);
            let publish = if BREAK_RELAXED_ATTACHED {
                Ordering::Relaxed
            } else {
                Ordering::Release // SYNC peer-publish
            };
            self.ident[i].store(pack(S_ATTACHED, epoch, pid), publish);
            return Some((i, epoch));
        }
        None // PoolError::Full
    }

    /// `Rendezvous::entry`: Acquire on the ident, then the words it published.
    fn entry(&self, i: usize) -> Hint {
        let (state, epoch, pid) = unpack(self.ident[i].load(Ordering::Acquire));
        Hint {
            state,
            epoch,
            pid,
            pool_id: self.pool_id[i].load(Ordering::Relaxed),
            consumes: self.consumes[i].load(Ordering::Relaxed),
        }
    }

    /// `Rendezvous::set_bit(me, E_CONSUMES, c)` (Relaxed fetch_or), as
    /// `Peer::consume` does before it claims.
    fn set_consumes(&self, i: usize) {
        self.consumes[i].fetch_or(C, Ordering::Relaxed);
    }

    /// `rendezvous::unpack_consumer`: `(entry, epoch)` of a well-formed
    /// word (entry in the table, epoch of 24 bits), else `None`.
    fn named(&self, w: u64) -> Option<(usize, u32)> {
        let (low, epoch) = (w & 0xffff_ffff, w >> 32);
        (low != 0 && low <= self.ident.len() as u64 && epoch <= 0x00ff_ffff)
            .then(|| ((low - 1) as usize, epoch as u32))
    }

    /// Whether `epoch` (from a word) is entry `h`'s current use; always
    /// with the epoch-less word, which cannot tell.
    fn same_use(&self, h: usize, epoch: u32) -> bool {
        BREAK_EPOCHLESS_CONSUMER_WORD || self.entry(h).epoch == epoch
    }

    /// `Rendezvous::claim_consumer` (`live_consumer`, `take_consumer`), step
    /// by step: a word whose epoch is not its entry's current one is a
    /// leftover of an earlier user, free to take; "mine" is the whole word.
    fn claim_consumer(&self, entry: usize, epoch: u32) -> Result<(), Option<usize>> {
        let mine = consumer_word(entry, epoch);
        for _ in 0..4 {
            // Acquire: see the previous consumer's entry words.
            let cur = self.channel.load(Ordering::Acquire);
            if cur == mine {
                return Ok(());
            }
            if let Some((h, ep)) = self.named(cur) {
                let e = self.entry(h);
                let consumes = e.consumes & C != 0;
                let same_use = BREAK_EPOCHLESS_CONSUMER_WORD || e.epoch == ep;
                if e.state == S_ATTACHED && consumes && same_use && !self.entry_dead(h) {
                    return Err(Some(h));
                }
                if BREAK_RECOVERER_CLEARS_ENTRY && self.entry_dead(h) {
                    self.ident[h].store(pack(S_EMPTY, e.epoch, 0), Ordering::Release);
                }
            }
            if BREAK_CLAIM_BY_STORE {
                self.channel.store(mine, Ordering::Release);
                return Ok(());
            }
            // AcqRel: one claimer wins.
            if self
                .channel
                .compare_exchange(cur, mine, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(None)
    }

    /// `Rendezvous::consumer_of`: Acquire on the word, then on the named
    /// entry's ident; a leftover names nobody.
    fn consumer_of(&self) -> Option<usize> {
        let (h, epoch) = self.named(self.channel.load(Ordering::Acquire))?;
        self.same_use(h, epoch).then_some(h)
    }
}

#[test]
fn two_joiners_at_once_take_distinct_entries_each_with_its_own_epoch() {
    loom::model(|| {
        let r = Arc::new(Rdv::new(2));
        // Entry 0 as a dead peer left it (Attached, nobody holds its lock); entry 1 never used.
        r.preset(0, 5, DEAD_PID, 99, 0, false);
        let joiners: Vec<_> = [(1u32, 11u64), (2, 22)]
            .into_iter()
            .map(|(pid, pool)| {
                let r = r.clone();
                thread::spawn(move || {
                    let (i, epoch) = r.join(pid, pool).expect("a free entry each");
                    // `Peer::enter` keeps (me, epoch); the entry says so while we hold it.
                    let h = r.entry(i);
                    assert_eq!(
                        (h.state, h.epoch, h.pid, h.pool_id),
                        (S_ATTACHED, epoch, pid, pool),
                        "our own entry"
                    );
                    (i, epoch)
                })
            })
            .collect();
        // Another peer looking (`Peer::peers`, `rescan`): an Attached entry's words are its user's.
        for i in 0..2 {
            let h = r.entry(i);
            if h.state == S_ATTACHED && h.pid != DEAD_PID {
                assert_eq!(
                    h.pool_id,
                    u64::from(h.pid) * 11,
                    "Attached publishes its pool id"
                );
            }
        }
        let got: Vec<_> = joiners.into_iter().map(|j| j.join().unwrap()).collect();
        assert_ne!(got[0].0, got[1].0, "distinct entries");
        for (i, epoch) in got {
            assert_eq!(epoch, if i == 0 { 6 } else { 1 }, "the entry's next epoch");
        }
    });
}

#[test]
fn a_joiner_racing_a_recoverer_of_a_dead_entry_is_left_alone() {
    loom::model(|| {
        let r = Arc::new(Rdv::new(2));
        // Entry 0: a dead consumer of the channel; entry 1: the recoverer, live.
        r.preset_dead_consumer();
        r.preset(1, 1, 2, 22, 0, true);
        let joiner = {
            let r = r.clone();
            thread::spawn(move || r.join(3, 33).expect("entry 0 is free"))
        };
        // The recoverer: `Peer::consume` takes over the dead consumer's channel.
        r.set_consumes(1);
        let first = r.claim_consumer(1, 1);
        let (i, epoch) = joiner.join().unwrap();
        // It may be refused once, naming entry 0: it read the dead peer's words
        // (Attached, consumes) and then found the lock held (by the joiner).
        // `receiver(c)` then fails with `ChannelTaken`; a retry (or `upkeep`)
        // sees the joiner's own words and takes it.
        if first.is_err() {
            assert_eq!(first, Err(Some(0)));
            assert_eq!(
                r.claim_consumer(1, 1),
                Ok(()),
                "the retry takes the channel"
            );
        }
        assert_eq!((i, epoch), (0, 6));
        let h = r.entry(0);
        assert_eq!(
            (h.state, h.epoch, h.pid, h.pool_id),
            (S_ATTACHED, 6, 3, 33),
            "the joiner's entry untouched"
        );
        assert_eq!(r.consumer_of(), Some(1));
    });
}

/// Payload words of the producer's slots (written by the owner while it owns
/// a slot, read by the reader it lent it to).
struct Slots(Vec<UnsafeCell<u64>>);

// SAFETY: access goes through loom's UnsafeCell, which reports any pair of
// accesses not ordered by happens-before: that is what the models test.
unsafe impl Sync for Slots {}
// SAFETY: as above; the cells hold integers.
unsafe impl Send for Slots {}

impl Slots {
    fn write(&self, s: usize, v: u64) {
        // SAFETY: checked by loom against every read.
        self.0[s].with_mut(|p| unsafe { *p = v });
    }
    fn read(&self, s: usize) -> u64 {
        // SAFETY: checked by loom against every write.
        self.0[s].with(|p| unsafe { *p })
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Slot {
    Free,
    /// Lent to the reader of the channel (the real mask has one bit per channel).
    Lent,
}

/// The producer's side of the channel, one thread (`Produced` + its allocator).
struct Producer {
    slots: Vec<Slot>,
    freed: Vec<u32>,
    /// `Produced::bound`: the consumer entry and the pid the kernel confirmed
    /// when its pool was opened (`RemotePool::pid`).
    bound: Option<(usize, u32)>,
    /// `Produced::was_bound`.
    was_bound: bool,
    /// The current ring (`new_ring` makes the next one).
    ring: u64,
    /// `Peer::lost_to_dead`.
    lost: u64,
}

impl Producer {
    /// `Peer::bind`, step by step (`links[e]`: the ring consumer `e` linked, `link_to`).
    fn bind(&mut self, r: &Rdv, ring_off: &AtomicU64, links: &[AtomicU64]) -> bool {
        let named = r.consumer_of();
        if let Some((entry, pid)) = self.bound {
            let pid = if BREAK_DEAD_BY_HINT {
                r.entry(entry).pid
            } else {
                pid
            };
            let dead = !r.pid_alive(pid);
            // Acquire: SYNC link-publish (and a dropped link's Release).
            let left =
                !dead && named != Some(entry) && links[entry].load(Ordering::Acquire) != self.ring;
            if !dead && !left {
                return true;
            }
        }
        if BREAK_RECLAIM_EVERY_UNBOUND_BIND || self.was_bound {
            // `reclaim_reader(c)`: every slot lent to this channel's reader.
            for (s, st) in self.slots.iter_mut().enumerate() {
                if *st == Slot::Lent {
                    *st = Slot::Free;
                    self.freed[s] += 1;
                    self.lost += 1;
                }
            }
            // `new_ring`: Release, SYNC channel-publish.
            self.ring += 1;
            ring_off.store(self.ring, Ordering::Release);
            self.bound = None;
            self.was_bound = false;
        }
        let Some(consumer) = named else { return false };
        // `self.remote(consumer)`: the pool opened through /proc/PID/fd confirms the pid.
        let pid = r.entry(consumer).pid;
        if !r.pid_alive(pid) {
            return false;
        }
        if links[consumer].load(Ordering::Acquire) != self.ring {
            return false;
        }
        self.bound = Some((consumer, pid));
        self.was_bound = true;
        true
    }
}

#[test]
fn two_recoverers_of_one_dead_consumer_one_takes_it_and_its_slot_comes_back_once() {
    loom::model(|| {
        let r = Arc::new(Rdv::new(3));
        // Entry 0: a dead consumer that held the channel and one slot (s0);
        // entries 1 and 2: two live peers that both want the channel.
        r.preset_dead_consumer();
        r.preset(1, 1, 1, 11, 0, true);
        r.preset(2, 1, 2, 22, 0, true);
        let ring_off = Arc::new(AtomicU64::new(1));
        let links: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        // Model-only: tells the winner's thread that the producer has bound it.
        let done = Arc::new(AtomicBool::new(false));
        let recoverers: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|e| {
                let (r, ring_off, links, done) =
                    (r.clone(), ring_off.clone(), links.clone(), done.clone());
                thread::spawn(move || {
                    // `Peer::consume`: the bit, the claim, then `rescan` links the current ring.
                    r.set_consumes(e);
                    let got = r.claim_consumer(e, 1);
                    if got.is_ok() {
                        // `link`: Acquire the ring offset (SYNC channel-publish), publish the
                        // link (SYNC link-publish); a replaced ring is relinked (`readable`
                        // finds it stale, `rescan` links the new one).
                        let mut linked = 0;
                        while !done.load(Ordering::Acquire) {
                            let cur = ring_off.load(Ordering::Acquire);
                            if cur != linked {
                                links[e].store(cur, Ordering::Release);
                                linked = cur;
                            }
                            thread::yield_now();
                        }
                    }
                    got
                })
            })
            .collect();
        // The producer: bound to the dead consumer on ring 1, with s0 lent to it.
        let mut p = Producer {
            slots: vec![Slot::Lent, Slot::Free],
            freed: vec![0; 2],
            bound: Some((0, DEAD_PID)),
            was_bound: true,
            ring: 1,
            lost: 0,
        };
        p.bind(&r, &ring_off, &links); // finds it dead: reclaims, ring 2
                                       // A message sent while nobody is bound waits in the ring for the next consumer.
        assert_eq!(p.slots[1], Slot::Free);
        p.slots[1] = Slot::Lent;
        // Its next slow paths, until the winner is bound to the fresh ring.
        while !p.bind(&r, &ring_off, &links) {
            thread::yield_now();
        }
        let (winner, _) = p.bound.unwrap();
        done.store(true, Ordering::Release);
        let got: Vec<_> = recoverers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            got.iter().filter(|g| g.is_ok()).count(),
            1,
            "one recoverer takes the channel: {got:?}"
        );
        assert!(
            got.contains(&Err(Some(winner))),
            "the other is told who has it: {got:?}"
        );
        assert_eq!(r.consumer_of(), Some(winner));
        assert_eq!(
            p.freed,
            vec![1, 0],
            "the dead one's slot reclaimed once, the queued one kept"
        );
        assert_eq!(p.slots, vec![Slot::Free, Slot::Lent]);
        assert_eq!(p.lost, 1);
    });
}

/// A recoverer R (entry 1) takes over the channel of a dead consumer at
/// entry 0 (epoch 5) while a new peer J joins entry 0 (epoch 6) and claims
/// the same channel. Exactly one of them may be told it consumes the channel.
///
/// **Found by this model on the code as it was (`rendezvous.rs`
/// `claim_consumer`, fixed since; `BREAK_EPOCHLESS_CONSUMER_WORD` brings it
/// back).** The channel word held only `entry + 1`, so it could not tell a
/// dead user of an entry from the next one. Interleaving: R loads the word
/// (entry 0), reads entry 0's words (Attached, consumes) and its lock (free:
/// dead); J joins entry 0 (takes the lock, epoch 6, Attached), raises its
/// consumes bit and claims: the word already names entry 0, so `cur == mine`
/// and J is told `Ok`; R's CAS from "entry 0" then succeeds, and R is told
/// `Ok` too. Producers bind R (the word names R); J's repair (`upkeep` ->
/// `claim_consumer`) finds R live and gives up: J's `Receiver` gets nothing.
/// With the epoch, the dead user's word is a leftover that J replaces by its
/// own (epoch 6), and R's CAS from the old word fails. The same steps on the
/// real code: `rendezvous.rs`
/// `a_late_recoverer_cannot_take_the_channel_of_the_new_user_of_a_dead_entry`.
#[test]
fn a_late_recoverer_leaves_the_new_peer_on_its_entry_alone() {
    loom::model(|| {
        let r = Arc::new(Rdv::new(2));
        r.preset_dead_consumer();
        r.preset(1, 1, 2, 22, 0, true);
        let joiner = {
            let r = r.clone();
            thread::spawn(move || {
                let (i, epoch) = r.join(3, 33).expect("entry 0 is free");
                r.set_consumes(i);
                (i, epoch, r.claim_consumer(i, epoch))
            })
        };
        r.set_consumes(1);
        let recoverer = r.claim_consumer(1, 1);
        let (j, j_epoch, joined) = joiner.join().unwrap();
        assert_eq!((j, j_epoch), (0, 6));
        assert!(
            recoverer.is_ok() != joined.is_ok(),
            "two live consumers were both told they hold the channel (recoverer {recoverer:?}, joiner {joined:?})"
        );
        let (holder, epoch) = if recoverer.is_ok() { (1, 1) } else { (0, 6) };
        assert_eq!(
            (r.channel.load(Ordering::Relaxed), r.consumer_of()),
            (consumer_word(holder, epoch), Some(holder)),
            "the word names the one told so, in its epoch"
        );
    });
}

#[test]
fn a_live_consumer_rewritten_by_a_hostile_writer_keeps_its_entry_binding_and_slot() {
    loom::model(|| {
        let r = Arc::new(Rdv::new(2));
        // Entry 0: live consumer L (pid 1) holding the channel; entry 1 free.
        r.preset(0, 1, 1, 11, C, true);
        r.channel.store(consumer_word(0, 1), Ordering::Relaxed);
        let slots = Arc::new(Slots(vec![UnsafeCell::new(0)]));
        slots.write(0, 7);
        let ring_off = Arc::new(AtomicU64::new(1));
        // L's link to ring 1, published before (SYNC link-publish).
        let links: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
        links[0].store(1, Ordering::Relaxed);
        // L reads the message it holds (s0), twice: mid-read all along.
        let reader = {
            let slots = slots.clone();
            thread::spawn(move || {
                assert_eq!(slots.read(0), 7);
                thread::yield_now();
                assert_eq!(slots.read(0), 7);
            })
        };
        let joiner = {
            let r = r.clone();
            thread::spawn(move || r.join(3, 33).map(|(i, _)| i))
        };
        let producer = {
            let (r, slots, ring_off, links) =
                (r.clone(), slots.clone(), ring_off.clone(), links.clone());
            thread::spawn(move || {
                let mut p = Producer {
                    slots: vec![Slot::Lent],
                    freed: vec![0],
                    bound: Some((0, 1)),
                    was_bound: true,
                    ring: 1,
                    lost: 0,
                };
                for _ in 0..2 {
                    assert!(p.bind(&r, &ring_off, &links), "L stays bound");
                    // A reclaimed slot would be reused at once.
                    if p.slots[0] == Slot::Free {
                        slots.write(0, 8);
                    }
                }
                p
            })
        };
        // The hostile writer: L's entry says Empty, a dead pid, no channel; the word says nobody.
        r.ident[0].store(pack(S_EMPTY, 1, DEAD_PID), Ordering::Relaxed);
        r.consumes[0].store(0, Ordering::Relaxed);
        r.channel.store(0, Ordering::Relaxed);
        reader.join().unwrap();
        assert_eq!(
            joiner.join().unwrap(),
            Some(1),
            "the joiner takes the free entry, not L's"
        );
        let p = producer.join().unwrap();
        assert_eq!(
            (p.bound, p.freed[0], p.lost),
            (Some((0, 1)), 0, 0),
            "L's binding and slot kept"
        );
    });
}
