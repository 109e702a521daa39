//! Process identity that survives pid reuse: a pid plus its start time, read
//! while a pidfd pins the process and re-checked afterwards. The one place in
//! the workspace that asks the kernel whether a peer process still runs.
//!
//! A pid read from shared memory is only a hint of *which* process to ask
//! about; [`liveness`] answers [`Liveness::Unknown`] (never `Dead`) when the
//! kernel could not tell (EMFILE, EPERM, another pid namespace, no `/proc`),
//! and callers treat that as alive: reclaiming a live peer's memory is worse
//! than waiting.

use std::os::fd::OwnedFd;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// Largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_region::process::PID_MAX, 1 << 22);
/// ```
pub const PID_MAX: u32 = 1 << 22;

/// A live process, pinned by a pidfd while this value lives.
///
/// # Examples
///
/// ```
/// let me = numashm_region::process::identify(std::process::id())?;
/// assert!(me.start_time > 0);
/// # Ok::<(), numashm_region::process::IdentifyError>(())
/// ```
#[derive(Debug)]
pub struct Identity {
    /// The pid.
    pub pid: u32,
    /// Clock ticks since boot at which the process started (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// Holds the pid so it cannot be reused while the identity is in use.
    pub pidfd: OwnedFd,
}

/// Why a process could not be identified.
///
/// # Examples
///
/// ```
/// use numashm_region::process::{identify, IdentifyError};
/// assert_eq!(identify(0).unwrap_err(), IdentifyError::Invalid);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// No such process, or it has exited (a zombie counts as gone).
    #[error("no such process")]
    Gone,
    /// Not a valid pid.
    #[error("not a pid")]
    Invalid,
    /// A syscall failed otherwise: the kernel did not say.
    #[error("{0}: {1}")]
    Sys(&'static str, Errno),
}

/// What the kernel says of a (pid, start time) pair.
///
/// # Examples
///
/// ```
/// use numashm_region::process::{liveness, Liveness};
/// assert_eq!(liveness(u64::from(std::process::id()), 0), Liveness::Alive);
/// assert!(liveness(0, 0).is_dead());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The process runs and started when the hint says (or no start time was given).
    Alive,
    /// It exited, the pid is not a pid, or the pid now names another process.
    Dead,
    /// The kernel could not tell; treat as alive.
    Unknown,
}

impl Liveness {
    /// Whether the process is dead for sure (the only answer that allows recovery).
    ///
    /// # Examples
    ///
    /// See [`Liveness`].
    pub fn is_dead(self) -> bool {
        self == Liveness::Dead
    }
}

/// The calling process's pid.
///
/// # Examples
///
/// ```
/// assert_eq!(numashm_region::process::self_pid(), std::process::id());
/// ```
pub fn self_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Opens a pidfd for `pid`, reads its start time, then checks the pidfd is not
/// readable (= the process has not exited): the start time read in between then
/// belongs to the process the pidfd names, not to a successor that reused the pid.
///
/// # Errors
///
/// [`IdentifyError::Gone`], [`IdentifyError::Invalid`], or
/// [`IdentifyError::Sys`] when the kernel could not answer.
///
/// # Examples
///
/// See [`Identity`].
pub fn identify(pid: u32) -> Result<Identity, IdentifyError> {
    if pid == 0 || pid > PID_MAX {
        return Err(IdentifyError::Invalid);
    }
    let raw = Pid::from_raw(pid as i32).ok_or(IdentifyError::Invalid)?;
    let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Err(IdentifyError::Gone),
        Err(Errno::INVAL) => return Err(IdentifyError::Invalid),
        Err(e) => return Err(IdentifyError::Sys("pidfd_open", e)),
    };
    let start_time = read_start_time(pid)?;
    if exited(&pidfd)? {
        return Err(IdentifyError::Gone);
    }
    Ok(Identity { pid, start_time, pidfd })
}

/// Whether `pid` is alive and still the process that started at `start_time`.
///
/// # Examples
///
/// ```
/// let me = numashm_region::process::identify(std::process::id())?;
/// assert!(numashm_region::process::is_same_live_process(me.pid, me.start_time));
/// # Ok::<(), numashm_region::process::IdentifyError>(())
/// ```
pub fn is_same_live_process(pid: u32, start_time: u64) -> bool {
    matches!(identify(pid), Ok(id) if id.start_time == start_time)
}

/// Whether process `pid` that started at `started` (0: not known) still runs.
/// `pid` may come from shared memory: any value is handled.
///
/// # Examples
///
/// See [`Liveness`].
pub fn liveness(pid: u64, started: u64) -> Liveness {
    let Ok(pid) = u32::try_from(pid) else { return Liveness::Dead };
    match identify(pid) {
        Ok(id) if started == 0 || id.start_time == started => Liveness::Alive,
        Ok(_) => Liveness::Dead,
        Err(IdentifyError::Gone | IdentifyError::Invalid) => Liveness::Dead,
        Err(IdentifyError::Sys(..)) => Liveness::Unknown,
    }
}

/// A random non-zero 64-bit value from the kernel (`getrandom(2)`): pool ids,
/// stream ids, capability tokens. Bounded: a few retries (EINTR, or EAGAIN
/// before the entropy pool is ready at boot), then the errno.
///
/// # Errors
///
/// [`RegionError::Syscall`](crate::RegionError::Syscall) (`getrandom`) when the
/// kernel gives no random bytes.
///
/// # Examples
///
/// ```
/// let (a, b) = (numashm_region::process::random_nonzero()?, numashm_region::process::random_nonzero()?);
/// assert!(a != 0 && a != b);
/// # Ok::<(), numashm_region::RegionError>(())
/// ```
#[doc(alias = "getrandom")]
pub fn random_nonzero() -> Result<u64, crate::RegionError> {
    let mut last = Errno::AGAIN;
    for _ in 0..16 {
        let mut b = [0u8; 8];
        match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
            Ok(8) if u64::from_le_bytes(b) != 0 => return Ok(u64::from_le_bytes(b)),
            Ok(_) => {}
            Err(e) => last = e,
        }
    }
    Err(crate::RegionError::sys("getrandom", last))
}

/// Whether process `pid` has a **writable shared mapping** of the object
/// behind `fd` (same device and inode), by the kernel's `/proc/PID/maps`.
/// For a sealed pool only its owner (or a fork child of it) can: this is how a
/// reader tells the pool's writer from any process that merely holds an fd of
/// it (an fd can be opened read-only by anyone who may read `/proc/PID/fd`).
///
/// # Errors
///
/// [`IdentifyError::Gone`] when `/proc/PID/maps` does not exist,
/// [`IdentifyError::Sys`] when it or `fd` cannot be read.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-maps")?;
/// assert!(numashm_region::process::maps_writable(std::process::id(), r.as_fd())?);
/// assert!(!numashm_region::process::maps_writable(1, r.as_fd()).unwrap_or(false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn maps_writable(pid: u32, fd: std::os::fd::BorrowedFd<'_>) -> Result<bool, IdentifyError> {
    if pid == 0 || pid > PID_MAX {
        return Err(IdentifyError::Invalid);
    }
    let st = rustix::fs::fstat(fd).map_err(|e| IdentifyError::Sys("fstat", e))?;
    let dev = format!("{:02x}:{:02x}", rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IdentifyError::Gone),
        Err(e) => return Err(IdentifyError::Sys("read /proc/PID/maps", Errno::from_io_error(&e).unwrap_or(Errno::IO))),
    };
    Ok(maps.lines().any(|line| writable_shared_mapping_of(line, &dev, st.st_ino)))
}

/// A `/proc/PID/maps` line `addr perms offset dev inode [path]` of a writable
/// shared mapping (`rw?s`) of `dev`/`ino`.
fn writable_shared_mapping_of(line: &str, dev: &str, ino: u64) -> bool {
    let mut f = line.split_ascii_whitespace();
    let (Some(_), Some(perms), Some(_), Some(d), Some(i)) = (f.next(), f.next(), f.next(), f.next(), f.next()) else {
        return false;
    };
    let p = perms.as_bytes();
    p.len() == 4 && p[1] == b'w' && p[3] == b's' && d == dev && i.parse::<u64>() == Ok(ino)
}

/// Start time of a live process (`/proc/PID/stat` field 22), `None` if it cannot be read.
///
/// # Examples
///
/// ```
/// assert!(numashm_region::process::start_time(std::process::id()).is_some());
/// ```
pub fn start_time(pid: u32) -> Option<u64> {
    read_start_time(pid).ok()
}

fn exited(pidfd: &OwnedFd) -> Result<bool, IdentifyError> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let ready = poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 }))
        .map_err(|e| IdentifyError::Sys("poll(pidfd)", e))?;
    Ok(ready > 0)
}

fn read_start_time(pid: u32) -> Result<u64, IdentifyError> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IdentifyError::Gone),
        Err(e) => {
            return Err(IdentifyError::Sys("read /proc/PID/stat", Errno::from_io_error(&e).unwrap_or(Errno::IO)))
        }
    };
    parse_start_time(&stat).ok_or(IdentifyError::Sys("parse /proc/PID/stat", Errno::INVAL))
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may hold spaces and
/// parentheses, so counting starts after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_counts_only_as_a_writable_shared_mapping_of_that_object() {
        let line = |perms: &str, dev: &str, ino: &str| format!("7f00-7f10 {perms} 00000000 {dev} {ino}   /memfd:pool (deleted)");
        assert!(writable_shared_mapping_of(&line("rw-s", "00:01", "4242"), "00:01", 4242));
        assert!(!writable_shared_mapping_of(&line("r--s", "00:01", "4242"), "00:01", 4242), "read-only");
        assert!(!writable_shared_mapping_of(&line("rw-p", "00:01", "4242"), "00:01", 4242), "private");
        assert!(!writable_shared_mapping_of(&line("rw-s", "00:02", "4242"), "00:01", 4242), "another device");
        assert!(!writable_shared_mapping_of(&line("rw-s", "00:01", "4243"), "00:01", 4242), "another inode");
        assert!(!writable_shared_mapping_of("garbage", "00:01", 4242));
    }

    #[test]
    fn start_time_skips_a_command_with_parentheses() {
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19";
        assert_eq!(parse_start_time(stat), Some(777));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn self_is_identified_and_bad_pids_are_invalid() {
        let me = identify(self_pid()).unwrap();
        assert!(me.start_time > 0);
        assert!(is_same_live_process(me.pid, me.start_time));
        assert!(!is_same_live_process(me.pid, me.start_time + 1));
        assert_eq!(identify(0).unwrap_err(), IdentifyError::Invalid);
        assert_eq!(identify(PID_MAX + 1).unwrap_err(), IdentifyError::Invalid);
    }

    #[test]
    fn liveness_of_self_garbage_and_a_reused_start_time() {
        let pid = u64::from(self_pid());
        let started = start_time(self_pid()).unwrap();
        assert_eq!(liveness(pid, started), Liveness::Alive);
        assert_eq!(liveness(pid, 0), Liveness::Alive);
        assert_eq!(liveness(pid, started + 1), Liveness::Dead);
        for garbage in [0, u64::MAX, u64::from(PID_MAX) + 1, u64::from(u32::MAX)] {
            assert_eq!(liveness(garbage, 0), Liveness::Dead, "pid {garbage}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn an_exited_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = u64::from(child.id());
        child.wait().expect("wait");
        assert_eq!(liveness(pid, 0), Liveness::Dead);
    }
}
