//! Sealed single-writer pools: the kernel refuses every write route to a
//! reader (in this process and in another one reaching the pool through
//! `/proc/<owner>/fd/<n>`), the owner keeps writing and growing, readers see
//! growth and never trust a lying header, and bad fds get typed errors.
#![allow(unsafe_code)]

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;
use numashm_region::*;
use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};

const MIB: usize = 1 << 20;
const RO: AttachOptions = AttachOptions { read_only: true };

fn all_pool_seals() -> SealFlags {
    SealFlags::FUTURE_WRITE | SealFlags::SHRINK | SealFlags::SEAL
}

fn file_size(fd: impl AsFd) -> usize {
    rustix::fs::fstat(fd).unwrap().st_size as usize
}

fn errno_of<T>(r: std::io::Result<T>) -> Errno {
    match r {
        Ok(_) => panic!("the write route succeeded"),
        Err(e) => Errno::from_io_error(&e).unwrap(),
    }
}

/// Tries every way to write a sealed pool through `fd` (opened O_RDWR, as a
/// hostile reader would) and asserts the errno the kernel (6.18) gives for each.
fn assert_every_write_route_refused(fd: &OwnedFd, len: usize) {
    let seals_before = rustix::fs::fcntl_get_seals(fd).unwrap();
    assert!(seals_before.contains(all_pool_seals()), "{seals_before:?}");

    // 1. A new writable shared mapping.
    // SAFETY: a fresh mapping at a kernel-chosen address (it is refused).
    let r = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    };
    assert_eq!(r.err(), Some(Errno::PERM), "mmap(PROT_WRITE, MAP_SHARED)");

    // A read-only shared mapping is allowed; then try to make it writable.
    // SAFETY: a fresh read-only mapping at a kernel-chosen address, unmapped below.
    let ro = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd,
            0,
        )
    }
    .unwrap();
    // 2. mprotect to writable.
    // SAFETY: our own mapping; the call is refused.
    let r = unsafe { rustix::mm::mprotect(ro, len, MprotectFlags::READ | MprotectFlags::WRITE) };
    assert_eq!(r.err(), Some(Errno::ACCESS), "mprotect(PROT_WRITE)");
    // 3. MADV_REMOVE (punch a hole through the mapping).
    // SAFETY: our own mapping; the call is refused.
    let r = unsafe { rustix::mm::madvise(ro, len, Advice::LinuxRemove) };
    assert_eq!(r.err(), Some(Errno::ACCESS), "madvise(MADV_REMOVE)");
    // 4. Writing the read-only mapping through /proc/self/mem (FOLL_FORCE).
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .unwrap();
    let at = ro as u64 + HEADER_LEN as u64;
    let r = std::os::unix::fs::FileExt::write_at(&mem, b"x", at);
    assert_eq!(errno_of(r), Errno::IO, "write /proc/self/mem");
    // SAFETY: unmapping the mapping made above; nothing refers to it.
    unsafe { rustix::mm::munmap(ro, len).unwrap() };

    // 5. write(2) and pwrite(2).
    assert_eq!(
        rustix::io::write(fd, b"x").err(),
        Some(Errno::PERM),
        "write"
    );
    assert_eq!(
        rustix::io::pwrite(fd, b"x", HEADER_LEN as u64).err(),
        Some(Errno::PERM),
        "pwrite"
    );
    // 6. Shrinking.
    assert_eq!(
        rustix::fs::ftruncate(fd, 4096).err(),
        Some(Errno::PERM),
        "ftruncate (shrink)"
    );
    assert_eq!(
        rustix::fs::ftruncate(fd, 0).err(),
        Some(Errno::PERM),
        "ftruncate (to zero)"
    );
    // 7. Punching a hole.
    let r = rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        HEADER_LEN as u64,
        4096,
    );
    assert_eq!(r.err(), Some(Errno::PERM), "fallocate(PUNCH_HOLE)");
    // 8. Changing the seals (there is no call to remove one; adding any is refused).
    for seal in [SealFlags::WRITE, SealFlags::GROW, SealFlags::FUTURE_WRITE] {
        assert_eq!(
            rustix::fs::fcntl_add_seals(fd, seal).err(),
            Some(Errno::PERM),
            "F_ADD_SEALS {seal:?}"
        );
    }
    assert_eq!(
        rustix::fs::fcntl_get_seals(fd).unwrap(),
        seals_before,
        "seals changed"
    );

    // A private writable mapping is allowed, but its writes stay private.
    // SAFETY: a fresh private mapping at a kernel-chosen address, unmapped below.
    let private = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
            fd,
            0,
        )
    }
    .unwrap();
    // SAFETY: inside our private copy-on-write mapping of `len` bytes.
    unsafe { *(private as *mut u8).add(HEADER_LEN) = b'X' };
    // SAFETY: unmapping the private mapping made above.
    unsafe { rustix::mm::munmap(private, len).unwrap() };
    let mut byte = [0u8; 1];
    assert_eq!(
        rustix::io::pread(fd, &mut byte, HEADER_LEN as u64).unwrap(),
        1
    );
    assert_eq!(byte[0], b'o', "a private mapping's write reached the pool");
}

/// Opens the owner's pool through /proc, read-write, as a hostile peer would.
fn open_rdwr(pid: u32, fd: i32) -> OwnedFd {
    rustix::fs::open(
        format!("/proc/{pid}/fd/{fd}").as_str(),
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

fn owner_pool(tag: &str) -> Region {
    let owner = RegionOptions::new(MIB)
        .max_len(8 * MIB)
        .create_sealed(tag)
        .unwrap();
    owner.write_at(HEADER_LEN, b"owner data").unwrap();
    owner
}

/// Entry point of child processes; does nothing when run as a normal test.
#[test]
fn child_process() {
    let Some(role) = role() else { return };
    let pid: u32 = std::env::var("NUMASHM_OWNER_PID").unwrap().parse().unwrap();
    let fd: i32 = std::env::var("NUMASHM_OWNER_FD").unwrap().parse().unwrap();
    match role.as_str() {
        // Another process reaching the pool through /proc/<owner>/fd/<n>.
        "hostile" => {
            let rw = open_rdwr(pid, fd);
            assert_every_write_route_refused(&rw, MIB);
            let reader = Region::attach_pool_of(pid, fd, RO).unwrap();
            let mut buf = [0u8; 10];
            reader.read_at(HEADER_LEN, &mut buf).unwrap();
            assert_eq!(&buf, b"owner data");
            assert!(matches!(
                reader.write_at(HEADER_LEN, b"x"),
                Err(RegionError::ReadOnly)
            ));
            println!("hostile child: every write route refused");
        }
        // An unprivileged user may not open another user's fds.
        "other-user" => {
            let err = Region::attach_pool_of(pid, fd, RO).unwrap_err();
            assert!(
                matches!(
                    err,
                    RegionError::PeerAccessDenied {
                        errno: Errno::ACCESS,
                        ..
                    }
                ),
                "{err}"
            );
            println!("other user: {err}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn sealed_pool_refuses_every_write_route() {
    let owner = owner_pool("routes");
    let fd = owner.as_fd().as_raw_fd();
    // In this process, through a read-write reopen of the owner's fd.
    let rw = open_rdwr(std::process::id(), fd);
    assert_every_write_route_refused(&rw, MIB);
    // In another process, through /proc/<owner pid>/fd/<n>.
    let out = run_child(
        "child_process",
        "hostile",
        &[
            ("NUMASHM_OWNER_PID", std::process::id().to_string()),
            ("NUMASHM_OWNER_FD", fd.to_string()),
        ],
        Duration::from_secs(60),
    );
    assert_child_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hostile child: every write route refused"),
        "the child role did not run"
    );
    // Nothing changed, and the owner still writes.
    let mut buf = [0u8; 10];
    owner.read_at(HEADER_LEN, &mut buf).unwrap();
    assert_eq!(&buf, b"owner data");
    assert_eq!(file_size(&owner), MIB);
    owner.write_at(HEADER_LEN, b"OWNER DATA").unwrap();
    assert_eq!(owner.seals().unwrap(), all_pool_seals());
}

#[test]
#[cfg_attr(miri, ignore)]
fn owner_keeps_writing_and_grows_after_sealing_and_reader_sees_it() {
    let owner = owner_pool("grow");
    assert!(owner.is_sealed_pool() && owner.is_writable());
    let reader = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap();
    assert!(reader.is_sealed_pool() && !reader.is_writable());
    let base = reader.as_ptr();
    owner.write_at(HEADER_LEN + 100, b"after seal").unwrap();
    let mut buf = [0u8; 10];
    reader.read_at(HEADER_LEN + 100, &mut buf).unwrap();
    assert_eq!(&buf, b"after seal");

    assert!(!reader.check_and_remap().unwrap());
    owner.resize(3 * MIB).unwrap();
    assert_eq!(file_size(&owner), 3 * MIB);
    owner.write_at(3 * MIB - 8, b"new tail").unwrap();
    assert!(reader.check_and_remap().unwrap());
    assert_eq!(reader.len(), 3 * MIB);
    assert_eq!(reader.as_ptr(), base);
    let mut tail = [0u8; 8];
    reader.read_at(3 * MIB - 8, &mut tail).unwrap();
    assert_eq!(&tail, b"new tail");
    assert!(matches!(
        owner.resize(2 * MIB),
        Err(RegionError::Shrink { .. })
    ));
    assert!(matches!(
        owner.resize(16 * MIB),
        Err(RegionError::TooLarge { .. })
    ));
    assert!(matches!(reader.resize(4 * MIB), Err(RegionError::ReadOnly)));
    assert_eq!(owner.seals().unwrap(), all_pool_seals());
    assert_eq!(reader.seals().unwrap(), all_pool_seals());
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_reader_growing_the_file_does_not_block_the_owners_growth() {
    let owner = owner_pool("hostile-grow");
    // A peer with a writable fd may grow the object (it cannot shrink it).
    let rw = open_rdwr(std::process::id(), owner.as_fd().as_raw_fd());
    rustix::fs::ftruncate(&rw, 6 * MIB as u64).unwrap();
    owner.resize(2 * MIB).unwrap();
    assert_eq!(owner.len(), 2 * MIB);
    assert_eq!(
        file_size(&owner),
        6 * MIB,
        "the owner's growth never shrinks the object"
    );
    owner.write_at(2 * MIB - 4, b"tail").unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn len_at_least_follows_growth_and_never_passes_the_file() {
    let owner = owner_pool("len-at-least");
    let reader = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap();
    assert!(reader.len_at_least(MIB));
    assert!(!reader.len_at_least(MIB + 1));
    assert!(!reader.len_at_least(usize::MAX));
    owner.resize(2 * MIB).unwrap();
    assert!(reader.len_at_least(2 * MIB));
    assert_eq!(reader.len(), 2 * MIB);
}

/// FNV-1a over the header's immutable fields, as docs/region.md specifies it.
fn header_checksum(h: &[u8]) -> u64 {
    let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for w in [
        word(8),
        word(32),
        word(40),
        word(48),
        word(56),
        word(64),
        word(72),
        word(80),
    ] {
        for b in w.to_le_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Writes a u64 header field through the owner's mapping, as a hostile owner may.
fn poke_header(owner: &Region, at: usize, value: u64) {
    // SAFETY: `at` is an aligned u64 field inside the first page, which the
    // owner maps writable; readers load the header with atomics only.
    unsafe { std::ptr::write_volatile(owner.as_ptr().add(at).cast::<u64>(), value) };
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_reader_never_trusts_a_lying_header() {
    let owner = owner_pool("liar");
    let reader = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap();
    // The header claims the whole reservation; the object holds 1 MiB.
    poke_header(&owner, 16, 8 * MIB as u64);
    let err = reader.check_and_remap().unwrap_err();
    assert!(
        matches!(err, RegionError::Corrupt { field: "len", .. }),
        "{err}"
    );
    assert_eq!(reader.len(), MIB);
    assert!(reader.len() <= file_size(&reader));
    assert!(!reader.len_at_least(MIB + 4096));
    assert!(reader.len_at_least(MIB));
    let mut buf = [0u8; 10];
    reader.read_at(HEADER_LEN, &mut buf).unwrap();
    assert_eq!(&buf, b"owner data");
    // A fresh attach refuses the lie outright.
    let err = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap_err();
    assert!(
        matches!(err, RegionError::Corrupt { field: "len", .. }),
        "{err}"
    );
    // A length that shrinks is refused too, and the reader keeps its length.
    poke_header(&owner, 16, 0);
    assert!(matches!(
        reader.check_and_remap(),
        Err(RegionError::Corrupt { field: "len", .. })
    ));
    assert_eq!(reader.len(), MIB);

    // A max_len above MAX_POOL_LEN with a valid checksum: refused before any
    // address space is reserved.
    let owner = owner_pool("liar-max");
    let huge = 2 * MAX_POOL_LEN as u64;
    poke_header(&owner, 32, huge);
    let mut h = [0u8; HEADER_FIELDS_LEN];
    // SAFETY: reading the first 128 bytes of the owner's own mapping.
    unsafe { std::ptr::copy_nonoverlapping(owner.as_ptr(), h.as_mut_ptr(), HEADER_FIELDS_LEN) };
    poke_header(&owner, 88, header_checksum(&h));
    let err = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::Corrupt {
                field: "max_len",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn fds_that_are_not_sealed_pools_get_typed_errors() {
    // A memfd with no seals.
    let memfd =
        rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&memfd, MIB as u64).unwrap();
    let err = Region::attach_pool_fd(memfd, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::MissingSeal {
                missing: "F_SEAL_FUTURE_WRITE",
                ..
            }
        ),
        "{err}"
    );
    // A memfd created without MFD_ALLOW_SEALING (it carries F_SEAL_SEAL only).
    let memfd = rustix::fs::memfd_create("unsealable", MemfdFlags::CLOEXEC).unwrap();
    let err = Region::attach_pool_fd(memfd, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::MissingSeal {
                missing: "F_SEAL_FUTURE_WRITE",
                ..
            }
        ),
        "{err}"
    );
    // Write-sealed but shrinkable.
    let memfd =
        rustix::fs::memfd_create("half", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::FUTURE_WRITE).unwrap();
    let err = Region::attach_pool_fd(memfd, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::MissingSeal {
                missing: "F_SEAL_SHRINK",
                ..
            }
        ),
        "{err}"
    );
    // A non-pool region (sealed against shrinking only).
    let anon = RegionOptions::new(MIB)
        .create_anonymous("not-a-pool")
        .unwrap();
    let err = Region::attach_pool_fd(anon.as_fd().try_clone_to_owned().unwrap(), RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::MissingSeal {
                missing: "F_SEAL_FUTURE_WRITE",
                ..
            }
        ),
        "{err}"
    );
    // A regular file: this test binary (on a disk filesystem, or on the
    // initramfs of the multi-node guest, where it is a tmpfs file).
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let on_tmpfs = rustix::fs::fstatfs(&file).unwrap().f_type == 0x0102_1994;
    let err = Region::attach_pool_fd(file.into(), RO).unwrap_err();
    if on_tmpfs {
        assert!(
            matches!(
                err,
                RegionError::MissingSeal {
                    missing: "F_SEAL_FUTURE_WRITE",
                    ..
                }
            ),
            "{err}"
        );
    } else {
        assert!(matches!(err, RegionError::NotMemfd { .. }), "{err}");
    }
    // A tmpfs file opened by path: shmem, but its seals are fixed at F_SEAL_SEAL.
    let path = shm_path("pool-file");
    let named = RegionOptions::new(MIB).create_file(&path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let err = Region::attach_pool_fd(file.into(), RO).unwrap_err();
    assert!(
        matches!(err, RegionError::MissingSeal { missing: "F_SEAL_FUTURE_WRITE", present } if present == SealFlags::SEAL),
        "{err}"
    );
    drop(named);
    // Not a file at all.
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
    let err = Region::attach_pool_fd(pipe_r, RO).unwrap_err();
    assert!(matches!(err, RegionError::NotMemfd { .. }), "{err}");
    // A writable attach is refused.
    let owner = owner_pool("rw-request");
    let err = Region::attach_pool_fd(
        owner.as_fd().try_clone_to_owned().unwrap(),
        AttachOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::InvalidArgument {
                what: "options.read_only",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn attach_pool_of_names_each_missing_piece() {
    let owner = owner_pool("pool-of");
    let me = std::process::id();
    let fd = owner.as_fd().as_raw_fd();
    let reader = Region::attach_pool_of(me, fd, RO).unwrap();
    assert_eq!(reader.len(), MIB);
    // No such fd, no such process (above the kernel's pid_max).
    let err = Region::attach_pool_of(me, 1 << 30, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::PeerNotFound {
                fd: 0x4000_0000,
                ..
            }
        ),
        "{err}"
    );
    let err = Region::attach_pool_of(u32::MAX - 1, fd, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::PeerNotFound {
                pid: 0xffff_fffe,
                ..
            }
        ),
        "{err}"
    );
    let err = Region::attach_pool_of(me, -1, RO).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::InvalidArgument {
                what: "fd_number",
                ..
            }
        ),
        "{err}"
    );
    // An fd that is not a pool.
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
    let err = Region::attach_pool_of(me, pipe_r.as_raw_fd(), RO).unwrap_err();
    assert!(matches!(err, RegionError::NotMemfd { .. }), "{err}");
    // Another user: a child running as nobody may not open our fds.
    if !is_root() {
        skip("permission-denied case needs root to start a child as another user");
        return;
    }
    // A copy of this test binary the other user can reach: the build tree may
    // sit under a directory only we may enter (e.g. a fresh clone in `mktemp -d`).
    let exe = {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("numashm-other-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("sealed-test");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    };
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NUMASHM_CHILD_ROLE", "other-user")
        .env("NUMASHM_OWNER_PID", me.to_string())
        .env("NUMASHM_OWNER_FD", fd.to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    assert_child_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("other user: permission denied"),
        "the child role did not run"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_sealed_pool_is_placed_on_its_node() {
    let node = Topology::get().unwrap().nodes()[0].os_index;
    let owner = RegionOptions::new(2 * MIB)
        .max_len(8 * MIB)
        .node(node)
        .policy(MemPolicy::Bind)
        .populate(true)
        .create_sealed("placed")
        .unwrap();
    assert_eq!(
        owner.verify_placement().unwrap().on_node(node),
        2 * MIB / 4096
    );
    owner.resize(4 * MIB).unwrap();
    assert_eq!(
        owner.verify_placement().unwrap().on_node(node),
        4 * MIB / 4096
    );
    let reader = Region::attach_pool_fd(owner.as_fd().try_clone_to_owned().unwrap(), RO).unwrap();
    assert_eq!(reader.placement(), owner.placement());
    assert_eq!(
        reader.resident_pages_per_node().unwrap().on_node(node),
        4 * MIB / 4096
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn hugetlb_pools_are_refused_or_degraded() {
    let err = RegionOptions::new(2 * MIB)
        .page_size(PageSize::Huge2M)
        .create_sealed("huge")
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::Unavailable {
                what: "hugetlb pages for a sealed pool",
                ..
            }
        ),
        "{err}"
    );
    let pool = RegionOptions::new(2 * MIB)
        .page_size(PageSize::Huge2M)
        .fallback(true)
        .create_sealed("huge-fb")
        .unwrap();
    assert!(!pool.cache_policy().page_size.is_hugetlb());
    assert_eq!(pool.seals().unwrap(), all_pool_seals());
    let err = RegionOptions::new(MIB)
        .max_len(2 * MAX_POOL_LEN)
        .create_sealed("too-big")
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::TooLarge {
                max: MAX_POOL_LEN,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_reader_holding_flock_does_not_stall_the_owners_growth() {
    let owner = std::sync::Arc::new(owner_pool("flock"));
    // A reader's own open file description, locked exclusively for good.
    let ro = rustix::fs::open(
        format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            owner.as_fd().as_raw_fd()
        )
        .as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    rustix::fs::flock(&ro, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let grower = owner.clone();
    // Watchdog: a stalled resize fails the test instead of hanging it.
    std::thread::spawn(move || {
        let _ = tx.send(grower.resize(2 * MIB).map_err(|e| e.to_string()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("resize stalled behind a reader's flock");
    result.unwrap();
    assert_eq!(owner.len(), 2 * MIB);
}
