//! The descriptor's byte layout: a `#[repr(C)]` block of atomics (header,
//! mapping table, capability table) and the capability state word.

use crate::loom::sync::atomic::AtomicU64;

/// `"NSHMOWN1"`.
pub const DESCRIPTOR_MAGIC: u64 = u64::from_le_bytes(*b"NSHMOWN1");
/// Layout version.
pub const DESCRIPTOR_VERSION: u64 = 1;
/// Slots of the mapping table.
pub const MAX_MAPPINGS: usize = 32;
/// Slots of the capability table.
pub const MAX_CAPABILITIES: usize = 32;
/// Bytes the descriptor reserves at `data_offset()`; user data may follow.
pub const DESCRIPTOR_LEN: usize = 4096;

/// Mapping slot. `key` = pid (low 32 bits) | sequence (high 32). pid 0 = free.
/// An odd sequence means the owning process is writing the slot; readers retry.
#[repr(C)]
pub(super) struct MappingSlot {
    pub(super) key: AtomicU64,
    pub(super) start_time: AtomicU64,
    pub(super) addr: AtomicU64,
    pub(super) len: AtomicU64,
    pub(super) perms: AtomicU64,
}

/// Capability slot. `state` = status (bits 0..8) | mode (8..16) | sequence (16..64).
#[repr(C)]
pub(super) struct CapSlot {
    pub(super) state: AtomicU64,
    pub(super) token: AtomicU64,
    pub(super) target_pid: AtomicU64,
    pub(super) target_start: AtomicU64,
}

#[repr(C)]
pub(super) struct RawDescriptor {
    pub(super) magic: AtomicU64,
    pub(super) version: AtomicU64,
    /// MAX_MAPPINGS (low 32) | MAX_CAPABILITIES (high 32).
    pub(super) slots: AtomicU64,
    /// Owner pid (low 32) | generation (high 32); changes only by CAS.
    pub(super) owner: AtomicU64,
    pub(super) mappings: [MappingSlot; MAX_MAPPINGS],
    pub(super) caps: [CapSlot; MAX_CAPABILITIES],
}

const _: () = assert!(std::mem::size_of::<MappingSlot>() == 40);
const _: () = assert!(std::mem::size_of::<CapSlot>() == 32);
const _: () = assert!(std::mem::size_of::<RawDescriptor>() == 32 + 40 * MAX_MAPPINGS + 32 * MAX_CAPABILITIES);
const _: () = assert!(std::mem::size_of::<RawDescriptor>() <= DESCRIPTOR_LEN);

pub(super) const CAP_FREE: u64 = 0;
pub(super) const CAP_WRITING: u64 = 1;
pub(super) const CAP_ACTIVE: u64 = 2;
pub(super) const CAP_USED: u64 = 3;
pub(super) const CAP_REVOKED: u64 = 4;

pub(super) fn cap_word(status: u64, mode: u64, seq: u64) -> u64 {
    status | mode << 8 | seq << 16
}
