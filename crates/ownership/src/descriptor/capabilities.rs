//! Capabilities: single-process tokens the owner creates, revokes, and a
//! bound process redeems (read-only, read-write, or taking ownership).

use numashm_region::process::{identify, is_same_live_process, self_pid, IdentifyError};
use numashm_region::Region;

use super::raw::{cap_word, CAP_ACTIVE, CAP_FREE, CAP_REVOKED, CAP_USED, CAP_WRITING};
use super::{Descriptor, MAX_CAPABILITIES, SC};
use crate::error::{DescriptorError, Errno};
use crate::flags::CapMode;

impl<'r> Descriptor<'r> {
    /// Creates a capability: a random, non-zero 64-bit token bound to
    /// `target_pid` (and its start time), registered in the descriptor. Only
    /// the owner may create capabilities. When the table is full, capabilities
    /// bound to processes that died (never redeemable) are revoked and their
    /// slots reused.
    ///
    /// # Errors
    ///
    /// [`DescriptorError::NotOwner`], [`DescriptorError::TargetGone`],
    /// [`DescriptorError::TableFull`] (every slot active for a live process).
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
        if let Some(t) = self.take_cap_slot(token, &target, mode) {
            return Ok(t);
        }
        // Full: capabilities bound to processes that died can never be
        // redeemed; they are revoked (as the mapping table prunes dead
        // processes) and their slots taken.
        for s in &self.raw().caps {
            let st = s.state.load(SC);
            if st & 0xff == CAP_ACTIVE && !is_same_live_process(s.target_pid.load(SC) as u32, s.target_start.load(SC)) {
                let _ = s.state.compare_exchange(st, cap_word(CAP_REVOKED, (st >> 8) & 0xff, st >> 16), SC, SC);
            }
        }
        self.take_cap_slot(token, &target, mode)
            .ok_or(DescriptorError::TableFull { table: "capability", slots: MAX_CAPABILITIES })
    }

    /// Takes a free, used or revoked slot for `token` (bound to `target`).
    fn take_cap_slot(&self, token: u64, target: &numashm_region::process::Identity, mode: CapMode) -> Option<u64> {
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
            return Some(token);
        }
        None
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

fn random_token() -> Result<u64, DescriptorError> {
    Ok(numashm_region::process::random_nonzero()?)
}
