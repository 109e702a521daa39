//! Hostile input: a client speaking garbage to the broker, and descriptor bytes
//! written by someone who does not follow the rules.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use numashm_ownership::testing::send_raw;
use numashm_ownership::{
    decode_message, Broker, BrokerClient, Descriptor, DescriptorError, ErrorCode, Message, OfferFlags, OfferInfo,
    MAX_CAPABILITIES, MAX_MAPPINGS,
};
use numashm_region::RegionOptions;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

fn sock_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("numashm-own-hostile-{tag}-{}.sock", std::process::id()))
}

fn raw_connect(path: &std::path::Path) -> OwnedFd {
    let s = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
    rustix::net::connect(&s, &SocketAddrUnix::new(path).unwrap()).unwrap();
    // Watchdog: an answer that never comes fails the test instead of hanging it.
    rustix::net::sockopt::set_socket_timeout(&s, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(20)))
        .unwrap();
    s
}

/// Sends `bytes` with `fds` and returns the broker's answer.
fn ask(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Message {
    send_raw(sock.as_fd(), bytes, fds).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = rustix::net::recv(sock, &mut buf, rustix::net::RecvFlags::empty()).unwrap().0;
    decode_message(&buf[..n]).unwrap()
}

fn code(m: &Message) -> Option<ErrorCode> {
    match m {
        Message::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn memfd(len: u64, sealable: bool) -> OwnedFd {
    let flags = if sealable { MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING } else { MemfdFlags::CLOEXEC };
    let fd = rustix::fs::memfd_create("hostile", flags).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    fd
}

fn offer(len: u64) -> Vec<u8> {
    Message::Offer { dest_pid: std::process::id(), flags: OfferFlags::GRANT_R, addr: 0x10_0000, len }.encode()
}

#[test]
fn hostile_client_gets_errors_and_the_broker_keeps_serving() {
    let path = sock_path("garbage");
    let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
    let evil = raw_connect(&path);

    // Garbage, short, long, wrong magic/version/kind/length.
    assert_eq!(code(&ask(&evil, b"\x00", &[])), Some(ErrorCode::BadMessage));
    assert_eq!(code(&ask(&evil, &[0xff; 100], &[])), Some(ErrorCode::BadMessage));
    assert_eq!(code(&ask(&evil, &vec![7u8; 60000], &[])), Some(ErrorCode::BadMessage));
    let good = Message::List { max: 4 }.encode();
    for (i, v) in [(0, 0u8), (4, 2), (6, 99), (8, 200)] {
        let mut b = good.clone();
        b[i] = v;
        assert_eq!(code(&ask(&evil, &b, &[])), Some(ErrorCode::BadMessage), "byte {i} = {v}");
    }
    // Wrong size: a List body with 4 extra bytes (header length patched to match).
    let mut b = good.clone();
    b.extend_from_slice(&[0; 4]);
    b[8] = b.len() as u8;
    assert_eq!(code(&ask(&evil, &b, &[])), Some(ErrorCode::BadMessage));
    // An answer kind sent as a request.
    assert_eq!(code(&ask(&evil, &Message::Done { value: 1 }.encode(), &[])), Some(ErrorCode::BadMessage));

    // Fds of the wrong kind: a pipe, a directory, a regular file on disk, a socket.
    let (pr, _pw) = rustix::pipe::pipe().unwrap();
    let dir = rustix::fs::open("/", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    let file_path = std::env::temp_dir().join(format!("numashm-hostile-{}", std::process::id()));
    let file = std::fs::File::create(&file_path).unwrap();
    file.set_len(4096).unwrap();
    for fd in [pr.as_fd(), dir.as_fd(), file.as_fd(), evil.as_fd()] {
        assert_eq!(code(&ask(&evil, &offer(4096), &[fd])), Some(ErrorCode::BadFd));
    }
    std::fs::remove_file(&file_path).unwrap();
    // A memfd of the wrong size; one that cannot be sealed (read-only grant needs the seal).
    assert_eq!(code(&ask(&evil, &offer(4096), &[memfd(8192, true).as_fd()])), Some(ErrorCode::BadFd));
    assert_eq!(code(&ask(&evil, &offer(4096), &[memfd(4096, false).as_fd()])), Some(ErrorCode::BadFd));
    // Sealed against sealing before the write seal: refused too.
    let locked = memfd(4096, true);
    rustix::fs::fcntl_add_seals(&locked, SealFlags::SEAL).unwrap();
    assert_eq!(code(&ask(&evil, &offer(4096), &[locked.as_fd()])), Some(ErrorCode::BadFd));
    // Too few and too many fds.
    assert_eq!(code(&ask(&evil, &offer(4096), &[])), Some(ErrorCode::BadMessage));
    let m = memfd(4096, true);
    let many = [m.as_fd(), m.as_fd(), m.as_fd()];
    assert_eq!(code(&ask(&evil, &offer(4096), &many)), Some(ErrorCode::BadMessage));
    assert_eq!(code(&ask(&evil, &Message::List { max: 1 }.encode(), &[m.as_fd()])), Some(ErrorCode::BadMessage));
    // A region registration with garbage (a memfd that is no region).
    assert_eq!(code(&ask(&evil, &Message::RegisterRegion.encode(), &[memfd(65536, true).as_fd()])), Some(ErrorCode::BadFd));
    // Forged answers do nothing harmful.
    send_raw(evil.as_fd(), &Message::DropDone { offer_id: 1, errno: 0 }.encode(), &[]).unwrap();
    // Capabilities that do not exist.
    let m = Message::AttachCapability { owner_pid: std::process::id(), token: 12345 };
    assert_eq!(code(&ask(&evil, &m.encode(), &[])), Some(ErrorCode::NoSuchCapability));

    // No hostile offer was recorded, and a well-behaved client is still served.
    let c = BrokerClient::connect(&path).unwrap();
    assert_eq!(c.list_offers(&mut [OfferInfo::default(); 4]).unwrap(), 0);
    let r = RegionOptions::new(64 << 10).create_anonymous("after-hostile").unwrap();
    // SAFETY: no drops.
    let addr = unsafe { c.offer(std::process::id(), &r, 8192..12288, OfferFlags::GRANT_R).unwrap() };
    assert_eq!(c.claim(std::process::id(), addr, OfferFlags::GRANT_R).unwrap().len(), 4096);
    // The hostile connection is still open, and still gets answers.
    assert_eq!(code(&ask(&evil, b"again", &[])), Some(ErrorCode::BadMessage));
}

#[test]
fn a_client_that_disconnects_mid_request_does_not_stop_the_broker() {
    let path = sock_path("vanish");
    let _broker = Broker::bind(&path).unwrap().spawn().unwrap();
    for _ in 0..20 {
        let s = raw_connect(&path);
        send_raw(s.as_fd(), &Message::List { max: 1 }.encode(), &[]).unwrap();
        drop(s);
    }
    let c = BrokerClient::connect(&path).unwrap();
    assert_eq!(c.list_offers(&mut [OfferInfo::default(); 1]).unwrap(), 0);
}

const MAPPINGS: usize = 32;
const CAPS: usize = MAPPINGS + 40 * MAX_MAPPINGS;

#[test]
fn corrupt_descriptor_fields_are_named() {
    let r = RegionOptions::new(64 << 10).create_anonymous("corrupt").unwrap();
    let d0 = r.data_offset();
    Descriptor::create(&r).unwrap();
    let put = |off: usize, v: u64| r.write_at(d0 + off, &v.to_le_bytes()).unwrap();
    let field = |r: &numashm_region::Region| match Descriptor::open(r) {
        Err(DescriptorError::Corrupt { field, index, .. }) => (field, index),
        other => panic!("expected Corrupt, got {other:?}"),
    };
    put(8, 7);
    assert_eq!(field(&r), ("version", None));
    put(8, 1);
    put(16, 5);
    assert_eq!(field(&r), ("slots", None));
    put(16, MAX_MAPPINGS as u64 | (MAX_CAPABILITIES as u64) << 32);
    put(24, 0);
    assert_eq!(field(&r), ("owner", None));
    put(24, u64::from(std::process::id()));
    // Mapping slot 3: a pid with impossible permissions.
    let slot = MAPPINGS + 3 * 40;
    put(slot, 77 | 2 << 32);
    put(slot + 16, 0x1000);
    put(slot + 24, 0x1000);
    put(slot + 32, 0xff);
    assert_eq!(field(&r), ("mappings.perms", Some(3)));
    put(slot + 32, 1);
    put(slot + 16, 0x1001);
    assert_eq!(field(&r), ("mappings.addr", Some(3)));
    put(slot, 0);
    // Capability slot 5: unknown status, then unknown mode.
    let cap = CAPS + 5 * 32;
    put(cap, 9);
    assert_eq!(field(&r), ("caps.state", Some(5)));
    put(cap, 2 | 7 << 8);
    assert_eq!(field(&r), ("caps.mode", Some(5)));
    put(cap, 0);
    Descriptor::open(&r).unwrap();
    put(0, 1);
    assert_eq!(field(&r), ("magic", None));
}

#[test]
fn a_descriptor_offset_another_process_rewrote_is_an_error_or_a_checked_descriptor() {
    let r = RegionOptions::new(64 << 10).create_anonymous("offset").unwrap();
    Descriptor::create_at(&r, 16 << 10).unwrap();
    // Header bytes 96..104 (docs/region.md) are writable by anyone who maps the
    // region: each value is refused with a named field, or leads to bytes that
    // are then validated as a descriptor.
    // (`write_at` refuses the header, so through the memfd, as another process would.)
    let put_offset = |v: u64| assert_eq!(rustix::io::pwrite(r.as_fd(), &v.to_le_bytes(), 96).unwrap(), 8);
    for bad in [1, 4095, 4097, 64 << 10, 1 << 40, u64::MAX] {
        put_offset(bad);
        match Descriptor::open(&r) {
            Err(DescriptorError::Region(numashm_region::RegionError::Corrupt { field: "descriptor_at", .. })) => {}
            other => panic!("offset {bad:#x}: expected Corrupt(descriptor_at), got {other:?}"),
        }
    }
    // A page of zeroes (no descriptor there): the magic is named.
    put_offset(32 << 10);
    assert!(matches!(Descriptor::open(&r), Err(DescriptorError::Corrupt { field: "magic", .. })));
    // The last page: exactly one descriptor fits; it is empty, so again the magic.
    put_offset(60 << 10);
    assert!(matches!(Descriptor::open(&r), Err(DescriptorError::Corrupt { field: "magic", .. })));
    put_offset(16 << 10);
    assert_eq!(Descriptor::open(&r).unwrap().owner().unwrap().pid, std::process::id());
    // Nothing recorded: the start of the data area, where there is none here.
    put_offset(0);
    assert!(matches!(Descriptor::open(&r), Err(DescriptorError::Corrupt { field: "magic", .. })));
}

#[test]
fn random_descriptor_bytes_give_errors_not_panics() {
    let r = RegionOptions::new(64 << 10).create_anonymous("random").unwrap();
    let d0 = r.data_offset();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        let _ = Descriptor::create(&r); // fails (already there) when the bytes look like a descriptor
        // Keep the header valid half of the time so the tables get exercised.
        for _ in 0..8 {
            let off = (next() as usize % (CAPS + 32 * MAX_CAPABILITIES)) & !7;
            if round % 2 == 0 && off < MAPPINGS {
                continue;
            }
            r.write_at(d0 + off, &next().to_le_bytes()).unwrap();
        }
        if let Ok(d) = Descriptor::open(&r) {
            let _ = d.get_mapping(std::process::id());
            let _ = d.owner_alive();
            let _ = d.redeem_capability(next(), std::process::id());
        }
        r.write_at(d0, &[0u8; 4096]).unwrap();
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn mapping_slots_left_half_written_by_a_dead_process_are_freed() {
    let r = RegionOptions::new(64 << 10).create_anonymous("half-written").unwrap();
    let d0 = r.data_offset();
    let desc = Descriptor::create(&r).unwrap();
    desc.unregister().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    // Every slot: the dead process's pid with an odd sequence (it died between
    // taking the slot and finishing its stores).
    for i in 0..MAX_MAPPINGS {
        r.write_at(d0 + MAPPINGS + i * 40, &(u64::from(dead) | 1 << 32).to_le_bytes()).unwrap();
    }
    assert_eq!(desc.get_mapping(dead).unwrap(), None, "a half-written slot is never data");
    desc.register().unwrap(); // the table was full of them: they are freed
    assert_eq!(desc.get_mapping(std::process::id()).unwrap().map(|m| m.pid), Some(std::process::id()));
}
