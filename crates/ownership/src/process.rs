//! Process identity that survives pid reuse: a pid plus its start time, read
//! while a pidfd pins the process and re-checked for liveness afterwards.

use std::os::fd::OwnedFd;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// Largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
pub(crate) const PID_MAX: u32 = 1 << 22;

/// A live process, pinned by a pidfd.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    /// Clock ticks since boot at which the process started (`/proc/PID/stat` field 22).
    pub(crate) start_time: u64,
    #[allow(dead_code)] // Held so the identity stays pinned while it is used.
    pub(crate) pidfd: OwnedFd,
}

/// Why a process could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentifyError {
    /// No such process, or it has exited (a zombie counts as gone).
    Gone,
    /// Not a valid pid.
    Invalid,
    /// A syscall failed otherwise.
    Sys(&'static str, Errno),
}

/// The calling process's pid.
pub(crate) fn self_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Opens a pidfd for `pid`, reads its start time, then checks the pidfd is not
/// readable (= the process has not exited): the start time read in between then
/// belongs to the process the pidfd names, not to a successor that reused the pid.
pub(crate) fn identify(pid: u32) -> Result<Identity, IdentifyError> {
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
    let start_time = start_time(pid)?;
    if exited(&pidfd)? {
        return Err(IdentifyError::Gone);
    }
    Ok(Identity { pid, start_time, pidfd })
}

/// Whether `pid` is alive and still the process that started at `start_time`.
pub(crate) fn is_same_live_process(pid: u32, start_time: u64) -> bool {
    matches!(identify(pid), Ok(id) if id.start_time == start_time)
}

fn exited(pidfd: &OwnedFd) -> Result<bool, IdentifyError> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let ready = poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 }))
        .map_err(|e| IdentifyError::Sys("poll(pidfd)", e))?;
    Ok(ready > 0)
}

fn start_time(pid: u32) -> Result<u64, IdentifyError> {
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
    fn start_time_skips_a_command_with_parentheses() {
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19";
        assert_eq!(parse_start_time(stat), Some(777));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn self_is_identified_and_pid_zero_is_invalid() {
        let me = identify(self_pid()).unwrap();
        assert!(me.start_time > 0);
        assert!(is_same_live_process(me.pid, me.start_time));
        assert!(!is_same_live_process(me.pid, me.start_time + 1));
        assert_eq!(identify(0).unwrap_err(), IdentifyError::Invalid);
        assert_eq!(identify(PID_MAX + 1).unwrap_err(), IdentifyError::Invalid);
    }
}
