//! `eventfd(2)` per ring end, for waiting in epoll / mio / tokio.

use core::time::Duration;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::SysError;

/// A non-blocking, close-on-exec eventfd counter.
///
/// The eventfd is per process: pass it to peers by `fork`, `SCM_RIGHTS` or
/// `pidfd_getfd`; the doorbell word in shared memory tells a notifier
/// whether anybody waits on it (see [`Doorbell::arm`](crate::Doorbell::arm)).
///
/// # References
///
/// - [`eventfd(2)`](https://man7.org/linux/man-pages/man2/eventfd.2.html)
///
/// # Examples
///
/// ```
/// use numashm_ring::EventFd;
/// # if cfg!(miri) { return Ok(()); }
/// let ev = EventFd::new()?;
/// ev.signal()?;
/// ev.signal()?;
/// assert_eq!(ev.drain()?, 2);
/// assert_eq!(ev.drain()?, 0);
/// # Ok::<(), numashm_ring::SysError>(())
/// ```
#[doc(alias = "eventfd")]
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    ///
    /// # Errors
    ///
    /// [`SysError`] with the errno of `eventfd`.
    ///
    /// # Examples
    ///
    /// ```
    /// # if cfg!(miri) { return Ok(()); }
    /// let ev = numashm_ring::EventFd::new()?;
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn new() -> Result<Self, SysError> {
        use rustix::event::{eventfd, EventfdFlags};
        eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
            .map(|fd| EventFd { fd })
            .map_err(|errno| SysError { op: "eventfd", errno })
    }

    /// Adds 1 to the counter, making the fd readable. A saturated counter
    /// (`EAGAIN`) is already readable and counts as success.
    ///
    /// # Errors
    ///
    /// [`SysError`] with the errno of `write`.
    ///
    /// # Examples
    ///
    /// ```
    /// # if cfg!(miri) { return Ok(()); }
    /// let ev = numashm_ring::EventFd::new()?;
    /// ev.signal()?;
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn signal(&self) -> Result<(), SysError> {
        loop {
            match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
                Ok(_) | Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(SysError { op: "write(eventfd)", errno }),
            }
        }
    }

    /// Reads and clears the counter; 0 if it was already clear.
    ///
    /// # Errors
    ///
    /// [`SysError`] with the errno of `read`.
    ///
    /// # Examples
    ///
    /// ```
    /// # if cfg!(miri) { return Ok(()); }
    /// let ev = numashm_ring::EventFd::new()?;
    /// assert_eq!(ev.drain()?, 0);
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn drain(&self) -> Result<u64, SysError> {
        let mut buf = [0u8; 8];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(8) => return Ok(u64::from_ne_bytes(buf)),
                Ok(_) => return Ok(0),
                Err(rustix::io::Errno::AGAIN) => return Ok(0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(SysError { op: "read(eventfd)", errno }),
            }
        }
    }

    /// Blocks in `poll(2)` until readable or `timeout`; returns whether it is
    /// readable. (Services use the fd in their own event loop instead.)
    ///
    /// # Errors
    ///
    /// [`SysError`] with the errno of `poll`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # if cfg!(miri) { return Ok(()); }
    /// let ev = numashm_ring::EventFd::new()?;
    /// assert!(!ev.wait(Some(Duration::ZERO))?);
    /// ev.signal()?;
    /// assert!(ev.wait(None)?);
    /// # Ok::<(), numashm_ring::SysError>(())
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, SysError> {
        use rustix::event::{poll, PollFd, PollFlags};
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(SysError { op: "poll(eventfd)", errno }),
            }
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<EventFd> for OwnedFd {
    fn from(ev: EventFd) -> OwnedFd {
        ev.fd
    }
}

impl From<OwnedFd> for EventFd {
    /// Wraps an fd that must be an eventfd (e.g. received from a peer).
    fn from(fd: OwnedFd) -> EventFd {
        EventFd { fd }
    }
}
