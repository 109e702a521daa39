//! A write-intent prefetch hint.
#![allow(unsafe_code)] // one asm hint and one CPUID, below

/// Asks the CPU to bring the cache line at `p` into this core's cache in a
/// writable state, so that a write soon after does not wait for other cores to
/// give the line up. A hint: it changes nothing and never faults.
#[inline(always)]
pub(crate) fn prefetch_for_write(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        // SAFETY: PREFETCHW (present: checked above) is a hint: it reads and
        // writes no architectural state, cannot fault on any address, and
        // touches no register but its address operand.
        unsafe { core::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// CPUID 0x8000_0001, ECX bit 8 ("3DNowPrefetch": PREFETCHW), asked once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[allow(unused_unsafe)] // `__cpuid` is safe on newer toolchains
        // SAFETY: CPUID exists on every x86_64 CPU; leaf 0x8000_0000 reports the
        // highest extended leaf, so 0x8000_0001 is asked only when it exists.
        let (max, ecx) = unsafe {
            let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
            (max, if max >= 0x8000_0001 { core::arch::x86_64::__cpuid(0x8000_0001).ecx } else { 0 })
        };
        max >= 0x8000_0001 && ecx & (1 << 8) != 0
    })
}
