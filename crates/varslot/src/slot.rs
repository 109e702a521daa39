//! [`Slot`]: the validated location of a slot's bytes.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ptr::NonNull;

/// The bytes of one slot, as found by [`crate::Allocator::resolve`]: a pointer and a
/// length, checked against the segment and this process's mapping. Borrowing the
/// allocator keeps the mapping (whose base never moves) alive.
///
/// Reading or writing the bytes is `unsafe`: handles are `Copy` and slots are shared
/// with other processes, so only the slot protocol (the holder of an Allocated or
/// InFlight slot is its only user) makes a reference exclusive.
///
/// # Examples
///
/// ```
/// use numashm_varslot::{Config, HeapAllocator};
/// let a = HeapAllocator::new(&Config::new().class(64, 2)).unwrap();
/// let h = a.alloc(8, 0).unwrap();
/// let mut s = a.resolve(h).unwrap();
/// assert_eq!(s.len(), 64);
/// // SAFETY: we own `h` and hold no other reference into its slot.
/// unsafe { s.as_mut_slice()[..3].copy_from_slice(b"abc") };
/// // SAFETY: as above; the mutable borrow has ended.
/// assert_eq!(unsafe { &a.resolve(h).unwrap().as_slice()[..3] }, b"abc");
/// ```
#[derive(Debug)]
pub struct Slot<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _alloc: PhantomData<&'a [u8]>,
}

impl<'a> Slot<'a> {
    pub(crate) fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Self { ptr, len, _alloc: PhantomData }
    }

    /// Start of the slot.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// # let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let s = a.resolve(a.alloc(1, 0).unwrap()).unwrap();
    /// assert_eq!(s.as_ptr() as usize % 64, 0);
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Slot size in bytes (the class size, not the requested length).
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// # let a = HeapAllocator::new(&Config::new().class(128, 1)).unwrap();
    /// assert_eq!(a.resolve(a.alloc(1, 0).unwrap()).unwrap().len(), 128);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The slot's bytes, shared.
    ///
    /// # Safety
    ///
    /// - the handle stays Allocated or InFlight (not freed, not reclaimed) while the
    ///   slice lives;
    /// - nobody, in any process, writes the slot while the slice lives.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// # let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let s = a.resolve(a.alloc(1, 0).unwrap()).unwrap();
    /// // SAFETY: the slot is ours and nobody writes it.
    /// assert_eq!(unsafe { s.as_slice() }[0], 0);
    /// ```
    pub unsafe fn as_slice(&self) -> &'a [u8] {
        // SAFETY: 1. `ptr..ptr + len` lies in the mapped segment (checked by `resolve`),
        // which outlives `'a`; 2. no concurrent writer (caller's obligation).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The slot's bytes, exclusive.
    ///
    /// # Safety
    ///
    /// - the handle stays Allocated or InFlight while the slice lives;
    /// - no other reference to the slot exists, in any process, while the slice lives.
    ///
    /// # Examples
    ///
    /// ```
    /// # use numashm_varslot::{Config, HeapAllocator};
    /// # let a = HeapAllocator::new(&Config::new().class(64, 1)).unwrap();
    /// let mut s = a.resolve(a.alloc(1, 0).unwrap()).unwrap();
    /// // SAFETY: the slot is ours alone.
    /// unsafe { s.as_mut_slice().fill(7) };
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &'a mut [u8] {
        // SAFETY: 1. in bounds as above; 2. exclusive (caller's obligation).
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
