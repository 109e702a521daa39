//! Offer / claim / list, capabilities and ownership between real processes:
//! the test binary re-runs itself as children with a role.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;
use numashm_ownership::{
    physical_frames, Broker, BrokerClient, CapMode, Descriptor, DescriptorError, ErrorCode, FramesError, OfferError,
    OfferFlags, OfferInfo, OfferState,
};
use numashm_region::{Errno, PageSize, RegionError, RegionOptions};
use rustix::mm::{MapFlags, ProtFlags};

const OFF: usize = 16 << 10;
const LEN: usize = 8 << 10;

fn region(tag: &str) -> numashm_region::Region {
    RegionOptions::new(256 << 10).max_len(1 << 20).create_anonymous(tag).unwrap()
}

fn refused(e: &OfferError) -> Option<ErrorCode> {
    match e {
        OfferError::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

// ---------------------------------------------------------------------------

/// Three processes: this one runs the broker, a child offers R only, another
/// claims it; the receiver's reads work and every way to write is refused by the kernel.
#[test]
fn read_only_offer_cannot_be_written_by_the_receiver() {
    match role().as_deref() {
        Some("offerer") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let r = region("ro-offerer");
            r.write_at(OFF, b"read me").unwrap();
            // SAFETY: no drops: the range stays fully ours after the claim.
            let addr = unsafe { c.offer(env_u32("DEST"), &r, OFF..OFF + LEN, OfferFlags::GRANT_R).unwrap() };
            wait_for_offer(&c, |o| o.addr == addr as u64 && is_claimed(o));
            // Cancelling after the claim fails cleanly.
            let e = c.cancel(env_u32("DEST"), addr).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::AlreadyClaimed), "{e}");
            // No drops: the offerer still writes, and (shared memfd) keeps its range.
            r.write_at(OFF, b"R").unwrap();
            println!("offerer done");
        }
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let me = std::process::id();
            let o = wait_for_offer(&c, |o| o.dest_pid == me && o.state == Some(OfferState::Pending));
            assert_eq!(o.flags, OfferFlags::GRANT_R);
            // Asking for more than granted is refused.
            let e = c.claim(o.src_pid, o.addr as usize, OfferFlags::GRANT_R | OfferFlags::GRANT_W).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::NotGranted), "{e}");
            let claimed = c.claim(o.src_pid, o.addr as usize, OfferFlags::GRANT_R).unwrap();
            let (addr, size) = claimed.parts();
            assert_eq!(size, LEN);
            let mut buf = [0u8; 7];
            claimed.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"read me");
            // 1. A writable shared mapping of the fd: EPERM (F_SEAL_FUTURE_WRITE).
            // SAFETY: a new mapping at a kernel-chosen address; expected to fail.
            let w = unsafe {
                rustix::mm::mmap(std::ptr::null_mut(), LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, claimed.as_fd(), 0)
            };
            assert_eq!(w.err(), Some(Errno::PERM));
            // 2. Upgrading the existing mapping: EACCES (VM_MAYWRITE is gone).
            // SAFETY: changes only our own claimed mapping; expected to fail.
            let m = unsafe { rustix::mm::mprotect(addr as *mut _, LEN, rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE) };
            assert_eq!(m.err(), Some(Errno::ACCESS));
            // 3. Reopening the memfd read-write through /proc: the seal is on the inode.
            let raw = std::os::fd::AsRawFd::as_raw_fd(&claimed.as_fd());
            let reopened = rustix::fs::open(format!("/proc/self/fd/{raw}"), rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty()).unwrap();
            // SAFETY: as in 1.
            let w = unsafe {
                rustix::mm::mmap(std::ptr::null_mut(), LEN, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, &reopened, 0)
            };
            assert_eq!(w.err(), Some(Errno::PERM));
            assert_eq!(rustix::io::pwrite(&reopened, b"x", 0).err(), Some(Errno::PERM));
            // 4. A plain store through the mapping: SIGSEGV (in a forked child).
            assert!(write_faults(addr));
            assert!(claimed.write_at(0, b"x").is_err());
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("ro");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let sock = path.display().to_string();
            let entry = "read_only_offer_cannot_be_written_by_the_receiver";
            let receiver = spawn(entry, "receiver", &[("SOCK", sock.clone())]);
            let offerer = spawn(entry, "offerer", &[("SOCK", sock), ("DEST", receiver.pid.to_string())]);
            receiver.finish_ok();
            offerer.finish_ok();
        }
    }
}

/// DISOWN: after the claim the offerer's range is gone (inaccessible), the
/// receiver has the bytes and may write them.
#[test]
fn disown_takes_the_range_away_from_the_offerer_at_claim() {
    match role().as_deref() {
        Some("offerer") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let r = region("disown-offerer");
            r.write_at(OFF, b"yours now").unwrap();
            let flags = OfferFlags::GRANT_R | OfferFlags::GRANT_W | OfferFlags::DISOWN;
            // SAFETY: after the claim this process never touches the range again
            // (only a forked child probes it, expecting a fault).
            let addr = unsafe { c.offer(env_u32("DEST"), &r, OFF..OFF + LEN, flags).unwrap() };
            assert!(!read_faults(addr), "nothing changes before the claim");
            // Only now may the receiver claim (else the check above races its claim).
            std::fs::write(env("GATE"), b"go").unwrap();
            wait_for_offer(&c, |o| o.addr == addr as u64 && is_claimed(o));
            // The claim completed only after our reader thread applied the drops.
            let line = maps_line(addr).expect("the range stays reserved");
            assert!(line.contains("---p") && !line.contains("memfd"), "{line}");
            assert!(read_faults(addr));
            assert!(read_faults(addr + LEN - 1));
            // The rest of the region is untouched.
            let mut b = [0u8; 1];
            r.read_at(OFF + LEN, &mut b).unwrap();
            println!("offerer done");
        }
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let me = std::process::id();
            let o = wait_for_offer(&c, |o| o.dest_pid == me);
            // Wait until the offerer has checked its range before the claim.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !std::path::Path::new(&env("GATE")).exists() {
                assert!(Instant::now() < deadline, "watchdog: the offerer never opened the gate");
                std::thread::sleep(Duration::from_millis(1));
            }
            let claimed = c.claim(o.src_pid, o.addr as usize, OfferFlags::GRANT_R | OfferFlags::GRANT_W).unwrap();
            let mut buf = [0u8; 9];
            claimed.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"yours now");
            claimed.write_at(0, b"mine").unwrap();
            // Claiming twice fails.
            let e = c.claim(o.src_pid, o.addr as usize, OfferFlags::GRANT_R).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::AlreadyClaimed), "{e}");
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("disown");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let sock = path.display().to_string();
            let gate = format!("{sock}.gate");
            let entry = "disown_takes_the_range_away_from_the_offerer_at_claim";
            let receiver = spawn(entry, "receiver", &[("SOCK", sock.clone()), ("GATE", gate.clone())]);
            let offerer = spawn(entry, "offerer", &[("SOCK", sock), ("DEST", receiver.pid.to_string()), ("GATE", gate.clone())]);
            receiver.finish_ok();
            offerer.finish_ok();
            let _ = std::fs::remove_file(gate);
        }
    }
}

/// DROP_W only: the offerer keeps reading, its writes fault, the receiver writes.
#[test]
fn drop_write_leaves_the_offerer_read_only() {
    match role().as_deref() {
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let (src, addr) = hear().split_once(' ').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap();
            let claimed = c.claim(src, addr, OfferFlags::GRANT_R | OfferFlags::GRANT_W).unwrap();
            claimed.write_at(100, b"from the receiver").unwrap();
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("dropw");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let entry = "drop_write_leaves_the_offerer_read_only";
            let mut kid = spawn(entry, "receiver", &[("SOCK", path.display().to_string())]);
            let r = region("dropw");
            let flags = OfferFlags::GRANT_R | OfferFlags::GRANT_W | OfferFlags::DROP_W;
            // SAFETY: after the claim this process only reads the range.
            let addr = unsafe { c.offer(kid.pid, &r, OFF..OFF + LEN, flags).unwrap() };
            kid.tell(&format!("{} {addr}", std::process::id()));
            kid.finish_ok();
            let mut b = [0u8; 17];
            r.read_at(OFF + 100, &mut b).unwrap();
            assert_eq!(&b, b"from the receiver");
            assert!(write_faults(addr));
            assert!(maps_line(addr).unwrap().contains("r--s"));
        }
    }
}

/// Cancel before claim works; a claim after the cancel fails; cancelling twice fails.
#[test]
fn claim_after_cancel_fails() {
    match role().as_deref() {
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let (src, addr) = hear().split_once(' ').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap();
            let e = c.claim(src, addr, OfferFlags::GRANT_R).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::NoSuchOffer), "{e}");
            assert_eq!(c.list_offers(&mut [OfferInfo::default(); 4]).unwrap(), 0);
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("cancel");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let mut kid = spawn("claim_after_cancel_fails", "receiver", &[("SOCK", path.display().to_string())]);
            let r = region("cancel");
            // SAFETY: cancelled before any claim: no drop ever applies.
            let addr = unsafe { c.offer(kid.pid, &r, OFF..OFF + LEN, OfferFlags::GRANT_ALL | OfferFlags::DISOWN).unwrap() };
            // Cancel = offer the same address with size 0.
            // SAFETY: an empty range maps nothing.
            unsafe { c.offer(kid.pid, &r, OFF..OFF, OfferFlags::GRANT_R).unwrap() };
            let e = c.cancel(kid.pid, addr).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::NoSuchOffer), "{e}");
            kid.tell(&format!("{} {addr}", std::process::id()));
            kid.finish_ok();
            // The range is still ours.
            r.write_at(OFF, b"still mine").unwrap();
        }
    }
}

/// Three processes: an offer for one child is refused to another; the right one gets it.
#[test]
fn claim_by_the_wrong_pid_fails() {
    match role().as_deref() {
        Some("intruder") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let (src, addr) = hear().split_once(' ').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap();
            let e = c.claim(src, addr, OfferFlags::GRANT_R).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::WrongClaimant), "{e}");
            println!("intruder refused");
        }
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let (src, addr) = hear().split_once(' ').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap();
            let claimed = c.claim(src, addr, OfferFlags::GRANT_R).unwrap();
            assert_eq!(claimed.len(), LEN);
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("wrongpid");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let sock = path.display().to_string();
            let entry = "claim_by_the_wrong_pid_fails";
            let mut receiver = spawn(entry, "receiver", &[("SOCK", sock.clone())]);
            let mut intruder = spawn(entry, "intruder", &[("SOCK", sock)]);
            let r = region("wrongpid");
            // SAFETY: no drops.
            let addr = unsafe { c.offer(receiver.pid, &r, OFF..OFF + LEN, OfferFlags::GRANT_R).unwrap() };
            let line = format!("{} {addr}", std::process::id());
            intruder.tell(&line);
            intruder.finish_ok();
            receiver.tell(&line);
            receiver.finish_ok();
        }
    }
}

/// `list_offers` with a too-small buffer writes nothing and reports the count,
/// for the sender and for the receiver.
#[test]
fn list_with_a_too_small_buffer_reports_the_needed_count() {
    match role().as_deref() {
        Some("receiver") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            hear();
            let sentinel = OfferInfo { src_pid: 99, ..OfferInfo::default() };
            let mut small = [sentinel; 2];
            match c.list_offers(&mut small) {
                Err(OfferError::BufferTooSmall { needed: 3, given: 2 }) => {}
                other => panic!("expected BufferTooSmall(3), got {other:?}"),
            }
            assert_eq!(small, [sentinel; 2], "nothing written");
            let mut big = [OfferInfo::default(); 3];
            assert_eq!(c.list_offers(&mut big).unwrap(), 3);
            assert!(big.iter().all(|o| o.dest_pid == std::process::id()));
            println!("receiver done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("list");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let mut kid = spawn(
                "list_with_a_too_small_buffer_reports_the_needed_count",
                "receiver",
                &[("SOCK", path.display().to_string())],
            );
            let r = region("list");
            for i in 0..3 {
                let start = OFF + i * LEN;
                // SAFETY: no drops.
                unsafe { c.offer(kid.pid, &r, start..start + LEN, OfferFlags::GRANT_R).unwrap() };
            }
            assert!(matches!(c.list_offers(&mut []), Err(OfferError::BufferTooSmall { needed: 3, given: 0 })));
            kid.tell("go");
            kid.finish_ok();
        }
    }
}

/// A capability bound to one child is refused to another (the broker checks the
/// kernel-reported peer pid); the bound child attaches read-only and cannot write.
/// A move capability makes its holder the owner, once.
#[test]
fn capability_used_by_the_wrong_process_fails() {
    match role().as_deref() {
        Some("intruder") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let token: u64 = hear().parse().unwrap();
            let e = c.attach_with_capability(env_u32("OWNER"), token).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::CapabilityDenied), "{e}");
            println!("intruder refused");
        }
        Some("holder") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let token: u64 = hear().parse().unwrap();
            let guest = c.attach_with_capability(env_u32("OWNER"), token).unwrap();
            assert!(matches!(guest.write_at(OFF, b"x"), Err(RegionError::ReadOnly)));
            // The fd itself is read-only: the kernel refuses a writable shared mapping.
            // SAFETY: a new mapping at a kernel-chosen address; expected to fail.
            let w = unsafe {
                rustix::mm::mmap(std::ptr::null_mut(), 4096, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, guest.as_fd(), 0)
            };
            assert_eq!(w.err(), Some(Errno::ACCESS));
            let mut b = [0u8; 6];
            guest.read_at(OFF, &mut b).unwrap();
            assert_eq!(&b, b"shared");
            // A move token: ownership passes to us, and the token works once.
            let mover: u64 = hear().parse().unwrap();
            let rw = c.attach_with_capability(env_u32("OWNER"), mover).unwrap();
            let desc = Descriptor::open(&rw).unwrap();
            assert_eq!(desc.owner().unwrap().pid, std::process::id());
            let e = c.attach_with_capability(env_u32("OWNER"), mover).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::NoSuchCapability), "{e}");
            println!("holder done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("cap");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let host = region("cap");
            host.write_at(OFF, b"shared").unwrap();
            let desc = Descriptor::create(&host).unwrap();
            c.register_region(&host).unwrap();
            let vars = [("SOCK", path.display().to_string()), ("OWNER", std::process::id().to_string())];
            let entry = "capability_used_by_the_wrong_process_fails";
            let mut holder = spawn(entry, "holder", &vars);
            let mut intruder = spawn(entry, "intruder", &vars);
            let token = desc.create_capability(holder.pid, CapMode::ReadOnly).unwrap();
            intruder.tell(&token.to_string());
            intruder.finish_ok();
            holder.tell(&token.to_string());
            let mover = desc.create_capability(holder.pid, CapMode::Move).unwrap();
            holder.tell(&mover.to_string());
            let holder_pid = holder.pid;
            holder.finish_ok();
            assert_eq!(desc.owner().unwrap().pid, holder_pid);
            // We are no longer the owner: no new capabilities, no revocation.
            assert!(matches!(desc.revoke(token), Err(DescriptorError::NotOwner { .. })));
        }
    }
}

/// transfer_ownership: to a dead pid fails; to a live attached process succeeds
/// (and then we are not the owner); `get_mapping` sees the other process's mapping.
#[test]
fn transfer_ownership_to_a_dead_pid_fails() {
    match role().as_deref() {
        Some("short-lived") => println!("bye"),
        Some("attached") => {
            let c = BrokerClient::connect(env("SOCK")).unwrap();
            let token: u64 = hear().parse().unwrap();
            let guest = c.attach_with_capability(env_u32("OWNER"), token).unwrap();
            println!("attached at {:#x}", guest.as_ptr() as usize);
            // Stay alive (and attached) until the parent has transferred.
            assert_eq!(hear(), "done");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("xfer");
            let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
            let c = BrokerClient::connect(&path).unwrap();
            let host = region("xfer");
            let desc = Descriptor::create(&host).unwrap();
            c.register_region(&host).unwrap();
            let entry = "transfer_ownership_to_a_dead_pid_fails";
            let dead = spawn(entry, "short-lived", &[]);
            let dead_pid = dead.pid;
            dead.finish_ok(); // exited and reaped
            assert!(matches!(desc.transfer_ownership(dead_pid), Err(DescriptorError::TargetGone { pid }) if pid == dead_pid));
            let vars = [("SOCK", path.display().to_string()), ("OWNER", std::process::id().to_string())];
            let mut kid = spawn(entry, "attached", &vars);
            // Alive but not attached yet.
            assert!(matches!(desc.transfer_ownership(kid.pid), Err(DescriptorError::TargetNotAttached { .. })));
            let token = desc.create_capability(kid.pid, CapMode::ReadWrite).unwrap();
            kid.tell(&token.to_string());
            let deadline = std::time::Instant::now() + CHILD_TIMEOUT;
            let mapping = loop {
                if let Some(m) = desc.get_mapping(kid.pid).unwrap() {
                    break m;
                }
                assert!(std::time::Instant::now() < deadline, "watchdog: child never attached");
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            assert_eq!(mapping.len, host.len());
            let owner = desc.transfer_ownership(kid.pid).unwrap();
            assert_eq!(owner.pid, kid.pid);
            assert!(!desc.is_owner().unwrap());
            assert!(desc.owner_alive().unwrap());
            assert!(matches!(desc.transfer_ownership(std::process::id()), Err(DescriptorError::NotOwner { .. })));
            kid.tell("done");
            let out = kid.finish_ok();
            let addr = format!("attached at {:#x}", mapping.addr);
            assert!(String::from_utf8_lossy(&out.stdout).contains(&addr), "get_mapping reported {addr}");
            assert!(!desc.owner_alive().unwrap());
        }
    }
}

/// Physical frames: a typed error without CAP_SYS_ADMIN; with hugetlb backing
/// the 512 frames of a 2 MiB page are contiguous.
#[test]
fn physical_frames_need_cap_sys_admin_and_huge_pages_are_contiguous() {
    match role().as_deref() {
        Some("no-cap") => {
            drop_cap_sys_admin();
            let r = region("frames-nocap");
            assert!(matches!(physical_frames(&r, OFF, 4096), Err(FramesError::NoCapability)));
            println!("typed error without the capability");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let kid = spawn("physical_frames_need_cap_sys_admin_and_huge_pages_are_contiguous", "no-cap", &[]);
            kid.finish_ok();
            let r = region("frames");
            match physical_frames(&r, OFF, LEN) {
                Ok(f) => assert_eq!(f.len(), LEN / 4096),
                Err(FramesError::NoCapability) => {
                    eprintln!("SKIPPED: hugetlb contiguity needs CAP_SYS_ADMIN");
                    return;
                }
                Err(e) => panic!("{e}"),
            }
            if !ensure_huge_pages(2 << 20, 2) {
                return;
            }
            let huge = RegionOptions::new(4 << 20).max_len(4 << 20).page_size(PageSize::Huge2M).create_anonymous("frames-huge").unwrap();
            let frames = physical_frames(&huge, 2 << 20, 2 << 20).unwrap();
            assert_eq!(frames.len(), 512);
            for w in frames.windows(2) {
                assert_eq!(w[1], w[0] + 1, "frames of one huge page are contiguous");
            }
        }
    }
}

fn drop_cap_sys_admin() {
    let mut sets = rustix::thread::capabilities(None).expect("capget");
    sets.effective.remove(rustix::thread::CapabilitySet::SYS_ADMIN);
    rustix::thread::set_capabilities(None, sets).expect("capset");
}

/// Makes sure at least `pages` free hugetlb pages of `size` exist (root only).
fn ensure_huge_pages(size: usize, pages: u64) -> bool {
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", size / 1024);
    let read = |f: &str| -> Option<u64> { std::fs::read_to_string(format!("{dir}/{f}")).ok()?.trim().parse().ok() };
    let Some(free) = read("free_hugepages") else {
        eprintln!("SKIPPED: no hugetlb support");
        return false;
    };
    if free >= pages {
        return true;
    }
    let total = read("nr_hugepages").unwrap_or(0);
    let _ = std::fs::write(format!("{dir}/nr_hugepages"), (total + pages - free).to_string());
    if read("free_hugepages").unwrap_or(0) < pages {
        eprintln!("SKIPPED: could not reserve {pages} huge pages (not root, or no memory)");
        return false;
    }
    true
}

/// A copy of `host`'s bytes (region header, descriptor) in a memfd made
/// without the region layer, so without its shrink seal: what a hostile client
/// can register. `sealable`: whether the memfd allows sealing at all.
fn unsealed_copy(host: &numashm_region::Region, sealable: bool) -> numashm_region::Region {
    use rustix::fs::MemfdFlags;
    let flags = if sealable { MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING } else { MemfdFlags::CLOEXEC };
    let fd = rustix::fs::memfd_create("unsealed-copy", flags).unwrap();
    let mut bytes = vec![0u8; host.len()];
    host.read_at(0, &mut bytes).unwrap();
    rustix::fs::ftruncate(&fd, bytes.len() as u64).unwrap();
    rustix::io::pwrite(&fd, &bytes, 0).unwrap();
    numashm_region::Region::attach_fd(fd).unwrap()
}

/// A client that registers a memfd and then shrinks it would kill the broker
/// with SIGBUS at its next read of the region: the broker seals registered
/// memory against shrinking (and refuses memory it cannot seal), so the shrink
/// fails and the broker (a child process here) lives on and serves the region.
#[test]
fn a_registered_region_cannot_be_shrunk_under_the_broker() {
    let entry = "a_registered_region_cannot_be_shrunk_under_the_broker";
    match role().as_deref() {
        Some("broker") => {
            let _broker = Broker::bind(env("SOCK")).unwrap().spawn().unwrap();
            let _ = hear(); // serve until the parent is done
            println!("broker alive");
        }
        Some(r) => panic!("unknown role {r}"),
        None => {
            let path = sock_path("shrink");
            let mut broker = spawn(entry, "broker", &[("SOCK", path.display().to_string())]);
            let deadline = Instant::now() + Duration::from_secs(20);
            let c = loop {
                match BrokerClient::connect(&path) {
                    Ok(c) => break c,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => panic!("the broker never listened: {e}"),
                }
            };
            let host = region("shrink");
            host.write_at(OFF, b"intact").unwrap();
            let desc = Descriptor::create(&host).unwrap();
            let token = desc.create_capability(std::process::id(), CapMode::ReadOnly).unwrap();
            // Memory that cannot be sealed at all is refused.
            let unsealable = unsealed_copy(&host, false);
            let e = c.register_region(&unsealable).unwrap_err();
            assert_eq!(refused(&e), Some(ErrorCode::BadFd), "{e}");
            // Sealable memory is sealed against shrinking by the broker: the
            // shrink that would have pulled its pages away fails.
            let copy = unsealed_copy(&host, true);
            c.register_region(&copy).unwrap();
            assert_eq!(rustix::fs::ftruncate(copy.as_fd(), 0), Err(Errno::PERM));
            // The broker reads the registered memory again (the capability lives there).
            let guest = c.attach_with_capability(std::process::id(), token).unwrap();
            let mut b = [0u8; 6];
            guest.read_at(OFF, &mut b).unwrap();
            assert_eq!(&b, b"intact");
            broker.tell("done");
            let out = broker.finish_ok();
            assert!(String::from_utf8_lossy(&out.stdout).contains("broker alive"));
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn capabilities_of_processes_that_died_give_their_slots_to_new_ones() {
    let r = region("cap-prune");
    let desc = Descriptor::create(&r).unwrap();
    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let tokens: Vec<u64> =
        (0..numashm_ownership::MAX_CAPABILITIES).map(|_| desc.create_capability(child.id(), CapMode::ReadWrite).unwrap()).collect();
    let me = std::process::id();
    // Full while its process lives.
    assert!(matches!(desc.create_capability(me, CapMode::ReadOnly), Err(DescriptorError::TableFull { .. })));
    child.kill().unwrap();
    child.wait().unwrap();
    // Its capabilities can never be redeemed: their slots are taken.
    let t = desc.create_capability(me, CapMode::ReadOnly).unwrap();
    assert_eq!(desc.redeem_capability(t, me).unwrap(), CapMode::ReadOnly);
    assert!(tokens.iter().all(|&old| desc.redeem_capability(old, child.id()).is_err()), "the dead process's tokens are gone");
}
