//! Permission bits, offer flags and capability modes: small value types with
//! checked conversions from raw (possibly hostile) integers.

use std::fmt;

/// Access permissions of a mapping: read, write, execute.
///
/// # Examples
///
/// ```
/// use numashm_ownership::Perms;
/// let rw = Perms::R | Perms::W;
/// assert!(rw.contains(Perms::W));
/// assert_eq!(Perms::from_bits(rw.bits()), Some(rw));
/// assert_eq!(Perms::from_bits(8), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u32);

impl Perms {
    /// No access.
    pub const NONE: Perms = Perms(0);
    /// Read.
    pub const R: Perms = Perms(1);
    /// Write.
    pub const W: Perms = Perms(2);
    /// Execute.
    pub const X: Perms = Perms(4);
    /// Read and write.
    pub const RW: Perms = Perms(3);
    const ALL: u32 = 7;

    /// The raw bits (R = 1, W = 2, X = 4).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ownership::Perms::RW.bits(), 3);
    /// ```
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Checked conversion from raw bits; `None` when an unknown bit is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::Perms::from_bits(16).is_none());
    /// ```
    pub const fn from_bits(bits: u32) -> Option<Perms> {
        if bits & !Self::ALL != 0 {
            None
        } else {
            Some(Perms(bits))
        }
    }

    /// Whether every bit of `other` is set here.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::Perms;
    /// assert!(Perms::RW.contains(Perms::R));
    /// assert!(!Perms::R.contains(Perms::W));
    /// ```
    pub const fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::Perms::NONE.is_empty());
    /// ```
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// These permissions without those of `other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::Perms;
    /// assert_eq!(Perms::RW.without(Perms::W), Perms::R);
    /// ```
    pub const fn without(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// The mapping protection for these permissions. Every protection reads:
    /// write or execute without read still reads on x86 and arm64.
    pub(crate) fn protection(self) -> numashm_region::Protection {
        use numashm_region::Protection;
        match (self.contains(Perms::W), self.contains(Perms::X)) {
            (false, false) => Protection::Read,
            (true, false) => Protection::ReadWrite,
            (false, true) => Protection::ReadExec,
            (true, true) => Protection::ReadWriteExec,
        }
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        Perms(self.0 | rhs.0)
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |p: Perms, ch: char| if self.contains(p) { ch } else { '-' };
        write!(f, "{}{}{}", c(Perms::R, 'r'), c(Perms::W, 'w'), c(Perms::X, 'x'))
    }
}

/// Flags of an offer (and of a claim, which uses only the grant bits).
///
/// `GRANT_*` say what the receiver gets; `DROP_*` what the offerer gives up
/// when the offer is claimed. [`OfferFlags::DISOWN`] drops everything (the
/// offerer's range is unmapped at claim), [`OfferFlags::GRANT_ALL`] grants everything.
///
/// # Examples
///
/// ```
/// use numashm_ownership::{OfferFlags, Perms};
/// let f = OfferFlags::GRANT_R | OfferFlags::DROP_W;
/// assert_eq!(f.grants(), Perms::R);
/// assert_eq!(f.drops(), Perms::W);
/// assert_eq!(OfferFlags::DISOWN.drops(), Perms::R | Perms::W | Perms::X);
/// assert!(OfferFlags::from_bits(1 << 9).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OfferFlags(u32);

impl OfferFlags {
    /// The receiver may read.
    pub const GRANT_R: OfferFlags = OfferFlags(1);
    /// The receiver may write.
    pub const GRANT_W: OfferFlags = OfferFlags(2);
    /// The receiver may map executable (convention only: see docs/ownership.md).
    pub const GRANT_X: OfferFlags = OfferFlags(4);
    /// The offerer loses read access at claim.
    pub const DROP_R: OfferFlags = OfferFlags(8);
    /// The offerer loses write access at claim.
    pub const DROP_W: OfferFlags = OfferFlags(16);
    /// The offerer loses execute access at claim.
    pub const DROP_X: OfferFlags = OfferFlags(32);
    /// All drops: the offerer's range is unmapped at claim.
    pub const DISOWN: OfferFlags = OfferFlags(8 | 16 | 32);
    /// All grants.
    pub const GRANT_ALL: OfferFlags = OfferFlags(7);
    const ALL: u32 = 63;

    /// The raw bits.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(numashm_ownership::OfferFlags::GRANT_ALL.bits(), 7);
    /// ```
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Checked conversion from raw bits; `None` when an unknown bit is set.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::OfferFlags::from_bits(63).is_some());
    /// ```
    pub const fn from_bits(bits: u32) -> Option<OfferFlags> {
        if bits & !Self::ALL != 0 {
            None
        } else {
            Some(OfferFlags(bits))
        }
    }

    /// What the receiver is granted.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{OfferFlags, Perms};
    /// assert_eq!(OfferFlags::GRANT_ALL.grants(), Perms::R | Perms::W | Perms::X);
    /// ```
    pub const fn grants(self) -> Perms {
        Perms(self.0 & 7)
    }

    /// What the offerer gives up at claim.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::{OfferFlags, Perms};
    /// assert_eq!(OfferFlags::DROP_R.drops(), Perms::R);
    /// ```
    pub const fn drops(self) -> Perms {
        Perms((self.0 >> 3) & 7)
    }

    /// Whether every bit of `other` is set here.
    ///
    /// # Examples
    ///
    /// ```
    /// use numashm_ownership::OfferFlags;
    /// assert!(OfferFlags::DISOWN.contains(OfferFlags::DROP_X));
    /// ```
    pub const fn contains(self, other: OfferFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for OfferFlags {
    type Output = OfferFlags;
    fn bitor(self, rhs: OfferFlags) -> OfferFlags {
        OfferFlags(self.0 | rhs.0)
    }
}

/// What a capability lets its bound process do.
///
/// # Examples
///
/// ```
/// use numashm_ownership::CapMode;
/// assert_eq!(CapMode::from_raw(CapMode::Move as u32), Some(CapMode::Move));
/// assert_eq!(CapMode::from_raw(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CapMode {
    /// Attach read-only.
    ReadOnly = 1,
    /// Attach read-write.
    ReadWrite = 2,
    /// Attach read-write and become the owner; single use.
    Move = 3,
}

impl CapMode {
    /// Checked conversion from the raw value stored in a segment or a message.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(numashm_ownership::CapMode::from_raw(9).is_none());
    /// ```
    pub const fn from_raw(raw: u32) -> Option<CapMode> {
        match raw {
            1 => Some(CapMode::ReadOnly),
            2 => Some(CapMode::ReadWrite),
            3 => Some(CapMode::Move),
            _ => None,
        }
    }
}
