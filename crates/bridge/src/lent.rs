//! A received message's bytes handed to Zenoh without a copy.
//!
//! Zenoh takes a `bytes::Bytes` as a zero-copy payload and may keep it after
//! `put` returns (queued for the link). So the outbound bridge keeps the
//! [`numashm::Message`] (the slot stays lent to it, unreturned) and an
//! `Arc<Span>`; Zenoh gets a `Bytes` owning another `Arc` of the same span.
//! The bridge returns the message only once [`Span::released`] says no clone
//! is left anywhere (`Arc::get_mut`: Acquire, so Zenoh's last read of the
//! bytes happens before the slot goes back to its owner and is reused).
#![allow(unsafe_code)] // a slice from a pointer into a mapping the bridge keeps alive

use std::ptr::NonNull;
use std::sync::Arc;

/// Where a held message's bytes are.
#[derive(Debug)]
pub(crate) struct Span {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a span is only read (shared `&[u8]`), and `Span::new`'s contract
// keeps its bytes mapped and lent to us while any clone lives, on any thread.
unsafe impl Send for Span {}
// SAFETY: as for Send: reads only.
unsafe impl Sync for Span {}

impl Span {
    /// A span over `bytes`.
    ///
    /// # Safety
    ///
    /// The memory of `bytes` must stay mapped, and must not be handed back to
    /// its owner (the message returned), until every clone of the returned
    /// `Arc` is dropped: the caller keeps the message and checks
    /// [`Span::released`] before returning it, and never unmaps the pool
    /// (drops the peer) while a clone may live.
    pub(crate) unsafe fn new(bytes: &[u8]) -> Arc<Span> {
        Arc::new(Span { ptr: NonNull::from(bytes).cast(), len: bytes.len() })
    }

    /// Whether Zenoh dropped every payload over this span (then the message
    /// may be returned).
    pub(crate) fn released(span: &mut Arc<Span>) -> bool {
        Arc::get_mut(span).is_some()
    }

    /// The payload to publish: Zenoh owns one more clone of the span.
    pub(crate) fn payload(span: &Arc<Span>) -> bytes::Bytes {
        bytes::Bytes::from_owner(SpanRef(span.clone()))
    }
}

/// A clone of a span that Zenoh owns (through `Bytes`).
struct SpanRef(Arc<Span>);

impl AsRef<[u8]> for SpanRef {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `Span::new`'s contract: the bytes stay mapped and lent to
        // the bridge while this clone lives; they are only read.
        unsafe { std::slice::from_raw_parts(self.0.ptr.as_ptr(), self.0.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_released_only_after_every_payload_over_it_is_dropped() {
        let backing = vec![7u8; 100];
        // SAFETY: `backing` outlives the span and every payload (dropped below first).
        let mut span = unsafe { Span::new(&backing) };
        let p = Span::payload(&span);
        let q = p.clone();
        assert_eq!(&p[..], &backing[..]);
        assert!(!Span::released(&mut span));
        drop(p);
        assert!(!Span::released(&mut span), "a clone of the payload still reads it");
        let t = std::thread::spawn(move || q.len());
        assert_eq!(t.join().unwrap(), 100);
        assert!(Span::released(&mut span));
    }
}
