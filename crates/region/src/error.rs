//! The one error type of the region layer.

use std::borrow::Cow;
use std::fmt;

pub use rustix::fs::SealFlags;
pub use rustix::io::Errno;

/// What to tell the operator so that the failed operation can succeed next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint(pub Cow<'static, str>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for Hint {
    fn from(s: &'static str) -> Self {
        Hint(Cow::Borrowed(s))
    }
}

impl From<String> for Hint {
    fn from(s: String) -> Self {
        Hint(Cow::Owned(s))
    }
}

fn hint_suffix(hint: &Option<Hint>) -> String {
    hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default()
}

/// Every way a region operation can fail.
///
/// Each variant names what went wrong; syscall failures carry the operation and the
/// errno, and where the operator can do something about it, a [`Hint`].
///
/// # Examples
///
/// ```
/// use numashm_region::{RegionError, RegionOptions};
///
/// let err = RegionOptions::new(0).create_anonymous("zero").unwrap_err();
/// assert!(matches!(err, RegionError::InvalidArgument { .. }));
/// assert!(err.to_string().contains("len"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// A system call failed.
    #[error("{op} failed: {errno}{}", hint_suffix(.hint))]
    Syscall {
        /// The operation, e.g. `"mbind"` or `"open /dev/shm/x"`.
        op: Cow<'static, str>,
        /// The errno it returned.
        errno: Errno,
        /// What to do about it, when we know.
        hint: Option<Hint>,
    },
    /// An argument is out of its domain (zero length, not a page multiple, ...).
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it is refused.
        detail: String,
    },
    /// A range does not lie inside the mapped part of the region.
    #[error("range {offset:#x}+{len:#x} is outside the region's {size:#x} mapped bytes")]
    OutOfBounds {
        /// Start of the range, from the region's base.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Bytes mapped in this process.
        size: usize,
    },
    /// A range is not aligned to the region's page size.
    #[error("range {offset:#x}+{len:#x} is not aligned to the page size {align:#x}")]
    Misaligned {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Required alignment.
        align: usize,
    },
    /// A page-level operation would overwrite the region header.
    #[error("range {offset:#x}+{len:#x} overlaps the region header (first {header:#x} bytes)")]
    HeaderRange {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Bytes the header reserves.
        header: usize,
    },
    /// Regions only grow.
    #[error("cannot shrink a region from {current:#x} to {requested:#x} bytes: regions only grow")]
    Shrink {
        /// Current length.
        current: usize,
        /// Requested length.
        requested: usize,
    },
    /// Growth beyond the reserved maximum.
    #[error("{requested:#x} bytes exceed the region's maximum of {max:#x} (set RegionOptions::max_len at creation)")]
    TooLarge {
        /// Requested length.
        requested: usize,
        /// The maximum fixed at creation.
        max: usize,
    },
    /// The node is not a NUMA node of this machine.
    #[error("NUMA node {node} does not exist (this machine has nodes {known:?})")]
    UnknownNode {
        /// The node asked for.
        node: u32,
        /// The nodes that exist.
        known: Vec<u32>,
    },
    /// The node exists but has no memory of its own.
    #[error("NUMA node {node} has no memory; choose one of {with_memory:?}")]
    MemorylessNode {
        /// The node asked for.
        node: u32,
        /// Nodes that have memory.
        with_memory: Vec<u32>,
    },
    /// A cache policy (huge pages, THP, mlock) cannot be had on this machine now.
    #[error("{what} is unavailable: {hint}")]
    Unavailable {
        /// What was asked for.
        what: &'static str,
        /// What to do about it.
        hint: Hint,
    },
    /// The region's header (or the file behind it) is inconsistent.
    #[error("corrupt region: field `{field}`: {detail}")]
    Corrupt {
        /// The first field found bad.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The creator has not finished initialising the region yet.
    #[error("region header not initialised yet (its creator is still setting it up); retry")]
    NotInitialized,
    /// A page is not on the node its placement requires.
    #[error("page at offset {offset:#x} is on node {found}, expected one of {expected:?}")]
    Misplaced {
        /// Offset of the first misplaced page.
        offset: usize,
        /// Node it is on.
        found: u32,
        /// Nodes allowed.
        expected: Vec<u32>,
    },
    /// The path may not be used as a segment.
    #[error("refusing {path}: {detail}")]
    Access {
        /// The path.
        path: String,
        /// Why.
        detail: String,
    },
    /// The region is mapped read-only in this process.
    #[error("region is mapped read-only in this process")]
    ReadOnly,
    /// The topology could not be read.
    #[error("cannot read the NUMA topology: {0}")]
    Topology(String),
    /// The fd handed over as a peer's pool is not a memfd (a sealed pool always is one).
    #[error("not a sealed pool: {detail}")]
    NotMemfd {
        /// What the fd is instead.
        detail: String,
    },
    /// The memfd lacks a seal that makes it a single-writer pool.
    #[error("not a sealed pool: seal {missing} is missing (seals present: {present:?})")]
    MissingSeal {
        /// The first missing seal, e.g. `"F_SEAL_FUTURE_WRITE"`.
        missing: &'static str,
        /// The seals the object has.
        present: SealFlags,
    },
    /// `/proc/<pid>/fd/<fd>` does not exist: no such process in this pid
    /// namespace, or it has no such fd (ENOENT, ESRCH).
    #[error("{path} does not exist: no process {pid} in this pid namespace, or it has no fd {fd}")]
    PeerNotFound {
        /// The peer's pid.
        pid: u32,
        /// The fd number asked for.
        fd: i32,
        /// The path tried.
        path: String,
    },
    /// Opening a peer's fd through `/proc` was refused (EACCES, EPERM).
    #[error("permission denied opening {path} ({errno}): the peer must run as the same user (and be dumpable), or we need CAP_SYS_PTRACE, and ptrace restrictions (Yama, LSMs) must allow PTRACE_MODE_READ")]
    PeerAccessDenied {
        /// The peer's pid.
        pid: u32,
        /// The fd number asked for.
        fd: i32,
        /// The path tried.
        path: String,
        /// EACCES or EPERM.
        errno: Errno,
    },
    /// `/proc` is not mounted here (or is not procfs), so a peer's fd cannot be opened by number.
    #[error("/proc is unusable: {detail} (mount -t proc proc /proc, or pass the fd over a Unix socket)")]
    ProcUnavailable {
        /// What was found.
        detail: String,
    },
}

impl RegionError {
    /// The errno of a failed syscall, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::{Errno, Region};
    /// let err = Region::attach_file("/nonexistent/numashm").unwrap_err();
    /// assert_eq!(err.errno(), Some(Errno::NOENT));
    /// ```
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RegionError::Syscall { errno, .. } | RegionError::PeerAccessDenied { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// What the operator can do, when we know.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_region::RegionOptions;
    /// let err = RegionOptions::new(4096).node(4000).create_anonymous("x").unwrap_err();
    /// assert!(err.hint().is_none());
    /// ```
    pub fn hint(&self) -> Option<&str> {
        match self {
            RegionError::Syscall { hint, .. } => hint.as_ref().map(|h| &*h.0),
            RegionError::Unavailable { hint, .. } => Some(&hint.0),
            _ => None,
        }
    }

    pub(crate) fn sys(op: impl Into<Cow<'static, str>>, errno: Errno) -> Self {
        let hint = default_hint(errno);
        RegionError::Syscall { op: op.into(), errno, hint }
    }

    pub(crate) fn sys_hint(op: impl Into<Cow<'static, str>>, errno: Errno, hint: impl Into<Hint>) -> Self {
        RegionError::Syscall { op: op.into(), errno, hint: Some(hint.into()) }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        RegionError::InvalidArgument { what, detail: detail.into() }
    }

    pub(crate) fn corrupt(field: &'static str, detail: impl Into<String>) -> Self {
        RegionError::Corrupt { field, detail: detail.into() }
    }
}

fn default_hint(errno: Errno) -> Option<Hint> {
    match errno {
        Errno::NOSPC => Some("the backing filesystem is full: free space or remount /dev/shm larger (mount -o remount,size=... /dev/shm)".into()),
        Errno::NOMEM => Some("not enough memory on the chosen node(s): pick another node, a smaller size, or free memory".into()),
        Errno::ACCESS | Errno::PERM => Some("permission denied: check the file's owner and mode, or run with the needed capability".into()),
        _ => None,
    }
}

/// Result of region operations.
pub type Result<T, E = RegionError> = std::result::Result<T, E>;
