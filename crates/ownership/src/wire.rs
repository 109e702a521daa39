//! The broker's wire format: one message per `SOCK_SEQPACKET` datagram, a
//! 16-byte little-endian header, a fixed-size body per kind (a counted array
//! for [`Message::Offers`]), and 0 or 1 file descriptors in `SCM_RIGHTS`.
//! Every field is validated by [`decode_message`]; the layout is documented in
//! docs/ownership.md.

use crate::error::WireError;
use crate::flags::{CapMode, OfferFlags, Perms};
use numashm_region::process::PID_MAX;

/// `"NSOW"` read as a little-endian u32.
pub const WIRE_MAGIC: u32 = u32::from_le_bytes(*b"NSOW");
/// The version this build speaks.
pub const WIRE_VERSION: u16 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 16;
/// Most entries in one [`Message::Offers`].
pub const MAX_LIST: usize = 512;
/// Bytes of one [`OfferInfo`] on the wire.
pub const OFFER_INFO_LEN: usize = 32;
/// The largest message.
pub const MAX_MESSAGE: usize = HEADER_LEN + 8 + MAX_LIST * OFFER_INFO_LEN;
/// The largest range one offer may carry (1 TiB).
pub const MAX_OFFER_LEN: u64 = 1 << 40;
/// Addresses at or above this are not user-space addresses on any Linux target.
const MAX_USER_ADDR: u64 = 1 << 57;
const PAGE: u64 = 4096;

/// Why the broker refused a request; sent in [`Message::Error`].
///
/// # Examples
///
/// ```
/// use numashm_ownership::ErrorCode;
/// assert_eq!(ErrorCode::from_raw(ErrorCode::WrongClaimant as u32), Some(ErrorCode::WrongClaimant));
/// assert_eq!(ErrorCode::from_raw(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request did not decode (detail: nothing) or was not a request.
    BadMessage = 1,
    /// No offer from that pid at that address (for us).
    NoSuchOffer = 2,
    /// The offer is addressed to another process.
    WrongClaimant = 3,
    /// The claim asks for permissions the offer does not grant.
    NotGranted = 4,
    /// The offer was already claimed (or is being claimed): it cannot be cancelled or claimed again.
    AlreadyClaimed = 5,
    /// An offer from this process at this address is already pending.
    AlreadyOffered = 6,
    /// `List`'s maximum is smaller than the number of offers (detail: the count needed).
    BufferTooSmall = 7,
    /// The attached fd is not a sealable memfd of the right size (detail: errno if any).
    BadFd = 8,
    /// A per-client limit was hit (offers, regions).
    Limit = 9,
    /// The offerer went away before the claim completed.
    Withdrawn = 10,
    /// The offerer could not apply its drops (detail: errno).
    DropFailed = 11,
    /// No registered region holds an active capability with that token.
    NoSuchCapability = 12,
    /// The capability is bound to another process.
    CapabilityDenied = 13,
    /// The broker failed internally (detail: errno).
    Internal = 14,
    /// The peer's uid may not use this broker.
    Forbidden = 15,
}

impl ErrorCode {
    /// Checked conversion from the raw wire value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::ErrorCode::from_raw(999).is_none());
    /// ```
    pub const fn from_raw(raw: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match raw {
            1 => BadMessage,
            2 => NoSuchOffer,
            3 => WrongClaimant,
            4 => NotGranted,
            5 => AlreadyClaimed,
            6 => AlreadyOffered,
            7 => BufferTooSmall,
            8 => BadFd,
            9 => Limit,
            10 => Withdrawn,
            11 => DropFailed,
            12 => NoSuchCapability,
            13 => CapabilityDenied,
            14 => Internal,
            15 => Forbidden,
            _ => return None,
        })
    }
}

/// Where an offer stands.
///
/// # Examples
///
/// ```
/// use numashm_ownership::OfferState;
/// assert_eq!(OfferState::from_raw(3), Some(OfferState::Claimed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum OfferState {
    /// Waiting for the receiver.
    Pending = 1,
    /// Claimed; the offerer is applying its drops.
    Claiming = 2,
    /// Claimed; the receiver holds the memory.
    Claimed = 3,
}

impl OfferState {
    /// Checked conversion from the raw wire value.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::OfferState::from_raw(0).is_none());
    /// ```
    pub const fn from_raw(raw: u32) -> Option<OfferState> {
        match raw {
            1 => Some(OfferState::Pending),
            2 => Some(OfferState::Claiming),
            3 => Some(OfferState::Claimed),
            _ => None,
        }
    }
}

/// One offer as [`list_offers`](crate::BrokerClient::list_offers) reports it.
///
/// # Examples
///
/// ```
/// let info = numashm_ownership::OfferInfo::default();
/// assert_eq!(info.len, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferInfo {
    /// The offering process.
    pub src_pid: u32,
    /// The process the offer is for.
    pub dest_pid: u32,
    /// The offerer's address of the range (identifies the offer).
    pub addr: u64,
    /// Bytes offered.
    pub len: u64,
    /// Grants and drops.
    pub flags: OfferFlags,
    /// Where it stands (`None` only in a default-constructed value).
    pub state: Option<OfferState>,
}

/// A broker message (requests from clients, answers and notices from the broker).
///
/// # Examples
///
/// ```
/// use numashm_ownership::{decode_message, Message, OfferFlags};
/// let m = Message::Claim { src_pid: 42, flags: OfferFlags::GRANT_R, addr: 0x7f00_0000_0000 };
/// assert_eq!(decode_message(&m.encode()).unwrap(), m);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Offer `len` bytes at the offerer's `addr` to `dest_pid` (one memfd
    /// attached); `len == 0` cancels the offer at `addr` (no fd).
    Offer {
        /// The receiver.
        dest_pid: u32,
        /// Grants and drops.
        flags: OfferFlags,
        /// The offerer's address of the range.
        addr: u64,
        /// Bytes; 0 = cancel.
        len: u64,
    },
    /// Claim the offer `src_pid` made at `addr`, asking for the grant bits of `flags`.
    Claim {
        /// The offerer.
        src_pid: u32,
        /// Permissions asked for (grant bits only).
        flags: OfferFlags,
        /// The offerer's address.
        addr: u64,
    },
    /// List the offers sent and received by the caller, at most `max`.
    List {
        /// Capacity of the caller's buffer.
        max: u32,
    },
    /// The offerer applied (errno 0) or failed to apply the drops of `offer_id`.
    DropDone {
        /// From the [`Message::DropRequest`].
        offer_id: u64,
        /// 0 or the errno of the failed mprotect/mmap.
        errno: u32,
    },
    /// Register a region (its memfd attached) so capabilities in its descriptor can be redeemed.
    RegisterRegion,
    /// Redeem `token` on a region registered by `owner_pid`.
    AttachCapability {
        /// The process that registered the region.
        owner_pid: u32,
        /// The capability token.
        token: u64,
    },
    /// Success, with a value (an offer id, a count, ...).
    Done {
        /// Request-specific value.
        value: u64,
    },
    /// Failure.
    Error {
        /// Why.
        code: ErrorCode,
        /// Detail (errno, needed count, ...).
        detail: u64,
    },
    /// A claim succeeded: the memfd is attached.
    Claimed {
        /// The offer.
        offer_id: u64,
        /// Bytes to map from offset 0 of the fd.
        len: u64,
        /// The permissions the fd allows.
        perms: Perms,
    },
    /// The answer to [`Message::List`].
    Offers {
        /// All offers of the caller (≥ `entries.len()`).
        total: u32,
        /// The offers.
        entries: Vec<OfferInfo>,
    },
    /// To the offerer: apply the drops of a claimed offer, then answer [`Message::DropDone`].
    DropRequest {
        /// The offer.
        offer_id: u64,
        /// The offerer's address of the range.
        addr: u64,
        /// Bytes.
        len: u64,
        /// What to give up.
        drop: Perms,
    },
    /// A capability was redeemed: the region's fd is attached (read-only for `ReadOnly`).
    Attached {
        /// The capability's mode.
        mode: CapMode,
    },
}

struct Kind;
impl Kind {
    const OFFER: u16 = 1;
    const CLAIM: u16 = 2;
    const LIST: u16 = 3;
    const DROP_DONE: u16 = 4;
    const REGISTER: u16 = 5;
    const ATTACH_CAP: u16 = 6;
    const DONE: u16 = 64;
    const ERROR: u16 = 65;
    const CLAIMED: u16 = 66;
    const OFFERS: u16 = 67;
    const DROP_REQUEST: u16 = 68;
    const ATTACHED: u16 = 69;
}

impl Message {
    fn kind(&self) -> (u16, &'static str) {
        match self {
            Message::Offer { .. } => (Kind::OFFER, "Offer"),
            Message::Claim { .. } => (Kind::CLAIM, "Claim"),
            Message::List { .. } => (Kind::LIST, "List"),
            Message::DropDone { .. } => (Kind::DROP_DONE, "DropDone"),
            Message::RegisterRegion => (Kind::REGISTER, "RegisterRegion"),
            Message::AttachCapability { .. } => (Kind::ATTACH_CAP, "AttachCapability"),
            Message::Done { .. } => (Kind::DONE, "Done"),
            Message::Error { .. } => (Kind::ERROR, "Error"),
            Message::Claimed { .. } => (Kind::CLAIMED, "Claimed"),
            Message::Offers { .. } => (Kind::OFFERS, "Offers"),
            Message::DropRequest { .. } => (Kind::DROP_REQUEST, "DropRequest"),
            Message::Attached { .. } => (Kind::ATTACHED, "Attached"),
        }
    }

    /// How many file descriptors travel with this message.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::Message;
    /// assert_eq!(Message::RegisterRegion.fd_count(), 1);
    /// assert_eq!(Message::List { max: 4 }.fd_count(), 0);
    /// ```
    pub fn fd_count(&self) -> usize {
        match self {
            Message::Offer { len, .. } => usize::from(*len != 0),
            Message::RegisterRegion | Message::Claimed { .. } | Message::Attached { .. } => 1,
            _ => 0,
        }
    }

    /// Whether a client may send this message (the broker refuses the others).
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::Message;
    /// assert!(Message::List { max: 1 }.is_request());
    /// assert!(!Message::Done { value: 0 }.is_request());
    /// ```
    pub fn is_request(&self) -> bool {
        self.kind().0 < Kind::DONE
    }

    /// The bytes of this message, header included.
    ///
    /// # Examples
    ///
    /// ```
    /// let bytes = numashm_ownership::Message::List { max: 8 }.encode();
    /// assert_eq!(bytes.len(), 24);
    /// assert_eq!(&bytes[..4], b"NSOW");
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        let (kind, _) = self.kind();
        b.extend_from_slice(&WIRE_MAGIC.to_le_bytes());
        b.extend_from_slice(&WIRE_VERSION.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
        b.extend_from_slice(&(self.fd_count() as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        let u32s = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
        let u64s = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes());
        match self {
            Message::Offer { dest_pid, flags, addr, len } => {
                u32s(&mut b, *dest_pid);
                u32s(&mut b, flags.bits());
                u64s(&mut b, *addr);
                u64s(&mut b, *len);
            }
            Message::Claim { src_pid, flags, addr } => {
                u32s(&mut b, *src_pid);
                u32s(&mut b, flags.bits());
                u64s(&mut b, *addr);
            }
            Message::List { max } => {
                u32s(&mut b, *max);
                u32s(&mut b, 0);
            }
            Message::DropDone { offer_id, errno } => {
                u64s(&mut b, *offer_id);
                u32s(&mut b, *errno);
                u32s(&mut b, 0);
            }
            Message::RegisterRegion => {}
            Message::AttachCapability { owner_pid, token } => {
                u32s(&mut b, *owner_pid);
                u32s(&mut b, 0);
                u64s(&mut b, *token);
            }
            Message::Done { value } => u64s(&mut b, *value),
            Message::Error { code, detail } => {
                u32s(&mut b, *code as u32);
                u32s(&mut b, 0);
                u64s(&mut b, *detail);
            }
            Message::Claimed { offer_id, len, perms } => {
                u64s(&mut b, *offer_id);
                u64s(&mut b, *len);
                u32s(&mut b, perms.bits());
                u32s(&mut b, 0);
            }
            Message::Offers { total, entries } => {
                u32s(&mut b, *total);
                u32s(&mut b, entries.len() as u32);
                for e in entries {
                    u32s(&mut b, e.src_pid);
                    u32s(&mut b, e.dest_pid);
                    u64s(&mut b, e.addr);
                    u64s(&mut b, e.len);
                    u32s(&mut b, e.flags.bits());
                    u32s(&mut b, e.state.map_or(0, |s| s as u32));
                }
            }
            Message::DropRequest { offer_id, addr, len, drop } => {
                u64s(&mut b, *offer_id);
                u64s(&mut b, *addr);
                u64s(&mut b, *len);
                u32s(&mut b, drop.bits());
                u32s(&mut b, 0);
            }
            Message::Attached { mode } => {
                u32s(&mut b, *mode as u32);
                u32s(&mut b, 0);
            }
        }
        let len = b.len() as u32;
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b
    }
}

/// A bounds-checked little-endian reader over a body of known size.
struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Body<'_> {
    fn u32(&mut self) -> u32 {
        // The body's size was checked against the kind before any read, so
        // these slices are in bounds; `get` keeps that a checked fact anyway.
        let v = self.bytes.get(self.pos..self.pos + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        self.pos += 4;
        v
    }

    fn u64(&mut self) -> u64 {
        let lo = u64::from(self.u32());
        let hi = u64::from(self.u32());
        lo | hi << 32
    }
}

fn bad(field: &'static str, detail: impl Into<String>) -> WireError {
    WireError::BadField { field, detail: detail.into() }
}

fn check_pid(field: &'static str, pid: u32) -> Result<u32, WireError> {
    if pid == 0 || pid > PID_MAX {
        return Err(bad(field, format!("{pid} is not a pid (1..={PID_MAX})")));
    }
    Ok(pid)
}

fn check_addr(field: &'static str, addr: u64) -> Result<u64, WireError> {
    if addr == 0 || addr % PAGE != 0 || addr >= MAX_USER_ADDR {
        return Err(bad(field, format!("{addr:#x} is not a page-aligned user address")));
    }
    Ok(addr)
}

fn check_len(field: &'static str, len: u64, allow_zero: bool) -> Result<u64, WireError> {
    if (len == 0 && !allow_zero) || len % PAGE != 0 || len > MAX_OFFER_LEN {
        return Err(bad(field, format!("{len:#x} is not a page multiple in 1..={MAX_OFFER_LEN:#x}")));
    }
    Ok(len)
}

fn check_reserved(field: &'static str, v: u32) -> Result<(), WireError> {
    if v != 0 {
        return Err(bad(field, format!("reserved, must be 0, is {v}")));
    }
    Ok(())
}

fn perms(field: &'static str, raw: u32) -> Result<Perms, WireError> {
    Perms::from_bits(raw).ok_or_else(|| bad(field, format!("unknown permission bits {raw:#x}")))
}

/// Decodes and validates one message (a whole datagram); never panics.
///
/// Checks, in order: the header (length, magic, version, the length field
/// against the bytes, reserved bits), the kind, the body size for the kind,
/// then every field (pids in range, page-aligned addresses and lengths, known
/// flag bits, reserved fields zero, list counts) and the header's fd count
/// against what the kind carries. The first failure is returned.
///
/// # Errors
///
/// [`WireError`] naming what is wrong.
///
/// # Examples
///
/// ```
/// use numashm_ownership::{decode_message, Message, WireError};
/// let mut bytes = Message::List { max: 3 }.encode();
/// assert_eq!(decode_message(&bytes), Ok(Message::List { max: 3 }));
/// bytes[4] = 9; // version
/// assert!(matches!(decode_message(&bytes), Err(WireError::BadVersion { found: 9, .. })));
/// ```
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::TooShort { len: bytes.len() });
    }
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLong { len: bytes.len(), max: MAX_MESSAGE });
    }
    let mut h = Body { bytes: &bytes[..HEADER_LEN], pos: 0 };
    let magic = h.u32();
    if magic != WIRE_MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let vk = h.u32();
    let (version, kind) = (vk as u16, (vk >> 16) as u16);
    if version != WIRE_VERSION {
        return Err(WireError::BadVersion { found: version, supported: WIRE_VERSION });
    }
    let len = h.u32();
    if len as usize != bytes.len() {
        return Err(WireError::LengthMismatch { header: len, actual: bytes.len() });
    }
    let fr = h.u32();
    let (fds, reserved) = ((fr & 0xffff) as usize, fr >> 16);
    check_reserved("header.reserved", reserved)?;
    let body = &bytes[HEADER_LEN..];
    let (name, expected) = match kind {
        Kind::OFFER => ("Offer", 24),
        Kind::CLAIM => ("Claim", 16),
        Kind::LIST => ("List", 8),
        Kind::DROP_DONE => ("DropDone", 16),
        Kind::REGISTER => ("RegisterRegion", 0),
        Kind::ATTACH_CAP => ("AttachCapability", 16),
        Kind::DONE => ("Done", 8),
        Kind::ERROR => ("Error", 16),
        Kind::CLAIMED => ("Claimed", 24),
        Kind::OFFERS => ("Offers", 8), // plus the entries, checked below
        Kind::DROP_REQUEST => ("DropRequest", 32),
        Kind::ATTACHED => ("Attached", 8),
        _ => return Err(WireError::UnknownKind { kind }),
    };
    let size_ok = if kind == Kind::OFFERS { body.len() >= expected } else { body.len() == expected };
    if !size_ok {
        return Err(WireError::BadSize { kind: name, expected, actual: body.len() });
    }
    let mut r = Body { bytes: body, pos: 0 };
    let msg = match kind {
        Kind::OFFER => {
            let dest_pid = check_pid("dest_pid", r.u32())?;
            let raw = r.u32();
            let flags = OfferFlags::from_bits(raw).ok_or_else(|| bad("flags", format!("unknown bits {raw:#x}")))?;
            let addr = check_addr("addr", r.u64())?;
            let len = check_len("len", r.u64(), true)?;
            if len != 0 && flags.grants().is_empty() {
                return Err(bad("flags", "an offer must grant at least one permission"));
            }
            Message::Offer { dest_pid, flags, addr, len }
        }
        Kind::CLAIM => {
            let src_pid = check_pid("src_pid", r.u32())?;
            let raw = r.u32();
            let flags = OfferFlags::from_bits(raw)
                .filter(|f| f.drops().is_empty() && !f.grants().is_empty())
                .ok_or_else(|| bad("flags", format!("{raw:#x}: a claim asks for grant bits only, at least one")))?;
            let addr = check_addr("addr", r.u64())?;
            Message::Claim { src_pid, flags, addr }
        }
        Kind::LIST => {
            let max = r.u32();
            if max as usize > MAX_LIST {
                return Err(bad("max", format!("{max} exceeds {MAX_LIST}")));
            }
            check_reserved("reserved", r.u32())?;
            Message::List { max }
        }
        Kind::DROP_DONE => {
            let offer_id = r.u64();
            let errno = r.u32();
            if errno > 4095 {
                return Err(bad("errno", format!("{errno} is not an errno")));
            }
            check_reserved("reserved", r.u32())?;
            Message::DropDone { offer_id, errno }
        }
        Kind::REGISTER => Message::RegisterRegion,
        Kind::ATTACH_CAP => {
            let owner_pid = check_pid("owner_pid", r.u32())?;
            check_reserved("reserved", r.u32())?;
            let token = r.u64();
            if token == 0 {
                return Err(bad("token", "0 is never a token"));
            }
            Message::AttachCapability { owner_pid, token }
        }
        Kind::DONE => Message::Done { value: r.u64() },
        Kind::ERROR => {
            let raw = r.u32();
            let code = ErrorCode::from_raw(raw).ok_or_else(|| bad("code", format!("unknown error code {raw}")))?;
            check_reserved("reserved", r.u32())?;
            Message::Error { code, detail: r.u64() }
        }
        Kind::CLAIMED => {
            let offer_id = r.u64();
            let len = check_len("len", r.u64(), false)?;
            let perms = perms("perms", r.u32())?;
            if perms.is_empty() {
                return Err(bad("perms", "a claim grants at least one permission"));
            }
            check_reserved("reserved", r.u32())?;
            Message::Claimed { offer_id, len, perms }
        }
        Kind::OFFERS => {
            let total = r.u32();
            let count = r.u32() as usize;
            if count > MAX_LIST || count > total as usize {
                return Err(bad("count", format!("{count} entries with total {total} (max {MAX_LIST})")));
            }
            let expected = 8 + count * OFFER_INFO_LEN;
            if body.len() != expected {
                return Err(WireError::BadSize { kind: name, expected, actual: body.len() });
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let src_pid = check_pid("entries.src_pid", r.u32())?;
                let dest_pid = check_pid("entries.dest_pid", r.u32())?;
                let addr = check_addr("entries.addr", r.u64())?;
                let len = check_len("entries.len", r.u64(), false)?;
                let raw = r.u32();
                let flags = OfferFlags::from_bits(raw).ok_or_else(|| bad("entries.flags", format!("unknown bits {raw:#x}")))?;
                let raw = r.u32();
                let state = OfferState::from_raw(raw).ok_or_else(|| bad("entries.state", format!("unknown state {raw}")))?;
                entries.push(OfferInfo { src_pid, dest_pid, addr, len, flags, state: Some(state) });
            }
            Message::Offers { total, entries }
        }
        Kind::DROP_REQUEST => {
            let offer_id = r.u64();
            let addr = check_addr("addr", r.u64())?;
            let len = check_len("len", r.u64(), false)?;
            let drop = perms("drop", r.u32())?;
            check_reserved("reserved", r.u32())?;
            Message::DropRequest { offer_id, addr, len, drop }
        }
        Kind::ATTACHED => {
            let raw = r.u32();
            let mode = CapMode::from_raw(raw).ok_or_else(|| bad("mode", format!("unknown mode {raw}")))?;
            check_reserved("reserved", r.u32())?;
            Message::Attached { mode }
        }
        _ => return Err(WireError::UnknownKind { kind }),
    };
    if fds != msg.fd_count() {
        return Err(WireError::FdCount { kind: name, expected: msg.fd_count(), got: fds });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Offer { dest_pid: 7, flags: OfferFlags::GRANT_R | OfferFlags::DISOWN, addr: 0x1000, len: 0x2000 },
            Message::Offer { dest_pid: 7, flags: OfferFlags::GRANT_R, addr: 0x1000, len: 0 },
            Message::Claim { src_pid: 9, flags: OfferFlags::GRANT_ALL, addr: 0x7000 },
            Message::List { max: MAX_LIST as u32 },
            Message::DropDone { offer_id: 3, errno: 12 },
            Message::RegisterRegion,
            Message::AttachCapability { owner_pid: 1, token: u64::MAX },
            Message::Done { value: 5 },
            Message::Error { code: ErrorCode::BufferTooSmall, detail: 17 },
            Message::Claimed { offer_id: 1, len: 4096, perms: Perms::R },
            Message::Offers {
                total: 3,
                entries: vec![OfferInfo {
                    src_pid: 1,
                    dest_pid: 2,
                    addr: 0x4000,
                    len: 0x1000,
                    flags: OfferFlags::GRANT_W,
                    state: Some(OfferState::Pending),
                }],
            },
            Message::DropRequest { offer_id: 2, addr: 0x5000, len: 0x1000, drop: Perms::RW },
            Message::Attached { mode: CapMode::Move },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(decode_message(&m.encode()), Ok(m.clone()), "{m:?}");
        }
    }

    #[test]
    fn every_truncation_and_single_byte_flip_is_an_error_or_a_valid_message() {
        for m in samples() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(decode_message(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    if let Ok(d) = decode_message(&b) {
                        // Whatever decodes must re-encode to the same bytes: nothing is lost or invented.
                        assert_eq!(d.encode(), b);
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_fd_count_in_the_header_is_refused() {
        let mut b = Message::RegisterRegion.encode();
        b[12] = 2;
        assert_eq!(decode_message(&b), Err(WireError::FdCount { kind: "RegisterRegion", expected: 1, got: 2 }));
    }

    #[test]
    fn oversized_list_and_lying_counts_are_refused() {
        let mut b = Message::Offers { total: 0, entries: vec![] }.encode();
        b[20] = 1; // count 1 > total 0
        assert!(matches!(decode_message(&b), Err(WireError::BadField { field: "count", .. })));
        assert!(matches!(decode_message(&vec![0u8; MAX_MESSAGE + 1]), Err(WireError::TooLong { .. })));
    }
}
