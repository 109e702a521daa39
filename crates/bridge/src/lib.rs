//! Bridges numashm channels between hosts over [Zenoh](https://zenoh.io).
//!
//! An [`Outbound`] bridge consumes a channel of a segment and publishes each
//! message to a Zenoh key, handing Zenoh the message's own pages (no copy of
//! ours). An [`Inbound`] bridge subscribes to a key expression and sends each
//! sample into a channel of another segment (one copy: from Zenoh's buffers
//! into a slot). Applications on either side send and receive as they always
//! do: a bridge is one more peer of its segment, shown by `numashm inspect`
//! and `numashm top` with its counts (`bridge-out KEY`, `bridge-in KEY`).
//!
//! Order is kept per outbound bridge run. With [`BackPressure::Block`]
//! nothing is lost: the outbound bridge keeps each message until the inbound
//! bridges acknowledge it, and an inbound bridge that restarts (its state
//! file says where it stood) gets what it missed again, each message once.
//! See docs/bridge.md.
//!
//! # Examples
//!
//! ```no_run
//! use numashm_bridge::{BridgeConfig, Inbound, Outbound, Stop};
//! let stop = Stop::new();
//! let out = Outbound::new("/dev/shm/seg-a", 0, "demo/ticks", BridgeConfig::new().listen("tcp/127.0.0.1:7447"));
//! let inb = Inbound::new("demo/ticks", "/dev/shm/seg-b", 0, BridgeConfig::new().connect("tcp/127.0.0.1:7447"));
//! std::thread::scope(|s| {
//!     s.spawn(|| out.run(&stop, &mut || {}));
//!     s.spawn(|| inb.run(&stop, &mut || {}));
//!     std::thread::sleep(std::time::Duration::from_secs(10));
//!     stop.stop();
//! });
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod inbound;
mod lent;
mod loom;
mod outbound;
mod state;
mod wire;

use std::sync::Arc;

use crate::loom::sync::atomic::{AtomicBool, Ordering};

pub use config::{BackPressure, BridgeConfig, Mode};
pub use error::BridgeError;
pub use inbound::Inbound;
pub use outbound::{Outbound, OutboundStats};
pub use state::{read_stats, InboundStats};

/// Tells a running bridge to stop (it finishes the message at hand, closes
/// its session and returns its counts). Clones share the flag.
///
/// # Examples
///
/// ```
/// let stop = numashm_bridge::Stop::new();
/// let other = stop.clone();
/// other.stop();
/// assert!(stop.is_stopped());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag not yet set.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn new() -> Self {
        Stop::default()
    }

    /// Sets the flag.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn stop(&self) {
        // Relaxed: a request, polled; nothing else is published with it.
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// See [`Stop`].
    pub fn is_stopped(&self) -> bool {
        // Relaxed: see `stop`.
        self.0.load(Ordering::Relaxed)
    }
}
