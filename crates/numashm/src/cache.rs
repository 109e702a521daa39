//! The slot cache in front of the allocator's shared free lists.
//!
//! Freed slots stay Allocated to this process (so recovery still finds them if
//! it dies) and are handed out again by the next `Sender::alloc` of their class:
//! an alloc then touches only the slot's own metadata line, never the class's
//! shared free-list head. Entries are [`Located`]: looked up once when cached,
//! so every later transition is one CAS predicted without a load.
//!
//! The cache is per thread (a thread-local, for the segment the thread used
//! last), so its hot path takes no lock: a lock is two locked instructions per
//! use, and on a cross-process round trip every instruction between receiving
//! and replying is latency. Slots of a thread that exits, or that turns to
//! another segment, go to the segment's shared depot, where any thread's cache
//! refills from. Nothing in the thread-local ever touches segment memory unless
//! its segment is the one being used, so a cache that outlives its segment is
//! only a list of dead handles (the segment's drop reclaimed the slots).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use numashm_varslot::{Located, PeerId, SharedAllocator};

use crate::memory::RegionMemory;
use crate::sync::{AtomicU64, Ordering};

/// Slots kept per class in a thread's cache.
pub(crate) const READY_PER_CLASS: usize = 32;

type Alloc = SharedAllocator<RegionMemory>;

/// Slots parked by threads that left (or switched segments), per class.
type Depot = Mutex<Vec<Vec<Located>>>;

/// One per segment: its identity for the thread-locals and its depot.
#[derive(Debug)]
pub(crate) struct SlotCache {
    id: u64,
    classes: usize,
    depot: Arc<Depot>,
}

/// A thread's cache for one segment.
struct ThreadCache {
    /// `SlotCache::id` of the segment these slots belong to (0 = none).
    id: u64,
    depot: Option<Arc<Depot>>,
    /// Per class: slots Allocated to us, newest last.
    slots: Vec<Vec<Located>>,
    /// The allocator's reclaim count when every cached slot was last known to
    /// be ours (see `Magazine`): while it stands, a pop needs no check.
    reclaims_seen: u64,
}

impl ThreadCache {
    const EMPTY: ThreadCache = ThreadCache { id: 0, depot: None, slots: Vec::new(), reclaims_seen: 0 };

    /// Moves every slot to the depot of the segment it belongs to. Touches no
    /// segment memory: that segment may be gone.
    fn park(&mut self) {
        if let Some(depot) = self.depot.take() {
            let mut parked = depot.lock().unwrap_or_else(|p| p.into_inner());
            for (class, slots) in self.slots.iter_mut().enumerate() {
                if let Some(to) = parked.get_mut(class) {
                    to.append(slots);
                }
            }
        }
        self.slots.clear();
        self.id = 0;
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.park();
    }
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = const { RefCell::new(ThreadCache::EMPTY) };
}

/// Source of `SlotCache::id`s: unique within the process, never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl SlotCache {
    pub(crate) fn new(classes: usize) -> Self {
        // Relaxed: only uniqueness matters.
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        SlotCache { id, classes, depot: Arc::new(Mutex::new(vec![Vec::new(); classes])) }
    }

    /// Runs `f` on this thread's cache, made this segment's first if it held
    /// another's. `None` while the thread-local is busy or being destroyed.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
        CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                if c.id != self.id {
                    c.park();
                    c.id = self.id;
                    c.depot = Some(self.depot.clone());
                    c.slots = vec![Vec::new(); self.classes];
                }
                Some(f(&mut c))
            })
            .ok()
            .flatten()
    }

    /// A cached slot of `class` still ours, if there is one.
    #[inline]
    pub(crate) fn pop(&self, alloc: &Alloc, me: PeerId, class: usize) -> Option<Located> {
        self.with(|c| {
            let now = alloc.reclaims();
            if now != c.reclaims_seen {
                // Someone reclaimed (perhaps us, presumed dead while alive): keep
                // only the slots still ours.
                c.reclaims_seen = now;
                for slots in &mut c.slots {
                    slots.retain(|l| alloc.is_ours(l, me));
                }
            }
            let slots = c.slots.get_mut(class)?;
            if slots.is_empty() {
                self.refill(slots, class);
                // Slots another thread parked were checked only by its count.
                slots.retain(|l| alloc.is_ours(l, me));
            }
            slots.pop()
        })
        .flatten()
    }

    #[cold]
    fn refill(&self, slots: &mut Vec<Located>, class: usize) {
        if let Ok(mut depot) = self.depot.try_lock() {
            if let Some(parked) = depot.get_mut(class) {
                let keep = parked.len().saturating_sub(READY_PER_CLASS / 2);
                slots.extend(parked.drain(keep..));
            }
        }
    }

    /// Takes back a slot we hold (unsent, or received and read): recycled into
    /// this thread's cache, or freed when it is full or unavailable.
    #[inline]
    pub(crate) fn keep(&self, alloc: &Alloc, me: PeerId, l: &Located) {
        let kept = self.with(|c| match c.slots.get_mut(l.handle().class()) {
            Some(slots) if slots.len() < READY_PER_CLASS => {
                // Stale (reclaimed meanwhile) handles fail here: nothing to keep.
                if let Ok(fresh) = alloc.recycle_held(l, me) {
                    slots.push(fresh);
                }
                true
            }
            _ => false,
        });
        if kept != Some(true) {
            // A failure means it was reclaimed already (we were presumed dead).
            let _ = alloc.free(l.handle());
        }
    }

    /// Frees the calling thread's cached slots and the depot's; returns how many
    /// slots went back. (Other live threads keep theirs until they exit or
    /// call this.)
    pub(crate) fn flush(&self, alloc: &Alloc) -> usize {
        let mut n = 0;
        let mut free_all = |slots: &mut Vec<Located>| {
            n += slots.drain(..).filter(|l| alloc.free(l.handle()).is_ok()).count();
        };
        let _ = self.with(|c| c.slots.iter_mut().for_each(&mut free_all));
        let mut depot = self.depot.lock().unwrap_or_else(|p| p.into_inner());
        depot.iter_mut().for_each(&mut free_all);
        n
    }
}
