//! Error types, one small enum per area; syscall failures carry the operation
//! and the errno, and a hint where the operator can act.

use std::borrow::Cow;

pub use numashm_region::Errno;
use numashm_region::RegionError;

use crate::wire::ErrorCode;

fn hint_suffix(hint: &Option<Cow<'static, str>>) -> String {
    hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default()
}

/// Errors of the shared region descriptor: reading it (as hostile bytes),
/// mapping, ownership and capabilities.
///
/// # Examples
///
/// ```
/// use numashm_ownership::{Descriptor, DescriptorError};
/// use numashm_region::RegionOptions;
/// let region = RegionOptions::new(64 << 10).create_anonymous("doc-derr")?;
/// // A fresh region holds zeroes, not a descriptor.
/// let err = Descriptor::open(&region).unwrap_err();
/// assert!(matches!(err, DescriptorError::Corrupt { field: "magic", .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The region layer failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A field of the descriptor holds a value no writer of this crate produces.
    #[error("corrupt descriptor: field `{field}`{}: {detail}", .index.map(|i| format!("[{i}]")).unwrap_or_default())]
    Corrupt {
        /// The first bad field.
        field: &'static str,
        /// The table slot, for table fields.
        index: Option<usize>,
        /// What is wrong with it.
        detail: String,
    },
    /// The region's data area cannot hold a descriptor.
    #[error("the region's data area holds {available} bytes, a descriptor needs {needed} (create a larger region)")]
    TooSmall {
        /// Bytes after `data_offset()`.
        available: usize,
        /// Bytes a descriptor reserves.
        needed: usize,
    },
    /// Only the owner may do this.
    #[error("process {caller} is not the owner (the owner is {owner})")]
    NotOwner {
        /// The current owner's pid.
        owner: u32,
        /// The caller's pid.
        caller: u32,
    },
    /// The process does not exist (or has exited).
    #[error("process {pid} does not exist or has exited")]
    TargetGone {
        /// The pid.
        pid: u32,
    },
    /// The process exists but has no mapping recorded in the descriptor.
    #[error("process {pid} is not attached to this region (it must call Descriptor::register or map first)")]
    TargetNotAttached {
        /// The pid.
        pid: u32,
    },
    /// Another transfer (or a move capability) changed the owner first.
    #[error("the owner changed concurrently; re-read the owner and retry")]
    OwnerChanged,
    /// A fixed-size table of the descriptor has no free slot.
    #[error("the {table} table is full ({slots} slots); unmap or revoke stale entries")]
    TableFull {
        /// Which table.
        table: &'static str,
        /// Its size.
        slots: usize,
    },
    /// The calling process already has a mapping recorded.
    #[error("process {pid} already has a mapping of this region recorded; unmap it first")]
    AlreadyMapped {
        /// The pid.
        pid: u32,
    },
    /// The requested address is not free (`MAP_FIXED_NOREPLACE` refused it).
    #[error("address {addr:#x} is already mapped in this process; choose another or pass None")]
    AddressTaken {
        /// The address asked for.
        addr: usize,
    },
    /// An address or length is not page-aligned.
    #[error("{what} {value:#x} is not aligned to the page size {page:#x}")]
    Misaligned {
        /// Which value.
        what: &'static str,
        /// The value.
        value: usize,
        /// The page size.
        page: usize,
    },
    /// Permissions asked for that the region (or the fd) does not allow.
    #[error("permission {asked} not available: {detail}")]
    Permission {
        /// What was asked for.
        asked: crate::Perms,
        /// Why not.
        detail: &'static str,
    },
    /// No active capability with this token.
    #[error("no active capability with this token (never issued, revoked, or already used)")]
    NoSuchCapability,
    /// The capability is bound to another process.
    #[error("the capability is bound to process {bound}, not to {caller}")]
    WrongProcess {
        /// The process it is bound to.
        bound: u32,
        /// The process that presented it.
        caller: u32,
    },
    /// A system call failed.
    #[error("{op} failed: {errno}{}", hint_suffix(.hint))]
    Syscall {
        /// The operation.
        op: &'static str,
        /// The errno.
        errno: Errno,
        /// What to do about it, when known.
        hint: Option<Cow<'static, str>>,
    },
}

impl DescriptorError {
    pub(crate) fn sys(op: &'static str, errno: Errno) -> Self {
        DescriptorError::Syscall { op, errno, hint: None }
    }

    pub(crate) fn corrupt(field: &'static str, index: Option<usize>, detail: impl Into<String>) -> Self {
        DescriptorError::Corrupt { field, index, detail: detail.into() }
    }
}

/// Errors of [`physical_frames`](crate::physical_frames).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{physical_frames, FramesError};
/// let r = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-ferr")?;
/// assert!(matches!(physical_frames(&r, 1, 4096), Err(FramesError::Misaligned { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramesError {
    /// The kernel hides frame numbers from processes without `CAP_SYS_ADMIN`.
    #[error("/proc/self/pagemap shows no frame numbers without CAP_SYS_ADMIN (run as root or grant the capability: setcap cap_sys_admin+ep BINARY)")]
    NoCapability,
    /// A page is not resident (e.g. swapped out) after being touched.
    #[error("page at offset {offset:#x} is not present in memory")]
    NotPresent {
        /// Offset of the page from the region's base.
        offset: usize,
    },
    /// The range is not page-aligned.
    #[error("range {offset:#x}+{len:#x} is not aligned to 4 KiB pages")]
    Misaligned {
        /// Start.
        offset: usize,
        /// Length.
        len: usize,
    },
    /// The range is not inside the region's mapped part.
    #[error("range {offset:#x}+{len:#x} is outside the region's {size:#x} mapped bytes")]
    OutOfBounds {
        /// Start.
        offset: usize,
        /// Length.
        len: usize,
        /// Mapped bytes.
        size: usize,
    },
    /// A system call failed.
    #[error("{op} failed: {errno}")]
    Syscall {
        /// The operation.
        op: &'static str,
        /// The errno.
        errno: Errno,
    },
}

/// Errors of the offer/claim client ([`BrokerClient`](crate::BrokerClient)).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{BrokerClient, OfferError};
/// let err = BrokerClient::connect("/nonexistent/numashm.sock").unwrap_err();
/// assert!(matches!(err, OfferError::Syscall { op: "connect", .. }));
/// assert!(err.to_string().contains("hint"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The broker refused the request.
    #[error("broker refused: {code:?} ({detail})")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// A detail number (an errno, a count, ...).
        detail: u64,
    },
    /// `list_offers`'s buffer is too small; nothing was written.
    #[error("buffer holds {given} offers, {needed} are listed; pass a buffer of at least {needed}")]
    BufferTooSmall {
        /// Entries needed.
        needed: usize,
        /// Entries given.
        given: usize,
    },
    /// An argument is out of its domain.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The broker answered with a malformed message.
    #[error("malformed message from the broker: {0}")]
    Wire(#[from] WireError),
    /// The region layer failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The connection to the broker is closed.
    #[error("the broker closed the connection")]
    Disconnected,
    /// No answer within the client's timeout.
    #[error("no answer from the broker within {0:?} (is the offerer alive?)")]
    Timeout(std::time::Duration),
    /// A system call failed.
    #[error("{op} failed: {errno}{}", hint_suffix(.hint))]
    Syscall {
        /// The operation.
        op: &'static str,
        /// The errno.
        errno: Errno,
        /// What to do about it, when known.
        hint: Option<Cow<'static, str>>,
    },
}

impl OfferError {
    pub(crate) fn sys(op: &'static str, errno: Errno) -> Self {
        let hint = match (op, errno) {
            ("connect", Errno::NOENT | Errno::CONNREFUSED) => {
                Some(Cow::Borrowed("no broker listens on this path: start one with Broker::bind"))
            }
            (_, Errno::ACCESS | Errno::PERM) => Some(Cow::Borrowed("permission denied: check the socket's owner and mode")),
            _ => None,
        };
        OfferError::Syscall { op, errno, hint }
    }
}

/// Errors of the broker itself (binding, serving).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{Broker, BrokerError};
/// let err = Broker::bind("/nonexistent/dir/numashm.sock").unwrap_err();
/// assert!(matches!(err, BrokerError::Syscall { op: "bind", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A system call failed.
    #[error("{op} failed: {errno}{}", hint_suffix(.hint))]
    Syscall {
        /// The operation.
        op: &'static str,
        /// The errno.
        errno: Errno,
        /// What to do about it, when known.
        hint: Option<Cow<'static, str>>,
    },
}

impl BrokerError {
    pub(crate) fn sys(op: &'static str, errno: Errno) -> Self {
        let hint = match errno {
            Errno::ADDRINUSE => Some(Cow::Borrowed("the socket path exists: another broker runs, or remove the stale file")),
            Errno::NOENT => Some(Cow::Borrowed("the socket's directory does not exist")),
            _ => None,
        };
        BrokerError::Syscall { op, errno, hint }
    }
}

/// A message that does not follow the wire format (see docs/ownership.md).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{decode_message, WireError};
/// assert!(matches!(decode_message(b"short"), Err(WireError::TooShort { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than a header.
    #[error("message of {len} bytes is shorter than the 16-byte header")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// More bytes than any message may have.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Not our magic number.
    #[error("bad magic {found:#010x}")]
    BadMagic {
        /// What was there.
        found: u32,
    },
    /// A version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks {supported})")]
    BadVersion {
        /// The version in the message.
        found: u16,
        /// Ours.
        supported: u16,
    },
    /// An unknown message kind.
    #[error("unknown message kind {kind}")]
    UnknownKind {
        /// The kind.
        kind: u16,
    },
    /// The header's length field disagrees with the bytes received.
    #[error("header says {header} bytes, {actual} were received")]
    LengthMismatch {
        /// The length field.
        header: u32,
        /// Bytes received.
        actual: usize,
    },
    /// The body has the wrong size for its kind.
    #[error("{kind} body of {actual} bytes, expected {expected}")]
    BadSize {
        /// The message kind's name.
        kind: &'static str,
        /// Expected body bytes.
        expected: usize,
        /// Body bytes received.
        actual: usize,
    },
    /// A field holds a value out of its domain.
    #[error("field `{field}`: {detail}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The message carries the wrong number of file descriptors.
    #[error("{kind} carries {expected} file descriptors, {got} were attached")]
    FdCount {
        /// The message kind's name.
        kind: &'static str,
        /// Expected.
        expected: usize,
        /// Attached.
        got: usize,
    },
    /// An attached fd is not what the message kind needs.
    #[error("attached fd refused: {0}")]
    BadFd(&'static str),
}
