//! Region layer: create + place + populate, `check_and_remap`, growth.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use numashm_region::{MemPolicy, Region, RegionOptions, Topology};
use rustix::fs::MemfdFlags;
use rustix::mm::{Advice, MapFlags, ProtFlags};

use crate::{interleave, ns, per_op, Budget, Comparison};

const MIB: usize = 1 << 20;
/// Size of the region in `region_create` and the start of `grow`.
pub const REGION_LEN: usize = 64 * MIB;

fn first_node() -> u32 {
    Topology::get().map(|t| t.nodes()[0].os_index).unwrap_or(0)
}

/// Ours: create a 64 MiB memfd region placed on `node` (bind) and populated; drop it.
pub fn create_ours(node: u32) -> Duration {
    let start = Instant::now();
    let region = RegionOptions::new(REGION_LEN)
        .max_len(REGION_LEN)
        .node(node)
        .policy(MemPolicy::Bind)
        .populate(true)
        .create_anonymous("bench-create")
        .expect("create region");
    drop(region);
    start.elapsed()
}

/// The baseline's own mbind through libc (rustix has none; numashm_region's is the side measured).
fn raw_mbind(ptr: *mut u8, len: usize, node: u32) {
    let mask: [u64; 4] = {
        let mut m = [0u64; 4];
        m[node as usize / 64] |= 1 << (node % 64);
        m
    };
    // SAFETY: `ptr..ptr+len` is a mapping we just created; MPOL_BIND with no flags
    // only sets the policy for future faults.
    let rc = unsafe { libc::syscall(libc::SYS_mbind, ptr, len, 2 /* MPOL_BIND */, mask.as_ptr(), 257u64, 0u32) };
    assert_eq!(rc, 0, "mbind");
}

/// Baseline: memfd_create, ftruncate, mmap(MAP_SHARED), mbind, populate; unmap and close.
pub fn create_raw(node: u32) -> Duration {
    let start = Instant::now();
    let fd = rustix::fs::memfd_create("bench-raw", MemfdFlags::CLOEXEC).expect("memfd_create");
    rustix::fs::ftruncate(&fd, REGION_LEN as u64).expect("ftruncate");
    // SAFETY: a fresh shared mapping of our own memfd at a kernel-chosen address.
    let ptr = unsafe {
        rustix::mm::mmap(std::ptr::null_mut(), REGION_LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &fd, 0)
    }
    .expect("mmap");
    raw_mbind(ptr.cast(), REGION_LEN, node);
    // SAFETY: populating our own mapping changes no contents; then we unmap it.
    unsafe {
        rustix::mm::madvise(ptr, REGION_LEN, Advice::LinuxPopulateWrite).expect("populate");
        rustix::mm::munmap(ptr, REGION_LEN).expect("munmap");
    }
    drop(fd);
    start.elapsed()
}

/// `region_create`: ours vs the raw syscall sequence.
pub fn compare_create(budget: Budget) -> Comparison {
    let node = first_node();
    let rounds = budget.rounds.min(21);
    let medians = interleave(rounds, || ns(create_ours(node)), || ns(create_raw(node)));
    Comparison::times(
        "region_create",
        "create+bind+commit+populate 64 MiB memfd region",
        "memfd_create+ftruncate+mmap+mbind+MADV_POPULATE_WRITE",
        medians,
        1.1,
    )
}

/// A host region and a guest attached to it through a second mapping.
pub fn host_and_guest(len: usize, max_len: usize, commit: bool) -> (Region, Region) {
    let host = RegionOptions::new(len)
        .max_len(max_len)
        .commit(commit)
        .create_anonymous("bench-guest")
        .expect("create");
    let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().expect("dup")).expect("attach");
    (host, guest)
}

/// `check_and_remap`: the no-change path vs one `fstat`.
pub fn compare_check_and_remap(budget: Budget) -> Comparison {
    let (_host, guest) = host_and_guest(MIB, 4 * MIB, true);
    let fd: OwnedFd = guest.as_fd().try_clone_to_owned().expect("dup");
    let iters = 200_000;
    let medians = interleave(
        budget.rounds,
        || {
            per_op(iters, || {
                std::hint::black_box(guest.check_and_remap().expect("check"));
            })
        },
        || {
            per_op(iters / 10, || {
                std::hint::black_box(rustix::fs::fstat(&fd).expect("fstat"));
            })
        },
    );
    Comparison::times(
        "check_and_remap",
        "guest check_and_remap(), nothing changed",
        "one fstat on the backing fd",
        medians,
        0.05,
    )
}

/// Ours: grow 64 → 128 MiB and have a guest map it. Setup is not timed.
pub fn grow_ours(commit: bool) -> Duration {
    let (host, guest) = host_and_guest(REGION_LEN, 2 * REGION_LEN, commit);
    let start = Instant::now();
    host.resize(2 * REGION_LEN).expect("resize");
    assert!(guest.check_and_remap().expect("remap"));
    start.elapsed()
}

/// Baseline: ftruncate + mmap(MAP_FIXED) of the new half into a reserved
/// range, in the host's view and in a guest's view (the raw way to have a guest
/// map the growth), plus fallocate of the new half when `commit`. Setup is not timed.
pub fn grow_raw(commit: bool) -> Duration {
    let fd = rustix::fs::memfd_create("bench-grow-raw", MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, REGION_LEN as u64).expect("ftruncate");
    let view = || {
        // SAFETY: a fresh PROT_NONE reservation, then a MAP_FIXED mapping inside it.
        unsafe {
            let base = rustix::mm::mmap_anonymous(std::ptr::null_mut(), 2 * REGION_LEN, ProtFlags::empty(), MapFlags::PRIVATE | MapFlags::NORESERVE)
                .expect("reserve");
            rustix::mm::mmap(base, REGION_LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED | MapFlags::FIXED, &fd, 0).expect("map");
            base
        }
    };
    let (host, guest) = (view(), view());
    let map_tail = |base: *mut std::ffi::c_void| {
        // SAFETY: the new half lies inside that view's own reservation.
        unsafe {
            rustix::mm::mmap(
                base.cast::<u8>().add(REGION_LEN).cast(),
                REGION_LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::FIXED,
                &fd,
                REGION_LEN as u64,
            )
            .expect("map tail");
        }
    };
    let start = Instant::now();
    if commit {
        rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), REGION_LEN as u64, REGION_LEN as u64).expect("fallocate");
    }
    rustix::fs::ftruncate(&fd, 2 * REGION_LEN as u64).expect("ftruncate");
    map_tail(host);
    map_tail(guest);
    let elapsed = start.elapsed();
    // SAFETY: unmapping our own reservations.
    unsafe {
        rustix::mm::munmap(host, 2 * REGION_LEN).expect("munmap");
        rustix::mm::munmap(guest, 2 * REGION_LEN).expect("munmap");
    }
    elapsed
}

/// `grow`: the mechanism (no commit on either side), as the benchmark defines it.
pub fn compare_grow(budget: Budget) -> Comparison {
    let medians = interleave(budget.rounds, || ns(grow_ours(false)), || ns(grow_raw(false)));
    Comparison::times(
        "grow",
        "resize 64->128 MiB + guest check_and_remap (commit off)",
        "ftruncate + mmap(MAP_FIXED) of the new half in host and guest views",
        medians,
        1.2,
    )
}

/// `grow_committed`: the default (memory committed before publishing) vs the
/// raw sequence doing the same fallocate.
pub fn compare_grow_committed(budget: Budget) -> Comparison {
    let rounds = budget.rounds.min(21);
    let medians = interleave(rounds, || ns(grow_ours(true)), || ns(grow_raw(true)));
    Comparison::times(
        "grow_committed",
        "resize 64->128 MiB committed + guest check_and_remap",
        "fallocate + ftruncate + mmap(MAP_FIXED) of the new half in host and guest views",
        medians,
        1.2,
    )
}

/// Every region comparison.
pub fn all(budget: Budget) -> Vec<Comparison> {
    vec![
        compare_create(budget),
        compare_check_and_remap(budget),
        compare_grow(budget),
        compare_grow_committed(budget),
    ]
}
