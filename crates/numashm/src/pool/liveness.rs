//! Is a peer's process alive? Asked of the kernel (pidfd), never of shared
//! memory: the pid and start time read from the rendezvous are only hints of
//! *which* process to ask about.
//!
//! A failed look-up that does not prove death (EMFILE, EPERM, another pid
//! namespace, `/proc` missing) is [`Liveness::Unknown`], which every caller
//! treats as alive: reclaiming a live peer's memory is worse than waiting.

use std::os::fd::AsFd;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

/// What the kernel says of a (pid, start time) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The process runs and started when the hint says (or no start time was given).
    Alive,
    /// It exited, or the pid now names another process (reused).
    Dead,
    /// The kernel could not tell; treated as alive.
    Unknown,
}

impl Liveness {
    /// Whether the peer may be dead for sure (the only answer that allows recovery).
    pub fn is_dead(self) -> bool {
        self == Liveness::Dead
    }
}

/// Largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX: u64 = 1 << 22;

/// Start time of a process: field 22 of `/proc/PID/stat`, clock ticks since boot.
/// The one parser of that file in this crate's pool layer.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` that started at `started` (0: unknown) still runs.
/// `pid` comes from shared memory: any value is handled.
pub(crate) fn liveness(pid: u64, started: u64) -> Liveness {
    if pid == 0 || pid > PID_MAX {
        // Not a pid at all: no live process can be meant.
        return Liveness::Dead;
    }
    let Some(p) = Pid::from_raw(pid as i32) else { return Liveness::Dead };
    let fd = match pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Liveness::Dead,
        Err(_) => return Liveness::Unknown,
    };
    // A pidfd polls readable once the process has exited (even unreaped).
    let borrowed = fd.as_fd();
    let mut fds = [PollFd::new(&borrowed, PollFlags::IN)];
    match poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(n) if n > 0 => return Liveness::Dead,
        Ok(_) => {}
        Err(_) => return Liveness::Unknown,
    }
    if started == 0 {
        return Liveness::Alive;
    }
    // Read while the pidfd pins the pid: a different start time is another process.
    match start_time(pid as u32) {
        Some(s) if s == started => Liveness::Alive,
        Some(_) => Liveness::Dead,
        None => Liveness::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_dead() {
        let pid = u64::from(std::process::id());
        let started = start_time(std::process::id()).expect("own /proc/self/stat");
        assert_eq!(liveness(pid, started), Liveness::Alive);
        assert_eq!(liveness(pid, 0), Liveness::Alive);
        assert_eq!(liveness(pid, started + 1), Liveness::Dead);
    }

    #[test]
    fn garbage_pids_are_dead_not_a_panic() {
        for pid in [0, u64::MAX, PID_MAX + 1, u64::from(u32::MAX)] {
            assert_eq!(liveness(pid, 0), Liveness::Dead, "pid {pid}");
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
