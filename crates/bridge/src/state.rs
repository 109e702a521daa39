//! The inbound bridge's state file: where each outbound stream it follows
//! stands, and its counts, kept in a small file mapping so that they outlive
//! the process (a `kill -9` included) and a restarted bridge resumes from
//! them. Stores are plain 8-byte copies into the mapping: no syscall per
//! message. The file is the bridge's own (mode 0600, an exclusive `flock`
//! while a bridge uses it); a value that does not make sense is ignored,
//! never trusted into an index.

use std::os::fd::OwnedFd;
use std::path::Path;

use numashm_region::{Region, RegionOptions};

use crate::error::BridgeError;

const MAGIC: u64 = u64::from_le_bytes(*b"NSHMBIN1");
/// Outbound streams followed at once (the least recently used is forgotten).
pub(crate) const STREAMS: usize = 16;
const W_MAGIC: usize = 0;
const W_SUBSCRIBER: usize = 1;
const W_STREAMS: usize = 16;
const STREAM_WORDS: usize = 4;
const WORDS: usize = W_STREAMS + STREAMS * STREAM_WORDS;

/// An inbound bridge's counts, over every run that used its state file.
///
/// # Examples
///
/// ```
/// let s = numashm_bridge::InboundStats::default();
/// assert_eq!(s.delivered + s.lost + s.dropped, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Runs that opened the state file.
    pub runs: u64,
    /// Messages sent into the ring.
    pub delivered: u64,
    /// Publications received again (a replay after a restart) and skipped.
    pub duplicates: u64,
    /// Messages the outbound side could no longer publish again when this
    /// bridge asked (they left its replay window: only with back-pressure
    /// "drop", or an outbound bridge that was itself restarted).
    pub lost: u64,
    /// Messages dropped because the ring was full (back-pressure "drop").
    pub dropped: u64,
    /// Messages a killed run was sending at the instant it died: each was
    /// either delivered or lost, and the next run cannot tell which (it
    /// skips it: never twice).
    pub in_doubt: u64,
    /// Samples without a bridge stamp (a plain Zenoh publisher), delivered
    /// in arrival order.
    pub unstamped: u64,
}

const COUNTS: [usize; 7] = [2, 3, 4, 5, 6, 7, 8];

/// Where one followed stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamPos {
    pub(crate) stream: u64,
    /// Everything below was delivered (or counted lost, dropped or in doubt).
    pub(crate) next: u64,
}

/// The open state file.
#[derive(Debug)]
pub(crate) struct StateFile {
    region: Region,
    _lock: OwnedFd,
    base: usize,
    /// What the file holds (we are its only writer while we hold the lock):
    /// reads come from here, writes go to both.
    mirror: Vec<std::cell::Cell<u64>>,
}

impl StateFile {
    /// Opens (or makes) the state file at `path`, locks it for this run and
    /// settles what a killed run left: a send in flight becomes in doubt.
    pub(crate) fn open(path: &Path) -> Result<StateFile, BridgeError> {
        let err = |detail: String| BridgeError::State { path: path.display().to_string(), detail };
        let region = match Region::attach_file(path) {
            Ok(r) => r,
            Err(_) if !path.exists() => {
                let mut r = RegionOptions::new(numashm_region::HEADER_LEN + (WORDS * 8).next_multiple_of(4096))
                    .create_file(path)
                    .map_err(|e| err(e.to_string()))?;
                r.release_ownership(); // the file outlives this run
                r
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let lock = rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| err(format!("open for its lock: {e}")))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| err(format!("in use by another bridge ({e})")))?;
        let base = region.data_offset();
        if region.len() < base + WORDS * 8 {
            return Err(err(format!("{} bytes: too short", region.len())));
        }
        let read = |w: usize| {
            let mut b = [0u8; 8];
            // In bounds: checked just above.
            let _ = region.read_at(base + w * 8, &mut b);
            std::cell::Cell::new(u64::from_le_bytes(b))
        };
        let mirror = (0..WORDS).map(read).collect();
        let s = StateFile { region, _lock: lock, base, mirror };
        if s.word(W_MAGIC) != MAGIC {
            // New (or not ours to read): start clean with a fresh subscriber id.
            for w in 0..WORDS {
                s.set(w, 0);
            }
            s.set(W_SUBSCRIBER, stream_id().map_err(|e| err(e.to_string()))?);
            s.set(W_MAGIC, MAGIC);
        }
        s.bump(COUNTS[0], 1);
        for i in 0..STREAMS {
            let (next, pending) = (s.word(slot(i) + 1), s.word(slot(i) + 2));
            if pending != 0 {
                // Killed between "sending seq `next`" and "sent": in doubt, skipped.
                if next.checked_add(1) == Some(pending) {
                    s.set(slot(i) + 1, pending);
                    s.bump(COUNTS[5], 1);
                }
                s.set(slot(i) + 2, 0);
            }
        }
        Ok(s)
    }

    /// This bridge's id in acknowledgements (kept across runs).
    pub(crate) fn subscriber(&self) -> u64 {
        self.word(W_SUBSCRIBER)
    }

    /// The streams this file follows (for the resume requests of a new run).
    pub(crate) fn streams(&self) -> Vec<StreamPos> {
        (0..STREAMS)
            .map(|i| StreamPos { stream: self.word(slot(i)), next: self.word(slot(i) + 1) })
            .filter(|p| p.stream != 0)
            .collect()
    }

    /// The slot of `stream`, if followed.
    pub(crate) fn find(&self, stream: u64) -> Option<usize> {
        (0..STREAMS).find(|&i| self.word(slot(i)) == stream)
    }

    /// Follows a new stream from `next`, forgetting the least recently used
    /// one if all slots are taken. Returns its slot.
    pub(crate) fn follow(&self, stream: u64, next: u64, tick: u64) -> usize {
        let i = (0..STREAMS)
            .find(|&i| self.word(slot(i)) == 0)
            .unwrap_or_else(|| (0..STREAMS).min_by_key(|&i| self.word(slot(i) + 3)).unwrap_or(0));
        self.set(slot(i) + 1, next);
        self.set(slot(i) + 2, 0);
        self.set(slot(i) + 3, tick);
        self.set(slot(i), stream);
        i
    }

    pub(crate) fn next(&self, i: usize) -> u64 {
        self.word(slot(i) + 1)
    }

    pub(crate) fn set_next(&self, i: usize, next: u64) {
        self.set(slot(i) + 1, next);
    }

    /// Marks `seq` of slot `i` as being sent (the in-doubt marker).
    pub(crate) fn sending(&self, i: usize, seq: u64, tick: u64) {
        // The use tick orders forgetting within a run: kept here only.
        self.mirror[slot(i) + 3].set(tick);
        self.set(slot(i) + 2, seq.wrapping_add(1));
    }

    /// `seq` of slot `i` was sent (or dropped and counted): the stream moves on.
    pub(crate) fn sent(&self, i: usize, seq: u64) {
        self.set(slot(i) + 1, seq.wrapping_add(1));
        self.set(slot(i) + 2, 0);
    }

    /// `seq` of slot `i` was not sent after all (the run stopped first).
    pub(crate) fn abort(&self, i: usize) {
        self.set(slot(i) + 2, 0);
    }

    pub(crate) fn count_delivered(&self) {
        self.bump(COUNTS[1], 1);
    }
    pub(crate) fn count_duplicate(&self) {
        self.bump(COUNTS[2], 1);
    }
    pub(crate) fn count_lost(&self, n: u64) {
        self.bump(COUNTS[3], n);
    }
    pub(crate) fn count_dropped(&self) {
        self.bump(COUNTS[4], 1);
    }
    pub(crate) fn count_unstamped(&self) {
        self.bump(COUNTS[6], 1);
    }

    pub(crate) fn stats(&self) -> InboundStats {
        stats_of(|w| self.word(w))
    }

    fn word(&self, w: usize) -> u64 {
        self.mirror[w].get()
    }

    fn set(&self, w: usize, v: u64) {
        self.mirror[w].set(v);
        // In bounds: `open` checked the file holds WORDS words.
        let _ = self.region.write_at(self.base + w * 8, &v.to_le_bytes());
    }

    fn bump(&self, w: usize, n: u64) {
        self.set(w, self.word(w).wrapping_add(n));
    }
}

fn slot(i: usize) -> usize {
    W_STREAMS + i * STREAM_WORDS
}

fn stats_of(word: impl Fn(usize) -> u64) -> InboundStats {
    InboundStats {
        runs: word(COUNTS[0]),
        delivered: word(COUNTS[1]),
        duplicates: word(COUNTS[2]),
        lost: word(COUNTS[3]),
        dropped: word(COUNTS[4]),
        in_doubt: word(COUNTS[5]),
        unstamped: word(COUNTS[6]),
    }
}

/// Reads the counts of an inbound bridge's state file (while it runs or after).
///
/// # Errors
///
/// [`BridgeError::State`] when the file cannot be mapped or is not a state file.
///
/// # Examples
///
/// ```
/// let p = std::env::temp_dir().join(format!("numashm-doc-state-{}", std::process::id()));
/// assert!(numashm_bridge::read_stats(&p).is_err(), "no file yet");
/// ```
pub fn read_stats(path: impl AsRef<Path>) -> Result<InboundStats, BridgeError> {
    let path = path.as_ref();
    let err = |detail: String| BridgeError::State { path: path.display().to_string(), detail };
    let region = Region::attach_file_with(path, numashm_region::AttachOptions { read_only: true }).map_err(|e| err(e.to_string()))?;
    let base = region.data_offset();
    let word = |w: usize| {
        let mut b = [0u8; 8];
        region.read_at(base + w * 8, &mut b).map(|()| u64::from_le_bytes(b))
    };
    if word(W_MAGIC).map_err(|e| err(e.to_string()))? != MAGIC {
        return Err(err("not an inbound bridge state file".into()));
    }
    Ok(stats_of(|w| word(w).unwrap_or(0)))
}

/// A random id (never 0): an outbound run's stream, an inbound bridge's subscriber.
pub(crate) fn stream_id() -> Result<u64, numashm::RegionError> {
    numashm_region::process::random_nonzero()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("numashm-bridge-state-{tag}-{}", std::process::id()))
    }

    #[test]
    fn a_state_file_outlives_its_run_and_a_send_in_flight_becomes_in_doubt() {
        let p = path("doubt");
        let _ = std::fs::remove_file(&p);
        {
            let s = StateFile::open(&p).unwrap();
            let i = s.follow(42, 0, 1);
            for seq in 0..5 {
                s.sending(i, seq, 2);
                s.sent(i, seq);
                s.count_delivered();
            }
            s.sending(i, 5, 3); // killed here: the file keeps the marker
            let again = StateFile::open(&p);
            assert!(matches!(again, Err(BridgeError::State { .. })), "one bridge at a time per state file");
        }
        let s = StateFile::open(&p).unwrap();
        let i = s.find(42).unwrap();
        assert_eq!(s.next(i), 6, "the in-doubt message is skipped, never sent twice");
        let st = s.stats();
        assert_eq!((st.runs, st.delivered, st.in_doubt), (2, 5, 1));
        assert_eq!(read_stats(&p).unwrap(), st);
        let id = s.subscriber();
        drop(s);
        assert_eq!(StateFile::open(&p).unwrap().subscriber(), id, "the subscriber id is kept");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn garbage_in_a_state_file_is_never_trusted() {
        let p = path("garbage");
        let _ = std::fs::remove_file(&p);
        {
            let s = StateFile::open(&p).unwrap();
            let i = s.follow(7, 10, 1);
            s.set(slot(i) + 2, 999); // a pending word that is not next + 1
        }
        let s = StateFile::open(&p).unwrap();
        let i = s.find(7).unwrap();
        assert_eq!((s.next(i), s.stats().in_doubt), (10, 0));
        s.set(W_MAGIC, 1);
        drop(s);
        let s = StateFile::open(&p).unwrap();
        assert_eq!(s.streams(), vec![], "a file with another magic starts clean");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn the_least_recently_used_stream_is_forgotten_when_all_slots_are_taken() {
        let p = path("lru");
        let _ = std::fs::remove_file(&p);
        let s = StateFile::open(&p).unwrap();
        for k in 0..STREAMS as u64 {
            s.follow(100 + k, 0, 10 + k);
        }
        s.follow(999, 0, 100);
        assert_eq!(s.find(100), None, "the oldest went");
        assert!(s.find(101).is_some() && s.find(999).is_some());
        std::fs::remove_file(&p).unwrap();
    }
}
