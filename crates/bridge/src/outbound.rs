//! The outbound bridge: takes messages off a channel and publishes each to
//! a Zenoh key, without copying it (see `lent.rs`), in the order received.
//!
//! It keeps every published message (unreturned to its sender) until the
//! inbound bridges that follow it acknowledge it, so that an inbound bridge
//! that restarts asks for what it missed and gets it again ("resume").
//! With back-pressure `Block` a full window stops the bridge taking new
//! messages (its channel's ring then fills and its sender waits); with
//! `Drop` the oldest message leaves the window (the `floor` every
//! publication carries tells inbound bridges what can no longer come).
#![allow(unsafe_code)] // one span over a held message (`Span::new`'s contract, kept by `Run`)

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use numashm::{ChannelError, Message, Peer, PeerConfig};
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use crate::config::{BackPressure, BridgeConfig};
use crate::error::BridgeError;
use crate::lent::Span;
use crate::wire::{ack_key, Ack, Stamp};
use crate::Stop;

/// An inbound bridge not heard from for this long no longer holds the window.
const SILENT: Duration = Duration::from_secs(3);
/// How long a bridge whose window is full waits for an acknowledgement
/// before it publishes the window's first message again (see `run`).
const PROBE: Duration = Duration::from_millis(200);
/// Idle probes of the newest unacknowledged message (200 ms, 400 ms, …, 25.6 s
/// after it): bounded, for plain Zenoh subscribers never acknowledge.
const IDLE_PROBES: u32 = 8;
/// Messages published in a row before acknowledgements and returns are looked at.
const BURST: usize = 64;
/// How long an idle bridge polls its channel (yielding the CPU between polls)
/// before it parks: a sender sending now and then (a request, its reply's
/// round trip later) finds it awake instead of paying a wake-up per message.
/// The cost is bounded: at most this much CPU, given away to any runnable
/// thread, per idle period.
const HOT: Duration = Duration::from_micros(200);
/// How long a stopping bridge waits for Zenoh to let go of the payloads it lent.
const LET_GO: Duration = Duration::from_secs(5);

/// What an outbound bridge did.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_bridge::OutboundStats::default().published, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundStats {
    /// Messages published (each once).
    pub published: u64,
    /// Publications made again for an inbound bridge that asked to resume.
    pub republished: u64,
    /// Messages that left the replay window unacknowledged (back-pressure "drop").
    pub forgotten: u64,
    /// This run's stream id (the inbound side's name for it).
    pub stream: u64,
}

/// Publishes what a channel of a segment receives to a Zenoh key.
///
/// # Examples
///
/// ```no_run
/// use numashm_bridge::{BridgeConfig, Outbound, Stop};
/// let out = Outbound::new("/dev/shm/seg-a", 3, "demo/prices", BridgeConfig::new().connect("tcp/127.0.0.1:7447"));
/// let stop = Stop::new();
/// let stats = out.run(&stop, &mut || println!("ready"))?;
/// println!("published {}", stats.published);
/// # Ok::<(), numashm_bridge::BridgeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outbound {
    segment: PathBuf,
    channel: usize,
    key: String,
    cfg: BridgeConfig,
}

/// A published message the bridge still holds.
struct Held<'p> {
    seq: u64,
    span: Arc<Span>,
    // Dropped (returned to its sender) only once `span` is released.
    _message: Message<'p>,
}

impl Outbound {
    /// A bridge from channel `channel` of the rendezvous at `segment` to `key`.
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn new(segment: impl Into<PathBuf>, channel: usize, key: &str, cfg: BridgeConfig) -> Self {
        Outbound { segment: segment.into(), channel, key: key.to_owned(), cfg }
    }

    /// Joins the segment, consumes the channel, opens the Zenoh session, calls
    /// `ready`, then bridges until `stop` is set.
    ///
    /// # Errors
    ///
    /// [`BridgeError::Pool`] when the segment cannot be joined or the channel
    /// has another consumer; [`BridgeError::Zenoh`] / [`BridgeError::Config`]
    /// for the session.
    ///
    /// # Examples
    ///
    /// See [`Outbound`].
    pub fn run(&self, stop: &Stop, ready: &mut dyn FnMut()) -> Result<OutboundStats, BridgeError> {
        let peer = Peer::join(&self.segment, PeerConfig::new(&format!("bridge-out {}", self.key)))?;
        let rx = peer.receiver(self.channel)?;
        let session = zenoh::open(self.cfg.zenoh()?).wait().map_err(|e| BridgeError::zenoh("open", e))?;
        let stream = crate::state::stream_id().map_err(|e| BridgeError::Pool(e.into()))?;
        let congestion = match self.cfg.back_pressure {
            BackPressure::Block => CongestionControl::Block,
            BackPressure::Drop => CongestionControl::Drop,
        };
        let publisher = session
            .declare_publisher(self.key.clone())
            .congestion_control(congestion)
            .wait()
            .map_err(|e| BridgeError::zenoh("declare publisher", e))?;
        let acks = session
            .declare_subscriber(ack_key(stream))
            .with(FifoChannel::new(1024))
            .wait()
            .map_err(|e| BridgeError::zenoh("declare ack subscriber", e))?;
        ready();

        let mut run = Run {
            window: VecDeque::new(),
            letting_go: Vec::new(),
            next_seq: 0,
            floor: 0,
            followers: HashMap::new(),
            last_heard: Instant::now(),
            last_published: Instant::now(),
            probes: 0,
            stats: OutboundStats { stream, ..OutboundStats::default() },
        };
        let publish = |held: &Held<'_>, floor: u64| {
            let stamp = Stamp { stream, seq: held.seq, floor }.encode();
            publisher
                .put(zenoh::bytes::ZBytes::from(Span::payload(&held.span)))
                .attachment(zenoh::bytes::ZBytes::from(stamp))
                .wait()
                .map_err(|e| BridgeError::zenoh("put", e))
        };
        let result = (|| {
            while !stop.is_stopped() {
                while let Ok(Some(sample)) = acks.try_recv() {
                    if let Some(ack) = Ack::decode(&sample.payload().to_bytes()) {
                        run.heard(ack, &publish)?;
                    }
                }
                run.release(self.cfg.window > 0);
                if self.cfg.window > 0 && run.window.len() >= self.cfg.window {
                    match self.cfg.back_pressure {
                        BackPressure::Drop => run.forget_oldest(),
                        BackPressure::Block => {
                            // Wait for an acknowledgement (bounded: the stop flag is seen).
                            if let Ok(Some(sample)) = acks.recv_timeout(Duration::from_millis(2)) {
                                if let Some(ack) = Ack::decode(&sample.payload().to_bytes()) {
                                    run.heard(ack, &publish)?;
                                }
                            }
                            // Nobody acknowledges: the window may have gone out before any
                            // inbound bridge subscribed. Publish its first message again now
                            // and then, so that one that subscribes later learns of this
                            // stream and asks for the rest.
                            if run.last_heard.elapsed() >= PROBE {
                                if let Some(front) = run.window.front() {
                                    publish(front, run.floor)?;
                                    run.stats.republished += 1;
                                }
                                run.last_heard = Instant::now();
                            }
                            continue;
                        }
                    }
                }
                // Nothing waiting: poll for `HOT`, then park.
                let mut got = rx.try_recv();
                if matches!(got, Err(ChannelError::Empty)) {
                    let until = Instant::now() + HOT;
                    let mut polls = 0u32;
                    while matches!(got, Err(ChannelError::Empty)) {
                        polls += 1;
                        if polls % 16 == 0 && Instant::now() >= until {
                            got = rx.recv_timeout(Duration::from_millis(5));
                            break;
                        }
                        std::thread::yield_now();
                        got = rx.try_recv();
                    }
                }
                // A burst is published before the bookkeeping above runs again
                // (once per burst, not per message).
                let room = if self.cfg.window > 0 { self.cfg.window.saturating_sub(run.window.len()) } else { usize::MAX };
                let mut burst = 0;
                let got = loop {
                    match got {
                        Ok(message) => {
                            // SAFETY: the message is kept in `Held` beside the span and
                            // dropped only once `Span::released` (see `Run::release`),
                            // and the peer outlives every held message (declared first;
                            // leaked below if Zenoh keeps a payload past the stop).
                            let span = unsafe { Span::new(&message) };
                            let held = Held { seq: run.next_seq, span, _message: message };
                            publish(&held, run.floor)?;
                            run.stats.published += 1;
                            run.next_seq += 1;
                            run.window.push_back(held);
                            burst += 1;
                            if burst >= BURST.min(room) {
                                break Ok(());
                            }
                            got = rx.try_recv();
                        }
                        Err(e) => break Err(e),
                    }
                };
                if burst > 0 {
                    run.last_published = Instant::now();
                    run.probes = 0;
                }
                match got {
                    Ok(()) => {}
                    Err(ChannelError::TimedOut) | Err(ChannelError::Empty) => {
                        if self.cfg.window > 0 {
                            run.probe_idle(&publish)?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })();
        let stats = run.stats;
        drop((acks, publisher));
        let _ = session.close().wait();
        // Zenoh may still own payloads over held messages: wait, bounded, for
        // it to drop them; if it does not, leak them with the peer so that no
        // payload ever reads unmapped or returned memory.
        let deadline = Instant::now() + LET_GO;
        while Instant::now() < deadline && !run.all_released() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !run.all_released() {
            std::mem::forget(run);
            drop(rx);
            std::mem::forget(peer);
        } else {
            drop(run);
            drop(rx);
        }
        result.map(|()| stats)
    }
}

/// One run's window and bookkeeping.
struct Run<'p> {
    window: VecDeque<Held<'p>>,
    /// Forgotten (drop mode) but still owned by Zenoh.
    letting_go: Vec<Held<'p>>,
    next_seq: u64,
    /// Every sequence number below is out of the window.
    floor: u64,
    /// Each inbound bridge's acknowledged `next` and when it was heard.
    followers: HashMap<u64, (u64, Instant)>,
    /// When an acknowledgement last came (or the last probe went out).
    last_heard: Instant,
    /// When a message was last published (or probed while idle).
    last_published: Instant,
    /// Idle probes of the newest message so far (see `probe_idle`).
    probes: u32,
    stats: OutboundStats,
}

impl<'p> Run<'p> {
    /// An acknowledgement: progress, or a request to publish again from `next`.
    fn heard(&mut self, ack: Ack, publish: &dyn Fn(&Held<'p>, u64) -> Result<(), BridgeError>) -> Result<(), BridgeError> {
        // A follower cannot have more than we published (a bogus ack is clamped, never trusted).
        self.followers.insert(ack.subscriber, (ack.next.min(self.next_seq), Instant::now()));
        self.last_heard = Instant::now();
        if ack.resume {
            for held in self.window.iter().filter(|h| h.seq >= ack.next) {
                publish(held, self.floor)?;
                self.stats.republished += 1;
            }
        }
        Ok(())
    }

    /// Returns the messages every follower has (all, without replay) and
    /// Zenoh let go of.
    fn release(&mut self, replay: bool) {
        let now = Instant::now();
        self.followers.retain(|_, (_, heard)| now.duration_since(*heard) < SILENT);
        // No follower heard from: keep everything (one may be restarting).
        let acked = if replay { self.followers.values().map(|&(next, _)| next).min().unwrap_or(0) } else { u64::MAX };
        while let Some(front) = self.window.front_mut() {
            if front.seq >= acked || !Span::released(&mut front.span) {
                break;
            }
            self.floor = front.seq + 1;
            self.window.pop_front();
        }
        self.letting_go.retain_mut(|h| !Span::released(&mut h.span));
    }

    /// Idle, with a message nobody has acknowledged: it may have gone out
    /// before any inbound bridge's subscription reached us (Zenoh routes a
    /// publication only to the subscribers it knows of), and with nothing
    /// published after it no inbound bridge would ever see a gap and ask for
    /// it. So the newest message goes out again after `PROBE`, then after
    /// twice as long, `IDLE_PROBES` times at most: an inbound bridge that
    /// missed it sees a gap and asks from where it stands; one that has it
    /// skips it as a duplicate (and acknowledges, which ends the probes).
    fn probe_idle(&mut self, publish: &dyn Fn(&Held<'p>, u64) -> Result<(), BridgeError>) -> Result<(), BridgeError> {
        let Some(newest) = self.window.back() else { return Ok(()) };
        let acknowledged = !self.followers.is_empty() && self.followers.values().all(|&(next, _)| next >= self.next_seq);
        if acknowledged || self.probes >= IDLE_PROBES || self.last_published.elapsed() < PROBE * (1 << self.probes) {
            return Ok(());
        }
        publish(newest, self.floor)?;
        self.stats.republished += 1;
        self.probes += 1;
        self.last_published = Instant::now();
        Ok(())
    }

    fn forget_oldest(&mut self) {
        if let Some(h) = self.window.pop_front() {
            self.floor = h.seq + 1;
            self.stats.forgotten += 1;
            self.letting_go.push(h);
        }
        self.letting_go.retain_mut(|h| !Span::released(&mut h.span));
    }

    fn all_released(&mut self) -> bool {
        self.window.iter_mut().chain(self.letting_go.iter_mut()).all(|h| Span::released(&mut h.span))
    }
}
