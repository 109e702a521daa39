//! Loom models of the bind handshake of `numashm::pool` (`pool/ends.rs`),
//! run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom --test pool_bind
//! ```
//!
//! numashm's atomics are always std's (its words live in kernel-mapped
//! memory), so these are models: each step mirrors a step of the real code
//! (the function is named in a comment) with the same words, orderings and
//! checks; loom threads are processes, and the data rings are the ring
//! crate's heap split rings (loom's atomics). The words: the producer's
//! channel table (word 0 ring offset, `SYNC channel-publish`; word 3
//! `CH_BOUND`, `SYNC bind-publish`), the consumer's link (ring offset, then
//! the `LINK_VALID` tag, `SYNC link-publish`; dropped by a Release store of
//! 0), the rendezvous channel word, and liveness by pidfd (a per-process
//! flag the dying process clears last, Release: the kernel says "dead" only
//! after the process did all it did). Memory another process reads without
//! an atomic is a `loom::cell::UnsafeCell`, so loom reports a data race:
//! slot payloads; each ring's header (`new_ring` writes it, `link` reads it);
//! and, as a check only, the producer's attachment (`bind` writes it before
//! `CH_BOUND`; a consumer reads it with every message, and asserts it names
//! itself: whoever reads a slot is the consumer the producer bound).
//! The return ring is left out (returns are `pool_returns.rs`'s models): a
//! reclaim takes back a slot lent to the reader whatever its return state.
//!
//! Models (each `BREAK_*` switch was set to `true` once and its model then
//! failed; they are all `false` here):
//! - a consumer links, the producer binds, the consumer reads only then
//!   (`BREAK_READ_UNBOUND`, `BREAK_RELAXED_BOUND`, `BREAK_RELAXED_RING_OFF`,
//!   `BREAK_RELAXED_LINK`: loom reports the race or the check fails);
//! - a producer that sent before the consumer linked and then only polls for
//!   the reply binds from its empty receives (commit 7357559;
//!   `BREAK_NO_IDLE_BIND`: both spin forever, loom's branch limit);
//! - a new consumer never reads the ring of a dead one (its slots were
//!   reclaimed and reused), it relinks the fresh ring
//!   (`BREAK_BOUND_NONZERO`: it reads the dead one's message racing the reuse);
//! - a producer reclaims from a consumer that left, or died, only after its
//!   last read of a held message (`BREAK_DROP_LINK_WHILE_HELD`,
//!   `BREAK_RELAXED_UNLINK`, `BREAK_LEFT_BY_WORD`: the reuse races the read);
//! - a consumer that drops its `Receiver` and makes a new one before the
//!   producer's next slow path gets no message twice, and gets what is sent
//!   once the producer has bound it again: `link` refuses a ring whose
//!   `CH_BOUND` already names it, `bind` looks at the bound link every time
//!   and requires the one it attached to (its tag, serial included) (found
//!   on the real code, fixed in 2c0221b; `BREAK_RELINK_BOUND_RING`, the old
//!   `link`: message 7 twice; `BREAK_LOOK_ONLY_WHEN_NAMED_ELSE`, the old
//!   `bind`: both spin forever, loom's branch limit);
//! - a producer that binds a consumer whose earlier link in the same table
//!   slot named the same ring never takes a mix of the two links (and so
//!   never later finds a live link "gone"): the link's tag holds a serial,
//!   its words are stored Release, and `RemotePool::link_to` reads the tag
//!   again after the words (`BREAK_LINK_TAG_ONCE`: loom reports the race of a
//!   reclaim with the new consumer's read, in the dead-consumer model). Seen
//!   first as a weak-memory note here; it became a bug once `bind` looked at
//!   its link on every call (2c0221b).
#![cfg(numashm_loom)]
#![allow(unsafe_code)] // loom's UnsafeCell is read and written through raw pointers

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use numashm_ring::{HeapSplit, SplitConsumer, SplitProducer, SplitRing};

/// `Link::readable` confirms a ring whose offset matches, whatever `CH_BOUND` says.
const BREAK_READ_UNBOUND: bool = false;
/// `Link::readable` confirms a ring bound to any consumer (`CH_BOUND != 0`).
const BREAK_BOUND_NONZERO: bool = false;
/// `bind` stores `CH_BOUND` Relaxed.
const BREAK_RELAXED_BOUND: bool = false;
/// `new_ring` stores the ring offset Relaxed.
const BREAK_RELAXED_RING_OFF: bool = false;
/// `link` stores the `LINK_VALID` tag Relaxed.
const BREAK_RELAXED_LINK: bool = false;
/// `drop_link` stores 0 Relaxed.
const BREAK_RELAXED_UNLINK: bool = false;
/// No bind from empty receives (`Peer::idle`; before commit 7357559).
const BREAK_NO_IDLE_BIND: bool = false;
/// `unconsume` drops every link, held messages or not.
const BREAK_DROP_LINK_WHILE_HELD: bool = false;
/// `bind` takes a bound consumer as gone when the channel word names someone
/// else, without looking for its link.
const BREAK_LEFT_BY_WORD: bool = false;
/// `link` links a ring whose `CH_BOUND` already names us (before 2c0221b).
const BREAK_RELINK_BOUND_RING: bool = false;
/// `bind` looks for its consumer's link only when the channel word names
/// someone else (before 2c0221b).
const BREAK_LOOK_ONLY_WHEN_NAMED_ELSE: bool = false;
/// `RemotePool::link_to` reads the tag once, and `link` stores the words
/// Relaxed: a producer can take a dropped link's tag with a newer link's
/// words, and its next look then sees the drop.
const BREAK_LINK_TAG_ONCE: bool = false;

/// `Peer::bind_while_idle` binds on every 1024th empty receive; 2 here.
const IDLE_EVERY: u32 = 2;
/// Rings 1 and 2 (ring "offsets"); 0 is none.
const RINGS: usize = 3;
/// Consumers: process/entry k has pool id `100 + k`.
const CONSUMERS: usize = 2;

fn pool_id(k: usize) -> u64 {
    100 + k as u64
}

/// Memory read without atomics: each access checked by loom.
struct Cells(Vec<UnsafeCell<u64>>);

// SAFETY: access goes through loom's UnsafeCell, which reports any pair of
// accesses not ordered by happens-before: that is what the models test.
unsafe impl Sync for Cells {}
// SAFETY: as above; the cells hold integers.
unsafe impl Send for Cells {}

impl Cells {
    fn new(n: usize) -> Self {
        Cells((0..n).map(|_| UnsafeCell::new(0)).collect())
    }
    fn write(&self, i: usize, v: u64) {
        // SAFETY: checked by loom against every other access.
        self.0[i].with_mut(|p| unsafe { *p = v });
    }
    fn read(&self, i: usize) -> u64 {
        // SAFETY: checked by loom against every write.
        self.0[i].with(|p| unsafe { *p })
    }
}

/// Every word and block of the model, shared by the processes.
struct World {
    /// Producer's channel table word 0: the current ring (SYNC channel-publish).
    ring_off: AtomicU64,
    /// Producer's channel table word 3, `CH_BOUND`: the bound consumer's pool id.
    bound: AtomicU64,
    /// The rendezvous channel word: consumer entry + 1.
    channel: AtomicU64,
    /// Consumer k's link: word 4 (ring offset, Release), then word 0 (the
    /// tag: the link's serial, new with each link; 0 = none).
    link_ring: Vec<AtomicU64>,
    link_tag: Vec<AtomicU64>,
    /// Whether process k lives (pidfd).
    alive: Vec<AtomicBool>,
    /// Each ring's header, written by `new_ring`.
    ring_hdr: Cells,
    /// Each consumer's head word, initialised by `link` (`init_consumer_block`,
    /// atomic stores), read by `bind` (`attach_consumer`, an atomic load).
    head_block: Vec<AtomicU64>,
    /// Slot payloads.
    slots: Cells,
    /// Check only: the producer's attachment (pool id it bound; 0 none).
    attached: Cells,
}

impl World {
    fn new() -> Arc<Self> {
        Arc::new(World {
            ring_off: AtomicU64::new(0),
            bound: AtomicU64::new(0),
            channel: AtomicU64::new(0),
            link_ring: (0..CONSUMERS).map(|_| AtomicU64::new(0)).collect(),
            link_tag: (0..CONSUMERS).map(|_| AtomicU64::new(0)).collect(),
            alive: (0..CONSUMERS).map(|_| AtomicBool::new(true)).collect(),
            ring_hdr: Cells::new(RINGS),
            head_block: (0..CONSUMERS).map(|_| AtomicU64::new(0)).collect(),
            slots: Cells::new(2),
            attached: Cells::new(1),
        })
    }

    /// `Rendezvous::consumer_of`.
    fn consumer_of(&self) -> Option<usize> {
        let v = self.channel.load(Ordering::Acquire);
        (v != 0 && v <= CONSUMERS as u64).then(|| (v - 1) as usize)
    }

    /// `liveness(pid, started)`: Acquire pairs with the dying process's last store.
    fn alive(&self, k: usize) -> bool {
        self.alive[k].load(Ordering::Acquire)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Slot {
    Free,
    Lent,
}

/// The producer process: `Produced` and its allocator, one thread.
struct Producer {
    w: Arc<World>,
    tx: Vec<Option<SplitProducer<HeapSplit>>>,
    ring: u64,
    bound: Option<usize>,
    /// The link we attached to (its tag).
    bound_tag: u64,
    was_bound: bool,
    slots: Vec<Slot>,
    freed: Vec<u32>,
    lost: u64,
    unbound_sent: bool,
    idle_polls: u32,
}

impl Producer {
    fn new(w: Arc<World>, tx: Vec<Option<SplitProducer<HeapSplit>>>) -> Self {
        Producer {
            w,
            tx,
            ring: 0,
            bound: None,
            bound_tag: 0,
            was_bound: false,
            slots: vec![Slot::Free; 2],
            freed: vec![0; 2],
            lost: 0,
            unbound_sent: false,
            idle_polls: 0,
        }
    }

    /// `Peer::new_ring`: the ring's words, `CH_BOUND` 0 (Relaxed), then its
    /// offset (Release, SYNC channel-publish).
    fn new_ring(&mut self) {
        self.ring += 1;
        self.w.ring_hdr.write(self.ring as usize, self.ring * 10);
        self.w.bound.store(0, Ordering::Relaxed);
        let publish = if BREAK_RELAXED_RING_OFF {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.w.ring_off.store(self.ring, publish);
        self.bound = None;
        self.was_bound = false;
    }

    /// `RemotePool::link_to`: consumer k's link naming our current ring, as
    /// its tag (Acquire: SYNC link-publish; a dropped link's Release store of
    /// 0), the tag read again after the words, and unchanged.
    fn link_tag(&self, k: usize) -> Option<u64> {
        let tag = self.w.link_tag[k].load(Ordering::Acquire);
        let ours = tag != 0 && self.w.link_ring[k].load(Ordering::Acquire) == self.ring;
        (ours && (BREAK_LINK_TAG_ONCE || self.w.link_tag[k].load(Ordering::Acquire) == tag)).then_some(tag)
    }

    /// `Peer::bind`, step by step.
    fn bind(&mut self) -> bool {
        let named = self.w.consumer_of();
        if let Some(b) = self.bound {
            let dead = !self.w.alive(b);
            let look = !BREAK_LOOK_ONLY_WHEN_NAMED_ELSE || named != Some(b);
            let left = !dead
                && if BREAK_LEFT_BY_WORD {
                    named != Some(b)
                } else {
                    // The link we attached to, still there (2c0221b).
                    look && self.link_tag(b) != Some(self.bound_tag)
                };
            if !dead && !left {
                return true;
            }
        }
        if self.was_bound {
            // `reclaim_reader(c)`: every slot lent to the reader comes back.
            for (s, st) in self.slots.iter_mut().enumerate() {
                if *st == Slot::Lent {
                    *st = Slot::Free;
                    self.freed[s] += 1;
                    self.lost += 1;
                }
            }
            // The old `Produced` (and its `Bound`) goes: a fresh ring.
            self.w.attached.write(0, 0);
            self.new_ring();
        }
        let Some(k) = named else { return false };
        if !self.w.alive(k) {
            return false;
        }
        let Some(tag) = self.link_tag(k) else {
            return false;
        };
        // `attach_consumer` reads the consumer's head block; our attachment.
        assert_eq!(
            // Relaxed: ordered by `link_to`'s Acquire of the tag.
            self.w.head_block[k].load(Ordering::Relaxed),
            pool_id(k),
            "an initialised head block"
        );
        self.w.attached.write(0, pool_id(k));
        let publish = if BREAK_RELAXED_BOUND {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.w.bound.store(pool_id(k), publish); // SYNC bind-publish
        self.unbound_sent = false;
        self.bound = Some(k);
        self.bound_tag = tag;
        self.was_bound = true;
        true
    }

    /// `Peer::send_masked` for one channel: alloc, write, lend, push, then
    /// the slow-path bind when the word names someone not bound.
    fn send(&mut self, value: u64) -> usize {
        let s = self
            .slots
            .iter()
            .position(|s| *s == Slot::Free)
            .expect("a free slot");
        self.w.slots.write(s, value);
        self.slots[s] = Slot::Lent;
        let rebind = match self.bound {
            Some(b) => self.w.consumer_of() != Some(b),
            None => self.w.consumer_of().is_some(),
        };
        let tx = self.tx[self.ring as usize]
            .as_mut()
            .expect("the current ring");
        tx.push([s as u64, value, 0]).expect("room");
        if self.bound.is_none() {
            self.unbound_sent = true;
        }
        if rebind {
            self.bind();
        }
        s
    }

    /// `Peer::idle` / `bind_while_idle`, on an empty receive.
    fn idle(&mut self) {
        if BREAK_NO_IDLE_BIND || !self.unbound_sent {
            return;
        }
        self.idle_polls = self.idle_polls.wrapping_add(1);
        if self.idle_polls % IDLE_EVERY != 1 {
            return;
        }
        if self.bind() {
            self.unbound_sent = false;
        }
    }
}

/// `Link`: our view of one producer ring.
struct Link {
    ring: u64,
    confirmed: bool,
    stale: bool,
    held: usize,
    /// Our head in the ring (stamp rings only): a new link starts at 0.
    head: u64,
}

/// A consumer process (entry and index k), one thread.
struct Consumer {
    w: Arc<World>,
    k: usize,
    /// The consumer ends of each ring (what `attach_shared` would map).
    rx: Vec<Option<SplitConsumer<HeapSplit>>>,
    link: Option<Link>,
    active: bool,
    /// Links made so far (the head block "offset" of the next one).
    links_made: u64,
}

impl Consumer {
    /// Entry `k`'s consumer with the ring ends `rx`, not consuming yet, no link.
    fn new(w: &Arc<World>, k: usize, rx: Vec<Option<SplitConsumer<HeapSplit>>>) -> Consumer {
        Consumer { w: w.clone(), k, rx, link: None, active: false, links_made: 0 }
    }

    /// `Peer::consume`: the claim (a CAS from 0 or from a dead consumer,
    /// `pool_attach.rs` models it), then `rescan`.
    fn consume(&mut self) {
        let mine = self.k as u64 + 1;
        let cur = self.w.channel.load(Ordering::Acquire);
        let taken = cur == 0 || cur == mine || !self.w.alive((cur - 1) as usize);
        assert!(taken, "a live consumer holds the channel");
        self.w
            .channel
            .compare_exchange(cur, mine, Ordering::AcqRel, Ordering::Relaxed)
            .expect("one claimer");
        self.active = true;
        self.rescan();
    }

    /// `Peer::rescan`: drop a stale link with nothing held, link the current ring.
    fn rescan(&mut self) {
        if self.readable_or_stale() && self.link.as_ref().is_some_and(|l| l.held == 0) {
            self.drop_link();
        }
        if self.link.is_none() {
            self.link();
        }
    }

    fn readable_or_stale(&mut self) -> bool {
        self.readable();
        self.link.as_ref().is_some_and(|l| l.stale)
    }

    /// `Peer::link`: the producer's channel table (Acquire), its ring's
    /// header, our head block, then the link words and the tag (Release).
    fn link(&mut self) {
        // `RemotePool::channel`: word 0 first, word 3 last.
        let ring = self.w.ring_off.load(Ordering::Acquire);
        if ring == 0 {
            return;
        }
        // Bound to an earlier link of ours, since dropped: wait for a fresh ring.
        if !BREAK_RELINK_BOUND_RING && self.w.bound.load(Ordering::Acquire) == pool_id(self.k) {
            return;
        }
        assert_eq!(
            self.w.ring_hdr.read(ring as usize),
            ring * 10,
            "an initialised ring"
        );
        // `init_consumer_block`. Relaxed: published by the tag's Release below.
        self.w.head_block[self.k].store(pool_id(self.k), Ordering::Relaxed);
        // Release: a producer that reads it sees the slot's earlier drop (2c0221b+).
        let word = if BREAK_LINK_TAG_ONCE { Ordering::Relaxed } else { Ordering::Release };
        self.w.link_ring[self.k].store(ring, word);
        self.links_made += 1;
        let publish = if BREAK_RELAXED_LINK {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.w.link_tag[self.k].store(self.links_made, publish); // SYNC link-publish
        self.link = Some(Link {
            ring,
            confirmed: false,
            stale: false,
            held: 0,
            head: 0,
        });
    }

    /// `Peer::drop_link`: Release, the producer stops finding it before we
    /// reuse its blocks (and after our reads of what it lent us).
    fn drop_link(&mut self) {
        let publish = if BREAK_RELAXED_UNLINK {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.w.link_tag[self.k].store(0, publish);
        self.link = None;
    }

    /// `Link::readable`, step by step (`RemotePool::channel` loads Acquire).
    fn readable(&mut self) -> bool {
        let Some(l) = self.link.as_mut() else {
            return false;
        };
        if l.confirmed {
            return true;
        }
        if l.stale {
            return false;
        }
        let ring = self.w.ring_off.load(Ordering::Acquire);
        if ring != l.ring {
            l.stale = true;
            return false;
        }
        let bound = self.w.bound.load(Ordering::Acquire);
        l.confirmed = if BREAK_READ_UNBOUND {
            true
        } else if BREAK_BOUND_NONZERO {
            bound != 0
        } else {
            bound == pool_id(self.k)
        };
        l.confirmed
    }

    /// `Receiver::try_recv` + `deliver`: a message `(slot, value)`, held.
    fn try_recv(&mut self) -> Option<(usize, u64)> {
        if !self.readable() {
            return None;
        }
        let l = self.link.as_mut()?;
        let [s, value, _] = self.rx[l.ring as usize].as_mut()?.pop().unwrap()?;
        l.held += 1;
        Some((s as usize, value))
    }

    /// Reading a held message: its payload, and (check) the producer's
    /// attachment, which must name us and happen before.
    fn read(&self, s: usize, value: u64) {
        assert_eq!(self.w.slots.read(s), value, "the message intact");
        assert_eq!(
            self.w.attached.read(0),
            pool_id(self.k),
            "read only by the consumer the producer bound"
        );
    }

    /// `Peer::give_back` (the return itself left out): a link no longer
    /// consumed goes with its last held message.
    fn give_back(&mut self) {
        // The link may be gone (a broken `unconsume`): nothing to do then.
        let Some(l) = self.link.as_mut() else { return };
        l.held -= 1;
        if !self.active && l.held == 0 {
            self.drop_link();
        }
    }

    /// `Peer::unconsume`: the word back (Release), links with nothing held go.
    fn unconsume(&mut self) {
        let _ = self.w.channel.compare_exchange(
            self.k as u64 + 1,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.active = false;
        if BREAK_DROP_LINK_WHILE_HELD || self.link.as_ref().is_some_and(|l| l.held == 0) {
            self.drop_link();
        }
    }

    /// `Receiver::recv`'s loop: try, else rescan (a changed rendezvous), yield.
    fn recv_spinning(&mut self) -> (usize, u64) {
        loop {
            if let Some(m) = self.try_recv() {
                return m;
            }
            self.rescan();
            thread::yield_now();
        }
    }
}

/// Rings 1 and 2: the producer ends for the producer, the consumer ends for
/// the consumer that will read them.
type Ends = (
    Vec<Option<SplitProducer<HeapSplit>>>,
    Vec<Option<SplitConsumer<HeapSplit>>>,
);

fn rings() -> Ends {
    let mut tx = vec![None];
    let mut rx = vec![None];
    for _ in 1..RINGS {
        let (t, r) = SplitRing::new(2).unwrap();
        tx.push(Some(t));
        rx.push(Some(r));
    }
    (tx, rx)
}

#[test]
fn a_consumer_reads_only_once_the_producer_has_bound_it() {
    loom::model(|| {
        let w = World::new();
        let (tx, rx) = rings();
        let producer = {
            let w = w.clone();
            thread::spawn(move || {
                let mut p = Producer::new(w, tx);
                p.new_ring(); // `produce`
                p.bind();
                p.send(7);
                // Its wait slices (`bind_unbound`) until bound.
                while !p.bind() {
                    thread::yield_now();
                }
            })
        };
        let mut c = Consumer::new(&w, 0, rx);
        c.consume();
        let (s, value) = c.recv_spinning();
        assert_eq!(value, 7);
        c.read(s, value);
        producer.join().unwrap();
    });
}

#[test]
fn a_producer_that_sent_before_the_link_binds_from_its_empty_receives() {
    // Commit 7357559: the producer sends, then only polls its own receiver
    // for the reply; the consumer claimed before the send and links after it,
    // then only polls. Neither calls anything else.
    loom::model(|| {
        let w = World::new();
        let (tx, rx) = rings();
        let reply = Arc::new(AtomicBool::new(false));
        w.channel.store(1, Ordering::Release); // the consumer's claim, before the send
        let producer = {
            let (w, reply) = (w.clone(), reply.clone());
            thread::spawn(move || {
                let mut p = Producer::new(w, tx);
                p.new_ring();
                p.bind();
                p.send(7);
                // `try_recv` on its reply channel, empty: `idle`.
                while !reply.load(Ordering::Acquire) {
                    p.idle();
                    thread::yield_now();
                }
            })
        };
        let mut c = Consumer::new(&w, 0, rx);
        c.active = true;
        // `try_recv` empty: a rescan links once the producer's ring is there.
        let (s, value) = c.recv_spinning();
        c.read(s, value);
        reply.store(true, Ordering::Release);
        producer.join().unwrap();
    });
}

#[test]
fn a_new_consumer_never_reads_the_ring_of_a_dead_one() {
    loom::model(|| {
        let w = World::new();
        let (mut tx, rx) = rings();
        // Before: ring 1 bound to consumer 0, which died without reading
        // message 7 (slot 0), still in the ring.
        let mut p = Producer::new(w.clone(), Vec::new());
        p.new_ring();
        w.head_block[0].store(pool_id(0), Ordering::Relaxed);
        w.link_ring[0].store(1, Ordering::Relaxed);
        w.link_tag[0].store(1, Ordering::Relaxed);
        w.channel.store(1, Ordering::Relaxed);
        w.attached.write(0, pool_id(0));
        w.bound.store(pool_id(0), Ordering::Relaxed);
        p.bound = Some(0);
        p.was_bound = true;
        w.slots.write(0, 7);
        p.slots[0] = Slot::Lent;
        tx[1].as_mut().unwrap().push([0, 7, 0]).unwrap();
        w.alive[0].store(false, Ordering::Relaxed);
        p.tx = tx;
        let producer = thread::spawn(move || {
            // Its slow paths: the dead consumer's slot comes back and is
            // reused at once for message 8, queued in the fresh ring.
            let mut sent = false;
            loop {
                let bound = p.bind();
                if !sent && p.slots[0] == Slot::Free {
                    assert_eq!(p.send(8), 0, "the reclaimed slot reused");
                    sent = true;
                }
                if bound && sent {
                    return p;
                }
                thread::yield_now();
            }
        });
        // Consumer 1 takes the channel over (consumer 0 is dead), links
        // whichever ring is current, and reads.
        let mut c = Consumer::new(&w, 1, rx);
        c.consume();
        let (s, value) = c.recv_spinning();
        c.read(s, value);
        assert_eq!(value, 8, "never the dead consumer's message");
        let p = producer.join().unwrap();
        assert_eq!((p.freed[0], p.lost, p.bound), (1, 1, Some(1)));
    });
}

/// Consumer 0 is bound to ring 1 and holds message 7 (slot 0); it reads it,
/// then leaves (drops its `Receiver`, reads again, drops the message) or
/// dies after reading. The producer's slow paths run meanwhile; once it
/// finds the consumer gone it reclaims slot 0 and reuses it at once.
fn reclaim_after_last_read(dies: bool) {
    loom::model(move || {
        let w = World::new();
        let (tx, rx) = rings();
        let mut p = Producer::new(w.clone(), tx);
        p.new_ring();
        let mut c = Consumer::new(&w, 0, rx);
        c.consume();
        p.send(7);
        assert!(p.bind() && c.readable(), "bound before the model runs");
        let producer = thread::spawn(move || {
            while p.bound.is_some() {
                p.bind();
                thread::yield_now();
            }
            assert_eq!(p.send(8), 0, "the reclaimed slot reused");
            p
        });
        let (s, value) = c.try_recv().expect("message 7");
        c.read(s, value);
        if dies {
            c.read(s, value);
            // The process exits: its last deed (`liveness` says dead only after).
            w.alive[0].store(false, Ordering::Release);
        } else {
            c.unconsume(); // `Receiver` dropped while the message is held
            c.read(s, value);
            c.give_back(); // the message dropped: the link goes
        }
        let p = producer.join().unwrap();
        assert_eq!((p.freed[0], p.lost), (1, 1), "reclaimed once");
    });
}

#[test]
fn a_producer_reclaims_from_a_consumer_that_left_only_after_its_last_read() {
    reclaim_after_last_read(false);
}

#[test]
fn a_producer_reclaims_from_a_consumer_that_died_only_after_its_last_read() {
    reclaim_after_last_read(true);
}

/// Ring 1's cells as `split.rs` lays them out (a cell's words, then its
/// stamp, position + 1, Release; a pop at position `head` takes the cell
/// only if its stamp is `head + 1`, Acquire): used where a consumer end must
/// start over at position 0 on a ring that already has cells, which the
/// heap ring's one consumer end cannot do.
struct StampRing {
    stamp: Vec<AtomicU64>,
    cell: Vec<AtomicU64>,
}

impl StampRing {
    fn new(cap: usize) -> Self {
        StampRing {
            stamp: (0..cap).map(|_| AtomicU64::new(0)).collect(),
            cell: (0..cap).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// `SplitProducer::push` at `tail`: `(slot << 32 | value)` in one word here.
    fn push(&self, tail: u64, slot: usize, value: u64) {
        let i = tail as usize % self.cell.len();
        self.cell[i].store((slot as u64) << 32 | value, Ordering::Relaxed);
        self.stamp[i].store(tail + 1, Ordering::Release); // SYNC split-publish
    }

    /// `SplitConsumer::pop` at `head`.
    fn pop(&self, head: &mut u64) -> Option<(usize, u64)> {
        let i = *head as usize % self.cell.len();
        if self.stamp[i].load(Ordering::Acquire) != *head + 1 {
            return None;
        }
        let c = self.cell[i].load(Ordering::Relaxed);
        *head += 1;
        Some(((c >> 32) as usize, c & 0xffff_ffff))
    }
}

/// **Finding (real code), fixed in 2c0221b.** A consumer takes message 7
/// from ring 1, drops it and its `Receiver` (`unconsume`: channel word
/// released, link dropped), then makes a new `Receiver` before the
/// producer's next slow path. The claim succeeds (the word is free) and names
/// it as before. The old `link` linked ring 1 again with a fresh head block,
/// its consumer end at position 0 (`SplitConsumer::attach_shared(.., 0)`),
/// and `readable` confirmed it at once (`CH_BOUND` still named our pool id),
/// so it popped cell 0 again: message 7 twice, its slot perhaps already
/// freed and reused; and the old `bind`, which looked for our link only when
/// the channel word named someone else, stayed attached to the freed head
/// block and return ring (2 slots stayed lent on the real code). Now `link`
/// refuses ring 1 (`CH_BOUND` names us, we have no link to it), and the
/// producer's next `bind` finds the link it attached to gone, reclaims slot 0
/// and starts ring 2, which the consumer links and is bound to; message 8,
/// sent then, arrives, once.
#[test]
fn a_consumer_that_comes_back_before_the_producer_notices_gets_no_message_twice() {
    loom::model(|| {
        let w = World::new();
        let rings: Arc<Vec<StampRing>> = Arc::new((0..RINGS).map(|_| StampRing::new(2)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        // Before: ring 1 bound to consumer 0, message 7 in slot 0 pushed.
        let mut p = Producer::new(w.clone(), Vec::new());
        p.new_ring();
        let mut c = Consumer::new(&w, 0, Vec::new());
        c.consume();
        assert!(p.bind() && c.readable(), "bound before the model runs");
        w.slots.write(0, 7);
        p.slots[0] = Slot::Lent;
        rings[1].push(0, 0, 7);
        let producer = {
            let (rings, stop) = (rings.clone(), stop.clone());
            thread::spawn(move || {
                // Its slow paths (wait slices, `upkeep`, a full ring) until a
                // consumer is bound to a fresh ring; then message 8.
                while !(p.bind() && p.ring > 1) {
                    if stop.load(Ordering::Acquire) {
                        return p; // a broken model: the consumer failed already
                    }
                    thread::yield_now();
                }
                let s = p.slots.iter().position(|s| *s == Slot::Free).expect("a free slot");
                p.w.slots.write(s, 8);
                p.slots[s] = Slot::Lent;
                rings[p.ring as usize].push(0, s, 8);
                p
            })
        };
        let mut head = 0;
        let (s, value) = rings[1].pop(&mut head).expect("message 7");
        c.read(s, value);
        c.link.as_mut().unwrap().held += 1;
        c.give_back();
        c.unconsume(); // `Receiver` dropped: the link goes
        c.consume(); // a new `Receiver`: claim, link the current ring (or not)
        // Its receive loop: each link's head starts at 0 (`link`).
        let got = loop {
            if c.readable() {
                let l = c.link.as_mut().unwrap();
                if let Some((s, v)) = rings[l.ring as usize].pop(&mut l.head) {
                    l.held += 1;
                    if v != 7 {
                        c.read(s, v);
                    }
                    break v;
                }
            }
            c.rescan();
            thread::yield_now();
        };
        stop.store(true, Ordering::Release);
        // Joined first: a panic with a live loom thread aborts, `should_panic` needs an unwind.
        let p = producer.join().unwrap();
        assert_ne!(got, 7, "message 7 delivered twice");
        assert_eq!(got, 8);
        assert_eq!((p.freed[0], p.lost, p.ring), (1, 1, 2), "slot 0 reclaimed once, one fresh ring");
    });
}

// The send path's gate on the channel word (`Rendezvous::settled` / `settle`,
// `Peer::send_masked`, commit 8933269): a bound producer reads the word only
// when the rendezvous change counter moved since a read that named its
// consumer. A claim bumps the counter after its CAS (Release, `SYNC
// rendezvous-changes`) and the send loads it Acquire before the word, so a
// send that sees the bump reads the claim: the gate never settles on a word
// older than the count it records. Each `BREAK_GATE_*` switch was set to
// `true` once and `a_claim_is_seen_by_the_gated_send_path` then failed.

/// `Rendezvous::changes` loads the counter Relaxed.
const BREAK_GATE_RELAXED_CHANGES: bool = false;
/// `Rendezvous::take_consumer` bumps the counter before its CAS.
const BREAK_GATE_BUMP_BEFORE_CAS: bool = false;

/// The gate model's words: the rendezvous channel word (entry + 1) and the
/// change counter.
struct GateWorld {
    channel: AtomicU64,
    changes: AtomicU64,
}

/// The producer's view of one channel: the entry it is bound to, and
/// `Rendezvous::settled_at` / the channel's `settled` bit.
struct Gate {
    bound: u64,
    settled_at: u64,
    settled: bool,
}

impl Gate {
    /// One `send_masked` of the channel while bound: the counter, then the
    /// word only when the gate is open; whether the send asks for a rebind
    /// (`Produced::wants_bind`; the bind itself is the models' above).
    fn send(&mut self, w: &GateWorld) -> bool {
        let load = if BREAK_GATE_RELAXED_CHANGES {
            Ordering::Relaxed
        } else {
            Ordering::Acquire // SYNC rendezvous-changes
        };
        let changes = w.changes.load(load);
        if self.settled && self.settled_at == changes {
            return false;
        }
        // `Rendezvous::consumer_of` (Acquire: the claim's CAS).
        if w.channel.load(Ordering::Acquire) == self.bound + 1 {
            // `Rendezvous::settle`.
            self.settled_at = changes;
            self.settled = true;
            return false;
        }
        true
    }
}

/// `Rendezvous::take_consumer`: the claimer (entry 1) takes the word of the
/// gone consumer (entry 0) by CAS, then bumps the counter (Release).
fn gate_claim(w: &GateWorld) {
    if BREAK_GATE_BUMP_BEFORE_CAS {
        w.changes.fetch_add(1, Ordering::Release);
    }
    w.channel
        .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Relaxed)
        .expect("one claimer");
    if !BREAK_GATE_BUMP_BEFORE_CAS {
        w.changes.fetch_add(1, Ordering::Release); // SYNC rendezvous-changes
    }
}

/// A producer bound to entry 0, whose gate settled at count 0 (its last read
/// named entry 0), sends twice while entry 1 claims the channel; once the
/// claim is done, its next send must ask for the rebind (read the word and
/// find entry 1). A gate that settled on the old word with the new count
/// would never read it again (until an unrelated bump or a slow path).
#[test]
fn a_claim_is_seen_by_the_gated_send_path() {
    loom::model(|| {
        let w = Arc::new(GateWorld {
            channel: AtomicU64::new(1),
            changes: AtomicU64::new(0),
        });
        let claimer = {
            let w = w.clone();
            thread::spawn(move || gate_claim(&w))
        };
        let producer = {
            let w = w.clone();
            thread::spawn(move || {
                let mut gate = Gate {
                    bound: 0,
                    settled_at: 0,
                    settled: true,
                };
                for _ in 0..2 {
                    if gate.send(&w) {
                        // Asked for the rebind: seen (`bind` takes it from here).
                        return None;
                    }
                }
                Some(gate)
            })
        };
        claimer.join().unwrap();
        if let Some(mut gate) = producer.join().unwrap() {
            assert!(
                gate.send(&w),
                "the claim is done: the next send reads the word and asks for the rebind"
            );
        }
    });
}
