//! The `unsafe` constructors that lay rings and doorbells over a byte range
//! of a shared mapping. Kept apart so the algorithms (`spsc`, `mpmc`,
//! `doorbell`) stay free of `unsafe`.
#![allow(unsafe_code)]

use crate::doorbell::Doorbell;
use crate::error::LayoutError;
use crate::mem::{Kind, SharedBell, SharedMemory};
use crate::mpmc::Mpmc;
use crate::spsc::Spsc;

impl Spsc<SharedMemory> {
    /// Creates an empty ring in the byte range `ptr..ptr+len` (for example at
    /// an offset inside a shared mapping); peers then use
    /// [`attach_in`](Self::attach_in) at their own address of the range.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned ring or any value made from it (clones, ends) is used.
    /// - Nobody else accesses the range while this runs.
    /// - Afterwards the range is accessed only through ring values.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if `capacity` is not a power of two, `ptr` is not
    /// 128-byte aligned or `len < Spsc::bytes_for(capacity)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::Spsc;
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 640]);
    /// let mut buf = Buf([0; 640]);
    /// // SAFETY: buf outlives the ring and is used only through it.
    /// let ring = unsafe { Spsc::init_in(buf.0.as_mut_ptr(), 640, 16)? };
    /// let (mut tx, mut rx) = ring.split()?;
    /// tx.push(5).unwrap();
    /// assert_eq!(rx.pop(), Ok(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize, capacity: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedMemory::init_in`'s.
        let mem = unsafe { SharedMemory::init_in(ptr, len, Kind::Spsc, capacity as u64)? };
        Ok(Self::from_mem(mem))
    }

    /// Views the ring that [`init_in`](Self::init_in) made at `ptr`,
    /// validating its header (magic, version, kind, capacity, size).
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned ring or any value made from it is used.
    /// - Everybody accesses the range only atomically (through ring values).
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the header is not a valid SPSC ring header that fits
    /// in `len` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{LayoutError, Spsc};
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 640]);
    /// let mut buf = Buf([0; 640]);
    /// // SAFETY: buf outlives both views and is used only through them.
    /// unsafe {
    ///     assert!(matches!(Spsc::attach_in(buf.0.as_mut_ptr(), 640), Err(LayoutError::Magic(0))));
    ///     Spsc::init_in(buf.0.as_mut_ptr(), 640, 16)?;
    ///     assert_eq!(Spsc::attach_in(buf.0.as_mut_ptr(), 640)?.capacity(), 16);
    /// }
    /// # Ok::<(), LayoutError>(())
    /// ```
    pub unsafe fn attach_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedMemory::attach_in`'s.
        let mem = unsafe { SharedMemory::attach_in(ptr, len, Kind::Spsc)? };
        Ok(Self::from_mem(mem))
    }
}

impl Mpmc<SharedMemory> {
    /// Creates an empty MPMC ring in `ptr..ptr+len`.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned ring or any clone of it is used.
    /// - Nobody else accesses the range while this runs.
    /// - Afterwards the range is accessed only through ring values.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if `capacity` is not a power of two, `ptr` is not
    /// 128-byte aligned or `len < Mpmc::bytes_for(capacity)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::Mpmc;
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 1024]);
    /// let mut buf = Buf([0; 1024]);
    /// // SAFETY: buf outlives the ring and is used only through it.
    /// let ring = unsafe { Mpmc::init_in(buf.0.as_mut_ptr(), 1024, 16)? };
    /// ring.push(1).unwrap();
    /// assert_eq!(ring.pop(), Ok(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize, capacity: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedMemory::init_in`'s.
        let mem = unsafe { SharedMemory::init_in(ptr, len, Kind::Mpmc, capacity as u64)? };
        Ok(Self::from_mem(mem))
    }

    /// Views the MPMC ring that [`init_in`](Self::init_in) made at `ptr`,
    /// validating its header.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes for as long as the
    ///   returned ring or any clone of it is used.
    /// - Everybody accesses the range only atomically.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] if the header is not a valid MPMC ring header that fits
    /// in `len` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{LayoutError, Mpmc, Spsc};
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 1024]);
    /// let mut buf = Buf([0; 1024]);
    /// // SAFETY: buf outlives the views and is used only through them.
    /// unsafe {
    ///     Spsc::init_in(buf.0.as_mut_ptr(), 1024, 16)?;
    ///     assert_eq!(Mpmc::attach_in(buf.0.as_mut_ptr(), 1024).err(),
    ///                Some(LayoutError::Kind { expected: 2, found: 1 }));
    /// }
    /// # Ok::<(), LayoutError>(())
    /// ```
    pub unsafe fn attach_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedMemory::attach_in`'s.
        let mem = unsafe { SharedMemory::attach_in(ptr, len, Kind::Mpmc)? };
        Ok(Self::from_mem(mem))
    }
}

impl Doorbell<SharedBell> {
    /// Bytes a doorbell occupies in shared memory (one 128-byte line).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ring::Doorbell::<numashm_ring::SharedBell>::BYTES, 128);
    /// ```
    pub const BYTES: usize = crate::mem::BELL_BYTES;

    /// Creates a doorbell in `ptr..ptr+len` (at least [`Self::BYTES`],
    /// 128-byte aligned).
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes while the returned
    ///   doorbell or a clone of it is used.
    /// - Nobody else accesses the range while this runs; afterwards only
    ///   through doorbells.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] on a misaligned or short range.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::Doorbell;
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 128]);
    /// let mut buf = Buf([0; 128]);
    /// // SAFETY: buf outlives the bell and is used only through it.
    /// let bell = unsafe { Doorbell::init_in(buf.0.as_mut_ptr(), 128)? };
    /// assert_eq!(bell.notify()?.parked, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn init_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedBell::init_in`'s.
        Ok(Doorbell::from_mem(unsafe { SharedBell::init_in(ptr, len)? }))
    }

    /// Views the doorbell that [`init_in`](Self::init_in) made at `ptr`,
    /// checking its magic and version.
    ///
    /// # Safety
    ///
    /// - `ptr..ptr+len` is valid for reads and writes while the returned
    ///   doorbell or a clone of it is used.
    /// - Everybody accesses the range only atomically.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] on a misaligned or short range or a bad header.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ring::{Doorbell, LayoutError};
    /// #[repr(C, align(128))]
    /// struct Buf([u8; 128]);
    /// let mut buf = Buf([0; 128]);
    /// // SAFETY: buf outlives the bells and is used only through them.
    /// unsafe {
    ///     assert_eq!(Doorbell::attach_in(buf.0.as_mut_ptr(), 128).err(), Some(LayoutError::Magic(0)));
    ///     Doorbell::init_in(buf.0.as_mut_ptr(), 128)?;
    ///     Doorbell::attach_in(buf.0.as_mut_ptr(), 128)?;
    /// }
    /// # Ok::<(), LayoutError>(())
    /// ```
    pub unsafe fn attach_in(ptr: *mut u8, len: usize) -> Result<Self, LayoutError> {
        // SAFETY: the caller's obligations are `SharedBell::attach_in`'s.
        Ok(Doorbell::from_mem(unsafe { SharedBell::attach_in(ptr, len)? }))
    }
}
