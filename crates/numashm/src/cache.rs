//! The per-process slot cache in front of the allocator's shared free lists.
//!
//! Freed slots stay Allocated to this process (so recovery still finds them if
//! it dies) and are handed out again by the next `Sender::alloc` of their class:
//! an alloc then touches only the slot's own metadata line, never the class's
//! shared free-list head. Entries are [`Located`]: looked up once when cached,
//! so taking one out is one load (is it still ours?) and putting one back is
//! one CAS predicted without a load.

use std::sync::Mutex;

use numashm_varslot::{Located, PeerId, SharedAllocator};

use crate::memory::RegionMemory;

/// Slots kept ready per class.
pub(crate) const READY_PER_CLASS: usize = 32;

type Alloc = SharedAllocator<RegionMemory>;

#[derive(Debug)]
pub(crate) struct SlotCache {
    ready: Mutex<Ready>,
}

#[derive(Debug)]
struct Ready {
    /// Per class: slots Allocated to us, newest last.
    slots: Vec<Vec<Located>>,
    /// The allocator's reclaim count when every cached slot was last known to
    /// be ours (see `Magazine`): while it stands, a pop needs no check.
    reclaims_seen: u64,
}

impl SlotCache {
    pub(crate) fn new(classes: usize) -> Self {
        SlotCache { ready: Mutex::new(Ready { slots: vec![Vec::with_capacity(READY_PER_CLASS); classes], reclaims_seen: 0 }) }
    }

    /// A ready slot of `class` still ours, if the cache is free and has one.
    #[inline]
    pub(crate) fn pop(&self, alloc: &Alloc, me: PeerId, class: usize) -> Option<Located> {
        let mut ready = self.ready.try_lock().ok()?;
        let now = alloc.reclaims();
        if now != ready.reclaims_seen {
            // Someone reclaimed (perhaps us, presumed dead while alive): keep only
            // the slots still ours.
            ready.reclaims_seen = now;
            for class in &mut ready.slots {
                class.retain(|l| alloc.is_ours(l, me));
            }
        }
        ready.slots.get_mut(class)?.pop()
    }

    /// Takes back a slot we hold (unsent, or received and read): ready for
    /// reuse, or freed when the cache is busy or full.
    #[inline]
    pub(crate) fn keep(&self, alloc: &Alloc, me: PeerId, l: &Located) {
        if let Ok(mut ready) = self.ready.try_lock() {
            if let Some(slots) = ready.slots.get_mut(l.handle().class()) {
                if slots.len() < READY_PER_CLASS {
                    // Stale (reclaimed meanwhile) handles fail here: nothing to keep.
                    if let Ok(fresh) = alloc.recycle_held(l, me) {
                        slots.push(fresh);
                    }
                    return;
                }
            }
        }
        // A failure means it was reclaimed already (we were presumed dead).
        let _ = alloc.free(l.handle());
    }

    /// Frees everything cached; returns how many slots went back.
    pub(crate) fn flush(&self, alloc: &Alloc) -> usize {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        ready.slots.iter_mut().flat_map(|class| class.drain(..)).filter(|l| alloc.free(l.handle()).is_ok()).count()
    }
}
