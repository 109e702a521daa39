//! The shared region descriptor: owner, per-process mapping table and
//! capability table, in a `#[repr(C)]` block of atomics at the start of a
//! region's data area. Every value read from it is validated as hostile.
#![allow(unsafe_code)]

use std::os::fd::AsFd;
use std::ptr::NonNull;

use numashm_region::Region;
use rustix::mm::MapFlags;

use crate::error::{DescriptorError, Errno};
use crate::flags::{CapMode, Perms};
use numashm_region::process::{identify, is_same_live_process, self_pid, IdentifyError, PID_MAX};
use crate::sync::{AtomicU64, Ordering};

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
const PAGE: usize = 4096;

// All orderings in this module are SeqCst: the descriptor is off every hot
// path, and one total order over owner, mapping and capability words makes the
// seqlock-style snapshots below correct without per-site reasoning.
const SC: Ordering = Ordering::SeqCst;

/// Mapping slot. `key` = pid (low 32 bits) | sequence (high 32). pid 0 = free.
/// An odd sequence means the owning process is writing the slot; readers retry.
#[repr(C)]
struct MappingSlot {
    key: AtomicU64,
    start_time: AtomicU64,
    addr: AtomicU64,
    len: AtomicU64,
    perms: AtomicU64,
}

/// Capability slot. `state` = status (bits 0..8) | mode (8..16) | sequence (16..64).
#[repr(C)]
struct CapSlot {
    state: AtomicU64,
    token: AtomicU64,
    target_pid: AtomicU64,
    target_start: AtomicU64,
}

#[repr(C)]
struct RawDescriptor {
    magic: AtomicU64,
    version: AtomicU64,
    /// MAX_MAPPINGS (low 32) | MAX_CAPABILITIES (high 32).
    slots: AtomicU64,
    /// Owner pid (low 32) | generation (high 32); changes only by CAS.
    owner: AtomicU64,
    mappings: [MappingSlot; MAX_MAPPINGS],
    caps: [CapSlot; MAX_CAPABILITIES],
}

const _: () = assert!(std::mem::size_of::<MappingSlot>() == 40);
const _: () = assert!(std::mem::size_of::<CapSlot>() == 32);
const _: () = assert!(std::mem::size_of::<RawDescriptor>() == 32 + 40 * MAX_MAPPINGS + 32 * MAX_CAPABILITIES);
const _: () = assert!(std::mem::size_of::<RawDescriptor>() <= DESCRIPTOR_LEN);

const CAP_FREE: u64 = 0;
const CAP_WRITING: u64 = 1;
const CAP_ACTIVE: u64 = 2;
const CAP_USED: u64 = 3;
const CAP_REVOKED: u64 = 4;

fn cap_word(status: u64, mode: u64, seq: u64) -> u64 {
    status | mode << 8 | seq << 16
}

/// Where a process mapped the region, as recorded in the descriptor.
///
/// # Examples
///
/// ```
/// use numashm_ownership::{Descriptor, Perms};
/// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-mapinfo")?;
/// let desc = Descriptor::create(&region)?;
/// let me = desc.get_mapping(std::process::id())?.unwrap();
/// assert_eq!(me.addr, region.as_ptr() as usize);
/// assert_eq!(me.perms, Perms::RW);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingInfo {
    /// The process.
    pub pid: u32,
    /// Its start time (clock ticks since boot), guarding against pid reuse.
    pub start_time: u64,
    /// Address of the mapping in that process.
    pub addr: usize,
    /// Bytes mapped.
    pub len: usize,
    /// Permissions.
    pub perms: Perms,
}

/// The current owner.
///
/// # Examples
///
/// ```
/// use numashm_ownership::Descriptor;
/// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-owner")?;
/// let desc = Descriptor::create(&region)?;
/// let owner = desc.owner()?;
/// assert_eq!(owner.pid, std::process::id());
/// assert!(desc.owner_alive()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owner's pid.
    pub pid: u32,
    /// Bumped by every change of owner.
    pub generation: u32,
}

/// A view of the descriptor at the start of a region's data area.
///
/// Borrowing the region keeps the mapping alive for as long as the view.
/// Every field is read as hostile bytes: another process with write access
/// may have put anything there, and the result is a typed error, never a panic.
///
/// # Examples
///
/// ```
/// use numashm_ownership::{CapMode, Descriptor};
/// use numashm_region::RegionOptions;
/// let region = RegionOptions::new(64 << 10).create_anonymous("doc-desc")?;
/// let desc = Descriptor::create(&region)?;
/// let me = std::process::id();
/// let token = desc.create_capability(me, CapMode::ReadOnly)?;
/// assert_eq!(desc.redeem_capability(token, me)?, CapMode::ReadOnly);
/// desc.revoke(token)?;
/// assert!(desc.redeem_capability(token, me).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Descriptor<'r> {
    region: &'r Region,
    raw: NonNull<RawDescriptor>,
}

impl<'r> Descriptor<'r> {
    fn locate(region: &'r Region) -> Result<NonNull<RawDescriptor>, DescriptorError> {
        let off = region.data_offset();
        let available = region.len().saturating_sub(off);
        if available < DESCRIPTOR_LEN {
            return Err(DescriptorError::TooSmall { available, needed: DESCRIPTOR_LEN });
        }
        // SAFETY: `off + DESCRIPTOR_LEN <= len()` (checked), so the pointer is
        // inside the region's mapped part, which stays mapped while `region` is borrowed.
        let ptr = unsafe { region.as_ptr().add(off) };
        debug_assert_eq!(ptr as usize % std::mem::align_of::<RawDescriptor>(), 0);
        NonNull::new(ptr.cast()).ok_or(DescriptorError::corrupt("base", None, "null mapping"))
    }

    /// Every store into the descriptor goes through a writable mapping: a CAS
    /// on a read-only one would fault, not fail.
    fn writable(&self) -> Result<(), DescriptorError> {
        if self.region.is_writable() {
            Ok(())
        } else {
            Err(DescriptorError::Permission { asked: Perms::W, detail: "the region is attached read-only here: the descriptor cannot be changed" })
        }
    }

    fn raw(&self) -> &RawDescriptor {
        // SAFETY: 1. `raw` points at DESCRIPTOR_LEN mapped bytes inside
        // `self.region`, borrowed for 'r (see `locate`); 2. it is page-aligned;
        // 3. RawDescriptor is made only of AtomicU64, valid for every bit
        // pattern, and shared mutation goes through atomics only.
        unsafe { self.raw.as_ref() }
    }

    /// Initialises a descriptor in a fresh, writable region and makes the
    /// calling process its owner, with its mapping recorded.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::TooSmall`], [`DescriptorError::Permission`] when the
    /// region is read-only here, and `Corrupt { field: "magic" }` when a
    /// descriptor is already there.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-create")?;
    /// let desc = numashm_ownership::Descriptor::create(&region)?;
    /// assert!(desc.is_owner()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(region: &'r Region) -> Result<Self, DescriptorError> {
        if !region.is_writable() {
            return Err(DescriptorError::Permission { asked: Perms::W, detail: "the region is attached read-only" });
        }
        let raw = Self::locate(region)?;
        let desc = Descriptor { region, raw };
        if desc.raw().magic.load(SC) != 0 {
            return Err(DescriptorError::corrupt("magic", None, "a descriptor (or data) is already there"));
        }
        // The region's data area is zero-filled memory nobody else has been told
        // about; the atomics are written through their own stores (zero is a
        // valid AtomicU64), then the magic publishes the whole block.
        let r = desc.raw();
        r.version.store(DESCRIPTOR_VERSION, SC);
        r.slots.store(MAX_MAPPINGS as u64 | (MAX_CAPABILITIES as u64) << 32, SC);
        r.owner.store(u64::from(self_pid()), SC);
        r.magic.store(DESCRIPTOR_MAGIC, SC);
        desc.register()?;
        Ok(desc)
    }

    /// Opens the descriptor of an existing region, validating its header and
    /// every table slot.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::Corrupt`] naming the first bad field (and slot).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_ownership::Descriptor;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(64 << 10).create_anonymous("doc-open")?;
    /// Descriptor::create(&host)?;
    /// let guest = Region::attach_fd(host.as_fd().try_clone_to_owned()?)?;
    /// let desc = Descriptor::open(&guest)?;
    /// assert_eq!(desc.owner()?.pid, std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(region: &'r Region) -> Result<Self, DescriptorError> {
        let raw = Self::locate(region)?;
        let desc = Descriptor { region, raw };
        desc.validate()?;
        Ok(desc)
    }

    /// Re-checks every field (what [`Descriptor::open`] does).
    ///
    /// # Errors
    ///
    /// [`DescriptorError::Corrupt`] naming the first bad field.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-validate")?;
    /// numashm_ownership::Descriptor::create(&region)?.validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate(&self) -> Result<(), DescriptorError> {
        let r = self.raw();
        let magic = r.magic.load(SC);
        if magic != DESCRIPTOR_MAGIC {
            return Err(DescriptorError::corrupt("magic", None, format!("{magic:#018x} is not a descriptor")));
        }
        let v = r.version.load(SC);
        if v != DESCRIPTOR_VERSION {
            return Err(DescriptorError::corrupt("version", None, format!("{v}, this build reads {DESCRIPTOR_VERSION}")));
        }
        let s = r.slots.load(SC);
        if s != MAX_MAPPINGS as u64 | (MAX_CAPABILITIES as u64) << 32 {
            return Err(DescriptorError::corrupt("slots", None, format!("{s:#x} does not match this build's tables")));
        }
        self.owner()?;
        for i in 0..MAX_MAPPINGS {
            self.read_mapping(i)?;
        }
        for (i, c) in r.caps.iter().enumerate() {
            let st = c.state.load(SC);
            let (status, mode) = (st & 0xff, (st >> 8) & 0xff);
            if status > CAP_REVOKED {
                return Err(DescriptorError::corrupt("caps.state", Some(i), format!("unknown status {status}")));
            }
            if status >= CAP_ACTIVE && CapMode::from_raw(mode as u32).is_none() {
                return Err(DescriptorError::corrupt("caps.mode", Some(i), format!("unknown mode {mode}")));
            }
            let t = c.target_pid.load(SC);
            if status >= CAP_ACTIVE && (t == 0 || t > u64::from(PID_MAX)) {
                return Err(DescriptorError::corrupt("caps.target_pid", Some(i), format!("{t} is not a pid")));
            }
        }
        Ok(())
    }

    /// The region this descriptor lives in.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-region")?;
    /// let desc = numashm_ownership::Descriptor::create(&region)?;
    /// assert_eq!(desc.region().len(), region.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn region(&self) -> &'r Region {
        self.region
    }

    /// The current owner (validated: a pid in range).
    ///
    /// # Errors
    ///
    /// `Corrupt { field: "owner" }`.
    ///
    /// # Examples
    ///
    /// See [`Owner`].
    pub fn owner(&self) -> Result<Owner, DescriptorError> {
        let w = self.raw().owner.load(SC);
        let pid = w as u32;
        if pid == 0 || pid > PID_MAX {
            return Err(DescriptorError::corrupt("owner", None, format!("{pid} is not a pid")));
        }
        Ok(Owner { pid, generation: (w >> 32) as u32 })
    }

    /// Whether the calling process is the owner.
    ///
    /// # Errors
    ///
    /// As [`Descriptor::owner`].
    ///
    /// # Examples
    ///
    /// See [`Descriptor::create`].
    pub fn is_owner(&self) -> Result<bool, DescriptorError> {
        Ok(self.owner()?.pid == self_pid())
    }

    /// Whether the owner process is alive, checked with `pidfd_open` and, when the
    /// owner recorded a mapping, its start time (so a reused pid does not count).
    ///
    /// # Errors
    ///
    /// As [`Descriptor::owner`].
    ///
    /// # Examples
    ///
    /// See [`Owner`].
    pub fn owner_alive(&self) -> Result<bool, DescriptorError> {
        let owner = self.owner()?;
        Ok(match self.get_mapping(owner.pid)? {
            Some(m) => is_same_live_process(owner.pid, m.start_time),
            None => identify(owner.pid).is_ok(),
        })
    }

    /// Makes `new_owner` the owner. Only the owner may call this; the target
    /// must be alive (`pidfd_open`) and attached (a mapping recorded, with the
    /// same start time, so a successor reusing the pid does not qualify). The
    /// change is one compare-and-swap of the owner word: exactly one owner at
    /// any instant.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::NotOwner`], [`DescriptorError::TargetGone`],
    /// [`DescriptorError::TargetNotAttached`], [`DescriptorError::OwnerChanged`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{Descriptor, DescriptorError};
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-xfer")?;
    /// let desc = Descriptor::create(&region)?;
    /// // pid 1 is alive but not attached.
    /// assert!(matches!(desc.transfer_ownership(1), Err(DescriptorError::TargetNotAttached { pid: 1 })));
    /// // To ourselves: allowed, and bumps the generation.
    /// let g = desc.owner()?.generation;
    /// desc.transfer_ownership(std::process::id())?;
    /// assert_eq!(desc.owner()?.generation, g + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "pidfd_open")]
    pub fn transfer_ownership(&self, new_owner: u32) -> Result<Owner, DescriptorError> {
        self.writable()?;
        let me = self_pid();
        let cur_word = self.raw().owner.load(SC);
        let cur = self.owner()?;
        if cur.pid != me || cur_word != (u64::from(cur.pid) | u64::from(cur.generation) << 32) {
            return Err(DescriptorError::NotOwner { owner: cur.pid, caller: me });
        }
        let target = match identify(new_owner) {
            Ok(id) => id,
            Err(IdentifyError::Gone | IdentifyError::Invalid) => return Err(DescriptorError::TargetGone { pid: new_owner }),
            Err(IdentifyError::Sys(op, e)) => return Err(DescriptorError::sys(op, e)),
        };
        match self.get_mapping(new_owner)? {
            Some(m) if m.start_time == target.start_time => {}
            _ => return Err(DescriptorError::TargetNotAttached { pid: new_owner }),
        }
        let next = Owner { pid: new_owner, generation: cur.generation.wrapping_add(1) };
        let next_word = u64::from(next.pid) | u64::from(next.generation) << 32;
        self.raw()
            .owner
            .compare_exchange(cur_word, next_word, SC, SC)
            .map_err(|_| DescriptorError::OwnerChanged)?;
        Ok(next)
    }

    fn read_mapping(&self, i: usize) -> Result<Option<MappingInfo>, DescriptorError> {
        let s = &self.raw().mappings[i];
        // A writer holds a slot only for a few stores; a slot stuck odd
        // belongs to a process that died mid-write and reads as busy.
        for _ in 0..1000 {
            let k1 = s.key.load(SC);
            let pid = k1 as u32;
            if pid == 0 {
                return Ok(None);
            }
            if (k1 >> 32) & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            let info = (s.start_time.load(SC), s.addr.load(SC), s.len.load(SC), s.perms.load(SC));
            if s.key.load(SC) != k1 {
                continue;
            }
            if pid > PID_MAX {
                return Err(DescriptorError::corrupt("mappings.pid", Some(i), format!("{pid} is not a pid")));
            }
            let perms = u32::try_from(info.3).ok().and_then(Perms::from_bits).ok_or_else(|| {
                DescriptorError::corrupt("mappings.perms", Some(i), format!("unknown bits {:#x}", info.3))
            })?;
            let (addr, len) = (info.1 as usize, info.2 as usize);
            if addr % PAGE != 0 || len % PAGE != 0 || len == 0 || addr.checked_add(len).is_none() {
                return Err(DescriptorError::corrupt("mappings.addr", Some(i), format!("{addr:#x}+{len:#x}")));
            }
            return Ok(Some(MappingInfo { pid, start_time: info.0, addr, len, perms }));
        }
        Ok(None)
    }

    /// Where process `pid` mapped the region, if it recorded a mapping.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::Corrupt`] when a slot holds impossible values.
    ///
    /// # Examples
    ///
    /// See [`MappingInfo`].
    pub fn get_mapping(&self, pid: u32) -> Result<Option<MappingInfo>, DescriptorError> {
        for i in 0..MAX_MAPPINGS {
            if let Some(m) = self.read_mapping(i)? {
                if m.pid == pid {
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    /// Records `addr+len` as the calling process's mapping.
    fn record(&self, addr: usize, len: usize, perms: Perms) -> Result<(), DescriptorError> {
        self.writable()?;
        let me = self_pid();
        if self.get_mapping(me)?.is_some() {
            return Err(DescriptorError::AlreadyMapped { pid: me });
        }
        let start = match identify(me) {
            Ok(id) => id.start_time,
            Err(IdentifyError::Sys(op, e)) => return Err(DescriptorError::sys(op, e)),
            Err(_) => return Err(DescriptorError::sys("identify self", Errno::SRCH)),
        };
        for pass in 0..2 {
            for s in &self.raw().mappings {
                let k = s.key.load(SC);
                if k as u32 != 0 {
                    continue;
                }
                let seq = (k >> 32) | 1; // odd: being written
                let busy = u64::from(me) | seq << 32;
                if s.key.compare_exchange(k, busy, SC, SC).is_err() {
                    continue;
                }
                s.start_time.store(start, SC);
                s.addr.store(addr as u64, SC);
                s.len.store(len as u64, SC);
                s.perms.store(u64::from(perms.bits()), SC);
                s.key.store(u64::from(me) | (seq + 1) << 32, SC);
                return Ok(());
            }
            if pass == 0 {
                self.prune_dead();
            }
        }
        Err(DescriptorError::TableFull { table: "mapping", slots: MAX_MAPPINGS })
    }

    /// Frees mapping slots of processes that have exited (or whose pid was reused).
    fn prune_dead(&self) {
        if self.writable().is_err() {
            return;
        }
        for i in 0..MAX_MAPPINGS {
            if let Ok(Some(m)) = self.read_mapping(i) {
                if !is_same_live_process(m.pid, m.start_time) {
                    let s = &self.raw().mappings[i];
                    let k = s.key.load(SC);
                    if k as u32 == m.pid && (k >> 32) & 1 == 0 {
                        let _ = s.key.compare_exchange(k, ((k >> 32) + 2) << 32, SC, SC);
                    }
                }
            }
        }
    }

    fn forget(&self) -> Result<(), DescriptorError> {
        self.writable()?;
        let me = self_pid();
        for s in &self.raw().mappings {
            let k = s.key.load(SC);
            if k as u32 == me && (k >> 32) & 1 == 0 {
                // Sequence moves on (even), pid 0: free.
                if s.key.compare_exchange(k, ((k >> 32) + 2) << 32, SC, SC).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(DescriptorError::TargetNotAttached { pid: me })
    }

    /// Records the region's own mapping in this process (base address, mapped
    /// length, read-write or read-only as attached), which is what makes this
    /// process "attached" for [`Descriptor::transfer_ownership`].
    ///
    /// # Errors
    ///
    /// [`DescriptorError::AlreadyMapped`], [`DescriptorError::TableFull`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_ownership::Descriptor;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(64 << 10).create_anonymous("doc-register")?;
    /// let desc = Descriptor::create(&host)?; // registers the creator
    /// assert!(desc.register().is_err()); // once per process
    /// desc.unregister()?;
    /// desc.register()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register(&self) -> Result<(), DescriptorError> {
        let perms = if self.region.is_writable() { Perms::RW } else { Perms::R };
        self.record(self.region.as_ptr() as usize, self.region.len(), perms)
    }

    /// Removes the calling process's recorded mapping (without unmapping anything).
    ///
    /// # Errors
    ///
    /// [`DescriptorError::TargetNotAttached`] when none is recorded.
    ///
    /// # Examples
    ///
    /// See [`Descriptor::register`].
    pub fn unregister(&self) -> Result<(), DescriptorError> {
        self.forget()
    }

    /// Maps the whole region (its current length) into the calling process a
    /// second time, at `at` (`MAP_FIXED_NOREPLACE`: an address already in use
    /// is an error, never overwritten) or wherever the kernel chooses, and
    /// records the mapping in the descriptor. One recorded mapping per process:
    /// the region's own mapping, if [`register`](Descriptor::register)ed, must be
    /// unregistered first.
    ///
    /// Write permission needs a region attached read-write (the fd's access mode
    /// decides: the kernel refuses `PROT_WRITE` on a read-only fd).
    ///
    /// # Errors
    ///
    /// [`DescriptorError::AddressTaken`], [`DescriptorError::Misaligned`],
    /// [`DescriptorError::Permission`], [`DescriptorError::AlreadyMapped`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{Descriptor, DescriptorError, Perms};
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-map")?;
    /// let desc = Descriptor::create(&region)?;
    /// desc.unregister()?;
    /// let m = desc.map(None, Perms::R)?;
    /// assert_eq!(desc.get_mapping(std::process::id())?.unwrap().addr, m.addr());
    /// // The region's own base is taken: NOREPLACE refuses it.
    /// let taken = desc.map(Some(region.as_ptr() as usize), Perms::R);
    /// assert!(matches!(taken, Err(DescriptorError::AlreadyMapped { .. })));
    /// m.unmap()?;
    /// let taken = desc.map(Some(region.as_ptr() as usize), Perms::R);
    /// assert!(matches!(taken, Err(DescriptorError::AddressTaken { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "mmap")]
    #[doc(alias = "MAP_FIXED_NOREPLACE")]
    pub fn map(&self, at: Option<usize>, perms: Perms) -> Result<Mapping<'_, 'r>, DescriptorError> {
        let me = self_pid();
        if self.get_mapping(me)?.is_some() {
            return Err(DescriptorError::AlreadyMapped { pid: me });
        }
        if perms.contains(Perms::W) && !self.region.is_writable() {
            return Err(DescriptorError::Permission { asked: perms, detail: "the region is attached read-only here" });
        }
        if !perms.contains(Perms::R) {
            return Err(DescriptorError::Permission { asked: perms, detail: "a mapping needs read permission" });
        }
        let len = self.region.len();
        let (hint, flags) = match at {
            Some(a) if a % PAGE != 0 || a == 0 => {
                return Err(DescriptorError::Misaligned { what: "address", value: a, page: PAGE })
            }
            Some(a) => (a, MapFlags::SHARED | MapFlags::FIXED_NOREPLACE),
            None => (0, MapFlags::SHARED),
        };
        // SAFETY: a new shared mapping of the region's fd; with a requested
        // address, FIXED_NOREPLACE never replaces an existing mapping (EEXIST),
        // so no memory anyone uses is touched.
        let ptr = unsafe { rustix::mm::mmap(hint as *mut _, len, perms.prot(), flags, self.region.as_fd(), 0) };
        let ptr = match ptr {
            Ok(p) => p,
            Err(Errno::EXIST) => return Err(DescriptorError::AddressTaken { addr: hint }),
            Err(e @ (Errno::ACCESS | Errno::PERM)) => {
                let _ = e;
                return Err(DescriptorError::Permission { asked: perms, detail: "the kernel refused: the fd does not allow it" });
            }
            Err(e) => return Err(DescriptorError::sys("mmap", e)),
        };
        let mapping = Mapping { desc: self, addr: ptr as usize, len };
        if at.is_some_and(|a| a != mapping.addr) {
            // A kernel older than 4.17 ignores NOREPLACE and treats it as a hint.
            return Err(DescriptorError::AddressTaken { addr: hint });
        }
        self.record(mapping.addr, len, perms)?;
        Ok(mapping)
    }

    /// Creates a capability: a random, non-zero 64-bit token bound to
    /// `target_pid` (and its start time), registered in the descriptor. Only
    /// the owner may create capabilities.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::NotOwner`], [`DescriptorError::TargetGone`],
    /// [`DescriptorError::TableFull`].
    ///
    /// # Examples
    ///
    /// See [`Descriptor`].
    #[doc(alias = "getrandom")]
    pub fn create_capability(&self, target_pid: u32, mode: CapMode) -> Result<u64, DescriptorError> {
        self.writable()?;
        let me = self_pid();
        let owner = self.owner()?;
        if owner.pid != me {
            return Err(DescriptorError::NotOwner { owner: owner.pid, caller: me });
        }
        let target = match identify(target_pid) {
            Ok(id) => id,
            Err(IdentifyError::Sys(op, e)) => return Err(DescriptorError::sys(op, e)),
            Err(_) => return Err(DescriptorError::TargetGone { pid: target_pid }),
        };
        let token = random_token()?;
        for s in &self.raw().caps {
            let st = s.state.load(SC);
            let status = st & 0xff;
            if !matches!(status, CAP_FREE | CAP_USED | CAP_REVOKED) {
                continue;
            }
            let seq = (st >> 16).wrapping_add(1) & 0xffff_ffff_ffff;
            if s.state.compare_exchange(st, cap_word(CAP_WRITING, 0, seq), SC, SC).is_err() {
                continue;
            }
            s.token.store(token, SC);
            s.target_pid.store(u64::from(target.pid), SC);
            s.target_start.store(target.start_time, SC);
            s.state.store(cap_word(CAP_ACTIVE, mode as u64, seq), SC);
            return Ok(token);
        }
        Err(DescriptorError::TableFull { table: "capability", slots: MAX_CAPABILITIES })
    }

    /// Revokes an active capability. Only the owner may revoke.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::NotOwner`], [`DescriptorError::NoSuchCapability`].
    ///
    /// # Examples
    ///
    /// See [`Descriptor`].
    pub fn revoke(&self, token: u64) -> Result<(), DescriptorError> {
        self.writable()?;
        let me = self_pid();
        let owner = self.owner()?;
        if owner.pid != me {
            return Err(DescriptorError::NotOwner { owner: owner.pid, caller: me });
        }
        let (slot, st, _) = self.find_active(token)?;
        let s = &self.raw().caps[slot];
        s.state
            .compare_exchange(st, cap_word(CAP_REVOKED, (st >> 8) & 0xff, st >> 16), SC, SC)
            .map(|_| ())
            .map_err(|_| DescriptorError::NoSuchCapability)
    }

    /// Finds the active slot holding `token`: (slot, state word, mode).
    fn find_active(&self, token: u64) -> Result<(usize, u64, CapMode), DescriptorError> {
        if token == 0 {
            return Err(DescriptorError::NoSuchCapability);
        }
        for (i, s) in self.raw().caps.iter().enumerate() {
            let st = s.state.load(SC);
            if st & 0xff != CAP_ACTIVE || s.token.load(SC) != token {
                continue;
            }
            // The token belongs to this state word only if the word is unchanged.
            if s.state.load(SC) != st {
                continue;
            }
            let raw = ((st >> 8) & 0xff) as u32;
            let mode = CapMode::from_raw(raw)
                .ok_or_else(|| DescriptorError::corrupt("caps.mode", Some(i), format!("unknown mode {raw}")))?;
            return Ok((i, st, mode));
        }
        Err(DescriptorError::NoSuchCapability)
    }

    /// Redeems `token` for process `claimant` (which must be alive and be the
    /// process the capability is bound to, same start time). A `Move`
    /// capability is consumed (one CAS, so it works once) and makes the
    /// claimant the owner. Called by the broker with the pid the kernel
    /// reported for the socket peer, or by a process for itself.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::NoSuchCapability`], [`DescriptorError::WrongProcess`],
    /// [`DescriptorError::TargetGone`], [`DescriptorError::OwnerChanged`].
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{CapMode, Descriptor, DescriptorError};
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-redeem")?;
    /// let desc = Descriptor::create(&region)?;
    /// let me = std::process::id();
    /// let t = desc.create_capability(me, CapMode::Move)?;
    /// assert!(matches!(desc.redeem_capability(t, 1), Err(DescriptorError::WrongProcess { .. })));
    /// assert_eq!(desc.redeem_capability(t, me)?, CapMode::Move);
    /// assert!(matches!(desc.redeem_capability(t, me), Err(DescriptorError::NoSuchCapability)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redeem_capability(&self, token: u64, claimant: u32) -> Result<CapMode, DescriptorError> {
        let (slot, st, mode) = self.find_active(token)?;
        let s = &self.raw().caps[slot];
        let bound = s.target_pid.load(SC);
        let bound_start = s.target_start.load(SC);
        if s.state.load(SC) != st {
            return Err(DescriptorError::NoSuchCapability);
        }
        if bound != u64::from(claimant) {
            return Err(DescriptorError::WrongProcess { bound: bound as u32, caller: claimant });
        }
        if !is_same_live_process(claimant, bound_start) {
            // Same pid number, different (or no) process: the bound one is gone.
            return Err(DescriptorError::TargetGone { pid: claimant });
        }
        if mode == CapMode::Move {
            self.writable()?;
            s.state
                .compare_exchange(st, cap_word(CAP_USED, mode as u64, st >> 16), SC, SC)
                .map_err(|_| DescriptorError::NoSuchCapability)?;
            let r = &self.raw().owner;
            let cur = r.load(SC);
            let gen = (cur >> 32).wrapping_add(1) & 0xffff_ffff;
            r.compare_exchange(cur, u64::from(claimant) | gen << 32, SC, SC)
                .map_err(|_| DescriptorError::OwnerChanged)?;
        }
        Ok(mode)
    }

    /// Attaches to a region through `fd` with a capability for the calling
    /// process. `ReadOnly` attaches read-only; `ReadWrite` read-write; `Move`
    /// read-write and makes the caller the owner. For `ReadWrite` and `Move` the
    /// returned region has this process's mapping registered (a read-only
    /// attacher cannot write the table).
    ///
    /// This in-process check is convention: whoever holds a read-write fd can
    /// attach anyway. The kernel-checked path is the broker's
    /// [`BrokerClient::attach_with_capability`](crate::BrokerClient::attach_with_capability),
    /// where the fd is only handed out to the bound pid (SO_PEERCRED).
    ///
    /// # Errors
    ///
    /// Region attach errors, then as [`Descriptor::redeem_capability`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_ownership::{CapMode, Descriptor};
    /// let host = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-capattach")?;
    /// let desc = Descriptor::create(&host)?;
    /// let t = desc.create_capability(std::process::id(), CapMode::ReadOnly)?;
    /// desc.unregister()?; // one registration per process; this example is one process
    /// let guest = Descriptor::attach_with_capability(host.as_fd().try_clone_to_owned()?, t)?;
    /// assert!(!guest.is_writable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_with_capability(fd: std::os::fd::OwnedFd, token: u64) -> Result<Region, DescriptorError> {
        use numashm_region::AttachOptions;
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone().map_err(|e| DescriptorError::sys("dup", Errno::from_io_error(&e).unwrap_or(Errno::BADF)))
        };
        // Read-write when the fd allows it: redeeming a move token writes the descriptor.
        let probe = match Region::attach_fd_with(dup(&fd)?, AttachOptions { read_only: false }) {
            Ok(r) => r,
            Err(_) => Region::attach_fd_with(dup(&fd)?, AttachOptions { read_only: true })?,
        };
        let desc = Descriptor::open(&probe)?;
        let mode = desc.redeem_capability(token, self_pid())?;
        if mode != CapMode::ReadOnly {
            desc.register()?;
            return Ok(probe);
        }
        drop(probe);
        // A read-only attacher cannot write the mapping table: it stays unrecorded.
        Ok(Region::attach_fd_with(fd, AttachOptions { read_only: true })?)
    }
}

/// A mapping made by [`Descriptor::map`]; unmapped (and its record removed)
/// by [`Mapping::unmap`] or on drop.
///
/// # Examples
///
/// See [`Descriptor::map`].
#[derive(Debug)]
pub struct Mapping<'d, 'r> {
    desc: &'d Descriptor<'r>,
    addr: usize,
    len: usize,
}

impl Mapping<'_, '_> {
    /// Where the mapping starts in this process.
    ///
    /// # Examples
    ///
    /// See [`Descriptor::map`].
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Bytes mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-maplen")?;
    /// let desc = numashm_ownership::Descriptor::create(&region)?;
    /// desc.unregister()?;
    /// assert_eq!(desc.map(None, numashm_ownership::Perms::R)?.len(), 64 << 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a mapping holds at least the header page.
    ///
    /// # Examples
    ///
    /// ```
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-mapempty")?;
    /// let desc = numashm_ownership::Descriptor::create(&region)?;
    /// desc.unregister()?;
    /// assert!(!desc.map(None, numashm_ownership::Perms::R)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies bytes out of the mapping at `offset`.
    ///
    /// # Errors
    ///
    /// `Misaligned { what: "range" }` when the range is outside the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{Descriptor, Perms};
    /// let region = numashm_region::RegionOptions::new(64 << 10).create_anonymous("doc-mapread")?;
    /// region.write_at(32 << 10, b"seen twice")?;
    /// let desc = Descriptor::create(&region)?;
    /// desc.unregister()?;
    /// let m = desc.map(None, Perms::R)?;
    /// let mut buf = [0u8; 10];
    /// m.read_at(32 << 10, &mut buf)?;
    /// assert_eq!(&buf, b"seen twice");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), DescriptorError> {
        if offset.checked_add(buf.len()).map_or(true, |end| end > self.len) {
            return Err(DescriptorError::Misaligned { what: "range", value: offset, page: PAGE });
        }
        // SAFETY: 1. the range is inside this mapping (checked), which `map`
        // made with PROT_READ (it refuses permissions without R);
        // 2. `buf` is a distinct local buffer; shared bytes are copied, no
        // reference into the mapping is given out.
        unsafe { std::ptr::copy_nonoverlapping((self.addr as *const u8).add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Unmaps and removes the record.
    ///
    /// # Errors
    ///
    /// The munmap errno.
    ///
    /// # Examples
    ///
    /// See [`Descriptor::map`].
    #[doc(alias = "munmap")]
    pub fn unmap(mut self) -> Result<(), DescriptorError> {
        let r = self.release();
        std::mem::forget(self);
        r
    }

    fn release(&mut self) -> Result<(), DescriptorError> {
        let _ = self.desc.forget();
        // SAFETY: unmaps exactly the mapping `map` created, which nothing else
        // owns; `self` is consumed (or dropped), so no access through it follows.
        unsafe { rustix::mm::munmap(self.addr as *mut _, self.len) }.map_err(|e| DescriptorError::sys("munmap", e))
    }
}

impl Drop for Mapping<'_, '_> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn random_token() -> Result<u64, DescriptorError> {
    loop {
        let mut b = [0u8; 8];
        rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| DescriptorError::sys("getrandom", e))?;
        let t = u64::from_le_bytes(b);
        if t != 0 {
            return Ok(t);
        }
    }
}
