//! The shared region descriptor: owner, per-process mapping table and
//! capability table, in a `#[repr(C)]` block of atomics at the start of a
//! region's data area. Every value read from it is validated as hostile.
//!
//! This file holds [`Descriptor`] (locating, creating, opening and validating
//! it); the layout, owner, mapping table and capabilities are child modules.

use std::ptr::NonNull;

use numashm_region::Region;

use crate::error::DescriptorError;
use crate::flags::{CapMode, Perms};
use numashm_region::process::{self_pid, PID_MAX};
use crate::loom::sync::atomic::Ordering;

mod capabilities;
mod mappings;
mod owner;
mod raw;

pub use mappings::{Mapping, MappingInfo};
pub use owner::Owner;
pub use raw::{DESCRIPTOR_LEN, DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION, MAX_CAPABILITIES, MAX_MAPPINGS};
use raw::{RawDescriptor, CAP_ACTIVE, CAP_REVOKED};

// All orderings in this module are SeqCst: the descriptor is off every hot
// path, and one total order over owner, mapping and capability words makes the
// seqlock-style snapshots below correct without per-site reasoning.
const SC: Ordering = Ordering::SeqCst;

/// A view of a region's descriptor (at the start of its data area, or where
/// its header records it: [`Descriptor::create_at`]).
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
    /// Where the descriptor of `region` is: the offset its header records
    /// ([`Region::descriptor_offset`]), or the start of the data area.
    fn offset_in(region: &Region) -> Result<usize, DescriptorError> {
        Ok(region.descriptor_offset()?.unwrap_or(region.data_offset()))
    }

    #[allow(unsafe_code)] // a pointer into the borrowed region.
    fn locate(region: &'r Region, off: usize) -> Result<NonNull<RawDescriptor>, DescriptorError> {
        let available = region.len().saturating_sub(off);
        if off < region.data_offset() || available < DESCRIPTOR_LEN {
            return Err(DescriptorError::TooSmall { available, needed: DESCRIPTOR_LEN });
        }
        // SAFETY: `data_offset() <= off` and `off + DESCRIPTOR_LEN <= len()`
        // (checked), so the pointer is inside the region's mapped part, past its
        // header, which stays mapped while `region` is borrowed.
        let ptr = unsafe { region.as_ptr().add(off) };
        if ptr as usize % std::mem::align_of::<RawDescriptor>() != 0 {
            return Err(DescriptorError::corrupt("offset", None, format!("{off:#x} is not aligned for a descriptor")));
        }
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

    #[allow(unsafe_code)] // a reference to the atomics there.
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
        Self::create_at(region, region.data_offset())
    }

    /// As [`Descriptor::create`], with the descriptor at `offset` (a page
    /// multiple past the region header) instead of the start of the data area:
    /// for layouts whose data area starts with something else, such as a pool
    /// (`numashm::pool`). The offset is recorded in the region header
    /// ([`Region::set_descriptor_offset`]), where [`Descriptor::open`] (and the
    /// broker) find it.
    ///
    /// # Errors
    ///
    /// As [`Descriptor::create`]; [`DescriptorError::Region`] for an offset
    /// that is not a page multiple inside the region.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use numashm_ownership::Descriptor;
    /// use numashm_region::{Region, RegionOptions};
    /// let host = RegionOptions::new(64 << 10).create_anonymous("doc-create-at")?;
    /// Descriptor::create_at(&host, 8 << 10)?;
    /// let guest = Region::attach_fd(host.as_fd().try_clone_to_owned()?)?;
    /// assert_eq!(guest.descriptor_offset()?, Some(8 << 10));
    /// assert_eq!(Descriptor::open(&guest)?.owner()?.pid, std::process::id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_at(region: &'r Region, offset: usize) -> Result<Self, DescriptorError> {
        if !region.is_writable() {
            return Err(DescriptorError::Permission { asked: Perms::W, detail: "the region is attached read-only" });
        }
        let raw = Self::locate(region, offset)?;
        let desc = Descriptor { region, raw };
        if desc.raw().magic.load(SC) != 0 {
            return Err(DescriptorError::corrupt("magic", None, "a descriptor (or data) is already there"));
        }
        // Only now: a refused create leaves the header pointing where it did.
        if offset != region.data_offset() {
            region.set_descriptor_offset(offset)?;
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

    /// Opens the descriptor of an existing region (where its header records
    /// it, else at the start of the data area), validating its header and
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
        let raw = Self::locate(region, Self::offset_in(region)?)?;
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
}
