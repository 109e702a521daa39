//! Returns: a receiver hands each finished message back on its return ring
//! (in its own pool); the owner takes them back in batches, checks each
//! (range, generation, lent to that reader, not yet returned) and frees it
//! with plain stores. A bad return is counted and dropped.

use crate::pool::ends::{channels, Link, Produced};
use crate::pool::own::{P_BAD_RETURNS, P_RETURNS};
use crate::pool::peer::Peer;

/// Returns popped before they are checked together (`OwnerAlloc::give_back_all`).
const RETURN_BATCH: usize = 32;

/// How much [`Peer::drain_returns`] asks about the consumers of our channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumers {
    /// Nothing: only take returns, from channels whose return ring may be half
    /// full (the allocation path, before the free list: return rings never
    /// fill up, so no reader holds returns back).
    Quiet,
    /// Bind a channel that has no consumer, or that returned nothing (a class
    /// ran dry: perhaps nobody is there to return anything). A live, returning
    /// consumer costs no syscall.
    IfSilent,
    /// Ask the kernel whether each bound consumer lives (a few syscalls per
    /// channel): `collect_returns`.
    Check,
}

impl Peer {
    /// Takes back, now, every slot our readers have returned, and replaces
    /// the binding of any consumer the kernel says is dead (reclaiming what it
    /// held). This also happens by itself whenever a size class runs out of
    /// free slots or a ring is full; call it to account exactly.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = numashm::pool::Peer::create_anonymous("doc-collect", 2, numashm::pool::PeerConfig::new("doc-co"))?;
    /// assert_eq!(p.collect_returns(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect_returns(&self) -> usize {
        self.drain_returns(Consumers::Check)
    }

    /// Takes back every returned handle waiting for us on every channel we
    /// produce; each is checked (range, generation, lent to that reader, not
    /// yet returned) and a bad one is counted and dropped. Returns how many
    /// slots were freed. `look`: how hard to look at the consumers (see
    /// [`Consumers`]).
    pub(crate) fn drain_returns(&self, look: Consumers) -> usize {
        let mut freed = 0;
        let which = match look {
            Consumers::Quiet => self.returns_due.get(),
            Consumers::IfSilent | Consumers::Check => self.produced_mask.get(),
        };
        for c in channels(which) {
            // Due again only after another half ring of sends (taking returns
            // one by one would cost a line transfer per message, which a round
            // trip would wait on).
            self.returns_due.set(self.returns_due.get() & !(1 << c));
            let Some(bound) = self.produced.borrow()[c].as_ref().map(|p| p.bound.is_some()) else { continue };
            if look == Consumers::Check || (look == Consumers::IfSilent && !bound) {
                let _ = self.bind(c);
            }
            let mut produced = self.produced.borrow_mut();
            let Some(Produced { bound: Some(b), unreturned, .. }) = produced[c].as_mut() else { continue };
            let (ok, bad, f) = self.take_returns(c, b);
            freed += f;
            *unreturned = unreturned.saturating_sub(ok + bad);
            self.pool.bump(P_RETURNS, ok);
            self.pool.bump(P_BAD_RETURNS, bad);
            if ok + bad == 0 && look == Consumers::IfSilent {
                // Nothing came back: perhaps nobody is there to return anything.
                drop(produced);
                let _ = self.bind(c);
            }
        }
        freed
    }

    /// Pops and checks what `b`'s reader returned on channel `c` (one ring's
    /// worth at most, whatever the consumer writes): (accepted, bad, freed).
    /// The caller counts them (`P_RETURNS`, `P_BAD_RETURNS`, `unreturned`).
    #[inline]
    pub(crate) fn take_returns(&self, c: usize, b: &mut crate::pool::ends::Bound) -> (u64, u64, usize) {
        let (mut ok, mut bad, mut freed) = (0, 0, 0);
        // Popped in batches, then checked in one loop (range, generation, lent
        // to this reader, not yet returned: `give_back_all`). Bounded: at most
        // one ring's worth per call, whatever the consumer writes.
        let mut budget = b.returns.capacity();
        let mut batch = [0u64; RETURN_BATCH];
        loop {
            let mut n = 0;
            let mut more = true;
            while n < RETURN_BATCH && budget > 0 {
                budget -= 1;
                match b.returns.pop() {
                    Ok(Some([h, _, _])) => {
                        batch[n] = h;
                        n += 1;
                    }
                    Ok(None) => {
                        more = false;
                        break;
                    }
                    Err(_) => {
                        bad += 1;
                        more = false;
                        break;
                    }
                }
            }
            let (accepted, f) = self.pool.alloc.give_back_all(&batch[..n], c as u32);
            ok += accepted as u64;
            bad += (n - accepted) as u64;
            freed += f;
            if !more || n < RETURN_BATCH {
                break;
            }
        }
        (ok, bad, freed)
    }

    /// [`Peer::give_back`]'s busy path: the channel is still consumed and the
    /// link has no held-back returns, so the handle goes straight onto the
    /// return ring. `false` (nothing done) when that does not hold or the ring
    /// is full: then `give_back` does it all.
    #[inline(always)]
    pub(crate) fn give_back_now(&self, c: usize, link: usize, handle: u64) -> bool {
        let mut consumed = self.consumed.borrow_mut();
        let Some(Some(cs)) = consumed.get_mut(c) else { return false };
        if !cs.active {
            return false;
        }
        let Some(Some(l)) = cs.links.get_mut(link) else { return false };
        if !l.overflow.is_empty() || l.returns.push([handle, 0, 0]).is_err() {
            return false;
        }
        l.held = l.held.saturating_sub(1);
        true
    }

    /// A received message's slot goes back on its link's return ring; the
    /// link's count of held messages drops (a link no longer consumed goes
    /// with its last held message).
    #[inline(never)]
    pub(crate) fn give_back(&self, c: usize, link: usize, handle: u64) {
        let mut consumed = self.consumed.borrow_mut();
        let Some(cs) = consumed[c].as_mut() else { return };
        let active = cs.active;
        let Some(slot) = cs.links.get_mut(link) else { return };
        let Some(l) = slot.as_mut() else { return };
        l.held = l.held.saturating_sub(1);
        flush_overflow(l);
        if !(l.overflow.is_empty() && l.returns.push([handle, 0, 0]).is_ok()) {
            // The owner is slow to take returns (or says nonsense): keep it, bounded
            // by the owner's slots we hold, and try again next time.
            l.overflow.push(handle);
        }
        if !active && l.held == 0 {
            if let Some(l) = slot.take() {
                self.drop_link(l);
            }
        }
    }
}

/// Returns that did not fit the link's return ring earlier go in now, as far
/// as there is room (on every give-back, receive and wait slice, so none waits
/// for the next message to be dropped).
pub(crate) fn flush_overflow(l: &mut Link) {
    while let Some(&h) = l.overflow.last() {
        if l.returns.push([h, 0, 0]).is_err() {
            break;
        }
        l.overflow.pop();
    }
}
