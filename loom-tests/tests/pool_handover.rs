//! Loom model of handing a pool to a successor (`numashm::pool`,
//! `pool/handover.rs`, layout 5), run with:
//!
//! ```text
//! RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p numashm-loom-tests --release --target-dir target/loom --test pool_handover
//! ```
//!
//! A model, as the other pool models are: numashm's words live in
//! kernel-mapped memory, so each step here mirrors a step of the real code
//! with the same words and orderings; loom threads are processes. The kernel's
//! answer about a process (`liveness`: pidfd, start time) is a per-process
//! flag, stored SeqCst when the process exits and read SeqCst by a question
//! (kernel entry and exit, and the kernel's own locks, order them with
//! everything the process did before exiting). The socket pair of the
//! hand-over is an atomic flag (Release send, Acquire receive).
//!
//! What must hold: a reader asking "is this pool's owner dead?"
//! (`RemotePool::owner_liveness`) never hears yes while the predecessor or the
//! successor lives, whenever it asks during the hand-over. Switches (each was
//! set to `true` once and the model then failed; all `false` here):
//! - `BREAK_TWO_WORDS`: the owner read as two words (pid, start time) written
//!   one after the other: the reader can see the successor's pid with the
//!   predecessor's start time, a process that does not exist;
//! - `BREAK_NO_RECHECK`: a "dead" verdict not checked against the word read
//!   again: the reader read the predecessor's identity, the predecessor handed
//!   over and exited, and the reader's question then says dead.
#![cfg(numashm_loom)]

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const BREAK_TWO_WORDS: bool = false;
const BREAK_NO_RECHECK: bool = false;

/// Identities: (pid, start time) of the two processes.
const PRED: (u64, u64) = (100, 7);
const SUCC: (u64, u64) = (101, 9);

fn owner_word(id: (u64, u64)) -> u64 {
    id.0 | id.1 << 22
}

fn owner_of(w: u64) -> (u64, u64) {
    (w & ((1 << 22) - 1), w >> 22)
}

struct Pool {
    /// Header word 15 (`P_OWNER`).
    owner: AtomicU64,
    /// Header words 3 and 4 (`P_PID`, `P_STARTED`), for `BREAK_TWO_WORDS`.
    pid: AtomicU64,
    started: AtomicU64,
    /// The socket's "done" (successor to predecessor).
    done: AtomicBool,
    /// The kernel's word on each process: exited or not.
    pred_exited: AtomicBool,
}

impl Pool {
    fn new() -> Self {
        Pool {
            owner: AtomicU64::new(owner_word(PRED)),
            pid: AtomicU64::new(PRED.0),
            started: AtomicU64::new(PRED.1),
            done: AtomicBool::new(false),
            pred_exited: AtomicBool::new(false),
        }
    }

    /// `liveness(pid, started)`: alive only for a process that exists with
    /// that start time (the successor never exits in this model).
    fn alive(&self, id: (u64, u64)) -> bool {
        if id == PRED {
            !self.pred_exited.load(Ordering::SeqCst)
        } else {
            id == SUCC
        }
    }

    fn read(&self) -> (u64, u64) {
        if BREAK_TWO_WORDS {
            // Relaxed: as the real header reads were.
            (self.pid.load(Ordering::Relaxed), self.started.load(Ordering::Relaxed))
        } else {
            // Relaxed: `owner_liveness`'s load (a hint the kernel confirms).
            owner_of(self.owner.load(Ordering::Relaxed))
        }
    }

    /// `RemotePool::owner_liveness`: true = "dead".
    fn owner_dead(&self) -> bool {
        let mut id = self.read();
        for _ in 0..4 {
            if self.alive(id) {
                return false;
            }
            if BREAK_NO_RECHECK {
                return true;
            }
            let now = self.read();
            if now == id {
                return true;
            }
            id = now;
        }
        false
    }
}

#[test]
fn a_reader_never_hears_the_owner_is_dead_during_a_hand_over() {
    loom::model(|| {
        let pool = Arc::new(Pool::new());
        // The successor (`become_successor`, step 3): its identity into the
        // header (`OwnPool::set_owner`: words 3, 4, then 15), then "done".
        let succ = {
            let pool = pool.clone();
            thread::spawn(move || {
                pool.pid.store(SUCC.0, Ordering::Relaxed);
                pool.started.store(SUCC.1, Ordering::Relaxed);
                pool.owner.store(owner_word(SUCC), Ordering::Relaxed);
                pool.done.store(true, Ordering::Release); // send(DONE)
            })
        };
        // The predecessor (`let_go`, step 4): waits for "done", then exits.
        let pred = {
            let pool = pool.clone();
            thread::spawn(move || {
                while !pool.done.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                pool.pred_exited.store(true, Ordering::SeqCst); // exit(2)
            })
        };
        // A reader (a consumer's rescan, a producer's bind) asks whenever.
        assert!(!pool.owner_dead(), "a reader heard the owner is dead during a hand-over");
        succ.join().unwrap();
        pred.join().unwrap();
        assert!(!pool.owner_dead(), "after the hand-over the successor owns the pool");
    });
}
