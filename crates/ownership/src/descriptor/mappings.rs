//! The mapping table: where each process mapped the region (seqlock-style
//! slots, dead processes pruned), and [`Descriptor::map`]'s own mappings
//! (a region [`FdMapping`] plus the record).

use std::os::fd::AsFd;

use numashm_region::process::{identify, is_same_live_process, self_pid, start_time, IdentifyError, PID_MAX};
use numashm_region::FdMapping;

use super::{Descriptor, MAX_MAPPINGS, SC};
use crate::error::{DescriptorError, Errno};
use crate::flags::Perms;

const PAGE: usize = 4096;

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

impl<'r> Descriptor<'r> {
    pub(super) fn read_mapping(&self, i: usize) -> Result<Option<MappingInfo>, DescriptorError> {
        let s = &self.raw().mappings[i];
        // A writer holds a slot only for a few stores; a slot stuck odd
        // belongs to a process that died mid-write (a hand-over's child killed
        // in `register`, say): it reads as empty once its pid is gone.
        for spin in 0..1000 {
            let k1 = s.key.load(SC);
            let pid = k1 as u32;
            if pid == 0 {
                return Ok(None);
            }
            if (k1 >> 32) & 1 == 1 {
                if spin == 16 && gone(pid) {
                    return Ok(None);
                }
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
        // Our own start time: no pid-reuse race for the calling process, so no
        // pidfd either (`pidfd_open` is missing under valgrind, before Linux
        // 5.3, and in some seccomp sandboxes; a pool must still be made there).
        let start = start_time(me).ok_or(DescriptorError::sys("read /proc/self/stat", Errno::IO))?;
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
        // Slots a process left half-written when it died: freed once its pid is gone.
        for s in &self.raw().mappings {
            let k = s.key.load(SC);
            if (k >> 32) & 1 == 1 && k as u32 != 0 && gone(k as u32) {
                let _ = s.key.compare_exchange(k, ((k >> 32) + 1) << 32, SC, SC);
            }
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
        let prot = perms.protection();
        let fd = self.region.as_fd();
        // FIXED_NOREPLACE (in `map_at`): an address in use is refused (EEXIST),
        // so no memory anyone uses is touched.
        let map = match at {
            Some(a) if a % PAGE != 0 || a == 0 => {
                return Err(DescriptorError::Misaligned { what: "address", value: a, page: PAGE })
            }
            Some(a) => FdMapping::map_at(fd, len, prot, a),
            None => FdMapping::map(fd, len, prot),
        };
        let map = match map {
            Ok(m) => m,
            Err(e) => {
                return Err(match e.errno() {
                    Some(Errno::EXIST) => DescriptorError::AddressTaken { addr: at.unwrap_or(0) },
                    Some(Errno::ACCESS | Errno::PERM) => {
                        DescriptorError::Permission { asked: perms, detail: "the kernel refused: the fd does not allow it" }
                    }
                    Some(errno) => DescriptorError::sys("mmap", errno),
                    None => DescriptorError::Region(e),
                })
            }
        };
        self.record(map.addr(), len, perms)?;
        Ok(Mapping { record: Record(self), map })
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
    // Dropped first: the record goes, then the mapping (`FdMapping` unmaps on drop).
    record: Record<'d, 'r>,
    map: FdMapping,
}

/// The calling process's record in the mapping table; removed on drop.
#[derive(Debug)]
struct Record<'d, 'r>(&'d Descriptor<'r>);

impl Drop for Record<'_, '_> {
    fn drop(&mut self) {
        let _ = self.0.forget();
    }
}

impl Mapping<'_, '_> {
    /// Where the mapping starts in this process.
    ///
    /// # Examples
    ///
    /// See [`Descriptor::map`].
    pub fn addr(&self) -> usize {
        self.map.addr()
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
        self.map.len()
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
        self.map.is_empty()
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
        if offset.checked_add(buf.len()).map_or(true, |end| end > self.map.len()) {
            return Err(DescriptorError::Misaligned { what: "range", value: offset, page: PAGE });
        }
        Ok(self.map.read_at(offset, buf)?)
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
    pub fn unmap(self) -> Result<(), DescriptorError> {
        let Mapping { record, map } = self;
        drop(record);
        map.unmap().map_err(|e| match e.errno() {
            Some(errno) => DescriptorError::sys("munmap", errno),
            None => DescriptorError::Region(e),
        })
    }
}


/// Whether no process has `pid` now (the kernel says so; a failed question is not "gone").
fn gone(pid: u32) -> bool {
    matches!(identify(pid), Err(IdentifyError::Gone | IdentifyError::Invalid))
}
