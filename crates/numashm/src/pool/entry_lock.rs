//! Liveness the kernel holds: a peer owns its rendezvous entry by an OFD lock
//! on that entry's byte, taken through an open file description of its own.
//!
//! The kernel releases the lock when the last descriptor of that description
//! closes, i.e. when the process exits however it exits, and no other process
//! can take or drop it: a lock held says "someone holds this entry", a lock
//! free says "nobody does". A hostile process can at most hold a lock on an
//! entry it does not use (a squatter: the entry looks taken); it can never
//! make a live peer's entry look free. The entry's pid, start time and state
//! words stay hints.
//!
//! Both descriptions are opened anew through `/proc/self/fd/N`, never shared
//! by fd passing (a description inherited from the creator would be the
//! creator's lock owner too): `hold` keeps our lock, `probe` asks about any
//! entry's (a probe through `hold` would not see our own lock as held).
//! The locked bytes lie far beyond the file's end (locks need no data there).
//!
//! rustix wraps only whole-file OFD locks (`fcntl_lock`), hence libc's `fcntl`
//! with a `struct flock` for one byte.
#![allow(unsafe_code)] // fcntl(F_OFD_SETLK / F_OFD_GETLK) on our own descriptors (SAFETY below)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::pool::liveness::Liveness;

/// Byte offset of entry 0's lock byte: beyond any rendezvous (which is a few
/// hundred KiB at most).
const LOCK_BASE: i64 = 1 << 40;

/// Our two open file descriptions of the rendezvous.
#[derive(Debug)]
pub(crate) struct EntryLocks {
    /// `None` where the file cannot be opened for writing (an inspector):
    /// such a process probes only.
    hold: Option<File>,
    probe: File,
}

impl EntryLocks {
    /// Opens two descriptions of the file behind `fd` (ours alone).
    pub(crate) fn open(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let probe = OpenOptions::new().read(true).open(&path)?;
        let hold = OpenOptions::new().read(true).write(true).open(&path).ok();
        Ok(EntryLocks { hold, probe })
    }

    /// Takes entry `i`'s lock: `Ok(true)` when it is ours now (nobody held
    /// it, or we did already), `Ok(false)` when another description holds it.
    pub(crate) fn try_take(&self, i: u32) -> io::Result<bool> {
        let hold = self
            .hold
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::PermissionDenied))?;
        match fcntl_lock(hold, libc::F_OFD_SETLK, libc::F_WRLCK, i) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lets entry `i`'s lock go (ours only: the kernel ignores others').
    pub(crate) fn release(&self, i: u32) {
        // A failure leaves the lock until we exit: the entry then looks taken
        // a little longer, which only costs the table one entry meanwhile.
        if let Some(hold) = &self.hold {
            let _ = fcntl_lock(hold, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_int, i);
        }
    }

    /// Whether some description (ours included) holds entry `i`'s lock:
    /// `Alive` if so, `Dead` if nobody does, `Unknown` if the kernel would not say.
    pub(crate) fn holder(&self, i: u32) -> Liveness {
        match fcntl_lock(&self.probe, libc::F_OFD_GETLK, libc::F_WRLCK, i) {
            Ok(t) if t == libc::F_UNLCK as libc::c_int => Liveness::Dead,
            Ok(_) => Liveness::Alive,
            Err(_) => Liveness::Unknown,
        }
    }
}

/// One `fcntl` OFD lock command on entry `i`'s byte; returns the `l_type`
/// the kernel left in the `struct flock` (what GETLK found).
fn fcntl_lock(file: &File, cmd: libc::c_int, kind: libc::c_int, i: u32) -> io::Result<libc::c_int> {
    // SAFETY: an all-zero `struct flock` is a valid value (plain integers).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LOCK_BASE + i64::from(i);
    fl.l_len = 1;
    fl.l_pid = 0; // OFD locks require 0
                  // SAFETY: `file` is an open descriptor we own for the call's duration,
                  // `fl` a valid `struct flock` that outlives it; OFD lock commands read and
                  // (GETLK) write only that struct.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(libc::c_int::from(fl.l_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn memfd() -> numashm_region::SharedObject {
        numashm_region::SharedObject::with_len("entry-lock-test", 4096).unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fcntl and /proc
    fn a_lock_is_exclusive_per_description_and_seen_by_a_probe() {
        let f = memfd();
        let (a, b) = (
            EntryLocks::open(f.as_fd()).unwrap(),
            EntryLocks::open(f.as_fd()).unwrap(),
        );
        assert_eq!(a.holder(3), Liveness::Dead);
        assert!(a.try_take(3).unwrap());
        assert!(a.try_take(3).unwrap(), "taking our own lock again is fine");
        assert!(
            !b.try_take(3).unwrap(),
            "another description cannot take it"
        );
        assert_eq!(b.holder(3), Liveness::Alive);
        assert_eq!(a.holder(3), Liveness::Alive, "our own probe sees our hold");
        assert_eq!(b.holder(4), Liveness::Dead, "one byte per entry");
        b.release(3); // not b's: no effect
        assert_eq!(b.holder(3), Liveness::Alive);
        a.release(3);
        assert_eq!(b.holder(3), Liveness::Dead);
        assert!(b.try_take(3).unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn closing_the_description_frees_the_entry() {
        let f = memfd();
        let probe = EntryLocks::open(f.as_fd()).unwrap();
        let a = EntryLocks::open(f.as_fd()).unwrap();
        assert!(a.try_take(7).unwrap());
        assert_eq!(probe.holder(7), Liveness::Alive);
        drop(a); // what the kernel does for a process that exits
        assert_eq!(probe.holder(7), Liveness::Dead);
    }
}
