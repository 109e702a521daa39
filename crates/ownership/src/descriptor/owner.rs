//! Who owns the region: reading the owner word, whether it is alive, and
//! handing ownership to another attached process.

use numashm_region::process::{identify, is_same_live_process, self_pid, IdentifyError, PID_MAX};

use super::{Descriptor, SC};
use crate::error::DescriptorError;

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

impl<'r> Descriptor<'r> {
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
}
