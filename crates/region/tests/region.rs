//! Region layer behaviour on this machine: cross-process sharing, growth seen by
//! guests, bounds and alignment errors, ownership, access rules, placement,
//! hugetlb and THP, hostile headers.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::*;
use numashm_region::*;

const MIB: usize = 1 << 20;

/// Entry point of child processes; does nothing when run as a normal test.
#[test]
fn child_process() {
    let Some(role) = role() else { return };
    let path = std::env::var("NUMASHM_PATH").expect("NUMASHM_PATH");
    match role.as_str() {
        // Attach, check the host's bytes, write ours back.
        "echo" => {
            let region = Region::attach_file(&path).expect("attach");
            let mut buf = [0u8; 11];
            region.read_at(HEADER_LEN, &mut buf).unwrap();
            assert_eq!(&buf, b"from host!!");
            region.write_at(HEADER_LEN + 4096, b"from guest!").unwrap();
        }
        // Attach, tell the host, wait for growth, check the new part.
        "grow-watcher" => {
            let region = Region::attach_file(&path).expect("attach");
            let base = region.as_ptr();
            let before = region.len();
            std::fs::write(format!("{path}.ready"), b"1").unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut changes = 0;
            while region.len() == before {
                assert!(Instant::now() < deadline, "growth never seen");
                if region.check_and_remap().unwrap() {
                    changes += 1;
                }
                std::thread::yield_now();
            }
            assert_eq!(changes, 1);
            assert!(!region.check_and_remap().unwrap());
            assert_eq!(region.as_ptr(), base);
            let mut buf = [0u8; 8];
            region.read_at(region.len() - 8, &mut buf).unwrap();
            assert_eq!(&buf, b"new tail");
            region.read_at(HEADER_LEN, &mut buf).unwrap();
            assert_eq!(&buf, b"old data");
            region.verify_placement().unwrap();
            println!("guest saw growth to {}", region.len());
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn create_in_one_process_attach_in_another_both_ways() {
    let path = shm_path("xproc");
    let host = RegionOptions::new(MIB).create_file(&path).unwrap();
    host.write_at(HEADER_LEN, b"from host!!").unwrap();
    let out = run_child("child_process", "echo", &[("NUMASHM_PATH", path.display().to_string())], Duration::from_secs(60));
    assert_child_ok(&out);
    let mut buf = [0u8; 11];
    host.read_at(HEADER_LEN + 4096, &mut buf).unwrap();
    assert_eq!(&buf, b"from guest!");
}

#[test]
fn guest_in_another_process_sees_growth_once_with_base_and_data_kept() {
    let path = shm_path("grow");
    let node = Topology::get().unwrap().nodes()[0].os_index;
    let host = RegionOptions::new(MIB).max_len(16 * MIB).node(node).populate(true).create_file(&path).unwrap();
    host.write_at(HEADER_LEN, b"old data").unwrap();
    let ready = format!("{}.ready", path.display());
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env("NUMASHM_CHILD_ROLE", "grow-watcher")
        .env("NUMASHM_PATH", path.display().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&ready).exists() {
        assert!(Instant::now() < deadline, "child never attached");
        std::thread::sleep(Duration::from_millis(5));
    }
    host.resize(4 * MIB).unwrap();
    host.write_at(4 * MIB - 8, b"new tail").unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&ready);
    assert_child_ok(&out);
    let pages = host.verify_placement().unwrap();
    assert_eq!(pages.on_node(node), 4 * MIB / 4096, "grown part committed on node {node}");
}

#[test]
fn in_process_guest_check_and_remap_is_true_once_then_false() {
    let host = RegionOptions::new(MIB).max_len(8 * MIB).create_anonymous("remap").unwrap();
    let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap()).unwrap();
    let base = guest.as_ptr();
    host.write_at(HEADER_LEN, b"keep").unwrap();
    assert!(!guest.check_and_remap().unwrap());
    host.resize(3 * MIB).unwrap();
    host.resize(5 * MIB).unwrap();
    assert_eq!(host.epoch(), 2);
    assert!(guest.check_and_remap().unwrap());
    assert!(!guest.check_and_remap().unwrap());
    assert_eq!(guest.len(), 5 * MIB);
    assert_eq!(guest.as_ptr(), base);
    let mut b = [0u8; 4];
    guest.read_at(HEADER_LEN, &mut b).unwrap();
    assert_eq!(&b, b"keep");
    guest.write_at(5 * MIB - 4, b"last").unwrap();
    host.read_at(5 * MIB - 4, &mut b).unwrap();
    assert_eq!(&b, b"last");
}

#[test]
fn guest_can_grow_and_host_notices() {
    let host = RegionOptions::new(MIB).max_len(8 * MIB).create_anonymous("guestgrow").unwrap();
    let guest = Region::attach_fd(host.as_fd().try_clone_to_owned().unwrap()).unwrap();
    guest.resize(2 * MIB).unwrap();
    assert!(host.check_and_remap().unwrap());
    assert_eq!(host.len(), 2 * MIB);
    // Growing to the size a peer already reached is a no-op, below it a Shrink.
    host.resize(2 * MIB).unwrap();
    assert!(matches!(host.resize(MIB), Err(RegionError::Shrink { .. })));
}

#[test]
fn every_bounds_and_alignment_error_is_typed() {
    let r = RegionOptions::new(MIB).max_len(4 * MIB).create_anonymous("bounds").unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(r.read_at(MIB - 8, &mut buf), Err(RegionError::OutOfBounds { .. })));
    assert!(matches!(r.read_at(usize::MAX - 2, &mut buf), Err(RegionError::OutOfBounds { .. })));
    assert!(matches!(r.write_at(MIB, b"x"), Err(RegionError::OutOfBounds { .. })));
    assert!(matches!(r.write_at(100, b"x"), Err(RegionError::HeaderRange { .. })));
    assert!(matches!(r.msync(100, 4096), Err(RegionError::Misaligned { .. })));
    assert!(matches!(r.msync(0, 4 * MIB), Err(RegionError::OutOfBounds { .. })));
    assert!(matches!(r.madvise(4096, 100, RegionAdvice::WillNeed), Err(RegionError::Misaligned { .. })));
    assert!(matches!(r.madvise(4096, 0, RegionAdvice::WillNeed), Err(RegionError::Misaligned { .. })));
    assert!(matches!(r.madvise(MIB, 4096, RegionAdvice::WillNeed), Err(RegionError::OutOfBounds { .. })));
    assert!(matches!(r.remove_mapping(0, 4096), Err(RegionError::HeaderRange { .. })));
    assert!(matches!(r.remove_mapping(4096, 10), Err(RegionError::Misaligned { .. })));
    assert!(matches!(r.release_range(0, 4096), Err(RegionError::HeaderRange { .. })));
    assert!(matches!(r.release_range(4096, MIB), Err(RegionError::OutOfBounds { .. })));
    let other = RegionOptions::new(MIB).create_anonymous("bounds-other").unwrap();
    // SAFETY: every call below is rejected before mapping anything.
    unsafe {
        assert!(matches!(r.add_fd_mapping(0, 4096, other.as_fd(), 0, Protection::Read), Err(RegionError::HeaderRange { .. })));
        assert!(matches!(r.add_fd_mapping(4096, 4096, other.as_fd(), 1, Protection::Read), Err(RegionError::Misaligned { .. })));
        assert!(matches!(r.add_fd_mapping(4097, 4096, other.as_fd(), 0, Protection::Read), Err(RegionError::Misaligned { .. })));
        assert!(matches!(r.add_fd_mapping(MIB - 4096, 8192, other.as_fd(), 0, Protection::Read), Err(RegionError::OutOfBounds { .. })));
        assert!(matches!(r.madvise_unchecked(0, 4096, UncheckedAdvice::DontNeed), Err(RegionError::HeaderRange { .. })));
    }
    assert!(matches!(r.resize(MIB - 4096), Err(RegionError::Shrink { .. })));
    assert!(matches!(r.resize(MIB + 1), Err(RegionError::InvalidArgument { .. })));
    assert!(matches!(r.resize(8 * MIB), Err(RegionError::TooLarge { .. })));
    assert_eq!(r.len(), MIB, "failed operations change nothing");
    assert!(matches!(RegionOptions::new(0).create_anonymous("z"), Err(RegionError::InvalidArgument { what: "len", .. })));
    assert!(matches!(RegionOptions::new(5000).create_anonymous("z"), Err(RegionError::InvalidArgument { what: "len", .. })));
    assert!(matches!(RegionOptions::new(MIB).max_len(4096).create_anonymous("z"), Err(RegionError::InvalidArgument { what: "max_len", .. })));
    assert!(matches!(RegionOptions::new(MIB).max_len(1 << 50).create_anonymous("z"), Err(RegionError::TooLarge { .. })));
    assert!(matches!(RegionOptions::new(MIB).max_len(MIB + 100).create_anonymous("z"), Err(RegionError::InvalidArgument { what: "max_len", .. })));
}

#[test]
fn growth_stops_at_max_len_and_region_stays_usable() {
    let r = RegionOptions::new(MIB).max_len(2 * MIB).create_anonymous("max").unwrap();
    r.resize(2 * MIB).unwrap();
    assert!(matches!(r.resize(2 * MIB + 4096), Err(RegionError::TooLarge { requested, max }) if requested == 2 * MIB + 4096 && max == 2 * MIB));
    r.write_at(2 * MIB - 1, b"z").unwrap();
}

#[test]
fn named_file_is_0600_and_owner_unlinks_on_drop() {
    let path = shm_path("mode");
    let r = RegionOptions::new(MIB).create_file(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), MIB as u64);
    assert!(r.is_owner());
    drop(r);
    assert!(!path.exists());
}

#[test]
fn released_file_is_kept_and_attachable() {
    let path = shm_path("release");
    let mut r = RegionOptions::new(MIB).create_file(&path).unwrap();
    r.write_at(HEADER_LEN, b"persist").unwrap();
    r.release_ownership();
    drop(r);
    assert!(path.exists());
    let mut g = Region::attach_file(&path).unwrap();
    assert!(!g.is_owner());
    let mut b = [0u8; 7];
    g.read_at(HEADER_LEN, &mut b).unwrap();
    assert_eq!(&b, b"persist");
    g.take_ownership();
    drop(g);
    assert!(!path.exists());
}

#[test]
fn create_refuses_existing_path_and_symlinks() {
    let path = shm_path("exists");
    std::fs::write(&path, b"precious").unwrap();
    let err = RegionOptions::new(MIB).create_file(&path).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EXIST));
    assert!(err.hint().is_some());
    assert_eq!(std::fs::read(&path).unwrap(), b"precious", "existing file untouched");

    let link = shm_path("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(Region::attach_file(&link), Err(RegionError::Access { .. })));
    assert!(RegionOptions::new(MIB).create_file(&link).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn attach_refuses_a_file_owned_by_another_user() {
    if !is_root() {
        return skip("chown to another user needs root");
    }
    let path = shm_path("foreign");
    let mut r = RegionOptions::new(MIB).create_file(&path).unwrap();
    r.release_ownership();
    drop(r);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let err = Region::attach_file(&path).unwrap_err();
    assert!(matches!(err, RegionError::Access { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn corrupt_headers_are_typed_errors_naming_the_field() {
    let path = shm_path("corrupt");
    let mut r = RegionOptions::new(MIB).create_file(&path).unwrap();
    r.release_ownership();
    drop(r);
    let good = std::fs::read(&path).unwrap();
    let cases: &[(usize, &[u8], &str)] = &[
        (0, b"XXXXXXXX", "magic"),
        (8, &[2, 0, 0, 0], "version"),
        (12, &[0, 1, 0, 0], "header_len"),
        (32, &[0, 0, 0, 0, 0, 0, 0, 0x40], "checksum"),
        (16, &[0, 0, 0, 0, 0, 0, 0, 1], "len"),
        (16, &[1, 16, 0, 0, 0, 0, 0, 0], "len"),
        (88, &[1, 2, 3, 4, 5, 6, 7, 8], "checksum"),
    ];
    for (offset, bytes, field) in cases {
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&good[..4096]).unwrap();
        f.seek(SeekFrom::Start(*offset as u64)).unwrap();
        f.write_all(bytes).unwrap();
        drop(f);
        match Region::attach_file(&path) {
            Err(RegionError::Corrupt { field: got, .. }) => assert_eq!(got, *field, "offset {offset}"),
            other => panic!("offset {offset}: expected Corrupt({field}), got {other:?}"),
        }
    }
    // All zeros: the creator has not finished.
    std::fs::write(&path, vec![0u8; MIB]).unwrap();
    assert!(matches!(Region::attach_file(&path), Err(RegionError::NotInitialized)));
    // Truncated below a header, and empty.
    std::fs::write(&path, &good[..100]).unwrap();
    assert!(matches!(Region::attach_file(&path), Err(RegionError::Corrupt { field: "len", .. })));
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(Region::attach_file(&path), Err(RegionError::Corrupt { .. })));
    // Truncated below the published length.
    std::fs::write(&path, &good[..MIB / 2]).unwrap();
    assert!(matches!(Region::attach_file(&path), Err(RegionError::Corrupt { field: "len", .. })));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn hostile_published_length_is_rejected_by_check_and_remap() {
    let path = shm_path("hostile-len");
    let host = RegionOptions::new(MIB).max_len(4 * MIB).create_file(&path).unwrap();
    let guest = Region::attach_file(&path).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // A peer publishes a length the file does not back.
    f.seek(SeekFrom::Start(16)).unwrap();
    f.write_all(&(2 * MIB as u64).to_le_bytes()).unwrap();
    assert!(matches!(guest.check_and_remap(), Err(RegionError::Corrupt { field: "len", .. })));
    // Beyond max_len.
    f.seek(SeekFrom::Start(16)).unwrap();
    f.write_all(&(64 * MIB as u64).to_le_bytes()).unwrap();
    assert!(matches!(guest.check_and_remap(), Err(RegionError::Corrupt { field: "len", .. })));
    // Shrunk.
    f.seek(SeekFrom::Start(16)).unwrap();
    f.write_all(&(4096u64).to_le_bytes()).unwrap();
    assert!(matches!(guest.check_and_remap(), Err(RegionError::Corrupt { field: "len", .. })));
    assert_eq!(guest.len(), MIB, "the guest's mapping is untouched");
    drop(host);
}

#[test]
fn memfd_cannot_be_truncated_by_a_peer() {
    let r = RegionOptions::new(MIB).create_anonymous("sealed").unwrap();
    let peer_fd = r.as_fd().try_clone_to_owned().unwrap();
    assert_eq!(rustix::fs::ftruncate(&peer_fd, 4096), Err(Errno::PERM));
    r.write_at(MIB - 1, b"x").unwrap();
    // Growth is still possible until sealed.
    r.resize(2 * MIB).unwrap();
    r.seal_growth().unwrap();
    assert!(r.resize(3 * MIB).is_err());
    assert_eq!(r.len(), 2 * MIB);
}

#[test]
fn memory_is_committed_at_create_and_grow() {
    let r = RegionOptions::new(4 * MIB).max_len(16 * MIB).create_anonymous("commit").unwrap();
    let blocks = |r: &Region| rustix::fs::fstat(r).unwrap().st_blocks as usize * 512;
    assert!(blocks(&r) >= 4 * MIB, "committed {} bytes", blocks(&r));
    r.resize(8 * MIB).unwrap();
    assert!(blocks(&r) >= 8 * MIB);
    let lazy = RegionOptions::new(4 * MIB).commit(false).create_anonymous("lazy").unwrap();
    assert!(blocks(&lazy) < 4 * MIB);
}

#[test]
fn out_of_space_is_an_error_at_create_time_and_leaves_nothing() {
    if !is_root() {
        return skip("mounting a small tmpfs needs root");
    }
    let dir = std::env::temp_dir().join(format!("numashm-small-tmpfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = std::fs::remove_dir(&dir);
        return skip("could not mount a tmpfs");
    }
    let path = dir.join("big");
    let err = RegionOptions::new(8 * MIB).create_file(&path).unwrap_err();
    let small = RegionOptions::new(MIB / 2).max_len(8 * MIB).create_file(dir.join("small"));
    let _ = std::process::Command::new("umount").arg("-l").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(err.errno(), Some(Errno::NOSPC), "{err}");
    assert!(err.hint().unwrap().contains("/dev/shm"));
    assert!(!path.exists());
    let small = small.unwrap();
    let grow = small.resize(4 * MIB).unwrap_err();
    assert_eq!(grow.errno(), Some(Errno::NOSPC), "{grow}");
    assert_eq!(small.len(), MIB / 2, "failed growth changes nothing");
    small.write_at(MIB / 2 - 1, b"x").unwrap();
}

#[test]
fn shared_object_first_map_decides_the_size() {
    let object = SharedObject::new("first-map").unwrap();
    let a = object.map(&RegionOptions::new(2 * MIB)).unwrap();
    let b = object.map(&RegionOptions::new(MIB)).unwrap();
    assert_eq!(b.len(), 2 * MIB);
    a.write_at(2 * MIB - 3, b"end").unwrap();
    let mut buf = [0u8; 3];
    b.read_at(2 * MIB - 3, &mut buf).unwrap();
    assert_eq!(&buf, b"end");
}

#[test]
fn placement_on_node_zero_is_verified_for_each_policy() {
    let topo = Topology::get().unwrap();
    let node = topo.nodes()[0].os_index;
    for policy in [MemPolicy::Bind, MemPolicy::Preferred, MemPolicy::Interleave] {
        let r = RegionOptions::new(4 * MIB).node(node).policy(policy).populate(true).create_anonymous("place").unwrap();
        let pages = r.verify_placement().unwrap();
        assert_eq!(pages.on_node(node), 4 * MIB / 4096, "{policy:?}");
        assert_eq!(pages.not_present, 0);
        assert_eq!(r.node_of(2 * MIB).unwrap(), node);
        assert_eq!(r.header_info().unwrap().placement.unwrap().policy(), policy);
    }
}

#[test]
fn unknown_nodes_are_rejected_never_defaulted() {
    let topo = Topology::get().unwrap();
    let missing = topo.nodes().iter().map(|n| n.os_index).max().unwrap() + 1;
    let err = RegionOptions::new(MIB).node(missing).create_anonymous("nonode").unwrap_err();
    assert!(matches!(err, RegionError::UnknownNode { node, .. } if node == missing), "{err}");
    let err = RegionOptions::new(MIB).node(5000).create_anonymous("nonode").unwrap_err();
    assert!(matches!(err, RegionError::InvalidArgument { what: "node", .. }), "{err}");
    let err = RegionOptions::new(MIB).nodes(&[0, 0, missing]).policy(MemPolicy::Interleave).create_anonymous("x").unwrap_err();
    assert!(matches!(err, RegionError::UnknownNode { .. }));
    let path = shm_path("nonode");
    assert!(RegionOptions::new(MIB).node(missing).create_file(&path).is_err());
    assert!(!path.exists(), "a refused create leaves no file");
}

#[test]
fn no_node_means_no_policy_in_the_header() {
    let r = RegionOptions::new(MIB).create_anonymous("nopolicy").unwrap();
    assert_eq!(r.header_info().unwrap().placement, None);
    assert_eq!(r.placement(), None);
}

#[test]
fn crosvm_style_fd_mapping_round_trip() {
    let r = RegionOptions::new(MIB).create_anonymous("arena").unwrap();
    let src = RegionOptions::new(MIB).create_anonymous("arena-src").unwrap();
    src.write_at(64 * 1024, b"payload").unwrap();
    r.write_at(16 * 1024, b"mine").unwrap();
    // SAFETY: nothing else accesses [16K, 20K) of `r` while it is replaced.
    unsafe { r.add_fd_mapping(16 * 1024, 4096, src.as_fd(), 64 * 1024, Protection::Read).unwrap() };
    let mut b = [0u8; 7];
    r.read_at(16 * 1024, &mut b).unwrap();
    assert_eq!(&b, b"payload");
    r.remove_mapping(16 * 1024, 4096).unwrap();
    let mut b = [0u8; 4];
    r.read_at(16 * 1024, &mut b).unwrap();
    assert_eq!(&b, b"mine", "the region's own backing is back");
    r.write_at(16 * 1024, b"ok").unwrap();
}

#[test]
fn released_range_reads_zero_and_is_recommitted() {
    let r = RegionOptions::new(MIB).create_anonymous("release").unwrap();
    let blocks = |r: &Region| rustix::fs::fstat(r).unwrap().st_blocks as usize * 512;
    r.write_at(MIB / 2, b"data").unwrap();
    let before = blocks(&r);
    r.release_range(MIB / 2, MIB / 2).unwrap();
    assert!(blocks(&r) <= before - MIB / 2);
    let mut b = [9u8; 4];
    r.read_at(MIB / 2, &mut b).unwrap();
    assert_eq!(b, [0; 4]);
    r.commit_range(MIB / 2, MIB / 2).unwrap();
    assert!(blocks(&r) >= MIB);
}

#[test]
fn hugetlb_2m_region_is_backed_by_huge_pages() {
    if !ensure_huge_pages(2 * MIB, 4) {
        return;
    }
    let r = RegionOptions::new(4 * MIB).max_len(8 * MIB).page_size(PageSize::Huge2M).populate(true).create_anonymous("huge").unwrap();
    assert_eq!(r.page_size(), 2 * MIB);
    assert_eq!(r.kernel_page_size().unwrap().0, 2 * MIB);
    r.write_at(HEADER_LEN, b"huge").unwrap();
    let guest = Region::attach_fd(r.as_fd().try_clone_to_owned().unwrap()).unwrap();
    assert_eq!(guest.page_size(), 2 * MIB);
    let mut b = [0u8; 4];
    guest.read_at(HEADER_LEN, &mut b).unwrap();
    assert_eq!(&b, b"huge");
    let pages = r.pages_per_node(0, r.len()).unwrap();
    assert_eq!(pages.present(), 2);
    assert!(matches!(r.resize(5 * MIB), Err(RegionError::InvalidArgument { .. })));
}

#[test]
fn hugetlb_named_file_must_be_on_hugetlbfs() {
    let path = shm_path("huge-on-tmpfs");
    let err = RegionOptions::new(2 * MIB).page_size(PageSize::Huge2M).fallback(false).create_file(&path);
    match err {
        Err(RegionError::InvalidArgument { what: "path", .. }) | Err(RegionError::Unavailable { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!path.exists());
}

#[test]
fn missing_huge_pages_give_a_hint_or_fall_back_when_asked() {
    // 1 GiB pages are almost never reserved on these machines.
    if free_huge_pages(1 << 30, None).unwrap_or(0) > 0 {
        return skip("1 GiB huge pages are reserved here");
    }
    let err = RegionOptions::new(1 << 30).page_size(PageSize::Huge1G).create_anonymous("nohuge").unwrap_err();
    match &err {
        RegionError::Unavailable { what: "hugetlb pages", hint } => assert!(hint.0.contains("nr_hugepages"), "{hint}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let r = RegionOptions::new(2 * MIB).page_size(PageSize::Huge1G).fallback(true).create_anonymous("fallback").unwrap();
    assert_ne!(r.cache_policy().page_size, PageSize::Huge1G);
    assert_eq!(r.header_info().unwrap().cache.page_size, r.cache_policy().page_size);
}

#[test]
fn shmem_thp_is_a_hinted_error_until_enabled_then_gives_huge_pmds() {
    // One test, because shmem_enabled is machine-wide state.
    if matches!(shmem_thp_mode().as_deref(), Some("never" | "deny")) {
        let err = RegionOptions::new(2 * MIB).page_size(PageSize::Thp).create_anonymous("nothp").unwrap_err();
        assert!(err.hint().unwrap().contains("shmem_enabled"), "{err}");
        let r = RegionOptions::new(2 * MIB).page_size(PageSize::Thp).fallback(true).create_anonymous("thp-fb").unwrap();
        assert_eq!(r.cache_policy().page_size, PageSize::Base);
    }
    if !ensure_shmem_thp() {
        return;
    }
    let r = RegionOptions::new(8 * MIB).page_size(PageSize::Thp).populate(true).create_anonymous("thp").unwrap();
    assert_eq!(r.as_ptr() as usize % (2 * MIB), 0);
    assert_eq!(r.cache_policy().page_size, PageSize::Thp);
    let (_, thp_bytes) = r.kernel_page_size().unwrap();
    if thp_bytes == 0 {
        // The kernel may lack free 2 MiB blocks right now; THP is a request, not a promise.
        return skip("kernel backed the THP region with base pages (memory fragmented?)");
    }
    assert!(thp_bytes >= 2 * MIB);
}

#[test]
fn dont_fork_and_dont_dump_are_applied() {
    let r = RegionOptions::new(MIB).dont_fork(true).dont_dump(true).populate(true).create_anonymous("flags").unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let base = format!("{:x}-", r.as_ptr() as usize);
    let block: String = smaps.split_inclusive('\n').skip_while(|l| !l.starts_with(&base)).take(40).collect();
    let flags = block.lines().find(|l| l.starts_with("VmFlags:")).unwrap();
    assert!(flags.contains(" dc"), "{flags}"); // dc = do not copy on fork
    assert!(flags.contains(" dd"), "{flags}"); // dd = do not include in core dump
}

#[test]
fn lock_puts_the_region_in_ram_or_says_why_not() {
    match RegionOptions::new(MIB).lock(true).create_anonymous("locked") {
        Ok(r) => {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let base = format!("{:x}-", r.as_ptr() as usize);
            let block: String = smaps.split_inclusive('\n').skip_while(|l| !l.starts_with(&base)).take(40).collect();
            let locked = block.lines().find(|l| l.starts_with("Locked:")).unwrap();
            assert!(!locked.contains(" 0 kB"), "{locked}");
        }
        Err(RegionError::Unavailable { what: "mlock", hint }) => assert!(hint.0.contains("RLIMIT_MEMLOCK")),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn file_size_matches_header_after_growth() {
    let path = shm_path("size");
    let r = RegionOptions::new(MIB).max_len(4 * MIB).create_file(&path).unwrap();
    r.resize(3 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().size(), 3 * MIB as u64);
    let g = Region::attach_file(&path).unwrap();
    assert_eq!(g.len(), 3 * MIB);
    assert_eq!(g.header_info().unwrap().epoch, 1);
}

#[test]
fn a_named_file_truncated_by_an_outsider_is_detected_without_sigbus() {
    let path = shm_path("truncated");
    let host = RegionOptions::new(MIB).create_file(&path).unwrap();
    host.write_at(HEADER_LEN, b"before").unwrap();
    host.verify_backing().unwrap();
    // An outsider with write access truncates the file under the mapping.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(8192).unwrap();
    let err = host.verify_backing().unwrap_err();
    assert!(matches!(err, RegionError::Corrupt { field: "file size", .. }), "{err}");
    // The pages still backed stay usable; a new attacher is refused (len > file).
    let mut b = [0u8; 6];
    host.read_at(HEADER_LEN, &mut b).unwrap();
    assert!(matches!(Region::attach_file(&path), Err(RegionError::Corrupt { field: "len", .. })));
}
