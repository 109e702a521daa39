//! The inbound bridge: subscribes to a Zenoh key and sends each sample into
//! a channel of a segment: one copy, from Zenoh's buffers into a slot.
//!
//! Samples stamped by an outbound bridge are delivered in their stream's
//! order, each once: the state file (`state.rs`) says where each stream
//! stands, across restarts; a gap (a sample after one that did not come)
//! asks the outbound bridge to publish again from the first missing one, and
//! later samples are skipped until it comes; what the outbound bridge can no
//! longer publish is counted as lost. Unstamped samples (a plain Zenoh
//! publisher) are delivered as they come.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use numashm::{ChannelError, Peer, PeerConfig, Sender};
use numashm_varslot::{CommitError, OwnerError};
use zenoh::bytes::ZBytes;
use zenoh::handlers::FifoChannel;
use zenoh::Wait;

use crate::config::{BackPressure, BridgeConfig};
use crate::error::BridgeError;
use crate::state::{InboundStats, StateFile};
use crate::wire::{ack_key, Ack, Stamp};
use crate::Stop;

/// How often a bridge waiting for a gap to fill asks again.
const ASK_AGAIN: Duration = Duration::from_millis(50);
/// Messages delivered between acknowledgements at most: the outbound side
/// holds every unacknowledged message (its window, 1024 by default), so a
/// timer alone would cap a stream at a window per timer tick.
const ACK_BATCH: u32 = 128;
/// How often an idle bridge tells its streams it is still there.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Sends what a Zenoh key expression carries into a channel of a segment.
///
/// # Examples
///
/// ```no_run
/// use numashm_bridge::{BridgeConfig, Inbound, Stop};
/// let bridge = Inbound::new("demo/prices", "/dev/shm/seg-b", 3, BridgeConfig::new().listen("tcp/127.0.0.1:7447"));
/// let stats = bridge.run(&Stop::new(), &mut || println!("ready"))?;
/// println!("delivered {}, lost {}", stats.delivered, stats.lost);
/// # Ok::<(), numashm_bridge::BridgeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Inbound {
    key: String,
    segment: PathBuf,
    channel: usize,
    cfg: BridgeConfig,
    state: PathBuf,
}

impl Inbound {
    /// A bridge from `key` into channel `channel` of the rendezvous at
    /// `segment`, keeping its state beside the segment
    /// (`SEGMENT.bridge-in-CHANNEL`; see [`Inbound::state_file`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let b = numashm_bridge::Inbound::new("k", "/dev/shm/s", 2, numashm_bridge::BridgeConfig::new());
    /// assert_eq!(b.state_path(), std::path::Path::new("/dev/shm/s.bridge-in-2"));
    /// ```
    pub fn new(key: &str, segment: impl Into<PathBuf>, channel: usize, cfg: BridgeConfig) -> Self {
        let segment = segment.into();
        let mut state = segment.clone().into_os_string();
        state.push(format!(".bridge-in-{channel}"));
        Inbound { key: key.to_owned(), segment, channel, cfg, state: state.into() }
    }

    /// Keeps the state (where each stream stands, the counts) in `path` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = numashm_bridge::Inbound::new("k", "/dev/shm/s", 2, numashm_bridge::BridgeConfig::new()).state_file("/tmp/x");
    /// assert_eq!(b.state_path(), std::path::Path::new("/tmp/x"));
    /// ```
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state = path.into();
        self
    }

    /// The state file's path (read it with [`crate::read_stats`]).
    ///
    /// # Examples
    ///
    /// See [`Inbound::new`].
    pub fn state_path(&self) -> &std::path::Path {
        &self.state
    }

    /// Opens the state file, joins the segment, opens the Zenoh session,
    /// asks every stream it followed to resume, calls `ready`, then bridges
    /// until `stop` is set. Returns the counts of every run so far.
    ///
    /// # Errors
    ///
    /// [`BridgeError::State`] (the state file, e.g. another bridge uses it),
    /// [`BridgeError::Pool`], [`BridgeError::Zenoh`], [`BridgeError::Config`].
    ///
    /// # Examples
    ///
    /// See [`Inbound`].
    pub fn run(&self, stop: &Stop, ready: &mut dyn FnMut()) -> Result<InboundStats, BridgeError> {
        let state = StateFile::open(&self.state)?;
        let peer = Peer::join(&self.segment, PeerConfig::new(&format!("bridge-in {}", self.key)))?;
        let tx = peer.sender(self.channel)?;
        let session = zenoh::open(self.cfg.zenoh()?).wait().map_err(|e| BridgeError::zenoh("open", e))?;
        // A bounded FIFO: when the ring is full and we wait, it fills and
        // Zenoh's reader waits on it, then TCP, then the publisher.
        let samples = session
            .declare_subscriber(self.key.clone())
            .with(FifoChannel::new(256))
            .wait()
            .map_err(|e| BridgeError::zenoh("declare subscriber", e))?;
        let me = state.subscriber();
        let ack = |stream: u64, next: u64, resume: bool| {
            session
                .put(ack_key(stream), ZBytes::from(Ack { subscriber: me, next, resume }.encode()))
                .wait()
                .map_err(|e| BridgeError::zenoh("put ack", e))
        };
        let mut asked: HashMap<u64, Instant> = HashMap::new();
        for s in state.streams() {
            ack(s.stream, s.next, true)?;
            asked.insert(s.stream, Instant::now());
        }
        ready();
        let mut deliver = Deliver { tx: &tx, peer: &peer, state: &state, mode: self.cfg.back_pressure, stop };
        let mut acked: HashMap<u64, u64> = HashMap::new();
        let (mut last_ack, mut last_beat, mut tick, mut since_ack) = (Instant::now(), Instant::now(), 0u64, 0u32);
        while !stop.is_stopped() {
            tick += 1;
            let sample = next_sample(&samples, self.cfg.ack_every)?;
            if let Some(sample) = sample {
                let stamp = sample.attachment().and_then(|a| Stamp::decode(&a.to_bytes()));
                match stamp {
                    None => match deliver.one(sample.payload(), None) {
                        Ok(true) => state.count_unstamped(),
                        Ok(false) => {}
                        Err(BridgeError::Stopped) => break,
                        Err(e) => return Err(e),
                    },
                    Some(st) => {
                        let i = state.find(st.stream).unwrap_or_else(|| state.follow(st.stream, st.floor, tick));
                        let mut next = state.next(i);
                        if st.seq < next {
                            state.count_duplicate();
                            continue;
                        }
                        if st.seq > next && st.floor > next {
                            // The outbound side can no longer publish next..floor.
                            state.count_lost(st.floor - next);
                            state.set_next(i, st.floor);
                            next = st.floor;
                        }
                        if st.seq > next {
                            // A gap: skip, and ask (again, now and then) from `next`.
                            if asked.get(&st.stream).map_or(true, |t| t.elapsed() >= ASK_AGAIN) {
                                ack(st.stream, next, true)?;
                                asked.insert(st.stream, Instant::now());
                            }
                            continue;
                        }
                        asked.remove(&st.stream);
                        since_ack += 1;
                        match deliver.one(sample.payload(), Some((i, st.seq, tick))) {
                            Ok(_) => {}
                            Err(BridgeError::Stopped) => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            // A gap not filled yet is asked about again, samples or not: the
            // outbound side may have stopped publishing (its window full of
            // messages we have not acknowledged, the first of them lost before
            // our subscription reached it).
            for (&stream, at) in asked.iter_mut() {
                if at.elapsed() >= ASK_AGAIN {
                    if let Some(i) = state.find(stream) {
                        ack(stream, state.next(i), true)?;
                    }
                    *at = Instant::now();
                }
            }
            let beat = last_beat.elapsed() >= HEARTBEAT;
            if since_ack >= ACK_BATCH || last_ack.elapsed() >= self.cfg.ack_every || beat {
                since_ack = 0;
                for s in state.streams() {
                    if beat || acked.get(&s.stream) != Some(&s.next) {
                        ack(s.stream, s.next, false)?;
                        acked.insert(s.stream, s.next);
                    }
                }
                last_ack = Instant::now();
                if beat {
                    last_beat = last_ack;
                }
            }
        }
        let stats = state.stats();
        drop(samples);
        let _ = session.close().wait();
        Ok(stats)
    }
}

/// The next sample, waiting up to `wait`. A burst is taken without sleeping:
/// the queue is polled (yielding the CPU between polls) for a while before
/// the thread parks, so that Zenoh's reader does not wake us per sample.
fn next_sample(
    samples: &zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    wait: Duration,
) -> Result<Option<zenoh::sample::Sample>, BridgeError> {
    for _ in 0..POLLS {
        if let Some(s) = samples.try_recv().map_err(|e| BridgeError::zenoh("receive", e))? {
            return Ok(Some(s));
        }
        std::thread::yield_now();
    }
    samples.recv_timeout(wait).map_err(|e| BridgeError::zenoh("receive", e))
}

/// Polls before a bridge parks (each a `yield`: a few microseconds in all).
pub(crate) const POLLS: u32 = 32;

/// Sends samples into the ring.
struct Deliver<'a, 'p> {
    tx: &'a Sender<'p>,
    peer: &'p Peer,
    state: &'a StateFile,
    mode: BackPressure,
    stop: &'a Stop,
}

impl Deliver<'_, '_> {
    /// Copies `payload` into a slot and sends it; `stamped` is its stream
    /// slot, sequence number and tick (kept in the state file around the
    /// send). Returns whether it was delivered (else dropped and counted).
    fn one(&mut self, payload: &ZBytes, stamped: Option<(usize, u64, u64)>) -> Result<bool, BridgeError> {
        let delivered = self.send(payload, stamped)?;
        if let Some((i, seq, _)) = stamped {
            self.state.sent(i, seq);
        }
        if delivered {
            self.state.count_delivered();
        } else {
            self.state.count_dropped();
            self.peer.count_dropped(1);
        }
        Ok(delivered)
    }

    fn send(&mut self, payload: &ZBytes, stamped: Option<(usize, u64, u64)>) -> Result<bool, BridgeError> {
        let len = payload.len();
        let mut slot = loop {
            match self.tx.alloc(len) {
                Ok(slot) => break slot,
                // Never fits: dropped and counted, whatever the mode.
                Err(ChannelError::Alloc(OwnerError::TooLarge { .. })) => return Ok(false),
                Err(ChannelError::Alloc(OwnerError::Exhausted { .. } | OwnerError::Commit(CommitError::BeyondReserved { .. }))) => {
                    // Every slot is lent: readers have not returned them yet.
                    if self.mode == BackPressure::Drop {
                        return Ok(false);
                    }
                    if self.stop.is_stopped() {
                        return Err(BridgeError::Stopped);
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut at = 0;
        for part in payload.slices() {
            let Some(dst) = slot.get_mut(at..at + part.len()) else {
                return Err(BridgeError::Zenoh { op: "payload", detail: format!("slices longer than its length {len}") });
            };
            dst.copy_from_slice(part);
            at += part.len();
        }
        // The in-flight marker is set only around a push that does not wait,
        // so that a kill while the ring is full leaves nothing in doubt.
        let mut message = slot;
        let mut waits = 0u32;
        loop {
            if let Some((i, seq, tick)) = stamped {
                self.state.sending(i, seq, tick);
            }
            match self.tx.send(message) {
                Ok(()) => return Ok(true),
                Err(e) => {
                    if let Some((i, _, _)) = stamped {
                        self.state.abort(i); // not sent: not in doubt
                    }
                    if !matches!(e.error, ChannelError::Full) {
                        return Err(e.error.into());
                    }
                    if self.mode == BackPressure::Drop {
                        return Ok(false);
                    }
                    if self.stop.is_stopped() {
                        return Err(BridgeError::Stopped);
                    }
                    message = e.message;
                    // The receiver is behind: wait for room, briefly, then again.
                    waits += 1;
                    if waits < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        }
    }
}
