//! Wake pipes: how a peer waiting in an async runtime is woken through an fd
//! while every shared word keeps one writer.
//!
//! A peer that waits asynchronously (receive or send) makes one **wake pipe**
//! (an anonymous pipe, both ends kept open, non-blocking) and publishes it in
//! its own pool header: word `P_WAKE_FD` = read end's fd number + 1 (0: none),
//! word `P_WAKE_INODE` = the pipe's inode (stored first; the fd word is the
//! Release). Its async ends wait until the pipe is readable, after storing the
//! ring doorbell's parked word (`SplitConsumer::arm`): the same Dekker pair as
//! the futex wait, so no wake-up is lost (ring.md; loom `split.rs`).
//!
//! The notifier (a producer whose `notify` found the consumer parked, a
//! consumer whose `notify_space` found the producer waiting, a producer that
//! just bound a consumer) opens that pipe once, the way pools are opened:
//! `/proc/PID/fd/N` with `O_PATH` (no side effect on any object), checked to
//! be a FIFO of pipefs (link target `pipe:[inode]`) with the advertised inode,
//! then reopened `O_RDWR | O_NONBLOCK` through our own `/proc/self/fd` (read
//! and write access: a write can never raise `SIGPIPE` or block, and opening
//! never waits for a reader). It writes one byte per wake; a full pipe
//! (`EAGAIN`) is already readable.
//!
//! Why a pipe and not an eventfd: an eventfd is an anonymous inode, and the
//! kernel refuses to reopen one through `/proc/PID/fd` (`ENXIO`), while
//! `SCM_RIGHTS` needs a socket between the peers and `pidfd_getfd` needs
//! ptrace rights over the waiter. A pipe reopens like the pool memfd does,
//! with the same permission.
//!
//! What a hostile peer can do: advertise an fd that is not its wake pipe (we
//! refuse anything but a pipe with the advertised inode, a typed error, and
//! never retry the same words), write into a pipe we gave it (a spare wake-up
//! of ours), or never signal (our waits are bounded slices, `MAX_PARK`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::pool::own::{POOL_HEADER_OFF, POOL_HEADER_WORDS};
use crate::pool::remote::RemotePool;
use crate::loom::sync::atomic::Ordering;
use crate::words::Words;

/// Pool header word: our wake pipe's read end fd number + 1 (0: none).
pub(crate) const P_WAKE_FD: usize = 10;
/// Pool header word: our wake pipe's inode number.
pub(crate) const P_WAKE_INODE: usize = 11;

/// Why a peer's wake pipe could not be opened (it is then not signalled:
/// the waiter's bounded slice still finds the message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WakeOpenError {
    /// The fd word is not an fd number + 1.
    #[error("wake pipe fd word {0:#x} is not an fd number")]
    FdWord(u64),
    /// `/proc/PID/fd/N` could not be opened (gone, or not ours to open).
    #[error("open {path}: {errno}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        errno: Errno,
    },
    /// It is not an anonymous pipe.
    #[error("{path} is not a pipe ({what})")]
    NotPipe {
        /// The path.
        path: String,
        /// What it is.
        what: String,
    },
    /// A pipe, but not the one advertised.
    #[error("wake pipe inode {found}, advertised {advertised}")]
    Inode {
        /// The inode word.
        advertised: u64,
        /// The pipe's.
        found: u64,
    },
}

/// Our own wake pipe (made on first async wait, kept for the peer's life so
/// that its published fd number never names another file while we live).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async ends
#[derive(Debug)]
pub(crate) struct WakePipe {
    pub(crate) read: OwnedFd,
    _write: OwnedFd,
    pub(crate) inode: u64,
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async ends
impl WakePipe {
    /// A non-blocking, close-on-exec pipe; both ends stay open (a reader never
    /// sees end-of-file, so a readable pipe always has a byte).
    pub(crate) fn new() -> std::io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )?;
        let inode = rustix::fs::fstat(&read)?.st_ino;
        Ok(WakePipe {
            read,
            _write: write,
            inode,
        })
    }

    /// Publishes it in our pool header (inode first, then the fd word: Release).
    pub(crate) fn publish(&self, header: &Words) {
        // Relaxed: published by the Release store of the fd word (SYNC wake-publish).
        header.at(P_WAKE_INODE).store(self.inode, Ordering::Relaxed);
        // Release: SYNC wake-publish, the inode before the fd number.
        header
            .at(P_WAKE_FD)
            .store(self.read.as_raw_fd() as u64 + 1, Ordering::Release);
    }
}

/// Reads every byte waiting in a non-blocking pipe; `Ok(true)` once it is
/// empty (`EAGAIN`), `Ok(false)` at end-of-file (impossible while we hold a
/// write end).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // made by the async ends
pub(crate) fn drain(fd: BorrowedFd<'_>) -> std::io::Result<bool> {
    let mut buf = [0u8; 64];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(Errno::AGAIN) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A peer's wake pipe as its notifier sees it: not advertised yet, open, or
/// refused (for these words: other words are tried again).
#[derive(Debug, Default)]
pub(crate) enum PeerWake {
    /// Nothing advertised (or not looked yet).
    #[default]
    Unknown,
    /// Opened and checked.
    Open(OwnedFd),
    /// These `(fd word, inode)` were refused.
    Refused(u64, u64),
}

impl PeerWake {
    /// Wakes `remote`'s async waiter: opens its wake pipe on first use (if it
    /// advertises one), writes one byte. Only on wake paths (after a doorbell
    /// said the peer is parked) and at bind: never on the busy path.
    pub(crate) fn signal(&mut self, remote: &RemotePool) {
        if !matches!(self, PeerWake::Open(_)) {
            self.look(remote);
        }
        if let PeerWake::Open(fd) = self {
            // EAGAIN: full, hence readable already; EINTR: the byte is spare anyway.
            let _ = rustix::io::write(&*fd, &[1u8]);
        }
    }

    /// Reads the peer's advertisement and opens it when it is new.
    fn look(&mut self, remote: &RemotePool) {
        let Some(header) = Words::new(remote.region.clone(), POOL_HEADER_OFF, POOL_HEADER_WORDS)
        else {
            return;
        };
        // Acquire: SYNC wake-publish (the inode before the fd word).
        let fd_word = header.at(P_WAKE_FD).load(Ordering::Acquire);
        let inode = header.at(P_WAKE_INODE).load(Ordering::Relaxed);
        if fd_word == 0 || matches!(self, PeerWake::Refused(f, i) if *f == fd_word && *i == inode) {
            return;
        }
        // The owner now: after a hand-over the pipe is found in the successor.
        *self = match open_peer_pipe(remote.owner_pid(), fd_word, inode) {
            Ok(fd) => PeerWake::Open(fd),
            Err(_) => PeerWake::Refused(fd_word, inode),
        };
    }
}

/// Opens process `pid`'s pipe advertised as `fd_word` (fd + 1) and `inode`,
/// read-write and non-blocking, after checking what it is.
pub(crate) fn open_peer_pipe(pid: u32, fd_word: u64, inode: u64) -> Result<OwnedFd, WakeOpenError> {
    let fd = fd_word
        .checked_sub(1)
        .and_then(|f| i32::try_from(f).ok())
        .ok_or(WakeOpenError::FdWord(fd_word))?;
    let path = format!("/proc/{pid}/fd/{fd}");
    // O_PATH: resolves the magic link without opening the object (no FIFO
    // open semantics, no device open, nothing for it to notice).
    let opath = rustix::fs::open(path.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|errno| WakeOpenError::Open {
            path: path.clone(),
            errno,
        })?;
    let st = rustix::fs::fstat(&opath).map_err(|errno| WakeOpenError::Open {
        path: path.clone(),
        errno,
    })?;
    let ours = format!("/proc/self/fd/{}", opath.as_fd().as_raw_fd());
    let target =
        rustix::fs::readlink(ours.as_str(), Vec::new()).map_err(|errno| WakeOpenError::Open {
            path: ours.clone(),
            errno,
        })?;
    let target = target.to_string_lossy().into_owned();
    // A named FIFO has a path as its target; only pipefs gives `pipe:[..]`.
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo || !target.starts_with("pipe:[") {
        return Err(WakeOpenError::NotPipe { path, what: target });
    }
    if st.st_ino != inode {
        return Err(WakeOpenError::Inode {
            advertised: inode,
            found: st.st_ino,
        });
    }
    rustix::fs::open(
        ours.as_str(),
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| WakeOpenError::Open { path: ours, errno })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(fd: &OwnedFd) -> u64 {
        fd.as_raw_fd() as u64 + 1
    }

    #[test]
    #[cfg_attr(miri, ignore)] // pipes and /proc
    fn a_wake_pipe_reopened_through_proc_signals_its_reader() {
        let p = WakePipe::new().unwrap();
        let fd = open_peer_pipe(std::process::id(), word(&p.read), p.inode).unwrap();
        assert!(drain(p.read.as_fd()).unwrap(), "empty, not at its end");
        rustix::io::write(&fd, &[1]).unwrap();
        rustix::io::write(&fd, &[1]).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&p.read, &mut buf).unwrap(), 2);
        assert!(drain(p.read.as_fd()).unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn an_eventfd_cannot_be_reopened_through_proc() {
        // Why the wake channel is a pipe: the kernel refuses this.
        let ev = numashm_ring::EventFd::new().unwrap();
        let path = format!("/proc/self/fd/{}", ev.as_fd().as_raw_fd());
        assert_eq!(
            rustix::fs::open(path.as_str(), OFlags::RDWR, Mode::empty()).err(),
            Some(Errno::NXIO)
        );
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn anything_but_the_advertised_pipe_is_refused() {
        let me = std::process::id();
        let p = WakePipe::new().unwrap();
        assert_eq!(
            open_peer_pipe(me, 0, p.inode).unwrap_err(),
            WakeOpenError::FdWord(0)
        );
        assert_eq!(
            open_peer_pipe(me, u64::MAX, p.inode).unwrap_err(),
            WakeOpenError::FdWord(u64::MAX)
        );
        // Another pipe of the same process: the inode tells.
        let other = WakePipe::new().unwrap();
        assert_eq!(
            open_peer_pipe(me, word(&other.read), p.inode).unwrap_err(),
            WakeOpenError::Inode {
                advertised: p.inode,
                found: other.inode
            }
        );
        // An eventfd, a regular file, a memfd: not pipes.
        let ev: OwnedFd = numashm_ring::EventFd::new().unwrap().into();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let memfd = numashm_region::SharedObject::with_len("wake-test", 4096).unwrap();
        for fd in [ev.as_fd(), file.as_fd(), memfd.as_fd()] {
            let w = fd.as_raw_fd() as u64 + 1;
            assert!(
                matches!(
                    open_peer_pipe(me, w, p.inode),
                    Err(WakeOpenError::NotPipe { .. })
                ),
                "fd {w}"
            );
        }
        // A closed fd number, a process that does not exist.
        let closed = word(&other.read) + 1000;
        assert!(matches!(
            open_peer_pipe(me, closed, p.inode),
            Err(WakeOpenError::Open { .. })
        ));
        assert!(matches!(
            open_peer_pipe(u32::MAX, word(&p.read), p.inode),
            Err(WakeOpenError::Open { .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_named_fifo_is_refused() {
        let path = std::env::temp_dir().join(format!("numashm-wake-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        let f = rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let ino = rustix::fs::fstat(&f).unwrap().st_ino;
        let r = open_peer_pipe(std::process::id(), word(&f), ino);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(r, Err(WakeOpenError::NotPipe { .. })), "{r:?}");
    }
}
