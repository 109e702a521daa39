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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use numashm::{ChannelError, Peer, PeerConfig, Sender};
use numashm_varslot::{CommitError, OwnerError};
use zenoh::bytes::ZBytes;
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
    /// Samples are taken in Zenoh's subscriber callback, on Zenoh's receiving
    /// thread: it copies each into a slot and pushes it into the ring itself
    /// (no queue and no thread between Zenoh and the ring). With
    /// [`BackPressure::Block`] the callback waits for ring space: Zenoh's
    /// reader then stops reading the link, TCP fills, and the publisher
    /// (`CongestionControl::Block`) waits, as with Zenoh's own bounded
    /// handlers. The calling thread keeps the clocks: acknowledgements while
    /// the position moves, heartbeats, gap re-asks, and the stop flag.
    ///
    /// # Errors
    ///
    /// [`BridgeError::State`] (the state file, e.g. another bridge uses it),
    /// [`BridgeError::Pool`], [`BridgeError::Zenoh`], [`BridgeError::Config`];
    /// a failure inside the callback (the segment refused a send, an
    /// acknowledgement could not be put) ends the run with its error.
    ///
    /// # Examples
    ///
    /// See [`Inbound`].
    pub fn run(&self, stop: &Stop, ready: &mut dyn FnMut()) -> Result<InboundStats, BridgeError> {
        let state = StateFile::open(&self.state)?;
        let peer = Peer::join(&self.segment, PeerConfig::new(&format!("bridge-in {}", self.key)))?;
        // Makes our ring now, so that a pool refusing it fails here, not in the callback.
        peer.sender(self.channel)?;
        let session = zenoh::open(self.cfg.zenoh()?).wait().map_err(|e| BridgeError::zenoh("open", e))?;
        let now = Instant::now();
        let core = Core {
            me: state.subscriber(),
            peer,
            state,
            session: session.clone(),
            channel: self.channel,
            mode: self.cfg.back_pressure,
            stop: stop.clone(),
            ended: Stop::new(),
            asked: HashMap::new(),
            acked: HashMap::new(),
            tick: 0,
            since_ack: 0,
            last_ack: now,
            last_beat: now,
            failed: None,
        };
        // Why a mutex: the peer is driven by one thread at a time (`Peer` is
        // Send, not Sync), and two threads take turns here: Zenoh's receiving
        // thread in the callback (Zenoh may even call it from several threads
        // at once, one per link) and this thread for the clocks. The mutex
        // serialises them; it is uncontended but for the clock's visit every
        // few milliseconds, and it keeps each stream's samples in the order
        // Zenoh hands them over. A single owner instead (one thread holding
        // the peer, the callback handing it samples) is the queue, thread hop
        // and wake per batch this design removes. The `Option` is taken by
        // this thread when the run ends: a callback still in flight (Zenoh
        // may run one after the undeclaration) then finds nothing and
        // returns, and the peer and the state file are dropped here, not on a
        // Zenoh thread.
        // The run's own end, set before this thread takes the core back: a
        // callback waiting for ring space (holding the lock) gives up, also
        // when the run ends on an error rather than the caller's stop.
        let ended = core.ended.clone();
        let shared = Arc::new(Mutex::new(Some(core)));
        let in_callback = Arc::clone(&shared);
        let subscriber = session
            .declare_subscriber(self.key.clone())
            .callback(move |sample| {
                // Poisoned: a callback panicked mid-delivery; deliver nothing
                // more (the clock thread ends the run).
                if let Ok(mut core) = in_callback.lock() {
                    if let Some(core) = core.as_mut() {
                        core.on_sample(&sample);
                    }
                }
            })
            .wait()
            .map_err(|e| BridgeError::zenoh("declare subscriber", e))?;
        let resumed = match shared.lock() {
            Ok(mut core) => core.as_mut().map_or(Ok(()), Core::resume_all),
            Err(_) => Err(panicked()),
        };
        let result = resumed.and_then(|()| {
            ready();
            clock(&shared, stop, self.cfg.ack_every)
        });
        ended.stop();
        drop(subscriber);
        // The run's end: later callbacks find `None`. A poisoned lock still
        // yields the core (the state file keeps what the panic left: the next
        // run settles an in-flight marker as in doubt, as after a kill).
        let core = match shared.lock() {
            Ok(mut core) => core.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let stats = core.as_ref().map(|c| c.state.stats());
        drop(core);
        let _ = session.close().wait();
        result.and_then(|()| stats.ok_or_else(panicked))
    }
}

fn panicked() -> BridgeError {
    BridgeError::Zenoh { op: "subscriber callback", detail: "panicked".into() }
}

/// The calling thread's part of a run: every `tick` (the acknowledgement
/// period) it takes the core briefly for the clocks, until `stop` or a
/// failure in the callback.
fn clock(shared: &Mutex<Option<Core>>, stop: &Stop, tick: Duration) -> Result<(), BridgeError> {
    while !stop.is_stopped() {
        std::thread::sleep(tick);
        let mut core = shared.lock().map_err(|_| panicked())?;
        let Some(core) = core.as_mut() else { return Ok(()) };
        if let Some(e) = core.failed.take() {
            return Err(e);
        }
        core.clocks(tick)?;
    }
    Ok(())
}

/// What the subscriber callback and the clock thread share (behind a mutex).
struct Core {
    peer: Peer,
    state: StateFile,
    session: zenoh::Session,
    channel: usize,
    mode: BackPressure,
    stop: Stop,
    /// Set when the run ends (`run`), whatever ended it.
    ended: Stop,
    /// This bridge's id in acknowledgements.
    me: u64,
    /// Streams with a gap, and when they were last asked to resume.
    asked: HashMap<u64, Instant>,
    /// Each stream's last acknowledged `next`.
    acked: HashMap<u64, u64>,
    /// Samples seen (orders the state file's least recently used stream).
    tick: u64,
    /// Samples delivered since the last acknowledgement.
    since_ack: u32,
    last_ack: Instant,
    last_beat: Instant,
    /// The first failure in the callback: the clock thread ends the run with it.
    failed: Option<BridgeError>,
}

impl Core {
    fn ack(&self, stream: u64, next: u64, resume: bool) -> Result<(), BridgeError> {
        self.session
            .put(ack_key(stream), ZBytes::from(Ack { subscriber: self.me, next, resume }.encode()))
            .wait()
            .map_err(|e| BridgeError::zenoh("put ack", e))
    }

    /// A new run asks every stream its state file follows to publish again
    /// from where it stands.
    fn resume_all(&mut self) -> Result<(), BridgeError> {
        for s in self.state.streams() {
            self.ack(s.stream, s.next, true)?;
            self.asked.insert(s.stream, Instant::now());
        }
        Ok(())
    }

    /// The callback's body: a failure is kept for the clock thread, and the
    /// callback delivers nothing more.
    fn on_sample(&mut self, sample: &zenoh::sample::Sample) {
        if self.failed.is_some() || self.stop.is_stopped() || self.ended.is_stopped() {
            return;
        }
        match self.sample(sample) {
            Ok(()) | Err(BridgeError::Stopped) => {}
            Err(e) => self.failed = Some(e),
        }
    }

    fn sample(&mut self, sample: &zenoh::sample::Sample) -> Result<(), BridgeError> {
        self.tick += 1;
        let tick = self.tick;
        let Some(st) = sample.attachment().and_then(|a| Stamp::decode(&a.to_bytes())) else {
            if self.deliver(sample.payload(), None)? {
                self.state.count_unstamped();
            }
            return Ok(());
        };
        let state = &self.state;
        let i = state.find(st.stream).unwrap_or_else(|| state.follow(st.stream, st.floor, tick));
        let mut next = state.next(i);
        if st.seq < next {
            state.count_duplicate();
            return Ok(());
        }
        if st.seq > next && st.floor > next {
            // The outbound side can no longer publish next..floor.
            state.count_lost(st.floor - next);
            state.set_next(i, st.floor);
            next = st.floor;
        }
        if st.seq > next {
            // A gap: skip, and ask (again, now and then: see `clocks`) from `next`.
            if self.asked.get(&st.stream).map_or(true, |t| t.elapsed() >= ASK_AGAIN) {
                self.ack(st.stream, next, true)?;
                self.asked.insert(st.stream, Instant::now());
            }
            return Ok(());
        }
        self.asked.remove(&st.stream);
        self.since_ack += 1;
        self.deliver(sample.payload(), Some((i, st.seq, tick)))?;
        if self.since_ack >= ACK_BATCH {
            self.ack_moved(false)?;
        }
        Ok(())
    }

    /// Acknowledges every stream whose position moved (all of them on a
    /// heartbeat).
    fn ack_moved(&mut self, beat: bool) -> Result<(), BridgeError> {
        self.since_ack = 0;
        for s in self.state.streams() {
            if beat || self.acked.get(&s.stream) != Some(&s.next) {
                self.ack(s.stream, s.next, false)?;
                self.acked.insert(s.stream, s.next);
            }
        }
        self.last_ack = Instant::now();
        if beat {
            self.last_beat = self.last_ack;
        }
        Ok(())
    }

    /// The clock thread's visit: a gap not filled yet is asked about again,
    /// samples or not (the outbound side may have stopped publishing: its
    /// window full of messages we have not acknowledged, the first of them
    /// lost before our subscription reached it); positions that moved are
    /// acknowledged; an idle bridge says it is still there.
    fn clocks(&mut self, ack_every: Duration) -> Result<(), BridgeError> {
        let mut again = Vec::new();
        for (&stream, at) in self.asked.iter_mut() {
            if at.elapsed() >= ASK_AGAIN {
                if let Some(i) = self.state.find(stream) {
                    again.push((stream, self.state.next(i)));
                }
                *at = Instant::now();
            }
        }
        for (stream, next) in again {
            self.ack(stream, next, true)?;
        }
        let beat = self.last_beat.elapsed() >= HEARTBEAT;
        if self.since_ack > 0 || self.last_ack.elapsed() >= ack_every || beat {
            self.ack_moved(beat)?;
        }
        Ok(())
    }

    /// Copies `payload` into a slot and sends it; `stamped` is its stream
    /// slot, sequence number and tick (kept in the state file around the
    /// send). Returns whether it was delivered (else dropped and counted).
    fn deliver(&self, payload: &ZBytes, stamped: Option<(usize, u64, u64)>) -> Result<bool, BridgeError> {
        // Cheap: our ring exists (made in `run`), so this only borrows the peer.
        let tx = self.peer.sender(self.channel)?;
        let delivered =
            Deliver { tx: &tx, state: &self.state, mode: self.mode, stop: &self.stop, ended: &self.ended }.send(payload, stamped)?;
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
}

/// Sends one sample into the ring.
struct Deliver<'a, 'p> {
    tx: &'a Sender<'p>,
    state: &'a StateFile,
    mode: BackPressure,
    stop: &'a Stop,
    ended: &'a Stop,
}

impl Deliver<'_, '_> {
    /// Copies `payload` into a slot and pushes it, waiting for a slot and for
    /// ring space with `Block` (until `stop`), giving up with `Drop`.
    fn send(self, payload: &ZBytes, stamped: Option<(usize, u64, u64)>) -> Result<bool, BridgeError> {
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
                    if self.stop.is_stopped() || self.ended.is_stopped() {
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
                    if self.stop.is_stopped() || self.ended.is_stopped() {
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
